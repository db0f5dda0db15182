#include "core/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/backend.h"
#include "core/chan.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/plan.h"
#include "core/plugin_load.h"
#include "wire/proto.h"

struct warm {
    struct warm *next;
    struct pprofile *prof;
    struct kiln_sandbox *sb;
    struct kiln_chan *chan;
    int ready;
    uint64_t t_spawn;
};

struct pprofile {
    const struct kiln_plugin *plugin;
    struct kiln_pool *pool;
    struct kiln_plan warm;     /* the prestart plan; argc 0: agent only */
    struct warm *list;
    unsigned nready, nstarting;
    uint64_t hits, misses, refills, refill_ms;
    unsigned failures;         /* in a row: back off */
    int was_full;
    uint64_t logged_hits, logged_misses;
};

struct kiln_pool {
    uv_loop_t *loop;
    const struct kiln_config *cfg;
    struct kiln_backend *backend;
    struct pprofile *profs;
    size_t n;
    uv_timer_t refill, stats;
    int stopped;
};

static void fill(struct kiln_pool *pool);

static void unlink_warm(struct warm *w)
{
    struct warm **pp = &w->prof->list;
    while (*pp && *pp != w)
        pp = &(*pp)->next;
    if (*pp)
        *pp = w->next;
    if (w->ready)
        w->prof->nready--;
    else
        w->prof->nstarting--;
}

static void on_refill(uv_timer_t *t);

static void schedule_fill(struct kiln_pool *pool, uint64_t delay)
{
    if (pool->cfg->pool > 0 && !pool->stopped)
        uv_timer_start(&pool->refill, on_refill, delay, 0);
}

/* The sandbox died while it waited in the pool. */
static void on_warm_exit(struct kiln_sandbox *sb)
{
    struct warm *w = sb->arg;
    struct pprofile *p = w->prof;
    if (w->chan != NULL)
        kiln_chan_close(w->chan);
    unlink_warm(w);
    if (!w->ready)
        p->failures++;
    /* a pool that keeps failing (its runtime missing here, say) backs off
     * up to a minute and says so once in a while, not at every attempt */
    uint64_t delay = p->failures > 3 ? 1000ull << (p->failures - 4 < 6 ? p->failures - 4 : 6) : 0;
    if (p->failures <= 4 || (p->failures & (p->failures - 1)) == 0)
        kiln_warn("pool %s: a %s sandbox died (%s; %u failure(s) in a row)", p->plugin->name,
                  w->ready ? "warm" : "starting", w->ready ? "replaced" : "retrying", p->failures);
    free(w);
    schedule_fill(p->pool, delay);
}

static void warm_ready(struct warm *w)
{
    struct pprofile *p = w->prof;
    uint64_t ms = uv_now(p->pool->loop) - w->t_spawn;
    w->ready = 1;
    p->nstarting--;
    p->nready++;
    p->refills++;
    p->refill_ms += ms;
    p->failures = 0;
    if (p->nready >= (unsigned)p->pool->cfg->pool)
        p->was_full = 1;
    kiln_metrics_pool(p->plugin->name, -1, ms / 1000.0);
    kiln_debug("pool %s: sandbox warm in %llu ms (%u ready)", p->plugin->name,
               (unsigned long long)ms, p->nready);
}

/* "prestart" (or "zygote": the same command, started as a fork server) */
static void pack_prestart(msgpack_sbuffer *sb, const char *t, const struct kiln_plan *plan)
{
    msgpack_packer pk;
    kiln_proto_begin_msg(sb, &pk, t, 3);
    kiln_plan_pack_command(&pk, plan);
    kiln_mp_str(&pk, "cwd");
    kiln_mp_str(&pk, "/work");
}

static void send_prestart(struct warm *w)
{
    msgpack_sbuffer sb;
    pack_prestart(&sb, "prestart", &w->prof->warm);
    if (kiln_chan_send(w->chan, &sb) < 0)
        w->sb->backend->ops->kill(w->sb);
}

static void on_warm_msg(void *arg, const msgpack_object *m)
{
    struct warm *w = arg;
    const msgpack_object *t = kiln_mp_get(m, "t");
    if (t == NULL || w->ready)
        return;
    char why[160];
    if (kiln_mp_streq(t, "ready") && kiln_proto_check_ready(m, why, sizeof(why)) < 0) {
        unsigned f = w->prof->failures;
        if (f < 4 || (f & (f - 1)) == 0)
            kiln_error("pool %s: %s (another kiln-agent build?)", w->prof->plugin->name, why);
        w->sb->backend->ops->kill(w->sb);
    } else if (kiln_mp_streq(t, "ready")) {
        /* warm: its interpreter is up already (forked from a template) */
        if (w->prof->warm.argc > 0 && !kiln_mp_true(m, "warm"))
            send_prestart(w);
        else
            warm_ready(w);
    } else if (kiln_mp_streq(t, "started")) {
        warm_ready(w);
    } else if (kiln_mp_streq(t, "error")) {
        const msgpack_object *why = kiln_mp_get(m, "reason");
        char *s = why ? kiln_mp_strdup(why) : NULL;
        unsigned f = w->prof->failures;
        if (f < 4 || (f & (f - 1)) == 0)
            kiln_warn("pool %s: warm start failed: %s", w->prof->plugin->name, s ? s : "?");
        free(s);
        w->sb->backend->ops->kill(w->sb);
    }
}

