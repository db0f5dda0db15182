/*
 * What the microVM backends (qemu, firecracker) share: a VMM process per
 * sandbox, watched through a pidfd, with its own directory that goes when
 * it does; the agent's "hello"; whether KVM can run a VM here.
 */
#ifndef KILN_VMM_H
#define KILN_VMM_H

#include "sandbox/backend.h"

struct kiln_vmm_sandbox {
    struct kiln_sandbox pub;
    pid_t pid;
    int pidfd;
    uv_poll_t poll;
    int killed;
    int extra_fd;           /* a control socket (QMP, ...) closed at exit, or -1 */
    struct kiln_vm_egress *egress; /* its egress mux (net.allow), closed at exit */
    char dir[512];          /* its files: removed at exit */
    /* when its VMM has gone and on_exit ran: 1 lets vmm.c free it, 0 keeps
     * it for its backend to free (NULL: free) */
    int (*release)(struct kiln_sandbox *sb);
};

/* argv as it grows: owned strings, NULL-terminated. */
struct kiln_argv {
    char *v[96];
    int n;
};
void kiln_argv_add(struct kiln_argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void kiln_argv_free(struct kiln_argv *a);

/* Start `argv` as the VMM of `sb` (sb->dir must exist): fds[i] becomes
 * descriptor 3 + i in it, its stdout and stderr go to dir/vmm.log, and it
 * dies with the worker. Watches it: on exit, dir is removed and
 * sb->pub.on_exit called. Returns 0 or -errno with the reason in `err`. */
int kiln_vmm_start(struct kiln_backend *b, struct kiln_vmm_sandbox *sb, char *const argv[],
                   const int *fds, int nfds, char *err, size_t errlen);
/* Blocking variant for the snapshot maker's thread: returns the pid. */
pid_t kiln_vmm_fork(char *const argv[], const int *fds, int nfds, const char *log);

void kiln_vmm_kill(struct kiln_sandbox *sb);

/* The snapshot pools refill from, made once on the thread pool. */
enum kiln_snap_state { KILN_SNAP_NONE, KILN_SNAP_MAKING, KILN_SNAP_READY, KILN_SNAP_FAILED };
struct kiln_snap {
    enum kiln_snap_state state;
    struct kiln_backend *b;
    /* on the thread pool: 0, or < 0 with why in err */
    int (*make)(struct kiln_backend *b, char *err, size_t errlen);
    void (*free_backend)(struct kiln_backend *b);
    uv_work_t work;
    char err[300];
    uint64_t ms;
    int destroyed;
};
void kiln_snap_start(struct kiln_snap *s);
/* The backend is being destroyed: 1 if it may be freed now, 0 if the
 * snapshot thread still runs (it frees the backend when done). */
int kiln_snap_release(struct kiln_snap *s);

/* Guest RAM a job cannot have: the kernel, the agent, the image's cache. */
#define KILN_VM_RESERVE_MB 160
/* The RAM (MiB) of a VM whose job may use `job_mb` (0: a pooled VM):
 * --vm-memory-mb, or more when the job needs it; *own_size then says the
 * VM cannot come from the pooled snapshot. */
int64_t kiln_vm_ram_mb(const struct kiln_sandbox_opts *cfg, int64_t job_mb, int *own_size);
/* The limit op of the VM backends: the agent enforces the limits in the
 * guest; only a job larger than its VM is refused (-E2BIG). */
int kiln_vmm_limit(struct kiln_sandbox *sb, const struct kiln_sandbox_limits *l);
/* The VMM binary is installed and runs (`BIN --version`). */
int kiln_vmm_installed(const char *bin);
/* This backend's state directory, `<state_dir>/<kind>-<pid>` into `dir`:
 * made, and locked for the worker's life (an flock on its .lock, held by
 * the returned fd, close-on-exec). First the directories of `kind` that
 * workers now gone left (a worker killed with -9 leaves its snapshot and
 * VM directories) are removed: those whose lock is free, whichever pid
 * namespace their worker ran in. Returns the fd, or -errno with why. */
int kiln_vmm_state_dir(const char *state_dir, const char *kind, char *dir, size_t len, char *err,
                       size_t errlen);
/* The guest kernel, initramfs and image the VM backends need are there;
 * `who` names the backend in the reason. */
int kiln_vm_files_check(const struct kiln_sandbox_opts *cfg, const char *who, char *err, size_t errlen);

/* Queue the agent's "hello" (with the host's time) on its channel. */
int kiln_vmm_hello(int fd);

/* 1 when /dev/kvm can create a VM here, else 0 with why in `why`. */
int kiln_kvm_usable(char *why, size_t whylen);

/* The host TSC in kHz (the guest is told it: no calibration at boot). */
long kiln_tsc_khz(void);

#endif
