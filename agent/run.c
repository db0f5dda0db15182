/*
 * One job's run, inside the sandbox: the "run" message read into a spec,
 * the job started confined (exec.c) or a warm interpreter handed its job,
 * then supervised to its end: its output forwarded as it comes, its stdin
 * fed, and when its main process ends, everything else it left ended and
 * the exit reported.
 */
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

/* Turn an array of strings into a NULL-terminated vector. */
static char **strv(const msgpack_object *o)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY)
        return NULL;
    char **v = calloc(o->via.array.size + 1, sizeof(char *));
    for (uint32_t i = 0; v != NULL && i < o->via.array.size; i++)
        if ((v[i] = kiln_mp_strdup(&o->via.array.ptr[i])) == NULL)
            return NULL; /* the agent exits soon after: no need to free */
    return v;
}

int kiln_run_parse(const msgpack_object *m, struct kiln_exec_spec *spec,
                     const char **stdin_data, size_t *stdin_len)
{
    struct kiln_msg_run r;
    memset(spec, 0, sizeof(*spec));
    if (kiln_msg_read_run(m, &r) < 0)
        return -EINVAL;
    if ((spec->argv = strv(r.cmd.argv_in)) == NULL || spec->argv[0] == NULL ||
        (spec->env = strv(r.cmd.env_in)) == NULL)
        return -EINVAL;
    spec->cwd = "/work";
    if (r.cmd.cwd_in.set && (spec->cwd = kiln_span_dup(&r.cmd.cwd_in)) == NULL)
        return -EINVAL;
    if (r.files_in != NULL) {
        const msgpack_object *o = r.files_in;
        spec->files = calloc(o->via.array.size + 1, sizeof(*spec->files));
        if (spec->files == NULL)
            return -ENOMEM;
        for (uint32_t i = 0; i < o->via.array.size; i++) { /* each [path, data, mode], checked there */
            const msgpack_object *f = o->via.array.ptr[i].via.array.ptr;
            int64_t mode;
            if (kiln_mp_int(&f[2], 0, 07777, &mode) < 0 || (spec->files[i].path = kiln_mp_strdup(&f[0])) == NULL)
                return -EINVAL;
            spec->files[i].data = f[1].via.bin.ptr;
            spec->files[i].len = f[1].via.bin.size;
            spec->files[i].mode = (unsigned)mode;
            spec->nfiles++;
        }
    }
    spec->rl_cpu = r.rl_cpu > 0 ? r.rl_cpu : 0;
    spec->rl_fsize = r.rl_fsize;
    spec->rl_nofile = r.rl_nofile > 0 ? r.rl_nofile : 0;
    *stdin_data = r.stdin_data.set ? r.stdin_data.p : NULL;
    *stdin_len = r.stdin_data.set ? r.stdin_data.n : 0;
    return 0;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

void kiln_run_spec_free(struct kiln_exec_spec *spec)
{
    strv_free(spec->argv);
    strv_free(spec->env);
    for (size_t i = 0; i < spec->nfiles; i++)
        free(spec->files[i].path);
    free(spec->files);
    if (spec->cwd != NULL && strcmp(spec->cwd, "/work") != 0)
        free((char *)spec->cwd);
    memset(spec, 0, sizeof(*spec));
}

/* Stop every process of the job. As PID 1 of a pid namespace, kill(-1)
 * reaches all of them and nothing outside; otherwise the job's group. */
void kiln_run_kill(pid_t child)
{
    if (getpid() == 1)
        kill(-1, SIGKILL);
    else
        kill(-child, SIGKILL);
}

static int reap(pid_t child, int *status)
{
    int found = 0, st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0)
        if (p == child) {
            *status = st;
            found = 1;
        }
    return found;
}

/* Fork and exec `spec` confined (exec.c). Returns 0 once execve succeeded,
 * or -1 with why in `why`. */
