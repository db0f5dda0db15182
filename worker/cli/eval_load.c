/*
 * kiln eval's input: problems and samples as JSON Lines, plain or gzipped
 * (zlib's gzopen reads both), and the job each sample becomes.
 *
 * A function problem (OpenAI's human-eval format) runs
 *     prompt + completion + "\n" + test + "\n" + "check(" + entry_point + ")"
 * as a job with `expect_end` and passes when it exits 0 having run to its
 * end (the worker says `ok` only then). A stdin/stdout problem runs the completion as
 * the whole program with the job key `tests` and passes when the worker's
 * verdict is `accepted`.
 *
 * A job's id is "eval-" and the first 32 hex digits of SHA-256 over the
 * job's msgpack bytes without `id` and `reply_to` (plugin, program, limits,
 * tests): the same sample under the same limits is always the same job.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cli/eval.h"
#include "cli/text.h"
#include "wire/proto.h"

#define LINES_FIRST_CAP 65536u

/* ---- JSON Lines over zlib --------------------------------------------- */

int kiln_eval_lines_open(struct kiln_eval_lines *l, const char *path)
{
    memset(l, 0, sizeof(*l));
    l->path = path;
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (gz == NULL) {
        if (errno == 0)
            errno = ENOMEM;
        return -1;
    }
    l->buf = malloc(LINES_FIRST_CAP);
    if (l->buf == NULL) {
        gzclose(gz);
        errno = ENOMEM;
        return -1;
    }
    l->cap = LINES_FIRST_CAP;
    l->gz = gz;
    return 0;
}

/* Read one line (or the rest of the file) into l->buf: its length, 0 at the
 * end, -1 after saying why. */
static long read_line(struct kiln_eval_lines *l)
{
    size_t n = 0;
    for (;;) {
        if (gzgets(l->gz, l->buf + n, (int)(l->cap - n)) == NULL) {
            int zerr;
            const char *msg = gzerror(l->gz, &zerr);
            if (zerr != Z_OK && zerr != Z_STREAM_END) {
                fprintf(stderr, "kiln eval: %s: line %lu: %s\n", l->path, l->line + 1,
                        zerr == Z_ERRNO ? strerror(errno) : msg);
                return -1;
            }
            return (long)n; /* the end: what was read has no newline */
        }
        n += strlen(l->buf + n);
        if (n > 0 && l->buf[n - 1] == '\n')
            return (long)n;
        if (n + 1 < l->cap)
            continue; /* stopped short of the buffer's end: a NUL or the end */
        if (l->cap >= KILN_EVAL_LINE_MAX) {
            fprintf(stderr, "kiln eval: %s: line %lu: longer than %u MiB\n", l->path,
                    l->line + 1, KILN_EVAL_LINE_MAX >> 20);
            return -1;
        }
        char *b = realloc(l->buf, l->cap * 2);
        if (b == NULL) {
            fprintf(stderr, "kiln eval: %s: line %lu: out of memory\n", l->path, l->line + 1);
            return -1;
        }
        l->buf = b;
        l->cap *= 2;
    }
}

int kiln_eval_lines_next(struct kiln_eval_lines *l, const char **text, int *partial)
{
    for (;;) {
        long n = read_line(l);
        if (n <= 0)
            return (int)n;
        l->line++;
        *partial = l->buf[n - 1] != '\n';
        while (n > 0 && (l->buf[n - 1] == '\n' || l->buf[n - 1] == '\r'))
            l->buf[--n] = '\0';
        if (strspn(l->buf, " \t\r\n") == (size_t)n)
            continue;
        *text = l->buf;
        return 1;
    }
}

void kiln_eval_lines_close(struct kiln_eval_lines *l)
{
    if (l->gz != NULL)
        gzclose(l->gz);
    free(l->buf);
    l->gz = NULL;
    l->buf = NULL;
}

/* ---- problems ---------------------------------------------------------- */

/* Object `o`'s string member `key`, or NULL after saying where it is wrong. */
static const char *need_str(const json_t *o, const char *key, const struct kiln_eval_lines *l)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        fprintf(stderr, "kiln eval: %s:%lu: '%s' must be a string\n", l->path, l->line, key);
    return s;
}

