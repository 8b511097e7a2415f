/* wyc — the Wyvern client library: auth HTTP API and lobby WebSocket for game clients, bots,
 * load tests and the `wy` CLI. Async on libuv (thousands of clients per process), plus a small
 * blocking layer (wyc_sync_*) for simple tools. Usable from C++.
 *
 * Quick start (async):
 *
 *     wyc_config_t cfg;  wyc_config_default(&cfg);          // or wyc_config_from_env
 *     cfg.auth_url = "http://127.0.0.1:8080";  cfg.lobby_url = "ws://127.0.0.1:8081/v1/lobby";
 *     wyc_ctx_t *ctx;    wyc_ctx_new(loop, &cfg, &ctx, &err);   // one per loop, shared
 *     wyc_client_t *c;   wyc_client_new(ctx, on_event, me, &c); // one per player
 *     wyc_credential_t cred = {.method = WYC_LOGIN_DEVICE, .id = "my-device-id"};
 *     wyc_login(c, &cred, on_logged_in, me);                   // then in on_logged_in:
 *     wyc_lobby_connect(c);                                    // WYC_EV_WELCOME arrives
 *
 * Threading: every function must be called on the thread running the loop given to
 * wyc_ctx_new; every callback runs on that thread, never from inside the call that started the
 * operation. Strings passed in are copied; pointers handed to callbacks are valid only during
 * the callback.
 *
 * Errors: functions return WY_OK or a negative WY_E* code (libs/common/wy_core.h). Every
 * completion carries a wyc_error_t saying what went wrong, where (network, protocol, server)
 * and, for server refusals, the server's stable machine code ("USERNAME_TAKEN",
 * "ALREADY_EXISTS"), plus a message for a person. */
#ifndef WYC_H
#define WYC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "wy_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

/* Where a failure came from. */
typedef enum {
    WYC_SRC_NONE = 0, /* success */
    WYC_SRC_CLIENT,   /* refused before anything was sent (bad argument, wrong state) */
    WYC_SRC_NETWORK,  /* connect/DNS/reset/timeout: the server may be down; retrying may help */
    WYC_SRC_PROTOCOL, /* the server answered something this client cannot understand */
    WYC_SRC_SERVER,   /* the server refused: see server_code */
} wyc_source_t;

typedef struct {
    int code; /* WY_OK or WY_E*: WY_EAUTH bad credentials/token, WY_EEXIST taken,
                 WY_ELIMIT rate limited, WY_EUNAVAIL server down or overloaded,
                 WY_EPERM banned/forbidden, WY_EINVAL rejected input,
                 WY_ETIMEDOUT no answer in time, WY_EIO protocol failure,
                 WY_ECANCELED closed before the answer */
    wyc_source_t source;
    int http_status;      /* auth: the HTTP status when one arrived, else 0 */
    int ws_close;         /* lobby: the WebSocket close code when the failure is a close */
    char server_code[48]; /* the server's machine code ("INVALID_CREDENTIALS",
                             "ALREADY_EXISTS", ...), "" when none */
    char message[256];    /* for a person, never parse it */
} wyc_error_t;

/* Source name: "client", "network", "protocol", "server" ("" for none). */
const char *wyc_source_name(wyc_source_t s);

/* ------------------------------------------------------------------ configuration */

typedef struct {
    const char *auth_url;   /* "http://host:8080" (the auth daemon's HTTP API) */
    const char *lobby_url;  /* "ws://host:8081/v1/lobby" */
    const char *server_key; /* X-Wyvern-Server-Key for custom-id logins (studio tools), or NULL */
    const char *client_version;      /* sent in the lobby hello, free text */
    uint32_t timeout_ms;             /* per HTTP request and per lobby request (default 10000) */
    uint32_t max_inflight;           /* HTTP requests in flight per context (default 256) */
    uint32_t reconnect_base_ms;      /* first reconnect delay (default 250) */
    uint32_t reconnect_max_ms;       /* cap of the delay (default 30000) */
    uint32_t reconnect_max_attempts; /* consecutive failed attempts before giving up (0: never) */
    bool auto_refresh;               /* refresh the access token before it expires (default true) */
    bool auto_reconnect;             /* reconnect the lobby after a drop (default true) */
} wyc_config_t;

/* Defaults: auth http://127.0.0.1:8080, lobby ws://127.0.0.1:8081/v1/lobby, the numbers above. */
void wyc_config_default(wyc_config_t *cfg);

/* Defaults, then the environment: WY_SERVER=host (both URLs on the default ports),
 * WY_AUTH_URL, WY_LOBBY_URL, WY_SERVER_KEY. The strings point into the environment. */
void wyc_config_from_env(wyc_config_t *cfg);

/* ------------------------------------------------------------------ context and client */

typedef struct wyc_ctx wyc_ctx_t;       /* per loop: configuration + HTTP connection pool */
typedef struct wyc_client wyc_client_t; /* one player: tokens, lobby connection */

/* Create a context on loop (never uses uv_default_loop itself). cfg is copied. Returns WY_OK
 * and *out, or WY_EINVAL with *err naming the bad setting ("lobby_url: want ws://host:port/path").
 * Free with wyc_ctx_close after every client of it is closed. */
