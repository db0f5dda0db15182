/*
 * Judging a test case: its output against what it should print (the
 * job's `compare`), and its end (status, exit code, CPU time) into a
 * verdict. Pure functions, unit-tested without a sandbox (test_verdict).
 */
#ifndef KILN_VERDICT_H
#define KILN_VERDICT_H

#include <stddef.h>
#include <stdint.h>

#include "wire/frame.h"
#include "wire/job.h"

/* Where two outputs first differ: a line (1-based) or, comparing tokens,
 * a token; the excerpts point into the compared buffers. */
struct kiln_diff {
    int64_t at;
    int tokens;
    const unsigned char *want, *got;
    size_t want_len, got_len;
};

/* The longest excerpt a diff shows of either side. */
#define KILN_DIFF_EXCERPT 200

/* 1 when `got` matches `want` under `how` (tolerance `tol` for
 * KILN_COMPARE_FLOAT), else 0 with where they differ in *d. */
int kiln_verdict_compare(enum kiln_compare how, double tol, const unsigned char *want, size_t want_len,
                         const unsigned char *got, size_t got_len, struct kiln_diff *d);

/* How a case ended, as the runner saw it. */
struct kiln_case_end {
    enum kiln_status status;     /* ok, error, timeout, oom, killed, output_limit */
    int has_code, code, signal;
    int cpu_over;                /* its agent killed it at its CPU limit */
    int64_t cpu_ms, cpu_limit_ms; /* limit 0: none */
    int expect_exit;
};

/* The verdict before its output is compared: KILN_VERDICT_ACCEPTED means
 * "it ended as it should; compare its output". */
enum kiln_verdict kiln_verdict_of_end(const struct kiln_case_end *e);

#endif
