/*
 * Warm pools: per plugin, sandboxes made ahead of demand, each with its
 * agent ready and, when the plugin can (prestart), its interpreter started
 * and waiting for the job. A job takes one and skips sandbox creation and
 * interpreter start-up; the pool refills behind it, never on the job's
 * path. Each sandbox serves one job. An empty pool is a miss: the job
 * starts cold.
 */
#ifndef KILN_POOL_H
#define KILN_POOL_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "core/link.h"
#include "sandbox/backend.h"
#include "kiln/plugin.h"

struct kiln_backend;
struct kiln_config;
struct kiln_plugins;
struct kiln_sandbox;
struct kiln_pool;

/* A pool of cfg->pool sandboxes per plugin that can run on `backend`'s
 * runtime image (`image`, borrowed; none when cfg->pool is 0); a python
 * template imports `preload` (borrowed) before it forks. Returns 0 with
 * the pool in *out (owned by the caller), or -ENOMEM. */
int kiln_pool_new(uv_loop_t *loop, const struct kiln_config *cfg, struct kiln_backend *backend,
                  const struct kiln_plugins *plugins, const char *image, const char *preload,
                  struct kiln_pool **out);
/* Gauge lines for /metrics: warm and wanted sandboxes per image and
 * plugin, of `n` pools (NULL ones skipped). */
void kiln_pool_gauges(struct kiln_pool *const *pools, size_t n, FILE *out);
/* 1 once every pool has been full at least once (the worker is warm). */
int kiln_pool_warmed(struct kiln_pool *pool);

/* Stop refilling and kill every waiting sandbox (draining). */
void kiln_pool_stop(struct kiln_pool *pool);

/* A READY link for `plugin` whose warm state suits `job` (its profile
 * is `profile`) and whose sandbox has what it `needs`, handed over to `cb`
 * and `arg` (kiln_link_adopt); NULL (a miss) when there is none. */
struct kiln_link *kiln_pool_take(struct kiln_pool *pool, const struct kiln_plugin *plugin,
                                    const char *profile, const struct kiln_job_view *job,
                                    const struct kiln_spawn_opts *needs,
                                    kiln_link_event_cb cb, void *arg);

#endif
