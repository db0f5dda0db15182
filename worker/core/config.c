#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/suggest.h"
#include "expose/expose.h"
#include "wire/job.h"

/* kiln's library directory relative to kiln-worker's, from the install
 * dirs (CMakeLists.txt); the build tree has the same layout. */
#ifndef KILN_LIB_RELDIR
#define KILN_LIB_RELDIR "../lib/kiln"
#endif

/* What real samples of code-generation benchmarks import, about one in
 * eight `typing` alone: a harness's process has them loaded already. */
#define KILN_PRELOAD_DEFAULT                                                                          \
    "typing,collections,math,re,itertools,functools,heapq,bisect,string,random,hashlib,copy,"        \
    "operator,datetime,json,fractions,decimal,statistics,dataclasses,enum"

enum opt_type { OPT_STR, OPT_INT, OPT_LIST, OPT_FLAG };

/* One table describes every setting: its flag, type, field and help. The
 * environment variable is derived from the flag: --claim-idle-ms reads
 * KILN_CLAIM_IDLE_MS. */
static const struct opt {
    const char *name;
    enum opt_type type;
    size_t off;
    const char *def;
    const char *help;
} opts[] = {
#define F(f) offsetof(struct kiln_config, f)
    {"queue", OPT_STR, F(q.queue), "redis", "where jobs come from: redis | kafka"},
    {"redis", OPT_STR, F(q.redis), "redis://127.0.0.1:6379", "redis://[[user]:password@]host[:port][/db]"},
    {"brokers", OPT_STR, F(q.brokers), NULL, "Kafka bootstrap servers"},
    {"kafka-conf", OPT_LIST, F(q.kafka_conf), NULL, "K=V passed to librdkafka, consumer and producer (repeatable: TLS, SASL, ...)"},
    {"kafka-transactions", OPT_FLAG, F(q.kafka_transactions), NULL, "Kafka: commit each exit frame with its offsets in one transaction"},
    {"jobs", OPT_STR, F(q.jobs), "kiln.jobs", "job stream / topic"},
    {"results", OPT_STR, F(results), "kiln.results", "result stream / topic for jobs without reply_to"},
    {"control", OPT_STR, F(q.control), "kiln.control", "control stream every worker reads: XADD it * cancel JOB-ID"},
    {"group", OPT_STR, F(q.group), "kiln", "consumer group (Redis: created at id 0 if missing)"},
    {"consumer", OPT_STR, F(q.consumer), NULL, "consumer name in the group; give each worker its own (default: hostname)"},
    {"slots", OPT_INT, F(slots), "0", "jobs running at once (default: number of CPUs)"},
    {"plugin-dir", OPT_STR, F(plugin_dir), NULL, "where *.so plugins are loaded from (default: " KILN_LIB_RELDIR "/plugins from kiln-worker's directory)"},
    {"backend", OPT_STR, F(sb.backend), "auto", "sandbox backend: auto | jail | qemu | firecracker (auto: firecracker, else qemu, when KVM runs guests here, else the jail; it logs which and why)"},
    {"metrics-addr", OPT_STR, F(metrics_addr), NULL, "HOST:PORT for /metrics, /healthz, /readyz"},
    {"rootfs", OPT_STR, F(sb.rootfs), NULL, "runtime image, every sandbox's /: its squashfs (loop-mounted; no sandbox sees its host path) or its tree (bind-mounted: its host path shows in /proc/self/mountinfo) (rootfs/build-image.sh); default: the host's /usr"},
    {"rootfs-digest", OPT_STR, F(rootfs_digest), NULL, "the digest --rootfs must have; the worker refuses any other"},
    {"pool", OPT_INT, F(pool), "2", "warm sandboxes kept ready per runtime profile (0: none)"},
    {"agent", OPT_STR, F(sb.agent), NULL, "path of kiln-agent (default: beside kiln-worker)"},
    {"zygote-lib", OPT_STR, F(sb.zygote_lib), NULL, "jail: the zygote library (default: " KILN_LIB_RELDIR "/libkiln-zygote.so from kiln-worker's directory)"},
    {"no-zygote", OPT_FLAG, F(sb.no_zygote), NULL, "jail: start every sandbox afresh (python's interpreter too), not forked from a template"},
    {"preload", OPT_STR, F(preload), KILN_PRELOAD_DEFAULT, "python: modules its template imports once, before it forks jobs, so a job importing them pays nothing, as in a harness's own process (comma-separated; '' for none)"},
    {"image", OPT_LIST, F(images), NULL, "NAME=PATH: another runtime image jobs may choose with `image: NAME` (its squashfs or tree, as --rootfs; repeatable); --rootfs is the image called default. Its sandboxes, pools and templates are made once a job asks for it"},
    {"image-digest", OPT_LIST, F(image_digests), NULL, "NAME=HEX: the digest --image NAME must have (one for each --image; the worker refuses any other)"},
    {"image-preload", OPT_LIST, F(image_preloads), NULL, "NAME=MODULES: python's template on image NAME imports these (as --preload, which the other images keep), e.g. python-data=numpy,pandas"},
    {"state-dir", OPT_STR, F(sb.state_dir), "/run/kiln", "the worker's runtime directory"},
    {"timeout-ms", OPT_INT, F(timeout_ms), "30000", "wall-clock limit of a job that sets none"},
    {"max-timeout-ms", OPT_INT, F(max_timeout_ms), "600000", "largest timeout_ms a job may ask for"},
    {"output-bytes", OPT_INT, F(output_bytes), "16777216", "output cap of a job that sets none"},
    {"max-output-bytes", OPT_INT, F(max_output_bytes), "268435456", "largest output_bytes a job may ask for"},
    {"memory-mb", OPT_INT, F(sb.memory_mb), "512", "memory of a sandbox whose job sets none (cgroup)"},
    {"max-memory-mb", OPT_INT, F(sb.max_memory_mb), "8192", "largest memory_mb a job may ask for"},
    {"pids", OPT_INT, F(sb.pids), "256", "processes in a sandbox whose job sets none (cgroup)"},
    {"max-pids", OPT_INT, F(sb.max_pids), "4096", "largest pids a job may ask for"},
    {"cpu-ms", OPT_INT, F(cpu_ms), "0", "CPU time of a job that sets none, all its processes together (0: none)"},
    {"max-cpu-ms", OPT_INT, F(max_cpu_ms), "600000", "largest cpu_ms a job may ask for"},
    {"build-timeout-ms", OPT_INT, F(build_timeout_ms), "30000", "wall-clock limit of a compiled job's build"},
    {"build-cpu-ms", OPT_INT, F(build_cpu_ms), "20000", "CPU time of a compiled job's build, all its processes (0: none)"},
    {"build-memory-mb", OPT_INT, F(build_memory_mb), "1024", "memory of a compiled job's build sandbox (cgroup)"},
    {"file-bytes", OPT_INT, F(file_bytes), "268435456", "largest file a job that sets none may write"},
    {"max-file-bytes", OPT_INT, F(max_file_bytes), "1073741824", "largest file_bytes a job may ask for"},
    {"collect-bytes", OPT_INT, F(collect_bytes), "16777216", "what a job's collect may send back, all files together, when it sets no collect_bytes"},
    {"max-collect-bytes", OPT_INT, F(max_collect_bytes), "268435456", "largest collect_bytes a job may ask for"},
    {"max-sessions", OPT_INT, F(max_sessions), "16", "sessions (jobs' `session`) this worker keeps open at once, each a sandbox (0: none)"},
    {"session-idle-ms", OPT_INT, F(session_idle_ms), "600000", "a session with no job this long ends, when its jobs set no idle_ms"},
    {"max-session-idle-ms", OPT_INT, F(max_session_idle_ms), "3600000", "largest session.idle_ms a job may ask for"},
    {"session-cpu-ms", OPT_INT, F(session_cpu_ms), "600000", "CPU time a session may use in all, its jobs and what they leave running between them (0: no budget); past it the session ends"},
    {"expose-listen", OPT_STR, F(expose_listen), NULL, "ADDR:PORT where sessions' exposed ports are served (session.expose; off unless given)"},
    {"expose-url", OPT_STR, F(expose_url), NULL, "an exposed port's URL, with {token}: https://{token}.preview.example.com (the Host's first label) or http://HOST:PORT/{token}/ (the path's first segment; the default, from --expose-listen)"},
    {"expose-max-conns", OPT_INT, F(expose_max_conns), "64", "connections to one session's exposed ports at once (503 past it)"},
    {"expose-wait-ms", OPT_INT, F(expose_wait_ms), "30000", "how long an exposed port may take to start answering a request (502 past it)"},
    {"expose-tls-cert", OPT_STR, F(expose_tls_cert), NULL, "PEM certificate chain (a wildcard for host-form URLs): exposed ports are served over HTTPS by the worker itself (else TLS is an ingress's in front of it)"},
    {"expose-tls-key", OPT_STR, F(expose_tls_key), NULL, "the private key of --expose-tls-cert (PEM)"},
    {"expose-keeps-alive", OPT_FLAG, F(expose_keeps_alive), NULL, "requests to a session's exposed ports count as activity against its idle time"},
    {"open-files", OPT_INT, F(open_files), "1024", "open descriptors per process of a job"},
    {"max-attempts", OPT_INT, F(max_attempts), "3", "attempts of a job that kiln itself fails (sandbox died, ...)"},
    {"retry-backoff-ms", OPT_INT, F(retry_backoff_ms), "200", "delay before the first retry; doubles, with jitter"},
    {"dead-letters", OPT_STR, F(dead_letters), "kiln.dead", "stream / topic for jobs past --max-attempts"},
    {"drain-timeout-ms", OPT_INT, F(drain_timeout_ms), "30000", "on SIGTERM, how long running jobs may finish"},
    {"net-private-ok", OPT_STR, F(net_private_ok), "", "comma-separated IPv4 CIDRs the egress proxy may reach though private"},
    {"require-signature", OPT_FLAG, F(require_signature), NULL, "run only jobs with a valid HMAC-SHA256 'sig' (see --keys-file)"},
    {"keys-file", OPT_STR, F(keys_file), NULL, "signing keys, 'KEY-ID HEX-SECRET' per line; re-read when it changes"},
    {"secrets-file", OPT_STR, F(secrets_file), NULL, "secrets jobs may use, 'NAME HOSTS VALUE' per line; re-read when it changes"},
    {"egress-ca", OPT_STR, F(egress_ca), NULL, "PEM file of more CAs the egress proxy trusts for HTTPS destinations"},
    {"max-job-bytes", OPT_INT, F(max_job_bytes), "8388608", "larger jobs are rejected"},
    {"claim-idle-ms", OPT_INT, F(q.claim_idle_ms), "30000", "claim jobs idle this long at other consumers"},
    {"block-ms", OPT_INT, F(q.block_ms), "2000", "how long one blocking queue read waits"},
    {"tmp-mb", OPT_INT, F(sb.tmp_mb), "256", "size of a sandbox's /tmp and of its /work"},
    {"jail-uid-base", OPT_INT, F(sb.jail_uid_base), "1000000", "first host uid of the sandboxes' ranges: sandbox k's root maps to N + k*65536, its job's uid 1000 to that + 1000 (4096 ranges: workers sharing a host need bases 2^28 apart)"},
    {"vm-kernel", OPT_STR, F(sb.vm_kernel), NULL, "microVMs: the guest kernel, an uncompressed vmlinux (rootfs/build-vm.sh)"},
    {"vm-initrd", OPT_STR, F(sb.vm_initrd), NULL, "microVMs: the initramfs with kiln-agent as /init"},
    {"vm-image", OPT_STR, F(sb.vm_image), NULL, "microVMs: the runtime image's squashfs, the guest's root"},
    {"vm-accel", OPT_STR, F(sb.vm_accel), "auto", "qemu: kvm | tcg | auto (kvm when /dev/kvm runs a VM here)"},
    {"vm-append", OPT_STR, F(sb.vm_append), "", "microVMs: more guest kernel arguments"},
    {"vm-memory-mb", OPT_INT, F(sb.vm_memory_mb), "768", "microVMs: guest RAM of a pooled VM (a job asking more gets its own)"},
    {"vm-vcpus", OPT_INT, F(sb.vm_vcpus), "1", "microVMs: vCPUs per VM"},
    {"vm-cold", OPT_FLAG, F(sb.vm_cold), NULL, "microVMs: boot every VM (no snapshot to restore from)"},
    {"qemu", OPT_STR, F(sb.qemu), "qemu-system-x86_64", "the QEMU binary (--backend qemu)"},
    {"firecracker", OPT_STR, F(sb.firecracker), "firecracker", "the Firecracker binary (--backend firecracker)"},
    {"jailer", OPT_STR, F(sb.jailer), NULL, "Firecracker's jailer: run each VM under it"},
    {"hang-ms", OPT_INT, F(sb.hang_ms), "15000", "a running sandbox that says nothing this long is hung: killed, job retried"},
    {"log-level", OPT_STR, F(log_level), "info", "debug | info | warn | error"},
    {"log-format", OPT_STR, F(log_format), "json", "json (one object per line) | text"},
    {"list-plugins", OPT_FLAG, F(list_plugins), NULL, "load the plugins, list them and exit"},
#undef F
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* Module names, dotted, comma-separated: what python's template will
 * import (and nothing it could read as code). */
static int preload_ok(const char *s)
{
    int start = 1; /* at the start of a name */
    if (*s == '\0')
        return 1;
    if (strlen(s) > 4096)
        return 0;
    for (; *s; s++) {
        if (*s == ',' || *s == '.') {
            if (start)
                return 0;
            start = 1;
        } else if (isalpha((unsigned char)*s) || *s == '_' || (!start && isdigit((unsigned char)*s))) {
            start = 0;
        } else {
            return 0;
        }
    }
    return !start;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln-worker [options]\n\nEvery option also reads KILN_<OPTION>; a flag beats the variable.\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s%s", opts[i].name,
                 opts[i].type == OPT_FLAG ? "" : opts[i].type == OPT_INT ? " N" : " VALUE");
        fprintf(f, "  %-26s %s%s%s%s\n", flag, opts[i].help, opts[i].def ? " [" : "",
                opts[i].def ? opts[i].def : "", opts[i].def ? "]" : "");
    }
    fprintf(f, "  %-26s %s\n  %-26s %s\n", "--help", "this text", "--version", "print the version");
}

