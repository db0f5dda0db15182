/* kiln-agent internals: PID 1 of a sandbox. */
#ifndef KILN_AGENT_H
#define KILN_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire/agent_msg.h"
#include "wire/proto.h"

/* The unprivileged identity a job runs as inside every sandbox. */
#define KILN_JOB_UID 1000
#define KILN_JOB_GID 1000

struct kiln_exec_file {
    char *path;
    const void *data;
    size_t len;
    unsigned mode;
};

/* What one run needs; pointers are borrowed from the run message. */
struct kiln_exec_spec {
    char **argv;
    char **env;
    const char *cwd;
    struct kiln_exec_file *files;
    size_t nfiles;
    long long rl_cpu;       /* RLIMIT_CPU seconds, 0: leave */
    long long rl_fsize;     /* RLIMIT_FSIZE bytes, -1: leave */
    long long rl_nofile;    /* RLIMIT_NOFILE, 0: leave */
};

/* exec.c: set the spec's rlimits on `pid` (0: the calling process). */
int kiln_exec_rlimits(const struct kiln_exec_spec *spec, pid_t pid);

/* Where the worker's egress proxy socket appears inside a jail (the port
 * the relay serves the job on is proto.h's KILN_PROXY_PORT). */
#define KILN_PROXY_DIR "/dev/kiln-proxy"
#define KILN_PROXY_SOCKET KILN_PROXY_DIR "/p.sock"

/* repl.c: where a session's interpreter says what its cells did (a FIFO
 * the job's uid may write; plugin.h). */
#define KILN_REPL_DIR "/tmp/.kiln-repl"
#define KILN_REPL_CTL KILN_REPL_DIR "/ctl"

/* relay.c: in a child of the agent, with `out`: listen on
 * 127.0.0.1:KILN_PROXY_PORT and carry each connection to the worker's
 * proxy, in a jail through the proxy's Unix socket, in a VM over the
 * egress mux port (proto.h); in a VM, also carry the worker's connections
 * in to local ports over the mux (without `out`: only those). Returns 0 or
 * -errno. */
int kiln_relay_start(int out);
/* relay.c: write all of `buf` to `fd` (through EINTR and short writes).
 * Returns 0 or -errno. */
int kiln_write_all(int fd, const void *buf, size_t len);
/* vm.c: the egress mux port, O_PATH (a VM for a job with net.allow, or a
 * session's where the worker exposes ports), or -1 */
extern int kiln_relay_mux_path_fd;

/* jail.c: inside fresh namespaces, build the sandbox's root at `mnt` and
 * pivot into it: from the runtime image open at `root_fd`, or (-1) from the
 * host's /usr. Returns 0, or -1 with the failed step in `err`. */
int kiln_jail_enter(const char *mnt, int root_fd, const char *proxy_dir, unsigned tmp_mb,
                    char *err, size_t errlen);

/* jail.c: in a sandbox cloned from a template jail (zygote.c), with the
 * template's root as cwd: its own /tmp, /work, /dev/shm, /proc and lo. */
int kiln_jail_fork_scratch(unsigned tmp_mb, char *err, size_t errlen);

/* jail.c: root of the sandbox becomes the job's uid with no capabilities
 * (no-op when already unprivileged). Returns 0, or -1 with why in `err`. */
int kiln_drop_privileges(char *err, size_t errlen);

/* jail.c: in a microVM, with the runtime image mounted read-only at
 * `newroot`: /dev, /proc, /tmp, /work as in a jail, then make it the root.
 * Returns 0, or -1 with the failed step in `err`. */
int kiln_jail_enter_vm(const char *newroot, unsigned tmp_mb, char *err, size_t errlen);

/* vm.c: PID 1 of a microVM. */
struct kiln_vm {
    char chan_kind[16];     /* "virtio" (a virtio-serial port) or "vsock" */
    char port_name[32];     /* virtio: the port's name; vsock: the port number */
    unsigned tmp_mb;
    int path_fd;            /* O_PATH: the virtio port, to reopen it */
    int listen_fd;          /* vsock: listening */
    int egress;             /* kiln.egress=1: the job has net.allow */
};
/* Load the modules, find the agent's channel, mount the image (/dev/vda)
 * and make it the root. Returns 0, or -1 with why in `err` (the agent still
 * tries to open its channel to say so). */
