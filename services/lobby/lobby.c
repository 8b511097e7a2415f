/* wy-lobby: the cluster-wide player session, nicknames and presence.
 * This file holds the daemon's shape (configuration, dependencies, topics), its start and
 * stop, and the Kafka handlers (kicks, notices, revocations). The rest, layer by layer,
 * is in README "Code map". */
#include "lobby.h"
#include "characters.h"
#include "chat.h"
#include "clients.h"
#include "enter.h"
#include "friend_events.h"
#include "handlers_grpc.h"
#include "relay.h"
#include "state.h"
#include "store.h"
#include "tokens.h"
#include "wire.h"
#include "auth.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* Offsets into lobby_cfg_t: the daemon keeps the values (spec.config_size), lobby_t points
 * at them. */
static const wy_cfg_entry_t lobby_config[] = {
    {"WY_LOBBY_WS_PORT", WY_CFG_INT, "8081", 0, 65535, NULL,
     "Client WebSocket port (path /v1/lobby); 0 = any.", WY_CFG_OFF(lobby_cfg_t, ws_port), false},
    {"WY_LOBBY_DUPLICATE_POLICY", WY_CFG_ENUM, "kick-old", 0, 0, "kick-old|reject-new",
     "A second login of a live account: kick the old session, or refuse the new one.",
     WY_CFG_OFF(lobby_cfg_t, policy), false},
    {"WY_LOBBY_SESSION_TTL", WY_CFG_DURATION_MS, "30s", 1000, 3600000, NULL,
     "TTL of a session in Redis, refreshed by heartbeats; a crashed instance's sessions "
     "vanish after it.",
     WY_CFG_OFF(lobby_cfg_t, session_ttl_ms), false},
    {"WY_LOBBY_HEARTBEAT_INTERVAL", WY_CFG_DURATION_MS, "10s", 100, 600000, NULL,
     "How often clients send a heartbeat (told in welcome).", WY_CFG_OFF(lobby_cfg_t, heartbeat_ms),
     false},
    {"WY_LOBBY_IDLE_TIMEOUT", WY_CFG_DURATION_MS, "30s", 200, 3600000, NULL,
     "No message from a client for this long closes it (4005).", WY_CFG_OFF(lobby_cfg_t, idle_ms),
     false},
    {"WY_LOBBY_HELLO_TIMEOUT", WY_CFG_DURATION_MS, "5s", 100, 60000, NULL,
     "A client that sends no hello within this closes (4004).", WY_CFG_OFF(lobby_cfg_t, hello_ms),
     false},
    {"WY_LOBBY_FENCE_TIME", WY_CFG_DURATION_MS, "3s", 500, 60000, NULL,
     "An instance silent this long counts as dead: its sessions can be taken over at once "
     "(reject-new).",
     WY_CFG_OFF(lobby_cfg_t, fence_ms), false},
    {"WY_LOBBY_NICK_COOLDOWN", WY_CFG_DURATION_MS, "24h", 0, 31536000000LL, NULL,
     "Minimum time between two nickname changes of an account.",
     WY_CFG_OFF(lobby_cfg_t, nick_cooldown_ms), false},
    {"WY_LOBBY_NOTICE_TTL", WY_CFG_DURATION_MS, "60s", 1000, 3600000, NULL,
     "How long a notice matters: retried to Kafka that long, dropped if delivered later.",
     WY_CFG_OFF(lobby_cfg_t, notice_ttl_ms), false},
    {"WY_LOBBY_KAFKA_RELAY_MAX", WY_CFG_INT, "10000", 1, 1000000, NULL,
     "Kicks and notices waiting for Kafka (in flight included); over it they are dropped, counted.",
     WY_CFG_OFF(lobby_cfg_t, relay_max), false},
    {"WY_LOBBY_MAX_MESSAGE", WY_CFG_SIZE, "8KiB", 256, 1048576, NULL,
     "Largest client message; over it the connection closes 1009.",
     WY_CFG_OFF(lobby_cfg_t, max_message), false},
    {"WY_LOBBY_MAX_MSGS_PER_SEC", WY_CFG_INT, "20", 1, 100000, NULL,
     "Per-connection message rate (token bucket, burst = rate); over: error then close 4003.",
     WY_CFG_OFF(lobby_cfg_t, max_msgs_per_sec), false},
    {"WY_LOBBY_MAX_CONNECTIONS", WY_CFG_INT, "20000", 1, 1000000, NULL,
     "Open client connections per instance; over: HTTP 503.", WY_CFG_OFF(lobby_cfg_t, max_conns),
     false},
    {"WY_LOBBY_WS_SEND_BUDGET", WY_CFG_SIZE, "256MiB", 1048576, 68719476736LL, NULL,
     "Bytes queued for all clients together (each client also at most 256 KiB); over it the "
     "clients with the most queued are closed 1008.",
     WY_CFG_OFF(lobby_cfg_t, ws_send_budget), false},
    {"WY_LOBBY_AUTH_GRPC", WY_CFG_STRING, "", 0, 0, NULL,
     "wy-auth gRPC address (host:port): verification keys (GetKeys); a hello asks it (Introspect) "
     "only when Redis lacks auth's revocation marker. Empty: static keys only.",
     WY_CFG_OFF(lobby_cfg_t, auth_grpc), false},
    {"WY_LOBBY_TOKEN_KEYS_DIR", WY_CFG_STRING, "", 0, 0, NULL,
     "Folder of Ed25519 public keys (<kid>.pem) that verify access tokens, instead of or in "
     "addition to auth's.",
     WY_CFG_OFF(lobby_cfg_t, keys_dir), false},
    {"WY_LOBBY_TOKEN_ISSUER", WY_CFG_STRING, "wyvern-auth", 0, 0, NULL,
     "Expected iss of access tokens.", WY_CFG_OFF(lobby_cfg_t, issuer), false},
    {"WY_LOBBY_TOKEN_AUDIENCE", WY_CFG_STRING, "wyvern", 0, 0, NULL,
     "Expected aud of access tokens.", WY_CFG_OFF(lobby_cfg_t, audience), false},
    {"WY_LOBBY_TICKET_KEYS_DIR", WY_CFG_STRING, "", 0, 0, NULL,
     "Folder of the Ed25519 PEM keys named <kid>.pem for join tickets (game verifies them with "
     "the public halves). Empty: enter_game is refused UNAVAILABLE.",
     WY_CFG_OFF(lobby_cfg_t, ticket_keys_dir), false},
    {"WY_LOBBY_TICKET_KID", WY_CFG_STRING, "t1", 0, 0, NULL,
     "kid of the private key in WY_LOBBY_TICKET_KEYS_DIR that signs new join tickets.",
     WY_CFG_OFF(lobby_cfg_t, ticket_kid), false},
    {"WY_LOBBY_TICKET_TTL", WY_CFG_DURATION_MS, "30s", 1000, 600000, NULL,
     "How long a join ticket is valid (the client connects to the game at once).",
     WY_CFG_OFF(lobby_cfg_t, ticket_ttl_ms), false},
    {"WY_LOBBY_ACTOR_GRPC", WY_CFG_STRING, "127.0.0.1:9205", 0, 0, NULL,
     "wy-actor's gRPC address: characters and friends; enter_game (whose character it "
     "is, its saved position).",
     WY_CFG_OFF(lobby_cfg_t, actor_grpc), false},
    {"WY_LOBBY_WORLD_GRPC", WY_CFG_STRING, "127.0.0.1:9204", 0, 0, NULL,
     "wy-world's gRPC address (enter_game: World.Place).", WY_CFG_OFF(lobby_cfg_t, world_grpc),
     false},
    {"WY_LOBBY_CHAT_GRPC", WY_CFG_STRING, "", 0, 0, NULL,
     "wy-chat's gRPC address (host:port) for the chat requests. Empty: they answer UNAVAILABLE "
     "(wy.chat messages are still delivered).",
     WY_CFG_OFF(lobby_cfg_t, chat_grpc), false},
};

