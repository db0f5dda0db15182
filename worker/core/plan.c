#include "core/plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "wire/proto.h"

/* Account for `n` more bytes; -E2BIG past the plan's cap. */
static int charge(struct kiln_plan *plan, size_t n)
{
    if (n > plan->max_bytes - plan->bytes) {
        snprintf(plan->reject, sizeof(plan->reject),
                 "the job's plan is larger than the limit of %zu bytes", plan->max_bytes);
        return -E2BIG;
    }
    plan->bytes += n;
    return 0;
}

static int push(char ***v, size_t *n, char *s)
{
    char **p = realloc(*v, (*n + 2) * sizeof(char *));
    if (p == NULL)
        return -ENOMEM;
    *v = p;
    p[(*n)++] = s;
    p[*n] = NULL;
    return 0;
}

int kiln_plan_arg(struct kiln_plan *plan, const char *arg)
{
    size_t n = strlen(arg) + 1;
    char *s;
    int r = charge(plan, n + sizeof(char *));
    if (r < 0)
        return r;
    if ((s = strdup(arg)) == NULL)
        return -ENOMEM;
    if ((r = push(&plan->argv, &plan->argc, s)) < 0)
        free(s);
    return r;
}

int kiln_plan_env(struct kiln_plan *plan, const char *key, const char *value)
{
    size_t klen = strlen(key);
    if (klen == 0 || strchr(key, '=') != NULL)
        return -EINVAL;
    int r = charge(plan, klen + strlen(value) + 2 + sizeof(char *));
    if (r < 0)
        return r;
    char *s = malloc(klen + strlen(value) + 2);
    if (s == NULL)
        return -ENOMEM;
    sprintf(s, "%s=%s", key, value);
    for (size_t i = 0; i < plan->nenv; i++) {
        if (strncmp(plan->env[i], s, klen + 1) == 0) {
            free(plan->env[i]);
            plan->env[i] = s;
            return 0;
        }
    }
    if ((r = push(&plan->env, &plan->nenv, s)) < 0)
        free(s);
    return r;
}

