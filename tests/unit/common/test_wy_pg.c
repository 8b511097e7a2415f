/* Unit tests of wy_pg (pool, transactions, migrations) against a real PostgreSQL named by
 * WY_PG_URL (postgresql://postgres@127.0.0.1:PORT/postgres). Each run works in its own schemas and
 * drops them at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <signal.h>

#include <cmocka.h>

#include "wy_pg.h"

#include "wy_test.h"

static char schema[32];  /* pool tests */
static char mschema[40]; /* migrations, applied once */
static char cschema[40]; /* concurrent migrations */
static char bschema[40]; /* bad migration */

static const char *pg_url(void)
{
    return wt_env("WY_PG_URL", "PostgreSQL", "postgresql://postgres@127.0.0.1:PORT/postgres");
}

/* Blocking helper for setup and checks outside the loop. Returns the first value or "". */
static char *sync_exec(const char *sql, char *out, size_t outlen)
{
    wt_pg(sql, out, outlen);
    return out;
}

typedef struct {
    wt_loop_t lp;
    wy_pg_t *pg;
} fx_t;

#define RUN_UNTIL(f, cond) WT_RUN_UNTIL(&(f)->lp, cond)

static void fx_init(fx_t *f, const char *url, const wy_pg_opts_t *o)
{
    const char *err = NULL;
    memset(f, 0, sizeof *f);
    wt_loop_init(&f->lp, 20000);
    assert_int_equal(wy_pg_create(&f->lp.loop, url, o, &f->pg, &err), WY_OK);
}

static void fx_done(fx_t *f)
{
    WT_CLOSE_AND_DONE(&f->lp, wy_pg_close, f->pg);
}

/* A finished statement: status, SQLSTATE, message, first row's values. */
typedef struct {
    int calls;
    int status;
    char sqlstate[8];
    char err[256];
    int ntuples;
    char v0[128], v1[128];
    bool null1;
} res_t;

static void on_res(int status, const PGresult *res, const char *err, void *ud)
{
    res_t *x = ud;
    x->calls++;
    x->status = status;
    snprintf(x->sqlstate, sizeof x->sqlstate, "%s", wy_pg_sqlstate(res));
    snprintf(x->err, sizeof x->err, "%s", err ? err : "");
    x->ntuples = 0;
    if (status == WY_OK && res && PQresultStatus(res) == PGRES_TUPLES_OK) {
        x->ntuples = PQntuples(res);
        if (x->ntuples > 0) {
            snprintf(x->v0, sizeof x->v0, "%s", PQgetvalue(res, 0, 0));
            if (PQnfields(res) > 1) {
                snprintf(x->v1, sizeof x->v1, "%s", PQgetvalue(res, 0, 1));
                x->null1 = PQgetisnull(res, 0, 1);
            }
        }
    }
}

/* Run one statement on the pool and wait for it. */
static res_t q(fx_t *f, const char *sql, int n, const char *const *params)
{
    res_t x = {0};
    assert_int_equal(wy_pg_query(f->pg, sql, n, params, on_res, &x), WY_OK);
    RUN_UNTIL(f, x.calls == 1);
    return x;
}

static char *sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sqlf(const char *fmt, ...)
{
    static char buf[8][512];
    static int i;
    va_list ap;
    char *b = buf[i++ % 8];
    va_start(ap, fmt);
    vsnprintf(b, sizeof buf[0], fmt, ap);
    va_end(ap);
    return b;
}

