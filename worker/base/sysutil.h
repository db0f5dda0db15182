/*
 * Small system helpers the sandbox backends share: paths and directories,
 * one-line writes to kernel files (/proc, cgroupfs), processes and pidfds,
 * the monotonic clock. Nothing here knows about sandboxes or VMs.
 *
 * Every function that can fail returns 0 (or a count) or a negative errno;
 * none keeps a pointer to its arguments.
 */
#ifndef KILN_SYSUTIL_H
#define KILN_SYSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* "<dir>/<name>" into `out` (`len` bytes). Returns 0, or -ENAMETOOLONG
 * when it does not fit (out then holds the empty string, never a
 * truncated path). */
int kiln_path_join(char *out, size_t len, const char *dir, const char *name);

/* mkdir -p with mode 0755: 0 (also when it exists), or -errno
 * (-ENAMETOOLONG for a path of PATH_MAX or more). */
int kiln_mkdirs(const char *path);
/* rm -rf, depth first, never following links. */
void kiln_rm_rf(const char *path);

/* Write all of `text` to the existing file `path` in one write(), as
 * /proc's id maps and cgroupfs's control files want. Returns 0 or -errno
 * (-EIO for a short write). */
int kiln_write_file(const char *path, const char *text);
/* The same for "<dir>/<name>". */
int kiln_write_file_at(const char *dir, const char *name, const char *text);
/* A new file `dir`/`name` (mode 0644, never an existing one) holding `text`. */
int kiln_create_file_at(const char *dir, const char *name, const char *text);

/* Whether a process `pid` exists (in this pid namespace). */
int kiln_pid_alive(pid_t pid);
/* A pidfd became readable: 1 when the process has ended (its wait status
 * in *wstatus, what it used in *ru), 0 when not yet. The process must be
 * our child for a status; a pidfd of another's child reports 1 with
 * *wstatus 0 once it is gone. */
int kiln_pidfd_reaped(int pidfd, int *wstatus, struct rusage *ru);

/* Milliseconds of CLOCK_MONOTONIC: deadlines of the blocking set-up code. */
int64_t kiln_mono_ms(void);

#endif
