/* `kiln submit --out-dir DIR`: the job's `collect` files written under DIR
 * as their "file" frames arrive. */
#ifndef KILN_OUTDIR_H
#define KILN_OUTDIR_H

#include <msgpack.h>
#include <stddef.h>

struct kiln_outdir {
    const char *dir;
    int exec_bits;        /* keep the files' execute bits (--keep-exec) */
    char **made;          /* the files this submit created: only these are written again */
    size_t n, cap;
};

/* Write one "file" frame's chunk under od->dir: its parents made, never
 * through a symlink, never over a file that was there before, never a
 * path that would leave the directory, and without execute bits unless
 * asked (a job could plant a hook or a script where the directory is a
 * git work tree or on a PATH). 0, or -1 with the reason printed. */
int kiln_outdir_write(struct kiln_outdir *od, const msgpack_object *frame);
void kiln_outdir_free(struct kiln_outdir *od);

#endif
