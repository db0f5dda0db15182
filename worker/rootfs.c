#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
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
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -errno;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
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
