/* wy_gamewire — the compact replication encoding of wy-game's update frames, shared by the
 * server (encoder) and every client (decoder + mirror of the visible entities). The byte layout
 * is documented here and in proto/game.proto (Update); a client in another language
 * implements exactly this.
 *
 * Positions are quantised to 1/16 m (WY_GW_QUANT units per metre) by rounding to the nearest
 * unit, so a decoded position is within 1/32 m (3.125 cm) of the server's on each axis. Moves
 * are sent as differences of quantised absolute positions, so the error never accumulates.
 *
 * An entity's replicated state: id (u32, unique in the game instance), kind (u8), mode (u8:
 * 0 idle, 1 walk, 2 run) and the quantised position (qx, qy >= 0, x east, y south from the
 * zone's north-west corner).
 *
 * Sections (each the bytes of one field of Update; varint = protobuf base-128 varint,
 * zigzag = protobuf sint zigzag):
 *   entered: records in ascending id order:
 *            varint(id - prev_id), u8 kind, u8 mode, varint qx, varint qy
 *   changed: records in ascending id order:
 *            varint((id - prev_id) << 2 | form), then by form:
 *              0 small move: one byte (dx + 8) << 4 | (dy + 8), dx, dy in -8..7 units
 *              1 move:       two bytes: int8 dx, int8 dy
 *              2 general:    u8 mask; mask & 1: zigzag dx, zigzag dy; mask & 2: u8 mode;
 *                            mask & 4: u8 kind (other bits: refuse the frame)
 *              3 reserved (refuse the frame)
 *   left:    varint(id - prev_id), ascending ids
 * prev_id starts at 0 in each section; ids within a section are strictly ascending (the first
 * record's delta may be 0 only for id 0). The server sends what changed since the previous
 * frame of the same connection; a frame with reset set replaces the whole mirror.
 *
 * Threads: pure functions and caller-owned structs; no globals. */
#ifndef WY_GAMEWIRE_H
#define WY_GAMEWIRE_H

#include "wy_core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WY_GW_QUANT 16 /* position units per metre */
/* Most bytes one entity's change body takes (form byte excluded): mask + 2 zigzag varints of
 * int32 + mode + kind. */
#define WY_GW_BODY_MAX 14
/* Most bytes one entered record takes. */
#define WY_GW_ENTER_MAX (5 + 2 + 5 + 5)

enum { WY_GW_MODE_IDLE = 0, WY_GW_MODE_WALK = 1, WY_GW_MODE_RUN = 2 };

typedef struct {
    uint32_t id;
    uint8_t kind, mode;
    int32_t qx, qy;
} wy_gw_entity_t;

/* Metres -> units (nearest; a negative input gives a negative unit, which no entity has). */
int32_t wy_gw_quantise(double metres);
double wy_gw_metres(int32_t units);

/* ---- encoder (server) ---- */

/* The viewer-independent body of one entity's change from `before` to `now` (same id): the form
 * (0..2) and its bytes, written to body[WY_GW_BODY_MAX]. Returns the body length, 0 (and form 0)
 * when nothing replicated changed. Computed once per entity per tick and copied into each
 * viewer's frame with wy_gw_put_changed. */
size_t wy_gw_change_body(const wy_gw_entity_t *before, const wy_gw_entity_t *now, uint8_t *body,
                         unsigned *form);

/* The entered record body (kind, mode, qx, qy: everything after the id delta) of e, written to
 * body[WY_GW_ENTER_MAX]; returns its length. Also computed once per entity per tick. */
size_t wy_gw_enter_body(const wy_gw_entity_t *e, uint8_t *body);

/* A section being written into a caller's buffer; ids must be given in ascending order. */
typedef struct {
    uint8_t *buf;
    size_t cap, len;
    uint32_t prev_id;
    bool started;  /* a record was written (the next delta must be > 0) */
    bool overflow; /* a record did not fit: the section is truncated before it */
} wy_gw_section_t;

void wy_gw_section_init(wy_gw_section_t *s, uint8_t *buf, size_t cap);
/* Each returns WY_OK, WY_ETOOBIG (did not fit; s->overflow set, nothing written) or WY_EINVAL
 * (id not above the previous one). */
int wy_gw_put_entered(wy_gw_section_t *s, uint32_t id, const uint8_t *body, size_t len);
int wy_gw_put_changed(wy_gw_section_t *s, uint32_t id, unsigned form, const uint8_t *body,
                      size_t len);
int wy_gw_put_left(wy_gw_section_t *s, uint32_t id);

/* ---- decoder (client) ---- */

/* The client's mirror of the entities it sees: kept sorted by id, at most cap of them. */
typedef struct {
    wy_gw_entity_t *ents; /* caller's array of cap entries */
    size_t n, cap;
} wy_gw_mirror_t;

void wy_gw_mirror_init(wy_gw_mirror_t *m, wy_gw_entity_t *ents, size_t cap);
/* The entity with that id, or NULL. */
const wy_gw_entity_t *wy_gw_mirror_find(const wy_gw_mirror_t *m, uint32_t id);

/* What one frame did to the mirror (for counters and views). */
typedef struct {
    size_t entered, changed, left;
} wy_gw_applied_t;

/* Applies one frame's sections (any may be NULL with length 0): reset clears the mirror first,
 * then left, entered and changed are applied, in that order. Returns WY_OK or WY_EINVAL with
 * *err saying what is malformed (truncated record, ids not ascending, unknown form or mask bits,
 * a changed or left id the mirror does not hold, an entered id it already holds, more entities
 * than cap); on an error the mirror may be partly updated: the caller treats the connection as
 * broken. */
int wy_gw_mirror_apply(wy_gw_mirror_t *m, bool reset, const uint8_t *entered, size_t nentered,
                       const uint8_t *changed, size_t nchanged, const uint8_t *left, size_t nleft,
                       wy_gw_applied_t *applied, const char **err);

#endif
