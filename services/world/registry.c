/* wy-world's registry of game instances: heartbeats stored in Redis (world:{games},
 * one hash slot, so a replica reads the whole registry with one script), a cache of it
 * in each replica refreshed every REGISTRY_POLL_MS, and the watch that places the zone
 * instances of a dead game on live ones. Loop thread. */
#include "world.h"
#include "wy_log.h"

#include <stdlib.h>
#include <string.h>

#define REGISTRY_POLL_MS      500u
#define REPORT_EVERY_MS       1000u
#define RECONCILE_EVERY       4u /* passes: every 2 s, the replace check and w->hosts re-read */
#define RKEY_WORLD_GAMES      "world:{games}" /* Redis key formats: docs/keys.md */
#define RKEY_WORLD_GAMES_SEEN "world:{games}:seen"
#define KEY_GAMES             RKEY_WORLD_GAMES
#define KEY_GAMES_SEEN        RKEY_WORLD_GAMES_SEEN
#define MAX_ZONES_PER_GAME    ZONE_MAX_ZONES
#define MAX_PARTITIONS        4096
#define MAX_HOSTED            4096 /* instances listed for one game */

/* KEYS: the games hash (game id -> packed HeartbeatRequest), the seen zset (game id ->
 * wall ms of its last heartbeat). ARGV: game id, packed request, now. */
static const char heartbeat_lua[] = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
                                    "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])\n"
                                    "return 1\n";

/* Same KEYS. ARGV: forget_before (ms), max games. Drops games silent since before
 * forget_before, returns {id, seen, packed, ...} of the others (at most max). */
static const char registry_lua[] =
    "local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])\n"
    "for _, g in ipairs(gone) do redis.call('HDEL', KEYS[1], g) end\n"
    "if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1]) end\n"
    "local out = {}\n"
    "local seen = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')\n"
    "for i = 1, #seen, 2 do\n"
    "  local rec = redis.call('HGET', KEYS[1], seen[i])\n"
    "  if rec then\n"
    "    out[#out + 1] = seen[i]; out[#out + 1] = seen[i + 1]; out[#out + 1] = rec\n"
    "  end\n"
    "end\n"
    "return out\n";

static int by_game_id(const void *a, const void *b)
{
    return strcmp(((const world_game_t *)a)->hb->game_id, ((const world_game_t *)b)->hb->game_id);
}

const world_game_t *world_game_find(const world_svc_t *w, const char *game_id)
{
    Wyvern__World__HeartbeatRequest hb = WYVERN__WORLD__HEARTBEAT_REQUEST__INIT;
    hb.game_id = (char *)game_id;
    world_game_t key = {.hb = &hb};
    return w->ngames ? bsearch(&key, w->games, w->ngames, sizeof *w->games, by_game_id) : NULL;
}

static bool runs_zone(const Wyvern__World__HeartbeatRequest *hb, const char *zone_id)
{
    if (hb->n_zones == 0)
        return true;
    for (size_t i = 0; i < hb->n_zones; i++)
        if (strcmp(hb->zones[i], zone_id) == 0)
            return true;
    return false;
}

static double load_of(const world_game_t *g)
{
    return (double)g->hb->players / (double)(g->hb->capacity ? g->hb->capacity : 1);
}

size_t world_keepers(const world_svc_t *w, const char *zone_id, const char **ids)
{
    size_t n = 0;
    for (size_t i = 0; i < w->ngames; i++) {
        const world_game_t *g = &w->games[i];
        if (g->live && !g->hb->draining && runs_zone(g->hb, zone_id))
            ids[n++] = g->hb->game_id;
    }
    return n;
}

static const world_svc_t *sort_w;

static int by_load(const void *a, const void *b)
{
    const world_game_t *ga = world_game_find(sort_w, *(const char *const *)a);
    const world_game_t *gb = world_game_find(sort_w, *(const char *const *)b);
    double la = load_of(ga), lb = load_of(gb);
    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(ga->hb->game_id, gb->hb->game_id);
}

size_t world_candidates(const world_svc_t *w, const char *zone_id, const char **ids, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < w->ngames && n < max; i++) {
        const world_game_t *g = &w->games[i];
        if (g->live && !g->hb->draining && g->hb->players < g->hb->capacity &&
            runs_zone(g->hb, zone_id))
            ids[n++] = g->hb->game_id;
    }
    sort_w = w; /* loop thread only */
    qsort(ids, n, sizeof *ids, by_load);
    return n;
}

