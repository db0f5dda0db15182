/* The worker's end of an agent channel: framed msgpack messages over a
 * stream, on the loop. A heap object, so its owner can change (a warm
 * sandbox's channel passes from the pool to the job that takes it). */
#ifndef KILN_CHAN_H
#define KILN_CHAN_H

#include <msgpack.h>
#include <uv.h>

#include "wire/proto.h"

/* A whole message; `msg` is borrowed for the call. */
typedef void (*kiln_chan_msg_cb)(void *arg, const msgpack_object *msg);
/* The stream ended: 0 at EOF, negative on a read error or a malformed
 * message. No message follows. */
typedef void (*kiln_chan_end_cb)(void *arg, int status);

struct kiln_chan {
    uv_pipe_t pipe;
    struct kiln_proto_reader rd;
    kiln_chan_msg_cb on_msg;
    kiln_chan_end_cb on_end;
    void *arg;
    int ended;
};

/* Watch `fd` (taken: closed with the channel). Returns 0 with a new channel
 * in *out, or a negative libuv code (fd is then closed). */
int kiln_chan_open(uv_loop_t *loop, int fd, kiln_chan_msg_cb on_msg, kiln_chan_end_cb on_end,
                   void *arg, struct kiln_chan **out);
/* Send one message packed with kiln_proto_begin(); `sb` is finished and
 * taken here (its buffer is freed once written). */
int kiln_chan_send(struct kiln_chan *c, msgpack_sbuffer *sb);
/* Bytes read from the channel's stream, as its read callback passes them
 * (`data` borrowed for the call): buffered, then each whole message is
 * checked (kiln_mp_unpack) and given to on_msg, in order; at the first
 * malformed or oversized one, on_end(-EPROTO) and nothing after (-ENOMEM
 * when the bytes cannot be buffered). Does nothing once the channel ended
 * or was closed. Public so the fuzzer feeds this very code. */
void kiln_chan_feed(struct kiln_chan *c, const void *data, size_t n);
/* Stop: no callback is called after this; freed when libuv lets go. */
void kiln_chan_close(struct kiln_chan *c);

#endif
