/* wy-gamebench — figures of `make bench` for wy-game.
 *
 *   wy-gamebench tick [--bots N]... [--seconds S] [--rate HZ] [--input-hz HZ] [--size M] [--json]
 *
 * tick: the pure in-process tick cost, no network: one partition of an open zone M x M metres
 * holding N player entities (each a viewer with its own frame), driven at the zone's tick rate
 * as fast as the CPU allows (no sleeping: ticks run back to back, the simulation clock advances
 * one period per tick), each bot sending a random-walk input at --input-hz. Prints per N: tick
 * p50/p99/max, thread CPU per tick per 1,000 entities, bytes per client per second (p50/p99),
 * frames per client per tick, bytes per moving-entity update, and compares them with the goals
 * of issue 14 (tick p99 <= 10 ms at 2,000 bots; <= 4 bytes per moving-entity update; exactly 1
 * frame per client per tick).
 *
 * The partition code is compiled into this tool (the .c files are included below, as the unit
 * tests do): it measures the daemon's own code with nothing in between. */
#include "wy_core.h"

#include "../services/game/aoi.c"
#include "../services/game/move.c"
#include "../services/game/partition.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *usage_text =
    "usage: wy-gamebench tick [--bots N]... [--seconds S] [--rate HZ] [--input-hz HZ]\n"
    "                         [--size METRES] [--json]\n"
    "  In-process tick cost of one partition with N random-walking players (default 500,\n"
    "  1000, 2000), 20 Hz tick, 10 Hz input, 512 m zone, 10 s of simulated time each.\n";

#define MAX_RUNS 8

static struct {
    uint32_t bots[MAX_RUNS];
    int nbots;
    double seconds, rate, input_hz, size;
    bool json;
} opt = {.seconds = 10, .rate = 20, .input_hz = 10, .size = 512};

typedef struct {
    uint64_t *bytes; /* per connection, this run */
    uint64_t frames, frame_ticks_bad, last_tick;
    uint32_t *frames_in_tick; /* per connection */
} sink_t;

static void on_frame(void *ud, const game_frame_t *f)
{
    sink_t *s = ud;
    s->bytes[f->conn] += f->nentered + f->nchanged + f->nleft;
    s->frames++;
    s->frames_in_tick[f->conn]++;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 16);
}

