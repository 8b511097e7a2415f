/* wyc lobby: the WebSocket client (own HTTP upgrade over uv_tcp_t, wslay client framing) and
 * the lobby protocol (protobuf frames): hello/welcome, heartbeats, nickname, presence, notices,
 * kicks, logout; reconnect with backoff after a drop, never after a kick. */
#include "wyc_int.h"
#include "lobby.pb-c.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define UPGRADE_MAX 8192
#define RECV_MAX    (1024 * 1024)
#define TICK_MS     1000
#define WS_GUID     "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum { PH_RESOLVE = 1, PH_CONNECT, PH_UPGRADE, PH_WS };
enum { PEND_NICK = 1, PEND_PRESENCE, PEND_LOGOUT, PEND_RAW };

struct wyc_conn {
    wyc_client_t *c; /* NULL once detached: the conn only waits for its handles to close */
    int phase;
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    uv_tcp_t tcp;
    bool tcp_open;
    char key[32];
    wy_buf_t in;
    size_t in_off;
    wslay_event_context_ptr ws;
    uint32_t hello_req;
    bool kicked;
    int close_code;
    char close_reason[128];
    wyc_error_t hello_err; /* the hello's refusal, if the server sent one */
    bool hello_failed;
};

typedef struct {
    uv_write_t req;
    char *data;
} wreq_t;

static void start_connect(wyc_client_t *c);
static void conn_end(wyc_conn_t *k, const wyc_error_t *e, bool retry, bool refresh_first);

/* ------------------------------------------------------------------ small helpers */

static void ev_init(wyc_event_t *ev, wyc_event_type_t t)
{
    memset(ev, 0, sizeof *ev);
    ev->type = t;
}

static const char *code_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&wyvern__lobby__code__descriptor, code);
    return v ? v->name : "UNKNOWN";
}

static int code_err(int code)
{
    switch (code) {
    case WYVERN__LOBBY__CODE__OK:
        return WY_OK;
    case WYVERN__LOBBY__CODE__INVALID:
        return WY_EINVAL;
    case WYVERN__LOBBY__CODE__NOT_FOUND:
        return WY_ENOTFOUND;
    case WYVERN__LOBBY__CODE__ALREADY_EXISTS:
        return WY_EEXIST;
    case WYVERN__LOBBY__CODE__FORBIDDEN:
        return WY_EPERM;
    case WYVERN__LOBBY__CODE__UNAUTHENTICATED:
        return WY_EAUTH;
    case WYVERN__LOBBY__CODE__RATE_LIMITED:
        return WY_ELIMIT;
    case WYVERN__LOBBY__CODE__TOO_BIG:
        return WY_ETOOBIG;
    case WYVERN__LOBBY__CODE__UNAVAILABLE:
        return WY_EUNAVAIL;
    case WYVERN__LOBBY__CODE__CONFLICT:
        return WY_ESTATE;
    default:
        return WY_EINTERNAL;
    }
}

static void status_err(wyc_error_t *e, const Wyvern__Lobby__Status *st)
{
    int code = st ? (int)st->code : WYVERN__LOBBY__CODE__OK;
    if (code == WYVERN__LOBBY__CODE__OK) {
        wyc__err_ok(e);
        return;
    }
    wyc__err_set(e, code_err(code), WYC_SRC_SERVER, "%s",
                 st->message && *st->message ? st->message : code_name(code));
    snprintf(e->server_code, sizeof e->server_code, "%s", code_name(code));
}

void wyc__status_err(wyc_error_t *e, const Wyvern__Lobby__Status *st)
{
    status_err(e, st);
}

/* ------------------------------------------------------------------ pending requests */

static void pending_complete(wyc_client_t *c, wyc_pending_t *p, const wyc_error_t *e,
                             const Wyvern__Lobby__ServerMessage *m)
{
    wyc_pending_t x = *p;
    p->id = 0;
    switch (x.kind) {
    case PEND_NICK: {
        const char *nick = "";
        int64_t next = 0;
        if (e->code == WY_OK && m &&
            m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_NICKNAME_SET) {
            nick = m->nickname_set->nickname;
            next = m->nickname_set->next_change_at;
        }
        ((wyc_nickname_cb)x.cb)(c, e, nick, next, x.ud);
        break;
    }
    case PEND_PRESENCE: {
        wyc_presence_t *out = NULL;
        size_t n = 0;
        if (e->code == WY_OK && m && m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_PRESENCE) {
            n = m->presence->n_entries;
            if (n > WYC_PRESENCE_MAX)
                n = WYC_PRESENCE_MAX;
            out = wy_calloc(n ? n : 1, sizeof *out);
            for (size_t i = 0; i < n; i++) {
                const Wyvern__Lobby__Presence *p2 = m->presence->entries[i];
                snprintf(out[i].account_id, sizeof out[i].account_id, "%s", p2->account_id);
                snprintf(out[i].nickname, sizeof out[i].nickname, "%s", p2->nickname);
                out[i].state = (wyc_presence_state_t)p2->state;
                snprintf(out[i].zone, sizeof out[i].zone, "%s", p2->zone);
            }
        }
        ((wyc_presence_cb)x.cb)(c, e, out, n, x.ud);
        wy_free(out);
        break;
    }
    case PEND_RAW:
        ((wyc__lobby_reply_cb)x.cb)(c, e, e->code == WY_OK ? m : NULL, x.ud);
        break;
    default:
        break; /* logout: the end of the connection continues it */
    }
}

