/* Unit tests for wy-game's partition (services/game/partition.c) driven single-threaded, with
 * every frame decoded into a client mirror (wy_gamewire) as a real client would: two players
 * see each other appear and move, a far third does not until it walks close, exactly one frame
 * per player per tick, cheats refused and counted by reason, and a zone split in two strips
 * where a player crossing the border stays visible to everyone and keeps getting frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/game/aoi.c"
#include "../../../services/game/move.c"
#include "../../../services/game/partition.c"

#define MAXC 8
#define PER  50000000ull /* 20 Hz */
#define DT   0.05

typedef struct {
    uint64_t conn;
    wy_gw_entity_t ents[256];
    wy_gw_mirror_t m;
    uint64_t frames, last_tick, frames_this_tick, resets, corrections;
    uint32_t ack;
    uint32_t from; /* partition that sent the last frame */
} client_t;

typedef struct {
    client_t c[MAXC];
    game_partition_t *p[2];
    uint32_t np;
    uint64_t tick;
    uint32_t current;   /* partition ticking, for the frame callback */
    bool refuse_frames; /* the callback refuses every frame (no room to carry them) */
    bool early;         /* hand-overs reach the next partition before it runs the same tick */
} world_t;

static bool on_frame(void *ud, const game_frame_t *f)
{
    world_t *w = ud;
    client_t *c = &w->c[f->conn];
    if (w->refuse_frames)
        return false; /* lost on the way: the client never sees it */
    const char *err = NULL;
    assert_int_equal(wy_gw_mirror_apply(&c->m, f->reset, f->entered, f->nentered, f->changed,
                                        f->nchanged, f->left, f->nleft, NULL, &err),
                     WY_OK);
    if (c->last_tick != f->tick) {
        c->last_tick = f->tick;
        c->frames_this_tick = 0;
    }
    c->frames_this_tick++;
    assert_int_equal(c->frames_this_tick, 1); /* never two frames in one tick */
    c->frames++;
    c->resets += f->reset;
    c->corrections += f->corrected;
    c->ack = f->ack;
    c->from = w->current;
    return true;
}

static game_walk_t WALK = {.width = 512, .height = 512}; /* no blocked cells */

static void world_init(world_t *w, uint32_t np)
{
    memset(w, 0, sizeof *w);
    for (int i = 0; i < MAXC; i++) {
        w->c[i].conn = (uint64_t)i;
        wy_gw_mirror_init(&w->c[i].m, w->c[i].ents, 256);
    }
    w->np = np;
    for (uint32_t i = 0; i < np; i++) {
        game_partition_opts_t o;
        game_partition_opts_default(&o, &WALK);
        o.index = i;
        o.count = np;
        o.x0 = WALK.width * i / np;
        o.x1 = WALK.width * (i + 1) / np;
        o.max_entities = 64;
        o.max_players = 16;
        o.max_visible = 32;
        o.on_frame = on_frame;
        o.ud = w;
        const char *err = NULL;
        assert_int_equal(game_partition_new(&o, &w->p[i], &err), WY_OK);
    }
}

static void world_free(world_t *w)
{
    for (uint32_t i = 0; i < w->np; i++)
        game_partition_free(w->p[i]);
}

static game_partition_t *owner_of(world_t *w, uint32_t id)
{
    for (uint32_t i = 0; i < w->np; i++) {
        double x = 0, y = 0;
        bool ghost;
        if (game_partition_position(w->p[i], id, &x, &y, &ghost) == WY_OK && !ghost)
            return w->p[i];
    }
    return NULL;
}

