/* wy-bench — load generator on libs/client: N clients on one loop doing a login storm (device or
 * password logins through auth) and, optionally, a lobby hold (every client connects, is
 * welcomed and stays for a while). Prints throughput, latency percentiles and errors. */
#include "client/wyc.h"
#include "wy_grpc.h"
#include "actor.pb-c.h"
#include "world.pb-c.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <jansson.h>

static const char USAGE[] =
    "usage: wy-bench [options]\n"
    "  --auth-url URL      auth HTTP API (env WY_AUTH_URL, default http://127.0.0.1:8080)\n"
    "  --lobby-url URL     lobby WebSocket (env WY_LOBBY_URL)\n"
    "  --clients N         clients (default 1000)\n"
    "  --concurrency N     logins in flight at once (default 64)\n"
    "  --method M          device (default) | password (Argon2 on the server: slow by design)\n"
    "  --warm              create the accounts first (not measured), then measure logins of\n"
    "                      existing accounts\n"
    "  --lobby             after the storm, connect every client to the lobby (hello/welcome)\n"
    "  --hold SECONDS      keep the lobby sessions this long, counting drops (default 5)\n"
    "  --prefix TEXT       device id / username prefix (default: random per run)\n"
    "  --enter-game ADDR   after the lobby hello, every welcomed client gets a character\n"
    "                      (wy-actor CreateCharacter at ADDR, not measured), then all enter\n"
    "                      the game at once: enter_game at lobby -> join at the game instance\n"
    "                      -> welcome (phase enter-game), then leave\n"
    "  --places N          also N World.Place calls, --concurrency in flight (phase places)\n"
    "  --world-grpc ADDR   wy-world's gRPC address for --places\n"
    "  --timeout MS        per request (default 30000)\n"
    "Prints a table on stderr and one JSON line per phase on stdout: bench, clients, ops,\n"
    "seconds, ops_per_s, p50_us, p99_us, p999_us, max_us, errors, error_kinds.\n"
    "Exit 0 when the benchmark ran (errors are reported, not fatal), 1 when it could not.\n";

typedef struct bot bot_t;

typedef struct {
    uv_loop_t *loop;
    wyc_ctx_t *ctx;
    bot_t *bots;
    int n, concurrency;
    wyc_method_t method;
    char prefix[64];
    bool lobby;
    uint32_t hold_s;
    /* phase state */
    const char *phase;
    int next, done, inflight;
    uint64_t t0_ns;
    uint64_t *lat;
    int nlat;
    int errors;
    json_t *error_kinds;
    int welcomed, lobby_failed, drops;
    bool holding;
    uv_timer_t hold_timer;
    /* enter-game and places */
    const char *actor_addr, *world_addr;
    int places;
    wy_grpc_rt_t *rt;
    wy_grpc_channel_t *actor, *world;
    int entered, in_game_closed;
    bool rt_closed;
} bench_t;

struct bot {
    bench_t *b;
    int idx;
    wyc_client_t *c;
    uint64_t t0_ns;
    bool welcomed;
    char character[72];
    wyc_game_t *game;
    bool joined;
};

static bench_t B;

