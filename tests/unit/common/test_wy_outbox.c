/* Unit tests of wy_outbox against a real PostgreSQL (WY_PG_URL) and Kafka broker
 * (WY_KAFKA_BROKERS): rows written in a transaction are published after commit with their
 * event_id, type, key and payload, in order, then deleted; a rolled-back row is never published;
 * rows left by a crashed process are published at start; a pass is skipped while another
 * instance holds the relay lock. Each test has a fresh schema (tests/tools/kafkatest-migrations)
 * and topic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "wy_kafka.h"
#include "wy_log.h"
#include "wy_metrics.h"
#include "wy_outbox.h"
#include "wy_pg.h"

#include "wy_test.h"

#define MIGRATIONS "tests/tools/kafkatest-migrations"
#define MAX_SEEN   16

typedef struct {
    wt_loop_t lp;
    wy_pg_t *pg;
    wy_kafka_producer_t *producer;
    wy_outbox_t *ob;
    char schema[64], topic[80];
    /* what a consumer of the topic received */
    wy_kafka_consumer_t *consumer;
    int seen;
    char ids[MAX_SEEN][WY_KAFKA_MAX_ID + 1], types[MAX_SEEN][32], keys[MAX_SEEN][32];
    uint8_t payloads[MAX_SEEN][8];
    size_t payload_lens[MAX_SEEN];
} fx_t;

static const char *brokers(void)
{
    return wt_env("WY_KAFKA_BROKERS", "Kafka broker", "127.0.0.1:PORT");
}

static void on_message(void *udata, const Wyvern__Envelope *env, wy_kafka_msg_t *msg)
{
    fx_t *f = udata;
    assert_true(f->seen < MAX_SEEN);
    int i = f->seen++;
    snprintf(f->ids[i], sizeof f->ids[i], "%s", env->event_id);
    snprintf(f->types[i], sizeof f->types[i], "%s", env->type);
    snprintf(f->keys[i], sizeof f->keys[i], "%s", env->key);
    assert_true(env->payload.len <= sizeof f->payloads[i]);
    memcpy(f->payloads[i], env->payload.data, env->payload.len);
    f->payload_lens[i] = env->payload.len;
    wy_kafka_msg_done(msg);
}

/* setup: SQL run before the outbox starts, %s = schema, %s = topic (may be NULL). */
static void fx_init(fx_t *f, uint32_t poll_ms, const char *setup)
{
    memset(f, 0, sizeof *f);
    wt_pg_schema(f->schema, sizeof f->schema, "wyo", MIGRATIONS);
    char id[37];
    wy_uuid4(id);
    snprintf(f->topic, sizeof f->topic, "wy-test-outbox-%s", id);
    if (setup) {
        char sql[1024];
        snprintf(sql, sizeof sql, setup, f->schema, f->topic);
        wt_pg(sql, NULL, 0);
    }
    wt_loop_init(&f->lp, 60000);
    const char *err = NULL;
    assert_int_equal(wy_pg_create(&f->lp.loop, getenv("WY_PG_URL"), NULL, &f->pg, &err), WY_OK);
    wy_kafka_producer_opts_t po = {.brokers = brokers(), .producer = "test/outbox"};
    assert_int_equal(wy_kafka_producer_new(&f->lp.loop, &po, &f->producer, &err), WY_OK);
    wy_outbox_opts_t oo = {.svc = "test", .schema = f->schema, .poll_interval_ms = poll_ms};
    assert_int_equal(wy_outbox_new(&f->lp.loop, f->pg, f->producer, &oo, &f->ob, &err), WY_OK);
}

static void consume(fx_t *f, int want)
{
    if (!f->consumer) {
        const char *topics[] = {f->topic, NULL};
        char group[64], id[37];
        wy_uuid4(id);
        snprintf(group, sizeof group, "wy-test-%s", id);
        wy_kafka_consumer_opts_t co = {.brokers = brokers(),
                                       .group_id = group,
                                       .topics = topics,
                                       .handler = on_message,
                                       .udata = f,
                                       .session_timeout_ms = 6000};
        const char *err = NULL;
        assert_int_equal(wy_kafka_consumer_new(&f->lp.loop, &co, &f->consumer, &err), WY_OK);
    }
    WT_RUN_UNTIL(&f->lp, f->seen >= want);
}

