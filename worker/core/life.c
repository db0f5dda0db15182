/*
 * A job's life, from delivery to acknowledgement: every change of its
 * state is here, through kiln__run_move() and the table beside it, and so
 * is every decision of what comes next.
 *
 *   CHECKING --> STARTING --> RUNNING --> REPORTING --> DONE (acknowledged)
 *     |  |          |  ^           |            |
 *     |  |          |  |           |            +--> BUILT ---------+
 *     |  |          |  |           |            +--> INPUT_DONE ----+--> STARTING (next step)
 *     |  |          |  |           |                                +--> REPORTING (the summary)
 *     |  |          +--+-----------+--> RETRY_WAIT --> BACKOFF -----+--> STARTING (next attempt)
 *     |  +--------------------------+--> DEAD_LETTER --> REPORTING
 *     +--> REPORTING (rejected, cancelled, expired)
 *   and from any state but DONE: DONE (released, or handed off)
 *
 * A step is the build, an input of `runs`, a case of `tests`, or the job
 * itself; each runs in a sandbox of its own (core/run_link.c), a user
 * session's cell in its session's (core/session.c). When a step ends, its
 * outcome is decided once (kiln__run_finish: a stop from outside names it;
 * kiln's own failure is tried again or dead-lettered), its frame written
 * (core/report.c; a build's or a case's judged first, core/judge.c), and
 * once its sandbox is gone (kiln__run_advance) the next step starts.
 *
 * Bad input never gets past the checks or the plan: it becomes a
 * "rejected" exit frame and is acknowledged like any finished job.
 *
 * A run is freed when it is DONE and nothing refers to it any more: `refs`
 * counts its link, a frame write whose callback is due, and its timers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/config.h"
#include "core/image.h"
#include "core/link.h"
#include "base/log.h"
#include "core/metrics.h"
#include "core/plugin_load.h"
#include "core/run.h"
#include "core/session.h"
#include "core/sign.h"
#include "queue/source.h"
#include "egress/egress.h"

/* ---- the state ------------------------------------------------------------ */

static const char *const state_names[] = {"checking", "starting", "running", "reporting", "built", "input_done",
                                          "retry_wait", "backoff", "dead_letter", "done"};

const char *kiln__run_state_name(enum run_state st)
{
    return state_names[st];
}

/* The moves the diagram above draws: allowed[from] has bit `to`. Any state
 * but DONE may go to DONE (a release). */
#define TO(st) (1u << RUN_##st)
static const unsigned allowed[] = {
    [RUN_CHECKING] = TO(STARTING) | TO(REPORTING) | TO(DEAD_LETTER) | TO(DONE),
    [RUN_STARTING] = TO(RUNNING) | TO(REPORTING) | TO(RETRY_WAIT) | TO(DEAD_LETTER) | TO(DONE),
    [RUN_RUNNING] = TO(REPORTING) | TO(RETRY_WAIT) | TO(DEAD_LETTER) | TO(DONE),
    [RUN_REPORTING] = TO(BUILT) | TO(INPUT_DONE) | TO(DONE),
    [RUN_BUILT] = TO(STARTING) | TO(DONE),
    [RUN_INPUT_DONE] = TO(STARTING) | TO(REPORTING) | TO(DONE),
    [RUN_RETRY_WAIT] = TO(BACKOFF) | TO(DONE),
    [RUN_BACKOFF] = TO(STARTING) | TO(REPORTING) | TO(DONE),
    [RUN_DEAD_LETTER] = TO(REPORTING) | TO(DONE),
    [RUN_DONE] = 0,
};
#undef TO

unsigned kiln__run_bad_moves;

void kiln__run_move(struct kiln_run *run, enum run_state to)
{
    if (!(allowed[run->state] & (1u << to))) {
        kiln__run_bad_moves++;
        kiln_error("job %s: %s -> %s is no move of a job's (a bug)", kiln__run_id(run),
                   kiln__run_state_name(run->state), kiln__run_state_name(to));
    }
    run->state = to;
}

/* ---- the end: freed, released, acknowledged --------------------------------- */

static void maybe_free(struct kiln_run *run)
{
    if (run->state != RUN_DONE || run->refs > 0)
        return;
    struct kiln_worker *w = run->w;
    if (run->prev)
        run->prev->next = run->next;
    else
        w->runs = run->next;
    if (run->next)
        run->next->prev = run->prev;
    int owed = run->credit_owed;
    kiln__run_free(run);
    w->ending--;
    if (owed && !w->draining)
        w->src->ops->credit(w->src, 1);
}

