/* wy-auth login providers: Steam session tickets (checked by the Steam Web API) and OpenID
 * Connect id_tokens (checked locally against the issuer's JWKS, fetched and cached). */
#include "providers.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "wy_httpc.h"
#include "wy_jwt.h"
#include "wy_list.h"
#include "wy_log.h"

#define MAX_PENDING        1024  /* verifications in flight; over -> WY_EBUSY */
#define MAX_TICKET_HEX     4096  /* Steam tickets are a few hundred bytes; hex doubles that */
#define MAX_ID_TOKEN       16384 /* bytes of a compact id_token */
#define MAX_SUB            255   /* bytes of the OIDC "sub" claim (OIDC core says <= 255) */
#define MAX_STEAM_RESPONSE 65536 /* bytes; the answer is a few hundred */
#define RETRY_MIN_MS       1000  /* JWKS fetch retry after a failure, doubling ... */
#define RETRY_MAX_MS       60000 /* ... up to this */
#define ON_DEMAND_GAP_MS   1000  /* with no keys, a login may trigger a fetch this often */

/* ---- configuration (offsets into auth_providers_cfg_t) ---- */

const wy_cfg_entry_t auth_provider_config[] = {
    {"WY_AUTH_STEAM_API_URL", WY_CFG_STRING, "https://api.steampowered.com", 0, 0, NULL,
     "Steam Web API base URL (tests point it at a fake)",
     WY_CFG_OFF(auth_providers_cfg_t, steam_api_url), false},
    {"WY_AUTH_STEAM_APP_ID", WY_CFG_INT, "0", 0, 4294967295LL, NULL,
     "Steam app id whose session tickets are accepted; 0 disables Steam login",
     WY_CFG_OFF(auth_providers_cfg_t, steam_app_id), false},
    {"WY_AUTH_STEAM_WEB_API_KEY", WY_CFG_STRING, "", 0, 0, NULL,
     "Steam Web API publisher key; empty disables Steam login",
     WY_CFG_OFF(auth_providers_cfg_t, steam_key), true},
    {"WY_AUTH_STEAM_TIMEOUT", WY_CFG_DURATION_MS, "5s", 100, 60000, NULL,
     "deadline of one call to the Steam Web API",
     WY_CFG_OFF(auth_providers_cfg_t, steam_timeout_ms), false},
    {"WY_AUTH_OIDC_ISSUER", WY_CFG_STRING, "", 0, 0, NULL,
     "OpenID Connect issuer accepted (exact \"iss\"); empty disables OIDC login",
     WY_CFG_OFF(auth_providers_cfg_t, oidc_issuer), false},
    {"WY_AUTH_OIDC_AUDIENCE", WY_CFG_STRING, "", 0, 0, NULL,
     "required \"aud\" of id_tokens (the client id registered at the issuer)",
     WY_CFG_OFF(auth_providers_cfg_t, oidc_audience), false},
    {"WY_AUTH_OIDC_JWKS_URL", WY_CFG_STRING, "", 0, 0, NULL,
     "where the issuer publishes its signing keys (JWKS)",
     WY_CFG_OFF(auth_providers_cfg_t, oidc_jwks_url), false},
    {"WY_AUTH_OIDC_JWKS_REFRESH", WY_CFG_DURATION_MS, "1h", 10000, 7LL * 24 * 3600 * 1000, NULL,
     "how often the JWKS is fetched again", WY_CFG_OFF(auth_providers_cfg_t, oidc_jwks_refresh_ms),
     false},
    {"WY_AUTH_OIDC_JWKS_MIN_REFRESH", WY_CFG_DURATION_MS, "1m", 1000, 3600000, NULL,
     "an id_token with an unknown kid refetches the JWKS at most this often",
     WY_CFG_OFF(auth_providers_cfg_t, oidc_jwks_min_refresh_ms), false},
    {"WY_AUTH_OIDC_ALGS", WY_CFG_STRING, "RS256,ES256", 0, 0, NULL,
     "signature algorithms accepted for id_tokens (RS256, ES256, EdDSA)",
     WY_CFG_OFF(auth_providers_cfg_t, oidc_algs), false},
    {"WY_AUTH_OIDC_TIMEOUT", WY_CFG_DURATION_MS, "5s", 100, 60000, NULL,
     "deadline of one JWKS fetch", WY_CFG_OFF(auth_providers_cfg_t, oidc_timeout_ms), false},
};
const size_t auth_provider_nconfig = WY_ARRAY_LEN(auth_provider_config);

