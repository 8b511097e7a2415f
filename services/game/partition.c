/* wy-game's partition: entities, inputs, movement, interest and frames of one region of a zone
 * instance (contract in partition.h). */
#include "partition.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define NONE        UINT32_MAX
#define GHOST_GRACE 8 /* border batches a just-handed-over ghost survives without being listed */
#define KEY_MAX     5 /* varint of a 32-bit id delta, with the 2 form bits: at most 5 bytes */

typedef struct {
    uint32_t id;
    bool used, ghost;
    uint8_t kind;
    uint8_t grace;   /* ghost: batches left before an unlisted ghost is removed */
    bool moved;      /* owned: moved since the last change batch (game_partition_changes) */
    uint32_t owner;  /* ghost: the owning partition */
    uint32_t seen;   /* ghost: stamp of the last batch that listed it */
    uint32_t player; /* index in players, NONE for an NPC or a ghost */
    game_mover_t mv; /* owned: the mover; ghost: x, y, mode only */
    wy_gw_entity_t sent, now;
    uint8_t enter_len;
    uint8_t enter[WY_GW_ENTER_MAX];
} ent_t;

/* The viewer-independent change of one slot this tick, packed (16 bytes) apart from ent_t:
 * the per-viewer loop of emit_frame reads only these. */
typedef struct {
    uint8_t len, form; /* body length (0: unchanged) and form */
    uint8_t body[WY_GW_BODY_MAX];
} wire_t;

static bool wire_moved(const wire_t *w)
{
    return w->form < 2 ? w->len > 0 : (w->body[0] & 1) != 0;
}

typedef struct {
    bool used;
    uint64_t conn;
    uint32_t slot;
    game_aoi_view_t view;
    game_input_t *inq; /* max_inputs */
    uint32_t ninq;
    bool corrected, reset;
    uint32_t next_free;
} player_t;

/* The statistics as relaxed atomics, in the layout of game_partition_stats_t (all uint64_t). */
#define NSTATS      (sizeof(game_partition_stats_t) / sizeof(uint64_t))
#define STAT(field) (offsetof(game_partition_stats_t, field) / sizeof(uint64_t))
typedef struct {
    _Atomic uint64_t v[NSTATS];
} stats_t;

struct game_partition {
    game_partition_opts_t o;
    double ghost_margin;
    game_aoi_t aoi;
    ent_t *ents;
    wire_t *wire; /* per slot: this tick's change (move_and_encode) */
    uint32_t *free_slots, nfree;
    uint32_t *map; /* open addressing id -> slot, mask + 1 buckets */
    uint32_t mask;
    player_t *players;
    uint32_t free_player;
    game_aoi_ref_t *view_pool;
    game_input_t *input_pool;
    /* scratch of one player's frame */
    game_aoi_ref_t *entered_refs, *left_refs;
    uint8_t *sec_entered, *sec_changed, *sec_left;
    size_t cap_entered, cap_changed, cap_left;
    /* hand-overs of the last tick */
    game_handover_t *hand;
    uint32_t nhand;
    uint32_t *hand_view_pool;
    uint32_t import_stamp;
    /* spawns and despawns since the last change batch */
    game_change_t *log;
    uint32_t nlog;
    uint64_t log_dropped, log_from;
    uint32_t nghosts, nplayers;
    uint32_t room[2]; /* hand-overs allowed next tick: west, east */
    uint32_t nowned[GAME_KIND_COUNT];
    stats_t st;
};

static void stat_add(game_partition_t *p, size_t i, uint64_t v)
{
    atomic_fetch_add_explicit(&p->st.v[i], v, memory_order_relaxed);
}

/* ---------------------------------------------------------------- id map */

static uint32_t hash_id(uint32_t id)
{
    id ^= id >> 16;
    id *= 0x7feb352d;
    id ^= id >> 15;
    id *= 0x846ca68b;
    id ^= id >> 16;
    return id;
}

static uint32_t map_find(const game_partition_t *p, uint32_t id)
{
    for (uint32_t i = hash_id(id) & p->mask;; i = (i + 1) & p->mask) {
        uint32_t s = p->map[i];
        if (s == NONE)
            return NONE;
        if (p->ents[s].id == id)
            return s;
    }
}

