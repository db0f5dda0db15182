/*
 * cpp: the job's code is one C++17 source file, built once with g++ -O2
 * (linked with -lm) and run as /work/prog ARGS... for each input or case.
 */
#include "../c/compiled.h"

static int cpp_build(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    static const char *const argv[] = {"/usr/bin/g++", "-std=c++17", "-O2", "-pipe", "-o",
                                       "/work/" KILN_COMPILED_ARTIFACT, "/work/main.cpp", "-lm", NULL};
    return kiln_compiled_build(host, job, plan, argv, "main.cpp");
}

static const struct kiln_plugin cpp = {
    KILN_PLUGIN_HEADER,
    .name = "cpp",
    .description = "C++17: built once with g++ -O2 -lm, then /work/prog ARGS... per input",
    .plan = kiln_compiled_run,
    .build = cpp_build,
    .artifact = KILN_COMPILED_ARTIFACT,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &cpp;
}
