#include "wire/frame.h"

#include "wire/proto.h"

const char *kiln_status_name(enum kiln_status s)
{
    static const char *const names[KILN_STATUS_COUNT] = {
        [KILN_STATUS_OK] = "ok",
        [KILN_STATUS_ERROR] = "error",
        [KILN_STATUS_TIMEOUT] = "timeout",
        [KILN_STATUS_OOM] = "oom",
        [KILN_STATUS_KILLED] = "killed",
        [KILN_STATUS_OUTPUT_LIMIT] = "output_limit",
        [KILN_STATUS_REJECTED] = "rejected",
        [KILN_STATUS_INTERNAL] = "internal",
        [KILN_STATUS_CANCELLED] = "cancelled",
        [KILN_STATUS_EXPIRED] = "expired",
        [KILN_STATUS_SESSION_LOST] = "session_lost",
    };
    return (unsigned)s < KILN_STATUS_COUNT ? names[s] : "internal";
}

const char *kiln_verdict_name(enum kiln_verdict v)
{
    static const char *const names[KILN_VERDICT_COUNT] = {
        [KILN_VERDICT_ACCEPTED] = "accepted",
        [KILN_VERDICT_WRONG_ANSWER] = "wrong_answer",
        [KILN_VERDICT_TIME_LIMIT] = "time_limit",
        [KILN_VERDICT_MEMORY_LIMIT] = "memory_limit",
        [KILN_VERDICT_RUNTIME_ERROR] = "runtime_error",
        [KILN_VERDICT_OUTPUT_LIMIT] = "output_limit",
        [KILN_VERDICT_COMPILE_ERROR] = "compile_error",
        [KILN_VERDICT_SKIPPED] = "skipped",
    };
    return (unsigned)v < KILN_VERDICT_COUNT ? names[v] : "runtime_error";
}

/* A frame as a map of its own keys (wire/proto.h's kiln_map counts them). */
static void pack_id(struct kiln_map *m, const char *id)
{
    kiln_map_str(m, "id", id);
}

/* The start of a frame with an attempt: its id, seq, attempt and kind. */
static void begin(struct kiln_map *m, const char *id, uint64_t seq, unsigned attempt, const char *kind)
{
    kiln_map_init(m);
    pack_id(m, id);
    msgpack_pack_uint64(kiln_map_key(m, "seq"), seq);
    msgpack_pack_unsigned_int(kiln_map_key(m, "attempt"), attempt);
    kiln_map_str(m, "kind", kind);
}

/* The frame into `sb` (initialised here, the caller's). */
static void end(struct kiln_map *m, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    kiln_map_end(m, &pk);
}

/* A value packed already (meta, a collect summary), as it is. */
static void packed(struct kiln_map *m, const char *key, const void *bytes, size_t len)
{
    msgpack_pack_str_body(kiln_map_key(m, key), bytes, len);
}

/* code, signal, wall_ms, cpu_ms, max_rss_kb: how a program ended and
 * what it used (exit and case frames) */
static void pack_figures(struct kiln_map *m, int has_code, int code, int signal, int64_t wall_ms,
                         int64_t cpu_ms, int64_t max_rss_kb)
{
    if (has_code)
        msgpack_pack_int(kiln_map_key(m, "code"), code);
    else
        kiln_map_nil(m, "code");
    if (signal)
        msgpack_pack_int(kiln_map_key(m, "signal"), signal);
    else
        kiln_map_nil(m, "signal");
    kiln_map_int(m, "wall_ms", wall_ms);
    kiln_map_int(m, "cpu_ms", cpu_ms);
    kiln_map_int(m, "max_rss_kb", max_rss_kb);
}

void kiln_frame_output(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                       int fd, const void *data, size_t len, int run)
{
    struct kiln_map m;
    begin(&m, id, seq, attempt, fd == 2 ? "stderr" : "stdout");
    kiln_map_bin(&m, "data", data, len);
    if (run >= 0)
        msgpack_pack_int(kiln_map_key(&m, "run"), run);
    end(&m, sb);
}

void kiln_frame_result(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                       const void *text, size_t len)
{
    struct kiln_map m;
    begin(&m, id, seq, attempt, "result");
    kiln_map_bin(&m, "data", text, len);
    end(&m, sb);
}

void kiln_frame_exposed(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt, int port,
                        const char *url)
{
    struct kiln_map m;
    begin(&m, id, seq, attempt, "exposed");
    kiln_map_int(&m, "port", port);
    kiln_map_str(&m, "url", url);
    end(&m, sb);
}