int kiln_plan_file(struct kiln_plan *plan, const char *path, const void *data,
                   size_t len, unsigned mode)
{
    if (path[0] == '/' || path[0] == '\0')
        return -EINVAL;
    int r = charge(plan, strlen(path) + len + sizeof(struct kiln_plan_file));
    if (r < 0)
        return r;
    struct kiln_plan_file *f = realloc(plan->files, (plan->nfiles + 1) * sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    plan->files = f;
    f = &plan->files[plan->nfiles];
    f->path = strdup(path);
    f->data = malloc(len ? len : 1);
    if (f->path == NULL || f->data == NULL) {
        free(f->path);
        free(f->data);
        return -ENOMEM;
    }
    memcpy(f->data, data, len);
    f->len = len;
    f->mode = mode & 0777;
    plan->nfiles++;
    return 0;
}

static int plan_profile(struct kiln_plan *plan, const char *profile)
{
    if (strlen(profile) >= sizeof(plan->profile) || profile[0] == '\0')
        return -EINVAL;
    strcpy(plan->profile, profile);
    return 0;
}

int kiln_plan_reject(struct kiln_plan *plan, const char *reason)
{
    snprintf(plan->reject, sizeof(plan->reject), "%s", reason);
    return -EINVAL;
}

static void plugin_log(const char *plugin, const char *msg)
{
    kiln_info("plugin %s: %s", plugin, msg);
}

static const struct kiln_host host = {
    .size = sizeof(struct kiln_host),
    .plan_arg = kiln_plan_arg,
    .plan_env = kiln_plan_env,
    .plan_file = kiln_plan_file,
    .plan_profile = plan_profile,
    .plan_reject = kiln_plan_reject,
    .log = plugin_log,
};

const struct kiln_host *kiln_plan_host(void)
{
    return &host;
}

void kiln_plan_init(struct kiln_plan *plan, size_t max_bytes)
{
    memset(plan, 0, sizeof(*plan));
    plan->max_bytes = max_bytes;
    strcpy(plan->profile, "default");
}

void kiln_plan_free(struct kiln_plan *plan)
{
    for (size_t i = 0; i < plan->argc; i++)
        free(plan->argv[i]);
    free(plan->argv);
    for (size_t i = 0; i < plan->nenv; i++)
        free(plan->env[i]);
    free(plan->env);
    for (size_t i = 0; i < plan->nfiles; i++) {
        free(plan->files[i].path);
        free(plan->files[i].data);
    }
    free(plan->files);
    memset(plan, 0, sizeof(*plan));
}

/* The kernel's limits at execve: one string (MAX_ARG_STRLEN, with its
 * NUL), and ours for all of argv and env with their pointers, well inside
 * the quarter of the 8 MiB stack the kernel allows by default. */
#define KILN_ARG_STRLEN_MAX (32 * 4096)
#define KILN_ARGS_TOTAL_MAX (1024 * 1024)

/* Environment variables a job may not set: they change how a program or
 * its runtime loads code (the dynamic loader's, libc's, python's, node's
 * and deno's), so a runtime's own promises (deno's permissions, python's
 * isolated mode) would not hold. libc ignores most of them only for
 * setuid programs; a job's program is not one. */
static const char *const env_denied_prefix[] = {"LD_", "MALLOC_", "PYTHON", "NODE_", "DENO_", "KILN_",
                                                 "OPENSSL_", "BASH_FUNC_"};
static const char *const env_denied[] = {
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH",
    "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "BASH_ENV", "ENV",
    "PERL5OPT", "PERL5LIB", "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS",
};

int kiln_plan_base_env(struct kiln_plan *plan)
{
    static const char *const base[][2] = {
        {"PATH", "/usr/local/bin:/usr/bin:/bin"},
        {"HOME", "/work"},
        {"TMPDIR", "/tmp"},
        {"LANG", "C.UTF-8"},
    };
    int r;
    for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
        if ((r = kiln_plan_env(plan, base[i][0], base[i][1])) < 0)
            return r;
    return 0;
}

int kiln_plan_env_denied(const char *key)
{
    for (size_t i = 0; i < sizeof(env_denied_prefix) / sizeof(env_denied_prefix[0]); i++)
        if (strncmp(key, env_denied_prefix[i], strlen(env_denied_prefix[i])) == 0)
            return 1;
    for (size_t i = 0; i < sizeof(env_denied) / sizeof(env_denied[0]); i++)
        if (strcmp(key, env_denied[i]) == 0)
            return 1;
    return 0;
}

/* '/' sorts before every other byte: a directory's files follow it. */
static int path_cmp(const void *a, const void *b)
{
    const unsigned char *x = (const unsigned char *)((const struct kiln_plan_file *)a)->path;
    const unsigned char *y = (const unsigned char *)((const struct kiln_plan_file *)b)->path;
    for (; *x && *x == *y; x++, y++)
        ;
    unsigned cx = *x == '/' ? 1u : *x ? *x + 1u : 0u, cy = *y == '/' ? 1u : *y ? *y + 1u : 0u;
    return (int)cx - (int)cy;
}

/* What the kernel would refuse at execve, and files that cannot all be
 * written: the job's fault, said before any sandbox starts. */
int kiln_plan_check(struct kiln_plan *plan, char *why, size_t len)
{
    size_t total = 0;
    for (int e = 0; e < 2; e++) {
        char **v = e ? plan->env : plan->argv;
        size_t n = e ? plan->nenv : plan->argc;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(v[i]) + 1;
            if (l > KILN_ARG_STRLEN_MAX) {
                snprintf(why, len, "%s %zu is %zu bytes: one %s may be at most %d (the kernel's "
                         "limit)", e ? "env entry" : "argument", i, l - 1, e ? "variable" : "argument",
                         KILN_ARG_STRLEN_MAX - 1);
                return -E2BIG;
            }
            total += l + sizeof(char *);
        }
    }
    if (total > KILN_ARGS_TOTAL_MAX) {
        snprintf(why, len, "arguments and environment take %zu bytes: at most %d", total,
                 KILN_ARGS_TOTAL_MAX);
        return -E2BIG;
    }
    if (plan->nfiles < 2)
        return 0;
    struct kiln_plan_file *f = malloc(plan->nfiles * sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    memcpy(f, plan->files, plan->nfiles * sizeof(*f));
    qsort(f, plan->nfiles, sizeof(*f), path_cmp);
    int r = 0;
    for (size_t i = 0; i + 1 < plan->nfiles && r == 0; i++) {
        size_t l = strlen(f[i].path);
        if (strcmp(f[i].path, f[i + 1].path) == 0) {
            snprintf(why, len, "file '%.200s' is given twice", f[i].path);
            r = -EINVAL;
        } else if (strncmp(f[i].path, f[i + 1].path, l) == 0 && f[i + 1].path[l] == '/') {
            snprintf(why, len, "file '%.200s' would need '%.200s' to be a directory", f[i + 1].path,
                     f[i].path);
            r = -EINVAL;
        }
    }
    free(f);
    return r;
}

