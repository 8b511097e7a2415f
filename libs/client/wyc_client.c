/* wyc context, client lifetime and the auth HTTP/JSON API (register, login, refresh, logout,
 * link, unlink, me) on wy_httpc, with the automatic refresh of the access token. */
#include "wyc_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ context */

static char *dup_or_null(const char *s)
{
    return s ? wy_strdup(s) : NULL;
}

/* Splits ws://host:port/path into the context. */
static int parse_lobby_url(wyc_ctx_t *ctx, const char *url, const char **err)
{
    if (strncmp(url, "ws://", 5) != 0) {
        *err = "lobby_url: want ws://host:port/path (wss:// is not supported: terminate TLS in "
               "front of the lobby)";
        return WY_EINVAL;
    }
    const char *h = url + 5;
    const char *path = strchr(h, '/');
    size_t hl = path ? (size_t)(path - h) : strlen(h);
    if (hl == 0 || hl >= sizeof ctx->lobby_hostport) {
        *err = "lobby_url: missing or too long host";
        return WY_EINVAL;
    }
    memcpy(ctx->lobby_hostport, h, hl);
    ctx->lobby_hostport[hl] = 0;
    snprintf(ctx->lobby_path, sizeof ctx->lobby_path, "%s", path ? path : "/");
    const char *colon = strrchr(ctx->lobby_hostport, ':');
    const char *rb = strrchr(ctx->lobby_hostport, ']');
    if (colon && (!rb || colon > rb)) {
        char *end = NULL;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p <= 0 || p > 65535) {
            *err = "lobby_url: bad port";
            return WY_EINVAL;
        }
        ctx->lobby_port = (int)p;
        snprintf(ctx->lobby_host, sizeof ctx->lobby_host, "%.*s",
                 (int)(colon - ctx->lobby_hostport), ctx->lobby_hostport);
    } else {
        ctx->lobby_port = 80;
        snprintf(ctx->lobby_host, sizeof ctx->lobby_host, "%s", ctx->lobby_hostport);
    }
    size_t n = strlen(ctx->lobby_host);
    if (n >= 2 && ctx->lobby_host[0] == '[' && ctx->lobby_host[n - 1] == ']') {
        memmove(ctx->lobby_host, ctx->lobby_host + 1, n - 2);
        ctx->lobby_host[n - 2] = 0;
    }
    return WY_OK;
}

int wyc_ctx_new(uv_loop_t *loop, const wyc_config_t *cfg, wyc_ctx_t **out, const char **err)
{
    wyc_config_t def;
    if (!cfg) {
        wyc_config_default(&def);
        cfg = &def;
    }
    const char *e = NULL;
    if (!cfg->auth_url ||
        (strncmp(cfg->auth_url, "http://", 7) != 0 && strncmp(cfg->auth_url, "https://", 8) != 0)) {
        *err = "auth_url: want http://host:port or https://host";
        return WY_EINVAL;
    }
    wyc_ctx_t *ctx = wy_calloc(1, sizeof *ctx);
    if (!cfg->lobby_url || parse_lobby_url(ctx, cfg->lobby_url, &e) != WY_OK) {
        wy_free(ctx);
        *err = e ? e : "lobby_url: missing";
        return WY_EINVAL;
    }
    ctx->loop = loop;
    ctx->cfg = *cfg;
    ctx->auth_url = wy_strdup(cfg->auth_url);
    size_t n = strlen(ctx->auth_url);
    while (n && ctx->auth_url[n - 1] == '/')
        ctx->auth_url[--n] = 0;
    ctx->lobby_url = wy_strdup(cfg->lobby_url);
    ctx->server_key = dup_or_null(cfg->server_key);
    ctx->client_version = wy_strdup(cfg->client_version ? cfg->client_version : "wyc/1");
    ctx->cfg.auth_url = ctx->auth_url;
    ctx->cfg.lobby_url = ctx->lobby_url;
    ctx->cfg.server_key = ctx->server_key;
    ctx->cfg.client_version = ctx->client_version;
    if (!ctx->cfg.timeout_ms)
        ctx->cfg.timeout_ms = 10000;
    if (!ctx->cfg.max_inflight)
        ctx->cfg.max_inflight = 256;
    if (!ctx->cfg.reconnect_base_ms)
        ctx->cfg.reconnect_base_ms = 250;
    if (!ctx->cfg.reconnect_max_ms)
        ctx->cfg.reconnect_max_ms = 30000;
    wy_httpc_opts_t o = {0};
    o.max_concurrent = ctx->cfg.max_inflight;
    o.timeout_ms = ctx->cfg.timeout_ms;
    o.max_response_bytes = 64 * 1024;
    o.user_agent = "wyvern-wyc/1";
    if (wy_httpc_new(loop, &o, &ctx->http) != WY_OK) {
        wyc_ctx_close(ctx, NULL, NULL);
        *err = "cannot create the HTTP client";
        return WY_EINTERNAL;
    }
    *out = ctx;
    return WY_OK;
}

