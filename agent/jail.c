/*
 * The jail's root, built from inside fresh user, mount, pid, net, ipc and uts
 * namespaces (the worker cloned them and wrote the uid maps). It reads top
 * to bottom as the order of confinement:
 *
 *   private mounts -> the runtime image (or a tmpfs root with the host's
 *   /usr and our /etc) -> /dev (+ its proxy socket dir) -> /proc -> /tmp,
 *   /work -> pivot_root ->
 *   read-only root -> hostname -> lo
 *
 * Capabilities, no_new_privs and seccomp come last, per job, in exec.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"
#include "wire/proto.h"

static char *jerr;
static size_t jerrlen;

static int fail(const char *what, const char *path)
{
    snprintf(jerr, jerrlen, "jail: %s %s: %s", what, path ? path : "", strerror(errno));
    return -1;
}

/* Read-only (or not) bind of `src` onto `dst`, keeping the flags the
 * kernel locks on the source mount (remounting without them fails). */
static int bind_mount(const char *src, const char *dst, unsigned long extra)
{
    struct statvfs st;
    unsigned long keep = 0;
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
        return fail("bind", dst);
    if (statvfs(src, &st) == 0) {
        if (st.f_flag & ST_NOSUID) keep |= MS_NOSUID;
        if (st.f_flag & ST_NODEV) keep |= MS_NODEV;
        if (st.f_flag & ST_NOEXEC) keep |= MS_NOEXEC;
        if (st.f_flag & ST_NOATIME) keep |= MS_NOATIME;
        if (st.f_flag & ST_RELATIME) keep |= MS_RELATIME;
    }
    if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | keep | extra, NULL) < 0)
        return fail("remount", dst);
    return 0;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail("create", path);
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : fail("write", path);
}

/* Make a mount point for `src` at `dst`: a dir for a dir, a file otherwise. */
static int mountpoint_for(const char *src, const char *dst)
{
    struct stat st;
    if (stat(src, &st) < 0)
        return 1; /* absent on this host: skip */
    if (S_ISDIR(st.st_mode))
        return mkdir(dst, 0755) < 0 && errno != EEXIST ? fail("mkdir", dst) : 0;
    return write_file(dst, "");
}

static int mount_private(void)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return fail("make-private", "/");
    return 0;
}

/* The runtime image, read-only, as the root: it has its own /etc and the
 * mount points; only /dev, /proc, /tmp and /work go on top. */
