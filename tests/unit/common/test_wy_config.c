/* Unit tests for wy_config: parsing of every type, error messages, help text
 * and JSON, effective configuration, and ownership of stored strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "wy_test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wy_config.h"

#define GiB ((int64_t)1 << 30)

static const char *err;

static int teardown(void **state)
{
    (void)state;
    /* Frees the last error message; no table strings are involved. */
    wy_config_free(NULL, 0);
    err = NULL;
    return 0;
}

/* Parses `text` into a fresh int64 and returns the rc; *out gets the value. */
static int parse_i64(wy_cfg_entry_t e, const char *text, int64_t *out)
{
    int64_t v = -777;
    e.dst = &v;
    err = NULL;
    int rc = wy_config_parse_value(&e, text, &err);
    *out = v;
    return rc;
}

static void expect_i64(wy_cfg_entry_t e, const char *text, int64_t want)
{
    int64_t v;
    int rc = parse_i64(e, text, &v);
    if (rc != WY_OK)
        fail_msg("\"%s\" rejected: %s", text, err);
    assert_int_equal(v, want);
}

static void expect_reject(wy_cfg_entry_t e, const char *text)
{
    int64_t v;
    int rc = parse_i64(e, text, &v);
    if (rc != WY_EINVAL)
        fail_msg("\"%s\" accepted as %lld", text, (long long)v);
    assert_int_equal(v, -777); /* destination untouched on error */
    assert_non_null(err);
    assert_non_null(strstr(err, e.name));
}

/* expect_reject on each text of a NULL-terminated list. */
static void expect_rejects(wy_cfg_entry_t e, const char *const *texts)
{
    for (; *texts; texts++)
        expect_reject(e, *texts);
}

typedef struct {
    const char *text;
    int64_t want;
} i64_case_t;

/* expect_i64 on each case of a list ended by {NULL, 0}. */
static void expect_i64s(wy_cfg_entry_t e, const i64_case_t *cases)
{
    for (; cases->text; cases++)
        expect_i64(e, cases->text, cases->want);
}

static void test_int(void **state)
{
    (void)state;
    wy_cfg_entry_t port = {
        .name = "WY_LOBBY_WS_PORT", .type = WY_CFG_INT, .def = "7000", .min = 1, .max = 65535};
    expect_i64s(port, (const i64_case_t[]){
                          {"1", 1}, {"65535", 65535}, {"+80", 80}, {" 443\n", 443}, {NULL, 0}});
    expect_rejects(port, (const char *const[]){"0", "65536", "-1", "", " ", "80x", "8 0", "0x50",
                                               "1e3", "+", "99999999999999999999", NULL});

    int64_t v;
    assert_int_equal(parse_i64(port, "abc", &v), WY_EINVAL);
    assert_string_equal(err,
                        "WY_LOBBY_WS_PORT: must be an integer between 1 and 65535 (got \"abc\")");

    wy_cfg_entry_t any = {.name = "WY_ANY", .type = WY_CFG_INT, .def = "0"};
    expect_i64s(any, (const i64_case_t[]){{"9223372036854775807", INT64_MAX},
                                          {"-9223372036854775808", INT64_MIN},
                                          {"-5", -5},
                                          {NULL, 0}});
    expect_rejects(
        any, (const char *const[]){"9223372036854775808", "-9223372036854775809", "--5", NULL});
    assert_int_equal(parse_i64(any, "x", &v), WY_EINVAL);
    assert_string_equal(err, "WY_ANY: must be an integer (got \"x\")");

    wy_cfg_entry_t neg = {.name = "WY_NEG", .type = WY_CFG_INT, .def = "0", .min = -10, .max = -1};
    expect_i64(neg, "-10", -10);
    expect_i64(neg, "-1", -1);
    expect_reject(neg, "0");
    expect_reject(neg, "-11");
}

static void expect_bool(const char *text, bool want)
{
    bool v = !want;
    wy_cfg_entry_t e = {.name = "WY_FLAG", .type = WY_CFG_BOOL, .def = "false", .dst = &v};
    if (wy_config_parse_value(&e, text, &err) != WY_OK)
        fail_msg("\"%s\" rejected: %s", text, err);
    assert_int_equal(v, want);
}

