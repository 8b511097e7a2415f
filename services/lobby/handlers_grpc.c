/* wy-lobby gRPC API wyvern.lobby.Lobby: Kick (fence + tell the owning instance),
 * GetSession (the account's live session from Redis) and Notify. Handlers get the daemon,
 * not the lobby state, so a call handed to the loop late in the stop finds it gone
 * (lobby_get NULL) instead of freed. */
#include "handlers_grpc.h"
#include "relay.h"
#include "state.h"
#include "store.h"

#include <string.h>

/* The lobby state for a handler, or NULL after answering UNAVAILABLE (state freed). */
static lobby_t *lobby_or_reply(wy_grpc_call_id_t call, void *daemon)
{
    lobby_t *lb = lobby_get(daemon);
    if (!lb)
        wy_grpc_reply_error(call, WY_EUNAVAIL, "lobby is stopping");
    return lb;
}

/* Answers a failed session lookup (no live session, or the store is down);
 * returns true when it did, false when status is WY_OK. */
static bool reply_lookup_error(wy_grpc_call_id_t call, int status)
{
    if (status == WY_ENOTFOUND)
        wy_grpc_reply_error(call, WY_ENOTFOUND, "account has no live session");
    else if (status != WY_OK)
        wy_grpc_reply_error(call, status == WY_ECANCELED ? WY_EUNAVAIL : status,
                            "session store unavailable");
    return status != WY_OK;
}

/* Answers a lookup that could not start (bad account id, store down). */
static void reply_start_error(wy_grpc_call_id_t call, int rc)
{
    wy_grpc_reply_error(
        call, rc, rc == WY_EINVAL ? "account_id: 1 to 64 characters" : "session store unavailable");
}

static void kick_done(int status, const lobby_sess_info_t *s, void *ud)
{
    wy_grpc_call_id_t call = wy_grpc_call_from_ud(ud);
    if (reply_lookup_error(call, status))
        return;
    Wyvern__Lobby__KickResponse r = WYVERN__LOBBY__KICK_RESPONSE__INIT;
    r.session_id = (char *)s->sid;
    r.instance = (char *)s->instance;
    wy_log_info("session kicked (Lobby.Kick)", "session", s->sid, "account", s->account, NULL);
    wy_grpc_reply(call, &r.base);
}

static void handle_kick(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    lobby_t *lb = lobby_or_reply(call, arg);
    if (!lb)
        return;
    const Wyvern__Lobby__KickRequest *k = (const Wyvern__Lobby__KickRequest *)req;
    if (strlen(k->reason) > LOBBY_REASON_MAX) {
        wy_grpc_reply_error(call, WY_EINVAL, "reason is longer than 120 bytes");
        return;
    }
    int rc = lobby_session_fence(lb, k->account_id, k->reason, kick_done, wy_grpc_call_to_ud(call));
    if (rc != WY_OK)
        reply_start_error(call, rc);
}

static void get_done(int status, const lobby_sess_info_t *s, void *ud)
{
    wy_grpc_call_id_t call = wy_grpc_call_from_ud(ud);
    if (reply_lookup_error(call, status))
        return;
    Wyvern__Lobby__SessionInfo r = WYVERN__LOBBY__SESSION_INFO__INIT;
    r.session_id = (char *)s->sid;
    r.account_id = (char *)s->account;
    r.instance = (char *)s->instance;
    r.connection = (char *)s->conn;
    r.created_ms = s->created;
    r.last_seen_ms = s->seen;
    r.state = (char *)s->state;
    r.epoch = s->epoch;
    r.nickname = (char *)s->nick;
    wy_grpc_reply(call, &r.base);
}

static void handle_get(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    lobby_t *lb = lobby_or_reply(call, arg);
    if (!lb)
        return;
    const Wyvern__Lobby__GetSessionRequest *g = (const Wyvern__Lobby__GetSessionRequest *)req;
    int rc = lobby_session_lookup(lb, g->account_id, get_done, wy_grpc_call_to_ud(call));
    if (rc != WY_OK)
        reply_start_error(call, rc);
}

static void handle_notify(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    lobby_t *lb = lobby_or_reply(call, arg);
    if (!lb)
        return;
    const Wyvern__Lobby__NotifyNotice *n = (const Wyvern__Lobby__NotifyNotice *)req;
    if (strlen(n->account_id) > LOBBY_ID_MAX || strlen(n->kind) > 32 || !*n->text ||
        strlen(n->text) > 2048) {
        wy_grpc_reply_error(call, WY_EINVAL,
                            "account_id <= 64 bytes, kind <= 32 bytes, text 1..2048 bytes");
        return;
    }
    size_t len = wyvern__lobby__notify_notice__get_packed_size(n);
    uint8_t *buf = wy_malloc(len ? len : 1);
    wyvern__lobby__notify_notice__pack(n, buf);
    char id[37];
    int rc = lobby_relay_publish(lb, "wy.notify", n->account_id, "notify.notice", buf, len,
                                 (uint64_t)lb->cfg->notice_ttl_ms, id);
    wy_free(buf);
    if (rc != WY_OK) {
        wy_grpc_reply_error(call, rc, "cannot publish the notice");
        return;
    }
    Wyvern__Lobby__NotifyResponse r = WYVERN__LOBBY__NOTIFY_RESPONSE__INIT;
    r.event_id = id;
    wy_grpc_reply(call, &r.base);
}

int lobby_grpc_register(lobby_t *lb, const char **err)
{
    wy_grpc_server_t *srv = wy_daemon_grpc(lb->d);
    if (wy_grpc_server_register(srv, "/wyvern.lobby.Lobby/Kick",
                                &wyvern__lobby__kick_request__descriptor, handle_kick,
                                lb->d) != WY_OK ||
        wy_grpc_server_register(srv, "/wyvern.lobby.Lobby/GetSession",
                                &wyvern__lobby__get_session_request__descriptor, handle_get,
                                lb->d) != WY_OK ||
        wy_grpc_server_register(srv, "/wyvern.lobby.Lobby/Notify",
                                &wyvern__lobby__notify_notice__descriptor, handle_notify,
                                lb->d) != WY_OK) {
        *err = "cannot register the wyvern.lobby.Lobby methods";
        return WY_EINTERNAL;
    }
    return WY_OK;
}