static int mount_image(const char *mnt, int root_fd)
{
    /* root_fd is a detached copy of the image (open_tree by the worker) */
    if (syscall(SYS_move_mount, root_fd, "", AT_FDCWD, mnt, 0x00000004 /* F_EMPTY_PATH */) < 0)
        return fail("attach image", mnt);
    close(root_fd);
    if (mount(NULL, mnt, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        return fail("remount image read-only", mnt);
    if (chdir(mnt) < 0)
        return fail("chdir", mnt);
    return 0;
}

static int mount_root(const char *mnt)
{
    if (mount("kiln-root", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m") < 0)
        return fail("mount tmpfs root", mnt);
    if (chdir(mnt) < 0)
        return fail("chdir", mnt);
    static const char *dirs[] = {"usr", "etc", "dev", "proc", "tmp", "work", "root", "run"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (mkdir(dirs[i], 0755) < 0)
            return fail("mkdir", dirs[i]);
    return 0;
}

/* /usr read-only; /bin, /lib... as the host has them (links on merged-/usr). */
static int mount_system(void)
{
    static const char *tops[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
    char target[256];
    if (bind_mount("/usr", "usr", MS_RDONLY | MS_NOSUID | MS_NODEV) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
        char src[64];
        struct stat st;
        snprintf(src, sizeof(src), "/%s", tops[i]);
        if (lstat(src, &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(src, target, sizeof(target) - 1);
            if (n < 0)
                return fail("readlink", src);
            target[n] = '\0';
            if (symlink(target, tops[i]) < 0)
                return fail("symlink", tops[i]);
        } else if (S_ISDIR(st.st_mode)) {
            if (mkdir(tops[i], 0755) < 0 || bind_mount(src, tops[i], MS_RDONLY | MS_NOSUID | MS_NODEV) < 0)
                return fail("bind", src);
        }
    }
    return 0;
}

/* A minimal /etc of our own, plus the host's read-only pieces programs
 * need to start (alternatives links, the loader cache, CA certificates). */
static int mount_etc(void)
{
    static const struct { const char *name, *text; } files[] = {
        {"etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                       "kiln:x:1000:1000:kiln job:/work:/bin/sh\n"
                       "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"},
        {"etc/group", "root:x:0:\nkiln:x:1000:\nnogroup:x:65534:\n"},
        {"etc/hosts", "127.0.0.1 localhost kiln\n::1 localhost ip6-localhost\n"},
        {"etc/hostname", "kiln\n"},
        {"etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"},
        {"etc/resolv.conf", ""},
    };
    static const char *binds[] = {"alternatives", "ld.so.cache", "ssl", "localtime", "mime.types"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (write_file(files[i].name, files[i].text) < 0)
            return -1;
    for (size_t i = 0; i < sizeof(binds) / sizeof(binds[0]); i++) {
        char src[64], dst[64];
        snprintf(src, sizeof(src), "/etc/%s", binds[i]);
        snprintf(dst, sizeof(dst), "etc/%s", binds[i]);
        int r = mountpoint_for(src, dst);
        if (r < 0)
            return -1;
        if (r == 0 && bind_mount(src, dst, MS_RDONLY | MS_NOSUID | MS_NODEV) < 0)
            return -1;
    }
    return 0;
}

static int mount_shm(void)
{
    if (mount("kiln-shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m") < 0)
        return fail("mount tmpfs", "/dev/shm");
    return 0;
}

static int mount_dev(void)
{
    static const char *nodes[] = {"null", "zero", "full", "random", "urandom"};
    static const struct { const char *name, *target; } links[] = {
        {"dev/fd", "/proc/self/fd"}, {"dev/stdin", "/proc/self/fd/0"},
        {"dev/stdout", "/proc/self/fd/1"}, {"dev/stderr", "/proc/self/fd/2"},
    };
    if (mount("kiln-dev", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0)
        return fail("mount tmpfs", "/dev");
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        char src[64], dst[64];
        snprintf(src, sizeof(src), "/dev/%s", nodes[i]);
        snprintf(dst, sizeof(dst), "dev/%s", nodes[i]);
        if (write_file(dst, "") < 0 || bind_mount(src, dst, MS_NOSUID | MS_NOEXEC) < 0)
            return -1;
    }
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
        if (symlink(links[i].target, links[i].name) < 0)
            return fail("symlink", links[i].name);
    if (mkdir("dev/shm", 01777) < 0)
        return fail("mkdir", "/dev/shm");
    return mount_shm();
}

static int mount_proc(void)
{
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return fail("mount", "/proc");
    return 0;
}

/* The kernel's per-user counts in this user namespace: what any one uid
 * of the sandbox may hold. They are also charged to the namespace's owner
 * on the host (the sandbox's own host uid), whose limits are the host's;
 * these keep one sandbox well inside them. */
static int limit_user_counts(void)
{
    static const struct { const char *name, *value; } counts[] = {
        {"proc/sys/user/max_inotify_instances", "32"},
        {"proc/sys/user/max_inotify_watches", "16384"},
        {"proc/sys/user/max_fanotify_groups", "0"},
        {"proc/sys/user/max_fanotify_marks", "0"},
    };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        int fd = open(counts[i].name, O_WRONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            continue; /* a kernel without that count */
        if (fd < 0)
            return fail("open", counts[i].name);
        ssize_t n = write(fd, counts[i].value, strlen(counts[i].value));
        close(fd);
        if (n < 0)
            return fail("write", counts[i].name);
    }
    return 0;
}

static int mount_scratch(unsigned tmp_mb)
{
    char opts[128];
    snprintf(opts, sizeof(opts), "mode=1777,size=%um", tmp_mb);
    if (mount("kiln-tmp", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return fail("mount tmpfs", "/tmp");
    snprintf(opts, sizeof(opts), "mode=0755,uid=%d,gid=%d,size=%um", KILN_JOB_UID,
             KILN_JOB_GID, tmp_mb);
    if (mount("kiln-work", "work", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return fail("mount tmpfs", "/work");
    return 0;
}

static int pivot(void)
{
    /* With new and old root the same directory, the old root ends up
     * stacked on "/" and one lazy unmount removes it (pivot_root(2)). */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return fail("pivot_root", NULL);
    if (umount2(".", MNT_DETACH) < 0)
        return fail("umount old root", NULL);
    if (chdir("/") < 0)
        return fail("chdir", "/");
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        return fail("remount read-only", "/");
    return 0;
}

static int set_names(void)
{
    if (sethostname("kiln", 4) < 0 || setdomainname("kiln", 4) < 0)
        return fail("sethostname", NULL);
    return 0;
}

/* The new network namespace has only lo, and it starts down. */
static int loopback_up(void)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail("socket", NULL);
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
    return r < 0 ? fail("bring up", "lo") : 0;
}

/* This sandbox's own directory of the worker's egress proxy sockets,
 * read-only, at /dev/kiln-proxy: it sees no other sandbox's. */
static int mount_proxy_dir(const char *dir)
{
    if (dir == NULL)
        return 0;
    if (mkdir("dev/kiln-proxy", 0755) < 0)
        return fail("mkdir", "/dev/kiln-proxy");
    if (bind_mount(dir, "dev/kiln-proxy", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC) < 0)
        return -1;
    /* the worker's egress CA (HTTPS with secrets) in the image's bundle,
     * for programs that read no variable */
    struct stat st; /* the image's bundle as a file of its own: a link would resolve on the host */
    if (stat("dev/kiln-proxy/" KILN_CA_BUNDLE_FILE, &st) == 0 && lstat(KILN_SYSTEM_CA_BUNDLE, &st) == 0 &&
        S_ISREG(st.st_mode))
        return bind_mount("dev/kiln-proxy/" KILN_CA_BUNDLE_FILE, KILN_SYSTEM_CA_BUNDLE,
                          MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
    return 0;
}

int kiln_jail_enter(const char *mnt, int root_fd, const char *proxy_dir, unsigned tmp_mb,
                    char *err, size_t errlen)
{
    jerr = err;
    jerrlen = errlen;
    if (mount_private() < 0)
        return -1;
    if (root_fd >= 0 ? mount_image(mnt, root_fd) < 0
                     : (mount_root(mnt) < 0 || mount_system() < 0 || mount_etc() < 0))
        return -1;
    if (mount_dev() < 0 ||
        mount_proxy_dir(proxy_dir) < 0 ||
        mount_proc() < 0 ||
        limit_user_counts() < 0 ||
        mount_scratch(tmp_mb) < 0 ||
        pivot() < 0 ||
        set_names() < 0 ||
        loopback_up() < 0)
        return -1;
    return 0;
}

/* A sandbox forked from a template jail (zygote.c), in its own pid, mount
 * and network namespaces: what the template had writable or per-sandbox is
 * replaced, so nothing written by one sandbox is seen by another. */
int kiln_jail_fork_scratch(unsigned tmp_mb, char *err, size_t errlen)
{
    jerr = err;
    jerrlen = errlen;
    /* a template has no proxy directory: the mount would be locked here,
     * in a user namespace below the template's, and could not be removed */
    if (mount_shm() < 0 || mount_proc() < 0 || limit_user_counts() < 0 || mount_scratch(tmp_mb) < 0)
        return -1;
    return loopback_up();
}

/* Root inside the sandbox becomes the job's unprivileged uid, with no
 * capabilities left, not even in the bounding set. */
int kiln_drop_privileges(char *err, size_t errlen)
{
    jerr = err;
    jerrlen = errlen;
    if (getuid() != 0)
        return 0; /* already unprivileged (agent started as a plain user) */
    for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return fail("drop capability", NULL);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return fail("clear ambient capabilities", NULL);
    if (setgroups(0, NULL) < 0)
        return fail("setgroups", NULL);
    if (setresgid(KILN_JOB_GID, KILN_JOB_GID, KILN_JOB_GID) < 0)
        return fail("setresgid", NULL);
    if (setresuid(KILN_JOB_UID, KILN_JOB_UID, KILN_JOB_UID) < 0)
        return fail("setresuid", NULL);
    return 0;
}

int kiln_jail_enter_vm(const char *newroot, unsigned tmp_mb, char *err, size_t errlen)
{
    jerr = err;
    jerrlen = errlen;
    if (chdir(newroot) < 0)
        return fail("chdir", newroot);
    if (mount_dev() < 0 || mount_proc() < 0 || mount_scratch(tmp_mb) < 0)
        return -1;
    /* /run: the agent's own (the job's cgroup), not the job's */
    if (mount("kiln-run", "run", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m") < 0)
        return fail("mount tmpfs", "/run");
    /* the initramfs cannot be pivoted away: the new root moves over it */
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
        return fail("move root", newroot);
    if (chroot(".") < 0 || chdir("/") < 0)
        return fail("chroot", newroot);
    if (mkdir("/run/kiln", 0700) < 0 && errno != EEXIST)
        return fail("mkdir", "/run/kiln");
    return set_names() < 0 || loopback_up() < 0 ? -1 : 0;
}
