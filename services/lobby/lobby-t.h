/* wy-lobby types shared by every lobby module: the daemon's state, one client connection,
 * the configuration, limits and close codes. Types only (no functions), so any module can
 * include it without pulling in another module's header (README "Code map"). */
#ifndef LOBBY_T_H
#define LOBBY_T_H

#include "wy_daemon.h"
#include "wy_list.h"
#include "wy_map.h"
#include "wy_redis.h"
#include "wy_ws.h"
#include "wy_token.h"
#include "wy_metrics.h"
#include "wy_log.h"
#include "lobby.pb-c.h"

#define LOBBY_ID_MAX         64     /* account id, token sid (wy_token bounds) */
#define LOBBY_NICK_MAX       64     /* bytes of a stored nickname (16 code points, UTF-8) */
#define LOBBY_SID_LEN        36     /* session ids are UUIDv4 text */
#define LOBBY_REASON_MAX     120    /* close reasons must fit 123 bytes */
#define LOBBY_REVOKED_MAX    200000 /* entries of the revocation cache (tokens.c) */
#define LOBBY_NSCRIPTS       5      /* Lua scripts of the sessions store (store.c) */
#define LOBBY_EPOCH_WAIT_MAX 8192   /* hellos waiting for an epoch batch (store.c); more: 4007 */

/* auth's revocation keys, read by the claim (store.c; services/auth/README.md "Revocation"). */
#define LOBBY_AUTH_REVOKED_SID    "auth:{revoked}:sid:"
#define LOBBY_AUTH_REVOKED_ACCT   "auth:{revoked}:acct:"
#define LOBBY_AUTH_REVOKED_LOADED "auth:{revoked}:loaded"

/* Close codes of the lobby protocol (README "Close codes"). */
enum {
    LOBBY_CLOSE_PROTOCOL = 4000, /* first message not hello, undecodable frame */
    LOBBY_CLOSE_UNAUTH = 4001,   /* bad, expired or revoked token; banned */
    LOBBY_CLOSE_KICKED = 4002,   /* logged in elsewhere, kicked by an operator */
    LOBBY_CLOSE_RATE = 4003,     /* over WY_LOBBY_MAX_MSGS_PER_SEC */
    LOBBY_CLOSE_HELLO_TIMEOUT = 4004,
    LOBBY_CLOSE_IDLE = 4005,        /* no message within WY_LOBBY_IDLE_TIMEOUT */
    LOBBY_CLOSE_REJECTED = 4006,    /* duplicate login refused (reject-new) */
    LOBBY_CLOSE_UNAVAILABLE = 4007, /* Redis/auth down during hello: retry */
    /* After logout: 1000 (WY_WS_NORMAL), the standard normal closure, after logged_out{}. */
};

typedef struct lobby lobby_t;
typedef struct lobby_conn lobby_conn_t;

/* Configuration (WY_LOBBY_*). */
typedef struct {
    int64_t ws_port;
    char *policy; /* "kick-old" | "reject-new" */
    int64_t session_ttl_ms, heartbeat_ms, idle_ms, hello_ms, fence_ms;
    int64_t nick_cooldown_ms, notice_ttl_ms, relay_max;
    int64_t max_message, max_msgs_per_sec, max_conns, ws_send_budget;
    char *auth_grpc, *issuer, *audience, *keys_dir;
    /* enter.c */
    char *ticket_keys_dir, *ticket_kid, *actor_grpc, *world_grpc;
    int64_t ticket_ttl_ms;
    char *chat_grpc; /* chat.c */
} lobby_cfg_t;

