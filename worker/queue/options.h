/* What a source needs to know of the worker's settings (core/config.c
 * fills it from flags; the source reads it, never the whole config). */
#ifndef KILN_QUEUE_OPTIONS_H
#define KILN_QUEUE_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

struct kiln_queue_opts {
    char *queue;              /* "redis" | "kafka" */
    char *redis;              /* redis://[[user]:password@]host[:port][/db] */
    char *brokers;            /* Kafka bootstrap servers */
    char **kafka_conf;        /* "K=V" for librdkafka, nkafka_conf of them */
    size_t nkafka_conf;
    int kafka_transactions;   /* exit frames and offsets in one transaction */
    char *jobs;               /* the job stream / topic */
    char *control;            /* control stream: {cancel: id}, sessions' news */
    char *group;              /* consumer group */
    char *consumer;           /* this worker's name in it */
    int64_t claim_idle_ms;    /* take over jobs idle this long at dead consumers */
    int64_t block_ms;         /* how long one blocking read waits */
};

#endif
