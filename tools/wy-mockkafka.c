/* wy-mockkafka: a librdkafka mock Kafka cluster (1 broker) that `make run` falls
 * back to when no real broker can run. Prints its bootstrap address, serves until SIGTERM. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: wy-mockkafka [--partitions N] [TOPIC...]\n"
                 "Starts a librdkafka mock cluster with one broker on a free loopback port,\n"
                 "creates the given topics (N partitions each, default 3), prints the bootstrap\n"
                 "address on one line of stdout and serves until SIGTERM or SIGINT.\n"
                 "Development fallback only: not a real Kafka.\n");
}

int main(int argc, char **argv)
{
    int partitions = 3;
    int first_topic = 1;
    for (; first_topic < argc; first_topic++) {
        const char *a = argv[first_topic];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--partitions") == 0 && first_topic + 1 < argc) {
            char *end = NULL;
            long n = strtol(argv[++first_topic], &end, 10);
            if (!end || *end != '\0' || n < 1 || n > 1000) {
                fprintf(stderr, "wy-mockkafka: --partitions: want 1..1000, got '%s'\n",
                        argv[first_topic]);
                return 2;
            }
            partitions = (int)n;
            continue;
        }
        if (a[0] == '-') {
            fprintf(stderr, "wy-mockkafka: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        break;
    }

    /* Block the stop signals before librdkafka starts its threads, so they
     * inherit the mask and sigwait() below is the only place they land. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    /* The mock cluster is hosted by a client handle: this one is never used for
     * producing, it only owns the cluster's threads. */
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "wy-mockkafka: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "wy-mockkafka: rd_kafka_new: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        fprintf(stderr, "wy-mockkafka: rd_kafka_mock_cluster_new failed\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (int i = first_topic; i < argc; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, argv[i], partitions, 1);
        if (err) {
            fprintf(stderr, "wy-mockkafka: create topic %s: %s\n", argv[i], rd_kafka_err2str(err));
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            return 1;
        }
    }

    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "wy-mockkafka: signal %d, stopping\n", sig);

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
