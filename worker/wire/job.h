/* The job, v1: decoding and validation of the wire format (schemas/job.v1.md). */
#ifndef KILN_JOB_H
#define KILN_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/plugin.h"

#define KILN_JOB_ID_MAX 128
#define KILN_JOB_NAME_MAX 249 /* reply_to: Kafka's topic name limit */
#define KILN_JOB_FILES_MAX 1000
#define KILN_JOB_PATH_MAX 1024
#define KILN_JOB_SECRETS_MAX 32
#define KILN_JOB_SECRET_NAME_MAX 64
#define KILN_JOB_COLLECT_MAX 100   /* patterns */

/* Limits a job asks for; -1 where the job says nothing. */
struct kiln_limits {
    int64_t timeout_ms;
    int64_t cpu_ms;
    int64_t memory_mb;
    int64_t pids;
    int64_t output_bytes;
    int64_t file_bytes;
    int64_t collect_bytes;     /* what `collect` may send back, all files together */
};

#define KILN_JOB_RUNS_MAX 1000

/* One input of a job with `runs`, or one case of its `tests`: its own
 * stdin and args, and for a case what it must print and exit with and
 * the limits it runs under (-1: the job's). */
struct kiln_run_input {
    unsigned char *stdin_data; /* NULL: no stdin */
    size_t stdin_len;
    char **args;               /* NULL: the job's args */
    size_t nargs;
    int has_args;
    unsigned char *expect_stdout; /* NULL: any output passes */
    size_t expect_len;
    int expect_exit;           /* default 0 */
    struct kiln_limits limits;
};

/* How a case's stdout is compared with what it should print. */
enum kiln_compare {
    KILN_COMPARE_LINES,        /* trailing whitespace of lines, trailing empty lines ignored */
    KILN_COMPARE_EXACT,
    KILN_COMPARE_TOKENS,       /* whitespace-separated tokens */
    KILN_COMPARE_FLOAT,        /* tokens; numbers equal within a tolerance */
};

struct kiln_file {
    char *path;           /* relative, checked: no "..", no empty parts */
    unsigned char *data;
    size_t len;
};

#define KILN_EXPOSE_MAX 8 /* ports one session may expose */

struct kiln_job {
    int64_t v;
    char *id;
    char *plugin;
    char *image;          /* the runtime image it asks for, or NULL: the default */
    char *code;
    size_t code_len;
    char **args;
    size_t nargs;
    unsigned char *stdin_data; /* NULL when the job has no stdin */
    size_t stdin_len;
    struct kiln_kv *env;       /* key and value strings owned by the job */
    size_t nenv;
    struct kiln_kv *secrets;   /* env name -> the operator's secret name */
    size_t nsecrets;
    struct kiln_file *files;
    size_t nfiles;
    char **collect;            /* glob patterns under /work, or NULL */
    size_t ncollect;
    struct kiln_limits limits;
    char **net_allow;          /* NULL when the job has no `net` */
    size_t nnet;
    int has_net;
    char *reply_to;            /* NULL when absent */
    unsigned char *meta;       /* the `meta` value re-packed, or NULL */
    size_t meta_len;
    int not_msgpack;          /* decoding failed: the bytes are no msgpack object */
    struct kiln_run_input *runs; /* NULL when the job has no `runs` or `tests` */
    size_t nruns;
    int tests;                 /* `runs` holds the cases of `tests` */
    enum kiln_compare compare;
    double tolerance;          /* KILN_COMPARE_FLOAT: absolute or relative */
    int stop_on_fail;          /* after a failing case, the rest are skipped */
    int tests_output;          /* cases stream their stdout/stderr frames too */
    int expect_end;            /* exit 0 counts only if the program ran to its end */
    int64_t deadline;          /* unix ms after which it must not start; -1 */
    char *session;             /* `session.id`: the session it runs in, or NULL */
    int64_t session_idle_ms;   /* `session.idle_ms`, -1: the worker's default */
    int session_close;         /* `session.close`: the session ends after it */
    uint16_t expose[KILN_EXPOSE_MAX]; /* `session.expose`: ports to reach from outside, distinct */
    size_t nexpose;
};

/*
 * Decode and check one job. Returns 0 with a new job in *out, owned by the
 * caller (free with kiln_job_free()). On a bad job returns -EINVAL with a
 * reason for the user in `err`, and *out still holds what could be read of
 * `id`, `reply_to` and `meta` (for routing the rejected frame); free it too.
 * Returns -ENOMEM (and *out NULL) only when memory runs out.
 */
int kiln_job_decode(const void *buf, size_t len, struct kiln_job **out,
                    char *err, size_t errlen);
void kiln_job_free(struct kiln_job *job);

/* 1 if `s` is a valid job id / stream or topic name. */
int kiln_job_valid_id(const char *s);
int kiln_job_valid_name(const char *s);
/* 1 if `s` can name a runtime image: [a-z0-9][a-z0-9._-]{0,62}. */
int kiln_job_valid_image(const char *s);
/* 1 if `s` can name one of the operator's secrets: 1-64 of [A-Za-z0-9_.-]. */
int kiln_job_valid_secret(const char *s);

#endif