static void game_clear(world_game_t *g)
{
    if (g->hb)
        wyvern__world__heartbeat_request__free_unpacked(g->hb, NULL);
    g->hb = NULL;
}

/* Puts (or replaces) one game in the cache, keeping it sorted. Takes ownership of hb. */
static void cache_put(world_svc_t *w, Wyvern__World__HeartbeatRequest *hb, uint64_t seen_ms)
{
    world_game_t *g = (world_game_t *)world_game_find(w, hb->game_id);
    if (!g) {
        w->games = wy_realloc(w->games, (w->ngames + 1) * sizeof *w->games);
        g = &w->games[w->ngames++];
        g->hb = NULL;
    }
    game_clear(g);
    g->hb = hb;
    g->seen_ms = seen_ms;
    g->live = true;
    qsort(w->games, w->ngames, sizeof *w->games, by_game_id);
}

/* ---- Heartbeat ---- */

static bool game_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > WORLD_GAME_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

static const char *heartbeat_invalid(const world_svc_t *w,
                                     const Wyvern__World__HeartbeatRequest *in)
{
    if (!game_id_valid(in->game_id))
        return "game_id must be 1..64 of [A-Za-z0-9._:-]";
    size_t ca = strlen(in->client_addr), ga = strlen(in->grpc_addr);
    if (ca == 0 || ca > WORLD_ADDR_MAX || ga == 0 || ga > WORLD_ADDR_MAX)
        return "client_addr and grpc_addr must be host:port, 1..255 bytes";
    if (in->capacity == 0)
        return "capacity must be >= 1";
    if (strlen(in->incarnation) > WORLD_GAME_ID_MAX)
        return "incarnation is longer than 64 bytes";
    if (in->n_zones > MAX_ZONES_PER_GAME || in->n_partitions > MAX_PARTITIONS)
        return "too many zones or partitions";
    for (size_t i = 0; i < in->n_zones; i++)
        if (!zone_catalog_find(w->cat, in->zones[i]))
            return "zones names a zone that is not in world's catalog";
    for (size_t i = 0; i < in->n_partitions; i++)
        if (strlen(in->partitions[i]->instance_id) > 2 * ZONE_ID_MAX)
            return "partitions[].instance_id is longer than 64 bytes";
    return NULL;
}

typedef struct {
    world_svc_t *w;
    wy_grpc_call_id_t call;
    Wyvern__World__HeartbeatRequest *hb; /* a copy, for the cache */
    uint64_t now;
} heartbeat_op_t;

static void on_heartbeat(int status, redisReply *reply, void *ud)
{
    heartbeat_op_t *op = ud;
    world_svc_t *w = op->w;
    if (status != WY_OK) {
        wy_grpc_reply_error(op->call, WY_EUNAVAIL,
                            reply && reply->str ? reply->str : "Redis did not store the heartbeat");
        game_clear(&(world_game_t){.hb = op->hb});
    } else {
        if (!world_game_find(w, op->hb->game_id))
            wy_log_info("game instance registered", "game", op->hb->game_id, "client_addr",
                        op->hb->client_addr, "grpc_addr", op->hb->grpc_addr, NULL);
        cache_put(w, op->hb, op->now);
        wy_metric_inc(w->m_heartbeats);
        Wyvern__World__HeartbeatResponse out = WYVERN__WORLD__HEARTBEAT_RESPONSE__INIT;
        out.report_every_ms = REPORT_EVERY_MS;
        out.dead_after_ms = (uint32_t)w->dead_after_ms;
        size_t max = world_hosts_total(w);
        max = max < MAX_HOSTED ? max : MAX_HOSTED;
        out.instances = wy_calloc(max + 1, sizeof *out.instances);
        out.n_instances = world_hosted(w, op->hb->game_id, (const char **)out.instances, max);
        wy_grpc_reply(op->call, &out.base);
        wy_free(out.instances);
    }
    wy_free(op);
    world_op_done(w);
}

