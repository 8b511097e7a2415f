/* wy-kafkatest — a test daemon (a real wy_daemon, schema "kafkatest") for the Kafka integration
 * tests of durable idempotency and the outbox:
 *   - a shared subscription to WY_KAFKATEST_TOPIC whose handler, for each "test.event", records
 *     the event_id with wy_consumed and inserts a row into kafkatest.effects in ONE transaction;
 *   - POST /emit {"topic": T, "key": K} on the ops port: one transaction inserts an effects row
 *     and a wy_outbox event "test.emitted" on T, committed with wy_outbox_commit; answers
 *     {"event_id": ...} once committed.
 * WY_KAFKATEST_CRASH makes the process kill itself (SIGKILL) at an exact point:
 *   after_effect_commit  the consumer's effect committed, its offset not yet stored;
 *   after_outbox_commit  the outbox row committed, the relay not yet woken.
 * The outbox and wy_consumed are the daemon's helpers (WY_HELPER_*), as a service uses them.
 * Migrations: tests/tools/kafkatest-migrations (WY_KAFKATEST_MIGRATIONS_DIR). */
#include "wy_daemon.h"
#include "wy_log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *crash_at, *topic_cfg;

static const wy_cfg_entry_t kt_config[] = {
    {"WY_KAFKATEST_TOPIC", WY_CFG_STRING, "wy.kafkatest", 0, 0, NULL,
     "Topic of the shared subscription (read at start, before the table).", &topic_cfg, false},
    {"WY_KAFKATEST_CRASH", WY_CFG_ENUM, "none", 0, 0,
     "none|after_effect_commit|after_outbox_commit", "Point where the daemon kills itself.",
     &crash_at, false},
};

static void crash_if(const char *point)
{
    if (strcmp(crash_at, point) == 0) {
        wy_log_warn("crashing on purpose", "point", point, NULL);
        raise(SIGKILL);
    }
}

/* ---- consumer: claim + effect in one transaction -------------------------------------------- */

static void on_effect_rollback_ignored(int status, const char *err, void *ud)
{
    (void)status;
    (void)err;
    (void)ud;
}

typedef struct {
    wy_daemon_t *d;
    wy_kafka_msg_t *msg;
    const Wyvern__Envelope *env;
    wy_pg_tx_t *tx;
} event_t;

static void event_give_up(event_t *ev, const char *why, int status)
{
    wy_log_error("event not applied (redelivered after a restart)", "event_id", ev->env->event_id,
                 "why", why, "error", wy_strerror(status), NULL);
    wy_kafka_msg_release(ev->msg);
    wy_free(ev);
}

static void on_event_committed(int status, const char *err, void *ud)
{
    event_t *ev = ud;
    if (status != WY_OK) {
        event_give_up(ev, err ? err : "commit", status);
        return;
    }
    wy_log_info("effect applied", "event_id", ev->env->event_id, NULL);
    crash_if("after_effect_commit");
    wy_daemon_event_done(ev->d, ev->msg, ev->env);
    wy_free(ev);
}

static void on_rolled_back(int status, const char *err, void *ud)
{
    (void)status;
    (void)err;
    event_t *ev = ud;
    wy_log_info("event already applied", "event_id", ev->env->event_id, NULL);
    wy_daemon_event_done(ev->d, ev->msg, ev->env);
    wy_free(ev);
}

static void on_effect(int status, const PGresult *res, const char *err, void *ud)
{
    (void)status;
    (void)res;
    (void)err;
    (void)ud; /* a failure fails the transaction: its commit reports it */
}

static void on_claimed(int status, bool first, const char *err, void *ud)
{
    event_t *ev = ud;
    int rc;
    if (status != WY_OK) {
        wy_pg_tx_rollback(ev->tx, on_effect_rollback_ignored, NULL);
        event_give_up(ev, err ? err : "claim", status);
        return;
    }
    if (!first) {
        if (wy_pg_tx_rollback(ev->tx, on_rolled_back, ev) != WY_OK)
            event_give_up(ev, "rollback", WY_ECANCELED);
        return;
    }
    const char *params[1] = {ev->env->event_id};
    rc = wy_pg_tx_query(ev->tx, "INSERT INTO kafkatest.effects (event_id) VALUES ($1)", 1, params,
                        on_effect, NULL);
    if (rc == WY_OK)
        rc = wy_pg_tx_commit(ev->tx, on_event_committed, ev);
    if (rc != WY_OK)
        event_give_up(ev, "effect", rc);
}

static void on_event_begun(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    event_t *ev = ud;
    if (status != WY_OK) {
        event_give_up(ev, err ? err : "begin", status);
        return;
    }
    ev->tx = tx;
    int rc = wy_consumed_claim(wy_daemon_consumed(ev->d), tx, ev->env->event_id, on_claimed, ev);
    if (rc != WY_OK) {
        wy_pg_tx_rollback(tx, on_effect_rollback_ignored, NULL);
        event_give_up(ev, "claim", rc);
    }
}

