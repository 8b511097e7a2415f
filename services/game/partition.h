/* wy-game's partition: the simulation of one region of one zone instance. A small zone is one
 * partition; a large one is split into vertical strips (regions), each a partition that may
 * tick on its own worker thread.
 *
 * One tick (game_partition_tick): apply the inputs queued since the last tick (refused ones are
 * counted by reason and corrected), move every owned entity, encode each entity's change once
 * (wy_gamewire: viewer-independent), update each player's area of interest, and emit exactly
 * one frame per player (entered = full state, changed = only changed fields, left).
 *
 * Borders: each partition exports the entities it owns within `ghost margin` (view radius +
 * margin) of a border (game_partition_export_border); its neighbour imports them as read-only
 * ghosts, so players near the border see across it. An owned entity that walks out of the
 * strip is handed over (game_partition_take_handovers -> game_partition_handover_in on the
 * neighbour): the ghost slot there becomes the owned entity, the old owner keeps a ghost, and a
 * moving player gets one reset frame from its new partition (its full view; the entities stay
 * visible: the client does not notice).
 *
 * Memory: everything is allocated by game_partition_new, sized by the options; ticks, inputs,
 * ghosts and hand-overs never allocate (full pools refuse and count).
 *
 * Threads: a partition belongs to one thread (its worker): every call but
 * game_partition_stats (any thread: relaxed atomics) must come from it. */
#ifndef GAME_PARTITION_H
#define GAME_PARTITION_H

#include "aoi.h"
#include "move.h"
#include "wy_gamewire.h"

#include <stdatomic.h>

enum { GAME_KIND_PLAYER = 1, GAME_KIND_NPC = 2, GAME_KIND_COUNT = 3 };

/* One player's frame of one tick, handed to opts.on_frame (valid only during the call). */
typedef struct {
    uint64_t conn;   /* the player's connection id (given at game_partition_add) */
    uint32_t entity; /* the player's entity id */
    uint64_t tick;
    uint32_t ack;     /* last input sequence number applied (or refused) */
    bool reset;       /* the sections replace the client's whole mirror */
    bool corrected;   /* an input was refused: snap to (cqx, cqy) */
    int32_t cqx, cqy; /* the player's quantised position (always set) */
    const uint8_t *entered, *changed, *left;
    size_t nentered, nchanged, nleft;
    uint32_t moves; /* changed records that moved an entity (for the bytes-per-update figure) */
} game_frame_t;

/* Returns true when the frame was taken; false (no room to carry it) makes the player's next
 * frame a reset, so its mirror never misses a change. */
typedef bool (*game_frame_cb)(void *ud, const game_frame_t *f);

typedef struct {
    uint32_t index;   /* this partition's number in its zone instance (0 = west-most) */
    uint32_t count;   /* partitions of the zone instance (1 = not split) */
    double x0, x1;    /* owned strip: x0 <= x < x1 */
    game_walk_t walk; /* the zone's size and grid (borrowed; outlives the partition) */
    game_move_rules_t rules;
    double view_radius;    /* metres, > 0 */
    double view_margin;    /* hysteresis, metres, >= 0 */
    uint32_t max_entities; /* owned + ghosts */
    uint32_t max_players;
    uint32_t max_visible;   /* per player */
    uint32_t max_inputs;    /* queued per player between two ticks (more: refused as flood) */
    uint32_t max_handovers; /* per tick */
    game_frame_cb on_frame;
    void *ud;
} game_partition_opts_t;

/* Sane defaults for a zone w x h with grid `walk` (radius 64 m, margin 8 m, 4096 entities,
 * 2048 players, 256 visible, 8 inputs per tick, 64 hand-overs). */
void game_partition_opts_default(game_partition_opts_t *o, const game_walk_t *walk);

typedef struct game_partition game_partition_t;

/* Creates a partition. WY_EINVAL with *err for bad options. */
int game_partition_new(const game_partition_opts_t *o, game_partition_t **out, const char **err);
void game_partition_free(game_partition_t *p);

/* Adds an owned entity at (x, y) (walkable, inside the zone). A player (conn != 0) gets frames;
 * kind is GAME_KIND_*. WY_EEXIST (id known here), WY_EINVAL (position), WY_ELIMIT (pool full). */
int game_partition_add(game_partition_t *p, uint32_t id, uint8_t kind, double x, double y,
                       uint64_t conn, uint64_t now_ns);
/* Removes an owned entity (leave, despawn); viewers get it in `left` next tick. WY_ENOTFOUND,
 * WY_ESTATE if it is a ghost here. */
int game_partition_remove(game_partition_t *p, uint32_t id);

/* Queues a player's input for the next tick. WY_OK; WY_ENOTFOUND (no such player here);
 * WY_ESTATE (a ghost here: the player was handed over, forward to its owner); WY_ELIMIT (its
 * queue is full: counted as a flood refusal). */
