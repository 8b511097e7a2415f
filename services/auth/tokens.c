/* wy-auth tokens: access tokens (wy_token), opaque refresh tokens (stored as SHA-256),
 * revocation state in Redis, and the wy.account events. */
#include "auth.h"
#include "wy_log.h"

#include <string.h>

#include <openssl/sha.h>

#define REVOKED_SID  "auth:revoked:sid:"
#define REVOKED_ACCT "auth:revoked:acct:"
/* A revocation must outlive every access token it covers: TTL + verifier leeway. */
#define REVOKE_MARGIN_MS (2 * 60 * 1000)

int auth_issue_access(auth_t *a, const char *account, const char *sid, char **token,
                      int64_t *expires_in)
{
    const char *err = NULL;
    int64_t ttl = auth_cfg.access_ttl_ms / 1000;
    int rc = wy_token_issue(a->keys, auth_cfg.signing_kid, auth_cfg.issuer, auth_cfg.audience,
                            account, sid, ttl, 0, token, NULL, &err);
    if (rc != WY_OK) {
        wy_log_error("cannot sign access token", "error", err, NULL);
        return rc;
    }
    *expires_in = ttl;
    auth_count("wy_auth_tokens_issued_total", "Access tokens signed.", NULL);
    return WY_OK;
}

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

int auth_verify_access(auth_t *a, const char *token, size_t len, wy_token_claims_t *out,
                       const char **why)
{
    wy_token_verify_opts_t o = {.iss = auth_cfg.issuer, .aud = auth_cfg.audience};
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
    /* No row: the session is unknown, so the token cannot be honoured. */
    bool revoked = PQntuples(res) == 0 || wy_pg_bool(res, 0, "revoked");
    check_done(c, WY_OK, revoked);
}

static void check_pg(check_t *c)
{
    if (auth_db_session_revoked(c->a, c->sid, c->sub, on_check_pg, c) != WY_OK)
        check_done(c, WY_EUNAVAIL, false);
}

static void on_check_redis(int status, redisReply *r, void *ud)
{
    check_t *c = ud;
    if (status != WY_OK || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        wy_metric_inc(c->a->m_redis_failed);
        check_pg(c);
        return;
    }
    bool revoked = r->element[0]->type == REDIS_REPLY_STRING;
    if (!revoked && r->element[1]->type == REDIS_REPLY_STRING) {
        long long at_ms = strtoll(r->element[1]->str, NULL, 10);
        revoked = c->iat * 1000 <= at_ms;
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
    const char *argv[] = {"MGET", k1, k2};
    if (r && wy_redis_command_argv(r, on_check_redis, c, 3, argv, NULL) == WY_OK)
        return WY_OK;
    if (auth_db_session_revoked(a, c->sid, c->sub, on_check_pg, c) == WY_OK)
        return WY_OK;
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
        wy_log_warn("revocation not published to redis", "error", wy_strerror(status), NULL);
    }
    p->cb(status, p->ud);
    auth_unref(p->a);
    wy_free(p);
}

int auth_revoke_publish(auth_t *a, const char *sid, const char *account, auth_done_cb cb, void *ud)
{
    wy_redis_t *r = auth_redis(a);
    if (!r)
        return WY_EUNAVAIL;
    char key[128], val[32], px[32];
    if (sid)
        snprintf(key, sizeof key, REVOKED_SID "%s", sid);
    else
        snprintf(key, sizeof key, REVOKED_ACCT "%s", account);
    snprintf(val, sizeof val, "%llu", (unsigned long long)wy_wall_ms());
    snprintf(px, sizeof px, "%lld", (long long)(auth_cfg.access_ttl_ms + REVOKE_MARGIN_MS));
    pub_t *p = wy_calloc(1, sizeof *p);
    p->a = a;
    p->cb = cb;
    p->ud = ud;
    auth_ref(a);
    const char *argv[] = {"SET", key, val, "PX", px};
    int rc = wy_redis_command_argv(r, on_publish, p, 5, argv, NULL);
    if (rc != WY_OK) {
        auth_unref(a);
        wy_free(p);
    }
    return rc;
}

/* ---- events ---- */

static void count_event_failed(void)
{
    auth_count("wy_auth_events_failed_total", "wy.account events not delivered.", NULL);
}

/* Delivery reports may arrive after the service state is gone (the producer is closed
 * last), so they touch only the metrics registry. */
static void on_delivery(void *ud, int status, const char *event_id)
{
    (void)ud;
    if (status != WY_OK) {
        count_event_failed();
        wy_log_warn("event not delivered", "event_id", event_id, "error", wy_strerror(status),
                    NULL);
    }
}

static void emit(auth_t *a, const char *type, const char *key, const ProtobufCMessage *m)
{
    wy_kafka_producer_t *p = wy_daemon_producer(a->d);
    if (!p) {
        count_event_failed();
        return;
    }
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = wy_malloc(n ? n : 1);
    protobuf_c_message_pack(m, buf);
    int rc = wy_kafka_produce(p, "wy.account", key, type, buf, n, on_delivery, NULL, NULL);
    wy_free(buf);
    if (rc != WY_OK) {
        count_event_failed();
        wy_log_warn("event not queued", "type", type, "error", wy_strerror(rc), NULL);
    }
}