int kiln_vm_boot(struct kiln_vm *vm, char *err, size_t errlen);
/* Open (or reopen, after EOF) the channel to the host. Blocks. */
int kiln_vm_chan(struct kiln_vm *vm);
/* The job's cgroup inside the guest: limits, and what it used. */
int kiln_vm_limit(struct kiln_vm *vm, long long memory_bytes, long long pids);
/* The worker's egress CA (`ca`: a bin object, or NULL: nothing to do), for
 * the job's HTTPS with secrets: at /dev/kiln-proxy as a jail has it, and in
 * the image's CA bundle. 0, or -1 with why. */
int kiln_vm_trust_ca(const struct kiln_span *ca, char *err, size_t errlen);
void kiln_vm_stats(struct kiln_vm *vm, long long *peak_kb, long long *oom_kills);
/* Power off: QEMU (-no-reboot) and Firecracker exit. */
__attribute__((noreturn)) void kiln_vm_halt(void);

/* exec.c: when >= 0, the job's processes join this cgroup (its
 * cgroup.procs, open for writing) before anything else. */
extern int kiln_exec_cgroup_fd;

/* jobcg.c: a session's job cgroup (cgroup v2), its files open: procs and
 * freeze for writing, events for reading, kill (-1 where the kernel has
 * none). All -1: this sandbox has none. */
struct kiln_jobcg {
    int procs, freeze, events, kill;
};
extern struct kiln_jobcg kiln_jobcg;
/* The four files the worker gave a jail, from `first_fd` on (the jail's
 * --job-cgroup); the job's processes join it. */
void kiln_jobcg_adopt(int first_fd);
/* Freeze (1) or thaw (0) every process in the job cgroup. Freezing returns
 * once the kernel says all are frozen: 0; -ETIMEDOUT when some were not
 * after 2 s; -ENOTSUP without a job cgroup; or another -errno. */
int kiln_jobcg_freeze(int on);

/* seccomp.c: load the job's syscall filter. Returns 0 or a negative errno. */
int kiln_seccomp_apply(void);
/* seccomp.c: write the same filter to `fd` as BPF (for the zygote, which
 * loads it in each job's process). Returns 0 or a negative errno. */
int kiln_seccomp_export(int fd);

/* exec.c: a failure the job's own input caused (its files do not fit
 * /work, say): the job's `error`, not kiln's. Returned by the file writers;
 * a status message that starts with the mark says so. */
#define KILN_EXEC_JOB_FAULT (-2)
#define KILN_EXEC_JOB_MARK "\001"

/* exec.c: write the spec's files under its cwd as the job's uid (fsuid),
 * from the agent itself: for a sandbox whose interpreter waits for its
 * job, running nothing of the job's yet. Returns 0, or -1 with why
 * (KILN_EXEC_JOB_FAULT when the files themselves could not be written). */
int kiln_exec_write_files(const struct kiln_exec_spec *spec, char *why, size_t whylen);

/* exec.c: in a forked child, write the spec's files under its cwd as the
 * job's uid, then exit 0; on failure "step: error" goes to `status_fd` and
 * it exits 127. For sandboxes whose interpreter was started ahead. */
__attribute__((noreturn))
void kiln_exec_files_child(const struct kiln_exec_spec *spec, int status_fd);

/* exec.c: in a forked child, confine and exec the job. Never returns: on
 * failure it writes "step: error" to `status_fd` and exits 127. */
__attribute__((noreturn))
void kiln_exec_child(const struct kiln_exec_spec *spec, int in_fd, int out_fd,
                     int err_fd, int status_fd);

/* ---- the agent itself (agent.c, channel.c, run.c) ---------------------- */

/* What the agent's files share, set up by main() (agent.c). */
struct kiln_agent {
    int chan;               /* the channel to the worker (default fd 3) */
    struct kiln_vm vm;      /* in a microVM: its channel, cgroup, ... */
    int in_vm;              /* PID 1 of a microVM, not of a jail */
    int served;             /* the job ran: EOF now ends the VM */
    int64_t last_sent;      /* when the agent last said something (ms) */
    int reached_end;        /* a run whose end is checked: 1 its program ran
                             * to its end, 0 not; -1 not checked (end.c) */
};
extern struct kiln_agent kiln__agent;