static size_t list_len(char *const *list)
{
    size_t n = 0;
    while (list != NULL && list[n] != NULL)
        n++;
    return n;
}

const char *kiln_config_image_value(char *const *list, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; list != NULL && list[i] != NULL; i++)
        if (strncmp(list[i], name, len) == 0 && list[i][len] == '=')
            return list[i] + len + 1;
    return NULL;
}

/* --image, --image-digest and --image-preload: each NAME=VALUE with a
 * name an image may have, an image once, a digest for each, and nothing
 * said of an image that is not there. */
static int check_images(const struct kiln_config *cfg)
{
    struct {
        const char *flag;
        char *const *list;
    } lists[] = {{"--image", cfg->images}, {"--image-digest", cfg->image_digests},
                 {"--image-preload", cfg->image_preloads}};
    if (list_len(cfg->images) > KILN_MAX_IMAGES) {
        fprintf(stderr, "kiln-worker: --image: at most %d images\n", KILN_MAX_IMAGES);
        return -EINVAL;
    }
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        for (size_t i = 0; lists[l].list != NULL && lists[l].list[i] != NULL; i++) {
            const char *e = lists[l].list[i], *eq = strchr(e, '=');
            char name[64];
            if (eq == NULL || eq == e || (size_t)(eq - e) >= sizeof(name) || eq[1] == '\0') {
                fprintf(stderr, "kiln-worker: %s '%s': give NAME=VALUE\n", lists[l].flag, e);
                return -EINVAL;
            }
            memcpy(name, e, (size_t)(eq - e));
            name[eq - e] = '\0';
            if (!kiln_job_valid_image(name) || strcmp(name, "default") == 0) {
                fprintf(stderr, "kiln-worker: %s: '%s' cannot name an image ([a-z0-9][a-z0-9._-]{0,62}; "
                                "default is --rootfs)\n", lists[l].flag, name);
                return -EINVAL;
            }
            if (kiln_config_image_value(lists[l].list, name) != eq + 1) {
                fprintf(stderr, "kiln-worker: %s: image %s given twice\n", lists[l].flag, name);
                return -EINVAL;
            }
            if (l > 0 && kiln_config_image_value(cfg->images, name) == NULL) {
                fprintf(stderr, "kiln-worker: %s: no --image %s=PATH\n", lists[l].flag, name);
                return -EINVAL;
            }
            if (l == 0 && kiln_config_image_value(cfg->image_digests, name) == NULL) {
                fprintf(stderr, "kiln-worker: --image %s needs --image-digest %s=HEX: the worker runs only "
                                "an image it expects\n", name, name);
                return -EINVAL;
            }
            if (l == 2 && !preload_ok(eq + 1)) {
                fprintf(stderr, "kiln-worker: --image-preload %s: '%s' is not a comma-separated list of "
                                "module names\n", name, eq + 1);
                return -EINVAL;
            }
        }
    }
    return 0;
}

