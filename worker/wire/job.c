#include "wire/job.h"

#include <errno.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/proto.h"

/* Decoding state: where reasons go, and whether memory ran out. */
struct dec {
    char *err;
    size_t errlen;
    int nomem;
};

__attribute__((format(printf, 2, 3)))
static int bad(struct dec *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, d->errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int charset_ok(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || strchr(extra, c) != NULL))
            return 0;
    }
    return 1;
}

int kiln_job_valid_id(const char *s)
{
    return charset_ok(s, KILN_JOB_ID_MAX, "._:-");
}

int kiln_job_valid_name(const char *s)
{
    return charset_ok(s, KILN_JOB_NAME_MAX, "._:-");
}

int kiln_job_valid_image(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

int kiln_job_valid_secret(const char *s)
{
    return charset_ok(s, KILN_JOB_SECRET_NAME_MAX, "._-");
}

/* A string field: copy into *out. `what` names it in reasons. */
static int get_str(struct dec *d, const msgpack_object *o, const char *what, char **out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return bad(d, "field '%s' must be a string", what);
    if (memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
        return bad(d, "field '%s' must not contain a NUL byte", what);
    if ((*out = kiln_mp_strdup(o)) == NULL) {
        d->nomem = 1;
        return -ENOMEM;
    }
    return 0;
}

/* bytes from a bin or str object */
static int get_bytes(struct dec *d, const msgpack_object *o, const char *what,
                     unsigned char **out, size_t *len)
{
    const char *p;
    size_t n;
    if (o->type == MSGPACK_OBJECT_BIN) {
        p = o->via.bin.ptr;
        n = o->via.bin.size;
    } else if (o->type == MSGPACK_OBJECT_STR) {
        p = o->via.str.ptr;
        n = o->via.str.size;
    } else {
        return bad(d, "field '%s' must be bin or str", what);
    }
    *out = malloc(n ? n : 1);
    if (*out == NULL) {
        d->nomem = 1;
        return -ENOMEM;
    }
    memcpy(*out, p, n);
    *len = n;
    return 0;
}

static int get_str_array(struct dec *d, const msgpack_object *o, const char *what,
                         char ***out, size_t *n)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return bad(d, "field '%s' must be an array of strings", what);
    *out = calloc(o->via.array.size + 1, sizeof(char *));
    if (*out == NULL) {
        d->nomem = 1;
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s[%u]", what, i);
        int r = get_str(d, &o->via.array.ptr[i], name, &(*out)[i]);
        if (r < 0)
            return r;
        (*n)++;
    }
    return 0;
}

static int env_key_ok(const char *k)
{
    if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_'))
        return 0;
    return charset_ok(k, 255, "_");
}

/* A map of environment names to strings: `env`, and `secrets` (whose
 * values name the operator's secrets). */
static int decode_env_map(struct dec *d, const msgpack_object *o, const char *what,
                          struct kiln_kv **out, size_t *n)
{
    char kwhat[32], vwhat[32];
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(d, "field '%s' must be a map of strings to strings", what);
    if (strcmp(what, "secrets") == 0 && o->via.map.size > KILN_JOB_SECRETS_MAX)
        return bad(d, "field 'secrets' has %u entries: at most %d", o->via.map.size,
                   KILN_JOB_SECRETS_MAX);
    *out = calloc(o->via.map.size + 1, sizeof(**out));
    if (*out == NULL)
        return d->nomem = 1, -ENOMEM;
    snprintf(kwhat, sizeof(kwhat), "%s key", what);
    snprintf(vwhat, sizeof(vwhat), "%s value", what);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        struct kiln_kv *kv = &(*out)[i];
        char *k = NULL, *v = NULL;
        int r = get_str(d, &o->via.map.ptr[i].key, kwhat, &k);
        if (r == 0)
            r = get_str(d, &o->via.map.ptr[i].val, vwhat, &v);
        kv->key = k;
        kv->value = v;
        (*n)++;
        if (r < 0)
            return r;
        if (!env_key_ok(k))
            return bad(d, "%s '%.64s' must match [A-Za-z_][A-Za-z0-9_]*", kwhat, k);
        if (strcmp(what, "secrets") == 0 && !kiln_job_valid_secret(v))
            return bad(d, "secrets.%.64s: '%.64s' is not a secret's name (1-64 of [A-Za-z0-9_.-])", k, v);
    }
    return 0;
}

