/* Settings: defaults, KILN_* variables, and flags beating variables. */
#include "test.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

static void test_defaults(void **state)
{
    struct kiln_config cfg;
    char *argv[] = {"kiln-worker", NULL};
    (void)state;
    unsetenv("KILN_JOBS");
    assert_int_equal(kiln_config_parse(&cfg, 1, argv), 0);
    assert_string_equal(cfg.q.queue, "redis");
    assert_string_equal(cfg.q.redis, "redis://127.0.0.1:6379");
    assert_string_equal(cfg.q.jobs, "kiln.jobs");
    assert_string_equal(cfg.results, "kiln.results");
    assert_string_equal(cfg.q.group, "kiln");
    assert_string_equal(cfg.sb.backend, "auto");
    assert_true(cfg.slots >= 1);
    assert_non_null(cfg.q.consumer);
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
    assert_string_equal(cfg.q.jobs, "from-flag");
    assert_string_equal(cfg.results, "res-env");
    assert_int_equal(cfg.q.claim_idle_ms, 1234);
    assert_int_equal(cfg.q.nkafka_conf, 2);
    assert_string_equal(cfg.q.kafka_conf[1], "b=2");
    kiln_config_free(&cfg);
    unsetenv("KILN_JOBS");
    unsetenv("KILN_RESULTS");
    unsetenv("KILN_CLAIM_IDLE_MS");
}

/* Parse argv expecting a refusal; returns what the parser printed on stderr
 * (a static buffer). Fails unless the result is exactly -EINVAL. */
static const char *refused(int argc, char **argv)
{
    static char msg[1024];
    struct kiln_config cfg;
    struct stderr_capture cap;
    stderr_begin(&cap);
    int r = kiln_config_parse(&cfg, argc, argv);
    stderr_end(&cap, msg, sizeof(msg));
    kiln_config_free(&cfg);
    if (r != -EINVAL)
        fail_msg("%s %s: got %d, want -EINVAL (stderr: %s)", argv[1] ? argv[1] : "", argv[1] && argv[2] ? argv[2] : "", r, msg);
    return msg;
}

static void test_bad_values(void **state)
{
    (void)state;
    char *a1[] = {"kiln-worker", "--slots", "many", NULL};
    assert_string_equal(refused(3, a1), "kiln-worker: --slots: 'many' is not a non-negative integer\n");
    char *a2[] = {"kiln-worker", "--backend", "docker", NULL};
    assert_string_equal(refused(3, a2), "kiln-worker: --backend: unknown value 'docker'\n");
    char *a3[] = {"kiln-worker", "--timeout-ms", "999999999", NULL};
    assert_string_equal(refused(3, a3),
                        "kiln-worker: --timeout-ms must be between 1 and --max-timeout-ms\n");
    setenv("KILN_SLOTS", "-3", 1);
    char *a4[] = {"kiln-worker", NULL};
    assert_string_equal(refused(1, a4), "kiln-worker: KILN_SLOTS: '-3' is not a non-negative integer\n");
    unsetenv("KILN_SLOTS");
    char *a5[] = {"kiln-worker", "--require-signature", NULL};
    assert_string_equal(refused(2, a5), "kiln-worker: --require-signature needs --keys-file\n");
    char *a6[] = {"kiln-worker", "--rootfs", "/srv/image", NULL};
    assert_string_equal(refused(3, a6), "kiln-worker: --rootfs needs --rootfs-digest: the worker "
                                        "runs only an image it expects\n");
    /* exposed ports: a URL template the worker can fill, TLS files as a pair */
    char *e1[] = {"kiln-worker", "--expose-url", "https://preview.example.com", NULL};
    assert_string_equal(refused(3, e1), "kiln-worker: --expose-url https://preview.example.com: it must hold "
                                        "{token} once\n");
    char *e2[] = {"kiln-worker", "--expose-url", "ftp://{token}.x", NULL};
    assert_string_equal(refused(3, e2), "kiln-worker: --expose-url ftp://{token}.x: it must start with http:// "
                                        "or https://\n");
    char *e3[] = {"kiln-worker", "--expose-tls-cert", "/etc/c.pem", NULL};
    assert_string_equal(refused(3, e3), "kiln-worker: --expose-tls-cert and --expose-tls-key go together\n");
    char *e4[] = {"kiln-worker", "--expose-max-conns", "0", NULL};
    assert_non_null(strstr(refused(3, e4), "--expose-max-conns and --expose-wait-ms must be at least 1"));
    char *a7[] = {"kiln-worker", "stray", NULL};
    assert_string_equal(refused(2, a7), "kiln-worker: unexpected argument 'stray'\n");
    /* an unknown flag: the closest one is named, not the whole usage */
    char *a8[] = {"kiln-worker", "--slotz", "2", NULL};
    const char *said = refused(3, a8);
    assert_non_null(strstr(said, "kiln-worker: did you mean --slots?\n"));
    assert_null(strstr(said, "usage:"));
    /* python's template imports what --preload names: names only, never code */
    static const char *bad_preload[] = {"os;import x", "a,,b", "a,", ".a", "a..b", "1a", "os.system('x')",
                                        "a b"};
    for (size_t i = 0; i < sizeof(bad_preload) / sizeof(bad_preload[0]); i++) {
        char *a[] = {"kiln-worker", "--preload", (char *)bad_preload[i], NULL};
        char want[256];
        snprintf(want, sizeof(want),
                 "kiln-worker: --preload: '%s' is not a comma-separated list of module names (a.b_c,d)\n",
                 bad_preload[i]);
        assert_string_equal(refused(3, a), want);
    }
}

