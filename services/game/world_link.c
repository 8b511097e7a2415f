/* wy-game's link to wy-world: the zone catalog (World.ListZones, fetched at start and
 * retried until it comes), the registration and load report once a second
 * (World.Heartbeat; its answer lists the zone instances world placed here, whose
 * partitions then run), and the end of a leaving player's placement (World.Release). */
#include "game.h"
#include "wy_log.h"

#include <string.h>

#define LINK_TICK_MS     250u
#define HEARTBEAT_MS     1000u
#define CALL_DEADLINE_MS 2000u
#define MAX_REPORTED     4096 /* partitions in one heartbeat (world's bound) */

static void link_maybe_close(game_t *g)
{
    if (g->stopping && g->world && g->link_calls == 0) {
        wy_grpc_channel_close(g->world);
        g->world = NULL;
    }
}

static void link_call_done(game_t *g)
{
    g->link_calls--;
    link_maybe_close(g);
}

const Wyvern__World__Zone *game_zone(const game_t *g, const char *zone_id)
{
    if (!g->catalog)
        return NULL;
    for (size_t i = 0; i < g->catalog->n_zones; i++)
        if (strcmp(g->catalog->zones[i]->id, zone_id) == 0)
            return g->catalog->zones[i];
    return NULL;
}

/* ---- the catalog ---- */

static void on_zones(int err, int status, const char *message, const ProtobufCMessage *resp,
                     void *arg)
{
    WY_UNUSED(status);
    game_t *g = arg;
    g->catalog_inflight = false;
    if (err != WY_OK) {
        if (!g->stopping)
            wy_log_warn("world catalog not fetched (retrying)", "world", g->cfg->world_grpc,
                        "error", message[0] ? message : wy_strerror(err), NULL);
    } else if (!g->catalog) {
        /* Keep an owned copy: resp is freed when this returns. */
        size_t n = protobuf_c_message_get_packed_size(resp);
        uint8_t *buf = wy_malloc(n ? n : 1);
        protobuf_c_message_pack(resp, buf);
        g->catalog = wyvern__world__list_zones_response__unpack(NULL, n, buf);
        wy_free(buf);
        char nz[16];
        snprintf(nz, sizeof nz, "%zu", g->catalog ? g->catalog->n_zones : 0);
        wy_log_info("zone catalog loaded from world", "zones", nz, NULL);
    }
    link_call_done(g);
}

/* ---- the heartbeat ---- */

static bool listed_in(const game_t *g, const char *inst)
{
    for (size_t i = 0; i < g->nlisted; i++)
        if (strcmp(g->listed[i], inst) == 0)
            return true;
    return false;
}

static void listed_clear(game_t *g)
{
    for (size_t i = 0; i < g->nlisted; i++)
        wy_free(g->listed[i]);
    wy_free(g->listed);
    g->listed = NULL;
    g->nlisted = 0;
}

static void on_heartbeat(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    WY_UNUSED(status);
    game_t *g = arg;
    g->heartbeat_inflight = false;
    if (err != WY_OK) {
        wy_metric_inc(g->m_heartbeats_failed);
        if (!g->stopping)
            wy_log_warn("heartbeat to world failed", "world", g->cfg->world_grpc, "error",
                        message[0] ? message : wy_strerror(err), NULL);
        link_call_done(g);
        return;
    }
    const Wyvern__World__HeartbeatResponse *r = (const Wyvern__World__HeartbeatResponse *)resp;
    if (!g->last_heartbeat_ok_ms)
        wy_log_info("registered with world", "world", g->cfg->world_grpc, NULL);
    g->last_heartbeat_ok_ms = wy_now_ms();
    if (!g->stopping) {
        listed_clear(g);
        g->listed = wy_calloc(r->n_instances + 1, sizeof *g->listed);
        for (size_t i = 0; i < r->n_instances; i++) {
            const char *inst = r->instances[i];
            g->listed[g->nlisted++] = wy_strdup(inst);
            const char *hash = strchr(inst, '#');
            if (!hash || (size_t)(hash - inst) > WY_TICKET_ZONE_MAX)
                continue;
            char zone[WY_TICKET_ZONE_MAX + 1];
            memcpy(zone, inst, (size_t)(hash - inst));
            zone[hash - inst] = '\0';
            const Wyvern__World__Zone *z = game_zone(g, zone);
            const char *perr = NULL;
            if (z && !game_part_ensure(g, inst, z, &perr))
                wy_log_warn("partition not started", "zone", inst, "error", perr, NULL);
        }
        game_parts_prune(g, listed_in);
    }
    link_call_done(g);
}

