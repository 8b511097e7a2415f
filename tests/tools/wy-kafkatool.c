/* wy-kafkatool — test tool driving wy_kafka against a real broker: produce
 * Envelopes, produce a raw (non-Envelope) record, or consume with a slow,
 * durable "effect" (a line appended to a file) to check offset handling. */
#include "wy_kafka.h"
#include "wy_log.h"
#include "wy_seen.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static const char *usage_text =
    "usage:\n"
    "  wy-kafkatool produce --brokers B --topic T --count N [--key K] [--type TYPE]\n"
    "                       [--timeout-ms MS] [--wait-stdin 1]\n"
    "      produce N Envelopes; prints each event_id once delivered; exit 0 if all delivered.\n"
    "      --wait-stdin 1: produce a \"test.warmup\" Envelope first, then print \"armed\" and\n"
    "      produce the N once a line is read on stdin\n"
    "  wy-kafkatool produce-raw --brokers B --topic T --value STRING [--key K]\n"
    "      produce one record that is not an Envelope\n"
    "  wy-kafkatool produce-lines --brokers B --topic T\n"
    "      produce one Envelope per line of stdin, \"<event_id> <key> <type> <payload hex>\"\n"
    "      (the given event_id: a redelivery or a producer's retry); exit 0 if all delivered\n"
    "  wy-kafkatool consume --brokers B --topic T --group G --effects FILE [--delay-ms D]\n"
    "                       [--expect N] [--timeout-ms MS]\n"
    "      apply each Envelope after D ms (append \"<event_id>\\n\" to FILE, fsync), then mark\n"
    "      it done; exit 0 after N distinct effects or on SIGTERM/SIGINT\n"
    "  wy-kafkatool offsets --brokers B --topic T --group G\n"
    "      print \"<partition> <low> <high> <committed>\" for each partition of T\n"
    "      (committed -1001: the group has none; nothing for a topic that does not exist)\n";

typedef struct {
    const char *cmd, *brokers, *topic, *key, *type, *value, *group, *effects;
    long count, delay_ms, expect, timeout_ms, wait_stdin;
} args_t;

static int usage(const char *why)
{
    if (why)
        fprintf(stderr, "wy-kafkatool: %s\n", why);
    fputs(usage_text, stderr);
    return 2;
}

static bool parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, args_t *a)
{
    memset(a, 0, sizeof *a);
    a->type = "test.event";
    a->timeout_ms = -1;
    if (argc < 2)
        return usage(NULL);
    a->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc)
            return usage("option without a value");
        const char *v = argv[++i];
        long *num = NULL;
        if (!strcmp(opt, "--brokers"))
            a->brokers = v;
        else if (!strcmp(opt, "--topic"))
            a->topic = v;
        else if (!strcmp(opt, "--key"))
            a->key = v;
        else if (!strcmp(opt, "--type"))
            a->type = v;
        else if (!strcmp(opt, "--value"))
            a->value = v;
        else if (!strcmp(opt, "--group"))
            a->group = v;
        else if (!strcmp(opt, "--effects"))
            a->effects = v;
        else if (!strcmp(opt, "--count"))
            num = &a->count;
        else if (!strcmp(opt, "--delay-ms"))
            num = &a->delay_ms;
        else if (!strcmp(opt, "--expect"))
            num = &a->expect;
        else if (!strcmp(opt, "--timeout-ms"))
            num = &a->timeout_ms;
        else if (!strcmp(opt, "--wait-stdin"))
            num = &a->wait_stdin;
        else
            return usage("unknown option");
        if (num && !parse_long(v, num))
            return usage("bad number");
    }
    if (!a->brokers || !a->topic)
        return usage("--brokers and --topic are required");
    return 0;
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* ---- produce --------------------------------------------------------------- */

typedef struct {
    uv_loop_t *loop;
    wy_kafka_producer_t *p;
    const args_t *a;
    uv_timer_t retry, deadline;
    long sent, delivered, failed;
    bool done;
} produce_t;

