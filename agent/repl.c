/*
 * A session inside its sandbox: one interpreter that outlives its jobs.
 *
 * The session's first "run" starts the interpreter its plugin planned (a
 * read-eval loop: python, deno, sh), with its files; then that job and
 * each later one go to it as a cell on its stdin,
 *
 *   "<bytes> <timeout_ms>\n" then the cell's code,
 *
 * and it answers on the FIFO KILN_REPL_CTL, as the job's uid:
 *
 *   "R <bytes>\n" then a value's text   (a `result` frame)
 *   "E <code>\n"                         (the cell has ended)
 *
 * The FIFO is the job's to write too (the cell's code runs in the
 * interpreter): what comes on it is held to the protocol, and only the
 * last "R" before a cell's "E" becomes its `result`, sent after the cell's
 * output and counted by the worker against the job's output cap.
 *
 * When a cell ends, the job cgroup (jobcg.c) is frozen, so nothing of the
 * job runs, forks or wakes anything again, and whatever else the cell
 * started is killed: only files (/work, /tmp) and the interpreter's own
 * state carry over, and an idle session uses no CPU. The interpreter stays
 * frozen until the next job's cell. A "kill" from the worker (timeout,
 * cancel, the output or CPU cap) interrupts the cell the same way: frozen,
 * its other processes killed, then the interpreter thawed with SIGINT; one
 * that has not ended the cell after KILN_REPL_STOP_MS is killed, and with
 * it the session. Every "exit" says whether the interpreter lives on
 * ("session": "alive") or not ("ended").
 *
 * A session whose cells say "keep_running" (one with exposed ports: its
 * server must go on answering between jobs) is neither frozen nor
 * cleared when a cell ends: what its cells started in the background runs
 * on, inside the sandbox's limits, until the session ends. Between cells
 * the agent reads and drops what the interpreter writes (a server's log
 * must not fill its pipe and stall it) and reaps what ends; an interrupt
 * is SIGINT to the interpreter alone; an interpreter that exits between
 * cells ends the sandbox, and with it the session.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "wire/proto.h"

#define KILN_REPL_STOP_MS 1500


static struct {
    struct kiln_child c;     /* the interpreter: pid, stdin, stdout, stderr */
    int ctl;                 /* the FIFO's read end (O_RDWR: never EOF) */
    int sfd;                 /* SIGCHLD */
    char buf[KILN_REPL_RESULT_MAX + 64];
    size_t len;              /* what has come on ctl so far */
    char res[KILN_REPL_RESULT_MAX];
    size_t res_len;          /* the cell's result so far: the last "R" */
    int has_res;
    int ended;               /* the interpreter has exited: wstatus */
    int wstatus;
    int keep;                /* background processes run on between cells */
} it = {.ctl = -1, .sfd = -1};

