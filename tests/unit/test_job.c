/* Job decoding: every golden vector of schemas/vectors/job, and the routing
 * fields a rejected job still yields. */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <string.h>

#include "wire/job.h"
#include "wire/proto.h"

static char *path_of(const char *sub, const char *name, const char *ext)
{
    static char buf[1024];
    if (snprintf(buf, sizeof(buf), "%s/job/%s/%s%s", KILN_VECTORS, sub, name, ext) >= (int)sizeof(buf))
        fail_msg("path too long");
    return buf;
}

/* Names (without extension) of the *.msgpack vectors in job/<sub>. */
static int list(const char *sub, char names[][128], int max)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/job/%s", KILN_VECTORS, sub);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        char *dot = strrchr(e->d_name, '.');
        if (dot && strcmp(dot, ".msgpack") == 0)
            snprintf(names[n++], 128, "%.*s", (int)(dot - e->d_name), e->d_name);
    }
    closedir(d);
    return n;
}

/* A msgpack object as JSON (what the vectors' .json files hold), or NULL
 * for a type JSON has no form for. */
static json_t *to_json(const msgpack_object *o)
{
    json_t *j = NULL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
        j = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(j, to_json(&o->via.array.ptr[i]));
        return j;
    case MSGPACK_OBJECT_MAP:
        j = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            assert_int_equal(k->type, MSGPACK_OBJECT_STR);
            json_object_setn_new(j, k->via.str.ptr, k->via.str.size, to_json(&o->via.map.ptr[i].val));
        }
        return j;
    default:
        fail_msg("meta holds a msgpack type the vectors do not use (%d)", o->type);
    }
    return NULL;
}

/* The job's re-packed `meta` is exactly one msgpack value equal to `want`. */
static void assert_meta(const char *name, const struct kiln_job *job, json_t *want)
{
    if (want == NULL) {
        assert_null(job->meta);
        assert_int_equal(job->meta_len, 0);
        return;
    }
    assert_non_null(job->meta);
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, (const char *)job->meta, job->meta_len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, job->meta_len);
    json_t *got = to_json(&u.data);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        fail_msg("%s: meta is %s, want %s", name, g, w);
    }
    json_decref(got);
    msgpack_unpacked_destroy(&u);
}

/* Compare bytes with a JSON string or {"base64": ...}. */
static void assert_bytes(json_t *want, const void *got, size_t len)
{
    if (json_is_string(want)) {
        assert_int_equal(json_string_length(want), len);
        assert_memory_equal(json_string_value(want), got, len);
        return;
    }
    const char *b64 = json_string_value(json_object_get(want, "base64"));
    assert_non_null(b64);
    unsigned char out[4096];
    int n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)strlen(b64));
    size_t pad = strlen(b64) >= 2 ? (b64[strlen(b64) - 1] == '=') + (b64[strlen(b64) - 2] == '=') : 0;
    assert_int_equal((size_t)n - pad, len);
    assert_memory_equal(out, got, len);
}

/* What a job with `tests` adds: each case's expectations and limits, and
 * how its output is compared. */
static void check_tests(const struct kiln_job *job, json_t *want)
{
    json_t *tests = json_object_get(want, "tests"), *cmp = json_object_get(want, "compare");
    if (json_is_string(cmp))
        assert_int_equal(job->compare, strcmp(json_string_value(cmp), "tokens") == 0 ? KILN_COMPARE_TOKENS
                                       : strcmp(json_string_value(cmp), "exact") == 0 ? KILN_COMPARE_EXACT
                                       : KILN_COMPARE_LINES);
    else if (json_is_object(cmp)) {
        assert_int_equal(job->compare, KILN_COMPARE_FLOAT);
        assert_true(job->tolerance == json_real_value(json_object_get(cmp, "float")));
    } else
        assert_int_equal(job->compare, KILN_COMPARE_LINES);
    assert_int_equal(job->stop_on_fail, json_is_true(json_object_get(want, "stop_on_fail")));
    assert_int_equal(job->tests_output, json_is_true(json_object_get(want, "tests_output")));
    assert_int_equal(job->expect_end, json_is_true(json_object_get(want, "expect_end")));
    for (size_t i = 0; tests != NULL && i < job->nruns; i++) {
        const struct kiln_run_input *in = &job->runs[i];
        json_t *t = json_array_get(tests, i), *ex = json_object_get(t, "expect"), *lim = json_object_get(t, "limits");
        json_t *out = ex ? json_object_get(ex, "stdout") : NULL, *code = ex ? json_object_get(ex, "exit") : NULL;
        if (out)
            assert_bytes(out, in->expect_stdout, in->expect_len);
        else
            assert_null(in->expect_stdout);
        assert_int_equal(in->expect_exit, code ? json_integer_value(code) : 0);
        static const char *keys[] = {"timeout_ms", "cpu_ms", "memory_mb", "pids", "output_bytes", "file_bytes"};
        const int64_t got[] = {in->limits.timeout_ms, in->limits.cpu_ms, in->limits.memory_mb,
                               in->limits.pids, in->limits.output_bytes, in->limits.file_bytes};
        for (size_t k = 0; k < 6; k++) {
            json_t *v = lim ? json_object_get(lim, keys[k]) : NULL;
            assert_int_equal(got[k], v ? json_integer_value(v) : -1);
        }
    }
}

