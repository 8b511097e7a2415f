/* wy_outbox — outbox rows written in the caller's transaction, and the relay that publishes
 * them after commit and deletes them once acknowledged. See wy_outbox.h for the contract. */
#include "wy_outbox.h"
#include "wy_buf.h"
#include "wy_log.h"
#include "wy_metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_DEFAULT    256
#define BATCH_MAX        10000
#define PENDING_CAP      "100000"
#define PENDING_COUNT_MS 1000 /* a full pass counts the rows at most this often */

typedef struct omsg {
    wy_outbox_t *ob;
    int64_t id;
    uint64_t ts_ms; /* the row's */
    bool acked;
} omsg_t;

struct wy_outbox {
    uv_loop_t *loop;
    wy_pg_t *pg;
    wy_kafka_producer_t *producer;
    char *lock_key;
    char *sql_insert, *sql_count, *sql_select, *sql_delete;
    char batch_s[16];
    uint32_t batch, poll_ms;
    uv_timer_t timer;
    int refs; /* 1 while open (its timer) + 1 per pass or commit in flight */
    bool closed;
    /* the pass in flight */
    bool running;
    bool wake;           /* a commit (or a full pass) asks for another pass right after this one */
    uint64_t counted_ms; /* when a full pass last counted the rows (at most once a second) */
    bool pass_failed;
    bool committing; /* the pass's transaction ends with COMMIT (rows deleted), not ROLLBACK */
    wy_pg_tx_t *tx;
    omsg_t *msgs; /* one per row read */
    size_t nrows, nsent, nreports;
    wy_outbox_stats_t st;
    wy_metric_t *m_pending, *m_relayed, *m_failures;
    wy_metric_t *m_lag; /* the owner's, may be NULL (wy_outbox_set_lag_metric) */
    void (*close_done)(void *ud);
    void *close_ud;
};

typedef struct {
    wy_outbox_t *ob;
    wy_pg_end_cb cb;
    void *ud;
} commit_t;

static void ob_free(wy_outbox_t *ob)
{
    if (ob->close_done)
        ob->close_done(ob->close_ud);
    wy_free(ob->lock_key);
    wy_free(ob->sql_insert);
    wy_free(ob->sql_count);
    wy_free(ob->sql_select);
    wy_free(ob->sql_delete);
    wy_free(ob);
}

static void unref(wy_outbox_t *ob)
{
    if (--ob->refs == 0)
        ob_free(ob);
}

static void on_timer_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void pass_start(wy_outbox_t *ob);

static void on_timer(uv_timer_t *t)
{
    pass_start(t->data);
}

/* The pass is over: schedule the next one (at once when asked, else after the poll period). */
static void pass_end(wy_outbox_t *ob)
{
    ob->running = false;
    ob->tx = NULL;
    wy_free(ob->msgs);
    ob->msgs = NULL;
    ob->nrows = ob->nsent = ob->nreports = 0;
    if (!ob->closed) {
        bool again = ob->wake && !ob->pass_failed;
        uv_timer_start(&ob->timer, on_timer, again ? 0 : ob->poll_ms, 0);
    }
    ob->wake = false;
    ob->pass_failed = false;
    ob->committing = false;
    unref(ob);
}

static void on_tx_ended(int status, const char *err, void *ud)
{
    wy_outbox_t *ob = ud;
    if (!ob->committing) {
        /* rolled back: nothing was deleted */
    } else if (status != WY_OK) {
        /* Acknowledged rows stay: they are published again next pass (consumers dedupe). */
        wy_log_warn("outbox: deleting relayed rows failed (they will be published again)", "error",
                    err ? err : wy_strerror(status), NULL);
        ob->pass_failed = true;
    } else {
        size_t n = 0;
        for (size_t i = 0; i < ob->nsent; i++)
            n += ob->msgs[i].acked;
        ob->st.relayed += n;
        wy_metric_add(ob->m_relayed, (double)n);
    }
    pass_end(ob);
}

