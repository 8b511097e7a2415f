/* Unit tests for wy_kafka: Envelope helpers and config errors (no broker), a
 * local-queue bound and delivery failures against an address nobody listens
 * on, and produce/consume/offset behaviour against the real broker in
 * WY_KAFKA_BROKERS (those tests fail when it is unset). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wy_test.h"
#include <librdkafka/rdkafka.h>

#include "wy_kafka.h"
#include "wy_log.h"

/* Nothing listens on port 1: connections are refused at once. */
#define DEAD_BROKER "127.0.0.1:1"
#define N_MSGS      10

/* ---- loop helpers ------------------------------------------------------------ */

static const char *brokers_env(void)
{
    return wt_env("WY_KAFKA_BROKERS", "Kafka broker", "127.0.0.1:PORT");
}

static void unique_name(char *out, size_t n, const char *prefix)
{
    char id[37];
    wy_uuid4(id);
    snprintf(out, n, "%s-%s", prefix, id);
}

/* Committed offset of one partition of group, read with a separate client. */
static int64_t committed_offset(const char *brokers, const char *group, const char *topic,
                                int32_t partition)
{
    char why[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, why, sizeof why),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", group, why, sizeof why), RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition);
    assert_int_equal(rd_kafka_committed(rk, list, 15000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(list->elems[0].err, RD_KAFKA_RESP_ERR_NO_ERROR);
    int64_t off = list->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return off;
}

static void produce_raw(const char *brokers, const char *topic, const char *key, const char *value)
{
    char why[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, why, sizeof why),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                       RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_outq_len(rk), 0);
    rd_kafka_destroy(rk);
}

/* ---- Envelope helpers ------------------------------------------------------ */

static void test_envelope_roundtrip(void **state)
{
    (void)state;
    const uint8_t payload[] = {0, 1, 2, 0xff};
    size_t len;
    uint8_t *buf = wy_kafka_envelope_pack("id-1", "account.created", "auth/a1", 1234567890123ULL,
                                          "acct-9", payload, sizeof payload, &len);
    assert_true(len > 0);
    const char *err = NULL;
    Wyvern__Envelope *env = wy_kafka_envelope_unpack(buf, len, &err);
    assert_non_null(env);
    assert_string_equal(env->event_id, "id-1");
    assert_string_equal(env->type, "account.created");
    assert_string_equal(env->producer, "auth/a1");
    assert_string_equal(env->key, "acct-9");
    assert_int_equal(env->timestamp_ms, 1234567890123ULL);
    assert_int_equal(env->payload.len, sizeof payload);
    assert_memory_equal(env->payload.data, payload, sizeof payload);
    wy_kafka_envelope_free(env);
    wy_free(buf);
    wy_kafka_envelope_free(NULL);
}

static void expect_rejected(const void *data, size_t len, const char *reason)
{
    const char *err = NULL;
    assert_null(wy_kafka_envelope_unpack(data, len, &err));
    assert_non_null(err);
    assert_string_equal(err, reason);
}

static void test_envelope_rejects_bad_records(void **state)
{
    (void)state;
    expect_rejected("garbage", 7, "not a protobuf Envelope");
    expect_rejected("", 0, "empty record");

    size_t len;
    uint8_t *buf = wy_kafka_envelope_pack(NULL, "t.x", "p", 1, NULL, NULL, 0, &len);
    expect_rejected(buf, len, "empty event_id");
    wy_free(buf);
    buf = wy_kafka_envelope_pack("id", "", "p", 1, NULL, NULL, 0, &len);
    expect_rejected(buf, len, "empty type");
    wy_free(buf);

    char longid[WY_KAFKA_MAX_ID + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    buf = wy_kafka_envelope_pack(longid, "t.x", "p", 1, NULL, NULL, 0, &len);
    expect_rejected(buf, len, "event_id too long");
    wy_free(buf);

    /* The size bound applies before any parsing. */
    size_t big = WY_KAFKA_MAX_ENVELOPE + 1;
    uint8_t *huge = calloc(1, big);
    assert_non_null(huge);
    expect_rejected(huge, big, "record larger than the Envelope bound");
    free(huge);
}

static void test_error_mapping(void **state)
{
    (void)state;
    assert_int_equal(wy_kafka_err(RD_KAFKA_RESP_ERR_NO_ERROR), WY_OK);
    assert_int_equal(wy_kafka_err(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), WY_ETIMEDOUT);
    assert_int_equal(wy_kafka_err(RD_KAFKA_RESP_ERR__QUEUE_FULL), WY_EBUSY);
    assert_int_equal(wy_kafka_err(RD_KAFKA_RESP_ERR__PURGE_QUEUE), WY_ECANCELED);
    assert_int_equal(wy_kafka_err(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), WY_ETOOBIG);
    assert_int_equal(wy_kafka_err(RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE), WY_EIO);
}

/* ---- configuration errors ---------------------------------------------------- */

static void expect_producer_error(const char *brokers, const char *name, const char *const *extra,
                                  const char *needle)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    wy_kafka_producer_opts_t o = {.brokers = brokers, .producer = name, .extra = extra};
    wy_kafka_producer_t *p = (void *)1;
    const char *err = NULL;
    assert_int_equal(wy_kafka_producer_new(&loop, &o, &p, &err), WY_EINVAL);
    assert_null(p);
    assert_non_null(err);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
    wt_loop_finish(&loop);
}

/* A producer that must be created. */
static wy_kafka_producer_t *producer_ok(uv_loop_t *loop, const wy_kafka_producer_opts_t *o)
{
    wy_kafka_producer_t *p = NULL;
    const char *err = NULL;
    if (wy_kafka_producer_new(loop, o, &p, &err) != WY_OK)
        fail_msg("producer: %s", err);
    return p;
}

static void ignore_msg(void *udata, const Wyvern__Envelope *env, wy_kafka_msg_t *msg)
{
    (void)udata;
    (void)env;
    wy_kafka_msg_done(msg);
}

static void test_bad_config_errors(void **state)
{
    (void)state;
    expect_producer_error(NULL, "p", NULL, "empty");
    expect_producer_error("", "p", NULL, "empty");
    expect_producer_error("localhost", "p", NULL, "\"localhost\" is not host:port");
    expect_producer_error("127.0.0.1:99999", "p", NULL, "bad port");
    expect_producer_error("127.0.0.1:9092,,x:1", "p", NULL, "empty entry");
    expect_producer_error("127.0.0.1:9092", "", NULL, "producer name");
    const char *bad_value[] = {"linger.ms", "soon", NULL};
    expect_producer_error("127.0.0.1:9092", "p", bad_value, "linger.ms=soon");
    const char *unknown[] = {"no.such.setting", "1", NULL};
    expect_producer_error("127.0.0.1:9092", "p", unknown, "no.such.setting");
    const char *no_value[] = {"linger.ms", NULL};
    expect_producer_error("127.0.0.1:9092", "p", no_value, "has no value");

    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *topics[] = {"t", NULL};
    const char *no_topics[] = {NULL};
    wy_kafka_consumer_t *c = NULL;
    const char *err = NULL;
    wy_kafka_consumer_opts_t o = {
        .brokers = "127.0.0.1:9092", .group_id = "", .topics = topics, .handler = ignore_msg};
    assert_int_equal(wy_kafka_consumer_new(&loop, &o, &c, &err), WY_EINVAL);
    assert_non_null(strstr(err, "group id"));
    o.group_id = "g";
    o.topics = no_topics;
    assert_int_equal(wy_kafka_consumer_new(&loop, &o, &c, &err), WY_EINVAL);
    assert_non_null(strstr(err, "no topics"));
    o.topics = topics;
    o.brokers = "host:";
    assert_int_equal(wy_kafka_consumer_new(&loop, &o, &c, &err), WY_EINVAL);
    assert_non_null(strstr(err, "bad port"));
    o.brokers = "127.0.0.1:9092";
    o.handler = NULL;
    assert_int_equal(wy_kafka_consumer_new(&loop, &o, &c, &err), WY_EINVAL);
    assert_non_null(strstr(err, "handler"));
    assert_null(c);
    wt_loop_finish(&loop);
}

/* ---- producer without a broker ----------------------------------------------- */

typedef struct {
    int calls;
    int status[64];
    char ids[64][37];
} deliveries_t;

static void record_delivery(void *udata, int status, const char *event_id)
{
    deliveries_t *d = udata;
    assert_true(d->calls < 64);
    d->status[d->calls] = status;
    snprintf(d->ids[d->calls], 37, "%s", event_id);
    d->calls++;
}

static void test_queue_bound_and_cancel_on_close(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    wy_kafka_producer_opts_t o = {.brokers = DEAD_BROKER, .producer = "test/1", .max_queue = 5};
    wy_kafka_producer_t *p = producer_ok(&loop, &o);
    deliveries_t d = {0};
    char ids[5][37];
    for (int i = 0; i < 5; i++)
        assert_int_equal(wy_kafka_produce(p, "t", "k", "t.x", "x", 1, record_delivery, &d, ids[i]),
                         WY_OK);
    /* Full: refused at once, no callback later. */
    assert_int_equal(wy_kafka_produce(p, "t", "k", "t.x", "x", 1, record_delivery, &d, NULL),
                     WY_EBUSY);
    assert_int_equal(wy_kafka_produce(p, "", "k", "t.x", "x", 1, record_delivery, &d, NULL),
                     WY_EINVAL);
    assert_int_equal(wy_kafka_produce(p, "t", "k", "", "x", 1, record_delivery, &d, NULL),
                     WY_EINVAL);
    assert_false(wy_kafka_producer_healthy(p));

    wy_kafka_producer_stats_t st;
    wy_kafka_producer_stats(p, &st);
    assert_int_equal(st.produced, 5);
    assert_int_equal(st.rejected, 3);
    assert_int_equal(st.queued, 5);

    /* Close without waiting: every accepted message is reported, canceled. */
    wy_kafka_producer_close(p, 0);
    assert_int_equal(d.calls, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(d.status[i], WY_ECANCELED);
        assert_string_equal(d.ids[i], ids[i]);
    }
    wt_loop_finish(&loop);
}

static bool deliveries_reached(void *ctx)
{
    return ((deliveries_t *)ctx)->calls >= 1;
}

static void test_delivery_timeout(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    wy_kafka_producer_opts_t o = {
        .brokers = DEAD_BROKER, .producer = "test/1", .message_timeout_ms = 1000};
    wy_kafka_producer_t *p = producer_ok(&loop, &o);
    deliveries_t d = {0};
    assert_int_equal(wy_kafka_produce(p, "t", NULL, "t.x", NULL, 0, record_delivery, &d, NULL),
                     WY_OK);
    wt_run_pred(&loop, deliveries_reached, &d, 20000, "delivery report");
    assert_int_equal(d.status[0], WY_ETIMEDOUT);
    assert_false(wy_kafka_producer_healthy(p));
    wy_kafka_producer_stats_t st;
    wy_kafka_producer_stats(p, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.delivered, 0);
    wy_kafka_producer_close(p, 1000);
    wt_loop_finish(&loop);
}

/* ---- against the real broker ------------------------------------------------- */

typedef struct {
    wy_kafka_msg_t *msgs[64];
    char ids[64][WY_KAFKA_MAX_ID + 1];
    int64_t offsets[64];
    int32_t partitions[64];
    int received;
    bool done_in_handler;
    wy_kafka_consumer_t *c;
} inbox_t;

static void collect(void *udata, const Wyvern__Envelope *env, wy_kafka_msg_t *msg)
{
    inbox_t *in = udata;
    assert_true(in->received < 64);
    snprintf(in->ids[in->received], sizeof in->ids[0], "%s", env->event_id);
    in->offsets[in->received] = wy_kafka_msg_offset(msg);
    in->partitions[in->received] = wy_kafka_msg_partition(msg);
    assert_string_equal(env->type, "test.event");
    assert_string_equal(env->producer, "test/real");
    assert_string_equal(env->key, "k1");
    if (in->done_in_handler) {
        wy_kafka_msg_done(msg);
        in->msgs[in->received] = NULL;
    } else {
        in->msgs[in->received] = msg;
    }
    in->received++;
}

typedef struct {
    inbox_t *in;
    int want;
} want_t;

static bool received_enough(void *ctx)
{
    want_t *w = ctx;
    return w->in->received >= w->want;
}

static bool producer_healthy(void *ctx)
{
    return wy_kafka_producer_healthy(ctx);
}

/* Produces n Envelopes with key "k1" (one partition); ids out in order. */
static void produce_n(uv_loop_t *loop, const char *brokers, const char *topic, int n,
                      char ids[][37])
{
    wy_kafka_producer_opts_t o = {.brokers = brokers, .producer = "test/real"};
    wy_kafka_producer_t *p = producer_ok(loop, &o);
    deliveries_t d = {0};
    for (int i = 0; i < n; i++) {
        char payload[16];
        int len = snprintf(payload, sizeof payload, "%d", i);
        assert_int_equal(wy_kafka_produce(p, topic, "k1", "test.event", payload, (size_t)len,
                                          record_delivery, &d, ids[i]),
                         WY_OK);
    }
    while (d.calls < n)
        uv_run(loop, UV_RUN_ONCE);
    for (int i = 0; i < n; i++) {
        assert_int_equal(d.status[i], WY_OK);
        assert_string_equal(d.ids[i], ids[i]); /* in order: one partition, idempotent */
    }
    wt_run_pred(loop, producer_healthy, p, 10000, "producer healthy");
    wy_kafka_producer_stats_t st;
    wy_kafka_producer_stats(p, &st);
    assert_int_equal(st.produced, (uint64_t)n);
    assert_int_equal(st.delivered, (uint64_t)n);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.queued, 0);
    wy_kafka_producer_close(p, 5000);
}

