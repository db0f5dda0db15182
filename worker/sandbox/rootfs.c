#include "sandbox/rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <linux/loop.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static int by_name(const FTSENT **a, const FTSENT **b)
{
    return strcmp((*a)->fts_name, (*b)->fts_name);
}

static int hash_file(const char *path, unsigned char out[32], unsigned *outlen)
{
    unsigned char buf[1 << 16];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        EVP_DigestUpdate(ctx, buf, (size_t)n);
    int r = n < 0 ? -errno : 0;
    EVP_DigestFinal_ex(ctx, out, outlen);
    EVP_MD_CTX_free(ctx);
    close(fd);
    return r;
}

int kiln_rootfs_digest(const char *dir, char hex[KILN_DIGEST_HEX], char *err, size_t errlen)
{
    char *paths[] = {(char *)dir, NULL};
    size_t base = strlen(dir);
    unsigned char md[32];
    unsigned mdlen;
    int r = 0;

    FTS *fts = fts_open(paths, FTS_PHYSICAL | FTS_NOCHDIR, by_name);
    if (fts == NULL) {
        r = -errno; /* before snprintf() may change it */
        snprintf(err, errlen, "%s: %s", dir, strerror(-r));
        return r;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        snprintf(err, errlen, "%s: out of memory", dir);
        fts_close(fts);
        return -ENOMEM;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    FTSENT *e;
    while ((e = fts_read(fts)) != NULL) {
        char line[4096 + 128];
        const char *rel = e->fts_path + base;
        int n;
        switch (e->fts_info) {
        case FTS_D:
            n = snprintf(line, sizeof(line), "%s/\td\t%o\n", rel, (unsigned)(e->fts_statp->st_mode & 07777));
            break;
        case FTS_F:
            if ((r = hash_file(e->fts_accpath, md, &mdlen)) < 0) {
                snprintf(err, errlen, "%s: %s", e->fts_path, strerror(-r));
                goto out;
            }
            n = snprintf(line, sizeof(line), "%s\tf\t%o\t%lld\t", rel,
                         (unsigned)(e->fts_statp->st_mode & 07777), (long long)e->fts_statp->st_size);
            for (unsigned i = 0; i < mdlen; i++)
                n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x", md[i]);
            n += snprintf(line + n, sizeof(line) - (size_t)n, "\n");
            break;
        case FTS_SL:
        case FTS_SLNONE: {
            char target[4096];
            ssize_t t = readlink(e->fts_accpath, target, sizeof(target) - 1);
            target[t > 0 ? t : 0] = '\0';
            n = snprintf(line, sizeof(line), "%s\tl\t%s\n", rel, target);
            break;
        }
        case FTS_DP:
            continue;
        case FTS_DNR:
        case FTS_ERR:
        case FTS_NS:
            snprintf(err, errlen, "%s: %s", e->fts_path, strerror(e->fts_errno));
            r = -e->fts_errno;
            goto out;
        default: /* devices, fifos, sockets: named, never read */
            n = snprintf(line, sizeof(line), "%s\t?\t%o\n", rel, (unsigned)e->fts_statp->st_mode);
            break;
        }
        EVP_DigestUpdate(ctx, line, (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1));
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
out:
    EVP_MD_CTX_free(ctx);
    fts_close(fts);
    return r;
}

/* ---- a squashfs image as the root -------------------------------------- */

/* A free loop device bound to `file`, read-only, detached by the kernel
 * once nothing holds it: the returned descriptor holds it until the mount
 * does. Returns that descriptor or -errno. */
static int loop_attach(int file, char *dev, size_t devlen)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return -errno;
    int r = -EBUSY;
    for (int tries = 0; tries < 16 && r == -EBUSY; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) {
            r = -errno;
            break;
        }
        snprintf(dev, devlen, "/dev/loop%d", n);
        int fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            r = -errno;
            break;
        }
        struct loop_config lc = {.fd = (unsigned)file,
                                 .info = {.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR}};
        r = ioctl(fd, LOOP_CONFIGURE, &lc) == 0 ? fd : -errno; /* EBUSY: taken meanwhile */
        if (r < 0)
            close(fd);
    }
    close(ctl);
    return r;
}

int kiln_rootfs_mount(const char *image, const char *dir, char *err, size_t errlen)
{
    char dev[32];
    int file = open(image, O_RDONLY | O_CLOEXEC), r;
    if (file < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open %s: %s", image, strerror(errno));
        return r;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        r = -errno;
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        close(file);
        return r;
    }
    int loop = loop_attach(file, dev, sizeof(dev));
    if (loop < 0) {
        r = loop;
        snprintf(err, errlen, "no loop device for %s: %s", image, strerror(-r));
    } else if (mount(dev, dir, "squashfs", MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot mount %s (%s) as squashfs on %s: %s", image, dev, dir, strerror(errno));
    } else {
        r = 0;
    }
    if (loop >= 0)
        close(loop); /* unmounted, or never mounted: the device is freed */
    close(file);
    if (r < 0)
        rmdir(dir);
    return r;
}

void kiln_rootfs_unmount(const char *dir)
{
    umount2(dir, MNT_DETACH); /* the loop device goes with it (autoclear) */
    rmdir(dir);
}
