/* wy-auth internal API: the wyvern.auth.Auth gRPC service for other daemons
 * (Introspect, GetAccount, Revoke, GetKeys). Handlers run on the loop. */
#include "auth.h"
#include "validate.h"
#include "wy_log.h"

#include <string.h>

typedef struct {
    auth_t *a;
    wy_grpc_call_id_t call;
    wy_token_claims_t claims;
    char account[40];
    bool ban;
    int32_t revoked;
    char reason[256];
    wy_pg_tx_t *tx; /* Revoke: the change and its event, until committed */
} gop_t;

/* NULL (and the call answered UNAVAILABLE) once the service is stopping: a call handed
 * to the loop just before the stop must not touch released state. */
static gop_t *gop_new(void *daemon, wy_grpc_call_id_t call)
{
    auth_t *a = auth_current(daemon);
    if (!a) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-auth is stopping");
        return NULL;
    }
    gop_t *g = wy_calloc(1, sizeof *g);
    g->a = a;
    g->call = call;
    auth_ref(a);
    return g;
}

static void gop_free(gop_t *g)
{
    auth_t *a = g->a;
    if (g->tx) /* answered before the commit: nothing of the change is kept */
        auth_tx_abort(g->tx);
    wy_free(g);
    auth_unref(a);
}

static void gop_error(gop_t *g, int err, const char *msg)
{
    wy_grpc_reply_error(g->call, err, msg);
    gop_free(g);
}

/* gop_new() for a request about one account: NULL (and the call answered) also when
 * account_id is not a UUID. */
static gop_t *gop_new_account(void *arg, wy_grpc_call_id_t call, const char *account_id)
{
    gop_t *g = gop_new(arg, call);
    if (g && (!account_id || !auth_uuid_well_formed(account_id))) {
        gop_error(g, WY_EINVAL, "account_id must be a UUID");
        return NULL;
    }
    return g;
}

/* rc of starting a statement: on failure the call is answered UNAVAILABLE. */
static void gop_queried(gop_t *g, int rc)
{
    if (rc != WY_OK)
        gop_error(g, WY_EUNAVAIL, "account store unavailable");
}

/* ---- Introspect ---- */

static void on_introspect_checked(int err, bool revoked, void *ud)
{
    gop_t *g = ud;
    if (err != WY_OK) {
        gop_error(g, WY_EUNAVAIL, "revocation state unavailable");
        return;
    }
    Wyvern__Auth__IntrospectResponse r = WYVERN__AUTH__INTROSPECT_RESPONSE__INIT;
    r.active = !revoked;
    r.revoked = revoked;
    r.account_id = g->claims.sub;
    r.session_id = g->claims.sid;
    r.expires_at = g->claims.exp;
    r.reason = revoked ? "revoked" : "";
    wy_grpc_reply(g->call, &r.base);
    gop_free(g);
}

static void rpc_introspect(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Auth__IntrospectRequest *in = (const Wyvern__Auth__IntrospectRequest *)req;
    gop_t *g = gop_new(arg, call);
    if (!g)
        return;
    const char *why = NULL;
    const char *tok = in->access_token ? in->access_token : "";
    if (auth_verify_access(g->a, tok, strlen(tok), &g->claims, &why) != WY_OK) {
        Wyvern__Auth__IntrospectResponse r = WYVERN__AUTH__INTROSPECT_RESPONSE__INIT;
        r.reason = (char *)(why ? why : "invalid token");
        wy_grpc_reply(call, &r.base);
        gop_free(g);
        return;
    }
    if (auth_revocation_check(g->a, &g->claims, on_introspect_checked, g) != WY_OK)
        gop_error(g, WY_EUNAVAIL, "revocation state unavailable");
}

/* ---- GetAccount ---- */

static void on_account(int status, const PGresult *res, const char *err, void *ud)
{
    gop_t *g = ud;
    if (status != WY_OK) {
        wy_log_warn("account lookup failed", "error", err, NULL);
        gop_error(g, WY_EUNAVAIL, "account store unavailable");
        return;
    }
    if (PQntuples(res) != 1) {
        gop_error(g, WY_ENOTFOUND, "no such account");
        return;
    }
    Wyvern__Auth__Account r = WYVERN__AUTH__ACCOUNT__INIT;
    r.account_id = (char *)wy_pg_text(res, 0, "account_id");
    r.username = (char *)wy_pg_text(res, 0, "username");
    r.created_at = wy_pg_int64(res, 0, "created_at");
    r.banned = wy_pg_bool(res, 0, "banned");
    json_t *m = json_loads(wy_pg_text(res, 0, "login_methods"), 0, NULL);
    size_t n = json_is_array(m) ? json_array_size(m) : 0;
    char **methods = wy_calloc(n ? n : 1, sizeof *methods);
    for (size_t i = 0; i < n; i++)
        methods[i] = (char *)json_string_value(json_array_get(m, i));
    r.n_login_methods = n;
    r.login_methods = methods;
    wy_grpc_reply(g->call, &r.base);
    wy_free(methods);
    json_decref(m);
    gop_free(g);
}

static void rpc_get_account(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Auth__GetAccountRequest *in = (const Wyvern__Auth__GetAccountRequest *)req;
    gop_t *g = gop_new_account(arg, call, in->account_id);
    if (!g)
        return;
    gop_queried(g, auth_db_account(g->a, in->account_id, on_account, g));
}