static void test_bool(void **state)
{
    (void)state;
    const char *yes[] = {"true", "TRUE", "True", "1", "yes", "YES", "on", "On", " on "};
    const char *no[] = {"false", "FALSE", "0", "no", "No", "off", "OFF"};
    for (size_t i = 0; i < WY_ARRAY_LEN(yes); i++)
        expect_bool(yes[i], true);
    for (size_t i = 0; i < WY_ARRAY_LEN(no); i++)
        expect_bool(no[i], false);

    const char *bad[] = {"", "maybe", "2", "tru", "yess", "y", "n", "enabled", "10"};
    for (size_t i = 0; i < WY_ARRAY_LEN(bad); i++) {
        bool v = true;
        wy_cfg_entry_t e = {.name = "WY_FLAG", .type = WY_CFG_BOOL, .def = "false", .dst = &v};
        assert_int_equal(wy_config_parse_value(&e, bad[i], &err), WY_EINVAL);
        assert_true(v);
        assert_non_null(strstr(err, "WY_FLAG: must be a boolean"));
    }
}

static void test_enum(void **state)
{
    (void)state;
    char *v = NULL;
    wy_cfg_entry_t e = {.name = "WY_LOBBY_DUP_POLICY",
                        .type = WY_CFG_ENUM,
                        .def = "kick-old",
                        .choices = "kick-old|reject-new",
                        .dst = &v};
    assert_int_equal(wy_config_parse_value(&e, "reject-new", &err), WY_OK);
    assert_string_equal(v, "reject-new");
    assert_int_equal(wy_config_parse_value(&e, "kick-old", &err), WY_OK);
    assert_string_equal(v, "kick-old");

    const char *bad[] = {"foo", "", "kick", "kick-old|reject-new", "Kick-Old", "|"};
    for (size_t i = 0; i < WY_ARRAY_LEN(bad); i++) {
        assert_int_equal(wy_config_parse_value(&e, bad[i], &err), WY_EINVAL);
        assert_string_equal(v, "kick-old"); /* untouched */
    }
    assert_int_equal(wy_config_parse_value(&e, "foo", &err), WY_EINVAL);
    assert_string_equal(err,
                        "WY_LOBBY_DUP_POLICY: must be one of kick-old, reject-new (got \"foo\")");

    wy_config_free(&e, 1);
    assert_null(v);
}

static void test_duration(void **state)
{
    (void)state;
    wy_cfg_entry_t any = {.name = "WY_T", .type = WY_CFG_DURATION_MS, .def = "1s"};
    expect_i64s(any, (const i64_case_t[]){{"250ms", 250},
                                          {"5s", 5000},
                                          {"2m", 120000},
                                          {"1h", 3600000},
                                          {"42", 42},
                                          {"0", 0},
                                          {"5S", 5000},
                                          {"10MS", 10},
                                          {NULL, 0}});
    expect_rejects(any, (const char *const[]){"", "ms", "5x", "5 s", "-5s", "1.5s", "5sec", "5d",
                                              "9999999999999999h", "99999999999999999999", NULL});

    int64_t v;
    assert_int_equal(parse_i64(any, "soon", &v), WY_EINVAL);
    assert_string_equal(err, "WY_T: must be a duration like 250ms, 5s, 2m (got \"soon\")");

    wy_cfg_entry_t b = {
        .name = "WY_HB", .type = WY_CFG_DURATION_MS, .def = "1s", .min = 100, .max = 60000};
    expect_i64s(b, (const i64_case_t[]){
                       {"100ms", 100}, {"100", 100}, {"1m", 60000}, {"60s", 60000}, {NULL, 0}});
    expect_rejects(b, (const char *const[]){"99ms", "60001ms", "2m", NULL});
    assert_int_equal(parse_i64(b, "10m", &v), WY_EINVAL);
    assert_string_equal(err, "WY_HB: must be a duration between 100ms and 1m (got \"10m\")");
}

