/* wy-world: the daemon's shape (configuration, dependencies, ports), its start and
 * stop, the zone catalog's gRPC method and its read-only HTTP view. The registry is in
 * registry.c, placement and the locator in place.c, the catalog itself in zones.c. */
#include "world.h"
#include "wy_log.h"

#include <string.h>

/* Offsets into world_cfg_t: the daemon keeps the values (spec.config_size). */
static const wy_cfg_entry_t world_config[] = {
    {"WY_WORLD_ZONES_DIR", WY_CFG_STRING, "data/zones", 0, 0, NULL,
     "Folder of the zone files (one <zone>.json each; format in services/world/README.md). "
     "A bad file stops the daemon with exit status 2 naming the file and the field.",
     WY_CFG_OFF(world_cfg_t, zones_dir), false},
    {"WY_WORLD_START_ZONE", WY_CFG_STRING, "oakvale", 0, 0, NULL,
     "Zone of a character that has no saved zone (must be in the catalog).",
     WY_CFG_OFF(world_cfg_t, start_zone), false},
    {"WY_WORLD_GAME_DEAD_AFTER", WY_CFG_DURATION_MS, "5s", 1000, 600000, NULL,
     "A game instance that sent no heartbeat for this long is dead: its zone instances are "
     "placed on live ones.",
     WY_CFG_OFF(world_cfg_t, dead_after_ms), false},
    {"WY_WORLD_PLACEMENT_TTL", WY_CFG_DURATION_MS, "60s", 1000, 86400000, NULL,
     "A placement lapses this long after it was made or last renewed (Place again renews it).",
     WY_CFG_OFF(world_cfg_t, placement_ttl_ms), false},
    {"WY_WORLD_GAME_FORGET_AFTER", WY_CFG_DURATION_MS, "1h", 10000, 604800000, NULL,
     "A dead game instance is dropped from the registry after this long without a heartbeat.",
     WY_CFG_OFF(world_cfg_t, forget_after_ms), false},
};

static int world_configure(void *cfg, const char **err);
static void world_unconfigure(void *cfg);
static int world_start(wy_daemon_t *d, const char **err);
static void world_stop(wy_daemon_t *d);
static size_t world_busy(wy_daemon_t *d);

/* No Kafka subscriptions yet. The topic this daemon will consume (ARCHITECTURE.md,
 * section 1: "wy.gameplay", zone changes reported by game) gets a row in the spec's
 * `subs` table together with its handler; until then it has no consumer, so its group
 * "wy-world" commits nothing and the first handler starts at the earliest event.
 * Redis holds all of world's state, so it is required; Kafka only degrades it. */
const wy_daemon_spec_t world_daemon_spec = {
    .svc = "world",
    .grpc_service = "wyvern.world.World",
    .deps = WY_DEP_REDIS | WY_DEP_KAFKA,
    .required_deps = WY_DEP_REDIS,
    .ops_port = 9104,
    .grpc_port = 9204,
    .config = world_config,
    .nconfig = WY_ARRAY_LEN(world_config),
    .config_size = sizeof(world_cfg_t),
    .configure = world_configure,
    .unconfigure = world_unconfigure,
    .start = world_start,
    .stop = world_stop,
    .busy = world_busy,
};

static int world_configure(void *cfg, const char **err)
{
    world_cfg_t *c = cfg;
    static char msg[256];
    zone_catalog_clear(&c->catalog);
    int rc = zone_catalog_load_dir(&c->catalog, c->zones_dir, err);
    if (rc != WY_OK)
        return rc;
    if (!zone_catalog_find(&c->catalog, c->start_zone)) {
        snprintf(msg, sizeof msg, "WY_WORLD_START_ZONE: no zone \"%.64s\" in %.128s", c->start_zone,
                 c->zones_dir);
        *err = msg;
        return WY_EINVAL;
    }
    char n[16];
    snprintf(n, sizeof n, "%zu", c->catalog.n);
    wy_log_info("zones loaded", "dir", c->zones_dir, "zones", n, NULL);
    return WY_OK;
}

static void world_unconfigure(void *cfg)
{
    world_cfg_t *c = cfg;
    zone_catalog_clear(&c->catalog);
}

world_svc_t *world_svc_or_refuse(void *arg, wy_grpc_call_id_t call)
{
    world_svc_t *w = wy_daemon_state(arg);
    if (!w || w->stopping) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-world is stopping");
        return NULL;
    }
    return w;
}

/* ---- the catalog: gRPC ListZones ---- */

static Wyvern__World__Point *point_new(zone_point_t p)
{
    Wyvern__World__Point *o = wy_malloc(sizeof *o);
    wyvern__world__point__init(o);
    o->x = p.x;
    o->y = p.y;
    return o;
}

