/*
 * Per-sandbox cgroups: memory and pids limits the kernel enforces, and the
 * kernel's own accounting of peak memory and OOM kills. cgroup v2 where the
 * host has it (memory and pids controllers in /sys/fs/cgroup), v1 where it
 * does not (separate memory and pids hierarchies).
 */
#ifndef KILN_JAIL_CGROUP_H
#define KILN_JAIL_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct kiln_cgroups {
    int v2;
    char root_v2[256];        /* v2: <mount>/kiln */
    char root_mem[256];       /* v1: memory/kiln */
    char root_pids[256];      /* v1: pids/kiln */
    char root_cpu[256];       /* v1: cpuacct/kiln, or "" where it is not mounted */
    char root_frz[256];       /* where a sandbox's freezable job cgroup goes:
                               * v2: root_v2; v1 beside a v2 mount without
                               * controllers (hybrid): <unified>/kiln; "" none */
};

/* The most cgroup.procs files a sandbox joins (v1: memory, pids, cpuacct;
 * and the v2 hierarchy of a hybrid host, for its job cgroup). */
#define KILN_CGROUP_FDS 4

/* A sandbox's job cgroup, open for its agent (the job's processes join it;
 * the agent freezes and kills them there): see kiln_cgroup_add_job(). */
enum { KILN_JOBCG_PROCS, KILN_JOBCG_FREEZE, KILN_JOBCG_EVENTS, KILN_JOBCG_KILL, KILN_JOBCG_FDS };

/* How many of its control files a cgroup keeps open (cgroup.c) */
#define KILN_CGROUP_KEPT 9
struct kiln_cgroup {
    const struct kiln_cgroups *cgs;
    char name[64];
    /* what an earlier sandbox left in its counters (kiln_cgroup_reset):
     * the stats below count from here */
    int64_t peak_base, oom_base;
    int job;                  /* it has a job cgroup (kiln_cgroup_add_job) */
    /* the control files it reads and writes at every sandbox (limits,
     * stats, reset; not cgroup.procs: cgroup.c's unpopulated()), each
     * opened once and kept while the cgroup lives, -1 until first used:
     * a cgroup serves many sandboxes, and opening a kernfs file costs more
     * than reading it. The value is the owner: whoever holds the struct
     * last removes it (kiln_cgroup_remove), and a copy that lets go calls
     * kiln_cgroup_forget. */
    int fd[KILN_CGROUP_KEPT];
};

/* Find the hierarchies and make kiln's parent cgroups. Returns 0, or a
 * negative code with why in `err` (limits then cannot be enforced). */
int kiln_cgroups_init(struct kiln_cgroups *cgs, char *err, size_t errlen);
/* Make an empty cgroup for one sandbox, which the sandbox's first process
 * joins itself (see open_procs). */
int kiln_cgroup_create(const struct kiln_cgroups *cgs, struct kiln_cgroup *cg, char *err,
                       size_t errlen);
/* Its cgroup.procs file(s), open for writing: a process that writes "0"
 * to them joins (the kernel checks the opener's rights, the worker's).
 * Returns how many (1 for v2; for v1, memory, pids and cpuacct where it is
 * mounted), or -errno. */
int kiln_cgroup_open_procs(const struct kiln_cgroup *cg, int fds[KILN_CGROUP_FDS]);
/* Give it a child cgroup "job" in the v2 hierarchy (cgroup v2, or the
 * unified mount of a hybrid host), where the sandbox's job runs apart from
 * its agent, so the agent can freeze everything the job started
 * (cgroup.freeze) and kill it (cgroup.kill) without a race against what
 * the job does meanwhile. `join` gets the cgroup.procs file the sandbox's
 * first process must join as well (hybrid hosts: the sandbox's own v2
 * cgroup) or -1; `fds` the job cgroup's cgroup.procs, cgroup.freeze,
 * cgroup.events (read) and cgroup.kill (-1 before Linux 5.14), in
 * KILN_JOBCG_* order; the caller closes all of them. Returns 0, -ENOTSUP
 * when this host has no v2 hierarchy, or another -errno. */
int kiln_cgroup_add_job(struct kiln_cgroup *cg, int *join, int fds[KILN_JOBCG_FDS]);
/* Set its limits: memory in bytes, processes (0: leave as is). */
int kiln_cgroup_limit(struct kiln_cgroup *cg, int64_t memory_bytes, int64_t pids);
/* The kernel's accounting: peak memory (KiB) and OOM kills so far. */
void kiln_cgroup_stats(struct kiln_cgroup *cg, int64_t *peak_kb, int64_t *oom_kills);
/* The CPU time its processes have used (ms), every one counted however
 * it ended, since it was made (a reused one: by every sandbox it served;
 * take the difference over a job); -1 when this host does not account it
 * (v1 without cpuacct). */
int64_t kiln_cgroup_cpu_ms(struct kiln_cgroup *cg);
/* Make it ready for another sandbox instead of removing it (a mkdir and
 * rmdir of every controller's directory saved): its processes all gone,
 * what they had charged reclaimed, its peak and OOM count starting again.
 * Returns 0; -EAGAIN while its last processes are still being reaped; or
 * another negative errno when it cannot be made clean (charges it cannot
 * shed, or cgroup v2 before Linux 6.12, whose memory.peak cannot be
 * reset): remove it then. It blocks (memory
 * reclaim): never on the event loop. */
int kiln_cgroup_reset(struct kiln_cgroup *cg);
/* Close its kept files and remove it; its processes must be gone.
 * Returns 0 or -errno (EBUSY while the last of them are still being
 * reaped). */
int kiln_cgroup_remove(struct kiln_cgroup *cg);
/* Let go of its kept files without closing them: another copy of the
 * struct owns them now. */
void kiln_cgroup_forget(struct kiln_cgroup *cg);
/* Close its kept files (a spare dropped at the backend's end). */
void kiln_cgroup_close(struct kiln_cgroup *cg);

/* Remove sandbox cgroups in bulk ("sb-<pid>-<token>-<n>"). `ours`: every
 * one this worker made (at its exit: their processes are killed and
 * reaped first). Otherwise those of workers no longer running, only when
 * empty and untouched for five seconds (a worker in another pid namespace
 * may look gone from here). Returns how many were removed. */
int kiln_cgroup_sweep(const struct kiln_cgroups *cgs, int ours);

#endif
