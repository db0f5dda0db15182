/*
 * The job's process, between fork and execve: the last steps of
 * confinement, in order. Everything here runs in a fresh child of the
 * agent; on any failure the step and its error go to `status_fd` and the
 * child exits 127, which the agent reports.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"
#include "wire/proto.h"

extern char **environ;

int kiln_exec_cgroup_fd = -1;

static void join_cgroup(void)
{
    if (kiln_exec_cgroup_fd >= 0 && write(kiln_exec_cgroup_fd, "0", 1) != 1)
        _exit(127);
}

__attribute__((noreturn))
static void die(const char *step, const char *arg, int err)
{
    dprintf(3, "%s%s%s: %s", step, arg ? " " : "", arg ? arg : "", strerror(err));
    _exit(127);
}

static void wire_stdio(int in_fd, int out_fd, int err_fd, int status_fd)
{
    /* status first, to fd 3, out of the way of 0-2 */
    if (dup2(status_fd, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
        _exit(127);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        die("dup2", NULL, errno);
    /* nothing else the agent holds reaches the job */
    if (syscall(SYS_close_range, 4, ~0U, 0) < 0)
        die("close_range", NULL, errno);
}

/* A step that said why it failed (r < 0): that goes to the status fd,
 * marked as the job's fault when it was (KILN_EXEC_JOB_FAULT). */
static void or_die(int r, const char *why)
{
    if (r < 0) {
        dprintf(3, "%s%s", r == KILN_EXEC_JOB_FAULT ? KILN_EXEC_JOB_MARK : "", why);
        _exit(127);
    }
}

static void drop_privileges(void)
{
    char why[256];
    or_die(kiln_drop_privileges(why, sizeof(why)), why);
}

/* Open `path` below `dirfd` only: no "..", no symlinks, no magic links. */
static int open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (unsigned long long)flags | O_CLOEXEC,
        .mode = mode,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* Write the spec's files under its cwd. Returns 0, or -1 with the failed
 * step in `why`. */
static int write_files(const struct kiln_exec_spec *spec, char *why, size_t whylen)
{
    int root = open(spec->cwd, O_DIRECTORY | O_PATH | O_CLOEXEC), r = 0;
#define FAIL(step, arg)                                                                \
    do {                                                                             \
        snprintf(why, whylen, "%s %s: %s", step, arg, strerror(errno));             \
        r = KILN_EXEC_JOB_FAULT; /* what the job's files asked for */                \
        goto out;                                                                    \
    } while (0)
    if (root < 0) {
        snprintf(why, whylen, "open %s: %s", spec->cwd, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < spec->nfiles; i++) {
        const struct kiln_exec_file *f = &spec->files[i];
        char *p = f->path;
        /* parents first: a/b/c.txt makes a and a/b */
        for (char *s = strchr(p, '/'); s != NULL; s = strchr(s + 1, '/')) {
            *s = '\0';
            int d = open_beneath(root, p, O_DIRECTORY | O_PATH, 0);
            int made = d < 0 && errno == ENOENT ? mkdirat(root, p, 0755) : 0;
            if (d >= 0)
                close(d);
            if (made < 0)
                FAIL("mkdir", p);
            *s = '/';
        }
        int fd = open_beneath(root, p, O_WRONLY | O_CREAT | O_EXCL, f->mode ? f->mode : 0644);
        if (fd < 0)
            FAIL("create", p);
        const char *b = f->data;
        for (size_t left = f->len; left > 0;) {
            ssize_t n = write(fd, b, left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                close(fd);
                FAIL("write", p);
            }
            b += n;
            left -= (size_t)n;
        }
        close(fd);
    }
#undef FAIL
out:
    close(root);
    return r;
}

int kiln_exec_write_files(const struct kiln_exec_spec *spec, char *why, size_t whylen)
{
    if (getuid() != 0) /* already unprivileged (agent started as a plain user) */
        return write_files(spec, why, whylen);
    /* as the job's uid: its fsuid makes the kernel check and own every
     * file as that uid's, and drops the file capabilities meanwhile */
    setfsgid(KILN_JOB_GID);
    setfsuid(KILN_JOB_UID);
    if ((uid_t)setfsuid((uid_t)-1) != KILN_JOB_UID || (gid_t)setfsgid((gid_t)-1) != KILN_JOB_GID) {
        snprintf(why, whylen, "setfsuid: refused");
        setfsuid(0);
        setfsgid(0);
        return -1;
    }
    mode_t old = umask(022);
    int r = write_files(spec, why, whylen);
    umask(old);
    setfsuid(0);
    setfsgid(0);
    return r;
}

int kiln_exec_rlimits(const struct kiln_exec_spec *spec, pid_t pid)
{
    struct rlimit rl;
    int r = 0;
    if (spec->rl_cpu > 0) { /* SIGXCPU at the limit, SIGKILL a second later */
        rl = (struct rlimit){(rlim_t)spec->rl_cpu, (rlim_t)spec->rl_cpu + 1};
        r |= prlimit(pid, RLIMIT_CPU, &rl, NULL);
    }
    if (spec->rl_fsize >= 0) {
        rl = (struct rlimit){(rlim_t)spec->rl_fsize, (rlim_t)spec->rl_fsize};
        r |= prlimit(pid, RLIMIT_FSIZE, &rl, NULL);
    }
    if (spec->rl_nofile > 0) {
        rl = (struct rlimit){(rlim_t)spec->rl_nofile, (rlim_t)spec->rl_nofile};
        r |= prlimit(pid, RLIMIT_NOFILE, &rl, NULL);
    }
    rl = (struct rlimit){0, 0};
    r |= prlimit(pid, RLIMIT_CORE, &rl, NULL);
    /* Budgets the kernel counts per user, up through every user namespace
     * to its owner's on the host: queued signals and POSIX message queue
     * bytes. Each job gets a share of its own, whatever it inherited. */
    rl = (struct rlimit){KILN_JOB_SIGPENDING, KILN_JOB_SIGPENDING};
    r |= prlimit(pid, RLIMIT_SIGPENDING, &rl, NULL);
    rl = (struct rlimit){KILN_JOB_MSGQUEUE, KILN_JOB_MSGQUEUE};
    r |= prlimit(pid, RLIMIT_MSGQUEUE, &rl, NULL);
    return r ? -errno : 0;
}

void kiln_exec_files_child(const struct kiln_exec_spec *spec, int status_fd)
{
    join_cgroup();
    if (dup2(status_fd, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
        _exit(127);
    drop_privileges();
    umask(022);
    char why[300];
    or_die(write_files(spec, why, sizeof(why)), why);
    _exit(0);
}

void kiln_exec_child(const struct kiln_exec_spec *spec, int in_fd, int out_fd,
                     int err_fd, int status_fd)
{
    join_cgroup();
    setsid();
    wire_stdio(in_fd, out_fd, err_fd, status_fd);
    drop_privileges();
    umask(022);
    if (chdir(spec->cwd) < 0)
        die("chdir", spec->cwd, errno);
    char why[300];
    or_die(write_files(spec, why, sizeof(why)), why);
    if (kiln_exec_rlimits(spec, 0) < 0)
        die("setrlimit", NULL, errno);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die("no_new_privs", NULL, errno);
    int r = kiln_seccomp_apply();
    if (r < 0)
        die("seccomp", NULL, -r);
    environ = spec->env;
    execvp(spec->argv[0], spec->argv);
    die("exec", spec->argv[0], errno);
}
