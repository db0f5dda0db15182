/*
 * One job in the worker's hands, and the files that share it:
 *
 *   core/life.c      its life: every change of its state (one function,
 *                    kiln__run_move, and the table of moves beside it), from
 *                    delivery through its sandboxes, retries and reports to
 *                    its release; what happens next is decided there only
 *   core/run_link.c  its current sandbox: the link taken or spawned, the
 *                    "run" sent, what the link says turned into an outcome
 *   core/run_egress.c  its way out: secrets and the egress proxy
 *   core/report.c    the frames it writes (output, files, cases, exit,
 *                    dead letters), each write's outcome handed back to life
 *   core/judge.c     its builds and cases judged
 *   core/control.c   stops from outside: a drain, a cancel, a hang
 *
 * Internal to core/.
 */
#ifndef KILN_RUN_H
#define KILN_RUN_H

#include <stdint.h>
#include <uv.h>

#include "core/metrics.h"
#include "core/plan.h"
#include "core/prepare.h"
#include "core/retry.h"
#include "core/worker.h"
#include "wire/frame.h"
#include "wire/job.h"

struct kiln_egress;
struct kiln_link;

/* Where the job is (core/life.c draws the moves). */
enum run_state {
    RUN_CHECKING,    /* delivered: being decoded and checked, before any sandbox */
    RUN_STARTING,    /* its sandbox (for the build, an input or a case) is coming up */
    RUN_RUNNING,     /* the build, input or case runs in it */
    RUN_REPORTING,   /* an outcome is decided: its frame is being written */
    RUN_BUILT,       /* the build worked: the first input once its sandbox is gone */
    RUN_INPUT_DONE,  /* an input or case is reported: the next once its sandbox is gone */
    RUN_RETRY_WAIT,  /* the attempt failed in kiln: the backoff once its sandbox is gone */
    RUN_BACKOFF,     /* waiting to try again */
    RUN_DEAD_LETTER, /* being written to the dead letters */
    RUN_DONE,        /* acknowledged, or released for redelivery */
};

/* What the job is, from its keys: one program; `runs`, each input in a
 * sandbox of its own; `tests`, each case judged; a cell of a user session. */
