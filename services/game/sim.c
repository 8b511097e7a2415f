/* wy-game's live simulation behind the game_part_* seam of game.h: each zone instance is split
 * into regions (vertical strips, WY_GAME_REGIONS), each a partition (partition.h) ticking at
 * the zone's rate on a daemon worker. The loop thread does the network I/O only:
 *
 *   loop -> region  ADD / REMOVE / DROP messages and input batches through the worker's inbox
 *                   (one batch per region per loop turn, not one message per input);
 *   region -> loop  one arena per tick holding every player's frame (16 per region, returned
 *                   by the loop; grown by doubling on the worker the few times a tick's frames
 *                   outgrow them, never per tick), and a change batch per WY_GAME_STATS_BATCH
 *                   for Kafka wy.stats;
 *   region <-> region  border ghosts and hand-overs in preallocated carriers through the
 *                   neighbour's inbox.
 *
 * Nothing on a worker blocks, does I/O or allocates per entity per tick: a full arena or a busy
 * carrier makes the region skip (players resynced, ghosts a tick older, a hand-over a tick
 * later), never wait. A slow client is the loop's business: over WY_GAME_SEND_QUEUE bytes
 * queued it is closed with 4008; the tick never knows.
 *
 * Threads: a region is allocated and freed by the loop; between ADOPT and DROP its partition
 * and schedule belong to its worker. Counters the loop reads are atomics. Messages name
 * entities by id; regions by pointer only while the loop keeps them alive (freed once every
 * region has been released by its worker and no message to it is in flight). */
#include "game.h"
#include "partition.h"
#include "wy_log.h"
#include "wy_tick.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_REGIONS     16
#define ARENAS          16 /* per region: room for the loop to fall 16 ticks behind */
#define CARRIERS        2  /* per direction */
#define HIST_BUCKETS    24
#define INPUT_BATCH     256
#define CHANGE_BATCH    8192
#define GAME_CLOSE_SLOW 4008

typedef struct region region_t;

/* The frames of one tick of one region, on their way to the loop. Records: frame_hdr_t then
 * the entered, changed and left bytes. */
typedef struct {
    wy_mailbox_node_t node;
    region_t *r;
    atomic_bool busy;
    uint8_t *buf;
    size_t len, cap;
    uint64_t tick;
} arena_t;

typedef struct {
    uint32_t entity, ack;
    int32_t cqx, cqy;
    uint32_t ne, nc, nl;
    uint8_t reset, corrected;
} frame_hdr_t;

/* Border ghosts and hand-overs from one region to a neighbour. */
typedef struct {
    wy_mailbox_node_t node;
    region_t *to;
    atomic_bool busy;
    game_border_t border;
    game_handover_t *hand;
    uint32_t nhand;
} carrier_t;

typedef struct {
    wy_mailbox_node_t node;
    region_t *r;
    atomic_bool busy;
    game_changes_t ch;
} changes_msg_t;

struct region {
    game_part_t *part;
    uint32_t index;
    unsigned worker;
    uint32_t nhand_cap;
    char label[WY_TICKET_INST_MAX + 16]; /* "meadow#1/0" */
    /* worker side */
    game_partition_t *sim;
    bool adopted, started;
    wy_list_t wnode;
    uint64_t period_ns, next_ns, tick, batch_ticks;
    arena_t *cur;     /* the arena the tick in progress writes into */
    size_t arena_hwm; /* the largest arena's capacity (worker) */
    arena_t arenas[ARENAS];
    carrier_t carriers[2][CARRIERS]; /* [0] to the west neighbour, [1] to the east one */
    changes_msg_t changes[2];
    struct input_batch *fwd[2]; /* inputs of players just handed over west / east (pooled) */
    /* shared */
    atomic_bool released;
    _Atomic uint64_t hist[HIST_BUCKETS], overruns, arena_misses, tick_max_ns, tick_cpu_ns, skipped;
    /* loop side */
    uint64_t seen[HIST_BUCKETS];
    game_partition_stats_t last;
    uint64_t last_ticks, last_ms, last_misses, last_overruns, last_cpu_ns, last_skipped;
    uint64_t frames_sent, bytes_sent, last_frames, last_bytes;
    wy_metric_t *m_tick, *m_tick_max, *m_ticks, *m_overruns, *m_fps, *m_players, *m_npcs, *m_ghosts,
        *m_frames, *m_bytes, *m_frames_dropped, *m_accepted, *m_refused[GAME_REFUSE_COUNT],
        *m_handovers, *m_changes, *m_tick_cpu, *m_skipped;
};

struct game_part {
    game_t *g;
    char inst[WY_TICKET_INST_MAX + 1];
    uint32_t nregions, tick_rate;
    region_t *regions[MAX_REGIONS];
    uint32_t players;
    bool dropping;
    atomic_int inflight;    /* messages naming it not yet handled (loop, workers) */
    atomic_uint adopted;    /* regions adopted by their workers: none ticks before all are */
    _Atomic uint64_t t0_ns; /* the regions' common tick schedule starts here (0: not yet) */
    game_walk_t walk;
    uint8_t *blocked;
    struct input_batch *pending[MAX_REGIONS];
};

typedef enum { MSG_ADOPT, MSG_DROP, MSG_ADD, MSG_REMOVE } msg_kind_t;

typedef struct {
    wy_mailbox_node_t node;
    msg_kind_t kind;
    region_t *r;
    uint32_t entity;
    double x, y;
} part_msg_t;

typedef struct input_batch {
    wy_mailbox_node_t node;
    region_t *r;
    atomic_bool busy; /* a region's forward batch (pooled): on its way */
    bool pooled;      /* a region's forward batch: released, not freed */
    uint8_t hops;     /* forwarded this many times (a player crossing back and forth) */
    uint32_t n;
    uint32_t entity[INPUT_BATCH];
    game_input_t in[INPUT_BATCH];
} input_batch_t;

/* Loop side: where each player's entity is (for inputs and frames). */
typedef struct {
    game_player_t *p;
    game_part_t *part;
    uint32_t region;
} route_t;

/* A worker's scheduling priority (WY_GAME_TICK_PRIORITY) and its guard: a real-time worker
 * that uses more than PRIO_MAX_SHARE of a core over a second drops back to normal priority (a
 * runaway or overloaded partition must not starve the loop thread of its core), and is raised
 * again after a second under half of that. Worker thread only, apart from the metrics. */
#define PRIO_MAX_SHARE 0.5
#define PRIO_CHECK_NS  1000000000ull
typedef struct {
    wy_worker_prio_t got; /* what the worker was given at start */
    bool lowered;         /* dropped back to normal by the guard */
    uint64_t check_ns, check_cpu_ns;
    wy_metric_t *m_rt, *m_nice, *m_drops;
} wprio_t;

/* One game per process (as the daemon). */
static struct {
    game_t *g;
    wy_list_t *wparts; /* per worker: regions it runs (worker thread only) */
    unsigned *count;   /* per worker: regions placed on it (loop) */
    wprio_t *prio;     /* per worker */
    unsigned n;
    wy_map_t *routes; /* entity -> route_t * */
    uv_check_t flush;
    uv_timer_t stats_timer;
    bool handles;
    wy_metric_t *m_slow, *m_cpu, *m_rss, *m_batches, *m_batches_dropped, *m_inputs_lost;
    uint64_t cpu_us_seen, slow_total;
} sim;

/* ---------------------------------------------------------------- regions config */

