/*
 * Redis Streams source and sink, on hiredis's libuv adapter.
 *
 * Two connections: "fetch" carries the group reads (one at a time: a
 * blocking XREADGROUP, or a recovery read, or an XAUTOCLAIM sweep, never
 * more jobs than the worker's credit), "cmd" carries frame XADDs, XACKs and
 * heartbeats from one ordered outbox. An outbox entry leaves only when
 * Redis has answered it; a lost connection sends every unanswered entry
 * again, in order, when it is back. So an exit frame is always written
 * before its XACK, and neither is lost while the worker lives.
 *
 * Jobs the worker was running when it died stay in its pending list: on
 * (re)connect it first reads its own pending entries, and other workers'
 * reapers claim entries idle past --claim-idle-ms. A live worker touches
 * its running entries (XCLAIM ... JUSTID) well within that time, so a long
 * job is never claimed from under it. hiredis 0.14 has no async timeouts:
 * a 1 s tick reconnects a connection whose answer is overdue.
 */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "queue/source.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CMD_STALL_MS 15000
#define CONNECT_MS 5000

struct rsrc;

struct rconn {
    struct rsrc *s;
    const char *name;
    redisAsyncContext *ac;
    int up;
    uv_timer_t retry;
    uint64_t backoff;
    uint64_t connect_started;
    int ever_up;
};

struct rdelivery {
    struct kiln_delivery pub;
    char id[64];
    unsigned char *data;
    struct rdelivery *prev, *next;  /* the in-flight list */
};

struct op {
    struct op *next;
    char *cmd;                      /* RESP, from redisFormatCommandArgv */
    int len;
    int sent;
    uint64_t sent_at;
    kiln_write_cb cb;
    void *arg;
    struct rdelivery *acked;        /* XACK: released when answered */
};

enum phase { PH_GROUP, PH_RECOVER, PH_NEW };

struct rsrc {
    struct kiln_source pub;
    char host[256];
    int port;
    int db;
    char *user, *password;
    struct rconn cmd, fetch, ctl;
    char ctl_last[64];              /* control stream: last entry read */
    long long pending;              /* the group's pending entries, -1 unknown */
    long long lag;                  /* entries not yet delivered to the group, -1 */
    uint64_t next_depth;
    int ctl_reading;
    struct op *head, *tail;
    unsigned credit;
    unsigned acks_unconfirmed;      /* finished, XACK sent, Redis not yet answered */
    int fetching;
    uint64_t fetch_sent;            /* loop ms */
    uint64_t fetch_wait;            /* how long that fetch may take */
    uint64_t pause_until;           /* after an error reply */
    enum phase phase;
    char recover_from[64];
    char claim_from[64];
    uint64_t next_claim, next_touch;
    uv_timer_t tick;
    struct rdelivery *inflight;
    int stopping;
    int draining;                   /* no more fetches */
    int closing;                    /* timers still closing */
};

static void fetch_next(struct rsrc *s);
static void conn_start(struct rconn *c);

/* ---- hiredis on libuv ------------------------------------------------ */

/*
 * hiredis 0.14's bundled libuv adapter drops poll errors: a refused connect
 * (libuv reports it as a poll error) then hangs for ever. This one passes
 * errors on to hiredis, whose own read or connect check then sees them.
 */
struct uvev {
    redisAsyncContext *ac;
    uv_poll_t poll;
    int events;
};

static void ev_poll(uv_poll_t *h, int status, int events)
{
    struct uvev *e = h->data;
    if (e->ac == NULL)
        return;
    if (status < 0) /* let hiredis find the socket error and tear down */
        events = (e->ac->c.flags & REDIS_CONNECTED) ? UV_READABLE : UV_WRITABLE;
    if (e->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void ev_update(struct uvev *e, int add, int del)
{
    e->events = (e->events | add) & ~del;
    if (e->events)
        uv_poll_start(&e->poll, e->events, ev_poll);
    else
        uv_poll_stop(&e->poll);
}

static void ev_add_read(void *p) { ev_update(p, UV_READABLE, 0); }
static void ev_del_read(void *p) { ev_update(p, 0, UV_READABLE); }
static void ev_add_write(void *p) { ev_update(p, UV_WRITABLE, 0); }
static void ev_del_write(void *p) { ev_update(p, 0, UV_WRITABLE); }

static void ev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ev_cleanup(void *p)
{
    struct uvev *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, ev_closed);
}

static int attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct uvev *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return -EIO;
    }
    e->poll.data = e;
    e->ac = ac;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---- connections ----------------------------------------------------- */