int wyc_ctx_new(uv_loop_t *loop, const wyc_config_t *cfg, wyc_ctx_t **out, const char **err);

/* Close the context: pending HTTP requests fail with WY_ECANCELED, handles close; done(ud) runs
 * from the loop when all is released (may be NULL). Close the clients first. */
void wyc_ctx_close(wyc_ctx_t *ctx, void (*done)(void *ud), void *ud);

uv_loop_t *wyc_ctx_loop(const wyc_ctx_t *ctx);

/* ---- events pushed to a client's handler ---- */

typedef enum {
    WYC_EV_TOKENS = 1,   /* new tokens (login, refresh): save session.refresh_token now,
                            the previous one is no longer valid */
    WYC_EV_WELCOME,      /* lobby session ready (also after each reconnect): welcome */
    WYC_EV_NOTICE,       /* a server notice: notice */
    WYC_EV_KICKED,       /* kicked (logged in elsewhere, banned, operator): reason; the
                            connection closes and is NOT reconnected */
    WYC_EV_DISCONNECTED, /* the lobby connection dropped (or a connect failed) and will be
                            retried after reconnect_in_ms; error says why */
    WYC_EV_CLOSED,       /* the lobby connection is finished for good (logout, kick, refused,
                            gave up reconnecting, wyc_lobby_close): error says why */
    WYC_EV_AUTH_LOST,    /* the access token could not be refreshed (revoked, banned,
                            expired): log in again */
    WYC_EV_FRIEND,       /* a friend request for one of your characters, or an accept of
                            yours: friend (wyc_characters.c) */
    WYC_EV_CHAT,         /* a chat message: chat (wyc_chat_follow: in seq order, no gap) */
} wyc_event_type_t;

typedef struct {
    char session_id[64];
    char account_id[64];
    char nickname[128];
    char instance[128];
    uint32_t heartbeat_interval_ms;
    uint32_t idle_timeout_ms;
    uint32_t max_messages_per_sec;
    uint32_t reconnects; /* how many times this session was re-established (0 the first time) */
} wyc_welcome_t;

typedef struct {
    char id[64];
    char kind[32];
    char text[2048]; /* truncated beyond */
    int64_t at_ms;   /* Unix ms */
} wyc_notice_t;

/* A friend push (WYC_EV_FRIEND). */
typedef struct {
    char kind[16]; /* "request" (they asked you) or "accepted" (they said yes) */
    char from_actor_id[40];
    char from_name[72];
    char to_actor_id[40]; /* your character */
    char to_name[72];
} wyc_friend_push_t;
#define WYC_CHAT_TEXT_MAX    2048 /* bytes of a chat text kept (chat's default bound) */
#define WYC_CHAT_CHANNEL_MAX 136

/* One message of a chat channel (libs/client/wyc_chat.c, services/lobby/README.md "Chat"). */
typedef struct {
    char channel_id[WYC_CHAT_CHANNEL_MAX];
    uint64_t seq;  /* the channel's sequence number: 1, 2, 3, ... */
    char type[16]; /* "text", "tombstone", "join", "leave", "invite", "kick" */
    char sender_id[64];
    char sender_name[128];
    char text[WYC_CHAT_TEXT_MAX + 1];
    int64_t ts_ms;       /* when chat stored it (Unix ms) */
    bool deleted;        /* history: a text a moderator deleted */
    uint64_t target_seq; /* tombstone: the message to hide */
    char subject_id[64]; /* join/leave/invite/kick: whom it is about */
    bool offline;        /* a whisper kept while this player was offline */
} wyc_chat_message_t;

typedef struct {
    wyc_event_type_t type;
    wyc_welcome_t welcome;    /* WYC_EV_WELCOME */
    wyc_friend_push_t friend; /* WYC_EV_FRIEND */
    wyc_chat_message_t chat;  /* WYC_EV_CHAT */
    wyc_notice_t notice;      /* WYC_EV_NOTICE */
    char reason[256];         /* WYC_EV_KICKED */
    uint32_t reconnect_in_ms; /* WYC_EV_DISCONNECTED */
    wyc_error_t error;        /* DISCONNECTED, CLOSED, AUTH_LOST */
} wyc_event_t;

typedef void (*wyc_event_cb)(wyc_client_t *c, const wyc_event_t *ev, void *ud);

/* Create a client of ctx. on_event may be NULL. Returns WY_OK and *out. */
int wyc_client_new(wyc_ctx_t *ctx, wyc_event_cb on_event, void *ud, wyc_client_t **out);

/* Close a client: its lobby connection closes without logout (the session stays until the
 * server's idle timeout), pending operations complete with WY_ECANCELED, no event is pushed
 * after this call; the memory is freed from the loop later. Tokens are not revoked: call
 * wyc_logout first for that. */
void wyc_client_close(wyc_client_t *c);

void *wyc_client_userdata(const wyc_client_t *c);

/* ------------------------------------------------------------------ auth */

typedef enum {
    WYC_LOGIN_PASSWORD = 1, /* username + password */
    WYC_LOGIN_DEVICE,       /* id = device id (creates the account on first use) */
    WYC_LOGIN_CUSTOM,       /* id = custom id; needs cfg.server_key */
    WYC_LOGIN_STEAM,        /* id = Steam session ticket (hex) */
    WYC_LOGIN_OIDC,         /* id = OpenID Connect id_token */
} wyc_method_t;

