/* wy-auth: accounts, credentials, signing keys and refresh tokens. The daemon's state and
 * the seams between its files: auth.c (config, start/stop), handlers_http.c (client JSON
 * API), handlers_grpc.c (Auth service), sql.c (every SQL statement), tokens.c (tokens, revocation,
 * events), password.c (Argon2id on the worker pool), validate.c (input rules), signer.c (token
 * answers signed on worker threads). */
#ifndef AUTH_H
#define AUTH_H

#include "wy_daemon.h"
#include "wy_list.h"
#include "wy_map.h"
#include "wy_metrics.h"
#include "wy_token.h"
#include "wy_ratelimit.h"
#include "wy_outbox.h"
#include "auth.pb-c.h"
#include "password.h"
#include "providers.h"
#include "sql.h"
#include "batch.h"
#include "roles.h"
#include "signer.h"
#include "validate.h"

/* Configuration (WY_AUTH_*), filled by wy_daemon from the table in auth.c; the daemon
 * owns it (wy_daemon_config), auth_t.cfg points at it. */
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
    int64_t limit_pair;    /* failed logins per (account, source address) per window */
    int64_t limit_account; /* failed logins per account per window, all sources */
    int64_t limit_ip;      /* failed logins per source address per window, all accounts */
    int64_t limit_window_ms;
    char *custom_secret;
    int64_t jwks_max_age_ms;
    int64_t sign_workers; /* threads that sign token answers (signer.c); 0: the loop signs */
    int64_t sign_queue;   /* token answers waiting or being signed; beyond, 503 */
    auth_providers_cfg_t providers; /* WY_AUTH_STEAM_*, WY_AUTH_OIDC_* */
} auth_cfg_t;

/* The daemon's state (wy_daemon_state), owned by the loop thread. Requests in flight hold
 * a reference (auth_ref/auth_unref), so the state outlives stop() until the last one ends;
 * the daemon's state pointer is cleared when it is freed. */
/* Routes of account.login events (wy_auth_login_events_total{route}). */
enum {
    AUTH_LOGIN_EV_DIRECT,
    AUTH_LOGIN_EV_OUTBOX,
    AUTH_LOGIN_EV_FALLBACK,
    AUTH_LOGIN_EV_LOST,
    AUTH_LOGIN_EV_N
};
/* After an event row is written, logins' events go through the outbox until a relay pass read
 * it, or this long at most (another instance's relay, 1 s poll by default, publishes it). */
#define AUTH_EVENTS_QUIET_MS 3000
/* Accounts marked at once; beyond, every login's event goes through the outbox for a while. */
#define AUTH_EVENTS_MARKS_MAX 65536