/* A path under /work: relative, no empty, "." or ".." parts. */
static int path_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > KILN_JOB_PATH_MAX || p[0] == '/')
        return 0;
    const char *s = p;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 || len > 255 || (len == 1 && s[0] == '.') ||
            (len == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        if (e == NULL)
            return 1;
        s = e + 1;
    }
}

static int decode_files(struct dec *d, const msgpack_object *o, struct kiln_job *job)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(d, "field 'files' must be a map of paths to bin");
    if (o->via.map.size > KILN_JOB_FILES_MAX)
        return bad(d, "field 'files' has %u entries, over the limit of %d",
                   o->via.map.size, KILN_JOB_FILES_MAX);
    job->files = calloc(o->via.map.size + 1, sizeof(*job->files));
    if (job->files == NULL)
        return d->nomem = 1, -ENOMEM;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        struct kiln_file *f = &job->files[i];
        job->nfiles++;
        int r = get_str(d, &o->via.map.ptr[i].key, "files key", &f->path);
        if (r < 0)
            return r;
        if (!path_ok(f->path))
            return bad(d, "file path '%.128s' must be relative, without '..', '.' or empty parts",
                       f->path);
        for (size_t j = 0; j < i; j++)
            if (strcmp(job->files[j].path, f->path) == 0)
                return bad(d, "file path '%.128s' appears twice", f->path);
        r = get_bytes(d, &o->via.map.ptr[i].val, "files value", &f->data, &f->len);
        if (r < 0)
            return r;
    }
    return 0;
}

static int decode_limits(struct dec *d, const msgpack_object *o, const char *what, struct kiln_limits *l)
{
    static const struct {
        const char *key;
        size_t off;
        int64_t min;
    } keys[] = {
        {"timeout_ms", offsetof(struct kiln_limits, timeout_ms), 1},
        {"cpu_ms", offsetof(struct kiln_limits, cpu_ms), 1},
        {"memory_mb", offsetof(struct kiln_limits, memory_mb), 1},
        {"pids", offsetof(struct kiln_limits, pids), 1},
        {"output_bytes", offsetof(struct kiln_limits, output_bytes), 0},
        {"file_bytes", offsetof(struct kiln_limits, file_bytes), 0},
        {"collect_bytes", offsetof(struct kiln_limits, collect_bytes), 0},
    };
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(d, "field '%s' must be a map", what);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const msgpack_object *v = kiln_mp_get(o, keys[i].key);
        int64_t *dst = (int64_t *)((char *)l + keys[i].off);
        if (v == NULL || v->type == MSGPACK_OBJECT_NIL)
            continue;
        if (kiln_mp_int(v, keys[i].min, INT64_MAX / 2, dst) < 0)
            return bad(d, "field '%s.%s' must be an integer >= %lld", what, keys[i].key,
                       (long long)keys[i].min);
    }
    return 0;
}

/* `collect`: 1-100 patterns under /work, each relative, without a ".."
 * or empty part, and at most two "**" parts (matching stays cheap). */
static int decode_collect(struct dec *d, const msgpack_object *o, struct kiln_job *job)
{
    int r = get_str_array(d, o, "collect", &job->collect, &job->ncollect);
    if (r < 0)
        return r;
    if (job->ncollect < 1 || job->ncollect > KILN_JOB_COLLECT_MAX)
        return bad(d, "field 'collect' must hold 1-%d patterns", KILN_JOB_COLLECT_MAX);
    for (size_t i = 0; i < job->ncollect; i++) {
        const char *p = job->collect[i];
        int stars = 0;
        if (strlen(p) == 0 || strlen(p) > KILN_JOB_PATH_MAX || p[0] == '/')
            return bad(d, "collect[%zu] must be a relative path pattern of 1-%d bytes", i, KILN_JOB_PATH_MAX);
        for (const char *part = p; part != NULL; part = strchr(part, '/') ? strchr(part, '/') + 1 : NULL) {
            size_t n = strcspn(part, "/");
            if (n == 0 || (n == 2 && strncmp(part, "..", 2) == 0) || n > 255)
                return bad(d, "collect[%zu] '%.64s': no empty or '..' parts, none over 255 bytes", i, p);
            stars += n == 2 && strncmp(part, "**", 2) == 0;
        }
        if (stars > 2)
            return bad(d, "collect[%zu] '%.64s': at most two '**' parts", i, p);
    }
    return 0;
}

