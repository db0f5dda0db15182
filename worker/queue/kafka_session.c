/*
 * Sessions on Kafka (core/session.h). Producers key a session's jobs by its
 * id, so they reach one partition, and the one worker that holds it, in
 * order: nothing is forwarded. What every worker must know is which
 * sessions exist, so that a job for one that ended, or whose partition
 * moved to this worker in a rebalance, is told so instead of opening a new
 * one that has lost its state. Workers say it on the control topic, which
 * each reads whole (its own group, from the earliest message kept):
 *
 *   {session_open: id, worker: consumer}   a worker opened it
 *   {session_end: id, why: label}          it ended (a core/session.c label)
 *
 * A worker whose partition is revoked or lost gives up the sessions it
 * opened from that partition at its next renewal ("moved").
 */
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/options.h"
#include "base/log.h"
#include "queue/kafka_internal.h"
#include "wire/job.h"
#include "wire/proto.h"

/* Sessions told of on the control topic, newest first; at most this many,
 * and none older than this (a session lives at most --max-session-idle-ms
 * between jobs, and an ended one is remembered as long as Redis does). */
#define KNOWN_MAX 16384
#define KNOWN_MS (2 * 3600 * 1000LL)

struct known {
    struct known *next;
    char id[KILN_JOB_ID_MAX + 1];
    char worker[128];            /* who opened it */
    char ended[24];              /* why it ended (a label, as said), or "": open */
    struct kiln_kafka_part *part; /* ours: the partition its first job came from */
    unsigned gen;                /* ... in that generation */
    int64_t at;                  /* when it was said (unix ms) */
};

static struct known *known;
static size_t nknown;

static struct known *find(const char *id)
{
    for (struct known *k = known; k != NULL; k = k->next)
        if (strcmp(k->id, id) == 0)
            return k;
    return NULL;
}

static struct known *remember(const char *id, int64_t at)
{
    struct known *k = find(id);
    if (k != NULL)
        return k;
    if ((k = calloc(1, sizeof(*k))) == NULL)
        return NULL;
    snprintf(k->id, sizeof(k->id), "%s", id);
    k->at = at;
    k->next = known;
    known = k;
    if (++nknown > KNOWN_MAX) { /* the oldest goes */
        struct known **pp = &known;
        while ((*pp)->next != NULL)
            pp = &(*pp)->next;
        free(*pp);
        *pp = NULL;
        nknown--;
    }
    return k;
}

/* It ended, for `why` (a label; core/session.c reads any other as
 * worker_gone). */
static void ended(struct known *k, const char *why)
{
    snprintf(k->ended, sizeof(k->ended), "%s", why[0] != '\0' ? why : "worker_gone");
    k->part = NULL;
}

int kiln__kafka_session_message(const msgpack_object *m, int64_t at)
{
    const msgpack_object *open = kiln_mp_get(m, "session_open"), *end = kiln_mp_get(m, "session_end");
    const msgpack_object *o = open != NULL ? open : end;
    char *id = o != NULL ? kiln_mp_strdup(o) : NULL;
    if (id == NULL || !kiln_job_valid_id(id)) {
        free(id);
        return 0;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (at > 0 && at < (int64_t)now.tv_sec * 1000 - KNOWN_MS) { /* too old to matter */
        free(id);
        return 1;
    }
    struct known *k = remember(id, at);
    free(id);
    if (k == NULL)
        return 1;
    if (open != NULL) {
        char *w = (o = kiln_mp_get(m, "worker")) != NULL ? kiln_mp_strdup(o) : NULL;
        if (w != NULL && k->part == NULL) /* (our own claim knows it already) */
            snprintf(k->worker, sizeof(k->worker), "%s", w);
        free(w);
    } else {
        char *why = (o = kiln_mp_get(m, "why")) != NULL ? kiln_mp_strdup(o) : NULL;
        if (why != NULL && strcmp(why, "forget") == 0) { /* claimed, never opened */
            struct known **pp = &known;
            while (*pp != k)
                pp = &(*pp)->next;
            *pp = k->next;
            free(k);
            nknown--;
        } else {
            ended(k, why != NULL ? why : "");
        }
        free(why);
    }
    return 1;
}

/* One control message, produced like a frame (in the transaction, with
 * --kafka-transactions), keyed by the session id. */
static void say(struct ksrc *s, const char *id, const char *what, const char *k2, const char *v2)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct kiln_map m;
    kiln_map_init(&m);
    kiln_map_str(&m, what, id);
    kiln_map_str(&m, k2, v2);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    kiln_map_end(&m, &pk);
    struct kiln_frame_info info = {"control", 0, 0, NULL};
    if (kiln__kafka_write(&s->pub, s->pub.cfg->control, id, sb.data, sb.size, &info, NULL, NULL) < 0)
        kiln_error("session %s: out of memory telling the control topic", id);
    msgpack_sbuffer_destroy(&sb);
}

/* The claim's answer, from the loop (never inside session_claim()). */
struct answer {
    uv_timer_t t;
    kiln_claim_cb cb;
    void *arg;
    int verdict;
    char text[24];
};

static void on_answer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_answer(uv_timer_t *t)
{
    struct answer *a = t->data;
    a->cb(a->arg, a->verdict, a->text);
    uv_close((uv_handle_t *)&a->t, on_answer_closed);
}

int kiln__kafka_session_claim(struct kiln_source *src, const char *id, struct kiln_delivery *pub,
                              kiln_claim_cb cb, void *arg)
{
    struct ksrc *s = (struct ksrc *)src;
    struct kdelivery *d = (struct kdelivery *)pub;
    struct answer *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->cb = cb;
    a->arg = arg;
    struct known *k = find(id);
    if (k != NULL) { /* ended; or open and not here: its partition moved (or it was not keyed) */
        a->verdict = KILN_CLAIM_LOST;
        snprintf(a->text, sizeof(a->text), "%s", k->ended[0] != '\0' ? k->ended : "moved");
    } else if ((k = remember(id, 0)) == NULL) {
        free(a);
        return -ENOMEM;
    } else {
        a->verdict = KILN_CLAIM_NEW;
        snprintf(k->worker, sizeof(k->worker), "%s", s->pub.cfg->consumer);
        k->part = d->part;
        k->gen = d->gen;
        say(s, id, "session_open", "worker", s->pub.cfg->consumer);
    }
    uv_timer_init(s->pub.loop, &a->t);
    a->t.data = a;
    uv_timer_start(&a->t, on_answer, 0, 0);
    return 0;
}

void kiln__kafka_session_end(struct kiln_source *src, const char *id, const char *why)
{
    struct ksrc *s = (struct ksrc *)src;
    struct known *k = find(id);
    if (why == NULL) { /* it never opened: as if never claimed (the message forgets it) */
        if (k != NULL)
            k->part = NULL;
        why = "forget";
    } else if (k != NULL) {
        ended(k, why);
    }
    say(s, id, "session_end", "why", why);
}

void kiln__kafka_session_renew(struct kiln_source *src, const char *const *ids, size_t n,
                               kiln_lost_cb lost, void *arg)
{
    (void)src;
    for (size_t i = 0; i < n; i++) {
        struct known *k = find(ids[i]);
        if (k != NULL && k->part != NULL &&
            (k->part->gen != k->gen || k->part->assigned == KILN_KAFKA_UNASSIGNED))
            lost(arg, ids[i], "moved"); /* its partition is another worker's now */
    }
}

void kiln__kafka_session_free(void)
{
    while (known != NULL) {
        struct known *k = known;
        known = k->next;
        free(k);
    }
    nknown = 0;
}
