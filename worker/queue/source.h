/*
 * Where jobs come from and where frames go: Redis Streams now, Kafka next.
 * A source hands the worker deliveries, never more than the credit the
 * worker has given it (its free slots), writes frames in the order they are
 * given, and acknowledges a delivery when told to.
 */
#ifndef KILN_SOURCE_H
#define KILN_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

struct kiln_config;
struct kiln_source;

/* One job as it came off the queue. Owned by the source; valid until the
 * worker passes it to ack() (or the source is destroyed). */
struct kiln_delivery {
    struct kiln_source *src;
    const unsigned char *data;  /* the job's msgpack bytes; NULL if missing */
    size_t len;
    const char *missing;        /* why data is NULL */
    unsigned attempt;           /* 1 on first delivery */
    char ref[64];               /* the queue's name for it, for logs */
    int64_t enqueued_ms;        /* when it was enqueued (unix ms), 0: unknown */
};

/* A control message: cancel the job with this id (borrowed). */
typedef void (*kiln_cancel_cb)(void *arg, const char *job_id);

/* The worker's half: called by the source for each delivery. */
typedef void (*kiln_delivery_cb)(void *arg, struct kiln_delivery *d);
/* A frame write has ended: status 0 (written) or negative with `err` (the
 * destination refused it; retrying the same write will not help). `err` is
 * borrowed for the call. Writes that fail for a lost connection are
 * retried by the source and only end when they are written. */
typedef void (*kiln_write_cb)(void *arg, int status, const char *err);

/* What a frame is, for sources that label messages (Kafka headers). */
struct kiln_frame_info {
    const char *kind;           /* "stdout" | "stderr" | "exit" */
    uint64_t seq;
    unsigned attempt;
    struct kiln_delivery *job;  /* the job it belongs to (borrowed) */
};

struct kiln_source_ops {
    const char *name;
    /* Connect and start; deliveries flow once credit() allows them. */
    int (*start)(struct kiln_source *s);
    /* The worker can take `n` more jobs than it has been given. */
    void (*credit)(struct kiln_source *s, unsigned n);
    /* Append `frame` (copied) to stream/topic `dest` with key `key` (the
     * job id, or NULL); `dest`, `key`, `frame` and `info` are borrowed for
     * the call. Exactly one of:
     * - returns 0: the write is taken and `cb` is called exactly once,
     *   later, from the loop (never before write() returns), with 0 once
     *   written or negative with `err` if the destination refused it; a
     *   source destroyed first never calls it (see destroy);
     * - returns a negative errno (-ENOMEM): nothing was taken and `cb` is
     *   never called; the outcome is the caller's to report. */
    int (*write)(struct kiln_source *s, const char *dest, const char *key,
                 const void *frame, size_t len, const struct kiln_frame_info *info,
                 kiln_write_cb cb, void *arg);
    /* The job is finished: acknowledge it and release `d`. */
    void (*ack)(struct kiln_source *s, struct kiln_delivery *d);
    /* Let go of `d` without acknowledging it: the queue delivers it again
     * (after the worker is gone, or to another). `d` is freed. */
    void (*release)(struct kiln_source *s, struct kiln_delivery *d);
    /* Take no more jobs (draining); writes and acks go on. */
    void (*stop)(struct kiln_source *s);
    /* 1 when every write and ack given so far has been confirmed. */
    int (*idle)(struct kiln_source *s);
    /* Gauge lines for /metrics (queue depth as the source sees it). */
    void (*gauges)(struct kiln_source *s, FILE *out);
    /* 1 when connected to the queue; else 0 with why. */
    int (*ready)(struct kiln_source *s, char *why, size_t len);
    /* Close connections (a Kafka consumer leaves its group, committing
     * what is stored); `s` is freed. Outstanding write callbacks are not
     * called. */
    void (*destroy)(struct kiln_source *s);
};

struct kiln_source {
    const struct kiln_source_ops *ops;
    uv_loop_t *loop;
    const struct kiln_config *cfg;
    kiln_delivery_cb on_delivery;
    kiln_cancel_cb on_cancel;   /* set by the worker; may be NULL */
    void *arg;
};

/* The constructors return 0 and a source owned by the caller (free with
 * ops->destroy), or a negative errno with `err` always set (and *out
 * untouched). */

/* A new Redis Streams source (--redis URL). */
int kiln_source_redis_new(uv_loop_t *loop, const struct kiln_config *cfg,
                          kiln_delivery_cb cb, void *arg, struct kiln_source **out,
                          char *err, size_t errlen);
/* A new Kafka source (consumer group + idempotent producer). */
int kiln_source_kafka_new(uv_loop_t *loop, const struct kiln_config *cfg,
                          kiln_delivery_cb cb, void *arg, struct kiln_source **out,
                          char *err, size_t errlen);

#endif
