/* wy-lobby enter_game: a ready session enters the game with one of its account's
 * characters: actor confirms the character is the account's (Actor.GetCharacter), world
 * places it (World.Place), lobby signs a join ticket for the placement's game instance
 * (wy_ticket, with the character's name), writes the session record in-game with the zone
 * and, once Redis acknowledged it, answers entered_game.
 * Loop thread only. Sits on wire and store (README "Code map"). */
#ifndef LOBBY_ENTER_H
#define LOBBY_ENTER_H

#include "lobby-t.h"
#include "lobby.pb-c.h"

/* In start(): loads the ticket signing keys and opens the world channel (actor's is
 * characters.c's).
 * Without WY_LOBBY_TICKET_KEYS_DIR (or without WY_LOBBY_WORLD_GRPC / WY_LOBBY_ACTOR_GRPC)
 * enter_game answers UNAVAILABLE; a bad key folder or kid fails the start (*err). */
int lobby_enter_start(lobby_t *lb, const char **err);
/* At the stop: closes the channels (requests in flight end with UNAVAILABLE answers). */
void lobby_enter_stop(lobby_t *lb);
/* Handles enter_game of ready connection c; t0 is when its frame arrived. */
void lobby_enter_game(lobby_conn_t *c, uint32_t req, const Wyvern__Lobby__EnterGame *m,
                      uint64_t t0);

/* Presence: where world's locator has the account now (World.Locate). cb gets WY_OK and
 * the zone it is placed in (valid during the callback), WY_ENOTFOUND when it is not placed
 * (it left the game: the game released the placement, or it lapsed), or another error
 * (world down or unconfigured: the caller keeps what the session record says). Returns
 * WY_OK, or why the call could not start (cb then not called). */
typedef void (*lobby_locate_cb)(int status, const char *zone, void *ud);
int lobby_enter_locate(lobby_t *lb, const char *account, lobby_locate_cb cb, void *ud);

#endif
