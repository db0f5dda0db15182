#include "sandbox/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sysutil.h"

/* The control files a cgroup keeps open (struct kiln_cgroup's fd): in
 * which hierarchy (0 memory, 1 pids, 2 cpuacct; all one under v2), their
 * v1 and v2 names (NULL: none there), and how they are opened. */
enum {
    F_MEM_LIMIT, F_MEMSW_LIMIT, F_MEM_PEAK, F_MEM_OOM, F_MEM_USAGE, F_MEM_FAILCNT, F_PIDS_MAX,
    F_PIDS_CURRENT, F_CPU, F_COUNT
};
_Static_assert(F_COUNT == KILN_CGROUP_KEPT, "struct kiln_cgroup keeps every file");
static const struct {
    int which;
    const char *v1, *v2;
    int flags;
} kept[F_COUNT] = {
    [F_MEM_LIMIT] = {0, "memory.limit_in_bytes", "memory.max", O_WRONLY},
    [F_MEMSW_LIMIT] = {0, "memory.memsw.limit_in_bytes", NULL, O_WRONLY},
    [F_MEM_PEAK] = {0, "memory.max_usage_in_bytes", "memory.peak", O_RDWR},
    [F_MEM_OOM] = {0, "memory.oom_control", "memory.events", O_RDONLY},
    [F_MEM_USAGE] = {0, "memory.usage_in_bytes", NULL, O_RDONLY},
    [F_MEM_FAILCNT] = {0, "memory.failcnt", NULL, O_WRONLY},
    [F_PIDS_MAX] = {1, "pids.max", "pids.max", O_WRONLY},
    [F_PIDS_CURRENT] = {1, "pids.current", "pids.current", O_RDONLY},
    [F_CPU] = {2, "cpuacct.usage", "cpu.stat", O_RDONLY},
};

static void dir_of(const struct kiln_cgroup *cg, int which, char *out, size_t len);

/* Its kept file `f`, opened on first use; -errno when it cannot be */
static int kept_fd(struct kiln_cgroup *cg, int f)
{
    if (cg->fd[f] >= 0)
        return cg->fd[f];
    const char *name = cg->cgs->v2 ? kept[f].v2 : kept[f].v1;
    if (name == NULL)
        return -ENOENT;
    char path[600];
    dir_of(cg, kept[f].which, path, sizeof(path) - 40);
    strcat(path, "/");
    strcat(path, name);
    /* v2's memory.peak takes writes only from Linux 6.12 */
    int flags = f == F_MEM_PEAK && cg->cgs->v2 ? O_RDONLY : kept[f].flags;
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return cg->fd[f] = fd;
}

/* A kept file's number (the value of line `key`, when given), read from
 * its start again; -1 when it cannot be read. */
static int64_t kept_num(struct kiln_cgroup *cg, int f, const char *key)
{
    char buf[4096];
    int fd = kept_fd(cg, f);
    if (fd < 0)
        return -1;
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (key == NULL)
        return strtoll(buf, NULL, 10);
    size_t k = strlen(key);
    for (char *line = buf; line != NULL && *line != '\0'; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, key, k) == 0 && line[k] == ' ')
            return strtoll(line + k + 1, NULL, 10);
    return -1;
}

