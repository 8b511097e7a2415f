/* wy_jwt — compact JWS (JWT) verification and signing over OpenSSL 3 EVP, with a
 * key set pinned per kid (EdDSA/Ed25519, RS256, ES256) and RFC 7517 JWKS import/export.
 * Generic: wy_token builds Wyvern access tokens on it; auth also verifies OIDC id_tokens. */
#ifndef WY_JWT_H
#define WY_JWT_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

#include <jansson.h>
#include <openssl/types.h>

#include "wy_core.h"

/* Signature algorithms, usable as a bit set (wy_jwt_verify_opts_t.allowed_algs).
 * "none" and HMAC algorithms are deliberately absent: they can never verify. */
typedef enum {
    WY_JWT_ALG_EDDSA = 1u << 0, /* Ed25519, "EdDSA" */
    WY_JWT_ALG_RS256 = 1u << 1, /* RSA >= 2048 bits, PKCS#1 v1.5 + SHA-256 */
    WY_JWT_ALG_ES256 = 1u << 2, /* ECDSA P-256 + SHA-256, JOSE raw r||s signature */
} wy_jwt_alg_t;

#define WY_JWT_MAX_LEN_DEFAULT 8192u          /* default hard cap on a compact token, bytes */
#define WY_JWT_MAX_LEN_LIMIT   (1u << 20)     /* largest cap a caller may configure */
#define WY_JWT_KID_MAX         64             /* longest kid accepted anywhere (chars) */
#define WY_JWT_LEEWAY_DEFAULT  30             /* seconds of clock skew tolerated by default */
#define WY_JWT_LEEWAY_NONE     (-1)           /* pass as leeway_s for exactly zero leeway */
#define WY_JWKS_MAX_LEN        (256u * 1024u) /* largest JWKS document accepted */
#define WY_JWKS_MAX_KEYS       64             /* most keys one key set holds */

/* "EdDSA", "RS256", "ES256"; "?" for anything else. Never NULL. */
const char *wy_jwt_alg_name(wy_jwt_alg_t alg);

/* ---- base64url (RFC 4648 §5, no padding) ---- */

/* Encoded length of n bytes (no NUL). */
size_t wy_b64url_encoded_len(size_t n);
/* Encode n bytes into a new NUL-terminated string; caller frees (wy_free). */
char *wy_b64url_encode(const void *src, size_t n);
/* Strict decode of len chars: rejects '=', characters outside [A-Za-z0-9_-], a length
 * of 1 mod 4 and non-zero unused trailing bits (so each byte string has exactly one
 * encoding). Writes at most cap bytes to dst and the byte count to *out_len.
 * Returns WY_OK, WY_EINVAL (malformed) or WY_ETOOBIG (would exceed cap). */
int wy_b64url_decode(const char *src, size_t len, void *dst, size_t cap, size_t *out_len);

/* ---- key set ---- */

/* Keys by kid, each pinned to one algorithm. Immutable after loading: once built, a
 * key set may be shared read-only by any number of threads (verify and sign only
 * read it; OpenSSL 3 EVP_PKEY is safe for concurrent read use). Adding or removing
 * keys must not race with readers; to refresh, build a new set and swap it. */
typedef struct wy_jwt_keyset wy_jwt_keyset_t;

wy_jwt_keyset_t *wy_jwt_keyset_new(void);
/* Frees the set and all its keys. NULL is fine. */
void wy_jwt_keyset_free(wy_jwt_keyset_t *ks);

/* Add a key from PEM text (SubjectPublicKeyInfo "PUBLIC KEY", or PKCS#8 "PRIVATE KEY";
 * also traditional RSA/EC private keys). alg 0 infers the algorithm from the key type
 * (Ed25519 -> EdDSA, RSA -> RS256, EC P-256 -> ES256); a non-zero alg must match the key.
 * A private key can also sign. kid: 1..WY_JWT_KID_MAX printable ASCII chars, no space, '"', '\\' or
 * '/'. Returns WY_OK, WY_EINVAL (bad PEM, unsupported key, RSA < 2048 bits, bad kid), WY_EEXIST
 * (kid already in the set), WY_ELIMIT (set full). Sets *err on failure. */
int wy_jwt_keyset_add_pem(wy_jwt_keyset_t *ks, const char *kid, unsigned alg, const char *pem,
                          size_t pem_len, const char **err);
/* Same, from an EVP_PKEY; the set takes its own reference (the caller keeps theirs). */
int wy_jwt_keyset_add_pkey(wy_jwt_keyset_t *ks, const char *kid, unsigned alg, EVP_PKEY *pkey,
                           const char **err);
/* Import the keys of a JWKS document (RFC 7517 {"keys":[...]}) of len bytes: kty OKP/crv
 * Ed25519 (x), kty RSA (n, e), kty EC/crv P-256 (x, y). Keys with "use" other than "sig",
 * or an unsupported kty/crv/alg, are skipped (counted in *skipped, logged at info).
 * A malformed supported key, a missing/duplicate kid or a bad document fails the whole
 * import and leaves the set unchanged. *added / *skipped may be NULL.
 * Returns WY_OK, WY_EINVAL, WY_ETOOBIG (> WY_JWKS_MAX_LEN), WY_EEXIST, WY_ELIMIT. */
