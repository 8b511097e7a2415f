/* wy-auth client API: HTTP/JSON handlers (/v1/register, /v1/login, /v1/refresh,
 * /v1/logout, /v1/link, /v1/unlink, /v1/me, /.well-known/jwks.json). Each request is one
 * hop_t moving through asynchronous steps (rate limit, SQL, hashing, providers, Redis)
 * on the loop; every path ends in exactly one response. Error codes: README.md. */
#include "auth.h"
#include "validate.h"
#include "wy_log.h"
#include "wy_text.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#define MAX_BODY (16 * 1024)

typedef struct hop hop_t;
typedef void (*hop_step)(hop_t *h);

struct hop {
    auth_t *a;
    wy_http_req_t *req;
    bool link;          /* /v1/link: attach to the bearer's account instead of logging in */
    char method[16];    /* login method */
    char ip[64];        /* source address without port */
    char *username;     /* NFC display form */
    char *username_key; /* identity key (NFKC + case fold) */
    char *password;     /* NFKC */
    char *subject;      /* device/custom id, or the provider's subject */
    char *credential;   /* provider ticket / id_token */
    char *encoded;      /* Argon2 hash: stored (login) or new (register) */
    char account[WY_TOKEN_ID_MAX + 1];
    char sid[WY_TOKEN_ID_MAX + 1];
    char refresh[AUTH_REFRESH_FAMILY_LEN + 1]; /* the refresh token answered */
    char refresh_hash[65];                     /* refresh: the new token's hash */
    char old_hash[65];                         /* refresh: the presented token's hash */
    auth_family_t fam;                         /* refresh: the family it carries (has_fam) */
    bool has_fam;
    char pair_key[WY_RATELIMIT_KEY_MAX + 1]; /* password login: "<username key>|<source>" */
    int limit;                               /* password login: limiter being checked */
    bool created, banned, found;
    bool sign_slot;           /* holds a place for its token answer (auth_sign_reserve) */
    int answer_status;        /* the token answer's HTTP status */
    int attempts;             /* first login: lookups after a concurrent first login won */
    wy_token_claims_t claims; /* the bearer's, after authenticate() */
    hop_step next;
    wy_pg_tx_t *tx;  /* the change and its wy.account events (hop_begin), until committed */
    char status[16]; /* refresh: auth.refresh_rotate's status */
};

/* ---- plumbing ---- */

static hop_t *hop_new(auth_t *a, wy_http_req_t *req)
{
    hop_t *h = wy_calloc(1, sizeof *h);
    h->a = a;
    h->req = req;
    auth_ref(a);
    const char *peer = wy_http_req_peer(req);
    snprintf(h->ip, sizeof h->ip, "%s", peer ? peer : "");
    /* "ip:port" or "[ip6]:port" -> ip */
    char *colon = strrchr(h->ip, ':');
    if (colon)
        *colon = 0;
    if (h->ip[0] == '[') {
        memmove(h->ip, h->ip + 1, strlen(h->ip));
        char *rb = strchr(h->ip, ']');
        if (rb)
            *rb = 0;
    }
    return h;
}

static void secret_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        wy_free(s);
    }
}

static void hop_free(hop_t *h)
{
    if (h->tx) /* a response before the commit: nothing of the change is kept */
        auth_tx_abort(h->tx);
    if (h->sign_slot)
        auth_sign_release(h->a);
    wy_free(h->username);
    wy_free(h->username_key);
    secret_free(h->password);
    wy_free(h->subject);
    secret_free(h->credential);
    wy_free(h->encoded);
    OPENSSL_cleanse(h->refresh, sizeof h->refresh);
    auth_t *a = h->a;
    wy_free(h);
    auth_unref(a);
}

static void fail(hop_t *h, int status, const char *code, const char *msg)
{
    wy_http_respond_error(h->req, status, code, msg);
    hop_free(h);
}

static void fail_unavail(hop_t *h, int err)
{
    wy_http_add_header(h->req, "Retry-After", "1");
    fail(h, 503, "UNAVAILABLE",
         err == WY_EBUSY ? "the service is overloaded, retry shortly"
                         : "a backing service is unavailable, retry shortly");
}

static void fail_login(hop_t *h, int status, const char *code, const char *msg)
{
    if (!h->link)
        auth_count_login(h->method, code);
    fail(h, status, code, msg);
}

static void respond_json(hop_t *h, int status, json_t *body)
{
    wy_http_respond_json(h->req, status, body);
    hop_free(h);
}

