/* wy-game's area-of-interest grid (contract in aoi.h). */
#include "aoi.h"

#include <math.h>
#include <string.h>

#define AOI_MAX_CELLS (1u << 22)
#define AOI_MAX_SLOTS (1u << 24)

int game_aoi_init(game_aoi_t *g, double x0, double y0, double width, double height, double radius,
                  double margin, uint32_t capacity, const char **err)
{
    memset(g, 0, sizeof *g);
    if (!(radius > 0) || !(margin >= 0) || !(width > 0) || !(height > 0) || !isfinite(radius) ||
        !isfinite(margin) || !isfinite(width) || !isfinite(height)) {
        *err = "area of interest: radius, width and height must be > 0, margin >= 0";
        return WY_EINVAL;
    }
    if (capacity == 0 || capacity > AOI_MAX_SLOTS) {
        *err = "area of interest: capacity must be 1..2^24 entities";
        return WY_EINVAL;
    }
    double cell = radius + margin;
    double cols = ceil(width / cell), rows = ceil(height / cell);
    if (cols < 1)
        cols = 1;
    if (rows < 1)
        rows = 1;
    if (cols * rows > AOI_MAX_CELLS) {
        *err = "area of interest: more than 2^22 grid cells (view radius too small for the area)";
        return WY_EINVAL;
    }
    g->x0 = x0;
    g->y0 = y0;
    g->cell_size = cell;
    g->radius = radius;
    g->margin = margin;
    g->enter2 = radius * radius;
    g->leave2 = cell * cell;
    g->cols = (uint32_t)cols;
    g->rows = (uint32_t)rows;
    g->capacity = capacity;
    g->heads = wy_malloc((size_t)g->cols * g->rows * sizeof *g->heads);
    for (size_t i = 0; i < (size_t)g->cols * g->rows; i++)
        g->heads[i] = GAME_AOI_NONE;
    g->slots = wy_calloc(capacity, sizeof *g->slots);
    g->cell_start = wy_calloc((size_t)g->cols * g->rows + 1, sizeof *g->cell_start);
    g->ix = wy_malloc(capacity * sizeof *g->ix);
    g->iy = wy_malloc(capacity * sizeof *g->iy);
    g->islot = wy_malloc(capacity * sizeof *g->islot);
    g->hits = wy_malloc(capacity * sizeof *g->hits);
    g->fresh = wy_malloc(capacity * sizeof *g->fresh);
    g->cand = wy_malloc(capacity * sizeof *g->cand);
    g->dirty = true;
    for (uint32_t i = 0; i < capacity; i++)
        g->slots[i].cell = GAME_AOI_NONE;
    g->stamp = 0;
    return WY_OK;
}

void game_aoi_free(game_aoi_t *g)
{
    wy_free(g->heads);
    wy_free(g->slots);
    wy_free(g->cell_start);
    wy_free(g->ix);
    wy_free(g->iy);
    wy_free(g->islot);
    wy_free(g->hits);
    wy_free(g->fresh);
    wy_free(g->cand);
    memset(g, 0, sizeof *g);
}

static uint32_t clamp_index(double v, uint32_t n)
{
    if (!(v > 0))
        return 0;
    if (v >= n - 1)
        return n - 1;
    return (uint32_t)v;
}

static uint32_t cell_of(const game_aoi_t *g, double x, double y)
{
    uint32_t cx = clamp_index((x - g->x0) / g->cell_size, g->cols);
    uint32_t cy = clamp_index((y - g->y0) / g->cell_size, g->rows);
    return cy * g->cols + cx;
}

static void unlink_slot(game_aoi_t *g, uint32_t slot)
{
    game_aoi_slot_t *s = &g->slots[slot];
    if (s->prev != GAME_AOI_NONE)
        g->slots[s->prev].next = s->next;
    else
        g->heads[s->cell] = s->next;
    if (s->next != GAME_AOI_NONE)
        g->slots[s->next].prev = s->prev;
    s->cell = GAME_AOI_NONE;
}

void game_aoi_place(game_aoi_t *g, uint32_t slot, uint32_t id, double x, double y)
{
    game_aoi_slot_t *s = &g->slots[slot];
    uint32_t cell = cell_of(g, x, y);
    s->x = (float)x;
    s->y = (float)y;
    s->id = id;
    g->dirty = true;
    if (s->cell == cell)
        return;
    if (s->cell != GAME_AOI_NONE)
        unlink_slot(g, slot);
    s->cell = cell;
    s->prev = GAME_AOI_NONE;
    s->next = g->heads[cell];
    if (s->next != GAME_AOI_NONE)
        g->slots[s->next].prev = slot;
    g->heads[cell] = slot;
}

