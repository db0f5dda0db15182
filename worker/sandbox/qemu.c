/*
 * The qemu backend: each sandbox is a QEMU microvm whose PID 1 is
 * kiln-agent (rootfs/build-vm.sh), with KVM when this host can run it and
 * TCG (software) otherwise.
 *
 *   worker --socketpair--> -chardev socket,fd=3 -> virtio-serial port
 *                          "kiln.agent" -> /dev/vportNpM in the guest
 *   runtime image squashfs -> virtio-blk, read-only -> the guest's root
 *
 * No network device: the guest has only lo. Guest RAM holds the job's
 * memory limit, which the agent enforces on a cgroup inside the guest.
 *
 * Pools refill from a snapshot. Once, in the background, a template VM
 * boots with its RAM in a shared file (memory-backend-file, share=on); when
 * its agent is ready, QEMU migrates its device state to a file with
 * x-ignore-shared (RAM is not copied: it is the file). Every later VM maps
 * that file privately (share=off, copy on write: the pages it only reads
 * stay shared among all VMs) and loads the device state (-incoming defer,
 * migrate-incoming), ready in tens of milliseconds instead of a boot of
 * seconds. Until the snapshot exists, or if making it failed, VMs boot.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/backend.h"
#include "sandbox/options.h"
#include "base/log.h"
#include "wire/proto.h"
#include "sandbox/vm_egress.h"
#include "base/sysutil.h"
#include "sandbox/vmm.h"

struct qemu {
    struct kiln_backend pub;
    const char *accel;          /* "kvm" or "tcg" */
    long tsc_khz;
    char dir[400];              /* state_dir/qemu-<pid>: snapshot, one dir per VM */
    int lock_fd;                /* its lock, held while the worker lives */
    unsigned spawned;
    struct kiln_snap snap;
    pid_t template_pid;         /* while the snapshot is made */
};

enum vm_mode { VM_COLD, VM_TEMPLATE, VM_RESTORE };

static void build_argv(struct qemu *q, struct kiln_argv *a, enum vm_mode mode, int net, int64_t ram_mb,
                       const char *dir)
{
    const struct kiln_sandbox_opts *cfg = q->pub.cfg;
    kiln_argv_add(a, "%s", cfg->qemu);
    kiln_argv_add(a, "-M");
    kiln_argv_add(a, "microvm,rtc=on%s", mode == VM_COLD ? "" : ",memory-backend=ram");
    kiln_argv_add(a, "-accel");
    /* a smaller translation cache: most of a warm VM's RSS otherwise */
    kiln_argv_add(a, "%s", strcmp(q->accel, "kvm") == 0 ? "kvm" : "tcg,tb-size=64");
    kiln_argv_add(a, "-cpu");
    kiln_argv_add(a, "%s", strcmp(q->accel, "kvm") == 0 ? "host" : "max");
    kiln_argv_add(a, "-m");
    kiln_argv_add(a, "%lldM", (long long)ram_mb);
    kiln_argv_add(a, "-smp");
    kiln_argv_add(a, "%lld", (long long)cfg->vm_vcpus);
    kiln_argv_add(a, "-nodefaults");
    kiln_argv_add(a, "-no-user-config");
    kiln_argv_add(a, "-nographic");
    kiln_argv_add(a, "-no-reboot");
    kiln_argv_add(a, "-kernel");
    kiln_argv_add(a, "%s", cfg->vm_kernel);
    kiln_argv_add(a, "-initrd");
    kiln_argv_add(a, "%s", cfg->vm_initrd);
    kiln_argv_add(a, "-append");
    kiln_argv_add(a, "console=ttyS0 quiet panic=-1 cryptomgr.notests mitigations=off "
                     "no_timer_check nokaslr tsc_early_khz=%ld tsc=reliable "
                     "kiln.chan=virtio:kiln.agent kiln.tmp_mb=%lld%s %s",
                  q->tsc_khz, (long long)cfg->tmp_mb, net ? " kiln.egress=1" : "", cfg->vm_append);
    kiln_argv_add(a, "-serial");
    kiln_argv_add(a, "file:%s/console.log", dir);
    kiln_argv_add(a, "-drive");
    kiln_argv_add(a, "id=rt,file=%s,format=raw,if=none,readonly=on", cfg->vm_image);
    kiln_argv_add(a, "-device");
    kiln_argv_add(a, "virtio-blk-device,drive=rt");
    kiln_argv_add(a, "-chardev");
    kiln_argv_add(a, "socket,id=agent,fd=3");
    kiln_argv_add(a, "-device");
    kiln_argv_add(a, "virtio-serial-device");
    kiln_argv_add(a, "-device");
    kiln_argv_add(a, "virtserialport,chardev=agent,name=kiln.agent");
    if (mode == VM_COLD)
        return;
    kiln_argv_add(a, "-object");
    kiln_argv_add(a, "memory-backend-file,id=ram,size=%lldM,mem-path=%s/snap.mem,share=%s",
                  (long long)ram_mb, q->dir, mode == VM_TEMPLATE ? "on" : "off");
    kiln_argv_add(a, "-chardev");
    kiln_argv_add(a, "socket,id=qmp,fd=4");
    kiln_argv_add(a, "-mon");
    kiln_argv_add(a, "chardev=qmp,mode=control");
    if (mode == VM_RESTORE) {
        kiln_argv_add(a, "-incoming");
        kiln_argv_add(a, "defer");
    }
}

