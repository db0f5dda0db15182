/*
 * The jail backend: sandboxes in Linux namespaces, each a jail cloned from
 * the worker (jail_clone.c) whose kiln-agent builds the jail from inside
 * (agent/jail.c); for a profile whose interpreter can fork (python), a
 * template jail forks them instead (zygote.c). This file opens the
 * backend, decides how each sandbox is made, and destroys it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/jail.h"
#include "sandbox/options.h"
#include "base/log.h"
#include "wire/proto.h"
#include "base/sysutil.h"
#include "sandbox/zygote.h"

static void jail_stats(struct kiln_sandbox *pub, int64_t *peak_kb, int64_t *oom_kills)
{
    struct kiln_jail_sandbox *sb = (struct kiln_jail_sandbox *)pub;
    *peak_kb = -1;
    *oom_kills = 0;
    if (sb->has_cg)
        kiln_cgroup_stats(&sb->cg, peak_kb, oom_kills);
}

static int64_t jail_cpu_ms(struct kiln_sandbox *pub)
{
    struct kiln_jail_sandbox *sb = (struct kiln_jail_sandbox *)pub;
    return sb->has_cg ? kiln_cgroup_cpu_ms(&sb->cg) : -1;
}

/* A socket made in a sandbox's network namespace, on a thread of its own:
 * setns() moves only the calling thread, and the loop's thread must never
 * be anywhere but the worker's own network, not even for a moment. */
struct netns_socket {
    int ns;                   /* the sandbox's PID 1's pidfd */
    int fd, err;
};

static void *socket_in_netns(void *arg)
{
    struct netns_socket *q = arg;
    if (setns(q->ns, CLONE_NEWNET) < 0) {
        q->err = -errno;
        return NULL;
    }
    q->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    q->err = q->fd < 0 ? -errno : 0;
    return NULL; /* the thread ends, and with it its place in the sandbox's network */
}

static int jail_port_open(struct kiln_sandbox *pub, int port, int *connected)
{
    struct kiln_jail_sandbox *sb = (struct kiln_jail_sandbox *)pub;
    (void)port; /* (the caller connects it) */
    *connected = 0;
    struct netns_socket q = {.ns = sb->pidfd, .fd = -1, .err = -ESRCH};
    /* only through the pidfd: a pid could be another process's by now */
    if (sb->killed || q.ns < 0)
        return -ESRCH;
    pthread_t t;
    int r = pthread_create(&t, NULL, socket_in_netns, &q);
    if (r == 0)
        pthread_join(t, NULL);
    return r != 0 ? -r : q.err < 0 ? q.err : q.fd;
}

static int jail_limit(struct kiln_sandbox *pub, const struct kiln_sandbox_limits *l)
{
    struct kiln_jail_sandbox *sb = (struct kiln_jail_sandbox *)pub;
    if (!sb->has_cg)
        return -ENOTSUP;
    return kiln_cgroup_limit(&sb->cg, l->memory_bytes, l->pids);
}

static int jail_spawn(struct kiln_backend *b, const char *profile, const struct kiln_spawn_opts *o,
                      struct kiln_sandbox **out, char *err, size_t errlen)
{
    struct kiln_jail *j = (struct kiln_jail *)b;
    struct kiln_jail_sandbox *sb = NULL;
    /* limits are set per job by limit(); a forked sandbox has no way to
     * the egress proxy, so a job with net.allow gets a jail of its own, as
     * does one that must start its interpreter as a cold run does */
    if (profile != NULL && (o == NULL || (!o->net && !o->fresh && !o->cold)) &&
        kiln__zygote_spawn(j, profile, &sb) == 0) {
        *out = &sb->pub;
        return 0;
    }
    int r = kiln__jail_clone(j, -1, o != NULL && o->fresh, &sb, err, errlen);
    if (r == 0)
        *out = &sb->pub;
    return r;
}

static void jail_gauges(struct kiln_backend *b, FILE *out)
{
    kiln__zygote_gauges((struct kiln_jail *)b, out);
}

