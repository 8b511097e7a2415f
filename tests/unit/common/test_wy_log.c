/* Unit tests of wy_log: JSON lines, escaping, level gating before formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "wy_log.h"

/* Runs fn with stderr redirected into a pipe and returns what it wrote. */
static char captured[8192];

static const char *capture(void (*fn)(void))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = read(fds[0], captured, sizeof captured - 1);
    close(fds[0]);
    captured[n > 0 ? n : 0] = '\0';
    return captured;
}

static void emit_info(void)
{
    wy_log_info("session created", "account", "acc-1", "note", "quote \" and \n newline", "none",
                NULL, NULL);
}

static void test_line_is_json_with_fields(void **state)
{
    (void)state;
    wy_log_init("lobby", WY_LOG_INFO);
    const char *out = capture(emit_info);
    assert_non_null(strchr(out, '\n'));
    assert_int_equal(strchr(out, '\n')[1], '\0'); /* exactly one line */
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "svc")), "lobby");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "session created");
    assert_string_equal(json_string_value(json_object_get(j, "account")), "acc-1");
    assert_string_equal(json_string_value(json_object_get(j, "note")), "quote \" and \n newline");
    assert_true(json_is_null(json_object_get(j, "none")));
    const char *ts = json_string_value(json_object_get(j, "ts"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24); /* 2026-11-22T03:05:38.606Z */
    json_decref(j);
}

static int evaluated;

static const char *side_effect(void)
{
    evaluated++;
    return "x";
}

static void emit_debug(void)
{
    wy_log_debug("expensive", "v", side_effect(), NULL);
}

static void test_disabled_level_formats_nothing(void **state)
{
    (void)state;
    wy_log_init("auth", WY_LOG_WARN);
    evaluated = 0;
    const char *out = capture(emit_debug);
    assert_string_equal(out, "");
    assert_int_equal(evaluated, 0); /* arguments not even evaluated */
    wy_log_init("auth", WY_LOG_DEBUG);
    out = capture(emit_debug);
    assert_int_equal(evaluated, 1);
    assert_non_null(strstr(out, "\"level\":\"debug\""));
}

static void emit_raw(void)
{
    wy_log_raw(WY_LOG_INFO, "ready", "\"ops_port\":9101,\"config\":{\"A\":\"b\"}");
}

static void test_raw_members(void **state)
{
    (void)state;
    wy_log_init("world", WY_LOG_INFO);
    json_t *j = json_loads(capture(emit_raw), 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "ops_port")), 9101);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "ready");
    json_decref(j);
}

/* 40 lines of about 110 bytes: more than WY_LOG_ATOMIC_BYTES, so more than one write;
 * the last member list has no newline, one is empty. */
#define MANY_LINES 40

static void emit_lines(void)
{
    char buf[MANY_LINES * 64];
    size_t n = 0;
    for (int i = 0; i < MANY_LINES - 2; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "\"i\":%d,\"pad\":\"%032d\"\n", i, i);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "\n\"i\":%d", MANY_LINES - 1);
    wy_log_raw_lines(WY_LOG_INFO, "actor event", buf, n);
}

static void test_raw_lines_many_in_whole_lines(void **state)
{
    (void)state;
    wy_log_init("actor", WY_LOG_INFO);
    const char *out = capture(emit_lines);
    assert_true(strlen(out) > WY_LOG_ATOMIC_BYTES);
    int lines = 0;
    for (const char *p = out; *p; lines++) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_error_t e;
        json_t *j = json_loadb(p, (size_t)(nl - p), 0, &e);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "msg")), "actor event");
        assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
        json_t *i = json_object_get(j, "i");
        if (lines == MANY_LINES - 2)
            assert_null(i); /* the empty member list */
        else
            assert_int_equal(json_integer_value(i), lines);
        json_decref(j);
        p = nl + 1;
    }
    assert_int_equal(lines, MANY_LINES);
}

static void test_level_parse(void **state)
{
    (void)state;
    wy_log_level_t l;
    assert_int_equal(wy_log_level_parse("warn", &l), WY_OK);
    assert_int_equal(l, WY_LOG_WARN);
    assert_int_equal(wy_log_level_parse("loud", &l), WY_EINVAL);
    assert_int_equal(wy_log_level_parse("", &l), WY_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_is_json_with_fields),
        cmocka_unit_test(test_disabled_level_formats_nothing),
        cmocka_unit_test(test_raw_members),
        cmocka_unit_test(test_raw_lines_many_in_whole_lines),
        cmocka_unit_test(test_level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
