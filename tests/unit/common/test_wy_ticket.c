/* Unit tests for wy_ticket: a signed join ticket verifies on the game instance it names and
 * nowhere else; forged, tampered, expired, malformed, wrong-instance and replayed tickets are
 * refused with their fault; key rotation; the used set's bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wy_ticket.h"
#include "wy_token.h"

#define NOW 1700000000000LL
#define TTL 30000

typedef struct {
    wy_jwt_keyset_t *lobby; /* k1 private: signs */
    wy_jwt_keyset_t *game;  /* k1 public only: verifies */
    wy_ticket_t t;
} fx_t;

static void add_key(wy_jwt_keyset_t *ks, const char *kid, const char *pem)
{
    const char *err = NULL;
    assert_int_equal(wy_jwt_keyset_add_pem(ks, kid, 0, pem, strlen(pem), &err), WY_OK);
}

/* The public half of a private PEM, through a JWKS round trip. */
static void add_public(wy_jwt_keyset_t *dst, const wy_jwt_keyset_t *src)
{
    char *jwks = wy_jwt_keyset_export_jwks(src);
    const char *err = NULL;
    assert_int_equal(wy_jwt_keyset_add_jwks(dst, jwks, strlen(jwks), NULL, NULL, &err), WY_OK);
    wy_free(jwks);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    char *pem = NULL;
    assert_int_equal(wy_token_generate_ed25519_pem(&pem), WY_OK);
    f->lobby = wy_jwt_keyset_new();
    add_key(f->lobby, "k1", pem);
    wy_free(pem);
    f->game = wy_jwt_keyset_new();
    add_public(f->game, f->lobby);
    snprintf(f->t.account, sizeof f->t.account, "acct-1");
    snprintf(f->t.character, sizeof f->t.character, "char-1");
    snprintf(f->t.name, sizeof f->t.name, "Élise");
    snprintf(f->t.zone, sizeof f->t.zone, "meadow");
    snprintf(f->t.instance, sizeof f->t.instance, "meadow#1");
    snprintf(f->t.game, sizeof f->t.game, "game-a");
    snprintf(f->t.incarnation, sizeof f->t.incarnation, "inc-1");
    f->t.x = 40.5;
    f->t.y = 256;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    wy_jwt_keyset_free(f->lobby);
    wy_jwt_keyset_free(f->game);
    free(f);
    return 0;
}

static const wy_ticket_verify_opts_t vo = {
    .game = "game-a", .incarnation = "inc-1", .now_ms = NOW + 1000, .leeway_ms = 500};

static char *sign(fx_t *f, int64_t now)
{
    char *tk = NULL;
    const char *err = NULL;
    assert_int_equal(wy_ticket_sign(f->lobby, "k1", &f->t, TTL, now, &tk, NULL, &err), WY_OK);
    return tk;
}

static wy_ticket_fault_t verify(fx_t *f, const char *tk, const wy_ticket_verify_opts_t *o,
                                int want_rc, wy_ticket_t *out)
{
    wy_ticket_t c;
    wy_ticket_fault_t fault = (wy_ticket_fault_t)-1;
    const char *err = NULL;
    int rc = wy_ticket_verify(f->game, tk, strlen(tk), o, out ? out : &c, &fault, &err);
    assert_int_equal(rc, want_rc);
    if (rc != WY_OK) {
        assert_non_null(err);
        wy_ticket_t zero;
        memset(&zero, 0, sizeof zero);
        assert_memory_equal(out ? out : &c, &zero, sizeof zero);
    }
    return fault;
}

