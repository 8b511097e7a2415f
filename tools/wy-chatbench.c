/* wy-chatbench — chat fan-out figures of `make bench`: a guild of --members players spread over
 * the given lobby instances (libs/client, one libuv loop), senders at fixed total rates (20
 * msg/s, then higher steps), and per step the deliveries per second and the send-to-deliver
 * latency (p50/p99: from the sender's chat_send to each member's push, so it covers lobby,
 * wy-chat, PostgreSQL, the outbox, Kafka and the delivering lobby; and store_p50/p99 from
 * wy-chat's store time, ts_ms, wall clock of the same machine, ms resolution); then senders in a
 * closed loop for the messages stored per second. Prints one JSON object per line.
 *
 * One thread per lobby instance (its own libuv loop and wyc context, its members and its share of
 * the senders): the 1,000 receivers of a message are read by two threads, not queued behind one.
 * Latency is still the receiving thread's wall clock at the push minus the sender's
 * (CLOCK_REALTIME, one machine). The main thread only orders the phases (a barrier) and merges the
 * samples. */
#include "client/wyc.h"
#include "wy_token.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
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
#define MAX_SENDERS 64

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

typedef struct worker worker_t;

typedef struct member {
    wyc_client_t *c;
    worker_t *w;
    int index;
    char account[40];
    char *token;
    bool welcomed;
} member_t;

/* One thread: one lobby's members on its own loop. Its fields are its own during a phase; the
 * main thread reads them between phases (the barrier orders the two). */
struct worker {
    int idx;
    pthread_t th;
    uv_loop_t loop;
    uv_timer_t poke;       /* wakes the loop so cross-thread conditions and timeouts get checked */
    uv_timer_t send_timer; /* a rate step's sends */
    wyc_ctx_t *ctx;
    int nmembers, welcomed, failures, pending_ops, warm;
    int senders[MAX_SENDERS], nsenders;
    uint64_t *lat_us;   /* samples of the step: the sender's chat_send to the push */
    uint64_t *store_us; /* wy-chat's store time (ts_ms, wall ms) to the push */
    size_t nlat, nstore, caplat;
    uint64_t deliveries, sent_ok, send_err, send_end_ms;
    /* a rate step */
    double rate;
    uint64_t step_sent;
    int next_sender;
};

static member_t *members;
static worker_t workers[MAX_LOBBIES];
static int nworkers;
static wy_jwt_keyset_t *ks;
static char channel[WYC_CHAT_CHANNEL_MAX]; /* written by worker 0 in the create phase */
static bool measuring;                     /* set by the main thread between phases */
static uint64_t step_start_ms, closed_end_ms;
static double step_rate;
/* Cross-thread during a measured phase: the workers done sending and what they sent. */
static atomic_int senders_done;
static atomic_uint_fast64_t total_sent;

#define WARMUP_TEXT "warm-up"

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_poke(uv_timer_t *t)
{
    (void)t;
}

static void run_until(worker_t *w, bool (*done)(worker_t *), uint64_t timeout_ms)
{
    uint64_t end = wy_now_ms() + timeout_ms;
    uv_timer_start(&w->poke, on_poke, 10, 10);
    while (!done(w) && wy_now_ms() < end)
        uv_run(&w->loop, UV_RUN_ONCE);
    uv_timer_stop(&w->poke);
}

static void on_event(wyc_client_t *c, const wyc_event_t *ev, void *ud)
{
    member_t *m = ud;
    worker_t *w = m->w;
    (void)c;
    if (ev->type == WYC_EV_WELCOME && !m->welcomed) {
        m->welcomed = true;
        w->welcomed++;
    } else if (ev->type == WYC_EV_CHAT && !measuring && !strcmp(ev->chat.channel_id, channel) &&
               !strcmp(ev->chat.text, WARMUP_TEXT)) {
        w->warm++;
    } else if (ev->type == WYC_EV_CHAT && measuring && !strcmp(ev->chat.channel_id, channel) &&
               !strcmp(ev->chat.type, "text")) {
        uint64_t t0 = strtoull(ev->chat.text, NULL, 10);
        uint64_t now = wall_us();
        w->deliveries++;
        if (w->nlat < w->caplat && t0 && now >= t0)
            w->lat_us[w->nlat++] = now - t0;
        uint64_t st = (uint64_t)ev->chat.ts_ms * 1000u;
        if (w->nstore < w->caplat && st && now >= st)
            w->store_us[w->nstore++] = now - st;
    } else if (ev->type == WYC_EV_KICKED) {
        fprintf(stderr, "wy-chatbench: member %d kicked: %s\n", m->index, ev->reason);
    } else if (ev->type == WYC_EV_CLOSED || ev->type == WYC_EV_DISCONNECTED) {
        if (w->failures < 3)
            fprintf(stderr, "wy-chatbench: member %d: connection %s\n", m->index,
                    ev->type == WYC_EV_CLOSED ? "closed" : "lost");
        w->failures++;
    }
}