/* ---- state ---- */

enum { PV_HTTP, PV_WAIT_KEYS, PV_DONE, PV_NLISTS };
enum { KIND_STEAM, KIND_OIDC };

typedef struct pv pv_t;
struct pv {
    auth_providers_t *p;
    auth_provider_cb cb;
    void *ud;
    int kind, list; /* list: PV_* list holding node, -1 when in none */
    wy_list_t node;
    char *cred;     /* id_token (OIDC) */
    bool refreshed; /* a fetch finished after this verification started waiting */
    int err;
    char *subject;
    char msg[256];
};

struct auth_providers {
    uv_loop_t *loop;
    const auth_providers_cfg_t *cfg; /* the daemon's, outlives p */
    wy_httpc_t *http;
    bool steam_on, oidc_on;
    unsigned algs;
    wy_jwt_keyset_t *ks; /* NULL until the first successful fetch; replaced whole on refresh */
    bool fetching;
    uint64_t last_attempt;   /* wy_now_ms of the last fetch start */
    uint64_t last_kid_fetch; /* wy_now_ms of the last fetch caused by an unknown kid; 0 never */
    uint32_t retry_ms;
    uv_timer_t refresh_timer, done_timer;
    wy_list_t lists[PV_NLISTS]; /* pv_t.node */
    unsigned pending;
    bool closing, http_closed;
    unsigned open_handles;
};

static void list_add(auth_providers_t *p, pv_t *v, int list)
{
    v->list = list;
    wy_list_push_front(&p->lists[list], &v->node);
}

static void list_del(pv_t *v)
{
    wy_list_remove(&v->node);
    v->list = -1;
}

/* First verification on a list, NULL when it is empty. */
static pv_t *list_first(auth_providers_t *p, int list)
{
    return wy_list_entry(wy_list_first(&p->lists[list]), pv_t, node);
}

static void maybe_free(auth_providers_t *p)
{
    if (!p->closing || !p->http_closed || p->open_handles > 0 || p->pending > 0)
        return;
    wy_jwt_keyset_free(p->ks);
    wy_free(p);
}

/* Run the user's callback and free v (v is already unlinked). */
static void deliver(pv_t *v)
{
    auth_providers_t *p = v->p;
    v->cb(v->err, v->err == WY_OK ? v->subject : NULL, v->msg, v->ud);
    wy_free(v->subject);
    wy_free(v->cred);
    wy_free(v);
    p->pending--;
    maybe_free(p);
}

static void on_done_timer(uv_timer_t *t)
{
    auth_providers_t *p = t->data;
    pv_t *v;
    /* A callback may close p: close delivers the rest at once, so the list just empties. */
    while ((v = list_first(p, PV_DONE)) != NULL) {
        list_del(v);
        deliver(v);
    }
}

