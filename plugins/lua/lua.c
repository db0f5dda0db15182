/*
 * lua: Lua 5.4 (Debian's lua5.4, with luaunit from lua-unit, as
 * MultiPL-E's Lua tests use). The job's code becomes /work/main.lua and
 * runs as
 *
 *   lua5.4 /work/main.lua ARGS...
 *
 * An error prints its traceback and exits 1: status "error".
 *
 * A run whose end is checked (expect_end) starts under run.lua instead
 * (lua5.4 -eRUN.LUA /dev/null /work/main.lua ARGS...): see there.
 */
#include <stdlib.h>
#include <string.h>

#include "../common/script.h"
#include "embedded.h"

static int lua_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    int end = kiln_script_expect_end(job);
    int r = kiln_script_file(host, job, plan, "lua", "main.lua");
    if (r < 0)
        return r;
    /* one argument "-eRUN.LUA": lua takes no separate -e argument that
     * starts with '-', as run.lua's first comment does */
    char *e = end ? malloc(2 + sizeof(run_lua)) : NULL;
    if (end && e == NULL)
        return host->plan_reject(plan, "out of memory");
    if (e != NULL) {
        memcpy(e, "-e", 2);
        memcpy(e + 2, run_lua, sizeof(run_lua));
    }
    const char *argv[] = {"/usr/bin/lua5.4", end ? e : "/work/main.lua", end ? "/dev/null" : NULL, "/work/main.lua",
                          NULL};
    r = kiln_script_argv(host, plan, argv, job);
    free(e);
    return r;
}

static const struct kiln_plugin lua = {
    KILN_PLUGIN_HEADER,
    .name = "lua",
    .description = "Lua 5.4: lua5.4 /work/main.lua ARGS...",
    .plan = lua_plan,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &lua;
}
