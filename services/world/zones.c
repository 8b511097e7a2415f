/* wy-world's zone catalog: the zone files parsed with jansson and validated field by
 * field, so a bad file stops the daemon with a message naming the file and the field
 * (services/world/README.md, "Zone files"). */
#include "zones.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char errbuf[512];

static int zone_fail(const char **err, const char *file, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "<file>: <field>: <why>" (or "<file>: <why>" without a field) into errbuf. */
static int zone_fail(const char **err, const char *file, const char *field, const char *fmt, ...)
{
    int n = field && *field ? snprintf(errbuf, sizeof errbuf, "%s: %s: ", file, field)
                            : snprintf(errbuf, sizeof errbuf, "%s: ", file);
    if (n < 0 || (size_t)n >= sizeof errbuf)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf + n, sizeof errbuf - (size_t)n, fmt, ap);
    va_end(ap);
    *err = errbuf;
    return WY_EINVAL;
}

/* The file being read and the path of the field in it, for error messages. */
typedef struct {
    const char *file;
    const char **err;
} ctx_t;

static const char *path_of(char *buf, size_t len, const char *base, const char *key, long idx)
{
    if (idx >= 0)
        snprintf(buf, len, "%s%s%s[%ld]", base, *base && key ? "." : "", key ? key : "", idx);
    else
        snprintf(buf, len, "%s%s%s", base, *base ? "." : "", key);
    return buf;
}

/* Only the listed keys may appear: a misspelt field is an error, not a silent default. */
static int only_keys(ctx_t *c, json_t *obj, const char *base, const char *const *keys)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        bool known = false;
        for (size_t i = 0; keys[i] && !known; i++)
            known = strcmp(keys[i], k) == 0;
        if (!known) {
            char p[160];
            return zone_fail(c->err, c->file, path_of(p, sizeof p, base, k, -1),
                             "unknown field (see services/world/README.md, \"Zone files\")");
        }
    }
    return WY_OK;
}

static int get_member(ctx_t *c, json_t *obj, const char *base, const char *key, json_t **out)
{
    *out = json_object_get(obj, key);
    if (!*out) {
        char p[160];
        return zone_fail(c->err, c->file, path_of(p, sizeof p, base, key, -1), "missing field");
    }
    return WY_OK;
}

static int get_number(ctx_t *c, json_t *obj, const char *base, const char *key, double min,
                      double max, bool min_open, double *out)
{
    json_t *v;
    char p[160];
    int rc = get_member(c, obj, base, key, &v);
    if (rc != WY_OK)
        return rc;
    path_of(p, sizeof p, base, key, -1);
    if (!json_is_number(v))
        return zone_fail(c->err, c->file, p, "must be a number");
    double d = json_number_value(v);
    if (!isfinite(d) || (min_open ? d <= min : d < min) || d > max)
        return zone_fail(c->err, c->file, p, "must be a number %s %g and <= %g (got %g)",
                         min_open ? ">" : ">=", min, max, d);
    *out = d;
    return WY_OK;
}

static int get_int(ctx_t *c, json_t *obj, const char *base, const char *key, int min, int max,
                   int *out)
{
    json_t *v;
    char p[160];
    int rc = get_member(c, obj, base, key, &v);
    if (rc != WY_OK)
        return rc;
    path_of(p, sizeof p, base, key, -1);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return zone_fail(c->err, c->file, p, "must be an integer between %d and %d", min, max);
    *out = (int)json_integer_value(v);
    return WY_OK;
}

static bool id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ZONE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-'))
            return false;
    return true;
}

/* An id: 1..32 of [a-z0-9_-]; a new copy in *out. */
static int get_id(ctx_t *c, json_t *obj, const char *base, const char *key, char **out)
{
    json_t *v;
    char p[160];
    int rc = get_member(c, obj, base, key, &v);
    if (rc != WY_OK)
        return rc;
    path_of(p, sizeof p, base, key, -1);
    if (!json_is_string(v) || !id_valid(json_string_value(v)))
        return zone_fail(c->err, c->file, p, "must be a string of 1..%d characters [a-z0-9_-]",
                         ZONE_ID_MAX);
    *out = wy_strdup(json_string_value(v));
    return WY_OK;
}

