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
#include "sandbox/egress.h"

#include <errno.h>
#include <http_parser.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "sandbox/egress_http.h"
#include "sandbox/egress_tls.h"

#define HEAD_MAX KILN_HTTP_HEAD_MAX
#define QUEUE_MAX (4u << 20)

struct kiln_egress {
    uv_loop_t *loop;
    uv_pipe_t server;
    char path[256];
    char **allow;
    size_t nallow;
    char private_ok[512];
    char *denied[KILN_EGRESS_DENIED_MAX];
    size_t ndenied;
    struct kiln_egress_secret *secrets; /* owned copies */
    size_t nsecrets;
    struct kiln_tls *tls;         /* the worker's, borrowed */
    unsigned refs;                /* the server and each connection */
    int closing;
    struct econn *conns;
};

struct econn {
    struct econn *next;
    struct kiln_egress *eg;
    uv_pipe_t down;               /* from the sandbox's relay */
    uv_tcp_t up;                  /* to the destination */
    int up_open, handles, done;
    char head[HEAD_MAX];
    size_t hlen;
    char host[256];
    int port, is_connect;
    uv_read_cb down_cb, up_cb;    /* how each side is read once connected */
    struct kiln_egress_subst *subs; /* the job's secrets, with values where bound here */
    struct kiln_http_rw *rw;      /* plain HTTP, or TLS ended here: the job's requests */
    struct kiln_tls_conn *tls;    /* TLS ended here */
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
};

/* ---- connections ------------------------------------------------------- */

static void deny_note(struct kiln_egress *eg, const char *host, int port, const char *why)
{
    char note[400];
    snprintf(note, sizeof(note), "%s:%d: %s", host, port, why);
    for (size_t i = 0; i < eg->ndenied; i++)
        if (strcmp(eg->denied[i], note) == 0)
            return;
    if (eg->ndenied < KILN_EGRESS_DENIED_MAX && (eg->denied[eg->ndenied] = strdup(note)) != NULL)
        eg->ndenied++;
}

static void secrets_free(struct kiln_egress_secret *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)v[i].name);
        free((char *)v[i].placeholder);
        if (v[i].value != NULL)
            OPENSSL_clear_free((char *)v[i].value, v[i].vlen);
        for (size_t k = 0; k < v[i].nhosts; k++)
            free((char *)v[i].hosts[k]);
        free((char **)v[i].hosts);
    }
    free(v);
}