static void map_put(game_partition_t *p, uint32_t slot)
{
    uint32_t i = hash_id(p->ents[slot].id) & p->mask;
    while (p->map[i] != NONE)
        i = (i + 1) & p->mask;
    p->map[i] = slot;
}

/* Linear probing deletion by backward shift (no tombstones). */
static void map_del(game_partition_t *p, uint32_t id)
{
    uint32_t i = hash_id(id) & p->mask;
    while (p->map[i] != NONE && p->ents[p->map[i]].id != id)
        i = (i + 1) & p->mask;
    if (p->map[i] == NONE)
        return;
    uint32_t j = i;
    for (;;) {
        p->map[i] = NONE;
        for (;;) {
            j = (j + 1) & p->mask;
            if (p->map[j] == NONE)
                return;
            uint32_t k = hash_id(p->ents[p->map[j]].id) & p->mask;
            /* move map[j] into the hole at i unless its home k lies cyclically in (i, j] */
            if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
                continue;
            break;
        }
        p->map[i] = p->map[j];
        i = j;
    }
}

/* ---------------------------------------------------------------- life */

void game_partition_opts_default(game_partition_opts_t *o, const game_walk_t *walk)
{
    *o = (game_partition_opts_t){
        .index = 0,
        .count = 1,
        .x0 = 0,
        .x1 = walk->width,
        .walk = *walk,
        .view_radius = 64,
        .view_margin = 8,
        .max_entities = 4096,
        .max_players = 2048,
        .max_visible = 256,
        .max_inputs = 8,
        .max_handovers = 64,
    };
    game_move_rules_default(&o->rules);
}

int game_partition_new(const game_partition_opts_t *o, game_partition_t **out, const char **err)
{
    if (o->max_entities == 0 || o->max_entities > (1u << 22) || o->max_players == 0 ||
        o->max_players > o->max_entities || o->max_visible == 0 || o->max_visible > 65536 ||
        o->max_inputs == 0 || o->max_inputs > 1024 || o->max_handovers == 0 || o->count == 0 ||
        o->index >= o->count || !(o->walk.width > 0) || !(o->walk.height > 0) || !(o->x0 < o->x1) ||
        o->on_frame == NULL) {
        *err = "partition: bad options (sizes out of bounds, empty strip or no frame callback)";
        return WY_EINVAL;
    }
    game_partition_t *p = wy_calloc(1, sizeof *p);
    p->o = *o;
    p->ghost_margin = o->view_radius + o->view_margin;
    /* The grid covers the strip and the ghost margins on both sides. */
    double gx0 = fmax(0, o->x0 - p->ghost_margin),
           gx1 = fmin(o->walk.width, o->x1 + p->ghost_margin);
    int rc = game_aoi_init(&p->aoi, gx0, 0, gx1 - gx0, o->walk.height, o->view_radius,
                           o->view_margin, o->max_entities, err);
    if (rc != WY_OK) {
        wy_free(p);
        return rc;
    }
    p->ents = wy_calloc(o->max_entities, sizeof *p->ents);
    p->wire = wy_calloc(o->max_entities, sizeof *p->wire);
    p->free_slots = wy_malloc(o->max_entities * sizeof *p->free_slots);
    for (uint32_t i = 0; i < o->max_entities; i++)
        p->free_slots[i] = o->max_entities - 1 - i;
    p->nfree = o->max_entities;
    uint32_t buckets = 1;
    while (buckets < o->max_entities * 2)
        buckets <<= 1;
    p->mask = buckets - 1;
    p->map = wy_malloc(buckets * sizeof *p->map);
    memset(p->map, 0xff, buckets * sizeof *p->map);

    p->players = wy_calloc(o->max_players, sizeof *p->players);
    p->view_pool = wy_malloc((size_t)o->max_players * o->max_visible * sizeof *p->view_pool);
    p->input_pool = wy_malloc((size_t)o->max_players * o->max_inputs * sizeof *p->input_pool);
    for (uint32_t i = 0; i < o->max_players; i++) {
        player_t *pl = &p->players[i];
        pl->view = (game_aoi_view_t){.refs = p->view_pool + (size_t)i * o->max_visible,
                                     .cap = o->max_visible};
        pl->inq = p->input_pool + (size_t)i * o->max_inputs;
        pl->next_free = i + 1 < o->max_players ? i + 1 : NONE;
    }
    p->free_player = 0;

    p->entered_refs = wy_malloc(o->max_visible * sizeof *p->entered_refs);
    p->left_refs = wy_malloc(o->max_visible * sizeof *p->left_refs);
    /* Sections sized so that a full view always fits: no frame is ever truncated. */
    p->cap_entered = (size_t)o->max_visible * (KEY_MAX + WY_GW_ENTER_MAX);
    p->cap_changed = (size_t)o->max_visible * (KEY_MAX + WY_GW_BODY_MAX);
    p->cap_left = (size_t)o->max_visible * KEY_MAX;
    p->sec_entered = wy_malloc(p->cap_entered);
    p->sec_changed = wy_malloc(p->cap_changed);
    p->sec_left = wy_malloc(p->cap_left);

    p->log = wy_malloc(o->max_entities * sizeof *p->log);
    p->room[0] = p->room[1] = o->max_handovers;
    p->hand = wy_calloc(o->max_handovers, sizeof *p->hand);
    p->hand_view_pool = wy_malloc((size_t)o->max_handovers * o->max_visible * sizeof(uint32_t));
    for (uint32_t i = 0; i < o->max_handovers; i++)
        p->hand[i].view_ids = p->hand_view_pool + (size_t)i * o->max_visible;
    *out = p;
    return WY_OK;
}

