#include "core/link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chan.h"
#include "core/plan.h"
#include "sandbox/backend.h"
#include "wire/proto.h"

static void emit(struct kiln_link *s, const struct kiln_link_event *ev)
{
    if (s->on_event != NULL)
        s->on_event(s->arg, ev);
}

/* The link is over: once the sandbox has exited and the channel is
 * closed, its owner hears GONE and the link is freed. */
static void on_grace_closed(uv_handle_t *h)
{
    free(h->data);
}

static void maybe_gone(struct kiln_link *s)
{
    if (s->sb != NULL || s->chan != NULL)
        return;
    struct kiln_link_event ev = {.type = KILN_LINK_EV_GONE, .wstatus = s->end.wstatus,
                                    .ru = &s->end.ru, .peak_kb = s->end.peak_kb,
                                    .oom_kills = s->end.oom_kills};
    emit(s, &ev);
    uv_close((uv_handle_t *)&s->grace, on_grace_closed); /* then freed */
}

void kiln_link_kill(struct kiln_link *s)
{
    s->state = KILN_LINK_ENDED;
    uv_timer_stop(&s->grace);
    if (s->sb != NULL)
        s->sb->backend->ops->kill(s->sb);
}

static void on_grace(uv_timer_t *t)
{
    struct kiln_link *s = t->data;
    int cut = s->collecting && s->state == KILN_LINK_RUNNING;
    kiln_link_kill(s);
    if (cut) { /* the job ended as "collecting" said; its files did not all come */
        s->ended.collect_cut = 1;
        struct kiln_link_event ev = {.type = KILN_LINK_EV_EXIT, .exit = &s->ended};
        emit(s, &ev);
    }
}

void kiln_link_stop(struct kiln_link *s)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    if (s->collecting) { /* the job is over: only its files are left to stop */
        kiln_link_kill(s);
        return;
    }
    if (uv_is_active((uv_handle_t *)&s->grace))
        return; /* asked already: the grace runs */
    if (s->state != KILN_LINK_RUNNING || s->chan == NULL) {
        kiln_link_kill(s);
        return;
    }
    kiln_proto_begin_msg(&sb, &pk, "kill", 0);
    if (kiln_chan_send(s->chan, &sb) < 0) {
        kiln_link_kill(s);
        return;
    }
    uv_timer_start(&s->grace, on_grace, s->keep ? KILN_LINK_KEPT_GRACE_MS : KILN_LINK_GRACE_MS, 0);
}

/* The conversation cannot go on: the owner hears why, the sandbox goes. */
static void fail(struct kiln_link *s, const char *reason, int agent, int job_fault)
{
    if (s->state == KILN_LINK_ENDED)
        return;
    kiln_link_kill(s);
    struct kiln_link_event ev = {.type = KILN_LINK_EV_ERROR, .reason = reason,
                                    .agent = agent, .job_fault = job_fault};
    emit(s, &ev);
}

static void ready(struct kiln_link *s)
{
    s->state = KILN_LINK_READY;
    struct kiln_link_event ev = {.type = KILN_LINK_EV_READY};
    emit(s, &ev);
}

void kiln_link_pack_start(msgpack_sbuffer *sb, const char *type, const struct kiln_plan *plan)
{
    msgpack_packer pk;
    kiln_proto_begin_msg(sb, &pk, type, 3);
    kiln_plan_pack_command(&pk, plan);
    kiln_mp_str(&pk, "cwd");
    kiln_mp_str(&pk, "/work");
}

static void on_ready(struct kiln_link *s, const msgpack_object *m)
{
    char why[160];
    if (s->state != KILN_LINK_BOOTING)
        return; /* said once; a second is noise */
    if (kiln_proto_check_ready(m, why, sizeof(why)) < 0) {
        fail(s, why, 0, 0);
        return;
    }
    /* a sandbox forked from a template has its interpreter up already */
    if (s->prestart == NULL || s->prestart->argc == 0 || kiln_mp_true(m, "warm")) {
        ready(s);
        return;
    }
    msgpack_sbuffer sb;
    kiln_link_pack_start(&sb, "prestart", s->prestart);
    s->state = KILN_LINK_WARMING;
    if (kiln_chan_send(s->chan, &sb) < 0)
        fail(s, "could not send prestart to the sandbox", 0, 0);
}

