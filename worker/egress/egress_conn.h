/*
 * Inside the egress proxy: one proxy (struct kiln_egress) and its
 * connections (struct econn), shared by egress.c (listening, the first
 * head, the destination, splicing) and egress_secrets.c (what secrets
 * change on a connection). Internal to those two files.
 */
#ifndef KILN_EGRESS_CONN_H
#define KILN_EGRESS_CONN_H

#include <stddef.h>
#include <uv.h>

#include "egress/egress.h"
#include "egress/egress_http.h"
#include "egress/egress_tls.h"

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

/* egress.c */
/* Note a refusal for the exit frame's `denied` ("host:port: why"), once. */
void kiln__egress_deny(struct kiln_egress *eg, const char *host, int port, const char *why);
/* Close both sides; freed when libuv lets go. */
void kiln__egress_end(struct econn *c);
/* Queue `n` bytes (copied) to `to`; pause reading `from` (NULL: none) while
 * `to` is backed up. */
void kiln__egress_send(struct econn *c, uv_stream_t *to, uv_stream_t *from, const char *data, size_t n);
void kiln__egress_splice(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* egress_secrets.c */
int kiln__egress_secrets_copy(struct kiln_egress *eg, const struct kiln_egress_opts *o);
void kiln__egress_secrets_free(struct kiln_egress_secret *v, size_t n);
/* Which of the job's secrets may go to the connection's destination
 * (c->subs); 1 if any secret's hosts take it (it may be reached), 0 if
 * none, -1 out of memory. */
int kiln__egress_bind(struct econn *c);
/* The connection needs its requests read: plain HTTP, or a CONNECT to a
 * host a secret is bound to (with the worker's CA). */
int kiln__egress_rewrites(const struct econn *c);
/* Connected: set up the rewriter (and TLS) and pass it what the job sent
 * after its first head (plain HTTP: that head too). Sets the read
 * callbacks; the connection may have ended on return (c->done). */
void kiln__egress_rewrite_start(struct econn *c, size_t head_end);

#endif
