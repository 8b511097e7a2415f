/* Unit tests of the pure parts of libs/client: credentials file parse/format/load/save and the
 * reconnect backoff. (Unit tests link libwycommon only, so the file under test is included.) */
#include "../../../libs/client/wyc_util.c"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>

/* ------------------------------------------------------------------ credentials */

static void test_creds_roundtrip(void **state)
{
    (void)state;
    wyc_creds_t c, back;
    memset(&c, 0, sizeof c);
    snprintf(c.auth_url, sizeof c.auth_url, "http://127.0.0.1:8080");
    snprintf(c.lobby_url, sizeof c.lobby_url, "ws://127.0.0.1:8081/v1/lobby");
    snprintf(c.username, sizeof c.username, "Ærwyn");
    snprintf(c.session.account_id, sizeof c.session.account_id, "a-1");
    snprintf(c.session.session_id, sizeof c.session.session_id, "s-1");
    snprintf(c.session.refresh_token, sizeof c.session.refresh_token, "rt=with=equals");
    snprintf(c.session.access_token, sizeof c.session.access_token, "eyJ.x.y");
    c.session.access_expires_at_ms = 1700000000123LL;
    char *text = wyc_creds_format(&c);
    const char *err = NULL;
    assert_int_equal(wyc_creds_parse(text, strlen(text), &back, &err), WY_OK);
    wy_free(text);
    assert_string_equal(back.auth_url, c.auth_url);
    assert_string_equal(back.lobby_url, c.lobby_url);
    assert_string_equal(back.username, "Ærwyn");
    assert_string_equal(back.session.refresh_token, "rt=with=equals");
    assert_string_equal(back.session.access_token, "eyJ.x.y");
    assert_int_equal(back.session.access_expires_at_ms, 1700000000123LL);
}

static void test_creds_parse_tolerant(void **state)
{
    (void)state;
    const char *t = "# comment\r\n\n  refresh_token=abc\r\nfuture_key=ignored\nusername = bob\n";
    wyc_creds_t c;
    const char *err = NULL;
    assert_int_equal(wyc_creds_parse(t, strlen(t), &c, &err), WY_OK);
    assert_string_equal(c.session.refresh_token, "abc");
    assert_string_equal(c.username, " bob"); /* values are kept verbatim after '=' */
    assert_string_equal(c.session.account_id, "");
}

static void test_creds_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        const char *msg;
    } CASES[] = {
        {"refresh_token=x\nno equals here\n", WY_EINVAL, "line 2: missing '='"},
        {"access_expires_at_ms=12x\n", WY_EINVAL, "line 1: access_expires_at_ms: want a number"},
        {"access_expires_at_ms=\n", WY_EINVAL, "want a number"},
        {"access_expires_at_ms=-5\n", WY_EINVAL, "want a number"},
    };
    for (size_t i = 0; i < WY_ARRAY_LEN(CASES); i++) {
        wyc_creds_t c;
        const char *err = NULL;
        assert_int_equal(wyc_creds_parse(CASES[i].text, strlen(CASES[i].text), &c, &err),
                         CASES[i].rc);
        assert_non_null(err);
        assert_non_null(strstr(err, CASES[i].msg));
    }
    /* over-long value, embedded NUL, oversized file */
    char big[600];
    memset(big, 'a', sizeof big);
    memcpy(big, "auth_url=", 9);
    big[sizeof big - 1] = 0;
    wyc_creds_t c;
    const char *err = NULL;
    assert_int_equal(wyc_creds_parse(big, strlen(big), &c, &err), WY_EINVAL);
    assert_non_null(strstr(err, "too long"));
    const char nul[] = "username=a\0b\n";
    assert_int_equal(wyc_creds_parse(nul, sizeof nul - 1, &c, &err), WY_EINVAL);
    char *huge = wy_calloc(1, WYC_CREDS_MAX_BYTES + 2);
    memset(huge, '#', WYC_CREDS_MAX_BYTES + 1);
    assert_int_equal(wyc_creds_parse(huge, WYC_CREDS_MAX_BYTES + 1, &c, &err), WY_ETOOBIG);
    wy_free(huge);
}

static void test_creds_format_no_injection(void **state)
{
    (void)state;
    wyc_creds_t c, back;
    memset(&c, 0, sizeof c);
    snprintf(c.username, sizeof c.username, "eve\nrefresh_token=stolen");
    snprintf(c.session.refresh_token, sizeof c.session.refresh_token, "real");
    char *text = wyc_creds_format(&c);
    const char *err = NULL;
    assert_int_equal(wyc_creds_parse(text, strlen(text), &back, &err), WY_OK);
    wy_free(text);
    assert_string_equal(back.username, "eve");
    assert_string_equal(back.session.refresh_token, "real");
}

