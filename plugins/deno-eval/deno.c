/*
 * deno-eval: JavaScript or TypeScript. The code becomes /work/main.ts and
 * runs as
 *
 *   deno run --quiet --no-prompt --no-config --no-lock --allow-read=/work
 *            [--allow-env=KEYS] [--allow-net=HOSTS] /work/main.ts ARGS...
 *
 * No other Deno permission is granted: defence in depth beside the
 * sandbox. The job's env keys become --allow-env, its net.allow list
 * --allow-net; a job without `net` gets no network permission at all. An
 * uncaught error prints on stderr and exits 1: status "error".
 *
 * Warm start: deno starts a small bootstrap (a data: URL, so the image
 * needs no file of ours) with the same base permissions; it reads the job
 * envelope from stdin, sets Deno.args and imports /work/main.ts. Jobs that
 * need more permissions than the warm process has (env, net) start cold.
 */
#include <kiln/plugin.h>
#include <stdlib.h>
#include <string.h>

#define DENO "/usr/local/bin/deno"
#define SCRIPT "/work/main.ts"

static const char *const base[] = {DENO, "run", "--quiet", "--no-prompt", "--no-config",
                                   "--no-lock", "--allow-read=/work"};

static const char bootstrap_js[] =
    "const r = async (n) => { const b = new Uint8Array(n); let o = 0;"
    " while (o < n) { const k = await Deno.stdin.read(b.subarray(o));"
    " if (k === null) Deno.exit(0); o += k; } return b; };\n"
    "const h = await r(4);\n"
    "const f = new TextDecoder().decode(await r(new DataView(h.buffer).getUint32(0))).split('\\0');\n"
    "const argv = f.slice(1, 1 + parseInt(f[0]));\n"
    "Object.defineProperty(Deno, 'args', { value: Object.freeze(argv.slice(argv.indexOf('"
    SCRIPT "') + 1)) });\n"
    "await import('file://" SCRIPT "');\n";

static char *bootstrap_url; /* data:application/javascript;base64,... */

static int deno_init(const struct kiln_host *host)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char prefix[] = "data:application/javascript;base64,";
    const unsigned char *s = (const unsigned char *)bootstrap_js;
    size_t n = sizeof(bootstrap_js) - 1;
    (void)host;
    char *out = malloc(sizeof(prefix) + 4 * ((n + 2) / 3) + 1), *o;
    if (out == NULL)
        return -1;
    strcpy(out, prefix);
    o = out + sizeof(prefix) - 1;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = s[i] << 16 | (i + 1 < n ? s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
        *o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *o = '\0';
    bootstrap_url = out;
    return 0;
}

static void deno_fini(void)
{
    free(bootstrap_url);
    bootstrap_url = NULL;
}

static int add_base(const struct kiln_host *host, struct kiln_plan *plan)
{
    int r = host->plan_profile(plan, "deno");
    for (size_t i = 0; r == 0 && i < sizeof(base) / sizeof(base[0]); i++)
        r = host->plan_arg(plan, base[i]);
    if (r == 0)
        r = host->plan_env(plan, "DENO_DIR", "/tmp/.deno");
    if (r == 0)
        r = host->plan_env(plan, "NO_COLOR", "1");
    if (r == 0)
        r = host->plan_env(plan, "DENO_NO_UPDATE_CHECK", "1");
    return r;
}

/* "--allow-X=" followed by items joined with commas. */
static int add_list(const struct kiln_host *host, struct kiln_plan *plan, const char *flag,
                    const char *const *items, size_t n, size_t stride)
{
    size_t len = strlen(flag) + 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(*(const char *const *)((const char *)items + i * stride)) + 1;
    char *arg = malloc(len);
    if (arg == NULL)
        return -12;
    strcpy(arg, flag);
    for (size_t i = 0; i < n; i++) {
        const char *item = *(const char *const *)((const char *)items + i * stride);
        if (strchr(item, ',') != NULL) {
            free(arg);
            return host->plan_reject(plan, "a net.allow pattern or env key holds a comma");
        }
        if (i > 0)
            strcat(arg, ",");
        strcat(arg, item);
    }
    int r = host->plan_arg(plan, arg);
    free(arg);
    return r;
}

static int deno_plan(const struct kiln_host *host, const struct kiln_job_view *job,
                     struct kiln_plan *plan)
{
    int r;
    if ((r = add_base(host, plan)) < 0)
        return r;
    /* the job's variables and its secrets' (placeholders) may be read */
    size_t nsec = KILN_HAS_FIELD(job, struct kiln_job_view, nsecret_env) ? job->nsecret_env : 0;
    if (job->nenv + nsec > 0) {
        const char **keys = calloc(job->nenv + nsec, sizeof(char *));
        if (keys == NULL)
            return -12;
        for (size_t i = 0; i < job->nenv; i++)
            keys[i] = job->env[i].key;
        for (size_t i = 0; i < nsec; i++)
            keys[job->nenv + i] = job->secret_env[i];
        r = add_list(host, plan, "--allow-env=", keys, job->nenv + nsec, sizeof(char *));
        free(keys);
        if (r < 0)
            return r;
    }
    if (KILN_HAS_FIELD(job, struct kiln_job_view, nnet) && job->has_net &&
        job->nnet > 0 &&
        (r = add_list(host, plan, "--allow-net=", job->net_allow, job->nnet, sizeof(char *))) < 0)
        return r;
    if ((r = host->plan_file(plan, "main.ts", job->code, job->code_len, 0644)) < 0 ||
        (r = host->plan_arg(plan, SCRIPT)) < 0)
        return r;
    for (size_t i = 0; i < job->nargs; i++)
        if ((r = host->plan_arg(plan, job->args[i])) < 0)
            return r;
    return 0;
}

static int deno_prestart(const struct kiln_host *host, const char *name,
                         struct kiln_plan *plan)
{
    int r;
    if (strcmp(name, "deno-eval") != 0 || bootstrap_url == NULL)
        return -1;
    if ((r = add_base(host, plan)) < 0 || (r = host->plan_arg(plan, bootstrap_url)) < 0)
        return r;
    return 0;
}

static int deno_warm_ok(const struct kiln_job_view *job)
{
    int net = KILN_HAS_FIELD(job, struct kiln_job_view, nnet) && job->nnet > 0;
    return job->nenv == 0 && !net;
}

static const struct kiln_plugin deno = {
    KILN_PLUGIN_HEADER,
    .name = "deno-eval",
    .description = "JavaScript/TypeScript on Deno, no permissions beyond reading /work",
    .init = deno_init,
    .plan = deno_plan,
    .fini = deno_fini,
    .prestart = deno_prestart,
    .warm_ok = deno_warm_ok,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &deno;
}
