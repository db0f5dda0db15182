/*
 * Kafka source and sink, on librdkafka, driven from the worker's libuv loop
 * (kafka_client.c). This file is the source: consuming, pausing,
 * rebalances, and the ops; frames go out through kafka_produce.c, and with
 * --kafka-transactions through kafka_txn.c.
 *
 * Consuming: a balanced consumer (cooperative-sticky) with
 * enable.auto.offset.store=false. Offsets are stored only contiguously: a
 * partition's stored offset is one past the longest run of finished jobs
 * from where it stood, so it never moves past a job still running
 * (kafka_offsets.c). A job is finished when its exit frame has been
 * delivered. Auto-commit then commits what is stored. When every slot is
 * full the assigned partitions are paused (and newly assigned ones paused
 * too); the consumer is still served, so long jobs never get the worker
 * thrown out of its group. Partitions revoked or lost: their running jobs
 * finish but store nothing; the new owner runs them again.
 */
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/options.h"
#include "wire/proto.h"
#include "base/log.h"
#include "queue/kafka_internal.h"

static void drain(struct ksrc *s);

/* ---- pausing ---------------------------------------------------------- */

static void set_paused(struct ksrc *s, int pause, int only_new)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    if (only_new) {
        l = rd_kafka_topic_partition_list_new(8);
        for (struct kiln_kafka_part *p = s->offsets.parts; p; p = p->next)
            if (p->assigned == KILN_KAFKA_JUST_ASSIGNED)
                rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
    } else if (rd_kafka_assignment(s->consumer, &l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return; /* it allocates the list itself */
    }
    if (l->cnt > 0) {
        if (pause)
            rd_kafka_pause_partitions(s->consumer, l);
        else
            rd_kafka_resume_partitions(s->consumer, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (!only_new)
        s->paused = pause;
}

static void update_pause(struct ksrc *s)
{
    int full = s->credit == 0 || s->backlog != NULL;
    if (full != s->paused)
        set_paused(s, full, 0);
}

/* ---- rebalances ------------------------------------------------------- */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct ksrc *s = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (s->pub.on_count != NULL)
        s->pub.on_count(s->pub.arg, KILN_SOURCE_REBALANCED);
    s->assigned_once = 1;
    rd_kafka_error_t *e = NULL;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            struct kiln_kafka_part *p =
                kiln_kafka_offsets_part(&s->offsets, parts->elems[i].topic, parts->elems[i].partition);
            if (p != NULL)
                p->assigned = KILN_KAFKA_JUST_ASSIGNED;
        }
        if (cooperative)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        /* the new ones follow the others: paused while the slots are full,
         * and otherwise resumed, explicitly: librdkafka keeps a partition's
         * pause across losing and regaining it, and one paused before a
         * lost assignment would never fetch again */
        set_paused(s, s->paused, 1);
        for (struct kiln_kafka_part *p = s->offsets.parts; p; p = p->next)
            if (p->assigned == KILN_KAFKA_JUST_ASSIGNED)
                p->assigned = KILN_KAFKA_ASSIGNED;
        kiln_info("kafka: %d partition(s) assigned", parts->cnt);
    } else {
        int lost = rd_kafka_assignment_lost(rk);
        for (int i = 0; i < parts->cnt; i++) {
            struct kiln_kafka_part *p =
                kiln_kafka_offsets_part(&s->offsets, parts->elems[i].topic, parts->elems[i].partition);
            /* jobs of this partition still running will store nothing:
             * the new owner takes them from the last stored offset */
            if (p != NULL)
                kiln_kafka_part_revoke(p);
        }
        /* jobs waiting in the backlog for a revoked partition are dropped */
        struct kdelivery **pp = &s->backlog;
        s->backlog_tail = &s->backlog;
        while (*pp) {
            struct kdelivery *d = *pp;
            if (d->gen != d->part->gen) {
                *pp = d->next;
                rd_kafka_message_destroy(d->msg);
                free(d);
            } else {
                s->backlog_tail = &d->next;
                pp = &d->next;
            }
        }
        if (cooperative)
            e = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
        kiln_info("kafka: %d partition(s) %s", parts->cnt, lost ? "lost" : "revoked");
    }
    if (e != NULL) {
        kiln_error("kafka: rebalance: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
}

/* ---- consuming -------------------------------------------------------- */

static void deliver(struct ksrc *s, struct kdelivery *d)
{
    s->credit--;
    s->pub.on_delivery(s->pub.arg, &d->pub);
}

static void take(struct ksrc *s, rd_kafka_message_t *m)
{
    struct kdelivery *d = calloc(1, sizeof(*d));
    struct kiln_kafka_part *p = kiln_kafka_offsets_part(&s->offsets, rd_kafka_topic_name(m->rkt),
                                                        m->partition);
    if (d == NULL || p == NULL || kiln_kafka_part_track(p, m->offset) < 0) {
        /* not tracked, so never stored: it comes again after a restart */
        kiln_error("kafka: out of memory taking a job");
        free(d);
        rd_kafka_message_destroy(m);
        return;
    }
    d->pub.src = &s->pub;
    d->pub.data = m->payload;
    d->pub.len = m->len;
    d->pub.missing = m->payload ? NULL : "the Kafka message has no value";
    d->pub.attempt = 1;
    snprintf(d->pub.ref, sizeof(d->pub.ref), "%s[%" PRId32 "]@%" PRId64,
             rd_kafka_topic_name(m->rkt), m->partition, m->offset);
    d->pub.enqueued_ms = rd_kafka_message_timestamp(m, NULL);
    if (d->pub.enqueued_ms < 0)
        d->pub.enqueued_ms = 0;
    d->part = p;
    d->gen = p->gen;
    d->offset = m->offset;
    d->msg = m;
    if (s->credit > 0 && s->backlog == NULL) {
        deliver(s, d);
    } else { /* fetched before the pause took hold: runs when a slot frees */
        *s->backlog_tail = d;
        s->backlog_tail = &d->next;
    }
}

static void drain(struct ksrc *s)
{
    rd_kafka_message_t *m;
    while (s->backlog != NULL && s->credit > 0) {
        struct kdelivery *d = s->backlog;
        if ((s->backlog = d->next) == NULL)
            s->backlog_tail = &s->backlog;
        deliver(s, d);
    }
    /* always served, full or not: rebalances and membership need it */
    while (!s->closing && (m = rd_kafka_consumer_poll(s->consumer, 0)) != NULL) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
        } else if (m->err) {
            kiln_warn("kafka consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
        } else {
            take(s, m);
        }
    }
    update_pause(s);
}

