/* Unit tests for wy-game's area-of-interest grid (services/game/aoi.c): enter within the view
 * radius, leave beyond radius + margin (hysteresis), removal and slot reuse, the capacity bound,
 * and a randomized comparison against a brute-force reference of the same rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/game/aoi.c"

#define R 10.0
#define H 2.0

typedef struct {
    game_aoi_t g;
    game_aoi_ref_t refs[64], entered[64], left[64];
    game_aoi_view_t view;
    game_aoi_diff_t diff;
} fx_t;

static void fx_init(fx_t *f, uint32_t cap)
{
    const char *err = NULL;
    assert_int_equal(game_aoi_init(&f->g, 0, 0, 200, 200, R, H, 64, &err), WY_OK);
    f->view = (game_aoi_view_t){.refs = f->refs, .cap = cap};
    f->diff = (game_aoi_diff_t){.entered = f->entered, .left = f->left};
}

static void update(fx_t *f, double x, double y)
{
    game_aoi_update(&f->g, x, y, &f->view, &f->diff);
}

static bool visible(const fx_t *f, uint32_t id)
{
    for (uint32_t i = 0; i < f->view.n; i++)
        if (f->view.refs[i].id == id)
            return true;
    return false;
}

static void test_enter_within_radius(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 64);
    game_aoi_place(&f.g, 0, 100, 50, 50);   /* the viewer itself */
    game_aoi_place(&f.g, 1, 101, 59.9, 50); /* 9.9 m: in */
    game_aoi_place(&f.g, 2, 102, 50, 61);   /* 11 m: in the margin, never entered: out */
    game_aoi_place(&f.g, 3, 103, 80, 80);   /* far */
    update(&f, 50, 50);
    assert_int_equal(f.diff.nentered, 2);
    assert_int_equal(f.diff.entered[0].id, 100);
    assert_int_equal(f.diff.entered[1].id, 101);
    assert_int_equal(f.diff.nleft, 0);
    assert_true(visible(&f, 100) && visible(&f, 101));
    assert_false(visible(&f, 102) || visible(&f, 103));
    /* Nothing moved: no change. */
    update(&f, 50, 50);
    assert_int_equal(f.diff.nentered, 0);
    assert_int_equal(f.diff.nleft, 0);
    assert_int_equal(f.view.n, 2);
    game_aoi_free(&f.g);
}

static void test_hysteresis(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 64);
    game_aoi_place(&f.g, 1, 7, 59, 50); /* 9 m: enters */
    update(&f, 50, 50);
    assert_true(visible(&f, 7));
    /* Out to 11.9 m (inside radius + margin): stays, however often it wobbles there. */
    for (int i = 0; i < 10; i++) {
        game_aoi_place(&f.g, 1, 7, i % 2 ? 61.9 : 60.5, 50);
        update(&f, 50, 50);
        assert_true(visible(&f, 7));
        assert_int_equal(f.diff.nleft, 0);
        assert_int_equal(f.diff.nentered, 0);
    }
    /* Past 12 m: leaves once. */
    game_aoi_place(&f.g, 1, 7, 62.1, 50);
    update(&f, 50, 50);
    assert_false(visible(&f, 7));
    assert_int_equal(f.diff.nleft, 1);
    assert_int_equal(f.diff.left[0].id, 7);
    /* Back to 11 m: still out (needs <= 10 m to enter again). */
    game_aoi_place(&f.g, 1, 7, 61, 50);
    update(&f, 50, 50);
    assert_false(visible(&f, 7));
    assert_int_equal(f.diff.nentered, 0);
    game_aoi_place(&f.g, 1, 7, 60, 50);
    update(&f, 50, 50);
    assert_true(visible(&f, 7));
    assert_int_equal(f.diff.nentered, 1);
    /* The viewer walking away has the same effect as the entity doing so. */
    update(&f, 48.1, 50);
    assert_true(visible(&f, 7));
    update(&f, 47.9, 50);
    assert_false(visible(&f, 7));
    game_aoi_free(&f.g);
}

