/* Where a kiln client command talks: the --queue, --redis, --brokers and
 * --kafka-conf options every command shares, and the transport they open
 * (cli/client.h). */
#ifndef KILN_CLI_WHERE_H
#define KILN_CLI_WHERE_H

#include <stddef.h>

#include "cli/client.h"

#define KILN_WHERE_MAX_CONF 64

/* The strings are borrowed (argv or the environment), valid for the
 * process's life. */
struct kiln_where {
    const char *queue;
    const char *redis;
    const char *brokers;
    char *conf[KILN_WHERE_MAX_CONF];
    size_t nconf;
};

/* getopt_long entries of the shared options; kiln_where_opt takes them. */
#define KILN_WHERE_OPTIONS \
    {"queue", 1, 0, 'Q'}, {"redis", 1, 0, 'r'}, {"brokers", 1, 0, 'B'}, {"kafka-conf", 1, 0, 'K'}

/* Defaults from KILN_QUEUE, KILN_REDIS, KILN_BROKERS, else Redis on
 * 127.0.0.1:6379. */
void kiln_where_init(struct kiln_where *w);
/* Take option `c` with its `arg` if it is a shared one: 1, else 0. */
int kiln_where_opt(struct kiln_where *w, int c, char *arg);
/* 1 if the queue is Kafka. */
int kiln_where_kafka(const struct kiln_where *w);
/* Connect: a new client owned by the caller (close with ops->close), or
 * NULL after saying why on stderr. */
struct kiln_client *kiln_where_open(struct kiln_where *w);

#endif
