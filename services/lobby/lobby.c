/* wy-lobby: the cluster-wide player session, nicknames and presence.
 * This file holds the daemon's shape (configuration, dependencies, topics), its start and
 * stop, the Kafka handlers (kicks, notices, revocations) and the revocation cache.
 * Sessions live in session.c, nicknames in nickname.c, the gRPC API in grpc.c. */
#include "lobby_int.h"
#include "auth.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* Revocations older than this cannot matter: no access token lives that long. */
#define REVOKED_KEEP_S    3600
#define REVOKED_MAX       200000
#define KEYS_REFRESH_MS   60000
#define KEYS_RETRY_MS     2000
#define NOTICE_MAX_AGE_MS 60000

static lobby_cfg_t cfg;

static const wy_cfg_entry_t lobby_config[] = {
    {"WY_LOBBY_WS_PORT", WY_CFG_INT, "8081", 0, 65535, NULL,
     "Client WebSocket port (path /v1/lobby); 0 = any.", &cfg.ws_port, false},
    {"WY_LOBBY_DUPLICATE_POLICY", WY_CFG_ENUM, "kick-old", 0, 0, "kick-old|reject-new",
     "A second login of a live account: kick the old session, or refuse the new one.", &cfg.policy,
     false},
    {"WY_LOBBY_SESSION_TTL", WY_CFG_DURATION_MS, "30s", 1000, 3600000, NULL,
     "TTL of a session in Redis, refreshed by heartbeats; a crashed instance's sessions "
     "vanish after it.",
     &cfg.session_ttl_ms, false},
    {"WY_LOBBY_HEARTBEAT_INTERVAL", WY_CFG_DURATION_MS, "10s", 100, 600000, NULL,
     "How often clients send a heartbeat (told in welcome).", &cfg.heartbeat_ms, false},
    {"WY_LOBBY_IDLE_TIMEOUT", WY_CFG_DURATION_MS, "30s", 200, 3600000, NULL,
     "No message from a client for this long closes it (4005).", &cfg.idle_ms, false},
    {"WY_LOBBY_HELLO_TIMEOUT", WY_CFG_DURATION_MS, "5s", 100, 60000, NULL,
     "A client that sends no hello within this closes (4004).", &cfg.hello_ms, false},
    {"WY_LOBBY_FENCE_TIME", WY_CFG_DURATION_MS, "3s", 500, 60000, NULL,
     "An instance silent this long counts as dead: its sessions can be taken over at once "
     "(reject-new).",
     &cfg.fence_ms, false},
    {"WY_LOBBY_NICK_COOLDOWN", WY_CFG_DURATION_MS, "24h", 0, 31536000000LL, NULL,
     "Minimum time between two nickname changes of an account.", &cfg.nick_cooldown_ms, false},
    {"WY_LOBBY_MAX_MESSAGE", WY_CFG_SIZE, "8KiB", 256, 1048576, NULL,
     "Largest client message; over it the connection closes 1009.", &cfg.max_message, false},
    {"WY_LOBBY_MAX_MSGS_PER_SEC", WY_CFG_INT, "20", 1, 100000, NULL,
     "Per-connection message rate (token bucket, burst = rate); over: error then close 4003.",
     &cfg.max_msgs_per_sec, false},
    {"WY_LOBBY_MAX_CONNECTIONS", WY_CFG_INT, "20000", 1, 1000000, NULL,
     "Open client connections per instance; over: HTTP 503.", &cfg.max_conns, false},
    {"WY_LOBBY_AUTH_GRPC", WY_CFG_STRING, "", 0, 0, NULL,
     "wy-auth gRPC address (host:port): verification keys (GetKeys) and revocation at hello "
     "(Introspect). Empty: static keys only.",
     &cfg.auth_grpc, false},
    {"WY_LOBBY_TOKEN_KEYS_DIR", WY_CFG_STRING, "", 0, 0, NULL,
     "Folder of Ed25519 public keys (<kid>.pem) that verify access tokens, instead of or in "
     "addition to auth's.",
     &cfg.keys_dir, false},
    {"WY_LOBBY_TOKEN_ISSUER", WY_CFG_STRING, "wyvern-auth", 0, 0, NULL,
     "Expected iss of access tokens.", &cfg.issuer, false},
    {"WY_LOBBY_TOKEN_AUDIENCE", WY_CFG_STRING, "wyvern", 0, 0, NULL,
     "Expected aud of access tokens.", &cfg.audience, false},
};