static void on_test_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env)
{
    event_t *ev = wy_calloc(1, sizeof *ev);
    ev->d = d;
    ev->msg = msg;
    ev->env = env;
    int rc = wy_pg_begin(wy_daemon_pg(d), on_event_begun, ev);
    if (rc != WY_OK)
        event_give_up(ev, "begin", rc);
}

/* ---- producer: effect + outbox row in one transaction ---------------------------------------- */

typedef struct {
    wy_daemon_t *d;
    wy_http_req_t *req;
    char event_id[37];
} emit_t;

static void on_emit_committed(int status, const char *err, void *ud)
{
    emit_t *em = ud;
    if (status != WY_OK) {
        wy_http_respond_error(em->req, 503, "UNAVAILABLE", err ? err : wy_strerror(status));
    } else {
        wy_log_info("outbox event committed", "event_id", em->event_id, NULL);
        crash_if("after_outbox_commit");
        wy_http_respond_json(em->req, 200, json_pack("{s:s}", "event_id", em->event_id));
    }
    wy_free(em);
}

static void on_emit_begun(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    emit_t *em = ud;
    if (status != WY_OK) {
        wy_http_respond_error(em->req, 503, "UNAVAILABLE", err ? err : wy_strerror(status));
        wy_free(em);
        return;
    }
    json_t *body = wy_http_req_json(em->req);
    const char *topic = json_string_value(json_object_get(body, "topic"));
    const char *key = json_string_value(json_object_get(body, "key"));
    int rc = wy_outbox_add(wy_daemon_outbox(em->d), tx, topic, key, "test.emitted", "emitted", 7,
                           em->event_id);
    if (rc == WY_OK) {
        const char *params[1] = {em->event_id};
        rc = wy_pg_tx_query(tx, "INSERT INTO kafkatest.effects (event_id) VALUES ($1)", 1, params,
                            on_effect, NULL);
    }
    if (rc == WY_OK)
        rc = wy_outbox_commit(wy_daemon_outbox(em->d), tx, on_emit_committed, em);
    if (rc != WY_OK) {
        wy_pg_tx_rollback(tx, on_effect_rollback_ignored, NULL);
        wy_http_respond_err(em->req, rc, "cannot write the event");
        wy_free(em);
    }
}

static void handle_emit(wy_http_req_t *req, void *ud)
{
    wy_daemon_t *d = ud;
    emit_t *em = wy_calloc(1, sizeof *em);
    em->d = d;
    em->req = req;
    int rc = wy_pg_begin(wy_daemon_pg(d), on_emit_begun, em);
    if (rc != WY_OK) {
        wy_http_respond_err(req, rc, "cannot begin");
        wy_free(em);
    }
}

/* ---- daemon ---------------------------------------------------------------------------------- */

static int kt_start(wy_daemon_t *d, const char **err)
{
    (void)err;
    return wy_http_route(wy_daemon_ops(d), "POST", "/emit", handle_emit, d);
}

/* The row's partitions, as the actor service will see them to tie ownership to them. */
static void on_partitions(wy_daemon_t *d, wy_kafka_rebalance_t kind,
                          const wy_kafka_partition_t *parts, size_t n)
{
    (void)d;
    char count[16];
    snprintf(count, sizeof count, "%zu", n);
    wy_log_info("row partitions", "kind",
                kind == WY_KAFKA_ASSIGNED  ? "assigned"
                : kind == WY_KAFKA_REVOKED ? "revoked"
                                           : "lost",
                "topic", parts[0].topic, "count", count, NULL);
}

static const char *const kt_types[] = {"test.event", NULL};

int main(int argc, char **argv)
{
    /* The table is built before wy_daemon_main reads the configuration. */
    const char *topic = getenv("WY_KAFKATEST_TOPIC");
    wy_daemon_sub_t subs[] = {{.topic = topic && *topic ? topic : "wy.kafkatest",
                               .mode = WY_SUB_SHARED,
                               .types = kt_types,
                               .handler = on_test_event,
                               .on_partitions = on_partitions}};
    wy_daemon_spec_t spec = {.svc = "kafkatest",
                             .grpc_service = "wyvern.kafkatest.KafkaTest",
                             .deps = WY_DEP_PG | WY_DEP_KAFKA,
                             .ops_port = 0,
                             .grpc_port = 0,
                             .config = kt_config,
                             .nconfig = WY_ARRAY_LEN(kt_config),
                             .subs = subs,
                             .nsubs = 1,
                             .helpers = WY_HELPER_OUTBOX | WY_HELPER_CONSUMED,
                             .start = kt_start};
    return wy_daemon_main(argc, argv, &spec);
}
