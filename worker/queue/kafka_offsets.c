/* Per-partition offset tracking for the Kafka source: see kafka_offsets.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "queue/kafka_offsets.h"

struct kiln_kafka_part *kiln_kafka_offsets_part(struct kiln_kafka_offsets *o, const char *topic,
                                                int32_t partition)
{
    for (struct kiln_kafka_part *p = o->parts; p; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    struct kiln_kafka_part *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->topic = strdup(topic)) == NULL) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->next = o->parts;
    o->parts = p;
    return p;
}

int kiln_kafka_part_track(struct kiln_kafka_part *p, int64_t offset)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        int64_t *offs = realloc(p->offs, cap * sizeof(*offs));
        if (offs == NULL)
            return -ENOMEM;
        p->offs = offs;
        unsigned char *done = realloc(p->done, cap);
        if (done == NULL)
            return -ENOMEM;
        p->done = done;
        p->cap = cap;
    }
    p->offs[p->n] = offset;
    p->done[p->n++] = 0;
    return 0;
}

int64_t kiln_kafka_part_finish(struct kiln_kafka_part *p, int64_t offset)
{
    size_t i, k = 0;
    for (i = 0; i < p->n && p->offs[i] != offset; i++)
        ;
    if (i == p->n)
        return -1;
    p->done[i] = 1;
    while (k < p->n && p->done[k])
        k++;
    if (k == 0)
        return -1;
    int64_t next = p->offs[k - 1] + 1;
    memmove(p->offs, p->offs + k, (p->n - k) * sizeof(*p->offs));
    memmove(p->done, p->done + k, p->n - k);
    p->n -= k;
    p->commit_at = next;
    p->dirty = 1;
    return next;
}

void kiln_kafka_part_revoke(struct kiln_kafka_part *p)
{
    p->assigned = KILN_KAFKA_UNASSIGNED;
    p->gen++;
    p->n = 0;
}

int kiln_kafka_part_current(const struct kiln_kafka_part *p, unsigned gen)
{
    return p->assigned != KILN_KAFKA_UNASSIGNED && p->gen == gen;
}

void kiln_kafka_offsets_clean(struct kiln_kafka_offsets *o)
{
    for (struct kiln_kafka_part *p = o->parts; p; p = p->next)
        p->dirty = 0;
}

void kiln_kafka_offsets_free(struct kiln_kafka_offsets *o)
{
    while (o->parts) {
        struct kiln_kafka_part *p = o->parts;
        o->parts = p->next;
        free(p->topic);
        free(p->offs);
        free(p->done);
        free(p);
    }
}
