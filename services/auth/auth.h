/* wy-auth: accounts, credentials, signing keys and refresh tokens. The daemon's state and
 * the seams between its files: auth.c (config, start/stop), handlers_http.c (client JSON
 * API), handlers_grpc.c (Auth service), accounts.c (SQL), tokens.c (tokens, revocation,
 * events), password.c (Argon2id on the worker pool), validate.c (input rules). */
#ifndef AUTH_H
#define AUTH_H

#include "wy_daemon.h"
#include "wy_metrics.h"
#include "wy_token.h"
#include "wy_ratelimit.h"
#include "auth.pb-c.h"
#include "password.h"
#include "providers.h"

/* Configuration (WY_AUTH_*), filled by wy_daemon from the table in auth.c. */
typedef struct {
    int64_t http_port;
    char *keys_dir;
    char *signing_kid;
    char *issuer;
    char *audience;
    int64_t access_ttl_ms;
    int64_t refresh_ttl_ms;
    int64_t argon2_memory; /* bytes */
    int64_t argon2_iterations;
    int64_t hash_queue;
    int64_t limit_account; /* failed logins per account per window */
    int64_t limit_ip;      /* failed logins per source IP per window */
    int64_t limit_window_ms;
    char *custom_secret;
    int64_t jwks_max_age_ms;
} auth_cfg_t;

extern auth_cfg_t auth_cfg;

/* The daemon's state (wy_daemon_state), owned by the loop thread. Requests in flight hold
 * a reference (auth_ref/auth_unref), so the state outlives stop() until the last one ends;
 * the daemon's state pointer is cleared when it is freed. */
typedef struct auth {
    wy_daemon_t *d;
    uv_loop_t *loop;
    wy_http_server_t *http; /* client API on WY_AUTH_HTTP_PORT */
    wy_jwt_keyset_t *keys;  /* every verification key; the signing one has its private part */
    char *jwks;             /* public keys as a JWKS document */
    auth_hasher_t *hasher;
    auth_providers_t *providers;
    wy_ratelimit_t *rl_account, *rl_ip;
    uv_timer_t drain_timer;
    uint64_t drain_deadline;
    uv_timer_t reload_timer; /* see auth_revocations_watch */
    bool reload_timer_on, reloading;
    unsigned refs;
    bool stopping;
    wy_metric_t *m_hash_queue, *m_kafka_failed, *m_redis_failed;
} auth_t;

extern wy_daemon_spec_t auth_daemon_spec;

/* Builds the full config table (auth's own entries + the providers') into the spec's
 * config; call once in main() before wy_daemon_main. */
void auth_config_init(void);

/* The daemon's running service, or NULL once stop() began (or before start). For entry
 * points that may still fire during the stop (gRPC calls handed to the loop late): they
 * get the daemon, never the state itself. */
auth_t *auth_current(wy_daemon_t *d);

void auth_ref(auth_t *a);
void auth_unref(auth_t *a);

/* Live dependencies; NULL once the daemon is closing them (callers answer 503). */
wy_pg_t *auth_pg(auth_t *a);
wy_redis_t *auth_redis(auth_t *a);

/* ---- handlers ---- */
int auth_http_start(auth_t *a, const char **err);
int auth_grpc_register(auth_t *a, const char **err);

/* ---- metrics ---- */
void auth_count_login(const char *method, const char *result);
void auth_count(const char *name, const char *help, const char *labels);

/* ---- tokens.c ---- */

/* Signs an access token for (account, sid) with the configured key. *token: new string,
 * caller frees. Returns WY_OK or a WY_E* code. */
int auth_issue_access(auth_t *a, const char *account, const char *sid, char **token,
                      int64_t *expires_in);
/* New opaque refresh token (base64url of 32 random bytes, 43 chars + NUL) and its
 * SHA-256 in hex (64 chars + NUL). */
void auth_refresh_new(char tok[44], char hash_hex[65]);
/* SHA-256 hex of a presented refresh token. */
void auth_refresh_hash(const char *tok, char hash_hex[65]);
/* Verifies signature and claims (iss, aud, time) of an access token; no revocation check.
 * Returns WY_OK (out filled) or WY_EAUTH / WY_EINVAL / WY_ETOOBIG with *why. */
