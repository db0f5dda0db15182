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
    KILN_STATUS_COUNT
};

/* "ok", "error", ... as schemas/frame.v1.md names them (static). */
const char *kiln_status_name(enum kiln_status s);

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

#endif