static void get_int(const msgpack_object *m, const char *key, int64_t min, int64_t max,
                    int64_t *out)
{
    const msgpack_object *o = kiln_mp_get(m, key);
    int64_t v;
    if (o != NULL && kiln_mp_int(o, min, max, &v) == 0)
        *out = v;
}

static int need_int(const msgpack_object *m, const char *key, int64_t min, int64_t max, int64_t *out)
{
    const msgpack_object *o = kiln_mp_get(m, key);
    return o != NULL && kiln_mp_int(o, min, max, out) == 0 ? 0 : -1;
}

/* The agent's exit report, and the kernel's accounting of the sandbox:
 * the host's cgroup, or a VM's own kernel as its agent read it. */
/* The figures of "exit" (or "collecting") and the kernel's. */
static void parse_exit(struct kiln_link *s, const msgpack_object *m, struct kiln_link_exit *out)
{
    struct kiln_link_exit ex = {.peak_kb = -1};
    int64_t code = -1, sig = 0;
    get_int(m, "wall_ms", 0, INT64_MAX, &ex.wall_ms);
    get_int(m, "cpu_ms", 0, INT64_MAX, &ex.cpu_ms);
    get_int(m, "max_rss_kb", 0, INT64_MAX, &ex.max_rss_kb);
    get_int(m, "signal", 1, 128, &sig);
    get_int(m, "code", 0, 255, &code);
    ex.signal = (int)sig;
    ex.cpu_limit = kiln_mp_true(m, "cpu_limit");
    const msgpack_object *o = kiln_mp_get(m, "session");
    ex.ended = s->keep && (o == NULL || !kiln_mp_streq(o, "alive"));
    ex.has_code = code >= 0;
    ex.code = ex.has_code ? (int)code : 0;
    o = kiln_mp_get(m, "reached_end");
    ex.reached_end = !s->expect_end ? -1 : o != NULL && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
    const struct kiln_backend_ops *ops = s->sb->backend->ops;
    if (ops->stats != NULL)
        ops->stats(s->sb, &ex.peak_kb, &ex.oom_kills);
    if (ops->agent_limits) {
        get_int(m, "peak_kb", 0, INT64_MAX, &ex.peak_kb);
        get_int(m, "oom_kills", 0, INT64_MAX, &ex.oom_kills);
    }
    *out = ex;
}

static void on_exit_msg(struct kiln_link *s, const msgpack_object *m)
{
    struct kiln_link_exit ex;
    if (s->state != KILN_LINK_RUNNING)
        return;
    parse_exit(s, m, &ex);
    if (s->keep && !ex.ended) { /* the kept interpreter waits for the user session's next job */
        uv_timer_stop(&s->grace);
        s->state = KILN_LINK_READY;
        s->collecting = 0;
        s->file.open = 0;
    } else {
        kiln_link_kill(s); /* one job per sandbox */
    }
    struct kiln_link_event ev = {.type = KILN_LINK_EV_EXIT, .exit = &ex};
    emit(s, &ev);
}

/* The job has ended and its `collect` files follow: once, for a run that
 * asked, with one deadline for all of them. */
static void on_collecting_msg(struct kiln_link *s, const msgpack_object *m)
{
    if (s->state != KILN_LINK_RUNNING)
        return;
    if (!s->collect_expected || s->collecting) {
        fail(s, "the sandbox broke the collect protocol (collecting)", 0, 0);
        return;
    }
    s->collecting = 1;
    parse_exit(s, m, &s->ended);
    uv_timer_stop(&s->grace);
    uv_timer_start(&s->grace, on_grace, KILN_LINK_COLLECT_MS, 0);
    struct kiln_link_event ev = {.type = KILN_LINK_EV_COLLECTING};
    emit(s, &ev);
}

