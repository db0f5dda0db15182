#include "proto.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

void kiln_proto_reader_init(struct kiln_proto_reader *r, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
}

void kiln_proto_reader_free(struct kiln_proto_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

int kiln_proto_reader_feed(struct kiln_proto_reader *r, const void *data, size_t n)
{
    if (r->off > 0) {  /* drop what was handed out before growing */
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n)
            cap *= 2;
        unsigned char *p = realloc(r->buf, cap);
        if (p == NULL)
            return -ENOMEM;
        r->buf = p;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    return 0;
}

int kiln_proto_reader_next(struct kiln_proto_reader *r, const void **msg, size_t *len)
{
    size_t avail = r->len - r->off;
    if (avail < KILN_PROTO_HDR)
        return 0;
    const unsigned char *h = r->buf + r->off;
    size_t n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (n > r->max)
        return -EMSGSIZE;
    if (avail - KILN_PROTO_HDR < n)
        return 0;
    *msg = h + KILN_PROTO_HDR;
    *len = n;
    r->off += KILN_PROTO_HDR + n;
    return 1;
}

void kiln_proto_header(unsigned char hdr[KILN_PROTO_HDR], uint32_t len)
{
    hdr[0] = len >> 24;
    hdr[1] = len >> 16;
    hdr[2] = len >> 8;
    hdr[3] = len;
}

void kiln_proto_begin(msgpack_sbuffer *sb, msgpack_packer *pk)
{
    static const char zero[KILN_PROTO_HDR];
    msgpack_sbuffer_init(sb);
    msgpack_sbuffer_write(sb, zero, sizeof(zero));
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
}

void kiln_proto_finish(msgpack_sbuffer *sb)
{
    kiln_proto_header((unsigned char *)sb->data, (uint32_t)(sb->size - KILN_PROTO_HDR));
}

void kiln_mp_strn(msgpack_packer *pk, const void *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void kiln_mp_str(msgpack_packer *pk, const char *s)
{
    kiln_mp_strn(pk, s, strlen(s));
}

void kiln_mp_bin(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

const msgpack_object *kiln_mp_get(const msgpack_object *map, const char *key)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kiln_mp_streq(&kv->key, key))
            return &kv->val;
    }
    return NULL;
}

int kiln_mp_streq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

int kiln_mp_int(const msgpack_object *o, int64_t min, int64_t max, int64_t *out)
{
    int64_t v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return -EINVAL;
        v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = o->via.i64;
    } else {
        return -EINVAL;
    }
    if (v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

char *kiln_mp_strdup(const msgpack_object *o)
{
    const char *p;
    size_t n;
    if (o->type == MSGPACK_OBJECT_STR) {
        p = o->via.str.ptr;
        n = o->via.str.size;
    } else if (o->type == MSGPACK_OBJECT_BIN) {
        p = o->via.bin.ptr;
        n = o->via.bin.size;
    } else {
        return NULL;
    }
    if (memchr(p, '\0', n) != NULL)
        return NULL;
    char *s = malloc(n + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}
