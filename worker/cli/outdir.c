#include "cli/outdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/text.h"
#include "wire/proto.h"

static int made_here(const struct kiln_outdir *od, const char *rel)
{
    for (size_t i = 0; i < od->n; i++)
        if (strcmp(od->made[i], rel) == 0)
            return 1;
    return 0;
}

void kiln_outdir_free(struct kiln_outdir *od)
{
    for (size_t i = 0; i < od->n; i++)
        free(od->made[i]);
    free(od->made);
}

int kiln_outdir_write(struct kiln_outdir *od, const msgpack_object *f)
{
    const char *dir = od->dir;
    char show[600];
    const msgpack_object *path = kiln_mp_get(f, "path"), *data = kiln_mp_get(f, "data"), *o;
    char rel[KILN_COLLECT_PATH_MAX + 1];
    int64_t offset = 0, mode = 0644;
    if (path == NULL || path->type != MSGPACK_OBJECT_STR || path->via.str.size > KILN_COLLECT_PATH_MAX ||
        data == NULL || data->type != MSGPACK_OBJECT_BIN)
        return -1;
    memcpy(rel, path->via.str.ptr, path->via.str.size);
    rel[path->via.str.size] = '\0';
    if ((o = kiln_mp_get(f, "offset")) != NULL)
        kiln_mp_int(o, 0, INT64_MAX / 2, &offset);
    if ((o = kiln_mp_get(f, "mode")) != NULL)
        kiln_mp_int(o, 0, 07777, &mode);
    if (strlen(rel) != path->via.str.size || !kiln_rel_path_ok(rel)) {
        fprintf(stderr, "kiln: not writing '%s': it would leave %s\n", kiln_shown(rel, show, sizeof(show)), dir);
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && mkdir(dir, 0755) == 0)
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* each parent made or entered without following a link */
    char *part = rel, *slash;
    while (fd >= 0 && (slash = strchr(part, '/')) != NULL) {
        *slash = '\0';
        if (mkdirat(fd, part, 0755) < 0 && errno != EEXIST) {
            close(fd);
            fd = -1;
            break;
        }
        int sub = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        fd = sub;
        *slash = '/';
        part = slash + 1;
    }
    /* a file this submit made may be written again (a later chunk, a new
     * attempt); any other only if it is new */
    int mine = made_here(od, rel), flags = O_WRONLY | O_NOFOLLOW | O_CLOEXEC;
    if (offset == 0)
        flags |= mine ? O_TRUNC : O_CREAT | O_EXCL;
    else if (!mine && fd >= 0) { /* a chunk of a file it did not make */
        close(fd);
        fd = -1;
        errno = EPERM;
    }
    int out = fd >= 0 ? openat(fd, part, flags, (mode_t)(mode & (od->exec_bits ? 0755 : 0644))) : -1;
    if (out < 0 && errno == EEXIST) {
        fprintf(stderr, "kiln: not writing over %s/%s: it was there before\n", dir, kiln_shown(rel, show, sizeof(show)));
        close(fd);
        return -1;
    }
    if (out >= 0 && !mine) {
        if (od->n == od->cap) {
            size_t cap = od->cap ? od->cap * 2 : 64;
            char **m = realloc(od->made, cap * sizeof(*m));
            if (m != NULL) {
                od->made = m;
                od->cap = cap;
            }
        }
        if (od->n < od->cap && (od->made[od->n] = strdup(rel)) != NULL)
            od->n++;
    }
    if (fd >= 0)
        close(fd);
    ssize_t n = out >= 0 ? pwrite(out, data->via.bin.ptr, data->via.bin.size, offset) : -1;
    if (out >= 0)
        close(out);
    if (n != (ssize_t)data->via.bin.size) {
        fprintf(stderr, "kiln: writing %s/%s: %s\n", dir, kiln_shown(rel, show, sizeof(show)), strerror(errno ? errno : EIO));
        return -1;
    }
    return 0;
}
