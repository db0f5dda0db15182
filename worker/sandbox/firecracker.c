/*
 * The firecracker backend: each sandbox is a Firecracker microVM (KVM
 * only), driven through its API socket, optionally under its jailer. The
 * agent is the same kiln-agent as in QEMU, reached over AF_VSOCK: the guest
 * listens on port 1024, the host connects to the VM's vsock Unix socket and
 * says "CONNECT 1024".
 *
 *   firecracker --api-sock DIR/api.sock
 *     PUT /machine-config, /boot-source, /drives/rootfs, /vsock
 *     PUT /actions InstanceStart            (a cold boot)
 *   or
 *     PUT /snapshot/load (resume_vm, its own vsock path)   (from the snapshot)
 *
 * The snapshot is made once, in the background: a template VM boots, its
 * agent answers, PATCH /vm Paused, PUT /snapshot/create. Every VM after it
 * loads that snapshot (guest memory mapped from the file, copy on write).
 *
 * The API calls and the vsock handshake block, so a VM is set up on libuv's
 * thread pool; its agent channel reaches the worker through on_chan.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/backend.h"
#include "sandbox/options.h"
#include "sandbox/fc_api.h"
#include "base/log.h"
#include "wire/proto.h"
#include "base/sysutil.h"
#include "sandbox/vmm.h"

#define AGENT_PORT 1024

struct fc {
    struct kiln_backend pub;
    char dir[400];
    int lock_fd;                /* its lock, held while the worker lives */
    unsigned spawned;
    struct kiln_snap snap;
};

struct fc_sandbox {
    struct kiln_vmm_sandbox vmm;
    uv_work_t work;
    int setting_up;             /* the thread still works on it */
    int exited;                 /* ... and the VM is gone: free it after */
    int restore;
    int64_t ram_mb;
    int chan_fd;                /* set by the thread */
    char root[700];             /* where the VM's sockets are, on the host */
    char err[300];
};

static int unix_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Read until `done` says the reply is whole, or the deadline. */
static int read_reply(int fd, char *buf, size_t cap, size_t *len, int64_t deadline)
{
    *len = 0;
    while (kiln_mono_ms() < deadline && *len < cap - 1) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + *len, cap - 1 - *len);
        if (n <= 0)
            return n == 0 ? -EPIPE : -errno;
        *len += (size_t)n;
        return 0;
    }
    return -ETIMEDOUT;
}

/* One API call: the request for `op`, a 2xx reply, or why not in err. */
static int api(const char *sock, enum kiln_fc_op op, const struct kiln_fc_vm *vm, char *err,
               size_t errlen)
{
    int fd = -1;
    for (int64_t deadline = kiln_mono_ms() + 3000; fd < 0 && kiln_mono_ms() < deadline;)
        if ((fd = unix_connect(sock)) < 0)
            usleep(2000); /* Firecracker creates its socket as it starts */
    if (fd < 0) {
        snprintf(err, errlen, "firecracker: the API socket %s: %s", sock, strerror(-fd));
        return fd;
    }
    size_t len, have = 0;
    char *req = kiln_fc_request(op, vm, &len), buf[8192], fault[512];
    int r = req != NULL && write(fd, req, len) == (ssize_t)len ? 0 : -EIO, status = 0;
    free(req);
    int64_t deadline = kiln_mono_ms() + 30000;
    while (r == 0) {
        size_t n;
        if ((r = read_reply(fd, buf + have, sizeof(buf) - have, &n, deadline)) < 0)
            break;
        have += n;
        int done = kiln_fc_response(buf, have, &status, fault, sizeof(fault));
        if (done < 0)
            r = done;
        if (done != 0)
            break;
    }
    close(fd);
    if (r < 0) {
        snprintf(err, errlen, "firecracker: API call %d: %s", (int)op, strerror(-r));
        return r;
    }
    if (status < 200 || status > 299) {
        snprintf(err, errlen, "firecracker: API call %d: HTTP %d: %.200s", (int)op, status, fault);
        return -EIO;
    }
    return 0;
}

/* The guest agent's vsock port, through the VM's Unix socket; retried
 * while the guest boots. Returns the connected fd. */
static int vsock_connect(const char *uds, int64_t deadline, char *err, size_t errlen)
{
    char line[64], buf[128];
    int n = kiln_fc_vsock_connect_line(line, sizeof(line), AGENT_PORT);
    while (kiln_mono_ms() < deadline) {
        int fd = unix_connect(uds);
        if (fd >= 0 && write(fd, line, (size_t)n) == n) {
            size_t have = 0, got;
            int ok = 0;
            while (ok == 0 && read_reply(fd, buf + have, sizeof(buf) - have, &got, kiln_mono_ms() + 2000) == 0) {
                have += got;
                ok = kiln_fc_vsock_reply(buf, have);
            }
            if (ok == 1)
                return fd;
        }
        if (fd >= 0)
            close(fd);
        usleep(20000); /* the agent is not listening yet */
    }
    snprintf(err, errlen, "firecracker: the guest agent never answered on vsock port %d", AGENT_PORT);
    return -ETIMEDOUT;
}

