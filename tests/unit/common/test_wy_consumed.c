/* Unit tests of wy_consumed against a real PostgreSQL (WY_PG_URL): a claim in a transaction says
 * "first" once per (consumer, event_id) among committed transactions, a concurrent claim waits for
 * the first and learns "already applied", and the retention sweep deletes old rows in batches.
 * Each test works in a fresh schema made by tests/tools/kafkatest-migrations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "wy_consumed.h"
#include "wy_log.h"
#include "wy_metrics.h"
#include "wy_pg.h"

#include "wy_test.h"

#define MIGRATIONS "tests/tools/kafkatest-migrations"

typedef struct {
    wt_loop_t lp;
    wy_pg_t *pg;
    wy_consumed_t *c;
    char schema[64];
} fx_t;

/* setup: SQL run before the helper starts, every %s replaced by the schema (may be NULL). */
static void fx_init(fx_t *f, const wy_consumed_opts_t *extra, const char *setup)
{
    memset(f, 0, sizeof *f);
    wt_pg_schema(f->schema, sizeof f->schema, "wyc", MIGRATIONS);
    if (setup) {
        char sql[1024];
        snprintf(sql, sizeof sql, setup, f->schema, f->schema, f->schema);
        wt_pg(sql, NULL, 0);
    }
    wt_loop_init(&f->lp, 30000);
    const char *err = NULL;
    assert_int_equal(wy_pg_create(&f->lp.loop, getenv("WY_PG_URL"), NULL, &f->pg, &err), WY_OK);
    wy_consumed_opts_t o = extra ? *extra : (wy_consumed_opts_t){0};
    o.svc = "test";
    o.schema = f->schema;
    o.consumer = o.consumer ? o.consumer : "test.events";
    assert_int_equal(wy_consumed_new(&f->lp.loop, f->pg, &o, &f->c, &err), WY_OK);
}

static void fx_done(fx_t *f)
{
    wy_consumed_close(f->c);
    WT_CLOSE_AND_DONE(&f->lp, wy_pg_close, f->pg);
    wt_pg_drop_schema(f->schema);
    wy_metrics_reset();
}

/* One transaction that claims an event, then commits or rolls back. */
typedef struct {
    fx_t *f;
    const char *event_id;
    bool commit;
    wy_pg_tx_t *tx;
    int claim_status;
    bool first;
    bool claimed, ended;
} tx_t;

static void on_end(int status, const char *err, void *ud)
{
    (void)err;
    tx_t *t = ud;
    assert_int_equal(status, WY_OK);
    t->ended = true;
}

static void on_claim(int status, bool first, const char *err, void *ud)
{
    (void)err;
    tx_t *t = ud;
    t->claim_status = status;
    t->first = first;
    t->claimed = true;
}

static void on_begin(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    tx_t *t = ud;
    if (status != WY_OK)
        fail_msg("begin: %s", err);
    t->tx = tx;
    assert_int_equal(wy_consumed_claim(t->f->c, tx, t->event_id, on_claim, t), WY_OK);
}

static void tx_start(fx_t *f, tx_t *t, const char *event_id)
{
    memset(t, 0, sizeof *t);
    t->f = f;
    t->event_id = event_id;
    assert_int_equal(wy_pg_begin(f->pg, on_begin, t), WY_OK);
}

static void tx_end(tx_t *t, bool commit)
{
    assert_int_equal(
        commit ? wy_pg_tx_commit(t->tx, on_end, t) : wy_pg_tx_rollback(t->tx, on_end, t), WY_OK);
}

/* Claims event_id in its own transaction, ends it, returns "first". */
static bool claim_once(fx_t *f, const char *event_id, bool commit)
{
    tx_t t;
    tx_start(f, &t, event_id);
    WT_RUN_UNTIL(&f->lp, t.claimed);
    assert_int_equal(t.claim_status, WY_OK);
    tx_end(&t, commit);
    WT_RUN_UNTIL(&f->lp, t.ended);
    return t.first;
}

