#include "sandbox/vm_egress.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "wire/proto.h"

/* What queued writes cost, counted with their bookkeeping, so a guest
 * sending a byte per frame cannot make the worker hold more than this. */
#define STREAM_QUEUE_MAX (1u << 20) /* toward one connection */
#define PORT_QUEUE_MAX (1u << 20)   /* toward the guest */
#define WRITE_COST(len) (sizeof(struct wreq) + (len) + 32)

struct stream;

struct kiln_vm_egress {
    uv_loop_t *loop;
    uv_pipe_t port;
    char proxy_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct stream *s[KILN_MUX_STREAMS];
    int closing[KILN_MUX_STREAMS];   /* our 'C' sent, the guest's awaited */
    int c_queued[KILN_MUX_STREAMS];  /* our 'C' not yet written to the port */
    size_t port_queued;              /* WRITE_COST of writes toward the guest */
    unsigned char in[KILN_MUX_HEADER + KILN_MUX_DATA_MAX];
    size_t have;
    int port_paused;                 /* a stream's queue is full */
    int streams_paused;              /* the port's queue is full */
    int done;
    unsigned refs;                   /* the owner, the port, each stream's handle
                                      * and each write under way */
};

struct stream {
    struct kiln_vm_egress *m;
    int id;
    uv_pipe_t conn;
    size_t queued;                   /* WRITE_COST of writes toward it */
};

struct wreq {
    uv_write_t req;
    struct kiln_vm_egress *m;
    size_t *queued, cost;            /* the counter it is charged to */
    int c_of;                        /* a 'C' for this stream id, or -1 */
    char data[];
};

static void unref(struct kiln_vm_egress *m)
{
    if (--m->refs == 0)
        free(m);
}

static void on_stream_closed(uv_handle_t *h)
{
    struct stream *st = h->data;
    struct kiln_vm_egress *m = st->m;
    free(st);
    unref(m);
}

static void on_port_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_stream_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_port_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* Reading the port and the streams again once their far sides drain. */
static void resume(struct kiln_vm_egress *m)
{
    if (m->done)
        return;
    if (m->port_paused) {
        for (int i = 0; i < KILN_MUX_STREAMS; i++)
            if (m->s[i] != NULL && m->s[i]->queued >= STREAM_QUEUE_MAX / 2)
                return;
        m->port_paused = 0;
        uv_read_start((uv_stream_t *)&m->port, on_alloc, on_port_read);
    }
    if (m->streams_paused && m->port_queued < PORT_QUEUE_MAX / 2) {
        m->streams_paused = 0;
        for (int i = 0; i < KILN_MUX_STREAMS; i++)
            if (m->s[i] != NULL)
                uv_read_start((uv_stream_t *)&m->s[i]->conn, on_alloc, on_stream_read);
    }
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct kiln_vm_egress *m = w->m;
    (void)status; /* written or cancelled (its handle closed): either way no longer queued */
    *w->queued -= w->cost;
    if (w->c_of >= 0)
        m->c_queued[w->c_of] = 0;
    free(w);
    resume(m);
    unref(m);
}

/* Queue a + b toward `to`, charged to `queued`. */
static int send_to(struct kiln_vm_egress *m, uv_stream_t *to, size_t *queued, const void *a, size_t alen,
                   const void *b, size_t blen)
{
    struct wreq *w = malloc(sizeof(*w) + alen + blen);
    if (w == NULL)
        return UV_ENOMEM;
    w->m = m;
    w->queued = queued;
    w->cost = WRITE_COST(alen + blen);
    w->c_of = -1;
    memcpy(w->data, a, alen);
    if (blen > 0)
        memcpy(w->data + alen, b, blen);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)(alen + blen));
    int r = uv_write(&w->req, to, &buf, 1, on_written);
    if (r < 0) {
        free(w);
        return r;
    }
    *queued += w->cost;
    m->refs++;
    if (alen == KILN_MUX_HEADER && blen == 0 && to == (uv_stream_t *)&m->port && ((const char *)a)[0] == 'C') {
        w->c_of = ((const unsigned char *)a)[1];
        m->c_queued[w->c_of] = 1;
    }
    return 0;
}

