/* wy-lobby WebSocket handlers: the rate limit and dispatch of client messages, and the
 * handlers of a ready session's requests (heartbeat, set_nickname, get_presence, logout).
 * hello has its own file (hello.c). Every answer goes through wire.h. */
#include "handlers_ws.h"
#include "characters.h"
#include "chat.h"
#include "enter.h"
#include "hello.h"
#include "nickname.h"
#include "presence.h"
#include "state.h"
#include "store.h"
#include "wire.h"

#include <string.h>

#define PRESENCE_MAX 100

/* ---------------------------------------------------------------- heartbeat */

static void on_heartbeat(lobby_conn_t *c, uint32_t req, uint64_t t0)
{
    Wyvern__Lobby__HeartbeatAck a = WYVERN__LOBBY__HEARTBEAT_ACK__INIT;
    a.server_time_ms = (int64_t)wy_wall_ms();
    lobby_reply(c, req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_HEARTBEAT_ACK, &a.base);
    lobby_observe(c, "heartbeat", t0, WYVERN__LOBBY__CODE__OK);
    /* One record write per half interval at most, whatever the client sends. */
    if (!c->writing && wy_now_ms() - c->last_write_ms >= (uint64_t)c->lb->cfg->heartbeat_ms / 2)
        lobby_session_write(c);
}

/* ---------------------------------------------------------------- set_nickname */

typedef struct {
    lobby_conn_t *c;
    uint32_t req;
    uint64_t t0;
    char display[LOBBY_NICK_MAX + 1];
    char norm[LOBBY_NICK_MAX * 4 + 1];
} nick_req_t;

static void nick_stored(int status, int64_t at, const char *err, void *ud)
{
    nick_req_t *q = ud;
    lobby_conn_t *c = q->c;
    int64_t cooldown_s = c->lb->cfg->nick_cooldown_ms / 1000;
    c->nick_busy = false;
    lobby_observe(c, "set_nickname", q->t0, lobby_code(status));
    if (status == WY_EEXIST) {
        lobby_reply_status(c, q->req, WYVERN__LOBBY__CODE__ALREADY_EXISTS,
                           "nickname is taken (or too similar to a taken one)");
    } else if (status == WY_ELIMIT) {
        char m[128];
        snprintf(m, sizeof m, "nickname was changed recently; next change allowed at %lld",
                 (long long)(at + cooldown_s));
        lobby_reply_status(c, q->req, WYVERN__LOBBY__CODE__RATE_LIMITED, m);
    } else if (status != WY_OK) {
        wy_log_warn("nickname update failed", "account", c->account, "error",
                    err ? err : wy_strerror(status), NULL);
        lobby_reply_status(c, q->req, WYVERN__LOBBY__CODE__UNAVAILABLE,
                           "nickname store unavailable, retry");
    } else {
        char old_norm[sizeof c->nick_norm];
        snprintf(old_norm, sizeof old_norm, "%s", c->nick_norm);
        snprintf(c->nick, sizeof c->nick, "%s", q->display);
        snprintf(c->nick_norm, sizeof c->nick_norm, "%s", q->norm);
        wy_log_info("nickname set", "account", c->account, "nickname", c->nick, NULL);
        if (c->ws && c->state == LOBBY_ST_READY) {
            lobby_session_write_nick(c, old_norm);
            Wyvern__Lobby__NicknameSet ns = WYVERN__LOBBY__NICKNAME_SET__INIT;
            ns.nickname = c->nick;
            ns.next_change_at = at + cooldown_s;
            lobby_reply(c, q->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_NICKNAME_SET, &ns.base);
        }
    }
    wy_free(q);
    lobby_conn_unref(c);
}

static void on_set_nickname(lobby_conn_t *c, uint32_t req, const char *nick, uint64_t t0)
{
    nick_req_t *q = wy_calloc(1, sizeof *q);
    const char *e = NULL;
    int rc = lobby_nick_check(nick, strlen(nick), q->display, sizeof q->display, q->norm,
                              sizeof q->norm, &e);
    if (rc == WY_OK && c->nick_busy) {
        rc = WY_ESTATE;
        e = "a nickname change is already in progress";
    }
    if (rc == WY_OK) {
        q->c = c;
        q->req = req;
        q->t0 = t0;
        rc = lobby_nick_store(c->lb, c->account, q->display, q->norm, nick_stored, q);
        e = "nickname store busy, retry";
    }
    if (rc != WY_OK) {
        lobby_reply_status(c, req, lobby_code(rc), e);
        lobby_observe(c, "set_nickname", t0, lobby_code(rc));
        wy_free(q);
        return;
    }
    c->nick_busy = true;
    lobby_conn_ref(c);
}

/* ---------------------------------------------------------------- get_presence */

