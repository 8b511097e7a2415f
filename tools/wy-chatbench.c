/* wy-chatbench — chat fan-out figures of `make bench`: a guild of --members players spread over
 * the given lobby instances (libs/client, one libuv loop), senders at fixed total rates (20
 * msg/s, then higher steps), and per step the deliveries per second and the send-to-deliver
 * latency (p50/p99: from the sender's chat_send to each member's push, so it covers lobby,
 * wy-chat, PostgreSQL, the outbox, Kafka and the delivering lobby; and store_p50/p99 from
 * wy-chat's store time, ts_ms, wall clock of the same machine, ms resolution); then senders in a
 * closed loop for the messages stored per second. Prints one JSON object per line. */
#include "client/wyc.h"
#include "wy_token.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: wy-chatbench --lobby WS_URL[,WS_URL] --key PRIVATE.pem [--kid KID] [--members N]\n"
    "         [--senders N] [--seconds N] [--rates R1,R2,...] [--p99-ms MS] [--closed N] [--sync]\n"
    "  Signs access tokens with the Ed25519 private key (lobby verifies with its public half:\n"
    "  WY_LOBBY_TOKEN_KEYS_DIR); the lobbies need WY_LOBBY_CHAT_GRPC and a message rate above\n"
    "  the senders' (WY_LOBBY_MAX_MSGS_PER_SEC), wy-chat a rate limit above it too.\n"
    "  --sync: around each measured phase print {\"sync\":\"begin|end <phase>\"} and wait for a\n"
    "  line on stdin (tools/bench reads the servers' CPU time and histograms there).\n";

#define MAX_LOBBIES 4

static struct {
    char *lobbies[MAX_LOBBIES];
    int nlobbies;
    const char *key, *kid;
    int members, senders, seconds, closed;
    bool sync;
    double p99_ms;
    double rates[16];
    int nrates;
} opt = {.kid = "bench", .members = 1000, .senders = 10, .seconds = 5, .p99_ms = 30, .closed = 16};

typedef struct member {
    wyc_client_t *c;
    int index;
    char account[40];
    bool welcomed, joined;
} member_t;

static uv_loop_t loop;
static member_t *members;
static wy_jwt_keyset_t *ks;
static int welcomed, failures;
static char channel[WYC_CHAT_CHANNEL_MAX];
static bool measuring;
static uint64_t *lat_us;   /* samples of the step: the sender's chat_send to the push */
static uint64_t *store_us; /* wy-chat's store time (ts_ms, wall ms) to the push */
static size_t nlat, nstore, caplat;
static uint64_t deliveries, sent_ok, send_err, stored;
static int pending_ops;

#define WARMUP_TEXT "warm-up"
static int warm; /* members that got the warm-up message */

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void run_until(bool (*done)(void), uint64_t timeout_ms)
{
    uint64_t end = wy_now_ms() + timeout_ms;
    while (!done() && wy_now_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
}

static void on_event(wyc_client_t *c, const wyc_event_t *ev, void *ud)
{
    member_t *m = ud;
    (void)c;
    if (ev->type == WYC_EV_WELCOME && !m->welcomed) {
        m->welcomed = true;
        welcomed++;
    } else if (ev->type == WYC_EV_CHAT && !measuring && !strcmp(ev->chat.channel_id, channel) &&
               !strcmp(ev->chat.text, WARMUP_TEXT)) {
        warm++;
    } else if (ev->type == WYC_EV_CHAT && measuring && !strcmp(ev->chat.channel_id, channel) &&
               !strcmp(ev->chat.type, "text")) {
        uint64_t t0 = strtoull(ev->chat.text, NULL, 10);
        uint64_t now = wall_us();
        deliveries++;
        if (nlat < caplat && t0 && now >= t0)
            lat_us[nlat++] = now - t0;
        uint64_t st = (uint64_t)ev->chat.ts_ms * 1000u;
        if (nstore < caplat && st && now >= st)
            store_us[nstore++] = now - st;
    } else if (ev->type == WYC_EV_KICKED) {
        fprintf(stderr, "wy-chatbench: member %d kicked: %s\n", m->index, ev->reason);
    } else if (ev->type == WYC_EV_CLOSED || ev->type == WYC_EV_DISCONNECTED) {
        if (failures < 3)
            fprintf(stderr, "wy-chatbench: member %d: connection %s\n", m->index,
                    ev->type == WYC_EV_CLOSED ? "closed" : "lost");
        failures++;
    }
}

static bool warmed_up(void)
{
    return pending_ops == 0 && warm >= opt.members - failures;
}

static bool all_welcomed(void)
{
    return welcomed + failures >= opt.members;
}

static bool ops_done(void)
{
    return pending_ops == 0;
}

static void on_op(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_result_t *r, void *ud)
{
    (void)c;
    member_t *m = ud;
    pending_ops--;
    if (e->code != WY_OK) {
        fprintf(stderr, "wy-chatbench: member %d: %s\n", m->index, e->message);
        failures++;
        return;
    }
    if (!channel[0])
        snprintf(channel, sizeof channel, "%s", r->channel_id);
}

static int start_op(int rc)
{
    if (rc == WY_OK)
        pending_ops++;
    return rc;
}

/* ---- one step: a total rate over the senders, for opt.seconds ---- */

static double step_rate;
static uint64_t step_start_ms, step_sent;
static int next_sender;

static void on_sent(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_result_t *r, void *ud)
{
    (void)c;
    (void)r;
    (void)ud;
    pending_ops--;
    if (e->code == WY_OK) {
        sent_ok++;
        stored++;
    } else {
        send_err++;
    }
}

static void send_one(void)
{
    member_t *s = &members[next_sender];
    next_sender = (next_sender + 1) % opt.senders;
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, wall_us());
    if (start_op(wyc_chat_send(s->c, channel, NULL, text, on_sent, s)) != WY_OK)
        send_err++;
}