static int decode_net(struct dec *d, const msgpack_object *o, struct kiln_job *job)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(d, "field 'net' must be a map");
    job->has_net = 1;
    const msgpack_object *allow = kiln_mp_get(o, "allow");
    if (allow == NULL || allow->type == MSGPACK_OBJECT_NIL)
        return 0;
    return get_str_array(d, allow, "net.allow", &job->net_allow, &job->nnet);
}

static const msgpack_object *get_opt(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = kiln_mp_get(map, key);
    return v != NULL && v->type != MSGPACK_OBJECT_NIL ? v : NULL;
}

/* A case's `expect`: {stdout?, exit?}. */
static int decode_expect(struct dec *d, const msgpack_object *o, unsigned i, struct kiln_run_input *in)
{
    const msgpack_object *v;
    char name[48];
    int64_t code;
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(d, "field 'tests[%u].expect' must be a map", i);
    snprintf(name, sizeof(name), "tests[%u].expect.stdout", i);
    if ((v = get_opt(o, "stdout")) != NULL) {
        int r = get_bytes(d, v, name, &in->expect_stdout, &in->expect_len);
        if (r < 0)
            return r;
    }
    if ((v = get_opt(o, "exit")) != NULL) {
        if (kiln_mp_int(v, 0, 255, &code) < 0)
            return bad(d, "field 'tests[%u].expect.exit' must be an integer 0-255", i);
        in->expect_exit = (int)code;
    }
    return 0;
}

/* `runs` (inputs) or `tests` (cases: inputs with what they must give). */
static int decode_runs(struct dec *d, const msgpack_object *o, const char *key, struct kiln_job *job)
{
    int tests = strcmp(key, "tests") == 0;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return bad(d, "field '%s' must be an array of maps", key);
    if (o->via.array.size == 0 || o->via.array.size > KILN_JOB_RUNS_MAX)
        return bad(d, "field '%s' must hold 1 to %d %s", key, KILN_JOB_RUNS_MAX,
                   tests ? "cases" : "inputs");
    job->runs = calloc(o->via.array.size, sizeof(*job->runs));
    if (job->runs == NULL)
        return d->nomem = 1, -ENOMEM;
    job->tests = tests;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *run = &o->via.array.ptr[i], *v;
        struct kiln_run_input *in = &job->runs[i];
        char name[48];
        int r;
        job->nruns++;
        in->limits = (struct kiln_limits){-1, -1, -1, -1, -1, -1, -1};
        if (run->type != MSGPACK_OBJECT_MAP)
            return bad(d, "field '%s[%u]' must be a map", key, i);
        snprintf(name, sizeof(name), "%s[%u].stdin", key, i);
        if ((v = get_opt(run, "stdin")) != NULL &&
            (r = get_bytes(d, v, name, &in->stdin_data, &in->stdin_len)) < 0)
            return r;
        snprintf(name, sizeof(name), "%s[%u].args", key, i);
        if ((v = get_opt(run, "args")) != NULL) {
            in->has_args = 1;
            if ((r = get_str_array(d, v, name, &in->args, &in->nargs)) < 0)
                return r;
        }
        if (!tests)
            continue;
        if ((v = get_opt(run, "expect")) != NULL && (r = decode_expect(d, v, i, in)) < 0)
            return r;
        snprintf(name, sizeof(name), "tests[%u].limits", i);
        if ((v = get_opt(run, "limits")) != NULL && (r = decode_limits(d, v, name, &in->limits)) < 0)
            return r;
    }
    return 0;
}