void world_rpc_heartbeat(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__World__HeartbeatRequest *in = (const Wyvern__World__HeartbeatRequest *)req;
    world_svc_t *w = world_svc_or_refuse(arg, call);
    if (!w)
        return;
    const char *why = heartbeat_invalid(w, in);
    if (why) {
        wy_grpc_reply_error(call, WY_EINVAL, why);
        return;
    }
    size_t len = protobuf_c_message_get_packed_size(&in->base);
    uint8_t *buf = wy_malloc(len ? len : 1);
    protobuf_c_message_pack(&in->base, buf);
    heartbeat_op_t *op = wy_calloc(1, sizeof *op);
    op->w = w;
    op->call = call;
    op->now = wy_wall_ms();
    op->hb = wyvern__world__heartbeat_request__unpack(NULL, len, buf);
    char now[24];
    snprintf(now, sizeof now, "%llu", (unsigned long long)op->now);
    const char *argv[] = {KEY_GAMES, KEY_GAMES_SEEN, in->game_id, (const char *)buf, now};
    size_t lens[] = {strlen(KEY_GAMES), strlen(KEY_GAMES_SEEN), strlen(in->game_id), len,
                     strlen(now)};
    world_op_begin(w);
    int rc =
        wy_redis_eval(wy_daemon_redis(w->d), w->s_heartbeat, 0, on_heartbeat, op, 2, 5, argv, lens);
    wy_free(buf);
    if (rc != WY_OK) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "Redis is unavailable");
        game_clear(&(world_game_t){.hb = op->hb});
        wy_free(op);
        world_op_done(w);
    }
}

/* ---- ListGames: the cache as this replica sees it ---- */

void world_rpc_list_games(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    WY_UNUSED(req);
    world_svc_t *w = world_svc_or_refuse(arg, call);
    if (!w)
        return;
    Wyvern__World__ListGamesResponse out = WYVERN__WORLD__LIST_GAMES_RESPONSE__INIT;
    Wyvern__World__GameInstance *gs = wy_calloc(w->ngames + 1, sizeof *gs);
    /* Each instance is on one game: one array holds every game's list. */
    size_t total = world_hosts_total(w), used = 0;
    const char **hosted = wy_calloc(total + 1, sizeof *hosted);
    out.games = wy_calloc(w->ngames + 1, sizeof *out.games);
    out.n_games = w->ngames;
    for (size_t i = 0; i < w->ngames; i++) {
        const Wyvern__World__HeartbeatRequest *hb = w->games[i].hb;
        Wyvern__World__GameInstance *g = &gs[i];
        wyvern__world__game_instance__init(g);
        g->game_id = hb->game_id;
        g->client_addr = hb->client_addr;
        g->grpc_addr = hb->grpc_addr;
        g->incarnation = hb->incarnation;
        g->capacity = hb->capacity;
        g->n_zones = hb->n_zones;
        g->zones = hb->zones;
        g->players = hb->players;
        g->entities = hb->entities;
        g->n_partitions = hb->n_partitions;
        g->partitions = hb->partitions;
        g->draining = hb->draining;
        g->live = w->games[i].live;
        g->last_report_ms = w->games[i].seen_ms;
        g->instances = (char **)(hosted + used);
        g->n_instances = world_hosted(w, hb->game_id, hosted + used, total - used);
        used += g->n_instances;
        out.games[i] = g;
    }
    wy_grpc_reply(call, &out.base);
    wy_free(out.games);
    wy_free(gs);
    wy_free(hosted);
}

/* ---- the refresh and the watch ---- */

