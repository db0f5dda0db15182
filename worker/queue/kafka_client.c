/*
 * librdkafka on the worker's libuv loop: each client's queue writes a byte
 * to a pipe when it becomes non-empty (rd_kafka_queue_io_event_enable), and
 * a uv_poll on that pipe drains it. Nothing here blocks the loop and
 * nothing busy-polls. Also: the clients' settings, built by key, and
 * librdkafka's log through the worker's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/options.h"
#include "base/log.h"
#include "queue/kafka_internal.h"

int kiln__kafka_conf_set(struct kconf *c, const char *key, const char *val)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->key[i], key) == 0) {
            c->val[i] = val;
            return 0;
        }
    if (c->n == KILN_KAFKA_CONF_MAX)
        return -ENOSPC;
    c->key[c->n] = key;
    c->val[c->n++] = val;
    return 0;
}

static int conf_set(rd_kafka_conf_t *c, const char *k, const char *v, char *err, size_t errlen)
{
    if (rd_kafka_conf_set(c, k, v, err, errlen) != RD_KAFKA_CONF_OK)
        return -EINVAL;
    return 0;
}

/* One --kafka-conf K=V over what is set already. */
static int conf_override(rd_kafka_conf_t *c, const char *kv, char *err, size_t errlen)
{
    const char *eq = strchr(kv, '=');
    if (eq == NULL) {
        snprintf(err, errlen, "--kafka-conf %s: want K=V", kv);
        return -EINVAL;
    }
    char *key = strndup(kv, (size_t)(eq - kv));
    if (key == NULL) {
        snprintf(err, errlen, "--kafka-conf %s: out of memory", kv);
        return -ENOMEM;
    }
    int r = conf_set(c, key, eq + 1, err, errlen);
    free(key);
    return r;
}

/* Our settings first, then every --kafka-conf K=V over them. A new conf
 * owned by the caller, or NULL with `err` set. */
static rd_kafka_conf_t *make_conf(const struct kiln_queue_opts *cfg, const struct kconf *ours,
                                  char *err, size_t errlen)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (c == NULL) {
        snprintf(err, errlen, "kafka: out of memory");
        return NULL;
    }
    if (conf_set(c, "bootstrap.servers", cfg->brokers, err, errlen) < 0 ||
        conf_set(c, "client.id", cfg->consumer, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < ours->n; i++)
        if (conf_set(c, ours->key[i], ours->val[i], err, errlen) < 0)
            goto fail;
    for (size_t i = 0; i < cfg->nkafka_conf; i++)
        if (conf_override(c, cfg->kafka_conf[i], err, errlen) < 0)
            goto fail;
    return c;
fail:
    rd_kafka_conf_destroy(c);
    return NULL;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    kiln_log(level <= 3 ? KILN_LOG_ERROR : level <= 5 ? KILN_LOG_WARN : KILN_LOG_DEBUG,
             "librdkafka %s: %s", fac, buf);
}

rd_kafka_t *kiln__kafka_client(struct ksrc *s, rd_kafka_type_t type, const struct kconf *ours,
                               kiln__kafka_rebalance_fn rebalance, char *err, size_t errlen)
{
    rd_kafka_conf_t *c = make_conf(s->pub.cfg, ours, err, errlen);
    if (c == NULL)
        return NULL;
    rd_kafka_conf_set_opaque(c, s);
    rd_kafka_conf_set_log_cb(c, on_log);
    if (rebalance != NULL)
        rd_kafka_conf_set_rebalance_cb(c, rebalance);
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(c, kiln__kafka_on_delivery);
    rd_kafka_t *rk = rd_kafka_new(type, c, err, errlen); /* takes `c` only on success */
    if (rk == NULL) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    if (type == RD_KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

int kiln__kafka_queue_open(struct kqueue *kq, rd_kafka_queue_t *q, char *err, size_t errlen)
{
    if (pipe2(kq->fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        int r = -errno;
        snprintf(err, errlen, "kafka: pipe: %s", strerror(-r));
        rd_kafka_queue_destroy(q);
        kq->fd[0] = kq->fd[1] = -1;
        return r;
    }
    kq->q = q;
    rd_kafka_queue_io_event_enable(q, kq->fd[1], "1", 1);
    return 0;
}

static void on_queue(uv_poll_t *h, int status, int events)
{
    struct ksrc *s = h->data;
    struct kqueue *kq = h == &s->cq.poll ? &s->cq : h == &s->pq.poll ? &s->pq : &s->ctlq;
    char buf[64];
    (void)status;
    (void)events;
    while (read(kq->fd[0], buf, sizeof(buf)) > 0)
        ;
    kq->ready(s);
}

int kiln__kafka_queue_start(struct ksrc *s, struct kqueue *kq, void (*ready)(struct ksrc *),
                            char *err, size_t errlen)
{
    int r = uv_poll_init(s->pub.loop, &kq->poll, kq->fd[0]);
    if (r < 0) {
        snprintf(err, errlen, "kafka: watching a queue: %s", uv_strerror(r));
        return r;
    }
    kq->ready = ready;
    kq->poll.data = s;
    uv_poll_start(&kq->poll, UV_READABLE, on_queue);
    return 0;
}