static void boot_args(const struct kiln_sandbox_opts *cfg, char *buf, size_t len)
{
    snprintf(buf, len, "console=ttyS0 reboot=k panic=-1 pci=off quiet cryptomgr.notests "
                       "mitigations=off nokaslr kiln.chan=vsock:%d kiln.tmp_mb=%lld %s",
             AGENT_PORT, (long long)cfg->tmp_mb, cfg->vm_append);
}

/* The VMM process: firecracker itself, or the jailer around it. */
static void vmm_argv(const struct kiln_sandbox_opts *cfg, struct kiln_argv *a, const char *dir, unsigned id)
{
    if (cfg->jailer != NULL) {
        kiln_argv_add(a, "%s", cfg->jailer);
        kiln_argv_add(a, "--id");
        kiln_argv_add(a, "kiln-%d-%u", (int)getpid(), id);
        kiln_argv_add(a, "--exec-file");
        kiln_argv_add(a, "%s", cfg->firecracker);
        kiln_argv_add(a, "--uid");
        kiln_argv_add(a, "%lld", (long long)cfg->jail_uid_base);
        kiln_argv_add(a, "--gid");
        kiln_argv_add(a, "%lld", (long long)cfg->jail_uid_base);
        kiln_argv_add(a, "--chroot-base-dir");
        kiln_argv_add(a, "%s", dir);
        kiln_argv_add(a, "--");
        kiln_argv_add(a, "--api-sock");
        kiln_argv_add(a, "/api.sock");
        return;
    }
    kiln_argv_add(a, "%s", cfg->firecracker);
    kiln_argv_add(a, "--api-sock");
    kiln_argv_add(a, "%s/api.sock", dir);
    kiln_argv_add(a, "--id");
    kiln_argv_add(a, "kiln-%u", id);
}

/* Set up one VM (cold or from the snapshot) and connect to its agent:
 * blocking, on the thread pool. Paths are the host's; under the jailer they
 * are the chroot's, where the VM's files are linked in. */
static int setup_vm(struct fc *f, const char *root, int jailed, int restore, int64_t ram_mb,
                    char *err, size_t errlen)
{
    const struct kiln_sandbox_opts *cfg = f->pub.cfg;
    char api_sock[700], uds[700], args[1024], snap[600], mem[600];
    snprintf(api_sock, sizeof(api_sock), "%s/api.sock", root);
    snprintf(uds, sizeof(uds), "%s/v.sock", root);
    snprintf(snap, sizeof(snap), "%s/snap.state", f->dir);
    snprintf(mem, sizeof(mem), "%s/snap.mem", f->dir);
    boot_args(cfg, args, sizeof(args));
    struct kiln_fc_vm vm = {
        .vcpus = (int)cfg->vm_vcpus,
        .mem_mib = ram_mb,
        .kernel = cfg->vm_kernel,
        .initrd = cfg->vm_initrd,
        .boot_args = args,
        .image = cfg->vm_image,
        .guest_cid = 3,
        .vsock_uds = uds,
        .snapshot = snap,
        .mem_file = mem,
    };
    int r;
    if (jailed) {
        /* Firecracker sees only its chroot: the files are linked in, and
         * every path it is given is the chroot's */
        static const char *names[] = {"vmlinux", "initrd", "image"};
        const char *src[] = {cfg->vm_kernel, cfg->vm_initrd, cfg->vm_image};
        for (int64_t deadline = kiln_mono_ms() + 3000; access(api_sock, F_OK) < 0 && kiln_mono_ms() < deadline;)
            usleep(2000);
        for (int i = 0; i < 3; i++) {
            char dst[700];
            snprintf(dst, sizeof(dst), "%s/%s", root, names[i]);
            if (link(src[i], dst) < 0 && errno != EEXIST) {
                r = -errno; /* before snprintf() may change it */
                snprintf(err, errlen, "firecracker: linking %s into the jail (same filesystem as "
                         "--state-dir needed): %s", src[i], strerror(-r));
                return r;
            }
        }
        vm.kernel = "/vmlinux";
        vm.initrd = "/initrd";
        vm.image = "/image";
        vm.vsock_uds = "/v.sock";
    }
    if (restore) {
        if ((r = api(api_sock, KILN_FC_SNAPSHOT_LOAD, &vm, err, errlen)) < 0)
            return r;
    } else {
        static const enum kiln_fc_op boot[] = {KILN_FC_MACHINE_CONFIG, KILN_FC_BOOT_SOURCE,
                                               KILN_FC_DRIVE_IMAGE, KILN_FC_VSOCK, KILN_FC_START};
        for (size_t i = 0; i < sizeof(boot) / sizeof(boot[0]); i++)
            if ((r = api(api_sock, boot[i], &vm, err, errlen)) < 0)
                return r;
    }
    int fd = vsock_connect(uds, kiln_mono_ms() + 60000, err, errlen);
    if (fd < 0)
        return fd;
    if (kiln_vmm_hello(fd) < 0) {
        close(fd);
        snprintf(err, errlen, "firecracker: could not greet the agent");
        return -EIO;
    }
    return fd;
}

