#include "wire/proto.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
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

void kiln_map_init(struct kiln_map *m)
{
    msgpack_sbuffer_init(&m->body);
    msgpack_packer_init(&m->pk, &m->body, msgpack_sbuffer_write);
    m->n = 0;
}

msgpack_packer *kiln_map_entry(struct kiln_map *m)
{
    m->n++;
    return &m->pk;
}

msgpack_packer *kiln_map_key(struct kiln_map *m, const char *key)
{
    kiln_mp_str(kiln_map_entry(m), key);
    return &m->pk;
}

void kiln_map_str(struct kiln_map *m, const char *key, const char *v)
{
    msgpack_packer *pk = kiln_map_key(m, key);
    if (v != NULL)
        kiln_mp_str(pk, v);
    else
        msgpack_pack_nil(pk);
}

void kiln_map_bin(struct kiln_map *m, const char *key, const void *p, size_t n)
{
    kiln_mp_bin(kiln_map_key(m, key), p, n);
}

void kiln_map_int(struct kiln_map *m, const char *key, int64_t v)
{
    msgpack_pack_int64(kiln_map_key(m, key), v);
}

void kiln_map_bool(struct kiln_map *m, const char *key, int v)
{
    msgpack_packer *pk = kiln_map_key(m, key);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void kiln_map_nil(struct kiln_map *m, const char *key)
{
    msgpack_pack_nil(kiln_map_key(m, key));
}

void kiln_map_end(struct kiln_map *m, msgpack_packer *pk)
{
    msgpack_pack_map(pk, m->n);
    if (m->body.size > 0)
        msgpack_pack_str_body(pk, m->body.data, m->body.size); /* raw bytes: the entries as packed */
    msgpack_sbuffer_destroy(&m->body);
}

void kiln_map_drop(struct kiln_map *m)
{
    msgpack_sbuffer_destroy(&m->body);
}

void kiln_map_append(struct kiln_map *m, struct kiln_map *more)
{
    if (more->body.size > 0)
        msgpack_sbuffer_write(&m->body, more->body.data, more->body.size);
    m->n += more->n;
    msgpack_sbuffer_destroy(&more->body);
}

void kiln_proto_msg(struct kiln_map *m, const char *type)
{
    kiln_map_init(m);
    kiln_map_str(m, "t", type);
}

void kiln_proto_end_msg(struct kiln_map *m, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    kiln_proto_begin(sb, &pk);
    kiln_map_end(m, &pk);
    kiln_proto_finish(sb);
}

void kiln_proto_finish(msgpack_sbuffer *sb)
{
    kiln_proto_header((unsigned char *)sb->data, (uint32_t)(sb->size - KILN_PROTO_HDR));
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int kiln_mp_precheck(const void *buf, size_t len)
{
    const unsigned char *p = buf, *end = p + len;
    uint64_t pending = 1; /* objects still to read */

    while (pending > 0) {
        if (p >= end)
            return -EPROTO;
        unsigned t = *p++;
        uint64_t skip = 0, children = 0;
        int hdr = 0; /* bytes of length or count after the type byte */
        pending--;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            /* fixint, nil, bool */
        } else if (t >= 0x80 && t <= 0x8f) {
            children = 2 * (t & 0x0f);
        } else if (t >= 0x90 && t <= 0x9f) {
            children = t & 0x0f;
        } else if (t >= 0xa0 && t <= 0xbf) {
            skip = t & 0x1f;
        } else {
            switch (t) {
            case 0xc4: case 0xd9: hdr = 1; break;               /* bin8, str8 */
            case 0xc5: case 0xda: hdr = 2; break;
            case 0xc6: case 0xdb: hdr = 4; break;
            case 0xc7: hdr = 1; skip = 1; break;                /* ext8..32: +type */
            case 0xc8: hdr = 2; skip = 1; break;
            case 0xc9: hdr = 4; skip = 1; break;
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;                         /* fixext1..16 */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: hdr = 2; children = 1; break;            /* array16/32 */
            case 0xdd: hdr = 4; children = 1; break;
            case 0xde: hdr = 2; children = 2; break;            /* map16/32 */
            case 0xdf: hdr = 4; children = 2; break;
            default: return -EPROTO;                            /* 0xc1 */
            }
        }
        if ((size_t)(end - p) < (size_t)hdr)
            return -EPROTO;
        if (hdr > 0) {
            uint64_t n = be(p, hdr);
            p += hdr;
            if (children)
                children *= n; /* n <= 2^32: no overflow */
            else
                skip += n;
        }
        if (skip > (uint64_t)(end - p))
            return -EPROTO;
        p += skip;
        /* every element needs at least one byte */
        if (children > (uint64_t)(end - p) || pending + children > (uint64_t)(end - p))
            return -E2BIG;
        pending += children;
    }
    return p == end ? 0 : -ENOTEMPTY;
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

int kiln_mp_true(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = kiln_mp_get(map, key);
    return o != NULL && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
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

int kiln_mp_unpack(msgpack_unpacked *u, const void *buf, size_t len)
{
    size_t off = 0;
    if (kiln_mp_precheck(buf, len) != 0 ||
        msgpack_unpack_next(u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS)
        return -EPROTO;
    return 0;
}

int kiln_proto_check_ready(const msgpack_object *ready, char *why, size_t whylen)
{
    const msgpack_object *v = kiln_mp_get(ready, "v");
    int64_t got = -1;
    if (v != NULL && kiln_mp_int(v, 0, INT32_MAX, &got) == 0 && got == KILN_PROTO_VERSION)
        return 0;
    if (got < 0)
        snprintf(why, whylen, "the agent's ready names no protocol version; this worker speaks %d",
                 KILN_PROTO_VERSION);
    else
        snprintf(why, whylen, "the agent speaks protocol version %lld; this worker speaks %d",
                 (long long)got, KILN_PROTO_VERSION);
    return -EPROTO;
}

size_t kiln_utf8_seq(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    size_t k = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : (c & 0xf0) == 0xe0 ? 2
             : c >= 0xf0 && c <= 0xf4 ? 3 : 4;
    if (k == 4 || k > n - 1)
        return 0;
    for (size_t j = 1; j <= k; j++)
        if ((s[j] & 0xc0) != 0x80)
            return 0;
    /* no overlong forms, no surrogates, nothing past U+10FFFF */
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] >= 0x90))
        return 0;
    return k + 1;
}

int kiln_utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if ((k = kiln_utf8_seq(s + i, n - i)) == 0)
            return 0;
    return 1;
}

size_t kiln_utf8_clean(char *dst, size_t cap, const void *src, size_t n)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    const unsigned char *s = src;
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < n;) {
        size_t k = s[i] == '\0' ? 0 : kiln_utf8_seq(s + i, n - i);
        const char *from = k > 0 ? (const char *)s + i : replacement;
        size_t len = k > 0 ? k : 3;
        if (o + len + 1 > cap)
            break; /* never half a character */
        memcpy(dst + o, from, len);
        o += len;
        i += k > 0 ? k : 1;
    }
    dst[o] = '\0';
    return o;
}

int kiln_rel_path_ok(const char *p)
{
    if (*p == '\0' || *p == '/')
        return 0;
    for (const char *part = p;;) {
        size_t n = strcspn(part, "/");
        if (n == 0 || (n == 1 && part[0] == '.') || (n == 2 && part[0] == '.' && part[1] == '.'))
            return 0;
        if (part[n] == '\0')
            return 1;
        part += n + 1;
    }
}