void game_partition_free(game_partition_t *p)
{
    if (p == NULL)
        return;
    game_aoi_free(&p->aoi);
    wy_free(p->ents);
    wy_free(p->wire);
    wy_free(p->free_slots);
    wy_free(p->map);
    wy_free(p->players);
    wy_free(p->view_pool);
    wy_free(p->input_pool);
    wy_free(p->entered_refs);
    wy_free(p->left_refs);
    wy_free(p->sec_entered);
    wy_free(p->sec_changed);
    wy_free(p->sec_left);
    wy_free(p->hand);
    wy_free(p->hand_view_pool);
    wy_free(p->log);
    wy_free(p);
}

/* ---------------------------------------------------------------- entities */

static void ent_state(ent_t *e)
{
    e->now = (wy_gw_entity_t){
        .id = e->id,
        .kind = e->kind,
        .mode = e->mv.mode,
        .qx = wy_gw_quantise(e->mv.x),
        .qy = wy_gw_quantise(e->mv.y),
    };
}

static uint32_t slot_alloc(game_partition_t *p, uint32_t id, uint8_t kind)
{
    if (p->nfree == 0)
        return NONE;
    uint32_t s = p->free_slots[--p->nfree];
    ent_t *e = &p->ents[s];
    *e = (ent_t){.id = id, .used = true, .kind = kind, .player = NONE};
    map_put(p, s);
    return s;
}

static void slot_free(game_partition_t *p, uint32_t s)
{
    ent_t *e = &p->ents[s];
    map_del(p, e->id);
    game_aoi_remove(&p->aoi, s);
    if (e->ghost)
        p->nghosts--;
    else if (e->kind < GAME_KIND_COUNT)
        p->nowned[e->kind]--;
    e->used = false;
    p->free_slots[p->nfree++] = s;
}

static uint32_t player_alloc(game_partition_t *p, uint32_t slot, uint64_t conn)
{
    uint32_t i = p->free_player;
    if (i == NONE)
        return NONE;
    player_t *pl = &p->players[i];
    p->free_player = pl->next_free;
    pl->used = true;
    pl->conn = conn;
    pl->slot = slot;
    pl->view.n = 0;
    pl->ninq = 0;
    pl->corrected = false;
    pl->reset = true; /* the first frame holds the whole view */
    p->nplayers++;
    return i;
}

static void player_free(game_partition_t *p, uint32_t i)
{
    player_t *pl = &p->players[i];
    pl->used = false;
    pl->next_free = p->free_player;
    p->free_player = i;
    p->nplayers--;
}

