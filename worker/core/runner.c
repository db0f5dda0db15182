/*
 * One job, from delivery to acknowledgement:
 *
 *   decode -> plugin plan -> spawn sandbox -> agent "ready" -> send "run"
 *   -> output frames as the agent forwards them -> agent "exit" (or the
 *   sandbox's death, a timeout, the output cap) -> exit frame written ->
 *   ack -> slot freed once the sandbox and every handle are gone.
 *
 * Bad input never gets past decode or plan: it becomes a "rejected" exit
 * frame and is acknowledged like any finished job.
 */
#include "core/runner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>

#include "sandbox/backend.h"
#include "core/chan.h"
#include "core/config.h"
#include "sandbox/egress.h"
#include "wire/frame.h"
#include "wire/job.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/plan.h"
#include "core/plugin_load.h"
#include "core/pool.h"
#include "wire/proto.h"
#include "core/sign.h"

struct kiln_run {
    struct kiln_run *next, *prev;  /* the worker's list */
    int abandoned;                 /* drain timed out: no frame, no ack */
    int dead;                      /* dead-lettered: its final frame now */
    int cancelled;                 /* a control message stopped it */
    struct kiln_worker *w;
    struct kiln_delivery *d;     /* until acknowledged */
    struct kiln_job *job;
    struct kiln_plan plan;
    struct kiln_sandbox *sb;     /* until it has exited */
    struct kiln_chan *chan;      /* until the agent's stream ends */
    struct kiln_egress *egress;  /* the job's way out, with net.allow */
    uv_timer_t timer;
    int timer_open;
    const char *dest;            /* where frames go */
    uint64_t seq;                /* the next frame's */
    uint64_t exit_seq;           /* the exit frame's, kept for a rewrite */
    uint64_t t_run;              /* when the run was sent (loop ms) */
    uint64_t t_heard;            /* the agent's last message (loop ms) */
    int hung;                    /* silent past --hang-ms: killed */
    int64_t out_bytes, out_cap;
    int timed_out, over_output, running;
    int exit_sent;
    struct kiln_exit ex;
    char reason[512];
    enum kiln_reject reject_class; /* when rejected */
    /* a job with `runs`: each input in its own sandbox, one after another */
    int cur;                     /* the input running now, or -1 */
    int runs_ok;
    int next_due;                /* an input's exit frame is in: start the next */
    struct kiln_exit total;      /* sums for the final summary frame */
    const struct kiln_plugin *plugin;
    /* retries of kiln's own failures */
    unsigned retries;            /* done so far in this worker */
    int retry_due;               /* the failed attempt's sandbox must go first */
    char *reasons[16];           /* every failed attempt's reason */
    unsigned nreasons;
    uv_timer_t backoff;
    int backoff_open;
};

static unsigned attempt_of(const struct kiln_run *run)
{
    return run->d->attempt + run->retries;
}

static int64_t job_memory_mb(const struct kiln_run *run)
{
    return run->job->limits.memory_mb > 0 ? run->job->limits.memory_mb : run->w->cfg->memory_mb;
}

/* The job's memory and pids, or the operator's defaults. */
static struct kiln_sandbox_limits sandbox_limits(const struct kiln_run *run)
{
    const struct kiln_limits *l = &run->job->limits;
    return (struct kiln_sandbox_limits){job_memory_mb(run) << 20, l->pids > 0 ? l->pids : run->w->cfg->pids};
}

static void maybe_free(struct kiln_run *run);
static int apply_limits(struct kiln_run *run, const struct kiln_sandbox_limits *sl);
static int was_cancelled(struct kiln_worker *w, const char *id);

static const char *job_id(const struct kiln_run *run)
{
    return run->job ? run->job->id : NULL;
}

/* ---- frames ---------------------------------------------------------- */

static void on_frame_written(void *arg, int status, const char *err)
{
    (void)arg;
    if (status < 0)
        kiln_warn("output frame not written: %s", err);
}

static void emit_output(struct kiln_run *run, int fd, const void *data, size_t len)
{
    msgpack_sbuffer sb;
    struct kiln_frame_info info = {fd == 2 ? "stderr" : "stdout", run->seq, attempt_of(run), run->d};
    kiln_metrics_output(fd, len);
    kiln_frame_output(&sb, job_id(run), run->seq++, attempt_of(run), fd, data, len, run->cur);
    run->w->src->ops->write(run->w->src, run->dest, job_id(run), sb.data, sb.size, &info,
                            on_frame_written, run);
    msgpack_sbuffer_destroy(&sb);
}

static void on_exit_written(void *arg, int status, const char *err);

static void write_exit(struct kiln_run *run)
{
    if (run->abandoned) {
        /* not finished here: its entry stays unacknowledged for another */
        run->w->src->ops->release(run->w->src, run->d);
        run->d = NULL;
        maybe_free(run);
        return;
    }
    msgpack_sbuffer sb;
    struct kiln_frame_info info = {"exit", run->exit_seq, run->ex.attempt, run->d};
    kiln_frame_exit(&sb, job_id(run), run->exit_seq, &run->ex);
    run->w->src->ops->write(run->w->src, run->dest, job_id(run), sb.data, sb.size, &info,
                            on_exit_written, run);
    msgpack_sbuffer_destroy(&sb);
}

