/*
 * The jail backend, host side. Like nsjail's subproc and Firecracker's
 * jailer, the privileged steps happen here and stay small:
 *
 *   clone3(new user, mount, pid, net, ipc, uts namespaces, pidfd)
 *     child:  wait on a pipe; become root of its namespace; exec kiln-agent
 *     parent: write uid/gid maps (root inside = an unprivileged host uid),
 *             release the child
 *
 * The agent then builds the jail from inside (agent/jail.c). The sandbox is
 * watched through its pidfd; killing PID 1 of the pid namespace ends every
 * process in it.
 *
 * A profile whose interpreter can fork (python) gets a template jail: its
 * interpreter, started once, is a zygote (agent/zygote.c) that clones each
 * new sandbox from itself, into fresh pid, mount, net, ipc and uts
 * namespaces and the sandbox's own cgroups. The worker asks over the
 * template's channel and gets the sandbox's pidfd back; the sandbox's agent
 * then talks on its own channel as any jail's does. While there is no
 * template (starting, or gone and waiting to be restarted), sandboxes of
 * that profile are made as above.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/backend.h"
#include "core/config.h"
#include "sandbox/cgroup.h"
#include "core/log.h"
#include "wire/proto.h"
#include "sandbox/vmm.h"

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

struct jail_sandbox;

/* Host ids per sandbox: its root is base + k * STRIDE, its job's uid that
 * + 1000; a template's forked sandboxes use + 1000 + i (i < ZYG_FORKS). */
#define KILN_UID_STRIDE 65536
#define KILN_UID_SLOTS 4096
#define ZYG_FORKS 256

/* A template jail whose interpreter forks sandboxes of one profile. */
struct zygote {
    struct jail *j;
    char profile[32];
    char *msg;                /* the "zygote" message that starts it */
    size_t len;
    enum { Z_NONE, Z_AGENT, Z_BOOT, Z_UP } state;
    struct jail_sandbox *t;   /* the template */
    int fd;                   /* its channel: the backend's own */
    uv_poll_t *poll;
    struct jail_sandbox *head, **tail; /* forks asked for, answered in order */
    unsigned char fork_used[ZYG_FORKS]; /* its job uids in use */
    uint64_t t_start;
    unsigned failures;
    uv_timer_t retry;         /* running: backing off; then starts it again */
    uint64_t forks, starts;   /* for /metrics */
};

struct jail {
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
    int spawn_procs[2];       /* per spawn: its cgroup.procs files, to join */
    int spawn_nprocs;
    struct zygote *zyg[4];
    int nzyg;
    /* host uid ranges: sandbox k's ids are uid_base + k * KILN_UID_STRIDE
     * onwards, so no two live sandboxes share a per-user budget of the
     * host's (pipe buffers, inotify, queued signals, ...) */
    unsigned char uid_used[KILN_UID_SLOTS];
    int owner_fallback;       /* the kernel refused a namespace owned by
                               * the sandbox's uid: the worker owns them */
};

struct jail_sandbox {
    struct kiln_sandbox pub;
    pid_t pid;
    int pidfd;
    uv_poll_t poll;
    int killed;
    struct kiln_cgroup cg;
    int has_cg;
    char proxy_dir[512];
    struct jail_sandbox *znext; /* a fork not answered yet (pidfd -1) */
    uint64_t t_ask;             /* when it was asked for */
    int uid_slot;               /* its host uid range (-1: none) */
    struct zygote *zyg;         /* forked: its template, and its index */
    int fork_index;             /* among the template's uids (-1: none) */
};

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int r = n == (ssize_t)strlen(text) ? 0 : -errno;
    close(fd);
    return r;
}

/* The child between clone and exec: only async-signal-safe calls. */
__attribute__((noreturn))
static void child(struct jail *j, char **argv, int sync_rd, int sync_wr, int chan)
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
    /* the channel becomes fd 3 and the image fd 4: moved out of the way
     * first so neither overwrites the other */
    int cfd = fcntl(chan, F_DUPFD, 10), rfd = j->tree_fd >= 0 ? fcntl(j->tree_fd, F_DUPFD, 10) : -1;
    int lfd = j->spawn_lib_fd >= 0 ? fcntl(j->spawn_lib_fd, F_DUPFD, 10) : -1;
    if (cfd < 0 || dup2(cfd, 3) < 0 || (j->tree_fd >= 0 && (rfd < 0 || dup2(rfd, 4) < 0)) ||
        (j->spawn_lib_fd >= 0 && (lfd < 0 || dup2(lfd, 5) < 0)))
        _exit(126);
    /* Nothing of the worker's (Redis sockets, other jails) survives exec. */
    if (j->spawn_lib_fd >= 0 && j->tree_fd < 0)
        close(4);
    if (syscall(SYS_close_range, j->spawn_lib_fd >= 0 ? 6 : j->tree_fd >= 0 ? 5 : 4, ~0U,
                CLOSE_RANGE_CLOEXEC) < 0)
        _exit(126);
    static char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    syscall(SYS_execveat, j->agent_fd, "", argv, envp, AT_EMPTY_PATH);
    _exit(127);
}

