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

struct kiln_queue_opts;
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
    char origin[64];            /* Redis: its entry id in the job stream (a job
                                 * forwarded here: where it was first), the
                                 * order of a session's jobs; "": none */
    int64_t enqueued_ms;        /* when it was enqueued (unix ms), 0: unknown */
    int unslotted;              /* a job of a session this worker holds, forwarded
                                 * here: taken whatever the slots (it waits its
                                 * turn in its session), so its end gives no
                                 * credit back */
};

/* A control message: cancel the job with this id (borrowed). */
typedef void (*kiln_cancel_cb)(void *arg, const char *job_id);
/* The source cannot go on (a Kafka producer fenced by another worker with
 * its transactional.id): from now on write() returns -EPIPE, the callbacks
 * of writes it took before are called with -EPIPE (never written), and
 * idle() says 1. The worker stops its jobs without acknowledging them and
 * exits; the queue delivers them again. `why` is borrowed for the call.
 * Called at most once, from the loop. */
typedef void (*kiln_fatal_cb)(void *arg, const char *why);

/* Who holds a session (session_claim): this worker, now (NEW), another
 * (ELSEWHERE: `text` names it), nobody any more (LOST: `text` is why it
 * ended, a label of core/session.c); or the question failed (< 0, `text` why).
 * `text` is borrowed for the call. */
enum { KILN_CLAIM_NEW, KILN_CLAIM_ELSEWHERE, KILN_CLAIM_LOST };
typedef void (*kiln_claim_cb)(void *arg, int verdict, const char *text);
/* A session this worker held and may hold no more (session_renew): `why`
 * a core/session.c label (static). */
typedef void (*kiln_lost_cb)(void *arg, const char *id, const char *why);

/* Something a source counts for the worker's metrics (on_count). */
enum kiln_source_count {
    KILN_SOURCE_RECONNECTED,  /* a connection came back after it was lost */
    KILN_SOURCE_REBALANCED,   /* the consumer group moved partitions */
};
typedef void (*kiln_count_cb)(void *arg, enum kiln_source_count what);

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
    /* Optional: sessions shared by the workers of one queue (core/session.c);
     * NULL: each worker's sessions are its own. */
    /* Who holds session `id` (`d`: the job asking): if nobody ever did,
     * this worker from now on. 0 and `cb` once, later; or a negative errno
     * and no call. */
    int (*session_claim)(struct kiln_source *s, const char *id, struct kiln_delivery *d,
                         kiln_claim_cb cb, void *arg);
    /* Hand `d`'s job to the worker `owner` (as session_claim named it);
     * `cb` once it is there (then ack `d`). 0, or a negative errno. */
    int (*session_forward)(struct kiln_source *s, const char *owner, struct kiln_delivery *d,
                           kiln_write_cb cb, void *arg);
    /* The session has ended (`why`, a label): a job for it, wherever it
     * lands, is told so. `why` NULL: it never opened (this worker claimed
     * it and could not): forget the claim. */
    void (*session_end)(struct kiln_source *s, const char *id, const char *why);
    /* May the session's job that came as `origin` (kiln_delivery) start,
     * or is one of the session's that came before it still on its way
     * here? `cb(arg, 1)`: start; `cb(arg, 0)`: ask again soon; < 0: the
     * queue cannot say. 0 and one call later, or a negative errno. */
    int (*session_gate)(struct kiln_source *s, const char *id, const char *origin,
                        void (*cb)(void *arg, int clear), void *arg);
    /* Keep holding these sessions (every few seconds): `lost` for each
     * whose hold lapsed (this worker was cut off too long). */
    void (*session_renew)(struct kiln_source *s, const char *const *ids, size_t n,
                          kiln_lost_cb lost, void *arg);
    /* Close connections (a Kafka consumer leaves its group, committing
     * what is stored); `s` is freed. Outstanding write callbacks are not
     * called. */
    void (*destroy)(struct kiln_source *s);
};

struct kiln_source {
    const struct kiln_source_ops *ops;
    uv_loop_t *loop;
    const struct kiln_queue_opts *cfg;
    kiln_delivery_cb on_delivery;
    kiln_cancel_cb on_cancel;   /* set by the worker; may be NULL */
    kiln_fatal_cb on_fatal;     /* set by the worker; may be NULL */
    kiln_count_cb on_count;     /* set by the worker; may be NULL */
    void *arg;
};

/* The constructors return 0 and a source owned by the caller (free with
 * ops->destroy), or a negative errno with `err` always set (and *out
 * untouched). */

/* A new Redis Streams source (--redis URL). */
int kiln_source_redis_new(uv_loop_t *loop, const struct kiln_queue_opts *cfg,
                          kiln_delivery_cb cb, void *arg, struct kiln_source **out,
                          char *err, size_t errlen);
/* A new Kafka source (consumer group + idempotent producer). */
int kiln_source_kafka_new(uv_loop_t *loop, const struct kiln_queue_opts *cfg,
                          kiln_delivery_cb cb, void *arg, struct kiln_source **out,
                          char *err, size_t errlen);

#endif
