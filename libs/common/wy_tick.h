/* wy_tick — a fixed-rate loop for a worker thread (a game partition), driven
 * by deadlines: tick k is due at start + k * period, so a late tick never
 * pushes the ones after it (next = previous deadline + period, not now +
 * period) and the long-run rate is exact.
 *
 * A body that runs longer than the period is an overrun (counted); the next
 * tick then starts at once, late, and the schedule catches up. When the loop
 * is a whole period or more behind the next deadline (a long stall: the
 * machine, a debugger, a huge body) it does not burst through the missed
 * ticks: it skips every deadline already past, counts them, and waits for the
 * next future one. The body learns how many were skipped (simulation time to
 * make up in one step).
 *
 * Per tick the hot path does two clock reads, a few relaxed atomic adds and,
 * if configured, two histogram observations; nothing is formatted or
 * allocated. The time source is injectable (tests run minutes of simulated
 * time in milliseconds). Not for the libuv loop: use a uv_timer there. */
#ifndef WY_TICK_H
#define WY_TICK_H

#include "wy_core.h"
#include "wy_metrics.h"

#include <stdatomic.h>

/* Monotonic time in nanoseconds. */
typedef uint64_t (*wy_tick_clock_fn)(void *clock_ud);
/* Returns once the clock reads deadline_ns or later (absolute time); may
 * return early (a signal): the loop checks the clock again. */
typedef void (*wy_tick_sleep_fn)(uint64_t deadline_ns, void *clock_ud);

typedef struct wy_tick wy_tick_t;

typedef struct {
    uint64_t seq;      /* number of this tick's deadline: 0, 1, 2, ... (skips included) */
    uint64_t deadline; /* when it was due (clock ns) */
    uint64_t now;      /* when the body started (clock ns) */
    uint64_t lateness; /* now - deadline */
    uint64_t skipped;  /* deadlines skipped just before this tick (0 normally) */
    uint64_t period;   /* ns; the simulation step is period * (1 + skipped) */
} wy_tick_info_t;

/* The body of one tick, on the thread that called wy_tick_run. */
typedef void (*wy_tick_body_fn)(wy_tick_t *t, const wy_tick_info_t *info, void *ud);

typedef struct {
    uint64_t period_ns; /* > 0; 20,000,000 for 50 Hz */
    /* NULL: CLOCK_MONOTONIC and clock_nanosleep(TIMER_ABSTIME). */
    wy_tick_clock_fn clock;
    wy_tick_sleep_fn sleep;
    void *clock_ud;
    /* Optional histograms (seconds), registered by the caller on the loop
     * thread with names of its choice (wy_<svc>_tick_seconds,
     * wy_<svc>_tick_lateness_seconds): body duration, and how late each tick
     * started. Observed on the tick thread (lock-free). */
    wy_metric_t *duration_hist;
    wy_metric_t *lateness_hist;
} wy_tick_opts_t;

/* Counters of a tick loop; any thread may read them (wy_tick_stats) while
 * it runs, e.g. the loop thread mirroring them into Prometheus counters. */
typedef struct {
    uint64_t ticks;    /* bodies run */
    uint64_t overruns; /* bodies that took longer than the period */
    uint64_t skipped;  /* deadlines skipped after a stall */
} wy_tick_stats_t;

/* Kept in the caller's memory (on the worker's stack or in its state);
 * fields are private. */
struct wy_tick {
    wy_tick_opts_t o;
    uint64_t start, next, seq;
    atomic_int stop;
    atomic_uint_fast64_t ticks, overruns, skipped;
};

/* Sets t up; returns WY_EINVAL if period_ns is 0 or only one of clock/sleep
 * is given. */
int wy_tick_init(wy_tick_t *t, const wy_tick_opts_t *opts);

/* Runs body once per period until wy_tick_stop; the first tick is due now.
 * Returns after the body during or after which the stop was asked. Call on
 * the worker thread. */
void wy_tick_run(wy_tick_t *t, wy_tick_body_fn body, void *ud);

/* Any thread (the body included): wy_tick_run returns after the current or
 * next body. A stop asked while the loop sleeps takes effect when the sleep
 * ends (at most one period). */
void wy_tick_stop(wy_tick_t *t);

/* Any thread. */
void wy_tick_stats(const wy_tick_t *t, wy_tick_stats_t *out);

/* The default time source (CLOCK_MONOTONIC): exported for callers that
 * measure against the same clock. */
uint64_t wy_tick_clock_monotonic(void *unused);
void wy_tick_sleep_monotonic(uint64_t deadline_ns, void *unused);

#endif
