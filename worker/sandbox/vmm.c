#include "sandbox/vmm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/options.h"
#include "base/log.h"
#include "wire/agent_msg.h"
#include "wire/proto.h"
#include "base/sysutil.h"
#include "sandbox/vm_egress.h"

/* 1 when `dir`'s worker is gone: nobody holds the lock on its .lock (a
 * directory without one, from an older worker: its pid is not alive). */
static int owner_gone(const char *dir, long pid)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/.lock", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT && !kiln_pid_alive((pid_t)pid);
    int gone = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    return gone;
}

int kiln_vmm_state_dir(const char *state_dir, const char *kind, char *dir, size_t len, char *err,
                       size_t errlen)
{
    DIR *d = opendir(state_dir);
    struct dirent *e;
    size_t k = strlen(kind);
    int swept = 0, r;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[600], *end;
        long pid = strncmp(e->d_name, kind, k) == 0 && e->d_name[k] == '-' ? strtol(e->d_name + k + 1, &end, 10) : 0;
        if (pid <= 0 || *end != '\0' || pid == (long)getpid())
            continue;
        snprintf(path, sizeof(path), "%s/%s", state_dir, e->d_name);
        if (owner_gone(path, pid)) {
            kiln_rm_rf(path);
            swept++;
        }
    }
    if (d != NULL)
        closedir(d);
    if (swept > 0)
        kiln_info("%s: removed %d state director%s left by workers that are gone", kind, swept,
                  swept == 1 ? "y" : "ies");
    if (snprintf(dir, len, "%s/%s-%d", state_dir, kind, (int)getpid()) >= (int)len) {
        snprintf(err, errlen, "%s: --state-dir is too long", kind);
        return -ENAMETOOLONG;
    }
    char lock[600];
    snprintf(lock, sizeof(lock), "%s/.lock", dir);
    int fd = -1;
    if ((r = kiln_mkdirs(dir)) < 0 ||
        (fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = r < 0 ? r : -errno;
        snprintf(err, errlen, "%s: %s: %s", kind, fd < 0 ? dir : lock, strerror(-r));
        if (fd >= 0)
            close(fd);
        return r;
    }
    return fd;
}

void kiln_argv_add(struct kiln_argv *a, const char *fmt, ...)
{
    va_list ap;
    if (a->n >= (int)(sizeof(a->v) / sizeof(a->v[0])) - 1)
        return;
    va_start(ap, fmt);
    if (vasprintf(&a->v[a->n], fmt, ap) >= 0)
        a->n++;
    va_end(ap);
    a->v[a->n] = NULL;
}

void kiln_argv_free(struct kiln_argv *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    a->n = 0;
    a->v[0] = NULL;
}

pid_t kiln_vmm_fork(char *const argv[], const int *fds, int nfds, const char *log)
{
    int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int r = -errno; /* before close() may change it */
        close(logfd);
        return r;
    }
    if (pid == 0) {
        /* the VMM goes when the worker does: no VM outlives it */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() == 1)
            _exit(126);
        int high[8];
        for (int i = 0; i < nfds && i < 8; i++)
            if ((high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 20)) < 0)
                _exit(126);
        for (int i = 0; i < nfds && i < 8; i++)
            if (dup2(high[i], 3 + i) < 0)
                _exit(126);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
            _exit(126);
        syscall(SYS_close_range, 3 + nfds, ~0U, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], argv);
        dprintf(2, "kiln: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(logfd);
    return pid;
}

static void on_poll_closed(uv_handle_t *h)
{
    struct kiln_vmm_sandbox *sb = h->data;
    if (sb->release == NULL || sb->release(&sb->pub))
        free(sb);
}

static void snap_work(uv_work_t *w)
{
    struct kiln_snap *s = w->data;
    /* a failure may be passing (seen once in many runs under load): a
     * few tries before every VM of this worker's life has to boot */
    for (int attempt = 1; attempt <= 3 && !__atomic_load_n(&s->destroyed, __ATOMIC_SEQ_CST); attempt++) {
        int64_t t0 = kiln_mono_ms();
        s->err[0] = '\0';
        if (s->make(s->b, s->err, sizeof(s->err)) == 0) {
            s->ms = (uint64_t)(kiln_mono_ms() - t0);
            return;
        }
        if (s->err[0] == '\0')
            snprintf(s->err, sizeof(s->err), "unknown failure");
        kiln_warn("%s: snapshot attempt %d failed: %s", s->b->ops->name, attempt, s->err);
    }
}

