/*
 * A job's `collect`: after its processes are gone (whatever its end), the
 * regular files under /work whose paths match one of its patterns are sent
 * back in chunks ("collect" messages), in the order of their paths (each
 * directory's names sorted by their bytes: the same files give the same
 * frames, and a cap cuts the same file), at most `limit` bytes in all, then
 * one "collected" message says what matched and what was not sent, and
 * why. The walk never follows a symlink (openat with O_NOFOLLOW from
 * /work down), never opens a device or a FIFO, and holds one chunk at a
 * time, however many files there are.
 *
 * Patterns: paths relative to /work whose parts are glob patterns (`*`,
 * `?`, `[...]` with `!` or `^` to negate and `a-z` ranges; no escapes;
 * dot files match too), matched here in time linear in the part and the
 * name, never fnmatch's backtracking; a part `**` matches any number of
 * directories, none included. The walk goes 64 directories deep at most.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "wire/agent_msg.h"
#include "wire/proto.h"

#define WALK_MAX 200000   /* entries looked at: a bound on the walk, and on its memory */
#define SKIPPED_LISTED 100
#define LISTED_PATH_MAX 256 /* a skipped path as listed: longer ones are cut */

struct walk {
    const msgpack_object *globs; /* array of str */
    int64_t left;                /* bytes the cap still allows */
    int64_t files_left, names_left; /* files, and bytes of their paths, the job may still send */
    long matched, sent, truncated, skipped, seen;
    int64_t deadline;            /* agent clock ms: the walk stops there */
    int cut;                     /* it stopped before the end: too many entries, or too long */
    msgpack_sbuffer skipped_sb;  /* [[path, why], ...], the first SKIPPED_LISTED */
    msgpack_packer skipped_pk;
    char buf[KILN_COLLECT_CHUNK];
};

/* A `[...]` class at *pp (its '[') against byte c: 1 or 0, *pp moved past
 * its ']'; -1 when it has no ']' (then '[' is an ordinary byte). */
static int class_match(const char **pp, const char *pe, unsigned char c)
{
    const char *p = *pp + 1, *start;
    int neg = 0, ok = 0;
    if (p < pe && (*p == '!' || *p == '^'))
        neg = 1, p++;
    start = p;
    while (p < pe && (*p != ']' || p == start)) {
        unsigned char lo = (unsigned char)*p, hi = lo;
        if (p + 2 < pe && p[1] == '-' && p[2] != ']') {
            hi = (unsigned char)p[2];
            p += 2;
        }
        ok |= c >= lo && c <= hi;
        p++;
    }
    if (p >= pe)
        return -1;
    *pp = p + 1;
    return ok != neg;
}

/* One part of a pattern (pl bytes) against one name (sl bytes): a `*`
 * remembers where to try again, so the cost is at most pl x sl. */
static int part_match(const char *p, size_t pl, const char *s, size_t sl)
{
    const char *pe = p + pl, *se = s + sl, *star = NULL, *resume = NULL;
    while (s < se) {
        if (p < pe && *p == '*') {
            star = ++p;
            resume = s;
            continue;
        }
        if (p < pe) {
            const char *q = p + 1;
            int m;
            if (*p == '?')
                m = 1;
            else if (*p == '[' && (q = p, m = class_match(&q, pe, (unsigned char)*s)) >= 0)
                ;
            else
                m = *p == *s, q = p + 1;
            if (m) {
                p = q;
                s++;
                continue;
            }
        }
        if (star == NULL)
            return 0;
        p = star;
        s = ++resume;
    }
    while (p < pe && *p == '*')
        p++;
    return p == pe;
}

/* `path` (relative) against pattern `p`, both NUL-terminated. */
static int match(const char *p, const char *s)
{
    if (p[0] == '*' && p[1] == '*' && (p[2] == '/' || p[2] == '\0')) {
        const char *rest = p[2] ? p + 3 : p + 2;
        if (*rest == '\0')
            return 1;
        for (const char *t = s;; t++) {
            if (match(rest, t))
                return 1;
            if ((t = strchr(t, '/')) == NULL)
                return 0;
        }
    }
    size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");
    if (!part_match(p, pl, s, sl))
        return 0;
    if (p[pl] == '\0' || s[sl] == '\0')
        return p[pl] == '\0' && s[sl] == '\0';
    return match(p + pl + 1, s + sl + 1);
}

