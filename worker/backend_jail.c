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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "jail_cgroup.h"
#include "log.h"
#include "vmm.h"

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

struct jail {
    struct kiln_backend pub;
    int agent_fd;             /* kiln-agent, opened once: exec'd by fd */
    int root_fd;              /* the runtime image tree (O_PATH), or -1 */
    int tree_fd;              /* per spawn: a detached copy of it to attach */
    char mnt[512];            /* empty dir the jail's root is mounted on */
    char tmp_mb[24];
    char *argv[14];
    char proxy_root[512];
    unsigned spawned;
    char uid_map[64];
    struct kiln_cgroups cgs;
    int cg_ok;                /* cgroups usable: limits are enforced */
    char graveyard[16][64];   /* cgroups not yet removable (still busy) */
    int ngrave;
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
    /* root of the new user namespace = the unprivileged host uid */
    if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        _exit(126);
    /* the channel becomes fd 3 and the image fd 4: moved out of the way
     * first so neither overwrites the other */
    int cfd = fcntl(chan, F_DUPFD, 10), rfd = j->tree_fd >= 0 ? fcntl(j->tree_fd, F_DUPFD, 10) : -1;
    if (cfd < 0 || dup2(cfd, 3) < 0 || (j->tree_fd >= 0 && (rfd < 0 || dup2(rfd, 4) < 0)))
        _exit(126);
    /* Nothing of the worker's (Redis sockets, other jails) survives exec. */
    if (syscall(SYS_close_range, j->tree_fd >= 0 ? 5 : 4, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        _exit(126);
    static char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    syscall(SYS_execveat, j->agent_fd, "", argv, envp, AT_EMPTY_PATH);
    _exit(127);
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static void bury(struct jail *j, const struct kiln_cgroup *cg)
{
    if (kiln_cgroup_remove(cg) == 0 || j->ngrave == 16)
        return;
    snprintf(j->graveyard[j->ngrave++], sizeof(j->graveyard[0]), "%s", cg->name);
}

/* cgroups whose last processes were still going: try again now. */
static void dig(struct jail *j)
{
    int n = 0;
    for (int i = 0; i < j->ngrave; i++) {
        struct kiln_cgroup cg = {.cgs = &j->cgs};
        snprintf(cg.name, sizeof(cg.name), "%s", j->graveyard[i]);
        if (kiln_cgroup_remove(&cg) < 0)
            memcpy(j->graveyard[n++], j->graveyard[i], sizeof(j->graveyard[0]));
    }
    j->ngrave = n;
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

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    struct jail_sandbox *sb = h->data;
    (void)status;
    (void)events;
    if (!kiln_pidfd_reaped(sb->pidfd, &sb->pub))
        return;
    uv_poll_stop(h);
    if (sb->has_cg) {
        int64_t oom = 0;
        kiln_cgroup_stats(&sb->cg, &sb->pub.peak_kb, &oom);
        sb->pub.oom_kills = oom > 0 ? oom : 0;
        bury((struct jail *)sb->pub.backend, &sb->cg);
    }
    close(sb->pidfd);
    if (sb->pub.fd >= 0)
        close(sb->pub.fd);
    char sock[600];
    snprintf(sock, sizeof(sock), "%s/p.sock", sb->proxy_dir);
    unlink(sock);
    rmdir(sb->proxy_dir);
    if (sb->pub.on_exit != NULL)
        sb->pub.on_exit(&sb->pub);
    uv_close((uv_handle_t *)h, on_poll_closed);
}

static void jail_kill(struct kiln_sandbox *pub)
{
    struct jail_sandbox *sb = (struct jail_sandbox *)pub;
    if (!sb->killed)
        syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
    sb->killed = 1;
}

static int jail_spawn(struct kiln_backend *b, const char *profile, const struct kiln_spawn_opts *o,
                      struct kiln_sandbox **out, char *err, size_t errlen)
{
    struct jail *j = (struct jail *)b;
    int sv[2] = {-1, -1}, sync[2] = {-1, -1}, pidfd = -1, r;
    char path[64];
    (void)profile;
    (void)o; /* limits are set per job by limit(); every jail has its proxy dir */

    struct jail_sandbox *sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return -ENOMEM;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(sync, O_CLOEXEC) < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: socketpair/pipe: %s", strerror(errno));
        goto fail;
    }
    /* its own directory for an egress proxy socket, bound into it alone */
    char *argv[14];
    int a = 0;
    while (j->argv[a] != NULL) {
        argv[a] = j->argv[a];
        a++;
    }
    if (snprintf(sb->proxy_dir, sizeof(sb->proxy_dir), "%s/%u", j->proxy_root, ++j->spawned) >=
            (int)sizeof(sb->proxy_dir) ||
        (mkdir(sb->proxy_dir, 0755) < 0 && errno != EEXIST)) {
        r = -errno;
        snprintf(err, errlen, "jail: mkdir %s: %s", sb->proxy_dir, strerror(errno));
        goto fail;
    }
    argv[a++] = "--proxy-dir";
    argv[a++] = sb->proxy_dir;
    argv[a] = NULL;
    sb->pub.proxy_dir = sb->proxy_dir;
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
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: clone3: %s", strerror(errno));
        if (j->tree_fd >= 0)
            close(j->tree_fd);
        j->tree_fd = -1;
        goto fail;
    }
    if (pid == 0)
        child(j, argv, sync[0], sync[1], sv[1]);
    if (j->tree_fd >= 0)
        close(j->tree_fd);
    j->tree_fd = -1;
    close(sv[1]);
    close(sync[0]);
    sv[1] = sync[0] = -1;
    sb->pid = pid;
    sb->pidfd = pidfd;

    /* into its own cgroup, with the operator's default limits, before it
     * is released: everything it ever starts is counted there */
    if (j->cg_ok) {
        const struct kiln_config *cfg = b->cfg;
        dig(j);
        if ((r = kiln_cgroup_create(&j->cgs, &sb->cg, pid, err, errlen)) < 0 ||
            (r = kiln_cgroup_limit(&sb->cg, cfg->memory_mb << 20, cfg->pids)) < 0) {
            if (r != 0 && err[0] == '\0')
                snprintf(err, errlen, "cgroup limits: %s", strerror(-r));
            syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
            waitpid(pid, NULL, 0);
            kiln_cgroup_remove(&sb->cg);
            goto fail;
        }
        sb->has_cg = 1;
    }
    snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
    if ((r = write_text(path, j->uid_map)) == 0) {
        snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
        r = write_text(path, j->uid_map);
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
    *out = &sb->pub;
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
    free(sb);
    return r;
}

static void jail_destroy(struct kiln_backend *b)
{
    struct jail *j = (struct jail *)b;
    close(j->agent_fd);
    if (j->root_fd >= 0)
        close(j->root_fd);
    free(j);
}

static const struct kiln_backend_ops jail_ops = {
    .name = "jail",
    .spawn = jail_spawn,
    .kill = jail_kill,
    .limit = jail_limit,
    .stats = jail_stats,
    .destroy = jail_destroy,
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
    /* uid 0 inside = base on the host; the job's uid 1000 = base + 1000 */
    snprintf(j->uid_map, sizeof(j->uid_map), "0 %lld 1\n1000 %lld 1\n",
             (long long)cfg->jail_uid_base, (long long)cfg->jail_uid_base + 1000);
    char why[256];
    if (kiln_cgroups_init(&j->cgs, why, sizeof(why)) == 0) {
        j->cg_ok = 1;
        kiln_info("jail: cgroup %s: memory and pids limits enforced", j->cgs.v2 ? "v2" : "v1");
    } else {
        kiln_error("jail: %s: memory and pids limits CANNOT be enforced; jobs asking for them "
                   "are rejected", why);
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
