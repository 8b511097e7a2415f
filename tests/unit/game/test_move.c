/* Unit tests for wy-game's movement rules (services/game/move.c): the speed limit, bounds and
 * walls, target arrival, and each kind of illegal input refused with its reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/game/move.c"

/* 64 x 32 m in 16 m cells; cell (col 2, row 0) = x 32..48, y 0..16 blocked. */
static const uint8_t GRID[] = {0, 0, 1, 0, 0, 0, 0, 0};
static const game_walk_t WALK = {
    .width = 64, .height = 32, .cell = 16, .cols = 4, .rows = 2, .blocked = GRID};
#define SEC 1000000000ull

static game_move_rules_t rules(void)
{
    game_move_rules_t r;
    game_move_rules_default(&r);
    return r;
}

static void test_walk_blocked(void **state)
{
    (void)state;
    assert_false(game_walk_blocked(&WALK, 1, 1));
    assert_true(game_walk_blocked(&WALK, 40, 8));
    assert_false(game_walk_blocked(&WALK, 40, 20));
    assert_true(game_walk_blocked(&WALK, -0.1, 1));
    assert_true(game_walk_blocked(&WALK, 64, 1));
    assert_true(game_walk_blocked(&WALK, 1, 32));
}

static void test_speed_limit_and_walls(void **state)
{
    (void)state;
    game_move_rules_t r = rules();
    game_mover_t m;
    game_mover_init(&m, &r, 10, 8, 0);
    game_refuse_t why;
    game_input_t in = {.seq = 1, .mode = GAME_MODE_RUN, .dir = 0}; /* east */
    assert_int_equal(game_move_accept(&r, &WALK, &m, &in, 0, &why), WY_OK);
    assert_true(game_move_step(&WALK, &m, 1.0));
    assert_true(fabs(m.x - 16.0) < 1e-9); /* 6 m/s */
    /* Running into the blocked cell at x = 32: stops at the wall, never inside. */
    for (int i = 0; i < 20; i++)
        game_move_step(&WALK, &m, 0.5);
    assert_true(m.x < 32 && m.x > 31);
    assert_false(game_walk_blocked(&WALK, m.x, m.y));
    /* A diagonal into the wall slides along it (y grows, x stays). */
    in = (game_input_t){.seq = 2, .mode = GAME_MODE_WALK, .dir = 8192}; /* south-east */
    assert_int_equal(game_move_accept(&r, &WALK, &m, &in, SEC, &why), WY_OK);
    double x0 = m.x, y0 = m.y;
    game_move_step(&WALK, &m, 1.0);
    assert_true(m.y > y0);
    assert_true(fabs(m.x - x0) < 1.0);
    /* Never out of the zone: walk north for long. */
    in = (game_input_t){.seq = 3, .mode = GAME_MODE_WALK, .dir = 49152};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &in, 2 * SEC, &why), WY_OK);
    for (int i = 0; i < 100; i++)
        game_move_step(&WALK, &m, 0.5);
    assert_true(m.y >= 0 && m.y < 1);
    /* A slower speed than the mode's is allowed. */
    game_mover_init(&m, &r, 2, 20, 0);
    in = (game_input_t){.seq = 1, .mode = GAME_MODE_WALK, .speed = 1.0f};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &in, 0, &why), WY_OK);
    game_move_step(&WALK, &m, 2.0);
    assert_true(fabs(m.x - 4.0) < 1e-6);
}

static void test_target(void **state)
{
    (void)state;
    game_move_rules_t r = rules();
    game_mover_t m;
    game_mover_init(&m, &r, 2, 20, 0);
    game_refuse_t why;
    game_input_t in = {.seq = 1, .mode = GAME_MODE_WALK, .has_target = true, .tx = 7, .ty = 20};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &in, 0, &why), WY_OK);
    game_move_step(&WALK, &m, 1.0);
    assert_true(fabs(m.x - 4.5) < 1e-9);
    game_move_step(&WALK, &m, 10.0);
    assert_true(m.x == 7 && m.y == 20);
    assert_int_equal(m.mode, GAME_MODE_IDLE);
    assert_false(game_move_step(&WALK, &m, 1.0));
}