static void test_valid_ticket_carries_its_claims(void **state)
{
    fx_t *f = *state;
    wy_ticket_t signed_c;
    char *tk = NULL;
    const char *err = NULL;
    assert_int_equal(wy_ticket_sign(f->lobby, "k1", &f->t, TTL, NOW, &tk, &signed_c, &err), WY_OK);
    wy_ticket_t c;
    assert_int_equal(verify(f, tk, &vo, WY_OK, &c), WY_TICKET_OK);
    assert_string_equal(c.account, "acct-1");
    assert_string_equal(c.character, "char-1");
    assert_string_equal(c.name, "Élise");
    assert_string_equal(c.zone, "meadow");
    assert_string_equal(c.instance, "meadow#1");
    assert_string_equal(c.game, "game-a");
    assert_string_equal(c.incarnation, "inc-1");
    assert_string_equal(c.kid, "k1");
    assert_true(c.x == 40.5 && c.y == 256);
    assert_int_equal(c.iat_ms, NOW);
    assert_int_equal(c.exp_ms, NOW + TTL);
    assert_int_equal(strlen(c.jti), WY_TICKET_JTI_LEN);
    assert_string_equal(c.jti, signed_c.jti);
    wy_free(tk);
}

static void test_expired_and_future_tickets_are_refused(void **state)
{
    fx_t *f = *state;
    char *tk = sign(f, NOW);
    wy_ticket_verify_opts_t o = vo;
    o.now_ms = NOW + TTL + 500; /* exp + leeway */
    assert_int_equal(verify(f, tk, &o, WY_EAUTH, NULL), WY_TICKET_EXPIRED);
    o.now_ms = NOW + TTL + 499;
    assert_int_equal(verify(f, tk, &o, WY_OK, NULL), WY_TICKET_OK);
    o.now_ms = NOW - 501; /* issued in the future beyond the leeway */
    assert_int_equal(verify(f, tk, &o, WY_EAUTH, NULL), WY_TICKET_EXPIRED);
    wy_free(tk);
}

static void test_wrong_instance_and_incarnation_are_refused(void **state)
{
    fx_t *f = *state;
    char *tk = sign(f, NOW);
    wy_ticket_verify_opts_t o = vo;
    o.game = "game-b";
    assert_int_equal(verify(f, tk, &o, WY_EPERM, NULL), WY_TICKET_WRONG_INSTANCE);
    o.game = "game-a";
    o.incarnation = "inc-2"; /* game-a restarted */
    assert_int_equal(verify(f, tk, &o, WY_EPERM, NULL), WY_TICKET_WRONG_INSTANCE);
    wy_free(tk);
}

/* Flips one character of the payload (a claim changed: the character, say) and one of the
 * signature: both are refused as forged. */
static void test_tampered_tickets_are_refused(void **state)
{
    fx_t *f = *state;
    char *tk = sign(f, NOW);
    char *dot1 = strchr(tk, '.'), *dot2 = strrchr(tk, '.');
    for (char *p = dot1 + 5; p < dot2; p += 7) {
        char *bad = wy_strdup(tk);
        bad[p - tk] = bad[p - tk] == 'A' ? 'B' : 'A';
        wy_ticket_fault_t ft = verify(f, bad, &vo, WY_EAUTH, NULL);
        assert_int_equal(ft, WY_TICKET_FORGED);
        wy_free(bad);
    }
    char *bad = wy_strdup(tk);
    size_t n = strlen(bad);
    bad[n - 3] = bad[n - 3] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(f, bad, &vo, WY_EAUTH, NULL), WY_TICKET_FORGED);
    /* A payload of another ticket under this signature. */
    f->t.character[5] = '2';
    char *other = sign(f, NOW);
    char *spliced =
        wy_sprintf("%.*s%s", (int)(strrchr(other, '.') - other), other, strrchr(tk, '.'));
    assert_int_equal(verify(f, spliced, &vo, WY_EAUTH, NULL), WY_TICKET_FORGED);
    wy_free(spliced);
    wy_free(other);
    wy_free(bad);
    wy_free(tk);
}

