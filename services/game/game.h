/* wy-game: the live simulation of the zones it hosts. This header is the daemon's state
 * and the seams between its parts:
 *   game.c        configuration, the daemon spec, start / stop, the ticket keys
 *   conn.c        the WebSocket server (/v1/game), connections, frames, dispatch
 *   join.c        join(ticket) -> welcome, leave / disconnect -> position saved (wy.gameplay)
 *   world_link.c  the zone catalog from world (ListZones) and the heartbeat (Heartbeat)
 *   sim.c         a zone instance's simulation on daemon workers (game_part_* below):
 *                 regions of partition.c (aoi.c, move.c) ticking at the zone's rate, frames
 *                 to the loop, statistics, the wy.stats change stream, gRPC Game.Stats.
 *   chat.c        wy.chat messages pushed to this instance's players (issue 15)
 * Everything here is loop-thread only unless a comment says otherwise. */
#ifndef GAME_H
#define GAME_H

#include "wy_daemon.h"
#include "wy_list.h"
#include "wy_map.h"
#include "wy_metrics.h"
#include "wy_ticket.h"
#include "wy_worker.h"
#include "wy_ws.h"
#include "game.pb-c.h"
#include "world.pb-c.h"

extern const wy_daemon_spec_t game_daemon_spec;

enum {
    GAME_CLOSE_PROTOCOL = 4000,     /* first message not join, undecodable frame */
    GAME_CLOSE_JOIN_REFUSED = 4001, /* bad ticket: the error message says why */
    GAME_CLOSE_REPLACED = 4002,     /* the character joined again on another connection */
    GAME_CLOSE_JOIN_TIMEOUT = 4004,
    GAME_CLOSE_UNAVAILABLE = 4007, /* stopping, full, no catalog */
};

#define GAME_INCARNATION_LEN 22 /* 128 random bits, base64url */

typedef struct {
    int64_t ws_port, capacity, max_message, join_timeout_ms, ticket_leeway_ms, used_tickets,
        workers, worker_hz, save_queue, renew_ms;
    char *ticket_keys_dir, *world_grpc, *public_host, *zones;
    /* the simulation (sim.c) */
    int64_t view_radius, view_margin, max_visible, send_queue, stats_batch_ms, socket_sndbuf;
    char *regions;
    char *tick_priority;             /* WY_GAME_TICK_PRIORITY */
    wy_worker_prio_spec_t tick_prio; /* parsed by the spec's configure */
    char *chat_grpc;                 /* chat.c: wy-chat, for the players' chat_send */
    /* Loaded from ticket_keys_dir by the spec's configure (NULL when it is empty), read-only
     * afterwards, freed by its unconfigure when the daemon frees this struct. */
    wy_jwt_keyset_t *ticket_keys;
} game_cfg_t;

typedef struct game_part game_part_t;
typedef struct game_player game_player_t;
typedef struct game_conn game_conn_t;

typedef struct {
    wy_daemon_t *d;
    uv_loop_t *loop;
    const game_cfg_t *cfg; /* wy_daemon_config(d): owned by the daemon */
    char incarnation[GAME_INCARNATION_LEN + 1];
    wy_jwt_keyset_t *ticket_keys; /* cfg->ticket_keys: public keys that verify join tickets */
    wy_ticket_used_t *used;       /* tickets accepted by this process */
    /* Connections and players. */
    wy_http_server_t *ws;
    wy_list_t conns;
    size_t nconns;
    wy_map_t *players; /* character id -> game_player_t * */
    uint64_t next_entity;
    uv_timer_t sweep;
    bool sweep_started, stopping, ws_closing;
    /* The zone catalog from world (owned copy), NULL until fetched. */
    Wyvern__World__ListZonesResponse *catalog;
    /* Partitions by zone instance id. */
    wy_map_t *parts;
    /* world_link.c */
    wy_grpc_channel_t *world;
    uv_timer_t link_timer;
    bool link_started, catalog_inflight, heartbeat_inflight;
    unsigned link_calls; /* calls in flight on g->world */
    unsigned renewals;   /* of them, placement renewals (World.Place) */
    uint64_t last_heartbeat_ok_ms, last_heartbeat_sent_ms;
    char **zones; /* WY_GAME_ZONES */
    size_t nzones;
    char **listed; /* the instances of world's last heartbeat answer */
    size_t nlisted;
    /* join.c: position saves not yet acknowledged by Kafka */
    size_t saves_pending;
    wy_list_t saves_retry;
    uv_timer_t save_timer;
    bool save_timer_started;
    wy_metric_t *m_players, *m_joins_ok, *m_joins_refused[WY_TICKET_BUSY + 1], *m_join_other,
        *m_saves, *m_save_retries, *m_save_dropped, *m_partitions, *m_heartbeats_failed;
    wy_metric_t *m_chat_events, *m_chat_delivered, *m_chat_latency; /* chat.c */
    wy_grpc_channel_t *chat; /* chat.c: NULL without WY_GAME_CHAT_GRPC */
    size_t chat_calls;       /* Chat.Send calls in flight (game_busy waits for them) */
    wy_metric_t *m_chat_sent, *m_chat_refused;
} game_t;