/* Strips for zone z from WY_GAME_REGIONS ("meadow=2,oakvale=1"); 1 when not listed. */
static uint32_t regions_for(const game_t *g, const char *zone, double width, double radius)
{
    const char *s = g->cfg->regions;
    size_t zl = strlen(zone);
    while (s && *s) {
        const char *eq = strchr(s, '='), *comma = strchr(s, ',');
        if (!eq || (comma && comma < eq))
            break;
        if ((size_t)(eq - s) == zl && memcmp(s, zone, zl) == 0) {
            long n = strtol(eq + 1, NULL, 10);
            if (n < 1)
                n = 1;
            if (n > MAX_REGIONS)
                n = MAX_REGIONS;
            /* A strip narrower than the view makes every entity a ghost somewhere: cap it. */
            while (n > 1 && width / (double)n < 2 * radius)
                n--;
            return (uint32_t)n;
        }
        s = comma ? comma + 1 : NULL;
    }
    return 1;
}

/* Checks WY_GAME_REGIONS at start: "zone=N" pairs, N in 1..16. */
int game_sim_check_regions(const char *s, const char **err)
{
    while (s && *s) {
        const char *eq = strchr(s, '='), *comma = strchr(s, ',');
        char *end = NULL;
        long n = eq ? strtol(eq + 1, &end, 10) : 0;
        if (!eq || eq == s || (comma && comma < eq) || n < 1 || n > MAX_REGIONS ||
            (end != (comma ? comma : s + strlen(s)))) {
            *err = "WY_GAME_REGIONS: expected zone=N pairs separated by commas, N in 1..16";
            return WY_EINVAL;
        }
        s = comma ? comma + 1 : NULL;
    }
    return WY_OK;
}

/* ---------------------------------------------------------------- worker side */

/* A message naming part was handled (its memory may be freed once none is in flight). */
static void part_done(game_part_t *part)
{
    atomic_fetch_sub_explicit(&part->inflight, 1, memory_order_release);
}

/* Makes room for `need` more bytes in a (owned by the worker while it fills it): doubling, so
 * an arena grows a few times while the crowd grows and then never again. Bounded: a tick's
 * frames are at most max_players full views. */
static void arena_reserve(region_t *r, arena_t *a, size_t need)
{
    if (a->len + need <= a->cap)
        return;
    size_t cap = a->cap;
    while (cap < a->len + need)
        cap *= 2;
    a->buf = wy_realloc(a->buf, cap);
    a->cap = cap;
    if (cap > r->arena_hwm)
        r->arena_hwm = cap;
}

static bool on_frame(void *ud, const game_frame_t *f)
{
    region_t *r = ud;
    arena_t *a = r->cur;
    size_t need = sizeof(frame_hdr_t) + f->nentered + f->nchanged + f->nleft;
    if (!a)
        return false; /* no arena free: the player gets a reset frame next tick */
    arena_reserve(r, a, need);
    frame_hdr_t h = {(uint32_t)f->conn,
                     f->ack,
                     f->cqx,
                     f->cqy,
                     (uint32_t)f->nentered,
                     (uint32_t)f->nchanged,
                     (uint32_t)f->nleft,
                     f->reset,
                     f->corrected};
    uint8_t *p = a->buf + a->len;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, f->entered, f->nentered);
    memcpy(p + f->nentered, f->changed, f->nchanged);
    memcpy(p + f->nentered + f->nchanged, f->left, f->nleft);
    a->len += need;
    return true;
}

static void on_frames(wy_mailbox_node_t *node, void *ud, int status);
static void on_changes(wy_mailbox_node_t *node, void *ud, int status);
static void on_carrier(wy_mailbox_node_t *node, void *ud, int status);

static carrier_t *free_carrier(region_t *r, int dir)
{
    for (int i = 0; i < CARRIERS; i++)
        if (!atomic_load_explicit(&r->carriers[dir][i].busy, memory_order_acquire))
            return &r->carriers[dir][i];
    return NULL;
}