typedef struct {
    wyc_method_t method;
    const char *username; /* password only */
    const char *password; /* password only */
    const char *id;       /* every other method */
} wyc_credential_t;

/* "password", "device", "custom", "steam", "oidc"; NULL if unknown. And the reverse (0 if
 * unknown). */
const char *wyc_method_name(wyc_method_t m);
wyc_method_t wyc_method_parse(const char *name);

/* The client's auth session (valid after a successful login/register/resume). */
typedef struct {
    char account_id[64];
    char session_id[64];
    char access_token[2048];
    char refresh_token[128];
    int64_t access_expires_at_ms; /* Unix ms (local clock) */
    bool created;                 /* the login created the account */
} wyc_session_t;

/* NULL when not logged in. Valid until the next call on c. */
const wyc_session_t *wyc_session(const wyc_client_t *c);

/* Completion of an auth call: err->code WY_OK on success. */
typedef void (*wyc_done_cb)(wyc_client_t *c, const wyc_error_t *err, void *ud);

/* Start an auth call. Return WY_OK (cb runs exactly once later) or, without calling cb:
 * WY_EINVAL (bad argument), WY_ESTATE (not logged in, for calls needing it), WY_EBUSY (too
 * many HTTP requests in flight on the context). */
int wyc_register(wyc_client_t *c, const char *username, const char *password, wyc_done_cb cb,
                 void *ud);
int wyc_login(wyc_client_t *c, const wyc_credential_t *cred, wyc_done_cb cb, void *ud);
/* Log in with a saved refresh token (what `wy` keeps in a credentials file). The token is
 * rotated: save the new one on WYC_EV_TOKENS. */
int wyc_resume(wyc_client_t *c, const char *refresh_token, wyc_done_cb cb, void *ud);
/* Adopt a saved session whose access token is still valid, without a request (may be
 * refreshed later as usual). Returns WY_EINVAL if s has no refresh token. */
int wyc_session_restore(wyc_client_t *c, const wyc_session_t *s);
/* Refresh the access token now (also done automatically when cfg.auto_refresh). */
int wyc_refresh(wyc_client_t *c, wyc_done_cb cb, void *ud);
/* Close the lobby session (Logout message) if open, then revoke the session at auth and forget
 * the tokens. A lobby that is already gone does not stop the auth logout. */
int wyc_logout(wyc_client_t *c, wyc_done_cb cb, void *ud);
/* Attach another login method to the logged-in account (password: username + password). */
int wyc_link(wyc_client_t *c, const wyc_credential_t *cred, wyc_done_cb cb, void *ud);
/* Remove a login method (id selects which, for methods with several; may be NULL). */
int wyc_unlink(wyc_client_t *c, wyc_method_t method, const char *id, wyc_done_cb cb, void *ud);

typedef struct {
    char account_id[64];
    char username[128]; /* "" when the account has no password login */
    char session_id[64];
    int64_t created_at; /* Unix seconds */
    bool banned;
    char login_methods[128]; /* comma-separated: "device,password" */
} wyc_account_t;

typedef void (*wyc_account_cb)(wyc_client_t *c, const wyc_error_t *err, const wyc_account_t *a,
                               void *ud);
/* GET /v1/me: the logged-in account. a is NULL on failure. */
int wyc_me(wyc_client_t *c, wyc_account_cb cb, void *ud);

/* ------------------------------------------------------------------ lobby */

/* Open the lobby connection with the current access token (hello). Progress arrives as
 * events: WYC_EV_WELCOME when the session is ready, WYC_EV_DISCONNECTED / WYC_EV_CLOSED on
 * failure. Heartbeats are automatic. After a drop it reconnects with exponential backoff and
 * jitter (cfg.reconnect_*), refreshing the token first when it was refused as expired; never
 * after a kick, a logout, a refused duplicate login or a protocol error. Returns WY_OK,
 * WY_ESTATE (not logged in, or already connecting/connected), WY_EINVAL (bad lobby_url). */
int wyc_lobby_connect(wyc_client_t *c);

/* Close the lobby connection without logging out (no reconnect). WYC_EV_CLOSED follows with
 * code WY_ECANCELED. */
void wyc_lobby_close(wyc_client_t *c);

/* True while a welcomed lobby session is up. */
bool wyc_lobby_ready(const wyc_client_t *c);

typedef void (*wyc_nickname_cb)(wyc_client_t *c, const wyc_error_t *err, const char *nickname,
                                int64_t next_change_at, void *ud);

typedef enum { WYC_OFFLINE = 0, WYC_ONLINE = 1, WYC_IN_GAME = 2 } wyc_presence_state_t;

typedef struct {
    char account_id[64]; /* "" when asked by a nickname nobody online holds */
    char nickname[128];
    wyc_presence_state_t state;
    char zone[40]; /* WYC_IN_GAME: the zone it entered, else "" */
} wyc_presence_t;

/* "offline", "online", "in-game". */
const char *wyc_presence_name(wyc_presence_state_t s);

typedef void (*wyc_presence_cb)(wyc_client_t *c, const wyc_error_t *err,
                                const wyc_presence_t *entries, size_t n, void *ud);