static void pending_fail_all(wyc_client_t *c, const wyc_error_t *e)
{
    for (size_t i = 0; i < WYC_LOBBY_MAX_PENDING; i++)
        if (c->pending[i].id)
            pending_complete(c, &c->pending[i], e, NULL);
}

/* ------------------------------------------------------------------ sending */

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    wyc_conn_t *k = req->data;
    wy_free(w->data);
    wy_free(w);
    if (status < 0 && status != UV_ECANCELED && k->c) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EUNAVAIL, WYC_SRC_NETWORK, "lobby connection lost: %s",
                     uv_strerror(status));
        conn_end(k, &e, true, false);
    }
}

static int raw_write(wyc_conn_t *k, char *data, size_t len)
{
    wreq_t *w = wy_calloc(1, sizeof *w);
    w->data = data;
    w->req.data = k;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&k->tcp, &b, 1, on_written);
    if (rc < 0) {
        wy_free(data);
        wy_free(w);
        return WY_EIO;
    }
    return WY_OK;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *ud)
{
    (void)ctx, (void)flags;
    wyc_conn_t *k = ud;
    char *copy = wy_malloc(len);
    memcpy(copy, data, len);
    if (raw_write(k, copy, len) != WY_OK) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *ud)
{
    (void)flags;
    wyc_conn_t *k = ud;
    size_t avail = k->in.len - k->in_off;
    if (avail == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > avail)
        len = avail;
    memcpy(buf, k->in.data + k->in_off, len);
    k->in_off += len;
    return (ssize_t)len;
}

static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud)
{
    (void)ctx, (void)ud;
    wy_random(buf, len);
    return 0;
}

/* Runs wslay's output and ends the connection once both closes are done. */
static void conn_flush(wyc_conn_t *k)
{
    if (!k->c || !k->ws)
        return;
    if (wslay_event_send(k->ws) != 0) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EUNAVAIL, WYC_SRC_NETWORK, "lobby connection lost while sending");
        conn_end(k, &e, true, false);
    }
}

static int send_msg(wyc_client_t *c, Wyvern__Lobby__ClientMessage *m)
{
    wyc_conn_t *k = c->conn;
    if (!k || !k->ws)
        return WY_ESTATE;
    size_t n = wyvern__lobby__client_message__get_packed_size(m);
    uint8_t *buf = wy_malloc(n ? n : 1);
    wyvern__lobby__client_message__pack(m, buf);
    struct wslay_event_msg msg = {WSLAY_BINARY_FRAME, buf, n};
    int rc = wslay_event_queue_msg(k->ws, &msg);
    wy_free(buf);
    if (rc != 0)
        return WY_ESTATE;
    c->last_sent_ms = wy_now_ms();
    conn_flush(k);
    return WY_OK;
}

static bool take_token(wyc_client_t *c)
{
    uint64_t now = wy_now_ms();
    double rate = c->welcome.max_messages_per_sec ? c->welcome.max_messages_per_sec : 20;
    c->bucket += (double)(now - c->bucket_ms) * rate / 1000.0;
    if (c->bucket > rate)
        c->bucket = rate;
    c->bucket_ms = now;
    /* One message of headroom is kept for the automatic heartbeat. */
    if (c->bucket < 2.0)
        return false;
    c->bucket -= 1.0;
    return true;
}

/* ------------------------------------------------------------------ connection end */

static void on_tcp_closed(uv_handle_t *h)
{
    wyc_conn_t *k = h->data;
    if (k->ws)
        wslay_event_context_free(k->ws);
    wy_buf_free(&k->in);
    wy_free(k);
}

/* Detaches k from its client and releases it (now or when its handles close). */
static void conn_release(wyc_conn_t *k)
{
    wyc_client_t *c = k->c;
    if (c) {
        c->conn = NULL;
        k->c = NULL;
        uv_timer_stop(&c->tick_timer);
    }
    if (k->phase == PH_RESOLVE)
        return; /* on_resolved frees it */
    if (k->tcp_open && !uv_is_closing((uv_handle_t *)&k->tcp))
        uv_close((uv_handle_t *)&k->tcp, on_tcp_closed);
}

static void on_deferred(uv_timer_t *t)
{
    wyc_client_t *c = t->data;
    if (c->deferred.type) {
        wyc_event_t ev = c->deferred;
        c->deferred.type = 0;
        wyc__emit(c, &ev);
    }
}

