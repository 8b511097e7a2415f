/* Unit tests for wy_token: access token issue/verify, every forged or broken token of the
 * wy-auth issue (all rejected, no claims filled), key files, rotation, JWKS and key cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "wy_token.h"

#define NOW 1700000000
#define ISS "wy-auth"
#define AUD "wyvern"

typedef struct {
    wy_jwt_keyset_t *ks; /* k1: private Ed25519 */
    EVP_PKEY *k1;        /* the same key, for hand-made signatures */
    char *token;         /* a valid token by k1 */
} fx_t;

static const wy_token_verify_opts_t vopts = {.iss = ISS, .aud = AUD, .now = NOW};

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    char *pem = NULL;
    assert_int_equal(wy_token_generate_ed25519_pem(&pem), WY_OK);
    assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
    f->ks = wy_jwt_keyset_new();
    const char *err = NULL;
    assert_int_equal(wy_jwt_keyset_add_pem(f->ks, "k1", 0, pem, strlen(pem), &err), WY_OK);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    f->k1 = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    assert_non_null(f->k1);
    BIO_free(bio);
    wy_free(pem);
    assert_int_equal(
        wy_token_issue(f->ks, "k1", ISS, AUD, "acct-1", "sess-1", 900, NOW, &f->token, NULL, &err),
        WY_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    wy_free(f->token);
    EVP_PKEY_free(f->k1);
    wy_jwt_keyset_free(f->ks);
    free(f);
    return 0;
}

/* Verify and assert the code, a reason, and that out was left all zero. */
static void expect_reject_opts(const wy_jwt_keyset_t *ks, const char *tok, size_t len,
                               const wy_token_verify_opts_t *o, int want)
{
    wy_token_claims_t out, zero;
    memset(&out, 0xAA, sizeof out);
    memset(&zero, 0, sizeof zero);
    const char *err = NULL;
    int rc = wy_token_verify(ks, tok, len, o, &out, &err);
    if (want != 0)
        assert_int_equal(rc, want);
    else
        assert_int_not_equal(rc, WY_OK);
    assert_non_null(err);
    assert_memory_equal(&out, &zero, sizeof out);
}

static void expect_reject(const wy_jwt_keyset_t *ks, const char *tok, int want)
{
    expect_reject_opts(ks, tok, strlen(tok), &vopts, want);
}

static char *b64s(const char *s)
{
    return wy_b64url_encode(s, strlen(s));
}

