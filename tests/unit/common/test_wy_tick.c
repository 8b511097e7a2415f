/* Unit tests of wy_tick on a simulated clock: a 50 Hz tick whose body
 * sometimes overruns keeps its long-run rate over 10 s and counts the
 * overruns; a long stall skips the missed deadlines (counted) instead of
 * bursting; histograms get one observation per tick. One short run on the
 * real clock checks the default time source (no timing asserted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "wy_tick.h"

#define MS     1000000ull
#define PERIOD (20 * MS) /* 50 Hz */

/* Simulated time: sleeping jumps to the deadline; bodies advance it by what
 * they "cost". The clock starts at an arbitrary non-zero point. */
typedef struct {
    uint64_t now;
    uint64_t sleeps;
} sim_t;

static uint64_t sim_clock(void *ud)
{
    return ((sim_t *)ud)->now;
}

static void sim_sleep(uint64_t deadline, void *ud)
{
    sim_t *s = ud;
    s->sleeps++;
    if (deadline > s->now)
        s->now = deadline;
}

typedef struct {
    sim_t *sim;
    uint64_t start;     /* clock at the first tick */
    uint64_t stop_seq;  /* stop once this tick ran */
    uint64_t stall_seq; /* this tick's body takes stall_ns */
    uint64_t stall_ns;
    unsigned overrun_every; /* every Nth tick's body takes 35 ms */
    /* observed */
    uint64_t bodies;
    uint64_t off_grid; /* ticks whose deadline is not start + seq * period */
    uint64_t max_late; /* most lateness seen */
    uint64_t late_ge_period;
    uint64_t seq_gaps; /* ticks whose seq is not last seq + 1 + skipped */
    uint64_t last_seq;
    uint64_t skipped_seen; /* sum of info->skipped */
    wy_tick_info_t after_stall;
    uint64_t last_deadline, last_end;
} run_t;

static void body(wy_tick_t *t, const wy_tick_info_t *ti, void *ud)
{
    run_t *r = ud;
    if (r->bodies == 0)
        r->start = ti->deadline;
    else if (ti->seq != r->last_seq + 1 + ti->skipped)
        r->seq_gaps++;
    if (ti->deadline != r->start + ti->seq * PERIOD)
        r->off_grid++;
    if (ti->lateness != ti->now - ti->deadline || ti->period != PERIOD)
        r->off_grid++;
    if (ti->lateness > r->max_late)
        r->max_late = ti->lateness;
    if (ti->lateness >= PERIOD)
        r->late_ge_period++;
    if (ti->skipped && r->after_stall.seq == 0)
        r->after_stall = *ti;
    r->skipped_seen += ti->skipped;
    r->last_seq = ti->seq;
    r->bodies++;

    uint64_t cost = 5 * MS;
    if (r->overrun_every && ti->seq % r->overrun_every == r->overrun_every - 1)
        cost = 35 * MS; /* longer than the 20 ms period */
    if (r->stall_ns && ti->seq == r->stall_seq)
        cost = r->stall_ns;
    r->sim->now += cost;
    r->last_deadline = ti->deadline;
    r->last_end = r->sim->now;
    if (ti->seq >= r->stop_seq)
        wy_tick_stop(t);
}

static void sim_init(wy_tick_t *t, sim_t *sim, wy_metric_t *dur, wy_metric_t *late)
{
    wy_tick_opts_t o = {.period_ns = PERIOD,
                        .clock = sim_clock,
                        .sleep = sim_sleep,
                        .clock_ud = sim,
                        .duration_hist = dur,
                        .lateness_hist = late};
    assert_int_equal(wy_tick_init(t, &o), WY_OK);
}

/* Runs r on a fresh tick over sim's clock until r->stop_seq; returns the counters. */
static wy_tick_stats_t run_sim(sim_t *sim, run_t *r, wy_metric_t *dur, wy_metric_t *late)
{
    wy_tick_t t;
    sim_init(&t, sim, dur, late);
    r->sim = sim;
    wy_tick_run(&t, body, r);
    wy_tick_stats_t st;
    wy_tick_stats(&t, &st);
    return st;
}

