/*
 * A job's life (core/life.c) without Redis, Kafka or namespaces: the real
 * worker core, driven through its two ops tables by fakes. The source
 * hands over one job and records every frame, ack and release; the
 * backend's "sandbox" is a socketpair whose far end this test plays as the
 * agent, from a script per sandbox (what it says once it gets "run").
 *
 * Each case is a row: the job, the agents' scripts, what is done to the
 * job from outside and when, and what a user of the queue would see
 * (the frames' kinds and statuses, acked or released, sandboxes used). Every
 * row also asserts that the job never made a move the state table refuses
 * and that nothing of it is left once it is done.
 */
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "core/config.h"
#include "core/image.h"
#include "base/log.h"
#include "core/plugin_load.h"
#include "core/pool.h"
#include "core/run.h"
#include "core/worker.h"
#include "queue/source.h"
#include "sandbox/backend.h"
#include "wire/agent_msg.h"

#define MAX_AGENTS 8
#define MAX_FRAMES 32

/* ---- a row --------------------------------------------------------------- */

/* What is done to the job from outside, and when. */
enum outside {
    NOTHING,
    CANCEL_ON_RUN,          /* as "run" reaches the agent */
    CANCEL_BEFORE,          /* before the job is delivered */
    CANCEL_WHILE_RETRYING,  /* after kiln's failure, before its sandbox is gone */
    DRAIN_ON_RUN,           /* the drain ran out of time as "run" came */
};

struct row {
    const char *name;
    const char *plugin;
    const char *code;
    int tests;               /* a tests job: this many cases */
    int64_t timeout_ms;      /* 0: none given */
    int64_t output_bytes;    /* 0: none given */
    enum outside outside;
    /* each sandbox's agent, in spawn order (the last again for more):
     * words separated by spaces: out:TEXT, err:TEXT, exit:N, file (the
     * artifact a build asks back), eof (the sandbox dies mid-run), hang */
    const char *agents[MAX_AGENTS];
    /* what comes out: the frames' "kind/status" (exit) or "case/verdict",
     * "stdout" for output, space-separated; then acked or released, and how
     * many sandboxes were spawned */
    const char *frames;
    const char *stdout_bytes; /* all its stdout frames together (NULL: not checked) */
    int acked, released;
    int spawns;
    unsigned last_attempt;   /* the exit frame's attempt (0: not checked) */
};

/* ---- the fake source --------------------------------------------------- */

struct written {
    char what[48];
    unsigned attempt;
};

static struct {
    struct kiln_source pub;
    struct written frames[MAX_FRAMES];
    int nframes, acked, released, stopped;
    char out[256];       /* stdout frames' data, in order */
    uv_timer_t later;
    struct pending { kiln_write_cb cb; void *arg; } due[MAX_FRAMES];
    int ndue;
} src;

static void on_later(uv_timer_t *t)
{
    (void)t;
    while (src.ndue > 0) { /* in the order written */
        struct pending p = src.due[0];
        memmove(src.due, src.due + 1, (size_t)--src.ndue * sizeof(src.due[0]));
        p.cb(p.arg, 0, NULL);
    }
}

/* "kind/status" of an exit frame, "case/verdict" of a case frame, else the kind. */
static void describe(const void *frame, size_t len, struct written *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, frame, len, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *kind = kiln_mp_get(&u.data, "kind");
    const msgpack_object *sub = kiln_mp_get(&u.data, "status");
    if (sub == NULL)
        sub = kiln_mp_get(&u.data, "verdict");
    const msgpack_object *att = kiln_mp_get(&u.data, "attempt");
    if (kind == NULL) /* not a frame: the dead letters' entry */
        snprintf(out->what, sizeof(out->what), "dead");
    else
        snprintf(out->what, sizeof(out->what), "%.*s", (int)kind->via.str.size, kind->via.str.ptr);
    if (sub != NULL && sub->type == MSGPACK_OBJECT_STR && strcmp(out->what, "stdout") != 0)
        snprintf(out->what + strlen(out->what), sizeof(out->what) - strlen(out->what), "/%.*s",
                 (int)sub->via.str.size, sub->via.str.ptr);
    out->attempt = att != NULL ? (unsigned)att->via.u64 : 0;
    const msgpack_object *data = kiln_mp_get(&u.data, "data");
    if (strcmp(out->what, "stdout") == 0 && data != NULL && data->type == MSGPACK_OBJECT_BIN)
        snprintf(src.out + strlen(src.out), sizeof(src.out) - strlen(src.out), "%.*s",
                 (int)data->via.bin.size, data->via.bin.ptr);
    msgpack_unpacked_destroy(&u);
}

