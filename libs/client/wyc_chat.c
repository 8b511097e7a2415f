/* wyc chat: chat requests over the lobby session (wyc.h "chat") and the ordered delivery of
 * followed channels: per channel the last seq emitted; a push at or below it is dropped, the
 * next one emitted, one further on starts a history fetch (forward from the last seq) during
 * which that channel's pushes are held back as "seen up to" marks, and the fetch goes on until
 * it reaches them. A welcome after a reconnect fetches every followed channel the same way.
 * Loop thread only, like the rest of the library. */
#include "wyc_int.h"

#include <string.h>

typedef struct {
    char id[WYC_CHAT_CHANNEL_MAX];
    uint64_t last; /* last seq emitted */
    uint64_t seen; /* highest seq pushed while fetching (or that showed a gap) */
    bool fetching;
    uint32_t gen; /* bumped by wyc_chat_follow: a late page of an old position is dropped */
} follow_t;

struct wyc_chat_state {
    follow_t f[WYC_CHAT_FOLLOW_MAX];
    size_t n;
    /* Offline whispers: the highest offline_id handed to the application, and the ack in
     * flight (one at a time; a later id goes in the next one). */
    uint64_t off_want;
    bool off_busy;
};

static struct wyc_chat_state *chat_state(wyc_client_t *c)
{
    if (!c->chat)
        c->chat = wy_calloc(1, sizeof *c->chat);
    return c->chat;
}

/* ------------------------------------------------------------------ conversions */

/* snprintf(dst, cap, "%s", src) without the format parsing: every push copies six strings. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

void wyc__chat_copy(wyc_chat_message_t *o, const Wyvern__Lobby__ChatMessage *m)
{
    memset(o, 0, sizeof *o);
    copy_str(o->channel_id, sizeof o->channel_id, m->channel_id);
    o->seq = m->seq;
    copy_str(o->type, sizeof o->type, m->type);
    copy_str(o->sender_id, sizeof o->sender_id, m->sender_id);
    copy_str(o->sender_name, sizeof o->sender_name, m->sender_name);
    copy_str(o->text, sizeof o->text, m->text);
    o->ts_ms = m->ts_ms;
    o->deleted = m->deleted;
    o->target_seq = m->target_seq;
    copy_str(o->subject_id, sizeof o->subject_id, m->subject_id);
    o->offline = m->offline;
}

void wyc__chat_sent_copy(wyc_chat_result_t *o, const Wyvern__Lobby__ChatSent *s)
{
    snprintf(o->channel_id, sizeof o->channel_id, "%s", s->channel_id);
    o->seq = s->seq;
    snprintf(o->text, sizeof o->text, "%s", s->text);
    o->masked = s->masked;
    o->offline = s->offline;
}

static void emit_msg(wyc_client_t *c, const Wyvern__Lobby__ChatMessage *m)
{
    wyc_event_t *ev = wy_calloc(1, sizeof *ev); /* ~2.5 KiB: not on the stack of a callback */
    ev->type = WYC_EV_CHAT;
    wyc__chat_copy(&ev->chat, m);
    wyc__emit(c, ev);
    wy_free(ev);
}

/* The status of a response as a wyc_error_t (e already says OK or what failed). */
static bool answered_ok(const wyc_error_t *e, const Wyvern__Lobby__ServerMessage *m,
                        Wyvern__Lobby__ServerMessage__BodyCase want)
{
    return e->code == WY_OK && m && m->body_case == want;
}

/* Whether m is the answer wanted (*err = *e); otherwise *err says why: the request's error, or
 * an unexpected answer to what. */
static bool answer_is(const wyc_error_t *e, const Wyvern__Lobby__ServerMessage *m,
                      Wyvern__Lobby__ServerMessage__BodyCase want, const char *what,
                      wyc_error_t *err)
{
    *err = *e;
    if (answered_ok(e, m, want))
        return true;
    if (e->code == WY_OK)
        wyc__err_set(err, WY_EIO, WYC_SRC_PROTOCOL, "unexpected answer to %s", what);
    return false;
}

/* ------------------------------------------------------------------ ordered delivery */