/* ---- the snapshot ------------------------------------------------------ */

static int snap_make(struct kiln_backend *b, char *err, size_t errlen)
{
    struct fc *f = (struct fc *)b;
    const struct kiln_sandbox_opts *cfg = f->pub.cfg;
    char tdir[600], log[700], api_sock[700];
    struct kiln_argv a = {0};
    snprintf(tdir, sizeof(tdir), "%s/template", f->dir);
    snprintf(log, sizeof(log), "%s/vmm.log", tdir);
    snprintf(api_sock, sizeof(api_sock), "%s/api.sock", tdir);
    err[0] = '\0';
    int r = kiln_mkdirs(tdir);
    if (r < 0) {
        snprintf(err, errlen, "mkdir %.200s: %s", tdir, strerror(-r));
        return r;
    }
    kiln_argv_add(&a, "%s", cfg->firecracker);
    kiln_argv_add(&a, "--api-sock");
    kiln_argv_add(&a, "%s", api_sock);
    pid_t pid = kiln_vmm_fork(a.v, NULL, 0, log);
    kiln_argv_free(&a);
    if (pid < 0) {
        snprintf(err, errlen, "starting %s: %s", cfg->firecracker, strerror((int)-pid));
        return -EIO;
    }
    int fd = setup_vm(f, tdir, 0, 0, cfg->vm_memory_mb, err, errlen);
    if (fd >= 0) {
        /* the agent answers "ready" to hello: it waits for work now */
        char buf[256];
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 60000) <= 0 || read(fd, buf, sizeof(buf)) <= 0)
            snprintf(err, errlen, "the template VM's agent did not answer");
        close(fd);
    }
    char snap[600], mem[600];
    snprintf(snap, sizeof(snap), "%s/snap.state", f->dir);
    snprintf(mem, sizeof(mem), "%s/snap.mem", f->dir);
    struct kiln_fc_vm vm = {.snapshot = snap, .mem_file = mem};
    if (err[0] == '\0' &&
        api(api_sock, KILN_FC_PAUSE, &vm, err, errlen) == 0)
        api(api_sock, KILN_FC_SNAPSHOT_CREATE, &vm, err, errlen);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    kiln_rm_rf(tdir);
    return err[0] == '\0' ? 0 : -EIO;
}

static void fc_free(struct kiln_backend *b)
{
    struct fc *f = (struct fc *)b;
    kiln_rm_rf(f->dir);
    close(f->lock_fd);
    free(f);
}

/* ---- sandboxes --------------------------------------------------------- */

static void vm_work(uv_work_t *w)
{
    struct fc_sandbox *sb = w->data;
    struct fc *f = (struct fc *)sb->vmm.pub.backend;
    sb->chan_fd = setup_vm(f, sb->root, f->pub.cfg->jailer != NULL, sb->restore, sb->ram_mb,
                           sb->err, sizeof(sb->err));
}

static void vm_done(uv_work_t *w, int status)
{
    struct fc_sandbox *sb = w->data;
    sb->setting_up = 0;
    if (sb->exited) { /* gone while it was set up: nobody waits for it */
        if (sb->chan_fd >= 0)
            close(sb->chan_fd);
        free(sb);
        return;
    }
    if (status < 0 || sb->chan_fd < 0) {
        kiln_warn("firecracker: %s", status < 0 ? "VM set-up cancelled" : sb->err);
        kiln_vmm_kill(&sb->vmm.pub); /* on_exit follows */
        return;
    }
    sb->vmm.pub.fd = sb->chan_fd;
    if (sb->vmm.pub.on_chan != NULL)
        sb->vmm.pub.on_chan(&sb->vmm.pub);
}

/* vmm.c frees a sandbox when its VMM has gone; one still being set up on
 * the thread pool is freed by vm_done instead. */
static int fc_release(struct kiln_sandbox *pub)
{
    struct fc_sandbox *sb = (struct fc_sandbox *)pub;
    sb->exited = 1;
    return sb->setting_up ? 0 : 1;
}