static int run_tick(uint32_t n, bool first)
{
    game_walk_t walk = {.width = opt.size, .height = opt.size};
    game_partition_opts_t o;
    game_partition_opts_default(&o, &walk);
    o.max_entities = n + 16;
    o.max_players = n + 1;
    sink_t sink = {.bytes = wy_calloc(n + 1, sizeof(uint64_t)),
                   .frames_in_tick = wy_calloc(n + 1, sizeof(uint32_t))};
    o.on_frame = on_frame;
    o.ud = &sink;
    game_partition_t *p;
    const char *err = NULL;
    if (game_partition_new(&o, &p, &err) != WY_OK) {
        fprintf(stderr, "wy-gamebench: %s\n", err);
        return 1;
    }
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ n;
    uint64_t period = (uint64_t)(1e9 / opt.rate);
    uint32_t *seq = wy_calloc(n + 1, sizeof(uint32_t));
    for (uint32_t id = 1; id <= n; id++) {
        double x = 1 + rnd(&seed) % (uint32_t)(opt.size - 2);
        double y = 1 + rnd(&seed) % (uint32_t)(opt.size - 2);
        game_partition_add(p, id, GAME_KIND_PLAYER, x, y, id, 0);
    }
    uint64_t ticks = (uint64_t)(opt.seconds * opt.rate);
    uint64_t *dur = wy_malloc(ticks * sizeof(uint64_t));
    /* Inputs at input_hz: bot i sends on ticks where its phase comes round. */
    double every = opt.rate / opt.input_hz;
    uint64_t frames_bad = 0, cpu = 0;
    /* Warm-up: two seconds, not measured (everyone enters everyone's view). */
    uint64_t warm = (uint64_t)(2 * opt.rate);
    for (uint64_t t = 0; t < warm + ticks; t++) {
        uint64_t now = t * period;
        for (uint32_t id = 1; id <= n; id++) {
            if (fmod((double)t + id, every) >= 1.0)
                continue;
            seq[id]++;
            game_input_t in = {.seq = seq[id],
                               .mode = rnd(&seed) % 8 == 0 ? GAME_MODE_IDLE : GAME_MODE_WALK,
                               .dir = (uint16_t)rnd(&seed)};
            game_partition_input(p, id, &in);
        }
        if (t == warm) {
            memset(sink.bytes, 0, (n + 1) * sizeof(uint64_t));
            sink.frames = 0;
        }
        uint64_t c0 = thread_cpu_ns(), t0 = wy_now_ns();
        game_partition_tick(p, t, now, 1.0 / opt.rate);
        uint64_t t1 = wy_now_ns(), c1 = thread_cpu_ns();
        for (uint32_t id = 1; id <= n; id++) {
            if (sink.frames_in_tick[id] != 1)
                frames_bad++;
            sink.frames_in_tick[id] = 0;
        }
        if (t >= warm) {
            dur[t - warm] = t1 - t0;
            cpu += c1 - c0;
        }
    }
    game_partition_stats_t st;
    game_partition_stats(p, &st);
    qsort(dur, ticks, sizeof *dur, cmp_u64);
    uint64_t *bps = wy_malloc(n * sizeof(uint64_t));
    for (uint32_t id = 1; id <= n; id++)
        bps[id - 1] = (uint64_t)((double)sink.bytes[id] / opt.seconds);
    qsort(bps, n, sizeof *bps, cmp_u64);
    double p50 = pct(dur, ticks, 0.5) / 1e6, p99 = pct(dur, ticks, 0.99) / 1e6,
           mx = dur[ticks - 1] / 1e6;
    double cpu_per_1k = (double)cpu / ticks / 1e6 / n * 1000;
    double fpt = (double)sink.frames / ticks / n;
    double bpm = st.moves ? (double)st.move_bytes / st.moves : 0;
    double visible = st.frames ? (double)st.entered / n : 0;
    (void)visible;
    if (opt.json) {
        printf("{\"bots\":%u,\"tick_p50_ms\":%.3f,\"tick_p99_ms\":%.3f,\"tick_max_ms\":%.3f,"
               "\"cpu_ms_per_tick_per_1000\":%.3f,\"bytes_per_client_s_p50\":%llu,"
               "\"bytes_per_client_s_p99\":%llu,\"frames_per_client_tick\":%.4f,"
               "\"frames_missing_or_extra\":%llu,\"bytes_per_move\":%.3f,\"aoi_dropped\":%llu}\n",
               n, p50, p99, mx, cpu_per_1k, (unsigned long long)pct(bps, n, 0.5),
               (unsigned long long)pct(bps, n, 0.99), fpt, (unsigned long long)frames_bad, bpm,
               (unsigned long long)st.aoi_dropped);
    } else {
        if (first)
            printf("%-6s %9s %9s %9s %14s %12s %12s %12s %10s\n", "bots", "tick p50", "tick p99",
                   "tick max", "CPU/tick/1k", "B/s/cl p50", "B/s/cl p99", "frames/cl/t", "B/move");
        printf("%-6u %7.3fms %7.3fms %7.3fms %12.3fms %12llu %12llu %12.4f %10.3f\n", n, p50, p99,
               mx, cpu_per_1k, (unsigned long long)pct(bps, n, 0.5),
               (unsigned long long)pct(bps, n, 0.99), fpt, bpm);
        if (n >= 2000)
            printf("  goal: 2,000 bots tick p99 <= 10 ms: %s (%.3f ms)\n",
                   p99 <= 10 ? "met" : "MISSED", p99);
        printf("  goal: <= 4 bytes per moving-entity update: %s (%.3f); exactly 1 frame per "
               "client per tick: %s (%llu off)\n",
               bpm <= 4 ? "met" : "MISSED", bpm, frames_bad == 0 ? "met" : "MISSED",
               (unsigned long long)frames_bad);
    }
    game_partition_free(p);
    wy_free(dur);
    wy_free(bps);
    wy_free(seq);
    wy_free(sink.bytes);
    wy_free(sink.frames_in_tick);
    return 0;
}

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "tick") != 0)
        return usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            opt.json = true;
            continue;
        }
        if (v == NULL)
            return usage();
        i++;
        if (strcmp(a, "--bots") == 0 && opt.nbots < MAX_RUNS && atoi(v) > 0 && atoi(v) <= 100000)
            opt.bots[opt.nbots++] = (uint32_t)atoi(v);
        else if (strcmp(a, "--seconds") == 0 && atof(v) > 0)
            opt.seconds = atof(v);
        else if (strcmp(a, "--rate") == 0 && atof(v) >= 1 && atof(v) <= 120)
            opt.rate = atof(v);
        else if (strcmp(a, "--input-hz") == 0 && atof(v) > 0 && atof(v) <= 120)
            opt.input_hz = atof(v);
        else if (strcmp(a, "--size") == 0 && atof(v) >= 16 && atof(v) <= 100000)
            opt.size = atof(v);
        else
            return usage();
    }
    if (opt.nbots == 0) {
        opt.bots[0] = 500;
        opt.bots[1] = 1000;
        opt.bots[2] = 2000;
        opt.nbots = 3;
    }
    if (!opt.json)
        printf("wy-gamebench tick: one partition, %.0f x %.0f m open zone, %.0f Hz tick, %.0f Hz "
               "input, random walk, %.0f s measured after 2 s warm-up; view radius 64 m + 8 m "
               "margin, at most 256 visible per player\n",
               opt.size, opt.size, opt.rate, opt.input_hz, opt.seconds);
    for (int i = 0; i < opt.nbots; i++)
        if (run_tick(opt.bots[i], i == 0) != 0)
            return 1;
    return 0;
}
