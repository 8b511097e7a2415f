/* wy-auth tokens: access tokens (wy_token), opaque refresh tokens (stored as SHA-256),
 * revocation state in Redis, and the wy.account events. */
#include "auth.h"
#include "validate.h"
#include "wy_log.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* Redis key formats (docs/keys.md). The whole revocation state shares the hash tag
 * {revoked}: the check's MGET (sid, account, marker), the rebuild's scripts and the rule "the
 * marker lands after every key" (one connection, in order) hold on Redis Cluster as on one
 * node. One slot serves every check: revocations are few and small. */
#define RKEY_AUTH_REVOKED_SID  "auth:{revoked}:sid:"
#define RKEY_AUTH_REVOKED_ACCT "auth:{revoked}:acct:"
#define REVOKED_SID            RKEY_AUTH_REVOKED_SID
#define REVOKED_ACCT           RKEY_AUTH_REVOKED_ACCT
/* Present while Redis holds every revocation key (written after a rebuild from PostgreSQL). */
#define RKEY_AUTH_REVOKED_LOADED "auth:{revoked}:loaded"
#define RELOAD_MARKER            RKEY_AUTH_REVOKED_LOADED
/* The rebuild in progress: its nonce; a flush during the rebuild removes it, so the marker is
 * not written over an incomplete key set. */
#define RKEY_AUTH_REVOKED_REBUILDING "auth:{revoked}:rebuilding"
#define RELOAD_NONCE                 RKEY_AUTH_REVOKED_REBUILDING
/* A revocation must outlive every access token it covers: TTL + verifier leeway. */
#define REVOKE_MARGIN_MS (2 * 60 * 1000)

static void to_hex(const uint8_t *d, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = 0;
}

void auth_refresh_hash(const char *tok, char hash_hex[65])
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)tok, strlen(tok), d);
    to_hex(d, sizeof d, hash_hex);
}

void auth_refresh_new(char tok[44], char hash_hex[65])
{
    uint8_t raw[32];
    wy_random(raw, sizeof raw);
    char *b = wy_b64url_encode(raw, sizeof raw);
    snprintf(tok, 44, "%s", b);
    wy_free(b);
    auth_refresh_hash(tok, hash_hex);
}

/* ---- refresh tokens that carry their family (migrations/011) ----
 * 58 bytes, base64url (78 characters): version 1, session id (16), account id (16), login time
 * (unix ms, 8, big-endian), method (1), then the first 16 bytes of HMAC-SHA256 over those 42
 * under auth.token_keys' secret. Nothing is stored when one is issued: its first refresh (or
 * the session's logout) creates the family's rows. */
#define FAM_VERSION 1
#define FAM_BODY    42
#define FAM_MAC     16
#define FAM_RAW     (FAM_BODY + FAM_MAC)

static const char *const fam_methods[] = {"", "device", "custom", "steam", "oidc", "password"};

static int uuid_to_bytes(const char *u, uint8_t out[16])
{
    int n = 0;
    for (const char *p = u; *p && n < 32; p++) {
        if (*p == '-')
            continue;
        int v = (*p >= '0' && *p <= '9')   ? *p - '0'
                : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10
                : (*p >= 'A' && *p <= 'F') ? *p - 'A' + 10
                                           : -1;
        if (v < 0)
            return WY_EINVAL;
        if (n % 2 == 0)
            out[n / 2] = (uint8_t)(v << 4);
        else
            out[n / 2] |= (uint8_t)v;
        n++;
    }
    return n == 32 ? WY_OK : WY_EINVAL;
}