void kiln__run_unref(struct kiln_run *run)
{
    run->refs--;
    maybe_free(run);
}

static void on_timer_closed(uv_handle_t *h)
{
    kiln__run_unref(h->data);
}

/* Its outcome is decided: its sandbox goes (a user session's, whose cell
 * is over, lives on) and its timers stop. */
static void halt(struct kiln_run *run)
{
    if (run->link != NULL && !kiln__session_may_keep(run))
        kiln_link_kill(run->link);
    uv_timer_stop(&run->timer);
    uv_timer_stop(&run->cpu_watch);
}

/* Nothing more happens to the job: freed once its sandbox is gone. Its
 * slot is free now: a sandbox being torn down (its processes reaped, its
 * namespaces and memory freed) runs no job, so the next job need not wait
 * for it; but no more than --slots of them at once, so a kernel slower to
 * end sandboxes than jobs arrive holds the queue back instead of piling
 * them up. */
static void done(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    kiln__run_move(run, RUN_DONE);
    w->busy--;
    w->ending++;
    if (run->unslotted) /* it took no slot: it gives none back */
        ;
    else if (w->ending <= (unsigned)w->cfg->slots && !w->draining)
        w->src->ops->credit(w->src, 1);
    else
        run->credit_owed = 1;
    kiln__run_close_egress(run);
    uv_close((uv_handle_t *)&run->timer, on_timer_closed); /* DONE once: closed once */
    uv_close((uv_handle_t *)&run->cpu_watch, on_timer_closed);
    maybe_free(run);
}

void kiln__run_release(struct kiln_run *run)
{
    kiln_info("job %s: released unfinished; it will be delivered again",
              run->job ? kiln__run_id(run) : run->d ? run->d->ref : "-");
    if (run->d != NULL)
        run->w->src->ops->release(run->w->src, run->d);
    run->d = NULL;
    if (run->link != NULL)
        kiln_link_kill(run->link);
    done(run);
}

void kiln__run_handoff(struct kiln_run *run)
{
    run->w->src->ops->ack(run->w->src, run->d);
    run->d = NULL;
    done(run);
}

/* ---- reports ---------------------------------------------------------------- */

/* The outcome of the step is decided: stop what runs; a build or a case is
 * judged and the job goes on, else its exit frame is written. */
static void report(struct kiln_run *run, enum kiln_status status, const char *reason)
{
    kiln__run_move(run, RUN_REPORTING);
    kiln__run_exit_of(run, status, reason);
    halt(run);
    switch (kiln__run_judge(run, status)) {
    case JUDGED_BUILT:
        kiln__run_move(run, RUN_BUILT); /* its runs once its sandbox is gone */
        kiln__run_advance(run);
        return;
    case JUDGED_CASE:
        return; /* kiln__run_case_written() follows */
    case JUDGED_BUILD_FAILED:
    case JUDGED_NOTHING:
        break;
    }
    kiln__run_exit_complete(run);
    kiln__run_write_exit(run);
}

void kiln__run_case_written(void *arg, int status, const char *err)
{
    struct kiln_run *run = arg;
    run->refs--;
    if (status == -EPIPE) /* the queue failed: no summary, no ack */
        kiln__run_stop(run, STOP_RELEASE);
    else if (status < 0)
        kiln_warn("job %s: a case frame was refused by %s: %s", kiln__run_id(run), run->dest, err);
    kiln__run_move(run, RUN_INPUT_DONE);
    kiln__run_advance(run);
}

