/* wy_jwt — compact JWS verify/sign and pinned key sets (see wy_jwt.h).
 * Everything here treats the token as hostile: bounded before decoding, no trust in alg. */
#include "wy_jwt.h"

#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "wy_log.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define SIG_MAX      (RSA_MAX_BITS / 8)

struct jwt_key {
    char kid[WY_JWT_KID_MAX + 1];
    wy_jwt_alg_t alg;
    bool can_sign;
    EVP_PKEY *pkey;
};

struct wy_jwt_keyset {
    struct jwt_key keys[WY_JWKS_MAX_KEYS];
    size_t n;
};

const char *wy_jwt_alg_name(wy_jwt_alg_t alg)
{
    switch (alg) {
    case WY_JWT_ALG_EDDSA:
        return "EdDSA";
    case WY_JWT_ALG_RS256:
        return "RS256";
    case WY_JWT_ALG_ES256:
        return "ES256";
    }
    return "?";
}

/* Only the three names we implement map to an alg; "none", "HS256", "RS512" ... do not. */
static unsigned alg_from_name(const char *s)
{
    if (strcmp(s, "EdDSA") == 0)
        return WY_JWT_ALG_EDDSA;
    if (strcmp(s, "RS256") == 0)
        return WY_JWT_ALG_RS256;
    if (strcmp(s, "ES256") == 0)
        return WY_JWT_ALG_ES256;
    return 0;
}

/* ---- base64url ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

size_t wy_b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

char *wy_b64url_encode(const void *src, size_t n)
{
    const unsigned char *s = src;
    char *out = wy_malloc(wy_b64url_encoded_len(n) + 1);
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

int wy_b64url_decode(const char *src, size_t len, void *dst, size_t cap, size_t *out_len)
{
    unsigned char *d = dst;
    size_t rem = len % 4;
    if (rem == 1)
        return WY_EINVAL;
    size_t need = len / 4 * 3 + (rem ? rem - 1 : 0);
    if (need > cap)
        return WY_ETOOBIG;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)src[i]);
        if (v < 0)
            return WY_EINVAL;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            d[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* Leftover bits must be zero, or two strings would decode to the same bytes. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return WY_EINVAL;
    if (out_len)
        *out_len = o;
    return WY_OK;
}

/* Decode into a new buffer with one spare byte set to NUL (handy for JSON). */
static int b64_decode_alloc(const char *src, size_t len, unsigned char **out, size_t *out_len)
{
    size_t cap = len / 4 * 3 + 3;
    unsigned char *buf = wy_malloc(cap + 1);
    int rc = wy_b64url_decode(src, len, buf, cap, out_len);
    if (rc != WY_OK) {
        wy_free(buf);
        return rc;
    }
    buf[*out_len] = '\0';
    *out = buf;
    return WY_OK;
}

/* ---- key set ---- */

static bool kid_valid(const char *kid)
{
    size_t n = kid ? strlen(kid) : 0;
    if (n == 0 || n > WY_JWT_KID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)kid[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '/')
            return false;
    }
    return true;
}

static const struct jwt_key *find_key(const wy_jwt_keyset_t *ks, const char *kid)
{
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].kid, kid) == 0)
            return &ks->keys[i];
    return NULL;
}

wy_jwt_keyset_t *wy_jwt_keyset_new(void)
{
    return wy_calloc(1, sizeof(wy_jwt_keyset_t));
}

void wy_jwt_keyset_free(wy_jwt_keyset_t *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++)
        EVP_PKEY_free(ks->keys[i].pkey);
    wy_free(ks);
}