static void test_size(void **state)
{
    (void)state;
    wy_cfg_entry_t any = {.name = "WY_S", .type = WY_CFG_SIZE, .def = "1k"};
    expect_i64s(any, (const i64_case_t[]){{"512", 512},
                                          {"512b", 512},
                                          {"64k", 64 * 1024},
                                          {"64K", 64 * 1024},
                                          {"64KiB", 64 * 1024},
                                          {"64kb", 64 * 1024},
                                          {"8m", 8 << 20},
                                          {"8MiB", 8 << 20},
                                          {"1g", GiB},
                                          {"1GiB", GiB},
                                          {"2t", 2 * 1024 * GiB},
                                          {NULL, 0}});
    expect_rejects(any, (const char *const[]){"", "k", "-1", "1.5k", "1x", "1kibb", "1 k",
                                              "99999999999g", NULL});

    int64_t v;
    assert_int_equal(parse_i64(any, "big", &v), WY_EINVAL);
    assert_non_null(strstr(err, "WY_S: must be a size like 512, 64k, 8m, 1g"));

    wy_cfg_entry_t b = {
        .name = "WY_MAXMSG", .type = WY_CFG_SIZE, .def = "64k", .min = 1024, .max = 8 << 20};
    expect_i64s(b, (const i64_case_t[]){{"1k", 1024}, {"1024", 1024}, {"8m", 8 << 20}, {NULL, 0}});
    expect_reject(b, "1023");
    expect_reject(b, "9m");
    assert_int_equal(parse_i64(b, "1g", &v), WY_EINVAL);
    assert_string_equal(err, "WY_MAXMSG: must be a size between 1KiB and 8MiB (got \"1g\")");
}

static void test_string_and_required(void **state)
{
    (void)state;
    char *s = NULL;
    wy_cfg_entry_t e = {.name = "WY_REDIS_URL", .type = WY_CFG_STRING, .def = NULL, .dst = &s};
    unsetenv("WY_REDIS_URL");
    assert_int_equal(wy_config_load(&e, 1, &err), WY_EINVAL);
    assert_string_equal(err, "WY_REDIS_URL: required but not set");
    setenv("WY_REDIS_URL", "", 1);
    err = NULL;
    assert_int_equal(wy_config_load(&e, 1, &err), WY_EINVAL);
    assert_string_equal(err, "WY_REDIS_URL: required but not set");
    assert_int_equal(wy_config_parse_value(&e, "", &err), WY_EINVAL);
    assert_string_equal(err, "WY_REDIS_URL: required but not set");
    assert_null(s);

    /* Strings are stored as given, spaces included. */
    assert_int_equal(wy_config_parse_value(&e, " redis://h:1/0 ", &err), WY_OK);
    assert_string_equal(s, " redis://h:1/0 ");
    unsetenv("WY_REDIS_URL");
    wy_config_free(&e, 1);
    assert_null(s);
}