int game_partition_input(game_partition_t *p, uint32_t id, const game_input_t *in);

/* One tick at now_ns, simulating dt seconds (period * (1 + skipped)). */
void game_partition_tick(game_partition_t *p, uint64_t tick, uint64_t now_ns, double dt);

/* Every player's next frame is a reset (frames emitted were lost on their way). */
void game_partition_resync(game_partition_t *p);

/* ---- borders and hand-over (between neighbouring partitions of one zone instance) ---- */

typedef struct {
    uint32_t id;
    uint8_t kind, mode;
    double x, y;
} game_ghost_t;

/* A batch of border entities from one partition to a neighbour (storage: the caller's). */
typedef struct {
    uint32_t from; /* sender's index */
    game_ghost_t *ghosts;
    uint32_t n, cap;
} game_border_t;

/* A player or NPC handed over; view_ids is storage for max_visible ids (the caller's). */
typedef struct {
    uint32_t from, to; /* partition indexes */
    uint32_t id;
    uint8_t kind;
    uint64_t conn; /* 0: not a player */
    uint64_t tick; /* the tick of the old owner's last frame for the player: the new owner
                      emits none for a tick <= this (one frame per tick across the move) */
    game_mover_t mover;
    uint32_t *view_ids, nview;
} game_handover_t;

/* Fills out with the owned entities within the ghost margin of the border towards neighbour
 * `to` (index - 1 or index + 1); at most out->cap (the rest wait a tick). */
void game_partition_export_border(game_partition_t *p, uint32_t to, game_border_t *out);
/* Makes b's entities ghosts here (created, updated); ghosts of b->from not in b are removed
 * (after a grace of a few batches for ones just handed over). */
void game_partition_import_border(game_partition_t *p, const game_border_t *b);
/* How many hand-overs the next tick may decide towards the west (index - 1) and east
 * neighbours (default: max_handovers each); 0 while the carrier to it is busy: an entity past
 * the border then stays owned here one more tick. */
void game_partition_handover_room(game_partition_t *p, uint32_t west, uint32_t east);
/* The partition owning entity id as far as this one knows: its own index, a neighbour's (a
 * ghost here) or UINT32_MAX (unknown). */
uint32_t game_partition_owner(const game_partition_t *p, uint32_t id);
/* The hand-overs decided in the last tick (entities that left the strip); valid until the next
 * tick. Their view_ids point into the partition's own pool. */
uint32_t game_partition_handovers(game_partition_t *p, const game_handover_t **out);
/* Takes ownership of an entity handed over by a neighbour. WY_ELIMIT when a pool is full (the
 * entity is lost: counted, and the caller must tell its player). */
int game_partition_handover_in(game_partition_t *p, const game_handover_t *h, uint64_t now_ns);

/* ---- the object-change stream (spawn, despawn, move diffs for wy.stats) ---- */

enum { GAME_CHANGE_MOVE = 0, GAME_CHANGE_SPAWN = 1, GAME_CHANGE_DESPAWN = 2 };

typedef struct {
    uint8_t op, kind;
    uint32_t id;
    int32_t qx, qy; /* 1/16 m */
} game_change_t;

/* A batch of changes; storage (changes, cap) is the caller's. */
typedef struct {
    uint64_t tick_from, tick_to;
    game_change_t *changes;
    uint32_t n, cap;
    uint64_t dropped; /* changes lost: the log or this batch was full */
} game_changes_t;

/* Moves the changes since the last call into out: the spawns and despawns in order, then one
 * MOVE (the latest position) per owned entity that moved; hand-overs are not changes. Called
 * once per batch interval on the partition's thread (O(entities), no allocation); the caller
 * encodes and publishes the batch elsewhere. */
void game_partition_changes(game_partition_t *p, uint64_t tick, game_changes_t *out);

/* ---- statistics (any thread) ---- */

typedef struct {
    uint64_t ticks, inputs_accepted, refused[GAME_REFUSE_COUNT];
    uint64_t frames, bytes;     /* frames emitted and their section bytes */
    uint64_t frames_lost;       /* frames the callback could not take (player resynced) */
    uint64_t moves, move_bytes; /* moving-entity updates and their bytes (key + body) */
    uint64_t entered, left, aoi_dropped, handovers_out, handovers_in, lost;
    uint64_t players, ghosts, entities[GAME_KIND_COUNT]; /* gauges: owned entities by kind */
} game_partition_stats_t; /* only uint64_t fields; the gauges (players on) last */

void game_partition_stats(const game_partition_t *p, game_partition_stats_t *out);

/* The owned entity's position (tests, views); WY_ENOTFOUND. Partition thread. */
int game_partition_position(const game_partition_t *p, uint32_t id, double *x, double *y,
                            bool *ghost);

#endif
