#include "core/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/backend.h"
#include "core/config.h"
#include "base/log.h"
#include "core/metrics.h"
#include "core/plan.h"
#include "core/plugin_load.h"
#include "core/link.h"
#include "wire/proto.h"

struct warm {
    struct warm *next;
    struct pprofile *prof;
    struct kiln_link *s;
    int ready;
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
    const char *image;         /* the runtime image its sandboxes run */
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

/* A pool that keeps failing (its runtime missing here, say) says so once
 * in a while, not at every attempt. */
static int worth_saying(const struct pprofile *p)
{
    return p->failures < 4 || (p->failures & (p->failures - 1)) == 0;
}

/* The link ended while it waited in the pool. */
static void warm_gone(struct warm *w)
{
    struct pprofile *p = w->prof;
    unlink_warm(w);
    if (!w->ready)
        p->failures++;
    /* ... and backs off up to a minute */
    uint64_t delay = p->failures > 3 ? 1000ull << (p->failures - 4 < 6 ? p->failures - 4 : 6) : 0;
    if (p->failures <= 4 || worth_saying(p))
        kiln_warn("pool %s: a %s sandbox died (%s; %u failure(s) in a row)", p->plugin->name,
                  w->ready ? "warm" : "starting", w->ready ? "replaced" : "retrying", p->failures);
    free(w);
    schedule_fill(p->pool, delay);
}

static void warm_ready(struct warm *w)
{
    struct pprofile *p = w->prof;
    uint64_t ms = uv_now(p->pool->loop) - w->s->t_spawn;
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

static void on_warm_event(void *arg, const struct kiln_link_event *ev)
{
    struct warm *w = arg;
    switch (ev->type) {
    case KILN_LINK_EV_READY:
        warm_ready(w);
        break;
    case KILN_LINK_EV_ERROR: /* the link kills its sandbox: GONE follows */
        if (worth_saying(w->prof))
            kiln_log(ev->agent ? KILN_LOG_WARN : KILN_LOG_ERROR, "pool %s: %s%s",
                     w->prof->plugin->name, ev->agent ? "warm start failed: " : "", ev->reason);
        break;
    case KILN_LINK_EV_GONE:
        warm_gone(w);
        break;
    case KILN_LINK_EV_OUTPUT:
    case KILN_LINK_EV_FILE:
    case KILN_LINK_EV_COLLECTING:
    case KILN_LINK_EV_CHUNK:
    case KILN_LINK_EV_COLLECTED:
    case KILN_LINK_EV_EXIT:
    case KILN_LINK_EV_RESULT:
        break; /* no job runs in a pooled sandbox */
    }
}

static void spawn_one(struct pprofile *p)
{
    struct kiln_pool *pool = p->pool;
    char err[256];
    struct warm *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        p->failures++;
        return;
    }
    w->prof = p;
    w->next = p->list;
    p->list = w;
    p->nstarting++;
    if (kiln_link_spawn(pool->loop, pool->backend, p->warm.profile, NULL, &p->warm,
                           on_warm_event, w, &w->s, err, sizeof(err)) < 0) {
        kiln_warn("pool %s: spawn failed: %s", p->plugin->name, err);
        unlink_warm(w);
        p->failures++;
        free(w);
    }
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
         * in the pool forever unless it goes: warm_gone replaces it */
        for (struct warm *w = p->list; w != NULL; w = w->next)
            if (!w->ready && pool->cfg->sb.hang_ms > 0 && now - w->s->t_spawn > (uint64_t)pool->cfg->sb.hang_ms) {
                kiln_warn("pool %s: a sandbox not ready after %llu ms: killed", p->plugin->name,
                          (unsigned long long)(now - w->s->t_spawn));
                kiln_link_kill(w->s);
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

void kiln_pool_gauges(struct kiln_pool *const *pools, size_t n, FILE *out)
{
    fprintf(out, "# HELP kiln_pool_warm Warm sandboxes ready now.\n# TYPE kiln_pool_warm gauge\n");
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; pools[k] && i < pools[k]->n; i++)
            fprintf(out, "kiln_pool_warm{image=\"%s\",plugin=\"%s\"} %u\n", pools[k]->image,
                    pools[k]->profs[i].plugin->name, pools[k]->profs[i].nready);
    fprintf(out, "# HELP kiln_pool_size Warm sandboxes kept per plugin.\n# TYPE kiln_pool_size gauge\n");
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; pools[k] && i < pools[k]->n; i++)
            fprintf(out, "kiln_pool_size{image=\"%s\",plugin=\"%s\"} %lld\n", pools[k]->image,
                    pools[k]->profs[i].plugin->name, (long long)pools[k]->cfg->pool);
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
            kiln_link_kill(w->s); /* warm_gone frees it */
}

struct kiln_link *kiln_pool_take(struct kiln_pool *pool, const struct kiln_plugin *plugin,
                                    const char *profile, const struct kiln_job_view *job,
                                    const struct kiln_spawn_opts *needs,
                                    kiln_link_event_cb cb, void *arg)
{
    struct pprofile *p = NULL;
    for (size_t i = 0; pool != NULL && i < pool->n; i++)
        if (pool->profs[i].plugin == plugin)
            p = &pool->profs[i];
    if (p == NULL)
        return NULL;
    /* (a plugin whose warm sandboxes may be forked with the interpreter up
     * has its warm_ok asked even where the pool's plan is the agent alone) */
    int forked = (KILN_PLUGIN_FLAGS(plugin) & KILN_PLUGIN_TEMPLATE_ONLY) != 0;
    int fits = strcmp(p->warm.profile, profile) == 0 &&
               ((p->warm.argc == 0 && !forked) || !KILN_PLUGIN_HAS(plugin, warm_ok) || plugin->warm_ok(job));
    struct warm *w = NULL;
    for (struct warm *c = p->list; fits && c != NULL; c = c->next)
        if (c->ready && c->s->state == KILN_LINK_READY &&
            (c->s->sb->capacity_mb == 0 || needs->memory_mb <= c->s->sb->capacity_mb) &&
            (!needs->net || c->s->sb->proxy_dir != NULL))
            w = c;
    if (w == NULL) {
        p->misses++;
        kiln_metrics_pool(plugin->name, 0, 0);
        return NULL;
    }
    struct kiln_link *s = w->s;
    unlink_warm(w);
    free(w);
    kiln_link_adopt(s, cb, arg);
    p->hits++;
    kiln_metrics_pool(plugin->name, 1, 0);
    schedule_fill(pool, 0); /* after this job's run message is on its way */
    return s;
}

/* Sandboxes of `profile` forked from a template (its "zygote" message in
 * `sb`, finished here): a profile several plugins share has one. */
static void add_template(struct kiln_backend *backend, const char *plugin, const char *profile,
                         msgpack_sbuffer *sb)
{
    char why[256] = "";
    kiln_proto_finish(sb);
    int r = backend->ops->zygote(backend, profile, sb->data, sb->size, why, sizeof(why));
    msgpack_sbuffer_destroy(sb);
    if (r < 0 && r != -EEXIST) /* no zygote library here is a choice of the install */
        kiln_log(r == -ENOTSUP ? KILN_LOG_INFO : KILN_LOG_ERROR, "pool %s: no template: %s",
                 plugin, why);
}

int kiln_pool_new(uv_loop_t *loop, const struct kiln_config *cfg, struct kiln_backend *backend,
                  const struct kiln_plugins *plugins, const char *image, const char *preload,
                  struct kiln_pool **out)
{
    struct kiln_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL || (pool->profs = calloc(plugins->n, sizeof(*pool->profs))) == NULL) {
        free(pool);
        return -ENOMEM;
    }
    pool->loop = loop;
    pool->cfg = cfg;
    pool->image = image;
    pool->backend = backend;
    for (size_t i = 0; i < plugins->n; i++) {
        const struct kiln_plugin *plug = plugins->v[i].p;
        struct pprofile *p = &pool->profs[pool->n];
        if (plugins->v[i].unavailable != NULL)
            continue; /* its jobs are rejected: nothing to keep warm */
        p->plugin = plug;
        p->pool = pool;
        kiln_plan_init(&p->warm, 1u << 20);
        if (kiln_plan_base_env(&p->warm) < 0) {
            kiln_plan_free(&p->warm);
            return -ENOMEM; /* (the pool is the caller's: it is never freed) */
        }
        if (KILN_PLUGIN_HAS(plug, prestart)) {
            if (plug->prestart(kiln_plan_host(), plug->name, &p->warm) < 0) {
                kiln_warn("pool %s: no warm start (%s)", plug->name,
                          p->warm.reject[0] ? p->warm.reject : "the plugin declined");
                kiln_plan_free(&p->warm);
                kiln_plan_init(&p->warm, 1u << 20);
            } else if ((KILN_PLUGIN_FLAGS(plug) & KILN_PLUGIN_FORKS) &&
                       backend->ops->zygote != NULL && !cfg->sb.no_zygote) {
                /* its sandboxes may be forked from one started interpreter,
                 * which imports what the operator preloads before it forks
                 * (a plugin's bootstrap reads KILN_PRELOAD; the job's own
                 * environment replaces the template's) */
                msgpack_sbuffer sb;
                if (preload[0] != '\0' && kiln_plan_env(&p->warm, "KILN_PRELOAD", preload) < 0)
                    kiln_warn("pool %s: --preload left out (no room in the plan)", plug->name);
                kiln_link_pack_start(&sb, "zygote", &p->warm);
                add_template(backend, plug->name, p->warm.profile, &sb);
            }
            if (KILN_PLUGIN_FLAGS(plug) & KILN_PLUGIN_TEMPLATE_ONLY) {
                /* its warm sandboxes: forked (the interpreter up) where the
                 * template is, the agent alone where it is not */
                char profile[sizeof(p->warm.profile)];
                strcpy(profile, p->warm.profile);
                kiln_plan_free(&p->warm);
                kiln_plan_init(&p->warm, 1u << 20);
                strcpy(p->warm.profile, profile);
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
            /* and its sandboxes forked from a template agent, whose job
             * process execs the program each job names (proto.h) */
            struct kiln_plan exec;
            kiln_plan_init(&exec, 1u << 20);
            if (backend->ops->zygote != NULL && !cfg->sb.no_zygote &&
                kiln_plan_arg(&exec, KILN_ZYGOTE_EXEC) == 0 && kiln_plan_base_env(&exec) == 0) {
                msgpack_sbuffer sb;
                kiln_link_pack_start(&sb, "zygote", &exec);
                add_template(backend, plug->name, p->warm.profile, &sb);
            }
            kiln_plan_free(&exec);
        }
        pool->n++;
    }
    uv_timer_init(loop, &pool->refill);
    uv_timer_init(loop, &pool->stats);
    pool->refill.data = pool->stats.data = pool;
    if (cfg->pool > 0) {
        uv_timer_start(&pool->stats, on_stats, 10000, 10000);
        fill(pool);
        kiln_info("pools of image %s: %lld warm sandbox(es) per plugin", image, (long long)cfg->pool);
    }
    *out = pool;
    return 0;
}
