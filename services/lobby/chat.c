/* wy-lobby chat (chat.h): requests go to wy-chat as one gRPC call each, with the caller
 * taken from the session (account, nickname), never from the client; the answer is the
 * request's response. Messages come back through wy.chat: every lobby instance consumes it
 * (a broadcast row of the daemon's subscriptions) and pushes each event to its own ready
 * sessions among the event's recipients (everyone for world and system), one frame encoded
 * once for all of them. */
#include "chat.h"
#include "chat_mod.h"
#include "state.h"
#include "wire.h"
#include "wy_chatmsg.h"
#include "chat.pb-c.h"

#include <string.h>

#define CHAT_DEADLINE_MS 5000

static const char *const kind_names[] = {"",      "world",   "zone",  "party",
                                         "guild", "whisper", "system"};
static const char *const role_names[] = {"", "member", "officer", "owner"};

int lobby_chat_start(lobby_t *lb, const char **err)
{
    lb->m_chat_delivered =
        wy_metrics_counter("wy_lobby_chat_deliveries_total",
                           "Chat messages queued to this instance's sessions.", NULL);
    lb->m_chat_events = wy_metrics_counter("wy_lobby_chat_events_total",
                                           "wy.chat events handled by this instance.", NULL);
    lb->m_chat_latency = wy_chatmsg_histogram(
        "wy_lobby_chat_delivery_seconds",
        "From wy-chat storing a message (its ts_ms, wall clock) to this instance queueing it to "
        "its recipients (server side of publish-to-deliver).");
    lb->m_chat_consumed = wy_chatmsg_histogram(
        "wy_lobby_chat_consume_seconds",
        "From wy-chat storing a message (its ts_ms, wall clock) to this instance consuming its "
        "wy.chat event, before the fan-out (store, outbox relay, Kafka and the consumer).");
    lb->m_chat_fanout = wy_chatmsg_histogram(
        "wy_lobby_chat_fanout_seconds",
        "Time one wy.chat event takes on the loop to be encoded and queued to this instance's "
        "recipients (every message of the event).");
    if (!*lb->cfg->chat_grpc)
        return WY_OK;
    if (wy_grpc_channel_new(wy_daemon_grpc_rt(lb->d), lb->cfg->chat_grpc, NULL, &lb->chat) !=
        WY_OK) {
        *err = "WY_LOBBY_CHAT_GRPC: cannot open a channel";
        return WY_EINVAL;
    }
    return WY_OK;
}

void lobby_chat_stop(lobby_t *lb)
{
    if (lb->chat) {
        wy_grpc_channel_close(lb->chat);
        lb->chat = NULL;
    }
}

/* ---------------------------------------------------------------- delivery */

/* One frame holding a push of msg, for any number of connections. */
static wy_ws_frame_t *push_frame(Wyvern__Lobby__ChatMessage *msg)
{
    Wyvern__Lobby__ServerMessage sm = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
    sm.body_case = WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_MESSAGE;
    sm.chat_message = (Wyvern__Lobby__ChatMessage *)msg;
    size_t len = wyvern__lobby__server_message__get_packed_size(&sm);
    uint8_t *payload = NULL;
    wy_ws_frame_t *f = wy_ws_frame_alloc(true, len, &payload);
    wyvern__lobby__server_message__pack(&sm, payload);
    return f;
}

static bool deliverable(const lobby_conn_t *c)
{
    return c && c->ws && c->state == LOBBY_ST_READY;
}

static void deliver(void *ctx, const Wyvern__Chat__ChatEvent *ev)
{
    lobby_t *lb = ctx;
    uint64_t t0 = wy_now_ns();
    wy_chatmsg_observe_since_stored(ev, lb->m_chat_consumed);
    size_t cap = ev->n_recipients ? ev->n_recipients : lb->nconns;
    wy_ws_conn_t **to = wy_malloc((cap ? cap : 1) * sizeof *to);
    size_t n = 0;
    if (ev->n_recipients == 0) {
        wy_list_t *pos;
        wy_list_foreach(pos, &lb->conns)
        {
            lobby_conn_t *c = wy_container_of(pos, lobby_conn_t, node);
            if (n < cap && deliverable(c))
                to[n++] = c->ws;
        }
    } else {
        uint64_t pass = ++lb->chat_pass; /* a recipient listed twice gets the message once */
        for (size_t i = 0; i < ev->n_recipients; i++) {
            lobby_conn_t *c = wy_map_get_str(lb->by_account, ev->recipients[i]);
            if (!deliverable(c) || c->chat_pass == pass)
                continue;
            c->chat_pass = pass;
            to[n++] = c->ws;
        }
    }
    wy_metric_add(lb->m_chat_delivered, (double)wy_chatmsg_push(ev, push_frame, to, n));
    wy_free(to);
    wy_metric_observe(lb->m_chat_fanout, (double)(wy_now_ns() - t0) / 1e9);
}

