#include "egress/egress_http.h"

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

static int on_complete(http_parser *p)
{
    struct kiln_http_rw *rw = p->data;
    rw->complete = 1;
    http_parser_pause(p, 1); /* the next bytes are the next request's */
    return 0;
}

static const http_parser_settings settings = {.on_message_complete = on_complete};

void kiln_http_rw_init(struct kiln_http_rw *rw, const char *host, int port, int proxy_form,
                       const struct kiln_egress_subst *subs, size_t nsubs, kiln_http_emit_cb *emit,
                       kiln_http_deny_cb *deny, void *arg)
{
    rw->state = RW_HEAD;
    rw->complete = 0;
    rw->proxy_form = proxy_form;
    rw->host = host;
    rw->port = port;
    rw->subs = subs;
    rw->nsubs = nsubs;
    rw->emit = emit;
    rw->deny = deny;
    rw->arg = arg;
    rw->hlen = 0;
}

/* A proxy request's line in origin form ("GET /p?q HTTP/1.1"), once its
 * absolute URI is checked to name this connection's destination. The head
 * is rewritten in place; returns 0 or -1 with `why`. */
static int origin_form(struct kiln_http_rw *rw, char *why, size_t len)
{
    char *line_end = strstr(rw->head, "\r\n");
    char *sp1 = memchr(rw->head, ' ', (size_t)(line_end - rw->head));
    char *sp2 = NULL;
    for (char *q = line_end - 1; q > sp1; q--)
        if (*q == ' ') {
            sp2 = q;
            break;
        }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (sp1 == NULL || sp2 == NULL || rw->p.method == HTTP_CONNECT ||
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
    size_t keep = (size_t)(sp1 + 1 - rw->head), mid = to - from, tail = rw->hlen - (size_t)(sp2 - rw->head);
    memmove(rw->head + keep + slash, url + from, mid);
    if (slash)
        rw->head[keep] = '/';
    memmove(rw->head + keep + slash + mid, rw->head + (sp2 - rw->head), tail);
    rw->hlen = keep + slash + mid + tail;
    rw->head[rw->hlen] = '\0';
    return 0;
}

/* Every line ends in CRLF, with no CR or LF of its own: what the proxy
 * takes for one head is what any server takes for it. */
static int crlf_only(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((h[i] == '\n' && (i == 0 || h[i - 1] != '\r')) || (h[i] == '\r' && (i + 1 == n || h[i + 1] != '\n')))
            return 0;
    return 1;
}

/* Why header line `l` (n bytes, without CRLF) could be read otherwise by
 * another server, or NULL: a line folded onto the one before (obs-fold,
 * which RFC 9112 lets servers join or reject), whitespace before the
 * colon (which some servers drop, reading "Host : x" as a second Host),
 * or a name that is not a token. */
static const char *odd_header(const char *l, size_t n)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (l[0] == ' ' || l[0] == '\t')
        return "a folded header line (obs-fold)";
    size_t k = 0;
    while (k < n && l[k] != ':' && l[k] != ' ' && l[k] != '\t')
        k++;
    if (k < n && l[k] != ':')
        return "a space before a header's colon";
    for (size_t i = 0; i < k; i++)
        if (!((l[i] >= 'a' && l[i] <= 'z') || (l[i] >= 'A' && l[i] <= 'Z') || (l[i] >= '0' && l[i] <= '9') ||
              strchr(tchar, l[i]) != NULL))
            return "a header name that is not a token";
    return k == 0 || k == n ? "a header line without a name and a colon" : NULL;
}

