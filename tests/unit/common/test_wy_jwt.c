/* Unit tests for wy_jwt: strict base64url, key sets (PEM, JWKS import/export), ES256 and
 * RS256 verify/sign with keys generated here, alg pinning, claim checks, mutation fuzzing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "wy_jwt.h"

#define NOW 1700000000

static void test_b64url_vectors(void **state)
{
    (void)state;
    /* RFC 4648 §10 vectors, unpadded. */
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < WY_ARRAY_LEN(in); i++) {
        char *e = wy_b64url_encode(in[i], strlen(in[i]));
        assert_string_equal(e, out[i]);
        assert_int_equal(wy_b64url_encoded_len(strlen(in[i])), strlen(out[i]));
        wy_free(e);
        char buf[16];
        size_t n = 99;
        assert_int_equal(wy_b64url_decode(out[i], strlen(out[i]), buf, sizeof buf, &n), WY_OK);
        assert_int_equal(n, strlen(in[i]));
        assert_memory_equal(buf, in[i], n);
    }
    /* The URL alphabet: 0xfb 0xff -> "-_8". */
    const unsigned char u[] = {0xfb, 0xff};
    char *e = wy_b64url_encode(u, 2);
    assert_string_equal(e, "-_8");
    wy_free(e);
    /* Round trip of every length 0..100 over all byte values. */
    unsigned char src[100], back[100];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof src; len++) {
        char *s = wy_b64url_encode(src, len);
        size_t n = 0;
        assert_int_equal(wy_b64url_decode(s, strlen(s), back, sizeof back, &n), WY_OK);
        assert_int_equal(n, len);
        assert_memory_equal(back, src, len);
        wy_free(s);
    }
}

static void test_b64url_strict(void **state)
{
    (void)state;
    char buf[16];
    size_t n;
    const char *bad[] = {"Zg==", "Zg=", "Zm8=", "Z", "Zm9vY", "Zm+v", "Zm/v", "Zm v", "Zm9\n",
                         /* non-canonical trailing bits: "Zh" and "Zm9" -> "Zm-" are not */
                         "Zh", "Zm9", "AB"};
    for (size_t i = 0; i < WY_ARRAY_LEN(bad); i++)
        assert_int_equal(wy_b64url_decode(bad[i], strlen(bad[i]), buf, sizeof buf, &n), WY_EINVAL);
    /* Canonical counterparts decode. */
    assert_int_equal(wy_b64url_decode("Zg", 2, buf, sizeof buf, &n), WY_OK);
    assert_int_equal(wy_b64url_decode("Zm8", 3, buf, sizeof buf, &n), WY_OK);
    assert_int_equal(wy_b64url_decode("AA", 2, buf, sizeof buf, &n), WY_OK);
    /* NUL inside the given length is invalid, not a terminator. */
    assert_int_equal(wy_b64url_decode("Zm\0v", 4, buf, sizeof buf, &n), WY_EINVAL);
    /* Output bound. */
    assert_int_equal(wy_b64url_decode("Zm9vYmFy", 8, buf, 5, &n), WY_ETOOBIG);
    assert_int_equal(wy_b64url_decode("Zm9vYmFy", 8, buf, 6, &n), WY_OK);
}

typedef struct {
    wy_jwt_keyset_t *ks;
    EVP_PKEY *ed, *rsa, *ec;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    const char *err = NULL;
    f->ks = wy_jwt_keyset_new();
    f->ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    f->rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    f->ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(f->ed);
    assert_non_null(f->rsa);
    assert_non_null(f->ec);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "ed", 0, f->ed, &err), WY_OK);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "rsa", WY_JWT_ALG_RS256, f->rsa, &err), WY_OK);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "ec", 0, f->ec, &err), WY_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    wy_jwt_keyset_free(f->ks);
    EVP_PKEY_free(f->ed);
    EVP_PKEY_free(f->rsa);
    EVP_PKEY_free(f->ec);
    free(f);
    return 0;
}

static const wy_jwt_verify_opts_t all_algs = {.allowed_algs = WY_JWT_ALG_EDDSA | WY_JWT_ALG_RS256 |
                                                              WY_JWT_ALG_ES256};

static char *sign(const wy_jwt_keyset_t *ks, const char *kid, const char *claims_json)
{
    json_error_t jerr;
    json_t *c = json_loads(claims_json, 0, &jerr);
    assert_non_null(c);
    char *tok = NULL;
    const char *err = NULL;
    assert_int_equal(wy_jwt_sign(ks, kid, c, &tok, &err), WY_OK);
    json_decref(c);
    return tok;
}