static int get_enum(ctx_t *c, json_t *obj, const char *key, const char *const *names, int *out)
{
    json_t *v;
    int rc = get_member(c, obj, "", key, &v);
    if (rc != WY_OK)
        return rc;
    for (int i = 0; names[i] && json_is_string(v); i++)
        if (strcmp(json_string_value(v), names[i]) == 0) {
            *out = i;
            return WY_OK;
        }
    char all[128] = "";
    for (int i = 0; names[i]; i++)
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? ", " : "", names[i]);
    return zone_fail(c->err, c->file, key, "must be one of %s", all);
}

static int get_array(ctx_t *c, json_t *obj, const char *key, size_t min, json_t **out)
{
    int rc = get_member(c, obj, "", key, out);
    if (rc != WY_OK)
        return rc;
    if (!json_is_array(*out) || json_array_size(*out) < min ||
        json_array_size(*out) > ZONE_MAX_ITEMS)
        return zone_fail(c->err, c->file, key, "must be an array of %zu..%d entries", min,
                         ZONE_MAX_ITEMS);
    return WY_OK;
}

static int get_object(ctx_t *c, json_t *obj, const char *base, const char *key, json_t **out)
{
    char p[160];
    int rc = get_member(c, obj, base, key, out);
    if (rc == WY_OK && !json_is_object(*out))
        return zone_fail(c->err, c->file, path_of(p, sizeof p, base, key, -1), "must be an object");
    return rc;
}

/* Element i of the array arr (the field key) as an object with only the given keys;
 * its path ("portals[2]") in p. */
static int get_item(ctx_t *c, json_t *arr, const char *key, size_t i, const char *const *keys,
                    char *p, size_t plen, json_t **out)
{
    *out = json_array_get(arr, i);
    path_of(p, plen, "", key, (long)i);
    if (!json_is_object(*out))
        return zone_fail(c->err, c->file, p, "must be an object");
    return only_keys(c, *out, p, keys);
}

static const char *const kind_names[] = {"town", "field", "dungeon", NULL};
static const char *const inst_names[] = {"shared", "party", "player", NULL};

const char *zone_kind_name(zone_kind_t k)
{
    return kind_names[k];
}

const char *zone_instancing_name(zone_instancing_t i)
{
    return inst_names[i];
}

bool zone_blocked_at(const zone_t *z, double x, double y)
{
    if (!(x >= 0 && y >= 0 && x < z->width && y < z->height))
        return true;
    int col = (int)(x / z->cell), row = (int)(y / z->cell);
    if (col >= z->cols)
        col = z->cols - 1;
    if (row >= z->rows)
        row = z->rows - 1;
    return z->blocked[(size_t)row * (size_t)z->cols + (size_t)col] != 0;
}

/* A point {x, y} inside z (not blocked when walkable is set). */
static int get_point(ctx_t *c, const zone_t *z, json_t *obj, const char *base, bool walkable,
                     zone_point_t *out)
{
    int rc = get_number(c, obj, base, "x", 0, z->width, false, &out->x);
    if (rc == WY_OK)
        rc = get_number(c, obj, base, "y", 0, z->height, false, &out->y);
    if (rc != WY_OK)
        return rc;
    if (out->x >= z->width || out->y >= z->height)
        return zone_fail(c->err, c->file, base, "(%g, %g) is outside the zone (%g x %g m)", out->x,
                         out->y, z->width, z->height);
    if (walkable && zone_blocked_at(z, out->x, out->y))
        return zone_fail(c->err, c->file, base, "(%g, %g) is in a blocked cell", out->x, out->y);
    return WY_OK;
}

