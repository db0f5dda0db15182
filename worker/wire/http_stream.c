#include "wire/http_stream.h"

#include <string.h>
#include <strings.h>
#include <stdio.h>

static int on_complete(http_parser *p)
{
    struct kiln_http_stream *hs = p->data;
    hs->complete = 1;
    http_parser_pause(p, 1); /* the next bytes are the next request's */
    return 0;
}

static const http_parser_settings settings = {.on_message_complete = on_complete};

void kiln_http_stream_init(struct kiln_http_stream *hs, kiln_http_head_cb *head_cb, kiln_http_emit_cb *emit,
                           void *arg)
{
    hs->state = KILN_HS_HEAD;
    hs->complete = 0;
    hs->head_cb = head_cb;
    hs->emit = emit;
    hs->arg = arg;
    hs->hlen = 0;
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

/* A line folded onto the one before (obs-fold, which RFC 9112 lets
 * servers join or reject), whitespace before the colon (which some
 * servers drop, reading "Host : x" as a second Host), or a name that is
 * not a token. */
const char *kiln_http_odd_header(const char *l, size_t n)
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

int kiln_http_named(const char *l, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k && l[k] == ':' && strncasecmp(l, name, k) == 0;
}

/* A whole head is in hs->head: parse it, hand it to the proxy. */
static int head_done(struct kiln_http_stream *hs, char *why, size_t len)
{
    if (!crlf_only(hs->head, hs->hlen)) {
        snprintf(why, len, "not an HTTP request: a CR or LF alone in its head");
        return -1;
    }
    http_parser_init(&hs->p, HTTP_REQUEST);
    hs->p.data = hs;
    hs->complete = 0;
    size_t used = http_parser_execute(&hs->p, &settings, hs->head, hs->hlen);
    enum http_errno e = HTTP_PARSER_ERRNO(&hs->p);
    if ((e != HPE_OK && e != HPE_PAUSED) || used != hs->hlen) {
        snprintf(why, len, "not an HTTP request: %s", http_errno_description(e));
        return -1;
    }
    if (e == HPE_PAUSED)
        http_parser_pause(&hs->p, 0);
    if (hs->head_cb(hs->arg, hs, why, len) < 0)
        return -1;
    hs->hlen = 0;
    hs->state = hs->p.upgrade ? KILN_HS_RAW : hs->complete ? KILN_HS_HEAD : KILN_HS_BODY;
    return 0;
}

int kiln_http_stream_feed(struct kiln_http_stream *hs, const char *data, size_t n, char *why, size_t len)
{
    while (n > 0) {
        if (hs->state == KILN_HS_RAW) {
            hs->emit(hs->arg, data, n);
            return 0;
        }
        if (hs->state == KILN_HS_BODY) {
            size_t used = http_parser_execute(&hs->p, &settings, data, n);
            enum http_errno e = HTTP_PARSER_ERRNO(&hs->p);
            if (e != HPE_OK && e != HPE_PAUSED) {
                snprintf(why, len, "bad request body: %s", http_errno_description(e));
                return -1;
            }
            if (used > 0)
                hs->emit(hs->arg, data, used);
            data += used;
            n -= used;
            if (hs->complete)
                hs->state = hs->p.upgrade ? KILN_HS_RAW : KILN_HS_HEAD;
            else if (used == 0) /* the parser took nothing and is not done */
                return snprintf(why, len, "bad request body"), -1;
            continue;
        }
        /* KILN_HS_HEAD: blank lines before a request are no part of it */
        if (hs->hlen == 0) {
            while (n > 0 && (*data == '\r' || *data == '\n'))
                data++, n--;
            if (n == 0)
                return 0;
        }
        size_t start = hs->hlen > 3 ? hs->hlen - 3 : 0, take = n;
        if (take > KILN_HTTP_HEAD_MAX - 1 - hs->hlen)
            take = KILN_HTTP_HEAD_MAX - 1 - hs->hlen;
        memcpy(hs->head + hs->hlen, data, take);
        hs->hlen += take;
        hs->head[hs->hlen] = '\0';
        char *end = memmem(hs->head + start, hs->hlen - start, "\r\n\r\n", 4);
        /* a NUL in the head (only there: the bytes after it are a body's)
         * refuses the connection, however the bytes were cut */
        if (memchr(hs->head, '\0', end ? (size_t)(end - hs->head) : hs->hlen) != NULL) {
            snprintf(why, len, "not an HTTP request: a NUL byte in its head");
            return -1;
        }
        if (end == NULL) {
            if (hs->hlen == KILN_HTTP_HEAD_MAX - 1) {
                snprintf(why, len, "request head over %d bytes", KILN_HTTP_HEAD_MAX - 1);
                return -1;
            }
            return 0; /* all of it taken; more to come */
        }
        size_t head_end = (size_t)(end - hs->head) + 4;
        size_t past = hs->hlen - head_end; /* bytes taken that follow the head */
        hs->hlen = head_end;
        hs->head[head_end] = '\0';
        data += take - past;
        n -= take - past;
        if (head_done(hs, why, len) < 0)
            return -1;
    }
    return 0;
}
