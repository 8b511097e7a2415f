/* wy_outbox — the transactional outbox: an event is written as a row in the same PostgreSQL
 * transaction as the effect it reports, and a relay on the loop publishes committed rows to Kafka
 * and deletes each once the broker acknowledged it. "Committed but never published" cannot
 * happen: a daemon that dies between its commit and the produce leaves the row, and the relay of
 * the next start (or of another instance) publishes it.
 *
 * Delivery is at-least-once with a stable event_id: the Envelope's event_id is the row's, fixed
 * at wy_outbox_add. If the relay published a row and the process died before the row was deleted,
 * the row is published again after the restart with the same event_id: consumers dedupe on
 * event_id (wy_seen in memory, wy_consumed in PostgreSQL). A crash between commit and produce
 * gives exactly one publication (the restart's).
 *
 * Table. It lives in the producing service's own schema, created by a migration the service
 * includes (services/<svc>/migrations/NNN_outbox.sql):
 *
 *   CREATE TABLE wy_outbox (
 *       id       bigserial PRIMARY KEY,
 *       event_id text   NOT NULL UNIQUE,
 *       topic    text   NOT NULL,
 *       key      text   NOT NULL DEFAULT '',
 *       type     text   NOT NULL,
 *       payload  bytea  NOT NULL,
 *       ts_ms    bigint NOT NULL
 *   );
 *
 * Relay. One pass: a transaction takes pg_try_advisory_xact_lock (one relaying instance per
 * schema at a time; the others skip the pass) and reads the oldest `batch` rows by id in the same
 * statement (one round trip after BEGIN), produces them in id order (wy_kafka_produce_event,
 * Kafka key = row key), waits for every delivery report, deletes the acknowledged rows and
 * commits with synchronous_commit off (the relay does not wait for that WAL flush: a crash that
 * loses the DELETE publishes the rows again, duplicates that at-least-once allows; it never loses
 * one, since the rows were published before). The next pass starts at once when the pass was full
 * or a commit woke the relay meanwhile; otherwise after poll_interval_ms (which also picks up rows
 * of a crashed process, and retries failures). The transaction stays open while the pass's
 * messages are in flight (normally milliseconds; at most the producer's message timeout): if it
 * dies first (tx timeout), the acknowledged rows are not deleted and are published again next pass
 * (duplicates, never loss).
 *
 * Order. Rows are produced in id order (insertion order) and the idempotent producer keeps that
 * order per partition, so events of one key arrive in the order their rows were written, provided
 * the service serializes the transactions of one key (one writer per key). A row whose delivery
 * failed stays and is produced again in a later pass; librdkafka fails a partition's queued
 * messages together on a timeout, so later rows of that key normally fail with it and keep their
 * order, but a later row delivered in the same pass is not held back.
 *
 * Metrics (svc = opts.svc): wy_<svc>_outbox_pending (rows waiting at each pass: the rows it read
 * when fewer than `batch`, else counted, capped at 100000, at most once a second),
 * wy_<svc>_outbox_relayed_total (rows acknowledged and deleted), wy_<svc>_outbox_failures_total
 * (rows whose produce or delivery failed; retried).
 *
 * All functions: loop thread only. */
#ifndef WY_OUTBOX_H
#define WY_OUTBOX_H

#include "wy_core.h"
#include "wy_kafka.h"
#include "wy_metrics.h"
#include "wy_pg.h"

#include <uv.h>

typedef struct wy_outbox wy_outbox_t;

typedef struct {
    const char *svc;           /* metric prefix wy_<svc>_; required */
    const char *schema;        /* schema holding wy_outbox; required */
    uint32_t batch;            /* rows per relay pass (held in memory); 0 = 256, max 10000 */
    uint32_t poll_interval_ms; /* idle / retry period of the relay; 0 = 1000 */
} wy_outbox_opts_t;

/* Creates the outbox and starts its relay (a first pass runs at once: rows a crashed process
 * left are published). The producer and pool must outlive wy_outbox_close. Returns WY_OK and
 * *out, or WY_EINVAL with *err naming the bad option (static string). */
