/* wy-lobby hello: a connection's first message, from access token to welcome (verify the
 * token, load the nickname, claim the session in Redis, which also reads auth's revocation
 * keys; auth is asked only when Redis lacks its revocation marker).
 * Loop thread only. Sits on store, nickname, tokens and wire (README "Code map"). */
#ifndef LOBBY_HELLO_H
#define LOBBY_HELLO_H

#include "lobby-t.h"
#include "lobby.pb-c.h"

/* Handles hello{access_token} (request req) of a connection in LOBBY_ST_HELLO. Ends with
 * welcome (LOBBY_ST_READY) or an error status and a close (README "Client protocol" 1-2). */
void lobby_hello(lobby_conn_t *c, uint32_t req, const Wyvern__Lobby__Hello *h);

#endif
