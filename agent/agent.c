/*
 * kiln-agent: PID 1 of a sandbox. It says "ready", takes one "run", starts
 * the job, forwards its stdout and stderr as they come, and reports how it
 * ended. One agent serves one job: the sandbox is thrown away after.
 *
 *   kiln-agent [--jail MOUNTPOINT [--root-fd N]] [--tmp-mb N] [--fd N]
 *   /init                          (a microVM's, from its initramfs: vm.c)
 *   kiln-agent --adopt PID         (a sandbox forked by a zygote: zygote.c)
 *
 * --jail builds the jail's root first (the worker cloned the namespaces),
 * from the runtime image open at --root-fd when given; --fd names the
 * channel to the worker (default 3). In a VM the host speaks first
 * ("hello", with the time) and the agent answers "ready".
 *
 * A "prestart" message before "run" starts the interpreter ahead of the
 * job (warm pools): it then waits for the job's argv and env on its stdin.
 * A "zygote" message instead (a template jail, --zygote-lib-fd given)
 * starts it as a fork server that takes over the channel (zygote.c); each
 * sandbox it forks execs this agent again with --adopt: PID 1 of its own
 * namespaces, its interpreter PID already waiting on fds 4-6.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "wire/proto.h"

static int chan = 3;
static struct kiln_vm vm;
static int in_vm;            /* PID 1 of a microVM, not of a jail */
static int served;           /* the job ran: EOF now ends the VM */

/* The agent is done. In a VM that is the VM's end. */
__attribute__((noreturn)) static void agent_exit(int code)
{
    if (in_vm)
        kiln_vm_halt();
    _exit(code);
}

static int64_t now_ms(void);
static int64_t last_sent;    /* when the agent last said something */

/* Send one packed message; the worker being gone ends the agent. */
static void send_msg(msgpack_sbuffer *sb)
{
    last_sent = now_ms();
    kiln_proto_finish(sb);
    int r = kiln_write_all(chan, sb->data, sb->size);
    msgpack_sbuffer_destroy(sb);
    if (r < 0)
        agent_exit(1);
}

/* Why the run cannot go on. `job_fault`: the job's input is why (the
 * worker ends it as the job's `error`), not kiln (`internal`, retried). */
static void send_failure(const char *reason, int job_fault)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    kiln_proto_begin_msg(&sb, &pk, "error", job_fault ? 2 : 1);
    kiln_mp_str(&pk, "reason");
    kiln_mp_str(&pk, reason);
    if (job_fault) {
        kiln_mp_str(&pk, "fault");
        kiln_mp_str(&pk, "job");
    }
    send_msg(&sb);
}

static void send_error(const char *reason)
{
    send_failure(reason, 0);
}

/* `warm`: an interpreter was started ahead already (a VM restored from a
 * snapshot taken after "prestart"). */
static void send_ready(int warm)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    kiln_proto_begin_msg(&sb, &pk, "ready", 3);
    kiln_mp_str(&pk, "v");
    msgpack_pack_int(&pk, KILN_PROTO_VERSION);
    kiln_mp_str(&pk, "pid");
    msgpack_pack_int(&pk, getpid());
    kiln_mp_str(&pk, "warm");
    if (warm)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    send_msg(&sb);
}

static void send_out(int fd, const void *data, size_t len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    kiln_proto_begin_msg(&sb, &pk, "out", 2);
    kiln_mp_str(&pk, "fd");
    msgpack_pack_int(&pk, fd);
    kiln_mp_str(&pk, "data");
    kiln_mp_bin(&pk, data, len);
    send_msg(&sb);
}

