#include "expose/expose.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/log.h"
#include "wire/http_stream.h"

#define READ_CHUNK 65536
#define HIGH_WATER (1u << 20) /* bytes queued toward one side before the other is paused */
#define LOW_WATER (256u << 10)
#define HEAD_MS 10000         /* a new connection's first request head, whole */
#define IDLE_MS 300000        /* a connection with nothing going either way */
#define REFUSE_MS 5000        /* an answer of the proxy's own that the client does not read */
#define CONNS_PER_CAP 16      /* connections in all: this many times --expose-max-conns */

struct conn;

struct kiln_expose_route {
    struct kiln_expose *x;
    struct kiln_expose_route *next;
    char token[KILN_EXPOSE_TOKEN_LEN + 1];
    char tag[64];
    int port;
    kiln_expose_open_cb open;
    kiln_expose_touch_cb touch;
    void *arg;
    struct conn *conns;
    uint64_t bytes_in, bytes_out;
};

struct kiln_expose {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    char tmpl[KILN_EXPOSE_URL_MAX];
    int64_t max_conns, wait_ms;
    struct kiln_expose_route *routes;
    struct conn *orphans;   /* connections no route holds: before their first head, or refused */
    unsigned live;          /* connections not yet freed */
    int stopping;
    uint64_t conns_total, requests, bytes_in, bytes_out;
    uint64_t refused_404, refused_503, refused_400, failed_502, refused_busy, tls_failed;
    SSL_CTX *tls;           /* with --expose-tls-cert: clients speak HTTPS */
};

struct conn {
    struct kiln_expose *x;
    struct conn *next;
    struct kiln_expose_route *route;
    uv_tcp_t client;
    union {                 /* the way to the port: */
        uv_tcp_t tcp;       /* a socket in the sandbox's network (the jail) */
        uv_pipe_t pipe;     /* a stream connected already (a VM's mux) */
    } uph;
    uv_stream_t *up;        /* &uph, as a stream */
    uv_timer_t wait;
    int handles;            /* open handles: freed when the last has closed */
    int up_made, up_ready;  /* `up` initialised; connected */
    int client_eof, up_eof;
    int answered;           /* the port has sent something on this connection */
    int awaiting;           /* a head went to the port and nothing came back since */
    int closing, refusing;
    char *pend;             /* for the port, before it is connected */
    size_t npend, cappend;
    SSL *ssl;               /* the client's TLS (memory BIOs), or NULL: plain HTTP */
    struct kiln_http_stream hs;
};

struct wreq {
    uv_write_t req;
    struct conn *c;
    size_t len;
    char data[];
};

static char readbuf[READ_CHUNK]; /* one read at a time on the loop: emit copies what it keeps */

/* ---- the URL template --------------------------------------------------- */

const char *kiln_expose_url_ok(const char *tmpl)
{
    const char *t = strstr(tmpl, "{token}");
    if (strncmp(tmpl, "http://", 7) != 0 && strncmp(tmpl, "https://", 8) != 0)
        return "it must start with http:// or https://";
    if (t == NULL || strstr(t + 1, "{token}") != NULL)
        return "it must hold {token} once";
    if (strlen(tmpl) + KILN_EXPOSE_TOKEN_LEN >= KILN_EXPOSE_URL_MAX)
        return "it is too long";
    for (const char *p = tmpl; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\' || (unsigned char)*p >= 0x7f)
            return "it holds a space, a quote or a character outside ASCII";
    return NULL;
}

static void url_of(const struct kiln_expose *x, const char *token, char *url)
{
    const char *t = strstr(x->tmpl, "{token}");
    snprintf(url, KILN_EXPOSE_URL_MAX, "%.*s%s%s", (int)(t - x->tmpl), x->tmpl, token, t + 7);
}

/* ---- closing ------------------------------------------------------------ */

static void unlist(struct conn *c)
{
    struct conn **pp = c->route != NULL ? &c->route->conns : &c->x->orphans;
    while (*pp != NULL && *pp != c)
        pp = &(*pp)->next;
    if (*pp == c)
        *pp = c->next;
    c->next = NULL;
}

static void maybe_free_server(struct kiln_expose *x)
{
    if (x->stopping && x->live == 0 && !x->listening) {
        SSL_CTX_free(x->tls);
        free(x);
    }
}

static void on_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles > 0)
        return;
    struct kiln_expose *x = c->x;
    free(c->pend);
    SSL_free(c->ssl);
    free(c);
    x->live--;
    maybe_free_server(x);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    unlist(c);
    c->route = NULL;
    uv_close((uv_handle_t *)&c->client, on_closed);
    uv_close((uv_handle_t *)&c->wait, on_closed);
    if (c->up_made)
        uv_close((uv_handle_t *)c->up, on_closed);
}

