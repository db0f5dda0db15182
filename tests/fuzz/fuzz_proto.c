/*
 * libFuzzer: the agent protocol as the worker reads it from a sandbox that
 * may be hostile. The input goes through worker/core/chan.c's own read
 * path (kiln_chan_feed(), what the channel's libuv read callback calls) on a
 * real channel; the first byte picks how the stream is cut into reads. Each
 * message delivered is looked up as the runner does, and the channel's
 * contract is checked: no message after the end, one end at most, and only
 * for a malformed stream (-EPROTO) or memory (-ENOMEM).
 */
#include <errno.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "core/chan.h"
#include "wire/proto.h"

struct seen {
    int ended;
    size_t msgs;
};

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

static void on_msg(void *arg, const msgpack_object *msg)
{
    struct seen *s = arg;
    if (s->ended) {
        fprintf(stderr, "chan: a message after the end\n");
        abort();
    }
    s->msgs++;
    use(msg);
}

static void on_end(void *arg, int status)
{
    struct seen *s = arg;
    if (s->ended || (status != -EPROTO && status != -ENOMEM)) {
        fprintf(stderr, "chan: end %d (ended before: %d)\n", status, s->ended);
        abort();
    }
    s->ended = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uv_loop_t loop;
    static int ready;
    struct kiln_chan *c;
    struct seen seen = {0};
    int sv[2];
    size_t cut = size ? (size_t)data[0] % 61 + 1 : 1;

    if (!ready && uv_loop_init(&loop) == 0)
        ready = 1;
    if (!ready || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    if (kiln_chan_open(&loop, sv[0], on_msg, on_end, &seen, &c) < 0)
        abort();
    for (size_t off = size ? 1 : 0; off < size; off += cut) {
        size_t n = size - off < cut ? size - off : cut;
        kiln_chan_feed(c, data + off, n); /* after the end: ignored, checked above */
    }
    kiln_chan_close(c);
    uv_run(&loop, UV_RUN_NOWAIT); /* frees the channel */
    close(sv[1]);
    return 0;
}