/* ---------------------------------------------------------------- map */

static size_t map_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void lobby_map_init(lobby_map_t *m)
{
    m->nb = 64;
    m->n = 0;
    m->b = wy_calloc(m->nb, sizeof *m->b);
}

void lobby_map_free(lobby_map_t *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        lobby_map_ent_t *e = m->b[i];
        while (e) {
            lobby_map_ent_t *n = e->next;
            wy_free(e);
            e = n;
        }
    }
    wy_free(m->b);
    m->b = NULL;
    m->nb = m->n = 0;
}

void *lobby_map_get(const lobby_map_t *m, const char *key)
{
    for (lobby_map_ent_t *e = m->b[map_hash(key) & (m->nb - 1)]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e->val;
    return NULL;
}

static void map_grow(lobby_map_t *m)
{
    size_t nb = m->nb * 2;
    lobby_map_ent_t **b = wy_calloc(nb, sizeof *b);
    for (size_t i = 0; i < m->nb; i++) {
        lobby_map_ent_t *e = m->b[i];
        while (e) {
            lobby_map_ent_t *n = e->next;
            size_t j = map_hash(e->key) & (nb - 1);
            e->next = b[j];
            b[j] = e;
            e = n;
        }
    }
    wy_free(m->b);
    m->b = b;
    m->nb = nb;
}

void lobby_map_put(lobby_map_t *m, const char *key, void *val)
{
    lobby_map_ent_t **pp = &m->b[map_hash(key) & (m->nb - 1)];
    for (lobby_map_ent_t *e = *pp; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            e->val = val;
            return;
        }
    size_t kl = strlen(key);
    lobby_map_ent_t *e = wy_malloc(sizeof *e + kl + 1);
    memcpy(e->key, key, kl + 1);
    e->val = val;
    e->next = *pp;
    *pp = e;
    if (++m->n > m->nb)
        map_grow(m);
}

void lobby_map_del(lobby_map_t *m, const char *key, const void *val)
{
    for (lobby_map_ent_t **pp = &m->b[map_hash(key) & (m->nb - 1)]; *pp; pp = &(*pp)->next) {
        lobby_map_ent_t *e = *pp;
        if (strcmp(e->key, key) == 0) {
            if (val && e->val != val)
                return;
            *pp = e->next;
            wy_free(e);
            m->n--;
            return;
        }
    }
}

/* ---------------------------------------------------------------- revocations */

/* The cache holds what wy.account told this instance: "a:<account>" = every token of the
 * account issued at or before the time is revoked (ban, logout everywhere), "s:<sid>" = that
 * login session is. Hello also asks auth (Introspect) when WY_LOBBY_AUTH_GRPC is set, which
 * covers revocations older than this instance. */
static void revoked_put(lobby_t *lb, const char *kind, const char *id, int64_t at)
{
    if (lb->revoked.n >= REVOKED_MAX) {
        /* Bounded: drop entries past REVOKED_KEEP_S; if still full, keep the newest info
         * by dropping everything (Introspect at hello still catches revoked tokens). */
        int64_t cut = (int64_t)(wy_wall_ms() / 1000) - REVOKED_KEEP_S;
        for (size_t i = 0; i < lb->revoked.nb; i++)
            for (lobby_map_ent_t **pp = &lb->revoked.b[i]; *pp;) {
                lobby_map_ent_t *e = *pp;
                if ((int64_t)(uintptr_t)e->val < cut) {
                    *pp = e->next;
                    wy_free(e);
                    lb->revoked.n--;
                } else {
                    pp = &e->next;
                }
            }
        if (lb->revoked.n >= REVOKED_MAX) {
            lobby_map_free(&lb->revoked);
            lobby_map_init(&lb->revoked);
        }
    }
    char key[LOBBY_ID_MAX + 3];
    snprintf(key, sizeof key, "%s:%s", kind, id);
    lobby_map_put(&lb->revoked, key, (void *)(uintptr_t)(at > 0 ? at : 1));
}

bool lobby_revoked(lobby_t *lb, const char *account, const char *token_sid, int64_t iat)
{
    char key[LOBBY_ID_MAX + 3];
    snprintf(key, sizeof key, "s:%s", token_sid);
    if (lobby_map_get(&lb->revoked, key))
        return true;
    snprintf(key, sizeof key, "a:%s", account);
    uintptr_t at = (uintptr_t)lobby_map_get(&lb->revoked, key);
    return at && iat <= (int64_t)at;
}

/* ---------------------------------------------------------------- Kafka */

static void kick_delivered(void *ud, int status, const char *event_id)
{
    WY_UNUSED(ud);
    if (status != WY_OK)
        wy_log_warn("session.kick not delivered (the fence still closes the old session)",
                    "event_id", event_id, "error", wy_strerror(status), NULL);
}

void lobby_publish_kick(lobby_t *lb, const char *instance, const char *sid, const char *account,
                        const char *reason)
{
    Wyvern__Lobby__SessionKick k = WYVERN__LOBBY__SESSION_KICK__INIT;
    k.target_instance = (char *)instance;
    k.session_id = (char *)sid;
    k.account_id = (char *)account;
    k.reason = (char *)reason;
    size_t n = wyvern__lobby__session_kick__get_packed_size(&k);
    uint8_t *buf = wy_malloc(n ? n : 1);
    wyvern__lobby__session_kick__pack(&k, buf);
    wy_kafka_producer_t *p = wy_daemon_producer(lb->d);
    int rc = p ? wy_kafka_produce(p, "wy.session", account, "session.kick", buf, n, kick_delivered,
                                  NULL, NULL)
               : WY_EUNAVAIL;
    wy_free(buf);
    if (rc != WY_OK)
        wy_log_warn("session.kick not queued (the fence still closes the old session)", "session",
                    sid, "error", wy_strerror(rc), NULL);
}

static void on_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env)
{
    lobby_t *lb = lobby_get(d);
    const uint8_t *p = env->payload.data;
    size_t n = env->payload.len;
    if (!lb || lb->stopping) {
        wy_daemon_event_done(d, msg, env);
        return;
    }
    if (strcmp(env->type, "session.kick") == 0) {
        Wyvern__Lobby__SessionKick *k = wyvern__lobby__session_kick__unpack(NULL, n, p);
        if (k && strcmp(k->target_instance, lb->instance) == 0) {
            if (lobby_session_kick_local(lb, k->session_id, k->reason, LOBBY_CLOSE_KICKED))
                wy_log_info("session kicked (wy.session)", "session", k->session_id, "account",
                            k->account_id, NULL);
        }
        if (k)
            wyvern__lobby__session_kick__free_unpacked(k, NULL);
        else
            wy_log_warn("bad session.kick payload skipped", "event_id", env->event_id, NULL);
    } else if (strcmp(env->type, "notify.notice") == 0) {
        Wyvern__Lobby__NotifyNotice *nn = wyvern__lobby__notify_notice__unpack(NULL, n, p);
        /* A notice delayed past its use (a maintenance warning a minute late) is dropped. */
        if (nn && wy_wall_ms() < env->timestamp_ms + NOTICE_MAX_AGE_MS)
            lobby_session_notice(lb, nn->account_id, env->event_id, nn->kind, nn->text,
                                 (int64_t)env->timestamp_ms);
        if (nn)
            wyvern__lobby__notify_notice__free_unpacked(nn, NULL);
        else
            wy_log_warn("bad notify.notice payload skipped", "event_id", env->event_id, NULL);
    } else if (strcmp(env->type, "account.session_revoked") == 0) {
        Wyvern__Auth__SessionRevoked *r = wyvern__auth__session_revoked__unpack(NULL, n, p);
        if (r && r->account_id[0] && strlen(r->account_id) <= LOBBY_ID_MAX &&
            strlen(r->session_id) <= LOBBY_ID_MAX) {
            int64_t at = r->at > 0 ? r->at : (int64_t)(env->timestamp_ms / 1000);
            if (r->session_id[0])
                revoked_put(lb, "s", r->session_id, at);
            else
                revoked_put(lb, "a", r->account_id, at);
            char reason[LOBBY_REASON_MAX];
            snprintf(reason, sizeof reason, "session revoked: %.80s",
                     r->reason[0] ? r->reason : "revoked");
            lobby_session_close_account(lb, r->account_id, r->session_id, LOBBY_CLOSE_UNAUTH,
                                        reason);
        }
        if (r)
            wyvern__auth__session_revoked__free_unpacked(r, NULL);
    }
    wy_daemon_event_done(d, msg, env);
}

