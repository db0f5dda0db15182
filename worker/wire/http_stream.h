/*
 * The requests of one HTTP/1.x connection, as a proxy passes them on:
 * each request head is read whole and handed to the proxy's `head`
 * callback (to check, rewrite and pass on), bodies are passed on as they
 * come (http_parser finds where each ends: Content-Length or chunked),
 * and after an Upgrade (or CONNECT) the bytes are passed on as they are.
 * The egress proxy (egress/egress_http.c) and the exposed-port proxy
 * (expose/) both read their clients this way.
 *
 * A head is refused before the callback sees it unless every line ends
 * in CRLF with no NUL, it is at most KILN_HTTP_HEAD_MAX - 1 bytes and
 * http_parser reads it as one request.
 */
#ifndef KILN_WIRE_HTTP_STREAM_H
#define KILN_WIRE_HTTP_STREAM_H

#include <http_parser.h>
#include <stddef.h>

#define KILN_HTTP_HEAD_MAX 16384

struct kiln_http_stream;

/* `data` is borrowed for the call. */
typedef void kiln_http_emit_cb(void *arg, const char *data, size_t len);
/* A whole request head is in hs->head (hs->hlen bytes, NUL-terminated;
 * the parser's fields say its method, version and upgrade): pass on what
 * should go in its place through the stream's `emit`. Returns 0, or -1
 * with the reason in `why` (the connection ends). */
typedef int kiln_http_head_cb(void *arg, struct kiln_http_stream *hs, char *why, size_t len);

struct kiln_http_stream {
    http_parser p;
    enum { KILN_HS_HEAD, KILN_HS_BODY, KILN_HS_RAW } state;
    int complete;               /* the message in the parser has ended */
    kiln_http_head_cb *head_cb;
    kiln_http_emit_cb *emit;
    void *arg;
    size_t hlen;
    char head[KILN_HTTP_HEAD_MAX];
};

void kiln_http_stream_init(struct kiln_http_stream *hs, kiln_http_head_cb *head_cb, kiln_http_emit_cb *emit,
                           void *arg);

/* The client's next `n` bytes: heads go to `head_cb`, the rest to `emit`,
 * in order. Returns 0, or -1 with the reason in `why` (a head too large
 * or not HTTP, a bad body, or the callback's refusal): end the connection
 * then. */
int kiln_http_stream_feed(struct kiln_http_stream *hs, const char *data, size_t n, char *why, size_t len);

/* Header line `l` (n bytes, without its CRLF): why another server could
 * read it otherwise (a folded line, a space before the colon, a name that
 * is not a token), or NULL when it reads one way. */
const char *kiln_http_odd_header(const char *l, size_t n);
/* 1 if header line `l` (n bytes) is named `name` (case-insensitive). */
int kiln_http_named(const char *l, size_t n, const char *name);

#endif