static follow_t *find(const wyc_client_t *c, const char *id)
{
    struct wyc_chat_state *s = c->chat;
    for (size_t i = 0; s && i < s->n; i++)
        if (strcmp(s->f[i].id, id) == 0)
            return &s->f[i];
    return NULL;
}

typedef struct {
    char id[WYC_CHAT_CHANNEL_MAX];
    uint32_t gen;
} fetch_t;

static void fetch(wyc_client_t *c, follow_t *f);

static void on_fetch(wyc_client_t *c, const wyc_error_t *e, const Wyvern__Lobby__ServerMessage *m,
                     void *ud)
{
    fetch_t ft = *(fetch_t *)ud;
    wy_free(ud);
    follow_t *f = find(c, ft.id);
    if (!f || f->gen != ft.gen)
        return; /* unfollowed or moved meanwhile */
    if (!answered_ok(e, m, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_HISTORY_PAGE)) {
        f->fetching = false; /* the next push or welcome tries again */
        return;
    }
    const Wyvern__Lobby__ChatHistoryPage *p = m->chat_history_page;
    for (size_t i = 0; i < p->n_messages; i++) {
        const Wyvern__Lobby__ChatMessage *x = p->messages[i];
        if (x->seq != f->last + 1)
            continue; /* below: already emitted; above: a message gone by retention */
        f->last = x->seq;
        emit_msg(c, x);
        if (!(f = find(c, ft.id)) || f->gen != ft.gen)
            return; /* the event handler moved it */
    }
    /* Messages past the retention: go on from the first one kept. */
    if (p->n_messages && p->messages[0]->seq > f->last + 1 && f->last < p->messages[0]->seq) {
        f->last = p->messages[0]->seq - 1;
        fetch(c, f);
        return;
    }
    if (p->more || f->last < f->seen)
        fetch(c, f);
    else
        f->fetching = false;
}

static void fetch(wyc_client_t *c, follow_t *f)
{
    Wyvern__Lobby__ChatHistory h = WYVERN__LOBBY__CHAT_HISTORY__INIT;
    h.channel_id = f->id;
    h.after_seq = f->last;
    h.forward = true;
    h.limit = 200;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_HISTORY;
    m.chat_history = &h;
    fetch_t *ft = wy_calloc(1, sizeof *ft);
    snprintf(ft->id, sizeof ft->id, "%s", f->id);
    ft->gen = f->gen;
    f->fetching = true;
    if (wyc__lobby_request(c, &m, on_fetch, ft) != WY_OK) {
        wy_free(ft);
        f->fetching = false; /* not connected or busy: the next push or welcome retries */
    }
}

static void offline_ack(wyc_client_t *c);

static void on_offline_ack(wyc_client_t *c, const wyc_error_t *e,
                           const Wyvern__Lobby__ServerMessage *m, void *ud)
{
    uint64_t sent = (uint64_t)(uintptr_t)ud;
    (void)m;
    struct wyc_chat_state *s = chat_state(c);
    s->off_busy = false;
    /* Failed: the whispers stay with the server and come again at the next login. */
    if (e->code == WY_OK && s->off_want > sent)
        offline_ack(c);
}

/* Tells lobby the offline whispers up to off_want were received: wy-chat removes them. */
static void offline_ack(wyc_client_t *c)
{
    struct wyc_chat_state *s = chat_state(c);
    if (s->off_busy || !s->off_want)
        return;
    Wyvern__Lobby__ChatOfflineAck a = WYVERN__LOBBY__CHAT_OFFLINE_ACK__INIT;
    a.up_to_id = s->off_want;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_OFFLINE_ACK;
    m.chat_offline_ack = &a;
    if (wyc__lobby_request(c, &m, on_offline_ack, (void *)(uintptr_t)s->off_want) == WY_OK)
        s->off_busy = true;
}

static void chat_push(wyc_client_t *c, const Wyvern__Lobby__ChatMessage *m);

void wyc__chat_push(wyc_client_t *c, const Wyvern__Lobby__ChatMessage *m)
{
    uint64_t off = m->offline ? m->offline_id : 0;
    chat_push(c, m);
    if (off) { /* handed over (or a repeat dropped, or held for the fetch): acknowledge */
        struct wyc_chat_state *s = chat_state(c);
        if (off > s->off_want)
            s->off_want = off;
        offline_ack(c);
    }
}

