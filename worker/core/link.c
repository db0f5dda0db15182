#include "core/link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chan.h"
#include "core/plan.h"
#include "sandbox/backend.h"
#include "wire/agent_msg.h"
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
    kiln_msg_pack_bare(&sb, KILN_MSG_KILL);
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

/* The plan's command as the agent starts it. */
static struct kiln_msg_command command_of(const struct kiln_plan *plan)
{
    return (struct kiln_msg_command){.argv = (const char *const *)plan->argv, .argc = plan->argc,
                                     .env = (const char *const *)plan->env, .nenv = plan->nenv, .cwd = "/work"};
}

void kiln_link_pack_start(msgpack_sbuffer *sb, const char *type, const struct kiln_plan *plan)
{
    struct kiln_msg_command c = command_of(plan);
    kiln_msg_pack_start(sb, strcmp(type, "zygote") == 0 ? KILN_MSG_ZYGOTE : KILN_MSG_PRESTART, &c);
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
    struct kiln_msg_ready r;
    if (s->prestart == NULL || s->prestart->argc == 0 || (kiln_msg_read_ready(m, &r) == 0 && r.warm)) {
        ready(s);
        return;
    }
    msgpack_sbuffer sb;
    kiln_link_pack_start(&sb, "prestart", s->prestart);
    s->state = KILN_LINK_WARMING;
    if (kiln_chan_send(s->chan, &sb) < 0)
        fail(s, "could not send prestart to the sandbox", 0, 0);
}

/* The figures of "exit" (or "collecting") and the kernel's accounting of
 * the sandbox: the host's cgroup, or a VM's own kernel as its agent read
 * it. */
