/*
 * The Redis source's private state, shared by its files and by nothing
 * else:
 *   redis.c        connections, the outbox (cmd), the tick, the ops
 *   redis_fetch.c  deliveries: the fetch loop (fetch) and the control
 *                  stream (ctl)
 *   redis_uv.c     hiredis on libuv
 *   redis_url.c    --redis parsing
 *   redis_session.c sessions between workers: owner keys, the stream of
 *                  each worker, forwarding, leases, the sweep of the dead
 */
#ifndef KILN_REDIS_INTERNAL_H
#define KILN_REDIS_INTERNAL_H

#include <hiredis/async.h>
#include <stdint.h>
#include <uv.h>

#include "queue/redis_url.h"
#include "queue/source.h"

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
    const char *stream;             /* the job stream, or this worker's own (s->mine) */
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
    kiln_write_cb cb;               /* called once, with Redis's answer */
    void *arg;
    struct rdelivery *acked;        /* XACK: released when answered */
};

enum phase { PH_GROUP, PH_RECOVER, PH_RECOVER_MINE, PH_NEW };

struct rsrc {
    struct kiln_source pub;
    struct kiln_redis_url url;
    struct rconn cmd, fetch, ctl;
    char ctl_last[64];              /* control stream: last entry read */
    long long pending;              /* the group's pending entries, -1 unknown */
    long long lag;                  /* entries not yet delivered to the group, -1 */
    uint64_t next_depth;
    int ctl_reading;
    struct op *head, *tail;
    unsigned credit;
    unsigned mine_credit;           /* forwarded jobs (unslotted) it may hold more */
    long long fetch_id;             /* the fetch connection's CLIENT ID, 0 unknown */
    unsigned held;                  /* sessions this worker holds (as last renewed):
                                     * only then is its own stream read alone */
    int fetch_mine_only;            /* the read under way is of this worker's stream
                                     * alone (the slots were full) */
    int unblock_sent;               /* ... and a slot has freed: CLIENT UNBLOCK sent */
    unsigned acks_unconfirmed;      /* finished, XACK sent, Redis not yet answered */
    int fetching;
    uint64_t fetch_sent;            /* loop ms */
    uint64_t fetch_wait;            /* how long that fetch may take */
    uint64_t pause_until;           /* after an error reply */
    enum phase phase;
    char recover_from[64];
    char claim_from[64];
    uint64_t next_claim, next_touch;
    uint64_t tick_ms;                  /* on_tick's period */
    uv_timer_t tick;
    char *mine;                     /* <jobs>:worker:<consumer>: jobs of its sessions
                                     * that other workers forwarded */
    char me[200];                   /* "<consumer> <instance>": owner keys' value */
    uint64_t next_beat;             /* the heartbeat and sweep (redis_session.c) */
    struct rdelivery *inflight;
    int stopping;
    int draining;                   /* no more fetches */
    int closing;                    /* timers still closing */
};

static inline uint64_t kiln__redis_now(struct rsrc *s)
{
    return uv_now(s->pub.loop);
}

/* redis.c: queue a command on the outbox (cmd connection), in order, sent
 * again after a reconnect until answered; `cb` (may be NULL) hears the
 * answer, `acked` is released with it. 0 or -ENOMEM. */
int kiln__redis_enqueue(struct rsrc *s, int argc, const char **argv, const size_t *argvlen,
                        kiln_write_cb cb, void *arg, struct rdelivery *acked);
/* redis_session.c: the heartbeat of this worker and the sweep of workers
 * that stopped beating (their streams back to the job stream), due every
 * few seconds from the tick. */
void kiln__redis_session_tick(struct rsrc *s);
/* redis_session.c: the session ops of struct kiln_source_ops. */
int kiln__redis_session_claim(struct kiln_source *src, const char *id, struct kiln_delivery *d,
                              kiln_claim_cb cb, void *arg);
int kiln__redis_session_forward(struct kiln_source *src, const char *owner, struct kiln_delivery *d,
                                kiln_write_cb cb, void *arg);
int kiln__redis_session_gate(struct kiln_source *src, const char *id, const char *origin,
                             void (*cb)(void *arg, int clear), void *arg);
void kiln__redis_session_end(struct kiln_source *src, const char *id, const char *why);
void kiln__redis_session_renew(struct kiln_source *src, const char *const *ids, size_t n,
                               kiln_lost_cb lost, void *arg);
/* redis.c: take `d` off the in-flight list and free it. */
void kiln__redis_release(struct rsrc *s, struct rdelivery *d);
/* redis_fetch.c: send the next group read or claim, if one is due and
 * there is credit for it. */
void kiln__redis_fetch_next(struct rsrc *s);
/* redis_fetch.c: send the next control stream read, if none is under way. */
void kiln__redis_control_next(struct rsrc *s);

#endif