/* ---- its one timer ---------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* The connection's deadline, from now: for our own answer to be read, for
 * the port to start answering (--expose-wait-ms, from the last byte sent
 * it), or for anything to happen at all. (Before its first head a
 * connection has HEAD_MS from its accept, never moved by what it sends.) */
static void arm(struct conn *c)
{
    uint64_t ms = c->refusing ? REFUSE_MS : c->awaiting ? (uint64_t)c->x->wait_ms : IDLE_MS;
    if (!c->closing && (c->route != NULL || c->refusing))
        uv_timer_start(&c->wait, on_timer, ms, 0);
}

/* ---- writing ------------------------------------------------------------- */

static void resume_reads(struct conn *c);

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->refusing && c->client.write_queue_size == 0) {
        conn_close(c);
        return;
    }
    resume_reads(c);
}

static int put(struct conn *c, uv_stream_t *to, const char *data, size_t len)
{
    struct wreq *w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return -ENOMEM;
    w->c = c;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int r = uv_write(&w->req, to, &b, 1, on_written);
    if (r < 0)
        free(w);
    return r;
}

/* ---- the client's TLS, when the server speaks it --------------------------- */

/* What OpenSSL has written for the client, sent. */
static int tls_flush(struct conn *c)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(SSL_get_wbio(c->ssl), buf, sizeof(buf))) > 0)
        if (put(c, (uv_stream_t *)&c->client, buf, (size_t)n) < 0)
            return -1;
    return 0;
}

/* Bytes for the client: sealed first when it speaks TLS. */
static int to_client(struct conn *c, const char *data, size_t len)
{
    if (c->ssl == NULL)
        return put(c, (uv_stream_t *)&c->client, data, len);
    while (len > 0) {
        int chunk = len > 16384 ? 16384 : (int)len;
        if (SSL_write(c->ssl, data, chunk) != chunk) /* (memory BIOs: all of it, or broken) */
            return -1;
        data += chunk;
        len -= (size_t)chunk;
    }
    return tls_flush(c);
}

/* The client's side ends its writing: its TLS session first. */
static int client_shutdown(struct conn *c, uv_shutdown_t *sd, uv_shutdown_cb cb)
{
    if (c->ssl != NULL && SSL_is_init_finished(c->ssl)) {
        SSL_shutdown(c->ssl); /* (our close_notify) */
        if (tls_flush(c) < 0)
            return -1;
    }
    return uv_shutdown(sd, (uv_stream_t *)&c->client, cb);
}

/* An answer of the proxy's own, then the connection ends. */
static void refuse(struct conn *c, int code)
{
    static const struct { int code; const char *text, *body; } answers[] = {
        {400, "Bad Request", "bad request\n"},
        {404, "Not Found", "not found\n"},
        {502, "Bad Gateway", "the exposed port did not answer\n"},
        {503, "Service Unavailable", "too many connections to this session\n"},
    };
    size_t i = 0;
    while (i + 1 < sizeof(answers) / sizeof(answers[0]) && answers[i].code != code)
        i++;
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     answers[i].code, answers[i].text, strlen(answers[i].body), answers[i].body);
    struct kiln_expose *x = c->x;
    x->refused_400 += code == 400;
    x->refused_404 += code == 404;
    x->refused_503 += code == 503;
    x->failed_502 += code == 502;
    if (c->up_made && !uv_is_closing((uv_handle_t *)c->up))
        uv_read_stop(c->up);
    uv_read_stop((uv_stream_t *)&c->client);
    c->refusing = 1;
    arm(c);
    if (to_client(c, buf, (size_t)n) < 0)
        conn_close(c);
}

