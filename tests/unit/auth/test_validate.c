/* Unit tests for wy-auth's input rules (services/auth/validate.c): usernames,
 * passwords, external ids, refresh tokens, UUIDs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/auth/validate.c"

static int username(const char *in, const char *want_key, const char *want_display)
{
    char *key = NULL, *display = NULL;
    const char *why = NULL;
    int rc = auth_validate_username(in, &key, &display, &why);
    if (rc == WY_OK) {
        if (want_key)
            assert_string_equal(key, want_key);
        if (want_display)
            assert_string_equal(display, want_display);
    } else {
        assert_null(key);
        assert_null(display);
        assert_non_null(why);
        assert_non_null(strstr(why, "username"));
    }
    wy_free(key);
    wy_free(display);
    return rc;
}

static void test_usernames(void **state)
{
    (void)state;
    assert_int_equal(username("Player_1", "player_1", "Player_1"), WY_OK);
    assert_int_equal(username("\xef\xbc\xb0layer", "player", "\xef\xbc\xb0layer"), WY_OK);
    assert_int_equal(username("\xef\xac\x81le", "file", NULL), WY_OK);
    assert_int_equal(username("Jose\xcc\x81", "jos\xc3\xa9", "Jos\xc3\xa9"), WY_OK);
    assert_int_equal(username("\xed\x95\x9c\xea\xb8\x80\xec\x9d\xb4", NULL, NULL), WY_OK);
    assert_int_equal(username("ab", NULL, NULL), WY_EINVAL);
    assert_int_equal(username("abcdefghijklmnopqrstuvwxy", NULL, NULL), WY_EINVAL); /* 25 */
    assert_int_equal(username("abcdefghijklmnopqrstuvwx", NULL, NULL), WY_OK);      /* 24 */
    assert_int_equal(username("with space", NULL, NULL), WY_EINVAL);
    assert_int_equal(username(".dot", NULL, NULL), WY_EINVAL);
    assert_int_equal(username("p\xd0\xb0ypal", NULL, NULL), WY_EINVAL);
    assert_int_equal(username("bad\xff", NULL, NULL), WY_EINVAL);
    assert_int_equal(username("emoji\xf0\x9f\x98\x80", NULL, NULL), WY_EINVAL);
    char huge[512];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    assert_int_equal(username(huge, NULL, NULL), WY_EINVAL);
}

static int password(const char *pw, const char *user_key)
{
    char *norm = NULL;
    const char *why = NULL;
    int rc = auth_validate_password(pw, user_key, &norm, &why);
    if (rc != WY_OK) {
        assert_null(norm);
        assert_non_null(strstr(why, "password"));
    }
    wy_free(norm);
    return rc;
}

static void test_passwords(void **state)
{
    (void)state;
    assert_int_equal(password("correct horse", NULL), WY_OK);
    assert_int_equal(password("p\xc3\xa4ssw\xc3\xb6rd!", NULL), WY_OK);
    assert_int_equal(password("short", NULL), WY_EINVAL);
    assert_int_equal(password("aaaaaaaaaa", NULL), WY_EINVAL);
    assert_int_equal(password("PlayerOne", "playerone"), WY_EINVAL);
    assert_int_equal(password("tab\tinside!", NULL), WY_EINVAL);
    assert_int_equal(password("bad utf8 \xc3", NULL), WY_EINVAL);
    char longpw[200];
    memset(longpw, 'x', sizeof longpw - 1);
    longpw[sizeof longpw - 1] = 0;
    longpw[0] = 'y';
    assert_int_equal(password(longpw, NULL), WY_EINVAL);
    /* Fullwidth and ASCII spellings hash the same. */
    char *a = NULL, *b = NULL;
    assert_int_equal(auth_password_normalize("\xef\xbd\x90\xef\xbd\x97", &a), WY_OK);
    assert_int_equal(auth_password_normalize("pw", &b), WY_OK);
    assert_string_equal(a, b);
    wy_free(a);
    wy_free(b);
}

static void test_ids_tokens_uuids(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(auth_validate_external_id("device-1234:ab_C.d", &why), WY_OK);
    assert_int_equal(auth_validate_external_id("short", &why), WY_EINVAL);
    assert_int_equal(auth_validate_external_id("has space in it", &why), WY_EINVAL);
    assert_int_equal(auth_validate_external_id("quote\"injection", &why), WY_EINVAL);
    assert_true(auth_refresh_token_well_formed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123_-Q"));
    assert_false(auth_refresh_token_well_formed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123_-"));
    assert_false(auth_refresh_token_well_formed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123_+Q"));
    assert_true(auth_uuid_well_formed("0b9f3a52-1c2d-4e5f-8a9b-0c1d2e3f4a5b"));
    assert_false(auth_uuid_well_formed("0b9f3a52-1c2d-4e5f-8a9b-0c1d2e3f4a5"));
    assert_false(auth_uuid_well_formed("0b9f3a52x1c2d-4e5f-8a9b-0c1d2e3f4a5b"));
    assert_false(auth_uuid_well_formed("'; DROP TABLE x; --------------------"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usernames),
        cmocka_unit_test(test_passwords),
        cmocka_unit_test(test_ids_tokens_uuids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