static char *ed_sign_b64(EVP_PKEY *k, const char *input)
{
    unsigned char sig[64];
    size_t n = sizeof sig;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(m, NULL, NULL, NULL, k), 1);
    assert_int_equal(EVP_DigestSign(m, sig, &n, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(m);
    return wy_b64url_encode(sig, n);
}

/* header and payload as raw text, properly signed with k (so only their content is wrong). */
static char *forge_signed(EVP_PKEY *k, const char *header, const char *payload)
{
    char *h = b64s(header), *p = b64s(payload);
    char *input = wy_sprintf("%s.%s", h, p);
    char *s = ed_sign_b64(k, input);
    char *tok = wy_sprintf("%s.%s", input, s);
    wy_free(h);
    wy_free(p);
    wy_free(input);
    wy_free(s);
    return tok;
}

#define HDR_K1 "{\"alg\":\"EdDSA\",\"kid\":\"k1\",\"typ\":\"JWT\"}"

/* A payload with all claims, valid at NOW, with one claim replaced or dropped. */
static char *payload_with(const char *name, const char *raw_value)
{
    const char *names[] = {"iss", "aud", "sub", "sid", "jti", "iat", "exp"};
    const char *vals[] = {"\"" ISS "\"", "\"" AUD "\"", "\"acct-1\"", "\"sess-1\"",
                          "\"jti-1\"",   "1700000000",  "1700000900"};
    char *s = wy_strdup("{");
    for (size_t i = 0; i < 7; i++) {
        const char *v = vals[i];
        if (name && strcmp(name, names[i]) == 0) {
            if (!raw_value)
                continue;
            v = raw_value;
        }
        char *n = wy_sprintf("%s%s\"%s\":%s", s, s[1] ? "," : "", names[i], v);
        wy_free(s);
        s = n;
    }
    if (name && raw_value && !strstr(s, name)) { /* an extra claim such as nbf */
        char *n = wy_sprintf("%s,\"%s\":%s", s, name, raw_value);
        wy_free(s);
        s = n;
    }
    char *n = wy_sprintf("%s}", s);
    wy_free(s);
    return n;
}

static void test_issue_verify_round_trip(void **state)
{
    fx_t *f = *state;
    wy_token_claims_t issued, got;
    char *tok = NULL;
    const char *err = NULL;
    assert_int_equal(
        wy_token_issue(f->ks, "k1", ISS, AUD, "acct-42", "sess-7", 900, NOW, &tok, &issued, &err),
        WY_OK);
    assert_int_equal(issued.exp, NOW + 900);
    assert_int_equal(strlen(issued.jti), 22); /* 128 bits base64url */
    assert_int_equal(wy_token_verify(f->ks, tok, strlen(tok), &vopts, &got, &err), WY_OK);
    assert_string_equal(got.sub, "acct-42");
    assert_string_equal(got.sid, "sess-7");
    assert_string_equal(got.jti, issued.jti);
    assert_string_equal(got.iss, ISS);
    assert_string_equal(got.aud, AUD);
    assert_string_equal(got.kid, "k1");
    assert_int_equal(got.iat, NOW);
    assert_int_equal(got.exp, NOW + 900);
    assert_int_equal(got.nbf, 0);
    /* A second token gets another jti. */
    char *tok2 = NULL;
    wy_token_claims_t c2;
    assert_int_equal(
        wy_token_issue(f->ks, "k1", ISS, AUD, "acct-42", "sess-7", 900, NOW, &tok2, &c2, &err),
        WY_OK);
    assert_string_not_equal(c2.jti, issued.jti);
    /* The wall clock is used when now is 0. */
    wy_token_verify_opts_t wall = {.iss = ISS, .aud = AUD};
    char *tok3 = NULL;
    assert_int_equal(wy_token_issue(f->ks, "k1", ISS, AUD, "a", "s", 60, 0, &tok3, NULL, &err),
                     WY_OK);
    assert_int_equal(wy_token_verify(f->ks, tok3, strlen(tok3), &wall, &got, &err), WY_OK);
    expect_reject(f->ks, tok3, WY_EAUTH); /* at NOW (2023) it was issued in the future */
    wy_free(tok);
    wy_free(tok2);
    wy_free(tok3);
}

static void test_alg_none_rejected(void **state)
{
    fx_t *f = *state;
    char *h = b64s("{\"alg\":\"none\",\"kid\":\"k1\"}");
    char *p = payload_with(NULL, NULL);
    char *pb = b64s(p);
    char *empty_sig = wy_sprintf("%s.%s.", h, pb);
    expect_reject(f->ks, empty_sig, WY_EINVAL);
    const char *real_sig = strrchr(f->token, '.') + 1;
    char *with_sig = wy_sprintf("%s.%s.%s", h, pb, real_sig);
    expect_reject(f->ks, with_sig, WY_EAUTH);
    char *hn = b64s("{\"alg\":\"none\"}");
    char *no_kid = wy_sprintf("%s.%s.%s", hn, pb, real_sig);
    expect_reject(f->ks, no_kid, 0);
    wy_free(h), wy_free(p), wy_free(pb), wy_free(empty_sig), wy_free(with_sig), wy_free(hn),
        wy_free(no_kid);
}

static char *hs256_token(const void *key, size_t key_len)
{
    char *h = b64s("{\"alg\":\"HS256\",\"kid\":\"k1\",\"typ\":\"JWT\"}");
    char *p = payload_with(NULL, NULL);
    char *pb = b64s(p);
    char *input = wy_sprintf("%s.%s", h, pb);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)input,
                         strlen(input), mac, &mac_len));
    char *s = wy_b64url_encode(mac, mac_len);
    char *tok = wy_sprintf("%s.%s", input, s);
    wy_free(h), wy_free(p), wy_free(pb), wy_free(input), wy_free(s);
    return tok;
}

static void test_hs256_with_public_key_rejected(void **state)
{
    fx_t *f = *state;
    unsigned char raw[32];
    size_t n = sizeof raw;
    assert_int_equal(EVP_PKEY_get_raw_public_key(f->k1, raw, &n), 1);
    char *t1 = hs256_token(raw, n);
    expect_reject(f->ks, t1, WY_EAUTH);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, f->k1), 1);
    char *pem = NULL;
    long len = BIO_get_mem_data(bio, &pem);
    char *t2 = hs256_token(pem, (size_t)len);
    expect_reject(f->ks, t2, WY_EAUTH);
    BIO_free(bio);
    wy_free(t1), wy_free(t2);
}

static void test_alg_confusion_rejected(void **state)
{
    fx_t *f = *state;
    /* Header says RS256 on an Ed25519 kid; wy_token allows EdDSA only. */
    char *p = payload_with(NULL, NULL);
    char *tok = forge_signed(f->k1, "{\"alg\":\"RS256\",\"kid\":\"k1\"}", p);
    expect_reject(f->ks, tok, WY_EAUTH);
    char *tok2 = forge_signed(f->k1, "{\"alg\":\"ES256\",\"kid\":\"k1\"}", p);
    expect_reject(f->ks, tok2, WY_EAUTH);
    char *tok3 = forge_signed(f->k1, "{\"alg\":\"eddsa\",\"kid\":\"k1\"}", p);
    expect_reject(f->ks, tok3, WY_EAUTH);
    wy_free(p), wy_free(tok), wy_free(tok2), wy_free(tok3);
}

