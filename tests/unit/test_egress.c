/* The egress proxy's allow patterns: host, *.suffix, host:port, IPv4,
 * [IPv6]; without a port only 80 and 443. Its address policy. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include "test.h"

#include "egress/egress.h"

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

static const char *why4(const char *addr, const char *private_ok)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, addr, &sa.sin_addr), 1);
    return kiln_egress_forbidden((const struct sockaddr *)&sa, private_ok);
}

static const char *why6(const char *addr)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, addr, &sa.sin6_addr), 1);
    return kiln_egress_forbidden((const struct sockaddr *)&sa, "");
}

/* Special-purpose ranges that are not globally reachable are refused;
 * public addresses are not. */
static void test_address_policy(void **state)
{
    (void)state;
    static const char *refused4[] = {"192.0.2.2", "198.51.100.7", "203.0.113.1", "198.18.0.1",
                                     "198.19.255.1", "192.88.99.1", "10.1.2.3", "127.0.0.1",
                                     "169.254.169.254", "100.64.0.1", "0.0.0.0", "255.255.255.255",
                                     "224.0.0.1", "192.0.0.8"};
    for (size_t i = 0; i < sizeof(refused4) / sizeof(refused4[0]); i++)
        assert_non_null(why4(refused4[i], ""));
    static const char *refused6[] = {"::1", "::", "2001:db8::1", "fe80::1", "fd00::1", "fec0::1",
                                     "ff02::1", "100::1", "2001:0:1::1", "64:ff9b:1::1",
                                     "::ffff:127.0.0.1", "::ffff:192.0.2.1", "64:ff9b::a00:1",
                                     "2002:c000:0201::1", "::127.0.0.1"};
    for (size_t i = 0; i < sizeof(refused6) / sizeof(refused6[0]); i++)
        assert_non_null(why6(refused6[i]));
    assert_null(why4("93.184.216.34", ""));
    assert_null(why4("1.1.1.1", ""));
    assert_null(why6("2606:4700:4700::1111"));
    assert_null(why6("64:ff9b::101:101")); /* NAT64 of 1.1.1.1 */
    /* the operator may open a private range, never metadata */
    assert_null(why4("10.1.2.3", "10.0.0.0/8"));
    assert_non_null(why4("169.254.169.254", "169.254.0.0/16"));
    assert_string_equal(why4("127.0.0.1", "127.0.0.0/8"), "a loopback address");
    assert_string_equal(why4("127.0.0.2", "127.0.0.0/8"), "a loopback address");
    /* the host's own addresses, whatever the operator allows, in either form */
    struct ifaddrs *ifs;
    assert_int_equal(getifaddrs(&ifs), 0);
    for (struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
            continue;
        char a[INET_ADDRSTRLEN], m[64];
        struct sockaddr_in6 mapped = {.sin6_family = AF_INET6};
        inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, a, sizeof(a));
        assert_non_null(why4(a, "0.0.0.0/0"));
        snprintf(m, sizeof(m), "::ffff:%s", a);
        assert_int_equal(inet_pton(AF_INET6, m, &mapped.sin6_addr), 1);
        assert_non_null(kiln_egress_forbidden((const struct sockaddr *)&mapped, "0.0.0.0/0"));
    }
    freeifaddrs(ifs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_address_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