/* Write `text` to a kept file: 0 or -errno */
static int kept_write(struct kiln_cgroup *cg, int f, const char *text)
{
    int fd = kept_fd(cg, f);
    if (fd < 0)
        return fd;
    size_t len = strlen(text);
    ssize_t n = pwrite(fd, text, len, 0);
    return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

void kiln_cgroup_forget(struct kiln_cgroup *cg)
{
    for (int f = 0; f < F_COUNT; f++)
        cg->fd[f] = -1;
}

void kiln_cgroup_close(struct kiln_cgroup *cg)
{
    for (int f = 0; f < F_COUNT; f++)
        if (cg->fd[f] >= 0)
            close(cg->fd[f]);
    kiln_cgroup_forget(cg);
}

static int has_controllers(const char *mount)
{
    char path[300], buf[512];
    snprintf(path, sizeof(path), "%s/cgroup.controllers", mount);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return strstr(buf, "memory") != NULL && strstr(buf, "pids") != NULL;
}

int kiln_cgroups_init(struct kiln_cgroups *cgs, char *err, size_t errlen)
{
    int r;
    memset(cgs, 0, sizeof(*cgs));
    if (has_controllers("/sys/fs/cgroup")) {
        cgs->v2 = 1;
        snprintf(cgs->root_v2, sizeof(cgs->root_v2), "/sys/fs/cgroup/kiln");
        if (mkdir(cgs->root_v2, 0755) < 0 && errno != EEXIST)
            goto fail;
        snprintf(cgs->root_frz, sizeof(cgs->root_frz), "%s", cgs->root_v2);
        /* hand memory and pids down to kiln/, and from it to each sandbox */
        if ((r = kiln_write_file_at("/sys/fs/cgroup", "cgroup.subtree_control", "+memory +pids")) < 0 ||
            (r = kiln_write_file_at(cgs->root_v2, "cgroup.subtree_control", "+memory +pids")) < 0) {
            snprintf(err, errlen, "cgroup v2: enabling memory and pids: %s", strerror(-r));
            return r;
        }
        return 0;
    }
    snprintf(cgs->root_mem, sizeof(cgs->root_mem), "/sys/fs/cgroup/memory/kiln");
    snprintf(cgs->root_pids, sizeof(cgs->root_pids), "/sys/fs/cgroup/pids/kiln");
    if ((mkdir(cgs->root_mem, 0755) < 0 && errno != EEXIST) ||
        (mkdir(cgs->root_pids, 0755) < 0 && errno != EEXIST))
        goto fail;
    /* CPU accounting where cpuacct is mounted: without it, a job's CPU
     * time is what its agent can see (processes reaped unwaited for escape it) */
    snprintf(cgs->root_cpu, sizeof(cgs->root_cpu), "/sys/fs/cgroup/cpuacct/kiln");
    if (access("/sys/fs/cgroup/cpuacct/cpuacct.usage", F_OK) < 0 ||
        (mkdir(cgs->root_cpu, 0755) < 0 && errno != EEXIST))
        cgs->root_cpu[0] = '\0';
    /* a hybrid host's v2 hierarchy, without controllers, still freezes
     * and kills: sessions' job cgroups go there */
    snprintf(cgs->root_frz, sizeof(cgs->root_frz), "/sys/fs/cgroup/unified/kiln");
    if (access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) < 0 ||
        (mkdir(cgs->root_frz, 0755) < 0 && errno != EEXIST))
        cgs->root_frz[0] = '\0';
    return 0;
fail:
    r = -errno; /* before snprintf() may change it */
    snprintf(err, errlen, "cgroup %s: %s", cgs->v2 ? "v2" : "v1", strerror(-r));
    return r;
}

/* How many hierarchies a sandbox's cgroup spans: v2's one; v1's memory,
 * pids and (where mounted) cpuacct, `which` 0, 1 and 2. */
static int hierarchies(const struct kiln_cgroups *c)
{
    return c->v2 ? 1 : c->root_cpu[0] ? 3 : 2;
}

static void dir_of(const struct kiln_cgroup *cg, int which, char *out, size_t len)
{
    const struct kiln_cgroups *c = cg->cgs;
    snprintf(out, len, "%s/%s", c->v2 ? c->root_v2 : which == 2 ? c->root_cpu : which ? c->root_pids
                                                                                  : c->root_mem, cg->name);
}

/* "sb-<pid>-<token>-": the start of this worker's cgroups' names. The
 * random token tells apart workers with the same pid in different pid
 * namespaces (two containers' PID 1) sharing one cgroup tree. */