static void test_remove_and_slot_reuse(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 64);
    game_aoi_place(&f.g, 4, 40, 52, 50);
    game_aoi_place(&f.g, 5, 50, 53, 50);
    update(&f, 50, 50);
    assert_int_equal(f.view.n, 2);
    game_aoi_remove(&f.g, 4);
    assert_false(game_aoi_contains(&f.g, 4));
    update(&f, 50, 50);
    assert_int_equal(f.diff.nleft, 1);
    assert_int_equal(f.diff.left[0].id, 40);
    /* Slot 5 reused by another entity: the old one left, the new one entered. */
    game_aoi_remove(&f.g, 5);
    game_aoi_place(&f.g, 5, 51, 53, 50);
    update(&f, 50, 50);
    assert_int_equal(f.diff.nleft, 1);
    assert_int_equal(f.diff.left[0].id, 50);
    assert_int_equal(f.diff.nentered, 1);
    assert_int_equal(f.diff.entered[0].id, 51);
    game_aoi_free(&f.g);
}

/* A slot removed and filled again by the same id between two updates: the view sees the old
 * one leave and a new one enter (never a continuation of it). */
static void test_same_id_same_slot_is_new(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 64);
    game_aoi_place(&f.g, 3, 30, 52, 50);
    update(&f, 50, 50);
    assert_int_equal(f.diff.nentered, 1);
    game_aoi_remove(&f.g, 3);
    game_aoi_place(&f.g, 3, 30, 53, 50);
    update(&f, 50, 50);
    assert_int_equal(f.diff.nleft, 1);
    assert_int_equal(f.diff.nentered, 1);
    assert_int_equal(f.diff.entered[0].id, 30);
    assert_true(visible(&f, 30));
    game_aoi_free(&f.g);
}

static void test_capacity_and_order(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 3);
    uint32_t ids[] = {9, 3, 7, 1, 5};
    for (uint32_t i = 0; i < 5; i++)
        game_aoi_place(&f.g, i, ids[i], 50 + i, 50);
    update(&f, 50, 50);
    /* Three fit, sorted by id; two are dropped (offered again at the next update). */
    assert_int_equal(f.view.n, 3);
    assert_int_equal(f.diff.dropped, 2);
    assert_int_equal(f.diff.nentered, 3);
    bool seen[10] = {0};
    for (int round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < f.view.n; i++) {
            seen[f.view.refs[i].id] = true;
            if (i > 0)
                assert_true(f.view.refs[i - 1].id < f.view.refs[i].id);
        }
        /* Remove the first visible one: one dropped entity takes its place. */
        uint32_t slot = f.view.refs[0].slot;
        game_aoi_remove(&f.g, slot);
        update(&f, 50, 50);
        assert_int_equal(f.diff.nleft, 1);
        assert_int_equal(f.diff.nentered, round < 2 ? 1 : 0);
        assert_int_equal(f.view.n, round < 2 ? 3 : 2);
    }
    for (uint32_t i = 0; i < 5; i++)
        assert_true(seen[ids[i]]);
    game_aoi_free(&f.g);
}

/* More in range than the view holds: the nearest are seen, whatever their ids or cells; a
 * visible one is pushed out by one much nearer, but not by one about as near (the margin). */
static void test_over_capacity_the_nearest_are_seen(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 3);
    /* ids descending with distance: id order would pick the far ones */
    game_aoi_place(&f.g, 0, 50, 50.5, 50); /* 0.5 m */
    game_aoi_place(&f.g, 1, 40, 52, 50);   /* 2 m */
    game_aoi_place(&f.g, 2, 30, 50, 46);   /* 4 m, the next cell row up */
    game_aoi_place(&f.g, 3, 20, 57, 50);   /* 7 m */
    game_aoi_place(&f.g, 4, 10, 50, 59);   /* 9 m */
    update(&f, 50, 50);
    assert_int_equal(f.view.n, 3);
    assert_int_equal(f.diff.dropped, 2);
    assert_true(visible(&f, 50) && visible(&f, 40) && visible(&f, 30));
    /* 20 comes to 3.5 m: nearer than 30 (4 m) but by less than the margin: nothing changes. */
    game_aoi_place(&f.g, 3, 20, 53.5, 50);
    update(&f, 50, 50);
    assert_int_equal(f.diff.nentered, 0);
    assert_int_equal(f.diff.nleft, 0);
    assert_true(visible(&f, 30) && !visible(&f, 20));
    /* 10 comes to 1 m: more than the margin nearer than 30: it enters, 30 leaves. */
    game_aoi_place(&f.g, 4, 10, 50, 51);
    update(&f, 50, 50);
    assert_int_equal(f.diff.nentered, 1);
    assert_int_equal(f.diff.entered[0].id, 10);
    assert_int_equal(f.diff.nleft, 1);
    assert_int_equal(f.diff.left[0].id, 30);
    assert_true(visible(&f, 50) && visible(&f, 40) && visible(&f, 10));
    for (uint32_t i = 1; i < f.view.n; i++)
        assert_true(f.view.refs[i - 1].id < f.view.refs[i].id);
    game_aoi_free(&f.g);
}

