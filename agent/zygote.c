/*
 * libkiln-zygote: a prestarted interpreter as a fork server, as Android's
 * zygote and CPython's forkserver are. A python interpreter is started once,
 * in a template jail that never runs a job, and loads this library:
 *
 *   import ctypes; ctypes.PyDLL(os.environ["KILN_ZYGOTE"]).kiln_zygote_serve()
 *
 * For each sandbox the worker asks for, it clones itself into fresh pid,
 * mount, network, ipc and uts namespaces, sharing its memory (CLONE_VM,
 * waiting as vfork's parent would) until the clone execs the agent: only
 * the job's process gets a copy of the template. There the clone (PID 1) takes the
 * sandbox's cgroups, puts fresh /tmp, /work, /dev/shm and /proc over the
 * template's, forks the job's process and becomes kiln-agent, which serves
 * the one job as in any jail. The job's process drops to the job's uid with
 * no capabilities, no_new_privs and the job's seccomp filter, and returns 0
 * from kiln_zygote_serve(): the interpreter goes on to read its job, fully
 * initialised, without the ~9 ms of CPU a fresh python3 spends starting.
 *
 * Each sandbox is a user namespace of its own inside the template's: its
 * root is the template's, its job's uid 1000 is the template's 1000 + i,
 * where the worker gives every live sandbox its own i, so that no two
 * concurrent jobs share a host uid and with it a per-user budget.
 *
 * Talking to the worker (the template's channel, a Unix stream socket):
 *   worker -> zygote  3 bytes 'F', i (big-endian u16) with SCM_RIGHTS: the
 *                     sandbox's agent channel, then the cgroup.procs files
 *                     to join (0-2)
 *   zygote -> worker  struct kiln_zygote_reply, with the new sandbox's
 *                     pidfd as SCM_RIGHTS when err is 0. The first reply
 *                     (pid 0) says the zygote is up.
 *
 * Set up by the template's agent (agent.c), in the environment:
 *   KILN_ZYGOTE_FDS=CHANNEL,AGENT,FILTER   its channel, kiln-agent's binary,
 *                     and the job's seccomp filter as BPF
 *   KILN_ZYGOTE_TMP_MB=N                   the size of /tmp and of /work
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "wire/proto.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define KILN_ZYGOTE_EXPORT __attribute__((visibility("default")))

static int ctl = -1, agent_exe = -1;
static int exec_mode;     /* an exec template: jobs exec their program */
#define PID1_STACK (256u << 10)
#ifdef __SANITIZE_ADDRESS__
/* (a sanitized agent's exec template: ASan cannot follow a task running
 * on a stack of its own in another's memory, so there PID 1 is a copy) */
#define PID1_SHARES_MEMORY 0
#else
#define PID1_SHARES_MEMORY 1
#endif
static char *pid1_stack;  /* a sandbox's PID 1 runs on it until its exec */
static sigjmp_buf job_return; /* where a sandbox's job process comes back */
static void (*agent_here)(pid_t, int); /* an exec template's PID 1 serves here */

void kiln_zygote_agent_here(void (*fn)(pid_t job, int exec_status))
{
    agent_here = fn;
}
static unsigned tmp_mb = 256;
static struct sock_fprog filter;

/* CPython's own fork hooks (os.fork runs them): present when the library
 * is loaded by python, which exports its C API to extension modules. */
static void py_hook(const char *name)
{
    void (*f)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, name);
    if (f != NULL)
        f();
}

