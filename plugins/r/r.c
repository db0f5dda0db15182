/*
 * r: R 4.2 (Debian's r-base-core). The job's code becomes /work/main.R and
 * runs as
 *
 *   Rscript /work/main.R ARGS...
 *
 * An error prints and stops with exit status 1: status "error"; quit('no',
 * N) exits N (MultiPL-E's R tests call quit('no', 1) on a mismatch).
 *
 * A run whose end is checked (expect_end) starts under run.R instead
 * (Rscript -e RUN.R /work/main.R ARGS...): see there.
 *
 * Forked from a template (KILN_PLUGIN_FORKS, KILN_PLUGIN_TEMPLATE_ONLY):
 * R is started once per worker and calls kiln's zygote library
 * (agent/zygote_r.c), which forks each sandbox's job from it and puts the
 * job's script where R reads its own input: the script runs as the top
 * level of R's own loop, as in a cold run. R takes its library paths,
 * locale and time zone when it starts: a job that sets R_*, a locale, TZ,
 * HOME, TMPDIR or LD_* starts cold (warm_ok). Elsewhere (a VM,
 * --no-zygote) R starts cold in every sandbox.
 */
#include <errno.h>
#include <string.h>

#include "../common/script.h"
#include "embedded.h"

/* the template's R: zygote_r.c takes over at .C() and returns in each job */
static const char serve[] = "invisible(local({dyn.load(p <- Sys.getenv(\"KILN_ZYGOTE\")); "
                            ".C(\"kiln_zygote_r\"); dyn.unload(p)}))";

static int r_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    int end = kiln_script_expect_end(job);
    int r = kiln_script_file(host, job, plan, "r", "main.R");
    const char *argv[] = {"/usr/bin/Rscript", end ? "-e" : "/work/main.R", end ? run_r : NULL, "/work/main.R",
                          NULL};
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

static int r_prestart(const struct kiln_host *host, const char *name, struct kiln_plan *plan)
{
    const char *argv[] = {"/usr/bin/Rscript", "-e", serve, NULL};
    if (strcmp(name, "r") != 0)
        return -EINVAL;
    int r = host->plan_profile(plan, "r");
    return r < 0 ? r : kiln_script_argv(host, plan, argv, NULL);
}

static int r_warm_ok(const struct kiln_job_view *job)
{
    static const char *const read_at_start[] = {"R_*", "LC_*", "LD_*", "LANG*", "TZ*", "HOME*", "TMPDIR*", NULL};
    return !kiln_script_sets_env(job, read_at_start);
}

static const struct kiln_plugin r = {
    KILN_PLUGIN_HEADER,
    .name = "r",
    .description = "R 4.2: Rscript /work/main.R ARGS...",
    .plan = r_plan,
    .prestart = r_prestart,
    .warm_ok = r_warm_ok,
    .flags = KILN_PLUGIN_FORKS | KILN_PLUGIN_TEMPLATE_ONLY | KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &r;
}