static int make_ctl(char *why, size_t whylen)
{
    if (mkdir(KILN_REPL_DIR, 0755) < 0 && errno != EEXIST) {
        snprintf(why, whylen, "agent: mkdir %s: %s", KILN_REPL_DIR, strerror(errno));
        return -1;
    }
    unlink(KILN_REPL_CTL);
    if (mkfifo(KILN_REPL_CTL, 0600) < 0 ||
        (chown(KILN_REPL_CTL, KILN_JOB_UID, KILN_JOB_GID) < 0 && chmod(KILN_REPL_CTL, 0666) < 0) ||
        (it.ctl = open(KILN_REPL_CTL, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0) {
        snprintf(why, whylen, "agent: the session's control FIFO: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void reap(void);

/* Every process of the job but its interpreter (and PID 1, the agent),
 * killed. The job cgroup is frozen first (hold()), so none of them forks,
 * runs or wakes another meanwhile and one pass finds them all; a process
 * whose main thread has exited while its other threads run on is killed
 * too (kill() reaches its whole thread group through the zombie leader). */
static void kill_others(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    struct stat st;
    char path[64];
    while (d != NULL && (e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 1 || pid == it.c.pid || pid == getpid())
            continue;
        snprintf(path, sizeof(path), "/proc/%d", (int)pid);
        if (stat(path, &st) == 0 && st.st_uid == KILN_JOB_UID)
            kill(pid, SIGKILL);
    }
    if (d != NULL)
        closedir(d);
    reap();
}

/* Stop the job where it is and end all of it but the interpreter, which
 * stays frozen until thawed (the next cell, or SIGINT for an interrupt).
 * A freeze that did not finish (a task asleep in the kernel for 2 s) is
 * said on stderr; the kill goes on regardless. */
static void hold(void)
{
    int r = kiln_jobcg_freeze(1);
    if (r < 0)
        fprintf(stderr, "kiln-agent: freezing the session's job: %s\n", strerror(-r));
    kill_others();
}

/* Reap what has ended; the interpreter's end is noted. */
static void reap(void)
{
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0)
        if (p == it.c.pid && !it.ended) {
            it.ended = 1;
            it.wstatus = st;
        }
}

/* Peak memory of the interpreter (KiB): /proc's VmHWM. */
static int64_t peak_rss_kb(void)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)it.c.pid);
    if (kiln_read_small(path, buf, sizeof(buf)) < 0)
        return 0;
    char *h = strstr(buf, "VmHWM:");
    return h != NULL ? strtoll(h + 6, NULL, 10) : 0;
}

/* What came on the FIFO: a result is kept (a later one replaces it) until
 * the cell's end; returns 1 with the code once the cell has ended, 0 while
 * it runs, -1 when the protocol was broken (the interpreter is killed). */
static int read_ctl(int *code)
{
    ssize_t n;
    while ((n = read(it.ctl, it.buf + it.len, sizeof(it.buf) - 1 - it.len)) > 0)
        it.len += (size_t)n;
    for (;;) {
        struct kiln_repl_ctl rec;
        long used = kiln_repl_ctl_next(it.buf, it.len, KILN_REPL_RESULT_MAX, &rec);
        if (used <= 0)
            return (int)used;
        if (rec.kind == 'E') {
            *code = rec.code;
            it.len = 0; /* nothing follows an end */
            return 1;
        }
        memcpy(it.res, rec.text.p, rec.text.n);
        it.res_len = rec.text.n;
        it.has_res = 1;
        memmove(it.buf, it.buf + used, it.len - (size_t)used);
        it.len -= (size_t)used;
    }
}

/* Whatever the interpreter has written, now (its pipes are non-blocking). */
static void drain_output(void)
{
    for (int i = 1; i <= 2; i++) {
        int *fd = i == 1 ? &it.c.out : &it.c.err;
        while (*fd >= 0 && kiln_run_out_read(i, fd) > 0)
            ;
    }
}

struct cell {
    const char *code;        /* borrowed from the run message */
    size_t code_len;
    int64_t timeout_ms, cpu_ms;
    const msgpack_object *collect_globs;
    int64_t collect_bytes, collect_files, collect_names;
    int keep;
};

static int parse_cell(const msgpack_object *m, struct cell *c)
{
    struct kiln_msg_run r;
    memset(c, 0, sizeof(*c));
    if (kiln_msg_read_run(m, &r) < 0 || !r.cell.set)
        return -1;
    c->code = r.cell.p;
    c->code_len = r.cell.n;
    c->timeout_ms = r.timeout_ms;
    c->cpu_ms = r.cpu_ms;
    c->collect_globs = r.collect_globs_in;
    c->collect_bytes = r.collect_bytes;
    c->collect_files = r.collect_files;
    c->collect_names = r.collect_names;
    c->keep = r.keep_running;
    return 0;
}

/* Hand the interpreter its cell (a blocking write: it reads it at once,
 * and a cell is at most a job's code). */
static int feed(const struct cell *c)
{
    char head[64];
    int64_t t = c->timeout_ms;
    if (c->cpu_ms > 0 && (t <= 0 || c->cpu_ms < t))
        t = c->cpu_ms; /* a busy loop stops at whichever comes first */
    int n = kiln_repl_cell_head(head, sizeof(head), c->code_len, t);
    int fl = fcntl(it.c.in, F_GETFL);
    fcntl(it.c.in, F_SETFL, fl & ~O_NONBLOCK);
    int r = kiln_write_all(it.c.in, head, (size_t)n);
    if (r == 0)
        r = kiln_write_all(it.c.in, c->code, c->code_len);
    fcntl(it.c.in, F_SETFL, fl);
    return r;
}

/* One job: its cell to the interpreter, its output on, its end reported. */
static void run_cell(struct kiln_proto_reader *rd, msgpack_unpacked *u, const struct cell *c)
{
    int64_t t0 = kiln_agent_now_ms(), stop_at = 0;
    if (c->keep && !it.keep && kiln__agent.in_vm && kiln_relay_mux_path_fd >= 0 && kiln_relay_start(0) < 0)
        fprintf(stderr, "kiln-agent: the way in to the session's ports could not start\n");
    it.keep |= c->keep; /* (once kept, kept: the worker says it for every later cell) */
    int64_t cpu_base = kiln_cpu_used_ms(it.c.pid);
    int64_t tick = c->cpu_ms / 10 < 5 ? 5 : c->cpu_ms / 10 > 50 ? 50 : c->cpu_ms / 10;
    int64_t next_check = t0 + tick;
    int code = 0, done = 0, cpu_over = 0;

    it.has_res = 0;
    if (feed(c) < 0) {
        kill(it.c.pid, SIGKILL); /* it stopped reading: the session cannot go on */
        stop_at = t0;
    }
    while (!done && !it.ended) {
        struct pollfd pf[5] = {{kiln__agent.chan, POLLIN, 0}, {it.c.out, POLLIN, 0},
                               {it.c.err, POLLIN, 0}, {it.ctl, POLLIN, 0}, {it.sfd, POLLIN, 0}};
        int wait = kiln_run_out_wait(1000);
        int64_t now = kiln_agent_now_ms();
        if (stop_at > 0)
            wait = stop_at + KILN_REPL_STOP_MS - now < wait ? (int)(stop_at + KILN_REPL_STOP_MS - now) : wait;
        if (c->cpu_ms > 0 && stop_at == 0)
            wait = next_check - now < wait ? (int)(next_check - now) : wait;
        if (poll(pf, 5, wait < 0 ? 0 : wait) < 0 && errno != EINTR)
            break;
        kiln_run_out_due();
        now = kiln_agent_now_ms();
        if (now - kiln__agent.last_sent >= 1000)
            kiln_agent_send_beat();
        int interrupt = 0;
        if (pf[0].revents) {
            /* mid-cell the worker says only "kill" (or hangs up) */
            int r = kiln_agent_read(rd, u);
            if (r < 0)
                kiln_agent_exit(r == -EPIPE ? 0 : 1);
            interrupt = 1;
        }
        if (c->cpu_ms > 0 && stop_at == 0 && now >= next_check) {
            next_check = now + tick;
            if (kiln_cpu_used_ms(it.c.pid) - cpu_base > c->cpu_ms)
                interrupt = cpu_over = 1;
        }
        if (interrupt && stop_at == 0) {
            stop_at = now;
            if (!it.keep)
                hold();
            kill(it.c.pid, SIGINT);
            if (!it.keep)
                kiln_jobcg_freeze(0);
        }
        if (stop_at > 0 && now - stop_at >= KILN_REPL_STOP_MS)
            kill(it.c.pid, SIGKILL); /* it did not stop: the session ends with it */
        for (int i = 1; i <= 2; i++) {
            int *fd = i == 1 ? &it.c.out : &it.c.err;
            if (*fd >= 0 && pf[i].revents)
                kiln_run_out_read(i, fd);
        }
        if (pf[3].revents) {
            int r = read_ctl(&code);
            if (r < 0)
                kill(it.c.pid, SIGKILL);
            done = r == 1;
        }
        if (pf[4].revents) {
            struct signalfd_siginfo si;
            while (read(it.sfd, &si, sizeof(si)) > 0)
                ;
        }
        reap();
    }
    int64_t wall = kiln_agent_now_ms() - t0;
    drain_output();
    if (!it.ended) { /* idle until the next job: nothing of it runs (but what it keeps running) */
        if (!it.keep)
            hold();
    } else { /* the interpreter is gone, and with it the session */
        kiln_run_kill(it.c.pid);
        while (waitpid(-1, NULL, 0) > 0)
            ;
    }
    kiln_run_out_flush();
    if (it.has_res) { /* after the cell's output, before its end */
        msgpack_sbuffer sb;
        kiln_msg_pack_result(&sb, it.res, it.res_len);
        kiln_agent_send(&sb);
    }
    it.has_res = 0;
    int64_t cpu = kiln_cpu_used_ms(it.c.pid) - cpu_base;
    int status = it.ended ? it.wstatus : (code & 0xff) << 8;
    int64_t rss = it.ended ? 0 : peak_rss_kb();
    const char *session = it.ended ? "ended" : "alive";
    if (c->collect_globs != NULL) {
        kiln_agent_send_figures("collecting", status, wall, cpu < 0 ? 0 : cpu, rss, cpu_over, session);
        kiln_collect_send(c->collect_globs, c->collect_bytes, c->collect_files, c->collect_names);
    }
    kiln_agent_send_figures("exit", status, wall, cpu < 0 ? 0 : cpu, rss, cpu_over, session);
}

/* Between the cells of a session that keeps its background running: until
 * the worker speaks, drop what the interpreter writes and reap what ends;
 * an interpreter that exits meanwhile ends the sandbox. */
static void idle_running(struct kiln_proto_reader *rd)
{
    while (rd->off == rd->len) { /* (a message already read is the worker's word) */
        struct pollfd pf[4] = {{kiln__agent.chan, POLLIN, 0}, {it.c.out, POLLIN, 0},
                               {it.c.err, POLLIN, 0}, {it.sfd, POLLIN, 0}};
        if (poll(pf, 4, -1) < 0 && errno != EINTR)
            return;
        for (int i = 1; i <= 2; i++) {
            int *fd = i == 1 ? &it.c.out : &it.c.err;
            char buf[4096];
            ssize_t n = 1;
            /* (a bounded bite each round: a writer faster than this never
             * keeps the worker's next word unread) */
            for (int k = 0; k < 16 && *fd >= 0 && pf[i].revents && (n = read(*fd, buf, sizeof(buf))) > 0; k++)
                ;
            if (*fd >= 0 && pf[i].revents && (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))) {
                close(*fd); /* (the interpreter closed it) */
                *fd = -1;
            }
        }
        if (pf[3].revents) {
            struct signalfd_siginfo si;
            while (read(it.sfd, &si, sizeof(si)) > 0)
                ;
            reap();
            if (it.ended)
                kiln_agent_exit(0);
        }
        if (pf[0].revents)
            return;
    }
}