static void send_borders(wy_worker_t *w, region_t *r, carrier_t *c[2])
{
    const game_handover_t *h;
    uint32_t nh = game_partition_handovers(r->sim, &h);
    for (int dir = 0; dir < 2; dir++) {
        if (!c[dir])
            continue;
        carrier_t *k = c[dir];
        uint32_t to = dir == 0 ? r->index - 1 : r->index + 1;
        game_partition_export_border(r->sim, to, &k->border);
        k->nhand = 0;
        for (uint32_t i = 0; i < nh; i++) {
            if (h[i].to != to)
                continue;
            game_handover_t *d = &k->hand[k->nhand++];
            uint32_t *ids = d->view_ids;
            *d = h[i];
            d->view_ids = ids;
            memcpy(ids, h[i].view_ids, h[i].nview * sizeof *ids);
        }
        k->to = r->part->regions[to];
        atomic_store_explicit(&k->busy, true, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->part->inflight, 1, memory_order_relaxed);
        if (wy_workers_send(wy_worker_pool(w), k->to->worker, &k->node, on_carrier) != WY_OK) {
            part_done(r->part);
            /* The neighbour cannot take it now: keep the hand-overs here, retry next tick. */
            for (uint32_t i = 0; i < k->nhand; i++)
                game_partition_handover_in(r->sim, &k->hand[i], 0);
            atomic_store_explicit(&k->busy, false, memory_order_release);
        }
    }
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void tick_region(wy_worker_t *w, region_t *r, uint64_t now)
{
    r->cur = NULL;
    for (int i = 0; i < ARENAS; i++)
        if (!atomic_load_explicit(&r->arenas[i].busy, memory_order_acquire)) {
            r->cur = &r->arenas[i];
            break;
        }
    if (r->cur) {
        r->cur->len = 0;
        r->cur->tick = r->tick;
        /* A spare arena (first used when the loop falls behind) starts as big as the largest
         * one, so a stall of the loop does not also cost frames. */
        arena_reserve(r, r->cur, r->arena_hwm);
        atomic_store_explicit(&r->cur->busy, true, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&r->arena_misses, 1, memory_order_relaxed);
    }
    carrier_t *c[2] = {r->index > 0 ? free_carrier(r, 0) : NULL,
                       r->index + 1 < r->part->nregions ? free_carrier(r, 1) : NULL};
    game_partition_handover_room(r->sim, c[0] ? UINT32_MAX : 0, c[1] ? UINT32_MAX : 0);

    uint64_t t0 = wy_tick_clock_monotonic(NULL), c0 = thread_cpu_ns();
    game_partition_tick(r->sim, r->tick, now, (double)r->period_ns / 1e9);
    uint64_t d = wy_tick_clock_monotonic(NULL) - t0;
    /* The CPU the tick used, apart from the wall time it took (a tick preempted by other
     * threads on a busy machine is long but not costly): the load-robust figure. */
    atomic_fetch_add_explicit(&r->tick_cpu_ns, thread_cpu_ns() - c0, memory_order_relaxed);

    wy_metric_observe(r->m_tick, (double)d / 1e9);
    uint64_t us = d / 1000;
    unsigned b = 0;
    while (b + 1 < HIST_BUCKETS && (1ull << b) <= us)
        b++;
    atomic_fetch_add_explicit(&r->hist[b], 1, memory_order_relaxed);
    if (d > r->period_ns)
        atomic_fetch_add_explicit(&r->overruns, 1, memory_order_relaxed);
    if (d > atomic_load_explicit(&r->tick_max_ns, memory_order_relaxed))
        atomic_store_explicit(&r->tick_max_ns, d, memory_order_relaxed);

    if (r->cur)
        atomic_fetch_add_explicit(&r->part->inflight, 1, memory_order_relaxed);
    if (r->cur && wy_worker_post(w, &r->cur->node, on_frames) != WY_OK) {
        part_done(r->part);
        atomic_store_explicit(&r->cur->busy, false, memory_order_release);
        game_partition_resync(r->sim); /* those frames never left */
        atomic_fetch_add_explicit(&r->arena_misses, 1, memory_order_relaxed);
    }
    r->cur = NULL;
    send_borders(w, r, c);

    if (++r->batch_ticks * r->period_ns >= (uint64_t)sim.g->cfg->stats_batch_ms * 1000000ull) {
        for (int i = 0; i < 2; i++) {
            changes_msg_t *m = &r->changes[i];
            if (atomic_load_explicit(&m->busy, memory_order_acquire))
                continue;
            game_partition_changes(r->sim, r->tick, &m->ch);
            r->batch_ticks = 0;
            atomic_store_explicit(&m->busy, true, memory_order_relaxed);
            atomic_fetch_add_explicit(&r->part->inflight, 1, memory_order_relaxed);
            if (wy_worker_post(w, &m->node, on_changes) != WY_OK) {
                part_done(r->part);
                atomic_store_explicit(&m->busy, false, memory_order_release);
            }
            break;
        }
    }
}

static void on_part_msg(wy_mailbox_node_t *node, void *ud, int status)
{
    part_msg_t *m = WY_CONTAINER_OF(node, part_msg_t, node);
    region_t *r = m->r;
    if (status != WY_OK) {
        if (m->kind == MSG_DROP)
            atomic_store(&r->released, true); /* the workers are gone */
        part_done(r->part);
        wy_free(m);
        return;
    }
    wy_worker_t *w = ud;
    switch (m->kind) {
    case MSG_ADOPT:
        r->adopted = true;
        atomic_fetch_add(&r->part->adopted, 1);
        r->started = false; /* its schedule starts with the instance's t0 (tick_body) */
        wy_list_push_back(&sim.wparts[wy_worker_index(w)], &r->wnode);
        break;
    case MSG_DROP:
        /* The loop frees the partition once every region is released. */
        if (r->adopted)
            wy_list_remove(&r->wnode);
        r->adopted = false;
        atomic_store(&r->released, true);
        break;
    case MSG_ADD:
        if (r->adopted && game_partition_add(r->sim, m->entity, GAME_KIND_PLAYER, m->x, m->y,
                                             m->entity, wy_tick_clock_monotonic(NULL)) != WY_OK)
            wy_log_warn("player not added to its partition", "zone", r->label, NULL);
        break;
    case MSG_REMOVE:
        if (r->adopted && game_partition_remove(r->sim, m->entity) == WY_ESTATE) {
            /* Handed over meanwhile: follow it to its owner. */
            uint32_t owner = game_partition_owner(r->sim, m->entity);
            if (owner < r->part->nregions) {
                m->r = r->part->regions[owner];
                if (wy_workers_send(wy_worker_pool(w), m->r->worker, &m->node, on_part_msg) ==
                    WY_OK)
                    return;
            }
        }
        break;
    }
    part_done(r->part);
    wy_free(m);
}

#define MAX_HOPS 2 /* a forwarded input follows its player at most this many times */

/* Inputs of a player handed over to a neighbour (the loop routes them here until its first
 * frame from the new partition): queued to that neighbour in r's pooled forward batch for
 * that side, so nothing a player sends while crossing is lost. Lost (counted) only when the
 * forward batch is still on its way, or after MAX_HOPS. */
static void forward_input(region_t *r, const input_batch_t *from, uint32_t i, input_batch_t *out[2])
{
    uint32_t owner = game_partition_owner(r->sim, from->entity[i]);
    int dir = owner + 1 == r->index ? 0 : owner == r->index + 1 ? 1 : -1;
    if (dir < 0 || from->hops >= MAX_HOPS) {
        wy_metric_inc(sim.m_inputs_lost);
        return;
    }
    input_batch_t *f = out[dir];
    if (!f) {
        f = r->fwd[dir];
        if (!f || atomic_load_explicit(&f->busy, memory_order_acquire)) {
            wy_metric_inc(sim.m_inputs_lost);
            return;
        }
        f->n = 0;
        f->hops = (uint8_t)(from->hops + 1);
        f->r = r->part->regions[owner];
        out[dir] = f;
    }
    if (f->n == INPUT_BATCH) {
        wy_metric_inc(sim.m_inputs_lost);
        return;
    }
    f->entity[f->n] = from->entity[i];
    f->in[f->n++] = from->in[i];
}

static void on_inputs(wy_mailbox_node_t *node, void *ud, int status)
{
    wy_worker_t *w = ud;
    input_batch_t *b = WY_CONTAINER_OF(node, input_batch_t, node);
    region_t *r = b->r;
    input_batch_t *out[2] = {NULL, NULL};
    if (status == WY_OK && r->adopted)
        for (uint32_t i = 0; i < b->n; i++)
            if (game_partition_input(r->sim, b->entity[i], &b->in[i]) == WY_ESTATE)
                forward_input(r, b, i, out); /* crossed a border: follow it */
    for (int d = 0; d < 2; d++) {
        input_batch_t *f = out[d];
        if (!f)
            continue;
        atomic_store_explicit(&f->busy, true, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->part->inflight, 1, memory_order_relaxed);
        if (wy_workers_send(wy_worker_pool(w), f->r->worker, &f->node, on_inputs) != WY_OK) {
            wy_metric_add(sim.m_inputs_lost, f->n);
            part_done(r->part);
            atomic_store_explicit(&f->busy, false, memory_order_release);
        }
    }
    part_done(r->part);
    if (b->pooled)
        atomic_store_explicit(&b->busy, false, memory_order_release);
    else
        wy_free(b);
}

static void on_carrier(wy_mailbox_node_t *node, void *ud, int status)
{
    WY_UNUSED(ud);
    carrier_t *k = WY_CONTAINER_OF(node, carrier_t, node);
    region_t *to = k->to;
    if (status == WY_OK && to->adopted) {
        /* Hand-overs first: the border batch no longer lists them (they are ghosts at the
         * sender now), and importing it first would drop their ghosts here. */
        for (uint32_t i = 0; i < k->nhand; i++)
            game_partition_handover_in(to->sim, &k->hand[i], wy_tick_clock_monotonic(NULL));
        game_partition_import_border(to->sim, &k->border);
    }
    atomic_store_explicit(&k->busy, false, memory_order_release);
    part_done(to->part);
}

static void prio_publish(wprio_t *p)
{
    bool rt = p->got.kind == WY_WORKER_PRIO_RT && !p->lowered;
    wy_metric_set(p->m_rt, rt ? p->got.value : 0);
    wy_metric_set(p->m_nice, p->got.kind == WY_WORKER_PRIO_NICE ? p->got.value : 0);
}

/* Once a second: a real-time worker over PRIO_MAX_SHARE of a core drops to normal priority;
 * back under half of it, it is raised again. */
static void prio_guard(wy_worker_t *w, uint64_t now)
{
    wprio_t *p = &sim.prio[wy_worker_index(w)];
    if (p->got.kind != WY_WORKER_PRIO_RT)
        return;
    if (p->check_ns == 0 || now < p->check_ns) {
        p->check_ns = p->check_ns ? p->check_ns : now + PRIO_CHECK_NS;
        p->check_cpu_ns = p->check_cpu_ns ? p->check_cpu_ns : thread_cpu_ns();
        return;
    }
    uint64_t cpu = thread_cpu_ns();
    double share = (double)(cpu - p->check_cpu_ns) / (double)(now - p->check_ns + PRIO_CHECK_NS);
    p->check_ns = now + PRIO_CHECK_NS;
    p->check_cpu_ns = cpu;
    char sh[16], name[24];
    snprintf(sh, sizeof sh, "%.2f", share);
    wy_worker_prio_name(&p->got, name, sizeof name);
    if (!p->lowered && share > PRIO_MAX_SHARE) {
        wy_worker_prio_lower();
        p->lowered = true;
        wy_metric_inc(p->m_drops);
        wy_log_warn("partition worker over half a core at real-time priority: back to normal "
                    "priority",
                    "worker_share", sh, "priority", name, NULL);
    } else if (p->lowered && share < PRIO_MAX_SHARE / 2) {
        wy_worker_prio_spec_t one = {.choice = {p->got}, .n = 1};
        wy_worker_prio_t got;
        const char *err = NULL;
        if (wy_worker_prio_raise(&one, &got, &err) == WY_OK) {
            p->lowered = false;
            wy_log_info("partition worker back to its raised priority", "worker_share", sh,
                        "priority", name, NULL);
        }
    }
    prio_publish(p);
}

static void tick_body(wy_tick_t *t, const wy_tick_info_t *info, void *ud)
{
    wy_worker_t *w = ud;
    if (wy_worker_stopping(w)) {
        wy_tick_stop(t);
        return;
    }
    prio_guard(w, info->now);
    wy_worker_poll(w);
    wy_list_t *pos;
    wy_list_foreach(pos, &sim.wparts[wy_worker_index(w)])
    {
        region_t *r = wy_container_of(pos, region_t, wnode);
        if (atomic_load_explicit(&r->part->adopted, memory_order_relaxed) < r->part->nregions)
            continue;
        if (!r->started) {
            /* Every region of the instance ticks on one schedule: tick k at t0 + k periods,
             * numbered k, so a player crossing regions keeps one sequence. t0: when the first
             * region found them all adopted. */
            uint64_t none = 0;
            atomic_compare_exchange_strong(&r->part->t0_ns, &none, info->now);
            r->next_ns = atomic_load(&r->part->t0_ns);
            r->tick = 0;
            r->started = true;
        }
        if (info->now < r->next_ns)
            continue;
        tick_region(w, r, info->now);
        r->next_ns += r->period_ns;
        uint64_t t0 = atomic_load_explicit(&r->part->t0_ns, memory_order_relaxed);
        if (r->next_ns + r->period_ns < info->now) { /* a stall: skip what was missed */
            uint64_t next = t0 + ((info->now - t0) / r->period_ns + 1) * r->period_ns;
            atomic_fetch_add_explicit(&r->skipped, (next - r->next_ns) / r->period_ns,
                                      memory_order_relaxed);
            r->next_ns = next;
        }
        r->tick = (r->next_ns - t0) / r->period_ns;
    }
}

static void worker_main(wy_worker_t *w)
{
    game_t *g = wy_worker_ud(w);
    wy_tick_t t;
    wy_tick_opts_t o = {.period_ns = 1000000000ull / (uint64_t)g->cfg->worker_hz};
    if (wy_tick_init(&t, &o) != WY_OK)
        return;
    /* The tick should win the CPU over the loop thread and unrelated work (its wall time is
     * otherwise the run-queue wait of a busy machine). */
    wprio_t *p = &sim.prio[wy_worker_index(w)];
    const char *err = NULL;
    char idx[12], name[24];
    snprintf(idx, sizeof idx, "%u", wy_worker_index(w));
    if (wy_worker_prio_raise(&g->cfg->tick_prio, &p->got, &err) == WY_OK)
        wy_log_info("partition worker priority set", "worker", idx, "priority",
                    wy_worker_prio_name(&p->got, name, sizeof name), NULL);
    else
        wy_log_warn("partition worker priority not raised as asked (WY_GAME_TICK_PRIORITY needs "
                    "CAP_SYS_NICE or RLIMIT_RTPRIO/RLIMIT_NICE): ticks compete with every other "
                    "thread for the CPU",
                    "worker", idx, "error", err, "priority",
                    wy_worker_prio_name(&p->got, name, sizeof name), NULL);
    prio_publish(p);
    wy_tick_run(&t, tick_body, w);
}

/* ---------------------------------------------------------------- loop side: frames out */

static void send_update(region_t *r, route_t *rt, const frame_hdr_t *h, const uint8_t *sec,
                        uint64_t tick)
{
    game_player_t *p = rt->p;
    rt->region = r->index;
    p->x = wy_gw_metres(h->cqx);
    p->y = wy_gw_metres(h->cqy);
    game_conn_t *c = p->conn;
    if (!c || !c->ws)
        return;
    Wyvern__Game__Update u = WYVERN__GAME__UPDATE__INIT;
    Wyvern__Game__Correction cor = WYVERN__GAME__CORRECTION__INIT;
    u.tick = tick;
    u.ack = h->ack;
    u.reset = h->reset;
    u.entered = (ProtobufCBinaryData){h->ne, (uint8_t *)sec};
    u.changed = (ProtobufCBinaryData){h->nc, (uint8_t *)sec + h->ne};
    u.left = (ProtobufCBinaryData){h->nl, (uint8_t *)sec + h->ne + h->nc};
    if (h->corrected) {
        cor.qx = (uint32_t)(h->cqx < 0 ? 0 : h->cqx);
        cor.qy = (uint32_t)(h->cqy < 0 ? 0 : h->cqy);
        u.correction = &cor;
    }
    Wyvern__Game__ServerMessage m = WYVERN__GAME__SERVER_MESSAGE__INIT;
    m.body_case = WYVERN__GAME__SERVER_MESSAGE__BODY_UPDATE;
    m.update = &u;
    size_t n = wyvern__game__server_message__get_packed_size(&m);
    /* A reader that does not keep up: closed, never waited for. */
    if (wy_ws_queued_bytes(c->ws) + n > (size_t)sim.g->cfg->send_queue) {
        wy_metric_inc(r->m_frames_dropped);
        /* Counted once: the frames that follow until the close completes find it closing. */
        if (wy_ws_close(c->ws, GAME_CLOSE_SLOW, "too slow: send queue full") == WY_OK)
            wy_metric_inc(sim.m_slow);
        return;
    }
    uint8_t *payload;
    wy_ws_frame_t *f = wy_ws_frame_alloc(true, n, &payload);
    wyvern__game__server_message__pack(&m, payload);
    if (wy_ws_send_frame(c->ws, f) == WY_OK) {
        r->frames_sent++; /* into /metrics with the ticks (region_refresh): same window */
        r->bytes_sent += n;
    } else {
        wy_metric_inc(r->m_frames_dropped);
    }
    wy_ws_frame_unref(f);
}

static void on_frames(wy_mailbox_node_t *node, void *ud, int status)
{
    WY_UNUSED(ud);
    arena_t *a = WY_CONTAINER_OF(node, arena_t, node);
    region_t *r = a->r;
    if (status == WY_OK) {
        size_t off = 0;
        while (off + sizeof(frame_hdr_t) <= a->len) {
            frame_hdr_t h;
            memcpy(&h, a->buf + off, sizeof h);
            const uint8_t *sec = a->buf + off + sizeof h;
            off += sizeof h + h.ne + h.nc + h.nl;
            route_t *rt = wy_map_get_u64(sim.routes, h.entity);
            if (rt && rt->part == r->part)
                send_update(r, rt, &h, sec, a->tick);
        }
    }
    atomic_store_explicit(&a->busy, false, memory_order_release);
    part_done(r->part);
}

static void on_changes(wy_mailbox_node_t *node, void *ud, int status)
{
    WY_UNUSED(ud);
    changes_msg_t *m = WY_CONTAINER_OF(node, changes_msg_t, node);
    region_t *r = m->r;
    wy_kafka_producer_t *kp = status == WY_OK ? wy_daemon_producer(sim.g->d) : NULL;
    if (kp && (m->ch.n > 0 || m->ch.dropped > 0)) {
        Wyvern__Game__ObjectChanges oc = WYVERN__GAME__OBJECT_CHANGES__INIT;
        Wyvern__Game__ObjectChange *items = wy_calloc(m->ch.n ? m->ch.n : 1, sizeof *items);
        Wyvern__Game__ObjectChange **ptrs = wy_calloc(m->ch.n ? m->ch.n : 1, sizeof *ptrs);
        for (uint32_t i = 0; i < m->ch.n; i++) {
            const game_change_t *c = &m->ch.changes[i];
            wyvern__game__object_change__init(&items[i]);
            items[i].op = (Wyvern__Game__ObjectChange__Op)c->op;
            items[i].id = c->id;
            items[i].kind = c->kind;
            items[i].qx = (uint32_t)(c->qx < 0 ? 0 : c->qx);
            items[i].qy = (uint32_t)(c->qy < 0 ? 0 : c->qy);
            ptrs[i] = &items[i];
        }
        oc.game_id = (char *)wy_daemon_instance(sim.g->d);
        oc.instance_id = r->part->inst;
        oc.region = r->index;
        oc.tick_from = m->ch.tick_from;
        oc.tick_to = m->ch.tick_to;
        oc.n_changes = m->ch.n;
        oc.changes = ptrs;
        oc.dropped = m->ch.dropped;
        size_t n = wyvern__game__object_changes__get_packed_size(&oc);
        uint8_t *buf = wy_malloc(n ? n : 1);
        wyvern__game__object_changes__pack(&oc, buf);
        if (wy_kafka_produce(kp, "wy.stats", r->part->inst, "game.object_changes", buf, n, NULL,
                             NULL, NULL) == WY_OK) {
            wy_metric_inc(sim.m_batches);
            wy_metric_add(r->m_changes, m->ch.n);
        } else {
            wy_metric_inc(sim.m_batches_dropped);
        }
        wy_free(buf);
        wy_free(ptrs);
        wy_free(items);
    } else if (status == WY_OK && m->ch.n > 0) {
        wy_metric_inc(sim.m_batches_dropped); /* no producer (stopping) */
    }
    atomic_store_explicit(&m->busy, false, memory_order_release);
    part_done(r->part);
}

/* ---------------------------------------------------------------- loop side: inputs in */

static void flush_inputs(game_part_t *part)
{
    for (uint32_t i = 0; i < part->nregions; i++) {
        input_batch_t *b = part->pending[i];
        if (!b)
            continue;
        part->pending[i] = NULL;
        wy_workers_t *ws = wy_daemon_workers(sim.g->d);
        atomic_fetch_add_explicit(&part->inflight, 1, memory_order_relaxed);
        if (!ws || wy_workers_send(ws, b->r->worker, &b->node, on_inputs) != WY_OK) {
            /* The partition's inbox is full: these inputs are lost like packets (the
             * player's acks stop moving and the next update corrects it). */
            wy_metric_add(sim.m_inputs_lost, b->n);
            part_done(part);
            wy_free(b);
        }
    }
}

static void on_flush(uv_check_t *h)
{
    WY_UNUSED(h);
    game_t *g = sim.g;
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->parts);
    while (wy_map_next(&it))
        flush_inputs(it.val);
}

