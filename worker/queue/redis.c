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
 *
 * This file: the connections, the outbox, the tick and the ops; the reads
 * are in redis_fetch.c, the socket watcher in redis_uv.c, --redis parsing in
 * redis_url.c.
 */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "queue/options.h"
#include "base/log.h"
#include "queue/redis_internal.h"
#include "queue/redis_uv.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CMD_STALL_MS 15000
#define CONNECT_MS 5000

static void conn_start(struct rconn *c);

/* ---- connections ----------------------------------------------------- */

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
    kiln_warn("redis %s connection to %s:%d down; retrying in %llu ms", c->name, c->s->url.host,
              c->s->url.port, (unsigned long long)c->backoff);
    uv_timer_start(&c->retry, on_retry, c->backoff, 0);
}

static void flush_outbox(struct rsrc *s);
static void on_client_id(redisAsyncContext *ac, void *r, void *priv);

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
    kiln_info("redis %s connection up (%s:%d)", c->name, s->url.host, s->url.port);
    if (c->ever_up && s->pub.on_count != NULL)
        s->pub.on_count(s->pub.arg, KILN_SOURCE_RECONNECTED);
    c->ever_up = 1;
    c->up = 1;
    c->backoff = 0;
    redisEnableKeepAlive((redisContext *)&ac->c);
    if (c == &s->cmd) {
        flush_outbox(s);
    } else if (c == &s->ctl) {
        s->ctl_reading = 0;
        kiln__redis_control_next(s);
    } else {
        s->fetching = 0;
        s->phase = PH_GROUP;
        s->fetch_id = 0;
        redisAsyncCommand(c->ac, on_client_id, NULL, "CLIENT ID"); /* (answered before the reads) */
        kiln__redis_fetch_next(s);
    }
}

static void on_client_id(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)priv;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
        ((struct rconn *)ac->data)->s->fetch_id = reply->integer;
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
    redisAsyncContext *ac = redisAsyncConnect(s->url.host, s->url.port);
    if (ac == NULL || ac->err) {
        kiln_warn("redis %s connect failed: %s", c->name, ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->connect_started = kiln__redis_now(s);
    if (kiln_redis_uv_attach(ac, s->pub.loop) < 0) {
        kiln_warn("redis %s: cannot watch the socket", c->name);
        redisAsyncFree(ac);
        c->ac = NULL;
        schedule_retry(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued ahead of everything else on this connection */
    if (s->url.password != NULL && s->url.user != NULL)
        redisAsyncCommand(ac, on_setup, NULL, "AUTH %s %s", s->url.user, s->url.password);
    else if (s->url.password != NULL)
        redisAsyncCommand(ac, on_setup, NULL, "AUTH %s", s->url.password);
    if (s->url.db != 0)
        redisAsyncCommand(ac, on_setup, NULL, "SELECT %d", s->url.db);
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

void kiln__redis_release(struct rsrc *s, struct rdelivery *d)
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
        if (op->acked->pub.unslotted)
            s->mine_credit++;
        else
            s->acks_unconfirmed--;
        kiln__redis_release(s, op->acked);
    }
    redisFreeCommand(op->cmd);
    free(op);
    if (reply_was_ack)
        kiln__redis_fetch_next(s); /* its slot counts as free only now */
}

static void op_send(struct rsrc *s, struct op *op)
{
    if (!s->cmd.up || op->sent)
        return;
    if (redisAsyncFormattedCommand(s->cmd.ac, on_op_reply, op, op->cmd, op->len) == REDIS_OK) {
        op->sent = 1;
        op->sent_at = kiln__redis_now(s);
    }
}

static void flush_outbox(struct rsrc *s)
{
    for (struct op *op = s->head; op != NULL; op = op->next)
        op_send(s, op);
}

int kiln__redis_enqueue(struct rsrc *s, int argc, const char **argv, const size_t *argvlen,
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
    return kiln__redis_enqueue(s, 5, argv, argvlen, cb, arg, NULL);
}

static void redis_ack(struct kiln_source *src, struct kiln_delivery *pub)
{
    struct rsrc *s = (struct rsrc *)src;
    struct rdelivery *d = (struct rdelivery *)pub;
    const char *argv[] = {"XACK", d->stream, s->pub.cfg->group, d->id};
    s->acks_unconfirmed += !d->pub.unslotted;
    if (kiln__redis_enqueue(s, 4, argv, NULL, NULL, NULL, d) < 0) {
        s->acks_unconfirmed -= !d->pub.unslotted;
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
            kiln__redis_enqueue(s, n, argv, NULL, NULL, NULL, NULL);
            n = first;
        }
    }
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
    uint64_t n = kiln__redis_now(s);
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
        /* a third of --claim-idle-ms from now, less half a tick, so the
         * tick that comes then touches rather than the one after */
        uint64_t third = (uint64_t)s->pub.cfg->claim_idle_ms / 3;
        s->next_touch = n + (third > s->tick_ms / 2 ? third - s->tick_ms / 2 : 0);
        if (s->inflight != NULL)
            touch_inflight(s);
    }
    kiln__redis_session_tick(s);
    kiln__redis_fetch_next(s);
}

