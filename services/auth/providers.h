/* wy-auth login providers: verify a Steam session ticket (Steam Web API) or an OpenID Connect
 * id_token (JWKS fetched with wy_httpc) and turn it into a stable external subject. */
#ifndef AUTH_PROVIDERS_H
#define AUTH_PROVIDERS_H

#include <stdbool.h>
#include <uv.h>

#include "wy_config.h"

typedef struct auth_providers auth_providers_t;

/* WY_AUTH_STEAM_* and WY_AUTH_OIDC_* (filled by wy_config; strings owned by the config). */
typedef struct {
    char *steam_api_url;
    int64_t steam_app_id;
    char *steam_key;
    int64_t steam_timeout_ms;
    char *oidc_issuer;
    char *oidc_audience;
    char *oidc_jwks_url;
    int64_t oidc_jwks_refresh_ms;
    int64_t oidc_jwks_min_refresh_ms;
    char *oidc_algs;
    int64_t oidc_timeout_ms;
} auth_providers_cfg_t;

/* Their config entries, appended to auth's own config table. Each dst is an offset into
 * auth_providers_cfg_t (WY_CFG_OFF): rebase the table onto one (wy_config_rebase) and load
 * it before auth_providers_new. Steam is enabled when WY_AUTH_STEAM_APP_ID != 0 and
 * WY_AUTH_STEAM_WEB_API_KEY is set; OIDC when WY_AUTH_OIDC_ISSUER is set. */
extern const wy_cfg_entry_t auth_provider_config[]; /* WY_AUTH_STEAM_*, WY_AUTH_OIDC_* entries */
extern const size_t auth_provider_nconfig;          /* appended to auth's own config table */

/* Create the providers on loop from the loaded configuration cfg (kept by pointer: it must
 * outlive p). Starts the
 * first JWKS fetch in the background when OIDC is enabled (verifications wait for it). Returns
 * WY_OK and *out, or WY_EINVAL with *err naming the variable and why
 * ("WY_AUTH_OIDC_AUDIENCE: required when WY_AUTH_OIDC_ISSUER is set"); *err is static. Loop
 * thread only. */
int auth_providers_new(uv_loop_t *loop, const auth_providers_cfg_t *cfg, auth_providers_t **out,
                       const char **err);

/* Pending verifications get WY_ECANCELED (during this call); the HTTP client and timers are
 * closed and p is freed from the loop once their handles are closed (keep running the loop).
 * p must not be used after this call. Safe from inside an auth_provider_cb. NULL is fine. */
void auth_providers_close(auth_providers_t *p); /* pending verifications get WY_ECANCELED; frees */

/* True when method ("steam" | "oidc") is configured. */
bool auth_provider_enabled(const auth_providers_t *p, const char *method); /* "steam" | "oidc" */

/* Outcome of one verification, exactly once, on the loop, never from inside the verify call:
 *   WY_OK        subject is the stable external id: the SteamID64 ("7656119...") for Steam,
 *                "<iss>|<sub>" for OIDC.
 *   WY_EAUTH     the provider rejected the credential (bad/expired ticket or token, banned).
 *   WY_EUNAVAIL  the provider could not be reached or answered unusably (also: our Web API key
 *                refused), or OIDC keys could not be fetched.
 *   WY_EINVAL    malformed credential (not hex, too long, not a JWS).
 *   WY_ESTATE    the method is not configured.
 *   WY_EBUSY     too many verifications in flight.
 *   WY_ECANCELED auth_providers_close was called.
 * subject is NULL unless WY_OK; message is for humans (safe to return to the client, never
 * contains secrets); both valid only during the callback. */
typedef void (*auth_provider_cb)(int err, const char *subject, const char *message, void *ud);

/* Verify a Steam session ticket (hex, as from ISteamUser::GetAuthSessionTicket). Always returns
 * WY_OK and reports everything through cb (WY_EINVAL without a callback only for NULL p/cb). */
int auth_steam_verify(auth_providers_t *p, const char *ticket, auth_provider_cb cb, void *ud);

/* Verify an OIDC id_token (compact JWS). Same return and callback contract. */
int auth_oidc_verify(auth_providers_t *p, const char *id_token, auth_provider_cb cb, void *ud);

#endif