typedef struct {
    lobby_conn_t *c;
    uint32_t req;
    uint64_t t0;
    size_t n;
    char **names; /* requested account ids then nicknames (to echo offline entries) */
    size_t n_acct;
} presence_req_t;

static void presence_req_free(presence_req_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        wy_free(p->names[i]);
    wy_free(p->names);
    wy_free(p);
}

static void presence_reply(size_t n, const lobby_presence_t *s, void *ud)
{
    presence_req_t *p = ud;
    lobby_conn_t *c = p->c;
    Wyvern__Lobby__Presence *ents = wy_calloc(n ? n : 1, sizeof *ents);
    Wyvern__Lobby__Presence **ptrs = wy_calloc(n ? n : 1, sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        Wyvern__Lobby__Presence *e = &ents[i];
        wyvern__lobby__presence__init(e);
        ptrs[i] = e;
        bool asked_acct = i < p->n_acct;
        e->account_id = asked_acct ? p->names[i] : "";
        e->nickname = asked_acct ? "" : p->names[i];
        if (s[i].account) {
            e->account_id = (char *)s[i].account;
            e->nickname = (char *)s[i].nick;
            e->state = s[i].in_game ? WYVERN__LOBBY__PRESENCE_STATE__IN_GAME
                                    : WYVERN__LOBBY__PRESENCE_STATE__ONLINE;
            e->zone = (char *)s[i].zone;
        }
    }
    Wyvern__Lobby__PresenceList pl = WYVERN__LOBBY__PRESENCE_LIST__INIT;
    pl.n_entries = n;
    pl.entries = ptrs;
    lobby_reply(c, p->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_PRESENCE, &pl.base);
    wy_free(ents);
    wy_free(ptrs);
    lobby_observe(c, "get_presence", p->t0, WYVERN__LOBBY__CODE__OK);
    presence_req_free(p);
    lobby_conn_unref(c);
}

static void presence_done(int status, size_t n, const lobby_sess_info_t *s, void *ud)
{
    presence_req_t *p = ud;
    lobby_conn_t *c = p->c;
    if (status != WY_OK || n != p->n) {
        lobby_observe(c, "get_presence", p->t0, WYVERN__LOBBY__CODE__UNAVAILABLE);
        lobby_reply_status(c, p->req, WYVERN__LOBBY__CODE__UNAVAILABLE,
                           "session store unavailable, retry");
        presence_req_free(p);
        lobby_conn_unref(c);
        return;
    }
    lobby_presence_resolve(c->lb, n, s, presence_reply, p);
}

static void on_presence(lobby_conn_t *c, uint32_t req, const Wyvern__Lobby__GetPresence *g,
                        uint64_t t0)
{
    size_t n = g->n_account_ids + g->n_nicknames;
    if (n == 0 || n > PRESENCE_MAX) {
        lobby_reply_status(c, req, WYVERN__LOBBY__CODE__INVALID,
                           "ask for 1 to 100 accounts and nicknames");
        lobby_observe(c, "get_presence", t0, WYVERN__LOBBY__CODE__INVALID);
        return;
    }
    presence_req_t *p = wy_calloc(1, sizeof *p);
    p->c = c;
    p->req = req;
    p->t0 = t0;
    p->n = n;
    p->n_acct = g->n_account_ids;
    p->names = wy_calloc(n, sizeof *p->names);
    char **keys = wy_calloc(n, sizeof *keys);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name =
            i < g->n_account_ids ? g->account_ids[i] : g->nicknames[i - g->n_account_ids];
        p->names[i] = wy_strdup(name);
        if (i < g->n_account_ids) {
            if (!*name || strlen(name) > LOBBY_ID_MAX)
                bad = 1;
            keys[i] = wy_strdup(name);
        } else {
            char display[LOBBY_NICK_MAX + 1], norm[LOBBY_NICK_MAX * 4 + 1];
            const char *e = NULL;
            /* An impossible nickname cannot be online: look up a key nobody holds. */
            if (lobby_nick_check(name, strlen(name), display, sizeof display, norm, sizeof norm,
                                 &e) != WY_OK)
                snprintf(norm, sizeof norm, "-");
            keys[i] = wy_strdup(norm);
        }
    }
    int rc = bad ? WY_EINVAL
                 : lobby_session_lookup_many(c->lb, n, g->n_account_ids, (const char *const *)keys,
                                             presence_done, p);
    for (size_t i = 0; i < n; i++)
        wy_free(keys[i]);
    wy_free(keys);
    if (rc == WY_OK) {
        lobby_conn_ref(c);
        return;
    }
    Wyvern__Lobby__Code code = bad ? WYVERN__LOBBY__CODE__INVALID : lobby_code(rc);
    lobby_reply_status(c, req, code, bad ? "bad account id" : "session store unavailable, retry");
    lobby_observe(c, "get_presence", t0, code);
    presence_req_free(p);
}

/* ---------------------------------------------------------------- logout */

