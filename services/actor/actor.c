/* wy-actor: the daemon spec (dependencies, ports, configuration) and the service's life:
 * start() sets up the event store and the gRPC methods, stop() ends new work, and the
 * state is freed when the last operation in flight lets it go. */
#include "actor.h"
#include "rankings.h"
#include "txn.h"
#include "wy_log.h"

/* Offsets into actor_cfg_t: the daemon keeps the values (spec.config_size). */
static const wy_cfg_entry_t actor_config[] = {
    {"WY_ACTOR_SNAPSHOT_EVERY", WY_CFG_INT, "300", 1, 100000, NULL,
     "Events of one actor between two snapshots; loading reads at most about this many "
     "events after the latest snapshot.",
     WY_CFG_OFF(actor_cfg_t, snapshot_every), false},
    {"WY_ACTOR_SNAPSHOT_KEEP", WY_CFG_INT, "2", 1, 100, NULL,
     "Snapshots kept per actor (older ones are deleted when a new one is written).",
     WY_CFG_OFF(actor_cfg_t, snapshot_keep), false},
    {"WY_ACTOR_BATCH_MAX", WY_CFG_INT, "256", 1, 4096, NULL,
     "Most commands written in one group-commit transaction.", WY_CFG_OFF(actor_cfg_t, batch_max),
     false},
    {"WY_ACTOR_WRITE_BATCHES", WY_CFG_INT, "2", 1, 16, NULL,
     "Group-commit transactions in flight at once (each holds a PostgreSQL connection).",
     WY_CFG_OFF(actor_cfg_t, write_batches), false},
    {"WY_ACTOR_APPLY_BATCH_MAX", WY_CFG_INT, "256", 1, 4096, NULL,
     "Most commands one ApplyBatch call may carry; a larger call is refused whole "
     "(INVALID_ARGUMENT).",
     WY_CFG_OFF(actor_cfg_t, apply_batch_max), false},
    {"WY_ACTOR_MAX_RESIDENT", WY_CFG_INT, "100000", 1, 10000000, NULL,
     "Actors held in memory; past it the least recently used idle one is evicted (it "
     "reloads from its snapshot when next used).",
     WY_CFG_OFF(actor_cfg_t, max_resident), false},
    {"WY_ACTOR_MAX_QUEUE", WY_CFG_INT, "64", 1, 100000, NULL,
     "Commands waiting on one actor; more are refused with UNAVAILABLE (retry).",
     WY_CFG_OFF(actor_cfg_t, max_queue), false},
    {"WY_ACTOR_MAX_CHARACTERS", WY_CFG_INT, "8", 1, 64, NULL,
     "Characters (not deleted) one account may have.", WY_CFG_OFF(actor_cfg_t, max_characters),
     false},
    {"WY_ACTOR_RESTORE_WINDOW", WY_CFG_DURATION_MS, "168h", 0, 31622400000LL, NULL,
     "How long a deleted character can be restored (168h = 7 days).",
     WY_CFG_OFF(actor_cfg_t, restore_window_ms), false},
    {"WY_ACTOR_LEASE", WY_CFG_DURATION_MS, "3s", 1000, 300000, NULL,
     "Instance lease: an instance whose heartbeat is older than this is dead and its shards "
     "are taken over (at least twice WY_ACTOR_HEARTBEAT).",
     WY_CFG_OFF(actor_cfg_t, lease_ms), false},
    {"WY_ACTOR_HEARTBEAT", WY_CFG_DURATION_MS, "1s", 100, 60000, NULL,
     "Period of the lease renewal and of the ownership view (takeover of dead instances' "
     "shards, hand-off to instances that joined).",
     WY_CFG_OFF(actor_cfg_t, heartbeat_ms), false},
    {"WY_ACTOR_FORWARD_TIMEOUT", WY_CFG_DURATION_MS, "5s", 100, 60000, NULL,
     "Deadline of a request forwarded to the instance that owns the character.",
     WY_CFG_OFF(actor_cfg_t, forward_ms), false},
    {"WY_ACTOR_ADVERTISE_HOST", WY_CFG_STRING, "", 0, 0, NULL,
     "Host other wy-actor instances reach this one's gRPC port on (forwarding); empty = "
     "WY_BIND_HOST, or the host name when that is 0.0.0.0.",
     WY_CFG_OFF(actor_cfg_t, advertise_host), false},
    {"WY_ACTOR_PRUNE_EVENTS", WY_CFG_BOOL, "false", 0, 0, NULL,
     "Delete an actor's events at or below its oldest kept snapshot when a snapshot is "
     "written (the log then starts at that snapshot; off = keep the whole log).",
     WY_CFG_OFF(actor_cfg_t, prune_events), false},
    {"WY_ACTOR_AUDIT_LOG", WY_CFG_BOOL, "true", 0, 0, NULL,
     "One JSON log line (\"msg\":\"actor event\") per committed event.",
     WY_CFG_OFF(actor_cfg_t, audit_log), false},
    {"WY_ACTOR_TXN_TIMEOUT", WY_CFG_DURATION_MS, "5s", 100, 60000, NULL,
     "How long a cross-actor transaction (Transact) waits to hold its characters before it "
     "is aborted and released (the caller retries with the same txn_id).",
     WY_CFG_OFF(actor_cfg_t, txn_timeout_ms), false},
    {"WY_ACTOR_RANK_CHECK", WY_CFG_DURATION_MS, "5s", 100, 600000, NULL,
     "How often the rankings' marker key is checked in Redis; when it is gone (Redis lost "
     "the boards) they are rebuilt from PostgreSQL.",
     WY_CFG_OFF(actor_cfg_t, rank_check_ms), false},
    {"WY_ACTOR_TXN_ATTEMPTS_RETENTION", WY_CFG_DURATION_MS, "24h", 60000, 31622400000LL, NULL,
     "Age past which an actor.txn_attempts row (the outcome of one attempt of a transaction "
     "across instances) is deleted; at least 4 x (2 x WY_ACTOR_TXN_TIMEOUT + "
     "WY_ACTOR_FORWARD_TIMEOUT), the longest remote hold.",
     WY_CFG_OFF(actor_cfg_t, txn_attempts_retention_ms), false},
    {"WY_ACTOR_TXN_ATTEMPTS_SWEEP", WY_CFG_DURATION_MS, "60s", 100, 86400000, NULL,
     "How often the owner of shard 0 deletes the actor.txn_attempts rows past their "
     "retention.",
     WY_CFG_OFF(actor_cfg_t, txn_attempts_sweep_ms), false},
    {"WY_ACTOR_TXN_ATTEMPTS_SWEEP_BATCH", WY_CFG_INT, "1000", 1, 100000, NULL,
     "Most actor.txn_attempts rows one sweep statement deletes (a full batch is followed by "
     "the next at once).",
     WY_CFG_OFF(actor_cfg_t, txn_attempts_batch), false},
    {"WY_ACTOR_NPCS_FILE", WY_CFG_STRING, "", 0, 0, NULL,
     "JSON file of persistent NPCs created at start when missing ({\"npcs\": [{id, kind, "
     "name, zone, x, y, z, respawn_ms, stock}]}, services/actor/README.md); empty = none. A "
     "bad file stops the daemon with exit status 2 naming the entry.",
     WY_CFG_OFF(actor_cfg_t, npcs_file), false},
};