static void on_tick(uv_timer_t *t)
{
    uint64_t el = wy_now_ms() - step_start_ms;
    if (el >= (uint64_t)opt.seconds * 1000) {
        uv_timer_stop(t);
        return;
    }
    uint64_t due = (uint64_t)(step_rate * (double)el / 1000.0);
    while (step_sent < due) {
        send_one();
        step_sent++;
    }
}

/* With --sync: tells the driver a phase begins or ends and waits for its go (a line on
 * stdin); the driver reads CPU times and histograms meanwhile. */
static void sync_point(const char *what, const char *phase)
{
    if (!opt.sync)
        return;
    printf("{\"sync\":\"%s %s\"}\n", what, phase);
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        opt.sync = false; /* the driver is gone: go on without it */
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct_of(const uint64_t *v, size_t n, double p)
{
    return n ? v[(size_t)(p * (double)(n - 1))] : 0;
}

static uint64_t pct(double p)
{
    return pct_of(lat_us, nlat, p);
}

/* Sorts the step's samples; the store-to-deliver figures as a JSON fragment. */
static const char *sort_samples(void)
{
    static char buf[96];
    qsort(lat_us, nlat, sizeof *lat_us, cmp_u64);
    qsort(store_us, nstore, sizeof *store_us, cmp_u64);
    snprintf(buf, sizeof buf, ",\"store_p50_us\":%" PRIu64 ",\"store_p99_us\":%" PRIu64,
             pct_of(store_us, nstore, 0.5), pct_of(store_us, nstore, 0.99));
    return buf;
}

static uint64_t want_deliveries;
static bool all_delivered(void)
{
    return pending_ops == 0 && deliveries >= want_deliveries;
}

/* Runs one rate step; returns p99 in µs (or UINT64_MAX when deliveries went missing). */
static uint64_t run_step(double rate)
{
    char phase[32];
    snprintf(phase, sizeof phase, "rate %.0f", rate);
    sync_point("begin", phase);
    nlat = nstore = 0;
    deliveries = sent_ok = send_err = 0;
    step_rate = rate;
    step_sent = 0;
    measuring = true;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    step_start_ms = wy_now_ms();
    uv_timer_start(&t, on_tick, 1, 2);
    run_until(ops_done, (uint64_t)opt.seconds * 1000 + 50);
    while (uv_is_active((uv_handle_t *)&t))
        uv_run(&loop, UV_RUN_ONCE);
    uint64_t send_end = wy_now_ms();
    want_deliveries = sent_ok * (uint64_t)(opt.members - failures);
    run_until(all_delivered, 5000); /* stragglers still in flight */
    measuring = false;
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    sync_point("end", phase);
    double secs = (double)(send_end - step_start_ms) / 1000.0;
    const char *store = sort_samples();
    uint64_t p50 = pct(0.50), p99 = pct(0.99);
    printf("{\"bench\":\"chat fan-out\",\"rate\":%.0f,\"members\":%d,\"failed_members\":%d,"
           "\"sent\":%" PRIu64 ",\"send_errors\":%" PRIu64 ",\"deliveries\":%" PRIu64
           ",\"expected\":%" PRIu64 ",\"deliveries_per_s\":%.0f,\"p50_us\":%" PRIu64
           ",\"p99_us\":%" PRIu64 "%s}\n",
           rate, opt.members, failures, sent_ok, send_err, deliveries, want_deliveries,
           (double)deliveries / secs, p50, p99, store);
    fflush(stdout);
    return deliveries + deliveries / 100 < want_deliveries || send_err ? UINT64_MAX : p99;
}

/* ---- closed loop: each sender keeps one message in flight ---- */

static uint64_t closed_end_ms;

static void on_closed_sent(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_result_t *r,
                           void *ud);

static void closed_send(member_t *s)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, wall_us());
    if (start_op(wyc_chat_send(s->c, channel, NULL, text, on_closed_sent, s)) != WY_OK)
        send_err++;
}

