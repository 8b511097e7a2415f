/* wy-game partitions, the minimal kind (issue 13): each zone instance placed here runs on
 * one daemon worker and ticks at its zone's rate; players stand still, so the worker
 * needs no player state and the loop keeps each player's position. The simulation of
 * issue 14 replaces this file behind the game_part_* functions of game.h.
 *
 * Threads: a partition is allocated and freed by the loop; its worker keeps it on its own
 * list between ADOPT and DROP (messages through the worker's inbox) and is the only one
 * to touch its tick schedule; the counters the loop reads for the heartbeat are atomics. */
#include "game.h"
#include "wy_log.h"
#include "wy_tick.h"

#include <stdatomic.h>
#include <string.h>

#define HIST_BUCKETS 24 /* tick duration, log2 microseconds: 1 us .. 8 s */

struct game_part {
    /* loop side */
    game_t *g;
    char inst[WY_TICKET_INST_MAX + 1];
    unsigned worker;
    uint32_t players; /* players the loop handed to it */
    bool dropping;    /* DROP sent: freed once the worker let it go */
    uint64_t seen[HIST_BUCKETS];
    /* worker side */
    wy_list_t wnode;
    uint64_t period_ns, next_ns;
    /* shared */
    atomic_bool released; /* the worker dropped it */
    atomic_uint_fast64_t hist[HIST_BUCKETS];
};

typedef struct {
    wy_list_t parts; /* partitions this worker runs (worker thread only) */
} worker_state_t;

typedef enum { MSG_ADOPT, MSG_DROP } msg_kind_t;

typedef struct {
    wy_mailbox_node_t node;
    msg_kind_t kind;
    game_part_t *part;
} part_msg_t;

/* Loop side: the worker state array and the partitions per worker (for placement). */
typedef struct {
    worker_state_t *ws;
    unsigned *count;
    unsigned n;
} parts_t;

static parts_t parts_of; /* one game per process */

static void on_part_msg(wy_mailbox_node_t *node, void *ud, int status)
{
    part_msg_t *m = WY_CONTAINER_OF(node, part_msg_t, node);
    if (status == WY_OK) {
        wy_worker_t *w = ud;
        worker_state_t *ws = &parts_of.ws[wy_worker_index(w)];
        if (m->kind == MSG_ADOPT) {
            m->part->next_ns = wy_tick_clock_monotonic(NULL);
            wy_list_push_back(&ws->parts, &m->part->wnode);
        } else {
            wy_list_remove(&m->part->wnode);
            atomic_store(&m->part->released, true);
        }
    } else if (m->kind == MSG_DROP) {
        atomic_store(&m->part->released, true); /* the workers are gone */
    }
    wy_free(m);
}

static void tick_body(wy_tick_t *t, const wy_tick_info_t *info, void *ud)
{
    wy_worker_t *w = ud;
    if (wy_worker_stopping(w)) {
        wy_tick_stop(t);
        return;
    }
    wy_worker_poll(w);
    worker_state_t *ws = &parts_of.ws[wy_worker_index(w)];
    wy_list_t *pos;
    wy_list_foreach(pos, &ws->parts)
    {
        game_part_t *p = wy_container_of(pos, game_part_t, wnode);
        if (info->now < p->next_ns)
            continue;
        uint64_t t0 = wy_tick_clock_monotonic(NULL);
        /* One step of the zone instance: nobody moves yet. */
        uint64_t us = (wy_tick_clock_monotonic(NULL) - t0) / 1000;
        unsigned b = 0;
        while (b + 1 < HIST_BUCKETS && (1ull << b) <= us)
            b++;
        atomic_fetch_add_explicit(&p->hist[b], 1, memory_order_relaxed);
        p->next_ns += p->period_ns;
        if (p->next_ns + p->period_ns < info->now) /* a stall: skip what was missed */
            p->next_ns = info->now + p->period_ns;
    }
}

static void worker_main(wy_worker_t *w)
{
    game_t *g = wy_worker_ud(w);
    wy_tick_t t;
    wy_tick_opts_t o = {.period_ns = 1000000000ull / (uint64_t)g->cfg->worker_hz};
    if (wy_tick_init(&t, &o) != WY_OK)
        return;
    wy_tick_run(&t, tick_body, w);
}

int game_parts_start(game_t *g, const char **err)
{
    parts_of.n = (unsigned)g->cfg->workers;
    parts_of.ws = wy_calloc(parts_of.n, sizeof *parts_of.ws);
    parts_of.count = wy_calloc(parts_of.n, sizeof *parts_of.count);
    for (unsigned i = 0; i < parts_of.n; i++)
        wy_list_init(&parts_of.ws[i].parts);
    wy_workers_opts_t o = {
        .name = "part", .count = parts_of.n, .main = worker_main, .inbox_capacity = 4096, .ud = g};
    int rc = wy_daemon_add_workers(g->d, &o);
    if (rc != WY_OK)
        *err = "cannot create the partition workers";
    return rc;
}