static void produce_finish(produce_t *s)
{
    if (s->done)
        return;
    s->done = true;
    wy_kafka_producer_close(s->p, 10000);
    close_handle((uv_handle_t *)&s->retry);
    close_handle((uv_handle_t *)&s->deadline);
}

static void on_delivery(void *udata, int status, const char *event_id)
{
    produce_t *s = udata;
    if (status == WY_OK) {
        s->delivered++;
        printf("%s\n", event_id);
        fflush(stdout);
    } else {
        s->failed++;
        wy_log_error("delivery failed", "event_id", event_id, "error", wy_errname(status), NULL);
    }
    if (s->delivered + s->failed == s->a->count)
        produce_finish(s);
}

static void on_retry(uv_timer_t *t);

static void pump(produce_t *s)
{
    while (!s->done && s->sent < s->a->count) {
        char payload[32];
        int n = snprintf(payload, sizeof payload, "%ld", s->sent);
        int rc = wy_kafka_produce(s->p, s->a->topic, s->a->key, s->a->type, payload, (size_t)n,
                                  on_delivery, s, NULL);
        if (rc == WY_EBUSY) {
            uv_timer_start(&s->retry, on_retry, 10, 0);
            return;
        }
        if (rc != WY_OK) {
            wy_log_error("produce failed", "error", wy_errname(rc), NULL);
            s->failed += s->a->count - s->sent;
            s->sent = s->a->count;
            produce_finish(s);
            return;
        }
        s->sent++;
    }
}

static void on_retry(uv_timer_t *t)
{
    pump(t->data);
}

static void on_produce_deadline(uv_timer_t *t)
{
    produce_t *s = t->data;
    wy_log_error("timed out waiting for deliveries", NULL);
    s->failed = s->a->count - s->delivered;
    produce_finish(s);
}

/* --wait-stdin: one warm-up Envelope ("test.warmup") is produced and acknowledged first, so the
 * connection, the producer id and the topic's metadata are in place; then "armed" is printed,
 * a line is awaited on stdin (the loop is blocked meanwhile) and the N Envelopes follow: each is
 * one round trip away from the trigger. A consumer that starts after "armed" at the latest
 * offset never sees the warm-up. */