/* Lobby requests: need a ready session (else WY_ESTATE). Return WY_OK (cb runs once later) or,
 * without calling cb: WY_EINVAL, WY_ESTATE, WY_EBUSY (WYC_LOBBY_MAX_PENDING requests waiting),
 * WY_ELIMIT (over the lobby's message rate; retry a little later). A connection lost while
 * waiting completes them with WY_EUNAVAIL. */
#define WYC_LOBBY_MAX_PENDING 64
#define WYC_PRESENCE_MAX      100
int wyc_lobby_set_nickname(wyc_client_t *c, const char *nickname, wyc_nickname_cb cb, void *ud);
/* Presence of up to WYC_PRESENCE_MAX accounts and nicknames in total (either list may be
 * empty); entries come in request order: account ids, then nicknames. */
int wyc_lobby_presence(wyc_client_t *c, const char *const *account_ids, size_t n_ids,
                       const char *const *nicknames, size_t n_nicks, wyc_presence_cb cb, void *ud);

/* ------------------------------------------------------------------ entering the game */

/* What lobby's enter_game answers: the game instance to connect to and a join ticket for it
 * (single use, valid until ticket_expires_at_ms: join at once). */
typedef struct {
    char character_id[72];
    char game_addr[300]; /* host:port of the game's WebSocket (path /v1/game) */
    char game_id[72];
    char zone_id[40];
    char instance_id[80]; /* zone instance "<zone>#<n>" */
    double x, y;          /* where the character appears */
    int64_t ticket_expires_at_ms;
    char ticket[2048];
} wyc_entry_t;

typedef void (*wyc_enter_cb)(wyc_client_t *c, const wyc_error_t *err, const wyc_entry_t *entry,
                             void *ud);
/* Lobby request enter_game (needs a ready session, returns as the lobby requests above): the
 * character must be the account's (else WY_ENOTFOUND); entry is NULL on failure. wyc_enter.c */
int wyc_lobby_enter_game(wyc_client_t *c, const char *character_id, wyc_enter_cb cb, void *ud);

/* ------------------------------------------------------------------ the game connection */

/* One connection to a game instance (wyc_game.c), independent of the lobby connection:
 * opened with an entry from wyc_lobby_enter_game, it sends join{ticket} and reports the
 * welcome. No reconnect: a dropped game connection means entering again through lobby. */
typedef struct wyc_game wyc_game_t;

typedef struct {
    uint64_t entity_id;
    char account_id[64];
    char character_id[72];
    char zone_id[40];
    char instance_id[80];
    char game_id[72];
    uint32_t tick_rate; /* Hz */
    double x, y;
    uint32_t max_message_bytes;
} wyc_game_welcome_t;

typedef enum {
    WYC_GAME_EV_WELCOME = 1, /* joined: welcome */
    WYC_GAME_EV_LEFT,        /* the answer to wyc_game_leave: x, y saved */
    WYC_GAME_EV_CLOSED,      /* the connection is over (after LEFT, a refusal, a drop):
                                error says why (WY_OK after a leave); no event follows */
    WYC_GAME_EV_UPDATE,      /* one tick's update, already applied to the mirror
                                (wyc_game_entities): update says what it did */
    WYC_GAME_EV_CHAT,        /* a chat message for this player (world, its zone instance's
                                channel, its party / guild / whispers): chat */
    WYC_GAME_EV_CHAT_SENT,   /* the answer to wyc_game_chat_send request_id: chat_sent, or
                                error (server_code "RATE_LIMITED", "FORBIDDEN", ...) */
} wyc_game_event_type_t;

/* An entity the player sees (the mirror of its view, kept by the library from the updates;
 * positions exact to 1/32 m). */
typedef struct {
    uint32_t id;
    uint8_t kind; /* 1 player, 2 NPC */
    uint8_t mode; /* 0 idle, 1 walk, 2 run */
    double x, y;  /* metres, x east, y south */
} wyc_entity_t;

typedef struct {
    uint64_t tick;
    uint32_t ack;   /* last input seq the server applied or refused */
    bool reset;     /* the mirror was replaced */
    bool corrected; /* an input was refused: x, y is the authoritative position */
    double x, y;    /* the player's own position (when corrected, or from the mirror) */
    uint32_t entered, changed, left;
    size_t bytes; /* of the update message */
} wyc_game_update_t;

typedef struct {
    wyc_game_event_type_t type;
    wyc_game_welcome_t welcome;     /* WELCOME */
    wyc_game_update_t update;       /* UPDATE */
    double x, y;                    /* LEFT */
    const wyc_chat_message_t *chat; /* CHAT: valid during the callback; a channel's messages
                                       come in seq order (a gap: fetch it through lobby's
                                       chat history) */
    wyc_error_t error;              /* CLOSED: server_code is the game's Code name
                                       ("TICKET_EXPIRED", ...), ws_close the close code;
                                       CHAT_SENT: WY_OK or the refusal */
    uint32_t request_id;            /* CHAT_SENT */
    const struct wyc_chat_result *chat_sent; /* CHAT_SENT when accepted (channel_id, seq,
                                                text as stored, masked, offline) */
} wyc_game_event_t;

