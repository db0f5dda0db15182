/*
 * kiln-agent: PID 1 of a sandbox. It says "ready", takes one "run", starts
 * the job, forwards its stdout and stderr as they come, and reports how it
 * ended. One agent serves one job (or, in a session's sandbox, the
 * session's jobs one cell after another: repl.c); the sandbox is thrown
 * away after.
 *
 *   kiln-agent [--jail MOUNTPOINT [--root-fd N]] [--tmp-mb N] [--fd N]
 *              [--proxy-dir DIR] [--job-cgroup N] [--zygote-lib-fd N]
 *   /init                          (a microVM's, from its initramfs: vm.c)
 *   kiln-agent --adopt PID [--exec-status FD] [--adopt-failed WHY]
 *                                  (a sandbox forked by a zygote: zygote.c)
 *
 * --jail builds the jail's root first (the worker cloned the namespaces),
 * from the runtime image open at --root-fd when given; --fd names the
 * channel to the worker (default 3); --proxy-dir the sandbox's own directory
 * for the egress proxy's socket; --job-cgroup the first of the four open
 * files of a session's job cgroup (jobcg.c). In a VM the host speaks first
 * ("hello", with the time) and the agent answers "ready".
 *
 * A "prestart" message before "run" starts the interpreter ahead of the
 * job (warm pools): it then waits for the job's argv and env on its stdin.
 * A "zygote" message instead (a template jail, --zygote-lib-fd given)
 * starts it as a fork server that takes over the channel (zygote.c); each
 * sandbox it forks execs this agent again with --adopt: PID 1 of its own
 * namespaces, its interpreter PID already waiting on fds 4-6.
 *
 * This file is main(): the flags, the jail or VM set up, and the order of
 * messages. channel.c says and reads them; run.c runs the job; exec.c
 * confines it; jail.c and vm.c build the sandbox's root.
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

/* A VM restored from a snapshot wakes with the wall clock of the moment
 * the snapshot was taken: the host's time comes with "hello". */
static void set_clock(int64_t ns)
{
    if (!kiln__agent.in_vm || ns <= 0)
        return;
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    clock_settime(CLOCK_REALTIME, &ts);
}

/* A VM restored from a snapshot also wakes with the snapshot's random
 * state, which every VM restored from it shares: the host's fresh bytes
 * are credited to the guest kernel's pool and its generator reseeded, so
 * nothing started after "hello" (an interpreter's hash seed, a job's
 * random numbers) repeats between VMs. */
static int reseed(const struct kiln_span *seed)
{
    struct {
        int entropy_count;
        int buf_size;
        unsigned char buf[KILN_HELLO_SEED_BYTES];
    } e;
    if (!seed->set || seed->n != KILN_HELLO_SEED_BYTES)
        return -1;
    e.entropy_count = 8 * KILN_HELLO_SEED_BYTES;
    e.buf_size = KILN_HELLO_SEED_BYTES;
    memcpy(e.buf, seed->p, KILN_HELLO_SEED_BYTES);
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
static int apply_limits(const struct kiln_msg_run *r)
{
    if (!kiln__agent.in_vm)
        return 0;
    return kiln_vm_limit(&kiln__agent.vm, r->memory_bytes, r->pids) == 0 ? 0 : -1;
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
    int exec_template = strcmp(spec->argv[0], KILN_ZYGOTE_EXEC) == 0;
    if ((lib_fd < 0 && !exec_template) || exe < 0 || bpf < 0 || kiln_seccomp_export(bpf) < 0) {
        kiln_agent_send_error(lib_fd < 0 ? "agent: no zygote library" : "agent: zygote setup failed");
        kiln_agent_exit(1);
    }
    snprintf(lib, sizeof(lib), "KILN_ZYGOTE=/proc/self/fd/%d", lib_fd);
    snprintf(fds, sizeof(fds), "KILN_ZYGOTE_FDS=%d,%d,%d", kiln__agent.chan, exe, bpf);
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
        if (exec_template) {
            /* no interpreter: this copy of the agent is the fork server,
             * and each job process it returns in execs its program */
            setenv("KILN_ZYGOTE_FDS", fds + strlen("KILN_ZYGOTE_FDS="), 1);
            setenv("KILN_ZYGOTE_TMP_MB", mb + strlen("KILN_ZYGOTE_TMP_MB="), 1);
            setenv("KILN_ZYGOTE_EXEC", "1", 1);
            kiln_zygote_agent_here(kiln_agent_serve_adopted);
            if (kiln_zygote_serve() == 0)
                kiln_zygote_exec_job(KILN_ZYGOTE_JOB_STATUS_FD);
            _exit(0);
        }
        int fd[] = {kiln__agent.chan, exe, bpf, lib_fd};
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
        kiln_agent_send_error("agent: fork failed");
        kiln_agent_exit(1);
    }
    close(kiln__agent.chan); /* the zygote's now */
    pid_t p;
    while ((p = waitpid(-1, NULL, 0)) != pid && (p > 0 || errno == EINTR))
        ;
    kiln_agent_exit(0);
}