/* One tick of every partition, then the border exchange (as the daemon does between ticks). */
static void world_tick(world_t *w)
{
    w->tick++;
    for (uint32_t i = 0; i < w->np; i++) {
        w->current = i;
        game_partition_tick(w->p[i], w->tick, w->tick * PER, DT);
        const game_handover_t *h;
        uint32_t n = game_partition_handovers(w->p[i], &h);
        for (uint32_t k = 0; k < n && w->early; k++)
            assert_int_equal(game_partition_handover_in(w->p[h[k].to], &h[k], w->tick * PER),
                             WY_OK);
    }
    static game_ghost_t gbuf[64];
    for (uint32_t i = 0; i < w->np; i++) {
        const game_handover_t *h;
        uint32_t n = game_partition_handovers(w->p[i], &h);
        for (uint32_t k = 0; k < n && !w->early; k++)
            assert_int_equal(game_partition_handover_in(w->p[h[k].to], &h[k], w->tick * PER),
                             WY_OK);
        for (uint32_t j = 0; j < w->np; j++) {
            if (j + 1 != i && j != i + 1)
                continue;
            game_border_t b = {.ghosts = gbuf, .cap = 64};
            game_partition_export_border(w->p[i], j, &b);
            game_partition_import_border(w->p[j], &b);
        }
    }
}

static uint32_t seqs[64];

static void walk_dir(world_t *w, uint32_t id, uint16_t dir, uint8_t mode)
{
    seqs[id]++;
    game_input_t in = {.seq = seqs[id], .mode = mode, .dir = dir};
    assert_int_equal(game_partition_input(owner_of(w, id), id, &in), WY_OK);
}

static bool sees(const world_t *w, int conn, uint32_t id)
{
    return wy_gw_mirror_find(&w->c[conn].m, id) != NULL;
}

/* Does client conn see entity id where it truly is (within the quantisation)? */
static void assert_sees_true(world_t *w, int conn, uint32_t id)
{
    const wy_gw_entity_t *e = wy_gw_mirror_find(&w->c[conn].m, id);
    assert_non_null(e);
    double x = 0, y = 0;
    assert_int_equal(game_partition_position(owner_of(w, id), id, &x, &y, NULL), WY_OK);
    assert_true(fabs(wy_gw_metres(e->qx) - x) <= 1.0 / 32 + 1e-9);
    assert_true(fabs(wy_gw_metres(e->qy) - y) <= 1.0 / 32 + 1e-9);
}

static void test_two_see_each_other_third_far(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 1);
    memset(seqs, 0, sizeof seqs);
    assert_int_equal(game_partition_add(w.p[0], 1, GAME_KIND_PLAYER, 100, 100, 1, 0), WY_OK);
    assert_int_equal(game_partition_add(w.p[0], 2, GAME_KIND_PLAYER, 120, 100, 2, 0), WY_OK);
    assert_int_equal(game_partition_add(w.p[0], 3, GAME_KIND_PLAYER, 400, 100, 3, 0), WY_OK);
    assert_int_equal(game_partition_add(w.p[0], 4, GAME_KIND_NPC, 110, 110, 0, 0), WY_OK);
    world_tick(&w);
    assert_true(sees(&w, 1, 1) && sees(&w, 1, 2) && sees(&w, 1, 4));
    assert_true(sees(&w, 2, 1) && sees(&w, 2, 2));
    assert_false(sees(&w, 1, 3) || sees(&w, 2, 3) || sees(&w, 3, 1) || sees(&w, 3, 2));
    assert_int_equal(w.c[1].resets, 1); /* the first frame holds the whole view */

    /* Player 1 runs east for 1 s: player 2 sees every step, within the precision. */
    walk_dir(&w, 1, 0, GAME_MODE_RUN);
    for (int t = 0; t < 20; t++) {
        world_tick(&w);
        assert_sees_true(&w, 2, 1);
        assert_sees_true(&w, 1, 1);
    }
    assert_int_equal(w.c[1].ack, 1);
    double x = 0, y = 0;
    game_partition_position(w.p[0], 1, &x, &y, NULL);
    assert_true(fabs(x - 106) < 1e-6); /* 6 m/s * 1 s */

    /* Player 3 walks west towards them: it sees them once within 64 m. */
    walk_dir(&w, 3, 32768, GAME_MODE_RUN);
    int t = 0;
    while (!sees(&w, 3, 2) && t++ < 2000)
        world_tick(&w);
    assert_true(sees(&w, 3, 2));
    game_partition_position(w.p[0], 3, &x, &y, NULL);
    assert_true(x - 120 <= 64 && x - 120 > 63);
    assert_sees_true(&w, 3, 2);
    assert_true(sees(&w, 2, 3)); /* and the other way round */
    /* Exactly one frame per player per tick. */
    for (int c = 1; c <= 3; c++)
        assert_int_equal(w.c[c].frames, w.tick);

    /* Player 2 leaves: everyone sees it go. */
    assert_int_equal(game_partition_remove(w.p[0], 2), WY_OK);
    world_tick(&w);
    assert_false(sees(&w, 1, 2) || sees(&w, 3, 2));

    game_partition_stats_t st;
    game_partition_stats(w.p[0], &st);
    assert_int_equal(st.players, 2);
    assert_int_equal(st.entities[GAME_KIND_NPC], 1);
    assert_int_equal(st.frames, w.c[1].frames + w.c[2].frames + w.c[3].frames);
    assert_true(st.moves > 0 && st.move_bytes <= 4 * st.moves);
    world_free(&w);
}

