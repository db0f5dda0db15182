#include "core/plugin_load.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
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
    if (KILN_PLUGIN_HAS(p, build) &&
        (p->artifact == NULL || p->artifact[0] == '\0' || p->artifact[0] == '/' ||
         strstr(p->artifact, "..") != NULL || strlen(p->artifact) > 200)) {
        snprintf(why, whylen, "plugin '%s' has a build but no artifact path under /work", p->name);
        goto out;
    }
    if (kiln_plugins_lookup(set, p->name) != NULL) {
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
    set->v[set->n++] = (struct kiln_loaded){dl, p, copy, NULL, NULL};
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

const struct kiln_loaded *kiln_plugins_lookup(const struct kiln_plugins *set, const char *name)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->v[i].p->name, name) == 0)
            return &set->v[i];
    return NULL;
}

/* Whether `path` names a regular file inside the tree at `rootfd`,
 * resolved as the sandbox would (its symlinks stay inside the tree).
 * Whether it runs is the sandbox's to find out: this is about presence. */
static int in_image(int rootfd, const char *path)
{
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
    struct stat st;
    int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (fd < 0)
        return 0;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    return ok;
}

/* Without --rootfs a jail sees only these of the host's tree (agent/jail.c). */
static int host_visible(const char *path)
{
    static const char *const tops[] = {"/usr/", "/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/",
                                       "/libx32/"};
    for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++)
        if (strncmp(path, tops[i], strlen(tops[i])) == 0)
            return 1;
    return 0;
}

/* The first program or file `plan` names that the sandbox image lacks:
 * its program, and any other argument that is a path under /usr (a
 * compiler's script, a class path's jar), or NULL. */
static const char *missing_in(const struct kiln_plan *plan, const char *root, int rootfd)
{
    for (size_t a = 0; a < plan->argc; a++) {
        const char *arg = plan->argv[a];
        if (a > 0 && (strncmp(arg, "/usr/", 5) != 0 || strchr(arg, ':') != NULL))
            continue;
        /* what the build makes, in the sandbox's own /work or /tmp */
        if (strncmp(arg, "/work/", 6) == 0 || strncmp(arg, "/tmp/", 5) == 0)
            continue;
        if (arg[0] == '/' && ((root == NULL && !host_visible(arg)) || !in_image(rootfd, arg)))
            return arg;
    }
    return NULL;
}

int kiln_plugins_check_programs(struct kiln_plugins *set, const char *root, int quiet)
{
    int rootfd = open(root != NULL ? root : "/", O_PATH | O_DIRECTORY | O_CLOEXEC), marked = 0;
    if (rootfd < 0)
        return 0; /* the backend says why when it starts a sandbox */
    for (size_t i = 0; i < set->n; i++) {
        const struct kiln_plugin *p = set->v[i].p;
        struct kiln_job_view v = {.size = sizeof(v), .id = "probe", .plugin = p->name,
                                  .code = "", .code_len = 0};
        /* a compiled plugin's build names its compiler, its run the runtime */
        for (int build = KILN_PLUGIN_HAS(p, build); build >= 0 && set->v[i].unavailable == NULL; build--) {
            struct kiln_plan probe;
            kiln_plan_init(&probe, 1u << 20);
            const char *gone = (build ? p->build : p->plan)(kiln_plan_host(), &v, &probe) == 0
                                   ? missing_in(&probe, root, rootfd) : NULL;
            if (gone != NULL) {
                char why[512];
                snprintf(why, sizeof(why), "%.200s is not in the sandbox image (%s)", gone,
                         root != NULL ? root : "the host's /usr: see --rootfs");
                set->v[i].unavailable = strdup(why);
                marked++;
                if (!quiet)
                    kiln_error("plugin %s cannot run here: %s; its jobs are rejected", p->name, why);
            }
            kiln_plan_free(&probe);
        }
    }
    close(rootfd);
    return marked;
}

void kiln_plugins_read_toolchains(struct kiln_plugins *set, const char *root)
{
    char path[PATH_MAX], line[512];
    if (root == NULL || snprintf(path, sizeof(path), "%s/etc/kiln-toolchains", root) >= (int)sizeof(path))
        return;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return; /* an image of before the file: no versions to tell */
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *rest = strchr(line, ' ');
        if (rest == NULL)
            continue;
        *rest++ = '\0';
        for (size_t i = 0; i < set->n; i++) {
            if (strcmp(set->v[i].p->name, line) == 0 && set->v[i].toolchain == NULL)
                set->v[i].toolchain = strdup(rest);
        }
    }
    fclose(f);
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
        free(set->v[i].unavailable);
        free(set->v[i].toolchain);
    }
    free(set->v);
    set->v = NULL;
    set->n = 0;
}
