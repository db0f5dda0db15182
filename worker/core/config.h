/* kiln-worker's settings: flags, each also read from KILN_<FLAG>. */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "queue/options.h"
#include "sandbox/options.h"

struct kiln_config {
    struct kiln_queue_opts q;     /* what the source reads */
    struct kiln_sandbox_opts sb;  /* what the backends read */
    char *results;
    int64_t slots;
    char *plugin_dir;
    char *metrics_addr;
    int64_t timeout_ms;       /* default per-job wall-clock limit */
    int64_t max_timeout_ms;   /* a job asking for more is rejected */
    int64_t output_bytes;     /* default cap on a job's stdout+stderr */
    int64_t max_output_bytes;
    int64_t max_job_bytes;    /* a larger job is rejected */
    char *log_level;
    char *log_format;     /* json | text */
    int list_plugins;
    char *rootfs_digest;      /* what its digest must be */
    int64_t pool;             /* warm sandboxes kept per profile */
    int64_t cpu_ms, max_cpu_ms;         /* CPU time, all of a job's processes; 0: none */
    int64_t build_timeout_ms, build_cpu_ms, build_memory_mb; /* a compiled job's build */
    int64_t file_bytes, max_file_bytes; /* largest file a job may write (RLIMIT_FSIZE) */
    int64_t collect_bytes, max_collect_bytes; /* what `collect` may send back */
    int64_t max_sessions;               /* sessions kept open at once */
    int64_t session_idle_ms, max_session_idle_ms; /* an idle session's end */
    int64_t session_cpu_ms;             /* a session's CPU budget, all of it; 0: none */
    char *expose_listen;                /* where exposed ports are served, or NULL: off */
    char *expose_url;                   /* their URLs' template, or NULL: from expose_listen */
    int64_t expose_max_conns;           /* connections per session at once */
    int64_t expose_wait_ms;             /* for an exposed port's first answer */
    int expose_keeps_alive;             /* requests count against a session's idle time */
    char *expose_tls_cert, *expose_tls_key; /* PEM files: the exposed ports' server speaks HTTPS */
    int64_t open_files;                 /* descriptors per process (RLIMIT_NOFILE) */
    int64_t drain_timeout_ms;           /* SIGTERM: how long running jobs may finish */
    int64_t max_attempts;               /* kiln's own failures are retried up to this */
    int64_t retry_backoff_ms;           /* first retry's delay; doubles, with jitter */
    char *dead_letters;                 /* where jobs past max_attempts go */
    char *net_private_ok;               /* CIDRs the egress proxy may reach though private */
    int require_signature;              /* run only jobs signed with a known key */
    char *keys_file;                    /* KEY-ID HEX-SECRET lines */
    char *secrets_file;                 /* NAME HOSTS VALUE lines (core/secrets.h) */
    char *egress_ca;                    /* more CAs the proxy trusts for destinations */
    char *preload;                      /* modules python's template imports (KILN_PRELOAD) */
    char **images;                      /* "NAME=PATH": more runtime images, NULL-ended,
                                         * at most KILN_MAX_IMAGES */
    char **image_digests;               /* "NAME=HEX": what each must be, NULL-ended */
    char **image_preloads;              /* "NAME=MODULES": python's preload on an image */
};

#define KILN_MAX_IMAGES 16 /* --image at most so many times */

/* The runtime image called `name` among "NAME=VALUE" entries of `list`
 * (cfg->images, image_digests, image_preloads): its VALUE, or NULL. */
const char *kiln_config_image_value(char *const *list, const char *name);


/*
 * Fill `cfg` from defaults, then KILN_* variables, then argv. Returns 0 to
 * run, 1 when the caller should exit 0 (--help, --version), -EINVAL after
 * printing why to stderr. Strings in cfg are owned by cfg: kiln_config_free().
 */
int kiln_config_parse(struct kiln_config *cfg, int argc, char **argv);
void kiln_config_free(struct kiln_config *cfg);

/* The directory holding the running executable, owned by the caller. */
char *kiln_exe_dir(void);

#endif
