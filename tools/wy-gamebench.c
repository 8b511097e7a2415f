/* wy-gamebench — figures of `make bench` for wy-game.
 *
 *   wy-gamebench tick [--bots N]... [--seconds S] [--rate HZ] [--input-hz HZ] [--size M] [--json]
 *   wy-gamebench bots --ws HOST:PORT --ops HOST:PORT --key PEM --kid KID --game ID
 *                     --incarnation INC [--zone Z] [--instance I] [--bots N] [--seconds S]
 *                     [--input-hz HZ] [--json]
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
 * bots: N bots (+2 that measure latency) enter a running wy-game and random-walk at --input-hz.
 * Two ways in, and the output says which ran:
 *   real road (default, --auth-url/--lobby-url): each bot is a libs/client client: auth device
 *     login (a new account), lobby hello, a new character through the lobby (lobby -> wy-actor),
 *     lobby enter_game (actor check, World.Place, lobby signs the ticket), then it connects to
 *     the game address lobby answered and joins with lobby's ticket. The lobby sessions stay
 *     open (heartbeats) while the bots play, as a real client's do. Where they stand is world's
 *     choice (the start zone's spawn points); every bot must land in one zone instance.
 *   --self-signed: the bots sign their own tickets (wy_ticket, the key lobby signs with) for a
 *     given zone instance, spread over the zone's south part (y >= 200 m: clear of meadow's
 *     blocked cells). No auth, lobby, actor or world at all: isolates the game server's cost.
 * Either way the game connections are this tool's own epoll WebSocket client (the wire
 * protocol of libs/client's wyc_game, one thread for every bot): it reads each bot's updates
 * and keeps its mirror (wy_gamewire), as a client does, so both modes measure the same way.
 * Four more pairs of bots measure the input-to-visible latency: each probe runs and reverses
 * (east, west, east, ...) every 50-150 ms, and an observer next to it times from the probe's
 * input until its own mirror first shows the probe moving the new way. Prints tick p50/p99
 * (the game's /metrics histogram over the measured interval), tick max (the histogram bucket
 * bounding the interval's worst tick, and the partition's worst since it started), overruns,
 * the game process's CPU per 1,000 entities, the bots' own CPU (this process: it shares the
 * machine's cores with the game) and the whole machine's busy share, bytes per second per
 * client (p50/p99), frames per client per tick and the latency p50/p99, against the goals.
 * Exit status: 0 ran, 1 failed while running, 2 usage, 3 the real road did not let every bot in
 * (stderr says where it stopped: tools/bench then falls back to --self-signed).
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
    "  1000, 2000), 20 Hz tick, 10 Hz input, 512 m zone, 10 s of simulated time each.\n"
    "usage: wy-gamebench bots --auth-url URL --lobby-url URL --ops HOST:PORT [--bots N]\n"
    "                         [--seconds S] [--input-hz HZ] [--json]\n"
    "  N bots enter through the real road (auth device login, lobby hello, new character,\n"
    "  enter_game, join with lobby's ticket) and random-walk (default 500 bots, 10 Hz\n"
    "  input, 10 s measured). --ops is the game's ops address (its /metrics).\n"
    "       wy-gamebench bots --self-signed --ws HOST:PORT --ops HOST:PORT --key PEM --kid KID\n"
    "                         --game ID --incarnation INC [--zone Z] [--instance I] [--bots N]\n"
    "                         [--seconds S] [--input-hz HZ] [--json]\n"
    "  N bots join wy-game directly with tickets signed by PEM (default meadow#1): the game\n"
    "  server's cost alone.\n";

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

static bool on_frame(void *ud, const game_frame_t *f)
{
    sink_t *s = ud;
    s->bytes[f->conn] += f->nentered + f->nchanged + f->nleft;
    s->frames++;
    s->frames_in_tick[f->conn]++;
    return true;
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

/* ================================================================ bots (network) */

#include "client/wyc.h"
#include "game.pb-c.h"
#include "wy_ticket.h"
#include "wy_token.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static struct {
    const char *ws, *ops, *key, *kid, *game, *inc, *zone, *inst;
    const char *auth_url, *lobby_url;
    uint32_t bots;
    double seconds, input_hz;
    bool json, self_signed;
} bo = {.zone = "meadow", .inst = "meadow#1", .bots = 500, .seconds = 10, .input_hz = 10};

typedef struct {
    int fd;
    uint32_t entity;
    uint8_t *rbuf;
    size_t rlen, rcap;
    wy_gw_entity_t ents[512];
    wy_gw_mirror_t m;
    uint32_t seq;
    uint64_t next_input_ns;
    uint64_t bytes, frames, last_tick, ticks_seen, dup_ticks, gaps;
    bool closed;
    double x, y; /* where it entered */
} bot_t;

static bot_t *bots_arr;
static uint32_t nbots;
/* The latency pairs: bots_arr[probe[k].probe] runs and reverses, bots_arr[probe[k].obs] watches
 * it; every other bot walks. */
#define NPAIRS 4
typedef struct {
    uint32_t probe, obs;
    int want;        /* the direction the probe was last told: +1 east, -1 west, 0 none yet */
    bool waiting;    /* since sent_ns, until the observer sees it move the wanted way */
    bool seen;       /* last_qx is set */
    int32_t last_qx; /* the probe's x in the observer's mirror at its last update */
    uint64_t sent_ns, next_ns;
} pair_t;
static pair_t pairs[NPAIRS];
static uint64_t lat_lost; /* reversals not seen within 2 s (measured interval) */
static int ep = -1;       /* epoll of every joined bot's socket */
static bool measuring;
static uint64_t *lat_ns;
static size_t nlat, lat_cap;