static void on_retry(uv_timer_t *t)
{
    wyc_client_t *c = t->data;
    /* A CLOSED deferred by wyc_lobby_close shares this timer: never lose it. */
    on_deferred(t);
    if (c->lstate == LB_WAITING && c->lobby_wanted && !c->reconnect_after_refresh)
        start_connect(c);
}

/* The connection is over: fail its requests, then reconnect (retry) or finish for good. */
static void conn_end(wyc_conn_t *k, const wyc_error_t *e, bool retry, bool refresh_first)
{
    wyc_client_t *c = k->c;
    if (!c)
        return;
    bool was_ready = c->lstate == LB_READY;
    conn_release(k);
    c->lstate = LB_IDLE;
    wyc_error_t lost;
    wyc__err_set(&lost, WY_EUNAVAIL, WYC_SRC_NETWORK, "lobby connection lost: %s", e->message);
    pending_fail_all(c, &lost);
    if (c->logging_out) {
        c->lobby_wanted = false;
        wyc_event_t ev;
        ev_init(&ev, WYC_EV_CLOSED);
        wyc__err_set(&ev.error, WY_OK, WYC_SRC_NONE, "logged out");
        wyc__emit(c, &ev);
        void (*done)(wyc_client_t *) = (void (*)(wyc_client_t *))c->deferred_logout;
        c->deferred_logout = NULL;
        if (done)
            done(c);
        return;
    }
    if (!c->lobby_wanted)
        return;
    const wyc_config_t *cfg = &c->ctx->cfg;
    bool attempts_left =
        !cfg->reconnect_max_attempts || c->backoff.attempt < cfg->reconnect_max_attempts;
    if (retry && cfg->auto_reconnect && attempts_left && !c->closing) {
        c->lstate = LB_WAITING;
        wyc_event_t ev;
        ev_init(&ev, WYC_EV_DISCONNECTED);
        ev.error = *e;
        if (refresh_first) {
            c->backoff.attempt++;
            c->reconnect_after_refresh = true;
            ev.reconnect_in_ms = 1;
            if (wyc__refresh_internal(c) != WY_OK) {
                c->reconnect_after_refresh = false;
                refresh_first = false;
            }
        }
        if (!refresh_first) {
            uint32_t r;
            wy_random(&r, sizeof r);
            ev.reconnect_in_ms = wyc_backoff_next(&c->backoff, r);
            uv_timer_start(&c->retry_timer, on_retry, ev.reconnect_in_ms, 0);
        }
        (void)was_ready;
        wyc__emit(c, &ev);
        return;
    }
    c->lobby_wanted = false;
    wyc_event_t ev;
    ev_init(&ev, WYC_EV_CLOSED);
    ev.error = *e;
    if (retry && attempts_left == false)
        snprintf(ev.error.message + strlen(ev.error.message),
                 sizeof ev.error.message - strlen(ev.error.message), " (gave up after %u attempts)",
                 c->backoff.attempt);
    wyc__emit(c, &ev);
}

/* Decides what a close (code from the server, or 1006 for a plain drop) means. */
static void conn_closed_by_server(wyc_conn_t *k)
{
    wyc_client_t *c = k->c;
    int code = k->close_code ? k->close_code : 1006;
    const char *why = k->close_reason[0] ? k->close_reason : "connection closed";
    wyc_error_t e;
    bool retry = true, refresh = false;
    if (k->hello_failed) {
        e = k->hello_err;
    } else {
        wyc__err_set(&e, WY_EUNAVAIL, code == 1006 ? WYC_SRC_NETWORK : WYC_SRC_SERVER,
                     "lobby closed the connection (%d): %s", code, why);
    }
    e.ws_close = code;
    switch (code) {
    case 4000:
        e.code = WY_EIO;
        e.source = WYC_SRC_PROTOCOL;
        retry = false;
        break;
    case 4001:
        e.code = WY_EAUTH;
        retry = !k->kicked && c->unauth_retries < 1;
        refresh = true;
        c->unauth_retries++;
        break;
    case 4002:
        /* The Kicked push may be lost behind the close frame: the close says it too. */
        if (!k->kicked) {
            k->kicked = true;
            wyc_event_t ev;
            ev_init(&ev, WYC_EV_KICKED);
            snprintf(ev.reason, sizeof ev.reason, "%s", why);
            wyc__emit(c, &ev);
        }
        break;
    case 4003:
        e.code = WY_ELIMIT;
        break;
    case 4004:
    case 4005:
        e.code = WY_ETIMEDOUT;
        break;
    case 4006:
        e.code = WY_EEXIST;
        if (!e.server_code[0])
            snprintf(e.server_code, sizeof e.server_code, "CONFLICT");
        retry = false;
        break;
    case 1000: /* after logged_out{} */
        e.code = WY_OK;
        retry = false;
        break;
    default:
        break;
    }
    if (k->kicked) {
        retry = false;
        if (!e.server_code[0])
            snprintf(e.server_code, sizeof e.server_code, "KICKED");
        e.code = WY_ECANCELED;
    }
    conn_end(k, &e, retry, refresh);
}