static void expect_verify_fail(const wy_jwt_keyset_t *ks, const char *tok,
                               const wy_jwt_verify_opts_t *o, int want)
{
    wy_jwt_t jwt;
    memset(&jwt, 0xAA, sizeof jwt);
    const char *err = NULL;
    int rc = wy_jwt_verify(ks, tok, strlen(tok), o, &jwt, &err);
    if (want)
        assert_int_equal(rc, want);
    else
        assert_int_not_equal(rc, WY_OK);
    assert_non_null(err);
    assert_null(jwt.claims);
    assert_null(jwt.header);
}

static void test_sign_verify_each_alg(void **state)
{
    fx_t *f = *state;
    const char *kids[] = {"ed", "rsa", "ec"};
    const wy_jwt_alg_t algs[] = {WY_JWT_ALG_EDDSA, WY_JWT_ALG_RS256, WY_JWT_ALG_ES256};
    for (size_t i = 0; i < 3; i++) {
        char *tok = sign(f->ks, kids[i], "{\"sub\":\"x\",\"exp\":1700000900}");
        wy_jwt_t jwt;
        const char *err = NULL;
        assert_int_equal(wy_jwt_verify(f->ks, tok, strlen(tok), &all_algs, &jwt, &err), WY_OK);
        assert_int_equal(jwt.alg, algs[i]);
        assert_string_equal(jwt.kid, kids[i]);
        assert_string_equal(json_string_value(json_object_get(jwt.claims, "sub")), "x");
        assert_string_equal(json_string_value(json_object_get(jwt.header, "alg")),
                            wy_jwt_alg_name(algs[i]));
        assert_string_equal(json_string_value(json_object_get(jwt.header, "typ")), "JWT");
        wy_jwt_clear(&jwt);
        wy_jwt_clear(&jwt);
        /* Only the allowed set verifies. */
        wy_jwt_verify_opts_t only = {.allowed_algs = (unsigned)~algs[i] & 7u};
        expect_verify_fail(f->ks, tok, &only, WY_EAUTH);
        /* Every flipped bit of the signature fails. */
        const char *dot = strrchr(tok, '.');
        unsigned char sig[512];
        size_t n = 0;
        assert_int_equal(wy_b64url_decode(dot + 1, strlen(dot + 1), sig, sizeof sig, &n), WY_OK);
        assert_int_equal(n, algs[i] == WY_JWT_ALG_RS256 ? 256 : 64);
        for (size_t b = 0; b < n; b++) {
            sig[b] ^= 0x80;
            char *s = wy_b64url_encode(sig, n);
            char *bad = wy_sprintf("%.*s.%s", (int)(dot - tok), tok, s);
            expect_verify_fail(f->ks, bad, &all_algs, WY_EAUTH);
            wy_free(s), wy_free(bad);
            sig[b] ^= 0x80;
        }
        /* Signature of the wrong length (one byte short / long). */
        char *s = wy_b64url_encode(sig, n - 1);
        char *bad = wy_sprintf("%.*s.%s", (int)(dot - tok), tok, s);
        expect_verify_fail(f->ks, bad, &all_algs, WY_EAUTH);
        wy_free(s), wy_free(bad);
        sig[n] = 0;
        s = wy_b64url_encode(sig, n + 1);
        bad = wy_sprintf("%.*s.%s", (int)(dot - tok), tok, s);
        expect_verify_fail(f->ks, bad, &all_algs, WY_EAUTH);
        wy_free(s), wy_free(bad);
        wy_free(tok);
    }
}