/* Record the outcome; the callback runs on a later loop turn (never inside a verify call). */
static void complete(pv_t *v, int err, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void complete(pv_t *v, int err, const char *subject, const char *fmt, ...)
{
    auth_providers_t *p = v->p;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    v->err = err;
    wy_free(v->subject); /* a finished one cancelled by close had one already */
    v->subject = subject ? wy_strdup(subject) : NULL;
    if (v->list >= 0)
        list_del(v);
    if (p->closing) { /* the done timer is closed; closing delivers synchronously */
        v->err = WY_ECANCELED;
        snprintf(v->msg, sizeof v->msg, "login providers shutting down");
        deliver(v);
        return;
    }
    list_add(p, v, PV_DONE);
    uv_timer_start(&p->done_timer, on_done_timer, 0, 0);
}

static pv_t *pv_new(auth_providers_t *p, int kind, auth_provider_cb cb, void *ud)
{
    pv_t *v = wy_calloc(1, sizeof *v);
    v->p = p;
    v->cb = cb;
    v->ud = ud;
    v->kind = kind;
    v->list = -1;
    p->pending++;
    return v;
}

/* A new verification of `kind`, or NULL when it is already completed because the method
 * is off (WY_ESTATE with off_msg) or too many are in flight (WY_EBUSY). */
static pv_t *pv_start(auth_providers_t *p, int kind, bool on, const char *off_msg,
                      auth_provider_cb cb, void *ud)
{
    pv_t *v = pv_new(p, kind, cb, ud);
    if (!on) {
        complete(v, WY_ESTATE, NULL, "%s", off_msg);
        return NULL;
    }
    if (p->pending > MAX_PENDING) {
        complete(v, WY_EBUSY, NULL, "too many logins in progress, try again");
        return NULL;
    }
    return v;
}

/* ---- Steam ---- */

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* Printable ASCII copy of untrusted text for messages, at most cap-1 bytes. */
static void clean_text(char *dst, size_t cap, const char *src)
{
    size_t j = 0;
    for (size_t i = 0; src && src[i] && j + 1 < cap; i++)
        dst[j++] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[j] = '\0';
}

static void url_escape(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 4 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            dst[j++] = (char)c;
        } else {
            dst[j++] = '%';
            dst[j++] = hex[c >> 4];
            dst[j++] = hex[c & 15];
        }
    }
    dst[j] = '\0';
}

static bool steamid_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return strspn(s, "0") != n;
}

static void on_steam(int err, int status, const char *body, size_t len, const char *msg, void *ud)
{
    pv_t *v = ud;
    if (err == WY_ECANCELED) {
        complete(v, WY_ECANCELED, NULL, "login providers shutting down");
        return;
    }
    if (err != WY_OK) {
        wy_log_warn("steam web api unreachable", "error", msg, NULL);
        complete(v, WY_EUNAVAIL, NULL, "steam is unreachable, try again later");
        return;
    }
    if (status == 401 || status == 403) {
        /* Our publisher key or app id is wrong: nothing the player can fix. */
        char st[16];
        snprintf(st, sizeof st, "%d", status);
        wy_log_error("steam web api refused the server's key (check WY_AUTH_STEAM_WEB_API_KEY "
                     "and WY_AUTH_STEAM_APP_ID)",
                     "status", st, NULL);
        complete(v, WY_EUNAVAIL, NULL, "steam login is misconfigured on the server");
        return;
    }
    if (status == 429 || status >= 500) {
        complete(v, WY_EUNAVAIL, NULL, "steam is unavailable (HTTP %d), try again later", status);
        return;
    }
    if (status != 200) {
        complete(v, WY_EAUTH, NULL, "steam rejected the ticket (HTTP %d)", status);
        return;
    }
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    json_t *resp = json_object_get(root, "response");
    json_t *params = json_object_get(resp, "params");
    json_t *error = json_object_get(resp, "error");
    if (json_is_object(params)) {
        const char *result = json_string_value(json_object_get(params, "result"));
        const char *steamid = json_string_value(json_object_get(params, "steamid"));
        if (!result || strcmp(result, "OK") != 0) {
            char r[64];
            clean_text(r, sizeof r, result ? result : "(none)");
            complete(v, WY_EAUTH, NULL, "steam rejected the ticket: result %s", r);
        } else if (!steamid_ok(steamid)) {
            complete(v, WY_EUNAVAIL, NULL, "unexpected answer from steam (no steamid)");
        } else if (json_is_true(json_object_get(params, "publisherbanned"))) {
            complete(v, WY_EAUTH, NULL, "this steam account is banned by the publisher");
        } else {
            /* Family sharing: ownersteamid may differ; the player is steamid. */
            complete(v, WY_OK, steamid, "ok");
        }
    } else if (json_is_object(error)) {
        char desc[128];
        clean_text(desc, sizeof desc, json_string_value(json_object_get(error, "errordesc")));
        complete(v, WY_EAUTH, NULL, "steam rejected the ticket: %s (code %lld)",
                 desc[0] ? desc : "no reason given",
                 (long long)json_integer_value(json_object_get(error, "errorcode")));
    } else {
        complete(v, WY_EUNAVAIL, NULL, "unexpected answer from steam");
    }
    json_decref(root);
}

