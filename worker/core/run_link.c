/*
 * A job's current step in its sandbox: the link taken warm from the pool
 * or spawned (core/link.c), the step sent as "run" with its limits, and
 * what the link says turned into frames and, at its end, an outcome for
 * core/life.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/config.h"
#include "core/image.h"
#include "core/link.h"
#include "base/log.h"
#include "core/pool.h"
#include "core/run.h"
#include "core/session.h"
#include "sandbox/backend.h"
#include "wire/proto.h"

int64_t kiln__run_memory_mb(const struct kiln_run *run)
{
    int64_t session = kiln__session_memory_mb(run);
    return session > 0 ? session : run->lim.memory_mb > 0 ? run->lim.memory_mb : run->w->cfg->sb.memory_mb;
}

/* ---- the job in its sandbox ------------------------------------------- */

static void on_timeout(uv_timer_t *t)
{
    kiln__run_stop(t->data, STOP_TIMEOUT); /* the exit frame follows the sandbox's end */
}

/* The CPU time of the run so far as its sandbox's cgroup accounts it
 * (every process, however it ended), or -1 where the backend cannot say. */
static int64_t cgroup_cpu_ms(const struct kiln_run *run)
{
    struct kiln_sandbox *sb = run->link != NULL ? run->link->sb : NULL;
    int64_t ms;
    if (sb == NULL || sb->backend->ops->cpu_ms == NULL || run->cpu_base < 0 ||
        (ms = sb->backend->ops->cpu_ms(sb)) < 0)
        return -1;
    return ms - run->cpu_base;
}

/* The agent holds the job to cpu_ms by what it sees of its processes; the
 * cgroup sees them all, those reaped without being waited for too. */
static void on_cpu_watch(uv_timer_t *t)
{
    struct kiln_run *run = t->data;
    if (run->state != RUN_RUNNING) {
        uv_timer_stop(t);
        return;
    }
    if (cgroup_cpu_ms(run) > kiln__run_cpu_limit(run)) { /* (a read that failed, -1, is tried again next tick) */
        uv_timer_stop(t);
        run->cpu_over = 1;
        kiln__run_stop(run, STOP_CPU);
    }
}

/* The job's memory and pids limits on its sandbox, before it runs. */
static int apply_limits(struct kiln_run *run, const struct kiln_sandbox_limits *sl)
{
    const struct kiln_limits *l = &run->lim;
    struct kiln_sandbox *sb = run->link->sb;
    int r = sb->backend->ops->limit ? sb->backend->ops->limit(sb, sl) : -ENOTSUP;
    if (r == -ENOTSUP && l->memory_mb < 0 && l->pids < 0)
        return 0; /* nothing asked; the startup log says limits are not enforced */
    if (r < 0)
        snprintf(run->reason, sizeof(run->reason), r == -ENOTSUP
                 ? "this worker cannot enforce limits.memory_mb or limits.pids (no usable cgroups)"
                 : "setting the sandbox's limits failed: %s", strerror(-r));
    return r;
}

static int64_t collect_cap(const struct kiln_run *run)
{
    return run->lim.collect_bytes >= 0 ? run->lim.collect_bytes : run->w->cfg->collect_bytes;
}

