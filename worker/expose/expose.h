/*
 * Exposed ports: a session's server inside its sandbox, reached from
 * outside at an unguessable URL (`session.expose`, docs/sessions.md).
 *
 * The worker listens on --expose-listen. Each exposed (session, port) is
 * a route with a token of 128 random bits; a request names it by its
 * Host's first label (https://TOKEN.preview.example/...) or by its path's
 * first segment (http://host:port/TOKEN/..., which is cut off before the
 * request goes on). A request naming no live route gets 404, the same
 * answer whether the token never existed or its session has ended. A
 * routed connection's requests go to the port through a socket the route
 * opens inside the sandbox's network (the sandbox has no network of its
 * own beyond its loopback): heads are checked as the egress proxy checks
 * them (wire/http_stream.h), bodies and, after an Upgrade, the bytes of a
 * WebSocket pass as they come, and answers come back as the server sends
 * them. A port that does not answer gets 502 after --expose-wait-ms.
 *
 * Every connection of a session counts against --expose-max-conns (503
 * past it); when a route goes (its session ended), its connections close.
 * With --expose-tls-cert/--expose-tls-key the server speaks HTTPS itself
 * (OpenSSL on memory BIOs, TLS 1.2 and up, HTTP/1.1 by ALPN); without,
 * TLS is an ingress's in front of it.
 */
#ifndef KILN_EXPOSE_H
#define KILN_EXPOSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#define KILN_EXPOSE_TOKEN_LEN 32 /* 128 bits, hex */
#define KILN_EXPOSE_URL_MAX 512

struct kiln_expose;
struct kiln_expose_route;

struct kiln_expose_opts {
    const char *listen;      /* ADDR:PORT */
    const char *url;         /* the URL template, with "{token}" once; NULL: http://ADDR:PORT/{token}/ */
    int64_t max_conns;       /* connections per session at once */
    int64_t wait_ms;         /* for the first byte of an answer */
    const char *tls_cert;    /* PEM certificate chain: clients speak HTTPS; NULL: plain HTTP */
    const char *tls_key;     /* its PEM private key */
};

/* The way to the route's port: an fd, with *connected 1 when it is a
 * connected stream (a VM's mux stream), 0 when it is a TCP socket made in
 * the sandbox's network that the server connects to 127.0.0.1:port; or a
 * negative errno. `arg` is the route's. */
typedef int (*kiln_expose_open_cb)(void *arg, int port, int *connected);
/* A request came for a route (`arg` the route's): activity. */
typedef void (*kiln_expose_touch_cb)(void *arg);

/* Listen. Returns 0 with the server in *out, or a negative errno with the
 * reason in `err` (an address that does not parse, a port in use). */
int kiln_expose_start(uv_loop_t *loop, const struct kiln_expose_opts *o, struct kiln_expose **out, char *err,
                      size_t errlen);
/* Stop listening, close every connection and free the server (its routes
 * must be gone). */
void kiln_expose_stop(struct kiln_expose *x);

/* Check a URL template as --expose-url takes it: NULL when good, else why. */
const char *kiln_expose_url_ok(const char *tmpl);

/* A route to `port` for the session named by `tag` (what /metrics calls
 * it; copied): a new token, its URL in `url` (KILN_EXPOSE_URL_MAX bytes).
 * `open` and `touch` are called with `arg`. NULL out of memory. */
struct kiln_expose_route *kiln_expose_add(struct kiln_expose *x, const char *tag, int port, kiln_expose_open_cb open,
                                          kiln_expose_touch_cb touch, void *arg, char *url);
/* The route goes: its token names nothing from now on and its connections
 * are closed. */
void kiln_expose_remove(struct kiln_expose_route *r);

/* Prometheus text: connections, requests refused by cause, bytes in and
 * out, in all and per session tag. */
void kiln_expose_gauges(struct kiln_expose *x, FILE *out);

#endif