static void on_warm(void *udata, int status, const char *event_id)
{
    (void)event_id;
    produce_t *s = udata;
    if (status != WY_OK) {
        wy_log_error("warm-up not delivered", "error", wy_errname(status), NULL);
        s->failed = s->a->count;
        produce_finish(s);
        return;
    }
    printf("armed\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        wy_log_warn("stdin closed before the trigger; producing anyway", NULL);
    pump(s);
}

static int cmd_produce(const args_t *a)
{
    if (a->count <= 0)
        return usage("--count must be > 0");
    uv_loop_t loop;
    uv_loop_init(&loop);
    produce_t s = {.loop = &loop, .a = a};
    const char *err;
    wy_kafka_producer_opts_t o = {.brokers = a->brokers, .producer = "kafkatool/produce"};
    if (wy_kafka_producer_new(&loop, &o, &s.p, &err) != WY_OK) {
        fprintf(stderr, "wy-kafkatool: %s\n", err);
        uv_loop_close(&loop);
        return 2;
    }
    uv_timer_init(&loop, &s.retry);
    s.retry.data = &s;
    uv_timer_init(&loop, &s.deadline);
    s.deadline.data = &s;
    uv_timer_start(&s.deadline, on_produce_deadline,
                   (uint64_t)(a->timeout_ms >= 0 ? a->timeout_ms : 60000), 0);
    if (!a->wait_stdin)
        pump(&s);
    else if (wy_kafka_produce(s.p, a->topic, a->key, "test.warmup", NULL, 0, on_warm, &s, NULL) !=
             WY_OK) {
        s.failed = a->count;
        produce_finish(&s);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return s.failed == 0 && s.delivered == a->count ? 0 : 1;
}

/* A bare librdkafka client of a->brokers (and group.id when group is not NULL) on conf,
 * which it always consumes; NULL after printing why. */
static rd_kafka_t *raw_client(rd_kafka_type_t type, rd_kafka_conf_t *conf, const args_t *a,
                              const char *group)
{
    char why[512];
    rd_kafka_t *rk = NULL;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", a->brokers, why, sizeof why) ==
            RD_KAFKA_CONF_OK &&
        (!group || rd_kafka_conf_set(conf, "group.id", group, why, sizeof why) == RD_KAFKA_CONF_OK))
        rk = rd_kafka_new(type, conf, why, sizeof why);
    if (!rk) {
        fprintf(stderr, "wy-kafkatool: %s\n", why);
        rd_kafka_conf_destroy(conf); /* rd_kafka_new takes it only on success */
    }
    return rk;
}

/* ---- produce-raw ----------------------------------------------------------- */

static void raw_dr(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    (void)rk;
    *(rd_kafka_resp_err_t *)opaque = rkm->err;
}

/* Produces each of values[0..n) (lens[i] bytes, Kafka key keys[i] or none) and waits for
 * the delivery reports: 0 when all were delivered. */
static int raw_produce(const args_t *a, const char *const *values, const size_t *lens,
                       const char *const *keys, size_t n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_resp_err_t result = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    rd_kafka_conf_set_opaque(conf, &result);
    rd_kafka_conf_set_dr_msg_cb(conf, raw_dr);
    rd_kafka_t *rk = raw_client(RD_KAFKA_PRODUCER, conf, a, NULL);
    if (!rk)
        return 2;
    for (size_t i = 0; i < n && result == RD_KAFKA_RESP_ERR__IN_PROGRESS; i++) {
        size_t klen = keys[i] ? strlen(keys[i]) : 0;
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(a->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE((void *)values[i], lens[i]),
            RD_KAFKA_V_KEY(klen ? keys[i] : NULL, klen), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            result = e;
        else
            rd_kafka_flush(rk, a->timeout_ms >= 0 ? (int)a->timeout_ms : 30000);
    }
    rd_kafka_destroy(rk);
    if (result != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "wy-kafkatool: produce-raw: %s\n", rd_kafka_err2str(result));
        return 1;
    }
    return 0;
}

static int cmd_produce_raw(const args_t *a)
{
    if (!a->value)
        return usage("--value is required");
    const char *v[] = {a->value}, *k[] = {a->key};
    size_t len[] = {strlen(a->value)};
    return raw_produce(a, v, len, k, 1);
}

/* ---- produce-lines --------------------------------------------------------- */

static int unhex(const char *h, uint8_t *out, size_t *n)
{
    size_t l = strlen(h);
    if (l % 2)
        return -1;
    for (size_t i = 0; i < l / 2; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    *n = l / 2;
    return 0;
}

static int cmd_produce_lines(const args_t *a)
{
    char line[8192];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, stdin)) {
        char id[WY_KAFKA_MAX_ID + 1], key[256], type[WY_KAFKA_MAX_ID + 1], hex[4096];
        hex[0] = 0;
        if (sscanf(line, "%128s %255s %128s %4095s", id, key, type, hex) < 3)
            return usage("produce-lines: a line is \"<event_id> <key> <type> <payload hex>\"");
        uint8_t payload[2048];
        size_t plen = 0;
        if (unhex(hex, payload, &plen) != 0)
            return usage("produce-lines: bad payload hex");
        size_t len;
        uint8_t *env = wy_kafka_envelope_pack(id, type, "kafkatool/produce-lines", wy_wall_ms(),
                                              key, payload, plen, &len);
        const char *v[] = {(const char *)env}, *k[] = {key};
        rc = raw_produce(a, v, &len, k, 1);
        wy_free(env);
    }
    return rc;
}

