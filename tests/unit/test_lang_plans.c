/* The plans of the languages of benchmarks (plugins/java ... plugins/bash),
 * without a worker: what each runs, with which runtime flags, what a
 * checked end (expect_end) changes, and what each refuses. That the plans
 * work is test_languages.py's part; this pins their shape, so a change to
 * one shows here first, with the line. */
#include "plan_check.h"

#include <errno.h>

static struct kiln_plugins set;

static const struct kiln_plugin *plugin(const char *name)
{
    for (size_t i = 0; i < set.n; i++)
        if (strcmp(set.v[i].p->name, name) == 0)
            return set.v[i].p;
    fail_msg("plugin %s not loaded", name);
    return NULL;
}

static int build(const struct kiln_plugin *p, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    kiln_plan_init(plan, PLAN_CHECK_MAX_BYTES);
    if (!KILN_PLUGIN_HAS(p, build))
        fail_msg("plugin %s has no build", p->name);
    return p->build(kiln_plan_host(), job, plan);
}

static int setup(void **state)
{
    static const char *const names[] = {"java", "javascript", "typescript", "go", "rust", "csharp",
                                        "php", "ruby", "lua", "perl", "r", "bash"};
    char path[512];
    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s.so", KILN_PLUGIN_DIR, names[i]);
        plan_check_load(&set, path);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kiln_plugins_unload(&set);
    return 0;
}

/* Every one but bash can prove a program's end; the compiled ones build. */
static void test_flags(void **state)
{
    (void)state;
    for (size_t i = 0; i < set.n; i++) {
        const struct kiln_plugin *p = set.v[i].p;
        int compiled = strcmp(p->name, "java") == 0 || strcmp(p->name, "typescript") == 0 ||
                       strcmp(p->name, "go") == 0 || strcmp(p->name, "rust") == 0 || strcmp(p->name, "csharp") == 0;
        if (((p->flags & KILN_PLUGIN_ENDS) != 0) != (strcmp(p->name, "bash") != 0))
            fail_msg("%s: KILN_PLUGIN_ENDS is %s", p->name, (p->flags & KILN_PLUGIN_ENDS) ? "set" : "not set");
        if (KILN_PLUGIN_HAS(p, build) != compiled)
            fail_msg("%s: build() %s", p->name, compiled ? "missing" : "unexpected");
    }
}

static void test_javascript(void **state)
{
    static const char *const args[] = {"x"};
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("console.log(1)\n");
    (void)state;
    job.args = args;
    job.nargs = 1;
    job.memory_mb = 256;
    assert_int_equal(plan_check_plan(plugin("javascript"), &job, &plan), 0);
    assert_profile(&plan, "javascript");
    assert_argv(&plan, "/usr/bin/node", "--max-old-space-size=256", "/work/main.js", "x");
    assert_file(&plan, 0, "main.js", "console.log(1)\n", 0644);
    kiln_plan_free(&plan);
    /* an ES module is a .mjs; a checked end runs under run.js */
    job = plan_check_job("import fs from 'node:fs';\n");
    job.expect_end = 1;
    assert_int_equal(plan_check_plan(plugin("javascript"), &job, &plan), 0);
    assert_int_equal(plan.argc, 4);
    assert_string_equal(plan.argv[1], "-e");
    assert_string_equal(plan.argv[3], "/work/main.mjs");
    assert_file(&plan, 0, "main.mjs", "import fs from 'node:fs';\n", 0644);
    kiln_plan_free(&plan);
}

static void test_typescript(void **state)
{
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("let x: number = 1;\n");
    (void)state;
    assert_int_equal(build(plugin("typescript"), &job, &plan), 0);
    assert_argv(&plan, "/usr/bin/node", "/usr/share/nodejs/typescript/lib/tsc.js", "--target", "esnext", "--module",
                "commonjs", "--skipLibCheck", "--pretty", "false", "/work/main.ts");
    kiln_plan_free(&plan);
    assert_int_equal(plan_check_plan(plugin("typescript"), &job, &plan), 0);
    assert_argv(&plan, "/usr/bin/node", "/work/main.js");
    assert_files(&plan, 0);
    kiln_plan_free(&plan);
    assert_string_equal(plugin("typescript")->artifact, "main.js");
}