static void on_closed_sent(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_result_t *r,
                           void *ud)
{
    (void)c;
    (void)r;
    pending_ops--;
    if (e->code == WY_OK)
        sent_ok++;
    else
        send_err++;
    if (wy_now_ms() < closed_end_ms)
        closed_send(ud);
}

static void run_closed(void)
{
    sync_point("begin", "closed");
    sent_ok = send_err = deliveries = 0;
    nlat = nstore = 0;
    measuring = true;
    uint64_t t0 = wy_now_ms();
    closed_end_ms = t0 + (uint64_t)opt.seconds * 1000;
    int n = opt.closed < opt.senders ? opt.closed : opt.senders;
    for (int i = 0; i < n; i++)
        closed_send(&members[i]);
    run_until(ops_done, (uint64_t)opt.seconds * 1000 + 10000);
    double secs = (double)(wy_now_ms() - t0) / 1000.0;
    want_deliveries = sent_ok * (uint64_t)(opt.members - failures);
    run_until(all_delivered, 5000);
    measuring = false;
    sync_point("end", "closed");
    const char *store = sort_samples();
    printf("{\"bench\":\"chat messages stored\",\"senders_in_flight\":%d,\"stored\":%" PRIu64
           ",\"send_errors\":%" PRIu64 ",\"stored_per_s\":%.0f,\"deliveries_per_s\":%.0f"
           ",\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64 "%s}\n",
           n, sent_ok, send_err, (double)sent_ok / secs, (double)deliveries / secs, pct(0.5),
           pct(0.99), store);
    fflush(stdout);
}

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

