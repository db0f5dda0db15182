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

static void pack_id(msgpack_packer *pk, const char *id)
{
    kiln_mp_str(pk, "id");
    if (id != NULL)
        kiln_mp_str(pk, id);
    else
        msgpack_pack_nil(pk);
}

/* The start of a frame of `n` keys with an attempt: the buffer made, and
 * its id, seq, attempt and kind packed. */
static void begin(msgpack_sbuffer *sb, msgpack_packer *pk, size_t n, const char *id, uint64_t seq,
                  unsigned attempt, const char *kind)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, (uint32_t)n);
    pack_id(pk, id);
    kiln_mp_str(pk, "seq");
    msgpack_pack_uint64(pk, seq);
    kiln_mp_str(pk, "attempt");
    msgpack_pack_unsigned_int(pk, attempt);
    kiln_mp_str(pk, "kind");
    kiln_mp_str(pk, kind);
}

/* code, signal, wall_ms, cpu_ms, max_rss_kb: how a program ended and
 * what it used (exit and case frames) */
static void pack_figures(msgpack_packer *pk, int has_code, int code, int signal, int64_t wall_ms,
                         int64_t cpu_ms, int64_t max_rss_kb)
{
    kiln_mp_str(pk, "code");
    if (has_code)
        msgpack_pack_int(pk, code);
    else
        msgpack_pack_nil(pk);
    kiln_mp_str(pk, "signal");
    if (signal)
        msgpack_pack_int(pk, signal);
    else
        msgpack_pack_nil(pk);
    kiln_mp_str(pk, "wall_ms");
    msgpack_pack_int64(pk, wall_ms);
    kiln_mp_str(pk, "cpu_ms");
    msgpack_pack_int64(pk, cpu_ms);
    kiln_mp_str(pk, "max_rss_kb");
    msgpack_pack_int64(pk, max_rss_kb);
}

void kiln_frame_output(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                       int fd, const void *data, size_t len, int run)
{
    msgpack_packer pk;
    begin(sb, &pk, 5 + (run >= 0), id, seq, attempt, fd == 2 ? "stderr" : "stdout");
    kiln_mp_str(&pk, "data");
    kiln_mp_bin(&pk, data, len);
    if (run >= 0) {
        kiln_mp_str(&pk, "run");
        msgpack_pack_int(&pk, run);
    }
}

void kiln_frame_result(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                       const void *text, size_t len)
{
    msgpack_packer pk;
    begin(sb, &pk, 5, id, seq, attempt, "result");
    kiln_mp_str(&pk, "data");
    kiln_mp_bin(&pk, text, len);
}

void kiln_frame_file(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                     const struct kiln_file_chunk *f)
{
    msgpack_packer pk;
    begin(sb, &pk, 10 + (f->truncated != 0) + (f->run >= 0), id, seq, attempt, "file");
    kiln_mp_str(&pk, "path");
    kiln_mp_str(&pk, f->path);
    kiln_mp_str(&pk, "size");
    msgpack_pack_int64(&pk, f->size);
    kiln_mp_str(&pk, "mode");
    msgpack_pack_unsigned_int(&pk, f->mode);
    kiln_mp_str(&pk, "offset");
    msgpack_pack_int64(&pk, f->offset);
    kiln_mp_str(&pk, "data");
    kiln_mp_bin(&pk, f->data, f->len);
    kiln_mp_str(&pk, "last");
    f->last ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    if (f->truncated) {
        kiln_mp_str(&pk, "truncated");
        msgpack_pack_true(&pk);
    }
    if (f->run >= 0) {
        kiln_mp_str(&pk, "run");
        msgpack_pack_int(&pk, f->run);
    }
}