static void chat_push(wyc_client_t *c, const Wyvern__Lobby__ChatMessage *m)
{
    follow_t *f = find(c, m->channel_id);
    if (!f) {
        emit_msg(c, m);
        return;
    }
    if (f->fetching) {
        if (m->seq > f->seen)
            f->seen = m->seq; /* the fetch goes on until it has this one */
        return;
    }
    if (m->seq <= f->last)
        return; /* a duplicate */
    if (m->seq == f->last + 1) {
        f->last = m->seq;
        emit_msg(c, m);
        return;
    }
    f->seen = m->seq;
    fetch(c, f);
}

void wyc__chat_welcome(wyc_client_t *c)
{
    struct wyc_chat_state *s = c->chat;
    if (s) { /* a new session: its lobby pushes the unacknowledged offline whispers again */
        s->off_want = 0;
        s->off_busy = false;
    }
    if (!s || c->welcome.reconnects == 0)
        return;
    for (size_t i = 0; i < s->n; i++) {
        s->f[i].fetching = false; /* a fetch of the old connection failed with it */
        fetch(c, &s->f[i]);
    }
}

void wyc__chat_free(wyc_client_t *c)
{
    wy_free(c->chat);
    c->chat = NULL;
}

int wyc_chat_follow(wyc_client_t *c, const char *channel_id, uint64_t last_seq)
{
    if (!channel_id || !*channel_id || strlen(channel_id) >= WYC_CHAT_CHANNEL_MAX)
        return WY_EINVAL;
    chat_state(c);
    follow_t *f = find(c, channel_id);
    if (!f) {
        if (c->chat->n == WYC_CHAT_FOLLOW_MAX)
            return WY_ELIMIT;
        f = &c->chat->f[c->chat->n++];
        snprintf(f->id, sizeof f->id, "%s", channel_id);
    }
    f->last = f->seen = last_seq;
    f->fetching = false;
    f->gen++;
    return WY_OK;
}

uint64_t wyc_chat_last_seq(const wyc_client_t *c, const char *channel_id)
{
    const follow_t *f = channel_id ? find(c, channel_id) : NULL;
    return f ? f->last : 0;
}

/* ------------------------------------------------------------------ requests */

typedef struct {
    void *cb;
    void *ud;
} req_t;

static void on_result(wyc_client_t *c, const wyc_error_t *e, const Wyvern__Lobby__ServerMessage *m,
                      void *ud)
{
    req_t r = *(req_t *)ud;
    wy_free(ud);
    wyc_chat_result_t *res = wy_calloc(1, sizeof *res);
    wyc_error_t err = *e;
    if (e->code == WY_OK && m) {
        if (m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_SENT) {
            wyc__chat_sent_copy(res, m->chat_sent);
        } else if (m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_CHANNEL) {
            snprintf(res->channel_id, sizeof res->channel_id, "%s", m->chat_channel->channel_id);
            res->seq = m->chat_channel->last_seq;
        } else if (m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_DONE) {
            snprintf(res->channel_id, sizeof res->channel_id, "%s", m->chat_done->channel_id);
            res->seq = m->chat_done->seq;
        } else if (m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_MUTED) {
            res->until_ms = m->chat_muted->until_ms;
        } else {
            wyc__err_set(&err, WY_EIO, WYC_SRC_PROTOCOL, "unexpected answer to a chat request");
        }
    }
    ((wyc_chat_cb)r.cb)(c, &err, res, r.ud);
    wy_free(res);
}

static int send_req(wyc_client_t *c, Wyvern__Lobby__ClientMessage *m, wyc__lobby_reply_cb raw,
                    void *cb, void *ud)
{
    if (!cb)
        return WY_EINVAL;
    req_t *r = wy_calloc(1, sizeof *r);
    r->cb = cb;
    r->ud = ud;
    int rc = wyc__lobby_request(c, m, raw, r);
    if (rc != WY_OK)
        wy_free(r);
    return rc;
}