/* ---- host uid ranges -------------------------------------------------- */

/* A free range, from a random place: a sandbox's host uid shows inside
 * (its tmpfs mounts' uid= options), and a random one says nothing of how
 * many sandboxes came before; and a range just freed is unlikely to serve
 * again soon, while what the kernel frees lazily after a sandbox (an IPC
 * namespace's message queues, say) may still be charged to it. -1: none
 * free. */
static int uid_alloc(unsigned char *used, int n)
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
    return -1;
}

static long long uid_of(const struct jail *j, int slot)
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
 * LSM) gets the worker as the owner, said once in the log. */
static pid_t clone_owned(struct jail *j, struct clone_args *ca, long long owner)
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
static int proxy_dir_make(struct jail *j, char *out, size_t len)
{
    unsigned char tok[12];
    char hex[2 * sizeof(tok) + 1];
    if (getrandom(tok, sizeof(tok), 0) != (ssize_t)sizeof(tok))
        return -EIO;
    for (size_t i = 0; i < sizeof(tok); i++)
        snprintf(hex + 2 * i, 3, "%02x", tok[i]);
    if (snprintf(out, len, "%s/%s", j->proxy_root, hex) >= (int)len)
        return -ENAMETOOLONG;
    return mkdir(out, 0755) < 0 ? -errno : 0;
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
    struct kiln_cgroups cgs;  /* a copy: the backend may be gone by then */
    struct kiln_cgroup cg;
};

static void bury_work(uv_work_t *req)
{
    struct burial *b = req->data;
    for (int i = 0; i < 100 && kiln_cgroup_remove(&b->cg) == -EBUSY; i++)
        usleep(20000);
}

static void bury_done(uv_work_t *req, int status)
{
    (void)status;
    free(req->data);
}

static void bury(struct jail *j, const struct kiln_cgroup *cg)
{
    struct burial *b = malloc(sizeof(*b));
    if (b != NULL) {
        b->cgs = j->cgs;
        b->cg = *cg;
        b->cg.cgs = &b->cgs;
        b->req.data = b;
        if (uv_queue_work(j->pub.loop, &b->req, bury_work, bury_done) == 0)
            return;
        free(b);
    }
    kiln_cgroup_remove(cg);
}

static void jail_stats(struct kiln_sandbox *pub, int64_t *peak_kb, int64_t *oom_kills)
{
    struct jail_sandbox *sb = (struct jail_sandbox *)pub;
    *peak_kb = -1;
    *oom_kills = 0;
    if (sb->has_cg)
        kiln_cgroup_stats(&sb->cg, peak_kb, oom_kills);
}

static int jail_limit(struct kiln_sandbox *pub, const struct kiln_sandbox_limits *l)
{
    struct jail_sandbox *sb = (struct jail_sandbox *)pub;
    if (!sb->has_cg)
        return -ENOTSUP;
    return kiln_cgroup_limit(&sb->cg, l->memory_bytes, l->pids);
}

/* The sandbox is gone: what the kernel counted, its cgroups and proxy
 * directory, then the caller's callback. */
static void sandbox_gone(struct jail_sandbox *sb)
{
    struct jail *j = (struct jail *)sb->pub.backend;
    if (sb->uid_slot >= 0)
        j->uid_used[sb->uid_slot] = 0;
    if (sb->zyg != NULL && sb->fork_index >= 0)
        sb->zyg->fork_used[sb->fork_index] = 0;
    sb->uid_slot = sb->fork_index = -1;
    if (sb->has_cg) {
        int64_t oom = 0;
        kiln_cgroup_stats(&sb->cg, &sb->pub.peak_kb, &oom);
        sb->pub.oom_kills = oom > 0 ? oom : 0;
        bury((struct jail *)sb->pub.backend, &sb->cg);
    }
    if (sb->pidfd >= 0)
        close(sb->pidfd);
    if (sb->pub.fd >= 0)
        close(sb->pub.fd);
    if (sb->proxy_dir[0] != '\0') {
        char sock[600];
        snprintf(sock, sizeof(sock), "%s/p.sock", sb->proxy_dir);
        unlink(sock);
        rmdir(sb->proxy_dir);
    }
    if (sb->pub.on_exit != NULL)
        sb->pub.on_exit(&sb->pub);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    struct jail_sandbox *sb = h->data;
    (void)status;
    (void)events;
    /* a forked sandbox is the zygote's child, not ours: no status to
     * collect, and the pidfd being readable is its end */
    if (!kiln_pidfd_reaped(sb->pidfd, &sb->pub))
        return;
    uv_poll_stop(h);
    sandbox_gone(sb);
    uv_close((uv_handle_t *)h, on_poll_closed);
}