typedef struct {
    wyc_ctx_t *ctx;
    void (*done)(void *);
    void *ud;
} ctx_close_t;

static void ctx_free(wyc_ctx_t *ctx)
{
    wy_free(ctx->auth_url);
    wy_free(ctx->lobby_url);
    wy_free(ctx->server_key);
    wy_free(ctx->client_version);
    wy_free(ctx);
}

static void ctx_http_closed(void *ud)
{
    ctx_close_t *cc = ud;
    ctx_free(cc->ctx);
    if (cc->done)
        cc->done(cc->ud);
    wy_free(cc);
}

void wyc_ctx_close(wyc_ctx_t *ctx, void (*done)(void *ud), void *ud)
{
    ctx->closing = true;
    if (!ctx->http) {
        ctx_free(ctx);
        if (done)
            done(ud);
        return;
    }
    ctx_close_t *cc = wy_calloc(1, sizeof *cc);
    cc->ctx = ctx;
    cc->done = done;
    cc->ud = ud;
    wy_httpc_close(ctx->http, ctx_http_closed, cc);
}

uv_loop_t *wyc_ctx_loop(const wyc_ctx_t *ctx)
{
    return ctx->loop;
}

/* ------------------------------------------------------------------ client lifetime */

void wyc__ref(wyc_client_t *c)
{
    c->refs++;
}

