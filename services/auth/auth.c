/* wy-auth: the daemon spec (dependencies, ports, configuration) and the service's life:
 * start() loads the signing keys and opens the client API, stop() drains it. */
#include "auth.h"
#include "wy_log.h"

#include <string.h>

/* Redis key prefixes of the failed-login limiters (docs/keys.md); wy_ratelimit appends
 * ":<key>". One key per check: any slot. */
#define RKEY_AUTH_RL_PAIR "auth:rl:pair"
#define RKEY_AUTH_RL_ACCT "auth:rl:acct"
#define RKEY_AUTH_RL_IP   "auth:rl:ip"

#define AUTH_DRAIN_POLL_MS 50
#define AUTH_MAX_CONFIG    64

/* Offsets into auth_cfg_t: the daemon keeps the values (spec.config_size), auth_t points at
 * them. */
static const wy_cfg_entry_t auth_own_config[] = {
    {"WY_AUTH_HTTP_PORT", WY_CFG_INT, "8080", 1, 65535, NULL,
     "Port of the client HTTP/JSON API (register, login, refresh, JWKS).",
     WY_CFG_OFF(auth_cfg_t, http_port), false},
    {"WY_AUTH_KEYS_DIR", WY_CFG_STRING, NULL, 0, 0, NULL,
     "Folder of Ed25519 PEM keys named <kid>.pem (a mounted Kubernetes Secret); every key "
     "verifies, the signing one must hold its private part. Required.",
     WY_CFG_OFF(auth_cfg_t, keys_dir), false},
    {"WY_AUTH_SIGNING_KID", WY_CFG_STRING, NULL, 0, 0, NULL,
     "kid of the key in WY_AUTH_KEYS_DIR that signs new access tokens. Required.",
     WY_CFG_OFF(auth_cfg_t, signing_kid), false},
    {"WY_AUTH_ISSUER", WY_CFG_STRING, "wyvern-auth", 0, 0, NULL,
     "iss claim of access tokens; verifiers must expect the same.", WY_CFG_OFF(auth_cfg_t, issuer),
     false},
    {"WY_AUTH_AUDIENCE", WY_CFG_STRING, "wyvern", 0, 0, NULL,
     "aud claim of access tokens; verifiers must expect the same.",
     WY_CFG_OFF(auth_cfg_t, audience), false},
    {"WY_AUTH_ACCESS_TTL", WY_CFG_DURATION_MS, "15m", 60000, 86400000, NULL,
     "Lifetime of an access token (1m..24h).", WY_CFG_OFF(auth_cfg_t, access_ttl_ms), false},
    {"WY_AUTH_REFRESH_TTL", WY_CFG_DURATION_MS, "720h", 60000, 31622400000LL, NULL,
     "Lifetime of a refresh token (rotated on every use); 720h = 30 days.",
     WY_CFG_OFF(auth_cfg_t, refresh_ttl_ms), false},
    {"WY_AUTH_ARGON2_MEMORY", WY_CFG_SIZE, "19MiB", 65536, 1073741824LL, NULL,
     "Argon2id memory per password hash (OWASP minimum 19MiB).",
     WY_CFG_OFF(auth_cfg_t, argon2_memory), false},
    {"WY_AUTH_ARGON2_ITERATIONS", WY_CFG_INT, "2", 1, 20, NULL, "Argon2id passes (time cost).",
     WY_CFG_OFF(auth_cfg_t, argon2_iterations), false},
    {"WY_AUTH_HASH_QUEUE", WY_CFG_INT, "32", 1, 100000, NULL,
     "Most password hashes queued or running; more get 503 HASH_QUEUE_FULL so a flood of "
     "logins cannot take the worker pool (size: UV_THREADPOOL_SIZE, default 4).",
     WY_CFG_OFF(auth_cfg_t, hash_queue), false},
    {"WY_AUTH_LOGIN_LIMIT_ACCOUNT_SOURCE", WY_CFG_INT, "10", 1, 100000, NULL,
     "Failed password logins allowed per (account, source address) per window; then 429 for "
     "that account from that address only.",
     WY_CFG_OFF(auth_cfg_t, limit_pair), false},
    {"WY_AUTH_LOGIN_LIMIT_ACCOUNT", WY_CFG_INT, "100", 1, 100000, NULL,
     "Failed password logins allowed per account per window from all sources together (keep it "
     "well above ..._ACCOUNT_SOURCE: reaching it refuses the owner too); then 429.",
     WY_CFG_OFF(auth_cfg_t, limit_account), false},
    {"WY_AUTH_LOGIN_LIMIT_IP", WY_CFG_INT, "100", 1, 100000, NULL,
     "Failed password logins allowed per source address per window, all accounts together; "
     "then 429.",
     WY_CFG_OFF(auth_cfg_t, limit_ip), false},
    {"WY_AUTH_LOGIN_WINDOW", WY_CFG_DURATION_MS, "15m", 1000, 86400000, NULL,
     "Sliding window of the failed-login limits.", WY_CFG_OFF(auth_cfg_t, limit_window_ms), false},
    {"WY_AUTH_CUSTOM_SECRET", WY_CFG_STRING, "", 0, 0, NULL,
     "Server key a studio's backend sends in X-Wyvern-Server-Key for custom-id logins; empty "
     "disables custom-id login; at least 16 characters.",
     WY_CFG_OFF(auth_cfg_t, custom_secret), true},
    {"WY_AUTH_JWKS_MAX_AGE", WY_CFG_DURATION_MS, "5m", 0, 86400000, NULL,
     "How long verifiers may cache the public keys (Cache-Control, GetKeys max_age_s).",
     WY_CFG_OFF(auth_cfg_t, jwks_max_age_ms), false},
    {"WY_AUTH_SIGN_WORKERS", WY_CFG_INT, "2", 0, 64, NULL,
     "Threads that sign access tokens (Ed25519) and build the token answers of logins, "
     "refreshes and registrations, beside the loop thread; 0 signs on the loop thread.",
     WY_CFG_OFF(auth_cfg_t, sign_workers), false},
    {"WY_AUTH_SIGN_QUEUE", WY_CFG_INT, "4096", 1, 1000000, NULL,
     "Most logins, refreshes and registrations between their write and their answer (waiting "
     "for the commit, or for or in signing); more get 503 UNAVAILABLE with Retry-After before "
     "writing anything.",
     WY_CFG_OFF(auth_cfg_t, sign_queue), false},
};