static void test_unknown_and_missing_kid_rejected(void **state)
{
    fx_t *f = *state;
    /* Signed by a key the verifier does not know. */
    wy_jwt_keyset_t *other = wy_jwt_keyset_new();
    char *pem = NULL, *tok = NULL;
    const char *err = NULL;
    assert_int_equal(wy_token_generate_ed25519_pem(&pem), WY_OK);
    assert_int_equal(wy_jwt_keyset_add_pem(other, "k2", 0, pem, strlen(pem), &err), WY_OK);
    assert_int_equal(wy_token_issue(other, "k2", ISS, AUD, "a", "s", 900, NOW, &tok, NULL, &err),
                     WY_OK);
    expect_reject(f->ks, tok, WY_EAUTH);
    /* Same key, kid renamed to k1 in the other set: the signature does not match k1. */
    wy_jwt_keyset_t *other2 = wy_jwt_keyset_new();
    assert_int_equal(wy_jwt_keyset_add_pem(other2, "k1", 0, pem, strlen(pem), &err), WY_OK);
    char *tok2 = NULL;
    assert_int_equal(wy_token_issue(other2, "k1", ISS, AUD, "a", "s", 900, NOW, &tok2, NULL, &err),
                     WY_OK);
    expect_reject(f->ks, tok2, WY_EAUTH);
    /* Missing kid, kid of the wrong type, over-long kid. */
    char *p = payload_with(NULL, NULL);
    char *t3 = forge_signed(f->k1, "{\"alg\":\"EdDSA\"}", p);
    expect_reject(f->ks, t3, WY_EINVAL);
    char *t4 = forge_signed(f->k1, "{\"alg\":\"EdDSA\",\"kid\":1}", p);
    expect_reject(f->ks, t4, WY_EINVAL);
    char long_kid[300];
    memset(long_kid, 'k', sizeof long_kid - 1);
    long_kid[sizeof long_kid - 1] = '\0';
    char *hdr = wy_sprintf("{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", long_kid);
    char *t5 = forge_signed(f->k1, hdr, p);
    expect_reject(f->ks, t5, WY_EAUTH);
    char *t6 = forge_signed(f->k1, "{\"alg\":\"EdDSA\",\"kid\":\"k1\\u0000x\"}", p);
    expect_reject(f->ks, t6, 0);
    wy_jwt_keyset_free(other);
    wy_jwt_keyset_free(other2);
    wy_free(pem), wy_free(tok), wy_free(tok2), wy_free(p), wy_free(t3), wy_free(t4), wy_free(hdr),
        wy_free(t5), wy_free(t6);
}

static void test_time_claims(void **state)
{
    fx_t *f = *state;
    const char *err = NULL;
    char *tok = NULL;
    /* Expired: exp = NOW - 100. */
    assert_int_equal(
        wy_token_issue(f->ks, "k1", ISS, AUD, "a", "s", 900, NOW - 1000, &tok, NULL, &err), WY_OK);
    expect_reject(f->ks, tok, WY_EAUTH);
    wy_free(tok);
    /* Leeway edge: exp = NOW - 29 passes with the default 30 s; exp = NOW - 30 does not. */
    char *p = payload_with("exp", "1699999971");
    tok = forge_signed(f->k1, HDR_K1, p);
    wy_token_claims_t out;
    assert_int_equal(wy_token_verify(f->ks, tok, strlen(tok), &vopts, &out, &err), WY_OK);
    wy_token_verify_opts_t strict = vopts;
    strict.leeway_s = WY_JWT_LEEWAY_NONE;
    expect_reject_opts(f->ks, tok, strlen(tok), &strict, WY_EAUTH);
    wy_free(p), wy_free(tok);
    p = payload_with("exp", "1699999970");
    tok = forge_signed(f->k1, HDR_K1, p);
    expect_reject(f->ks, tok, WY_EAUTH);
    wy_free(p), wy_free(tok);
    /* Not yet valid: nbf 100 s ahead; 10 s ahead is within leeway. */
    p = payload_with("nbf", "1700000100");
    tok = forge_signed(f->k1, HDR_K1, p);
    expect_reject(f->ks, tok, WY_EAUTH);
    wy_free(p), wy_free(tok);
    p = payload_with("nbf", "1700000010");
    tok = forge_signed(f->k1, HDR_K1, p);
    assert_int_equal(wy_token_verify(f->ks, tok, strlen(tok), &vopts, &out, &err), WY_OK);
    assert_int_equal(out.nbf, NOW + 10);
    wy_free(p), wy_free(tok);
    /* iat in the future beyond leeway. */
    p = payload_with("iat", "1700000100");
    tok = forge_signed(f->k1, HDR_K1, p);
    expect_reject(f->ks, tok, WY_EAUTH);
    wy_free(p), wy_free(tok);
    /* Huge exp does not overflow into "expired" nor crash; huge negative nbf is fine. */
    p = payload_with("exp", "9223372036854775807");
    tok = forge_signed(f->k1, HDR_K1, p);
    assert_int_equal(wy_token_verify(f->ks, tok, strlen(tok), &vopts, &out, &err), WY_OK);
    wy_free(p), wy_free(tok);
}

static void test_wrong_iss_aud(void **state)
{
    fx_t *f = *state;
    const char *err = NULL;
    char *tok = NULL;
    assert_int_equal(
        wy_token_issue(f->ks, "k1", ISS, "other-aud", "a", "s", 900, NOW, &tok, NULL, &err), WY_OK);
    expect_reject(f->ks, tok, WY_EAUTH);
    wy_free(tok);
    assert_int_equal(wy_token_issue(f->ks, "k1", "evil", AUD, "a", "s", 900, NOW, &tok, NULL, &err),
                     WY_OK);
    expect_reject(f->ks, tok, WY_EAUTH);
    wy_free(tok);
    /* Prefix / suffix of the right values are not the right values. */
    assert_int_equal(
        wy_token_issue(f->ks, "k1", "wy-aut", AUD, "a", "s", 900, NOW, &tok, NULL, &err), WY_OK);
    expect_reject(f->ks, tok, WY_EAUTH);
    wy_free(tok);
    assert_int_equal(
        wy_token_issue(f->ks, "k1", ISS, "wyvern2", "a", "s", 900, NOW, &tok, NULL, &err), WY_OK);
    expect_reject(f->ks, tok, WY_EAUTH);
    wy_free(tok);
    /* aud as an array is not what auth issues. */
    char *p = payload_with("aud", "[\"wyvern\"]");
    tok = forge_signed(f->k1, HDR_K1, p);
    expect_reject(f->ks, tok, WY_EINVAL);
    wy_free(p), wy_free(tok);
}