static void on_closed(void *ud)
{
    *(bool *)ud = true;
}

static void fx_done(fx_t *f)
{
    bool closed = false;
    wy_outbox_close(f->ob, on_closed, &closed);
    WT_RUN_UNTIL(&f->lp, closed);
    if (f->consumer)
        wy_kafka_consumer_close(f->consumer, 5000);
    wy_kafka_producer_close(f->producer, 5000);
    WT_CLOSE_AND_DONE(&f->lp, wy_pg_close, f->pg);
    wt_pg_drop_schema(f->schema);
    wy_metrics_reset();
}

static long long rows(fx_t *f)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s.wy_outbox", f->schema);
    return wt_pg_int(sql);
}

static bool relayed(fx_t *f, uint64_t n)
{
    wy_outbox_stats_t st;
    wy_outbox_stats(f->ob, &st);
    return st.relayed >= n;
}

/* One transaction writing events, ended by wy_outbox_commit or a rollback. */
typedef struct {
    fx_t *f;
    int n;
    bool commit;
    char ids[4][37];
    int status;
    bool ended;
} write_t;

static void on_end(int status, const char *err, void *ud)
{
    (void)err;
    write_t *w = ud;
    w->status = status;
    w->ended = true;
}

static const uint8_t payload[3][4] = {{0, 1, 2, 3}, {0xff, 0, 0x80, 0x7f}, {'a', 0, 'b', 0}};

static void on_begin(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    write_t *w = ud;
    if (status != WY_OK)
        fail_msg("begin: %s", err);
    for (int i = 0; i < w->n; i++) {
        char type[24];
        snprintf(type, sizeof type, "test.e%d", i);
        assert_int_equal(wy_outbox_add(w->f->ob, tx, w->f->topic, "k1", type, payload[i % 3],
                                       sizeof payload[0], w->ids[i]),
                         WY_OK);
    }
    if (w->commit)
        assert_int_equal(wy_outbox_commit(w->f->ob, tx, on_end, w), WY_OK);
    else
        assert_int_equal(wy_pg_tx_rollback(tx, on_end, w), WY_OK);
}

static void write_events(fx_t *f, write_t *w, int n, bool commit)
{
    memset(w, 0, sizeof *w);
    w->f = f;
    w->n = n;
    w->commit = commit;
    assert_int_equal(wy_pg_begin(f->pg, on_begin, w), WY_OK);
    WT_RUN_UNTIL(&f->lp, w->ended);
    assert_int_equal(w->status, WY_OK);
}

static void test_add_checks_its_arguments(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 0, NULL);
    /* Checked before any statement: no transaction is needed to see them refused. */
    char big_type[WY_KAFKA_MAX_ID + 2];
    memset(big_type, 't', sizeof big_type - 1);
    big_type[sizeof big_type - 1] = '\0';
    assert_int_equal(wy_outbox_add(f.ob, NULL, "", "k", "t", NULL, 0, NULL), WY_EINVAL);
    assert_int_equal(wy_outbox_add(f.ob, NULL, "t", "k", "", NULL, 0, NULL), WY_EINVAL);
    assert_int_equal(wy_outbox_add(f.ob, NULL, "t", "k", big_type, NULL, 0, NULL), WY_EINVAL);
    assert_int_equal(wy_outbox_add(f.ob, NULL, "t", "k", "t", NULL, 3, NULL), WY_EINVAL);
    assert_int_equal(wy_outbox_add(f.ob, NULL, "t", "k", "t", "x", WY_KAFKA_MAX_ENVELOPE + 1, NULL),
                     WY_ETOOBIG);
    const char *err = NULL;
    wy_outbox_t *ob = NULL;
    wy_outbox_opts_t bad = {.svc = "test", .schema = "no;drop"};
    assert_int_equal(wy_outbox_new(&f.lp.loop, f.pg, f.producer, &bad, &ob, &err), WY_EINVAL);
    assert_null(ob);
    fx_done(&f);
}