/* Ends the pass's transaction: commit when it deleted rows, else roll back. */
static void pass_finish(wy_outbox_t *ob, bool commit)
{
    ob->committing = commit;
    int rc = commit ? wy_pg_tx_commit(ob->tx, on_tx_ended, ob)
                    : wy_pg_tx_rollback(ob->tx, on_tx_ended, ob);
    if (rc != WY_OK) /* pool closing: the transaction is gone with it */
        pass_end(ob);
}

static void pass_fail(wy_outbox_t *ob, const char *what, int status, const char *err)
{
    wy_log_warn(what, "error", err ? err : wy_strerror(status), NULL);
    ob->pass_failed = true;
    if (ob->tx)
        pass_finish(ob, false);
    else
        pass_end(ob);
}

static void on_deleted(int status, const PGresult *res, const char *err, void *ud)
{
    (void)res;
    wy_outbox_t *ob = ud;
    if (status != WY_OK) {
        pass_fail(ob, "outbox: deleting relayed rows failed (they will be published again)", status,
                  err);
        return;
    }
    pass_finish(ob, true);
}

/* Every report of the pass is in: delete what the broker acknowledged. */
static void pass_flush(wy_outbox_t *ob)
{
    wy_buf_t ids = WY_BUF_INIT;
    wy_buf_putc(&ids, '{');
    size_t n = 0;
    for (size_t i = 0; i < ob->nsent; i++) {
        if (!ob->msgs[i].acked)
            continue;
        wy_buf_printf(&ids, "%s%" PRId64, n ? "," : "", ob->msgs[i].id);
        n++;
    }
    wy_buf_putc(&ids, '}');
    int rc = WY_OK;
    if (n > 0) {
        const char *params[1] = {ids.data};
        rc = wy_pg_tx_query(ob->tx, ob->sql_delete, 1, params, on_deleted, ob);
    }
    wy_buf_free(&ids);
    if (n == 0)
        pass_finish(ob, false);
    else if (rc != WY_OK)
        pass_fail(ob, "outbox: cannot delete relayed rows", rc, NULL);
}

static void on_delivered(void *udata, int status, const char *event_id)
{
    omsg_t *m = udata;
    wy_outbox_t *ob = m->ob;
    if (status == WY_OK) {
        m->acked = true;
        uint64_t now = wy_wall_ms();
        if (ob->m_lag && m->ts_ms && now >= m->ts_ms)
            wy_metric_observe(ob->m_lag, (double)(now - m->ts_ms) / 1000.0);
    } else {
        ob->st.failures++;
        wy_metric_inc(ob->m_failures);
        ob->pass_failed = true;
        wy_log_warn("outbox: delivery failed (the row stays and is retried)", "event_id", event_id,
                    "error", wy_strerror(status), NULL);
    }
    if (++ob->nreports == ob->nsent)
        pass_flush(ob);
}

/* The pending gauge of a full pass (the rows past the batch are not read). A failure has
 * failed the transaction: the pass's DELETE fails too and its rows are published again. */
static void on_counted(int status, const PGresult *res, const char *err, void *ud)
{
    wy_outbox_t *ob = ud;
    if (status != WY_OK) {
        wy_log_warn("outbox: counting rows failed", "error", err ? err : wy_strerror(status), NULL);
        return;
    }
    ob->st.pending = (uint64_t)wy_pg_int64(res, 0, "pending");
    wy_metric_set(ob->m_pending, (double)ob->st.pending);
}

/* The lock and the oldest rows in one statement (one round trip); produces them in id order,
 * stops at the first refusal so that no later row of the same key overtakes it. */
