/* kiln-worker: take jobs from a queue, run each in a fresh sandbox through
 * its plugin, stream the frames back, acknowledge when the exit frame is in. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "sandbox/backend.h"
#include "core/session.h"
#include "core/config.h"
#include "core/image.h"
#include "base/log.h"
#include "core/metrics.h"
#include "core/plugin_load.h"
#include "core/pool.h"
#include "sandbox/rootfs.h"
#include "base/sysutil.h"
#include "core/secrets.h"
#include "core/sign.h"
#include "egress/egress_tls.h"
#include "expose/expose.h"
#include "core/worker.h"
#include "queue/source.h"

/*
 * Graceful drain. The first SIGTERM (or SIGINT): take no more jobs, let the
 * running ones finish for up to --drain-timeout-ms, then stop the rest
 * without acknowledging them (the queue delivers them again); once every
 * frame and ack is confirmed, leave (a Kafka consumer leaves its group)
 * and exit 0. A second signal exits at once, still acknowledging nothing
 * unfinished: each sandbox dies with us (PR_SET_PDEATHSIG, its channel's
 * EOF).
 */
static struct {
    struct kiln_worker *w;
    uv_timer_t deadline, check;
    uint64_t started;
    int failed;      /* the source failed: exit 70 once the jobs are stopped */
} drain;

static void gauges(void *arg, FILE *out)
{
    struct kiln_worker *w = arg;
    fprintf(out, "# HELP kiln_slots_busy Jobs in hand now.\n# TYPE kiln_slots_busy gauge\n"
                 "kiln_slots_busy %u\n", w->busy);
    fprintf(out, "# HELP kiln_slots_total Jobs this worker runs at once.\n# TYPE kiln_slots_total gauge\n"
                 "kiln_slots_total %lld\n", (long long)w->cfg->slots);
    fprintf(out, "# HELP kiln_draining 1 while the worker drains.\n# TYPE kiln_draining gauge\n"
                 "kiln_draining %d\n", w->draining);
    kiln_image_gauges(w->images, w->nimages, out);
    kiln_session_gauges(w, out);
    kiln_expose_gauges(w->expose, out);
    if (w->src->ops->gauges != NULL)
        w->src->ops->gauges(w->src, out);
}

static int ready(void *arg, char *why, size_t len)
{
    struct kiln_worker *w = arg;
    if (w->draining) {
        snprintf(why, len, drain.failed ? "the queue failed: exiting" : "draining");
        return 0;
    }
    if (!w->src->ops->ready(w->src, why, len))
        return 0;
    if (!kiln_pool_warmed(w->images[0].pool)) {
        snprintf(why, len, "warm pools still filling");
        return 0;
    }
    return 1; /* plugins: the worker does not start without them */
}

static void on_drain_check(uv_timer_t *t)
{
    struct kiln_worker *w = drain.w;
    uint64_t waited = uv_now(t->loop) - drain.started;
    if (w->busy == 0 && w->ending == 0 && w->nsessions == 0 && w->src->ops->idle(w->src)) {
        if (drain.failed)
            kiln_error("exiting: the queue failed; every job not reported will be delivered again");
        else
            kiln_info("drained: %llu job(s) finished; exiting", (unsigned long long)w->finished);
        uv_stop(t->loop);
    } else if (waited > (uint64_t)w->cfg->drain_timeout_ms + 15000) {
        kiln_error("drain: frames still unconfirmed after %llu ms; exiting without them",
                   (unsigned long long)waited);
        uv_stop(t->loop);
    }
}

static void on_drain_deadline(uv_timer_t *t)
{
    (void)t;
    if (drain.w->busy > 0)
        kiln_warn("drain %s: stopping %u unfinished job(s) without acknowledging them",
                  drain.failed ? "after the queue failed" : "timeout", drain.w->busy);
    kiln_worker_abandon(drain.w);
}

/* Take no more jobs; stop what still runs after `deadline_ms` without
 * acknowledging it; leave once everything written is confirmed. */
static void drain_start(struct kiln_worker *w, uint64_t deadline_ms)
{
    w->draining = 1;
    w->src->ops->stop(w->src);
    kiln_image_stop_pools(w->images, w->nimages);
    kiln__session_drain(w); /* idle sessions end now, busy ones after their job */
    drain.w = w;
    drain.started = uv_now(w->loop);
    uv_timer_init(w->loop, &drain.deadline);
    uv_timer_init(w->loop, &drain.check);
    uv_timer_start(&drain.deadline, on_drain_deadline, deadline_ms, 0);
    uv_timer_start(&drain.check, on_drain_check, 0, 50);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct kiln_worker *w = h->data;
    if (w->draining) {
        kiln_info("signal %d again: exiting now; %u unfinished job(s) will be delivered again",
                  signum, w->busy);
        fflush(NULL);
        _exit(drain.failed ? 70 : 0);
    }
    kiln_info("signal %d: draining (up to %lld ms for %u running job(s))", signum,
              (long long)w->cfg->drain_timeout_ms, w->busy);
    drain_start(w, (uint64_t)w->cfg->drain_timeout_ms);
}