/* Connects to host:port (a numeric address, or a name: lobby may answer one); blocking. */
static int dial(const char *hp)
{
    char host[256];
    const char *c = strrchr(hp, ':');
    if (!c || (size_t)(c - hp) >= sizeof host)
        return -1;
    memcpy(host, hp, (size_t)(c - hp));
    host[c - hp] = 0;
    struct sockaddr_in a;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, c + 1, &hints, &res) != 0 || !res)
        return -1;
    memcpy(&a, res->ai_addr, sizeof a);
    freeaddrinfo(res);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            usleep(100);
            continue;
        }
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_ws(int fd, const uint8_t *p, size_t n)
{
    uint8_t buf[16 + 4096];
    if (n > 4096)
        return -1;
    size_t hl = 0;
    buf[hl++] = 0x82;
    if (n < 126) {
        buf[hl++] = (uint8_t)(0x80 | n);
    } else {
        buf[hl++] = 0x80 | 126;
        buf[hl++] = (uint8_t)(n >> 8);
        buf[hl++] = (uint8_t)n;
    }
    static const uint8_t mask[4] = {0x5a, 0xa5, 0x3c, 0xc3};
    memcpy(buf + hl, mask, 4);
    hl += 4;
    for (size_t i = 0; i < n; i++)
        buf[hl + i] = p[i] ^ mask[i & 3];
    return write_all(fd, buf, hl + n);
}

static int send_msg(int fd, const Wyvern__Game__ClientMessage *m)
{
    uint8_t buf[4096];
    size_t n = wyvern__game__client_message__get_packed_size(m);
    if (n > sizeof buf)
        return -1;
    wyvern__game__client_message__pack(m, buf);
    return send_ws(fd, buf, n);
}

/* One complete server frame at the head of b->rbuf: its payload (offset, length) and total
 * size, or 0 when more bytes are needed; -1 when malformed. */
static long frame_at(const bot_t *b, size_t *off, size_t *len, int *op)
{
    if (b->rlen < 2)
        return 0;
    const uint8_t *h = b->rbuf;
    uint64_t n = h[1] & 0x7f;
    size_t hl = 2;
    if (n == 126) {
        if (b->rlen < 4)
            return 0;
        n = (uint64_t)h[2] << 8 | h[3];
        hl = 4;
    } else if (n == 127) {
        if (b->rlen < 10)
            return 0;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | h[2 + i];
        hl = 10;
        if (n > (1u << 24))
            return -1;
    }
    if (b->rlen < hl + n)
        return 0;
    *off = hl;
    *len = (size_t)n;
    *op = h[0] & 0x0f;
    return (long)(hl + n);
}

static void on_update(bot_t *b, uint32_t idx, const Wyvern__Game__Update *u, uint64_t now)
{
    const char *err = NULL;
    if (wy_gw_mirror_apply(&b->m, u->reset, u->entered.data, u->entered.len, u->changed.data,
                           u->changed.len, u->left.data, u->left.len, NULL, &err) != WY_OK) {
        fprintf(stderr, "wy-gamebench: bot %u: bad update: %s\n", idx, err);
        exit(1);
    }
    if (b->ticks_seen > 0) {
        if (u->tick == b->last_tick)
            b->dup_ticks++;
        else if (u->tick > b->last_tick + 1)
            b->gaps += u->tick - b->last_tick - 1;
    }
    b->last_tick = u->tick;
    b->ticks_seen++;
    for (int k = 0; k < NPAIRS; k++) {
        pair_t *pr = &pairs[k];
        if (idx != pr->obs)
            continue;
        const wy_gw_entity_t *p = wy_gw_mirror_find(&b->m, bots_arr[pr->probe].entity);
        if (!p) {
            pr->seen = false;
            continue;
        }
        int64_t d = pr->seen ? (int64_t)p->qx - pr->last_qx : 0;
        pr->last_qx = p->qx;
        pr->seen = true;
        if (pr->waiting && d * pr->want > 0) {
            pr->waiting = false;
            if (measuring && nlat < lat_cap)
                lat_ns[nlat++] = now - pr->sent_ns;
        }
    }
}

/* Why bots were disconnected: WebSocket close codes (0: the connection ended without one). */
static struct {
    int code;
    uint32_t n;
} closes[8];

static void count_close(int code)
{
    size_t i = 0;
    while (i < WY_ARRAY_LEN(closes) - 1 && closes[i].n && closes[i].code != code)
        i++;
    closes[i].code = code;
    closes[i].n++;
}

static int read_bot(bot_t *b, uint32_t idx, uint64_t now)
{
    for (;;) {
        if (b->rcap - b->rlen < 65536) {
            b->rcap = b->rcap ? b->rcap * 2 : 131072;
            b->rbuf = wy_realloc(b->rbuf, b->rcap);
        }
        ssize_t r = read(b->fd, b->rbuf + b->rlen, b->rcap - b->rlen);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (r <= 0) {
            count_close(0);
            return -1;
        }
        b->rlen += (size_t)r;
        if (measuring)
            b->bytes += (uint64_t)r;
    }
    size_t pos = 0;
    for (;;) {
        size_t off, len;
        int op;
        bot_t view = *b;
        view.rbuf = b->rbuf + pos;
        view.rlen = b->rlen - pos;
        long n = frame_at(&view, &off, &len, &op);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (op == 0x8) {
            const uint8_t *c = b->rbuf + pos + off;
            count_close(len >= 2 ? c[0] << 8 | c[1] : 0);
            return -1;
        }
        if (op == 0x9 && len <= 125) {
            /* A ping: pong with its payload, as a client must (the observers send nothing
             * else, and the game closes a connection idle for WY_HTTP's ws idle timeout). */
            uint8_t pong[2 + 4 + 125];
            static const uint8_t mask[4] = {0x1f, 0x2e, 0x3d, 0x4c};
            pong[0] = 0x8a;
            pong[1] = (uint8_t)(0x80 | len);
            memcpy(pong + 2, mask, 4);
            for (size_t k = 0; k < len; k++)
                pong[6 + k] = b->rbuf[pos + off + k] ^ mask[k & 3];
            if (write_all(b->fd, pong, 6 + len) != 0)
                return -1;
        }
        if (op == 0x2) {
            Wyvern__Game__ServerMessage *m =
                wyvern__game__server_message__unpack(NULL, len, b->rbuf + pos + off);
            if (m && m->body_case == WYVERN__GAME__SERVER_MESSAGE__BODY_UPDATE) {
                on_update(b, idx, m->update, now);
                if (measuring)
                    b->frames++;
            }
            if (m)
                wyvern__game__server_message__free_unpacked(m, NULL);
        }
        pos += (size_t)n;
    }
    memmove(b->rbuf, b->rbuf + pos, b->rlen - pos);
    b->rlen -= pos;
    return 0;
}