static int fc_spawn(struct kiln_backend *b, const char *profile, const struct kiln_spawn_opts *o,
                    struct kiln_sandbox **out, char *err, size_t errlen)
{
    struct fc *f = (struct fc *)b;
    const struct kiln_sandbox_opts *cfg = b->cfg;
    struct kiln_argv a = {0};
    int r;
    (void)profile;
    struct fc_sandbox *sb = calloc(1, sizeof(*sb));
    if (sb == NULL) {
        snprintf(err, errlen, "firecracker: out of memory");
        return -ENOMEM;
    }
    sb->vmm.extra_fd = -1;
    sb->vmm.pub.fd = -1; /* on_chan delivers it */
    sb->chan_fd = -1;
    /* no network device: a job with net.allow is refused (core/run_link.c) */
    int own_size;
    sb->ram_mb = kiln_vm_ram_mb(cfg, o != NULL ? o->memory_mb : 0, &own_size);
    sb->restore = f->snap.state == KILN_SNAP_READY && cfg->jailer == NULL && !own_size;
    unsigned id = ++f->spawned;
    snprintf(sb->vmm.dir, sizeof(sb->vmm.dir), "%s/%u", f->dir, id);
    if ((r = kiln_mkdirs(sb->vmm.dir)) < 0) {
        snprintf(err, errlen, "firecracker: mkdir %s: %s", sb->vmm.dir, strerror(-r));
        free(sb);
        return r;
    }
    vmm_argv(cfg, &a, sb->vmm.dir, id);
    if (cfg->jailer != NULL) { /* <chroot base>/<exec file name>/<id>/root */
        const char *exe = strrchr(cfg->firecracker, '/');
        snprintf(sb->root, sizeof(sb->root), "%s/%s/kiln-%d-%u/root", sb->vmm.dir,
                 exe ? exe + 1 : cfg->firecracker, (int)getpid(), id);
    } else {
        snprintf(sb->root, sizeof(sb->root), "%s", sb->vmm.dir);
    }
    r = kiln_vmm_start(b, &sb->vmm, a.v, NULL, 0, err, errlen);
    kiln_argv_free(&a);
    if (r < 0) {
        kiln_rm_rf(sb->vmm.dir);
        free(sb);
        return r;
    }
    sb->vmm.release = fc_release;
    sb->vmm.pub.capacity_mb = sb->ram_mb - KILN_VM_RESERVE_MB;
    sb->setting_up = 1;
    sb->work.data = sb;
    uv_queue_work(b->loop, &sb->work, vm_work, vm_done);
    *out = &sb->vmm.pub;
    return 0;
}

static void fc_destroy(struct kiln_backend *b)
{
    struct fc *f = (struct fc *)b;
    if (kiln_snap_release(&f->snap))
        fc_free(b);
}

static const struct kiln_backend_ops fc_ops = {
    .name = "firecracker",
    .spawn = fc_spawn,
    .kill = kiln_vmm_kill,
    .limit = kiln_vmm_limit,
    .destroy = fc_destroy,
    .agent_limits = 1,
};

int kiln_backend_firecracker_new(uv_loop_t *loop, const struct kiln_sandbox_opts *cfg,
                                 struct kiln_backend **out, char *err, size_t errlen)
{
    int r;
    char why[256];
    if (!kiln_kvm_usable(why, sizeof(why))) {
        snprintf(err, errlen, "firecracker needs KVM: %s", why);
        return -ENODEV;
    }
    if (!kiln_vmm_installed(cfg->firecracker)) {
        snprintf(err, errlen, "%s is not installed or does not run", cfg->firecracker);
        return -ENOENT;
    }
    if (cfg->jailer != NULL && access(cfg->jailer, X_OK) < 0) {
        r = -errno; /* before snprintf() may change it */
        snprintf(err, errlen, "--jailer %s: %s", cfg->jailer, strerror(-r));
        return r;
    }
    if ((r = kiln_vm_files_check(cfg, "firecracker", err, errlen)) < 0)
        return r;
    struct fc *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        snprintf(err, errlen, "firecracker: out of memory");
        return -ENOMEM;
    }
    if ((r = f->lock_fd = kiln_vmm_state_dir(cfg->state_dir, "firecracker", f->dir, sizeof(f->dir), err,
                                             errlen)) < 0) {
        free(f);
        return r;
    }
    f->pub.ops = &fc_ops;
    f->pub.loop = loop;
    f->pub.cfg = cfg;
    kiln_info("firecracker: %lld MiB and %lld vCPU per VM%s", (long long)cfg->vm_memory_mb,
              (long long)cfg->vm_vcpus, cfg->jailer ? ", each under the jailer" : "");
    if (!cfg->vm_cold && cfg->jailer == NULL) {
        f->snap = (struct kiln_snap){.b = &f->pub, .make = snap_make, .free_backend = fc_free};
        kiln_snap_start(&f->snap);
    }
    *out = &f->pub;
    return 0;
}
