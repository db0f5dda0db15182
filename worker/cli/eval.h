/*
 * kiln eval: run generated programs against a set of problems through kiln
 * workers and report pass@k. Four files:
 *
 *   eval_load.c     problems and samples (JSON Lines, plain or gzipped, or
 *                   a directory of MultiPL-E completion files), the job
 *                   each sample becomes and its content-hash id
 *   eval_multiple.c MultiPL-E's problems: languages, stop tokens, programs
 *   eval_results.c  verdicts, the results file (resume, append, the final
 *                   rewrite) and pass@k
 *   eval.c          the command: options, submission with back-pressure,
 *                   reading frames, progress, signals
 *
 * Ownership: a kiln_eval_set owns its problems (each keeps its parsed JSON
 * line, which owns the strings pointed to), its samples and their result
 * lines; kiln_eval_set_free() frees all of it.
 */
#ifndef KILN_CLI_EVAL_H
#define KILN_CLI_EVAL_H

#include <dirent.h>
#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* "eval-" and 32 hex digits of SHA-256 */
#define KILN_EVAL_ID_LEN 37
/* the longest line read from a problems, samples or results file */
#define KILN_EVAL_LINE_MAX (16u << 20)
/* the most problems and samples one run reads */
#define KILN_EVAL_MAX_PROBLEMS 1000000u
#define KILN_EVAL_MAX_SAMPLES 4000000u
/* cases of a stdin/stdout problem (the job key `tests` allows 1-1000) */
#define KILN_EVAL_MAX_TESTS 1000u
/* the most k values asked */
#define KILN_EVAL_MAX_K 32

enum kiln_eval_kind {
    KILN_EVAL_FUNCTION, /* {task_id, prompt, test, entry_point}: check() must pass */
    KILN_EVAL_STDIO,    /* {task_id, tests: [{input, output}]}: the worker judges */
    KILN_EVAL_MULTIPLE, /* {name, language, prompt, tests, stop_tokens}: MultiPL-E's */
};

/* A language of MultiPL-E's (eval_multiple.c). */
struct kiln_eval_lang {
    const char *code;               /* its short code: "java", "rs", "go", ... */
    const char *const *aliases;     /* every spelling MultiPL-E's files use */
    const char *plugin;             /* the kiln plugin that runs it */
    int proves_end;                 /* its plugin proves a program ran to its end */
    const char *fail_marker;        /* output that fails a sample (MultiPL-E's rule), or NULL */
};

struct kiln_eval_problem {
    json_t *json; /* the problem's line, owned; owns the strings below */
    enum kiln_eval_kind kind;
    const char *task_id;                     /* MULTIPLE: "<code>/<name>" */
    const char *prompt, *test, *entry_point; /* FUNCTION; MULTIPLE: prompt, tests */
    const json_t *tests;                     /* KILN_EVAL_STDIO */
    const struct kiln_eval_lang *lang;       /* KILN_EVAL_MULTIPLE */
    const json_t *stop_tokens;               /* KILN_EVAL_MULTIPLE, or NULL */
    unsigned nsamples;                       /* samples of this task read */
};

struct kiln_eval_sample {
    size_t problem;                    /* index into the set's problems */
    unsigned index;                    /* 0-based among its task's samples */
    char job[KILN_EVAL_ID_LEN + 1];    /* the id of the job it becomes */
    char *completion;                  /* owned; NULL once its job is sent */
    json_t *result;                    /* its result line once known, owned */
};

/* Limits put in every job; -1: not set (the worker's default). */
struct kiln_eval_limits {
    long long timeout_ms, cpu_ms, memory_mb, output_bytes;
};

struct kiln_eval_set {
    struct kiln_eval_problem *problems; /* in file order */
    size_t nproblems;
    size_t *by_task;                    /* problem indices sorted by task_id */
    struct kiln_eval_sample *samples;   /* in file order */
    size_t nsamples;
    const char *problems_path;          /* borrowed: for messages */
    const char *plugin;                 /* borrowed: the --plugin argument */
    const char *image;                  /* borrowed: --image, or NULL: the worker's default */
    struct kiln_eval_limits limits;
    int no_stop;                        /* --no-stop: completions are not cut */
    int no_end_check;                   /* --no-end-check: a pass is an exit 0 */
    size_t problems_cap;
};

/* What a job's exit frame says about its samples. */
struct kiln_eval_outcome {
    char status[32];   /* the exit frame's status */
    char verdict[32];  /* accepted, wrong_answer, runtime_error, ... */
    char result[256];  /* "passed", "failed: AssertionError", "timed out", ... */
    int passed;
    int judged;        /* 0: kiln failed or never ran it; left out of pass@k */
};

/* kiln eval's main (eval.c): the process's exit status. */
int kiln_eval(int argc, char **argv);

/* ---- eval_load.c ---- */

/* Read the problems, then the samples, into `set` (zeroed by the caller,
 * with plugin and limits set); each sample gets its job id. 0, or -1 after
 * saying on stderr which file and line is wrong and why. */
