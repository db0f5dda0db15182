#include "egress/egress_tls.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CERTS_KEPT 64
#define LEAF_DAYS 7
#define LEAF_RENEW_S (24 * 3600) /* a kept certificate is made again after a day */
#define EARLY_MAX 65536 /* what a job may send before the destination's handshake is done */

struct kiln_tls {
    EVP_PKEY *ca_key, *leaf_key;
    X509 *ca;
    char *ca_pem;
    SSL_CTX *to_dest, *to_job;
    struct { char host[256]; X509 *cert; time_t made, used; } certs[CERTS_KEPT];
};

struct kiln_tls_conn {
    struct kiln_tls_io io;
    SSL *job, *dest;
    int job_up, dest_up;        /* handshakes done */
    int broken;                 /* a write to the job failed */
};

static void ssl_reason(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[200] = "";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = e != NULL && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

/* A certificate for `key` named `cn`, signed by `issuer_key` (and by
 * itself when `issuer` is NULL: the CA). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       long days, const char *san)
{
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    int ok = x != NULL && serial != NULL && X509_set_version(x, 2) == 1 &&
             BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
             BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) != NULL &&
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(x), days * 86400) != NULL &&
             X509_set_pubkey(x, key) == 1 &&
             X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                        (const unsigned char *)cn, -1, -1, 0) == 1 &&
             X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x)) == 1;
    BN_free(serial);
    if (ok && issuer == NULL)
        ok = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == 0 &&
             add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
             add_ext(x, x, NID_subject_key_identifier, "hash") == 0 &&
             add_ext(x, x, NID_authority_key_identifier, "keyid:always") == 0;
    else if (ok)
        ok = add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") == 0 &&
             add_ext(x, issuer, NID_ext_key_usage, "serverAuth") == 0 &&
             add_ext(x, issuer, NID_subject_key_identifier, "hash") == 0 &&
             add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") == 0 &&
             add_ext(x, issuer, NID_subject_alt_name, san) == 0;
    if (ok && X509_sign(x, issuer_key, EVP_sha256()) > 0)
        return x;
    X509_free(x);
    return NULL;
}

int kiln_tls_new(const char *extra_ca, struct kiln_tls **out, char *err, size_t errlen)
{
    struct kiln_tls *t = calloc(1, sizeof(*t));
    unsigned char tok[6];
    char cn[64];
    BIO *pem = NULL;
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    RAND_bytes(tok, sizeof(tok));
    snprintf(cn, sizeof(cn), "kiln egress CA %02x%02x%02x%02x%02x%02x", tok[0], tok[1], tok[2],
             tok[3], tok[4], tok[5]);
    if ((t->ca_key = EVP_EC_gen("P-256")) == NULL || (t->leaf_key = EVP_EC_gen("P-256")) == NULL ||
        (t->ca = make_cert(t->ca_key, cn, NULL, t->ca_key, 3650, NULL)) == NULL) {
        ssl_reason(err, errlen, "making the egress CA");
        goto fail;
    }
    char *data;
    long n;
    if ((pem = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509(pem, t->ca) != 1 ||
        (n = BIO_get_mem_data(pem, &data)) <= 0 || (t->ca_pem = strndup(data, (size_t)n)) == NULL) {
        ssl_reason(err, errlen, "writing the egress CA");
        goto fail;
    }
    BIO_free(pem);
    pem = NULL;
    if ((t->to_dest = SSL_CTX_new(TLS_client_method())) == NULL ||
        (t->to_job = SSL_CTX_new(TLS_server_method())) == NULL) {
        ssl_reason(err, errlen, "TLS contexts");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->to_dest, TLS1_2_VERSION);
    SSL_CTX_set_min_proto_version(t->to_job, TLS1_2_VERSION);
    SSL_CTX_set_options(t->to_dest, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_options(t->to_job, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_verify(t->to_dest, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_default_verify_paths(t->to_dest) != 1) {
        ssl_reason(err, errlen, "the system's trust store");
        goto fail;
    }
    if (extra_ca != NULL && SSL_CTX_load_verify_locations(t->to_dest, extra_ca, NULL) != 1) {
        char what[600];
        snprintf(what, sizeof(what), "--egress-ca %s", extra_ca);
        ssl_reason(err, errlen, what);
        goto fail;
    }
    *out = t;
    return 0;
fail:
    BIO_free(pem);
    kiln_tls_free(t);
    return -1;
}

void kiln_tls_free(struct kiln_tls *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < CERTS_KEPT; i++)
        X509_free(t->certs[i].cert);
    SSL_CTX_free(t->to_dest);
    SSL_CTX_free(t->to_job);
    X509_free(t->ca);
    EVP_PKEY_free(t->ca_key);
    EVP_PKEY_free(t->leaf_key);
    free(t->ca_pem);
    free(t);
}

const char *kiln_tls_ca_pem(const struct kiln_tls *t)
{
    return t->ca_pem;
}

static int is_address(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* The certificate the job is shown for `host`: kept, or made now. */
static X509 *leaf_for(struct kiln_tls *t, const char *host)
{
    time_t now = time(NULL);
    size_t oldest = 0;
    for (size_t i = 0; i < CERTS_KEPT; i++) {
        if (t->certs[i].cert != NULL && strcmp(t->certs[i].host, host) == 0 &&
            now - t->certs[i].made < LEAF_RENEW_S) {
            t->certs[i].used = now;
            return t->certs[i].cert;
        }
        if (t->certs[i].used < t->certs[oldest].used)
            oldest = i;
    }
    char san[300], cn[65];
    snprintf(san, sizeof(san), "%s:%s", is_address(host) ? "IP" : "DNS", host);
    snprintf(cn, sizeof(cn), "%.64s", host);
    X509 *x = make_cert(t->leaf_key, cn, t->ca, t->ca_key, LEAF_DAYS, san);
    if (x == NULL)
        return NULL;
    X509_free(t->certs[oldest].cert);
    snprintf(t->certs[oldest].host, sizeof(t->certs[oldest].host), "%s", host);
    t->certs[oldest].cert = x;
    t->certs[oldest].made = t->certs[oldest].used = now;
    return x;
}

/* A host fit to be named in a certificate: a DNS name or an address. */
static int host_fit(const char *host)
{
    if (*host == '\0' || strlen(host) > 253)
        return 0;
    if (is_address(host))
        return 1;
    for (const char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            return 0;
    return 1;
}

static SSL *with_bios(SSL_CTX *ctx)
{
    SSL *s = SSL_new(ctx);
    BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
    if (s == NULL || r == NULL || w == NULL) {
        SSL_free(s);
        BIO_free(r);
        BIO_free(w);
        return NULL;
    }
    SSL_set_bio(s, r, w);
    return s;
}

/* What OpenSSL wrote for one side, handed to its stream. */
static void flush(SSL *s, void (*to)(void *, const char *, size_t), void *arg)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(SSL_get_wbio(s), buf, sizeof(buf))) > 0)
        to(arg, buf, (size_t)n);
}

