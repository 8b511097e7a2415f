/* wy-lobby friend pushes from committed events: wy-actor publishes every committed event on
 * Kafka wy.actor; every lobby instance reads it (broadcast, from the latest offset) and
 * pushes a friend request, and the accepting side's friend_added, to the other account's
 * session if that session is on this instance. So a request or accept made through any path
 * (a lobby, another service calling wy-actor) is pushed once, and only once it is committed.
 * Loop thread. Sits on characters and state (README "Code map"). */
#ifndef LOBBY_FRIEND_EVENTS_H
#define LOBBY_FRIEND_EVENTS_H

#include "lobby-t.h"

/* The event types of wy.actor this module handles, and those lobby reads without effect
 * (NULL-terminated; the subscription row in lobby.c). */
extern const char *const lobby_friend_event_types[];
extern const char *const lobby_friend_event_ignores[];

/* wy.actor handler (wy_daemon_event_cb). An event older than WY_LOBBY_NOTICE_TTL is not
 * pushed (a push is news). Best effort like notices: the stored request is in list_friends
 * either way. */
void lobby_friend_events_on_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env);

#endif