static wy_kafka_consumer_t *new_consumer(uv_loop_t *loop, const char *brokers, const char *group,
                                         const char *topic, inbox_t *in, int max_in_flight)
{
    const char *topics[] = {topic, NULL};
    wy_kafka_consumer_opts_t o = {.brokers = brokers,
                                  .group_id = group,
                                  .topics = topics,
                                  .handler = collect,
                                  .udata = in,
                                  .max_in_flight = max_in_flight,
                                  .session_timeout_ms = 6000};
    wy_kafka_consumer_t *c;
    const char *err = NULL;
    int rc = wy_kafka_consumer_new(loop, &o, &c, &err);
    if (rc != WY_OK)
        fail_msg("consumer: %s", err);
    in->c = c;
    return c;
}

/* One real-broker scenario: the brokers, a fresh topic and group, its own loop. */
typedef struct {
    const char *brokers;
    char topic[64], group[64];
    uv_loop_t loop;
} scene_t;

static void scene_init(scene_t *sc, const char *topic_prefix)
{
    sc->brokers = brokers_env();
    unique_name(sc->topic, sizeof sc->topic, topic_prefix);
    unique_name(sc->group, sizeof sc->group, "wy-test-group");
    assert_int_equal(uv_loop_init(&sc->loop), 0);
}