static const char *jstr(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Parses a JSON object body; on failure it has responded and returns NULL. */
static json_t *body_object(hop_t *h)
{
    size_t len = 0;
    wy_http_req_body(h->req, &len);
    if (len > MAX_BODY) {
        fail(h, 413, "BODY_TOO_LARGE", "request body over 16 KiB");
        return NULL;
    }
    json_t *j = wy_http_req_json(h->req);
    if (!j) {
        hop_free(h); /* wy_http_req_json responded 400 BAD_JSON */
        return NULL;
    }
    if (!json_is_object(j)) { /* the same answer as link/unlink give (body_is_object) */
        json_decref(j);
        fail(h, 400, "BAD_JSON", "body must be a JSON object");
        return NULL;
    }
    return j;
}

static bool pg_ok(hop_t *h, int rc)
{
    if (rc == WY_OK)
        return true;
    fail_unavail(h, rc);
    return false;
}

/* A finished statement: false (logged as `what`, 503 sent) when it failed. */
static bool pg_done(hop_t *h, int status, const char *err, const char *what)
{
    if (status == WY_OK)
        return true;
    wy_log_warn(what, "error", err, NULL);
    fail_unavail(h, status);
    return false;
}

/* A finished statement that must return exactly one row: else as pg_done(). */
static bool pg_one_row(hop_t *h, int status, const PGresult *res, const char *err, const char *what)
{
    return pg_done(h, status == WY_OK && PQntuples(res) != 1 ? WY_EIO : status, err, what);
}

static void on_hop_begun(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    hop_t *h = ud;
    if (!pg_done(h, status, err, "cannot begin a transaction"))
        return;
    h->tx = tx;
    h->next(h);
}

/* Opens h->tx (a change that wy.account reports), then next(h). Responds 503 on failure. */
static void hop_begin(hop_t *h, hop_step next)
{
    h->next = next;
    pg_ok(h, auth_tx_begin(h->a, on_hop_begun, h));
}

static void on_hop_committed(int status, const char *err, void *ud)
{
    hop_t *h = ud;
    if (!pg_done(h, status, err, "commit failed"))
        return;
    auth_events_mark(h->a, h->account); /* its events are in the outbox */
    h->next(h);
}

/* Commits h->tx (the change and its events), then next(h); 503 when an event could not be
 * written (rc of the auth_event_* calls) or the commit fails. */
static void hop_commit(hop_t *h, int rc, hop_step next)
{
    if (rc == WY_OK)
        rc = auth_tx_commit(h->a, h->tx, on_hop_committed, h);
    if (rc != WY_OK) {
        fail_unavail(h, rc == WY_EBUSY ? WY_EBUSY : WY_EUNAVAIL);
        return;
    }
    h->tx = NULL; /* the commit owns it now */
    h->next = next;
}

static void set_retry_after_ms(hop_t *h, uint32_t ms)
{
    char v[16];
    snprintf(v, sizeof v, "%u", ms == 0 ? 1 : (ms + 999) / 1000);
    wy_http_add_header(h->req, "Retry-After", v);
}

static json_t *account_json(const PGresult *res)
{
    json_t *methods = json_loads(wy_pg_text(res, 0, "login_methods"), 0, NULL);
    const char *user = wy_pg_text(res, 0, "username");
    return json_pack("{s:s, s:o, s:I, s:b, s:o}", "account_id", wy_pg_text(res, 0, "account_id"),
                     "username", *user ? json_string(user) : json_null(), "created_at",
                     (json_int_t)wy_pg_int64(res, 0, "created_at"), "banned",
                     wy_pg_bool(res, 0, "banned"), "login_methods",
                     methods ? methods : json_array());
}

/* ---- tokens out ---- */

/* Takes h's place for its token answer before it writes a session or rotates a refresh token
 * (signer.h): false (503 + Retry-After sent, nothing written) when WY_AUTH_SIGN_QUEUE answers
 * are promised already. */
static bool take_sign_slot(hop_t *h)
{
    if (h->sign_slot)
        return true;
    if (auth_sign_reserve(h->a) != WY_OK) {
        fail_unavail(h, WY_EBUSY);
        return false;
    }
    h->sign_slot = true;
    return true;
}

static void on_signed(int err, const char *body, size_t len, void *ud)
{
    hop_t *h = ud;
    if (err != WY_OK) {
        fail(h, 500, "INTERNAL", "cannot sign the access token");
        return;
    }
    wy_http_respond(h->req, h->answer_status, "application/json", body, len);
    hop_free(h);
}

/* The token answer, signed and built on a worker (signer.c), with the place h took before its
 * write (every caller's path took one: take_sign_slot). */
static void respond_tokens(hop_t *h, int status)
{
    if (!take_sign_slot(h))
        return;
    h->sign_slot = false; /* auth_sign uses it up */
    h->answer_status = status;
    auth_sign_req_t r = {.account = h->account,
                         .sid = h->sid,
                         .refresh = h->refresh,
                         .created = status == 201 || h->created};
    auth_sign(h->a, &r, on_signed, h);
}

static void login_committed(hop_t *h)
{
    auth_count_login(h->method, "ok");
    respond_tokens(h, h->created ? 201 : 200);
}

/* h's refresh token for its new session h->sid of h->account: one that carries the family
 * (tokens.c), nothing stored. False (answered 503) when it cannot be made. */
static bool mint_refresh(hop_t *h)
{
    int rc =
        auth_refresh_mint(h->a, h->sid, h->account, h->method, (int64_t)wy_wall_ms(), h->refresh);
    if (rc != WY_OK) {
        wy_log_warn("refresh token not minted", "error", wy_strerror(rc), NULL);
        fail_unavail(h, WY_EUNAVAIL);
        return false;
    }
    return true;
}

/* A login's events are written (its session is carried by its refresh token): the answer. */
static void login_written(hop_t *h)
{
    auth_events_written(h->a, h->account);
    if (mint_refresh(h))
        login_committed(h);
}

/* A batched login statement committed (or failed) for h. */
static void on_login_stored(int status, const PGresult *res, int row, const char *err, void *ud)
{
    (void)res;
    (void)row;
    hop_t *h = ud;
    if (!pg_done(h, status, err, "login not stored"))
        return;
    login_written(h);
}

/* A registration committed (account, credentials and both events). */
static void register_committed(hop_t *h)
{
    if (mint_refresh(h))
        login_committed(h);
}

/* h->account (known, not banned) logged in: its account.login event goes straight to Kafka
 * (tokens.c, auth_event_login_direct: nothing written, the answer goes now) or, when it cannot,
 * its outbox row is written, batched with the other logins of this loop turn (sql.c: not
 * waiting for the disk; the answer waits for the statement). */
static void login_event(hop_t *h)
{
    if (auth_event_login_direct(h->a, h->account, h->sid, h->method, h->ip)) {
        if (mint_refresh(h))
            login_committed(h);
        return;
    }
    wy_metric_inc(h->a->m_login_ev[AUTH_LOGIN_EV_OUTBOX]);
    wy_outbox_row_t ev;
    int rc = auth_event_login_row(&ev, h->account, h->sid, h->method, h->ip);
    if (rc == WY_OK) {
        rc = auth_db_login_store(h->a, h->account, &ev, on_login_stored, h);
        wy_outbox_row_free(&ev);
    }
    pg_ok(h, rc);
}

/* A login succeeded for h->account: a new session (refresh family), carried by its refresh
 * token, nothing stored for it (migrations/011). What is written is its account.login event: in
 * h->tx after the account it created (register, committed with it), else as login_event. */
static void open_session(hop_t *h)
{
    if (h->banned) {
        fail_login(h, 403, "ACCOUNT_BANNED", "this account is banned");
        return;
    }
    if (!take_sign_slot(h))
        return;
    wy_uuid4(h->sid);
    if (h->tx) {
        int rc = h->created ? auth_event_created(h->a, h->tx, h->account, h->method) : WY_OK;
        if (rc == WY_OK)
            rc = auth_event_login(h->a, h->tx, h->account, h->sid, h->method, h->ip);
        hop_commit(h, rc, register_committed);
        return;
    }
    login_event(h);
}

/* ---- bearer authentication ---- */

static void on_bearer_checked(int err, bool revoked, void *ud)
{
    hop_t *h = ud;
    if (err != WY_OK) {
        fail_unavail(h, err);
        return;
    }
    if (revoked) {
        fail(h, 401, "TOKEN_REVOKED", "this session was revoked: log in again");
        return;
    }
    snprintf(h->account, sizeof h->account, "%s", h->claims.sub);
    snprintf(h->sid, sizeof h->sid, "%s", h->claims.sid);
    h->next(h);
}

/* Verifies "Authorization: Bearer <access token>" and its revocation, then next(h). */
static void authenticate(hop_t *h, hop_step next)
{
    const char *hdr = wy_http_req_header(h->req, "Authorization");
    if (!hdr || strncasecmp(hdr, "Bearer ", 7) != 0) {
        wy_http_add_header(h->req, "WWW-Authenticate", "Bearer");
        fail(h, 401, "INVALID_TOKEN", "missing Authorization: Bearer <access token>");
        return;
    }
    const char *tok = hdr + 7;
    while (*tok == ' ')
        tok++;
    const char *why = NULL;
    if (auth_verify_access(h->a, tok, strlen(tok), &h->claims, &why) != WY_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, "access token rejected: %s", why ? why : "invalid");
        wy_http_add_header(h->req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        fail(h, 401, "INVALID_TOKEN", msg);
        return;
    }
    h->next = next;
    int rc = auth_revocation_check(h->a, &h->claims, on_bearer_checked, h);
    if (rc != WY_OK)
        fail_unavail(h, rc);
}

/* ---- identities (device, custom, steam, oidc) ---- */

static void identity_resolved(hop_t *h);

static void on_provider(int err, const char *subject, const char *message, void *ud)
{
    hop_t *h = ud;
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", h->method, message ? message : wy_strerror(err));
    switch (err) {
    case WY_OK:
        h->subject = wy_strdup(subject);
        identity_resolved(h);
        return;
    case WY_EAUTH:
        fail_login(h, 401, "PROVIDER_REJECTED", msg);
        return;
    case WY_EINVAL:
        fail_login(h, 400, "INVALID_CREDENTIAL", msg);
        return;
    case WY_ESTATE:
        fail_login(h, 400, "METHOD_DISABLED", msg);
        return;
    default:
        wy_http_add_header(h->req, "Retry-After", "1");
        fail_login(h, 503, "PROVIDER_UNAVAILABLE", msg);
        return;
    }
}

static bool server_key_ok(const auth_t *a, const char *presented)
{
    uint8_t want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    /* Hashing both sides first makes the comparison constant-time in the length too. */
    SHA256((const unsigned char *)a->cfg->custom_secret, strlen(a->cfg->custom_secret), want);
    SHA256((const unsigned char *)presented, strlen(presented), got);
    return CRYPTO_memcmp(want, got, sizeof want) == 0;
}

/* Reads the method's credential from the body and resolves it to h->subject, then
 * identity_resolved(h). Responds on any failure. */
static void resolve_identity(hop_t *h, json_t *body)
{
    const char *why = NULL;
    if (!strcmp(h->method, "device") || !strcmp(h->method, "custom")) {
        bool device = h->method[0] == 'd';
        if (!device) {
            if (!h->a->cfg->custom_secret || !*h->a->cfg->custom_secret) {
                fail_login(h, 400, "METHOD_DISABLED", "custom-id login is not enabled");
                return;
            }
            const char *key = wy_http_req_header(h->req, "X-Wyvern-Server-Key");
            if (!key || !server_key_ok(h->a, key)) {
                fail_login(h, 403, "SERVER_KEY_REQUIRED",
                           "custom-id login needs the studio's X-Wyvern-Server-Key header");
                return;
            }
        }
        const char *id = jstr(body, device ? "device_id" : "custom_id");
        if (!id) {
            fail_login(h, 400, "INVALID_REQUEST",
                       device ? "device_id (string) is required"
                              : "custom_id (string) is required");
            return;
        }
        if (auth_validate_external_id(id, &why) != WY_OK) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s %s", device ? "device_id:" : "custom_id:", why);
            fail_login(h, 400, device ? "INVALID_DEVICE_ID" : "INVALID_CUSTOM_ID", msg);
            return;
        }
        h->subject = wy_strdup(id);
        identity_resolved(h);
        return;
    }
    bool steam = !strcmp(h->method, "steam");
    const char *cred = jstr(body, steam ? "ticket" : "id_token");
    if (!cred || !*cred) {
        fail_login(h, 400, "INVALID_REQUEST",
                   steam ? "ticket (string) is required" : "id_token (string) is required");
        return;
    }
    if (!h->a->providers || !auth_provider_enabled(h->a->providers, h->method)) {
        fail_login(h, 400, "METHOD_DISABLED",
                   steam ? "Steam login is not configured"
                         : "OpenID Connect login is not configured");
        return;
    }
    h->credential = wy_strdup(cred);
    int rc = steam ? auth_steam_verify(h->a->providers, h->credential, on_provider, h)
                   : auth_oidc_verify(h->a->providers, h->credential, on_provider, h);
    if (rc != WY_OK)
        on_provider(rc, NULL, NULL, h);
}