/* The next line as a JSON object: 1, 0 at the end, -1 after saying why. */
static int next_object(struct kiln_eval_lines *l, json_t **out)
{
    const char *text;
    int partial;
    json_error_t e;
    int r = kiln_eval_lines_next(l, &text, &partial);
    if (r <= 0)
        return r;
    *out = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (*out == NULL) {
        fprintf(stderr, "kiln eval: %s:%lu: bad JSON: %s (column %d)\n", l->path, l->line,
                e.text, e.column);
        return -1;
    }
    if (!json_is_object(*out)) {
        fprintf(stderr, "kiln eval: %s:%lu: want a JSON object\n", l->path, l->line);
        json_decref(*out);
        return -1;
    }
    return 1;
}

/* Fill `p` from its line `j` (taken): 0, or -1 after saying why. */
static int problem_of(struct kiln_eval_problem *p, json_t *j, const struct kiln_eval_lines *l)
{
    if (kiln_eval_is_multiple(j)) {
        char where[600];
        snprintf(where, sizeof(where), "%s:%lu", l->path, l->line);
        return kiln_eval_multiple_problem(p, j, where);
    }
    memset(p, 0, sizeof(*p));
    p->json = j;
    if ((p->task_id = need_str(j, "task_id", l)) == NULL)
        return -1;
    const json_t *tests = json_object_get(j, "tests");
    if (tests == NULL) {
        p->kind = KILN_EVAL_FUNCTION;
        return (p->prompt = need_str(j, "prompt", l)) && (p->test = need_str(j, "test", l)) &&
               (p->entry_point = need_str(j, "entry_point", l)) ? 0 : -1;
    }
    p->kind = KILN_EVAL_STDIO;
    p->tests = tests;
    size_t n = json_array_size(tests);
    if (!json_is_array(tests) || n < 1 || n > KILN_EVAL_MAX_TESTS) {
        fprintf(stderr, "kiln eval: %s:%lu: 'tests' must be a list of 1-%u cases\n", l->path,
                l->line, KILN_EVAL_MAX_TESTS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(tests, i);
        if (!json_is_string(json_object_get(t, "input")) ||
            !json_is_string(json_object_get(t, "output"))) {
            fprintf(stderr, "kiln eval: %s:%lu: tests[%zu] must be {\"input\": str, \"output\": str}\n",
                    l->path, l->line, i);
            return -1;
        }
    }
    return 0;
}

static int by_task_cmp(const void *a, const void *b, void *arg)
{
    const struct kiln_eval_set *set = arg;
    return strcmp(set->problems[*(const size_t *)a].task_id,
                  set->problems[*(const size_t *)b].task_id);
}

/* Grow `*arr` of `*cap` elements of `size` to hold n + 1, up to `max`. */
static int grow(void **arr, size_t *cap, size_t n, size_t size, size_t max)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 256;
    if (n >= max)
        return -1;
    if (c > max)
        c = max;
    void *p = realloc(*arr, c * size);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = c;
    return 0;
}

