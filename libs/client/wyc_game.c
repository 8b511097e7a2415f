/* wyc game connection: a WebSocket to a game instance (own upgrade over uv_tcp_t, wslay
 * client framing, the upgrade answer checked by wyc__ws_upgrade_check), join(ticket) ->
 * welcome, leave -> left, and the close; inputs (wyc_game_move) and the mirror of the
 * visible entities kept from the updates (wy_gamewire). */
#include "wyc_int.h"
#include "game.pb-c.h"
#include "wy_gamewire.h"

#include <math.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECV_MAX (1024 * 1024)

struct wyc_game {
    wyc_ctx_t *ctx;
    wyc_game_cb cb;
    void *ud;
    bool detached; /* wyc_game_close: no event after it */
    bool finished; /* CLOSED emitted */
    bool joined, left;
    char host[256];
    int port;
    wyc_entry_t entry;
    uv_getaddrinfo_t gai;
    bool resolving;
    uv_connect_t connect;
    uv_tcp_t tcp;
    bool tcp_open;
    uv_timer_t timer; /* join deadline */
    bool timer_open;
    char key[32];
    wy_buf_t in;
    size_t in_off;
    bool upgraded;
    wslay_event_context_ptr ws;
    wyc_error_t refusal; /* the server's error message, if it sent one */
    bool refused;
    /* the simulation */
    uint32_t self, seq;
    uint32_t chat_req; /* request ids of wyc_game_chat_send */
    wy_gw_mirror_t mirror;
    wy_gw_entity_t ents[1024];
    int handles; /* open uv handles: freed when 0 and detached or finished */
};

typedef struct {
    uv_write_t req;
    char *data;
} wreq_t;

static void game_maybe_free(wyc_game_t *g)
{
    if (g->handles == 0 && !g->resolving && (g->detached || g->finished)) {
        if (g->ws)
            wslay_event_context_free(g->ws);
        wy_buf_free(&g->in);
        wy_free(g);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    wyc_game_t *g = h->data;
    g->handles--;
    game_maybe_free(g);
}

static void close_handles(wyc_game_t *g)
{
    if (g->tcp_open && !uv_is_closing((uv_handle_t *)&g->tcp))
        uv_close((uv_handle_t *)&g->tcp, on_handle_closed);
    if (g->timer_open && !uv_is_closing((uv_handle_t *)&g->timer))
        uv_close((uv_handle_t *)&g->timer, on_handle_closed);
}

static void emit(wyc_game_t *g, const wyc_game_event_t *ev)
{
    if (!g->detached && !g->finished && g->cb)
        g->cb(g, ev, g->ud);
}

/* The end: CLOSED with e (once), handles closed, freed when they are. */
static void game_end(wyc_game_t *g, const wyc_error_t *e)
{
    if (g->finished)
        return;
    wyc_game_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = WYC_GAME_EV_CLOSED;
    ev.error = g->refused ? g->refusal : *e;
    if (g->refused)
        ev.error.ws_close = e->ws_close;
    emit(g, &ev);
    g->finished = true;
    close_handles(g);
    game_maybe_free(g);
}

static void fail(wyc_game_t *g, int code, wyc_source_t src, const char *what)
{
    wyc_error_t e;
    wyc__err_set(&e, code, src, "game at %s:%d: %s", g->host, g->port, what);
    game_end(g, &e);
}

/* ---- writing ---- */

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    wyc_game_t *g = req->data;
    wy_free(w->data);
    wy_free(w);
    if (status < 0 && status != UV_ECANCELED)
        fail(g, WY_EUNAVAIL, WYC_SRC_NETWORK, "connection lost while sending");
}