struct lobby {
    wy_daemon_t *d;
    uv_loop_t *loop;
    const char *instance;
    lobby_cfg_t *cfg;
    bool reject_new;
    wy_http_server_t *ws;
    uv_timer_t sweep; /* hello / idle deadlines, instance liveness key */
    bool sweep_started;
    uint64_t last_alive_ms;         /* last refresh of sess:inst:<instance> */
    wy_jwt_keyset_t *static_keys;   /* WY_LOBBY_TOKEN_KEYS_DIR */
    wy_token_cache_t *key_cache;    /* Auth.GetKeys */
    wy_grpc_channel_t *auth;        /* NULL without WY_LOBBY_AUTH_GRPC */
    wy_grpc_channel_t *chars_actor; /* characters.c: wy-actor (NULL when not configured) */
    uint64_t keys_next_fetch_ms;
    bool keys_fetching;
    bool keys_loaded;     /* auth's key set was fetched at least once (readiness) */
    wy_map_t *by_sid;     /* session id -> conn (claiming or ready) */
    wy_map_t *by_account; /* account -> conn (the ready one) */
    wy_map_t *revoked;    /* "a:<account>" / "s:<sid>" -> (void*)(uintptr_t) revoked-at s */
    wy_list_t conns;      /* every open connection (lobby_conn_t.node) */
    wy_redis_script_t *scripts[LOBBY_NSCRIPTS]; /* the sessions store's (lobby_store_init) */
    /* store.c: hellos waiting for the next epoch batch statement (epoch_req_t.node), and the
     * batch statements in flight */
    wy_list_t epoch_wait;
    size_t epoch_nwait;
    int epoch_batches;
    /* relay.c: events to Kafka waiting for a retry (in flight ones are librdkafka's) */
    wy_list_t relay_wait;
    size_t relay_n; /* waiting + in flight, <= WY_LOBBY_KAFKA_RELAY_MAX */
    bool relay_stopped;
    uint64_t relay_logged_ms[3], relay_unlogged[3]; /* drop log lines, per reason */
    wy_metric_t *m_relay_dropped[3], *m_relay_retries, *m_relay_queue;
    size_t nconns;
    size_t nalloc; /* connections not yet freed (open, or held by an operation) */
    bool stopping;
    /* The state is freed when the last reference goes: start()'s own (dropped by stop()),
     * one per connection not yet freed, per open uv handle below, per Redis/gRPC request
     * that names lb, and the WebSocket server's until its close completes. Callbacks
     * cancelled late in the stop (Redis closed after the drain) thus never see it freed. */
    int refs;
    bool ws_live;          /* lb->ws created and its close not yet completed */
    uv_timer_t stop_timer; /* on stop: waits for clients to answer close 1001 */
    bool stop_timer_started;
    uint64_t stop_deadline_ms;
    wy_grpc_channel_t *chat; /* chat.c: NULL without WY_LOBBY_CHAT_GRPC */
    wy_metric_t *m_chat_delivered, *m_chat_events, *m_chat_latency, *m_chat_consumed,
        *m_chat_fanout;
    uint64_t chat_pass; /* chat.c: number of the delivery pass (lobby_conn_t.chat_pass) */
    /* metrics */
    /* enter.c: ticket signing keys and world (NULL when not configured / stopped); actor
     * is chars_actor */
    wy_jwt_keyset_t *ticket_keys;
    wy_grpc_channel_t *world;
    wy_metric_t *m_entered;
    wy_metric_t *m_sessions, *m_logins, *m_kicks, *m_fenced, *m_reasserted, *m_rejected,
        *m_rate_closed, *m_bad_frames, *m_hello_revoked, *m_hello_introspect;
};

/* One WebSocket connection. Freed when its WebSocket is closed AND no Redis/PG/gRPC
 * operation still refers to it (refs). */
struct lobby_conn {
    lobby_t *lb;
    wy_ws_conn_t *ws; /* NULL once closed */
    wy_list_t node;   /* in lb->conns while the WebSocket is open */
    int state;        /* LOBBY_ST_* */
    int refs;         /* async operations in flight that hold this conn */
    char sid[LOBBY_SID_LEN + 1];
    char account[LOBBY_ID_MAX + 1];
    char token_sid[LOBBY_ID_MAX + 1];
    char *token; /* the access token, from hello until the claim read auth's revocations */
    char nick[LOBBY_NICK_MAX + 1]; /* display */
    char nick_norm[LOBBY_NICK_MAX * 4 + 1];
    char peer[64];
    char session_state[48]; /* "online" | "in-game:<zone>" (enter.c) */
    int64_t token_iat;
    uint64_t epoch;
    uint64_t opened_ms, created_wall_ms, last_msg_ms, last_write_ms;
    double bucket;
    uint64_t bucket_ms;
    uint32_t hello_req;
    uint64_t hello_start_ns; /* when the hello frame arrived: wy_lobby_ws_message_seconds */
    uint64_t chat_pass;      /* chat.c: the last delivery pass that listed this conn */

    bool writing;            /* a session write is in flight (one at a time) */
    bool nick_busy;          /* a nickname change is in flight */
    bool entering;           /* an enter_game is in flight (enter.c) */
    bool registered;         /* in by_sid */
    bool live;               /* claimed in Redis and not yet released by this conn */
    bool counted;            /* counted in wy_lobby_sessions */
    bool revocation_asked;   /* auth (Introspect) said the token is not revoked */
    bool moderator;          /* the token's "roles" claim has "moderator" (hello.c; chat) */
    uint64_t offline_pushed; /* highest offline whisper id pushed (chat_mod.c) */
};

enum { LOBBY_ST_HELLO, LOBBY_ST_AUTH, LOBBY_ST_CLAIM, LOBBY_ST_READY, LOBBY_ST_CLOSING };

#endif
