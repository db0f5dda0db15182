#include "core/verdict.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static size_t cap(size_t n)
{
    return n < KILN_DIFF_EXCERPT ? n : KILN_DIFF_EXCERPT;
}

/* ---- lines ------------------------------------------------------------- */

/* The next line of [*p, end): its start and length without trailing
 * whitespace; advances *p past its newline. */
static size_t next_line(const unsigned char **p, const unsigned char *end, const unsigned char **line)
{
    const unsigned char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
    const unsigned char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    *line = s;
    while (e > s && is_space(e[-1]))
        e--;
    return (size_t)(e - s);
}

static int compare_lines(const unsigned char *want, size_t wn, const unsigned char *got, size_t gn,
                         int exact, struct kiln_diff *d)
{
    const unsigned char *w = want, *g = got, *we = want + wn, *ge = got + gn;
    if (!exact) { /* trailing empty lines (and spaces) do not count */
        while (we > w && is_space(we[-1]))
            we--;
        while (ge > g && is_space(ge[-1]))
            ge--;
    }
    for (int64_t line = 1;; line++) {
        if (w >= we && g >= ge)
            return 1;
        const unsigned char *wl = w, *gl = g;
        size_t wlen = 0, glen = 0;
        if (exact) {
            const unsigned char *wnl = w < we ? memchr(w, '\n', (size_t)(we - w)) : NULL;
            const unsigned char *gnl = g < ge ? memchr(g, '\n', (size_t)(ge - g)) : NULL;
            wlen = (size_t)((wnl ? wnl + 1 : we) - w);
            glen = (size_t)((gnl ? gnl + 1 : ge) - g);
            w += wlen;
            g += glen;
        } else {
            if (w < we)
                wlen = next_line(&w, we, &wl);
            else
                wl = we;
            if (g < ge)
                glen = next_line(&g, ge, &gl);
            else
                gl = ge;
        }
        if (wlen != glen || memcmp(wl, gl, wlen) != 0) {
            *d = (struct kiln_diff){line, 0, wl, gl, cap(wlen), cap(glen)};
            /* an exact excerpt drops its newline: the difference may be only that */
            return 0;
        }
    }
}

/* ---- tokens ------------------------------------------------------------ */

static size_t next_token(const unsigned char **p, const unsigned char *end, const unsigned char **tok)
{
    const unsigned char *s = *p;
    while (s < end && is_space(*s))
        s++;
    const unsigned char *e = s;
    while (e < end && !is_space(*e))
        e++;
    *tok = s;
    *p = e;
    return (size_t)(e - s);
}

/* A token that is all of one finite number. */
static int as_number(const unsigned char *t, size_t n, double *out)
{
    char buf[64], *end;
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, t, n);
    buf[n] = '\0';
    *out = strtod(buf, &end);
    return *end == '\0' && isfinite(*out);
}

static int tokens_equal(const unsigned char *a, size_t an, const unsigned char *b, size_t bn,
                        int floats, double tol)
{
    double x, y;
    if (an == bn && memcmp(a, b, an) == 0)
        return 1;
    if (!floats || !as_number(a, an, &x) || !as_number(b, bn, &y))
        return 0;
    double diff = fabs(x - y);
    return diff <= tol || diff <= tol * fabs(x);
}

static int compare_tokens(const unsigned char *want, size_t wn, const unsigned char *got, size_t gn,
                          int floats, double tol, struct kiln_diff *d)
{
    const unsigned char *w = want, *g = got, *we = want + wn, *ge = got + gn;
    for (int64_t i = 1;; i++) {
        const unsigned char *wt, *gt;
        size_t wl = next_token(&w, we, &wt), gl = next_token(&g, ge, &gt);
        if (wl == 0 && gl == 0)
            return 1;
        if (wl == 0 || gl == 0 || !tokens_equal(wt, wl, gt, gl, floats, tol)) {
            *d = (struct kiln_diff){i, 1, wt, gt, cap(wl), cap(gl)};
            return 0;
        }
    }
}

int kiln_verdict_compare(enum kiln_compare how, double tol, const unsigned char *want, size_t want_len,
                         const unsigned char *got, size_t got_len, struct kiln_diff *d)
{
    switch (how) {
    case KILN_COMPARE_EXACT:
        return compare_lines(want, want_len, got, got_len, 1, d);
    case KILN_COMPARE_TOKENS:
        return compare_tokens(want, want_len, got, got_len, 0, 0, d);
    case KILN_COMPARE_FLOAT:
        return compare_tokens(want, want_len, got, got_len, 1, tol, d);
    case KILN_COMPARE_LINES:
    default:
        return compare_lines(want, want_len, got, got_len, 0, d);
    }
}

enum kiln_verdict kiln_verdict_of_end(const struct kiln_case_end *e)
{
    int over = e->cpu_over || e->signal == SIGXCPU ||
               (e->cpu_limit_ms > 0 && e->cpu_ms > e->cpu_limit_ms);
    switch (e->status) {
    case KILN_STATUS_TIMEOUT:
        return KILN_VERDICT_TIME_LIMIT;
    case KILN_STATUS_OOM:
        return KILN_VERDICT_MEMORY_LIMIT;
    case KILN_STATUS_OUTPUT_LIMIT:
        return KILN_VERDICT_OUTPUT_LIMIT;
    case KILN_STATUS_OK:
    case KILN_STATUS_ERROR:
    case KILN_STATUS_KILLED:
        if (over)
            return KILN_VERDICT_TIME_LIMIT;
        if (e->status == KILN_STATUS_KILLED || !e->has_code || e->code != e->expect_exit)
            return KILN_VERDICT_RUNTIME_ERROR;
        return KILN_VERDICT_ACCEPTED;
    default:
        return KILN_VERDICT_RUNTIME_ERROR;
    }
}
