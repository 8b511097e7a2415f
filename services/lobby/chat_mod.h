/* wy-lobby chat moderation and offline whispers (chat_mod.c): the moderator's requests
 * (chat_mute, chat_reports, chat_resolve_report: ClientMessage 80..82) forwarded to wy-chat
 * with the session's moderator role (the verified access token's "roles" claim, never the
 * client's word), and the offline whispers pushed after the welcome and removed from wy-chat
 * only once the client acknowledged them (chat_offline_ack, 83). Loop thread only. */
#ifndef LOBBY_CHAT_MOD_H
#define LOBBY_CHAT_MOD_H

#include "lobby-t.h"

/* The wy_lobby_ws_message_seconds{type} name of a request handled here, NULL for another. */
const char *lobby_chatmod_type(Wyvern__Lobby__ClientMessage__BodyCase body_case);
/* A ready session's request of lobby_chatmod_type; t0 when its frame arrived. */
void lobby_chatmod_request(lobby_conn_t *c, const Wyvern__Lobby__ClientMessage *m, uint64_t t0);
/* After welcome (lobby_chat_session_ready): pushes the offline whispers, each with its
 * offline_id; they stay with wy-chat until the client's chat_offline_ack. */
void lobby_chatmod_session_ready(lobby_conn_t *c);

#endif
