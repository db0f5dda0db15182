/*
 * What secrets change on one connection through the egress proxy: which
 * of them may go to its destination, and, where any may or the job's
 * requests must be read anyway (plain HTTP), the rewriter in between,
 * behind TLS ended here (the worker's CA) for a CONNECT.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "egress/egress_conn.h"

void kiln_egress_secret_clear(struct kiln_egress_secret *s)
{
    free((char *)s->name);
    if (s->value != NULL)
        OPENSSL_clear_free((char *)s->value, s->vlen);
    for (size_t k = 0; k < s->nhosts; k++)
        free((char *)s->hosts[k]);
    free((char **)s->hosts);
    memset(s, 0, sizeof(*s));
}

void kiln__egress_secrets_free(struct kiln_egress_secret *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)v[i].placeholder); /* the proxy's own copy */
        kiln_egress_secret_clear(&v[i]);
    }
    free(v);
}

int kiln__egress_secrets_copy(struct kiln_egress *eg, const struct kiln_egress_opts *o)
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
        to->plain = from->plain;
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


static void deny_secret(void *arg, const struct kiln_egress_subst *s)
{
    struct econn *c = arg;
    char why[200];
    if (s->plain)
        snprintf(why, sizeof(why), "secret %s goes over plain HTTP only to hosts its secrets file marks "
                 "http://: sent without its value", s->name);
    else
        snprintf(why, sizeof(why), "secret %s is not bound to this host: sent without its value", s->name);
    kiln__egress_deny(c->eg, c->host, c->port, why);
}

/* 1 if a pattern the operator marked http:// takes host:port: plain HTTP
 * may carry the value there. Any other pattern, port or not, means HTTPS:
 * a TLS port named without http:// never gets the value in cleartext. */
static int plain_ok(const struct kiln_egress_secret *sec, const char *host, int port)
{
    for (size_t i = 0; i < sec->nhosts && i < 32; i++)
        if ((sec->plain >> i & 1u) && kiln_egress_allowed(&sec->hosts[i], 1, host, port))
            return 1;
    return 0;
}

static void to_up(void *arg, const char *data, size_t n)
{
    struct econn *c = arg;
    if (!c->done)
        kiln__egress_send(c, (uv_stream_t *)&c->up, (uv_stream_t *)&c->down, data, n);
}

static void to_down(void *arg, const char *data, size_t n)
{
    struct econn *c = arg;
    if (!c->done)
        kiln__egress_send(c, (uv_stream_t *)&c->down, (uv_stream_t *)&c->up, data, n);
}

static void to_tls(void *arg, const char *data, size_t n)
{
    struct econn *c = arg;
    if (!c->done && kiln_tls_send_dest(c->tls, data, n) < 0)
        kiln__egress_end(c);
}

static void feed_rw(void *arg, const char *data, size_t n)
{
    struct econn *c = arg;
    char why[200];
    if (!c->done && kiln_http_rw_feed(c->rw, data, n, why, sizeof(why)) < 0) {
        kiln_debug("egress: %s:%d: %s", c->host, c->port, why);
        kiln__egress_end(c);
    }
}

static void on_job_http(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct econn *c = s->data;
    if (n < 0)
        kiln__egress_end(c);
    else
        feed_rw(c, buf->base, (size_t)n);
}

/* A TLS side answered: 1 its session closed, -1 it failed (recorded). */
static void tls_after(struct econn *c, int r, const char *why)
{
    if (r < 0)
        kiln__egress_deny(c->eg, c->host, c->port, why);
    if (r != 0)
        kiln__egress_end(c);
}

static void on_job_tls(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct econn *c = s->data;
    char why[300];
    if (n < 0)
        kiln__egress_end(c);
    else if (!c->done)
        tls_after(c, kiln_tls_from_job(c->tls, buf->base, (size_t)n, why, sizeof(why)), why);
}

static void on_dest_tls(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct econn *c = s->data;
    char why[300];
    if (n < 0)
        kiln__egress_end(c);
    else if (!c->done)
        tls_after(c, kiln_tls_from_dest(c->tls, buf->base, (size_t)n, why, sizeof(why)), why);
}



int kiln__egress_bind(struct econn *c)
{
    int reach_any = 0;
    if (c->eg->nsecrets > 0 && (c->subs = calloc(c->eg->nsecrets, sizeof(*c->subs))) == NULL)
        return -1;
    for (size_t i = 0; i < c->eg->nsecrets; i++) {
        const struct kiln_egress_secret *sec = &c->eg->secrets[i];
        int reach = kiln_egress_allowed(sec->hosts, sec->nhosts, c->host, c->port);
        /* in plaintext only where the operator wrote http:// */
        int plain = reach && !c->is_connect && !plain_ok(sec, c->host, c->port), bound = reach && !plain;
        c->subs[i] = (struct kiln_egress_subst){sec->name, sec->placeholder, strlen(sec->placeholder),
                                                bound ? sec->value : NULL, bound ? sec->vlen : 0, plain};
        reach_any |= reach;
    }
    return reach_any;
}

int kiln__egress_rewrites(const struct econn *c)
{
    if (!c->is_connect)
        return 1;
    for (size_t i = 0; c->eg->tls != NULL && i < c->eg->nsecrets; i++)
        if (c->subs[i].value != NULL)
            return 1;
    return 0;
}

void kiln__egress_rewrite_start(struct econn *c, size_t head_end)
{
    char why[300];
    if ((c->rw = malloc(sizeof(*c->rw))) == NULL) {
        kiln__egress_end(c);
        return;
    }
    kiln_http_rw_init(c->rw, c->host, c->port, !c->is_connect, c->subs, c->eg->nsecrets,
                      c->is_connect ? to_tls : to_up, deny_secret, c);
    if (!c->is_connect) { /* plain HTTP: each request, the first one too */
        c->down_cb = on_job_http;
        feed_rw(c, c->head, c->hlen);
        return;
    }
    struct kiln_tls_io io = {.to_job = to_down, .to_dest = to_up, .plain = feed_rw, .arg = c};
    if (kiln_tls_conn_new(c->eg->tls, c->host, &io, &c->tls, why, sizeof(why)) < 0) {
        tls_after(c, -1, why);
        return;
    }
    c->down_cb = on_job_tls;
    c->up_cb = on_dest_tls;
    if (c->hlen > head_end) /* the job's ClientHello came with its CONNECT */
        tls_after(c, kiln_tls_from_job(c->tls, c->head + head_end, c->hlen - head_end, why, sizeof(why)), why);
}