int auth_steam_verify(auth_providers_t *p, const char *ticket, auth_provider_cb cb, void *ud)
{
    if (!p || !cb || p->closing)
        return WY_EINVAL;
    pv_t *v =
        pv_start(p, KIND_STEAM, p->steam_on, "steam login is not enabled on this server", cb, ud);
    if (!v)
        return WY_OK;
    size_t n = ticket ? strnlen(ticket, MAX_TICKET_HEX + 1) : 0;
    if (n == 0 || n > MAX_TICKET_HEX || n % 2 != 0 || !is_hex(ticket, n)) {
        complete(v, WY_EINVAL, NULL,
                 "ticket must be the hex encoding of a steam session ticket "
                 "(at most %d hex digits)",
                 MAX_TICKET_HEX);
        return WY_OK;
    }
    char key[512];
    url_escape(key, sizeof key, p->cfg->steam_key);
    size_t base_len = strlen(p->cfg->steam_api_url);
    while (base_len > 0 && p->cfg->steam_api_url[base_len - 1] == '/')
        base_len--;
    char *url = wy_sprintf("%.*s/ISteamUserAuth/AuthenticateUserTicket/v1/?key=%s&appid=%lld"
                           "&ticket=%s",
                           (int)base_len, p->cfg->steam_api_url, key,
                           (long long)p->cfg->steam_app_id, ticket);
    static const char *const hdrs[] = {"Accept: application/json", NULL};
    int rc = wy_httpc_request(p->http, "GET", url, hdrs, NULL, 0,
                              (uint32_t)p->cfg->steam_timeout_ms, on_steam, v);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(url, strlen(url));
    wy_free(url);
    if (rc == WY_OK)
        list_add(p, v, PV_HTTP);
    else if (rc == WY_EBUSY)
        complete(v, WY_EBUSY, NULL, "too many logins in progress, try again");
    else
        complete(v, WY_EUNAVAIL, NULL, "steam login is misconfigured on the server");
    return WY_OK;
}

/* ---- OIDC ---- */

static void start_fetch(auth_providers_t *p);

static void on_refresh_timer(uv_timer_t *t)
{
    start_fetch(t->data);
}

/* Verify v's token against the current keys and complete it. */
static void oidc_check(pv_t *v)
{
    auth_providers_t *p = v->p;
    wy_jwt_verify_opts_t vo = {.allowed_algs = p->algs, .max_len = MAX_ID_TOKEN};
    wy_jwt_t jwt;
    const char *why = NULL;
    int rc = wy_jwt_verify(p->ks, v->cred, strlen(v->cred), &vo, &jwt, &why);
    if (rc != WY_OK) {
        complete(v, rc == WY_EAUTH ? WY_EAUTH : WY_EINVAL, NULL, "id_token rejected: %s",
                 why ? why : wy_strerror(rc));
        return;
    }
    wy_jwt_claims_opts_t co = {.iss = p->cfg->oidc_issuer, .aud = p->cfg->oidc_audience};
    rc = wy_jwt_check_claims(jwt.claims, &co, &why);
    const char *sub = json_string_value(json_object_get(jwt.claims, "sub"));
    size_t sub_len = sub ? strlen(sub) : 0;
    if (rc != WY_OK) {
        complete(v, WY_EAUTH, NULL, "id_token rejected: %s", why ? why : wy_strerror(rc));
    } else if (sub_len == 0 || sub_len > MAX_SUB) {
        complete(v, WY_EAUTH, NULL, "id_token rejected: no usable \"sub\" claim");
    } else {
        bool printable = true;
        for (size_t i = 0; i < sub_len; i++)
            if ((unsigned char)sub[i] < 0x20 || sub[i] == 0x7f)
                printable = false;
        if (!printable) {
            complete(v, WY_EAUTH, NULL, "id_token rejected: \"sub\" has control characters");
        } else {
            char *subject = wy_sprintf("%s|%s", p->cfg->oidc_issuer, sub);
            complete(v, WY_OK, subject, "ok");
            wy_free(subject);
        }
    }
    wy_jwt_clear(&jwt);
}

