/* wy-auth signer (signer.h): token answers built on the daemon's worker threads. A job goes
 * loop -> worker inbox (wy_workers_send, in turn) -> built there -> loop mailbox
 * (wy_worker_post) -> the caller's callback. */
#include "signer.h"
#include "auth.h"
#include "wy_log.h"

#include <sched.h>
#include <string.h>

#include <openssl/crypto.h>

typedef struct {
    wy_mailbox_node_t node;
    auth_t *a; /* a reference, released after the callback; the loop's only */
    auth_sign_cb cb;
    void *ud;
    /* in: the key set and configuration stay unchanged while auth lives (the reference) */
    const wy_jwt_keyset_t *keys;
    const auth_cfg_t *cfg;
    char account[WY_TOKEN_ID_MAX + 1];
    char sid[WY_TOKEN_ID_MAX + 1];
    uint32_t roles; /* the account's WY_TOKEN_ROLE_* bits (roles.c), read on the loop */
    char refresh[AUTH_REFRESH_FAMILY_LEN + 1];
    bool created;
    /* out */
    int err;
    const char *why;
    char *body; /* json_dumps: free() */
} job_t;

/* Builds j's answer; any thread. Reads only the job, the key set and the configuration. */
/* True when s needs no escaping in a JSON string: ids (uuid) and tokens (base64url, dots). */
static bool json_plain(const char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            return false;
    return true;
}

/* The token answer's JSON (README "Tokens returned by register, login and refresh"), built
 * with one snprintf: its strings are ids and tokens of plain characters (checked; anything
 * else goes through jansson). malloc'd (free()), NULL when it could not be built. */
static char *token_body(const job_t *j, const char *access, int64_t ttl, int64_t refresh_ttl)
{
    if (!json_plain(j->account) || !json_plain(j->sid) || !json_plain(access) ||
        !json_plain(j->refresh)) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I}", "account_id", j->account,
                              "session_id", j->sid, "access_token", access, "token_type", "Bearer",
                              "expires_in", (json_int_t)ttl, "refresh_token", j->refresh,
                              "refresh_expires_in", (json_int_t)refresh_ttl);
        if (o && j->created)
            json_object_set_new(o, "created", json_true());
        char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        return body;
    }
    static const char fmt[] =
        "{\"account_id\":\"%s\",\"session_id\":\"%s\",\"access_token\":\"%s\","
        "\"token_type\":\"Bearer\",\"expires_in\":%lld,\"refresh_token\":\"%s\","
        "\"refresh_expires_in\":%lld%s}";
    const char *created = j->created ? ",\"created\":true" : "";
    /* The format's own characters and two 20-digit numbers fit in sizeof fmt + 40. */
    size_t cap = sizeof fmt + 40 + strlen(j->account) + strlen(j->sid) + strlen(access) +
                 strlen(j->refresh) + strlen(created);
    char *body = malloc(cap);
    if (body && snprintf(body, cap, fmt, j->account, j->sid, access, (long long)ttl, j->refresh,
                         (long long)refresh_ttl, created) >= (int)cap) {
        free(body);
        body = NULL;
    }
    return body;
}

static void build(job_t *j)
{
    const auth_cfg_t *cfg = j->cfg;
    int64_t ttl = cfg->access_ttl_ms / 1000;
    char *access = NULL;
    j->err = wy_token_issue_roles(j->keys, cfg->signing_kid, cfg->issuer, cfg->audience, j->account,
                                  j->sid, j->roles, ttl, 0, &access, NULL, &j->why);
    if (j->err == WY_OK) {
        j->body = token_body(j, access, ttl, cfg->refresh_ttl_ms / 1000);
        if (!j->body) {
            j->err = WY_EINTERNAL;
            j->why = "cannot encode the token answer";
        }
    }
    wy_free(access);
    OPENSSL_cleanse(j->refresh, sizeof j->refresh);
}

/* Loop thread: hands the answer over, then releases the job. */
static void deliver(job_t *j)
{
    auth_t *a = j->a;
    auth_sign_release(a);
    if (j->err == WY_OK)
        wy_metric_inc(a->m_tokens_issued);
    else
        wy_log_error("cannot sign access token", "error", j->why ? j->why : wy_strerror(j->err),
                     NULL);
    j->cb(j->err, j->body ? j->body : "", j->body ? strlen(j->body) : 0, j->ud);
    if (j->body) {
        OPENSSL_cleanse(j->body, strlen(j->body));
        free(j->body);
    }
    wy_free(j);
    auth_unref(a);
}

