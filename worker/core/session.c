/*
 * A user session's life (core/session_int.h has its states) and the
 * worker's table of them.
 *
 * A session holds one link (core/link.c) in "keep" mode: the link's events
 * go to the job that runs in it, and when that job's cell has ended the
 * job lets go of it (its exit frame and ack go on as for any job) and the
 * next queued job, or the idle timer, follows. A session that has ended is
 * remembered for a while (why), so that a job for it ends session_lost
 * instead of opening a new one that has lost its state.
 */
#include "core/session_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/image.h"
#include "core/link.h"
#include "base/log.h"
#include "core/metrics.h"
#include "core/run.h"
#include "queue/source.h"
#include "sandbox/backend.h"

/* How long an ended session's id is remembered, and how many. */
#define ENDED_MEMORY_MS (60 * 60 * 1000)
#define ENDED_MAX 4096

/* ---- its state ---------------------------------------------------------- */

static const char *const state_names[] = {"claiming", "opening", "ready", "busy", "ending", "gone"};

const char *kiln__session_state_name(enum kiln_session_state st)
{
    return state_names[st];
}

/* The moves core/session_int.h draws: allowed[from] has bit `to`. */
#define TO(st) (1u << KILN_SESSION_##st)
static const unsigned allowed[] = {
    [KILN_SESSION_CLAIMING] = TO(OPENING) | TO(GONE),
    [KILN_SESSION_OPENING] = TO(READY) | TO(ENDING) | TO(GONE),
    [KILN_SESSION_READY] = TO(BUSY) | TO(ENDING) | TO(GONE),
    [KILN_SESSION_BUSY] = TO(READY) | TO(ENDING) | TO(GONE),
    [KILN_SESSION_ENDING] = TO(ENDING) | TO(GONE),
    [KILN_SESSION_GONE] = 0,
};
#undef TO

void kiln__session_move(struct kiln_session *s, enum kiln_session_state to)
{
    if (!(allowed[s->state] & (1u << to)))
        kiln_error("session %s: %s -> %s is no move of a session's (a bug)", s->id,
                   kiln__session_state_name(s->state), kiln__session_state_name(to));
    else if (s->state != to)
        kiln_debug("session %s: %s -> %s", s->id, kiln__session_state_name(s->state),
                   kiln__session_state_name(to));
    s->state = to;
}

/* ---- why sessions end, and which ended ------------------------------------ */

/* Why a session ended: its label (for metrics and the queue), and what a
 * job for it after that is told. */
static const struct { const char *label, *text; } endings[] = {
    {"closed", "the session was closed (a job with close: true)"},
    {"idle", "the session ended after its idle time without a job"},
    {"cancelled", "the session was cancelled"},
    {"drained", "the worker that held the session drained"},
    {"exited", "the session's interpreter exited"},
    {"sandbox_died", "the session's sandbox died"},
    {"worker_gone", "the worker that held the session is gone"},
    {"moved", "the session's partition moved to another worker (a rebalance), or its jobs are not keyed by the session id"},
    {"cpu_budget", "the session used up its CPU time (the worker's --session-cpu-ms), its jobs and what they left running together"},
};

#define NENDINGS (sizeof(endings) / sizeof(endings[0]))

static size_t ending_of(const char *label)
{
    size_t i = 0;
    while (i < NENDINGS && strcmp(endings[i].label, label) != 0)
        i++;
    return i; /* NENDINGS: none */
}

const char *kiln__session_lost_reason(const char *label)
{
    size_t i = ending_of(label);
    return i < NENDINGS ? endings[i].text : label;
}

const char *kiln__session_label_of(const char *text)
{
    size_t i = ending_of(text);
    return i < NENDINGS ? endings[i].label : "worker_gone";
}

const char *kiln_session_ending(size_t i)
{
    return i < NENDINGS ? endings[i].label : NULL;
}

static struct {
    char id[KILN_JOB_ID_MAX + 1];
    const char *why;
    uint64_t at;
} ended[ENDED_MAX];
static unsigned nended;

