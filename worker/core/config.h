/* kiln-worker's settings: flags, each also read from KILN_<FLAG>. */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct kiln_config {
    char *queue;          /* "redis" | "kafka" */
    char *redis;
    char *brokers;
    char **kafka_conf;    /* "K=V", nkafka_conf of them */
    size_t nkafka_conf;
    char *jobs;
    char *results;
    char *control;        /* control stream: {cancel: id} */
    char *group;
    char *consumer;
    int64_t slots;
    char *plugin_dir;
    char *backend;        /* auto | jail | qemu | firecracker */
    char *metrics_addr;
    char *agent;          /* path of kiln-agent */
    char *zygote_lib;     /* libkiln-zygote.so (agent/zygote.c) */
    int no_zygote;        /* jail: no interpreter forked from a template */
    char *state_dir;      /* where the jail's mount point lives */
    int64_t timeout_ms;       /* default per-job wall-clock limit */
    int64_t max_timeout_ms;   /* a job asking for more is rejected */
    int64_t output_bytes;     /* default cap on a job's stdout+stderr */
    int64_t max_output_bytes;
    int64_t max_job_bytes;    /* a larger job is rejected */
    int64_t claim_idle_ms;    /* take over jobs idle this long at dead consumers */
    int64_t block_ms;         /* how long one blocking read waits */
    int64_t tmp_mb;           /* size of the jail's /tmp and /work each */
    int64_t jail_uid_base;    /* host uid that the jail's root maps to */
    char *log_level;
    char *log_format;     /* json | text */
    int list_plugins;
    int kafka_transactions;
    char *rootfs;             /* the runtime image tree, or NULL: the host's /usr */
    char *rootfs_digest;      /* what its digest must be */
    int64_t pool;             /* warm sandboxes kept per profile */
    int64_t memory_mb, max_memory_mb;   /* per sandbox (cgroup) */
    int64_t pids, max_pids;             /* processes per sandbox (cgroup) */
    int64_t cpu_ms, max_cpu_ms;         /* CPU time, all of a job's processes; 0: none */
    int64_t build_timeout_ms, build_cpu_ms, build_memory_mb; /* a compiled job's build */
    int64_t file_bytes, max_file_bytes; /* largest file a job may write (RLIMIT_FSIZE) */
    int64_t collect_bytes, max_collect_bytes; /* what `collect` may send back */
    int64_t max_sessions;               /* sessions kept open at once */
    int64_t session_idle_ms, max_session_idle_ms; /* an idle session's end */
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
    /* not an option: the worker's egress CA certificate (PEM), set at start
     * with --secrets-file, which sandboxes trust */
    const char *egress_ca_pem;
    /* microVM backends (qemu, firecracker) */
    char *vm_kernel;                    /* uncompressed guest kernel (rootfs/build-vm.sh) */
    char *vm_initrd;                    /* its initramfs: /init = kiln-agent */
    char *vm_image;                     /* the runtime squashfs (rootfs/build-image.sh) */
    char *vm_accel;                     /* auto | kvm | tcg (qemu) */
    char *vm_append;                    /* more guest kernel arguments */
    int64_t vm_memory_mb;               /* guest RAM of a pooled VM */
    int64_t vm_vcpus;
    int vm_cold;                        /* no snapshots: every VM boots */
    char *qemu;                         /* qemu-system-x86_64 */
    char *firecracker;                  /* the firecracker binary */
    char *jailer;                       /* firecracker's jailer, or NULL */
    int64_t hang_ms;                    /* a running sandbox silent this long is hung */
};

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
