#include "core/metrics.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "wire/frame.h"

/* Label values come from bounded sets (plugins, statuses, reason classes,
 * sources), so each family keeps a small table of MAX_KEYS values of up
 * to LABEL_MAX - 1 bytes. The bound is explicit, not silent: a value past
 * the table, or too long for it, is counted under the label "other"
 * (for plugin_status: plugin "other", status "other"), which always has
 * a slot left for it, and the worker warns once per family. Totals stay
 * right; no value is ever folded into another real one. */
#define MAX_KEYS 32
#define LABEL_MAX 48

/* A counter family with one string label: a small table is enough. */
struct family {
    const char *name, *help, *label;
    struct { char value[LABEL_MAX]; double n; } v[MAX_KEYS];
    int nv;
    int other;                /* 1 + the index of "other", 0: none yet */
};

struct histogram {
    const char *name, *help;
    struct { char plugin[LABEL_MAX]; double buckets[14]; double sum; double count; } v[MAX_KEYS];
    int nv;
    int other;
};

static const double bounds[14] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                  1, 2.5, 10, 60, 600};

static struct family started = {"kiln_jobs_started_total", "Jobs started in a sandbox.", "plugin", {{"", 0}}, 0, 0};
static struct family finished = {"kiln_jobs_finished_total", "Jobs (or inputs of runs) ended, by status.", "plugin_status", {{"", 0}}, 0, 0};
static struct family rejected = {"kiln_jobs_rejected_total", "Jobs rejected, by reason class.", "reason", {{"", 0}}, 0, 0};
static struct family output = {"kiln_output_bytes_total", "Bytes of job output forwarded.", "stream", {{"", 0}}, 0, 0};
static struct family reconnects = {"kiln_source_reconnects_total", "Queue connections re-established.", "source", {{"", 0}}, 0, 0};
static struct family pool_hits = {"kiln_pool_hits_total", "Jobs that found a warm sandbox.", "plugin", {{"", 0}}, 0, 0};
static struct family pool_misses = {"kiln_pool_misses_total", "Jobs that started cold for want of one.", "plugin", {{"", 0}}, 0, 0};
static struct family pool_refill = {"kiln_pool_refill_seconds_sum", "Time to make warm sandboxes ready.", "plugin", {{"", 0}}, 0, 0};
static struct family pool_refills = {"kiln_pool_refill_seconds_count", "Warm sandboxes made ready.", "plugin", {{"", 0}}, 0, 0};
static double rebalances;
static struct family sessions_opened = {"kiln_sessions_opened_total", "Sessions opened, by plugin.", "plugin", {{"", 0}}, 0, 0};
static struct family sessions_closed = {"kiln_sessions_closed_total", "Sessions ended, by reason.", "reason", {{"", 0}}, 0, 0};
static struct histogram duration = {"kiln_job_duration_seconds", "Wall time of jobs, by plugin.", {{"", {0}, 0, 0}}, 0, 0};
static struct histogram queue_wait = {"kiln_job_queue_wait_seconds", "Time from enqueue to start.", {{"", {0}, 0, 0}}, 0, 0};

/* Where `value` goes among the *nv labels of table `t` (`label(t, i)`
 * the i-th): its index; a new one (*nv grown: the caller copies the value
 * in); or the slot named `other_name`, *other - 1 (one a real value of
 * that name has, or made on first use). Real values stop one short of
 * MAX_KEYS, so "other" always has its slot. */
static int label_index(const char *value, const char *other_name, int *nv, int *other,
                       const char *family, const char *(*label)(const void *t, int i), const void *t)
{
    for (int i = 0; i < *nv; i++)
        if (strcmp(label(t, i), value) == 0)
            return i;
    if (*nv < MAX_KEYS - 1 && strlen(value) < LABEL_MAX)
        return (*nv)++;
    if (*other == 0) {
        kiln_warn("metrics: %s: more than %d label values, or one of %d bytes or more (\"%.60s\"): "
                  "counted as \"other\"", family, MAX_KEYS - 1, LABEL_MAX, value);
        for (int i = 0; i < *nv && *other == 0; i++)
            if (strcmp(label(t, i), other_name) == 0)
                *other = i + 1;
        if (*other == 0)
            *other = ++*nv;
    }
    return *other - 1;
}

