/*
 * Firecracker's API, as kiln uses it: HTTP/1.1 with JSON bodies on a Unix
 * socket (the shapes of swagger/firecracker.yaml in Firecracker's
 * repository), and the host side of its vsock (connect to uds_path, send
 * "CONNECT <port>\n", read "OK <port>\n").
 *
 * Only building requests and reading responses live here: no I/O, so the
 * unit tests check every body against the specification's shapes.
 */
#ifndef KILN_FC_API_H
#define KILN_FC_API_H

#include <stddef.h>
#include <stdint.h>

/* What one VM is made of. Paths are as Firecracker sees them (inside the
 * jailer's chroot when there is one). */
struct kiln_fc_vm {
    int vcpus;
    int64_t mem_mib;
    const char *kernel;
    const char *initrd;
    const char *boot_args;
    const char *image;          /* the runtime squashfs: read-only drive */
    unsigned guest_cid;
    const char *vsock_uds;      /* host side of the guest's vsock */
    const char *snapshot;       /* snapshot create / load: the VM state file */
    const char *mem_file;       /* ... and guest memory */
};

enum kiln_fc_op {
    KILN_FC_MACHINE_CONFIG,     /* PUT /machine-config */
    KILN_FC_BOOT_SOURCE,        /* PUT /boot-source */
    KILN_FC_DRIVE_IMAGE,        /* PUT /drives/rootfs */
    KILN_FC_VSOCK,              /* PUT /vsock */
    KILN_FC_START,              /* PUT /actions InstanceStart */
    KILN_FC_PAUSE,              /* PATCH /vm Paused */
    KILN_FC_SNAPSHOT_CREATE,    /* PUT /snapshot/create, Full */
    KILN_FC_SNAPSHOT_LOAD,      /* PUT /snapshot/load, resumed, own vsock path */
};

/* The whole HTTP request for `op` on `vm`, malloc'd (NUL-terminated; its
 * length in *len), or NULL when out of memory. */
char *kiln_fc_request(enum kiln_fc_op op, const struct kiln_fc_vm *vm, size_t *len);

/* Read a response from `buf`: 1 when complete (*status set; on an error
 * status the body's fault_message, if any, in `fault`), 0 when more bytes
 * are needed, -EPROTO when it is not HTTP. */
int kiln_fc_response(const char *buf, size_t len, int *status, char *fault, size_t faultlen);

/* The vsock handshake: the line to send, and whether `line` (up to its
 * '\n') accepts it: 1 yes, 0 incomplete, -ECONNREFUSED no. */
int kiln_fc_vsock_connect_line(char *buf, size_t len, unsigned port);
int kiln_fc_vsock_reply(const char *buf, size_t len);

#endif