/* ---------------------------------------------------------------- auth keys */

static void keys_apply(lobby_t *lb, int err, const char *message, const ProtobufCMessage *resp)
{
    const char *e = message;
    if (err == WY_OK) {
        const Wyvern__Auth__GetKeysResponse *r = (const Wyvern__Auth__GetKeysResponse *)resp;
        if (wy_token_cache_update_jwks(lb->key_cache, r->jwks_json, &e) == WY_OK) {
            int64_t age = r->max_age_s > 0 ? (int64_t)r->max_age_s * 1000 : KEYS_REFRESH_MS;
            lb->keys_next_fetch_ms = wy_now_ms() + (uint64_t)(age < 5000 ? 5000 : age);
            return;
        }
        err = WY_EINVAL;
    }
    wy_log_warn("cannot fetch token keys from auth", "error", e && *e ? e : wy_strerror(err), NULL);
    lb->keys_next_fetch_ms = wy_now_ms() + KEYS_RETRY_MS;
}

static void keys_fetched(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    WY_UNUSED(status);
    lobby_t *lb = arg;
    lb->keys_fetching = false;
    if (err != WY_ECANCELED)
        keys_apply(lb, err, message, resp);
    lobby_unref(lb);
}

void lobby_keys_tick(lobby_t *lb)
{
    if (!lb->auth || lb->keys_fetching || wy_now_ms() < lb->keys_next_fetch_ms)
        return;
    Wyvern__Auth__GetKeysRequest req = WYVERN__AUTH__GET_KEYS_REQUEST__INIT;
    if (wy_grpc_call(lb->auth, "/wyvern.auth.Auth/GetKeys", &req.base,
                     &wyvern__auth__get_keys_response__descriptor, 2000, NULL, 0, keys_fetched,
                     lb) == WY_OK) {
        lb->keys_fetching = true;
        lobby_ref(lb);
    } else {
        lb->keys_next_fetch_ms = wy_now_ms() + KEYS_RETRY_MS;
    }
}