static int parse_grid(ctx_t *c, zone_t *z, json_t *root)
{
    json_t *grid, *rows;
    static const char *const keys[] = {"cell", "rows", NULL};
    int rc = get_object(c, root, "", "grid", &grid);
    if (rc == WY_OK)
        rc = only_keys(c, grid, "grid", keys);
    if (rc == WY_OK)
        rc = get_number(c, grid, "grid", "cell", 0, ZONE_SIZE_MAX, true, &z->cell);
    if (rc == WY_OK)
        rc = get_member(c, grid, "grid", "rows", &rows);
    if (rc != WY_OK)
        return rc;
    double cols = ceil(z->width / z->cell), nrows = ceil(z->height / z->cell);
    if (cols * nrows > ZONE_MAX_CELLS)
        return zone_fail(c->err, c->file, "grid.cell",
                         "%g m cells make a %g x %g grid, over %u cells: use larger cells", z->cell,
                         cols, nrows, ZONE_MAX_CELLS);
    z->cols = (int)cols;
    z->rows = (int)nrows;
    if (!json_is_array(rows) || json_array_size(rows) != (size_t)z->rows)
        return zone_fail(c->err, c->file, "grid.rows",
                         "must be an array of %d strings (height %g m / cell %g m)", z->rows,
                         z->height, z->cell);
    z->blocked = wy_calloc((size_t)z->rows * (size_t)z->cols, 1);
    for (int r = 0; r < z->rows; r++) {
        json_t *row = json_array_get(rows, (size_t)r);
        char p[64];
        snprintf(p, sizeof p, "grid.rows[%d]", r);
        if (!json_is_string(row) || json_string_length(row) != (size_t)z->cols)
            return zone_fail(c->err, c->file, p,
                             "must be a string of %d cells (width %g m / cell %g m) of '.' or '#'",
                             z->cols, z->width, z->cell);
        const char *s = json_string_value(row);
        for (int col = 0; col < z->cols; col++) {
            if (s[col] != '.' && s[col] != '#')
                return zone_fail(c->err, c->file, p,
                                 "cell %d is '%c': only '.' (walkable) or '#' "
                                 "(blocked)",
                                 col, s[col]);
            z->blocked[(size_t)r * (size_t)z->cols + (size_t)col] = s[col] == '#';
        }
    }
    return WY_OK;
}

static int parse_spawns(ctx_t *c, zone_t *z, json_t *root)
{
    json_t *arr;
    int rc = get_array(c, root, "spawns", 1, &arr);
    if (rc != WY_OK)
        return rc;
    z->spawns = wy_calloc(json_array_size(arr), sizeof *z->spawns);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        static const char *const keys[] = {"x", "y", NULL};
        char p[64];
        json_t *v;
        if ((rc = get_item(c, arr, "spawns", i, keys, p, sizeof p, &v)) != WY_OK ||
            (rc = get_point(c, z, v, p, true, &z->spawns[i])) != WY_OK)
            return rc;
        z->nspawns++;
    }
    return WY_OK;
}

static int parse_npcs(ctx_t *c, zone_t *z, json_t *root)
{
    static const char *const keys[] = {"template", "count", "area", NULL};
    static const char *const area_keys[] = {"x", "y", "w", "h", NULL};
    json_t *arr;
    int rc = get_array(c, root, "npc_areas", 0, &arr);
    if (rc != WY_OK)
        return rc;
    z->npcs = wy_calloc(json_array_size(arr) + 1, sizeof *z->npcs);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char p[64], ap[80];
        json_t *v, *area;
        zone_npc_area_t *a = &z->npcs[i];
        rc = get_item(c, arr, "npc_areas", i, keys, p, sizeof p, &v);
        if (rc == WY_OK)
            rc = get_id(c, v, p, "template", &a->template_id);
        if (rc == WY_OK)
            z->nnpcs++; /* owns template_id from here */
        if (rc == WY_OK)
            rc = get_int(c, v, p, "count", 1, 1000, &a->count);
        if (rc == WY_OK)
            rc = get_object(c, v, p, "area", &area);
        path_of(ap, sizeof ap, p, "area", -1);
        if (rc == WY_OK)
            rc = only_keys(c, area, ap, area_keys);
        if (rc == WY_OK)
            rc = get_number(c, area, ap, "x", 0, z->width, false, &a->x);
        if (rc == WY_OK)
            rc = get_number(c, area, ap, "y", 0, z->height, false, &a->y);
        if (rc == WY_OK)
            rc = get_number(c, area, ap, "w", 0, z->width, true, &a->w);
        if (rc == WY_OK)
            rc = get_number(c, area, ap, "h", 0, z->height, true, &a->h);
        if (rc != WY_OK)
            return rc;
        if (a->x + a->w > z->width || a->y + a->h > z->height)
            return zone_fail(c->err, c->file, ap, "reaches outside the zone (%g x %g m)", z->width,
                             z->height);
    }
    return WY_OK;
}