/* ---- Revoke ---- */

static void on_revoke_published(int err, void *ud)
{
    gop_t *g = ud;
    if (err != WY_OK) {
        /* PostgreSQL has it, but verifiers read Redis: say so instead of claiming success. */
        gop_error(g, WY_EUNAVAIL, "revocation stored but not yet published; retry");
        return;
    }
    Wyvern__Auth__RevokeResponse r = WYVERN__AUTH__REVOKE_RESPONSE__INIT;
    r.sessions_revoked = g->revoked;
    wy_grpc_reply(g->call, &r.base);
    gop_free(g);
}

static void on_revoke_committed(int status, const char *err, void *ud)
{
    gop_t *g = ud;
    if (status != WY_OK) {
        wy_log_warn("revoke not committed", "error", err ? err : wy_strerror(status), NULL);
        gop_error(g, WY_EUNAVAIL, "account store unavailable");
        return;
    }
    auth_events_mark(g->a, g->account); /* its event is in the outbox */
    wy_log_info("account revoked", "account", g->account, "ban", g->ban ? "true" : "false", NULL);
    auth_count("wy_auth_sessions_revoked_total", "Sessions revoked, by reason.",
               g->ban ? "reason=\"ban\"" : "reason=\"revoke\"");
    if (auth_revoke_publish(g->a, NULL, g->account, on_revoke_published, g) != WY_OK)
        on_revoke_published(WY_EUNAVAIL, g);
}

static void on_revoked(int status, const PGresult *res, const char *err, void *ud)
{
    gop_t *g = ud;
    if (status != WY_OK || PQntuples(res) != 1) {
        wy_log_warn("revoke failed", "error", err, NULL);
        gop_error(g, WY_EUNAVAIL, "account store unavailable");
        return;
    }
    int64_t n = wy_pg_int64(res, 0, "revoked");
    if (n < 0) {
        gop_error(g, WY_ENOTFOUND, "no such account");
        return;
    }
    g->revoked = (int32_t)n;
    int rc = auth_event_revoked(g->a, g->tx, g->account, NULL, g->ban ? "ban" : "revoke");
    if (rc == WY_OK)
        rc = auth_tx_commit(g->a, g->tx, on_revoke_committed, g);
    if (rc != WY_OK) {
        gop_error(g, WY_EUNAVAIL, "account store unavailable");
        return;
    }
    g->tx = NULL; /* the commit owns it now */
}

static void on_revoke_begun(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    gop_t *g = ud;
    if (status != WY_OK) {
        wy_log_warn("revoke failed", "error", err, NULL);
        gop_error(g, WY_EUNAVAIL, "account store unavailable");
        return;
    }
    g->tx = tx;
    gop_queried(g, auth_db_revoke_account(g->a, tx, g->account, g->reason, g->ban,
                                          (int64_t)wy_wall_ms(), on_revoked, g));
}

/* The revocation (or ban) and its account.session_revoked event commit together; then Redis. */
static void rpc_revoke(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Auth__RevokeRequest *in = (const Wyvern__Auth__RevokeRequest *)req;
    gop_t *g = gop_new_account(arg, call, in->account_id);
    if (!g)
        return;
    snprintf(g->account, sizeof g->account, "%s", in->account_id);
    g->ban = in->ban;
    const char *reason = in->reason && *in->reason ? in->reason : (in->ban ? "ban" : "revoke");
    snprintf(g->reason, sizeof g->reason, "%s", reason);
    gop_queried(g, auth_tx_begin(g->a, on_revoke_begun, g));
}

/* ---- GetKeys ---- */

static void rpc_get_keys(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    (void)req;
    auth_t *a = auth_current(arg);
    if (!a) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-auth is stopping");
        return;
    }
    Wyvern__Auth__GetKeysResponse r = WYVERN__AUTH__GET_KEYS_RESPONSE__INIT;
    r.jwks_json = a->jwks;
    r.max_age_s = (int32_t)(a->cfg->jwks_max_age_ms / 1000);
    wy_grpc_reply(call, &r.base);
}

int auth_grpc_register(auth_t *a, const char **err)
{
    wy_grpc_server_t *s = wy_daemon_grpc(a->d);
    struct {
        const char *path;
        const ProtobufCMessageDescriptor *desc;
        wy_grpc_handler_cb cb;
    } m[] = {
        {"/wyvern.auth.Auth/Introspect", &wyvern__auth__introspect_request__descriptor,
         rpc_introspect},
        {"/wyvern.auth.Auth/GetAccount", &wyvern__auth__get_account_request__descriptor,
         rpc_get_account},
        {"/wyvern.auth.Auth/Revoke", &wyvern__auth__revoke_request__descriptor, rpc_revoke},
        {"/wyvern.auth.Auth/GetKeys", &wyvern__auth__get_keys_request__descriptor, rpc_get_keys},
    };
    for (size_t i = 0; i < WY_ARRAY_LEN(m); i++) {
        if (wy_grpc_server_register(s, m[i].path, m[i].desc, m[i].cb, a->d) != WY_OK) {
            *err = "cannot register the Auth gRPC methods";
            return WY_EINTERNAL;
        }
    }
    return WY_OK;
}
