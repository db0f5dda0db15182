/*
 * The runtime images a worker serves: --rootfs is the one called default,
 * each --image NAME=PATH one more. A job picks one with `image: NAME`.
 * Each image is verified by its digest at start and has its own backend
 * (its sandboxes' root), plugins as they can run on it, warm pools and
 * templates. The default's backend and pools are made at start; another
 * image's when its first job asks for it, so an image nobody uses costs
 * nothing but its disk and a mount.
 */
#ifndef KILN_IMAGE_H
#define KILN_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "core/plugin_load.h"
#include "sandbox/options.h"

struct kiln_config;
struct kiln_backend;
struct kiln_pool;

struct kiln_image {
    char name[64];
    size_t index;                 /* 0: the default (--rootfs) */
    const char *preload;          /* what python's template imports on it */
    const char *root;             /* the tree its sandboxes see as /, or NULL: the host's /usr */
    const char *vm_image;         /* the squashfs a VM boots (the default's: --vm-image) */
    struct kiln_sandbox_opts sb;  /* its backend's options: the worker's, with
                                   * its own root and state directory */
    char mount[600];              /* where its squashfs is mounted, or "": a tree */
    char state[600];              /* its backends' state (the default: --state-dir) */
    struct kiln_plugins plugins;  /* every loaded plugin as it can run here */
    struct kiln_backend *backend; /* NULL until a job asks for it */
    struct kiln_pool *pool;
    char *failed;                 /* why its backend cannot open, once it could not */
    uint64_t jobs;                /* jobs that chose it */
};

/* Set up image `img` called `name` from `path` (a squashfs, mounted under
 * the state directory, or a tree; NULL: the host's /usr) and check that
 * its digest is `digest` (NULL: not checked, only with path NULL). Reads
 * which plugins can run on it (`all`: the loaded set). Returns 0, or -1
 * with why in `err`. */
int kiln_image_init(struct kiln_image *img, const struct kiln_config *cfg, size_t index, const char *name,
                    const char *path, const char *digest, const char *preload,
                    const struct kiln_plugins *all, char *err, size_t errlen);

/* Its backend and warm pools, made now if they are not yet. Returns 0, or
 * -1 with why in `err` (the backend cannot start: its jobs are rejected). */
int kiln_image_open(struct kiln_image *img, uv_loop_t *loop, const struct kiln_config *cfg, char *err,
                    size_t errlen);

/* The image called `name` among `n`, or NULL. */
struct kiln_image *kiln_image_find(struct kiln_image *v, size_t n, const char *name);

/* Every image's name, comma-separated, into buf. */
void kiln_image_names(const struct kiln_image *v, size_t n, char *buf, size_t len);

/* /metrics lines: jobs per image, and every opened image's pools. */
void kiln_image_gauges(struct kiln_image *v, size_t n, FILE *out);

/* Stop refilling pools (draining). */
void kiln_image_stop_pools(struct kiln_image *v, size_t n);

/* Free what init and open made: backend (every sandbox gone), mount. */
void kiln_image_close(struct kiln_image *img);

#endif
