/*
 * kiln-agent as PID 1 of a microVM (QEMU microvm or Firecracker). The
 * kernel starts it from the initramfs (rootfs/build-vm.sh); it then:
 *
 *   devtmpfs, proc, sysfs -> the modules, in the order the build listed ->
 *   the channel (a virtio-serial port by name, or an AF_VSOCK listener) ->
 *   the runtime image from /dev/vda, read-only, as the root (jail.c) ->
 *   a cgroup for the job (memory, pids) -> serve, as in a jail.
 *
 * Its settings come from the kernel command line: kiln.chan=virtio:NAME or
 * kiln.chan=vsock:PORT, kiln.tmp_mb=N.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "wire/proto.h"

static int fail(char *err, size_t errlen, const char *what, const char *arg)
{
    snprintf(err, errlen, "vm: %s %s: %s", what, arg ? arg : "", strerror(errno));
    return -1;
}

/* A small file's text, NUL-terminated; its length, or -1. */
static ssize_t read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

/* The kiln.* settings of the kernel command line. */
static void parse_cmdline(struct kiln_vm *vm, const char *cmdline)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", cmdline); /* strtok_r writes */
    snprintf(vm->chan_kind, sizeof(vm->chan_kind), "virtio");
    snprintf(vm->port_name, sizeof(vm->port_name), "kiln.agent");
    vm->tmp_mb = 256;
    for (char *save = NULL, *w = strtok_r(buf, " \n", &save); w; w = strtok_r(NULL, " \n", &save)) {
        if (strncmp(w, "kiln.chan=", 10) == 0) {
            char *colon = strchr(w + 10, ':');
            if (colon == NULL)
                continue;
            *colon = '\0';
            snprintf(vm->chan_kind, sizeof(vm->chan_kind), "%s", w + 10);
            snprintf(vm->port_name, sizeof(vm->port_name), "%s", colon + 1);
        } else if (strncmp(w, "kiln.tmp_mb=", 12) == 0) {
            vm->tmp_mb = (unsigned)atoi(w + 12);
        } else if (strcmp(w, "kiln.egress=1") == 0) {
            vm->egress = 1;
        }
    }
}

/* What modprobe would pass a module: its "name.param=value" words of the
 * kernel command line (Firecracker describes its virtio-mmio devices so:
 * virtio_mmio.device=4K@0xd0000000:5). */
static void module_params(const char *cmdline, const char *module, char *out, size_t len)
{
    size_t mlen = strcspn(module, ".");
    out[0] = '\0';
    for (const char *w = cmdline; *w;) {
        size_t n = strcspn(w, " \n");
        if (n > mlen + 1 && strncmp(w, module, mlen) == 0 && w[mlen] == '.') {
            size_t used = strlen(out);
            snprintf(out + used, len - used, "%s%.*s", used ? " " : "", (int)(n - mlen - 1), w + mlen + 1);
        }
        w += n;
        w += strspn(w, " \n");
    }
}

static int load_modules(const char *cmdline, char *err, size_t errlen)
{
    char line[128];
    FILE *f = fopen("/lib/kiln-modules/order", "re");
    if (f == NULL)
        return fail(err, errlen, "open", "/lib/kiln-modules/order");
    while (fgets(line, sizeof(line), f) != NULL) {
        char path[192];
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0')
            continue;
        snprintf(path, sizeof(path), "/lib/kiln-modules/%s", line);
        char params[1024];
        module_params(cmdline, line, params, sizeof(params));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (syscall(SYS_finit_module, fd, params, 0) < 0 && errno != EEXIST)) {
            fail(err, errlen, "load module", line);
            fclose(f);
            return -1;
        }
        close(fd);
    }
    fclose(f);
    return 0;
}

/* Devices appear as their drivers probe them: wait a while for `path`. */
static int wait_for(const char *path)
{
    for (int i = 0; i < 1000; i++) {
        if (access(path, F_OK) == 0)
            return 0;
        usleep(5000);
    }
    errno = ENOENT;
    return -1;
}

/* The virtio-serial port named `name`: its /dev/vportNpM. */
static int find_port(const char *name, char *dev, size_t devlen)
{
    for (int tries = 0; tries < 1000; tries++) {
        glob_t g;
        if (glob("/sys/class/virtio-ports/*/name", 0, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++) {
                char buf[64];
                read_file(g.gl_pathv[i], buf, sizeof(buf));
                buf[strcspn(buf, "\n")] = '\0';
                if (strcmp(buf, name) != 0)
                    continue;
                /* /sys/class/virtio-ports/vport0p1/name -> /dev/vport0p1 */
                const char *s = g.gl_pathv[i] + strlen("/sys/class/virtio-ports/");
                snprintf(dev, devlen, "/dev/%.*s", (int)strcspn(s, "/"), s);
                globfree(&g);
                return wait_for(dev);
            }
            globfree(&g);
        }
        usleep(5000);
    }
    errno = ENOENT;
    return -1;
}