void kiln__run_exit_written(void *arg, int status, const char *err)
{
    struct kiln_run *run = arg;
    const struct kiln_config *cfg = run->w->cfg;
    run->refs--;
    if (status == -EPIPE) { /* the queue failed (kiln_fatal_cb): never written, so never acked */
        kiln_warn("job %s: exit frame not written (%s)", kiln__run_id(run), err);
        kiln__run_release(run);
        return;
    }
    if (status < 0 && strcmp(run->dest, cfg->results) != 0) {
        /* reply_to refused the frame (wrong type, say): the result still
         * goes somewhere a user can find it. */
        kiln_warn("job %s: exit frame refused by %s (%s); writing it to %s", kiln__run_id(run),
                  run->dest, err, cfg->results);
        run->dest = cfg->results;
        kiln__run_write_exit(run);
        return;
    }
    if (status < 0)
        kiln_error("job %s: exit frame refused by %s: %s", kiln__run_id(run), run->dest, err);
    kiln_metrics_job_finished(run->plugin ? run->plugin->name : NULL,
                              kiln_status_name(run->ex.status), run->ex.wall_ms / 1000.0);
    if (run->ex.status == KILN_STATUS_REJECTED)
        kiln_metrics_rejected(run->reject_class);
    if (run->ex.run >= 0) {
        /* one input of `runs` is done: sum it up, then the next (or the
         * summary) once its sandbox is gone */
        run->runs_ok += run->ex.status == KILN_STATUS_OK;
        run->total.wall_ms += run->ex.wall_ms;
        run->total.cpu_ms += run->ex.cpu_ms;
        if (run->ex.max_rss_kb > run->total.max_rss_kb)
            run->total.max_rss_kb = run->ex.max_rss_kb;
        kiln__run_move(run, RUN_INPUT_DONE);
        kiln__run_advance(run);
        return;
    }
    kiln_log_job(KILN_LOG_INFO, run->job ? run->job->id : NULL, run->plugin ? run->plugin->name : NULL,
                 run->ex.attempt, "job %s attempt %u: %s%s%s (%lld ms)", kiln__run_id(run),
                 run->ex.attempt, kiln_status_name(run->ex.status), run->ex.reason ? ": " : "",
                 run->ex.reason ? run->ex.reason : "", (long long)run->ex.wall_ms);
    run->w->src->ops->ack(run->w->src, run->d);
    run->d = NULL;
    run->w->finished++;
    done(run);
}

/* The last exit frame of a job of `runs` or `tests`. */
static void summary(struct kiln_run *run)
{
    kiln__run_move(run, RUN_REPORTING);
    kiln__run_summary_of(run);
    kiln__run_write_exit(run);
}

/* ---- kiln's own failures: again, or the dead letters ----------------------- */

void kiln__run_dead_written(void *arg, int status, const char *err)
{
    struct kiln_run *run = arg;
    char reason[512];
    run->refs--;
    if (status < 0) { /* not recorded: leave the job pending rather than lose it */
        kiln_error("job %s: dead-letter write failed (%s); leaving it unacknowledged",
                   kiln__run_id(run), err);
        kiln__run_release(run);
        return;
    }
    snprintf(reason, sizeof(reason), "kiln failed this job %u times; last: %s",
             run->failures.n, kiln_retry_last(&run->failures));
    report(run, KILN_STATUS_INTERNAL, reason);
}

/* Past --max-attempts: the job and every attempt's reason go to the dead
 * letters; then its reply_to gets a final internal frame and it is acked. */
static void dead_letter(struct kiln_run *run)
{
    kiln__run_move(run, RUN_DEAD_LETTER);
    halt(run);
    kiln_log_job(KILN_LOG_ERROR, run->job->id, run->plugin->name, kiln__run_attempt(run),
                 "job %s: %u attempts failed in kiln; to the dead letters (%s)", run->job->id,
                 kiln__run_attempt(run), run->w->cfg->dead_letters);
    if (kiln__run_write_dead(run) < 0)
        kiln__run_release(run);
}

static void on_backoff(uv_timer_t *t)
{
    struct kiln_run *run = t->data;
    run->retries++;
    run->out_bytes = 0; /* a new attempt's output; a job's inputs share one cap */
    run->collect_bytes = run->collect_files = run->collect_names = 0; /* and its files */
    if (run->kind == RUN_TESTS && !run->building) { /* every case again, in the new attempt */
        run->cur = 0;
        run->passed = run->failed = 0;
        memset(&run->total, 0, sizeof(run->total));
    }
    kiln__run_start_one(run);
}

/* Wait before trying again (--retry-backoff-ms, doubled, jittered). */
static void backoff(struct kiln_run *run)
{
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = uv_hrtime(); /* each worker its own jitter, never one shared sequence */
    kiln__run_move(run, RUN_BACKOFF);
    uv_timer_start(&run->timer, on_backoff,
                   kiln_retry_delay((uint64_t)run->w->cfg->retry_backoff_ms, run->retries, rnd), 0);
}