static void snap_done(uv_work_t *w, int status)
{
    struct kiln_snap *s = w->data;
    if (s->destroyed) {
        s->free_backend(s->b);
        return;
    }
    const char *name = s->b->ops->name;
    if (status == 0 && s->err[0] == '\0') {
        s->state = KILN_SNAP_READY;
        kiln_info("%s: snapshot ready in %llu ms: VMs now start from it", name, (unsigned long long)s->ms);
    } else {
        s->state = KILN_SNAP_FAILED;
        kiln_warn("%s: no snapshot (%s): every VM boots", name, status == 0 ? s->err : "cancelled");
    }
}

void kiln_snap_start(struct kiln_snap *s)
{
    s->state = KILN_SNAP_MAKING;
    s->work.data = s;
    uv_queue_work(s->b->loop, &s->work, snap_work, snap_done);
}

int kiln_snap_release(struct kiln_snap *s)
{
    if (s->state != KILN_SNAP_MAKING)
        return 1;
    __atomic_store_n(&s->destroyed, 1, __ATOMIC_SEQ_CST); /* the thread stops trying */
    return 0;
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    struct kiln_vmm_sandbox *sb = h->data;
    (void)status;
    (void)events;
    if (!kiln_pidfd_reaped(sb->pidfd, &sb->pub.wstatus, &sb->pub.ru))
        return;
    uv_poll_stop(h);
    close(sb->pidfd);
    if (sb->pub.fd >= 0)
        close(sb->pub.fd);
    if (sb->extra_fd >= 0)
        close(sb->extra_fd);
    if (sb->egress != NULL)
        kiln_vm_egress_close(sb->egress);
    sb->egress = NULL;
    if (!sb->killed && (sb->pub.wstatus != 0)) {
        /* it ended on its own: what it said is worth keeping in the log */
        char path[600], tail[512] = "";
        snprintf(path, sizeof(path), "%s/vmm.log", sb->dir);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            off_t end = lseek(fd, 0, SEEK_END);
            ssize_t n = pread(fd, tail, sizeof(tail) - 1, end > 511 ? end - 511 : 0);
            tail[n > 0 ? n : 0] = '\0';
            for (char *p = tail; *p; p++)
                if (*p == '\n')
                    *p = ' ';
            close(fd);
        }
        kiln_warn("%s: VM process %d ended by itself (status 0x%x): %s", sb->pub.backend->ops->name,
                  (int)sb->pid, sb->pub.wstatus, tail);
    }
    kiln_rm_rf(sb->dir);
    if (sb->pub.on_exit != NULL)
        sb->pub.on_exit(&sb->pub);
    uv_close((uv_handle_t *)h, on_poll_closed);
}

int kiln_vmm_start(struct kiln_backend *b, struct kiln_vmm_sandbox *sb, char *const argv[],
                   const int *fds, int nfds, char *err, size_t errlen)
{
    char log[600];
    snprintf(log, sizeof(log), "%s/vmm.log", sb->dir);
    pid_t pid = kiln_vmm_fork(argv, fds, nfds, log);
    if (pid < 0) {
        snprintf(err, errlen, "%s: starting %s: %s", b->ops->name, argv[0], strerror((int)-pid));
        return (int)pid;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        int e = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        snprintf(err, errlen, "%s: pidfd_open: %s", b->ops->name, strerror(e));
        return -e;
    }
    sb->pid = pid;
    sb->pidfd = pidfd;
    sb->pub.backend = b;
    sb->pub.peak_kb = -1;
    uv_poll_init(b->loop, &sb->poll, pidfd);
    sb->poll.data = sb;
    uv_poll_start(&sb->poll, UV_READABLE, on_pidfd);
    return 0;
}

