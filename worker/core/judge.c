/*
 * Evaluation jobs: a compiled plugin's build, and the cases of `tests`.
 *
 * A build runs first, in a sandbox of its own; its output is kept (not
 * streamed) and the artifact it leaves comes back from its agent. A build
 * that fails ends the job compile_error; one that works starts the runs,
 * each in a fresh sandbox with its own copy of the artifact.
 *
 * Each case runs in a fresh sandbox too; its output is kept, and when it
 * ends it is judged (core/verdict.c): how it ended (its CPU time against
 * its limit, its exit code against the expected one), then its stdout
 * against the expected. Its `case` frame says the verdict; the job's last
 * exit frame says the job's (core/report.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "base/log.h"
#include "core/run.h"
#include "core/link.h"
#include "core/verdict.h"
#include "queue/source.h"

/* What a build's output may hold; what a case's frame shows of stderr. */
#define BUILD_OUTPUT_MAX (64 * 1024)
#define CASE_STDERR_MAX 1024

/* Append to `b`, keeping at most `max` bytes of it. 0, or -1 out of memory. */
static int buf_add(struct kiln_buf *b, const void *data, size_t len, size_t max)
{
    if (b->len >= max)
        return 0;
    if (len > max - b->len)
        len = max - b->len;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (p == NULL)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

/* How much of a case's stdout is kept to judge: enough for any output
 * that can match (the expected, with room for the whitespace lines and
 * tokens ignore), never the whole output cap. Past it, only whether
 * anything but whitespace came counts: that is a wrong answer (exact: any
 * byte at all). */
static size_t judged_max(const struct kiln_run *run)
{
    const struct kiln_run_input *in = &run->job->runs[run->cur];
    if (in->expect_stdout == NULL)
        return 0; /* judged on its end alone */
    if (run->job->compare == KILN_COMPARE_EXACT)
        return in->expect_len + 1;
    return in->expect_len * 2 + 64 * 1024;
}

int kiln__run_keep_output(struct kiln_run *run, int fd, const void *data, size_t len)
{
    if (run->building)
        return buf_add(&run->build_out, data, len, BUILD_OUTPUT_MAX);
    if (fd == 2)
        return buf_add(&run->err, data, len, CASE_STDERR_MAX);
    size_t max = judged_max(run), room = run->out.len < max ? max - run->out.len : 0;
    if (max == 0)
        return 0;
    const unsigned char *past = (const unsigned char *)data + (len < room ? len : room);
    for (size_t i = len < room ? 0 : len - room; i > 0 && !run->out_past; i--, past++)
        run->out_past = run->job->compare == KILN_COMPARE_EXACT ||
                        !(*past == ' ' || *past == '\t' || *past == '\n' || *past == '\r' ||
                          *past == '\f' || *past == '\v');
    return buf_add(&run->out, data, len, max);
}

void kiln__run_keep_artifact(struct kiln_run *run, const struct kiln_link_event *ev)
{
    if (!run->building)
        return;
    free(run->artifact.data);
    run->artifact = (struct kiln_artifact){NULL, 0};
    if (ev->file_error != NULL) {
        snprintf(run->artifact_error, sizeof(run->artifact_error), "%s", ev->file_error);
    } else if (ev->len > (size_t)run->w->cfg->max_job_bytes) {
        /* each run's sandbox gets a copy, in a message the size of a job */
        snprintf(run->artifact_error, sizeof(run->artifact_error),
                 "it is %zu bytes, over this worker's --max-job-bytes (%lld)", ev->len,
                 (long long)run->w->cfg->max_job_bytes);
    } else if ((run->artifact.data = malloc(ev->len ? ev->len : 1)) == NULL) {
        snprintf(run->artifact_error, sizeof(run->artifact_error), "out of memory");
    } else {
        memcpy(run->artifact.data, ev->data, ev->len);
        run->artifact.len = ev->len;
    }
}

void kiln__run_keep_collected(struct kiln_run *run, const void *data, size_t len)
{
    run->collected.len = 0;
    if (buf_add(&run->collected, data, len, 64 * 1024) < 0 || run->collected.len != len)
        run->collected.len = 0; /* a summary cut short is no summary */
}

void kiln__run_judge_reset(struct kiln_run *run)
{
    run->collected.len = 0;
    run->out.len = run->err.len = 0;
    run->out_past = 0;
    run->cpu_over = 0;
    if (run->building)
        run->build_out.len = 0;
}

void kiln__run_judge_free(struct kiln_run *run)
{
    free(run->out.data);
    free(run->err.data);
    free(run->build_out.data);
    free(run->artifact.data);
    free(run->collected.data);
}

/* ---- the build ----------------------------------------------------------- */

/* The build has ended: on to the runs (BUILT), or the job ends
 * compile_error with the build's output in its exit frame (BUILD_FAILED). */
static enum run_judged build_done(struct kiln_run *run, enum kiln_status status)
{
    run->building = 0;
    run->built = 1;
    run->build_info = (struct kiln_build_info){status, run->ex.wall_ms, run->ex.cpu_ms, run->build_out.data,
                                               run->build_out.len};
    if (status == KILN_STATUS_OK && run->artifact.data != NULL) {
        memset(&run->ex, 0, sizeof(run->ex));
        run->cur = run->job->nruns > 0 ? 0 : -1;
        return JUDGED_BUILT;
    }
    if (status == KILN_STATUS_OK) {
        snprintf(run->reason, sizeof(run->reason), "compile error: the build left no %s (%s)",
                 run->plugin->artifact, run->artifact_error[0] ? run->artifact_error : "?");
        run->build_info.status = KILN_STATUS_ERROR;
    } else { /* (its reason is in run->reason: copied before that is rewritten) */
        char why[sizeof(run->reason)];
        snprintf(why, sizeof(why), "%s", run->ex.reason ? run->ex.reason : "");
        snprintf(run->reason, sizeof(run->reason), "compile error: the build ended %s%s%.400s",
                 kiln_status_name(status), why[0] ? ": " : "", why);
    }
    run->ex.status = KILN_STATUS_ERROR;
    run->ex.reason = run->reason;
    run->ex.has_code = 0;
    run->ex.signal = 0;
    if (run->kind == RUN_TESTS) {
        run->ex.has_verdict = 1;
        run->ex.verdict = KILN_VERDICT_COMPILE_ERROR;
        run->ex.total = (int)run->job->nruns;
    }
    run->cur = -1;
    return JUDGED_BUILD_FAILED;
}

/* ---- a case ---------------------------------------------------------- */

static void case_reason(const struct kiln_run *run, enum kiln_status status, enum kiln_verdict v,
                        int64_t expect_exit, char *buf, size_t len)
{
    const struct kiln_exit *ex = &run->ex;
    buf[0] = '\0';
    switch (v) {
    case KILN_VERDICT_TIME_LIMIT:
        if (status == KILN_STATUS_TIMEOUT)
            snprintf(buf, len, "the wall clock: %lld ms passed (CPU used: %lld ms)",
                     (long long)ex->wall_ms, (long long)ex->cpu_ms);
        else
            snprintf(buf, len, "CPU time %lld ms, over the limit of %lld ms", (long long)ex->cpu_ms,
                     (long long)kiln__run_cpu_limit(run));
        break;
    case KILN_VERDICT_RUNTIME_ERROR:
        if (ex->has_code)
            snprintf(buf, len, "exit code %d, expected %lld", ex->code, (long long)expect_exit);
        else
            snprintf(buf, len, "killed by signal %d%s%s", ex->signal, ex->reason ? ": " : "",
                     ex->reason ? ex->reason : "");
        break;
    case KILN_VERDICT_MEMORY_LIMIT:
    case KILN_VERDICT_OUTPUT_LIMIT:
        snprintf(buf, len, "%s", ex->reason ? ex->reason : "its output passed the cap");
        break;
    default:
        break;
    }
}

static void case_done(struct kiln_run *run, enum kiln_status status)
{
    const struct kiln_job *job = run->job;
    const struct kiln_run_input *in = &job->runs[run->cur];
    struct kiln_case_end end = {status, run->ex.has_code, run->ex.code, run->ex.signal, run->cpu_over,
                                run->ex.cpu_ms, kiln__run_cpu_limit(run), in->expect_exit};
    enum kiln_verdict v = kiln_verdict_of_end(&end);
    struct kiln_diff d = {0};
    if (v == KILN_VERDICT_ACCEPTED && in->expect_stdout != NULL &&
        (run->out_past ||
         !kiln_verdict_compare(job->compare, job->tolerance, in->expect_stdout, in->expect_len,
                               run->out.data ? run->out.data : (const unsigned char *)"", run->out.len, &d)))
        v = KILN_VERDICT_WRONG_ANSWER;
    char reason[300];
    case_reason(run, status, v, in->expect_exit, reason, sizeof(reason));
    if (v == KILN_VERDICT_WRONG_ANSWER && d.at == 0)
        snprintf(reason, sizeof(reason), "its output goes on past the expected output (%zu bytes)",
                 in->expect_len);
    struct kiln_case_result c = {
        .index = run->cur, .verdict = v, .has_code = run->ex.has_code, .code = run->ex.code,
        .signal = run->ex.signal, .wall_ms = run->ex.wall_ms, .cpu_ms = run->ex.cpu_ms,
        .max_rss_kb = run->ex.max_rss_kb, .reason = reason[0] ? reason : NULL,
        .diff_at = d.at, .diff_tokens = d.tokens, .expected = d.want, .expected_len = d.want_len,
        .got = d.got, .got_len = d.got_len,
        .err = v != KILN_VERDICT_ACCEPTED && run->err.len > 0 ? run->err.data : NULL,
        .err_len = run->err.len,
        .collect = run->collected.len > 0 ? run->collected.data : NULL,
        .collect_len = run->collected.len,
    };
    if (v == KILN_VERDICT_ACCEPTED) {
        run->passed++;
    } else if (!run->failed) {
        run->failed = 1;
        run->first_fail = v;
    }
    run->total.wall_ms += run->ex.wall_ms;
    run->total.cpu_ms += run->ex.cpu_ms;
    if (run->ex.max_rss_kb > run->total.max_rss_kb)
        run->total.max_rss_kb = run->ex.max_rss_kb;
    msgpack_sbuffer sb;
    kiln_frame_case(&sb, job->id, run->seq++, kiln__run_attempt(run), &c);
    kiln__run_write(run, &sb, "case", kiln__run_case_written);
}

enum run_judged kiln__run_judge(struct kiln_run *run, enum kiln_status status)
{
    int program = status == KILN_STATUS_OK || status == KILN_STATUS_ERROR ||
                  status == KILN_STATUS_TIMEOUT || status == KILN_STATUS_OOM ||
                  status == KILN_STATUS_KILLED || status == KILN_STATUS_OUTPUT_LIMIT;
    if (run->building) {
        if (!program) {
            run->building = 0; /* kiln's failure, a cancel: the job ends so */
            return JUDGED_NOTHING;
        }
        return build_done(run, status);
    }
    if (run->kind != RUN_TESTS || run->cur < 0)
        return JUDGED_NOTHING;
    if (!program) {
        run->cur = -1; /* a cancel, kiln's failure: the job ends here, not the case */
        return JUDGED_NOTHING;
    }
    case_done(run, status);
    return JUDGED_CASE;
}

int kiln__run_skip_rest(struct kiln_run *run)
{
    const struct kiln_job *job = run->job;
    if (run->kind != RUN_TESTS || !job->stop_on_fail || !run->failed)
        return 0;
    for (size_t i = (size_t)run->cur + 1; i < job->nruns; i++) {
        struct kiln_case_result c = {.index = (int)i, .verdict = KILN_VERDICT_SKIPPED,
                                     .reason = "an earlier case failed (stop_on_fail)"};
        msgpack_sbuffer sb;
        kiln_frame_case(&sb, job->id, run->seq++, kiln__run_attempt(run), &c);
        kiln__run_write(run, &sb, "case", NULL);
    }
    return 1;
}
