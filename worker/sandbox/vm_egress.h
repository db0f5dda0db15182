/*
 * The worker's end of a VM's egress mux (wire/proto.h): one virtio-serial
 * port carries every connection the job makes to its relay; each stream
 * becomes one connection to the sandbox's egress proxy socket, which
 * decides where it may go, as for a jail; and, the other way, connections
 * in to a session's exposed port. The guest is not trusted: at most
 * KILN_MUX_STREAMS streams are open at once (their ids), each stream's
 * queued bytes are bounded (reading the port pauses past them), and a
 * frame out of bounds ends the mux.
 */
#ifndef KILN_VM_EGRESS_H
#define KILN_VM_EGRESS_H

#include <uv.h>

struct kiln_vm_egress;

/* Serve the mux on `fd` (taken: closed by kiln_vm_egress_close), opening a
 * connection to the Unix socket at `proxy_path` per stream (the runner
 * opens that socket when a job with net.allow starts). Returns 0 with
 * *out owned by the caller, or a negative libuv error (fd closed). */
int kiln_vm_egress_open(uv_loop_t *loop, int fd, const char *proxy_path, struct kiln_vm_egress **out);
/* A connection in to `port` inside the guest (a session's exposed port):
 * a stream the worker opens (KILN_MUX_OUT and up), whose other end is the
 * returned descriptor (connected, the caller's; it ends when the guest
 * cannot connect, answering 'C'), or a negative errno (-EAGAIN: every
 * inbound stream is in use). */
int kiln_vm_egress_inbound(struct kiln_vm_egress *m, int port);
/* Close the port and every stream (if a guest that broke the protocol has
 * not closed them already); freed once libuv lets go. No callback. */
void kiln_vm_egress_close(struct kiln_vm_egress *m);

#endif