static void flush_both(struct kiln_tls_conn *c)
{
    flush(c->dest, c->io.to_dest, c->io.arg);
    flush(c->job, c->io.to_job, c->io.arg);
}

int kiln_tls_conn_new(struct kiln_tls *t, const char *host, const struct kiln_tls_io *io,
                      struct kiln_tls_conn **out, char *err, size_t errlen)
{
    X509 *leaf;
    struct kiln_tls_conn *c;
    if (!host_fit(host)) {
        snprintf(err, errlen, "%.64s cannot be named in a certificate", host);
        return -1;
    }
    if ((leaf = leaf_for(t, host)) == NULL) {
        ssl_reason(err, errlen, "making a certificate");
        return -1;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL || (c->job = with_bios(t->to_job)) == NULL ||
        (c->dest = with_bios(t->to_dest)) == NULL) {
        kiln_tls_conn_free(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->io = *io;
    SSL_set_accept_state(c->job);
    SSL_set_connect_state(c->dest);
    int ok = SSL_use_certificate(c->job, leaf) == 1 && SSL_use_PrivateKey(c->job, t->leaf_key) == 1;
    if (ok && is_address(host))
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->dest), host) == 1;
    else if (ok)
        ok = SSL_set_tlsext_host_name(c->dest, host) == 1 && SSL_set1_host(c->dest, host) == 1;
    if (ok) /* "*.example.com" yes, "f*.example.com" no */
        SSL_set_hostflags(c->dest, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (!ok) {
        ssl_reason(err, errlen, "setting up TLS");
        kiln_tls_conn_free(c);
        return -1;
    }
    SSL_do_handshake(c->dest); /* the ClientHello */
    ERR_clear_error();
    flush(c->dest, c->io.to_dest, c->io.arg);
    *out = c;
    return 0;
}

void kiln_tls_conn_free(struct kiln_tls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->job);
    SSL_free(c->dest);
    free(c);
}