static int set(struct kiln_config *cfg, const struct opt *o, const char *val, const char *from)
{
    void *field = (char *)cfg + o->off;
    switch (o->type) {
    case OPT_STR:
        free(*(char **)field);
        if ((*(char **)field = strdup(val)) == NULL)
            return -ENOMEM;
        return 0;
    case OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno != 0 || end == val || *end != '\0' || v < 0) {
            fprintf(stderr, "kiln-worker: %s: '%s' is not a non-negative integer\n", from, val);
            return -EINVAL;
        }
        *(int64_t *)field = v;
        return 0;
    }
    case OPT_FLAG:
        *(int *)field = strcmp(val, "0") != 0 && strcmp(val, "false") != 0 && val[0] != '\0';
        return 0;
    case OPT_LIST: { /* NULL-ended */
        char ***list = field;
        size_t n = list_len(*list);
        char **p = realloc(*list, (n + 2) * sizeof(char *));
        if (p == NULL)
            return -ENOMEM;
        *list = p;
        if ((p[n] = strdup(val)) == NULL)
            return -ENOMEM;
        p[n + 1] = NULL;
        return 0;
    }
    }
    return -EINVAL;
}

static int check(struct kiln_config *cfg)
{
    static const char *queues[] = {"redis", "kafka", NULL};
    static const char *backends[] = {"auto", "jail", "qemu", "firecracker", NULL};
    static const char *levels[] = {"debug", "info", "warn", "error", NULL};
    static const char *formats[] = {"json", "text", NULL};
    struct { const char *name, *val, **allowed; } enums[] = {
        {"queue", cfg->q.queue, queues},
        {"backend", cfg->sb.backend, backends},
        {"log-level", cfg->log_level, levels},
        {"log-format", cfg->log_format, formats},
    };
    for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++) {
        const char **a = enums[i].allowed;
        while (*a && strcmp(*a, enums[i].val) != 0)
            a++;
        if (*a == NULL) {
            fprintf(stderr, "kiln-worker: --%s: unknown value '%s'\n", enums[i].name, enums[i].val);
            return -EINVAL;
        }
    }
    if (cfg->timeout_ms < 1 || cfg->timeout_ms > cfg->max_timeout_ms) {
        fprintf(stderr, "kiln-worker: --timeout-ms must be between 1 and --max-timeout-ms\n");
        return -EINVAL;
    }
    if (cfg->build_timeout_ms < 1 || cfg->build_timeout_ms > cfg->max_timeout_ms ||
        cfg->build_memory_mb < 1 || cfg->build_memory_mb > cfg->sb.max_memory_mb || cfg->build_cpu_ms < 0) {
        fprintf(stderr, "kiln-worker: --build-timeout-ms and --build-memory-mb must be between 1 and their "
                        "--max-*, --build-cpu-ms at least 0\n");
        return -EINVAL;
    }
    if (cfg->output_bytes > cfg->max_output_bytes) {
        fprintf(stderr, "kiln-worker: --output-bytes must not exceed --max-output-bytes\n");
        return -EINVAL;
    }
    if (cfg->require_signature && cfg->keys_file == NULL) {
        fprintf(stderr, "kiln-worker: --require-signature needs --keys-file\n");
        return -EINVAL;
    }
    if (cfg->sb.rootfs != NULL && cfg->rootfs_digest == NULL) {
        fprintf(stderr, "kiln-worker: --rootfs needs --rootfs-digest: the worker runs only an image it expects\n");
        return -EINVAL;
    }
    if (check_images(cfg) < 0)
        return -EINVAL;
    if (!preload_ok(cfg->preload)) {
        fprintf(stderr, "kiln-worker: --preload: '%s' is not a comma-separated list of module names (a.b_c,d)\n",
                cfg->preload);
        return -EINVAL;
    }
    const char *bad_url = cfg->expose_url != NULL ? kiln_expose_url_ok(cfg->expose_url) : NULL;
    if (bad_url != NULL) {
        fprintf(stderr, "kiln-worker: --expose-url %s: %s\n", cfg->expose_url, bad_url);
        return -EINVAL;
    }
    if ((cfg->expose_tls_cert == NULL) != (cfg->expose_tls_key == NULL)) {
        fprintf(stderr, "kiln-worker: --expose-tls-cert and --expose-tls-key go together\n");
        return -EINVAL;
    }
    if (cfg->expose_max_conns < 1 || cfg->expose_wait_ms < 1 || cfg->session_cpu_ms < 0) {
        fprintf(stderr, "kiln-worker: --expose-max-conns and --expose-wait-ms must be at least 1, "
                        "--session-cpu-ms at least 0\n");
        return -EINVAL;
    }
    if (cfg->q.claim_idle_ms < 100 || cfg->q.block_ms < 10) {
        fprintf(stderr, "kiln-worker: --claim-idle-ms must be >= 100 and --block-ms >= 10\n");
        return -EINVAL;
    }
    return 0;
}