static bool str_ok(const char *s, size_t max)
{
    return s && strlen(s) <= max;
}

int wyc_chat_send(wyc_client_t *c, const char *channel_id, const char *to_account_id,
                  const char *text, wyc_chat_cb cb, void *ud)
{
    if (!str_ok(text, WYC_CHAT_TEXT_MAX) || (channel_id && !str_ok(channel_id, 200)) ||
        (to_account_id && !str_ok(to_account_id, 200)) || (!channel_id == !to_account_id))
        return WY_EINVAL;
    Wyvern__Lobby__ChatSend s = WYVERN__LOBBY__CHAT_SEND__INIT;
    s.channel_id = (char *)(channel_id ? channel_id : "");
    s.to_account_id = (char *)(to_account_id ? to_account_id : "");
    s.text = (char *)text;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_SEND;
    m.chat_send = &s;
    return send_req(c, &m, on_result, (void *)cb, ud);
}

int wyc_chat_create(wyc_client_t *c, const char *kind, const char *name, wyc_chat_cb cb, void *ud)
{
    if (!str_ok(kind, 16) || (name && !str_ok(name, 200)))
        return WY_EINVAL;
    Wyvern__Lobby__ChatCreate cr = WYVERN__LOBBY__CHAT_CREATE__INIT;
    cr.kind = (char *)kind;
    cr.name = (char *)(name ? name : "");
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_CREATE;
    m.chat_create = &cr;
    return send_req(c, &m, on_result, (void *)cb, ud);
}

static int member_req(wyc_client_t *c, Wyvern__Lobby__ClientMessage__BodyCase body,
                      const char *channel_id, const char *account_id, wyc_chat_cb cb, void *ud)
{
    if (!str_ok(channel_id, 200) || (account_id && !str_ok(account_id, 200)))
        return WY_EINVAL;
    Wyvern__Lobby__ChatChannelRef ref = WYVERN__LOBBY__CHAT_CHANNEL_REF__INIT;
    Wyvern__Lobby__ChatMember mem = WYVERN__LOBBY__CHAT_MEMBER__INIT;
    ref.channel_id = mem.channel_id = (char *)channel_id;
    mem.account_id = (char *)(account_id ? account_id : "");
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = body;
    if (body == WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_JOIN)
        m.chat_join = &ref;
    else if (body == WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_LEAVE)
        m.chat_leave = &ref;
    else if (body == WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_INVITE)
        m.chat_invite = &mem;
    else
        m.chat_kick = &mem;
    return send_req(c, &m, on_result, (void *)cb, ud);
}

int wyc_chat_join(wyc_client_t *c, const char *channel_id, wyc_chat_cb cb, void *ud)
{
    return member_req(c, WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_JOIN, channel_id, NULL, cb, ud);
}

int wyc_chat_leave(wyc_client_t *c, const char *channel_id, wyc_chat_cb cb, void *ud)
{
    return member_req(c, WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_LEAVE, channel_id, NULL, cb, ud);
}

int wyc_chat_invite(wyc_client_t *c, const char *channel_id, const char *account_id, wyc_chat_cb cb,
                    void *ud)
{
    if (!account_id)
        return WY_EINVAL;
    return member_req(c, WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_INVITE, channel_id, account_id,
                      cb, ud);
}

int wyc_chat_kick(wyc_client_t *c, const char *channel_id, const char *account_id, wyc_chat_cb cb,
                  void *ud)
{
    if (!account_id)
        return WY_EINVAL;
    return member_req(c, WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_KICK, channel_id, account_id, cb,
                      ud);
}

static void on_history(wyc_client_t *c, const wyc_error_t *e, const Wyvern__Lobby__ServerMessage *m,
                       void *ud)
{
    req_t r = *(req_t *)ud;
    wy_free(ud);
    wyc_error_t err;
    if (!answer_is(e, m, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_HISTORY_PAGE, "chat_history",
                   &err)) {
        ((wyc_chat_history_cb)r.cb)(c, &err, NULL, 0, 0, false, r.ud);
        return;
    }
    const Wyvern__Lobby__ChatHistoryPage *p = m->chat_history_page;
    wyc_chat_message_t *out = wy_calloc(p->n_messages ? p->n_messages : 1, sizeof *out);
    for (size_t i = 0; i < p->n_messages; i++)
        wyc__chat_copy(&out[i], p->messages[i]);
    ((wyc_chat_history_cb)r.cb)(c, e, out, p->n_messages, p->last_seq, p->more, r.ud);
    wy_free(out);
}

