/* Frame encoding: kiln's encoder must write the golden frames of
 * schemas/vectors/frame byte for byte. */
#include "test.h"

#include <jansson.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <string.h>

#include "wire/frame.h"
#include "wire/proto.h"

static unsigned char *golden(const char *name, const char *ext, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/frame/%s%s", KILN_VECTORS, name, ext);
    return read_file(path, len);
}

static json_t *fields(const char *name)
{
    size_t len;
    unsigned char *text = golden(name, ".json", &len);
    json_error_t e;
    json_t *j = json_loads((char *)text, 0, &e);
    free(text);
    assert_non_null(j);
    return j;
}

static void assert_golden(const char *name, const msgpack_sbuffer *sb)
{
    size_t len;
    unsigned char *want = golden(name, ".msgpack", &len);
    if (sb->size != len || memcmp(sb->data, want, len) != 0)
        fail_msg("%s: encoded %zu bytes, golden has %zu (or they differ)", name, sb->size, len);
    free(want);
}

static void test_output_frames(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    kiln_frame_output(&sb, "j1", 0, 1, 1, "hello\n", 6, -1);
    assert_golden("stdout", &sb);
    msgpack_sbuffer_destroy(&sb);
    kiln_frame_output(&sb, "j1", 1, 2, 2, "\xff\x00", 2, -1);
    assert_golden("stderr_binary", &sb);
    msgpack_sbuffer_destroy(&sb);
    kiln_frame_output(&sb, "j3", 4, 1, 1, "x", 1, 2);
    assert_golden("stdout_run", &sb);
    msgpack_sbuffer_destroy(&sb);
}

static void test_file_frames(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    struct kiln_file_chunk c = {"out/a.bin", 300000, 0644, 262144, "\x00tail", 5, 1, 1, 1};
    kiln_frame_file(&sb, "f1", 3, 1, &c);
    assert_golden("file", &sb);
    msgpack_sbuffer_destroy(&sb);
    c = (struct kiln_file_chunk){"r.json", 2, 0600, 0, "{}", 2, 1, 0, -1};
    kiln_frame_file(&sb, "f1", 2, 1, &c);
    assert_golden("file_first", &sb);
    msgpack_sbuffer_destroy(&sb);
    /* an exit frame with the summary `collect` gives it, packed as is */
    msgpack_sbuffer sum;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sum);
    msgpack_packer_init(&pk, &sum, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    static const char *const counts[] = {"matched", "sent", "truncated", "skipped"};
    static const int values[] = {3, 1, 1, 2};
    for (int i = 0; i < 4; i++) {
        kiln_mp_str(&pk, counts[i]);
        msgpack_pack_int64(&pk, values[i]);
    }
    kiln_mp_str(&pk, "walk_cut");
    msgpack_pack_false(&pk);
    kiln_mp_str(&pk, "skipped_files");
    msgpack_pack_array(&pk, 2);
    static const char *const sk[2][2] = {{"out/l", "symlink"}, {"out/p", "not a regular file"}};
    for (int i = 0; i < 2; i++) {
        msgpack_pack_map(&pk, 2);
        kiln_mp_str(&pk, "path");
        kiln_mp_str(&pk, sk[i][0]);
        kiln_mp_str(&pk, "why");
        kiln_mp_str(&pk, sk[i][1]);
    }
    struct kiln_exit e = {.status = KILN_STATUS_TIMEOUT, .signal = 9, .wall_ms = 1500, .cpu_ms = 20,
                          .max_rss_kb = 100, .attempt = 1, .worker = "w", .run = -1, .runs_ok = -1,
                          .collect = (const unsigned char *)sum.data, .collect_len = sum.size};
    kiln_frame_exit(&sb, "f1", 4, &e);
    assert_golden("exit_collect", &sb);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&sum);
}

