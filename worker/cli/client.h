/* The kiln client's transports: how `kiln submit` and `kiln frames` put a
 * job on a queue and read frames back, over Redis or Kafka. */
#ifndef KILN_CLIENT_H
#define KILN_CLIENT_H

#include <msgpack.h>
#include <stddef.h>

/* Called for each frame read; `where` names its place (stream entry id,
 * topic[partition]@offset). Return nonzero to stop reading. */
typedef int (*kiln_frame_fn)(void *arg, const char *where, const msgpack_object *frame);

struct kiln_client;

struct kiln_client_ops {
    /* Start reading `stream` from its end (from_end) or its beginning. */
    int (*watch)(struct kiln_client *c, const char *stream, int from_end);
    /* Put one job on `queue`. Returns 0 or -1 (after saying why). */
    int (*enqueue)(struct kiln_client *c, const char *queue, const char *id,
                   const void *job, size_t len);
    /* Read frames for up to block_ms. Returns frames read (>= 0), -1 on an
     * error, -2 when `fn` asked to stop, -3 at the end of everything
     * written so far (only when watching from the beginning). */
    int (*read)(struct kiln_client *c, long block_ms, kiln_frame_fn fn, void *arg);
    /* Ask every worker to cancel job `id` (control stream / topic). */
    int (*cancel)(struct kiln_client *c, const char *control, const char *id);
    /* Remove a private reply stream (Redis); may be NULL. */
    void (*drop)(struct kiln_client *c, const char *stream);
    void (*close)(struct kiln_client *c);
};

struct kiln_client {
    const struct kiln_client_ops *ops;
};

/* Connect; NULL after printing why. */
struct kiln_client *kiln_client_redis(const char *url);
struct kiln_client *kiln_client_kafka(const char *brokers, char **conf, size_t nconf);

/* kiln dev-broker: a Kafka-protocol broker for development and tests. */
int kiln_dev_broker(int argc, char **argv);

#endif
