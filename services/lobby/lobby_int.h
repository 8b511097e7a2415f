/* wy-lobby internals shared by lobby.c (daemon, config, Kafka), session.c (WebSocket
 * sessions and their Redis records), nickname.c (PostgreSQL nicknames) and grpc.c. */
#ifndef LOBBY_INT_H
#define LOBBY_INT_H

#include "lobby.h"
#include "lobby.pb-c.h"
#include "wy_ws.h"
#include "wy_token.h"
#include "wy_metrics.h"
#include "wy_log.h"

#define LOBBY_ID_MAX     64  /* account id, token sid (wy_token bounds) */
#define LOBBY_NICK_MAX   64  /* bytes of a stored nickname (16 code points, UTF-8) */
#define LOBBY_SID_LEN    36  /* session ids are UUIDv4 text */
#define LOBBY_REASON_MAX 120 /* close reasons must fit 123 bytes */

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
    LOBBY_CLOSE_LOGOUT = 4008,      /* after logout */
};

typedef struct lobby lobby_t;
typedef struct lobby_conn lobby_conn_t;

/* A small string -> pointer hash map (chained), owned by the loop thread. Keys are copied. */
typedef struct lobby_map_ent {
    struct lobby_map_ent *next;
    void *val;
    char key[];
} lobby_map_ent_t;

typedef struct {
    lobby_map_ent_t **b;
    size_t nb, n;
} lobby_map_t;

void lobby_map_init(lobby_map_t *m);
void lobby_map_free(lobby_map_t *m);
void *lobby_map_get(const lobby_map_t *m, const char *key);
/* Sets key -> val (replacing). */
void lobby_map_put(lobby_map_t *m, const char *key, void *val);
/* Removes key if it maps to val (val NULL: whatever it maps to). */
void lobby_map_del(lobby_map_t *m, const char *key, const void *val);

/* Configuration (WY_LOBBY_*). */
typedef struct {
    int64_t ws_port;
    char *policy; /* "kick-old" | "reject-new" */
    int64_t session_ttl_ms, heartbeat_ms, idle_ms, hello_ms, fence_ms;
    int64_t nick_cooldown_ms;
    int64_t max_message, max_msgs_per_sec, max_conns;
    char *auth_grpc, *issuer, *audience, *keys_dir;
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
    uv_check_t closer; /* closes connections once their last messages are out */
    bool closer_started;
    size_t npend;
    wy_jwt_keyset_t *static_keys; /* WY_LOBBY_TOKEN_KEYS_DIR */
    wy_token_cache_t *key_cache;  /* Auth.GetKeys */
    wy_grpc_channel_t *auth;      /* NULL without WY_LOBBY_AUTH_GRPC */
    uint64_t keys_next_fetch_ms;
    bool keys_fetching;
    lobby_map_t by_sid;     /* session id -> conn (claiming or ready) */
    lobby_map_t by_account; /* account -> conn (the ready one) */
    lobby_map_t revoked;    /* "a:<account>" / "s:<sid>" -> (void*)(uintptr_t) revoked-at s */
    uint64_t revoked_sweep_ms;
    lobby_conn_t *conns; /* every open connection (doubly linked) */
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
    /* metrics */
    wy_metric_t *m_sessions, *m_logins, *m_kicks, *m_fenced, *m_rejected, *m_rate_closed,
        *m_bad_frames;
};

/* One WebSocket connection. Freed when its WebSocket is closed AND no Redis/PG/gRPC
 * operation still refers to it (refs). */
struct lobby_conn {
    lobby_t *lb;
    wy_ws_conn_t *ws; /* NULL once closed */
    lobby_conn_t *prev, *next;
    int state; /* LOBBY_ST_* */
    int refs;  /* async operations in flight that hold this conn */
    char sid[LOBBY_SID_LEN + 1];
    char account[LOBBY_ID_MAX + 1];
    char token_sid[LOBBY_ID_MAX + 1];
    char nick[LOBBY_NICK_MAX + 1]; /* display */
    char nick_norm[LOBBY_NICK_MAX * 4 + 1];
    char peer[64];
    char session_state[16]; /* "online" | "in-game" (seam for enter-game) */
    int64_t token_iat;
    uint64_t epoch;
    uint64_t opened_ms, created_wall_ms, last_msg_ms, last_write_ms;
    double bucket;
    uint64_t bucket_ms;
    uint32_t hello_req;
    bool writing;    /* a session write is in flight (one at a time) */
    bool nick_busy;  /* a nickname change is in flight */
    bool registered; /* in by_sid */
    bool live;       /* claimed in Redis and not yet released by this conn */
    bool counted;    /* counted in wy_lobby_sessions */
    bool pend;       /* close waiting for the send queue to drain */
    int pend_code;
    uint64_t pend_since;
    char pend_reason[LOBBY_REASON_MAX + 4];
};