/* A login of this identity: found and given its session by one batched statement. */
static void identity_login(hop_t *h);

static void on_identity_created(int status, const PGresult *res, int row, const char *err, void *ud)
{
    (void)res;
    hop_t *h = ud;
    if (!pg_done(h, status, err, "account not created"))
        return;
    if (row < 0) { /* a concurrent first login created it: log in to that account */
        if (++h->attempts > 2) {
            wy_log_warn("identity login did not settle", "method", h->method, NULL);
            fail_unavail(h, WY_EUNAVAIL);
            return;
        }
        identity_login(h);
        return;
    }
    h->created = true;
    login_written(h);
}

/* A first login of this identity: the account, its identity and events, batched with the other
 * first logins of this loop turn (its session is carried by its refresh token). */
static void identity_create(hop_t *h)
{
    if (!take_sign_slot(h))
        return;
    wy_uuid4(h->account);
    wy_uuid4(h->sid);
    wy_outbox_row_t created, login;
    int rc = auth_event_created_row(&created, h->account, h->method);
    if (rc == WY_OK) {
        rc = auth_event_login_row(&login, h->account, h->sid, h->method, h->ip);
        if (rc == WY_OK) {
            rc = auth_db_identity_create(h->a, h->method, h->subject, h->account, &created, &login,
                                         on_identity_created, h);
            wy_outbox_row_free(&login);
        }
        wy_outbox_row_free(&created);
    }
    pg_ok(h, rc);
}

