/*
 * The job's syscall filter: allow by default, refuse (EPERM) what a job has
 * no business doing and what has a record of kernel escapes: namespaces and
 * mounts, module and kexec loading, keyrings, bpf, ptrace and cross-process
 * memory access, userfaultfd, perf events, io_uring, fanotify, clock
 * setting, and making a process dumpable again (PR_SET_DUMPABLE 1: the
 * runners of runs whose end is checked make theirs non-dumpable, so their
 * memory is nobody's to read through /proc). clone3 answers ENOSYS so libc falls back to clone, whose flags a
 * filter can see. Another architecture's syscalls (x32, i386) kill the
 * process.
 *
 * Sockets: only the families a program has a use for. AF_UNIX, AF_INET and
 * AF_INET6 (the sandbox's own network namespace: lo, and the relay when the
 * job has net.allow), and AF_NETLINK for NETLINK_ROUTE alone (libc's
 * getifaddrs and getaddrinfo). Everything else answers EAFNOSUPPORT, as a
 * kernel built without that family would: AF_VSOCK above all, which no
 * network namespace contains (a job could bind the host's vsock ports, or
 * reach the hypervisor), and packet, bluetooth, alg, xdp, tipc and the rest
 * of the families with a record of kernel bugs. socketpair is AF_UNIX only.
 */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
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
    /* fanotify groups and marks are a per-user budget of the host's and
     * watch whole filesystems: nothing a job needs */
    "fanotify_init", "fanotify_mark",
};

/* The socket families a job may open (see the top of this file). */
static const int families_allowed[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
#define FAMILY_LIMIT 64 /* above every AF_* Linux knows (AF_MAX is 46 in 6.x) */

static const unsigned long ns_flags[] = {
    CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC,
    CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME,
};

static int family_allowed(int family)
{
    for (size_t i = 0; i < sizeof(families_allowed) / sizeof(families_allowed[0]); i++)
        if (families_allowed[i] == family)
            return 1;
    return 0;
}

/* socket(2) and socketpair(2) by family. The kernel reads the family as an
 * int, so a value with any of the upper 32 bits set is refused whole by the
 * ">= FAMILY_LIMIT" rule, whatever its low half says. */
static int sockets(scmp_filter_ctx ctx)
{
    const uint32_t no_family = SCMP_ACT_ERRNO(EAFNOSUPPORT);
    int r;
    for (int f = 0; f < FAMILY_LIMIT; f++)
        if (!family_allowed(f) &&
            (r = seccomp_rule_add(ctx, no_family, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)f))) < 0)
            return r;
    if ((r = seccomp_rule_add(ctx, no_family, SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_GE, (scmp_datum_t)FAMILY_LIMIT))) < 0 ||
        /* netlink: the routing protocol only (NETLINK_ROUTE is 0) */
        (r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPROTONOSUPPORT), SCMP_SYS(socket), 2,
                              SCMP_A0(SCMP_CMP_EQ, AF_NETLINK), SCMP_A2(SCMP_CMP_NE, 0))) < 0 ||
        (r = seccomp_rule_add(ctx, no_family, SCMP_SYS(socketpair), 1,
                              SCMP_A0(SCMP_CMP_NE, AF_UNIX))) < 0)
        return r;
    return 0;
}

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
        (r = sockets(ctx)) < 0)
        return r;
    /* a process may make itself non-dumpable, never dumpable again: a
     * runner whose end is checked hides its memory (/proc/self/mem) so */
    if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prctl), 2, SCMP_A0(SCMP_CMP_EQ, PR_SET_DUMPABLE),
                              SCMP_A1(SCMP_CMP_NE, 0))) < 0)
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
