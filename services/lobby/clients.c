/* wy-lobby clients: the WebSocket server of /v1/lobby, the list of open connections and
 * their deadlines, and the stop that lets clients answer close 1001 before the server
 * goes. Messages are handled in handlers_ws.c. */
#include "clients.h"
#include "handlers_ws.h"
#include "relay.h"
#include "state.h"
#include "store.h"
#include "tokens.h"
#include "wire.h"

#include <string.h>

#define WS_PATH "/v1/lobby"

static void on_open(wy_ws_conn_t *ws, const wy_http_req_t *req, void *ud)
{
    WY_UNUSED(req);
    lobby_t *lb = ud;
    lobby_conn_t *c = wy_calloc(1, sizeof *c);
    c->lb = lb;
    lobby_ref(lb);
    lb->nalloc++;
    c->ws = ws;
    c->refs = 1; /* the WebSocket's own reference, dropped in on_close */
    c->state = LOBBY_ST_HELLO;
    c->opened_ms = c->last_msg_ms = c->bucket_ms = wy_now_ms();
    c->bucket = (double)lb->cfg->max_msgs_per_sec;
    snprintf(c->peer, sizeof c->peer, "%s", wy_ws_peer(ws));
    snprintf(c->session_state, sizeof c->session_state, "online");
    wy_list_push_front(&lb->conns, &c->node);
    lb->nconns++;
    wy_ws_set_user(ws, c);
    if (lb->stopping)
        lobby_conn_close(c, WY_WS_GOING_AWAY, "server stopping");
}

static void on_close(wy_ws_conn_t *ws, int code, const char *reason, void *ud)
{
    WY_UNUSED(code);
    WY_UNUSED(reason);
    lobby_t *lb = ud;
    lobby_conn_t *c = wy_ws_user(ws);
    if (!c)
        return;
    wy_list_remove(&c->node);
    lb->nconns--;
    if (c->counted)
        wy_metric_add(lb->m_sessions, -1);
    c->counted = false;
    c->ws = NULL;
    wy_map_del_if(lb->by_account, c->account, strlen(c->account), c);
    /* A session that was live goes offline now (a fenced one is left alone by the epoch
     * check of the script). */
    lobby_session_release(c);
    c->state = LOBBY_ST_CLOSING;
    lobby_conn_unref(c);
}

static void on_sweep(uv_timer_t *t)
{
    lobby_t *lb = t->data;
    uint64_t now = wy_now_ms();
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &lb->conns)
    {
        lobby_conn_t *c = wy_container_of(pos, lobby_conn_t, node);
        if (c->state == LOBBY_ST_HELLO && now - c->opened_ms >= (uint64_t)lb->cfg->hello_ms)
            lobby_conn_close(c, LOBBY_CLOSE_HELLO_TIMEOUT, "no hello in time");
        else if (c->state == LOBBY_ST_READY && now - c->last_msg_ms >= (uint64_t)lb->cfg->idle_ms)
            lobby_conn_close(c, LOBBY_CLOSE_IDLE, "idle timeout");
    }
    lobby_instance_alive(lb);
    lobby_keys_tick(lb);
    lobby_relay_tick(lb);
    lobby_store_tick(lb);
}

/* ---------------------------------------------------------------- start / stop */