/* The messages, in their order, until the one job is served. */
__attribute__((noreturn))
static void serve(struct kiln_child *warm_in, int have_warm, const char *jail, int lib_fd,
                  unsigned tmp_mb, const char *err)
{
    struct kiln_proto_reader rd;
    msgpack_unpacked u;
    struct kiln_child warm = *warm_in;
    kiln_proto_reader_init(&rd, KILN_PROTO_MAX_MSG);
    msgpack_unpacked_init(&u);
    /* SIGCHLD is read from a signalfd, never delivered */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    char why[600];
    for (;;) {
        int r = kiln_agent_read(&rd, &u);
        if (r < 0)
            kiln_agent_exit(r == -EPIPE ? 0 : 1);
        enum kiln_msg_type t = kiln_msg_type_of(&u.data);
        if (t == KILN_MSG_UNKNOWN && kiln_mp_get(&u.data, "t") == NULL)
            kiln_agent_exit(0);
        if (t == KILN_MSG_KILL)
            kiln_agent_exit(0);
        if (t == KILN_MSG_HELLO) {
            struct kiln_msg_hello h;
            if (err[0] != '\0') {
                kiln_agent_send_error(err);
                kiln_agent_exit(1);
            }
            if (kiln_msg_read_hello(&u.data, &h) < 0) {
                kiln_agent_send_error("agent: malformed message");
                kiln_agent_exit(1);
            }
            set_clock(h.now_ns);
            if (kiln__agent.in_vm && reseed(&h.seed) < 0) {
                kiln_agent_send_error("agent: could not reseed the guest's random number generator");
                kiln_agent_exit(1);
            }
            kiln_agent_send_ready(have_warm);
            continue;
        }
        struct kiln_exec_spec spec;
        struct kiln_msg_run run;
        const char *in;
        size_t in_len;
        int prestart = t == KILN_MSG_PRESTART, zygote = t == KILN_MSG_ZYGOTE;
        if (!prestart && !zygote && t != KILN_MSG_RUN)
            continue;
        if (kiln_msg_read_run(&u.data, &run) < 0 || kiln_run_parse(&u.data, &spec, &in, &in_len) < 0 ||
            (!prestart && apply_limits(&run) < 0)) {
            kiln_agent_send_error("agent: malformed message");
            kiln_agent_exit(1);
        }
        if (zygote) {
            if (have_warm || kiln__agent.in_vm || jail == NULL) {
                kiln_agent_send_error("agent: a zygote starts only in a fresh jail");
                kiln_agent_exit(1);
            }
            serve_zygote(&spec, lib_fd, tmp_mb);
        }
        if (prestart) {
            /* the interpreter starts now, confined, and waits for its job */
            if (have_warm || kiln_run_start(&spec, &warm, why, sizeof(why)) < 0) {
                kiln_agent_send_error(have_warm ? "agent: already started" : why);
                kiln_agent_exit(1);
            }
            have_warm = 1;
            kiln_agent_send_started();
            continue;
        }
        if (run.session) { /* an interpreter that outlives its jobs */
            if (have_warm) {
                kiln_agent_send_error("agent: a session starts only in a fresh sandbox");
                kiln_agent_exit(1);
            }
            kiln_repl_serve(&rd, &u);
        }
        if (kiln__agent.in_vm && kiln_vm_trust_ca(&run.ca, why, sizeof(why)) < 0) {
            kiln_agent_send_error(why);
            kiln_agent_exit(1);
        }
        if (run.proxy &&
            kiln_relay_start(1) < 0) {
            kiln_agent_send_error("agent: could not start the network relay");
            kiln_agent_exit(1);
        }
        if (run.end) { /* before the program can run: end.c */
            if (kiln_end_arm(why, sizeof(why)) < 0) {
                kiln_agent_send_error(why);
                kiln_agent_exit(1);
            }
            kiln__agent.reached_end = 0;
        }
        struct kiln_child c;
        int64_t t0 = kiln_agent_now_ms();
        if (have_warm) {
            size_t total;
            c = warm;
            why[0] = '\0';
            if (kiln_exec_rlimits(&spec, c.pid) < 0) /* it waits on stdin: no race */
                snprintf(why, sizeof(why), "agent: prlimit failed");
            int r = why[0] != '\0' ? -1 : kiln_run_write_files(&spec, why, sizeof(why));
            if (r < 0 || (c.inbuf = kiln_run_envelope(&spec, in, in_len, &total)) == NULL) {
                kiln_run_kill(c.pid);
                kiln_agent_send_failure(r == 0 && why[0] == '\0' ? "agent: out of memory" : why, r == KILN_EXEC_JOB_FAULT);
                kiln_agent_exit(1);
            }
            c.in_next = c.inbuf;
            c.in_left = total;
        } else {
            int r = kiln_run_start(&spec, &c, why, sizeof(why));
            if (r < 0) {
                kiln_agent_send_failure(why, r == KILN_EXEC_JOB_FAULT);
                kiln_agent_exit(1);
            }
            c.in_next = in;
            c.in_left = in_len;
        }
        c.collect = kiln_span_dup(&run.collect);
        c.collect_globs = run.collect_globs_in;
        c.collect_bytes = run.collect_bytes;
        c.collect_files = run.collect_files;
        c.collect_names = run.collect_names;
        c.cpu_limit_ms = run.cpu_ms;
        c.cpu_over = 0;
        kiln_run_supervise(&c, t0);
        kiln__agent.served = 1;
        /* single use: wait for the worker to hang up or say kill */
        while (kiln_agent_read(&rd, &u) == 0)
            ;
        kiln_agent_exit(0);
    }
}

