/*
 * The frames a job writes: its output, a cell's value and `collect`'s
 * files as they come; its exit frame (a step's, or the summary of a job of
 * `runs` or `tests`); the dead letter of a job kiln failed too often. A
 * write that is waited for hands its outcome back to core/life.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "base/log.h"
#include "core/run.h"
#include "core/secrets.h"
#include "queue/source.h"
#include "egress/egress.h"

static void on_frame_written(void *arg, int status, const char *err)
{
    (void)arg; /* the run may be gone: nothing of it is used */
    /* -EPIPE: the queue failed for good (kiln_fatal_cb), which the worker
     * said once as it began to drain; a line per pending frame says no more */
    if (status < 0 && status != -EPIPE)
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

void kiln__run_exposed(struct kiln_run *run, int port, const char *url)
{
    msgpack_sbuffer sb;
    kiln_frame_exposed(&sb, run->job->id, run->seq++, kiln__run_attempt(run), port, url);
    kiln__run_write(run, &sb, "exposed", NULL);
}

void kiln__run_file(struct kiln_run *run, const struct kiln_file_chunk *chunk)
{
    msgpack_sbuffer sb;
    struct kiln_file_chunk c = *chunk;
    c.run = run->cur;
    kiln_frame_file(&sb, run->job->id, run->seq++, kiln__run_attempt(run), &c);
    kiln__run_write(run, &sb, "file", NULL);
}

/* ---- exit frames ---------------------------------------------------------- */

void kiln__run_exit_of(struct kiln_run *run, enum kiln_status status, const char *reason)
{
    run->ex.status = status;
    if (reason != NULL && reason != run->reason)
        snprintf(run->reason, sizeof(run->reason), "%s", reason);
    run->ex.reason = reason ? run->reason : NULL;
    run->ex.attempt = kiln__run_attempt(run);
    run->ex.worker = run->w->cfg->q.consumer;
}

void kiln__run_exit_complete(struct kiln_run *run)
{
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
        run->ex.session_seq = run->session_seq;
    }
    /* meta once per job: in its last exit frame, not in every input's */
    if (run->job != NULL && run->job->meta != NULL && run->cur < 0) {
        run->ex.meta = run->job->meta;
        run->ex.meta_len = run->job->meta_len;
    }
    if (run->built && run->cur < 0)
        run->ex.build = &run->build_info;
    run->exit_seq = run->seq++;
}

/* The last exit frame of a job with `runs` (how many inputs ended ok) or
 * `tests` (the job's verdict: accepted, or its first failing case's). */
void kiln__run_summary_of(struct kiln_run *run)
{
    struct kiln_exit *e = &run->ex;
    int ok = run->kind == RUN_TESTS ? run->passed : run->runs_ok;
    memset(e, 0, sizeof(*e));
    e->status = ok == (int)run->job->nruns ? KILN_STATUS_OK : KILN_STATUS_ERROR;
    if (run->kind == RUN_TESTS) {
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
    e->worker = run->w->cfg->q.consumer;
    e->meta = run->job->meta;
    e->meta_len = run->job->meta_len;
    e->run = -1;
    e->runs_total = (int)run->job->nruns;
    e->runs_ok = run->kind == RUN_TESTS ? -1 : run->runs_ok;
    run->exit_seq = run->seq++;
}

void kiln__run_write_exit(struct kiln_run *run)
{
    msgpack_sbuffer sb;
    kiln_frame_exit(&sb, run->job ? run->job->id : NULL, run->exit_seq, &run->ex);
    kiln__run_write(run, &sb, "exit", kiln__run_exit_written);
}

/* ---- dead letters ------------------------------------------------------------ */

int kiln__run_write_dead(struct kiln_run *run)
{
    msgpack_sbuffer sb;
    struct kiln_frame_info info = {"dead", 0, kiln__run_attempt(run), run->d};
    const struct kiln_config *cfg = run->w->cfg;
    kiln_retry_pack_dead(&sb, run->job->id, kiln__run_attempt(run), &run->failures, cfg->q.consumer,
                         run->d->data, run->d->len);
    run->refs++;
    int r = run->w->src->ops->write(run->w->src, cfg->dead_letters, run->job->id, sb.data,
                                    sb.size, &info, kiln__run_dead_written, run);
    msgpack_sbuffer_destroy(&sb);
    if (r < 0) {
        run->refs--;
        kiln_error("job %s: the dead letter could not be queued (%s)", kiln__run_id(run), strerror(-r));
        return -1;
    }
    return 0;
}

/* ---- freeing ---------------------------------------------------------------- */

void kiln__run_free(struct kiln_run *run)
{
    if (run->secrets != NULL)
        kiln_secret_uses_free(run->secrets, run->job->nsecrets);
    free((void *)run->view_extra.net);
    free((void *)run->view_extra.secret_env);
    kiln_job_free(run->job);
    kiln_plan_free(&run->plan);
    kiln__run_judge_free(run);
    kiln_retry_log_free(&run->failures);
    free(run);
}