static void test_flipped_bits_rejected(void **state)
{
    fx_t *f = *state;
    const char *dot = strrchr(f->token, '.');
    size_t prefix = (size_t)(dot + 1 - f->token);
    unsigned char sig[64];
    size_t n = 0;
    assert_int_equal(wy_b64url_decode(dot + 1, strlen(dot + 1), sig, sizeof sig, &n), WY_OK);
    assert_int_equal(n, 64);
    for (size_t i = 0; i < 64; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            sig[i] ^= (unsigned char)(1u << bit);
            char *s = wy_b64url_encode(sig, 64);
            char *tok = wy_sprintf("%.*s%s", (int)prefix, f->token, s);
            expect_reject(f->ks, tok, WY_EAUTH);
            wy_free(s), wy_free(tok);
            sig[i] ^= (unsigned char)(1u << bit);
        }
    }
    /* Flip one bit in each byte of the signed part too (header and payload characters). */
    char *tok = wy_strdup(f->token);
    for (size_t i = 0; i + 1 < prefix; i++) {
        if (tok[i] == '.')
            continue;
        tok[i] ^= 1;
        expect_reject(f->ks, tok, 0);
        tok[i] ^= 1;
    }
    wy_token_claims_t out;
    const char *err;
    assert_int_equal(wy_token_verify(f->ks, tok, strlen(tok), &vopts, &out, &err), WY_OK);
    wy_free(tok);
}

static void test_every_truncation_rejected(void **state)
{
    fx_t *f = *state;
    size_t len = strlen(f->token);
    for (size_t i = 0; i < len; i++) {
        /* An exact-size heap copy so ASan catches any read past len. */
        char *copy = wy_malloc(i ? i : 1);
        memcpy(copy, f->token, i);
        expect_reject_opts(f->ks, copy, i, &vopts, 0);
        wy_free(copy);
    }
    /* Also cut from the front. */
    for (size_t i = 1; i < len; i++)
        expect_reject_opts(f->ks, f->token + i, len - i, &vopts, 0);
}

static void test_non_base64_and_padding_rejected(void **state)
{
    fx_t *f = *state;
    const char bad[] = {'+', '/', '=', '!', ' ', '\n', '\0', (char)0xC3, '*'};
    const char *d1 = strchr(f->token, '.'), *d2 = strrchr(f->token, '.');
    size_t len = strlen(f->token);
    size_t pos[] = {1, (size_t)(d1 - f->token) + 3, (size_t)(d2 - f->token) + 3, len - 1};
    for (size_t p = 0; p < WY_ARRAY_LEN(pos); p++) {
        for (size_t b = 0; b < sizeof bad; b++) {
            char *tok = wy_strdup(f->token);
            tok[pos[p]] = bad[b];
            expect_reject_opts(f->ks, tok, len, &vopts, 0);
            wy_free(tok);
        }
    }
    /* Padding appended to the signature or the header. */
    char *t1 = wy_sprintf("%s=", f->token);
    expect_reject(f->ks, t1, WY_EINVAL);
    char *t2 = wy_sprintf("%s==", f->token);
    expect_reject(f->ks, t2, WY_EINVAL);
    char *t3 = wy_sprintf("%.*s=%s", (int)(d1 - f->token), f->token, d1);
    expect_reject(f->ks, t3, 0);
    wy_free(t1), wy_free(t2), wy_free(t3);
}

static void test_segments(void **state)
{
    fx_t *f = *state;
    char *t4 = wy_sprintf("%s.AAAA", f->token);
    expect_reject(f->ks, t4, WY_EINVAL);
    char *t5 = wy_sprintf("%s.", f->token);
    expect_reject(f->ks, t5, WY_EINVAL);
    const char *d1 = strchr(f->token, '.'), *d2 = strrchr(f->token, '.');
    char *no_hdr = wy_sprintf("%s", d1);
    expect_reject(f->ks, no_hdr, WY_EINVAL);
    char *no_pay = wy_sprintf("%.*s.%s", (int)(d1 - f->token), f->token, d2);
    expect_reject(f->ks, no_pay, WY_EINVAL);
    char *no_sig = wy_strndup(f->token, (size_t)(d2 - f->token) + 1);
    expect_reject(f->ks, no_sig, WY_EINVAL);
    char *two = wy_strndup(f->token, (size_t)(d2 - f->token));
    expect_reject(f->ks, two, WY_EINVAL);
    expect_reject(f->ks, "..", WY_EINVAL);
    expect_reject(f->ks, "...", WY_EINVAL);
    expect_reject(f->ks, "", WY_EINVAL);
    expect_reject(f->ks, "abc", WY_EINVAL);
    wy_free(t4), wy_free(t5), wy_free(no_hdr), wy_free(no_pay), wy_free(no_sig), wy_free(two);
}