static int parse_portals(ctx_t *c, zone_t *z, json_t *root)
{
    static const char *const keys[] = {"id", "x", "y", "radius", "target", "arrival", NULL};
    json_t *arr;
    int rc = get_array(c, root, "portals", 0, &arr);
    if (rc != WY_OK)
        return rc;
    z->portals = wy_calloc(json_array_size(arr) + 1, sizeof *z->portals);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char p[64], ap[80];
        json_t *v, *arrival;
        zone_portal_t *pt = &z->portals[i];
        rc = get_item(c, arr, "portals", i, keys, p, sizeof p, &v);
        if (rc == WY_OK)
            rc = get_id(c, v, p, "id", &pt->id);
        if (rc == WY_OK) {
            z->nportals++; /* owns id (and target) from here */
            rc = get_id(c, v, p, "target", &pt->target);
        }
        if (rc == WY_OK)
            rc = get_number(c, v, p, "radius", 0, ZONE_SIZE_MAX, true, &pt->radius);
        if (rc == WY_OK)
            rc = get_point(c, z, v, p, true, &pt->at); /* reachable */
        if (rc == WY_OK)
            rc = get_object(c, v, p, "arrival", &arrival);
        if (rc != WY_OK)
            return rc;
        /* The arrival is checked against the target zone in zone_catalog_finish. */
        path_of(ap, sizeof ap, p, "arrival", -1);
        static const char *const pkeys[] = {"x", "y", NULL};
        if ((rc = only_keys(c, arrival, ap, pkeys)) != WY_OK ||
            (rc = get_number(c, arrival, ap, "x", 0, ZONE_SIZE_MAX, false, &pt->arrival.x)) !=
                WY_OK ||
            (rc = get_number(c, arrival, ap, "y", 0, ZONE_SIZE_MAX, false, &pt->arrival.y)) !=
                WY_OK)
            return rc;
        for (size_t j = 0; j < i; j++) {
            const zone_portal_t *o = &z->portals[j];
            if (strcmp(o->id, pt->id) == 0)
                return zone_fail(c->err, c->file, p, "id \"%s\" is also portals[%zu]'s", pt->id, j);
            if (hypot(o->at.x - pt->at.x, o->at.y - pt->at.y) < o->radius + pt->radius)
                return zone_fail(c->err, c->file, p,
                                 "portal \"%s\" overlaps portals[%zu] (\"%s\"): their circles meet",
                                 pt->id, j, o->id);
        }
    }
    return WY_OK;
}

static void zone_clear(zone_t *z)
{
    wy_free(z->id);
    wy_free(z->name);
    wy_free(z->file);
    wy_free(z->blocked);
    wy_free(z->spawns);
    for (size_t i = 0; i < z->nnpcs; i++)
        wy_free(z->npcs[i].template_id);
    wy_free(z->npcs);
    for (size_t i = 0; i < z->nportals; i++) {
        wy_free(z->portals[i].id);
        wy_free(z->portals[i].target);
    }
    wy_free(z->portals);
    memset(z, 0, sizeof *z);
}

static int parse_zone(ctx_t *c, zone_t *z, json_t *root)
{
    static const char *const keys[] = {"id",        "name",       "kind",     "size",
                                       "tick_rate", "instancing", "capacity", "grid",
                                       "spawns",    "npc_areas",  "portals",  NULL};
    static const char *const size_keys[] = {"width", "height", NULL};
    json_t *v, *size;
    int kind = 0, inst = 0;
    int rc = only_keys(c, root, "", keys);
    if (rc == WY_OK)
        rc = get_id(c, root, "", "id", &z->id);
    if (rc == WY_OK)
        rc = get_member(c, root, "", "name", &v);
    if (rc != WY_OK)
        return rc;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > ZONE_NAME_MAX)
        return zone_fail(c->err, c->file, "name", "must be a string of 1..%d bytes", ZONE_NAME_MAX);
    z->name = wy_strdup(json_string_value(v));
    if ((rc = get_enum(c, root, "kind", kind_names, &kind)) != WY_OK ||
        (rc = get_enum(c, root, "instancing", inst_names, &inst)) != WY_OK)
        return rc;
    z->kind = (zone_kind_t)kind;
    z->instancing = (zone_instancing_t)inst;
    rc = get_object(c, root, "", "size", &size);
    if (rc == WY_OK)
        rc = only_keys(c, size, "size", size_keys);
    if (rc == WY_OK)
        rc = get_number(c, size, "size", "width", 0, ZONE_SIZE_MAX, true, &z->width);
    if (rc == WY_OK)
        rc = get_number(c, size, "size", "height", 0, ZONE_SIZE_MAX, true, &z->height);
    if (rc == WY_OK)
        rc = get_int(c, root, "", "tick_rate", 1, 120, &z->tick_rate);
    if (rc == WY_OK)
        rc = get_int(c, root, "", "capacity", 1, 100000, &z->capacity);
    if (rc == WY_OK)
        rc = parse_grid(c, z, root);
    if (rc == WY_OK)
        rc = parse_spawns(c, z, root);
    if (rc == WY_OK)
        rc = parse_npcs(c, z, root);
    if (rc == WY_OK)
        rc = parse_portals(c, z, root);
    return rc;
}