static void send_heartbeat(game_t *g)
{
    Wyvern__World__HeartbeatRequest hb = WYVERN__WORLD__HEARTBEAT_REQUEST__INIT;
    const char *host = g->cfg->public_host[0] ? g->cfg->public_host : wy_daemon_bind_host(g->d);
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
        host = "127.0.0.1";
    char client[300], grpc[300];
    snprintf(client, sizeof client, "%s:%d", host, g->ws ? wy_http_port(g->ws) : 0);
    snprintf(grpc, sizeof grpc, "%s:%d", host, wy_daemon_grpc_port(g->d));
    hb.game_id = (char *)wy_daemon_instance(g->d);
    hb.client_addr = client;
    hb.grpc_addr = grpc;
    hb.capacity = (uint32_t)g->cfg->capacity;
    hb.n_zones = g->nzones;
    hb.zones = g->zones;
    hb.players = (uint32_t)wy_map_count(g->players);
    size_t np = game_parts_count(g);
    np = np < MAX_REPORTED ? np : MAX_REPORTED;
    Wyvern__World__PartitionLoad *loads = wy_calloc(np + 1, sizeof *loads);
    Wyvern__World__PartitionLoad **lp = wy_calloc(np + 1, sizeof *lp);
    hb.n_partitions = game_parts_load(g, loads, np);
    uint32_t entities = 0;
    for (size_t i = 0; i < hb.n_partitions; i++) {
        lp[i] = &loads[i];
        entities += loads[i].entities;
    }
    hb.partitions = lp;
    hb.entities = entities;
    hb.draining = g->stopping;
    hb.incarnation = g->incarnation;
    int rc = wy_grpc_call(g->world, "/wyvern.world.World/Heartbeat", &hb.base,
                          &wyvern__world__heartbeat_response__descriptor, CALL_DEADLINE_MS, NULL, 0,
                          on_heartbeat, g);
    if (rc == WY_OK) {
        g->heartbeat_inflight = true;
        g->link_calls++;
    }
    wy_free(lp);
    wy_free(loads);
}

/* ---- renewing the placements of joined players ---- */

#define RENEW_MAX_INFLIGHT 64u

static void on_renewed(int err, int status, const char *message, const ProtobufCMessage *resp,
                       void *arg)
{
    WY_UNUSED(status);
    WY_UNUSED(resp);
    game_t *g = arg;
    g->renewals--;
    if (err != WY_OK && !g->stopping)
        wy_log_warn("placement not renewed at world (retried at the next renewal)", "error",
                    message[0] ? message : wy_strerror(err), NULL);
    link_call_done(g);
}

/* Place again (which renews a living placement for WY_WORLD_PLACEMENT_TTL) every player whose
 * renewal is due, at most RENEW_MAX_INFLIGHT at once; the rest wait for the next pass. */
static void renew_placements(game_t *g)
{
    uint64_t now = wy_now_ms();
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->players);
    while (g->renewals < RENEW_MAX_INFLIGHT && wy_map_next(&it)) {
        game_player_t *p = it.val;
        if (p->renew_at_ms > now)
            continue;
        Wyvern__World__PlaceRequest r = WYVERN__WORLD__PLACE_REQUEST__INIT;
        Wyvern__World__Point pos = WYVERN__WORLD__POINT__INIT;
        pos.x = p->x;
        pos.y = p->y;
        r.account_id = p->account;
        r.character_id = p->character;
        r.saved_zone = p->zone;
        r.saved_position = &pos;
        if (wy_grpc_call(g->world, "/wyvern.world.World/Place", &r.base,
                         &wyvern__world__placement__descriptor, CALL_DEADLINE_MS, NULL, 0,
                         on_renewed, g) != WY_OK)
            break;
        g->renewals++;
        g->link_calls++;
        p->renew_at_ms = now + (uint64_t)g->cfg->renew_ms;
    }
}

