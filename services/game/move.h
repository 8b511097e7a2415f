/* wy-game's movement rules: server-authoritative. A client sends inputs (sequence number,
 * direction or target point, speed mode, optionally its predicted position), never positions
 * to adopt; the partition checks each input (game_move_accept) at the start of a tick and
 * integrates every mover (game_move_step) with the speed limit, the zone's bounds and its
 * walkable grid. A refused input is counted by reason, stops the mover and asks for a
 * correction (the client snaps to the server's position in the next frame).
 *
 * Pure functions over caller-owned structs; no allocation, no globals. */
#ifndef GAME_MOVE_H
#define GAME_MOVE_H

#include "wy_core.h"

#include <stdbool.h>
#include <stdint.h>

/* The zone's walkable grid (a view of the zone file's grid; services/world/README.md). */
typedef struct {
    double width, height; /* metres */
    double cell;          /* metres per cell side */
    uint32_t cols, rows;
    const uint8_t *blocked; /* rows * cols, 1 = blocked, row-major from the north; NULL = none */
} game_walk_t;

/* True when (x, y) is outside the zone or in a blocked cell. */
bool game_walk_blocked(const game_walk_t *w, double x, double y);

/* Why an input was refused (labels of wy_game_inputs_refused_total{reason}). */
typedef enum {
    GAME_REFUSE_INVALID = 0, /* malformed: unknown mode, non-finite numbers */
    GAME_REFUSE_SEQ,         /* sequence number not above the last one (replay, reorder) */
    GAME_REFUSE_FLOOD,       /* more inputs than the rate allows */
    GAME_REFUSE_SPEED,       /* asked for more speed than its mode allows (speed hack) */
    GAME_REFUSE_TELEPORT,    /* its predicted position is too far from the server's */
    GAME_REFUSE_BLOCKED,     /* target or predicted position outside or in a blocked cell */
    GAME_REFUSE_COUNT
} game_refuse_t;

const char *game_refuse_name(game_refuse_t r);

enum { GAME_MODE_IDLE = 0, GAME_MODE_WALK = 1, GAME_MODE_RUN = 2 };

typedef struct {
    uint32_t seq;    /* strictly increasing per player */
    uint8_t mode;    /* GAME_MODE_*; IDLE stops */
    bool has_target; /* walk to (tx, ty) and stop there; else walk towards dir */
    double tx, ty;
    uint16_t dir; /* angle: 0 east, 16384 south, 32768 west, 49152 north */
    float speed;  /* m/s asked for, 0 = the mode's speed; never above it */
    bool has_pos; /* the client's predicted position when it sent the input */
    double px, py;
} game_input_t;

typedef struct {
    double walk_speed, run_speed; /* m/s, > 0 */
    double pos_tolerance;         /* metres: a predicted position farther off is a teleport */
    double input_rate;            /* inputs per second per player, sustained */
    double input_burst;           /* inputs allowed at once (bucket size), >= 1 */
} game_move_rules_t;

/* The defaults: walk 2.5 m/s, run 6 m/s, tolerance 4 m, 30 inputs/s with bursts of 10. */
void game_move_rules_default(game_move_rules_t *r);

/* One mover's state (owned by its partition). */
typedef struct {
    double x, y;
    uint8_t mode;
    bool has_target;
    double tx, ty;
    double ux, uy; /* unit direction when no target */
    double speed;  /* m/s while moving */
    uint32_t last_seq;
    double tokens; /* flood bucket */
    uint64_t tokens_ns;
} game_mover_t;

/* A mover standing at (x, y), idle, with a full input bucket at now_ns. */
void game_mover_init(game_mover_t *m, const game_move_rules_t *r, double x, double y,
                     uint64_t now_ns);

/* Checks one input at time now_ns and applies it to m's intent (mode, direction, target,
 * speed). Returns WY_OK when applied; WY_EPERM when refused, with *why set: the mover is then
 * stopped (idle) except for a SEQ or FLOOD refusal, which leave it as it was. last_seq moves to
 * in->seq for every input but a SEQ refusal. */
int game_move_accept(const game_move_rules_t *r, const game_walk_t *w, game_mover_t *m,
                     const game_input_t *in, uint64_t now_ns, game_refuse_t *why);

/* Advances m by dt seconds: at most speed * dt metres, never out of the zone nor into a blocked
 * cell (it slides along a wall on the free axis, else stops); arrives at and stops on its
 * target. Returns true when the position changed. */
bool game_move_step(const game_walk_t *w, game_mover_t *m, double dt);

#endif
