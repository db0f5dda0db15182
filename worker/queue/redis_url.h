/*
 * Where the Redis source connects: redis://[[user]:password@]host[:port][/db]
 * (--redis). Pure parsing, unit-tested in tests/unit/test_redis_url.c.
 */
#ifndef KILN_REDIS_URL_H
#define KILN_REDIS_URL_H

#include <stddef.h>

struct kiln_redis_url {
    char host[256];
    int port;                   /* 6379 unless given */
    int db;                     /* 0 unless given */
    char *user, *password;      /* owned; NULL when not given */
};

/* Parse `url` into `u` (overwritten). 0, or a negative errno with `err`
 * saying what is wrong (-EINVAL) or -ENOMEM; on failure `u` holds nothing
 * to free. A password is never echoed into `err`. Free with
 * kiln_redis_url_free(). */
int kiln_redis_url_parse(struct kiln_redis_url *u, const char *url, char *err, size_t errlen);
void kiln_redis_url_free(struct kiln_redis_url *u);

#endif