int zone_catalog_add_json(zone_catalog_t *cat, const char *file, const char *text, const char **err)
{
    ctx_t c = {.file = file, .err = err};
    if (cat->n >= ZONE_MAX_ZONES)
        return zone_fail(err, file, NULL, "more than %d zone files", ZONE_MAX_ZONES);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return zone_fail(err, file, NULL, "not valid JSON: line %d, column %d: %s", jerr.line,
                         jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return zone_fail(err, file, NULL, "must hold one JSON object (a zone)");
    }
    zone_t z;
    memset(&z, 0, sizeof z);
    int rc = parse_zone(&c, &z, root);
    json_decref(root);
    if (rc != WY_OK) {
        zone_clear(&z);
        return rc;
    }
    z.file = wy_strdup(file);
    cat->zones = wy_realloc(cat->zones, (cat->n + 1) * sizeof *cat->zones);
    cat->zones[cat->n++] = z;
    return WY_OK;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const zone_t *)a)->id, ((const zone_t *)b)->id);
}

const zone_t *zone_catalog_find(const zone_catalog_t *cat, const char *id)
{
    for (size_t i = 0; i < cat->n; i++) /* a catalog is small: tens of zones */
        if (strcmp(cat->zones[i].id, id) == 0)
            return &cat->zones[i];
    return NULL;
}

const zone_portal_t *zone_portal_find(const zone_t *z, const char *id)
{
    for (size_t i = 0; i < z->nportals; i++)
        if (strcmp(z->portals[i].id, id) == 0)
            return &z->portals[i];
    return NULL;
}

int zone_catalog_finish(zone_catalog_t *cat, const char **err)
{
    if (cat->n == 0)
        return zone_fail(err, "zone catalog", NULL, "no zone files");
    qsort(cat->zones, cat->n, sizeof *cat->zones, by_id);
    for (size_t i = 1; i < cat->n; i++)
        if (strcmp(cat->zones[i - 1].id, cat->zones[i].id) == 0)
            return zone_fail(err, cat->zones[i].file, "id", "\"%s\" is also the id of %s",
                             cat->zones[i].id, cat->zones[i - 1].file);
    for (size_t i = 0; i < cat->n; i++) {
        const zone_t *z = &cat->zones[i];
        const char *file = z->file;
        char p[80];
        for (size_t j = 0; j < z->nportals; j++) {
            const zone_portal_t *pt = &z->portals[j];
            const zone_t *t = zone_catalog_find(cat, pt->target);
            snprintf(p, sizeof p, "portals[%zu].target", j);
            if (!t)
                return zone_fail(err, file, p, "unknown zone \"%s\"", pt->target);
            snprintf(p, sizeof p, "portals[%zu].arrival", j);
            if (pt->arrival.x >= t->width || pt->arrival.y >= t->height)
                return zone_fail(err, file, p, "(%g, %g) is outside zone \"%s\" (%g x %g m)",
                                 pt->arrival.x, pt->arrival.y, t->id, t->width, t->height);
            if (zone_blocked_at(t, pt->arrival.x, pt->arrival.y))
                return zone_fail(err, file, p, "(%g, %g) is in a blocked cell of zone \"%s\"",
                                 pt->arrival.x, pt->arrival.y, t->id);
            for (size_t k = 0; k < t->nportals; k++)
                if (hypot(t->portals[k].at.x - pt->arrival.x, t->portals[k].at.y - pt->arrival.y) <
                    t->portals[k].radius)
                    return zone_fail(err, file, p,
                                     "(%g, %g) is inside portal \"%s\" of zone \"%s\": the player "
                                     "would go straight through",
                                     pt->arrival.x, pt->arrival.y, t->portals[k].id, t->id);
        }
    }
    return WY_OK;
}

