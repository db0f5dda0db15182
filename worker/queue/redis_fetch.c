/*
 * The Redis source's deliveries. The "fetch" connection carries the group
 * reads, one at a time: XGROUP CREATE, then this consumer's own pending
 * entries (what it was running when it died), then blocking XREADGROUPs
 * and, every so often, an XAUTOCLAIM sweep for entries other workers left
 * idle past --claim-idle-ms; never more jobs than the worker's credit. An
 * entry that was not fresh learns its delivery count (the attempt) first.
 * The "ctl" connection reads the whole control stream (no group) from where
 * it stood when the worker started.
 */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/options.h"
#include "base/log.h"
#include "queue/redis_internal.h"


/* ---- deliveries ------------------------------------------------------ */

/* (entry ids are a stream's own: the job stream and this worker's may
 * hold the same id) */
static int is_inflight(struct rsrc *s, const char *id, const char *stream)
{
    for (struct rdelivery *d = s->inflight; d != NULL; d = d->next)
        if (d->stream == stream && strcmp(d->id, id) == 0)
            return 1;
    return 0;
}

/* A delivery's credit back: a slot's, or a forwarded job's. */
static void uncredit(struct rsrc *s, const struct rdelivery *d)
{
    if (d->pub.unslotted)
        s->mine_credit++;
    else
        s->credit++;
}

/* One entry [id, [field, value, ...]] from a read or claim. Returns a new
 * in-flight delivery, or NULL (entry deleted, or out of memory). */
static struct rdelivery *take_entry(struct rsrc *s, const redisReply *e, const char *stream)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING)
        return NULL;
    struct rdelivery *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->stream = stream;
    snprintf(d->id, sizeof(d->id), "%s", e->element[0]->str);
    snprintf(d->pub.origin, sizeof(d->pub.origin), "%s", d->id);
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
            const char *sp;
            if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "from") == 0 && v->type == REDIS_REPLY_STRING &&
                stream != s->pub.cfg->jobs && (sp = strrchr(v->str, ' ')) != NULL)
                snprintf(d->pub.origin, sizeof(d->pub.origin), "%s", sp + 1); /* forwarded: its first entry */
            if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "job") == 0 &&
                v->type == REDIS_REPLY_STRING && d->data == NULL) {
                if ((d->data = malloc(v->len ? v->len : 1)) == NULL) {
                    free(d);
                    return NULL;
                }
                memcpy(d->data, v->str, v->len);
                d->pub.data = d->data;
                d->pub.len = v->len;
                d->pub.missing = NULL;
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
        uncredit(s, d);
        kiln__redis_release(s, d);
        return;
    }
    /* XPENDING key group id id 1 -> [[id, consumer, idle, deliveries]] */
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 4 &&
        reply->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        d->pub.attempt = (unsigned)reply->element[0]->element[3]->integer;
    else if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 0) {
        uncredit(s, d); /* acknowledged elsewhere meanwhile: nothing to run */
        kiln__redis_release(s, d);
        return;
    }
    kiln_info("job entry %s taken over (attempt %u)", d->id, d->pub.attempt);
    s->pub.on_delivery(s->pub.arg, &d->pub);
}

/* Entries this worker did not get fresh: learn their delivery count first. */
static void deliver_again(struct rsrc *s, struct rdelivery *d)
{
    const struct kiln_queue_opts *cfg = s->pub.cfg;
    if (redisAsyncCommand(s->fetch.ac, on_pending_count, d, "XPENDING %s %s %s %s 1",
                          d->stream, cfg->group, d->id, d->id) != REDIS_OK)
        s->pub.on_delivery(s->pub.arg, &d->pub);
}

static void deliver_entries(struct rsrc *s, const redisReply *entries, int fresh, const char *stream)
{
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
            e->element[0]->type == REDIS_REPLY_STRING && is_inflight(s, e->element[0]->str, stream))
            continue; /* ours and still running (or its ack is in flight) */
        struct rdelivery *d = take_entry(s, e, stream);
        if (d == NULL)
            continue;
        if (stream == s->mine) { /* a forwarded job: outside the slots */
            d->pub.unslotted = 1;
            s->mine_credit--;
        } else {
            s->credit--;
        }
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
    s->fetch_mine_only = 0;
    if (reply == NULL)
        return 1; /* connection lost: on_connect restarts the loop */
    if (reply->type != REDIS_REPLY_ERROR)
        return 0;
    kiln_warn("redis fetch: %s", reply->str);
    if (strncmp(reply->str, "NOGROUP", 7) == 0)
        s->phase = PH_GROUP; /* stream or group deleted: create again */
    s->pause_until = kiln__redis_now(s) + 1000;
    return 1;
}

static void on_group(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    redisReply *reply = r;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) == 0)
        reply->type = REDIS_REPLY_STATUS; /* it exists: fine */
    if (fetch_failed(s, reply))
        return;
    /* and this worker's own stream, where others forward its sessions' jobs */
    if (priv == NULL && redisAsyncCommand(ac, on_group, s, "XGROUP CREATE %s %s 0 MKSTREAM", s->mine,
                                          s->pub.cfg->group) == REDIS_OK) {
        s->fetching = 1;
        return;
    }
    s->phase = PH_RECOVER;
    strcpy(s->recover_from, "0");
    kiln__redis_fetch_next(s);
}