/* A known identity was found (nothing written); an unknown one is created. */
static void on_identity_logged_in(int status, const PGresult *res, int row, const char *err,
                                  void *ud)
{
    hop_t *h = ud;
    if (!pg_done(h, status, err, "identity login failed"))
        return;
    if (row < 0) {
        identity_create(h);
        return;
    }
    snprintf(h->account, sizeof h->account, "%s", wy_pg_text(res, row, "account_id"));
    if (wy_pg_bool(res, row, "banned")) {
        fail_login(h, 403, "ACCOUNT_BANNED", "this account is banned");
        return;
    }
    login_event(h);
}

static void identity_login(hop_t *h)
{
    if (!take_sign_slot(h))
        return;
    wy_uuid4(h->sid);
    pg_ok(h, auth_db_identity_login(h->a, h->method, h->subject, on_identity_logged_in, h));
}

static void link_done(hop_t *h);

static void on_link_identity(int status, const PGresult *res, const char *err, void *ud)
{
    hop_t *h = ud;
    if (!pg_one_row(h, status, res, err, "link failed"))
        return;
    if (strcmp(wy_pg_text(res, 0, "account_id"), h->account) != 0) {
        fail(h, 409, "IDENTITY_TAKEN", "this login is already linked to another account");
        return;
    }
    link_done(h);
}

static void identity_resolved(hop_t *h)
{
    if (h->link) {
        pg_ok(h,
              auth_db_link_identity(h->a, h->account, h->method, h->subject, on_link_identity, h));
        return;
    }
    identity_login(h);
}

/* ---- register ---- */

static void on_registered(int status, const PGresult *res, const char *err, void *ud)
{
    (void)res;
    hop_t *h = ud;
    if (status == WY_EEXIST) {
        fail(h, 409, "USERNAME_TAKEN", "this username (or one that looks the same) is taken");
        return;
    }
    if (!pg_done(h, status, err, "register failed"))
        return;
    h->created = true;
    open_session(h);
}

static void on_link_password(int status, const PGresult *res, const char *err, void *ud);

static void register_tx(hop_t *h)
{
    wy_uuid4(h->account);
    pg_ok(h, auth_db_register(h->a, h->tx, h->account, h->username_key, h->username, h->encoded,
                              on_registered, h));
}

static void on_new_hash(int err, const char *encoded, void *ud)
{
    hop_t *h = ud;
    if (!h->a->stopping)
        wy_metric_set(h->a->m_hash_queue, (double)auth_hasher_inflight(h->a->hasher));
    if (err != WY_OK) {
        fail_unavail(h, err == WY_ECANCELED ? WY_EUNAVAIL : err);
        return;
    }
    if (h->link) {
        pg_ok(h, auth_db_link_password(h->a, h->account, h->username_key, h->username, encoded,
                                       on_link_password, h));
        return;
    }
    h->encoded = wy_strdup(encoded);
    hop_begin(h, register_tx);
}

