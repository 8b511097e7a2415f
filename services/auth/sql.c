/* wy-auth SQL: every statement of the service, in one place, as prepared statements
 * (wy_pg_stmt_t: prepared once per pooled connection). Each function below binds the
 * parameters of one statement; sql.h names the columns callers read (wy_pg_text and friends,
 * never by position). Multi-row changes are single statements or PL/pgSQL functions
 * (migrations/001), so each runs atomically in its own transaction. A login's statements are
 * batched (batch.h): the logins of one loop turn share one statement and one commit. */
#include "auth.h"

static int run(auth_t *a, const wy_pg_stmt_t *st, const char *const *p, wy_pg_cb cb, void *ud)
{
    wy_pg_t *pg = auth_pg(a);
    if (!pg)
        return WY_EUNAVAIL;
    return wy_pg_exec(pg, st, p, cb, ud);
}

/* In tx when there is one (a change written with its events), else on its own. */
static int run_in(auth_t *a, wy_pg_tx_t *tx, const wy_pg_stmt_t *st, const char *const *p,
                  wy_pg_cb cb, void *ud)
{
    return tx ? wy_pg_tx_exec(tx, st, p, cb, ud) : run(a, st, p, cb, ud);
}

/* The refresh token lifetime in seconds, as a statement parameter. */
static const char *refresh_ttl_s(const auth_t *a, char buf[32])
{
    snprintf(buf, 32, "%lld", (long long)(a->cfg->refresh_ttl_ms / 1000));
    return buf;
}

static const wy_pg_stmt_t register_sql = {
    "auth_register",
    "WITH acct AS (INSERT INTO auth.accounts (id, created_by) VALUES ($1, 'password') "
    "RETURNING id) "
    "INSERT INTO auth.credentials (account_id, username_norm, username, password_hash) "
    "SELECT id, $2, $3, $4 FROM acct RETURNING account_id",
    4};

int auth_db_register(auth_t *a, wy_pg_tx_t *tx, const char *id, const char *key,
                     const char *display, const char *hash, wy_pg_cb cb, void *ud)
{
    const char *p[] = {id, key, display, hash};
    return run_in(a, tx, &register_sql, p, cb, ud);
}

static const wy_pg_stmt_t find_password_sql = {
    "auth_find_password",
    "SELECT c.account_id, c.password_hash, a.banned_at IS NOT NULL AS banned "
    "FROM auth.credentials c JOIN auth.accounts a ON a.id = c.account_id "
    "WHERE c.username_norm = $1",
    1};

int auth_db_find_password(auth_t *a, const char *key, wy_pg_cb cb, void *ud)
{
    const char *p[] = {key};
    return run(a, &find_password_sql, p, cb, ud);
}

/* ---- group commit of logins (batch.h): one statement over arrays per batch ---- */

/* A login writes no session (migrations/011): its refresh token carries the family, created at
 * its first refresh. A login's account.login event is published straight to Kafka while the
 * broker is reachable (tokens.c, auth_event_login_direct): nothing is written. Otherwise its
 * outbox row is written by auth_logins_store below, committed without waiting for the WAL flush
 * (synchronous_commit off for that transaction only, set by the statement itself: the setting is
 * read at its commit): the answer waits for the statement, not for the disk. A PostgreSQL crash
 * can lose the last fraction of a second of these event rows; it cannot lose anything a token
 * needs (nothing is stored for it). */

/* Logins of known identities: a row (ord, account_id, banned) per known identity; an unknown
 * identity has no row. Read only: nothing is written, nothing committed to disk. The lookup is
 * LATERAL so that it is an index lookup per login whatever the batch size: a plain join of a
 * large batch was planned as a hash join over a sequential scan of every identity. */
static const wy_pg_stmt_t identity_logins_sql = {
    "auth_identity_find",
    "SELECT r.ord, x.account_id, x.banned "
    "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(method, subject, ord) "
    "CROSS JOIN LATERAL (SELECT i.account_id, a.banned_at IS NOT NULL AS banned "
    "FROM auth.identities i JOIN auth.accounts a ON a.id = i.account_id "
    "WHERE i.method = r.method AND i.subject = r.subject) x",
    2};