static void on_warm_end(void *arg, int status)
{
    struct warm *w = arg;
    (void)status;
    kiln_chan_close(w->chan);
    w->chan = NULL;
    w->sb->backend->ops->kill(w->sb); /* on_warm_exit removes it */
}

/* The sandbox's agent channel is there (at once, or once a VM is set up). */
static void on_warm_chan(struct kiln_sandbox *sb)
{
    struct warm *w = sb->arg;
    int fd = sb->fd;
    sb->fd = -1;
    if (kiln_chan_open(w->prof->pool->loop, fd, on_warm_msg, on_warm_end, w, &w->chan) < 0) {
        w->chan = NULL;
        sb->backend->ops->kill(sb);
    }
}

static void spawn_one(struct pprofile *p)
{
    struct kiln_pool *pool = p->pool;
    char err[256];
    struct warm *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return;
    w->prof = p;
    w->t_spawn = uv_now(pool->loop);
    const char *profile = p->warm.profile;
    if (pool->backend->ops->spawn(pool->backend, profile, NULL, &w->sb, err, sizeof(err)) < 0) {
        kiln_warn("pool %s: spawn failed: %s", p->plugin->name, err);
        p->failures++;
        free(w);
        return;
    }
    w->sb->on_exit = on_warm_exit;
    w->sb->arg = w;
    w->next = p->list;
    p->list = w;
    p->nstarting++;
    w->sb->on_chan = on_warm_chan;
    if (w->sb->fd >= 0)
        on_warm_chan(w->sb);
}

static void fill(struct kiln_pool *pool)
{
    if (pool->stopped)
        return;
    for (size_t i = 0; i < pool->n; i++) {
        struct pprofile *p = &pool->profs[i];
        if (p->failures > 3 && p->nstarting > 0)
            continue; /* failing: one attempt at a time */
        while (p->nready + p->nstarting < (unsigned)pool->cfg->pool) {
            spawn_one(p);
            if (p->failures > 3)
                break;
        }
    }
}

static void on_refill(uv_timer_t *t)
{
    fill(t->data);
}

static void on_stats(uv_timer_t *t)
{
    struct kiln_pool *pool = t->data;
    uint64_t now = uv_now(pool->loop);
    for (size_t i = 0; i < pool->n; i++) {
        struct pprofile *p = &pool->profs[i];
        /* one that never became ready (a VM stuck booting) holds its place
         * in the pool forever unless it goes: on_warm_exit replaces it */
        for (struct warm *w = p->list; w != NULL; w = w->next)
            if (!w->ready && pool->cfg->hang_ms > 0 && now - w->t_spawn > (uint64_t)pool->cfg->hang_ms) {
                kiln_warn("pool %s: a sandbox not ready after %llu ms: killed", p->plugin->name,
                          (unsigned long long)(now - w->t_spawn));
                w->sb->backend->ops->kill(w->sb);
            }
        if (p->hits == p->logged_hits && p->misses == p->logged_misses)
            continue;
        p->logged_hits = p->hits;
        p->logged_misses = p->misses;
        kiln_info("pool %s: %u ready of %lld, hits %llu, misses %llu, refill avg %llu ms",
                  p->plugin->name, p->nready, (long long)pool->cfg->pool,
                  (unsigned long long)p->hits, (unsigned long long)p->misses,
                  (unsigned long long)(p->refills ? p->refill_ms / p->refills : 0));
    }
}

void kiln_pool_gauges(struct kiln_pool *pool, FILE *out)
{
    fprintf(out, "# HELP kiln_pool_warm Warm sandboxes ready now.\n# TYPE kiln_pool_warm gauge\n");
    for (size_t i = 0; pool && i < pool->n; i++)
        fprintf(out, "kiln_pool_warm{plugin=\"%s\"} %u\n", pool->profs[i].plugin->name, pool->profs[i].nready);
    fprintf(out, "# HELP kiln_pool_size Warm sandboxes kept per plugin.\n# TYPE kiln_pool_size gauge\n");
    for (size_t i = 0; pool && i < pool->n; i++)
        fprintf(out, "kiln_pool_size{plugin=\"%s\"} %lld\n", pool->profs[i].plugin->name,
                (long long)pool->cfg->pool);
}

int kiln_pool_warmed(struct kiln_pool *pool)
{
    /* a pool that keeps failing (its runtime missing here, say) does not
     * hold the worker unready: its jobs start cold, or fail and say why */
    for (size_t i = 0; pool && pool->cfg->pool > 0 && i < pool->n; i++)
        if (!pool->profs[i].was_full && pool->profs[i].failures <= 3)
            return 0;
    return 1;
}