/* ------------------------------------------------------------------ receiving */

static void on_welcome(wyc_client_t *c, const Wyvern__Lobby__Welcome *w)
{
    wyc_welcome_t *o = &c->welcome;
    memset(o, 0, sizeof *o);
    snprintf(o->session_id, sizeof o->session_id, "%s", w->session_id);
    snprintf(o->account_id, sizeof o->account_id, "%s", w->account_id);
    snprintf(o->nickname, sizeof o->nickname, "%s", w->nickname);
    snprintf(o->instance, sizeof o->instance, "%s", w->instance);
    o->heartbeat_interval_ms = w->heartbeat_interval_ms ? w->heartbeat_interval_ms : 10000;
    o->idle_timeout_ms = w->idle_timeout_ms ? w->idle_timeout_ms : 30000;
    o->max_messages_per_sec = w->max_messages_per_sec ? w->max_messages_per_sec : 20;
    o->reconnects = c->welcomed_once ? ++c->reconnects : 0;
    c->welcomed_once = true;
    c->bucket = o->max_messages_per_sec;
    c->bucket_ms = wy_now_ms();
    c->lstate = LB_READY;
    c->unauth_retries = 0;
    wyc_backoff_reset(&c->backoff);
    wyc_event_t ev;
    ev_init(&ev, WYC_EV_WELCOME);
    ev.welcome = *o;
    wyc__emit(c, &ev);
    wyc__chat_welcome(c);
}

static void on_server_msg(wyc_conn_t *k, const Wyvern__Lobby__ServerMessage *m)
{
    wyc_client_t *c = k->c;
    if (m->request_id && m->request_id == k->hello_req && c->lstate == LB_CONNECTING) {
        if (m->status && m->status->code != WYVERN__LOBBY__CODE__OK) {
            status_err(&k->hello_err, m->status);
            k->hello_failed = true;
        } else if (m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_WELCOME) {
            on_welcome(c, m->welcome);
        }
        return;
    }
    switch (m->body_case) {
    case WYVERN__LOBBY__SERVER_MESSAGE__BODY_KICKED: {
        k->kicked = true;
        wyc_event_t ev;
        ev_init(&ev, WYC_EV_KICKED);
        snprintf(ev.reason, sizeof ev.reason, "%s", m->kicked->reason);
        wyc__emit(c, &ev);
        return;
    }
    case WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHAT_MESSAGE:
        if (!m->request_id) {
            wyc__chat_push(c, m->chat_message);
            return;
        }
        break;
    case WYVERN__LOBBY__SERVER_MESSAGE__BODY_NOTICE: {
        wyc_event_t ev;
        ev_init(&ev, WYC_EV_NOTICE);
        snprintf(ev.notice.id, sizeof ev.notice.id, "%s", m->notice->id);
        snprintf(ev.notice.kind, sizeof ev.notice.kind, "%s", m->notice->kind);
        snprintf(ev.notice.text, sizeof ev.notice.text, "%s", m->notice->text);
        ev.notice.at_ms = m->notice->at_ms;
        wyc__emit(c, &ev);
        return;
    }
    case WYVERN__LOBBY__SERVER_MESSAGE__BODY_FRIEND_PUSH:
        wyc__friend_push(c, m->friend_push);
        return;
    default:
        break;
    }
    if (!m->request_id)
        return; /* a status push (rate limited, bad frame): the close that follows says it */
    for (size_t i = 0; i < WYC_LOBBY_MAX_PENDING; i++) {
        wyc_pending_t *p = &c->pending[i];
        if (p->id != m->request_id)
            continue;
        wyc_error_t e;
        status_err(&e, m->status);
        if (p->kind == PEND_LOGOUT) {
            p->id = 0;
            return;
        }
        pending_complete(c, p, &e, m);
        return;
    }
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *ud)
{
    (void)ctx;
    wyc_conn_t *k = ud;
    if (!k->c)
        return;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        k->close_code = arg->status_code;
        if (arg->msg_length > 2)
            snprintf(k->close_reason, sizeof k->close_reason, "%.*s", (int)(arg->msg_length - 2),
                     (const char *)arg->msg + 2);
        return;
    }
    if (arg->opcode != WSLAY_BINARY_FRAME)
        return;
    Wyvern__Lobby__ServerMessage *m =
        wyvern__lobby__server_message__unpack(NULL, arg->msg_length, arg->msg);
    if (!m) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EIO, WYC_SRC_PROTOCOL, "lobby sent an undecodable message");
        wslay_event_queue_close(k->ws, 1002, NULL, 0);
        conn_end(k, &e, false, false);
        return;
    }
    on_server_msg(k, m);
    wyvern__lobby__server_message__free_unpacked(m, NULL);
}

