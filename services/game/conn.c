/* wy-game connections: the WebSocket server of /v1/game, one game_conn_t per socket, the
 * join deadline, decoding client frames and dispatching them by message, sending
 * ServerMessages, and the stop that closes every socket with 1001 (players leave, their
 * positions saved). */
#include "game.h"
#include "wy_log.h"

#include <string.h>

#define WS_PATH "/v1/game"

static void on_open(wy_ws_conn_t *ws, const wy_http_req_t *req, void *ud)
{
    WY_UNUSED(req);
    game_t *g = ud;
    game_conn_t *c = wy_calloc(1, sizeof *c);
    c->g = g;
    c->ws = ws;
    c->opened_ms = wy_now_ms();
    snprintf(c->peer, sizeof c->peer, "%s", wy_ws_peer(ws));
    wy_list_init(&c->chat_sends);
    wy_list_push_front(&g->conns, &c->node);
    g->nconns++;
    wy_ws_set_user(ws, c);
    wy_ws_set_send_buffer(ws, (int)g->cfg->socket_sndbuf); /* best effort: see the config */
    if (g->stopping)
        game_conn_close(c, WY_WS_GOING_AWAY, "server stopping");
}

static void on_close(wy_ws_conn_t *ws, int code, const char *reason, void *ud)
{
    WY_UNUSED(code);
    WY_UNUSED(reason);
    game_t *g = ud;
    game_conn_t *c = wy_ws_user(ws);
    if (!c)
        return;
    wy_ws_set_user(ws, NULL);
    game_player_leave(c, 0); /* a disconnect is a leave */
    game_chat_conn_closed(c);
    c->ws = NULL;
    wy_list_remove(&c->node);
    g->nconns--;
    wy_free(c);
}

void game_conn_close(game_conn_t *c, int code, const char *reason)
{
    if (c->ws)
        wy_ws_close(c->ws, code, reason);
}

void game_send(game_conn_t *c, const Wyvern__Game__ServerMessage *m)
{
    if (!c->ws)
        return;
    size_t n = wyvern__game__server_message__get_packed_size(m);
    uint8_t *payload;
    wy_ws_frame_t *f = wy_ws_frame_alloc(true, n, &payload);
    wyvern__game__server_message__pack(m, payload);
    wy_ws_send_frame(c->ws, f); /* a failure closes the connection (too slow) */
    wy_ws_frame_unref(f);
}

void game_send_error(game_conn_t *c, uint32_t request_id, Wyvern__Game__Code code,
                     const char *message)
{
    Wyvern__Game__ServerMessage m = WYVERN__GAME__SERVER_MESSAGE__INIT;
    Wyvern__Game__Error e = WYVERN__GAME__ERROR__INIT;
    e.code = code;
    e.message = (char *)message;
    m.request_id = request_id;
    m.body_case = WYVERN__GAME__SERVER_MESSAGE__BODY_ERROR;
    m.error = &e;
    game_send(c, &m);
}

