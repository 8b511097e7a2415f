/* wy_consumed — durable idempotency for Kafka consumers whose effect is in PostgreSQL: the
 * event_id is recorded in the same transaction as the effect, so an event redelivered after a
 * crash (effect committed, offset not yet stored) has no second effect. wy_daemon's in-memory
 * wy_seen stays the fast path in front of it; this is what survives a restart.
 *
 * Table. It lives in the consuming service's own schema and is created by a migration the
 * service includes (a service owns its schema; the daemon's migration runner applies it with the
 * rest, once, under its lock). Put this file as services/<svc>/migrations/NNN_consumed.sql:
 *
 *   CREATE TABLE wy_consumed (
 *       consumer   text        NOT NULL,
 *       event_id   text        NOT NULL,
 *       applied_at timestamptz NOT NULL DEFAULT now(),
 *       PRIMARY KEY (consumer, event_id)
 *   );
 *   CREATE INDEX wy_consumed_applied_at ON wy_consumed (applied_at);
 *
 * Use, in a handler (loop thread):
 *   wy_pg_begin → wy_consumed_claim(c, tx, env->event_id, cb)
 *     cb first:  queue the effect's statements on tx, commit, then wy_daemon_event_done
 *     cb !first: applied by an earlier committed transaction: roll back, wy_daemon_event_done
 * The claim is an INSERT ... ON CONFLICT DO NOTHING: two instances handling the same event at
 * once (a rebalance) serialize on the row; the second learns "already applied" once the first
 * commits (or claims it itself if the first rolled back).
 *
 * Retention: rows older than retention_s are deleted by a sweep in bounded batches (sweep_batch
 * rows per DELETE, the next batch at once while batches come back full): one at wy_consumed_new,
 * then at most every sweep_interval_ms, started by a claim (a consumer that receives no events adds
 * no rows; what it has is swept at its next event or start). Keep retention_s above the longest
 * time an event can be redelivered (the topic's retention): an event redelivered after its row was
 * swept would be applied again.
 *
 * Metrics (svc = opts.svc): wy_<svc>_consumed_duplicates_total{consumer} (claims that found the
 * event applied), wy_<svc>_consumed_swept_total{consumer} (rows deleted by retention).
 * All functions: loop thread only. */
#ifndef WY_CONSUMED_H
#define WY_CONSUMED_H

#include "wy_core.h"
#include "wy_pg.h"

#include <uv.h>

typedef struct wy_consumed wy_consumed_t;

typedef struct {
    const char *svc;    /* metric prefix wy_<svc>_; required */
    const char *schema; /* schema holding wy_consumed ([A-Za-z_][A-Za-z0-9_]*); required */
    /* Name recorded with each event_id and used as metric label, e.g. "actor.gameplay":
     * 1..200 of [A-Za-z0-9._-]; required. */
    const char *consumer;
    uint32_t retention_s;       /* age after which a row is deleted; 0 = 7 days (Kafka's default) */
    uint32_t sweep_interval_ms; /* least time between retention sweeps; 0 = 60000 */
    uint32_t sweep_batch;       /* rows deleted per statement; 0 = 1000 */
} wy_consumed_opts_t;

/* Creates the helper on pg's loop and starts a first retention sweep. Returns WY_OK and *out, or
 * WY_EINVAL with *err naming the bad option (static string). Free with wy_consumed_close. */
int wy_consumed_new(uv_loop_t *loop, wy_pg_t *pg, const wy_consumed_opts_t *opts,
                    wy_consumed_t **out, const char **err);

/* first: true = this transaction recorded event_id (do the effect in it, then commit);
 * false = a committed transaction recorded it before (counted as a duplicate: do nothing
 * more, roll back). status is the statement's status (wy_pg_cb); on an error the transaction
 * has failed: roll it back and give the message up without done (it is redelivered). */
typedef void (*wy_consumed_claim_cb)(int status, bool first, const char *err, void *ud);

/* Queues the claim of (consumer, event_id) on tx. Returns WY_OK (cb called once, from the loop)
 * or wy_pg_tx_query's error (cb not called). event_id is copied. */
int wy_consumed_claim(wy_consumed_t *c, wy_pg_tx_t *tx, const char *event_id,
                      wy_consumed_claim_cb cb, void *ud);

/* Starts a retention sweep now unless one is running (claims start them too). */
void wy_consumed_sweep(wy_consumed_t *c);

typedef struct {
    uint64_t claimed;    /* claims that recorded the event (first) */
    uint64_t duplicates; /* claims that found it recorded */
    uint64_t swept;      /* rows deleted by retention */
} wy_consumed_stats_t;

void wy_consumed_stats(const wy_consumed_t *c, wy_consumed_stats_t *out);

/* No new claim is accepted (WY_ECANCELED). A claim still running completes (its callback runs);
 * the memory is freed once no statement is in flight (at once if none). Call before pg is closed
 * (closing pg then cancels what is left). */
void wy_consumed_close(wy_consumed_t *c);

#endif