static void test_bad_conninfo(void **state)
{
    (void)state;
    uv_loop_t loop;
    wy_pg_t *pg = (void *)1;
    const char *err = NULL;
    uv_loop_init(&loop);
    assert_int_equal(wy_pg_create(&loop, "host=x nosuchkey=1", NULL, &pg, &err), WY_EINVAL);
    assert_null(pg);
    assert_non_null(strstr(err, "nosuchkey"));
    assert_int_equal(wy_pg_create(&loop, "", NULL, &pg, &err), WY_EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_params_and_null(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, pg_url(), NULL);
    res_t x = q(&f, sqlf("CREATE TABLE %s.kv (k text PRIMARY KEY, v text)", schema), 0, NULL);
    assert_int_equal(x.status, WY_OK);
    assert_int_equal(wy_pg_health(f.pg), WY_OK);

    const char *p1[] = {"alpha", "it's \"quoted\""};
    x = q(&f, sqlf("INSERT INTO %s.kv (k, v) VALUES ($1, $2)", schema), 2, p1);
    assert_int_equal(x.status, WY_OK);
    const char *p2[] = {"beta", NULL};
    x = q(&f, sqlf("INSERT INTO %s.kv (k, v) VALUES ($1, $2)", schema), 2, p2);
    assert_int_equal(x.status, WY_OK);

    const char *k1[] = {"alpha"};
    x = q(&f, sqlf("SELECT k, v FROM %s.kv WHERE k = $1", schema), 1, k1);
    assert_int_equal(x.status, WY_OK);
    assert_int_equal(x.ntuples, 1);
    assert_string_equal(x.v1, "it's \"quoted\"");
    assert_false(x.null1);
    const char *k2[] = {"beta"};
    x = q(&f, sqlf("SELECT k, v FROM %s.kv WHERE k = $1", schema), 1, k2);
    assert_int_equal(x.ntuples, 1);
    assert_true(x.null1);
    const char *k3[] = {"gamma"};
    x = q(&f, sqlf("SELECT k, v FROM %s.kv WHERE k = $1", schema), 1, k3);
    assert_int_equal(x.status, WY_OK);
    assert_int_equal(x.ntuples, 0);
    fx_done(&f);
}

static void test_error_mapping(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, pg_url(), NULL);
    res_t x =
        q(&f, sqlf("CREATE TABLE %s.u (k text PRIMARY KEY, n int NOT NULL)", schema), 0, NULL);
    assert_int_equal(x.status, WY_OK);
    const char *p[] = {"dup", "1"};
    x = q(&f, sqlf("INSERT INTO %s.u VALUES ($1, $2)", schema), 2, p);
    assert_int_equal(x.status, WY_OK);
    x = q(&f, sqlf("INSERT INTO %s.u VALUES ($1, $2)", schema), 2, p);
    assert_int_equal(x.status, WY_EEXIST);
    assert_string_equal(x.sqlstate, "23505");
    assert_non_null(strstr(x.err, "duplicate key"));

    const char *pn[] = {"other", NULL};
    x = q(&f, sqlf("INSERT INTO %s.u VALUES ($1, $2)", schema), 2, pn);
    assert_int_equal(x.status, WY_EINVAL);
    assert_string_equal(x.sqlstate, "23502");

    x = q(&f, "SELEC 1", 0, NULL);
    assert_int_equal(x.status, WY_EIO);
    assert_string_equal(x.sqlstate, "42601");
    assert_non_null(strstr(x.err, "syntax error"));

    const char *bad[] = {"notanint"};
    x = q(&f, "SELECT $1::int", 1, bad);
    assert_int_equal(x.status, WY_EIO);
    assert_string_equal(x.sqlstate, "22P02");

    /* errors do not hurt the pool */
    x = q(&f, "SELECT 42", 0, NULL);
    assert_int_equal(x.status, WY_OK);
    assert_string_equal(x.v0, "42");
    fx_done(&f);
}

/* ---- transactions ---- */

typedef struct {
    fx_t *f;
    wy_pg_tx_t *tx;
    int begun, begin_status;
    int ended, end_status;
    char err[256];
} txs_t;

static void on_begin(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    txs_t *t = ud;
    t->begun++;
    t->begin_status = status;
    t->tx = tx;
    if (err)
        snprintf(t->err, sizeof t->err, "%s", err);
}

static void on_end(int status, const char *err, void *ud)
{
    txs_t *t = ud;
    t->ended++;
    t->end_status = status;
    snprintf(t->err, sizeof t->err, "%s", err ? err : "");
}

static res_t txq(fx_t *f, wy_pg_tx_t *tx, const char *sql, int n, const char *const *params)
{
    res_t x = {0};
    assert_int_equal(wy_pg_tx_query(tx, sql, n, params, on_res, &x), WY_OK);
    RUN_UNTIL(f, x.calls == 1);
    return x;
}

static void begin(fx_t *f, txs_t *t)
{
    memset(t, 0, sizeof *t);
    t->f = f;
    assert_int_equal(wy_pg_begin(f->pg, on_begin, t), WY_OK);
    RUN_UNTIL(f, t->begun == 1);
    assert_int_equal(t->begin_status, WY_OK);
    assert_non_null(t->tx);
}

static int count_rows(fx_t *f, const char *k)
{
    const char *p[] = {k};
    res_t x = q(f, sqlf("SELECT count(*) FROM %s.t WHERE k = $1", schema), 1, p);
    assert_int_equal(x.status, WY_OK);
    return atoi(x.v0);
}