static void bot_input(bot_t *b, uint8_t mode, uint16_t dir)
{
    Wyvern__Game__Input in = WYVERN__GAME__INPUT__INIT;
    in.seq = ++b->seq;
    in.mode = (Wyvern__Game__MoveMode)mode;
    in.dir = dir;
    Wyvern__Game__ClientMessage m = WYVERN__GAME__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__GAME__CLIENT_MESSAGE__BODY_INPUT;
    m.input = &in;
    if (send_msg(b->fd, &m) != 0)
        b->closed = true;
}

/* Connects to addr, upgrades and joins with ticket, reads until the welcome; blocking. On
 * success the socket is non-blocking and in the epoll set (data = i). */
static int bot_ws_join(bot_t *b, uint32_t i, const char *addr, const char *ticket)
{
    b->fd = dial(addr);
    if (b->fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /v1/game HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     addr);
    if (write_all(b->fd, req, (size_t)n) != 0)
        return -1;
    char head[1024];
    size_t hl = 0;
    while (hl < sizeof head - 1) {
        if (read(b->fd, head + hl, 1) != 1)
            return -1;
        hl++;
        if (hl >= 4 && memcmp(head + hl - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[hl] = 0;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0)
        return -1;
    Wyvern__Game__Join j = WYVERN__GAME__JOIN__INIT;
    j.ticket = (char *)ticket;
    j.client_version = "wy-gamebench";
    Wyvern__Game__ClientMessage m = WYVERN__GAME__CLIENT_MESSAGE__INIT;
    m.request_id = 1;
    m.body_case = WYVERN__GAME__CLIENT_MESSAGE__BODY_JOIN;
    m.join = &j;
    if (send_msg(b->fd, &m) != 0)
        return -1;
    /* Read until the welcome (updates may follow at once: keep them in the buffer). */
    wy_gw_mirror_init(&b->m, b->ents, WY_ARRAY_LEN(b->ents));
    for (;;) {
        if (b->rcap - b->rlen < 65536) {
            b->rcap = b->rcap ? b->rcap * 2 : 131072;
            b->rbuf = wy_realloc(b->rbuf, b->rcap);
        }
        ssize_t r = read(b->fd, b->rbuf + b->rlen, b->rcap - b->rlen);
        if (r <= 0)
            return -1;
        b->rlen += (size_t)r;
        size_t off, len;
        int op;
        long fl = frame_at(b, &off, &len, &op);
        if (fl < 0)
            return -1;
        if (fl == 0)
            continue;
        Wyvern__Game__ServerMessage *sm =
            wyvern__game__server_message__unpack(NULL, len, b->rbuf + off);
        bool ok = sm && sm->body_case == WYVERN__GAME__SERVER_MESSAGE__BODY_WELCOME;
        if (ok) {
            b->entity = (uint32_t)sm->welcome->entity_id;
        } else if (sm && sm->body_case == WYVERN__GAME__SERVER_MESSAGE__BODY_ERROR) {
            fprintf(stderr, "wy-gamebench: join refused: %s\n", sm->error->message);
        }
        if (sm)
            wyvern__game__server_message__free_unpacked(sm, NULL);
        memmove(b->rbuf, b->rbuf + fl, b->rlen - (size_t)fl);
        b->rlen -= (size_t)fl;
        if (!ok)
            return -1;
        break;
    }
    fcntl(b->fd, F_SETFL, fcntl(b->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    return epoll_ctl(ep, EPOLL_CTL_ADD, b->fd, &ev);
}

/* --self-signed: joins with a ticket this tool signs for (x, y) in bo.inst; blocking. */
static int bot_join_signed(wy_jwt_keyset_t *ks, bot_t *b, uint32_t i, double x, double y)
{
    wy_ticket_t t = {0};
    snprintf(t.account, sizeof t.account, "bench-acct-%u", i);
    snprintf(t.character, sizeof t.character, "bench-char-%u-%llu", i,
             (unsigned long long)wy_now_ns());
    snprintf(t.zone, sizeof t.zone, "%s", bo.zone);
    snprintf(t.instance, sizeof t.instance, "%s", bo.inst);
    snprintf(t.game, sizeof t.game, "%s", bo.game);
    snprintf(t.incarnation, sizeof t.incarnation, "%s", bo.inc);
    t.x = x;
    t.y = y;
    char *tok = NULL;
    const char *err = NULL;
    if (wy_ticket_sign(ks, bo.kid, &t, 30000, 0, &tok, NULL, &err) != WY_OK) {
        fprintf(stderr, "wy-gamebench: cannot sign a ticket: %s\n", err);
        exit(2);
    }
    b->x = x;
    b->y = y;
    int rc = bot_ws_join(b, i, bo.ws, tok);
    wy_free(tok);
    return rc;
}

/* GET path of the ops server: the body in a new string (caller frees), or NULL. */
static char *http_get(const char *hp, const char *path)
{
    int fd = dial(hp);
    if (fd < 0)
        return NULL;
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     path, hp);
    if (write_all(fd, req, (size_t)n) != 0) {
        close(fd);
        return NULL;
    }
    size_t len = 0, cap = 1 << 16;
    char *buf = wy_malloc(cap);
    for (;;) {
        if (cap - len < 4096)
            buf = wy_realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    char *out = body ? wy_strdup(body + 4) : NULL;
    wy_free(buf);
    return out;
}

typedef struct {
    double le[32];
    double count[32];
    size_t n;
    double cpu, overruns, players;
    double tick_cpu, ticks, frames, dropped, skipped; /* summed over the instance's partitions */
    uint32_t regions;
    char prio[96];     /* the partition workers' scheduling priority ("rt:10 rt:10") */
    double prio_drops; /* times a real-time worker was dropped back to normal */
} scrape_t;

/* "rt:N" / "nice:N" / "normal" of one worker from its wy_game_worker_rt_priority and
 * wy_game_worker_nice lines, appended to s->prio in worker order. */
static void scrape_prio(scrape_t *s, const char *line)
{
    static double rt[64], nice[64];
    static bool seen_rt[64], seen_nice[64];
    bool is_rt = strncmp(line, "wy_game_worker_rt_priority{", 27) == 0;
    bool is_nice = strncmp(line, "wy_game_worker_nice{", 20) == 0;
    if (strncmp(line, "wy_game_worker_priority_drops_total{", 36) == 0 && strrchr(line, ' '))
        s->prio_drops += atof(strrchr(line, ' ') + 1);
    const char *w = strstr(line, "worker=\"");
    if ((!is_rt && !is_nice) || !w || !strrchr(line, ' '))
        return;
    int i = atoi(w + 8);
    if (i < 0 || i >= 64)
        return;
    double v = atof(strrchr(line, ' ') + 1);
    if (is_rt) {
        rt[i] = v;
        seen_rt[i] = true;
    } else {
        nice[i] = v;
        seen_nice[i] = true;
    }
    if (!seen_rt[i] || !seen_nice[i])
        return;
    size_t o = strlen(s->prio);
    if (o + 16 >= sizeof s->prio)
        return;
    if (rt[i] > 0)
        snprintf(s->prio + o, sizeof s->prio - o, "%srt:%.0f", o ? " " : "", rt[i]);
    else if (nice[i] != 0)
        snprintf(s->prio + o, sizeof s->prio - o, "%snice:%.0f", o ? " " : "", nice[i]);
    else
        snprintf(s->prio + o, sizeof s->prio - o, "%snormal", o ? " " : "");
    seen_rt[i] = seen_nice[i] = false;
}

/* The value of a metric line, added to *acc when the line is `name{...partition...} v`. */
static bool sum_metric(const char *line, const char *name, const char *want, double *acc)
{
    size_t nl = strlen(name);
    if (strncmp(line, name, nl) != 0 || line[nl] != '{' || !strstr(line, want) ||
        !strrchr(line, ' '))
        return false;
    *acc += atof(strrchr(line, ' ') + 1);
    return true;
}

/* The bucket counts of wy_game_tick_seconds summed over the zone instance's partitions, and the
 * process CPU seconds. */
static void scrape(scrape_t *s)
{
    memset(s, 0, sizeof *s);
    char *body = http_get(bo.ops, "/metrics");
    if (!body)
        return;
    char want[128];
    snprintf(want, sizeof want, "partition=\"%s/", bo.inst);
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "wy_game_process_cpu_seconds_total ", 34) == 0)
            s->cpu = atof(line + 34);
        if (strncmp(line, "wy_game_tick_overruns_total{", 28) == 0 && strstr(line, want) &&
            strrchr(line, ' '))
            s->overruns += atof(strrchr(line, ' ') + 1);
        if (strncmp(line, "wy_game_entities{", 17) == 0 && strstr(line, want) &&
            strstr(line, "kind=\"player\"") && strrchr(line, ' '))
            s->players += atof(strrchr(line, ' ') + 1);
        sum_metric(line, "wy_game_tick_cpu_seconds_total", want, &s->tick_cpu);
        if (sum_metric(line, "wy_game_ticks_total", want, &s->ticks))
            s->regions++;
        sum_metric(line, "wy_game_frames_sent_total", want, &s->frames);
        sum_metric(line, "wy_game_frames_dropped_total", want, &s->dropped);
        sum_metric(line, "wy_game_ticks_skipped_total", want, &s->skipped);
        scrape_prio(s, line);
        if (strncmp(line, "wy_game_tick_seconds_bucket{", 28) != 0 || !strstr(line, want))
            continue;
        char *le = strstr(line, "le=\"");
        char *val = strrchr(line, ' ');
        if (!le || !val)
            continue;
        double bound = strncmp(le + 4, "+Inf", 4) == 0 ? INFINITY : atof(le + 4);
        size_t i = 0;
        while (i < s->n && s->le[i] != bound)
            i++;
        if (i == s->n && s->n < 32)
            s->le[s->n++] = bound;
        if (i < 32)
            s->count[i] += atof(val + 1);
    }
    wy_free(body);
}

/* Ticks in bucket i and below during the interval (b - a). */
static double hist_count(const scrape_t *a, const scrape_t *b, size_t i)
{
    return b->count[i] - (a->n == b->n ? a->count[i] : 0);
}

/* Percentile (seconds) from cumulative bucket counts (b - a), linear inside a bucket. */
static double hist_pct(const scrape_t *a, const scrape_t *b, double q)
{
    double total = b->n ? hist_count(a, b, b->n - 1) : 0;
    if (total <= 0)
        return NAN;
    double want = q * total, prev_c = 0, prev_le = 0;
    for (size_t i = 0; i < b->n; i++) {
        double c = hist_count(a, b, i);
        if (c >= want) {
            if (isinf(b->le[i]))
                return prev_le;
            double frac = c > prev_c ? (want - prev_c) / (c - prev_c) : 1;
            return prev_le + frac * (b->le[i] - prev_le);
        }
        prev_c = c;
        prev_le = b->le[i];
    }
    return prev_le;
}

/* The upper bound (seconds) of the lowest bucket holding every tick of the interval (b - a):
 * the interval's worst tick is at most this; NAN without samples. */
static double hist_max_bound(const scrape_t *a, const scrape_t *b)
{
    double total = b->n ? hist_count(a, b, b->n - 1) : 0;
    if (total <= 0)
        return NAN;
    size_t i = 0;
    while (hist_count(a, b, i) < total)
        i++;
    return b->le[i];
}

static double tick_max_ms(void)
{
    char *body = http_get(bo.ops, "/metrics");
    double mx = NAN;
    if (!body)
        return mx;
    char want[128];
    snprintf(want, sizeof want, "wy_game_tick_max_seconds{partition=\"%s/", bo.inst);
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n"))
        if (strncmp(line, want, strlen(want)) == 0) {
            double v = atof(strrchr(line, ' ') + 1) * 1e3;
            mx = isnan(mx) || v > mx ? v : mx;
        }
    wy_free(body);
    return mx;
}

/* A JSON number, or null when v is not finite (no sample). */
static const char *jnum(char buf[32], double v)
{
    if (!isfinite(v))
        return "null";
    snprintf(buf, 32, "%.4f", v);
    return buf;
}

/* ---------------------------------------------------------------- the real road (libs/client) */

enum { ST_LOGIN = 1, ST_LOBBY, ST_CHARACTER, ST_ENTER, ST_JOINED, ST_FAILED };
static const char *const stage_name[] = {"",           "auth login", "lobby hello", "character",
                                         "enter_game", "joined",     "failed"};

typedef struct {
    uint32_t idx;
    wyc_client_t *c;
    int stage;
} entrant_t;

static struct {
    uv_loop_t loop;
    wyc_ctx_t *ctx;
    entrant_t *e;
    uint32_t next, inflight, joined, failed;
    uint32_t failed_at[ST_FAILED + 1];
    char first_error[320];
    char prefix[24];
    char instance[80];
    uint32_t other_instance; /* bots placed in another zone instance than the first bot */
    bool closing;            /* real_road_close: completions of cancelled calls do nothing */
} R;

#define ENTRY_INFLIGHT 64 /* bots on their way in at once */

static void entry_pump(void);
static void pump(int ms, uint64_t *now);

static void entry_fail(entrant_t *e, const char *what, const wyc_error_t *err)
{
    if (R.closing)
        return;
    R.failed_at[e->stage]++;
    if (!R.first_error[0])
        snprintf(R.first_error, sizeof R.first_error, "bot %u at %s: %s%s%.200s [%s]", e->idx,
                 stage_name[e->stage], what, err ? ": " : "", err ? err->message : "",
                 err && err->server_code[0] ? err->server_code
                 : err                      ? wy_errname(err->code)
                                            : "-");
    e->stage = ST_FAILED;
    R.failed++;
    R.inflight--;
    entry_pump();
}

static void on_entered(wyc_client_t *c, const wyc_error_t *err, const wyc_entry_t *entry, void *ud)
{
    (void)c;
    entrant_t *e = ud;
    if (R.closing)
        return;
    if (!entry) {
        entry_fail(e, "enter_game refused", err);
        return;
    }
    if (!R.instance[0])
        snprintf(R.instance, sizeof R.instance, "%s", entry->instance_id);
    else if (strcmp(R.instance, entry->instance_id) != 0)
        R.other_instance++;
    bot_t *b = &bots_arr[e->idx];
    b->x = entry->x;
    b->y = entry->y;
    if (bot_ws_join(b, e->idx, entry->game_addr, entry->ticket) != 0) {
        entry_fail(e, "game join with lobby's ticket failed", NULL);
        return;
    }
    e->stage = ST_JOINED;
    R.joined++;
    R.inflight--;
    entry_pump();
}

static void on_character(wyc_client_t *c, const wyc_error_t *err, const wyc_character_t *chars,
                         size_t n, void *ud)
{
    entrant_t *e = ud;
    if (R.closing)
        return;
    if (err->code != WY_OK || n < 1) {
        entry_fail(e, "character create", err);
        return;
    }
    e->stage = ST_ENTER;
    int rc = wyc_lobby_enter_game(c, chars[0].actor_id, on_entered, e);
    if (rc != WY_OK) {
        wyc_error_t x = {.code = rc};
        snprintf(x.message, sizeof x.message, "%s", wy_strerror(rc));
        entry_fail(e, "enter_game not sent", &x);
    }
}

static void on_lobby_event(wyc_client_t *c, const wyc_event_t *ev, void *ud)
{
    entrant_t *e = ud;
    if (R.closing || !e || e->stage != ST_LOBBY)
        return;
    if (ev->type == WYC_EV_WELCOME) {
        e->stage = ST_CHARACTER;
        char name[48]; /* "g" + 7 hex + up to 5 digits: within a character name's 16 */
        snprintf(name, sizeof name, "%s%u", R.prefix, e->idx);
        int rc = wyc_character_create(c, name, "warrior", name, on_character, e);
        if (rc != WY_OK) {
            wyc_error_t x = {.code = rc};
            snprintf(x.message, sizeof x.message, "%s", wy_strerror(rc));
            entry_fail(e, "character create not sent", &x);
        }
    } else if (ev->type == WYC_EV_CLOSED || ev->type == WYC_EV_KICKED) {
        entry_fail(e, "lobby closed", &ev->error);
    }
}

static void on_login(wyc_client_t *c, const wyc_error_t *err, void *ud)
{
    entrant_t *e = ud;
    if (R.closing)
        return;
    if (err->code != WY_OK) {
        entry_fail(e, "device login", err);
        return;
    }
    e->stage = ST_LOBBY;
    int rc = wyc_lobby_connect(c);
    if (rc != WY_OK) {
        wyc_error_t x = {.code = rc};
        snprintf(x.message, sizeof x.message, "%s", wy_strerror(rc));
        entry_fail(e, "lobby connect not started", &x);
    }
}

/* Starts bots on the road until ENTRY_INFLIGHT are on it. */
static void entry_pump(void)
{
    while (R.inflight < ENTRY_INFLIGHT && R.next < nbots) {
        entrant_t *e = &R.e[R.next++];
        char id[64];
        snprintf(id, sizeof id, "gamebench-%s-%u", R.prefix, e->idx);
        wyc_credential_t cred = {.method = WYC_LOGIN_DEVICE, .id = id};
        e->stage = ST_LOGIN;
        R.inflight++;
        int rc = wyc_login(e->c, &cred, on_login, e);
        if (rc != WY_OK) {
            wyc_error_t x = {.code = rc};
            snprintf(x.message, sizeof x.message, "%s", wy_strerror(rc));
            entry_fail(e, "login not sent", &x);
        }
    }
}

/* Every bot through auth -> lobby -> character -> enter_game -> game join. 0 when all joined
 * one zone instance, else 3 with the reason on stderr. */
static int real_road(double *join_s)
{
    wyc_config_t cfg;
    wyc_config_default(&cfg);
    cfg.auth_url = bo.auth_url;
    cfg.lobby_url = bo.lobby_url;
    cfg.client_version = "wy-gamebench";
    cfg.timeout_ms = 30000;
    cfg.max_inflight = ENTRY_INFLIGHT;
    cfg.reconnect_max_attempts = 3;
    uv_loop_init(&R.loop);
    const char *err = NULL;
    if (wyc_ctx_new(&R.loop, &cfg, &R.ctx, &err) != WY_OK) {
        fprintf(stderr, "wy-gamebench: real road: %s\n", err);
        return 2;
    }
    uint32_t r;
    wy_random(&r, sizeof r);
    snprintf(R.prefix, sizeof R.prefix, "g%07x", r & 0xfffffff);
    R.e = wy_calloc(nbots, sizeof *R.e);
    for (uint32_t i = 0; i < nbots; i++) {
        R.e[i].idx = i;
        wyc_client_new(R.ctx, on_lobby_event, &R.e[i], &R.e[i].c);
    }
    uint64_t t0 = wy_now_ns(), deadline = t0 + 600000000000ull;
    entry_pump();
    uint64_t now = t0;
    while (R.joined + R.failed < nbots && now < deadline)
        pump(1, &now); /* the joined bots' updates are read meanwhile */
    *join_s = (double)(wy_now_ns() - t0) / 1e9;
    if (R.joined < nbots) {
        fprintf(stderr,
                "wy-gamebench: real road: %u of %u bots joined in %.0f s (failed at auth login %u, "
                "lobby hello %u, character %u, enter_game %u); first error: %s\n",
                R.joined, nbots, *join_s, R.failed_at[ST_LOGIN], R.failed_at[ST_LOBBY],
                R.failed_at[ST_CHARACTER], R.failed_at[ST_ENTER],
                R.first_error[0] ? R.first_error : "(none: timed out)");
        return 3;
    }
    if (R.other_instance) {
        fprintf(stderr,
                "wy-gamebench: real road: world placed %u of %u bots in another zone instance "
                "than %s: not one zone (raise the start zone's capacity)\n",
                R.other_instance, nbots, R.instance);
        return 3;
    }
    bo.inst = R.instance;
    return 0;
}

static void real_road_close(void)
{
    if (!R.ctx)
        return;
    R.closing = true;
    for (uint32_t i = 0; i < nbots; i++)
        wyc_client_close(R.e[i].c);
    wyc_ctx_close(R.ctx, NULL, NULL);
    uv_run(&R.loop, UV_RUN_DEFAULT);
    uv_loop_close(&R.loop);
    wy_free(R.e);
}

/* ---------------------------------------------------------------- measuring */

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Busy and total jiffies of every CPU (/proc/stat). */
static void machine_jiffies(double *busy, double *total)
{
    *busy = *total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return;
    unsigned long long v[8] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            *total += (double)v[i];
        *busy = *total - (double)v[3] - (double)v[4];
    }
    fclose(f);
}