enum run_kind {
    RUN_PLAIN,
    RUN_INPUTS,
    RUN_TESTS,
    RUN_CELL,
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
    enum run_state state;        /* moved by kiln__run_move() only */
    enum run_kind kind;
    enum run_stop stop;
    unsigned refs;
    struct kiln_delivery *d;     /* until acknowledged or released */
    unsigned delivered;          /* d->attempt: this worker's first attempt */
    int unslotted;               /* d->unslotted: it took no slot */
    struct kiln_job *job;
    const struct kiln_plugin *plugin;
    struct kiln_image *image;    /* the runtime image it runs on (core/image.h) */
    struct kiln_plan plan;
    struct kiln_link *link;      /* until GONE (a user session's: until its cell is over) */
    struct kiln_session *session; /* the job's user session (core/session.c), while queued or in it */
    struct kiln_run *session_next; /* its session's queue */
    int64_t session_seq;         /* its place in its session */
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

struct kiln_session;

/* The job's id for logs: "-" before it is decoded. */
static inline const char *kiln__run_id(const struct kiln_run *run)
{
    return run->job != NULL && run->job->id != NULL ? run->job->id : "-";
}

/* The outcome is not decided yet: a stop, an exit or a failure decides it. */
static inline int kiln__run_undecided(const struct kiln_run *run)
{
    return run->state == RUN_CHECKING || run->state == RUN_STARTING || run->state == RUN_RUNNING ||
           run->state == RUN_BACKOFF;
}

/* ---- core/life.c: its state, and what happens next -------------------- */

/* The one place run->state changes. A move the table in core/life.c has
 * no arrow for is logged as a bug (and made). */
void kiln__run_move(struct kiln_run *run, enum run_state to);
/* Moves the table refused so far (each also logged as a bug); the
 * lifecycle tests (tests/unit/test_life.c) assert there are none. */
extern unsigned kiln__run_bad_moves;
const char *kiln__run_state_name(enum run_state st);
/* Start the current step (the build, an input, a case or the job) in a
 * sandbox. */
void kiln__run_start_one(struct kiln_run *run);
/* The job (or its current step) ended with `status`: a cause from outside
 * (run->stop) names it; a failure of kiln's own may be tried again or
 * dead-lettered. Does nothing once the outcome is decided. */
void kiln__run_finish(struct kiln_run *run, enum kiln_status status, const char *reason);
void kiln__run_reject(struct kiln_run *run, enum kiln_reject why, const char *reason);
/* Something the run waited for has happened: once its sandbox is gone,
 * the first input after the build, the next input, the backoff, or the
 * end. */
void kiln__run_advance(struct kiln_run *run);
/* Let go of the delivery unacknowledged: the queue delivers it again. */
void kiln__run_release(struct kiln_run *run);
/* The job went to the worker that holds its session: acknowledged here,
 * without a frame. */
void kiln__run_handoff(struct kiln_run *run);
/* Drop a reference; the run is freed when it is DONE and none is left. */
void kiln__run_unref(struct kiln_run *run);
/* What core/report.c's writes say when they are done (`arg`: the run). */
void kiln__run_exit_written(void *arg, int status, const char *err);
void kiln__run_case_written(void *arg, int status, const char *err);
void kiln__run_dead_written(void *arg, int status, const char *err);

/* ---- core/run_link.c: its sandbox ---------------------------------------- */

struct kiln_job_view;
struct kiln_link_event;
/* A link for the current step: warm from the pool or spawned. 0 (", warm"
 * or "" in *how), or -1 with why in `err`. */
int kiln__run_open_link(struct kiln_run *run, const struct kiln_job_view *view, const char **how, char *err,
                        size_t errlen);
/* Send the step to its READY link (run->link). */
void kiln__run_send(struct kiln_run *run);
/* What its link says (core/link.h's events). */
void kiln__run_on_link(void *arg, const struct kiln_link_event *ev);
/* The memory limit its sandbox enforces (MiB): a user session's is its
 * first job's, whatever a later job asks. */
int64_t kiln__run_memory_mb(const struct kiln_run *run);

/* ---- core/run_egress.c: its way out ---------------------------------------- */

/* The job's secrets looked up (0; or -1 once it is rejected or failed),
 * and the current step's egress proxy opened in `sb`'s proxy directory
 * with the placeholders in its environment (0, or -1 once the run has
 * failed); closed again. */
int kiln__run_take_secrets(struct kiln_run *run);
struct kiln_sandbox;
int kiln__run_open_egress(struct kiln_run *run, struct kiln_sandbox *sb);
void kiln__run_close_egress(struct kiln_run *run);

/* ---- core/report.c: its frames ------------------------------------------------ */

/* Write a frame (`sb` is consumed); `cb` gets the run back when it is
 * written (NULL: nobody waits, as for output). On a queueing failure the
 * run is released (or, with no callback, stopped to be released). */
void kiln__run_write(struct kiln_run *run, msgpack_sbuffer *sb, const char *kind,
                     void (*cb)(void *arg, int status, const char *err));
/* One chunk of the job's stdout (1) or stderr (2); a cell's value; a
 * session's port exposed at `url`; a chunk of a file `collect` sends back. */
void kiln__run_output(struct kiln_run *run, int fd, const void *data, size_t len);
void kiln__run_result(struct kiln_run *run, const void *text, size_t len);
void kiln__run_exposed(struct kiln_run *run, int port, const char *url);
void kiln__run_file(struct kiln_run *run, const struct kiln_file_chunk *chunk);
/* run->ex as the decided outcome `status` of the step (reason: NULL, or
 * why): what a build or a case is judged on. Then, for an exit frame, the
 * rest of it (its place in the stream, what the job's keys add). Or
 * run->ex as the last exit frame of a job of `runs` or `tests`. */
void kiln__run_exit_of(struct kiln_run *run, enum kiln_status status, const char *reason);
void kiln__run_exit_complete(struct kiln_run *run);
void kiln__run_summary_of(struct kiln_run *run);
/* Write run->ex; kiln__run_exit_written() follows. */
void kiln__run_write_exit(struct kiln_run *run);
/* The job and every attempt's reason to the dead letters;
 * kiln__run_dead_written() follows, or -1 when it could not be queued. */
int kiln__run_write_dead(struct kiln_run *run);
/* Free what the run holds, and the run. */
void kiln__run_free(struct kiln_run *run);

/* ---- core/judge.c: builds and cases ------------------------------------------- */

/* Keep a chunk of a case's or a build's output; 0, or -1 out of memory. */
int kiln__run_keep_output(struct kiln_run *run, int fd, const void *data, size_t len);
/* The build's artifact (or why it did not come), from its agent. */
void kiln__run_keep_artifact(struct kiln_run *run, const struct kiln_link_event *ev);
/* Keep the current step's `collect` summary for its exit or case frame. */
void kiln__run_keep_collected(struct kiln_run *run, const void *data, size_t len);
void kiln__run_judge_reset(struct kiln_run *run);
void kiln__run_judge_free(struct kiln_run *run);
/* What a step that ended with `status` was. */
enum run_judged {
    JUDGED_NOTHING,      /* neither a build nor a case: the job's exit frame is due */
    JUDGED_BUILT,        /* a build that worked: the runs start */
    JUDGED_BUILD_FAILED, /* a build that did not: run->ex is the job's compile_error */
    JUDGED_CASE,         /* a case: its frame is written, kiln__run_case_written() follows */
};
enum run_judged kiln__run_judge(struct kiln_run *run, enum kiln_status status);
/* After a case: the rest skipped when stop_on_fail says so (their frames
 * written). Returns 1 when the job is over (then the summary follows). */
int kiln__run_skip_rest(struct kiln_run *run);

/* ---- core/control.c: stops from outside ----------------------------------------- */

/* Stop the job from outside for `why` (the first cause wins, but
 * STOP_RELEASE wins over all): its sandbox is killed, its end reports. */
void kiln__run_stop(struct kiln_run *run, enum run_stop why);
/* Whether a cancel for `id` came in the last ten minutes. */
int kiln__run_was_cancelled(struct kiln_worker *w, const char *id);

#endif
