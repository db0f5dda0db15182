/* The runtime image: its content digest, which the worker checks. */
#ifndef KILN_ROOTFS_H
#define KILN_ROOTFS_H

#include <stddef.h>

#define KILN_DIGEST_HEX 65 /* sha256 in hex, with its NUL */

/*
 * Digest of the tree at `dir`: sha256 over every entry in name order, each
 * as its relative path, type, permission bits, and then its size and the
 * sha256 of its bytes (files) or its target (links). Ownership and times
 * are left out, so the same build gives the same digest anywhere. Returns
 * 0 with the hex digest in `hex`, or a negative code with why in `err`.
 */
int kiln_rootfs_digest(const char *dir, char hex[KILN_DIGEST_HEX], char *err, size_t errlen);

/*
 * A squashfs runtime image (rootfs/build-image.sh's runtime.squashfs, the
 * same content and digest as its tree) loop-mounted read-only at `dir`
 * (made if missing). Given as --rootfs, it is what the jail attaches as a
 * sandbox's root: a filesystem of its own, so inside, /proc/self/mountinfo
 * shows "/" on a loop device and no path of the host's. Returns 0, or a
 * negative errno with why in `err` (no loop devices here, say).
 */
int kiln_rootfs_mount(const char *image, const char *dir, char *err, size_t errlen);
/* Unmount it (the loop device goes too) and remove `dir`. */
void kiln_rootfs_unmount(const char *dir);

#endif