int kiln_eval_load_problems(struct kiln_eval_set *set, const char *path);
int kiln_eval_load_samples(struct kiln_eval_set *set, const char *path);
/* The problem whose task_id is `task_id`, or NULL. */
struct kiln_eval_problem *kiln_eval_problem_find(const struct kiln_eval_set *set,
                                                 const char *task_id);
/* Pack sample `s`'s job, with its id, and `reply_to`, into `sb`
 * (initialized by the caller). 0, or -1 when the completion is gone. */
int kiln_eval_pack_job(const struct kiln_eval_set *set, const struct kiln_eval_sample *s,
                       const char *reply_to, msgpack_sbuffer *sb);
void kiln_eval_set_free(struct kiln_eval_set *set);

/* ---- eval_multiple.c ---- */

/* The language MultiPL-E spells `spelled`, or NULL. */
const struct kiln_eval_lang *kiln_eval_lang_find(const char *spelled);
/* How much of `completion` comes before its first stop token. */
size_t kiln_eval_stop_cut(const char *completion, const json_t *stop_tokens);
/* 1 when record `j` is a MultiPL-E problem (or completions file). */
int kiln_eval_is_multiple(const json_t *j);
/* Fill `p` from MultiPL-E record `j` (taken; it owns the strings): 0, or
 * -1 after saying why, `where` naming the file and line. */
int kiln_eval_multiple_problem(struct kiln_eval_problem *p, json_t *j, const char *where);
/* A MultiPL-E problem's program for `completion`: a new string. */
char *kiln_eval_multiple_program(const struct kiln_eval_problem *p, const char *completion, int no_stop);
/* The samples of one record of a samples file (eval_load.c), or of every
 * completion file in directory `d` at `path`, into set->samples (of
 * capacity *cap): 0, or -1 after saying why. */
int kiln_eval_samples_of(struct kiln_eval_set *set, size_t *cap, const json_t *j, const char *where);
int kiln_eval_samples_of_dir(struct kiln_eval_set *set, size_t *cap, const char *path, DIR *d);
/* 1 when `marker` (under 16 bytes) is in a stream so far: what came
 * before kept in `edge` (its last bytes, `*elen` of them), then `data`;
 * `edge` then keeps the stream's new end. */
int kiln_eval_marker_in(char edge[16], unsigned char *elen, const char *marker, const char *data, size_t n);
/* A whole file (plain or gzipped) holding one JSON object: a new
 * reference, or NULL after saying why. */
json_t *kiln_eval_read_json(const char *path);

/* A JSON Lines reader over zlib (plain and gzip alike), with lines capped
 * at KILN_EVAL_LINE_MAX. */
struct kiln_eval_lines {
    void *gz;
    const char *path; /* borrowed */
    unsigned long line;
    char *buf;
    size_t cap;
};
/* 0, or -1 (errno set) if the file cannot be opened. */
int kiln_eval_lines_open(struct kiln_eval_lines *l, const char *path);
/* The next non-blank line, NUL-terminated and without its newline, in a
 * buffer the reader owns until the next call: 1, 0 at the end, -1 on a
 * read error or a line over the cap (said on stderr). `partial` is set when
 * the line had no newline (the file's last, maybe cut short). */
int kiln_eval_lines_next(struct kiln_eval_lines *l, const char **text, int *partial);
void kiln_eval_lines_close(struct kiln_eval_lines *l);

/* ---- eval_results.c ---- */

/* The outcome of exit frame `exit`: `stdio` for a job with `tests`,
 * `stderr_tail` the end of what it wrote to stderr ("" if none). */
void kiln_eval_outcome_of(const msgpack_object *exit, int stdio, const char *stderr_tail,
                          struct kiln_eval_outcome *o);
/* Sample `s`'s result line, a new reference owned by the caller. */
json_t *kiln_eval_result_line(const struct kiln_eval_set *set, const struct kiln_eval_sample *s,
                              const struct kiln_eval_outcome *o);
/* Read `path` (an earlier run's results, if it exists) and give each sample
 * of the set found there, with the same job id, its result line. Returns
 * how many samples got one, or -1 after saying why. */
long kiln_eval_resume(struct kiln_eval_set *set, const char *path);
/* Open `path` for appending result lines, starting on a fresh line. NULL
 * after saying why. */
FILE *kiln_eval_out_open(const char *path);
/* Append one line and flush it to the kernel: 0, or -1 after saying why. */
int kiln_eval_out_append(FILE *out, const char *path, const json_t *line);
/* Every sample has a result: rewrite `path` atomically as the sample lines
 * and one pass@k line per task, and print the summary on stdout. 0, or -1
 * after saying why. */
int kiln_eval_report(const struct kiln_eval_set *set, const char *path, const unsigned *ks,
                     size_t nk);
/* The unbiased estimator of pass@k for n samples of which c passed. */
double kiln_eval_pass_at_k(unsigned n, unsigned c, unsigned k);

#endif