int main(int argc, char **argv)
{
    char *lobbies = NULL, *rates = "20,50,75,100,125,150,200";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--sync")) {
            opt.sync = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "--lobby"))
            lobbies = (char *)v;
        else if (!strcmp(a, "--key"))
            opt.key = v;
        else if (!strcmp(a, "--kid"))
            opt.kid = v;
        else if (!strcmp(a, "--members"))
            opt.members = atoi(v);
        else if (!strcmp(a, "--senders"))
            opt.senders = atoi(v);
        else if (!strcmp(a, "--seconds"))
            opt.seconds = atoi(v);
        else if (!strcmp(a, "--rates"))
            rates = (char *)v;
        else if (!strcmp(a, "--p99-ms"))
            opt.p99_ms = atof(v);
        else if (!strcmp(a, "--closed"))
            opt.closed = atoi(v);
        else
            return usage();
    }
    if (!lobbies || !opt.key || opt.members < 2 || opt.senders < 1 || opt.senders > opt.members ||
        opt.seconds < 1 || opt.closed < 1)
        return usage();
    for (char *p = strtok(lobbies, ","); p && opt.nlobbies < MAX_LOBBIES; p = strtok(NULL, ","))
        opt.lobbies[opt.nlobbies++] = p;
    for (char *p = strtok(rates, ","); p && opt.nrates < 16; p = strtok(NULL, ","))
        opt.rates[opt.nrates++] = atof(p);
    const char *err = NULL;
    ks = wy_jwt_keyset_new();
    if (wy_token_keyset_load_file(ks, opt.key, opt.kid, &err) != WY_OK) {
        fprintf(stderr, "wy-chatbench: %s: %s\n", opt.key, err);
        return 1;
    }
    uv_loop_init(&loop);
    wyc_ctx_t *ctx[MAX_LOBBIES];
    for (int i = 0; i < opt.nlobbies; i++) {
        wyc_config_t cfg;
        wyc_config_default(&cfg);
        cfg.auth_url = "http://127.0.0.1:1"; /* never called: the tokens are signed here */
        cfg.lobby_url = opt.lobbies[i];
        cfg.auto_refresh = false;
        cfg.auto_reconnect = false;
        cfg.timeout_ms = 30000;
        if (wyc_ctx_new(&loop, &cfg, &ctx[i], &err) != WY_OK) {
            fprintf(stderr, "wy-chatbench: %s\n", err);
            return 1;
        }
    }
    members = wy_calloc((size_t)opt.members, sizeof *members);
    caplat = 4000000;
    lat_us = wy_malloc(caplat * sizeof *lat_us);
    store_us = wy_malloc(caplat * sizeof *store_us);
    /* Log everyone in, spread over the lobbies. */
    for (int i = 0; i < opt.members; i++) {
        member_t *m = &members[i];
        m->index = i;
        wy_uuid4(m->account);
        wyc_client_new(ctx[i % opt.nlobbies], on_event, m, &m->c);
        wyc_session_t s;
        memset(&s, 0, sizeof s);
        char *tok = NULL;
        if (wy_token_issue(ks, opt.kid, "wyvern-auth", "wyvern", m->account, "bench", 3600, 0, &tok,
                           NULL, &err) != WY_OK) {
            fprintf(stderr, "wy-chatbench: token: %s\n", err);
            return 1;
        }
        snprintf(s.account_id, sizeof s.account_id, "%s", m->account);
        snprintf(s.access_token, sizeof s.access_token, "%s", tok);
        snprintf(s.refresh_token, sizeof s.refresh_token, "unused");
        s.access_expires_at_ms = (int64_t)wy_wall_ms() + 3600 * 1000;
        wy_free(tok);
        wyc_session_restore(m->c, &s);
        wyc_lobby_connect(m->c);
        if (i % 100 == 99)
            run_until(all_welcomed, 1); /* let the handshakes progress */
    }
    run_until(all_welcomed, 60000);
    if (welcomed < opt.members) {
        fprintf(stderr, "wy-chatbench: %d of %d sessions welcomed\n", welcomed, opt.members);
        return 1;
    }
    /* The guild: member 0 creates it and invites everyone, each joins. */
    start_op(wyc_chat_create(members[0].c, "guild", "bench", on_op, &members[0]));
    run_until(ops_done, 30000);
    for (int i = 1; i < opt.members && channel[0]; i++) {
        while (start_op(wyc_chat_invite(members[0].c, channel, members[i].account, on_op,
                                        &members[0])) == WY_EBUSY)
            uv_run(&loop, UV_RUN_ONCE);
    }
    run_until(ops_done, 120000);
    for (int i = 1; i < opt.members && channel[0]; i++) {
        start_op(wyc_chat_join(members[i].c, channel, on_op, &members[i]));
        if (i % 50 == 0)
            run_until(ops_done, 60000);
    }
    run_until(ops_done, 120000);
    if (!channel[0] || failures) {
        fprintf(stderr, "wy-chatbench: setup failed (%d failures)\n", failures);
        return 1;
    }
    /* The setup's 2 x members membership events (each listing the members) must be delivered
     * before the first step, or its first messages queue behind them: one unmeasured message
     * after them, in the same channel, reaches everyone only once they are all through. */
    start_op(wyc_chat_send(members[0].c, channel, NULL, WARMUP_TEXT, on_op, &members[0]));
    run_until(warmed_up, 120000);
    if (warm < opt.members - failures) {
        fprintf(stderr,
                "wy-chatbench: the setup's events did not drain (%d of %d got the warm-up)\n", warm,
                opt.members - failures);
        return 1;
    }
    double best = 0;
    uint64_t best_p99 = 0;
    for (int i = 0; i < opt.nrates; i++) {
        uint64_t p99 = run_step(opt.rates[i]);
        if (p99 == UINT64_MAX || (double)p99 > opt.p99_ms * 1000.0)
            break;
        best = opt.rates[i];
        best_p99 = p99;
    }
    printf("{\"bench\":\"chat fan-out best\",\"rate\":%.0f,\"deliveries_per_s\":%.0f,"
           "\"p99_us\":%" PRIu64 ",\"p99_goal_ms\":%.0f}\n",
           best, best * (opt.members - failures), best_p99, opt.p99_ms);
    run_closed();
    for (int i = 0; i < opt.members; i++)
        wyc_client_close(members[i].c);
    for (int i = 0; i < opt.nlobbies; i++)
        wyc_ctx_close(ctx[i], NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    wy_free(members);
    wy_free(lat_us);
    wy_free(store_us);
    wy_jwt_keyset_free(ks);
    return 0;
}