/* ---- the ops ---------------------------------------------------------- */

/* Store `next` (if >= 0) for auto-commit to commit. */
static void store_offset(struct ksrc *s, const struct kiln_kafka_part *p, int64_t next)
{
    if (next < 0)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = next;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(s->consumer, l);
    if (err)
        kiln_warn("kafka: storing offset %s[%" PRId32 "]@%" PRId64 ": %s", p->topic,
                  p->partition, next, rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(l);
}

static void kafka_ack(struct kiln_source *src, struct kiln_delivery *pub)
{
    struct ksrc *s = (struct ksrc *)src;
    struct kdelivery *d = (struct kdelivery *)pub;
    /* with transactions the offset went out with the exit frame */
    if (!s->txn && kiln_kafka_part_current(d->part, d->gen))
        store_offset(s, d->part, kiln_kafka_part_finish(d->part, d->offset));
    rd_kafka_message_destroy(d->msg);
    free(d);
}

static void kafka_credit(struct kiln_source *src, unsigned n)
{
    struct ksrc *s = (struct ksrc *)src;
    if (s->stopped)
        return;
    s->credit += n;
    drain(s);
}

static void kafka_release(struct kiln_source *src, struct kiln_delivery *pub)
{
    struct kdelivery *d = (struct kdelivery *)pub;
    (void)src;
    /* its offset is never stored: the partition's next owner runs it */
    rd_kafka_message_destroy(d->msg);
    free(d);
}

static void kafka_gauges(struct kiln_source *src, FILE *out)
{
    struct ksrc *s = (struct ksrc *)src;
    rd_kafka_topic_partition_list_t *l = NULL;
    long long lag = 0;
    if (rd_kafka_assignment(s->consumer, &l) == 0 && l != NULL) {
        rd_kafka_position(s->consumer, l);
        for (int i = 0; i < l->cnt; i++) {
            int64_t lo, hi;
            if (rd_kafka_get_watermark_offsets(s->consumer, l->elems[i].topic, l->elems[i].partition,
                                               &lo, &hi) == 0 && hi >= 0 && l->elems[i].offset >= 0 &&
                hi > l->elems[i].offset)
                lag += hi - l->elems[i].offset;
        }
    }
    fprintf(out, "# HELP kiln_kafka_consumer_lag Messages of this worker's partitions not yet taken.\n"
                 "# TYPE kiln_kafka_consumer_lag gauge\nkiln_kafka_consumer_lag %lld\n", lag);
    fprintf(out, "# HELP kiln_kafka_assigned_partitions Partitions this worker holds.\n"
                 "# TYPE kiln_kafka_assigned_partitions gauge\nkiln_kafka_assigned_partitions %d\n",
            l ? l->cnt : 0);
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
}

static int kafka_ready(struct kiln_source *src, char *why, size_t len)
{
    struct ksrc *s = (struct ksrc *)src;
    if (s->failed) {
        snprintf(why, len, "the producer failed: this worker can write no frames");
        return 0;
    }
    if (s->assigned_once)
        return 1;
    snprintf(why, len, "not yet a member of Kafka group %s", s->pub.cfg->group);
    return 0;
}

/* Every write taken and not yet reported: reported -EPIPE, from the loop. */
static void fail_pending(struct ksrc *s, struct kop **list)
{
    while (*list) {
        struct kop *op = *list;
        *list = op->next;
        op->status = -EPIPE;
        snprintf(op->err, sizeof(op->err), "the queue failed: not written");
        op->next = s->done;
        s->done = op;
    }
}

void kiln__kafka_fail(struct ksrc *s, const char *why)
{
    int first = !s->failed;
    if (first)
        kiln_error("kafka: %s; this worker can write no more frames", why);
    s->failed = 1;
    fail_pending(s, &s->tx_ops);
    s->tx_tail = &s->tx_ops;
    fail_pending(s, &s->held);
    s->held_tail = &s->held;
    fail_pending(s, &s->retry);
    uv_timer_start(&s->defer, kiln__kafka_on_defer, 0, 0);
    if (first && s->pub.on_fatal != NULL)
        s->pub.on_fatal(s->pub.arg, why);
}

static void kafka_stop(struct kiln_source *src)
{
    struct ksrc *s = (struct ksrc *)src;
    s->stopped = 1;
    s->credit = 0;
    update_pause(s); /* everything paused; the consumer is still served */
}

static int kafka_idle(struct kiln_source *src)
{
    struct ksrc *s = (struct ksrc *)src;
    if (s->failed)
        return 1; /* nothing it holds will ever be confirmed */
    return rd_kafka_outq_len(s->producer) == 0 && s->retry == NULL && s->done == NULL &&
           (!s->txn || (s->tx_ops == NULL && s->held == NULL && s->tx == TX_OPEN));
}

/* ---- the control topic ------------------------------------------------ */

/* A control message: msgpack {cancel: id}, or a session's (kafka_session.c).
 * The topic is read from its earliest message: cancels older than a
 * worker remembers them (10 minutes) are history. */
static void control_message(struct ksrc *s, const rd_kafka_message_t *m)
{
    msgpack_unpacked u;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t at = rd_kafka_message_timestamp(m, NULL);
    msgpack_unpacked_init(&u);
    if (m->payload && kiln_mp_unpack(&u, m->payload, m->len) == 0 &&
        !kiln__kafka_session_message(&u.data, at) &&
        (at <= 0 || at > (int64_t)now.tv_sec * 1000 - 10 * 60 * 1000)) {
        const msgpack_object *id = kiln_mp_get(&u.data, "cancel");
        char *sid = id ? kiln_mp_strdup(id) : NULL;
        if (sid != NULL && s->pub.on_cancel != NULL)
            s->pub.on_cancel(s->pub.arg, sid);
        free(sid);
    }
    msgpack_unpacked_destroy(&u);
}

static void on_control_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct ksrc *s = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        kiln_info("kafka: control topic %s: listening (%d partition(s))", s->pub.cfg->control, parts->cnt);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* ---- the loop's side -------------------------------------------------- */

static void consumer_ready(struct ksrc *s)
{
    drain(s);
}

static void producer_ready(struct ksrc *s)
{
    rd_kafka_poll(s->producer, 0); /* delivery reports */
}

static void control_ready(struct ksrc *s)
{
    rd_kafka_message_t *m;
    while (!s->closing && (m = rd_kafka_consumer_poll(s->control, 0)) != NULL) {
        if (!m->err)
            control_message(s, m);
        rd_kafka_message_destroy(m);
    }
}

static void on_tick(uv_timer_t *t)
{
    struct ksrc *s = t->data;
    kiln__kafka_retry(s);
    rd_kafka_poll(s->producer, 0);
    drain(s);
    /* the control consumer is polled even when nothing comes for it: one
     * not polled within max.poll.interval.ms leaves its group */
    control_ready(s);
}

static int kafka_start(struct kiln_source *src)
{
    struct ksrc *s = (struct ksrc *)src;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, s->pub.cfg->jobs, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(s->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        kiln_error("kafka: subscribe to %s: %s", s->pub.cfg->jobs, rd_kafka_err2str(err));
        return -EIO;
    }
    kiln_info("kafka: consuming %s as group %s%s", s->pub.cfg->jobs, s->pub.cfg->group,
              s->txn ? ", exit frames and offsets in transactions" : "");
    if (s->txn)
        kiln__kafka_txn_start(s);
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, s->pub.cfg->control, RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(s->control, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err)
        kiln_warn("kafka: control topic %s: %s; cancellation will not reach this worker",
                  s->pub.cfg->control, rd_kafka_err2str(err));
    uv_timer_start(&s->tick, on_tick, 200, 200);
    drain(s);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct ksrc *s = h->data;
    if (--s->closing == 1)
        free(s);
}

static void kafka_destroy(struct kiln_source *src)
{
    struct ksrc *s = (struct ksrc *)src;
    s->closing = 7; /* six handles to close, then free */
    kiln__kafka_session_free();
    rd_kafka_consumer_close(s->control);
    rd_kafka_queue_destroy(s->ctlq.q);
    rd_kafka_destroy(s->control);
    rd_kafka_consumer_close(s->consumer);
    rd_kafka_flush(s->producer, 5000);
    rd_kafka_queue_destroy(s->cq.q);
    rd_kafka_queue_destroy(s->pq.q);
    rd_kafka_destroy(s->consumer);
    rd_kafka_destroy(s->producer);
    for (int i = 0; i < 2; i++) {
        close(s->cq.fd[i]);
        close(s->pq.fd[i]);
        close(s->ctlq.fd[i]);
    }
    while (s->backlog) {
        struct kdelivery *d = s->backlog;
        s->backlog = d->next;
        rd_kafka_message_destroy(d->msg);
        free(d);
    }
    kiln_kafka_offsets_free(&s->offsets);
    uv_handle_t *hs[] = {(uv_handle_t *)&s->cq.poll, (uv_handle_t *)&s->pq.poll,
                         (uv_handle_t *)&s->tick, (uv_handle_t *)&s->defer,
                         (uv_handle_t *)&s->tx_timer, (uv_handle_t *)&s->ctlq.poll};
    for (int i = 0; i < 6; i++) {
        hs[i]->data = s;
        uv_close(hs[i], on_closed);
    }
}

/* ---- construction ----------------------------------------------------- */

static const struct kiln_source_ops kafka_ops = {
    .name = "kafka",
    .start = kafka_start,
    .credit = kafka_credit,
    .write = kiln__kafka_write,
    .ack = kafka_ack,
    .release = kafka_release,
    .stop = kafka_stop,
    .idle = kafka_idle,
    .ready = kafka_ready,
    .gauges = kafka_gauges,
    .destroy = kafka_destroy,
    .session_claim = kiln__kafka_session_claim,
    .session_end = kiln__kafka_session_end,
    .session_renew = kiln__kafka_session_renew,
};

/* The consumer's settings, the control consumer's and the producer's.
 * `txid` and `ctl_group` hold the values built here; they must outlive the
 * lists. */
static int client_confs(const struct kiln_queue_opts *cfg, struct kconf *cc, struct kconf *ctlc,
                        struct kconf *pc, char *txid, size_t txlen, char *ctl_group, size_t ctllen)
{
    int r = 0;
    r |= kiln__kafka_conf_set(cc, "group.id", cfg->group);
    r |= kiln__kafka_conf_set(cc, "enable.auto.offset.store", "false");
    r |= kiln__kafka_conf_set(cc, "enable.auto.commit", "true");
    r |= kiln__kafka_conf_set(cc, "auto.commit.interval.ms", "1000");
    r |= kiln__kafka_conf_set(cc, "auto.offset.reset", "earliest");
    r |= kiln__kafka_conf_set(cc, "partition.assignment.strategy", "cooperative-sticky");
    r |= kiln__kafka_conf_set(cc, "enable.partition.eof", "false");

    /* the control topic: a group of its own per worker, so every worker
     * sees every message, from the earliest kept (sessions: which exist) */
    snprintf(ctl_group, ctllen, "kiln-control-%s-%s", cfg->group, cfg->consumer);
    r |= kiln__kafka_conf_set(ctlc, "group.id", ctl_group);
    r |= kiln__kafka_conf_set(ctlc, "enable.auto.commit", "false");
    r |= kiln__kafka_conf_set(ctlc, "auto.offset.reset", "earliest");

    r |= kiln__kafka_conf_set(pc, "enable.idempotence", "true");
    r |= kiln__kafka_conf_set(pc, "linger.ms", "1");
    if (cfg->kafka_transactions) {
        /* offsets travel in the transactions, never by auto-commit */
        r |= kiln__kafka_conf_set(cc, "enable.auto.commit", "false");
        snprintf(txid, txlen, "kiln-%s-%s", cfg->group, cfg->consumer);
        r |= kiln__kafka_conf_set(pc, "transactional.id", txid);
    }
    return r < 0 ? -ENOSPC : 0;
}

int kiln_source_kafka_new(uv_loop_t *loop, const struct kiln_queue_opts *cfg,
                          kiln_delivery_cb cb, void *arg, struct kiln_source **out,
                          char *err, size_t errlen)
{
    struct kconf cc = {0}, ctlc = {0}, pc = {0};
    char txid[512], ctl_group[600];
    struct ksrc *s = NULL;
    int r;

    if (cfg->brokers == NULL) {
        snprintf(err, errlen, "--queue kafka needs --brokers");
        return -EINVAL;
    }
    if ((r = client_confs(cfg, &cc, &ctlc, &pc, txid, sizeof(txid), ctl_group,
                          sizeof(ctl_group))) < 0) {
        snprintf(err, errlen, "kafka: more settings than KILN_KAFKA_CONF_MAX");
        return r;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        snprintf(err, errlen, "kafka: out of memory");
        return -ENOMEM;
    }
    s->cq.fd[0] = s->cq.fd[1] = s->pq.fd[0] = s->pq.fd[1] = -1;
    s->ctlq.fd[0] = s->ctlq.fd[1] = -1;
    s->pub.ops = &kafka_ops;
    s->pub.loop = loop;
    s->pub.cfg = cfg;
    s->pub.on_delivery = cb;
    s->pub.arg = arg;
    s->backlog_tail = &s->backlog;
    s->txn = cfg->kafka_transactions;
    s->tx_tail = &s->tx_ops;
    s->held_tail = &s->held;

    r = -EINVAL; /* the clients' errors are their settings' */
    if ((s->consumer = kiln__kafka_client(s, RD_KAFKA_CONSUMER, &cc, on_rebalance, err, errlen)) == NULL ||
        (s->control = kiln__kafka_client(s, RD_KAFKA_CONSUMER, &ctlc, on_control_rebalance, err,
                                         errlen)) == NULL ||
        (s->producer = kiln__kafka_client(s, RD_KAFKA_PRODUCER, &pc, NULL, err, errlen)) == NULL)
        goto fail;
    if ((r = kiln__kafka_queue_open(&s->cq, rd_kafka_queue_get_consumer(s->consumer), err, errlen)) < 0 ||
        (r = kiln__kafka_queue_open(&s->pq, rd_kafka_queue_get_main(s->producer), err, errlen)) < 0 ||
        (r = kiln__kafka_queue_open(&s->ctlq, rd_kafka_queue_get_consumer(s->control), err, errlen)) < 0)
        goto fail;
    /* watching a pipe does not fail in practice; if it did, a loop handle
     * might be live: the worker exits anyway */
    if ((r = kiln__kafka_queue_start(s, &s->cq, consumer_ready, err, errlen)) < 0 ||
        (r = kiln__kafka_queue_start(s, &s->pq, producer_ready, err, errlen)) < 0 ||
        (r = kiln__kafka_queue_start(s, &s->ctlq, control_ready, err, errlen)) < 0)
        goto fail;
    uv_timer_init(loop, &s->tick);
    uv_timer_init(loop, &s->defer);
    uv_timer_init(loop, &s->tx_timer);
    s->tick.data = s->defer.data = s->tx_timer.data = s;
    *out = &s->pub;
    return 0;
fail:
    {
        struct kqueue *kqs[] = {&s->cq, &s->pq, &s->ctlq};
        for (int i = 0; i < 3; i++) {
            if (kqs[i]->q != NULL)
                rd_kafka_queue_destroy(kqs[i]->q); /* before its client goes */
            for (int k = 0; k < 2; k++)
                if (kqs[i]->fd[k] >= 0)
                    close(kqs[i]->fd[k]);
        }
    }
    if (s->control)
        rd_kafka_destroy(s->control);
    if (s->consumer)
        rd_kafka_destroy(s->consumer);
    if (s->producer)
        rd_kafka_destroy(s->producer);
    free(s);
    return r;
}
