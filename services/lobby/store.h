/* wy-lobby sessions store: the session records in Redis (sess:*), created, refreshed and
 * deleted together by Lua scripts guarded by the account's fence epoch, and the routing
 * of a kick to the instance that holds a session. Loop thread only. Sits on wire and
 * state (README "Code map"). */
#ifndef LOBBY_STORE_H
#define LOBBY_STORE_H

#include "lobby-t.h"

/* Creates the Redis script objects of the store in lb->scripts (freed with the state).
 * Call once at start, before any other function of this file. */
void lobby_store_init(lobby_t *lb);
/* Retries the hellos' epoch batch the PostgreSQL pool refused (or fails it now): from the
 * sweep timer and the stop, where claim callbacks may run. Loop thread. */
void lobby_store_tick(lobby_t *lb);

/* A session record as lookups return it. Fields valid during the callback only. */
typedef struct {
    const char *sid, *account, *instance, *conn, *state, *nick;
    int64_t created, seen;
    uint64_t epoch;
} lobby_sess_info_t;

/* The live session of an account, stale index cleaned (GetSession). cb gets WY_OK +
 * fields, WY_ENOTFOUND, or an error. Returns WY_EINVAL for a bad account id, or why the
 * lookup could not start (cb is then not called). */
typedef void (*lobby_lookup_cb)(int status, const lobby_sess_info_t *s, void *ud);
int lobby_session_lookup(lobby_t *lb, const char *account, lobby_lookup_cb cb, void *ud);
/* Fences (a new epoch from PostgreSQL) and removes the account's live session (Kick); cb
 * gets WY_OK + the old session's
 * sid/instance, or WY_ENOTFOUND. The owning instance is told (lobby_session_kick). */
int lobby_session_fence(lobby_t *lb, const char *account, const char *reason, lobby_lookup_cb cb,
                        void *ud);
/* Looks up n index keys (sess:acct:<a> / sess:nick:<norm>) at once (presence). cb gets
 * WY_OK and n entries in key order, s[i].sid NULL where no session is live, or an error
 * (n 0, s NULL). Returns why the lookup could not start (cb then not called). */
typedef void (*lobby_lookup_many_cb)(int status, size_t n, const lobby_sess_info_t *s, void *ud);
/* names[0..n_acct) are account ids, names[n_acct..n) normalized nicknames; one single-slot
 * lookup each (a nickname: its index, then the account's slot). WY_EINVAL for n == 0 or a bad
 * account id. */
int lobby_session_lookup_many(lobby_t *lb, size_t n, size_t n_acct, const char *const *names,
                              lobby_lookup_many_cb cb, void *ud);

/* Result of a claim. */
typedef struct {
    bool claimed;    /* false: refused (reject-new and the owner instance lives) */
    bool superseded; /* not claimed: a newer login of the account holds it */
    bool revoked;    /* not claimed: auth revoked the token (prev_sid: why) */
    bool unknown;    /* not claimed: auth's revocation state in Redis is incomplete: ask auth */
    const char *prev_sid;      /* the session taken over, or the refusing one ("" = none) */
    const char *prev_instance; /* its instance */
} lobby_claim_t;
/* cb(c, status, r, err): WY_OK + r (claimed: c->epoch set, c->live true), or an error
 * with err what Redis said. Fields valid during cb only. */
typedef void (*lobby_claim_cb)(lobby_conn_t *c, int status, const lobby_claim_t *r,
                               const char *err);
/* Claims session c->sid for c->account (hello): takes a new fence epoch from PostgreSQL
 * with the account's nickname in the same statement (sets c->nick, c->nick_norm when it has
 * one), then in Redis fences the account's previous session (or refuses under reject-new, or
 * finds a newer claim already there: superseded), writes the record and indexes with the
 * TTL and refreshes this instance's liveness key. WY_ECANCELED when the client left before
 * the Redis step. Holds a reference to c until cb has run. Returns why the
 * claim could not start (cb then not called). */
int lobby_session_claim(lobby_conn_t *c, lobby_claim_cb cb);
/* Rewrites c's session record guarded by the fence (heartbeat, state change); a fenced
 * session (a higher epoch holds the account) is kicked (4002); a session whose epoch is
 * gone from Redis (data lost) re-asserts itself (wy_lobby_sessions_reasserted_total). One
 * write at a time (c->writing). */
void lobby_session_write(lobby_conn_t *c);
/* The same, then cb(c, status, ud) once the write is answered: WY_OK (the record is written),
 * WY_ESTATE (fenced: c is being kicked) or the error (Redis failed it, timed out, closing).
 * Returns why the write could not start (cb then not called). Holds a reference to c until cb
 * has run. Used where an answer to the client must wait for the record (enter.c). */
typedef void (*lobby_written_cb)(lobby_conn_t *c, int status, void *ud);
int lobby_session_write_then(lobby_conn_t *c, lobby_written_cb cb, void *ud);
/* The same after a nickname change: old_norm's index entry is dropped if it names us. */
void lobby_session_write_nick(lobby_conn_t *c, const char *old_norm);
/* Deletes c's record and the indexes that still name it (logout, disconnect), under its
 * own epoch; no-op when c holds no live session. */
void lobby_session_release(lobby_conn_t *c);
/* Closes session sid with kicked{reason} + 4002: here when instance is this one, else by
 * a session.kick on wy.session (a failure is logged: the fence still closes it). */
void lobby_session_kick(lobby_t *lb, const char *instance, const char *sid, const char *account,
                        const char *reason);
/* Refreshes this instance's liveness key (sess:inst:<instance>) when a third of
 * WY_LOBBY_FENCE_TIME has passed since the last refresh. */
void lobby_instance_alive(lobby_t *lb);

#endif