/* Must show 3: 10 s at 50 Hz, every 10th body overruns by 15 ms. */
static void test_50hz_with_overruns_keeps_rate_over_10s(void **state)
{
    (void)state;
    sim_t sim = {.now = 123456789};
    run_t r = {.stop_seq = 499, .overrun_every = 10};
    wy_tick_stats_t st = run_sim(&sim, &r, NULL, NULL);
    assert_int_equal(st.ticks, 500);
    assert_int_equal(st.overruns, 50);
    assert_int_equal(st.skipped, 0);
    assert_int_equal(r.bodies, 500);
    assert_int_equal(r.seq_gaps, 0);
    /* No drift: tick 499 was due exactly 499 periods (9.98 s) after tick 0,
     * and every tick was due on that grid, overruns or not. */
    assert_int_equal(r.off_grid, 0);
    assert_int_equal(r.start, 123456789);
    assert_int_equal(r.last_deadline - r.start, 499 * PERIOD);
    /* The tick after an overrun starts late by the overrun only (15 ms), and
     * the one after it is back on time: lateness does not accumulate. */
    assert_int_equal(r.max_late, 15 * MS);
    assert_int_equal(r.late_ge_period, 0);
    /* 10 s of simulated time in total (the last body is a 35 ms one). */
    assert_int_equal(r.last_end - r.start, 499 * PERIOD + 35 * MS);
}

/* A naive "now + period" schedule would drift by every overrun; the grid
 * check above would catch it. This one checks the same with no overrun:
 * every tick runs exactly on its deadline, after a sleep. */
static void test_short_bodies_run_on_deadline(void **state)
{
    (void)state;
    sim_t sim = {.now = 1};
    run_t r = {.stop_seq = 49};
    wy_tick_stats_t st = run_sim(&sim, &r, NULL, NULL);
    assert_int_equal(st.ticks, 50);
    assert_int_equal(st.overruns, 0);
    assert_int_equal(r.max_late, 0);
    assert_int_equal(r.off_grid, 0);
    assert_int_equal(sim.sleeps, 49); /* one sleep before each tick after the first */
}

/* A 105 ms stall at tick 10 (due at 200 ms, ends at 305 ms): deadlines 220
 * .. 300 ms are past, so five are skipped and tick 16 runs on time at 320 ms
 * with info.skipped = 5; nothing runs back to back. */
static void test_long_stall_skips_without_burst(void **state)
{
    (void)state;
    sim_t sim = {.now = 1000 * MS};
    run_t r = {.stop_seq = 30, .stall_seq = 10, .stall_ns = 105 * MS};
    wy_tick_stats_t st = run_sim(&sim, &r, NULL, NULL);
    assert_int_equal(st.skipped, 5);
    assert_int_equal(st.overruns, 1);
    assert_int_equal(st.ticks, 31 - 5);
    assert_int_equal(st.ticks + st.skipped, 31); /* every deadline either ran or was skipped */
    assert_int_equal(r.skipped_seen, 5);
    assert_int_equal(r.seq_gaps, 0);
    assert_int_equal(r.after_stall.seq, 16);
    assert_int_equal(r.after_stall.skipped, 5);
    assert_int_equal(r.after_stall.deadline, r.start + 16 * PERIOD);
    assert_int_equal(r.after_stall.lateness, 0);
    assert_int_equal(r.max_late, 0); /* no tick ran late: no burst of catch-up ticks */
    assert_int_equal(r.off_grid, 0);
}

/* A stall of exactly k periods: the deadline that falls on "now" runs, late by
 * nothing; only the ones strictly past are skipped. */