void wyc__unref(wyc_client_t *c)
{
    if (--c->refs == 0) {
        wyc__chat_free(c);
        wy_free(c);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    wyc__unref(h->data);
}

void wyc__emit(wyc_client_t *c, const wyc_event_t *ev)
{
    if (!c->closing && c->on_event)
        c->on_event(c, ev, c->ud);
}

static void on_refresh_timer(uv_timer_t *t);

int wyc_client_new(wyc_ctx_t *ctx, wyc_event_cb on_event, void *ud, wyc_client_t **out)
{
    wyc_client_t *c = wy_calloc(1, sizeof *c);
    c->ctx = ctx;
    c->on_event = on_event;
    c->ud = ud;
    c->refs = 1;
    uv_timer_init(ctx->loop, &c->refresh_timer);
    c->refresh_timer.data = c;
    wyc__ref(c);
    wyc_backoff_init(&c->refresh_backoff, 1000, 30000);
    wyc__lobby_init(c);
    *out = c;
    return WY_OK;
}

void wyc_client_close(wyc_client_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    wyc__lobby_shutdown(c);
    uv_close((uv_handle_t *)&c->refresh_timer, on_handle_closed);
    memset(&c->sess, 0, sizeof c->sess);
    wyc__unref(c);
}

void *wyc_client_userdata(const wyc_client_t *c)
{
    return c->ud;
}

const wyc_session_t *wyc_session(const wyc_client_t *c)
{
    return c->logged_in ? &c->sess : NULL;
}

/* ------------------------------------------------------------------ HTTP plumbing */

enum {
    OP_REGISTER = 1,
    OP_LOGIN,
    OP_RESUME,
    OP_REFRESH,
    OP_AUTO_REFRESH,
    OP_LOGOUT,
    OP_LINK,
    OP_UNLINK,
    OP_ME
};

typedef struct {
    wyc_client_t *c;
    int kind;
    wyc_done_cb cb;
    wyc_account_cb acb;
    void *ud;
} op_t;

/* Server error body {"error":{"code","message"}} or a status without one. */
static void http_error(wyc_error_t *e, int status, const char *body, size_t len)
{
    int code = status == 400   ? WY_EINVAL
               : status == 401 ? WY_EAUTH
               : status == 403 ? WY_EPERM
               : status == 404 ? WY_ENOTFOUND
               : status == 409 ? WY_EEXIST
               : status == 413 ? WY_ETOOBIG
               : status == 429 ? WY_ELIMIT
               : status == 503 ? WY_EUNAVAIL
               : status == 504 ? WY_ETIMEDOUT
                               : WY_EIO;
    const char *scode = NULL, *smsg = NULL;
    json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *err = j ? json_object_get(j, "error") : NULL;
    if (json_is_object(err)) {
        json_t *v = json_object_get(err, "code");
        scode = json_is_string(v) ? json_string_value(v) : NULL;
        v = json_object_get(err, "message");
        smsg = json_is_string(v) ? json_string_value(v) : NULL;
    }
    wyc__err_set(e, code, WYC_SRC_SERVER, "%s", smsg ? smsg : "the server refused the request");
    e->http_status = status;
    snprintf(e->server_code, sizeof e->server_code, "%s", scode ? scode : "");
    if (!smsg)
        snprintf(e->message, sizeof e->message, "auth answered HTTP %d", status);
    json_decref(j);
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void schedule_refresh(wyc_client_t *c)
{
    if (!c->ctx->cfg.auto_refresh || c->closing || !c->logged_in)
        return;
    int64_t left = c->sess.access_expires_at_ms - (int64_t)wy_wall_ms();
    /* At three quarters of the lifetime left: room for a slow or failed attempt or two. */
    int64_t delay = left > 4000 ? left * 3 / 4 : 1000;
    uv_timer_start(&c->refresh_timer, on_refresh_timer, (uint64_t)delay, 0);
}

/* Takes a token response; false with e filled when it is not one. */
static bool take_tokens(wyc_client_t *c, const char *body, size_t len, wyc_error_t *e)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *acct = j ? jstr(j, "account_id") : NULL;
    const char *sid = j ? jstr(j, "session_id") : NULL;
    const char *at = j ? jstr(j, "access_token") : NULL;
    const char *rt = j ? jstr(j, "refresh_token") : NULL;
    json_t *exp = j ? json_object_get(j, "expires_in") : NULL;
    if (!acct || !sid || !at || !rt || !json_is_integer(exp) ||
        strlen(at) >= sizeof c->sess.access_token || strlen(rt) >= sizeof c->sess.refresh_token ||
        strlen(acct) >= sizeof c->sess.account_id || strlen(sid) >= sizeof c->sess.session_id) {
        wyc__err_set(e, WY_EIO, WYC_SRC_PROTOCOL, "auth answered without valid tokens");
        json_decref(j);
        return false;
    }
    snprintf(c->sess.account_id, sizeof c->sess.account_id, "%s", acct);
    snprintf(c->sess.session_id, sizeof c->sess.session_id, "%s", sid);
    snprintf(c->sess.access_token, sizeof c->sess.access_token, "%s", at);
    snprintf(c->sess.refresh_token, sizeof c->sess.refresh_token, "%s", rt);
    c->sess.access_expires_at_ms = (int64_t)wy_wall_ms() + json_integer_value(exp) * 1000;
    c->sess.created = json_is_true(json_object_get(j, "created"));
    c->logged_in = true;
    json_decref(j);
    wyc_backoff_reset(&c->refresh_backoff);
    schedule_refresh(c);
    wyc_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = WYC_EV_TOKENS;
    wyc__emit(c, &ev);
    return true;
}

static void account_from(json_t *j, wyc_account_t *a)
{
    memset(a, 0, sizeof *a);
    const char *s;
    if ((s = jstr(j, "account_id")))
        snprintf(a->account_id, sizeof a->account_id, "%s", s);
    if ((s = jstr(j, "username")))
        snprintf(a->username, sizeof a->username, "%s", s);
    if ((s = jstr(j, "session_id")))
        snprintf(a->session_id, sizeof a->session_id, "%s", s);
    json_t *v = json_object_get(j, "created_at");
    a->created_at = json_is_integer(v) ? json_integer_value(v) : 0;
    a->banned = json_is_true(json_object_get(j, "banned"));
    json_t *m = json_object_get(j, "login_methods");
    size_t i;
    json_t *x;
    json_array_foreach(m, i, x)
    {
        if (!json_is_string(x))
            continue;
        size_t used = strlen(a->login_methods);
        snprintf(a->login_methods + used, sizeof a->login_methods - used, "%s%s", used ? "," : "",
                 json_string_value(x));
    }
}

static void auth_lost(wyc_client_t *c, const wyc_error_t *e)
{
    c->logged_in = false;
    memset(&c->sess, 0, sizeof c->sess);
    uv_timer_stop(&c->refresh_timer);
    wyc_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = WYC_EV_AUTH_LOST;
    ev.error = *e;
    wyc__emit(c, &ev);
}

static void on_http(int err, int status, const char *body, size_t len, const char *msg, void *ud)
{
    op_t *op = ud;
    wyc_client_t *c = op->c;
    wyc_error_t e;
    wyc_account_t acct;
    bool have_acct = false;
    if (c->closing) {
        wyc__err_set(&e, WY_ECANCELED, WYC_SRC_CLIENT, "client closed");
    } else if (err != WY_OK) {
        wyc__err_set(&e, err, WYC_SRC_NETWORK, "auth at %s: %s", c->ctx->auth_url, msg);
    } else if (status >= 300) {
        http_error(&e, status, body, len);
    } else {
        wyc__err_ok(&e);
        switch (op->kind) {
        case OP_REGISTER:
        case OP_LOGIN:
        case OP_RESUME:
        case OP_REFRESH:
        case OP_AUTO_REFRESH:
            take_tokens(c, body, len, &e);
            break;
        case OP_LOGOUT:
            c->logged_in = false;
            memset(&c->sess, 0, sizeof c->sess);
            uv_timer_stop(&c->refresh_timer);
            break;
        default: {
            json_t *j = json_loadb(body, len, 0, NULL);
            if (!json_is_object(j)) {
                wyc__err_set(&e, WY_EIO, WYC_SRC_PROTOCOL, "auth answered a body that is not JSON");
            } else {
                account_from(j, &acct);
                have_acct = true;
            }
            json_decref(j);
        }
        }
    }
    bool refresh = op->kind == OP_REFRESH || op->kind == OP_AUTO_REFRESH;
    if (refresh)
        c->refreshing = false;
    if (refresh && !c->closing) {
        if (e.code == WY_EAUTH || e.code == WY_EPERM) {
            auth_lost(c, &e);
        } else if (e.code != WY_OK && op->kind == OP_AUTO_REFRESH && c->logged_in) {
            /* Transient: try again while the access token still has time. */
            uint32_t r;
            wy_random(&r, sizeof r);
            uv_timer_start(&c->refresh_timer, on_refresh_timer,
                           wyc_backoff_next(&c->refresh_backoff, r), 0);
        }
        wyc__lobby_tokens_changed(c, e.code == WY_OK, &e);
    }
    if (op->cb)
        op->cb(c, &e, op->ud);
    if (op->acb)
        op->acb(c, &e, have_acct && e.code == WY_OK ? &acct : NULL, op->ud);
    wy_free(op);
    wyc__unref(c);
}

/* Sends method path with body (a JSON object, stolen; may be NULL); bearer adds the access
 * token. */
static int http_call(wyc_client_t *c, int kind, const char *method, const char *path, json_t *body,
                     bool bearer, wyc_done_cb cb, wyc_account_cb acb, void *ud)
{
    if (c->closing || c->ctx->closing) {
        json_decref(body);
        return WY_ESTATE;
    }
    if (bearer && !c->logged_in) {
        json_decref(body);
        return WY_ESTATE;
    }
    if (!body && kind != OP_LOGOUT && kind != OP_ME)
        return WY_EINVAL; /* json_pack refused the strings: not valid UTF-8 */
    char url[600];
    snprintf(url, sizeof url, "%s%s", c->ctx->auth_url, path);
    char auth[sizeof c->sess.access_token + 32], key[300];
    const char *headers[4];
    int nh = 0;
    headers[nh++] = "Content-Type: application/json";
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->sess.access_token);
        headers[nh++] = auth;
    }
    if (c->ctx->server_key && kind != OP_REFRESH) {
        snprintf(key, sizeof key, "X-Wyvern-Server-Key: %s", c->ctx->server_key);
        headers[nh++] = key;
    }
    headers[nh] = NULL;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    op_t *op = wy_calloc(1, sizeof *op);
    op->c = c;
    op->kind = kind;
    op->cb = cb;
    op->acb = acb;
    op->ud = ud;
    int rc = wy_httpc_request(c->ctx->http, method, url, headers, text, text ? strlen(text) : 0, 0,
                              on_http, op);
    free(text);
    if (rc != WY_OK) {
        wy_free(op);
        return rc;
    }
    wyc__ref(c);
    return WY_OK;
}