static const char *family_label(const void *t, int i) { return ((const struct family *)t)->v[i].value; }
static const char *histogram_label(const void *t, int i) { return ((const struct histogram *)t)->v[i].plugin; }

static double *slot(struct family *f, const char *value)
{
    const char *other = strcmp(f->label, "plugin_status") == 0 ? "other|other" : "other";
    int i = label_index(value, other, &f->nv, &f->other, f->name, family_label, f);
    if (f->v[i].value[0] == '\0')
        snprintf(f->v[i].value, sizeof(f->v[i].value), "%s", i == f->other - 1 ? other : value);
    return &f->v[i].n;
}

static void observe(struct histogram *h, const char *plugin, double x)
{
    int i = label_index(plugin, "other", &h->nv, &h->other, h->name, histogram_label, h);
    if (h->v[i].plugin[0] == '\0')
        snprintf(h->v[i].plugin, sizeof(h->v[i].plugin), "%s", i == h->other - 1 ? "other" : plugin);
    for (int b = 0; b < 14; b++)
        if (x <= bounds[b])
            h->v[i].buckets[b]++;
    h->v[i].sum += x;
    h->v[i].count++;
}

void kiln_metrics_declare_plugin(const char *plugin)
{
    slot(&started, plugin);
    slot(&pool_hits, plugin);
    slot(&pool_misses, plugin);
    slot(&pool_refill, plugin);
    slot(&pool_refills, plugin);
}

static struct plugin_info {
    char *plugin, *toolchain;
    int available;
} infos[64];
static size_t ninfos;

void kiln_metrics_plugin_info(const char *plugin, const char *toolchain, int available)
{
    if (ninfos == sizeof(infos) / sizeof(infos[0]))
        return;
    infos[ninfos].plugin = strdup(plugin);
    infos[ninfos].toolchain = strdup(toolchain != NULL ? toolchain : "");
    infos[ninfos].available = available;
    if (infos[ninfos].plugin != NULL && infos[ninfos].toolchain != NULL)
        ninfos++;
}

/* a label's value as the exposition format wants it */
static void print_label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void print_infos(FILE *f)
{
    fputs("# HELP kiln_plugin_info A plugin's toolchain (the runtime image's package and version) and whether "
          "it can run on this worker.\n# TYPE kiln_plugin_info gauge\n", f);
    for (size_t i = 0; i < ninfos; i++) {
        fputs("kiln_plugin_info{plugin=\"", f);
        print_label(f, infos[i].plugin);
        fputs("\",toolchain=\"", f);
        print_label(f, infos[i].toolchain);
        fprintf(f, "\",available=\"%s\"} 1\n", infos[i].available ? "true" : "false");
    }
}

/* kiln_jobs_rejected_total's labels, one per enum kiln_reject */
static const char *const reject_labels[KILN_REJECT_CLASSES] = {
    [KILN_REJECT_SIGNATURE] = "signature",     [KILN_REJECT_UNKNOWN_PLUGIN] = "unknown_plugin",
    [KILN_REJECT_LIMITS] = "limits",           [KILN_REJECT_TOO_LARGE] = "too_large",
    [KILN_REJECT_NOT_MSGPACK] = "not_msgpack", [KILN_REJECT_INVALID] = "invalid",
    [KILN_REJECT_UNAVAILABLE] = "unavailable", [KILN_REJECT_SECRET] = "secret",
    [KILN_REJECT_UNKNOWN_IMAGE] = "unknown_image",
    [KILN_REJECT_OTHER] = "other",
};


void kiln_metrics_declare_source(const char *source)
{
    for (size_t i = 0; i < KILN_REJECT_CLASSES; i++)
        slot(&rejected, reject_labels[i]);
    slot(&reconnects, source);
    slot(&output, "stdout");
    slot(&output, "stderr");
}