/* The account.login rows of password logins (their accounts are known): one statement and one
 * commit (not waited for on disk) per batch. */
static const wy_pg_stmt_t logins_store_sql = {
    "auth_logins_store",
    "WITH c AS (SELECT set_config('synchronous_commit', 'off', true)), "
    "r AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
    "WITH ORDINALITY AS r(account, event_id, payload, ts, ord)), "
    "e AS (INSERT INTO auth.wy_outbox (event_id, topic, key, type, payload, ts_ms) "
    "SELECT event_id, 'wy.account', account, 'account.login', decode(payload, 'hex'), ts "
    "FROM r, c ORDER BY ord) "
    "SELECT ord FROM r",
    4};

/* First logins of identities: identity, account, account.created and account.login rows,
 * committed durably (an account must not vanish). An identity that exists already (a
 * concurrent first login) is skipped: no row for it, nothing written. Child rows before parents
 * is fine: foreign keys are checked at the end of the statement. */
static const wy_pg_stmt_t identities_create_sql = {
    "auth_identities_create",
    "WITH r AS (SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], "
    "$5::text[], $6::text[], $7::text[], $8::bigint[]) WITH ORDINALITY "
    "AS r(method, subject, account, cev, cpay, lev, lpay, ts, ord)), "
    "i AS (INSERT INTO auth.identities (method, subject, account_id) "
    "SELECT method, subject, account FROM r ON CONFLICT (method, subject) DO NOTHING "
    "RETURNING account_id), "
    "w AS (SELECT r.* FROM r JOIN i ON i.account_id = r.account), "
    "acc AS (INSERT INTO auth.accounts (id, created_by) SELECT account, method FROM w), "
    "e AS (INSERT INTO auth.wy_outbox (event_id, topic, key, type, payload, ts_ms) "
    "SELECT ev, 'wy.account', account::text, type, decode(pay, 'hex'), ts FROM ("
    "SELECT ord, 0 AS k, cev AS ev, account, 'account.created' AS type, cpay AS pay, ts FROM w "
    "UNION ALL SELECT ord, 1, lev, account, 'account.login', lpay, ts FROM w) x ORDER BY ord, k) "
    "SELECT ord FROM w",
    8};

void auth_db_batches_new(auth_t *a)
{
    a->b_login = auth_batch_new(a, "login", &identity_logins_sql, 2, 0, NULL, true);
    a->b_store = auth_batch_new(a, "store", &logins_store_sql, 4, 0, NULL, true);
    a->b_create = auth_batch_new(a, "create", &identities_create_sql, 8, 0, NULL, true);
}

void auth_db_batches_free(auth_t *a)
{
    auth_batch_free(a->b_login);
    auth_batch_free(a->b_store);
    auth_batch_free(a->b_create);
    a->b_login = a->b_store = a->b_create = NULL;
}

/* The hex digits of a wy_outbox row's payload (its bytea text without the \x). */
static const char *payload_hex(const wy_outbox_row_t *ev)
{
    return ev->params[4] + 2;
}

int auth_db_identity_login(auth_t *a, const char *method, const char *subject, auth_batch_cb cb,
                           void *ud)
{
    const char *c[] = {method, subject};
    return a->b_login ? auth_batch_add(a->b_login, c, cb, ud) : WY_EUNAVAIL;
}

int auth_db_login_store(auth_t *a, const char *account, const wy_outbox_row_t *ev, auth_batch_cb cb,
                        void *ud)
{
    const char *c[] = {account, ev->event_id, payload_hex(ev), ev->ts_ms};
    return a->b_store ? auth_batch_add(a->b_store, c, cb, ud) : WY_EUNAVAIL;
}

int auth_db_identity_create(auth_t *a, const char *method, const char *subject, const char *account,
                            const wy_outbox_row_t *created, const wy_outbox_row_t *login,
                            auth_batch_cb cb, void *ud)
{
    const char *c[] = {method,
                       subject,
                       account,
                       created->event_id,
                       payload_hex(created),
                       login->event_id,
                       payload_hex(login),
                       login->ts_ms};
    return a->b_create ? auth_batch_add(a->b_create, c, cb, ud) : WY_EUNAVAIL;
}

