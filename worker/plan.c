#include "plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proto.h"

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

void kiln_plan_pack_command(struct msgpack_packer *pk, const struct kiln_plan *plan)
{
    kiln_mp_str(pk, "argv");
    msgpack_pack_array(pk, plan->argc);
    for (size_t i = 0; i < plan->argc; i++)
        kiln_mp_str(pk, plan->argv[i]);
    kiln_mp_str(pk, "env");
    msgpack_pack_array(pk, plan->nenv);
    for (size_t i = 0; i < plan->nenv; i++)
        kiln_mp_str(pk, plan->env[i]);
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
