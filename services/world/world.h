/* wy-world: the zone catalog, the registry of game instances, placement of characters
 * into zone instances and where every character is. State lives in Redis (key map in
 * services/world/README.md) so that any number of replicas serve the same world; each
 * replica keeps only the catalog (read-only) and a cache of the registry. Loop thread. */
#ifndef WORLD_H
#define WORLD_H

#include "wy_daemon.h"
#include "wy_metrics.h"
#include "zones.h"
#include "world.pb-c.h"

extern const wy_daemon_spec_t world_daemon_spec;

#define WORLD_GAME_ID_MAX 64
#define WORLD_ADDR_MAX    255
#define WORLD_REF_MAX     64 /* account, character and party ids */
#define WORLD_MAX_GAMES   1024
#define WORLD_INST_MAX    (ZONE_ID_MAX + 24) /* "<zone>#<n>" */

/* Which game hosts one zone instance, as this replica last saw it. */
typedef struct {
    char inst[WORLD_INST_MAX + 1];
    char game[WORLD_GAME_ID_MAX + 1];
} world_host_t;

/* The hosts of one zone's instances (index = the zone's index in the catalog). */
typedef struct {
    world_host_t *hosts;
    size_t n;
} world_zone_hosts_t;

/* One game instance as the registry cache knows it (from its last heartbeat). */
typedef struct {
    Wyvern__World__HeartbeatRequest *hb; /* unpacked; owned */
    uint64_t seen_ms;                    /* wall clock of the last heartbeat */
    bool live;                           /* seen within dead_after */
} world_game_t;

/* The daemon's configuration (world_daemon_spec.config_size): the daemon owns it and its
 * strings, filled before configure and start, valid until wy_daemon_main returns. */
typedef struct {
    char *zones_dir;
    char *start_zone;
    int64_t dead_after_ms, placement_ttl_ms, forget_after_ms;
    /* Loaded from zones_dir by the spec's configure, read-only afterwards, released by its
     * unconfigure when the daemon frees this struct. */
    zone_catalog_t catalog;
} world_cfg_t;

typedef struct {
    wy_daemon_t *d;
    const world_cfg_t *cfg; /* wy_daemon_config(d) */
    const zone_catalog_t *cat;
    const zone_t *start_zone;
    uint64_t dead_after_ms, placement_ttl_ms, forget_after_ms;
    /* Registry cache, sorted by game id; refreshed from Redis every REGISTRY_POLL_MS. */
    world_game_t *games;
    size_t ngames;
    uv_timer_t registry_timer;
    bool refresh_inflight, stopping, timer_closed;
    unsigned passes; /* registry refreshes so far */
    /* Who hosts each zone's instances: updated by every seat and every reconcile pass
     * (world_replace_all); answers Heartbeat and ListGames without Redis. */
    world_zone_hosts_t *hosts;
    size_t inflight; /* requests waiting for Redis (drain) */
    wy_redis_script_t *s_heartbeat, *s_registry, *s_seat, *s_unseat, *s_commit, *s_replace,
        *s_release, *s_acct_release;
    wy_metric_t *m_live_games, *m_heartbeats, *m_placements, *m_placements_reused, *m_transfers,
        *m_replaced;
} world_svc_t;

/* registry.c */
int world_registry_start(world_svc_t *w);
void world_registry_stop(world_svc_t *w);
void world_registry_free(world_svc_t *w);
/* The cached game, or NULL. */
const world_game_t *world_game_find(const world_svc_t *w, const char *game_id);
/* Live, not draining games that can run zone_id, least loaded first (players/capacity,
 * then id). Fills ids (up to max) and returns how many. */
/* Live, not draining games that can run zone_id: those that keep the instances they
 * host. Fills ids (room for w->ngames) and returns how many. */
size_t world_keepers(const world_svc_t *w, const char *zone_id, const char **ids);
size_t world_candidates(const world_svc_t *w, const char *zone_id, const char **ids, size_t max);
void world_rpc_heartbeat(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void world_rpc_list_games(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);

/* place.c */
int world_place_init(world_svc_t *w);
void world_rpc_place(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void world_rpc_locate(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void world_rpc_transfer(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void world_rpc_release(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
/* Runs the replace script on every zone of the catalog: instances whose game is dead,
 * draining or no longer runs the zone go to the least-loaded candidate; the answer
 * refreshes w->hosts. */
void world_replace_all(world_svc_t *w);
/* The instances w->hosts has on game, sorted, into out (room for max); returns how
 * many. The strings live until the next change of w->hosts (the loop turn). */
size_t world_hosted(const world_svc_t *w, const char *game, const char **out, size_t max);
/* How many instances w->hosts knows, on all games. */
size_t world_hosts_total(const world_svc_t *w);
void world_hosts_free(world_svc_t *w);

/* The service, or NULL after answering the call UNAVAILABLE when stopping. */
world_svc_t *world_svc_or_refuse(void *arg, wy_grpc_call_id_t call);
/* A request waiting for Redis holds the service: begin before the first command, done
 * after its last callback. Once stopping, the last done frees the service. */
void world_op_begin(world_svc_t *w);
void world_op_done(world_svc_t *w);
/* Frees the service once it is stopping, idle and its timer closed. */
void world_svc_maybe_free(world_svc_t *w);

#endif
