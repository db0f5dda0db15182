/* The agent protocol's messages, built and read (wire/agent_msg.h). */
#include "wire/agent_msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {
    [KILN_MSG_UNKNOWN] = "?",           [KILN_MSG_READY] = "ready",       [KILN_MSG_STARTED] = "started",
    [KILN_MSG_OUT] = "out",             [KILN_MSG_BEAT] = "beat",         [KILN_MSG_EXIT] = "exit",
    [KILN_MSG_COLLECTING] = "collecting", [KILN_MSG_ERROR] = "error",     [KILN_MSG_FILE] = "file",
    [KILN_MSG_COLLECT] = "collect",     [KILN_MSG_COLLECTED] = "collected", [KILN_MSG_RESULT] = "result",
    [KILN_MSG_HELLO] = "hello",         [KILN_MSG_PRESTART] = "prestart", [KILN_MSG_ZYGOTE] = "zygote",
    [KILN_MSG_RUN] = "run",             [KILN_MSG_KILL] = "kill",
};
#define NTYPES (sizeof(names) / sizeof(names[0]))

const char *kiln_msg_name(enum kiln_msg_type t)
{
    return (size_t)t < NTYPES ? names[t] : "?";
}

enum kiln_msg_type kiln_msg_type_of(const msgpack_object *m)
{
    const msgpack_object *t = kiln_mp_get(m, "t");
    for (size_t i = 1; t != NULL && i < NTYPES; i++)
        if (kiln_mp_streq(t, names[i]))
            return (enum kiln_msg_type)i;
    return KILN_MSG_UNKNOWN;
}

char *kiln_span_dup(const struct kiln_span *s)
{
    char *c;
    if (!s->set || (c = malloc(s->n + 1)) == NULL)
        return NULL;
    memcpy(c, s->p, s->n);
    c[s->n] = '\0';
    return c;
}

/* ---- reading helpers --------------------------------------------------- */

/* A str (or, with `bin`, a bin too) at `key` into `out`; 0 absent or nil,
 * 1 set, -1 another type. */
static int span(const msgpack_object *m, const char *key, int bin, struct kiln_span *out)
{
    const msgpack_object *o = kiln_mp_get(m, key);
    *out = (struct kiln_span){NULL, 0, 0};
    if (o == NULL || o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type == MSGPACK_OBJECT_STR)
        *out = (struct kiln_span){o->via.str.ptr, o->via.str.size, 1};
    else if (bin && o->type == MSGPACK_OBJECT_BIN)
        *out = (struct kiln_span){o->via.bin.ptr, o->via.bin.size, 1};
    else
        return -1;
    return 1;
}

/* An integer in [min, max] at `key` into *out, which keeps `absent` when
 * the key is not there; -1 when it is there and is not one. */
static int integer(const msgpack_object *m, const char *key, int64_t min, int64_t max, int64_t absent,
                   int64_t *out)
{
    const msgpack_object *o = kiln_mp_get(m, key);
    *out = absent;
    if (o == NULL || o->type == MSGPACK_OBJECT_NIL)
        return 0;
    return kiln_mp_int(o, min, max, out) == 0 ? 1 : -1;
}

/* An array of strings at `key` (NULL when absent); -1 when something else. */
static int strings(const msgpack_object *m, const char *key, const msgpack_object **out)
{
    const msgpack_object *o = kiln_mp_get(m, key);
    *out = NULL;
    if (o == NULL)
        return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return -1;
    for (uint32_t i = 0; i < o->via.array.size; i++)
        if (o->via.array.ptr[i].type != MSGPACK_OBJECT_STR)
            return -1;
    *out = o;
    return 1;
}

/* ---- building helpers ---------------------------------------------------- */

