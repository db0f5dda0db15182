/*
 * How a job ends: its outcome decided once (a stop from outside names it),
 * its exit frame written and acknowledged, a failure of kiln's own tried
 * again or dead-lettered (core/retry.c), or the delivery released for
 * another worker; then the run freed once nothing refers to it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/config.h"
#include "core/log.h"
#include "core/repl.h"
#include "core/run.h"
#include "core/session.h"
#include "queue/source.h"
#include "core/secrets.h"
#include "sandbox/egress.h"

/* ---- freeing ---------------------------------------------------------- */

void kiln__run_close_egress(struct kiln_run *run)
{
    if (run->egress != NULL) {
        kiln_egress_close(run->egress);
        run->egress = NULL;
    }
}

void kiln__run_maybe_free(struct kiln_run *run)
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
    if (run->secrets != NULL)
        kiln_secret_uses_free(run->secrets, run->job->nsecrets);
    free((void *)run->view_extra.net);
    free((void *)run->view_extra.secret_env);
    kiln_job_free(run->job);
    kiln_plan_free(&run->plan);
    kiln__run_judge_free(run);
    kiln_retry_log_free(&run->failures);
    free(run);
    w->ending--;
    if (owed && !w->draining)
        w->src->ops->credit(w->src, 1);
}

void kiln__run_unref(struct kiln_run *run)
{
    run->refs--;
    kiln__run_maybe_free(run);
}

static void on_timer_closed(uv_handle_t *h)
{
    kiln__run_unref(h->data);
}

/* Its outcome is decided: its sandbox goes and its timer stops. */
static void halt(struct kiln_run *run)
{
    if (run->session != NULL && !kiln__repl_may_keep(run))
        kiln_session_kill(run->session); /* (a session's whose cell is over lives on) */
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
    run->state = RUN_DONE;
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
    kiln__run_maybe_free(run);
}

/* Let go of the delivery unacknowledged: the queue delivers it again. */
void kiln__run_release(struct kiln_run *run)
{
    kiln_info("job %s: released unfinished; it will be delivered again",
              run->job ? kiln__run_id(run) : run->d ? run->d->ref : "-");
    if (run->d != NULL)
        run->w->src->ops->release(run->w->src, run->d);
    run->d = NULL;
    if (run->session != NULL)
        kiln_session_kill(run->session);
    done(run);
}

/* Another worker runs the job (it holds the job's session): this delivery
 * is done, acknowledged without a frame. */
void kiln__run_handoff(struct kiln_run *run)
{
    run->w->src->ops->ack(run->w->src, run->d);
    run->d = NULL;
    done(run);
}

/* ---- frames ----------------------------------------------------------- */

static void on_frame_written(void *arg, int status, const char *err)
{
    (void)arg; /* the run may be gone: nothing of it is used */
    if (status < 0)
        kiln_warn("output frame not written: %s", err);
}

void kiln__run_write(struct kiln_run *run, msgpack_sbuffer *sb, const char *kind,
                     void (*cb)(void *arg, int status, const char *err))
{
    struct kiln_frame_info info = {kind, run->seq - 1, kiln__run_attempt(run), run->d};
    if (cb != NULL)
        run->refs++;
    int r = run->w->src->ops->write(run->w->src, run->dest, run->job ? run->job->id : NULL,
                                    sb->data, sb->size, &info, cb ? cb : on_frame_written,
                                    cb ? run : NULL);
    msgpack_sbuffer_destroy(sb);
    if (r < 0) {
        if (cb != NULL)
            run->refs--;
        kiln_error("job %s: a %s frame could not be queued (%s)", kiln__run_id(run), kind, strerror(-r));
        /* a result with a hole in it is no result: let another try */
        if (cb != NULL)
            kiln__run_release(run);
        else
            kiln__run_stop(run, STOP_RELEASE);
    }
}

