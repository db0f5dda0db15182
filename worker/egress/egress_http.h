/*
 * The requests of one connection through the egress proxy, as they go
 * from the job to its destination: each request head is read whole,
 * its secrets' placeholders replaced by their values where the
 * destination is bound to them, and passed on; bodies are passed on as
 * they come (http_parser finds where each ends: Content-Length or
 * chunked), and after an Upgrade the bytes are the job's own.
 *
 * Only the request line and the headers are rewritten, and of the headers
 * not Host, Origin and Referer, which servers echo back and which carry
 * no credentials: a placeholder there, or in a body, reaches the
 * destination as it is. Bodies can be large, streamed and compressed,
 * and their length is in a header already sent.
 *
 * A head is refused (the connection ends) unless it is one any server
 * reads the same way: lines end in CRLF, no NUL, one Host header naming
 * the destination, a path for its target (plain HTTP through the proxy:
 * an absolute URL for the destination, sent on as a path); TRACE, which
 * echoes the request, is refused.
 */
#ifndef KILN_EGRESS_HTTP_H
#define KILN_EGRESS_HTTP_H

#include <stddef.h>

#include "wire/http_stream.h"

#define KILN_HTTP_REWRITTEN_MAX 65536 /* a head with its values in */

/* A secret in play on one connection. */
struct kiln_egress_subst {
    const char *name;           /* the operator's name, for `denied` */
    const char *placeholder;    /* what the job holds */
    size_t plen;
    const char *value;          /* NULL: the destination is not bound to it */
    size_t vlen;
    int plain;                  /* bound, but not to plain HTTP on this port */
};

/* A placeholder of `s` went toward a destination not bound to it. */
typedef void kiln_http_deny_cb(void *arg, const struct kiln_egress_subst *s);

struct kiln_http_rw {
    struct kiln_http_stream s;  /* the connection's requests (wire/http_stream.h) */
    int proxy_form;             /* plain HTTP through the proxy: absolute URIs, made origin-form */
    const char *host;           /* the connection's destination (borrowed) */
    int port;
    const struct kiln_egress_subst *subs; /* borrowed */
    size_t nsubs;
    kiln_http_emit_cb *emit;
    kiln_http_deny_cb *deny;
    void *arg;
};

/* Start the requests of a connection to `host`:`port`; everything named is
 * borrowed for the connection's life. */
void kiln_http_rw_init(struct kiln_http_rw *rw, const char *host, int port, int proxy_form,
                       const struct kiln_egress_subst *subs, size_t nsubs, kiln_http_emit_cb *emit,
                       kiln_http_deny_cb *deny, void *arg);

/* The job's next `n` bytes: what goes on is given to `emit`, in order.
 * Returns 0, or -1 with the reason in `why` (a head too large or not
 * HTTP, a request for another host on a proxy connection): end the
 * connection then. */
int kiln_http_rw_feed(struct kiln_http_rw *rw, const char *data, size_t n, char *why, size_t len);

/* `data` (n bytes) with every placeholder of `subs` that has a value
 * replaced by it, and `deny` told once per secret whose placeholder is
 * there without one. Returns a malloc'd buffer (*outlen bytes) or NULL. */
char *kiln_http_substitute(const char *data, size_t n, const struct kiln_egress_subst *subs,
                           size_t nsubs, size_t *outlen, kiln_http_deny_cb *deny, void *arg);

#endif