static int raw_write(wyc_game_t *g, const void *data, size_t len)
{
    if (!g->tcp_open || uv_is_closing((uv_handle_t *)&g->tcp))
        return WY_ESTATE;
    wreq_t *w = wy_calloc(1, sizeof *w);
    w->data = wy_malloc(len ? len : 1);
    memcpy(w->data, data, len);
    w->req.data = g;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&g->tcp, &b, 1, on_written) < 0) {
        wy_free(w->data);
        wy_free(w);
        return WY_EIO;
    }
    return WY_OK;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    (void)flags;
    if (raw_write(ud, data, len) != WY_OK) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    wyc_game_t *g = ud;
    size_t avail = g->in.len - g->in_off;
    if (avail == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    len = len < avail ? len : avail;
    memcpy(buf, g->in.data + g->in_off, len);
    g->in_off += len;
    return (ssize_t)len;
}

static int ws_mask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud)
{
    (void)ctx, (void)ud;
    wy_random(buf, len);
    return 0;
}

static int send_client_msg(wyc_game_t *g, Wyvern__Game__ClientMessage *m)
{
    if (!g->ws)
        return WY_ESTATE;
    size_t n = wyvern__game__client_message__get_packed_size(m);
    uint8_t *buf = wy_malloc(n ? n : 1);
    wyvern__game__client_message__pack(m, buf);
    struct wslay_event_msg msg = {WSLAY_BINARY_FRAME, buf, n};
    int rc = wslay_event_queue_msg(g->ws, &msg);
    wy_free(buf);
    if (rc != 0 || wslay_event_send(g->ws) != 0)
        return WY_ESTATE;
    return WY_OK;
}

/* ---- reading ---- */

static const char *game_code_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&wyvern__game__code__descriptor, code);
    return v ? v->name : "UNKNOWN";
}

static int game_code_err(int code)
{
    switch (code) {
    case WYVERN__GAME__CODE__TICKET_MALFORMED:
    case WYVERN__GAME__CODE__INVALID:
        return WY_EINVAL;
    case WYVERN__GAME__CODE__TICKET_FORGED:
    case WYVERN__GAME__CODE__TICKET_EXPIRED:
        return WY_EAUTH;
    case WYVERN__GAME__CODE__TICKET_WRONG_INSTANCE:
    case WYVERN__GAME__CODE__TICKET_REPLAYED:
        return WY_EPERM;
    case WYVERN__GAME__CODE__BUSY:
    case WYVERN__GAME__CODE__UNAVAILABLE:
        return WY_EUNAVAIL;
    case WYVERN__GAME__CODE__FULL:
        return WY_ELIMIT;
    case WYVERN__GAME__CODE__ALREADY_JOINED:
        return WY_ESTATE;
    default:
        return WY_EINTERNAL;
    }
}