void kiln__run_output(struct kiln_run *run, int fd, const void *data, size_t len)
{
    msgpack_sbuffer sb;
    kiln_metrics_output(fd, len);
    kiln_frame_output(&sb, run->job->id, run->seq++, kiln__run_attempt(run), fd, data, len, run->cur);
    kiln__run_write(run, &sb, fd == 2 ? "stderr" : "stdout", NULL);
}

void kiln__run_result(struct kiln_run *run, const void *text, size_t len)
{
    msgpack_sbuffer sb;
    kiln_frame_result(&sb, run->job->id, run->seq++, kiln__run_attempt(run), text, len);
    kiln__run_write(run, &sb, "result", NULL);
}

void kiln__run_file(struct kiln_run *run, const struct kiln_file_chunk *chunk)
{
    msgpack_sbuffer sb;
    struct kiln_file_chunk c = *chunk;
    c.run = run->cur;
    kiln_frame_file(&sb, run->job->id, run->seq++, kiln__run_attempt(run), &c);
    kiln__run_write(run, &sb, "file", NULL);
}

static void on_exit_written(void *arg, int status, const char *err);

static void write_exit(struct kiln_run *run)
{
    msgpack_sbuffer sb;
    kiln_frame_exit(&sb, run->job ? run->job->id : NULL, run->exit_seq, &run->ex);
    kiln__run_write(run, &sb, "exit", on_exit_written);
}