int kiln_run_start(const struct kiln_exec_spec *spec, struct kiln_child *c, char *why, size_t whylen)
{
    int inp[2], outp[2], errp[2], stp[2];
    if (pipe2(inp, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0 ||
        pipe2(errp, O_CLOEXEC) < 0 || pipe2(stp, O_CLOEXEC) < 0) {
        snprintf(why, whylen, "agent: pipe failed");
        return -1;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, whylen, "agent: fork failed");
        return -1;
    }
    if (pid == 0) {
        sigprocmask(SIG_UNBLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_DFL);
        kiln_exec_child(spec, inp[0], outp[1], errp[1], stp[1]);
    }
    close(inp[0]);
    close(outp[1]);
    close(errp[1]);
    close(stp[1]);
    /* EOF on the status pipe: execve succeeded. Anything else: why not. */
    char buf[512];
    ssize_t n;
    while ((n = read(stp[0], buf, sizeof(buf) - 1)) < 0 && errno == EINTR)
        ;
    close(stp[0]);
    memset(c, 0, sizeof(*c));
    c->pid = pid;
    c->exec_status = -1;
    c->in = inp[1];
    c->out = outp[0];
    c->err = errp[0];
    if (n > 0) {
        buf[n] = '\0';
        int job = buf[0] == KILN_EXEC_JOB_MARK[0];
        if (job)
            snprintf(why, whylen, "could not write the job's files: %s", buf + 1);
        else
            snprintf(why, whylen, "could not start the job: %s", buf);
        kill(-pid, SIGKILL);
        return job ? KILN_EXEC_JOB_FAULT : -1;
    }
    fcntl(c->in, F_SETFL, O_NONBLOCK);
    return 0;
}

/* A warm child: write the job's files as the job's uid (it already runs). */
int kiln_run_write_files(const struct kiln_exec_spec *spec, char *why, size_t whylen)
{
    char step[300];
    if (spec->nfiles == 0)
        return 0;
    /* In a jail the agent is in the sandbox's cgroup: it writes them
     * itself, as the job's uid. In a VM a helper in the job's cgroup does,
     * so their pages count against the job's memory. */
    if (!kiln__agent.in_vm) {
        int r = kiln_exec_write_files(spec, step, sizeof(step));
        if (r == 0)
            return 0;
        snprintf(why, whylen, "could not write the job's files: %s", step);
        return r == KILN_EXEC_JOB_FAULT ? r : -1;
    }
    int stp[2];
    if (pipe2(stp, O_CLOEXEC) < 0) {
        snprintf(why, whylen, "agent: pipe failed");
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0)
        kiln_exec_files_child(spec, stp[1]);
    close(stp[1]);
    char buf[512];
    ssize_t n;
    while ((n = read(stp[0], buf, sizeof(buf) - 1)) < 0 && errno == EINTR)
        ;
    close(stp[0]);
    int st = 0;
    if (pid > 0)
        waitpid(pid, &st, 0);
    if (pid < 0 || n > 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        buf[n > 0 ? n : 0] = '\0';
        int job = n > 0 && buf[0] == KILN_EXEC_JOB_MARK[0];
        snprintf(why, whylen, "could not write the job's files: %s", n > 0 ? buf + job : "helper failed");
        return job ? KILN_EXEC_JOB_FAULT : -1;
    }
    return 0;
}

/* What a warm interpreter reads first (plugin.h): a 4-byte big-endian
 * length, then NUL-separated fields: argc, argv..., env... Then stdin. */
char *kiln_run_envelope(const struct kiln_exec_spec *spec, const char *in, size_t in_len,
                      size_t *total)
{
    return kiln_envelope_pack((const char *const *)spec->argv, (const char *const *)spec->env, in, in_len, total);
}

/* Run the job to its end: forward its output, feed its stdin, and when its
 * main process ends, end everything else and report. */
/* The job's output on its way to the worker: bytes of one stream that come
 * within KILN_OUT_COALESCE_MS of each other go in one "out" message, so a
 * job writing a byte at a time makes kiln write at most one frame per that
 * much time (or per KILN_PROTO_CHUNK bytes), not one per write. */
#define KILN_OUT_COALESCE_MS 5
static struct {
    char buf[KILN_PROTO_CHUNK];
    size_t len;
    int fd;
    int64_t first; /* when its first byte came */
} pend;

void kiln_run_out_flush(void)
{
    if (pend.len > 0)
        kiln_agent_send_out(pend.fd, pend.buf, pend.len);
    pend.len = 0;
}

/* How long poll() may wait before pending output is due (ms), at most `wait`. */
int kiln_run_out_wait(int wait)
{
    if (pend.len == 0)
        return wait;
    int64_t left = pend.first + KILN_OUT_COALESCE_MS - kiln_agent_now_ms();
    return left <= 0 ? 0 : left < wait ? (int)left : wait;
}