static void test_transactions(void **state)
{
    (void)state;
    fx_t f;
    txs_t t;
    res_t x, pending = {0};
    fx_init(&f, pg_url(), NULL);

    /* commit: visible afterwards */
    begin(&f, &t);
    const char *a[] = {"committed"};
    x = txq(&f, t.tx, sqlf("INSERT INTO %s.t VALUES ($1)", schema), 1, a);
    assert_int_equal(x.status, WY_OK);
    assert_int_equal(count_rows(&f, "committed"), 0); /* not visible to other connections yet */
    assert_int_equal(wy_pg_tx_commit(t.tx, on_end, &t), WY_OK);
    assert_int_equal(wy_pg_tx_query(t.tx, "SELECT 1", 0, NULL, on_res, &pending), WY_ESTATE);
    assert_int_equal(wy_pg_tx_rollback(t.tx, on_end, &t), WY_ESTATE);
    RUN_UNTIL(&f, t.ended == 1);
    assert_int_equal(t.end_status, WY_OK);
    assert_int_equal(count_rows(&f, "committed"), 1);

    /* rollback: invisible */
    begin(&f, &t);
    const char *b[] = {"rolledback"};
    x = txq(&f, t.tx, sqlf("INSERT INTO %s.t VALUES ($1)", schema), 1, b);
    assert_int_equal(x.status, WY_OK);
    assert_int_equal(wy_pg_tx_rollback(t.tx, on_end, &t), WY_OK);
    RUN_UNTIL(&f, t.ended == 1);
    assert_int_equal(t.end_status, WY_OK);
    assert_int_equal(count_rows(&f, "rolledback"), 0);

    /* a failed statement poisons the transaction: commit reports the rollback */
    begin(&f, &t);
    const char *c[] = {"poisoned"};
    x = txq(&f, t.tx, sqlf("INSERT INTO %s.t VALUES ($1)", schema), 1, c);
    assert_int_equal(x.status, WY_OK);
    x = txq(&f, t.tx, sqlf("INSERT INTO %s.t VALUES ($1)", schema), 1, a);
    assert_int_equal(x.status, WY_EEXIST);
    assert_int_equal(wy_pg_tx_commit(t.tx, on_end, &t), WY_OK);
    RUN_UNTIL(&f, t.ended == 1);
    assert_int_equal(t.end_status, WY_ESTATE);
    assert_int_equal(count_rows(&f, "poisoned"), 0);

    /* statements queued on a transaction run in order, commit after them */
    begin(&f, &t);
    res_t r1 = {0}, r2 = {0};
    const char *d1[] = {"q1"}, *d2[] = {"q2"};
    assert_int_equal(
        wy_pg_tx_query(t.tx, sqlf("INSERT INTO %s.t VALUES ($1)", schema), 1, d1, on_res, &r1),
        WY_OK);
    assert_int_equal(
        wy_pg_tx_query(t.tx, sqlf("INSERT INTO %s.t VALUES ($1)", schema), 1, d2, on_res, &r2),
        WY_OK);
    assert_int_equal(wy_pg_tx_commit(t.tx, on_end, &t), WY_OK);
    RUN_UNTIL(&f, t.ended == 1);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r1.status, WY_OK);
    assert_int_equal(r2.status, WY_OK);
    assert_int_equal(t.end_status, WY_OK);
    assert_int_equal(count_rows(&f, "q1") + count_rows(&f, "q2"), 2);
    fx_done(&f);
}

static void test_tx_timeout_rolls_back(void **state)
{
    (void)state;
    fx_t f;
    txs_t t;
    res_t x, after = {0};
    wy_pg_opts_t o = {.tx_timeout_ms = 1000, .query_timeout_ms = 5000};
    fx_init(&f, pg_url(), &o);
    begin(&f, &t);
    const char *a[] = {"forgotten"};
    x = txq(&f, t.tx, sqlf("INSERT INTO %s.t VALUES ($1)", schema), 1, a);
    assert_int_equal(x.status, WY_OK);
    /* the owner keeps the transaction past tx_timeout_ms */
    x = txq(&f, t.tx, "SELECT pg_sleep(3)", 0, NULL);
    assert_int_equal(x.status, WY_ETIMEDOUT);
    assert_int_equal(wy_pg_tx_query(t.tx, "SELECT 1", 0, NULL, on_res, &after), WY_ESTATE);
    assert_int_equal(wy_pg_tx_commit(t.tx, on_end, &t), WY_OK);
    RUN_UNTIL(&f, t.ended == 1);
    assert_int_equal(t.end_status, WY_ESTATE);
    assert_int_equal(count_rows(&f, "forgotten"), 0);
    assert_int_equal(after.calls, 0);
    fx_done(&f);
}

/* ---- pool behaviour ---- */

typedef struct {
    int done, ok, wrong;
    char pids[8][16];
    int npids;
} many_t;

typedef struct {
    many_t *m;
    int i;
} one_t;

static void on_many(int status, const PGresult *res, const char *err, void *ud)
{
    one_t *o = ud;
    many_t *m = o->m;
    (void)err;
    m->done++;
    if (status != WY_OK)
        return;
    m->ok++;
    if (atoi(PQgetvalue(res, 0, 0)) != o->i)
        m->wrong++;
    const char *pid = PQgetvalue(res, 0, 1);
    for (int k = 0; k < m->npids; k++)
        if (strcmp(m->pids[k], pid) == 0)
            return;
    if (m->npids < 8)
        snprintf(m->pids[m->npids], sizeof m->pids[0], "%s", pid);
    m->npids++;
}