int wyc_chat_history(wyc_client_t *c, const char *channel_id, uint64_t after_seq,
                     uint64_t before_seq, bool forward, uint32_t limit, wyc_chat_history_cb cb,
                     void *ud)
{
    if (!str_ok(channel_id, 200) || limit > 200)
        return WY_EINVAL;
    Wyvern__Lobby__ChatHistory h = WYVERN__LOBBY__CHAT_HISTORY__INIT;
    h.channel_id = (char *)channel_id;
    h.after_seq = after_seq;
    h.before_seq = before_seq;
    h.forward = forward;
    h.limit = limit;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_HISTORY;
    m.chat_history = &h;
    return send_req(c, &m, on_history, (void *)cb, ud);
}

static void on_channels(wyc_client_t *c, const wyc_error_t *e,
                        const Wyvern__Lobby__ServerMessage *m, void *ud)
{
    req_t r = *(req_t *)ud;
    wy_free(ud);
    wyc_error_t err;
    if (!answer_is(e, m, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_CHANNELS, "chat_list_channels",
                   &err)) {
        ((wyc_chat_channels_cb)r.cb)(c, &err, NULL, 0, r.ud);
        return;
    }
    const Wyvern__Lobby__ChatChannelList *l = m->chat_channels;
    wyc_chat_channel_t *out = wy_calloc(l->n_channels ? l->n_channels : 1, sizeof *out);
    for (size_t i = 0; i < l->n_channels; i++) {
        const Wyvern__Lobby__ChatChannel *x = l->channels[i];
        snprintf(out[i].channel_id, sizeof out[i].channel_id, "%s", x->channel_id);
        snprintf(out[i].kind, sizeof out[i].kind, "%s", x->kind);
        snprintf(out[i].name, sizeof out[i].name, "%s", x->name);
        snprintf(out[i].role, sizeof out[i].role, "%s", x->role);
        out[i].last_seq = x->last_seq;
    }
    ((wyc_chat_channels_cb)r.cb)(c, e, out, l->n_channels, r.ud);
    wy_free(out);
}

int wyc_chat_channels(wyc_client_t *c, wyc_chat_channels_cb cb, void *ud)
{
    Wyvern__Lobby__ChatListChannels q = WYVERN__LOBBY__CHAT_LIST_CHANNELS__INIT;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_LIST_CHANNELS;
    m.chat_list_channels = &q;
    return send_req(c, &m, on_channels, (void *)cb, ud);
}

/* ------------------------------------------------------------------ moderation */

static int message_ref(wyc_client_t *c, Wyvern__Lobby__ClientMessage__BodyCase body,
                       const char *channel_id, uint64_t seq, const char *reason, wyc_chat_cb cb,
                       void *ud)
{
    if (!str_ok(channel_id, 200) || !*channel_id || seq == 0 ||
        (reason && !str_ok(reason, WYC_CHAT_NOTE_MAX)))
        return WY_EINVAL;
    Wyvern__Lobby__ChatMessageRef ref = WYVERN__LOBBY__CHAT_MESSAGE_REF__INIT;
    ref.channel_id = (char *)channel_id;
    ref.seq = seq;
    ref.reason = (char *)(reason ? reason : "");
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = body;
    if (body == WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_DELETE)
        m.chat_delete = &ref;
    else
        m.chat_report = &ref;
    return send_req(c, &m, on_result, (void *)cb, ud);
}

int wyc_chat_delete(wyc_client_t *c, const char *channel_id, uint64_t seq, const char *reason,
                    wyc_chat_cb cb, void *ud)
{
    return message_ref(c, WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_DELETE, channel_id, seq, reason,
                       cb, ud);
}