/* ---- the port's side ------------------------------------------------------ */

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    *b = uv_buf_init(readbuf, sizeof(readbuf));
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void on_shut(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

static void on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;
    (void)b;
    if (c->closing || c->refusing)
        return;
    if (n > 0) {
        c->answered = 1;
        c->awaiting = 0;
        arm(c);
        c->x->bytes_out += (uint64_t)n;
        if (c->route != NULL)
            c->route->bytes_out += (uint64_t)n;
        if (to_client(c, readbuf, (size_t)n) < 0) {
            conn_close(c);
            return;
        }
        if (c->client.write_queue_size > HIGH_WATER)
            uv_read_stop(s);
        return;
    }
    if (n == 0)
        return;
    /* the port hung up (or failed): before any answer that is a 502 */
    if (!c->answered && c->awaiting) {
        refuse(c, 502);
        return;
    }
    c->up_eof = 1;
    if (c->client_eof || n != UV_EOF) {
        conn_close(c);
        return;
    }
    uv_read_stop(s);
    uv_shutdown_t *sd = malloc(sizeof(*sd));
    if (sd == NULL || client_shutdown(c, sd, on_shut) < 0) {
        free(sd);
        conn_close(c);
    }
}

static void resume_reads(struct conn *c)
{
    if (c->closing || c->refusing)
        return;
    if (c->up_ready && !c->up_eof && c->client.write_queue_size < LOW_WATER)
        uv_read_start(c->up, alloc_cb, on_up_read);
    if (!c->client_eof && (c->up_ready ? c->up->write_queue_size < LOW_WATER : c->npend < LOW_WATER))
        uv_read_start((uv_stream_t *)&c->client, alloc_cb, on_client_read);
}

static void shut_up(struct conn *c)
{
    uv_shutdown_t *sd = malloc(sizeof(*sd));
    if (sd == NULL || uv_shutdown(sd, c->up, on_shut) < 0) {
        free(sd);
        conn_close(c);
    }
}

/* The port is reached: what came for it goes, and both sides read. */
static void up_ready(struct conn *c)
{
    c->up_ready = 1;
    if (c->npend > 0 && put(c, c->up, c->pend, c->npend) < 0) {
        conn_close(c);
        return;
    }
    c->npend = 0;
    if (c->client_eof)
        shut_up(c);
    resume_reads(c);
}

static void on_up_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    free(req);
    if (c->closing || c->refusing)
        return;
    if (status < 0)
        refuse(c, 502);
    else
        up_ready(c);
}

/* The route's way to its port: connected, or connecting. */
static int open_up(struct conn *c)
{
    struct kiln_expose_route *r = c->route;
    int connected = 0;
    int fd = r->open(r->arg, r->port, &connected);
    if (fd < 0)
        return fd;
    int e;
    if (connected) {
        uv_pipe_init(c->x->loop, &c->uph.pipe, 0);
        e = uv_pipe_open(&c->uph.pipe, fd);
    } else {
        uv_tcp_init(c->x->loop, &c->uph.tcp);
        e = uv_tcp_open(&c->uph.tcp, fd);
    }
    c->up = (uv_stream_t *)&c->uph;
    c->up->data = c;
    c->up_made = 1;
    c->handles++;
    if (e < 0) {
        close(fd); /* (not the handle's) */
        return e;
    }
    if (connected) {
        up_ready(c);
        return 0;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uv_connect_t *req = malloc(sizeof(*req));
    if (req == NULL)
        return -ENOMEM;
    req->data = c;
    if ((e = uv_tcp_connect(req, &c->uph.tcp, (const struct sockaddr *)&sa, on_up_connected)) < 0)
        free(req);
    return e;
}

/* ---- the client's side ---------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->awaiting && !c->answered && !c->refusing)
        refuse(c, 502); /* the port did not answer */
    else
        conn_close(c);  /* no head in time, idle, or our answer not read */
}

