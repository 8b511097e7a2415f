/* wy-lobby hello: token (verified here) -> claim (its fence epoch and the nickname in one
 * PostgreSQL statement, then auth's revocation keys and the claim script in Redis) -> welcome;
 * Auth.Introspect only when Redis' revocation state is incomplete. Each step holds a reference to
 * the connection and goes on only while the client is still there. */
#include "hello.h"
#include "chat.h"
#include "state.h"
#include "store.h"
#include "tokens.h"
#include "wire.h"
#include "auth.pb-c.h"

#include <string.h>

static void hello_fail(lobby_conn_t *c, Wyvern__Lobby__Code code, int close_code, const char *why)
{
    lobby_reply_status(c, c->hello_req, code, why);
    lobby_observe(c, "hello", c->hello_start_ns, code);
    lobby_conn_close(c, close_code, why);
}

static void ask_auth(lobby_conn_t *c);

static void claimed(lobby_conn_t *c, int status, const lobby_claim_t *r, const char *err)
{
    lobby_t *lb = c->lb;
    if (status == WY_OK && r->revoked) {
        wy_metric_inc(lb->m_hello_revoked);
        if (c->ws && c->state == LOBBY_ST_CLAIM) {
            char why[LOBBY_REASON_MAX];
            snprintf(why, sizeof why, "token revoked: %.80s", r->prev_sid);
            hello_fail(c, WYVERN__LOBBY__CODE__UNAUTHENTICATED, LOBBY_CLOSE_UNAUTH, why);
        }
        return;
    }
    if (!(status == WY_OK && r->unknown)) { /* the token is needed no longer */
        wy_free(c->token);
        c->token = NULL;
    }
    if (status == WY_OK && r->unknown) {
        /* Redis lost auth's revocation state (auth is writing it back): auth decides. */
        wy_metric_inc(lb->m_hello_introspect);
        if (c->ws && c->state == LOBBY_ST_CLAIM)
            ask_auth(c);
        return;
    }
    if (status != WY_OK) {
        if (status != WY_ECANCELED)
            wy_log_warn("session claim failed", "session", c->sid, "error", err, NULL);
        if (c->ws && c->state == LOBBY_ST_CLAIM)
            hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                       "session store unavailable, retry");
        return;
    }
    if (r->superseded) {
        /* A newer login of this account claimed it first: this one lost the race. */
        wy_log_info("login superseded by a newer one", "account", c->account, NULL);
        if (c->ws && c->state == LOBBY_ST_CLAIM)
            hello_fail(c, WYVERN__LOBBY__CODE__CONFLICT,
                       lb->reject_new ? LOBBY_CLOSE_REJECTED : LOBBY_CLOSE_KICKED,
                       lb->reject_new ? "account already logged in" : "logged in elsewhere");
        return;
    }
    if (!r->claimed) {
        wy_metric_inc(lb->m_rejected);
        wy_log_info("login refused: live session elsewhere (reject-new)", "account", c->account,
                    "other_session", r->prev_sid, "other_instance", r->prev_instance, NULL);
        if (c->ws && c->state == LOBBY_ST_CLAIM)
            hello_fail(c, WYVERN__LOBBY__CODE__CONFLICT, LOBBY_CLOSE_REJECTED,
                       "account already logged in");
        return;
    }
    if (*r->prev_sid)
        lobby_session_kick(lb, r->prev_instance, r->prev_sid, c->account, "logged in elsewhere");
    if (!c->ws || c->state != LOBBY_ST_CLAIM) {
        /* The client left (or was kicked) while the claim ran: give the session back. */
        lobby_session_release(c);
        return;
    }
    c->state = LOBBY_ST_READY;
    c->last_write_ms = wy_now_ms();
    /* An older session of the account still open here that the claim did not name (Redis
     * lost its record): it lost to this one now, not only at its next heartbeat. */
    lobby_conn_t *old = wy_map_get_str(lb->by_account, c->account);
    if (old && old != c && old->ws && old->state == LOBBY_ST_READY &&
        strcmp(old->sid, r->prev_sid) != 0)
        lobby_conn_kick(old, "logged in elsewhere", LOBBY_CLOSE_KICKED);
    (void)wy_map_put_str(lb->by_account, c->account, c); /* unbounded, short key: cannot fail */
    wy_metric_inc(lb->m_logins);
    wy_metric_inc(lb->m_sessions);
    c->counted = true;

    Wyvern__Lobby__Welcome w = WYVERN__LOBBY__WELCOME__INIT;
    w.session_id = c->sid;
    w.account_id = c->account;
    w.nickname = c->nick;
    w.instance = (char *)lb->instance;
    w.heartbeat_interval_ms = (uint32_t)lb->cfg->heartbeat_ms;
    w.idle_timeout_ms = (uint32_t)lb->cfg->idle_ms;
    w.epoch = c->epoch;
    w.max_message_bytes = (uint32_t)lb->cfg->max_message;
    w.max_messages_per_sec = (uint32_t)lb->cfg->max_msgs_per_sec;
    lobby_reply(c, c->hello_req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_WELCOME, &w.base);
    lobby_observe(c, "hello", c->hello_start_ns, WYVERN__LOBBY__CODE__OK);
    lobby_chat_session_ready(c); /* whispers kept while offline */
    wy_log_debug("session ready", "session", c->sid, "account", c->account, NULL);
}