static void count_error(const char *phase, const wyc_error_t *e)
{
    B.errors++;
    char key[128];
    snprintf(key, sizeof key, "%s", e->server_code[0] ? e->server_code : wy_errname(e->code));
    json_t *v = json_object_get(B.error_kinds, key);
    json_object_set_new(B.error_kinds, key, json_integer(v ? json_integer_value(v) + 1 : 1));
    if (B.errors <= 3)
        fprintf(stderr, "wy-bench: %s error: %s (%s)\n", phase, e->message, key);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *v, int n, double p)
{
    if (n == 0)
        return 0;
    int i = (int)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static void report(const char *bench, int ops, double secs)
{
    qsort(B.lat, (size_t)B.nlat, sizeof *B.lat, cmp_u64);
    uint64_t p50 = pct(B.lat, B.nlat, 0.50) / 1000, p99 = pct(B.lat, B.nlat, 0.99) / 1000,
             p999 = pct(B.lat, B.nlat, 0.999) / 1000, mx = B.nlat ? B.lat[B.nlat - 1] / 1000 : 0;
    double rate = secs > 0 ? ops / secs : 0;
    fprintf(stderr,
            "%-12s %6d ok %6d errors in %7.3f s  %9.1f /s  p50 %7.2f ms  p99 %7.2f ms  "
            "p999 %7.2f ms  max %7.2f ms\n",
            bench, ops, B.errors, secs, rate, p50 / 1000.0, p99 / 1000.0, p999 / 1000.0,
            mx / 1000.0);
    json_t *o =
        json_pack("{s:s, s:i, s:i, s:f, s:f, s:I, s:I, s:I, s:I, s:i, s:O}", "bench", bench,
                  "clients", B.n, "ops", ops, "seconds", secs, "ops_per_s", rate, "p50_us",
                  (json_int_t)p50, "p99_us", (json_int_t)p99, "p999_us", (json_int_t)p999, "max_us",
                  (json_int_t)mx, "errors", B.errors, "error_kinds", B.error_kinds);
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

static void phase_begin(const char *name)
{
    B.phase = name;
    B.next = B.done = B.inflight = 0;
    B.nlat = 0;
    B.errors = 0;
    json_object_clear(B.error_kinds);
    B.t0_ns = wy_now_ns();
}

/* ------------------------------------------------------------------ login storm */

static void start_logins(void);

static void on_login(wyc_client_t *c, const wyc_error_t *e, void *ud)
{
    (void)c;
    bot_t *bot = ud;
    B.inflight--;
    B.done++;
    if (e->code == WY_OK)
        B.lat[B.nlat++] = wy_now_ns() - bot->t0_ns;
    else
        count_error(B.phase, e);
    start_logins();
}

static void start_logins(void)
{
    char id[160], pw[] = "bench password 123";
    while (B.inflight < B.concurrency && B.next < B.n) {
        bot_t *bot = &B.bots[B.next++];
        snprintf(id, sizeof id, "%s-%d", B.prefix, bot->idx);
        wyc_credential_t cred = {.method = B.method, .id = id, .username = id, .password = pw};
        bool create = !strcmp(B.phase, "create");
        bot->t0_ns = wy_now_ns();
        int rc = create && B.method == WYC_LOGIN_PASSWORD
                     ? wyc_register(bot->c, id, pw, on_login, bot)
                     : wyc_login(bot->c, &cred, on_login, bot);
        if (rc != WY_OK) {
            wyc_error_t e;
            memset(&e, 0, sizeof e);
            e.code = rc;
            snprintf(e.message, sizeof e.message, "cannot start: %s", wy_strerror(rc));
            B.done++;
            count_error(B.phase, &e);
            continue;
        }
        B.inflight++;
    }
}

static void run_storm(const char *name)
{
    phase_begin(name);
    start_logins();
    while (B.done < B.n)
        uv_run(B.loop, UV_RUN_ONCE);
    double secs = (double)(wy_now_ns() - B.t0_ns) / 1e9;
    report(name, B.nlat, secs);
}

/* ------------------------------------------------------------------ lobby hold */

static void on_event(wyc_client_t *c, const wyc_event_t *ev, void *ud)
{
    (void)c;
    bot_t *bot = ud;
    if (!bot || !B.lobby)
        return;
    switch (ev->type) {
    case WYC_EV_WELCOME:
        if (!bot->welcomed) {
            bot->welcomed = true;
            B.welcomed++;
            if (!B.holding)
                B.lat[B.nlat++] = wy_now_ns() - bot->t0_ns;
        }
        break;
    case WYC_EV_DISCONNECTED:
        if (bot->welcomed)
            B.drops++;
        else if (!B.holding && ev->error.code != WY_OK && B.errors < 3)
            fprintf(stderr, "wy-bench: lobby retry: %s\n", ev->error.message);
        break;
    case WYC_EV_CLOSED:
        if (!bot->welcomed) {
            B.lobby_failed++;
            count_error("lobby", &ev->error);
        } else if (ev->error.code != WY_ECANCELED) {
            B.drops++;
        }
        break;
    default:
        break;
    }
}

static void on_hold_done(uv_timer_t *t)
{
    (void)t;
    B.holding = false;
}

static void run_lobby(void)
{
    phase_begin("lobby-hello");
    int started = 0;
    for (int i = 0; i < B.n; i++) {
        bot_t *bot = &B.bots[i];
        if (!wyc_session(bot->c))
            continue;
        bot->t0_ns = wy_now_ns();
        if (wyc_lobby_connect(bot->c) == WY_OK)
            started++;
    }
    while (B.welcomed + B.lobby_failed < started)
        uv_run(B.loop, UV_RUN_ONCE);
    report("lobby-hello", B.nlat, (double)(wy_now_ns() - B.t0_ns) / 1e9);
    B.holding = true;
    B.drops = 0;
    uv_timer_start(&B.hold_timer, on_hold_done, (uint64_t)B.hold_s * 1000, 0);
    while (B.holding)
        uv_run(B.loop, UV_RUN_ONCE);
    int live = 0;
    for (int i = 0; i < B.n; i++)
        live += wyc_lobby_ready(B.bots[i].c);
    fprintf(stderr, "lobby-hold   %6d sessions held %u s: %d still up, %d drops\n", B.welcomed,
            B.hold_s, live, B.drops);
    json_t *o =
        json_pack("{s:s, s:i, s:i, s:i, s:i, s:i}", "bench", "lobby-hold", "clients", B.n,
                  "welcomed", B.welcomed, "seconds", (int)B.hold_s, "live", live, "drops", B.drops);
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

/* ------------------------------------------------------------------ enter the game */

/* A failed gRPC call of phase (what: the method) counted like a client error. */
static void count_grpc_error(const char *phase, const char *what, int err, const char *message)
{
    wyc_error_t e;
    memset(&e, 0, sizeof e);
    e.code = err;
    snprintf(e.message, sizeof e.message, "%s: %s", what, message);
    count_error(phase, &e);
}

static void on_character(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    (void)status;
    bot_t *bot = arg;
    B.inflight--;
    B.done++;
    if (err == WY_OK) {
        snprintf(bot->character, sizeof bot->character, "%s",
                 ((const Wyvern__Actor__Character *)resp)->actor_id);
        B.lat[B.nlat++] = wy_now_ns() - bot->t0_ns;
    } else {
        count_grpc_error("characters", "CreateCharacter", err, message);
    }
}

static void run_characters(void)
{
    phase_begin("characters");
    int want = 0;
    for (int i = 0; i < B.n; i++)
        want += B.bots[i].welcomed;
    for (int i = 0; i < B.n || B.inflight > 0;) {
        while (i < B.n && B.inflight < B.concurrency) {
            bot_t *bot = &B.bots[i++];
            if (!bot->welcomed)
                continue;
            Wyvern__Actor__CreateCharacterRequest r = WYVERN__ACTOR__CREATE_CHARACTER_REQUEST__INIT;
            char name[24];
            snprintf(name, sizeof name, "b%08x%d", (unsigned)wy_now_ns(), bot->idx);
            name[16] = '\0';
            r.account_id = (char *)wyc_session(bot->c)->account_id;
            r.name = name;
            r.class_name = "warrior";
            bot->t0_ns = wy_now_ns();
            if (wy_grpc_call(B.actor, "/wyvern.actor.Actor/CreateCharacter", &r.base,
                             &wyvern__actor__character__descriptor, 30000, NULL, 0, on_character,
                             bot) == WY_OK)
                B.inflight++;
        }
        if (B.inflight > 0)
            uv_run(B.loop, UV_RUN_ONCE);
    }
    report("characters", B.nlat, (double)(wy_now_ns() - B.t0_ns) / 1e9);
    (void)want;
}

static void on_game(wyc_game_t *g, const wyc_game_event_t *ev, void *ud)
{
    (void)g;
    bot_t *bot = ud;
    if (ev->type == WYC_GAME_EV_WELCOME) {
        bot->joined = true;
        B.entered++;
        B.lat[B.nlat++] = wy_now_ns() - bot->t0_ns;
    } else if (ev->type == WYC_GAME_EV_CLOSED) {
        bot->game = NULL;
        if (!bot->joined)
            count_error("enter-game", &ev->error);
        B.in_game_closed++;
    }
}

static void on_entered(wyc_client_t *c, const wyc_error_t *e, const wyc_entry_t *entry, void *ud)
{
    (void)c;
    bot_t *bot = ud;
    if (!entry || wyc_game_join(B.ctx, entry, on_game, bot, &bot->game) != WY_OK) {
        count_error("enter-game", e);
        B.in_game_closed++;
    }
}

static void run_enter_game(void)
{
    phase_begin("enter-game");
    int started = 0;
    for (int i = 0; i < B.n; i++) {
        bot_t *bot = &B.bots[i];
        if (!bot->character[0])
            continue;
        bot->t0_ns = wy_now_ns();
        if (wyc_lobby_enter_game(bot->c, bot->character, on_entered, bot) == WY_OK)
            started++;
    }
    while (B.entered + B.in_game_closed < started)
        uv_run(B.loop, UV_RUN_ONCE);
    report("enter-game", B.nlat, (double)(wy_now_ns() - B.t0_ns) / 1e9);
    /* Leave: every position saved. */
    int leaving = 0;
    for (int i = 0; i < B.n; i++)
        if (B.bots[i].game && wyc_game_leave(B.bots[i].game) == WY_OK)
            leaving++;
    B.in_game_closed = 0;
    uint64_t end = wy_now_ms() + 30000;
    while (B.in_game_closed < leaving && wy_now_ms() < end)
        uv_run(B.loop, UV_RUN_ONCE);
    for (int i = 0; i < B.n; i++)
        if (B.bots[i].game) {
            wyc_game_close(B.bots[i].game);
            B.bots[i].game = NULL;
        }
}

static void on_placed(int err, int status, const char *message, const ProtobufCMessage *resp,
                      void *arg)
{
    (void)status, (void)resp;
    uint64_t t0 = (uint64_t)(uintptr_t)arg;
    B.inflight--;
    B.done++;
    if (err == WY_OK) {
        B.lat[B.nlat++] = wy_now_ns() - t0;
    } else {
        count_grpc_error("places", "Place", err, message);
    }
}

/* World.Place of fresh characters (each a new placement), --concurrency in flight. */
static void run_places(void)
{
    phase_begin("places");
    wy_free(B.lat);
    B.lat = wy_calloc((size_t)B.places, sizeof *B.lat);
    char acct[96], chr[96];
    while (B.done < B.places) {
        while (B.next < B.places && B.inflight < B.concurrency) {
            snprintf(acct, sizeof acct, "%s-a%d", B.prefix, B.next);
            snprintf(chr, sizeof chr, "%s-c%d", B.prefix, B.next);
            Wyvern__World__PlaceRequest r = WYVERN__WORLD__PLACE_REQUEST__INIT;
            r.account_id = acct;
            r.character_id = chr;
            B.next++;
            if (wy_grpc_call(B.world, "/wyvern.world.World/Place", &r.base,
                             &wyvern__world__placement__descriptor, 30000, NULL, 0, on_placed,
                             (void *)(uintptr_t)wy_now_ns()) == WY_OK)
                B.inflight++;
            else
                B.done++;
        }
        uv_run(B.loop, UV_RUN_ONCE);
    }
    int n = B.n;
    B.n = B.places;
    report("places", B.nlat, (double)(wy_now_ns() - B.t0_ns) / 1e9);
    B.n = n;
}

static void on_rt_closed(void *arg)
{
    (void)arg;
    B.rt_closed = true;
}

/* ------------------------------------------------------------------ main */

static void raise_nofile(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)need ? rl.rlim_max : (rlim_t)need;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    wyc_config_t cfg;
    wyc_config_from_env(&cfg);
    cfg.timeout_ms = 30000;
    cfg.reconnect_max_attempts = 5;
    B.n = 1000;
    B.concurrency = 64;
    B.method = WYC_LOGIN_DEVICE;
    B.hold_s = 5;
    bool warm = false;
    uint32_t r;
    wy_random(&r, sizeof r);
    snprintf(B.prefix, sizeof B.prefix, "bench%08x", r);
    static const struct option LONG[] = {
        {"auth-url", required_argument, NULL, 'a'},
        {"lobby-url", required_argument, NULL, 'l'},
        {"clients", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'c'},
        {"method", required_argument, NULL, 'm'},
        {"warm", no_argument, NULL, 'w'},
        {"lobby", no_argument, NULL, 'L'},
        {"hold", required_argument, NULL, 'H'},
        {"prefix", required_argument, NULL, 'p'},
        {"timeout", required_argument, NULL, 't'},
        {"enter-game", required_argument, NULL, 'E'},
        {"places", required_argument, NULL, 'P'},
        {"world-grpc", required_argument, NULL, 'W'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", LONG, NULL)) != -1) {
        switch (ch) {
        case 'a':
            cfg.auth_url = optarg;
            break;
        case 'l':
            cfg.lobby_url = optarg;
            break;
        case 'n':
            B.n = atoi(optarg);
            break;
        case 'c':
            B.concurrency = atoi(optarg);
            break;
        case 'm':
            B.method = wyc_method_parse(optarg);
            break;
        case 'w':
            warm = true;
            break;
        case 'L':
            B.lobby = true;
            break;
        case 'H':
            B.hold_s = (uint32_t)atoi(optarg);
            break;
        case 'p':
            snprintf(B.prefix, sizeof B.prefix, "%s", optarg);
            break;
        case 't':
            cfg.timeout_ms = (uint32_t)atoi(optarg);
            break;
        case 'E':
            B.actor_addr = optarg;
            break;
        case 'P':
            B.places = atoi(optarg);
            break;
        case 'W':
            B.world_addr = optarg;
            break;
        case 'h':
            fputs(USAGE, stdout);
            return 0;
        default:
            fputs(USAGE, stderr);
            return 1;
        }
    }
    if ((B.actor_addr && !B.lobby) || (B.places && !B.world_addr) || B.places < 0 ||
        B.places > 10000000) {
        fprintf(stderr, "wy-bench: --enter-game needs --lobby, --places needs --world-grpc\n");
        return 1;
    }
    if (B.n < 1 || B.n > 200000 || B.concurrency < 1 || B.concurrency > 10000 ||
        (B.method != WYC_LOGIN_DEVICE && B.method != WYC_LOGIN_PASSWORD)) {
        fprintf(stderr, "wy-bench: bad --clients, --concurrency or --method\n%s", USAGE);
        return 1;
    }
    raise_nofile(B.n + B.concurrency + 256);
    cfg.max_inflight = (uint32_t)B.concurrency;
    uv_loop_t loop;
    uv_loop_init(&loop);
    B.loop = &loop;
    const char *err = NULL;
    if (wyc_ctx_new(&loop, &cfg, &B.ctx, &err) != WY_OK) {
        fprintf(stderr, "wy-bench: could not run: %s\n", err);
        return 1;
    }
    uv_timer_init(&loop, &B.hold_timer);
    if (B.actor_addr || B.world_addr) {
        if (wy_grpc_rt_new(&loop, &B.rt) != WY_OK ||
            (B.actor_addr && wy_grpc_channel_new(B.rt, B.actor_addr, NULL, &B.actor) != WY_OK) ||
            (B.world_addr && wy_grpc_channel_new(B.rt, B.world_addr, NULL, &B.world) != WY_OK)) {
            fprintf(stderr, "wy-bench: could not run: cannot open the gRPC channels\n");
            return 1;
        }
    }
    B.error_kinds = json_object();
    B.bots = wy_calloc((size_t)B.n, sizeof *B.bots);
    B.lat = wy_calloc((size_t)B.n, sizeof *B.lat);
    for (int i = 0; i < B.n; i++) {
        B.bots[i].b = &B;
        B.bots[i].idx = i;
        wyc_client_new(B.ctx, on_event, &B.bots[i], &B.bots[i].c);
    }
    fprintf(stderr, "wy-bench: %d clients, %d in flight, %s logins, auth %s%s%s\n", B.n,
            B.concurrency, wyc_method_name(B.method), cfg.auth_url, B.lobby ? ", lobby " : "",
            B.lobby ? cfg.lobby_url : "");
    if (warm)
        run_storm("create");
    run_storm("login-storm");
    int login_ok = B.nlat;
    if (B.lobby && login_ok > 0)
        run_lobby();
    if (B.actor && B.welcomed > 0) {
        run_characters();
        run_enter_game();
    }
    if (B.world)
        run_places();
    if (B.actor)
        wy_grpc_channel_close(B.actor);
    if (B.world)
        wy_grpc_channel_close(B.world);
    if (B.rt && wy_grpc_rt_close(B.rt, on_rt_closed, NULL) == WY_OK)
        while (!B.rt_closed)
            uv_run(&loop, UV_RUN_ONCE);
    for (int i = 0; i < B.n; i++)
        wyc_client_close(B.bots[i].c);
    wyc_ctx_close(B.ctx, NULL, NULL);
    uv_close((uv_handle_t *)&B.hold_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    json_decref(B.error_kinds);
    wy_free(B.bots);
    wy_free(B.lat);
    return login_ok > 0 ? 0 : 1;
}
