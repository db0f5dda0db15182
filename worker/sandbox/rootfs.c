#include "sandbox/rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <linux/loop.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static int by_name(const FTSENT **a, const FTSENT **b)
{
    return strcmp((*a)->fts_name, (*b)->fts_name);
}

static int hash_file(const char *path, unsigned char out[32])
{
    unsigned char buf[1 << 16];
    unsigned outlen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        close(fd);
        return -ENOMEM;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        EVP_DigestUpdate(ctx, buf, (size_t)n);
    int r = n < 0 ? -errno : 0;
    EVP_DigestFinal_ex(ctx, out, &outlen);
    EVP_MD_CTX_free(ctx);
    close(fd);
    return r;
}

/* One entry of the tree, in the digest's order: its line, and for a file
 * the path whose bytes are hashed (by any of the threads) before the line
 * is finished. */
struct entry {
    char *line;      /* what the digest takes of it (a file's: up to its size) */
    char *path;      /* a file's, or NULL */
    unsigned char md[32];
    int r;           /* a file's hash_file() result */
};

struct files {
    struct entry *v;
    size_t n;
    size_t next;     /* the next entry a thread takes (atomic) */
};

static void *hash_files(void *arg)
{
    struct files *f = arg;
    size_t i;
    while ((i = __atomic_fetch_add(&f->next, 1, __ATOMIC_RELAXED)) < f->n)
        if (f->v[i].path != NULL)
            f->v[i].r = hash_file(f->v[i].path, f->v[i].md);
    return NULL;
}

/* Every entry under `dir` in name order, each with its line; files' bytes
 * not read yet. Returns 0, or a negative errno with why in `err`. */
static int walk(const char *dir, struct files *f, char *err, size_t errlen)
{
    char *paths[] = {(char *)dir, NULL};
    size_t base = strlen(dir), cap = 0;
    int r = 0;
    FTS *fts = fts_open(paths, FTS_PHYSICAL | FTS_NOCHDIR, by_name);
    if (fts == NULL) {
        r = -errno; /* before snprintf() may change it */
        snprintf(err, errlen, "%s: %s", dir, strerror(-r));
        return r;
    }
    FTSENT *e;
    while ((e = fts_read(fts)) != NULL) {
        char line[4096 + 128];
        const char *rel = e->fts_path + base;
        int file = 0;
        switch (e->fts_info) {
        case FTS_D:
            snprintf(line, sizeof(line), "%s/\td\t%o\n", rel, (unsigned)(e->fts_statp->st_mode & 07777));
            break;
        case FTS_F:
            file = 1;
            snprintf(line, sizeof(line), "%s\tf\t%o\t%lld\t", rel, (unsigned)(e->fts_statp->st_mode & 07777),
                     (long long)e->fts_statp->st_size);
            break;
        case FTS_SL:
        case FTS_SLNONE: {
            char target[4096];
            ssize_t t = readlink(e->fts_accpath, target, sizeof(target) - 1);
            target[t > 0 ? t : 0] = '\0';
            snprintf(line, sizeof(line), "%s\tl\t%s\n", rel, target);
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
            snprintf(line, sizeof(line), "%s\t?\t%o\n", rel, (unsigned)e->fts_statp->st_mode);
            break;
        }
        if (f->n == cap) {
            struct entry *v = realloc(f->v, (cap = cap ? 2 * cap : 4096) * sizeof(*v));
            if (v == NULL)
                goto nomem;
            f->v = v;
        }
        struct entry *en = &f->v[f->n];
        *en = (struct entry){.line = strdup(line), .path = file ? strdup(e->fts_accpath) : NULL};
        f->n++;
        if (en->line == NULL || (file && en->path == NULL))
            goto nomem;
    }
out:
    fts_close(fts);
    return r;
nomem:
    snprintf(err, errlen, "%s: out of memory", dir);
    r = -ENOMEM;
    goto out;
}

int kiln_rootfs_digest(const char *dir, char hex[KILN_DIGEST_HEX], char *err, size_t errlen)
{
    struct files f = {0};
    unsigned char md[32];
    unsigned mdlen = 0;
    int r = walk(dir, &f, err, errlen);
    /* the files' bytes, on as many threads as there are CPUs (at most 8):
     * reading a 2 GB image is most of a worker's start */
    if (r == 0) {
        pthread_t t[8];
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t nt = 0, want = cpus > 8 ? 8 : cpus > 1 ? (size_t)cpus - 1 : 0;
        while (nt < want && pthread_create(&t[nt], NULL, hash_files, &f) == 0)
            nt++;
        hash_files(&f);
        while (nt > 0)
            pthread_join(t[--nt], NULL);
    }
    EVP_MD_CTX *ctx = r == 0 ? EVP_MD_CTX_new() : NULL;
    if (r == 0 && ctx == NULL) {
        snprintf(err, errlen, "%s: out of memory", dir);
        r = -ENOMEM;
    }
    if (ctx != NULL)
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; r == 0 && i < f.n; i++) {
        struct entry *en = &f.v[i];
        EVP_DigestUpdate(ctx, en->line, strlen(en->line));
        if (en->path == NULL)
            continue;
        if (en->r < 0) {
            r = en->r;
            snprintf(err, errlen, "%s: %s", en->path, strerror(-r));
            break;
        }
        char h[2 * 32 + 2];
        for (unsigned k = 0; k < 32; k++)
            snprintf(h + 2 * k, 3, "%02x", en->md[k]);
        h[64] = '\n';
        h[65] = '\0';
        EVP_DigestUpdate(ctx, h, 65);
    }
    if (r == 0) {
        EVP_DigestFinal_ex(ctx, md, &mdlen);
        for (unsigned i = 0; i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    EVP_MD_CTX_free(ctx);
    for (size_t i = 0; i < f.n; i++) {
        free(f.v[i].line);
        free(f.v[i].path);
    }
    free(f.v);
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