typedef void (*wyc_game_cb)(wyc_game_t *g, const wyc_game_event_t *ev, void *ud);

/* Connects to entry->game_addr and joins with entry->ticket. Events go to cb (never from
 * inside this call). Returns WY_OK and *out, or WY_EINVAL (bad entry). */
int wyc_game_join(wyc_ctx_t *ctx, const wyc_entry_t *entry, wyc_game_cb cb, void *ud,
                  wyc_game_t **out);
/* Sends leave (after the welcome): LEFT then CLOSED follow. WY_ESTATE when not joined. */
int wyc_game_leave(wyc_game_t *g);
/* Drops the connection (a disconnect: the server saves the position too); no event after this
 * call; freed from the loop later. */
void wyc_game_close(wyc_game_t *g);
void *wyc_game_userdata(const wyc_game_t *g);

/* Movement inputs (after the welcome): the server moves the player (walk 2.5 m/s, run 6 m/s)
 * and acknowledges each in the updates' ack. Returns the input's seq (> 0), or a negative
 * WY_E*: WY_ESTATE when not joined. mode: 0 stop, 1 walk, 2 run. */
int64_t wyc_game_move(wyc_game_t *g, int mode, double heading_deg);    /* 0 east, 90 south */
int64_t wyc_game_move_to(wyc_game_t *g, int mode, double x, double y); /* walk to, stop */
/* Copies up to max entities of the mirror into out (sorted by id); returns how many it holds
 * in all. */
size_t wyc_game_entities(const wyc_game_t *g, wyc_entity_t *out, size_t max);
/* The player's own entity id (0 before the welcome). */
uint32_t wyc_game_self(const wyc_game_t *g);
/* Sends a chat message from the game connection (after the welcome): channel_id ("zone",
 * "world", "party:<id>", "guild:<id>") or to_account_id (a whisper), one of them NULL. wy-chat
 * checks it as through lobby (membership, mutes, filter, rate limit). Returns the request id
 * (> 0) that the WYC_GAME_EV_CHAT_SENT event answers, or a negative WY_E*: WY_ESTATE when not
 * joined, WY_EINVAL bad arguments. */
int64_t wyc_game_chat_send(wyc_game_t *g, const char *channel_id, const char *to_account_id,
                           const char *text);
/* ------------------------------------------------------------------ chat */

/* Result of a chat request: send (channel_id, seq, text as stored, masked, offline), create
 * (channel_id), join/leave/invite/kick/delete (channel_id, seq of the event), mute
 * (until_ms), report and resolve (nothing). */
typedef struct wyc_chat_result {
    char channel_id[WYC_CHAT_CHANNEL_MAX];
    uint64_t seq;
    char text[WYC_CHAT_TEXT_MAX + 1];
    bool masked;      /* filtered words were masked with '*' */
    bool offline;     /* whisper to an offline player: delivered at their next login */
    int64_t until_ms; /* mute: the end of the mute (Unix ms); 0 when lifted */
} wyc_chat_result_t;

typedef void (*wyc_chat_cb)(wyc_client_t *c, const wyc_error_t *err, const wyc_chat_result_t *r,
                            void *ud);
/* A history page: msgs in ascending seq, last_seq the channel's latest, more when the page
 * did not reach the end in the asked direction. */
typedef void (*wyc_chat_history_cb)(wyc_client_t *c, const wyc_error_t *err,
                                    const wyc_chat_message_t *msgs, size_t n, uint64_t last_seq,
                                    bool more, void *ud);

/* Chat requests (same return contract as the lobby requests above). channel ids: "world",
 * "system", "zone" (send only: your zone instance), "party:<id>", "guild:<id>",
 * "whisper:<a>|<b>"; a whisper is send(channel NULL, to_account_id). Refusals: WY_EPERM (not a
 * member, muted, filtered word in refuse mode), WY_ELIMIT (rate limit), WY_EINVAL, WY_ESTATE
 * (join without an invite), WY_ENOTFOUND. */
int wyc_chat_send(wyc_client_t *c, const char *channel_id, const char *to_account_id,
                  const char *text, wyc_chat_cb cb, void *ud);
int wyc_chat_create(wyc_client_t *c, const char *kind /* "party" | "guild" */, const char *name,
                    wyc_chat_cb cb, void *ud);
int wyc_chat_join(wyc_client_t *c, const char *channel_id, wyc_chat_cb cb, void *ud);
int wyc_chat_leave(wyc_client_t *c, const char *channel_id, wyc_chat_cb cb, void *ud);
int wyc_chat_invite(wyc_client_t *c, const char *channel_id, const char *account_id, wyc_chat_cb cb,
                    void *ud);
int wyc_chat_kick(wyc_client_t *c, const char *channel_id, const char *account_id, wyc_chat_cb cb,
                  void *ud);
/* forward: the page after after_seq; else the newest page before before_seq (0 = latest). */
int wyc_chat_history(wyc_client_t *c, const char *channel_id, uint64_t after_seq,
                     uint64_t before_seq, bool forward, uint32_t limit, wyc_chat_history_cb cb,
                     void *ud);

/* The party and guild channels the player is in (chat_list_channels): chs[0..n), valid
 * during the callback. */