/* Bytes for the port: sent, or kept until it is connected. */
static void emit(void *arg, const char *data, size_t len)
{
    struct conn *c = arg;
    if (c->closing || c->refusing)
        return;
    c->x->bytes_in += len;
    if (c->route != NULL)
        c->route->bytes_in += len;
    arm(c); /* (the port's time to answer counts from the last byte it was sent) */
    if (c->up_ready) {
        if (put(c, c->up, data, len) < 0)
            conn_close(c);
        return;
    }
    if (c->npend + len > c->cappend) {
        size_t cap = (c->npend + len) * 2;
        char *p = realloc(c->pend, cap);
        if (p == NULL) {
            conn_close(c);
            return;
        }
        c->pend = p;
        c->cappend = cap;
    }
    memcpy(c->pend + c->npend, data, len);
    c->npend += len;
}

static int is_token(const char *s, size_t n)
{
    if (n != KILN_EXPOSE_TOKEN_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* The live route `s` (n bytes) names, or NULL; every route compared in
 * constant time, so the answer's timing says nothing of near misses. */
static struct kiln_expose_route *route_of(struct kiln_expose *x, const char *s, size_t n)
{
    struct kiln_expose_route *found = NULL;
    if (!is_token(s, n))
        return NULL;
    for (struct kiln_expose_route *r = x->routes; r != NULL; r = r->next)
        if (CRYPTO_memcmp(r->token, s, KILN_EXPOSE_TOKEN_LEN) == 0)
            found = r;
    return found;
}

/* The Host header's first label (up to '.' or ':'), or n = 0. */
static const char *host_label(const struct kiln_http_stream *hs, size_t *n)
{
    *n = 0;
    for (const char *l = strstr(hs->head, "\r\n") + 2; *l != '\r'; l = strstr(l, "\r\n") + 2) {
        size_t len = (size_t)(strstr(l, "\r\n") - l);
        if (!kiln_http_named(l, len, "host"))
            continue;
        const char *v = l + 5;
        while (*v == ' ' || *v == '\t')
            v++;
        *n = strcspn(v, ".: \t\r");
        return v;
    }
    return NULL;
}

static int count_conns(const struct kiln_expose *x, const char *tag)
{
    int n = 0;
    for (const struct kiln_expose_route *r = x->routes; r != NULL; r = r->next)
        if (strcmp(r->tag, tag) == 0)
            for (const struct conn *c = r->conns; c != NULL; c = c->next)
                n++;
    return n;
}

/* A whole request head: which route, then on to the port (its token cut
 * from the path when the path named it). */
static int on_head(void *arg, struct kiln_http_stream *hs, char *why, size_t len)
{
    struct conn *c = arg;
    struct kiln_expose *x = c->x;
    char *target = strchr(hs->head, ' ') + 1;
    if (c->closing || c->refusing)
        return -1; /* (nothing more of this connection is read) */
    if (c->up_eof) { /* the port hung up: no request goes to it on this connection */
        conn_close(c);
        return -1;
    }
    x->requests++;
    for (const char *l = strstr(hs->head, "\r\n") + 2; *l != '\r'; l = strstr(l, "\r\n") + 2) {
        const char *odd = kiln_http_odd_header(l, (size_t)(strstr(l, "\r\n") - l));
        if (odd != NULL) {
            snprintf(why, len, "%s", odd);
            refuse(c, 400);
            return -1;
        }
    }
    if (*target != '/') { /* origin form only: no absolute URL, no CONNECT, no '*' */
        refuse(c, 400);
        return -1;
    }
    size_t n;
    const char *label = host_label(hs, &n);
    struct kiln_expose_route *r = label != NULL ? route_of(x, label, n) : NULL;
    size_t cut = 0;
    if (r == NULL) {
        size_t seg = strcspn(target + 1, "/? ");
        if ((r = route_of(x, target + 1, seg)) != NULL)
            cut = 1 + seg;
    }
    if (r == NULL || (c->route != NULL && r != c->route)) {
        refuse(c, 404); /* (on a routed connection, another token ends it too: one connection, one port) */
        return -1;
    }
    if (c->route == NULL) {
        if (count_conns(x, r->tag) >= x->max_conns) {
            refuse(c, 503);
            return -1;
        }
        unlist(c);
        c->route = r;
        c->next = r->conns;
        r->conns = c;
        int e = open_up(c);
        if (e < 0) {
            kiln_debug("expose: port %d of session %s: %s", r->port, r->tag, uv_strerror(e));
            refuse(c, 502);
            return -1;
        }
    }
    if (r->touch != NULL)
        r->touch(r->arg);
    if (cut > 0) { /* "/TOKEN/rest" -> "/rest"; "/TOKEN" and "/TOKEN?q" -> "/", "/?q" */
        size_t t0 = (size_t)(target - hs->head);
        size_t from = t0 + (target[cut] == '/' ? 0 : 1), to = t0 + cut;
        memmove(hs->head + from, hs->head + to, hs->hlen - to + 1);
        hs->hlen -= to - from;
    }
    emit(c, hs->head, hs->hlen);
    c->awaiting = 1;
    arm(c);
    return 0;
}

/* What the client sent, opened first when it speaks TLS, to the request
 * reader. Returns 0; -1 when the reader refused it; -2 when its TLS failed
 * (or ended): the connection closes without an answer. */
static int from_client(struct conn *c, const char *data, size_t n, char *why, size_t len)
{
    static char plain[16384];
    if (c->ssl == NULL)
        return kiln_http_stream_feed(&c->hs, data, n, why, len);
    if (BIO_write(SSL_get_rbio(c->ssl), data, (int)n) != (int)n)
        return -2;
    for (;;) {
        int r = SSL_read(c->ssl, plain, sizeof(plain));
        if (r > 0) {
            if (kiln_http_stream_feed(&c->hs, plain, (size_t)r, why, len) < 0)
                return -1;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (tls_flush(c) < 0) /* (the handshake's records) */
            return -2;
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e != SSL_ERROR_ZERO_RETURN) {
            c->x->tls_failed++;
            kiln_debug("expose: a client's TLS failed: %s", ERR_reason_error_string(ERR_peek_last_error()));
        }
        ERR_clear_error();
        return -2;
    }
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;
    (void)b;
    if (c->closing || c->refusing)
        return;
    if (n > 0) {
        char why[256];
        int r = from_client(c, readbuf, (size_t)n, why, sizeof(why));
        if (r == -2) {
            conn_close(c);
            return;
        }
        if (r < 0) {
            if (!c->closing && !c->refusing) {
                if (c->route == NULL)
                    refuse(c, 400);
                else
                    conn_close(c);
            }
            return;
        }
        /* what the port has not taken yet is bounded, connected or not */
        if (!c->closing && !c->refusing &&
            (c->up_ready ? c->up->write_queue_size > HIGH_WATER : c->npend > HIGH_WATER))
            uv_read_stop(s);
        return;
    }
    if (n == 0)
        return;
    c->client_eof = 1;
    if (n != UV_EOF || c->up_eof || !c->up_made) {
        conn_close(c);
        return;
    }
    uv_read_stop(s);
    if (c->up_ready)
        shut_up(c);
}

static void on_connection(uv_stream_t *l, int status)
{
    struct kiln_expose *x = l->data;
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->x = x;
    uv_tcp_init(x->loop, &c->client);
    uv_timer_init(x->loop, &c->wait);
    c->client.data = c->wait.data = c;
    c->handles = 2;
    x->live++;
    x->conns_total++;
    c->next = x->orphans;
    x->orphans = c;
    kiln_http_stream_init(&c->hs, on_head, emit, c);
    /* (accepted first, whatever follows: an unaccepted one stops the listener) */
    if (uv_accept(l, (uv_stream_t *)&c->client) < 0 || x->live > CONNS_PER_CAP * x->max_conns) {
        x->refused_busy += x->live > CONNS_PER_CAP * x->max_conns;
        conn_close(c); /* (past the cap in all: closed unanswered, as a full backlog would) */
        return;
    }
    if (x->tls != NULL) {
        BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
        if (rb == NULL || wb == NULL || (c->ssl = SSL_new(x->tls)) == NULL) {
            BIO_free(rb);
            BIO_free(wb);
            conn_close(c);
            return;
        }
        SSL_set_bio(c->ssl, rb, wb);
        SSL_set_accept_state(c->ssl);
    }
    uv_timer_start(&c->wait, on_timer, HEAD_MS, 0); /* (the TLS handshake too) */
    uv_tcp_nodelay(&c->client, 1);
    uv_read_start((uv_stream_t *)&c->client, alloc_cb, on_client_read);
}

/* ---- the server and its routes ----------------------------------------- */

static void on_listener_closed(uv_handle_t *h)
{
    struct kiln_expose *x = h->data;
    x->listening = 0;
    maybe_free_server(x);
}

/* HTTP/1.1 by ALPN, or no ALPN at all: what the proxy speaks. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, h11, sizeof(h11) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;
}

/* The server's TLS: its certificate chain and key (PEM files), TLS 1.2 and
 * up, HTTP/1.1. NULL with the reason in `err`. */
static SSL_CTX *tls_context(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *what = "a TLS context";
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        (what = "--expose-tls-cert", SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) ||
        (what = "--expose-tls-key", SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) ||
        (what = "--expose-tls-key (for --expose-tls-cert)", SSL_CTX_check_private_key(ctx) != 1)) {
        unsigned long e = ERR_get_error();
        snprintf(err, errlen, "%s: %s", what, e != 0 ? ERR_reason_error_string(e) : "failed");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    return ctx;
}

int kiln_expose_start(uv_loop_t *loop, const struct kiln_expose_opts *o, struct kiln_expose **out, char *err,
                      size_t errlen)
{
    char host[256];
    const char *colon = strrchr(o->listen, ':');
    char *end;
    long port = colon != NULL ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || colon == o->listen || *end != '\0' || port < 0 || port > 65535 ||
        (size_t)(colon - o->listen) >= sizeof(host)) {
        snprintf(err, errlen, "--expose-listen %s: give ADDR:PORT", o->listen);
        return -EINVAL;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - o->listen), o->listen);
    struct sockaddr_storage sa;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(strcmp(host, "[::]") == 0 ? "::" : host, (int)port, (struct sockaddr_in6 *)&sa) != 0) {
        snprintf(err, errlen, "--expose-listen %s: %s is no IP address", o->listen, host);
        return -EINVAL;
    }
    SSL_CTX *tls = NULL;
    if (o->tls_cert != NULL && (tls = tls_context(o->tls_cert, o->tls_key, err, errlen)) == NULL)
        return -EINVAL;
    struct kiln_expose *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        SSL_CTX_free(tls);
        return -ENOMEM;
    }
    x->tls = tls;
    x->loop = loop;
    x->max_conns = o->max_conns;
    x->wait_ms = o->wait_ms;
    uv_tcp_init(loop, &x->listener);
    x->listener.data = x;
    x->listening = 1;
    int r = uv_tcp_bind(&x->listener, (const struct sockaddr *)&sa, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&x->listener, 128, on_connection);
    if (r < 0) {
        snprintf(err, errlen, "--expose-listen %s: %s", o->listen, uv_strerror(r));
        x->stopping = 1;
        uv_close((uv_handle_t *)&x->listener, on_listener_closed); /* x goes with it */
        return r;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&x->listener, (struct sockaddr *)&bound, &blen);
    int bport = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    if (o->url != NULL)
        snprintf(x->tmpl, sizeof(x->tmpl), "%s", o->url);
    else
        snprintf(x->tmpl, sizeof(x->tmpl), "%s://%s:%d/{token}/", tls != NULL ? "https" : "http",
                 strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : host, bport);
    kiln_info("expose: listening on %s:%d, URLs as %s", host, bport, x->tmpl);
    *out = x;
    return 0;
}

