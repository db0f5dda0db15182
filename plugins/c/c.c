/*
 * c: the job's code is one C17 source file, built once with gcc -O2
 * (linked with -lm) and run as /work/prog ARGS... for each input or case.
 */
#include "compiled.h"

static int c_build(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    static const char *const argv[] = {"/usr/bin/gcc", "-std=c17", "-O2", "-pipe", "-o",
                                       "/work/" KILN_COMPILED_ARTIFACT, "/work/main.c", "-lm", NULL};
    return kiln_compiled_build(host, job, plan, argv, "main.c");
}

static const struct kiln_plugin c = {
    KILN_PLUGIN_HEADER,
    .name = "c",
    .description = "C17: built once with gcc -O2 -lm, then /work/prog ARGS... per input",
    .plan = kiln_compiled_run,
    .build = c_build,
    .artifact = KILN_COMPILED_ARTIFACT,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &c;
}
