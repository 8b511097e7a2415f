/* wy-lobby chat moderation and offline whispers (chat_mod.h). */
#include "chat_mod.h"
#include "state.h"
#include "wire.h"
#include "wy_chatmsg.h"
#include "chat.pb-c.h"

#include <string.h>

#define MOD_DEADLINE_MS 5000
#define OFFLINE_ROUNDS  10 /* Chat.Offline pages pushed at one login (200 whispers each) */

const char *lobby_chatmod_type(Wyvern__Lobby__ClientMessage__BodyCase body_case)
{
    switch (body_case) {
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_MUTE:
        return "chat_mute";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_REPORTS:
        return "chat_reports";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_RESOLVE_REPORT:
        return "chat_resolve_report";
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_OFFLINE_ACK:
        return "chat_offline_ack";
    default:
        return NULL;
    }
}

typedef struct {
    lobby_conn_t *c;
    uint32_t req;
    uint64_t t0;
    Wyvern__Lobby__ClientMessage__BodyCase body;
} mod_req_t;

static bool ready(const lobby_conn_t *c)
{
    return c->ws && c->state == LOBBY_ST_READY;
}

static void report_to_client(Wyvern__Lobby__ChatReport *out, Wyvern__Lobby__ChatMessage *msg,
                             const Wyvern__Chat__Report *r)
{
    wyvern__lobby__chat_report__init(out);
    out->report_id = r->report_id;
    out->channel_id = r->channel_id;
    out->seq = r->seq;
    out->reporter_id = r->reporter_id;
    out->reason = r->reason;
    out->at_ms = r->at_ms;
    out->resolved_at_ms = r->resolved_at_ms;
    out->resolved_by = r->resolved_by;
    out->resolution = r->resolution;
    if (r->message) {
        wy_chatmsg_to_client(msg, r->message, r->channel_id, r->seq);
        out->message = msg;
    }
}

static void on_mod_reply(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    mod_req_t *r = arg;
    lobby_conn_t *c = r->c;
    Wyvern__Lobby__Code code = WYVERN__LOBBY__CODE__OK;
    (void)status;
    if (err != WY_OK) {
        code = lobby_code(err == WY_ECANCELED ? WY_EUNAVAIL : err);
        lobby_reply_status(c, r->req, code, *message ? message : "chat unavailable, retry");
    } else if (r->body == WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_MUTE) {
        Wyvern__Lobby__ChatMuted out = WYVERN__LOBBY__CHAT_MUTED__INIT;
        out.until_ms = ((const Wyvern__Chat__MuteResponse *)resp)->until_ms;
        lobby_reply(c, r->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_MUTED, &out.base);
    } else if (r->body == WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_REPORTS) {
        const Wyvern__Chat__ListReportsResponse *l =
            (const Wyvern__Chat__ListReportsResponse *)resp;
        size_t n = l->n_reports, used = 0, max = (size_t)c->lb->cfg->max_message;
        size_t budget = max > 512 ? max - 256 : max / 2; /* one frame, as chat.c's pages */
        Wyvern__Lobby__ChatReport *rs = wy_calloc(n ? n : 1, sizeof *rs);
        Wyvern__Lobby__ChatMessage *ms = wy_calloc(n ? n : 1, sizeof *ms);
        Wyvern__Lobby__ChatReport **ptrs = wy_calloc(n ? n : 1, sizeof *ptrs);
        size_t keep = 0;
        for (; keep < n; keep++) {
            report_to_client(&rs[keep], &ms[keep], l->reports[keep]);
            size_t one = wyvern__lobby__chat_report__get_packed_size(&rs[keep]) + 6;
            if (used + one > budget)
                break;
            used += one;
            ptrs[keep] = &rs[keep];
        }
        Wyvern__Lobby__ChatReportList out = WYVERN__LOBBY__CHAT_REPORT_LIST__INIT;
        out.reports = ptrs;
        out.n_reports = keep;
        out.more = l->more || keep < n;
        lobby_reply(c, r->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_REPORT_LIST, &out.base);
        wy_free(rs);
        wy_free(ms);
        wy_free(ptrs);
    } else { /* resolve, offline ack */
        Wyvern__Lobby__ChatDone out = WYVERN__LOBBY__CHAT_DONE__INIT;
        lobby_reply(c, r->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_DONE, &out.base);
    }
    lobby_observe(c, lobby_chatmod_type(r->body), r->t0, code);
    lobby_conn_unref(c);
    wy_free(r);
}

