/* wy-game chat: sending and delivery. Sending: a joined player's chat_send becomes one
 * Chat.Send call to wy-chat (WY_GAME_CHAT_GRPC) with the join ticket's account as the caller
 * and its character's name (the ticket's "name") as the sender name, never a moderator;
 * answered chat_sent or chat_error. At most GAME_CHAT_INFLIGHT per connection wait for their
 * answer (more: RATE_LIMITED); chat's own per-account rate limit applies as through lobby.
 * Delivery: every game instance consumes wy.chat (a broadcast row of the daemon's
 * subscriptions, game.c) and pushes each message to its own joined players among the
 * recipients, one frame encoded once for all of them (wy_ws_broadcast). Recipients: a zone
 * channel "zone:<instance>" reaches the players of that zone instance on this game (what the
 * partition seats here, whatever the event lists); party, guild and whisper the players whose
 * account the event lists; world and system (no recipients) every joined player. Loop thread
 * only (the Kafka handler runs on the loop; partitions are never involved). */
#include "game.h"
#include "wy_chatmsg.h"
#include "wy_log.h"

#include <string.h>

#define GAME_CHAT_INFLIGHT    8 /* Chat.Send calls one connection may have waiting */
#define GAME_CHAT_DEADLINE_MS 5000

void game_chat_start(game_t *g)
{
    g->m_chat_sent =
        wy_metrics_counter("wy_game_chat_sends_total",
                           "Players' chat_send answered chat_sent (stored by wy-chat).", NULL);
    g->m_chat_refused =
        wy_metrics_counter("wy_game_chat_sends_refused_total",
                           "Players' chat_send answered chat_error (refused by wy-chat, too many "
                           "waiting, chat unreachable).",
                           NULL);
    if (*g->cfg->chat_grpc &&
        wy_grpc_channel_new(wy_daemon_grpc_rt(g->d), g->cfg->chat_grpc, NULL, &g->chat) != WY_OK)
        wy_log_error("WY_GAME_CHAT_GRPC: cannot open a channel; chat_send answers UNAVAILABLE",
                     "chat", g->cfg->chat_grpc, NULL);
    g->m_chat_events = wy_metrics_counter("wy_game_chat_events_total",
                                          "wy.chat events handled by this instance.", NULL);
    g->m_chat_delivered = wy_metrics_counter(
        "wy_game_chat_deliveries_total", "Chat messages queued to this instance's players.", NULL);
    g->m_chat_latency = wy_metrics_histogram(
        "wy_game_chat_delivery_seconds",
        "From wy-chat storing a message (its ts_ms, wall clock) to this instance queueing it to "
        "its players (server side of publish-to-deliver).",
        NULL, wy_metrics_latency_buckets, wy_metrics_latency_nbuckets);
}

/* One frame holding a push of msg, for any number of connections. */
static wy_ws_frame_t *push_frame(Wyvern__Lobby__ChatMessage *msg)
{
    Wyvern__Game__ServerMessage sm = WYVERN__GAME__SERVER_MESSAGE__INIT;
    sm.body_case = WYVERN__GAME__SERVER_MESSAGE__BODY_CHAT_MESSAGE;
    sm.chat_message = msg;
    size_t len = wyvern__game__server_message__get_packed_size(&sm);
    uint8_t *payload = NULL;
    wy_ws_frame_t *f = wy_ws_frame_alloc(true, len, &payload);
    wyvern__game__server_message__pack(&sm, payload);
    return f;
}

/* Whether player p (joined, connected) is a recipient of ev. zone: the instance of a zone
 * channel; accounts: the event's recipients (NULL: everyone). */
static bool wanted(const game_player_t *p, const char *zone, const wy_map_t *accounts)
{
    if (!p->conn || !p->conn->ws)
        return false;
    if (zone)
        return strcmp(p->instance, zone) == 0;
    return !accounts || wy_map_get_str(accounts, p->account) != NULL;
}

static void deliver(void *ctx, const Wyvern__Chat__ChatEvent *ev)
{
    game_t *g = ctx;
    size_t cap = wy_map_count(g->players);
    if (!cap)
        return;
    const char *zone = wy_chatmsg_zone(ev->channel_id);
    wy_map_t *accounts = NULL;
    if (!zone && ev->n_recipients) {
        accounts = wy_map_new(0); /* bounded by the event (chat's CHAT_MEMBERS_MAX) */
        for (size_t i = 0; i < ev->n_recipients; i++)
            (void)wy_map_put_str(accounts, ev->recipients[i], ev->recipients[i]);
    }
    wy_ws_conn_t **to = wy_malloc(cap * sizeof *to);
    size_t n = 0;
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->players);
    while (wy_map_next(&it) && n < cap) { /* one entry per character: no duplicate */
        const game_player_t *p = it.val;
        if (wanted(p, zone, accounts))
            to[n++] = p->conn->ws;
    }
    wy_metric_add(g->m_chat_delivered, (double)wy_chatmsg_push(ev, push_frame, to, n));
    wy_free(to);
    wy_map_free(accounts);
}

void game_chat_on_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env)
{
    game_t *g = game_of(d);
    if (g && !g->stopping)
        wy_chatmsg_handle(env, deliver, g, g->m_chat_events, g->m_chat_latency);
    wy_daemon_event_done(d, msg, env);
}

