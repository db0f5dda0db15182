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
 */
#include "../common/script.h"
#include "embedded.h"

static int r_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    int end = kiln_script_expect_end(job);
    int r = kiln_script_file(host, job, plan, "r", "main.R");
    const char *argv[] = {"/usr/bin/Rscript", end ? "-e" : "/work/main.R", end ? run_r : NULL, "/work/main.R",
                          NULL};
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin r = {
    KILN_PLUGIN_HEADER,
    .name = "r",
    .description = "R 4.2: Rscript /work/main.R ARGS...",
    .plan = r_plan,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &r;
}