static void test_java(void **state)
{
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("class A { public static void main(String[] a) {} }\n");
    (void)state;
    job.memory_mb = 512;
    assert_int_equal(build(plugin("java"), &job, &plan), 0);
    assert_string_equal(plan.argv[0], "/bin/sh");
    assert_string_equal(plan.argv[4], "/usr/lib/jvm/java-17-openjdk-amd64/bin/javac");
    kiln_plan_free(&plan);
    assert_int_equal(plan_check_plan(plugin("java"), &job, &plan), 0);
    assert_profile(&plan, "java");
    int heap = 0, gc = 0;
    for (size_t i = 0; i < plan.argc; i++) {
        heap |= strncmp(plan.argv[i], "-Xmx", 4) == 0;
        gc |= strcmp(plan.argv[i], "-XX:+UseSerialGC") == 0;
    }
    assert_true(heap); /* the heap fits the sandbox: the sandbox's limit is what ends a hog */
    assert_true(gc);   /* one GC thread: no pool of threads per job */
    kiln_plan_free(&plan);
}

static void test_go(void **state)
{
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("package main\n\nfunc main() {\n}\n");
    (void)state;
    assert_int_equal(build(plugin("go"), &job, &plan), 0);
    assert_argv(&plan, "/usr/lib/go-1.19/bin/go", "build", "-o", "/work/prog", "/work/main.go");
    int offline = 0;
    for (size_t i = 0; i < plan.nenv; i++)
        offline |= strcmp(plan.env[i], "GOPROXY=off") == 0;
    assert_true(offline);
    kiln_plan_free(&plan);
    /* a test file builds a test binary; its end check adds kiln's TestMain */
    job = plan_check_job("package calc\n\nimport \"testing\"\n\nfunc TestX(t *testing.T) {}\n");
    job.expect_end = 1;
    assert_int_equal(build(plugin("go"), &job, &plan), 0);
    assert_argv(&plan, "/usr/lib/go-1.19/bin/go", "test", "-c", "-o", "/work/prog", "/work/0kiln_end_test.go",
                "/work/main_test.go");
    kiln_plan_free(&plan);
    job = plan_check_job("package calc\n\nimport \"testing\"\n\nfunc TestMain(m *testing.M) {}\nfunc TestX(t *testing.T) {}\n");
    job.expect_end = 1;
    assert_rejected(&plan, build(plugin("go"), &job, &plan), -EINVAL,
                    "a test file with a TestMain of its own cannot have its end checked (expect_end): kiln's "
                    "TestMain runs the tests");
    kiln_plan_free(&plan);
    job = plan_check_job("package main\n");
    job.memory_mb = 100;
    assert_int_equal(plan_check_plan(plugin("go"), &job, &plan), 0);
    assert_argv(&plan, "/work/prog");
    assert_env(&plan, "GOMEMLIMIT=90MiB");
    kiln_plan_free(&plan);
}

static void test_rust(void **state)
{
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("fn main() {\n}\n");
    (void)state;
    assert_int_equal(build(plugin("rust"), &job, &plan), 0);
    assert_argv(&plan, "/usr/bin/rustc", "--edition", "2021", "-O", "-C", "debuginfo=0", "-C", "strip=symbols", "-C",
                "linker=/usr/bin/gcc", "-o", "/work/prog", "/work/main.rs");
    assert_file(&plan, 0, "main.rs", "fn main() {\n}\n", 0644);
    kiln_plan_free(&plan);
    job = plan_check_job("// no main here\n");
    job.expect_end = 1;
    assert_rejected(&plan, build(plugin("rust"), &job, &plan), -EINVAL,
                    "a Rust program whose end is checked (expect_end) needs a `fn main()` at the start of a line");
    kiln_plan_free(&plan);
}

static void test_csharp(void **state)
{
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("class A { static void Main() {} }\n");
    (void)state;
    assert_int_equal(build(plugin("csharp"), &job, &plan), 0);
    assert_string_equal(plan.argv[0], "/usr/bin/mcs");
    assert_files(&plan, 2); /* the program and kiln's launcher */
    kiln_plan_free(&plan);
    assert_int_equal(plan_check_plan(plugin("csharp"), &job, &plan), 0);
    assert_argv(&plan, "/usr/bin/mono", "/work/prog.exe");
    kiln_plan_free(&plan);
}