char *kiln_exe_dir(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0)
        return strdup(".");
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    return strdup(buf);
}

static int fill_defaults(struct kiln_config *cfg)
{
    char host[256], *dir;
    if (cfg->slots == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->slots = n > 0 ? n : 1;
    }
    if (cfg->q.consumer == NULL) {
        if (gethostname(host, sizeof(host)) != 0)
            strcpy(host, "kiln");
        host[sizeof(host) - 1] = '\0';
        if ((cfg->q.consumer = strdup(host)) == NULL)
            return -ENOMEM;
    }
    if (cfg->plugin_dir == NULL || cfg->sb.agent == NULL || cfg->sb.zygote_lib == NULL) {
        if ((dir = kiln_exe_dir()) == NULL)
            return -ENOMEM;
        size_t n = strlen(dir) + sizeof(KILN_LIB_RELDIR) + 32;
        if (cfg->plugin_dir == NULL && (cfg->plugin_dir = malloc(n)) != NULL)
            snprintf(cfg->plugin_dir, n, "%s/" KILN_LIB_RELDIR "/plugins", dir);
        if (cfg->sb.agent == NULL && (cfg->sb.agent = malloc(n)) != NULL)
            snprintf(cfg->sb.agent, n, "%s/kiln-agent", dir);
        if (cfg->sb.zygote_lib == NULL && (cfg->sb.zygote_lib = malloc(n)) != NULL)
            snprintf(cfg->sb.zygote_lib, n, "%s/" KILN_LIB_RELDIR "/libkiln-zygote.so", dir);
        free(dir);
        if (cfg->plugin_dir == NULL || cfg->sb.agent == NULL || cfg->sb.zygote_lib == NULL)
            return -ENOMEM;
    }
    return 0;
}

