#include "base/sysutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int kiln_path_join(char *out, size_t len, const char *dir, const char *name)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        if (len > 0)
            out[0] = '\0';
        return -ENAMETOOLONG;
    }
    return 0;
}

int kiln_mkdirs(const char *path)
{
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof(buf))
        return -ENAMETOOLONG;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return mkdir(buf, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void kiln_rm_rf(const char *path)
{
    /* depth first, never following links: a jailer's chroot holds device
     * nodes and hard links to the images, removed and not followed */
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int write_text(const char *path, int flags, const char *text)
{
    size_t len = strlen(text);
    int fd = open(path, O_WRONLY | O_CLOEXEC | flags, 0644);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, len);
    /* errno now, before close() may change it; a short write sets none */
    int r = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return r;
}

int kiln_write_file(const char *path, const char *text)
{
    return write_text(path, 0, text);
}

int kiln_write_file_at(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    int r = kiln_path_join(path, sizeof(path), dir, name);
    return r < 0 ? r : kiln_write_file(path, text);
}

int kiln_create_file_at(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    int r = kiln_path_join(path, sizeof(path), dir, name);
    return r < 0 ? r : write_text(path, O_CREAT | O_TRUNC | O_EXCL, text);
}

int kiln_pid_alive(pid_t pid)
{
    return kill(pid, 0) == 0 || errno == EPERM;
}

int kiln_pidfd_reaped(int pidfd, int *wstatus, struct rusage *ru)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    long r = syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED | WNOHANG, ru);
    if ((r < 0 && errno != ECHILD) || (r == 0 && info.si_pid == 0))
        return 0; /* not exited yet */
    *wstatus = info.si_code == CLD_EXITED ? W_EXITCODE(info.si_status, 0) : info.si_status;
    return 1;
}

int64_t kiln_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
