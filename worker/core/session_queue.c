/*
 * A user session's jobs, one after another, in the order they came into
 * the job stream. Where a source routes sessions between workers, a job
 * forwarded here may arrive after one that followed it; the head of the
 * queue starts once the source says no earlier job of the session is on
 * its way (the gate), or after GATE_MAX_MS.
 */
#include "core/session_int.h"

#include <stdlib.h>

#include "core/config.h"
#include "core/link.h"
#include "base/log.h"
#include "core/metrics.h"
#include "core/run.h"
#include "queue/source.h"

/* How long the head of a session's queue waits for an earlier job of it
 * still on its way from another worker, at most. */
#define GATE_MAX_MS 5000
#define GATE_RETRY_MS 10

/* Two deliveries by where they first came into the job stream ("ms-seq"
 * entry ids); without one (Kafka), in the order they came here. */
static int origin_cmp(const struct kiln_delivery *a, const struct kiln_delivery *b)
{
    unsigned long long am, as = 0, bm, bs = 0;
    char *e;
    if (a == NULL || b == NULL || a->origin[0] == '\0' || b->origin[0] == '\0')
        return 0;
    am = strtoull(a->origin, &e, 10);
    if (*e == '-')
        as = strtoull(e + 1, NULL, 10);
    bm = strtoull(b->origin, &e, 10);
    if (*e == '-')
        bs = strtoull(e + 1, NULL, 10);
    return am != bm ? (am < bm ? -1 : 1) : as != bs ? (as < bs ? -1 : 1) : 0;
}

void kiln__session_enqueue(struct kiln_session *s, struct kiln_run *run)
{
    struct kiln_run **pp = &s->queue;
    while (*pp != NULL && origin_cmp((*pp)->d, run->d) <= 0)
        pp = &(*pp)->session_next;
    run->session_next = *pp;
    *pp = run;
    run->session = s;
}

struct kiln_run *kiln__session_pop(struct kiln_session *s)
{
    struct kiln_run *run = s->queue;
    if (run != NULL) {
        s->queue = run->session_next;
        run->session_next = NULL;
        run->session = NULL;
    }
    return run;
}

/* ---- the gate ------------------------------------------------------------- */

static void on_gate_retry(uv_timer_t *t)
{
    kiln__session_pump(t->data);
}

static void on_gate(void *arg, int clear)
{
    struct kiln_session *s = arg;
    s->gating = 0;
    if (s->state == KILN_SESSION_GONE) {
        if (s->idle.data == NULL) /* its handle is closed: nothing else frees it */
            free(s);
        return;
    }
    if (clear == 0 && s->gate_for == s->queue && s->link != NULL) {
        uv_timer_start(&s->idle, on_gate_retry, GATE_RETRY_MS, 0);
        return;
    }
    if (clear != 0)
        s->gated = s->gate_for;
    kiln__session_pump(s);
}

/* The head of the queue may start: no earlier job of the session is on
 * its way here (or the queue cannot say, or it waited long enough). */
static int may_start(struct kiln_session *s, struct kiln_run *head)
{
    struct kiln_source *src = s->w->src;
    if (src->ops->session_gate == NULL || head->d == NULL || head->d->origin[0] == '\0' || s->gated == head)
        return 1;
    if (s->gating)
        return 0; /* its answer pumps again */
    uint64_t now = uv_now(s->w->loop);
    if (s->gate_for != head) {
        s->gate_for = head;
        s->gate_since = now;
    }
    if (now - s->gate_since >= GATE_MAX_MS) {
        kiln_warn("session %s: job %s waited %d ms for an earlier job of the session; starting it",
                  s->id, head->job->id, GATE_MAX_MS);
        return 1;
    }
    s->gating = 1;
    if (src->ops->session_gate(src, s->id, head->d->origin, on_gate, s) == 0)
        return 0;
    s->gating = 0;
    return 1;
}

/* ---- the next job ---------------------------------------------------------- */

static void on_idle(uv_timer_t *t)
{
    kiln__session_end(t->data, "idle");
}

void kiln__session_pump(struct kiln_session *s)
{
    if (s->run != NULL || s->link == NULL)
        return;
    if (s->state == KILN_SESSION_ENDING || (s->state == KILN_SESSION_READY && s->ending != NULL)) {
        kiln__session_end(s, s->ending);
        return;
    }
    if (s->state != KILN_SESSION_READY)
        return; /* its sandbox is not up yet */
    struct kiln_run *run = s->queue;
    if (run == NULL) {
        uv_timer_start(&s->idle, on_idle, (uint64_t)s->idle_ms, 0);
        return;
    }
    uv_timer_stop(&s->idle);
    if (!may_start(s, run))
        return;
    s->gate_for = s->gated = NULL;
    kiln__session_pop(s);
    run->session = s;
    s->run = run;
    kiln__session_move(s, KILN_SESSION_BUSY);
    run->session_seq = ++s->seq;
    run->link = s->link;
    run->refs++; /* the session's, until the job lets go of it */
    kiln_log_job(KILN_LOG_INFO, run->job->id, run->plugin->name, kiln__run_attempt(run),
                 "job %s attempt %u: started (%s, session %s, job %lld of it, from %s)", run->job->id,
                 kiln__run_attempt(run), run->plugin->name, s->id, (long long)run->session_seq, run->d->ref);
    kiln_metrics_job_started(run->plugin->name);
    if (run->job->nexpose > 0 && s->w->expose != NULL)
        kiln__session_expose(s, run);
    kiln__run_send(run);
}
