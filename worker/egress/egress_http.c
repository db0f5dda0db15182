#include "egress/egress_http.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *kiln_http_substitute(const char *data, size_t n, const struct kiln_egress_subst *subs,
                           size_t nsubs, size_t *outlen, kiln_http_deny_cb *deny, void *arg)
{
    size_t grow = 0;
    unsigned denied = 0; /* a bit per secret: told once */
    /* first the size: each placeholder found, and what replaces it */
    for (int pass = 0; pass < 2; pass++) {
        char *out = NULL;
        size_t o = 0;
        if (pass == 1 && (out = malloc(n + grow + 1)) == NULL)
            return NULL;
        for (size_t i = 0; i < n;) {
            size_t k = 0;
            for (; k < nsubs; k++)
                if (subs[k].plen <= n - i && memcmp(data + i, subs[k].placeholder, subs[k].plen) == 0)
                    break;
            if (k == nsubs) {
                if (pass == 1)
                    out[o++] = data[i];
                i++;
                continue;
            }
            const struct kiln_egress_subst *s = &subs[k];
            if (pass == 0) {
                if (s->value != NULL && s->vlen > s->plen)
                    grow += s->vlen - s->plen;
                if (s->value == NULL && k < 32 && !(denied & (1u << k))) {
                    denied |= 1u << k;
                    if (deny != NULL)
                        deny(arg, s);
                }
            } else if (s->value != NULL) {
                memcpy(out + o, s->value, s->vlen);
                o += s->vlen;
            } else {
                memcpy(out + o, s->placeholder, s->plen);
                o += s->plen;
            }
            i += s->plen;
        }
        if (pass == 1) {
            out[o] = '\0';
            *outlen = o;
            return out;
        }
    }
    return NULL;
}

static int head_done(void *arg, struct kiln_http_stream *hs, char *why, size_t len);

void kiln_http_rw_init(struct kiln_http_rw *rw, const char *host, int port, int proxy_form,
                       const struct kiln_egress_subst *subs, size_t nsubs, kiln_http_emit_cb *emit,
                       kiln_http_deny_cb *deny, void *arg)
{
    kiln_http_stream_init(&rw->s, head_done, emit, arg);
    rw->proxy_form = proxy_form;
    rw->host = host;
    rw->port = port;
    rw->subs = subs;
    rw->nsubs = nsubs;
    rw->emit = emit;
    rw->deny = deny;
    rw->arg = arg;
}

/* A proxy request's line in origin form ("GET /p?q HTTP/1.1"), once its
 * absolute URI is checked to name this connection's destination. The head
 * is rewritten in place; returns 0 or -1 with `why`. */
static int origin_form(struct kiln_http_rw *rw, char *why, size_t len)
{
    char *line_end = strstr(rw->s.head, "\r\n");
    char *sp1 = memchr(rw->s.head, ' ', (size_t)(line_end - rw->s.head));
    char *sp2 = NULL;
    for (char *q = line_end - 1; q > sp1; q--)
        if (*q == ' ') {
            sp2 = q;
            break;
        }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (sp1 == NULL || sp2 == NULL || rw->s.p.method == HTTP_CONNECT ||
        http_parser_parse_url(sp1 + 1, (size_t)(sp2 - sp1 - 1), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_HOST))) {
        snprintf(why, len, "a request on a proxy connection needs an absolute http:// URL");
        return -1;
    }
    const char *url = sp1 + 1;
    int port = (u.field_set & (1 << UF_PORT)) ? (int)u.port : 80;
    if (port != rw->port || strlen(rw->host) != u.field_data[UF_HOST].len ||
        strncasecmp(rw->host, url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len) != 0) {
        snprintf(why, len, "one proxy connection, one destination: open another for another host");
        return -1;
    }
    /* from the path (or the query) to the fragment: what the server sees */
    size_t from, to;
    if (u.field_set & (1 << UF_PATH))
        from = u.field_data[UF_PATH].off;
    else if (u.field_set & (1 << UF_QUERY))
        from = (size_t)u.field_data[UF_QUERY].off - 1;
    else
        from = (size_t)(sp2 - url);
    to = (u.field_set & (1 << UF_FRAGMENT)) ? (size_t)u.field_data[UF_FRAGMENT].off - 1 : (size_t)(sp2 - url);
    if (from > to) /* an empty query, then a fragment ("http://h:1?#f"): "/" */
        from = to;
    int slash = !(u.field_set & (1 << UF_PATH));
    /* "METHOD " + [/] + url[from..to) + " HTTP/x.y..." */
    size_t keep = (size_t)(sp1 + 1 - rw->s.head), mid = to - from, tail = rw->s.hlen - (size_t)(sp2 - rw->s.head);
    memmove(rw->s.head + keep + slash, url + from, mid);
    if (slash)
        rw->s.head[keep] = '/';
    memmove(rw->s.head + keep + slash + mid, rw->s.head + (sp2 - rw->s.head), tail);
    rw->s.hlen = keep + slash + mid + tail;
    rw->s.head[rw->s.hlen] = '\0';
    return 0;
}

