/* `kiln submit --out-dir DIR`: the job's `collect` files written under DIR
 * as their "file" frames arrive. */
#ifndef KILN_OUTDIR_H
#define KILN_OUTDIR_H

#include <msgpack.h>

/* Write one "file" frame's chunk under `dir` (its parents made, never
 * through a symlink; a path that would leave `dir` is refused). 0, or -1
 * with the reason printed. */
int kiln_outdir_write(const char *dir, const msgpack_object *frame);

#endif