/* A frame to the guest; past the port's bound, the streams wait. */
static void frame(struct kiln_vm_egress *m, char type, int id, const void *data, size_t len)
{
    unsigned char h[KILN_MUX_HEADER] = {(unsigned char)type, (unsigned char)id, (unsigned char)(len >> 8),
                                        (unsigned char)len};
    if (m->done || send_to(m, (uv_stream_t *)&m->port, &m->port_queued, h, sizeof(h), data, len) < 0)
        return;
    if (!m->streams_paused && m->port_queued >= PORT_QUEUE_MAX) {
        m->streams_paused = 1;
        for (int i = 0; i < KILN_MUX_STREAMS; i++)
            if (m->s[i] != NULL)
                uv_read_stop((uv_stream_t *)&m->s[i]->conn);
    }
}

/* Our side of a stream ends: its connection closes. `tell`: the guest is
 * sent our 'C' (and the id waits for its answer). */
static void stream_end(struct kiln_vm_egress *m, int id, int tell)
{
    struct stream *st = m->s[id];
    m->s[id] = NULL;
    if (st != NULL)
        uv_close((uv_handle_t *)&st->conn, on_stream_closed);
    if (tell) {
        frame(m, 'C', id, NULL, 0);
        m->closing[id] = 1;
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[KILN_MUX_DATA_MAX];
    (void)h;
    (void)hint;
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_stream_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct stream *st = s->data;
    if (n < 0)
        stream_end(st->m, st->id, 1);
    else if (n > 0)
        frame(st->m, 'D', st->id, buf->base, (size_t)n);
}

/* Stream `id` on `fd` (taken, whatever happens), reading unless the port
 * is full. On failure the stream, if made, is in m->s[id]: end it. */
static int stream_adopt(struct kiln_vm_egress *m, int id, int fd)
{
    struct stream *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        close(fd);
        return -ENOMEM;
    }
    st->m = m;
    st->id = id;
    uv_pipe_init(m->loop, &st->conn, 0);
    st->conn.data = st;
    m->refs++;
    m->s[id] = st;
    int r = uv_pipe_open(&st->conn, fd);
    if (r < 0) {
        close(fd); /* (not the handle's) */
        return r;
    }
    return m->streams_paused ? 0 : uv_read_start((uv_stream_t *)&st->conn, on_alloc, on_stream_read);
}

/* A connection to the proxy for a stream the guest opened; refused
 * (answered 'C') when there is none to be had. */
static void stream_open(struct kiln_vm_egress *m, int id)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, m->proxy_path, sizeof(sa.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        fd = -1;
    }
    if (fd < 0 || stream_adopt(m, id, fd) < 0)
        stream_end(m, id, 1);
}

int kiln_vm_egress_inbound(struct kiln_vm_egress *m, int port)
{
    int id = KILN_MUX_OUT, sp[2];
    if (m->done)
        return -ENOTCONN;
    while (id < KILN_MUX_STREAMS && (m->s[id] != NULL || m->closing[id] || m->c_queued[id]))
        id++;
    if (id == KILN_MUX_STREAMS)
        return -EAGAIN; /* every inbound stream is in use */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0)
        return -errno;
    int r = stream_adopt(m, id, sp[0]);
    if (r < 0) {
        stream_end(m, id, 0);
        close(sp[1]);
        return r;
    }
    unsigned char p[2] = {(unsigned char)(port >> 8), (unsigned char)port};
    frame(m, 'O', id, p, sizeof(p));
    return sp[1];
}

/* A guest that breaks the protocol gets no more egress. */
static void mux_end(struct kiln_vm_egress *m, const char *why)
{
    if (m->done)
        return;
    if (why != NULL)
        kiln_warn("vm egress: %s: the VM's way out is closed", why);
    m->done = 1;
    for (int i = 0; i < KILN_MUX_STREAMS; i++)
        stream_end(m, i, 0);
    uv_close((uv_handle_t *)&m->port, on_port_closed);
}

