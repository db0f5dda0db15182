/* What the kiln client prints of names it was given (task ids, paths):
 * nothing a terminal would act on, and UTF-8 left as it is. */
#include "test.h"

#include <getopt.h>
#include <string.h>

#include "base/suggest.h"
#include "cli/text.h"

static void test_shown(void **state)
{
    char buf[64];
    (void)state;
    assert_string_equal(kiln_shown("HumanEval/0", buf, sizeof(buf)), "HumanEval/0");
    assert_string_equal(kiln_shown("caf\xc3\xa9 \xe6\x97\xa5", buf, sizeof(buf)), "caf\xc3\xa9 \xe6\x97\xa5");
    /* a window title, a colour, a bell, DEL */
    assert_string_equal(kiln_shown("\x1b]0;owned\x07x\x1b[31m\x7f", buf, sizeof(buf)),
                        "\\x1b]0;owned\\x07x\\x1b[31m\\x7f");
    /* C1's CSI, a right-to-left override, a byte that is not UTF-8 */
    assert_string_equal(kiln_shown("a\xc2\x9b" "b\xe2\x80\xae" "c\xff", buf, sizeof(buf)),
                        "a\\xc2\\x9bb\\xe2\\x80\\xaec\\xff");
    /* cut before what does not fit, never inside an escape or a character */
    assert_string_equal(kiln_shown("ab\x1b", buf, 6), "ab");
    assert_string_equal(kiln_shown("a\xc3\xa9", buf, 3), "a");
}

/* What kiln_suggest_option() writes on stderr for argv[1]; "" for nothing. */
static const char *suggested(const char *arg)
{
    static const struct option lo[] = {{"plugin", 1, 0, 'p'}, {"timeout-ms", 1, 0, 't'},
                                       {"id", 1, 0, 'i'}, {"collect", 1, 0, 'c'}, {0, 0, 0, 0}};
    static char out[256];
    char *argv[] = {"kiln", (char *)arg, NULL};
    struct stderr_capture cap;
    stderr_begin(&cap);
    int said = kiln_suggest_option("kiln submit", lo, argv, 2);
    stderr_end(&cap, out, sizeof(out));
    assert_int_equal(said, out[0] != '\0');
    return out;
}

static void test_suggest_option(void **state)
{
    (void)state;
    assert_string_equal(suggested("--plugn"), "kiln submit: did you mean --plugin?\n");
    assert_string_equal(suggested("--pluginn=python"), "kiln submit: did you mean --plugin?\n");
    assert_string_equal(suggested("--timeout"), "kiln submit: did you mean --timeout-ms?\n");
    assert_string_equal(suggested("--colect"), "kiln submit: did you mean --collect?\n");
    /* nothing close, a short option, a known one refused for its value: nothing said */
    assert_string_equal(suggested("--frobnicate"), "");
    assert_string_equal(suggested("-x"), "");
    assert_string_equal(suggested("--id"), "");
    assert_string_equal(suggested("--"), "");
}

static void test_closest_name(void **state)
{
    (void)state;
    static const char *const cmds[] = {"submit", "frames", "eval", "cancel", "dev-broker", NULL};
    assert_string_equal(kiln_closest_name("sumbit", cmds), "submit");
    assert_string_equal(kiln_closest_name("evl", cmds), "eval");
    assert_string_equal(kiln_closest_name("devbroker", cmds), "dev-broker");
    assert_null(kiln_closest_name("collect", cmds)); /* nothing close */
    assert_null(kiln_closest_name("eval", cmds));    /* a name itself */
    assert_null(kiln_closest_name("", cmds));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shown),
        cmocka_unit_test(test_suggest_option),
        cmocka_unit_test(test_closest_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