/* Validates username + password of body into h; responds on failure. */
static bool take_new_credentials(hop_t *h, json_t *body)
{
    const char *user = jstr(body, "username"), *pw = jstr(body, "password");
    if (!user || !pw) {
        fail(h, 400, "INVALID_REQUEST", "username and password (strings) are required");
        return false;
    }
    const char *why = NULL;
    if (auth_validate_username(user, &h->username_key, &h->username, &why) != WY_OK) {
        fail(h, 400, "INVALID_USERNAME", why);
        return false;
    }
    if (auth_validate_password(pw, h->username_key, &h->password, &why) != WY_OK) {
        fail(h, 400, "INVALID_PASSWORD", why);
        return false;
    }
    return true;
}

/* After a job was handed to the hasher (rc of auth_hash/auth_verify): a full queue is
 * 503 HASH_QUEUE_FULL, counted as a failed login when `login`; any other error 503. */
static void hash_queued(hop_t *h, int rc, bool login)
{
    if (rc == WY_EBUSY) {
        static const char msg[] = "too many password checks in progress, retry shortly";
        wy_http_add_header(h->req, "Retry-After", "1");
        if (login)
            fail_login(h, 503, "HASH_QUEUE_FULL", msg);
        else
            fail(h, 503, "HASH_QUEUE_FULL", msg);
        return;
    }
    if (rc != WY_OK) {
        fail_unavail(h, rc);
        return;
    }
    wy_metric_set(h->a->m_hash_queue, (double)auth_hasher_inflight(h->a->hasher));
}

/* Register or link a password: validates body's username + password into h, then hashes
 * the password (on_new_hash goes on). Responds on failure; body stays the caller's. */
static void new_password(hop_t *h, json_t *body)
{
    if (!take_new_credentials(h, body))
        return;
    auth_t *a = h->a;
    hash_queued(h, a->hasher ? auth_hash(a->hasher, h->password, on_new_hash, h) : WY_ECANCELED,
                false);
}

static void handle_register(wy_http_req_t *req, void *ud)
{
    hop_t *h = hop_new(ud, req);
    snprintf(h->method, sizeof h->method, "password");
    json_t *body = body_object(h);
    if (!body)
        return;
    new_password(h, body);
    json_decref(body);
}

/* ---- password login ----
 * Failed password logins are limited per (account, source address) first, then per account
 * from all sources (a higher limit), then per source address over all accounts: a stranger
 * who guesses from one address locks only that address out of that account, the owner logs
 * in from anywhere else. Refused events are not counted (wy_ratelimit), so a locked-out
 * guesser does not push the account towards its account-wide limit. README.md, "Login
 * throttling". */

enum { LIMIT_PAIR, LIMIT_ACCOUNT, LIMIT_SOURCE, LIMIT_N };

static const struct {
    const char *scope; /* in logs */
    const char *message;
} limits[LIMIT_N] = {
    {"account_source", "too many failed logins for this account from this address"},
    {"account", "too many failed logins for this account"},
    {"source", "too many failed logins from this address"},
};

static wy_ratelimit_t *limiter(hop_t *h, int i)
{
    return i == LIMIT_PAIR ? h->a->rl_pair : i == LIMIT_ACCOUNT ? h->a->rl_account : h->a->rl_ip;
}

static const char *limit_key(hop_t *h, int i)
{
    return i == LIMIT_PAIR ? h->pair_key : i == LIMIT_ACCOUNT ? h->username_key : h->ip;
}

/* One log line per failed or refused password login: who (account id when known, the
 * username as folded), from where, why. Never the password. */
static void log_login_failure(hop_t *h, const char *msg, const char *reason, const char *scope)
{
    wy_log_warn(msg, "account", h->found ? h->account : "", "username", h->username_key, "source",
                h->ip, "reason", reason, "scope", scope, NULL);
}

static void on_fail_counted(int err, bool allowed, uint32_t retry_ms, void *ud);

/* Counts the failure against the limiter h->limit and the next ones, then 401. */
static void count_failure(hop_t *h)
{
    if (h->limit == LIMIT_N) {
        fail_login(h, 401, "INVALID_CREDENTIALS", "wrong username or password");
        return;
    }
    if (wy_ratelimit_hit(limiter(h, h->limit), limit_key(h, h->limit), on_fail_counted, h) != WY_OK)
        on_fail_counted(WY_EUNAVAIL, true, 0, h);
}

static void on_fail_counted(int err, bool allowed, uint32_t retry_ms, void *ud)
{
    (void)err, (void)allowed, (void)retry_ms;
    hop_t *h = ud;
    h->limit++;
    count_failure(h);
}

/* A failed password login: logged, counted by every limiter (so the next attempts meet the
 * limits), then 401 with the same code whether or not the user exists. */
static void password_failed(hop_t *h)
{
    log_login_failure(h, "login failed", h->found ? "wrong_password" : "unknown_username", "");
    h->limit = 0;
    count_failure(h);
}

static void on_password_verified(int err, bool match, void *ud)
{
    hop_t *h = ud;
    if (!h->a->stopping)
        wy_metric_set(h->a->m_hash_queue, (double)auth_hasher_inflight(h->a->hasher));
    if (err != WY_OK) {
        fail_unavail(h, WY_EUNAVAIL);
        return;
    }
    if (!match || !h->found) {
        password_failed(h);
        return;
    }
    /* The owner proved who they are from this address; the account-wide count stays (a
     * distributed guesser does not get a fresh budget from the owner's logins). */
    wy_ratelimit_reset(h->a->rl_pair, h->pair_key);
    open_session(h);
}