static void claim(lobby_conn_t *c)
{
    c->state = LOBBY_ST_CLAIM;
    wy_uuid4(c->sid);
    c->created_wall_ms = wy_wall_ms();
    /* Registered before the claim runs, so a kick that overtakes the claim's answer still
     * finds this connection. */
    (void)wy_map_put_str(c->lb->by_sid, c->sid, c); /* unbounded, short key: cannot fail */
    c->registered = true;
    if (lobby_session_claim(c, claimed) != WY_OK)
        hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                   "session store unavailable, retry");
}

static void introspected(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    WY_UNUSED(status);
    lobby_conn_t *c = arg;
    if (c->ws && c->state == LOBBY_ST_AUTH) {
        const Wyvern__Auth__IntrospectResponse *r = (const Wyvern__Auth__IntrospectResponse *)resp;
        if (err != WY_OK) {
            wy_log_warn("auth Introspect failed", "error", *message ? message : wy_strerror(err),
                        NULL);
            hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                       "auth unavailable, retry");
        } else if (!r->active) {
            char why[LOBBY_REASON_MAX];
            snprintf(why, sizeof why, "token not active: %.80s",
                     r->reason[0] ? r->reason : "revoked");
            hello_fail(c, WYVERN__LOBBY__CODE__UNAUTHENTICATED, LOBBY_CLOSE_UNAUTH, why);
        } else {
            c->revocation_asked = true;
            claim(c);
        }
    }
    lobby_conn_unref(c);
}

/* The claim found auth's revocation state in Redis incomplete: ask auth (Introspect, which
 * falls back on PostgreSQL), then claim again without reading the keys. Fail closed: no
 * answer from auth closes the hello with 4007. */
static void ask_auth(lobby_conn_t *c)
{
    lobby_t *lb = c->lb;
    c->state = LOBBY_ST_AUTH;
    /* The claim registered the session id; the next claim takes a new one. */
    if (c->registered) {
        wy_map_del_if(lb->by_sid, c->sid, strlen(c->sid), c);
        c->registered = false;
    }
    Wyvern__Auth__IntrospectRequest ir = WYVERN__AUTH__INTROSPECT_REQUEST__INIT;
    ir.access_token = c->token;
    int rc = lb->auth && c->token ? wy_grpc_call(lb->auth, "/wyvern.auth.Auth/Introspect", &ir.base,
                                                 &wyvern__auth__introspect_response__descriptor,
                                                 2000, NULL, 0, introspected, c)
                                  : WY_EUNAVAIL;
    wy_free(c->token);
    c->token = NULL;
    if (rc != WY_OK) {
        hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                   "auth unavailable, retry");
        return;
    }
    lobby_conn_ref(c);
}

void lobby_hello(lobby_conn_t *c, uint32_t req, const Wyvern__Lobby__Hello *h)
{
    lobby_t *lb = c->lb;
    c->hello_req = req;
    c->state = LOBBY_ST_AUTH;
    size_t len = strlen(h->access_token);
    wy_token_verify_opts_t vo = {.iss = lb->cfg->issuer, .aud = lb->cfg->audience};
    wy_token_claims_t cl;
    const char *e = NULL;
    int rc = WY_EAUTH;
    const wy_jwt_keyset_t *ks = lb->key_cache ? wy_token_cache_keyset(lb->key_cache) : NULL;
    if (lobby_keys_unready(lb)) {
        /* Before auth's keys arrive (the instance is not ready yet): nothing is wrong
         * with the token, so not 4001 (which tells the client to log in again). */
        hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                   "token keys not loaded yet, retry");
        return;
    }
    if (len == 0) {
        e = "empty access token";
    } else {
        if (lb->static_keys)
            rc = wy_token_verify(lb->static_keys, h->access_token, len, &vo, &cl, &e);
        if (rc != WY_OK && ks)
            rc = wy_token_verify(ks, h->access_token, len, &vo, &cl, &e);
    }
    if (rc != WY_OK) {
        char why[LOBBY_REASON_MAX];
        snprintf(why, sizeof why, "bad access token: %.80s", e ? e : wy_strerror(rc));
        hello_fail(c, WYVERN__LOBBY__CODE__UNAUTHENTICATED, LOBBY_CLOSE_UNAUTH, why);
        return;
    }
    snprintf(c->account, sizeof c->account, "%s", cl.sub);
    snprintf(c->token_sid, sizeof c->token_sid, "%s", cl.sid);
    c->token_iat = cl.iat;
    c->moderator = (cl.roles & WY_TOKEN_ROLE_MODERATOR) != 0;
    if (lobby_revoked(lb, c->account, c->token_sid, c->token_iat)) {
        hello_fail(c, WYVERN__LOBBY__CODE__UNAUTHENTICATED, LOBBY_CLOSE_UNAUTH, "token revoked");
        return;
    }
    /* Kept only until the claim has read auth's revocation keys: the rare hello that finds
     * them incomplete shows the token to auth (ask_auth). */
    if (lb->auth)
        c->token = wy_strdup(h->access_token);
    claim(c); /* its fence epoch statement also reads the nickname: one round trip */
}
