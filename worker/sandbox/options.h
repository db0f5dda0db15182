/* What a backend needs to know of the worker's settings (core/config.c
 * fills it from flags; backends read it, never the whole config). */
#ifndef KILN_SANDBOX_OPTIONS_H
#define KILN_SANDBOX_OPTIONS_H

#include <stdint.h>

struct kiln_sandbox_opts {
    char *backend;            /* auto | jail | qemu | firecracker */
    char *rootfs;             /* the runtime image (tree or mounted squashfs), or NULL: the host's /usr */
    char *agent;              /* path of kiln-agent */
    char *zygote_lib;         /* libkiln-zygote.so (agent/zygote.c) */
    int no_zygote;            /* jail: no interpreter forked from a template */
    char *state_dir;          /* where the jail's mount point lives */
    int64_t tmp_mb;           /* size of the jail's /tmp and /work each */
    int64_t jail_uid_base;    /* host uid that the jail's root maps to */
    int64_t memory_mb, max_memory_mb; /* a sandbox's memory (cgroup): default, most */
    int64_t pids, max_pids;           /* its processes (cgroup): default, most */
    int64_t hang_ms;          /* a running sandbox silent this long is hung */
    /* not an option: the worker's egress CA certificate (PEM), set at start
     * with --secrets-file, which sandboxes trust */
    const char *egress_ca_pem;
    /* microVM backends (qemu, firecracker) */
    char *vm_kernel;          /* uncompressed guest kernel (rootfs/build-vm.sh) */
    char *vm_initrd;          /* its initramfs: /init = kiln-agent */
    char *vm_image;           /* the runtime squashfs (rootfs/build-image.sh) */
    char *vm_accel;           /* auto | kvm | tcg (qemu) */
    char *vm_append;          /* more guest kernel arguments */
    int64_t vm_memory_mb;     /* guest RAM of a pooled VM */
    int64_t vm_vcpus;
    int vm_cold;              /* no snapshots: every VM boots */
    char *qemu;               /* qemu-system-x86_64 */
    char *firecracker;        /* the firecracker binary */
    char *jailer;             /* firecracker's jailer, or NULL */
};

#endif
