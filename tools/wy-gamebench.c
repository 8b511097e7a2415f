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
 * bots: N bots join a running wy-game through its WebSocket with join tickets this tool signs
 * (wy_ticket, the key lobby signs with), spread over the zone's south part (y >= 200 m: clear
 * of meadow's blocked cells), and random-walk at --input-hz; one epoll thread reads every
 * bot's updates and keeps its mirror (wy_gamewire), as a client does. Two more bots measure
 * the input-to-visible latency: a probe starts and stops running once a second and an observer
 * next to it times until its mirror shows the probe move. Prints tick p50/p99/max (the game's
 * /metrics histogram of the measured interval; max is the partition's worst since its start),
 * the game process's CPU per 1,000 entities, bytes per second per client (p50/p99), frames per
 * client per tick, bytes per moving-entity update and the latency p99, against the goals.
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
    "usage: wy-gamebench bots --ws HOST:PORT --ops HOST:PORT --key PEM --kid KID --game ID\n"
    "                         --incarnation INC [--zone Z] [--instance I] [--bots N]\n"
    "                         [--seconds S] [--input-hz HZ] [--json]\n"
    "  N bots join a running wy-game with tickets signed by PEM and random-walk (default\n"
    "  500 bots, 10 Hz input, meadow#1, 10 s measured).\n";

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

#include "game.pb-c.h"
#include "wy_ticket.h"
#include "wy_token.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static struct {
    const char *ws, *ops, *key, *kid, *game, *inc, *zone, *inst;
    uint32_t bots;
    double seconds, input_hz;
    bool json;
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
} bot_t;

static bot_t *bots_arr;
static uint32_t nbots; /* bots_arr[0] = probe, [1] = observer, the rest walk */
static bool measuring;
static uint64_t probe_sent_ns;
static int32_t probe_qx;
static bool probe_running, probe_waiting;
static uint64_t *lat_ns;
static size_t nlat, lat_cap;

static int split_hostport(const char *hp, struct sockaddr_in *a)
{
    char host[64];
    const char *c = strrchr(hp, ':');
    if (!c || (size_t)(c - hp) >= sizeof host)
        return -1;
    memcpy(host, hp, (size_t)(c - hp));
    host[c - hp] = 0;
    *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(c + 1))};
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

static int dial(const char *hp)
{
    struct sockaddr_in a;
    if (split_hostport(hp, &a) != 0)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
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
    if (idx == 1 && probe_waiting) {
        const wy_gw_entity_t *p = wy_gw_mirror_find(&b->m, bots_arr[0].entity);
        if (p && p->qx != probe_qx) {
            probe_waiting = false;
            if (measuring && nlat < lat_cap)
                lat_ns[nlat++] = now - probe_sent_ns;
        }
    }
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
        if (r <= 0)
            return -1;
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
        if (op == 0x8)
            return -1;
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

/* Connects, upgrades and joins with a fresh ticket; blocking. */
static int bot_join(wy_jwt_keyset_t *ks, bot_t *b, uint32_t i, double x, double y)
{
    b->fd = dial(bo.ws);
    if (b->fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /v1/game HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     bo.ws);
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
    Wyvern__Game__Join j = WYVERN__GAME__JOIN__INIT;
    j.ticket = tok;
    j.client_version = "wy-gamebench";
    Wyvern__Game__ClientMessage m = WYVERN__GAME__CLIENT_MESSAGE__INIT;
    m.request_id = 1;
    m.body_case = WYVERN__GAME__CLIENT_MESSAGE__BODY_JOIN;
    m.join = &j;
    int rc = send_msg(b->fd, &m);
    wy_free(tok);
    if (rc != 0)
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
        Wyvern__Game__ServerMessage *s =
            wyvern__game__server_message__unpack(NULL, len, b->rbuf + off);
        bool ok = s && s->body_case == WYVERN__GAME__SERVER_MESSAGE__BODY_WELCOME;
        if (ok)
            b->entity = (uint32_t)s->welcome->entity_id;
        else if (s && s->body_case == WYVERN__GAME__SERVER_MESSAGE__BODY_ERROR)
            fprintf(stderr, "wy-gamebench: join refused: %s\n", s->error->message);
        if (s)
            wyvern__game__server_message__free_unpacked(s, NULL);
        memmove(b->rbuf, b->rbuf + fl, b->rlen - (size_t)fl);
        b->rlen -= (size_t)fl;
        if (!ok)
            return -1;
        break;
    }
    fcntl(b->fd, F_SETFL, fcntl(b->fd, F_GETFL) | O_NONBLOCK);
    return 0;
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
    double cpu;
} scrape_t;

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

