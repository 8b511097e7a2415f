/* wy-game: the live simulation of the zones it hosts. The daemon's shape (configuration,
 * dependencies, ports), the join ticket keys, start and stop; the parts are listed in
 * game.h. */
#include "game.h"
#include "wy_log.h"
#include "wy_token.h"

#include <string.h>

/* Offsets into game_cfg_t: the daemon keeps the values (spec.config_size). */
static const wy_cfg_entry_t game_config[] = {
    {"WY_GAME_WS_PORT", WY_CFG_INT, "8082", 0, 65535, NULL,
     "Client WebSocket port (path /v1/game; 0 = any).", WY_CFG_OFF(game_cfg_t, ws_port), false},
    {"WY_GAME_PUBLIC_HOST", WY_CFG_STRING, "", 0, 0, NULL,
     "Host players connect to, reported to world with the WebSocket port (empty = "
     "WY_BIND_HOST, or 127.0.0.1 when that is 0.0.0.0).",
     WY_CFG_OFF(game_cfg_t, public_host), false},
    {"WY_GAME_WORLD_GRPC", WY_CFG_STRING, "127.0.0.1:9204", 0, 0, NULL,
     "wy-world's gRPC address: the zone catalog (ListZones) and the registration and load "
     "report once a second (Heartbeat).",
     WY_CFG_OFF(game_cfg_t, world_grpc), false},
    {"WY_GAME_CHAT_GRPC", WY_CFG_STRING, "", 0, 0, NULL,
     "wy-chat's gRPC address (host:port) for the players' chat_send. Empty: chat_send answers "
     "UNAVAILABLE (wy.chat messages are still delivered).",
     WY_CFG_OFF(game_cfg_t, chat_grpc), false},
    {"WY_GAME_TICKET_KEYS_DIR", WY_CFG_STRING, "", 0, 0, NULL,
     "Folder of the Ed25519 PEM keys named <kid>.pem that verify join tickets (the public "
     "halves of lobby's WY_LOBBY_TICKET_KEYS_DIR). Empty: every join is refused UNAVAILABLE "
     "(logged at start); a bad folder stops the daemon.",
     WY_CFG_OFF(game_cfg_t, ticket_keys_dir), false},
    {"WY_GAME_TICKET_LEEWAY", WY_CFG_DURATION_MS, "1s", 0, 30000, NULL,
     "Clock skew tolerated on a ticket's issue and expiry times.",
     WY_CFG_OFF(game_cfg_t, ticket_leeway_ms), false},
    {"WY_GAME_USED_TICKETS", WY_CFG_INT, "100000", 16, 10000000, NULL,
     "Accepted tickets remembered until they expire (single use); when full of live tickets a "
     "join is refused BUSY.",
     WY_CFG_OFF(game_cfg_t, used_tickets), false},
    {"WY_GAME_CAPACITY", WY_CFG_INT, "2000", 1, 1000000, NULL,
     "Players this instance accepts in all (reported to world; a join past it is refused FULL).",
     WY_CFG_OFF(game_cfg_t, capacity), false},
    {"WY_GAME_ZONES", WY_CFG_STRING, "", 0, 0, NULL,
     "Comma-separated zone ids this instance runs (empty = every zone of the catalog).",
     WY_CFG_OFF(game_cfg_t, zones), false},
    {"WY_GAME_JOIN_TIMEOUT", WY_CFG_DURATION_MS, "5s", 100, 60000, NULL,
     "A connection that has not joined within this is closed (4004).",
     WY_CFG_OFF(game_cfg_t, join_timeout_ms), false},
    {"WY_GAME_MAX_MESSAGE", WY_CFG_SIZE, "16KiB", 1024, 1048576, NULL,
     "Largest client message (a larger one closes the connection with 1009).",
     WY_CFG_OFF(game_cfg_t, max_message), false},
    {"WY_GAME_WORKERS", WY_CFG_INT, "2", 1, 256, NULL,
     "Worker threads that run the partitions (zone instances).", WY_CFG_OFF(game_cfg_t, workers),
     false},
    {"WY_GAME_WORKER_HZ", WY_CFG_INT, "60", 1, 240, NULL,
     "How often a worker wakes to step its partitions; each steps at its zone's tick rate, "
     "rounded to these wake-ups (keep it a multiple of the zones' rates).",
     WY_CFG_OFF(game_cfg_t, worker_hz), false},
    {"WY_GAME_TICK_PRIORITY", WY_CFG_STRING, "rt:10,nice:-10", 0, 0, NULL,
     "Scheduling priority of the partition worker threads, so a tick wins the CPU over the "
     "network thread and other work: choices tried in order, the first permitted wins: rt:N "
     "(SCHED_FIFO, 1..99), nice:N (-20..19), normal. Needs CAP_SYS_NICE (a refused first "
     "choice is logged, the next one tried). A real-time worker using more than half a core "
     "drops back to normal.",
     WY_CFG_OFF(game_cfg_t, tick_priority), false},
    {"WY_GAME_REGIONS", WY_CFG_STRING, "", 0, 0, NULL,
     "Zones split into vertical strips, each a partition on its own worker: zone=N pairs, "
     "comma-separated, N in 1..16 (\"meadow=2\"); unlisted zones are one partition. A strip is "
     "never narrower than twice the view radius.",
     WY_CFG_OFF(game_cfg_t, regions), false},
    {"WY_GAME_VIEW_RADIUS", WY_CFG_INT, "64", 4, 1000, NULL,
     "Metres a player sees: entities within it enter its view.",
     WY_CFG_OFF(game_cfg_t, view_radius), false},
    {"WY_GAME_VIEW_MARGIN", WY_CFG_INT, "8", 0, 100, NULL,
     "Hysteresis: an entity leaves a view only beyond radius + margin metres.",
     WY_CFG_OFF(game_cfg_t, view_margin), false},
    {"WY_GAME_MAX_VISIBLE", WY_CFG_INT, "256", 8, 4096, NULL,
     "Most entities one player sees at once (more in range wait for room).",
     WY_CFG_OFF(game_cfg_t, max_visible), false},
    {"WY_GAME_SEND_QUEUE", WY_CFG_SIZE, "256KiB", 4096, 16777216, NULL,
     "Bytes queued to one client past which it is too slow: closed with 4008 (the tick "
     "never waits for it).",
     WY_CFG_OFF(game_cfg_t, send_queue), false},
    {"WY_GAME_SOCKET_SNDBUF", WY_CFG_SIZE, "64KiB", 4096, 16777216, NULL,
     "Kernel send buffer of each client socket (SO_SNDBUF): bounds the stale frames the kernel "
     "holds for a reader that stopped, so WY_GAME_SEND_QUEUE catches it within seconds.",
     WY_CFG_OFF(game_cfg_t, socket_sndbuf), false},
    {"WY_GAME_STATS_BATCH", WY_CFG_DURATION_MS, "1s", 50, 60000, NULL,
     "Interval of the object-change batches (spawn, despawn, move) produced to Kafka wy.stats.",
     WY_CFG_OFF(game_cfg_t, stats_batch_ms), false},
    {"WY_GAME_SAVE_QUEUE", WY_CFG_INT, "100000", 1, 10000000, NULL,
     "Position saves waiting for Kafka (retried with their event id); past it a save is "
     "dropped, logged and counted.",
     WY_CFG_OFF(game_cfg_t, save_queue), false},
    {"WY_GAME_PLACEMENT_RENEW", WY_CFG_DURATION_MS, "20s", 1000, 3600000, NULL,
     "How often the placement of each joined player is renewed at world (World.Place), so it "
     "does not lapse while the player plays: keep it well under WY_WORLD_PLACEMENT_TTL.",
     WY_CFG_OFF(game_cfg_t, renew_ms), false},
};

