/*
 * bash: GNU bash. The job's code becomes /work/main.sh and runs as
 *
 *   bash /work/main.sh ARGS...
 *
 * (the shell plugin runs POSIX sh -c CODE; benchmarks' shell problems,
 * MultiPL-E's among them, are written for bash: [[ ]], arrays).
 *
 * No KILN_PLUGIN_ENDS: every variable and function of a shell is the
 * script's own to read and call, so no runner in bash could hold a token
 * the script cannot reach; a job for bash that asks expect_end is
 * rejected, and kiln eval says a bash pass cannot be proven to have run
 * its tests (docs/evaluation.md, What counts as a pass).
 */
#include "../common/script.h"

static int bash_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    static const char *const argv[] = {"/usr/bin/bash", "/work/main.sh", NULL};
    int r = kiln_script_file(host, job, plan, "bash", "main.sh");
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin bash = {
    KILN_PLUGIN_HEADER,
    .name = "bash",
    .description = "bash: bash /work/main.sh ARGS...",
    .plan = bash_plan,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &bash;
}