/* Random walks of 40 entities, a viewer at a random walk too: the grid's answer equals a brute
 * force evaluation of the rule (enter <= R, stay <= R + H) and the view stays sorted. */
static void test_matches_brute_force(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 64);
    enum { N = 40 };
    double x[N], y[N];
    bool in[N] = {0};
    srand(7);
    for (int i = 0; i < N; i++) {
        x[i] = 20 + rand() % 60;
        y[i] = 20 + rand() % 60;
        game_aoi_place(&f.g, (uint32_t)i, (uint32_t)(1000 + i * 3), x[i], y[i]);
    }
    double vx = 50, vy = 50;
    for (int step = 0; step < 2000; step++) {
        for (int i = 0; i < N; i++) {
            x[i] += (rand() % 201 - 100) / 100.0;
            y[i] += (rand() % 201 - 100) / 100.0;
            game_aoi_place(&f.g, (uint32_t)i, (uint32_t)(1000 + i * 3), x[i], y[i]);
        }
        vx += (rand() % 201 - 100) / 200.0;
        vy += (rand() % 201 - 100) / 200.0;
        update(&f, vx, vy);
        for (int i = 0; i < N; i++) {
            double d = hypot((float)x[i] - vx, (float)y[i] - vy);
            bool want = in[i] ? d <= R + H : d <= R;
            assert_int_equal(visible(&f, (uint32_t)(1000 + i * 3)), want);
            in[i] = want;
        }
        for (uint32_t i = 1; i < f.view.n; i++)
            assert_true(f.view.refs[i - 1].id < f.view.refs[i].id);
    }
    game_aoi_free(&f.g);
}

static uint32_t find_even(void *ud, uint32_t id)
{
    (void)ud;
    return id % 2 == 0 ? id / 2 : GAME_AOI_NONE;
}

static void test_rebase(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, 4);
    game_aoi_place(&f.g, 1, 2, 10, 10);
    game_aoi_place(&f.g, 2, 4, 10, 10);
    game_aoi_place(&f.g, 4, 8, 10, 10);
    game_aoi_ref_t refs[4] = {{2, 0, 0}, {3, 0, 0}, {4, 0, 0}, {8, 0, 0}};
    game_aoi_view_t v = {.refs = refs, .n = 4, .cap = 4};
    assert_int_equal(game_aoi_view_rebase(&f.g, &v, find_even, NULL), 1);
    assert_int_equal(v.n, 3);
    assert_int_equal(v.refs[0].slot, 1);
    assert_int_equal(v.refs[1].id, 4);
    assert_int_equal(v.refs[2].slot, 4);
    game_aoi_free(&f.g);
}

static void test_bad_options(void **state)
{
    (void)state;
    game_aoi_t g;
    const char *err = NULL;
    assert_int_equal(game_aoi_init(&g, 0, 0, 100, 100, 0, 1, 10, &err), WY_EINVAL);
    assert_non_null(err);
    assert_int_equal(game_aoi_init(&g, 0, 0, 100000, 100000, 1, 0, 10, &err), WY_EINVAL);
    assert_non_null(strstr(err, "cells"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enter_within_radius),
        cmocka_unit_test(test_hysteresis),
        cmocka_unit_test(test_remove_and_slot_reuse),
        cmocka_unit_test(test_capacity_and_order),
        cmocka_unit_test(test_over_capacity_the_nearest_are_seen),
        cmocka_unit_test(test_matches_brute_force),
        cmocka_unit_test(test_rebase),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_same_id_same_slot_is_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
