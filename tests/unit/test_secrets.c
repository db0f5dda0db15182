/* The secrets file: what it accepts, what it refuses (never quoting a
 * value), and rotation. */
#include "test.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/secrets.h"

static char path[64];

static void put(const char *text)
{
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0); /* a new inode: seen as changed */
}

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/kiln-secrets-%d", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void test_load_and_find(void **state)
{
    (void)state;
    struct kiln_secrets s = {0};
    char err[256] = "";
    put("# comment\n\nAPI api.example,*.svc.example:8443 Bearer-ish value with spaces  \r\n"
        "  TOKEN http://10.0.0.5:8080,[::1]:443,http://plain.example t0k\n");
    assert_int_equal(kiln_secrets_load(&s, path, err, sizeof(err)), 0);
    assert_int_equal(s.n, 2);
    const struct kiln_secret *a = kiln_secrets_find(&s, "API");
    assert_non_null(a);
    assert_string_equal(a->value, "Bearer-ish value with spaces");
    assert_int_equal(a->vlen, strlen(a->value));
    assert_int_equal(a->nhosts, 2);
    assert_string_equal(a->hosts[0], "api.example");
    assert_string_equal(a->hosts[1], "*.svc.example:8443");
    assert_int_equal(a->plain, 0); /* HTTPS only, a port named or not */
    /* http:// marks plain HTTP, on port 80 when none is named */
    const struct kiln_secret *t = kiln_secrets_find(&s, "TOKEN");
    assert_int_equal(t->nhosts, 3);
    assert_string_equal(t->hosts[0], "10.0.0.5:8080");
    assert_string_equal(t->hosts[2], "plain.example:80");
    assert_int_equal(t->plain, 1u | 4u);
    assert_null(kiln_secrets_find(&s, "api"));
    assert_int_equal(kiln_secrets_refresh(&s, err, sizeof(err)), 0);
    kiln_secrets_clear(&s);
}

static void test_refusals_never_quote_the_value(void **state)
{
    (void)state;
    static const struct { const char *text, *says; } bad[] = {
        {"API api.example\n", "want NAME HOSTS VALUE"},
        {"bad/name api.example v4lue-one\n", "name must be"},
        {"API * v4lue-one\n", "host pattern"},
        {"API a*.example v4lue-one\n", "host pattern"},
        {"API user@host v4lue-one\n", "host pattern"},
        {"API api.example: v4lue-one\n", "host pattern"},
        {"API api.example:0 v4lue-one\n", "host pattern"},
        {"API api.example:http v4lue-one\n", "host pattern"},
        {"API api.example:65536 v4lue-one\n", "host pattern"},
        {"API ::1 v4lue-one\n", "host pattern"},
        {"API [::1 v4lue-one\n", "host pattern"},
        {"v4lue-one\n", "want NAME HOSTS VALUE"},
        {"API api.example v4lue-one", "no line end"},
        {"API api.example v4lue\x01one\n", "control character"},
        {"API api.example v4lue-one\nAPI b.example v4lue-one\n", "named twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct kiln_secrets s = {0};
        char err[256] = "";
        put(bad[i].text);
        assert_int_equal(kiln_secrets_load(&s, path, err, sizeof(err)), -EINVAL);
        if (strstr(err, bad[i].says) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].says);
        assert_null(strstr(err, "v4lue"));
        assert_int_equal(s.n, 0);
    }
}

static void test_rotation_keeps_old_on_error(void **state)
{
    (void)state;
    struct kiln_secrets s = {0};
    char err[256] = "";
    put("API api.example first\n");
    assert_int_equal(kiln_secrets_load(&s, path, err, sizeof(err)), 0);
    put("API api.example second\nNEW new.example n\n");
    assert_int_equal(kiln_secrets_refresh(&s, err, sizeof(err)), 1);
    assert_string_equal(kiln_secrets_find(&s, "API")->value, "second");
    assert_non_null(kiln_secrets_find(&s, "NEW"));
    put("API api.example third\nbroken\n");
    assert_true(kiln_secrets_refresh(&s, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "line 2"));
    assert_string_equal(kiln_secrets_find(&s, "API")->value, "second");
    unlink(path);
    assert_int_equal(kiln_secrets_refresh(&s, err, sizeof(err)), -ENOENT);
    assert_string_equal(kiln_secrets_find(&s, "API")->value, "second");
    kiln_secrets_clear(&s);
}

static void test_uses_copy_and_placeholders(void **state)
{
    (void)state;
    struct kiln_secrets s = {0};
    struct kiln_secret_use *u = NULL;
    char err[256] = "";
    put("API api.example,b.example v4lue-one\n");
    assert_int_equal(kiln_secrets_load(&s, path, err, sizeof(err)), 0);
    const struct kiln_kv unknown[] = {{"K", "API"}, {"T", "NOPE"}};
    assert_int_equal(kiln_secret_uses(&s, unknown, 2, &u, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "'NOPE'"));
    assert_null(strstr(err, "v4lue"));
    const struct kiln_kv want[] = {{"K", "API"}, {"K2", "API"}};
    assert_int_equal(kiln_secret_uses(&s, want, 2, &u, err, sizeof(err)), 0);
    kiln_secrets_clear(&s); /* the uses are copies: the file may change under a job */
    assert_string_equal(u[0].eg.value, "v4lue-one");
    assert_int_equal(u[1].eg.nhosts, 2);
    assert_string_equal(u[1].eg.hosts[1], "b.example");
    assert_ptr_equal(u[0].eg.placeholder, u[0].placeholder);
    assert_int_equal(kiln_secret_uses_renew(u, 2), 0);
    char first[KILN_PLACEHOLDER_LEN + 1];
    strcpy(first, u[0].placeholder);
    assert_int_equal(strlen(first), KILN_PLACEHOLDER_LEN);
    assert_int_equal(strncmp(first, "kiln-secret-", 12), 0);
    assert_int_equal(strspn(first + 12, "0123456789abcdef"), 32);
    assert_string_not_equal(u[0].placeholder, u[1].placeholder);
    assert_int_equal(kiln_secret_uses_renew(u, 2), 0);
    assert_string_not_equal(first, u[0].placeholder);
    kiln_secret_uses_free(u, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_and_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_never_quote_the_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_keeps_old_on_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uses_copy_and_placeholders, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