void kiln__run_send(struct kiln_run *run)
{
    struct kiln_job *job = run->job;
    const struct kiln_config *cfg = run->w->cfg;
    struct kiln_sandbox *sb = run->link->sb;
    struct kiln_sandbox_limits sl = {kiln__run_memory_mb(run) << 20,
                                     run->lim.pids > 0 ? run->lim.pids : cfg->sb.pids};
    char err[256];
    /* a session's limits are its first job's, set once */
    int r = run->session_seq > 1 ? 0 : apply_limits(run, &sl);
    if (r < 0) {
        if (r == -ENOTSUP)
            kiln__run_reject(run, KILN_REJECT_LIMITS, run->reason);
        else
            kiln__run_finish(run, KILN_STATUS_INTERNAL, run->reason);
        return;
    }
    int net = kiln__run_net(run);
    if (net && sb->proxy_dir == NULL) {
        kiln__run_reject(run, KILN_REJECT_OTHER, "this backend offers no network path for net.allow or secrets");
        return;
    }
    if (net && kiln__run_open_egress(run, sb) < 0)
        return;
    int64_t cpu_ms = kiln__run_cpu_limit(run);
    struct kiln_link_job sj = {
        .plan = &run->plan,
        .memory_bytes = sl.memory_bytes,
        .pids = sl.pids,
        .proxy = net,
        /* the agent holds all of the job's processes to cpu_ms together;
         * the kernel holds each to the next second past it (SIGXCPU) */
        .cpu_s = cpu_ms > 0 ? cpu_ms / 1000 + 1 : 0,
        .cpu_ms = cpu_ms,
        .expect_end = job->expect_end && !run->building,
        .collect = run->building ? run->plugin->artifact : NULL,
        .ca_pem = run->secrets != NULL && run->w->tls != NULL ? cfg->sb.egress_ca_pem : NULL,
        /* a build collects only its artifact */
        .collect_globs = run->building ? NULL : (const char *const *)job->collect,
        .ncollect = run->building ? 0 : job->ncollect,
        .collect_bytes = collect_cap(run) - run->collect_bytes, /* what this attempt's runs left */
        .collect_files = KILN_COLLECT_FILES_MAX - run->collect_files,
        .collect_names = KILN_COLLECT_NAMES_MAX - run->collect_names,
        .fsize = run->lim.file_bytes >= 0 ? run->lim.file_bytes : cfg->file_bytes,
        .nofile = cfg->open_files,
        .stdin_data = run->cur >= 0 ? job->runs[run->cur].stdin_data : job->stdin_data,
        .stdin_len = run->cur >= 0 ? job->runs[run->cur].stdin_len : job->stdin_len,
    };
    if (run->kind == RUN_CELL) { /* a cell for the session's interpreter */
        sj.cell = job->code;
        sj.cell_len = job->code_len;
        sj.timeout_ms = run->lim.timeout_ms > 0 ? run->lim.timeout_ms : cfg->timeout_ms;
        sj.cpu_s = 0; /* a per-process limit would add up over the session's jobs */
        sj.keep_running = kiln__session_keeps_running(run);
        int64_t peak;
        if (sb->backend->ops->stats != NULL)
            sb->backend->ops->stats(sb, &peak, &run->oom_base);
    }
    if (kiln_link_run(run->link, &sj, err, sizeof(err)) < 0) {
        kiln__run_finish(run, KILN_STATUS_INTERNAL, err);
        return;
    }
    kiln__run_move(run, RUN_RUNNING);
    /* the job's time starts with its run: a cold sandbox's start-up is
     * kiln's (a start-up that never ends is a hang: --hang-ms). The loop's
     * clock is the time its iteration began and counts whole milliseconds:
     * refresh it and add one, or a job could be stopped before its time */
    uv_update_time(run->w->loop);
    run->t_run = uv_now(run->w->loop);
    int64_t timeout = run->lim.timeout_ms > 0 ? run->lim.timeout_ms : cfg->timeout_ms;
    if (run->kind == RUN_TESTS && !run->building && run->lim.timeout_ms <= 0 && cpu_ms > 0) {
        /* a case is timed by its CPU: the wall clock is a backstop, far
         * enough off that a busy machine does not flip its verdict */
        timeout = 3 * cpu_ms + 1000;
        if (timeout > cfg->max_timeout_ms)
            timeout = cfg->max_timeout_ms;
    }
    uv_timer_start(&run->timer, on_timeout, (uint64_t)timeout + 1, 0);
    /* (only for a job with a CPU limit: two reads of a cgroup file per job
     * the others need not pay) */
    run->cpu_base = -1;
    if (cpu_ms > 0 && sb->backend->ops->cpu_ms != NULL &&
        (run->cpu_base = sb->backend->ops->cpu_ms(sb)) >= 0) {
        uint64_t tick = (uint64_t)(cpu_ms / 10 < 10 ? 10 : cpu_ms / 10 > 50 ? 50 : cpu_ms / 10);
        uv_timer_start(&run->cpu_watch, on_cpu_watch, tick, tick);
    }
}

static void on_output(struct kiln_run *run, int fd, const void *data, size_t len)
{
    if (run->state != RUN_RUNNING || run->stop == STOP_OUTPUT || run->stop == STOP_RELEASE)
        return;
    if (run->building) { /* the compiler's output: kept (capped) for the exit frame */
        if (kiln__run_keep_output(run, fd, data, len) < 0)
            kiln__run_finish(run, KILN_STATUS_INTERNAL, "out of memory keeping the build's output");
        return;
    }
    if ((int64_t)len > run->out_cap - run->out_bytes) {
        /* cut at the cap, stop the job; its exit frame says output_limit */
        len = (size_t)(run->out_cap - run->out_bytes);
        kiln__run_stop(run, STOP_OUTPUT);
    }
    run->out_bytes += (int64_t)len;
    if (len == 0)
        return;
    if (run->kind == RUN_TESTS) { /* a case's output is judged, and streamed only if asked */
        if (kiln__run_keep_output(run, fd, data, len) < 0) {
            kiln__run_finish(run, KILN_STATUS_INTERNAL, "out of memory keeping a case's output");
            return;
        }
        /* streamed, all cases together, within the job's own output cap */
        const struct kiln_limits *jl = &run->job->limits;
        int64_t cap = jl->output_bytes >= 0 ? jl->output_bytes : run->w->cfg->output_bytes;
        if (!run->job->tests_output || run->streamed >= cap)
            return;
        if ((int64_t)len > cap - run->streamed)
            len = (size_t)(cap - run->streamed);
        run->streamed += (int64_t)len;
    }
    kiln__run_output(run, fd, data, len);
}