static wy_cfg_entry_t auth_config[AUTH_MAX_CONFIG];

static int auth_start(wy_daemon_t *d, const char **err);
static void auth_stop(wy_daemon_t *d);
static size_t auth_busy(wy_daemon_t *d);

/* Not ready until the refresh-token key is read (tokens.c, auth_refresh_key_load). */
static const char *auth_unready(wy_daemon_t *d)
{
    auth_t *a = wy_daemon_state(d);
    return a && a->refresh_key_loaded ? NULL : "refresh_key";
}

wy_daemon_spec_t auth_daemon_spec = {
    .svc = "auth",
    .grpc_service = "wyvern.auth.Auth",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .helpers = WY_HELPER_OUTBOX, /* wy.account events (tokens.c) */
    .ops_port = 9101,
    .grpc_port = 9201,
    .start = auth_start,
    .stop = auth_stop,
    .busy = auth_busy,
    .unready = auth_unready,
};

void auth_config_init(void)
{
    size_t n = 0;
    for (size_t i = 0; i < WY_ARRAY_LEN(auth_own_config); i++)
        auth_config[n++] = auth_own_config[i];
    size_t np = auth_provider_nconfig;
    if (np > AUTH_MAX_CONFIG - n)
        np = AUTH_MAX_CONFIG - n;
    /* The providers' offsets are into their own struct, embedded in auth_cfg_t. */
    wy_config_rebase(auth_config + n, auth_provider_config, np, WY_CFG_OFF(auth_cfg_t, providers));
    n += np;
    auth_daemon_spec.config = auth_config;
    auth_daemon_spec.nconfig = n;
    auth_daemon_spec.config_size = sizeof(auth_cfg_t);
}

/* ---- metrics ---- */

void auth_count(const char *name, const char *help, const char *labels)
{
    wy_metric_inc(wy_metrics_counter(name, help, labels));
}

void auth_count_login(const char *method, const char *result)
{
    /* The one a storm counts, once per login: its series looked up once (loop thread). */
    static const char *const methods[] = {"device", "custom", "password", "steam", "oidc"};
    static wy_metric_t *ok[sizeof methods / sizeof *methods];
    if (!strcmp(result, "ok"))
        for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
            if (!strcmp(method, methods[i])) {
                if (!ok[i]) {
                    char l[64];
                    snprintf(l, sizeof l, "method=\"%s\",result=\"ok\"", methods[i]);
                    ok[i] = wy_metrics_counter("wy_auth_logins_total",
                                               "Login attempts by method and result.", l);
                }
                wy_metric_inc(ok[i]);
                return;
            }
    char labels[128];
    snprintf(labels, sizeof labels, "method=\"%s\",result=\"%s\"", method, result);
    auth_count("wy_auth_logins_total", "Login attempts by method and result.", labels);
}