static bool warmed_up(worker_t *w)
{
    return w->pending_ops == 0 && w->warm >= w->nmembers - w->failures;
}

static bool all_welcomed(worker_t *w)
{
    return w->welcomed + w->failures >= w->nmembers;
}

static bool ops_done(worker_t *w)
{
    return w->pending_ops == 0;
}

static void on_op(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_result_t *r, void *ud)
{
    (void)c;
    member_t *m = ud;
    m->w->pending_ops--;
    if (e->code != WY_OK) {
        fprintf(stderr, "wy-chatbench: member %d: %s\n", m->index, e->message);
        m->w->failures++;
        return;
    }
    if (!channel[0])
        snprintf(channel, sizeof channel, "%s", r->channel_id);
}

static int start_op(worker_t *w, int rc)
{
    if (rc == WY_OK)
        w->pending_ops++;
    return rc;
}

/* ---- the phases: each runs on every worker's thread at once ---- */

static void phase_connect(worker_t *w)
{
    int n = 0;
    for (int i = w->idx; i < opt.members; i += nworkers) {
        member_t *m = &members[i];
        wyc_client_new(w->ctx, on_event, m, &m->c);
        wyc_session_t s;
        memset(&s, 0, sizeof s);
        snprintf(s.account_id, sizeof s.account_id, "%s", m->account);
        snprintf(s.access_token, sizeof s.access_token, "%s", m->token);
        snprintf(s.refresh_token, sizeof s.refresh_token, "unused");
        s.access_expires_at_ms = (int64_t)wy_wall_ms() + 3600 * 1000;
        wyc_session_restore(m->c, &s);
        wyc_lobby_connect(m->c);
        if (++n % 50 == 0)
            uv_run(&w->loop, UV_RUN_NOWAIT); /* let the handshakes progress */
    }
    run_until(w, all_welcomed, 60000);
}

/* The guild: member 0 (worker 0) creates it and invites everyone. */
static void phase_create(worker_t *w)
{
    if (w->idx != 0)
        return;
    start_op(w, wyc_chat_create(members[0].c, "guild", "bench", on_op, &members[0]));
    run_until(w, ops_done, 30000);
    for (int i = 1; i < opt.members && channel[0]; i++) {
        while (start_op(w, wyc_chat_invite(members[0].c, channel, members[i].account, on_op,
                                           &members[0])) == WY_EBUSY)
            uv_run(&w->loop, UV_RUN_ONCE);
    }
    run_until(w, ops_done, 120000);
}

static void phase_join(worker_t *w)
{
    int n = 0;
    for (int i = w->idx; i < opt.members && channel[0]; i += nworkers) {
        if (i == 0)
            continue;
        start_op(w, wyc_chat_join(members[i].c, channel, on_op, &members[i]));
        if (++n % 50 == 0)
            run_until(w, ops_done, 60000);
    }
    run_until(w, ops_done, 120000);
}

/* The setup's 2 x members membership events (each listing the members) must be delivered
 * before the first step, or its first messages queue behind them: one unmeasured message after
 * them, in the same channel, reaches everyone only once they are all through. */
static void phase_warm(worker_t *w)
{
    if (w->idx == 0)
        start_op(w, wyc_chat_send(members[0].c, channel, NULL, WARMUP_TEXT, on_op, &members[0]));
    run_until(w, warmed_up, 120000);
}

/* A send answered: counted on its sender's worker. */
static void count_sent(member_t *m, const wyc_error_t *e)
{
    m->w->pending_ops--;
    if (e->code == WY_OK)
        m->w->sent_ok++;
    else
        m->w->send_err++;
}

static void on_sent(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_result_t *r, void *ud)
{
    (void)c;
    (void)r;
    count_sent(ud, e);
}

static void send_one(worker_t *w)
{
    member_t *s = &members[w->senders[w->next_sender]];
    w->next_sender = (w->next_sender + 1) % w->nsenders;
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, wall_us());
    if (start_op(w, wyc_chat_send(s->c, channel, NULL, text, on_sent, s)) != WY_OK)
        w->send_err++;
}