static int actor_start(wy_daemon_t *d, const char **err);
static void actor_stop(wy_daemon_t *d);
static size_t actor_busy(wy_daemon_t *d);

static const char *actor_unready(wy_daemon_t *d);

/* wy.gameplay (proto/gameplay.proto), shared by the instances (group "wy-actor"): each
 * event is applied once, by the owner of its character (gameplay.c). wy.npc.perception
 * comes with the NPC work. */
static const char *const gameplay_types[] = {"gameplay.event", NULL};
static const wy_daemon_sub_t actor_subs[] = {
    {"wy.gameplay", WY_SUB_SHARED, gameplay_types, actor_gameplay_event, NULL, NULL},
};

const wy_daemon_spec_t actor_daemon_spec = {
    .svc = "actor",
    .grpc_service = "wyvern.actor.Actor",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9105,
    .grpc_port = 9205,
    .config = actor_config,
    .nconfig = WY_ARRAY_LEN(actor_config),
    .config_size = sizeof(actor_cfg_t),
    .configure = actor_npcs_configure,
    .unconfigure = actor_npcs_unconfigure,
    .start = actor_start,
    .stop = actor_stop,
    .busy = actor_busy,
    .unready = actor_unready,
    .subs = actor_subs,
    /* wy.gameplay events being applied at once (a few group commits' worth): at the bound
     * the consumer pauses, which stalls the flow for about a second (wy_daemon.h). */
    .consumer_max_in_flight = 20000,
    .nsubs = WY_ARRAY_LEN(actor_subs),
    .helpers = WY_HELPER_CONSUMED, /* wy.actor is published from actor.events (publish.c) */
};

/* Not ready before the ownership view settled: until the first one no request can be
 * routed, and a joining instance waits for the shards handed to it. */