int wy_outbox_new(uv_loop_t *loop, wy_pg_t *pg, wy_kafka_producer_t *producer,
                  const wy_outbox_opts_t *opts, wy_outbox_t **out, const char **err);

/* Queues the INSERT of one event row on tx: a fresh UUIDv4 event_id (written to event_id_out,
 * may be NULL), the wall-clock time, topic, key (NULL = none), type and payload (copied; may be
 * NULL when payload_len is 0). The row becomes visible to the relay when tx commits; a failed
 * INSERT fails tx (its commit then returns WY_ESTATE), so the effect is not committed without
 * its event. Returns WY_OK, WY_EINVAL (empty topic/type, type or key over WY_KAFKA_MAX_ID
 * bytes), WY_ETOOBIG (payload over WY_KAFKA_MAX_ENVELOPE) or wy_pg_tx_query's error. */
int wy_outbox_add(wy_outbox_t *ob, wy_pg_tx_t *tx, const char *topic, const char *key,
                  const char *type, const void *payload, size_t payload_len, char event_id_out[37]);

/* One event row for a service's own statement that inserts it together with its effect (a
 * data-modifying CTE: one statement, atomic without BEGIN/COMMIT round trips):
 *
 *   WITH s AS (INSERT INTO ... RETURNING ...)
 *   INSERT INTO <schema>.wy_outbox (event_id, topic, key, type, payload, ts_ms)
 *   SELECT $n, $n+1, $n+2, $n+3, $n+4::bytea, $n+5::bigint FROM s
 *
 * with row.params[0..5] bound to those six parameters, in that order. Same checks and codes
 * as wy_outbox_add (which is built on it). The params point into row and into topic/key/type
 * (not copied): keep them until the statement is submitted (wy_pg copies them), then
 * wy_outbox_row_free. After the statement succeeded, wy_outbox_wake publishes the row now. */
typedef struct {
    char event_id[37]; /* fresh UUIDv4 */
    char ts_ms[24];    /* wall clock */
    char *payload_hex; /* bytea hex text, owned */
    const char *params[6];
} wy_outbox_row_t;

int wy_outbox_row_init(wy_outbox_row_t *row, const char *topic, const char *key, const char *type,
                       const void *payload, size_t payload_len);
void wy_outbox_row_free(wy_outbox_row_t *row);

/* wy_pg_tx_commit(tx, cb, ud) that wakes the relay once the commit succeeded (after cb
 * returns), so the events are published right away instead of at the next poll. */
int wy_outbox_commit(wy_outbox_t *ob, wy_pg_tx_t *tx, wy_pg_end_cb cb, void *ud);

/* Wakes the relay (for a service that commits outbox rows another way). */
void wy_outbox_wake(wy_outbox_t *ob);

/* Observes in histogram (seconds; the owner's, outliving ob; NULL = none), per row the broker
 * acknowledged, the time from the row's ts_ms (wall clock) to that acknowledgement: how long the
 * relay and Kafka took to publish it. */
void wy_outbox_set_lag_metric(wy_outbox_t *ob, wy_metric_t *histogram);

typedef struct {
    uint64_t added;    /* rows queued by wy_outbox_add */
    uint64_t relayed;  /* rows acknowledged and deleted */
    uint64_t failures; /* rows whose produce or delivery failed */
    uint64_t passes;   /* relay passes that read rows */
    uint64_t pending;  /* rows counted at the last pass (capped at 100000) */
} wy_outbox_stats_t;

void wy_outbox_stats(const wy_outbox_t *ob, wy_outbox_stats_t *out);

/* True when no relay pass is in flight. */
bool wy_outbox_idle(const wy_outbox_t *ob);

/* Stops the relay: no new pass starts; a pass in flight finishes (its rows are deleted if the
 * pool is still open, else published again at the next start: duplicates, not loss). Then the
 * outbox is freed and done(ud) is called (may be NULL) from the loop. wy_daemon runs one for a
 * service (WY_HELPER_OUTBOX): its drain waits for wy_outbox_idle, then it closes the outbox before
 * the producer and the pool. */
void wy_outbox_close(wy_outbox_t *ob, void (*done)(void *ud), void *ud);

#endif