/* ---------------------------------------------------------------- start / stop */

lobby_t *lobby_get(wy_daemon_t *d)
{
    return wy_daemon_state(d);
}

void lobby_ref(lobby_t *lb)
{
    lb->refs++;
}

void lobby_unref(lobby_t *lb)
{
    if (--lb->refs > 0)
        return;
    wy_daemon_set_state(lb->d, NULL);
    lobby_map_free(&lb->by_sid);
    lobby_map_free(&lb->by_account);
    lobby_map_free(&lb->revoked);
    wy_jwt_keyset_free(lb->static_keys);
    wy_token_cache_free(lb->key_cache);
    wy_free(lb);
}

static void handle_closed(uv_handle_t *h)
{
    lobby_unref(h->data);
}

void lobby_close_handle(uv_handle_t *h)
{
    uv_close(h, handle_closed);
}

static wy_metric_t *metric(char kind, const char *name, const char *help)
{
    return kind == 'c' ? wy_metrics_counter(name, help, NULL) : wy_metrics_gauge(name, help, NULL);
}

static int lobby_start(wy_daemon_t *d, const char **err)
{
    static char msg[512];
    lobby_t *lb = wy_calloc(1, sizeof *lb);
    lb->d = d;
    lb->loop = wy_daemon_loop(d);
    lb->instance = wy_daemon_instance(d);
    lb->cfg = &cfg;
    lb->reject_new = strcmp(cfg.policy, "reject-new") == 0;
    lb->refs = 1; /* start()'s own, dropped by stop() */
    lobby_map_init(&lb->by_sid);
    lobby_map_init(&lb->by_account);
    lobby_map_init(&lb->revoked);
    wy_daemon_set_state(d, lb);
    lb->m_sessions = metric('g', "wy_lobby_sessions", "Live sessions held by this instance.");
    lb->m_logins = metric('c', "wy_lobby_logins_total", "Sessions established (welcome sent).");
    lb->m_kicks = metric('c', "wy_lobby_kicks_total", "Sessions closed by kick or fence.");
    lb->m_fenced = metric('c', "wy_lobby_fenced_writes_total",
                          "Session writes refused by the fence (session taken elsewhere).");
    lb->m_rejected = metric('c', "wy_lobby_rejected_logins_total", "Logins refused by reject-new.");
    lb->m_rate_closed =
        metric('c', "wy_lobby_rate_limited_total", "Connections closed for their message rate.");
    lb->m_bad_frames =
        metric('c', "wy_lobby_bad_frames_total", "Client frames that are not a valid message.");

    if (*cfg.keys_dir) {
        lb->static_keys = wy_jwt_keyset_new();
        const char *e = NULL;
        if (wy_token_keyset_load_dir(lb->static_keys, cfg.keys_dir, &e) != WY_OK) {
            snprintf(msg, sizeof msg, "WY_LOBBY_TOKEN_KEYS_DIR: %s", e ? e : "cannot load");
            *err = msg;
            return WY_EINVAL;
        }
    }
    if (*cfg.auth_grpc) {
        lb->key_cache = wy_token_cache_new();
        if (wy_grpc_channel_new(wy_daemon_grpc_rt(d), cfg.auth_grpc, NULL, &lb->auth) != WY_OK) {
            *err = "WY_LOBBY_AUTH_GRPC: cannot open a channel";
            return WY_EINVAL;
        }
        lobby_keys_tick(lb);
    }
    if (!lb->static_keys && !lb->auth) {
        *err = "no way to verify access tokens: set WY_LOBBY_AUTH_GRPC and/or "
               "WY_LOBBY_TOKEN_KEYS_DIR";
        return WY_EINVAL;
    }
    int rc = lobby_grpc_register(lb, err);
    if (rc != WY_OK)
        return rc;
    return lobby_sessions_start(lb, err);
}