static void zone_msg_fill(Wyvern__World__Zone *m, const zone_t *z, bool with_grid)
{
    wyvern__world__zone__init(m);
    m->id = z->id;
    m->name = z->name;
    m->kind = (char *)zone_kind_name(z->kind);
    m->width = z->width;
    m->height = z->height;
    m->tick_rate = (uint32_t)z->tick_rate;
    m->instancing = (char *)zone_instancing_name(z->instancing);
    m->capacity = (uint32_t)z->capacity;
    m->cell = z->cell;
    if (with_grid) {
        m->n_rows = (size_t)z->rows;
        m->rows = wy_calloc(m->n_rows, sizeof *m->rows);
        for (int r = 0; r < z->rows; r++) {
            m->rows[r] = wy_malloc((size_t)z->cols + 1);
            for (int c = 0; c < z->cols; c++)
                m->rows[r][c] = z->blocked[(size_t)r * (size_t)z->cols + (size_t)c] ? '#' : '.';
            m->rows[r][z->cols] = '\0';
        }
    }
    m->n_spawns = z->nspawns;
    m->spawns = wy_calloc(z->nspawns + 1, sizeof *m->spawns);
    for (size_t i = 0; i < z->nspawns; i++)
        m->spawns[i] = point_new(z->spawns[i]);
    m->n_npc_areas = z->nnpcs;
    m->npc_areas = wy_calloc(z->nnpcs + 1, sizeof *m->npc_areas);
    for (size_t i = 0; i < z->nnpcs; i++) {
        Wyvern__World__NpcArea *a = wy_malloc(sizeof *a);
        wyvern__world__npc_area__init(a);
        a->template_ = z->npcs[i].template_id;
        a->count = (uint32_t)z->npcs[i].count;
        a->x = z->npcs[i].x;
        a->y = z->npcs[i].y;
        a->w = z->npcs[i].w;
        a->h = z->npcs[i].h;
        m->npc_areas[i] = a;
    }
    m->n_portals = z->nportals;
    m->portals = wy_calloc(z->nportals + 1, sizeof *m->portals);
    for (size_t i = 0; i < z->nportals; i++) {
        Wyvern__World__Portal *p = wy_malloc(sizeof *p);
        wyvern__world__portal__init(p);
        p->id = z->portals[i].id;
        p->at = point_new(z->portals[i].at);
        p->radius = z->portals[i].radius;
        p->target_zone = z->portals[i].target;
        p->arrival = point_new(z->portals[i].arrival);
        m->portals[i] = p;
    }
}

/* Frees what zone_msg_fill allocated (the strings belong to the catalog). */
static void zone_msg_clear(Wyvern__World__Zone *m)
{
    for (size_t r = 0; r < m->n_rows; r++)
        wy_free(m->rows[r]);
    wy_free(m->rows);
    for (size_t i = 0; i < m->n_spawns; i++)
        wy_free(m->spawns[i]);
    wy_free(m->spawns);
    for (size_t i = 0; i < m->n_npc_areas; i++)
        wy_free(m->npc_areas[i]);
    wy_free(m->npc_areas);
    for (size_t i = 0; i < m->n_portals; i++) {
        wy_free(m->portals[i]->at);
        wy_free(m->portals[i]->arrival);
        wy_free(m->portals[i]);
    }
    wy_free(m->portals);
}

static void rpc_list_zones(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__World__ListZonesRequest *in = (const Wyvern__World__ListZonesRequest *)req;
    world_svc_t *w = world_svc_or_refuse(arg, call);
    if (!w)
        return;
    Wyvern__World__ListZonesResponse out = WYVERN__WORLD__LIST_ZONES_RESPONSE__INIT;
    Wyvern__World__Zone *zones = wy_calloc(w->cat->n, sizeof *zones);
    out.n_zones = w->cat->n;
    out.zones = wy_calloc(w->cat->n, sizeof *out.zones);
    for (size_t i = 0; i < w->cat->n; i++) {
        zone_msg_fill(&zones[i], &w->cat->zones[i], in->with_grid);
        out.zones[i] = &zones[i];
    }
    wy_grpc_reply(call, &out.base);
    for (size_t i = 0; i < w->cat->n; i++)
        zone_msg_clear(&zones[i]);
    wy_free(out.zones);
    wy_free(zones);
}

/* ---- the catalog: read-only HTTP view on the ops port ---- */

/* The HTTP view reads the catalog itself (its ud, in the daemon's configuration), not the
 * service: the ops port keeps serving through the drain, after the service's state may be
 * gone. */

/* GET /v1/zones: every zone without its grid. */
static void http_zones(wy_http_req_t *req, void *ud)
{
    const zone_catalog_t *cat = ud;
    json_t *arr = json_array();
    for (size_t i = 0; i < cat->n; i++)
        json_array_append_new(arr, zone_to_json(&cat->zones[i], false));
    wy_http_respond_json(req, 200, json_pack("{s:o}", "zones", arr));
}

