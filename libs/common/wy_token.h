/* wy_token — Wyvern access tokens: EdDSA (Ed25519) JWTs issued by wy-auth and verified
 * locally by lobby and game, built on wy_jwt; key files and the verifier-side key cache. */
#ifndef WY_TOKEN_H
#define WY_TOKEN_H

#include <stdint.h>
#include <stddef.h>

#include "wy_jwt.h"

#define WY_TOKEN_ID_MAX      64            /* longest sub / sid / jti (chars) */
#define WY_TOKEN_ISS_MAX     255           /* longest iss */
#define WY_TOKEN_AUD_MAX     128           /* longest aud */
#define WY_TOKEN_TTL_DEFAULT 900           /* access tokens live 15 minutes by default */
#define WY_TOKEN_KEYFILE_MAX (64u * 1024u) /* largest key file read */

/* Claims of a Wyvern access token. Strings are NUL-terminated; an over-long claim is a
 * rejected token, never a truncated one. nbf is 0 when the token has none. */
typedef struct {
    char sub[WY_TOKEN_ID_MAX + 1]; /* account id */
    char sid[WY_TOKEN_ID_MAX + 1]; /* login session id */
    char jti[WY_TOKEN_ID_MAX + 1]; /* token id (128 random bits, base64url) */
    char iss[WY_TOKEN_ISS_MAX + 1];
    char aud[WY_TOKEN_AUD_MAX + 1];
    char kid[WY_JWT_KID_MAX + 1];
    int64_t iat, nbf, exp; /* Unix seconds */
    uint32_t roles;        /* WY_TOKEN_ROLE_* bits of the "roles" claim; 0 when absent */
} wy_token_claims_t;

/* Roles an operator grants an account (auth.accounts.roles); auth puts them in the access
 * token as "roles": ["moderator", ...] and verifiers read them from the verified claims only.
 * Unknown names in a token are ignored (a newer issuer); a "roles" claim that is not an array
 * of at most WY_TOKEN_ROLES_MAX strings makes the token malformed. */
#define WY_TOKEN_ROLE_MODERATOR (1u << 0) /* chat: mute, delete any message, review reports */
#define WY_TOKEN_ROLES_MAX      16

/* The bit of a role name ("moderator"), 0 for an unknown one. */
uint32_t wy_token_role_bit(const char *name);
/* Bits of a comma-separated list of role names (spaces around names ignored). Unknown names
 * are skipped and counted in *unknown (may be NULL). */
uint32_t wy_token_roles_parse(const char *csv, unsigned *unknown);

/* Issue a token signed by the EdDSA private key kid of ks: claims iss, aud, sub, sid,
 * iat = now, exp = now + ttl_s, jti random. now 0 -> wall clock; ttl_s must be > 0.
 * *out_token gets a new string (caller frees); out_claims (may be NULL) gets the claims.
 * Returns WY_OK, WY_EINVAL (empty or over-long argument, key not EdDSA), WY_ENOTFOUND
 * (unknown kid), WY_EPERM (key cannot sign). Any thread if ks is not being modified. */
int wy_token_issue(const wy_jwt_keyset_t *ks, const char *kid, const char *iss, const char *aud,
                   const char *sub, const char *sid, int64_t ttl_s, int64_t now, char **out_token,
                   wy_token_claims_t *out_claims, const char **err);
/* wy_token_issue with a "roles" claim of the WY_TOKEN_ROLE_* bits in roles (none when 0, so a
 * token without roles is the same as wy_token_issue's). Same returns. */
int wy_token_issue_roles(const wy_jwt_keyset_t *ks, const char *kid, const char *iss,
                         const char *aud, const char *sub, const char *sid, uint32_t roles,
                         int64_t ttl_s, int64_t now, char **out_token,
                         wy_token_claims_t *out_claims, const char **err);