static bool vec_ok(const Wyvern__Game__Vec2 *v)
{
    return v && isfinite(v->x) && isfinite(v->y);
}

void game_part_input(game_conn_t *c, const Wyvern__Game__Input *in)
{
    game_player_t *p = c->player;
    route_t *rt = p ? wy_map_get_u64(sim.routes, p->entity) : NULL;
    if (!rt)
        return;
    game_part_t *part = rt->part;
    uint32_t ri = rt->region < part->nregions ? rt->region : 0;
    input_batch_t *b = part->pending[ri];
    if (b && b->n == INPUT_BATCH) {
        flush_inputs(part);
        b = NULL;
    }
    if (!b) {
        b = wy_malloc(sizeof *b);
        b->r = part->regions[ri];
        b->n = 0;
        b->pooled = false;
        b->hops = 0;
        atomic_init(&b->busy, false);
        part->pending[ri] = b;
    }
    game_input_t *gi = &b->in[b->n];
    /* Out-of-range values are passed on as they are and refused (and counted) by the
     * partition's rules: mode 3+ is "invalid", NaN is "invalid". */
    *gi = (game_input_t){
        .seq = in->seq,
        .mode = (uint8_t)(in->mode > 255 ? 255 : in->mode),
        .dir = (uint16_t)in->dir,
        .speed = in->speed,
    };
    if (in->target) {
        gi->has_target = true;
        gi->tx = vec_ok(in->target) ? in->target->x : NAN;
        gi->ty = vec_ok(in->target) ? in->target->y : NAN;
    }
    if (in->predicted) {
        gi->has_pos = true;
        gi->px = vec_ok(in->predicted) ? in->predicted->x : NAN;
        gi->py = vec_ok(in->predicted) ? in->predicted->y : NAN;
    }
    b->entity[b->n++] = (uint32_t)p->entity;
}