/* `compare`: "exact", "lines", "tokens" or {"float": TOL}. */
static int decode_compare(struct dec *d, const msgpack_object *o, struct kiln_job *job)
{
    static const char *names[] = {"lines", "exact", "tokens"};
    const msgpack_object *tol;
    for (int i = 0; i < 3; i++)
        if (kiln_mp_streq(o, names[i])) {
            job->compare = (enum kiln_compare)i;
            return 0;
        }
    if (o->type == MSGPACK_OBJECT_MAP && o->via.map.size == 1 && (tol = kiln_mp_get(o, "float")) != NULL) {
        double t = tol->type == MSGPACK_OBJECT_FLOAT64 || tol->type == MSGPACK_OBJECT_FLOAT32 ? tol->via.f64
                 : tol->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double)tol->via.u64 : -1;
        if (t >= 0 && t < 1e300) {
            job->compare = KILN_COMPARE_FLOAT;
            job->tolerance = t;
            return 0;
        }
    }
    return bad(d, "field 'compare' must be \"exact\", \"lines\", \"tokens\" or {\"float\": TOL >= 0}");
}

static int get_bool(struct dec *d, const msgpack_object *m, const char *key, int *out)
{
    const msgpack_object *v = get_opt(m, key);
    if (v == NULL)
        return 0;
    if (v->type != MSGPACK_OBJECT_BOOLEAN)
        return bad(d, "field '%s' must be true or false", key);
    *out = v->via.boolean;
    return 0;
}

static int decode_tests(struct dec *d, const msgpack_object *m, struct kiln_job *job)
{
    const msgpack_object *runs = get_opt(m, "runs"), *tests = get_opt(m, "tests"), *o;
    int r;
    if (runs != NULL && tests != NULL)
        return bad(d, "a job has 'runs' or 'tests', not both");
    if (runs != NULL || tests != NULL) {
        r = decode_runs(d, runs ? runs : tests, runs ? "runs" : "tests", job);
        if (r < 0)
            return r;
    }
    if ((o = get_opt(m, "compare")) != NULL && (r = decode_compare(d, o, job)) < 0)
        return r;
    if ((r = get_bool(d, m, "stop_on_fail", &job->stop_on_fail)) < 0 ||
        (r = get_bool(d, m, "tests_output", &job->tests_output)) < 0 ||
        (r = get_bool(d, m, "expect_end", &job->expect_end)) < 0)
        return r;
    return 0;
}

/* Fields read even from a job that is otherwise bad, to route its frame. */
static void decode_route(const msgpack_object *map, struct kiln_job *job)
{
    const msgpack_object *o;
    char *s;
    if ((o = kiln_mp_get(map, "id")) != NULL && o->type == MSGPACK_OBJECT_STR &&
        (s = kiln_mp_strdup(o)) != NULL) {
        if (kiln_job_valid_id(s))
            job->id = s;
        else
            free(s);
    }
    if ((o = kiln_mp_get(map, "reply_to")) != NULL && o->type == MSGPACK_OBJECT_STR &&
        (s = kiln_mp_strdup(o)) != NULL) {
        if (kiln_job_valid_name(s))
            job->reply_to = s;
        else
            free(s);
    }
    if ((o = kiln_mp_get(map, "meta")) != NULL) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_object(&pk, *o);
        size_t n = sb.size; /* release() zeroes it */
        job->meta = (unsigned char *)msgpack_sbuffer_release(&sb);
        job->meta_len = job->meta ? n : 0;
    }
}

/* `session.expose`: [PORT, ...], 1-65535, at most KILN_EXPOSE_MAX of
 * them (a port named twice counts once). */
static int decode_expose(struct dec *d, const msgpack_object *v, struct kiln_job *job)
{
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return bad(d, "field 'session.expose' must be an array of ports");
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        int64_t port;
        if (kiln_mp_int(&v->via.array.ptr[i], 1, 65535, &port) < 0)
            return bad(d, "field 'session.expose' holds ports, integers 1-65535");
        size_t k = 0;
        while (k < job->nexpose && job->expose[k] != port)
            k++;
        if (k < job->nexpose)
            continue;
        if (job->nexpose == KILN_EXPOSE_MAX)
            return bad(d, "field 'session.expose': at most %d ports", KILN_EXPOSE_MAX);
        job->expose[job->nexpose++] = (uint16_t)port;
    }
    return 0;
}