static void log_change(game_partition_t *p, uint8_t op, const ent_t *e)
{
    if (p->nlog >= p->o.max_entities) {
        p->log_dropped++;
        return;
    }
    p->log[p->nlog++] = (game_change_t){op, e->kind, e->id, e->now.qx, e->now.qy};
}

int game_partition_add(game_partition_t *p, uint32_t id, uint8_t kind, double x, double y,
                       uint64_t conn, uint64_t now_ns)
{
    if (kind == 0 || kind >= GAME_KIND_COUNT || game_walk_blocked(&p->o.walk, x, y))
        return WY_EINVAL;
    if (map_find(p, id) != NONE)
        return WY_EEXIST;
    if (p->nfree == 0 || (conn != 0 && p->free_player == NONE))
        return WY_ELIMIT;
    uint32_t s = slot_alloc(p, id, kind);
    ent_t *e = &p->ents[s];
    game_mover_init(&e->mv, &p->o.rules, x, y, now_ns);
    if (conn != 0)
        e->player = player_alloc(p, s, conn);
    p->nowned[kind]++;
    game_aoi_place(&p->aoi, s, id, x, y);
    ent_state(e);
    e->sent = e->now;
    log_change(p, GAME_CHANGE_SPAWN, e);
    return WY_OK;
}

int game_partition_remove(game_partition_t *p, uint32_t id)
{
    uint32_t s = map_find(p, id);
    if (s == NONE)
        return WY_ENOTFOUND;
    if (p->ents[s].ghost)
        return WY_ESTATE;
    if (p->ents[s].player != NONE)
        player_free(p, p->ents[s].player);
    log_change(p, GAME_CHANGE_DESPAWN, &p->ents[s]);
    slot_free(p, s);
    return WY_OK;
}

int game_partition_input(game_partition_t *p, uint32_t id, const game_input_t *in)
{
    uint32_t s = map_find(p, id);
    if (s == NONE)
        return WY_ENOTFOUND;
    ent_t *e = &p->ents[s];
    if (e->ghost)
        return WY_ESTATE;
    if (e->player == NONE)
        return WY_ENOTFOUND;
    player_t *pl = &p->players[e->player];
    if (pl->ninq >= p->o.max_inputs) {
        stat_add(p, STAT(refused[GAME_REFUSE_FLOOD]), 1);
        pl->corrected = true;
        return WY_ELIMIT;
    }
    pl->inq[pl->ninq++] = *in;
    return WY_OK;
}

int game_partition_position(const game_partition_t *p, uint32_t id, double *x, double *y,
                            bool *ghost)
{
    uint32_t s = map_find(p, id);
    if (s == NONE)
        return WY_ENOTFOUND;
    *x = p->ents[s].mv.x;
    *y = p->ents[s].mv.y;
    if (ghost)
        *ghost = p->ents[s].ghost;
    return WY_OK;
}

/* ---------------------------------------------------------------- the tick */

/* What one tick counted, published once at its end (counters added, gauges stored). */
typedef game_partition_stats_t tick_counts_t;

static void publish(game_partition_t *p, tick_counts_t *c)
{
    c->ticks = 1;
    c->players = p->nplayers;
    c->ghosts = p->nghosts;
    for (int k = 0; k < GAME_KIND_COUNT; k++)
        c->entities[k] = p->nowned[k];
    uint64_t v[NSTATS];
    memcpy(v, c, sizeof v);
    for (size_t i = 0; i < NSTATS; i++) {
        if (i >= STAT(players)) /* the gauges are last */
            atomic_store_explicit(&p->st.v[i], v[i], memory_order_relaxed);
        else if (v[i] != 0)
            stat_add(p, i, v[i]);
    }
}

static void apply_inputs(game_partition_t *p, uint64_t now_ns, tick_counts_t *c)
{
    for (uint32_t i = 0; i < p->o.max_players; i++) {
        player_t *pl = &p->players[i];
        if (!pl->used || pl->ninq == 0)
            continue;
        ent_t *e = &p->ents[pl->slot];
        for (uint32_t k = 0; k < pl->ninq; k++) {
            game_refuse_t why;
            if (game_move_accept(&p->o.rules, &p->o.walk, &e->mv, &pl->inq[k], now_ns, &why) ==
                WY_OK) {
                c->inputs_accepted++;
            } else {
                c->refused[why]++;
                pl->corrected = true;
            }
        }
        pl->ninq = 0;
    }
}