static int f_write(struct kiln_source *s, const char *dest, const char *key, const void *frame, size_t len,
                   const struct kiln_frame_info *info, kiln_write_cb cb, void *arg)
{
    (void)s, (void)dest, (void)key, (void)info;
    assert_true(src.nframes < MAX_FRAMES);
    describe(frame, len, &src.frames[src.nframes++]);
    src.due[src.ndue++] = (struct pending){cb, arg};
    uv_timer_start(&src.later, on_later, 0, 0); /* never inside write() */
    return 0;
}

static void f_ack(struct kiln_source *s, struct kiln_delivery *d)
{
    (void)s;
    src.acked++;
    free(d);
}

static void f_release(struct kiln_source *s, struct kiln_delivery *d)
{
    (void)s;
    src.released++;
    free(d);
}

static void f_stop(struct kiln_source *s)
{
    (void)s;
    src.stopped = 1;
}

static void f_credit(struct kiln_source *s, unsigned n)
{
    (void)s, (void)n;
}

static int f_idle(struct kiln_source *s)
{
    (void)s;
    return src.ndue == 0;
}

static const struct kiln_source_ops src_ops = {
    .name = "fake", .credit = f_credit, .write = f_write, .ack = f_ack,
    .release = f_release, .stop = f_stop, .idle = f_idle,
};

/* ---- the fake backend and its agents -------------------------------------- */

struct agent {
    struct kiln_sandbox sb;
    int fd;                  /* the agent's end; -1 once the sandbox died */
    uv_poll_t poll;
    struct kiln_proto_reader rd;
    const char *script;
    uv_timer_t exit_timer, cancel_timer;
    int open;                /* handles to close */
};

static struct {
    struct kiln_backend pub;
    const struct row *row;
    int spawns;
    int live;
} be;

static struct kiln_worker w;

static void send_msg(struct agent *a, msgpack_sbuffer *sb)
{
    if (a->fd >= 0)
        assert_int_equal(write(a->fd, sb->data, sb->size), (ssize_t)sb->size);
    msgpack_sbuffer_destroy(sb);
}

static void agent_closed(uv_handle_t *h)
{
    struct agent *a = h->data;
    if (--a->open == 0) {
        kiln_proto_reader_free(&a->rd);
        free(a);
    }
}

/* The sandbox is gone: its channel closes, then on_exit as a backend says. */
static void on_exit_due(uv_timer_t *t)
{
    struct agent *a = t->data;
    a->sb.wstatus = SIGKILL; /* as waitpid says of a killed PID 1 */
    be.live--;
    if (a->sb.on_exit != NULL)
        a->sb.on_exit(&a->sb);
    uv_close((uv_handle_t *)&a->exit_timer, agent_closed);
    uv_close((uv_handle_t *)&a->cancel_timer, agent_closed);
}

static void on_cancel_due(uv_timer_t *t)
{
    (void)t;
    kiln_worker_on_cancel(&w, "life-1");
}

static void die(struct agent *a)
{
    if (a->fd < 0)
        return;
    uv_poll_stop(&a->poll);
    uv_close((uv_handle_t *)&a->poll, agent_closed);
    close(a->fd);
    a->fd = -1;
    if (be.row->outside == CANCEL_WHILE_RETRYING) { /* the worker sees the EOF first */
        uv_timer_start(&a->cancel_timer, on_cancel_due, 20, 0);
        uv_timer_start(&a->exit_timer, on_exit_due, 40, 0);
    } else {
        uv_timer_start(&a->exit_timer, on_exit_due, 1, 0);
    }
}

/* Act out the script once "run" came. */
static void act(struct agent *a, const struct kiln_msg_run *run)
{
    char word[128];
    const char *p = a->script;
    while (p != NULL && *p) {
        size_t n = strcspn(p, " ");
        snprintf(word, sizeof(word), "%.*s", (int)n, p);
        p += n + (p[n] == ' ');
        msgpack_sbuffer sb;
        if (strncmp(word, "out:", 4) == 0 || strncmp(word, "err:", 4) == 0) {
            struct kiln_msg_out o = {word[0] == 'e' ? 2 : 1, {word + 4, strlen(word + 4), 1}};
            kiln_msg_pack_out(&sb, &o);
            send_msg(a, &sb);
        } else if (strncmp(word, "exit:", 5) == 0) {
            struct kiln_msg_end e = {.has_code = 1, .code = atoi(word + 5), .wall_ms = 3, .cpu_ms = 1,
                                     .reached_end = -1, .peak_kb = -1, .oom_kills = -1};
            kiln_msg_pack_end(&sb, KILN_MSG_EXIT, &e);
            send_msg(a, &sb);
        } else if (strcmp(word, "file") == 0) {
            assert_true(run->collect.set); /* a build asks its artifact back */
            struct kiln_msg_file f = {run->collect, 0755, {"\x7f" "ELF", 4, 1}, {0}};
            kiln_msg_pack_file(&sb, &f);
            send_msg(a, &sb);
        } else if (strcmp(word, "eof") == 0) {
            die(a);
            return;
        } else if (strcmp(word, "hang") == 0) {
            return;
        } else {
            fail_msg("unknown script word '%s'", word);
        }
    }
}