static uint64_t now(struct rsrc *s)
{
    return uv_now(s->pub.loop);
}

static void on_retry(uv_timer_t *t)
{
    conn_start(t->data);
}

static void schedule_retry(struct rconn *c)
{
    if (c->s->stopping)
        return;
    c->backoff = c->backoff ? c->backoff * 2 : BACKOFF_MIN_MS;
    if (c->backoff > BACKOFF_MAX_MS)
        c->backoff = BACKOFF_MAX_MS;
    kiln_warn("redis %s connection to %s:%d down; retrying in %llu ms", c->name, c->s->host,
              c->s->port, (unsigned long long)c->backoff);
    uv_timer_start(&c->retry, on_retry, c->backoff, 0);
}

static void flush_outbox(struct rsrc *s);

static void control_next(struct rsrc *s);

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;
    struct rsrc *s = c->s;
    if (status != REDIS_OK) {
        kiln_warn("redis %s connect failed: %s", c->name, ac->errstr);
        c->ac = NULL; /* hiredis frees it */
        schedule_retry(c);
        return;
    }
    kiln_info("redis %s connection up (%s:%d)", c->name, s->host, s->port);
    if (c->ever_up)
        kiln_metrics_reconnect("redis");
    c->ever_up = 1;
    c->up = 1;
    c->backoff = 0;
    redisEnableKeepAlive((redisContext *)&ac->c);
    if (c == &s->cmd) {
        flush_outbox(s);
    } else if (c == &s->ctl) {
        s->ctl_reading = 0;
        control_next(s);
    } else {
        s->fetching = 0;
        s->phase = PH_GROUP;
        fetch_next(s);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;
    (void)status;
    c->ac = NULL;
    c->up = 0;
    if (c == &c->s->fetch)
        c->s->fetching = 0;
    if (c == &c->s->ctl)
        c->s->ctl_reading = 0;
    schedule_retry(c);
}

static void on_setup(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)priv;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        kiln_error("redis: %s", reply->str); /* commands will fail and say so too */
    (void)ac;
}