void kiln__run_finish(struct kiln_run *run, enum kiln_status status, const char *reason)
{
    if (!kiln__run_undecided(run))
        return;
    switch (run->stop) {
    case STOP_RELEASE:
        kiln__run_release(run);
        return;
    case STOP_CANCEL:
        status = KILN_STATUS_CANCELLED, reason = "cancelled through the control stream";
        break;
    case STOP_TIMEOUT:
        status = KILN_STATUS_TIMEOUT;
        break;
    case STOP_OUTPUT:
        status = KILN_STATUS_OUTPUT_LIMIT;
        break;
    case STOP_CPU:
        if (status != KILN_STATUS_OOM && status != KILN_STATUS_INTERNAL) {
            status = KILN_STATUS_KILLED;
            if (reason == NULL)
                reason = "the cpu_ms limit was reached";
        }
        break;
    case STOP_HANG:
    case STOP_NONE:
        break;
    }
    if (status == KILN_STATUS_INTERNAL) {
        struct kiln_retry_case c = {
            .known = run->job != NULL && run->plugin != NULL,
            .runs = run->kind == RUN_INPUTS && run->cur >= 0, /* a case: the job again */
            .stopping = run->w->draining,
            .attempt = kiln__run_attempt(run),
            .max_attempts = (unsigned)run->w->cfg->max_attempts,
        };
        enum kiln_retry_verdict v = kiln_retry_decide(&c);
        if (v != KILN_RETRY_REPORT && kiln_retry_note(&run->failures, reason) < 0)
            v = KILN_RETRY_REPORT; /* out of memory: say so as it is */
        if (v == KILN_RETRY_DEAD_LETTER) {
            dead_letter(run);
            return;
        }
        if (v == KILN_RETRY_AGAIN) {
            kiln_log_job(KILN_LOG_WARN, run->job->id, run->plugin->name, kiln__run_attempt(run),
                         "job %s attempt %u failed in kiln (%s); retrying", run->job->id,
                         kiln__run_attempt(run), reason ? reason : "?");
            kiln__run_move(run, RUN_RETRY_WAIT);
            halt(run);
            kiln__run_advance(run);
            return;
        }
    }
    report(run, status, reason);
}

void kiln__run_reject(struct kiln_run *run, enum kiln_reject why, const char *reason)
{
    run->reject_class = why;
    kiln__run_finish(run, KILN_STATUS_REJECTED, reason);
}

/* ---- the next step --------------------------------------------------------- */

void kiln__run_advance(struct kiln_run *run)
{
    if (run->link != NULL)
        return;
    switch (run->state) {
    case RUN_BUILT: /* its runs from the first */
        if (run->stop == STOP_RELEASE)
            kiln__run_release(run);
        else
            kiln__run_start_one(run);
        break;
    case RUN_INPUT_DONE:
        if (run->stop == STOP_RELEASE) { /* a frame could not be queued: no summary, no ack */
            kiln__run_release(run);
        } else if (kiln__run_skip_rest(run) || ++run->cur >= (int)run->job->nruns) {
            kiln__run_close_egress(run);
            run->cur = -1;
            if (run->stop == STOP_RELEASE)
                kiln__run_release(run);
            else
                summary(run);
        } else {
            kiln__run_start_one(run);
        }
        break;
    case RUN_RETRY_WAIT:
        if (run->w->draining || run->stop == STOP_RELEASE) {
            kiln__run_release(run); /* no retry now: leave it for another worker */
        } else if (run->stop == STOP_CANCEL) {
            kiln__run_move(run, RUN_BACKOFF);
            kiln__run_finish(run, KILN_STATUS_CANCELLED, NULL);
        } else {
            backoff(run);
        }
        break;
    default:
        maybe_free(run);
        break;
    }
}

