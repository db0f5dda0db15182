#include "core/sign.h"

#include <errno.h>
#include <msgpack.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wire/proto.h"

static int parse_keys(struct kiln_keys *k, FILE *f, char *err, size_t errlen)
{
    char line[512];
    int no = 0;
    k->n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char id[128], hex[300];
        no++;
        if (line[0] == '#' || sscanf(line, "%127s %299s", id, hex) < 1)
            continue;
        if (sscanf(line, "%127s %299s", id, hex) != 2 || strlen(id) >= sizeof(k->v[0].id) ||
            k->n == KILN_KEYS_MAX) {
            snprintf(err, errlen, "keys file line %d: want KEY-ID HEX-SECRET", no);
            return -EINVAL;
        }
        long n = 0;
        unsigned char *secret = OPENSSL_hexstr2buf(hex, &n);
        if (secret == NULL || n < 16 || n > 64) {
            OPENSSL_free(secret);
            snprintf(err, errlen, "keys file line %d: the secret must be 16-64 bytes in hex", no);
            return -EINVAL;
        }
        strcpy(k->v[k->n].id, id);
        memcpy(k->v[k->n].secret, secret, (size_t)n);
        k->v[k->n].len = (size_t)n;
        OPENSSL_clear_free(secret, (size_t)n);
        k->n++;
    }
    return 0;
}

int kiln_keys_load(struct kiln_keys *keys, const char *path, char *err, size_t errlen)
{
    struct kiln_keys fresh;
    struct stat st;
    memset(&fresh, 0, sizeof(fresh));
    snprintf(fresh.path, sizeof(fresh.path), "%s", path);
    FILE *f = fopen(path, "re");
    if (f == NULL || fstat(fileno(f), &st) < 0) {
        snprintf(err, errlen, "keys file %s: %s", path, strerror(errno));
        if (f)
            fclose(f);
        return -errno;
    }
    int r = parse_keys(&fresh, f, err, errlen);
    fclose(f);
    if (r < 0)
        return r;
    kiln_file_stamp_set(&fresh.stamp, &st);
    *keys = fresh;
    OPENSSL_cleanse(&fresh, sizeof(fresh));
    return 0;
}

int kiln_keys_refresh(struct kiln_keys *keys, char *err, size_t errlen)
{
    struct stat st;
    if (stat(keys->path, &st) < 0) {
        snprintf(err, errlen, "keys file %s: %s", keys->path, strerror(errno));
        return -errno;
    }
    if (kiln_file_stamp_same(&keys->stamp, &st))
        return 0;
    char path[sizeof(keys->path)];
    strcpy(path, keys->path);
    return kiln_keys_load(keys, path, err, errlen) < 0 ? -EINVAL : 1;
}

/* ---- canonical encoding ---------------------------------------------- */

static int key_cmp(const void *a, const void *b)
{
    const msgpack_object *x = &((const msgpack_object_kv *)a)->key;
    const msgpack_object *y = &((const msgpack_object_kv *)b)->key;
    /* string keys by their bytes; other keys after them, in type order */
    if (x->type != MSGPACK_OBJECT_STR || y->type != MSGPACK_OBJECT_STR)
        return (x->type != MSGPACK_OBJECT_STR) - (y->type != MSGPACK_OBJECT_STR);
    size_t n = x->via.str.size < y->via.str.size ? x->via.str.size : y->via.str.size;
    int c = memcmp(x->via.str.ptr, y->via.str.ptr, n);
    return c ? c : (x->via.str.size > y->via.str.size) - (x->via.str.size < y->via.str.size);
}

static int pack_canonical(msgpack_packer *pk, const msgpack_object *o, int top)
{
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        msgpack_pack_array(pk, o->via.array.size);
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (pack_canonical(pk, &o->via.array.ptr[i], 0) < 0)
                return -1;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_MAP)
        return msgpack_pack_object(pk, *o);
    msgpack_object_kv *kv = malloc((o->via.map.size + 1) * sizeof(*kv));
    if (kv == NULL)
        return -1;
    uint32_t n = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++)
        if (!(top && kiln_mp_streq(&o->via.map.ptr[i].key, "sig")))
            kv[n++] = o->via.map.ptr[i];
    qsort(kv, n, sizeof(*kv), key_cmp);
    struct kiln_map m;
    kiln_map_init(&m);
    int r = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        msgpack_packer *e = kiln_map_entry(&m);
        if (pack_canonical(e, &kv[i].key, 0) < 0 || pack_canonical(e, &kv[i].val, 0) < 0)
            r = -1;
    }
    free(kv);
    if (r == 0)
        kiln_map_end(&m, pk);
    else
        kiln_map_drop(&m);
    return r;
}