/* One WebSocket connection (conn.c). Freed in its close callback. */
struct game_conn {
    wy_list_t node;
    game_t *g;
    wy_ws_conn_t *ws; /* NULL once closed */
    uint64_t opened_ms;
    game_player_t *player; /* set by a welcome, cleared by leave */
    bool joining;          /* a join is being handled */
    char peer[64];
    wy_list_t chat_sends; /* chat.c: its Chat.Send calls in flight (detached at close) */
    uint32_t nchat_sends;
};

/* A player on this instance (join.c). */
struct game_player {
    uint64_t entity;
    game_conn_t *conn; /* NULL once its connection is gone */
    game_part_t *part;
    char account[WY_TICKET_ID_MAX + 1];
    char character[WY_TICKET_ID_MAX + 1];
    char name[WY_TICKET_NAME_MAX + 1]; /* the character's name (ticket): chat's sender name */
    char zone[WY_TICKET_ZONE_MAX + 1];
    char instance[WY_TICKET_INST_MAX + 1];
    double x, y;          /* last position known on the loop */
    uint64_t renew_at_ms; /* next renewal of its placement at world (world_link.c) */
};

/* game.c */
game_t *game_of(wy_daemon_t *d);
/* After wy_daemon_main returns: frees the state and the ticket keys. */
void game_free(void);

/* conn.c */
int game_conns_start(game_t *g, const char **err);
void game_conns_stop(game_t *g);
/* Sends one ServerMessage; a send failure closes the connection (wy_ws_send). */
void game_send(game_conn_t *c, const Wyvern__Game__ServerMessage *m);
void game_send_error(game_conn_t *c, uint32_t request_id, Wyvern__Game__Code code,
                     const char *message);
void game_conn_close(game_conn_t *c, int code, const char *reason);

/* join.c */
void game_join(game_conn_t *c, uint32_t request_id, const Wyvern__Game__Join *j);
/* Removes the player of c (leave or disconnect): out of its partition, its position saved
 * once. request_id != 0 answers `left` to a leave. */
void game_player_leave(game_conn_t *c, uint32_t request_id);
int game_saves_start(game_t *g);
/* At the stop: saves are retried faster through the drain; the timer closes itself once
 * the drain is over. */
void game_saves_stop(game_t *g);
/* Ends the player's placement at world (World.Release): the next enter_game places the
 * character afresh from its saved position. Best effort (a placement left lapses after
 * WY_WORLD_PLACEMENT_TTL). world_link.c. */
void game_world_release(game_t *g, const game_player_t *p);

/* chat.c: the metrics (in start), and the wy.chat subscription's handler (wy_daemon_sub_t,
 * loop thread): pushes the message to the recipients among this instance's players. */
void game_chat_start(game_t *g);
void game_chat_on_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env);
/* A joined player's chat_send (conn.c dispatch): Chat.Send with the ticket's account and
 * character name; the
 * answer (chat_sent or chat_error) comes later with request_id. */
void game_chat_send(game_conn_t *c, uint32_t request_id, const Wyvern__Lobby__ChatSend *s);
/* The connection closes: its calls in flight answer nobody. */
void game_chat_conn_closed(game_conn_t *c);
/* At the stop: closes the channel (calls in flight end WY_ECANCELED). */
void game_chat_stop(game_t *g);

/* world_link.c */
int game_link_start(game_t *g);
void game_link_stop(game_t *g);
void game_link_free(game_t *g);
/* The catalog's zone, or NULL. */
const Wyvern__World__Zone *game_zone(const game_t *g, const char *zone_id);

/* ---- partitions: the seam to the simulation (sim.c) ----
 * A partition runs one zone instance (split in WY_GAME_REGIONS strips) on daemon workers,
 * ticking at the zone's rate
 * (wy_tick). The loop refers to it by pointer only for these calls; the partition's
 * worker-side state is touched only by its worker (messages through its inbox). */

/* In start(): creates the daemon's worker pool that runs partitions. */
int game_parts_start(game_t *g, const char **err);
/* The partition of zone instance inst of zone z, started if needed. NULL when it cannot
 * start (*err says why). */
game_part_t *game_part_ensure(game_t *g, const char *inst, const Wyvern__World__Zone *z,
                              const char **err);
/* Hands player p (entity, position) to its partition; WY_OK or WY_EBUSY (inbox full). */
int game_part_add(game_part_t *part, const game_player_t *p);
/* Takes the player out of its partition; p->x/p->y hold its last position. */
void game_part_remove(game_part_t *part, game_player_t *p);
/* Drops partitions that world no longer lists and no player is in. listed(inst) says
 * whether world still lists an instance. */
void game_parts_prune(game_t *g, bool (*listed)(const game_t *g, const char *inst));
/* Load for the heartbeat: fills parts (room for max) and returns how many. The strings
 * live until the next prune. */
size_t game_parts_load(game_t *g, Wyvern__World__PartitionLoad *parts, size_t max);
size_t game_parts_count(const game_t *g);
/* An input of the player on c (conn.c dispatch): queued for its partition's next tick. */
void game_part_input(game_conn_t *c, const Wyvern__Game__Input *in);
/* Checks WY_GAME_REGIONS ("zone=N,..."); game_configure calls it. */
int game_sim_check_regions(const char *s, const char **err);
void game_parts_stop(game_t *g);
/* After the loop ended: frees what is left of the partitions. */
void game_parts_free(game_t *g);

#endif