/* ------------------------------------------------------------------ auth calls */

int wyc_register(wyc_client_t *c, const char *username, const char *password, wyc_done_cb cb,
                 void *ud)
{
    if (!username || !password || !cb)
        return WY_EINVAL;
    return http_call(c, OP_REGISTER, "POST", "/v1/register",
                     json_pack("{s:s, s:s}", "username", username, "password", password), false, cb,
                     NULL, ud);
}

/* The body of a login or link; NULL if cred is incomplete. */
static json_t *cred_body(const wyc_credential_t *cred)
{
    const char *m = cred ? wyc_method_name(cred->method) : NULL;
    if (!m)
        return NULL;
    if (cred->method == WYC_LOGIN_PASSWORD) {
        if (!cred->username || !cred->password)
            return NULL;
        return json_pack("{s:s, s:s, s:s}", "method", m, "username", cred->username, "password",
                         cred->password);
    }
    if (!cred->id)
        return NULL;
    const char *field = cred->method == WYC_LOGIN_DEVICE   ? "device_id"
                        : cred->method == WYC_LOGIN_CUSTOM ? "custom_id"
                        : cred->method == WYC_LOGIN_STEAM  ? "ticket"
                                                           : "id_token";
    return json_pack("{s:s, s:s}", "method", m, field, cred->id);
}

