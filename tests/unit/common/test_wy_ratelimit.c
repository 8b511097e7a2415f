/* Unit tests of wy_ratelimit against a real Redis named by WY_REDIS_URL
 * (redis://127.0.0.1:PORT/DB). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "wy_test.h"

#include "wy_ratelimit.h"

typedef struct {
    wt_loop_t wl;
    uv_timer_t wait;
    wy_redis_t *r;
    int ups;
    bool closed, waited;
    char prefix[64]; /* unique per test run: parallel runs on one Redis do not collide */
} fx_t;

typedef struct {
    int calls;
    int err;
    bool allowed;
    uint32_t retry;
} res_t;

static void on_state(wy_redis_t *r, int health, void *ud)
{
    (void)r;
    if (health == WY_OK)
        ((fx_t *)ud)->ups++;
}

/* The loop of a fixture, with the shared guard (wy_test.h). */
#define RUN_UNTIL(f, cond) WT_RUN_UNTIL(&(f)->wl, cond)

static void fx_init_url(fx_t *f, const char *url, bool wait_up)
{
    memset(f, 0, sizeof *f);
    wt_loop_init(&f->wl, 15000);
    uv_timer_init(&f->wl.loop, &f->wait);
    wy_redis_opts_t o = {.on_state = on_state, .state_ud = f};
    const char *err = NULL;
    assert_int_equal(wy_redis_create(&f->wl.loop, url, &o, &f->r, &err), WY_OK);
    if (wait_up)
        RUN_UNTIL(f, f->ups > 0);
    unsigned char rnd[6];
    wy_random(rnd, sizeof rnd);
    snprintf(f->prefix, sizeof f->prefix, "test:rl:%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5]);
}

static void fx_init(fx_t *f)
{
    fx_init_url(f, wt_env("WY_REDIS_URL", "Redis", "redis://127.0.0.1:PORT/0"), true);
}

static void on_closed(void *ud)
{
    ((fx_t *)ud)->closed = true;
}

static void fx_done(fx_t *f)
{
    wy_redis_close(f->r, on_closed, f);
    RUN_UNTIL(f, f->closed);
    uv_close((uv_handle_t *)&f->wait, NULL);
    wt_loop_done(&f->wl);
}

static void on_res(int err, bool allowed, uint32_t retry, void *ud)
{
    res_t *x = ud;
    x->calls++;
    x->err = err;
    x->allowed = allowed;
    x->retry = retry;
}

/* One hit or peek, run to completion. */
static res_t call(fx_t *f, wy_ratelimit_t *rl, const char *key, bool hit)
{
    res_t x = {0};
    int rc = hit ? wy_ratelimit_hit(rl, key, on_res, &x) : wy_ratelimit_peek(rl, key, on_res, &x);
    assert_int_equal(rc, WY_OK);
    assert_int_equal(x.calls, 0); /* never from inside the call */
    RUN_UNTIL(f, x.calls == 1);
    return x;
}

static void on_wait(uv_timer_t *t)
{
    ((fx_t *)t->data)->waited = true;
}

static void wait_ms(fx_t *f, uint64_t ms)
{
    f->waited = false;
    f->wait.data = f;
    uv_timer_start(&f->wait, on_wait, ms, 0);
    RUN_UNTIL(f, f->waited);
}

static void test_limit_then_window_passes(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    wy_ratelimit_t *rl;
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 3, 300, &rl), WY_OK);
    for (int i = 0; i < 3; i++) {
        res_t x = call(&f, rl, "alice", true);
        assert_int_equal(x.err, WY_OK);
        assert_true(x.allowed);
        assert_int_equal(x.retry, 0);
    }
    res_t no = call(&f, rl, "alice", true);
    assert_int_equal(no.err, WY_OK);
    assert_false(no.allowed);
    assert_true(no.retry >= 1 && no.retry <= 300);
    /* another key is independent */
    res_t bob = call(&f, rl, "bob", true);
    assert_true(bob.allowed);
    /* once the oldest event has left the window, a retry passes */
    wait_ms(&f, no.retry + 2);
    res_t again = call(&f, rl, "alice", true);
    assert_int_equal(again.err, WY_OK);
    assert_true(again.allowed);
    wy_ratelimit_free(rl);
    fx_done(&f);
}

static void test_peek_does_not_count(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    wy_ratelimit_t *rl;
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 2, 60000, &rl), WY_OK);
    for (int i = 0; i < 5; i++)
        assert_true(call(&f, rl, "k", false).allowed);
    assert_true(call(&f, rl, "k", true).allowed);
    assert_true(call(&f, rl, "k", true).allowed);
    res_t p = call(&f, rl, "k", false);
    assert_int_equal(p.err, WY_OK);
    assert_false(p.allowed);
    assert_true(p.retry >= 1 && p.retry <= 60000);
    wy_ratelimit_free(rl);
    fx_done(&f);
}

typedef struct {
    int calls, type;
    long long integer;
} raw_t;

static void on_raw(int status, redisReply *reply, void *ud)
{
    raw_t *x = ud;
    x->calls++;
    assert_int_equal(status, WY_OK);
    x->type = reply->type;
    x->integer = reply->integer;
}