static const wy_pg_stmt_t refresh_rotate_sql = {
    "auth_refresh_rotate",
    "SELECT status, session_id, account_id FROM auth.refresh_rotate($1, $2, $3)", 3};

int auth_db_refresh_rotate(auth_t *a, wy_pg_tx_t *tx, const char *old_hash, const char *new_hash,
                           wy_pg_cb cb, void *ud)
{
    char ttl[32];
    const char *p[] = {old_hash, new_hash, refresh_ttl_s(a, ttl)};
    return run_in(a, tx, &refresh_rotate_sql, p, cb, ud);
}

static const wy_pg_stmt_t refresh_open_sql = {
    "auth_refresh_open",
    "SELECT status, session_id, account_id FROM auth.refresh_open($1, $2, $3, $4, $5, $6, $7)", 7};

int auth_db_refresh_open(auth_t *a, wy_pg_tx_t *tx, const char *old_hash, const auth_family_t *fam,
                         const char *new_hash, wy_pg_cb cb, void *ud)
{
    char ttl[32], at[32];
    snprintf(at, sizeof at, "%lld", (long long)fam->at_ms);
    const char *p[] = {old_hash, fam->sid, fam->account,         fam->method,
                       at,       new_hash, refresh_ttl_s(a, ttl)};
    return run_in(a, tx, &refresh_open_sql, p, cb, ud);
}

/* A session that has no row yet (its family was never refreshed) gets one, revoked; one that
 * has is revoked unless it was. One row when this statement revoked it. */
static const wy_pg_stmt_t session_revoke_sql = {
    "auth_session_revoke",
    "INSERT INTO auth.sessions AS s (id, account_id, method, revoked_at, revoke_reason) "
    "SELECT $1::uuid, a.id, 'unknown', now(), $3 FROM auth.accounts a WHERE a.id = $2::uuid "
    "ON CONFLICT (id) DO UPDATE SET revoked_at = now(), revoke_reason = EXCLUDED.revoke_reason "
    "WHERE s.revoked_at IS NULL AND s.account_id = EXCLUDED.account_id RETURNING 1",
    3};

int auth_db_session_revoke(auth_t *a, wy_pg_tx_t *tx, const char *sid, const char *account,
                           const char *reason, wy_pg_cb cb, void *ud)
{
    const char *p[] = {sid, account, reason};
    return run_in(a, tx, &session_revoke_sql, p, cb, ud);
}

/* A family with no row (never refreshed) is live unless its account is gone, banned or had
 * every session revoked at or after the token was issued ($3, unix seconds). */
static const wy_pg_stmt_t session_revoked_sql = {
    "auth_session_revoked",
    "SELECT a.banned_at IS NOT NULL "
    "OR coalesce(a.sessions_revoked_at >= to_timestamp($3::bigint), false) "
    "OR coalesce((SELECT s.revoked_at IS NOT NULL FROM auth.sessions s "
    "WHERE s.id = $1::uuid AND s.account_id = a.id), false) AS revoked "
    "FROM auth.accounts a WHERE a.id = $2::uuid",
    3};

int auth_db_session_revoked(auth_t *a, const char *sid, const char *account, int64_t iat,
                            wy_pg_cb cb, void *ud)
{
    char at[32];
    snprintf(at, sizeof at, "%lld", (long long)iat);
    const char *p[] = {sid, account, at};
    return run(a, &session_revoked_sql, p, cb, ud);
}

