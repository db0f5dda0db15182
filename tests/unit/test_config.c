/* Settings: defaults, KILN_* variables, and flags beating variables. */
#include "test.h"

#include <string.h>

#include "core/config.h"

static void test_defaults(void **state)
{
    struct kiln_config cfg;
    char *argv[] = {"kiln-worker", NULL};
    (void)state;
    unsetenv("KILN_JOBS");
    assert_int_equal(kiln_config_parse(&cfg, 1, argv), 0);
    assert_string_equal(cfg.queue, "redis");
    assert_string_equal(cfg.redis, "redis://127.0.0.1:6379");
    assert_string_equal(cfg.jobs, "kiln.jobs");
    assert_string_equal(cfg.results, "kiln.results");
    assert_string_equal(cfg.group, "kiln");
    assert_string_equal(cfg.backend, "auto");
    assert_true(cfg.slots >= 1);
    assert_non_null(cfg.consumer);
    kiln_config_free(&cfg);
}

static void test_env_and_flag(void **state)
{
    struct kiln_config cfg;
    char *argv[] = {"kiln-worker", "--jobs", "from-flag", "--kafka-conf", "a=1",
                    "--kafka-conf", "b=2", NULL};
    (void)state;
    setenv("KILN_JOBS", "from-env", 1);
    setenv("KILN_RESULTS", "res-env", 1);
    setenv("KILN_CLAIM_IDLE_MS", "1234", 1);
    assert_int_equal(kiln_config_parse(&cfg, 7, argv), 0);
    assert_string_equal(cfg.jobs, "from-flag");
    assert_string_equal(cfg.results, "res-env");
    assert_int_equal(cfg.claim_idle_ms, 1234);
    assert_int_equal(cfg.nkafka_conf, 2);
    assert_string_equal(cfg.kafka_conf[1], "b=2");
    kiln_config_free(&cfg);
    unsetenv("KILN_JOBS");
    unsetenv("KILN_RESULTS");
    unsetenv("KILN_CLAIM_IDLE_MS");
}

static void test_bad_values(void **state)
{
    struct kiln_config cfg;
    (void)state;
    char *a1[] = {"kiln-worker", "--slots", "many", NULL};
    assert_true(kiln_config_parse(&cfg, 3, a1) < 0);
    kiln_config_free(&cfg);
    char *a2[] = {"kiln-worker", "--backend", "docker", NULL};
    assert_true(kiln_config_parse(&cfg, 3, a2) < 0);
    kiln_config_free(&cfg);
    char *a3[] = {"kiln-worker", "--timeout-ms", "999999999", NULL};
    assert_true(kiln_config_parse(&cfg, 3, a3) < 0);
    kiln_config_free(&cfg);
    setenv("KILN_SLOTS", "-3", 1);
    char *a4[] = {"kiln-worker", NULL};
    assert_true(kiln_config_parse(&cfg, 1, a4) < 0);
    kiln_config_free(&cfg);
    unsetenv("KILN_SLOTS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_and_flag),
        cmocka_unit_test(test_bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