int kiln_eval_load_problems(struct kiln_eval_set *set, const char *path)
{
    struct kiln_eval_lines l;
    json_t *j;
    int r, rc = -1;
    set->problems_path = path;
    if (kiln_eval_lines_open(&l, path) < 0) {
        fprintf(stderr, "kiln eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((r = next_object(&l, &j)) == 1) {
        if (grow((void **)&set->problems, &set->problems_cap, set->nproblems, sizeof(*set->problems),
                 KILN_EVAL_MAX_PROBLEMS) < 0) {
            fprintf(stderr, "kiln eval: %s:%lu: more than %u problems, or out of memory\n",
                    path, l.line, KILN_EVAL_MAX_PROBLEMS);
            json_decref(j);
            goto out;
        }
        if (problem_of(&set->problems[set->nproblems++], j, &l) < 0)
            goto out;
    }
    if (r < 0)
        goto out;
    if (set->nproblems == 0) {
        fprintf(stderr, "kiln eval: %s: no problems in it\n", path);
        goto out;
    }
    if ((set->by_task = malloc(set->nproblems * sizeof(size_t))) == NULL) {
        fprintf(stderr, "kiln eval: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < set->nproblems; i++)
        set->by_task[i] = i;
    qsort_r(set->by_task, set->nproblems, sizeof(size_t), by_task_cmp, set);
    for (size_t i = 1; i < set->nproblems; i++)
        if (by_task_cmp(&set->by_task[i - 1], &set->by_task[i], set) == 0) {
            char id[200];
            fprintf(stderr, "kiln eval: %s: task_id '%s' appears twice\n", path,
                    kiln_shown(set->problems[set->by_task[i]].task_id, id, sizeof(id)));
            goto out;
        }
    rc = 0;
out:
    kiln_eval_lines_close(&l);
    return rc;
}

/* Where `task_id` is, or would go, in set->by_task. */
static size_t task_slot(const struct kiln_eval_set *set, const char *task_id, int *found)
{
    size_t lo = 0, hi = set->by_task != NULL ? set->nproblems : 0;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(task_id, set->problems[set->by_task[mid]].task_id);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A MultiPL-E problem a completions file carries: the set's own, or added
 * to it. NULL after saying why. */
static struct kiln_eval_problem *carried_problem(struct kiln_eval_set *set, const json_t *rec,
                                                 const char *where)
{
    struct kiln_eval_problem tmp;
    json_t *j = json_deep_copy(rec);
    if (j == NULL) {
        fprintf(stderr, "kiln eval: out of memory\n");
        return NULL;
    }
    json_object_del(j, "completions");
    if (kiln_eval_multiple_problem(&tmp, j, where) < 0) {
        json_decref(j);
        return NULL;
    }
    int found;
    size_t slot = task_slot(set, tmp.task_id, &found);
    if (found) {
        json_decref(j);
        return &set->problems[set->by_task[slot]];
    }
    size_t *bt = realloc(set->by_task, (set->nproblems + 1) * sizeof(size_t));
    if (bt != NULL)
        set->by_task = bt;
    if (bt == NULL || grow((void **)&set->problems, &set->problems_cap, set->nproblems,
                           sizeof(*set->problems), KILN_EVAL_MAX_PROBLEMS) < 0) {
        fprintf(stderr, "kiln eval: %s: more than %u problems, or out of memory\n", where,
                KILN_EVAL_MAX_PROBLEMS);
        json_decref(j);
        return NULL;
    }
    memmove(set->by_task + slot + 1, set->by_task + slot, (set->nproblems - slot) * sizeof(size_t));
    set->by_task[slot] = set->nproblems;
    set->problems[set->nproblems] = tmp;
    return &set->problems[set->nproblems++];
}

struct kiln_eval_problem *kiln_eval_problem_find(const struct kiln_eval_set *set,
                                                 const char *task_id)
{
    size_t lo = 0, hi = set->by_task != NULL ? set->nproblems : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct kiln_eval_problem *p = &set->problems[set->by_task[mid]];
        int c = strcmp(task_id, p->task_id);
        if (c == 0)
            return p;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---- jobs -------------------------------------------------------------- */

/* The program of a function problem: a new string owned by the caller. */
static char *function_program(const struct kiln_eval_problem *p, const char *completion)
{
    char *s = NULL;
    if (asprintf(&s, "%s%s\n%s\ncheck(%s)", p->prompt, completion, p->test, p->entry_point) < 0)
        return NULL;
    return s;
}

/* The job's keys but `id` and `reply_to`, as entries of `m` (initialised
 * here): its id is the hash of their bytes. 0, or -1 (m then freed). */
static int pack_body(const struct kiln_eval_set *set, const struct kiln_eval_problem *p,
                     const char *completion, struct kiln_map *m)
{
    const struct kiln_eval_limits *lim = &set->limits;
    const long long lv[] = {lim->timeout_ms, lim->cpu_ms, lim->memory_mb, lim->output_bytes};
    const char *const lk[] = {"timeout_ms", "cpu_ms", "memory_mb", "output_bytes"};
    struct kiln_map limits;
    kiln_map_init(m);
    kiln_map_int(m, "v", 1);
    kiln_map_str(m, "plugin", p->lang != NULL ? p->lang->plugin : set->plugin);
    if (set->image != NULL)
        kiln_map_str(m, "image", set->image);
    if (p->kind == KILN_EVAL_FUNCTION || p->kind == KILN_EVAL_MULTIPLE) {
        char *code = p->kind == KILN_EVAL_FUNCTION ? function_program(p, completion)
                                                   : kiln_eval_multiple_program(p, completion, set->no_stop);
        if (code == NULL) {
            kiln_map_drop(m);
            return -1;
        }
        kiln_map_str(m, "code", code);
        free(code);
        /* a pass means the tests ran: an exit 0 before the program's end
         * (sys.exit, os._exit, a thread, an atexit handler) is a failure */
        if (!set->no_end_check && (p->lang == NULL || p->lang->proves_end))
            kiln_map_bool(m, "expect_end", 1);
    } else {
        kiln_map_str(m, "code", completion);
    }
    kiln_map_init(&limits);
    for (size_t i = 0; i < 4; i++)
        if (lv[i] >= 0)
            kiln_map_int(&limits, lk[i], lv[i]);
    if (limits.n > 0)
        kiln_map_end(&limits, kiln_map_key(m, "limits"));
    else
        kiln_map_drop(&limits);
    if (p->kind == KILN_EVAL_STDIO) {
        msgpack_packer *tests = kiln_map_key(m, "tests");
        msgpack_pack_array(tests, json_array_size(p->tests));
        for (size_t i = 0; i < json_array_size(p->tests); i++) {
            const json_t *t = json_array_get(p->tests, i);
            const json_t *in = json_object_get(t, "input"), *out = json_object_get(t, "output");
            struct kiln_map c, expect;
            kiln_map_init(&c);
            kiln_mp_strn(kiln_map_key(&c, "stdin"), json_string_value(in), json_string_length(in));
            kiln_map_init(&expect);
            kiln_mp_strn(kiln_map_key(&expect, "stdout"), json_string_value(out), json_string_length(out));
            kiln_map_end(&expect, kiln_map_key(&c, "expect"));
            kiln_map_end(&c, tests);
        }
    }
    return 0;
}

static void job_id(const msgpack_sbuffer *body, char id[KILN_EVAL_ID_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(body->data, body->size, md, &mdlen, EVP_sha256(), NULL);
    memcpy(id, "eval-", 5);
    for (size_t i = 0; i < 16; i++)
        snprintf(id + 5 + 2 * i, 3, "%02x", md[i]);
}

int kiln_eval_pack_job(const struct kiln_eval_set *set, const struct kiln_eval_sample *s,
                       const char *reply_to, msgpack_sbuffer *sb)
{
    struct kiln_map job, body;
    msgpack_packer pk;
    if (s->completion == NULL || pack_body(set, &set->problems[s->problem], s->completion, &body) < 0)
        return -1;
    kiln_map_init(&job);
    kiln_map_str(&job, "id", s->job);
    kiln_map_str(&job, "reply_to", reply_to);
    kiln_map_append(&job, &body);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    kiln_map_end(&job, &pk);
    return 0;
}

/* ---- samples ----------------------------------------------------------- */

/* Give sample `s` of problem `p` its completion (copied) and job id: 0,
 * or -1 after saying why. */
static int sample_make(struct kiln_eval_set *set, struct kiln_eval_sample *s, struct kiln_eval_problem *p,
                       const char *completion)
{
    memset(s, 0, sizeof(*s));
    s->problem = (size_t)(p - set->problems);
    s->index = p->nsamples++;
    struct kiln_map body;
    int r = pack_body(set, p, completion, &body);
    if (r == 0) {
        job_id(&body.body, s->job);
        kiln_map_drop(&body);
    }
    if (r < 0 || (s->completion = strdup(completion)) == NULL) {
        fprintf(stderr, "kiln eval: out of memory\n");
        return -1;
    }
    return 0;
}

static int sample_room(struct kiln_eval_set *set, size_t *cap, const char *where)
{
    if (grow((void **)&set->samples, cap, set->nsamples, sizeof(*set->samples), KILN_EVAL_MAX_SAMPLES) < 0) {
        fprintf(stderr, "kiln eval: %s: more than %u samples, or out of memory\n", where, KILN_EVAL_MAX_SAMPLES);
        return -1;
    }
    return 0;
}

/* One record of a samples file (borrowed), into samples: {task_id,
 * completion}; {name, language, completion}; or a MultiPL-E completions
 * record {name, language, prompt, tests, stop_tokens, completions: [...]},
 * whose problem joins the set if it has no such one. 0, or -1 after saying
 * why. */
int kiln_eval_samples_of(struct kiln_eval_set *set, size_t *cap, const json_t *j, const char *where)
{
    const json_t *list = json_object_get(j, "completions");
    struct kiln_eval_problem *p = NULL;
    char key[400];
    const char *task_id = json_string_value(json_object_get(j, "task_id"));
    if (list != NULL) {
        if (!json_is_array(list)) {
            fprintf(stderr, "kiln eval: %s: 'completions' must be a list of strings\n", where);
            return -1;
        }
        if ((p = carried_problem(set, j, where)) == NULL)
            return -1;
        for (size_t i = 0; i < json_array_size(list); i++) {
            const char *c = json_string_value(json_array_get(list, i));
            if (c == NULL) {
                fprintf(stderr, "kiln eval: %s: completions[%zu] must be a string\n", where, i);
                return -1;
            }
            if (sample_room(set, cap, where) < 0 || sample_make(set, &set->samples[set->nsamples], p, c) < 0)
                return -1;
            set->nsamples++;
        }
        return 0;
    }
    const char *completion = json_string_value(json_object_get(j, "completion"));
    if (task_id == NULL && json_is_string(json_object_get(j, "name"))) { /* MultiPL-E's naming */
        const struct kiln_eval_lang *lang = kiln_eval_lang_find(json_string_value(json_object_get(j, "language")));
        snprintf(key, sizeof(key), "%s/%s", lang ? lang->code : "?",
                 json_string_value(json_object_get(j, "name")));
        task_id = key;
    }
    if (task_id == NULL || completion == NULL) {
        fprintf(stderr, "kiln eval: %s: a sample needs 'task_id' (or 'name' and 'language') and "
                "'completion' (strings)\n", where);
        return -1;
    }
    if ((p = kiln_eval_problem_find(set, task_id)) == NULL) {
        char id[200];
        fprintf(stderr, "kiln eval: %s: task_id '%s' is not in %s\n", where,
                kiln_shown(task_id, id, sizeof(id)), set->problems_path ? set->problems_path : "the problems");
        return -1;
    }
    if (sample_room(set, cap, where) < 0 || sample_make(set, &set->samples[set->nsamples], p, completion) < 0)
        return -1;
    set->nsamples++;
    return 0;
}

int kiln_eval_load_samples(struct kiln_eval_set *set, const char *path)
{
    struct kiln_eval_lines l;
    size_t cap = 0;
    json_t *j = NULL;
    int r, rc = -1;
    DIR *d = opendir(path);
    if (d != NULL) {
        rc = kiln_eval_samples_of_dir(set, &cap, path, d);
        closedir(d);
        if (rc == 0 && set->nsamples == 0) {
            fprintf(stderr, "kiln eval: %s: no completion files (*.json, *.json.gz) in it\n", path);
            rc = -1;
        }
        return rc;
    }
    if (kiln_eval_lines_open(&l, path) < 0) {
        fprintf(stderr, "kiln eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((r = next_object(&l, &j)) == 1) {
        char where[600];
        snprintf(where, sizeof(where), "%s:%lu", path, l.line);
        if (kiln_eval_samples_of(set, &cap, j, where) < 0)
            goto out;
        json_decref(j);
        j = NULL;
    }
    if (r < 0)
        goto out;
    if (set->nsamples == 0) {
        fprintf(stderr, "kiln eval: %s: no samples in it\n", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(j);
    kiln_eval_lines_close(&l);
    return rc;
}

void kiln_eval_set_free(struct kiln_eval_set *set)
{
    for (size_t i = 0; i < set->nproblems; i++)
        json_decref(set->problems[i].json);
    for (size_t i = 0; i < set->nsamples; i++) {
        free(set->samples[i].completion);
        json_decref(set->samples[i].result);
    }
    free(set->problems);
    free(set->by_task);
    free(set->samples);
}