/* ---------------------------------------------------------------- loop side: life */

static int send_msg(game_part_t *part, region_t *r, msg_kind_t kind, uint32_t entity, double x,
                    double y)
{
    wy_workers_t *ws = wy_daemon_workers(sim.g->d);
    if (!ws)
        return WY_ESTATE;
    part_msg_t *m = wy_calloc(1, sizeof *m);
    *m = (part_msg_t){.kind = kind, .r = r, .entity = entity, .x = x, .y = y};
    atomic_fetch_add_explicit(&part->inflight, 1, memory_order_relaxed);
    int rc = wy_workers_send(ws, r->worker, &m->node, on_part_msg);
    if (rc != WY_OK) {
        part_done(part);
        wy_free(m);
    }
    return rc;
}

static void region_metrics(region_t *r)
{
    char l[160];
    snprintf(l, sizeof l, "partition=\"%s\"", r->label);
    static const double tick_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25};
    r->m_tick = wy_metrics_histogram("wy_game_tick_seconds", "Duration of a partition's tick.", l,
                                     tick_buckets, WY_ARRAY_LEN(tick_buckets));
    r->m_tick_max = wy_metrics_gauge("wy_game_tick_max_seconds",
                                     "Longest tick of a partition since it started.", l);
    r->m_ticks = wy_metrics_counter("wy_game_ticks_total", "Ticks a partition ran.", l);
    r->m_skipped = wy_metrics_counter(
        "wy_game_ticks_skipped_total",
        "Tick periods a partition skipped after a stall (their tick numbers are never sent).", l);
    r->m_tick_cpu = wy_metrics_counter(
        "wy_game_tick_cpu_seconds_total",
        "CPU time of a partition's ticks (its worker thread's, apart from the wall time).", l);
    r->m_overruns = wy_metrics_counter("wy_game_tick_overruns_total",
                                       "Ticks that took longer than their period.", l);
    r->m_fps = wy_metrics_gauge("wy_game_tick_rate_hz",
                                "Ticks per second a partition actually ran (last interval).", l);
    char lk[200];
    snprintf(lk, sizeof lk, "%s,kind=\"player\"", l);
    r->m_players = wy_metrics_gauge("wy_game_entities", "Entities a partition owns, by kind.", lk);
    snprintf(lk, sizeof lk, "%s,kind=\"npc\"", l);
    r->m_npcs = wy_metrics_gauge("wy_game_entities", NULL, lk);
    r->m_ghosts = wy_metrics_gauge(
        "wy_game_ghosts", "Read-only copies of a neighbour partition's border entities.", l);
    r->m_frames = wy_metrics_counter("wy_game_frames_sent_total",
                                     "Update frames sent to players (one per player per tick).", l);
    r->m_bytes = wy_metrics_counter("wy_game_sent_bytes_total",
                                    "Bytes of the update frames sent (protobuf payloads).", l);
    r->m_frames_dropped = wy_metrics_counter(
        "wy_game_frames_dropped_total",
        "Frames not sent: the player's connection was gone or too slow, or no arena was free "
        "(the player is resynced).",
        l);
    r->m_accepted =
        wy_metrics_counter("wy_game_inputs_accepted_total", "Player inputs applied.", l);
    for (int i = 0; i < GAME_REFUSE_COUNT; i++) {
        snprintf(lk, sizeof lk, "%s,reason=\"%s\"", l, game_refuse_name((game_refuse_t)i));
        r->m_refused[i] = wy_metrics_counter("wy_game_inputs_refused_total",
                                             "Player inputs refused, by reason.", lk);
    }
    r->m_handovers = wy_metrics_counter("wy_game_handovers_total",
                                        "Entities handed over to a neighbour partition.", l);
    r->m_changes = wy_metrics_counter("wy_game_object_changes_total",
                                      "Object changes published to wy.stats.", l);
}

