/*
 * The metrics' label tables: a bounded set of values each, and what
 * happens past the bound: the extra values are counted under "other"
 * (never folded into a real value), totals stay right.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"

/* The value of the sample line that starts with `prefix` ("name{...}"),
 * or -1 when there is none. */
static double sample(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static char *text(void)
{
    size_t len;
    char *t = kiln_metrics_text(NULL, &len);
    assert_non_null(t);
    return t;
}

static void test_values_past_the_table_are_other(void **state)
{
    (void)state;
    char name[32];
    /* 31 real values, then 9 more: those are "other" */
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "p%02d", i);
        kiln_metrics_job_started(name);
    }
    kiln_metrics_job_started("p00");
    kiln_metrics_job_started("p39");
    char *t = text();
    assert_true(sample(t, "kiln_jobs_started_total{plugin=\"p00\"}") == 2);
    assert_true(sample(t, "kiln_jobs_started_total{plugin=\"p30\"}") == 1);
    assert_true(sample(t, "kiln_jobs_started_total{plugin=\"p31\"}") == -1);
    assert_true(sample(t, "kiln_jobs_started_total{plugin=\"p39\"}") == -1);
    /* the 32nd real value is not where the rest went */
    assert_true(sample(t, "kiln_jobs_started_total{plugin=\"other\"}") == 10);
    free(t);
}

static void test_long_values_are_other(void **state)
{
    (void)state;
    char plugin[80];
    memset(plugin, 'x', sizeof(plugin) - 1);
    plugin[sizeof(plugin) - 1] = '\0';
    kiln_metrics_reconnect("redis");
    kiln_metrics_reconnect(plugin);
    char *t = text();
    assert_true(sample(t, "kiln_source_reconnects_total{source=\"redis\"}") == 1);
    assert_true(sample(t, "kiln_source_reconnects_total{source=\"other\"}") == 1);
    assert_null(strstr(t, "xxxxxxxxxxxxxxxxxxxx"));
    free(t);
}

static void test_plugin_status_other_keeps_both_labels(void **state)
{
    (void)state;
    char plugin[60];
    memset(plugin, 'y', sizeof(plugin) - 1);
    plugin[sizeof(plugin) - 1] = '\0';
    kiln_metrics_job_finished("shell", "ok", 0.01);
    /* "plugin|status" longer than a label: both labels "other" */
    kiln_metrics_job_finished(plugin, "ok", 0.01);
    char *t = text();
    assert_true(sample(t, "kiln_jobs_finished_total{plugin=\"shell\",status=\"ok\"}") == 1);
    assert_true(sample(t, "kiln_jobs_finished_total{plugin=\"other\",status=\"other\"}") == 1);
    /* the duration histogram's label alone is too long too */
    assert_true(sample(t, "kiln_job_duration_seconds_count{plugin=\"other\"}") == 1);
    assert_true(sample(t, "kiln_job_duration_seconds_count{plugin=\"shell\"}") == 1);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_past_the_table_are_other),
        cmocka_unit_test(test_long_values_are_other),
        cmocka_unit_test(test_plugin_status_other_keeps_both_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
