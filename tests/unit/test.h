/* Shared bits of the unit tests (cmocka). */
#ifndef KILN_TEST_H
#define KILN_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Read a whole file; the caller frees. Fails the test if it cannot. */
static inline unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* What a call writes on stderr: stderr_begin() sends stderr to a file,
 * stderr_end() puts it back and reads what came into buf (len bytes,
 * NUL-terminated). */
struct stderr_capture {
    FILE *tmp;
    int saved;
};

static inline void stderr_begin(struct stderr_capture *c)
{
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    fflush(stderr);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(fileno(c->tmp), 2), 2);
}

static inline const char *stderr_end(struct stderr_capture *c, char *buf, size_t len)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    ssize_t n = pread(fileno(c->tmp), buf, len - 1, 0);
    fclose(c->tmp);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

#endif