/* Drive one side's handshake; 0 (done or waiting), -1 with `err`. */
static int handshake(SSL *s, int *up, const char *who, char *err, size_t errlen)
{
    if (*up)
        return 0;
    int r = SSL_do_handshake(s);
    if (r == 1) {
        *up = 1;
        return 0;
    }
    int e = SSL_get_error(s, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    long v = SSL_get_verify_result(s);
    if (v != X509_V_OK && SSL_is_server(s) == 0) {
        ERR_clear_error();
        snprintf(err, errlen, "%s's certificate did not verify: %s", who, X509_verify_cert_error_string(v));
        return -1;
    }
    char what[80];
    snprintf(what, sizeof(what), "TLS with the %s failed", who);
    ssl_reason(err, errlen, what);
    return -1;
}

/* Everything decrypted on `s`, to `to`; 1 when the peer closed TLS. */
static int drain(SSL *s, void (*to)(void *, const char *, size_t), void *arg, char *err, size_t errlen)
{
    char buf[16384];
    for (;;) {
        int n = SSL_read(s, buf, sizeof(buf));
        if (n > 0) {
            to(arg, buf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(s, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN)
            return 1;
        ssl_reason(err, errlen, "TLS read");
        return -1;
    }
}

static void reply_to_job(void *arg, const char *data, size_t n)
{
    struct kiln_tls_conn *c = arg;
    if (SSL_write(c->job, data, (int)n) != (int)n) /* memory BIOs: all, or broken */
        c->broken = 1;
}

/* Once both handshakes are done, what each side sent is passed on. */
static int pump(struct kiln_tls_conn *c, char *err, size_t errlen)
{
    int r = 0;
    if (c->job_up && c->dest_up) {
        if ((r = drain(c->job, c->io.plain, c->io.arg, err, errlen)) == 0)
            r = drain(c->dest, reply_to_job, c, err, errlen);
    }
    flush_both(c);
    if (r == 0 && c->broken) {
        snprintf(err, errlen, "TLS write to the job failed");
        r = -1;
    }
    return r;
}

int kiln_tls_from_job(struct kiln_tls_conn *c, const char *data, size_t n, char *err, size_t errlen)
{
    if (BIO_write(SSL_get_rbio(c->job), data, (int)n) != (int)n) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* until both handshakes are done nothing is passed on: bounded */
    if (!(c->job_up && c->dest_up) && BIO_ctrl_pending(SSL_get_rbio(c->job)) > EARLY_MAX) {
        snprintf(err, errlen, "the job sent over %d bytes before the destination's TLS was up", EARLY_MAX);
        return -1;
    }
    if (handshake(c->job, &c->job_up, "job (does it trust the worker's CA?)", err, errlen) < 0) {
        flush_both(c); /* the alert */
        return -1;
    }
    return pump(c, err, errlen);
}

int kiln_tls_from_dest(struct kiln_tls_conn *c, const char *data, size_t n, char *err, size_t errlen)
{
    if (BIO_write(SSL_get_rbio(c->dest), data, (int)n) != (int)n) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (handshake(c->dest, &c->dest_up, "destination", err, errlen) < 0) {
        flush_both(c);
        return -1;
    }
    return pump(c, err, errlen);
}

int kiln_tls_send_dest(struct kiln_tls_conn *c, const char *data, size_t n)
{
    if (n > 0 && SSL_write(c->dest, data, (int)n) != (int)n)
        return -1;
    flush(c->dest, c->io.to_dest, c->io.arg);
    return 0;
}
