/* Unit tests for wy-auth's Argon2id hasher (services/auth/password.c) on a real libuv
 * loop: hash + verify, dummy verification never matches, the in-flight bound, close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/auth/password.c"

/* Small parameters: the tests check behaviour, not cost. */
#define T_MEM_KIB 1024
#define T_ITER    1

typedef struct {
    int calls, err;
    bool match;
    char encoded[256];
} result_t;

static void on_hash(int err, const char *encoded, void *ud)
{
    result_t *r = ud;
    r->calls++;
    r->err = err;
    if (encoded)
        snprintf(r->encoded, sizeof r->encoded, "%s", encoded);
}

static void on_verify(int err, bool match, void *ud)
{
    result_t *r = ud;
    r->calls++;
    r->err = err;
    r->match = match;
}

static void test_hash_then_verify(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    auth_hasher_t *h = NULL;
    const char *err = NULL;
    assert_int_equal(auth_hasher_new(&loop, T_MEM_KIB, T_ITER, 4, &h, &err), WY_OK);
    result_t hr = {0};
    assert_int_equal(auth_hash(h, "s3cret pass", on_hash, &hr), WY_OK);
    assert_int_equal(hr.calls, 0); /* never inside the call */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(hr.calls, 1);
    assert_int_equal(hr.err, WY_OK);
    assert_non_null(strstr(hr.encoded, "$argon2id$v=19$m=1024,t=1,p=1$"));

    result_t ok = {0}, bad = {0}, dummy = {0};
    assert_int_equal(auth_verify(h, hr.encoded, "s3cret pass", on_verify, &ok), WY_OK);
    assert_int_equal(auth_verify(h, hr.encoded, "wrong pass", on_verify, &bad), WY_OK);
    assert_int_equal(auth_verify(h, NULL, "s3cret pass", on_verify, &dummy), WY_OK);
    assert_int_equal(auth_hasher_inflight(h), 3);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(ok.calls == 1 && ok.err == WY_OK && ok.match);
    assert_true(bad.calls == 1 && bad.err == WY_OK && !bad.match);
    assert_true(dummy.calls == 1 && dummy.err == WY_OK && !dummy.match);
    assert_int_equal(auth_hasher_inflight(h), 0);
    auth_hasher_close(h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bound_and_close(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    auth_hasher_t *h = NULL;
    const char *err = NULL;
    assert_int_equal(auth_hasher_new(&loop, T_MEM_KIB, T_ITER, 2, &h, &err), WY_OK);
    result_t r[3] = {{0}};
    assert_int_equal(auth_hash(h, "one password", on_hash, &r[0]), WY_OK);
    assert_int_equal(auth_verify(h, NULL, "two", on_verify, &r[1]), WY_OK);
    assert_int_equal(auth_hash(h, "three", on_hash, &r[2]), WY_EBUSY);
    /* Close with jobs in flight: each still completes exactly once, as canceled. */
    auth_hasher_close(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].err, WY_ECANCELED);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[1].err, WY_ECANCELED);
    assert_int_equal(r[2].calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad_parameters(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    auth_hasher_t *h = NULL;
    const char *err = NULL;
    assert_int_equal(auth_hasher_new(&loop, 0, 1, 1, &h, &err), WY_EINVAL);
    assert_non_null(err);
    assert_int_equal(auth_hasher_new(&loop, T_MEM_KIB, 1, 0, &h, &err), WY_EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_then_verify),
        cmocka_unit_test(test_bound_and_close),
        cmocka_unit_test(test_bad_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