static int reply(int err, pid_t pid, int pidfd)
{
    struct kiln_zygote_reply r = {KILN_ZYGOTE_MAGIC, err, pid};
    struct iovec iov = {&r, sizeof(r)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (pidfd >= 0) {
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof(u.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pidfd, sizeof(int));
    }
    return sendmsg(ctl, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(r) ? 0 : -1;
}

/* One request: 3 bytes and up to ZYGOTE_FDS fds: the sandbox's channel,
 * then the cgroup.procs files it joins (v1: memory, pids, cpuacct).
 * Returns their count, 0 at EOF. */
#define ZYGOTE_FDS 4
static int next_request(int fds[ZYGOTE_FDS], unsigned *index)
{
    unsigned char b[3];
    struct iovec iov = {b, sizeof(b)};
    union {
        char buf[CMSG_SPACE(ZYGOTE_FDS * sizeof(int))];
        struct cmsghdr align;
    } u;
    for (;;) {
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                             .msg_controllen = sizeof(u.buf)};
        struct pollfd pf = {ctl, POLLIN, 0};
        /* sandboxes that ended: reaped now and then */
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (poll(&pf, 1, 1000) <= 0)
            continue;
        ssize_t n = recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        int nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = ZYGOTE_FDS; i < nfds; i++) { /* more than asked for: not kept */
                    int extra;
                    memcpy(&extra, CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof(int));
                    close(extra);
                }
                nfds = nfds > ZYGOTE_FDS ? ZYGOTE_FDS : nfds;
                memcpy(fds, CMSG_DATA(c), (size_t)nfds * sizeof(int));
            }
        *index = (unsigned)b[1] << 8 | b[2];
        if (n == (ssize_t)sizeof(b) && b[0] == 'F' && nfds >= 1)
            return nfds;
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        reply(EINVAL, 0, -1);
    }
}

/* Put fds[i] at targets[i], open across exec, whatever their numbers were. */
static int place(int *fds, const int *targets, int n)
{
    for (int i = 0; i < n; i++)
        if ((fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 20)) < 0)
            return -1;
    for (int i = 0; i < n; i++)
        if (dup2(fds[i], targets[i]) < 0)
            return -1;
    return 0;
}

/* The job's process, PID 2 of the sandbox: confined, then back to python.
 * `fds`: its stdin, stdout, stderr, a status pipe for what failed, and
 * (an exec template) the pipe its execve's failure goes to. */
static void become_job(int fds[5])
{
    static const int at[5] = {0, 1, 2, 3, KILN_ZYGOTE_JOB_STATUS_FD};
    int n = exec_mode ? 5 : 4;
    char why[256];
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    py_hook("PyOS_AfterFork_Child");
    setsid();
    if (place(fds, at, n) < 0 || syscall(SYS_close_range, n, ~0U, 0) < 0)
        _exit(127); /* no status pipe to say so: the agent reports EOF */
    if (exec_mode)
        fcntl(KILN_ZYGOTE_JOB_STATUS_FD, F_SETFD, FD_CLOEXEC); /* EOF once it execs */
    umask(022);
    if (kiln_drop_privileges(why, sizeof(why)) < 0) {
        dprintf(3, "zygote: %s", why);
        _exit(127);
    }
    if (chdir("/work") < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) < 0) {
        dprintf(3, "zygote: confine: %s", strerror(errno));
        _exit(127);
    }
    close(3);
}

/* Become kiln-agent on channel fds[0], serving `job` whose stdin, stdout
 * and stderr are fds[1..3], or saying why there is none (`failed`). */