static void on_server_msg(wyc_game_t *g, const Wyvern__Game__ServerMessage *m)
{
    wyc_game_event_t ev;
    memset(&ev, 0, sizeof ev);
    switch (m->body_case) {
    case WYVERN__GAME__SERVER_MESSAGE__BODY_WELCOME: {
        const Wyvern__Game__Welcome *w = m->welcome;
        wyc_game_welcome_t *o = &ev.welcome;
        ev.type = WYC_GAME_EV_WELCOME;
        o->entity_id = w->entity_id;
        snprintf(o->account_id, sizeof o->account_id, "%s", w->account_id);
        snprintf(o->character_id, sizeof o->character_id, "%s", w->character_id);
        snprintf(o->zone_id, sizeof o->zone_id, "%s", w->zone_id);
        snprintf(o->instance_id, sizeof o->instance_id, "%s", w->instance_id);
        snprintf(o->game_id, sizeof o->game_id, "%s", w->game_id);
        o->tick_rate = w->tick_rate;
        o->x = w->position ? w->position->x : 0;
        o->y = w->position ? w->position->y : 0;
        o->max_message_bytes = w->max_message_bytes;
        g->joined = true;
        g->self = (uint32_t)w->entity_id;
        if (g->timer_open)
            uv_timer_stop(&g->timer);
        emit(g, &ev);
        break;
    }
    case WYVERN__GAME__SERVER_MESSAGE__BODY_LEFT:
        ev.type = WYC_GAME_EV_LEFT;
        ev.x = m->left->position ? m->left->position->x : 0;
        ev.y = m->left->position ? m->left->position->y : 0;
        g->left = true;
        emit(g, &ev);
        break;
    case WYVERN__GAME__SERVER_MESSAGE__BODY_ERROR:
        /* A refused join is followed by the close; other errors leave the game as it is. */
        if (!g->joined) {
            g->refused = true;
            wyc__err_set(&g->refusal, game_code_err((int)m->error->code), WYC_SRC_SERVER, "%s",
                         m->error->message[0] ? m->error->message
                                              : game_code_name((int)m->error->code));
            snprintf(g->refusal.server_code, sizeof g->refusal.server_code, "%s",
                     game_code_name((int)m->error->code));
        }
        break;
    case WYVERN__GAME__SERVER_MESSAGE__BODY_UPDATE: {
        const Wyvern__Game__Update *u = m->update;
        wy_gw_applied_t a;
        const char *err = NULL;
        if (wy_gw_mirror_apply(&g->mirror, u->reset, u->entered.data, u->entered.len,
                               u->changed.data, u->changed.len, u->left.data, u->left.len, &a,
                               &err) != WY_OK) {
            wyc_error_t e;
            wyc__err_set(&e, WY_EIO, WYC_SRC_PROTOCOL, "bad update from the game: %s", err);
            game_end(g, &e);
            return;
        }
        ev.type = WYC_GAME_EV_UPDATE;
        wyc_game_update_t *o = &ev.update;
        o->tick = u->tick;
        o->ack = u->ack;
        o->reset = u->reset;
        o->corrected = u->correction != NULL;
        const wy_gw_entity_t *me = wy_gw_mirror_find(&g->mirror, g->self);
        if (u->correction) {
            o->x = wy_gw_metres((int32_t)u->correction->qx);
            o->y = wy_gw_metres((int32_t)u->correction->qy);
        } else if (me) {
            o->x = wy_gw_metres(me->qx);
            o->y = wy_gw_metres(me->qy);
        }
        o->entered = (uint32_t)a.entered;
        o->changed = (uint32_t)a.changed;
        o->left = (uint32_t)a.left;
        o->bytes = wyvern__game__server_message__get_packed_size(m);
        emit(g, &ev);
        break;
    }
    case WYVERN__GAME__SERVER_MESSAGE__BODY_CHAT_MESSAGE: {
        wyc_chat_message_t *cm = wy_calloc(1, sizeof *cm); /* ~2.5 KiB: not on the stack */
        wyc__chat_copy(cm, m->chat_message);
        ev.type = WYC_GAME_EV_CHAT;
        ev.chat = cm;
        emit(g, &ev);
        wy_free(cm);
        break;
    }
    case WYVERN__GAME__SERVER_MESSAGE__BODY_CHAT_SENT:
    case WYVERN__GAME__SERVER_MESSAGE__BODY_CHAT_ERROR: {
        wyc_chat_result_t *r = wy_calloc(1, sizeof *r); /* ~2 KiB: not on the stack */
        ev.type = WYC_GAME_EV_CHAT_SENT;
        ev.request_id = m->request_id;
        if (m->body_case == WYVERN__GAME__SERVER_MESSAGE__BODY_CHAT_SENT) {
            wyc__chat_sent_copy(r, m->chat_sent);
            ev.chat_sent = r;
        } else {
            wyc__status_err(&ev.error, m->chat_error);
        }
        emit(g, &ev);
        wy_free(r);
        break;
    }
    default:
        break;
    }
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *ud)
{
    (void)ctx;
    wyc_game_t *g = ud;
    if (arg->opcode != WSLAY_BINARY_FRAME)
        return;
    Wyvern__Game__ServerMessage *m =
        wyvern__game__server_message__unpack(NULL, arg->msg_length, arg->msg);
    if (!m)
        return;
    on_server_msg(g, m);
    wyvern__game__server_message__free_unpacked(m, NULL);
}