static void on_read(redisAsyncContext *ac, void *r, void *priv)
{
    struct rsrc *s = ((struct rconn *)ac->data)->s;
    redisReply *reply = r;
    int recovering = priv != NULL;
    if (fetch_failed(s, reply))
        return;
    /* [[stream, [entry, ...]], ...] or nil when the block timed out */
    const redisReply *entries = NULL;
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 || st->element[0]->type != REDIS_REPLY_STRING ||
            st->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        int own = strcmp(st->element[0]->str, s->mine) == 0;
        entries = st->element[1];
        deliver_entries(s, entries, !recovering, own ? s->mine : s->pub.cfg->jobs);
    }
    if (recovering) {
        if (entries == NULL || entries->elements == 0) {
            /* our own pending list is done: the job stream's, then our own stream's */
            s->phase = s->phase == PH_RECOVER ? PH_RECOVER_MINE : PH_NEW;
            strcpy(s->recover_from, "0");
        } else {
            const redisReply *last = entries->element[entries->elements - 1];
            if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1)
                snprintf(s->recover_from, sizeof(s->recover_from), "%s", last->element[0]->str);
        }
    }
    kiln__redis_fetch_next(s);
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
            s->next_claim = kiln__redis_now(s) + (uint64_t)s->pub.cfg->claim_idle_ms / 2;
        if (reply->element[1]->type == REDIS_REPLY_ARRAY)
            deliver_entries(s, reply->element[1], 0, s->pub.cfg->jobs);
    }
    kiln__redis_fetch_next(s);
}

void kiln__redis_fetch_next(struct rsrc *s)
{
    const struct kiln_queue_opts *cfg = s->pub.cfg;
    char count[16], idle[24], block[24];
    redisAsyncContext *ac = s->fetch.ac;
    int r;

    /* An entry is the worker's until Redis confirms its XACK: the slot it
     * freed is counted only then, so the group never sees more pending
     * entries here than there are slots. */
    unsigned avail = s->credit > s->acks_unconfirmed ? s->credit - s->acks_unconfirmed : 0;
    if (s->fetching && s->fetch_mine_only && avail > 0 && !s->unblock_sent && s->fetch_id > 0 &&
        s->cmd.up) {
        /* a slot is free while the read waits on this worker's stream
         * alone: end that wait now, so the next read takes jobs again */
        char id[24];
        snprintf(id, sizeof(id), "%lld", s->fetch_id);
        const char *argv[] = {"CLIENT", "UNBLOCK", id};
        if (redisAsyncCommandArgv(s->cmd.ac, NULL, NULL, 3, argv, NULL) == REDIS_OK)
            s->unblock_sent = 1;
    }
    /* forwarded jobs of this worker's sessions are read whatever the slots:
     * one of them may be what the jobs holding the slots wait for */
    int mine_only = (avail == 0 && s->mine_credit > 0 && s->held > 0 && s->phase == PH_NEW) ||
                    s->phase == PH_RECOVER_MINE;
    if (!s->fetch.up || s->fetching || (avail == 0 && !mine_only) || s->stopping || s->draining ||
        kiln__redis_now(s) < s->pause_until || (mine_only && s->mine_credit == 0))
        return;
    snprintf(count, sizeof(count), "%u", mine_only ? s->mine_credit : avail);
    s->fetch_wait = 5000;
    switch (s->phase) {
    case PH_GROUP:
        r = redisAsyncCommand(ac, on_group, NULL, "XGROUP CREATE %s %s 0 MKSTREAM",
                              cfg->jobs, cfg->group);
        break;
    case PH_RECOVER:
    case PH_RECOVER_MINE:
        r = redisAsyncCommand(ac, on_read, s, "XREADGROUP GROUP %s %s COUNT %s STREAMS %s %s",
                              cfg->group, cfg->consumer, count,
                              s->phase == PH_RECOVER ? cfg->jobs : s->mine, s->recover_from);
        break;
    default:
        if (kiln__redis_now(s) >= s->next_claim) {
            snprintf(idle, sizeof(idle), "%lld", (long long)cfg->claim_idle_ms);
            r = redisAsyncCommand(ac, on_claim, NULL, "XAUTOCLAIM %s %s %s %s %s COUNT %s",
                                  cfg->jobs, cfg->group, cfg->consumer, idle, s->claim_from, count);
            break;
        }
        snprintf(block, sizeof(block), "%lld", (long long)cfg->block_ms);
        s->fetch_wait += (uint64_t)cfg->block_ms;
        if (mine_only || s->mine_credit == 0) {
            r = redisAsyncCommand(ac, on_read, NULL, "XREADGROUP GROUP %s %s COUNT %s BLOCK %s STREAMS %s >",
                                  cfg->group, cfg->consumer, count, block, mine_only ? s->mine : cfg->jobs);
            break;
        }
        if (s->mine_credit < avail)
            snprintf(count, sizeof(count), "%u", s->mine_credit); /* (per stream) */
        r = redisAsyncCommand(ac, on_read, NULL,
                              "XREADGROUP GROUP %s %s COUNT %s BLOCK %s STREAMS %s %s > >",
                              cfg->group, cfg->consumer, count, block, cfg->jobs, s->mine);
        break;
    }
    if (r == REDIS_OK) {
        s->fetching = 1;
        s->fetch_mine_only = mine_only && s->phase == PH_NEW;
        s->unblock_sent = 0;
        s->fetch_sent = kiln__redis_now(s);
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
    kiln__redis_control_next(s);
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
    kiln__redis_control_next(s);
}

/* Every worker reads the whole control stream (no group), from where it
 * stood when the worker started. */
void kiln__redis_control_next(struct rsrc *s)
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
