/* wy-game's area of interest: a uniform spatial grid over a partition's area that gives each
 * viewer the entities within its view radius, with a hysteresis margin on leaving so entities
 * at the edge do not flap in and out.
 *
 * An entity enters a view when its distance to the viewer is <= radius and leaves it when the
 * distance is > radius + margin (or it is removed). The cell side is radius + margin, so a
 * viewer's 3 x 3 neighbourhood of cells covers everything it may still see.
 *
 * When more entities are in range than a view holds, the nearest are seen: the view is the
 * `cap` nearest (a visible entity counts as `margin` nearer than it is, so two at about the same
 * distance do not take turns), the rest are dropped (offered again at the next update).
 *
 * Memory: every array is allocated by game_aoi_init, sized by the capacity given there; the
 * updates never allocate. Cells are intrusive doubly linked lists through the slots, so moving
 * an entity between cells is O(1). A viewer's visible set is a caller-owned array of refs sorted
 * by entity id (the order the replication encoding wants); game_aoi_update keeps it sorted in
 * linear time (only the few entering refs are sorted).
 *
 * Threads: one game_aoi_t belongs to one partition thread. */
#ifndef GAME_AOI_H
#define GAME_AOI_H

#include "wy_core.h"

#include <stdbool.h>
#include <stdint.h>

#define GAME_AOI_NONE UINT32_MAX

/* An entity in a view: its id (stable for its life), its slot in this grid and the slot's
 * generation (bumped at every removal): a slot removed and filled again, even by the same id,
 * is a new entity to every view (it leaves and enters again). */
typedef struct {
    uint32_t id, slot, gen;
} game_aoi_ref_t;

typedef struct {
    float x, y;
    uint32_t id;
    uint32_t cell; /* GAME_AOI_NONE: not in the grid */
    uint32_t next, prev;
    uint32_t mark_prev, mark_keep; /* stamps of the update in progress */
    uint32_t gen;                  /* removals of this slot */
    float d2;                      /* squared distance to the viewer of the update in progress */
} game_aoi_slot_t;

/* A candidate of an update that has more entities in range than the view holds. */
typedef struct {
    float key;    /* squared distance (a visible one's less its margin: it is not pushed out by
                     one just as near) */
    uint32_t idx; /* kept: index in the view; new: index in the entered list */
    bool fresh;   /* not visible before */
} game_aoi_cand_t;

typedef struct {
    double x0, y0;         /* the grid's north-west corner (metres, zone coordinates) */
    double cell_size;      /* radius + margin */
    double radius, margin; /* metres */
    double enter2, leave2; /* radius^2, (radius + margin)^2 */
    uint32_t cols, rows;
    uint32_t *heads;        /* cols * rows first slots */
    game_aoi_slot_t *slots; /* capacity */
    uint32_t capacity;
    uint32_t stamp;
    /* The cell-sorted index the updates scan (rebuilt by the first update after a change):
     * positions of cell c's slots are ix/iy[cell_start[c] .. cell_start[c + 1]), contiguous
     * for the cells of one grid row, so a viewer scans 3 runs of packed floats. */
    bool dirty;
    uint32_t *cell_start;  /* cols * rows + 1 */
    float *ix, *iy;        /* capacity */
    uint32_t *islot;       /* capacity */
    uint32_t *hits;        /* capacity: scratch of one update */
    game_aoi_ref_t *fresh; /* capacity: entering candidates of one update */
    game_aoi_cand_t *cand; /* capacity: ranking scratch when over the view's capacity */
} game_aoi_t;

/* A viewer's visible set: refs sorted by id; storage is the caller's (a partition's pool). */
typedef struct {
    game_aoi_ref_t *refs;
    uint32_t n, cap;
} game_aoi_view_t;

/* Output of one update. entered and left are the caller's arrays of at least view->cap refs
 * each; both come out sorted by id. */
typedef struct {
    game_aoi_ref_t *entered, *left;
    uint32_t nentered, nleft;
    uint32_t dropped; /* entities in range that did not fit in the view's capacity (they are
                         offered again next update) */
} game_aoi_diff_t;

/* Sets up a grid covering width x height metres from (x0, y0), for slots 0..capacity-1.
 * radius > 0, margin >= 0, at most 2^22 cells and 2^24 slots. WY_EINVAL with *err otherwise. */
int game_aoi_init(game_aoi_t *g, double x0, double y0, double width, double height, double radius,
                  double margin, uint32_t capacity, const char **err);
void game_aoi_free(game_aoi_t *g);

/* Puts slot (holding entity id) at (x, y), inserting it or moving it between cells; positions
 * outside the grid are clamped to its edge cells (distances use the true position). */
void game_aoi_place(game_aoi_t *g, uint32_t slot, uint32_t id, double x, double y);
/* Takes slot out of the grid (no-op if it is not in). */
void game_aoi_remove(game_aoi_t *g, uint32_t slot);
bool game_aoi_contains(const game_aoi_t *g, uint32_t slot);

/* Recomputes the view of a viewer at (vx, vy): refs that stay (within radius + margin),
 * refs that enter (within radius, not visible before) and refs that left (beyond
 * radius + margin, removed, or their slot now holds another entity). view is updated in place
 * and stays sorted by id; diff receives entered/left. */
void game_aoi_update(game_aoi_t *g, double vx, double vy, game_aoi_view_t *view,
                     game_aoi_diff_t *diff);

/* Rewrites view's refs for grid g (a viewer handed over from another partition): each id is
 * looked up with find(ud, id) -> slot or GAME_AOI_NONE; refs not found or not in g are dropped.
 * Order is kept. Returns how many were dropped. */
uint32_t game_aoi_view_rebase(const game_aoi_t *g, game_aoi_view_t *view,
                              uint32_t (*find)(void *ud, uint32_t id), void *ud);

#endif