static void send_exit(int status, int64_t wall_ms)
{
    struct rusage ru;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    getrusage(RUSAGE_CHILDREN, &ru); /* every process of the job, all reaped */
    int64_t cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                     (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
    long long peak_kb = -1, oom_kills = 0;
    if (in_vm)
        kiln_vm_stats(&vm, &peak_kb, &oom_kills);
    kiln_proto_begin_msg(&sb, &pk, "exit", in_vm ? 7 : 5);
    kiln_mp_str(&pk, "code");
    if (WIFEXITED(status))
        msgpack_pack_int(&pk, WEXITSTATUS(status));
    else
        msgpack_pack_nil(&pk);
    kiln_mp_str(&pk, "signal");
    if (WIFSIGNALED(status))
        msgpack_pack_int(&pk, WTERMSIG(status));
    else
        msgpack_pack_nil(&pk);
    kiln_mp_str(&pk, "wall_ms");
    msgpack_pack_int64(&pk, wall_ms);
    kiln_mp_str(&pk, "cpu_ms");
    msgpack_pack_int64(&pk, cpu_ms);
    kiln_mp_str(&pk, "max_rss_kb");
    msgpack_pack_int64(&pk, ru.ru_maxrss);
    if (in_vm) { /* the guest kernel's own accounting of the job's cgroup */
        kiln_mp_str(&pk, "peak_kb");
        msgpack_pack_int64(&pk, peak_kb);
        kiln_mp_str(&pk, "oom_kills");
        msgpack_pack_int64(&pk, oom_kills);
    }
    send_msg(&sb);
}

/* Block until one whole message has arrived; NULL on EOF or a bad stream. */
static int read_msg(struct kiln_proto_reader *rd, msgpack_unpacked *u)
{
    for (;;) {
        const void *msg;
        size_t len;
        int r = kiln_proto_reader_next(rd, &msg, &len);
        if (r < 0)
            return r;
        if (r == 1)
            return kiln_mp_unpack(u, msg, len);
        char buf[65536];
        ssize_t n = read(chan, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 && in_vm && !served) {
            /* the host side went away (or the VM was restored from a
             * snapshot): reopen and wait for the next host */
            close(chan);
            if ((chan = kiln_vm_chan(&vm)) < 0)
                return -EPIPE;
            kiln_proto_reader_free(rd);
            kiln_proto_reader_init(rd, KILN_PROTO_MAX_MSG);
            continue;
        }
        if (n <= 0)
            return n == 0 ? -EPIPE : -errno;
        if ((r = kiln_proto_reader_feed(rd, buf, (size_t)n)) < 0)
            return r;
    }
}

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

static int parse_run(const msgpack_object *m, struct kiln_exec_spec *spec,
                     const char **stdin_data, size_t *stdin_len)
{
    const msgpack_object *o;
    memset(spec, 0, sizeof(*spec));
    if ((spec->argv = strv(kiln_mp_get(m, "argv"))) == NULL || spec->argv[0] == NULL)
        return -EINVAL;
    if ((spec->env = strv(kiln_mp_get(m, "env"))) == NULL)
        return -EINVAL;
    spec->cwd = "/work";
    if ((o = kiln_mp_get(m, "cwd")) != NULL && (spec->cwd = kiln_mp_strdup(o)) == NULL)
        return -EINVAL;
    if ((o = kiln_mp_get(m, "files")) != NULL && o->type == MSGPACK_OBJECT_ARRAY) {
        spec->files = calloc(o->via.array.size + 1, sizeof(*spec->files));
        if (spec->files == NULL)
            return -ENOMEM;
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            const msgpack_object *f = &o->via.array.ptr[i];
            int64_t mode;
            if (f->type != MSGPACK_OBJECT_ARRAY || f->via.array.size != 3 ||
                f->via.array.ptr[1].type != MSGPACK_OBJECT_BIN ||
                kiln_mp_int(&f->via.array.ptr[2], 0, 07777, &mode) < 0 ||
                (spec->files[i].path = kiln_mp_strdup(&f->via.array.ptr[0])) == NULL)
                return -EINVAL;
            spec->files[i].data = f->via.array.ptr[1].via.bin.ptr;
            spec->files[i].len = f->via.array.ptr[1].via.bin.size;
            spec->files[i].mode = (unsigned)mode;
            spec->nfiles++;
        }
    }
    spec->rl_fsize = -1;
    if ((o = kiln_mp_get(m, "rlimits")) != NULL) {
        const msgpack_object *v;
        int64_t n;
        if ((v = kiln_mp_get(o, "cpu")) && kiln_mp_int(v, 0, INT64_MAX, &n) == 0)
            spec->rl_cpu = n;
        if ((v = kiln_mp_get(o, "fsize")) && kiln_mp_int(v, 0, INT64_MAX, &n) == 0)
            spec->rl_fsize = n;
        if ((v = kiln_mp_get(o, "nofile")) && kiln_mp_int(v, 0, INT64_MAX, &n) == 0)
            spec->rl_nofile = n;
    }
    *stdin_data = NULL;
    *stdin_len = 0;
    if ((o = kiln_mp_get(m, "stdin")) != NULL && o->type == MSGPACK_OBJECT_BIN) {
        *stdin_data = o->via.bin.ptr;
        *stdin_len = o->via.bin.size;
    }
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Stop every process of the job. As PID 1 of a pid namespace, kill(-1)
 * reaches all of them and nothing outside; otherwise the job's group. */
static void kill_job(pid_t child)
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

/* The job's process, once forked: its pipes, and what is left to write to
 * its stdin. */
struct child {
    pid_t pid;
    int in, out, err;
    char *inbuf;          /* owned: envelope (warm) + the job's stdin */
    const char *in_next;
    size_t in_left;
};

/* Fork and exec `spec` confined (exec.c). Returns 0 once execve succeeded,
 * or -1 with why in `why`. */
static int start_child(const struct kiln_exec_spec *spec, struct child *c, char *why, size_t whylen)
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
static int write_files_now(const struct kiln_exec_spec *spec, char *why, size_t whylen)
{
    char step[300];
    if (spec->nfiles == 0)
        return 0;
    /* In a jail the agent is in the sandbox's cgroup: it writes them
     * itself, as the job's uid. In a VM a helper in the job's cgroup does,
     * so their pages count against the job's memory. */
    if (!in_vm) {
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
static char *envelope(const struct kiln_exec_spec *spec, const char *in, size_t in_len,
                      size_t *total)
{
    size_t argc = 0, len = 24;
    for (char **a = spec->argv; *a; a++, argc++)
        len += strlen(*a) + 1;
    for (char **e = spec->env; *e; e++)
        len += strlen(*e) + 1;
    char *buf = malloc(4 + len + in_len);
    if (buf == NULL)
        return NULL;
    char *p = buf + 4;
    p += sprintf(p, "%zu", argc);
    for (char **a = spec->argv; *a; a++)
        p += sprintf(p, "%c%s", '\0', *a);
    for (char **e = spec->env; *e; e++)
        p += sprintf(p, "%c%s", '\0', *e);
    kiln_proto_header((unsigned char *)buf, (uint32_t)(p - buf - 4));
    if (in_len > 0)
        memcpy(p, in, in_len);
    *total = (size_t)(p - buf) + in_len;
    return buf;
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

static void out_flush(void)
{
    if (pend.len > 0)
        send_out(pend.fd, pend.buf, pend.len);
    pend.len = 0;
}

static void out_add(int fd, const char *data, size_t len)
{
    if (pend.len > 0 && (pend.fd != fd || pend.len + len > sizeof(pend.buf)))
        out_flush();
    if (pend.len == 0) {
        pend.fd = fd;
        pend.first = now_ms();
    }
    memcpy(pend.buf + pend.len, data, len);
    pend.len += len;
}

static void supervise(struct child *c, int64_t t0)
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
    /* a child that ended before we watched: its SIGCHLD is pending and the
     * signalfd reports it at once */
    struct pollfd pf[5];
    for (;;) {
        /* 0: worker, 1: stdout, 2: stderr, 3: stdin, 4: children */
        pf[0] = (struct pollfd){chan, POLLIN, 0};
        pf[1] = (struct pollfd){c->out, POLLIN, 0};
        pf[2] = (struct pollfd){c->err, POLLIN, 0};
        pf[3] = (struct pollfd){c->in, POLLOUT, 0};
        pf[4] = (struct pollfd){sfd, POLLIN, 0};
        if (c->out < 0 && c->err < 0 && exited)
            break;
        int wait = 1000;
        if (pend.len > 0) {
            int64_t left = pend.first + KILN_OUT_COALESCE_MS - now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        if (poll(pf, 5, wait) < 0 && errno != EINTR)
            break;
        if (pend.len > 0 && now_ms() - pend.first >= KILN_OUT_COALESCE_MS)
            out_flush();
        if (now_ms() - last_sent >= 1000) {
            /* "still here": the worker tells a busy job from a hung VM */
            msgpack_sbuffer sb;
            msgpack_packer pk;
            kiln_proto_begin_msg(&sb, &pk, "beat", 0);
            send_msg(&sb);
        }
        if (pf[0].revents) {
            /* The worker sends nothing mid-run but "kill"; EOF means it is
             * gone. Either way the job ends now. */
            n = read(chan, buf, sizeof(buf));
            if (n <= 0)
                agent_exit(1);
            kill_job(c->pid);
        }
        for (int i = 1; i <= 2; i++) {
            int *fd = i == 1 ? &c->out : &c->err;
            if (*fd < 0 || !pf[i].revents)
                continue;
            n = read(*fd, buf, sizeof(buf));
            if (n > 0) {
                out_add(i, buf, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(*fd);
                *fd = -1;
            }
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
            kill_job(c->pid);
        }
    }
    out_flush();
    int64_t wall = now_ms() - t0;
    if (c->in >= 0)
        close(c->in);
    while (waitpid(-1, NULL, 0) > 0) /* the stragglers kill_job() ended */
        ;
    free(c->inbuf);
    send_exit(status, wall);
}

/* A VM restored from a snapshot wakes with the wall clock of the moment
 * the snapshot was taken: the host's time comes with "hello". */
static void set_clock(const msgpack_object *o)
{
    int64_t ns;
    if (!in_vm || o == NULL || kiln_mp_int(o, 1, INT64_MAX, &ns) < 0)
        return;
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    clock_settime(CLOCK_REALTIME, &ts);
}

/* A VM restored from a snapshot also wakes with the snapshot's random
 * state, which every VM restored from it shares: the host's fresh bytes
 * are credited to the guest kernel's pool and its generator reseeded, so
 * nothing started after "hello" (an interpreter's hash seed, a job's
 * random numbers) repeats between VMs. */
static int reseed(const msgpack_object *o)
{
    struct {
        int entropy_count;
        int buf_size;
        unsigned char buf[KILN_HELLO_SEED_BYTES];
    } e;
    if (o == NULL || o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != KILN_HELLO_SEED_BYTES)
        return -1;
    e.entropy_count = 8 * KILN_HELLO_SEED_BYTES;
    e.buf_size = KILN_HELLO_SEED_BYTES;
    memcpy(e.buf, o->via.bin.ptr, KILN_HELLO_SEED_BYTES);
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC), r = -1;
    if (fd >= 0) {
        r = ioctl(fd, RNDADDENTROPY, &e) < 0 ? -1 : 0;
        if (r == 0 && ioctl(fd, RNDRESEEDCRNG) < 0)
            r = -1;
        close(fd);
    }
    explicit_bzero(&e, sizeof(e));
    return r;
}

/* The job's memory and pids limits: in a jail the worker sets them on the
 * host; in a VM the agent does, on the job's cgroup in the guest. */
static int apply_limits(const msgpack_object *m)
{
    const msgpack_object *l = kiln_mp_get(m, "limits"), *o;
    int64_t mem = 0, pids = 0;
    if (!in_vm || l == NULL)
        return 0;
    if ((o = kiln_mp_get(l, "memory_bytes")) != NULL)
        kiln_mp_int(o, 0, INT64_MAX, &mem);
    if ((o = kiln_mp_get(l, "pids")) != NULL)
        kiln_mp_int(o, 0, INT64_MAX, &pids);
    return kiln_vm_limit(&vm, mem, pids) == 0 ? 0 : -1;
}

static void send_started(void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    kiln_proto_begin_msg(&sb, &pk, "started", 0);
    send_msg(&sb);
}

/* The template jail's interpreter becomes a fork server (zygote.c) that
 * takes over the channel; the agent only waits for it to end, which ends
 * the template and every sandbox forked from it. */
__attribute__((noreturn))
static void serve_zygote(const struct kiln_exec_spec *spec, int lib_fd, unsigned tmp_mb)
{
    extern char **environ;
    char lib[40], fds[64], mb[40];
    char *env[256];
    size_t n = 0;
    int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int bpf = (int)syscall(SYS_memfd_create, "kiln-seccomp", MFD_CLOEXEC);
    if (lib_fd < 0 || exe < 0 || bpf < 0 || kiln_seccomp_export(bpf) < 0) {
        send_error(lib_fd < 0 ? "agent: no zygote library" : "agent: zygote setup failed");
        agent_exit(1);
    }
    snprintf(lib, sizeof(lib), "KILN_ZYGOTE=/proc/self/fd/%d", lib_fd);
    snprintf(fds, sizeof(fds), "KILN_ZYGOTE_FDS=%d,%d,%d", chan, exe, bpf);
    snprintf(mb, sizeof(mb), "KILN_ZYGOTE_TMP_MB=%u", tmp_mb);
    for (char **e = spec->env; *e != NULL && n < 250; e++)
        env[n++] = *e;
    env[n++] = lib;
    env[n++] = fds;
    env[n++] = mb;
    env[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t mask;
        sigemptyset(&mask);
        sigprocmask(SIG_SETMASK, &mask, NULL);
        signal(SIGPIPE, SIG_DFL);
        int fd[] = {chan, exe, bpf, lib_fd};
        for (size_t i = 0; i < 4; i++)
            fcntl(fd[i], F_SETFD, 0);
        /* stdout nowhere; stderr stays the worker's (its log) */
        dup2(0, 1);
        if (chdir(spec->cwd) == 0) {
            environ = env;
            execvp(spec->argv[0], spec->argv);
        }
        fprintf(stderr, "kiln-agent: zygote %s: %s\n", spec->argv[0], strerror(errno));
        _exit(127);
    }
    close(exe);
    close(bpf);
    if (pid < 0) {
        send_error("agent: fork failed");
        agent_exit(1);
    }
    close(chan); /* the zygote's now */
    pid_t p;
    while ((p = waitpid(-1, NULL, 0)) != pid && (p > 0 || errno == EINTR))
        ;
    agent_exit(0);
}

/* A sandbox forked by a zygote: its interpreter, PID `job`, waits on the
 * pipes the zygote left at fds 4 (its stdin), 5 and 6 (stdout, stderr). */
static void adopt(struct child *c, pid_t job)
{
    memset(c, 0, sizeof(*c));
    c->pid = job;
    c->in = 4;
    c->out = 5;
    c->err = 6;
    for (int fd = 4; fd <= 6; fd++)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(c->in, F_SETFL, O_NONBLOCK);
}

int main(int argc, char **argv)
{
    const char *jail = NULL;
    unsigned tmp_mb = 256;
    int root_fd = -1;
    const char *proxy_dir = NULL, *adopt_failed = NULL;
    pid_t adopted = 0;
    int lib_fd = -1;
    struct kiln_proto_reader rd;
    msgpack_unpacked u;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--jail") == 0 && i + 1 < argc)
            jail = argv[++i];
        else if (strcmp(argv[i], "--tmp-mb") == 0 && i + 1 < argc)
            tmp_mb = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc)
            chan = atoi(argv[++i]);
        else if (strcmp(argv[i], "--root-fd") == 0 && i + 1 < argc)
            root_fd = atoi(argv[++i]);
        else if (strcmp(argv[i], "--proxy-dir") == 0 && i + 1 < argc)
            proxy_dir = argv[++i];
        else if (strcmp(argv[i], "--zygote-lib-fd") == 0 && i + 1 < argc)
            lib_fd = atoi(argv[++i]);
        else if (strcmp(argv[i], "--adopt") == 0 && i + 1 < argc)
            adopted = atoi(argv[++i]);
        else if (strcmp(argv[i], "--adopt-failed") == 0 && i + 1 < argc)
            adopt_failed = argv[++i];
        else if (getpid() == 1 && strncmp(argv[i], "--", 2) != 0)
            continue; /* a microVM's init gets the kernel's leftover words */
        else {
            fprintf(stderr, "usage: kiln-agent [--jail MOUNTPOINT [--root-fd N]] [--tmp-mb N] [--fd N]\n");
            return 2;
        }
    }
    /* The job can read PID 1's /proc/1/cmdline: keep the host paths in
     * copies and blank them there (the kernel reads them from this
     * process's memory each time). */
    for (int i = 1; i < argc; i++)
        if (argv[i] == jail || argv[i] == proxy_dir) {
            char *copy = strdup(argv[i]);
            memset(argv[i], 0, strlen(argv[i]));
            if (argv[i] == jail)
                jail = copy;
            else
                proxy_dir = copy;
        }
    signal(SIGPIPE, SIG_IGN);
    char err[512] = "";
    /* PID 1 without a jail to build: the init of a microVM */
    in_vm = getpid() == 1 && jail == NULL && adopted == 0 && adopt_failed == NULL;
    if (adopt_failed != NULL) {
        send_error(adopt_failed);
        return 1;
    }
    if (in_vm) {
        /* a boot that failed is reported to the host ("error" after its
         * hello) when at least the channel is there */
        kiln_vm_boot(&vm, err, sizeof(err));
        if ((chan = kiln_vm_chan(&vm)) < 0) {
            fprintf(stderr, "kiln-agent: %s\n", err[0] ? err : "no channel to the host"); /* console */
            agent_exit(1);
        }
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0 && devnull != 0)
        dup2(devnull, 0);
    if (jail != NULL && kiln_jail_enter(jail, root_fd, proxy_dir, tmp_mb, err, sizeof(err)) < 0) {
        send_error(err);
        return 1;
    }
    kiln_proto_reader_init(&rd, KILN_PROTO_MAX_MSG);
    msgpack_unpacked_init(&u);
    /* A jail's worker is there from the start. A VM's host may connect
     * later (or to a VM restored from a snapshot): it says "hello" first,
     * with the time, and gets "ready" back. */
    struct child warm;
    int have_warm = 0;
    if (adopted > 0) {
        adopt(&warm, adopted);
        have_warm = 1;
    }
    if (!in_vm)
        send_ready(have_warm);
    /* SIGCHLD is read from a signalfd, never delivered */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    char why[600];
    for (;;) {
        int r = read_msg(&rd, &u);
        if (r < 0)
            agent_exit(r == -EPIPE ? 0 : 1);
        const msgpack_object *t = kiln_mp_get(&u.data, "t");
        if (t == NULL || kiln_mp_streq(t, "kill"))
            agent_exit(0);
        if (kiln_mp_streq(t, "hello")) {
            if (err[0] != '\0') {
                send_error(err);
                agent_exit(1);
            }
            set_clock(kiln_mp_get(&u.data, "now_ns"));
            if (in_vm && reseed(kiln_mp_get(&u.data, "seed")) < 0) {
                send_error("agent: could not reseed the guest's random number generator");
                agent_exit(1);
            }
            send_ready(have_warm);
            continue;
        }
        struct kiln_exec_spec spec;
        const char *in;
        size_t in_len;
        int prestart = kiln_mp_streq(t, "prestart"), zygote = kiln_mp_streq(t, "zygote");
        if (!prestart && !zygote && !kiln_mp_streq(t, "run"))
            continue;
        if (parse_run(&u.data, &spec, &in, &in_len) < 0 || (!prestart && apply_limits(&u.data) < 0)) {
            send_error("agent: malformed message");
            agent_exit(1);
        }
        if (zygote) {
            if (have_warm || in_vm || jail == NULL) {
                send_error("agent: a zygote starts only in a fresh jail");
                agent_exit(1);
            }
            serve_zygote(&spec, lib_fd, tmp_mb);
        }
        if (prestart) {
            /* the interpreter starts now, confined, and waits for its job */
            if (have_warm || start_child(&spec, &warm, why, sizeof(why)) < 0) {
                send_error(have_warm ? "agent: already started" : why);
                agent_exit(1);
            }
            have_warm = 1;
            send_started();
            continue;
        }
        if (kiln_mp_true(&u.data, "proxy") &&
            kiln_relay_start() < 0) {
            send_error("agent: could not start the network relay");
            agent_exit(1);
        }
        struct child c;
        int64_t t0 = now_ms();
        if (have_warm) {
            size_t total;
            c = warm;
            why[0] = '\0';
            if (kiln_exec_rlimits(&spec, c.pid) < 0) /* it waits on stdin: no race */
                snprintf(why, sizeof(why), "agent: prlimit failed");
            int r = why[0] != '\0' ? -1 : write_files_now(&spec, why, sizeof(why));
            if (r < 0 || (c.inbuf = envelope(&spec, in, in_len, &total)) == NULL) {
                kill_job(c.pid);
                send_failure(r == 0 && why[0] == '\0' ? "agent: out of memory" : why, r == KILN_EXEC_JOB_FAULT);
                agent_exit(1);
            }
            c.in_next = c.inbuf;
            c.in_left = total;
        } else {
            int r = start_child(&spec, &c, why, sizeof(why));
            if (r < 0) {
                send_failure(why, r == KILN_EXEC_JOB_FAULT);
                agent_exit(1);
            }
            c.in_next = in;
            c.in_left = in_len;
        }
        supervise(&c, t0);
        served = 1;
        /* single use: wait for the worker to hang up or say kill */
        while (read_msg(&rd, &u) == 0)
            ;
        agent_exit(0);
    }
}