void kiln__run_start_one(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    const struct kiln_plugin *p = run->plugin;
    struct kiln_job_view view;
    char err[512];
    const char *how = "";
    int r;

    kiln__run_close_egress(run);
    kiln__run_move(run, RUN_STARTING);
    run->reason[0] = '\0';
    memset(&run->ex, 0, sizeof(run->ex));
    kiln_plan_free(&run->plan);
    if (run->stop == STOP_CANCEL) { /* the job's inputs left end cancelled too */
        kiln__run_finish(run, KILN_STATUS_CANCELLED, NULL);
        return;
    }
    run->stop = STOP_NONE;
    if (run->building) { /* a build's own limits, the operator's */
        memset(&run->lim, 0xff, sizeof(run->lim)); /* all -1: the defaults */
        run->lim.timeout_ms = w->cfg->build_timeout_ms;
        run->lim.memory_mb = w->cfg->build_memory_mb;
        run->lim.cpu_ms = w->cfg->build_cpu_ms > 0 ? w->cfg->build_cpu_ms : -1;
    } else
        kiln_prepare_limits(run->job, run->cur, &run->lim);
    if (run->kind == RUN_TESTS) { /* each case its own output cap */
        run->out_bytes = 0;
        run->out_cap = run->lim.output_bytes >= 0 ? run->lim.output_bytes : w->cfg->output_bytes;
    }
    kiln__run_judge_reset(run);
    if ((r = kiln_prepare_plan(run->job, run->cur, kiln__run_attempt(run), p, w->cfg,
                               run->kind == RUN_CELL ? KILN_PREPARE_REPL : run->building,
                               run->built ? &run->artifact : NULL,
                               run->secrets != NULL ? &run->view_extra : NULL, kiln__run_memory_mb(run),
                               &run->plan, &view)) < 0) {
        if (r == -ENOMEM)
            kiln__run_finish(run, KILN_STATUS_INTERNAL, "out of memory planning the job");
        else
            kiln__run_reject(run, r == -E2BIG ? KILN_REJECT_TOO_LARGE : KILN_REJECT_INVALID,
                             run->plan.reject[0] ? run->plan.reject : "the plugin refused the job");
        return;
    }
    if (run->kind == RUN_CELL) { /* its session's sandbox, not one of its own */
        kiln__session_take(run);
        return;
    }
    if (kiln__run_open_link(run, &view, &how, err, sizeof(err)) < 0) {
        kiln_error("job %s: %s", run->job->id, err);
        kiln__run_finish(run, KILN_STATUS_INTERNAL, err);
        return;
    }
    run->refs++; /* the link's, until GONE */
    kiln_log_job(KILN_LOG_INFO, run->job->id, p->name, kiln__run_attempt(run),
                 "job %s attempt %u: started (%s%s, from %s%s)", run->job->id, kiln__run_attempt(run),
                 p->name, how, run->d->ref, run->building ? ", its build" : run->cur > 0 ? ", next input" : "");
    kiln_metrics_job_started(p->name);
    if (run->link->state == KILN_LINK_READY)
        kiln__run_send(run); /* warm: its agent (and interpreter) wait */
}

/* ---- delivery and the checks before any sandbox ----------------------------- */

/* The job's kind, from its keys. */
static enum run_kind kind_of(const struct kiln_job *job)
{
    return job->session != NULL ? RUN_CELL : job->tests ? RUN_TESTS : job->nruns > 0 ? RUN_INPUTS : RUN_PLAIN;
}