/* A bounded label for a rejection's reason. */
static void on_exit_written(void *arg, int status, const char *err)
{
    struct kiln_run *run = arg;
    const struct kiln_config *cfg = run->w->cfg;
    if (status < 0 && strcmp(run->dest, cfg->results) != 0) {
        /* reply_to refused the frame (wrong type, say): the result still
         * goes somewhere a user can find it. */
        kiln_warn("job %s: exit frame refused by %s (%s); writing it to %s",
                  job_id(run) ? job_id(run) : "-", run->dest, err, cfg->results);
        run->dest = cfg->results;
        write_exit(run);
        return;
    }
    if (status < 0)
        kiln_error("job %s: exit frame refused by %s: %s", job_id(run) ? job_id(run) : "-",
                   run->dest, err);
    kiln_metrics_job_finished(run->plugin ? run->plugin->name : NULL, run->ex.status,
                              run->ex.wall_ms / 1000.0);
    if (strcmp(run->ex.status, KILN_ST_REJECTED) == 0)
        kiln_metrics_rejected(run->reject_class);
    if (run->ex.run >= 0) {
        /* one input of `runs` is done: sum it up, then the next (or the
         * summary) once its sandbox is gone */
        run->runs_ok += strcmp(run->ex.status, KILN_ST_OK) == 0;
        run->total.wall_ms += run->ex.wall_ms;
        run->total.cpu_ms += run->ex.cpu_ms;
        if (run->ex.max_rss_kb > run->total.max_rss_kb)
            run->total.max_rss_kb = run->ex.max_rss_kb;
        run->next_due = 1;
        maybe_free(run);
        return;
    }
    kiln_log_job(KILN_LOG_INFO, job_id(run), run->plugin ? run->plugin->name : NULL, run->ex.attempt,
                 "job %s attempt %u: %s%s%s (%lld ms)", job_id(run) ? job_id(run) : "-",
                 run->ex.attempt, run->ex.status, run->ex.reason ? ": " : "",
                 run->ex.reason ? run->ex.reason : "", (long long)run->ex.wall_ms);
    run->w->src->ops->ack(run->w->src, run->d);
    run->d = NULL;
    maybe_free(run);
}

static void dead_letter(struct kiln_run *run);

/* kiln itself failed this attempt: try again later, or give up. Returns 1
 * when the failure was taken care of (no exit frame for this attempt). */
static int retry_or_dead_letter(struct kiln_run *run, const char *reason)
{
    const struct kiln_config *cfg = run->w->cfg;
    if (run->job == NULL || run->plugin == NULL || run->abandoned || run->w->draining ||
        run->cur >= 0)
        return 0; /* undecodable, a drain, or a job with runs: report as is */
    if (run->nreasons < sizeof(run->reasons) / sizeof(run->reasons[0]))
        run->reasons[run->nreasons++] = strdup(reason ? reason : "internal failure");
    if (attempt_of(run) >= (unsigned)cfg->max_attempts) {
        dead_letter(run);
        return 1;
    }
    kiln_log_job(KILN_LOG_WARN, run->job->id, run->plugin->name, attempt_of(run),
                 "job %s attempt %u failed in kiln (%s); retrying", run->job->id, attempt_of(run),
                 reason ? reason : "?");
    if (run->sb != NULL)
        run->sb->backend->ops->kill(run->sb);
    if (run->timer_open)
        uv_timer_stop(&run->timer);
    run->retry_due = 1; /* maybe_free starts the backoff once the sandbox is gone */
    return 1;
}

/* The job has ended with `status`: stop what runs and write the exit frame. */
static void finish(struct kiln_run *run, const char *status, const char *reason)
{
    if (run->exit_sent)
        return;
    if (strcmp(status, KILN_ST_INTERNAL) == 0 && !run->cancelled && !run->timed_out &&
        !run->over_output && !run->dead && retry_or_dead_letter(run, reason)) {
        run->exit_sent = 1;
        return;
    }
    run->exit_sent = 1;
    if (run->cancelled)
        status = KILN_ST_CANCELLED, reason = "cancelled through the control stream";
    else if (run->timed_out)
        status = KILN_ST_TIMEOUT;
    else if (run->over_output)
        status = KILN_ST_OUTPUT_LIMIT;
    run->ex.status = status;
    if (reason != NULL && reason != run->reason)
        snprintf(run->reason, sizeof(run->reason), "%s", reason);
    run->ex.reason = reason ? run->reason : NULL;
    run->ex.attempt = attempt_of(run);
    run->ex.worker = run->w->cfg->consumer;
    run->ex.run = run->cur;
    if (run->egress != NULL)
        run->ex.denied = kiln_egress_denied(run->egress, &run->ex.ndenied);
    run->ex.runs_ok = -1;
    /* meta once per job: in its last exit frame, not in every input's */
    if (run->job != NULL && run->job->meta != NULL && run->cur < 0) {
        run->ex.meta = run->job->meta;
        run->ex.meta_len = run->job->meta_len;
    }
    if (run->sb != NULL)
        run->sb->backend->ops->kill(run->sb);
    if (run->timer_open)
        uv_timer_stop(&run->timer);
    run->exit_seq = run->seq++;
    write_exit(run);
}

static void on_dead_written(void *arg, int status, const char *err)
{
    struct kiln_run *run = arg;
    char reason[512];
    if (status < 0) /* not recorded: leave the job pending rather than lose it */
        kiln_error("job %s: dead-letter write failed (%s); leaving it unacknowledged",
                   run->job->id, err);
    snprintf(reason, sizeof(reason), "kiln failed this job %u times; last: %s", run->nreasons,
             run->nreasons ? run->reasons[run->nreasons - 1] : "?");
    if (status < 0) {
        run->abandoned = 1;
        run->w->src->ops->release(run->w->src, run->d);
        run->d = NULL;
        maybe_free(run);
        return;
    }
    run->exit_sent = 0;
    run->dead = 1;
    finish(run, KILN_ST_INTERNAL, reason);
}

/* Past --max-attempts: the job and every attempt's reason go to the dead
 * letters; then its reply_to gets a final internal frame and it is acked. */