static const char *own_prefix(void)
{
    static char prefix[48];
    if (prefix[0] == '\0') {
        unsigned tok = 0;
        if (getrandom(&tok, sizeof(tok), 0) != (ssize_t)sizeof(tok))
            tok = (unsigned)time(NULL) ^ (unsigned)getpid() << 16;
        snprintf(prefix, sizeof(prefix), "sb-%d-%08x-", (int)getpid(), tok);
    }
    return prefix;
}

int kiln_cgroup_create(const struct kiln_cgroups *cgs, struct kiln_cgroup *cg, char *err,
                       size_t errlen)
{
    static unsigned made;
    char dir[512];
    cg->cgs = cgs;
    snprintf(cg->name, sizeof(cg->name), "%s%u", own_prefix(), ++made);
    cg->peak_base = cg->oom_base = 0;
    cg->job = 0;
    kiln_cgroup_forget(cg);
    for (int which = 0; which < hierarchies(cgs); which++) {
        dir_of(cg, which, dir, sizeof(dir));
        if (mkdir(dir, 0755) < 0) { /* EEXIST too: never another's */
            int r = -errno; /* before snprintf() may change it */
            snprintf(err, errlen, "cgroup mkdir %s: %s", dir, strerror(-r));
            return r;
        }
    }
    if (cgs->v2)
        kiln_write_file_at(dir, "memory.swap.max", "0"); /* a limit swap cannot dodge */
    return 0;
}

int kiln_cgroup_open_procs(const struct kiln_cgroup *cg, int fds[KILN_CGROUP_FDS])
{
    char path[600];
    int n = 0;
    for (int which = 0; which < hierarchies(cg->cgs); which++) {
        dir_of(cg, which, path, sizeof(path) - 16);
        strcat(path, "/cgroup.procs");
        if ((fds[n] = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
            int r = -errno;
            while (n > 0)
                close(fds[--n]);
            return r;
        }
        n++;
    }
    return n;
}

int kiln_cgroup_limit(struct kiln_cgroup *cg, int64_t memory_bytes, int64_t pids)
{
    char num[32];
    int r = 0;
    if (memory_bytes > 0) {
        snprintf(num, sizeof(num), "%lld", (long long)memory_bytes);
        r = kept_write(cg, F_MEM_LIMIT, num);
        /* v1 keeps memory <= memory+swap: a cgroup used before with a lower
         * limit raises the second first (where swap is accounted) */
        if (r == -EINVAL && !cg->cgs->v2 && kept_write(cg, F_MEMSW_LIMIT, num) == 0)
            r = kept_write(cg, F_MEM_LIMIT, num);
        if (r == 0 && !cg->cgs->v2)
            kept_write(cg, F_MEMSW_LIMIT, num); /* when swap is accounted */
    }
    if (r == 0 && pids > 0) {
        snprintf(num, sizeof(num), "%lld", (long long)pids);
        r = kept_write(cg, F_PIDS_MAX, num);
    }
    return r;
}

void kiln_cgroup_stats(struct kiln_cgroup *cg, int64_t *peak_kb, int64_t *oom_kills)
{
    int64_t peak = kept_num(cg, F_MEM_PEAK, NULL);
    int64_t oom = kept_num(cg, F_MEM_OOM, "oom_kill");
    *peak_kb = peak > cg->peak_base ? (peak - cg->peak_base) / 1024 : peak > 0 ? 0 : -1;
    *oom_kills = oom > cg->oom_base ? oom - cg->oom_base : oom < 0 ? -1 : 0;
}

int64_t kiln_cgroup_cpu_ms(struct kiln_cgroup *cg)
{
    if (cg->cgs->v2) { /* cpu.stat's usage_usec: in every cgroup, no controller needed */
        int64_t us = kept_num(cg, F_CPU, "usage_usec");
        return us < 0 ? -1 : us / 1000;
    }
    if (cg->cgs->root_cpu[0] == '\0')
        return -1;
    int64_t ns = kept_num(cg, F_CPU, NULL);
    return ns < 0 ? -1 : ns / 1000000;
}

/* 1 when no process is in the cgroup of hierarchy `which`. Its
 * cgroup.procs is opened afresh: under v1 an open file goes on reading
 * the list of pids the kernel made at its first read (kept until a second
 * after the last), so a kept one would show gone processes. */
static int unpopulated(const struct kiln_cgroup *cg, int which)
{
    char path[600], c;
    dir_of(cg, which, path, sizeof(path) - 16);
    strcat(path, "/cgroup.procs");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, &c, 1);
    close(fd);
    return n == 0;
}