static const char *str(const char *s)
{
    return s ? s : "";
}

void lobby_chatmod_request(lobby_conn_t *c, const Wyvern__Lobby__ClientMessage *m, uint64_t t0)
{
    lobby_t *lb = c->lb;
    const char *type = lobby_chatmod_type(m->body_case);
    Wyvern__Lobby__Code refuse = WYVERN__LOBBY__CODE__OK;
    const char *why = NULL;
    /* A session without the token's moderator role is still asked about at wy-chat: chat
     * decides (its WY_CHAT_MODERATORS accounts are moderators whatever their token says) and
     * refuses the others (FORBIDDEN). */
    if (!lb->chat) {
        refuse = WYVERN__LOBBY__CODE__UNAVAILABLE;
        why = "chat is not configured on this instance";
    }
    uint64_t up_to = 0;
    if (m->body_case == WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_OFFLINE_ACK && !why) {
        /* Only what this session was pushed: a client cannot drop whispers it never saw. */
        up_to = m->chat_offline_ack->up_to_id;
        if (up_to > c->offline_pushed)
            up_to = c->offline_pushed;
        if (up_to == 0) {
            Wyvern__Lobby__ChatDone out = WYVERN__LOBBY__CHAT_DONE__INIT;
            lobby_reply(c, m->request_id, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_DONE, &out.base);
            lobby_observe(c, type, t0, WYVERN__LOBBY__CODE__OK);
            return;
        }
    }
    if (why) {
        lobby_reply_status(c, m->request_id, refuse, why);
        lobby_observe(c, type, t0, refuse);
        return;
    }
    Wyvern__Chat__Caller who = WYVERN__CHAT__CALLER__INIT;
    who.account_id = c->account;
    who.name = c->nick;
    who.moderator = c->moderator;
    Wyvern__Chat__MuteRequest mute = WYVERN__CHAT__MUTE_REQUEST__INIT;
    Wyvern__Chat__ListReportsRequest list = WYVERN__CHAT__LIST_REPORTS_REQUEST__INIT;
    Wyvern__Chat__ResolveReportRequest res = WYVERN__CHAT__RESOLVE_REPORT_REQUEST__INIT;
    Wyvern__Chat__OfflineAckRequest ack = WYVERN__CHAT__OFFLINE_ACK_REQUEST__INIT;
    const char *path = NULL;
    const ProtobufCMessage *req = NULL;
    const ProtobufCMessageDescriptor *resp = NULL;
    switch (m->body_case) {
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_MUTE:
        mute.caller = &who;
        mute.account_id = (char *)str(m->chat_mute->account_id);
        mute.channel_id = (char *)str(m->chat_mute->channel_id);
        mute.duration_ms = m->chat_mute->duration_ms;
        mute.reason = (char *)str(m->chat_mute->reason);
        path = "/wyvern.chat.Chat/Mute";
        req = &mute.base;
        resp = &wyvern__chat__mute_response__descriptor;
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_REPORTS:
        list.caller = &who;
        list.after_id = m->chat_reports->after_id;
        list.limit = m->chat_reports->limit;
        list.resolved = m->chat_reports->resolved;
        path = "/wyvern.chat.Chat/ListReports";
        req = &list.base;
        resp = &wyvern__chat__list_reports_response__descriptor;
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_RESOLVE_REPORT:
        res.caller = &who;
        res.report_id = m->chat_resolve_report->report_id;
        res.resolution = (char *)str(m->chat_resolve_report->resolution);
        path = "/wyvern.chat.Chat/ResolveReport";
        req = &res.base;
        resp = &wyvern__chat__resolve_report_response__descriptor;
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_OFFLINE_ACK:
        ack.account_id = c->account;
        ack.up_to_id = up_to;
        path = "/wyvern.chat.Chat/OfflineAck";
        req = &ack.base;
        resp = &wyvern__chat__offline_ack_response__descriptor;
        break;
    default:
        return;
    }
    mod_req_t *r = wy_calloc(1, sizeof *r);
    r->c = c;
    r->req = m->request_id;
    r->t0 = t0;
    r->body = m->body_case;
    if (wy_grpc_call(lb->chat, path, req, resp, MOD_DEADLINE_MS, NULL, 0, on_mod_reply, r) !=
        WY_OK) {
        wy_free(r);
        lobby_reply_status(c, m->request_id, WYVERN__LOBBY__CODE__UNAVAILABLE, "chat busy, retry");
        lobby_observe(c, type, t0, WYVERN__LOBBY__CODE__UNAVAILABLE);
        return;
    }
    lobby_conn_ref(c);
}

