/*
 * What the c and cpp plugins share: a compiled language, built once (the
 * job's code as one source file, compiled and linked to /work/prog) and
 * then run as /work/prog ARGS... in each of the job's sandboxes.
 *
 * A job whose end is checked (expect_end) has kiln_end.c built in beside
 * its source: it takes the agent's token before anything of the program
 * runs and writes the proof only when the program's main returns 0 (see
 * there).
 */
#ifndef KILN_PLUGIN_COMPILED_H
#define KILN_PLUGIN_COMPILED_H

#include <kiln/plugin.h>

#include "embedded.h"

#define KILN_COMPILED_PROFILE "native"
#define KILN_COMPILED_ARTIFACT "prog"

/* Plan the build: `argv` (NULL-terminated) is the compiler's command,
 * `source` the file the code goes in. */
static inline int kiln_compiled_build(const struct kiln_host *host, const struct kiln_job_view *job,
                                      struct kiln_plan *plan, const char *const *argv,
                                      const char *source)
{
    int r;
    if ((r = host->plan_profile(plan, KILN_COMPILED_PROFILE)) < 0 ||
        (r = host->plan_file(plan, source, job->code, job->code_len, 0644)) < 0)
        return r;
    for (size_t i = 0; argv[i] != NULL; i++)
        if ((r = host->plan_arg(plan, argv[i])) < 0)
            return r;
    if (KILN_HAS_FIELD(job, struct kiln_job_view, expect_end) && job->expect_end &&
        ((r = host->plan_file(plan, "kiln_end.c", kiln_end_c, sizeof(kiln_end_c) - 1, 0644)) < 0 ||
         (r = host->plan_arg(plan, "/work/kiln_end.c")) < 0))
        return r;
    return 0;
}

static inline int kiln_compiled_run(const struct kiln_host *host, const struct kiln_job_view *job,
                                    struct kiln_plan *plan)
{
    int r;
    if ((r = host->plan_profile(plan, KILN_COMPILED_PROFILE)) < 0 ||
        (r = host->plan_arg(plan, "/work/" KILN_COMPILED_ARTIFACT)) < 0)
        return r;
    for (size_t i = 0; i < job->nargs; i++)
        if ((r = host->plan_arg(plan, job->args[i])) < 0)
            return r;
    return 0;
}

#endif