/* The file the run asked back, or why it could not come. */
static void on_file_msg(struct kiln_link *s, const msgpack_object *m)
{
    const msgpack_object *path = kiln_mp_get(m, "path"), *data = kiln_mp_get(m, "data");
    const msgpack_object *why = kiln_mp_get(m, "error");
    int64_t mode = 0600;
    char *p = path ? kiln_mp_strdup(path) : NULL, *w = why ? kiln_mp_strdup(why) : NULL;
    if (s->state == KILN_LINK_RUNNING && p != NULL &&
        (w != NULL || (data != NULL && data->type == MSGPACK_OBJECT_BIN))) {
        get_int(m, "mode", 0, 07777, &mode);
        struct kiln_link_event ev = {.type = KILN_LINK_EV_FILE, .path = p, .file_error = w,
                                        .mode = (unsigned)mode};
        if (w == NULL) {
            ev.data = data->via.bin.ptr;
            ev.len = data->via.bin.size;
        }
        emit(s, &ev);
    }
    free(p);
    free(w);
}

/* One chunk of a `collect` file. */
static void on_chunk_msg(struct kiln_link *s, const msgpack_object *m)
{
    const msgpack_object *path = kiln_mp_get(m, "path"), *data = kiln_mp_get(m, "data");
    int64_t size = 0, mode = 0, offset = 0;
    char *p;
    if (s->state != KILN_LINK_RUNNING)
        return;
    /* what an agent sends: a file's chunks in order, full but its last, one
     * file after another, under a plain relative UTF-8 path */
    int last = kiln_mp_true(m, "last");
    if (!s->collecting || path == NULL || path->type != MSGPACK_OBJECT_STR || path->via.str.size == 0 ||
        path->via.str.size > KILN_COLLECT_PATH_MAX || data == NULL || data->type != MSGPACK_OBJECT_BIN ||
        data->via.bin.size > KILN_COLLECT_CHUNK || (!last && data->via.bin.size != KILN_COLLECT_CHUNK) ||
        need_int(m, "size", 0, INT64_MAX / 2, &size) < 0 || need_int(m, "mode", 0, 07777, &mode) < 0 ||
        need_int(m, "offset", 0, size, &offset) < 0 || (int64_t)data->via.bin.size > size - offset ||
        !kiln_utf8_ok((const unsigned char *)path->via.str.ptr, path->via.str.size) ||
        (p = kiln_mp_strdup(path)) == NULL) {
        fail(s, "the sandbox broke the collect protocol (a chunk)", 0, 0);
        return;
    }
    int fresh = offset == 0 && !s->file.open;
    if (!kiln_rel_path_ok(p) || !(fresh || (s->file.open && offset == s->file.next &&
                                           strcmp(p, s->file.path) == 0))) {
        free(p);
        fail(s, "the sandbox broke the collect protocol (a chunk out of order)", 0, 0);
        return;
    }
    if (fresh)
        strcpy(s->file.path, p);
    s->file.open = !last;
    s->file.next = offset + (int64_t)data->via.bin.size;
    struct kiln_file_chunk c = {.path = p, .size = size, .mode = (unsigned)mode, .offset = offset,
                                .data = data->via.bin.ptr, .len = data->via.bin.size,
                                .last = last, .truncated = kiln_mp_true(m, "truncated"), .run = -1};
    struct kiln_link_event ev = {.type = KILN_LINK_EV_CHUNK, .chunk = &c};
    emit(s, &ev);
    free(p);
}

/* A skipped file as a guest's agent lists it: [path, why], short UTF-8. */
static int listable(const msgpack_object *e)
{
    if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2)
        return 0;
    for (int i = 0; i < 2; i++) {
        const msgpack_object *x = &e->via.array.ptr[i];
        if (x->type != MSGPACK_OBJECT_STR || x->via.str.size > 300 ||
            !kiln_utf8_ok((const unsigned char *)x->via.str.ptr, x->via.str.size))
            return 0;
    }
    return 1;
}

/* What `collect` matched and sent, re-packed here with bounds (a guest's
 * agent is not trusted to keep them). */