static void dead_letter(struct kiln_run *run)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct kiln_frame_info info = {"dead", 0, attempt_of(run), run->d};
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    kiln_mp_str(&pk, "id");
    kiln_mp_str(&pk, run->job->id);
    kiln_mp_str(&pk, "attempts");
    msgpack_pack_unsigned_int(&pk, attempt_of(run));
    kiln_mp_str(&pk, "reasons");
    msgpack_pack_array(&pk, run->nreasons);
    for (unsigned i = 0; i < run->nreasons; i++)
        kiln_mp_str(&pk, run->reasons[i]);
    kiln_mp_str(&pk, "worker");
    kiln_mp_str(&pk, run->w->cfg->consumer);
    kiln_mp_str(&pk, "job");
    kiln_mp_bin(&pk, run->d->data, run->d->len);
    kiln_log_job(KILN_LOG_ERROR, run->job->id, run->plugin->name, attempt_of(run),
                 "job %s: %u attempts failed in kiln; to the dead letters (%s)", run->job->id,
                 attempt_of(run), run->w->cfg->dead_letters);
    if (run->sb != NULL)
        run->sb->backend->ops->kill(run->sb);
    if (run->timer_open)
        uv_timer_stop(&run->timer);
    run->w->src->ops->write(run->w->src, run->w->cfg->dead_letters, run->job->id, sb.data, sb.size,
                            &info, on_dead_written, run);
    msgpack_sbuffer_destroy(&sb);
}

static void reject(struct kiln_run *run, enum kiln_reject why, const char *reason)
{
    run->reject_class = why;
    finish(run, KILN_ST_REJECTED, reason);
}

/* ---- agent channel --------------------------------------------------- */

static void start_timer(struct kiln_run *run, int64_t timeout);

static void send_run(struct kiln_run *run)
{
    struct kiln_job *job = run->job;
    struct kiln_plan *plan = &run->plan;
    const struct kiln_config *cfg = run->w->cfg;
    struct kiln_sandbox_limits sl = sandbox_limits(run);
    int r = apply_limits(run, &sl);
    if (r < 0) {
        if (r == -ENOTSUP)
            reject(run, KILN_REJECT_LIMITS, run->reason);
        else
            finish(run, KILN_ST_INTERNAL, run->reason);
        return;
    }
    int proxy = job->has_net && job->nnet > 0 && run->sb->proxy_dir != NULL;
    if (job->has_net && job->nnet > 0 && run->sb->proxy_dir == NULL) {
        reject(run, KILN_REJECT_OTHER, "this backend offers no network path for net.allow");
        return;
    }
    if (proxy) {
        char path[600];
        snprintf(path, sizeof(path), "%s/p.sock", run->sb->proxy_dir);
        if (kiln_egress_open(run->w->loop, path, (const char *const *)job->net_allow, job->nnet,
                             cfg->net_private_ok, &run->egress) < 0) {
            finish(run, KILN_ST_INTERNAL, "could not open the egress proxy");
            return;
        }
        static const char *vars[] = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"};
        for (size_t i = 0; i < 4; i++)
            kiln_plan_env(plan, vars[i], KILN_PROXY_URL);
    }
    int64_t cpu_ms = job->limits.cpu_ms > 0 ? job->limits.cpu_ms : cfg->cpu_ms;
    int64_t fsize = job->limits.file_bytes >= 0 ? job->limits.file_bytes : cfg->file_bytes;
    msgpack_packer pk;
    msgpack_sbuffer sb;
    kiln_proto_begin_msg(&sb, &pk, "run", 8);
    /* for agents that enforce them (a VM's); a jail's are on the host */
    kiln_mp_str(&pk, "limits");
    msgpack_pack_map(&pk, 2);
    kiln_mp_str(&pk, "memory_bytes");
    msgpack_pack_int64(&pk, sl.memory_bytes);
    kiln_mp_str(&pk, "pids");
    msgpack_pack_int64(&pk, sl.pids);
    kiln_mp_str(&pk, "proxy");
    if (proxy)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    /* per process, by the kernel: CPU seconds (SIGXCPU), file size
     * (SIGXFSZ), open descriptors */
    kiln_mp_str(&pk, "rlimits");
    msgpack_pack_map(&pk, 3);
    kiln_mp_str(&pk, "cpu");
    msgpack_pack_int64(&pk, cpu_ms > 0 ? (cpu_ms + 999) / 1000 : 0);
    kiln_mp_str(&pk, "fsize");
    msgpack_pack_int64(&pk, fsize);
    kiln_mp_str(&pk, "nofile");
    msgpack_pack_int64(&pk, cfg->open_files);
    kiln_plan_pack_command(&pk, plan);
    kiln_mp_str(&pk, "cwd");
    kiln_mp_str(&pk, "/work");
    kiln_mp_str(&pk, "files");
    msgpack_pack_array(&pk, plan->nfiles);
    for (size_t i = 0; i < plan->nfiles; i++) {
        msgpack_pack_array(&pk, 3);
        kiln_mp_str(&pk, plan->files[i].path);
        kiln_mp_bin(&pk, plan->files[i].data, plan->files[i].len);
        msgpack_pack_unsigned_int(&pk, plan->files[i].mode);
    }
    const unsigned char *in = job->stdin_data;
    size_t in_len = job->stdin_len;
    if (run->cur >= 0) {
        in = job->runs[run->cur].stdin_data;
        in_len = job->runs[run->cur].stdin_len;
    }
    kiln_mp_str(&pk, "stdin");
    if (in != NULL)
        kiln_mp_bin(&pk, in, in_len);
    else
        msgpack_pack_nil(&pk);
    if (kiln_chan_send(run->chan, &sb) < 0) {
        finish(run, KILN_ST_INTERNAL, "could not send the job to the sandbox");
        return;
    }
    run->running = 1;
    run->t_run = run->t_heard = uv_now(run->w->loop);
    /* the job's time starts with its run: a cold sandbox's start-up is
     * kiln's (a start-up that never ends is a hang: --hang-ms) */
    const struct kiln_limits *l = &run->job->limits;
    start_timer(run, l->timeout_ms > 0 ? l->timeout_ms : run->w->cfg->timeout_ms);
}