static void ws_feed(wyc_conn_t *k)
{
    if (wslay_event_recv(k->ws) != 0 && k->c) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EIO, WYC_SRC_PROTOCOL, "lobby sent a malformed WebSocket frame");
        conn_end(k, &e, true, false);
        return;
    }
    if (k->in_off == k->in.len) {
        wy_buf_reset(&k->in);
        k->in_off = 0;
    }
    if (!k->c)
        return;
    conn_flush(k);
    if (k->c && wslay_event_get_close_received(k->ws) && !wslay_event_want_write(k->ws))
        conn_closed_by_server(k);
}

/* ------------------------------------------------------------------ upgrade */

void wyc__ws_accept(const char *key, char out[64])
{
    char buf[128];
    unsigned char sha[SHA_DIGEST_LENGTH];
    snprintf(buf, sizeof buf, "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)buf, strlen(buf), sha);
    EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

int wyc__ws_upgrade_check(const char *d, size_t len, const char *key, size_t *hlen, int *status)
{
    const char *end = d ? memmem(d, len, "\r\n\r\n", 4) : NULL;
    *status = 0;
    if (!end)
        return len > UPGRADE_MAX ? WYC_UPGRADE_TOO_BIG : WYC_UPGRADE_MORE;
    *hlen = (size_t)(end - d) + 4;
    if (sscanf(d, "HTTP/1.%*d %d", status) != 1 || *status != 101)
        return WYC_UPGRADE_STATUS;
    char want[64];
    wyc__ws_accept(key, want);
    for (const char *line = strstr(d, "\r\n"); line && line < end;
         line = strstr(line + 2, "\r\n")) {
        const char *l = line + 2;
        if (strncasecmp(l, "Sec-WebSocket-Accept:", 21) != 0)
            continue;
        l += 21;
        while (*l == ' ' || *l == '\t')
            l++;
        size_t n = strcspn(l, "\r\n ");
        return n == strlen(want) && memcmp(l, want, n) == 0 ? WYC_UPGRADE_OK : WYC_UPGRADE_ACCEPT;
    }
    return WYC_UPGRADE_ACCEPT;
}

static void send_hello(wyc_conn_t *k)
{
    wyc_client_t *c = k->c;
    Wyvern__Lobby__Hello h = WYVERN__LOBBY__HELLO__INIT;
    h.access_token = c->sess.access_token;
    h.client_version = c->ctx->client_version;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    if (++c->next_req == 0)
        c->next_req = 1;
    m.request_id = k->hello_req = c->next_req;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HELLO;
    m.hello = &h;
    send_msg(c, &m);
}

/* Parses the upgrade response once complete; 1 done, 0 need more, -1 failed (ended). */
static int upgrade_parse(wyc_conn_t *k)
{
    wyc_error_t e;
    size_t hlen = 0;
    int status = 0;
    int r = wyc__ws_upgrade_check(k->in.data, k->in.len, k->key, &hlen, &status);
    if (r == WYC_UPGRADE_MORE)
        return 0;
    if (r == WYC_UPGRADE_TOO_BIG) {
        wyc__err_set(&e, WY_EIO, WYC_SRC_PROTOCOL, "lobby upgrade response over 8 KiB");
        conn_end(k, &e, false, false);
        return -1;
    }
    if (r == WYC_UPGRADE_STATUS) {
        bool busy = status == 503 || status == 502 || status == 504;
        wyc__err_set(&e, busy ? WY_EUNAVAIL : WY_EIO, busy ? WYC_SRC_SERVER : WYC_SRC_PROTOCOL,
                     "lobby at %s refused the WebSocket upgrade (HTTP %d): check the lobby URL",
                     k->c->ctx->lobby_url, status);
        e.http_status = status;
        conn_end(k, &e, busy, false);
        return -1;
    }
    if (r == WYC_UPGRADE_ACCEPT) {
        wyc__err_set(&e, WY_EIO, WYC_SRC_PROTOCOL,
                     "lobby upgrade answer has a wrong Sec-WebSocket-Accept");
        conn_end(k, &e, false, false);
        return -1;
    }
    k->in_off = hlen;
    struct wslay_event_callbacks cbs = {
        .recv_callback = ws_recv_cb,
        .send_callback = ws_send_cb,
        .genmask_callback = ws_genmask_cb,
        .on_msg_recv_callback = ws_on_msg,
    };
    if (wslay_event_context_client_init(&k->ws, &cbs, k) != 0) {
        wyc__err_set(&e, WY_EINTERNAL, WYC_SRC_CLIENT, "cannot create the WebSocket context");
        conn_end(k, &e, false, false);
        return -1;
    }
    wslay_event_config_set_max_recv_msg_length(k->ws, RECV_MAX);
    k->phase = PH_WS;
    send_hello(k);
    return 1;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    wyc_conn_t *k = h->data;
    /* Detached conns still read (until close): any shared buffer does. */
    static char spare[4096];
    if (!k->c) {
        *buf = uv_buf_init(spare, sizeof spare);
        return;
    }
    *buf = uv_buf_init(k->c->ctx->rbuf, sizeof k->c->ctx->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    wyc_conn_t *k = s->data;
    if (!k->c || n == 0)
        return;
    if (n < 0) {
        if (k->phase == PH_WS) {
            conn_closed_by_server(k);
        } else {
            wyc_error_t e;
            wyc__err_set(&e, WY_EUNAVAIL, WYC_SRC_NETWORK,
                         "lobby at %s closed the connection during the upgrade: %s",
                         k->c->ctx->lobby_url, uv_strerror((int)n));
            conn_end(k, &e, true, false);
        }
        return;
    }
    k->c->last_recv_ms = wy_now_ms();
    if (k->in.len - k->in_off + (size_t)n > RECV_MAX + 64 * 1024) {
        wyc_error_t e;
        wyc__err_set(&e, WY_ETOOBIG, WYC_SRC_PROTOCOL, "lobby sent more than the client buffers");
        conn_end(k, &e, true, false);
        return;
    }
    wy_buf_append(&k->in, buf->base, (size_t)n);
    if (k->phase == PH_UPGRADE) {
        if (upgrade_parse(k) != 1 || !k->c)
            return;
    }
    if (k->phase == PH_WS)
        ws_feed(k);
}

static void on_connected(uv_connect_t *req, int status)
{
    wyc_conn_t *k = req->data;
    if (!k->c)
        return;
    wyc_client_t *c = k->c;
    if (status < 0) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot connect to the lobby at %s: %s",
                     c->ctx->lobby_url, uv_strerror(status));
        conn_end(k, &e, true, false);
        return;
    }
    uv_tcp_nodelay(&k->tcp, 1);
    k->phase = PH_UPGRADE;
    unsigned char raw[16];
    wy_random(raw, sizeof raw);
    EVP_EncodeBlock((unsigned char *)k->key, raw, sizeof raw);
    char *req_text = wy_sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                                "Sec-WebSocket-Version: 13\r\nUser-Agent: wyvern-wyc/1\r\n\r\n",
                                c->ctx->lobby_path, c->ctx->lobby_hostport, k->key);
    uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    if (raw_write(k, req_text, strlen(req_text)) != WY_OK) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot write to the lobby");
        conn_end(k, &e, true, false);
    }
}