static void on_agent_readable(uv_poll_t *h, int status, int events)
{
    struct agent *a = h->data;
    char buf[65536];
    (void)events;
    if (status < 0 || a->fd < 0)
        return;
    ssize_t n = read(a->fd, buf, sizeof(buf));
    if (n <= 0) { /* the worker closed its end: it is done with us */
        die(a);
        return;
    }
    assert_int_equal(kiln_proto_reader_feed(&a->rd, buf, (size_t)n), 0);
    const void *msg;
    size_t len;
    while (a->fd >= 0 && kiln_proto_reader_next(&a->rd, &msg, &len) > 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        assert_int_equal(msgpack_unpack_next(&u, msg, len, NULL), MSGPACK_UNPACK_SUCCESS);
        if (kiln_msg_type_of(&u.data) == KILN_MSG_RUN) {
            struct kiln_msg_run run;
            assert_int_equal(kiln_msg_read_run(&u.data, &run), 0);
            if (be.row->outside == CANCEL_ON_RUN)
                kiln_worker_on_cancel(&w, "life-1");
            else if (be.row->outside == DRAIN_ON_RUN) {
                w.draining = 1;
                kiln_worker_abandon(&w);
            }
            act(a, &run);
        }
        msgpack_unpacked_destroy(&u);
    }
}

static int f_spawn(struct kiln_backend *b, const char *profile, const struct kiln_spawn_opts *o,
                   struct kiln_sandbox **out, char *err, size_t errlen)
{
    int sv[2];
    (void)b, (void)profile, (void)o, (void)err, (void)errlen;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct agent *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    int i = be.spawns < MAX_AGENTS ? be.spawns : MAX_AGENTS - 1;
    while (i > 0 && be.row->agents[i] == NULL)
        i--; /* past the last script: the last again */
    a->script = be.row->agents[i];
    be.spawns++;
    be.live++;
    a->sb.backend = &be.pub;
    a->sb.fd = sv[0];
    a->sb.peak_kb = -1;
    a->fd = sv[1];
    kiln_proto_reader_init(&a->rd, KILN_PROTO_MAX_MSG);
    uv_poll_init(w.loop, &a->poll, a->fd);
    a->poll.data = a;
    uv_timer_init(w.loop, &a->exit_timer);
    a->exit_timer.data = a;
    uv_timer_init(w.loop, &a->cancel_timer);
    a->cancel_timer.data = a;
    a->open = 3;
    uv_poll_start(&a->poll, UV_READABLE, on_agent_readable);
    msgpack_sbuffer sb;
    struct kiln_msg_ready r = {KILN_PROTO_VERSION, 1, 0};
    kiln_msg_pack_ready(&sb, &r);
    send_msg(a, &sb);
    *out = &a->sb;
    return 0;
}

static void f_kill(struct kiln_sandbox *sb)
{
    die((struct agent *)sb);
}

static int f_limit(struct kiln_sandbox *sb, const struct kiln_sandbox_limits *l)
{
    (void)sb, (void)l;
    return 0;
}

static void f_stats(struct kiln_sandbox *sb, int64_t *peak_kb, int64_t *oom_kills)
{
    (void)sb;
    *peak_kb = -1;
    *oom_kills = 0;
}

static void f_destroy(struct kiln_backend *b)
{
    (void)b;
}

static const struct kiln_backend_ops be_ops = {
    .name = "fake", .spawn = f_spawn, .kill = f_kill, .limit = f_limit, .stats = f_stats,
    .destroy = f_destroy,
};

/* ---- running a row ---------------------------------------------------------- */

static struct kiln_config cfg;
static struct kiln_plugins plugins;
static struct kiln_image img; /* the worker's one image: borrows the plugins */
static uv_loop_t loop;   /* one for every row, as the worker has one */