/* `session`: {id, idle_ms?, close?, expose?}; a session's job is one cell
 * of code, so none of what a cell cannot take. */
static int decode_session(struct dec *d, const msgpack_object *o, struct kiln_job *job)
{
    const msgpack_object *v;
    int r;
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(d, "field 'session' must be a map {id, idle_ms?, close?}");
    if ((v = kiln_mp_get(o, "id")) == NULL || v->type != MSGPACK_OBJECT_STR ||
        (r = get_str(d, v, "session.id", &job->session)) < 0 || !kiln_job_valid_id(job->session))
        return d->nomem ? -ENOMEM : bad(d, "field 'session.id' must be 1-%d characters of [A-Za-z0-9._:-]", KILN_JOB_ID_MAX);
    if ((v = get_opt(o, "idle_ms")) != NULL && kiln_mp_int(v, 1000, INT32_MAX, &job->session_idle_ms) < 0)
        return bad(d, "field 'session.idle_ms' must be an integer of at least 1000");
    if ((r = get_bool(d, o, "close", &job->session_close)) < 0)
        return r;
    if ((v = get_opt(o, "expose")) != NULL && (r = decode_expose(d, v, job)) < 0)
        return r;
    if (job->nruns > 0)
        return bad(d, "a session's job runs its code once: no 'runs' or 'tests'");
    if (job->stdin_data != NULL || job->nargs > 0)
        return bad(d, "a session's job is code for its interpreter: no 'stdin' or 'args'");
    if (job->has_net || job->nsecrets > 0)
        return bad(d, "sessions take no 'net' or 'secrets' (not yet)");
    if (job->expect_end)
        return bad(d, "a session's cell has no end of its own to check: no 'expect_end'");
    return 0;
}

static int decode_map(struct dec *d, const msgpack_object *m, struct kiln_job *job)
{
    const msgpack_object *o;
    int r;

    if ((o = kiln_mp_get(m, "v")) != NULL && kiln_mp_int(o, 1, 1, &job->v) < 0)
        return bad(d, "unsupported schema version (field 'v'); this worker reads v1");
    if ((o = kiln_mp_get(m, "id")) == NULL)
        return bad(d, "missing required field 'id'");
    if (o->type != MSGPACK_OBJECT_STR)
        return bad(d, "field 'id' must be a string");
    if (job->id == NULL)
        return bad(d, "field 'id' must be 1-%d characters of [A-Za-z0-9._:-]", KILN_JOB_ID_MAX);
    if ((o = kiln_mp_get(m, "reply_to")) != NULL && job->reply_to == NULL)
        return bad(d, "field 'reply_to' must be 1-%d characters of [A-Za-z0-9._:-]",
                   KILN_JOB_NAME_MAX);
    if ((o = kiln_mp_get(m, "plugin")) == NULL)
        return bad(d, "missing required field 'plugin'");
    if ((r = get_str(d, o, "plugin", &job->plugin)) < 0)
        return r;
    if ((o = kiln_mp_get(m, "image")) != NULL && o->type != MSGPACK_OBJECT_NIL) {
        if ((r = get_str(d, o, "image", &job->image)) < 0)
            return r;
        if (!kiln_job_valid_image(job->image))
            return bad(d, "field 'image' must be an image's name: [a-z0-9][a-z0-9._-]{0,62}");
    }
    if ((o = kiln_mp_get(m, "code")) == NULL)
        return bad(d, "missing required field 'code'");
    if ((r = get_str(d, o, "code", &job->code)) < 0)
        return r;
    job->code_len = strlen(job->code);
    if ((o = kiln_mp_get(m, "args")) != NULL && o->type != MSGPACK_OBJECT_NIL &&
        (r = get_str_array(d, o, "args", &job->args, &job->nargs)) < 0)
        return r;
    if ((o = kiln_mp_get(m, "stdin")) != NULL && o->type != MSGPACK_OBJECT_NIL &&
        (r = get_bytes(d, o, "stdin", &job->stdin_data, &job->stdin_len)) < 0)
        return r;
    if ((o = kiln_mp_get(m, "env")) != NULL && o->type != MSGPACK_OBJECT_NIL &&
        (r = decode_env_map(d, o, "env", &job->env, &job->nenv)) < 0)
        return r;
    if ((o = kiln_mp_get(m, "secrets")) != NULL && o->type != MSGPACK_OBJECT_NIL) {
        if ((r = decode_env_map(d, o, "secrets", &job->secrets, &job->nsecrets)) < 0)
            return r;
        for (size_t i = 0; i < job->nsecrets; i++)
            for (size_t k = 0; k < job->nenv; k++)
                if (strcmp(job->secrets[i].key, job->env[k].key) == 0)
                    return bad(d, "'%.64s' is in both env and secrets", job->env[k].key);
    }
    if ((o = kiln_mp_get(m, "files")) != NULL && o->type != MSGPACK_OBJECT_NIL &&
        (r = decode_files(d, o, job)) < 0)
        return r;
    if ((o = kiln_mp_get(m, "collect")) != NULL && o->type != MSGPACK_OBJECT_NIL &&
        (r = decode_collect(d, o, job)) < 0)
        return r;
    if ((o = kiln_mp_get(m, "limits")) != NULL && o->type != MSGPACK_OBJECT_NIL &&
        (r = decode_limits(d, o, "limits", &job->limits)) < 0)
        return r;
    if ((o = kiln_mp_get(m, "net")) != NULL && o->type != MSGPACK_OBJECT_NIL &&
        (r = decode_net(d, o, job)) < 0)
        return r;
    if ((o = kiln_mp_get(m, "deadline")) != NULL && o->type != MSGPACK_OBJECT_NIL &&
        kiln_mp_int(o, 0, INT64_MAX, &job->deadline) < 0)
        return bad(d, "field 'deadline' must be a non-negative integer (unix ms)");
    if ((r = decode_tests(d, m, job)) < 0)
        return r;
    if ((o = get_opt(m, "session")) != NULL && (r = decode_session(d, o, job)) < 0)
        return r;
    return 0;
}

