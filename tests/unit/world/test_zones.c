/* Unit tests for wy-world's zone catalog (services/world/zones.c): the sample format
 * loads, and each kind of bad file is refused with a message naming the file and the
 * field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../services/world/zones.c"

/* Zone "a": 64 x 32 m in 16 m cells (4 x 2), cell (2, 1) blocked; a portal to "b". */
static const char ZONE_A[] =
    "{\"id\": \"a\", \"name\": \"Zone A\", \"kind\": \"town\","
    " \"size\": {\"width\": 64, \"height\": 32}, \"tick_rate\": 20,"
    " \"instancing\": \"shared\", \"capacity\": 50,"
    " \"grid\": {\"cell\": 16, \"rows\": [\"....\", \"..#.\"]},"
    " \"spawns\": [{\"x\": 8, \"y\": 8}],"
    " \"npc_areas\": [{\"template\": \"wolf\", \"count\": 3,"
    "   \"area\": {\"x\": 0, \"y\": 0, \"w\": 32, \"h\": 16}}],"
    " \"portals\": [{\"id\": \"to_b\", \"x\": 56, \"y\": 8, \"radius\": 4, \"target\": \"b\","
    "   \"arrival\": {\"x\": 24, \"y\": 24}}]}";

/* Zone "b": 32 x 32 m (2 x 2), cell (0, 0) blocked; a portal back to "a". */
static const char ZONE_B[] =
    "{\"id\": \"b\", \"name\": \"Zone B\", \"kind\": \"dungeon\","
    " \"size\": {\"width\": 32, \"height\": 32}, \"tick_rate\": 30,"
    " \"instancing\": \"party\", \"capacity\": 5,"
    " \"grid\": {\"cell\": 16, \"rows\": [\"#.\", \"..\"]},"
    " \"spawns\": [{\"x\": 20, \"y\": 20}],"
    " \"npc_areas\": [],"
    " \"portals\": [{\"id\": \"out\", \"x\": 28, \"y\": 28, \"radius\": 2, \"target\": \"a\","
    "   \"arrival\": {\"x\": 8, \"y\": 24}}]}";