static void test_stall_of_whole_periods(void **state)
{
    (void)state;
    sim_t sim = {.now = 5};
    /* Tick 0 ends at 60 ms: deadlines 20, 40 are past, 60 is now. */
    run_t r = {.stop_seq = 4, .stall_seq = 0, .stall_ns = 60 * MS};
    wy_tick_stats_t st = run_sim(&sim, &r, NULL, NULL);
    assert_int_equal(st.skipped, 2);
    assert_int_equal(r.after_stall.seq, 3);
    assert_int_equal(r.after_stall.lateness, 0);
}

static void test_histograms_and_stop_before_run(void **state)
{
    (void)state;
    static const double b[] = {0.001, 0.01, 0.1};
    wy_metric_t *dur = wy_metrics_histogram("wy_test_tick_seconds", "Tick body.", NULL, b, 3);
    wy_metric_t *late =
        wy_metrics_histogram("wy_test_tick_lateness_seconds", "Tick lateness.", NULL, b, 3);
    sim_t sim = {.now = 7};
    run_t r = {.stop_seq = 9, .overrun_every = 2};
    wy_tick_stats_t st = run_sim(&sim, &r, dur, late);
    assert_int_equal(st.ticks, 10);
    assert_true(wy_metric_value(dur) == 10);
    assert_true(wy_metric_value(late) == 10);

    /* A stop asked before the loop starts: no body runs. */
    wy_tick_t t;
    sim_init(&t, &sim, NULL, NULL);
    run_t r2 = {.sim = &sim, .stop_seq = 100};
    wy_tick_stop(&t);
    wy_tick_run(&t, body, &r2);
    assert_int_equal(r2.bodies, 0);
    wy_metrics_reset();
}

static void test_init_rejects_bad_options(void **state)
{
    (void)state;
    wy_tick_t t;
    assert_int_equal(wy_tick_init(&t, &(wy_tick_opts_t){.period_ns = 0}), WY_EINVAL);
    assert_int_equal(wy_tick_init(&t, &(wy_tick_opts_t){.period_ns = 1, .clock = sim_clock}),
                     WY_EINVAL);
    assert_int_equal(wy_tick_init(&t, &(wy_tick_opts_t){.period_ns = 1, .sleep = sim_sleep}),
                     WY_EINVAL);
}

/* Real clock: ticks run in order on the 1 ms grid; what is asserted holds
 * however slow the machine is (late ticks are skipped, not lost from seq). */
typedef struct {
    uint64_t bodies, last_seq, first_deadline, off_grid;
} real_t;

static void real_body(wy_tick_t *t, const wy_tick_info_t *ti, void *ud)
{
    real_t *r = ud;
    if (r->bodies == 0)
        r->first_deadline = ti->deadline;
    if (ti->deadline != r->first_deadline + ti->seq * ti->period || ti->now < ti->deadline)
        r->off_grid++;
    r->last_seq = ti->seq;
    if (++r->bodies == 5)
        wy_tick_stop(t);
}

static void test_real_clock_runs(void **state)
{
    (void)state;
    wy_tick_t t;
    assert_int_equal(wy_tick_init(&t, &(wy_tick_opts_t){.period_ns = MS}), WY_OK);
    real_t r = {0};
    wy_tick_run(&t, real_body, &r);
    wy_tick_stats_t st;
    wy_tick_stats(&t, &st);
    assert_int_equal(r.bodies, 5);
    assert_int_equal(st.ticks, 5);
    assert_int_equal(r.off_grid, 0);
    assert_int_equal(r.last_seq, 4 + st.skipped);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_50hz_with_overruns_keeps_rate_over_10s),
        cmocka_unit_test(test_short_bodies_run_on_deadline),
        cmocka_unit_test(test_long_stall_skips_without_burst),
        cmocka_unit_test(test_stall_of_whole_periods),
        cmocka_unit_test(test_histograms_and_stop_before_run),
        cmocka_unit_test(test_init_rejects_bad_options),
        cmocka_unit_test(test_real_clock_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