int kiln_job_decode(const void *buf, size_t len, struct kiln_job **out,
                    char *err, size_t errlen)
{
    struct dec d = {err, errlen, 0};
    msgpack_unpacked u;
    size_t off = 0;
    int r;

    struct kiln_job *job = calloc(1, sizeof(*job));
    *out = job;
    if (job == NULL)
        return -ENOMEM;
    job->v = 1;
    job->deadline = -1;
    job->session_idle_ms = -1;
    job->limits = (struct kiln_limits){-1, -1, -1, -1, -1, -1, -1};
    err[0] = '\0';

    msgpack_unpacked_init(&u);
    switch (kiln_mp_precheck(buf, len)) {
    case 0:
        break;
    case -ENOTEMPTY:
        break; /* msgpack-c finds the object's end and says how much follows */
    case -E2BIG:
        job->not_msgpack = 1;
        r = bad(&d, "job is not valid msgpack (a container larger than the job)");
        goto out;
    default:
        job->not_msgpack = 1;
        r = bad(&d, "job is not valid msgpack (malformed or truncated)");
        goto out;
    }
    switch (msgpack_unpack_next(&u, buf, len, &off)) {
    case MSGPACK_UNPACK_SUCCESS:
        break;
    case MSGPACK_UNPACK_CONTINUE:
        job->not_msgpack = 1;
        r = bad(&d, "job is not valid msgpack (truncated)");
        goto out;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        job->not_msgpack = 1;
        r = bad(&d, "job is not valid msgpack (nested too deep)");
        goto out;
    default:
        job->not_msgpack = 1;
        r = bad(&d, "job is not valid msgpack");
        goto out;
    }
    if (off != len) {
        job->not_msgpack = 1;
        r = bad(&d, "job has %zu trailing bytes after the msgpack map", len - off);
        goto out;
    }
    if (u.data.type != MSGPACK_OBJECT_MAP) {
        r = bad(&d, "job must be a msgpack map");
        goto out;
    }
    decode_route(&u.data, job);
    r = decode_map(&d, &u.data, job);
out:
    msgpack_unpacked_destroy(&u);
    if (d.nomem) {
        kiln_job_free(job);
        *out = NULL;
        return -ENOMEM;
    }
    return r;
}
