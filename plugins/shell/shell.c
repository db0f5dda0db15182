/*
 * shell: run the job's code with /bin/sh -c. The job's args follow as $1..;
 * $0 is "sh", as `sh -c CODE sh ARGS...` gives it.
 */
#include <kiln/plugin.h>

static int shell_plan(const struct kiln_host *host, const struct kiln_job_view *job,
                      struct kiln_plan *plan)
{
    int r;
    if ((r = host->plan_profile(plan, "shell")) < 0 ||
        (r = host->plan_arg(plan, "/bin/sh")) < 0 ||
        (r = host->plan_arg(plan, "-c")) < 0 ||
        (r = host->plan_arg(plan, job->code)) < 0 ||
        (r = host->plan_arg(plan, "sh")) < 0)
        return r;
    for (size_t i = 0; i < job->nargs; i++)
        if ((r = host->plan_arg(plan, job->args[i])) < 0)
            return r;
    return 0;
}

static const struct kiln_plugin shell = {
    KILN_PLUGIN_HEADER,
    .name = "shell",
    .description = "POSIX shell: code runs as /bin/sh -c CODE sh ARGS...",
    .plan = shell_plan,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &shell;
}
