/*
 * Which Kafka offsets are finished, per partition, and how far the group may
 * commit: pure bookkeeping, no librdkafka and no libuv, so its rules are
 * unit-tested on their own (tests/unit/test_kafka_offsets.c).
 *
 * The rules:
 * - A partition tracks the offsets of its jobs in the order they were taken
 *   (ascending, as Kafka hands them out).
 * - A job may finish in any order. The committable offset is one past the
 *   longest run of finished offsets at the front: it only ever moves over a
 *   contiguous finished prefix, never past a job still running. Finishing an
 *   offset that is not tracked changes nothing.
 * - A revoked (or lost) partition forgets its tracked offsets and bumps its
 *   generation: a job taken before the revoke is stale and must store
 *   nothing (kiln_kafka_part_current() says 0), even once the partition is
 *   assigned again; the new owner runs it again from the committed offset.
 */
#ifndef KILN_KAFKA_OFFSETS_H
#define KILN_KAFKA_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

enum kiln_kafka_assign {
    KILN_KAFKA_UNASSIGNED = 0,
    KILN_KAFKA_ASSIGNED,
    KILN_KAFKA_JUST_ASSIGNED,   /* inside a rebalance callback, not yet settled */
};

struct kiln_kafka_part {
    struct kiln_kafka_part *next;
    char *topic;                /* owned */
    int32_t partition;
    enum kiln_kafka_assign assigned;
    unsigned gen;               /* bumped at every revoke: stale jobs store nothing */
    int64_t *offs;              /* in-flight offsets, ascending */
    unsigned char *done;        /* done[i]: offs[i] has finished */
    size_t n, cap;
    int64_t commit_at;          /* the committable offset, once `dirty` */
    int dirty;                  /* commit_at moved since kiln_kafka_offsets_clean() */
};

/* Every partition this worker has seen; zero-initialise. */
struct kiln_kafka_offsets {
    struct kiln_kafka_part *parts;
};

/* The partition topic[partition], created (unassigned, generation 0) if it
 * is new. Owned by `o`; NULL when out of memory. */
struct kiln_kafka_part *kiln_kafka_offsets_part(struct kiln_kafka_offsets *o, const char *topic,
                                                int32_t partition);
/* Track `offset` as taken and running. 0, or -ENOMEM (nothing tracked). */
int kiln_kafka_part_track(struct kiln_kafka_part *p, int64_t offset);
/* Mark `offset` finished. Returns the new committable offset (and sets
 * commit_at and dirty) when the contiguous finished prefix grew, else -1. */
int64_t kiln_kafka_part_finish(struct kiln_kafka_part *p, int64_t offset);
/* The partition was revoked or lost: forget its offsets, new generation. */
void kiln_kafka_part_revoke(struct kiln_kafka_part *p);
/* 1 when a job taken at generation `gen` may still store its offset. */
int kiln_kafka_part_current(const struct kiln_kafka_part *p, unsigned gen);
/* Every partition's committable offset has been committed: none is dirty. */
void kiln_kafka_offsets_clean(struct kiln_kafka_offsets *o);
/* Free every partition; `o` is empty again. */
void kiln_kafka_offsets_free(struct kiln_kafka_offsets *o);

#endif