static void test_offsets_stored_only_when_done(void **state)
{
    (void)state;
    scene_t sc;
    scene_init(&sc, "wy-test-offsets");
    char ids[N_MSGS][37];
    produce_n(&sc.loop, sc.brokers, sc.topic, N_MSGS, ids);

    /* First owner: all N arrive; only 0..3 and 6 are done. */
    inbox_t in = {0};
    wy_kafka_consumer_t *c = new_consumer(&sc.loop, sc.brokers, sc.group, sc.topic, &in, 0);
    want_t w = {&in, N_MSGS};
    wt_run_pred(&sc.loop, received_enough, &w, 30000, "first consumer receives all messages");
    int32_t partition = wy_kafka_msg_partition(in.msgs[0]);
    for (int i = 0; i < N_MSGS; i++) {
        assert_string_equal(in.ids[i], ids[i]);
        assert_int_equal(in.offsets[i], i);
        assert_int_equal(wy_kafka_msg_partition(in.msgs[i]), partition);
        assert_string_equal(wy_kafka_msg_topic(in.msgs[i]), sc.topic);
    }
    wy_kafka_consumer_stats_t st;
    wy_kafka_consumer_stats(c, &st);
    assert_int_equal(st.consumed, N_MSGS);
    assert_int_equal(st.in_flight, N_MSGS);
    assert_int_equal(st.bad, 0);
    wy_kafka_msg_done(in.msgs[6]); /* out of order: must not let 4 and 5 be skipped */
    for (int i = 0; i < 4; i++)
        wy_kafka_msg_done(in.msgs[i]);
    wy_kafka_consumer_stats(c, &st);
    assert_int_equal(st.in_flight, N_MSGS - 4); /* 6 is done but waits behind 4 and 5 */
    assert_true(wy_kafka_consumer_healthy(c));
    wy_kafka_consumer_close(c, 10000);
    /* Handles not done stay valid after close; done/release then only frees. */
    wy_kafka_msg_done(in.msgs[4]);
    for (int i = 5; i < N_MSGS; i++)
        if (i != 6)
            wy_kafka_msg_release(in.msgs[i]);
    uv_run(&sc.loop, UV_RUN_NOWAIT);
    assert_int_equal(committed_offset(sc.brokers, sc.group, sc.topic, partition), 4);

    /* Next owner of the group starts at the first message not done. */
    inbox_t in2 = {.done_in_handler = true};
    c = new_consumer(&sc.loop, sc.brokers, sc.group, sc.topic, &in2, 0);
    w = (want_t){&in2, N_MSGS - 4};
    wt_run_pred(&sc.loop, received_enough, &w, 30000, "second consumer receives the rest");
    for (int i = 0; i < N_MSGS - 4; i++) {
        assert_int_equal(in2.offsets[i], 4 + i);
        assert_string_equal(in2.ids[i], ids[4 + i]);
    }
    wy_kafka_consumer_stats(c, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.done, N_MSGS - 4);
    wy_kafka_consumer_close(c, 10000);
    wt_loop_finish(&sc.loop);
    assert_int_equal(committed_offset(sc.brokers, sc.group, sc.topic, partition), N_MSGS);
}