/* The most an earlier sandbox may still have charged (pages the kernel
 * cannot reclaim at once) for its cgroup to be used again. */
#define RESET_MAX_CHARGE (1 << 20)

int kiln_cgroup_reset(struct kiln_cgroup *cg)
{
    if (cg->cgs->v2 || cg->job) /* (a session's: one of a kind, not kept) */
        return -ENOTSUP;
    if (!unpopulated(cg, 0) || !unpopulated(cg, 1) || kept_num(cg, F_PIDS_CURRENT, NULL) != 0)
        return -EAGAIN; /* its last processes are still being reaped */
    /* what is still charged to it (page cache of files it read, which
     * the kernel reclaims first under pressure) is small, or it is not
     * used again: forcing it out (memory.force_empty) would evict cache
     * every sandbox shares */
    int64_t usage = kept_num(cg, F_MEM_USAGE, NULL);
    if (usage < 0 || usage > RESET_MAX_CHARGE)
        return -EBUSY;
    /* the peak starts again from what is left (at most RESET_MAX_CHARGE),
     * which is subtracted from it, as the OOM kills so far are */
    if (kept_write(cg, F_MEM_PEAK, "0") < 0)
        return -EIO;
    kept_write(cg, F_MEM_FAILCNT, "0");
    /* cpuacct keeps counting: a job's CPU time is what it adds from its
     * start (kiln_cgroup_cpu_ms() read then and after), so nothing of an
     * earlier sandbox's is its own, and a reuse costs no more writes */
    cg->peak_base = kept_num(cg, F_MEM_PEAK, NULL);
    cg->oom_base = kept_num(cg, F_MEM_OOM, "oom_kill");
    if (cg->peak_base < 0 || cg->oom_base < 0)
        return -EIO;
    return 0;
}

/* The v2 directory that holds a sandbox's job cgroup: its own cgroup
 * (v2), or one made for it in the hybrid host's unified hierarchy. */
static void frz_dir(const struct kiln_cgroup *cg, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", cg->cgs->root_frz, cg->name);
}