/* Percentile (seconds) from cumulative bucket counts (b - a), linear inside a bucket. */
static double hist_pct(const scrape_t *a, const scrape_t *b, double q)
{
    size_t n = b->n;
    if (n == 0)
        return NAN;
    double total = b->count[n - 1] - (a->n == n ? a->count[n - 1] : 0);
    if (total <= 0)
        return NAN;
    double want = q * total, prev_c = 0, prev_le = 0;
    for (size_t i = 0; i < n; i++) {
        double c = b->count[i] - (a->n == n ? a->count[i] : 0);
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

static int run_bots(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < bo.bots + 64) {
        rl.rlim_cur = rl.rlim_max < bo.bots + 64 ? rl.rlim_max : bo.bots + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    wy_jwt_keyset_t *ks = wy_jwt_keyset_new();
    const char *err = NULL;
    if (wy_token_keyset_load_file(ks, bo.key, bo.kid, &err) != WY_OK) {
        fprintf(stderr, "wy-gamebench: %s: %s\n", bo.key, err);
        return 2;
    }
    nbots = bo.bots + 2;
    bots_arr = wy_calloc(nbots, sizeof *bots_arr);
    uint64_t seed = 0x2545f4914f6cdd1dull;
    int ep = epoll_create1(0);
    uint64_t t0 = wy_now_ns();
    for (uint32_t i = 0; i < nbots; i++) {
        double x = i < 2 ? 256 + i : 8 + rnd(&seed) % 496;
        double y = i < 2 ? 300 : 200 + rnd(&seed) % 304;
        if (bot_join(ks, &bots_arr[i], i, x, y) != 0) {
            fprintf(stderr, "wy-gamebench: bot %u could not join (%s)\n", i, strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, bots_arr[i].fd, &ev);
        bots_arr[i].next_input_ns = wy_now_ns() + (uint64_t)(rnd(&seed) % 100) * 1000000ull;
    }
    double join_s = (double)(wy_now_ns() - t0) / 1e9;
    lat_cap = 100000;
    lat_ns = wy_malloc(lat_cap * sizeof *lat_ns);
    uint64_t period = (uint64_t)(1e9 / bo.input_hz);
    uint64_t warm_end = wy_now_ns() + 3000000000ull;
    uint64_t end = warm_end + (uint64_t)(bo.seconds * 1e9);
    uint64_t next_probe = wy_now_ns() + 500000000ull;
    scrape_t s0 = {0}, s1 = {0};
    struct epoll_event evs[256];
    for (;;) {
        uint64_t now = wy_now_ns();
        if (!measuring && now >= warm_end) {
            measuring = true;
            scrape(&s0);
        }
        if (now >= end)
            break;
        for (uint32_t i = 2; i < nbots; i++) {
            bot_t *b = &bots_arr[i];
            if (b->closed || now < b->next_input_ns)
                continue;
            b->next_input_ns += period;
            bot_input(b, rnd(&seed) % 8 == 0 ? 0 : 1, (uint16_t)rnd(&seed));
        }
        if (now >= next_probe && !probe_waiting) {
            /* Alternate: start running east, then stop; time until the observer sees it. */
            const wy_gw_entity_t *p = wy_gw_mirror_find(&bots_arr[1].m, bots_arr[0].entity);
            if (p) {
                probe_running = !probe_running;
                bot_input(&bots_arr[0], probe_running ? 2 : 0, probe_running ? 0 : 0);
                if (probe_running) {
                    probe_qx = p->qx;
                    probe_sent_ns = wy_now_ns();
                    probe_waiting = true;
                }
            }
            next_probe = now + 500000000ull;
        }
        int n = epoll_wait(ep, evs, 256, 2);
        now = wy_now_ns();
        for (int k = 0; k < n; k++) {
            uint32_t i = evs[k].data.u32;
            if (!bots_arr[i].closed && read_bot(&bots_arr[i], i, now) != 0) {
                bots_arr[i].closed = true;
                epoll_ctl(ep, EPOLL_CTL_DEL, bots_arr[i].fd, NULL);
            }
        }
    }
    scrape(&s1);
    double mx = tick_max_ms();
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
    double cpu_1k = (s1.cpu - s0.cpu) / bo.seconds / ((double)nbots / 1000.0);
    double lat99 = nlat ? (double)pct(lat_ns, nlat, 0.99) / 1e6 : NAN;
    double lat50 = nlat ? (double)pct(lat_ns, nlat, 0.5) / 1e6 : NAN;
    /* frames per client per tick: every tick number a bot saw once, plus the ones it missed */
    double fpt = ticks ? (double)(ticks) / (double)(ticks - dups + gaps) : NAN;
    if (bo.json) {
        printf("{\"bots\":%u,\"join_s\":%.2f,\"tick_p50_ms\":%.3f,\"tick_p99_ms\":%.3f,"
               "\"tick_max_ms\":%.3f,\"cpu_cores_per_1000\":%.3f,\"bytes_per_client_s_p50\":%llu,"
               "\"bytes_per_client_s_p99\":%llu,\"frames_per_client_tick\":%.4f,"
               "\"ticks_missed\":%llu,\"ticks_twice\":%llu,\"latency_p50_ms\":%.2f,"
               "\"latency_p99_ms\":%.2f,\"latency_samples\":%zu,\"closed\":%u}\n",
               nbots, join_s, p50, p99, mx, cpu_1k, (unsigned long long)pct(bps, nbots, 0.5),
               (unsigned long long)pct(bps, nbots, 0.99), fpt, (unsigned long long)gaps,
               (unsigned long long)dups, lat50, lat99, nlat, closed);
    } else {
        printf("%u bots (+2 probes) joined in %.1f s; %.0f s measured after 3 s warm-up\n", bo.bots,
               join_s, bo.seconds);
        printf("  tick p50 %.3f ms  p99 %.3f ms  max %.3f ms (since the partition started)\n", p50,
               p99, mx);
        printf("  game CPU %.3f cores per 1,000 entities\n", cpu_1k);
        printf("  bytes/s per client p50 %llu  p99 %llu\n",
               (unsigned long long)pct(bps, nbots, 0.5), (unsigned long long)pct(bps, nbots, 0.99));
        printf("  frames per client per tick %.4f (%llu ticks missed, %llu seen twice)\n", fpt,
               (unsigned long long)gaps, (unsigned long long)dups);
        printf("  input-to-visible latency p50 %.1f ms  p99 %.1f ms (%zu samples)\n", lat50, lat99,
               nlat);
        if (closed)
            printf("  %u bots were disconnected\n", closed);
        printf("  goal: tick p99 <= 10 ms at 2,000 bots: %s; exactly 1 frame per client per tick: "
               "%s\n",
               bo.bots < 2000 ? "n/a"
               : p99 <= 10    ? "met"
                              : "MISSED",
               gaps == 0 && dups == 0 ? "met" : "MISSED");
    }
    for (uint32_t i = 0; i < nbots; i++) {
        close(bots_arr[i].fd);
        wy_free(bots_arr[i].rbuf);
    }
    wy_free(bots_arr);
    wy_free(bps);
    wy_free(lat_ns);
    wy_jwt_keyset_free(ks);
    close(ep);
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
        if (v == NULL)
            return usage();
        i++;
        if (strcmp(a, "--ws") == 0)
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
    if (!bo.ws || !bo.ops || !bo.key || !bo.kid || !bo.game || !bo.inc)
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