static const char *actor_unready(wy_daemon_t *d)
{
    actor_svc_t *svc = wy_daemon_state(d);
    return svc && actor_owners_settled(svc) ? NULL : "shard_ownership";
}

void actor_svc_ref(actor_svc_t *svc)
{
    svc->refs++;
}

void actor_svc_unref(actor_svc_t *svc)
{
    if (--svc->refs > 0)
        return;
    actor_store_free(svc);
    wy_map_free(svc->rholds); /* empty: every hold held a reference */
    wy_daemon_set_state(svc->d, NULL);
    wy_free(svc);
}

static int actor_start(wy_daemon_t *d, const char **err)
{
    const actor_cfg_t *cfg = wy_daemon_config(d);
    if (cfg->lease_ms < 2 * cfg->heartbeat_ms) {
        *err = "WY_ACTOR_LEASE must be at least twice WY_ACTOR_HEARTBEAT";
        return WY_EINVAL;
    }
    if (actor_retention_check(cfg, err) != WY_OK)
        return WY_EINVAL;
    actor_svc_t *svc = wy_calloc(1, sizeof *svc);
    svc->d = d;
    svc->cfg = cfg;
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
    svc->m_shards = wy_metrics_gauge("wy_actor_shards", "Shards this instance owns.", NULL);
    svc->m_takeovers = wy_metrics_counter(
        "wy_actor_shards_taken_total", "Shards this instance took (takeover or hand-off).", NULL);
    svc->m_fenced = wy_metrics_counter(
        "wy_actor_fenced_total", "Writes rejected by the fence (the shard had a new owner).", NULL);
    svc->m_forwarded =
        wy_metrics_counter("wy_actor_forwarded_total",
                           "Requests forwarded to the instance owning the character.", NULL);
    const char *g = "wy.gameplay events, by outcome.";
    svc->m_gp_applied = wy_metrics_counter("wy_actor_gameplay_total", g, "result=\"applied\"");
    svc->m_gp_duplicate = wy_metrics_counter("wy_actor_gameplay_total", g, "result=\"duplicate\"");
    svc->m_gp_refused = wy_metrics_counter("wy_actor_gameplay_total", g, "result=\"refused\"");
    svc->m_gp_invalid = wy_metrics_counter("wy_actor_gameplay_total", g, "result=\"invalid\"");
    svc->m_gp_retried = wy_metrics_counter("wy_actor_gameplay_total", g, "result=\"retried\"");
    /* From the event's producer timestamp (Envelope.timestamp_ms, whole ms) to its effect
     * committed: what a game server waits for an XP gain to be durable. */
    static const double lag_bounds[] = {0.001, 0.002,  0.003, 0.004, 0.005, 0.006, 0.008,
                                        0.01,  0.0125, 0.015, 0.02,  0.025, 0.03,  0.04,
                                        0.05,  0.075,  0.1,   0.15,  0.2,   0.3,   0.5,
                                        0.75,  1,      2,     5,     10,    30,    60};
    svc->m_gp_lag = wy_metrics_histogram(
        "wy_actor_gameplay_lag_seconds",
        "wy.gameplay events done (applied, duplicate or refused): time from the producer's "
        "timestamp to the effect committed and the offset storable.",
        NULL, lag_bounds, WY_ARRAY_LEN(lag_bounds));
    svc->m_published = wy_metrics_counter(
        "wy_actor_published_total", "Events published on wy.actor (acknowledged by Kafka).", NULL);
    svc->m_publish_failed =
        wy_metrics_counter("wy_actor_publish_failures_total",
                           "wy.actor publications that failed (published again later).", NULL);
    actor_gameplay_start(svc);
    actor_publish_start(svc);
    actor_store_start(svc);
    actor_txn_start(svc);
    actor_rank_start(svc);
    actor_retention_start(svc);
    actor_npcs_start(svc);
    return actor_grpc_register(d, err);
}

static void actor_stop(wy_daemon_t *d)
{
    actor_svc_t *svc = wy_daemon_state(d);
    if (!svc || svc->stopping)
        return;
    actor_gameplay_stop(svc);
    actor_publish_stop(svc);
    actor_store_stop(svc);
    actor_rank_stop(svc);
    actor_txn_stop(svc);
    actor_retention_stop(svc);
    actor_npcs_stop(svc);
    actor_svc_unref(svc);
}

static size_t actor_busy(wy_daemon_t *d)
{
    actor_svc_t *svc = wy_daemon_state(d);
    return svc ? svc->busy : 0;
}