/* kid and alg of the token's header, without verifying anything (to decide whether the JWKS
 * is worth refetching). False when the header cannot be read: wy_jwt_verify will say why. */
static bool peek_header(const char *tok, char *kid, size_t kid_cap, unsigned *alg)
{
    const char *dot = strchr(tok, '.');
    if (!dot || dot == tok || (size_t)(dot - tok) > 4096)
        return false;
    char buf[3072];
    size_t n = 0;
    if (wy_b64url_decode(tok, (size_t)(dot - tok), buf, sizeof buf, &n) != WY_OK)
        return false;
    json_t *h = json_loadb(buf, n, 0, NULL);
    const char *k = json_string_value(json_object_get(h, "kid"));
    const char *a = json_string_value(json_object_get(h, "alg"));
    bool ok = k && a && strlen(k) < kid_cap;
    if (ok) {
        snprintf(kid, kid_cap, "%s", k);
        *alg = strcmp(a, "RS256") == 0   ? WY_JWT_ALG_RS256
               : strcmp(a, "ES256") == 0 ? WY_JWT_ALG_ES256
               : strcmp(a, "EdDSA") == 0 ? WY_JWT_ALG_EDDSA
                                         : 0;
    }
    json_decref(h);
    return ok;
}

/* After a fetch finished: settle every verification that waited for it. */
static void settle_waiting(auth_providers_t *p)
{
    pv_t *v;
    while ((v = list_first(p, PV_WAIT_KEYS)) != NULL) {
        if (!p->ks)
            complete(v, WY_EUNAVAIL, NULL,
                     "the identity provider's signing keys are unavailable, try again later");
        else
            oidc_check(v); /* an unknown kid now is rejected: the keys were just refetched */
    }
}

static void schedule_refresh(auth_providers_t *p, bool ok)
{
    uint64_t delay;
    if (ok) {
        p->retry_ms = 0;
        delay = (uint64_t)p->cfg->oidc_jwks_refresh_ms;
    } else {
        p->retry_ms = p->retry_ms ? p->retry_ms * 2 : RETRY_MIN_MS;
        if (p->retry_ms > RETRY_MAX_MS)
            p->retry_ms = RETRY_MAX_MS;
        delay = p->retry_ms;
        if (p->ks && delay > (uint64_t)p->cfg->oidc_jwks_refresh_ms)
            delay = (uint64_t)p->cfg->oidc_jwks_refresh_ms;
    }
    uv_timer_start(&p->refresh_timer, on_refresh_timer, delay, 0);
}

static void on_jwks(int err, int status, const char *body, size_t len, const char *msg, void *ud)
{
    auth_providers_t *p = ud;
    p->fetching = false;
    if (err == WY_ECANCELED || p->closing)
        return;
    const char *why = NULL;
    char st[16];
    snprintf(st, sizeof st, "%d", status);
    bool ok = false;
    if (err != WY_OK) {
        why = msg;
    } else if (status != 200) {
        why = "unexpected HTTP status";
    } else {
        wy_jwt_keyset_t *ks = wy_jwt_keyset_new();
        size_t added = 0, skipped = 0;
        const char *jerr = NULL;
        if (wy_jwt_keyset_add_jwks(ks, body, len, &added, &skipped, &jerr) != WY_OK) {
            why = jerr ? jerr : "malformed JWKS";
            wy_jwt_keyset_free(ks);
        } else if (added == 0) {
            why = "JWKS holds no usable signing key";
            wy_jwt_keyset_free(ks);
        } else {
            wy_jwt_keyset_free(p->ks);
            p->ks = ks;
            ok = true;
            char na[16];
            snprintf(na, sizeof na, "%zu", added);
            wy_log_info("oidc signing keys loaded", "keys", na, NULL);
        }
    }
    if (!ok)
        wy_log_warn("oidc jwks fetch failed", "url", p->cfg->oidc_jwks_url, "status", st, "error",
                    why, NULL);
    schedule_refresh(p, ok);
    settle_waiting(p);
}

