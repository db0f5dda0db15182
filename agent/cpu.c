/*
 * How much CPU a job has used so far, every process of it counted, so a
 * limit on CPU time (limits.cpu_ms) holds for threads and children alike
 * and does not depend on how busy the machine is. In a microVM the job's
 * cgroup says it (cpu.stat). In a jail, PID 1 of the job's pid namespace
 * adds what its reaped descendants used (RUSAGE_CHILDREN) to what every
 * process still there has used, with the children it reaped itself
 * (/proc/PID/stat: utime, stime, cutime, cstime).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agent.h"

int kiln_read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* utime + stime + cutime + cstime of one process, in clock ticks; 0 when
 * it is gone */
static long long proc_ticks(const char *pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    if (kiln_read_small(path, buf, sizeof(buf)) < 0)
        return 0;
    char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    if (p == NULL)
        return 0;
    long long f[15] = {0};
    /* fields 3.. after the name; utime is field 14 */
    for (int i = 0; i < 15 && p != NULL; i++) {
        while (*p == ' ' || *p == ')')
            p++;
        f[i] = strtoll(p, NULL, 10);
        p = strchr(p, ' ');
    }
    return f[11] + f[12] + f[13] + f[14];
}

int64_t kiln_cpu_used_ms(pid_t job)
{
    char buf[1024];
    if (kiln__agent.in_vm) {
        if (kiln_read_small("/run/kiln/cg/job/cpu.stat", buf, sizeof(buf)) == 0) {
            char *u = strstr(buf, "usage_usec ");
            if (u != NULL)
                return strtoll(u + 11, NULL, 10) / 1000;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    int64_t ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                 (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
    long long ticks = 0, hz = sysconf(_SC_CLK_TCK);
    if (getpid() != 1 || kiln__agent.in_vm) { /* not alone in its pid namespace: the main process */
        char pid[24];
        snprintf(pid, sizeof(pid), "%d", (int)job);
        ticks = proc_ticks(pid);
    } else {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL)
            if (e->d_name[0] >= '1' && e->d_name[0] <= '9' && strcmp(e->d_name, "1") != 0)
                ticks += proc_ticks(e->d_name);
        if (d != NULL)
            closedir(d);
    }
    return ms + (hz > 0 ? ticks * 1000 / hz : 0);
}