/* Both halves have the same columns; each is bounded by $2 rows, newest first. */
static const wy_pg_stmt_t recent_revocations_sql = {
    "auth_recent_revocations",
    "(SELECT 'session' AS kind, id::text AS id, "
    "(extract(epoch FROM (revoked_at + make_interval(secs => $1::bigint) - now())) * 1000)::bigint "
    "AS left_ms, (extract(epoch FROM revoked_at) * 1000)::bigint AS at_ms "
    "FROM auth.sessions WHERE revoked_at > now() - make_interval(secs => $1::bigint) "
    "ORDER BY revoked_at DESC LIMIT $2::int) "
    "UNION ALL "
    "(SELECT 'account', id::text, "
    "(extract(epoch FROM (sessions_revoked_at + make_interval(secs => $1::bigint) - now())) "
    "* 1000)::bigint, "
    "(extract(epoch FROM sessions_revoked_at) * 1000)::bigint "
    "FROM auth.accounts WHERE sessions_revoked_at > now() - make_interval(secs => $1::bigint) "
    "ORDER BY sessions_revoked_at DESC LIMIT $2::int)",
    2};

int auth_db_recent_revocations(auth_t *a, int64_t window_s, int limit, wy_pg_cb cb, void *ud)
{
    char window[32], lim[16];
    snprintf(window, sizeof window, "%lld", (long long)window_s);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[] = {window, lim};
    return run(a, &recent_revocations_sql, p, cb, ud);
}

static const wy_pg_stmt_t account_sql = {
    "auth_account",
    "SELECT a.id AS account_id, coalesce(c.username, '') AS username, "
    "extract(epoch FROM a.created_at)::bigint AS created_at, "
    "a.banned_at IS NOT NULL AS banned, "
    "(SELECT coalesce(json_agg(m ORDER BY m), '[]'::json)::text FROM ("
    "  SELECT 'password' AS m FROM auth.credentials x WHERE x.account_id = a.id "
    "  UNION SELECT i.method FROM auth.identities i WHERE i.account_id = a.id) ms) "
    "AS login_methods "
    "FROM auth.accounts a LEFT JOIN auth.credentials c ON c.account_id = a.id "
    "WHERE a.id = $1",
    1};

int auth_db_account(auth_t *a, const char *account, wy_pg_cb cb, void *ud)
{
    const char *p[] = {account};
    return run(a, &account_sql, p, cb, ud);
}

static const wy_pg_stmt_t link_password_sql = {
    "auth_link_password",
    "INSERT INTO auth.credentials (account_id, username_norm, username, password_hash) "
    "VALUES ($1, $2, $3, $4)",
    4};

int auth_db_link_password(auth_t *a, const char *account, const char *key, const char *display,
                          const char *hash, wy_pg_cb cb, void *ud)
{
    const char *p[] = {account, key, display, hash};
    return run(a, &link_password_sql, p, cb, ud);
}

/* The no-op update returns the owner when the identity already exists, so one statement
 * tells "linked now / already mine" from "belongs to someone else". */
static const wy_pg_stmt_t link_identity_sql = {
    "auth_link_identity",
    "INSERT INTO auth.identities (method, subject, account_id) VALUES ($2, $3, $1) "
    "ON CONFLICT (method, subject) DO UPDATE SET method = EXCLUDED.method "
    "RETURNING account_id",
    3};

int auth_db_link_identity(auth_t *a, const char *account, const char *method, const char *subject,
                          wy_pg_cb cb, void *ud)
{
    const char *p[] = {account, method, subject};
    return run(a, &link_identity_sql, p, cb, ud);
}

static const wy_pg_stmt_t unlink_sql = {"auth_unlink", "SELECT auth.unlink($1, $2, $3) AS outcome",
                                        3};

int auth_db_unlink(auth_t *a, const char *account, const char *method, const char *subject,
                   wy_pg_cb cb, void *ud)
{
    const char *p[] = {account, method, subject};
    return run(a, &unlink_sql, p, cb, ud);
}

static const wy_pg_stmt_t revoke_account_sql = {
    "auth_revoke_account", "SELECT auth.revoke_account($1, $2, $3, $4) AS revoked", 4};

int auth_db_revoke_account(auth_t *a, wy_pg_tx_t *tx, const char *account, const char *reason,
                           bool ban, int64_t at_ms, wy_pg_cb cb, void *ud)
{
    char at[32];
    snprintf(at, sizeof at, "%lld", (long long)at_ms);
    const char *p[] = {account, reason, ban ? "true" : "false", at};
    return run_in(a, tx, &revoke_account_sql, p, cb, ud);
}