void kiln_metrics_declare_session_end(const char *why) { slot(&sessions_closed, why); }
void kiln_metrics_session_opened(const char *plugin) { (*slot(&sessions_opened, plugin))++; }
void kiln_metrics_session_closed(const char *reason) { (*slot(&sessions_closed, reason))++; }

void kiln_metrics_job_started(const char *plugin) { (*slot(&started, plugin))++; }

void kiln_metrics_job_finished(const char *plugin, const char *status, double seconds)
{
    char key[2 * LABEL_MAX]; /* longer than a label: slot() says "other" */
    snprintf(key, sizeof(key), "%s|%s", plugin ? plugin : "none", status);
    (*slot(&finished, key))++;
    if (plugin != NULL)
        observe(&duration, plugin, seconds);
}

void kiln_metrics_queue_wait(double seconds) { observe(&queue_wait, "all", seconds); }
void kiln_metrics_rejected(enum kiln_reject why) { (*slot(&rejected, reject_labels[why]))++; }
void kiln_metrics_output(int fd, size_t bytes) { (*slot(&output, fd == 2 ? "stderr" : "stdout")) += (double)bytes; }
void kiln_metrics_reconnect(const char *source) { (*slot(&reconnects, source))++; }
void kiln_metrics_rebalance(void) { rebalances++; }

void kiln_metrics_pool(const char *plugin, int hit, double refill_seconds)
{
    if (hit > 0)
        (*slot(&pool_hits, plugin))++;
    else if (hit == 0)
        (*slot(&pool_misses, plugin))++;
    else {
        (*slot(&pool_refill, plugin)) += refill_seconds;
        (*slot(&pool_refills, plugin))++;
    }
}

static void print_family(FILE *f, const struct family *fam, const char *type)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name, type);
    for (int i = 0; i < fam->nv; i++) {
        if (strcmp(fam->label, "plugin_status") == 0) {
            const char *bar = strchr(fam->v[i].value, '|');
            fprintf(f, "%s{plugin=\"%.*s\",status=\"%s\"} %.17g\n", fam->name,
                    (int)(bar - fam->v[i].value), fam->v[i].value, bar + 1, fam->v[i].n);
        } else {
            fprintf(f, "%s{%s=\"%s\"} %.17g\n", fam->name, fam->label, fam->v[i].value, fam->v[i].n);
        }
    }
}

static void print_histogram(FILE *f, const struct histogram *h, const char *label)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
    for (int i = 0; i < h->nv; i++) {
        for (int b = 0; b < 14; b++)
            fprintf(f, "%s_bucket{%s=\"%s\",le=\"%g\"} %.17g\n", h->name, label, h->v[i].plugin,
                    bounds[b], h->v[i].buckets[b]);
        fprintf(f, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %.17g\n", h->name, label, h->v[i].plugin, h->v[i].count);
        fprintf(f, "%s_sum{%s=\"%s\"} %.17g\n", h->name, label, h->v[i].plugin, h->v[i].sum);
        fprintf(f, "%s_count{%s=\"%s\"} %.17g\n", h->name, label, h->v[i].plugin, h->v[i].count);
    }
}

char *kiln_metrics_text(const struct kiln_metrics_hooks *hooks, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (f == NULL)
        return NULL;
    fprintf(f, "# HELP kiln_build_info kiln's version.\n# TYPE kiln_build_info gauge\n"
               "kiln_build_info{version=\"%s\"} 1\n", KILN_VERSION);
    print_infos(f);
    print_family(f, &started, "counter");
    print_family(f, &finished, "counter");
    print_family(f, &rejected, "counter");
    print_family(f, &output, "counter");
    print_family(f, &reconnects, "counter");
    print_family(f, &pool_hits, "counter");
    print_family(f, &pool_misses, "counter");
    print_family(f, &pool_refill, "counter");
    print_family(f, &pool_refills, "counter");
    print_family(f, &sessions_opened, "counter");
    print_family(f, &sessions_closed, "counter");
    fprintf(f, "# HELP kiln_kafka_rebalances_total Kafka partition assignments and revocations.\n"
               "# TYPE kiln_kafka_rebalances_total counter\nkiln_kafka_rebalances_total %.17g\n", rebalances);
    print_histogram(f, &duration, "plugin");
    print_histogram(f, &queue_wait, "queue");
    if (hooks && hooks->gauges)
        hooks->gauges(hooks->arg, f);
    fclose(f);
    return buf;
}