int wyc_login(wyc_client_t *c, const wyc_credential_t *cred, wyc_done_cb cb, void *ud)
{
    json_t *b = cred_body(cred);
    if (!b || !cb) {
        json_decref(b);
        return WY_EINVAL;
    }
    return http_call(c, OP_LOGIN, "POST", "/v1/login", b, false, cb, NULL, ud);
}

int wyc_resume(wyc_client_t *c, const char *refresh_token, wyc_done_cb cb, void *ud)
{
    if (!refresh_token || !*refresh_token || !cb)
        return WY_EINVAL;
    if (c->refreshing)
        return WY_EBUSY;
    int rc = http_call(c, OP_RESUME, "POST", "/v1/refresh",
                       json_pack("{s:s}", "refresh_token", refresh_token), false, cb, NULL, ud);
    return rc;
}

int wyc_session_restore(wyc_client_t *c, const wyc_session_t *s)
{
    if (!s || !s->refresh_token[0] || !s->access_token[0] || c->closing)
        return WY_EINVAL;
    c->sess = *s;
    c->logged_in = true;
    schedule_refresh(c);
    return WY_OK;
}

int wyc__refresh_internal(wyc_client_t *c)
{
    if (c->refreshing)
        return WY_OK;
    if (!c->logged_in || !c->sess.refresh_token[0])
        return WY_ESTATE;
    int rc = http_call(c, OP_AUTO_REFRESH, "POST", "/v1/refresh",
                       json_pack("{s:s}", "refresh_token", c->sess.refresh_token), false, NULL,
                       NULL, NULL);
    if (rc == WY_OK)
        c->refreshing = true;
    return rc;
}

