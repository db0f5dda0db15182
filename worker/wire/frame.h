/* Result frames, v1 (schemas/frame.v1.md): msgpack maps a job's reply_to gets. */
#ifndef KILN_FRAME_H
#define KILN_FRAME_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* Exit statuses; kiln_status_name() gives each its `status` field. */
enum kiln_status {
    KILN_STATUS_OK,
    KILN_STATUS_ERROR,
    KILN_STATUS_TIMEOUT,
    KILN_STATUS_OOM,
    KILN_STATUS_KILLED,
    KILN_STATUS_OUTPUT_LIMIT,
    KILN_STATUS_REJECTED,
    KILN_STATUS_INTERNAL,
    KILN_STATUS_CANCELLED,
    KILN_STATUS_EXPIRED,
    KILN_STATUS_SESSION_LOST,  /* its session no longer exists: not run */
    KILN_STATUS_COUNT
};

/* "ok", "error", ... as schemas/frame.v1.md names them (static). */
const char *kiln_status_name(enum kiln_status s);

/* A test case's verdict, and a job's with `tests`. */
enum kiln_verdict {
    KILN_VERDICT_ACCEPTED,
    KILN_VERDICT_WRONG_ANSWER,
    KILN_VERDICT_TIME_LIMIT,
    KILN_VERDICT_MEMORY_LIMIT,
    KILN_VERDICT_RUNTIME_ERROR,
    KILN_VERDICT_OUTPUT_LIMIT,
    KILN_VERDICT_COMPILE_ERROR,
    KILN_VERDICT_SKIPPED,
    KILN_VERDICT_COUNT
};

/* "accepted", "wrong_answer", ... (static). */
const char *kiln_verdict_name(enum kiln_verdict v);

/* What a compiled plugin's build did: the exit frame's `build`. */
struct kiln_build_info {
    enum kiln_status status;
    int64_t wall_ms, cpu_ms;
    const unsigned char *output; /* the compiler's stdout and stderr, capped */
    size_t output_len;
};

/* One case of a job's `tests`: its `case` frame. */
struct kiln_case_result {
    int index;
    enum kiln_verdict verdict;
    int has_code, code, signal;
    int64_t wall_ms, cpu_ms, max_rss_kb;
    const char *reason;          /* NULL: omitted */
    /* wrong_answer: where the output first differs (1-based line, or
     * token with tokens/float comparison; 0: nothing to show) */
    int64_t diff_at;
    int diff_tokens;
    const unsigned char *expected, *got; /* excerpts */
    size_t expected_len, got_len;
    const unsigned char *err;    /* the start of its stderr, or NULL */
    size_t err_len;
    const unsigned char *collect; /* its `collect` summary, a packed map, or NULL */
    size_t collect_len;
};

struct kiln_exit {
    enum kiln_status status;
    int has_code;         /* `code` is nil unless the program exited */
    int code;
    int signal;           /* 0: `signal` is nil */
    int64_t wall_ms;
    int64_t cpu_ms;
    int64_t max_rss_kb;
    unsigned attempt;
    const char *worker;
    const char *reason;   /* NULL: omitted */
    const unsigned char *meta; /* packed msgpack to echo, or NULL */
    size_t meta_len;
    int run;              /* index into the job's runs, or -1 */
    int runs_total;       /* a job's final summary: how many runs, and */
    int runs_ok;          /* how many ended ok; -1 when not a summary */
    const char *const *denied; /* destinations the egress proxy refused */
    size_t ndenied;
    /* a job with `tests` (its last frame): `verdict`, `passed`, `total` */
    int has_verdict;
    enum kiln_verdict verdict;
    int passed, total;
    const struct kiln_build_info *build; /* a compiled plugin's, or NULL */
    const unsigned char *collect; /* `collect`'s summary, a packed map, or NULL */
    size_t collect_len;
    const char *session;  /* the job's session id, or NULL: `session` omitted */
    int64_t session_seq;  /* its place in the session (1, 2, ...); 0: none */
};

/* One chunk of a file a job's `collect` sends back. */
struct kiln_file_chunk {
    const char *path;     /* relative to /work */
    int64_t size;         /* the file's, whole */
    unsigned mode;
    int64_t offset;
    const void *data;
    size_t len;
    int last;             /* the file's last chunk */
    int truncated;        /* ... and the file goes on past it (the cap) */
    int run;              /* the run or case it came from, or -1 */
};

/*
 * Encoders. Each initialises `sb` and packs one frame into it; the caller
 * owns the buffer (msgpack_sbuffer_destroy()). `id` may be NULL for a job
 * whose id could not be read: the frame then carries id nil.
 */
void kiln_frame_output(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                       int fd, const void *data, size_t len, int run);
void kiln_frame_exit(msgpack_sbuffer *sb, const char *id, uint64_t seq,
                     const struct kiln_exit *e);
void kiln_frame_case(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                     const struct kiln_case_result *c);
/* A session job's value (the repr of its last expression), as text. */
void kiln_frame_result(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                       const void *text, size_t len);
/* "exposed": a session's port reached from outside at `url`. */
void kiln_frame_exposed(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt, int port,
                        const char *url);
void kiln_frame_file(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                     const struct kiln_file_chunk *f);

#endif
