/*
 * Sessions: sandboxes kept from one job to the next (core/repl.h).
 *
 *   OPENING (sandbox starting) -> READY <-> BUSY (a job's cell) -> ENDING -> gone
 *
 * A session is one kiln_session (the agent conversation, core/session.c)
 * in "keep" mode, owned here: its events go to the job that runs in it,
 * and when that job's cell has ended the job lets go of it (its exit frame
 * and ack go on as for any job) and the next queued job, or the idle
 * timer, follows. A session that has ended is remembered for a while
 * (why), so that a job for it ends session_lost instead of opening a new
 * one that has lost its state.
 */
#include "core/repl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/run.h"
#include "core/session.h"
#include "queue/source.h"
#include "sandbox/backend.h"

/* How long an ended session's id is remembered, and how many. */
#define ENDED_MEMORY_MS (60 * 60 * 1000)
#define ENDED_MAX 4096

struct kiln_repl {
    struct kiln_repl *next;
    struct kiln_worker *w;
    char id[KILN_JOB_ID_MAX + 1];
    const char *plugin;           /* its plugin's name (the plugin outlives it) */
    char kid[128];                /* the key its first job was signed with, or "" */
    struct kiln_session *s;       /* NULL once its sandbox is gone */
    struct kiln_run *run;         /* the job in it now, or NULL */
    struct kiln_run *queue;       /* jobs waiting for it, in order (repl_next) */
    int64_t seq;                  /* jobs it has taken */
    int64_t idle_ms;
    int64_t memory_mb;            /* what its sandbox holds it to: its first job's */
    uv_timer_t idle;
    int ready;                    /* its interpreter's sandbox is up */
    int claiming;                 /* asking the queue who holds it: not open here (yet) */
    /* the order of its jobs across workers: the queue's head may start
     * once none of the session's that came before it is on its way here */
    struct kiln_run *gate_for;    /* the head asked about */
    struct kiln_run *gated;       /* the head that may start */
    uint64_t gate_since;
    int gating;                   /* a question is out */
    int dead;                     /* freed once that answer is in */
    const char *ending;           /* why it ends (a metrics label), or NULL */
};

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
};

#define NENDINGS (sizeof(endings) / sizeof(endings[0]))

static size_t ending_of(const char *label)
{
    size_t i = 0;
    while (i < NENDINGS && strcmp(endings[i].label, label) != 0)
        i++;
    return i; /* NENDINGS: none */
}

static const char *lost_reason(const char *label)
{
    size_t i = ending_of(label);
    return i < NENDINGS ? endings[i].text : label;
}

/* The static label a queue's text names (another worker's word: any
 * other text is read as its worker gone). */
static const char *label_of(const char *text)
{
    size_t i = ending_of(text);
    return i < NENDINGS ? endings[i].label : "worker_gone";
}

const char *kiln__repl_ending(size_t i)
{
    return i < NENDINGS ? endings[i].label : NULL;
}

static struct {
    char id[KILN_JOB_ID_MAX + 1];
    const char *why;
    uint64_t at;
} ended[ENDED_MAX];
static unsigned nended;

static void remember_end(struct kiln_worker *w, const char *id, const char *why)
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