static void test_bad_record_is_skipped(void **state)
{
    (void)state;
    scene_t sc;
    scene_init(&sc, "wy-test-bad");
    produce_raw(sc.brokers, sc.topic, "k1", "this is not an envelope");
    char ids[3][37];
    produce_n(&sc.loop, sc.brokers, sc.topic, 3, ids);

    inbox_t in = {.done_in_handler = true};
    wy_kafka_consumer_t *c = new_consumer(&sc.loop, sc.brokers, sc.group, sc.topic, &in, 0);
    want_t w = {&in, 3};
    wt_run_pred(&sc.loop, received_enough, &w, 30000, "valid messages after a bad one");
    for (int i = 0; i < 3; i++) {
        assert_string_equal(in.ids[i], ids[i]);
        assert_int_equal(in.offsets[i], i + 1);
    }
    wy_kafka_consumer_stats_t st;
    wy_kafka_consumer_stats(c, &st);
    assert_int_equal(st.bad, 1);
    assert_int_equal(st.consumed, 3);
    assert_int_equal(st.in_flight, 0);
    wy_kafka_consumer_close(c, 10000);
    wt_loop_finish(&sc.loop);
    /* The bad record's offset was stored too: the partition is not stuck. */
    assert_int_equal(committed_offset(sc.brokers, sc.group, sc.topic, in.partitions[0]), 4);
}

