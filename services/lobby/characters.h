/* wy-lobby characters and friends: the client messages 30..49 of lobby.proto, served by
 * wy-actor over gRPC (WY_LOBBY_ACTOR_GRPC), friend lists with presence (presence.h), and
 * the delivery of friend pushes to local sessions (from friend_events.c, which follows the
 * committed wy.actor events). Loop thread. */
#ifndef LOBBY_CHARACTERS_H
#define LOBBY_CHARACTERS_H

#include "lobby-t.h"
#include "lobby.pb-c.h"

/* Opens the channel to wy-actor when WY_LOBBY_ACTOR_GRPC is set. WY_OK, or an error with
 * *err for the configuration. */
int lobby_chars_start(lobby_t *lb, const char **err);
/* Closes it (calls in flight end with WY_ECANCELED). */
void lobby_chars_stop(lobby_t *lb);

/* Handles a ready session's message m if it is one of the character/friend messages
 * (true), else false. t0: when its frame arrived. */
bool lobby_chars_dispatch(lobby_conn_t *c, const Wyvern__Lobby__ClientMessage *m, uint64_t t0);

/* A "notify.friend" payload from wy.notify (what lobby instances of an earlier version
 * publish): pushed to its account's session here, if any. */
void lobby_chars_on_notify(lobby_t *lb, const uint8_t *payload, size_t len, const char *event_id);
/* Pushes p to account's session if it is ready on this instance (friend_events.c). */
void lobby_chars_push_friend(lobby_t *lb, const char *account, const Wyvern__Lobby__FriendPush *p);

#endif