static void test_one_megabyte_token_rejected_by_cap(void **state)
{
    fx_t *f = *state;
    size_t len = 1u << 20;
    char *big = wy_malloc(len);
    /* A valid token padded with junk: if anything were decoded first it would be EINVAL. */
    memset(big, '!', len);
    memcpy(big, f->token, strlen(f->token));
    expect_reject_opts(f->ks, big, len, &vopts, WY_ETOOBIG);
    /* Just over the default cap, and the cap is configurable. */
    expect_reject_opts(f->ks, big, WY_JWT_MAX_LEN_DEFAULT + 1, &vopts, WY_ETOOBIG);
    wy_token_verify_opts_t small = vopts;
    small.max_len = 50;
    expect_reject_opts(f->ks, f->token, strlen(f->token), &small, WY_ETOOBIG);
    wy_free(big);
}

static void test_json_content_rejected(void **state)
{
    fx_t *f = *state;
    char *p = payload_with(NULL, NULL);
    /* Header not JSON, header a JSON array, payload not JSON, payload an array. */
    char *t1 = forge_signed(f->k1, "not json", p);
    expect_reject(f->ks, t1, WY_EINVAL);
    char *t2 = forge_signed(f->k1, "[\"EdDSA\",\"k1\"]", p);
    expect_reject(f->ks, t2, WY_EINVAL);
    char *t3 = forge_signed(f->k1, HDR_K1, "{\"sub\":");
    expect_reject(f->ks, t3, WY_EINVAL);
    char *t4 = forge_signed(f->k1, HDR_K1, "[1,2,3]");
    expect_reject(f->ks, t4, WY_EINVAL);
    /* Duplicate claim names could be read differently elsewhere: rejected. */
    char *dup = wy_sprintf("%.*s,\"sub\":\"admin\"}", (int)strlen(p) - 1, p);
    char *t5 = forge_signed(f->k1, HDR_K1, dup);
    expect_reject(f->ks, t5, WY_EINVAL);
    /* Deeply nested payload: bounded by the length cap and the parser, no crash. */
    char deep[4000];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    char *t6 = forge_signed(f->k1, HDR_K1, deep);
    expect_reject(f->ks, t6, 0);
    /* crit header. */
    char *t7 = forge_signed(f->k1, "{\"alg\":\"EdDSA\",\"kid\":\"k1\",\"crit\":[\"b64\"]}", p);
    expect_reject(f->ks, t7, WY_EINVAL);
    wy_free(p), wy_free(t1), wy_free(t2), wy_free(t3), wy_free(t4), wy_free(dup), wy_free(t5),
        wy_free(t6), wy_free(t7);
}

static void test_claim_types_and_lengths(void **state)
{
    fx_t *f = *state;
    struct {
        const char *name, *value;
    } cases[] = {
        {"exp", "\"1700000900\""},
        {"exp", "1700000900.5"},
        {"exp", "null"},
        {"iat", "\"1700000000\""},
        {"nbf", "\"0\""},
        {"sub", "42"},
        {"sub", "\"\""},
        {"sid", "[]"},
        {"jti", "{}"},
        {"iss", "1"},
        {"aud", "true"},
        {"exp", NULL},
        {"iat", NULL},
        {"sub", NULL},
        {"sid", NULL},
        {"jti", NULL},
        {"iss", NULL},
        {"aud", NULL},
    };
    for (size_t i = 0; i < WY_ARRAY_LEN(cases); i++) {
        char *p = payload_with(cases[i].name, cases[i].value);
        char *tok = forge_signed(f->k1, HDR_K1, p);
        expect_reject(f->ks, tok, WY_EINVAL);
        wy_free(p), wy_free(tok);
    }
    /* sub of 64 chars is fine, 65 is rejected (never truncated). */
    char s64[67], s65[68];
    snprintf(s64, sizeof s64, "\"%064d\"", 0);
    snprintf(s65, sizeof s65, "\"%065d\"", 0);
    char *p = payload_with("sub", s64);
    char *tok = forge_signed(f->k1, HDR_K1, p);
    wy_token_claims_t out;
    const char *err;
    assert_int_equal(wy_token_verify(f->ks, tok, strlen(tok), &vopts, &out, &err), WY_OK);
    assert_int_equal(strlen(out.sub), 64);
    wy_free(p), wy_free(tok);
    p = payload_with("sub", s65);
    tok = forge_signed(f->k1, HDR_K1, p);
    expect_reject(f->ks, tok, WY_EINVAL);
    wy_free(p), wy_free(tok);
    /* An embedded NUL cannot cut a claim short. */
    p = payload_with("sub", "\"acct\\u0000admin\"");
    tok = forge_signed(f->k1, HDR_K1, p);
    expect_reject(f->ks, tok, 0);
    wy_free(p), wy_free(tok);
}