static void test_preload(void **state)
{
    struct kiln_config cfg;
    (void)state;
    char *a1[] = {"kiln-worker", NULL};
    assert_int_equal(kiln_config_parse(&cfg, 1, a1), 0);
    assert_non_null(strstr(cfg.preload, "typing,collections,"));
    kiln_config_free(&cfg);
    char *a2[] = {"kiln-worker", "--preload", "", NULL};
    assert_int_equal(kiln_config_parse(&cfg, 3, a2), 0);
    assert_string_equal(cfg.preload, "");
    kiln_config_free(&cfg);
    char *a3[] = {"kiln-worker", "--preload", "numpy,os.path,_x1", NULL};
    assert_int_equal(kiln_config_parse(&cfg, 3, a3), 0);
    assert_string_equal(cfg.preload, "numpy,os.path,_x1");
    kiln_config_free(&cfg);
}

/* --image, --image-digest, --image-preload: NAME=VALUE each, an image once,
 * a digest for each image, nothing of an image not given */
static void test_images(void **state)
{
    struct kiln_config cfg;
    (void)state;
    char *ok[] = {"kiln-worker", "--image", "python-data=/srv/pd.squashfs", "--image", "r4=/srv/r4",
                  "--image-digest", "r4=ab", "--image-digest", "python-data=cd",
                  "--image-preload", "python-data=numpy,pandas", "--kafka-conf", "a=b", NULL};
    assert_int_equal(kiln_config_parse(&cfg, 13, ok), 0);
    assert_string_equal(kiln_config_image_value(cfg.images, "python-data"), "/srv/pd.squashfs");
    assert_string_equal(kiln_config_image_value(cfg.images, "r4"), "/srv/r4");
    assert_null(kiln_config_image_value(cfg.images, "python"));
    assert_string_equal(kiln_config_image_value(cfg.image_digests, "python-data"), "cd");
    assert_string_equal(kiln_config_image_value(cfg.image_preloads, "python-data"), "numpy,pandas");
    assert_null(kiln_config_image_value(cfg.image_preloads, "r4"));
    assert_int_equal(cfg.q.nkafka_conf, 1); /* the other list still counted */
    kiln_config_free(&cfg);
    char *b1[] = {"kiln-worker", "--image", "pd=/srv/pd", NULL};
    assert_string_equal(refused(3, b1), "kiln-worker: --image pd needs --image-digest pd=HEX: the worker runs "
                                        "only an image it expects\n");
    char *b2[] = {"kiln-worker", "--image", "/srv/pd", NULL};
    assert_string_equal(refused(3, b2), "kiln-worker: --image '/srv/pd': give NAME=VALUE\n");
    char *b3[] = {"kiln-worker", "--image", "Data=/srv/pd", NULL};
    assert_non_null(strstr(refused(3, b3), "--image: 'Data' cannot name an image"));
    char *b4[] = {"kiln-worker", "--image", "default=/srv/pd", NULL};
    assert_non_null(strstr(refused(3, b4), "--image: 'default' cannot name an image"));
    char *b5[] = {"kiln-worker", "--image", "pd=/a", "--image", "pd=/b", "--image-digest", "pd=ab", NULL};
    assert_string_equal(refused(7, b5), "kiln-worker: --image: image pd given twice\n");
    char *b6[] = {"kiln-worker", "--image-digest", "pd=ab", NULL};
    assert_string_equal(refused(3, b6), "kiln-worker: --image-digest: no --image pd=PATH\n");
    char *b8[2 + 2 * (KILN_MAX_IMAGES + 1)] = {"kiln-worker"};
    char names[KILN_MAX_IMAGES + 1][16];
    for (int i = 0; i <= KILN_MAX_IMAGES; i++) {
        snprintf(names[i], sizeof(names[i]), "i%d=/a", i);
        b8[1 + 2 * i] = "--image";
        b8[2 + 2 * i] = names[i];
    }
    assert_string_equal(refused(1 + 2 * (KILN_MAX_IMAGES + 1), b8), "kiln-worker: --image: at most 16 images\n");
    char *b7[] = {"kiln-worker", "--image", "pd=/a", "--image-digest", "pd=ab", "--image-preload", "pd=os;x", NULL};
    assert_non_null(strstr(refused(7, b7), "--image-preload pd: 'os;x' is not a comma-separated list"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_preload),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_env_and_flag),
        cmocka_unit_test(test_bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
