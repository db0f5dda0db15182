/*
 * One jail, cloned from the worker. Like nsjail's subproc and
 * Firecracker's jailer, the privileged steps happen here and stay small:
 *
 *   clone3(new user, mount, pid, net, ipc, uts namespaces, pidfd)
 *     child:  wait on a pipe; join its cgroups; become root of its
 *             namespace; exec kiln-agent
 *     parent: write uid/gid maps (root inside = an unprivileged host uid),
 *             release the child
 *
 * The agent then builds the jail from inside (agent/jail.c). The sandbox is
 * watched through its pidfd; killing PID 1 of the pid namespace ends every
 * process in it. Sandboxes forked from a template (zygote.c) are watched
 * and buried by the same code.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/jail.h"
#include "sandbox/options.h"
#include "base/log.h"
#include "base/sysutil.h"
#include "sandbox/zygote.h"
#include "wire/proto.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* The child between clone and exec: only async-signal-safe calls. */
__attribute__((noreturn))
static void child(struct kiln_jail *j, char **argv, int sync_rd, int sync_wr, int chan)
{
    char c;
    close(sync_wr);
    if (read(sync_rd, &c, 1) != 1) /* the parent died, or refused us */
        _exit(126);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() == 1)
        _exit(126);
    for (int i = 0; i < j->spawn_nprocs; i++) /* its own cgroups, before anything */
        if (write(j->spawn_procs[i], "0", 1) != 1)
            _exit(126);
    /* ... which are its root: /proc/self/cgroup names no host path */
    if (j->spawn_nprocs > 0 && unshare(CLONE_NEWCGROUP) < 0)
        _exit(126);
    /* root of the new user namespace = the unprivileged host uid */
    if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        _exit(126);
    /* the channel becomes fd 3, the image fd 4, the zygote library fd 5
     * and a session's job cgroup fds 6-9: each moved out of the way first
     * so none overwrites another */
    int want[4 + KILN_JOBCG_FDS] = {chan, j->tree_fd, j->spawn_lib_fd};
    int moved[4 + KILN_JOBCG_FDS];
    for (int i = 0; i < KILN_JOBCG_FDS; i++)
        want[3 + i] = j->spawn_job[i];
    for (int i = 0; i < 3 + KILN_JOBCG_FDS; i++)
        if ((moved[i] = want[i] >= 0 ? fcntl(want[i], F_DUPFD, 16) : -1) < 0 && want[i] >= 0)
            _exit(126);
    int agent = fcntl(j->agent_fd, F_DUPFD_CLOEXEC, 16); /* it may sit in a slot */
    if (agent < 0)
        _exit(126);
    /* Nothing of the worker's (Redis sockets, other jails) survives exec:
     * the slots not given are closed */
    for (int i = 0; i < 3 + KILN_JOBCG_FDS; i++)
        if (moved[i] >= 0 ? dup2(moved[i], 3 + i) < 0 : (close(3 + i), 0))
            _exit(126);
    if (syscall(SYS_close_range, 3 + 3 + KILN_JOBCG_FDS, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        _exit(126);
    static char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    syscall(SYS_execveat, agent, "", argv, envp, AT_EMPTY_PATH);
    _exit(127);
}

/* ---- host uid ranges -------------------------------------------------- */

/* A free range, from a random place: a sandbox's host uid shows inside
 * (its tmpfs mounts' uid= options), and a random one says nothing of how
 * many sandboxes came before; and a range just freed is unlikely to serve
 * again soon, while what the kernel frees lazily after a sandbox (an IPC
 * namespace's message queues, say) may still be charged to it. */
int kiln__uid_alloc(unsigned char *used, int n)
{
    unsigned r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (unsigned)uv_hrtime();
    for (int t = 0; t < n; t++) {
        int k = (int)((r + (unsigned)t) % (unsigned)n);
        if (!used[k]) {
            used[k] = 1;
            return k;
        }
    }
    return -EAGAIN;
}

static long long uid_of(const struct kiln_jail *j, int slot)
{
    return (long long)j->pub.cfg->jail_uid_base + (long long)slot * KILN_UID_STRIDE;
}

/* clone3 with the new user namespace owned by `owner`, not by the worker:
 * the kernel charges what the sandbox holds of every per-user budget
 * (inotify instances, queued signals, message queue bytes, ...) to the
 * owner as well, so with root as the owner a job could exhaust root's.
 * Only this thread's effective ids change, around the one call: raw
 * syscalls, not libc's, which would change every thread's. A kernel that
 * refuses a user namespace to an unprivileged owner (a hardened sysctl or
 * LSM) gets the worker as the owner, said once in the log. Returns as
 * clone3 does: the pid, 0 in the child, or -1 with errno set. */
static pid_t clone_owned(struct kiln_jail *j, struct clone_args *ca, long long owner)
{
    if (!j->owner_fallback) {
        if (syscall(SYS_setresgid, -1, (gid_t)owner, -1) < 0 || syscall(SYS_setresuid, -1, (uid_t)owner, -1) < 0) {
            syscall(SYS_setresgid, -1, 0, -1);
            return -1;
        }
        pid_t pid = (pid_t)syscall(SYS_clone3, ca, sizeof(*ca));
        if (pid == 0)
            return 0;
        int e = errno;
        if (syscall(SYS_setresuid, -1, 0, -1) < 0 || syscall(SYS_setresgid, -1, 0, -1) < 0)
            abort(); /* cannot happen: the saved ids are root's */
        if (pid > 0 || (e != EPERM && e != EACCES && e != ENOSPC)) {
            errno = e;
            return pid;
        }
        if (e == ENOSPC) {
            /* that uid's namespace count, its last sandbox's namespaces
             * not yet freed: this once, the worker owns them */
            kiln_warn("jail: a user namespace owned by uid %lld: %s; this sandbox's is the worker's",
                      owner, strerror(e));
        } else {
            kiln_warn("jail: this kernel refuses a user namespace owned by the sandbox's uid (%s): "
                      "the worker owns them, and jobs share root's per-user budgets", strerror(e));
            j->owner_fallback = 1;
        }
    }
    return (pid_t)syscall(SYS_clone3, ca, sizeof(*ca));
}

/* A sandbox's own directory for its egress proxy socket, bound into it
 * alone, named by a random token: inside, /proc/self/mountinfo shows it as
 * "/<token>" on the worker's "kiln-proxy" tmpfs, and nothing of the host's
 * layout, the worker's pid or how many sandboxes came before. */
static int proxy_dir_make(struct kiln_jail *j, char *out, size_t len)
{
    unsigned char tok[12];
    char hex[2 * sizeof(tok) + 1];
    if (getrandom(tok, sizeof(tok), 0) != (ssize_t)sizeof(tok))
        return -EIO;
    for (size_t i = 0; i < sizeof(tok); i++)
        snprintf(hex + 2 * i, 3, "%02x", tok[i]);
    if (snprintf(out, len, "%s/%s", j->proxy_root, hex) >= (int)len)
        return -ENAMETOOLONG;
    if (mkdir(out, 0755) < 0)
        return -errno;
    if (j->pub.cfg->egress_ca_pem == NULL)
        return 0;
    /* the egress CA, linked: one copy on the tmpfs for every sandbox */
    static const char *const ca[] = {KILN_CA_FILE, KILN_CA_BUNDLE_FILE};
    for (size_t i = 0; i < 2; i++) {
        char from[600], to[600];
        snprintf(from, sizeof(from), "%s/%s", j->proxy_root, ca[i]);
        snprintf(to, sizeof(to), "%s/%s", out, ca[i]);
        if (link(from, to) < 0)
            return -errno;
    }
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

/* A sandbox's cgroups, removed on the thread pool: under cgroup v1 a
 * removal can wait for an RCU grace period (12 ms seen here), which on the
 * loop delayed the job's exit frame. Retried while the sandbox's last
 * processes are still being reaped. */
struct burial {
    uv_work_t req;
    struct kiln_cgroup_spares *spares; /* a reference: the backend may be gone by then */
    struct kiln_cgroups cgs;  /* without spares: a copy of the backend's */
    struct kiln_cgroup cg;
    int reset;                /* clean and ready for another sandbox */
};

static void spares_unref(struct kiln_cgroup_spares *sp)
{
    if (sp != NULL && --sp->refs == 0) {
        for (size_t i = 0; i < sp->n; i++)
            kiln_cgroup_close(&sp->v[i]);
        free(sp);
    }
}

static void bury_work(uv_work_t *req)
{
    struct burial *b = req->data;
    /* both retried while the sandbox's last processes are still being
     * reaped; a cgroup that cannot be made clean is removed */
    for (int i = 0; i < 500 && b->spares != NULL && !b->spares->closed; i++) {
        int r = kiln_cgroup_reset(&b->cg);
        if (r == 0) {
            b->reset = 1;
            return;
        }
        if (r != -EAGAIN)
            break;
        usleep(2000);
    }
    for (int i = 0; i < 100 && kiln_cgroup_remove(&b->cg) == -EBUSY; i++)
        usleep(20000);
}

static void bury_done(uv_work_t *req, int status)
{
    struct burial *b = req->data;
    struct kiln_cgroup_spares *sp = b->spares;
    (void)status;
    int kept = b->reset && !sp->closed && sp->n < KILN_CGROUP_SPARES; /* (reset: sp is set) */
    if (kept)
        sp->v[sp->n++] = b->cg;
    else if (b->reset)
        kiln_cgroup_remove(&b->cg);
    kiln_debug("jail: cgroup %s %s", b->cg.name, kept ? "reset, kept for the next sandbox" : "removed");
    spares_unref(sp);
    free(b);
}

void kiln__jail_bury(struct kiln_jail *j, struct kiln_cgroup *cg)
{
    struct burial *b = calloc(1, sizeof(*b));
    if (b != NULL) {
        b->spares = j->spares;
        b->cg = *cg;
        b->cg.cgs = j->spares != NULL ? &j->spares->cgs : &b->cgs;
        b->cgs = j->cgs;
        b->req.data = b;
        if (j->spares != NULL)
            j->spares->refs++;
        if (uv_queue_work(j->pub.loop, &b->req, bury_work, bury_done) == 0) {
            kiln_cgroup_forget(cg); /* the burial's now */
            return;
        }
        spares_unref(j->spares);
        free(b);
    }
    kiln_cgroup_remove(cg);
}

void kiln__jail_spares_close(struct kiln_jail *j)
{
    if (j->spares != NULL) {
        j->spares->closed = 1;
        spares_unref(j->spares);
        j->spares = NULL;
    }
}

/* The sandbox is gone: what the kernel counted, its cgroups and proxy
 * directory, then the caller's callback. */
void kiln__jail_gone(struct kiln_jail_sandbox *sb)
{
    struct kiln_jail *j = (struct kiln_jail *)sb->pub.backend;
    if (sb->uid_slot >= 0)
        j->uid_used[sb->uid_slot] = 0;
    if (sb->zyg != NULL && sb->fork_index >= 0)
        kiln__zygote_fork_done(sb->zyg, sb->fork_index);
    sb->uid_slot = sb->fork_index = -1;
    if (sb->has_cg) {
        int64_t oom = 0;
        kiln_cgroup_stats(&sb->cg, &sb->pub.peak_kb, &oom);
        sb->pub.oom_kills = oom > 0 ? oom : 0;
        kiln__jail_bury((struct kiln_jail *)sb->pub.backend, &sb->cg);
    }
    if (sb->pidfd >= 0)
        close(sb->pidfd);
    sb->pidfd = -1;
    if (sb->pub.fd >= 0)
        close(sb->pub.fd);
    if (sb->proxy_dir[0] != '\0') {
        char sock[600];
        static const char *const files[] = {"p.sock", KILN_CA_FILE, KILN_CA_BUNDLE_FILE};
        for (size_t i = 0; i < 3; i++) {
            snprintf(sock, sizeof(sock), "%s/%s", sb->proxy_dir, files[i]);
            unlink(sock);
        }
        rmdir(sb->proxy_dir);
    }
    if (sb->pub.on_exit != NULL)
        sb->pub.on_exit(&sb->pub);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    struct kiln_jail_sandbox *sb = h->data;
    (void)status;
    (void)events;
    /* a forked sandbox is the zygote's child, not ours: no status to
     * collect, and the pidfd being readable is its end */
    if (!kiln_pidfd_reaped(sb->pidfd, &sb->pub.wstatus, &sb->pub.ru))
        return;
    uv_poll_stop(h);
    kiln__jail_gone(sb);
    uv_close((uv_handle_t *)h, on_poll_closed);
}

void kiln__jail_watch(struct kiln_jail_sandbox *sb, int pidfd)
{
    sb->pidfd = pidfd;
    uv_poll_init(sb->pub.backend->loop, &sb->poll, pidfd);
    sb->poll.data = sb;
    uv_poll_start(&sb->poll, UV_READABLE, on_pidfd);
}

void kiln__jail_kill(struct kiln_sandbox *pub)
{
    struct kiln_jail_sandbox *sb = (struct kiln_jail_sandbox *)pub;
    if (!sb->killed && sb->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
    sb->killed = 1; /* a fork not answered yet: killed when it is */
}

/* The cgroup files a spawn opened for its child, which has its copies. */
static void spawn_fds_close(struct kiln_jail *j)
{
    for (int i = 0; i < j->spawn_nprocs; i++)
        close(j->spawn_procs[i]);
    j->spawn_nprocs = 0;
    for (int i = 0; i < KILN_JOBCG_FDS; i++) {
        if (j->spawn_job[i] >= 0)
            close(j->spawn_job[i]);
        j->spawn_job[i] = -1;
    }
}

/* Its first process joins the cgroups itself through `procs` (the kernel
 * checks the opener's rights: ours). The worker's loop never waits on a
 * migration, which under cgroup v1 waits for an RCU grace period (~10 ms
 * here). */
int kiln__jail_cgroup(struct kiln_jail *j, struct kiln_jail_sandbox *sb, int procs[KILN_CGROUP_FDS],
                      char *err, size_t errlen)
{
    const struct kiln_sandbox_opts *cfg = j->pub.cfg;
    int r, n = 0;
    if (!j->cg_ok)
        return 0;
    err[0] = '\0';
    if (j->spares != NULL && j->spares->n > 0) {
        /* one an earlier sandbox used, reset clean (kiln_cgroup_reset) */
        sb->cg = j->spares->v[--j->spares->n];
        sb->cg.cgs = &j->cgs;
    } else if ((r = kiln_cgroup_create(&j->cgs, &sb->cg, err, errlen)) < 0) {
        kiln_cgroup_remove(&sb->cg);
        return r;
    }
    if ((r = kiln_cgroup_limit(&sb->cg, cfg->memory_mb << 20, cfg->pids)) < 0 ||
        (r = n = kiln_cgroup_open_procs(&sb->cg, procs)) < 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "cgroup: %s", strerror(-r));
        kiln_cgroup_remove(&sb->cg);
        return r;
    }
    sb->has_cg = 1;
    return n;
}

int kiln__jail_clone(struct kiln_jail *j, int lib_fd, int session, struct kiln_jail_sandbox **out,
                     char *err, size_t errlen)
{
    struct kiln_backend *b = &j->pub;
    int sv[2] = {-1, -1}, sync[2] = {-1, -1}, pidfd = -1, r;
    char path[64];

    struct kiln_jail_sandbox *sb = calloc(1, sizeof(*sb));
    if (sb == NULL) {
        snprintf(err, errlen, "jail: out of memory");
        return -ENOMEM;
    }
    sb->fork_index = -1;
    if ((r = sb->uid_slot = kiln__uid_alloc(j->uid_used, KILN_UID_SLOTS)) < 0) {
        free(sb);
        snprintf(err, errlen, "jail: every host uid range is in use (%d sandboxes)", KILN_UID_SLOTS);
        return r;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(sync, O_CLOEXEC) < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: socketpair/pipe: %s", strerror(-r));
        goto fail;
    }
    /* its own directory for an egress proxy socket, bound into it alone */
    char *argv[16];
    int a = 0;
    while (j->argv[a] != NULL) {
        argv[a] = j->argv[a];
        a++;
    }
    /* (a template runs no job: it has none) */
    if (lib_fd < 0) {
        if ((r = proxy_dir_make(j, sb->proxy_dir, sizeof(sb->proxy_dir))) < 0) {
            snprintf(err, errlen, "jail: mkdir %s: %s", sb->proxy_dir, strerror(-r));
            goto fail;
        }
        argv[a++] = "--proxy-dir";
        argv[a++] = sb->proxy_dir;
        sb->pub.proxy_dir = sb->proxy_dir;
    }
    if (lib_fd >= 0) {
        argv[a++] = "--zygote-lib-fd";
        argv[a++] = "5";
    }
    argv[a] = NULL;
    /* its cgroups, which it joins first thing: everything it ever starts
     * is counted there */
    if ((r = kiln__jail_cgroup(j, sb, j->spawn_procs, err, errlen)) < 0)
        goto fail;
    j->spawn_nprocs = r;
    if (session) {
        /* a session's job runs in a cgroup of its own, which its agent
         * freezes while the session idles */
        int join = -1;
        r = sb->has_cg ? kiln_cgroup_add_job(&sb->cg, &join, j->spawn_job) : -ENOTSUP;
        if (r < 0) {
            snprintf(err, errlen, "jail: a session's job cgroup: %s",
                     r == -ENOTSUP ? "sessions need cgroup v2's freezer (a cgroup v2 host, or a v2 "
                                     "hierarchy mounted beside v1's, as systemd's hybrid mode does)"
                                   : strerror(-r));
            goto fail;
        }
        if (join >= 0)
            j->spawn_procs[j->spawn_nprocs++] = join;
        argv[a++] = "--job-cgroup";
        argv[a++] = "6";
        argv[a] = NULL;
    }
    /* The image as a detached mount: the agent attaches it inside its own
     * mount namespace (a mount of ours could not be bound from there). */
    j->tree_fd = -1;
    if (j->root_fd >= 0 &&
        (j->tree_fd = (int)syscall(SYS_open_tree, j->root_fd, "",
                                   OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE)) < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: open_tree of the rootfs: %s", strerror(-r));
        goto fail;
    }
    struct clone_args ca = {
        .flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                 CLONE_NEWUTS | CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
    };
    j->spawn_lib_fd = lib_fd;
    long long host_uid = uid_of(j, sb->uid_slot);
    pid_t pid = clone_owned(j, &ca, host_uid);
    if (pid == 0)
        child(j, argv, sync[0], sync[1], sv[1]);
    int clone_errno = errno; /* before the close() calls below */
    j->spawn_lib_fd = -1;
    spawn_fds_close(j);
    if (pid < 0) {
        r = -clone_errno;
        snprintf(err, errlen, "jail: clone3: %s", strerror(clone_errno));
        if (j->tree_fd >= 0)
            close(j->tree_fd);
        j->tree_fd = -1;
        goto fail;
    }
    if (j->tree_fd >= 0)
        close(j->tree_fd);
    j->tree_fd = -1;
    close(sv[1]);
    close(sync[0]);
    sv[1] = sync[0] = -1;
    sb->pid = pid;
    sb->pidfd = pidfd;

    /* root inside = the range's first host id; the job's uid 1000 = +1000
     * (a template's: +1000 and on, one per sandbox it forks) */
    char map[96];
    snprintf(map, sizeof(map), "0 %lld 1\n1000 %lld %d\n", host_uid, host_uid + 1000,
             lib_fd >= 0 ? KILN_ZYGOTE_FORKS : 1);
    snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
    if ((r = kiln_write_file(path, map)) == 0) {
        snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
        r = kiln_write_file(path, map);
    }
    ssize_t go = r < 0 ? 0 : write(sync[1], "g", 1);
    if (r < 0 || go != 1) {
        r = r < 0 ? r : go < 0 ? -errno : -EIO;
        snprintf(err, errlen, "jail: writing id maps: %s", strerror(-r));
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        waitpid(pid, NULL, 0);
        goto fail;
    }
    close(sync[1]);
    sync[1] = -1;

    sb->pub.backend = b;
    sb->pub.fd = sv[0];
    kiln__jail_watch(sb, pidfd);
    *out = sb;
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        if (sync[i] >= 0)
            close(sync[i]);
    }
    if (pidfd >= 0)
        close(pidfd);
    spawn_fds_close(j);
    if (sb->has_cg)
        kiln__jail_bury(j, &sb->cg);
    j->uid_used[sb->uid_slot] = 0;
    free(sb);
    return r;
}

/* ---- zygotes ----------------------------------------------------------- */
