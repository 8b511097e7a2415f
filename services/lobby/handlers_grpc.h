/* wy-lobby gRPC handlers: wyvern.lobby.Lobby (Kick, GetSession, Notify). Sits on store and
 * state (README "Code map"). */
#ifndef LOBBY_HANDLERS_GRPC_H
#define LOBBY_HANDLERS_GRPC_H

#include "lobby-t.h"

/* Registers the wyvern.lobby.Lobby methods on the daemon's gRPC server (at start). On
 * error *err says why. */
int lobby_grpc_register(lobby_t *lb, const char **err);

#endif
