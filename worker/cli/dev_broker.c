/*
 * kiln dev-broker: a Kafka-protocol broker on loopback, from librdkafka's
 * mock cluster, for development and tests. NOT for production: it keeps
 * everything in memory, in this process, and loses it when it exits.
 *
 * It prints its bootstrap address on the first line of standard output,
 * then takes commands, one per line, on standard input (each answered by
 * "ok" or "error: ..."), so tests can inject faults:
 *
 *   topic NAME PARTITIONS     create a topic
 *   down BROKER_ID            take a broker down (ids are 1..N)
 *   up BROKER_ID              bring it back
 *   errors API_KEY ERR COUNT  fail the next COUNT requests of that API
 *                             (0 Produce, 1 Fetch, 8 OffsetCommit, ...)
 *                             with Kafka error code ERR (-195: disconnect)
 *   quit
 *
 * With standard input closed it serves until SIGINT or SIGTERM.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client.h"

static int command(rd_kafka_mock_cluster_t *mc, char *line)
{
    char name[256];
    int a, b, c;
    if (sscanf(line, "topic %255s %d", name, &a) == 2) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, name, a, 1);
        return err ? (printf("error: %s\n", rd_kafka_err2str(err)), 0) : 1;
    }
    if (sscanf(line, "down %d", &a) == 1)
        return rd_kafka_mock_broker_set_down(mc, a) == 0;
    if (sscanf(line, "up %d", &a) == 1)
        return rd_kafka_mock_broker_set_up(mc, a) == 0;
    if (sscanf(line, "errors %d %d %d", &a, &b, &c) == 3 && c > 0 && c <= 1000) {
        rd_kafka_resp_err_t errs[1000];
        for (int i = 0; i < c; i++)
            errs[i] = (rd_kafka_resp_err_t)b;
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)a, (size_t)c, errs);
        return 1;
    }
    printf("error: unknown command\n");
    return 0;
}

int kiln_dev_broker(int argc, char **argv)
{
    int brokers = 1, partitions = 4;
    char err[256];
    const char *topics[64];
    int ntopics = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc)
            brokers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc)
            partitions = atoi(argv[++i]);
        else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc && ntopics < 64)
            topics[ntopics++] = argv[++i];
        else {
            fprintf(stderr, "usage: kiln dev-broker [--brokers N] [--partitions N] [--topic NAME]...\n"
                            "  a Kafka-protocol broker for development and tests (librdkafka's\n"
                            "  mock cluster): in memory, not for production. Creates kiln.jobs,\n"
                            "  kiln.results, kiln.dead and each --topic with --partitions\n"
                            "  partitions (4), and kiln.control with one.\n");
            return 2;
        }
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "kiln dev-broker: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (mc == NULL) {
        fprintf(stderr, "kiln dev-broker: cannot start the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    rd_kafka_mock_topic_create(mc, "kiln.jobs", partitions, 1);
    rd_kafka_mock_topic_create(mc, "kiln.results", partitions, 1);
    rd_kafka_mock_topic_create(mc, "kiln.control", 1, 1);
    rd_kafka_mock_topic_create(mc, "kiln.dead", partitions, 1);
    for (int i = 0; i < ntopics; i++)
        rd_kafka_mock_topic_create(mc, topics[i], partitions, 1);
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    fprintf(stderr, "kiln dev-broker: for development and tests only; data lives in memory\n");

    char line[512];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        if (strncmp(line, "quit", 4) == 0)
            break;
        if (command(mc, line))
            printf("ok\n");
        fflush(stdout);
    }
    if (feof(stdin)) { /* no more commands: serve until told to stop */
        sigset_t set;
        int sig;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigprocmask(SIG_BLOCK, &set, NULL);
        sigwait(&set, &sig);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