static int wanted(const struct walk *w, const char *path)
{
    for (uint32_t i = 0; i < w->globs->via.array.size; i++) {
        const msgpack_object *g = &w->globs->via.array.ptr[i];
        char p[KILN_COLLECT_PATTERN_MAX + 1];
        if (g->type != MSGPACK_OBJECT_STR || g->via.str.size > KILN_COLLECT_PATTERN_MAX)
            continue;
        memcpy(p, g->via.str.ptr, g->via.str.size);
        p[g->via.str.size] = '\0';
        if (match(p, path))
            return 1;
    }
    return 0;
}

/* Listed as UTF-8 however it is named (other bytes as \xHH), at most
 * LISTED_PATH_MAX bytes. */
static void skip(struct walk *w, const char *path, const char *why)
{
    char shown[LISTED_PATH_MAX + 8];
    size_t o = 0;
    w->skipped++;
    if (w->skipped > SKIPPED_LISTED)
        return;
    for (const unsigned char *p = (const unsigned char *)path; *p && o < LISTED_PATH_MAX; p++) {
        if (*p >= 0x20 && *p < 0x7f)
            shown[o++] = (char)*p;
        else
            o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\x%02x", *p);
    }
    shown[o < sizeof(shown) ? o : sizeof(shown) - 1] = '\0';
    if (*path && o >= LISTED_PATH_MAX)
        strcpy(shown + LISTED_PATH_MAX - 3, "...");
    msgpack_pack_array(&w->skipped_pk, 2);
    kiln_mp_str(&w->skipped_pk, shown);
    kiln_mp_str(&w->skipped_pk, why);
}

static void send_chunk(const char *path, const struct stat *st, int64_t offset, const char *data,
                       size_t n, int last, int truncated)
{
    msgpack_sbuffer sb;
    struct kiln_msg_chunk c = {{path, strlen(path), 1}, st->st_size, st->st_mode & 07777, offset,
                               {data, n, 1}, last, truncated};
    kiln_msg_pack_chunk(&sb, &c);
    kiln_agent_send(&sb);
}

/* One regular file, up to what the cap leaves. */
static void send_file(struct walk *w, int dir, const char *name, const char *path)
{
    struct stat st;
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        skip(w, path, strerror(errno));
        return;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        skip(w, path, S_ISREG(st.st_mode) ? strerror(errno) : "not a regular file");
        close(fd);
        return;
    }
    size_t plen = strlen(path);
    const char *over = !kiln_utf8_ok((const unsigned char *)path, plen) ? "name is not UTF-8"
                       : w->files_left <= 0 || w->names_left < (int64_t)plen ? "over the file count cap"
                       : w->left <= 0 && st.st_size > 0 ? "over the cap" : NULL;
    if (over != NULL) {
        skip(w, path, over);
        close(fd);
        return;
    }
    w->files_left--;
    w->names_left -= (int64_t)plen;
    int64_t want = st.st_size < w->left ? st.st_size : w->left, off = 0;
    int truncated = want < st.st_size;
    do {
        size_t n = want - off < (int64_t)sizeof(w->buf) ? (size_t)(want - off) : sizeof(w->buf);
        ssize_t got = n > 0 ? pread(fd, w->buf, n, off) : 0;
        if (got < 0)
            got = 0;
        if ((size_t)got < n) /* it shrank (nothing writes it now): what there is */
            want = off + got, truncated = 1;
        off += got;
        send_chunk(path, &st, off - got, w->buf, (size_t)got, off >= want, truncated);
    } while (off < want);
    w->left -= want;
    w->sent++;
    w->truncated += truncated;
    close(fd);
}

/* A directory's names, sorted: one buffer of NUL-ended names. */
struct names {
    char *buf;
    size_t len, cap;
    size_t *at;      /* offsets into buf */
    size_t n, ncap;
};

