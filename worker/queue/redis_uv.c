/* hiredis on libuv: see redis_uv.h. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>

#include "queue/redis_uv.h"

struct uvev {
    redisAsyncContext *ac;      /* NULL once hiredis has let go */
    uv_poll_t poll;
    int events;
};

static void ev_poll(uv_poll_t *h, int status, int events)
{
    struct uvev *e = h->data;
    if (e->ac == NULL)
        return;
    if (status < 0) /* let hiredis find the socket error and tear down */
        events = (e->ac->c.flags & REDIS_CONNECTED) ? UV_READABLE : UV_WRITABLE;
    if (e->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void ev_update(struct uvev *e, int add, int del)
{
    e->events = (e->events | add) & ~del;
    if (e->events)
        uv_poll_start(&e->poll, e->events, ev_poll);
    else
        uv_poll_stop(&e->poll);
}

static void ev_add_read(void *p) { ev_update(p, UV_READABLE, 0); }
static void ev_del_read(void *p) { ev_update(p, 0, UV_READABLE); }
static void ev_add_write(void *p) { ev_update(p, UV_WRITABLE, 0); }
static void ev_del_write(void *p) { ev_update(p, 0, UV_WRITABLE); }

static void ev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ev_cleanup(void *p)
{
    struct uvev *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, ev_closed);
}

int kiln_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct uvev *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    int r = uv_poll_init(loop, &e->poll, ac->c.fd);
    if (r != 0) {
        free(e);
        return r;
    }
    e->poll.data = e;
    e->ac = ac;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}