/* ---- the HTTP side: one request per connection ------------------------ */

struct conn {
    uv_tcp_t tcp;
    http_parser parser;
    char url[128];
    int done;
    const struct kiln_metrics_hooks *hooks;
};

struct wreq {
    uv_write_t req;
    char *body;
};

static http_parser_settings settings;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    (void)status;
    uv_close((uv_handle_t *)req->handle, on_closed);
    free(w->body);
    free(w);
}

static void respond(struct conn *c, int code, const char *type, const char *body, size_t len)
{
    struct wreq *w = malloc(sizeof(*w));
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (w == NULL || f == NULL) {
        free(w);
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    fprintf(f, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
            code, code == 200 ? "OK" : code == 404 ? "Not Found" : code == 503 ? "Service Unavailable"
                                                                : "Bad Request", type, len);
    fwrite(body, 1, len, f);
    fclose(f);
    w->body = out;
    uv_buf_t buf = uv_buf_init(out, (unsigned)n);
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0) {
        free(out);
        free(w);
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    size_t have = strlen(c->url);
    if (have + len >= sizeof(c->url))
        return 1; /* too long: an error */
    memcpy(c->url + have, at, len);
    c->url[have + len] = '\0';
    return 0;
}

static int on_complete(http_parser *p)
{
    struct conn *c = p->data;
    char why[256] = "";
    c->done = 1;
    c->url[strcspn(c->url, "?")] = '\0';
    if (p->method != HTTP_GET) {
        respond(c, 400, "text/plain", "GET only\n", 9);
    } else if (strcmp(c->url, "/metrics") == 0) {
        size_t len;
        char *text = kiln_metrics_text(c->hooks, &len);
        respond(c, 200, "text/plain; version=0.0.4", text ? text : "", text ? len : 0);
        free(text);
    } else if (strcmp(c->url, "/healthz") == 0) {
        respond(c, 200, "text/plain", "ok\n", 3);
    } else if (strcmp(c->url, "/readyz") == 0) {
        int ok = c->hooks->ready(c->hooks->arg, why, sizeof(why) - 1);
        if (ok)
            respond(c, 200, "text/plain", "ready\n", 6);
        else {
            strcat(why, "\n");
            respond(c, 503, "text/plain", why, strlen(why));
        }
    } else {
        respond(c, 404, "text/plain", "not found\n", 10);
    }
    return 1; /* one request per connection */
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[4096];
    (void)h;
    (void)hint;
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    size_t used = http_parser_execute(&c->parser, &settings, buf->base, (size_t)n);
    if (!c->done && (used != (size_t)n || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK))
        respond(c, 400, "text/plain", "bad request\n", 12);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    c->hooks = server->data;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int kiln_metrics_serve(uv_loop_t *loop, const char *addr, const struct kiln_metrics_hooks *hooks,
                       char *err, size_t errlen)
{
    static uv_tcp_t server;
    char host[128];
    struct sockaddr_storage sa;
    const char *colon = strrchr(addr, ':');
    int r;
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(host)) {
        snprintf(err, errlen, "--metrics-addr %s: want HOST:PORT", addr);
        return UV_EINVAL;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    int port = atoi(colon + 1);
    if ((r = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa)) < 0 &&
        (r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa)) < 0) {
        snprintf(err, errlen, "--metrics-addr %s: %s", addr, uv_strerror(r));
        return r;
    }
    settings.on_url = on_url;
    settings.on_message_complete = on_complete;
    uv_tcp_init(loop, &server);
    server.data = (void *)hooks;
    if ((r = uv_tcp_bind(&server, (struct sockaddr *)&sa, 0)) < 0 ||
        (r = uv_listen((uv_stream_t *)&server, 64, on_connection)) < 0) {
        snprintf(err, errlen, "--metrics-addr %s: %s", addr, uv_strerror(r));
        return r;
    }
    return 0;
}
