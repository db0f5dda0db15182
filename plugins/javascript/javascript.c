/*
 * javascript: Node.js (the image's nodejs). The job's code becomes
 * /work/main.js and runs as
 *
 *   node --max-old-space-size=MEM /work/main.js ARGS...
 *
 * as CommonJS (require('assert') works), or as an ES module from
 * /work/main.mjs when a line starts with an import or export statement.
 * V8's heap may grow to the sandbox's memory limit (MEM, the job's
 * memory_mb), so a program that wants more meets the sandbox's limit
 * (status oom), not a heap ceiling of V8's own below it (an abort). An
 * uncaught exception prints its stack and exits 1: status "error".
 *
 * A run whose end is checked (expect_end) starts under run.js instead
 * (node -e RUN.JS /work/main.js ARGS...), which proves the program came
 * back: see run.js.
 */
#include "../common/script.h"
#include "embedded.h"

#define NODE "/usr/bin/node"

static int js_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    char heap[64];
    int esm = kiln_script_has_line(job->code, "import", "{*'\"") || kiln_script_has_line(job->code, "export", "{*");
    const char *file = esm ? "/work/main.mjs" : "/work/main.js";
    int r = kiln_script_file(host, job, plan, "javascript", file + 6);
    if (r < 0)
        return r;
    const char *argv[8];
    size_t a = 0;
    argv[a++] = NODE;
    if (kiln_script_memory_mb(job) > 0) {
        snprintf(heap, sizeof(heap), "--max-old-space-size=%lld", kiln_script_memory_mb(job));
        argv[a++] = heap;
    }
    if (kiln_script_expect_end(job)) {
        argv[a++] = "-e";
        argv[a++] = run_js;
    }
    argv[a++] = file;
    argv[a] = NULL;
    return kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin javascript = {
    KILN_PLUGIN_HEADER,
    .name = "javascript",
    .description = "JavaScript: node /work/main.js (CommonJS) or /work/main.mjs (ES module)",
    .plan = js_plan,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &javascript;
}
