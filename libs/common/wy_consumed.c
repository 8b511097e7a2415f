/* wy_consumed — (consumer, event_id) claims in the effect's PostgreSQL transaction, and the
 * retention sweep of old claims. See wy_consumed.h for the table and the contract. */
#include "wy_consumed.h"
#include "wy_log.h"
#include "wy_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wy_consumed {
    uv_loop_t *loop;
    wy_pg_t *pg;
    char *consumer;
    char *sql_claim, *sql_sweep;
    char retention[16], batch[16];
    uint32_t sweep_interval_ms, sweep_batch;
    uint64_t next_sweep_ms; /* loop time from which the next claim starts a sweep */
    /* Statements in flight, + 1 while open: the helper is freed when it drops to 0. */
    int inflight;
    bool closed;
    bool sweeping;
    wy_consumed_stats_t st;
    wy_metric_t *m_duplicates, *m_swept;
};

typedef struct {
    wy_consumed_t *c;
    wy_consumed_claim_cb cb;
    void *ud;
} claim_t;

/* Memory goes when the helper is closed and no statement of it is in flight. */
static void release(wy_consumed_t *c)
{
    if (--c->inflight > 0 || !c->closed)
        return;
    wy_free(c->consumer);
    wy_free(c->sql_claim);
    wy_free(c->sql_sweep);
    wy_free(c);
}

static void on_claimed(int status, const PGresult *res, const char *err, void *ud)
{
    claim_t *cl = ud;
    wy_consumed_t *c = cl->c;
    bool first = false;
    if (status == WY_OK) {
        first = strcmp(PQcmdTuples((PGresult *)res), "1") == 0;
        if (first) {
            c->st.claimed++;
        } else {
            c->st.duplicates++;
            wy_metric_inc(c->m_duplicates);
        }
    }
    cl->cb(status, first, err, cl->ud);
    wy_free(cl);
    if (!c->closed && uv_now(c->loop) >= c->next_sweep_ms)
        wy_consumed_sweep(c);
    release(c);
}

int wy_consumed_claim(wy_consumed_t *c, wy_pg_tx_t *tx, const char *event_id,
                      wy_consumed_claim_cb cb, void *ud)
{
    if (!event_id || !*event_id || !cb || c->closed)
        return c->closed ? WY_ECANCELED : WY_EINVAL;
    claim_t *cl = wy_calloc(1, sizeof *cl);
    cl->c = c;
    cl->cb = cb;
    cl->ud = ud;
    const char *params[2] = {c->consumer, event_id};
    int rc = wy_pg_tx_query(tx, c->sql_claim, 2, params, on_claimed, cl);
    if (rc != WY_OK) {
        wy_free(cl);
        return rc;
    }
    c->inflight++;
    return WY_OK;
}

static void on_swept(int status, const PGresult *res, const char *err, void *ud)
{
    wy_consumed_t *c = ud;
    c->sweeping = false;
    if (status == WY_OK) {
        uint64_t n = strtoull(PQcmdTuples((PGresult *)res), NULL, 10);
        c->st.swept += n;
        wy_metric_add(c->m_swept, (double)n);
        /* A full batch: more rows are due; the next batch follows at once. */
        if (n >= c->sweep_batch && !c->closed)
            wy_consumed_sweep(c);
    } else {
        wy_log_warn("wy_consumed retention sweep failed", "consumer", c->consumer, "error",
                    err ? err : wy_strerror(status), NULL);
    }
    release(c);
}

void wy_consumed_sweep(wy_consumed_t *c)
{
    if (c->closed || c->sweeping)
        return;
    c->next_sweep_ms = uv_now(c->loop) + c->sweep_interval_ms;
    const char *params[3] = {c->consumer, c->retention, c->batch};
    if (wy_pg_query(c->pg, c->sql_sweep, 3, params, on_swept, c) != WY_OK)
        return; /* the next claim after the interval tries again */
    c->sweeping = true;
    c->inflight++;
}

int wy_consumed_new(uv_loop_t *loop, wy_pg_t *pg, const wy_consumed_opts_t *o, wy_consumed_t **out,
                    const char **err)
{
    *out = NULL;
    if (!o->svc || !*o->svc) {
        *err = "wy_consumed: svc is required";
        return WY_EINVAL;
    }
    if (!wy_pg_ident_ok(o->schema)) {
        *err = "wy_consumed: schema must be an identifier [A-Za-z_][A-Za-z0-9_]*";
        return WY_EINVAL;
    }
    size_t cn = o->consumer ? strlen(o->consumer) : 0;
    if (cn == 0 || cn > 200 ||
        strspn(o->consumer, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "0123456789._-") != cn) {
        *err = "wy_consumed: consumer must be 1..200 of [A-Za-z0-9._-]";
        return WY_EINVAL;
    }
    wy_consumed_t *c = wy_calloc(1, sizeof *c);
    c->loop = loop;
    c->pg = pg;
    c->consumer = wy_strdup(o->consumer);
    c->sweep_interval_ms = o->sweep_interval_ms ? o->sweep_interval_ms : 60000;
    c->sweep_batch = o->sweep_batch ? o->sweep_batch : 1000;
    snprintf(c->retention, sizeof c->retention, "%u", o->retention_s ? o->retention_s : 604800u);
    snprintf(c->batch, sizeof c->batch, "%u", c->sweep_batch);
    c->sql_claim = wy_sprintf("INSERT INTO %s.wy_consumed (consumer, event_id) VALUES ($1, $2) "
                              "ON CONFLICT DO NOTHING",
                              o->schema);
    /* Bounded: one statement deletes at most sweep_batch rows (oldest first). */
    c->sql_sweep = wy_sprintf("DELETE FROM %s.wy_consumed WHERE ctid = ANY(ARRAY("
                              "SELECT ctid FROM %s.wy_consumed WHERE consumer = $1 AND "
                              "applied_at < now() - make_interval(secs => $2::int) "
                              "ORDER BY applied_at LIMIT $3::int))",
                              o->schema, o->schema);
    char *name = wy_sprintf("wy_%s_consumed_duplicates_total", o->svc);
    char *lbl = wy_sprintf("consumer=\"%s\"", o->consumer);
    c->m_duplicates = wy_metrics_counter(
        name, "Kafka events whose event_id was already recorded in PostgreSQL (no second effect).",
        lbl);
    wy_free(name);
    name = wy_sprintf("wy_%s_consumed_swept_total", o->svc);
    c->m_swept =
        wy_metrics_counter(name, "Recorded event_ids deleted by the retention sweep.", lbl);
    wy_free(name);
    wy_free(lbl);
    c->inflight = 1;
    wy_consumed_sweep(c); /* rows left from before this start */
    *out = c;
    return WY_OK;
}

void wy_consumed_stats(const wy_consumed_t *c, wy_consumed_stats_t *out)
{
    *out = c->st;
}

void wy_consumed_close(wy_consumed_t *c)
{
    if (c->closed)
        return;
    c->closed = true;
    release(c);
}