static void test_pool_concurrency(void **state)
{
    (void)state;
    fx_t f;
    many_t m = {0};
    enum { N = 100 };
    one_t ones[N];
    char num[N][12];
    wy_pg_opts_t o = {.size = 4};
    fx_init(&f, pg_url(), &o);
    for (int i = 0; i < N; i++) {
        ones[i] = (one_t){&m, i};
        snprintf(num[i], sizeof num[i], "%d", i);
        const char *p[] = {num[i]};
        assert_int_equal(wy_pg_query(f.pg, "SELECT $1::int, pg_backend_pid(), pg_sleep(0.005)", 1,
                                     p, on_many, &ones[i]),
                         WY_OK);
    }
    RUN_UNTIL(&f, m.done == N);
    assert_int_equal(m.ok, N);
    assert_int_equal(m.wrong, 0);
    assert_true(m.npids >= 2); /* the work was spread */
    assert_true(m.npids <= 4); /* over at most the pool size */
    fx_done(&f);
}

static void test_queue_bound(void **state)
{
    (void)state;
    fx_t f;
    res_t warm, slow = {0}, a = {0}, b = {0}, c = {0};
    wy_pg_opts_t o = {.size = 1, .max_queue = 2};
    fx_init(&f, pg_url(), &o);
    warm = q(&f, "SELECT 1", 0, NULL); /* the only connection is up and idle */
    assert_int_equal(warm.status, WY_OK);
    assert_int_equal(wy_pg_query(f.pg, "SELECT pg_sleep(0.2)", 0, NULL, on_res, &slow), WY_OK);
    assert_int_equal(wy_pg_query(f.pg, "SELECT 1", 0, NULL, on_res, &a), WY_OK);
    assert_int_equal(wy_pg_query(f.pg, "SELECT 2", 0, NULL, on_res, &b), WY_OK);
    assert_int_equal(wy_pg_query(f.pg, "SELECT 3", 0, NULL, on_res, &c), WY_EBUSY);
    RUN_UNTIL(&f, b.calls == 1);
    assert_int_equal(slow.status, WY_OK);
    assert_int_equal(a.status, WY_OK);
    assert_string_equal(b.v0, "2");
    assert_int_equal(c.calls, 0);
    fx_done(&f);
}

static void test_query_timeout(void **state)
{
    (void)state;
    fx_t f;
    res_t slow = {0}, queued = {0}, after;
    wy_pg_opts_t o = {.size = 1};
    fx_init(&f, pg_url(), &o);
    assert_int_equal(wy_pg_query_timeout(f.pg, 200, "SELECT pg_sleep(10)", 0, NULL, on_res, &slow),
                     WY_OK);
    /* waits behind the sleeper with a shorter timeout: expires in the queue */
    assert_int_equal(wy_pg_query_timeout(f.pg, 100, "SELECT 1", 0, NULL, on_res, &queued), WY_OK);
    RUN_UNTIL(&f, queued.calls == 1);
    assert_int_equal(queued.status, WY_ETIMEDOUT);
    assert_int_equal(slow.calls, 0);
    RUN_UNTIL(&f, slow.calls == 1);
    assert_int_equal(slow.status, WY_ETIMEDOUT);
    after = q(&f, "SELECT 'again'", 0, NULL); /* on a fresh connection */
    assert_int_equal(after.status, WY_OK);
    assert_string_equal(after.v0, "again");
    assert_int_equal(slow.calls, 1);
    fx_done(&f);
}

static void test_unreachable(void **state)
{
    (void)state;
    fx_t f;
    res_t x = {0}, y = {0};
    char url[128];
    wy_pg_opts_t o = {.size = 2, .backoff_min_ms = 10, .backoff_max_ms = 50};
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres", wt_closed_port());
    fx_init(&f, url, &o);
    int rc = wy_pg_query(f.pg, "SELECT 1", 0, NULL, on_res, &x);
    if (rc == WY_OK) { /* queued while the first connects were in progress */
        RUN_UNTIL(&f, x.calls == 1);
        assert_int_equal(x.status, WY_EUNAVAIL);
        assert_true(x.err[0] != '\0');
    } else {
        assert_int_equal(rc, WY_EUNAVAIL);
    }
    assert_int_equal(wy_pg_health(f.pg), WY_EUNAVAIL);
    /* once every connection has failed, new statements are refused at once */
    rc = wy_pg_query(f.pg, "SELECT 1", 0, NULL, on_res, &y);
    if (rc == WY_OK) {
        RUN_UNTIL(&f, y.calls == 1);
        assert_int_equal(y.status, WY_EUNAVAIL);
    } else {
        assert_int_equal(rc, WY_EUNAVAIL);
    }
    fx_done(&f);
}