static void test_options_are_checked(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    wy_consumed_t *c = NULL;
    const char *err = NULL;
    wy_consumed_opts_t o = {.svc = "test", .schema = "bad-schema", .consumer = "x"};
    assert_int_equal(wy_consumed_new(&loop, NULL, &o, &c, &err), WY_EINVAL);
    assert_non_null(strstr(err, "schema"));
    o = (wy_consumed_opts_t){.svc = "test", .schema = "ok", .consumer = "has \"quote"};
    assert_int_equal(wy_consumed_new(&loop, NULL, &o, &c, &err), WY_EINVAL);
    assert_non_null(strstr(err, "consumer"));
    o = (wy_consumed_opts_t){.schema = "ok", .consumer = "x"};
    assert_int_equal(wy_consumed_new(&loop, NULL, &o, &c, &err), WY_EINVAL);
    assert_null(c);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_claim_is_first_once_per_committed_event(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL, NULL);
    assert_true(claim_once(&f, "ev-1", true));
    assert_false(claim_once(&f, "ev-1", true)); /* redelivered: already applied */
    /* A rolled-back claim leaves nothing: the next one is first again. */
    assert_true(claim_once(&f, "ev-2", false));
    assert_true(claim_once(&f, "ev-2", true));
    wy_consumed_stats_t st;
    wy_consumed_stats(f.c, &st);
    assert_int_equal(st.claimed, 3);
    assert_int_equal(st.duplicates, 1);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s.wy_consumed", f.schema);
    assert_int_equal(wt_pg_int(sql), 2);
    fx_done(&f);
}

static void test_another_consumer_name_is_independent(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL, NULL);
    assert_true(claim_once(&f, "ev-x", true));
    /* Same schema, another consumer: its own records. */
    wy_consumed_t *first = f.c;
    wy_consumed_opts_t o = {.svc = "test", .schema = f.schema, .consumer = "other.events"};
    const char *err = NULL;
    assert_int_equal(wy_consumed_new(&f.lp.loop, f.pg, &o, &f.c, &err), WY_OK);
    assert_true(claim_once(&f, "ev-x", true));
    assert_false(claim_once(&f, "ev-x", true));
    wy_consumed_close(first);
    fx_done(&f);
}

static void test_concurrent_claim_waits_and_sees_it_applied(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL, NULL);
    tx_t a, b;
    tx_start(&f, &a, "ev-race");
    WT_RUN_UNTIL(&f.lp, a.claimed);
    assert_true(a.first);
    /* b's INSERT waits on a's uncommitted row and learns "already applied" once a commits. */
    tx_start(&f, &b, "ev-race");
    WT_RUN_UNTIL(&f.lp, b.tx != NULL);
    tx_end(&a, true);
    WT_RUN_UNTIL(&f.lp, a.ended && b.claimed);
    assert_int_equal(b.claim_status, WY_OK);
    assert_false(b.first);
    tx_end(&b, false);
    WT_RUN_UNTIL(&f.lp, b.ended);
    fx_done(&f);
}

static bool swept(fx_t *f, uint64_t n)
{
    wy_consumed_stats_t st;
    wy_consumed_stats(f->c, &st);
    return st.swept >= n;
}

static void test_sweep_deletes_old_rows_in_batches(void **state)
{
    (void)state;
    /* 5 rows two days old, 1 fresh one, 1 old one of another consumer; the sweep at start
     * deletes the 5 in batches of 2, 2, 1 and stops at the batch that is not full. */
    wy_consumed_opts_t o = {.retention_s = 3600, .sweep_batch = 2, .sweep_interval_ms = 3600000};
    fx_t f;
    fx_init(&f, &o,
            "INSERT INTO %s.wy_consumed (consumer, event_id, applied_at) "
            "SELECT 'test.events', 'old-' || i, now() - interval '2 days' "
            "FROM generate_series(1, 5) AS i; "
            "INSERT INTO %s.wy_consumed (consumer, event_id) VALUES ('test.events', 'fresh'); "
            "INSERT INTO %s.wy_consumed (consumer, event_id, applied_at) "
            "VALUES ('other', 'old', now() - interval '2 days')");
    WT_RUN_UNTIL(&f.lp, swept(&f, 5));
    char sql[256], left[128];
    snprintf(sql, sizeof sql,
             "SELECT string_agg(consumer || ':' || event_id, ',' ORDER BY event_id) "
             "FROM %s.wy_consumed",
             f.schema);
    assert_string_equal(wt_pg(sql, left, sizeof left), "test.events:fresh,other:old");
    /* A claim within the interval starts no new sweep. */
    assert_true(claim_once(&f, "ev-new", true));
    wy_consumed_stats_t st;
    wy_consumed_stats(f.c, &st);
    assert_int_equal(st.swept, 5);
    fx_done(&f);
}

int main(void)
{
    wy_log_init("test", getenv("WY_TEST_DEBUG") ? WY_LOG_DEBUG : WY_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_are_checked),
        cmocka_unit_test(test_claim_is_first_once_per_committed_event),
        cmocka_unit_test(test_another_consumer_name_is_independent),
        cmocka_unit_test(test_concurrent_claim_waits_and_sees_it_applied),
        cmocka_unit_test(test_sweep_deletes_old_rows_in_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