enum { LOBBY_ST_HELLO, LOBBY_ST_AUTH, LOBBY_ST_CLAIM, LOBBY_ST_READY, LOBBY_ST_CLOSING };

/* ---- lobby.c ---- */
/* The daemon's lobby state; NULL before start and once it has been freed. */
lobby_t *lobby_get(wy_daemon_t *d);
/* Takes / drops a reference to lb (loop thread). The last unref frees lb. */
void lobby_ref(lobby_t *lb);
void lobby_unref(lobby_t *lb);
/* Closes a uv handle whose data is lb, dropping the reference the handle held. */
void lobby_close_handle(uv_handle_t *h);
/* Publishes a session.kick for sid to instance (wy.session); logs a failure (the fence
 * still closes the old session at its next write). */
void lobby_publish_kick(lobby_t *lb, const char *instance, const char *sid, const char *account,
                        const char *reason);
/* Refreshes auth's key set (GetKeys) when due; called by the sweep timer. */
void lobby_keys_tick(lobby_t *lb);
/* True when the token (account, token sid, issued at) was revoked per the local cache. */
bool lobby_revoked(lobby_t *lb, const char *account, const char *token_sid, int64_t iat);

/* ---- session.c ---- */
int lobby_sessions_start(lobby_t *lb, const char **err);
/* Stop: no new connections; every client gets close 1001 "server stopping"; the WebSocket
 * server closes once all have answered or at the drain deadline (sessions released in
 * Redis meanwhile). */
void lobby_sessions_stop(lobby_t *lb);
/* Work the stop still waits for: WebSocket server open, connections not yet freed. */
size_t lobby_sessions_busy(const lobby_t *lb);
/* Sends kicked{reason} and closes with 4002 the local session sid (if it is here).
 * Returns true when found. */
bool lobby_session_kick_local(lobby_t *lb, const char *sid, const char *reason, int code);
/* Closes every local session of account (token_sid "" = all) with code/reason. */
void lobby_session_close_account(lobby_t *lb, const char *account, const char *token_sid, int code,
                                 const char *reason);
/* Pushes a notice to account ("" = everyone connected here). */
void lobby_session_notice(lobby_t *lb, const char *account, const char *id, const char *kind,
                          const char *text, int64_t at_ms);
/* Sends msg on conn (no-op when closed). */
void lobby_send(lobby_conn_t *c, const Wyvern__Lobby__ServerMessage *msg);
/* Sends a response {request_id, status code/message} without a body. */
void lobby_send_status(lobby_conn_t *c, uint32_t req, Wyvern__Lobby__Code code,
                       const char *message);
Wyvern__Lobby__Code lobby_code(int wy_err);
void lobby_conn_ref(lobby_conn_t *c);
void lobby_conn_unref(lobby_conn_t *c);
/* Rewrites the session record guarded by the fence (nickname change, state change). */
void lobby_session_write(lobby_conn_t *c);
/* The same after a nickname change: old_norm's index entry is dropped if it names us. */
void lobby_session_write_nick(lobby_conn_t *c, const char *old_norm);

/* Redis lookups shared with grpc.c: the live session of an account, stale index cleaned.
 * cb gets WY_OK + fields, WY_ENOTFOUND, or an error. Fields valid during cb only. */
typedef struct {
    const char *sid, *account, *instance, *conn, *state, *nick;
    int64_t created, seen;
    uint64_t epoch;
} lobby_sess_info_t;
typedef void (*lobby_lookup_cb)(int status, const lobby_sess_info_t *s, void *ud);
int lobby_session_lookup(lobby_t *lb, const char *account, lobby_lookup_cb cb, void *ud);
/* Fences and removes the account's live session (Kick); cb gets WY_OK + the old session's
 * sid/instance, or WY_ENOTFOUND. The owning instance is told through wy.session. */
int lobby_session_fence(lobby_t *lb, const char *account, const char *reason, lobby_lookup_cb cb,
                        void *ud);

/* ---- nickname.c ---- */
/* Checks and normalises a nickname. On WY_OK display (NFKC) and norm (the collision key)
 * are filled. Errors: WY_EINVAL (length, characters, scripts), WY_EPERM (reserved word);
 * *err is a message for the player. */
int lobby_nick_check(const char *nick, size_t len, char *display, size_t display_cap, char *norm,
                     size_t norm_cap, const char **err);
/* Handles SetNickname for a ready conn. */
void lobby_nick_set(lobby_conn_t *c, uint32_t req, const char *nick);
/* Reads the account's nickname; cb(status, display, norm, ud) with WY_OK / WY_ENOTFOUND / error. */
typedef void (*lobby_nick_cb)(int status, const char *display, const char *norm, void *ud);
int lobby_nick_load(lobby_t *lb, const char *account, lobby_nick_cb cb, void *ud);

/* ---- grpc.c ---- */
int lobby_grpc_register(lobby_t *lb, const char **err);

#endif