/* ---- the snapshot, made once in a thread of the pool ------------------ */

/* Block until the agent on `fd` says "ready" (or `deadline`). */
static int wait_ready(int fd, int64_t deadline, char *err, size_t errlen)
{
    struct kiln_proto_reader rd;
    int r = -ETIMEDOUT;
    kiln_proto_reader_init(&rd, 1 << 20);
    snprintf(err, errlen, "the template VM's agent was not ready in time");
    while (kiln_mono_ms() < deadline) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            snprintf(err, errlen, "the template VM ended before its agent was ready");
            r = -EPIPE;
            break;
        }
        const void *msg;
        size_t len;
        if (kiln_proto_reader_feed(&rd, buf, (size_t)n) < 0)
            break;
        if (kiln_proto_reader_next(&rd, &msg, &len) == 1) {
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            if (kiln_mp_unpack(&u, msg, len) == 0) {
                const msgpack_object *t = kiln_mp_get(&u.data, "t"), *why;
                if (t != NULL && kiln_mp_streq(t, "ready")) {
                    err[0] = '\0';
                    r = 0;
                } else if ((why = kiln_mp_get(&u.data, "reason")) != NULL) {
                    char *s = kiln_mp_strdup(why);
                    snprintf(err, errlen, "the template VM's agent failed: %s", s ? s : "?");
                    free(s);
                    r = -EIO;
                }
            }
            msgpack_unpacked_destroy(&u);
            break;
        }
    }
    kiln_proto_reader_free(&rd);
    return r;
}

/* One QMP command; the reply (events skipped) in *reply, owned. */
static int qmp(FILE *f, json_t **reply, const char *cmd, json_t *args)
{
    json_t *req = json_pack("{s:s}", "execute", cmd);
    if (args != NULL)
        json_object_set_new(req, "arguments", args);
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    int r = s != NULL && fprintf(f, "%s\n", s) > 0 && fflush(f) == 0 ? 0 : -EIO;
    free(s);
    char line[8192];
    while (r == 0 && fgets(line, sizeof(line), f) != NULL) {
        json_t *j = json_loads(line, 0, NULL);
        if (j == NULL || json_object_get(j, "event") != NULL) {
            json_decref(j);
            continue;
        }
        if (json_object_get(j, "return") == NULL) {
            json_decref(j);
            return -EIO;
        }
        if (reply != NULL)
            *reply = j;
        else
            json_decref(j);
        return 0;
    }
    return -EIO;
}

