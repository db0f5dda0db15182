/*
 * The job cgroup: where a session's processes run apart from the agent, so
 * that the agent can stop every one of them at once and end them, whatever
 * they do meanwhile (fork, hide as a zombie whose threads run on, signal
 * each other awake). cgroup v2's freezer does the stopping: a frozen task
 * runs no instruction until thawed, SIGCONT or not, and a fatal signal
 * still ends it.
 *
 * A jail gets the cgroup from the worker as four open files (the worker
 * made it; --job-cgroup N names them, N..N+3 in KILN_JOBCG_* order); a
 * VM's agent makes it in its own kernel's cgroup2 (vm.c) and opens the
 * same four files. Without one, kiln_jobcg.freeze is -1.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

struct kiln_jobcg kiln_jobcg = {-1, -1, -1, -1};

void kiln_jobcg_adopt(int first_fd)
{
    kiln_jobcg.procs = first_fd;
    kiln_jobcg.freeze = first_fd + 1;
    kiln_jobcg.events = first_fd + 2;
    kiln_jobcg.kill = fcntl(first_fd + 3, F_GETFD) >= 0 ? first_fd + 3 : -1; /* (Linux < 5.14) */
    kiln_exec_cgroup_fd = kiln_jobcg.procs;
}

/* 1 when cgroup.events says "frozen 1", 0 when "frozen 0", -1 unknown. */
static int frozen_now(void)
{
    char buf[256];
    ssize_t n = pread(kiln_jobcg.events, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *f = strstr(buf, "frozen ");
    return f == NULL ? -1 : f[7] == '1';
}

int kiln_jobcg_freeze(int on)
{
    if (kiln_jobcg.freeze < 0)
        return -ENOTSUP;
    if (pwrite(kiln_jobcg.freeze, on ? "1" : "0", 1, 0) != 1)
        return -errno;
    if (!on)
        return 0;
    /* the kernel freezes each task as it next leaves the kernel: wait until
     * it says every one is (a task in uninterruptible sleep may take a
     * while; after 2 s the caller goes on without the guarantee) */
    for (int i = 0; i < 2000; i++) {
        int f = frozen_now();
        if (f != 0)
            return f == 1 ? 0 : -EIO;
        struct timespec ts = {0, i < 20 ? 50 * 1000 : 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -ETIMEDOUT;
}