/* ---------------------------------------------------------------- Kafka */

/* Closes every local session of account (token_sid "" = all) with code/reason. */
static void close_account(lobby_t *lb, const char *account, const char *token_sid, int code,
                          const char *reason)
{
    /* Also catches a connection still in hello for that account. */
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &lb->conns)
    {
        lobby_conn_t *c = wy_container_of(pos, lobby_conn_t, node);
        if (!c->ws || c->state == LOBBY_ST_HELLO || c->state == LOBBY_ST_CLOSING)
            continue;
        if (strcmp(c->account, account) != 0)
            continue;
        if (*token_sid && strcmp(c->token_sid, token_sid) != 0)
            continue;
        wy_log_info("session closed: revoked", "session", c->sid, "account", account, NULL);
        lobby_session_release(c);
        lobby_conn_kick(c, reason, code);
    }
}

/* Pushes a notice to account ("" = everyone connected here). */
static void push_notice(lobby_t *lb, const char *account, const char *id, const char *kind,
                        const char *text, int64_t at_ms)
{
    Wyvern__Lobby__Notice n = WYVERN__LOBBY__NOTICE__INIT;
    n.id = (char *)id;
    n.kind = (char *)kind;
    n.text = (char *)text;
    n.at_ms = at_ms;
    if (*account) {
        lobby_conn_t *c = wy_map_get_str(lb->by_account, account);
        if (c && c->state == LOBBY_ST_READY)
            lobby_push(c, WYVERN__LOBBY__SERVER_MESSAGE__BODY_NOTICE, &n.base);
        return;
    }
    lobby_push_ready(lb, WYVERN__LOBBY__SERVER_MESSAGE__BODY_NOTICE, &n.base);
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
        if (nn && wy_wall_ms() < env->timestamp_ms + (uint64_t)lb->cfg->notice_ttl_ms)
            push_notice(lb, nn->account_id, env->event_id, nn->kind, nn->text,
                        (int64_t)env->timestamp_ms);
        if (nn)
            wyvern__lobby__notify_notice__free_unpacked(nn, NULL);
        else
            wy_log_warn("bad notify.notice payload skipped", "event_id", env->event_id, NULL);
    } else if (strcmp(env->type, "notify.friend") == 0) {
        lobby_chars_on_notify(lb, p, n, env->event_id);
    } else if (strcmp(env->type, "account.session_revoked") == 0) {
        Wyvern__Auth__SessionRevoked *r = wyvern__auth__session_revoked__unpack(NULL, n, p);
        if (r && r->account_id[0] && strlen(r->account_id) <= LOBBY_ID_MAX &&
            strlen(r->session_id) <= LOBBY_ID_MAX) {
            int64_t at = r->at > 0 ? r->at : (int64_t)(env->timestamp_ms / 1000);
            if (r->session_id[0])
                lobby_revoked_put(lb, "s", r->session_id, at);
            else
                lobby_revoked_put(lb, "a", r->account_id, at);
            char reason[LOBBY_REASON_MAX];
            snprintf(reason, sizeof reason, "session revoked: %.80s",
                     r->reason[0] ? r->reason : "revoked");
            close_account(lb, r->account_id, r->session_id, LOBBY_CLOSE_UNAUTH, reason);
        }
        if (r)
            wyvern__auth__session_revoked__free_unpacked(r, NULL);
    }
    wy_daemon_event_done(d, msg, env);
}