static void move_and_encode(game_partition_t *p, double dt)
{
    for (uint32_t s = 0; s < p->o.max_entities; s++) {
        ent_t *e = &p->ents[s];
        if (!e->used)
            continue;
        if (!e->ghost && game_move_step(&p->o.walk, &e->mv, dt))
            game_aoi_place(&p->aoi, s, e->id, e->mv.x, e->mv.y);
        ent_state(e);
        unsigned form;
        wire_t *w = &p->wire[s];
        w->len = (uint8_t)wy_gw_change_body(&e->sent, &e->now, w->body, &form);
        w->form = (uint8_t)form;
        e->enter_len = (uint8_t)wy_gw_enter_body(&e->now, e->enter);
    }
}

static void emit_frame(game_partition_t *p, player_t *pl, uint64_t tick, tick_counts_t *c)
{
    ent_t *self = &p->ents[pl->slot];
    game_aoi_diff_t d = {.entered = p->entered_refs, .left = p->left_refs};
    game_aoi_update(&p->aoi, self->mv.x, self->mv.y, &pl->view, &d);
    c->aoi_dropped += d.dropped;

    wy_gw_section_t se, sc, sl;
    wy_gw_section_init(&se, p->sec_entered, p->cap_entered);
    wy_gw_section_init(&sc, p->sec_changed, p->cap_changed);
    wy_gw_section_init(&sl, p->sec_left, p->cap_left);
    uint32_t moves = 0;
    size_t move_bytes = 0;
    if (pl->reset) {
        /* The whole view in full: it replaces the client's mirror. */
        for (uint32_t i = 0; i < pl->view.n; i++) {
            const ent_t *e = &p->ents[pl->view.refs[i].slot];
            wy_gw_put_entered(&se, e->id, e->enter, e->enter_len);
        }
        c->entered += pl->view.n;
    } else {
        /* view and entered are both sorted: walk them together to skip the new ones. */
        uint32_t j = 0;
        for (uint32_t i = 0; i < pl->view.n; i++) {
            game_aoi_ref_t r = pl->view.refs[i];
            if (j < d.nentered && d.entered[j].id == r.id) {
                const ent_t *e = &p->ents[r.slot];
                wy_gw_put_entered(&se, r.id, e->enter, e->enter_len);
                j++;
                continue;
            }
            const wire_t *w = &p->wire[r.slot];
            if (w->len == 0)
                continue;
            size_t before = sc.len;
            wy_gw_put_changed(&sc, r.id, w->form, w->body, w->len);
            if (wire_moved(w)) {
                moves++;
                move_bytes += sc.len - before;
            }
        }
        for (uint32_t i = 0; i < d.nleft; i++)
            wy_gw_put_left(&sl, d.left[i].id);
        c->entered += d.nentered;
        c->left += d.nleft;
    }

    game_frame_t f = {
        .conn = pl->conn,
        .entity = self->id,
        .tick = tick,
        .ack = self->mv.last_seq,
        .reset = pl->reset,
        .corrected = pl->corrected,
        .cqx = self->now.qx,
        .cqy = self->now.qy,
        .entered = se.buf,
        .nentered = se.len,
        .changed = sc.buf,
        .nchanged = sc.len,
        .left = sl.buf,
        .nleft = sl.len,
        .moves = moves,
    };
    if (!p->o.on_frame(p->o.ud, &f)) {
        pl->reset = true; /* lost: the next frame carries the whole view */
        c->frames_lost++;
        return;
    }
    pl->reset = pl->corrected = false;
    c->frames++;
    c->bytes += se.len + sc.len + sl.len;
    c->moves += moves;
    c->move_bytes += move_bytes;
}