static void on_tick(uv_timer_t *t)
{
    worker_t *w = t->data;
    uint64_t el = wy_now_ms() - step_start_ms;
    if (el >= (uint64_t)opt.seconds * 1000) {
        uv_timer_stop(t);
        return;
    }
    uint64_t due = (uint64_t)(w->rate * (double)el / 1000.0);
    while (w->step_sent < due) {
        send_one(w);
        w->step_sent++;
    }
}

/* Every worker is done sending and this one got each accepted message once per live member. */
static bool all_delivered(worker_t *w)
{
    return w->pending_ops == 0 && atomic_load(&senders_done) == nworkers &&
           w->deliveries >= atomic_load(&total_sent) * (uint64_t)(w->nmembers - w->failures);
}

/* Sending is over on this worker: its count joins the total the drain waits for. */
static void sending_done(worker_t *w)
{
    atomic_fetch_add(&total_sent, w->sent_ok);
    atomic_fetch_add(&senders_done, 1);
}

static void phase_step(worker_t *w)
{
    w->rate = step_rate * (double)w->nsenders / (double)opt.senders;
    w->step_sent = 0;
    if (w->nsenders > 0) {
        uv_timer_start(&w->send_timer, on_tick, 1, 2);
        while (uv_is_active((uv_handle_t *)&w->send_timer))
            uv_run(&w->loop, UV_RUN_ONCE);
    }
    w->send_end_ms = wy_now_ms(); /* the step's length: its senders' time */
    run_until(w, ops_done, 30000);
    sending_done(w);
    run_until(w, all_delivered, 5000); /* stragglers still in flight */
}

static void on_closed_sent(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_result_t *r,
                           void *ud);

static void closed_send(member_t *s)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, wall_us());
    if (start_op(s->w, wyc_chat_send(s->c, channel, NULL, text, on_closed_sent, s)) != WY_OK)
        s->w->send_err++;
}

static void on_closed_sent(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_result_t *r,
                           void *ud)
{
    (void)c;
    (void)r;
    member_t *s = ud;
    count_sent(s, e);
    if (wy_now_ms() < closed_end_ms)
        closed_send(s);
}

static int closed_n(void)
{
    return opt.closed < opt.senders ? opt.closed : opt.senders;
}

static void phase_closed(worker_t *w)
{
    for (int i = 0; i < w->nsenders; i++)
        if (w->senders[i] < closed_n())
            closed_send(&members[w->senders[i]]);
    run_until(w, ops_done, (uint64_t)opt.seconds * 1000 + 10000);
    w->send_end_ms = wy_now_ms();
    sending_done(w);
    run_until(w, all_delivered, 5000);
}