/* ---------------------------------------------------------------- start / stop */

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
    lb->cfg = wy_daemon_config(d);
    lb->reject_new = strcmp(lb->cfg->policy, "reject-new") == 0;
    lb->refs = 1; /* start()'s own, dropped by stop() */
    lb->by_sid = wy_map_new(0);
    lb->by_account = wy_map_new(0);
    lb->revoked = wy_map_new(LOBBY_REVOKED_MAX);
    wy_list_init(&lb->conns);
    lobby_store_init(lb);
    lobby_relay_init(lb);
    wy_daemon_set_state(d, lb);
    lb->m_sessions = metric('g', "wy_lobby_sessions", "Live sessions held by this instance.");
    lb->m_logins = metric('c', "wy_lobby_logins_total", "Sessions established (welcome sent).");
    lb->m_kicks = metric('c', "wy_lobby_kicks_total", "Sessions closed by kick or fence.");
    lb->m_fenced = metric('c', "wy_lobby_fenced_writes_total",
                          "Session writes refused by the fence (session taken elsewhere).");
    lb->m_reasserted = metric('c', "wy_lobby_sessions_reasserted_total",
                              "Live sessions that wrote their record back after Redis lost it.");
    lb->m_rejected = metric('c', "wy_lobby_rejected_logins_total", "Logins refused by reject-new.");
    lb->m_hello_revoked = metric('c', "wy_lobby_hello_revoked_total",
                                 "Hellos refused: auth's revocation keys in Redis name the token.");
    lb->m_hello_introspect = metric(
        'c', "wy_lobby_hello_introspect_total",
        "Hellos that asked auth (Introspect): its revocation state in Redis was incomplete.");
    lb->m_rate_closed =
        metric('c', "wy_lobby_rate_limited_total", "Connections closed for their message rate.");
    lb->m_bad_frames =
        metric('c', "wy_lobby_bad_frames_total", "Client frames that are not a valid message.");

    if (*lb->cfg->keys_dir) {
        lb->static_keys = wy_jwt_keyset_new();
        const char *e = NULL;
        if (wy_token_keyset_load_dir(lb->static_keys, lb->cfg->keys_dir, &e) != WY_OK) {
            snprintf(msg, sizeof msg, "WY_LOBBY_TOKEN_KEYS_DIR: %s", e ? e : "cannot load");
            *err = msg;
            return WY_EINVAL;
        }
    }
    if (*lb->cfg->auth_grpc) {
        lb->key_cache = wy_token_cache_new();
        if (wy_grpc_channel_new(wy_daemon_grpc_rt(d), lb->cfg->auth_grpc, NULL, &lb->auth) !=
            WY_OK) {
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
    if (rc == WY_OK)
        rc = lobby_enter_start(lb, err);
    if (rc == WY_OK)
        rc = lobby_chat_start(lb, err);
    if (rc == WY_OK)
        rc = lobby_chars_start(lb, err);
    if (rc != WY_OK)
        return rc;
    return lobby_clients_start(lb, err);
}

/* Begins the stop; the state is freed by the last lobby_unref, once every connection,
 * handle and pending callback that names it is done (all before the loop ends). */
static void lobby_stop(wy_daemon_t *d)
{
    lobby_t *lb = lobby_get(d);
    if (!lb || lb->stopping)
        return;
    lb->stopping = true;
    lobby_clients_stop(lb);
    lobby_relay_stop(lb);
    lobby_chat_stop(lb);
    if (lb->auth) {
        wy_grpc_channel_close(lb->auth);
        lb->auth = NULL;
    }
    lobby_enter_stop(lb);
    lobby_chars_stop(lb);
    lobby_unref(lb);
}

/* Ready = able to verify tokens (a hello right after the ready line is not refused for
 * want of auth's keys). */
static const char *lobby_unready(wy_daemon_t *d)
{
    lobby_t *lb = lobby_get(d);
    return lb ? lobby_keys_unready(lb) : "starting";
}

static size_t lobby_busy(wy_daemon_t *d)
{
    lobby_t *lb = lobby_get(d);
    return lb ? lobby_clients_busy(lb) : 0;
}

/* Every instance must see every kick, notice and revocation: broadcast consumption. */
static const char *const lobby_session_types[] = {"session.kick", NULL};
static const char *const lobby_notify_types[] = {"notify.notice", "notify.friend", NULL};
static const char *const lobby_account_types[] = {"account.session_revoked", NULL};
static const char *const lobby_account_ignores[] = {"account.created", "account.login", NULL};
static const char *const lobby_chat_types[] = {"chat.message", NULL};
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
    {.topic = "wy.chat",
     .mode = WY_SUB_BROADCAST,
     .types = lobby_chat_types,
     .handler = lobby_chat_on_event},
    /* Friend pushes follow the committed events: each instance pushes to its sessions. */
    {.topic = "wy.actor",
     .mode = WY_SUB_BROADCAST,
     .types = lobby_friend_event_types,
     .handler = lobby_friend_events_on_event,
     .ignores = lobby_friend_event_ignores},
};

const wy_daemon_spec_t lobby_daemon_spec = {
    .svc = "lobby",
    .grpc_service = "wyvern.lobby.Lobby",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9102,
    .grpc_port = 9202,
    .config = lobby_config,
    .nconfig = WY_ARRAY_LEN(lobby_config),
    .config_size = sizeof(lobby_cfg_t),
    .subs = lobby_subs,
    .nsubs = WY_ARRAY_LEN(lobby_subs),
    .start = lobby_start,
    .stop = lobby_stop,
    .busy = lobby_busy,
    .unready = lobby_unready,
};