static int send_msg(game_t *g, game_part_t *p, msg_kind_t kind)
{
    wy_workers_t *ws = wy_daemon_workers(g->d);
    if (!ws)
        return WY_ESTATE;
    part_msg_t *m = wy_calloc(1, sizeof *m);
    m->kind = kind;
    m->part = p;
    int rc = wy_workers_send(ws, p->worker, &m->node, on_part_msg);
    if (rc != WY_OK)
        wy_free(m);
    return rc;
}

game_part_t *game_part_ensure(game_t *g, const char *inst, const Wyvern__World__Zone *z,
                              const char **err)
{
    game_part_t *p = wy_map_get_str(g->parts, inst);
    if (p)
        return p;
    if (g->stopping) {
        *err = "instance stopping";
        return NULL;
    }
    if (strlen(inst) > WY_TICKET_INST_MAX || z->tick_rate == 0) {
        *err = "bad zone instance";
        return NULL;
    }
    p = wy_calloc(1, sizeof *p);
    p->g = g;
    snprintf(p->inst, sizeof p->inst, "%s", inst);
    p->period_ns = 1000000000ull / z->tick_rate;
    unsigned best = 0;
    for (unsigned i = 1; i < parts_of.n; i++)
        if (parts_of.count[i] < parts_of.count[best])
            best = i;
    p->worker = best;
    if (send_msg(g, p, MSG_ADOPT) != WY_OK) {
        wy_free(p);
        *err = "partition workers busy: retry shortly";
        return NULL;
    }
    parts_of.count[best]++;
    wy_map_put_str(g->parts, p->inst, p);
    wy_metric_add(g->m_partitions, 1);
    char hz[16], wk[16];
    snprintf(hz, sizeof hz, "%u", z->tick_rate);
    snprintf(wk, sizeof wk, "%u", best);
    wy_log_info("partition started", "zone", inst, "tick_rate", hz, "worker", wk, NULL);
    return p;
}

int game_part_add(game_part_t *part, const game_player_t *p)
{
    WY_UNUSED(p);
    part->players++;
    return WY_OK;
}

void game_part_remove(game_part_t *part, game_player_t *p)
{
    WY_UNUSED(p); /* standing still: p->x / p->y are where it stands */
    if (part->players > 0)
        part->players--;
}

void game_parts_prune(game_t *g, bool (*listed)(const game_t *g, const char *inst))
{
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->parts);
    while (wy_map_next(&it)) {
        game_part_t *p = it.val;
        if (p->dropping) {
            if (atomic_load(&p->released)) {
                wy_map_iter_del(&it);
                wy_free(p);
            }
            continue;
        }
        if (p->players > 0 || listed(g, p->inst))
            continue;
        if (send_msg(g, p, MSG_DROP) == WY_OK) {
            p->dropping = true;
            parts_of.count[p->worker]--;
            wy_metric_add(g->m_partitions, -1);
            wy_log_info("partition stopped", "zone", p->inst, NULL);
        }
    }
}

size_t game_parts_count(const game_t *g)
{
    return wy_map_count(g->parts);
}

size_t game_parts_load(game_t *g, Wyvern__World__PartitionLoad *out, size_t max)
{
    size_t n = 0;
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->parts);
    while (n < max && wy_map_next(&it)) {
        game_part_t *p = it.val;
        if (p->dropping)
            continue;
        /* p99 of the tick durations since the last report */
        uint64_t d[HIST_BUCKETS], total = 0;
        for (int b = 0; b < HIST_BUCKETS; b++) {
            uint64_t v = atomic_load_explicit(&p->hist[b], memory_order_relaxed);
            d[b] = v - p->seen[b];
            p->seen[b] = v;
            total += d[b];
        }
        double p99_ms = 0;
        if (total > 0) {
            uint64_t want = total - total / 100, acc = 0;
            for (int b = 0; b < HIST_BUCKETS; b++) {
                acc += d[b];
                if (acc >= want) {
                    p99_ms = (double)(1ull << b) / 1000.0; /* bucket's upper bound */
                    break;
                }
            }
        }
        Wyvern__World__PartitionLoad *l = &out[n++];
        wyvern__world__partition_load__init(l);
        l->instance_id = p->inst;
        l->players = p->players;
        l->entities = p->players;
        l->tick_p99_ms = p99_ms;
    }
    return n;
}

void game_parts_stop(game_t *g)
{
    WY_UNUSED(g); /* the daemon stops the workers after this */
}

void game_parts_free(game_t *g)
{
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->parts);
    while (wy_map_next(&it)) {
        wy_free(it.val);
        wy_map_iter_del(&it);
    }
    wy_free(parts_of.ws);
    wy_free(parts_of.count);
    memset(&parts_of, 0, sizeof parts_of);
}
