/* The egress proxy's request rewriter: placeholders replaced in request
 * heads only, only where bound, bodies and later requests framed right. */
#include "test.h"

#include <string.h>

#include "egress/egress_http.h"

#define PH "kiln-secret-0123456789abcdef0123456789abcdef"

struct sink {
    char out[65536];
    size_t n;
    char denied[256];
};

static void emit(void *arg, const char *data, size_t len)
{
    struct sink *s = arg;
    assert_true(s->n + len < sizeof(s->out));
    memcpy(s->out + s->n, data, len);
    s->n += len;
    s->out[s->n] = '\0';
}

static void deny(void *arg, const struct kiln_egress_subst *sub)
{
    struct sink *s = arg;
    strcat(s->denied, sub->name);
    strcat(s->denied, ";");
}

static const struct kiln_egress_subst bound[] = {
    {"API", PH, sizeof(PH) - 1, "s3cr3t-value", 12, 0},
};
static const struct kiln_egress_subst unbound[] = {
    {"API", PH, sizeof(PH) - 1, NULL, 0, 0},
};

/* Feed `in` whole, then again one byte at a time: the same output. */
static void feed_both(const struct kiln_egress_subst *subs, int proxy_form, const char *in,
                      const char *want, const char *want_denied)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        static struct kiln_http_rw rw;
        struct sink s = {.n = 0};
        char why[200] = "";
        kiln_http_rw_init(&rw, "api.example", 8080, proxy_form, subs, 1, emit, deny, &s);
        size_t n = strlen(in);
        if (bytewise) {
            for (size_t i = 0; i < n; i++)
                assert_int_equal(kiln_http_rw_feed(&rw, in + i, 1, why, sizeof(why)), 0);
        } else {
            assert_int_equal(kiln_http_rw_feed(&rw, in, n, why, sizeof(why)), 0);
        }
        assert_string_equal(s.out, want);
        /* told once per line that held it (byte by byte: the same lines) */
        assert_string_equal(s.denied, want_denied);
    }
}

static void test_headers_and_query_bound(void **state)
{
    (void)state;
    feed_both(bound, 1,
              "GET http://api.example:8080/v1/x?key=" PH "&a=1 HTTP/1.1\r\n"
              "Host: api.example:8080\r\nAuthorization: Bearer " PH "\r\nX-Key: " PH "\r\n"
              "Cookie: k=" PH "\r\n\r\n",
              "GET /v1/x?key=s3cr3t-value&a=1 HTTP/1.1\r\n"
              "Host: api.example:8080\r\nAuthorization: Bearer s3cr3t-value\r\nX-Key: s3cr3t-value\r\n"
              "Cookie: k=s3cr3t-value\r\n\r\n", "");
}

static void test_unbound_left_and_denied(void **state)
{
    (void)state;
    feed_both(unbound, 1,
              "GET http://api.example:8080/ HTTP/1.1\r\nHost: api.example:8080\r\nAuthorization: Bearer " PH "\r\nX: " PH "\r\n\r\n",
              "GET / HTTP/1.1\r\nHost: api.example:8080\r\nAuthorization: Bearer " PH "\r\nX: " PH "\r\n\r\n", "API;API;");
}

static void test_body_untouched_next_request_rewritten(void **state)
{
    (void)state;
    feed_both(bound, 1,
              "POST http://api.example:8080/p HTTP/1.1\r\nHost: api.example:8080\r\nContent-Length: 49\r\nX: " PH "\r\n\r\n"
              "body " PH
              "GET http://api.example:8080/q HTTP/1.0\r\nX: " PH "\r\n\r\n",
              "POST /p HTTP/1.1\r\nHost: api.example:8080\r\nContent-Length: 49\r\nX: s3cr3t-value\r\n\r\n"
              "body " PH
              "GET /q HTTP/1.0\r\nX: s3cr3t-value\r\n\r\n", "");
}

static void test_chunked_body(void **state)
{
    (void)state;
    /* a body whose chunk looks like a head must stay a body */
    feed_both(bound, 0,
              "POST /c HTTP/1.1\r\nHost: api.example:8080\r\nTransfer-Encoding: chunked\r\n\r\n"
              "1b\r\nGET /x HTTP/1.1\r\nX: " "abc\r\n\r\n\r\n0\r\n\r\n"
              "GET /after HTTP/1.1\r\nhost: API.example:8080\r\nA: " PH "\r\n\r\n",
              "POST /c HTTP/1.1\r\nHost: api.example:8080\r\nTransfer-Encoding: chunked\r\n\r\n"
              "1b\r\nGET /x HTTP/1.1\r\nX: " "abc\r\n\r\n\r\n0\r\n\r\n"
              "GET /after HTTP/1.1\r\nhost: API.example:8080\r\nA: s3cr3t-value\r\n\r\n", "");
}