/* Pending output whose time has come goes. */
void kiln_run_out_due(void)
{
    if (pend.len > 0 && kiln_agent_now_ms() - pend.first >= KILN_OUT_COALESCE_MS)
        kiln_run_out_flush();
}

int kiln_run_out_read(int stream, int *fd)
{
    char buf[KILN_PROTO_CHUNK];
    ssize_t n;
    while ((n = read(*fd, buf, sizeof(buf))) < 0 && errno == EINTR)
        ;
    if (n > 0) {
        kiln_run_out_add(stream, buf, (size_t)n);
        return 1;
    }
    if (n < 0 && errno == EAGAIN)
        return 0;
    close(*fd);
    *fd = -1;
    return -1;
}

void kiln_run_out_add(int fd, const char *data, size_t len)
{
    if (pend.len > 0 && (pend.fd != fd || pend.len + len > sizeof(pend.buf)))
        kiln_run_out_flush();
    if (pend.len == 0) {
        pend.fd = fd;
        pend.first = kiln_agent_now_ms();
    }
    memcpy(pend.buf + pend.len, data, len);
    pend.len += len;
}

/* The file the worker asked back (a build's artifact), once the job has
 * ended: {t:"file", path, mode, data} when it is a regular file of at most
 * KILN_COLLECT_MAX bytes (never through a symlink), else {t:"file", path,
 * error}. */
