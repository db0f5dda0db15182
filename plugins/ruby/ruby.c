/*
 * ruby: Ruby 3.1 (Debian's ruby3.1, with test-unit from ruby-test-unit, as
 * MultiPL-E's Ruby tests use). The job's code becomes /work/main.rb and
 * runs as
 *
 *   ruby /work/main.rb ARGS...
 *
 * An uncaught exception prints its backtrace and exits 1: status "error";
 * test-unit's tests run when the program ends, and a failure exits 1.
 *
 * A run whose end is checked (expect_end) starts under run.rb instead
 * (ruby -e RUN.RB /work/main.rb ARGS...): see there.
 *
 * Warm start: ruby is started ahead with warm.rb, which reads the job's envelope and runs the
 * command it names as a cold ruby would (see there). Ruby takes its
 * options, load path and encodings when it starts: a job that sets them
 * (RUBY*, GEM_*, a locale), whose #! line has switches, or whose script
 * has DATA after __END__ (a cold ruby's main script alone gets it),
 * starts cold (warm_ok).
 */
#include <errno.h>
#include <string.h>

#include "../common/script.h"
#include "embedded.h"

#define RUBY "/usr/bin/ruby3.1"

static int ruby_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    int end = kiln_script_expect_end(job);
    int r = kiln_script_file(host, job, plan, "ruby", "main.rb");
    const char *argv[] = {RUBY, end ? "-e" : "/work/main.rb", end ? run_rb : NULL, "/work/main.rb", NULL};
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

static int ruby_prestart(const struct kiln_host *host, const char *name, struct kiln_plan *plan)
{
    int r;
    if (strcmp(name, "ruby") != 0)
        return -EINVAL;
    if ((r = host->plan_profile(plan, "ruby")) < 0 || (r = host->plan_arg(plan, RUBY)) < 0 ||
        (r = host->plan_arg(plan, "-e")) < 0 || (r = host->plan_arg(plan, warm_rb)) < 0)
        return r;
    return 0;
}

static int ruby_warm_ok(const struct kiln_job_view *job)
{
    static const char *const read_at_start[] = {"RUBY*", "GEM_*", "LANG", "LC_*", NULL};
    return !kiln_script_shebang_switches(job) && !kiln_script_has_line(job->code, "__END__", "\r\n") &&
           !kiln_script_sets_env(job, read_at_start);
}

static const struct kiln_plugin ruby = {
    KILN_PLUGIN_HEADER,
    .name = "ruby",
    .description = "Ruby 3.1: ruby /work/main.rb ARGS...",
    .plan = ruby_plan,
    .prestart = ruby_prestart,
    .warm_ok = ruby_warm_ok,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &ruby;
}
