/*
 * Kafka source and sink, on librdkafka, driven from the worker's libuv loop:
 * each client's queue writes a byte to a pipe when it becomes non-empty
 * (rd_kafka_queue_io_event_enable), and a uv_poll on that pipe drains it.
 * Nothing here blocks the loop and nothing busy-polls.
 *
 * Consuming: a balanced consumer (cooperative-sticky) with
 * enable.auto.offset.store=false. Offsets are stored only contiguously: a
 * partition's stored offset is one past the longest run of finished jobs
 * from where it stood, so it never moves past a job still running. A job
 * is finished when its exit frame has been delivered. Auto-commit then
 * commits what is stored. When every slot is full the assigned partitions
 * are paused (and newly assigned ones paused too); the consumer is still
 * served, so long jobs never get the worker thrown out of its group.
 * Partitions revoked or lost: their running jobs finish but store nothing;
 * the new owner runs them again.
 *
 * Producing: an idempotent producer, key = job id, so a job's frames stay
 * in one partition in order; headers say kind, seq and attempt. librdkafka
 * retries deliveries; one that still fails for a transient reason is
 * produced again, one the cluster refuses for good ends the write with an
 * error.
 *
 * With --kafka-transactions the producer is transactional and each exit
 * frame is committed together with the consumed offsets in one
 * transaction (see the README for exactly what that does and does not make
 * exactly-once).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "wire/proto.h"
#include "core/log.h"
#include "core/metrics.h"
#include "queue/source.h"

struct kpart {
    struct kpart *next;
    char *topic;
    int32_t partition;
    int assigned;
    unsigned gen;             /* bumped at every revoke: stale acks store nothing */
    int64_t *offs;            /* in-flight offsets, ascending */
    unsigned char *done;
    size_t n, cap;
    int64_t commit_at;        /* transactions: the watermark to commit */
    int dirty;
};

struct kdelivery {
    struct kiln_delivery pub;
    struct kdelivery *next;   /* backlog link */
    struct kpart *part;
    unsigned gen;
    int64_t offset;
    rd_kafka_message_t *msg;  /* owns the payload */
};

struct kop {                  /* one produce: a frame on its way */
    struct kop *next;
    struct ksrc *s;
    char *topic, *key;
    void *value;
    size_t len;
    char kind[8], seq[24], attempt[12];
    kiln_write_cb cb;
    void *arg;
    int status;
    char err[160];
    int exit;                 /* transactions: an exit frame ... */
    struct kdelivery *job;    /* ... of this job */
};

struct kqueue {               /* a librdkafka queue watched by the loop */
    rd_kafka_queue_t *q;
    int fd[2];
    uv_poll_t poll;
};

struct ksrc {
    struct kiln_source pub;
    rd_kafka_t *consumer, *producer;
    rd_kafka_t *control;               /* reads --control: {cancel: id} */
    struct kqueue cq, pq, ctlq;
    uv_timer_t tick, defer;
    unsigned credit;
    int paused;
    struct kpart *parts;
    struct kdelivery *backlog, **backlog_tail;
    struct kop *retry, *done;  /* to produce again / to report */
    int closing;
    int stopped;                       /* draining: no more deliveries */
    int assigned_once;                 /* the group answered: we are in */
    /* --kafka-transactions */
    int txn;
    enum { TX_INIT, TX_OPEN, TX_BUSY } tx;
    struct kop *tx_ops, **tx_tail;     /* produced in the open transaction */
    struct kop *held, **held_tail;     /* waiting for the next one */
    int tx_exits;
    int tx_step;                       /* the blocking call the pool runs */
    rd_kafka_error_t *tx_err;
    rd_kafka_topic_partition_list_t *tx_offsets;
    uv_timer_t tx_timer;
    uv_work_t tx_work;
};

static void drain(struct ksrc *s);

/* ---- partitions and offsets ------------------------------------------ */