/* PID 1 of a sandbox forked from an exec template, still the template's
 * copy of this agent: it serves the sandbox as `--adopt` would, without
 * an exec (its channel, the job's stdio and exec status pipe at 3-7). */
void kiln_agent_serve_adopted(pid_t job, int exec_status)
{
    struct kiln_child warm;
    kiln__agent.chan = 3;
    kiln__agent.in_vm = 0;
    kiln__agent.served = 0;
    signal(SIGPIPE, SIG_IGN);
    kiln_run_adopt(&warm, job);
    warm.exec_status = exec_status;
    kiln_agent_send_ready(1);
    serve(&warm, 1, NULL, -1, 0, "");
}

int main(int argc, char **argv)
{
    const char *jail = NULL;
    unsigned tmp_mb = 256;
    int root_fd = -1;
    const char *proxy_dir = NULL, *adopt_failed = NULL;
    pid_t adopted = 0;
    int exec_status = -1;
    int lib_fd = -1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--jail") == 0 && i + 1 < argc)
            jail = argv[++i];
        else if (strcmp(argv[i], "--tmp-mb") == 0 && i + 1 < argc)
            tmp_mb = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc)
            kiln__agent.chan = atoi(argv[++i]);
        else if (strcmp(argv[i], "--root-fd") == 0 && i + 1 < argc)
            root_fd = atoi(argv[++i]);
        else if (strcmp(argv[i], "--proxy-dir") == 0 && i + 1 < argc)
            proxy_dir = argv[++i];
        else if (strcmp(argv[i], "--zygote-lib-fd") == 0 && i + 1 < argc)
            lib_fd = atoi(argv[++i]);
        else if (strcmp(argv[i], "--adopt") == 0 && i + 1 < argc)
            adopted = atoi(argv[++i]);
        else if (strcmp(argv[i], "--exec-status") == 0 && i + 1 < argc)
            exec_status = atoi(argv[++i]);
        else if (strcmp(argv[i], "--adopt-failed") == 0 && i + 1 < argc)
            adopt_failed = argv[++i];
        else if (strcmp(argv[i], "--job-cgroup") == 0 && i + 1 < argc)
            kiln_jobcg_adopt(atoi(argv[++i]));
        else if (getpid() == 1 && strncmp(argv[i], "--", 2) != 0)
            continue; /* a microVM's init gets the kernel's leftover words */
        else {
            fprintf(stderr, "usage: kiln-agent [--jail MOUNTPOINT [--root-fd N]] [--tmp-mb N] [--fd N]\n"
                            "                  [--proxy-dir DIR] [--job-cgroup N] [--zygote-lib-fd N]\n"
                            "       kiln-agent --adopt PID [--exec-status FD] [--adopt-failed WHY] ...\n"
                            "  (started by kiln-worker, never by hand: see the comment atop agent/agent.c)\n");
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
    kiln__agent.in_vm = getpid() == 1 && jail == NULL && adopted == 0 && adopt_failed == NULL;
    if (adopt_failed != NULL) {
        kiln_agent_send_error(adopt_failed);
        return 1;
    }
    if (kiln__agent.in_vm) {
        /* a boot that failed is reported to the host ("error" after its
         * hello) when at least the channel is there */
        kiln_vm_boot(&kiln__agent.vm, err, sizeof(err));
        if ((kiln__agent.chan = kiln_vm_chan(&kiln__agent.vm)) < 0) {
            fprintf(stderr, "kiln-agent: %s\n", err[0] ? err : "no channel to the host"); /* console */
            kiln_agent_exit(1);
        }
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0 && devnull != 0)
        dup2(devnull, 0);
    if (jail != NULL && kiln_jail_enter(jail, root_fd, proxy_dir, tmp_mb, err, sizeof(err)) < 0) {
        kiln_agent_send_error(err);
        return 1;
    }
    /* A jail's worker is there from the start. A VM's host may connect
     * later (or to a VM restored from a snapshot): it says "hello" first,
     * with the time, and gets "ready" back. */
    struct kiln_child warm = {.exec_status = -1};
    int have_warm = 0;
    if (adopted > 0) {
        kiln_run_adopt(&warm, adopted);
        warm.exec_status = exec_status;
        have_warm = 1;
    }
    if (!kiln__agent.in_vm)
        kiln_agent_send_ready(have_warm);
    serve(&warm, have_warm, jail, lib_fd, tmp_mb, err);
}

