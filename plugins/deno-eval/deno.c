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

/* A session's interpreter (plugin.h, repl): cells are evaluated through
 * V8's inspector in REPL mode, as `deno repl` does, so top-level let,
 * const, functions and await carry over and may be declared again; static
 * imports become dynamic ones; TypeScript is stripped of its types first.
 * The value of a cell's last expression is its `result`. A cell that runs
 * past its time is stopped by V8 (timeout), an awaiting one by SIGINT.
 * Deno.exit() ends the session with the job's code. */
static const char repl_js[] =
    "import { Session } from \"node:inspector\";\n"
    "import { stripTypeScriptTypes } from \"node:module\";\n"
    "const ses = new Session();\n"
    "ses.connect();\n"
    "const post = (m, p) => new Promise((ok, no) => ses.post(m, p, (e, r) => (e ? no(e) : ok(r))));\n"
    "const ctl = Deno.openSync(\"/tmp/.kiln-repl/ctl\", { write: true });\n"
    "const enc = new TextEncoder(), dec = new TextDecoder();\n"
    "const say = (s) => { const b = enc.encode(s); let o = 0; while (o < b.length) o += ctl.writeSync(b.subarray(o)); };\n"
    "let buf = new Uint8Array(0);\n"
    "const more = async () => {\n"
    "  const b = new Uint8Array(65536);\n"
    "  const n = await Deno.stdin.read(b);\n"
    "  if (n === null) Deno.exit(0);\n"
    "  const x = new Uint8Array(buf.length + n);\n"
    "  x.set(buf);\n"
    "  x.set(b.subarray(0, n), buf.length);\n"
    "  buf = x;\n"
    "};\n"
    "const take = async (n) => { while (buf.length < n) await more(); const r = buf.slice(0, n); buf = buf.slice(n); return r; };\n"
    "const line = async () => { let i; while ((i = buf.indexOf(10)) < 0) await more(); const l = dec.decode(buf.subarray(0, i)); buf = buf.slice(i + 1); return l; };\n"
    "let stop = null, exiting = null;\n"
    "const exit = Deno.exit.bind(Deno);\n"
    "Deno.exit = (c) => { exiting = c ?? 0; throw new Error(`Deno.exit(${exiting}): the session ends`); };\n"
    "Deno.addSignalListener(\"SIGINT\", () => { if (stop) stop(); });\n"
    "globalThis.addEventListener(\"unhandledrejection\", (e) => { e.preventDefault(); console.error(\"Uncaught (in promise)\", e.reason); });\n"
    "const id = \"[A-Za-z_$][\\\\w$]*\";\n"
    "const named = (s) => s.split(\",\").map((x) => x.trim()).filter(Boolean).map((x) => x.replace(/^(\\S+)\\s+as\\s+(\\S+)$/, \"$1: $2\")).join(\", \");\n"
    "const binds = (what, spec) => {\n"
    "  let m = what.match(new RegExp(`^(${id})?\\\\s*,?\\\\s*(?:\\\\*\\\\s*as\\\\s+(${id})|\\\\{([^}]*)\\\\})?$`));\n"
    "  if (!m) return null;\n"
    "  const [, def, ns, names] = m;\n"
    "  if (ns) return `const ${ns} = await import(${spec});` + (def ? ` const ${def} = ${ns}.default;` : \"\");\n"
    "  const parts = [];\n"
    "  if (def) parts.push(`default: ${def}`);\n"
    "  if (names !== undefined && named(names)) parts.push(named(names));\n"
    "  return `const { ${parts.join(\", \")} } = await import(${spec});`;\n"
    "};\n"
    "const imports = (src) => src\n"
    "  .replace(/^[ \\t]*import\\s+type\\s[^;\\n]*;?/gm, \"\")\n"
    "  .replace(/^[ \\t]*import\\s+(['\"][^'\"\\n]+['\"])\\s*;?/gm, \"await import($1);\")\n"
    "  .replace(/^[ \\t]*import\\s+(?!\\()([^'\";]*?)\\s+from\\s+(['\"][^'\"\\n]+['\"])\\s*;?/gm, (all, what, spec) => binds(what.trim(), spec) ?? all)\n"
    "  .replace(/^([ \\t]*)export\\s+(?=(const|let|var|function|class|async)\\b)/gm, \"$1\");\n"
    "const shown = async (r) => {\n"
    "  if (r.type === \"undefined\") return null;\n"
    "  if (r.objectId) {\n"
    "    const s = await post(\"Runtime.callFunctionOn\", { objectId: r.objectId, functionDeclaration: \"function () { return Deno.inspect(this); }\", returnByValue: true });\n"
    "    post(\"Runtime.releaseObject\", { objectId: r.objectId }).catch(() => {});\n"
    "    return String(s.result.value);\n"
    "  }\n"
    "  if (r.type === \"string\") return JSON.stringify(r.value);\n"
    "  if (r.unserializableValue !== undefined) return r.unserializableValue;\n"
    "  return r.description ?? String(r.value);\n"
    "};\n"
    "const trace = (d) => {\n"
    "  const ex = d.exception;\n"
    "  const text = ex?.description ?? (ex?.value !== undefined ? String(ex.value) : d.text);\n"
    "  return text.split(\"\\n\").filter((l) => !/(ext:|data:application)/.test(l) && !/^\\s+at (new )?Promise/.test(l)).join(\"\\n\");\n"
    "};\n"
    "for (;;) {\n"
    "  const [n, t] = (await line()).split(\" \").map(Number);\n"
    "  let src = dec.decode(await take(n));\n"
    "  let code = 0, out = null;\n"
    "  try {\n"
    "    src = stripTypeScriptTypes(imports(src), { mode: \"transform\" });\n"
    "    const p = { expression: src, replMode: true, awaitPromise: true };\n"
    "    if (t > 0) p.timeout = t;\n"
    "    const r = await Promise.race([post(\"Runtime.evaluate\", p), new Promise((ok) => { stop = () => ok(null); })]);\n"
    "    if (r === null) {\n"
    "      console.error(\"Interrupted\");\n"
    "      code = 130;\n"
    "    } else if (r.exceptionDetails) {\n"
    "      if (exiting === null) console.error(\"Uncaught \" + trace(r.exceptionDetails));\n"
    "      code = 1;\n"
    "    } else {\n"
    "      out = await shown(r.result);\n"
    "    }\n"
    "  } catch (e) {\n"
    "    console.error(e?.message?.includes(\"-32603\") ? \"Interrupted: the cell ran past its time\" : String(e?.message ?? e));\n"
    "    code = e?.message?.includes(\"-32603\") ? 130 : 1;\n"
    "  }\n"
    "  stop = null;\n"
    "  if (out !== null) {\n"
    "    const b = enc.encode(out).subarray(0, 65536);\n"
    "    say(`R ${b.length}\\n`);\n"
    "    let o = 0;\n"
    "    while (o < b.length) o += ctl.writeSync(b.subarray(o));\n"
    "  }\n"
    "  if (exiting !== null) {\n"
    "    say(`E ${exiting & 255}\\n`);\n"
    "    exit(exiting);\n"
    "  }\n"
    "  say(`E ${code}\\n`);\n"
    "}\n";