/* Begins the stop; the state is freed by the last lobby_unref, once every connection,
 * handle and pending callback that names it is done (all before the loop ends). */
static void lobby_stop(wy_daemon_t *d)
{
    lobby_t *lb = lobby_get(d);
    if (!lb || lb->stopping)
        return;
    lb->stopping = true;
    lobby_sessions_stop(lb);
    if (lb->auth) {
        wy_grpc_channel_close(lb->auth);
        lb->auth = NULL;
    }
    lobby_unref(lb);
}

static size_t lobby_busy(wy_daemon_t *d)
{
    lobby_t *lb = lobby_get(d);
    return lb ? lobby_sessions_busy(lb) : 0;
}

/* Every instance must see every kick, notice and revocation: broadcast consumption. */
static const char *const lobby_session_types[] = {"session.kick", NULL};
static const char *const lobby_notify_types[] = {"notify.notice", NULL};
static const char *const lobby_account_types[] = {"account.session_revoked", NULL};
static const char *const lobby_account_ignores[] = {"account.created", "account.login", NULL};
static const wy_daemon_sub_t lobby_subs[] = {
    {.topic = "wy.session",
     .mode = WY_SUB_BROADCAST,
     .types = lobby_session_types,
     .handler = on_event},
    {.topic = "wy.notify",
     .mode = WY_SUB_BROADCAST,
     .types = lobby_notify_types,
     .handler = on_event},
    {.topic = "wy.account",
     .mode = WY_SUB_BROADCAST,
     .types = lobby_account_types,
     .handler = on_event,
     .ignores = lobby_account_ignores},
};

const wy_daemon_spec_t lobby_daemon_spec = {
    .svc = "lobby",
    .grpc_service = "wyvern.lobby.Lobby",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9102,
    .grpc_port = 9202,
    .config = lobby_config,
    .nconfig = WY_ARRAY_LEN(lobby_config),
    .subs = lobby_subs,
    .nsubs = WY_ARRAY_LEN(lobby_subs),
    .start = lobby_start,
    .stop = lobby_stop,
    .busy = lobby_busy,
};