static void strv(msgpack_packer *pk, const char *const *v, size_t n)
{
    msgpack_pack_array(pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        kiln_mp_str(pk, v[i]);
}

void kiln_msg_pack_bare(msgpack_sbuffer *sb, enum kiln_msg_type t)
{
    struct kiln_map m;
    kiln_proto_msg(&m, kiln_msg_name(t));
    kiln_proto_end_msg(&m, sb);
}

/* ---- agent -> worker ------------------------------------------------------- */

void kiln_msg_pack_ready(msgpack_sbuffer *sb, const struct kiln_msg_ready *r)
{
    struct kiln_map m;
    kiln_proto_msg(&m, "ready");
    kiln_map_int(&m, "v", r->v);
    kiln_map_int(&m, "pid", r->pid);
    kiln_map_bool(&m, "warm", r->warm);
    kiln_proto_end_msg(&m, sb);
}

int kiln_msg_read_ready(const msgpack_object *m, struct kiln_msg_ready *out)
{
    memset(out, 0, sizeof(*out));
    if (integer(m, "v", INT64_MIN, INT64_MAX, -1, &out->v) <= 0 ||
        integer(m, "pid", 0, INT64_MAX, 0, &out->pid) < 0)
        return -EPROTO;
    out->warm = kiln_mp_true(m, "warm");
    return 0;
}

void kiln_msg_pack_out(msgpack_sbuffer *sb, const struct kiln_msg_out *o)
{
    struct kiln_map m;
    kiln_proto_msg(&m, "out");
    kiln_map_int(&m, "fd", o->fd);
    kiln_map_bin(&m, "data", o->data.p, o->data.n);
    kiln_proto_end_msg(&m, sb);
}

int kiln_msg_read_out(const msgpack_object *m, struct kiln_msg_out *out)
{
    int64_t fd;
    if (integer(m, "fd", INT64_MIN, INT64_MAX, 1, &fd) < 0 || span(m, "data", 1, &out->data) <= 0 ||
        kiln_mp_get(m, "data")->type != MSGPACK_OBJECT_BIN)
        return -EPROTO;
    out->fd = fd == 2 ? 2 : 1;
    return 0;
}

void kiln_msg_pack_end(msgpack_sbuffer *sb, enum kiln_msg_type t, const struct kiln_msg_end *e)
{
    struct kiln_map m;
    kiln_proto_msg(&m, kiln_msg_name(t));
    if (e->reached_end >= 0)
        kiln_map_bool(&m, "reached_end", e->reached_end);
    if (e->has_code)
        kiln_map_int(&m, "code", e->code);
    else
        kiln_map_nil(&m, "code");
    if (e->signal)
        kiln_map_int(&m, "signal", e->signal);
    else
        kiln_map_nil(&m, "signal");
    kiln_map_int(&m, "wall_ms", e->wall_ms);
    kiln_map_int(&m, "cpu_ms", e->cpu_ms);
    kiln_map_int(&m, "max_rss_kb", e->max_rss_kb);
    if (e->cpu_limit)
        kiln_map_bool(&m, "cpu_limit", 1);
    if (e->session.set) /* a session's job: "alive", or "ended" with its interpreter */
        kiln_mp_strn(kiln_map_key(&m, "session"), e->session.p, e->session.n);
    if (e->peak_kb >= 0) /* the guest kernel's own accounting of the job's cgroup */
        kiln_map_int(&m, "peak_kb", e->peak_kb);
    if (e->oom_kills >= 0)
        kiln_map_int(&m, "oom_kills", e->oom_kills);
    kiln_proto_end_msg(&m, sb);
}

int kiln_msg_read_end(const msgpack_object *m, struct kiln_msg_end *out)
{
    int64_t code, sig;
    const msgpack_object *o;
    memset(out, 0, sizeof(*out));
    /* what cannot be read stays as if absent: the figures are reports, and
     * the worker keeps its own (the cgroup's) where it has them */
    integer(m, "wall_ms", 0, INT64_MAX, 0, &out->wall_ms);
    integer(m, "cpu_ms", 0, INT64_MAX, 0, &out->cpu_ms);
    integer(m, "max_rss_kb", 0, INT64_MAX, 0, &out->max_rss_kb);
    integer(m, "peak_kb", 0, INT64_MAX, -1, &out->peak_kb);
    integer(m, "oom_kills", 0, INT64_MAX, -1, &out->oom_kills);
    if (integer(m, "signal", 1, 128, 0, &sig) < 0)
        sig = 0;
    if (integer(m, "code", 0, 255, -1, &code) < 0)
        code = -1;
    out->signal = (int)sig;
    out->has_code = code >= 0;
    out->code = out->has_code ? (int)code : 0;
    out->cpu_limit = kiln_mp_true(m, "cpu_limit");
    if (span(m, "session", 0, &out->session) < 0)
        out->session = (struct kiln_span){"", 0, 1}; /* a session's, not "alive" */
    o = kiln_mp_get(m, "reached_end");
    out->reached_end = o == NULL ? -1 : o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
    return 0;
}

void kiln_msg_pack_error(msgpack_sbuffer *sb, const struct kiln_msg_error *e)
{
    struct kiln_map m;
    kiln_proto_msg(&m, "error");
    kiln_mp_strn(kiln_map_key(&m, "reason"), e->reason.p, e->reason.n);
    if (e->job_fault)
        kiln_map_str(&m, "fault", "job");
    kiln_proto_end_msg(&m, sb);
}

int kiln_msg_read_error(const msgpack_object *m, struct kiln_msg_error *out)
{
    const msgpack_object *f = kiln_mp_get(m, "fault");
    if (span(m, "reason", 0, &out->reason) < 0)
        out->reason.set = 0;
    out->job_fault = f != NULL && kiln_mp_streq(f, "job");
    return 0;
}

void kiln_msg_pack_file(msgpack_sbuffer *sb, const struct kiln_msg_file *f)
{
    struct kiln_map m;
    kiln_proto_msg(&m, "file");
    kiln_mp_strn(kiln_map_key(&m, "path"), f->path.p, f->path.n);
    if (f->error.set) {
        kiln_mp_strn(kiln_map_key(&m, "error"), f->error.p, f->error.n);
    } else {
        kiln_map_int(&m, "mode", f->mode);
        kiln_map_bin(&m, "data", f->data.p, f->data.n);
    }
    kiln_proto_end_msg(&m, sb);
}

int kiln_msg_read_file(const msgpack_object *m, struct kiln_msg_file *out)
{
    memset(out, 0, sizeof(*out));
    if (span(m, "path", 0, &out->path) <= 0 || span(m, "error", 0, &out->error) < 0 ||
        integer(m, "mode", 0, 07777, 0600, &out->mode) < 0)
        return -EPROTO;
    if (!out->error.set) {
        const msgpack_object *d = kiln_mp_get(m, "data");
        if (d == NULL || d->type != MSGPACK_OBJECT_BIN)
            return -EPROTO;
        out->data = (struct kiln_span){d->via.bin.ptr, d->via.bin.size, 1};
    }
    return 0;
}

void kiln_msg_pack_chunk(msgpack_sbuffer *sb, const struct kiln_msg_chunk *c)
{
    struct kiln_map m;
    kiln_proto_msg(&m, "collect");
    kiln_mp_strn(kiln_map_key(&m, "path"), c->path.p, c->path.n);
    kiln_map_int(&m, "size", c->size);
    kiln_map_int(&m, "mode", c->mode);
    kiln_map_int(&m, "offset", c->offset);
    kiln_map_bin(&m, "data", c->data.p, c->data.n);
    kiln_map_bool(&m, "last", c->last);
    kiln_map_bool(&m, "truncated", c->truncated);
    kiln_proto_end_msg(&m, sb);
}

int kiln_msg_read_chunk(const msgpack_object *m, struct kiln_msg_chunk *out)
{
    const msgpack_object *d = kiln_mp_get(m, "data");
    memset(out, 0, sizeof(*out));
    if (span(m, "path", 0, &out->path) <= 0 || d == NULL || d->type != MSGPACK_OBJECT_BIN ||
        integer(m, "size", 0, INT64_MAX / 2, -1, &out->size) <= 0 ||
        integer(m, "mode", 0, 07777, -1, &out->mode) <= 0 ||
        integer(m, "offset", 0, out->size, -1, &out->offset) <= 0)
        return -EPROTO;
    out->data = (struct kiln_span){d->via.bin.ptr, d->via.bin.size, 1};
    out->last = kiln_mp_true(m, "last");
    out->truncated = kiln_mp_true(m, "truncated");
    return 0;
}

void kiln_msg_pack_collected(msgpack_sbuffer *sb, const struct kiln_msg_collected *c)
{
    struct kiln_map m;
    kiln_proto_msg(&m, "collected");
    kiln_map_int(&m, "matched", c->matched);
    kiln_map_int(&m, "sent", c->sent);
    kiln_map_int(&m, "truncated", c->truncated);
    kiln_map_int(&m, "skipped", c->skipped);
    kiln_map_bool(&m, "walk_cut", c->walk_cut);
    msgpack_packer *pk = kiln_map_key(&m, "skipped_list");
    msgpack_pack_array(pk, c->nlisted);
    if (c->listed_len > 0)
        msgpack_pack_bin_body(pk, c->listed, c->listed_len); /* the pairs as packed */
    kiln_proto_end_msg(&m, sb);
}

int kiln_msg_read_collected(const msgpack_object *m, struct kiln_msg_collected *out)
{
    static const char *const counts[] = {"matched", "sent", "truncated", "skipped"};
    int64_t *v[] = {&out->matched, &out->sent, &out->truncated, &out->skipped};
    const msgpack_object *list = kiln_mp_get(m, "skipped_list");
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < 4; i++)
        if (integer(m, counts[i], 0, INT64_MAX / 2, 0, v[i]) < 0)
            *v[i] = 0;
    out->walk_cut = kiln_mp_true(m, "walk_cut");
    out->list = list != NULL && list->type == MSGPACK_OBJECT_ARRAY ? list : NULL;
    return 0;
}