/* What the kernel says of the sandbox: peak memory, and whether the memory
 * limit killed something (then the job ends "oom", whatever it exited with). */
static int kernel_accounting(struct kiln_run *run, int64_t peak_kb, int64_t oom_kills)
{
    if (peak_kb > 0)
        run->ex.max_rss_kb = peak_kb;
    if (oom_kills - run->oom_base > 0) {
        snprintf(run->reason, sizeof(run->reason), "the memory limit (%lld MiB) was reached",
                 (long long)kiln__run_memory_mb(run));
        return 1;
    }
    return 0;
}

static void on_job_exit(struct kiln_run *run, const struct kiln_link_exit *e)
{
    if (run->state != RUN_RUNNING)
        return;
    run->ex.wall_ms = e->wall_ms;
    run->ex.cpu_ms = e->cpu_ms;
    run->ex.max_rss_kb = e->max_rss_kb;
    run->ex.signal = e->signal;
    run->ex.has_code = e->has_code;
    run->ex.code = e->code;
    /* the cgroup's figure where there is one: it misses no process */
    int64_t cg = cgroup_cpu_ms(run);
    if (cg > run->ex.cpu_ms)
        run->ex.cpu_ms = cg;
    run->cpu_over |= e->cpu_limit;
    if (kernel_accounting(run, e->peak_kb, e->oom_kills)) {
        kiln__run_finish(run, KILN_STATUS_OOM, run->reason);
    } else if (run->cpu_over) {
        snprintf(run->reason, sizeof(run->reason), "the cpu_ms limit (%lld ms) was reached: %lld ms used",
                 (long long)kiln__run_cpu_limit(run), (long long)run->ex.cpu_ms);
        kiln__run_finish(run, KILN_STATUS_KILLED, run->reason);
    } else if (e->signal == SIGXCPU || e->signal == SIGXFSZ)
        kiln__run_finish(run, KILN_STATUS_KILLED, e->signal == SIGXCPU ? "the cpu_ms limit was reached"
                                                             : "the file_bytes limit was reached");
    else if (e->has_code && e->code == 0 && e->reached_end == 0)
        /* exit, os._exit, a thread or an exit handler ended it before its
         * last line: what came after (the tests) did not all run */
        kiln__run_finish(run, KILN_STATUS_ERROR, "the program exited with 0 before its end (expect_end): "
                                                 "what came after the exit did not run");
    else if (e->has_code)
        kiln__run_finish(run, e->code == 0 ? KILN_STATUS_OK : KILN_STATUS_ERROR, NULL);
    else if (e->signal)
        kiln__run_finish(run, KILN_STATUS_KILLED, NULL);
    else
        kiln__run_finish(run, KILN_STATUS_INTERNAL, "the agent reported an exit without code or signal");
}