static int open_chan_device(struct kiln_vm *vm, char *err, size_t errlen)
{
    if (strcmp(vm->chan_kind, "vsock") == 0) {
        struct sockaddr_vm sa = {
            .svm_family = AF_VSOCK,
            .svm_cid = VMADDR_CID_ANY,
            .svm_port = (unsigned)atoi(vm->port_name),
        };
        vm->listen_fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (vm->listen_fd < 0 || bind(vm->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            listen(vm->listen_fd, 1) < 0)
            return fail(err, errlen, "vsock listen on port", vm->port_name);
        return 0;
    }
    char dev[64];
    if (find_port(vm->port_name, dev, sizeof(dev)) < 0)
        return fail(err, errlen, "find virtio-serial port", vm->port_name);
    if ((vm->path_fd = open(dev, O_PATH | O_CLOEXEC)) < 0)
        return fail(err, errlen, "open", dev);
    /* a VM for a job with net.allow: its one way out (relay.c) */
    if (vm->egress && (find_port(KILN_MUX_PORT, dev, sizeof(dev)) < 0 ||
                       (kiln_relay_mux_path_fd = open(dev, O_PATH | O_CLOEXEC)) < 0))
        return fail(err, errlen, "find virtio-serial port", KILN_MUX_PORT);
    return 0;
}

int kiln_vm_chan(struct kiln_vm *vm)
{
    if (vm->listen_fd >= 0) {
        int fd;
        while ((fd = accept4(vm->listen_fd, NULL, NULL, SOCK_CLOEXEC)) < 0 && errno == EINTR)
            ;
        return fd;
    }
    if (vm->path_fd < 0)
        return -1;
    /* reopened through the O_PATH descriptor: the root may have moved */
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", vm->path_fd);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        /* not yet mounted /proc (still in the initramfs): by name */
        snprintf(path, sizeof(path), "/dev/fd/%d", vm->path_fd);
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    }
    return fd;
}