__attribute__((noreturn)) static void exec_agent(int fds[5], pid_t job, const char *failed)
{
    static const int at[5] = {3, 4, 5, 6, KILN_ZYGOTE_AGENT_STATUS_FD};
    static char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    char pid[16], st[16];
    snprintf(pid, sizeof(pid), "%d", (int)job);
    snprintf(st, sizeof(st), "%d", KILN_ZYGOTE_AGENT_STATUS_FD);
    char *argv[] = {"kiln-agent", failed ? "--adopt-failed" : "--adopt", failed ? (char *)failed : pid,
                    exec_mode && !failed ? "--exec-status" : NULL, st, NULL};
    int n = failed ? 1 : exec_mode ? 5 : 4;
    int exe = fcntl(agent_exe, F_DUPFD_CLOEXEC, 20); /* out of the way of 3-7 */
    if (exe < 0 || place(fds, at, n) < 0 ||
        syscall(SYS_close_range, at[n - 1] + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        _exit(126);
    syscall(SYS_execveat, exe, "", argv, envp, AT_EMPTY_PATH);
    _exit(127);
}

/* Write the new sandbox's id maps: its root is ours, its 1000 our 1000 +
 * index. Returns 0 or -errno. */
static int write_maps(pid_t pid, unsigned index)
{
    char path[64], map[64];
    snprintf(map, sizeof(map), "0 0 1\n%d %u 1\n", KILN_JOB_UID, KILN_JOB_UID + index);
    for (int g = 0; g < 2; g++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, g ? "gid_map" : "uid_map");
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        ssize_t n = write(fd, map, strlen(map));
        int e = n == (ssize_t)strlen(map) ? 0 : -errno;
        close(fd);
        if (e < 0)
            return e;
    }
    return 0;
}

/* PID 1 of a new sandbox, still the zygote's copy. Returns only in the
 * job's process. `go` says when its id maps are written. */
static void sandbox(const int *fds, int nfds, int go)
{
    char why[300] = "";
    int agent[5] = {fds[0], -1, -1, -1, -1};
    int in[2], out[2], err[2], st[2], ex[2] = {-1, -1};
    char c;
    close(ctl);
    signal(SIGCHLD, SIG_DFL); /* the zygote's SIG_IGN is not the sandbox's */
    if (read(go, &c, 1) != 1) /* no maps: the zygote failed or died */
        _exit(126);
    close(go);
    /* its ids are mapped now: become the namespace's root by name too */
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        snprintf(why, sizeof(why), "zygote: setresuid: %s", strerror(errno));
    /* everything from here on is counted in the sandbox's cgroups */
    for (int i = 1; i < nfds; i++) {
        if (write(fds[i], "0", 1) != 1 && why[0] == '\0')
            snprintf(why, sizeof(why), "zygote: join cgroup: %s", strerror(errno));
        close(fds[i]);
    }
    /* its cgroups are its root: /proc/self/cgroup names no host path */
    if (why[0] == '\0' && unshare(CLONE_NEWCGROUP) < 0)
        snprintf(why, sizeof(why), "zygote: cgroup namespace: %s", strerror(errno));
    if (why[0] == '\0' && chdir("/") < 0)
        snprintf(why, sizeof(why), "zygote: chdir /: %s", strerror(errno));
    if (why[0] == '\0')
        kiln_jail_fork_scratch(tmp_mb, why, sizeof(why));
    if (why[0] == '\0' && (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
                           pipe2(err, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC) < 0 ||
                           (exec_mode && pipe2(ex, O_CLOEXEC) < 0)))
        snprintf(why, sizeof(why), "zygote: pipe: %s", strerror(errno));
    if (why[0] != '\0')
        exec_agent(agent, 0, why);
    pid_t job = fork();
    if (job == 0) {
        int mine[5] = {in[0], out[1], err[1], st[1], ex[1]};
        close(fds[0]);
        become_job(mine);
        return;
    }
    close(st[1]);
    ssize_t n = job < 0 ? 0 : read(st[0], why, sizeof(why) - 1);
    why[n > 0 ? n : 0] = '\0';
    if (job < 0)
        snprintf(why, sizeof(why), "zygote: fork: %s", strerror(errno));
    if (why[0] != '\0')
        exec_agent(agent, 0, why);
    agent[1] = in[1];
    agent[2] = out[0];
    agent[3] = err[0];
    agent[4] = ex[0];
    if (exec_mode && agent_here != NULL) {
        /* this is the agent already (a copy of the template's, in memory
         * of its own): it serves the sandbox without an exec */
        static const int at[5] = {3, 4, 5, 6, KILN_ZYGOTE_AGENT_STATUS_FD};
        if (place(agent, at, 5) < 0 || syscall(SYS_close_range, at[4] + 1, ~0U, 0) < 0)
            _exit(126);
        agent_here(job, KILN_ZYGOTE_AGENT_STATUS_FD);
    }
    exec_agent(agent, job, NULL);
}

/* Read all `len` bytes from fd 0; 0 or -1. */
static int read_all(void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(0, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

int kiln_zygote_read_envelope(char ***argv_out, size_t *argc_out, char ***envp_out)
{
    unsigned char hdr[KILN_PROTO_HDR];
    char *buf = NULL, **argv = NULL, **envp = NULL;
    size_t len = 0, n = 0, argc = 0;
    /* "ARGC\0arg...\0env..." after its length (run.c) */
    if (read_all(hdr, sizeof(hdr)) == 0) {
        len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
        if (len > 0 && len <= KILN_PROTO_MAX_MSG && (buf = malloc(len + 1)) != NULL &&
            read_all(buf, len) < 0) {
            free(buf);
            buf = NULL;
        }
    }
    if (buf != NULL) {
        buf[len] = '\0';
        for (size_t i = 0; i <= len; i++)
            n += buf[i] == '\0';
        argc = strtoul(buf, NULL, 10);
        argv = calloc(n + 1, sizeof(char *));
        envp = calloc(n + 1, sizeof(char *));
    }
    if (argv == NULL || envp == NULL || argc == 0 || argc >= n) {
        free(argv);
        free(envp);
        free(buf);
        return -1;
    }
    char *p = buf + strlen(buf) + 1;
    for (size_t i = 0; i < n - 1; i++, p += strlen(p) + 1) {
        if (i < argc)
            argv[i] = p;
        else
            envp[i - argc] = p;
    }
    *argv_out = argv;
    *argc_out = argc;
    *envp_out = envp;
    return 0;
}

__attribute__((noreturn)) void kiln_zygote_exec_job(int status_fd)
{
    extern char **environ;
    char **argv, **envp;
    size_t argc;
    if (kiln_zygote_read_envelope(&argv, &argc, &envp) < 0) {
        dprintf(status_fd, "a malformed envelope");
        _exit(127);
    }
    environ = envp;
    execvp(argv[0], argv);
    dprintf(status_fd, "exec %s: %s", argv[0], strerror(errno));
    _exit(127);
}

static int setup(void)
{
    const char *fds = getenv("KILN_ZYGOTE_FDS"), *mb = getenv("KILN_ZYGOTE_TMP_MB");
    int bpf = -1;
    struct stat st;
    if (fds == NULL || sscanf(fds, "%d,%d,%d", &ctl, &agent_exe, &bpf) != 3)
        return -1;
    if (mb != NULL)
        tmp_mb = (unsigned)atoi(mb);
    exec_mode = getenv("KILN_ZYGOTE_EXEC") != NULL;
    pid1_stack = mmap(NULL, PID1_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (pid1_stack == MAP_FAILED)
        return -1;
    /* sandboxes that end are reaped by the kernel at once: a zombie would
     * keep its cgroup populated (and unusable for the next sandbox) until
     * the next request woke this loop */
    signal(SIGCHLD, SIG_IGN);
    if (fstat(bpf, &st) < 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0)
        return -1;
    filter.len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
    if ((filter.filter = malloc((size_t)st.st_size)) == NULL ||
        pread(bpf, filter.filter, (size_t)st.st_size, 0) != st.st_size)
        return -1;
    close(bpf);
    fcntl(ctl, F_SETFD, FD_CLOEXEC);
    fcntl(agent_exe, F_SETFD, FD_CLOEXEC);
    return 0;
}

/* A sandbox's PID 1 shares this process's memory (CLONE_VM) until it
 * execs the agent, with a stack of its own: no copy of the template's page
 * tables for a process that is about to exec, and none torn down at its
 * exec; only its job process gets a copy (its fork). The template waits,
 * as vfork's parent would, until it has exec'd or died. */
struct pid1 {
    const int *fds;
    int nfds;
    int go, go_wr, done_rd;
};

__attribute__((noreturn)) static int pid1_main(void *arg)
{
    const struct pid1 *a = arg;
    close(a->go_wr);
    close(a->done_rd);
    sandbox(a->fds, a->nfds, a->go); /* returns only in the job process */
    siglongjmp(job_return, 1);
}

/* Serve forks until the worker hangs up (returns -1), or return 0 in a
 * new sandbox's job process. */
KILN_ZYGOTE_EXPORT int kiln_zygote_serve(void)
{
    if (setup() < 0) {
        fprintf(stderr, "kiln zygote: bad environment (KILN_ZYGOTE_FDS)\n");
        return -1;
    }
    if (reply(0, 0, -1) < 0)
        return -1;
    for (;;) {
        int fds[ZYGOTE_FDS] = {-1, -1, -1, -1}, pidfd = -1, go[2], done[2] = {-1, -1};
        unsigned index = 0;
        int nfds = next_request(fds, &index);
        if (nfds == 0)
            return -1;
        /* the new sandbox's job process comes back here, in its own copy
         * of this process, and returns to its interpreter */
        if (sigsetjmp(job_return, 0) != 0)
            return 0;
        pid_t pid = -1;
        int e = EINVAL;
        if (pipe2(go, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0) {
            e = errno;
            if (done[0] < 0) {
                close(go[0]);
                close(go[1]);
            }
        } else {
            struct pid1 a = {fds, nfds, go[0], go[1], done[0]};
            py_hook("PyOS_BeforeFork");
            /* the new user namespace is owned by the sandbox's own uid here
             * (this thread's effective ids only, around the one call): the
             * kernel charges what it holds of each per-user budget to that
             * uid, not to the uid every sandbox of this template shares */
            uid_t owner = KILN_JOB_UID + index;
            unsigned long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET |
                                  CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD;
            if (syscall(SYS_setresgid, -1, owner, -1) < 0 || syscall(SYS_setresuid, -1, owner, -1) < 0) {
                errno = EPERM;
            } else if (PID1_SHARES_MEMORY && !(exec_mode && agent_here != NULL)) {
                pid = clone(pid1_main, pid1_stack + PID1_STACK, (int)(flags | CLONE_VM | SIGCHLD), &a,
                            &pidfd);
            } else {
                struct clone_args ca = {.flags = flags, .pidfd = (uint64_t)(uintptr_t)&pidfd,
                                        .exit_signal = SIGCHLD};
                pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
                if (pid == 0) /* a copy of its own, on this stack */
                    pid1_main(&a);
            }
            e = pid < 0 ? errno : 0;
            if (syscall(SYS_setresuid, -1, 0, -1) < 0 || syscall(SYS_setresgid, -1, 0, -1) < 0)
                _exit(1); /* cannot happen: the saved ids are root's */
            close(go[0]);
            close(done[1]);
            if (pid > 0 && (e = -write_maps(pid, index)) != 0) {
                kill(pid, SIGKILL);
                pid = -1;
            } else if (pid > 0 && write(go[1], "g", 1) != 1) {
                e = errno;
                kill(pid, SIGKILL);
                pid = -1;
            }
            close(go[1]);
            /* it runs in this process's memory until it execs the agent
             * (or dies): nothing here may run meanwhile */
            char c;
            while (read(done[0], &c, 1) < 0 && errno == EINTR)
                ;
            close(done[0]);
            py_hook("PyOS_AfterFork_Parent");
            if (pid < 0 && pidfd >= 0) {
                close(pidfd);
                pidfd = -1;
            }
        }
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        if (reply(e, pid < 0 ? 0 : pid, pidfd) < 0)
            return -1;
        if (pidfd >= 0)
            close(pidfd);
    }
}