static void test_load_defaults_env_reload(void **state)
{
    (void)state;
    char *name = NULL, *policy = NULL;
    int64_t port = 0, hb = 0, max = 0;
    bool tls = true;
    wy_cfg_entry_t tab[] = {
        {"WYT_NAME", WY_CFG_STRING, "lobby-1", 0, 0, NULL, "instance name", &name, false},
        {"WYT_PORT", WY_CFG_INT, "7000", 1, 65535, NULL, "port", &port, false},
        {"WYT_TLS", WY_CFG_BOOL, "false", 0, 0, NULL, "tls", &tls, false},
        {"WYT_POLICY", WY_CFG_ENUM, "kick-old", 0, 0, "kick-old|reject-new", "policy", &policy,
         false},
        {"WYT_HB", WY_CFG_DURATION_MS, "5s", 100, 60000, NULL, "heartbeat", &hb, false},
        {"WYT_MAX", WY_CFG_SIZE, "64k", 1024, 1 << 20, NULL, "max msg", &max, false},
    };
    for (size_t i = 0; i < WY_ARRAY_LEN(tab); i++)
        unsetenv(tab[i].name);

    assert_int_equal(wy_config_load(tab, WY_ARRAY_LEN(tab), &err), WY_OK);
    assert_string_equal(name, "lobby-1");
    assert_int_equal(port, 7000);
    assert_false(tls);
    assert_string_equal(policy, "kick-old");
    assert_int_equal(hb, 5000);
    assert_int_equal(max, 65536);

    setenv("WYT_NAME", "lobby-2", 1);
    setenv("WYT_PORT", "7100", 1);
    setenv("WYT_TLS", "yes", 1);
    setenv("WYT_POLICY", "reject-new", 1);
    setenv("WYT_HB", "250ms", 1);
    setenv("WYT_MAX", "1MiB", 1);
    /* Reloading overwrites the stored strings; ASan reports a leak if the old
     * ones are not freed. */
    assert_int_equal(wy_config_load(tab, WY_ARRAY_LEN(tab), &err), WY_OK);
    assert_int_equal(wy_config_load(tab, WY_ARRAY_LEN(tab), &err), WY_OK);
    assert_string_equal(name, "lobby-2");
    assert_int_equal(port, 7100);
    assert_true(tls);
    assert_string_equal(policy, "reject-new");
    assert_int_equal(hb, 250);
    assert_int_equal(max, 1 << 20);

    /* Empty counts as unset: the default applies. */
    setenv("WYT_PORT", "", 1);
    assert_int_equal(wy_config_load(tab, WY_ARRAY_LEN(tab), &err), WY_OK);
    assert_int_equal(port, 7000);

    /* The first bad entry stops the load and is named. */
    setenv("WYT_HB", "2m", 1);
    assert_int_equal(wy_config_load(tab, WY_ARRAY_LEN(tab), &err), WY_EINVAL);
    assert_string_equal(err, "WYT_HB: must be a duration between 100ms and 1m (got \"2m\")");

    for (size_t i = 0; i < WY_ARRAY_LEN(tab); i++)
        unsetenv(tab[i].name);
    wy_config_free(tab, WY_ARRAY_LEN(tab));
    assert_null(name);
    assert_null(policy);
    wy_config_free(tab, WY_ARRAY_LEN(tab)); /* twice is safe */
}

static void test_caller_pointer_not_freed(void **state)
{
    (void)state;
    /* A destination pre-set by the caller to a literal must never be freed. */
    char *s = "static literal";
    wy_cfg_entry_t e = {.name = "WYT_LIT", .type = WY_CFG_STRING, .def = "x", .dst = &s};
    wy_config_free(&e, 1);
    assert_string_equal(s, "static literal");
}

static void test_bad_default_is_reported(void **state)
{
    (void)state;
    int64_t v;
    wy_cfg_entry_t e = {
        .name = "WYT_BADDEF", .type = WY_CFG_INT, .def = "0", .min = 1, .max = 10, .dst = &v};
    unsetenv("WYT_BADDEF");
    assert_int_equal(wy_config_load(&e, 1, &err), WY_EINVAL);
    assert_non_null(strstr(err, "WYT_BADDEF: must be an integer between 1 and 10"));
    assert_non_null(strstr(err, "built-in default"));
}

static void test_secret_never_leaks(void **state)
{
    (void)state;
    int64_t pin = 0;
    char *url = NULL;
    wy_cfg_entry_t tab[] = {
        {"WYT_URL", WY_CFG_STRING, NULL, 0, 0, NULL, "db url", &url, true},
        {"WYT_PIN", WY_CFG_INT, "1", 1, 9999, NULL, "pin", &pin, true},
    };
    setenv("WYT_URL", "postgresql://u:hunter2@db/x", 1);
    setenv("WYT_PIN", "s3cr3t-pin", 1);
    assert_int_equal(wy_config_load(tab, 2, &err), WY_EINVAL);
    assert_non_null(strstr(err, "WYT_PIN"));
    assert_null(strstr(err, "s3cr3t"));

    setenv("WYT_PIN", "1234", 1);
    assert_int_equal(wy_config_load(tab, 2, &err), WY_OK);
    char *j = wy_config_effective_json(tab, 2);
    assert_string_equal(j, "\"config\":{\"WYT_URL\":\"***\",\"WYT_PIN\":\"***\"}");
    assert_null(strstr(j, "hunter2"));
    wy_free(j);
    unsetenv("WYT_URL");
    unsetenv("WYT_PIN");
    wy_config_free(tab, 2);
}