/* 1 if header line `l` (n bytes, without CRLF) is named `name`. */
static int named(const char *l, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k && l[k] == ':' && strncasecmp(l, name, k) == 0;
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
    for (size_t at = 0; at < rw->hlen;) {
        const char *l = rw->head + at;
        size_t n = (size_t)(strstr(l, "\r\n") - l), m = n;
        char *sub = NULL;
        const char *odd = at > 0 && n > 0 ? odd_header(l, n) : NULL;
        if (odd != NULL) {
            snprintf(why, len, "%s: refused, not every server would read it alike", odd);
            goto fail;
        }
        if (at > 0 && n > 0) { /* a header */
            skip = named(l, n, "host") || named(l, n, "origin") || named(l, n, "referer");
            if (named(l, n, "host") && (hosts++ > 0 || !host_is(rw, l + 5, n - 5))) {
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
    if (hosts == 0 && rw->p.http_major == 1 && rw->p.http_minor >= 1) {
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

/* A whole head is in rw->head: check it, rewrite it, pass it on. */
static int head_done(struct kiln_http_rw *rw, char *why, size_t len)
{
    if (!crlf_only(rw->head, rw->hlen)) {
        snprintf(why, len, "not an HTTP request: a CR or LF alone in its head");
        return -1;
    }
    http_parser_init(&rw->p, HTTP_REQUEST);
    rw->p.data = rw;
    rw->complete = 0;
    size_t used = http_parser_execute(&rw->p, &settings, rw->head, rw->hlen);
    enum http_errno e = HTTP_PARSER_ERRNO(&rw->p);
    if ((e != HPE_OK && e != HPE_PAUSED) || used != rw->hlen) {
        snprintf(why, len, "not an HTTP request: %s", http_errno_description(e));
        return -1;
    }
    if (e == HPE_PAUSED)
        http_parser_pause(&rw->p, 0);
    if (rw->p.method == HTTP_TRACE) {
        snprintf(why, len, "TRACE would send the request back: refused");
        return -1;
    }
    if (rw->proxy_form) {
        if (origin_form(rw, why, len) < 0)
            return -1;
    } else { /* inside TLS to one host: a path, never another URL */
        const char *target = strchr(rw->head, ' ') + 1;
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
    rw->hlen = 0;
    rw->state = rw->p.upgrade ? RW_RAW : rw->complete ? RW_HEAD : RW_BODY;
    return 0;
}

int kiln_http_rw_feed(struct kiln_http_rw *rw, const char *data, size_t n, char *why, size_t len)
{
    while (n > 0) {
        if (rw->state == RW_RAW) {
            rw->emit(rw->arg, data, n);
            return 0;
        }
        if (rw->state == RW_BODY) {
            size_t used = http_parser_execute(&rw->p, &settings, data, n);
            enum http_errno e = HTTP_PARSER_ERRNO(&rw->p);
            if (e != HPE_OK && e != HPE_PAUSED) {
                snprintf(why, len, "bad request body: %s", http_errno_description(e));
                return -1;
            }
            if (used > 0)
                rw->emit(rw->arg, data, used);
            data += used;
            n -= used;
            if (rw->complete)
                rw->state = rw->p.upgrade ? RW_RAW : RW_HEAD;
            else if (used == 0) /* the parser took nothing and is not done */
                return snprintf(why, len, "bad request body"), -1;
            continue;
        }
        /* RW_HEAD: blank lines before a request are no part of it */
        if (rw->hlen == 0) {
            while (n > 0 && (*data == '\r' || *data == '\n'))
                data++, n--;
            if (n == 0)
                return 0;
        }
        size_t start = rw->hlen > 3 ? rw->hlen - 3 : 0, take = n;
        if (take > KILN_HTTP_HEAD_MAX - 1 - rw->hlen)
            take = KILN_HTTP_HEAD_MAX - 1 - rw->hlen;
        memcpy(rw->head + rw->hlen, data, take);
        rw->hlen += take;
        rw->head[rw->hlen] = '\0';
        char *end = memmem(rw->head + start, rw->hlen - start, "\r\n\r\n", 4);
        /* a NUL in the head (only there: the bytes after it are a body's)
         * refuses the connection, however the bytes were cut */
        if (memchr(rw->head, '\0', end ? (size_t)(end - rw->head) : rw->hlen) != NULL) {
            snprintf(why, len, "not an HTTP request: a NUL byte in its head");
            return -1;
        }
        if (end == NULL) {
            if (rw->hlen == KILN_HTTP_HEAD_MAX - 1) {
                snprintf(why, len, "request head over %d bytes", KILN_HTTP_HEAD_MAX - 1);
                return -1;
            }
            return 0; /* all of it taken; more to come */
        }
        size_t head_end = (size_t)(end - rw->head) + 4;
        size_t past = rw->hlen - head_end; /* bytes taken that follow the head */
        rw->hlen = head_end;
        rw->head[head_end] = '\0';
        data += take - past;
        n -= take - past;
        if (head_done(rw, why, len) < 0)
            return -1;
    }
    return 0;
}