static void jail_kill(struct kiln_sandbox *pub)
{
    struct jail_sandbox *sb = (struct jail_sandbox *)pub;
    if (!sb->killed && sb->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
    sb->killed = 1; /* a fork not answered yet: killed when it is */
}

/* The sandbox's own cgroups with the operator's default limits, empty:
 * its first process joins them itself through `procs` (the kernel checks
 * the opener's rights: ours). The worker's loop never waits on a
 * migration, which under cgroup v1 waits for an RCU grace period (~10 ms
 * here). Returns how many procs files (0: no cgroups here) or -errno. */
static int sandbox_cgroup(struct jail *j, struct jail_sandbox *sb, int procs[2], char *err, size_t errlen)
{
    const struct kiln_config *cfg = j->pub.cfg;
    int r, n = 0;
    if (!j->cg_ok)
        return 0;
    err[0] = '\0';
    if ((r = kiln_cgroup_create(&j->cgs, &sb->cg, err, errlen)) < 0 ||
        (r = kiln_cgroup_limit(&sb->cg, cfg->memory_mb << 20, cfg->pids)) < 0 ||
        (r = n = kiln_cgroup_open_procs(&sb->cg, procs)) < 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "cgroup: %s", strerror(-r));
        kiln_cgroup_remove(&sb->cg);
        return r;
    }
    sb->has_cg = 1;
    return n;
}

/* A jail of its own (clone3 from here); with `lib_fd` >= 0, a template
 * whose agent gets the zygote library. */
