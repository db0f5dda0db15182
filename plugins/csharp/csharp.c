/*
 * csharp: C# on Mono (Debian's mono-mcs and mono-runtime). The job's code
 * is one source file, built once with mcs beside kiln's launcher
 * (KilnRun.cs, the entry point) into /work/prog.exe, and run per input:
 *
 *   build:  mcs -out:/work/prog.exe -d:DEBUG -r:System.Numerics -main:KilnRun main.cs KilnRun.cs
 *   run:    mono /work/prog.exe ARGS...
 *
 * DEBUG keeps Debug.Assert, which benchmarks' tests use (MultiPL-E's C#
 * problems), and the launcher makes a failed one end the program with
 * exit status 1 (KilnRun.cs). System.Numerics is referenced (BigInteger).
 * Mono's collector grows its heap as it needs: past the sandbox's memory
 * limit the sandbox ends the program (status oom).
 *
 * A run whose end is checked (expect_end): see KilnRun.cs.
 */
#include "../common/script.h"
#include "embedded.h"

static int cs_build(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    static const char *const argv[] = {"/usr/bin/mcs", "-nologo", "-out:/work/prog.exe", "-d:DEBUG",
                                       "-r:System.Numerics.dll", "-main:KilnRun", "/work/main.cs",
                                       "/work/KilnRun.cs", NULL};
    int r = kiln_script_file(host, job, plan, "csharp", "main.cs");
    if (r < 0 || (r = host->plan_file(plan, "KilnRun.cs", kiln_run_cs, sizeof(kiln_run_cs) - 1, 0644)) < 0)
        return r;
    return kiln_script_argv(host, plan, argv, NULL);
}

static int cs_run(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    static const char *const argv[] = {"/usr/bin/mono", "/work/prog.exe", NULL};
    int r = host->plan_profile(plan, "csharp");
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin csharp = {
    KILN_PLUGIN_HEADER,
    .name = "csharp",
    .description = "C# (Mono): built once with mcs, then mono /work/prog.exe per input",
    .plan = cs_run,
    .build = cs_build,
    .artifact = "prog.exe",
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &csharp;
}