static region_t *region_new(game_part_t *part, uint32_t index, const Wyvern__World__Zone *z,
                            const char **err)
{
    game_t *g = part->g;
    region_t *r = wy_calloc(1, sizeof *r);
    r->part = part;
    r->index = index;
    r->period_ns = 1000000000ull / z->tick_rate;
    snprintf(r->label, sizeof r->label, "%s/%u", part->inst, index);
    game_partition_opts_t o;
    game_partition_opts_default(&o, &part->walk);
    o.index = index;
    o.count = part->nregions;
    o.x0 = part->walk.width * index / part->nregions;
    o.x1 = index + 1 == part->nregions ? part->walk.width
                                       : part->walk.width * (index + 1) / part->nregions;
    o.view_radius = (double)g->cfg->view_radius;
    o.view_margin = (double)g->cfg->view_margin;
    o.max_visible = (uint32_t)g->cfg->max_visible;
    o.max_players = (uint32_t)g->cfg->capacity + 1;
    o.max_entities = o.max_players * 2 + 64; /* its own, ghosts of its neighbours, NPCs */
    o.on_frame = on_frame;
    o.ud = r;
    if (game_partition_new(&o, &r->sim, err) != WY_OK) {
        wy_free(r);
        return NULL;
    }
    for (int i = 0; i < ARENAS; i++) {
        r->arenas[i].r = r;
        r->arenas[i].cap = 64 * 1024;
        r->arenas[i].buf = wy_malloc(r->arenas[i].cap);
    }
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < CARRIERS; i++) {
            carrier_t *k = &r->carriers[d][i];
            k->border.cap = o.max_entities;
            k->border.ghosts = wy_malloc(o.max_entities * sizeof *k->border.ghosts);
            k->hand = wy_calloc(o.max_handovers, sizeof *k->hand);
            r->nhand_cap = o.max_handovers;
            for (uint32_t h = 0; h < o.max_handovers; h++)
                k->hand[h].view_ids = wy_malloc(o.max_visible * sizeof(uint32_t));
        }
    for (int d = 0; d < 2; d++) {
        r->fwd[d] = wy_calloc(1, sizeof *r->fwd[d]);
        r->fwd[d]->pooled = true;
    }
    for (int i = 0; i < 2; i++) {
        r->changes[i].r = r;
        r->changes[i].ch.cap = CHANGE_BATCH;
        r->changes[i].ch.changes = wy_malloc(CHANGE_BATCH * sizeof(game_change_t));
    }
    unsigned best = 0;
    for (unsigned i = 1; i < sim.n; i++)
        if (sim.count[i] < sim.count[best])
            best = i;
    r->worker = best;
    sim.count[best]++;
    region_metrics(r);
    r->last_ms = wy_now_ms();
    return r;
}

static void region_free(region_t *r)
{
    if (!r)
        return;
    game_partition_free(r->sim); /* NULL once its worker dropped it */
    for (int i = 0; i < ARENAS; i++)
        wy_free(r->arenas[i].buf);
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < CARRIERS; i++) {
            carrier_t *k = &r->carriers[d][i];
            wy_free(k->border.ghosts);
            for (uint32_t h = 0; k->hand && h < r->nhand_cap; h++)
                wy_free(k->hand[h].view_ids);
            wy_free(k->hand);
        }
    for (int i = 0; i < 2; i++)
        wy_free(r->changes[i].ch.changes);
    wy_free(r->fwd[0]);
    wy_free(r->fwd[1]);
    wy_free(r);
}

static void part_free(game_part_t *part)
{
    for (uint32_t i = 0; i < part->nregions; i++) {
        wy_free(part->pending[i]);
        region_free(part->regions[i]);
    }
    wy_free(part->blocked);
    wy_free(part);
}

game_part_t *game_part_ensure(game_t *g, const char *inst, const Wyvern__World__Zone *z,
                              const char **err)
{
    game_part_t *part = wy_map_get_str(g->parts, inst);
    if (part)
        return part;
    if (g->stopping) {
        *err = "instance stopping";
        return NULL;
    }
    if (strlen(inst) > WY_TICKET_INST_MAX || z->tick_rate == 0 || !(z->width > 0) ||
        !(z->height > 0) || z->width > 100000 || z->height > 100000) {
        *err = "bad zone instance";
        return NULL;
    }
    part = wy_calloc(1, sizeof *part);
    part->g = g;
    snprintf(part->inst, sizeof part->inst, "%s", inst);
    part->tick_rate = z->tick_rate;
    part->walk = (game_walk_t){.width = z->width, .height = z->height, .cell = z->cell};
    /* The walkable grid, when world sent it (ListZones with_grid) and it is consistent. */
    if (z->cell > 0 && z->n_rows > 0 && z->n_rows <= (1u << 20)) {
        size_t cols = strlen(z->rows[0]);
        if (cols > 0 && cols * z->n_rows <= (1u << 20)) {
            part->blocked = wy_calloc(cols * z->n_rows, 1);
            for (size_t y = 0; y < z->n_rows; y++)
                for (size_t x = 0; x < cols && z->rows[y][x]; x++)
                    part->blocked[y * cols + x] = z->rows[y][x] == '#';
            part->walk.cols = (uint32_t)cols;
            part->walk.rows = (uint32_t)z->n_rows;
            part->walk.blocked = part->blocked;
        }
    }
    const char *zone_id = z->id ? z->id : inst;
    part->nregions = regions_for(g, zone_id, z->width, (double)g->cfg->view_radius);
    for (uint32_t i = 0; i < part->nregions; i++) {
        part->regions[i] = region_new(part, i, z, err);
        if (!part->regions[i]) {
            part_free(part);
            return NULL;
        }
    }
    for (uint32_t i = 0; i < part->nregions; i++)
        if (send_msg(part, part->regions[i], MSG_ADOPT, 0, 0, 0) != WY_OK) {
            /* Regions already adopted are dropped again at the next prune. */
            *err = "partition workers busy: retry shortly";
            for (uint32_t k = 0; k < part->nregions; k++)
                sim.count[part->regions[k]->worker]--;
            if (i == 0) {
                part_free(part);
                return NULL;
            }
            part->dropping = true;
            for (uint32_t k = 0; k < i; k++)
                send_msg(part, part->regions[k], MSG_DROP, 0, 0, 0);
            for (uint32_t k = i; k < part->nregions; k++)
                atomic_store(&part->regions[k]->released, true);
            wy_map_put_str(g->parts, part->inst, part);
            return NULL;
        }
    wy_map_put_str(g->parts, part->inst, part);
    wy_metric_add(g->m_partitions, 1);
    char hz[16], n[16];
    snprintf(hz, sizeof hz, "%u", z->tick_rate);
    snprintf(n, sizeof n, "%u", part->nregions);
    wy_log_info("partition started", "zone", inst, "tick_rate", hz, "regions", n, NULL);
    return part;
}

int game_part_add(game_part_t *part, const game_player_t *p)
{
    if (part->dropping || p->entity == 0 || p->entity > UINT32_MAX)
        return WY_EBUSY;
    if (game_walk_blocked(&part->walk, p->x, p->y))
        return WY_EINVAL;
    uint32_t ri = (uint32_t)(p->x / part->walk.width * part->nregions);
    if (ri >= part->nregions)
        ri = part->nregions - 1;
    int rc = send_msg(part, part->regions[ri], MSG_ADD, (uint32_t)p->entity, p->x, p->y);
    if (rc != WY_OK)
        return rc;
    route_t *rt = wy_malloc(sizeof *rt);
    *rt = (route_t){.p = (game_player_t *)p, .part = part, .region = ri};
    wy_map_put_u64(sim.routes, p->entity, rt);
    part->players++;
    return WY_OK;
}

