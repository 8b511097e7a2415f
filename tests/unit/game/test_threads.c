/* Threaded test of wy-game's partitions (services/game/partition.c) with the hand-off
 * discipline of sim.c: two partitions of one zone, each ticking on its own thread, exchange
 * border ghosts and hand-overs through preallocated carriers (an atomic busy flag, delivered by a
 * poll wy_mailbox the receiver drains at the start of its tick), while a third thread reads
 * their statistics. Players walk back and forth across the border; none is lost or duplicated.
 * Built into `make tsan-build` so ThreadSanitizer checks the cross-thread contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "wy_mailbox.h"

#include "../../../services/game/aoi.c"
#include "../../../services/game/move.c"
#include "../../../services/game/partition.c"

#define PLAYERS 24
#define TICKS   600

/* Input sequence numbers per player, shared: its owner changes. */
static atomic_uint seqs[PLAYERS + 1];

typedef struct region region_t;

typedef struct {
    wy_mailbox_node_t node;
    region_t *to;
    atomic_bool busy;
    game_border_t border;
    game_ghost_t ghosts[256];
    game_handover_t hand[64];
    uint32_t ids[64][64];
    uint32_t nhand;
} carrier_t;

struct region {
    game_partition_t *p;
    wy_mailbox_t *inbox;
    carrier_t carriers[2];
    region_t *peer;
    uint32_t index;
    atomic_int done;
    atomic_uint_fast64_t tick; /* ticks done (the peer keeps within 2 of it, as wall-clock
                                  pacing keeps the daemon's partitions) */
    uint64_t frames;
};

static bool on_frame(void *ud, const game_frame_t *f)
{
    region_t *r = ud;
    (void)f;
    r->frames++;
    return true;
}

static void on_carrier(wy_mailbox_node_t *node, void *ud, int status)
{
    (void)ud;
    carrier_t *k = WY_CONTAINER_OF(node, carrier_t, node);
    if (status == WY_OK) {
        for (uint32_t i = 0; i < k->nhand; i++)
            assert_int_equal(game_partition_handover_in(k->to->p, &k->hand[i], 0), WY_OK);
        game_partition_import_border(k->to->p, &k->border);
    }
    atomic_store_explicit(&k->busy, false, memory_order_release);
}

static void *region_main(void *arg)
{
    region_t *r = arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull + r->index;
    for (uint64_t t = 1; t <= TICKS; t++) {
        while (atomic_load(&r->peer->tick) + 2 < t && !atomic_load(&r->peer->done))
            sched_yield();
        wy_mailbox_poll(r->inbox);
        carrier_t *c = NULL;
        for (int i = 0; i < 2; i++)
            if (!atomic_load_explicit(&r->carriers[i].busy, memory_order_acquire)) {
                c = &r->carriers[i];
                break;
            }
        game_partition_handover_room(r->p, r->index == 1 && c ? 64 : 0,
                                     r->index == 0 && c ? 64 : 0);
        /* Players this partition owns walk towards the other side, then back. */
        for (uint32_t id = 1; id <= PLAYERS; id++) {
            double x, y;
            bool ghost;
            if (game_partition_position(r->p, id, &x, &y, &ghost) != WY_OK || ghost)
                continue;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if (seed % 10 != 0)
                continue;
            uint16_t dir = x < 256 ? 0 : 32768; /* east while west of the border, else west */
            if (seed % 3 == 0)
                dir = (uint16_t)(dir + 16384);
            game_input_t in = {
                .seq = atomic_fetch_add(&seqs[id], 1) + 1, .mode = GAME_MODE_RUN, .dir = dir};
            assert_int_equal(game_partition_input(r->p, id, &in), WY_OK);
        }
        game_partition_tick(r->p, t, t * 50000000ull, 0.05);
        if (c) {
            const game_handover_t *h;
            uint32_t nh = game_partition_handovers(r->p, &h);
            c->to = r->peer;
            c->border.cap = WY_ARRAY_LEN(c->ghosts);
            c->border.ghosts = c->ghosts;
            game_partition_export_border(r->p, r->peer->index, &c->border);
            c->nhand = 0;
            for (uint32_t i = 0; i < nh; i++) {
                c->hand[c->nhand] = h[i];
                c->hand[c->nhand].view_ids = c->ids[c->nhand];
                memcpy(c->ids[c->nhand], h[i].view_ids, h[i].nview * sizeof(uint32_t));
                c->nhand++;
            }
            atomic_store_explicit(&c->busy, true, memory_order_relaxed);
            assert_int_equal(wy_mailbox_push(r->peer->inbox, &c->node, on_carrier), WY_OK);
        }
        atomic_store(&r->tick, t);
    }
    atomic_store(&r->done, 1);
    return NULL;
}