/* Owned entities outside the strip go to the neighbour on that side. */
static void decide_handovers(game_partition_t *p, tick_counts_t *c)
{
    p->nhand = 0;
    for (uint32_t s = 0; s < p->o.max_entities && p->nhand < p->o.max_handovers; s++) {
        ent_t *e = &p->ents[s];
        if (!e->used || e->ghost)
            continue;
        uint32_t to;
        if (e->mv.x < p->o.x0 && p->o.index > 0 && p->room[0] > 0) {
            to = p->o.index - 1;
            p->room[0]--;
        } else if (e->mv.x >= p->o.x1 && p->o.index + 1 < p->o.count && p->room[1] > 0) {
            to = p->o.index + 1;
            p->room[1]--;
        } else {
            continue;
        }
        game_handover_t *h = &p->hand[p->nhand++];
        h->from = p->o.index;
        h->to = to;
        h->id = e->id;
        h->kind = e->kind;
        h->mover = e->mv;
        h->conn = 0;
        h->nview = 0;
        if (e->player != NONE) {
            player_t *pl = &p->players[e->player];
            h->conn = pl->conn;
            for (uint32_t i = 0; i < pl->view.n; i++)
                h->view_ids[h->nview++] = pl->view.refs[i].id;
            player_free(p, e->player);
            e->player = NONE;
        }
        /* It stays here as a ghost until the new owner's border batches take over. */
        p->nowned[e->kind]--;
        e->ghost = true;
        e->owner = to;
        e->grace = GHOST_GRACE;
        p->nghosts++;
        c->handovers_out++;
    }
    p->room[0] = p->room[1] = p->o.max_handovers;
}

void game_partition_tick(game_partition_t *p, uint64_t tick, uint64_t now_ns, double dt)
{
    tick_counts_t c = {0};
    apply_inputs(p, now_ns, &c);
    move_and_encode(p, dt);
    for (uint32_t i = 0; i < p->o.max_players; i++)
        if (p->players[i].used)
            emit_frame(p, &p->players[i], tick, &c);
    for (uint32_t s = 0; s < p->o.max_entities; s++) {
        ent_t *e = &p->ents[s];
        if (!e->used)
            continue;
        if (!e->ghost && (e->now.qx != e->sent.qx || e->now.qy != e->sent.qy))
            e->moved = true;
        e->sent = e->now;
    }
    decide_handovers(p, &c);

    publish(p, &c);
}

void game_partition_resync(game_partition_t *p)
{
    for (uint32_t i = 0; i < p->o.max_players; i++)
        if (p->players[i].used)
            p->players[i].reset = true;
}

/* ---------------------------------------------------------------- borders */

void game_partition_handover_room(game_partition_t *p, uint32_t west, uint32_t east)
{
    p->room[0] = west < p->o.max_handovers ? west : p->o.max_handovers;
    p->room[1] = east < p->o.max_handovers ? east : p->o.max_handovers;
}

uint32_t game_partition_owner(const game_partition_t *p, uint32_t id)
{
    uint32_t s = map_find(p, id);
    if (s == NONE)
        return NONE;
    return p->ents[s].ghost ? p->ents[s].owner : p->o.index;
}

void game_partition_export_border(game_partition_t *p, uint32_t to, game_border_t *out)
{
    out->from = p->o.index;
    out->n = 0;
    bool west = to + 1 == p->o.index;
    for (uint32_t s = 0; s < p->o.max_entities && out->n < out->cap; s++) {
        const ent_t *e = &p->ents[s];
        if (!e->used || e->ghost)
            continue;
        bool near =
            west ? e->mv.x < p->o.x0 + p->ghost_margin : e->mv.x >= p->o.x1 - p->ghost_margin;
        if (near)
            out->ghosts[out->n++] = (game_ghost_t){e->id, e->kind, e->mv.mode, e->mv.x, e->mv.y};
    }
}

void game_partition_import_border(game_partition_t *p, const game_border_t *b)
{
    uint32_t stamp = ++p->import_stamp;
    for (uint32_t i = 0; i < b->n; i++) {
        const game_ghost_t *g = &b->ghosts[i];
        uint32_t s = map_find(p, g->id);
        if (s == NONE) {
            s = slot_alloc(p, g->id, g->kind);
            if (s == NONE)
                break; /* pool full: the rest are not seen across the border this time */
            ent_t *e = &p->ents[s];
            e->ghost = true;
            e->mv.x = g->x;
            e->mv.y = g->y;
            ent_state(e);
            e->sent = e->now;
            p->nghosts++;
        }
        ent_t *e = &p->ents[s];
        if (!e->ghost)
            continue; /* ours now (a hand-over the sender has not seen yet) */
        e->owner = b->from;
        e->seen = stamp;
        e->kind = g->kind;
        e->mv.mode = g->mode;
        e->mv.x = g->x;
        e->mv.y = g->y;
        game_aoi_place(&p->aoi, s, e->id, g->x, g->y);
    }
    for (uint32_t s = 0; s < p->o.max_entities; s++) {
        ent_t *e = &p->ents[s];
        if (!e->used || !e->ghost || e->owner != b->from || e->seen == stamp)
            continue;
        if (e->grace > 0)
            e->grace--;
        else
            slot_free(p, s);
    }
}

