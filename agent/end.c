/*
 * A run whose end is checked (the job key `expect_end`; plugin.h,
 * KILN_PLUGIN_ENDS). A program that exits 0 early (an exit call, an exit
 * handler, a thread) looks from outside like one that ran its tests; what
 * tells them apart must not be the program's to forge, and anything in its
 * source, environment or output is (it can read and print them). So:
 *
 *   before the program starts, the agent leaves a fresh random token in
 *   /tmp/.kiln-end/token (the job's uid may read and remove it);
 *   the plugin's runner takes it before any of the program's code runs
 *   and writes it to /tmp/.kiln-end/proof only when that code came back
 *   normally;
 *   after every process of the run is gone, the agent looks for it there.
 *
 * The token is never in the program's source, arguments, environment,
 * files or any descriptor it holds when its code runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define END_DIR "/tmp/.kiln-end"

static char token[KILN_END_TOKEN_LEN + 1];

int kiln_end_arm(char *why, size_t whylen)
{
    unsigned char raw[KILN_END_TOKEN_LEN / 2];
    int dir = -1, fd = -1;
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        snprintf(why, whylen, "agent: getrandom: %s", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(token + 2 * i, 3, "%02x", raw[i]);
    /* fresh: nothing of the job's runs before this one (a sandbox is
     * single-use) */
    if ((mkdir(END_DIR, 0700) < 0 && errno != EEXIST) ||
        (dir = open(END_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        goto fail;
    unlinkat(dir, "token", 0);
    unlinkat(dir, "proof", 0);
    if ((fd = openat(dir, "token", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400)) < 0 ||
        kiln_write_all(fd, token, KILN_END_TOKEN_LEN) < 0 ||
        fchown(fd, KILN_JOB_UID, KILN_JOB_GID) < 0 || fchown(dir, KILN_JOB_UID, KILN_JOB_GID) < 0)
        goto fail;
    close(fd);
    close(dir);
    return 0;
fail:
    snprintf(why, whylen, "agent: %s: %s", END_DIR, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (dir >= 0)
        close(dir);
    return -1;
}

int kiln_end_reached(void)
{
    char buf[KILN_END_TOKEN_LEN + 1];
    struct stat st;
    int ok = 0;
    /* the job owns the directory: no symlink followed, nothing but a
     * regular file of the token's size read */
    int dir = open(END_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int fd = dir < 0 ? -1 : openat(dir, "proof", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == KILN_END_TOKEN_LEN &&
        read(fd, buf, sizeof(buf)) == KILN_END_TOKEN_LEN)
        ok = memcmp(buf, token, KILN_END_TOKEN_LEN) == 0;
    if (fd >= 0)
        close(fd);
    if (dir >= 0) {
        unlinkat(dir, "proof", 0);
        close(dir);
    }
    memset(token, 0, sizeof(token));
    return ok;
}