static void test_cheats_refused_and_counted(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 1);
    memset(seqs, 0, sizeof seqs);
    assert_int_equal(game_partition_add(w.p[0], 1, GAME_KIND_PLAYER, 100, 100, 1, 0), WY_OK);
    world_tick(&w);
    game_partition_t *p = w.p[0];
    game_input_t tele = {.seq = 1, .mode = 1, .has_pos = true, .px = 300, .py = 300};
    game_input_t speed = {.seq = 2, .mode = 2, .speed = 50};
    game_input_t wall = {.seq = 3, .mode = 1, .has_target = true, .tx = 600, .ty = 10};
    assert_int_equal(game_partition_input(p, 1, &tele), WY_OK);
    assert_int_equal(game_partition_input(p, 1, &speed), WY_OK);
    assert_int_equal(game_partition_input(p, 1, &wall), WY_OK);
    world_tick(&w);
    assert_int_equal(w.c[1].corrections, 1);
    assert_int_equal(w.c[1].ack, 3);
    /* A flood: 100 inputs in one tick; the queue holds 8, the bucket lets 10 through. */
    int queued = 0;
    for (uint32_t s = 4; s < 104; s++) {
        game_input_t in = {.seq = s, .mode = 1};
        queued += game_partition_input(p, 1, &in) == WY_OK;
    }
    assert_int_equal(queued, 8);
    world_tick(&w);
    double x = 0, y = 0;
    game_partition_position(p, 1, &x, &y, NULL);
    assert_true(hypot(x - 100, y - 100) < 1); /* never went anywhere fast */
    game_partition_stats_t st;
    game_partition_stats(p, &st);
    assert_int_equal(st.refused[GAME_REFUSE_TELEPORT], 1);
    assert_int_equal(st.refused[GAME_REFUSE_SPEED], 1);
    assert_int_equal(st.refused[GAME_REFUSE_BLOCKED], 1);
    assert_int_equal(st.refused[GAME_REFUSE_FLOOD], 92);
    assert_int_equal(st.inputs_accepted, 8);
    world_free(&w);
}

/* Two strips: x < 256 and x >= 256. Player 1 walks east across the border past player 2
 * (east side) while player 3 (west side) watches: everyone keeps seeing everyone, the crossing
 * player keeps getting exactly one frame per tick, now from the other partition. */
