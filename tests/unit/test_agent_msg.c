/* The agent protocol's messages (wire/agent_msg.c): each builder must
 * write the golden message of schemas/vectors/agent (written by Python's
 * msgpack, an encoder independent of kiln's) byte for byte, and each
 * reader must read the golden message back into the fields it was built
 * from; so must the prestart envelope and the session FIFO's records
 * (schemas/vectors/beside). A message cut short, or with a field of the
 * wrong type, is refused. */
#include "test.h"

#include <errno.h>
#include <msgpack.h>
#include <string.h>

#include "wire/agent_msg.h"
#include "wire/proto.h"

#define SPAN(s) ((struct kiln_span){(s), sizeof(s) - 1, 1})

static unsigned char *golden(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s/%s.bin", KILN_VECTORS, dir, name);
    return read_file(path, len);
}

/* The builder's bytes are the golden message's. */
static void assert_golden(const char *name, msgpack_sbuffer *sb)
{
    size_t len;
    unsigned char *want = golden("agent", name, &len);
    if (sb->size != len || memcmp(sb->data, want, len) != 0)
        fail_msg("%s: built %zu bytes, the golden message has %zu (or they differ)", name, sb->size, len);
    free(want);
    msgpack_sbuffer_destroy(sb);
}

/* The golden message decoded (its map; u owned by the caller). */
static const msgpack_object *decoded(const char *name, msgpack_unpacked *u, unsigned char **bytes)
{
    size_t len;
    *bytes = golden("agent", name, &len);
    msgpack_unpacked_init(u);
    assert_true(len > KILN_PROTO_HDR);
    assert_int_equal(kiln_mp_unpack(u, *bytes + KILN_PROTO_HDR, len - KILN_PROTO_HDR), 0);
    return &u->data;
}

static void done(msgpack_unpacked *u, unsigned char *bytes)
{
    msgpack_unpacked_destroy(u);
    free(bytes);
}

static void assert_span(const struct kiln_span *s, const char *want, size_t n)
{
    assert_true(s->set);
    assert_int_equal(s->n, n);
    assert_memory_equal(s->p, want, n);
}

static void test_small_messages(void **state)
{
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    unsigned char *b;
    (void)state;
    kiln_msg_pack_bare(&sb, KILN_MSG_STARTED);
    assert_golden("started", &sb);
    kiln_msg_pack_bare(&sb, KILN_MSG_BEAT);
    assert_golden("beat", &sb);
    kiln_msg_pack_bare(&sb, KILN_MSG_KILL);
    assert_golden("kill", &sb);
    assert_int_equal(kiln_msg_type_of(decoded("kill", &u, &b)), KILN_MSG_KILL);
    done(&u, b);

    struct kiln_msg_ready r = {1, 1, 0}, rr;
    kiln_msg_pack_ready(&sb, &r);
    assert_golden("ready", &sb);
    const msgpack_object *m = decoded("ready", &u, &b);
    assert_int_equal(kiln_msg_type_of(m), KILN_MSG_READY);
    assert_int_equal(kiln_msg_read_ready(m, &rr), 0);
    assert_int_equal(rr.v, 1);
    assert_int_equal(rr.pid, 1);
    assert_int_equal(rr.warm, 0);
    done(&u, b);

    struct kiln_msg_out o = {2, SPAN("oops\n")}, oo;
    kiln_msg_pack_out(&sb, &o);
    assert_golden("out", &sb);
    assert_int_equal(kiln_msg_read_out(decoded("out", &u, &b), &oo), 0);
    assert_int_equal(oo.fd, 2);
    assert_span(&oo.data, "oops\n", 5);
    done(&u, b);

    struct kiln_msg_error e = {SPAN("its files do not fit /work"), 1}, ee;
    kiln_msg_pack_error(&sb, &e);
    assert_golden("error_job", &sb);
    assert_int_equal(kiln_msg_read_error(decoded("error_job", &u, &b), &ee), 0);
    assert_int_equal(ee.job_fault, 1);
    assert_span(&ee.reason, "its files do not fit /work", 26);
    done(&u, b);

    kiln_msg_pack_result(&sb, "42", 2);
    assert_golden("result", &sb);
    struct kiln_span text;
    assert_int_equal(kiln_msg_read_result(decoded("result", &u, &b), &text), 0);
    assert_span(&text, "42", 2);
    done(&u, b);
}