/* the interpreted ones: one file, the interpreter on it; a checked end
 * runs the runner with the program's path as its first argument */
static void test_interpreters(void **state)
{
    static const struct {
        const char *name, *file, *argv0;
    } t[] = {
        {"php", "main.php", "/usr/bin/php8.2"}, {"ruby", "main.rb", "/usr/bin/ruby3.1"},
        {"lua", "main.lua", "/usr/bin/lua5.4"}, {"perl", "main.pl", "/usr/bin/perl"},
        {"r", "main.R", "/usr/bin/Rscript"},    {"bash", "main.sh", "/usr/bin/bash"},
    };
    static const char *const args[] = {"a b"};
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct kiln_plan plan;
        char path[64];
        struct kiln_job_view job = plan_check_job("1\n");
        job.args = args;
        job.nargs = 1;
        snprintf(path, sizeof(path), "/work/%s", t[i].file);
        assert_int_equal(plan_check_plan(plugin(t[i].name), &job, &plan), 0);
        assert_string_equal(plan.argv[0], t[i].argv0);
        assert_string_equal(plan.argv[plan.argc - 2], path);
        assert_string_equal(plan.argv[plan.argc - 1], "a b");
        assert_file(&plan, 0, t[i].file, "1\n", 0644);
        kiln_plan_free(&plan);
        if (strcmp(t[i].name, "bash") == 0)
            continue;
        job.expect_end = 1;
        assert_int_equal(plan_check_plan(plugin(t[i].name), &job, &plan), 0);
        assert_string_equal(plan.argv[plan.argc - 2], path);
        int runner = 0; /* -e RUN, -r RUN or lua's -eRUN */
        for (size_t a = 1; a + 2 < plan.argc; a++)
            runner |= strncmp(plan.argv[a], "-e", 2) == 0 || strcmp(plan.argv[a], "-r") == 0;
        if (!runner)
            fail_msg("%s: a checked end runs no runner", t[i].name);
        kiln_plan_free(&plan);
    }
}

static void test_lua_runner_is_one_argument(void **state)
{
    struct kiln_plan plan;
    struct kiln_job_view job = plan_check_job("print(1)\n");
    (void)state;
    job.expect_end = 1;
    assert_int_equal(plan_check_plan(plugin("lua"), &job, &plan), 0);
    /* lua refuses a separate -e argument that starts with '-' */
    assert_int_equal(plan.argc, 4);
    assert_true(strncmp(plan.argv[1], "-e-- kiln's runner", 18) == 0);
    assert_string_equal(plan.argv[2], "/dev/null");
    kiln_plan_free(&plan);
}

static void test_perl_warm(void **state)
{
    static const struct kiln_kv lc[] = {{"LC_ALL", "de_DE.UTF-8"}};
    struct kiln_plan warm, cold;
    const struct kiln_plugin *perl = plugin("perl");
    struct kiln_job_view job = plan_check_job("1;");
    (void)state;
    assert_int_equal(plan_check_prestart(perl, &warm), 0);
    assert_argv(&warm, "/usr/bin/perl", "-e", warm.argv[2]);
    assert_int_equal(plan_check_plan(perl, &job, &cold), 0);
    assert_string_equal(warm.profile, cold.profile); /* else no job runs warm */
    assert_int_equal(plan_check_warm_ok(perl, &job), 1);
    job.env = lc;
    job.nenv = 1;
    assert_int_equal(plan_check_warm_ok(perl, &job), 0);
    job.nenv = 0;
    job.expect_end = 1; /* run.pl, not the warm bootstrap */
    assert_int_equal(plan_check_warm_ok(perl, &job), 0);
    kiln_plan_free(&warm);
    kiln_plan_free(&cold);
    job = plan_check_job("#!/bin/sh\necho perl\n");
    assert_rejected(&cold, plan_check_plan(perl, &job, &cold), -EINVAL, "the code's #! line names another interpreter");
    kiln_plan_free(&cold);
    job = plan_check_job("#!/usr/bin/perl -w\nprint 1;\n");
    assert_int_equal(plan_check_plan(perl, &job, &cold), 0);
    assert_int_equal(plan_check_warm_ok(perl, &job), 0); /* -w: only perl's own start reads it */
    kiln_plan_free(&cold);
    job = plan_check_job("#!/usr/bin/perl\nprint 1;\n");
    assert_int_equal(plan_check_warm_ok(perl, &job), 1);
}

