/* wy-lobby presence: a session record's state ("online", "in-game:<zone>") checked against
 * world's locator, for get_presence (handlers_ws.c) and the friends list (characters.c).
 * Loop thread only. Sits on store and enter (README "Code map"). */
#ifndef LOBBY_PRESENCE_H
#define LOBBY_PRESENCE_H

#include "lobby-t.h"
#include "store.h"

/* One account's presence. Strings valid during the callback only. */
typedef struct {
    const char *account, *nick; /* account NULL: no live session (offline) */
    const char *zone;           /* in_game: the zone it is in ("" when unknown) */
    bool in_game;
} lobby_presence_t;

typedef void (*lobby_presence_cb)(size_t n, const lobby_presence_t *p, void *ud);

/* Resolves n session records s (as lobby_session_lookup_many gives them: s[i].sid NULL
 * where no session is live) into presences, p[i] for s[i]. A record that says in-game is
 * checked with world's locator (World.Locate): not placed any more (the player left the
 * game) = online; placed = in game in the locator's zone; world down or unconfigured = the
 * record's zone stands. cb runs exactly once, possibly before this returns. s is copied. */
void lobby_presence_resolve(lobby_t *lb, size_t n, const lobby_sess_info_t *s, lobby_presence_cb cb,
                            void *ud);

#endif