static void test_ends(void **state)
{
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    unsigned char *b;
    (void)state;
    struct kiln_msg_end e = {.has_code = 1, .code = 0, .wall_ms = 12, .cpu_ms = 3, .max_rss_kb = 4096,
                             .session = SPAN("alive"), .reached_end = 1, .peak_kb = 8192, .oom_kills = 0}, r;
    kiln_msg_pack_end(&sb, KILN_MSG_EXIT, &e);
    assert_golden("exit", &sb);
    const msgpack_object *m = decoded("exit", &u, &b);
    assert_int_equal(kiln_msg_type_of(m), KILN_MSG_EXIT);
    assert_int_equal(kiln_msg_read_end(m, &r), 0);
    assert_int_equal(r.has_code, 1);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.signal, 0);
    assert_int_equal(r.wall_ms, 12);
    assert_int_equal(r.max_rss_kb, 4096);
    assert_int_equal(r.reached_end, 1);
    assert_int_equal(r.peak_kb, 8192);
    assert_int_equal(r.oom_kills, 0);
    assert_span(&r.session, "alive", 5);
    done(&u, b);

    struct kiln_msg_end k = {.signal = 9, .wall_ms = 5, .max_rss_kb = 100, .cpu_limit = 1, .reached_end = -1,
                             .peak_kb = -1, .oom_kills = -1};
    kiln_msg_pack_end(&sb, KILN_MSG_EXIT, &k);
    assert_golden("exit_killed", &sb);
    assert_int_equal(kiln_msg_read_end(decoded("exit_killed", &u, &b), &r), 0);
    assert_int_equal(r.has_code, 0);
    assert_int_equal(r.signal, 9);
    assert_int_equal(r.cpu_limit, 1);
    assert_int_equal(r.reached_end, -1); /* not checked */
    assert_int_equal(r.peak_kb, -1);     /* not said: a jail's agent */
    assert_false(r.session.set);
    done(&u, b);

    struct kiln_msg_end c = {.has_code = 1, .code = 1, .wall_ms = 7, .cpu_ms = 2, .max_rss_kb = 10,
                             .reached_end = -1, .peak_kb = -1, .oom_kills = -1};
    kiln_msg_pack_end(&sb, KILN_MSG_COLLECTING, &c);
    assert_golden("collecting", &sb);
}