static int game_configure(void *cfg, const char **err);
static void game_unconfigure(void *cfg);
static int game_start(wy_daemon_t *d, const char **err);
static void game_stop(wy_daemon_t *d);
static size_t game_busy(wy_daemon_t *d);

static const char *const game_chat_types[] = {"chat.message", NULL};
static const wy_daemon_sub_t game_subs[] = {
    {.topic = "wy.chat",
     .mode = WY_SUB_BROADCAST,
     .types = game_chat_types,
     .handler = game_chat_on_event},
};

/* Every instance sees every chat message (broadcast) and delivers to its own players
 * (chat.c). Kafka carries the position saves too: its outage only degrades the instance
 * (saves wait and are retried; chat messages wait in Kafka). World is not a dependency of
 * readiness: until the catalog is fetched the instance does not register, so world places nobody on
 * it. */
const wy_daemon_spec_t game_daemon_spec = {
    .svc = "game",
    .grpc_service = "wyvern.game.Game",
    .deps = WY_DEP_KAFKA,
    .ops_port = 9103,
    .grpc_port = 9203,
    .config = game_config,
    .nconfig = WY_ARRAY_LEN(game_config),
    .config_size = sizeof(game_cfg_t),
    .configure = game_configure,
    .unconfigure = game_unconfigure,
    .subs = game_subs,
    .nsubs = WY_ARRAY_LEN(game_subs),
    .start = game_start,
    .stop = game_stop,
    .busy = game_busy,
};

static int game_configure(void *cfg, const char **err)
{
    game_cfg_t *c = cfg;
    static char msg[600];
    if (game_sim_check_regions(c->regions, err) != WY_OK)
        return WY_EINVAL;
    const char *pe = NULL;
    if (wy_worker_prio_parse(c->tick_priority, &c->tick_prio, &pe) != WY_OK) {
        snprintf(msg, sizeof msg, "WY_GAME_TICK_PRIORITY: %s", pe);
        *err = msg;
        return WY_EINVAL;
    }
    game_unconfigure(c);
    if (!c->ticket_keys_dir[0])
        return WY_OK;
    c->ticket_keys = wy_jwt_keyset_new();
    const char *e = NULL;
    int rc = wy_token_keyset_load_dir(c->ticket_keys, c->ticket_keys_dir, &e);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "WY_GAME_TICKET_KEYS_DIR: %s", e ? e : wy_strerror(rc));
        *err = msg;
        return rc;
    }
    return WY_OK;
}

