/* Unit tests of wy_core (error mapping, strings, ids) and wy_buf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ctype.h>
#include <string.h>

#include "wy_buf.h"
#include "wy_core.h"

static void test_every_code_has_names_and_statuses(void **state)
{
    (void)state;
    for (int e = WY_OK; e > WY__ELAST; e--) {
        assert_non_null(wy_strerror(e));
        assert_true(strlen(wy_errname(e)) > 0);
        assert_true(wy_err_http(e) >= 200 && wy_err_http(e) < 600);
        /* A gRPC status maps back to a code of the same class. */
        assert_int_equal(wy_err_grpc(wy_err_from_grpc(wy_err_grpc(e))), wy_err_grpc(e));
    }
    assert_string_equal(wy_errname(WY_EINVAL), "EINVAL");
    assert_int_equal(wy_err_http(WY_EAUTH), 401);
    assert_int_equal(wy_err_http(WY_ELIMIT), 429);
    assert_int_equal(wy_err_grpc(WY_EUNAVAIL), 14);
    assert_int_equal(wy_err_grpc(WY_OK), 0);
    assert_int_equal(wy_err_from_grpc(16), WY_EAUTH);
    assert_int_equal(wy_err_from_grpc(999), WY_EINTERNAL);
    /* Out-of-range codes never index outside the table. */
    assert_string_equal(wy_errname(12345), "EINTERNAL");
    assert_string_equal(wy_errname(-9999), "EINTERNAL");
}

static void test_strings(void **state)
{
    (void)state;
    char *s = wy_sprintf("%s-%d", "zone", 42);
    assert_string_equal(s, "zone-42");
    wy_free(s);
    s = wy_strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    wy_free(s);
    s = wy_sprintf("%s", "");
    assert_string_equal(s, "");
    wy_free(s);
}

static void test_uuid4_format_and_uniqueness(void **state)
{
    (void)state;
    char a[37], b[37];
    wy_uuid4(a);
    wy_uuid4(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(a[i], '-');
        else
            assert_true(isxdigit((unsigned char)a[i]) && !isupper((unsigned char)a[i]));
    }
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
}

static void test_clocks_are_monotonic(void **state)
{
    (void)state;
    uint64_t a = wy_now_ns(), b = wy_now_ns();
    assert_true(b >= a);
    assert_true(wy_wall_ms() > 1600000000000ull);
}

static void test_buf(void **state)
{
    (void)state;
    wy_buf_t b = WY_BUF_INIT;
    wy_buf_puts(&b, "hello");
    wy_buf_putc(&b, ' ');
    wy_buf_printf(&b, "%d+%d", 2, 3);
    assert_string_equal(b.data, "hello 2+3");
    assert_int_equal(b.len, 9);
    wy_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    /* Growth across many appends keeps content and NUL termination. */
    for (int i = 0; i < 10000; i++)
        wy_buf_putc(&b, (char)('a' + i % 26));
    assert_int_equal(b.len, 10000);
    assert_int_equal(b.data[10000], '\0');
    assert_int_equal(b.data[9999], 'a' + 9999 % 26);
    size_t n;
    char *p = wy_buf_steal(&b, &n);
    assert_int_equal(n, 10000);
    assert_null(b.data);
    wy_free(p);
    p = wy_buf_steal(&b, &n);
    assert_int_equal(n, 0);
    assert_string_equal(p, "");
    wy_free(p);
    wy_buf_free(&b);
}

static void test_json_escape(void **state)
{
    (void)state;
    wy_buf_t b = WY_BUF_INIT;
    const char in[] = "a\"b\\c\n\t\x01\x1f\xc3\xa9";
    wy_buf_json_escape(&b, in, sizeof in - 1);
    assert_string_equal(b.data, "a\\\"b\\\\c\\n\\t\\u0001\\u001f\xc3\xa9");
    wy_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_names_and_statuses),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_uuid4_format_and_uniqueness),
        cmocka_unit_test(test_clocks_are_monotonic),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_json_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