/* The sandbox is gone. If the job had not ended, its end says why. */
static void on_link_gone(struct kiln_run *run, const struct kiln_link_event *ev)
{
    run->link = NULL;
    if (kiln__run_undecided(run) && run->state != RUN_BACKOFF) {
        const struct rusage *ru = ev->ru;
        run->ex.wall_ms = run->state == RUN_RUNNING ? (int64_t)(uv_now(run->w->loop) - run->t_run) : 0;
        run->ex.cpu_ms = (ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000 +
                         (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1000;
        run->ex.max_rss_kb = ru->ru_maxrss;
        if (kernel_accounting(run, ev->peak_kb, ev->oom_kills)) {
            kiln__run_finish(run, KILN_STATUS_OOM, run->reason);
        } else if (run->stop == STOP_HANG) {
            snprintf(run->reason, sizeof(run->reason),
                     "the sandbox stopped answering for %lld ms (a hung VM?): killed",
                     (long long)run->w->cfg->sb.hang_ms);
            kiln__run_finish(run, KILN_STATUS_INTERNAL, run->reason);
        } else if (run->stop != STOP_NONE) {
            kiln__run_finish(run, KILN_STATUS_KILLED, NULL); /* kiln__run_finish() names the cause */
        } else {
            snprintf(run->reason, sizeof(run->reason),
                     "the sandbox ended before reporting an exit (%s %d)",
                     WIFSIGNALED(ev->wstatus) ? "signal" : "status",
                     WIFSIGNALED(ev->wstatus) ? WTERMSIG(ev->wstatus) : WEXITSTATUS(ev->wstatus));
            kiln__run_finish(run, KILN_STATUS_INTERNAL, run->reason);
        }
    }
    kiln__run_advance(run);
    kiln__run_unref(run);
}

void kiln__run_on_link(void *arg, const struct kiln_link_event *ev)
{
    struct kiln_run *run = arg;
    switch (ev->type) {
    case KILN_LINK_EV_READY:
        if (run->state == RUN_STARTING && run->stop == STOP_NONE)
            kiln__run_send(run);
        break;
    case KILN_LINK_EV_RESULT:
        /* a cell's value is output too: within the job's cap, or not sent
         * and the job ends output_limit */
        if (run->state != RUN_RUNNING || run->stop == STOP_OUTPUT)
            break;
        if ((int64_t)ev->len > run->out_cap - run->out_bytes) {
            kiln__run_stop(run, STOP_OUTPUT);
            break;
        }
        run->out_bytes += (int64_t)ev->len;
        kiln__run_result(run, ev->data, ev->len);
        break;
    case KILN_LINK_EV_OUTPUT:
        on_output(run, ev->fd, ev->data, ev->len);
        break;
    case KILN_LINK_EV_FILE:
        kiln__run_keep_artifact(run, ev);
        break;
    case KILN_LINK_EV_COLLECTING: /* its processes are gone: no more limits to watch */
        uv_timer_stop(&run->timer);
        uv_timer_stop(&run->cpu_watch);
        break;
    case KILN_LINK_EV_CHUNK: { /* within the caps, whatever a guest's agent sends */
        int64_t fresh = ev->chunk->offset == 0, name = fresh ? (int64_t)strlen(ev->chunk->path) : 0;
        if (run->job != NULL && run->job->ncollect > 0 && !run->building && run->state == RUN_RUNNING &&
            run->collect_bytes + (int64_t)ev->chunk->len <= collect_cap(run) &&
            run->collect_files + fresh <= KILN_COLLECT_FILES_MAX &&
            run->collect_names + name <= KILN_COLLECT_NAMES_MAX) {
            run->collect_bytes += (int64_t)ev->chunk->len;
            run->collect_files += fresh;
            run->collect_names += name;
            kiln__run_file(run, ev->chunk);
        }
        break;
    }
    case KILN_LINK_EV_COLLECTED:
        kiln__run_keep_collected(run, ev->data, ev->len);
        break;
    case KILN_LINK_EV_EXIT:
        on_job_exit(run, ev->exit);
        break;
    case KILN_LINK_EV_ERROR:
        if (!ev->agent)
            kiln_error("job %s: %s", kiln__run_id(run), ev->reason);
        if (ev->job_fault) { /* the job's own input was why: its error, not retried */
            kiln__run_finish(run, KILN_STATUS_ERROR, ev->reason);
        } else {
            snprintf(run->reason, sizeof(run->reason), "%s%s", ev->agent ? "sandbox: " : "",
                     ev->reason);
            kiln__run_finish(run, KILN_STATUS_INTERNAL, run->reason);
        }
        break;
    case KILN_LINK_EV_GONE:
        on_link_gone(run, ev);
        break;
    }
}

/* ---- its link ------------------------------------------------------------ */

int kiln__run_open_link(struct kiln_run *run, const struct kiln_job_view *view, const char **how, char *err,
                        size_t errlen)
{
    struct kiln_worker *w = run->w;
    /* a job its plugin will not run warm is not run forked either */
    const struct kiln_plugin *p = run->plugin;
    struct kiln_spawn_opts needs = {.memory_mb = kiln__run_memory_mb(run), .net = kiln__run_net(run),
                                    .cold = KILN_PLUGIN_HAS(p, warm_ok) && !p->warm_ok(view)};
    char why[400];
    *how = "";
    run->link = kiln_pool_take(run->image->pool, run->plugin, run->plan.profile, view, &needs, kiln__run_on_link, run);
    if (run->link != NULL) {
        *how = ", warm";
        return 0;
    }
    if (kiln_link_spawn(w->loop, run->image->backend, run->plan.profile, &needs, NULL, kiln__run_on_link, run,
                        &run->link, why, sizeof(why)) < 0) {
        run->link = NULL;
        snprintf(err, errlen, "sandbox failed to start: %s", why);
        return -1;
    }
    return 0;
}