static int make_snapshot(struct qemu *q, char *err, size_t errlen)
{
    int sv[2] = {-1, -1}, qm[2] = {-1, -1}, r = -EIO;
    char tdir[600], log[640], uri[700];
    struct kiln_argv a = {0};
    FILE *f = NULL;
    snprintf(tdir, sizeof(tdir), "%s/template", q->dir);
    snprintf(log, sizeof(log), "%s/vmm.log", tdir);
    if ((r = kiln_mkdirs(tdir)) < 0 ||
        (r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ? -errno : 0) < 0 ||
        (r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qm) < 0 ? -errno : 0) < 0) {
        snprintf(err, errlen, "setting up the template VM: %s", strerror(-r));
        goto out;
    }
    r = -EIO;
    build_argv(q, &a, VM_TEMPLATE, 0, q->pub.cfg->vm_memory_mb, tdir);
    int fds[2] = {sv[1], qm[1]};
    pid_t pid = kiln_vmm_fork(a.v, fds, 2, log);
    if (pid < 0) {
        snprintf(err, errlen, "starting %s: %s", a.v[0], strerror((int)-pid));
        goto out;
    }
    __atomic_store_n(&q->template_pid, pid, __ATOMIC_SEQ_CST);
    close(sv[1]);
    close(qm[1]);
    sv[1] = qm[1] = -1;
    if (kiln_vmm_hello(sv[0]) < 0) {
        snprintf(err, errlen, "could not greet the template VM's agent");
        goto kill;
    }
    if (wait_ready(sv[0], kiln_mono_ms() + 180000, err, errlen) < 0)
        goto kill;
    f = fdopen(qm[0], "r+");
    if (f == NULL) {
        snprintf(err, errlen, "QMP: fdopen: %s", strerror(errno));
        goto kill;
    }
    qm[0] = -1;
    char greeting[4096];
    json_t *st = NULL;
    snprintf(uri, sizeof(uri), "exec:cat > %s/snap.state", q->dir);
    if (fgets(greeting, sizeof(greeting), f) == NULL ||
        qmp(f, NULL, "qmp_capabilities", NULL) < 0 ||
        qmp(f, NULL, "migrate-set-capabilities",
            json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "x-ignore-shared", "state", 1)) < 0 ||
        qmp(f, NULL, "migrate", json_pack("{s:s}", "uri", uri)) < 0) {
        snprintf(err, errlen, "QMP: the template VM refused to save its state");
        goto kill;
    }
    snprintf(err, errlen, "QMP: saving the template VM's state did not complete");
    for (int64_t deadline = kiln_mono_ms() + 60000; kiln_mono_ms() < deadline;) {
        if (qmp(f, &st, "query-migrate", NULL) < 0) {
            snprintf(err, errlen, "QMP: query-migrate failed");
            break;
        }
        json_t *ret = json_object_get(st, "return");
        const char *status = json_string_value(json_object_get(ret, "status"));
        int done = status != NULL && strcmp(status, "completed") == 0;
        int failed = status != NULL && (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0);
        if (failed) {
            const char *why = json_string_value(json_object_get(ret, "error-desc"));
            snprintf(err, errlen, "QMP: saving the template VM's state %s: %s", status, why ? why : "?");
        }
        json_decref(st);
        if (done) {
            err[0] = '\0';
            r = 0;
            break;
        }
        if (failed)
            break;
        usleep(20000);
    }
    qmp(f, NULL, "quit", NULL);
kill:
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    __atomic_store_n(&q->template_pid, 0, __ATOMIC_SEQ_CST);
out:
    if (f != NULL)
        fclose(f);
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        if (qm[i] >= 0)
            close(qm[i]);
    }
    kiln_argv_free(&a);
    kiln_rm_rf(tdir);
    return r;
}

static int snap_make(struct kiln_backend *b, char *err, size_t errlen)
{
    return make_snapshot((struct qemu *)b, err, errlen);
}