/* channel.c: the agent is done; in a VM that is the VM's end. */
__attribute__((noreturn)) void kiln_agent_exit(int code);
/* channel.c: CLOCK_MONOTONIC in milliseconds. */
int64_t kiln_agent_now_ms(void);
/* channel.c: finish and send one packed message (sb is destroyed); the
 * worker being gone ends the agent. */
void kiln_agent_send(msgpack_sbuffer *sb);
/* channel.c: why the run cannot go on. `job_fault`: the job's input is
 * why (the worker ends it as the job's `error`), not kiln (`internal`,
 * retried). */
void kiln_agent_send_failure(const char *reason, int job_fault);
void kiln_agent_send_error(const char *reason);
/* channel.c: "ready"; `warm`: an interpreter was started ahead already. */
void kiln_agent_send_ready(int warm);
void kiln_agent_send_out(int fd, const void *data, size_t len);
/* channel.c: "exit": how the job ended, and what the whole job used. */
void kiln_agent_send_exit(int status, int64_t wall_ms, int64_t cpu_base, int cpu_over);
/* The same figures under another message type ("collecting": the job has
 * ended, its files follow). */
void kiln_agent_send_end(const char *type, int status, int64_t wall_ms, int64_t cpu_base, int cpu_over);
/* The same with the CPU time and peak memory given, and for a session's
 * job whether its interpreter lives on ("alive", "ended"; NULL: no session). */
void kiln_agent_send_figures(const char *type, int status, int64_t wall_ms, int64_t cpu_ms,
                             int64_t max_rss_kb, int cpu_over, const char *session);
void kiln_agent_send_started(void);
void kiln_agent_send_beat(void);
/* channel.c: block until one whole message has arrived in `u`: 0, or a
 * negative errno (-EPIPE: the worker hung up). In a VM not yet served, a
 * host that went away is waited for again. */
int kiln_agent_read(struct kiln_proto_reader *rd, msgpack_unpacked *u);

/* The job's process, once forked: its pipes, and what is left to write to
 * its stdin. */
struct kiln_child {
    pid_t pid;
    int in, out, err;
    int exec_status;      /* a forked job that execs its program: why its
                           * execve failed comes here (EOF: it did not), or -1 */
    char *inbuf;          /* owned: envelope (warm) + the job's stdin */
    const char *in_next;
    size_t in_left;
    int64_t cpu_limit_ms; /* the job's CPU time, all its processes: 0 none */
    int cpu_over;         /* it passed cpu_limit_ms and was killed */
    int64_t cpu_base;     /* what its processes had used when it began (a
                           * warm interpreter's start-up is not the job's) */
    const char *collect;  /* a file under /work sent back after the exit, or
                           * NULL (borrowed from the run message) */
    const msgpack_object *collect_globs; /* the job's `collect` patterns, or
                           * NULL (borrowed from the run message) */
    int64_t collect_bytes, collect_files, collect_names; /* what it may still send back */
};

/* end.c: a run whose end is checked (the run message's "end"): leave a
 * fresh token for the plugin's runner before the program starts. 0, or -1
 * with why. */
#define KILN_END_TOKEN_LEN 32
int kiln_end_arm(char *why, size_t whylen);
/* end.c: once the run's processes are all gone: 1 when the runner left the
 * token as its proof, else 0. */
int kiln_end_reached(void);

/* collect.c: the files under /work matching `globs` (an array of str),
 * at most `limit` bytes, `files` files and `names` bytes of paths in all,
 * as "collect" messages, then "collected". */
void kiln_collect_send(const msgpack_object *globs, int64_t limit, int64_t files, int64_t names);

/* cpu.c: a small file (under /proc, a cgroup's) whole in `buf`,
 * NUL-terminated. 0, or -1 when it could not be read or is empty. */
int kiln_read_small(const char *path, char *buf, size_t len);
/* cpu.c: CPU time the job has used so far (ms), every process counted;
 * `job` is its main process. */