static void test_origin_forms(void **state)
{
    (void)state;
    feed_both(bound, 1, "GET http://api.example:8080 HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\n\r\n", "");
    feed_both(bound, 1, "GET http://API.example:8080?q=1#frag HTTP/1.1\r\nHost: api.example:8080\r\n\r\n",
              "GET /?q=1 HTTP/1.1\r\nHost: api.example:8080\r\n\r\n", "");
    /* a fragment with no path nor query before it (the fuzzer's find: the
     * target's end came before its start) */
    feed_both(bound, 1, "GET http://api.example:8080?#4aab HTTP/1.1\r\nHost: api.example:8080\r\n\r\n",
              "GET / HTTP/1.1\r\nHost: api.example:8080\r\n\r\n", "");
    /* Host, Origin and Referer (echoed by servers) never get a value */
    feed_both(bound, 0, "GET /a HTTP/1.1\r\nHost: api.example:8080\r\nOrigin: " PH "\r\nreferer: x" PH
              "\r\nX: " PH "\r\n\r\n",
              "GET /a HTTP/1.1\r\nHost: api.example:8080\r\nOrigin: " PH "\r\nreferer: x" PH
              "\r\nX: s3cr3t-value\r\n\r\n", "");
}

static void test_refusals(void **state)
{
    (void)state;
    static struct kiln_http_rw rw;
    struct sink s = {.n = 0};
    char why[200];
    /* another destination on a proxy connection */
    kiln_http_rw_init(&rw, "api.example", 8080, 1, bound, 1, emit, deny, &s);
    const char *a = "GET http://api.example:8080/ HTTP/1.1\r\nHost: api.example:8080\r\n\r\n"
                    "GET http://evil.example/?k=" PH " HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    assert_int_equal(kiln_http_rw_feed(&rw, a, strlen(a), why, sizeof(why)), -1);
    assert_non_null(strstr(why, "one destination"));
    assert_null(strstr(s.out, "evil"));
    assert_null(strstr(s.out, "s3cr3t"));
    /* the same host on another port */
    s.n = 0;
    kiln_http_rw_init(&rw, "api.example", 8080, 1, bound, 1, emit, deny, &s);
    a = "GET http://api.example:9090/ HTTP/1.1\r\nX: " PH "\r\n\r\n";
    assert_int_equal(kiln_http_rw_feed(&rw, a, strlen(a), why, sizeof(why)), -1);
    assert_int_equal(s.n, 0);
    /* not HTTP */
    kiln_http_rw_init(&rw, "api.example", 8080, 0, bound, 1, emit, deny, &s);
    a = "\x16\x03\x01 hello\r\n\r\n";
    assert_int_equal(kiln_http_rw_feed(&rw, a, strlen(a), why, sizeof(why)), -1);
    assert_int_equal(s.n, 0);
    /* a head that never ends */
    kiln_http_rw_init(&rw, "api.example", 8080, 0, bound, 1, emit, deny, &s);
    char big[4096];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    int r = 0;
    for (int i = 0; i < 5 && r == 0; i++)
        r = kiln_http_rw_feed(&rw, big, sizeof(big), why, sizeof(why));
    assert_int_equal(r, -1);
    assert_non_null(strstr(why, "over"));
    assert_int_equal(s.n, 0);
}

/* Heads a server could read otherwise than the proxy, or that would carry
 * a value elsewhere or back: the connection ends, nothing is sent. */