/* ---- consume --------------------------------------------------------------- */

typedef struct effect effect_t;

typedef struct {
    uv_loop_t *loop;
    const args_t *a;
    wy_kafka_consumer_t *c;
    wy_seen_t *seen;
    int fd;
    long applied; /* distinct effects written by this process */
    effect_t *pending;
    uv_signal_t sigterm, sigint;
    uv_timer_t deadline;
    bool stopping;
    int exit_code;
} consume_t;

struct effect {
    uv_timer_t timer;
    effect_t *prev, *next;
    consume_t *s;
    wy_kafka_msg_t *msg;
    char event_id[WY_KAFKA_MAX_ID + 1];
};

static void effect_free(uv_handle_t *h)
{
    free(WY_CONTAINER_OF(h, effect_t, timer));
}

static void effect_unlink(effect_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        e->s->pending = e->next;
    if (e->next)
        e->next->prev = e->prev;
}

static void consume_stop(consume_t *s, int code)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->exit_code = code;
    /* Effects not applied yet are given up: their offsets are not stored,
     * so the next consumer of the group gets them again. */
    while (s->pending) {
        effect_t *e = s->pending;
        effect_unlink(e);
        wy_kafka_msg_release(e->msg);
        uv_timer_stop(&e->timer);
        uv_close((uv_handle_t *)&e->timer, effect_free);
    }
    wy_kafka_consumer_close(s->c, 10000);
    char n[24];
    snprintf(n, sizeof n, "%ld", s->applied);
    wy_log_info("consumer closed", "applied", n, NULL);
    close_handle((uv_handle_t *)&s->sigterm);
    close_handle((uv_handle_t *)&s->sigint);
    close_handle((uv_handle_t *)&s->deadline);
}

static void on_effect_due(uv_timer_t *t)
{
    effect_t *e = WY_CONTAINER_OF(t, effect_t, timer);
    consume_t *s = e->s;
    effect_unlink(e);
    if (!wy_seen_check_add(s->seen, e->event_id)) {
        char line[WY_KAFKA_MAX_ID + 2];
        int n = snprintf(line, sizeof line, "%s\n", e->event_id);
        if (write(s->fd, line, (size_t)n) != n || fsync(s->fd) != 0) {
            wy_log_error("effect write failed", "error", strerror(errno), NULL);
            wy_kafka_msg_release(e->msg);
            uv_close((uv_handle_t *)&e->timer, effect_free);
            consume_stop(s, 1);
            return;
        }
        s->applied++;
        wy_log_info("effect applied", "event_id", e->event_id, NULL);
    } else {
        wy_log_info("duplicate event skipped", "event_id", e->event_id, NULL);
    }
    wy_kafka_msg_done(e->msg);
    uv_close((uv_handle_t *)&e->timer, effect_free);
    if (s->a->expect > 0 && s->applied >= s->a->expect)
        consume_stop(s, 0);
}