static void on_password_row(int status, const PGresult *res, const char *err, void *ud)
{
    hop_t *h = ud;
    if (!pg_done(h, status, err, "credential lookup failed"))
        return;
    if (PQntuples(res) == 1) {
        h->found = true;
        snprintf(h->account, sizeof h->account, "%s", wy_pg_text(res, 0, "account_id"));
        h->encoded = wy_strdup(wy_pg_text(res, 0, "password_hash"));
        h->banned = wy_pg_bool(res, 0, "banned");
    }
    /* Unknown users are checked against a dummy hash: same time, same answer. */
    auth_t *a = h->a;
    hash_queued(h,
                a->hasher ? auth_verify(a->hasher, h->encoded, h->password ? h->password : "",
                                        on_password_verified, h)
                          : WY_ECANCELED,
                true);
}

static void on_peeked(int err, bool allowed, uint32_t retry_ms, void *ud);

/* Checks the limiter h->limit and the next ones, then looks the username up. */
static void check_limits(hop_t *h)
{
    if (h->limit == LIMIT_N) {
        pg_ok(h, auth_db_find_password(h->a, h->username_key, on_password_row, h));
        return;
    }
    if (wy_ratelimit_peek(limiter(h, h->limit), limit_key(h, h->limit), on_peeked, h) != WY_OK)
        on_peeked(WY_EUNAVAIL, true, 0, h);
}

static void on_peeked(int err, bool allowed, uint32_t retry_ms, void *ud)
{
    (void)err; /* the limiter fails open when Redis is down */
    hop_t *h = ud;
    if (!allowed) {
        log_login_failure(h, "login refused: locked out", "rate_limited", limits[h->limit].scope);
        set_retry_after_ms(h, retry_ms);
        fail_login(h, 429, "RATE_LIMITED", limits[h->limit].message);
        return;
    }
    h->limit++;
    check_limits(h);
}

static void login_password(hop_t *h, json_t *body)
{
    const char *user = jstr(body, "username"), *pw = jstr(body, "password");
    if (!user || !pw) {
        fail_login(h, 400, "INVALID_REQUEST", "username and password (strings) are required");
        return;
    }
    /* A username that could never be registered still goes through the dummy hash, so
     * its answer and timing match an unknown valid one. */
    if (strlen(user) > 4 * AUTH_USERNAME_MAX ||
        wy_text_fold(user, strlen(user), &h->username_key) != WY_OK ||
        strlen(h->username_key) > 4 * AUTH_USERNAME_MAX) {
        /* One shared limiter bucket for every name that cannot exist; a folded key stays
         * within the limiter's key bound. */
        wy_free(h->username_key);
        h->username_key = wy_strdup("\x01invalid");
    }
    if (auth_password_normalize(pw, &h->password) != WY_OK)
        h->password = NULL;
    snprintf(h->pair_key, sizeof h->pair_key, "%s|%s", h->username_key, h->ip);
    h->limit = 0;
    check_limits(h);
}

/* ---- login / link dispatch ---- */

static bool known_method(const char *m)
{
    return !strcmp(m, "password") || !strcmp(m, "device") || !strcmp(m, "custom") ||
           !strcmp(m, "steam") || !strcmp(m, "oidc");
}

/* Copies body's "method" into h->method; responds 400 and returns false when it is not
 * a known login method (body stays the caller's). */
static bool take_method(hop_t *h, json_t *body)
{
    const char *m = jstr(body, "method");
    if (!m || !known_method(m)) {
        fail(h, 400, "UNKNOWN_METHOD",
             "method must be one of password, device, custom, steam, oidc");
        return false;
    }
    snprintf(h->method, sizeof h->method, "%s", m);
    return true;
}

/* Login and link: a password body goes to `password`, any other method to
 * resolve_identity(). Responds on failure; body stays the caller's. */
static void by_method(hop_t *h, json_t *body, void (*password)(hop_t *h, json_t *body))
{
    if (!take_method(h, body))
        return;
    if (!strcmp(h->method, "password"))
        password(h, body);
    else
        resolve_identity(h, body);
}

static void handle_login(wy_http_req_t *req, void *ud)
{
    hop_t *h = hop_new(ud, req);
    json_t *body = body_object(h);
    if (!body)
        return;
    by_method(h, body, login_password);
    json_decref(body);
}

static void on_account_row(int status, const PGresult *res, const char *err, void *ud)
{
    hop_t *h = ud;
    if (!pg_done(h, status, err, "account lookup failed"))
        return;
    if (PQntuples(res) != 1) {
        fail(h, 404, "ACCOUNT_NOT_FOUND", "this account no longer exists");
        return;
    }
    json_t *o = account_json(res);
    json_object_set_new(o, "session_id", json_string(h->sid));
    respond_json(h, 200, o);
}

static void link_done(hop_t *h)
{
    pg_ok(h, auth_db_account(h->a, h->account, on_account_row, h));
}

static void on_link_password(int status, const PGresult *res, const char *err, void *ud)
{
    hop_t *h = ud;
    if (status == WY_EEXIST) {
        const char *c = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
        if (c && !strcmp(c, "credentials_pkey"))
            fail(h, 409, "ALREADY_LINKED", "this account already has a username and password");
        else
            fail(h, 409, "USERNAME_TAKEN", "this username (or one that looks the same) is taken");
        return;
    }
    if (!pg_done(h, status, err, "link failed"))
        return;
    link_done(h);
}