void kiln_msg_pack_result(msgpack_sbuffer *sb, const void *text, size_t len)
{
    struct kiln_map m;
    kiln_proto_msg(&m, "result");
    kiln_map_bin(&m, "data", text, len);
    kiln_proto_end_msg(&m, sb);
}

int kiln_msg_read_result(const msgpack_object *m, struct kiln_span *text)
{
    const msgpack_object *d = kiln_mp_get(m, "data");
    if (d == NULL || d->type != MSGPACK_OBJECT_BIN)
        return -EPROTO;
    *text = (struct kiln_span){d->via.bin.ptr, d->via.bin.size, 1};
    return 0;
}

/* ---- worker -> agent --------------------------------------------------------- */

void kiln_msg_pack_hello(msgpack_sbuffer *sb, const struct kiln_msg_hello *h)
{
    struct kiln_map m;
    kiln_proto_msg(&m, "hello");
    kiln_map_int(&m, "now_ns", h->now_ns);
    kiln_map_bin(&m, "seed", h->seed.p, h->seed.n);
    kiln_proto_end_msg(&m, sb);
}

int kiln_msg_read_hello(const msgpack_object *m, struct kiln_msg_hello *out)
{
    const msgpack_object *s = kiln_mp_get(m, "seed");
    memset(out, 0, sizeof(*out));
    if (integer(m, "now_ns", 0, INT64_MAX, 0, &out->now_ns) < 0)
        return -EPROTO;
    if (s != NULL && s->type == MSGPACK_OBJECT_BIN)
        out->seed = (struct kiln_span){s->via.bin.ptr, s->via.bin.size, 1};
    return 0;
}

