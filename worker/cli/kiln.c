/*
 * kiln: the command-line client.
 *
 *   kiln submit [options] [--] [ARG...]   enqueue a job, print its output live,
 *                                         exit with the job's exit code
 *   kiln frames [options]                 print a result stream's frames as
 *                                         JSON lines
 *   kiln eval [options]                   run generated programs against
 *                                         problems, report pass@k (eval.c)
 *   kiln cancel JOB-ID                    cancel a job through the control
 *                                         stream or topic
 *   kiln dev-broker [options]             an in-memory Kafka-protocol broker
 *                                         for development (dev_broker.c)
 *
 * It speaks the wire contract (schemas/) and nothing else, so it is also an
 * example of a client.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/eval.h"
#include "cli/outdir.h"
#include "cli/where.h"
#include "base/suggest.h"
#include "wire/proto.h"

#define MAX_LIST 256

struct kv {
    const char *k, *v;
};

static const char *const commands[] = {"submit", "frames", "eval", "cancel", "dev-broker", NULL};

static void commands_usage(FILE *f)
{
    fputs("usage: kiln COMMAND [options]   (kiln COMMAND --help: its options)\n"
          "  submit      run a job, print its output as it comes, exit with its status\n"
          "  frames      print the frames of a result stream as JSON\n"
          "  eval        run a problem set's samples as jobs and report pass@k\n"
          "  cancel      cancel a job, or a session by its id\n"
          "  dev-broker  a local Kafka-protocol broker for development and tests\n"
          "  --version   kiln's version\n",
          f);
}

static void usage(FILE *f)
{
    fputs("usage: kiln submit [options] [--] [ARG...]\n"
          "  --queue redis|kafka  [$KILN_QUEUE or redis]\n"
          "  --redis URL          redis://host:port[/db]   [$KILN_REDIS or redis://127.0.0.1:6379]\n"
          "  --brokers LIST       Kafka bootstrap servers  [$KILN_BROKERS]\n"
          "  --kafka-conf K=V     librdkafka setting (repeatable)\n"
          "  --jobs NAME          job stream               [$KILN_JOBS or kiln.jobs]\n"
          "  --plugin NAME        shell, python, deno-eval, c, cpp, java, javascript, typescript, go,\n"
          "                       rust, csharp, php, ruby, lua, perl, r, bash (kiln-worker --list-plugins) [shell]\n"
          "  --image NAME         the runtime image to run on: python-data, or another the worker\n"
          "                       serves (--image NAME=PATH) [the worker's default]\n"
          "  --code TEXT | --code-file PATH   the program ('-' reads standard input)\n"
          "  --arg A              one argv element (repeatable; also ARG... after the options)\n"
          "  --stdin TEXT | --stdin-file PATH\n"
          "  --env K=V            (repeatable)\n"
          "  --secret ENV=NAME    ENV holds a placeholder of the worker's secret NAME (repeatable)\n"
          "  --allow HOST         a net.allow pattern (repeatable)\n"
          "  --collect PATTERN    send back files under /work matching it (repeatable; ** crosses dirs)\n"
          "  --out-dir DIR        write the collected files under DIR [not kept]\n"
          "  --keep-exec          ... with their execute bits [dropped]\n"
          "  --file DEST=PATH     write local PATH to /work/DEST (repeatable)\n"
          "  --timeout-ms N       wall-clock limit\n"
          "  --session ID         run in session ID: its interpreter's state lives on from job\n"
          "                       to job (opened by its first job; Kafka: keyed by ID)\n"
          "  --close              end the session after this job\n"
          "  --idle-ms N          the session ends after N ms without a job\n"
          "  --expose PORT        reach the session's server on PORT from outside: prints its URL\n"
          "                       on stderr (repeatable; the worker needs --expose-listen)\n"
          "  --id ID              job id [generated]\n"
          "  --reply-to NAME      result stream [Redis: a private stream, deleted after;\n"
          "                       Kafka: kiln.results, read from its end]\n"
          "  --no-follow          enqueue and print the job id only\n"
          "  --wait-ms N          give up waiting for the result after N ms [wait forever]\n"
          "exit status: the job's exit code; 128+N if killed by signal N; 124 timeout;\n"
          "  65 rejected; 70 internal; 125 output_limit; 75 cancelled/expired/session_lost;\n"
          "  69 no result\n"
          "\n"
          "usage: kiln frames [--queue Q --redis URL --brokers LIST] [--stream NAME] [--follow] [--id JOBID]\n"
          "  prints each frame as one JSON object; bin data that is UTF-8 prints as a\n"
          "  string, other data as {\"base64\": ...}\n"
          "\n"
          "usage: kiln eval --problems FILE --samples FILE [--out FILE] [--k 1,10,100] [...]\n"
          "  runs every sample as a job and reports pass@k (kiln eval --help)\n"
          "\n"
          "usage: kiln cancel [--queue Q --redis URL --brokers LIST] [--control NAME] JOB-ID\n"
          "\n"
          "usage: kiln dev-broker [--brokers N] [--partitions N] [--topic NAME]...\n"
          "  a local Kafka-protocol broker for development and tests; prints its\n"
          "  bootstrap address. Not for production: everything is in memory.\n",
          f);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "kiln: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (b == NULL) {
                free(buf);
                buf = NULL;
            }
            buf = b;
        }
    }
    if (f != stdin)
        fclose(f);
    *len = n;
    return buf;
}

/* ---- msgpack -> JSON ------------------------------------------------- */