/* Signed by a key the game does not trust (same kid), or by an unknown kid. */
static void test_forged_tickets_are_refused(void **state)
{
    fx_t *f = *state;
    char *pem = NULL;
    assert_int_equal(wy_token_generate_ed25519_pem(&pem), WY_OK);
    wy_jwt_keyset_t *mallory = wy_jwt_keyset_new();
    add_key(mallory, "k1", pem);
    add_key(mallory, "k9", pem);
    wy_free(pem);
    const char *err = NULL;
    char *tk = NULL;
    assert_int_equal(wy_ticket_sign(mallory, "k1", &f->t, TTL, NOW, &tk, NULL, &err), WY_OK);
    assert_int_equal(verify(f, tk, &vo, WY_EAUTH, NULL), WY_TICKET_FORGED);
    wy_free(tk);
    assert_int_equal(wy_ticket_sign(mallory, "k9", &f->t, TTL, NOW, &tk, NULL, &err), WY_OK);
    assert_int_equal(verify(f, tk, &vo, WY_EAUTH, NULL), WY_TICKET_FORGED);
    wy_free(tk);
    wy_jwt_keyset_free(mallory);
    /* The game's public keys cannot sign. */
    assert_int_equal(wy_ticket_sign(f->game, "k1", &f->t, TTL, NOW, &tk, NULL, &err), WY_EPERM);
    assert_null(tk);
}

static void test_malformed_tickets_are_refused(void **state)
{
    fx_t *f = *state;
    static const char *bad[] = {"", "a", "a.b", "a.b.c", "....", "eyJhbGciOiJub25lIn0.e30."};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        wy_ticket_t c;
        wy_ticket_fault_t ft = WY_TICKET_OK;
        const char *err = NULL;
        assert_int_not_equal(wy_ticket_verify(f->game, bad[i], strlen(bad[i]), &vo, &c, &ft, &err),
                             WY_OK);
        assert_true(ft == WY_TICKET_MALFORMED || ft == WY_TICKET_FORGED);
        assert_non_null(err);
    }
    char *huge = calloc(1, WY_TICKET_MAX_LEN + 2);
    memset(huge, 'a', WY_TICKET_MAX_LEN + 1);
    assert_int_equal(verify(f, huge, &vo, WY_EINVAL, NULL), WY_TICKET_MALFORMED);
    free(huge);
    /* An access token signed by a trusted key is not a ticket. */
    char *at = NULL;
    const char *err = NULL;
    assert_int_equal(wy_token_issue(f->lobby, "k1", "wy-auth", "wyvern", "acct-1", "s1", 900, 0,
                                    &at, NULL, &err),
                     WY_OK);
    wy_jwt_keyset_t *ks = f->game;
    f->game = f->lobby; /* verify with the private set: the signature is good */
    assert_int_equal(verify(f, at, &vo, WY_EINVAL, NULL), WY_TICKET_MALFORMED);
    f->game = ks;
    wy_free(at);
}

static void test_sign_refuses_bad_fields(void **state)
{
    fx_t *f = *state;
    char *tk = NULL;
    const char *err = NULL;
    wy_ticket_t t = f->t;
    t.account[0] = '\0';
    assert_int_equal(wy_ticket_sign(f->lobby, "k1", &t, TTL, NOW, &tk, NULL, &err), WY_EINVAL);
    t = f->t;
    t.x = 1e300;
    assert_int_equal(wy_ticket_sign(f->lobby, "k1", &t, TTL, NOW, &tk, NULL, &err), WY_EINVAL);
    assert_int_equal(wy_ticket_sign(f->lobby, "k1", &f->t, 0, NOW, &tk, NULL, &err), WY_EINVAL);
    assert_int_equal(
        wy_ticket_sign(f->lobby, "k1", &f->t, WY_TICKET_TTL_MAX_MS + 1, NOW, &tk, NULL, &err),
        WY_EINVAL);
    assert_int_equal(wy_ticket_sign(f->lobby, "k7", &f->t, TTL, NOW, &tk, NULL, &err),
                     WY_ENOTFOUND);
    assert_null(tk);
}

/* The character's name: optional (a ticket of an older lobby has none and verifies with ""),
 * at most WY_TICKET_NAME_MAX bytes, a string. */
