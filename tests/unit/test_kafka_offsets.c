/* The Kafka source's offset rules (worker/queue/kafka_offsets.h): the
 * committable offset moves only over a contiguous finished prefix, jobs
 * finish in any order, a revoke makes running jobs stale for good. */
#include <string.h>

#include "test.h"

#include "queue/kafka_offsets.h"

static struct kiln_kafka_part *part(struct kiln_kafka_offsets *o, const char *topic, int32_t n)
{
    struct kiln_kafka_part *p = kiln_kafka_offsets_part(o, topic, n);
    assert_non_null(p);
    return p;
}

static void track(struct kiln_kafka_part *p, int64_t from, int64_t to)
{
    for (int64_t off = from; off <= to; off++)
        assert_int_equal(kiln_kafka_part_track(p, off), 0);
}

static void test_in_order(void **state)
{
    struct kiln_kafka_offsets o = {0};
    (void)state;
    struct kiln_kafka_part *p = part(&o, "jobs", 0);
    track(p, 10, 12);
    assert_int_equal(kiln_kafka_part_finish(p, 10), 11);
    assert_int_equal(p->commit_at, 11);
    assert_true(p->dirty);
    assert_int_equal(kiln_kafka_part_finish(p, 11), 12);
    assert_int_equal(kiln_kafka_part_finish(p, 12), 13);
    assert_int_equal(p->n, 0);
    kiln_kafka_offsets_free(&o);
    assert_null(o.parts);
}

static void test_out_of_order(void **state)
{
    struct kiln_kafka_offsets o = {0};
    (void)state;
    struct kiln_kafka_part *p = part(&o, "jobs", 0);
    track(p, 0, 4);
    /* 1, 2 and 4 finish while 0 runs: nothing may be committed */
    assert_int_equal(kiln_kafka_part_finish(p, 2), -1);
    assert_int_equal(kiln_kafka_part_finish(p, 1), -1);
    assert_int_equal(kiln_kafka_part_finish(p, 4), -1);
    assert_false(p->dirty);
    assert_int_equal(p->n, 5);
    /* 0 finishes: the prefix 0..2 is done, 3 still runs */
    assert_int_equal(kiln_kafka_part_finish(p, 0), 3);
    assert_int_equal(p->commit_at, 3);
    assert_int_equal(p->n, 2);
    assert_int_equal(p->offs[0], 3);
    assert_int_equal(p->offs[1], 4);
    /* 3 finishes: 4 was done already, so past both */
    assert_int_equal(kiln_kafka_part_finish(p, 3), 5);
    assert_int_equal(p->n, 0);
    kiln_kafka_offsets_free(&o);
}

static void test_gaps_and_unknown(void **state)
{
    struct kiln_kafka_offsets o = {0};
    (void)state;
    struct kiln_kafka_part *p = part(&o, "jobs", 0);
    /* offsets need not be consecutive (compaction, transaction markers):
     * the commit point is one past the last finished, not a count */
    assert_int_equal(kiln_kafka_part_track(p, 100), 0);
    assert_int_equal(kiln_kafka_part_track(p, 105), 0);
    assert_int_equal(kiln_kafka_part_finish(p, 105), -1);
    /* an offset never tracked, or finished twice, changes nothing */
    assert_int_equal(kiln_kafka_part_finish(p, 101), -1);
    assert_int_equal(kiln_kafka_part_finish(p, 105), -1);
    assert_int_equal(p->n, 2);
    assert_int_equal(kiln_kafka_part_finish(p, 100), 106);
    assert_int_equal(kiln_kafka_part_finish(p, 100), -1);
    assert_int_equal(p->commit_at, 106);
    kiln_kafka_offsets_free(&o);
}

static void test_many(void **state)
{
    struct kiln_kafka_offsets o = {0};
    (void)state;
    struct kiln_kafka_part *p = part(&o, "jobs", 3);
    track(p, 0, 999); /* past the first growth of the arrays */
    for (int64_t off = 999; off >= 1; off--)
        assert_int_equal(kiln_kafka_part_finish(p, off), -1);
    assert_int_equal(kiln_kafka_part_finish(p, 0), 1000);
    assert_int_equal(p->n, 0);
    kiln_kafka_offsets_free(&o);
}

static void test_partitions_apart(void **state)
{
    struct kiln_kafka_offsets o = {0};
    (void)state;
    struct kiln_kafka_part *a0 = part(&o, "a", 0), *a1 = part(&o, "a", 1), *b0 = part(&o, "b", 0);
    assert_ptr_not_equal(a0, a1);
    assert_ptr_not_equal(a0, b0);
    assert_ptr_equal(part(&o, "a", 1), a1); /* found, not created again */
    assert_string_equal(b0->topic, "b");
    assert_int_equal(b0->partition, 0);
    assert_int_equal(a1->assigned, KILN_KAFKA_UNASSIGNED);
    assert_int_equal(a1->gen, 0);
    track(a0, 5, 5);
    track(a1, 5, 5);
    assert_int_equal(kiln_kafka_part_finish(a1, 5), 6);
    assert_int_equal(a0->n, 1); /* untouched */
    assert_false(a0->dirty);
    kiln_kafka_offsets_clean(&o);
    assert_false(a1->dirty);
    assert_int_equal(a1->commit_at, 6); /* the value stays, only the flag goes */
    kiln_kafka_offsets_free(&o);
}

static void test_revoke(void **state)
{
    struct kiln_kafka_offsets o = {0};
    (void)state;
    struct kiln_kafka_part *p = part(&o, "jobs", 0);
    p->assigned = KILN_KAFKA_ASSIGNED;
    unsigned gen = p->gen;
    track(p, 0, 2);
    assert_true(kiln_kafka_part_current(p, gen));
    kiln_kafka_part_revoke(p);
    assert_int_equal(p->assigned, KILN_KAFKA_UNASSIGNED);
    assert_int_equal(p->n, 0);
    assert_false(kiln_kafka_part_current(p, gen));
    /* a job of the old ownership finishing: not tracked any more */
    assert_int_equal(kiln_kafka_part_finish(p, 0), -1);

    /* assigned again: the jobs taken before the revoke stay stale */
    p->assigned = KILN_KAFKA_ASSIGNED;
    assert_false(kiln_kafka_part_current(p, gen));
    assert_true(kiln_kafka_part_current(p, gen + 1));
    /* the new owner's jobs start again from the committed offset */
    track(p, 1, 2);
    assert_int_equal(kiln_kafka_part_finish(p, 2), -1);
    assert_int_equal(kiln_kafka_part_finish(p, 1), 3);
    /* just assigned (inside the rebalance) counts as assigned */
    p->assigned = KILN_KAFKA_JUST_ASSIGNED;
    assert_true(kiln_kafka_part_current(p, gen + 1));
    kiln_kafka_offsets_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_gaps_and_unknown),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_partitions_apart),
        cmocka_unit_test(test_revoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