void kiln_pool_stop(struct kiln_pool *pool)
{
    if (pool == NULL)
        return;
    pool->stopped = 1;
    uv_timer_stop(&pool->refill);
    uv_timer_stop(&pool->stats);
    for (size_t i = 0; i < pool->n; i++)
        for (struct warm *w = pool->profs[i].list; w != NULL; w = w->next)
            w->sb->backend->ops->kill(w->sb); /* on_warm_exit frees it */
}

int kiln_pool_take(struct kiln_pool *pool, const struct kiln_plugin *plugin, const char *profile,
                   const struct kiln_job_view *job, const struct kiln_spawn_opts *needs,
                   struct kiln_warm_take *out)
{
    struct pprofile *p = NULL;
    for (size_t i = 0; pool != NULL && i < pool->n; i++)
        if (pool->profs[i].plugin == plugin)
            p = &pool->profs[i];
    if (p == NULL)
        return 0;
    int fits = strcmp(p->warm.profile, profile) == 0 &&
               (p->warm.argc == 0 || !KILN_PLUGIN_HAS(plugin, warm_ok) || plugin->warm_ok(job));
    struct warm *w = NULL;
    for (struct warm *c = p->list; fits && c != NULL; c = c->next)
        if (c->ready && c->chan != NULL &&
            (c->sb->capacity_mb == 0 || needs->memory_mb <= c->sb->capacity_mb) &&
            (!needs->net || c->sb->proxy_dir != NULL))
            w = c;
    if (w == NULL) {
        p->misses++;
        kiln_metrics_pool(plugin->name, 0, 0);
        return 0;
    }
    unlink_warm(w);
    p->hits++;
    kiln_metrics_pool(plugin->name, 1, 0);
    out->sb = w->sb;
    out->chan = w->chan;
    free(w);
    schedule_fill(pool, 0); /* after this job's run message is on its way */
    return 1;
}

int kiln_pool_new(uv_loop_t *loop, const struct kiln_config *cfg, struct kiln_backend *backend,
                  const struct kiln_plugins *plugins, struct kiln_pool **out)
{
    struct kiln_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL || (pool->profs = calloc(plugins->n, sizeof(*pool->profs))) == NULL) {
        free(pool);
        return -ENOMEM;
    }
    pool->loop = loop;
    pool->cfg = cfg;
    pool->backend = backend;
    for (size_t i = 0; i < plugins->n; i++) {
        const struct kiln_plugin *plug = plugins->v[i].p;
        struct pprofile *p = &pool->profs[pool->n];
        p->plugin = plug;
        p->pool = pool;
        kiln_plan_init(&p->warm, 1u << 20);
        kiln_plan_env(&p->warm, "PATH", "/usr/local/bin:/usr/bin:/bin");
        kiln_plan_env(&p->warm, "HOME", "/work");
        kiln_plan_env(&p->warm, "TMPDIR", "/tmp");
        kiln_plan_env(&p->warm, "LANG", "C.UTF-8");
        if (KILN_PLUGIN_HAS(plug, prestart)) {
            if (plug->prestart(kiln_plan_host(), plug->name, &p->warm) < 0) {
                kiln_warn("pool %s: no warm start (%s)", plug->name,
                          p->warm.reject[0] ? p->warm.reject : "the plugin declined");
                kiln_plan_free(&p->warm);
                kiln_plan_init(&p->warm, 1u << 20);
            } else if ((KILN_PLUGIN_FLAGS(plug) & KILN_PLUGIN_FORKS) &&
                       backend->ops->zygote != NULL && !cfg->no_zygote) {
                /* its sandboxes may be forked from one started interpreter */
                msgpack_sbuffer sb;
                pack_prestart(&sb, "zygote", &p->warm);
                kiln_proto_finish(&sb);
                char why[256] = "";
                if (backend->ops->zygote(backend, p->warm.profile, sb.data, sb.size, why, sizeof(why)) < 0)
                    kiln_error("pool %s: no template interpreter: %s", plug->name, why);
                msgpack_sbuffer_destroy(&sb);
            }
        } else {
            /* no interpreter to start: the sandbox and agent, ready; the
             * profile is the one the plugin's plans name */
            struct kiln_plan probe;
            struct kiln_job_view v = {.size = sizeof(v), .id = "pool", .plugin = plug->name,
                                      .code = "", .code_len = 0};
            kiln_plan_init(&probe, 1u << 20);
            if (plug->plan(kiln_plan_host(), &v, &probe) == 0)
                strcpy(p->warm.profile, probe.profile);
            kiln_plan_free(&probe);
        }
        pool->n++;
    }
    uv_timer_init(loop, &pool->refill);
    uv_timer_init(loop, &pool->stats);
    pool->refill.data = pool->stats.data = pool;
    if (cfg->pool > 0) {
        uv_timer_start(&pool->stats, on_stats, 10000, 10000);
        fill(pool);
        kiln_info("pools: %lld warm sandbox(es) per plugin", (long long)cfg->pool);
    }
    *out = pool;
    return 0;
}
