/* Loading plugins: dlopen, check the ABI, refuse with a reason. */
#ifndef KILN_PLUGIN_LOAD_H
#define KILN_PLUGIN_LOAD_H

#include <stddef.h>

#include "kiln/plugin.h"

struct kiln_plugins {
    struct kiln_loaded {
        void *dl;
        const struct kiln_plugin *p;
        char *path;
        char *unavailable;  /* why it cannot run on this worker, or NULL */
        char *toolchain;    /* "package version" from the image, or NULL */
    } *v;
    size_t n;
};

/* KILN_PLUGIN_HAS() and KILN_PLUGIN_FLAGS() are in kiln/plugin.h. */

/*
 * Load one plugin file into `set`. Returns 0, or a negative code with the
 * reason it was refused in `why` (the file is then unloaded again).
 */
int kiln_plugins_load_file(struct kiln_plugins *set, const char *path,
                           char *why, size_t whylen);
/* Load every *.so in `dir`, in name order, logging each refusal. Returns the
 * number loaded, or a negative code when the directory cannot be read. */
int kiln_plugins_load_dir(struct kiln_plugins *set, const char *dir);
/* The loaded plugin called `name`, or NULL; borrowed from `set`. */
const struct kiln_loaded *kiln_plugins_lookup(const struct kiln_plugins *set, const char *name);
/* Check that every plugin's program (argv[0] of its plan for an empty job)
 * is in the tree its sandboxes see as / (`root`, or the host's / when
 * NULL); a plugin whose program is missing is marked unavailable, with
 * why, and (unless `quiet`: the caller sums them up) said once in the log:
 * its jobs are rejected, not failed. Returns how many were marked. */
int kiln_plugins_check_programs(struct kiln_plugins *set, const char *root, int quiet);
/* Each plugin's toolchain as the runtime image at `root` names it (its
 * /etc/kiln-toolchains: "plugin package version" lines, written by
 * rootfs/build-image.sh); plugins it does not name keep NULL. */
void kiln_plugins_read_toolchains(struct kiln_plugins *set, const char *root);
/* Names of the loaded plugins, comma-separated, into buf. */
void kiln_plugins_names(const struct kiln_plugins *set, char *buf, size_t len);
/* Call fini, dlclose, free. */
void kiln_plugins_unload(struct kiln_plugins *set);

#endif