/* Reads every bot with data waiting (up to ms), and runs the libs/client loop (lobby heartbeats)
 * without blocking. */
static void pump(int ms, uint64_t *now)
{
    struct epoll_event evs[256];
    if (R.ctx)
        uv_run(&R.loop, UV_RUN_NOWAIT);
    int n = epoll_wait(ep, evs, 256, ms);
    *now = wy_now_ns();
    for (int k = 0; k < n; k++) {
        uint32_t i = evs[k].data.u32;
        if (!bots_arr[i].closed && read_bot(&bots_arr[i], i, *now) != 0) {
            bots_arr[i].closed = true;
            epoll_ctl(ep, EPOLL_CTL_DEL, bots_arr[i].fd, NULL);
        }
    }
}

/* Closes every bot (game sockets, lobby clients) and frees what run_bots made. */
static void bots_free(wy_jwt_keyset_t *ks)
{
    for (uint32_t i = 0; i < nbots; i++) {
        if (bots_arr[i].fd > 0)
            close(bots_arr[i].fd);
        wy_free(bots_arr[i].rbuf);
    }
    real_road_close();
    wy_free(bots_arr);
    wy_free(lat_ns);
    if (ks)
        wy_jwt_keyset_free(ks);
    close(ep);
}

static int run_bots(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * bo.bots + 256) {
        rl.rlim_cur = rl.rlim_max < 2 * bo.bots + 256 ? rl.rlim_max : 2 * bo.bots + 256;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    nbots = bo.bots + 2 * NPAIRS;
    for (uint32_t k = 0; k < NPAIRS; k++)
        pairs[k] = (pair_t){.probe = 2 * k, .obs = 2 * k + 1}; /* --self-signed; real: below */
    bots_arr = wy_calloc(nbots, sizeof *bots_arr);
    uint64_t seed = 0x2545f4914f6cdd1dull;
    ep = epoll_create1(0);
    double join_s = 0;
    wy_jwt_keyset_t *ks = NULL;
    if (bo.self_signed) {
        ks = wy_jwt_keyset_new();
        const char *err = NULL;
        if (wy_token_keyset_load_file(ks, bo.key, bo.kid, &err) != WY_OK) {
            fprintf(stderr, "wy-gamebench: %s: %s\n", bo.key, err);
            bots_free(ks);
            return 2;
        }
        uint64_t t0 = wy_now_ns();
        for (uint32_t i = 0; i < nbots; i++) {
            /* pair k: probe 2k and observer 2k+1 a metre apart near (256 + 4k, 300) */
            double x = i < 2 * NPAIRS ? 256 + 4 * (i / 2) + i % 2 : 8 + rnd(&seed) % 496;
            double y = i < 2 * NPAIRS ? 300 : 200 + rnd(&seed) % 304;
            if (bot_join_signed(ks, &bots_arr[i], i, x, y) != 0) {
                fprintf(stderr, "wy-gamebench: bot %u could not join (%s)\n", i, strerror(errno));
                return 1;
            }
        }
        join_s = (double)(wy_now_ns() - t0) / 1e9;
    } else {
        int rc = real_road(&join_s);
        if (rc != 0) {
            bots_free(NULL);
            return rc;
        }
        /* Probes: bots 0..NPAIRS-1; each one's observer: the bot that entered nearest it. */
        for (uint32_t k = 0; k < NPAIRS; k++) {
            double best = INFINITY;
            pairs[k].probe = k;
            for (uint32_t i = NPAIRS; i < nbots; i++) {
                bool taken = false;
                for (uint32_t j = 0; j < k; j++)
                    taken |= pairs[j].obs == i;
                double dx = bots_arr[i].x - bots_arr[k].x, dy = bots_arr[i].y - bots_arr[k].y;
                if (!taken && dx * dx + dy * dy < best) {
                    best = dx * dx + dy * dy;
                    pairs[k].obs = i;
                }
            }
        }
    }
    for (uint32_t i = 0; i < nbots; i++)
        bots_arr[i].next_input_ns = wy_now_ns() + (uint64_t)(rnd(&seed) % 100) * 1000000ull;
    lat_cap = 100000;
    lat_ns = wy_malloc(lat_cap * sizeof *lat_ns);
    uint64_t period = (uint64_t)(1e9 / bo.input_hz);
    uint64_t warm_end = wy_now_ns() + 3000000000ull;
    uint64_t end = warm_end + (uint64_t)(bo.seconds * 1e9);
    scrape_t s0 = {0}, s1 = {0};
    double cpu0 = 0, mb0 = 0, mt0 = 0;
    for (;;) {
        uint64_t now = wy_now_ns();
        if (!measuring && now >= warm_end) {
            measuring = true;
            scrape(&s0);
            cpu0 = self_cpu_s();
            machine_jiffies(&mb0, &mt0);
        }
        if (now >= end)
            break;
        for (uint32_t i = 0; i < nbots; i++) {
            bot_t *b = &bots_arr[i];
            bool pair = false;
            for (int k = 0; k < NPAIRS; k++)
                pair |= i == pairs[k].probe || i == pairs[k].obs;
            if (pair || b->closed || now < b->next_input_ns)
                continue;
            b->next_input_ns += period;
            bot_input(b, rnd(&seed) % 8 == 0 ? 0 : 1, (uint16_t)rnd(&seed));
        }
        for (int k = 0; k < NPAIRS; k++) {
            /* Reverse the probe once its observer saw the last reversal (or after 2 s: lost),
             * 50-150 ms later so the inputs do not lock onto the tick's phase. */
            pair_t *pr = &pairs[k];
            if (pr->waiting && now - pr->sent_ns > 2000000000ull) {
                pr->waiting = false;
                lat_lost += measuring;
            }
            if (pr->waiting || now < pr->next_ns || !pr->seen)
                continue;
            pr->want = pr->want > 0 ? -1 : 1;
            bot_input(&bots_arr[pr->probe], 2, pr->want > 0 ? 0 : 32768);
            pr->sent_ns = wy_now_ns();
            pr->waiting = true;
            pr->next_ns = now + 50000000ull + (uint64_t)(rnd(&seed) % 100) * 1000000ull;
        }
        pump(2, &now);
    }
    scrape(&s1);
    double bots_cpu = self_cpu_s() - cpu0, mb1 = 0, mt1 = 0;
    machine_jiffies(&mb1, &mt1);
    double busy = mt1 > mt0 ? (mb1 - mb0) / (mt1 - mt0) : NAN;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double mx = tick_max_ms(), mx_iv = hist_max_bound(&s0, &s1) * 1e3;
    uint64_t *bps = wy_malloc(nbots * sizeof *bps);
    uint64_t frames = 0, dups = 0, gaps = 0, ticks = 0;
    uint32_t closed = 0;
    for (uint32_t i = 0; i < nbots; i++) {
        bot_t *b = &bots_arr[i];
        bps[i] = (uint64_t)((double)b->bytes / bo.seconds);
        frames += b->frames;
        dups += b->dup_ticks;
        gaps += b->gaps;
        closed += b->closed;
        ticks += b->ticks_seen;
    }
    qsort(bps, nbots, sizeof *bps, cmp_u64);
    qsort(lat_ns, nlat, sizeof *lat_ns, cmp_u64);
    double p50 = hist_pct(&s0, &s1, 0.5) * 1e3, p99 = hist_pct(&s0, &s1, 0.99) * 1e3;
    /* Linear interpolation inside a wide bucket can land above the worst tick there was: no
     * percentile or interval max is above the partition's max since it started. */
    if (isfinite(mx)) {
        p50 = p50 > mx ? mx : p50;
        p99 = p99 > mx ? mx : p99;
        mx_iv = mx_iv > mx ? mx : mx_iv;
    }
    double cpu_1k = (s1.cpu - s0.cpu) / bo.seconds / ((double)nbots / 1000.0);
    /* The partitions' own CPU per zone tick (every region's share of one tick) per 1,000
     * entities: what a tick costs, whatever else ran on the cores meanwhile. */
    double zone_ticks = s1.regions ? (s1.ticks - s0.ticks) / s1.regions : 0;
    double tick_cpu_1k = zone_ticks > 0 && s1.players > 0
                             ? (s1.tick_cpu - s0.tick_cpu) * 1e3 / zone_ticks / (s1.players / 1e3)
                             : NAN;
    /* Server side: frames the game sent per player per tick (players taken as constant over the
     * interval), and the frames it did not send (no arena, a slow or closing connection). */
    double srv_fpt = zone_ticks > 0 && s1.players > 0
                         ? (s1.frames - s0.frames) / (zone_ticks * s1.players)
                         : NAN;
    double srv_dropped = s1.dropped - s0.dropped, srv_skipped = s1.skipped - s0.skipped;
    double bots_cores = bots_cpu / bo.seconds;
    double overruns = s1.overruns - s0.overruns;
    double lat99 = nlat ? (double)pct(lat_ns, nlat, 0.99) / 1e6 : NAN;
    double lat50 = nlat ? (double)pct(lat_ns, nlat, 0.5) / 1e6 : NAN;
    /* frames per client per tick: every tick number a bot saw once, plus the ones it missed */
    double fpt = ticks ? (double)(ticks) / (double)(ticks - dups + gaps) : NAN;
    const char *mode = bo.self_signed ? "self-signed" : "real-road";
    char why[160] = "";
    for (size_t i = 0, o = 0; i < WY_ARRAY_LEN(closes) && closes[i].n && o < sizeof why - 24; i++)
        o += (size_t)snprintf(why + o, sizeof why - o, "%s%dx%u", i ? " " : "", closes[i].code,
                              closes[i].n);
    if (bo.json) {
        char b[13][32];
        printf("{\"bots\":%u,\"entry\":\"%s\",\"instance\":\"%s\",\"join_s\":%.2f,"
               "\"tick_p50_ms\":%s,\"tick_p99_ms\":%s,\"tick_max_ms\":%s,"
               "\"tick_max_interval_le_ms\":%s,\"tick_overruns\":%.0f,"
               "\"cpu_cores_per_1000\":%s,\"game_cpu_cores\":%s,\"bots_cpu_cores\":%s,"
               "\"machine_busy\":%s,\"cpus\":%ld,\"bytes_per_client_s_p50\":%llu,"
               "\"bytes_per_client_s_p99\":%llu,\"frames_per_client_tick\":%s,"
               "\"ticks_missed\":%llu,\"ticks_twice\":%llu,\"latency_p50_ms\":%s,"
               "\"latency_p99_ms\":%s,\"latency_samples\":%zu,\"latency_lost\":%llu,"
               "\"players_in_instance\":%.0f,\"closed\":%u,\"close_codes\":\"%s\","
               "\"regions\":%u,\"tick_cpu_ms_per_1000\":%s,\"server_frames_per_client_tick\":%s,"
               "\"server_frames_dropped\":%.0f,\"server_ticks_skipped\":%.0f,"
               "\"tick_priority\":\"%s\",\"tick_priority_drops\":%.0f}\n",
               nbots, mode, bo.inst, join_s, jnum(b[0], p50), jnum(b[1], p99), jnum(b[2], mx),
               jnum(b[3], mx_iv), overruns, jnum(b[4], cpu_1k),
               jnum(b[5], (s1.cpu - s0.cpu) / bo.seconds), jnum(b[6], bots_cores), jnum(b[7], busy),
               ncpu, (unsigned long long)pct(bps, nbots, 0.5),
               (unsigned long long)pct(bps, nbots, 0.99), jnum(b[8], fpt), (unsigned long long)gaps,
               (unsigned long long)dups, jnum(b[9], lat50), jnum(b[10], lat99), nlat,
               (unsigned long long)lat_lost, s1.players, closed, why, s1.regions,
               jnum(b[11], tick_cpu_1k), jnum(b[12], srv_fpt), srv_dropped, srv_skipped,
               s1.prio[0] ? s1.prio : "unknown", s1.prio_drops - s0.prio_drops);
    } else {
        printf("entry: %s%s\n", mode,
               bo.self_signed ? " (tickets signed by this tool: the game server alone)"
                              : " (auth device login -> lobby hello -> character via lobby/actor "
                                "-> enter_game -> join with lobby's ticket)");
        printf("%u bots (+%d latency probes) joined %s in %.1f s (%.0f players in it); %.0f s "
               "measured after 3 s warm-up\n",
               bo.bots, 2 * NPAIRS, bo.inst, join_s, s1.players, bo.seconds);
        printf("  tick p50 %.3f ms  p99 %.3f ms  max <= %.1f ms in the interval (%.3f ms since the "
               "partition started); %.0f overruns\n",
               p50, p99, mx_iv, mx, overruns);
        printf("  tick CPU %.3f ms per zone tick per 1,000 entities (%u partitions); partition "
               "workers at %s (WY_GAME_TICK_PRIORITY; %.0f dropped to normal)\n",
               tick_cpu_1k, s1.regions, s1.prio[0] ? s1.prio : "unknown",
               s1.prio_drops - s0.prio_drops);
        printf("  server side: ~%.4f frames per client per tick, %.0f frames not sent, %.0f tick "
               "periods skipped after stalls\n",
               srv_fpt, srv_dropped, srv_skipped);
        printf("  game CPU %.3f cores per 1,000 entities; bots' own CPU %.2f cores; machine %.0f%% "
               "busy of %ld CPUs\n",
               cpu_1k, bots_cores, busy * 100, ncpu);
        printf("  bytes/s per client p50 %llu  p99 %llu\n",
               (unsigned long long)pct(bps, nbots, 0.5), (unsigned long long)pct(bps, nbots, 0.99));
        printf("  frames per client per tick %.4f (%llu ticks missed, %llu seen twice)\n", fpt,
               (unsigned long long)gaps, (unsigned long long)dups);
        printf("  input-to-visible latency p50 %.1f ms  p99 %.1f ms (%zu samples, %llu not seen in "
               "2 s)\n",
               lat50, lat99, nlat, (unsigned long long)lat_lost);
        if (closed)
            printf("  %u bots were disconnected (close code x count: %s)\n", closed, why);
        printf("  goal: tick p99 <= 10 ms at 2,000 bots: %s; exactly 1 frame per client per tick: "
               "%s\n",
               bo.bots < 2000 ? "n/a"
               : p99 <= 10    ? "met"
                              : "MISSED",
               gaps == 0 && dups == 0 ? "met" : "MISSED");
    }
    wy_free(bps);
    bots_free(ks);
    return 0;
}

