/* The transport options every kiln client command shares (cli/where.h). */
#include "cli/where.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kiln_where_init(struct kiln_where *w)
{
    w->queue = getenv("KILN_QUEUE") ? getenv("KILN_QUEUE") : "redis";
    w->redis = getenv("KILN_REDIS") ? getenv("KILN_REDIS") : "redis://127.0.0.1:6379";
    w->brokers = getenv("KILN_BROKERS");
    w->nconf = 0;
}

int kiln_where_opt(struct kiln_where *w, int c, char *arg)
{
    switch (c) {
    case 'Q': w->queue = arg; return 1;
    case 'r': w->redis = arg; return 1;
    case 'B': w->brokers = arg; return 1;
    case 'K':
        if (w->nconf < KILN_WHERE_MAX_CONF)
            w->conf[w->nconf++] = arg;
        return 1;
    default: return 0;
    }
}

int kiln_where_kafka(const struct kiln_where *w)
{
    return strcmp(w->queue, "kafka") == 0;
}

struct kiln_client *kiln_where_open(struct kiln_where *w)
{
    if (kiln_where_kafka(w)) {
        if (w->brokers == NULL) {
            fprintf(stderr, "kiln: --queue kafka needs --brokers (or KILN_BROKERS)\n");
            return NULL;
        }
        return kiln_client_kafka(w->brokers, w->conf, w->nconf);
    }
    if (strcmp(w->queue, "redis") != 0) {
        fprintf(stderr, "kiln: --queue: unknown value '%s'\n", w->queue);
        return NULL;
    }
    return kiln_client_redis(w->redis);
}
