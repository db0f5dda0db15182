/* kiln eval's reading of MultiPL-E: each way MultiPL-E spells a language,
 * stop tokens cut as MultiPL-E cuts a completion, a problem record turned
 * into its name and program (and the records it refuses, with why), and
 * Perl's failure marker found across the chunks output comes in. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "cli/eval.h"

static void test_languages(void **state)
{
    (void)state;
    assert_string_equal(kiln_eval_lang_find("go_test.go")->plugin, "go");
    assert_string_equal(kiln_eval_lang_find("go")->code, "go");
    assert_string_equal(kiln_eval_lang_find("javascript")->code, "js");
    assert_string_equal(kiln_eval_lang_find("rust")->plugin, "rust");
    assert_string_equal(kiln_eval_lang_find("humaneval_to_r.py")->code, "r");
    assert_string_equal(kiln_eval_lang_find("notypes.py")->plugin, "python");
    assert_string_equal(kiln_eval_lang_find("pl")->fail_marker, "ERROR");
    assert_int_equal(kiln_eval_lang_find("sh")->proves_end, 0); /* bash cannot */
    assert_int_equal(kiln_eval_lang_find("lua")->proves_end, 1);
    assert_null(kiln_eval_lang_find("cobol"));
    assert_null(kiln_eval_lang_find(NULL));
}

static void test_stop_tokens(void **state)
{
    json_t *stop = json_pack("[s,s,s]", "\nfunction ", "\n//", "");
    (void)state;
    /* the first of any token; an empty token cuts nothing */
    assert_int_equal(kiln_eval_stop_cut("  return x;\n}\n// more\nfunction g", stop), 13);
    assert_int_equal(kiln_eval_stop_cut("  return x;\n}\nfunction g() {}\n// c", stop), 13);
    assert_int_equal(kiln_eval_stop_cut("  return x;\n}\n", stop), 14);
    assert_int_equal(kiln_eval_stop_cut("abc", NULL), 3);
    json_decref(stop);
}

static json_t *record(const char *language, const char *stop)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:s}", "name", "HumanEval_53_add", "language", language, "prompt",
                          "function add(x, y) {\n", "tests", "const assert = require('node:assert');\n");
    if (stop != NULL)
        json_object_set_new(j, "stop_tokens", json_loads(stop, 0, NULL) ?: json_string(stop));
    return j;
}

static void test_problem(void **state)
{
    struct kiln_eval_problem p;
    json_t *j = record("js", "[\"\\nfunction \"]");
    (void)state;
    assert_true(kiln_eval_is_multiple(j));
    assert_int_equal(kiln_eval_multiple_problem(&p, j, "problems.jsonl:1"), 0);
    assert_string_equal(p.task_id, "js/HumanEval_53_add");
    assert_string_equal(p.lang->plugin, "javascript");
    char *prog = kiln_eval_multiple_program(&p, "  return x + y;\n}\nfunction unused() {}\n", 0);
    /* prompt, the completion up to its first stop token, a newline, tests */
    assert_string_equal(prog, "function add(x, y) {\n  return x + y;\n}\nconst assert = require('node:assert');\n");
    free(prog);
    /* --no-stop: the completion as it is */
    prog = kiln_eval_multiple_program(&p, "  return x + y;\n}\nfunction unused() {}\n", 1);
    assert_non_null(strstr(prog, "function unused"));
    free(prog);
    json_decref(j);
}

static void test_refused(void **state)
{
    struct kiln_eval_problem p;
    json_t *j;
    (void)state;
    j = record("cobol", NULL);
    assert_int_equal(kiln_eval_multiple_problem(&p, j, "x:1"), -1);
    json_decref(j);
    j = record("js", "\"\\n}\""); /* a string, not a list */
    assert_int_equal(kiln_eval_multiple_problem(&p, j, "x:2"), -1);
    json_decref(j);
    j = record("js", NULL);
    json_object_del(j, "prompt");
    assert_int_equal(kiln_eval_multiple_problem(&p, j, "x:3"), -1);
    json_decref(j);
    /* HumanEval's own records are not MultiPL-E's */
    j = json_pack("{s:s,s:s,s:s}", "task_id", "HumanEval/0", "prompt", "def f():\n", "test", "def check(c): pass\n");
    assert_false(kiln_eval_is_multiple(j));
    json_decref(j);
}

static void test_marker_across_chunks(void **state)
{
    char edge[16];
    unsigned char elen = 0;
    (void)state;
    assert_int_equal(kiln_eval_marker_in(edge, &elen, "ERROR", "ok!ok!ER", 8), 0);
    assert_int_equal(kiln_eval_marker_in(edge, &elen, "ERROR", "R", 1), 0);
    assert_int_equal(kiln_eval_marker_in(edge, &elen, "ERROR", "OR: x", 5), 1);
    elen = 0;
    assert_int_equal(kiln_eval_marker_in(edge, &elen, "ERROR", "E", 1), 0);
    assert_int_equal(kiln_eval_marker_in(edge, &elen, "ERROR", "R", 1), 0);
    assert_int_equal(kiln_eval_marker_in(edge, &elen, "ERROR", "x", 1), 0); /* "ERx": broken */
    assert_int_equal(kiln_eval_marker_in(edge, &elen, "ERROR", "ROR", 3), 0);
    assert_int_equal(kiln_eval_marker_in(edge, &elen, "ERROR", "ok ERROR", 8), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_languages),
        cmocka_unit_test(test_stop_tokens),
        cmocka_unit_test(test_problem),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_marker_across_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