static void on_message(void *udata, const Wyvern__Envelope *env, wy_kafka_msg_t *msg)
{
    consume_t *s = udata;
    char part[16], off[24];
    snprintf(part, sizeof part, "%" PRId32, wy_kafka_msg_partition(msg));
    snprintf(off, sizeof off, "%" PRId64, wy_kafka_msg_offset(msg));
    wy_log_info("kafka message received", "event_id", env->event_id, "type", env->type, "topic",
                wy_kafka_msg_topic(msg), "partition", part, "offset", off, NULL);
    effect_t *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    e->s = s;
    e->msg = msg;
    snprintf(e->event_id, sizeof e->event_id, "%s", env->event_id);
    e->next = s->pending;
    if (s->pending)
        s->pending->prev = e;
    s->pending = e;
    uv_timer_init(s->loop, &e->timer);
    uv_timer_start(&e->timer, on_effect_due, (uint64_t)s->a->delay_ms, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    consume_stop(h->data, 0);
}

static void on_consume_deadline(uv_timer_t *t)
{
    wy_log_error("timed out before the expected effects", NULL);
    consume_stop(t->data, 3);
}

static int cmd_consume(const args_t *a)
{
    if (!a->group || !a->effects)
        return usage("--group and --effects are required");
    consume_t s = {.a = a};
    s.fd = open(a->effects, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s.fd < 0) {
        fprintf(stderr, "wy-kafkatool: %s: %s\n", a->effects, strerror(errno));
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    s.loop = &loop;
    s.seen = wy_seen_new(100000);
    const char *topics[] = {a->topic, NULL};
    /* 6 s is the broker's minimum: a killed member's partitions move on fast. */
    wy_kafka_consumer_opts_t o = {.brokers = a->brokers,
                                  .group_id = a->group,
                                  .topics = topics,
                                  .handler = on_message,
                                  .udata = &s,
                                  .client_id = "kafkatool/consume",
                                  .session_timeout_ms = 6000};
    const char *err;
    if (wy_kafka_consumer_new(&loop, &o, &s.c, &err) != WY_OK) {
        fprintf(stderr, "wy-kafkatool: %s\n", err);
        wy_seen_free(s.seen);
        close(s.fd);
        uv_loop_close(&loop);
        return 2;
    }
    uv_signal_init(&loop, &s.sigterm);
    s.sigterm.data = &s;
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_init(&loop, &s.sigint);
    s.sigint.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_timer_init(&loop, &s.deadline);
    s.deadline.data = &s;
    if (a->timeout_ms > 0)
        uv_timer_start(&s.deadline, on_consume_deadline, (uint64_t)a->timeout_ms, 0);
    wy_log_info("consumer started", "topic", a->topic, "group", a->group, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    if (rc != 0)
        wy_log_error("loop not empty at exit", "error", uv_strerror(rc), NULL);
    wy_seen_free(s.seen);
    close(s.fd);
    return s.exit_code;
}

/* Watermarks of a topic and the committed offsets of a group, read without joining the group
 * (rd_kafka_committed only asks the group coordinator). */
static int cmd_offsets(const args_t *a)
{
    if (!a->group)
        return usage("--group is required");
    rd_kafka_t *rk = raw_client(RD_KAFKA_CONSUMER, rd_kafka_conf_new(), a, a->group);
    if (!rk)
        return 2;
    int rc = 1;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, a->topic, NULL);
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 15000);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && !md->topics[0].err) {
        rd_kafka_topic_partition_list_t *list =
            rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(list, a->topic, md->topics[0].partitions[i].id);
        e = rd_kafka_committed(rk, list, 15000);
        for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; i++) {
            int64_t lo, hi;
            e = rd_kafka_query_watermark_offsets(rk, a->topic, list->elems[i].partition, &lo, &hi,
                                                 15000);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                printf("%" PRId32 " %" PRId64 " %" PRId64 " %" PRId64 "\n",
                       list->elems[i].partition, lo, hi, list->elems[i].offset);
        }
        rc = e == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : 1;
        rd_kafka_topic_partition_list_destroy(list);
    } else if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        e = md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        /* A topic nobody produced to yet: no partitions, nothing to print. */
        if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            rc = 0;
    }
    if (rc)
        fprintf(stderr, "wy-kafkatool: offsets: %s\n", rd_kafka_err2str(e));
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}

int main(int argc, char **argv)
{
    wy_log_init("kafkatool", WY_LOG_INFO);
    args_t a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    if (!strcmp(a.cmd, "produce"))
        return cmd_produce(&a);
    if (!strcmp(a.cmd, "produce-raw"))
        return cmd_produce_raw(&a);
    if (!strcmp(a.cmd, "produce-lines"))
        return cmd_produce_lines(&a);
    if (!strcmp(a.cmd, "consume"))
        return cmd_consume(&a);
    if (!strcmp(a.cmd, "offsets"))
        return cmd_offsets(&a);
    return usage("unknown command");
}