static struct kiln_repl *find(struct kiln_worker *w, const char *id)
{
    for (struct kiln_repl *r = w->repls; r != NULL; r = r->next)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

/* The head of the session's queue, taken off it (NULL: none). */
static struct kiln_run *pop(struct kiln_repl *r)
{
    struct kiln_run *run = r->queue;
    if (run != NULL) {
        r->queue = run->repl_next;
        run->repl_next = NULL;
        run->repl = NULL;
    }
    return run;
}

static void lose(struct kiln_run *run, const char *label)
{
    snprintf(run->reason, sizeof(run->reason), "%s", lost_reason(label));
    kiln__run_finish(run, KILN_STATUS_SESSION_LOST, run->reason);
}

/* ---- its end ------------------------------------------------------------ */

static void on_idle_closed(uv_handle_t *h)
{
    struct kiln_repl *r = h->data;
    if (r->gating)
        r->dead = 1; /* its answer frees it */
    else
        free(r);
}

/* The session will end (`why`): now, when no job runs in it; else once
 * its job is done. Jobs still queued for it are lost. */
static void end(struct kiln_repl *r, const char *why)
{
    if (r->ending == NULL)
        r->ending = why;
    uv_timer_stop(&r->idle);
    for (struct kiln_run *run; (run = pop(r)) != NULL;)
        lose(run, r->ending);
    if (r->run == NULL && r->s != NULL)
        kiln_session_kill(r->s); /* GONE follows: then it is freed */
}

static void unlink_repl(struct kiln_repl *r)
{
    struct kiln_repl **pp = &r->w->repls;
    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    uv_close((uv_handle_t *)&r->idle, on_idle_closed);
}

/* Its sandbox is gone: the session with it. */
static void gone(struct kiln_repl *r)
{
    struct kiln_worker *w = r->w;
    end(r, "sandbox_died");
    w->nrepls--;
    remember_end(w, r->id, r->ending);
    if (w->src->ops->session_end != NULL)
        w->src->ops->session_end(w->src, r->id, r->ending);
    kiln_metrics_session_closed(r->ending);
    kiln_info("session %s: ended (%s) after %lld job(s)", r->id, r->ending, (long long)r->seq);
    unlink_repl(r);
}

static void on_idle(uv_timer_t *t)
{
    end(t->data, "idle");
}

/* ---- its jobs ------------------------------------------------------------- */

/* How long the head of a session's queue waits for an earlier job of it
 * still on its way from another worker, at most. */
#define GATE_MAX_MS 5000
#define GATE_RETRY_MS 10

static void pump(struct kiln_repl *r);

static void on_gate_retry(uv_timer_t *t)
{
    pump(t->data);
}

static void on_gate(void *arg, int clear)
{
    struct kiln_repl *r = arg;
    r->gating = 0;
    if (r->dead) {
        free(r);
        return;
    }
    if (clear == 0 && r->gate_for == r->queue && r->s != NULL) {
        uv_timer_start(&r->idle, on_gate_retry, GATE_RETRY_MS, 0);
        return;
    }
    if (clear != 0)
        r->gated = r->gate_for;
    pump(r);
}

/* The head of the queue may start: no earlier job of the session is on
 * its way here (or the queue cannot say, or it waited long enough). */
static int may_start(struct kiln_repl *r, struct kiln_run *head)
{
    struct kiln_source *src = r->w->src;
    if (src->ops->session_gate == NULL || head->d == NULL || head->d->origin[0] == '\0' || r->gated == head)
        return 1;
    if (r->gating)
        return 0; /* its answer pumps again */
    uint64_t now = uv_now(r->w->loop);
    if (r->gate_for != head) {
        r->gate_for = head;
        r->gate_since = now;
    }
    if (now - r->gate_since >= GATE_MAX_MS) {
        kiln_warn("session %s: job %s waited %d ms for an earlier job of the session; starting it",
                  r->id, head->job->id, GATE_MAX_MS);
        return 1;
    }
    r->gating = 1;
    if (src->ops->session_gate(src, r->id, head->d->origin, on_gate, r) == 0)
        return 0;
    r->gating = 0;
    return 1;
}

/* The next queued job goes in, or the session waits (idle), or ends. */
static void pump(struct kiln_repl *r)
{
    if (r->run != NULL || !r->ready || r->s == NULL)
        return;
    if (r->ending != NULL) {
        end(r, r->ending);
        return;
    }
    struct kiln_run *run = r->queue;
    if (run == NULL) {
        uv_timer_start(&r->idle, on_idle, (uint64_t)r->idle_ms, 0);
        return;
    }
    uv_timer_stop(&r->idle);
    if (!may_start(r, run))
        return;
    r->gate_for = r->gated = NULL;
    pop(r);
    run->repl = r;
    r->run = run;
    run->repl_seq = ++r->seq;
    run->session = r->s;
    run->refs++; /* the session's, until the job lets go of it */
    kiln_log_job(KILN_LOG_INFO, run->job->id, run->plugin->name, kiln__run_attempt(run),
                 "job %s attempt %u: started (%s, session %s, job %lld of it, from %s)", run->job->id,
                 kiln__run_attempt(run), run->plugin->name, r->id, (long long)run->repl_seq, run->d->ref);
    kiln_metrics_job_started(run->plugin->name);
    kiln__run_send(run);
}

/* The job's cell is over and the session lives on: the job lets go of it
 * (its frames and ack go on) and the next one may come. */
static void let_go(struct kiln_repl *r)
{
    struct kiln_run *run = r->run;
    r->run = NULL;
    run->session = NULL;
    run->repl = NULL;
    if (run->job->session_close)
        end(r, "closed");
    kiln__run_advance(run);
    kiln__run_unref(run);
    pump(r);
}

static void on_event(void *arg, const struct kiln_session_event *ev)
{
    struct kiln_repl *r = arg;
    struct kiln_run *run = r->run;
    switch (ev->type) {
    case KILN_SESSION_READY_EV:
        r->ready = 1;
        pump(r);
        return;
    case KILN_SESSION_GONE:
        r->s = NULL;
        r->ready = 0;
        r->run = NULL;
        if (run != NULL) {
            run->repl = NULL;
            kiln__run_on_session(run, ev); /* its end says the sandbox died */
        }
        gone(r);
        return;
    case KILN_SESSION_EXIT:
        if (ev->exit->ended && r->ending == NULL)
            r->ending = "exited";
        break;
    default:
        break;
    }
    if (run == NULL)
        return;
    kiln__run_on_session(run, ev);
    /* an exit (or a job's own error) leaves the session READY: the cell
     * is over */
    if ((ev->type == KILN_SESSION_EXIT || ev->type == KILN_SESSION_ERROR) && r->run == run &&
        r->s != NULL && r->s->state == KILN_SESSION_READY)
        let_go(r);
}

int64_t kiln__repl_memory_mb(const struct kiln_run *run)
{
    return run->repl != NULL && run->repl->memory_mb > 0 ? run->repl->memory_mb : 0;
}

int kiln__repl_may_keep(const struct kiln_run *run)
{
    return run->repl != NULL && run->session != NULL && run->session->state == KILN_SESSION_READY;
}

/* The session's sandbox, for its first job (the head of its queue). */
static void open_sandbox(struct kiln_repl *r)
{
    struct kiln_worker *w = r->w;
    struct kiln_run *run = r->queue;
    char err[512];
    struct kiln_spawn_opts needs = {run->lim.memory_mb > 0 ? run->lim.memory_mb : w->cfg->memory_mb, 0, 1};
    r->memory_mb = needs.memory_mb;
    w->nrepls++;
    kiln_metrics_session_opened(r->plugin);
    if (kiln_session_spawn(w->loop, w->backend, run->plan.profile, &needs, NULL, on_event, r, &r->s,
                           err, sizeof(err)) < 0) {
        char why[600];
        snprintf(why, sizeof(why), "the session's sandbox failed to start: %s", err);
        kiln_error("job %s: %s", run->job->id, why);
        pop(r);
        kiln__run_finish(run, KILN_STATUS_INTERNAL, why);
        gone(r);
        return;
    }
    kiln_info("session %s: opened for job %s (%s, idle %lld ms)", r->id, run->job->id, r->plugin,
              (long long)r->idle_ms);
    if (r->s->state == KILN_SESSION_READY) {
        r->ready = 1;
        pump(r);
    }
}

/* ---- between workers ---------------------------------------------------- */

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

/* What the queue says of the session a placeholder asked about. */
static void on_claim(void *arg, int verdict, const char *text)
{
    struct kiln_repl *r = arg;
    struct kiln_worker *w = r->w;
    r->claiming = 0;
    if (verdict == KILN_CLAIM_NEW && w->draining && r->ending == NULL)
        r->ending = "drained";
    if (verdict == KILN_CLAIM_NEW && r->ending == NULL && r->queue != NULL &&
        w->nrepls < (unsigned)w->cfg->max_sessions) {
        open_sandbox(r);
        return;
    }
    /* claimed, and not opened after all: forgotten when this worker is
     * full (another may open it), else ended as it ended here */
    if (verdict == KILN_CLAIM_NEW)
        w->src->ops->session_end(w->src, r->id, r->ending);
    if (verdict == KILN_CLAIM_LOST)
        remember_end(w, r->id, text = label_of(text));
    for (struct kiln_run *run; (run = pop(r)) != NULL;) {
        if (verdict == KILN_CLAIM_NEW && r->ending == NULL) {
            full(run);
        } else if (verdict == KILN_CLAIM_NEW) {
            kiln__run_release(run); /* draining: another worker takes it */
        } else if (verdict == KILN_CLAIM_LOST) {
            lose(run, text);
        } else if (verdict == KILN_CLAIM_ELSEWHERE) {
            run->refs++;
            int rc = w->src->ops->session_forward == NULL ? -ENOTSUP
                     : w->src->ops->session_forward(w->src, text, run->d, on_forwarded, run);
            if (rc < 0) {
                run->refs--;
                kiln__run_release(run);
            } else {
                kiln_info("job %s: session %s is held by worker %s: forwarded there", run->job->id,
                          r->id, text);
            }
        } else {
            kiln_warn("job %s: cannot tell who holds session %s (%s); it will be delivered again",
                      run->job->id, r->id, text);
            kiln__run_release(run);
        }
    }
    unlink_repl(r);
}

static void on_lease_lost(void *arg, const char *id, const char *why)
{
    struct kiln_repl *r = find(arg, id);
    if (r != NULL && !r->claiming) {
        kiln_warn("session %s: this worker holds it no more (%s)", id, lost_reason(why));
        end(r, label_of(why));
    }
}

/* Every few seconds: the queue hears that this worker still holds its
 * sessions. */
static void on_renew(uv_timer_t *t)
{
    struct kiln_worker *w = t->data;
    const char *ids[256];
    size_t n = 0;
    for (struct kiln_repl *r = w->repls; r != NULL && n < 256; r = r->next)
        if (!r->claiming && r->ending == NULL)
            ids[n++] = r->id;
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

/* Open a session for the run's job, the first of it: here, or where the
 * queue says it is held. */
static void open_session(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    const struct kiln_config *cfg = w->cfg;
    if (w->draining) {
        lose(run, "drained");
        return;
    }
    if (w->src->ops->session_claim == NULL && w->nrepls >= (unsigned)cfg->max_sessions) {
        full(run);
        return;
    }
    struct kiln_repl *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        kiln__run_finish(run, KILN_STATUS_INTERNAL, "out of memory opening a session");
        return;
    }
    r->w = w;
    snprintf(r->id, sizeof(r->id), "%s", run->job->session);
    r->plugin = run->plugin->name;
    snprintf(r->kid, sizeof(r->kid), "%s", run->kid);
    r->idle_ms = run->job->session_idle_ms > 0 ? run->job->session_idle_ms : cfg->session_idle_ms;
    uv_timer_init(w->loop, &r->idle);
    r->idle.data = r;
    r->next = w->repls;
    w->repls = r;
    run->repl = r;
    r->queue = run;
    if (w->src->ops->session_claim == NULL) {
        open_sandbox(r);
        return;
    }
    renew_start(w);
    r->claiming = 1; /* later jobs of it queue here meanwhile */
    int rc = w->src->ops->session_claim(w->src, r->id, run->d, on_claim, r);
    if (rc < 0)
        on_claim(r, rc, rc == -ENOTCONN ? "not connected to the queue" : strerror(-rc));
}

void kiln__repl_take(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    const struct kiln_job *job = run->job;
    if (w->backend->no_sessions != NULL) {
        snprintf(run->reason, sizeof(run->reason), "this worker cannot keep sessions: %s",
                 w->backend->no_sessions);
        kiln__run_reject(run, KILN_REJECT_UNAVAILABLE, run->reason);
        return;
    }
    if (job->session_idle_ms > w->cfg->max_session_idle_ms) {
        snprintf(run->reason, sizeof(run->reason), "session.idle_ms %lld is over this worker's maximum of %lld",
                 (long long)job->session_idle_ms, (long long)w->cfg->max_session_idle_ms);
        kiln__run_reject(run, KILN_REJECT_LIMITS, run->reason);
        return;
    }
    struct kiln_repl *r = find(w, job->session);
    if (r != NULL) {
        if (strcmp(r->plugin, run->plugin->name) != 0) {
            snprintf(run->reason, sizeof(run->reason), "session %s runs plugin %s, not %s", r->id,
                     r->plugin, run->plugin->name);
            kiln__run_reject(run, KILN_REJECT_INVALID, run->reason);
            return;
        }
        if (strcmp(r->kid, run->kid) != 0) { /* signed jobs: a session is its opener's key's */
            snprintf(run->reason, sizeof(run->reason),
                     "session %s was opened by a job signed with another key", r->id);
            kiln__run_reject(run, KILN_REJECT_SIGNATURE, run->reason);
            return;
        }
        if (r->ending != NULL && !r->claiming) {
            lose(run, r->ending);
            return;
        }
        /* in the order they came into the job stream (a job forwarded here
         * may come after one that followed it) */
        struct kiln_run **pp = &r->queue;
        while (*pp != NULL && origin_cmp((*pp)->d, run->d) <= 0)
            pp = &(*pp)->repl_next;
        run->repl_next = *pp;
        *pp = run;
        run->repl = r;
        pump(r);
        return;
    }
    const char *why = ended_why(w, job->session);
    if (why != NULL) {
        lose(run, why);
        return;
    }
    open_session(run);
}

int kiln__repl_unqueue(struct kiln_run *run)
{
    struct kiln_repl *r = run->repl;
    if (r == NULL || r->run == run)
        return 0;
    for (struct kiln_run **pp = &r->queue; *pp != NULL; pp = &(*pp)->repl_next)
        if (*pp == run) {
            *pp = run->repl_next;
            run->repl_next = NULL;
            run->repl = NULL;
            return 1;
        }
    return 0;
}

void kiln__repl_cancel(struct kiln_worker *w, const char *id)
{
    struct kiln_repl *r = find(w, id);
    if (r == NULL || r->claiming)
        return;
    kiln_info("session %s: cancelled", id);
    end(r, "cancelled");
    if (r->run != NULL)
        kiln__run_stop(r->run, STOP_CANCEL);
}

void kiln__repl_drain(struct kiln_worker *w)
{
    for (struct kiln_repl *r = w->repls, *next; r != NULL; r = next) {
        next = r->next;
        if (!r->claiming)
            end(r, "drained");
    }
}

void kiln_repl_gauges(struct kiln_worker *w, FILE *out)
{
    fprintf(out, "# HELP kiln_sessions_open Sessions open on this worker.\n# TYPE kiln_sessions_open gauge\n"
                 "kiln_sessions_open %u\n", w->nrepls);
    fprintf(out, "# HELP kiln_sessions_max Sessions this worker keeps open at most.\n"
                 "# TYPE kiln_sessions_max gauge\nkiln_sessions_max %lld\n", (long long)w->cfg->max_sessions);
}