static int names_add(struct names *ns, const char *name)
{
    size_t l = strlen(name) + 1;
    if (ns->len + l > ns->cap) {
        size_t cap = (ns->len + l) * 2;
        char *b = realloc(ns->buf, cap);
        if (b == NULL)
            return -1;
        ns->buf = b;
        ns->cap = cap;
    }
    if (ns->n == ns->ncap) {
        size_t ncap = ns->ncap ? ns->ncap * 2 : 64;
        size_t *at = realloc(ns->at, ncap * sizeof(*at));
        if (at == NULL)
            return -1;
        ns->at = at;
        ns->ncap = ncap;
    }
    memcpy(ns->buf + ns->len, name, l);
    ns->at[ns->n++] = ns->len;
    ns->len += l;
    return 0;
}

static const char *sort_base;

static int by_name(const void *a, const void *b)
{
    return strcmp(sort_base + *(const size_t *)a, sort_base + *(const size_t *)b);
}

static void walk_dir(struct walk *w, int dir, char *path, size_t plen, int depth)
{
    DIR *d = fdopendir(dir);
    struct dirent *e;
    struct names ns = {0};
    if (d == NULL) {
        close(dir);
        return;
    }
    while (!w->cut && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (w->seen >= WALK_MAX || kiln_agent_now_ms() > w->deadline || names_add(&ns, e->d_name) < 0) {
            w->cut = 1;
            break;
        }
        w->seen++;
    }
    sort_base = ns.buf;
    if (ns.n > 1)
        qsort(ns.at, ns.n, sizeof(*ns.at), by_name);
    for (size_t i = 0; i < ns.n && kiln_agent_now_ms() <= w->deadline; i++) {
        const char *name = ns.buf + ns.at[i];
        size_t nl = strlen(name);
        if (kiln_agent_now_ms() - kiln__agent.last_sent >= 1000)
            kiln_agent_send_beat(); /* a long walk is no hung sandbox */
        if (plen + nl + 2 > KILN_COLLECT_PATH_MAX) {
            skip(w, name, "its path is over 4096 bytes");
            continue;
        }
        path[plen] = plen ? '/' : '\0';
        memcpy(path + plen + (plen ? 1 : 0), name, nl + 1);
        size_t sub = plen + (plen ? 1 : 0) + nl;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(st.st_mode) && depth >= KILN_COLLECT_DEPTH_MAX) {
                skip(w, path, "a directory deeper than 64");
            } else if (S_ISDIR(st.st_mode)) {
                int fd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0)
                    walk_dir(w, fd, path, sub, depth + 1);
            } else if (wanted(w, path)) {
                w->matched++;
                if (S_ISLNK(st.st_mode))
                    skip(w, path, "symlink");
                else if (!S_ISREG(st.st_mode))
                    skip(w, path, "not a regular file");
                else
                    send_file(w, dirfd(d), name, path);
            }
        }
        path[plen] = '\0';
    }
    if (kiln_agent_now_ms() > w->deadline)
        w->cut = 1;
    free(ns.buf);
    free(ns.at);
    closedir(d);
}

void kiln_collect_send(const msgpack_object *globs, int64_t limit, int64_t files, int64_t names)
{
    static struct walk w;
    char path[KILN_COLLECT_PATH_MAX + 1] = "";
    memset(&w, 0, offsetof(struct walk, buf));
    w.globs = globs;
    w.left = limit;
    w.files_left = files;
    w.names_left = names;
    w.deadline = kiln_agent_now_ms() + KILN_COLLECT_WALL_MS;
    msgpack_sbuffer_init(&w.skipped_sb);
    msgpack_packer_init(&w.skipped_pk, &w.skipped_sb, msgpack_sbuffer_write);
    int fd = open("/work", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        walk_dir(&w, fd, path, 0, 0);
    msgpack_sbuffer sb;
    struct kiln_msg_collected c = {
        .matched = w.matched, .sent = w.sent, .truncated = w.truncated, .skipped = w.skipped, .walk_cut = w.cut,
        .listed = w.skipped_sb.data, .listed_len = w.skipped_sb.size,
        .nlisted = w.skipped < SKIPPED_LISTED ? (uint32_t)w.skipped : SKIPPED_LISTED,
    };
    kiln_msg_pack_collected(&sb, &c);
    msgpack_sbuffer_destroy(&w.skipped_sb);
    kiln_agent_send(&sb);
}