typedef struct auth {
    wy_daemon_t *d;
    const auth_cfg_t *cfg;
    uv_loop_t *loop;
    wy_http_server_t *http; /* client API on WY_AUTH_HTTP_PORT */
    wy_jwt_keyset_t *keys;  /* every verification key; the signing one has its private part */
    char *jwks;             /* public keys as a JWKS document */
    auth_hasher_t *hasher;
    auth_providers_t *providers;
    wy_ratelimit_t *rl_pair, *rl_account, *rl_ip;
    uv_timer_t drain_timer;
    uint64_t drain_deadline;
    uv_timer_t reload_timer; /* see auth_revocations_watch */
    bool reload_timer_on, reloading;
    bool revocations_dirty; /* a revocation Redis did not take: drop its marker, rebuild */
    unsigned refs;
    bool stopping;
    auth_batch_t *b_login, *b_store, *b_create;       /* group commit of logins (sql.c) */
    wy_redis_script_t *marker_script, *reload_script; /* see auth_revocations_watch */
    char rebuild_nonce[37];
    unsigned reload_pending; /* reload chunks not answered yet (the marker waits for them) */
    bool reload_failed;      /* a chunk failed: no marker, the next tick starts over */
    wy_metric_t *m_hash_queue, *m_redis_failed, *m_rebuilding, *m_checks_rebuilding;
    uint32_t sign_depth; /* token answers waiting or being signed (signer.c) */
    unsigned sign_next;  /* the worker the next answer goes to */
    wy_metric_t *m_sign_queue, *m_sign_refused, *m_tokens_issued;
    uint8_t refresh_key[32]; /* MAC key of refresh tokens carrying their family (auth.token_keys) */
    bool refresh_key_loaded;
    uv_timer_t key_timer; /* retries the key's load (auth_refresh_key_load) */
    wy_map_t *roles;      /* roles.c: account -> WY_TOKEN_ROLE_* bits (NULL until loaded) */
    uint64_t roles_next_ms;
    bool roles_loading, roles_overflow_logged;
    /* account.login events produced straight to Kafka (tokens.c, auth_event_login_direct) */
    unsigned login_events_inflight; /* produced, not yet reported (the drain waits for them) */
    wy_map_t *ev_marks; /* account -> its mark (tokens.c): its rows may wait in the outbox */
    wy_list_t ev_fifo;  /* the marks, oldest first */
    bool events_dirty;  /* rows of any account may wait (a mark without account, or too many) */
    uint64_t events_mark_passes, events_mark_ms; /* events_dirty's mark */
    wy_metric_t *m_login_ev[AUTH_LOGIN_EV_N];    /* wy_auth_login_events_total{route} */
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

/* New opaque refresh token (base64url of 32 random bytes, 43 chars + NUL) and its
 * SHA-256 in hex (64 chars + NUL). */
void auth_refresh_new(char tok[44], char hash_hex[65]);

/* A refresh token carrying its family (migrations/011; nothing is stored when it is issued):
 * session sid of account, opened by a login with method at at_ms (unix ms). Returns WY_OK (tok
 * filled, AUTH_REFRESH_FAMILY_LEN characters), WY_EUNAVAIL before the key is loaded, WY_EINVAL
 * for a bad uuid or method. Loop thread (reads a->refresh_key). */
int auth_refresh_mint(const auth_t *a, const char *sid, const char *account, const char *method,
                      int64_t at_ms, char tok[AUTH_REFRESH_FAMILY_LEN + 1]);
/* The family of a presented refresh token of that form: WY_OK (out filled), WY_EAUTH (not one
 * auth issued: malformed or a wrong MAC), WY_EUNAVAIL before the key is loaded. */
int auth_refresh_open_token(const auth_t *a, const char *tok, auth_family_t *out);
/* Reads the MAC key from auth.token_keys (start(); retried every second until it is read; the
 * daemon is not ready before: auth_start's unready). */
void auth_refresh_key_load(auth_t *a);
/* SHA-256 hex of a presented refresh token. */
void auth_refresh_hash(const char *tok, char hash_hex[65]);
/* Verifies signature and claims (iss, aud, time) of an access token; no revocation check.
 * Returns WY_OK (out filled) or WY_EAUTH / WY_EINVAL / WY_ETOOBIG with *why. */
int auth_verify_access(auth_t *a, const char *token, size_t len, wy_token_claims_t *out,
                       const char **why);

/* Revocation state of a verified token. Redis answers (auth:{revoked}:sid:<sid>,
 * auth:{revoked}:acct:<sub>) only while it holds the marker of a complete rebuild
 * (auth:{revoked}:loaded); without it (Redis lost its data and auth is writing the revocations
 * back) or when Redis cannot answer, PostgreSQL does. cb once on the loop with err WY_OK and
 * revoked, or WY_EUNAVAIL when neither answers: never "not revoked" from an incomplete Redis.
 * Returns WY_OK (cb later) or WY_EUNAVAIL (cb not called). */
typedef void (*auth_revoked_cb)(int err, bool revoked, void *ud);
int auth_revocation_check(auth_t *a, const wy_token_claims_t *c, auth_revoked_cb cb, void *ud);

/* Publishes a revocation to Redis (visible to Introspect and verifiers at once): a
 * session (account NULL) or every session of an account issued up to now (sid NULL). The
 * key lives as long as an access token could. cb once on the loop with WY_OK or the Redis
 * error (PostgreSQL stays the durable record). Returns WY_OK or WY_EUNAVAIL (cb not
 * called). On any failure Redis' marker is dropped at the next watch tick, so checks use
 * PostgreSQL until a rebuild wrote the revocation (auth_revocations_watch). */
typedef void (*auth_done_cb)(int err, void *ud);
int auth_revoke_publish(auth_t *a, const char *sid, const char *account, auth_done_cb cb, void *ud);

/* Keeps Redis' revocation keys in step with PostgreSQL: checks every second that Redis
 * still holds the marker; when it is gone (Redis restarted empty, flushed, failed over to an
 * empty replica) the sessions revoked and the accounts banned within one access-token lifetime
 * are written again, then the marker (only if Redis was not emptied again meanwhile).
 * watch in start(), unwatch in stop(). */
void auth_revocations_watch(auth_t *a);
void auth_revocations_unwatch(auth_t *a);

/* ---- events (tokens.c): wy.account through the transactional outbox ----
 * A change that wy.account reports runs in a transaction (auth_tx_begin, the sql.c statement
 * with that tx), its events are added to the same transaction (auth_event_*) and
 * auth_tx_commit commits both: the event is published (in order, retried until Kafka
 * acknowledges it) if and only if the change is durable. */

/* wy_pg_begin on auth's pool; WY_EUNAVAIL when the pool is closed. */
int auth_tx_begin(auth_t *a, wy_pg_begin_cb cb, void *ud);
/* Commits tx and wakes the relay (the daemon's outbox, WY_HELPER_OUTBOX). WY_EUNAVAIL (tx
 * untouched: roll it back) once the daemon closed the outbox. */
int auth_tx_commit(auth_t *a, wy_pg_tx_t *tx, wy_pg_end_cb cb, void *ud);
/* Rolls tx back (fire and forget). */
void auth_tx_abort(wy_pg_tx_t *tx);
/* Event rows on tx (key = account). Return wy_outbox_add's codes, WY_EUNAVAIL once the outbox
 * is closing: the caller then rolls back. */
int auth_event_created(auth_t *a, wy_pg_tx_t *tx, const char *account, const char *method);
/* The account.login event of a registration, in its tx. */
int auth_event_login(auth_t *a, wy_pg_tx_t *tx, const char *account, const char *sid,
                     const char *method, const char *ip);
/* The account.login row of a login, written by its batched statement (auth_db_login_store,
 * auth_db_identity_login, auth_db_identity_create); wy_outbox_row_free it after submitting. */
int auth_event_login_row(wy_outbox_row_t *row, const char *account, const char *sid,
                         const char *method, const char *ip);
/* The account.created row of a first login, written by the batched statement that creates the
 * account (auth_db_identity_create); wy_outbox_row_free it after submitting. */
int auth_event_created_row(wy_outbox_row_t *row, const char *account, const char *method);
/* Wakes the relay after a statement that wrote an event row of account outside auth_tx_commit
 * (and marks it, below). */
void auth_events_written(auth_t *a, const char *account);
/* Notes that event rows of account (NULL or "": of any account) were committed: its logins'
 * events go through the outbox until a relay pass that read them ended, so none overtakes an
 * earlier event of its account. Call it when the commit succeeded. */
void auth_events_mark(auth_t *a, const char *account);
/* Frees the marks (with the state). */
void auth_events_marks_free(auth_t *a);
/* A login's account.login event produced straight to Kafka, no row (tokens.c): true when
 * handed to the producer (written to the outbox later if Kafka does not acknowledge it); false
 * when the caller must write it (auth_db_login_store): Kafka unreachable, auth's outbox rows not
 * yet relayed, the producer's queue full, or auth stopping. */
bool auth_event_login_direct(auth_t *a, const char *account, const char *sid, const char *method,
                             const char *ip);
/* sid NULL: every session of the account (ban, account-wide revoke). */
int auth_event_revoked(auth_t *a, wy_pg_tx_t *tx, const char *account, const char *sid,
                       const char *reason);

#endif