static void on_message(wy_ws_conn_t *ws, bool is_binary, const uint8_t *data, size_t len, void *ud)
{
    WY_UNUSED(ud);
    game_conn_t *c = wy_ws_user(ws);
    if (!c)
        return;
    uint64_t t0 = wy_now_ns();
    Wyvern__Game__ClientMessage *m =
        is_binary ? wyvern__game__client_message__unpack(NULL, len, data) : NULL;
    if (!m) {
        wy_ws_observe(ws, "invalid", t0, WY_OUTCOME_CLIENT_ERROR);
        game_send_error(c, 0, WYVERN__GAME__CODE__INVALID,
                        "not a ClientMessage (binary protobuf frames only)");
        game_conn_close(c, GAME_CLOSE_PROTOCOL, "undecodable frame");
        return;
    }
    switch (m->body_case) {
    case WYVERN__GAME__CLIENT_MESSAGE__BODY_JOIN:
        game_join(c, m->request_id, m->join);
        wy_ws_observe(ws, "join", t0, WY_OUTCOME_OK);
        break;
    case WYVERN__GAME__CLIENT_MESSAGE__BODY_LEAVE:
        if (!c->player) {
            game_send_error(c, m->request_id, WYVERN__GAME__CODE__INVALID, "not joined");
            wy_ws_observe(ws, "leave", t0, WY_OUTCOME_CLIENT_ERROR);
            break;
        }
        game_player_leave(c, m->request_id);
        game_conn_close(c, WY_WS_NORMAL, "left");
        wy_ws_observe(ws, "leave", t0, WY_OUTCOME_OK);
        break;
    /* The simulation's messages (fields 20 and up). */
    case WYVERN__GAME__CLIENT_MESSAGE__BODY_INPUT:
        if (!c->player) {
            game_send_error(c, m->request_id, WYVERN__GAME__CODE__INVALID,
                            "the first message must be join");
            game_conn_close(c, GAME_CLOSE_PROTOCOL, "first message not join");
            wy_ws_observe(ws, "input", t0, WY_OUTCOME_CLIENT_ERROR);
            break;
        }
        game_part_input(c, m->input); /* judged by the partition's rules at its tick */
        wy_ws_observe(ws, "input", t0, WY_OUTCOME_OK);
        break;
    case WYVERN__GAME__CLIENT_MESSAGE__BODY_CHAT_SEND: /* chat.c (issue 15) */
        if (!c->player) {
            game_send_error(c, m->request_id, WYVERN__GAME__CODE__INVALID, "not joined");
            wy_ws_observe(ws, "chat_send", t0, WY_OUTCOME_CLIENT_ERROR);
            break;
        }
        game_chat_send(c, m->request_id, m->chat_send);
        wy_ws_observe(ws, "chat_send", t0, WY_OUTCOME_OK);
        break;
    default:
        if (!c->player) {
            game_send_error(c, m->request_id, WYVERN__GAME__CODE__INVALID,
                            "the first message must be join");
            game_conn_close(c, GAME_CLOSE_PROTOCOL, "first message not join");
        } else {
            game_send_error(c, m->request_id, WYVERN__GAME__CODE__INVALID, "unknown message");
        }
        wy_ws_observe(ws, "unknown", t0, WY_OUTCOME_CLIENT_ERROR);
        break;
    }
    wyvern__game__client_message__free_unpacked(m, NULL);
}

static void on_sweep(uv_timer_t *t)
{
    game_t *g = t->data;
    uint64_t now = wy_now_ms();
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &g->conns)
    {
        game_conn_t *c = wy_container_of(pos, game_conn_t, node);
        if (!c->player && !c->joining && now - c->opened_ms >= (uint64_t)g->cfg->join_timeout_ms)
            game_conn_close(c, GAME_CLOSE_JOIN_TIMEOUT, "no join in time");
    }
}

int game_conns_start(game_t *g, const char **err)
{
    static char msg[256];
    wy_http_limits_t l;
    wy_http_limits_default(&l);
    l.max_connections = (unsigned)g->cfg->capacity + 64; /* room to answer FULL */
    l.ws_max_message_bytes = (size_t)g->cfg->max_message;
    l.ws_max_send_queue_bytes = 512 * 1024;
    l.max_header_bytes = 8192;
    l.max_body_bytes = 1024;
    int rc = wy_http_server_new(g->loop, &l, &g->ws);
    if (rc != WY_OK) {
        *err = "cannot create the WebSocket server";
        return rc;
    }
    wy_ws_handlers_t h = {
        .on_open = on_open, .on_message = on_message, .on_close = on_close, .ud = g};
    wy_ws_route(g->ws, WS_PATH, &h);
    const char *e = NULL;
    rc = wy_http_listen(g->ws, wy_daemon_bind_host(g->d), (int)g->cfg->ws_port, &e);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "WY_GAME_WS_PORT %d: %s", (int)g->cfg->ws_port,
                 e ? e : wy_strerror(rc));
        *err = msg;
        return rc;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", wy_http_port(g->ws));
    wy_log_info("websocket listening", "port", port, "path", WS_PATH, NULL);
    uv_timer_init(g->loop, &g->sweep);
    g->sweep.data = g;
    uint64_t every = (uint64_t)g->cfg->join_timeout_ms / 4;
    uv_timer_start(&g->sweep, on_sweep, every, every < 20 ? 20 : every);
    g->sweep_started = true;
    return WY_OK;
}

static void ws_closed(void *ud)
{
    game_t *g = ud;
    g->ws_closing = false;
}

/* Every connection closes with 1001 (each player leaves, its position is saved) and the
 * server closes at once: a game's clients go back to lobby, there is no answer to wait
 * for. */
void game_conns_stop(game_t *g)
{
    if (g->sweep_started) {
        uv_timer_stop(&g->sweep);
        uv_close((uv_handle_t *)&g->sweep, NULL);
        g->sweep_started = false;
    }
    if (!g->ws)
        return;
    wy_http_stop(g->ws);
    g->ws_closing = true;
    wy_http_close(g->ws, ws_closed, g);
    g->ws = NULL;
}