static void uuid_from_bytes(const uint8_t in[16], char out[37])
{
    char hex[33];
    to_hex(in, 16, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static void fam_mac(const auth_t *a, const uint8_t *body, uint8_t out[FAM_MAC])
{
    uint8_t full[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    HMAC(EVP_sha256(), a->refresh_key, sizeof a->refresh_key, body, FAM_BODY, full, &n);
    memcpy(out, full, FAM_MAC);
}

int auth_refresh_mint(const auth_t *a, const char *sid, const char *account, const char *method,
                      int64_t at_ms, char tok[AUTH_REFRESH_FAMILY_LEN + 1])
{
    if (!a->refresh_key_loaded)
        return WY_EUNAVAIL;
    uint8_t raw[FAM_RAW];
    raw[0] = FAM_VERSION;
    if (uuid_to_bytes(sid, raw + 1) != WY_OK || uuid_to_bytes(account, raw + 17) != WY_OK)
        return WY_EINVAL;
    for (int i = 0; i < 8; i++)
        raw[33 + i] = (uint8_t)((uint64_t)at_ms >> (56 - 8 * i));
    raw[41] = 0;
    for (size_t i = 1; i < WY_ARRAY_LEN(fam_methods); i++)
        if (!strcmp(method, fam_methods[i]))
            raw[41] = (uint8_t)i;
    if (!raw[41])
        return WY_EINVAL;
    fam_mac(a, raw, raw + FAM_BODY);
    char *b = wy_b64url_encode(raw, sizeof raw);
    snprintf(tok, AUTH_REFRESH_FAMILY_LEN + 1, "%s", b);
    wy_free(b);
    OPENSSL_cleanse(raw, sizeof raw);
    return WY_OK;
}

int auth_refresh_open_token(const auth_t *a, const char *tok, auth_family_t *out)
{
    uint8_t raw[FAM_RAW + 2], mac[FAM_MAC];
    size_t n = 0;
    if (!a->refresh_key_loaded)
        return WY_EUNAVAIL;
    if (strlen(tok) != AUTH_REFRESH_FAMILY_LEN ||
        wy_b64url_decode(tok, AUTH_REFRESH_FAMILY_LEN, raw, sizeof raw, &n) != WY_OK ||
        n != FAM_RAW || raw[0] != FAM_VERSION)
        return WY_EAUTH;
    /* One string per token: the family's first refresh stores the SHA-256 of the string, so a
     * second spelling of the same bytes (base64url's unused low bits) would be a second
     * "first" refresh. Only the canonical encoding is accepted. */
    char *canon = wy_b64url_encode(raw, FAM_RAW);
    bool same = strcmp(canon, tok) == 0;
    wy_free(canon);
    if (!same)
        return WY_EAUTH;
    fam_mac(a, raw, mac);
    if (CRYPTO_memcmp(mac, raw + FAM_BODY, FAM_MAC) != 0)
        return WY_EAUTH;
    if (raw[41] == 0 || raw[41] >= WY_ARRAY_LEN(fam_methods))
        return WY_EAUTH;
    uuid_from_bytes(raw + 1, out->sid);
    uuid_from_bytes(raw + 17, out->account);
    uint64_t at = 0;
    for (int i = 0; i < 8; i++)
        at = (at << 8) | raw[33 + i];
    out->at_ms = (int64_t)at;
    snprintf(out->method, sizeof out->method, "%s", fam_methods[raw[41]]);
    return WY_OK;
}

/* The key is read once at start (retried every second while PostgreSQL cannot answer); until
 * then the daemon is not ready (auth_refresh_key_unready). */
static void key_load(auth_t *a);

static void on_key_retry(uv_timer_t *t)
{
    key_load(t->data);
}

static void on_key_timer_closed(uv_handle_t *h)
{
    auth_unref(h->data);
}

static void on_key_row(int status, const PGresult *res, const char *err, void *ud)
{
    auth_t *a = ud;
    size_t n = 0;
    if (status == WY_OK && PQntuples(res) == 1) {
        const char *hex = wy_pg_text(res, 0, "secret");
        for (size_t i = 0; hex && i < sizeof a->refresh_key &&
                           sscanf(hex + 2 * i, "%2hhx", &a->refresh_key[i]) == 1;
             i++)
            n++;
    }
    if (n == sizeof a->refresh_key) {
        a->refresh_key_loaded = true;
        wy_log_info("refresh token key loaded", NULL);
        uv_close((uv_handle_t *)&a->key_timer, on_key_timer_closed);
        wy_daemon_ready_check(a->d);
    } else {
        wy_log_warn("refresh token key not loaded: retrying", "error",
                    status == WY_OK ? "no key row (migration 011)" : (err ? err : "postgresql"),
                    NULL);
        if (!a->stopping)
            uv_timer_start(&a->key_timer, on_key_retry, 1000, 0);
        else
            uv_close((uv_handle_t *)&a->key_timer, on_key_timer_closed);
    }
    auth_unref(a);
}

static void key_load(auth_t *a)
{
    wy_pg_t *pg = auth_pg(a);
    auth_ref(a);
    if (a->stopping || !pg ||
        wy_pg_query(pg, "SELECT encode(secret, 'hex') AS secret FROM auth.token_keys WHERE id = 1",
                    0, NULL, on_key_row, a) != WY_OK)
        on_key_row(WY_EUNAVAIL, NULL, "postgresql unavailable", a);
}

void auth_refresh_key_load(auth_t *a)
{
    uv_timer_init(a->loop, &a->key_timer);
    a->key_timer.data = a;
    auth_ref(a); /* released when the timer handle is closed */
    key_load(a);
}

int auth_verify_access(auth_t *a, const char *token, size_t len, wy_token_claims_t *out,
                       const char **why)
{
    wy_token_verify_opts_t o = {.iss = a->cfg->issuer, .aud = a->cfg->audience};
    return wy_token_verify(a->keys, token, len, &o, out, why);
}

/* ---- revocation ---- */

typedef struct {
    auth_t *a;
    auth_revoked_cb cb;
    void *ud;
    char sid[WY_TOKEN_ID_MAX + 1];
    char sub[WY_TOKEN_ID_MAX + 1];
    int64_t iat;
} check_t;

static void check_done(check_t *c, int err, bool revoked)
{
    c->cb(err, revoked, c->ud);
    auth_unref(c->a);
    wy_free(c);
}

static void on_check_pg(int status, const PGresult *res, const char *err, void *ud)
{
    (void)err;
    check_t *c = ud;
    if (status != WY_OK) {
        check_done(c, WY_EUNAVAIL, false);
        return;
    }
    /* No row: the account is unknown, so the token cannot be honoured. A session without a row
     * is a family never refreshed: live unless its account's sessions were revoked after it. */
    bool revoked = PQntuples(res) == 0 || wy_pg_bool(res, 0, "revoked");
    check_done(c, WY_OK, revoked);
}

static void check_pg(check_t *c)
{
    if (!auth_uuid_well_formed(c->sid) || !auth_uuid_well_formed(c->sub)) {
        check_done(c, WY_OK, true); /* not a session auth issued */
        return;
    }
    if (auth_db_session_revoked(c->a, c->sid, c->sub, c->iat, on_check_pg, c) != WY_OK)
        check_done(c, WY_EUNAVAIL, false);
}

/* MGET sid key, account key, marker. Without the marker Redis may be missing revocations
 * (auth is rebuilding them): PostgreSQL answers instead. */
static void on_check_redis(int status, redisReply *r, void *ud)
{
    check_t *c = ud;
    if (status != WY_OK || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        wy_metric_inc(c->a->m_redis_failed);
        check_pg(c);
        return;
    }
    bool revoked = r->element[0]->type == REDIS_REPLY_STRING;
    if (!revoked && r->element[1]->type == REDIS_REPLY_STRING) {
        long long at_ms = strtoll(r->element[1]->str, NULL, 10);
        revoked = c->iat * 1000 <= at_ms;
    }
    if (!revoked && r->element[2]->type != REDIS_REPLY_STRING) {
        wy_metric_inc(c->a->m_checks_rebuilding);
        check_pg(c);
        return;
    }
    check_done(c, WY_OK, revoked);
}

int auth_revocation_check(auth_t *a, const wy_token_claims_t *cl, auth_revoked_cb cb, void *ud)
{
    check_t *c = wy_calloc(1, sizeof *c);
    c->a = a;
    c->cb = cb;
    c->ud = ud;
    snprintf(c->sid, sizeof c->sid, "%s", cl->sid);
    snprintf(c->sub, sizeof c->sub, "%s", cl->sub);
    c->iat = cl->iat;
    auth_ref(a);
    wy_redis_t *r = auth_redis(a);
    char k1[128], k2[128];
    snprintf(k1, sizeof k1, REVOKED_SID "%s", cl->sid);
    snprintf(k2, sizeof k2, REVOKED_ACCT "%s", cl->sub);
    const char *argv[] = {"MGET", k1, k2, RELOAD_MARKER};
    if (r && wy_redis_command_argv(r, on_check_redis, c, 4, argv, NULL) == WY_OK)
        return WY_OK;
    if (auth_pg(a)) {
        check_pg(c);
        return WY_OK;
    }
    auth_unref(a);
    wy_free(c);
    return WY_EUNAVAIL;
}

typedef struct {
    auth_t *a;
    auth_done_cb cb;
    void *ud;
} pub_t;

static void on_publish(int status, redisReply *r, void *ud)
{
    (void)r;
    pub_t *p = ud;
    if (status != WY_OK) {
        wy_metric_inc(p->a->m_redis_failed);
        /* Redis lacks a revocation PostgreSQL has: its marker goes at the next tick, so checks
         * use PostgreSQL until a rebuild wrote it (auth_revocations_watch). */
        p->a->revocations_dirty = true;
        wy_log_warn("revocation not published to redis (redis will be rebuilt)", "error",
                    wy_strerror(status), NULL);
    }
    p->cb(status, p->ud);
    auth_unref(p->a);
    wy_free(p);
}

int auth_revoke_publish(auth_t *a, const char *sid, const char *account, auth_done_cb cb, void *ud)
{
    wy_redis_t *r = auth_redis(a);
    if (!r) {
        a->revocations_dirty = true; /* see on_publish */
        return WY_EUNAVAIL;
    }
    char key[128], val[32], px[32];
    if (sid)
        snprintf(key, sizeof key, REVOKED_SID "%s", sid);
    else
        snprintf(key, sizeof key, REVOKED_ACCT "%s", account);
    snprintf(val, sizeof val, "%llu", (unsigned long long)wy_wall_ms());
    snprintf(px, sizeof px, "%lld", (long long)(a->cfg->access_ttl_ms + REVOKE_MARGIN_MS));
    pub_t *p = wy_calloc(1, sizeof *p);
    p->a = a;
    p->cb = cb;
    p->ud = ud;
    auth_ref(a);
    const char *argv[] = {"SET", key, val, "PX", px};
    int rc = wy_redis_command_argv(r, on_publish, p, 5, argv, NULL);
    if (rc != WY_OK) {
        a->revocations_dirty = true; /* see on_publish */
        auth_unref(a);
        wy_free(p);
    }
    return rc;
}

/* ---- events (transactional outbox) ---- */

int auth_tx_begin(auth_t *a, wy_pg_begin_cb cb, void *ud)
{
    wy_pg_t *pg = auth_pg(a);
    return pg ? wy_pg_begin(pg, cb, ud) : WY_EUNAVAIL;
}

int auth_tx_commit(auth_t *a, wy_pg_tx_t *tx, wy_pg_end_cb cb, void *ud)
{
    wy_outbox_t *ob = wy_daemon_outbox(a->d);
    return ob ? wy_outbox_commit(ob, tx, cb, ud) : WY_EUNAVAIL;
}

static void on_rolled_back(int status, const char *err, void *ud)
{
    (void)status, (void)err, (void)ud;
}

void auth_tx_abort(wy_pg_tx_t *tx)
{
    (void)wy_pg_tx_rollback(tx, on_rolled_back, NULL);
}

/* The event's payload (caller frees). */
static uint8_t *pack(const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = wy_malloc(*n ? *n : 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

static int add_event(auth_t *a, wy_pg_tx_t *tx, const char *type, const char *key,
                     const ProtobufCMessage *m)
{
    wy_outbox_t *ob = wy_daemon_outbox(a->d);
    if (!ob)
        return WY_EUNAVAIL;
    size_t n;
    uint8_t *buf = pack(m, &n);
    int rc = wy_outbox_add(ob, tx, "wy.account", key, type, buf, n, NULL);
    wy_free(buf);
    if (rc != WY_OK)
        wy_log_warn("event not written", "type", type, "error", wy_strerror(rc), NULL);
    return rc;
}

void auth_events_written(auth_t *a, const char *account)
{
    auth_events_mark(a, account);
    wy_outbox_t *ob = wy_daemon_outbox(a->d);
    if (ob)
        wy_outbox_wake(ob);
}

int auth_event_created(auth_t *a, wy_pg_tx_t *tx, const char *account, const char *method)
{
    Wyvern__Auth__AccountCreated m = WYVERN__AUTH__ACCOUNT_CREATED__INIT;
    m.account_id = (char *)account;
    m.method = (char *)method;
    m.created_at = (int64_t)(wy_wall_ms() / 1000);
    return add_event(a, tx, "account.created", account, &m.base);
}

int auth_event_created_row(wy_outbox_row_t *row, const char *account, const char *method)
{
    Wyvern__Auth__AccountCreated m = WYVERN__AUTH__ACCOUNT_CREATED__INIT;
    m.account_id = (char *)account;
    m.method = (char *)method;
    m.created_at = (int64_t)(wy_wall_ms() / 1000);
    size_t n;
    uint8_t *buf = pack(&m.base, &n);
    int rc = wy_outbox_row_init(row, "wy.account", account, "account.created", buf, n);
    wy_free(buf);
    return rc;
}

/* The LoginSucceeded message of a login (its strings are the caller's). */
static Wyvern__Auth__LoginSucceeded login_msg(const char *account, const char *sid,
                                              const char *method, const char *ip)
{
    Wyvern__Auth__LoginSucceeded m = WYVERN__AUTH__LOGIN_SUCCEEDED__INIT;
    m.account_id = (char *)account;
    m.session_id = (char *)sid;
    m.method = (char *)method;
    m.ip = (char *)ip;
    m.at = (int64_t)(wy_wall_ms() / 1000);
    return m;
}

int auth_event_login(auth_t *a, wy_pg_tx_t *tx, const char *account, const char *sid,
                     const char *method, const char *ip)
{
    Wyvern__Auth__LoginSucceeded m = login_msg(account, sid, method, ip);
    return add_event(a, tx, "account.login", account, &m.base);
}

int auth_event_login_row(wy_outbox_row_t *row, const char *account, const char *sid,
                         const char *method, const char *ip)
{
    Wyvern__Auth__LoginSucceeded m = login_msg(account, sid, method, ip);
    size_t n;
    uint8_t *buf = pack(&m.base, &n);
    int rc = wy_outbox_row_init(row, "wy.account", account, "account.login", buf, n);
    wy_free(buf);
    return rc;
}

/* ---- account.login published straight to Kafka ----
 * A login's event is the only thing a login would write. While the broker is reachable and
 * auth's outbox holds none of its rows unpublished, it is produced directly: no row, no
 * statement, no relay pass (read, produce, delete) per login. Kafka orders the messages of one
 * key (idempotent producer), so a login produced after the account's earlier events were
 * published stays behind them. Otherwise, and when Kafka does not acknowledge it
 * (message.timeout.ms), the event is written to the outbox as before. */

typedef struct {
    auth_t *a; /* a reference, released after the delivery report */
    char account[37];
    wy_outbox_row_t row; /* its params point into account */
} direct_ev_t;

/* An account whose event rows may still wait in the outbox (auth->ev_marks, ev_fifo). */
typedef struct {
    wy_list_t link; /* auth->ev_fifo, oldest mark first */
    uint64_t passes, ms;
    char account[37];
} ev_mark_t;

/* The mark of rows committed now: the relay passes that read them (a pass in flight may have
 * read before their commit; passes counts the passes that read rows). */
static void mark_now(auth_t *a, uint64_t *passes, uint64_t *ms)
{
    wy_outbox_t *ob = wy_daemon_outbox(a->d);
    wy_outbox_stats_t st = {0};
    if (ob)
        wy_outbox_stats(ob, &st);
    *passes = st.passes + ((ob && !wy_outbox_idle(ob)) ? 2 : 1);
    *ms = wy_now_ms();
}

/* True when rows committed at (passes, ms) were read by a relay pass that has ended: one
 * started after it, or it was the last and the relay is idle; or AUTH_EVENTS_QUIET_MS went by
 * (another instance relays this schema's rows: its relay reads them within its poll period). */
static bool mark_clear(auth_t *a, uint64_t passes, uint64_t ms)
{
    wy_outbox_t *ob = wy_daemon_outbox(a->d);
    if (!ob)
        return false;
    wy_outbox_stats_t st;
    wy_outbox_stats(ob, &st);
    return st.passes > passes || (st.passes == passes && wy_outbox_idle(ob)) ||
           wy_now_ms() - ms > AUTH_EVENTS_QUIET_MS;
}

void auth_events_mark(auth_t *a, const char *account)
{
    uint64_t passes, ms;
    mark_now(a, &passes, &ms);
    ev_mark_t *m = account && *account && a->ev_marks ? wy_map_get_str(a->ev_marks, account) : NULL;
    if (m) {
        wy_list_remove(&m->link);
    } else if (account && *account && a->ev_marks) {
        m = wy_calloc(1, sizeof *m);
        snprintf(m->account, sizeof m->account, "%s", account);
        if (wy_map_put_str(a->ev_marks, m->account, m) != WY_OK) {
            wy_free(m);
            m = NULL;
        }
    }
    if (!m) { /* no account, or too many marked: every account waits */
        a->events_dirty = true;
        a->events_mark_passes = passes;
        a->events_mark_ms = ms;
        return;
    }
    m->passes = passes;
    m->ms = ms;
    wy_list_push_back(&a->ev_fifo, &m->link);
}

/* Forgets the marks whose rows were relayed (oldest first: later marks clear later). */
static void marks_prune(auth_t *a)
{
    while (!wy_list_empty(&a->ev_fifo)) {
        ev_mark_t *m = wy_list_entry(wy_list_first(&a->ev_fifo), ev_mark_t, link);
        if (!mark_clear(a, m->passes, m->ms))
            break;
        wy_list_remove(&m->link);
        wy_map_del_str(a->ev_marks, m->account, NULL);
        wy_free(m);
    }
    if (a->events_dirty && mark_clear(a, a->events_mark_passes, a->events_mark_ms))
        a->events_dirty = false;
}

void auth_events_marks_free(auth_t *a)
{
    while (a->ev_marks && !wy_list_empty(&a->ev_fifo)) {
        ev_mark_t *m = wy_list_entry(wy_list_first(&a->ev_fifo), ev_mark_t, link);
        wy_list_remove(&m->link);
        wy_free(m);
    }
    wy_map_free(a->ev_marks);
    a->ev_marks = NULL;
}

static void on_direct_stored(int status, const PGresult *res, int row, const char *err, void *ud)
{
    (void)res, (void)row;
    direct_ev_t *e = ud;
    if (status == WY_OK) {
        auth_events_written(e->a, e->account);
        wy_metric_inc(e->a->m_login_ev[AUTH_LOGIN_EV_FALLBACK]);
    } else {
        wy_metric_inc(e->a->m_login_ev[AUTH_LOGIN_EV_LOST]);
        wy_log_error("login event lost: Kafka did not take it and the outbox could not", "event_id",
                     e->row.event_id, "error", err ? err : wy_strerror(status), NULL);
    }
    wy_outbox_row_free(&e->row);
    auth_t *a = e->a;
    wy_free(e);
    auth_unref(a);
}

static void on_direct_delivered(void *ud, int status, const char *event_id)
{
    (void)event_id;
    direct_ev_t *e = ud;
    auth_t *a = e->a;
    a->login_events_inflight--;
    if (status == WY_OK) {
        wy_outbox_row_free(&e->row);
        wy_free(e);
        auth_unref(a);
        return;
    }
    /* Not acknowledged: the outbox publishes it (it may now follow a later event of its
     * account: only when a delivery fails). */
    wy_log_warn("login event not acknowledged by Kafka: written to the outbox", "event_id",
                e->row.event_id, "error", wy_strerror(status), NULL);
    auth_events_mark(a, e->account);
    int rc = auth_db_login_store(a, e->account, &e->row, on_direct_stored, e);
    if (rc != WY_OK)
        on_direct_stored(rc, NULL, -1, wy_strerror(rc), e);
}

bool auth_event_login_direct(auth_t *a, const char *account, const char *sid, const char *method,
                             const char *ip)
{
    wy_kafka_producer_t *p = wy_daemon_producer(a->d);
    if (a->stopping || !p || !wy_kafka_producer_healthy(p))
        return false;
    marks_prune(a);
    if (a->events_dirty || (a->ev_marks && wy_map_get_str(a->ev_marks, account)))
        return false;
    Wyvern__Auth__LoginSucceeded m = login_msg(account, sid, method, ip);
    size_t n;
    uint8_t *buf = pack(&m.base, &n);
    direct_ev_t *e = wy_calloc(1, sizeof *e);
    snprintf(e->account, sizeof e->account, "%s", account);
    int rc = wy_outbox_row_init(&e->row, "wy.account", e->account, "account.login", buf, n);
    if (rc == WY_OK)
        rc = wy_kafka_produce_event(p, "wy.account", e->account, e->row.event_id, "account.login",
                                    strtoull(e->row.ts_ms, NULL, 10), buf, n, on_direct_delivered,
                                    e);
    wy_free(buf);
    if (rc != WY_OK) {
        if (e->row.payload_hex)
            wy_outbox_row_free(&e->row);
        wy_free(e);
        return false;
    }
    e->a = a;
    auth_ref(a);
    a->login_events_inflight++;
    wy_metric_inc(a->m_login_ev[AUTH_LOGIN_EV_DIRECT]);
    return true;
}

int auth_event_revoked(auth_t *a, wy_pg_tx_t *tx, const char *account, const char *sid,
                       const char *reason)
{
    Wyvern__Auth__SessionRevoked m = WYVERN__AUTH__SESSION_REVOKED__INIT;
    m.account_id = (char *)account;
    m.session_id = (char *)(sid ? sid : "");
    m.reason = (char *)reason;
    m.at = (int64_t)(wy_wall_ms() / 1000);
    return add_event(a, tx, "account.session_revoked", account, &m.base);
}

/* ---- revocations survive a Redis that lost its data ----
 * PostgreSQL is the durable record; Redis is what verifiers read. Every second one command
 * checks that Redis still holds the marker written after the last rebuild. When it is gone
 * (Redis restarted empty, flushed, failed over to an empty replica), revocation checks go to
 * PostgreSQL (auth_revocation_check) while the sessions revoked and the accounts banned within
 * one access-token lifetime are written to Redis again; the marker comes last, and only if the
 * rebuild's nonce is still there (a second flush during the rebuild removed it: the rebuild
 * starts over at the next tick). */

#define RELOAD_MAX      100000 /* bound of one reload; older revocations are expired tokens */
#define RELOAD_NONCE_MS "60000"

static const char marker_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                 "redis.call('SET', KEYS[2], '1') "
                                 "redis.call('DEL', KEYS[1]) return 1 end return 0";

static int64_t reload_window_s(const auth_t *a)
{
    return (a->cfg->access_ttl_ms + REVOKE_MARGIN_MS) / 1000;
}

static void reload_finish(auth_t *a)
{
    a->reloading = false;
    auth_unref(a);
}

static void on_marker_set(int status, redisReply *r, void *ud)
{
    auth_t *a = ud;
    if (status == WY_OK && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        wy_metric_set(a->m_rebuilding, 0);
        wy_log_info("revocations rebuilt in redis from postgresql", NULL);
    } else {
        wy_log_warn("revocation rebuild interrupted (redis emptied again?): retrying", "error",
                    status == WY_OK ? "nonce gone" : wy_strerror(status), NULL);
    }
    reload_finish(a);
}

static void reload_mark(auth_t *a);

/* A chunk is answered. The marker goes only after every chunk succeeded: an EVALSHA the node
 * did not know (NOSCRIPT) is re-sent as EVAL after commands sent behind it, so "one
 * connection, in order" alone would let the marker land before the keys. */
static void on_reload_set(int status, redisReply *r, void *ud)
{
    (void)r;
    auth_t *a = ud;
    if (status != WY_OK)
        a->reload_failed = true;
    if (--a->reload_pending > 0)
        return;
    if (a->reload_failed) {
        wy_log_warn("revocation rebuild failed: retrying", "error", wy_strerror(status), NULL);
        reload_finish(a);
        return;
    }
    reload_mark(a);
}

/* Writes auth:{revoked}:{sid,acct}:<id> = <at_ms> PX <left_ms> for every row whose time is left,
 * RELOAD_CHUNK keys per script call, so a large rebuild stays far below the connection's bound
 * of commands in flight (2 * RELOAD_MAX rows are 400 calls). */
#define RELOAD_CHUNK 500

static const char reload_lua[] =
    "for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[2 * i - 1], 'PX', ARGV[2 * i]) end "
    "return #KEYS";

static int reload_keys(auth_t *a, wy_redis_t *r, const PGresult *res)
{
    static char keys[RELOAD_CHUNK][128], px[RELOAD_CHUNK][24];
    static const char *argv[3 * RELOAD_CHUNK];
    int n = PQntuples(res);
    int c_kind = wy_pg_col(res, "kind"), c_id = wy_pg_col(res, "id"),
        c_left = wy_pg_col(res, "left_ms"), c_at = wy_pg_col(res, "at_ms");
    int k = 0;
    for (int i = 0; i < n; i++) {
        long long left = strtoll(PQgetvalue(res, i, c_left), NULL, 10);
        if (left > 0) {
            bool session = !strcmp(PQgetvalue(res, i, c_kind), "session");
            snprintf(keys[k], sizeof keys[k], "%s%s", session ? REVOKED_SID : REVOKED_ACCT,
                     PQgetvalue(res, i, c_id));
            snprintf(px[k], sizeof px[k], "%lld", left);
            argv[k] = keys[k];
            argv[RELOAD_CHUNK + 2 * k] = PQgetvalue(res, i, c_at);
            argv[RELOAD_CHUNK + 2 * k + 1] = px[k];
            k++;
        }
        if (k == RELOAD_CHUNK || (i == n - 1 && k > 0)) {
            /* KEYS then ARGV, contiguous: move the k pairs right after the k keys. */
            memmove(&argv[k], &argv[RELOAD_CHUNK], 2 * (size_t)k * sizeof *argv);
            int rc = wy_redis_eval(r, a->reload_script, 0, on_reload_set, a, k, 3 * k, argv, NULL);
            if (rc != WY_OK)
                return rc;
            a->reload_pending++;
            k = 0;
        }
    }
    return WY_OK;
}

/* Every key is written: the marker (if the rebuild's nonce is still there). */
static void reload_mark(auth_t *a)
{
    wy_redis_t *r = auth_redis(a);
    const char *argv[] = {RELOAD_NONCE, RELOAD_MARKER, a->rebuild_nonce};
    if (!r || wy_redis_eval(r, a->marker_script, 0, on_marker_set, a, 2, 3, argv, NULL) != WY_OK)
        reload_finish(a);
}

static void on_reload_rows(int status, const PGresult *res, const char *err, void *ud)
{
    auth_t *a = ud;
    wy_redis_t *r = auth_redis(a);
    a->reload_pending = 1; /* held until every chunk is sent */
    a->reload_failed = false;
    if (status != WY_OK || !r || reload_keys(a, r, res) != WY_OK) {
        wy_log_warn("revocation rebuild failed", "error", err ? err : "redis", NULL);
        a->reload_failed = true;
    }
    on_reload_set(a->reload_failed ? WY_EIO : WY_OK, NULL, a); /* drops the hold */
}

static void on_nonce_set(int status, redisReply *reply, void *ud)
{
    (void)reply;
    auth_t *a = ud;
    if (status != WY_OK ||
        auth_db_recent_revocations(a, reload_window_s(a), RELOAD_MAX, on_reload_rows, a) != WY_OK)
        reload_finish(a);
}

/* Redis has no marker: write the nonce, then the revocations, then the marker. */
static void rebuild_start(auth_t *a)
{
    wy_redis_t *r = auth_redis(a);
    if (a->stopping || !r) {
        reload_finish(a);
        return;
    }
    wy_metric_set(a->m_rebuilding, 1);
    wy_log_warn("redis has no complete revocation state: rebuilding it from postgresql "
                "(revocation checks use postgresql meanwhile)",
                NULL);
    wy_uuid4(a->rebuild_nonce);
    const char *argv[] = {"SET", RELOAD_NONCE, a->rebuild_nonce, "PX", RELOAD_NONCE_MS};
    if (wy_redis_command_argv(r, on_nonce_set, a, 5, argv, NULL) != WY_OK)
        reload_finish(a);
}

static void on_marker(int status, redisReply *reply, void *ud)
{
    auth_t *a = ud;
    if (status != WY_OK || reply->type != REDIS_REPLY_NIL) {
        reload_finish(a);
        return;
    }
    rebuild_start(a);
}

/* A revocation was not published: the marker is dropped, so every instance's checks go to
 * PostgreSQL until the rebuild (which includes that revocation) is complete. */
static void on_marker_dropped(int status, redisReply *reply, void *ud)
{
    (void)reply;
    auth_t *a = ud;
    if (status != WY_OK) {
        reload_finish(a); /* still dirty: next tick */
        return;
    }
    a->revocations_dirty = false;
    rebuild_start(a);
}

static void on_reload_tick(uv_timer_t *t)
{
    auth_t *a = t->data;
    auth_roles_tick(a); /* roles.c: the accounts' roles, every AUTH_ROLES_RELOAD_MS */
    wy_redis_t *r = auth_redis(a);
    if (a->reloading || a->stopping || !r)
        return;
    a->reloading = true;
    auth_ref(a);
    bool dirty = a->revocations_dirty;
    const char *argv[] = {dirty ? "DEL" : "GET", RELOAD_MARKER};
    if (wy_redis_command_argv(r, dirty ? on_marker_dropped : on_marker, a, 2, argv, NULL) != WY_OK)
        reload_finish(a);
}

void auth_revocations_watch(auth_t *a)
{
    a->marker_script = wy_redis_script_new(marker_lua);
    a->reload_script = wy_redis_script_new(reload_lua);
    a->m_rebuilding = wy_metrics_gauge(
        "wy_auth_revocations_rebuilding",
        "1 while Redis lacks the complete revocation state and auth rebuilds it from PostgreSQL.",
        NULL);
    a->m_checks_rebuilding =
        wy_metrics_counter("wy_auth_revocation_checks_rebuilding_total",
                           "Revocation checks answered by PostgreSQL because Redis had no "
                           "complete revocation state (rebuilding after a data loss).",
                           NULL);
    uv_timer_init(a->loop, &a->reload_timer);
    a->reload_timer.data = a;
    a->reload_timer_on = true;
    auth_ref(a); /* released when the timer handle is closed */
    uv_timer_start(&a->reload_timer, on_reload_tick, 0, 1000);
}

static void on_reload_timer_closed(uv_handle_t *h)
{
    auth_unref(h->data);
}

void auth_revocations_unwatch(auth_t *a)
{
    if (!a->reload_timer_on)
        return;
    a->reload_timer_on = false;
    uv_timer_stop(&a->reload_timer);
    uv_close((uv_handle_t *)&a->reload_timer, on_reload_timer_closed);
}
