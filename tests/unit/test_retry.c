/* The retry policy (core/retry.c): which failures are tried again, when
 * they become dead letters, how long each backoff is, and the record the
 * dead letters get. */
#include "test.h"

#include <string.h>

#include "core/retry.h"
#include "wire/proto.h"

static enum kiln_retry_verdict decide(int known, int runs, int stopping, unsigned attempt,
                                      unsigned max)
{
    struct kiln_retry_case c = {known, runs, stopping, attempt, max};
    return kiln_retry_decide(&c);
}

static void failures_of_kiln_are_retried_up_to_the_limit(void **state)
{
    (void)state;
    assert_int_equal(decide(1, 0, 0, 1, 3), KILN_RETRY_AGAIN);
    assert_int_equal(decide(1, 0, 0, 2, 3), KILN_RETRY_AGAIN);
    assert_int_equal(decide(1, 0, 0, 3, 3), KILN_RETRY_DEAD_LETTER);
    assert_int_equal(decide(1, 0, 0, 7, 3), KILN_RETRY_DEAD_LETTER); /* redelivered past it */
    assert_int_equal(decide(1, 0, 0, 1, 1), KILN_RETRY_DEAD_LETTER); /* --max-attempts 1 */
}

static void some_failures_are_reported_as_they_are(void **state)
{
    (void)state;
    /* an undecodable job, or one whose plugin is not here: nothing to retry */
    assert_int_equal(decide(0, 0, 0, 1, 3), KILN_RETRY_REPORT);
    /* a job with runs reports each input as it ends */
    assert_int_equal(decide(1, 1, 0, 1, 3), KILN_RETRY_REPORT);
    /* a draining worker leaves nothing half-retried */
    assert_int_equal(decide(1, 0, 1, 1, 3), KILN_RETRY_REPORT);
    /* ... even at the last attempt: no dead letter while stopping */
    assert_int_equal(decide(1, 0, 1, 3, 3), KILN_RETRY_REPORT);
}

static void backoff_doubles_caps_and_jitters_into_its_upper_half(void **state)
{
    (void)state;
    /* rnd 0 is the lower bound d/2; rnd d/2 (mod d/2+1) the upper, d */
    assert_int_equal(kiln_retry_delay(100, 0, 0), 50);
    assert_int_equal(kiln_retry_delay(100, 0, 50), 100);
    assert_int_equal(kiln_retry_delay(100, 0, 51), 50); /* wraps: never past d */
    assert_int_equal(kiln_retry_delay(100, 1, 0), 100);
    assert_int_equal(kiln_retry_delay(100, 1, 100), 200);
    assert_int_equal(kiln_retry_delay(100, 3, 400), 800);
    /* capped at 30 s, however many retries, and without overflow */
    assert_int_equal(kiln_retry_delay(100, 9, 15000), 30000);
    assert_int_equal(kiln_retry_delay(100, 1000, 0), 15000);
    assert_int_equal(kiln_retry_delay(UINT64_MAX / 2, 5, 0), 15000);
    for (uint64_t r = 0; r < 5000; r += 7) {
        uint64_t d = kiln_retry_delay(250, 2, r * 2654435761u);
        assert_true(d >= 500 && d <= 1000);
    }
}

static void the_log_keeps_the_latest_reasons(void **state)
{
    (void)state;
    struct kiln_retry_log log = {0};
    char buf[32];
    assert_string_equal(kiln_retry_last(&log), "?");
    assert_int_equal(kiln_retry_note(&log, NULL), 0);
    assert_string_equal(kiln_retry_last(&log), "internal failure");
    for (int i = 1; i <= 20; i++) {
        snprintf(buf, sizeof(buf), "reason %d", i);
        assert_int_equal(kiln_retry_note(&log, buf), 0);
    }
    assert_int_equal(log.n, KILN_RETRY_REASONS);
    /* 21 noted, 16 kept: reasons 5..20, oldest first */
    assert_string_equal(log.reasons[0], "reason 5");
    assert_string_equal(log.reasons[15], "reason 20");
    assert_string_equal(kiln_retry_last(&log), "reason 20");
    kiln_retry_log_free(&log);
    assert_int_equal(log.n, 0);
}

static void the_dead_letter_carries_the_job_and_every_reason(void **state)
{
    (void)state;
    struct kiln_retry_log log = {0};
    static const unsigned char job[] = {0x81, 0xa2, 'i', 'd', 0xa1, 'x', 0x00};
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    int64_t n;
    assert_int_equal(kiln_retry_note(&log, "sandbox failed to start: a"), 0);
    assert_int_equal(kiln_retry_note(&log, "sandbox failed to start: b"), 0);
    kiln_retry_pack_dead(&sb, "job-1", 2, &log, "w7", job, sizeof(job));
    msgpack_unpacked_init(&u);
    assert_int_equal(kiln_mp_unpack(&u, sb.data, sb.size), 0);
    const msgpack_object *m = &u.data;
    assert_int_equal(m->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(m->via.map.size, 5);
    assert_true(kiln_mp_streq(kiln_mp_get(m, "id"), "job-1"));
    assert_true(kiln_mp_streq(kiln_mp_get(m, "worker"), "w7"));
    assert_int_equal(kiln_mp_int(kiln_mp_get(m, "attempts"), 0, 100, &n), 0);
    assert_int_equal(n, 2);
    const msgpack_object *r = kiln_mp_get(m, "reasons");
    assert_non_null(r);
    assert_int_equal(r->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(r->via.array.size, 2);
    assert_true(kiln_mp_streq(&r->via.array.ptr[0], "sandbox failed to start: a"));
    assert_true(kiln_mp_streq(&r->via.array.ptr[1], "sandbox failed to start: b"));
    const msgpack_object *j = kiln_mp_get(m, "job");
    assert_non_null(j);
    assert_int_equal(j->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(j->via.bin.size, sizeof(job));
    assert_memory_equal(j->via.bin.ptr, job, sizeof(job));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    kiln_retry_log_free(&log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failures_of_kiln_are_retried_up_to_the_limit),
        cmocka_unit_test(some_failures_are_reported_as_they_are),
        cmocka_unit_test(backoff_doubles_caps_and_jitters_into_its_upper_half),
        cmocka_unit_test(the_log_keeps_the_latest_reasons),
        cmocka_unit_test(the_dead_letter_carries_the_job_and_every_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