static void game_unconfigure(void *cfg)
{
    game_cfg_t *c = cfg;
    wy_jwt_keyset_free(c->ticket_keys);
    c->ticket_keys = NULL;
}

/* The state lives until wy_daemon_main has returned (every callback that may name it has
 * run by then): game_free frees it. */
static game_t *game_state;

game_t *game_of(wy_daemon_t *d)
{
    return wy_daemon_state(d);
}

void game_free(void)
{
    game_t *g = game_state;
    game_state = NULL;
    if (g) {
        game_link_free(g);
        game_parts_free(g);
        wy_map_free(g->players);
        wy_map_free(g->parts);
        wy_ticket_used_free(g->used);
        wy_free(g);
    }
}

static int game_start(wy_daemon_t *d, const char **err)
{
    game_t *g = wy_calloc(1, sizeof *g);
    g->d = d;
    g->loop = wy_daemon_loop(d);
    g->cfg = wy_daemon_config(d);
    g->ticket_keys = g->cfg->ticket_keys;
    g->used = wy_ticket_used_new((size_t)g->cfg->used_tickets, g->cfg->ticket_leeway_ms);
    unsigned char rnd[16];
    wy_random(rnd, sizeof rnd);
    char *inc = wy_b64url_encode(rnd, sizeof rnd);
    snprintf(g->incarnation, sizeof g->incarnation, "%s", inc);
    wy_free(inc);
    wy_list_init(&g->conns);
    g->players = wy_map_new(0);
    g->parts = wy_map_new(0);
    wy_daemon_set_state(d, g);
    game_state = g;

    g->m_players = wy_metrics_gauge("wy_game_players", "Players joined on this instance.", NULL);
    const char *jh = "Joins, by result (ok, or why the ticket or join was refused).";
    g->m_joins_ok = wy_metrics_counter("wy_game_joins_total", jh, "result=\"ok\"");
    for (int f = WY_TICKET_MALFORMED; f <= WY_TICKET_BUSY; f++) {
        char label[48];
        snprintf(label, sizeof label, "result=\"%s\"", wy_ticket_fault_name(f));
        g->m_joins_refused[f] = wy_metrics_counter("wy_game_joins_total", jh, label);
    }
    g->m_join_other = wy_metrics_counter("wy_game_joins_total", jh, "result=\"refused\"");
    g->m_saves = wy_metrics_counter("wy_game_positions_saved_total",
                                    "Position saves acknowledged by Kafka (wy.gameplay).", NULL);
    g->m_save_retries = wy_metrics_counter(
        "wy_game_position_save_retries_total",
        "Position saves published again with their event id after a failed delivery.", NULL);
    g->m_save_dropped =
        wy_metrics_counter("wy_game_position_saves_dropped_total",
                           "Position saves dropped because WY_GAME_SAVE_QUEUE was full.", NULL);
    g->m_partitions =
        wy_metrics_gauge("wy_game_partitions", "Zone instances running on this instance.", NULL);
    g->m_heartbeats_failed = wy_metrics_counter("wy_game_world_heartbeats_failed_total",
                                                "Heartbeats to world that failed.", NULL);
    game_chat_start(g);

    int rc = game_parts_start(g, err);
    if (rc == WY_OK)
        rc = game_saves_start(g);
    if (rc == WY_OK)
        rc = game_conns_start(g, err);
    if (rc == WY_OK)
        rc = game_link_start(g);
    if (rc != WY_OK && !*err)
        *err = "cannot start";
    if (rc == WY_OK)
        wy_log_info("game instance started", "incarnation", g->incarnation, NULL);
    if (rc == WY_OK && !g->ticket_keys)
        wy_log_warn("no WY_GAME_TICKET_KEYS_DIR: every join is refused", NULL);
    return rc;
}

/* Players leave (positions saved, queued to Kafka), the listeners and the world link
 * stop; what is left is freed by game_busy's last call once the saves are delivered or
 * the drain ends. */
static void game_stop(wy_daemon_t *d)
{
    game_t *g = game_of(d);
    if (!g || g->stopping)
        return;
    g->stopping = true;
    game_conns_stop(g);
    game_link_stop(g);
    game_chat_stop(g);
    game_parts_stop(g);
    game_saves_stop(g);
}

static size_t game_busy(wy_daemon_t *d)
{
    game_t *g = game_of(d);
    if (!g)
        return 0;
    return g->saves_pending + g->nconns + (g->ws ? 1 : 0) + (g->ws_closing ? 1 : 0) +
           (g->world ? 1 : 0) + g->chat_calls;
}