static void test_committed_rows_are_published_in_order_then_deleted(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 3600000, NULL); /* no polling: only the commit wakes the relay */
    write_t rolled, w;
    write_events(&f, &rolled, 1, false);
    write_events(&f, &w, 3, true);
    WT_RUN_UNTIL(&f.lp, relayed(&f, 3));
    assert_int_equal(rows(&f), 0);
    consume(&f, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(f.ids[i], w.ids[i]);
        char type[24];
        snprintf(type, sizeof type, "test.e%d", i);
        assert_string_equal(f.types[i], type);
        assert_string_equal(f.keys[i], "k1");
        assert_int_equal(f.payload_lens[i], sizeof payload[0]);
        assert_memory_equal(f.payloads[i], payload[i], sizeof payload[0]);
    }
    wy_outbox_stats_t st;
    wy_outbox_stats(f.ob, &st);
    assert_int_equal(st.added, 4);
    assert_int_equal(st.relayed, 3);
    assert_int_equal(st.failures, 0);
    /* The rolled-back row was never published: nothing after the three. */
    write_t more;
    write_events(&f, &more, 1, true);
    consume(&f, 4);
    assert_string_equal(f.ids[3], more.ids[0]);
    WT_RUN_UNTIL(&f.lp, relayed(&f, 4));
    fx_done(&f);
}

static void test_rows_of_a_crashed_process_are_published_at_start(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 3600000,
            "INSERT INTO %s.wy_outbox (event_id, topic, key, type, payload, ts_ms) "
            "VALUES ('left-by-a-crash', '%s', 'k9', 'test.left', '\\x6869', 1700000000000)");
    WT_RUN_UNTIL(&f.lp, relayed(&f, 1));
    assert_int_equal(rows(&f), 0);
    consume(&f, 1);
    assert_string_equal(f.ids[0], "left-by-a-crash");
    assert_string_equal(f.types[0], "test.left");
    assert_string_equal(f.keys[0], "k9");
    assert_int_equal(f.payload_lens[0], 2);
    assert_memory_equal(f.payloads[0], "hi", 2);
    fx_done(&f);
}

/* Another instance's relay pass: a transaction holding the relay lock of the schema. */
static void test_pass_skipped_while_another_relay_holds_the_lock(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 50, NULL);
    PGconn *other = PQconnectdb(getenv("WY_PG_URL"));
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "BEGIN; SELECT pg_advisory_xact_lock(hashtext('%s.wy_outbox'))",
             f.schema);
    PQclear(PQexec(other, sql));
    write_t w;
    write_events(&f, &w, 1, true);
    /* Several polls go by: each pass finds the lock taken and publishes nothing. */
    uint64_t until = uv_now(&f.lp.loop) + 400;
    WT_RUN_UNTIL(&f.lp, uv_now(&f.lp.loop) >= until);
    assert_false(relayed(&f, 1));
    assert_int_equal(rows(&f), 1);
    PQclear(PQexec(other, "COMMIT"));
    PQfinish(other);
    WT_RUN_UNTIL(&f.lp, relayed(&f, 1));
    consume(&f, 1);
    assert_string_equal(f.ids[0], w.ids[0]);
    fx_done(&f);
}

int main(void)
{
    wy_log_init("test", getenv("WY_TEST_DEBUG") ? WY_LOG_DEBUG : WY_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_checks_its_arguments),
        cmocka_unit_test(test_committed_rows_are_published_in_order_then_deleted),
        cmocka_unit_test(test_rows_of_a_crashed_process_are_published_at_start),
        cmocka_unit_test(test_pass_skipped_while_another_relay_holds_the_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
