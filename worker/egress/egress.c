/*
 * The egress proxy of one sandbox: a Unix socket its relay connects to,
 * an HTTP CONNECT (or plain HTTP) head read from each connection, the
 * destination checked against the job's net.allow, its secrets' hosts and
 * the address policy (egress_policy.c). Then either bytes spliced both
 * ways until either side ends (a CONNECT tunnel), or the job's requests
 * passed through the rewriter (egress_http.c) that puts secrets in: plain
 * HTTP always, and TLS terminated here (egress_tls.c) for a CONNECT to a
 * host a secret of the job is bound to.
 */
#include "egress/egress_conn.h"

#include <errno.h>
#include <http_parser.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

/* ---- connections ------------------------------------------------------- */

void kiln__egress_deny(struct kiln_egress *eg, const char *host, int port, const char *why)
{
    char note[400];
    snprintf(note, sizeof(note), "%s:%d: %s", host, port, why);
    for (size_t i = 0; i < eg->ndenied; i++)
        if (strcmp(eg->denied[i], note) == 0)
            return;
    if (eg->ndenied < KILN_EGRESS_DENIED_MAX && (eg->denied[eg->ndenied] = strdup(note)) != NULL)
        eg->ndenied++;
}

static void eg_unref(struct kiln_egress *eg)
{
    if (--eg->refs > 0)
        return;
    for (size_t i = 0; i < eg->nallow; i++)
        free(eg->allow[i]);
    free(eg->allow);
    kiln__egress_secrets_free(eg->secrets, eg->nsecrets);
    for (size_t i = 0; i < eg->ndenied; i++)
        free(eg->denied[i]);
    free(eg);
}

/* Each handle and each pending lookup holds the connection. */
static void conn_unref(struct econn *c)
{
    if (--c->handles > 0)
        return;
    struct kiln_egress *eg = c->eg;
    struct econn **pp = &eg->conns;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    kiln_tls_conn_free(c->tls);
    free(c->rw);
    free(c->subs);
    free(c);
    eg_unref(eg);
}

static void conn_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

void kiln__egress_end(struct econn *c)
{
    if (c->done)
        return;
    c->done = 1;
    uv_close((uv_handle_t *)&c->down, conn_closed);
    if (c->up_open)
        uv_close((uv_handle_t *)&c->up, conn_closed);
}

struct wreq {
    uv_write_t req;
    struct econn *c;
    uv_stream_t *from; /* the side to resume reading when drained */
    int close_after;   /* a refusal: end the connection once it is out */
    char data[];
};

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct econn *c = w->c;
    if (status < 0 || w->close_after)
        kiln__egress_end(c);
    else if (!c->done && w->from != NULL && uv_stream_get_write_queue_size(req->handle) < QUEUE_MAX / 2)
        uv_read_start(w->from, on_alloc, w->from == (uv_stream_t *)&c->down ? c->down_cb : c->up_cb);
    free(w);
}

void kiln__egress_send(struct econn *c, uv_stream_t *to, uv_stream_t *from, const char *data, size_t n)
{
    struct wreq *w = malloc(sizeof(*w) + n);
    if (w == NULL) {
        kiln__egress_end(c);
        return;
    }
    w->c = c;
    w->from = from;
    w->close_after = 0;
    memcpy(w->data, data, n);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, to, &buf, 1, on_written) < 0) {
        free(w);
        kiln__egress_end(c);
        return;
    }
    if (from != NULL && uv_stream_get_write_queue_size(to) >= QUEUE_MAX)
        uv_read_stop(from); /* the far side is slow: pace the near one */
}