typedef struct {
    const char *iss; /* required: exact issuer expected */
    const char *aud; /* required: this verifier's audience */
    int leeway_s;    /* 0 -> WY_JWT_LEEWAY_DEFAULT (30 s); WY_JWT_LEEWAY_NONE -> 0 */
    int64_t now;     /* Unix seconds; 0 -> wall clock */
    size_t max_len;  /* 0 -> WY_JWT_MAX_LEN_DEFAULT */
} wy_token_verify_opts_t;

/* Verify an access token of len bytes: only alg EdDSA, kid from ks, signature, then claims
 * sub, sid, jti, iss, aud (strings), iat, exp (integers) all required, nbf and roles optional; time
 * checks with leeway (exp, nbf, iat not in the future). out is filled only on WY_OK and
 * zeroed on any failure. Returns WY_OK, WY_EAUTH (signature, kid, alg, time, iss, aud),
 * WY_EINVAL (malformed, missing or over-long claim), WY_ETOOBIG (over max_len); *err gets
 * a static reason. Any thread if ks is not being modified. */
int wy_token_verify(const wy_jwt_keyset_t *ks, const char *token, size_t len,
                    const wy_token_verify_opts_t *opts, wy_token_claims_t *out, const char **err);

/* Load one PEM key file (<= WY_TOKEN_KEYFILE_MAX bytes) as an EdDSA key. kid NULL -> the
 * file name without directories and without a ".pem" suffix. Private keys can sign.
 * Returns WY_OK, WY_EIO (cannot read), WY_ETOOBIG, WY_EINVAL (not an Ed25519 key, bad
 * kid), WY_EEXIST; *err names the problem. */
int wy_token_keyset_load_file(wy_jwt_keyset_t *ks, const char *path, const char *kid,
                              const char **err);
/* Load every "*.pem" file of dir (kid = file name without .pem; names starting with '.'
 * are skipped, symlinks followed: a mounted Kubernetes Secret). Any bad file fails the
 * load (keys already added stay; callers start with a fresh set and discard it on error).
 * Returns WY_OK with at least one key, WY_ENOTFOUND (no .pem file: refuse to start),
 * WY_EIO, WY_EINVAL, WY_ETOOBIG, WY_EEXIST, WY_ELIMIT. *err is a static or per-thread
 * message naming the problem. */
int wy_token_keyset_load_dir(wy_jwt_keyset_t *ks, const char *dir, const char **err);

/* Generate a new Ed25519 private key as PKCS#8 PEM text. *pem gets a new string; caller
 * frees (wy_free; it is secret: clear it first if it lingers). Returns WY_OK or
 * WY_EINTERNAL. Keys are generated at deploy time, never committed. */
int wy_token_generate_ed25519_pem(char **pem);

/* ---- verifier-side cache of auth's public keys (lobby, game) ---- */

/* Holds the current key set fetched from auth (JWKS over gRPC Auth.GetKeys or HTTP).
 * Owned by one loop thread: update and read it from that thread only. */
typedef struct wy_token_cache wy_token_cache_t;

wy_token_cache_t *wy_token_cache_new(void);
void wy_token_cache_free(wy_token_cache_t *c); /* NULL is fine */
/* Replace the keys with those of a JWKS document (NUL-terminated). The new document must
 * be valid and hold at least one EdDSA key; otherwise the previous keys stay and an error
 * is returned (WY_EINVAL / WY_ETOOBIG). On success the fetch time is set to the wall clock
 * and key sets returned earlier by wy_token_cache_keyset are freed. */
int wy_token_cache_update_jwks(wy_token_cache_t *c, const char *json, const char **err);
/* The current key set, NULL before the first successful update. Valid until the next
 * successful update or wy_token_cache_free. */
const wy_jwt_keyset_t *wy_token_cache_keyset(const wy_token_cache_t *c);
/* Wall-clock ms of the last successful update, 0 if never. */
uint64_t wy_token_cache_fetched_ms(const wy_token_cache_t *c);

#endif