void auth_emit_created(auth_t *a, const char *account, const char *method)
{
    Wyvern__Auth__AccountCreated m = WYVERN__AUTH__ACCOUNT_CREATED__INIT;
    m.account_id = (char *)account;
    m.method = (char *)method;
    m.created_at = (int64_t)(wy_wall_ms() / 1000);
    emit(a, "account.created", account, &m.base);
}

void auth_emit_login(auth_t *a, const char *account, const char *sid, const char *method,
                     const char *ip)
{
    Wyvern__Auth__LoginSucceeded m = WYVERN__AUTH__LOGIN_SUCCEEDED__INIT;
    m.account_id = (char *)account;
    m.session_id = (char *)sid;
    m.method = (char *)method;
    m.ip = (char *)ip;
    m.at = (int64_t)(wy_wall_ms() / 1000);
    emit(a, "account.login", account, &m.base);
}

void auth_emit_revoked(auth_t *a, const char *account, const char *sid, const char *reason)
{
    Wyvern__Auth__SessionRevoked m = WYVERN__AUTH__SESSION_REVOKED__INIT;
    m.account_id = (char *)account;
    m.session_id = (char *)(sid ? sid : "");
    m.reason = (char *)reason;
    m.at = (int64_t)(wy_wall_ms() / 1000);
    emit(a, "account.session_revoked", account, &m.base);
}

/* ---- revocations survive a Redis that lost its data ----
 * PostgreSQL is the durable record; Redis is what verifiers read. Every second one
 * command checks that Redis still holds the marker written after the last reload; when it
 * is gone (Redis restarted empty, flushed, failed over to an empty replica) the sessions
 * revoked within one access-token lifetime are written to Redis again, then the marker. */

#define RELOAD_MARKER "auth:revoked:loaded"
#define RELOAD_MAX    100000 /* bound of one reload; older revocations are expired tokens */

static void reload_finish(auth_t *a)
{
    a->reloading = false;
    auth_unref(a);
}

static void on_marker_set(int status, redisReply *r, void *ud)
{
    (void)r;
    auth_t *a = ud;
    if (status == WY_OK)
        wy_log_info("revocations reloaded into redis", NULL);
    reload_finish(a);
}

static void on_reload_set(int status, redisReply *r, void *ud)
{
    (void)status, (void)r, (void)ud; /* a failure shows as a missing marker next time */
}

static void on_reload_rows(int status, const PGresult *res, const char *err, void *ud)
{
    auth_t *a = ud;
    wy_redis_t *r = auth_redis(a);
    if (status != WY_OK || !r) {
        wy_log_warn("revocation reload failed", "error", err, NULL);
        reload_finish(a);
        return;
    }
    int n = PQntuples(res);
    int sid_col = wy_pg_col(res, "session_id"), left_col = wy_pg_col(res, "left_ms"),
        at_col = wy_pg_col(res, "revoked_ms");
    for (int i = 0; i < n; i++) {
        long long left = strtoll(PQgetvalue(res, i, left_col), NULL, 10);
        if (left <= 0)
            continue;
        char key[128], px[32];
        snprintf(key, sizeof key, REVOKED_SID "%s", PQgetvalue(res, i, sid_col));
        snprintf(px, sizeof px, "%lld", left);
        const char *argv[] = {"SET", key, PQgetvalue(res, i, at_col), "PX", px};
        if (wy_redis_command_argv(r, on_reload_set, NULL, 5, argv, NULL) != WY_OK) {
            reload_finish(a); /* marker stays unset: retried on the next tick */
            return;
        }
    }
    /* Commands on one connection run in order: the marker lands after every key. */
    const char *argv[] = {"SET", RELOAD_MARKER, "1"};
    if (wy_redis_command_argv(r, on_marker_set, a, 3, argv, NULL) != WY_OK)
        reload_finish(a);
}

static void on_marker(int status, redisReply *reply, void *ud)
{
    auth_t *a = ud;
    if (status != WY_OK || reply->type != REDIS_REPLY_NIL || a->stopping) {
        reload_finish(a);
        return;
    }
    int64_t window_s = (auth_cfg.access_ttl_ms + REVOKE_MARGIN_MS) / 1000;
    if (auth_db_recent_revocations(a, window_s, RELOAD_MAX, on_reload_rows, a) != WY_OK)
        reload_finish(a);
}

static void on_reload_tick(uv_timer_t *t)
{
    auth_t *a = t->data;
    wy_redis_t *r = auth_redis(a);
    if (a->reloading || a->stopping || !r)
        return;
    a->reloading = true;
    auth_ref(a);
    const char *argv[] = {"GET", RELOAD_MARKER};
    if (wy_redis_command_argv(r, on_marker, a, 2, argv, NULL) != WY_OK)
        reload_finish(a);
}

void auth_revocations_watch(auth_t *a)
{
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