int64_t kiln_cpu_used_ms(pid_t job);

/* run.c: the "run" (or "prestart", "zygote") message `m` as a spec whose
 * pointers borrow from `m`, and its stdin. Returns 0 or -EINVAL/-ENOMEM. */
int kiln_run_parse(const msgpack_object *m, struct kiln_exec_spec *spec,
                   const char **stdin_data, size_t *stdin_len);
/* run.c: free what kiln_run_parse() made of a message. */
void kiln_run_spec_free(struct kiln_exec_spec *spec);
/* run.c: fork and exec `spec` confined (exec.c). Returns 0 once execve
 * succeeded, or -1 (KILN_EXEC_JOB_FAULT: the job's files) with why. */
int kiln_run_start(const struct kiln_exec_spec *spec, struct kiln_child *c, char *why, size_t whylen);
/* run.c: a warm child's files, written now as the job's uid. Returns 0,
 * or -1 (KILN_EXEC_JOB_FAULT: the files themselves) with why. */
int kiln_run_write_files(const struct kiln_exec_spec *spec, char *why, size_t whylen);
/* run.c: what a warm interpreter reads first (plugin.h), then `in`: a new
 * buffer owned by the caller, its length in *total; NULL: out of memory. */
char *kiln_run_envelope(const struct kiln_exec_spec *spec, const char *in, size_t in_len,
                        size_t *total);
/* run.c: the job to its end (t0: when it started), then "exit". */
void kiln_run_supervise(struct kiln_child *c, int64_t t0);
/* run.c: the job's output, coalesced (see run.c): add a chunk, send what
 * is pending, the longest poll() may wait before pending output is due,
 * and send it once due. */
void kiln_run_out_add(int fd, const char *data, size_t len);
/* run.c: one read of the job's stdout (stream 1) or stderr (2) at *fd into
 * the pending output: 1 bytes came, 0 none now (EAGAIN), -1 the stream
 * has ended (*fd closed and -1). */
int kiln_run_out_read(int stream, int *fd);
void kiln_run_out_flush(void);
int kiln_run_out_wait(int wait);
void kiln_run_out_due(void);
/* repl.c: a session's first "run" (`m`): its interpreter started, then
 * that job and each later one as a cell, until the worker hangs up. */
__attribute__((noreturn)) void kiln_repl_serve(struct kiln_proto_reader *rd, msgpack_unpacked *u);
/* run.c: stop every process of the job. */
void kiln_run_kill(pid_t child);
/* zygote.c: serve forks until the worker hangs up (-1), or return 0 in
 * a new sandbox's job process, confined, in /work. */
int kiln_zygote_serve(void);
/* zygote.c: in such a job process of an exec template (KILN_ZYGOTE_EXEC):
 * read the envelope from stdin and exec the program it names; on failure
 * say why on `status_fd` and exit 127. */
__attribute__((noreturn)) void kiln_zygote_exec_job(int status_fd);
/* zygote.c: the envelope on stdin (plugin.h, prestart; what follows it
 * is the job's own stdin): its argv and environment, NULL-terminated, in
 * one allocation of their own each. 0, or -1 (nothing came, or garbage). */
int kiln_zygote_read_envelope(char ***argv, size_t *argc, char ***envp);
/* zygote.c: in an exec template, what a new sandbox's PID 1 becomes
 * instead of exec'ing the agent: `fn` (the agent's own loop, given the
 * job's pid and its exec status fd; it never returns). */
void kiln_zygote_agent_here(void (*fn)(pid_t job, int exec_status));
/* agent.c: that loop. */
__attribute__((noreturn)) void kiln_agent_serve_adopted(pid_t job, int exec_status);
/* The fd a forked job of an exec template says its execve failure on, and
 * where its agent reads it. */
#define KILN_ZYGOTE_JOB_STATUS_FD 4
#define KILN_ZYGOTE_AGENT_STATUS_FD 7

/* run.c: a sandbox forked by a zygote: its interpreter, PID `job`, waits
 * on fds 4-6. */
void kiln_run_adopt(struct kiln_child *c, pid_t job);

#endif