unsigned char *kiln_sign_canonical(const void *buf, size_t len, size_t *outlen)
{
    msgpack_unpacked u;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char *out = NULL;
    msgpack_unpacked_init(&u);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (kiln_mp_unpack(&u, buf, len) == 0 &&
        u.data.type == MSGPACK_OBJECT_MAP && pack_canonical(&pk, &u.data, 1) == 0) {
        *outlen = sb.size;
        out = (unsigned char *)msgpack_sbuffer_release(&sb);
    }
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
    return out;
}

void kiln_sign_kid(const void *buf, size_t len, char *out, size_t outlen)
{
    msgpack_unpacked u;
    const msgpack_object *sig, *kid;
    out[0] = '\0';
    msgpack_unpacked_init(&u);
    if (kiln_mp_unpack(&u, buf, len) == 0 && (sig = kiln_mp_get(&u.data, "sig")) != NULL &&
        sig->type == MSGPACK_OBJECT_MAP && (kid = kiln_mp_get(sig, "kid")) != NULL &&
        kid->type == MSGPACK_OBJECT_STR && kid->via.str.size < outlen) {
        memcpy(out, kid->via.str.ptr, kid->via.str.size);
        out[kid->via.str.size] = '\0';
    }
    msgpack_unpacked_destroy(&u);
}

int kiln_sign_check(const void *buf, size_t len, const struct kiln_keys *keys, int64_t now_ms,
                    char *err, size_t errlen)
{
    msgpack_unpacked u;
    size_t clen = 0;
    int r = -EINVAL;
    unsigned char *canon = NULL;

    msgpack_unpacked_init(&u);
    if (kiln_mp_unpack(&u, buf, len) < 0) {
        snprintf(err, errlen, "job is not valid msgpack");
        goto out;
    }
    const msgpack_object *sig = kiln_mp_get(&u.data, "sig"), *o;
    if (sig == NULL || sig->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "this worker runs signed jobs only: field 'sig' is missing");
        goto out;
    }
    const msgpack_object *kid = kiln_mp_get(sig, "kid"), *mac = kiln_mp_get(sig, "mac");
    if (kid == NULL || kid->type != MSGPACK_OBJECT_STR || mac == NULL ||
        mac->type != MSGPACK_OBJECT_BIN || mac->via.bin.size != 32) {
        snprintf(err, errlen, "field 'sig' must be {kid: str, mac: bin of 32 bytes}");
        goto out;
    }
    size_t k;
    for (k = 0; k < keys->n; k++)
        if (strlen(keys->v[k].id) == kid->via.str.size &&
            memcmp(keys->v[k].id, kid->via.str.ptr, kid->via.str.size) == 0)
            break;
    if (k == keys->n) {
        snprintf(err, errlen, "signed with an unknown key id '%.*s'",
                 (int)(kid->via.str.size < 64 ? kid->via.str.size : 64), kid->via.str.ptr);
        r = -EKEYREJECTED;
        goto out;
    }
    unsigned char want[32];
    unsigned int wlen = 0;
    if ((canon = kiln_sign_canonical(buf, len, &clen)) == NULL ||
        HMAC(EVP_sha256(), keys->v[k].secret, (int)keys->v[k].len, canon, clen, want, &wlen) == NULL ||
        wlen != 32 || CRYPTO_memcmp(want, mac->via.bin.ptr, 32) != 0) {
        snprintf(err, errlen, "bad signature (HMAC-SHA256 with key '%s' does not match)", keys->v[k].id);
        r = -EKEYREJECTED;
        goto out;
    }
    int64_t not_after;
    if ((o = kiln_mp_get(&u.data, "not_after")) == NULL || kiln_mp_int(o, 0, INT64_MAX, &not_after) < 0) {
        snprintf(err, errlen, "a signed job needs 'not_after' (unix ms) to bound replay");
        goto out;
    }
    if (not_after < now_ms) {
        snprintf(err, errlen, "signature expired: not_after %lld is %lld ms ago",
                 (long long)not_after, (long long)(now_ms - not_after));
        r = -EKEYEXPIRED;
        goto out;
    }
    r = 0;
out:
    free(canon);
    msgpack_unpacked_destroy(&u);
    return r;
}