/* One whole frame from the guest. */
static void on_frame(struct kiln_vm_egress *m, char type, int id, const unsigned char *data, size_t len)
{
    struct stream *st = m->s[id];
    /* An id serves again only once both 'C's are through, and ours is
     * through only once written: so at most one of our 'C's per id is ever
     * queued, whatever a guest that does not read its port does. */
    if (type == 'O' && len == 0 && id < KILN_MUX_OUT && st == NULL && !m->closing[id] && !m->c_queued[id]) {
        stream_open(m, id);
    } else if (type == 'D' && len > 0 && st != NULL) {
        if (send_to(m, (uv_stream_t *)&st->conn, &st->queued, data, len, NULL, 0) < 0) {
            stream_end(m, id, 1);
        } else if (!m->port_paused && st->queued >= STREAM_QUEUE_MAX) {
            m->port_paused = 1; /* the proxy side is slow: pace the guest */
            uv_read_stop((uv_stream_t *)&m->port);
        }
    } else if (type == 'D' && len > 0 && m->closing[id]) {
        /* in flight when we closed: dropped */
    } else if (type == 'C' && len == 0 && (st != NULL || m->closing[id])) {
        if (st != NULL)
            stream_end(m, id, 1); /* our answer */
        m->closing[id] = 0;       /* both sides closed: free */
    } else {
        mux_end(m, "the guest broke the mux protocol");
    }
}

static size_t frame_len(const struct kiln_vm_egress *m)
{
    return (size_t)m->in[2] << 8 | m->in[3];
}

static void on_port_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct kiln_vm_egress *m = s->data;
    if (n < 0) {
        mux_end(m, NULL);
        return;
    }
    const unsigned char *p = (const unsigned char *)buf->base;
    size_t left = (size_t)n;
    while (left > 0 && !m->done) {
        /* the header first, then as much of the data as it announces */
        size_t need = m->have < KILN_MUX_HEADER ? KILN_MUX_HEADER : KILN_MUX_HEADER + frame_len(m);
        size_t take = need - m->have < left ? need - m->have : left;
        memcpy(m->in + m->have, p, take);
        m->have += take;
        p += take;
        left -= take;
        if (m->have < KILN_MUX_HEADER)
            break;
        if (m->in[1] >= KILN_MUX_STREAMS || frame_len(m) > KILN_MUX_DATA_MAX) {
            mux_end(m, "a frame out of bounds");
            return;
        }
        if (m->have == KILN_MUX_HEADER + frame_len(m)) {
            m->have = 0;
            on_frame(m, (char)m->in[0], m->in[1], m->in + KILN_MUX_HEADER, frame_len(m));
        }
    }
}

int kiln_vm_egress_open(uv_loop_t *loop, int fd, const char *proxy_path, struct kiln_vm_egress **out)
{
    struct kiln_vm_egress *m = calloc(1, sizeof(*m));
    int r;
    if (m == NULL) {
        close(fd);
        return UV_ENOMEM;
    }
    if (strlen(proxy_path) >= sizeof(m->proxy_path)) {
        free(m);
        close(fd);
        return UV_ENAMETOOLONG;
    }
    m->loop = loop;
    m->refs = 2; /* the caller's, until kiln_vm_egress_close; the port's */
    memcpy(m->proxy_path, proxy_path, strlen(proxy_path) + 1);
    uv_pipe_init(loop, &m->port, 0);
    m->port.data = m;
    if ((r = uv_pipe_open(&m->port, fd)) < 0)
        close(fd); /* not the handle's: ours to close */
    if (r < 0 || (r = uv_read_start((uv_stream_t *)&m->port, on_alloc, on_port_read)) < 0) {
        m->done = 1;
        uv_close((uv_handle_t *)&m->port, on_port_closed);
        unref(m);
        return r;
    }
    *out = m;
    return 0;
}

void kiln_vm_egress_close(struct kiln_vm_egress *m)
{
    mux_end(m, NULL);
    unref(m);
}
