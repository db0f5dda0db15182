/* The real plugins (build/lib/kiln/plugins/{shell,python,deno-eval}.so),
 * loaded by the worker's loader: each one's plans, exactly, for a few jobs,
 * and their warm starts. Also the example of plan_check.h for plugin
 * authors (plugins/README.md). */
#include "plan_check.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>

static struct kiln_plugins set;
static const struct kiln_plugin *shell, *python, *deno;

static int setup(void **state)
{
    (void)state;
    shell = plan_check_load(&set, KILN_PLUGIN_DIR "/shell.so");
    python = plan_check_load(&set, KILN_PLUGIN_DIR "/python.so");
    deno = plan_check_load(&set, KILN_PLUGIN_DIR "/deno-eval.so");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kiln_plugins_unload(&set);
    return 0;
}

static const char *const two_args[] = {"a b", ""};
static const struct kiln_kv job_env[] = {{"A", "1"}, {"B_2", "x,y"}};

static void test_shell(void **state)
{
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("echo \"$1\"; exit 3");
    (void)state;
    job.args = two_args;
    job.nargs = 2;
    job.env = job_env; /* applied by the worker, not the plugin */
    job.nenv = 2;
    assert_int_equal(plan_check_plan(shell, &job, &plan), 0);
    assert_profile(&plan, "shell");
    assert_argv(&plan, "/bin/sh", "-c", "echo \"$1\"; exit 3", "sh", "a b", "");
    assert_no_env(&plan);
    assert_files(&plan, 0);
    kiln_plan_free(&plan);
    /* cold only: no interpreter to start ahead, every job fits its pool */
    assert_false(KILN_PLUGIN_HAS(shell, prestart));
    assert_int_equal(plan_check_warm_ok(shell, &job), 1);
}

static void test_python(void **state)
{
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("import sys\nprint(sys.argv)\n");
    (void)state;
    job.args = two_args;
    job.nargs = 2;
    assert_int_equal(plan_check_plan(python, &job, &plan), 0);
    assert_profile(&plan, "python");
    assert_argv(&plan, "/usr/bin/python3", "-E", "-s", "-u", "-B", "/work/main.py", "a b", "");
    assert_no_env(&plan);
    assert_files(&plan, 1);
    assert_file(&plan, 0, "main.py", "import sys\nprint(sys.argv)\n", 0644);
    kiln_plan_free(&plan);
    assert_int_equal(KILN_PLUGIN_FLAGS(python), KILN_PLUGIN_FORKS | KILN_PLUGIN_ENDS);
}

/* A run whose end is checked goes under the bootstrap (its runner), cold
 * as warm: the script's path after it says "no envelope". */
static void test_python_expect_end(void **state)
{
    struct kiln_plan plan, warm;
    struct kiln_job_view job = plan_check_job("print(1)");
    (void)state;
    job.expect_end = 1;
    assert_int_equal(plan_check_plan(python, &job, &plan), 0);
    assert_int_equal(plan_check_prestart(python, &warm), 0);
    assert_argv(&plan, "/usr/bin/python3", "-I", "-u", "-B", "-c", warm.argv[5], "/work/main.py");
    assert_non_null(strstr(warm.argv[5], "audit('kiln.end')"));
    assert_string_equal(warm.profile, plan.profile);
    kiln_plan_free(&plan);
    kiln_plan_free(&warm);
}

/* The plan's cap is the host's: a plugin passes its refusal on. */
static void test_python_too_large(void **state)
{
    struct kiln_plan plan;
    (void)state;
    char *code = malloc(PLAN_CHECK_MAX_BYTES + 1);
    assert_non_null(code);
    memset(code, '#', PLAN_CHECK_MAX_BYTES);
    code[PLAN_CHECK_MAX_BYTES] = '\0';
    struct kiln_job_view job = plan_check_job(code);
    assert_rejected(&plan, plan_check_plan(python, &job, &plan), -E2BIG,
                    "the job's plan is larger than the limit of 1048576 bytes");
    kiln_plan_free(&plan);
    free(code);
}

static void test_python_warm(void **state)
{
    struct kiln_plan warm, cold;
    struct kiln_job_view job = plan_check_job("print(1)");
    (void)state;
    assert_int_equal(plan_check_prestart(python, &warm), 0);
    /* the interpreter, isolated (nothing on the path before the bootstrap
     * puts the script's directory there), then its bootstrap */
    assert_int_equal(warm.argc, 6);
    assert_argv(&warm, "/usr/bin/python3", "-I", "-u", "-B", "-c", warm.argv[5]);
    assert_true(strncmp(warm.argv[5], "import os, sys\n", 15) == 0);
    assert_no_env(&warm);
    assert_files(&warm, 0);
    /* warm sandboxes serve jobs only when the profiles match */
    assert_int_equal(plan_check_plan(python, &job, &cold), 0);
    assert_string_equal(warm.profile, cold.profile);
    assert_int_equal(plan_check_warm_ok(python, &job), 1);
    kiln_plan_free(&warm);
    kiln_plan_free(&cold);
    /* prestart is asked by plugin name */
    kiln_plan_init(&warm, PLAN_CHECK_MAX_BYTES);
    assert_true(python->prestart(kiln_plan_host(), "python3", &warm) < 0);
    kiln_plan_free(&warm);
}

#define DENO_BASE "/usr/local/bin/deno", "run", "--quiet", "--no-prompt", "--no-config", \
                  "--no-lock", "--allow-read=/work"