static void on_registry(int status, redisReply *reply, void *ud)
{
    world_svc_t *w = ud;
    w->refresh_inflight = false;
    if (status != WY_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements % 3 != 0) {
        if (status != WY_ECANCELED)
            wy_log_warn("registry refresh failed", "error",
                        reply && reply->str ? reply->str : wy_strerror(status), NULL);
        world_op_done(w);
        return;
    }
    uint64_t now = wy_wall_ms();
    size_t n = reply->elements / 3, live = 0;
    world_game_t *games = wy_calloc(n + 1, sizeof *games);
    size_t k = 0;
    bool lost = false, draining = false;
    for (size_t i = 0; i < n; i++) {
        redisReply *id = reply->element[3 * i], *seen = reply->element[3 * i + 1],
                   *rec = reply->element[3 * i + 2];
        if (id->type != REDIS_REPLY_STRING || rec->type != REDIS_REPLY_STRING)
            continue;
        Wyvern__World__HeartbeatRequest *hb =
            wyvern__world__heartbeat_request__unpack(NULL, rec->len, (const uint8_t *)rec->str);
        if (!hb || !game_id_valid(hb->game_id)) {
            if (hb)
                wyvern__world__heartbeat_request__free_unpacked(hb, NULL);
            continue;
        }
        world_game_t *g = &games[k++];
        g->hb = hb;
        g->seen_ms = seen->str ? strtoull(seen->str, NULL, 10) : 0;
        g->live = g->seen_ms + w->dead_after_ms > now;
        live += g->live;
        draining |= g->live && hb->draining;
        const world_game_t *old = world_game_find(w, hb->game_id);
        if (old && old->live && !g->live) {
            lost = true;
            wy_log_warn("game instance dead", "game", hb->game_id, NULL);
        }
    }
    /* A live game that vanished from Redis (forgotten, or Redis lost its data) is lost too. */
    for (size_t i = 0; i < w->ngames; i++) {
        bool found = false;
        for (size_t j = 0; j < k && !found; j++)
            found = strcmp(games[j].hb->game_id, w->games[i].hb->game_id) == 0;
        lost |= w->games[i].live && !found;
    }
    for (size_t i = 0; i < w->ngames; i++)
        game_clear(&w->games[i]);
    wy_free(w->games);
    w->games = games;
    w->ngames = k;
    qsort(w->games, w->ngames, sizeof *w->games, by_game_id);
    wy_metric_set(w->m_live_games, (double)live);
    w->passes++;
    if (!w->stopping && (lost || draining || w->passes % RECONCILE_EVERY == 1))
        world_replace_all(w);
    world_op_done(w);
}

static void on_registry_timer(uv_timer_t *t)
{
    world_svc_t *w = t->data;
    if (w->refresh_inflight || w->stopping)
        return;
    uint64_t now = wy_wall_ms();
    char before[24], max[16];
    snprintf(before, sizeof before, "%llu",
             (unsigned long long)(now > w->forget_after_ms ? now - w->forget_after_ms : 0));
    snprintf(max, sizeof max, "%d", WORLD_MAX_GAMES);
    const char *argv[] = {KEY_GAMES, KEY_GAMES_SEEN, before, max};
    world_op_begin(w);
    if (wy_redis_eval(wy_daemon_redis(w->d), w->s_registry, 0, on_registry, w, 2, 4, argv, NULL) !=
        WY_OK) {
        w->inflight--; /* not stopping (checked above): nothing to free */
        return;
    }
    w->refresh_inflight = true;
}

int world_registry_start(world_svc_t *w)
{
    w->s_heartbeat = wy_redis_script_new(heartbeat_lua);
    w->s_registry = wy_redis_script_new(registry_lua);
    uv_timer_init(wy_daemon_loop(w->d), &w->registry_timer);
    w->registry_timer.data = w;
    w->timer_closed = false;
    uv_timer_start(&w->registry_timer, on_registry_timer, 0, REGISTRY_POLL_MS);
    return WY_OK;
}

static void on_timer_closed(uv_handle_t *h)
{
    world_svc_t *w = h->data;
    w->timer_closed = true;
    world_svc_maybe_free(w);
}

void world_registry_stop(world_svc_t *w)
{
    if (w->timer_closed) { /* the start failed before the timer existed */
        world_svc_maybe_free(w);
        return;
    }
    uv_close((uv_handle_t *)&w->registry_timer, on_timer_closed);
}

void world_registry_free(world_svc_t *w)
{
    for (size_t i = 0; i < w->ngames; i++)
        game_clear(&w->games[i]);
    wy_free(w->games);
    w->games = NULL;
    w->ngames = 0;
    world_hosts_free(w);
    wy_redis_script_free(w->s_heartbeat);
    wy_redis_script_free(w->s_registry);
    wy_redis_script_free(w->s_seat);
    wy_redis_script_free(w->s_unseat);
    wy_redis_script_free(w->s_commit);
    wy_redis_script_free(w->s_replace);
    wy_redis_script_free(w->s_release);
    wy_redis_script_free(w->s_acct_release);
}