static void on_logout(lobby_conn_t *c, uint32_t req, uint64_t t0)
{
    Wyvern__Lobby__LoggedOut lo = WYVERN__LOBBY__LOGGED_OUT__INIT;
    lobby_reply(c, req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_LOGGED_OUT, &lo.base);
    lobby_observe(c, "logout", t0, WYVERN__LOBBY__CODE__OK);
    lobby_conn_close(c, WY_WS_NORMAL, "logged out"); /* on_close releases the session */
}

/* ---------------------------------------------------------------- dispatch */

static bool rate_ok(lobby_conn_t *c)
{
    uint64_t now = wy_now_ms();
    double rate = (double)c->lb->cfg->max_msgs_per_sec;
    c->bucket += (double)(now - c->bucket_ms) * rate / 1000.0;
    if (c->bucket > rate)
        c->bucket = rate;
    c->bucket_ms = now;
    if (c->bucket < 1.0)
        return false;
    c->bucket -= 1.0;
    return true;
}

/* The message's type as wy_lobby_ws_message_seconds{type} names it. */
static const char *msg_type(const Wyvern__Lobby__ClientMessage *m)
{
    switch (m->body_case) {
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HELLO:
        return "hello";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HEARTBEAT:
        return "heartbeat";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_SET_NICKNAME:
        return "set_nickname";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_GET_PRESENCE:
        return "get_presence";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_LOGOUT:
        return "logout";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_ENTER_GAME:
        return "enter_game";
    default:
        return lobby_chat_type(m->body_case) ? lobby_chat_type(m->body_case) : "unknown";
    }
}

/* Answers a request with a status only, and times it. */
static void refuse(lobby_conn_t *c, const Wyvern__Lobby__ClientMessage *m, uint64_t t0,
                   Wyvern__Lobby__Code code, const char *why)
{
    lobby_reply_status(c, m->request_id, code, why);
    lobby_observe(c, msg_type(m), t0, code);
}

/* A ready session's request; t0 is when its frame arrived. */
static void dispatch(lobby_conn_t *c, const Wyvern__Lobby__ClientMessage *m, uint64_t t0)
{
    uint32_t req = m->request_id;
    switch (m->body_case) {
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HELLO:
        refuse(c, m, t0, WYVERN__LOBBY__CODE__CONFLICT, "already said hello");
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HEARTBEAT:
        on_heartbeat(c, req, t0);
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_SET_NICKNAME:
        on_set_nickname(c, req, m->set_nickname->nickname, t0);
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_GET_PRESENCE:
        on_presence(c, req, m->get_presence, t0);
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_LOGOUT:
        on_logout(c, req, t0);
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_ENTER_GAME:
        lobby_enter_game(c, req, m->enter_game, t0);
        break;
    default:
        if (lobby_chat_type(m->body_case)) {
            lobby_chat_request(c, m, t0);
            break;
        }
        if (lobby_chars_dispatch(c, m, t0)) /* characters and friends: 30..49 */
            break;
        /* A message of a newer protocol (unknown oneof field): answer, keep the session. */
        refuse(c, m, t0, WYVERN__LOBBY__CODE__INVALID, "unknown message");
        break;
    }
}

void lobby_ws_on_message(wy_ws_conn_t *ws, bool is_binary, const uint8_t *data, size_t len,
                         void *ud)
{
    lobby_t *lb = ud;
    lobby_conn_t *c = wy_ws_user(ws);
    if (!c || c->state == LOBBY_ST_CLOSING)
        return;
    uint64_t t0 = wy_now_ns();
    c->last_msg_ms = wy_now_ms();
    if (!rate_ok(c)) {
        wy_metric_inc(lb->m_rate_closed);
        lobby_reply_status(c, 0, WYVERN__LOBBY__CODE__RATE_LIMITED, "too many messages");
        lobby_conn_close(c, LOBBY_CLOSE_RATE, "rate limit exceeded");
        return;
    }
    Wyvern__Lobby__ClientMessage *m = lobby_decode(c, is_binary, data, len);
    if (!m) {
        lobby_observe(c, "undecodable", t0, WYVERN__LOBBY__CODE__INVALID);
        return;
    }
    if (c->state == LOBBY_ST_HELLO) {
        if (m->body_case != WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HELLO) {
            refuse(c, m, t0, WYVERN__LOBBY__CODE__INVALID, "first message must be hello");
            lobby_conn_close(c, LOBBY_CLOSE_PROTOCOL, "first message must be hello");
        } else {
            c->hello_start_ns = t0;
            lobby_hello(c, m->request_id, m->hello);
        }
    } else if (c->state != LOBBY_ST_READY) {
        refuse(c, m, t0, WYVERN__LOBBY__CODE__CONFLICT, "hello still in progress");
    } else {
        dispatch(c, m, t0);
    }
    wyvern__lobby__client_message__free_unpacked(m, NULL);
}