void game_aoi_remove(game_aoi_t *g, uint32_t slot)
{
    if (g->slots[slot].cell != GAME_AOI_NONE) {
        unlink_slot(g, slot);
        g->slots[slot].gen++;
        g->dirty = true;
    }
}

bool game_aoi_contains(const game_aoi_t *g, uint32_t slot)
{
    return slot < g->capacity && g->slots[slot].cell != GAME_AOI_NONE;
}

static uint32_t next_stamp(game_aoi_t *g)
{
    if (++g->stamp == 0) {
        /* Wrapped after 2^32 updates: old marks could collide with new stamps. */
        for (uint32_t i = 0; i < g->capacity; i++)
            g->slots[i].mark_prev = g->slots[i].mark_keep = 0;
        g->stamp = 1;
    }
    return g->stamp;
}

static void sort_refs(game_aoi_ref_t *a, uint32_t n)
{
    /* Insertion sort: the entering refs of one update are few. */
    for (uint32_t i = 1; i < n; i++) {
        game_aoi_ref_t v = a[i];
        uint32_t j = i;
        while (j > 0 && a[j - 1].id > v.id) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

static bool ref_live(const game_aoi_t *g, game_aoi_ref_t r)
{
    return r.slot < g->capacity && g->slots[r.slot].cell != GAME_AOI_NONE &&
           g->slots[r.slot].id == r.id && g->slots[r.slot].gen == r.gen;
}

/* Rebuilds the cell-sorted index from the grid (counting sort: O(slots + cells)). */
static void build_index(game_aoi_t *g)
{
    size_t ncells = (size_t)g->cols * g->rows;
    memset(g->cell_start, 0, (ncells + 1) * sizeof *g->cell_start);
    for (uint32_t c = 0; c < ncells; c++)
        for (uint32_t s = g->heads[c]; s != GAME_AOI_NONE; s = g->slots[s].next)
            g->cell_start[c + 1]++;
    for (size_t c = 0; c < ncells; c++)
        g->cell_start[c + 1] += g->cell_start[c];
    for (uint32_t c = 0; c < ncells; c++) {
        uint32_t k = g->cell_start[c];
        for (uint32_t s = g->heads[c]; s != GAME_AOI_NONE; s = g->slots[s].next) {
            g->ix[k] = g->slots[s].x;
            g->iy[k] = g->slots[s].y;
            g->islot[k++] = s;
        }
    }
    g->dirty = false;
}

/* Reorders c[0..n) so that its first k entries are k smallest keys (quickselect, three-way:
 * O(n) on average, also with many equal keys). */
static void select_nearest(game_aoi_cand_t *c, uint32_t n, uint32_t k)
{
    uint32_t lo = 0, hi = n; /* the k-th smallest lies in [lo, hi) */
    while (hi - lo > 1) {
        game_aoi_cand_t pivot = c[lo + (hi - lo) / 2];
        /* Three-way partition around the pivot's key: < | == | > */
        uint32_t lt = lo, gt = hi, i = lo;
        while (i < gt) {
            if (c[i].key < pivot.key) {
                game_aoi_cand_t t = c[i];
                c[i++] = c[lt];
                c[lt++] = t;
            } else if (c[i].key > pivot.key) {
                game_aoi_cand_t t = c[i];
                c[i] = c[--gt];
                c[gt] = t;
            } else {
                i++;
            }
        }
        if (k <= lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return; /* the k-th falls among the pivot's equals */
    }
}

void game_aoi_update(game_aoi_t *g, double vx, double vy, game_aoi_view_t *view,
                     game_aoi_diff_t *diff)
{
    uint32_t stamp = next_stamp(g);
    diff->nentered = diff->nleft = diff->dropped = 0;
    if (g->dirty)
        build_index(g);

    for (uint32_t i = 0; i < view->n; i++)
        if (ref_live(g, view->refs[i]))
            g->slots[view->refs[i].slot].mark_prev = stamp;

    /* Candidates: the 3 x 3 cells around the viewer, three contiguous runs of the index. A
     * branchless float pass keeps the ones within radius + margin (the bound widened a little
     * for float rounding); the exact test below is in double, as the positions were given. */
    uint32_t vcell = cell_of(g, vx, vy);
    uint32_t cx = vcell % g->cols, cy = vcell / g->cols;
    uint32_t xlo = cx > 0 ? cx - 1 : 0, xhi = cx + 1 < g->cols ? cx + 1 : cx;
    uint32_t ylo = cy > 0 ? cy - 1 : 0, yhi = cy + 1 < g->rows ? cy + 1 : cy;
    const float fx = (float)vx, fy = (float)vy, lim = (float)(g->leave2 * 1.0001 + 1e-3);
    const float *ix = g->ix, *iy = g->iy;
    uint32_t *hits = g->hits, nh = 0;
    for (uint32_t y = ylo; y <= yhi; y++) {
        uint32_t a = g->cell_start[y * g->cols + xlo], b = g->cell_start[y * g->cols + xhi + 1];
        for (uint32_t k = a; k < b; k++) {
            float dx = ix[k] - fx, dy = iy[k] - fy;
            hits[nh] = k;
            nh += dx * dx + dy * dy <= lim;
        }
    }

    uint32_t nfresh = 0, kept = 0;
    for (uint32_t h = 0; h < nh; h++) {
        uint32_t s = g->islot[hits[h]];
        game_aoi_slot_t *e = &g->slots[s];
        double dx = e->x - vx, dy = e->y - vy, d2 = dx * dx + dy * dy;
        if (e->mark_prev == stamp) {
            if (d2 <= g->leave2) {
                e->mark_keep = stamp;
                e->d2 = (float)d2;
                kept++;
            }
        } else if (d2 <= g->enter2) {
            e->d2 = (float)d2;
            g->fresh[nfresh++] = (game_aoi_ref_t){e->id, s, e->gen};
        }
    }

    if (kept + nfresh > view->cap) {
        /* More in range than the view holds: the nearest stay or enter. A visible one ranks
         * `margin` nearer than it is (it is not pushed out by one about as near); the rest
         * are dropped, offered again next time. */
        uint32_t n = 0;
        for (uint32_t i = 0; i < view->n; i++) {
            game_aoi_ref_t r = view->refs[i];
            if (!ref_live(g, r) || g->slots[r.slot].mark_keep != stamp)
                continue;
            double d = sqrt((double)g->slots[r.slot].d2) - g->margin;
            g->cand[n++] = (game_aoi_cand_t){(float)(d > 0 ? d * d : 0), i, false};
        }
        for (uint32_t j = 0; j < nfresh; j++)
            g->cand[n++] = (game_aoi_cand_t){g->slots[g->fresh[j].slot].d2, j, true};
        select_nearest(g->cand, n, view->cap);
        uint32_t nf = 0;
        for (uint32_t i = 0; i < n; i++) {
            const game_aoi_cand_t *c = &g->cand[i];
            if (i < view->cap) {
                if (c->fresh)
                    diff->entered[nf++] = g->fresh[c->idx];
            } else if (c->fresh) {
                diff->dropped++;
            } else {
                g->slots[view->refs[c->idx].slot].mark_keep = 0; /* pushed out: it leaves */
            }
        }
        diff->nentered = nf;
    } else {
        memcpy(diff->entered, g->fresh, nfresh * sizeof *g->fresh);
        diff->nentered = nfresh;
    }

    /* Keep the refs that stay, in order; the others left. */
    kept = 0;
    for (uint32_t i = 0; i < view->n; i++) {
        game_aoi_ref_t r = view->refs[i];
        if (ref_live(g, r) && g->slots[r.slot].mark_keep == stamp)
            view->refs[kept++] = r;
        else
            diff->left[diff->nleft++] = r;
    }

    sort_refs(diff->entered, diff->nentered);

    /* Merge kept and entered from the back, in place (both sorted, ids distinct). */
    uint32_t i = kept, j = diff->nentered, k = kept + diff->nentered;
    while (j > 0) {
        if (i > 0 && view->refs[i - 1].id > diff->entered[j - 1].id)
            view->refs[--k] = view->refs[--i];
        else
            view->refs[--k] = diff->entered[--j];
    }
    view->n = kept + diff->nentered;
}

uint32_t game_aoi_view_rebase(const game_aoi_t *g, game_aoi_view_t *view,
                              uint32_t (*find)(void *ud, uint32_t id), void *ud)
{
    uint32_t n = 0, dropped = 0;
    for (uint32_t i = 0; i < view->n; i++) {
        uint32_t slot = find(ud, view->refs[i].id);
        if (slot == GAME_AOI_NONE || !game_aoi_contains(g, slot)) {
            dropped++;
            continue;
        }
        view->refs[n++] = (game_aoi_ref_t){view->refs[i].id, slot, g->slots[slot].gen};
    }
    view->n = n;
    return dropped;
}