/* ---- state ---- */

auth_t *auth_current(wy_daemon_t *d)
{
    auth_t *a = wy_daemon_state(d);
    return a && !a->stopping ? a : NULL;
}

static void auth_free(auth_t *a)
{
    if (wy_daemon_state(a->d) == a)
        wy_daemon_set_state(a->d, NULL);
    wy_ratelimit_free(a->rl_pair);
    if (a->rl_account)
        wy_ratelimit_free(a->rl_account);
    if (a->rl_ip)
        wy_ratelimit_free(a->rl_ip);
    auth_db_batches_free(a);
    auth_events_marks_free(a);
    wy_redis_script_free(a->marker_script);
    wy_redis_script_free(a->reload_script);
    wy_jwt_keyset_free(a->keys);
    wy_free(a->jwks);
    auth_roles_free(a);
    wy_free(a);
}

void auth_ref(auth_t *a)
{
    a->refs++;
}

void auth_unref(auth_t *a)
{
    if (--a->refs == 0)
        auth_free(a);
}

wy_pg_t *auth_pg(auth_t *a)
{
    return wy_daemon_pg(a->d);
}

wy_redis_t *auth_redis(auth_t *a)
{
    return wy_daemon_redis(a->d);
}

static int load_keys(auth_t *a, const char **err)
{
    static char msg[512];
    const char *e = NULL;
    a->keys = wy_jwt_keyset_new();
    int rc = wy_token_keyset_load_dir(a->keys, a->cfg->keys_dir, &e);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "WY_AUTH_KEYS_DIR (%s): %s", a->cfg->keys_dir,
                 e ? e : wy_strerror(rc));
        *err = msg;
        return WY_EINVAL;
    }
    bool can_sign = false;
    if (wy_jwt_keyset_lookup(a->keys, a->cfg->signing_kid, NULL, &can_sign) != WY_OK) {
        snprintf(msg, sizeof msg,
                 "WY_AUTH_SIGNING_KID: no key \"%.64s\" in WY_AUTH_KEYS_DIR (want <kid>.pem)",
                 a->cfg->signing_kid);
        *err = msg;
        return WY_EINVAL;
    }
    if (!can_sign) {
        snprintf(msg, sizeof msg,
                 "WY_AUTH_SIGNING_KID: key \"%.64s\" is a public key; the signing key needs "
                 "its private part",
                 a->cfg->signing_kid);
        *err = msg;
        return WY_EINVAL;
    }
    a->jwks = wy_jwt_keyset_export_jwks(a->keys);
    char nkeys[16];
    snprintf(nkeys, sizeof nkeys, "%zu", wy_jwt_keyset_count(a->keys));
    wy_log_info("signing keys loaded", "keys", nkeys, "signing_kid", a->cfg->signing_kid, NULL);
    return WY_OK;
}

