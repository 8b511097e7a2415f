/* wy-actor: the daemon spec (dependencies, ports, configuration) and the service's life:
 * start() sets up the event store and the gRPC methods, stop() ends new work, and the
 * state is freed when the last operation in flight lets it go. */
#include "actor.h"
#include "rankings.h"
#include "txn.h"
#include "wy_log.h"

actor_cfg_t actor_cfg;

static const wy_cfg_entry_t actor_config[] = {
    {"WY_ACTOR_SNAPSHOT_EVERY", WY_CFG_INT, "300", 1, 100000, NULL,
     "Events of one actor between two snapshots; loading reads at most about this many "
     "events after the latest snapshot.",
     &actor_cfg.snapshot_every, false},
    {"WY_ACTOR_SNAPSHOT_KEEP", WY_CFG_INT, "2", 1, 100, NULL,
     "Snapshots kept per actor (older ones are deleted when a new one is written).",
     &actor_cfg.snapshot_keep, false},
    {"WY_ACTOR_BATCH_MAX", WY_CFG_INT, "256", 1, 4096, NULL,
     "Most commands written in one group-commit transaction.", &actor_cfg.batch_max, false},
    {"WY_ACTOR_WRITE_BATCHES", WY_CFG_INT, "2", 1, 16, NULL,
     "Group-commit transactions in flight at once (each holds a PostgreSQL connection).",
     &actor_cfg.write_batches, false},
    {"WY_ACTOR_MAX_RESIDENT", WY_CFG_INT, "100000", 1, 10000000, NULL,
     "Actors held in memory; past it the least recently used idle one is evicted (it "
     "reloads from its snapshot when next used).",
     &actor_cfg.max_resident, false},
    {"WY_ACTOR_MAX_QUEUE", WY_CFG_INT, "64", 1, 100000, NULL,
     "Commands waiting on one actor; more are refused with UNAVAILABLE (retry).",
     &actor_cfg.max_queue, false},
    {"WY_ACTOR_MAX_CHARACTERS", WY_CFG_INT, "8", 1, 64, NULL,
     "Characters (not deleted) one account may have.", &actor_cfg.max_characters, false},
    {"WY_ACTOR_RESTORE_WINDOW", WY_CFG_DURATION_MS, "168h", 0, 31622400000LL, NULL,
     "How long a deleted character can be restored (168h = 7 days).", &actor_cfg.restore_window_ms,
     false},
    {"WY_ACTOR_LEASE", WY_CFG_DURATION_MS, "10s", 1000, 300000, NULL,
     "Shard lease written when this instance claims its shards (takeover on expiry comes "
     "with multi-instance ownership).",
     &actor_cfg.lease_ms, false},
    {"WY_ACTOR_TXN_TIMEOUT", WY_CFG_DURATION_MS, "5s", 100, 60000, NULL,
     "How long a cross-actor transaction (Transact) waits to hold its characters before it "
     "is aborted and released (the caller retries with the same txn_id).",
     &actor_cfg.txn_timeout_ms, false},
    {"WY_ACTOR_RANK_CHECK", WY_CFG_DURATION_MS, "5s", 100, 600000, NULL,
     "How often the rankings' marker key is checked in Redis; when it is gone (Redis lost "
     "the boards) they are rebuilt from PostgreSQL.",
     &actor_cfg.rank_check_ms, false},
};

static int actor_start(wy_daemon_t *d, const char **err);
static void actor_stop(wy_daemon_t *d);
static size_t actor_busy(wy_daemon_t *d);

/* No Kafka subscriptions yet. The topics this daemon will consume
 * (ARCHITECTURE.md, section 1: "wy.gameplay", "wy.npc.perception") get rows in the spec's `subs`
 * table together with their handlers; until then it has no consumer, so its
 * group "wy-actor" commits nothing and the first handler starts at the
 * earliest event. */
const wy_daemon_spec_t actor_daemon_spec = {
    .svc = "actor",
    .grpc_service = "wyvern.actor.Actor",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9105,
    .grpc_port = 9205,
    .config = actor_config,
    .nconfig = WY_ARRAY_LEN(actor_config),
    .start = actor_start,
    .stop = actor_stop,
    .busy = actor_busy,
};

void actor_svc_ref(actor_svc_t *svc)
{
    svc->refs++;
}

void actor_svc_unref(actor_svc_t *svc)
{
    if (--svc->refs > 0)
        return;
    actor_store_free(svc);
    wy_daemon_set_state(svc->d, NULL);
    wy_free(svc);
}

static int actor_start(wy_daemon_t *d, const char **err)
{
    actor_svc_t *svc = wy_calloc(1, sizeof *svc);
    svc->d = d;
    svc->loop = wy_daemon_loop(d);
    svc->refs = 1; /* released by stop() */
    wy_daemon_set_state(d, svc);
    static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
    static const double load_bounds[] = {0, 1, 10, 50, 100, 300, 1000, 10000, 100000};
    svc->m_resident = wy_metrics_gauge("wy_actor_resident", "Actors held in memory.", NULL);
    svc->m_batch_size =
        wy_metrics_histogram("wy_actor_batch_commands", "Requests per group-commit batch.", NULL,
                             batch_bounds, WY_ARRAY_LEN(batch_bounds));
    svc->m_load_events = wy_metrics_histogram(
        "wy_actor_load_events", "Events read to load one actor (after its latest snapshot).", NULL,
        load_bounds, WY_ARRAY_LEN(load_bounds));
    const char *h = "Commands answered, by result.";
    svc->m_cmd_ok = wy_metrics_counter("wy_actor_commands_total", h, "result=\"ok\"");
    svc->m_cmd_replayed = wy_metrics_counter("wy_actor_commands_total", h, "result=\"replayed\"");
    svc->m_cmd_refused = wy_metrics_counter("wy_actor_commands_total", h, "result=\"refused\"");
    svc->m_cmd_failed = wy_metrics_counter("wy_actor_commands_total", h, "result=\"failed\"");
    svc->m_snapshots = wy_metrics_counter("wy_actor_snapshots_total", "Snapshots written.", NULL);
    actor_store_start(svc);
    actor_txn_start();
    actor_rank_start(svc);
    return actor_grpc_register(d, err);
}

static void actor_stop(wy_daemon_t *d)
{
    actor_svc_t *svc = wy_daemon_state(d);
    if (!svc || svc->stopping)
        return;
    actor_store_stop(svc);
    actor_rank_stop(svc);
    actor_svc_unref(svc);
}

static size_t actor_busy(wy_daemon_t *d)
{
    actor_svc_t *svc = wy_daemon_state(d);
    return svc ? svc->busy : 0;
}
