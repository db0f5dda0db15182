/* The plugin loader: it takes good plugins and refuses each kind of bad one
 * with a reason that names the fault. Fake plugins are built beside this
 * test (fake_plugins/fake.c, one build per fault). */
#include "test.h"

#include <errno.h>
#include <string.h>

#include "core/plan.h"
#include "core/plugin_load.h"

static const char *fake(const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf), "%s/%s.so", KILN_FAKE_PLUGINS, name);
    return buf;
}

static void refused(const char *file, const char *why_part)
{
    struct kiln_plugins set = {0};
    char why[512] = "";
    assert_int_not_equal(kiln_plugins_load_file(&set, fake(file), why, sizeof(why)), 0);
    if (strstr(why, why_part) == NULL)
        fail_msg("%s: reason '%s' does not say '%s'", file, why, why_part);
    assert_int_equal(set.n, 0);
    kiln_plugins_unload(&set);
}

static void test_good_plugin_loads(void **state)
{
    struct kiln_plugins set = {0};
    char why[512];
    (void)state;
    assert_int_equal(kiln_plugins_load_file(&set, fake("fake_good"), why, sizeof(why)), 0);
    const struct kiln_loaded *l = kiln_plugins_lookup(&set, "fake");
    assert_non_null(l);
    const struct kiln_plugin *p = l->p;
    assert_non_null(p);
    assert_null(kiln_plugins_lookup(&set, "other"));
    kiln_plugins_unload(&set);
}

static void test_wrong_major(void **state)
{
    (void)state;
    refused("fake_major", "ABI major 2, this worker speaks 1");
}

static void test_too_small(void **state)
{
    (void)state;
    refused("fake_small", "plugin struct is 8 bytes");
}

static void test_missing_symbol(void **state)
{
    (void)state;
    refused("fake_nosym", "no symbol 'kiln_plugin_entry'");
}

static void test_no_plan(void **state)
{
    (void)state;
    refused("fake_noplan", "has no plan callback");
}

static void test_bad_name(void **state)
{
    (void)state;
    refused("fake_badname", "plugin name must be");
}

static void test_init_fails(void **state)
{
    (void)state;
    refused("fake_initfail", "refused to initialise");
}

static void test_not_a_shared_object(void **state)
{
    (void)state;
    refused("does_not_exist", "dlopen failed");
}

static void test_duplicate_name(void **state)
{
    struct kiln_plugins set = {0};
    char why[512];
    (void)state;
    assert_int_equal(kiln_plugins_load_file(&set, fake("fake_good"), why, sizeof(why)), 0);
    assert_int_not_equal(kiln_plugins_load_file(&set, fake("fake_dup"), why, sizeof(why)), 0);
    assert_non_null(strstr(why, "a plugin named 'fake' is already loaded"));
    assert_int_equal(set.n, 1);
    kiln_plugins_unload(&set);
}

/* Loading a directory keeps the good ones and skips the rest. */
static void test_load_dir(void **state)
{
    struct kiln_plugins set = {0};
    (void)state;
    int n = kiln_plugins_load_dir(&set, KILN_FAKE_PLUGINS);
    assert_int_equal(n, 1); /* fake_dup.so sorts first and wins; fake_good is a duplicate */
    assert_non_null(kiln_plugins_lookup(&set, "fake"));
    kiln_plugins_unload(&set);
    assert_true(kiln_plugins_load_dir(&set, "/nonexistent-dir") < 0);
}

/* The real shell plugin plans `sh -c CODE sh ARGS...`. */
static void test_shell_plan(void **state)
{
    struct kiln_plugins set = {0};
    struct kiln_plan plan;
    char why[512];
    (void)state;
    assert_int_equal(kiln_plugins_load_file(&set, KILN_SHELL_PLUGIN, why, sizeof(why)), 0);
    const struct kiln_loaded *l = kiln_plugins_lookup(&set, "shell");
    assert_non_null(l);
    const struct kiln_plugin *p = l->p;
    const char *args[] = {"a b", "c"};
    struct kiln_job_view job = {.size = sizeof(job), .id = "j", .plugin = "shell",
                                .code = "echo \"$@\"", .code_len = 9, .args = args, .nargs = 2};
    kiln_plan_init(&plan, 1 << 20);
    assert_int_equal(p->plan(kiln_plan_host(), &job, &plan), 0);
    assert_int_equal(plan.argc, 6);
    const char *want[] = {"/bin/sh", "-c", "echo \"$@\"", "sh", "a b", "c"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(plan.argv[i], want[i]);
    assert_null(plan.argv[6]);
    assert_string_equal(plan.profile, "shell");
    kiln_plan_free(&plan);
    kiln_plugins_unload(&set);
}

/* The plan's cap holds whatever a plugin adds. */
static void test_plan_cap_and_env(void **state)
{
    struct kiln_plan plan;
    (void)state;
    kiln_plan_init(&plan, 64);
    assert_int_equal(kiln_plan_env(&plan, "A", "1"), 0);
    assert_int_equal(kiln_plan_env(&plan, "A", "2"), 0);
    assert_int_equal(plan.nenv, 1);
    assert_string_equal(plan.env[0], "A=2");
    assert_int_equal(kiln_plan_env(&plan, "B=", "x"), -EINVAL);
    char big[100];
    memset(big, 'x', sizeof(big) - 1);
    big[99] = '\0';
    assert_int_equal(kiln_plan_arg(&plan, big), -E2BIG);
    assert_int_equal(kiln_plan_file(&plan, "/abs", "", 0, 0644), -EINVAL);
    kiln_plan_free(&plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plugin_loads),
        cmocka_unit_test(test_wrong_major),
        cmocka_unit_test(test_too_small),
        cmocka_unit_test(test_missing_symbol),
        cmocka_unit_test(test_no_plan),
        cmocka_unit_test(test_bad_name),
        cmocka_unit_test(test_init_fails),
        cmocka_unit_test(test_not_a_shared_object),
        cmocka_unit_test(test_duplicate_name),
        cmocka_unit_test(test_load_dir),
        cmocka_unit_test(test_shell_plan),
        cmocka_unit_test(test_plan_cap_and_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