void lobby_chat_on_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env)
{
    lobby_t *lb = lobby_get(d);
    if (lb && !lb->stopping)
        wy_chatmsg_handle(env, deliver, lb, lb->m_chat_events, lb->m_chat_latency);
    wy_daemon_event_done(d, msg, env);
}

/* ---------------------------------------------------------------- requests */

typedef struct {
    lobby_conn_t *c;
    uint32_t req;
    uint64_t t0;
    Wyvern__Lobby__ClientMessage__BodyCase body;
    char channel[136]; /* history: the channel asked for (an empty page names it too) */
    bool forward;
} chat_req_t;

const char *lobby_chat_type(Wyvern__Lobby__ClientMessage__BodyCase body_case)
{
    switch (body_case) {
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_SEND:
        return "chat_send";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_JOIN:
        return "chat_join";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_LEAVE:
        return "chat_leave";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_INVITE:
        return "chat_invite";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_KICK:
        return "chat_kick";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_HISTORY:
        return "chat_history";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_CREATE:
        return "chat_create";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_LIST_CHANNELS:
        return "chat_list_channels";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_DELETE:
        return "chat_delete";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_REPORT:
        return "chat_report";
    default:
        return lobby_chatmod_type(body_case); /* chat_mod.c: moderation, offline acks */
    }
}

static void finish(chat_req_t *r, Wyvern__Lobby__Code code)
{
    lobby_observe(r->c, lobby_chat_type(r->body), r->t0, code);
    lobby_conn_unref(r->c);
    wy_free(r);
}

/* The most bytes of entries one answer may carry: lobby never sends a frame over
 * WY_LOBBY_MAX_MESSAGE (wy_ws refuses it), so a page is cut to fit and says `more`. */
static size_t answer_budget(const lobby_t *lb)
{
    size_t max = (size_t)lb->cfg->max_message;
    return max > 512 ? max - 256 : max / 2;
}

static void reply_history(chat_req_t *r, const Wyvern__Chat__HistoryResponse *h,
                          const char *channel, bool forward)
{
    size_t n = h->n_messages;
    Wyvern__Lobby__ChatMessage *ms = wy_calloc(n ? n : 1, sizeof *ms);
    Wyvern__Lobby__ChatMessage **ptrs = wy_calloc(n ? n : 1, sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        wy_chatmsg_to_client(&ms[i], h->messages[i], channel, h->messages[i]->seq);
        ptrs[i] = &ms[i];
    }
    /* Forward pages keep their oldest messages (the client goes on after the last one),
     * backward pages their newest (it goes on before the first one). */
    size_t budget = answer_budget(r->c->lb), used = 0, keep = 0;
    for (; keep < n; keep++) {
        size_t one =
            wyvern__lobby__chat_message__get_packed_size(ptrs[forward ? keep : n - 1 - keep]) + 6;
        if (used + one > budget)
            break;
        used += one;
    }
    Wyvern__Lobby__ChatHistoryPage p = WYVERN__LOBBY__CHAT_HISTORY_PAGE__INIT;
    p.channel_id = (char *)channel;
    p.messages = forward ? ptrs : ptrs + (n - keep);
    p.n_messages = keep;
    p.last_seq = h->last_seq;
    p.more = h->more || keep < n;
    lobby_reply(r->c, r->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_HISTORY_PAGE, &p.base);
    wy_free(ms);
    wy_free(ptrs);
}

static void channel_to_client(Wyvern__Lobby__ChatChannel *out, const Wyvern__Chat__Channel *ch)
{
    wyvern__lobby__chat_channel__init(out);
    out->channel_id = ch->channel_id;
    out->kind = (char *)(ch->kind < WY_ARRAY_LEN(kind_names) ? kind_names[ch->kind] : "");
    out->name = ch->name;
    out->last_seq = ch->last_seq;
    out->role = (char *)(ch->role < WY_ARRAY_LEN(role_names) ? role_names[ch->role] : "");
}