static void on_link_timer(uv_timer_t *t)
{
    game_t *g = t->data;
    if (!g->world)
        return;
    if (!g->catalog) {
        if (!g->catalog_inflight) {
            Wyvern__World__ListZonesRequest req = WYVERN__WORLD__LIST_ZONES_REQUEST__INIT;
            req.with_grid = true;
            if (wy_grpc_call(g->world, "/wyvern.world.World/ListZones", &req.base,
                             &wyvern__world__list_zones_response__descriptor, CALL_DEADLINE_MS,
                             NULL, 0, on_zones, g) == WY_OK) {
                g->catalog_inflight = true;
                g->link_calls++;
            }
        }
        return;
    }
    uint64_t now = wy_now_ms();
    if (!g->heartbeat_inflight && now - g->last_heartbeat_sent_ms >= HEARTBEAT_MS) {
        g->last_heartbeat_sent_ms = now;
        send_heartbeat(g);
        renew_placements(g);
    }
}

/* WY_GAME_ZONES: "a,b,c" into g->zones. */
static void parse_zones(game_t *g)
{
    const char *s = g->cfg->zones;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n > 0) {
            g->zones = wy_realloc(g->zones, (g->nzones + 1) * sizeof *g->zones);
            g->zones[g->nzones++] = wy_strndup(s, n);
        }
        s += n;
        if (*s == ',')
            s++;
    }
}

int game_link_start(game_t *g)
{
    parse_zones(g);
    int rc = wy_grpc_channel_new(wy_daemon_grpc_rt(g->d), g->cfg->world_grpc, NULL, &g->world);
    if (rc != WY_OK)
        return rc;
    uv_timer_init(g->loop, &g->link_timer);
    g->link_timer.data = g;
    uv_timer_start(&g->link_timer, on_link_timer, 0, LINK_TICK_MS);
    g->link_started = true;
    return WY_OK;
}

/* At the stop: one last heartbeat says the instance is draining (world places nobody
 * new here); the channel closes once the calls in flight (that one, releases) end. */
void game_link_stop(game_t *g)
{
    if (g->link_started) {
        uv_timer_stop(&g->link_timer);
        uv_close((uv_handle_t *)&g->link_timer, NULL);
        g->link_started = false;
    }
    if (g->world && g->catalog && !g->heartbeat_inflight)
        send_heartbeat(g);
    link_maybe_close(g);
}

void game_link_free(game_t *g)
{
    listed_clear(g);
    if (g->catalog)
        wyvern__world__list_zones_response__free_unpacked(g->catalog, NULL);
    g->catalog = NULL;
    for (size_t i = 0; i < g->nzones; i++)
        wy_free(g->zones[i]);
    wy_free(g->zones);
    g->zones = NULL;
    g->nzones = 0;
}

/* ---- release ---- */

static void on_release(int err, int status, const char *message, const ProtobufCMessage *resp,
                       void *arg)
{
    WY_UNUSED(status);
    WY_UNUSED(resp);
    game_t *g = arg;
    if (err != WY_OK)
        wy_log_warn("placement not released at world (it lapses)", "error",
                    message[0] ? message : wy_strerror(err), NULL);
    link_call_done(g);
}

void game_world_release(game_t *g, const game_player_t *p)
{
    if (!g->world)
        return;
    Wyvern__World__ReleaseRequest req = WYVERN__WORLD__RELEASE_REQUEST__INIT;
    req.character_id = (char *)p->character;
    req.instance_id = (char *)p->instance;
    req.game_id = (char *)wy_daemon_instance(g->d);
    if (wy_grpc_call(g->world, "/wyvern.world.World/Release", &req.base,
                     &wyvern__world__release_response__descriptor, CALL_DEADLINE_MS, NULL, 0,
                     on_release, g) == WY_OK)
        g->link_calls++;
}