static void conn_start(struct rconn *c)
{
    struct rsrc *s = c->s;
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (ac == NULL || ac->err) {
        kiln_warn("redis %s connect failed: %s", c->name, ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->connect_started = now(s);
    if (attach(ac, s->pub.loop) < 0) {
        kiln_warn("redis %s: cannot watch the socket", c->name);
        redisAsyncFree(ac);
        c->ac = NULL;
        schedule_retry(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued ahead of everything else on this connection */
    if (s->password != NULL && s->user != NULL)
        redisAsyncCommand(ac, on_setup, NULL, "AUTH %s %s", s->user, s->password);
    else if (s->password != NULL)
        redisAsyncCommand(ac, on_setup, NULL, "AUTH %s", s->password);
    if (s->db != 0)
        redisAsyncCommand(ac, on_setup, NULL, "SELECT %d", s->db);
    /* hiredis 0.14 watches for the connect to finish only once a command
     * is queued: without one, a reconnect would wait forever */
    redisAsyncCommand(ac, on_setup, NULL, "PING");
}

/* Drop a connection that stopped answering; on_disconnect reconnects. */
static void conn_reset(struct rconn *c, const char *why)
{
    if (c->ac == NULL)
        return;
    kiln_warn("redis %s connection: %s; reconnecting", c->name, why);
    int was_up = c->up;
    redisAsyncFree(c->ac); /* calls on_disconnect only if it was connected */
    if (!was_up) {
        c->ac = NULL;
        schedule_retry(c);
    }
}

/* ---- the outbox (cmd connection) ------------------------------------- */

static void release(struct rsrc *s, struct rdelivery *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        s->inflight = d->next;
    if (d->next)
        d->next->prev = d->prev;
    free(d->data);
    free(d);
}

static void on_op_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    struct op *op = priv, **pp;
    redisReply *reply = r;
    if (reply == NULL) {
        op->sent = 0; /* connection lost: sent again when it is back */
        return;
    }
    int reply_was_ack = op->acked != NULL;
    for (pp = &s->head; *pp != op; pp = &(*pp)->next)
        ;
    *pp = op->next;
    if (s->tail == op) {
        s->tail = NULL;
        for (struct op *o = s->head; o; o = o->next)
            s->tail = o;
    }
    if (op->cb != NULL) {
        if (reply->type == REDIS_REPLY_ERROR)
            op->cb(op->arg, -EIO, reply->str);
        else
            op->cb(op->arg, 0, NULL);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        kiln_warn("redis: %s", reply->str);
    }
    if (op->acked != NULL) {
        release(s, op->acked);
        s->acks_unconfirmed--;
    }
    redisFreeCommand(op->cmd);
    free(op);
    if (reply_was_ack)
        fetch_next(s); /* its slot counts as free only now */
}

static void op_send(struct rsrc *s, struct op *op)
{
    if (!s->cmd.up || op->sent)
        return;
    if (redisAsyncFormattedCommand(s->cmd.ac, on_op_reply, op, op->cmd, op->len) == REDIS_OK) {
        op->sent = 1;
        op->sent_at = now(s);
    }
}

static void flush_outbox(struct rsrc *s)
{
    for (struct op *op = s->head; op != NULL; op = op->next)
        op_send(s, op);
}

static int enqueue(struct rsrc *s, int argc, const char **argv, const size_t *argvlen,
                   kiln_write_cb cb, void *arg, struct rdelivery *acked)
{
    struct op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return -ENOMEM;
    op->len = redisFormatCommandArgv(&op->cmd, argc, argv, argvlen);
    if (op->len < 0) {
        free(op);
        return -ENOMEM;
    }
    op->cb = cb;
    op->arg = arg;
    op->acked = acked;
    if (s->tail)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    op_send(s, op);
    return 0;
}

static int redis_write(struct kiln_source *src, const char *dest, const char *key,
                       const void *frame, size_t len, const struct kiln_frame_info *info,
                       kiln_write_cb cb, void *arg)
{
    struct rsrc *s = (struct rsrc *)src;
    const char *argv[] = {"XADD", dest, "*", "frame", frame};
    size_t argvlen[] = {4, strlen(dest), 1, 5, len};
    (void)key;
    (void)info; /* the frame itself says all; streams have no headers */
    return enqueue(s, 5, argv, argvlen, cb, arg, NULL);
}

static void redis_ack(struct kiln_source *src, struct kiln_delivery *pub)
{
    struct rsrc *s = (struct rsrc *)src;
    struct rdelivery *d = (struct rdelivery *)pub;
    const char *argv[] = {"XACK", s->pub.cfg->jobs, s->pub.cfg->group, d->id};
    s->acks_unconfirmed++;
    if (enqueue(s, 4, argv, NULL, NULL, NULL, d) < 0) {
        s->acks_unconfirmed--;
        kiln_error("out of memory acknowledging %s; it will be delivered again", d->id);
    }
}

/* Keep our running entries from looking idle to other workers' reapers. */
static void touch_inflight(struct rsrc *s)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = "XCLAIM";
    argv[n++] = s->pub.cfg->jobs;
    argv[n++] = s->pub.cfg->group;
    argv[n++] = s->pub.cfg->consumer;
    argv[n++] = "0";
    int first = n;
    for (struct rdelivery *d = s->inflight; d != NULL; d = d->next) {
        argv[n++] = d->id;
        if (n == 63 || d->next == NULL) {
            argv[n++] = "JUSTID";
            enqueue(s, n, argv, NULL, NULL, NULL, NULL);
            n = first;
        }
    }
}

/* ---- deliveries ------------------------------------------------------ */

static int is_inflight(struct rsrc *s, const char *id)
{
    for (struct rdelivery *d = s->inflight; d != NULL; d = d->next)
        if (strcmp(d->id, id) == 0)
            return 1;
    return 0;
}

/* One entry [id, [field, value, ...]] from a read or claim. Returns a new
 * in-flight delivery, or NULL (entry deleted, or out of memory). */
static struct rdelivery *take_entry(struct rsrc *s, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING)
        return NULL;
    struct rdelivery *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    snprintf(d->id, sizeof(d->id), "%s", e->element[0]->str);
    snprintf(d->pub.ref, sizeof(d->pub.ref), "%s", d->id);
    d->pub.enqueued_ms = strtoll(d->id, NULL, 10); /* a stream id starts with its ms time */
    d->pub.src = &s->pub;
    d->pub.attempt = 1;
    const redisReply *f = e->element[1];
    if (f->type != REDIS_REPLY_ARRAY) {
        d->pub.missing = "the stream entry was deleted";
    } else {
        d->pub.missing = "the stream entry has no 'job' field";
        for (size_t i = 0; i + 1 < f->elements; i += 2) {
            const redisReply *k = f->element[i], *v = f->element[i + 1];
            if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "job") == 0 &&
                v->type == REDIS_REPLY_STRING) {
                if ((d->data = malloc(v->len ? v->len : 1)) == NULL) {
                    free(d);
                    return NULL;
                }
                memcpy(d->data, v->str, v->len);
                d->pub.data = d->data;
                d->pub.len = v->len;
                d->pub.missing = NULL;
                break;
            }
        }
    }
    d->next = s->inflight;
    if (s->inflight)
        s->inflight->prev = d;
    s->inflight = d;
    return d;
}