/* What the source counts, into the metrics (kiln_count_cb). */
static void on_source_count(void *arg, enum kiln_source_count what)
{
    struct kiln_worker *w = arg;
    if (what == KILN_SOURCE_RECONNECTED)
        kiln_metrics_reconnect(w->src->ops->name);
    else
        kiln_metrics_rebalance();
}

/* The source cannot go on (kiln_fatal_cb): nothing a job does from now on
 * can be reported, so every job stops now, unacknowledged, and the worker
 * exits 70 (EX_SOFTWARE; a supervisor restarts it); the queue
 * gives the jobs to a worker that can report them. */
static void on_source_failed(void *arg, const char *why)
{
    struct kiln_worker *w = arg;
    kiln_error("the queue failed (%s): stopping %u job(s) and exiting", why, w->busy);
    drain.failed = 1;
    if (!w->draining)
        drain_start(w, 0);
    else
        uv_timer_start(&drain.deadline, on_drain_deadline, 0, 0);
}

static int set_log_level(const char *name)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            kiln_log_min = (enum kiln_log_level)i;
            return 0;
        }
    return -EINVAL;
}

/* Descriptors: the worker holds several per sandbox and per cgroup it
 * keeps for reuse (nine control files each), past the usual soft limit
 * of 1024 on a busy worker. Up to the hard limit, as servers do; a job's
 * own limit is set apart (--open-files). */
static void raise_open_files(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            kiln_warn("cannot raise the open file limit: %s", strerror(errno));
    }
}