static void jail_destroy(struct kiln_backend *b)
{
    struct kiln_jail *j = (struct kiln_jail *)b;
    kiln__zygote_free_all(j);
    kiln__jail_spares_close(j);
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

/* <state-dir>/proxy-<pid> and image-<pid>[-<n>] of workers no longer
 * running: their tmpfs or image unmounted (or, from older workers, the
 * directories inside removed), then the directory; and the same in the
 * state directories of other images' backends (i<n>: core/image.c). */
static void proxy_sweep(const char *state_dir, int depth)
{
    DIR *d = opendir(state_dir);
    struct dirent *e;
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[700], *end = NULL;
        int ours = strncmp(e->d_name, "proxy-", 6) == 0 || strncmp(e->d_name, "image-", 6) == 0;
        long pid = ours ? strtol(e->d_name + 6, &end, 10) : 0;
        if (depth == 0 && e->d_name[0] == 'i' && e->d_name[1] != '\0' &&
            strspn(e->d_name + 1, "0123456789") == strlen(e->d_name + 1)) {
            snprintf(path, sizeof(path), "%s/%s", state_dir, e->d_name);
            proxy_sweep(path, 1);
            continue;
        }
        if (pid > 0 && e->d_name[0] == 'i' && *end == '-' && end[1] != '\0' &&
            strspn(end + 1, "0123456789") == strlen(end + 1))
            end += strlen(end); /* image-<pid>-<n> */
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
    .kill = kiln__jail_kill,
    .limit = jail_limit,
    .stats = jail_stats,
    .cpu_ms = jail_cpu_ms,
    .port_open = jail_port_open,
    .destroy = jail_destroy,
    .zygote = kiln__zygote_add,
    .gauges = jail_gauges,
};


/* The agent attaches the image at `mnt` as the jail's unprivileged root:
 * every directory on the way must let others through. */
static int check_walk(const char *mnt, char *err, size_t errlen)
{
    char walk[512];
    snprintf(walk, sizeof(walk), "%s", mnt);
    for (char *p = walk + strlen(walk); p > walk; p = strrchr(walk, '/')) {
        struct stat st;
        *p = '\0';
        if (walk[0] != '\0' && stat(walk, &st) == 0 && !(st.st_mode & S_IXOTH)) {
            snprintf(err, errlen, "jail: %s (on the way to --state-dir's jail-root) is mode %03o: "
                     "the jail's uid cannot pass it; make it o+x or choose another --state-dir",
                     walk, st.st_mode & 0777);
            return -EACCES;
        }
    }
    return 0;
}

/* kiln-agent's argv, pointing into `j`: its jail's mount point and
 * /tmp size, and the image's descriptor when there is one. */
static void agent_argv(struct kiln_jail *j)
{
    char **a = j->argv;
    snprintf(j->tmp_mb, sizeof(j->tmp_mb), "%lld", (long long)j->pub.cfg->tmp_mb);
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
}

/* For HTTPS with secrets: the worker's CA, and the image's CA bundle with
 * it added, on the proxy tmpfs; each sandbox's proxy directory links them
 * (jail_clone.c) and its agent binds the bundle over the image's. */
static int write_ca(struct kiln_jail *j, const struct kiln_sandbox_opts *cfg, char *err, size_t errlen)
{
    char path[700];
    int r;
    snprintf(path, sizeof(path), "%s/" KILN_SYSTEM_CA_BUNDLE, cfg->rootfs ? cfg->rootfs : "");
    FILE *in = fopen(path, "re");
    size_t n = 0, cap = strlen(cfg->egress_ca_pem) + 1;
    char *bundle = NULL;
    if (in != NULL) {
        fseek(in, 0, SEEK_END);
        long size = ftell(in);
        rewind(in);
        if (size > 0 && size < (4 << 20) && (bundle = malloc((size_t)size + cap + 1)) != NULL)
            n = fread(bundle, 1, (size_t)size, in);
        fclose(in);
    } else {
        kiln_warn("jail: no CA bundle at %s: sandboxes trust only the egress CA", path);
    }
    if (bundle == NULL && (bundle = malloc(cap + 1)) == NULL) {
        snprintf(err, errlen, "jail: out of memory");
        return -ENOMEM;
    }
    if (n > 0 && bundle[n - 1] != '\n')
        bundle[n++] = '\n';
    memcpy(bundle + n, cfg->egress_ca_pem, cap);
    if ((r = kiln_create_file_at(j->proxy_root, KILN_CA_FILE, cfg->egress_ca_pem)) < 0 ||
        (r = kiln_create_file_at(j->proxy_root, KILN_CA_BUNDLE_FILE, bundle)) < 0)
        snprintf(err, errlen, "jail: cannot write the egress CA in %s: %s", j->proxy_root, strerror(-r));
    free(bundle);
    return r;
}

int kiln_backend_jail_new(uv_loop_t *loop, const struct kiln_sandbox_opts *cfg,
                          struct kiln_backend **out, char *err, size_t errlen)
{
    struct kiln_jail *j = NULL;
    const char *dir = NULL;
    int r;
    if (geteuid() != 0) {
        snprintf(err, errlen, "the jail backend needs root to map its user namespace's ids");
        return -EPERM;
    }
    if (cfg->jail_uid_base < 1 ||
        cfg->jail_uid_base + (long long)(KILN_UID_SLOTS + 1) * KILN_UID_STRIDE > 0xfffffffell) {
        snprintf(err, errlen, "--jail-uid-base %lld: the sandboxes' %d uid ranges of %d must fit "
                 "below 2^32", (long long)cfg->jail_uid_base, KILN_UID_SLOTS, KILN_UID_STRIDE);
        return -EINVAL;
    }
    if ((j = calloc(1, sizeof(*j))) == NULL) {
        snprintf(err, errlen, "jail: out of memory");
        return -ENOMEM;
    }
    j->agent_fd = j->root_fd = j->lib_fd = j->spawn_lib_fd = j->tree_fd = -1;
    for (int i = 0; i < KILN_JOBCG_FDS; i++)
        j->spawn_job[i] = -1;
    j->pub.ops = &jail_ops;
    j->pub.loop = loop;
    j->pub.cfg = cfg;
    if (kiln_path_join(j->mnt, sizeof(j->mnt), cfg->state_dir, "jail-root") < 0 ||
        snprintf(j->proxy_root, sizeof(j->proxy_root), "%s/proxy-%d", cfg->state_dir, (int)getpid()) >=
            (int)sizeof(j->proxy_root)) {
        snprintf(err, errlen, "--state-dir is too long");
        r = -ENAMETOOLONG;
        goto fail;
    }
    if ((r = kiln_mkdirs(dir = j->mnt)) < 0 || (r = kiln_mkdirs(dir = j->proxy_root)) < 0) {
        snprintf(err, errlen, "jail: cannot create %s: %s", dir, strerror(-r));
        goto fail;
    }
    if ((r = check_walk(j->mnt, err, errlen)) < 0)
        goto fail;
    /* Opened once here: the child execs it by fd, so the agent may live
     * where the unprivileged jail uid could not walk to (under /root). */
    if ((j->agent_fd = open(cfg->agent, O_RDONLY | O_CLOEXEC)) < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: cannot open the agent %s: %s", cfg->agent, strerror(-r));
        goto fail;
    }
    if (cfg->rootfs != NULL &&
        (j->root_fd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: cannot open the rootfs %s: %s", cfg->rootfs, strerror(-r));
        goto fail;
    }
    /* the zygote library, for templates (optional: without it, every
     * sandbox starts its interpreter afresh) */
    if (!cfg->no_zygote && cfg->zygote_lib != NULL &&
        (j->lib_fd = open(cfg->zygote_lib, O_RDONLY | O_CLOEXEC)) < 0)
        kiln_warn("jail: no zygote library (%s: %s): interpreters start afresh in every sandbox",
                  cfg->zygote_lib, strerror(errno));
    /* A template's forked sandboxes are user namespaces owned by uids of
     * the template's, whose own owner is the template's host uid: what they
     * hold of the rlimit-bounded budgets adds up there, against the limit
     * its creator (this process) had. Room for every fork's share. */
    struct rlimit sp = {(rlim_t)KILN_ZYGOTE_FORKS * KILN_JOB_SIGPENDING, (rlim_t)KILN_ZYGOTE_FORKS * KILN_JOB_SIGPENDING};
    struct rlimit mq = {(rlim_t)KILN_ZYGOTE_FORKS * KILN_JOB_MSGQUEUE, (rlim_t)KILN_ZYGOTE_FORKS * KILN_JOB_MSGQUEUE};
    if (j->lib_fd >= 0 && (setrlimit(RLIMIT_SIGPENDING, &sp) < 0 || setrlimit(RLIMIT_MSGQUEUE, &mq) < 0))
        kiln_warn("jail: cannot raise RLIMIT_SIGPENDING/RLIMIT_MSGQUEUE (%s; CAP_SYS_RESOURCE): python "
                  "sandboxes forked from one template share its queued signals and message queue bytes",
                  strerror(errno));
    agent_argv(j);
    /* what workers that are gone left behind: their proxy directories */
    proxy_sweep(cfg->state_dir, 0);
    char why[256];
    if (kiln_cgroups_init(&j->cgs, why, sizeof(why)) == 0) {
        int n = kiln_cgroup_sweep(&j->cgs, 0);
        if (n > 0)
            kiln_info("jail: removed %d sandbox cgroup(s) left by workers that are gone", n);
        j->cg_ok = 1;
        kiln_info("jail: cgroup %s: memory and pids limits enforced", j->cgs.v2 ? "v2" : "v1");
        if (!j->cgs.v2 && j->cgs.root_cpu[0] == '\0')
            kiln_warn("jail: cgroup v1 without cpuacct: a job's cpu_ms is held by what its agent "
                      "sees, which children reaped without a wait escape");
        if ((j->spares = calloc(1, sizeof(*j->spares))) != NULL) {
            j->spares->refs = 1;
            j->spares->cgs = j->cgs;
        }
        if (j->cgs.root_frz[0] == '\0') {
            j->pub.no_sessions = "sessions need cgroup v2's freezer, and this host mounts no cgroup v2 "
                                 "hierarchy (neither v2 nor systemd's hybrid mode)";
            kiln_warn("jail: %s: session jobs are rejected", j->pub.no_sessions);
        }
    } else {
        kiln_error("jail: %s: memory and pids limits CANNOT be enforced; jobs asking for them "
                   "are rejected", why);
        j->pub.no_sessions = "sessions need cgroups, and this worker has none";
    }
    /* the sandboxes' proxy directories live on a tmpfs of the worker's own,
     * so what a sandbox sees of its directory's origin is "/<token>" */
    if (mount("kiln-proxy", j->proxy_root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0755,size=4m") < 0) {
        r = -errno;
        snprintf(err, errlen, "jail: cannot mount a tmpfs on %s: %s", j->proxy_root, strerror(-r));
        goto fail;
    }
    if (cfg->egress_ca_pem != NULL && (r = write_ca(j, cfg, err, errlen)) < 0) {
        umount2(j->proxy_root, MNT_DETACH);
        goto fail;
    }
    *out = &j->pub;
    return 0;
fail:
    if (j->proxy_root[0] != '\0')
        rmdir(j->proxy_root); /* empty: nothing is mounted on it yet */
    if (j->lib_fd >= 0)
        close(j->lib_fd);
    if (j->root_fd >= 0)
        close(j->root_fd);
    if (j->agent_fd >= 0)
        close(j->agent_fd);
    free(j);
    return r;
}
