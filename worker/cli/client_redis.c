/* The kiln client over Redis Streams (hiredis, blocking: it is a CLI). */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "wire/proto.h"

struct rclient {
    struct kiln_client pub;
    redisContext *c;
    char stream[256];
    char last[64];
};

static int r_watch(struct kiln_client *pub, const char *stream, int from_end)
{
    struct rclient *rc = (struct rclient *)pub;
    snprintf(rc->stream, sizeof(rc->stream), "%s", stream);
    strcpy(rc->last, "0");
    if (from_end) { /* only what is written after now */
        redisReply *r = redisCommand(rc->c, "XREVRANGE %s + - COUNT 1", stream);
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1)
            snprintf(rc->last, sizeof(rc->last), "%s", r->element[0]->element[0]->str);
        if (r)
            freeReplyObject(r);
    }
    return 0;
}

static int r_enqueue(struct kiln_client *pub, const char *queue, const char *id,
                     const void *job, size_t len)
{
    struct rclient *rc = (struct rclient *)pub;
    (void)id;
    redisReply *r = redisCommand(rc->c, "XADD %s * job %b", queue, job, len);
    int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        fprintf(stderr, "kiln: enqueue failed: %s\n", r ? r->str : rc->c->errstr);
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

static int r_read(struct kiln_client *pub, long block_ms, kiln_frame_fn fn, void *arg)
{
    struct rclient *rc = (struct rclient *)pub;
    redisReply *r = block_ms >= 0
        ? redisCommand(rc->c, "XREAD COUNT 100 BLOCK %ld STREAMS %s %s", block_ms, rc->stream, rc->last)
        : redisCommand(rc->c, "XREAD COUNT 100 STREAMS %s %s", rc->stream, rc->last);
    if (r == NULL) {
        fprintf(stderr, "kiln: redis: %s\n", rc->c->errstr);
        return -1;
    }
    int n = 0, stop = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "kiln: redis: %s\n", r->str);
        n = -1;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        redisReply *entries = r->element[0]->element[1];
        for (size_t i = 0; i < entries->elements && !stop; i++) {
            redisReply *e = entries->element[i], *f = e->element[1];
            snprintf(rc->last, sizeof(rc->last), "%s", e->element[0]->str);
            n++;
            for (size_t j = 0; f->type == REDIS_REPLY_ARRAY && j + 1 < f->elements; j += 2) {
                if (strcmp(f->element[j]->str, "frame") != 0)
                    continue;
                msgpack_unpacked u;
                msgpack_unpacked_init(&u);
                if (kiln_mp_unpack(&u, f->element[j + 1]->str, f->element[j + 1]->len) == 0)
                    stop = fn(arg, e->element[0]->str, &u.data);
                msgpack_unpacked_destroy(&u);
            }
        }
    } else if (block_ms < 0) {
        n = -3; /* nothing more: the end */
    }
    freeReplyObject(r);
    return stop ? -2 : n;
}

static void r_drop(struct kiln_client *pub, const char *stream)
{
    struct rclient *rc = (struct rclient *)pub;
    redisReply *r = redisCommand(rc->c, "DEL %s", stream);
    if (r)
        freeReplyObject(r);
}

static int r_cancel(struct kiln_client *pub, const char *control, const char *id)
{
    struct rclient *rc = (struct rclient *)pub;
    redisReply *r = redisCommand(rc->c, "XADD %s * cancel %s", control, id);
    int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        fprintf(stderr, "kiln: cancel failed: %s\n", r ? r->str : rc->c->errstr);
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

static void r_close(struct kiln_client *pub)
{
    struct rclient *rc = (struct rclient *)pub;
    redisFree(rc->c);
    free(rc);
}

static const struct kiln_client_ops redis_ops = {r_watch, r_enqueue, r_read, r_cancel, r_drop, r_close};

struct kiln_client *kiln_client_redis(const char *url)
{
    char host[256] = "127.0.0.1", pass[256] = "";
    int port = 6379, db = 0;
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0) {
        fprintf(stderr, "kiln: bad Redis URL '%s'\n", url);
        return NULL;
    }
    p += 8;
    const char *at = strchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon != NULL)
            snprintf(pass, sizeof(pass), "%.*s", (int)(at - colon - 1), colon + 1);
        p = at + 1;
    }
    size_t n = strcspn(p, ":/");
    snprintf(host, sizeof(host), "%.*s", (int)n, p);
    p += n;
    if (*p == ':')
        port = (int)strtol(p + 1, (char **)&p, 10);
    if (*p == '/')
        db = atoi(p + 1);
    redisContext *c = redisConnect(host, port);
    if (c == NULL || c->err) {
        fprintf(stderr, "kiln: cannot connect to %s: %s\n", url, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (pass[0] && (r = redisCommand(c, "AUTH %s", pass)) != NULL)
        freeReplyObject(r);
    if (db && (r = redisCommand(c, "SELECT %d", db)) != NULL)
        freeReplyObject(r);
    struct rclient *rc = calloc(1, sizeof(*rc));
    if (rc == NULL) {
        redisFree(c);
        return NULL;
    }
    rc->pub.ops = &redis_ops;
    rc->c = c;
    return &rc->pub;
}