static json_t *bytes_json(const char *p, size_t n)
{
    if (kiln_utf8_ok((const unsigned char *)p, n))
        return json_stringn(p, n);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    if (b64 == NULL)
        return json_null();
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)p, (int)n);
    json_t *o = json_pack("{s:s}", "base64", b64);
    free(b64);
    return o;
}

static json_t *to_json(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: return bytes_json(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: return bytes_json(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(a, to_json(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            char key[256];
            if (k->type == MSGPACK_OBJECT_STR)
                snprintf(key, sizeof(key), "%.*s", (int)k->via.str.size, k->via.str.ptr);
            else
                snprintf(key, sizeof(key), "#%u", i);
            json_object_set_new(m, key, to_json(&o->via.map.ptr[i].val));
        }
        return m;
    }
    default: return json_null();
    }
}

/* ---- kiln frames ----------------------------------------------------- */

struct frames_opts {
    const char *id;
};

static int print_frame(void *arg, const char *entry, const msgpack_object *frame)
{
    struct frames_opts *o = arg;
    const msgpack_object *id = kiln_mp_get(frame, "id");
    if (o->id != NULL && (id == NULL || !kiln_mp_streq(id, o->id)))
        return 0;
    json_t *j = to_json(frame);
    if (!json_is_object(j)) {
        json_decref(j);
        j = json_object();
    }
    json_object_set_new(j, "entry", json_string(entry));
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        fflush(stdout);
    }
    free(s);
    json_decref(j);
    return 0;
}