/* text with the first `from` replaced by `to`; the test fails if from is absent. */
static char *edit(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    assert_non_null(at);
    return wy_sprintf("%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
}

/* Loads a (edited with from -> to when from is not NULL) and b; returns the status and
 * copies the error into msg. */
static int load_pair(const char *from, const char *to, char *msg, size_t len)
{
    zone_catalog_t cat = {0};
    const char *err = NULL;
    char *a = from ? edit(ZONE_A, from, to) : wy_strdup(ZONE_A);
    int rc = zone_catalog_add_json(&cat, "zones/a.json", a, &err);
    if (rc == WY_OK)
        rc = zone_catalog_add_json(&cat, "zones/b.json", ZONE_B, &err);
    if (rc == WY_OK)
        rc = zone_catalog_finish(&cat, &err);
    snprintf(msg, len, "%s", rc == WY_OK ? "" : err);
    wy_free(a);
    zone_catalog_clear(&cat);
    return rc;
}

/* The edit is refused with exactly this message. */
static void refused(const char *from, const char *to, const char *want)
{
    char msg[512];
    assert_int_equal(load_pair(from, to, msg, sizeof msg), WY_EINVAL);
    assert_string_equal(msg, want);
}

static void test_valid_pair(void **state)
{
    (void)state;
    zone_catalog_t cat = {0};
    const char *err = NULL;
    assert_int_equal(zone_catalog_add_json(&cat, "zones/b.json", ZONE_B, &err), WY_OK);
    assert_int_equal(zone_catalog_add_json(&cat, "zones/a.json", ZONE_A, &err), WY_OK);
    assert_int_equal(zone_catalog_finish(&cat, &err), WY_OK);
    assert_int_equal(cat.n, 2);
    assert_string_equal(cat.zones[0].id, "a"); /* sorted by id */
    const zone_t *a = zone_catalog_find(&cat, "a"), *b = zone_catalog_find(&cat, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_null(zone_catalog_find(&cat, "c"));
    assert_int_equal(a->kind, ZONE_TOWN);
    assert_int_equal(b->instancing, ZONE_PER_PARTY);
    assert_int_equal(a->cols, 4);
    assert_int_equal(a->rows, 2);
    assert_int_equal(a->capacity, 50);
    assert_int_equal(b->tick_rate, 30);
    assert_int_equal(a->nnpcs, 1);
    assert_string_equal(a->npcs[0].template_id, "wolf");
    assert_int_equal(a->npcs[0].count, 3);
    const zone_portal_t *p = zone_portal_find(a, "to_b");
    assert_non_null(p);
    assert_string_equal(p->target, "b");
    assert_true(p->arrival.x == 24 && p->arrival.y == 24);
    assert_null(zone_portal_find(a, "nope"));
    /* The grid: (2, 1) blocked in a; outside the zone counts as blocked. */
    assert_false(zone_blocked_at(a, 8, 8));
    assert_true(zone_blocked_at(a, 40, 20));
    assert_false(zone_blocked_at(a, 56, 20));
    assert_true(zone_blocked_at(a, -1, 8));
    assert_true(zone_blocked_at(a, 64, 8));
    assert_true(zone_blocked_at(a, 8, 32));
    zone_catalog_clear(&cat);
    assert_int_equal(cat.n, 0);
}

/* zone_to_json writes the file format: what it writes loads back to the same zone. */
static void test_json_round_trip(void **state)
{
    (void)state;
    zone_catalog_t cat = {0}, again = {0};
    const char *err = NULL;
    assert_int_equal(zone_catalog_add_json(&cat, "zones/a.json", ZONE_A, &err), WY_OK);
    json_t *j = zone_to_json(&cat.zones[0], true);
    char *text = json_dumps(j, 0);
    json_decref(j);
    assert_int_equal(zone_catalog_add_json(&again, "again.json", text, &err), WY_OK);
    free(text);
    const zone_t *x = &cat.zones[0], *y = &again.zones[0];
    assert_string_equal(x->name, y->name);
    assert_int_equal(x->cols * x->rows, y->cols * y->rows);
    assert_memory_equal(x->blocked, y->blocked, (size_t)(x->cols * x->rows));
    assert_int_equal(x->nportals, y->nportals);
    assert_true(x->portals[0].radius == y->portals[0].radius);
    assert_string_equal(x->portals[0].target, y->portals[0].target);
    /* Without the grid, its rows are left out. */
    j = zone_to_json(x, false);
    assert_null(json_object_get(json_object_get(j, "grid"), "rows"));
    json_decref(j);
    zone_catalog_clear(&cat);
    zone_catalog_clear(&again);
}

static void test_missing_field(void **state)
{
    (void)state;
    refused(" \"capacity\": 50,", "", "zones/a.json: capacity: missing field");
    refused("\"spawns\": [{\"x\": 8, \"y\": 8}],", "", "zones/a.json: spawns: missing field");
    refused("\"radius\": 4, ", "", "zones/a.json: portals[0].radius: missing field");
    refused("\"arrival\": {\"x\": 24, \"y\": 24}", "\"arrival\": {\"x\": 24}",
            "zones/a.json: portals[0].arrival.y: missing field");
}

static void test_wrong_type(void **state)
{
    (void)state;
    refused("\"capacity\": 50", "\"capacity\": \"fifty\"",
            "zones/a.json: capacity: must be an integer between 1 and 100000");
    refused("\"kind\": \"town\"", "\"kind\": \"castle\"",
            "zones/a.json: kind: must be one of town, field, dungeon");
    refused("\"radius\": 4", "\"radius\": 0",
            "zones/a.json: portals[0].radius: must be a number > 0 and <= 100000 (got 0)");
    refused("\"spawns\": [{\"x\": 8, \"y\": 8}]", "\"spawns\": []",
            "zones/a.json: spawns: must be an array of 1..256 entries");
    refused("\"id\": \"a\"", "\"id\": \"A b\"",
            "zones/a.json: id: must be a string of 1..32 characters [a-z0-9_-]");
}

static void test_unknown_field_and_bad_json(void **state)
{
    (void)state;
    refused("\"tick_rate\": 20", "\"tickrate\": 20",
            "zones/a.json: tickrate: unknown field (see services/world/README.md, \"Zone "
            "files\")");
    char msg[512];
    assert_int_equal(load_pair("\"capacity\": 50,", "\"capacity\": 50", msg, sizeof msg),
                     WY_EINVAL);
    assert_non_null(strstr(msg, "zones/a.json: not valid JSON: line 1, column "));
}

static void test_grid(void **state)
{
    (void)state;
    refused("[\"....\", \"..#.\"]", "[\"....\"]",
            "zones/a.json: grid.rows: must be an array of 2 strings (height 32 m / cell 16 m)");
    refused("\"..#.\"", "\"..#\"",
            "zones/a.json: grid.rows[1]: must be a string of 4 cells (width 64 m / cell 16 m) "
            "of '.' or '#'");
    refused("\"..#.\"", "\"..x.\"",
            "zones/a.json: grid.rows[1]: cell 2 is 'x': only '.' (walkable) or '#' (blocked)");
    refused("\"cell\": 16", "\"cell\": 0.01",
            "zones/a.json: grid.cell: 0.01 m cells make a 6400 x 3200 grid, over 1048576 "
            "cells: use larger cells");
}

static void test_spawns_and_areas(void **state)
{
    (void)state;
    refused("\"spawns\": [{\"x\": 8, \"y\": 8}]", "\"spawns\": [{\"x\": 8, \"y\": 99}]",
            "zones/a.json: spawns[0].y: must be a number >= 0 and <= 32 (got 99)");
    refused("\"spawns\": [{\"x\": 8, \"y\": 8}]", "\"spawns\": [{\"x\": 64, \"y\": 8}]",
            "zones/a.json: spawns[0]: (64, 8) is outside the zone (64 x 32 m)");
    refused("\"spawns\": [{\"x\": 8, \"y\": 8}]", "\"spawns\": [{\"x\": 40, \"y\": 20}]",
            "zones/a.json: spawns[0]: (40, 20) is in a blocked cell");
    refused("\"x\": 0, \"y\": 0, \"w\": 32", "\"x\": 40, \"y\": 0, \"w\": 32",
            "zones/a.json: npc_areas[0].area: reaches outside the zone (64 x 32 m)");
}

static void test_portals(void **state)
{
    (void)state;
    /* A second portal, appended after the first one. */
    const char *portals = "\"arrival\": {\"x\": 24, \"y\": 24}}]}";
    const char *two = "\"arrival\": {\"x\": 24, \"y\": 24}}, "
                      "{\"id\": \"to_b2\", \"x\": 50, \"y\": 10, \"radius\": 3, "
                      "\"target\": \"b\", \"arrival\": {\"x\": 24, \"y\": 24}}]}";
    refused(portals, two,
            "zones/a.json: portals[1]: portal \"to_b2\" overlaps portals[0] (\"to_b\"): their "
            "circles meet");
    char *same_id = edit(two, "to_b2", "to_b");
    char *moved = edit(same_id, "\"x\": 50, \"y\": 10", "\"x\": 8, \"y\": 24");
    refused(portals, moved, "zones/a.json: portals[1]: id \"to_b\" is also portals[0]'s");
    wy_free(same_id);
    wy_free(moved);
    refused("\"target\": \"b\"", "\"target\": \"nowhere\"",
            "zones/a.json: portals[0].target: unknown zone \"nowhere\"");
    refused("\"arrival\": {\"x\": 24, \"y\": 24}", "\"arrival\": {\"x\": 8, \"y\": 8}",
            "zones/a.json: portals[0].arrival: (8, 8) is in a blocked cell of zone \"b\"");
    refused("\"arrival\": {\"x\": 24, \"y\": 24}", "\"arrival\": {\"x\": 40, \"y\": 8}",
            "zones/a.json: portals[0].arrival: (40, 8) is outside zone \"b\" (32 x 32 m)");
    refused("\"arrival\": {\"x\": 24, \"y\": 24}", "\"arrival\": {\"x\": 27, \"y\": 27}",
            "zones/a.json: portals[0].arrival: (27, 27) is inside portal \"out\" of zone \"b\": "
            "the player would go straight through");
    refused("\"x\": 56, \"y\": 8", "\"x\": 40, \"y\": 20",
            "zones/a.json: portals[0]: (40, 20) is in a blocked cell");
}

static void test_catalog_level(void **state)
{
    (void)state;
    zone_catalog_t cat = {0};
    const char *err = NULL;
    assert_int_equal(zone_catalog_finish(&cat, &err), WY_EINVAL);
    assert_string_equal(err, "zone catalog: no zone files");
    assert_int_equal(zone_catalog_add_json(&cat, "zones/b.json", ZONE_B, &err), WY_OK);
    assert_int_equal(zone_catalog_add_json(&cat, "zones/b2.json", ZONE_B, &err), WY_OK);
    assert_int_equal(zone_catalog_finish(&cat, &err), WY_EINVAL);
    assert_non_null(strstr(err, ": id: \"b\" is also the id of zones/b"));
    zone_catalog_clear(&cat);
    assert_int_equal(zone_catalog_add_json(&cat, "zones/x.json", "[1, 2]", &err), WY_EINVAL);
    assert_string_equal(err, "zones/x.json: must hold one JSON object (a zone)");
    zone_catalog_clear(&cat);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char *path = wy_sprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    wy_free(path);
}

/* A folder: only *.json files count; an empty folder and a missing one are errors. */
static void test_load_dir(void **state)
{
    (void)state;
    char dir[] = "/tmp/wy-zones-XXXXXX";
    assert_non_null(mkdtemp(dir));
    zone_catalog_t cat = {0};
    const char *err = NULL;
    assert_int_equal(zone_catalog_load_dir(&cat, dir, &err), WY_EINVAL);
    assert_non_null(strstr(err, "no zone files (*.json) in the zones folder"));
    write_file(dir, "a.json", ZONE_A);
    write_file(dir, "README.txt", "not a zone");
    assert_int_equal(zone_catalog_load_dir(&cat, dir, &err), WY_EINVAL);
    char *want = wy_sprintf("%s/a.json: portals[0].target: unknown zone \"b\"", dir);
    assert_string_equal(err, want);
    wy_free(want);
    zone_catalog_clear(&cat);
    write_file(dir, "b.json", ZONE_B);
    assert_int_equal(zone_catalog_load_dir(&cat, dir, &err), WY_OK);
    assert_int_equal(cat.n, 2);
    zone_catalog_clear(&cat);
    char *p;
    unlink(p = wy_sprintf("%s/a.json", dir)), wy_free(p);
    unlink(p = wy_sprintf("%s/b.json", dir)), wy_free(p);
    unlink(p = wy_sprintf("%s/README.txt", dir)), wy_free(p);
    rmdir(dir);
    assert_int_equal(zone_catalog_load_dir(&cat, dir, &err), WY_EINVAL);
    assert_non_null(strstr(err, "cannot open the zones folder"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_pair),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_missing_field),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_unknown_field_and_bad_json),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_spawns_and_areas),
        cmocka_unit_test(test_portals),
        cmocka_unit_test(test_catalog_level),
        cmocka_unit_test(test_load_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
