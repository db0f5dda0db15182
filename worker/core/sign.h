/*
 * Signed jobs. With --require-signature a job must carry
 *
 *   sig: {kid: str, mac: bin}      and      not_after: int (unix ms)
 *
 * where mac = HMAC-SHA256(key[kid], canonical(job without sig)). The
 * canonical form is the job map re-encoded with every map's keys sorted by
 * their bytes, at every depth, in msgpack's shortest encodings (what
 * msgpack-c and Python's msgpack write for sorted dicts). not_after is
 * covered by the MAC and bounds replay.
 */
#ifndef KILN_SIGN_H
#define KILN_SIGN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "base/filestamp.h"

#define KILN_KEYS_MAX 64

struct kiln_keys {
    char path[512];
    struct {
        char id[64];
        unsigned char secret[64];
        size_t len;
    } v[KILN_KEYS_MAX];
    size_t n;
    struct kiln_file_stamp stamp; /* reloaded when it changes */
};

/* Read `path` ("KEY-ID HEX-SECRET" per line, # comments). 0 or -errno. */
int kiln_keys_load(struct kiln_keys *keys, const char *path, char *err, size_t errlen);
/* Read it again if it changed on disk (rotation without a restart). A file
 * that no longer parses leaves the keys as they were and says why. */
int kiln_keys_refresh(struct kiln_keys *keys, char *err, size_t errlen);

/* Check the job in buf. Returns 0, or -EINVAL/-EKEYREJECTED/-EKEYEXPIRED
 * with the reason for the rejected frame in `err`. */
int kiln_sign_check(const void *buf, size_t len, const struct kiln_keys *keys, int64_t now_ms,
                    char *err, size_t errlen);

/* The key id `buf` is signed with (its sig.kid, as kiln_sign_check()
 * accepted it) in `out`; "" when it has none. */
void kiln_sign_kid(const void *buf, size_t len, char *out, size_t outlen);

/* The canonical bytes of `buf` without its `sig`, for signers and tests;
 * returns a malloc'd buffer (free()) or NULL. */
unsigned char *kiln_sign_canonical(const void *buf, size_t len, size_t *outlen);

#endif