/* The algorithm a key can serve, from its type; 0 if we do not support the key. */
static unsigned alg_of_pkey(EVP_PKEY *pkey, const char **err)
{
    if (EVP_PKEY_is_a(pkey, "ED25519"))
        return WY_JWT_ALG_EDDSA;
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
            *err = "RSA key size must be 2048..8192 bits";
            return 0;
        }
        /* e = 1 (or even) makes signatures trivial to forge: refuse such keys outright. */
        BIGNUM *e = NULL;
        bool e_ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) == 1 && BN_is_odd(e) &&
                    !BN_is_one(e);
        BN_free(e);
        if (!e_ok) {
            *err = "RSA public exponent must be odd and at least 3";
            return 0;
        }
        return WY_JWT_ALG_RS256;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                           NULL) != 1 ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
            *err = "EC key is not on curve P-256";
            return 0;
        }
        return WY_JWT_ALG_ES256;
    }
    *err = "unsupported key type (want Ed25519, RSA or EC P-256)";
    return 0;
}

static bool pkey_has_private(EVP_PKEY *pkey, unsigned alg)
{
    bool has = false;
    if (alg == WY_JWT_ALG_EDDSA) {
        size_t len = 0;
        has = EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, NULL, 0, &len) == 1 &&
              len > 0;
    } else {
        BIGNUM *bn = NULL;
        const char *name =
            alg == WY_JWT_ALG_RS256 ? OSSL_PKEY_PARAM_RSA_D : OSSL_PKEY_PARAM_PRIV_KEY;
        has = EVP_PKEY_get_bn_param(pkey, name, &bn) == 1 && bn != NULL;
        BN_clear_free(bn);
    }
    ERR_clear_error();
    return has;
}

/* Check a key and make the entry; does not insert it. */
static int make_key(struct jwt_key *k, const char *kid, unsigned alg, EVP_PKEY *pkey,
                    const char **err)
{
    if (!kid_valid(kid)) {
        *err = "kid must be 1..64 printable ASCII chars without space, quote, backslash or /";
        return WY_EINVAL;
    }
    if (alg & (alg - 1) || alg & ~7u) {
        *err = "alg must be one of EdDSA, RS256, ES256";
        return WY_EINVAL;
    }
    unsigned key_alg = alg_of_pkey(pkey, err);
    if (key_alg == 0)
        return WY_EINVAL;
    if (alg != 0 && alg != key_alg) {
        *err = "key type does not match the requested alg";
        return WY_EINVAL;
    }
    memset(k, 0, sizeof *k);
    memcpy(k->kid, kid, strlen(kid) + 1);
    k->alg = (wy_jwt_alg_t)key_alg;
    k->can_sign = pkey_has_private(pkey, key_alg);
    k->pkey = pkey;
    return WY_OK;
}

static int insert_key(wy_jwt_keyset_t *ks, const struct jwt_key *k, const char **err)
{
    if (find_key(ks, k->kid)) {
        *err = "kid already in the key set";
        return WY_EEXIST;
    }
    if (ks->n >= WY_JWKS_MAX_KEYS) {
        *err = "key set is full";
        return WY_ELIMIT;
    }
    ks->keys[ks->n++] = *k;
    return WY_OK;
}

int wy_jwt_keyset_add_pkey(wy_jwt_keyset_t *ks, const char *kid, unsigned alg, EVP_PKEY *pkey,
                           const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (!ks || !pkey) {
        *err = "no key";
        return WY_EINVAL;
    }
    struct jwt_key k;
    int rc = make_key(&k, kid, alg, pkey, err);
    if (rc != WY_OK)
        return rc;
    rc = insert_key(ks, &k, err);
    if (rc == WY_OK)
        EVP_PKEY_up_ref(pkey);
    return rc;
}