static void check_valid(const char *name)
{
    size_t len, jlen;
    char err[256];
    struct kiln_job *job;
    unsigned char *buf = read_file(path_of("valid", name, ".msgpack"), &len);
    unsigned char *text = read_file(path_of("valid", name, ".json"), &jlen);
    json_error_t jerr;
    json_t *want = json_loads((char *)text, 0, &jerr);
    assert_non_null(want);

    int r = kiln_job_decode(buf, len, &job, err, sizeof(err));
    if (r != 0)
        fail_msg("%s: rejected: %s", name, err);
    assert_string_equal(job->id, json_string_value(json_object_get(want, "id")));
    assert_string_equal(job->plugin, json_string_value(json_object_get(want, "plugin")));
    assert_string_equal(job->code, json_string_value(json_object_get(want, "code")));

    json_t *args = json_object_get(want, "args");
    assert_int_equal(job->nargs, json_is_array(args) ? json_array_size(args) : 0);
    for (size_t i = 0; i < job->nargs; i++)
        assert_string_equal(job->args[i], json_string_value(json_array_get(args, i)));

    json_t *in = json_object_get(want, "stdin");
    if (in != NULL && !json_is_null(in))
        assert_bytes(in, job->stdin_data, job->stdin_len);
    else
        assert_null(job->stdin_data);

    json_t *env = json_object_get(want, "env");
    assert_int_equal(job->nenv, json_is_object(env) ? json_object_size(env) : 0);
    for (size_t i = 0; i < job->nenv; i++)
        assert_string_equal(job->env[i].value,
                            json_string_value(json_object_get(env, job->env[i].key)));

    json_t *secrets = json_object_get(want, "secrets");
    assert_int_equal(job->nsecrets, json_is_object(secrets) ? json_object_size(secrets) : 0);
    for (size_t i = 0; i < job->nsecrets; i++)
        assert_string_equal(job->secrets[i].value,
                            json_string_value(json_object_get(secrets, job->secrets[i].key)));
    json_t *files = json_object_get(want, "files");
    assert_int_equal(job->nfiles, json_is_object(files) ? json_object_size(files) : 0);
    for (size_t i = 0; i < job->nfiles; i++)
        assert_bytes(json_object_get(files, job->files[i].path), job->files[i].data, job->files[i].len);

    json_t *limits = json_object_get(want, "limits");
    const char *keys[] = {"timeout_ms", "cpu_ms", "memory_mb", "pids", "output_bytes", "file_bytes",
                          "collect_bytes"};
    int64_t got[] = {job->limits.timeout_ms, job->limits.cpu_ms, job->limits.memory_mb,
                     job->limits.pids, job->limits.output_bytes, job->limits.file_bytes,
                     job->limits.collect_bytes};
    for (int i = 0; i < 7; i++) {
        json_t *v = json_is_object(limits) ? json_object_get(limits, keys[i]) : NULL;
        assert_int_equal(got[i], v ? json_integer_value(v) : -1);
    }

    json_t *collect = json_object_get(want, "collect");
    assert_int_equal(job->ncollect, json_is_array(collect) ? json_array_size(collect) : 0);
    for (size_t i = 0; i < job->ncollect; i++)
        assert_string_equal(job->collect[i], json_string_value(json_array_get(collect, i)));

    json_t *net = json_object_get(want, "net");
    assert_int_equal(job->has_net, json_is_object(net));
    json_t *allow = json_is_object(net) ? json_object_get(net, "allow") : NULL;
    assert_int_equal(job->nnet, json_is_array(allow) ? json_array_size(allow) : 0);
    for (size_t i = 0; i < job->nnet; i++)
        assert_string_equal(job->net_allow[i], json_string_value(json_array_get(allow, i)));

    json_t *session = json_object_get(want, "session");
    if (session == NULL) {
        assert_null(job->session);
    } else {
        json_t *idle = json_object_get(session, "idle_ms");
        assert_string_equal(job->session, json_string_value(json_object_get(session, "id")));
        assert_int_equal(job->session_idle_ms, idle ? json_integer_value(idle) : -1);
        assert_int_equal(job->session_close, json_is_true(json_object_get(session, "close")));
    }

    json_t *reply = json_object_get(want, "reply_to");
    if (reply)
        assert_string_equal(job->reply_to, json_string_value(reply));
    else
        assert_null(job->reply_to);
    json_t *deadline = json_object_get(want, "deadline");
    assert_int_equal(job->deadline, deadline ? json_integer_value(deadline) : -1);
    assert_meta(name, job, json_object_get(want, "meta"));
    json_t *runs = json_object_get(want, "runs"), *tests = json_object_get(want, "tests");
    assert_int_equal(job->tests, tests != NULL);
    if (tests != NULL)
        runs = tests;
    check_tests(job, want);
    assert_int_equal(job->nruns, json_is_array(runs) ? json_array_size(runs) : 0);
    for (size_t i = 0; i < job->nruns; i++) {
        json_t *r = json_array_get(runs, i), *in = json_object_get(r, "stdin"), *a = json_object_get(r, "args");
        if (in)
            assert_bytes(in, job->runs[i].stdin_data, job->runs[i].stdin_len);
        else
            assert_null(job->runs[i].stdin_data);
        assert_int_equal(job->runs[i].has_args, a != NULL);
        assert_int_equal(job->runs[i].nargs, a ? json_array_size(a) : 0);
        for (size_t k = 0; k < job->runs[i].nargs; k++)
            assert_string_equal(job->runs[i].args[k], json_string_value(json_array_get(a, k)));
        if (a == NULL)
            assert_null(job->runs[i].args);
    }

    kiln_job_free(job);
    json_decref(want);
    free(buf);
    free(text);
}