static int setup(void **state)
{
    char *argv[] = {"kiln-worker", "--consumer", "t", "--pool", "0", "--retry-backoff-ms", "1",
                    "--max-attempts", "3", "--no-zygote"};
    char why[256];
    (void)state;
    assert_int_equal(kiln_config_parse(&cfg, (int)(sizeof(argv) / sizeof(argv[0])), argv), 0);
    assert_int_equal(kiln_plugins_load_file(&plugins, KILN_SHELL_PLUGIN, why, sizeof(why)), 0);
    assert_int_equal(kiln_plugins_load_file(&plugins, KILN_PLUGIN_DIR "/c.so", why, sizeof(why)), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    be.pub.ops = &be_ops;
    be.pub.loop = &loop;
    be.pub.cfg = &cfg.sb;
    be.pub.no_sessions = "the fake backend holds none";
    /* the one image, as the worker's default: the fake backend, the loaded
     * plugins, and its pool (with --pool 0 it keeps no sandbox) */
    snprintf(img.name, sizeof(img.name), "default");
    img.backend = &be.pub;
    img.plugins = plugins;
    assert_int_equal(kiln_pool_new(&loop, &cfg, &be.pub, &plugins, img.name, "", &img.pool), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kiln_pool_stop(img.pool);
    while (uv_run(&loop, UV_RUN_NOWAIT))
        ;
    kiln_plugins_unload(&plugins);
    kiln_config_free(&cfg);
    return 0;
}

static void on_guard(uv_timer_t *t)
{
    (void)t;
    fail_msg("the job did not end within 10 s");
}

/* The job as a producer would put it on the queue. */
static void pack_job(const struct row *r, msgpack_sbuffer *sb)
{
    struct kiln_map m;
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    kiln_map_init(&m);
    kiln_map_str(&m, "id", "life-1");
    kiln_map_str(&m, "plugin", r->plugin);
    kiln_map_str(&m, "code", r->code);
    if (r->tests > 0) {
        msgpack_packer *cases = kiln_map_key(&m, "tests");
        msgpack_pack_array(cases, (size_t)r->tests);
        for (int i = 0; i < r->tests; i++) {
            struct kiln_map c, e;
            kiln_map_init(&c);
            kiln_map_init(&e);
            kiln_map_int(&e, "exit", 0);
            kiln_map_end(&e, kiln_map_key(&c, "expect"));
            kiln_map_end(&c, cases);
        }
    }
    if (r->timeout_ms > 0 || r->output_bytes > 0) {
        struct kiln_map l;
        kiln_map_init(&l);
        if (r->timeout_ms > 0)
            kiln_map_int(&l, "timeout_ms", r->timeout_ms);
        if (r->output_bytes > 0)
            kiln_map_int(&l, "output_bytes", r->output_bytes);
        kiln_map_end(&l, kiln_map_key(&m, "limits"));
    }
    kiln_map_end(&m, &pk);
}

static void run_row(const struct row *r)
{
    uv_timer_t guard;
    msgpack_sbuffer job;

    memset(&src, 0, sizeof(src));
    be.row = r;
    be.spawns = be.live = 0;
    memset(&w, 0, sizeof(w));
    src.pub.ops = &src_ops;
    src.pub.loop = &loop;
    src.pub.cfg = &cfg.q;
    uv_timer_init(&loop, &src.later);
    w.loop = &loop;
    w.cfg = &cfg;
    w.src = &src.pub;
    w.images = &img;
    w.nimages = 1;
    kiln__run_bad_moves = 0;

    if (r->outside == CANCEL_BEFORE)
        kiln_worker_on_cancel(&w, "life-1");
    pack_job(r, &job);
    struct kiln_delivery *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->src = &src.pub;
    d->data = (const unsigned char *)job.data;
    d->len = job.size;
    d->attempt = 1;
    snprintf(d->ref, sizeof(d->ref), "fake-0");
    kiln_worker_on_delivery(&w, d);

    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_guard, 10000, 0);
    while ((w.runs != NULL || be.live > 0) && uv_run(&loop, UV_RUN_ONCE))
        ;
    uv_close((uv_handle_t *)&guard, NULL);

    /* what a user of the queue sees */
    char got[512] = "";
    for (int i = 0; i < src.nframes; i++)
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "", src.frames[i].what);
    if (strcmp(got, r->frames) != 0)
        fail_msg("%s: frames '%s', want '%s'", r->name, got, r->frames);
    if (r->stdout_bytes != NULL && strcmp(src.out, r->stdout_bytes) != 0)
        fail_msg("%s: stdout '%s', want '%s'", r->name, src.out, r->stdout_bytes);
    if (src.acked != r->acked || src.released != r->released)
        fail_msg("%s: acked %d released %d, want %d and %d", r->name, src.acked, src.released, r->acked,
                 r->released);
    if (be.spawns != r->spawns)
        fail_msg("%s: %d sandboxes, want %d", r->name, be.spawns, r->spawns);
    if (r->last_attempt > 0 && src.frames[src.nframes - 1].attempt != r->last_attempt)
        fail_msg("%s: last frame of attempt %u, want %u", r->name, src.frames[src.nframes - 1].attempt,
                 r->last_attempt);
    /* and what only the worker knows */
    if (kiln__run_bad_moves != 0)
        fail_msg("%s: %u move(s) the state table refuses", r->name, kiln__run_bad_moves);
    assert_null(w.runs);
    assert_int_equal(w.busy, 0);
    assert_int_equal(w.ending, 0);

    uv_close((uv_handle_t *)&src.later, NULL);
    while (uv_run(&loop, UV_RUN_NOWAIT))
        ;
    msgpack_sbuffer_destroy(&job);
}