/* Decode and check the job; then its first step. */
static void start(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    const struct kiln_config *cfg = w->cfg;
    struct kiln_delivery *d = run->d;
    char err[512];
    int r;

    if (d->data == NULL) {
        kiln__run_reject(run, KILN_REJECT_INVALID, d->missing ? d->missing : "the queue entry holds no job");
        return;
    }
    r = kiln_job_decode(d->data, d->len, &run->job, err, sizeof(err));
    if (r == -ENOMEM) {
        kiln__run_finish(run, KILN_STATUS_INTERNAL, "out of memory decoding the job");
        return;
    }
    if (run->job != NULL && run->job->reply_to != NULL)
        run->dest = run->job->reply_to;
    if (d->len > (size_t)cfg->max_job_bytes) {
        snprintf(err, sizeof(err), "job is %zu bytes, over this worker's limit of %lld",
                 d->len, (long long)cfg->max_job_bytes);
        kiln__run_reject(run, KILN_REJECT_TOO_LARGE, err);
        return;
    }
    if (r < 0) {
        kiln__run_reject(run, run->job != NULL && run->job->not_msgpack ? KILN_REJECT_NOT_MSGPACK
                                                                        : KILN_REJECT_INVALID, err);
        return;
    }
    run->kind = kind_of(run->job);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (kiln__run_was_cancelled(w, run->job->id)) {
        run->stop = STOP_CANCEL;
        kiln__run_finish(run, KILN_STATUS_CANCELLED, NULL);
        return;
    }
    if (run->job->deadline >= 0 && run->job->deadline < now_ms) {
        snprintf(err, sizeof(err), "its deadline passed %lld ms before it could start",
                 (long long)(now_ms - run->job->deadline));
        kiln__run_finish(run, KILN_STATUS_EXPIRED, err);
        return;
    }
    if (cfg->require_signature) {
        if ((r = kiln_keys_refresh(w->keys, err, sizeof(err))) < 0)
            kiln_error("%s; keeping the keys read before", err);
        else if (r > 0)
            kiln_info("keys file %s re-read: %zu key(s)", cfg->keys_file, w->keys->n);
        if (kiln_sign_check(d->data, d->len, w->keys, now_ms, err, sizeof(err)) < 0) {
            kiln__run_reject(run, KILN_REJECT_SIGNATURE, err);
            return;
        }
        kiln_sign_kid(d->data, d->len, run->kid, sizeof(run->kid)); /* a session is its signer's */
    }
    const char *image = run->job->image != NULL ? run->job->image : "default";
    if ((run->image = kiln_image_find(w->images, w->nimages, image)) == NULL) {
        char names[256];
        kiln_image_names(w->images, w->nimages, names, sizeof(names));
        snprintf(err, sizeof(err), "unknown image '%s' (this worker has: %s)", image, names);
        kiln__run_reject(run, KILN_REJECT_UNKNOWN_IMAGE, err);
        return;
    }
    if (kiln_image_open(run->image, w->loop, cfg, err, sizeof(err)) < 0) {
        kiln__run_reject(run, KILN_REJECT_UNAVAILABLE, err);
        return;
    }
    const struct kiln_loaded *loaded = kiln_plugins_lookup(&run->image->plugins, run->job->plugin);
    if (loaded == NULL) {
        char names[256];
        kiln_plugins_names(&run->image->plugins, names, sizeof(names));
        snprintf(err, sizeof(err), "unknown plugin '%.64s' (this worker has: %s)", run->job->plugin, names);
        kiln__run_reject(run, KILN_REJECT_UNKNOWN_PLUGIN, err);
        return;
    }
    if (loaded->unavailable != NULL) {
        snprintf(err, sizeof(err), "plugin '%s' cannot run on this worker's image %s: %s", loaded->p->name,
                 run->image->name, loaded->unavailable);
        kiln__run_reject(run, KILN_REJECT_UNAVAILABLE, err);
        return;
    }
    if ((r = kiln_prepare_check(run->job, cfg, err, sizeof(err))) < 0) {
        kiln__run_reject(run, r == -E2BIG ? KILN_REJECT_TOO_LARGE : KILN_REJECT_LIMITS, err);
        return;
    }
    if (run->job->nsecrets > 0 && kiln__run_take_secrets(run) < 0)
        return;
    run->out_cap = run->job->limits.output_bytes >= 0 ? run->job->limits.output_bytes : cfg->output_bytes;
    run->plugin = loaded->p;
    if (d->attempt > (unsigned)cfg->max_attempts) {
        char why[160];
        snprintf(why, sizeof(why), "delivered %u times: the workers running it stopped mid-job", d->attempt);
        if (kiln_retry_note(&run->failures, why) < 0) {
            kiln__run_finish(run, KILN_STATUS_INTERNAL, why);
            return;
        }
        dead_letter(run);
        return;
    }
    if (KILN_PLUGIN_HAS(run->plugin, build))
        run->building = 1; /* its runs once it is built */
    else if (run->job->nruns > 0)
        run->cur = 0;
    if (run->job->session == NULL)
        run->image->jobs++; /* a session's job: once its session says which */
    if (d->enqueued_ms > 0 && now_ms >= d->enqueued_ms)
        kiln_metrics_queue_wait((now_ms - d->enqueued_ms) / 1000.0);
    kiln__run_start_one(run);
}

void kiln_worker_on_delivery(void *arg, struct kiln_delivery *d)
{
    struct kiln_worker *w = arg;
    struct kiln_run *run = calloc(1, sizeof(*run));
    if (run == NULL) {
        /* leave it unacknowledged: it is delivered again */
        kiln_error("out of memory taking job %s", d->ref);
        w->src->ops->release(w->src, d);
        return;
    }
    w->busy++;
    run->next = w->runs;
    if (w->runs)
        w->runs->prev = run;
    w->runs = run;
    run->w = w;
    run->d = d;
    run->delivered = d->attempt;
    run->unslotted = d->unslotted;
    run->dest = w->cfg->results;
    run->cur = -1;
    run->state = RUN_CHECKING; /* its first state, not a move */
    uv_timer_init(w->loop, &run->timer);
    run->timer.data = run;
    uv_timer_init(w->loop, &run->cpu_watch);
    run->cpu_watch.data = run;
    run->refs = 2; /* the timers', until closed */
    start(run);
}
