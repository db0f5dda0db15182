/*
 * The jail backend's insides, shared by its files and by nothing else:
 *
 *   jail.c        the backend: open, the ops table, destroy
 *   jail_clone.c  one jail cloned from the worker, watched until it is gone
 *   zygote.c      template jails whose interpreter forks sandboxes (zygote.h)
 *
 * Everything here runs on the worker's loop thread.
 */
#ifndef KILN_SANDBOX_JAIL_H
#define KILN_SANDBOX_JAIL_H

#include <stdint.h>

#include "sandbox/backend.h"
#include "sandbox/cgroup.h"

/* Host ids per sandbox: its root is base + k * STRIDE, its job's uid that
 * + 1000; a template's forked sandboxes use + 1000 + i (i < FORKS). */
#define KILN_UID_STRIDE 65536
#define KILN_UID_SLOTS 4096
#define KILN_ZYGOTE_FORKS 256

struct kiln_zygote;

/* Cgroups of ended sandboxes, reset and ready for new ones (shared with
 * the thread pool's resets, so it outlives the backend until they end). */
#define KILN_CGROUP_SPARES 64
struct kiln_cgroup_spares {
    unsigned refs;
    int closed;               /* the backend is gone: remove, keep nothing */
    struct kiln_cgroups cgs;  /* a copy the spares point at */
    size_t n;
    struct kiln_cgroup v[KILN_CGROUP_SPARES];
};

struct kiln_jail {
    struct kiln_backend pub;
    int agent_fd;             /* kiln-agent, opened once: exec'd by fd */
    int root_fd;              /* the runtime image tree (O_PATH), or -1 */
    int tree_fd;              /* per spawn: a detached copy of it to attach */
    char mnt[512];            /* empty dir the jail's root is mounted on */
    char tmp_mb[24];
    char *argv[14];
    char proxy_root[512];
    struct kiln_cgroups cgs;
    int cg_ok;                /* cgroups usable: limits are enforced */
    int lib_fd;               /* libkiln-zygote.so, or -1 */
    int spawn_lib_fd;         /* per spawn: given to a template's agent */
    int spawn_procs[KILN_CGROUP_FDS]; /* per spawn: its cgroup.procs files, to join */
    int spawn_nprocs;
    int spawn_job[KILN_JOBCG_FDS]; /* per spawn: a session's job cgroup, for its
                               * agent (fds 6-9 there), or all -1 */
    struct kiln_zygote *zygotes; /* one per forking profile, in the order added */
    struct kiln_cgroup_spares *spares; /* cgroups reset for the next sandbox */
    /* host uid ranges: sandbox k's ids are uid_base + k * KILN_UID_STRIDE
     * onwards, so no two live sandboxes share a per-user budget of the
     * host's (pipe buffers, inotify, queued signals, ...) */
    unsigned char uid_used[KILN_UID_SLOTS];
    int owner_fallback;       /* the kernel refused a namespace owned by
                               * the sandbox's uid: the worker owns them */
};

struct kiln_jail_sandbox {
    struct kiln_sandbox pub;
    pid_t pid;
    int pidfd;
    uv_poll_t poll;
    int killed;
    struct kiln_cgroup cg;
    int has_cg;
    char proxy_dir[512];
    struct kiln_jail_sandbox *znext; /* a fork not answered yet (pidfd -1) */
    uint64_t t_ask;             /* when it was asked for */
    int uid_slot;               /* its host uid range (-1: none) */
    struct kiln_zygote *zyg;    /* forked: its template, and its index */
    int fork_index;             /* among the template's uids (-1: none) */
};

/* ---- jail_clone.c ------------------------------------------------------ */

/* A jail of its own, cloned from the worker; with `lib_fd` >= 0, a
 * template whose agent gets the zygote library (and no proxy directory:
 * it runs no job); with `session`, a session's, whose job runs in a job
 * cgroup its agent can freeze (-ENOTSUP where this host has none). Returns 0 with the sandbox in *out, owned by the
 * backend until its on_exit has run; or a negative errno with the reason
 * in `err`. */
int kiln__jail_clone(struct kiln_jail *j, int lib_fd, int session, struct kiln_jail_sandbox **out,
                     char *err, size_t errlen);
/* The sandbox's own cgroups with the operator's default limits, empty,
 * and their cgroup.procs files open in `procs` (the caller closes them).
 * Returns how many (0: no cgroups here), or a negative errno with the
 * reason in `err`. */
int kiln__jail_cgroup(struct kiln_jail *j, struct kiln_jail_sandbox *sb, int procs[KILN_CGROUP_FDS],
                      char *err, size_t errlen);
/* Watch `sb` through `pidfd` (taken): when it becomes readable and the
 * process is gone, kiln__jail_gone() and the sandbox is freed. */
void kiln__jail_watch(struct kiln_jail_sandbox *sb, int pidfd);
/* The sandbox is gone: what the kernel counted, its uids, cgroups, proxy
 * directory and descriptors go, then its on_exit. Does not free it. */
void kiln__jail_gone(struct kiln_jail_sandbox *sb);
/* Remove a sandbox's cgroups on the thread pool (retrying while its last
 * processes are reaped); `cg` is copied. */
void kiln__jail_bury(struct kiln_jail *j, struct kiln_cgroup *cg);
/* The backend is going: spares are removed, not kept (jail_destroy). */
void kiln__jail_spares_close(struct kiln_jail *j);
/* The kill op: SIGKILL through the pidfd; a fork not answered yet is
 * killed when it is. Idempotent. */
void kiln__jail_kill(struct kiln_sandbox *pub);
/* A free index among `n` flags in `used` (marked used), from a random
 * place; -EAGAIN when every one is taken. */
int kiln__uid_alloc(unsigned char *used, int n);

#endif