static void parse_exit(struct kiln_link *s, const msgpack_object *m, struct kiln_link_exit *out)
{
    struct kiln_msg_end e;
    kiln_msg_read_end(m, &e);
    struct kiln_link_exit ex = {
        .has_code = e.has_code, .code = e.code, .signal = e.signal, .wall_ms = e.wall_ms, .cpu_ms = e.cpu_ms,
        .max_rss_kb = e.max_rss_kb, .peak_kb = -1, .cpu_limit = e.cpu_limit,
        .ended = s->keep && !(e.session.set && e.session.n == 5 && memcmp(e.session.p, "alive", 5) == 0),
        .reached_end = !s->expect_end ? -1 : e.reached_end == 1,
    };
    const struct kiln_backend_ops *ops = s->sb->backend->ops;
    if (ops->stats != NULL)
        ops->stats(s->sb, &ex.peak_kb, &ex.oom_kills);
    if (ops->agent_limits) {
        if (e.peak_kb >= 0)
            ex.peak_kb = e.peak_kb;
        if (e.oom_kills >= 0)
            ex.oom_kills = e.oom_kills;
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
    struct kiln_msg_file f;
    if (s->state != KILN_LINK_RUNNING || kiln_msg_read_file(m, &f) < 0)
        return;
    char *p = kiln_span_dup(&f.path), *w = kiln_span_dup(&f.error);
    if (p != NULL && (w != NULL || !f.error.set)) {
        struct kiln_link_event ev = {.type = KILN_LINK_EV_FILE, .path = p, .file_error = w, .mode = (unsigned)f.mode};
        if (w == NULL) {
            ev.data = f.data.p;
            ev.len = f.data.n;
        }
        emit(s, &ev);
    }
    free(p);
    free(w);
}

/* One chunk of a `collect` file. */
static void on_chunk_msg(struct kiln_link *s, const msgpack_object *m)
{
    struct kiln_msg_chunk k;
    char *p;
    if (s->state != KILN_LINK_RUNNING)
        return;
    /* what an agent sends: a file's chunks in order, full but its last, one
     * file after another, under a plain relative UTF-8 path */
    if (!s->collecting || kiln_msg_read_chunk(m, &k) < 0 || k.path.n == 0 || k.path.n > KILN_COLLECT_PATH_MAX ||
        k.data.n > KILN_COLLECT_CHUNK || (!k.last && k.data.n != KILN_COLLECT_CHUNK) ||
        (int64_t)k.data.n > k.size - k.offset || !kiln_utf8_ok(k.path.p, k.path.n) ||
        (p = kiln_span_dup(&k.path)) == NULL) {
        fail(s, "the sandbox broke the collect protocol (a chunk)", 0, 0);
        return;
    }
    int64_t size = k.size, mode = k.mode, offset = k.offset;
    int last = k.last;
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
    s->file.next = offset + (int64_t)k.data.n;
    struct kiln_file_chunk c = {.path = p, .size = size, .mode = (unsigned)mode, .offset = offset,
                                .data = k.data.p, .len = k.data.n, .last = last, .truncated = k.truncated,
                                .run = -1};
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
    struct kiln_msg_collected c;
    struct kiln_map map, file;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    if (s->state != KILN_LINK_RUNNING || !s->collecting)
        return;
    kiln_msg_read_collected(m, &c);
    uint32_t n = c.list != NULL ? c.list->via.array.size : 0, ok = 0;
    if (n > 100)
        n = 100;
    kiln_map_init(&map);
    kiln_map_int(&map, "matched", c.matched);
    kiln_map_int(&map, "sent", c.sent);
    kiln_map_int(&map, "truncated", c.truncated);
    kiln_map_int(&map, "skipped", c.skipped);
    kiln_map_bool(&map, "walk_cut", c.walk_cut);
    for (uint32_t i = 0; i < n; i++)
        ok += listable(&c.list->via.array.ptr[i]);
    msgpack_packer *list = kiln_map_key(&map, "skipped_files");
    msgpack_pack_array(list, ok);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &c.list->via.array.ptr[i];
        if (!listable(e))
            continue;
        kiln_map_init(&file);
        kiln_mp_strn(kiln_map_key(&file, "path"), e->via.array.ptr[0].via.str.ptr, e->via.array.ptr[0].via.str.size);
        kiln_mp_strn(kiln_map_key(&file, "why"), e->via.array.ptr[1].via.str.ptr, e->via.array.ptr[1].via.str.size);
        kiln_map_end(&file, list);
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    kiln_map_end(&map, &pk);
    struct kiln_link_event ev = {.type = KILN_LINK_EV_COLLECTED, .data = sb.data, .len = sb.size};
    emit(s, &ev);
    msgpack_sbuffer_destroy(&sb);
}

static void on_msg(void *arg, const msgpack_object *m)
{
    struct kiln_link *s = arg;
    enum kiln_msg_type t = kiln_msg_type_of(m);
    struct kiln_span text;
    if (t == KILN_MSG_UNKNOWN)
        return;
    s->t_heard = uv_now(s->loop);
    switch (t) {
    case KILN_MSG_READY:
        on_ready(s, m);
        break;
    case KILN_MSG_STARTED:
        if (s->state == KILN_LINK_WARMING)
            ready(s);
        break;
    case KILN_MSG_OUT: {
        struct kiln_msg_out o;
        if (s->state != KILN_LINK_RUNNING || kiln_msg_read_out(m, &o) < 0)
            return;
        struct kiln_link_event ev = {.type = KILN_LINK_EV_OUTPUT, .fd = o.fd, .data = o.data.p, .len = o.data.n};
        emit(s, &ev);
        break;
    }
    case KILN_MSG_FILE:
        on_file_msg(s, m);
        break;
    case KILN_MSG_COLLECTING:
        on_collecting_msg(s, m);
        break;
    case KILN_MSG_COLLECT:
        on_chunk_msg(s, m);
        break;
    case KILN_MSG_COLLECTED:
        on_collected_msg(s, m);
        break;
    case KILN_MSG_EXIT:
        on_exit_msg(s, m);
        break;
    case KILN_MSG_RESULT: {
        if (s->state != KILN_LINK_RUNNING || !s->keep || kiln_msg_read_result(m, &text) < 0 ||
            text.n > KILN_REPL_RESULT_MAX)
            return;
        struct kiln_link_event ev = {.type = KILN_LINK_EV_RESULT, .data = text.p, .len = text.n};
        emit(s, &ev);
        break;
    }
    case KILN_MSG_ERROR: {
        struct kiln_msg_error e;
        kiln_msg_read_error(m, &e);
        char *why = kiln_span_dup(&e.reason);
        if (e.job_fault && s->keep && s->state == KILN_LINK_RUNNING && s->sb != NULL) {
            /* a job's files that did not fit: its error; the link goes on */
            s->state = KILN_LINK_READY;
            struct kiln_link_event ev = {.type = KILN_LINK_EV_ERROR, .reason = why ? why : "?", .agent = 1,
                                         .job_fault = 1};
            emit(s, &ev);
        } else {
            fail(s, why ? why : "unknown error", 1, e.job_fault);
        }
        free(why);
        break;
    }
    default: /* the worker's own messages, or a beat: heard */
        break;
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
    msgpack_sbuffer sb;
    if (s->state != KILN_LINK_READY || s->chan == NULL) {
        snprintf(err, errlen, "the sandbox is not ready for a job");
        kiln_link_kill(s);
        return -EINVAL;
    }
    s->collect_expected = job->ncollect > 0;
    s->collecting = s->file.open = 0;
    s->expect_end = job->expect_end;
    if (job->cell != NULL)
        s->keep = 1; /* a user session's: the sandbox stays for its next job */
    /* the plan's files, as the agent writes them (the plan keeps them) */
    struct kiln_msg_file_in *files = calloc(plan->nfiles ? plan->nfiles : 1, sizeof(*files));
    if (files == NULL) {
        snprintf(err, errlen, "out of memory");
        kiln_link_kill(s);
        return -ENOMEM;
    }
    for (size_t i = 0; i < plan->nfiles; i++)
        files[i] = (struct kiln_msg_file_in){plan->files[i].path, plan->files[i].data, plan->files[i].len,
                                             plan->files[i].mode};
    struct kiln_msg_run run = {
        .cmd = command_of(plan),
        .files = files,
        .nfiles = plan->nfiles,
        .stdin_data = {job->stdin_data, job->stdin_len, job->stdin_data != NULL},
        .proxy = job->proxy,
        .rl_cpu = job->cpu_s, .rl_fsize = job->fsize, .rl_nofile = job->nofile,
        .memory_bytes = job->memory_bytes, .pids = job->pids,
        .cpu_ms = job->cpu_ms,
        .collect = {job->collect, job->collect ? strlen(job->collect) : 0, job->collect != NULL},
        .ca = {job->ca_pem, job->ca_pem ? strlen(job->ca_pem) : 0, job->ca_pem != NULL},
        .end = job->expect_end,
        .collect_globs = job->collect_globs,
        .ncollect = job->ncollect,
        .collect_bytes = job->collect_bytes, .collect_files = job->collect_files,
        .collect_names = job->collect_names,
        .cell = {job->cell, job->cell_len, job->cell != NULL},
        .timeout_ms = job->timeout_ms,
        .keep_running = job->keep_running,
    };
    kiln_msg_pack_run(&sb, &run);
    free(files);
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