/* A Host header's value names the connection's destination: `host`, its
 * port when not the scheme's own, an IPv6 address in brackets. */
static int host_is(const struct kiln_http_rw *rw, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    const char *h = v, *end = v + n, *colon = NULL;
    size_t hl;
    if (n > 0 && *v == '[') {
        const char *rb = memchr(v, ']', n);
        if (rb == NULL)
            return 0;
        h = v + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1 < end ? rb + 1 : NULL;
        if (colon != NULL && *colon != ':')
            return 0;
    } else {
        colon = memchr(v, ':', n);
        hl = colon ? (size_t)(colon - v) : n;
    }
    int port = rw->proxy_form ? 80 : 443;
    if (colon != NULL) {
        port = 0;
        for (const char *p = colon + 1; p < end; p++) {
            if (*p < '0' || *p > '9' || port > 65535)
                return 0;
            port = port * 10 + (*p - '0');
        }
    }
    return port == rw->port && hl == strlen(rw->host) && strncasecmp(h, rw->host, hl) == 0;
}

/* The head's lines checked and rewritten into a new buffer: the request
 * line and every header but Host, Origin and Referer (which servers echo
 * in answers and redirects, and which carry no credentials) get values. */
static char *rewrite_lines(struct kiln_http_rw *rw, size_t *outlen, char *why, size_t len)
{
    size_t cap = 0, o = 0;
    char *out = NULL;
    int hosts = 0, skip = 0;
    for (size_t at = 0; at < rw->s.hlen;) {
        const char *l = rw->s.head + at;
        size_t n = (size_t)(strstr(l, "\r\n") - l), m = n;
        char *sub = NULL;
        const char *odd = at > 0 && n > 0 ? kiln_http_odd_header(l, n) : NULL;
        if (odd != NULL) {
            snprintf(why, len, "%s: refused, not every server would read it alike", odd);
            goto fail;
        }
        if (at > 0 && n > 0) { /* a header */
            skip = kiln_http_named(l, n, "host") || kiln_http_named(l, n, "origin") || kiln_http_named(l, n, "referer");
            if (kiln_http_named(l, n, "host") && (hosts++ > 0 || !host_is(rw, l + 5, n - 5))) {
                snprintf(why, len, "the Host header must name %s:%d, once", rw->host, rw->port);
                goto fail;
            }
        }
        if (!(at > 0 && skip) && n > 0 &&
            (sub = kiln_http_substitute(l, n, rw->subs, rw->nsubs, &m, rw->deny, rw->arg)) == NULL)
            goto nomem;
        if (o + m + 2 > KILN_HTTP_REWRITTEN_MAX) {
            free(sub);
            snprintf(why, len, "request head over %d bytes once its secrets are in", KILN_HTTP_REWRITTEN_MAX);
            goto fail;
        }
        if (o + m + 2 > cap) {
            char *grown = realloc(out, cap = (o + m + 2) * 2);
            if (grown == NULL) {
                free(sub);
                goto nomem;
            }
            out = grown;
        }
        memcpy(out + o, sub ? sub : l, m);
        memcpy(out + o + m, "\r\n", 2);
        o += m + 2;
        free(sub);
        at += n + 2;
    }
    if (hosts == 0 && rw->s.p.http_major == 1 && rw->s.p.http_minor >= 1) {
        snprintf(why, len, "an HTTP/1.1 request without a Host header");
        goto fail;
    }
    *outlen = o;
    return out;
nomem:
    snprintf(why, len, "out of memory");
fail:
    free(out);
    return NULL;
}

/* A whole head is in the stream: check it, rewrite it, pass it on. */
static int head_done(void *arg, struct kiln_http_stream *hs, char *why, size_t len)
{
    struct kiln_http_rw *rw = (struct kiln_http_rw *)((char *)hs - offsetof(struct kiln_http_rw, s));
    (void)arg;
    if (hs->p.method == HTTP_TRACE) {
        snprintf(why, len, "TRACE would send the request back: refused");
        return -1;
    }
    if (rw->proxy_form) {
        if (origin_form(rw, why, len) < 0)
            return -1;
    } else { /* inside TLS to one host: a path, never another URL */
        const char *target = strchr(hs->head, ' ') + 1;
        if (*target != '/' && strncmp(target, "* ", 2) != 0) {
            snprintf(why, len, "a request inside a tunnel must name a path, not %.*s",
                     (int)strcspn(target, " \r"), target);
            return -1;
        }
    }
    size_t n;
    char *out = rewrite_lines(rw, &n, why, len);
    if (out == NULL)
        return -1;
    rw->emit(rw->arg, out, n);
    free(out);
    return 0;
}

int kiln_http_rw_feed(struct kiln_http_rw *rw, const char *data, size_t n, char *why, size_t len)
{
    return kiln_http_stream_feed(&rw->s, data, n, why, len);
}