static void test_close_cancels(void **state)
{
    (void)state;
    fx_t f;
    res_t warm, running = {0}, queued = {0}, late = {0};
    txs_t t = {0};
    wy_pg_opts_t o = {.size = 1};
    fx_init(&f, pg_url(), &o);
    warm = q(&f, "SELECT 1", 0, NULL);
    assert_int_equal(warm.status, WY_OK);
    assert_int_equal(wy_pg_query(f.pg, "SELECT pg_sleep(5)", 0, NULL, on_res, &running), WY_OK);
    assert_int_equal(wy_pg_query(f.pg, "SELECT 1", 0, NULL, on_res, &queued), WY_OK);
    assert_int_equal(wy_pg_begin(f.pg, on_begin, &t), WY_OK);
    wy_pg_close(f.pg, wt_on_closed, &f.lp);
    assert_int_equal(running.calls, 1);
    assert_int_equal(running.status, WY_ECANCELED);
    assert_int_equal(queued.calls, 1);
    assert_int_equal(queued.status, WY_ECANCELED);
    assert_int_equal(t.begun, 1);
    assert_int_equal(t.begin_status, WY_ECANCELED);
    assert_null(t.tx);
    assert_int_equal(wy_pg_query(f.pg, "SELECT 1", 0, NULL, on_res, &late), WY_ECANCELED);
    RUN_UNTIL(&f, f.lp.closed);
    f.pg = NULL;
    fx_done(&f);
}

/* Closing from inside a callback: the rest is canceled, nothing is freed under the caller. */
typedef struct {
    fx_t *f;
    int calls;
} closer_t;

static void on_close_in_cb(int status, const PGresult *res, const char *err, void *ud)
{
    closer_t *c = ud;
    (void)res;
    (void)err;
    assert_int_equal(status, WY_OK);
    c->calls++;
    wy_pg_close(c->f->pg, wt_on_closed, &c->f->lp);
    assert_int_equal(wy_pg_query(c->f->pg, "SELECT 1", 0, NULL, on_res, NULL), WY_ECANCELED);
}

static void test_close_inside_callback(void **state)
{
    (void)state;
    fx_t f;
    closer_t c = {&f, 0};
    res_t other = {0};
    wy_pg_opts_t o = {.size = 1};
    fx_init(&f, pg_url(), &o);
    assert_int_equal(wy_pg_query(f.pg, "SELECT 1", 0, NULL, on_close_in_cb, &c), WY_OK);
    assert_int_equal(wy_pg_query(f.pg, "SELECT pg_sleep(5)", 0, NULL, on_res, &other), WY_OK);
    RUN_UNTIL(&f, f.lp.closed);
    assert_int_equal(c.calls, 1);
    assert_int_equal(other.calls, 1);
    assert_int_equal(other.status, WY_ECANCELED);
    f.pg = NULL;
    fx_done(&f);
}

/* A transaction left open at close is rolled back and its handle freed by the close. */
static void test_close_with_open_tx(void **state)
{
    (void)state;
    fx_t f;
    txs_t t;
    fx_init(&f, pg_url(), NULL);
    begin(&f, &t);
    const char *a[] = {"open_at_close"};
    assert_int_equal(txq(&f, t.tx, sqlf("INSERT INTO %s.t VALUES ($1)", schema), 1, a).status,
                     WY_OK);
    fx_done(&f);
    char v[16];
    sync_exec(sqlf("SELECT count(*) FROM %s.t WHERE k = 'open_at_close'", schema), v, sizeof v);
    assert_string_equal(v, "0");
}

/* ---- migrations ---- */

static const char *fixture_dir(void)
{
    static char dir[1024];
    struct stat st;
    const char *src = __FILE__;
    const char *slash = strrchr(src, '/');
    snprintf(dir, sizeof dir, "%.*s/migrations_fixture", slash ? (int)(slash - src) : 1,
             slash ? src : ".");
    if (stat(dir, &st) != 0)
        fail_msg("fixture dir %s not found: run the test from the repository root", dir);
    return dir;
}

static void test_migrate_once(void **state)
{
    (void)state;
    int n = -1;
    const char *err = NULL;
    char v[64];
    assert_int_equal(wy_pg_migrate(pg_url(), mschema, fixture_dir(), &n, &err), WY_OK);
    assert_int_equal(n, 2);
    sync_exec(sqlf("SELECT color FROM %s.widgets WHERE id = 1", mschema), v, sizeof v);
    assert_string_equal(v, "red");
    sync_exec(
        sqlf("SELECT string_agg(version, ',' ORDER BY version) FROM %s.schema_migrations", mschema),
        v, sizeof v);
    assert_string_equal(v, "001,002");
    assert_int_equal(wy_pg_migrate(pg_url(), mschema, fixture_dir(), &n, &err), WY_OK);
    assert_int_equal(n, 0);
    sync_exec(sqlf("SELECT count(*) FROM %s.widgets", mschema), v, sizeof v);
    assert_string_equal(v, "1");
}