void game_part_remove(game_part_t *part, game_player_t *p)
{
    route_t *rt = NULL;
    if (wy_map_del_u64(sim.routes, p->entity, (void **)&rt) == WY_OK && rt) {
        uint32_t ri = rt->region < part->nregions ? rt->region : 0;
        if (send_msg(part, part->regions[ri], MSG_REMOVE, (uint32_t)p->entity, 0, 0) != WY_OK)
            wy_log_warn("player removal not delivered to its partition", "zone", part->inst, NULL);
        wy_free(rt);
    }
    if (part->players > 0)
        part->players--;
}

void game_parts_prune(game_t *g, bool (*listed)(const game_t *g, const char *inst))
{
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->parts);
    while (wy_map_next(&it)) {
        game_part_t *part = it.val;
        if (part->dropping) {
            bool released = atomic_load(&part->inflight) == 0;
            for (uint32_t i = 0; i < part->nregions && released; i++)
                released = atomic_load(&part->regions[i]->released);
            if (released) {
                wy_map_iter_del(&it);
                part_free(part);
            }
            continue;
        }
        if (part->players > 0 || listed(g, part->inst))
            continue;
        flush_inputs(part);
        part->dropping = true;
        for (uint32_t i = 0; i < part->nregions; i++) {
            sim.count[part->regions[i]->worker]--;
            if (send_msg(part, part->regions[i], MSG_DROP, 0, 0, 0) != WY_OK)
                wy_log_warn("partition drop not delivered (retried at the stop)", "zone",
                            part->regions[i]->label, NULL);
        }
        wy_metric_add(g->m_partitions, -1);
        wy_log_info("partition stopped", "zone", part->inst, NULL);
    }
}

size_t game_parts_count(const game_t *g)
{
    return wy_map_count(g->parts);
}

/* Upper bound (ms) of the p99 bucket of the durations since the last call. */
static double region_p99_ms(region_t *r)
{
    uint64_t d[HIST_BUCKETS], total = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        uint64_t v = atomic_load_explicit(&r->hist[b], memory_order_relaxed);
        d[b] = v - r->seen[b];
        r->seen[b] = v;
        total += d[b];
    }
    if (total == 0)
        return 0;
    uint64_t want = total - total / 100, acc = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        acc += d[b];
        if (acc >= want)
            return (double)(1ull << b) / 1000.0;
    }
    return 0;
}

size_t game_parts_load(game_t *g, Wyvern__World__PartitionLoad *out, size_t max)
{
    size_t n = 0;
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->parts);
    while (n < max && wy_map_next(&it)) {
        game_part_t *part = it.val;
        if (part->dropping)
            continue;
        double p99 = 0;
        uint64_t ents = 0;
        for (uint32_t i = 0; i < part->nregions; i++) {
            double v = region_p99_ms(part->regions[i]);
            p99 = v > p99 ? v : p99;
            const game_partition_stats_t *st = &part->regions[i]->last; /* the stats timer's */
            ents += st->entities[GAME_KIND_PLAYER] + st->entities[GAME_KIND_NPC];
        }
        Wyvern__World__PartitionLoad *l = &out[n++];
        wyvern__world__partition_load__init(l);
        l->instance_id = part->inst;
        l->players = part->players;
        l->entities = ents > part->players ? ents : part->players;
        l->tick_p99_ms = p99;
    }
    return n;
}

/* ---------------------------------------------------------------- statistics */

/* Process CPU seconds (user + system) and resident set bytes. */
static void process_usage(double *cpu_s, uint64_t *rss)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
             ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    *rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size, res;
        if (fscanf(f, "%lu %lu", &size, &res) == 2)
            *rss = (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
}

/* Copies every region's counters into Prometheus (deltas) once a second, off the tick. */
static void region_refresh(region_t *r, uint64_t now_ms)
{
    game_partition_stats_t st;
    game_partition_stats(r->sim, &st);
    const game_partition_stats_t *l = &r->last;
    wy_metric_add(r->m_ticks, (double)(st.ticks - l->ticks));
    wy_metric_add(r->m_accepted, (double)(st.inputs_accepted - l->inputs_accepted));
    for (int i = 0; i < GAME_REFUSE_COUNT; i++)
        wy_metric_add(r->m_refused[i], (double)(st.refused[i] - l->refused[i]));
    wy_metric_add(r->m_handovers, (double)(st.handovers_out - l->handovers_out));
    wy_metric_add(r->m_frames_dropped, (double)(st.frames_lost - l->frames_lost));
    wy_metric_add(r->m_frames, (double)(r->frames_sent - r->last_frames));
    wy_metric_add(r->m_bytes, (double)(r->bytes_sent - r->last_bytes));
    r->last_frames = r->frames_sent;
    r->last_bytes = r->bytes_sent;
    uint64_t sk = atomic_load_explicit(&r->skipped, memory_order_relaxed);
    wy_metric_add(r->m_skipped, (double)(sk - r->last_skipped));
    r->last_skipped = sk;
    uint64_t cpu = atomic_load_explicit(&r->tick_cpu_ns, memory_order_relaxed);
    wy_metric_add(r->m_tick_cpu, (double)(cpu - r->last_cpu_ns) / 1e9);
    r->last_cpu_ns = cpu;
    uint64_t ov = atomic_load_explicit(&r->overruns, memory_order_relaxed);
    wy_metric_add(r->m_overruns, (double)(ov - r->last_overruns));
    r->last_overruns = ov;
    wy_metric_set(r->m_players, (double)st.entities[GAME_KIND_PLAYER]);
    wy_metric_set(r->m_npcs, (double)st.entities[GAME_KIND_NPC]);
    wy_metric_set(r->m_ghosts, (double)st.ghosts);
    wy_metric_set(r->m_tick_max,
                  (double)atomic_load_explicit(&r->tick_max_ns, memory_order_relaxed) / 1e9);
    if (now_ms > r->last_ms)
        wy_metric_set(r->m_fps,
                      (double)(st.ticks - l->ticks) * 1000.0 / (double)(now_ms - r->last_ms));
    r->last_ms = now_ms;
    r->last = st;
}

static void on_stats_timer(uv_timer_t *t)
{
    WY_UNUSED(t);
    game_t *g = sim.g;
    uint64_t now = wy_now_ms();
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->parts);
    while (wy_map_next(&it)) {
        game_part_t *part = it.val;
        for (uint32_t i = 0; i < part->nregions && !part->dropping; i++)
            region_refresh(part->regions[i], now);
    }
    double cpu;
    uint64_t rss;
    process_usage(&cpu, &rss);
    uint64_t cpu_us = (uint64_t)(cpu * 1e6);
    if (cpu_us > sim.cpu_us_seen)
        wy_metric_add(sim.m_cpu, (double)(cpu_us - sim.cpu_us_seen) / 1e6);
    sim.cpu_us_seen = cpu_us;
    wy_metric_set(sim.m_rss, (double)rss);
}

/* gRPC Game.Stats: the figures of /metrics per partition, with percentiles of the tick. */
static double hist_pct_ms(region_t *r, double q)
{
    uint64_t total = 0, acc = 0;
    for (int b = 0; b < HIST_BUCKETS; b++)
        total += atomic_load_explicit(&r->hist[b], memory_order_relaxed);
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(q * (double)total);
    for (int b = 0; b < HIST_BUCKETS; b++) {
        acc += atomic_load_explicit(&r->hist[b], memory_order_relaxed);
        if (acc >= want)
            return (double)(1ull << b) / 1000.0;
    }
    return 0;
}

