/*
 * Frames out of the Kafka source: an idempotent producer, key = job id, so
 * a job's frames stay in one partition in order; headers say kind, seq and
 * attempt. librdkafka retries deliveries; one that still fails for a
 * transient reason is produced again, one the cluster refuses for good ends
 * the write with an error.
 *
 * A write's callback is called exactly once, from the loop (a delivery
 * report or the defer timer), never inside write(); a write that returns
 * an error has taken nothing and never calls it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "queue/kafka_internal.h"

void kiln__kafka_op_free(struct kop *op)
{
    free(op->topic);
    free(op->key);
    free(op->value);
    free(op);
}

rd_kafka_resp_err_t kiln__kafka_producev(struct ksrc *s, struct kop *op)
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

/* Report the ops finished outside a delivery report, from the loop. */
void kiln__kafka_on_defer(uv_timer_t *t)
{
    struct ksrc *s = t->data;
    struct kop *done = s->done;
    s->done = NULL;
    while (done) {
        struct kop *op = done;
        done = op->next;
        if (op->cb)
            op->cb(op->arg, op->status, op->err);
        kiln__kafka_op_free(op);
    }
}

/* The producer's fatal error (an idempotent producer's sequence broke):
 * the source fails. */
static void producer_failed(struct ksrc *s)
{
    char why[256] = "";
    if (s->failed) {
        kiln__kafka_fail(s, NULL); /* what became pending since */
        return;
    }
    rd_kafka_fatal_error(s->producer, why, sizeof(why));
    kiln__kafka_fail(s, why[0] ? why : "fatal producer error");
}

/* Produce `op` (taken); whatever happens, its callback runs later. */
static void produce(struct ksrc *s, struct kop *op)
{
    rd_kafka_resp_err_t err = kiln__kafka_producev(s, op);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        op->next = s->retry; /* reported with the rest of what is pending */
        s->retry = op;
        producer_failed(s);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        op->next = s->retry; /* produced again from the tick */
        s->retry = op;
        return;
    }
    if (err) {
        op->status = -EIO;
        snprintf(op->err, sizeof(op->err), "%s", rd_kafka_err2str(err));
        op->next = s->done;
        s->done = op;
        uv_timer_start(&s->defer, kiln__kafka_on_defer, 0, 0);
    }
}

void kiln__kafka_retry(struct ksrc *s)
{
    struct kop *retry = s->retry;
    s->retry = NULL;
    while (retry) { /* oldest first is not guaranteed here; order within a
                     * job is kept by the idempotent producer's retries */
        struct kop *op = retry;
        retry = op->next;
        produce(s, op);
    }
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

void kiln__kafka_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct ksrc *s = opaque;
    struct kop *op = m->_private;
    if (s->txn) {
        /* may run on the pool thread inside commit_transaction(): touch
         * nothing shared; a failed message fails the commit, which aborts
         * and produces the whole transaction again */
        if (m->err)
            kiln_warn("kafka: frame to %s failed in a transaction: %s", op->topic,
                      rd_kafka_err2str(m->err));
        return;
    }
    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR__FATAL && !s->failed)
        producer_failed(s);
    if (s->failed) { /* not written, and never will be */
        op->status = -EPIPE;
        snprintf(op->err, sizeof(op->err), "the queue failed: not written");
        op->next = s->done;
        s->done = op;
        uv_timer_start(&s->defer, kiln__kafka_on_defer, 0, 0);
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
    kiln__kafka_op_free(op);
}

int kiln__kafka_write(struct kiln_source *src, const char *dest, const char *key,
                      const void *frame, size_t len, const struct kiln_frame_info *info,
                      kiln_write_cb cb, void *arg)
{
    struct ksrc *s = (struct ksrc *)src;
    if (s->failed)
        return -EPIPE; /* on_fatal said so: nothing more is written */
    struct kop *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return -ENOMEM;
    op->s = s;
    op->topic = strdup(dest);
    op->key = key ? strdup(key) : NULL;
    op->value = malloc(len ? len : 1);
    if (op->topic == NULL || (key && op->key == NULL) || op->value == NULL) {
        kiln__kafka_op_free(op);
        return -ENOMEM;
    }
    memcpy(op->value, frame, len);
    op->len = len;
    snprintf(op->kind, sizeof(op->kind), "%s", info->kind);
    snprintf(op->seq, sizeof(op->seq), "%" PRIu64, info->seq);
    snprintf(op->attempt, sizeof(op->attempt), "%u", info->attempt);
    op->cb = cb;
    op->arg = arg;
    /* from here on the op is taken: 0, and the callback runs once, later */
    if (s->txn) {
        op->exit = strcmp(info->kind, "exit") == 0;
        op->job = (struct kdelivery *)info->job;
        kiln__kafka_txn_write(s, op);
    } else {
        produce(s, op);
    }
    return 0;
}