static void on_timeout(uv_timer_t *t)
{
    struct kiln_run *run = t->data;
    run->timed_out = 1;
    if (run->sb != NULL)
        run->sb->backend->ops->kill(run->sb); /* the exit frame follows its death */
}

static void on_output(struct kiln_run *run, const msgpack_object *m)
{
    const msgpack_object *fd = kiln_mp_get(m, "fd"), *data = kiln_mp_get(m, "data");
    if (run->exit_sent || run->over_output || fd == NULL || data == NULL ||
        data->type != MSGPACK_OBJECT_BIN)
        return;
    size_t len = data->via.bin.size;
    if ((int64_t)len > run->out_cap - run->out_bytes) {
        /* cut at the cap, stop the job; its exit frame says output_limit */
        len = (size_t)(run->out_cap - run->out_bytes);
        run->over_output = 1;
        run->sb->backend->ops->kill(run->sb);
    }
    run->out_bytes += (int64_t)len;
    if (len > 0)
        emit_output(run, fd->via.u64 == 2 ? 2 : 1, data->via.bin.ptr, len);
}

/* What the kernel says of the sandbox: peak memory, and whether the memory
 * limit killed something (then the job ends "oom", whatever it exited with). */
static int kernel_accounting(struct kiln_run *run, int64_t peak_kb, int64_t oom_kills)
{
    if (peak_kb > 0)
        run->ex.max_rss_kb = peak_kb;
    if (oom_kills > 0) {
        snprintf(run->reason, sizeof(run->reason), "the memory limit (%lld MiB) was reached",
                 (long long)(run->job->limits.memory_mb > 0 ? run->job->limits.memory_mb
                                                            : run->w->cfg->memory_mb));
        return 1;
    }
    return 0;
}

static void on_agent_exit(struct kiln_run *run, const msgpack_object *m)
{
    const msgpack_object *o;
    int64_t v, peak = -1, oom = 0;
    run->ex.wall_ms = (o = kiln_mp_get(m, "wall_ms")) && kiln_mp_int(o, 0, INT64_MAX, &v) == 0 ? v : 0;
    run->ex.cpu_ms = (o = kiln_mp_get(m, "cpu_ms")) && kiln_mp_int(o, 0, INT64_MAX, &v) == 0 ? v : 0;
    run->ex.max_rss_kb = (o = kiln_mp_get(m, "max_rss_kb")) && kiln_mp_int(o, 0, INT64_MAX, &v) == 0 ? v : 0;
    if (run->sb != NULL && run->sb->backend->ops->stats != NULL)
        run->sb->backend->ops->stats(run->sb, &peak, &oom);
    if (run->sb != NULL && run->sb->backend->ops->agent_limits) {
        /* a VM: the guest kernel's accounting, as its agent read it */
        if ((o = kiln_mp_get(m, "peak_kb")) != NULL && kiln_mp_int(o, 0, INT64_MAX, &v) == 0)
            peak = v;
        if ((o = kiln_mp_get(m, "oom_kills")) != NULL && kiln_mp_int(o, 0, INT64_MAX, &v) == 0)
            oom = v;
    }
    if ((o = kiln_mp_get(m, "signal")) != NULL && kiln_mp_int(o, 1, 128, &v) == 0)
        run->ex.signal = (int)v;
    if ((o = kiln_mp_get(m, "code")) != NULL && kiln_mp_int(o, 0, 255, &v) == 0) {
        run->ex.has_code = 1;
        run->ex.code = (int)v;
    }
    if (kernel_accounting(run, peak, oom)) {
        finish(run, KILN_ST_OOM, run->reason);
        return;
    }
    if (run->ex.signal == SIGXCPU || run->ex.signal == SIGXFSZ) {
        finish(run, KILN_ST_KILLED, run->ex.signal == SIGXCPU ? "the cpu_ms limit was reached"
                                                              : "the file_bytes limit was reached");
        return;
    }
    if (run->ex.has_code) {
        finish(run, run->ex.code == 0 ? KILN_ST_OK : KILN_ST_ERROR, NULL);
    } else if (run->ex.signal) {
        finish(run, KILN_ST_KILLED, NULL);
    } else {
        finish(run, KILN_ST_INTERNAL, "the agent reported an exit without code or signal");
    }
}

static void on_agent_msg(void *arg, const msgpack_object *m)
{
    struct kiln_run *run = arg;
    const msgpack_object *t = kiln_mp_get(m, "t"), *o;
    if (t == NULL)
        return;
    run->t_heard = uv_now(run->w->loop);
    if (kiln_mp_streq(t, "ready")) {
        char why[160];
        if (kiln_proto_check_ready(m, why, sizeof(why)) < 0) {
            kiln_error("job %s: %s (another kiln-agent build?)", job_id(run), why);
            finish(run, KILN_ST_INTERNAL, why);
        } else if (!run->running && !run->exit_sent) {
            send_run(run);
        }
    } else if (kiln_mp_streq(t, "out")) {
        on_output(run, m);
    } else if (kiln_mp_streq(t, "exit")) {
        on_agent_exit(run, m);
    } else if (kiln_mp_streq(t, "error")) {
        char *why = (o = kiln_mp_get(m, "reason")) ? kiln_mp_strdup(o) : NULL;
        /* the job's own input was why (its files do not fit, say): its
         * error, not kiln's, and not retried */
        int job = (o = kiln_mp_get(m, "fault")) != NULL && kiln_mp_streq(o, "job");
        snprintf(run->reason, sizeof(run->reason), "%s%s", job ? "" : "sandbox: ", why ? why : "unknown error");
        free(why);
        finish(run, job ? KILN_ST_ERROR : KILN_ST_INTERNAL, run->reason);
    }
}