static void test_session_frames(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    kiln_frame_result(&sb, "s1", 1, 1, "[1, 2]", 6);
    assert_golden("result", &sb);
    msgpack_sbuffer_destroy(&sb);
    struct kiln_exit e = {.status = KILN_STATUS_OK, .has_code = 1, .wall_ms = 2, .cpu_ms = 1,
                          .max_rss_kb = 9000, .attempt = 1, .worker = "w", .run = -1, .runs_ok = -1,
                          .session = "sess-1", .session_seq = 3};
    kiln_frame_exit(&sb, "s1", 2, &e);
    assert_golden("exit_session", &sb);
    msgpack_sbuffer_destroy(&sb);
    e = (struct kiln_exit){.status = KILN_STATUS_SESSION_LOST, .attempt = 1, .worker = "w", .run = -1,
                           .runs_ok = -1, .reason = "the session was closed (a job with close: true)",
                           .session = "sess-1"};
    kiln_frame_exit(&sb, "s2", 0, &e);
    assert_golden("exit_session_lost", &sb);
    msgpack_sbuffer_destroy(&sb);
}

static enum kiln_verdict verdict_of(const char *name)
{
    for (int v = 0; v < KILN_VERDICT_COUNT; v++)
        if (name != NULL && strcmp(kiln_verdict_name((enum kiln_verdict)v), name) == 0)
            return (enum kiln_verdict)v;
    fail_msg("no verdict %s", name ? name : "(null)");
    return KILN_VERDICT_COUNT;
}

static enum kiln_status status_of(const char *name)
{
    for (int s = 0; s < KILN_STATUS_COUNT; s++)
        if (name != NULL && strcmp(kiln_status_name((enum kiln_status)s), name) == 0)
            return (enum kiln_status)s;
    fail_msg("no status %s", name ? name : "(null)");
    return KILN_STATUS_COUNT;
}

/* A vector's bytes ({"base64": ...}) into `out`; returns how many. */
static size_t unbase64(json_t *v, unsigned char *out, size_t cap)
{
    const char *b64 = json_string_value(json_object_get(v, "base64"));
    assert_non_null(b64);
    int n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)strlen(b64));
    assert_true(n >= 0 && (size_t)n <= cap);
    size_t len = strlen(b64);
    while (len > 0 && b64[len - 1] == '=') { /* DecodeBlock counts the padding as zeros */
        n--;
        len--;
    }
    return (size_t)n;
}

static void check_case(const char *name)
{
    json_t *j = fields(name);
    json_t *code = json_object_get(j, "code"), *sig = json_object_get(j, "signal");
    json_t *reason = json_object_get(j, "reason"), *line = json_object_get(j, "line");
    json_t *err = json_object_get(j, "stderr");
    unsigned char want[256], got[256], errb[256];
    struct kiln_case_result c = {
        .index = (int)json_integer_value(json_object_get(j, "case")),
        .verdict = verdict_of(json_string_value(json_object_get(j, "verdict"))),
        .has_code = json_is_integer(code),
        .code = (int)json_integer_value(code),
        .signal = (int)json_integer_value(sig),
        .wall_ms = json_integer_value(json_object_get(j, "wall_ms")),
        .cpu_ms = json_integer_value(json_object_get(j, "cpu_ms")),
        .max_rss_kb = json_integer_value(json_object_get(j, "max_rss_kb")),
        .reason = reason ? json_string_value(reason) : NULL,
    };
    if (line) {
        c.diff_at = json_integer_value(line);
        c.expected = want;
        c.expected_len = unbase64(json_object_get(j, "expected"), want, sizeof(want));
        c.got = got;
        c.got_len = unbase64(json_object_get(j, "got"), got, sizeof(got));
    }
    if (err) {
        c.err = errb;
        c.err_len = unbase64(err, errb, sizeof(errb));
    }
    msgpack_sbuffer sb;
    kiln_frame_case(&sb, json_string_value(json_object_get(j, "id")),
                    (uint64_t)json_integer_value(json_object_get(j, "seq")),
                    (unsigned)json_integer_value(json_object_get(j, "attempt")), &c);
    assert_golden(name, &sb);
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
}

static void test_case_frames(void **state)
{
    (void)state;
    check_case("case_accepted");
    check_case("case_wrong_answer");
    check_case("case_time_limit");
}

