/* wy-lobby state lifetime: references to the daemon's lobby state and to one client
 * connection. Every lobby module above the map uses these (README "Code map"). */
#ifndef LOBBY_STATE_H
#define LOBBY_STATE_H

#include "lobby-t.h"

/* The daemon's lobby state; NULL before start and once it has been freed. */
lobby_t *lobby_get(wy_daemon_t *d);
/* Takes / drops a reference to lb (loop thread). The last unref frees lb. */
void lobby_ref(lobby_t *lb);
void lobby_unref(lobby_t *lb);
/* Closes a uv handle whose data is lb, dropping the reference the handle held. */
void lobby_close_handle(uv_handle_t *h);
/* Takes / drops a reference to a connection (loop thread). The last unref unregisters it
 * from by_sid / by_account, frees it and drops its reference to the lobby state. */
void lobby_conn_ref(lobby_conn_t *c);
void lobby_conn_unref(lobby_conn_t *c);

#endif