static void test_name_claim_is_optional_and_bounded(void **state)
{
    fx_t *f = *state;
    wy_ticket_t c;
    const char *err = NULL;
    char *tk = NULL;
    json_t *cl = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:f, s:f, s:s, s:I, s:I}",
                           "iss", WY_TICKET_ISS, "aud", WY_TICKET_AUD, "sub", "acct-1", "chr",
                           "char-1", "zone", "meadow", "zin", "meadow#1", "gid", "game-a", "ginc",
                           "inc-1", "x", 1.0, "y", 2.0, "jti", "AAAAAAAAAAAAAAAAAAAAAA", "iat_ms",
                           (json_int_t)NOW, "exp_ms", (json_int_t)(NOW + TTL));
    assert_int_equal(wy_jwt_sign(f->lobby, "k1", cl, &tk, &err), WY_OK);
    assert_int_equal(verify(f, tk, &vo, WY_OK, &c), WY_TICKET_OK);
    assert_string_equal(c.name, "");
    assert_string_equal(c.character, "char-1");
    wy_free(tk);
    json_object_set_new(cl, "name", json_integer(7)); /* not a string */
    assert_int_equal(wy_jwt_sign(f->lobby, "k1", cl, &tk, &err), WY_OK);
    assert_int_equal(verify(f, tk, &vo, WY_EINVAL, NULL), WY_TICKET_MALFORMED);
    wy_free(tk);
    char longname[WY_TICKET_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    json_object_set_new(cl, "name", json_string(longname)); /* one byte too many */
    assert_int_equal(wy_jwt_sign(f->lobby, "k1", cl, &tk, &err), WY_OK);
    assert_int_equal(verify(f, tk, &vo, WY_EINVAL, NULL), WY_TICKET_MALFORMED);
    wy_free(tk);
    json_decref(cl);
    /* Sign: an empty name is fine, an over-long one refused. */
    wy_ticket_t t = f->t;
    t.name[0] = '\0';
    assert_int_equal(wy_ticket_sign(f->lobby, "k1", &t, TTL, NOW, &tk, NULL, &err), WY_OK);
    assert_int_equal(verify(f, tk, &vo, WY_OK, &c), WY_TICKET_OK);
    assert_string_equal(c.name, "");
    wy_free(tk);
    tk = NULL;
    memset(t.name, 'n', sizeof t.name); /* no terminator within WY_TICKET_NAME_MAX + 1 */
    assert_int_equal(wy_ticket_sign(f->lobby, "k1", &t, TTL, NOW, &tk, NULL, &err), WY_EINVAL);
    assert_null(tk);
}

/* Rotation: the game trusts k1 and k2; lobby switches from k1 to k2; both verify. */
static void test_rotation_keeps_old_tickets_valid(void **state)
{
    fx_t *f = *state;
    char *old = sign(f, NOW);
    char *pem = NULL;
    assert_int_equal(wy_token_generate_ed25519_pem(&pem), WY_OK);
    add_key(f->lobby, "k2", pem);
    wy_free(pem);
    wy_jwt_keyset_free(f->game);
    f->game = wy_jwt_keyset_new();
    add_public(f->game, f->lobby);
    char *tk = NULL;
    const char *err = NULL;
    assert_int_equal(wy_ticket_sign(f->lobby, "k2", &f->t, TTL, NOW, &tk, NULL, &err), WY_OK);
    wy_ticket_t c;
    assert_int_equal(verify(f, tk, &vo, WY_OK, &c), WY_TICKET_OK);
    assert_string_equal(c.kid, "k2");
    assert_int_equal(verify(f, old, &vo, WY_OK, &c), WY_TICKET_OK);
    assert_string_equal(c.kid, "k1");
    /* k1 removed from the game: its tickets stop verifying. */
    assert_int_equal(wy_jwt_keyset_remove(f->game, "k1"), WY_OK);
    assert_int_equal(verify(f, old, &vo, WY_EAUTH, NULL), WY_TICKET_FORGED);
    wy_free(old);
    wy_free(tk);
}