/* Encrypted keys are not supported; without this OpenSSL would prompt on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

int wy_jwt_keyset_add_pem(wy_jwt_keyset_t *ks, const char *kid, unsigned alg, const char *pem,
                          size_t pem_len, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (!ks || !pem || pem_len == 0 || pem_len > WY_JWKS_MAX_LEN) {
        *err = "empty or oversized PEM";
        return WY_EINVAL;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    if (!bio) {
        *err = "out of memory";
        return WY_EINTERNAL;
    }
    EVP_PKEY *pkey = NULL;
    if (memmem(pem, pem_len, "PRIVATE KEY-----", 16))
        pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    else
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (!pkey) {
        *err = "not a PEM public key or unencrypted private key";
        return WY_EINVAL;
    }
    int rc = wy_jwt_keyset_add_pkey(ks, kid, alg, pkey, err);
    EVP_PKEY_free(pkey);
    return rc;
}

int wy_jwt_keyset_remove(wy_jwt_keyset_t *ks, const char *kid)
{
    if (!ks || !kid)
        return WY_ENOTFOUND;
    for (size_t i = 0; i < ks->n; i++) {
        if (strcmp(ks->keys[i].kid, kid) == 0) {
            EVP_PKEY_free(ks->keys[i].pkey);
            memmove(&ks->keys[i], &ks->keys[i + 1], (ks->n - i - 1) * sizeof ks->keys[0]);
            ks->n--;
            return WY_OK;
        }
    }
    return WY_ENOTFOUND;
}

size_t wy_jwt_keyset_count(const wy_jwt_keyset_t *ks)
{
    return ks ? ks->n : 0;
}

const char *wy_jwt_keyset_kid_at(const wy_jwt_keyset_t *ks, size_t i)
{
    return ks && i < ks->n ? ks->keys[i].kid : NULL;
}

int wy_jwt_keyset_lookup(const wy_jwt_keyset_t *ks, const char *kid, wy_jwt_alg_t *alg,
                         bool *can_sign)
{
    const struct jwt_key *k = ks && kid ? find_key(ks, kid) : NULL;
    if (!k)
        return WY_ENOTFOUND;
    if (alg)
        *alg = k->alg;
    if (can_sign)
        *can_sign = k->can_sign;
    return WY_OK;
}

int wy_jwt_keyset_signer(const wy_jwt_keyset_t *ks, const char *kid, wy_jwt_alg_t alg,
                         const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    const struct jwt_key *k = ks && kid ? find_key(ks, kid) : NULL;
    if (!k) {
        *err = "unknown kid";
        return WY_ENOTFOUND;
    }
    if (k->alg != alg) {
        *err = "the key is not of the algorithm this token is signed with";
        return WY_EINVAL;
    }
    if (!k->can_sign) {
        *err = "key has no private part";
        return WY_EPERM;
    }
    return WY_OK;
}

void wy_jwt_new_jti(char out[23])
{
    unsigned char rnd[16];
    wy_random(rnd, sizeof rnd);
    char *jti = wy_b64url_encode(rnd, sizeof rnd);
    snprintf(out, 23, "%s", jti);
    wy_free(jti);
}

/* ---- JWKS ---- */

/* Decode a base64url JWK member of exactly want bytes (want 0: 1..cap bytes). */
static int jwk_bytes(json_t *jwk, const char *name, unsigned char *out, size_t cap, size_t want,
                     size_t *out_len)
{
    json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v))
        return WY_EINVAL;
    size_t n = 0;
    if (wy_b64url_decode(json_string_value(v), json_string_length(v), out, cap, &n) != WY_OK)
        return WY_EINVAL;
    if (want ? n != want : n == 0)
        return WY_EINVAL;
    *out_len = n;
    return WY_OK;
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
            pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* Build a key from one JWK. Returns WY_OK (*out set), WY_ENOTFOUND (unsupported: skip)
 * or WY_EINVAL (a supported key that is malformed). */
