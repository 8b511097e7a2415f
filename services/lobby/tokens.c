/* wy-lobby tokens: auth's verification keys (GetKeys) and the revocation cache that
 * wy.account fills (account.session_revoked). */
#include "tokens.h"
#include "state.h"
#include "auth.pb-c.h"

#include <string.h>

/* Revocations older than this cannot matter: no access token lives that long. */
#define REVOKED_KEEP_S  3600
#define KEYS_REFRESH_MS 60000
#define KEYS_RETRY_MS   2000
/* Until the first key set arrives the lobby is not ready: ask again sooner. */
#define KEYS_FIRST_RETRY_MS 250

/* The cache holds what wy.account told this instance: "a:<account>" = every token of the
 * account issued at or before the time is revoked (ban, logout everywhere), "s:<sid>" = that
 * login session is. The claim at hello also reads auth's revocation keys in Redis (store.c),
 * which cover revocations older than this instance. */
void lobby_revoked_put(lobby_t *lb, const char *kind, const char *id, int64_t at)
{
    char key[LOBBY_ID_MAX + 3];
    snprintf(key, sizeof key, "%s:%s", kind, id);
    void *val = (void *)(uintptr_t)(at > 0 ? at : 1);
    if (wy_map_put_str(lb->revoked, key, val) == WY_OK)
        return;
    /* Full (LOBBY_REVOKED_MAX): drop entries past REVOKED_KEEP_S; if still full, keep the
     * newest info by dropping everything (the claim still reads auth's revocation keys). */
    int64_t cut = (int64_t)(wy_wall_ms() / 1000) - REVOKED_KEEP_S;
    wy_map_iter_t it;
    wy_map_iter_init(&it, lb->revoked);
    while (wy_map_next(&it))
        if ((int64_t)(uintptr_t)it.val < cut)
            wy_map_iter_del(&it);
    if (wy_map_count(lb->revoked) >= LOBBY_REVOKED_MAX) {
        wy_map_free(lb->revoked);
        lb->revoked = wy_map_new(LOBBY_REVOKED_MAX);
    }
    (void)wy_map_put_str(lb->revoked, key, val); /* there is room now */
}

bool lobby_revoked(lobby_t *lb, const char *account, const char *token_sid, int64_t iat)
{
    char key[LOBBY_ID_MAX + 3];
    snprintf(key, sizeof key, "s:%s", token_sid);
    if (wy_map_get_str(lb->revoked, key))
        return true;
    snprintf(key, sizeof key, "a:%s", account);
    uintptr_t at = (uintptr_t)wy_map_get_str(lb->revoked, key);
    return at && iat <= (int64_t)at;
}

static void keys_apply(lobby_t *lb, int err, const char *message, const ProtobufCMessage *resp)
{
    const char *e = message;
    if (err == WY_OK) {
        const Wyvern__Auth__GetKeysResponse *r = (const Wyvern__Auth__GetKeysResponse *)resp;
        if (wy_token_cache_update_jwks(lb->key_cache, r->jwks_json, &e) == WY_OK) {
            int64_t age = r->max_age_s > 0 ? (int64_t)r->max_age_s * 1000 : KEYS_REFRESH_MS;
            lb->keys_next_fetch_ms = wy_now_ms() + (uint64_t)(age < 5000 ? 5000 : age);
            if (!lb->keys_loaded) {
                lb->keys_loaded = true;
                wy_log_info("token keys fetched from auth", NULL);
                wy_daemon_ready_check(lb->d); /* the ready line may follow now */
            }
            return;
        }
        err = WY_EINVAL;
    }
    /* Before the first key set (auth still starting) this is expected: debug only. */
    if (lb->keys_loaded)
        wy_log_warn("cannot fetch token keys from auth", "error", e && *e ? e : wy_strerror(err),
                    NULL);
    else
        wy_log_debug("no token keys from auth yet", "error", e && *e ? e : wy_strerror(err), NULL);
    lb->keys_next_fetch_ms = wy_now_ms() + (lb->keys_loaded ? KEYS_RETRY_MS : KEYS_FIRST_RETRY_MS);
}

static void keys_fetched(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    WY_UNUSED(status);
    lobby_t *lb = arg;
    lb->keys_fetching = false;
    if (err != WY_ECANCELED)
        keys_apply(lb, err, message, resp);
    lobby_unref(lb);
}

void lobby_keys_tick(lobby_t *lb)
{
    if (!lb->auth || lb->keys_fetching || wy_now_ms() < lb->keys_next_fetch_ms)
        return;
    Wyvern__Auth__GetKeysRequest req = WYVERN__AUTH__GET_KEYS_REQUEST__INIT;
    if (wy_grpc_call(lb->auth, "/wyvern.auth.Auth/GetKeys", &req.base,
                     &wyvern__auth__get_keys_response__descriptor, 2000, NULL, 0, keys_fetched,
                     lb) == WY_OK) {
        lb->keys_fetching = true;
        lobby_ref(lb);
    } else {
        lb->keys_next_fetch_ms =
            wy_now_ms() + (lb->keys_loaded ? KEYS_RETRY_MS : KEYS_FIRST_RETRY_MS);
    }
}

const char *lobby_keys_unready(lobby_t *lb)
{
    return lb->static_keys || lb->keys_loaded ? NULL : "auth_keys";
}
