#include "cli/outdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wire/proto.h"

/* A relative path of plain parts: no "", ".", ".." part, no leading "/". */
static int path_ok(const char *p)
{
    if (*p == '\0' || *p == '/')
        return 0;
    for (const char *part = p;;) {
        size_t n = strcspn(part, "/");
        if (n == 0 || (n == 1 && part[0] == '.') || (n == 2 && part[0] == '.' && part[1] == '.'))
            return 0;
        if (part[n] == '\0')
            return 1;
        part += n + 1;
    }
}

int kiln_outdir_write(const char *dir, const msgpack_object *f)
{
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
    if (strlen(rel) != path->via.str.size || !path_ok(rel)) {
        fprintf(stderr, "kiln: not writing '%s': it would leave %s\n", rel, dir);
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
    int out = fd >= 0 ? openat(fd, part, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0),
                               (mode_t)(mode & 0755)) : -1;
    if (fd >= 0)
        close(fd);
    ssize_t n = out >= 0 ? pwrite(out, data->via.bin.ptr, data->via.bin.size, offset) : -1;
    if (out >= 0)
        close(out);
    if (n != (ssize_t)data->via.bin.size) {
        fprintf(stderr, "kiln: writing %s/%s: %s\n", dir, rel, strerror(errno ? errno : EIO));
        return -1;
    }
    return 0;
}