typedef struct {
    inbox_t *in;
    bool saw_pause;
} pause_ctx_t;

/* Holds messages until the consumer pauses, then finishes every one. */
static bool drain_when_paused(void *ctx)
{
    pause_ctx_t *pc = ctx;
    wy_kafka_consumer_stats_t st;
    wy_kafka_consumer_stats(pc->in->c, &st);
    if (st.paused)
        pc->saw_pause = true;
    if (pc->saw_pause) {
        for (int i = 0; i < pc->in->received; i++) {
            if (pc->in->msgs[i]) {
                wy_kafka_msg_done(pc->in->msgs[i]);
                pc->in->msgs[i] = NULL;
            }
        }
    }
    wy_kafka_consumer_stats(pc->in->c, &st);
    return pc->in->received >= N_MSGS && st.in_flight == 0;
}

static void test_in_flight_bound_pauses(void **state)
{
    (void)state;
    scene_t sc;
    scene_init(&sc, "wy-test-pause");
    char ids[N_MSGS][37];
    produce_n(&sc.loop, sc.brokers, sc.topic, N_MSGS, ids);

    inbox_t in = {0};
    wy_kafka_consumer_t *c = new_consumer(&sc.loop, sc.brokers, sc.group, sc.topic, &in, 3);
    pause_ctx_t pc = {&in, false};
    wt_run_pred(&sc.loop, drain_when_paused, &pc, 60000, "all messages through a paused consumer");
    assert_true(pc.saw_pause);
    wy_kafka_consumer_stats_t st;
    wy_kafka_consumer_stats(c, &st);
    assert_false(st.paused);
    for (int i = 0; i < N_MSGS; i++)
        assert_string_equal(in.ids[i], ids[i]);
    wy_kafka_consumer_close(c, 10000);
    wt_loop_finish(&sc.loop);
}

/* What on_rebalance reported. */
typedef struct {
    inbox_t in;
    int assigned, revoked;
    size_t nparts;
    int64_t offsets[8]; /* by partition, of the last ASSIGNED */
    char topic[64];
} rebal_t;

