/* wy-lobby nicknames: the rules, the collision key that makes look-alikes collide, and
 * their storage in PostgreSQL (schema lobby). Knows nothing of connections or the wire:
 * the set_nickname handler (handlers_ws.c) answers the client. Loop thread only. Sits on
 * the types alone (README "Code map"). */
#ifndef LOBBY_NICKNAME_H
#define LOBBY_NICKNAME_H

#include "lobby-t.h"

/* Checks and normalises a nickname. On WY_OK display (NFKC) and norm (the collision key)
 * are filled. Errors: WY_EINVAL (length, characters, scripts), WY_EPERM (reserved word);
 * *err is a message for the player. */
int lobby_nick_check(const char *nick, size_t len, char *display, size_t display_cap, char *norm,
                     size_t norm_cap, const char **err);
/* Stores a checked nickname for account unless the cooldown (WY_LOBBY_NICK_COOLDOWN)
 * since its last change is still running, and appends the history, in one statement.
 * cb(status, at_s, err, ud): WY_OK with at_s the change time (Unix s); WY_ELIMIT with at_s
 * the previous change (0 unknown); WY_EEXIST (taken, or a look-alike is); else an error
 * with err PostgreSQL's message (may be NULL). Returns why the statement could not start
 * (cb then not called). */
typedef void (*lobby_nick_store_cb)(int status, int64_t at_s, const char *err, void *ud);
int lobby_nick_store(lobby_t *lb, const char *account, const char *display, const char *norm,
                     lobby_nick_store_cb cb, void *ud);

#endif