static void on_collected_msg(struct kiln_link *s, const msgpack_object *m)
{
    static const char *const counts[] = {"matched", "sent", "truncated", "skipped"};
    const msgpack_object *list = kiln_mp_get(m, "skipped_list");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n = list != NULL && list->type == MSGPACK_OBJECT_ARRAY ? list->via.array.size : 0;
    if (s->state != KILN_LINK_RUNNING || !s->collecting)
        return;
    if (n > 100)
        n = 100;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    for (size_t i = 0; i < 4; i++) {
        int64_t v = 0;
        get_int(m, counts[i], 0, INT64_MAX / 2, &v);
        kiln_mp_str(&pk, counts[i]);
        msgpack_pack_int64(&pk, v);
    }
    kiln_mp_str(&pk, "walk_cut");
    kiln_mp_true(m, "walk_cut") ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    kiln_mp_str(&pk, "skipped_files");
    uint32_t ok = 0;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &list->via.array.ptr[i];
        ok += e->type == MSGPACK_OBJECT_ARRAY && e->via.array.size == 2 &&
              e->via.array.ptr[0].type == MSGPACK_OBJECT_STR && e->via.array.ptr[1].type == MSGPACK_OBJECT_STR &&
              listable(e);
    }
    msgpack_pack_array(&pk, ok);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &list->via.array.ptr[i];
        if (!listable(e))
            continue;
        msgpack_pack_map(&pk, 2);
        kiln_mp_str(&pk, "path");
        kiln_mp_strn(&pk, e->via.array.ptr[0].via.str.ptr, e->via.array.ptr[0].via.str.size);
        kiln_mp_str(&pk, "why");
        kiln_mp_strn(&pk, e->via.array.ptr[1].via.str.ptr, e->via.array.ptr[1].via.str.size);
    }
    struct kiln_link_event ev = {.type = KILN_LINK_EV_COLLECTED, .data = sb.data, .len = sb.size};
    emit(s, &ev);
    msgpack_sbuffer_destroy(&sb);
}

static void on_msg(void *arg, const msgpack_object *m)
{
    struct kiln_link *s = arg;
    const msgpack_object *t = kiln_mp_get(m, "t"), *o;
    if (t == NULL)
        return;
    s->t_heard = uv_now(s->loop);
    if (kiln_mp_streq(t, "ready")) {
        on_ready(s, m);
    } else if (kiln_mp_streq(t, "started")) {
        if (s->state == KILN_LINK_WARMING)
            ready(s);
    } else if (kiln_mp_streq(t, "out")) {
        const msgpack_object *fd = kiln_mp_get(m, "fd"), *data = kiln_mp_get(m, "data");
        if (s->state != KILN_LINK_RUNNING || fd == NULL || data == NULL ||
            data->type != MSGPACK_OBJECT_BIN)
            return;
        struct kiln_link_event ev = {.type = KILN_LINK_EV_OUTPUT,
                                        .fd = fd->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                                              fd->via.u64 == 2 ? 2 : 1,
                                        .data = data->via.bin.ptr, .len = data->via.bin.size};
        emit(s, &ev);
    } else if (kiln_mp_streq(t, "file")) {
        on_file_msg(s, m);
    } else if (kiln_mp_streq(t, "collecting")) {
        on_collecting_msg(s, m);
    } else if (kiln_mp_streq(t, "collect")) {
        on_chunk_msg(s, m);
    } else if (kiln_mp_streq(t, "collected")) {
        on_collected_msg(s, m);
    } else if (kiln_mp_streq(t, "exit")) {
        on_exit_msg(s, m);
    } else if (kiln_mp_streq(t, "result")) {
        const msgpack_object *data = kiln_mp_get(m, "data");
        if (s->state != KILN_LINK_RUNNING || !s->keep || data == NULL ||
            data->type != MSGPACK_OBJECT_BIN || data->via.bin.size > KILN_REPL_RESULT_MAX)
            return;
        struct kiln_link_event ev = {.type = KILN_LINK_EV_RESULT, .data = data->via.bin.ptr,
                                        .len = data->via.bin.size};
        emit(s, &ev);
    } else if (kiln_mp_streq(t, "error")) {
        char *why = (o = kiln_mp_get(m, "reason")) ? kiln_mp_strdup(o) : NULL;
        int job = (o = kiln_mp_get(m, "fault")) != NULL && kiln_mp_streq(o, "job");
        if (job && s->keep && s->state == KILN_LINK_RUNNING && s->sb != NULL) {
            /* a job's files that did not fit: its error; the link goes on */
            s->state = KILN_LINK_READY;
            struct kiln_link_event ev = {.type = KILN_LINK_EV_ERROR, .reason = why ? why : "?",
                                            .agent = 1, .job_fault = 1};
            emit(s, &ev);
        } else {
            fail(s, why ? why : "unknown error", 1, job);
        }
        free(why);
    }
}