int wy_jwt_keyset_add_jwks(wy_jwt_keyset_t *ks, const char *json, size_t len, size_t *added,
                           size_t *skipped, const char **err);
/* Remove a key. Returns WY_OK or WY_ENOTFOUND. */
int wy_jwt_keyset_remove(wy_jwt_keyset_t *ks, const char *kid);
size_t wy_jwt_keyset_count(const wy_jwt_keyset_t *ks);
/* kid of the i-th key (insertion order), NULL when i >= count. Valid while the key is. */
const char *wy_jwt_keyset_kid_at(const wy_jwt_keyset_t *ks, size_t i);
/* Look a kid up. Returns WY_OK and fills *alg / *can_sign (each may be NULL), or WY_ENOTFOUND. */
int wy_jwt_keyset_lookup(const wy_jwt_keyset_t *ks, const char *kid, wy_jwt_alg_t *alg,
                         bool *can_sign);
/* Checks that kid names a key of ks pinned to alg that can sign. Returns WY_OK,
 * WY_ENOTFOUND ("unknown kid"), WY_EINVAL (another algorithm) or WY_EPERM ("key has no
 * private part"); *err (may be NULL) gets a static reason. */
int wy_jwt_keyset_signer(const wy_jwt_keyset_t *ks, const char *kid, wy_jwt_alg_t alg,
                         const char **err);
/* Writes a new random token id (128 bits, base64url: 22 chars + NUL) into out. */
void wy_jwt_new_jti(char out[23]);
/* Public keys as a JWKS JSON document ({"keys":[{kty,crv?,kid,use:"sig",alg,...}]}),
 * never any private part. Returns a new string; caller frees (wy_free). */
char *wy_jwt_keyset_export_jwks(const wy_jwt_keyset_t *ks);

/* ---- verify ---- */

typedef struct {
    unsigned allowed_algs; /* bit set of wy_jwt_alg_t; 0 -> WY_EINVAL (nothing allowed) */
    size_t max_len;        /* cap on the token length; 0 -> WY_JWT_MAX_LEN_DEFAULT */
} wy_jwt_verify_opts_t;

/* A verified token. header and claims are owned: release with wy_jwt_clear. */
typedef struct {
    wy_jwt_alg_t alg;
    char kid[WY_JWT_KID_MAX + 1];
    json_t *header; /* JSON object */
    json_t *claims; /* JSON object (payload) */
} wy_jwt_t;

/* Verify a compact JWS of len bytes (need not be NUL-terminated). Order: length cap
 * (before any decoding), exactly 3 non-empty segments, header JSON with string "alg" and
 * "kid", alg in opts->allowed_algs AND equal to the kid's pinned alg, kid looked up only in
 * ks, signature (EVP_DigestVerify), and only then the payload is parsed (JSON object,
 * duplicate keys rejected). Claims are NOT checked here: call wy_jwt_check_claims.
 * On success fills *out (caller calls wy_jwt_clear); on failure *out is zeroed.
 * Returns WY_OK, WY_ETOOBIG (over the cap), WY_EINVAL (malformed), WY_EAUTH (alg not
 * allowed, unknown kid, bad signature). *err gets a static reason ("unknown kid").
 * Any thread, if ks is not being modified. */
int wy_jwt_verify(const wy_jwt_keyset_t *ks, const char *token, size_t len,
                  const wy_jwt_verify_opts_t *opts, wy_jwt_t *out, const char **err);
/* Release what wy_jwt_verify filled; safe on a zeroed or already cleared struct. */
void wy_jwt_clear(wy_jwt_t *jwt);

typedef struct {
    const char *iss; /* required exact "iss"; NULL -> not checked */
    const char *aud; /* "aud" must equal it or be an array containing it; NULL -> not checked */
    int leeway_s;    /* clock skew tolerated; 0 -> WY_JWT_LEEWAY_DEFAULT, WY_JWT_LEEWAY_NONE -> 0 */
    int64_t now;     /* Unix seconds; 0 -> the wall clock (tests inject a time) */
    bool require_iat; /* "iat" must be present */
} wy_jwt_claims_opts_t;

/* Standard claim checks: "exp" required (integer, now < exp + leeway), "nbf" optional
 * (now >= nbf - leeway), "iat" optional unless required (must not be after now + leeway),
 * iss / aud as above. Numbers must be JSON integers. Returns WY_OK, WY_EAUTH (expired,
 * not yet valid, wrong iss/aud) or WY_EINVAL (claim missing or of the wrong type);
 * *err gets a static reason. */
int wy_jwt_check_claims(const json_t *claims, const wy_jwt_claims_opts_t *opts, const char **err);

/* ---- sign ---- */

/* Sign claims (a JSON object) with the private key kid, using its pinned algorithm:
 * header {"alg","kid","typ":"JWT"}. *out_token gets a new string; caller frees.
 * Returns WY_OK, WY_ENOTFOUND (unknown kid), WY_EPERM (key is public only),
 * WY_EINVAL (claims not an object), WY_EINTERNAL (OpenSSL failure). */
int wy_jwt_sign(const wy_jwt_keyset_t *ks, const char *kid, const json_t *claims, char **out_token,
                const char **err);

#endif