void kiln__session_remember_end(struct kiln_worker *w, const char *id, const char *why)
{
    unsigned i = nended++ % ENDED_MAX;
    snprintf(ended[i].id, sizeof(ended[i].id), "%s", id);
    ended[i].why = why;
    ended[i].at = uv_now(w->loop);
}

static const char *ended_why(struct kiln_worker *w, const char *id)
{
    uint64_t now = uv_now(w->loop);
    unsigned n = nended < ENDED_MAX ? nended : ENDED_MAX;
    for (unsigned k = 0; k < n; k++) {
        unsigned i = (nended - 1 - k) % ENDED_MAX;
        if (now - ended[i].at < ENDED_MEMORY_MS && strcmp(ended[i].id, id) == 0)
            return ended[i].why;
    }
    return NULL;
}

void kiln__session_lose(struct kiln_run *run, const char *label)
{
    snprintf(run->reason, sizeof(run->reason), "%s", kiln__session_lost_reason(label));
    kiln__run_finish(run, KILN_STATUS_SESSION_LOST, run->reason);
}

/* ---- the table ------------------------------------------------------------ */

struct kiln_session *kiln__session_find(struct kiln_worker *w, const char *id)
{
    for (struct kiln_session *s = w->sessions; s != NULL; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static void on_idle_closed(uv_handle_t *h)
{
    struct kiln_session *s = h->data;
    s->idle.data = NULL; /* closed: the answer to a question still out frees it */
    if (!s->gating)
        free(s);
}

void kiln__session_unlink(struct kiln_session *s)
{
    struct kiln_session **pp = &s->w->sessions;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    kiln__session_move(s, KILN_SESSION_GONE);
    uv_close((uv_handle_t *)&s->idle, on_idle_closed);
}

/* ---- its end ---------------------------------------------------------------- */

void kiln__session_end(struct kiln_session *s, const char *why)
{
    if (s->ending == NULL)
        s->ending = why;
    uv_timer_stop(&s->idle);
    kiln__session_unexpose(s); /* its URLs stop now, whatever still runs */
    for (struct kiln_run *run; (run = kiln__session_pop(s)) != NULL;)
        kiln__session_lose(run, s->ending);
    kiln__session_move(s, KILN_SESSION_ENDING);
    if (s->run == NULL && s->link != NULL)
        kiln_link_kill(s->link); /* GONE follows: then it is freed */
}

/* Its sandbox is gone: the session with it. */
static void gone(struct kiln_session *s)
{
    struct kiln_worker *w = s->w;
    kiln__session_end(s, "sandbox_died");
    w->nsessions--;
    kiln__session_remember_end(w, s->id, s->ending);
    if (w->src->ops->session_end != NULL)
        w->src->ops->session_end(w->src, s->id, s->ending);
    kiln_metrics_session_closed(s->ending);
    kiln_info("session %s: ended (%s) after %lld job(s)", s->id, s->ending, (long long)s->seq);
    kiln__session_unlink(s);
}

/* ---- its link ----------------------------------------------------------- */

/* The job's cell is over and the session lives on: the job lets go of it
 * (its frames and ack go on) and the next one may come. */
static void let_go(struct kiln_session *s)
{
    struct kiln_run *run = s->run;
    s->run = NULL;
    run->link = NULL;
    run->session = NULL;
    if (s->state == KILN_SESSION_BUSY)
        kiln__session_move(s, KILN_SESSION_READY);
    if (run->job->session_close)
        kiln__session_end(s, "closed");
    kiln__run_advance(run);
    kiln__run_unref(run);
    kiln__session_pump(s);
}

static void on_event(void *arg, const struct kiln_link_event *ev)
{
    struct kiln_session *s = arg;
    struct kiln_run *run = s->run;
    switch (ev->type) {
    case KILN_LINK_EV_READY:
        if (s->state == KILN_SESSION_OPENING)
            kiln__session_move(s, KILN_SESSION_READY);
        kiln__session_pump(s);
        return;
    case KILN_LINK_EV_GONE:
        s->link = NULL;
        s->run = NULL;
        if (run != NULL) {
            run->session = NULL;
            kiln__run_on_link(run, ev); /* its end says the sandbox died */
        }
        gone(s);
        return;
    case KILN_LINK_EV_EXIT:
        if (ev->exit->ended && s->ending == NULL)
            s->ending = "exited"; /* its interpreter is gone: the session ends after this cell */
        break;
    default:
        break;
    }
    if (run == NULL)
        return;
    kiln__run_on_link(run, ev);
    /* an exit (or a job's own error) leaves the link READY: the cell is over */
    if ((ev->type == KILN_LINK_EV_EXIT || ev->type == KILN_LINK_EV_ERROR) && s->run == run &&
        s->link != NULL && s->link->state == KILN_LINK_READY)
        let_go(s);
}

void kiln__session_open_sandbox(struct kiln_session *s)
{
    struct kiln_worker *w = s->w;
    struct kiln_run *run = s->queue;
    char err[512];
    struct kiln_spawn_opts needs = {.memory_mb = run->lim.memory_mb > 0 ? run->lim.memory_mb : w->cfg->sb.memory_mb,
                                    .fresh = 1, .inbound = w->expose != NULL};
    s->memory_mb = needs.memory_mb;
    w->nsessions++;
    kiln_metrics_session_opened(s->plugin);
    kiln__session_move(s, KILN_SESSION_OPENING);
    if (kiln_link_spawn(w->loop, s->image->backend, run->plan.profile, &needs, NULL, on_event, s, &s->link, err,
                        sizeof(err)) < 0) {
        char why[600];
        s->link = NULL;
        snprintf(why, sizeof(why), "the session's sandbox failed to start: %s", err);
        kiln_error("job %s: %s", run->job->id, why);
        kiln__session_pop(s);
        kiln__run_finish(run, KILN_STATUS_INTERNAL, why);
        gone(s);
        return;
    }
    /* its CPU counts from here (a reused cgroup may have counted before) */
    const struct kiln_backend_ops *ops = s->image->backend->ops;
    s->cpu_base = ops->cpu_ms != NULL && s->link->sb != NULL ? ops->cpu_ms(s->link->sb) : -1;
    kiln_info("session %s: opened for job %s (%s, idle %lld ms)", s->id, run->job->id, s->plugin,
              (long long)s->idle_ms);
    if (s->link->state == KILN_LINK_READY) {
        kiln__session_move(s, KILN_SESSION_READY);
        kiln__session_pump(s);
    }
}

/* ---- what the rest of core asks ---------------------------------------------- */

int64_t kiln__session_memory_mb(const struct kiln_run *run)
{
    return run->session != NULL && run->session->memory_mb > 0 ? run->session->memory_mb : 0;
}

int kiln__session_may_keep(const struct kiln_run *run)
{
    return run->session != NULL && run->link != NULL && run->link->state == KILN_LINK_READY;
}

void kiln__session_take(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    const struct kiln_job *job = run->job;
    if (run->image->backend->no_sessions != NULL) {
        snprintf(run->reason, sizeof(run->reason), "this worker cannot keep sessions: %s",
                 run->image->backend->no_sessions);
        kiln__run_reject(run, KILN_REJECT_UNAVAILABLE, run->reason);
        return;
    }
    if (job->session_idle_ms > w->cfg->max_session_idle_ms) {
        snprintf(run->reason, sizeof(run->reason), "session.idle_ms %lld is over this worker's maximum of %lld",
                 (long long)job->session_idle_ms, (long long)w->cfg->max_session_idle_ms);
        kiln__run_reject(run, KILN_REJECT_LIMITS, run->reason);
        return;
    }
    struct kiln_session *s = kiln__session_find(w, job->session);
    const char *no_expose = kiln__session_expose_refusal(s, run);
    if (no_expose != NULL) {
        snprintf(run->reason, sizeof(run->reason), "session.expose: %s", no_expose);
        kiln__run_reject(run, KILN_REJECT_UNAVAILABLE, run->reason);
        return;
    }
    if (s != NULL) {
        if (strcmp(s->plugin, run->plugin->name) != 0) {
            snprintf(run->reason, sizeof(run->reason), "session %s runs plugin %s, not %s", s->id,
                     s->plugin, run->plugin->name);
            kiln__run_reject(run, KILN_REJECT_INVALID, run->reason);
            return;
        }
        if (job->image != NULL && run->image != s->image) {
            snprintf(run->reason, sizeof(run->reason), "session %s runs on image %s, not %s", s->id,
                     s->image->name, run->image->name);
            kiln__run_reject(run, KILN_REJECT_INVALID, run->reason);
            return;
        }
        run->image = s->image; /* a later job need not name it */
        run->image->jobs++;
        if (strcmp(s->kid, run->kid) != 0) { /* signed jobs: a session is its opener's key's */
            snprintf(run->reason, sizeof(run->reason),
                     "session %s was opened by a job signed with another key", s->id);
            kiln__run_reject(run, KILN_REJECT_SIGNATURE, run->reason);
            return;
        }
        if (s->state == KILN_SESSION_ENDING) {
            kiln__session_lose(run, s->ending);
            return;
        }
        kiln__session_enqueue(s, run);
        kiln__session_pump(s);
        return;
    }
    const char *why = ended_why(w, job->session);
    if (why != NULL) {
        kiln__session_lose(run, why);
        return;
    }
    run->image->jobs++;
    kiln__session_open(run);
}

int kiln__session_unqueue(struct kiln_run *run)
{
    struct kiln_session *s = run->session;
    if (s == NULL || s->run == run)
        return 0;
    for (struct kiln_run **pp = &s->queue; *pp != NULL; pp = &(*pp)->session_next)
        if (*pp == run) {
            *pp = run->session_next;
            run->session_next = NULL;
            run->session = NULL;
            return 1;
        }
    return 0;
}

void kiln__session_cancel(struct kiln_worker *w, const char *id)
{
    struct kiln_session *s = kiln__session_find(w, id);
    if (s == NULL || s->state == KILN_SESSION_CLAIMING)
        return;
    kiln_info("session %s: cancelled", id);
    kiln__session_end(s, "cancelled");
    if (s->run != NULL)
        kiln__run_stop(s->run, STOP_CANCEL);
}

void kiln__session_drain(struct kiln_worker *w)
{
    for (struct kiln_session *s = w->sessions, *next; s != NULL; s = next) {
        next = s->next;
        if (s->state != KILN_SESSION_CLAIMING)
            kiln__session_end(s, "drained");
    }
}

void kiln__session_check_budgets(struct kiln_worker *w)
{
    int64_t budget = w->cfg->session_cpu_ms;
    if (budget <= 0)
        return;
    for (struct kiln_session *s = w->sessions; s != NULL; s = s->next) {
        if (s->state == KILN_SESSION_CLAIMING || s->state == KILN_SESSION_ENDING || s->link == NULL ||
            s->link->sb == NULL || s->link->sb->backend->ops->cpu_ms == NULL)
            continue;
        int64_t used = s->link->sb->backend->ops->cpu_ms(s->link->sb);
        if (used < 0 || s->cpu_base < 0)
            continue;
        used -= s->cpu_base;
        if (used > budget) {
            kiln_info("session %s: %lld ms of CPU used, its budget is %lld: it ends", s->id, (long long)used,
                      (long long)budget);
            kiln__session_end(s, "cpu_budget");
        }
    }
}

void kiln_session_gauges(struct kiln_worker *w, FILE *out)
{
    fprintf(out, "# HELP kiln_sessions_open Sessions open on this worker.\n# TYPE kiln_sessions_open gauge\n"
                 "kiln_sessions_open %u\n", w->nsessions);
    fprintf(out, "# HELP kiln_sessions_max Sessions this worker keeps open at most.\n"
                 "# TYPE kiln_sessions_max gauge\nkiln_sessions_max %lld\n", (long long)w->cfg->max_sessions);
}
