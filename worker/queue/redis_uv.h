/*
 * hiredis on libuv: kiln's own adapter, in place of hiredis 0.14's bundled
 * adapters/libuv.h, which drops poll errors: a refused connect (libuv
 * reports it as a poll error) then hangs for ever. This one passes errors
 * on to hiredis, whose own read or connect check then sees them.
 */
#ifndef KILN_REDIS_UV_H
#define KILN_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Watch `ac`'s socket on `loop`. 0, or -ENOMEM / a libuv error (nothing
 * attached). The watcher belongs to `ac`: hiredis's cleanup hook closes
 * and frees it when `ac` is freed. */
int kiln_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
