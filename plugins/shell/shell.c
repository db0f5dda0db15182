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

/* A session's shell (plugin.h, repl): one /bin/sh whose variables,
 * functions and working directory carry over; each cell is eval'd in a
 * function, which SIGINT returns from (130). `exit` ends the session. The
 * driver's own names start with kiln_. */
static const char repl[] =
    "exec 9<&0 0</dev/null 8>/tmp/.kiln-repl/ctl\n"
    "trap '' INT\n"
    "kiln_cell() {\n"
    "    kiln_in=1\n"
    "    eval \"$kiln_code\"\n"
    "    kiln_rc=$?\n"
    "    kiln_in=\n"
    "    return $kiln_rc\n"
    "}\n"
    "cd /work\n"
    "while IFS=' ' read -r kiln_n kiln_t <&9; do\n"
    "    kiln_code=$(head -c \"$kiln_n\" <&9; echo .)\n"
    "    kiln_code=${kiln_code%.}\n"
    "    trap 'trap \"\" INT; case $kiln_in in 1) return 130;; esac' INT\n"
    "    kiln_cell\n"
    "    kiln_rc=$?\n"
    "    trap '' INT\n"
    "    kiln_in=\n"
    "    printf 'E %d\\n' \"$kiln_rc\" >&8\n"
    "done\n";

static int shell_repl(const struct kiln_host *host, const struct kiln_job_view *job,
                      struct kiln_plan *plan)
{
    int r;
    (void)job;
    if ((r = host->plan_profile(plan, "shell")) < 0 || (r = host->plan_arg(plan, "/bin/sh")) < 0 ||
        (r = host->plan_arg(plan, "-c")) < 0 || (r = host->plan_arg(plan, repl)) < 0)
        return r;
    return 0;
}

static const struct kiln_plugin shell = {
    KILN_PLUGIN_HEADER,
    .name = "shell",
    .description = "POSIX shell: code runs as /bin/sh -c CODE sh ARGS...",
    .plan = shell_plan,
    .repl = shell_repl,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &shell;
}