static void test_error_echo_is_bounded_and_printable(void **state)
{
    (void)state;
    int64_t v;
    wy_cfg_entry_t e = {.name = "WYT_N", .type = WY_CFG_INT, .def = "1"};
    char big[300];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(parse_i64(e, big, &v), WY_EINVAL);
    assert_true(strlen(err) < 150);
    assert_non_null(strstr(err, "...\")"));
    assert_int_equal(parse_i64(e, "a\"b\x01", &v), WY_EINVAL);
    assert_string_equal(err, "WYT_N: must be an integer (got \"a\\\"b\\x01\")");
}

static void test_effective_json(void **state)
{
    (void)state;
    char *name = NULL, *policy = NULL;
    int64_t port = 0, hb = 0, max = 0, odd = 0;
    bool tls = false;
    wy_cfg_entry_t tab[] = {
        {"WYT_NAME", WY_CFG_STRING, "a \"q\"", 0, 0, NULL, "", &name, false},
        {"WYT_PORT", WY_CFG_INT, "7000", 1, 65535, NULL, "", &port, false},
        {"WYT_TLS", WY_CFG_BOOL, "on", 0, 0, NULL, "", &tls, false},
        {"WYT_POLICY", WY_CFG_ENUM, "reject-new", 0, 0, "kick-old|reject-new", "", &policy, false},
        {"WYT_HB", WY_CFG_DURATION_MS, "5s", 0, 0, NULL, "", &hb, false},
        {"WYT_ODD", WY_CFG_DURATION_MS, "1500", 0, 0, NULL, "", &odd, false},
        {"WYT_MAX", WY_CFG_SIZE, "65536", 0, 0, NULL, "", &max, false},
    };
    for (size_t i = 0; i < WY_ARRAY_LEN(tab); i++)
        unsetenv(tab[i].name);
    assert_int_equal(wy_config_load(tab, WY_ARRAY_LEN(tab), &err), WY_OK);
    char *j = wy_config_effective_json(tab, WY_ARRAY_LEN(tab));
    assert_string_equal(j, "\"config\":{\"WYT_NAME\":\"a \\\"q\\\"\",\"WYT_PORT\":\"7000\","
                           "\"WYT_TLS\":\"true\",\"WYT_POLICY\":\"reject-new\",\"WYT_HB\":\"5s\","
                           "\"WYT_ODD\":\"1500ms\",\"WYT_MAX\":\"64KiB\"}");
    /* Wrapped in braces it is one valid JSON object. */
    char *obj = wy_sprintf("{%s}", j);
    json_error_t jerr;
    json_t *root = json_loads(obj, 0, &jerr);
    assert_non_null(root);
    json_decref(root);
    wy_free(obj);
    wy_free(j);
    wy_config_free(tab, WY_ARRAY_LEN(tab));
}