static void on_selected(int status, const PGresult *res, const char *err, void *ud)
{
    wy_outbox_t *ob = ud;
    if (status != WY_OK) {
        pass_fail(ob, "outbox: reading rows failed", status, err);
        return;
    }
    PGresult *r = (PGresult *)res;
    if (!wy_pg_bool(r, 0, "locked")) {
        /* Another instance is relaying this schema's rows; try again next poll. */
        ob->wake = false;
        pass_finish(ob, false);
        return;
    }
    /* One row with a NULL id: the outbox is empty. */
    int n = wy_pg_isnull(r, 0, "id") ? 0 : PQntuples(r);
    if ((uint32_t)n < ob->batch) {
        /* Every row of the snapshot was read: that is the count, no statement needed. */
        ob->st.pending = (uint64_t)n;
        wy_metric_set(ob->m_pending, (double)n);
    } else {
        ob->wake = true; /* a full pass: more rows are likely waiting */
        /* Counted on the pass's transaction while the rows are in flight (gauge only), at most
         * once a second: the count reads every row of the table, dead ones too, and in a storm
         * every pass is full (it cost more than the pass itself once the table had grown). */
        uint64_t now = wy_now_ms();
        if (now - ob->counted_ms >= PENDING_COUNT_MS) {
            ob->counted_ms = now;
            if (wy_pg_tx_query(ob->tx, ob->sql_count, 0, NULL, on_counted, ob) != WY_OK)
                ob->pass_failed = true;
        } else if (ob->st.pending < (uint64_t)n) {
            ob->st.pending = (uint64_t)n; /* at least this pass's rows wait */
            wy_metric_set(ob->m_pending, (double)n);
        }
    }
    if (n == 0) {
        pass_finish(ob, false);
        return;
    }
    ob->st.passes++;
    ob->nrows = (size_t)n;
    ob->msgs = wy_calloc((size_t)n, sizeof *ob->msgs);
    int c_id = wy_pg_col(r, "id"), c_event = wy_pg_col(r, "event_id"),
        c_topic = wy_pg_col(r, "topic"), c_key = wy_pg_col(r, "key"), c_type = wy_pg_col(r, "type"),
        c_payload = wy_pg_col(r, "payload"), c_ts = wy_pg_col(r, "ts_ms");
    for (int i = 0; i < n; i++) {
        omsg_t *m = &ob->msgs[i];
        m->ob = ob;
        m->id = strtoll(PQgetvalue(r, i, c_id), NULL, 10);
        m->ts_ms = strtoull(PQgetvalue(r, i, c_ts), NULL, 10);
        size_t plen = 0;
        unsigned char *payload =
            PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, c_payload), &plen);
        const char *key = PQgetvalue(r, i, c_key);
        int rc = payload ? wy_kafka_produce_event(ob->producer, PQgetvalue(r, i, c_topic),
                                                  *key ? key : NULL, PQgetvalue(r, i, c_event),
                                                  PQgetvalue(r, i, c_type),
                                                  strtoull(PQgetvalue(r, i, c_ts), NULL, 10),
                                                  payload, plen, on_delivered, m)
                         : WY_EIO;
        if (payload)
            PQfreemem(payload);
        if (rc != WY_OK) {
            ob->st.failures++;
            wy_metric_inc(ob->m_failures);
            ob->pass_failed = true;
            wy_log_warn("outbox: produce refused (retried next pass)", "event_id",
                        PQgetvalue(r, i, c_event), "error", wy_strerror(rc), NULL);
            break;
        }
        ob->nsent++;
    }
    /* Reports come later, from the producer's queue (never inside produce). */
    if (ob->nsent == 0)
        pass_finish(ob, false);
}

static void on_begun(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    wy_outbox_t *ob = ud;
    if (status != WY_OK) {
        pass_fail(ob, "outbox: cannot begin a relay pass", status, err);
        return;
    }
    ob->tx = tx;
    const char *params[2] = {ob->lock_key, ob->batch_s};
    int rc = wy_pg_tx_query(tx, ob->sql_select, 2, params, on_selected, ob);
    if (rc != WY_OK)
        pass_fail(ob, "outbox: cannot read rows", rc, NULL);
}

static void pass_start(wy_outbox_t *ob)
{
    if (ob->closed)
        return;
    if (ob->running) {
        ob->wake = true;
        return;
    }
    uv_timer_stop(&ob->timer);
    ob->running = true;
    ob->refs++;
    int rc = wy_pg_begin(ob->pg, on_begun, ob);
    if (rc != WY_OK)
        pass_fail(ob, "outbox: cannot begin a relay pass", rc, NULL);
}

