/*
 * Who holds a user session, where the source routes sessions between the
 * workers of one queue (queue/source.h: session_claim, session_forward,
 * session_renew, session_end). The first job of a session id here claims
 * it: a new session opens here; one another live worker holds gets the job
 * forwarded; one whose worker is gone ends the job session_lost. Held
 * sessions are renewed every few seconds; one this worker loses (its lease
 * taken) ends.
 */
#include "core/session_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "base/log.h"
#include "core/run.h"
#include "queue/source.h"

/* This worker holds as many sessions as it may: the job that would open
 * one more is rejected (a client tries again later, or elsewhere). */
static void full(struct kiln_run *run)
{
    snprintf(run->reason, sizeof(run->reason),
             "this worker already holds its --max-sessions %lld sessions: try again when one has ended",
             (long long)run->w->cfg->max_sessions);
    kiln__run_reject(run, KILN_REJECT_LIMITS, run->reason);
}

static void on_forwarded(void *arg, int status, const char *err)
{
    struct kiln_run *run = arg;
    run->refs--;
    if (status < 0) {
        kiln_error("job %s: could not forward it to its session's worker (%s)", kiln__run_id(run), err);
        kiln__run_release(run); /* delivered again */
    } else {
        kiln__run_handoff(run);
    }
}

/* One job queued while the session was claimed, where the claim says. */
static void place(struct kiln_session *s, struct kiln_run *run, int verdict, const char *text)
{
    struct kiln_worker *w = s->w;
    if (verdict == KILN_CLAIM_NEW && s->ending == NULL) {
        full(run);
    } else if (verdict == KILN_CLAIM_NEW) {
        kiln__run_release(run); /* draining: another worker takes it */
    } else if (verdict == KILN_CLAIM_LOST) {
        kiln__session_lose(run, text);
    } else if (verdict == KILN_CLAIM_ELSEWHERE) {
        run->refs++;
        int rc = w->src->ops->session_forward == NULL ? -ENOTSUP
                 : w->src->ops->session_forward(w->src, text, run->d, on_forwarded, run);
        if (rc < 0) {
            run->refs--;
            kiln__run_release(run);
        } else {
            kiln_info("job %s: session %s is held by worker %s: forwarded there", run->job->id, s->id, text);
        }
    } else {
        kiln_warn("job %s: cannot tell who holds session %s (%s); it will be delivered again", run->job->id,
                  s->id, text);
        kiln__run_release(run);
    }
}

/* What the queue says of the session this worker asked about. */
static void on_claim(void *arg, int verdict, const char *text)
{
    struct kiln_session *s = arg;
    struct kiln_worker *w = s->w;
    if (verdict == KILN_CLAIM_NEW && w->draining && s->ending == NULL)
        s->ending = "drained";
    if (verdict == KILN_CLAIM_NEW && s->ending == NULL && s->queue != NULL &&
        w->nsessions < (unsigned)w->cfg->max_sessions) {
        kiln__session_open_sandbox(s);
        return;
    }
    /* claimed, and not opened after all: forgotten when this worker is
     * full (another may open it), else ended as it ended here */
    if (verdict == KILN_CLAIM_NEW)
        w->src->ops->session_end(w->src, s->id, s->ending);
    if (verdict == KILN_CLAIM_LOST)
        kiln__session_remember_end(w, s->id, text = kiln__session_label_of(text));
    for (struct kiln_run *run; (run = kiln__session_pop(s)) != NULL;)
        place(s, run, verdict, text);
    kiln__session_unlink(s);
}

static void on_lease_lost(void *arg, const char *id, const char *why)
{
    struct kiln_session *s = kiln__session_find(arg, id);
    if (s != NULL && s->state != KILN_SESSION_CLAIMING) {
        kiln_warn("session %s: this worker holds it no more (%s)", id, kiln__session_lost_reason(why));
        kiln__session_end(s, kiln__session_label_of(why));
    }
}

/* Every few seconds: the queue hears that this worker still holds its
 * sessions. */
static void on_renew(uv_timer_t *t)
{
    struct kiln_worker *w = t->data;
    const char *ids[256];
    size_t n = 0;
    for (struct kiln_session *s = w->sessions; s != NULL && n < 256; s = s->next)
        if (s->state != KILN_SESSION_CLAIMING && s->state != KILN_SESSION_ENDING && s->ending == NULL)
            ids[n++] = s->id;
    w->src->ops->session_renew(w->src, ids, n, on_lease_lost, w);
}

static void renew_start(struct kiln_worker *w)
{
    static uv_timer_t timer;
    static int started;
    if (started || w->src->ops->session_renew == NULL)
        return;
    started = 1;
    uv_timer_init(w->loop, &timer);
    timer.data = w;
    uv_timer_start(&timer, on_renew, 5000, 5000);
    uv_unref((uv_handle_t *)&timer);
}

void kiln__session_open(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    const struct kiln_config *cfg = w->cfg;
    if (w->draining) {
        kiln__session_lose(run, "drained");
        return;
    }
    if (w->src->ops->session_claim == NULL && w->nsessions >= (unsigned)cfg->max_sessions) {
        full(run);
        return;
    }
    struct kiln_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        kiln__run_finish(run, KILN_STATUS_INTERNAL, "out of memory opening a session");
        return;
    }
    s->w = w;
    s->state = KILN_SESSION_CLAIMING; /* (where the source does not route sessions, OPENING next) */
    snprintf(s->id, sizeof(s->id), "%s", run->job->session);
    s->plugin = run->plugin->name;
    s->image = run->image;
    snprintf(s->kid, sizeof(s->kid), "%s", run->kid);
    s->idle_ms = run->job->session_idle_ms > 0 ? run->job->session_idle_ms : cfg->session_idle_ms;
    uv_timer_init(w->loop, &s->idle);
    s->idle.data = s;
    s->next = w->sessions;
    w->sessions = s;
    run->session = s;
    s->queue = run;
    if (w->src->ops->session_claim == NULL) {
        kiln__session_open_sandbox(s);
        return;
    }
    renew_start(w);
    int rc = w->src->ops->session_claim(w->src, s->id, run->d, on_claim, s);
    if (rc < 0)
        on_claim(s, rc, rc == -ENOTCONN ? "not connected to the queue" : strerror(-rc));
}
