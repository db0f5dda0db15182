/*
 * Unit-testing a plugin's plans without a worker (cmocka).
 *
 * The plugin is loaded from its .so by the worker's own loader (the same
 * ABI checks, init() called), and plan()/prestart()/warm_ok() are called
 * with the worker's own host table, so caps and rules are the worker's.
 * What is NOT here: the sandbox, and the worker's additions around plan()
 * (base environment, the job's env and files, described in kiln/plugin.h):
 * the plan starts empty, so the assertions below see exactly what the
 * plugin put in it.
 *
 *     struct kiln_plugins set = {0};
 *     const struct kiln_plugin *p = plan_check_load(&set, KILN_PLUGIN_DIR "/lua.so");
 *     struct kiln_job_view job = plan_check_job("print(1)");
 *     struct kiln_plan plan;
 *     assert_int_equal(plan_check_plan(p, &job, &plan), 0);
 *     assert_profile(&plan, "lua");
 *     assert_argv(&plan, "/usr/bin/lua5.4", "/work/main.lua");
 *     assert_no_env(&plan);                  (no variables of its own)
 *     assert_files(&plan, 1);
 *     assert_file(&plan, 0, "main.lua", "print(1)", 0644);
 *     kiln_plan_free(&plan);
 *     kiln_plugins_unload(&set);
 *
 * A test file using it is one line in tests/CMakeLists.txt (see
 * plugins/README.md): kiln_unit(test_NAME) and add_dependencies(test_NAME
 * PLUGIN), which link it with the worker's code.
 */
#ifndef KILN_PLAN_CHECK_H
#define KILN_PLAN_CHECK_H

#include "test.h"

#include <string.h>

#include "core/plan.h"
#include "core/plugin_load.h"

/* The most a plan may hold here (the worker's cap is larger: twice
 * --max-job-bytes plus 1 MiB). */
#define PLAN_CHECK_MAX_BYTES (1u << 20)

/* Load the plugin at `path` into `set` (free with kiln_plugins_unload());
 * fails the test with the loader's reason if it is refused. The plugin is
 * borrowed from `set`. */
static inline const struct kiln_plugin *plan_check_load(struct kiln_plugins *set, const char *path)
{
    char why[512] = "";
    if (kiln_plugins_load_file(set, path, why, sizeof(why)) != 0)
        fail_msg("%s refused: %s", path, why);
    return set->v[set->n - 1].p;
}

/* A job view as the worker builds one: this code, attempt 1, no args, env
 * or net. Set the other fields on the result. Strings are borrowed. */
static inline struct kiln_job_view plan_check_job(const char *code)
{
    struct kiln_job_view v;
    memset(&v, 0, sizeof(v));
    v.size = sizeof(v);
    v.id = "t1";
    v.code = code;
    v.code_len = strlen(code);
    v.attempt = 1;
    return v;
}

/* Call the plugin's plan() on a fresh `plan` (free with kiln_plan_free()
 * whatever it returns); returns what plan() returned. */
static inline int plan_check_plan(const struct kiln_plugin *p, const struct kiln_job_view *job,
                                  struct kiln_plan *plan)
{
    kiln_plan_init(plan, PLAN_CHECK_MAX_BYTES);
    return p->plan(kiln_plan_host(), job, plan);
}

/* Call prestart() as the worker's pool does (with the plugin's name); fails
 * the test if the plugin has none. */
static inline int plan_check_prestart(const struct kiln_plugin *p, struct kiln_plan *plan)
{
    kiln_plan_init(plan, PLAN_CHECK_MAX_BYTES);
    if (!KILN_PLUGIN_HAS(p, prestart))
        fail_msg("plugin %s has no prestart", p->name);
    return p->prestart(kiln_plan_host(), p->name, plan);
}

/* warm_ok() as the pool asks it: 1 when the plugin has none. */
static inline int plan_check_warm_ok(const struct kiln_plugin *p, const struct kiln_job_view *job)
{
    return KILN_PLUGIN_HAS(p, warm_ok) ? p->warm_ok(job) : 1;
}

/* Failures name the test's line, not this file's. */
static inline void plan_check_strv(const char *file, int line, const char *what, char *const *got,
                                   size_t n, const char *const *want)
{
    size_t k = 0;
    while (want[k] != NULL)
        k++;
    for (size_t i = 0; i < n || i < k; i++)
        if (i >= n || i >= k || strcmp(got[i], want[i]) != 0) {
            for (size_t j = 0; j < n; j++)
                print_error("  %s[%zu] = \"%s\"\n", what, j, got[j]);
            print_error("%s[%zu] is %s%s%s, want %s%s%s (%zu elements, want %zu)\n", what, i,
                        i < n ? "\"" : "", i < n ? got[i] : "(none)", i < n ? "\"" : "",
                        i < k ? "\"" : "", i < k ? want[i] : "(none)", i < k ? "\"" : "", n, k);
            _fail(file, line);
        }
}

/* The plan's argv is exactly these strings, in order. */
#define assert_argv(plan, ...) plan_check_strv(__FILE__, __LINE__, "argv", (plan)->argv, \
    (plan)->argc, (const char *const[]){__VA_ARGS__, NULL})
/* The plan's env is exactly these "K=V" strings, in order. */
#define assert_env(plan, ...) plan_check_strv(__FILE__, __LINE__, "env", (plan)->env, \
    (plan)->nenv, (const char *const[]){__VA_ARGS__, NULL})
/* The plugin set no variable. */
#define assert_no_env(plan) plan_check_strv(__FILE__, __LINE__, "env", (plan)->env, \
    (plan)->nenv, (const char *const[]){NULL})
#define assert_profile(plan, want) assert_string_equal((plan)->profile, (want))
#define assert_files(plan, n) assert_int_equal((plan)->nfiles, (n))

static inline void plan_check_file(const char *file, int line, const struct kiln_plan *plan,
                                   size_t i, const char *path, const char *data, unsigned mode)
{
    const struct kiln_plan_file *f = i < plan->nfiles ? &plan->files[i] : NULL;
    if (f == NULL)
        print_error("no file %zu: the plan has %zu\n", i, plan->nfiles);
    else if (strcmp(f->path, path) != 0)
        print_error("file %zu is \"%s\", want \"%s\"\n", i, f->path, path);
    else if (f->len != strlen(data) || memcmp(f->data, data, f->len) != 0)
        print_error("file %s holds %zu bytes \"%.*s\", want \"%s\"\n", path, f->len,
                    (int)(f->len < 200 ? f->len : 200), (const char *)f->data, data);
    else if (f->mode != mode)
        print_error("file %s has mode %04o, want %04o\n", path, f->mode, mode);
    else
        return;
    _fail(file, line);
}

/* File `i` of the plan is `path` holding the string `data`, mode `mode`. */
#define assert_file(plan, i, path, data, mode) \
    plan_check_file(__FILE__, __LINE__, (plan), (i), (path), (data), (mode))

/* plan() returned `want_r` and the job's reason is exactly `reason`. */
#define assert_rejected(plan, r, want_r, reason) do { \
        assert_int_equal((r), (want_r));               \
        assert_string_equal((plan)->reject, (reason)); \
    } while (0)

#endif
