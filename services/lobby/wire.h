/* wy-lobby wire: what goes over a client's WebSocket. Decodes client frames, builds and
 * sends every ServerMessage (one builder for responses and pushes), maps WY_E* codes to the
 * protocol's codes, and closes connections once what was sent before is out. Loop thread
 * only. Sits on state (README "Code map"). */
#ifndef LOBBY_WIRE_H
#define LOBBY_WIRE_H

#include "lobby-t.h"
#include "lobby.pb-c.h"

/* The protocol's code for a WY_E* error (WY_OK -> OK). */
Wyvern__Lobby__Code lobby_code(int wy_err);

/* Sends a successful response: {request_id = req, status OK, body}. body_case names the
 * ServerMessage oneof field and body is a message of that field's type (checked by an
 * assert); the body is copied into the frame, so it may live on the caller's stack.
 * No-op when the connection is closed or closing. */
void lobby_reply(lobby_conn_t *c, uint32_t req, Wyvern__Lobby__ServerMessage__BodyCase body_case,
                 const ProtobufCMessage *body);
/* Sends a response without a body: {request_id = req, status{code, message}}. */
void lobby_reply_status(lobby_conn_t *c, uint32_t req, Wyvern__Lobby__Code code,
                        const char *message);
/* Sends a push: {request_id 0, no status, body} (body_case / body as for lobby_reply). */
void lobby_push(lobby_conn_t *c, Wyvern__Lobby__ServerMessage__BodyCase body_case,
                const ProtobufCMessage *body);

/* lobby_push to every ready session of this instance: the message is encoded once and the
 * same frame is queued on every connection (wy_ws_broadcast). */
void lobby_push_ready(lobby_t *lb, Wyvern__Lobby__ServerMessage__BodyCase body_case,
                      const ProtobufCMessage *body);

/* Times one client request in wy_lobby_ws_message_seconds{type} (wy_ws_observe) from
 * start_ns (wy_now_ns() when its frame arrived) and counts its outcome by the code it was
 * answered with: OK ok; UNAVAILABLE, INTERNAL server_error; any other client_error. type is
 * one of lobby's constant names ("hello", "heartbeat", ...). No-op once the connection is
 * closed. */
void lobby_observe(lobby_conn_t *c, const char *type, uint64_t start_ns, Wyvern__Lobby__Code code);

/* Decodes one client frame. Returns a new message (free with
 * wyvern__lobby__client_message__free_unpacked), or NULL after answering INVALID and
 * closing with 4000 (text frame, undecodable bytes). */
Wyvern__Lobby__ClientMessage *lobby_decode(lobby_conn_t *c, bool is_binary, const uint8_t *data,
                                           size_t len);

/* Closes the WebSocket with code/reason once what was sent before is out (wslay would
 * send the close frame ahead of queued messages); the session record is left to the
 * caller. The connection is CLOSING from now on. */
void lobby_conn_close(lobby_conn_t *c, int code, const char *reason);
/* Pushes kicked{reason}, then closes with code (counted in wy_lobby_kicks_total). */
void lobby_conn_kick(lobby_conn_t *c, const char *reason, int code);
/* lobby_conn_kick on the local connection of session sid. Returns false when it is not
 * here (or already closed). */
bool lobby_session_kick_local(lobby_t *lb, const char *sid, const char *reason, int code);

#endif
