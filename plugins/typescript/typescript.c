/*
 * typescript: checked and compiled once by the TypeScript compiler
 * (Debian's node-typescript), then run by Node.js as javascript runs:
 *
 *   build:  tsc --target esnext --module commonjs --skipLibCheck main.ts
 *   run:    node --max-old-space-size=MEM /work/main.js ARGS...
 *
 * tsc, not deno (the deno-eval plugin strips types without checking
 * them): a type error is a compile error, with tsc's first lines in the
 * exit frame's build.output, as MultiPL-E's own evaluator judges
 * TypeScript (tsc, then node). Imports become require() (CommonJS), so
 * `require('node:assert')` and `import assert from "node:assert"` both
 * work; top-level await is a compile error. A run whose end is checked
 * (expect_end) goes under the javascript plugin's runner (run.js).
 */
#include "../common/script.h"
#include "embedded.h"

#define NODE "/usr/bin/node"
#define TSC "/usr/share/nodejs/typescript/lib/tsc.js"

static int ts_build(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    static const char *const argv[] = {NODE, TSC, "--target", "esnext", "--module", "commonjs",
                                       "--skipLibCheck", "--pretty", "false", "/work/main.ts", NULL};
    int r = kiln_script_file(host, job, plan, "typescript", "main.ts");
    return r < 0 ? r : kiln_script_argv(host, plan, argv, NULL);
}

static int ts_run(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    char heap[64];
    const char *argv[8];
    size_t a = 0;
    int r = host->plan_profile(plan, "typescript");
    if (r < 0)
        return r;
    argv[a++] = NODE;
    if (kiln_script_memory_mb(job) > 0) {
        snprintf(heap, sizeof(heap), "--max-old-space-size=%lld", kiln_script_memory_mb(job));
        argv[a++] = heap;
    }
    if (kiln_script_expect_end(job)) {
        argv[a++] = "-e";
        argv[a++] = run_js;
    }
    argv[a++] = "/work/main.js";
    argv[a] = NULL;
    return kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin typescript = {
    KILN_PLUGIN_HEADER,
    .name = "typescript",
    .description = "TypeScript: checked and built once by tsc, then node /work/main.js per input",
    .plan = ts_run,
    .build = ts_build,
    .artifact = "main.js",
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &typescript;
}