/* ---- the interface --------------------------------------------------- */

static int redis_start(struct kiln_source *src)
{
    struct rsrc *s = (struct rsrc *)src;
    conn_start(&s->cmd);
    conn_start(&s->fetch);
    conn_start(&s->ctl);
    /* every second, or often enough to touch running entries three times
     * within --claim-idle-ms (a tick of 1 s let a short claim time see a
     * running job as idle: another worker took it over) */
    uint64_t every = (uint64_t)s->pub.cfg->claim_idle_ms / 3;
    s->tick_ms = every < 10 ? 10 : every > 1000 ? 1000 : every;
    uv_timer_start(&s->tick, on_tick, s->tick_ms, s->tick_ms);
    return 0;
}

static void redis_credit(struct kiln_source *src, unsigned n)
{
    struct rsrc *s = (struct rsrc *)src;
    s->credit += n;
    kiln__redis_fetch_next(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct rsrc *s = h->data;
    if (--s->closing == 0)
        free(s);
}

static void redis_release(struct kiln_source *src, struct kiln_delivery *pub)
{
    struct rsrc *s = (struct rsrc *)src;
    if (pub->unslotted)
        s->mine_credit++;
    kiln__redis_release(s, (struct rdelivery *)pub); /* stays pending in Redis */
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
    snprintf(why, len, "not connected to redis at %s:%d", s->url.host, s->url.port);
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
        kiln__redis_release(s, s->inflight);
    kiln_redis_url_free(&s->url);
    free(s->mine);
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
    .session_claim = kiln__redis_session_claim,
    .session_forward = kiln__redis_session_forward,
    .session_end = kiln__redis_session_end,
    .session_gate = kiln__redis_session_gate,
    .session_renew = kiln__redis_session_renew,
};

int kiln_source_redis_new(uv_loop_t *loop, const struct kiln_queue_opts *cfg,
                          kiln_delivery_cb cb, void *arg, struct kiln_source **out,
                          char *err, size_t errlen)
{
    struct rsrc *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "redis: out of memory");
        return -ENOMEM;
    }
    int r = kiln_redis_url_parse(&s->url, cfg->redis, err, errlen);
    if (r < 0) {
        free(s);
        return r;
    }
    s->pub.ops = &redis_ops;
    s->pub.loop = loop;
    s->pub.cfg = cfg;
    s->pub.on_delivery = cb;
    s->pub.arg = arg;
    strcpy(s->claim_from, "0-0");
    s->mine_credit = 64;
    unsigned char nonce[6];
    if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
        memset(nonce, 0, sizeof(nonce));
    snprintf(s->me, sizeof(s->me), "%.120s %02x%02x%02x%02x%02x%02x", cfg->consumer, nonce[0],
             nonce[1], nonce[2], nonce[3], nonce[4], nonce[5]);
    if (asprintf(&s->mine, "%s:worker:%s", cfg->jobs, cfg->consumer) < 0) {
        kiln_redis_url_free(&s->url);
        free(s);
        snprintf(err, errlen, "redis: out of memory");
        return -ENOMEM;
    }
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