int kiln_config_parse(struct kiln_config *cfg, int argc, char **argv)
{
    struct option lopts[NOPTS + 3];
    int r;

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].def != NULL && (r = set(cfg, &opts[i], opts[i].def, "default")) < 0)
            return r;
        char env[64] = "KILN_";
        for (size_t j = 0; opts[i].name[j] && j + 6 < sizeof(env); j++)
            env[5 + j] = opts[i].name[j] == '-' ? '_' : (char)toupper((unsigned char)opts[i].name[j]);
        const char *v = getenv(env);
        if (v != NULL && (r = set(cfg, &opts[i], v, env)) < 0)
            return r;
        lopts[i] = (struct option){opts[i].name, opts[i].type == OPT_FLAG ? no_argument : required_argument,
                                   NULL, (int)(i + 256)};
    }
    lopts[NOPTS] = (struct option){"help", no_argument, NULL, 'h'};
    lopts[NOPTS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    lopts[NOPTS + 2] = (struct option){NULL, 0, NULL, 0};

    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hV", lopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == 'V') {
            printf("kiln-worker %s\n", KILN_VERSION);
            return 1;
        }
        if (c < 256) {
            if (!kiln_suggest_option("kiln-worker", lopts, argv, optind))
                usage(stderr);
            return -EINVAL;
        }
        const struct opt *o = &opts[c - 256];
        char from[80];
        snprintf(from, sizeof(from), "--%s", o->name);
        if ((r = set(cfg, o, o->type == OPT_FLAG ? "1" : optarg, from)) < 0)
            return r;
    }
    if (optind < argc) {
        fprintf(stderr, "kiln-worker: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if ((r = fill_defaults(cfg)) < 0)
        return r;
    cfg->q.nkafka_conf = list_len(cfg->q.kafka_conf);
    return check(cfg);
}

void kiln_config_free(struct kiln_config *cfg)
{
    for (size_t i = 0; i < NOPTS; i++) {
        void *field = (char *)cfg + opts[i].off;
        if (opts[i].type == OPT_STR)
            free(*(char **)field);
    }
    for (size_t i = 0; i < NOPTS; i++) {
        char **list = *(char ***)((char *)cfg + opts[i].off);
        for (size_t j = 0; opts[i].type == OPT_LIST && list != NULL && list[j] != NULL; j++)
            free(list[j]);
        if (opts[i].type == OPT_LIST)
            free(list);
    }
    memset(cfg, 0, sizeof(*cfg));
}