typedef struct {
    char channel_id[WYC_CHAT_CHANNEL_MAX];
    char kind[16]; /* "party" | "guild" */
    char name[72];
    char role[16]; /* "owner" | "officer" | "member" */
    uint64_t last_seq;
} wyc_chat_channel_t;
typedef void (*wyc_chat_channels_cb)(wyc_client_t *c, const wyc_error_t *err,
                                     const wyc_chat_channel_t *chs, size_t n, void *ud);
int wyc_chat_channels(wyc_client_t *c, wyc_chat_channels_cb cb, void *ud);

/* Moderation (services/lobby/README.md "Chat"). delete: a moderator, or the sender of the
 * message, hides message seq of a channel (r: the tombstone's channel_id and seq). report:
 * anyone who can read the channel reports a message for the moderators (reason up to
 * WYC_CHAT_NOTE_MAX bytes). Moderators only (a session whose access token carries the
 * "moderator" role, or an account of chat's WY_CHAT_MODERATORS; others get WY_EPERM "only
 * moderators ..."): mute account_id in channel_id
 * (NULL or "" = every channel) for duration_ms (1 ms..10 years; 0 lifts the mute; r->until_ms),
 * resolve report_id with a note (WY_ESTATE closed already, WY_ENOTFOUND unknown), and list
 * the reports (below). */
#define WYC_CHAT_NOTE_MAX 500
int wyc_chat_delete(wyc_client_t *c, const char *channel_id, uint64_t seq, const char *reason,
                    wyc_chat_cb cb, void *ud);
int wyc_chat_report(wyc_client_t *c, const char *channel_id, uint64_t seq, const char *reason,
                    wyc_chat_cb cb, void *ud);
int wyc_chat_mute(wyc_client_t *c, const char *account_id, const char *channel_id,
                  int64_t duration_ms, const char *reason, wyc_chat_cb cb, void *ud);
int wyc_chat_resolve(wyc_client_t *c, int64_t report_id, const char *resolution, wyc_chat_cb cb,
                     void *ud);

/* One reported message (ascending report_id). */
typedef struct {
    int64_t report_id;
    char channel_id[WYC_CHAT_CHANNEL_MAX];
    uint64_t seq;
    char reporter_id[64];
    char reason[WYC_CHAT_NOTE_MAX + 1];
    int64_t at_ms;
    bool has_message;           /* false once retention removed the message */
    wyc_chat_message_t message; /* its text erased if it was deleted */
    int64_t resolved_at_ms;     /* 0: open */
    char resolved_by[64];
    char resolution[WYC_CHAT_NOTE_MAX + 1];
} wyc_chat_report_t;

typedef void (*wyc_chat_reports_cb)(wyc_client_t *c, const wyc_error_t *err,
                                    const wyc_chat_report_t *reports, size_t n, bool more,
                                    void *ud);
/* A page of reports after report id after_id (0: from the first), limit 0 (= 50)..200, the
 * open ones only unless resolved. Moderators only. */
int wyc_chat_reports(wyc_client_t *c, uint64_t after_id, uint32_t limit, bool resolved,
                     wyc_chat_reports_cb cb, void *ud);

/* Ordered delivery of one channel: from now on its WYC_EV_CHAT events come in seq order after
 * last_seq (the last one the caller has; 0 = from the first kept), each once: a push already
 * seen is dropped, a gap is filled from history first, and after a reconnect the messages sent
 * meanwhile are fetched. At most WYC_CHAT_FOLLOW_MAX channels (WY_ELIMIT); following a channel
 * again resets its position. Pushes of channels not followed are emitted as they come. */
#define WYC_CHAT_FOLLOW_MAX 64
int wyc_chat_follow(wyc_client_t *c, const char *channel_id, uint64_t last_seq);
/* The last seq emitted for a followed channel (0 when not followed). */
uint64_t wyc_chat_last_seq(const wyc_client_t *c, const char *channel_id);

/* ------------------------------------------------------------------ reconnect backoff */

/* Exponential backoff with full jitter, a pure helper (exposed for tests and for callers
 * that retry their own operations). */
typedef struct {
    uint32_t base_ms, max_ms;
    uint32_t attempt; /* failed attempts so far */
} wyc_backoff_t;

void wyc_backoff_init(wyc_backoff_t *b, uint32_t base_ms, uint32_t max_ms);
/* Delay before the next attempt: uniform in [ceil/2, ceil] where ceil = min(max, base*2^attempt);
 * rnd is any random 32-bit value. Counts the attempt. */
uint32_t wyc_backoff_next(wyc_backoff_t *b, uint32_t rnd);
void wyc_backoff_reset(wyc_backoff_t *b);

/* ------------------------------------------------------------------ credentials files */

/* What `wy` keeps between runs, one file per profile (a key=value text file, mode 0600). */
typedef struct {
    char auth_url[256];
    char lobby_url[256];
    char username[128];
    wyc_session_t session;
} wyc_creds_t;

#define WYC_CREDS_MAX_BYTES 16384

/* Parse the text of a credentials file (len bytes). Unknown keys are ignored (newer versions);
 * returns WY_OK, or WY_EINVAL / WY_ETOOBIG with *err ("line 3: missing '='"). */