static void test_ambiguous_heads_refused(void **state)
{
    (void)state;
    static const struct { int proxy_form; const char *head, *says; } bad[] = {
        {0, "GET / HTTP/1.1\r\nHost: evil.example\r\nX: " PH "\r\n\r\n", "Host header must name"},
        {0, "GET / HTTP/1.1\r\nHost: api.example:8080\r\nHost: evil.example\r\nX: " PH "\r\n\r\n", "once"},
        {0, "GET / HTTP/1.1\r\nHost: api.example\r\nX: " PH "\r\n\r\n", "Host header must name"},
        {0, "GET / HTTP/1.1\r\nX: " PH "\r\n\r\n", "without a Host"},
        {0, "GET http://evil.example/ HTTP/1.1\r\nHost: api.example:8080\r\nX: " PH "\r\n\r\n", "must name a path"},
        {1, "GET http://api.example:8080/ HTTP/1.1\r\nHost: evil.example\r\nX: " PH "\r\n\r\n", "Host header must name"},
        {0, "POST / HTTP/1.1\nHost: api.example:8080\nContent-Length: 60\n\n{" PH "}\r\n\r\n", "alone"},
        {0, "GET / HTTP/1.1\r\nHost: api.example:8080\rX: " PH "\r\n\r\n", "alone"},
        {0, "TRACE / HTTP/1.1\r\nHost: api.example:8080\r\nX: " PH "\r\n\r\n", "TRACE"},
        /* a second Host some servers read: a space before its colon, a
         * line folded onto it, a name that is no token */
        {0, "GET / HTTP/1.1\r\nHost: api.example:8080\r\nHost : evil.example\r\nX: " PH "\r\n\r\n",
         "space before"},
        {0, "GET / HTTP/1.1\r\nHost: api.example:8080\r\nHost\t: evil.example\r\nX: " PH "\r\n\r\n",
         "header"},
        {0, "GET / HTTP/1.1\r\nHost: api.example:8080\r\n evil.example\r\nX: " PH "\r\n\r\n", "folded"},
        {0, "GET / HTTP/1.1\r\nX-A: 1\r\n\tHost: evil.example\r\nHost: api.example:8080\r\nX: " PH
            "\r\n\r\n", "folded"},
        {0, "GET / HTTP/1.1\r\nHost: api.example:8080\r\nX(y): " PH "\r\n\r\n", "header"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        static struct kiln_http_rw rw;
        struct sink s = {.n = 0};
        char why[200] = "";
        kiln_http_rw_init(&rw, "api.example", 8080, bad[i].proxy_form, bound, 1, emit, deny, &s);
        assert_int_equal(kiln_http_rw_feed(&rw, bad[i].head, strlen(bad[i].head), why, sizeof(why)), -1);
        if (strstr(why, bad[i].says) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, why, bad[i].says);
        assert_int_equal(s.n, 0);
    }
    /* a value many times over stays within what a head may grow to */
    static struct kiln_http_rw rw;
    static char head[KILN_HTTP_HEAD_MAX];
    static const struct kiln_egress_subst big[] = {{"API", PH, sizeof(PH) - 1, NULL, 2000, 0}};
    static char value[2000];
    memset(value, 'v', sizeof(value));
    struct kiln_egress_subst b = big[0];
    b.value = value;
    struct sink s = {.n = 0};
    char why[200];
    int o = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: api.example:8080\r\nX: ");
    for (int i = 0; i < 100; i++)
        o += snprintf(head + o, sizeof(head) - (size_t)o, PH);
    snprintf(head + o, sizeof(head) - (size_t)o, "\r\n\r\n");
    kiln_http_rw_init(&rw, "api.example", 8080, 0, &b, 1, emit, deny, &s);
    assert_int_equal(kiln_http_rw_feed(&rw, head, strlen(head), why, sizeof(why)), -1);
    assert_non_null(strstr(why, "once its secrets are in"));
    assert_int_equal(s.n, 0);
}

static void test_upgrade_is_raw(void **state)
{
    (void)state;
    feed_both(bound, 0,
              "GET /ws HTTP/1.1\r\nHost: [api.example]:8080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX: " PH "\r\n\r\n"
              "frame " PH " GET / HTTP/1.1\r\n\r\n",
              "GET /ws HTTP/1.1\r\nHost: [api.example]:8080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX: s3cr3t-value\r\n\r\n"
              "frame " PH " GET / HTTP/1.1\r\n\r\n", "");
}

static void test_substitute_sizes(void **state)
{
    (void)state;
    const struct kiln_egress_subst two[] = {
        {"A", "kiln-secret-a", 13, "x", 1, 0},
        {"B", "kiln-secret-b", 13, NULL, 0, 0},
    };
    struct sink s = {.n = 0};
    size_t n;
    const char *in = "kiln-secret-akiln-secret-b kiln-secret-a kiln-secret-b kiln-secret-";
    char *out = kiln_http_substitute(in, strlen(in), two, 2, &n, deny, &s);
    assert_non_null(out);
    assert_string_equal(out, "xkiln-secret-b x kiln-secret-b kiln-secret-");
    assert_int_equal(n, strlen(out));
    assert_string_equal(s.denied, "B;");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_and_query_bound),
        cmocka_unit_test(test_unbound_left_and_denied),
        cmocka_unit_test(test_body_untouched_next_request_rewritten),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_origin_forms),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_ambiguous_heads_refused),
        cmocka_unit_test(test_upgrade_is_raw),
        cmocka_unit_test(test_substitute_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