static int setup_cgroup(void)
{
    const char *cg = "/run/kiln/cg";
    if (mkdir(cg, 0700) < 0 && errno != EEXIST)
        return -1;
    if (mount("cgroup2", cg, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -1;
    int fd = open("/run/kiln/cg/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "+memory +pids", 13) != 13) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (mkdir("/run/kiln/cg/job", 0755) < 0 && errno != EEXIST)
        return -1;
    /* the job's processes join it; a session's are frozen there (jobcg.c) */
    kiln_jobcg.procs = open("/run/kiln/cg/job/cgroup.procs", O_WRONLY | O_CLOEXEC);
    kiln_jobcg.freeze = open("/run/kiln/cg/job/cgroup.freeze", O_WRONLY | O_CLOEXEC);
    kiln_jobcg.events = open("/run/kiln/cg/job/cgroup.events", O_RDONLY | O_CLOEXEC);
    kiln_jobcg.kill = open("/run/kiln/cg/job/cgroup.kill", O_WRONLY | O_CLOEXEC);
    kiln_exec_cgroup_fd = kiln_jobcg.procs;
    return kiln_jobcg.procs < 0 ? -1 : 0;
}

int kiln_vm_boot(struct kiln_vm *vm, char *err, size_t errlen)
{
    vm->path_fd = vm->listen_fd = -1;
    mkdir("/dev", 0755);
    mkdir("/proc", 0755);
    mkdir("/sys", 0755);
    if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
        return fail(err, errlen, "mount", "/dev");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
        mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return fail(err, errlen, "mount", "/proc, /sys");
    char cmdline[4096];
    read_file("/proc/cmdline", cmdline, sizeof(cmdline));
    parse_cmdline(vm, cmdline);
    if (load_modules(cmdline, err, errlen) < 0)
        return -1;
    /* the channel first: whatever fails next can still be reported */
    if (open_chan_device(vm, err, errlen) < 0)
        return -1;
    if (wait_for("/dev/vda") < 0)
        return fail(err, errlen, "find the runtime image", "/dev/vda");
    mkdir("/newroot", 0755);
    if (mount("/dev/vda", "/newroot", "squashfs", MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        return fail(err, errlen, "mount the runtime image", "/dev/vda");
    if (kiln_jail_enter_vm("/newroot", vm->tmp_mb, err, errlen) < 0)
        return -1;
    if (setup_cgroup() < 0)
        return fail(err, errlen, "set up", "the job's cgroup");
    return 0;
}

static int write_value(const char *path, long long v)
{
    char buf[32];
    int n = v > 0 ? snprintf(buf, sizeof(buf), "%lld", v) : snprintf(buf, sizeof(buf), "max");
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = write(fd, buf, (size_t)n) == n ? 0 : -errno;
    close(fd);
    return r;
}

int kiln_vm_limit(struct kiln_vm *vm, long long memory_bytes, long long pids)
{
    int r;
    (void)vm;
    if (kiln_jobcg.procs < 0)
        return -ENOTSUP;
    if ((r = write_value("/run/kiln/cg/job/memory.max", memory_bytes)) < 0 ||
        (r = write_value("/run/kiln/cg/job/pids.max", pids)) < 0)
        return r;
    write_value("/run/kiln/cg/job/memory.swap.max", 0);
    return 0;
}

static long long read_key(const char *path, const char *key)
{
    char buf[1024];
    if (read_file(path, buf, sizeof(buf)) <= 0)
        return -1;
    if (key == NULL)
        return atoll(buf);
    for (char *p = buf; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, key, strlen(key)) == 0 && p[strlen(key)] == ' ')
            return atoll(p + strlen(key) + 1);
    return 0;
}

void kiln_vm_stats(struct kiln_vm *vm, long long *peak_kb, long long *oom_kills)
{
    *peak_kb = -1;
    *oom_kills = 0;
    (void)vm;
    if (kiln_jobcg.procs < 0)
        return;
    long long peak = read_key("/run/kiln/cg/job/memory.peak", NULL);
    *peak_kb = peak >= 0 ? peak / 1024 : -1;
    long long oom = read_key("/run/kiln/cg/job/memory.events", "oom_kill");
    *oom_kills = oom > 0 ? oom : 0;
}

void kiln_vm_halt(void)
{
    sync();
    reboot(RB_AUTOBOOT); /* the VMM is told not to reboot: it exits */
    for (;;)
        pause();
}


/* Append `n` bytes to the file at `fd`; 0 or -1. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int kiln_vm_trust_ca(const struct kiln_span *ca, char *err, size_t errlen)
{
    static int done;
    if (!ca->set || done)
        return 0;
    if (ca->n == 0 || ca->n > 65536) {
        snprintf(err, errlen, "vm: an egress CA of %zu bytes", ca->n);
        return -1;
    }
    /* /dev is a small tmpfs: the CA files get one of their own */
    if ((mkdir(KILN_SANDBOX_PROXY_DIR, 0755) < 0 && errno != EEXIST) ||
        mount("kiln-ca", KILN_SANDBOX_PROXY_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0755,size=4m") < 0)
        return fail(err, errlen, "mount tmpfs", KILN_SANDBOX_PROXY_DIR);
    int fa = open(KILN_SANDBOX_CA, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    int fb = open(KILN_SANDBOX_CA_BUNDLE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    int fs = open("/" KILN_SYSTEM_CA_BUNDLE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int r = fa >= 0 && fb >= 0 ? 0 : -1;
    char buf[16384];
    ssize_t n;
    while (r == 0 && fs >= 0 && (n = read(fs, buf, sizeof(buf))) > 0)
        r = write_all(fb, buf, (size_t)n);
    if (r == 0)
        r = write_all(fa, ca->p, ca->n) < 0 || write_all(fb, "\n", 1) < 0 ||
            write_all(fb, ca->p, ca->n) < 0 ? -1 : 0;
    if (fa >= 0)
        close(fa);
    if (fb >= 0)
        close(fb);
    if (r < 0) {
        if (fs >= 0)
            close(fs);
        return fail(err, errlen, "write", KILN_SANDBOX_CA_BUNDLE);
    }
    if (fs >= 0) { /* programs that read no variable find it in the image's bundle */
        close(fs);
        if (mount(KILN_SANDBOX_CA_BUNDLE, "/" KILN_SYSTEM_CA_BUNDLE, NULL, MS_BIND, NULL) < 0 ||
            mount(NULL, "/" KILN_SYSTEM_CA_BUNDLE, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
            return fail(err, errlen, "bind", "/" KILN_SYSTEM_CA_BUNDLE);
    }
    done = 1;
    return 0;
}