static void on_end(void *arg, int status)
{
    struct kiln_link *s = arg;
    /* EOF: the sandbox is going; its exit says the rest */
    if (status < 0 && status != UV_ECONNRESET)
        fail(s, "the sandbox sent a malformed message", 0, 0);
    else
        kiln_link_kill(s);
    kiln_chan_close(s->chan);
    s->chan = NULL;
    maybe_gone(s);
}

static void on_sandbox_exit(struct kiln_sandbox *sb)
{
    struct kiln_link *s = sb->arg;
    s->sb = NULL; /* freed when this returns: what GONE tells is kept */
    s->state = KILN_LINK_ENDED;
    s->end.wstatus = sb->wstatus;
    s->end.ru = sb->ru;
    s->end.peak_kb = sb->peak_kb;
    s->end.oom_kills = sb->oom_kills;
    maybe_gone(s);
}

/* The agent's channel is there (at once, or once a VM is set up). */
static void on_sandbox_chan(struct kiln_sandbox *sb)
{
    struct kiln_link *s = sb->arg;
    int fd = sb->fd;
    sb->fd = -1;
    if (kiln_chan_open(s->loop, fd, on_msg, on_end, s, &s->chan) < 0) {
        s->chan = NULL;
        fail(s, "could not watch the sandbox channel", 0, 0);
    }
}

int kiln_link_spawn(uv_loop_t *loop, struct kiln_backend *b, const char *profile,
                       const struct kiln_spawn_opts *o, const struct kiln_plan *prestart,
                       kiln_link_event_cb cb, void *arg, struct kiln_link **out,
                       char *err, size_t errlen)
{
    struct kiln_link *s = calloc(1, sizeof(*s));
    int r;
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->loop = loop;
    s->prestart = prestart;
    s->on_event = cb;
    s->arg = arg;
    s->t_spawn = s->t_heard = uv_now(loop); /* silent from now on: it never came up */
    err[0] = '\0';
    if ((r = b->ops->spawn(b, profile, o, &s->sb, err, errlen)) < 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "%s", strerror(-r));
        free(s);
        return r;
    }
    s->sb->on_exit = on_sandbox_exit;
    s->sb->on_chan = on_sandbox_chan;
    s->sb->arg = s;
    uv_timer_init(loop, &s->grace);
    s->grace.data = s;
    *out = s;
    if (s->sb->fd >= 0)
        on_sandbox_chan(s->sb); /* may fail: the owner hears ERROR, then GONE */
    return 0;
}

void kiln_link_adopt(struct kiln_link *s, kiln_link_event_cb cb, void *arg)
{
    s->on_event = cb;
    s->arg = arg;
}