static int auth_start(wy_daemon_t *d, const char **err)
{
    static char msg[512];
    auth_t *a = wy_calloc(1, sizeof *a);
    a->d = d;
    a->cfg = wy_daemon_config(d);
    a->loop = wy_daemon_loop(d);
    a->refs = 1; /* released by stop() */
    wy_daemon_set_state(d, a);
    a->m_hash_queue =
        wy_metrics_gauge("wy_auth_hash_queue", "Password hashes queued or running.", NULL);
    a->m_redis_failed = wy_metrics_counter("wy_auth_redis_failures_total",
                                           "Redis commands of auth that failed.", NULL);
    /* Present from the first scrape, so rate() works before the first login. */
    wy_metrics_counter("wy_auth_logins_total", "Login attempts by method and result.",
                       "method=\"password\",result=\"ok\"");

    int rc = load_keys(a, err);
    if (rc != WY_OK)
        return rc;
    if (a->cfg->custom_secret && *a->cfg->custom_secret && strlen(a->cfg->custom_secret) < 16) {
        *err = "WY_AUTH_CUSTOM_SECRET: must be at least 16 characters (or empty to disable "
               "custom-id login)";
        return WY_EINVAL;
    }
    const char *e = NULL;
    rc = auth_hasher_new(a->loop, (uint32_t)(a->cfg->argon2_memory / 1024),
                         (uint32_t)a->cfg->argon2_iterations, (uint32_t)a->cfg->hash_queue,
                         &a->hasher, &e);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "WY_AUTH_ARGON2_MEMORY: %s", e);
        *err = msg;
        return rc;
    }
    rc = auth_providers_new(a->loop, &a->cfg->providers, &a->providers, &e);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "login providers: %s", e ? e : wy_strerror(rc));
        *err = msg;
        return rc;
    }
    rc = wy_ratelimit_new(auth_redis(a), RKEY_AUTH_RL_PAIR, (uint32_t)a->cfg->limit_pair,
                          (uint32_t)a->cfg->limit_window_ms, &a->rl_pair);
    if (rc == WY_OK)
        rc = wy_ratelimit_new(auth_redis(a), RKEY_AUTH_RL_ACCT, (uint32_t)a->cfg->limit_account,
                              (uint32_t)a->cfg->limit_window_ms, &a->rl_account);
    if (rc == WY_OK)
        rc = wy_ratelimit_new(auth_redis(a), RKEY_AUTH_RL_IP, (uint32_t)a->cfg->limit_ip,
                              (uint32_t)a->cfg->limit_window_ms, &a->rl_ip);
    if (rc != WY_OK) {
        *err = "WY_AUTH_LOGIN_LIMIT_*: cannot create the login rate limiters";
        return rc;
    }
    rc = auth_signer_start(a, err);
    if (rc != WY_OK)
        return rc;
    auth_db_batches_new(a);
    static const char *const routes[AUTH_LOGIN_EV_N] = {"direct", "outbox", "fallback", "lost"};
    for (int i = 0; i < AUTH_LOGIN_EV_N; i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "route=\"%s\"", routes[i]);
        a->m_login_ev[i] = wy_metrics_counter(
            "wy_auth_login_events_total",
            "account.login events by route: direct (to Kafka, no row), outbox (a row), fallback "
            "(not acknowledged, then a row), lost.",
            labels);
    }
    /* Rows a previous run left are read by the relay's first pass before logins go direct. */
    a->ev_marks = wy_map_new(AUTH_EVENTS_MARKS_MAX);
    wy_list_init(&a->ev_fifo);
    auth_events_mark(a, NULL);
    auth_refresh_key_load(a);
    rc = auth_grpc_register(a, err);
    if (rc != WY_OK)
        return rc;
    auth_revocations_watch(a);
    return auth_http_start(a, err);
}

static void on_drain_closed(uv_handle_t *h)
{
    auth_unref(h->data);
}

static void on_http_closed(void *ud)
{
    auth_unref(ud);
}

/* Requests in flight on auth's own HTTP server while it drains (the state stays the
 * daemon's until freed, kept alive by that server and its timer), and login events Kafka has
 * not acknowledged yet, so the daemon's drain waits for them (and their outbox commits) before
 * closing the outbox, the producer, PostgreSQL and Redis. */
static size_t auth_busy(wy_daemon_t *d)
{
    auth_t *a = wy_daemon_state(d);
    return a ? (a->http ? wy_http_in_flight(a->http) : 0) + a->login_events_inflight : 0;
}

static void on_drain_tick(uv_timer_t *t)
{
    auth_t *a = t->data;
    if (wy_http_in_flight(a->http) > 0 && wy_now_ms() < a->drain_deadline)
        return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, on_drain_closed);
    wy_http_close(a->http, on_http_closed, a);
    a->http = NULL;
}

static void auth_stop(wy_daemon_t *d)
{
    auth_t *a = wy_daemon_state(d);
    if (!a || a->stopping)
        return;
    a->stopping = true;
    auth_revocations_unwatch(a);
    if (a->providers) {
        auth_providers_close(a->providers);
        a->providers = NULL;
    }
    if (a->hasher) {
        auth_hasher_close(a->hasher);
        a->hasher = NULL;
    }
    if (a->http) {
        /* Requests in flight finish (they may still need PostgreSQL and Redis, which the
         * daemon closes after its own drain), for WY_AUTH_DRAIN_TIMEOUT at most, the
         * daemon's own drain time; then the server goes. */
        wy_http_stop(a->http);
        a->refs += 2; /* the timer handle and the server, each released by its close */
        uv_timer_init(a->loop, &a->drain_timer);
        a->drain_timer.data = a;
        a->drain_deadline = wy_now_ms() + (uint64_t)wy_daemon_drain_ms(d);
        uv_timer_start(&a->drain_timer, on_drain_tick, 0, AUTH_DRAIN_POLL_MS);
    }
    auth_unref(a);
}
