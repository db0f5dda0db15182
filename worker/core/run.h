/*
 * One job in the worker's hands: core/runner.c starts it and runs it in a
 * session (core/run_egress.c: its way out, secrets and proxy),
 * core/report.c ends it (exit frames, retries, dead letters, release),
 * core/control.c stops it from outside (drain, cancel, hangs), core/judge.c
 * judges its builds and cases. Internal to those files.
 */
#ifndef KILN_RUN_H
#define KILN_RUN_H

#include <stdint.h>
#include <uv.h>

#include "core/metrics.h"
#include "core/plan.h"
#include "core/prepare.h"
#include "core/retry.h"
#include "core/runner.h"
#include "wire/frame.h"
#include "wire/job.h"

struct kiln_egress;
struct kiln_session;

enum run_state {
    RUN_STARTING,    /* its sandbox is coming up */
    RUN_RUNNING,     /* the job runs in it */
    RUN_REPORTING,   /* its outcome is decided: the exit frame is being written */
    RUN_INPUT_DONE,  /* an input of `runs` is reported: the next once its sandbox is gone */
    RUN_RETRY_WAIT,  /* the attempt failed in kiln: the backoff once its sandbox is gone */
    RUN_BACKOFF,     /* waiting to try again */
    RUN_DEAD_LETTER, /* being written to the dead letters */
    RUN_DONE,        /* acknowledged, or released for redelivery */
};

/* Why a job was stopped from outside before it ended; the first wins,
 * except RELEASE, which nothing overrides. */
enum run_stop {
    STOP_NONE,
    STOP_TIMEOUT,    /* its timeout_ms passed: "timeout" */
    STOP_OUTPUT,     /* its output reached the cap: "output_limit" */
    STOP_CANCEL,     /* a control message: "cancelled" */
    STOP_HANG,       /* its sandbox went silent past --hang-ms: kiln's failure */
    STOP_CPU,        /* its cgroup's CPU time passed cpu_ms: "killed" */
    STOP_RELEASE,    /* no frame and no ack: the queue delivers it again (a
                      * drain that timed out, a frame that could not be queued) */
};

struct kiln_run {
    struct kiln_run *next, *prev;  /* the worker's list */
    struct kiln_worker *w;
    enum run_state state;
    enum run_stop stop;
    unsigned refs;
    struct kiln_delivery *d;     /* until acknowledged or released */
    unsigned delivered;          /* d->attempt: this worker's first attempt */
    int unslotted;               /* d->unslotted: it took no slot */
    struct kiln_job *job;
    const struct kiln_plugin *plugin;
    struct kiln_plan plan;
    struct kiln_session *session; /* until GONE (a session's: until its cell is over) */
    struct kiln_repl *repl;      /* the job's session (core/repl.c), while queued or in it */
    struct kiln_run *repl_next;  /* its session's queue */
    int64_t repl_seq;            /* its place in its session */
    int64_t oom_base;            /* the sandbox's OOM kills before it ran (a session's) */
    char kid[128];               /* the key it was signed with (--require-signature), or "" */
    struct kiln_egress *egress;  /* the job's way out, with net.allow or secrets */
    struct kiln_secret_use *secrets; /* the job's `secrets`, looked up */
    struct kiln_view_extra view_extra; /* what they add to the plugin's view (arrays owned) */
    uv_timer_t timer;            /* the job's timeout, then a retry's backoff */
    uv_timer_t cpu_watch;        /* its CPU time against cpu_ms, from its cgroup */
    int64_t cpu_base;            /* the cgroup's CPU time when the run began */
    int credit_owed;             /* its slot is given back when it is freed */
    const char *dest;            /* where frames go */
    uint64_t seq;                /* the next frame's */
    uint64_t exit_seq;           /* the exit frame's, kept for a rewrite */
    uint64_t t_run;              /* when the run was sent (loop ms) */
    int64_t out_bytes, out_cap;
    struct kiln_exit ex;
    char reason[512];
    enum kiln_reject reject_class; /* when rejected */
    /* a job with `runs`: each input in its own sandbox, one after another */
    int cur;                     /* the input running now, or -1 */
    int runs_ok;
    struct kiln_exit total;      /* sums for the final summary frame */
    struct kiln_limits lim;      /* the current run's (a case's over the job's) */
    int cpu_over;                /* its agent killed it at its CPU limit */
    /* a job with `tests`: each case's output kept to judge it */
    struct kiln_buf { unsigned char *data; size_t len, cap; } out, err;
    int out_past;                /* its stdout went on, past what is kept, with more than whitespace */
    int64_t streamed;            /* tests_output: what all its cases streamed */
    int passed;
    int failed;                  /* a case failed: stop_on_fail skips the rest */
    enum kiln_verdict first_fail;
    /* a compiled plugin's job: its build, then its runs */
    int building;                /* the build is what runs now */
    int built;                   /* build_info says how it went */
    int after_build;             /* the build worked: the runs start next */
    struct kiln_build_info build_info;
    struct kiln_buf build_out;   /* the compiler's output, capped */
    struct kiln_buf collected;   /* the current run's `collect` summary (packed), or empty */
    /* what `collect` sent back so far in this attempt, all its runs
     * together, held to the caps here too: bytes, files, bytes of paths */
    int64_t collect_bytes, collect_files, collect_names;
    struct kiln_artifact artifact;
    char artifact_error[160];    /* why the build's artifact did not come */
    /* retries of kiln's own failures */
    unsigned retries;            /* done so far in this worker */
    struct kiln_retry_log failures;
};


static inline unsigned kiln__run_attempt(const struct kiln_run *run)
{
    return run->delivered + run->retries;
}