static void test_reset_and_key_ttl(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    wy_ratelimit_t *rl;
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 1, 5000, &rl), WY_OK);
    assert_true(call(&f, rl, "carol", true).allowed);
    assert_false(call(&f, rl, "carol", true).allowed);

    /* the key is "<prefix>:<key>", expires with the window, holds at most `limit` entries */
    char key[128];
    snprintf(key, sizeof key, "%s:carol", f.prefix);
    raw_t ttl = {0}, card = {0};
    assert_int_equal(wy_redis_command(f.r, on_raw, &ttl, "PTTL %s", key), WY_OK);
    assert_int_equal(wy_redis_command(f.r, on_raw, &card, "ZCARD %s", key), WY_OK);
    RUN_UNTIL(&f, ttl.calls == 1 && card.calls == 1);
    assert_true(ttl.integer > 0 && ttl.integer <= 5000);
    assert_int_equal(card.integer, 1);

    assert_int_equal(wy_ratelimit_reset(rl, "carol"), WY_OK);
    assert_true(call(&f, rl, "carol", true).allowed);
    wy_ratelimit_free(rl);
    fx_done(&f);
}

static void test_script_reloaded_after_flush(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    wy_ratelimit_t *rl;
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 5, 1000, &rl), WY_OK);
    assert_true(call(&f, rl, "d", true).allowed);
    raw_t fl = {0};
    assert_int_equal(wy_redis_command(f.r, on_raw, &fl, "SCRIPT FLUSH"), WY_OK);
    RUN_UNTIL(&f, fl.calls == 1);
    res_t x = call(&f, rl, "d", true); /* NOSCRIPT -> EVAL */
    assert_int_equal(x.err, WY_OK);
    assert_true(x.allowed);
    wy_ratelimit_free(rl);
    fx_done(&f);
}

static void test_free_with_pending(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    wy_ratelimit_t *rl;
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 5, 1000, &rl), WY_OK);
    res_t a = {0}, b = {0};
    assert_int_equal(wy_ratelimit_hit(rl, "e", on_res, &a), WY_OK);
    assert_int_equal(wy_ratelimit_peek(rl, "e", on_res, &b), WY_OK);
    assert_int_equal(wy_ratelimit_reset(rl, "e"), WY_OK);
    wy_ratelimit_free(rl); /* released after the three answers */
    RUN_UNTIL(&f, a.calls == 1 && b.calls == 1);
    assert_int_equal(a.err, WY_OK);
    assert_true(a.allowed);

    /* pending calls canceled by closing Redis still get their (fail-open) callback */
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 5, 1000, &rl), WY_OK);
    res_t c = {0};
    assert_int_equal(wy_ratelimit_hit(rl, "e", on_res, &c), WY_OK);
    wy_ratelimit_free(rl);
    wy_redis_close(f.r, on_closed, &f);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.err, WY_ECANCELED);
    assert_true(c.allowed);
    RUN_UNTIL(&f, f.closed);
    uv_close((uv_handle_t *)&f.wait, NULL);
    wt_loop_done(&f.wl);
}

static void test_redis_down_fails_open(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", wt_closed_port());
    fx_t f;
    fx_init_url(&f, url, false);
    wy_ratelimit_t *rl;
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 1, 1000, &rl), WY_OK);
    res_t x = {0};
    /* fails open: reported through the return (no callback), meaning "allowed" */
    assert_int_equal(wy_ratelimit_hit(rl, "k", on_res, &x), WY_EUNAVAIL);
    assert_int_equal(wy_ratelimit_peek(rl, "k", on_res, &x), WY_EUNAVAIL);
    assert_int_equal(wy_ratelimit_reset(rl, "k"), WY_EUNAVAIL);
    uv_run(&f.wl.loop, UV_RUN_NOWAIT); /* a stray callback would run here */
    assert_int_equal(x.calls, 0);
    wy_ratelimit_free(rl);
    fx_done(&f);
}

static void test_bad_args(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    wy_ratelimit_t *rl = NULL;
    char longkey[WY_RATELIMIT_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 0, 1000, &rl), WY_EINVAL);
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 1, 0, &rl), WY_EINVAL);
    assert_int_equal(wy_ratelimit_new(f.r, "", 1, 1000, &rl), WY_EINVAL);
    assert_int_equal(wy_ratelimit_new(f.r, f.prefix, 1, 1000, &rl), WY_OK);
    res_t x = {0};
    assert_int_equal(wy_ratelimit_hit(rl, "", on_res, &x), WY_EINVAL);
    assert_int_equal(wy_ratelimit_hit(rl, longkey, on_res, &x), WY_EINVAL);
    assert_int_equal(wy_ratelimit_hit(rl, "k", NULL, &x), WY_EINVAL);
    assert_int_equal(wy_ratelimit_reset(rl, longkey), WY_EINVAL);
    longkey[WY_RATELIMIT_KEY_MAX] = '\0'; /* exactly at the bound is fine */
    assert_true(call(&f, rl, longkey, true).allowed);
    assert_int_equal(x.calls, 0);
    wy_ratelimit_free(rl);
    fx_done(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_then_window_passes),
        cmocka_unit_test(test_peek_does_not_count),
        cmocka_unit_test(test_reset_and_key_ttl),
        cmocka_unit_test(test_script_reloaded_after_flush),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_redis_down_fails_open),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