static void check_exit(const char *name)
{
    json_t *j = fields(name);
    struct kiln_exit e = {0};
    e.run = -1;
    e.runs_ok = -1;
    json_t *code = json_object_get(j, "code"), *sig = json_object_get(j, "signal");
    json_t *id = json_object_get(j, "id"), *reason = json_object_get(j, "reason");
    const char *status = json_string_value(json_object_get(j, "status"));
    e.status = KILN_STATUS_COUNT;
    for (int s = 0; s < KILN_STATUS_COUNT; s++)
        if (status != NULL && strcmp(kiln_status_name((enum kiln_status)s), status) == 0)
            e.status = (enum kiln_status)s;
    assert_int_not_equal(e.status, KILN_STATUS_COUNT); /* a status the vector names */
    e.has_code = json_is_integer(code);
    e.code = (int)json_integer_value(code);
    e.signal = (int)json_integer_value(sig);
    e.wall_ms = json_integer_value(json_object_get(j, "wall_ms"));
    e.cpu_ms = json_integer_value(json_object_get(j, "cpu_ms"));
    e.max_rss_kb = json_integer_value(json_object_get(j, "max_rss_kb"));
    e.attempt = (unsigned)json_integer_value(json_object_get(j, "attempt"));
    e.worker = json_string_value(json_object_get(j, "worker"));
    e.reason = reason ? json_string_value(reason) : NULL;
    json_t *run = json_object_get(j, "run"), *runs = json_object_get(j, "runs");
    if (run)
        e.run = (int)json_integer_value(run);
    if (runs) {
        e.runs_total = (int)json_integer_value(runs);
        e.runs_ok = (int)json_integer_value(json_object_get(j, "runs_ok"));
    }
    json_t *verdict = json_object_get(j, "verdict"), *build = json_object_get(j, "build");
    if (verdict) {
        e.has_verdict = 1;
        e.verdict = verdict_of(json_string_value(verdict));
        e.passed = (int)json_integer_value(json_object_get(j, "passed"));
        e.total = (int)json_integer_value(json_object_get(j, "total"));
    }
    struct kiln_build_info bi;
    unsigned char out[256];
    if (build) {
        bi.status = status_of(json_string_value(json_object_get(build, "status")));
        bi.wall_ms = json_integer_value(json_object_get(build, "wall_ms"));
        bi.cpu_ms = json_integer_value(json_object_get(build, "cpu_ms"));
        bi.output = out;
        bi.output_len = unbase64(json_object_get(build, "output"), out, sizeof(out));
        e.build = &bi;
    }

    /* meta is echoed as the job's packed bytes: take them from the golden */
    size_t glen;
    unsigned char *g = golden(name, ".msgpack", &glen);
    msgpack_unpacked u;
    msgpack_sbuffer meta;
    msgpack_packer pk;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    msgpack_sbuffer_init(&meta);
    assert_int_equal(msgpack_unpack_next(&u, (char *)g, glen, &off), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *m = kiln_mp_get(&u.data, "meta");
    if (m != NULL) {
        msgpack_packer_init(&pk, &meta, msgpack_sbuffer_write);
        msgpack_pack_object(&pk, *m);
        e.meta = (unsigned char *)meta.data;
        e.meta_len = meta.size;
    }

    msgpack_sbuffer sb;
    kiln_frame_exit(&sb, json_is_string(id) ? json_string_value(id) : NULL,
                    (uint64_t)json_integer_value(json_object_get(j, "seq")), &e);
    assert_golden(name, &sb);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&meta);
    msgpack_unpacked_destroy(&u);
    free(g);
    json_decref(j);
}

static void test_exit_frames(void **state)
{
    (void)state;
    check_exit("exit_ok");
    check_exit("exit_killed");
    check_exit("exit_rejected");
    check_exit("exit_meta");
    check_exit("exit_run");
    check_exit("exit_summary");
    check_exit("exit_tests");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_frames),
        cmocka_unit_test(test_exit_frames),
        cmocka_unit_test(test_session_frames),
        cmocka_unit_test(test_file_frames),
        cmocka_unit_test(test_case_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