int main(int argc, char **argv)
{
    struct kiln_config cfg;
    struct kiln_plugins plugins = {0};
    struct kiln_worker w = {0};
    static struct kiln_keys keys;
    static struct kiln_secrets secrets;
    struct kiln_tls *tls = NULL;
    /* the runtime images: [0] --rootfs, then each --image (static: what
     * they hold stays reachable to the end, for the leak checker too) */
    static struct kiln_image images[1 + KILN_MAX_IMAGES];
    size_t nimages = 0;
    struct kiln_source *src = NULL;
    uv_signal_t sigint, sigterm;
    char err[512] = "";
    int r, rc = 1;

    if (argc == 3 && strcmp(argv[1], "--rootfs-digest-of") == 0) {
        char hex[KILN_DIGEST_HEX];
        if (kiln_rootfs_digest(argv[2], hex, err, sizeof(err)) < 0) {
            fprintf(stderr, "kiln-worker: %s\n", err);
            return 1;
        }
        printf("%s\n", hex);
        return 0;
    }
    r = kiln_config_parse(&cfg, argc, argv);
    if (r != 0) { /* --help, --version: 0; a bad option: 2 */
        kiln_config_free(&cfg);
        return r > 0 ? 0 : 2;
    }
    set_log_level(cfg.log_level);
    kiln_log_json = strcmp(cfg.log_format, "json") == 0;
    signal(SIGPIPE, SIG_IGN);
    raise_open_files();

    r = kiln_plugins_load_dir(&plugins, cfg.plugin_dir);
    if (r <= 0) {
        kiln_error("no plugins loaded from %s%s%s", cfg.plugin_dir, r < 0 ? ": " : "",
                   r < 0 ? strerror(-r) : "");
        goto out;
    }
    if (cfg.list_plugins) {
        struct stat root_st; /* a tree's toolchains; a squashfs is not mounted to list */
        if (cfg.sb.rootfs != NULL && stat(cfg.sb.rootfs, &root_st) == 0 && S_ISDIR(root_st.st_mode))
            kiln_plugins_read_toolchains(&plugins, cfg.sb.rootfs);
        for (size_t i = 0; i < plugins.n; i++)
            printf("%-12s %s%s%s%s\n", plugins.v[i].p->name,
                   plugins.v[i].p->description ? plugins.v[i].p->description : "",
                   plugins.v[i].toolchain ? " [" : "", plugins.v[i].toolchain ? plugins.v[i].toolchain : "",
                   plugins.v[i].toolchain ? "]" : "");
        rc = 0;
        goto out;
    }

    /* every image mounted (a squashfs) and verified before any job */
    if (kiln_image_init(&images[nimages++], &cfg, 0, "default", cfg.sb.rootfs, cfg.rootfs_digest, cfg.preload,
                        &plugins, err, sizeof(err)) < 0) {
        kiln_error("rootfs: %s", err);
        goto out;
    }
    for (size_t i = 0; cfg.images != NULL && cfg.images[i] != NULL; i++) {
        char name[64];
        const char *eq = strchr(cfg.images[i], '=');
        snprintf(name, sizeof(name), "%.*s", (int)(eq - cfg.images[i]), cfg.images[i]);
        const char *preload = kiln_config_image_value(cfg.image_preloads, name);
        if (kiln_image_init(&images[nimages++], &cfg, i + 1, name, eq + 1,
                            kiln_config_image_value(cfg.image_digests, name), preload ? preload : cfg.preload,
                            &plugins, err, sizeof(err)) < 0) {
            kiln_error("%s", err);
            goto out;
        }
    }
    if (cfg.keys_file != NULL) {
        if (kiln_keys_load(&keys, cfg.keys_file, err, sizeof(err)) < 0) {
            kiln_error("%s", err);
            goto out;
        }
        w.keys = &keys;
        kiln_info("keys file %s: %zu key(s)%s", cfg.keys_file, keys.n,
                  cfg.require_signature ? "; unsigned jobs are rejected" : "");
    }
    if (cfg.secrets_file != NULL) {
        if (kiln_secrets_load(&secrets, cfg.secrets_file, err, sizeof(err)) < 0 ||
            kiln_tls_new(cfg.egress_ca, &tls, err, sizeof(err)) < 0) {
            kiln_error("%s", err);
            goto out;
        }
        w.secrets = &secrets;
        w.tls = tls;
        cfg.sb.egress_ca_pem = kiln_tls_ca_pem(tls);
        kiln_info("secrets file %s: %zu secret(s); HTTPS to their hosts goes through this worker's CA",
                  cfg.secrets_file, secrets.n);
    } else if (cfg.egress_ca != NULL) {
        kiln_warn("--egress-ca is used only with --secrets-file (HTTPS the proxy ends itself)");
    }
    uv_loop_t *loop = uv_default_loop();
    /* the default image's sandboxes and pools now; the others' at their
     * first job */
    if (kiln_image_open(&images[0], loop, &cfg, err, sizeof(err)) < 0)
        goto out;
    struct kiln_backend *backend = images[0].backend;
    w.loop = loop;
    w.cfg = &cfg;
    w.images = images;
    w.nimages = nimages;
    r = strcmp(cfg.q.queue, "kafka") == 0
        ? kiln_source_kafka_new(loop, &cfg.q, kiln_worker_on_delivery, &w, &src, err, sizeof(err))
        : kiln_source_redis_new(loop, &cfg.q, kiln_worker_on_delivery, &w, &src, err, sizeof(err));
    if (r < 0) {
        kiln_error("source: %s", err);
        goto out;
    }
    w.src = src;
    src->on_cancel = kiln_worker_on_cancel;
    src->on_fatal = on_source_failed;
    src->on_count = on_source_count;
    for (size_t i = 0; i < images[0].plugins.n; i++) { /* as the default image runs them */
        const struct kiln_loaded *l = &images[0].plugins.v[i];
        kiln_metrics_declare_plugin(l->p->name);
        kiln_metrics_plugin_info(l->p->name, l->toolchain, l->unavailable == NULL);
    }
    kiln_metrics_declare_source(cfg.q.queue);
    for (size_t i = 0; kiln_session_ending(i) != NULL; i++) /* why sessions end */
        kiln_metrics_declare_session_end(kiln_session_ending(i));
    static struct kiln_metrics_hooks hooks;
    hooks = (struct kiln_metrics_hooks){&w, gauges, ready};
    if (cfg.metrics_addr != NULL) {
        if (kiln_metrics_serve(loop, cfg.metrics_addr, &hooks, err, sizeof(err)) < 0) {
            kiln_error("%s", err);
            goto out;
        }
        kiln_info("metrics on http://%s/metrics, /healthz, /readyz", cfg.metrics_addr);
    }
    if (cfg.expose_listen != NULL) {
        struct kiln_expose_opts xo = {cfg.expose_listen, cfg.expose_url, cfg.expose_max_conns, cfg.expose_wait_ms,
                                      cfg.expose_tls_cert, cfg.expose_tls_key};
        if (kiln_expose_start(loop, &xo, &w.expose, err, sizeof(err)) < 0) {
            kiln_error("%s", err);
            goto out;
        }
        if (backend->ops->port_open == NULL)
            kiln_warn("expose: the %s backend cannot reach into its sandboxes yet: jobs with session.expose "
                      "are rejected", backend->ops->name);
    }
    kiln_info("kiln-worker %s: consumer %s in group %s on %s, %lld slot(s), backend %s",
              KILN_VERSION, cfg.q.consumer, cfg.q.group, cfg.q.jobs, (long long)cfg.slots,
              backend->ops->name);
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    sigint.data = sigterm.data = &w;
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    if (src->ops->start(src) < 0)
        goto out;
    src->ops->credit(src, (unsigned)cfg.slots);
    kiln_worker_watch(&w);
    uv_run(loop, UV_RUN_DEFAULT);
    kiln_expose_stop(w.expose); /* (every session has ended: no route is left) */
    w.expose = NULL;
    src->ops->destroy(src); /* Kafka: commit what is stored, leave the group */
    src = NULL;
    rc = drain.failed ? 70 : 0;
out:
    for (size_t i = 0; i < nimages; i++)
        kiln_image_close(&images[i]);
    kiln_plugins_unload(&plugins);
    kiln_secrets_clear(&secrets);
    kiln_tls_free(tls); /* after the backend: the proxies borrow it */
    kiln_config_free(&cfg);
    return rc;
}