int lobby_clients_start(lobby_t *lb, const char **err)
{
    static char msg[256];
    wy_http_limits_t l;
    wy_http_limits_default(&l);
    l.max_connections = (unsigned)lb->cfg->max_conns;
    l.ws_max_message_bytes = (size_t)lb->cfg->max_message;
    l.ws_max_send_queue_bytes = 256 * 1024;
    l.ws_send_budget_bytes = (size_t)lb->cfg->ws_send_budget;
    l.max_header_bytes = 8192;
    l.max_body_bytes = 1024;
    l.ws_ping_interval_ms = (uint64_t)lb->cfg->heartbeat_ms;
    /* The protocol's own idle timeout (4005) acts first; this one catches dead TCP peers. */
    l.ws_idle_timeout_ms = (uint64_t)lb->cfg->idle_ms + (uint64_t)lb->cfg->heartbeat_ms;
    /* A session is idle between heartbeats: no framing state held meanwhile (~8.8 KB each). */
    l.ws_park_idle = true;
    int rc = wy_http_server_new(lb->loop, &l, &lb->ws);
    if (rc != WY_OK) {
        *err = "cannot create the WebSocket server";
        return rc;
    }
    lb->ws_live = true;
    lobby_ref(lb); /* dropped by ws_closed */
    wy_ws_handlers_t h = {
        .on_open = on_open, .on_message = lobby_ws_on_message, .on_close = on_close, .ud = lb};
    wy_ws_route(lb->ws, WS_PATH, &h);
    const char *e = NULL;
    rc = wy_http_listen(lb->ws, wy_daemon_bind_host(lb->d), (int)lb->cfg->ws_port, &e);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "WY_LOBBY_WS_PORT %d: %s", (int)lb->cfg->ws_port,
                 e ? e : wy_strerror(rc));
        *err = msg;
        return rc;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", wy_http_port(lb->ws));
    wy_log_info("websocket listening", "port", port, "path", WS_PATH, NULL);
    uv_timer_init(lb->loop, &lb->sweep);
    lb->sweep.data = lb;
    uint64_t every =
        (uint64_t)(lb->cfg->hello_ms < lb->cfg->idle_ms ? lb->cfg->hello_ms : lb->cfg->idle_ms) / 4;
    if (every < 20)
        every = 20;
    if (every > 500)
        every = 500;
    uv_timer_start(&lb->sweep, on_sweep, 0, every);
    lb->sweep_started = true;
    lobby_ref(lb);
    return WY_OK;
}

static void ws_closed(void *ud)
{
    lobby_t *lb = ud;
    lb->ws_live = false;
    lobby_unref(lb);
}

/* The end of the polite part of the stop: what is still open is closed now (best-effort
 * 1001 by wy_http_close; on_close releases each session while Redis is still open). */
static void close_ws_server(lobby_t *lb)
{
    if (lb->stop_timer_started) {
        lobby_close_handle((uv_handle_t *)&lb->stop_timer);
        lb->stop_timer_started = false;
    }
    if (lb->ws) {
        wy_http_close(lb->ws, ws_closed, lb);
        lb->ws = NULL;
    }
}

static void on_stop_timer(uv_timer_t *t)
{
    lobby_t *lb = t->data;
    if (lb->nconns == 0 || wy_now_ms() >= lb->stop_deadline_ms)
        close_ws_server(lb);
}

/* Part of the drain time for the clients' close answers; the rest is for releasing
 * the sessions of those that did not answer. */
static uint64_t stop_grace_ms(const lobby_t *lb)
{
    uint64_t drain = (uint64_t)wy_daemon_drain_ms(lb->d);
    return drain - (drain / 4 < 500 ? drain / 4 : 500);
}

void lobby_clients_stop(lobby_t *lb)
{
    lobby_store_tick(lb); /* no hello waits for the sweep below any more */
    if (lb->sweep_started) {
        uv_timer_stop(&lb->sweep);
        lobby_close_handle((uv_handle_t *)&lb->sweep);
        lb->sweep_started = false;
    }
    if (!lb->ws) {
        close_ws_server(lb);
        return;
    }
    wy_http_stop(lb->ws);
    /* Clients reconnect elsewhere on 1001. Connections already closing (a kicked or error
     * message still being sent) finish their own close. */
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &lb->conns)
    {
        lobby_conn_close(wy_container_of(pos, lobby_conn_t, node), WY_WS_GOING_AWAY,
                         "server stopping");
    }
    if (lb->nconns == 0) {
        close_ws_server(lb);
        return;
    }
    lb->stop_deadline_ms = wy_now_ms() + stop_grace_ms(lb);
    uv_timer_init(lb->loop, &lb->stop_timer);
    lb->stop_timer.data = lb;
    uv_timer_start(&lb->stop_timer, on_stop_timer, 10, 10);
    lb->stop_timer_started = true;
    lobby_ref(lb);
}

size_t lobby_clients_busy(const lobby_t *lb)
{
    return (lb->ws_live ? 1 : 0) + lb->nalloc;
}