uint32_t game_partition_handovers(game_partition_t *p, const game_handover_t **out)
{
    *out = p->hand;
    return p->nhand;
}

static uint32_t find_cb(void *ud, uint32_t id)
{
    return map_find(ud, id);
}

int game_partition_handover_in(game_partition_t *p, const game_handover_t *h, uint64_t now_ns)
{
    (void)now_ns;
    uint32_t s = map_find(p, h->id);
    bool fresh = s == NONE;
    if (s != NONE && !p->ents[s].ghost)
        return WY_EEXIST;
    if (s == NONE) {
        s = slot_alloc(p, h->id, h->kind);
        if (s == NONE || (h->conn != 0 && p->free_player == NONE)) {
            if (s != NONE)
                slot_free(p, s);
            stat_add(p, STAT(lost), 1);
            return WY_ELIMIT;
        }
        p->nghosts++; /* counted as a ghost for the conversion below */
        p->ents[s].ghost = true;
    } else if (h->conn != 0 && p->free_player == NONE) {
        stat_add(p, STAT(lost), 1);
        return WY_ELIMIT;
    }
    ent_t *e = &p->ents[s];
    e->ghost = false;
    p->nghosts--;
    e->kind = h->kind;
    e->mv = h->mover;
    p->nowned[e->kind]++;
    game_aoi_place(&p->aoi, s, e->id, e->mv.x, e->mv.y);
    ent_state(e);
    if (fresh)
        e->sent = e->now; /* new here: viewers get it whole (entered) */
    if (h->conn != 0) {
        uint32_t i = player_alloc(p, s, h->conn);
        player_t *pl = &p->players[i];
        e->player = i;
        for (uint32_t k = 0; k < h->nview && k < pl->view.cap; k++)
            pl->view.refs[k] = (game_aoi_ref_t){h->view_ids[k], 0, 0};
        pl->view.n = h->nview < pl->view.cap ? h->nview : pl->view.cap;
        game_aoi_view_rebase(&p->aoi, &pl->view, find_cb, p);
    }
    stat_add(p, STAT(handovers_in), 1);
    return WY_OK;
}

/* ---------------------------------------------------------------- change batches */

void game_partition_changes(game_partition_t *p, uint64_t tick, game_changes_t *out)
{
    out->n = 0;
    out->tick_from = p->log_from;
    out->tick_to = tick;
    out->dropped = p->log_dropped;
    for (uint32_t i = 0; i < p->nlog; i++) {
        if (out->n == out->cap) {
            out->dropped += p->nlog - i;
            break;
        }
        out->changes[out->n++] = p->log[i];
    }
    for (uint32_t s = 0; s < p->o.max_entities; s++) {
        ent_t *e = &p->ents[s];
        if (!e->used || !e->moved)
            continue;
        e->moved = false;
        if (e->ghost)
            continue;
        if (out->n == out->cap) {
            out->dropped++;
            continue;
        }
        out->changes[out->n++] =
            (game_change_t){GAME_CHANGE_MOVE, e->kind, e->id, e->now.qx, e->now.qy};
    }
    p->nlog = 0;
    p->log_dropped = 0;
    p->log_from = tick + 1;
}

/* ---------------------------------------------------------------- statistics */

void game_partition_stats(const game_partition_t *p, game_partition_stats_t *out)
{
    uint64_t v[NSTATS] = {0};
    for (size_t i = 0; i < NSTATS; i++)
        v[i] = atomic_load_explicit(&p->st.v[i], memory_order_relaxed);
    memcpy(out, v, sizeof v);
}