static void test_issue_arguments(void **state)
{
    fx_t *f = *state;
    char *tok = NULL;
    const char *err = NULL;
    char long_sub[80];
    memset(long_sub, 'a', sizeof long_sub - 1);
    long_sub[sizeof long_sub - 1] = '\0';
    assert_int_equal(
        wy_token_issue(f->ks, "k1", ISS, AUD, long_sub, "s", 900, NOW, &tok, NULL, &err),
        WY_EINVAL);
    assert_null(tok);
    assert_int_equal(wy_token_issue(f->ks, "k1", ISS, AUD, "", "s", 900, NOW, &tok, NULL, &err),
                     WY_EINVAL);
    assert_int_equal(wy_token_issue(f->ks, "k1", ISS, AUD, "a", "s", 0, NOW, &tok, NULL, &err),
                     WY_EINVAL);
    assert_int_equal(wy_token_issue(f->ks, "nope", ISS, AUD, "a", "s", 900, NOW, &tok, NULL, &err),
                     WY_ENOTFOUND);
    /* An RSA key in the set cannot issue access tokens. */
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(rsa);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "rsa", 0, rsa, &err), WY_OK);
    EVP_PKEY_free(rsa);
    assert_int_equal(wy_token_issue(f->ks, "rsa", ISS, AUD, "a", "s", 900, NOW, &tok, NULL, &err),
                     WY_EINVAL);
    /* Verify needs iss and aud. */
    wy_token_verify_opts_t o = {.aud = AUD, .now = NOW};
    expect_reject_opts(f->ks, f->token, strlen(f->token), &o, WY_EINVAL);
}

static void test_key_rotation(void **state)
{
    fx_t *f = *state;
    /* Signer has old (k1) and new (k2); verifier knows both while rotating. */
    char *pem = NULL, *tok_new = NULL;
    const char *err = NULL;
    assert_int_equal(wy_token_generate_ed25519_pem(&pem), WY_OK);
    assert_int_equal(wy_jwt_keyset_add_pem(f->ks, "k2", 0, pem, strlen(pem), &err), WY_OK);
    assert_int_equal(wy_jwt_keyset_count(f->ks), 2);
    assert_int_equal(
        wy_token_issue(f->ks, "k2", ISS, AUD, "a", "s", 900, NOW, &tok_new, NULL, &err), WY_OK);
    wy_token_claims_t out;
    assert_int_equal(wy_token_verify(f->ks, f->token, strlen(f->token), &vopts, &out, &err), WY_OK);
    assert_string_equal(out.kid, "k1");
    assert_int_equal(wy_token_verify(f->ks, tok_new, strlen(tok_new), &vopts, &out, &err), WY_OK);
    assert_string_equal(out.kid, "k2");
    /* Old key retired: its tokens stop verifying, the new ones keep working. */
    assert_int_equal(wy_jwt_keyset_remove(f->ks, "k1"), WY_OK);
    assert_int_equal(wy_jwt_keyset_remove(f->ks, "k1"), WY_ENOTFOUND);
    expect_reject(f->ks, f->token, WY_EAUTH);
    assert_int_equal(wy_token_verify(f->ks, tok_new, strlen(tok_new), &vopts, &out, &err), WY_OK);
    wy_free(pem), wy_free(tok_new);
}

static void test_jwks_export_import(void **state)
{
    fx_t *f = *state;
    char *jwks = wy_jwt_keyset_export_jwks(f->ks);
    assert_non_null(strstr(jwks, "\"kty\":\"OKP\""));
    assert_non_null(strstr(jwks, "\"kid\":\"k1\""));
    assert_null(strstr(jwks, "\"d\""));
    wy_jwt_keyset_t *pub = wy_jwt_keyset_new();
    size_t added = 0, skipped = 0;
    const char *err = NULL;
    assert_int_equal(wy_jwt_keyset_add_jwks(pub, jwks, strlen(jwks), &added, &skipped, &err),
                     WY_OK);
    assert_int_equal(added, 1);
    assert_int_equal(skipped, 0);
    bool can_sign = true;
    assert_int_equal(wy_jwt_keyset_lookup(pub, "k1", NULL, &can_sign), WY_OK);
    assert_false(can_sign);
    wy_token_claims_t out;
    assert_int_equal(wy_token_verify(pub, f->token, strlen(f->token), &vopts, &out, &err), WY_OK);
    assert_string_equal(out.sub, "acct-1");
    char *tok = NULL;
    assert_int_equal(wy_token_issue(pub, "k1", ISS, AUD, "a", "s", 900, NOW, &tok, NULL, &err),
                     WY_EPERM);
    wy_jwt_keyset_free(pub);
    wy_free(jwks);
}