static void test_used_set_refuses_replays_until_expiry(void **state)
{
    fx_t *f = *state;
    wy_ticket_used_t *u = wy_ticket_used_new(4, 500);
    char *tk = sign(f, NOW);
    wy_ticket_t c;
    verify(f, tk, &vo, WY_OK, &c);
    wy_ticket_fault_t ft;
    assert_int_equal(wy_ticket_used_claim(u, &c, NOW + 1000, &ft), WY_OK);
    assert_int_equal(ft, WY_TICKET_OK);
    assert_int_equal(wy_ticket_used_claim(u, &c, NOW + 2000, &ft), WY_EEXIST);
    assert_int_equal(ft, WY_TICKET_REPLAYED);
    /* Still remembered up to exp + leeway, the last moment verify accepts it. */
    assert_int_equal(wy_ticket_used_claim(u, &c, NOW + TTL + 499, &ft), WY_EEXIST);
    assert_int_equal(wy_ticket_used_count(u), 1);
    /* Four live tickets fill the set: the fifth is refused, none forgotten. */
    wy_ticket_t more[4];
    for (int i = 0; i < 4; i++) {
        char *t2 = sign(f, NOW + 1000);
        verify(f, t2, &vo, WY_OK, &more[i]);
        wy_free(t2);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(wy_ticket_used_claim(u, &more[i], NOW + 1000, NULL), WY_OK);
    assert_int_equal(wy_ticket_used_claim(u, &more[3], NOW + 1000, &ft), WY_ELIMIT);
    assert_int_equal(ft, WY_TICKET_BUSY);
    assert_int_equal(wy_ticket_used_claim(u, &c, NOW + 1000, &ft), WY_EEXIST);
    /* Once the first ticket's time is over, its slot is free again. */
    assert_int_equal(wy_ticket_used_claim(u, &more[3], NOW + TTL + 500, &ft), WY_OK);
    assert_int_equal(wy_ticket_used_count(u), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(wy_ticket_used_claim(u, &more[i], NOW + TTL + 600, NULL), WY_EEXIST);
    /* All expired: the set empties as new tickets come. */
    assert_int_equal(wy_ticket_used_claim(u, &c, NOW + 10 * TTL, NULL), WY_OK);
    assert_int_equal(wy_ticket_used_count(u), 1);
    wy_ticket_used_free(u);
    wy_free(tk);
}

/* Many tickets with shuffled expiries leave the set in expiry order (the heap). */
static void test_used_set_expires_in_order(void **state)
{
    (void)state;
    enum { N = 200 };
    wy_ticket_used_t *u = wy_ticket_used_new(N, 0);
    wy_ticket_t t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < N; i++) {
        snprintf(t.jti, sizeof t.jti, "j%d", i);
        t.exp_ms = 1000 + (i * 7919) % N; /* a permutation of 1000..1199 */
        assert_int_equal(wy_ticket_used_claim(u, &t, 1, NULL), WY_OK);
    }
    for (int k = 0; k < N; k += 10) {
        snprintf(t.jti, sizeof t.jti, "new%d", k);
        t.exp_ms = 5000;
        assert_int_equal(wy_ticket_used_claim(u, &t, 1000 + k + 1, NULL), WY_OK);
        /* ids with exp <= now (1000 + k + 1) are gone, the others stay */
        assert_int_equal(wy_ticket_used_count(u), (size_t)(N - (k + 2) + k / 10 + 1));
    }
    wy_ticket_used_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_ticket_carries_its_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_and_future_tickets_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wrong_instance_and_incarnation_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tampered_tickets_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_tickets_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_tickets_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_refuses_bad_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_claim_is_optional_and_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_keeps_old_tickets_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_used_set_refuses_replays_until_expiry, setup,
                                        teardown),
        cmocka_unit_test(test_used_set_expires_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