void kiln_repl_serve(struct kiln_proto_reader *rd, msgpack_unpacked *u)
{
    struct kiln_exec_spec spec;
    struct cell c;
    const char *in;
    size_t in_len;
    char why[600];
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    it.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (kiln_run_parse(&u->data, &spec, &in, &in_len) < 0 || parse_cell(&u->data, &c) < 0) {
        kiln_agent_send_error("agent: malformed message");
        kiln_agent_exit(1);
    }
    spec.rl_cpu = 0; /* a per-process CPU limit would add up across the session's jobs */
    if (kiln_jobcg.freeze < 0) {
        kiln_agent_send_error("agent: this sandbox has no job cgroup to hold a session in");
        kiln_agent_exit(1);
    }
    if (it.sfd < 0 || make_ctl(why, sizeof(why)) < 0) {
        kiln_agent_send_error(it.sfd < 0 ? "agent: signalfd failed" : why);
        kiln_agent_exit(1);
    }
    int r = kiln_run_start(&spec, &it.c, why, sizeof(why));
    if (r < 0) {
        kiln_agent_send_failure(why, r == KILN_EXEC_JOB_FAULT);
        kiln_agent_exit(1);
    }
    fcntl(it.c.out, F_SETFL, O_NONBLOCK);
    fcntl(it.c.err, F_SETFL, O_NONBLOCK);
    for (int have = 1;;) {
        if (have) {
            run_cell(rd, u, &c);
            kiln__agent.served = 1;
        }
        /* the next job, or the end: the worker hangs up (or kills the
         * sandbox); a "kill" that crossed the exit on its way is stale */
        for (;;) {
            if (it.ended) {
                while (kiln_agent_read(rd, u) == 0)
                    ;
                kiln_agent_exit(0);
            }
            if (it.keep)
                idle_running(rd);
            if ((r = kiln_agent_read(rd, u)) < 0)
                kiln_agent_exit(r == -EPIPE ? 0 : 1);
            if (kiln_msg_type_of(&u->data) == KILN_MSG_RUN)
                break;
        }
        kiln_run_spec_free(&spec);
        if (kiln_run_parse(&u->data, &spec, &in, &in_len) < 0 || parse_cell(&u->data, &c) < 0) {
            kiln_agent_send_error("agent: malformed message");
            kiln_agent_exit(1);
        }
        /* the job runs again: its files are written by a process in its
         * cgroup, then its cell goes to the interpreter */
        kiln_jobcg_freeze(0);
        if (kiln_run_write_files(&spec, why, sizeof(why)) < 0) {
            /* the job's files: its error (or kiln's), and no cell; the
             * session goes on */
            kiln_agent_send_failure(why, 1);
            have = 0;
            continue;
        }
        have = 1;
    }
}
