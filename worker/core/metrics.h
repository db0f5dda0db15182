/*
 * Prometheus metrics, /healthz and /readyz on --metrics-addr. Counters and
 * histograms live here and are fed by the runner, the pools and the
 * sources; gauges and readiness are asked for at scrape time. Labels are
 * bounded sets (plugins, statuses, reason classes), never job ids.
 */
#ifndef KILN_METRICS_H
#define KILN_METRICS_H

#include <stddef.h>
#include <stdio.h>
#include <uv.h>

/* Asked at every scrape: write gauge lines to `out`; say whether the
 * worker is ready (and if not, why). */
struct kiln_metrics_hooks {
    void *arg;
    void (*gauges)(void *arg, FILE *out);
    int (*ready)(void *arg, char *why, size_t len);
};

/* Declare the label values known at start, at zero, so every series
 * exists before its first event (a dashboard shows 0, not "no data"). */
/* kiln_plugin_info{plugin, toolchain, available}: what each plugin runs
 * with (its image's package and version) and whether it can run here. */
void kiln_metrics_plugin_info(const char *plugin, const char *toolchain, int available);
/* A label sessions may end with (kiln_sessions_closed_total's), shown
 * at 0 before the first. */
void kiln_metrics_declare_session_end(const char *why);
void kiln_metrics_declare_plugin(const char *plugin);
void kiln_metrics_declare_source(const char *source);

void kiln_metrics_job_started(const char *plugin);
void kiln_metrics_job_finished(const char *plugin, const char *status, double seconds);
void kiln_metrics_queue_wait(double seconds);
/* Why a job was rejected: decided where it is rejected, from what was
 * checked, never from the reason's text (which may quote the job: a plugin
 * named "sigma" is an unknown plugin, not a signature). */
enum kiln_reject {
    KILN_REJECT_SIGNATURE,
    KILN_REJECT_UNKNOWN_PLUGIN,
    KILN_REJECT_UNAVAILABLE,    /* a plugin whose runtime this worker lacks */
    KILN_REJECT_LIMITS,
    KILN_REJECT_TOO_LARGE,
    KILN_REJECT_NOT_MSGPACK,
    KILN_REJECT_INVALID,
    KILN_REJECT_SECRET,         /* a secret this worker does not have */
    KILN_REJECT_UNKNOWN_IMAGE,  /* a runtime image this worker does not serve */
    KILN_REJECT_OTHER,
    KILN_REJECT_CLASSES
};
void kiln_metrics_rejected(enum kiln_reject why);
void kiln_metrics_output(int fd, size_t bytes);
void kiln_metrics_reconnect(const char *source);
void kiln_metrics_rebalance(void);
/* A session opened (its plugin), or ended: `reason` one of closed, idle,
 * cancelled, drained, exited, sandbox_died. */
void kiln_metrics_session_opened(const char *plugin);
void kiln_metrics_session_closed(const char *reason);
void kiln_metrics_pool(const char *plugin, int hit, double refill_seconds);

/* Serve on "HOST:PORT". Returns 0 or a negative libuv code with why. */
int kiln_metrics_serve(uv_loop_t *loop, const char *addr, const struct kiln_metrics_hooks *hooks,
                       char *err, size_t errlen);

/* The text exposition, as /metrics serves it; malloc'd, for tests. */
char *kiln_metrics_text(const struct kiln_metrics_hooks *hooks, size_t *len);

#endif