static void test_creds_save_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/wyc-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/sub/deeper/p.cred", dir);
    wyc_creds_t c, back;
    memset(&c, 0, sizeof c);
    snprintf(c.session.refresh_token, sizeof c.session.refresh_token, "tok1");
    const char *err = NULL;
    assert_int_equal(wyc_creds_save(path, &c, &err), WY_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(wyc_creds_load(path, &back, &err), WY_OK);
    assert_string_equal(back.session.refresh_token, "tok1");
    /* overwrite is atomic and keeps 0600 */
    snprintf(c.session.refresh_token, sizeof c.session.refresh_token, "tok2");
    assert_int_equal(wyc_creds_save(path, &c, &err), WY_OK);
    assert_int_equal(wyc_creds_load(path, &back, &err), WY_OK);
    assert_string_equal(back.session.refresh_token, "tok2");
    /* a file others can read is refused with the fix in the message */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(wyc_creds_load(path, &back, &err), WY_EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    /* missing file */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.cred", dir);
    assert_int_equal(wyc_creds_load(missing, &back, &err), WY_ENOTFOUND);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------------ backoff */

static void test_backoff_grows_and_caps(void **state)
{
    (void)state;
    wyc_backoff_t b;
    wyc_backoff_init(&b, 100, 1000);
    /* with rnd = 0 the delay is the lower half, with rnd = max the ceiling */
    uint32_t lo[6], hi[6];
    for (int i = 0; i < 6; i++)
        lo[i] = wyc_backoff_next(&b, 0);
    wyc_backoff_reset(&b);
    for (int i = 0; i < 6; i++)
        hi[i] = wyc_backoff_next(&b, UINT32_MAX - 1);
    static const uint32_t CEIL[] = {100, 200, 400, 800, 1000, 1000};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(lo[i], CEIL[i] - CEIL[i] / 2);
        assert_true(hi[i] <= CEIL[i]);
        assert_true(hi[i] >= CEIL[i] - CEIL[i] / 2);
    }
    assert_int_equal(b.attempt, 6);
    wyc_backoff_reset(&b);
    assert_int_equal(wyc_backoff_next(&b, 0), 50);
}

static void test_backoff_jitter_spread(void **state)
{
    (void)state;
    wyc_backoff_t b;
    bool seen_different = false;
    uint32_t first = 0;
    for (uint32_t r = 0; r < 50; r++) {
        wyc_backoff_init(&b, 1000, 30000);
        uint32_t d = wyc_backoff_next(&b, r * 7919u);
        assert_true(d >= 500 && d <= 1000);
        if (r == 0)
            first = d;
        else if (d != first)
            seen_different = true;
    }
    assert_true(seen_different);
}

static void test_backoff_huge_attempts(void **state)
{
    (void)state;
    wyc_backoff_t b;
    wyc_backoff_init(&b, 0, 0); /* zero base/max are clamped, never a zero-delay spin */
    assert_true(wyc_backoff_next(&b, 0) >= 1);
    wyc_backoff_init(&b, 250, 30000);
    b.attempt = UINT32_MAX;
    uint32_t d = wyc_backoff_next(&b, 12345);
    assert_true(d >= 15000 && d <= 30000);
    assert_int_equal(b.attempt, UINT32_MAX);
}

/* ------------------------------------------------------------------ names, config */

static void test_names(void **state)
{
    (void)state;
    for (int m = WYC_LOGIN_PASSWORD; m <= WYC_LOGIN_OIDC; m++)
        assert_int_equal(wyc_method_parse(wyc_method_name((wyc_method_t)m)), m);
    assert_null(wyc_method_name((wyc_method_t)0));
    assert_null(wyc_method_name((wyc_method_t)99));
    assert_int_equal(wyc_method_parse("facebook"), 0);
    assert_int_equal(wyc_method_parse(NULL), 0);
    assert_string_equal(wyc_presence_name(WYC_IN_GAME), "in-game");
    assert_string_equal(wyc_source_name(WYC_SRC_NETWORK), "network");
}

static void test_config_env(void **state)
{
    (void)state;
    wyc_config_t cfg;
    setenv("WY_SERVER", "game.example", 1);
    unsetenv("WY_AUTH_URL");
    setenv("WY_LOBBY_URL", "ws://10.0.0.1:9999/v1/lobby", 1);
    wyc_config_from_env(&cfg);
    assert_string_equal(cfg.auth_url, "http://game.example:8080");
    assert_string_equal(cfg.lobby_url, "ws://10.0.0.1:9999/v1/lobby");
    assert_true(cfg.auto_refresh && cfg.auto_reconnect);
    unsetenv("WY_SERVER");
    unsetenv("WY_LOBBY_URL");
    wyc_config_from_env(&cfg);
    assert_string_equal(cfg.auth_url, "http://127.0.0.1:8080");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creds_roundtrip),
        cmocka_unit_test(test_creds_parse_tolerant),
        cmocka_unit_test(test_creds_parse_errors),
        cmocka_unit_test(test_creds_format_no_injection),
        cmocka_unit_test(test_creds_save_load),
        cmocka_unit_test(test_backoff_grows_and_caps),
        cmocka_unit_test(test_backoff_jitter_spread),
        cmocka_unit_test(test_backoff_huge_attempts),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_config_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
