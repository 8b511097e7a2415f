/* wy-lobby tokens: what a hello needs besides the token's signature check: auth's
 * verification keys (Auth.GetKeys, refreshed by their max-age) and the bounded cache of
 * revocations heard on wy.account. Loop thread only. Sits on state (README "Code map"). */
#ifndef LOBBY_TOKENS_H
#define LOBBY_TOKENS_H

#include "lobby-t.h"

/* Refreshes auth's key set (GetKeys) when due; called at start and by the sweep timer. */
void lobby_keys_tick(lobby_t *lb);
/* Readiness (wy_daemon spec.unready): NULL once tokens can be verified (static keys, or
 * auth's key set fetched at least once), else "auth_keys". */
const char *lobby_keys_unready(lobby_t *lb);
/* Remembers a revocation: kind "a" = every token of account id issued at or before at (s),
 * "s" = the login session id. Bounded (REVOKED_MAX). */
void lobby_revoked_put(lobby_t *lb, const char *kind, const char *id, int64_t at);
/* True when the token (account, token sid, issued at) was revoked per the local cache. */
bool lobby_revoked(lobby_t *lb, const char *account, const char *token_sid, int64_t iat);

#endif
