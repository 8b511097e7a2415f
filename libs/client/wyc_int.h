/* wyc internals shared by the client library's files (not installed, not for callers). */
#ifndef WYC_INT_H
#define WYC_INT_H

#include "wyc.h"
#include "wy_buf.h"
#include "wy_httpc.h"
#include "lobby.pb-c.h"

#include <wslay/wslay.h>

struct wyc_ctx {
    uv_loop_t *loop;
    wyc_config_t cfg; /* strings below are the owned copies */
    char *auth_url, *lobby_url, *server_key, *client_version;
    char lobby_host[300];
    int lobby_port;
    char lobby_path[256];
    char lobby_hostport[300];
    wy_httpc_t *http;
    bool closing;
    char rbuf[16384]; /* read buffer of every lobby connection (one loop, used in turn) */
};

typedef enum {
    LB_IDLE = 0,   /* no connection, none wanted */
    LB_CONNECTING, /* TCP connect + upgrade + hello in progress */
    LB_READY,      /* welcomed */
    LB_WAITING,    /* waiting to reconnect (retry_timer) or for a token refresh */
} wyc_lobby_state_t;

typedef struct wyc_conn wyc_conn_t;

typedef struct {
    uint32_t id; /* 0 = free slot */
    int kind;    /* PEND_* */
    void *cb;
    void *ud;
    uint64_t deadline_ms;
} wyc_pending_t;

struct wyc_client {
    wyc_ctx_t *ctx;
    wyc_event_cb on_event;
    void *ud;
    int refs; /* 1 for the caller + 1 per pending HTTP op + 1 per open handle/conn */
    bool closing;
    bool logged_in;
    wyc_session_t sess;
    /* auth refresh */
    uv_timer_t refresh_timer;
    bool refreshing; /* a /v1/refresh is in flight: never two with one token */
    wyc_backoff_t refresh_backoff;
    /* lobby */
    wyc_lobby_state_t lstate;
    bool lobby_wanted; /* the caller asked for a session and did not give it up */
    bool reconnect_after_refresh;
    wyc_conn_t *conn;       /* the live connection attempt, NULL when none */
    uv_timer_t retry_timer; /* reconnect delay; also defers the final CLOSED event */
    uv_timer_t tick_timer;  /* heartbeats, request deadlines, connect deadline, watchdog */
    wyc_backoff_t backoff;
    uint32_t reconnects;
    bool welcomed_once;
    wyc_event_t deferred; /* an event to push from retry_timer (type 0: none) */
    wyc_pending_t pending[WYC_LOBBY_MAX_PENDING];
    uint32_t next_req;
    wyc_welcome_t welcome;
    /* client-side rate bucket, so a busy caller gets WY_ELIMIT instead of a 4003 close */
    double bucket;
    uint64_t bucket_ms;
    uint64_t last_sent_ms, last_recv_ms, connect_deadline_ms;
    /* logout in progress: the auth call follows the lobby Logout answer */
    wyc_done_cb logout_cb;
    void *logout_ud;
    bool logging_out;
    void *deferred_logout;   /* void (*)(wyc_client_t *): continues wyc_logout after the lobby */
    uint32_t unauth_retries; /* 4001 closes retried after a refresh since the last welcome */
    struct wyc_chat_state *chat; /* wyc_chat.c: followed channels (NULL until the first) */
};

/* wyc_util.c */
void wyc__err_set(wyc_error_t *e, int code, wyc_source_t src, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void wyc__err_ok(wyc_error_t *e);
void wyc__emit(wyc_client_t *c, const wyc_event_t *ev);
void wyc__ref(wyc_client_t *c);
void wyc__unref(wyc_client_t *c);

/* wyc_lobby.c */
void wyc__lobby_init(wyc_client_t *c);
void wyc__lobby_shutdown(wyc_client_t *c); /* on client close: no events */
void wyc__lobby_tokens_changed(wyc_client_t *c, bool ok, const wyc_error_t *err);
/* Starts the lobby Logout; done runs once the lobby answered or is gone. false: no session. */
bool wyc__lobby_logout(wyc_client_t *c, void (*done)(wyc_client_t *c));

/* A lobby request whose answer the caller decodes (wyc_enter.c and later requests): cb runs
 * once with the ServerMessage of the answer (NULL unless err->code is WY_OK). Same returns
 * as the public lobby requests. */
typedef void (*wyc__lobby_reply_cb)(wyc_client_t *c, const wyc_error_t *err,
                                    const Wyvern__Lobby__ServerMessage *m, void *ud);
int wyc__lobby_request(wyc_client_t *c, Wyvern__Lobby__ClientMessage *m, wyc__lobby_reply_cb cb,
                       void *ud);

/* The WebSocket upgrade answer of a client (lobby, game): Sec-WebSocket-Accept of key, and a
 * check of the response head in d[0..len). */
enum {
    WYC_UPGRADE_OK = 1,
    WYC_UPGRADE_MORE = 0,
    WYC_UPGRADE_TOO_BIG = -1,
    WYC_UPGRADE_STATUS = -2,
    WYC_UPGRADE_ACCEPT = -3
};
void wyc__ws_accept(const char *key, char out[64]);
/* WYC_UPGRADE_OK with *hlen the head's length; MORE (incomplete); TOO_BIG (over 8 KiB without
 * an end); STATUS (not 101: *status); ACCEPT (missing or wrong Sec-WebSocket-Accept). */
int wyc__ws_upgrade_check(const char *d, size_t len, const char *key, size_t *hlen, int *status);
/* wyc_chat.c: a chat push, a welcome (refetch what a reconnect missed), the client's end. */
void wyc__chat_push(wyc_client_t *c, const Wyvern__Lobby__ChatMessage *m);
void wyc__chat_welcome(wyc_client_t *c);
void wyc__chat_free(wyc_client_t *c);
/* A pushed ChatMessage (lobby's or game's: one type) as the library's message. */
void wyc__chat_copy(wyc_chat_message_t *o, const Wyvern__Lobby__ChatMessage *m);
/* A send's answer (lobby's chat_sent, game's chat_sent) as a wyc_chat_result_t. */
void wyc__chat_sent_copy(wyc_chat_result_t *o, const Wyvern__Lobby__ChatSent *s);
/* A lobby Status as a wyc_error_t (WY_OK when absent or OK; else source server, the Code's
 * name as server_code): lobby's answers and the game's chat_error. */
void wyc__status_err(wyc_error_t *e, const Wyvern__Lobby__Status *st);

/* wyc_characters.c: a friend push from the lobby, emitted as WYC_EV_FRIEND. */
void wyc__friend_push(wyc_client_t *c, const Wyvern__Lobby__FriendPush *p);

/* wyc_sync.c: the private loop of a blocking client. */
uv_loop_t *wyc__sync_loop(wyc_sync_t *s);

/* wyc_client.c */
int wyc__refresh_internal(wyc_client_t *c);

#endif