/* php, ruby and R start ahead of their jobs (php and R forked from a
 * template): the warm profile is the run's, and a job a warm interpreter
 * would run otherwise than a cold one starts cold */
static void test_warm_interpreters(void **state)
{
    static const struct kiln_kv lang[] = {{"LC_ALL", "C"}}, rlib[] = {{"R_LIBS", "/work"}},
                                rubyopt[] = {{"RUBYOPT", "-w"}}, ini[] = {{"PHPRC", "/work"}};
    static const struct {
        const char *name, *code;
        const struct kiln_kv *env; /* one variable that must start it cold */
        unsigned flags;
    } t[] = {
        {"php", "<?php echo 1;", ini, KILN_PLUGIN_FORKS | KILN_PLUGIN_ENDS},
        {"ruby", "puts 1", rubyopt, KILN_PLUGIN_ENDS},
        {"r", "cat(1)", rlib, KILN_PLUGIN_FORKS | KILN_PLUGIN_TEMPLATE_ONLY | KILN_PLUGIN_ENDS},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        const struct kiln_plugin *p = plugin(t[i].name);
        struct kiln_plan warm, cold;
        struct kiln_job_view job = plan_check_job(t[i].code);
        assert_int_equal(KILN_PLUGIN_FLAGS(p), t[i].flags);
        assert_int_equal(plan_check_prestart(p, &warm), 0);
        assert_int_equal(plan_check_plan(p, &job, &cold), 0);
        assert_string_equal(warm.profile, cold.profile); /* else no job runs warm */
        assert_string_equal(warm.argv[0], cold.argv[0]);
        assert_int_equal(plan_check_warm_ok(p, &job), 1);
        job.env = t[i].env;
        job.nenv = 1;
        assert_int_equal(plan_check_warm_ok(p, &job), 0);
        job.env = lang;
        assert_int_equal(plan_check_warm_ok(p, &job), 0);
        job.nenv = 0;
        job.expect_end = 1; /* php's checked runs have no FFI: cold; the others' runners run warm */
        assert_int_equal(plan_check_warm_ok(p, &job), strcmp(t[i].name, "php") != 0);
        kiln_plan_free(&warm);
        kiln_plan_free(&cold);
    }
    /* ruby: DATA after __END__ is a cold main script's alone; so are #! switches */
    struct kiln_job_view job = plan_check_job("puts DATA.read\n__END__\nx\n");
    assert_int_equal(plan_check_warm_ok(plugin("ruby"), &job), 0);
    job = plan_check_job("#!/usr/bin/ruby -w\nputs 1\n");
    assert_int_equal(plan_check_warm_ok(plugin("ruby"), &job), 0);
    /* php: a checked run has no FFI */
    struct kiln_plan plan;
    job = plan_check_job("<?php echo 1;");
    job.expect_end = 1;
    assert_int_equal(plan_check_plan(plugin("php"), &job, &plan), 0);
    int no_ffi = 0;
    for (size_t a = 0; a + 1 < plan.argc; a++)
        no_ffi |= strcmp(plan.argv[a], "-d") == 0 && strcmp(plan.argv[a + 1], "ffi.enable=0") == 0;
    assert_true(no_ffi);
    kiln_plan_free(&plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_javascript),
        cmocka_unit_test(test_typescript),
        cmocka_unit_test(test_java),
        cmocka_unit_test(test_go),
        cmocka_unit_test(test_rust),
        cmocka_unit_test(test_csharp),
        cmocka_unit_test(test_interpreters),
        cmocka_unit_test(test_lua_runner_is_one_argument),
        cmocka_unit_test(test_perl_warm),
        cmocka_unit_test(test_warm_interpreters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