/* GET /v1/zones/<id>: one zone with its grid, in the format of its file. */
static void http_zone(wy_http_req_t *req, void *ud)
{
    const zone_catalog_t *cat = ud;
    const char *id = wy_http_req_path(req) + strlen("/v1/zones/");
    const zone_t *z = zone_catalog_find(cat, id);
    if (!z) {
        wy_http_respond_err(req, WY_ENOTFOUND, "no such zone");
        return;
    }
    wy_http_respond_json(req, 200, zone_to_json(z, true));
}

/* ---- life ---- */

static int world_start(wy_daemon_t *d, const char **err)
{
    world_svc_t *w = wy_calloc(1, sizeof *w);
    w->d = d;
    w->cfg = wy_daemon_config(d);
    w->cat = &w->cfg->catalog;
    w->start_zone = zone_catalog_find(w->cat, w->cfg->start_zone);
    w->timer_closed = true; /* until world_registry_start opens the timer */
    w->dead_after_ms = (uint64_t)w->cfg->dead_after_ms;
    w->placement_ttl_ms = (uint64_t)w->cfg->placement_ttl_ms;
    w->forget_after_ms = (uint64_t)w->cfg->forget_after_ms;
    wy_daemon_set_state(d, w);

    w->m_live_games = wy_metrics_gauge("wy_world_games_live",
                                       "Game instances alive (heartbeat "
                                       "within WY_WORLD_GAME_DEAD_AFTER).",
                                       NULL);
    w->m_heartbeats = wy_metrics_counter("wy_world_heartbeats_total",
                                         "Heartbeats of game instances stored.", NULL);
    const char *h = "Place answers, by whether the placement was new or the living one.";
    w->m_placements = wy_metrics_counter("wy_world_placements_total", h, "result=\"new\"");
    w->m_placements_reused =
        wy_metrics_counter("wy_world_placements_total", h, "result=\"existing\"");
    w->m_transfers =
        wy_metrics_counter("wy_world_transfers_total", "Transfers through portals.", NULL);
    w->m_replaced = wy_metrics_counter(
        "wy_world_instances_replaced_total",
        "Zone instances moved off a dead or draining game instance onto a live one.", NULL);

    int rc = world_place_init(w);
    if (rc == WY_OK)
        rc = world_registry_start(w);
    if (rc != WY_OK) {
        *err = "cannot start the registry";
        return rc;
    }
    void *cat = (void *)w->cat; /* read-only: the routes only read it */
    wy_http_route(wy_daemon_ops(d), "GET", "/v1/zones", http_zones, cat);
    wy_http_route_prefix(wy_daemon_ops(d), "GET", "/v1/zones/", http_zone, cat);

    static const struct {
        const char *path;
        const ProtobufCMessageDescriptor *desc;
        wy_grpc_handler_cb cb;
    } methods[] = {
        {"/wyvern.world.World/ListZones", &wyvern__world__list_zones_request__descriptor,
         rpc_list_zones},
        {"/wyvern.world.World/Heartbeat", &wyvern__world__heartbeat_request__descriptor,
         world_rpc_heartbeat},
        {"/wyvern.world.World/ListGames", &wyvern__world__list_games_request__descriptor,
         world_rpc_list_games},
        {"/wyvern.world.World/Place", &wyvern__world__place_request__descriptor, world_rpc_place},
        {"/wyvern.world.World/Locate", &wyvern__world__locate_request__descriptor,
         world_rpc_locate},
        {"/wyvern.world.World/Transfer", &wyvern__world__transfer_request__descriptor,
         world_rpc_transfer},
        {"/wyvern.world.World/Release", &wyvern__world__release_request__descriptor,
         world_rpc_release},
    };
    for (size_t i = 0; i < WY_ARRAY_LEN(methods); i++)
        if (wy_grpc_server_register(wy_daemon_grpc(d), methods[i].path, methods[i].desc,
                                    methods[i].cb, d) != WY_OK) {
            *err = "cannot register the wyvern.world.World methods";
            return WY_EINTERNAL;
        }
    return WY_OK;
}

/* Requests waiting for Redis finish in the drain (their callbacks run, or get
 * WY_ECANCELED when Redis closes); the state is freed once the last one is done. */
static void world_stop(wy_daemon_t *d)
{
    world_svc_t *w = wy_daemon_state(d);
    if (!w || w->stopping)
        return;
    w->stopping = true;
    world_registry_stop(w);
}

void world_op_begin(world_svc_t *w)
{
    w->inflight++;
}

void world_op_done(world_svc_t *w)
{
    w->inflight--;
    world_svc_maybe_free(w);
}

void world_svc_maybe_free(world_svc_t *w)
{
    if (!w->stopping || w->inflight > 0 || !w->timer_closed)
        return;
    world_registry_free(w);
    wy_daemon_set_state(w->d, NULL);
    wy_free(w);
}

static size_t world_busy(wy_daemon_t *d)
{
    world_svc_t *w = wy_daemon_state(d);
    return w ? w->inflight : 0;
}