static void connect_addr(wyc_conn_t *k, const struct sockaddr *sa)
{
    wyc_client_t *c = k->c;
    uv_tcp_init(c->ctx->loop, &k->tcp);
    k->tcp.data = k;
    k->tcp_open = true;
    k->phase = PH_CONNECT;
    k->connect.data = k;
    int rc = uv_tcp_connect(&k->connect, &k->tcp, sa, on_connected);
    if (rc < 0) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot connect to the lobby at %s: %s",
                     c->ctx->lobby_url, uv_strerror(rc));
        conn_end(k, &e, true, false);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    wyc_conn_t *k = req->data;
    k->phase = PH_CONNECT;
    if (!k->c) {
        uv_freeaddrinfo(res);
        wy_free(k);
        return;
    }
    if (status < 0 || !res) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot resolve the lobby host %s: %s",
                     k->c->ctx->lobby_host, uv_strerror(status));
        uv_freeaddrinfo(res);
        k->phase = PH_RESOLVE; /* no handle to close */
        wyc_conn_t *kk = k;
        conn_end(kk, &e, true, false);
        wy_free(kk);
        return;
    }
    connect_addr(k, res->ai_addr);
    uv_freeaddrinfo(res);
}

static void on_tick(uv_timer_t *t);

static void start_connect(wyc_client_t *c)
{
    wyc_conn_t *k = wy_calloc(1, sizeof *k);
    k->c = c;
    c->conn = k;
    c->lstate = LB_CONNECTING;
    c->reconnect_after_refresh = false;
    uint64_t now = wy_now_ms();
    c->connect_deadline_ms = now + c->ctx->cfg.timeout_ms;
    c->last_recv_ms = c->last_sent_ms = now;
    uv_timer_start(&c->tick_timer, on_tick, TICK_MS, TICK_MS);
    struct sockaddr_storage ss;
    if (uv_ip4_addr(c->ctx->lobby_host, c->ctx->lobby_port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(c->ctx->lobby_host, c->ctx->lobby_port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_addr(k, (struct sockaddr *)&ss);
        return;
    }
    k->phase = PH_RESOLVE;
    k->gai.data = k;
    char port[8];
    snprintf(port, sizeof port, "%d", c->ctx->lobby_port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(c->ctx->loop, &k->gai, on_resolved, c->ctx->lobby_host, port, &hints);
    if (rc < 0) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot resolve the lobby host %s: %s",
                     c->ctx->lobby_host, uv_strerror(rc));
        conn_end(k, &e, true, false);
        wy_free(k);
    }
}

static void send_heartbeat(wyc_client_t *c)
{
    Wyvern__Lobby__Heartbeat hb = WYVERN__LOBBY__HEARTBEAT__INIT;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    if (++c->next_req == 0)
        c->next_req = 1;
    m.request_id = c->next_req;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    c->bucket -= 1.0;
    send_msg(c, &m);
}

static void on_tick(uv_timer_t *t)
{
    wyc_client_t *c = t->data;
    wyc_conn_t *k = c->conn;
    if (!k)
        return;
    uint64_t now = wy_now_ms();
    wyc_error_t e;
    if (c->lstate == LB_CONNECTING && now >= c->connect_deadline_ms) {
        wyc__err_set(&e, WY_ETIMEDOUT, WYC_SRC_NETWORK,
                     "no welcome from the lobby at %s within %u ms", c->ctx->lobby_url,
                     c->ctx->cfg.timeout_ms);
        conn_end(k, &e, true, false);
        return;
    }
    if (c->lstate != LB_READY)
        return;
    uint64_t hb = c->welcome.heartbeat_interval_ms;
    uint64_t silence =
        (c->welcome.idle_timeout_ms > 2 * hb ? c->welcome.idle_timeout_ms : 2 * hb) + 5000;
    if (now - c->last_recv_ms > silence) {
        wyc__err_set(&e, WY_ETIMEDOUT, WYC_SRC_NETWORK, "the lobby went silent for %llu ms",
                     (unsigned long long)(now - c->last_recv_ms));
        conn_end(k, &e, true, false);
        return;
    }
    for (size_t i = 0; i < WYC_LOBBY_MAX_PENDING; i++) {
        wyc_pending_t *p = &c->pending[i];
        if (p->id && p->kind != PEND_LOGOUT && now >= p->deadline_ms) {
            wyc__err_set(&e, WY_ETIMEDOUT, WYC_SRC_NETWORK, "no answer from the lobby within %u ms",
                         c->ctx->cfg.timeout_ms);
            pending_complete(c, p, &e, NULL);
            if (c->conn != k)
                return;
        }
    }
    /* Heartbeat a little before the interval so the server's idle timer never gets close. */
    if (now - c->last_sent_ms + TICK_MS >= hb)
        send_heartbeat(c);
}

/* ------------------------------------------------------------------ internal API */

void wyc__lobby_init(wyc_client_t *c)
{
    uv_timer_init(c->ctx->loop, &c->retry_timer);
    uv_timer_init(c->ctx->loop, &c->tick_timer);
    c->retry_timer.data = c->tick_timer.data = c;
    wyc__ref(c);
    wyc__ref(c);
    wyc_backoff_init(&c->backoff, c->ctx->cfg.reconnect_base_ms, c->ctx->cfg.reconnect_max_ms);
}

static void on_timer_closed(uv_handle_t *h)
{
    wyc__unref(h->data);
}

void wyc__lobby_shutdown(wyc_client_t *c)
{
    c->lobby_wanted = false;
    if (c->conn) {
        wyc_conn_t *k = c->conn;
        bool resolving = k->phase == PH_RESOLVE;
        conn_release(k);
        (void)resolving;
    }
    wyc_error_t e;
    wyc__err_set(&e, WY_ECANCELED, WYC_SRC_CLIENT, "client closed");
    /* closing is set: callbacks of pending requests still run, events do not */
    pending_fail_all(c, &e);
    uv_close((uv_handle_t *)&c->retry_timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->tick_timer, on_timer_closed);
}

void wyc__lobby_tokens_changed(wyc_client_t *c, bool ok, const wyc_error_t *err)
{
    if (!c->reconnect_after_refresh || c->lstate != LB_WAITING || !c->lobby_wanted)
        return;
    c->reconnect_after_refresh = false;
    if (ok) {
        start_connect(c);
        return;
    }
    if (err->code == WY_EAUTH || err->code == WY_EPERM) {
        c->lobby_wanted = false;
        c->lstate = LB_IDLE;
        wyc_event_t ev;
        ev_init(&ev, WYC_EV_CLOSED);
        ev.error = *err;
        wyc__emit(c, &ev);
        return;
    }
    uint32_t r;
    wy_random(&r, sizeof r);
    uv_timer_start(&c->retry_timer, on_retry, wyc_backoff_next(&c->backoff, r), 0);
}

bool wyc__lobby_logout(wyc_client_t *c, void (*done)(wyc_client_t *c))
{
    if (c->lstate != LB_READY || !c->conn) {
        if (c->lstate != LB_IDLE)
            wyc_lobby_close(c);
        return false;
    }
    Wyvern__Lobby__Logout lo = WYVERN__LOBBY__LOGOUT__INIT;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    if (++c->next_req == 0)
        c->next_req = 1;
    m.request_id = c->next_req;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_LOGOUT;
    m.logout = &lo;
    if (send_msg(c, &m) != WY_OK) {
        wyc_lobby_close(c);
        return false;
    }
    c->lobby_wanted = false;
    c->deferred_logout = (void *)done;
    return true;
}

/* ------------------------------------------------------------------ public API */

int wyc_lobby_connect(wyc_client_t *c)
{
    if (c->closing || !c->logged_in || c->lstate != LB_IDLE || c->logging_out)
        return WY_ESTATE;
    c->lobby_wanted = true;
    c->welcomed_once = false;
    c->reconnects = 0;
    c->unauth_retries = 0;
    wyc_backoff_reset(&c->backoff);
    /* A token that is about to expire would be refused at hello: refresh first. */
    if ((int64_t)wy_wall_ms() + 5000 >= c->sess.access_expires_at_ms && !c->refreshing &&
        wyc__refresh_internal(c) == WY_OK) {
        c->lstate = LB_WAITING;
        c->reconnect_after_refresh = true;
        return WY_OK;
    }
    start_connect(c);
    return WY_OK;
}

void wyc_lobby_close(wyc_client_t *c)
{
    if (c->closing)
        return;
    bool was = c->lobby_wanted || c->lstate != LB_IDLE;
    c->lobby_wanted = false;
    c->reconnect_after_refresh = false;
    uv_timer_stop(&c->retry_timer);
    if (c->conn) {
        wyc_conn_t *k = c->conn;
        if (k->ws && k->phase == PH_WS) {
            wslay_event_queue_close(k->ws, 1000, (const uint8_t *)"bye", 3);
            wslay_event_send(k->ws);
        }
        conn_release(k);
    }
    c->lstate = LB_IDLE;
    wyc_error_t e;
    wyc__err_set(&e, WY_EUNAVAIL, WYC_SRC_CLIENT, "lobby connection closed by the caller");
    pending_fail_all(c, &e);
    if (was) {
        ev_init(&c->deferred, WYC_EV_CLOSED);
        wyc__err_set(&c->deferred.error, WY_ECANCELED, WYC_SRC_CLIENT,
                     "lobby connection closed by the caller");
        uv_timer_start(&c->retry_timer, on_deferred, 0, 0);
    }
}

bool wyc_lobby_ready(const wyc_client_t *c)
{
    return c->lstate == LB_READY;
}

static wyc_pending_t *pending_slot(wyc_client_t *c)
{
    for (size_t i = 0; i < WYC_LOBBY_MAX_PENDING; i++)
        if (!c->pending[i].id)
            return &c->pending[i];
    return NULL;
}

static int request(wyc_client_t *c, Wyvern__Lobby__ClientMessage *m, int kind, void *cb, void *ud)
{
    if (c->closing || c->lstate != LB_READY || !c->conn)
        return WY_ESTATE;
    wyc_pending_t *p = pending_slot(c);
    if (!p)
        return WY_EBUSY;
    if (!take_token(c))
        return WY_ELIMIT;
    if (++c->next_req == 0)
        c->next_req = 1;
    m->request_id = c->next_req;
    int rc = send_msg(c, m);
    if (rc != WY_OK)
        return rc;
    p->id = m->request_id;
    p->kind = kind;
    p->cb = cb;
    p->ud = ud;
    p->deadline_ms = wy_now_ms() + c->ctx->cfg.timeout_ms;
    return WY_OK;
}

int wyc_lobby_set_nickname(wyc_client_t *c, const char *nickname, wyc_nickname_cb cb, void *ud)
{
    if (!nickname || !cb || strlen(nickname) > 1024)
        return WY_EINVAL;
    Wyvern__Lobby__SetNickname sn = WYVERN__LOBBY__SET_NICKNAME__INIT;
    sn.nickname = (char *)nickname;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_SET_NICKNAME;
    m.set_nickname = &sn;
    return request(c, &m, PEND_NICK, (void *)cb, ud);
}

int wyc_lobby_presence(wyc_client_t *c, const char *const *account_ids, size_t n_ids,
                       const char *const *nicknames, size_t n_nicks, wyc_presence_cb cb, void *ud)
{
    if (!cb || n_ids + n_nicks == 0 || n_ids + n_nicks > WYC_PRESENCE_MAX ||
        (n_ids && !account_ids) || (n_nicks && !nicknames))
        return WY_EINVAL;
    Wyvern__Lobby__GetPresence gp = WYVERN__LOBBY__GET_PRESENCE__INIT;
    gp.n_account_ids = n_ids;
    gp.account_ids = (char **)account_ids;
    gp.n_nicknames = n_nicks;
    gp.nicknames = (char **)nicknames;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_GET_PRESENCE;
    m.get_presence = &gp;
    return request(c, &m, PEND_PRESENCE, (void *)cb, ud);
}

int wyc__lobby_request(wyc_client_t *c, Wyvern__Lobby__ClientMessage *m, wyc__lobby_reply_cb cb,
                       void *ud)
{
    return request(c, m, PEND_RAW, (void *)cb, ud);
}