static int jwk_to_pkey(json_t *jwk, unsigned *alg_out, EVP_PKEY **out, const char **err)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    json_t *use = json_object_get(jwk, "use");
    json_t *jalg = json_object_get(jwk, "alg");
    unsigned char buf[SIG_MAX];
    size_t n = 0;
    unsigned alg;

    if (!kty) {
        *err = "JWK without a string kty";
        return WY_EINVAL;
    }
    if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))
        return WY_ENOTFOUND;
    if (strcmp(kty, "OKP") == 0 && crv && strcmp(crv, "Ed25519") == 0)
        alg = WY_JWT_ALG_EDDSA;
    else if (strcmp(kty, "RSA") == 0)
        alg = WY_JWT_ALG_RS256;
    else if (strcmp(kty, "EC") == 0 && crv && strcmp(crv, "P-256") == 0)
        alg = WY_JWT_ALG_ES256;
    else
        return WY_ENOTFOUND;
    if (jalg && (!json_is_string(jalg) || alg_from_name(json_string_value(jalg)) != alg))
        return WY_ENOTFOUND; /* e.g. an RSA key pinned to RS512 or PS256 */

    EVP_PKEY *pkey = NULL;
    if (alg == WY_JWT_ALG_EDDSA) {
        if (jwk_bytes(jwk, "x", buf, sizeof buf, 32, &n) != WY_OK) {
            *err = "Ed25519 JWK: x must be 32 bytes of base64url";
            return WY_EINVAL;
        }
        pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, buf, 32);
    } else if (alg == WY_JWT_ALG_RS256) {
        unsigned char e[8];
        size_t en = 0;
        if (jwk_bytes(jwk, "n", buf, sizeof buf, 0, &n) != WY_OK ||
            jwk_bytes(jwk, "e", e, sizeof e, 0, &en) != WY_OK) {
            *err = "RSA JWK: n and e must be base64url (n up to 8192 bits)";
            return WY_EINVAL;
        }
        BIGNUM *bn_n = BN_bin2bn(buf, (int)n, NULL), *bn_e = BN_bin2bn(e, (int)en, NULL);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
            pkey = pkey_from_params("RSA", bld);
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn_n);
        BN_free(bn_e);
    } else {
        unsigned char pt[65];
        pt[0] = 0x04; /* uncompressed point */
        if (jwk_bytes(jwk, "x", pt + 1, 32, 32, &n) != WY_OK ||
            jwk_bytes(jwk, "y", pt + 33, 32, 32, &n) != WY_OK) {
            *err = "EC JWK: x and y must be 32 bytes of base64url each";
            return WY_EINVAL;
        }
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt))
            pkey = pkey_from_params("EC", bld);
        OSSL_PARAM_BLD_free(bld);
        if (pkey) {
            /* A point off the curve is an invalid-curve attack waiting to happen. */
            EVP_PKEY_CTX *cctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
            if (!cctx || EVP_PKEY_public_check(cctx) != 1) {
                EVP_PKEY_free(pkey);
                pkey = NULL;
            }
            EVP_PKEY_CTX_free(cctx);
        }
    }
    ERR_clear_error();
    if (!pkey) {
        *err = "JWK key material rejected by OpenSSL";
        return WY_EINVAL;
    }
    *alg_out = alg;
    *out = pkey;
    return WY_OK;
}

int wy_jwt_keyset_add_jwks(wy_jwt_keyset_t *ks, const char *json, size_t len, size_t *added,
                           size_t *skipped, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (added)
        *added = 0;
    if (skipped)
        *skipped = 0;
    if (!ks || !json) {
        *err = "no JWKS document";
        return WY_EINVAL;
    }
    if (len > WY_JWKS_MAX_LEN) {
        *err = "JWKS document too large";
        return WY_ETOOBIG;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_object(doc) || !json_is_array(keys)) {
        json_decref(doc);
        *err = "JWKS is not a JSON object with a \"keys\" array";
        return WY_EINVAL;
    }

    /* Build everything first so a bad document leaves the set unchanged. */
    struct jwt_key fresh[WY_JWKS_MAX_KEYS];
    size_t nfresh = 0, nskip = 0;
    int rc = WY_OK;
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        if (!json_is_object(jwk)) {
            *err = "JWKS key is not a JSON object";
            rc = WY_EINVAL;
            break;
        }
        unsigned alg = 0;
        EVP_PKEY *pkey = NULL;
        int r = jwk_to_pkey(jwk, &alg, &pkey, err);
        if (r == WY_ENOTFOUND) {
            const char *kty = json_string_value(json_object_get(jwk, "kty"));
            const char *kid = json_string_value(json_object_get(jwk, "kid"));
            wy_log_info("jwks: unsupported key skipped", "kty", kty, "kid", kid, NULL);
            nskip++;
            continue;
        }
        if (r != WY_OK) {
            rc = r;
            break;
        }
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        if (!kid) {
            EVP_PKEY_free(pkey);
            *err = "JWKS key without a string kid";
            rc = WY_EINVAL;
            break;
        }
        if (nfresh >= WY_JWKS_MAX_KEYS || ks->n + nfresh >= WY_JWKS_MAX_KEYS) {
            EVP_PKEY_free(pkey);
            *err = "too many keys in JWKS";
            rc = WY_ELIMIT;
            break;
        }
        r = make_key(&fresh[nfresh], kid, alg, pkey, err);
        if (r != WY_OK) {
            EVP_PKEY_free(pkey);
            rc = r;
            break;
        }
        nfresh++;
        bool dup = find_key(ks, kid) != NULL;
        for (size_t j = 0; j + 1 < nfresh && !dup; j++)
            dup = strcmp(fresh[j].kid, kid) == 0;
        if (dup) {
            *err = "duplicate kid in JWKS";
            rc = WY_EEXIST;
            break;
        }
    }
    json_decref(doc);
    if (rc != WY_OK) {
        for (size_t j = 0; j < nfresh; j++)
            EVP_PKEY_free(fresh[j].pkey);
        return rc;
    }
    for (size_t j = 0; j < nfresh; j++)
        ks->keys[ks->n++] = fresh[j];
    if (added)
        *added = nfresh;
    if (skipped)
        *skipped = nskip;
    return WY_OK;
}