static char *write_file(const char *dir, const char *name, const char *content)
{
    char *path = wy_sprintf("%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    return path;
}

static void rm_rf(const char *dir)
{
    char *cmd = wy_sprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    wy_free(cmd);
}

static void test_load_dir(void **state)
{
    fx_t *f = *state;
    char tmpl[] = "/tmp/wy_token_test_XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    const char *err = NULL;
    wy_jwt_keyset_t *ks = wy_jwt_keyset_new();
    /* Empty folder: refuse to run without a key. */
    assert_int_equal(wy_token_keyset_load_dir(ks, dir, &err), WY_ENOTFOUND);
    assert_non_null(strstr(err, dir));

    /* A Kubernetes-style mount: key files are symlinks into a hidden ..data folder. */
    char *pem_a = NULL, *pem_b = NULL;
    assert_int_equal(wy_token_generate_ed25519_pem(&pem_a), WY_OK);
    assert_int_equal(wy_token_generate_ed25519_pem(&pem_b), WY_OK);
    char *data = wy_sprintf("%s/..data", dir);
    assert_int_equal(mkdir(data, 0700), 0);
    wy_free(write_file(data, "2024-01.pem", pem_a));
    char *link_target = wy_sprintf("..data/2024-01.pem");
    char *link_path = wy_sprintf("%s/2024-01.pem", dir);
    assert_int_equal(symlink(link_target, link_path), 0);
    /* A public-only key (verify only). */
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, f->k1), 1);
    char *pub = NULL;
    long pub_len = BIO_get_mem_data(bio, &pub);
    char *pub_str = wy_strndup(pub, (size_t)pub_len);
    BIO_free(bio);
    wy_free(write_file(dir, "k1.pem", pub_str));
    wy_free(write_file(dir, "2024-02.pem", pem_b));
    wy_free(write_file(dir, "README.txt", "not a key"));

    assert_int_equal(wy_token_keyset_load_dir(ks, dir, &err), WY_OK);
    assert_int_equal(wy_jwt_keyset_count(ks), 3);
    assert_string_equal(wy_jwt_keyset_kid_at(ks, 0), "2024-01");
    assert_string_equal(wy_jwt_keyset_kid_at(ks, 1), "2024-02");
    assert_string_equal(wy_jwt_keyset_kid_at(ks, 2), "k1");
    bool can_sign = false;
    wy_jwt_alg_t alg = 0;
    assert_int_equal(wy_jwt_keyset_lookup(ks, "2024-02", &alg, &can_sign), WY_OK);
    assert_true(can_sign);
    assert_int_equal(alg, WY_JWT_ALG_EDDSA);
    assert_int_equal(wy_jwt_keyset_lookup(ks, "k1", NULL, &can_sign), WY_OK);
    assert_false(can_sign);
    /* The file-loaded public key verifies tokens of the fixture's k1. */
    wy_token_claims_t out;
    assert_int_equal(wy_token_verify(ks, f->token, strlen(f->token), &vopts, &out, &err), WY_OK);
    /* The symlinked private key signs. */
    char *tok = NULL;
    assert_int_equal(wy_token_issue(ks, "2024-01", ISS, AUD, "a", "s", 900, NOW, &tok, NULL, &err),
                     WY_OK);
    assert_int_equal(wy_token_verify(ks, tok, strlen(tok), &vopts, &out, &err), WY_OK);
    wy_free(tok);
    /* Loading the same folder again: duplicate kids. */
    assert_int_equal(wy_token_keyset_load_dir(ks, dir, &err), WY_EEXIST);
    wy_jwt_keyset_free(ks);

    /* A bad key file fails the load and names the file. */
    wy_free(write_file(dir, "broken.pem",
                       "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                       "-----END PRIVATE KEY-----\n"));
    ks = wy_jwt_keyset_new();
    assert_int_equal(wy_token_keyset_load_dir(ks, dir, &err), WY_EINVAL);
    assert_non_null(strstr(err, "broken.pem"));
    wy_jwt_keyset_free(ks);
    /* A non-Ed25519 key is refused for access tokens. */
    char *p = wy_sprintf("%s/broken.pem", dir);
    unlink(p);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    FILE *fp = fopen(p, "w");
    assert_int_equal(PEM_write_PrivateKey(fp, ec, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
    EVP_PKEY_free(ec);
    ks = wy_jwt_keyset_new();
    assert_int_equal(wy_token_keyset_load_file(ks, p, NULL, &err), WY_EINVAL);
    assert_int_equal(wy_token_keyset_load_file(ks, "/nonexistent/x.pem", NULL, &err), WY_EIO);
    assert_non_null(strstr(err, "/nonexistent/x.pem"));
    assert_int_equal(wy_token_keyset_load_dir(ks, "/nonexistent", &err), WY_EIO);
    wy_jwt_keyset_free(ks);

    rm_rf(dir);
    wy_free(p), wy_free(pem_a), wy_free(pem_b), wy_free(data), wy_free(link_target),
        wy_free(link_path), wy_free(pub_str);
}

static void test_cache(void **state)
{
    fx_t *f = *state;
    const char *err = NULL;
    wy_token_cache_t *c = wy_token_cache_new();
    assert_null(wy_token_cache_keyset(c));
    assert_int_equal(wy_token_cache_fetched_ms(c), 0);
    assert_int_equal(wy_token_cache_update_jwks(c, "{\"keys\":[]}", &err), WY_EINVAL);
    assert_null(wy_token_cache_keyset(c));

    char *jwks = wy_jwt_keyset_export_jwks(f->ks);
    assert_int_equal(wy_token_cache_update_jwks(c, jwks, &err), WY_OK);
    const wy_jwt_keyset_t *ks = wy_token_cache_keyset(c);
    assert_non_null(ks);
    uint64_t t = wy_token_cache_fetched_ms(c);
    assert_true(t > 0);
    wy_token_claims_t out;
    assert_int_equal(wy_token_verify(ks, f->token, strlen(f->token), &vopts, &out, &err), WY_OK);

    /* Invalid documents keep the previous keys. */
    assert_int_equal(wy_token_cache_update_jwks(c, "not json", &err), WY_EINVAL);
    assert_int_equal(wy_token_cache_update_jwks(c,
                                                "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                                                "\"kid\":\"x\",\"x\":\"AAAA\"}]}",
                                                &err),
                     WY_EINVAL);
    assert_int_equal(
        wy_token_cache_update_jwks(c, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}", &err),
        WY_EINVAL);
    assert_ptr_equal(wy_token_cache_keyset(c), ks);
    assert_int_equal(wy_token_cache_fetched_ms(c), t);
    assert_int_equal(
        wy_token_verify(wy_token_cache_keyset(c), f->token, strlen(f->token), &vopts, &out, &err),
        WY_OK);
    /* An over-long document. */
    char *big = wy_malloc(WY_JWKS_MAX_LEN + 10);
    memset(big, ' ', WY_JWKS_MAX_LEN + 9);
    big[WY_JWKS_MAX_LEN + 9] = '\0';
    assert_int_equal(wy_token_cache_update_jwks(c, big, &err), WY_ETOOBIG);
    wy_free(big);

    /* A new document replaces the keys (k1 retired). */
    assert_int_equal(wy_token_cache_update_jwks(
                         c,
                         "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"other\","
                         "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\",\"use\":\"sig\"}]}",
                         &err),
                     WY_OK);
    expect_reject(wy_token_cache_keyset(c), f->token, WY_EAUTH);
    wy_token_cache_free(c);
    wy_token_cache_free(NULL);
    wy_free(jwks);
}

/* The "roles" claim: issued from bits, read back; absent = none; unknown names ignored;
 * anything but an array of at most 16 strings makes the token malformed. */
static void test_roles_claim(void **state)
{
    fx_t *f = *state;
    const char *err = NULL;
    wy_token_claims_t c;
    char *tok = NULL;
    assert_int_equal(wy_token_issue_roles(f->ks, "k1", ISS, AUD, "acct-9", "sess-9",
                                          WY_TOKEN_ROLE_MODERATOR, 900, NOW, &tok, NULL, &err),
                     WY_OK);
    assert_int_equal(wy_token_verify(f->ks, tok, strlen(tok), &vopts, &c, &err), WY_OK);
    assert_int_equal(c.roles, WY_TOKEN_ROLE_MODERATOR);
    assert_string_equal(c.sub, "acct-9");
    wy_free(tok);
    /* No roles: no claim at all (a player's token is unchanged). */
    assert_int_equal(wy_token_verify(f->ks, f->token, strlen(f->token), &vopts, &c, &err), WY_OK);
    assert_int_equal(c.roles, 0);
    char *p = payload_with("roles", "[\"admin\",\"moderator\",\"Moderator\"]");
    tok = forge_signed(f->k1, HDR_K1, p);
    assert_int_equal(wy_token_verify(f->ks, tok, strlen(tok), &vopts, &c, &err), WY_OK);
    assert_int_equal(c.roles, WY_TOKEN_ROLE_MODERATOR);
    wy_free(tok);
    wy_free(p);
    p = payload_with("roles", "[]");
    tok = forge_signed(f->k1, HDR_K1, p);
    assert_int_equal(wy_token_verify(f->ks, tok, strlen(tok), &vopts, &c, &err), WY_OK);
    assert_int_equal(c.roles, 0);
    wy_free(tok);
    wy_free(p);
    const char *bad[] = {"\"moderator\"",
                         "[1]",
                         "[[\"moderator\"]]",
                         "{}",
                         "null",
                         "[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\","
                         "\"a\",\"a\",\"a\",\"a\",\"a\",\"moderator\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p = payload_with("roles", bad[i]);
        tok = forge_signed(f->k1, HDR_K1, p);
        expect_reject(f->ks, tok, WY_EINVAL);
        wy_free(tok);
        wy_free(p);
    }
    /* A role claim signed by another key is a forgery like any other. */
    char *pem = NULL;
    assert_int_equal(wy_token_generate_ed25519_pem(&pem), WY_OK);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *other = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    wy_free(pem);
    p = payload_with("roles", "[\"moderator\"]");
    tok = forge_signed(other, HDR_K1, p);
    expect_reject(f->ks, tok, WY_EAUTH);
    wy_free(tok);
    wy_free(p);
    EVP_PKEY_free(other);
    /* Names as an operator writes them. */
    unsigned unknown = 9;
    assert_int_equal(wy_token_roles_parse("moderator", &unknown), WY_TOKEN_ROLE_MODERATOR);
    assert_int_equal(unknown, 0);
    assert_int_equal(wy_token_roles_parse(" moderator , god,", &unknown), WY_TOKEN_ROLE_MODERATOR);
    assert_int_equal(unknown, 1);
    assert_int_equal(wy_token_roles_parse("", &unknown), 0);
    assert_int_equal(wy_token_roles_parse(NULL, NULL), 0);
    assert_int_equal(wy_token_role_bit("moderatorx"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_issue_verify_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alg_none_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hs256_with_public_key_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alg_confusion_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_missing_kid_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_iss_aud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_bits_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_base64_and_padding_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_megabyte_token_rejected_by_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_content_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_types_and_lengths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwks_export_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roles_claim, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
