#include "core/image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "base/sysutil.h"
#include "core/config.h"
#include "core/pool.h"
#include "sandbox/backend.h"
#include "sandbox/rootfs.h"

/* The loaded plugins, each to be checked again against another image:
 * the same code, availability and toolchain of its own. */
static int plugins_view(const struct kiln_plugins *all, struct kiln_plugins *out)
{
    out->n = 0;
    if ((out->v = calloc(all->n ? all->n : 1, sizeof(*out->v))) == NULL)
        return -1;
    for (size_t i = 0; i < all->n; i++)
        out->v[i] = (struct kiln_loaded){.dl = all->v[i].dl, .p = all->v[i].p, .path = all->v[i].path};
    out->n = all->n;
    return 0;
}

static void plugins_view_free(struct kiln_plugins *view)
{
    for (size_t i = 0; i < view->n; i++) {
        free(view->v[i].unavailable);
        free(view->v[i].toolchain);
    }
    free(view->v);
    view->v = NULL;
    view->n = 0;
}

int kiln_image_init(struct kiln_image *img, const struct kiln_config *cfg, size_t index, const char *name,
                    const char *path, const char *digest, const char *preload,
                    const struct kiln_plugins *all, char *err, size_t errlen)
{
    struct stat st;
    snprintf(img->name, sizeof(img->name), "%s", name);
    img->index = index;
    img->preload = preload;
    img->root = path;
    img->vm_image = index == 0 ? cfg->sb.vm_image : NULL; /* another's: its squashfs, below */
    /* the default's backend keeps --state-dir; another's a directory of
     * its own there, so what backends name by the worker's pid is apart */
    if ((index == 0 ? snprintf(img->state, sizeof(img->state), "%s", cfg->sb.state_dir)
                    : snprintf(img->state, sizeof(img->state), "%s/i%zu", cfg->sb.state_dir, index)) >=
        (int)sizeof(img->state)) {
        snprintf(err, errlen, "image %s: --state-dir is too long", name);
        return -1;
    }
    if (path != NULL && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        /* a squashfs: mounted for the worker's life; its tree is the root */
        /* image-<pid> (the default), image-<pid>-<index>: what the jail
         * sweeps when the worker is gone */
        int n = index == 0 ? snprintf(img->mount, sizeof(img->mount), "%s/image-%d", cfg->sb.state_dir, (int)getpid())
                           : snprintf(img->mount, sizeof(img->mount), "%s/image-%d-%zu", cfg->sb.state_dir,
                                      (int)getpid(), index);
        if (n >= (int)sizeof(img->mount)) {
            snprintf(err, errlen, "image %s: --state-dir is too long", name);
            return -1;
        }
        if (kiln_mkdirs(cfg->sb.state_dir) < 0 || kiln_rootfs_mount(path, img->mount, err, errlen) < 0) {
            if (err[0] == '\0')
                snprintf(err, errlen, "cannot create --state-dir %s", cfg->sb.state_dir);
            img->mount[0] = '\0';
            return -1;
        }
        kiln_info("image %s: %s mounted on %s", name, path, img->mount);
        img->root = img->mount;
        if (index > 0)
            img->vm_image = path; /* a VM's root is the squashfs itself */
    }
    if (img->root != NULL) {
        char hex[KILN_DIGEST_HEX];
        char why[256];
        if (kiln_rootfs_digest(img->root, hex, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "image %s: %s", name, why);
            return -1;
        }
        if (digest == NULL || strcmp(hex, digest) != 0) {
            snprintf(err, errlen, "image %s (%s) has digest %s, not the expected %s: refusing to run it", name,
                     img->root, hex, digest ? digest : "(none given)");
            return -1;
        }
        kiln_info("image %s: %s verified (%.16s...)", name, img->root, hex);
    }
    if (plugins_view(all, &img->plugins) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    kiln_plugins_read_toolchains(&img->plugins, img->root);
    return 0;
}

int kiln_image_open(struct kiln_image *img, uv_loop_t *loop, const struct kiln_config *cfg, char *err,
                    size_t errlen)
{
    if (img->backend != NULL)
        return 0;
    if (img->failed != NULL) {
        snprintf(err, errlen, "%s", img->failed);
        return -1;
    }
    char why[512] = "";
    /* the worker's sandbox options as they are now (the egress CA is set
     * after the images are), with this image's root and state */
    img->sb = cfg->sb;
    img->sb.state_dir = img->state;
    img->sb.rootfs = (char *)img->root;
    img->sb.vm_image = (char *)img->vm_image;
    if (kiln_backend_open(loop, &img->sb, &img->backend, why, sizeof(why)) < 0) {
        img->backend = NULL;
        snprintf(err, errlen, "image %s: its sandboxes cannot start: %s", img->name, why);
        img->failed = strdup(err);
        kiln_error("%s", err);
        return -1;
    }
    /* the jail's sandboxes see this tree: a plugin whose program is not
     * in it is unavailable here (a VM's kernel finds out as it starts) */
    if (strcmp(img->backend->ops->name, "jail") == 0 &&
        kiln_plugins_check_programs(&img->plugins, img->root, img->index > 0) > 0 && img->index > 0) {
        /* another image may hold fewer languages by design: one line */
        char names[512];
        size_t off = 0;
        names[0] = '\0';
        for (size_t i = 0; i < img->plugins.n && off < sizeof(names); i++)
            if (img->plugins.v[i].unavailable != NULL)
                off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", off ? ", " : "",
                                        img->plugins.v[i].p->name);
        kiln_info("image %s: no toolchain for %s: their jobs on it are rejected", img->name, names);
    }
    if (kiln_pool_new(loop, cfg, img->backend, &img->plugins, img->name, img->preload, &img->pool) < 0) {
        img->pool = NULL; /* its jobs start cold */
        kiln_error("image %s: no warm pools: out of memory", img->name);
    }
    return 0;
}

struct kiln_image *kiln_image_find(struct kiln_image *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

void kiln_image_names(const struct kiln_image *v, size_t n, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", v[i].name);
}

void kiln_image_gauges(struct kiln_image *v, size_t n, FILE *out)
{
    struct kiln_pool *pools[n ? n : 1];
    fprintf(out, "# HELP kiln_image_jobs_total Jobs that chose each runtime image.\n"
                 "# TYPE kiln_image_jobs_total counter\n");
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "kiln_image_jobs_total{image=\"%s\"} %llu\n", v[i].name, (unsigned long long)v[i].jobs);
        pools[i] = v[i].pool;
    }
    fprintf(out, "# HELP kiln_image_open 1 once an image's sandboxes can start (made at its first job).\n"
                 "# TYPE kiln_image_open gauge\n");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "kiln_image_open{image=\"%s\"} %d\n", v[i].name, v[i].backend != NULL);
    kiln_pool_gauges(pools, n, out);
    /* the backends' own gauges: once, of the default's (their families
     * would repeat per image) */
    if (n > 0 && v[0].backend != NULL && v[0].backend->ops->gauges != NULL)
        v[0].backend->ops->gauges(v[0].backend, out);
}

void kiln_image_stop_pools(struct kiln_image *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kiln_pool_stop(v[i].pool);
}

void kiln_image_close(struct kiln_image *img)
{
    if (img->backend != NULL)
        img->backend->ops->destroy(img->backend);
    img->backend = NULL;
    if (img->mount[0] != '\0')
        kiln_rootfs_unmount(img->mount);
    img->mount[0] = '\0';
    plugins_view_free(&img->plugins);
    free(img->failed);
    img->failed = NULL;
}
