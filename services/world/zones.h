/* wy-world's zone catalog: one JSON file per zone (services/world/README.md, "Zone
 * files"), loaded and validated once at start; read-only afterwards. Pure data: no
 * loop, no Redis, so the validator is unit-tested on its own (tests/unit/world). */
#ifndef WORLD_ZONES_H
#define WORLD_ZONES_H

#include "wy_core.h"

#include <jansson.h>

#define ZONE_ID_MAX    32         /* [a-z0-9_-], 1..32 bytes */
#define ZONE_NAME_MAX  64         /* UTF-8 bytes */
#define ZONE_MAX_ZONES 1024       /* files in one catalog */
#define ZONE_MAX_CELLS (1u << 20) /* walkable grid cells of one zone */
#define ZONE_MAX_ITEMS 256        /* spawn points, NPC areas, portals: each, per zone */
#define ZONE_FILE_MAX  (4u << 20) /* bytes of one zone file */
#define ZONE_SIZE_MAX  100000.0   /* metres, each side */

typedef enum { ZONE_TOWN, ZONE_FIELD, ZONE_DUNGEON } zone_kind_t;
/* One shared instance (more are opened when it is full), one per party, one per player. */
typedef enum { ZONE_SHARED, ZONE_PER_PARTY, ZONE_PER_PLAYER } zone_instancing_t;

typedef struct {
    double x, y; /* metres from the zone's north-west corner; x east, y south */
} zone_point_t;

typedef struct {
    char *template_id; /* NPC template (used by the NPC issue) */
    int count;         /* 1..1000 */
    double x, y, w, h; /* the area, inside the zone */
} zone_npc_area_t;

typedef struct {
    char *id;             /* unique in its zone */
    zone_point_t at;      /* centre */
    double radius;        /* metres, > 0: a player within it goes through */
    char *target;         /* target zone id (known in the catalog) */
    zone_point_t arrival; /* where the player appears in the target zone */
} zone_portal_t;

typedef struct {
    char *id, *name;
    char *file; /* the file it came from, for error messages */
    zone_kind_t kind;
    double width, height;   /* metres */
    double cell;            /* grid cell side, metres */
    int cols, rows;         /* ceil(width / cell), ceil(height / cell) */
    unsigned char *blocked; /* rows * cols, 1 = blocks movement; row-major from the north */
    zone_point_t *spawns;
    size_t nspawns;
    zone_npc_area_t *npcs;
    size_t nnpcs;
    zone_portal_t *portals;
    size_t nportals;
    zone_instancing_t instancing;
    int capacity;  /* players per instance, 1..100000 */
    int tick_rate; /* Hz, 1..120 */
} zone_t;

/* The catalog: zones sorted by id. */
typedef struct {
    zone_t *zones;
    size_t n;
} zone_catalog_t;

/* Adds one zone from its JSON text; file names the source in errors
 * ("data/zones/town.json"). Checks everything that one file decides (fields,
 * types, bounds, the grid, spawns and portals inside the zone and not blocked,
 * portals not overlapping); cross-zone checks wait for zone_catalog_finish.
 * Returns WY_OK, or WY_EINVAL with *err naming the file and the field, e.g.
 *   "data/zones/town.json: portals[1].radius: must be a number > 0".
 * *err points to a static buffer valid until the next call (main thread, at start). */
int zone_catalog_add_json(zone_catalog_t *cat, const char *file, const char *text,
                          const char **err);

/* The cross-zone checks once every file is added: ids unique, every portal's
 * target known, its arrival inside the target, not blocked and not inside a
 * portal of the target (the player would bounce). Sorts the zones by id.
 * Same error contract; at least one zone is required. */
int zone_catalog_finish(zone_catalog_t *cat, const char **err);

/* Loads every "*.json" of dir (other files ignored) with the two calls above.
 * An empty or unreadable folder is an error naming it. */
int zone_catalog_load_dir(zone_catalog_t *cat, const char *dir, const char **err);

/* Frees everything the catalog holds (the struct itself is the caller's). */
void zone_catalog_clear(zone_catalog_t *cat);

/* The zone with that id, or NULL. */
const zone_t *zone_catalog_find(const zone_catalog_t *cat, const char *id);
/* The portal of z with that id, or NULL. */
const zone_portal_t *zone_portal_find(const zone_t *z, const char *id);
/* True when (x, y) is outside the zone or in a blocked cell. */
bool zone_blocked_at(const zone_t *z, double x, double y);

const char *zone_kind_name(zone_kind_t k);
const char *zone_instancing_name(zone_instancing_t i);

/* The zone as JSON (the format of its file, the grid as rows of '.'/'#').
 * Returns a new reference; caller decrefs. with_grid false leaves the grid's rows out. */
json_t *zone_to_json(const zone_t *z, bool with_grid);

#endif