static char *bootstrap_url; /* data:application/javascript;base64,... */
static char *repl_url;

static char *data_url(const char *js);

static int deno_init(const struct kiln_host *host)
{
    (void)host;
    bootstrap_url = data_url(bootstrap_js);
    repl_url = data_url(repl_js);
    return bootstrap_url != NULL && repl_url != NULL ? 0 : -1;
}

static char *data_url(const char *js)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char prefix[] = "data:application/javascript;base64,";
    const unsigned char *s = (const unsigned char *)js;
    size_t n = strlen(js);
    char *out = malloc(sizeof(prefix) + 4 * ((n + 2) / 3) + 1), *o;
    if (out == NULL)
        return NULL;
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
    return out;
}

static void deno_fini(void)
{
    free(bootstrap_url);
    free(repl_url);
    bootstrap_url = repl_url = NULL;
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

/* The job's permissions beyond the base: its env keys and its secrets'
 * variables (--allow-env), its net.allow (--allow-net). */
static int add_job_perms(const struct kiln_host *host, const struct kiln_job_view *job,
                         struct kiln_plan *plan)
{
    int r;
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
    return 0;
}

static int deno_plan(const struct kiln_host *host, const struct kiln_job_view *job,
                     struct kiln_plan *plan)
{
    int r;
    if ((r = add_base(host, plan)) < 0 || (r = add_job_perms(host, job, plan)) < 0)
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

/* The inspector (the REPL's evaluator) needs --allow-sys; the cells'
 * control FIFO, writing; a session's server (Deno.serve, for an exposed
 * port) listens on, and its cells reach, the sandbox's own loopback and
 * nothing else (a session has no `net`: there is no other network). */
static int deno_repl(const struct kiln_host *host, const struct kiln_job_view *job,
                     struct kiln_plan *plan)
{
    int r;
    if (repl_url == NULL)
        return host->plan_reject(plan, "deno-eval: no session interpreter");
    if ((r = add_base(host, plan)) < 0 || (r = add_job_perms(host, job, plan)) < 0 ||
        (r = host->plan_arg(plan, "--allow-sys")) < 0 ||
        (r = host->plan_arg(plan, "--allow-write=/tmp/.kiln-repl/ctl")) < 0 ||
        (r = host->plan_arg(plan, "--allow-net=127.0.0.1,localhost,0.0.0.0")) < 0 ||
        (r = host->plan_arg(plan, repl_url)) < 0)
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
    .repl = deno_repl,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &deno;
}