int wyc_creds_parse(const char *text, size_t len, wyc_creds_t *out, const char **err);
/* Serialise to a new string (caller frees with wy_free). */
char *wyc_creds_format(const wyc_creds_t *c);
/* Read path: WY_OK, WY_ENOTFOUND (no file), WY_EPERM (readable by group/others: chmod 600),
 * WY_EINVAL/WY_ETOOBIG (malformed), WY_EIO. *err explains. */
int wyc_creds_load(const char *path, wyc_creds_t *out, const char **err);
/* Write atomically (temporary file 0600 in the same folder + rename), creating the folder
 * (0700) if missing. WY_OK or WY_EIO with *err. */
int wyc_creds_save(const char *path, const wyc_creds_t *c, const char **err);
/* Creates the folders above the credentials file path (mode 0700) when they are
 * missing. Returns WY_OK or WY_EIO with *err naming the folder. */
int wyc_creds_prepare_dir(const char *path, const char **err);

/* ------------------------------------------------------------------ blocking layer */

/* One client on a private loop, each call runs the loop until its answer: for CLIs and simple
 * tools. Events (tokens, lobby) that arrive meanwhile are queued (at most WYC_SYNC_MAX_EVENTS, the
 * oldest dropped beyond) and read with wyc_sync_next_event. Not thread-safe: one thread. */
typedef struct wyc_sync wyc_sync_t;
#define WYC_SYNC_MAX_EVENTS 256

int wyc_sync_new(const wyc_config_t *cfg, wyc_sync_t **out, const char **err);
/* Close the client and the loop; frees s. */
void wyc_sync_free(wyc_sync_t *s);
wyc_client_t *wyc_sync_client(wyc_sync_t *s);

/* Each returns err->code (WY_OK on success) and fills err. */
int wyc_sync_register(wyc_sync_t *s, const char *username, const char *password, wyc_error_t *err);
int wyc_sync_login(wyc_sync_t *s, const wyc_credential_t *cred, wyc_error_t *err);
int wyc_sync_resume(wyc_sync_t *s, const char *refresh_token, wyc_error_t *err);
int wyc_sync_refresh(wyc_sync_t *s, wyc_error_t *err);
int wyc_sync_logout(wyc_sync_t *s, wyc_error_t *err);
int wyc_sync_link(wyc_sync_t *s, const wyc_credential_t *cred, wyc_error_t *err);
int wyc_sync_me(wyc_sync_t *s, wyc_account_t *out, wyc_error_t *err);
/* Connect and wait for the welcome (or the final failure). */
int wyc_sync_lobby_connect(wyc_sync_t *s, wyc_welcome_t *out, wyc_error_t *err);
int wyc_sync_set_nickname(wyc_sync_t *s, const char *nickname, char *stored, size_t cap,
                          int64_t *next_change_at, wyc_error_t *err);
/* Fills up to cap entries of out and *n. */
/* Blocking chat requests (wyc_chat_*); history fills out[0..cap) and *n. */
int wyc_sync_chat(wyc_sync_t *s, const char *op, const char *channel_id, const char *arg,
                  const char *text, wyc_chat_result_t *out, wyc_error_t *err);
int wyc_sync_chat_history(wyc_sync_t *s, const char *channel_id, uint64_t after_seq,
                          uint64_t before_seq, bool forward, uint32_t limit,
                          wyc_chat_message_t *out, size_t cap, size_t *n, uint64_t *last_seq,
                          bool *more, wyc_error_t *err);
/* wyc_chat_channels, blocking: fills out[0..cap) and *n. */
int wyc_sync_chat_channels(wyc_sync_t *s, wyc_chat_channel_t *out, size_t cap, size_t *n,
                           wyc_error_t *err);
/* Blocking moderation requests (wyc_chat_delete, _report, _mute, _resolve; *out on WY_OK)
 * and a page of reports (fills out[0..cap) and *n). */
int wyc_sync_chat_delete(wyc_sync_t *s, const char *channel_id, uint64_t seq, const char *reason,
                         wyc_chat_result_t *out, wyc_error_t *err);
int wyc_sync_chat_report(wyc_sync_t *s, const char *channel_id, uint64_t seq, const char *reason,
                         wyc_chat_result_t *out, wyc_error_t *err);
int wyc_sync_chat_mute(wyc_sync_t *s, const char *account_id, const char *channel_id,
                       int64_t duration_ms, const char *reason, wyc_chat_result_t *out,
                       wyc_error_t *err);
int wyc_sync_chat_resolve(wyc_sync_t *s, int64_t report_id, const char *resolution,
                          wyc_chat_result_t *out, wyc_error_t *err);
int wyc_sync_chat_reports(wyc_sync_t *s, uint64_t after_id, uint32_t limit, bool resolved,
                          wyc_chat_report_t *out, size_t cap, size_t *n, bool *more,
                          wyc_error_t *err);
int wyc_sync_presence(wyc_sync_t *s, const char *const *account_ids, size_t n_ids,
                      const char *const *nicknames, size_t n_nicks, wyc_presence_t *out, size_t cap,
                      size_t *n, wyc_error_t *err);
/* enter_game, then join the game it names and wait for the welcome (or the refusal). */
int wyc_sync_enter_game(wyc_sync_t *s, const char *character_id, wyc_entry_t *entry,
                        wyc_error_t *err);
