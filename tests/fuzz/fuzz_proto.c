/*
 * libFuzzer: the agent protocol as the worker reads it from a sandbox that
 * may be hostile. The first byte picks how the stream is cut into reads;
 * each whole message goes through the same checks as in worker/core/chan.c,
 * then its fields are looked up as the runner does.
 */
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "wire/proto.h"

static void use(const msgpack_object *m)
{
    static const char *keys[] = {"t", "fd", "data", "code", "signal", "wall_ms", "reason", "argv"};
    int64_t v;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const msgpack_object *o = kiln_mp_get(m, keys[i]);
        if (o == NULL)
            continue;
        kiln_mp_int(o, INT64_MIN, INT64_MAX, &v);
        free(kiln_mp_strdup(o));
        kiln_mp_streq(o, "exit");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_proto_reader rd;
    const void *msg;
    size_t len, cut = size ? (size_t)data[0] % 61 + 1 : 1;
    kiln_proto_reader_init(&rd, 1 << 20);
    for (size_t off = size ? 1 : 0; off < size; off += cut) {
        size_t n = size - off < cut ? size - off : cut;
        if (kiln_proto_reader_feed(&rd, data + off, n) < 0)
            break;
        int r;
        while ((r = kiln_proto_reader_next(&rd, &msg, &len)) == 1) {
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            if (kiln_mp_unpack(&u, msg, len) == 0)
                use(&u.data);
            msgpack_unpacked_destroy(&u);
        }
        if (r < 0)
            break;
    }
    kiln_proto_reader_free(&rd);
    return 0;
}
