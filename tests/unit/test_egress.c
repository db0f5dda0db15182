/* The egress proxy's allow patterns: host, *.suffix, host:port, IPv4,
 * [IPv6]; without a port only 80 and 443. */
#include "test.h"

#include "egress.h"

static void test_patterns(void **state)
{
    static const char *const allow[] = {"pypi.org", "*.example.com", "api.test:8443",
                                        "10.1.2.3:8080", "[2001:db8::1]:9000", "[2001:db8::2]"};
    static const struct { const char *host; int port; int want; } cases[] = {
        {"pypi.org", 443, 1}, {"pypi.org", 80, 1}, {"PYPI.ORG", 443, 1},
        {"pypi.org", 8080, 0},                       /* no port given: 80 and 443 only */
        {"files.pypi.org", 443, 0},                  /* a bare host is not a suffix */
        {"a.example.com", 443, 1}, {"a.b.example.com", 80, 1},
        {"example.com", 443, 0},                     /* *.suffix needs a subdomain */
        {"badexample.com", 443, 0},
        {"api.test", 8443, 1}, {"api.test", 443, 0},
        {"10.1.2.3", 8080, 1}, {"10.1.2.3", 80, 0}, {"10.1.2.4", 8080, 0},
        {"2001:db8::1", 9000, 1}, {"2001:db8::1", 443, 0},
        {"2001:db8::2", 443, 1}, {"2001:db8::2", 9000, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (kiln_egress_allowed(allow, 6, cases[i].host, cases[i].port) != cases[i].want)
            fail_msg("%s:%d: want %d", cases[i].host, cases[i].port, cases[i].want);
    assert_false(kiln_egress_allowed(allow, 0, "pypi.org", 443));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
