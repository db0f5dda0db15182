/* What the kiln client prints of names it was given (task ids, paths):
 * nothing a terminal would act on, and UTF-8 left as it is. */
#include "test.h"

#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
