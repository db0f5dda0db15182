#include "core/chan.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

struct wreq {
    uv_write_t req;
    msgpack_sbuffer sb;
};

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[65536]; /* one loop, one read at a time */
    (void)h;
    (void)hint;
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void end(struct kiln_chan *c, int status)
{
    if (c->ended)
        return;
    c->ended = 1;
    uv_read_stop((uv_stream_t *)&c->pipe);
    if (c->on_end != NULL)
        c->on_end(c->arg, status);
}

void kiln_chan_feed(struct kiln_chan *c, const void *data, size_t n)
{
    const void *msg;
    size_t len;
    int r = 0;
    if (c->ended)
        return;
    if (kiln_proto_reader_feed(&c->rd, data, n) < 0) {
        end(c, -ENOMEM);
        return;
    }
    while (!c->ended && (r = kiln_proto_reader_next(&c->rd, &msg, &len)) == 1) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        /* the agent may be a guest kernel's: checked like any input */
        if (kiln_mp_unpack(&u, msg, len) == 0) {
            if (c->on_msg != NULL)
                c->on_msg(c->arg, &u.data);
        } else {
            r = -EPROTO;
        }
        msgpack_unpacked_destroy(&u);
        if (r < 0)
            break;
    }
    if (!c->ended && r < 0)
        end(c, -EPROTO);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct kiln_chan *c = s->data;
    if (n < 0) {
        end(c, n == UV_EOF ? 0 : (int)n);
        return;
    }
    kiln_chan_feed(c, buf->base, (size_t)n);
}

int kiln_chan_open(uv_loop_t *loop, int fd, kiln_chan_msg_cb on_msg, kiln_chan_end_cb on_end,
                   void *arg, struct kiln_chan **out)
{
    struct kiln_chan *c = calloc(1, sizeof(*c));
    int r;
    if (c == NULL) {
        close(fd);
        return UV_ENOMEM;
    }
    uv_pipe_init(loop, &c->pipe, 0);
    c->pipe.data = c;
    kiln_proto_reader_init(&c->rd, KILN_PROTO_MAX_MSG);
    c->on_msg = on_msg;
    c->on_end = on_end;
    c->arg = arg;
    if ((r = uv_pipe_open(&c->pipe, fd)) < 0 ||
        (r = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read)) < 0) {
        close(fd);
        c->on_msg = NULL;
        c->on_end = NULL;
        kiln_chan_close(c);
        return r;
    }
    *out = c;
    return 0;
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    (void)status; /* a dead agent shows as the channel's end */
    msgpack_sbuffer_destroy(&w->sb);
    free(w);
}

int kiln_chan_send(struct kiln_chan *c, msgpack_sbuffer *sb)
{
    struct wreq *w = malloc(sizeof(*w));
    if (w == NULL) {
        msgpack_sbuffer_destroy(sb);
        return -ENOMEM;
    }
    kiln_proto_finish(sb);
    w->sb = *sb;
    uv_buf_t buf = uv_buf_init(w->sb.data, (unsigned)w->sb.size);
    int r = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, on_written);
    if (r < 0) {
        msgpack_sbuffer_destroy(&w->sb);
        free(w);
    }
    return r;
}

static void on_closed(uv_handle_t *h)
{
    struct kiln_chan *c = h->data;
    kiln_proto_reader_free(&c->rd);
    free(c);
}

void kiln_chan_close(struct kiln_chan *c)
{
    c->on_msg = NULL;
    c->on_end = NULL;
    c->ended = 1;
    uv_close((uv_handle_t *)&c->pipe, on_closed);
}
