/* wy-auth SQL (sql.c): one function per statement, each a prepared statement run on the pool.
 * Results are read by the column names listed here (wy_pg_text, wy_pg_bool, wy_pg_int64),
 * never by position. All return wy_pg_exec's codes (WY_EUNAVAIL also when the pool is closed);
 * loop thread only. Statements that change what wy.account events report take a transaction
 * (tx): they run in it, so the change and its outbox rows commit together (auth_tx_begin). */
#ifndef AUTH_SQL_H
#define AUTH_SQL_H

#include <stdbool.h>
#include <stdint.h>

#include "wy_outbox.h"
#include "wy_pg.h"
#include "batch.h"

typedef struct auth auth_t;

/* A refresh family carried by a refresh token (tokens.c, auth_refresh_open_token). */
typedef struct {
    char sid[37];     /* session id (uuid) */
    char account[37]; /* account id (uuid) */
    char method[16];  /* login method */
    int64_t at_ms;    /* when the login answered it (unix ms, auth's clock) */
} auth_family_t;

/* -> 1 row: account_id ; SQLSTATE 23505 when the username is taken */
int auth_db_register(auth_t *a, wy_pg_tx_t *tx, const char *id, const char *key,
                     const char *display, const char *hash, wy_pg_cb cb, void *ud);
/* -> 0 rows (no such user) | 1 row: account_id, password_hash, banned */
int auth_db_find_password(auth_t *a, const char *key, wy_pg_cb cb, void *ud);
/* ---- batched (batch.h: cb once per item; row -1 = no row for this item) ----
 * Created by auth_db_batches_new at start, freed by auth_db_batches_free with the state. */
void auth_db_batches_new(auth_t *a);
void auth_db_batches_free(auth_t *a);
/* A login of an identity: finds its account (read only, nothing written). Row: account_id,
 * banned; -1 when the identity is unknown. No session is written: the refresh token carries its
 * family (auth_refresh_mint); the login's event goes to Kafka directly or through
 * auth_db_login_store (auth_event_login_direct). */
int auth_db_identity_login(auth_t *a, const char *method, const char *subject, auth_batch_cb cb,
                           void *ud);
/* A login's account.login row (ev, auth_event_login_row), committed with the batch without
 * waiting for the disk (sql.c); no result to read. */
int auth_db_login_store(auth_t *a, const char *account, const wy_outbox_row_t *ev, auth_batch_cb cb,
                        void *ud);
/* A first login: identity, account (id account), its account.created and account.login rows,
 * committed durably with the batch. row >= 0: created; -1: the identity exists already (a
 * concurrent first login won): nothing was written, log in to it again. */
int auth_db_identity_create(auth_t *a, const char *method, const char *subject, const char *account,
                            const wy_outbox_row_t *created, const wy_outbox_row_t *login,
                            auth_batch_cb cb, void *ud);
/* -> 1 row: status ("ok", "reused", "banned", ... see auth.refresh_rotate), session_id,
 *    account_id */
int auth_db_refresh_rotate(auth_t *a, wy_pg_tx_t *tx, const char *old_hash, const char *new_hash,
                           wy_pg_cb cb, void *ud);
/* A refresh family a login answered without writing it (auth_refresh_open_token): its session
 * and this token's row are created unless they exist, then it rotates as auth_db_refresh_rotate.
 * -> 1 row: status, session_id, account_id (as auth_db_refresh_rotate) */
int auth_db_refresh_open(auth_t *a, wy_pg_tx_t *tx, const char *old_hash, const auth_family_t *fam,
                         const char *new_hash, wy_pg_cb cb, void *ud);
/* Revokes a session, creating its row (revoked) when its family was never refreshed.
 * -> 0 or 1 row; PQcmdTuples = sessions revoked by this statement (0 or 1) */
int auth_db_session_revoke(auth_t *a, wy_pg_tx_t *tx, const char *sid, const char *account,
                           const char *reason, wy_pg_cb cb, void *ud);
/* An access token's revocation in PostgreSQL (iat: its issue time, unix s).
 * -> 0 rows (unknown account) | 1 row: revoked (session revoked, account banned, or every
 *    session of the account revoked at or after iat) */
int auth_db_session_revoked(auth_t *a, const char *sid, const char *account, int64_t iat,
                            wy_pg_cb cb, void *ud);
/* What the revocation rebuild writes back to Redis: sessions revoked and accounts banned in the
 * last window_s seconds, newest first, at most limit of each:
 * -> rows: kind ("session" | "account"), id, left_ms (until window_s after the revocation),
 *    at_ms (unix ms of the revocation) */
int auth_db_recent_revocations(auth_t *a, int64_t window_s, int limit, wy_pg_cb cb, void *ud);
/* -> 0 rows | 1 row: account_id, username ('' when none), created_at (unix s), banned,
 *    login_methods (JSON array text) */
int auth_db_account(auth_t *a, const char *account, wy_pg_cb cb, void *ud);
/* -> no rows; 23505 on credentials_pkey: the account has a password already;
 *    on credentials_username_key: the username is taken */
int auth_db_link_password(auth_t *a, const char *account, const char *key, const char *display,
                          const char *hash, wy_pg_cb cb, void *ud);
/* -> 1 row: account_id now owning (method, subject): == account when linked (or already was) */
int auth_db_link_identity(auth_t *a, const char *account, const char *method, const char *subject,
                          wy_pg_cb cb, void *ud);
/* -> 1 row: outcome (integer: login methods removed, 0 not linked, -1 last login method) */
int auth_db_unlink(auth_t *a, const char *account, const char *method, const char *subject,
                   wy_pg_cb cb, void *ud);
/* Revokes every session of the account as of at_ms (auth's clock; families that have no row
 * yet too, by accounts.sessions_revoked_at), and bans it when ban.
 * -> 1 row: revoked (integer: session rows revoked, -1 no such account) */
int auth_db_revoke_account(auth_t *a, wy_pg_tx_t *tx, const char *account, const char *reason,
                           bool ban, int64_t at_ms, wy_pg_cb cb, void *ud);

#endif