void kiln_expose_stop(struct kiln_expose *x)
{
    if (x == NULL)
        return;
    x->stopping = 1;
    while (x->routes != NULL)
        kiln_expose_remove(x->routes);
    while (x->orphans != NULL)
        conn_close(x->orphans);
    uv_close((uv_handle_t *)&x->listener, on_listener_closed);
}

struct kiln_expose_route *kiln_expose_add(struct kiln_expose *x, const char *tag, int port, kiln_expose_open_cb open,
                                          kiln_expose_touch_cb touch, void *arg, char *url)
{
    unsigned char raw[KILN_EXPOSE_TOKEN_LEN / 2];
    struct kiln_expose_route *r = calloc(1, sizeof(*r));
    if (r == NULL || RAND_bytes(raw, sizeof(raw)) != 1) {
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(r->token + 2 * i, 3, "%02x", raw[i]);
    snprintf(r->tag, sizeof(r->tag), "%s", tag);
    r->x = x;
    r->port = port;
    r->open = open;
    r->touch = touch;
    r->arg = arg;
    r->next = x->routes;
    x->routes = r;
    url_of(x, r->token, url);
    return r;
}

void kiln_expose_remove(struct kiln_expose_route *r)
{
    struct kiln_expose *x = r->x;
    struct kiln_expose_route **pp = &x->routes;
    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    while (r->conns != NULL)
        conn_close(r->conns); /* (unlisted from r as it closes) */
    OPENSSL_cleanse(r->token, sizeof(r->token));
    free(r);
}

/* One unlabelled counter, with its help and type lines. */
static void counter(FILE *out, const char *name, const char *help, uint64_t v)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

void kiln_expose_gauges(struct kiln_expose *x, FILE *out)
{
    if (x == NULL)
        return;
    unsigned open = 0;
    for (struct kiln_expose_route *r = x->routes; r != NULL; r = r->next)
        for (struct conn *c = r->conns; c != NULL; c = c->next)
            open++;
    fprintf(out, "# HELP kiln_expose_routes Exposed ports live now.\n# TYPE kiln_expose_routes gauge\n");
    unsigned n = 0;
    for (struct kiln_expose_route *r = x->routes; r != NULL; r = r->next)
        n++;
    fprintf(out, "kiln_expose_routes %u\n", n);
    fprintf(out, "# HELP kiln_expose_connections Connections to exposed ports open now.\n"
                 "# TYPE kiln_expose_connections gauge\nkiln_expose_connections %u\n", open);
    counter(out, "kiln_expose_connections_total", "Connections accepted on --expose-listen.", x->conns_total);
    counter(out, "kiln_expose_requests_total", "Request heads read.", x->requests);
    fprintf(out, "# HELP kiln_expose_refused_total Requests answered by the proxy itself, by code.\n"
                 "# TYPE kiln_expose_refused_total counter\n"
                 "kiln_expose_refused_total{code=\"400\"} %llu\nkiln_expose_refused_total{code=\"404\"} %llu\n"
                 "kiln_expose_refused_total{code=\"502\"} %llu\nkiln_expose_refused_total{code=\"503\"} %llu\n",
            (unsigned long long)x->refused_400, (unsigned long long)x->refused_404,
            (unsigned long long)x->failed_502, (unsigned long long)x->refused_503);
    counter(out, "kiln_expose_busy_total",
            "Connections closed unanswered: past the cap in all (16 x --expose-max-conns).", x->refused_busy);
    counter(out, "kiln_expose_tls_failed_total", "Client TLS handshakes or sessions that failed.", x->tls_failed);
    fprintf(out, "# HELP kiln_expose_bytes_total Bytes carried to (in) and from (out) exposed ports.\n"
                 "# TYPE kiln_expose_bytes_total counter\n"
                 "kiln_expose_bytes_total{direction=\"in\"} %llu\nkiln_expose_bytes_total{direction=\"out\"} %llu\n",
            (unsigned long long)x->bytes_in, (unsigned long long)x->bytes_out);
    fprintf(out, "# HELP kiln_expose_session_bytes Bytes carried for one session's exposed ports so far, by the "
                 "session's tag (its log lines name it).\n# TYPE kiln_expose_session_bytes gauge\n");
    for (struct kiln_expose_route *r = x->routes; r != NULL; r = r->next) {
        int first = 1;
        for (struct kiln_expose_route *q = x->routes; q != r; q = q->next)
            first &= strcmp(q->tag, r->tag) != 0;
        if (!first)
            continue;
        uint64_t in = 0, outb = 0;
        for (struct kiln_expose_route *q = r; q != NULL; q = q->next)
            if (strcmp(q->tag, r->tag) == 0)
                in += q->bytes_in, outb += q->bytes_out;
        fprintf(out, "kiln_expose_session_bytes{session=\"%s\",direction=\"in\"} %llu\n", r->tag,
                (unsigned long long)in);
        fprintf(out, "kiln_expose_session_bytes{session=\"%s\",direction=\"out\"} %llu\n", r->tag,
                (unsigned long long)outb);
    }
}