static void test_alg_pinned_to_key(void **state)
{
    fx_t *f = *state;
    /* A token whose header names another alg than its kid's key never verifies. */
    char *tok = sign(f->ks, "ed", "{\"exp\":1}");
    const char *dot1 = strchr(tok, '.');
    const char *hdrs[] = {
        "{\"alg\":\"RS256\",\"kid\":\"ed\"}",  "{\"alg\":\"ES256\",\"kid\":\"ed\"}",
        "{\"alg\":\"EdDSA\",\"kid\":\"rsa\"}", "{\"alg\":\"ES256\",\"kid\":\"rsa\"}",
        "{\"alg\":\"HS256\",\"kid\":\"ed\"}",  "{\"alg\":\"none\",\"kid\":\"ed\"}",
        "{\"alg\":\"PS256\",\"kid\":\"rsa\"}"};
    for (size_t i = 0; i < WY_ARRAY_LEN(hdrs); i++) {
        char *h = wy_b64url_encode(hdrs[i], strlen(hdrs[i]));
        char *bad = wy_sprintf("%s%s", h, dot1);
        expect_verify_fail(f->ks, bad, &all_algs, WY_EAUTH);
        wy_free(h), wy_free(bad);
    }
    wy_free(tok);
    wy_jwt_t jwt;
    const char *err = NULL;
    /* No allowed alg is a caller error. */
    wy_jwt_verify_opts_t none = {0};
    tok = sign(f->ks, "ed", "{}");
    assert_int_equal(wy_jwt_verify(f->ks, tok, strlen(tok), &none, &jwt, &err), WY_EINVAL);
    /* The configurable cap. */
    wy_jwt_verify_opts_t tiny = {.allowed_algs = WY_JWT_ALG_EDDSA, .max_len = 20};
    assert_int_equal(wy_jwt_verify(f->ks, tok, strlen(tok), &tiny, &jwt, &err), WY_ETOOBIG);
    assert_string_equal(err, "token too long");
    wy_free(tok);
}

static void test_keyset_add_rules(void **state)
{
    fx_t *f = *state;
    const char *err = NULL;
    assert_int_equal(wy_jwt_keyset_count(f->ks), 3);
    /* Duplicate kid, wrong explicit alg, bad kids. */
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "ed", 0, f->ed, &err), WY_EEXIST);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "x", WY_JWT_ALG_ES256, f->ed, &err), WY_EINVAL);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "", 0, f->ed, &err), WY_EINVAL);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "a b", 0, f->ed, &err), WY_EINVAL);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "a\"b", 0, f->ed, &err), WY_EINVAL);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, NULL, 0, f->ed, &err), WY_EINVAL);
    /* RSA under 2048 bits and EC off P-256 are refused. */
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "small", 0, small, &err), WY_EINVAL);
    EVP_PKEY_free(small);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "p384", 0, p384, &err), WY_EINVAL);
    EVP_PKEY_free(p384);
    EVP_PKEY *x25519 = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    assert_int_equal(wy_jwt_keyset_add_pkey(f->ks, "x25519", 0, x25519, &err), WY_EINVAL);
    EVP_PKEY_free(x25519);
    assert_int_equal(wy_jwt_keyset_count(f->ks), 3);
    /* PEM: garbage, encrypted (no prompt), public. */
    assert_int_equal(wy_jwt_keyset_add_pem(f->ks, "g", 0, "hello", 5, &err), WY_EINVAL);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, f->ec, EVP_aes_128_cbc(), (unsigned char *)"pw",
                                              2, NULL, NULL),
                     1);
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    assert_int_equal(wy_jwt_keyset_add_pem(f->ks, "enc", 0, data, (size_t)len, &err), WY_EINVAL);
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, f->rsa), 1);
    len = BIO_get_mem_data(bio, &data);
    assert_int_equal(wy_jwt_keyset_add_pem(f->ks, "rsa-pub", 0, data, (size_t)len, &err), WY_OK);
    BIO_free(bio);
    wy_jwt_alg_t alg = 0;
    bool can_sign = true;
    assert_int_equal(wy_jwt_keyset_lookup(f->ks, "rsa-pub", &alg, &can_sign), WY_OK);
    assert_int_equal(alg, WY_JWT_ALG_RS256);
    assert_false(can_sign);
    assert_int_equal(wy_jwt_keyset_lookup(f->ks, "rsa", &alg, &can_sign), WY_OK);
    assert_true(can_sign);
    assert_int_equal(wy_jwt_keyset_lookup(f->ks, "nope", &alg, &can_sign), WY_ENOTFOUND);
    /* Signing needs a private key. */
    json_t *c = json_object();
    char *tok = NULL;
    assert_int_equal(wy_jwt_sign(f->ks, "rsa-pub", c, &tok, &err), WY_EPERM);
    assert_int_equal(wy_jwt_sign(f->ks, "nope", c, &tok, &err), WY_ENOTFOUND);
    json_t *arr = json_array();
    assert_int_equal(wy_jwt_sign(f->ks, "ed", arr, &tok, &err), WY_EINVAL);
    json_decref(arr);
    json_decref(c);
    assert_null(tok);
    /* The set is bounded. */
    wy_jwt_keyset_t *ks = wy_jwt_keyset_new();
    for (int i = 0; i < WY_JWKS_MAX_KEYS; i++) {
        char kid[16];
        snprintf(kid, sizeof kid, "k%d", i);
        assert_int_equal(wy_jwt_keyset_add_pkey(ks, kid, 0, f->ed, &err), WY_OK);
    }
    assert_int_equal(wy_jwt_keyset_add_pkey(ks, "one-more", 0, f->ed, &err), WY_ELIMIT);
    wy_jwt_keyset_free(ks);
}