static void record_rebalance(void *udata, wy_kafka_rebalance_t kind,
                             const wy_kafka_partition_t *parts, size_t n)
{
    rebal_t *r = udata;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(parts[i].topic, r->topic);
        assert_true(parts[i].partition >= 0 && parts[i].partition < 8);
        if (kind == WY_KAFKA_ASSIGNED)
            r->offsets[parts[i].partition] = parts[i].offset;
    }
    if (kind == WY_KAFKA_ASSIGNED) {
        r->assigned++;
        r->nparts = n;
    } else {
        assert_int_equal(kind, WY_KAFKA_REVOKED);
        assert_int_equal(n, r->nparts);
        r->revoked++;
    }
}

static void collect_rebal(void *udata, const Wyvern__Envelope *env, wy_kafka_msg_t *msg)
{
    collect(&((rebal_t *)udata)->in, env, msg);
}

static bool assigned_once(void *ctx)
{
    return ((rebal_t *)ctx)->assigned > 0;
}

/* position_on_assign: a new group starts at the end of each partition, explicitly, even with
 * auto.offset.reset=earliest; the assignment and the revoke at close reach on_rebalance. */
static void test_rebalance_reported_and_positioned(void **state)
{
    (void)state;
    scene_t sc;
    scene_init(&sc, "wy-test-rebal");
    char old[3][37], fresh[2][37];
    produce_n(&sc.loop, sc.brokers, sc.topic, 3, old);

    rebal_t r = {.in = {.done_in_handler = true}};
    snprintf(r.topic, sizeof r.topic, "%s", sc.topic);
    for (int i = 0; i < 8; i++)
        r.offsets[i] = -2;
    const char *topics[] = {sc.topic, NULL};
    wy_kafka_consumer_opts_t o = {.brokers = sc.brokers,
                                  .group_id = sc.group,
                                  .topics = topics,
                                  .handler = collect_rebal,
                                  .on_rebalance = record_rebalance,
                                  .position_on_assign = true,
                                  .udata = &r,
                                  .session_timeout_ms = 6000};
    wy_kafka_consumer_t *c;
    const char *err = NULL;
    if (wy_kafka_consumer_new(&sc.loop, &o, &c, &err) != WY_OK)
        fail_msg("consumer: %s", err);
    wt_run_pred(&sc.loop, assigned_once, &r, 30000, "partitions assigned");
    assert_true(r.nparts >= 1);
    /* The three old messages sit in one partition: it starts at 3, the others at 0. */
    int64_t total = 0;
    for (size_t i = 0; i < r.nparts; i++) {
        assert_true(r.offsets[i] == 0 || r.offsets[i] == 3);
        total += r.offsets[i];
    }
    assert_int_equal(total, 3);
    wy_kafka_consumer_stats_t st;
    wy_kafka_consumer_stats(c, &st);
    assert_int_equal(st.assignments, 1);
    assert_int_equal(st.partitions, r.nparts);

    /* Produced after ASSIGNED: delivered, and only these two. */
    produce_n(&sc.loop, sc.brokers, sc.topic, 2, fresh);
    want_t w = {&r.in, 2};
    wt_run_pred(&sc.loop, received_enough, &w, 30000, "messages produced after the assignment");
    assert_string_equal(r.in.ids[0], fresh[0]);
    assert_string_equal(r.in.ids[1], fresh[1]);
    assert_int_equal(r.in.offsets[0], 3);
    wy_kafka_consumer_close(c, 10000);
    assert_int_equal(r.revoked, 1);
    wt_loop_finish(&sc.loop);
    assert_int_equal(r.in.received, 2);
}

int main(void)
{
    wy_log_init("test", getenv("WY_TEST_DEBUG") ? WY_LOG_DEBUG : WY_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_roundtrip),
        cmocka_unit_test(test_envelope_rejects_bad_records),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_bad_config_errors),
        cmocka_unit_test(test_queue_bound_and_cancel_on_close),
        cmocka_unit_test(test_delivery_timeout),
        cmocka_unit_test(test_offsets_stored_only_when_done),
        cmocka_unit_test(test_bad_record_is_skipped),
        cmocka_unit_test(test_in_flight_bound_pauses),
        cmocka_unit_test(test_rebalance_reported_and_positioned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