static int bots_main(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            bo.json = true;
            continue;
        }
        if (strcmp(a, "--self-signed") == 0) {
            bo.self_signed = true;
            continue;
        }
        if (v == NULL)
            return usage();
        i++;
        if (strcmp(a, "--auth-url") == 0)
            bo.auth_url = v;
        else if (strcmp(a, "--lobby-url") == 0)
            bo.lobby_url = v;
        else if (strcmp(a, "--ws") == 0)
            bo.ws = v;
        else if (strcmp(a, "--ops") == 0)
            bo.ops = v;
        else if (strcmp(a, "--key") == 0)
            bo.key = v;
        else if (strcmp(a, "--kid") == 0)
            bo.kid = v;
        else if (strcmp(a, "--game") == 0)
            bo.game = v;
        else if (strcmp(a, "--incarnation") == 0)
            bo.inc = v;
        else if (strcmp(a, "--zone") == 0)
            bo.zone = v;
        else if (strcmp(a, "--instance") == 0)
            bo.inst = v;
        else if (strcmp(a, "--bots") == 0 && atoi(v) > 0 && atoi(v) <= 20000)
            bo.bots = (uint32_t)atoi(v);
        else if (strcmp(a, "--seconds") == 0 && atof(v) > 0)
            bo.seconds = atof(v);
        else if (strcmp(a, "--input-hz") == 0 && atof(v) > 0 && atof(v) <= 30)
            bo.input_hz = atof(v);
        else
            return usage();
    }
    if (!bo.ops || (bo.self_signed && (!bo.ws || !bo.key || !bo.kid || !bo.game || !bo.inc)) ||
        (!bo.self_signed && (!bo.auth_url || !bo.lobby_url)))
        return usage();
    return run_bots();
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "bots") == 0)
        return bots_main(argc, argv);
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