void kiln_frame_exit(msgpack_sbuffer *sb, const char *id, uint64_t seq,
                     const struct kiln_exit *e)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 11 + (e->reason != NULL) + (e->meta != NULL) + (e->run >= 0) +
                              2 * (e->runs_ok >= 0) + (e->ndenied > 0) + 3 * (e->has_verdict != 0) +
                              (e->build != NULL) + (e->collect != NULL) + (e->session != NULL));
    pack_id(&pk, id);
    kiln_mp_str(&pk, "seq");
    msgpack_pack_uint64(&pk, seq);
    kiln_mp_str(&pk, "kind");
    kiln_mp_str(&pk, "exit");
    kiln_mp_str(&pk, "status");
    kiln_mp_str(&pk, kiln_status_name(e->status));
    pack_figures(&pk, e->has_code, e->code, e->signal, e->wall_ms, e->cpu_ms, e->max_rss_kb);
    kiln_mp_str(&pk, "attempt");
    msgpack_pack_unsigned_int(&pk, e->attempt);
    kiln_mp_str(&pk, "worker");
    kiln_mp_str(&pk, e->worker ? e->worker : "");
    if (e->reason != NULL) {
        kiln_mp_str(&pk, "reason");
        kiln_mp_str(&pk, e->reason);
    }
    if (e->meta != NULL) {
        kiln_mp_str(&pk, "meta");
        msgpack_sbuffer_write(sb, (const char *)e->meta, e->meta_len);
    }
    if (e->run >= 0) {
        kiln_mp_str(&pk, "run");
        msgpack_pack_int(&pk, e->run);
    }
    if (e->collect != NULL) {
        kiln_mp_str(&pk, "collect");
        msgpack_sbuffer_write(sb, (const char *)e->collect, e->collect_len);
    }
    if (e->session != NULL) {
        kiln_mp_str(&pk, "session");
        msgpack_pack_map(&pk, 1 + (e->session_seq > 0));
        kiln_mp_str(&pk, "id");
        kiln_mp_str(&pk, e->session);
        if (e->session_seq > 0) {
            kiln_mp_str(&pk, "seq");
            msgpack_pack_int64(&pk, e->session_seq);
        }
    }
    if (e->ndenied > 0) {
        kiln_mp_str(&pk, "denied");
        msgpack_pack_array(&pk, e->ndenied);
        for (size_t i = 0; i < e->ndenied; i++)
            kiln_mp_str(&pk, e->denied[i]);
    }
    if (e->runs_ok >= 0) {
        kiln_mp_str(&pk, "runs");
        msgpack_pack_int(&pk, e->runs_total);
        kiln_mp_str(&pk, "runs_ok");
        msgpack_pack_int(&pk, e->runs_ok);
    }
    if (e->has_verdict) {
        kiln_mp_str(&pk, "verdict");
        kiln_mp_str(&pk, kiln_verdict_name(e->verdict));
        kiln_mp_str(&pk, "passed");
        msgpack_pack_int(&pk, e->passed);
        kiln_mp_str(&pk, "total");
        msgpack_pack_int(&pk, e->total);
    }
    if (e->build != NULL) {
        kiln_mp_str(&pk, "build");
        msgpack_pack_map(&pk, 4);
        kiln_mp_str(&pk, "status");
        kiln_mp_str(&pk, kiln_status_name(e->build->status));
        kiln_mp_str(&pk, "wall_ms");
        msgpack_pack_int64(&pk, e->build->wall_ms);
        kiln_mp_str(&pk, "cpu_ms");
        msgpack_pack_int64(&pk, e->build->cpu_ms);
        kiln_mp_str(&pk, "output");
        kiln_mp_bin(&pk, e->build->output, e->build->output_len);
    }
}

void kiln_frame_case(msgpack_sbuffer *sb, const char *id, uint64_t seq, unsigned attempt,
                     const struct kiln_case_result *c)
{
    msgpack_packer pk;
    int diff = c->verdict == KILN_VERDICT_WRONG_ANSWER && c->diff_at > 0;
    begin(sb, &pk, 11 + (c->reason != NULL) + 3 * diff + (c->err != NULL) + (c->collect != NULL), id, seq,
          attempt, "case");
    kiln_mp_str(&pk, "case");
    msgpack_pack_int(&pk, c->index);
    kiln_mp_str(&pk, "verdict");
    kiln_mp_str(&pk, kiln_verdict_name(c->verdict));
    pack_figures(&pk, c->has_code, c->code, c->signal, c->wall_ms, c->cpu_ms, c->max_rss_kb);
    if (c->reason != NULL) {
        kiln_mp_str(&pk, "reason");
        kiln_mp_str(&pk, c->reason);
    }
    if (diff) {
        kiln_mp_str(&pk, c->diff_tokens ? "token" : "line");
        msgpack_pack_int64(&pk, c->diff_at);
        kiln_mp_str(&pk, "expected");
        kiln_mp_bin(&pk, c->expected, c->expected_len);
        kiln_mp_str(&pk, "got");
        kiln_mp_bin(&pk, c->got, c->got_len);
    }
    if (c->err != NULL) {
        kiln_mp_str(&pk, "stderr");
        kiln_mp_bin(&pk, c->err, c->err_len);
    }
    if (c->collect != NULL) {
        kiln_mp_str(&pk, "collect");
        msgpack_sbuffer_write(sb, (const char *)c->collect, c->collect_len);
    }
}