static void on_built(wy_mailbox_node_t *node, void *ud, int status)
{
    (void)ud;
    (void)status; /* WY_ECANCELED at close still carries a built answer: deliver it */
    deliver(WY_CONTAINER_OF(node, job_t, node));
}

/* Worker thread (WY_OK), or the loop at close for a job no worker read (WY_ECANCELED). */
static void on_job(wy_mailbox_node_t *node, void *ud, int status)
{
    job_t *j = WY_CONTAINER_OF(node, job_t, node);
    build(j);
    if (status != WY_OK) { /* on the loop already */
        deliver(j);
        return;
    }
    /* The loop mailbox holds WY_AUTH_SIGN_QUEUE jobs, as many as can be in flight, so it is
     * never full; the loop keeps draining it until the workers are joined. */
    while (wy_worker_post(ud, &j->node, on_built) == WY_EBUSY)
        sched_yield();
}

static void signer_main(wy_worker_t *w)
{
    while (!wy_worker_stopping(w))
        if (wy_worker_poll(w) == 0)
            wy_worker_wait(w, -1);
    /* Told to stop: what the loop sent before is answered, not canceled. */
    while (wy_worker_poll(w) > 0)
        ;
}

int auth_signer_start(auth_t *a, const char **err)
{
    a->m_sign_queue = wy_metrics_gauge("wy_auth_sign_queue",
                                       "Token answers promised and not sent yet: waiting for "
                                       "their commit, or for or in signing (WY_AUTH_SIGN_QUEUE).",
                                       NULL);
    a->m_tokens_issued =
        wy_metrics_counter("wy_auth_tokens_issued_total", "Access tokens signed.", NULL);
    a->m_sign_refused = wy_metrics_counter(
        "wy_auth_sign_refused_total",
        "Logins, refreshes and registrations refused 503 before writing anything because "
        "WY_AUTH_SIGN_QUEUE answers were promised.",
        NULL);
    if (a->cfg->sign_workers == 0)
        return WY_OK;
    size_t cap = (size_t)a->cfg->sign_queue;
    wy_workers_opts_t o = {.name = "sign",
                           .count = (unsigned)a->cfg->sign_workers,
                           .main = signer_main,
                           .inbox_capacity = cap,
                           .loop_capacity = cap};
    int rc = wy_daemon_add_workers(a->d, &o);
    if (rc != WY_OK)
        *err = "WY_AUTH_SIGN_WORKERS: cannot create the signing workers";
    return rc;
}

static void depth_set(auth_t *a, uint32_t depth)
{
    a->sign_depth = depth;
    wy_metric_set(a->m_sign_queue, (double)depth);
}

int auth_sign_reserve(auth_t *a)
{
    if (a->sign_depth >= (uint64_t)a->cfg->sign_queue) {
        wy_metric_inc(a->m_sign_refused);
        return WY_EBUSY;
    }
    depth_set(a, a->sign_depth + 1);
    return WY_OK;
}

void auth_sign_release(auth_t *a)
{
    depth_set(a, a->sign_depth - 1);
}

void auth_sign(auth_t *a, const auth_sign_req_t *r, auth_sign_cb cb, void *ud)
{
    job_t *j = wy_calloc(1, sizeof *j);
    j->a = a;
    auth_ref(a);
    j->keys = a->keys;
    j->cfg = a->cfg;
    j->cb = cb;
    j->ud = ud;
    snprintf(j->account, sizeof j->account, "%s", r->account);
    snprintf(j->sid, sizeof j->sid, "%s", r->sid);
    j->roles = auth_roles_of(a, r->account);
    snprintf(j->refresh, sizeof j->refresh, "%s", r->refresh);
    j->created = r->created;
    wy_workers_t *ws = a->stopping ? NULL : wy_daemon_workers(a->d);
    if (ws) {
        unsigned n = wy_workers_count(ws);
        for (unsigned tries = 0; tries < n; tries++) {
            unsigned i = a->sign_next++ % n;
            if (wy_workers_send(ws, i, &j->node, on_job) == WY_OK)
                return;
        }
    }
    /* No worker takes it: built here, answered now. */
    build(j);
    deliver(j);
}

uint32_t auth_sign_depth(const auth_t *a)
{
    return a->sign_depth;
}
