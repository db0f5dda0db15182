/* What a file was when it was read (the keys file, the secrets file), to
 * read it again when any of it changes: rotation without a restart. */
#ifndef KILN_FILESTAMP_H
#define KILN_FILESTAMP_H

#include <sys/stat.h>
#include <time.h>

struct kiln_file_stamp {
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

static inline void kiln_file_stamp_set(struct kiln_file_stamp *s, const struct stat *st)
{
    s->ino = st->st_ino;
    s->size = st->st_size;
    s->mtime = st->st_mtim;
}

/* 1 if `st` is the file as it was stamped. */
static inline int kiln_file_stamp_same(const struct kiln_file_stamp *s, const struct stat *st)
{
    return st->st_ino == s->ino && st->st_size == s->size && st->st_mtim.tv_sec == s->mtime.tv_sec &&
           st->st_mtim.tv_nsec == s->mtime.tv_nsec;
}

#endif
