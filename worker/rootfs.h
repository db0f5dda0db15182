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

#endif