void wy_outbox_wake(wy_outbox_t *ob)
{
    pass_start(ob);
}

static void on_committed(int status, const char *err, void *ud)
{
    commit_t *cm = ud;
    wy_outbox_t *ob = cm->ob;
    if (cm->cb)
        cm->cb(status, err, cm->ud);
    if (status == WY_OK)
        pass_start(ob);
    wy_free(cm);
    unref(ob);
}

int wy_outbox_commit(wy_outbox_t *ob, wy_pg_tx_t *tx, wy_pg_end_cb cb, void *ud)
{
    commit_t *cm = wy_calloc(1, sizeof *cm);
    cm->ob = ob;
    cm->cb = cb;
    cm->ud = ud;
    int rc = wy_pg_tx_commit(tx, on_committed, cm);
    if (rc != WY_OK) {
        wy_free(cm);
        return rc;
    }
    ob->refs++;
    return WY_OK;
}

static void on_inserted(int status, const PGresult *res, const char *err, void *ud)
{
    (void)res;
    (void)ud;
    /* The transaction has failed with it; its commit reports WY_ESTATE to the owner. */
    if (status != WY_OK)
        wy_log_warn("outbox: insert failed", "error", err ? err : wy_strerror(status), NULL);
}

int wy_outbox_row_init(wy_outbox_row_t *row, const char *topic, const char *key, const char *type,
                       const void *payload, size_t payload_len)
{
    memset(row, 0, sizeof *row);
    if (!topic || !*topic || !type || !*type || strlen(type) > WY_KAFKA_MAX_ID ||
        (key && strlen(key) > WY_KAFKA_MAX_ID) || (payload_len && !payload))
        return WY_EINVAL;
    if (payload_len > WY_KAFKA_MAX_ENVELOPE)
        return WY_ETOOBIG;
    static const char hex[] = "0123456789abcdef";
    char *bytea = wy_malloc(2 * payload_len + 3);
    bytea[0] = '\\';
    bytea[1] = 'x';
    for (size_t i = 0; i < payload_len; i++) {
        bytea[2 + 2 * i] = hex[((const uint8_t *)payload)[i] >> 4];
        bytea[3 + 2 * i] = hex[((const uint8_t *)payload)[i] & 15];
    }
    bytea[2 + 2 * payload_len] = '\0';
    wy_uuid4(row->event_id);
    snprintf(row->ts_ms, sizeof row->ts_ms, "%" PRIu64, wy_wall_ms());
    row->payload_hex = bytea;
    row->params[0] = row->event_id;
    row->params[1] = topic;
    row->params[2] = key ? key : "";
    row->params[3] = type;
    row->params[4] = bytea;
    row->params[5] = row->ts_ms;
    return WY_OK;
}

void wy_outbox_row_free(wy_outbox_row_t *row)
{
    wy_free(row->payload_hex);
    memset(row, 0, sizeof *row);
}

int wy_outbox_add(wy_outbox_t *ob, wy_pg_tx_t *tx, const char *topic, const char *key,
                  const char *type, const void *payload, size_t payload_len, char event_id_out[37])
{
    wy_outbox_row_t row;
    int rc = wy_outbox_row_init(&row, topic, key, type, payload, payload_len);
    if (rc != WY_OK)
        return rc;
    rc = wy_pg_tx_query(tx, ob->sql_insert, 6, row.params, on_inserted, NULL);
    if (rc == WY_OK) {
        ob->st.added++;
        if (event_id_out)
            memcpy(event_id_out, row.event_id, sizeof row.event_id);
    }
    wy_outbox_row_free(&row);
    return rc;
}

