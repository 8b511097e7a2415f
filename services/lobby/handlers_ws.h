/* wy-lobby WebSocket handlers: one client message in, its handler by message type
 * (hello, heartbeat, set_nickname, get_presence, logout). Loop thread only. Sits on hello,
 * store, nickname and wire (README "Code map"). */
#ifndef LOBBY_HANDLERS_WS_H
#define LOBBY_HANDLERS_WS_H

#include "lobby-t.h"

/* The wy_ws on_message callback of the /v1/lobby route (ud is the lobby state): the rate
 * limit, decoding, then dispatch on the connection's state and the message type. */
void lobby_ws_on_message(wy_ws_conn_t *ws, bool is_binary, const uint8_t *data, size_t len,
                         void *ud);

#endif