static void respond(struct econn *c, int code, const char *why)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n", code, code == 403 ? "Forbidden" : code == 502 ? "Bad Gateway"
                     : "Bad Request", strlen(why) + 1, why);
    struct wreq *w = malloc(sizeof(*w) + (size_t)n);
    uv_read_stop((uv_stream_t *)&c->down);
    if (w == NULL) {
        kiln__egress_end(c);
        return;
    }
    *w = (struct wreq){.c = c, .from = NULL, .close_after = 1};
    memcpy(w->data, msg, (size_t)n);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->down, &buf, 1, on_written) < 0) {
        free(w);
        kiln__egress_end(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[65536];
    (void)h;
    (void)hint;
    *buf = uv_buf_init(slab, sizeof(slab));
}

void kiln__egress_splice(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct econn *c = s->data;
    if (n < 0) {
        kiln__egress_end(c);
        return;
    }
    uv_stream_t *to = s == (uv_stream_t *)&c->down ? (uv_stream_t *)&c->up : (uv_stream_t *)&c->down;
    if (n > 0)
        kiln__egress_send(c, to, s, buf->base, (size_t)n);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct econn *c = req->data;
    if (c->done)
        return;
    if (status < 0) {
        char why[300];
        snprintf(why, sizeof(why), "could not connect to %s:%d: %s", c->host, c->port, uv_strerror(status));
        respond(c, 502, why);
        return;
    }
    size_t head_end = (size_t)(strstr(c->head, "\r\n\r\n") - c->head) + 4;
    c->down_cb = c->up_cb = kiln__egress_splice;
    if (c->is_connect) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        kiln__egress_send(c, (uv_stream_t *)&c->down, NULL, ok, sizeof(ok) - 1);
    }
    if (kiln__egress_rewrites(c))
        kiln__egress_rewrite_start(c, head_end);
    else if (c->hlen > head_end) /* bytes the job sent after its CONNECT */
        kiln__egress_send(c, (uv_stream_t *)&c->up, NULL, c->head + head_end, c->hlen - head_end);
    if (c->done)
        return;
    uv_read_start((uv_stream_t *)&c->down, on_alloc, c->down_cb);
    uv_read_start((uv_stream_t *)&c->up, on_alloc, c->up_cb);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct econn *c = req->data;
    const char *why = NULL;
    struct addrinfo *use = NULL;
    if (c->done) {
        uv_freeaddrinfo(res);
        conn_unref(c);
        return;
    }
    conn_unref(c); /* the lookup's hold; the down handle still holds it */
    if (status < 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "cannot resolve %s: %s", c->host, uv_strerror(status));
        kiln__egress_deny(c->eg, c->host, c->port, "does not resolve");
        respond(c, 502, msg);
        return;
    }
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        const char *w = kiln_egress_forbidden(a->ai_addr, c->eg->private_ok);
        if (w == NULL) {
            use = a;
            break;
        }
        why = w;
    }
    if (use == NULL) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%s resolves to %s: refused", c->host, why ? why : "nothing");
        kiln__egress_deny(c->eg, c->host, c->port, why ? why : "no address");
        respond(c, 403, msg);
        uv_freeaddrinfo(res);
        return;
    }
    uv_tcp_init(c->eg->loop, &c->up);
    c->up.data = c;
    c->up_open = 1;
    c->handles++;
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->up, use->ai_addr, on_connected) < 0)
        respond(c, 502, "connect failed");
    uv_freeaddrinfo(res);
}

/* ---- the request head -------------------------------------------------- */

struct parse { char url[2048]; size_t ulen; };

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct parse *u = p->data;
    if (u->ulen + len >= sizeof(u->url))
        return 1;
    memcpy(u->url + u->ulen, at, len);
    u->ulen += len;
    u->url[u->ulen] = '\0';
    return 0;
}

static int on_headers(http_parser *p)
{
    (void)p;
    return 2; /* stop here: the body, if any, is spliced as it is */
}