static void test_two_partitions_on_two_threads(void **state)
{
    (void)state;
    static game_walk_t walk = {.width = 512, .height = 512};
    region_t r[2];
    memset(r, 0, sizeof r);
    for (uint32_t i = 0; i < 2; i++) {
        game_partition_opts_t o;
        game_partition_opts_default(&o, &walk);
        o.index = i;
        o.count = 2;
        o.x0 = 256.0 * i;
        o.x1 = 256.0 * (i + 1);
        o.max_entities = 128;
        o.max_players = 64;
        o.max_visible = 64;
        o.on_frame = on_frame;
        o.ud = &r[i];
        const char *err = NULL;
        assert_int_equal(game_partition_new(&o, &r[i].p, &err), WY_OK);
        wy_mailbox_opts_t mo = {.capacity = 16};
        assert_int_equal(wy_mailbox_new(NULL, &mo, &r[i].inbox), WY_OK);
        r[i].index = i;
        r[i].peer = &r[1 - i];
    }
    for (uint32_t id = 1; id <= PLAYERS; id++) {
        uint32_t side = id % 2;
        double x = side ? 260 + id : 250 - id;
        assert_int_equal(
            game_partition_add(r[side].p, id, GAME_KIND_PLAYER, x, 100 + id * 4, id, 0), WY_OK);
    }
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, region_main, &r[i]), 0);
    /* A reader of the statistics meanwhile (the daemon's loop thread). The two partitions
     * publish at their own pace, so a sum of both is not a snapshot: only read. */
    uint64_t reads = 0, ticks = 0;
    while (!atomic_load(&r[0].done) || !atomic_load(&r[1].done)) {
        game_partition_stats_t a, b;
        game_partition_stats(r[0].p, &a);
        game_partition_stats(r[1].p, &b);
        ticks = a.ticks + b.ticks;
        reads++;
    }
    (void)ticks;
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    /* Deliver what is still in flight, as the next ticks would. */
    wy_mailbox_poll(r[0].inbox);
    wy_mailbox_poll(r[1].inbox);
    game_partition_stats_t a, b;
    game_partition_stats(r[0].p, &a);
    game_partition_stats(r[1].p, &b);
    /* Count owners: every player owned by exactly one partition. */
    for (uint32_t id = 1; id <= PLAYERS; id++) {
        int owners = 0;
        for (int i = 0; i < 2; i++) {
            double x, y;
            bool ghost;
            if (game_partition_position(r[i].p, id, &x, &y, &ghost) == WY_OK && !ghost)
                owners++;
        }
        assert_int_equal(owners, 1);
    }
    assert_true(a.handovers_out + b.handovers_out > 0);
    assert_int_equal(a.lost + b.lost, 0);
    assert_int_equal(a.refused[GAME_REFUSE_SEQ] + b.refused[GAME_REFUSE_SEQ], 0);
    assert_true(reads > 0);
    for (int i = 0; i < 2; i++) {
        wy_mailbox_close(r[i].inbox, NULL, NULL);
        game_partition_free(r[i].p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_partitions_on_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