/* The snapshot, and the directories of VMs still there when the worker
 * stops (their VMMs die with it: PR_SET_PDEATHSIG). */
static void qemu_free(struct kiln_backend *b)
{
    struct qemu *q = (struct qemu *)b;
    kiln_rm_rf(q->dir);
    close(q->lock_fd);
    free(q);
}

/* ---- sandboxes --------------------------------------------------------- */

static int qemu_spawn(struct kiln_backend *b, const char *profile, const struct kiln_spawn_opts *o,
                      struct kiln_sandbox **out, char *err, size_t errlen)
{
    struct qemu *q = (struct qemu *)b;
    const struct kiln_sandbox_opts *cfg = b->cfg;
    int sv[2] = {-1, -1}, qm[2] = {-1, -1}, r;
    struct kiln_argv a = {0};
    (void)profile;

    int net = o != NULL && o->net, own_size;
    int mux = net || (o != NULL && o->inbound); /* a way out, or in */
    int64_t ram = kiln_vm_ram_mb(cfg, o != NULL ? o->memory_mb : 0, &own_size);
    enum vm_mode mode = q->snap.state == KILN_SNAP_READY && !mux && !own_size ? VM_RESTORE : VM_COLD;
    struct kiln_vmm_sandbox *sb = calloc(1, sizeof(*sb));
    if (sb == NULL) {
        snprintf(err, errlen, "qemu: out of memory");
        return -ENOMEM;
    }
    sb->extra_fd = -1;
    snprintf(sb->dir, sizeof(sb->dir), "%s/%u", q->dir, ++q->spawned);
    if ((r = kiln_mkdirs(sb->dir)) < 0) {
        snprintf(err, errlen, "qemu: mkdir %s: %s", sb->dir, strerror(-r));
        free(sb);
        return r;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
        (mode == VM_RESTORE && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qm) < 0)) {
        r = -errno;
        snprintf(err, errlen, "qemu: socketpair: %s", strerror(errno));
        goto fail;
    }
    build_argv(q, &a, mode, mux, ram, sb->dir);
    if (mux) {
        /* no network device: the job's connections are streams of the
         * egress mux on a second port, each carried by the worker to this
         * sandbox's egress proxy socket (the runner opens it per job); a
         * session's exposed ports are reached by streams the worker opens
         * on it. These VMs boot cold, so the port is descriptor 4. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qm) < 0) {
            r = -errno;
            snprintf(err, errlen, "qemu: socketpair: %s", strerror(errno));
            goto fail;
        }
        kiln_argv_add(&a, "-chardev");
        kiln_argv_add(&a, "socket,id=egress,fd=4");
        kiln_argv_add(&a, "-device");
        kiln_argv_add(&a, "virtserialport,chardev=egress,name=%s", KILN_MUX_PORT);
        if (net)
            sb->pub.proxy_dir = sb->dir;
    }
    int fds[2] = {sv[1], qm[1]};
    if ((r = kiln_vmm_start(b, sb, a.v, fds, mode == VM_RESTORE || mux ? 2 : 1, err, errlen)) < 0)
        goto fail;
    kiln_argv_free(&a);
    close(sv[1]);
    sv[1] = -1;
    if (mux) {
        char path[600];
        close(qm[1]);
        qm[1] = -1;
        snprintf(path, sizeof(path), "%s/p.sock", sb->dir);
        int fd = qm[0];
        qm[0] = -1;
        if (kiln_vm_egress_open(b->loop, fd, path, &sb->egress) < 0)
            kiln_vmm_kill(&sb->pub); /* on_exit follows: the job is retried */
    }
    if (mode == VM_RESTORE) {
        /* queued before QEMU reads them: it answers in order */
        char cmds[1024];
        int n = snprintf(cmds, sizeof(cmds),
                         "{\"execute\":\"qmp_capabilities\"}\n"
                         "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
                         "[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}\n"
                         "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"exec:cat %s/snap.state\"}}\n",
                         q->dir);
        close(qm[1]);
        if (write(qm[0], cmds, (size_t)n) != n)
            kiln_vmm_kill(&sb->pub); /* on_exit follows */
        sb->extra_fd = qm[0];
    }
    if (kiln_vmm_hello(sv[0]) < 0)
        kiln_vmm_kill(&sb->pub);
    sb->pub.fd = sv[0];
    sb->pub.capacity_mb = ram - KILN_VM_RESERVE_MB;
    *out = &sb->pub;
    return 0;
