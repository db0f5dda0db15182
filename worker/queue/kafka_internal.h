/*
 * The Kafka source's private state, shared by its files and by nothing
 * else:
 *   kafka.c          the source: consuming, pausing, rebalances, the ops
 *   kafka_produce.c  frames out: one produce per write, retries, reports
 *   kafka_txn.c      --kafka-transactions: exit frames and offsets together
 *   kafka_client.c   librdkafka on libuv: settings by key, clients, queues
 *   kafka_offsets.c  which offsets are finished (pure; see kafka_offsets.h)
 */
#ifndef KILN_KAFKA_INTERNAL_H
#define KILN_KAFKA_INTERNAL_H

#include <librdkafka/rdkafka.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "queue/kafka_offsets.h"
#include "queue/source.h"

struct ksrc;

struct kdelivery {
    struct kiln_delivery pub;
    struct kdelivery *next;   /* backlog link */
    struct kiln_kafka_part *part;
    unsigned gen;             /* the partition's generation when taken */
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
    kiln_write_cb cb;         /* called once, from the loop, never inside write() */
    void *arg;
    int status;
    char err[160];
    int exit;                 /* transactions: an exit frame ... */
    struct kdelivery *job;    /* ... of this job */
};

/* A librdkafka queue watched by the loop: librdkafka writes a byte to
 * fd[1] when the queue becomes non-empty; `ready` runs when fd[0] is
 * readable (the pipe already emptied). */
struct kqueue {
    rd_kafka_queue_t *q;
    int fd[2];
    uv_poll_t poll;
    void (*ready)(struct ksrc *s);
};

enum ktx { TX_INIT, TX_OPEN, TX_BUSY };

struct ksrc {
    struct kiln_source pub;
    rd_kafka_t *consumer, *producer;
    rd_kafka_t *control;               /* reads --control: {cancel: id} */
    struct kqueue cq, pq, ctlq;
    uv_timer_t tick, defer;
    unsigned credit;
    int paused;
    struct kiln_kafka_offsets offsets;
    struct kdelivery *backlog, **backlog_tail;
    struct kop *retry, *done;          /* to produce again / to report */
    int closing;
    int failed;                        /* the producer's fatal error: nothing more
                                        * is written (kiln__kafka_fail) */
    int stopped;                       /* draining: no more deliveries */
    int assigned_once;                 /* the group answered: we are in */
    /* --kafka-transactions */
    int txn;
    enum ktx tx;
    struct kop *tx_ops, **tx_tail;     /* produced in the open transaction */
    struct kop *held, **held_tail;     /* waiting for the next one */
    int tx_exits;
    int tx_step;                       /* the blocking call the pool runs */
    rd_kafka_error_t *tx_err;
    rd_kafka_topic_partition_list_t *tx_offsets;
    uv_timer_t tx_timer;
    uv_work_t tx_work;
};

/* ---- kafka_client.c -------------------------------------------------- */

/* Settings of ours for one client, by key: setting a key again replaces
 * its value in place, so no key's position depends on another's. Keys and
 * values are borrowed and must outlive the list. */
#define KILN_KAFKA_CONF_MAX 16
struct kconf {
    const char *key[KILN_KAFKA_CONF_MAX], *val[KILN_KAFKA_CONF_MAX];
    size_t n;
};
/* Set or replace `key`. 0, or -ENOSPC when the list is full. */
int kiln__kafka_conf_set(struct kconf *c, const char *key, const char *val);

typedef void (*kiln__kafka_rebalance_fn)(rd_kafka_t *, rd_kafka_resp_err_t,
                                         rd_kafka_topic_partition_list_t *, void *);
/* A new client owned by the caller (rd_kafka_destroy): bootstrap.servers
 * and client.id, then `ours`, then every --kafka-conf K=V over them;
 * logging through the worker's log, opaque `s`; a consumer polls through
 * its consumer queue, a producer reports to kiln__kafka_on_delivery. NULL
 * with `err` set on failure. */
rd_kafka_t *kiln__kafka_client(struct ksrc *s, rd_kafka_type_t type, const struct kconf *ours,
                               kiln__kafka_rebalance_fn rebalance, char *err, size_t errlen);
/* Route queue `q` (taken: destroyed here on failure) through a pipe. 0, or
 * a negative errno with `err` set. kiln__kafka_queue_start() then watches
 * the pipe on the loop. */
int kiln__kafka_queue_open(struct kqueue *kq, rd_kafka_queue_t *q, char *err, size_t errlen);
int kiln__kafka_queue_start(struct ksrc *s, struct kqueue *kq, void (*ready)(struct ksrc *),
                            char *err, size_t errlen);

/* ---- kafka_produce.c ------------------------------------------------- */

/* source ops->write (see source.h for what it promises) */
int kiln__kafka_write(struct kiln_source *src, const char *dest, const char *key,
                      const void *frame, size_t len, const struct kiln_frame_info *info,
                      kiln_write_cb cb, void *arg);
/* Hand one frame to librdkafka: key = job id, headers kind, seq, attempt. */
rd_kafka_resp_err_t kiln__kafka_producev(struct ksrc *s, struct kop *op);
/* Produce every frame waiting for another try (queue was full, or a
 * transient delivery failure). */
void kiln__kafka_retry(struct ksrc *s);
/* The producer's delivery report (dr_msg_cb). */
void kiln__kafka_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
void kiln__kafka_op_free(struct kop *op);
/* The producer cannot go on (fenced, or an idempotence fatal error): write
 * nothing more; report every write still pending -EPIPE (from the loop);
 * tell the worker (on_fatal), once. Called again, it reports what became
 * pending since. */
void kiln__kafka_fail(struct ksrc *s, const char *why);
/* Report the ops on s->done (the defer timer's callback). */
void kiln__kafka_on_defer(uv_timer_t *t);

/* ---- kafka_session.c -------------------------------------------------- */

/* A control message `m` said at `at` (unix ms, 0 unknown) about a
 * session: learnt (1), or not about one (0). */
int kiln__kafka_session_message(const msgpack_object *m, int64_t at);
/* the session ops of struct kiln_source_ops */
int kiln__kafka_session_claim(struct kiln_source *src, const char *id, struct kiln_delivery *d,
                              kiln_claim_cb cb, void *arg);
void kiln__kafka_session_end(struct kiln_source *src, const char *id, const char *why);
void kiln__kafka_session_renew(struct kiln_source *src, const char *const *ids, size_t n,
                               kiln_lost_cb lost, void *arg);
void kiln__kafka_session_free(void);

/* ---- kafka_txn.c ----------------------------------------------------- */

/* Start the transactional producer (init_transactions on the pool). */
void kiln__kafka_txn_start(struct ksrc *s);
/* Put `op` (taken) in the open transaction, or hold it for the next. */
void kiln__kafka_txn_write(struct ksrc *s, struct kop *op);

#endif