/* ---------------------------------------------------------------- offline whispers */

typedef struct {
    lobby_conn_t *c;
    int round;
    uint64_t after; /* the last offline id pushed */
} offline_req_t;

static int offline_call(offline_req_t *o);

static void on_offline(int err, int status, const char *message, const ProtobufCMessage *resp,
                       void *arg)
{
    offline_req_t *o = arg;
    lobby_conn_t *c = o->c;
    (void)status;
    if (err != WY_OK) {
        wy_log_warn("offline whispers not fetched", "account", c->account, "error", message, NULL);
    } else if (ready(c)) {
        const Wyvern__Chat__OfflineResponse *r = (const Wyvern__Chat__OfflineResponse *)resp;
        size_t n = r->n_messages < r->n_ids ? r->n_messages : r->n_ids;
        for (size_t i = 0; i < n; i++) {
            Wyvern__Lobby__ChatMessage cm;
            wy_chatmsg_to_client(&cm, r->messages[i], r->messages[i]->channel_id,
                                 r->messages[i]->seq);
            cm.offline = true;
            cm.offline_id = r->ids[i];
            lobby_push(c, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_MESSAGE, &cm.base);
            if (r->ids[i] > o->after)
                o->after = r->ids[i];
        }
        if (o->after > c->offline_pushed)
            c->offline_pushed = o->after;
        wy_metric_add(c->lb->m_chat_delivered, (double)n);
        if (r->more && n > 0 && ++o->round < OFFLINE_ROUNDS && offline_call(o) == WY_OK)
            return; /* the next page keeps o and its reference */
    }
    lobby_conn_unref(c);
    wy_free(o);
}

static int offline_call(offline_req_t *o)
{
    if (!o->c->lb->chat) /* stopping: the channel is closed */
        return WY_ESTATE;
    Wyvern__Chat__OfflineRequest req = WYVERN__CHAT__OFFLINE_REQUEST__INIT;
    req.account_id = o->c->account;
    req.after_id = o->after;
    return wy_grpc_call(o->c->lb->chat, "/wyvern.chat.Chat/Offline", &req.base,
                        &wyvern__chat__offline_response__descriptor, MOD_DEADLINE_MS, NULL, 0,
                        on_offline, o);
}

void lobby_chatmod_session_ready(lobby_conn_t *c)
{
    if (!c->lb->chat)
        return;
    offline_req_t *o = wy_calloc(1, sizeof *o);
    o->c = c;
    if (offline_call(o) != WY_OK) {
        wy_free(o);
        return;
    }
    lobby_conn_ref(c);
}