static void on_exit_written(void *arg, int status, const char *err)
{
    struct kiln_run *run = arg;
    const struct kiln_config *cfg = run->w->cfg;
    run->refs--;
    if (status < 0 && strcmp(run->dest, cfg->results) != 0) {
        /* reply_to refused the frame (wrong type, say): the result still
         * goes somewhere a user can find it. */
        kiln_warn("job %s: exit frame refused by %s (%s); writing it to %s", kiln__run_id(run),
                  run->dest, err, cfg->results);
        run->dest = cfg->results;
        write_exit(run);
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
        run->state = RUN_INPUT_DONE;
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

/* The outcome is decided: stop what runs and write the exit frame. */
static void report(struct kiln_run *run, enum kiln_status status, const char *reason)
{
    run->state = RUN_REPORTING;
    run->ex.status = status;
    if (reason != NULL && reason != run->reason)
        snprintf(run->reason, sizeof(run->reason), "%s", reason);
    run->ex.reason = reason ? run->reason : NULL;
    run->ex.attempt = kiln__run_attempt(run);
    run->ex.worker = run->w->cfg->consumer;
    halt(run);
    /* a build, or a case of `tests`: judged, and the job goes on */
    if (kiln__run_judge(run, status))
        return;
    run->ex.run = run->cur;
    if (run->egress != NULL)
        run->ex.denied = kiln_egress_denied(run->egress, &run->ex.ndenied);
    if (run->collected.len > 0) {
        run->ex.collect = run->collected.data;
        run->ex.collect_len = run->collected.len;
    }
    run->ex.runs_ok = -1;
    if (run->job != NULL && run->job->session != NULL) {
        run->ex.session = run->job->session;
        run->ex.session_seq = run->repl_seq;
    }
    /* meta once per job: in its last exit frame, not in every input's */
    if (run->job != NULL && run->job->meta != NULL && run->cur < 0) {
        run->ex.meta = run->job->meta;
        run->ex.meta_len = run->job->meta_len;
    }
    if (run->built && run->cur < 0)
        run->ex.build = &run->build_info;
    run->exit_seq = run->seq++;
    write_exit(run);
}

/* ---- retries and dead letters ----------------------------------------- */

static void on_dead_written(void *arg, int status, const char *err)
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
void kiln__run_dead_letter(struct kiln_run *run)
{
    msgpack_sbuffer sb;
    struct kiln_frame_info info = {"dead", 0, kiln__run_attempt(run), run->d};
    const struct kiln_config *cfg = run->w->cfg;
    run->state = RUN_DEAD_LETTER;
    halt(run);
    kiln_log_job(KILN_LOG_ERROR, run->job->id, run->plugin->name, kiln__run_attempt(run),
                 "job %s: %u attempts failed in kiln; to the dead letters (%s)", run->job->id,
                 kiln__run_attempt(run), cfg->dead_letters);
    kiln_retry_pack_dead(&sb, run->job->id, kiln__run_attempt(run), &run->failures, cfg->consumer,
                         run->d->data, run->d->len);
    run->refs++;
    int r = run->w->src->ops->write(run->w->src, cfg->dead_letters, run->job->id, sb.data,
                                    sb.size, &info, on_dead_written, run);
    msgpack_sbuffer_destroy(&sb);
    if (r < 0) {
        run->refs--;
        kiln_error("job %s: the dead letter could not be queued (%s)", kiln__run_id(run), strerror(-r));
        kiln__run_release(run);
    }
}

static void on_backoff(uv_timer_t *t)
{
    struct kiln_run *run = t->data;
    run->retries++;
    run->out_bytes = 0; /* a new attempt's output; a job's inputs share one cap */
    run->collect_bytes = run->collect_files = run->collect_names = 0; /* and its files */
    if (run->job->tests && !run->building) { /* every case again, in the new attempt */
        run->cur = 0;
        run->passed = run->failed = 0;
        memset(&run->total, 0, sizeof(run->total));
    }
    kiln__run_start_one(run);
}

void kiln__run_backoff(struct kiln_run *run)
{
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = uv_hrtime(); /* each worker its own jitter, never one shared sequence */
    run->state = RUN_BACKOFF;
    uv_timer_start(&run->timer, on_backoff,
                   kiln_retry_delay((uint64_t)run->w->cfg->retry_backoff_ms, run->retries, rnd), 0);
}

/* The job has ended with `status`: a cause from outside names it; a
 * failure of kiln's own may be tried again. */
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
            .runs = run->cur >= 0 && !run->job->tests, /* a case: the job again */
            .stopping = run->w->draining,
            .attempt = kiln__run_attempt(run),
            .max_attempts = (unsigned)run->w->cfg->max_attempts,
        };
        enum kiln_retry_verdict v = kiln_retry_decide(&c);
        if (v != KILN_RETRY_REPORT && kiln_retry_note(&run->failures, reason) < 0)
            v = KILN_RETRY_REPORT; /* out of memory: say so as it is */
        if (v == KILN_RETRY_DEAD_LETTER) {
            kiln__run_dead_letter(run);
            return;
        }
        if (v == KILN_RETRY_AGAIN) {
            kiln_log_job(KILN_LOG_WARN, run->job->id, run->plugin->name, kiln__run_attempt(run),
                         "job %s attempt %u failed in kiln (%s); retrying", run->job->id,
                         kiln__run_attempt(run), reason ? reason : "?");
            run->state = RUN_RETRY_WAIT;
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

/* The final frame of a job with `runs` (how many inputs ended ok) or
 * `tests` (the job's verdict: accepted, or its first failing case's). */
void kiln__run_summary(struct kiln_run *run)
{
    struct kiln_exit *e = &run->ex;
    int ok = run->job->tests ? run->passed : run->runs_ok;
    memset(e, 0, sizeof(*e));
    e->status = ok == (int)run->job->nruns ? KILN_STATUS_OK : KILN_STATUS_ERROR;
    if (run->job->tests) {
        e->has_verdict = 1;
        e->verdict = run->failed ? run->first_fail : KILN_VERDICT_ACCEPTED;
        e->passed = run->passed;
        e->total = (int)run->job->nruns;
    }
    e->build = run->built ? &run->build_info : NULL;
    e->wall_ms = run->total.wall_ms;
    e->cpu_ms = run->total.cpu_ms;
    e->max_rss_kb = run->total.max_rss_kb;
    e->attempt = kiln__run_attempt(run);
    e->worker = run->w->cfg->consumer;
    e->meta = run->job->meta;
    e->meta_len = run->job->meta_len;
    e->run = -1;
    e->runs_total = (int)run->job->nruns;
    e->runs_ok = run->job->tests ? -1 : run->runs_ok;
    run->state = RUN_REPORTING;
    run->exit_seq = run->seq++;
    write_exit(run);
}
