/* wy-lobby chat: the client's chat requests forwarded to wy-chat over gRPC, and wy.chat
 * events delivered to this instance's connected recipients (each message encoded once,
 * wy_ws_broadcast). Loop thread only. Sits on wire and state (README "Code map"). */
#ifndef LOBBY_CHAT_H
#define LOBBY_CHAT_H

#include "lobby-t.h"

/* Opens the channel to wy-chat (WY_LOBBY_CHAT_GRPC; empty: chat requests answer
 * UNAVAILABLE and wy.chat events are still delivered). The channel connects lazily. WY_OK or
 * WY_EINVAL with *err. */
int lobby_chat_start(lobby_t *lb, const char **err);
void lobby_chat_stop(lobby_t *lb);

/* The wy.chat subscription's handler (wy_daemon_sub_t). */
void lobby_chat_on_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env);

/* A ready session's chat request (body_case 60..79); t0 when its frame arrived. */
void lobby_chat_request(lobby_conn_t *c, const Wyvern__Lobby__ClientMessage *m, uint64_t t0);
/* The wy_lobby_ws_message_seconds{type} name of a chat message, NULL for another body. */
const char *lobby_chat_type(Wyvern__Lobby__ClientMessage__BodyCase body_case);

/* After welcome: pushes the whispers kept while the account was offline (Chat.Offline). */
void lobby_chat_session_ready(lobby_conn_t *c);

#endif