int wyc_sync_game_join(wyc_sync_t *s, const wyc_entry_t *entry, wyc_game_welcome_t *out,
                       wyc_error_t *err);
/* wyc_game_chat_send on the game joined by wyc_sync_game_join, waiting for its answer (*out
 * on WY_OK). The game's chat pushes come as WYC_EV_CHAT events (wyc_sync_next_event). */
int wyc_sync_game_chat_send(wyc_sync_t *s, const char *channel_id, const char *to_account_id,
                            const char *text, wyc_chat_result_t *out, wyc_error_t *err);
/* Leave the game joined by wyc_sync_game_join; *x / *y get the saved position. */
int wyc_sync_game_leave(wyc_sync_t *s, double *x, double *y, wyc_error_t *err);
/* The game joined by wyc_sync_game_join (NULL if none): for wyc_game_move / entities; its
 * updates are applied while any wyc_sync_* call runs the loop (wyc_sync_next_event). */
wyc_game_t *wyc_sync_game(wyc_sync_t *s);
/* Wait up to timeout_ms (0: forever) for the next queued event. WY_OK and *ev, or
 * WY_ETIMEDOUT. */
int wyc_sync_next_event(wyc_sync_t *s, uint32_t timeout_ms, wyc_event_t *ev);
/* Make a pending wyc_sync_next_event return WY_ECANCELED: callable from a signal handler. */
void wyc_sync_interrupt(wyc_sync_t *s);

/* ------------------------------------------------------------------ characters and friends
 * (wyc_characters.c): the lobby's messages 30..49, served by wy-actor behind the lobby.
 * Same rules as the other lobby requests (a ready session; WY_ESTATE otherwise). */

#define WYC_CHARACTERS_MAX 64
#define WYC_FRIENDS_MAX    200

typedef struct {
    char actor_id[40];
    char name[72];
    char class_name[40];
    uint32_t level;
    uint64_t xp;
    uint64_t gold;
    char zone[72];
    bool deleted;
} wyc_character_t;

typedef enum {
    WYC_FRIEND_NONE = 0,
    WYC_FRIEND_ACCEPTED = 1, /* friends */
    WYC_FRIEND_INCOMING = 2, /* they asked you */
    WYC_FRIEND_OUTGOING = 3, /* you asked them */
} wyc_friend_status_t;

typedef struct {
    char actor_id[40];
    char name[72];
    char account_id[64];
    wyc_friend_status_t status;
    wyc_presence_state_t presence;
    char zone[40]; /* WYC_IN_GAME: the zone the friend is in, else "" */
} wyc_friend_t;

typedef enum {
    WYC_FRIEND_REQUEST,
    WYC_FRIEND_ACCEPT,
    WYC_FRIEND_DECLINE, /* their request, or withdraws yours */
    WYC_FRIEND_REMOVE,
} wyc_friend_op_t;

/* "friend", "asked you", "you asked": for display. */
const char *wyc_friend_status_name(wyc_friend_status_t s);

/* chars[0..n) valid during the call (n 1 for create and delete). */
typedef void (*wyc_characters_cb)(wyc_client_t *c, const wyc_error_t *err,
                                  const wyc_character_t *chars, size_t n, void *ud);
/* The acting character's friends after the request, each with its presence. */
typedef void (*wyc_friends_cb)(wyc_client_t *c, const wyc_error_t *err, const wyc_friend_t *friends,
                               size_t n, void *ud);

int wyc_characters_list(wyc_client_t *c, wyc_characters_cb cb, void *ud);
/* key: optional idempotency key (NULL or ""): a retry answers the same character. */
int wyc_character_create(wyc_client_t *c, const char *name, const char *class_name, const char *key,
                         wyc_characters_cb cb, void *ud);
int wyc_character_delete(wyc_client_t *c, const char *actor_id, wyc_characters_cb cb, void *ud);
/* op by your character actor_id toward `other`: a character id (a UUID) or a name. */
int wyc_friend(wyc_client_t *c, wyc_friend_op_t op, const char *actor_id, const char *other,
               wyc_friends_cb cb, void *ud);
int wyc_friends_list(wyc_client_t *c, const char *actor_id, wyc_friends_cb cb, void *ud);

/* Blocking forms: out[0..cap) gets the answer, *n how many (at most cap). */
int wyc_sync_characters(wyc_sync_t *s, wyc_character_t *out, size_t cap, size_t *n,
                        wyc_error_t *err);
int wyc_sync_character_create(wyc_sync_t *s, const char *name, const char *class_name,
                              wyc_character_t *out, wyc_error_t *err);
int wyc_sync_character_delete(wyc_sync_t *s, const char *actor_id, wyc_character_t *out,
                              wyc_error_t *err);
int wyc_sync_friend(wyc_sync_t *s, wyc_friend_op_t op, const char *actor_id, const char *other,
                    wyc_friend_t *out, size_t cap, size_t *n, wyc_error_t *err);
int wyc_sync_friends(wyc_sync_t *s, const char *actor_id, wyc_friend_t *out, size_t cap, size_t *n,
                     wyc_error_t *err);

#ifdef __cplusplus
}
#endif

#endif