int kiln_link_run(struct kiln_link *s, const struct kiln_link_job *job, char *err,
                     size_t errlen)
{
    const struct kiln_plan *plan = job->plan;
    msgpack_packer pk;
    msgpack_sbuffer sb;
    if (s->state != KILN_LINK_READY || s->chan == NULL) {
        snprintf(err, errlen, "the sandbox is not ready for a job");
        kiln_link_kill(s);
        return -EINVAL;
    }
    s->collect_expected = job->ncollect > 0;
    s->collecting = s->file.open = 0;
    s->expect_end = job->expect_end;
    kiln_proto_begin_msg(&sb, &pk, "run", 8 + (job->cpu_ms > 0) + (job->collect != NULL) +
                                          (job->ca_pem != NULL) + 4 * (job->ncollect > 0) +
                                          3 * (job->cell != NULL) + (job->expect_end != 0));
    if (job->expect_end) { /* the agent leaves a token for the runner, and looks for it after */
        kiln_mp_str(&pk, "end");
        msgpack_pack_true(&pk);
    }
    if (job->cell != NULL) { /* a user session's: the sandbox stays for its next job */
        s->keep = 1;
        kiln_mp_str(&pk, "session");
        msgpack_pack_true(&pk);
        kiln_mp_str(&pk, "cell");
        kiln_mp_bin(&pk, job->cell, job->cell_len);
        kiln_mp_str(&pk, "timeout_ms");
        msgpack_pack_int64(&pk, job->timeout_ms > 0 ? job->timeout_ms : 0);
    }
    if (job->ncollect > 0) {
        kiln_mp_str(&pk, "collect_globs");
        msgpack_pack_array(&pk, job->ncollect);
        for (size_t i = 0; i < job->ncollect; i++)
            kiln_mp_str(&pk, job->collect_globs[i]);
        kiln_mp_str(&pk, "collect_bytes");
        msgpack_pack_int64(&pk, job->collect_bytes);
        kiln_mp_str(&pk, "collect_files");
        msgpack_pack_int64(&pk, job->collect_files);
        kiln_mp_str(&pk, "collect_names");
        msgpack_pack_int64(&pk, job->collect_names);
    }
    if (job->ca_pem != NULL) { /* a jail has it in its proxy directory already */
        kiln_mp_str(&pk, "ca");
        kiln_mp_bin(&pk, job->ca_pem, strlen(job->ca_pem));
    }
    if (job->cpu_ms > 0) {
        kiln_mp_str(&pk, "cpu_ms");
        msgpack_pack_int64(&pk, job->cpu_ms);
    }
    if (job->collect != NULL) {
        kiln_mp_str(&pk, "collect");
        kiln_mp_str(&pk, job->collect);
    }
    /* for agents that enforce them (a VM's); a jail's are on the host */
    kiln_mp_str(&pk, "limits");
    msgpack_pack_map(&pk, 2);
    kiln_mp_str(&pk, "memory_bytes");
    msgpack_pack_int64(&pk, job->memory_bytes);
    kiln_mp_str(&pk, "pids");
    msgpack_pack_int64(&pk, job->pids);
    kiln_mp_str(&pk, "proxy");
    if (job->proxy)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    /* per process, by the kernel: CPU seconds (SIGXCPU), file size
     * (SIGXFSZ), open descriptors */
    kiln_mp_str(&pk, "rlimits");
    msgpack_pack_map(&pk, 3);
    kiln_mp_str(&pk, "cpu");
    msgpack_pack_int64(&pk, job->cpu_s);
    kiln_mp_str(&pk, "fsize");
    msgpack_pack_int64(&pk, job->fsize);
    kiln_mp_str(&pk, "nofile");
    msgpack_pack_int64(&pk, job->nofile);
    kiln_plan_pack_command(&pk, plan);
    kiln_mp_str(&pk, "cwd");
    kiln_mp_str(&pk, "/work");
    kiln_mp_str(&pk, "files");
    msgpack_pack_array(&pk, plan->nfiles);
    for (size_t i = 0; i < plan->nfiles; i++) {
        msgpack_pack_array(&pk, 3);
        kiln_mp_str(&pk, plan->files[i].path);
        kiln_mp_bin(&pk, plan->files[i].data, plan->files[i].len);
        msgpack_pack_unsigned_int(&pk, plan->files[i].mode);
    }
    kiln_mp_str(&pk, "stdin");
    if (job->stdin_data != NULL)
        kiln_mp_bin(&pk, job->stdin_data, job->stdin_len);
    else
        msgpack_pack_nil(&pk);
    int r = kiln_chan_send(s->chan, &sb);
    if (r < 0) {
        snprintf(err, errlen, "could not send the job to the sandbox");
        kiln_link_kill(s);
        return r;
    }
    s->state = KILN_LINK_RUNNING;
    s->t_heard = uv_now(s->loop);
    return 0;
}