static void begin(struct econn *c)
{
    static http_parser_settings settings;
    struct http_parser p;
    struct parse u = {"", 0};
    struct http_parser_url pu;
    char port[16];

    settings.on_url = on_url;
    settings.on_headers_complete = on_headers;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &u;
    size_t end = (size_t)(strstr(c->head, "\r\n\r\n") - c->head) + 4;
    http_parser_execute(&p, &settings, c->head, end);
    if (u.ulen == 0 || (HTTP_PARSER_ERRNO(&p) != HPE_OK && HTTP_PARSER_ERRNO(&p) != HPE_CB_headers_complete)) {
        respond(c, 400, "a proxy request was expected");
        return;
    }
    c->is_connect = p.method == HTTP_CONNECT;
    http_parser_url_init(&pu);
    if (http_parser_parse_url(u.url, u.ulen, c->is_connect, &pu) != 0 || !(pu.field_set & (1 << UF_HOST))) {
        respond(c, 400, "the request needs an absolute http:// URL or CONNECT host:port");
        return;
    }
    if (!c->is_connect && (!(pu.field_set & (1 << UF_SCHEMA)) ||
                           strncasecmp(u.url + pu.field_data[UF_SCHEMA].off, "http",
                                       pu.field_data[UF_SCHEMA].len) != 0 || pu.field_data[UF_SCHEMA].len != 4)) {
        respond(c, 400, "only http:// URLs and CONNECT");
        return;
    }
    snprintf(c->host, sizeof(c->host), "%.*s", (int)pu.field_data[UF_HOST].len, u.url + pu.field_data[UF_HOST].off);
    c->port = (pu.field_set & (1 << UF_PORT)) ? pu.port : 80;
    int allowed = kiln_egress_allowed((const char *const *)c->eg->allow, c->eg->nallow, c->host, c->port);
    int reach = kiln__egress_bind(c);
    if (reach < 0) {
        respond(c, 502, "out of memory");
        return;
    }
    allowed |= reach; /* a secret's hosts are the job's to reach */
    if (!allowed) {
        kiln__egress_deny(c->eg, c->host, c->port, "not in net.allow");
        respond(c, 403, "not in the job's net.allow");
        return;
    }
    snprintf(port, sizeof(port), "%d", c->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    c->gai.data = c;
    c->handles++; /* held until the lookup answers */
    if (uv_getaddrinfo(c->eg->loop, &c->gai, on_resolved, c->host, port, &hints) < 0) {
        c->handles--;
        respond(c, 502, "cannot resolve");
    }
}

static void on_head(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct econn *c = s->data;
    if (n < 0) {
        kiln__egress_end(c);
        return;
    }
    if (c->hlen + (size_t)n >= HEAD_MAX) {
        respond(c, 400, "request head too large");
        return;
    }
    memcpy(c->head + c->hlen, buf->base, (size_t)n);
    c->hlen += (size_t)n;
    c->head[c->hlen] = '\0';
    if (strstr(c->head, "\r\n\r\n") != NULL) {
        uv_read_stop(s);
        begin(c);
    }
}

static void on_conn(uv_stream_t *server, int status)
{
    struct kiln_egress *eg = server->data;
    if (status < 0 || eg->closing)
        return;
    struct econn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->eg = eg;
    uv_pipe_init(eg->loop, &c->down, 0);
    c->down.data = c;
    c->handles = 1;
    eg->refs++;
    c->next = eg->conns;
    eg->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->down) < 0) {
        kiln__egress_end(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->down, on_alloc, on_head);
}

static void server_closed(uv_handle_t *h);

int kiln_egress_open(uv_loop_t *loop, const char *path, const struct kiln_egress_opts *o,
                     struct kiln_egress **out)
{
    struct kiln_egress *eg;
    const char *private_ok = o->private_ok;
    int r;
    /* never a truncated path or list: a cut CIDR ("10.0.0.0/16" ->
     * "10.0.0.0/1") would let the proxy reach more than it was told */
    if (strlen(path) >= sizeof(eg->path) ||
        (private_ok != NULL && strlen(private_ok) >= sizeof(eg->private_ok)))
        return UV_ENAMETOOLONG;
    if ((eg = calloc(1, sizeof(*eg))) == NULL || (eg->allow = calloc(o->nallow + 1, sizeof(char *))) == NULL) {
        free(eg);
        return UV_ENOMEM;
    }
    eg->refs = 1;
    for (size_t i = 0; i < o->nallow; i++) {
        if ((eg->allow[eg->nallow] = strdup(o->allow[i])) == NULL) {
            eg_unref(eg); /* an entry left out would be a silent refusal */
            return UV_ENOMEM;
        }
        eg->nallow++;
    }
    if (kiln__egress_secrets_copy(eg, o) < 0) {
        eg_unref(eg);
        return UV_ENOMEM;
    }
    eg->tls = o->tls;
    eg->loop = loop;
    snprintf(eg->path, sizeof(eg->path), "%s", path);
    snprintf(eg->private_ok, sizeof(eg->private_ok), "%s", private_ok ? private_ok : "");
    unlink(path);
    uv_pipe_init(loop, &eg->server, 0);
    eg->server.data = eg;
    if ((r = uv_pipe_bind(&eg->server, path)) < 0 ||
        (r = uv_listen((uv_stream_t *)&eg->server, 64, on_conn)) < 0) {
        eg->closing = 1;
        uv_close((uv_handle_t *)&eg->server, server_closed); /* frees eg */
        return r;
    }
    chmod(path, 0666); /* the sandbox's relay runs as another uid */
    *out = eg;
    return 0;
}

const char *const *kiln_egress_denied(const struct kiln_egress *eg, size_t *n)
{
    *n = eg->ndenied;
    return (const char *const *)eg->denied;
}

static void server_closed(uv_handle_t *h)
{
    eg_unref(h->data);
}

void kiln_egress_close(struct kiln_egress *eg)
{
    eg->closing = 1;
    unlink(eg->path);
    uv_close((uv_handle_t *)&eg->server, server_closed);
    for (struct econn *c = eg->conns; c != NULL; c = c->next)
        if (!c->done) {
            c->done = 1;
            uv_close((uv_handle_t *)&c->down, conn_closed);
            if (c->up_open)
                uv_close((uv_handle_t *)&c->up, conn_closed);
        }
}
