/*
 * TLS for the egress proxy's connections that carry secrets: the proxy
 * speaks TLS with the job as the destination, with a certificate made for
 * that host by the worker's own CA (its key never leaves the worker; its
 * certificate is in every sandbox's CA bundle), and TLS with the
 * destination, whose certificate is verified against the host's trust
 * store and --egress-ca. In between, the plaintext requests go through
 * the rewriter (egress_http.c). OpenSSL runs on memory BIOs: the bytes
 * come and go over the proxy's libuv streams.
 */
#ifndef KILN_EGRESS_TLS_H
#define KILN_EGRESS_TLS_H

#include <stddef.h>

struct kiln_tls;
struct kiln_tls_conn;

/* The worker's CA (made now, in memory) and its trust for destinations:
 * the system store, plus `extra_ca` (a PEM file) when not NULL. Returns 0
 * with a new context in *out (free with kiln_tls_free()), or -1 with the
 * reason in `err`. */
int kiln_tls_new(const char *extra_ca, struct kiln_tls **out, char *err, size_t errlen);
void kiln_tls_free(struct kiln_tls *t);
/* The CA's certificate in PEM, borrowed. */
const char *kiln_tls_ca_pem(const struct kiln_tls *t);

/* Where one connection's bytes go; `data` is borrowed for the call. */
struct kiln_tls_io {
    void (*to_job)(void *arg, const char *data, size_t n);   /* TLS records for the job */
    void (*to_dest)(void *arg, const char *data, size_t n);  /* TLS records for the destination */
    void (*plain)(void *arg, const char *data, size_t n);    /* what the job sent, decrypted */
    void *arg;
};

/* A connection to `host` (a name or an address): starts the handshake
 * with the destination at once. 0, or -1 with `err`. */
int kiln_tls_conn_new(struct kiln_tls *t, const char *host, const struct kiln_tls_io *io,
                      struct kiln_tls_conn **out, char *err, size_t errlen);
void kiln_tls_conn_free(struct kiln_tls_conn *c);

/* Bytes from the job's side / the destination's side. Returns 0, 1 when
 * that side closed its TLS session, or -1 with the reason in `err` (a
 * failed handshake: the destination's certificate did not verify, the
 * job does not trust the worker's CA...). */
int kiln_tls_from_job(struct kiln_tls_conn *c, const char *data, size_t n, char *err, size_t errlen);
int kiln_tls_from_dest(struct kiln_tls_conn *c, const char *data, size_t n, char *err, size_t errlen);
/* Plaintext for the destination (the rewritten requests). 0 or -1. What
 * the destination answers goes to the job as it is. */
int kiln_tls_send_dest(struct kiln_tls_conn *c, const char *data, size_t n);

#endif