static void test_files(void **state)
{
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    unsigned char *b;
    (void)state;
    struct kiln_msg_file f = {SPAN("prog"), 0755, SPAN("\x7f" "ELF"), {NULL, 0, 0}}, r;
    kiln_msg_pack_file(&sb, &f);
    assert_golden("file", &sb);
    assert_int_equal(kiln_msg_read_file(decoded("file", &u, &b), &r), 0);
    assert_int_equal(r.mode, 0755);
    assert_span(&r.data, "\x7f" "ELF", 4);
    assert_false(r.error.set);
    done(&u, b);

    struct kiln_msg_file fe = {SPAN("prog"), 0, {NULL, 0, 0}, SPAN("no such file")};
    kiln_msg_pack_file(&sb, &fe);
    assert_golden("file_error", &sb);
    assert_int_equal(kiln_msg_read_file(decoded("file_error", &u, &b), &r), 0);
    assert_span(&r.error, "no such file", 12);
    done(&u, b);

    struct kiln_msg_chunk c = {SPAN("out/a.txt"), 3, 0644, 0, SPAN("abc"), 1, 0}, rc;
    kiln_msg_pack_chunk(&sb, &c);
    assert_golden("collect", &sb);
    assert_int_equal(kiln_msg_read_chunk(decoded("collect", &u, &b), &rc), 0);
    assert_int_equal(rc.size, 3);
    assert_int_equal(rc.mode, 0644);
    assert_int_equal(rc.last, 1);
    assert_span(&rc.data, "abc", 3);
    done(&u, b);

    /* [path, why] pairs, packed as the agent keeps them */
    msgpack_sbuffer listed;
    msgpack_packer pk;
    msgpack_sbuffer_init(&listed);
    msgpack_packer_init(&pk, &listed, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    kiln_mp_str(&pk, "big.bin");
    kiln_mp_str(&pk, "over the cap");
    struct kiln_msg_collected d = {.matched = 2, .sent = 1, .skipped = 1, .listed = listed.data,
                                   .listed_len = listed.size, .nlisted = 1}, rd;
    kiln_msg_pack_collected(&sb, &d);
    assert_golden("collected", &sb);
    msgpack_sbuffer_destroy(&listed);
    assert_int_equal(kiln_msg_read_collected(decoded("collected", &u, &b), &rd), 0);
    assert_int_equal(rd.matched, 2);
    assert_int_equal(rd.skipped, 1);
    assert_non_null(rd.list);
    assert_int_equal(rd.list->via.array.size, 1);
    done(&u, b);
}

static void test_worker_messages(void **state)
{
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    unsigned char *b;
    unsigned char seed[32];
    (void)state;
    for (int i = 0; i < 32; i++)
        seed[i] = (unsigned char)i;
    struct kiln_msg_hello h = {1700000000000000000LL, {seed, 32, 1}}, rh;
    kiln_msg_pack_hello(&sb, &h);
    assert_golden("hello", &sb);
    assert_int_equal(kiln_msg_read_hello(decoded("hello", &u, &b), &rh), 0);
    assert_int_equal(rh.now_ns, 1700000000000000000LL);
    assert_int_equal(rh.seed.n, 32);
    done(&u, b);

    static const char *const pargv[] = {"/usr/bin/python3", "-c", "x"}, *const penv[] = {"A=1"};
    struct kiln_msg_command pc = {.argv = pargv, .argc = 3, .env = penv, .nenv = 1, .cwd = "/work"};
    kiln_msg_pack_start(&sb, KILN_MSG_PRESTART, &pc);
    assert_golden("prestart", &sb);

    static const char *const argv[] = {"/bin/sh", "-c", "echo $1", "sh", "a"}, *const env[] = {"K=V"};
    static const char *const globs[] = {"*.png"};
    static const struct kiln_msg_file_in files[] = {{"in.txt", "hi\n", 3, 0644}, {"bin/run", "#!/bin/sh\n", 10, 0755}};
    struct kiln_msg_run run = {
        .cmd = {.argv = argv, .argc = 5, .env = env, .nenv = 1, .cwd = "/work"},
        .files = files, .nfiles = 2, .stdin_data = SPAN("1 2\n"), .proxy = 1,
        .rl_cpu = 3, .rl_fsize = 1048576, .rl_nofile = 256, .memory_bytes = 268435456, .pids = 64,
        .cpu_ms = 2000, .collect = SPAN("prog"), .ca = SPAN("-----BEGIN CERTIFICATE-----"), .end = 1,
        .collect_globs = globs, .ncollect = 1, .collect_bytes = 1000, .collect_files = 10, .collect_names = 100,
        .cell = SPAN("x = 1"), .timeout_ms = 5000,
    }, r;
    kiln_msg_pack_run(&sb, &run);
    assert_golden("run", &sb);
    const msgpack_object *m = decoded("run", &u, &b);
    assert_int_equal(kiln_msg_type_of(m), KILN_MSG_RUN);
    assert_int_equal(kiln_msg_read_run(m, &r), 0);
    assert_int_equal(r.cmd.argv_in->via.array.size, 5);
    assert_int_equal(r.cmd.env_in->via.array.size, 1);
    assert_span(&r.cmd.cwd_in, "/work", 5);
    assert_int_equal(r.files_in->via.array.size, 2);
    assert_span(&r.stdin_data, "1 2\n", 4);
    assert_int_equal(r.proxy, 1);
    assert_int_equal(r.end, 1);
    assert_int_equal(r.session, 1);
    assert_span(&r.cell, "x = 1", 5);
    assert_int_equal(r.timeout_ms, 5000);
    assert_int_equal(r.rl_cpu, 3);
    assert_int_equal(r.rl_nofile, 256);
    assert_int_equal(r.memory_bytes, 268435456);
    assert_int_equal(r.pids, 64);
    assert_int_equal(r.cpu_ms, 2000);
    assert_int_equal(r.collect_bytes, 1000);
    assert_span(&r.collect, "prog", 4);
    assert_span(&r.ca, "-----BEGIN CERTIFICATE-----", 27);
    assert_int_equal(r.collect_globs_in->via.array.size, 1);
    done(&u, b);

    static const char *const targv[] = {"/bin/true"};
    struct kiln_msg_run min = {.cmd = {.argv = targv, .argc = 1, .cwd = "/work"}};
    kiln_msg_pack_run(&sb, &min);
    assert_golden("run_minimal", &sb);
    assert_int_equal(kiln_msg_read_run(decoded("run_minimal", &u, &b), &r), 0);
    assert_false(r.stdin_data.set);
    assert_false(r.session);
    assert_false(r.collect.set);
    done(&u, b);
}

/* What a reader refuses: the fields a message needs, missing or of
 * another type. */
static void test_refusals(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    struct kiln_msg_run r;
    struct kiln_msg_chunk c;
    (void)state;
    /* a run whose argv is not a list of strings */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    struct kiln_map m;
    kiln_map_init(&m);
    kiln_map_str(&m, "t", "run");
    msgpack_packer *a = kiln_map_key(&m, "argv");
    msgpack_pack_array(a, 1);
    msgpack_pack_int(a, 7);
    msgpack_pack_array(kiln_map_key(&m, "env"), 0);
    kiln_map_end(&m, &pk);
    msgpack_unpacked_init(&u);
    assert_int_equal(kiln_mp_unpack(&u, sb.data, sb.size), 0);
    assert_int_equal(kiln_msg_read_run(&u.data, &r), -EPROTO);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    /* a chunk whose offset is past its size */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    kiln_map_init(&m);
    kiln_map_str(&m, "path", "a");
    kiln_map_int(&m, "size", 3);
    kiln_map_int(&m, "mode", 0644);
    kiln_map_int(&m, "offset", 4);
    kiln_map_bin(&m, "data", "", 0);
    kiln_map_end(&m, &pk);
    msgpack_unpacked_init(&u);
    assert_int_equal(kiln_mp_unpack(&u, sb.data, sb.size), 0);
    assert_int_equal(kiln_msg_read_chunk(&u.data, &c), -EPROTO);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

static void assert_beside(const char *name, const void *got, size_t len)
{
    size_t n;
    unsigned char *want = golden("beside", name, &n);
    if (n != len || memcmp(want, got, n) != 0)
        fail_msg("%s: %zu bytes, the golden ones %zu (or they differ)", name, len, n);
    free(want);
}

static void test_envelope_and_fifo(void **state)
{
    static const char *const argv[] = {"/usr/bin/python3", "/work/main.py", "a b", "", NULL};
    static const char *const env[] = {"HOME=/work", "K=v=w", NULL}, *const none[] = {NULL};
    static const char *const tru[] = {"/bin/true", NULL};
    size_t total;
    char head[64];
    struct kiln_repl_ctl rec;
    (void)state;
    char *e = kiln_envelope_pack(argv, env, "in\n", 3, &total);
    assert_beside("envelope", e, total);
    free(e);
    e = kiln_envelope_pack(tru, none, NULL, 0, &total);
    assert_beside("envelope_noenv", e, total);
    free(e);
    int n = kiln_repl_cell_head(head, sizeof(head), 11, 2500);
    assert_beside("cell_head", head, (size_t)n);
    /* the golden records: a value, an end, an end's code past 255 */
    size_t len;
    unsigned char *g = golden("beside", "ctl_result", &len);
    assert_int_equal(kiln_repl_ctl_next((char *)g, len, 100, &rec), (long)len);
    assert_int_equal(rec.kind, 'R');
    assert_span(&rec.text, "hello", 5);
    assert_int_equal(kiln_repl_ctl_next((char *)g, len - 2, 100, &rec), 0); /* cut short: it waits */
    free(g);
    g = golden("beside", "ctl_end", &len);
    assert_int_equal(kiln_repl_ctl_next((char *)g, len, 100, &rec), (long)len);
    assert_int_equal(rec.kind, 'E');
    assert_int_equal(rec.code, 3);
    free(g);
    g = golden("beside", "ctl_end_wrapped", &len);
    assert_int_equal(kiln_repl_ctl_next((char *)g, len, 100, &rec), (long)len);
    assert_int_equal(rec.code, 1); /* its low 8 bits, as an exit status */
    free(g);
    /* broken: a value over its cap, another letter, a negative, no digits */
    assert_int_equal(kiln_repl_ctl_next("R 500\n", 6, 100, &rec), -1); /* over max */
    assert_int_equal(kiln_repl_ctl_next("X 1\n", 4, 100, &rec), -1);
    assert_int_equal(kiln_repl_ctl_next("E -1\n", 5, 100, &rec), -1);
    assert_int_equal(kiln_repl_ctl_next("R x\n", 4, 100, &rec), -1);
    assert_int_equal(kiln_repl_ctl_next("E 1", 3, 100, &rec), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_messages),
        cmocka_unit_test(test_ends),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_worker_messages),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_envelope_and_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