static void start_fetch(auth_providers_t *p)
{
    if (p->fetching || p->closing)
        return;
    static const char *const hdrs[] = {"Accept: application/json", NULL};
    p->last_attempt = wy_now_ms();
    int rc = wy_httpc_request(p->http, "GET", p->cfg->oidc_jwks_url, hdrs, NULL, 0,
                              (uint32_t)p->cfg->oidc_timeout_ms, on_jwks, p);
    if (rc == WY_OK) {
        p->fetching = true;
        uv_timer_stop(&p->refresh_timer);
        return;
    }
    wy_log_warn("oidc jwks fetch not started", "error", wy_strerror(rc), NULL);
    schedule_refresh(p, false);
    settle_waiting(p);
}

int auth_oidc_verify(auth_providers_t *p, const char *id_token, auth_provider_cb cb, void *ud)
{
    if (!p || !cb || p->closing)
        return WY_EINVAL;
    pv_t *v = pv_start(p, KIND_OIDC, p->oidc_on,
                       "OpenID Connect login is not enabled on this server", cb, ud);
    if (!v)
        return WY_OK;
    size_t n = id_token ? strnlen(id_token, MAX_ID_TOKEN + 1) : 0;
    if (n == 0 || n > MAX_ID_TOKEN) {
        complete(v, WY_EINVAL, NULL, "id_token must be a compact JWS of at most %d bytes",
                 MAX_ID_TOKEN);
        return WY_OK;
    }
    v->cred = wy_strndup(id_token, n);
    uint64_t now = wy_now_ms();
    if (!p->ks) {
        if (p->fetching) {
            list_add(p, v, PV_WAIT_KEYS);
        } else if (now - p->last_attempt >= ON_DEMAND_GAP_MS) {
            list_add(p, v, PV_WAIT_KEYS);
            start_fetch(p);
        } else {
            complete(v, WY_EUNAVAIL, NULL,
                     "the identity provider's signing keys are unavailable, try again later");
        }
        return WY_OK;
    }
    char kid[WY_JWT_KID_MAX + 1];
    unsigned alg = 0;
    if (peek_header(v->cred, kid, sizeof kid, &alg) && (alg & p->algs) &&
        wy_jwt_keyset_lookup(p->ks, kid, NULL, NULL) == WY_ENOTFOUND) {
        /* The issuer may have rotated its keys: refetch, but an attacker sending random kids
         * must not turn us into a JWKS hammer, hence at most once per min-refresh period. */
        if (p->fetching) {
            list_add(p, v, PV_WAIT_KEYS);
            return WY_OK;
        }
        if (p->last_kid_fetch == 0 ||
            now - p->last_kid_fetch >= (uint64_t)p->cfg->oidc_jwks_min_refresh_ms) {
            p->last_kid_fetch = now;
            list_add(p, v, PV_WAIT_KEYS);
            start_fetch(p);
            return WY_OK;
        }
    }
    oidc_check(v);
    return WY_OK;
}

/* ---- life ---- */

bool auth_provider_enabled(const auth_providers_t *p, const char *method)
{
    if (!p || !method)
        return false;
    if (strcmp(method, "steam") == 0)
        return p->steam_on;
    if (strcmp(method, "oidc") == 0)
        return p->oidc_on;
    return false;
}

static bool http_url(const char *u)
{
    return u && (strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0) &&
           strlen(u) < 2048;
}

static int parse_algs(const char *s, unsigned *out)
{
    unsigned algs = 0;
    const char *p = s ? s : "";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        if (n == 5 && strncmp(p, "RS256", 5) == 0)
            algs |= WY_JWT_ALG_RS256;
        else if (n == 5 && strncmp(p, "ES256", 5) == 0)
            algs |= WY_JWT_ALG_ES256;
        else if (n == 5 && strncmp(p, "EdDSA", 5) == 0)
            algs |= WY_JWT_ALG_EDDSA;
        else
            return WY_EINVAL;
        p += n;
    }
    *out = algs;
    return algs ? WY_OK : WY_EINVAL;
}