static void send_collected(const char *rel)
{
    char path[1100], why[160] = "";
    struct stat st;
    char *data = NULL;
    int fd = -1;
    snprintf(path, sizeof(path), "/work/%s", rel);
    if (strstr(rel, "..") != NULL || rel[0] == '/' || strlen(rel) > 1024)
        snprintf(why, sizeof(why), "not a path under /work");
    else if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)) < 0)
        snprintf(why, sizeof(why), "%s", errno == ENOENT ? "it was not made" : strerror(errno));
    else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        snprintf(why, sizeof(why), "not a regular file");
    else if (st.st_size > KILN_COLLECT_MAX)
        snprintf(why, sizeof(why), "larger than %d MiB", KILN_COLLECT_MAX >> 20);
    else if ((data = malloc((size_t)st.st_size + 1)) == NULL)
        snprintf(why, sizeof(why), "out of memory");
    size_t got = 0;
    while (why[0] == '\0' && got < (size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
        if (n <= 0) {
            snprintf(why, sizeof(why), "read: %s", n == 0 ? "it shrank" : strerror(errno));
            break;
        }
        got += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    msgpack_sbuffer sb;
    struct kiln_msg_file f = {{rel, strlen(rel), 1}, st.st_mode & 07777, {data, got, why[0] == '\0'},
                              {why, strlen(why), why[0] != '\0'}};
    kiln_msg_pack_file(&sb, &f);
    free(data);
    kiln_agent_send(&sb);
}

void kiln_run_supervise(struct kiln_child *c, int64_t t0)
{
    char buf[KILN_PROTO_CHUNK];
    sigset_t mask;
    ssize_t n;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (c->in_left == 0) {
        close(c->in);
        c->in = -1;
    }
    int status = 0, exited = 0;
    /* a CPU limit is checked this often: a tenth of it, 5-50 ms */
    int64_t tick = c->cpu_limit_ms / 10 < 5 ? 5 : c->cpu_limit_ms / 10 > 50 ? 50 : c->cpu_limit_ms / 10;
    int64_t next_check = t0 + tick;
    c->cpu_base = c->cpu_limit_ms > 0 ? kiln_cpu_used_ms(c->pid) : 0;
    /* a child that ended before we watched: its SIGCHLD is pending and the
     * signalfd reports it at once */
    struct pollfd pf[5];
    for (;;) {
        /* 0: worker, 1: stdout, 2: stderr, 3: stdin, 4: children */
        pf[0] = (struct pollfd){kiln__agent.chan, POLLIN, 0};
        pf[1] = (struct pollfd){c->out, POLLIN, 0};
        pf[2] = (struct pollfd){c->err, POLLIN, 0};
        pf[3] = (struct pollfd){c->in, POLLOUT, 0};
        pf[4] = (struct pollfd){sfd, POLLIN, 0};
        if (c->out < 0 && c->err < 0 && exited)
            break;
        int wait = 1000;
        if (pend.len > 0) {
            int64_t left = pend.first + KILN_OUT_COALESCE_MS - kiln_agent_now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        if (c->cpu_limit_ms > 0 && !exited) {
            int64_t left = next_check - kiln_agent_now_ms();
            wait = left < 0 ? 0 : left < wait ? (int)left : wait;
        }
        if (poll(pf, 5, wait) < 0 && errno != EINTR)
            break;
        if (c->cpu_limit_ms > 0 && !exited && kiln_agent_now_ms() >= next_check) {
            next_check = kiln_agent_now_ms() + tick;
            if (!c->cpu_over && kiln_cpu_used_ms(c->pid) - c->cpu_base > c->cpu_limit_ms) {
                c->cpu_over = 1; /* all of it, threads and children: the limit is the job's */
                kiln_run_kill(c->pid);
            }
        }
        if (pend.len > 0 && kiln_agent_now_ms() - pend.first >= KILN_OUT_COALESCE_MS)
            kiln_run_out_flush();
        if (kiln_agent_now_ms() - kiln__agent.last_sent >= 1000)
            kiln_agent_send_beat(); /* "still here": the worker tells a busy job from a hung VM */
        if (pf[0].revents) {
            /* The worker sends nothing mid-run but "kill"; EOF means it is
             * gone. Either way the job ends now. */
            n = read(kiln__agent.chan, buf, sizeof(buf));
            if (n <= 0)
                kiln_agent_exit(1);
            kiln_run_kill(c->pid);
        }
        for (int i = 1; i <= 2; i++) {
            int *fd = i == 1 ? &c->out : &c->err;
            if (*fd >= 0 && pf[i].revents)
                kiln_run_out_read(i, fd);
        }
        if (c->in >= 0 && pf[3].revents) {
            n = write(c->in, c->in_next, c->in_left);
            if (n > 0) {
                c->in_next += n;
                c->in_left -= (size_t)n;
            }
            if (c->in_left == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                close(c->in);
                c->in = -1;
            }
        }
        if (pf[4].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) > 0)
                ;
        }
        if (!exited && reap(c->pid, &status)) {
            exited = 1;
            /* The job is its main process: when it ends, so does
             * everything it left behind, and its pipes reach EOF. */
            kiln_run_kill(c->pid);
        }
    }
    kiln_run_out_flush();
    int64_t wall = kiln_agent_now_ms() - t0;
    if (c->exec_status >= 0) {
        /* its execve failed: kiln's setup (the program is not runnable
         * here), not the job's doing; EOF says it ran */
        char why[400];
        int len = snprintf(why, sizeof(why), "could not start the job: ");
        ssize_t n = read(c->exec_status, why + len, sizeof(why) - (size_t)len - 1);
        if (n > 0) {
            why[len + n] = '\0';
            kiln_agent_send_failure(why, 0);
            return;
        }
    }
    if (c->in >= 0)
        close(c->in);
    while (waitpid(-1, NULL, 0) > 0) /* the stragglers kiln_run_kill() ended */
        ;
    free(c->inbuf);
    if (kiln__agent.reached_end >= 0) /* every process of the run is gone */
        kiln__agent.reached_end = kiln_end_reached();
    if (c->collect != NULL)
        send_collected(c->collect);
    if (c->collect_globs != NULL) { /* nothing of the job runs any more */
        /* how it ended, now: should its files not all come in time, the
         * worker still knows (the same figures come again in "exit") */
        kiln_agent_send_end("collecting", status, wall, c->cpu_base, c->cpu_over);
        kiln_collect_send(c->collect_globs, c->collect_bytes, c->collect_files, c->collect_names);
    }
    kiln_agent_send_exit(status, wall, c->cpu_base, c->cpu_over);
}

/* A sandbox forked by a zygote: its interpreter, PID `job`, waits on the
 * pipes the zygote left at fds 4 (its stdin), 5 and 6 (stdout, stderr). */
void kiln_run_adopt(struct kiln_child *c, pid_t job)
{
    memset(c, 0, sizeof(*c));
    c->pid = job;
    c->exec_status = -1;
    c->in = 4;
    c->out = 5;
    c->err = 6;
    for (int fd = 4; fd <= 6; fd++)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(c->in, F_SETFL, O_NONBLOCK);
}

