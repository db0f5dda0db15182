/*
 * kiln eval's MultiPL-E problems (nuprl/MultiPL-E: HumanEval and MBPP
 * translated into many languages). A problem record is
 *
 *   {name, language, prompt, tests, stop_tokens, ...}
 *
 * and a sample's program is prompt + completion + "\n" + tests, the
 * completion first cut at its first stop token (as MultiPL-E cuts what a
 * model generates; a completion cut already is left as it is), run by the
 * plugin for the record's language. MultiPL-E spells languages its own
 * way (Go's records say go_test.go, the old ones javascript, rust, ...):
 * every spelling maps to one short code, and a problem is named
 * "<code>/<name>", since the same name is used in every language.
 *
 * Pass: the program exits 0 (MultiPL-E's rule for every language), having
 * run to its end where the plugin can prove it (expect_end: docs/evaluation.md, What
 * counts as a pass); for Perl, also no "ERROR" in its output, as
 * MultiPL-E's evaluator reads it. What MultiPL-E reads from output
 * elsewhere, kiln's plugins turn into the exit status: a failed C#
 * Debug.Assert exits 1 (plugins/csharp/KilnRun.cs), a Go test binary exits
 * 1 on FAIL.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cli/eval.h"

static const char *const alias_py[] = {"py", "python", "notypes.py", NULL};
static const char *const alias_js[] = {"js", "javascript", NULL};
static const char *const alias_ts[] = {"ts", "typescript", NULL};
static const char *const alias_go[] = {"go", "go_test.go", NULL};
static const char *const alias_rs[] = {"rs", "rust", NULL};
static const char *const alias_cs[] = {"cs", "csharp", NULL};
static const char *const alias_rb[] = {"rb", "ruby", NULL};
static const char *const alias_pl[] = {"pl", "perl", NULL};
static const char *const alias_r[] = {"r", "R", "humaneval_to_r.py", NULL};
static const char *const alias_sh[] = {"sh", "bash", NULL};
static const char *const alias_java[] = {"java", NULL};
static const char *const alias_php[] = {"php", NULL};
static const char *const alias_lua[] = {"lua", NULL};
static const char *const alias_cpp[] = {"cpp", "c++", NULL};

static const struct kiln_eval_lang langs[] = {
    {"py", alias_py, "python", 1, NULL},
    {"js", alias_js, "javascript", 1, NULL},
    {"ts", alias_ts, "typescript", 1, NULL},
    {"java", alias_java, "java", 1, NULL},
    {"go", alias_go, "go", 1, NULL},
    {"rs", alias_rs, "rust", 1, NULL},
    {"cs", alias_cs, "csharp", 1, NULL},
    {"php", alias_php, "php", 1, NULL},
    {"rb", alias_rb, "ruby", 1, NULL},
    {"lua", alias_lua, "lua", 1, NULL},
    {"pl", alias_pl, "perl", 1, "ERROR"},
    {"r", alias_r, "r", 1, NULL},
    {"cpp", alias_cpp, "cpp", 1, NULL},
    /* every variable of a shell is the script's own: bash has no runner
     * that could hold a token from it (plugins/bash/bash.c) */
    {"sh", alias_sh, "bash", 0, NULL},
};

const struct kiln_eval_lang *kiln_eval_lang_find(const char *spelled)
{
    for (size_t i = 0; spelled != NULL && i < sizeof(langs) / sizeof(langs[0]); i++)
        for (const char *const *a = langs[i].aliases; *a != NULL; a++)
            if (strcmp(*a, spelled) == 0)
                return &langs[i];
    return NULL;
}

size_t kiln_eval_stop_cut(const char *completion, const json_t *stop_tokens)
{
    size_t n = strlen(completion);
    for (size_t i = 0; i < json_array_size(stop_tokens); i++) {
        const char *t = json_string_value(json_array_get(stop_tokens, i));
        const char *at = t != NULL && *t ? strstr(completion, t) : NULL;
        if (at != NULL && (size_t)(at - completion) < n)
            n = (size_t)(at - completion);
    }
    return n;
}

int kiln_eval_multiple_problem(struct kiln_eval_problem *p, json_t *j, const char *where)
{
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *spelled = json_string_value(json_object_get(j, "language"));
    const json_t *stop = json_object_get(j, "stop_tokens");
    char *key = NULL;
    memset(p, 0, sizeof(*p));
    p->json = j;
    p->kind = KILN_EVAL_MULTIPLE;
    p->prompt = json_string_value(json_object_get(j, "prompt"));
    p->test = json_string_value(json_object_get(j, "tests"));
    if (name == NULL || p->prompt == NULL || p->test == NULL) {
        fprintf(stderr, "kiln eval: %s: a MultiPL-E problem needs 'name', 'language', 'prompt' and "
                "'tests' (strings)\n", where);
        return -1;
    }
    if ((p->lang = kiln_eval_lang_find(spelled)) == NULL) {
        fprintf(stderr, "kiln eval: %s: language '%.32s' is not one kiln runs (%s)\n", where,
                spelled ? spelled : "(none)", "java, js, ts, go, rs, cs, php, rb, lua, pl, r, cpp, sh, py");
        return -1;
    }
    if (stop != NULL && !json_is_array(stop)) {
        fprintf(stderr, "kiln eval: %s: 'stop_tokens' must be a list of strings\n", where);
        return -1;
    }
    p->stop_tokens = stop;
    /* its name in results and samples: "<code>/<name>", owned by its JSON */
    if (asprintf(&key, "%s/%s", p->lang->code, name) < 0 ||
        json_object_set_new(j, "kiln_task_id", json_string(key)) < 0) {
        free(key);
        fprintf(stderr, "kiln eval: out of memory\n");
        return -1;
    }
    free(key);
    p->task_id = json_string_value(json_object_get(j, "kiln_task_id"));
    return p->task_id != NULL ? 0 : -1;
}