void kiln_frame_file(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                     const struct kiln_file_chunk *f)
{
    struct kiln_map m;
    begin(&m, id, seq, attempt, "file");
    kiln_map_str(&m, "path", f->path);
    kiln_map_int(&m, "size", f->size);
    msgpack_pack_unsigned_int(kiln_map_key(&m, "mode"), f->mode);
    kiln_map_int(&m, "offset", f->offset);
    kiln_map_bin(&m, "data", f->data, f->len);
    kiln_map_bool(&m, "last", f->last);
    if (f->truncated)
        kiln_map_bool(&m, "truncated", 1);
    if (f->run >= 0)
        msgpack_pack_int(kiln_map_key(&m, "run"), f->run);
    end(&m, sb);
}

void kiln_frame_exit(msgpack_sbuffer *sb, const char *id, uint64_t seq,
                     const struct kiln_exit *e)
{
    struct kiln_map m, sub;
    kiln_map_init(&m);
    pack_id(&m, id);
    msgpack_pack_uint64(kiln_map_key(&m, "seq"), seq);
    kiln_map_str(&m, "kind", "exit");
    kiln_map_str(&m, "status", kiln_status_name(e->status));
    pack_figures(&m, e->has_code, e->code, e->signal, e->wall_ms, e->cpu_ms, e->max_rss_kb);
    msgpack_pack_unsigned_int(kiln_map_key(&m, "attempt"), e->attempt);
    kiln_map_str(&m, "worker", e->worker ? e->worker : "");
    if (e->reason != NULL)
        kiln_map_str(&m, "reason", e->reason);
    if (e->meta != NULL)
        packed(&m, "meta", e->meta, e->meta_len);
    if (e->run >= 0)
        msgpack_pack_int(kiln_map_key(&m, "run"), e->run);
    if (e->collect != NULL)
        packed(&m, "collect", e->collect, e->collect_len);
    if (e->session != NULL) {
        kiln_map_init(&sub);
        kiln_map_str(&sub, "id", e->session);
        if (e->session_seq > 0)
            kiln_map_int(&sub, "seq", e->session_seq);
        kiln_map_end(&sub, kiln_map_key(&m, "session"));
    }
    if (e->ndenied > 0) {
        msgpack_packer *pk = kiln_map_key(&m, "denied");
        msgpack_pack_array(pk, e->ndenied);
        for (size_t i = 0; i < e->ndenied; i++)
            kiln_mp_str(pk, e->denied[i]);
    }
    if (e->runs_ok >= 0) {
        msgpack_pack_int(kiln_map_key(&m, "runs"), e->runs_total);
        msgpack_pack_int(kiln_map_key(&m, "runs_ok"), e->runs_ok);
    }
    if (e->has_verdict) {
        kiln_map_str(&m, "verdict", kiln_verdict_name(e->verdict));
        msgpack_pack_int(kiln_map_key(&m, "passed"), e->passed);
        msgpack_pack_int(kiln_map_key(&m, "total"), e->total);
    }
    if (e->build != NULL) {
        kiln_map_init(&sub);
        kiln_map_str(&sub, "status", kiln_status_name(e->build->status));
        kiln_map_int(&sub, "wall_ms", e->build->wall_ms);
        kiln_map_int(&sub, "cpu_ms", e->build->cpu_ms);
        kiln_map_bin(&sub, "output", e->build->output, e->build->output_len);
        kiln_map_end(&sub, kiln_map_key(&m, "build"));
    }
    end(&m, sb);
}

void kiln_frame_case(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                     const struct kiln_case_result *c)
{
    struct kiln_map m;
    int diff = c->verdict == KILN_VERDICT_WRONG_ANSWER && c->diff_at > 0;
    begin(&m, id, seq, attempt, "case");
    msgpack_pack_int(kiln_map_key(&m, "case"), c->index);
    kiln_map_str(&m, "verdict", kiln_verdict_name(c->verdict));
    pack_figures(&m, c->has_code, c->code, c->signal, c->wall_ms, c->cpu_ms, c->max_rss_kb);
    if (c->reason != NULL)
        kiln_map_str(&m, "reason", c->reason);
    if (diff) {
        kiln_map_int(&m, c->diff_tokens ? "token" : "line", c->diff_at);
        kiln_map_bin(&m, "expected", c->expected, c->expected_len);
        kiln_map_bin(&m, "got", c->got, c->got_len);
    }
    if (c->err != NULL)
        kiln_map_bin(&m, "stderr", c->err, c->err_len);
    if (c->collect != NULL)
        packed(&m, "collect", c->collect, c->collect_len);
    end(&m, sb);
}
