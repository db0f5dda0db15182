/*
 * The job's syscall filter: allow by default, refuse (EPERM) what a job has
 * no business doing and what has a record of kernel escapes: namespaces and
 * mounts, module and kexec loading, keyrings, bpf, ptrace and cross-process
 * memory access, userfaultfd, perf events, io_uring, clock setting. clone3
 * answers ENOSYS so libc falls back to clone, whose flags a filter can see.
 * Another architecture's syscalls (x32, i386) kill the process.
 */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "agent.h"

static const char *const denied[] = {
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
    "get_kernel_syms", "init_module", "io_uring_enter", "io_uring_register",
    "io_uring_setup", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load",
    "keyctl", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
    "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree",
    "perf_event_open", "pidfd_getfd", "pivot_root", "process_vm_readv",
    "process_vm_writev", "ptrace", "query_module", "quotactl", "quotactl_fd",
    "reboot", "request_key", "setns", "settimeofday", "stime", "swapoff", "swapon",
    "sysfs", "syslog", "_sysctl", "umount", "umount2", "unshare", "uselib",
    "userfaultfd", "ustat", "vm86", "vm86old",
};

static const unsigned long ns_flags[] = {
    CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC,
    CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME,
};

static int build(scmp_filter_ctx ctx)
{
    int r;
    if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
        return r;
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0)) < 0)
            return r;
    }
    for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++)
        if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]))) < 0)
            return r;
    if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0 ||
        (r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI))) < 0 ||
        (r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_EQ, AF_PACKET))) < 0)
        return r;
    return 0;
}

/* Build the filter, then load it (fd < 0) or write it to `fd` as BPF. */
static int filter(int fd)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL)
        return -ENOMEM;
    int r = build(ctx);
    if (r == 0)
        r = fd < 0 ? seccomp_load(ctx) : seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    return r;
}

int kiln_seccomp_apply(void)
{
    return filter(-1);
}

int kiln_seccomp_export(int fd)
{
    return filter(fd);
}