static void on_pending_count(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    struct rdelivery *d = priv;
    redisReply *reply = r;
    if (reply == NULL || s->stopping) {
        /* connection lost: it stays pending and is recovered on reconnect */
        release(s, d);
        s->credit++;
        return;
    }
    /* XPENDING key group id id 1 -> [[id, consumer, idle, deliveries]] */
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 4 &&
        reply->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        d->pub.attempt = (unsigned)reply->element[0]->element[3]->integer;
    else if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 0) {
        release(s, d); /* acknowledged elsewhere meanwhile: nothing to run */
        s->credit++;
        return;
    }
    kiln_info("job entry %s taken over (attempt %u)", d->id, d->pub.attempt);
    s->pub.on_delivery(s->pub.arg, &d->pub);
}

/* Entries this worker did not get fresh: learn their delivery count first. */
static void deliver_again(struct rsrc *s, struct rdelivery *d)
{
    const struct kiln_config *cfg = s->pub.cfg;
    if (redisAsyncCommand(s->fetch.ac, on_pending_count, d, "XPENDING %s %s %s %s 1",
                          cfg->jobs, cfg->group, d->id, d->id) != REDIS_OK)
        s->pub.on_delivery(s->pub.arg, &d->pub);
}

static void deliver_entries(struct rsrc *s, const redisReply *entries, int fresh)
{
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
            e->element[0]->type == REDIS_REPLY_STRING && is_inflight(s, e->element[0]->str))
            continue; /* ours and still running (or its ack is in flight) */
        struct rdelivery *d = take_entry(s, e);
        if (d == NULL)
            continue;
        s->credit--;
        if (fresh)
            s->pub.on_delivery(s->pub.arg, &d->pub);
        else
            deliver_again(s, d);
    }
}

/* ---- the fetch loop (fetch connection) ------------------------------- */

static int fetch_failed(struct rsrc *s, redisReply *reply)
{
    s->fetching = 0;
    if (reply == NULL)
        return 1; /* connection lost: on_connect restarts the loop */
    if (reply->type != REDIS_REPLY_ERROR)
        return 0;
    kiln_warn("redis fetch: %s", reply->str);
    if (strncmp(reply->str, "NOGROUP", 7) == 0)
        s->phase = PH_GROUP; /* stream or group deleted: create again */
    s->pause_until = now(s) + 1000;
    return 1;
}

static void on_group(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    redisReply *reply = r;
    (void)priv;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) == 0)
        reply->type = REDIS_REPLY_STATUS; /* it exists: fine */
    if (fetch_failed(s, reply))
        return;
    s->phase = PH_RECOVER;
    strcpy(s->recover_from, "0");
    fetch_next(s);
}

static void on_read(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    redisReply *reply = r;
    int recovering = priv != NULL;
    if (fetch_failed(s, reply))
        return;
    /* [[stream, [entry, ...]]] or nil when the block timed out */
    const redisReply *entries = NULL;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
        entries = reply->element[0]->element[1];
    if (recovering) {
        if (entries == NULL || entries->elements == 0) {
            s->phase = PH_NEW; /* our own pending list is done */
        } else {
            const redisReply *last = entries->element[entries->elements - 1];
            if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1)
                snprintf(s->recover_from, sizeof(s->recover_from), "%s", last->element[0]->str);
        }
    }
    if (entries != NULL && entries->type == REDIS_REPLY_ARRAY)
        deliver_entries(s, entries, !recovering);
    fetch_next(s);
}