static void on_agent_end(void *arg, int status)
{
    struct kiln_run *run = arg;
    /* EOF: the sandbox is going; its exit decides what is reported */
    if (status < 0 && status != UV_ECONNRESET)
        finish(run, KILN_ST_INTERNAL, "the sandbox sent a malformed message");
    kiln_chan_close(run->chan);
    run->chan = NULL;
    maybe_free(run);
}

/* ---- sandbox --------------------------------------------------------- */

static void on_sandbox_exit(struct kiln_sandbox *sb)
{
    struct kiln_run *run = sb->arg;
    run->sb = NULL;
    if (!run->exit_sent) {
        const struct rusage *ru = &sb->ru;
        run->ex.wall_ms = run->running ? (int64_t)(uv_now(run->w->loop) - run->t_run) : 0;
        run->ex.cpu_ms = (ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000 +
                         (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1000;
        run->ex.max_rss_kb = ru->ru_maxrss;
        if (kernel_accounting(run, sb->peak_kb, sb->oom_kills)) {
            finish(run, KILN_ST_OOM, run->reason);
        } else if (run->hung) {
            snprintf(run->reason, sizeof(run->reason),
                     "the sandbox stopped answering for %lld ms (a hung VM?): killed",
                     (long long)run->w->cfg->hang_ms);
            finish(run, KILN_ST_INTERNAL, run->reason);
        } else if (run->timed_out || run->over_output) {
            finish(run, KILN_ST_KILLED, NULL); /* finish() names the cause */
        } else {
            snprintf(run->reason, sizeof(run->reason),
                     "the sandbox ended before reporting an exit (%s %d)",
                     WIFSIGNALED(sb->wstatus) ? "signal" : "status",
                     WIFSIGNALED(sb->wstatus) ? WTERMSIG(sb->wstatus) : WEXITSTATUS(sb->wstatus));
            finish(run, KILN_ST_INTERNAL, run->reason);
        }
    }
    maybe_free(run);
}

/* The agent's channel is there (at once, or once a VM is set up). */
static void on_sandbox_chan(struct kiln_sandbox *sb)
{
    struct kiln_run *run = sb->arg;
    int fd = sb->fd;
    sb->fd = -1;
    if (kiln_chan_open(run->w->loop, fd, on_agent_msg, on_agent_end, run, &run->chan) < 0)
        finish(run, KILN_ST_INTERNAL, "could not watch the sandbox channel");
}

static void on_timer_closed(uv_handle_t *h)
{
    struct kiln_run *run = h->data;
    run->timer_open = 0;
    maybe_free(run);
}

/* ---- planning -------------------------------------------------------- */



static int build_plan(struct kiln_run *run, const struct kiln_plugin *p,
                      struct kiln_job_view *view)
{
    struct kiln_job *job = run->job;
    struct kiln_plan *plan = &run->plan;
    const struct kiln_config *cfg = run->w->cfg;
    char attempt[16];
    int r;

    kiln_plan_init(plan, (size_t)cfg->max_job_bytes * 2 + (1u << 20));
    snprintf(attempt, sizeof(attempt), "%u", attempt_of(run));
    if ((r = kiln_plan_env(plan, "PATH", "/usr/local/bin:/usr/bin:/bin")) < 0 ||
        (r = kiln_plan_env(plan, "HOME", "/work")) < 0 ||
        (r = kiln_plan_env(plan, "TMPDIR", "/tmp")) < 0 ||
        (r = kiln_plan_env(plan, "LANG", "C.UTF-8")) < 0 ||
        (r = kiln_plan_env(plan, "KILN_JOB_ID", job->id)) < 0 ||
        (r = kiln_plan_env(plan, "KILN_ATTEMPT", attempt)) < 0)
        return r;

    *view = (struct kiln_job_view){
        .size = sizeof(*view),
        .id = job->id,
        .plugin = job->plugin,
        .code = job->code,
        .code_len = job->code_len,
        .args = (const char *const *)job->args,
        .nargs = job->nargs,
        .env = job->env,
        .nenv = job->nenv,
        .attempt = attempt_of(run),
        .has_net = job->has_net,
        .net_allow = (const char *const *)job->net_allow,
        .nnet = job->nnet,
    };
    if (run->cur >= 0 && job->runs[run->cur].has_args) {
        view->args = (const char *const *)job->runs[run->cur].args;
        view->nargs = job->runs[run->cur].nargs;
    }
    if ((r = p->plan(kiln_plan_host(), view, plan)) < 0)
        return r;
    if (plan->argc == 0)
        return kiln_plan_reject(plan, "the plugin made an empty plan");
    size_t plugin_files = plan->nfiles;
    for (size_t i = 0; i < job->nfiles; i++) {
        for (size_t k = 0; k < plugin_files; k++)
            if (strcmp(plan->files[k].path, job->files[i].path) == 0) {
                snprintf(plan->reject, sizeof(plan->reject),
                         "file '%.200s' is written by the %s plugin", job->files[i].path, p->name);
                return -EINVAL;
            }
        if ((r = kiln_plan_file(plan, job->files[i].path, job->files[i].data,
                                job->files[i].len, 0644)) < 0)
            return r;
    }
    for (size_t i = 0; i < job->nenv; i++) {
        if (kiln_plan_env_denied(job->env[i].key)) {
            snprintf(plan->reject, sizeof(plan->reject), "env '%.64s' may not be set by a job: it "
                     "changes how the program or its runtime loads code", job->env[i].key);
            return -EINVAL;
        }
        if ((r = kiln_plan_env(plan, job->env[i].key, job->env[i].value)) < 0)
            return r;
    }
    return kiln_plan_check(plan, plan->reject, sizeof(plan->reject));
}

/* The most `meta` a job may carry: kiln echoes it once, in the job's last
 * exit frame. */
#define KILN_META_MAX (64 * 1024)

/* Check the job against the operator's limits. */
static int check_limits(struct kiln_run *run, char *why, size_t len)
{
    const struct kiln_config *cfg = run->w->cfg;
    const struct kiln_limits *l = &run->job->limits;
    if (l->timeout_ms > cfg->max_timeout_ms) {
        snprintf(why, len, "limits.timeout_ms %lld is over this worker's maximum of %lld",
                 (long long)l->timeout_ms, (long long)cfg->max_timeout_ms);
        return -EINVAL;
    }
    if (l->output_bytes > cfg->max_output_bytes) {
        snprintf(why, len, "limits.output_bytes %lld is over this worker's maximum of %lld",
                 (long long)l->output_bytes, (long long)cfg->max_output_bytes);
        return -EINVAL;
    }
    static const struct { const char *name; size_t job, max; } caps[] = {
        {"memory_mb", offsetof(struct kiln_limits, memory_mb), offsetof(struct kiln_config, max_memory_mb)},
        {"pids", offsetof(struct kiln_limits, pids), offsetof(struct kiln_config, max_pids)},
        {"cpu_ms", offsetof(struct kiln_limits, cpu_ms), offsetof(struct kiln_config, max_cpu_ms)},
        {"file_bytes", offsetof(struct kiln_limits, file_bytes), offsetof(struct kiln_config, max_file_bytes)},
    };
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        int64_t asked = *(const int64_t *)((const char *)l + caps[i].job);
        int64_t max = *(const int64_t *)((const char *)cfg + caps[i].max);
        if (asked > max) {
            snprintf(why, len, "limits.%s %lld is over this worker's maximum of %lld", caps[i].name,
                     (long long)asked, (long long)max);
            return -EINVAL;
        }
    }
    if (run->job->meta_len > KILN_META_MAX) {
        snprintf(why, len, "meta is %zu bytes: at most %d", run->job->meta_len, KILN_META_MAX);
        return -E2BIG;
    }
    run->out_cap = l->output_bytes >= 0 ? l->output_bytes : cfg->output_bytes;
    return 0;
}

/* The job's memory and pids limits on its sandbox, before it runs. */
static int apply_limits(struct kiln_run *run, const struct kiln_sandbox_limits *sl)
{
    const struct kiln_limits *l = &run->job->limits;
    int r = run->sb->backend->ops->limit ? run->sb->backend->ops->limit(run->sb, sl) : -ENOTSUP;
    if (r == -ENOTSUP && l->memory_mb < 0 && l->pids < 0)
        return 0; /* nothing asked; the startup log says limits are not enforced */
    if (r < 0) {
        snprintf(run->reason, sizeof(run->reason), r == -ENOTSUP
                 ? "this worker cannot enforce limits.memory_mb or limits.pids (no usable cgroups)"
                 : "setting the sandbox's limits failed: %s", strerror(-r));
        return r;
    }
    return 0;
}

static void start_timer(struct kiln_run *run, int64_t timeout)
{
    if (!run->timer_open) {
        uv_timer_init(run->w->loop, &run->timer);
        run->timer.data = run;
        run->timer_open = 1;
    }
    uv_timer_start(&run->timer, on_timeout, (uint64_t)timeout, 0);
}

static void start_one(struct kiln_run *run);

static void start(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    const struct kiln_config *cfg = w->cfg;
    struct kiln_delivery *d = run->d;
    char err[512];
    int r;

    if (d->data == NULL) {
        reject(run, KILN_REJECT_INVALID, d->missing ? d->missing : "the queue entry holds no job");
        return;
    }
    r = kiln_job_decode(d->data, d->len, &run->job, err, sizeof(err));
    if (r == -ENOMEM) {
        finish(run, KILN_ST_INTERNAL, "out of memory decoding the job");
        return;
    }
    if (run->job != NULL && run->job->reply_to != NULL)
        run->dest = run->job->reply_to;
    if (d->len > (size_t)cfg->max_job_bytes) {
        snprintf(err, sizeof(err), "job is %zu bytes, over this worker's limit of %lld",
                 d->len, (long long)cfg->max_job_bytes);
        reject(run, KILN_REJECT_TOO_LARGE, err);
        return;
    }
    if (r < 0) {
        reject(run, run->job != NULL && run->job->not_msgpack ? KILN_REJECT_NOT_MSGPACK : KILN_REJECT_INVALID, err);
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (was_cancelled(w, run->job->id)) {
        run->cancelled = 1;
        finish(run, KILN_ST_CANCELLED, NULL);
        return;
    }
    if (run->job->deadline >= 0 && run->job->deadline < now_ms) {
        snprintf(err, sizeof(err), "its deadline passed %lld ms before it could start",
                 (long long)(now_ms - run->job->deadline));
        finish(run, KILN_ST_EXPIRED, err);
        return;
    }
    if (cfg->require_signature) {
        if ((r = kiln_keys_refresh(w->keys, err, sizeof(err))) < 0)
            kiln_error("%s; keeping the keys read before", err);
        else if (r > 0)
            kiln_info("keys file %s re-read: %zu key(s)", cfg->keys_file, w->keys->n);
        if (kiln_sign_check(d->data, d->len, w->keys, now_ms, err, sizeof(err)) < 0) {
            reject(run, KILN_REJECT_SIGNATURE, err);
            return;
        }
    }
    const struct kiln_plugin *p = kiln_plugins_find(w->plugins, run->job->plugin);
    if (p == NULL) {
        char names[256];
        kiln_plugins_names(w->plugins, names, sizeof(names));
        snprintf(err, sizeof(err), "unknown plugin '%.64s' (this worker has: %s)",
                 run->job->plugin, names);
        reject(run, KILN_REJECT_UNKNOWN_PLUGIN, err);
        return;
    }
    if ((r = check_limits(run, err, sizeof(err))) < 0) {
        reject(run, r == -E2BIG ? KILN_REJECT_TOO_LARGE : KILN_REJECT_LIMITS, err);
        return;
    }
    run->plugin = p;
    if (d->attempt > (unsigned)cfg->max_attempts) {
        char why[160];
        snprintf(why, sizeof(why), "delivered %u times: the workers running it stopped mid-job", d->attempt);
        run->reasons[run->nreasons++] = strdup(why);
        dead_letter(run);
        return;
    }
    if (run->job->nruns > 0)
        run->cur = 0;
    if (d->enqueued_ms > 0 && now_ms >= d->enqueued_ms)
        kiln_metrics_queue_wait((now_ms - d->enqueued_ms) / 1000.0);
    start_one(run);
}

/* Start the job, or its current input of `runs`, in a sandbox. */
static void start_one(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    const struct kiln_plugin *p = run->plugin;
    struct kiln_delivery *d = run->d;
    char err[512];
    int r;
    struct kiln_job_view view;
    if ((r = build_plan(run, p, &view)) < 0) {
        if (r == -ENOMEM)
            finish(run, KILN_ST_INTERNAL, "out of memory planning the job");
        else
            reject(run, r == -E2BIG ? KILN_REJECT_TOO_LARGE : KILN_REJECT_INVALID,
                   run->plan.reject[0] ? run->plan.reject : "the plugin refused the job");
        return;
    }
    struct kiln_warm_take warm;
    struct kiln_spawn_opts needs = {job_memory_mb(run), run->job->has_net && run->job->nnet > 0};
    if (kiln_pool_take(w->pool, p, run->plan.profile, &view, &needs, &warm)) {
        /* warm: the sandbox is up and its agent (and interpreter) wait */
        run->sb = warm.sb;
        run->sb->on_exit = on_sandbox_exit;
        run->sb->arg = run;
        run->chan = warm.chan;
        run->chan->on_msg = on_agent_msg;
        run->chan->on_end = on_agent_end;
        run->chan->arg = run;
        kiln_log_job(KILN_LOG_INFO, run->job->id, p->name, d->attempt,
                     "job %s attempt %u: started (%s, warm, from %s%s)", run->job->id, d->attempt,
                     p->name, d->ref, run->cur > 0 ? ", next input" : "");
        kiln_metrics_job_started(p->name);
        send_run(run);
        return;
    }
    if ((r = w->backend->ops->spawn(w->backend, run->plan.profile, &needs, &run->sb,
                                     err, sizeof(err))) < 0) {
        char why[600];
        snprintf(why, sizeof(why), "sandbox failed to start: %s", err);
        kiln_error("job %s: %s", run->job->id, why);
        finish(run, KILN_ST_INTERNAL, why);
        return;
    }
    run->sb->on_exit = on_sandbox_exit;
    run->sb->arg = run;
    run->t_heard = uv_now(w->loop); /* silent from now on: it never came up */
    kiln_log_job(KILN_LOG_INFO, run->job->id, p->name, d->attempt,
                 "job %s attempt %u: started (%s, from %s%s)", run->job->id, d->attempt, p->name,
                 d->ref, run->cur > 0 ? ", next input" : "");
    kiln_metrics_job_started(p->name);

    run->sb->on_chan = on_sandbox_chan;
    if (run->sb->fd >= 0)
        on_sandbox_chan(run->sb);
}

/* The final frame of a job with `runs`: how many inputs ended ok. */
static void write_summary(struct kiln_run *run)
{
    struct kiln_exit *e = &run->ex;
    memset(e, 0, sizeof(*e));
    e->status = run->runs_ok == (int)run->job->nruns ? KILN_ST_OK : KILN_ST_ERROR;
    e->wall_ms = run->total.wall_ms;
    e->cpu_ms = run->total.cpu_ms;
    e->max_rss_kb = run->total.max_rss_kb;
    e->attempt = attempt_of(run);
    e->worker = run->w->cfg->consumer;
    e->meta = run->job->meta;
    e->meta_len = run->job->meta_len;
    e->run = -1;
    e->runs_total = (int)run->job->nruns;
    e->runs_ok = run->runs_ok;
    run->exit_seq = run->seq++;
    write_exit(run);
}

static void close_egress(struct kiln_run *run)
{
    if (run->egress != NULL) {
        kiln_egress_close(run->egress);
        run->egress = NULL;
    }
}

/* Forget one sandbox's run (an input of runs, or a failed attempt) and
 * start the job again in a fresh sandbox. */
static void start_again(struct kiln_run *run)
{
    close_egress(run);
    run->exit_sent = run->timed_out = run->over_output = run->running = run->hung = 0;
    run->reason[0] = '\0';
    memset(&run->ex, 0, sizeof(run->ex));
    kiln_plan_free(&run->plan);
    start_one(run);
}

static void start_next(struct kiln_run *run)
{
    run->next_due = 0;
    if (++run->cur >= (int)run->job->nruns) {
        close_egress(run);
        run->cur = -1;
        write_summary(run);
        return;
    }
    start_again(run);
}

static void on_backoff(uv_timer_t *t)
{
    struct kiln_run *run = t->data;
    run->retries++;
    run->out_bytes = 0; /* a new attempt's output; a job's inputs share one cap */
    start_again(run);
}

static void start_backoff(struct kiln_run *run)
{
    const struct kiln_config *cfg = run->w->cfg;
    uint64_t delay = (uint64_t)cfg->retry_backoff_ms << (run->retries < 10 ? run->retries : 10);
    if (delay > 30000)
        delay = 30000;
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = uv_hrtime(); /* each worker its own jitter, never one shared sequence */
    delay = delay / 2 + r % (delay / 2 + 1); /* jitter: [d/2, d] */
    run->retry_due = 0;
    if (!run->backoff_open) {
        uv_timer_init(run->w->loop, &run->backoff);
        run->backoff.data = run;
        run->backoff_open = 1;
    }
    uv_timer_start(&run->backoff, on_backoff, delay, 0);
}

static void on_backoff_closed(uv_handle_t *h)
{
    struct kiln_run *run = h->data;
    run->backoff_open = 0;
    maybe_free(run);
}

static void maybe_free(struct kiln_run *run)
{
    if (run->next_due && run->sb == NULL && run->chan == NULL) {
        start_next(run);
        return;
    }
    if (run->retry_due && run->sb == NULL && run->chan == NULL) {
        if (run->w->draining) { /* no retry now: leave it for another worker */
            run->retry_due = 0;
            run->abandoned = 1;
            run->w->src->ops->release(run->w->src, run->d);
            run->d = NULL;
        } else {
            start_backoff(run);
            return;
        }
    }
    if (run->d != NULL || run->sb != NULL || run->chan != NULL)
        return;
    if (run->timer_open == 1) {
        run->timer_open = 2;
        uv_close((uv_handle_t *)&run->timer, on_timer_closed);
        return;
    }
    if (run->timer_open)
        return;
    if (run->backoff_open == 1) {
        run->backoff_open = 2;
        uv_close((uv_handle_t *)&run->backoff, on_backoff_closed);
        return;
    }
    if (run->backoff_open)
        return;
    struct kiln_worker *w = run->w;
    close_egress(run);
    if (run->prev)
        run->prev->next = run->next;
    else
        w->runs = run->next;
    if (run->next)
        run->next->prev = run->prev;
    if (!run->abandoned)
        w->finished++;
    kiln_job_free(run->job);
    kiln_plan_free(&run->plan);
    for (unsigned i = 0; i < run->nreasons; i++)
        free(run->reasons[i]);
    free(run);
    w->busy--;
    if (!w->draining)
        w->src->ops->credit(w->src, 1);
}

void kiln_worker_abandon(struct kiln_worker *w)
{
    for (struct kiln_run *run = w->runs; run != NULL; run = run->next) {
        if (run->exit_sent && run->cur < 0)
            continue; /* its exit frame is on the way: let it be acked */
        run->abandoned = 1;
        kiln_info("job %s: stopped unfinished by the drain; it will be delivered again",
                  job_id(run) ? job_id(run) : run->d ? run->d->ref : "-");
        if (run->sb != NULL)
            run->sb->backend->ops->kill(run->sb);
    }
}

#define CANCEL_MEMORY_MS (10 * 60 * 1000)

static int was_cancelled(struct kiln_worker *w, const char *id)
{
    uint64_t now = uv_now(w->loop);
    for (unsigned i = 0; i < sizeof(w->cancelled) / sizeof(w->cancelled[0]); i++)
        if (w->cancelled[i].id[0] && now - w->cancelled[i].at < CANCEL_MEMORY_MS &&
            strcmp(w->cancelled[i].id, id) == 0)
            return 1;
    return 0;
}

void kiln_worker_on_cancel(void *arg, const char *id)
{
    struct kiln_worker *w = arg;
    unsigned slot = w->ncancelled++ % (sizeof(w->cancelled) / sizeof(w->cancelled[0]));
    snprintf(w->cancelled[slot].id, sizeof(w->cancelled[slot].id), "%s", id);
    w->cancelled[slot].at = uv_now(w->loop);
    for (struct kiln_run *run = w->runs; run != NULL; run = run->next) {
        if (run->job == NULL || run->job->id == NULL || strcmp(run->job->id, id) != 0 ||
            run->abandoned || (run->exit_sent && run->cur < 0))
            continue;
        kiln_info("job %s: cancelled", id);
        run->cancelled = 1;
        if (run->sb != NULL)
            run->sb->backend->ops->kill(run->sb); /* its exit frame says cancelled */
    }
}

void kiln_worker_on_delivery(void *arg, struct kiln_delivery *d)
{
    struct kiln_worker *w = arg;
    struct kiln_run *run = calloc(1, sizeof(*run));
    if (run == NULL) {
        /* leave it unacknowledged: it is delivered again */
        kiln_error("out of memory taking job %s", d->ref);
        return;
    }
    w->busy++;
    run->next = w->runs;
    if (w->runs)
        w->runs->prev = run;
    w->runs = run;
    run->w = w;
    run->d = d;
    run->dest = w->cfg->results;
    run->cur = -1;
    start(run);
}

/* Every second: a job whose agent has said nothing for --hang-ms is in a
 * sandbox that hangs (a stopped or wedged VM, or one that never finished
 * booting): an agent that runs a job says "beat" every second, however
 * busy the job is. */
static void on_watch(uv_timer_t *t)
{
    struct kiln_worker *w = t->data;
    uint64_t now = uv_now(w->loop);
    for (struct kiln_run *run = w->runs; run != NULL; run = run->next) {
        if (run->exit_sent || run->sb == NULL || run->hung ||
            now - run->t_heard < (uint64_t)w->cfg->hang_ms)
            continue;
        run->hung = 1;
        kiln_log_job(KILN_LOG_WARN, run->job->id, run->plugin->name, attempt_of(run),
                     "job %s: its sandbox said nothing for %llu ms: killing it", run->job->id,
                     (unsigned long long)(now - run->t_heard));
        run->sb->backend->ops->kill(run->sb);
    }
}

void kiln_worker_watch(struct kiln_worker *w)
{
    if (w->cfg->hang_ms <= 0)
        return;
    uv_timer_init(w->loop, &w->watch);
    w->watch.data = w;
    uv_timer_start(&w->watch, on_watch, 1000, 1000);
    uv_unref((uv_handle_t *)&w->watch); /* never what keeps the loop alive */
}