static int read_file(const char *path, char **out, const char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return zone_fail(err, path, NULL, "cannot open: %s", strerror(errno));
    char *buf = wy_malloc(ZONE_FILE_MAX + 1);
    size_t n = fread(buf, 1, ZONE_FILE_MAX + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || n > ZONE_FILE_MAX) {
        wy_free(buf);
        return bad ? zone_fail(err, path, NULL, "read error")
                   : zone_fail(err, path, NULL, "larger than %u bytes", ZONE_FILE_MAX);
    }
    buf[n] = '\0';
    *out = buf;
    return WY_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int zone_catalog_load_dir(zone_catalog_t *cat, const char *dir, const char **err)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return zone_fail(err, dir, NULL, "cannot open the zones folder: %s", strerror(errno));
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    int rc = WY_OK;
    while ((de = readdir(dh)) != NULL) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        if (n >= ZONE_MAX_ZONES) {
            rc = zone_fail(err, dir, NULL, "more than %d zone files", ZONE_MAX_ZONES);
            break;
        }
        names = wy_realloc(names, (n + 1) * sizeof *names);
        names[n++] = wy_sprintf("%s/%s", dir, de->d_name);
    }
    closedir(dh);
    if (rc == WY_OK && n == 0)
        rc = zone_fail(err, dir, NULL, "no zone files (*.json) in the zones folder");
    if (names)
        qsort(names, n, sizeof *names, by_name); /* the same first error on every machine */
    for (size_t i = 0; i < n && rc == WY_OK; i++) {
        char *text = NULL;
        if ((rc = read_file(names[i], &text, err)) == WY_OK)
            rc = zone_catalog_add_json(cat, names[i], text, err);
        wy_free(text);
    }
    for (size_t i = 0; i < n; i++)
        wy_free(names[i]);
    wy_free(names);
    return rc == WY_OK ? zone_catalog_finish(cat, err) : rc;
}

void zone_catalog_clear(zone_catalog_t *cat)
{
    for (size_t i = 0; i < cat->n; i++)
        zone_clear(&cat->zones[i]);
    wy_free(cat->zones);
    cat->zones = NULL;
    cat->n = 0;
}

static json_t *point_json(zone_point_t p)
{
    return json_pack("{s:f,s:f}", "x", p.x, "y", p.y);
}

json_t *zone_to_json(const zone_t *z, bool with_grid)
{
    json_t *grid = json_pack("{s:f}", "cell", z->cell);
    if (with_grid) {
        json_t *rows = json_array();
        char *row = wy_malloc((size_t)z->cols + 1);
        for (int r = 0; r < z->rows; r++) {
            for (int c = 0; c < z->cols; c++)
                row[c] = z->blocked[(size_t)r * (size_t)z->cols + (size_t)c] ? '#' : '.';
            row[z->cols] = '\0';
            json_array_append_new(rows, json_string(row));
        }
        wy_free(row);
        json_object_set_new(grid, "rows", rows);
    }
    json_t *spawns = json_array(), *npcs = json_array(), *portals = json_array();
    for (size_t i = 0; i < z->nspawns; i++)
        json_array_append_new(spawns, point_json(z->spawns[i]));
    for (size_t i = 0; i < z->nnpcs; i++) {
        const zone_npc_area_t *a = &z->npcs[i];
        json_array_append_new(npcs, json_pack("{s:s,s:i,s:{s:f,s:f,s:f,s:f}}", "template",
                                              a->template_id, "count", a->count, "area", "x", a->x,
                                              "y", a->y, "w", a->w, "h", a->h));
    }
    for (size_t i = 0; i < z->nportals; i++) {
        const zone_portal_t *p = &z->portals[i];
        json_array_append_new(portals,
                              json_pack("{s:s,s:f,s:f,s:f,s:s,s:o}", "id", p->id, "x", p->at.x, "y",
                                        p->at.y, "radius", p->radius, "target", p->target,
                                        "arrival", point_json(p->arrival)));
    }
    return json_pack("{s:s,s:s,s:s,s:{s:f,s:f},s:i,s:s,s:i,s:o,s:o,s:o,s:o}", "id", z->id, "name",
                     z->name, "kind", zone_kind_name(z->kind), "size", "width", z->width, "height",
                     z->height, "tick_rate", z->tick_rate, "instancing",
                     zone_instancing_name(z->instancing), "capacity", z->capacity, "grid", grid,
                     "spawns", spawns, "npc_areas", npcs, "portals", portals);
}