/* The CPU time the current run may use (ms): its own limit, or the
 * operator's default; 0: none. */
static inline int64_t kiln__run_cpu_limit(const struct kiln_run *run)
{
    return run->lim.cpu_ms > 0 ? run->lim.cpu_ms : run->w->cfg->cpu_ms;
}

/* The job has a way out: net.allow, or secrets (whose hosts it may reach). */
static inline int kiln__run_net(const struct kiln_run *run)
{
    return (run->job->has_net && run->job->nnet > 0) || run->job->nsecrets > 0;
}

struct kiln_repl;

/* The job's id for logs: "-" before it is decoded. */
static inline const char *kiln__run_id(const struct kiln_run *run)
{
    return run->job != NULL && run->job->id != NULL ? run->job->id : "-";
}

/* The outcome is not decided yet: a stop, an exit or a failure decides it. */
static inline int kiln__run_undecided(const struct kiln_run *run)
{
    return run->state == RUN_STARTING || run->state == RUN_RUNNING || run->state == RUN_BACKOFF;
}

/* core/runner.c */
/* Start the job, or its current input of `runs`, in a sandbox. */
void kiln__run_start_one(struct kiln_run *run);
/* Send the job to its READY session (run->session). */
void kiln__run_send(struct kiln_run *run);
/* What its session says (core/session.h's events). */
struct kiln_session_event;
void kiln__run_on_session(void *arg, const struct kiln_session_event *ev);
/* A session job's value, as a "result" frame. */
void kiln__run_result(struct kiln_run *run, const void *text, size_t len);
/* Something the run waited for has happened: once its sandbox is gone,
 * the next input, the backoff, or the end. */
void kiln__run_advance(struct kiln_run *run);

/* core/judge.c: cases, builds */
/* Keep a chunk of a case's or a build's output; 0, or -1 when the job's
 * output cap is reached (the case ends output_limit). */
int kiln__run_keep_output(struct kiln_run *run, int fd, const void *data, size_t len);
/* The build or the case that ran has ended with `status` (a program's
 * end: ok, error, timeout, oom, killed, output_limit): judge it and go
 * on. Returns 1 when it was one, 0 when the job's exit frame is due. */
int kiln__run_judge(struct kiln_run *run, enum kiln_status status);
/* After a case: skip the rest when stop_on_fail says so. Returns 1 when
 * the job is over (then the summary follows). */
int kiln__run_skip_rest(struct kiln_run *run);
void kiln__run_judge_reset(struct kiln_run *run);
/* The build's artifact (or why it did not come), from its agent. */
struct kiln_session_event;
void kiln__run_keep_artifact(struct kiln_run *run, const struct kiln_session_event *ev);
void kiln__run_judge_free(struct kiln_run *run);

/* core/report.c */
/* Write a frame (`sb` is consumed); `cb` gets the run back when it is
 * written (NULL: nobody waits, as for output). On a queueing failure the
 * run is released. */
void kiln__run_write(struct kiln_run *run, msgpack_sbuffer *sb, const char *kind,
                     void (*cb)(void *arg, int status, const char *err));
/* A case frame or a build is done: tally it and go on to the next. */
void kiln__run_input_done(struct kiln_run *run);
/* The job has ended with `status`: a cause from outside (run->stop) names
 * it; a failure of kiln's own may be tried again or dead-lettered. Does
 * nothing once the outcome is decided. */
void kiln__run_finish(struct kiln_run *run, enum kiln_status status, const char *reason);
void kiln__run_reject(struct kiln_run *run, enum kiln_reject why, const char *reason);
/* Past --max-attempts: to the dead letters, then a final internal frame. */
void kiln__run_dead_letter(struct kiln_run *run);
/* Wait before trying again (--retry-backoff-ms, doubled, jittered). */
void kiln__run_backoff(struct kiln_run *run);
/* The final frame of a job with `runs`. */
void kiln__run_summary(struct kiln_run *run);
/* Let go of the delivery unacknowledged: the queue delivers it again. */
void kiln__run_release(struct kiln_run *run);
/* The job went to the worker that holds its session: acknowledged here,
 * without a frame. */
void kiln__run_handoff(struct kiln_run *run);
/* One chunk of the job's stdout (1) or stderr (2), as a frame. */
void kiln__run_output(struct kiln_run *run, int fd, const void *data, size_t len);
/* A chunk of a file the job's `collect` sends back, as a "file" frame. */
void kiln__run_file(struct kiln_run *run, const struct kiln_file_chunk *chunk);
/* core/run_egress.c: the job's secrets looked up (0; or -1 once it is
 * rejected or failed), and the current run's egress proxy opened in `sb`'s
 * proxy directory with the placeholders in its environment (0, or -1 once
 * the run has failed). */
int kiln__run_take_secrets(struct kiln_run *run);
struct kiln_sandbox;
int kiln__run_open_egress(struct kiln_run *run, struct kiln_sandbox *sb);
/* core/judge.c: keep the current run's `collect` summary for its exit frame. */
void kiln__run_keep_collected(struct kiln_run *run, const void *data, size_t len);
void kiln__run_close_egress(struct kiln_run *run);
/* Drop a reference; the run is freed when it is DONE and none is left. */
void kiln__run_unref(struct kiln_run *run);
void kiln__run_maybe_free(struct kiln_run *run);

/* core/control.c */
/* Stop the job from outside for `why` (the first cause wins, but
 * STOP_RELEASE wins over all): its session is killed, its end reports. */
void kiln__run_stop(struct kiln_run *run, enum run_stop why);
/* Whether a cancel for `id` came in the last ten minutes. */
int kiln__run_was_cancelled(struct kiln_worker *w, const char *id);

#endif
