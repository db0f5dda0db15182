/* --redis parsing (worker/queue/redis_url.h): exact results for good URLs,
 * a reason for each bad one, and never a password in the message. */
#include <errno.h>
#include <string.h>

#include "test.h"

#include "queue/redis_url.h"

static void good(const char *url, const char *host, int port, int db, const char *user,
                 const char *password)
{
    struct kiln_redis_url u;
    char err[256] = "";
    if (kiln_redis_url_parse(&u, url, err, sizeof(err)) != 0)
        fail_msg("%s: %s", url, err);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, port);
    assert_int_equal(u.db, db);
    if (user == NULL)
        assert_null(u.user);
    else
        assert_string_equal(u.user, user);
    if (password == NULL)
        assert_null(u.password);
    else
        assert_string_equal(u.password, password);
    kiln_redis_url_free(&u);
    assert_null(u.user);
    assert_null(u.password);
}

static void test_good(void **state)
{
    (void)state;
    good("redis://127.0.0.1", "127.0.0.1", 6379, 0, NULL, NULL);
    good("redis://localhost/", "localhost", 6379, 0, NULL, NULL);
    good("redis://h:6380", "h", 6380, 0, NULL, NULL);
    good("redis://h:1/15", "h", 1, 15, NULL, NULL);
    good("redis://h:65535/0", "h", 65535, 0, NULL, NULL);
    good("redis://h/3", "h", 6379, 3, NULL, NULL);
    good("redis://:s3cret@h", "h", 6379, 0, NULL, "s3cret");
    good("redis://alice:s3cret@h:7000/2", "h", 7000, 2, "alice", "s3cret");
    good("redis://alice:@h", "h", 6379, 0, "alice", ""); /* an empty password is sent */
    good("redis://:p:a:ss@h", "h", 6379, 0, NULL, "p:a:ss"); /* the first ':' splits */
    good("redis://redis.internal.example:6379", "redis.internal.example", 6379, 0, NULL, NULL);
}

/* `url` is refused with -EINVAL and a message that contains `why`. */
static void bad(const char *url, const char *why)
{
    struct kiln_redis_url u;
    char err[512] = "";
    if (kiln_redis_url_parse(&u, url, err, sizeof(err)) != -EINVAL)
        fail_msg("%s: accepted", url);
    if (strstr(err, why) == NULL)
        fail_msg("%s: '%s' does not say '%s'", url, err, why);
    if (strstr(err, "bad Redis URL '") != err)
        fail_msg("%s: '%s'", url, err);
    if (strstr(err, "want redis://[[user]:password@]host[:port][/db]") == NULL)
        fail_msg("%s: '%s' does not show the form", url, err);
    assert_null(u.user); /* nothing left to free */
    assert_null(u.password);
}

static void test_bad(void **state)
{
    (void)state;
    bad("", "does not start with redis://");
    bad("http://h", "does not start with redis://");
    bad("rediss://h", "does not start with redis://");
    bad("redis://", "no host");
    bad("redis://:6379", "no host");
    bad("redis:///1", "no host");
    bad("redis://user@h", "no ':' before the password");
    bad("redis://h:", "port");
    bad("redis://h:0", "port");
    bad("redis://h:65536", "port");
    bad("redis://h:-1", "port");
    bad("redis://h:x", "port");
    bad("redis://h:6379x", "unexpected text");
    bad("redis://h/x", "database");
    bad("redis://h/1x", "database");
    bad("redis://h/-1", "database");
    bad("redis://h/99999999999", "database");
    bad("redis://h:6379/1/2", "database");
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost));
    memcpy(longhost, "redis://", 8);
    longhost[sizeof(longhost) - 1] = '\0';
    bad(longhost, "host name is too long");
}

static void test_password_not_shown(void **state)
{
    struct kiln_redis_url u;
    char err[512] = "";
    (void)state;
    assert_int_equal(kiln_redis_url_parse(&u, "redis://alice:hunter2@h:99999", err, sizeof(err)),
                     -EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_null(strstr(err, "alice"));
    assert_non_null(strstr(err, "'redis://***@h:99999'"));
}

static void test_err_truncated(void **state)
{
    struct kiln_redis_url u;
    char err[8];
    (void)state;
    memset(err, 'x', sizeof(err));
    assert_int_equal(kiln_redis_url_parse(&u, "nope", err, sizeof(err)), -EINVAL);
    assert_int_equal(err[sizeof(err) - 1], '\0'); /* always terminated */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_password_not_shown),
        cmocka_unit_test(test_err_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