static void eg_unref(struct kiln_egress *eg)
{
    if (--eg->refs > 0)
        return;
    for (size_t i = 0; i < eg->nallow; i++)
        free(eg->allow[i]);
    free(eg->allow);
    secrets_free(eg->secrets, eg->nsecrets);
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

static void conn_end(struct econn *c)
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
static void on_splice(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct econn *c = w->c;
    if (status < 0 || w->close_after)
        conn_end(c);
    else if (!c->done && w->from != NULL && uv_stream_get_write_queue_size(req->handle) < QUEUE_MAX / 2)
        uv_read_start(w->from, on_alloc, w->from == (uv_stream_t *)&c->down ? c->down_cb : c->up_cb);
    free(w);
}

static void send_to(struct econn *c, uv_stream_t *to, uv_stream_t *from, const char *data, size_t n)
{
    struct wreq *w = malloc(sizeof(*w) + n);
    if (w == NULL) {
        conn_end(c);
        return;
    }
    w->c = c;
    w->from = from;
    w->close_after = 0;
    memcpy(w->data, data, n);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, to, &buf, 1, on_written) < 0) {
        free(w);
        conn_end(c);
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
        conn_end(c);
        return;
    }
    *w = (struct wreq){.c = c, .from = NULL, .close_after = 1};
    memcpy(w->data, msg, (size_t)n);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->down, &buf, 1, on_written) < 0) {
        free(w);
        conn_end(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[65536];
    (void)h;
    (void)hint;
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_splice(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct econn *c = s->data;
    if (n < 0) {
        conn_end(c);
        return;
    }
    uv_stream_t *to = s == (uv_stream_t *)&c->down ? (uv_stream_t *)&c->up : (uv_stream_t *)&c->down;
    if (n > 0)
        send_to(c, to, s, buf->base, (size_t)n);
}

/* ---- requests with secrets ------------------------------------------- */

static void deny_secret(void *arg, const struct kiln_egress_subst *s)
{
    struct econn *c = arg;
    char why[200];
    if (s->plain)
        snprintf(why, sizeof(why), "secret %s goes over plain HTTP only to a port its hosts name: "
                 "sent without its value", s->name);
    else
        snprintf(why, sizeof(why), "secret %s is not bound to this host: sent without its value", s->name);
    deny_note(c->eg, c->host, c->port, why);
}

/* 1 if a pattern with a port of its own ("host:8080", "[v6]:80") takes
 * host:port: the operator named that port, plain HTTP may carry the value. */
static int port_named(const struct kiln_egress_secret *sec, const char *host, int port)
{
    for (size_t i = 0; i < sec->nhosts; i++) {
        const char *p = sec->hosts[i], *colon = strrchr(p, ':');
        int named = p[0] == '[' ? strstr(p, "]:") != NULL : colon != NULL && strchr(p, ':') == colon;
        if (named && kiln_egress_allowed(&sec->hosts[i], 1, host, port))
            return 1;
    }
    return 0;
}

static void to_up(void *arg, const char *data, size_t n)
{
    struct econn *c = arg;
    if (!c->done)
        send_to(c, (uv_stream_t *)&c->up, (uv_stream_t *)&c->down, data, n);
}

static void to_down(void *arg, const char *data, size_t n)
{
    struct econn *c = arg;
    if (!c->done)
        send_to(c, (uv_stream_t *)&c->down, (uv_stream_t *)&c->up, data, n);
}

static void to_tls(void *arg, const char *data, size_t n)
{
    struct econn *c = arg;
    if (!c->done && kiln_tls_send_dest(c->tls, data, n) < 0)
        conn_end(c);
}

static void feed_rw(void *arg, const char *data, size_t n)
{
    struct econn *c = arg;
    char why[200];
    if (!c->done && kiln_http_rw_feed(c->rw, data, n, why, sizeof(why)) < 0) {
        kiln_debug("egress: %s:%d: %s", c->host, c->port, why);
        conn_end(c);
    }
}

static void on_job_http(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct econn *c = s->data;
    if (n < 0)
        conn_end(c);
    else
        feed_rw(c, buf->base, (size_t)n);
}

/* A TLS side answered: 1 its session closed, -1 it failed (recorded). */
static void tls_after(struct econn *c, int r, const char *why)
{
    if (r < 0)
        deny_note(c->eg, c->host, c->port, why);
    if (r != 0)
        conn_end(c);
}

static void on_job_tls(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct econn *c = s->data;
    char why[300];
    if (n < 0)
        conn_end(c);
    else if (!c->done)
        tls_after(c, kiln_tls_from_job(c->tls, buf->base, (size_t)n, why, sizeof(why)), why);
}

static void on_dest_tls(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct econn *c = s->data;
    char why[300];
    if (n < 0)
        conn_end(c);
    else if (!c->done)
        tls_after(c, kiln_tls_from_dest(c->tls, buf->base, (size_t)n, why, sizeof(why)), why);
}

/* 1 if a secret of the job is bound to this connection's destination. */
static int secret_bound(const struct econn *c)
{
    for (size_t i = 0; i < c->eg->nsecrets; i++)
        if (c->subs[i].value != NULL)
            return 1;
    return 0;
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
    c->down_cb = c->up_cb = on_splice;
    if (!c->is_connect || (secret_bound(c) && c->eg->tls != NULL)) {
        if ((c->rw = malloc(sizeof(*c->rw))) == NULL) {
            respond(c, 502, "out of memory");
            return;
        }
        kiln_http_rw_init(c->rw, c->host, c->port, !c->is_connect, c->subs, c->eg->nsecrets,
                          c->is_connect ? to_tls : to_up, deny_secret, c);
    }
    if (!c->is_connect) { /* plain HTTP: each request through the rewriter */
        c->down_cb = on_job_http;
        feed_rw(c, c->head, c->hlen);
    } else {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        send_to(c, (uv_stream_t *)&c->down, NULL, ok, sizeof(ok) - 1);
        if (c->rw != NULL) { /* a secret may go here: TLS ends in the proxy */
            char why[300];
            struct kiln_tls_io io = {.to_job = to_down, .to_dest = to_up, .plain = feed_rw, .arg = c};
            if (kiln_tls_conn_new(c->eg->tls, c->host, &io, &c->tls, why, sizeof(why)) < 0) {
                tls_after(c, -1, why);
                return;
            }
            c->down_cb = on_job_tls;
            c->up_cb = on_dest_tls;
            if (c->hlen > head_end)
                tls_after(c, kiln_tls_from_job(c->tls, c->head + head_end, c->hlen - head_end, why,
                                               sizeof(why)), why);
        } else if (c->hlen > head_end) { /* bytes the job sent after its CONNECT */
            send_to(c, (uv_stream_t *)&c->up, NULL, c->head + head_end, c->hlen - head_end);
        }
    }
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
        deny_note(c->eg, c->host, c->port, "does not resolve");
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
        deny_note(c->eg, c->host, c->port, why ? why : "no address");
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
    if (c->eg->nsecrets > 0 && (c->subs = calloc(c->eg->nsecrets, sizeof(*c->subs))) == NULL) {
        respond(c, 502, "out of memory");
        return;
    }
    for (size_t i = 0; i < c->eg->nsecrets; i++) {
        const struct kiln_egress_secret *sec = &c->eg->secrets[i];
        int reach = kiln_egress_allowed(sec->hosts, sec->nhosts, c->host, c->port);
        /* in plaintext only to a port the operator named: "api.example"
         * means HTTPS there, not port 80 */
        int plain = reach && !c->is_connect && !port_named(sec, c->host, c->port), bound = reach && !plain;
        c->subs[i] = (struct kiln_egress_subst){sec->name, sec->placeholder, strlen(sec->placeholder),
                                                bound ? sec->value : NULL, bound ? sec->vlen : 0, plain};
        allowed |= reach; /* a secret's hosts are the job's to reach */
    }
    if (!allowed) {
        deny_note(c->eg, c->host, c->port, "not in net.allow");
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
        conn_end(c);
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
        conn_end(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->down, on_alloc, on_head);
}

static void server_closed(uv_handle_t *h);

static int copy_secrets(struct kiln_egress *eg, const struct kiln_egress_opts *o)
{
    if (o->nsecrets == 0)
        return 0;
    if ((eg->secrets = calloc(o->nsecrets, sizeof(*eg->secrets))) == NULL)
        return -1;
    for (size_t i = 0; i < o->nsecrets; i++) {
        const struct kiln_egress_secret *from = &o->secrets[i];
        struct kiln_egress_secret *to = &eg->secrets[i];
        char **hosts = calloc(from->nhosts + 1, sizeof(char *));
        char *value = malloc(from->vlen + 1);
        eg->nsecrets++;
        to->hosts = (const char *const *)hosts;
        to->value = value;
        to->vlen = from->vlen;
        to->name = strdup(from->name);
        to->placeholder = strdup(from->placeholder);
        if (hosts == NULL || value == NULL || to->name == NULL || to->placeholder == NULL)
            return -1;
        memcpy(value, from->value, from->vlen);
        value[from->vlen] = '\0';
        for (size_t k = 0; k < from->nhosts; k++, to->nhosts++)
            if ((hosts[k] = strdup(from->hosts[k])) == NULL)
                return -1;
    }
    return 0;
}

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
    if (copy_secrets(eg, o) < 0) {
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
