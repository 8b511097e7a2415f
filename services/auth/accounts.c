/* wy-auth SQL: every statement of the service, parameterized ($n), one per function.
 * Multi-row changes are single statements or PL/pgSQL functions (migrations/001), so
 * each runs atomically in its own transaction. */
#include "auth.h"

static int q(auth_t *a, const char *sql, int n, const char *const *p, wy_pg_cb cb, void *ud)
{
    wy_pg_t *pg = auth_pg(a);
    if (!pg)
        return WY_EUNAVAIL;
    return wy_pg_query(pg, sql, n, p, cb, ud);
}

/* The refresh token lifetime in seconds, as a statement parameter. */
static const char *refresh_ttl_s(char buf[32])
{
    snprintf(buf, 32, "%lld", (long long)(auth_cfg.refresh_ttl_ms / 1000));
    return buf;
}

int auth_db_register(auth_t *a, const char *id, const char *key, const char *display,
                     const char *hash, wy_pg_cb cb, void *ud)
{
    const char *p[] = {id, key, display, hash};
    return q(a,
             "WITH acct AS (INSERT INTO auth.accounts (id, created_by) VALUES ($1, 'password') "
             "RETURNING id) "
             "INSERT INTO auth.credentials (account_id, username_norm, username, password_hash) "
             "SELECT id, $2, $3, $4 FROM acct RETURNING account_id",
             4, p, cb, ud);
}

int auth_db_find_password(auth_t *a, const char *key, wy_pg_cb cb, void *ud)
{
    const char *p[] = {key};
    return q(a,
             "SELECT c.account_id, c.password_hash, a.banned_at IS NOT NULL "
             "FROM auth.credentials c JOIN auth.accounts a ON a.id = c.account_id "
             "WHERE c.username_norm = $1",
             1, p, cb, ud);
}

int auth_db_identity_login(auth_t *a, const char *method, const char *subject, const char *new_id,
                           bool create, wy_pg_cb cb, void *ud)
{
    const char *p[] = {method, subject, new_id, create ? "true" : "false"};
    return q(a, "SELECT account_id, created, banned FROM auth.identity_login($1, $2, $3, $4)", 4, p,
             cb, ud);
}

int auth_db_session_open(auth_t *a, const char *sid, const char *account, const char *method,
                         const char *refresh_hash, wy_pg_cb cb, void *ud)
{
    char ttl[32];
    const char *p[] = {sid, account, method, refresh_hash, refresh_ttl_s(ttl)};
    return q(a,
             "WITH s AS (INSERT INTO auth.sessions (id, account_id, method) VALUES ($1, $2, $3) "
             "RETURNING id) "
             "INSERT INTO auth.refresh_tokens (token_hash, session_id, expires_at) "
             "SELECT $4, id, now() + make_interval(secs => $5::bigint) FROM s",
             5, p, cb, ud);
}

int auth_db_refresh_rotate(auth_t *a, const char *old_hash, const char *new_hash, wy_pg_cb cb,
                           void *ud)
{
    char ttl[32];
    const char *p[] = {old_hash, new_hash, refresh_ttl_s(ttl)};
    return q(a, "SELECT status, session_id, account_id FROM auth.refresh_rotate($1, $2, $3)", 3, p,
             cb, ud);
}

int auth_db_session_revoke(auth_t *a, const char *sid, const char *account, const char *reason,
                           wy_pg_cb cb, void *ud)
{
    const char *p[] = {sid, account, reason};
    return q(a,
             "UPDATE auth.sessions SET revoked_at = now(), revoke_reason = $3 "
             "WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL",
             3, p, cb, ud);
}

int auth_db_account(auth_t *a, const char *account, wy_pg_cb cb, void *ud)
{
    const char *p[] = {account};
    return q(a,
             "SELECT a.id, coalesce(c.username, ''), extract(epoch FROM a.created_at)::bigint, "
             "a.banned_at IS NOT NULL, "
             "(SELECT coalesce(json_agg(m ORDER BY m), '[]'::json)::text FROM ("
             "  SELECT 'password' AS m FROM auth.credentials x WHERE x.account_id = a.id "
             "  UNION SELECT i.method FROM auth.identities i WHERE i.account_id = a.id) ms) "
             "FROM auth.accounts a LEFT JOIN auth.credentials c ON c.account_id = a.id "
             "WHERE a.id = $1",
             1, p, cb, ud);
}

int auth_db_link_password(auth_t *a, const char *account, const char *key, const char *display,
                          const char *hash, wy_pg_cb cb, void *ud)
{
    const char *p[] = {account, key, display, hash};
    return q(a,
             "INSERT INTO auth.credentials (account_id, username_norm, username, password_hash) "
             "VALUES ($1, $2, $3, $4)",
             4, p, cb, ud);
}

int auth_db_link_identity(auth_t *a, const char *account, const char *method, const char *subject,
                          wy_pg_cb cb, void *ud)
{
    const char *p[] = {account, method, subject};
    /* The no-op update returns the owner when the identity already exists, so one
     * statement tells "linked now / already mine" from "belongs to someone else". */
    return q(a,
             "INSERT INTO auth.identities (method, subject, account_id) VALUES ($2, $3, $1) "
             "ON CONFLICT (method, subject) DO UPDATE SET method = EXCLUDED.method "
             "RETURNING account_id",
             3, p, cb, ud);
}

int auth_db_unlink(auth_t *a, const char *account, const char *method, const char *subject,
                   wy_pg_cb cb, void *ud)
{
    const char *p[] = {account, method, subject};
    return q(a, "SELECT auth.unlink($1, $2, $3)", 3, p, cb, ud);
}

int auth_db_revoke_account(auth_t *a, const char *account, const char *reason, bool ban,
                           wy_pg_cb cb, void *ud)
{
    const char *p[] = {account, reason, ban ? "true" : "false"};
    return q(a, "SELECT auth.revoke_account($1, $2, $3)", 3, p, cb, ud);
}