char *kiln_eval_multiple_program(const struct kiln_eval_problem *p, const char *completion, int no_stop)
{
    size_t n = no_stop ? strlen(completion) : kiln_eval_stop_cut(completion, p->stop_tokens);
    char *s = NULL;
    if (asprintf(&s, "%s%.*s\n%s", p->prompt, (int)n, completion, p->test) < 0)
        return NULL;
    return s;
}

int kiln_eval_is_multiple(const json_t *j)
{
    return json_is_string(json_object_get(j, "tests")) && json_is_string(json_object_get(j, "name")) &&
           json_object_get(j, "language") != NULL;
}

json_t *kiln_eval_read_json(const char *path)
{
    gzFile gz = gzopen(path, "rb");
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    json_t *j = NULL;
    json_error_t e;
    if (gz == NULL || buf == NULL) {
        fprintf(stderr, "kiln eval: %s: %s\n", path, gz == NULL ? strerror(errno) : "out of memory");
        goto out;
    }
    for (;;) {
        if (len == cap) {
            char *more = cap < KILN_EVAL_LINE_MAX ? realloc(buf, cap * 2) : NULL;
            if (more == NULL) {
                fprintf(stderr, "kiln eval: %s: larger than %u MiB\n", path, KILN_EVAL_LINE_MAX >> 20);
                goto out;
            }
            buf = more;
            cap *= 2;
        }
        int n = gzread(gz, buf + len, (unsigned)(cap - len));
        if (n < 0) {
            int err;
            fprintf(stderr, "kiln eval: %s: %s\n", path, gzerror(gz, &err));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if ((j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &e)) == NULL)
        fprintf(stderr, "kiln eval: %s: bad JSON: %s (line %d)\n", path, e.text, e.line);
    else if (!json_is_object(j)) {
        fprintf(stderr, "kiln eval: %s: want one JSON object\n", path);
        json_decref(j);
        j = NULL;
    }
out:
    if (gz != NULL)
        gzclose(gz);
    free(buf);
    return j;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory of MultiPL-E completion files (NAME.json or NAME.json.gz,
 * one record each; NAME.results.json* are skipped), in name order. */
int kiln_eval_samples_of_dir(struct kiln_eval_set *set, size_t *cap, const char *path, DIR *d)
{
    char **names = NULL;
    size_t n = 0, ncap = 0;
    int rc = -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t k = strlen(e->d_name);
        int json = (k > 5 && strcmp(e->d_name + k - 5, ".json") == 0) ||
                   (k > 8 && strcmp(e->d_name + k - 8, ".json.gz") == 0);
        if (!json || strstr(e->d_name, ".results.json") != NULL)
            continue;
        if (n == ncap) {
            char **more = ncap < KILN_EVAL_MAX_PROBLEMS ? realloc(names, (ncap ? ncap * 2 : 64) * sizeof(char *)) : NULL;
            if (more == NULL)
                goto out;
            names = more;
            ncap = ncap ? ncap * 2 : 64;
        }
        if ((names[n] = strdup(e->d_name)) == NULL)
            goto out;
        n++;
    }
    qsort(names, n, sizeof(char *), name_cmp);
    for (size_t i = 0; i < n; i++) {
        char file[4096];
        snprintf(file, sizeof(file), "%s/%s", path, names[i]);
        json_t *j = kiln_eval_read_json(file);
        int r = j != NULL ? kiln_eval_samples_of(set, cap, j, file) : -1;
        json_decref(j);
        if (r < 0)
            goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int kiln_eval_marker_in(char edge[16], unsigned char *elen, const char *marker, const char *data, size_t n)
{
    size_t m = strlen(marker), e = *elen, take = n < m ? n : m;
    char joint[32];
    if (memmem(data, n, marker, m) != NULL)
        return 1;
    memcpy(joint, edge, e);
    memcpy(joint + e, data, take);
    if (memmem(joint, e + take, marker, m) != NULL)
        return 1;
    /* the last m-1 bytes of the stream so far */
    if (n >= m - 1) {
        memcpy(edge, data + n - (m - 1), m - 1);
        *elen = (unsigned char)(m - 1);
    } else {
        size_t all = e + n, keep = all < m - 1 ? all : m - 1;
        memcpy(edge, joint + all - keep, keep);
        *elen = (unsigned char)keep;
    }
    return 0;
}
