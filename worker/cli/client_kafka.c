/* The kiln client over Kafka (librdkafka): a producer for jobs, and a
 * group-less consumer that assigns itself every partition of the topic it
 * reads, from the end (submit) or the beginning (frames). */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client.h"
#include "wire/proto.h"

struct kclient {
    struct kiln_client pub;
    rd_kafka_t *producer, *consumer;
    char topic[256];
    int from_end;
    int nparts, eofs;          /* assigned partitions; how many reached the end */
    int delivered;             /* enqueue's delivery report: 1 ok, -1 failed */
};

static rd_kafka_conf_t *conf_new(const char *brokers, char **conf, size_t nconf)
{
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof(err)) != RD_KAFKA_CONF_OK)
        goto fail;
    for (size_t i = 0; i < nconf; i++) {
        char *eq = strchr(conf[i], '=');
        if (eq == NULL) {
            snprintf(err, sizeof(err), "--kafka-conf %s: want K=V", conf[i]);
            goto fail;
        }
        *eq = '\0';
        rd_kafka_conf_res_t r = rd_kafka_conf_set(c, conf[i], eq + 1, err, sizeof(err));
        *eq = '=';
        if (r != RD_KAFKA_CONF_OK)
            goto fail;
    }
    return c;
fail:
    fprintf(stderr, "kiln: kafka: %s\n", err);
    rd_kafka_conf_destroy(c);
    return NULL;
}

/* Assign every partition of the topic; 0 if it has none (yet). */
static int assign_all(struct kclient *kc)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(kc->consumer, kc->topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(kc->consumer, 0, t, &md, 5000);
    rd_kafka_topic_destroy(t);
    if (err)
        return 0;
    int n = md->topic_cnt == 1 && !md->topics[0].err ? md->topics[0].partition_cnt : 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int i = 0; i < n; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        int64_t lo = 0, hi = RD_KAFKA_OFFSET_END;
        if (kc->from_end)
            rd_kafka_query_watermark_offsets(kc->consumer, kc->topic, p, &lo, &hi, 5000);
        rd_kafka_topic_partition_list_add(l, kc->topic, p)->offset =
            kc->from_end ? hi : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_metadata_destroy(md);
    if (n > 0)
        rd_kafka_assign(kc->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    kc->nparts = n;
    return n;
}

static int k_watch(struct kiln_client *pub, const char *stream, int from_end)
{
    struct kclient *kc = (struct kclient *)pub;
    snprintf(kc->topic, sizeof(kc->topic), "%s", stream);
    kc->from_end = from_end;
    assign_all(kc);
    return 0;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct kclient *kc = opaque;
    (void)rk;
    kc->delivered = m->err ? -1 : 1;
    if (m->err)
        fprintf(stderr, "kiln: enqueue failed: %s\n", rd_kafka_err2str(m->err));
}

static int k_enqueue(struct kiln_client *pub, const char *queue, const char *id,
                     const void *job, size_t len)
{
    struct kclient *kc = (struct kclient *)pub;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        kc->producer, RD_KAFKA_V_TOPIC(queue), RD_KAFKA_V_KEY(id, strlen(id)),
        RD_KAFKA_V_VALUE((void *)job, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err) {
        fprintf(stderr, "kiln: enqueue failed: %s\n", rd_kafka_err2str(err));
        return -1;
    }
    rd_kafka_flush(kc->producer, 30000);
    if (kc->delivered == 0)
        fprintf(stderr, "kiln: enqueue failed: not delivered within 30 s\n");
    return kc->delivered == 1 ? 0 : -1;
}

static int k_read(struct kiln_client *pub, long block_ms, kiln_frame_fn fn, void *arg)
{
    struct kclient *kc = (struct kclient *)pub;
    if (kc->nparts == 0 && assign_all(kc) == 0) { /* the topic may not exist yet */
        usleep(block_ms > 200 || block_ms < 0 ? 200000 : (useconds_t)block_ms * 1000);
        return kc->from_end || block_ms >= 0 ? 0 : -3;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(kc->consumer, block_ms < 0 ? 1000 : (int)block_ms);
    if (m == NULL)
        return 0;
    int r = 0;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        r = ++kc->eofs >= kc->nparts && block_ms < 0 ? -3 : 0;
    } else if (m->err) {
        fprintf(stderr, "kiln: kafka: %s\n", rd_kafka_message_errstr(m));
    } else {
        char where[300];
        msgpack_unpacked u;
        snprintf(where, sizeof(where), "%s[%" PRId32 "]@%" PRId64, kc->topic, m->partition, m->offset);
        msgpack_unpacked_init(&u);
        if (m->payload && kiln_mp_unpack(&u, m->payload, m->len) == 0)
            r = fn(arg, where, &u.data) ? -2 : 1;
        msgpack_unpacked_destroy(&u);
    }
    rd_kafka_message_destroy(m);
    return r;
}

static int k_cancel(struct kiln_client *pub, const char *control, const char *id)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct kiln_map m;
    kiln_map_init(&m);
    kiln_map_str(&m, "cancel", id);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    kiln_map_end(&m, &pk);
    int r = k_enqueue(pub, control, id, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static void k_close(struct kiln_client *pub)
{
    struct kclient *kc = (struct kclient *)pub;
    rd_kafka_consumer_close(kc->consumer);
    rd_kafka_destroy(kc->consumer);
    rd_kafka_destroy(kc->producer);
    free(kc);
}

static const struct kiln_client_ops kafka_ops = {k_watch, k_enqueue, k_read, k_cancel, NULL, k_close};

struct kiln_client *kiln_client_kafka(const char *brokers, char **conf, size_t nconf)
{
    char err[256], group[64];
    struct kclient *kc = calloc(1, sizeof(*kc));
    rd_kafka_conf_t *p = conf_new(brokers, conf, nconf), *c = conf_new(brokers, conf, nconf);
    if (kc == NULL || p == NULL || c == NULL)
        goto fail;
    rd_kafka_conf_set_opaque(p, kc);
    rd_kafka_conf_set_dr_msg_cb(p, on_dr);
    snprintf(group, sizeof(group), "kiln-client-%d", (int)getpid());
    if (rd_kafka_conf_set(c, "group.id", group, err, sizeof(err)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(c, "isolation.level", "read_committed", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
        /* a short-lived reader: do not sit on an empty fetch for 500 ms */
        rd_kafka_conf_set(c, "fetch.wait.max.ms", "50", err, sizeof(err)) != RD_KAFKA_CONF_OK)
        goto fail_err;
    if ((kc->producer = rd_kafka_new(RD_KAFKA_PRODUCER, p, err, sizeof(err))) == NULL)
        goto fail_err;
    p = NULL;
    if ((kc->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err))) == NULL)
        goto fail_err;
    kc->pub.ops = &kafka_ops;
    return &kc->pub;
fail_err:
    fprintf(stderr, "kiln: kafka: %s\n", err);
fail:
    if (p)
        rd_kafka_conf_destroy(p);
    if (kc && kc->producer)
        rd_kafka_destroy(kc->producer);
    else if (c)
        rd_kafka_conf_destroy(c);
    free(kc);
    return NULL;
}