int kiln_cgroup_add_job(struct kiln_cgroup *cg, int *join, int fds[KILN_JOBCG_FDS])
{
    static const char *const files[KILN_JOBCG_FDS] = {"cgroup.procs", "cgroup.freeze",
                                                      "cgroup.events", "cgroup.kill"};
    char dir[512], path[600];
    int r;
    *join = -1;
    for (int i = 0; i < KILN_JOBCG_FDS; i++)
        fds[i] = -1;
    if (cg->cgs->root_frz[0] == '\0')
        return -ENOTSUP;
    frz_dir(cg, dir, sizeof(dir));
    if (!cg->cgs->v2) {
        if (mkdir(dir, 0755) < 0)
            return -errno;
        cg->job = 1; /* from here kiln_cgroup_remove() removes what is made */
        snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
        if ((*join = open(path, O_WRONLY | O_CLOEXEC)) < 0)
            goto fail;
    }
    snprintf(path, sizeof(path), "%s/job", dir);
    if (mkdir(path, 0755) < 0)
        goto fail;
    cg->job = 1;
    for (int i = 0; i < KILN_JOBCG_FDS; i++) {
        snprintf(path, sizeof(path), "%s/job/%s", dir, files[i]);
        fds[i] = open(path, (i == KILN_JOBCG_EVENTS ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
        if (fds[i] < 0 && !(i == KILN_JOBCG_KILL && errno == ENOENT))
            goto fail;
    }
    return 0;
fail:
    r = -errno;
    for (int i = 0; i < KILN_JOBCG_FDS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (*join >= 0)
        close(*join);
    *join = -1;
    for (int i = 0; i < KILN_JOBCG_FDS; i++)
        fds[i] = -1;
    return r;
}

int kiln_cgroup_remove(struct kiln_cgroup *cg)
{
    char dir[512];
    int r = 0;
    kiln_cgroup_close(cg);
    if (cg->job) { /* the job cgroup first: its parent is not empty before */
        char job[600];
        frz_dir(cg, dir, sizeof(dir));
        snprintf(job, sizeof(job), "%s/job", dir);
        if (rmdir(job) < 0 && errno != ENOENT)
            r = -errno;
        if (!cg->cgs->v2 && rmdir(dir) < 0 && errno != ENOENT)
            r = -errno;
        if (r < 0)
            return r;
    }
    for (int which = 0; which < hierarchies(cg->cgs); which++) {
        dir_of(cg, which, dir, sizeof(dir));
        if (rmdir(dir) < 0 && errno != ENOENT)
            r = -errno;
    }
    return r;
}

/* Kill every process in the cgroup `dir` (v2: cgroup.kill where the
 * kernel has it; otherwise each pid its cgroup.procs lists). */
static void kill_members(const char *dir)
{
    if (kiln_write_file_at(dir, "cgroup.kill", "1") == 0)
        return;
    char path[700], buf[4096];
    snprintf(path, sizeof(path), "%.600s/cgroup.procs", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    for (char *p = buf, *end; *p; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 0)
            kill((pid_t)pid, SIGKILL);
    }
}

/* One hierarchy's parent: see kiln_cgroup_sweep. */
static int sweep_dir(const char *root, int ours)
{
    DIR *d = opendir(root);
    struct dirent *e;
    int removed = 0;
    if (d == NULL)
        return 0;
    time_t now = time(NULL);
    while ((e = readdir(d)) != NULL) {
        char dir[600], *end;
        long pid = strncmp(e->d_name, "sb-", 3) == 0 ? strtol(e->d_name + 3, &end, 10) : 0;
        struct stat st;
        if (pid <= 0 || *end != '-')
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", root, e->d_name);
        if (ours ? strncmp(e->d_name, own_prefix(), strlen(own_prefix())) != 0
                      : (kiln_pid_alive((pid_t)pid) || stat(dir, &st) < 0 || now - st.st_mtime < 5))
            continue;
        char job[700];
        snprintf(job, sizeof(job), "%s/job", dir);
        if (ours) {
            /* ours: its processes die now, and it goes once they are reaped */
            kill_members(job);
            kill_members(dir);
            for (int i = 0; i < 100 && rmdir(job) < 0 && errno == EBUSY; i++) {
                struct timespec ts = {0, 20 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            for (int i = 0; i < 100 && rmdir(dir) < 0 && errno == EBUSY; i++) {
                struct timespec ts = {0, 20 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            removed += access(dir, F_OK) < 0;
        } else {
            rmdir(job); /* a dead worker's, and only if empty */
            removed += rmdir(dir) == 0;
        }
    }
    closedir(d);
    return removed;
}

int kiln_cgroup_sweep(const struct kiln_cgroups *cgs, int ours)
{
    if (cgs->v2)
        return sweep_dir(cgs->root_v2, ours);
    return sweep_dir(cgs->root_mem, ours) + sweep_dir(cgs->root_pids, ours) +
           (cgs->root_cpu[0] ? sweep_dir(cgs->root_cpu, ours) : 0) +
           (cgs->root_frz[0] ? sweep_dir(cgs->root_frz, ours) : 0);
}