/* ---- the rows ------------------------------------------------------------------ */

static const struct row rows[] = {
    {"ok", "shell", "true", .agents = {"exit:0"}, .frames = "exit/ok", .acked = 1, .spawns = 1,
     .last_attempt = 1},
    {"its own error", "shell", "exit 3", .agents = {"out:hi exit:3"}, .frames = "stdout exit/error", .stdout_bytes = "hi",
     .acked = 1, .spawns = 1},
    {"rejected before any sandbox", "no-such-plugin", "true", .agents = {"exit:0"},
     .frames = "exit/rejected", .acked = 1, .spawns = 0},
    {"kiln's failure is tried again", "shell", "true", .agents = {"eof", "exit:0"}, .frames = "exit/ok",
     .acked = 1, .spawns = 2, .last_attempt = 2},
    {"and dead-lettered past --max-attempts", "shell", "true", .agents = {"eof"},
     .frames = "dead exit/internal", .acked = 1, .spawns = 3, .last_attempt = 3},
    {"the wall clock", "shell", "sleep 9", .timeout_ms = 50, .agents = {"hang"}, .frames = "exit/timeout",
     .acked = 1, .spawns = 1},
    {"the output cap", "shell", "yes", .output_bytes = 4, .agents = {"out:abc out:defgh hang"},
     .frames = "stdout stdout exit/output_limit", .stdout_bytes = "abcd", .acked = 1, .spawns = 1},
    {"cancelled while it runs", "shell", "sleep 9", .outside = CANCEL_ON_RUN, .agents = {"hang"},
     .frames = "exit/cancelled", .acked = 1, .spawns = 1},
    {"cancelled before it came", "shell", "true", .outside = CANCEL_BEFORE, .agents = {"exit:0"},
     .frames = "exit/cancelled", .acked = 1, .spawns = 0},
    {"a cancel wins over kiln's failure", "shell", "true", .outside = CANCEL_ON_RUN, .agents = {"eof"},
     .frames = "exit/cancelled", .acked = 1, .spawns = 1},
    {"a cancel while kiln's failure waits to be retried", "shell", "true", .outside = CANCEL_WHILE_RETRYING,
     .agents = {"eof", "exit:0"}, .frames = "exit/cancelled", .acked = 1, .spawns = 1},
    {"the drain releases it unreported", "shell", "sleep 9", .outside = DRAIN_ON_RUN, .agents = {"hang"},
     .frames = "", .released = 1, .spawns = 1},
    {"tests: each case its sandbox", "shell", "true", .tests = 2, .agents = {"exit:0", "exit:1"},
     .frames = "case/accepted case/runtime_error exit/error", .acked = 1, .spawns = 2},
    {"a build, then its cases", "c", "int main(void){return 0;}", .tests = 2,
     .agents = {"file exit:0", "exit:0"}, .frames = "case/accepted case/accepted exit/ok", .acked = 1,
     .spawns = 3},
    {"a build that fails has no cases", "c", "int main(", .tests = 2, .agents = {"err:nope exit:1"},
     .frames = "exit/error", .acked = 1, .spawns = 1},
    {"a case's failure in kiln runs every case again", "shell", "true", .tests = 2,
     .agents = {"exit:0", "eof", "exit:0"}, .frames = "case/accepted case/accepted case/accepted exit/ok",
     .acked = 1, .spawns = 4, .last_attempt = 2},
};

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        run_row(&rows[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
    };
    signal(SIGPIPE, SIG_IGN);
    kiln_log_min = KILN_LOG_WARN;
    return cmocka_run_group_tests(tests, setup, teardown);
}