static void test_border_crossing(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 2);
    memset(seqs, 0, sizeof seqs);
    assert_int_equal(game_partition_add(w.p[0], 1, GAME_KIND_PLAYER, 240, 100, 1, 0), WY_OK);
    assert_int_equal(game_partition_add(w.p[1], 2, GAME_KIND_PLAYER, 280, 100, 2, 0), WY_OK);
    assert_int_equal(game_partition_add(w.p[0], 3, GAME_KIND_PLAYER, 220, 110, 3, 0), WY_OK);
    /* Ghosts need one exchange before they are visible across the border. */
    world_tick(&w);
    world_tick(&w);
    for (int c = 1; c <= 3; c++)
        for (uint32_t id = 1; id <= 3; id++)
            assert_true(sees(&w, c, id));
    walk_dir(&w, 1, 0, GAME_MODE_RUN);
    bool crossed = false;
    for (int t = 0; t < 60; t++) { /* 3 s: 18 m east, from 240 to 258 */
        world_tick(&w);
        for (int c = 1; c <= 3; c++)
            for (uint32_t id = 1; id <= 3; id++)
                assert_true(sees(&w, c, id));
        if (owner_of(&w, 1) == w.p[1])
            crossed = true;
    }
    assert_true(crossed);
    assert_int_equal(w.c[1].from, 1);   /* frames now come from the east partition */
    assert_int_equal(w.c[1].resets, 2); /* its first frame there replaced the mirror */
    for (int c = 1; c <= 3; c++)
        assert_int_equal(w.c[c].frames, w.tick);
    /* After the crossing the mirrors are exact again (ghosts lag at most one exchange). */
    walk_dir(&w, 1, 0, GAME_MODE_IDLE);
    world_tick(&w);
    world_tick(&w);
    world_tick(&w);
    for (int c = 1; c <= 3; c++)
        for (uint32_t id = 1; id <= 3; id++)
            assert_sees_true(&w, c, id);
    /* Inputs to the old partition are refused as "forward": the caller re-routes them. */
    game_input_t in = {.seq = 99, .mode = 1};
    assert_int_equal(game_partition_input(w.p[0], 1, &in), WY_ESTATE);
    game_partition_stats_t a, b;
    game_partition_stats(w.p[0], &a);
    game_partition_stats(w.p[1], &b);
    assert_int_equal(a.handovers_out, 1);
    assert_int_equal(b.handovers_in, 1);
    assert_int_equal(a.players + b.players, 3);
    world_free(&w);
}

/* The partitions of a zone tick on their own threads: the east one may run tick k after the
 * west one handed a player over in its tick k. The player still gets one frame per tick (the
 * on_frame callback asserts it): none twice, none missing. */
static void test_crossing_one_frame_per_tick_when_handed_over_early(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 2);
    w.early = true;
    memset(seqs, 0, sizeof seqs);
    assert_int_equal(game_partition_add(w.p[0], 1, GAME_KIND_PLAYER, 250, 100, 1, 0), WY_OK);
    world_tick(&w);
    walk_dir(&w, 1, 0, GAME_MODE_RUN);
    for (int t = 0; t < 40 && owner_of(&w, 1) != w.p[1]; t++)
        world_tick(&w);
    assert_ptr_equal(owner_of(&w, 1), w.p[1]);
    world_tick(&w);
    world_tick(&w);
    assert_int_equal(w.c[1].from, 1);
    assert_int_equal(w.c[1].frames, w.tick);
    assert_int_equal(w.c[1].last_tick, w.tick);
    world_free(&w);
}

