/* wy-actor: retention of actor.txn_attempts. A row decides one attempt of a transaction
 * with a side on another instance ('committed' by the coordinator's statement, 'aborted' by
 * the remote owner's settle); once no hold of that attempt can still settle (hold_ms after
 * the hold was taken, plus a settle), the row has done its job. Rows older than
 * WY_ACTOR_TXN_ATTEMPTS_RETENTION are deleted every WY_ACTOR_TXN_ATTEMPTS_SWEEP, at most
 * WY_ACTOR_TXN_ATTEMPTS_SWEEP_BATCH per statement (a full batch runs the next one at once).
 * One instance sweeps: the owner of shard 0, like the wy.actor publisher. Loop thread. */
#include "actor.h"
#include "wy_log.h"

#include <stdio.h>
#include <stdlib.h>

static const wy_pg_stmt_t sql_sweep = {
    "actor_txn_attempts_sweep",
    "DELETE FROM actor.txn_attempts WHERE attempt_id = ANY(ARRAY(SELECT attempt_id FROM "
    "actor.txn_attempts WHERE ts < now() - $1::bigint * interval '1 millisecond' ORDER BY ts "
    "LIMIT $2::int))",
    2};

struct actor_retention {
    actor_svc_t *svc;
    uv_timer_t timer;
    bool sweeping;
    wy_metric_t *m_swept;
};

static void sweep(actor_retention_t *rt);

static void on_swept(int status, const PGresult *res, const char *err, void *ud)
{
    actor_retention_t *rt = ud;
    actor_svc_t *svc = rt->svc;
    rt->sweeping = false;
    svc->busy--;
    if (status == WY_OK) {
        long long n = strtoll(PQcmdTuples((PGresult *)res), NULL, 10);
        wy_metric_add(rt->m_swept, (double)n);
        if (n >= svc->cfg->txn_attempts_batch && !svc->stopping)
            sweep(rt); /* more are due */
    } else {
        wy_log_warn("actor.txn_attempts retention sweep failed", "error",
                    err ? err : wy_strerror(status), NULL);
    }
    actor_svc_unref(svc);
}

static void sweep(actor_retention_t *rt)
{
    actor_svc_t *svc = rt->svc;
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    if (rt->sweeping || svc->stopping || !pg || svc->epoch[0] == 0)
        return;
    char age[24], batch[24];
    snprintf(age, sizeof age, "%lld", (long long)svc->cfg->txn_attempts_retention_ms);
    snprintf(batch, sizeof batch, "%lld", (long long)svc->cfg->txn_attempts_batch);
    const char *prm[] = {age, batch};
    if (wy_pg_exec(pg, &sql_sweep, prm, on_swept, rt) != WY_OK)
        return; /* the next tick tries again */
    rt->sweeping = true;
    svc->busy++;
    actor_svc_ref(svc);
}

static void on_tick(uv_timer_t *t)
{
    sweep(t->data);
}

static void on_closed(uv_handle_t *h)
{
    actor_retention_t *rt = h->data;
    actor_svc_t *svc = rt->svc;
    svc->retention = NULL;
    wy_free(rt);
    actor_svc_unref(svc);
}

int actor_retention_check(const actor_cfg_t *cfg, const char **err)
{
    /* A row must outlive every hold that may still settle its attempt: a settle that no
     * longer finds the coordinator's 'committed' row would release a committed side
     * unchanged. The longest hold is 2 x WY_ACTOR_TXN_TIMEOUT + WY_ACTOR_FORWARD_TIMEOUT. */
    if (cfg->txn_attempts_retention_ms < 4 * (2 * cfg->txn_timeout_ms + cfg->forward_ms)) {
        *err = "WY_ACTOR_TXN_ATTEMPTS_RETENTION must be at least 4 x (2 x WY_ACTOR_TXN_TIMEOUT + "
               "WY_ACTOR_FORWARD_TIMEOUT)";
        return WY_EINVAL;
    }
    return WY_OK;
}

void actor_retention_start(actor_svc_t *svc)
{
    actor_retention_t *rt = wy_calloc(1, sizeof *rt);
    rt->svc = svc;
    rt->m_swept =
        wy_metrics_counter("wy_actor_txn_attempts_swept_total",
                           "actor.txn_attempts rows deleted by the retention sweep.", NULL);
    svc->retention = rt;
    actor_svc_ref(svc); /* the timer handle */
    uv_timer_init(svc->loop, &rt->timer);
    rt->timer.data = rt;
    uint64_t every = (uint64_t)svc->cfg->txn_attempts_sweep_ms;
    uv_timer_start(&rt->timer, on_tick, every, every);
}

void actor_retention_stop(actor_svc_t *svc)
{
    actor_retention_t *rt = svc->retention;
    if (!rt || uv_is_closing((uv_handle_t *)&rt->timer))
        return;
    uv_close((uv_handle_t *)&rt->timer, on_closed);
}