static void test_jwks_round_trip_all_algs(void **state)
{
    fx_t *f = *state;
    char *jwks = wy_jwt_keyset_export_jwks(f->ks);
    assert_null(strstr(jwks, "\"d\""));
    assert_null(strstr(jwks, "\"p\""));
    wy_jwt_keyset_t *pub = wy_jwt_keyset_new();
    size_t added = 0, skipped = 0;
    const char *err = NULL;
    assert_int_equal(wy_jwt_keyset_add_jwks(pub, jwks, strlen(jwks), &added, &skipped, &err),
                     WY_OK);
    assert_int_equal(added, 3);
    assert_int_equal(skipped, 0);
    const char *kids[] = {"ed", "rsa", "ec"};
    for (size_t i = 0; i < 3; i++) {
        char *tok = sign(f->ks, kids[i], "{\"n\":1}");
        wy_jwt_t jwt;
        assert_int_equal(wy_jwt_verify(pub, tok, strlen(tok), &all_algs, &jwt, &err), WY_OK);
        wy_jwt_clear(&jwt);
        wy_free(tok);
    }
    /* Re-export of the imported set is identical. */
    char *again = wy_jwt_keyset_export_jwks(pub);
    assert_string_equal(again, jwks);
    /* Importing the same document twice: duplicate kids, set unchanged. */
    assert_int_equal(wy_jwt_keyset_add_jwks(pub, jwks, strlen(jwks), NULL, NULL, &err), WY_EEXIST);
    assert_int_equal(wy_jwt_keyset_count(pub), 3);
    /* The same RSA modulus with e = 1 or an even e is refused (forgeable). */
    json_error_t jerr;
    json_t *doc = json_loads(jwks, 0, &jerr);
    const char *n =
        json_string_value(json_object_get(json_array_get(json_object_get(doc, "keys"), 1), "n"));
    assert_non_null(n);
    const char *exps[] = {"AQ", "Ag", "AQAC"};
    for (size_t i = 0; i < WY_ARRAY_LEN(exps); i++) {
        char *bad =
            wy_sprintf("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"weak\",\"n\":\"%s\",\"e\":\"%s\"}]}",
                       n, exps[i]);
        assert_int_equal(wy_jwt_keyset_add_jwks(pub, bad, strlen(bad), NULL, NULL, &err),
                         WY_EINVAL);
        wy_free(bad);
    }
    char *good = wy_sprintf(
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"same\",\"n\":\"%s\",\"e\":\"AQAB\"}]}", n);
    assert_int_equal(wy_jwt_keyset_add_jwks(pub, good, strlen(good), NULL, NULL, &err), WY_OK);
    wy_free(good);
    json_decref(doc);
    wy_jwt_keyset_free(pub);
    wy_free(again);
    wy_free(jwks);
    char *empty = wy_jwt_keyset_export_jwks(NULL);
    assert_string_equal(empty, "{\"keys\":[]}");
    wy_free(empty);
}