int auth_verify_access(auth_t *a, const char *token, size_t len, wy_token_claims_t *out,
                       const char **why);

/* Revocation state of a verified token: Redis first (auth:revoked:sid:<sid>,
 * auth:revoked:acct:<sub>), PostgreSQL if Redis cannot answer. cb once on the loop with
 * err WY_OK and revoked, or WY_EUNAVAIL when neither answers. Returns WY_OK (cb later)
 * or WY_EUNAVAIL (cb not called). */
typedef void (*auth_revoked_cb)(int err, bool revoked, void *ud);
int auth_revocation_check(auth_t *a, const wy_token_claims_t *c, auth_revoked_cb cb, void *ud);

/* Publishes a revocation to Redis (visible to Introspect and verifiers at once): a
 * session (account NULL) or every session of an account issued up to now (sid NULL). The
 * key lives as long as an access token could. cb once on the loop with WY_OK or the Redis
 * error (PostgreSQL stays the durable record). Returns WY_OK or WY_EUNAVAIL (cb not
 * called). */
typedef void (*auth_done_cb)(int err, void *ud);
int auth_revoke_publish(auth_t *a, const char *sid, const char *account, auth_done_cb cb, void *ud);

/* Keeps Redis' revocation keys in step with PostgreSQL: checks every second that Redis
 * still holds them (a marker key) and writes the recent ones again when Redis lost its data.
 * watch in start(), unwatch in stop(). */
void auth_revocations_watch(auth_t *a);
void auth_revocations_unwatch(auth_t *a);

/* Kafka events on wy.account, fire and forget (failures are counted). */
void auth_emit_created(auth_t *a, const char *account, const char *method);
void auth_emit_login(auth_t *a, const char *account, const char *sid, const char *method,
                     const char *ip);
void auth_emit_revoked(auth_t *a, const char *account, const char *sid, const char *reason);

/* ---- accounts.c: parameterized SQL; results are read by the callers. ---- */

/* -> 0 rows | 1 row (account_id) ; 23505 on a taken username */
int auth_db_register(auth_t *a, const char *id, const char *key, const char *display,
                     const char *hash, wy_pg_cb cb, void *ud);
/* -> account_id, password_hash, banned ('t'/'f') ; 0 rows: no such user */
int auth_db_find_password(auth_t *a, const char *key, wy_pg_cb cb, void *ud);
/* -> account_id, created, banned ; 0 rows when !create and unknown */
int auth_db_identity_login(auth_t *a, const char *method, const char *subject, const char *new_id,
                           bool create, wy_pg_cb cb, void *ud);
/* session + first refresh token, in one statement */
int auth_db_session_open(auth_t *a, const char *sid, const char *account, const char *method,
                         const char *refresh_hash, wy_pg_cb cb, void *ud);
/* -> status, session_id, account_id (see auth.refresh_rotate) */
int auth_db_refresh_rotate(auth_t *a, const char *old_hash, const char *new_hash, wy_pg_cb cb,
                           void *ud);
/* -> number of rows revoked (command status) */
int auth_db_session_revoke(auth_t *a, const char *sid, const char *account, const char *reason,
                           wy_pg_cb cb, void *ud);
/* -> account_id, username, created_at (unix s), banned, methods (JSON array text) */
int auth_db_account(auth_t *a, const char *account, wy_pg_cb cb, void *ud);
/* 23505 credentials_pkey: account has a password already; credentials_username_key: taken */
int auth_db_link_password(auth_t *a, const char *account, const char *key, const char *display,
                          const char *hash, wy_pg_cb cb, void *ud);
/* -> account_id now owning (method, subject): == account when linked (or already was) */
int auth_db_link_identity(auth_t *a, const char *account, const char *method, const char *subject,
                          wy_pg_cb cb, void *ud);
/* -> integer: removed, 0 not linked, -1 last method */
int auth_db_unlink(auth_t *a, const char *account, const char *method, const char *subject,
                   wy_pg_cb cb, void *ud);
/* -> integer: sessions revoked, -1 no such account */
int auth_db_revoke_account(auth_t *a, const char *account, const char *reason, bool ban,
                           wy_pg_cb cb, void *ud);

#endif