/* The object-change stream: spawns, moves (one per moving entity per batch) and despawns. */
static void test_change_batches(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 1);
    memset(seqs, 0, sizeof seqs);
    game_change_t buf[16];
    game_changes_t b = {.changes = buf, .cap = 16};
    assert_int_equal(game_partition_add(w.p[0], 1, GAME_KIND_PLAYER, 100, 100, 1, 0), WY_OK);
    assert_int_equal(game_partition_add(w.p[0], 2, GAME_KIND_NPC, 120, 100, 0, 0), WY_OK);
    world_tick(&w);
    game_partition_changes(w.p[0], w.tick, &b);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.changes[0].op, GAME_CHANGE_SPAWN);
    assert_int_equal(b.changes[0].id, 1);
    assert_int_equal(b.changes[0].qx, 1600);
    assert_int_equal(b.changes[1].kind, GAME_KIND_NPC);
    walk_dir(&w, 1, 16384, GAME_MODE_WALK); /* south */
    for (int t = 0; t < 10; t++)
        world_tick(&w);
    game_partition_changes(w.p[0], w.tick, &b);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.changes[0].op, GAME_CHANGE_MOVE);
    assert_int_equal(b.changes[0].qy, wy_gw_quantise(100 + 2.5 * 0.5));
    assert_int_equal(b.tick_from, 2);
    assert_int_equal(b.tick_to, 11);
    assert_int_equal(game_partition_remove(w.p[0], 2), WY_OK);
    game_partition_changes(w.p[0], w.tick, &b);
    assert_int_equal(b.n, 1); /* no tick since: only the despawn */
    assert_int_equal(b.changes[0].op, GAME_CHANGE_DESPAWN);
    assert_int_equal(b.changes[0].id, 2);
    /* A batch too small: the rest is counted as dropped. */
    game_changes_t tiny = {.changes = buf, .cap = 0};
    world_tick(&w);
    game_partition_changes(w.p[0], w.tick, &tiny);
    assert_int_equal(tiny.n, 0);
    assert_int_equal(tiny.dropped, 1);
    world_free(&w);
}

/* Frames the carrier could not take are never half-applied: the next frame is a reset, and the
 * mirror is exact again. */
static void test_lost_frames_resync(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 1);
    memset(seqs, 0, sizeof seqs);
    assert_int_equal(game_partition_add(w.p[0], 1, GAME_KIND_PLAYER, 100, 100, 1, 0), WY_OK);
    assert_int_equal(game_partition_add(w.p[0], 2, GAME_KIND_PLAYER, 110, 100, 2, 0), WY_OK);
    world_tick(&w);
    walk_dir(&w, 2, 0, GAME_MODE_RUN);
    w.refuse_frames = true;
    for (int t = 0; t < 5; t++)
        world_tick(&w);
    w.refuse_frames = false;
    uint64_t resets = w.c[1].resets;
    world_tick(&w);
    assert_int_equal(w.c[1].resets, resets + 1);
    assert_sees_true(&w, 1, 2);
    game_partition_stats_t st;
    game_partition_stats(w.p[0], &st);
    assert_int_equal(st.frames_lost, 10);
    /* The carrier lost frames it had taken: the caller asks for a resync. */
    game_partition_resync(w.p[0]);
    world_tick(&w);
    assert_int_equal(w.c[1].resets, resets + 2);
    assert_int_equal(w.c[2].resets, 3);
    world_free(&w);
}

static void test_bounds(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 1);
    assert_int_equal(game_partition_add(w.p[0], 1, GAME_KIND_PLAYER, 600, 100, 1, 0), WY_EINVAL);
    assert_int_equal(game_partition_add(w.p[0], 1, 9, 10, 10, 1, 0), WY_EINVAL);
    assert_int_equal(game_partition_add(w.p[0], 1, GAME_KIND_PLAYER, 10, 10, 1, 0), WY_OK);
    assert_int_equal(game_partition_add(w.p[0], 1, GAME_KIND_PLAYER, 10, 10, 2, 0), WY_EEXIST);
    for (uint32_t id = 2; id <= 16; id++) /* connection ids need not be unique here */
        assert_int_equal(game_partition_add(w.p[0], id, GAME_KIND_PLAYER, 10, 10, 1, 0), WY_OK);
    assert_int_equal(game_partition_add(w.p[0], 17, GAME_KIND_PLAYER, 10, 10, 1, 0), WY_ELIMIT);
    assert_int_equal(game_partition_remove(w.p[0], 99), WY_ENOTFOUND);
    game_input_t in = {.seq = 1};
    assert_int_equal(game_partition_input(w.p[0], 99, &in), WY_ENOTFOUND);
    world_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_see_each_other_third_far),
        cmocka_unit_test(test_cheats_refused_and_counted),
        cmocka_unit_test(test_border_crossing),
        cmocka_unit_test(test_crossing_one_frame_per_tick_when_handed_over_early),
        cmocka_unit_test(test_change_batches),
        cmocka_unit_test(test_lost_frames_resync),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