typedef struct {
    const char *dir; /* resolved on the test thread: fixture_dir() is not thread-safe */
    int rc, n;
} mig_t;

static void *mig_thread(void *arg)
{
    mig_t *m = arg;
    const char *err = NULL;
    m->rc = wy_pg_migrate(pg_url(), cschema, m->dir, &m->n, &err);
    if (m->rc != WY_OK)
        fprintf(stderr, "migrate: %s\n", err);
    return NULL;
}

static void test_migrate_concurrent(void **state)
{
    (void)state;
    pthread_t t[4];
    mig_t m[4] = {{0}};
    char v[64];
    for (int i = 0; i < 4; i++) {
        m[i].dir = fixture_dir();
        assert_int_equal(pthread_create(&t[i], NULL, mig_thread, &m[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    int total = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(m[i].rc, WY_OK);
        total += m[i].n;
    }
    assert_int_equal(total, 2);
    sync_exec(sqlf("SELECT count(*) FROM %s.widgets", cschema), v, sizeof v);
    assert_string_equal(v, "1");
}

static void test_migrate_bad_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/wy_pg_migrate_XXXXXX";
    int n = -1;
    const char *err = NULL;
    char v[64];
    assert_non_null(mkdtemp(dir));
    wt_write_file(dir, "001_ok.sql", "CREATE TABLE good (id int);");
    wt_write_file(dir, "002_broken.sql",
                  "CREATE TABLE half (id int);\nCREATE TABLEE oops (id int);");
    assert_int_equal(wy_pg_migrate(pg_url(), bschema, dir, &n, &err), WY_EIO);
    assert_int_equal(n, 1);
    assert_non_null(err);
    if (strstr(err, "002_broken.sql") == NULL || strstr(err, "syntax error") == NULL)
        fail_msg("error does not name the file and PostgreSQL's message: %s", err);
    sync_exec(sqlf("SELECT string_agg(version, ',') FROM %s.schema_migrations", bschema), v,
              sizeof v);
    assert_string_equal(v, "001");
    sync_exec(sqlf("SELECT count(*) FROM pg_tables WHERE schemaname = '%s' AND tablename = 'half'",
                   bschema),
              v, sizeof v);
    assert_string_equal(v, "0");

    /* duplicate versions and bad names are refused before touching the database */
    wt_write_file(dir, "002_dup.sql", "SELECT 1;");
    assert_int_equal(wy_pg_migrate(pg_url(), bschema, dir, &n, &err), WY_EINVAL);
    assert_non_null(strstr(err, "same version"));
    assert_int_equal(wy_pg_migrate(pg_url(), "bad-name", dir, &n, &err), WY_EINVAL);
    assert_non_null(strstr(err, "bad-name"));
    assert_int_equal(wy_pg_migrate(pg_url(), "x; DROP", dir, &n, &err), WY_EINVAL);
    assert_int_equal(wy_pg_migrate(pg_url(), bschema, "/nonexistent/dir", &n, &err), WY_EINVAL);
    assert_non_null(strstr(err, "/nonexistent/dir"));

    unlink(sqlf("%s/001_ok.sql", dir));
    unlink(sqlf("%s/002_broken.sql", dir));
    unlink(sqlf("%s/002_dup.sql", dir));
    rmdir(dir);
}

/* ---------------------------------------------------------------- prepared statements */

/* One prepared statement run, its first row read by column name. */
typedef struct {
    int calls, status;
    char err[256];
    int ntuples;
    char pid[16];
    long long prepared; /* statements of ours prepared on the session, when the SQL says */
} pres_t;

static void on_pres(int status, const PGresult *res, const char *err, void *ud)
{
    pres_t *x = ud;
    x->calls++;
    x->status = status;
    snprintf(x->err, sizeof x->err, "%s", err ? err : "");
    if (status != WY_OK || PQresultStatus(res) != PGRES_TUPLES_OK)
        return;
    x->ntuples = PQntuples(res);
    if (x->ntuples > 0) {
        snprintf(x->pid, sizeof x->pid, "%s", wy_pg_text(res, 0, "pid"));
        x->prepared = wy_pg_int64(res, 0, "prepared");
    }
}

static pres_t run_stmt(fx_t *f, const wy_pg_stmt_t *st, const char *const *params)
{
    pres_t x = {0};
    assert_int_equal(wy_pg_exec(f->pg, st, params, on_pres, &x), WY_OK);
    RUN_UNTIL(f, x.calls == 1);
    return x;
}

/* Which of our statements the session has prepared, and the session's backend. */
static const wy_pg_stmt_t st_session = {
    "wyt_session",
    "SELECT pg_backend_pid()::text AS pid, (SELECT count(*) FROM pg_prepared_statements "
    "WHERE name LIKE 'wyt\\_%') AS prepared",
    0};
static const wy_pg_stmt_t st_echo = {"wyt_echo", "SELECT $1::text AS pid, 0 AS prepared", 1};

/* Each statement is prepared once per session (not per run) and again on the new session after
 * the connection was lost. */
static void test_prepared_once_per_session(void **state)
{
    (void)state;
    fx_t f;
    wy_pg_opts_t o = {.size = 1};
    fx_init(&f, pg_url(), &o);
    const char *p[] = {"hello"};
    pres_t x = run_stmt(&f, &st_echo, p);
    assert_int_equal(x.status, WY_OK);
    assert_string_equal(x.pid, "hello");
    for (int i = 0; i < 3; i++) {
        x = run_stmt(&f, &st_echo, p);
        assert_int_equal(x.status, WY_OK);
    }
    x = run_stmt(&f, &st_session, NULL);
    assert_int_equal(x.status, WY_OK);
    assert_int_equal(x.prepared, 2); /* wyt_echo once (four runs), wyt_session itself */
    char old_pid[16];
    snprintf(old_pid, sizeof old_pid, "%s", x.pid);
    x = run_stmt(&f, &st_session, NULL);
    assert_int_equal(x.prepared, 2);

    /* Lose the session: the pool reconnects and prepares again on the new one. */
    sync_exec(sqlf("SELECT pg_terminate_backend(%s)", old_pid), NULL, 0);
    for (int tries = 0; tries < 100; tries++) {
        x = run_stmt(&f, &st_session, NULL);
        if (x.status == WY_OK)
            break;
        assert_int_equal(x.status, WY_EUNAVAIL); /* the statement that found it gone */
        RUN_UNTIL(&f, wy_pg_health(f.pg) == WY_OK);
    }
    assert_int_equal(x.status, WY_OK);
    assert_string_not_equal(x.pid, old_pid);
    assert_int_equal(x.prepared, 1); /* only wyt_session so far on this session */
    x = run_stmt(&f, &st_echo, p);
    assert_int_equal(x.status, WY_OK);
    assert_string_equal(x.pid, "hello");
    fx_done(&f);
}

/* Prepared statements inside a transaction; SQL errors in the statement text; bad objects. */
static void test_prepared_tx_and_errors(void **state)
{
    (void)state;
    fx_t f;
    txs_t t;
    wy_pg_opts_t o = {.size = 1};
    fx_init(&f, pg_url(), &o);
    char *ins_sql =
        wy_sprintf("INSERT INTO %s.t VALUES ($1) RETURNING k AS pid, 0 AS prepared", schema);
    const wy_pg_stmt_t ins = {"wyt_ins", ins_sql, 1};

    begin(&f, &t);
    pres_t a = {0}, b = {0};
    const char *k1[] = {"prep-tx-1"}, *k2[] = {"prep-tx-2"};
    assert_int_equal(wy_pg_tx_exec(t.tx, &ins, k1, on_pres, &a), WY_OK);
    assert_int_equal(wy_pg_tx_exec(t.tx, &ins, k2, on_pres, &b), WY_OK);
    assert_int_equal(wy_pg_tx_commit(t.tx, on_end, &t), WY_OK);
    RUN_UNTIL(&f, t.ended == 1);
    assert_int_equal(a.status, WY_OK);
    assert_string_equal(a.pid, "prep-tx-1");
    assert_int_equal(b.status, WY_OK);
    assert_string_equal(b.pid, "prep-tx-2");
    assert_int_equal(t.end_status, WY_OK);
    assert_int_equal(count_rows(&f, "prep-tx-1") + count_rows(&f, "prep-tx-2"), 2);

    /* A constraint violation of a prepared statement maps like any statement's. */
    pres_t x = run_stmt(&f, &ins, k1);
    assert_int_equal(x.status, WY_EEXIST);

    /* Broken SQL fails in the callback, every time, and the connection stays usable. */
    const wy_pg_stmt_t broken = {"wyt_broken", "SELEC 1", 0};
    for (int i = 0; i < 2; i++) {
        x = run_stmt(&f, &broken, NULL);
        assert_int_equal(x.status, WY_EIO);
        assert_non_null(strstr(x.err, "syntax error"));
    }
    const char *p[] = {"still"};
    x = run_stmt(&f, &st_echo, p);
    assert_int_equal(x.status, WY_OK);

    /* The same name for another SQL text is a bug, refused on the session that has the first. */
    const wy_pg_stmt_t clash = {"wyt_echo", "SELECT 2 AS pid, 0 AS prepared", 0};
    x = run_stmt(&f, &clash, NULL);
    assert_int_equal(x.status, WY_EINTERNAL);
    x = run_stmt(&f, &st_echo, p);
    assert_int_equal(x.status, WY_OK);

    /* Bad statement objects and parameters are refused at the call. */
    pres_t unused = {0};
    const wy_pg_stmt_t noname = {"", "SELECT 1", 0}, badname = {"a-b", "SELECT 1", 0},
                       nosql = {"wyt_nosql", NULL, 0};
    assert_int_equal(wy_pg_exec(f.pg, &noname, NULL, on_pres, &unused), WY_EINVAL);
    assert_int_equal(wy_pg_exec(f.pg, &badname, NULL, on_pres, &unused), WY_EINVAL);
    assert_int_equal(wy_pg_exec(f.pg, &nosql, NULL, on_pres, &unused), WY_EINVAL);
    assert_int_equal(wy_pg_exec(f.pg, NULL, NULL, on_pres, &unused), WY_EINVAL);
    assert_int_equal(wy_pg_exec(f.pg, &st_echo, NULL, on_pres, &unused), WY_EINVAL);
    assert_int_equal(wy_pg_exec(f.pg, &st_echo, p, NULL, NULL), WY_EINVAL);
    assert_int_equal(unused.calls, 0);
    fx_done(&f);
    wy_free(ins_sql);
}

/* ---------------------------------------------------------------- columns by name */

static PGresult *sync_result(const char *sql)
{
    PGconn *c = PQconnectdb(pg_url());
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to WY_PG_URL: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQfinish(c);
    return r;
}

/* True if fn(res) ends the process with SIGABRT (run in a child). */
static bool aborts(void (*fn)(const PGresult *), const PGresult *res)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2); /* the log line is expected */
        fn(res);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void read_missing(const PGresult *res)
{
    (void)wy_pg_text(res, 0, "no_such_column");
}

static void read_past_end(const PGresult *res)
{
    (void)wy_pg_text(res, 5, "n");
}

static void test_columns_by_name(void **state)
{
    (void)state;
    PGresult *r = sync_result("SELECT 'x' AS s, NULL::text AS nothing, true AS yes, false AS no, "
                              "9007199254740993::bigint AS n, -3 AS neg");
    assert_int_equal(wy_pg_col(r, "s"), 0);
    assert_int_equal(wy_pg_col(r, "neg"), 5);
    assert_string_equal(wy_pg_text(r, 0, "s"), "x");
    assert_null(wy_pg_text(r, 0, "nothing"));
    assert_true(wy_pg_isnull(r, 0, "nothing"));
    assert_false(wy_pg_isnull(r, 0, "s"));
    assert_true(wy_pg_bool(r, 0, "yes"));
    assert_false(wy_pg_bool(r, 0, "no"));
    assert_false(wy_pg_bool(r, 0, "nothing"));
    assert_int_equal(wy_pg_int64(r, 0, "n"), 9007199254740993LL);
    assert_int_equal(wy_pg_int64(r, 0, "neg"), -3);
    assert_int_equal(wy_pg_int64(r, 0, "nothing"), 0);
    /* Reading what the result does not have is a bug: loud, not a silent NULL. */
    assert_true(aborts(read_missing, r));
    assert_true(aborts(read_past_end, r));
    PQclear(r);
}

static int setup(void **state)
{
    (void)state;
    char id[37];
    wy_uuid4(id);
    snprintf(schema, sizeof schema, "wyt_%.8s", id);
    snprintf(mschema, sizeof mschema, "%s_m", schema);
    snprintf(cschema, sizeof cschema, "%s_c", schema);
    snprintf(bschema, sizeof bschema, "%s_b", schema);
    sync_exec(sqlf("CREATE SCHEMA %s", schema), NULL, 0);
    sync_exec(sqlf("CREATE TABLE %s.t (k text PRIMARY KEY)", schema), NULL, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sync_exec(
        sqlf("DROP SCHEMA IF EXISTS %s, %s, %s, %s CASCADE", schema, mschema, cschema, bschema),
        NULL, 0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_conninfo),
        cmocka_unit_test(test_params_and_null),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_tx_timeout_rolls_back),
        cmocka_unit_test(test_pool_concurrency),
        cmocka_unit_test(test_queue_bound),
        cmocka_unit_test(test_query_timeout),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_close_cancels),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_close_with_open_tx),
        cmocka_unit_test(test_migrate_once),
        cmocka_unit_test(test_migrate_concurrent),
        cmocka_unit_test(test_migrate_bad_file),
        cmocka_unit_test(test_prepared_once_per_session),
        cmocka_unit_test(test_prepared_tx_and_errors),
        cmocka_unit_test(test_columns_by_name),
    };
    if (getenv("WY_PG_URL") == NULL || *getenv("WY_PG_URL") == '\0') {
        fprintf(stderr, "WY_PG_URL is not set: these tests need a real PostgreSQL "
                        "(export WY_PG_URL=postgresql://postgres@127.0.0.1:PORT/postgres)\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
