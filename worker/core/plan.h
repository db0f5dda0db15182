/* An execution plan: what a plugin makes of a job, and what the agent runs. */
#ifndef KILN_PLAN_H
#define KILN_PLAN_H

#include <stddef.h>

#include "kiln/plugin.h"

struct kiln_plan_file {
    char *path;
    unsigned char *data;
    size_t len;
    unsigned mode;
};

struct kiln_plan {
    char **argv;              /* NULL-terminated */
    size_t argc;
    char **env;               /* "K=V", NULL-terminated; later keys replace earlier */
    size_t nenv;
    struct kiln_plan_file *files;
    size_t nfiles;
    char profile[64];
    char reject[256];         /* reason set by plan_reject() */
    size_t bytes;             /* all of the above, against max_bytes */
    size_t max_bytes;
};

/* The functions plugins plan through; static, never freed. */
const struct kiln_host *kiln_plan_host(void);

void kiln_plan_init(struct kiln_plan *plan, size_t max_bytes);
void kiln_plan_free(struct kiln_plan *plan);

/* The same operations the host table offers, for the worker's own use. */
int kiln_plan_arg(struct kiln_plan *plan, const char *arg);
int kiln_plan_env(struct kiln_plan *plan, const char *key, const char *value);
int kiln_plan_file(struct kiln_plan *plan, const char *path, const void *data,
                   size_t len, unsigned mode);
int kiln_plan_reject(struct kiln_plan *plan, const char *reason);

/* The environment every sandboxed program starts with, before the
 * plugin's and the job's: PATH, HOME=/work, TMPDIR=/tmp, LANG=C.UTF-8.
 * 0, or a negative errno (-ENOMEM, -E2BIG). */
int kiln_plan_base_env(struct kiln_plan *plan);

/* Whether a job may not set environment variable `key` (it changes how a
 * program or its runtime loads code: LD_*, PYTHON*, DENO_*, ...). */
int kiln_plan_env_denied(const char *key);
/* What the kernel would refuse at execve (one argument or variable over
 * 128 KiB, all of them over 1 MiB) and files that cannot all be written (a
 * path twice, or a file where another needs a directory). Returns 0, or a
 * negative errno with why in `why` (the job's fault), -ENOMEM. */
int kiln_plan_check(struct kiln_plan *plan, char *why, size_t len);

#endif
