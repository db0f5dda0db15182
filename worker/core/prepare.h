/*
 * From a decoded job to what its sandbox runs: the operator's caps on its
 * limits, the plugin's plan, and the job's own files and environment on
 * top. Everything here is the job's fault when it fails (rejected), except
 * -ENOMEM.
 */
#ifndef KILN_PREPARE_H
#define KILN_PREPARE_H

#include <stddef.h>

#include "kiln/plugin.h"

struct kiln_config;
struct kiln_job;
struct kiln_limits;
struct kiln_plan;

/* The most `meta` a job may carry: kiln echoes it once, in the job's last
 * exit frame. */
#define KILN_META_MAX (64 * 1024)

/* A compiled job's build product, given to each of its runs. */
struct kiln_artifact {
    unsigned char *data;
    size_t len;
};

/* Check the job's limits (and each case's) and meta against the operator's maximums.
 * Returns 0, -EINVAL (a limit over its maximum) or -E2BIG (meta too
 * large), with why in `why`. */
int kiln_prepare_check(const struct kiln_job *job, const struct kiln_config *cfg, char *why,
                       size_t len);

/* The limits input `cur` of the job runs under (-1: the job itself): a
 * case's own over the job's; -1 where neither says. */
void kiln_prepare_limits(const struct kiln_job *job, int cur, struct kiln_limits *out);

/* Plan attempt `attempt` of `job` (input `cur` of its runs, or -1) with
 * plugin `p` into `plan` (initialised here; the caller frees it, also on
 * failure): its build (`build`: p->build) or a run, which gets `art` (a
 * compiled job's artifact, borrowed; NULL: none) at p->artifact; `extra`
 * (NULL: none) what its secrets add to the plugin's view. `view`
 * is what the plugin saw, kept for the pool's warm_ok. Returns 0;
 * -ENOMEM; or another negative errno with why in plan->reject. */
/* What the worker adds to a job's view, when the job has secrets. */
struct kiln_view_extra {
    const char *const *net;        /* net.allow and the secrets' hosts */
    size_t nnet;
    const char *const *secret_env; /* the variables holding placeholders */
    size_t nsecret_env;
};

/* kiln_prepare_plan()'s `build`: 0 the job's run, 1 its build, or: */
#define KILN_PREPARE_REPL 2 /* its session's interpreter (plugin repl()) */
int kiln_prepare_plan(const struct kiln_job *job, int cur, unsigned attempt,
                      const struct kiln_plugin *p, const struct kiln_config *cfg, int build,
                      const struct kiln_artifact *art, const struct kiln_view_extra *extra,
                      int64_t memory_mb, struct kiln_plan *plan, struct kiln_job_view *view);

#endif
