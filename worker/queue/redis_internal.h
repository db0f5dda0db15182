/*
 * The Redis source's private state, shared by its files and by nothing
 * else:
 *   redis.c        connections, the outbox (cmd), the tick, the ops
 *   redis_fetch.c  deliveries: the fetch loop (fetch) and the control
 *                  stream (ctl)
 *   redis_uv.c     hiredis on libuv
 *   redis_url.c    --redis parsing
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

enum phase { PH_GROUP, PH_RECOVER, PH_NEW };

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
    unsigned acks_unconfirmed;      /* finished, XACK sent, Redis not yet answered */
    int fetching;
    uint64_t fetch_sent;            /* loop ms */
    uint64_t fetch_wait;            /* how long that fetch may take */
    uint64_t pause_until;           /* after an error reply */
    enum phase phase;
    char recover_from[64];
    char claim_from[64];
    uint64_t next_claim, next_touch;
    uv_timer_t tick;
    struct rdelivery *inflight;
    int stopping;
    int draining;                   /* no more fetches */
    int closing;                    /* timers still closing */
};

static inline uint64_t kiln__redis_now(struct rsrc *s)
{
    return uv_now(s->pub.loop);
}

/* redis.c: take `d` off the in-flight list and free it. */
void kiln__redis_release(struct rsrc *s, struct rdelivery *d);
/* redis_fetch.c: send the next group read or claim, if one is due and
 * there is credit for it. */
void kiln__redis_fetch_next(struct rsrc *s);
/* redis_fetch.c: send the next control stream read, if none is under way. */
void kiln__redis_control_next(struct rsrc *s);

#endif