int wy_outbox_new(uv_loop_t *loop, wy_pg_t *pg, wy_kafka_producer_t *producer,
                  const wy_outbox_opts_t *o, wy_outbox_t **out, const char **err)
{
    *out = NULL;
    if (!o->svc || !*o->svc || !pg || !producer) {
        *err = "wy_outbox: svc, pool and producer are required";
        return WY_EINVAL;
    }
    if (!wy_pg_ident_ok(o->schema)) {
        *err = "wy_outbox: schema must be an identifier [A-Za-z_][A-Za-z0-9_]*";
        return WY_EINVAL;
    }
    if (o->batch > BATCH_MAX) {
        *err = "wy_outbox: batch over 10000";
        return WY_EINVAL;
    }
    wy_outbox_t *ob = wy_calloc(1, sizeof *ob);
    ob->loop = loop;
    ob->pg = pg;
    ob->producer = producer;
    ob->batch = o->batch ? o->batch : BATCH_DEFAULT;
    ob->poll_ms = o->poll_interval_ms ? o->poll_interval_ms : 1000;
    snprintf(ob->batch_s, sizeof ob->batch_s, "%u", ob->batch);
    const char *s = o->schema;
    ob->lock_key = wy_sprintf("%s.wy_outbox", s);
    ob->sql_insert = wy_sprintf("INSERT INTO %s.wy_outbox (event_id, topic, key, type, payload, "
                                "ts_ms) VALUES ($1, $2, $3, $4, $5::bytea, $6::bigint)",
                                s);
    ob->sql_count = wy_sprintf(
        "SELECT count(*) AS pending FROM (SELECT 1 FROM %s.wy_outbox LIMIT " PENDING_CAP ") AS p",
        s);
    /* The lock first (the outer side of the lateral join), then the rows only when it is
     * held: one row with NULL columns when the outbox is empty or another instance relays.
     * The pass's COMMIT (the DELETE of acknowledged rows) does not wait for the WAL flush:
     * a crash that loses it publishes those rows again, which at-least-once allows. */
    ob->sql_select =
        wy_sprintf("SELECT l.locked, o.id, o.event_id, o.topic, o.key, o.type, o.payload, o.ts_ms "
                   "FROM (SELECT pg_try_advisory_xact_lock(hashtext($1)) AS locked, "
                   "set_config('synchronous_commit', 'off', true) AS sc) l LEFT JOIN LATERAL "
                   "(SELECT * FROM %s.wy_outbox WHERE l.locked ORDER BY id LIMIT $2::int) o "
                   "ON true ORDER BY o.id",
                   s);
    ob->sql_delete = wy_sprintf("DELETE FROM %s.wy_outbox WHERE id = ANY($1::bigint[])", s);
    char *name = wy_sprintf("wy_%s_outbox_pending", o->svc);
    ob->m_pending = wy_metrics_gauge(name, "Outbox rows waiting to be published.", NULL);
    wy_free(name);
    name = wy_sprintf("wy_%s_outbox_relayed_total", o->svc);
    ob->m_relayed = wy_metrics_counter(
        name, "Outbox rows published, acknowledged by the broker and deleted.", NULL);
    wy_free(name);
    name = wy_sprintf("wy_%s_outbox_failures_total", o->svc);
    ob->m_failures =
        wy_metrics_counter(name, "Outbox rows whose produce or delivery failed (retried).", NULL);
    wy_free(name);
    ob->refs = 1;
    uv_timer_init(loop, &ob->timer);
    ob->timer.data = ob;
    uv_timer_start(&ob->timer, on_timer, 0, 0);
    *out = ob;
    return WY_OK;
}

void wy_outbox_set_lag_metric(wy_outbox_t *ob, wy_metric_t *histogram)
{
    ob->m_lag = histogram;
}

void wy_outbox_stats(const wy_outbox_t *ob, wy_outbox_stats_t *out)
{
    *out = ob->st;
}

bool wy_outbox_idle(const wy_outbox_t *ob)
{
    return !ob->running;
}

void wy_outbox_close(wy_outbox_t *ob, void (*done)(void *ud), void *ud)
{
    if (ob->closed)
        return;
    ob->closed = true;
    ob->close_done = done;
    ob->close_ud = ud;
    uv_timer_stop(&ob->timer);
    uv_close((uv_handle_t *)&ob->timer, on_timer_closed);
}