static int cmd_frames(int argc, char **argv)
{
    const char *stream = getenv("KILN_RESULTS") ? getenv("KILN_RESULTS") : "kiln.results";
    int follow = 0, c;
    struct frames_opts fo = {NULL};
    struct kiln_where w;
    static const struct option lo[] = {
        KILN_WHERE_OPTIONS, {"stream", 1, 0, 's'}, {"follow", 0, 0, 'F'}, {"id", 1, 0, 'i'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    kiln_where_init(&w);
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (kiln_where_opt(&w, c, optarg))
            continue;
        switch (c) {
        case 's': stream = optarg; break;
        case 'F': follow = 1; break;
        case 'i': fo.id = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            if (!kiln_suggest_option("kiln frames", lo, argv, optind))
                usage(stderr);
            return 2;
        }
    }
    struct kiln_client *cl = kiln_where_open(&w);
    if (cl == NULL)
        return 69;
    cl->ops->watch(cl, stream, 0);
    int n;
    do {
        n = cl->ops->read(cl, follow ? 2000 : -1, print_frame, &fo);
    } while (n >= 0);
    cl->ops->close(cl);
    return n == -1 ? 69 : 0;
}

/* ---- kiln submit ----------------------------------------------------- */

struct follow {
    const char *id;
    unsigned attempt;
    int done;
    int status;
    struct kiln_outdir *out; /* where `collect` files go, or NULL: not kept */
};

static int exit_status(const msgpack_object *f)
{
    const msgpack_object *st = kiln_mp_get(f, "status"), *o;
    int64_t v;
    if (st == NULL)
        return 70;
    if (kiln_mp_streq(st, "ok"))
        return 0;
    if (kiln_mp_streq(st, "error"))
        return (o = kiln_mp_get(f, "code")) && kiln_mp_int(o, 0, 255, &v) == 0 ? (int)v : 1;
    if (kiln_mp_streq(st, "killed") || kiln_mp_streq(st, "oom"))
        return (o = kiln_mp_get(f, "signal")) && kiln_mp_int(o, 1, 127, &v) == 0 ? 128 + (int)v : 137;
    if (kiln_mp_streq(st, "timeout"))
        return 124;
    if (kiln_mp_streq(st, "rejected"))
        return 65;
    if (kiln_mp_streq(st, "output_limit"))
        return 125;
    if (kiln_mp_streq(st, "cancelled") || kiln_mp_streq(st, "expired") || kiln_mp_streq(st, "session_lost"))
        return 75;
    return 70;
}

static int on_job_frame(void *arg, const char *entry, const msgpack_object *f)
{
    struct follow *fl = arg;
    const msgpack_object *id = kiln_mp_get(f, "id"), *kind = kiln_mp_get(f, "kind"), *o;
    int64_t attempt = 1;
    (void)entry;
    if (id == NULL || !kiln_mp_streq(id, fl->id) || kind == NULL)
        return 0;
    if ((o = kiln_mp_get(f, "attempt")) != NULL)
        kiln_mp_int(o, 0, UINT32_MAX, &attempt);
    if ((unsigned)attempt > fl->attempt) {
        if (fl->attempt > 0)
            fprintf(stderr, "kiln: attempt %lld of job %s started; earlier output was cut short\n",
                    (long long)attempt, fl->id);
        fl->attempt = (unsigned)attempt;
    }
    if (kiln_mp_streq(kind, "exit")) {
        fl->status = exit_status(f);
        const msgpack_object *st = kiln_mp_get(f, "status"), *why = kiln_mp_get(f, "reason");
        if (fl->status != 0 && st != NULL && st->type == MSGPACK_OBJECT_STR && !kiln_mp_streq(st, "error"))
            fprintf(stderr, "kiln: job %s: %.*s%s%.*s\n", fl->id, (int)st->via.str.size, st->via.str.ptr,
                    why ? ": " : "", why && why->type == MSGPACK_OBJECT_STR ? (int)why->via.str.size : 0,
                    why && why->type == MSGPACK_OBJECT_STR ? why->via.str.ptr : "");
        fl->done = 1;
        return 1;
    }
    if (kiln_mp_streq(kind, "file")) {
        if (fl->out != NULL)
            kiln_outdir_write(fl->out, f);
        return 0;
    }
    if (kiln_mp_streq(kind, "exposed")) { /* (stderr: stdout is the job's own) */
        const msgpack_object *port = kiln_mp_get(f, "port"), *url = kiln_mp_get(f, "url");
        if (port != NULL && url != NULL && url->type == MSGPACK_OBJECT_STR)
            fprintf(stderr, "kiln: port %lld is at %.*s\n",
                    port->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)port->via.u64 : -1LL,
                    (int)url->via.str.size, url->via.str.ptr);
        return 0;
    }
    const msgpack_object *data = kiln_mp_get(f, "data");
    if (data != NULL && data->type == MSGPACK_OBJECT_BIN) {
        FILE *out = kiln_mp_streq(kind, "stderr") ? stderr : stdout;
        fwrite(data->via.bin.ptr, 1, data->via.bin.size, out);
        if (kiln_mp_streq(kind, "result")) /* a session's value, as a REPL shows it */
            fputc('\n', out);
        fflush(out);
    }
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What `kiln submit` was asked: the job's keys and how to wait for it. */
struct submit {
    const char *jobs, *plugin, *image, *id, *reply_to, *session, *out_dir;
    char *code, *in;
    size_t code_len, in_len;
    const char *args[MAX_LIST], *allow[MAX_LIST], *collect[MAX_LIST];
    long long expose[8];
    size_t nexpose;
    struct kv env[MAX_LIST], files[MAX_LIST], secrets[MAX_LIST];
    size_t nargs, nenv, nfiles, nsecrets, nallow, ncollect;
    long long timeout, wait_ms, idle_ms;
    int follow, close_session, keep_exec;
    char idbuf[64];
};

/* The options into `o`: 0, or the exit status to end with (2: a bad
 * option, said on stderr; -1: --help, printed). */
static int submit_options(int argc, char **argv, struct submit *o, struct kiln_where *w)
{
    int c;
    static const struct option lo[] = {
        KILN_WHERE_OPTIONS, {"jobs", 1, 0, 'j'}, {"plugin", 1, 0, 'p'}, {"code", 1, 0, 'c'},
        {"code-file", 1, 0, 'C'}, {"arg", 1, 0, 'a'}, {"stdin", 1, 0, 's'},
        {"stdin-file", 1, 0, 'S'}, {"env", 1, 0, 'e'}, {"file", 1, 0, 'f'},
        {"timeout-ms", 1, 0, 't'}, {"id", 1, 0, 'i'}, {"reply-to", 1, 0, 'R'},
        {"no-follow", 0, 0, 'n'}, {"wait-ms", 1, 0, 'w'}, {"secret", 1, 0, 'X'},
        {"allow", 1, 0, 'A'}, {"collect", 1, 0, 'G'}, {"out-dir", 1, 0, 'O'}, {"keep-exec", 0, 0, 'x'},
        {"session", 1, 0, 'Z'}, {"close", 0, 0, 'z'}, {"idle-ms", 1, 0, 'I'}, {"expose", 1, 0, 'E'},
        {"image", 1, 0, 'M'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
        char *eq;
        if (kiln_where_opt(w, c, optarg))
            continue;
        switch (c) {
        case 'j': o->jobs = optarg; break;
        case 'p': o->plugin = optarg; break;
        case 'M': o->image = optarg; break;
        case 'c': free(o->code); o->code = strdup(optarg); o->code_len = strlen(optarg); break;
        case 'C': free(o->code); if ((o->code = slurp(optarg, &o->code_len)) == NULL) return 2; break;
        case 's': free(o->in); o->in = strdup(optarg); o->in_len = strlen(optarg); break;
        case 'S': free(o->in); if ((o->in = slurp(optarg, &o->in_len)) == NULL) return 2; break;
        case 'a':
            if (o->nargs < MAX_LIST) o->args[o->nargs++] = optarg;
            break;
        case 'A':
            if (o->nallow < MAX_LIST) o->allow[o->nallow++] = optarg;
            break;
        case 'G':
            if (o->ncollect < MAX_LIST) o->collect[o->ncollect++] = optarg;
            break;
        case 'O': o->out_dir = optarg; break;
        case 'x': o->keep_exec = 1; break;
        case 'Z': o->session = optarg; break;
        case 'z': o->close_session = 1; break;
        case 'I': o->idle_ms = atoll(optarg); break;
        case 'E':
            if (o->nexpose == sizeof(o->expose) / sizeof(o->expose[0])) {
                fprintf(stderr, "kiln submit: --expose: at most 8 ports\n");
                return 2;
            }
            o->expose[o->nexpose++] = atoll(optarg); /* (the worker checks the range) */
            break;
        case 'e':
        case 'f':
        case 'X':
            if ((eq = strchr(optarg, '=')) == NULL || eq == optarg) {
                fprintf(stderr, "kiln: --%s wants K=V\n", c == 'e' ? "env" : c == 'f' ? "file" : "secret");
                return 2;
            }
            *eq = '\0';
            if (c == 'e' && o->nenv < MAX_LIST)
                o->env[o->nenv++] = (struct kv){optarg, eq + 1};
            else if (c == 'f' && o->nfiles < MAX_LIST)
                o->files[o->nfiles++] = (struct kv){optarg, eq + 1};
            else if (c == 'X' && o->nsecrets < MAX_LIST)
                o->secrets[o->nsecrets++] = (struct kv){optarg, eq + 1};
            break;
        case 't': o->timeout = atoll(optarg); break;
        case 'i': o->id = optarg; break;
        case 'R': o->reply_to = optarg; break;
        case 'n': o->follow = 0; break;
        case 'w': o->wait_ms = atoll(optarg); break;
        case 'h': usage(stdout); return -1;
        default:
            if (!kiln_suggest_option("kiln submit", lo, argv, optind))
                usage(stderr);
            return 2;
        }
    }
    for (; optind < argc && o->nargs < MAX_LIST; optind++)
        o->args[o->nargs++] = argv[optind];
    if (o->code == NULL) {
        fprintf(stderr, "kiln submit: --code or --code-file is required\n");
        return 2;
    }
    if (o->nexpose > 0 && o->session == NULL) {
        fprintf(stderr, "kiln submit: --expose is a session's: give --session ID\n");
        return 2;
    }
    if (o->id == NULL) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        snprintf(o->idbuf, sizeof(o->idbuf), "job-%lx%05lx-%x", (long)tv.tv_sec, (long)tv.tv_usec,
                 (unsigned)getpid());
        o->id = o->idbuf;
    }
    return 0;
}

static void pack_strs(msgpack_packer *pk, const char *const *v, size_t n)
{
    msgpack_pack_array(pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        kiln_mp_str(pk, v[i]);
}

/* The job, as schemas/job.v1.md has it, onto `sb`. 0, or -1 when a
 * --file could not be read (said). */
static int submit_pack(const struct submit *o, msgpack_sbuffer *sb)
{
    struct kiln_map m, sub;
    msgpack_packer pk;
    kiln_map_init(&m);
    if (o->session != NULL) {
        kiln_map_init(&sub);
        kiln_map_str(&sub, "id", o->session);
        if (o->close_session)
            kiln_map_bool(&sub, "close", 1);
        if (o->idle_ms >= 0)
            kiln_map_int(&sub, "idle_ms", o->idle_ms);
        if (o->nexpose > 0) {
            msgpack_packer *pk = kiln_map_key(&sub, "expose");
            msgpack_pack_array(pk, (uint32_t)o->nexpose);
            for (size_t i = 0; i < o->nexpose; i++)
                msgpack_pack_long_long(pk, o->expose[i]);
        }
        kiln_map_end(&sub, kiln_map_key(&m, "session"));
    }
    if (o->ncollect > 0)
        pack_strs(kiln_map_key(&m, "collect"), o->collect, o->ncollect);
    kiln_map_int(&m, "v", 1);
    kiln_map_str(&m, "id", o->id);
    kiln_map_str(&m, "plugin", o->plugin);
    if (o->image != NULL)
        kiln_map_str(&m, "image", o->image);
    kiln_mp_strn(kiln_map_key(&m, "code"), o->code, o->code_len);
    kiln_map_str(&m, "reply_to", o->reply_to);
    if (o->nargs > 0)
        pack_strs(kiln_map_key(&m, "args"), o->args, o->nargs);
    if (o->in != NULL)
        kiln_map_bin(&m, "stdin", o->in, o->in_len);
    if (o->nenv > 0) {
        kiln_map_init(&sub);
        for (size_t i = 0; i < o->nenv; i++)
            kiln_map_str(&sub, o->env[i].k, o->env[i].v);
        kiln_map_end(&sub, kiln_map_key(&m, "env"));
    }
    if (o->nsecrets > 0) {
        kiln_map_init(&sub);
        for (size_t i = 0; i < o->nsecrets; i++)
            kiln_map_str(&sub, o->secrets[i].k, o->secrets[i].v);
        kiln_map_end(&sub, kiln_map_key(&m, "secrets"));
    }
    if (o->nallow > 0) {
        kiln_map_init(&sub);
        pack_strs(kiln_map_key(&sub, "allow"), o->allow, o->nallow);
        kiln_map_end(&sub, kiln_map_key(&m, "net"));
    }
    if (o->nfiles > 0) {
        kiln_map_init(&sub);
        for (size_t i = 0; i < o->nfiles; i++) {
            size_t len;
            char *data = slurp(o->files[i].v, &len);
            if (data == NULL) {
                kiln_map_drop(&sub);
                kiln_map_drop(&m);
                return -1;
            }
            kiln_map_bin(&sub, o->files[i].k, data, len);
            free(data);
        }
        kiln_map_end(&sub, kiln_map_key(&m, "files"));
    }
    if (o->timeout >= 0) {
        kiln_map_init(&sub);
        kiln_map_int(&sub, "timeout_ms", o->timeout);
        kiln_map_end(&sub, kiln_map_key(&m, "limits"));
    }
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    kiln_map_end(&m, &pk);
    return 0;
}

/* Enqueue the job and, unless --no-follow, print its output as it comes
 * and end with its exit status. */
static int submit_send(struct submit *o, struct kiln_where *w, const msgpack_sbuffer *sb, int private)
{
    struct kiln_client *cl = kiln_where_open(w);
    int rc;
    if (cl == NULL)
        return 69;
    if (o->follow)
        cl->ops->watch(cl, o->reply_to, !private);
    /* Kafka: a session's jobs keyed by its id, so they reach one partition
     * (its worker) in order */
    if (cl->ops->enqueue(cl, o->jobs, o->session != NULL ? o->session : o->id, sb->data, sb->size) < 0) {
        cl->ops->close(cl);
        return 69;
    }
    if (!o->follow) {
        printf("%s\n", o->id);
        cl->ops->close(cl);
        return 0;
    }
    struct kiln_outdir od = {o->out_dir, o->keep_exec, NULL, 0, 0};
    struct follow fl = {o->id, 0, 0, 69, o->out_dir != NULL ? &od : NULL};
    int64_t deadline = o->wait_ms >= 0 ? now_ms() + o->wait_ms : INT64_MAX;
    while (!fl.done && now_ms() < deadline) {
        int64_t left = deadline - now_ms();
        if (cl->ops->read(cl, left < 1000 ? (left > 0 ? left : 1) : 1000, on_job_frame, &fl) == -1)
            break;
    }
    if (!fl.done)
        fprintf(stderr, "kiln: no result for job %s yet (is a worker running?)\n", o->id);
    if (private && fl.done && cl->ops->drop != NULL)
        cl->ops->drop(cl, o->reply_to);
    cl->ops->close(cl);
    kiln_outdir_free(&od);
    rc = fl.status;
    return rc;
}

static int cmd_submit(int argc, char **argv)
{
    struct kiln_where w;
    struct submit o = {.jobs = getenv("KILN_JOBS") ? getenv("KILN_JOBS") : "kiln.jobs", .plugin = "shell",
                       .timeout = -1, .wait_ms = -1, .idle_ms = -1, .follow = 1};
    msgpack_sbuffer sb;
    char private_stream[128];
    int rc;
    kiln_where_init(&w);
    if ((rc = submit_options(argc, argv, &o, &w)) != 0) {
        free(o.code);
        free(o.in);
        return rc < 0 ? 0 : rc;
    }
    /* Redis: a private stream, deleted after. Kafka: the results topic
     * (topics are not made per job), read from its end, filtered by id. */
    if (o.reply_to == NULL && kiln_where_kafka(&w))
        o.reply_to = getenv("KILN_RESULTS") ? getenv("KILN_RESULTS") : "kiln.results";
    int private = o.reply_to == NULL;
    if (private) {
        snprintf(private_stream, sizeof(private_stream), "kiln.reply.%s", o.id);
        o.reply_to = private_stream;
    }
    msgpack_sbuffer_init(&sb);
    rc = submit_pack(&o, &sb) < 0 ? 2 : submit_send(&o, &w, &sb, private);
    msgpack_sbuffer_destroy(&sb);
    free(o.code);
    free(o.in);
    return rc;
}

/* kiln cancel [--queue Q --redis URL --brokers LIST] JOB-ID: every worker
 * reads the control stream / topic; the one running the job stops it. */
static int cmd_cancel(int argc, char **argv)
{
    const char *control = getenv("KILN_CONTROL") ? getenv("KILN_CONTROL") : "kiln.control";
    struct kiln_where w;
    int c;
    static const struct option lo[] = {KILN_WHERE_OPTIONS, {"control", 1, 0, 'c'}, {0, 0, 0, 0}};
    kiln_where_init(&w);
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (kiln_where_opt(&w, c, optarg))
            continue;
        if (c == 'c')
            control = optarg;
        else {
            if (!kiln_suggest_option("kiln cancel", lo, argv, optind))
                usage(stderr);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    struct kiln_client *cl = kiln_where_open(&w);
    if (cl == NULL)
        return 69;
    int r = cl->ops->cancel(cl, control, argv[optind]);
    cl->ops->close(cl);
    return r < 0 ? 69 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "submit") == 0)
        return cmd_submit(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "frames") == 0)
        return cmd_frames(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "eval") == 0)
        return kiln_eval(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "cancel") == 0)
        return cmd_cancel(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "dev-broker") == 0)
        return kiln_dev_broker(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("kiln %s\n", KILN_VERSION);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        commands_usage(stdout);
        fputc('\n', stdout);
        usage(stdout);
        return 0;
    }
    if (argc >= 2) {
        const char *near = kiln_closest_name(argv[1], commands);
        fprintf(stderr, "kiln: '%s' is not a command", argv[1]);
        if (near != NULL)
            fprintf(stderr, "; did you mean %s?", near);
        fputs("\n\n", stderr);
    }
    commands_usage(stderr);
    return 2;
}