static void set_b64(json_t *obj, const char *name, const unsigned char *b, size_t n)
{
    char *s = wy_b64url_encode(b, n);
    json_object_set_new(obj, name, json_string(s));
    wy_free(s);
}

static void set_bn(json_t *obj, const char *name, EVP_PKEY *pkey, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[SIG_MAX];
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) == 1 && BN_num_bytes(bn) <= (int)sizeof buf) {
        int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
        if (n > 0)
            set_b64(obj, name, buf, (size_t)n);
    }
    BN_free(bn);
}

char *wy_jwt_keyset_export_jwks(const wy_jwt_keyset_t *ks)
{
    json_t *keys = json_array();
    for (size_t i = 0; ks && i < ks->n; i++) {
        const struct jwt_key *k = &ks->keys[i];
        json_t *jwk = json_object();
        if (k->alg == WY_JWT_ALG_EDDSA) {
            unsigned char raw[32];
            size_t n = sizeof raw;
            json_object_set_new(jwk, "kty", json_string("OKP"));
            json_object_set_new(jwk, "crv", json_string("Ed25519"));
            if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &n) == 1)
                set_b64(jwk, "x", raw, n);
        } else if (k->alg == WY_JWT_ALG_RS256) {
            json_object_set_new(jwk, "kty", json_string("RSA"));
            set_bn(jwk, "n", k->pkey, OSSL_PKEY_PARAM_RSA_N, 0);
            set_bn(jwk, "e", k->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
        } else {
            json_object_set_new(jwk, "kty", json_string("EC"));
            json_object_set_new(jwk, "crv", json_string("P-256"));
            set_bn(jwk, "x", k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
            set_bn(jwk, "y", k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        }
        json_object_set_new(jwk, "kid", json_string(k->kid));
        json_object_set_new(jwk, "use", json_string("sig"));
        json_object_set_new(jwk, "alg", json_string(wy_jwt_alg_name(k->alg)));
        json_array_append_new(keys, jwk);
    }
    ERR_clear_error();
    json_t *doc = json_object();
    json_object_set_new(doc, "keys", keys);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!s)
        abort(); /* only on allocation failure, which aborts everywhere else too */
    char *out = wy_strdup(s);
    free(s);
    return out;
}

/* ---- verify ---- */

/* JOSE ES256 signatures are raw r||s; OpenSSL wants DER. */
static int es256_raw_to_der(const unsigned char *raw, unsigned char **der, size_t *der_len)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return WY_EINTERNAL;
    }
    unsigned char *p = NULL;
    int n = i2d_ECDSA_SIG(sig, &p);
    ECDSA_SIG_free(sig);
    if (n <= 0)
        return WY_EINTERNAL;
    *der = p;
    *der_len = (size_t)n;
    return WY_OK;
}