static void on_claim(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    redisReply *reply = r;
    (void)priv;
    if (fetch_failed(s, reply))
        return;
    /* [next-cursor, [entry, ...], [deleted-id, ...]] */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING) {
        const char *cursor = reply->element[0]->str;
        snprintf(s->claim_from, sizeof(s->claim_from), "%s", cursor);
        if (strcmp(cursor, "0-0") == 0) /* swept the whole list: rest a while */
            s->next_claim = now(s) + (uint64_t)s->pub.cfg->claim_idle_ms / 2;
        if (reply->element[1]->type == REDIS_REPLY_ARRAY)
            deliver_entries(s, reply->element[1], 0);
    }
    fetch_next(s);
}

static void fetch_next(struct rsrc *s)
{
    const struct kiln_config *cfg = s->pub.cfg;
    char count[16], idle[24], block[24];
    redisAsyncContext *ac = s->fetch.ac;
    int r;

    /* An entry is the worker's until Redis confirms its XACK: the slot it
     * freed is counted only then, so the group never sees more pending
     * entries here than there are slots. */
    unsigned avail = s->credit > s->acks_unconfirmed ? s->credit - s->acks_unconfirmed : 0;
    if (!s->fetch.up || s->fetching || avail == 0 || s->stopping || s->draining ||
        now(s) < s->pause_until)
        return;
    snprintf(count, sizeof(count), "%u", avail);
    s->fetch_wait = 5000;
    switch (s->phase) {
    case PH_GROUP:
        r = redisAsyncCommand(ac, on_group, NULL, "XGROUP CREATE %s %s 0 MKSTREAM",
                              cfg->jobs, cfg->group);
        break;
    case PH_RECOVER:
        r = redisAsyncCommand(ac, on_read, s, "XREADGROUP GROUP %s %s COUNT %s STREAMS %s %s",
                              cfg->group, cfg->consumer, count, cfg->jobs, s->recover_from);
        break;
    default:
        if (now(s) >= s->next_claim) {
            snprintf(idle, sizeof(idle), "%lld", (long long)cfg->claim_idle_ms);
            r = redisAsyncCommand(ac, on_claim, NULL, "XAUTOCLAIM %s %s %s %s %s COUNT %s",
                                  cfg->jobs, cfg->group, cfg->consumer, idle, s->claim_from, count);
            break;
        }
        snprintf(block, sizeof(block), "%lld", (long long)cfg->block_ms);
        s->fetch_wait += (uint64_t)cfg->block_ms;
        r = redisAsyncCommand(ac, on_read, NULL,
                              "XREADGROUP GROUP %s %s COUNT %s BLOCK %s STREAMS %s >",
                              cfg->group, cfg->consumer, count, block, cfg->jobs);
        break;
    }
    if (r == REDIS_OK) {
        s->fetching = 1;
        s->fetch_sent = now(s);
    }
}

/* ---- the control stream (ctl connection) ----------------------------- */

static void on_control(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    redisReply *reply = r;
    (void)priv;
    s->ctl_reading = 0;
    if (reply == NULL || s->stopping)
        return;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2) {
        const redisReply *entries = reply->element[0]->element[1];
        for (size_t i = 0; i < entries->elements; i++) {
            const redisReply *e = entries->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 2)
                continue;
            snprintf(s->ctl_last, sizeof(s->ctl_last), "%s", e->element[0]->str);
            const redisReply *f = e->element[1];
            for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2)
                if (strcmp(f->element[k]->str, "cancel") == 0 && s->pub.on_cancel != NULL)
                    s->pub.on_cancel(s->pub.arg, f->element[k + 1]->str);
        }
    } else if (reply->type == REDIS_REPLY_ERROR) {
        kiln_warn("redis control: %s", reply->str);
    }
    control_next(s);
}

/* Where the stream stood at start: read on from exactly there ("$" at each
 * read would miss entries added between two reads). */
static void on_control_tail(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    redisReply *reply = r;
    (void)priv;
    s->ctl_reading = 0;
    if (reply == NULL || s->stopping)
        return;
    strcpy(s->ctl_last, "0-0");
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements >= 1)
        snprintf(s->ctl_last, sizeof(s->ctl_last), "%s", reply->element[0]->element[0]->str);
    control_next(s);
}

/* Every worker reads the whole control stream (no group), from where it
 * stood when the worker started. */
