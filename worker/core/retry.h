/*
 * What becomes of an attempt that failed in kiln itself (status internal):
 * tried again after a backoff, reported as it is, or, past --max-attempts,
 * sent to the dead letters with every attempt's reason. Pure policy: no
 * loop, no queue, so it is unit-tested as it is (tests/unit/test_retry.c).
 */
#ifndef KILN_RETRY_H
#define KILN_RETRY_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

enum kiln_retry_verdict {
    KILN_RETRY_REPORT,       /* write the failure as the job's exit frame */
    KILN_RETRY_AGAIN,        /* a fresh sandbox, after kiln_retry_delay() */
    KILN_RETRY_DEAD_LETTER,  /* give up: to the dead letters */
};

/* The failed attempt, as the runner knows it. */
struct kiln_retry_case {
    int known;               /* the job decoded and its plugin is loaded here */
    int runs;                /* a job with `runs` (its inputs report as they end) */
    int stopping;            /* the worker is draining, or the job was stopped
                              * (cancelled, timed out, over its output cap) */
    unsigned attempt;        /* the one that failed, from 1 */
    unsigned max_attempts;   /* --max-attempts */
};

enum kiln_retry_verdict kiln_retry_decide(const struct kiln_retry_case *c);

/* How long to wait before retry number `retries` (0 for the first):
 * base_ms doubled per retry, at most 30 s, then jittered into [d/2, d]
 * by `rnd` (random bits, so workers do not retry in step). */
uint64_t kiln_retry_delay(uint64_t base_ms, unsigned retries, uint64_t rnd);

/* The reasons of a job's failed attempts, oldest first; when more fail
 * than it holds, the oldest are dropped (the last ones say most). */
#define KILN_RETRY_REASONS 16
struct kiln_retry_log {
    char *reasons[KILN_RETRY_REASONS];
    unsigned n;
};

/* Note one more reason (copied; NULL: "internal failure"). 0 or -ENOMEM. */
int kiln_retry_note(struct kiln_retry_log *log, const char *reason);
/* The latest reason, or "?" when none. */
const char *kiln_retry_last(const struct kiln_retry_log *log);
void kiln_retry_log_free(struct kiln_retry_log *log);

/* The dead-letter record (schemas/: {id, attempts, reasons, worker, job})
 * packed into `sb` (initialised here, owned by the caller). */
void kiln_retry_pack_dead(msgpack_sbuffer *sb, const char *id, unsigned attempts,
                          const struct kiln_retry_log *log, const char *worker,
                          const void *job, size_t job_len);

#endif
