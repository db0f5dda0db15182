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
 */
#include "../common/script.h"
#include "embedded.h"

static int ruby_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    int end = kiln_script_expect_end(job);
    int r = kiln_script_file(host, job, plan, "ruby", "main.rb");
    const char *argv[] = {"/usr/bin/ruby3.1", end ? "-e" : "/work/main.rb", end ? run_rb : NULL, "/work/main.rb", NULL};
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin ruby = {
    KILN_PLUGIN_HEADER,
    .name = "ruby",
    .description = "Ruby 3.1: ruby /work/main.rb ARGS...",
    .plan = ruby_plan,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &ruby;
}