static int spawn_jail(struct jail *j, int lib_fd, struct jail_sandbox **out, char *err, size_t errlen)
{
    struct kiln_backend *b = &j->pub;
    int sv[2] = {-1, -1}, sync[2] = {-1, -1}, pidfd = -1, r;
    char path[64];

    struct jail_sandbox *sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return -ENOMEM;
    sb->fork_index = -1;
    if ((sb->uid_slot = uid_alloc(j->uid_used, KILN_UID_SLOTS)) < 0) {
        free(sb);
        snprintf(err, errlen, "jail: every host uid range is in use (%d sandboxes)", KILN_UID_SLOTS);
        return -EAGAIN;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(sync, O_CLOEXEC) < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: socketpair/pipe: %s", strerror(errno));
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
    if ((r = sandbox_cgroup(j, sb, j->spawn_procs, err, errlen)) < 0)
        goto fail;
    j->spawn_nprocs = r;
    /* The image as a detached mount: the agent attaches it inside its own
     * mount namespace (a mount of ours could not be bound from there). */
    j->tree_fd = -1;
    if (j->root_fd >= 0 &&
        (j->tree_fd = (int)syscall(SYS_open_tree, j->root_fd, "",
                                   OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE)) < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: open_tree of the rootfs: %s", strerror(errno));
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
    j->spawn_lib_fd = -1;
    for (int i = 0; i < j->spawn_nprocs; i++)
        close(j->spawn_procs[i]);
    j->spawn_nprocs = 0;
    if (pid < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: clone3: %s", strerror(errno));
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
             lib_fd >= 0 ? ZYG_FORKS : 1);
    snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
    if ((r = write_text(path, map)) == 0) {
        snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
        r = write_text(path, map);
    }
    if (r < 0 || write(sync[1], "g", 1) != 1) {
        r = r < 0 ? r : -errno;
        snprintf(err, errlen, "jail: writing id maps: %s", strerror(-r));
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        waitpid(pid, NULL, 0);
        goto fail;
    }
    close(sync[1]);
    sync[1] = -1;

    uv_poll_init(b->loop, &sb->poll, pidfd);
    sb->poll.data = sb;
    uv_poll_start(&sb->poll, UV_READABLE, on_pidfd);
    sb->pub.backend = b;
    sb->pub.fd = sv[0];
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
    for (int i = 0; i < j->spawn_nprocs; i++)
        close(j->spawn_procs[i]);
    j->spawn_nprocs = 0;
    if (sb->has_cg)
        bury(j, &sb->cg);
    j->uid_used[sb->uid_slot] = 0;
    free(sb);
    return r;
}

/* ---- zygotes ----------------------------------------------------------- */

static void zyg_start(struct zygote *z);

static void on_retry(uv_timer_t *t)
{
    struct zygote *z = t->data;
    if (z->state == Z_NONE)
        zyg_start(z);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* The template is gone (or never came up): forks still unanswered never
 * will be; the profile's sandboxes start afresh until it is back. */
static void zyg_down(struct zygote *z, const char *why)
{
    if (z->poll != NULL) {
        uv_poll_stop(z->poll);
        uv_close((uv_handle_t *)z->poll, free_handle);
        z->poll = NULL;
    }
    if (z->fd >= 0)
        close(z->fd);
    z->fd = -1;
    if (z->t != NULL) {
        z->t->pub.on_exit = NULL; /* its end is this */
        jail_kill(&z->t->pub);
        z->t = NULL;
    }
    while (z->head != NULL) {
        struct jail_sandbox *sb = z->head;
        z->head = sb->znext;
        sandbox_gone(sb);
        free(sb);
    }
    z->tail = &z->head;
    if (z->state != Z_NONE) {
        uint64_t wait = 1000ull << (z->failures < 6 ? z->failures : 6);
        z->failures++;
        kiln_warn("jail: the %s template is gone (%s): %s sandboxes start afresh; again in %llu ms",
                  z->profile, why, z->profile, (unsigned long long)wait);
        uv_timer_start(&z->retry, on_retry, wait, 0);
    }
    z->state = Z_NONE;
}

static void on_template_exit(struct kiln_sandbox *pub)
{
    struct zygote *z = pub->arg;
    z->t = NULL;
    zyg_down(z, "its jail ended");
}

/* Read exactly `len` bytes (the template's agent writes whole messages). */
static int read_exact(int fd, void *buf, size_t len)
{
    ssize_t n;
    while ((n = recv(fd, buf, len, MSG_WAITALL)) < 0 && errno == EINTR)
        ;
    return n == (ssize_t)len ? 0 : -1;
}

/* A message from the template's agent: its "ready", or an "error" (whose
 * first `have` bytes were read already). Returns its "t" and, for an
 * error, the reason in `why`. */
static int agent_msg(int fd, const unsigned char *have, size_t nhave, char *t, size_t tlen,
                     char *why, size_t whylen)
{
    unsigned char hdr[4], *body;
    size_t have_body = nhave > 4 ? nhave - 4 : 0;
    if (nhave > 0)
        memcpy(hdr, have, nhave < 4 ? nhave : 4);
    if (nhave < 4 && read_exact(fd, hdr + nhave, 4 - nhave) < 0)
        return -1;
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len > 65536 || len < have_body || (body = malloc(len)) == NULL)
        return -1;
    if (have_body > 0)
        memcpy(body, have + 4, have_body);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int r = -1;
    if (read_exact(fd, body + have_body, len - have_body) == 0 &&
        kiln_mp_unpack(&u, (const char *)body, len) == 0) {
        const msgpack_object *o = kiln_mp_get(&u.data, "t"), *reason = kiln_mp_get(&u.data, "reason");
        char *ts = o ? kiln_mp_strdup(o) : NULL, *rs = reason ? kiln_mp_strdup(reason) : NULL;
        snprintf(t, tlen, "%s", ts ? ts : "");
        snprintf(why, whylen, "%s", rs ? rs : "");
        free(ts);
        free(rs);
        r = 0;
    }
    msgpack_unpacked_destroy(&u);
    free(body);
    return r;
}

/* The zygote's answer to the oldest fork asked for. */
static void zyg_answer(struct zygote *z, const struct kiln_zygote_reply *rep, int pidfd)
{
    struct jail_sandbox *sb = z->head;
    if (sb == NULL) {
        if (pidfd >= 0)
            close(pidfd);
        zyg_down(z, "it answered a fork nobody asked for");
        return;
    }
    z->head = sb->znext;
    if (z->head == NULL)
        z->tail = &z->head;
    if (rep->err != 0 || pidfd < 0) {
        kiln_warn("jail: the %s zygote could not fork a sandbox: %s", z->profile,
                  strerror(rep->err ? rep->err : EPROTO));
        if (pidfd >= 0)
            close(pidfd);
        sandbox_gone(sb);
        free(sb);
        return;
    }
    kiln_debug("jail: %s sandbox forked (pid %d in the template)", z->profile, (int)rep->pid);
    z->forks++;
    sb->pidfd = pidfd;
    uv_poll_init(z->j->pub.loop, &sb->poll, pidfd);
    sb->poll.data = sb;
    uv_poll_start(&sb->poll, UV_READABLE, on_pidfd);
    if (sb->killed) {
        sb->killed = 0;
        jail_kill(&sb->pub);
    }
}

static void on_template(uv_poll_t *h, int status, int events)
{
    struct zygote *z = h->data;
    char t[32], why[300];
    (void)events;
    if (status < 0) {
        zyg_down(z, uv_strerror(status));
        return;
    }
    if (z->state == Z_AGENT) {
        /* the template's agent is up: its interpreter becomes the zygote */
        if (agent_msg(z->fd, NULL, 0, t, sizeof(t), why, sizeof(why)) < 0 || strcmp(t, "ready") != 0) {
            zyg_down(z, why[0] ? why : "its agent did not say ready");
            return;
        }
        if (send(z->fd, z->msg, z->len, MSG_NOSIGNAL) != (ssize_t)z->len) {
            zyg_down(z, strerror(errno));
            return;
        }
        z->state = Z_BOOT;
        return;
    }
    struct kiln_zygote_reply rep;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {&rep, sizeof(rep)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof(u.buf)};
    ssize_t n;
    while ((n = recvmsg(z->fd, &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    int pidfd = -1;
    struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        memcpy(&pidfd, CMSG_DATA(c), sizeof(int));
    if (n != (ssize_t)sizeof(rep) || rep.magic != KILN_ZYGOTE_MAGIC) {
        if (pidfd >= 0)
            close(pidfd);
        why[0] = '\0';
        if (n == (ssize_t)sizeof(rep) && z->state == Z_BOOT) /* the agent's error instead */
            agent_msg(z->fd, (const unsigned char *)&rep, sizeof(rep), t, sizeof(t), why, sizeof(why));
        zyg_down(z, why[0] ? why : n == 0 ? "its channel closed" : "it said something unexpected");
        return;
    }
    if (z->state == Z_BOOT) {
        if (pidfd >= 0)
            close(pidfd);
        z->state = Z_UP;
        z->failures = 0;
        kiln_info("jail: %s sandboxes fork from a template interpreter (up in %llu ms)", z->profile,
                  (unsigned long long)(uv_now(z->j->pub.loop) - z->t_start));
        return;
    }
    zyg_answer(z, &rep, pidfd);
}

static void zyg_start(struct zygote *z)
{
    struct jail *j = z->j;
    struct jail_sandbox *t;
    char err[256] = "out of memory";
    if (uv_is_active((uv_handle_t *)&z->retry))
        return; /* backing off */
    z->state = Z_AGENT; /* from here on, a failure backs off */
    if ((z->poll = malloc(sizeof(*z->poll))) == NULL || spawn_jail(j, j->lib_fd, &t, err, sizeof(err)) < 0) {
        free(z->poll);
        z->poll = NULL;
        zyg_down(z, err);
        return;
    }
    z->t = t;
    z->starts++;
    t->pub.on_exit = on_template_exit;
    t->pub.arg = z;
    z->fd = t->pub.fd;
    t->pub.fd = -1;
    z->t_start = uv_now(j->pub.loop);
    uv_poll_init(j->pub.loop, z->poll, z->fd);
    z->poll->data = z;
    uv_poll_start(z->poll, UV_READABLE, on_template);
}

/* A sandbox forked by the zygote: its cgroups first (empty: it joins them
 * itself), then the ask. Its channel works at once; its pidfd comes with
 * the answer. */
static int zyg_fork(struct zygote *z, struct jail_sandbox **out, char *err, size_t errlen)
{
    struct jail *j = z->j;
    int sv[2], procs[2] = {-1, -1}, nprocs = 0, r;
    struct jail_sandbox *sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return -ENOMEM;
    sb->pidfd = -1;
    sb->uid_slot = -1;
    sb->zyg = z;
    /* its job's own uid among the template's (each forked sandbox is a
     * user namespace of its own inside the template's) */
    if ((sb->fork_index = uid_alloc(z->fork_used, ZYG_FORKS)) < 0) {
        free(sb);
        snprintf(err, errlen, "zygote: all %d of the template's uids are in use", ZYG_FORKS);
        return -EAGAIN;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        r = -errno;
        z->fork_used[sb->fork_index] = 0;
        free(sb);
        return r;
    }
    if ((r = nprocs = sandbox_cgroup(j, sb, procs, err, errlen)) < 0) {
        nprocs = 0;
        goto fail;
    }
    int fds[3] = {sv[1], procs[0], procs[1]};
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } u;
    unsigned char ask[3] = {'F', (unsigned char)(sb->fork_index >> 8), (unsigned char)sb->fork_index};
    struct iovec iov = {ask, sizeof(ask)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = CMSG_SPACE((size_t)(1 + nprocs) * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)(1 + nprocs) * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)(1 + nprocs) * sizeof(int));
    if (sendmsg(z->fd, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof(ask)) {
        r = -errno;
        snprintf(err, errlen, "zygote: %s", strerror(errno));
        goto fail;
    }
    for (int i = 0; i < nprocs; i++)
        close(procs[i]);
    close(sv[1]);
    sb->pub.backend = &j->pub;
    sb->pub.fd = sv[0];
    sb->t_ask = uv_now(j->pub.loop);
    *z->tail = sb;
    z->tail = &sb->znext;
    *out = sb;
    return 0;
fail:
    for (int i = 0; i < nprocs; i++)
        close(procs[i]);
    close(sv[0]);
    close(sv[1]);
    if (sb->has_cg)
        bury(j, &sb->cg);
    z->fork_used[sb->fork_index] = 0;
    free(sb);
    return r;
}

static struct zygote *zyg_of(struct jail *j, const char *profile)
{
    for (int i = 0; i < j->nzyg; i++)
        if (strcmp(j->zyg[i]->profile, profile) == 0)
            return j->zyg[i];
    return NULL;
}

static void jail_zygote(struct kiln_backend *b, const char *profile, const void *msg, size_t len)
{
    struct jail *j = (struct jail *)b;
    struct zygote *z;
    if (j->lib_fd < 0 || j->nzyg == 4 || zyg_of(j, profile) != NULL || strlen(profile) >= sizeof(z->profile) ||
        (z = calloc(1, sizeof(*z))) == NULL)
        return;
    if ((z->msg = malloc(len)) == NULL) {
        free(z);
        return;
    }
    memcpy(z->msg, msg, len);
    z->len = len;
    z->j = j;
    z->fd = -1;
    z->tail = &z->head;
    snprintf(z->profile, sizeof(z->profile), "%s", profile);
    uv_timer_init(b->loop, &z->retry);
    z->retry.data = z;
    j->zyg[j->nzyg++] = z;
    zyg_start(z);
}

static void jail_gauges(struct kiln_backend *b, FILE *out)
{
    struct jail *j = (struct jail *)b;
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"kiln_zygote_up", "gauge", "1 while the profile's sandboxes fork from its template interpreter."},
        {"kiln_zygote_forks_total", "counter", "Sandboxes forked from a template interpreter."},
        {"kiln_zygote_starts_total", "counter", "Template jails started (more than one: it was restarted)."},
    };
    for (size_t f = 0; f < 3 && j->nzyg > 0; f++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
        for (int i = 0; i < j->nzyg; i++) {
            const struct zygote *z = j->zyg[i];
            unsigned long long v = f == 0 ? z->state == Z_UP : f == 1 ? z->forks : z->starts;
            fprintf(out, "%s{profile=\"%s\"} %llu\n", fam[f].name, z->profile, v);
        }
    }
}

static int jail_spawn(struct kiln_backend *b, const char *profile, const struct kiln_spawn_opts *o,
                      struct kiln_sandbox **out, char *err, size_t errlen)
{
    struct jail *j = (struct jail *)b;
    struct jail_sandbox *sb = NULL;
    /* limits are set per job by limit(); a forked sandbox has no way to
     * the egress proxy, so a job with net.allow gets a jail of its own */
    struct zygote *z = profile != NULL ? zyg_of(j, profile) : NULL;
    if (z != NULL && (o == NULL || !o->net)) {
        /* a template that does not come up, or stops answering, is hung */
        uint64_t now = uv_now(b->loop), hang = (uint64_t)b->cfg->hang_ms;
        if (hang > 0 && ((z->state != Z_NONE && z->state != Z_UP && now - z->t_start > hang) ||
                         (z->head != NULL && now - z->head->t_ask > hang)))
            zyg_down(z, "it stopped answering");
        if (z->state == Z_NONE)
            zyg_start(z);
        if (z->state == Z_UP && zyg_fork(z, &sb, err, errlen) == 0) {
            *out = &sb->pub;
            return 0;
        }
        err[0] = '\0';
    }
    int r = spawn_jail(j, -1, &sb, err, errlen);
    if (r == 0)
        *out = &sb->pub;
    return r;
}

static void jail_destroy(struct kiln_backend *b)
{
    struct jail *j = (struct jail *)b;
    for (int i = 0; i < j->nzyg; i++) {
        struct zygote *z = j->zyg[i];
        if (z->t != NULL)
            jail_kill(&z->t->pub); /* it dies with the worker anyway */
        uv_timer_stop(&z->retry);
        if (z->poll != NULL)
            uv_poll_stop(z->poll);
        if (z->fd >= 0)
            close(z->fd);
        free(z->msg);
        free(z);
    }
    /* every sandbox of ours ends here: killed, waited for, its cgroups
     * removed; then the proxy directories' tmpfs goes */
    if (j->cg_ok)
        kiln_cgroup_sweep(&j->cgs, 1);
    if (umount2(j->proxy_root, MNT_DETACH) < 0)
        kiln_warn("jail: unmounting %s: %s", j->proxy_root, strerror(errno));
    rmdir(j->proxy_root);
    if (j->lib_fd >= 0)
        close(j->lib_fd);
    close(j->agent_fd);
    if (j->root_fd >= 0)
        close(j->root_fd);
    free(j);
}

/* <state-dir>/proxy-<pid> and image-<pid> of workers no longer running:
 * their tmpfs or image unmounted (or, from older workers, the directories
 * inside removed), then the directory. */
void kiln_proxy_sweep(const char *state_dir)
{
    DIR *d = opendir(state_dir);
    struct dirent *e;
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[700], *end = NULL;
        int ours = strncmp(e->d_name, "proxy-", 6) == 0 || strncmp(e->d_name, "image-", 6) == 0;
        long pid = ours ? strtol(e->d_name + 6, &end, 10) : 0;
        if (pid <= 0 || *end != '\0' || kiln_pid_alive((pid_t)pid))
            continue;
        snprintf(path, sizeof(path), "%s/%s", state_dir, e->d_name);
        umount2(path, MNT_DETACH); /* not mounted (older workers): EINVAL */
        DIR *sub = opendir(path);
        struct dirent *f;
        while (sub != NULL && (f = readdir(sub)) != NULL) {
            char p[1000];
            if (f->d_name[0] == '.')
                continue;
            snprintf(p, sizeof(p), "%s/%s/p.sock", path, f->d_name);
            unlink(p);
            snprintf(p, sizeof(p), "%s/%s", path, f->d_name);
            rmdir(p);
        }
        if (sub != NULL)
            closedir(sub);
        if (rmdir(path) == 0)
            kiln_info("jail: removed %s, left by a worker that is gone", path);
    }
    closedir(d);
}

static const struct kiln_backend_ops jail_ops = {
    .name = "jail",
    .spawn = jail_spawn,
    .kill = jail_kill,
    .limit = jail_limit,
    .stats = jail_stats,
    .destroy = jail_destroy,
    .zygote = jail_zygote,
    .gauges = jail_gauges,
};

int kiln_backend_jail_new(uv_loop_t *loop, const struct kiln_config *cfg,
                          struct kiln_backend **out, char *err, size_t errlen)
{
    int r;
    if (geteuid() != 0) {
        snprintf(err, errlen, "the jail backend needs root to map its user namespace's ids");
        return -EPERM;
    }
    struct jail *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    snprintf(j->mnt, sizeof(j->mnt), "%s/jail-root", cfg->state_dir);
    if (snprintf(j->proxy_root, sizeof(j->proxy_root), "%s/proxy-%d", cfg->state_dir, (int)getpid()) >=
        (int)sizeof(j->proxy_root)) {
        snprintf(err, errlen, "--state-dir is too long");
        free(j);
        return -ENAMETOOLONG;
    }
    if ((r = kiln_mkdirs(j->mnt)) < 0 || (r = kiln_mkdirs(j->proxy_root)) < 0) {
        snprintf(err, errlen, "jail: cannot create %s: %s", j->mnt, strerror(-r));
        free(j);
        return r;
    }

    /* The agent attaches the image there as the jail's unprivileged root:
     * every directory on the way must let others through. */
    char walk[512];
    snprintf(walk, sizeof(walk), "%s", j->mnt);
    for (char *p = walk + strlen(walk); p > walk; p = strrchr(walk, '/')) {
        struct stat st;
        *p = '\0';
        if (walk[0] != '\0' && stat(walk, &st) == 0 && !(st.st_mode & S_IXOTH)) {
            snprintf(err, errlen, "jail: %s (on the way to --state-dir's jail-root) is mode %03o: "
                     "the jail's uid cannot pass it; make it o+x or choose another --state-dir",
                     walk, st.st_mode & 0777);
            free(j);
            return -EACCES;
        }
    }
    /* Opened once here: the child execs it by fd, so the agent may live
     * where the unprivileged jail uid could not walk to (under /root). */
    if ((j->agent_fd = open(cfg->agent, O_RDONLY | O_CLOEXEC)) < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: cannot open the agent %s: %s", cfg->agent, strerror(errno));
        free(j);
        return r;
    }
    j->root_fd = -1;
    if (cfg->rootfs != NULL &&
        (j->root_fd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: cannot open the rootfs %s: %s", cfg->rootfs, strerror(errno));
        close(j->agent_fd);
        free(j);
        return r;
    }
    /* the zygote library, for templates (optional: without it, every
     * sandbox starts its interpreter afresh) */
    j->lib_fd = j->spawn_lib_fd = -1;
    if (!cfg->no_zygote && cfg->zygote_lib != NULL &&
        (j->lib_fd = open(cfg->zygote_lib, O_RDONLY | O_CLOEXEC)) < 0)
        kiln_warn("jail: no zygote library (%s: %s): interpreters start afresh in every sandbox",
                  cfg->zygote_lib, strerror(errno));
    /* A template's forked sandboxes are user namespaces owned by uids of
     * the template's, whose own owner is the template's host uid: what they
     * hold of the rlimit-bounded budgets adds up there, against the limit
     * its creator (this process) had. Room for every fork's share. */
    struct rlimit sp = {(rlim_t)ZYG_FORKS * KILN_JOB_SIGPENDING, (rlim_t)ZYG_FORKS * KILN_JOB_SIGPENDING};
    struct rlimit mq = {(rlim_t)ZYG_FORKS * KILN_JOB_MSGQUEUE, (rlim_t)ZYG_FORKS * KILN_JOB_MSGQUEUE};
    if (j->lib_fd >= 0 && (setrlimit(RLIMIT_SIGPENDING, &sp) < 0 || setrlimit(RLIMIT_MSGQUEUE, &mq) < 0))
        kiln_warn("jail: cannot raise RLIMIT_SIGPENDING/RLIMIT_MSGQUEUE (%s; CAP_SYS_RESOURCE): python "
                  "sandboxes forked from one template share its queued signals and message queue bytes",
                  strerror(errno));
    snprintf(j->tmp_mb, sizeof(j->tmp_mb), "%lld", (long long)cfg->tmp_mb);
    char **a = j->argv;
    *a++ = "kiln-agent";
    *a++ = "--jail";
    *a++ = j->mnt;
    *a++ = "--tmp-mb";
    *a++ = j->tmp_mb;
    if (j->root_fd >= 0) {
        *a++ = "--root-fd";
        *a++ = "4";
    }
    *a = NULL;
    if (cfg->jail_uid_base < 1 ||
        cfg->jail_uid_base + (long long)(KILN_UID_SLOTS + 1) * KILN_UID_STRIDE > 0xfffffffell) {
        snprintf(err, errlen, "--jail-uid-base %lld: the sandboxes' %d uid ranges of %d must fit "
                 "below 2^32", (long long)cfg->jail_uid_base, KILN_UID_SLOTS, KILN_UID_STRIDE);
        free(j);
        return -EINVAL;
    }
    /* what workers that are gone left behind: their proxy directories */
    kiln_proxy_sweep(cfg->state_dir);
    char why[256];
    if (kiln_cgroups_init(&j->cgs, why, sizeof(why)) == 0) {
        int n = kiln_cgroup_sweep(&j->cgs, 0);
        if (n > 0)
            kiln_info("jail: removed %d sandbox cgroup(s) left by workers that are gone", n);
        j->cg_ok = 1;
        kiln_info("jail: cgroup %s: memory and pids limits enforced", j->cgs.v2 ? "v2" : "v1");
    } else {
        kiln_error("jail: %s: memory and pids limits CANNOT be enforced; jobs asking for them "
                   "are rejected", why);
    }
    /* the sandboxes' proxy directories live on a tmpfs of the worker's own,
     * so what a sandbox sees of its directory's origin is "/<token>" */
    if (mount("kiln-proxy", j->proxy_root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0755,size=1m") < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: cannot mount a tmpfs on %s: %s", j->proxy_root, strerror(errno));
        rmdir(j->proxy_root);
        if (j->lib_fd >= 0)
            close(j->lib_fd);
        if (j->root_fd >= 0)
            close(j->root_fd);
        close(j->agent_fd);
        free(j);
        return r;
    }
    j->pub.ops = &jail_ops;
    j->pub.loop = loop;
    j->pub.cfg = cfg;
    *out = &j->pub;
    return 0;
}

int kiln_backend_open(uv_loop_t *loop, const struct kiln_config *cfg,
                      struct kiln_backend **out, char *err, size_t errlen)
{
    if (strcmp(cfg->backend, "jail") == 0)
        return kiln_backend_jail_new(loop, cfg, out, err, errlen);
    if (strcmp(cfg->backend, "qemu") == 0)
        return kiln_backend_qemu_new(loop, cfg, out, err, errlen);
    if (strcmp(cfg->backend, "firecracker") == 0)
        return kiln_backend_firecracker_new(loop, cfg, out, err, errlen);
    if (strcmp(cfg->backend, "auto") != 0) {
        snprintf(err, errlen, "unknown backend '%s' (auto | jail | qemu | firecracker)", cfg->backend);
        return -EINVAL;
    }
    /* auto: the strongest boundary this host can run at full speed */
    char why_fc[300] = "", why_kvm[256] = "";
    if (kiln_kvm_usable(why_kvm, sizeof(why_kvm))) {
        if (kiln_backend_firecracker_new(loop, cfg, out, why_fc, sizeof(why_fc)) == 0) {
            kiln_info("backend auto: firecracker (KVM is usable and firecracker is installed)");
            return 0;
        }
        char why_q[300] = "";
        if (kiln_backend_qemu_new(loop, cfg, out, why_q, sizeof(why_q)) == 0) {
            kiln_info("backend auto: qemu with KVM (firecracker: %s)", why_fc);
            return 0;
        }
        kiln_info("backend auto: jail (firecracker: %s; qemu: %s)", why_fc, why_q);
    } else {
        kiln_info("backend auto: jail (no microVM at full speed here: %s; --backend qemu runs "
                  "VMs under TCG)", why_kvm);
    }
    return kiln_backend_jail_new(loop, cfg, out, err, errlen);
}