static void on_refresh_timer(uv_timer_t *t)
{
    wyc_client_t *c = t->data;
    if (wyc__refresh_internal(c) == WY_EBUSY)
        uv_timer_start(&c->refresh_timer, on_refresh_timer, 1000, 0);
}

int wyc_refresh(wyc_client_t *c, wyc_done_cb cb, void *ud)
{
    if (!cb)
        return WY_EINVAL;
    if (!c->logged_in)
        return WY_ESTATE;
    /* Two refreshes with one token would look like theft to auth and revoke the session. */
    if (c->refreshing)
        return WY_EBUSY;
    int rc =
        http_call(c, OP_REFRESH, "POST", "/v1/refresh",
                  json_pack("{s:s}", "refresh_token", c->sess.refresh_token), false, cb, NULL, ud);
    if (rc == WY_OK)
        c->refreshing = true;
    return rc;
}

static void after_lobby_logout(wyc_client_t *c)
{
    wyc_done_cb cb = c->logout_cb;
    void *ud = c->logout_ud;
    c->logout_cb = NULL;
    c->logging_out = false;
    int rc = http_call(c, OP_LOGOUT, "POST", "/v1/logout", NULL, true, cb, NULL, ud);
    if (rc != WY_OK) {
        wyc_error_t e;
        wyc__err_set(&e, rc, WYC_SRC_CLIENT, "cannot send the logout: %s", wy_strerror(rc));
        cb(c, &e, ud);
    }
    wyc__unref(c);
}

int wyc_logout(wyc_client_t *c, wyc_done_cb cb, void *ud)
{
    if (!cb)
        return WY_EINVAL;
    if (!c->logged_in || c->logging_out || c->closing)
        return WY_ESTATE;
    c->logout_cb = cb;
    c->logout_ud = ud;
    c->logging_out = true;
    wyc__ref(c);
    if (!wyc__lobby_logout(c, after_lobby_logout)) {
        c->logging_out = false;
        c->logout_cb = NULL;
        wyc__unref(c);
        return http_call(c, OP_LOGOUT, "POST", "/v1/logout", NULL, true, cb, NULL, ud);
    }
    return WY_OK;
}

int wyc_link(wyc_client_t *c, const wyc_credential_t *cred, wyc_done_cb cb, void *ud)
{
    json_t *b = cred_body(cred);
    if (!b || !cb) {
        json_decref(b);
        return WY_EINVAL;
    }
    return http_call(c, OP_LINK, "POST", "/v1/link", b, true, cb, NULL, ud);
}

int wyc_unlink(wyc_client_t *c, wyc_method_t method, const char *id, wyc_done_cb cb, void *ud)
{
    const char *m = wyc_method_name(method);
    if (!m || !cb)
        return WY_EINVAL;
    json_t *b = json_pack("{s:s}", "method", m);
    if (id)
        json_object_set_new(b, "id", json_string(id));
    return http_call(c, OP_UNLINK, "POST", "/v1/unlink", b, true, cb, NULL, ud);
}

int wyc_me(wyc_client_t *c, wyc_account_cb cb, void *ud)
{
    if (!cb)
        return WY_EINVAL;
    return http_call(c, OP_ME, "GET", "/v1/me", NULL, true, NULL, cb, ud);
}