static bool signature_ok(const struct jwt_key *k, const unsigned char *data, size_t data_len,
                         const unsigned char *sig, size_t sig_len)
{
    unsigned char *der = NULL;
    bool ok = false;
    switch (k->alg) {
    case WY_JWT_ALG_EDDSA:
        if (sig_len != 64)
            return false;
        break;
    case WY_JWT_ALG_RS256:
        if ((int)sig_len != EVP_PKEY_get_size(k->pkey))
            return false;
        break;
    case WY_JWT_ALG_ES256:
        if (sig_len != 64 || es256_raw_to_der(sig, &der, &sig_len) != WY_OK)
            return false;
        sig = der;
        break;
    }
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = k->alg == WY_JWT_ALG_EDDSA ? NULL : EVP_sha256();
    if (mctx && EVP_DigestVerifyInit(mctx, &pctx, md, NULL, k->pkey) == 1 &&
        (k->alg != WY_JWT_ALG_RS256 || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1))
        ok = EVP_DigestVerify(mctx, sig, sig_len, data, data_len) == 1;
    EVP_MD_CTX_free(mctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

int wy_jwt_verify(const wy_jwt_keyset_t *ks, const char *token, size_t len,
                  const wy_jwt_verify_opts_t *opts, wy_jwt_t *out, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (out)
        memset(out, 0, sizeof *out);
    if (!ks || !token || !opts || !out || opts->allowed_algs == 0) {
        *err = "bad arguments (no key set, token, options or allowed algs)";
        return WY_EINVAL;
    }
    size_t max_len = opts->max_len ? opts->max_len : WY_JWT_MAX_LEN_DEFAULT;
    if (max_len > WY_JWT_MAX_LEN_LIMIT)
        max_len = WY_JWT_MAX_LEN_LIMIT;
    if (len > max_len) {
        *err = "token too long";
        return WY_ETOOBIG;
    }
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) {
        *err = "token must have exactly 3 segments";
        return WY_EINVAL;
    }
    size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1),
           slen = len - (size_t)(d2 + 1 - token);
    if (hlen == 0 || plen == 0 || slen == 0) {
        *err = "empty token segment";
        return WY_EINVAL;
    }

    unsigned char *hbuf = NULL, *pbuf = NULL;
    size_t n = 0;
    json_t *header = NULL, *claims = NULL;
    json_error_t jerr;
    int rc;
    if (b64_decode_alloc(token, hlen, &hbuf, &n) != WY_OK) {
        *err = "header is not base64url";
        return WY_EINVAL;
    }
    header = json_loadb((const char *)hbuf, n, JSON_REJECT_DUPLICATES, &jerr);
    wy_free(hbuf);
    if (!json_is_object(header)) {
        *err = "header is not a JSON object";
        rc = WY_EINVAL;
        goto fail;
    }
    json_t *jalg = json_object_get(header, "alg"), *jkid = json_object_get(header, "kid");
    if (!json_is_string(jalg)) {
        *err = "header has no alg";
        rc = WY_EINVAL;
        goto fail;
    }
    if (!json_is_string(jkid)) {
        *err = "header has no kid";
        rc = WY_EINVAL;
        goto fail;
    }
    if (json_object_get(header, "crit")) {
        *err = "critical header extensions not supported";
        rc = WY_EINVAL;
        goto fail;
    }
    unsigned alg = alg_from_name(json_string_value(jalg));
    if (alg == 0 || !(alg & opts->allowed_algs)) {
        *err = "alg not allowed";
        rc = WY_EAUTH;
        goto fail;
    }
    const char *kid = json_string_value(jkid);
    const struct jwt_key *k =
        json_string_length(jkid) == strlen(kid) && strlen(kid) <= WY_JWT_KID_MAX ? find_key(ks, kid)
                                                                                 : NULL;
    if (!k) {
        *err = "unknown kid";
        rc = WY_EAUTH;
        goto fail;
    }
    if (k->alg != alg) {
        *err = "alg does not match the key";
        rc = WY_EAUTH;
        goto fail;
    }

    unsigned char sig[SIG_MAX];
    size_t sig_len = 0;
    rc = wy_b64url_decode(d2 + 1, slen, sig, sizeof sig, &sig_len);
    if (rc != WY_OK) {
        *err = rc == WY_ETOOBIG ? "bad signature" : "signature is not base64url";
        rc = rc == WY_ETOOBIG ? WY_EAUTH : WY_EINVAL;
        goto fail;
    }
    if (!signature_ok(k, (const unsigned char *)token, (size_t)(d2 - token), sig, sig_len)) {
        *err = "bad signature";
        rc = WY_EAUTH;
        goto fail;
    }

    if (b64_decode_alloc(d1 + 1, plen, &pbuf, &n) != WY_OK) {
        *err = "payload is not base64url";
        rc = WY_EINVAL;
        goto fail;
    }
    claims = json_loadb((const char *)pbuf, n, JSON_REJECT_DUPLICATES, &jerr);
    wy_free(pbuf);
    if (!json_is_object(claims)) {
        *err = "payload is not a JSON object";
        rc = WY_EINVAL;
        goto fail;
    }
    out->alg = (wy_jwt_alg_t)alg;
    memcpy(out->kid, k->kid, sizeof out->kid);
    out->header = header;
    out->claims = claims;
    return WY_OK;

fail:
    json_decref(header);
    json_decref(claims);
    return rc;
}

