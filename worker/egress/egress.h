/*
 * The egress proxy: a job's only way out. One per sandbox whose job has
 * net.allow, listening on a Unix socket in that sandbox's own directory
 * (the agent relays the job's 127.0.0.1:3128 to it). HTTP CONNECT and
 * plain absolute-URI requests; the host must match an allow pattern; names
 * are resolved here, never by the job; loopback, private, link-local,
 * multicast and cloud-metadata addresses are refused even when an allowed
 * name resolves to them (DNS rebinding), unless the operator lists their
 * range in --net-private-ok. Every refusal is recorded for the exit frame.
 *
 * Patterns: host, *.suffix, host:port, 1.2.3.4[:port], [v6][:port]; without
 * a port only 80 and 443 are allowed.
 *
 * Secrets: the job holds a placeholder; on a connection to a host the
 * secret is bound to, the proxy puts the value in its place in request
 * lines and headers (plain HTTP, and HTTPS with TLS ended here by the
 * worker's CA, egress_tls.h). Toward any other host the placeholder goes
 * as it is, and `denied` says so.
 */
#ifndef KILN_EGRESS_H
#define KILN_EGRESS_H

#include <stddef.h>
#include <uv.h>

#define KILN_EGRESS_DENIED_MAX 32

struct kiln_egress;
struct kiln_tls;

/* One secret of the job, for the proxy. */
struct kiln_egress_secret {
    const char *name;         /* the operator's name, for `denied` */
    const char *placeholder;  /* what the job holds in its environment */
    const char *value;
    size_t vlen;
    const char *const *hosts; /* where the value may go: net.allow patterns */
    size_t nhosts;
    unsigned plain;           /* bit k: hosts[k] may get it over plain HTTP
                               * (the operator wrote http://); else HTTPS only */
};

/* Free a secret's name, value (wiped first) and hosts; not its placeholder. */
void kiln_egress_secret_clear(struct kiln_egress_secret *s);

struct kiln_egress_opts {
    const char *const *allow; /* the job's net.allow */
    size_t nallow;
    const char *private_ok;   /* --net-private-ok, or NULL */
    const struct kiln_egress_secret *secrets;
    size_t nsecrets;
    struct kiln_tls *tls;     /* the worker's CA: HTTPS with secrets; NULL: none */
};

/* Listen at `path` for one sandbox. Everything in `o` is copied but `tls`,
 * which must outlive the proxy. Returns 0 with a new proxy in *out, or a
 * negative libuv code (UV_ENAMETOOLONG: `path` or `private_ok` longer than
 * the proxy keeps). */
int kiln_egress_open(uv_loop_t *loop, const char *path, const struct kiln_egress_opts *o,
                     struct kiln_egress **out);
/* Destinations refused so far ("host:port: why"), borrowed. */
const char *const *kiln_egress_denied(const struct kiln_egress *eg, size_t *n);
/* Stop listening, close its connections; freed when libuv lets go. */
void kiln_egress_close(struct kiln_egress *eg);

/* 1 if `host`:`port` matches one of the patterns (exposed for tests). */
int kiln_egress_allowed(const char *const *allow, size_t nallow, const char *host, int port);

/* Why the proxy refuses to connect to `sa`, or NULL when it may: the
 * host's own addresses, and special-purpose ranges not globally reachable
 * unless `private_ok` (comma-separated IPv4 CIDRs) lists them. Exposed for
 * tests. */
struct sockaddr;
const char *kiln_egress_forbidden(const struct sockaddr *sa, const char *private_ok);

#endif
