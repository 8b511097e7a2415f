/* wy_tick — fixed-rate tick loop driven by deadlines (see wy_tick.h). */
#include "wy_tick.h"

#include <string.h>
#include <time.h>

#define NS_PER_S 1000000000ull

uint64_t wy_tick_clock_monotonic(void *unused)
{
    (void)unused;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

void wy_tick_sleep_monotonic(uint64_t deadline_ns, void *unused)
{
    (void)unused;
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / NS_PER_S),
                          .tv_nsec = (long)(deadline_ns % NS_PER_S)};
    /* EINTR: the caller reads the clock again and sleeps the rest. */
    (void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

int wy_tick_init(wy_tick_t *t, const wy_tick_opts_t *opts)
{
    if (!opts || opts->period_ns == 0 || (opts->clock == NULL) != (opts->sleep == NULL))
        return WY_EINVAL;
    memset(t, 0, sizeof *t);
    t->o = *opts;
    if (!t->o.clock) {
        t->o.clock = wy_tick_clock_monotonic;
        t->o.sleep = wy_tick_sleep_monotonic;
    }
    atomic_init(&t->stop, 0);
    atomic_init(&t->ticks, 0);
    atomic_init(&t->overruns, 0);
    atomic_init(&t->skipped, 0);
    return WY_OK;
}

static uint64_t now_ns(const wy_tick_t *t)
{
    return t->o.clock(t->o.clock_ud);
}

static bool stopping(wy_tick_t *t)
{
    return atomic_load_explicit(&t->stop, memory_order_acquire) != 0;
}

void wy_tick_run(wy_tick_t *t, wy_tick_body_fn body, void *ud)
{
    const uint64_t period = t->o.period_ns;
    uint64_t skipped = 0; /* skipped since the last body ran */
    t->start = t->next = now_ns(t);
    t->seq = 0;
    while (!stopping(t)) {
        uint64_t now = now_ns(t);
        while (now < t->next) {
            t->o.sleep(t->next, t->o.clock_ud);
            now = now_ns(t);
        }
        if (stopping(t))
            break;
        uint64_t late = now - t->next;
        if (late >= period) {
            /* A stall: skip every deadline already past (ceil(late / period)
             * of them) and wait for the next one, instead of running the
             * missed ticks back to back. */
            uint64_t n = (late + period - 1) / period;
            skipped += n;
            t->seq += n;
            t->next += n * period;
            atomic_fetch_add_explicit(&t->skipped, n, memory_order_relaxed);
            continue;
        }
        wy_tick_info_t info = {.seq = t->seq,
                               .deadline = t->next,
                               .now = now,
                               .lateness = late,
                               .skipped = skipped,
                               .period = period};
        skipped = 0;
        body(t, &info, ud);
        uint64_t took = now_ns(t) - now;
        atomic_fetch_add_explicit(&t->ticks, 1, memory_order_relaxed);
        if (took > period)
            atomic_fetch_add_explicit(&t->overruns, 1, memory_order_relaxed);
        if (t->o.lateness_hist)
            wy_metric_observe(t->o.lateness_hist, (double)late / (double)NS_PER_S);
        if (t->o.duration_hist)
            wy_metric_observe(t->o.duration_hist, (double)took / (double)NS_PER_S);
        /* From the deadline, not from now: lateness never accumulates. */
        t->seq++;
        t->next += period;
    }
}

void wy_tick_stop(wy_tick_t *t)
{
    atomic_store_explicit(&t->stop, 1, memory_order_release);
}

void wy_tick_stats(const wy_tick_t *t, wy_tick_stats_t *out)
{
    wy_tick_t *m = (wy_tick_t *)t; /* atomic loads need non-const */
    out->ticks = atomic_load_explicit(&m->ticks, memory_order_relaxed);
    out->overruns = atomic_load_explicit(&m->overruns, memory_order_relaxed);
    out->skipped = atomic_load_explicit(&m->skipped, memory_order_relaxed);
}