static void pack_command(struct kiln_map *m, const struct kiln_msg_command *c)
{
    strv(kiln_map_key(m, "argv"), c->argv, c->argc);
    strv(kiln_map_key(m, "env"), c->env, c->nenv);
    kiln_map_str(m, "cwd", c->cwd);
}

void kiln_msg_pack_start(msgpack_sbuffer *sb, enum kiln_msg_type t, const struct kiln_msg_command *c)
{
    struct kiln_map m;
    kiln_proto_msg(&m, kiln_msg_name(t));
    pack_command(&m, c);
    kiln_proto_end_msg(&m, sb);
}

void kiln_msg_pack_run(msgpack_sbuffer *sb, const struct kiln_msg_run *r)
{
    struct kiln_map m, sub;
    kiln_proto_msg(&m, "run");
    if (r->end) /* the agent leaves a token for the runner, and looks for it after */
        kiln_map_bool(&m, "end", 1);
    if (r->cell.set) { /* a user session's: the sandbox stays for its next job */
        kiln_map_bool(&m, "session", 1);
        kiln_map_bin(&m, "cell", r->cell.p, r->cell.n);
        kiln_map_int(&m, "timeout_ms", r->timeout_ms > 0 ? r->timeout_ms : 0);
        if (r->keep_running)
            kiln_map_bool(&m, "keep_running", 1);
    }
    if (r->ncollect > 0) {
        strv(kiln_map_key(&m, "collect_globs"), r->collect_globs, r->ncollect);
        kiln_map_int(&m, "collect_bytes", r->collect_bytes);
        kiln_map_int(&m, "collect_files", r->collect_files);
        kiln_map_int(&m, "collect_names", r->collect_names);
    }
    if (r->ca.set) /* a jail has it in its proxy directory already */
        kiln_map_bin(&m, "ca", r->ca.p, r->ca.n);
    if (r->cpu_ms > 0)
        kiln_map_int(&m, "cpu_ms", r->cpu_ms);
    if (r->collect.set)
        kiln_mp_strn(kiln_map_key(&m, "collect"), r->collect.p, r->collect.n);
    /* for agents that enforce them (a VM's); a jail's are on the host */
    kiln_map_init(&sub);
    kiln_map_int(&sub, "memory_bytes", r->memory_bytes);
    kiln_map_int(&sub, "pids", r->pids);
    kiln_map_end(&sub, kiln_map_key(&m, "limits"));
    kiln_map_bool(&m, "proxy", r->proxy);
    /* per process, by the kernel: CPU seconds (SIGXCPU), file size
     * (SIGXFSZ), open descriptors */
    kiln_map_init(&sub);
    kiln_map_int(&sub, "cpu", r->rl_cpu);
    kiln_map_int(&sub, "fsize", r->rl_fsize);
    kiln_map_int(&sub, "nofile", r->rl_nofile);
    kiln_map_end(&sub, kiln_map_key(&m, "rlimits"));
    pack_command(&m, &r->cmd);
    msgpack_packer *pk = kiln_map_key(&m, "files");
    msgpack_pack_array(pk, (uint32_t)r->nfiles);
    for (size_t i = 0; i < r->nfiles; i++) {
        msgpack_pack_array(pk, 3);
        kiln_mp_str(pk, r->files[i].path);
        kiln_mp_bin(pk, r->files[i].data, r->files[i].len);
        msgpack_pack_unsigned_int(pk, r->files[i].mode);
    }
    if (r->stdin_data.set)
        kiln_map_bin(&m, "stdin", r->stdin_data.p, r->stdin_data.n);
    else
        kiln_map_nil(&m, "stdin");
    kiln_proto_end_msg(&m, sb);
}