/* The server closed (close frame or EOF). */
static void closed_by_server(wyc_game_t *g)
{
    int code = g->ws ? wslay_event_get_status_code_received(g->ws) : 0;
    wyc_error_t e;
    if (g->left && (code == 1000 || code == 0 || code == WSLAY_CODE_NO_STATUS_RCVD))
        wyc__err_set(&e, WY_OK, WYC_SRC_NONE, "left the game");
    else
        wyc__err_set(&e, code == 1001 || code == 4007 ? WY_EUNAVAIL : WY_EIO, WYC_SRC_SERVER,
                     "game at %s:%d closed the connection (%d)", g->host, g->port, code);
    e.ws_close = code;
    game_end(g, &e);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    wyc_game_t *g = h->data;
    *buf = uv_buf_init(g->ctx->rbuf, sizeof g->ctx->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    wyc_game_t *g = s->data;
    if (g->finished || n == 0)
        return;
    if (n < 0) {
        if (g->upgraded)
            closed_by_server(g);
        else
            fail(g, WY_EUNAVAIL, WYC_SRC_NETWORK, "connection closed during the upgrade");
        return;
    }
    if (g->in.len - g->in_off + (size_t)n > RECV_MAX + 64 * 1024) {
        fail(g, WY_ETOOBIG, WYC_SRC_PROTOCOL, "more than the client buffers");
        return;
    }
    wy_buf_append(&g->in, buf->base, (size_t)n);
    if (!g->upgraded) {
        size_t hlen = 0;
        int status = 0;
        int r = wyc__ws_upgrade_check(g->in.data, g->in.len, g->key, &hlen, &status);
        if (r == WYC_UPGRADE_MORE)
            return;
        if (r != WYC_UPGRADE_OK) {
            char what[96];
            snprintf(what, sizeof what, "WebSocket upgrade refused (HTTP %d)", status);
            fail(g, status == 503 ? WY_EUNAVAIL : WY_EIO, WYC_SRC_PROTOCOL, what);
            return;
        }
        g->in_off = hlen;
        g->upgraded = true;
        struct wslay_event_callbacks cbs = {.recv_callback = ws_recv,
                                            .send_callback = ws_send,
                                            .genmask_callback = ws_mask,
                                            .on_msg_recv_callback = ws_on_msg};
        if (wslay_event_context_client_init(&g->ws, &cbs, g) != 0) {
            fail(g, WY_EINTERNAL, WYC_SRC_CLIENT, "cannot create the WebSocket context");
            return;
        }
        wslay_event_config_set_max_recv_msg_length(g->ws, RECV_MAX);
        Wyvern__Game__Join j = WYVERN__GAME__JOIN__INIT;
        j.ticket = g->entry.ticket;
        j.client_version = g->ctx->client_version;
        Wyvern__Game__ClientMessage m = WYVERN__GAME__CLIENT_MESSAGE__INIT;
        m.request_id = 1;
        m.body_case = WYVERN__GAME__CLIENT_MESSAGE__BODY_JOIN;
        m.join = &j;
        if (send_client_msg(g, &m) != WY_OK) {
            fail(g, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot send join");
            return;
        }
    }
    if (wslay_event_recv(g->ws) != 0 || wslay_event_send(g->ws) != 0) {
        closed_by_server(g);
        return;
    }
    /* Drop what wslay consumed. */
    if (g->in_off == g->in.len) {
        g->in.len = 0;
        g->in_off = 0;
    }
    if (!g->finished && wslay_event_get_close_received(g->ws) && !wslay_event_want_write(g->ws))
        closed_by_server(g);
}

/* ---- connecting ---- */

static void on_connected(uv_connect_t *req, int status)
{
    wyc_game_t *g = req->data;
    if (g->finished)
        return;
    if (status < 0) {
        char what[128];
        snprintf(what, sizeof what, "cannot connect: %s", uv_strerror(status));
        fail(g, WY_EUNAVAIL, WYC_SRC_NETWORK, what);
        return;
    }
    uv_tcp_nodelay(&g->tcp, 1);
    unsigned char raw[16];
    wy_random(raw, sizeof raw);
    EVP_EncodeBlock((unsigned char *)g->key, raw, sizeof raw);
    char *up = wy_sprintf("GET /v1/game HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n",
                          g->host, g->port, g->key);
    int rc = raw_write(g, up, strlen(up));
    wy_free(up);
    if (rc != WY_OK || uv_read_start((uv_stream_t *)&g->tcp, on_alloc, on_read) != 0)
        fail(g, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot send the upgrade");
}

static void connect_to(wyc_game_t *g, const struct sockaddr *sa)
{
    uv_tcp_init(g->ctx->loop, &g->tcp);
    g->tcp.data = g;
    g->tcp_open = true;
    g->handles++;
    g->connect.data = g;
    if (uv_tcp_connect(&g->connect, &g->tcp, sa, on_connected) != 0)
        fail(g, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot start the connection");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    wyc_game_t *g = req->data;
    g->resolving = false;
    if (g->detached || g->finished) {
        if (res)
            uv_freeaddrinfo(res);
        game_maybe_free(g);
        return;
    }
    if (status < 0 || !res) {
        fail(g, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot resolve the host");
    } else {
        connect_to(g, res->ai_addr);
    }
    if (res)
        uv_freeaddrinfo(res);
}

static void on_deadline(uv_timer_t *t)
{
    wyc_game_t *g = t->data;
    if (!g->joined)
        fail(g, WY_ETIMEDOUT, WYC_SRC_NETWORK, "no welcome in time");
}

int wyc_game_join(wyc_ctx_t *ctx, const wyc_entry_t *entry, wyc_game_cb cb, void *ud,
                  wyc_game_t **out)
{
    const char *colon = entry ? strrchr(entry->game_addr, ':') : NULL;
    if (!ctx || !cb || !out || !colon || colon == entry->game_addr || !entry->ticket[0] ||
        (size_t)(colon - entry->game_addr) >= sizeof((wyc_game_t *)0)->host)
        return WY_EINVAL;
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535)
        return WY_EINVAL;
    wyc_game_t *g = wy_calloc(1, sizeof *g);
    wy_gw_mirror_init(&g->mirror, g->ents, WY_ARRAY_LEN(g->ents));
    g->ctx = ctx;
    g->cb = cb;
    g->ud = ud;
    g->entry = *entry;
    g->port = port;
    memcpy(g->host, entry->game_addr, (size_t)(colon - entry->game_addr));
    uv_timer_init(ctx->loop, &g->timer);
    g->timer.data = g;
    g->timer_open = true;
    g->handles++;
    uv_timer_start(&g->timer, on_deadline, ctx->cfg.timeout_ms ? ctx->cfg.timeout_ms : 10000, 0);
    struct sockaddr_in6 sa6;
    struct sockaddr_in sa4;
    if (uv_ip4_addr(g->host, port, &sa4) == 0) {
        connect_to(g, (const struct sockaddr *)&sa4);
    } else if (uv_ip6_addr(g->host, port, &sa6) == 0) {
        connect_to(g, (const struct sockaddr *)&sa6);
    } else {
        char ps[8];
        snprintf(ps, sizeof ps, "%d", port);
        g->gai.data = g;
        g->resolving = true;
        if (uv_getaddrinfo(ctx->loop, &g->gai, on_resolved, g->host, ps, NULL) != 0) {
            g->resolving = false;
            fail(g, WY_EUNAVAIL, WYC_SRC_NETWORK, "cannot resolve the host");
        }
    }
    *out = g;
    return WY_OK;
}

int wyc_game_leave(wyc_game_t *g)
{
    if (!g->joined || g->finished || g->left)
        return WY_ESTATE;
    Wyvern__Game__Leave l = WYVERN__GAME__LEAVE__INIT;
    Wyvern__Game__ClientMessage m = WYVERN__GAME__CLIENT_MESSAGE__INIT;
    m.request_id = 2;
    m.body_case = WYVERN__GAME__CLIENT_MESSAGE__BODY_LEAVE;
    m.leave = &l;
    return send_client_msg(g, &m);
}

void wyc_game_close(wyc_game_t *g)
{
    if (!g)
        return;
    g->detached = true;
    close_handles(g);
    game_maybe_free(g);
}

void *wyc_game_userdata(const wyc_game_t *g)
{
    return g->ud;
}

static int64_t send_input(wyc_game_t *g, Wyvern__Game__Input *in)
{
    if (!g->joined || g->finished || g->left)
        return WY_ESTATE;
    in->seq = ++g->seq;
    Wyvern__Game__ClientMessage m = WYVERN__GAME__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__GAME__CLIENT_MESSAGE__BODY_INPUT;
    m.input = in;
    int rc = send_client_msg(g, &m);
    return rc == WY_OK ? (int64_t)in->seq : rc;
}

int64_t wyc_game_move(wyc_game_t *g, int mode, double heading_deg)
{
    if (mode < 0 || mode > 2 || !isfinite(heading_deg))
        return WY_EINVAL;
    Wyvern__Game__Input in = WYVERN__GAME__INPUT__INIT;
    in.mode = (Wyvern__Game__MoveMode)mode;
    double turns = fmod(heading_deg / 360.0, 1.0);
    if (turns < 0)
        turns += 1.0;
    in.dir = (uint32_t)lround(turns * 65536.0) & 0xffff;
    return send_input(g, &in);
}

int64_t wyc_game_move_to(wyc_game_t *g, int mode, double x, double y)
{
    if (mode < 0 || mode > 2 || !isfinite(x) || !isfinite(y))
        return WY_EINVAL;
    Wyvern__Game__Input in = WYVERN__GAME__INPUT__INIT;
    Wyvern__Game__Vec2 t = WYVERN__GAME__VEC2__INIT;
    t.x = x;
    t.y = y;
    in.mode = (Wyvern__Game__MoveMode)mode;
    in.target = &t;
    return send_input(g, &in);
}

size_t wyc_game_entities(const wyc_game_t *g, wyc_entity_t *out, size_t max)
{
    for (size_t i = 0; i < g->mirror.n && i < max; i++) {
        const wy_gw_entity_t *e = &g->mirror.ents[i];
        out[i] = (wyc_entity_t){e->id, e->kind, e->mode, wy_gw_metres(e->qx), wy_gw_metres(e->qy)};
    }
    return g->mirror.n;
}

uint32_t wyc_game_self(const wyc_game_t *g)
{
    return g->self;
}

int64_t wyc_game_chat_send(wyc_game_t *g, const char *channel_id, const char *to_account_id,
                           const char *text)
{
    if (!text || strlen(text) > WYC_CHAT_TEXT_MAX || !channel_id == !to_account_id ||
        (channel_id && strlen(channel_id) >= WYC_CHAT_CHANNEL_MAX) ||
        (to_account_id && strlen(to_account_id) > 200))
        return WY_EINVAL;
    if (!g->joined || g->finished || g->left)
        return WY_ESTATE;
    Wyvern__Lobby__ChatSend s = WYVERN__LOBBY__CHAT_SEND__INIT;
    s.channel_id = (char *)(channel_id ? channel_id : "");
    s.to_account_id = (char *)(to_account_id ? to_account_id : "");
    s.text = (char *)text;
    Wyvern__Game__ClientMessage m = WYVERN__GAME__CLIENT_MESSAGE__INIT;
    if (++g->chat_req == 0)
        g->chat_req = 1;
    m.request_id = g->chat_req;
    m.body_case = WYVERN__GAME__CLIENT_MESSAGE__BODY_CHAT_SEND;
    m.chat_send = &s;
    int rc = send_client_msg(g, &m);
    return rc == WY_OK ? (int64_t)m.request_id : rc;
}