static void phase_close(worker_t *w)
{
    for (int i = w->idx; i < opt.members; i += nworkers)
        wyc_client_close(members[i].c);
    wyc_ctx_close(w->ctx, NULL, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* ---- the main thread: phases in order, results ---- */

static pthread_barrier_t bar;
static void (*phase_fn)(worker_t *);

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    for (;;) {
        pthread_barrier_wait(&bar);
        void (*fn)(worker_t *) = phase_fn;
        if (!fn)
            return NULL;
        fn(w);
        pthread_barrier_wait(&bar);
    }
}

/* Runs fn on every worker at once and waits for all of them. */
static void run_phase(void (*fn)(worker_t *))
{
    phase_fn = fn;
    pthread_barrier_wait(&bar);
    if (fn)
        pthread_barrier_wait(&bar);
}

static int sum_int(size_t off)
{
    int n = 0;
    for (int i = 0; i < nworkers; i++)
        n += *(int *)((char *)&workers[i] + off);
    return n;
}

static uint64_t sum_u64(size_t off)
{
    uint64_t n = 0;
    for (int i = 0; i < nworkers; i++)
        n += *(uint64_t *)((char *)&workers[i] + off);
    return n;
}

#define SUM_INT(f) sum_int(offsetof(worker_t, f))
#define SUM_U64(f) sum_u64(offsetof(worker_t, f))

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

static uint64_t *lat_all, *store_all;
static size_t nlat_all, nstore_all;

/* Merges and sorts the workers' samples of the phase; the store-to-deliver figures as a JSON
 * fragment. */
static const char *sort_samples(void)
{
    static char buf[96];
    size_t nl = 0, ns = 0;
    for (int i = 0; i < nworkers; i++) {
        nl += workers[i].nlat;
        ns += workers[i].nstore;
    }
    lat_all = wy_realloc(lat_all, (nl ? nl : 1) * sizeof *lat_all);
    store_all = wy_realloc(store_all, (ns ? ns : 1) * sizeof *store_all);
    nlat_all = nstore_all = 0;
    for (int i = 0; i < nworkers; i++) {
        worker_t *w = &workers[i];
        memcpy(lat_all + nlat_all, w->lat_us, w->nlat * sizeof *lat_all);
        nlat_all += w->nlat;
        memcpy(store_all + nstore_all, w->store_us, w->nstore * sizeof *store_all);
        nstore_all += w->nstore;
    }
    qsort(lat_all, nlat_all, sizeof *lat_all, cmp_u64);
    qsort(store_all, nstore_all, sizeof *store_all, cmp_u64);
    snprintf(buf, sizeof buf, ",\"store_p50_us\":%" PRIu64 ",\"store_p99_us\":%" PRIu64,
             pct_of(store_all, nstore_all, 0.5), pct_of(store_all, nstore_all, 0.99));
    return buf;
}

static uint64_t pct(double p)
{
    return pct_of(lat_all, nlat_all, p);
}

/* Before a measured phase: the workers' counters and samples start at zero. */
static void reset_counters(void)
{
    for (int i = 0; i < nworkers; i++) {
        worker_t *w = &workers[i];
        w->nlat = w->nstore = 0;
        w->deliveries = w->sent_ok = w->send_err = 0;
        w->next_sender = 0;
    }
    atomic_store(&senders_done, 0);
    atomic_store(&total_sent, 0);
}

static uint64_t last_send_end(void)
{
    uint64_t t = 0;
    for (int i = 0; i < nworkers; i++)
        if (workers[i].send_end_ms > t)
            t = workers[i].send_end_ms;
    return t;
}

/* Runs one rate step; returns p99 in µs (or UINT64_MAX when deliveries went missing). */
static uint64_t run_step(double rate)
{
    char phase[32];
    snprintf(phase, sizeof phase, "rate %.0f", rate);
    sync_point("begin", phase);
    reset_counters();
    step_rate = rate;
    measuring = true;
    step_start_ms = wy_now_ms();
    run_phase(phase_step);
    measuring = false;
    sync_point("end", phase);
    uint64_t sent_ok = SUM_U64(sent_ok), send_err = SUM_U64(send_err);
    uint64_t deliveries = SUM_U64(deliveries);
    int failures = SUM_INT(failures);
    uint64_t want = sent_ok * (uint64_t)(opt.members - failures);
    double secs = (double)(last_send_end() - step_start_ms) / 1000.0;
    const char *store = sort_samples();
    uint64_t p50 = pct(0.50), p99 = pct(0.99);
    printf("{\"bench\":\"chat fan-out\",\"rate\":%.0f,\"members\":%d,\"failed_members\":%d,"
           "\"sent\":%" PRIu64 ",\"send_errors\":%" PRIu64 ",\"deliveries\":%" PRIu64
           ",\"expected\":%" PRIu64 ",\"deliveries_per_s\":%.0f,\"p50_us\":%" PRIu64
           ",\"p99_us\":%" PRIu64 ",\"client_threads\":%d%s}\n",
           rate, opt.members, failures, sent_ok, send_err, deliveries, want,
           (double)deliveries / secs, p50, p99, nworkers, store);
    fflush(stdout);
    return deliveries + deliveries / 100 < want || send_err ? UINT64_MAX : p99;
}

/* Closed loop: each sender keeps one message in flight. */
static void run_closed(void)
{
    sync_point("begin", "closed");
    reset_counters();
    measuring = true;
    uint64_t t0 = wy_now_ms();
    closed_end_ms = t0 + (uint64_t)opt.seconds * 1000;
    run_phase(phase_closed);
    measuring = false;
    sync_point("end", "closed");
    uint64_t sent_ok = SUM_U64(sent_ok), send_err = SUM_U64(send_err);
    double secs = (double)(last_send_end() - t0) / 1000.0;
    const char *store = sort_samples();
    printf("{\"bench\":\"chat messages stored\",\"senders_in_flight\":%d,\"stored\":%" PRIu64
           ",\"send_errors\":%" PRIu64 ",\"stored_per_s\":%.0f,\"deliveries_per_s\":%.0f"
           ",\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64 "%s}\n",
           closed_n(), sent_ok, send_err, (double)sent_ok / secs,
           (double)SUM_U64(deliveries) / secs, pct(0.5), pct(0.99), store);
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
        opt.senders > MAX_SENDERS || opt.seconds < 1 || opt.closed < 1)
        return usage();
    for (char *p = strtok(lobbies, ","); p && opt.nlobbies < MAX_LOBBIES; p = strtok(NULL, ","))
        opt.lobbies[opt.nlobbies++] = p;
    for (char *p = strtok(rates, ","); p && opt.nrates < 16; p = strtok(NULL, ","))
        opt.rates[opt.nrates++] = atof(p);
    if (opt.nlobbies < 1)
        return usage();
    const char *err = NULL;
    ks = wy_jwt_keyset_new();
    if (wy_token_keyset_load_file(ks, opt.key, opt.kid, &err) != WY_OK) {
        fprintf(stderr, "wy-chatbench: %s: %s\n", opt.key, err);
        return 1;
    }
    /* Accounts and their tokens first (signing stays on this thread). */
    members = wy_calloc((size_t)opt.members, sizeof *members);
    for (int i = 0; i < opt.members; i++) {
        member_t *m = &members[i];
        m->index = i;
        wy_uuid4(m->account);
        if (wy_token_issue(ks, opt.kid, "wyvern-auth", "wyvern", m->account, "bench", 3600, 0,
                           &m->token, NULL, &err) != WY_OK) {
            fprintf(stderr, "wy-chatbench: token: %s\n", err);
            return 1;
        }
    }
    /* One worker per lobby: member i is on worker i % lobbies, and so is sender i. */
    nworkers = opt.nlobbies;
    size_t cap = 4000000 / (size_t)nworkers;
    for (int i = 0; i < nworkers; i++) {
        worker_t *w = &workers[i];
        w->idx = i;
        uv_loop_init(&w->loop);
        uv_timer_init(&w->loop, &w->poke);
        uv_timer_init(&w->loop, &w->send_timer);
        w->send_timer.data = w;
        wyc_config_t cfg;
        wyc_config_default(&cfg);
        cfg.auth_url = "http://127.0.0.1:1"; /* never called: the tokens are signed here */
        cfg.lobby_url = opt.lobbies[i];
        cfg.auto_refresh = false;
        cfg.auto_reconnect = false;
        cfg.timeout_ms = 30000;
        if (wyc_ctx_new(&w->loop, &cfg, &w->ctx, &err) != WY_OK) {
            fprintf(stderr, "wy-chatbench: %s\n", err);
            return 1;
        }
        w->caplat = cap;
        w->lat_us = wy_malloc(cap * sizeof *w->lat_us);
        w->store_us = wy_malloc(cap * sizeof *w->store_us);
    }
    for (int i = 0; i < opt.members; i++) {
        worker_t *w = &workers[i % nworkers];
        members[i].w = w;
        w->nmembers++;
        if (i < opt.senders)
            w->senders[w->nsenders++] = i;
    }
    pthread_barrier_init(&bar, NULL, (unsigned)nworkers + 1);
    for (int i = 0; i < nworkers; i++)
        pthread_create(&workers[i].th, NULL, worker_main, &workers[i]);
    int rc = 0;
    run_phase(phase_connect);
    int welcomed = SUM_INT(welcomed);
    if (welcomed < opt.members) {
        fprintf(stderr, "wy-chatbench: %d of %d sessions welcomed\n", welcomed, opt.members);
        rc = 1;
        goto out;
    }
    run_phase(phase_create);
    run_phase(phase_join);
    if (!channel[0] || SUM_INT(failures)) {
        fprintf(stderr, "wy-chatbench: setup failed (%d failures)\n", SUM_INT(failures));
        rc = 1;
        goto out;
    }
    run_phase(phase_warm);
    int live = opt.members - SUM_INT(failures);
    if (SUM_INT(warm) < live) {
        fprintf(stderr,
                "wy-chatbench: the setup's events did not drain (%d of %d got the warm-up)\n",
                SUM_INT(warm), live);
        rc = 1;
        goto out;
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
           best, best * (opt.members - SUM_INT(failures)), best_p99, opt.p99_ms);
    run_closed();
out:
    run_phase(phase_close);
    run_phase(NULL);
    for (int i = 0; i < nworkers; i++) {
        pthread_join(workers[i].th, NULL);
        uv_close((uv_handle_t *)&workers[i].poke, NULL);
        uv_close((uv_handle_t *)&workers[i].send_timer, NULL);
        uv_run(&workers[i].loop, UV_RUN_DEFAULT);
        uv_loop_close(&workers[i].loop);
        wy_free(workers[i].lat_us);
        wy_free(workers[i].store_us);
    }
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < opt.members; i++)
        wy_free(members[i].token);
    wy_free(members);
    wy_free(lat_all);
    wy_free(store_all);
    wy_jwt_keyset_free(ks);
    return rc;
}
