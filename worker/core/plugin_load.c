#include "core/plugin_load.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/plan.h"

/* The v1 struct ends at `fini`; anything smaller cannot be a v1 plugin. */
#define V1_SIZE (offsetof(struct kiln_plugin, fini) + sizeof(void (*)(void)))

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return 0;
    return 1;
}

int kiln_plugins_load_file(struct kiln_plugins *set, const char *path,
                           char *why, size_t whylen)
{
    const struct kiln_plugin *p = NULL;
    int r = -EINVAL;

    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        snprintf(why, whylen, "dlopen failed: %s", dlerror());
        return -EINVAL;
    }
    kiln_plugin_entry_fn entry;
    *(void **)&entry = dlsym(dl, KILN_PLUGIN_SYMBOL);
    if (entry == NULL) {
        snprintf(why, whylen, "no symbol '%s'", KILN_PLUGIN_SYMBOL);
        goto out;
    }
    if ((p = entry()) == NULL) {
        snprintf(why, whylen, "'%s' returned NULL", KILN_PLUGIN_SYMBOL);
        goto out;
    }
    if (p->abi_major != KILN_PLUGIN_ABI_MAJOR) {
        snprintf(why, whylen, "ABI major %u, this worker speaks %u", p->abi_major,
                 KILN_PLUGIN_ABI_MAJOR);
        goto out;
    }
    if (p->size < V1_SIZE) {
        snprintf(why, whylen, "plugin struct is %zu bytes, ABI v1 needs at least %zu",
                 p->size, (size_t)V1_SIZE);
        goto out;
    }
    if (p->name == NULL || !name_ok(p->name)) {
        snprintf(why, whylen, "plugin name must be 1-64 characters of [a-z0-9-]");
        goto out;
    }
    if (p->plan == NULL) {
        snprintf(why, whylen, "plugin '%s' has no plan callback", p->name);
        goto out;
    }
    if (kiln_plugins_find(set, p->name) != NULL) {
        snprintf(why, whylen, "a plugin named '%s' is already loaded", p->name);
        goto out;
    }
    if (p->init != NULL && p->init(kiln_plan_host()) != 0) {
        snprintf(why, whylen, "plugin '%s' refused to initialise", p->name);
        goto out;
    }
    struct kiln_loaded *v = realloc(set->v, (set->n + 1) * sizeof(*v));
    char *copy = strdup(path);
    if (v == NULL || copy == NULL) {
        if (v != NULL)
            set->v = v;
        free(copy);
        if (p->fini != NULL)
            p->fini();
        snprintf(why, whylen, "out of memory");
        r = -ENOMEM;
        goto out;
    }
    set->v = v;
    set->v[set->n++] = (struct kiln_loaded){dl, p, copy};
    return 0;
out:
    dlclose(dl);
    return r;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_so(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 3 && strcmp(d->d_name + n - 3, ".so") == 0;
}

int kiln_plugins_load_dir(struct kiln_plugins *set, const char *dir)
{
    struct dirent **names;
    int loaded = 0;
    int n = scandir(dir, &names, is_so, by_name);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        char path[4096], why[512];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (kiln_plugins_load_file(set, path, why, sizeof(why)) == 0) {
            const struct kiln_plugin *p = set->v[set->n - 1].p;
            kiln_info("plugin %s loaded from %s (ABI %u.%u)", p->name, path, p->abi_major,
                      p->abi_minor);
            loaded++;
        } else {
            kiln_error("plugin %s refused: %s", path, why);
        }
        free(names[i]);
    }
    free(names);
    return loaded;
}

const struct kiln_plugin *kiln_plugins_find(const struct kiln_plugins *set, const char *name)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->v[i].p->name, name) == 0)
            return set->v[i].p;
    return NULL;
}

void kiln_plugins_names(const struct kiln_plugins *set, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < set->n && off < len; i++)
        off += snprintf(buf + off, len - off, "%s%s", i ? ", " : "", set->v[i].p->name);
}

void kiln_plugins_unload(struct kiln_plugins *set)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->v[i].p->fini != NULL)
            set->v[i].p->fini();
        dlclose(set->v[i].dl);
        free(set->v[i].path);
    }
    free(set->v);
    set->v = NULL;
    set->n = 0;
}