int wyc_chat_report(wyc_client_t *c, const char *channel_id, uint64_t seq, const char *reason,
                    wyc_chat_cb cb, void *ud)
{
    return message_ref(c, WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_REPORT, channel_id, seq, reason,
                       cb, ud);
}

int wyc_chat_mute(wyc_client_t *c, const char *account_id, const char *channel_id,
                  int64_t duration_ms, const char *reason, wyc_chat_cb cb, void *ud)
{
    if (!str_ok(account_id, 200) || !*account_id || (channel_id && !str_ok(channel_id, 200)) ||
        duration_ms < 0 || (reason && !str_ok(reason, WYC_CHAT_NOTE_MAX)))
        return WY_EINVAL;
    Wyvern__Lobby__ChatMute mu = WYVERN__LOBBY__CHAT_MUTE__INIT;
    mu.account_id = (char *)account_id;
    mu.channel_id = (char *)(channel_id ? channel_id : "");
    mu.duration_ms = duration_ms;
    mu.reason = (char *)(reason ? reason : "");
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_MUTE;
    m.chat_mute = &mu;
    return send_req(c, &m, on_result, (void *)cb, ud);
}

int wyc_chat_resolve(wyc_client_t *c, int64_t report_id, const char *resolution, wyc_chat_cb cb,
                     void *ud)
{
    if (report_id <= 0 || (resolution && !str_ok(resolution, WYC_CHAT_NOTE_MAX)))
        return WY_EINVAL;
    Wyvern__Lobby__ChatResolveReport rr = WYVERN__LOBBY__CHAT_RESOLVE_REPORT__INIT;
    rr.report_id = report_id;
    rr.resolution = (char *)(resolution ? resolution : "");
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_RESOLVE_REPORT;
    m.chat_resolve_report = &rr;
    return send_req(c, &m, on_result, (void *)cb, ud);
}

static void on_reports(wyc_client_t *c, const wyc_error_t *e, const Wyvern__Lobby__ServerMessage *m,
                       void *ud)
{
    req_t r = *(req_t *)ud;
    wy_free(ud);
    wyc_error_t err;
    if (!answer_is(e, m, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_REPORT_LIST, "chat_reports",
                   &err)) {
        ((wyc_chat_reports_cb)r.cb)(c, &err, NULL, 0, false, r.ud);
        return;
    }
    const Wyvern__Lobby__ChatReportList *l = m->chat_report_list;
    wyc_chat_report_t *out = wy_calloc(l->n_reports ? l->n_reports : 1, sizeof *out);
    for (size_t i = 0; i < l->n_reports; i++) {
        const Wyvern__Lobby__ChatReport *x = l->reports[i];
        wyc_chat_report_t *o = &out[i];
        o->report_id = x->report_id;
        snprintf(o->channel_id, sizeof o->channel_id, "%s", x->channel_id);
        o->seq = x->seq;
        snprintf(o->reporter_id, sizeof o->reporter_id, "%s", x->reporter_id);
        snprintf(o->reason, sizeof o->reason, "%s", x->reason);
        o->at_ms = x->at_ms;
        o->has_message = x->message != NULL;
        if (x->message)
            wyc__chat_copy(&o->message, x->message);
        o->resolved_at_ms = x->resolved_at_ms;
        snprintf(o->resolved_by, sizeof o->resolved_by, "%s", x->resolved_by);
        snprintf(o->resolution, sizeof o->resolution, "%s", x->resolution);
    }
    ((wyc_chat_reports_cb)r.cb)(c, e, out, l->n_reports, l->more, r.ud);
    wy_free(out);
}

int wyc_chat_reports(wyc_client_t *c, uint64_t after_id, uint32_t limit, bool resolved,
                     wyc_chat_reports_cb cb, void *ud)
{
    if (limit > 200)
        return WY_EINVAL;
    Wyvern__Lobby__ChatReports q = WYVERN__LOBBY__CHAT_REPORTS__INIT;
    q.after_id = after_id;
    q.limit = limit;
    q.resolved = resolved;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CHAT_REPORTS;
    m.chat_reports = &q;
    return send_req(c, &m, on_reports, (void *)cb, ud);
}
