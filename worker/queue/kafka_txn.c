/*
 * --kafka-transactions: the producer is transactional and each exit frame
 * is committed together with the consumed offsets in one transaction (see
 * docs/contract.md for exactly what that does and does not make exactly-once).
 *
 * One transaction is open at a time (TX_OPEN); frames written meanwhile go
 * into it. An exit frame finishes its job's offset and asks for a commit
 * soon, so exit frames from jobs ending together share one. The blocking
 * calls (init, send offsets + commit, abort) run on the loop's thread pool
 * (TX_INIT, TX_BUSY); frames written then are held for the next
 * transaction. Write callbacks run once the commit that holds their frame
 * has succeeded; an aborted transaction's frames go again into the next.
 * A fatal error (another worker took this transactional.id and fenced this
 * one) fails the source: nothing more is produced or committed, the worker is
 * told (on_fatal) and stops its jobs unacknowledged; their offsets were
 * never committed, so the group delivers them again.
 */
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "queue/kafka_internal.h"

static void tx_run(struct ksrc *s, int step);

static void hold(struct ksrc *s, struct kop *op)
{
    op->next = NULL;
    *s->held_tail = op;
    s->held_tail = &op->next;
}

static void tx_commit(struct ksrc *s)
{
    if (s->tx != TX_OPEN || s->tx_exits == 0)
        return;
    s->tx_offsets = rd_kafka_topic_partition_list_new(4);
    for (struct kiln_kafka_part *p = s->offsets.parts; p; p = p->next)
        if (p->dirty && p->assigned != KILN_KAFKA_UNASSIGNED)
            rd_kafka_topic_partition_list_add(s->tx_offsets, p->topic, p->partition)->offset = p->commit_at;
    tx_run(s, 1);
}

static void on_tx_due(uv_timer_t *t)
{
    tx_commit(t->data);
}

static void produce_txn(struct ksrc *s, struct kop *op)
{
    rd_kafka_resp_err_t err = kiln__kafka_producev(s, op);
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
        /* committed with the transaction that holds the exit frame */
        if (d != NULL && kiln_kafka_part_current(d->part, d->gen))
            kiln_kafka_part_finish(d->part, d->offset);
        s->tx_exits++;
        /* commit soon, so exit frames from jobs ending together share one */
        uv_timer_start(&s->tx_timer, on_tx_due, 20, 0);
    }
}

void kiln__kafka_txn_write(struct ksrc *s, struct kop *op)
{
    if (s->tx == TX_OPEN)
        produce_txn(s, op);
    else
        hold(s, op);
}

static void tx_begin(struct ksrc *s)
{
    rd_kafka_error_t *e = rd_kafka_begin_transaction(s->producer);
    if (e != NULL) { /* fenced by another worker with our transactional.id */
        char why[256];
        snprintf(why, sizeof(why), "begin_transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        kiln__kafka_fail(s, why);
        return;
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
        if (rd_kafka_error_is_fatal(e)) {
            char why[256];
            snprintf(why, sizeof(why), "fatal transactional error: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            kiln__kafka_fail(s, why);
            return;
        }
        rd_kafka_error_destroy(e);
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
        kiln_kafka_offsets_clean(&s->offsets);
        tx_begin(s);
        while (ops) {
            struct kop *op = ops;
            ops = op->next;
            if (op->cb && !s->closing)
                op->cb(op->arg, 0, NULL);
            kiln__kafka_op_free(op);
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

void kiln__kafka_txn_start(struct ksrc *s)
{
    tx_run(s, 0);
}