static void on_chat_reply(int err, int status, const char *message, const ProtobufCMessage *resp,
                          void *arg)
{
    chat_req_t *r = arg;
    lobby_conn_t *c = r->c;
    (void)status;
    if (err != WY_OK) {
        Wyvern__Lobby__Code code = lobby_code(err == WY_ECANCELED ? WY_EUNAVAIL : err);
        lobby_reply_status(c, r->req, code, *message ? message : "chat unavailable, retry");
        finish(r, code);
        return;
    }
    switch (r->body) {
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_SEND: {
        const Wyvern__Chat__SendResponse *s = (const Wyvern__Chat__SendResponse *)resp;
        Wyvern__Lobby__ChatSent out;
        wy_chatmsg_sent_to_client(&out, s);
        lobby_reply(c, r->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_SENT, &out.base);
        break;
    }
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_HISTORY: {
        const Wyvern__Chat__HistoryResponse *h = (const Wyvern__Chat__HistoryResponse *)resp;
        reply_history(r, h, r->channel, r->forward);
        break;
    }
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_CREATE: {
        Wyvern__Lobby__ChatChannel out;
        channel_to_client(&out, (const Wyvern__Chat__Channel *)resp);
        lobby_reply(c, r->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_CHANNEL, &out.base);
        break;
    }
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_LIST_CHANNELS: {
        const Wyvern__Chat__ListChannelsResponse *l =
            (const Wyvern__Chat__ListChannelsResponse *)resp;
        size_t n = l->n_channels, used = 0, budget = answer_budget(c->lb);
        Wyvern__Lobby__ChatChannel *chs = wy_calloc(n ? n : 1, sizeof *chs);
        Wyvern__Lobby__ChatChannel **ptrs = wy_calloc(n ? n : 1, sizeof *ptrs);
        for (size_t i = 0; i < n; i++) {
            channel_to_client(&chs[i], l->channels[i]);
            ptrs[i] = &chs[i];
            used += wyvern__lobby__chat_channel__get_packed_size(&chs[i]) + 6;
            if (used > budget) { /* the oldest ids first; the rest do not fit one frame */
                n = i;
                break;
            }
        }
        Wyvern__Lobby__ChatChannelList out = WYVERN__LOBBY__CHAT_CHANNEL_LIST__INIT;
        out.channels = ptrs;
        out.n_channels = n;
        lobby_reply(c, r->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_CHANNELS, &out.base);
        wy_free(chs);
        wy_free(ptrs);
        break;
    }
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_REPORT: {
        Wyvern__Lobby__ChatDone out = WYVERN__LOBBY__CHAT_DONE__INIT;
        lobby_reply(c, r->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_DONE, &out.base);
        break;
    }
    default: { /* join, leave, invite, kick, delete */
        const Wyvern__Chat__MemberResponse *mr = (const Wyvern__Chat__MemberResponse *)resp;
        Wyvern__Lobby__ChatDone out = WYVERN__LOBBY__CHAT_DONE__INIT;
        out.channel_id = mr->channel_id;
        out.seq = mr->seq;
        lobby_reply(c, r->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_DONE, &out.base);
        break;
    }
    }
    finish(r, WYVERN__LOBBY__CODE__OK);
}

static const char *str(const char *s)
{
    return s ? s : "";
}