int auth_providers_new(uv_loop_t *loop, const auth_providers_cfg_t *cfg, auth_providers_t **out,
                       const char **err)
{
    static const char *dummy;
    if (!err)
        err = &dummy;
    bool steam_key_set = cfg->steam_key && *cfg->steam_key;
    if (cfg->steam_app_id != 0 && !steam_key_set) {
        *err = "WY_AUTH_STEAM_WEB_API_KEY: required when WY_AUTH_STEAM_APP_ID is set";
        return WY_EINVAL;
    }
    if (cfg->steam_app_id == 0 && steam_key_set) {
        *err = "WY_AUTH_STEAM_APP_ID: required when WY_AUTH_STEAM_WEB_API_KEY is set";
        return WY_EINVAL;
    }
    if (steam_key_set && strlen(cfg->steam_key) > 128) {
        *err = "WY_AUTH_STEAM_WEB_API_KEY: longer than 128 characters";
        return WY_EINVAL;
    }
    if (cfg->steam_app_id != 0 && !http_url(cfg->steam_api_url)) {
        *err = "WY_AUTH_STEAM_API_URL: must be an http:// or https:// URL";
        return WY_EINVAL;
    }
    bool oidc = cfg->oidc_issuer && *cfg->oidc_issuer;
    unsigned algs = 0;
    if (oidc) {
        if (!cfg->oidc_audience || !*cfg->oidc_audience) {
            *err = "WY_AUTH_OIDC_AUDIENCE: required when WY_AUTH_OIDC_ISSUER is set";
            return WY_EINVAL;
        }
        if (!cfg->oidc_jwks_url || !*cfg->oidc_jwks_url) {
            *err = "WY_AUTH_OIDC_JWKS_URL: required when WY_AUTH_OIDC_ISSUER is set";
            return WY_EINVAL;
        }
        if (!http_url(cfg->oidc_jwks_url)) {
            *err = "WY_AUTH_OIDC_JWKS_URL: must be an http:// or https:// URL";
            return WY_EINVAL;
        }
        if (strlen(cfg->oidc_issuer) > 1024) {
            *err = "WY_AUTH_OIDC_ISSUER: longer than 1024 characters";
            return WY_EINVAL;
        }
        if (parse_algs(cfg->oidc_algs, &algs) != WY_OK) {
            *err = "WY_AUTH_OIDC_ALGS: must be a comma-separated list of RS256, ES256, EdDSA";
            return WY_EINVAL;
        }
    }
    auth_providers_t *p = wy_calloc(1, sizeof *p);
    for (int i = 0; i < PV_NLISTS; i++)
        wy_list_init(&p->lists[i]);
    p->loop = loop;
    p->cfg = cfg;
    p->steam_on = cfg->steam_app_id != 0;
    p->oidc_on = oidc;
    p->algs = algs;
    wy_httpc_opts_t ho = {.max_concurrent = 256,
                          .max_response_bytes = WY_JWKS_MAX_LEN > MAX_STEAM_RESPONSE
                                                    ? WY_JWKS_MAX_LEN
                                                    : MAX_STEAM_RESPONSE};
    int rc = wy_httpc_new(loop, &ho, &p->http);
    if (rc != WY_OK) {
        wy_free(p);
        *err = "login providers: cannot create the HTTP client";
        return rc;
    }
    uv_timer_init(loop, &p->refresh_timer);
    uv_timer_init(loop, &p->done_timer);
    p->refresh_timer.data = p;
    p->done_timer.data = p;
    if (p->oidc_on)
        start_fetch(p);
    *out = p;
    return WY_OK;
}

static void on_http_closed(void *ud)
{
    auth_providers_t *p = ud;
    p->http_closed = true;
    maybe_free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    auth_providers_t *p = h->data;
    p->open_handles--;
    maybe_free(p);
}

void auth_providers_close(auth_providers_t *p)
{
    if (!p || p->closing)
        return;
    p->closing = true;
    p->open_handles += 2;
    uv_close((uv_handle_t *)&p->refresh_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->done_timer, on_handle_closed);
    /* Steam calls and the JWKS fetch come back through their HTTP callbacks with
     * WY_ECANCELED (now, or right after the current HTTP callback returns). */
    wy_httpc_close(p->http, on_http_closed, p);
    pv_t *v;
    while ((v = list_first(p, PV_WAIT_KEYS)) != NULL || (v = list_first(p, PV_DONE)) != NULL) {
        list_del(v);
        complete(v, WY_ECANCELED, NULL, "login providers shutting down");
    }
}
