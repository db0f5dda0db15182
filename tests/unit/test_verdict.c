/* Judging a case (core/verdict.c): each compare mode on the outputs a
 * judge meets (trailing spaces, CRLF, missing or extra lines, numbers near
 * and past a tolerance), where a diff points, and how a case's end becomes
 * its verdict. */
#include "test.h"

#include <signal.h>
#include <string.h>

#include "core/verdict.h"

static int cmp(enum kiln_compare how, double tol, const char *want, const char *got, struct kiln_diff *d)
{
    return kiln_verdict_compare(how, tol, (const unsigned char *)want, strlen(want),
                                (const unsigned char *)got, strlen(got), d);
}

static void lines_ignore_trailing_space_and_empty_lines(void **state)
{
    struct kiln_diff d;
    (void)state;
    assert_true(cmp(KILN_COMPARE_LINES, 0, "1 2\n3\n", "1 2   \r\n3\n\n\n", &d));
    assert_true(cmp(KILN_COMPARE_LINES, 0, "a", "a\n", &d));
    assert_true(cmp(KILN_COMPARE_LINES, 0, "", "\n \n", &d));
    assert_false(cmp(KILN_COMPARE_LINES, 0, "1 2\n", " 1 2\n", &d)); /* leading space counts */
    assert_false(cmp(KILN_COMPARE_LINES, 0, "a\nb\nc\n", "a\nb\n", &d));
    assert_int_equal(d.at, 3);
    assert_int_equal(d.want_len, 1);
    assert_int_equal(d.got_len, 0);
    assert_false(cmp(KILN_COMPARE_LINES, 0, "a\n\nb", "a\nb", &d)); /* an empty line inside counts */
    assert_int_equal(d.at, 2);
}

static void exact_is_byte_for_byte(void **state)
{
    struct kiln_diff d;
    (void)state;
    assert_true(cmp(KILN_COMPARE_EXACT, 0, "x\ny\n", "x\ny\n", &d));
    assert_false(cmp(KILN_COMPARE_EXACT, 0, "x\ny\n", "x\ny", &d));
    assert_int_equal(d.at, 2);
    assert_false(cmp(KILN_COMPARE_EXACT, 0, "a\n", "a \n", &d));
    assert_int_equal(d.at, 1);
}

static void tokens_ignore_layout(void **state)
{
    struct kiln_diff d;
    (void)state;
    assert_true(cmp(KILN_COMPARE_TOKENS, 0, "1 2 3", "1\n2\t\t3\n", &d));
    assert_false(cmp(KILN_COMPARE_TOKENS, 0, "1 2 3", "1 2", &d));
    assert_int_equal(d.at, 3);
    assert_true(d.tokens);
    assert_false(cmp(KILN_COMPARE_TOKENS, 0, "1.0", "1", &d)); /* tokens, not numbers */
}

static void floats_within_absolute_or_relative_tolerance(void **state)
{
    struct kiln_diff d;
    (void)state;
    assert_true(cmp(KILN_COMPARE_FLOAT, 1e-6, "0.333333", "0.3333333333", &d));
    assert_false(cmp(KILN_COMPARE_FLOAT, 1e-6, "0.333", "0.3333333333", &d));
    assert_true(cmp(KILN_COMPARE_FLOAT, 1e-6, "1000000", "1000000.5", &d)); /* relative */
    assert_false(cmp(KILN_COMPARE_FLOAT, 1e-6, "1000000", "1000002", &d));
    assert_true(cmp(KILN_COMPARE_FLOAT, 1e-3, "yes 1.5", "yes 1.5004", &d)); /* words stay exact */
    assert_false(cmp(KILN_COMPARE_FLOAT, 1e-3, "yes 1.5", "Yes 1.5", &d));
    assert_int_equal(d.at, 1);
    assert_false(cmp(KILN_COMPARE_FLOAT, 1, "nan", "1", &d)); /* not finite: compared as text */
    assert_false(cmp(KILN_COMPARE_FLOAT, 1e-3, "1.5", "1.5x", &d));
}

static void a_diff_excerpt_is_short(void **state)
{
    char want[1000], got[1000];
    struct kiln_diff d;
    (void)state;
    memset(want, 'a', sizeof(want) - 1);
    want[sizeof(want) - 1] = '\0';
    memcpy(got, want, sizeof(got));
    got[500] = 'b';
    assert_false(cmp(KILN_COMPARE_LINES, 0, want, got, &d));
    assert_int_equal(d.want_len, KILN_DIFF_EXCERPT);
    assert_int_equal(d.got_len, KILN_DIFF_EXCERPT);
}

static enum kiln_verdict end(enum kiln_status st, int code, int sig, int over, int64_t cpu, int64_t limit, int want)
{
    struct kiln_case_end e = {st, sig == 0, code, sig, over, cpu, limit, want};
    return kiln_verdict_of_end(&e);
}

static void how_a_case_ends(void **state)
{
    (void)state;
    assert_int_equal(end(KILN_STATUS_OK, 0, 0, 0, 10, 100, 0), KILN_VERDICT_ACCEPTED);
    assert_int_equal(end(KILN_STATUS_ERROR, 3, 0, 0, 10, 100, 0), KILN_VERDICT_RUNTIME_ERROR);
    assert_int_equal(end(KILN_STATUS_ERROR, 3, 0, 0, 10, 100, 3), KILN_VERDICT_ACCEPTED);
    assert_int_equal(end(KILN_STATUS_OK, 0, 0, 0, 10, 100, 3), KILN_VERDICT_RUNTIME_ERROR);
    assert_int_equal(end(KILN_STATUS_KILLED, 0, SIGSEGV, 0, 10, 100, 0), KILN_VERDICT_RUNTIME_ERROR);
    assert_int_equal(end(KILN_STATUS_KILLED, 0, SIGKILL, 1, 101, 100, 0), KILN_VERDICT_TIME_LIMIT);
    assert_int_equal(end(KILN_STATUS_KILLED, 0, SIGXCPU, 0, 1000, 0, 0), KILN_VERDICT_TIME_LIMIT);
    /* ended by itself, but past its CPU limit between two checks */
    assert_int_equal(end(KILN_STATUS_OK, 0, 0, 0, 120, 100, 0), KILN_VERDICT_TIME_LIMIT);
    assert_int_equal(end(KILN_STATUS_OK, 0, 0, 0, 100, 100, 0), KILN_VERDICT_ACCEPTED);
    assert_int_equal(end(KILN_STATUS_TIMEOUT, 0, SIGKILL, 0, 5, 100, 0), KILN_VERDICT_TIME_LIMIT);
    assert_int_equal(end(KILN_STATUS_OOM, 0, SIGKILL, 0, 5, 100, 0), KILN_VERDICT_MEMORY_LIMIT);
    assert_int_equal(end(KILN_STATUS_OUTPUT_LIMIT, 0, SIGKILL, 0, 5, 100, 0), KILN_VERDICT_OUTPUT_LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lines_ignore_trailing_space_and_empty_lines),
        cmocka_unit_test(exact_is_byte_for_byte),
        cmocka_unit_test(tokens_ignore_layout),
        cmocka_unit_test(floats_within_absolute_or_relative_tolerance),
        cmocka_unit_test(a_diff_excerpt_is_short),
        cmocka_unit_test(how_a_case_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