static json_t *pending_body(hop_t *h);

static void link_authenticated(hop_t *h)
{
    json_t *body = pending_body(h);
    by_method(h, body, new_password);
    json_decref(body);
}

/* The request body as a JSON object (caller decrefs), or NULL when it is not one. */
static json_t *parse_body(hop_t *h)
{
    size_t len = 0;
    const char *b = wy_http_req_body(h->req, &len);
    json_t *j = json_loadb(b, len, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* The body is parsed again after authentication: the request keeps it, and parsing
 * first would let an unauthenticated caller pay for nothing. */
static json_t *pending_body(hop_t *h)
{
    json_t *j = parse_body(h);
    return j ? j : json_object();
}

static bool body_is_object(hop_t *h)
{
    size_t len = 0;
    wy_http_req_body(h->req, &len);
    if (len > MAX_BODY) {
        fail(h, 413, "BODY_TOO_LARGE", "request body over 16 KiB");
        return false;
    }
    json_t *j = parse_body(h);
    json_decref(j);
    if (!j)
        fail(h, 400, "BAD_JSON", "body must be a JSON object");
    return j != NULL;
}

static void handle_link(wy_http_req_t *req, void *ud)
{
    hop_t *h = hop_new(ud, req);
    h->link = true;
    if (body_is_object(h))
        authenticate(h, link_authenticated);
}

/* ---- unlink ---- */

static void on_unlinked(int status, const PGresult *res, const char *err, void *ud)
{
    hop_t *h = ud;
    if (!pg_one_row(h, status, res, err, "unlink failed"))
        return;
    int64_t n = wy_pg_int64(res, 0, "outcome");
    if (n < 0) {
        fail(h, 409, "LAST_LOGIN_METHOD",
             "this is the account's last login method: link another one first");
        return;
    }
    if (n == 0) {
        fail(h, 404, "NOT_LINKED", "this login method is not linked to the account");
        return;
    }
    link_done(h);
}

static void unlink_authenticated(hop_t *h)
{
    json_t *body = pending_body(h);
    if (!take_method(h, body)) {
        json_decref(body);
        return;
    }
    const char *id = jstr(body, "id");
    if (id)
        h->subject = wy_strdup(id);
    json_decref(body);
    pg_ok(h, auth_db_unlink(h->a, h->account, h->method, h->subject, on_unlinked, h));
}

static void handle_unlink(wy_http_req_t *req, void *ud)
{
    hop_t *h = hop_new(ud, req);
    if (body_is_object(h))
        authenticate(h, unlink_authenticated);
}

/* ---- me ---- */

static void me_authenticated(hop_t *h)
{
    pg_ok(h, auth_db_account(h->a, h->account, on_account_row, h));
}

static void handle_me(wy_http_req_t *req, void *ud)
{
    authenticate(hop_new(ud, req), me_authenticated);
}

/* ---- logout ---- */

/* h's session was revoked for `reason` (committed): the counter. */
static void session_revoked(const char *reason)
{
    char labels[64];
    snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
    auth_count("wy_auth_sessions_revoked_total", "Sessions revoked, by reason.", labels);
}

static void on_logout_published(int err, void *ud)
{
    (void)err; /* PostgreSQL holds the revocation; Introspect falls back to it */
    hop_t *h = ud;
    wy_http_respond(h->req, 204, NULL, NULL, 0);
    hop_free(h);
}

static void logout_committed(hop_t *h)
{
    session_revoked("logout");
    if (auth_revoke_publish(h->a, h->sid, NULL, on_logout_published, h) != WY_OK)
        on_logout_published(WY_EUNAVAIL, h);
}

static void on_logout_stored(int status, const PGresult *res, const char *err, void *ud)
{
    hop_t *h = ud;
    if (!pg_done(h, status, err, "logout failed"))
        return;
    /* 0 rows: revoked meanwhile by something else, which wrote its own event. */
    bool revoked_now = !strcmp(PQcmdTuples((PGresult *)res), "1");
    hop_commit(h,
               revoked_now ? auth_event_revoked(h->a, h->tx, h->account, h->sid, "logout") : WY_OK,
               logout_committed);
}

static void logout_tx(hop_t *h)
{
    pg_ok(h,
          auth_db_session_revoke(h->a, h->tx, h->sid, h->account, "logout", on_logout_stored, h));
}

static void logout_authenticated(hop_t *h)
{
    hop_begin(h, logout_tx);
}

static void handle_logout(wy_http_req_t *req, void *ud)
{
    authenticate(hop_new(ud, req), logout_authenticated);
}

/* ---- refresh ---- */

static void on_reuse_published(int err, void *ud)
{
    (void)err;
    hop_t *h = ud;
    wy_log_warn("refresh token reused: session revoked", "account", h->account, "session", h->sid,
                NULL);
    fail(h, 401, "REFRESH_TOKEN_REUSED",
         "this refresh token was already used: the session is revoked, log in again");
}

static void rotate_committed(hop_t *h)
{
    const char *st = h->status;
    if (!strcmp(st, "ok")) {
        respond_tokens(h, 200);
    } else if (!strcmp(st, "reused")) {
        session_revoked("refresh-reuse");
        if (auth_revoke_publish(h->a, h->sid, NULL, on_reuse_published, h) != WY_OK)
            on_reuse_published(WY_EUNAVAIL, h);
    } else if (!strcmp(st, "banned")) {
        fail(h, 403, "ACCOUNT_BANNED", "this account is banned");
    } else {
        fail(h, 401, "INVALID_REFRESH_TOKEN", "refresh token unknown, expired or revoked");
    }
}

static void on_rotated(int status, const PGresult *res, const char *err, void *ud)
{
    hop_t *h = ud;
    if (!pg_one_row(h, status, res, err, "refresh failed"))
        return;
    const char *st = wy_pg_text(res, 0, "status");
    snprintf(h->status, sizeof h->status, "%s", st);
    const char *sid = wy_pg_text(res, 0, "session_id"), *acct = wy_pg_text(res, 0, "account_id");
    snprintf(h->sid, sizeof h->sid, "%s", sid ? sid : "");
    snprintf(h->account, sizeof h->account, "%s", acct ? acct : "");
    auth_count("wy_auth_refresh_total", "Refresh attempts by result.",
               !strcmp(st, "ok")        ? "result=\"ok\""
               : !strcmp(st, "reused")  ? "result=\"reused\""
               : !strcmp(st, "banned")  ? "result=\"banned\""
               : !strcmp(st, "expired") ? "result=\"expired\""
               : !strcmp(st, "revoked") ? "result=\"revoked\""
                                        : "result=\"unknown\"");
    /* "reused" revoked the whole refresh family in this transaction. */
    hop_commit(h,
               !strcmp(st, "reused")
                   ? auth_event_revoked(h->a, h->tx, h->account, h->sid, "refresh-reuse")
                   : WY_OK,
               rotate_committed);
}

static void rotate_tx(hop_t *h)
{
    pg_ok(h, h->has_fam ? auth_db_refresh_open(h->a, h->tx, h->old_hash, &h->fam, h->refresh_hash,
                                               on_rotated, h)
                        : auth_db_refresh_rotate(h->a, h->tx, h->old_hash, h->refresh_hash,
                                                 on_rotated, h));
}

/* A refresh token that carries its family: checked here (MAC, lifetime) before any SQL; false
 * when it was answered. */
static bool take_family(hop_t *h, const char *tok)
{
    int rc = auth_refresh_open_token(h->a, tok, &h->fam);
    if (rc == WY_EUNAVAIL) {
        fail_unavail(h, rc);
        return false;
    }
    const char *result = rc != WY_OK ? "result=\"unknown\"" : NULL;
    if (rc == WY_OK && h->fam.at_ms + h->a->cfg->refresh_ttl_ms <= (int64_t)wy_wall_ms())
        result = "result=\"expired\"";
    if (result) {
        auth_count("wy_auth_refresh_total", "Refresh attempts by result.", result);
        fail(h, 401, "INVALID_REFRESH_TOKEN", "refresh token unknown, expired or revoked");
        return false;
    }
    h->has_fam = true;
    return true;
}

static void handle_refresh(wy_http_req_t *req, void *ud)
{
    hop_t *h = hop_new(ud, req);
    json_t *body = body_object(h);
    if (!body)
        return;
    const char *tok = jstr(body, "refresh_token");
    if (!tok || !auth_refresh_token_well_formed(tok)) {
        json_decref(body);
        fail(h, 401, "INVALID_REFRESH_TOKEN", "refresh token unknown, expired or revoked");
        return;
    }
    auth_refresh_hash(tok, h->old_hash);
    bool fam = strlen(tok) == AUTH_REFRESH_FAMILY_LEN;
    if (fam && !take_family(h, tok)) {
        json_decref(body);
        return;
    }
    json_decref(body);
    if (!take_sign_slot(h))
        return;
    auth_refresh_new(h->refresh, h->refresh_hash);
    hop_begin(h, rotate_tx);
}

/* ---- JWKS ---- */

static void handle_jwks(wy_http_req_t *req, void *ud)
{
    auth_t *a = ud;
    char cc[48];
    snprintf(cc, sizeof cc, "public, max-age=%lld", (long long)(a->cfg->jwks_max_age_ms / 1000));
    wy_http_add_header(req, "Cache-Control", cc);
    wy_http_respond(req, 200, "application/json", a->jwks, strlen(a->jwks));
}

int auth_http_start(auth_t *a, const char **err)
{
    static char msg[256];
    wy_http_limits_t lim;
    wy_http_limits_default(&lim);
    lim.max_body_bytes = MAX_BODY;
    lim.max_header_bytes = 16 * 1024;
    wy_http_server_new(a->loop, &lim, &a->http);
    wy_http_route(a->http, "POST", "/v1/register", handle_register, a);
    wy_http_route(a->http, "POST", "/v1/login", handle_login, a);
    wy_http_route(a->http, "POST", "/v1/refresh", handle_refresh, a);
    wy_http_route(a->http, "POST", "/v1/logout", handle_logout, a);
    wy_http_route(a->http, "POST", "/v1/link", handle_link, a);
    wy_http_route(a->http, "POST", "/v1/unlink", handle_unlink, a);
    wy_http_route(a->http, "GET", "/v1/me", handle_me, a);
    wy_http_route(a->http, "GET", "/.well-known/jwks.json", handle_jwks, a);
    const char *e = NULL;
    if (wy_http_listen(a->http, wy_daemon_bind_host(a->d), (int)a->cfg->http_port, &e) != WY_OK) {
        snprintf(msg, sizeof msg, "WY_AUTH_HTTP_PORT %lld: %s", (long long)a->cfg->http_port,
                 e ? e : "cannot listen");
        *err = msg;
        return WY_EIO;
    }
    return WY_OK;
}