static char *capture_help(const char *svc, const wy_cfg_entry_t *tab, size_t n, bool json)
{
    /* Read back through a temp file: gcc's dangling-pointer analysis
     * misreads open_memstream's out-parameters. */
    FILE *f = tmpfile();
    assert_non_null(f);
    wy_config_print_help(f, svc, tab, n, json);
    long len = ftell(f);
    assert_true(len > 0);
    rewind(f);
    char *buf = malloc((size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static const wy_cfg_entry_t help_tab[] = {
    {"WY_LOBBY_WS_PORT", WY_CFG_INT, "7000", 1, 65535, NULL, "WebSocket port for clients", NULL,
     false},
    {"WY_REDIS_URL", WY_CFG_STRING, NULL, 0, 0, NULL, "Redis URL", NULL, true},
    {"WY_LOBBY_DUP_POLICY", WY_CFG_ENUM, "kick-old", 0, 0, "kick-old|reject-new",
     "What a second login does", NULL, false},
    {"WY_LOBBY_HEARTBEAT", WY_CFG_DURATION_MS, "10s", 1000, 120000, NULL, "Heartbeat period", NULL,
     false},
    {"WY_LOBBY_MAX_MSG", WY_CFG_SIZE, "64k", 0, 0, NULL, "Largest client frame", NULL, false},
    {"WY_LOBBY_TLS", WY_CFG_BOOL, "false", 0, 0, NULL, "Serve TLS", NULL, false},
};

static void test_help_json(void **state)
{
    (void)state;
    char *out = capture_help("lobby", help_tab, WY_ARRAY_LEN(help_tab), true);
    json_error_t jerr;
    json_t *root = json_loads(out, 0, &jerr);
    if (!root)
        fail_msg("help JSON does not parse: %s\n%s", jerr.text, out);
    assert_string_equal(json_string_value(json_object_get(root, "service")), "lobby");
    json_t *vars = json_object_get(root, "variables");
    assert_true(json_is_array(vars));
    assert_int_equal(json_array_size(vars), WY_ARRAY_LEN(help_tab));
    static const char *types[] = {"int", "string", "enum", "duration_ms", "size", "bool"};
    for (size_t i = 0; i < WY_ARRAY_LEN(help_tab); i++) {
        const wy_cfg_entry_t *e = &help_tab[i];
        json_t *v = json_array_get(vars, i);
        assert_string_equal(json_string_value(json_object_get(v, "name")), e->name);
        assert_string_equal(json_string_value(json_object_get(v, "type")), types[i]);
        json_t *def = json_object_get(v, "default");
        if (e->def)
            assert_string_equal(json_string_value(def), e->def);
        else
            assert_true(json_is_null(def));
        assert_int_equal(json_is_true(json_object_get(v, "required")), e->def == NULL);
        assert_string_equal(json_string_value(json_object_get(v, "help")), e->help);
        assert_int_equal(json_is_true(json_object_get(v, "secret")), e->secret);
        assert_true(json_is_boolean(json_object_get(v, "secret")));
        bool bounded = e->min || e->max;
        assert_int_equal(json_object_get(v, "min") != NULL, bounded);
        assert_int_equal(json_object_get(v, "max") != NULL, bounded);
        if (bounded) {
            assert_int_equal(json_integer_value(json_object_get(v, "min")), e->min);
            assert_int_equal(json_integer_value(json_object_get(v, "max")), e->max);
        }
        assert_int_equal(json_object_get(v, "choices") != NULL, e->type == WY_CFG_ENUM);
    }
    json_t *ch = json_object_get(json_array_get(vars, 2), "choices");
    assert_int_equal(json_array_size(ch), 2);
    assert_string_equal(json_string_value(json_array_get(ch, 0)), "kick-old");
    assert_string_equal(json_string_value(json_array_get(ch, 1)), "reject-new");
    json_decref(root);

    /* Key order is part of the contract (charts diff against it). */
    const char *keys[] = {"\"name\"", "\"type\"", "\"default\"", "\"required\"",
                          "\"min\"",  "\"max\"",  "\"help\"",    "\"secret\""};
    const char *p = out;
    for (size_t i = 0; i < WY_ARRAY_LEN(keys); i++) {
        const char *q = strstr(p, keys[i]);
        if (!q) {
            fail_msg("key %s missing or out of order", keys[i]);
            return;
        }
        p = q;
    }
    free(out);
}

static void test_help_text(void **state)
{
    (void)state;
    char *out = capture_help("wy-lobby", help_tab, WY_ARRAY_LEN(help_tab), false);
    assert_non_null(strstr(out, "wy-lobby"));
    const char *head = strstr(out, "NAME");
    assert_non_null(head);
    const char *hl = strstr(head, "HELP");
    assert_non_null(hl);
    size_t help_col = (size_t)(hl - head);
    size_t rows = 0;
    for (const char *line = strchr(head, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        const wy_cfg_entry_t *e = &help_tab[rows];
        assert_memory_equal(line, e->name, strlen(e->name));
        /* Every help starts in the HELP column. */
        assert_memory_equal(line + help_col, e->help, strlen(e->help));
        rows++;
    }
    assert_int_equal(rows, WY_ARRAY_LEN(help_tab));
    wt_assert_contains(out, (const char *const[]){"(required)", "1..65535", "1s..2m",
                                                  "kick-old|reject-new", "duration_ms", NULL});
    free(out);
}

/* Offset tables (WY_CFG_OFF) rebased onto a struct, one nested into another. */
typedef struct {
    int64_t n;
    char *s;
} inner_cfg_t;
typedef struct {
    bool on;
    inner_cfg_t in;
} outer_cfg_t;

static void test_rebase_offsets_into_a_struct(void **state)
{
    (void)state;
    const wy_cfg_entry_t inner[] = {
        {"WY_T_REBASE_N", WY_CFG_INT, "7", 0, 100, NULL, "n", WY_CFG_OFF(inner_cfg_t, n), false},
        {"WY_T_REBASE_S", WY_CFG_STRING, "dflt", 0, 0, NULL, "s", WY_CFG_OFF(inner_cfg_t, s),
         false},
    };
    wy_cfg_entry_t outer[3] = {
        {"WY_T_REBASE_ON", WY_CFG_BOOL, "off", 0, 0, NULL, "on", WY_CFG_OFF(outer_cfg_t, on),
         false},
    };
    /* Nest: the inner offsets become offsets into outer_cfg_t, then pointers. */
    wy_config_rebase(outer + 1, inner, 2, WY_CFG_OFF(outer_cfg_t, in));
    assert_int_equal((uintptr_t)outer[1].dst, offsetof(outer_cfg_t, in.n));
    assert_int_equal((uintptr_t)outer[2].dst, offsetof(outer_cfg_t, in.s));
    assert_string_equal(outer[2].name, "WY_T_REBASE_S");
    outer_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    wy_cfg_entry_t tab[3];
    wy_config_rebase(tab, outer, 3, &cfg);
    setenv("WY_T_REBASE_ON", "yes", 1);
    setenv("WY_T_REBASE_N", "42", 1);
    unsetenv("WY_T_REBASE_S");
    assert_int_equal(wy_config_load(tab, 3, &err), WY_OK);
    assert_true(cfg.on);
    assert_int_equal(cfg.in.n, 42);
    assert_string_equal(cfg.in.s, "dflt");
    /* The original tables are untouched: still offsets. */
    assert_int_equal((uintptr_t)inner[0].dst, offsetof(inner_cfg_t, n));
    wy_config_free(tab, 3);
    assert_null(cfg.in.s);
    unsetenv("WY_T_REBASE_ON");
    unsetenv("WY_T_REBASE_N");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_int, teardown),
        cmocka_unit_test_teardown(test_bool, teardown),
        cmocka_unit_test_teardown(test_enum, teardown),
        cmocka_unit_test_teardown(test_duration, teardown),
        cmocka_unit_test_teardown(test_size, teardown),
        cmocka_unit_test_teardown(test_string_and_required, teardown),
        cmocka_unit_test_teardown(test_load_defaults_env_reload, teardown),
        cmocka_unit_test_teardown(test_caller_pointer_not_freed, teardown),
        cmocka_unit_test_teardown(test_bad_default_is_reported, teardown),
        cmocka_unit_test_teardown(test_secret_never_leaks, teardown),
        cmocka_unit_test_teardown(test_error_echo_is_bounded_and_printable, teardown),
        cmocka_unit_test_teardown(test_effective_json, teardown),
        cmocka_unit_test_teardown(test_help_json, teardown),
        cmocka_unit_test_teardown(test_help_text, teardown),
        cmocka_unit_test_teardown(test_rebase_offsets_into_a_struct, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