static void test_refusals(void **state)
{
    (void)state;
    game_move_rules_t r = rules();
    game_mover_t m;
    game_mover_init(&m, &r, 10, 20, 0);
    game_refuse_t why;
    game_input_t ok = {.seq = 1, .mode = GAME_MODE_WALK};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &ok, 0, &why), WY_OK);

    game_input_t replay = ok;
    assert_int_equal(game_move_accept(&r, &WALK, &m, &replay, 0, &why), WY_EPERM);
    assert_int_equal(why, GAME_REFUSE_SEQ);
    assert_int_equal(m.mode, GAME_MODE_WALK); /* a replay changes nothing */

    game_input_t speed = {.seq = 2, .mode = GAME_MODE_RUN, .speed = 12};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &speed, 0, &why), WY_EPERM);
    assert_int_equal(why, GAME_REFUSE_SPEED);
    assert_int_equal(m.mode, GAME_MODE_IDLE); /* refused: stopped */

    game_input_t tele = {.seq = 3, .mode = GAME_MODE_WALK, .has_pos = true, .px = 50, .py = 20};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &tele, 0, &why), WY_EPERM);
    assert_int_equal(why, GAME_REFUSE_TELEPORT);
    game_input_t near = {.seq = 4, .mode = GAME_MODE_WALK, .has_pos = true, .px = 12, .py = 21};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &near, 0, &why), WY_OK);

    game_input_t wall = {.seq = 5, .mode = GAME_MODE_WALK, .has_target = true, .tx = 40, .ty = 8};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &wall, 0, &why), WY_EPERM);
    assert_int_equal(why, GAME_REFUSE_BLOCKED);
    game_input_t out = {.seq = 6, .mode = GAME_MODE_WALK, .has_target = true, .tx = 70, .ty = 8};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &out, 0, &why), WY_EPERM);
    assert_int_equal(why, GAME_REFUSE_BLOCKED);
    game_input_t inwall = {.seq = 7, .mode = GAME_MODE_WALK, .has_pos = true, .px = 33, .py = 1};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &inwall, 0, &why), WY_EPERM);
    assert_int_equal(why, GAME_REFUSE_BLOCKED);

    game_input_t bad = {.seq = 8, .mode = 9};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &bad, 0, &why), WY_EPERM);
    assert_int_equal(why, GAME_REFUSE_INVALID);
    game_input_t nan = {.seq = 9, .mode = 1, .has_target = true, .tx = NAN};
    assert_int_equal(game_move_accept(&r, &WALK, &m, &nan, 0, &why), WY_EPERM);
    assert_int_equal(why, GAME_REFUSE_INVALID);
    assert_int_equal(m.last_seq, 9);
}

static void test_flood(void **state)
{
    (void)state;
    game_move_rules_t r = rules(); /* 30/s, burst 10 */
    game_mover_t m;
    game_mover_init(&m, &r, 10, 20, 0);
    game_refuse_t why;
    uint32_t seq = 0;
    int accepted = 0, flood = 0;
    /* 1,000 inputs at one instant: the burst passes, the rest are refused. */
    for (int i = 0; i < 1000; i++) {
        seq++;
        game_input_t in = {.seq = seq, .mode = GAME_MODE_WALK};
        if (game_move_accept(&r, &WALK, &m, &in, SEC, &why) == WY_OK)
            accepted++;
        else if (why == GAME_REFUSE_FLOOD)
            flood++;
    }
    assert_int_equal(accepted, 10);
    assert_int_equal(flood, 990);
    /* Over 10 s at 100 inputs/s: the sustained rate (30/s) passes, no more. */
    accepted = 0;
    for (int i = 0; i < 1000; i++) {
        seq++;
        game_input_t in = {.seq = seq, .mode = GAME_MODE_WALK};
        if (game_move_accept(&r, &WALK, &m, &in, SEC + (uint64_t)(i + 1) * SEC / 100, &why) ==
            WY_OK)
            accepted++;
    }
    assert_in_range(accepted, 299, 301);
    /* 10 inputs/s (a bot's rate) are never refused. */
    for (int i = 0; i < 200; i++) {
        seq++;
        game_input_t in = {.seq = seq, .mode = GAME_MODE_WALK};
        assert_int_equal(
            game_move_accept(&r, &WALK, &m, &in, 20 * SEC + (uint64_t)i * SEC / 10, &why), WY_OK);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk_blocked), cmocka_unit_test(test_speed_limit_and_walls),
        cmocka_unit_test(test_target),       cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