#define DENO_ENV "DENO_DIR=/tmp/.deno", "NO_COLOR=1", "DENO_NO_UPDATE_CHECK=1"

static void test_deno(void **state)
{
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("console.log(Deno.args)");
    (void)state;
    job.args = two_args;
    job.nargs = 2;
    assert_int_equal(plan_check_plan(deno, &job, &plan), 0);
    assert_profile(&plan, "deno");
    assert_argv(&plan, DENO_BASE, "/work/main.ts", "a b", "");
    assert_env(&plan, DENO_ENV);
    assert_files(&plan, 1);
    assert_file(&plan, 0, "main.ts", "console.log(Deno.args)", 0644);
    kiln_plan_free(&plan);
    assert_int_equal(plan_check_warm_ok(deno, &job), 1);
}

/* The job's env keys and net.allow become Deno permissions, and such a job
 * starts cold (the warm process has none). */
static void test_deno_permissions(void **state)
{
    static const struct kiln_kv env[] = {{"A", "1"}, {"B_2", "x,y"}};
    static const char *const allow[] = {"pypi.org", "*.example.com:443"};
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("1");
    (void)state;
    job.env = env;
    job.nenv = 2;
    job.has_net = 1;
    job.net_allow = allow;
    job.nnet = 2;
    assert_int_equal(plan_check_plan(deno, &job, &plan), 0);
    assert_argv(&plan, DENO_BASE, "--allow-env=A,B_2", "--allow-net=pypi.org,*.example.com:443",
                "/work/main.ts");
    assert_env(&plan, DENO_ENV);
    kiln_plan_free(&plan);
    assert_int_equal(plan_check_warm_ok(deno, &job), 0);

    /* `net: {}`: the network, but no host allowed, so no permission */
    job.nenv = 0;
    job.nnet = 0;
    assert_int_equal(plan_check_plan(deno, &job, &plan), 0);
    assert_argv(&plan, DENO_BASE, "/work/main.ts");
    kiln_plan_free(&plan);
    assert_int_equal(plan_check_warm_ok(deno, &job), 1);

    /* a worker older than v1.1 passes a view without the net fields: the
     * plugin must not read them (garbage here) */
    job = plan_check_job("1");
    job.size = offsetof(struct kiln_job_view, has_net);
    job.has_net = 1;
    job.net_allow = allow;
    job.nnet = 2;
    assert_int_equal(plan_check_plan(deno, &job, &plan), 0);
    assert_argv(&plan, DENO_BASE, "/work/main.ts");
    kiln_plan_free(&plan);
    assert_int_equal(plan_check_warm_ok(deno, &job), 1);
}

static void test_deno_rejects_commas(void **state)
{
    static const char *const allow[] = {"a.org,b.org"};
    static const struct kiln_kv env[] = {{"A,B", "1"}};
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("1");
    (void)state;
    job.has_net = 1;
    job.net_allow = allow;
    job.nnet = 1;
    assert_rejected(&plan, plan_check_plan(deno, &job, &plan), -EINVAL,
                    "a net.allow pattern or env key holds a comma");
    kiln_plan_free(&plan);
    job = plan_check_job("1");
    job.env = env;
    job.nenv = 1;
    assert_rejected(&plan, plan_check_plan(deno, &job, &plan), -EINVAL,
                    "a net.allow pattern or env key holds a comma");
    kiln_plan_free(&plan);
}

static void test_deno_warm(void **state)
{
    static const char prefix[] = "data:application/javascript;base64,";
    struct kiln_plan warm, cold;
    struct kiln_job_view job = plan_check_job("1");
    (void)state;
    assert_int_equal(plan_check_prestart(deno, &warm), 0);
    assert_int_equal(warm.argc, 8);
    assert_argv(&warm, DENO_BASE, warm.argv[7]);
    assert_env(&warm, DENO_ENV);
    /* the bootstrap, a data: URL, reads the envelope and imports the job */
    assert_true(strncmp(warm.argv[7], prefix, sizeof(prefix) - 1) == 0);
    const char *b64 = warm.argv[7] + sizeof(prefix) - 1;
    unsigned char *js = malloc(strlen(b64));
    assert_non_null(js);
    int n = EVP_DecodeBlock(js, (const unsigned char *)b64, (int)strlen(b64));
    assert_true(n > 0);
    js[n] = '\0'; /* padding leaves NULs: strstr stops at the text's end */
    assert_true(strncmp((char *)js, "const r = async (n) =>", 22) == 0);
    assert_non_null(strstr((char *)js, "await import('file:///work/main.ts');"));
    free(js);
    assert_int_equal(plan_check_plan(deno, &job, &cold), 0);
    assert_string_equal(warm.profile, cold.profile);
    kiln_plan_free(&warm);
    kiln_plan_free(&cold);
    /* prestart gets the plugin's name, not its profile ("deno") */
    kiln_plan_init(&warm, PLAN_CHECK_MAX_BYTES);
    assert_true(deno->prestart(kiln_plan_host(), "deno", &warm) < 0);
    kiln_plan_free(&warm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shell),
        cmocka_unit_test(test_python),
        cmocka_unit_test(test_python_expect_end),
        cmocka_unit_test(test_python_too_large),
        cmocka_unit_test(test_python_warm),
        cmocka_unit_test(test_deno),
        cmocka_unit_test(test_deno_permissions),
        cmocka_unit_test(test_deno_rejects_commas),
        cmocka_unit_test(test_deno_warm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