static struct kpart *part_get(struct ksrc *s, const char *topic, int32_t partition)
{
    for (struct kpart *p = s->parts; p; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    struct kpart *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->topic = strdup(topic)) == NULL) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->next = s->parts;
    s->parts = p;
    return p;
}

static int part_track(struct kpart *p, int64_t offset)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        int64_t *o = realloc(p->offs, cap * sizeof(*o));
        if (o == NULL)
            return -ENOMEM;
        p->offs = o;
        unsigned char *d = realloc(p->done, cap);
        if (d == NULL)
            return -ENOMEM;
        p->done = d;
        p->cap = cap;
    }
    p->offs[p->n] = offset;
    p->done[p->n++] = 0;
    return 0;
}

/* Mark `offset` finished; store the new contiguous watermark, if any. */
static void part_finish(struct ksrc *s, struct kpart *p, int64_t offset)
{
    size_t i, k = 0;
    for (i = 0; i < p->n && p->offs[i] != offset; i++)
        ;
    if (i == p->n)
        return;
    p->done[i] = 1;
    while (k < p->n && p->done[k])
        k++;
    if (k == 0)
        return;
    int64_t next = p->offs[k - 1] + 1;
    memmove(p->offs, p->offs + k, (p->n - k) * sizeof(*p->offs));
    memmove(p->done, p->done + k, p->n - k);
    p->n -= k;
    if (s->txn) { /* committed with the transaction that holds the exit frame */
        p->commit_at = next;
        p->dirty = 1;
        return;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = next;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(s->consumer, l);
    if (err)
        kiln_warn("kafka: storing offset %s[%" PRId32 "]@%" PRId64 ": %s", p->topic,
                  p->partition, next, rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- pausing ---------------------------------------------------------- */

static void set_paused(struct ksrc *s, int pause, int only_new)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    if (only_new) {
        l = rd_kafka_topic_partition_list_new(8);
        for (struct kpart *p = s->parts; p; p = p->next)
            if (p->assigned == 2) /* just assigned */
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
    kiln_metrics_rebalance();
    s->assigned_once = 1;
    rd_kafka_error_t *e = NULL;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            struct kpart *p = part_get(s, parts->elems[i].topic, parts->elems[i].partition);
            if (p != NULL)
                p->assigned = 2;
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
        for (struct kpart *p = s->parts; p; p = p->next)
            if (p->assigned == 2)
                p->assigned = 1;
        kiln_info("kafka: %d partition(s) assigned", parts->cnt);
    } else {
        int lost = rd_kafka_assignment_lost(rk);
        for (int i = 0; i < parts->cnt; i++) {
            struct kpart *p = part_get(s, parts->elems[i].topic, parts->elems[i].partition);
            if (p == NULL)
                continue;
            /* jobs of this partition still running will store nothing:
             * the new owner takes them from the last stored offset */
            p->assigned = 0;
            p->gen++;
            p->n = 0;
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
    struct kpart *p = part_get(s, rd_kafka_topic_name(m->rkt), m->partition);
    if (d == NULL || p == NULL || part_track(p, m->offset) < 0) {
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

/* ---- producing -------------------------------------------------------- */

static void op_free(struct kop *op)
{
    free(op->topic);
    free(op->key);
    free(op->value);
    free(op);
}

static void arm_defer(struct ksrc *s);

/* Hand one frame to librdkafka: key = job id, headers kind, seq, attempt. */
static rd_kafka_resp_err_t producev(struct ksrc *s, struct kop *op)
{
    return rd_kafka_producev(
        s->producer, RD_KAFKA_V_TOPIC(op->topic),
        RD_KAFKA_V_KEY(op->key, op->key ? strlen(op->key) : 0),
        RD_KAFKA_V_VALUE(op->value, op->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER("kiln-kind", op->kind, -1),
        RD_KAFKA_V_HEADER("kiln-seq", op->seq, -1),
        RD_KAFKA_V_HEADER("kiln-attempt", op->attempt, -1),
        RD_KAFKA_V_OPAQUE(op), RD_KAFKA_V_END);
}

static int produce(struct ksrc *s, struct kop *op)
{
    rd_kafka_resp_err_t err = producev(s, op);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        op->next = s->retry; /* produced again from the tick */
        s->retry = op;
        return 0;
    }
    if (err) {
        op->status = -EIO;
        snprintf(op->err, sizeof(op->err), "%s", rd_kafka_err2str(err));
        op->next = s->done;
        s->done = op;
        arm_defer(s);
    }
    return 0;
}

/* Errors that producing again will not cure. */
static int permanent(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return 1;
    default:
        return 0;
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct ksrc *s = opaque;
    struct kop *op = m->_private;
    (void)rk;
    if (s->txn) {
        /* may run on the pool thread inside commit_transaction(): touch
         * nothing shared; a failed message fails the commit, which aborts
         * and produces the whole transaction again */
        if (m->err)
            kiln_warn("kafka: frame to %s failed in a transaction: %s", op->topic,
                      rd_kafka_err2str(m->err));
        return;
    }
    if (m->err && !permanent(m->err) && !s->closing) {
        kiln_warn("kafka: frame to %s not delivered (%s); producing it again", op->topic,
                  rd_kafka_err2str(m->err));
        op->next = s->retry;
        s->retry = op;
        return;
    }
    if (m->err) {
        op->status = -EIO;
        snprintf(op->err, sizeof(op->err), "%s", rd_kafka_err2str(m->err));
    }
    /* reported from here (rd_kafka_poll on our loop): never inside write() */
    if (op->cb != NULL && !s->closing)
        op->cb(op->arg, op->status, op->err);
    op_free(op);
}

/* ---- transactions ---------------------------------------------------- */

static void hold(struct ksrc *s, struct kop *op)
{
    op->next = NULL;
    *s->held_tail = op;
    s->held_tail = &op->next;
}

static void on_tx_due(uv_timer_t *t);

static void produce_txn(struct ksrc *s, struct kop *op)
{
    rd_kafka_resp_err_t err = producev(s, op);
    if (err) { /* queue full, say: into the next transaction */
        kiln_warn("kafka: producing in a transaction: %s", rd_kafka_err2str(err));
        hold(s, op);
        return;
    }
    op->next = NULL;
    *s->tx_tail = op;
    s->tx_tail = &op->next;
    if (op->exit) {
        struct kdelivery *d = op->job;
        if (d != NULL && d->part->assigned && d->gen == d->part->gen)
            part_finish(s, d->part, d->offset);
        s->tx_exits++;
        /* commit soon, so exit frames from jobs ending together share one */
        uv_timer_start(&s->tx_timer, on_tx_due, 20, 0);
    }
}

static void tx_run(struct ksrc *s, int step);

static void tx_begin(struct ksrc *s)
{
    rd_kafka_error_t *e = rd_kafka_begin_transaction(s->producer);
    if (e != NULL) {
        kiln_error("kafka: begin_transaction: %s; stopping", rd_kafka_error_string(e));
        exit(70); /* fatal (fenced by another worker with our transactional.id) */
    }
    s->tx = TX_OPEN;
    struct kop *held = s->held;
    s->held = NULL;
    s->held_tail = &s->held;
    while (held) {
        struct kop *op = held;
        held = op->next;
        produce_txn(s, op);
    }
}

static void tx_commit(struct ksrc *s)
{
    if (s->tx != TX_OPEN || s->tx_exits == 0)
        return;
    s->tx_offsets = rd_kafka_topic_partition_list_new(4);
    for (struct kpart *p = s->parts; p; p = p->next)
        if (p->dirty && p->assigned)
            rd_kafka_topic_partition_list_add(s->tx_offsets, p->topic, p->partition)->offset = p->commit_at;
    tx_run(s, 1);
}

static void on_tx_due(uv_timer_t *t)
{
    tx_commit(t->data);
}

/* On the pool thread: the blocking transactional calls. */
static void tx_work(uv_work_t *w)
{
    struct ksrc *s = w->data;
    switch (s->tx_step) {
    case 0:
        s->tx_err = rd_kafka_init_transactions(s->producer, 30000);
        break;
    case 1:
        s->tx_err = NULL;
        if (s->tx_offsets->cnt > 0) {
            rd_kafka_consumer_group_metadata_t *g = rd_kafka_consumer_group_metadata(s->consumer);
            s->tx_err = rd_kafka_send_offsets_to_transaction(s->producer, s->tx_offsets, g, 30000);
            rd_kafka_consumer_group_metadata_destroy(g);
        }
        if (s->tx_err == NULL)
            s->tx_err = rd_kafka_commit_transaction(s->producer, 30000);
        break;
    default:
        s->tx_err = rd_kafka_abort_transaction(s->producer, 30000);
        break;
    }
}

static void tx_done(uv_work_t *w, int status)
{
    struct ksrc *s = w->data;
    rd_kafka_error_t *e = s->tx_err;
    int step = s->tx_step;
    (void)status;
    s->tx_err = NULL;
    if (step == 1) {
        rd_kafka_topic_partition_list_destroy(s->tx_offsets);
        s->tx_offsets = NULL;
    }
    if (e != NULL) {
        int abort_it = rd_kafka_error_txn_requires_abort(e), retry = rd_kafka_error_is_retriable(e);
        kiln_warn("kafka: transaction %s: %s", step == 0 ? "init" : step == 1 ? "commit" : "abort",
                  rd_kafka_error_string(e));
        int fatal = rd_kafka_error_is_fatal(e);
        rd_kafka_error_destroy(e);
        if (fatal) {
            kiln_error("kafka: fatal transactional error; stopping");
            exit(70);
        }
        if (step == 1 && abort_it) {
            tx_run(s, 2);
        } else if (retry || step != 1) {
            tx_run(s, step); /* the same call again */
        } else {
            tx_run(s, 2);
        }
        return;
    }
    if (step == 1) {
        /* committed: the frames are in for read_committed readers, and
         * the offsets with them; the jobs are finished */
        struct kop *ops = s->tx_ops;
        s->tx_ops = NULL;
        s->tx_tail = &s->tx_ops;
        s->tx_exits = 0;
        for (struct kpart *p = s->parts; p; p = p->next)
            p->dirty = 0;
        tx_begin(s);
        while (ops) {
            struct kop *op = ops;
            ops = op->next;
            if (op->cb && !s->closing)
                op->cb(op->arg, 0, NULL);
            op_free(op);
        }
    } else if (step == 2) {
        /* aborted: nothing of it is visible; its frames go first into
         * the next transaction, ahead of those held meanwhile */
        struct kop *ops = s->tx_ops;
        s->tx_ops = NULL;
        s->tx_tail = &s->tx_ops;
        s->tx_exits = 0;
        if (ops != NULL) {
            struct kop *last = ops;
            while (last->next)
                last = last->next;
            last->next = s->held;
            if (s->held == NULL)
                s->held_tail = &last->next;
            s->held = ops;
        }
        tx_begin(s);
    } else {
        kiln_info("kafka: transactions ready");
        tx_begin(s);
    }
}

static void tx_run(struct ksrc *s, int step)
{
    s->tx = step == 0 ? TX_INIT : TX_BUSY;
    s->tx_step = step;
    s->tx_work.data = s;
    uv_queue_work(s->pub.loop, &s->tx_work, tx_work, tx_done);
}

static int kafka_write(struct kiln_source *src, const char *dest, const char *key,
                       const void *frame, size_t len, const struct kiln_frame_info *info,
                       kiln_write_cb cb, void *arg)
{
    struct ksrc *s = (struct ksrc *)src;
    struct kop *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return -ENOMEM;
    op->s = s;
    op->topic = strdup(dest);
    op->key = key ? strdup(key) : NULL;
    op->value = malloc(len ? len : 1);
    if (op->topic == NULL || (key && op->key == NULL) || op->value == NULL) {
        op_free(op);
        return -ENOMEM;
    }
    memcpy(op->value, frame, len);
    op->len = len;
    snprintf(op->kind, sizeof(op->kind), "%s", info->kind);
    snprintf(op->seq, sizeof(op->seq), "%" PRIu64, info->seq);
    snprintf(op->attempt, sizeof(op->attempt), "%u", info->attempt);
    op->cb = cb;
    op->arg = arg;
    if (s->txn) {
        op->exit = strcmp(info->kind, "exit") == 0;
        op->job = (struct kdelivery *)info->job;
        if (s->tx == TX_OPEN)
            produce_txn(s, op);
        else
            hold(s, op);
        return 0;
    }
    return produce(s, op);
}

static void kafka_ack(struct kiln_source *src, struct kiln_delivery *pub)
{
    struct ksrc *s = (struct ksrc *)src;
    struct kdelivery *d = (struct kdelivery *)pub;
    /* with transactions the offset went out with the exit frame */
    if (!s->txn && d->part->assigned && d->gen == d->part->gen)
        part_finish(s, d->part, d->offset);
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
    if (s->assigned_once)
        return 1;
    snprintf(why, len, "not yet a member of Kafka group %s", s->pub.cfg->group);
    return 0;
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
    return rd_kafka_outq_len(s->producer) == 0 && s->retry == NULL && s->done == NULL &&
           (!s->txn || (s->tx_ops == NULL && s->held == NULL && s->tx == TX_OPEN));
}

/* ---- the loop's side -------------------------------------------------- */

static void on_defer(uv_timer_t *t)
{
    struct ksrc *s = t->data;
    struct kop *done = s->done;
    s->done = NULL;
    while (done) {
        struct kop *op = done;
        done = op->next;
        if (op->cb)
            op->cb(op->arg, op->status, op->err);
        op_free(op);
    }
}

static void arm_defer(struct ksrc *s)
{
    uv_timer_start(&s->defer, on_defer, 0, 0);
}

/* A control message: msgpack {cancel: id}. */
static void control_message(struct ksrc *s, const rd_kafka_message_t *m)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (m->payload && kiln_mp_unpack(&u, m->payload, m->len) == 0) {
        const msgpack_object *id = kiln_mp_get(&u.data, "cancel");
        char *sid = id ? kiln_mp_strdup(id) : NULL;
        if (sid != NULL && s->pub.on_cancel != NULL)
            s->pub.on_cancel(s->pub.arg, sid);
        free(sid);
    }
    msgpack_unpacked_destroy(&u);
}

static void on_queue(uv_poll_t *h, int status, int events)
{
    struct ksrc *s = h->data;
    char buf[64];
    (void)status;
    (void)events;
    int fd = h == &s->cq.poll ? s->cq.fd[0] : h == &s->pq.poll ? s->pq.fd[0] : s->ctlq.fd[0];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    if (h == &s->cq.poll) {
        drain(s);
    } else if (h == &s->pq.poll) {
        rd_kafka_poll(s->producer, 0);
    } else {
        rd_kafka_message_t *m;
        while (!s->closing && (m = rd_kafka_consumer_poll(s->control, 0)) != NULL) {
            if (!m->err)
                control_message(s, m);
            rd_kafka_message_destroy(m);
        }
    }
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

static void on_tick(uv_timer_t *t)
{
    struct ksrc *s = t->data;
    struct kop *retry = s->retry;
    s->retry = NULL;
    while (retry) { /* oldest first is not guaranteed here; order within a
                     * job is kept by the idempotent producer's retries */
        struct kop *op = retry;
        retry = op->next;
        produce(s, op);
    }
    rd_kafka_poll(s->producer, 0);
    drain(s);
}

static int watch(struct ksrc *s, struct kqueue *kq, rd_kafka_queue_t *q)
{
    kq->q = q;
    if (pipe2(kq->fd, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    rd_kafka_queue_io_event_enable(q, kq->fd[1], "1", 1);
    uv_poll_init(s->pub.loop, &kq->poll, kq->fd[0]);
    kq->poll.data = s;
    uv_poll_start(&kq->poll, UV_READABLE, on_queue);
    return 0;
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
        tx_run(s, 0);
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
    while (s->parts) {
        struct kpart *p = s->parts;
        s->parts = p->next;
        free(p->topic);
        free(p->offs);
        free(p->done);
        free(p);
    }
    uv_handle_t *hs[] = {(uv_handle_t *)&s->cq.poll, (uv_handle_t *)&s->pq.poll,
                         (uv_handle_t *)&s->tick, (uv_handle_t *)&s->defer,
                         (uv_handle_t *)&s->tx_timer, (uv_handle_t *)&s->ctlq.poll};
    for (int i = 0; i < 6; i++) {
        hs[i]->data = s;
        uv_close(hs[i], on_closed);
    }
}

static const struct kiln_source_ops kafka_ops = {
    .name = "kafka",
    .start = kafka_start,
    .credit = kafka_credit,
    .write = kafka_write,
    .ack = kafka_ack,
    .release = kafka_release,
    .stop = kafka_stop,
    .idle = kafka_idle,
    .ready = kafka_ready,
    .gauges = kafka_gauges,
    .destroy = kafka_destroy,
};

static int conf_set(rd_kafka_conf_t *c, const char *k, const char *v, char *err, size_t errlen)
{
    if (rd_kafka_conf_set(c, k, v, err, errlen) != RD_KAFKA_CONF_OK)
        return -EINVAL;
    return 0;
}

/* Our settings first, then every --kafka-conf K=V over them. */
static rd_kafka_conf_t *make_conf(const struct kiln_config *cfg, const char *const *ours,
                                  char *err, size_t errlen)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (conf_set(c, "bootstrap.servers", cfg->brokers, err, errlen) < 0)
        goto fail;
    if (conf_set(c, "client.id", cfg->consumer, err, errlen) < 0)
        goto fail;
    for (const char *const *kv = ours; *kv; kv += 2)
        if (conf_set(c, kv[0], kv[1], err, errlen) < 0)
            goto fail;
    for (size_t i = 0; i < cfg->nkafka_conf; i++) {
        char *eq = strchr(cfg->kafka_conf[i], '=');
        if (eq == NULL) {
            snprintf(err, errlen, "--kafka-conf %s: want K=V", cfg->kafka_conf[i]);
            goto fail;
        }
        *eq = '\0';
        int r = conf_set(c, cfg->kafka_conf[i], eq + 1, err, errlen);
        *eq = '=';
        if (r < 0)
            goto fail;
    }
    return c;
fail:
    rd_kafka_conf_destroy(c);
    return NULL;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

typedef void (*rebalance_fn)(rd_kafka_t *, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t *, void *);

/* One librdkafka client of ours: our settings, then --kafka-conf, logging
 * through the worker's log; a consumer polls through its consumer queue. */
static rd_kafka_t *new_client(struct ksrc *s, rd_kafka_type_t type, const char *const *ours,
                              rebalance_fn rebalance, char *err, size_t errlen)
{
    rd_kafka_conf_t *c = make_conf(s->pub.cfg, ours, err, errlen);
    if (c == NULL)
        return NULL;
    rd_kafka_conf_set_opaque(c, s);
    rd_kafka_conf_set_log_cb(c, on_log);
    if (rebalance != NULL)
        rd_kafka_conf_set_rebalance_cb(c, rebalance);
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(type, c, err, errlen);
    if (rk == NULL) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    if (type == RD_KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    kiln_log(level <= 3 ? KILN_LOG_ERROR : level <= 5 ? KILN_LOG_WARN : KILN_LOG_DEBUG,
             "librdkafka %s: %s", fac, buf);
}

int kiln_source_kafka_new(uv_loop_t *loop, const struct kiln_config *cfg,
                          kiln_delivery_cb cb, void *arg, struct kiln_source **out,
                          char *err, size_t errlen)
{
    static const char *const consumer_conf[] = {
        "group.id", NULL, /* filled below */
        "enable.auto.offset.store", "false",
        "enable.auto.commit", "true",
        "auto.commit.interval.ms", "1000",
        "auto.offset.reset", "earliest",
        "partition.assignment.strategy", "cooperative-sticky",
        "enable.partition.eof", "false",
        NULL,
    };
    if (cfg->brokers == NULL) {
        snprintf(err, errlen, "--queue kafka needs --brokers");
        return -EINVAL;
    }
    struct ksrc *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    const char *cc[sizeof(consumer_conf) / sizeof(consumer_conf[0])];
    memcpy(cc, consumer_conf, sizeof(cc));
    cc[1] = cfg->group;
    char txid[512];
    const char *pc[] = {"enable.idempotence", "true", "linger.ms", "1",
                        "transactional.id", txid, NULL};
    if (cfg->kafka_transactions) {
        /* offsets travel in the transactions, never by auto-commit */
        cc[5] = "false";
        snprintf(txid, sizeof(txid), "kiln-%s-%s", cfg->group, cfg->consumer);
    } else {
        pc[4] = NULL;
    }

    s->pub.cfg = cfg;
    /* the control topic: a group of its own per worker, so every worker
     * sees every message, from the newest on */
    char ctl_group[600];
    snprintf(ctl_group, sizeof(ctl_group), "kiln-control-%s-%s", cfg->group, cfg->consumer);
    const char *ctlc[] = {"group.id", ctl_group, "enable.auto.commit", "false",
                          "auto.offset.reset", "latest", NULL};
    if ((s->consumer = new_client(s, RD_KAFKA_CONSUMER, cc, on_rebalance, err, errlen)) == NULL ||
        (s->control = new_client(s, RD_KAFKA_CONSUMER, ctlc, on_control_rebalance, err, errlen)) == NULL ||
        (s->producer = new_client(s, RD_KAFKA_PRODUCER, pc, NULL, err, errlen)) == NULL)
        goto fail;

    s->pub.ops = &kafka_ops;
    s->pub.loop = loop;
    s->pub.cfg = cfg;
    s->pub.on_delivery = cb;
    s->pub.arg = arg;
    s->backlog_tail = &s->backlog;
    s->txn = cfg->kafka_transactions;
    s->tx_tail = &s->tx_ops;
    s->held_tail = &s->held;
    if (watch(s, &s->cq, rd_kafka_queue_get_consumer(s->consumer)) < 0 ||
        watch(s, &s->pq, rd_kafka_queue_get_main(s->producer)) < 0 ||
        watch(s, &s->ctlq, rd_kafka_queue_get_consumer(s->control)) < 0) {
        snprintf(err, errlen, "kafka: pipe: %s", strerror(errno));
        goto fail; /* a loop handle may be live: the worker exits anyway */
    }
    uv_timer_init(loop, &s->tick);
    uv_timer_init(loop, &s->defer);
    uv_timer_init(loop, &s->tx_timer);
    s->tick.data = s->defer.data = s->tx_timer.data = s;
    *out = &s->pub;
    return 0;
fail:
    if (s->control)
        rd_kafka_destroy(s->control);
    if (s->consumer)
        rd_kafka_destroy(s->consumer);
    if (s->producer)
        rd_kafka_destroy(s->producer);
    free(s);
    return -EINVAL;
}