static void rpc_stats(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    WY_UNUSED(req);
    WY_UNUSED(arg);
    game_t *g = sim.g;
    Wyvern__Game__StatsResponse out = WYVERN__GAME__STATS_RESPONSE__INIT;
    size_t cap = 0;
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->parts);
    while (wy_map_next(&it))
        cap += ((game_part_t *)it.val)->nregions;
    Wyvern__Game__PartitionStats *ps = wy_calloc(cap ? cap : 1, sizeof *ps);
    Wyvern__Game__PartitionStats **pp = wy_calloc(cap ? cap : 1, sizeof *pp);
    Wyvern__Game__PartitionStats__InputsRefusedEntry *re =
        wy_calloc((cap ? cap : 1) * GAME_REFUSE_COUNT, sizeof *re);
    Wyvern__Game__PartitionStats__InputsRefusedEntry **rp =
        wy_calloc((cap ? cap : 1) * GAME_REFUSE_COUNT, sizeof *rp);
    size_t n = 0;
    uint32_t players = 0;
    wy_map_iter_init(&it, g->parts);
    while (wy_map_next(&it)) {
        game_part_t *part = it.val;
        if (part->dropping)
            continue;
        players += part->players;
        for (uint32_t i = 0; i < part->nregions; i++) {
            region_t *r = part->regions[i];
            Wyvern__Game__PartitionStats *s = &ps[n];
            wyvern__game__partition_stats__init(s);
            const game_partition_stats_t *st = &r->last;
            s->instance_id = part->inst;
            s->region = r->index;
            s->regions = part->nregions;
            s->worker = r->worker;
            s->tick_rate = part->tick_rate;
            s->fps = wy_metric_value(r->m_fps);
            s->ticks = st->ticks;
            s->overruns = atomic_load_explicit(&r->overruns, memory_order_relaxed);
            s->tick_p50_ms = hist_pct_ms(r, 0.5);
            s->tick_p99_ms = hist_pct_ms(r, 0.99);
            s->tick_max_ms =
                (double)atomic_load_explicit(&r->tick_max_ns, memory_order_relaxed) / 1e6;
            s->players = (uint32_t)st->entities[GAME_KIND_PLAYER];
            s->npcs = (uint32_t)st->entities[GAME_KIND_NPC];
            s->ghosts = (uint32_t)st->ghosts;
            s->frames_sent = r->frames_sent;
            s->bytes_sent = r->bytes_sent;
            s->inputs_accepted = st->inputs_accepted;
            s->handovers = st->handovers_out;
            s->n_inputs_refused = GAME_REFUSE_COUNT;
            s->inputs_refused = &rp[n * GAME_REFUSE_COUNT];
            for (int k = 0; k < GAME_REFUSE_COUNT; k++) {
                Wyvern__Game__PartitionStats__InputsRefusedEntry *e =
                    &re[n * GAME_REFUSE_COUNT + k];
                wyvern__game__partition_stats__inputs_refused_entry__init(e);
                e->key = (char *)game_refuse_name((game_refuse_t)k);
                e->value = st->refused[k];
                rp[n * GAME_REFUSE_COUNT + k] = e;
            }
            pp[n] = s;
            n++;
        }
    }
    double cpu;
    uint64_t rss;
    process_usage(&cpu, &rss);
    out.game_id = (char *)wy_daemon_instance(g->d);
    out.cpu_seconds = cpu;
    out.rss_bytes = rss;
    out.players = players;
    out.n_partitions = n;
    out.partitions = pp;
    out.slow_disconnects = (uint64_t)wy_metric_value(sim.m_slow);
    wy_grpc_reply(call, &out.base);
    wy_free(rp);
    wy_free(re);
    wy_free(pp);
    wy_free(ps);
}

int game_parts_start(game_t *g, const char **err)
{
    sim.g = g;
    sim.n = (unsigned)g->cfg->workers;
    sim.wparts = wy_calloc(sim.n, sizeof *sim.wparts);
    sim.count = wy_calloc(sim.n, sizeof *sim.count);
    sim.prio = wy_calloc(sim.n, sizeof *sim.prio);
    for (unsigned i = 0; i < sim.n; i++) {
        char l[32];
        snprintf(l, sizeof l, "worker=\"%u\"", i);
        sim.prio[i].m_rt = wy_metrics_gauge(
            "wy_game_worker_rt_priority",
            "SCHED_FIFO priority of a partition worker thread (0: not real-time).", l);
        sim.prio[i].m_nice = wy_metrics_gauge(
            "wy_game_worker_nice", "Nice value WY_GAME_TICK_PRIORITY gave a partition worker.", l);
        sim.prio[i].m_drops = wy_metrics_counter(
            "wy_game_worker_priority_drops_total",
            "Times a real-time partition worker used more than half a core and was dropped "
            "back to normal priority.",
            l);
    }
    for (unsigned i = 0; i < sim.n; i++)
        wy_list_init(&sim.wparts[i]);
    sim.routes = wy_map_new(0);
    sim.m_slow = wy_metrics_counter(
        "wy_game_slow_disconnects_total",
        "Connections closed (4008) because their send queue passed WY_GAME_SEND_QUEUE.", NULL);
    sim.m_cpu = wy_metrics_counter("wy_game_process_cpu_seconds_total",
                                   "CPU time of the process (user + system).", NULL);
    sim.m_rss =
        wy_metrics_gauge("wy_game_process_resident_bytes", "Resident memory of the process.", NULL);
    sim.m_batches = wy_metrics_counter("wy_game_change_batches_total",
                                       "Object-change batches produced to wy.stats.", NULL);
    sim.m_batches_dropped = wy_metrics_counter(
        "wy_game_change_batches_dropped_total",
        "Object-change batches not produced (Kafka queue full or producer gone).", NULL);
    sim.m_inputs_lost = wy_metrics_counter(
        "wy_game_inputs_lost_total",
        "Inputs not delivered to a partition (its inbox full, or a player crossing a border "
        "while its partition's forward batch was still on its way).",
        NULL);
    wy_workers_opts_t o = {
        .name = "part", .count = sim.n, .main = worker_main, .inbox_capacity = 4096, .ud = g};
    int rc = wy_daemon_add_workers(g->d, &o);
    if (rc != WY_OK) {
        *err = "cannot create the partition workers";
        return rc;
    }
    uv_check_init(g->loop, &sim.flush);
    uv_check_start(&sim.flush, on_flush);
    uv_timer_init(g->loop, &sim.stats_timer);
    uv_timer_start(&sim.stats_timer, on_stats_timer, 1000, 1000);
    sim.handles = true;
    if (wy_grpc_server_register(wy_daemon_grpc(g->d), "/wyvern.game.Game/Stats",
                                &wyvern__game__stats_request__descriptor, rpc_stats, g) != WY_OK) {
        *err = "cannot register wyvern.game.Game/Stats";
        return WY_EINTERNAL;
    }
    return WY_OK;
}

void game_parts_stop(game_t *g)
{
    WY_UNUSED(g); /* the daemon stops the workers after this */
    if (sim.handles) {
        uv_check_stop(&sim.flush);
        uv_close((uv_handle_t *)&sim.flush, NULL);
        uv_timer_stop(&sim.stats_timer);
        uv_close((uv_handle_t *)&sim.stats_timer, NULL);
        sim.handles = false;
    }
}

void game_parts_free(game_t *g)
{
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->parts);
    while (wy_map_next(&it)) {
        part_free(it.val);
        wy_map_iter_del(&it);
    }
    if (sim.routes) {
        wy_map_iter_init(&it, sim.routes);
        while (wy_map_next(&it)) {
            wy_free(it.val);
            wy_map_iter_del(&it);
        }
        wy_map_free(sim.routes);
    }
    wy_free(sim.wparts);
    wy_free(sim.count);
    wy_free(sim.prio);
    memset(&sim, 0, sizeof sim);
}