void wy_jwt_clear(wy_jwt_t *jwt)
{
    if (!jwt)
        return;
    json_decref(jwt->header);
    json_decref(jwt->claims);
    memset(jwt, 0, sizeof *jwt);
}

/* An optional integer claim: WY_OK with *present, or WY_EINVAL if of another type. */
static int int_claim(const json_t *claims, const char *name, int64_t *v, bool *present)
{
    json_t *j = json_object_get(claims, name);
    *present = j != NULL;
    if (!j)
        return WY_OK;
    if (!json_is_integer(j))
        return WY_EINVAL;
    *v = (int64_t)json_integer_value(j);
    return WY_OK;
}

int wy_jwt_check_claims(const json_t *claims, const wy_jwt_claims_opts_t *opts, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (!json_is_object(claims) || !opts || opts->leeway_s < WY_JWT_LEEWAY_NONE ||
        opts->leeway_s > 86400) {
        *err = "bad arguments (claims not an object or leeway out of range)";
        return WY_EINVAL;
    }
    int64_t leeway = opts->leeway_s == 0                    ? WY_JWT_LEEWAY_DEFAULT
                     : opts->leeway_s == WY_JWT_LEEWAY_NONE ? 0
                                                            : opts->leeway_s;
    int64_t now = opts->now ? opts->now : (int64_t)time(NULL);
    int64_t exp = 0, nbf = 0, iat = 0;
    bool has_exp, has_nbf, has_iat;
    if (int_claim(claims, "exp", &exp, &has_exp) != WY_OK || !has_exp) {
        *err = has_exp ? "exp is not an integer" : "missing exp";
        return WY_EINVAL;
    }
    if (int_claim(claims, "nbf", &nbf, &has_nbf) != WY_OK) {
        *err = "nbf is not an integer";
        return WY_EINVAL;
    }
    if (int_claim(claims, "iat", &iat, &has_iat) != WY_OK || (opts->require_iat && !has_iat)) {
        *err = has_iat ? "iat is not an integer" : "missing iat";
        return WY_EINVAL;
    }
    if (opts->iss) {
        json_t *j = json_object_get(claims, "iss");
        if (!json_is_string(j)) {
            *err = j ? "iss is not a string" : "missing iss";
            return WY_EINVAL;
        }
        if (json_string_length(j) != strlen(opts->iss) || strcmp(json_string_value(j), opts->iss)) {
            *err = "wrong issuer";
            return WY_EAUTH;
        }
    }
    if (opts->aud) {
        json_t *j = json_object_get(claims, "aud");
        bool match = false;
        if (json_is_string(j)) {
            match = json_string_length(j) == strlen(opts->aud) &&
                    strcmp(json_string_value(j), opts->aud) == 0;
        } else if (json_is_array(j)) {
            size_t i;
            json_t *e;
            json_array_foreach(j, i, e)
            {
                if (!json_is_string(e)) {
                    *err = "aud array holds a non-string";
                    return WY_EINVAL;
                }
                if (json_string_length(e) == strlen(opts->aud) &&
                    strcmp(json_string_value(e), opts->aud) == 0)
                    match = true;
            }
        } else {
            *err = j ? "aud is not a string or array" : "missing aud";
            return WY_EINVAL;
        }
        if (!match) {
            *err = "wrong audience";
            return WY_EAUTH;
        }
    }
    /* Written as now - leeway vs claim so a huge claim value cannot overflow. */
    if (now - leeway >= exp) {
        *err = "token expired";
        return WY_EAUTH;
    }
    if (has_nbf && now + leeway < nbf) {
        *err = "token not yet valid";
        return WY_EAUTH;
    }
    if (has_iat && now + leeway < iat) {
        *err = "token issued in the future";
        return WY_EAUTH;
    }
    return WY_OK;
}

