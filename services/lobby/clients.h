/* wy-lobby clients: the client WebSocket server and the set of open connections (open,
 * close, hello and idle deadlines, the polite stop with close 1001). Loop thread only.
 * Sits on handlers_ws, store, tokens and wire (README "Code map"). */
#ifndef LOBBY_CLIENTS_H
#define LOBBY_CLIENTS_H

#include "lobby-t.h"

/* Listens on WY_BIND_HOST:WY_LOBBY_WS_PORT (path /v1/lobby) and starts the sweep timer.
 * On error *err says why (static string). */
int lobby_clients_start(lobby_t *lb, const char **err);
/* Stop: no new connections; every client gets close 1001 "server stopping"; the WebSocket
 * server closes once all have answered or at the drain deadline (sessions released in
 * Redis meanwhile). */
void lobby_clients_stop(lobby_t *lb);
/* Work the stop still waits for: WebSocket server open, connections not yet freed. */
size_t lobby_clients_busy(const lobby_t *lb);

#endif
