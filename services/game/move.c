/* wy-game's movement rules (contract in move.h). */
#include "move.h"

#include <math.h>

static const char *const refuse_names[GAME_REFUSE_COUNT] = {
    [GAME_REFUSE_INVALID] = "invalid",   [GAME_REFUSE_SEQ] = "seq",
    [GAME_REFUSE_FLOOD] = "flood",       [GAME_REFUSE_SPEED] = "speed",
    [GAME_REFUSE_TELEPORT] = "teleport", [GAME_REFUSE_BLOCKED] = "blocked",
};

const char *game_refuse_name(game_refuse_t r)
{
    return (unsigned)r < GAME_REFUSE_COUNT ? refuse_names[r] : "unknown";
}

bool game_walk_blocked(const game_walk_t *w, double x, double y)
{
    if (!(x >= 0 && y >= 0 && x < w->width && y < w->height))
        return true;
    if (w->blocked == NULL || !(w->cell > 0))
        return false;
    uint32_t c = (uint32_t)(x / w->cell), r = (uint32_t)(y / w->cell);
    if (c >= w->cols || r >= w->rows)
        return true;
    return w->blocked[(size_t)r * w->cols + c] != 0;
}

void game_move_rules_default(game_move_rules_t *r)
{
    *r = (game_move_rules_t){
        .walk_speed = 2.5,
        .run_speed = 6.0,
        .pos_tolerance = 4.0,
        .input_rate = 30.0,
        .input_burst = 10.0,
    };
}

void game_mover_init(game_mover_t *m, const game_move_rules_t *r, double x, double y,
                     uint64_t now_ns)
{
    *m = (game_mover_t){.x = x, .y = y, .tokens = r->input_burst, .tokens_ns = now_ns};
}

static void stop(game_mover_t *m)
{
    m->mode = GAME_MODE_IDLE;
    m->has_target = false;
    m->speed = 0;
}

static int refuse(game_mover_t *m, game_refuse_t reason, game_refuse_t *why, bool halt)
{
    *why = reason;
    if (halt)
        stop(m);
    return WY_EPERM;
}

int game_move_accept(const game_move_rules_t *r, const game_walk_t *w, game_mover_t *m,
                     const game_input_t *in, uint64_t now_ns, game_refuse_t *why)
{
    if (in->mode > GAME_MODE_RUN || !isfinite(in->speed) || in->speed < 0 ||
        (in->has_target && (!isfinite(in->tx) || !isfinite(in->ty))) ||
        (in->has_pos && (!isfinite(in->px) || !isfinite(in->py)))) {
        m->last_seq = in->seq > m->last_seq ? in->seq : m->last_seq;
        return refuse(m, GAME_REFUSE_INVALID, why, true);
    }
    if (in->seq <= m->last_seq)
        return refuse(m, GAME_REFUSE_SEQ, why, false);
    m->last_seq = in->seq;

    /* Flood: a token bucket refilled at input_rate, holding at most input_burst. */
    if (now_ns > m->tokens_ns) {
        m->tokens += (double)(now_ns - m->tokens_ns) * 1e-9 * r->input_rate;
        if (m->tokens > r->input_burst)
            m->tokens = r->input_burst;
    }
    m->tokens_ns = now_ns;
    if (m->tokens < 1.0)
        return refuse(m, GAME_REFUSE_FLOOD, why, false);
    m->tokens -= 1.0;

    double limit = in->mode == GAME_MODE_RUN ? r->run_speed : r->walk_speed;
    if (in->mode != GAME_MODE_IDLE && in->speed > limit * 1.0001)
        return refuse(m, GAME_REFUSE_SPEED, why, true);
    if (in->has_pos) {
        if (game_walk_blocked(w, in->px, in->py))
            return refuse(m, GAME_REFUSE_BLOCKED, why, true);
        if (hypot(in->px - m->x, in->py - m->y) > r->pos_tolerance)
            return refuse(m, GAME_REFUSE_TELEPORT, why, true);
    }
    if (in->has_target && game_walk_blocked(w, in->tx, in->ty))
        return refuse(m, GAME_REFUSE_BLOCKED, why, true);

    if (in->mode == GAME_MODE_IDLE) {
        stop(m);
        return WY_OK;
    }
    m->mode = in->mode;
    m->speed = in->speed > 0 ? in->speed : limit;
    m->has_target = in->has_target;
    if (in->has_target) {
        m->tx = in->tx;
        m->ty = in->ty;
    } else {
        double a = (double)in->dir * (2.0 * M_PI / 65536.0);
        m->ux = cos(a);
        m->uy = sin(a);
    }
    return WY_OK;
}

static bool try_move(const game_walk_t *w, game_mover_t *m, double dx, double dy)
{
    if (game_walk_blocked(w, m->x + dx, m->y + dy))
        return false;
    m->x += dx;
    m->y += dy;
    return true;
}

/* Moves up to dist along (ux, uy) in sub-steps of at most half a cell (so a step never jumps a
 * blocked cell). At a wall it comes up to it (halving the step down to 1 cm), then slides along
 * it on the free axis; returns the distance not covered. */
static double advance(const game_walk_t *w, game_mover_t *m, double ux, double uy, double dist)
{
    double max_sub = w->cell > 0 ? w->cell / 2 : dist;
    while (dist > 1e-9) {
        double step = dist < max_sub ? dist : max_sub, d = step;
        while (d >= 0.01 && !try_move(w, m, ux * d, uy * d))
            d /= 2;
        if (d >= 0.01) {
            dist -= d;
            continue;
        }
        /* Against the wall: the free axis only, if it has a real component. */
        if (fabs(ux * step) > 1e-6 && try_move(w, m, ux * step, 0))
            dist -= step;
        else if (fabs(uy * step) > 1e-6 && try_move(w, m, 0, uy * step))
            dist -= step;
        else
            return dist;
    }
    return dist;
}

bool game_move_step(const game_walk_t *w, game_mover_t *m, double dt)
{
    if (m->mode == GAME_MODE_IDLE || !(dt > 0) || !(m->speed > 0))
        return false;
    double ox = m->x, oy = m->y, dist = m->speed * dt;
    if (!m->has_target) {
        advance(w, m, m->ux, m->uy, dist);
        return m->x != ox || m->y != oy;
    }
    double tx = m->tx - m->x, ty = m->ty - m->y, left = hypot(tx, ty);
    if (left <= dist) {
        /* Arrives (the target was checked walkable; the way there may be blocked). */
        if (left > 0 && advance(w, m, tx / left, ty / left, left) <= 1e-9) {
            m->x = m->tx;
            m->y = m->ty;
        }
        stop(m);
    } else {
        advance(w, m, tx / left, ty / left, dist);
    }
    return m->x != ox || m->y != oy;
}