/* Each file is [path: str, data: bin, mode: uint]. */
static int files_ok(const msgpack_object *o)
{
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *f = &o->via.array.ptr[i];
        if (f->type != MSGPACK_OBJECT_ARRAY || f->via.array.size != 3 ||
            f->via.array.ptr[0].type != MSGPACK_OBJECT_STR || f->via.array.ptr[1].type != MSGPACK_OBJECT_BIN ||
            f->via.array.ptr[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return 0;
    }
    return 1;
}

int kiln_msg_read_run(const msgpack_object *m, struct kiln_msg_run *out)
{
    const msgpack_object *o, *l;
    memset(out, 0, sizeof(*out));
    if (strings(m, "argv", &out->cmd.argv_in) <= 0 || out->cmd.argv_in->via.array.size == 0 ||
        strings(m, "env", &out->cmd.env_in) <= 0 || span(m, "cwd", 0, &out->cmd.cwd_in) < 0 ||
        strings(m, "collect_globs", &out->collect_globs_in) < 0 || span(m, "collect", 0, &out->collect) < 0 ||
        span(m, "ca", 1, &out->ca) < 0 || span(m, "stdin", 1, &out->stdin_data) < 0 ||
        integer(m, "cpu_ms", 0, INT64_MAX, 0, &out->cpu_ms) < 0 ||
        integer(m, "collect_bytes", 0, INT64_MAX / 2, 0, &out->collect_bytes) < 0 ||
        integer(m, "collect_files", 0, KILN_COLLECT_FILES_MAX, 0, &out->collect_files) < 0 ||
        integer(m, "collect_names", 0, KILN_COLLECT_NAMES_MAX, 0, &out->collect_names) < 0 ||
        integer(m, "timeout_ms", 0, INT64_MAX, 0, &out->timeout_ms) < 0)
        return -EPROTO;
    if ((o = kiln_mp_get(m, "files")) != NULL) {
        if (o->type != MSGPACK_OBJECT_ARRAY || !files_ok(o))
            return -EPROTO;
        out->files_in = o;
    }
    out->rl_cpu = out->rl_fsize = out->rl_nofile = -1;
    if ((l = kiln_mp_get(m, "rlimits")) != NULL &&
        (integer(l, "cpu", 0, INT64_MAX, -1, &out->rl_cpu) < 0 ||
         integer(l, "fsize", 0, INT64_MAX, -1, &out->rl_fsize) < 0 ||
         integer(l, "nofile", 0, INT64_MAX, -1, &out->rl_nofile) < 0))
        return -EPROTO;
    if ((l = kiln_mp_get(m, "limits")) != NULL &&
        (integer(l, "memory_bytes", 0, INT64_MAX, 0, &out->memory_bytes) < 0 ||
         integer(l, "pids", 0, INT64_MAX, 0, &out->pids) < 0))
        return -EPROTO;
    out->proxy = kiln_mp_true(m, "proxy");
    out->end = kiln_mp_true(m, "end");
    out->session = kiln_mp_get(m, "session") != NULL;
    if (out->session) {
        const msgpack_object *c = kiln_mp_get(m, "cell");
        if (c != NULL && c->type == MSGPACK_OBJECT_BIN)
            out->cell = (struct kiln_span){c->via.bin.ptr, c->via.bin.size, 1};
        out->keep_running = kiln_mp_true(m, "keep_running");
    }
    return 0;
}

/* ---- the envelope and the session FIFO ------------------------------------- */

char *kiln_envelope_pack(const char *const *argv, const char *const *env, const void *in, size_t in_len,
                         size_t *total)
{
    size_t argc = 0, len = 24;
    for (const char *const *a = argv; *a; a++, argc++)
        len += strlen(*a) + 1;
    for (const char *const *e = env; *e; e++)
        len += strlen(*e) + 1;
    char *buf = malloc(4 + len + in_len);
    if (buf == NULL)
        return NULL;
    char *p = buf + 4;
    p += sprintf(p, "%zu", argc);
    for (const char *const *a = argv; *a; a++)
        p += sprintf(p, "%c%s", '\0', *a);
    for (const char *const *e = env; *e; e++)
        p += sprintf(p, "%c%s", '\0', *e);
    kiln_proto_header((unsigned char *)buf, (uint32_t)(p - buf - 4));
    if (in_len > 0)
        memcpy(p, in, in_len);
    *total = (size_t)(p - buf) + in_len;
    return buf;
}

int kiln_repl_cell_head(char *buf, size_t len, size_t code_len, int64_t timeout_ms)
{
    return snprintf(buf, len, "%zu %lld\n", code_len, (long long)timeout_ms);
}

long kiln_repl_ctl_next(const char *buf, size_t len, size_t max, struct kiln_repl_ctl *out)
{
    const char *nl = memchr(buf, '\n', len < 64 ? len : 64);
    char head[64], *end;
    if (nl == NULL)
        return len >= 64 ? -1 : 0;
    size_t hlen = (size_t)(nl - buf);
    memcpy(head, buf, hlen);
    head[hlen] = '\0';
    if (hlen < 3 || head[1] != ' ' || head[2] < '0' || head[2] > '9')
        return -1;
    long long v = strtoll(head + 2, &end, 10);
    if (*end != '\0' || v < 0)
        return -1;
    memset(out, 0, sizeof(*out));
    out->kind = head[0];
    if (head[0] == 'E') {
        out->code = (int)(v & 0xff);
        return (long)hlen + 1;
    }
    if (head[0] != 'R' || (unsigned long long)v > max)
        return -1;
    if (len - hlen - 1 < (size_t)v)
        return 0; /* the rest is coming */
    out->text = (struct kiln_span){nl + 1, (size_t)v, 1};
    return (long)(hlen + 1 + (size_t)v);
}