/* ---- sign ---- */

static char *dump_b64(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (!s)
        return NULL;
    char *b = wy_b64url_encode(s, strlen(s));
    free(s);
    return b;
}

/* JOSE wants ES256 as raw r||s, each left-padded to 32 bytes. */
static int es256_der_to_raw(const unsigned char *der, size_t der_len, unsigned char raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!sig)
        return WY_EINTERNAL;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok ? WY_OK : WY_EINTERNAL;
}

int wy_jwt_sign(const wy_jwt_keyset_t *ks, const char *kid, const json_t *claims, char **out_token,
                const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (out_token)
        *out_token = NULL;
    if (!ks || !kid || !out_token || !json_is_object(claims)) {
        *err = "bad arguments (claims must be a JSON object)";
        return WY_EINVAL;
    }
    const struct jwt_key *k = find_key(ks, kid);
    if (!k) {
        *err = "unknown kid";
        return WY_ENOTFOUND;
    }
    if (!k->can_sign) {
        *err = "key has no private part";
        return WY_EPERM;
    }
    json_t *hdr =
        json_pack("{s:s, s:s, s:s}", "alg", wy_jwt_alg_name(k->alg), "kid", k->kid, "typ", "JWT");
    char *h = dump_b64(hdr), *p = dump_b64(claims);
    json_decref(hdr);
    if (!h || !p) {
        wy_free(h);
        wy_free(p);
        *err = "claims cannot be serialized";
        return WY_EINVAL;
    }
    char *input = wy_sprintf("%s.%s", h, p);
    wy_free(h);
    wy_free(p);

    unsigned char sig[SIG_MAX + 16], raw[64];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = k->alg == WY_JWT_ALG_EDDSA ? NULL : EVP_sha256();
    int ok = mctx && EVP_DigestSignInit(mctx, &pctx, md, NULL, k->pkey) == 1 &&
             (k->alg != WY_JWT_ALG_RS256 ||
              EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1) &&
             EVP_DigestSign(mctx, sig, &sig_len, (const unsigned char *)input, strlen(input)) == 1;
    EVP_MD_CTX_free(mctx);
    ERR_clear_error();
    const unsigned char *final = sig;
    if (ok && k->alg == WY_JWT_ALG_ES256) {
        ok = es256_der_to_raw(sig, sig_len, raw) == WY_OK;
        final = raw;
        sig_len = 64;
    }
    if (!ok) {
        wy_free(input);
        *err = "signing failed in OpenSSL";
        return WY_EINTERNAL;
    }
    char *s = wy_b64url_encode(final, sig_len);
    *out_token = wy_sprintf("%s.%s", input, s);
    wy_free(input);
    wy_free(s);
    return WY_OK;
}