fail:
    kiln_argv_free(&a);
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        if (qm[i] >= 0)
            close(qm[i]);
    }
    kiln_rm_rf(sb->dir);
    free(sb);
    return r;
}

static void qemu_destroy(struct kiln_backend *b)
{
    struct qemu *q = (struct qemu *)b;
    pid_t pid = __atomic_load_n(&q->template_pid, __ATOMIC_SEQ_CST);
    if (pid > 0)
        kill(pid, SIGKILL); /* the snapshot thread gives up at once */
    if (kiln_snap_release(&q->snap))
        qemu_free(b);
}

/* A connection in to a port of the guest's: a stream of its mux. */
static int qemu_port_open(struct kiln_sandbox *pub, int port, int *connected)
{
    struct kiln_vmm_sandbox *sb = (struct kiln_vmm_sandbox *)pub;
    *connected = 1;
    return sb->egress != NULL ? kiln_vm_egress_inbound(sb->egress, port) : -ENOTSUP;
}

static const struct kiln_backend_ops qemu_ops = {
    .name = "qemu",
    .spawn = qemu_spawn,
    .kill = kiln_vmm_kill,
    .limit = kiln_vmm_limit,
    .port_open = qemu_port_open,
    .destroy = qemu_destroy,
    .agent_limits = 1,
};

int kiln_backend_qemu_new(uv_loop_t *loop, const struct kiln_sandbox_opts *cfg,
                          struct kiln_backend **out, char *err, size_t errlen)
{
    int r;
    if ((r = kiln_vm_files_check(cfg, "qemu", err, errlen)) < 0)
        return r;
    if (!kiln_vmm_installed(cfg->qemu)) {
        snprintf(err, errlen, "qemu: %s is not installed or does not run", cfg->qemu);
        return -ENOENT;
    }
    struct qemu *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errlen, "qemu: out of memory");
        return -ENOMEM;
    }
    char why[256] = "";
    int kvm = kiln_kvm_usable(why, sizeof(why));
    if (strcmp(cfg->vm_accel, "kvm") == 0 && !kvm) {
        snprintf(err, errlen, "qemu: --vm-accel kvm, but %s", why);
        free(q);
        return -ENODEV;
    }
    q->accel = strcmp(cfg->vm_accel, "tcg") == 0 || !kvm ? "tcg" : "kvm";
    q->tsc_khz = kiln_tsc_khz();
    if ((r = q->lock_fd = kiln_vmm_state_dir(cfg->state_dir, "qemu", q->dir, sizeof(q->dir), err, errlen)) < 0) {
        free(q);
        return r;
    }
    q->pub.ops = &qemu_ops;
    q->pub.loop = loop;
    q->pub.cfg = cfg;
    kiln_info("qemu: microvm with %s (%s), %lld MiB and %lld vCPU per VM", q->accel,
              kvm ? "/dev/kvm runs VMs here" : why, (long long)cfg->vm_memory_mb, (long long)cfg->vm_vcpus);
    if (!kvm)
        kiln_info("qemu: (TCG is software emulation: correct, much slower than KVM)");
    if (!cfg->vm_cold) {
        q->snap = (struct kiln_snap){.b = &q->pub, .make = snap_make, .free_backend = qemu_free};
        kiln_snap_start(&q->snap);
    }
    *out = &q->pub;
    return 0;
}