static void control_next(struct rsrc *s)
{
    char block[24];
    if (!s->ctl.up || s->ctl_reading || s->stopping)
        return;
    if (strcmp(s->ctl_last, "$") == 0) {
        if (redisAsyncCommand(s->ctl.ac, on_control_tail, NULL, "XREVRANGE %s + - COUNT 1",
                              s->pub.cfg->control) == REDIS_OK)
            s->ctl_reading = 1;
        return;
    }
    snprintf(block, sizeof(block), "%lld", (long long)s->pub.cfg->block_ms);
    if (redisAsyncCommand(s->ctl.ac, on_control, NULL, "XREAD BLOCK %s STREAMS %s %s", block,
                          s->pub.cfg->control, s->ctl_last) == REDIS_OK)
        s->ctl_reading = 1;
}

/* ---- the tick: watchdog, heartbeat, paused fetches ------------------- */

static void on_depth(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    redisReply *reply = r;
    (void)priv;
    if (reply == NULL || s->stopping)
        return;
    /* XINFO GROUPS: [[name, g, consumers, n, pending, n, last-delivered-id, id,
     * (7.0:) entries-read, n, lag, n], ...] */
    if (reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *g = reply->element[i];
        int ours = 0;
        for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2) {
            const redisReply *key = g->element[k], *val = g->element[k + 1];
            if (key->type != REDIS_REPLY_STRING && key->type != REDIS_REPLY_STATUS)
                continue;
            if (strcmp(key->str, "name") == 0)
                ours = val->type == REDIS_REPLY_STRING && strcmp(val->str, s->pub.cfg->group) == 0;
            else if (ours && strcmp(key->str, "pending") == 0 && val->type == REDIS_REPLY_INTEGER)
                s->pending = val->integer;
            else if (ours && strcmp(key->str, "lag") == 0)
                s->lag = val->type == REDIS_REPLY_INTEGER ? val->integer : -1;
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    struct rsrc *s = t->data;
    uint64_t n = now(s);
    struct rconn *conns[] = {&s->cmd, &s->fetch, &s->ctl};
    for (int i = 0; i < 3; i++)
        if (conns[i]->ac != NULL && !conns[i]->up && n - conns[i]->connect_started > CONNECT_MS)
            conn_reset(conns[i], "connect timed out");
    if (s->fetching && n - s->fetch_sent > s->fetch_wait)
        conn_reset(&s->fetch, "a read is overdue");
    for (struct op *op = s->head; op != NULL; op = op->next)
        if (op->sent) {
            if (n - op->sent_at > CMD_STALL_MS)
                conn_reset(&s->cmd, "a write is overdue");
            break;
        }
    if (n >= s->next_depth && s->cmd.up) {
        s->next_depth = n + 5000;
        redisAsyncCommand(s->cmd.ac, on_depth, NULL, "XINFO GROUPS %s", s->pub.cfg->jobs);
    }
    if (n >= s->next_touch) {
        s->next_touch = n + (uint64_t)s->pub.cfg->claim_idle_ms / 3;
        if (s->inflight != NULL)
            touch_inflight(s);
    }
    fetch_next(s);
}

/* ---- the interface --------------------------------------------------- */

static int redis_start(struct kiln_source *src)
{
    struct rsrc *s = (struct rsrc *)src;
    conn_start(&s->cmd);
    conn_start(&s->fetch);
    conn_start(&s->ctl);
    uv_timer_start(&s->tick, on_tick, 1000, 1000);
    return 0;
}

static void redis_credit(struct kiln_source *src, unsigned n)
{
    struct rsrc *s = (struct rsrc *)src;
    s->credit += n;
    fetch_next(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct rsrc *s = h->data;
    if (--s->closing == 0)
        free(s);
}

static void redis_release(struct kiln_source *src, struct kiln_delivery *pub)
{
    release((struct rsrc *)src, (struct rdelivery *)pub); /* stays pending in Redis */
}

static void redis_stop(struct kiln_source *src)
{
    struct rsrc *s = (struct rsrc *)src;
    s->draining = 1;
    /* a blocking read under way may still bring entries: they are not
     * taken (no credit) and stay pending for another worker */
    s->credit = 0;
}

static int redis_idle(struct kiln_source *src)
{
    return ((struct rsrc *)src)->head == NULL;
}

static int redis_ready(struct kiln_source *src, char *why, size_t len)
{
    struct rsrc *s = (struct rsrc *)src;
    if (s->cmd.up && s->fetch.up)
        return 1;
    snprintf(why, len, "not connected to redis at %s:%d", s->host, s->port);
    return 0;
}

static void redis_gauges(struct kiln_source *src, FILE *out)
{
    struct rsrc *s = (struct rsrc *)src;
    fprintf(out, "# HELP kiln_redis_pending Entries of the group delivered and not yet acknowledged.\n"
                 "# TYPE kiln_redis_pending gauge\nkiln_redis_pending %lld\n", s->pending);
    fprintf(out, "# HELP kiln_redis_lag Entries of the job stream not yet delivered to the group.\n"
                 "# TYPE kiln_redis_lag gauge\nkiln_redis_lag %lld\n", s->lag);
}

static void redis_destroy(struct kiln_source *src)
{
    struct rsrc *s = (struct rsrc *)src;
    s->stopping = 1;
    if (s->cmd.ac)
        redisAsyncFree(s->cmd.ac);
    if (s->fetch.ac)
        redisAsyncFree(s->fetch.ac);
    if (s->ctl.ac)
        redisAsyncFree(s->ctl.ac);
    while (s->head != NULL) {
        struct op *op = s->head;
        s->head = op->next;
        redisFreeCommand(op->cmd);
        free(op);
    }
    while (s->inflight != NULL)
        release(s, s->inflight);
    free(s->user);
    free(s->password);
    /* three timers to close before the struct goes */
    s->closing = 4;
    s->tick.data = s->cmd.retry.data = s->fetch.retry.data = s->ctl.retry.data = s;
    uv_close((uv_handle_t *)&s->tick, on_timer_closed);
    uv_close((uv_handle_t *)&s->cmd.retry, on_timer_closed);
    uv_close((uv_handle_t *)&s->fetch.retry, on_timer_closed);
    uv_close((uv_handle_t *)&s->ctl.retry, on_timer_closed);
}

static const struct kiln_source_ops redis_ops = {
    .name = "redis",
    .start = redis_start,
    .credit = redis_credit,
    .write = redis_write,
    .ack = redis_ack,
    .release = redis_release,
    .stop = redis_stop,
    .idle = redis_idle,
    .ready = redis_ready,
    .gauges = redis_gauges,
    .destroy = redis_destroy,
};

/* redis://[[user]:password@]host[:port][/db] */
static int parse_url(struct rsrc *s, const char *url, char *err, size_t errlen)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0)
        goto bad;
    p += 8;
    const char *at = strchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL)
            goto bad;
        if (colon > p)
            s->user = strndup(p, (size_t)(colon - p));
        s->password = strndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0 || hlen >= sizeof(s->host))
        goto bad;
    memcpy(s->host, p, hlen);
    s->host[hlen] = '\0';
    p += hlen;
    s->port = 6379;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            goto bad;
        s->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1] != '\0') {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (*end != '\0' || db < 0)
            goto bad;
        s->db = (int)db;
    } else if (*p != '\0' && strcmp(p, "/") != 0) {
        goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen, "bad Redis URL '%s' (want redis://[:password@]host[:port][/db])", url);
    return -EINVAL;
}

int kiln_source_redis_new(uv_loop_t *loop, const struct kiln_config *cfg,
                          kiln_delivery_cb cb, void *arg, struct kiln_source **out,
                          char *err, size_t errlen)
{
    struct rsrc *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    int r = parse_url(s, cfg->redis, err, errlen);
    if (r < 0) {
        free(s->user);
        free(s->password);
        free(s);
        return r;
    }
    s->pub.ops = &redis_ops;
    s->pub.loop = loop;
    s->pub.cfg = cfg;
    s->pub.on_delivery = cb;
    s->pub.arg = arg;
    strcpy(s->claim_from, "0-0");
    strcpy(s->ctl_last, "$");
    s->pending = s->lag = -1;
    struct rconn *conns[] = {&s->cmd, &s->fetch, &s->ctl};
    const char *names[] = {"cmd", "fetch", "control"};
    for (int i = 0; i < 3; i++) {
        conns[i]->s = s;
        conns[i]->name = names[i];
        uv_timer_init(loop, &conns[i]->retry);
        conns[i]->retry.data = conns[i];
    }
    uv_timer_init(loop, &s->tick);
    s->tick.data = s;
    *out = &s->pub;
    return 0;
}
