/*
 * The backend factory: --backend jail | qemu | firecracker, or auto, the
 * strongest boundary this host can run at full speed (firecracker, then
 * qemu with KVM, then the jail).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sandbox/backend.h"
#include "sandbox/options.h"
#include "base/log.h"
#include "sandbox/vmm.h"

int kiln_backend_open(uv_loop_t *loop, const struct kiln_sandbox_opts *cfg,
                      struct kiln_backend **out, char *err, size_t errlen)
{
    if (strcmp(cfg->backend, "jail") == 0)
        return kiln_backend_jail_new(loop, cfg, out, err, errlen);
    if (strcmp(cfg->backend, "qemu") == 0)
        return kiln_backend_qemu_new(loop, cfg, out, err, errlen);
    if (strcmp(cfg->backend, "firecracker") == 0)
        return kiln_backend_firecracker_new(loop, cfg, out, err, errlen);
    if (strcmp(cfg->backend, "auto") != 0) {
        snprintf(err, errlen, "unknown backend '%s' (auto | jail | qemu | firecracker)", cfg->backend);
        return -EINVAL;
    }
    /* auto: the strongest boundary this host can run at full speed */
    char why_fc[300] = "", why_kvm[256] = "";
    if (kiln_kvm_usable(why_kvm, sizeof(why_kvm))) {
        if (kiln_backend_firecracker_new(loop, cfg, out, why_fc, sizeof(why_fc)) == 0) {
            kiln_info("backend auto: firecracker (KVM is usable and firecracker is installed)");
            return 0;
        }
        char why_q[300] = "";
        if (kiln_backend_qemu_new(loop, cfg, out, why_q, sizeof(why_q)) == 0) {
            kiln_info("backend auto: qemu with KVM (firecracker: %s)", why_fc);
            return 0;
        }
        kiln_info("backend auto: jail (firecracker: %s; qemu: %s)", why_fc, why_q);
    } else {
        kiln_info("backend auto: jail (no microVM at full speed here: %s; --backend qemu runs "
                  "VMs under TCG)", why_kvm);
    }
    return kiln_backend_jail_new(loop, cfg, out, err, errlen);
}