/* ---------------------------------------------------------------- sending */

typedef struct {
    wy_list_t node; /* in its connection's chat_sends */
    game_conn_t *c; /* NULL once the connection closed */
    game_t *g;
    uint32_t req;
} send_op_t;

static Wyvern__Lobby__Code chat_code(int err)
{
    switch (err) {
    case WY_EINVAL:
        return WYVERN__LOBBY__CODE__INVALID;
    case WY_ENOTFOUND:
        return WYVERN__LOBBY__CODE__NOT_FOUND;
    case WY_EPERM:
        return WYVERN__LOBBY__CODE__FORBIDDEN;
    case WY_ELIMIT:
        return WYVERN__LOBBY__CODE__RATE_LIMITED;
    case WY_ETOOBIG:
        return WYVERN__LOBBY__CODE__TOO_BIG;
    case WY_ESTATE:
        return WYVERN__LOBBY__CODE__CONFLICT;
    case WY_EEXIST:
        return WYVERN__LOBBY__CODE__ALREADY_EXISTS;
    default:
        return WYVERN__LOBBY__CODE__UNAVAILABLE;
    }
}

static void send_refusal(game_conn_t *c, uint32_t req, Wyvern__Lobby__Code code, const char *why)
{
    Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
    st.code = code;
    st.message = (char *)why;
    Wyvern__Game__ServerMessage m = WYVERN__GAME__SERVER_MESSAGE__INIT;
    m.request_id = req;
    m.body_case = WYVERN__GAME__SERVER_MESSAGE__BODY_CHAT_ERROR;
    m.chat_error = &st;
    wy_metric_inc(c->g->m_chat_refused);
    game_send(c, &m);
}

static void on_sent(int err, int status, const char *message, const ProtobufCMessage *resp,
                    void *arg)
{
    send_op_t *op = arg;
    game_conn_t *c = op->c;
    (void)status;
    op->g->chat_calls--;
    if (c) {
        wy_list_remove(&op->node);
        c->nchat_sends--;
        if (err != WY_OK) {
            send_refusal(c, op->req, chat_code(err == WY_ECANCELED ? WY_EUNAVAIL : err),
                         message && *message ? message : "chat unavailable, retry");
        } else {
            const Wyvern__Chat__SendResponse *s = (const Wyvern__Chat__SendResponse *)resp;
            Wyvern__Lobby__ChatSent out;
            wy_chatmsg_sent_to_client(&out, s);
            Wyvern__Game__ServerMessage m = WYVERN__GAME__SERVER_MESSAGE__INIT;
            m.request_id = op->req;
            m.body_case = WYVERN__GAME__SERVER_MESSAGE__BODY_CHAT_SENT;
            m.chat_sent = &out;
            wy_metric_inc(c->g->m_chat_sent);
            game_send(c, &m);
        }
    }
    wy_free(op);
}

void game_chat_send(game_conn_t *c, uint32_t request_id, const Wyvern__Lobby__ChatSend *s)
{
    game_t *g = c->g;
    if (!g->chat || g->stopping) {
        send_refusal(c, request_id, WYVERN__LOBBY__CODE__UNAVAILABLE,
                     "chat is not available on this game instance");
        return;
    }
    if (c->nchat_sends >= GAME_CHAT_INFLIGHT) {
        send_refusal(c, request_id, WYVERN__LOBBY__CODE__RATE_LIMITED,
                     "too many chat messages waiting for their answer");
        return;
    }
    /* The caller is the ticket's account, whatever the client sends. */
    Wyvern__Chat__Caller who = WYVERN__CHAT__CALLER__INIT;
    who.account_id = c->player->account;
    who.name = c->player->name; /* the character's, from the ticket lobby signed */
    Wyvern__Chat__SendRequest req = WYVERN__CHAT__SEND_REQUEST__INIT;
    req.caller = &who;
    req.channel_id = s->channel_id ? s->channel_id : "";
    req.to_account_id = s->to_account_id ? s->to_account_id : "";
    req.text = s->text ? s->text : "";
    send_op_t *op = wy_calloc(1, sizeof *op);
    op->c = c;
    op->g = g;
    op->req = request_id;
    if (wy_grpc_call(g->chat, "/wyvern.chat.Chat/Send", &req.base,
                     &wyvern__chat__send_response__descriptor, GAME_CHAT_DEADLINE_MS, NULL, 0,
                     on_sent, op) != WY_OK) {
        wy_free(op);
        send_refusal(c, request_id, WYVERN__LOBBY__CODE__UNAVAILABLE, "chat busy, retry");
        return;
    }
    wy_list_push_front(&c->chat_sends, &op->node);
    c->nchat_sends++;
    g->chat_calls++;
}

void game_chat_conn_closed(game_conn_t *c)
{
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &c->chat_sends)
    {
        send_op_t *op = wy_container_of(pos, send_op_t, node);
        wy_list_remove(&op->node);
        op->c = NULL;
    }
    c->nchat_sends = 0;
}

void game_chat_stop(game_t *g)
{
    if (g->chat) {
        wy_grpc_channel_close(g->chat);
        g->chat = NULL;
    }
}