static void test_valid_vectors(void **state)
{
    char names[64][128];
    (void)state;
    int n = list("valid", names, 64);
    assert_true(n >= 8);
    for (int i = 0; i < n; i++)
        check_valid(names[i]);
}

static void test_invalid_vectors(void **state)
{
    char names[64][128];
    (void)state;
    int n = list("invalid", names, 64);
    assert_true(n >= 30);
    for (int i = 0; i < n; i++) {
        size_t len, rlen;
        char err[256];
        struct kiln_job *job;
        unsigned char *buf = read_file(path_of("invalid", names[i], ".msgpack"), &len);
        char *want = (char *)read_file(path_of("invalid", names[i], ".reason"), &rlen);
        want[strcspn(want, "\n")] = '\0';
        int r = kiln_job_decode(buf, len, &job, err, sizeof(err));
        if (r != -EINVAL)
            fail_msg("%s: accepted, want rejection with '%s'", names[i], want);
        if (strstr(err, want) == NULL)
            fail_msg("%s: reason '%s' does not say '%s'", names[i], err, want);
        kiln_job_free(job);
        free(buf);
        free(want);
    }
}

/* A bad job still names its id and reply_to, so its rejection reaches the
 * submitter. */
static void test_rejected_job_keeps_route(void **state)
{
    /* {"id": "r1", "reply_to": "mine", "meta": 7, "plugin": 5} */
    static const unsigned char buf[] = {
        0x84, 0xa2, 'i', 'd', 0xa2, 'r', '1', 0xa8, 'r', 'e', 'p', 'l', 'y', '_', 't', 'o',
        0xa4, 'm', 'i', 'n', 'e', 0xa4, 'm', 'e', 't', 'a', 0x07,
        0xa6, 'p', 'l', 'u', 'g', 'i', 'n', 0x05};
    struct kiln_job *job;
    char err[256];
    (void)state;
    assert_int_equal(kiln_job_decode(buf, sizeof(buf), &job, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "field 'plugin' must be a string");
    assert_string_equal(job->id, "r1");
    assert_string_equal(job->reply_to, "mine");
    assert_int_equal(job->meta_len, 1);
    assert_int_equal(job->meta[0], 0x07);
    kiln_job_free(job);
}

static void test_every_truncation_is_rejected(void **state)
{
    size_t len;
    (void)state;
    unsigned char *buf = read_file(path_of("valid", "full", ".msgpack"), &len);
    for (size_t cut = 0; cut < len; cut++) {
        struct kiln_job *job;
        char err[256];
        assert_int_equal(kiln_job_decode(buf, cut, &job, err, sizeof(err)), -EINVAL);
        assert_true(err[0] != '\0');
        kiln_job_free(job);
    }
    free(buf);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(kiln_job_valid_id("a.b:c-d_9"));
    assert_false(kiln_job_valid_id("a/b"));
    assert_false(kiln_job_valid_id(""));
    assert_true(kiln_job_valid_name("kiln.results"));
    assert_false(kiln_job_valid_name("has space"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_vectors),
        cmocka_unit_test(test_invalid_vectors),
        cmocka_unit_test(test_rejected_job_keeps_route),
        cmocka_unit_test(test_every_truncation_is_rejected),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