void lobby_chat_request(lobby_conn_t *c, const Wyvern__Lobby__ClientMessage *m, uint64_t t0)
{
    lobby_t *lb = c->lb;
    const char *type = lobby_chat_type(m->body_case);
    if (lobby_chatmod_type(m->body_case)) {
        lobby_chatmod_request(c, m, t0);
        return;
    }
    if (!lb->chat) {
        lobby_reply_status(c, m->request_id, WYVERN__LOBBY__CODE__UNAVAILABLE,
                           "chat is not configured on this instance");
        lobby_observe(c, type, t0, WYVERN__LOBBY__CODE__UNAVAILABLE);
        return;
    }
    /* The caller is the session's, whatever the client claims. */
    Wyvern__Chat__Caller who = WYVERN__CHAT__CALLER__INIT;
    who.account_id = c->account;
    who.name = c->nick;
    who.moderator = c->moderator; /* the verified token's "roles" claim (hello.c) */
    const char *path = NULL;
    const ProtobufCMessageDescriptor *resp = &wyvern__chat__member_response__descriptor;
    Wyvern__Chat__SendRequest send = WYVERN__CHAT__SEND_REQUEST__INIT;
    Wyvern__Chat__MemberRequest mem = WYVERN__CHAT__MEMBER_REQUEST__INIT;
    Wyvern__Chat__HistoryRequest hist = WYVERN__CHAT__HISTORY_REQUEST__INIT;
    Wyvern__Chat__CreateRequest create = WYVERN__CHAT__CREATE_REQUEST__INIT;
    Wyvern__Chat__ListChannelsRequest list = WYVERN__CHAT__LIST_CHANNELS_REQUEST__INIT;
    Wyvern__Chat__DeleteRequest del = WYVERN__CHAT__DELETE_REQUEST__INIT;
    Wyvern__Chat__ReportRequest rep = WYVERN__CHAT__REPORT_REQUEST__INIT;
    const ProtobufCMessage *req = &mem.base;
    mem.caller = &who;
    switch (m->body_case) {
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_SEND:
        send.caller = &who;
        send.channel_id = (char *)str(m->chat_send->channel_id);
        send.to_account_id = (char *)str(m->chat_send->to_account_id);
        send.text = (char *)str(m->chat_send->text);
        path = "/wyvern.chat.Chat/Send";
        resp = &wyvern__chat__send_response__descriptor;
        req = &send.base;
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_JOIN:
        mem.channel_id = (char *)str(m->chat_join->channel_id);
        path = "/wyvern.chat.Chat/Join";
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_LEAVE:
        mem.channel_id = (char *)str(m->chat_leave->channel_id);
        path = "/wyvern.chat.Chat/Leave";
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_INVITE:
        mem.channel_id = (char *)str(m->chat_invite->channel_id);
        mem.account_id = (char *)str(m->chat_invite->account_id);
        path = "/wyvern.chat.Chat/Invite";
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_KICK:
        mem.channel_id = (char *)str(m->chat_kick->channel_id);
        mem.account_id = (char *)str(m->chat_kick->account_id);
        path = "/wyvern.chat.Chat/Kick";
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_HISTORY:
        hist.caller = &who;
        hist.channel_id = (char *)str(m->chat_history->channel_id);
        hist.after_seq = m->chat_history->after_seq;
        hist.before_seq = m->chat_history->before_seq;
        hist.limit = m->chat_history->limit;
        hist.forward = m->chat_history->forward;
        path = "/wyvern.chat.Chat/History";
        resp = &wyvern__chat__history_response__descriptor;
        req = &hist.base;
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_CREATE: {
        const char *k = str(m->chat_create->kind);
        create.caller = &who;
        create.kind = strcmp(k, "party") == 0   ? WYVERN__CHAT__CHANNEL_KIND__KIND_PARTY
                      : strcmp(k, "guild") == 0 ? WYVERN__CHAT__CHANNEL_KIND__KIND_GUILD
                                                : WYVERN__CHAT__CHANNEL_KIND__KIND_UNSPECIFIED;
        create.name = (char *)str(m->chat_create->name);
        path = "/wyvern.chat.Chat/Create";
        resp = &wyvern__chat__channel__descriptor;
        req = &create.base;
        break;
    }
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_LIST_CHANNELS:
        list.caller = &who;
        path = "/wyvern.chat.Chat/ListChannels";
        resp = &wyvern__chat__list_channels_response__descriptor;
        req = &list.base;
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_DELETE:
        del.caller = &who;
        del.channel_id = (char *)str(m->chat_delete->channel_id);
        del.seq = m->chat_delete->seq;
        del.reason = (char *)str(m->chat_delete->reason);
        path = "/wyvern.chat.Chat/Delete";
        req = &del.base;
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_REPORT:
        rep.caller = &who;
        rep.channel_id = (char *)str(m->chat_report->channel_id);
        rep.seq = m->chat_report->seq;
        rep.reason = (char *)str(m->chat_report->reason);
        path = "/wyvern.chat.Chat/Report";
        resp = &wyvern__chat__report_response__descriptor;
        req = &rep.base;
        break;
    default:
        return;
    }
    chat_req_t *r = wy_calloc(1, sizeof *r);
    r->c = c;
    r->req = m->request_id;
    r->t0 = t0;
    r->body = m->body_case;
    if (m->body_case == WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_HISTORY) {
        snprintf(r->channel, sizeof r->channel, "%s", str(m->chat_history->channel_id));
        r->forward = m->chat_history->forward;
    }
    int rc = wy_grpc_call(lb->chat, path, req, resp, CHAT_DEADLINE_MS, NULL, 0, on_chat_reply, r);
    if (rc != WY_OK) {
        wy_free(r);
        lobby_reply_status(c, m->request_id, WYVERN__LOBBY__CODE__UNAVAILABLE, "chat busy, retry");
        lobby_observe(c, type, t0, WYVERN__LOBBY__CODE__UNAVAILABLE);
        return;
    }
    lobby_conn_ref(c);
}

/* Offline whispers: chat_mod.c. */
void lobby_chat_session_ready(lobby_conn_t *c)
{
    lobby_chatmod_session_ready(c);
}