void kiln_vmm_kill(struct kiln_sandbox *pub)
{
    struct kiln_vmm_sandbox *sb = (struct kiln_vmm_sandbox *)pub;
    if (!sb->killed)
        syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
    sb->killed = 1;
}

int kiln_vmm_hello(int fd)
{
    struct timespec ts;
    msgpack_sbuffer sb;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* fresh entropy for the guest's kernel: VMs restored from one snapshot
     * wake with the same random state */
    unsigned char seed[KILN_HELLO_SEED_BYTES];
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        return -EIO;
    struct kiln_msg_hello h = {(int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, {seed, sizeof(seed), 1}};
    kiln_msg_pack_hello(&sb, &h);
    ssize_t n = write(fd, sb.data, sb.size);
    int r = n == (ssize_t)sb.size ? 0 : -EIO;
    msgpack_sbuffer_destroy(&sb);
    return r;
}

int kiln_kvm_usable(char *why, size_t whylen)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "/dev/kvm: %s", strerror(errno));
        return 0;
    }
    int api = ioctl(fd, KVM_GET_API_VERSION, 0);
    int vm = api == KVM_API_VERSION ? ioctl(fd, KVM_CREATE_VM, 0) : -1;
    /* a VM without a vCPU proves little: some hosts hand out /dev/kvm
     * whose vCPUs cannot run (no VMX/SVM underneath) */
    int vcpu = vm >= 0 ? ioctl(vm, KVM_CREATE_VCPU, 0) : -1;
    int ok = vcpu >= 0;
    FILE *f = fopen("/proc/cpuinfo", "re");
    char line[4096];
    int hw = 0;
    while (f != NULL && !hw && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "flags", 5) == 0)
            hw = strstr(line, " vmx") != NULL || strstr(line, " svm") != NULL;
    if (f != NULL)
        fclose(f);
    if (vcpu >= 0)
        close(vcpu);
    if (vm >= 0)
        close(vm);
    close(fd);
    if (!ok)
        snprintf(why, whylen, "/dev/kvm cannot create a VM here");
    else if (!hw)
        snprintf(why, whylen, "/dev/kvm opens but the CPU shows no vmx/svm (nested KVM that cannot run guests)");
    return ok && hw;
}

long kiln_tsc_khz(void)
{
    FILE *f = fopen("/proc/cpuinfo", "re");
    char line[256];
    double mhz = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "cpu MHz : %lf", &mhz) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return (long)(mhz * 1000);
}

int64_t kiln_vm_ram_mb(const struct kiln_sandbox_opts *cfg, int64_t job_mb, int *own_size)
{
    *own_size = job_mb + KILN_VM_RESERVE_MB > cfg->vm_memory_mb;
    return *own_size ? job_mb + KILN_VM_RESERVE_MB : cfg->vm_memory_mb;
}

int kiln_vmm_limit(struct kiln_sandbox *sb, const struct kiln_sandbox_limits *l)
{
    return sb->capacity_mb > 0 && l->memory_bytes > (sb->capacity_mb << 20) ? -E2BIG : 0;
}

int kiln_vmm_installed(const char *bin)
{
    char cmd[600];
    if (strchr(bin, '\'') != NULL)
        return 0;
    snprintf(cmd, sizeof(cmd), "'%s' --version >/dev/null 2>&1", bin);
    return system(cmd) == 0;
}

int kiln_vm_files_check(const struct kiln_sandbox_opts *cfg, const char *who, char *err, size_t errlen)
{
    const char *need[][2] = {{"--vm-kernel", cfg->vm_kernel}, {"--vm-initrd", cfg->vm_initrd},
                             {"--vm-image", cfg->vm_image}};
    for (size_t i = 0; i < 3; i++) {
        if (need[i][1] == NULL || need[i][1][0] == '\0') {
            snprintf(err, errlen, "%s: %s is not set (rootfs/build-vm.sh and build-image.sh make them)",
                     who, need[i][0]);
            return -EINVAL;
        }
        if (access(need[i][1], R_OK) < 0) {
            int r = -errno; /* before snprintf() may change it */
            snprintf(err, errlen, "%s: %s %s: %s", who, need[i][0], need[i][1], strerror(-r));
            return r;
        }
    }
    return 0;
}