static void test_jwks_mixed_and_malformed(void **state)
{
    (void)state;
    const char *ed_x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"; /* RFC 8037 A.2 */
    char *doc = wy_sprintf(
        "{\"keys\":["
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"a\",\"x\":\"%s\"},"
        "{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"c2VjcmV0\"},"
        "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"kid\":\"x\",\"x\":\"%s\"},"
        "{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"p\",\"x\":\"AA\",\"y\":\"AA\"},"
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"enc\",\"use\":\"enc\",\"x\":\"%s\"},"
        "{\"kty\":\"RSA\",\"kid\":\"r512\",\"alg\":\"RS512\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"b\",\"use\":\"sig\",\"alg\":\"EdDSA\","
        "\"x\":\"%s\"}"
        "]}",
        ed_x, ed_x, ed_x, ed_x);
    wy_jwt_keyset_t *ks = wy_jwt_keyset_new();
    size_t added = 0, skipped = 0;
    const char *err = NULL;
    assert_int_equal(wy_jwt_keyset_add_jwks(ks, doc, strlen(doc), &added, &skipped, &err), WY_OK);
    assert_int_equal(added, 2);
    assert_int_equal(skipped, 5);
    assert_string_equal(wy_jwt_keyset_kid_at(ks, 0), "a");
    assert_string_equal(wy_jwt_keyset_kid_at(ks, 1), "b");
    assert_null(wy_jwt_keyset_kid_at(ks, 2));
    wy_free(doc);

    const char *bad[] = {
        "not json", "[]", "{\"keys\":{}}", "{\"keys\":[1]}",
        "{\"keys\":[{\"crv\":\"Ed25519\",\"kid\":\"z\"}]}",                  /* no kty */
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}", /* no kid */
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"z\"}]}",  /* no x */
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"z\",\"x\":\"AAAA\"}]}",
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"z\",\"x\":7}]}",
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"z\",\"x\":"
        "\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"}]}",                        /* padded */
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"z\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", /* tiny n */
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"z\",\"e\":\"AQAB\"}]}",
        /* EC point not on the curve */
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"z\","
        "\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\","
        "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"z\",\"x\":\"AA\",\"y\":\"AA\"}]}",
        "{\"keys\":[], \"keys\":[]}", /* duplicate member */
    };
    for (size_t i = 0; i < WY_ARRAY_LEN(bad); i++) {
        err = NULL;
        int rc = wy_jwt_keyset_add_jwks(ks, bad[i], strlen(bad[i]), NULL, NULL, &err);
        if (rc != WY_EINVAL)
            fail_msg("case %zu: rc %d", i, rc);
        assert_non_null(err);
        assert_int_equal(wy_jwt_keyset_count(ks), 2);
    }
    /* A good key followed by a bad one: nothing is added. */
    char *mixed =
        wy_sprintf("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"c\",\"x\":\"%s\"},"
                   "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"d\",\"x\":\"AAAA\"}]}",
                   ed_x);
    assert_int_equal(wy_jwt_keyset_add_jwks(ks, mixed, strlen(mixed), NULL, NULL, &err), WY_EINVAL);
    assert_int_equal(wy_jwt_keyset_lookup(ks, "c", NULL, NULL), WY_ENOTFOUND);
    wy_free(mixed);
    char *big = wy_malloc(WY_JWKS_MAX_LEN + 1);
    memset(big, ' ', WY_JWKS_MAX_LEN + 1);
    assert_int_equal(wy_jwt_keyset_add_jwks(ks, big, WY_JWKS_MAX_LEN + 1, NULL, NULL, &err),
                     WY_ETOOBIG);
    wy_free(big);
    wy_jwt_keyset_free(ks);
}

static json_t *claims_of(const char *s)
{
    json_error_t jerr;
    json_t *j = json_loads(s, 0, &jerr);
    assert_non_null(j);
    return j;
}

