/*
 * The sandbox backends' small system helpers (base/sysutil.h) and the
 * jail's uid range allocator: exact results, exact error codes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox/jail.h"
#include "base/sysutil.h"

static char tmp[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof(tmp), "/tmp/kiln-test-sysutil-XXXXXX");
    return mkdtemp(tmp) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    kiln_rm_rf(tmp);
    return 0;
}

static void test_path_join(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(kiln_path_join(out, sizeof(out), "/a", "bc"), 0);
    assert_string_equal(out, "/a/bc");
    assert_int_equal(kiln_path_join(out, sizeof(out), "/abc", "de"), 0); /* 7 bytes + NUL: fits */
    assert_string_equal(out, "/abc/de");
    /* one byte more: refused, and never a truncated path */
    assert_int_equal(kiln_path_join(out, sizeof(out), "/abc", "def"), -ENAMETOOLONG);
    assert_string_equal(out, "");
}

static void test_mkdirs(void **state)
{
    (void)state;
    char path[256], file[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/a/b/c", tmp);
    assert_int_equal(kiln_mkdirs(path), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0755 & ~umask(022));
    assert_int_equal(kiln_mkdirs(path), 0); /* there already: fine */
    snprintf(file, sizeof(file), "%s/f", tmp);
    int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof(path), "%s/f/sub", tmp);
    assert_int_equal(kiln_mkdirs(path), -ENOTDIR);
    char *longp = malloc(PATH_MAX + 8);
    assert_non_null(longp);
    memset(longp, 'a', PATH_MAX + 7);
    longp[0] = '/';
    longp[PATH_MAX + 7] = '\0';
    assert_int_equal(kiln_mkdirs(longp), -ENAMETOOLONG);
    free(longp);
}

static void test_write_file(void **state)
{
    (void)state;
    char path[256], buf[64] = "";
    snprintf(path, sizeof(path), "%s/w", tmp);
    /* never creates: the files it is for (/proc, cgroupfs) exist */
    assert_int_equal(kiln_write_file(path, "x"), -ENOENT);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(kiln_write_file(path, "0 100000 1\n"), 0);
    assert_int_equal(kiln_write_file_at(tmp, "w", "pids"), 0); /* at the start, no truncation */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_int_equal(read(fd, buf, sizeof(buf) - 1), 11);
    close(fd);
    assert_string_equal(buf, "pids0000 1\n");
    char longdir[PATH_MAX + 2];
    memset(longdir, 'd', sizeof(longdir) - 1);
    longdir[sizeof(longdir) - 1] = '\0';
    assert_int_equal(kiln_write_file_at(longdir, "w", "x"), -ENAMETOOLONG);
}

static void test_pids(void **state)
{
    (void)state;
    assert_true(kiln_pid_alive(getpid()));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(3);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    assert_true(pidfd >= 0);
    int wstatus = -1;
    struct rusage ru;
    for (int i = 0; i < 500 && !kiln_pidfd_reaped(pidfd, &wstatus, &ru); i++)
        usleep(10000);
    assert_true(WIFEXITED(wstatus));
    assert_int_equal(WEXITSTATUS(wstatus), 3);
    assert_false(kiln_pid_alive(pid)); /* reaped: gone */
    close(pidfd);
    int64_t t = kiln_mono_ms();
    assert_true(t > 0 && kiln_mono_ms() >= t);
}

static void test_uid_alloc(void **state)
{
    (void)state;
    unsigned char used[5] = {0};
    int seen = 0;
    for (int i = 0; i < 5; i++) {
        int k = kiln__uid_alloc(used, 5);
        assert_true(k >= 0 && k < 5);
        assert_false(seen & (1 << k)); /* never one in use */
        seen |= 1 << k;
    }
    assert_int_equal(kiln__uid_alloc(used, 5), -EAGAIN);
    used[2] = 0;
    assert_int_equal(kiln__uid_alloc(used, 5), 2); /* the only free one */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_join),
        cmocka_unit_test(test_mkdirs),
        cmocka_unit_test(test_write_file),
        cmocka_unit_test(test_pids),
        cmocka_unit_test(test_uid_alloc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