static void test_check_claims(void **state)
{
    (void)state;
    struct {
        const char *claims;
        int want;
        const char *reason;
    } cases[] = {
        {"{\"exp\":1700000100,\"iss\":\"i\",\"aud\":\"a\"}", WY_OK, NULL},
        {"{\"exp\":1700000100,\"iss\":\"i\",\"aud\":[\"x\",\"a\"]}", WY_OK, NULL},
        {"{\"exp\":1700000100,\"iss\":\"i\",\"aud\":[\"x\",\"y\"]}", WY_EAUTH, "wrong audience"},
        {"{\"exp\":1700000100,\"iss\":\"i\",\"aud\":[\"a\",1]}", WY_EINVAL, NULL},
        {"{\"exp\":1700000100,\"iss\":\"i\",\"aud\":[]}", WY_EAUTH, "wrong audience"},
        {"{\"exp\":1700000100,\"iss\":\"j\",\"aud\":\"a\"}", WY_EAUTH, "wrong issuer"},
        {"{\"exp\":1700000100,\"aud\":\"a\"}", WY_EINVAL, "missing iss"},
        {"{\"exp\":1700000100,\"iss\":\"i\"}", WY_EINVAL, "missing aud"},
        {"{\"iss\":\"i\",\"aud\":\"a\"}", WY_EINVAL, "missing exp"},
        {"{\"exp\":1699999000,\"iss\":\"i\",\"aud\":\"a\"}", WY_EAUTH, "token expired"},
        {"{\"exp\":1700000100,\"nbf\":1700000050,\"iss\":\"i\",\"aud\":\"a\"}", WY_EAUTH,
         "token not yet valid"},
        {"{\"exp\":1700000100,\"iat\":1700000050,\"iss\":\"i\",\"aud\":\"a\"}", WY_EAUTH,
         "token issued in the future"},
        {"{\"exp\":\"1700000100\",\"iss\":\"i\",\"aud\":\"a\"}", WY_EINVAL,
         "exp is not an integer"},
        {"{\"exp\":-9223372036854775807,\"iss\":\"i\",\"aud\":\"a\"}", WY_EAUTH, "token expired"},
    };
    wy_jwt_claims_opts_t o = {.iss = "i", .aud = "a", .now = NOW};
    for (size_t i = 0; i < WY_ARRAY_LEN(cases); i++) {
        json_t *c = claims_of(cases[i].claims);
        const char *err = NULL;
        int rc = wy_jwt_check_claims(c, &o, &err);
        if (rc != cases[i].want)
            fail_msg("case %zu: rc %d (%s)", i, rc, err ? err : "");
        if (cases[i].reason)
            assert_string_equal(err, cases[i].reason);
        json_decref(c);
    }
    /* iat required when asked; leeway bounds. */
    json_t *c = claims_of("{\"exp\":1700000100}");
    wy_jwt_claims_opts_t req = {.now = NOW, .require_iat = true};
    const char *err = NULL;
    assert_int_equal(wy_jwt_check_claims(c, &req, &err), WY_EINVAL);
    assert_string_equal(err, "missing iat");
    wy_jwt_claims_opts_t neg = {.now = NOW, .leeway_s = -5};
    assert_int_equal(wy_jwt_check_claims(c, &neg, &err), WY_EINVAL);
    json_decref(c);
    /* Leeway: 20 s past exp passes by default, not with 10 s or none. */
    c = claims_of("{\"exp\":1699999980}");
    wy_jwt_claims_opts_t lw = {.now = NOW};
    assert_int_equal(wy_jwt_check_claims(c, &lw, &err), WY_OK);
    lw.leeway_s = 10;
    assert_int_equal(wy_jwt_check_claims(c, &lw, &err), WY_EAUTH);
    lw.leeway_s = WY_JWT_LEEWAY_NONE;
    assert_int_equal(wy_jwt_check_claims(c, &lw, &err), WY_EAUTH);
    json_decref(c);
}

/* Deterministic mutation fuzzing: no mutated token verifies, none crashes (run under ASan). */
static void test_mutations_never_verify(void **state)
{
    fx_t *f = *state;
    char *tok = sign(f->ks, "ec", "{\"sub\":\"abc\",\"exp\":1700000900}");
    size_t len = strlen(tok);
    const char alphabet[] = "AZaz09-_.=+/ \x01\xff{}\"";
    uint32_t seed = 12345;
    for (int iter = 0; iter < 3000; iter++) {
        char *m = wy_strdup(tok);
        size_t mlen = len;
        int edits = 1 + iter % 3;
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % mlen;
            seed = seed * 1103515245u + 12345u;
            m[pos] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
        }
        if (strcmp(m, tok) != 0) {
            wy_jwt_t jwt;
            const char *err = NULL;
            assert_int_not_equal(wy_jwt_verify(f->ks, m, mlen, &all_algs, &jwt, &err), WY_OK);
            assert_null(jwt.claims);
        }
        wy_free(m);
    }
    /* Random garbage of many lengths. */
    for (int iter = 0; iter < 2000; iter++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % 600;
        char *g = wy_malloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            g[i] = iter % 2 ? alphabet[(seed >> 8) % (sizeof alphabet - 1)] : (char)(seed >> 16);
        }
        wy_jwt_t jwt;
        const char *err = NULL;
        assert_int_not_equal(wy_jwt_verify(f->ks, g, n, &all_algs, &jwt, &err), WY_OK);
        wy_free(g);
    }
    wy_free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_vectors),
        cmocka_unit_test(test_b64url_strict),
        cmocka_unit_test_setup_teardown(test_sign_verify_each_alg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alg_pinned_to_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyset_add_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwks_round_trip_all_algs, setup, teardown),
        cmocka_unit_test(test_jwks_mixed_and_malformed),
        cmocka_unit_test(test_check_claims),
        cmocka_unit_test_setup_teardown(test_mutations_never_verify, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
