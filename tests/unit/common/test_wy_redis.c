/* Unit tests of wy_redis against a real Redis named by WY_REDIS_URL (redis://127.0.0.1:PORT/DB). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "wy_test.h"

#include "wy_redis.h"

static const char *redis_url(void)
{
    return wt_env("WY_REDIS_URL", "Redis", "redis://127.0.0.1:PORT/0");
}

/* A unique key prefix per run, so parallel runs on one Redis do not collide. */
static char prefix[64];

typedef struct {
    wt_loop_t lp;
    wy_redis_t *r;
    int ups, downs;
} fx_t;

static void on_state(wy_redis_t *r, int health, void *ud)
{
    fx_t *f = ud;
    (void)r;
    if (health == WY_OK)
        f->ups++;
    else
        f->downs++;
}

static void fx_init(fx_t *f)
{
    memset(f, 0, sizeof *f);
    wt_loop_init(&f->lp, 15000);
}

#define RUN_UNTIL(f, cond) WT_RUN_UNTIL(&(f)->lp, cond)

static void fx_open(fx_t *f, const char *url, const wy_redis_opts_t *o_in)
{
    wy_redis_opts_t o = {0};
    const char *err = NULL;
    if (o_in)
        o = *o_in;
    o.on_state = on_state;
    o.state_ud = f;
    assert_int_equal(wy_redis_create(&f->lp.loop, url, &o, &f->r, &err), WY_OK);
}

/* A fixture connected to the test Redis (opts may be NULL), once it is up. */
static void fx_up(fx_t *f, const wy_redis_opts_t *o)
{
    fx_init(f);
    fx_open(f, redis_url(), o);
    RUN_UNTIL(f, f->ups == 1);
}

static void fx_done(fx_t *f)
{
    WT_CLOSE_AND_DONE(&f->lp, wy_redis_close, f->r);
}

/* One completed command: status, a copy of the reply's type/string/integer. */
typedef struct {
    int calls;
    int status;
    int type;
    long long integer;
    char str[256];
    size_t len;
} res_t;

static void on_res(int status, redisReply *reply, void *ud)
{
    res_t *x = ud;
    x->calls++;
    x->status = status;
    x->type = reply ? reply->type : -1;
    x->str[0] = '\0';
    x->len = 0;
    if (reply && reply->str) {
        x->len = reply->len < sizeof x->str - 1 ? reply->len : sizeof x->str - 1;
        memcpy(x->str, reply->str, x->len);
        x->str[x->len] = '\0';
    }
    if (reply)
        x->integer = reply->integer;
}

static void test_bad_urls(void **state)
{
    (void)state;
    static const struct {
        const char *url, *needle;
    } cases[] = {
        {"", "empty"},
        {"http://x:1", "redis://"},
        {"redis://127.0.0.1", "missing port"},
        {"redis://127.0.0.1:", "missing port"},
        {"redis://127.0.0.1:0", "port"},
        {"redis://127.0.0.1:70000", "port"},
        {"redis://127.0.0.1:6379/x", "database"},
        {"redis://:6379", "missing host"},
        {"redis://pw@h:6379", "password"},
        {"redis://:%zz@h:6379", "escape"},
        {"rediss://h:6379", "TLS"},
    };
    uv_loop_t loop;
    uv_loop_init(&loop);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wy_redis_t *r = (void *)1;
        const char *err = NULL;
        assert_int_equal(wy_redis_create(&loop, cases[i].url, NULL, &r, &err), WY_EINVAL);
        assert_null(r);
        assert_non_null(err);
        if (strstr(err, cases[i].needle) == NULL)
            fail_msg("url '%s': error '%s' does not mention '%s'", cases[i].url, err,
                     cases[i].needle);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_set_get_and_health(void **state)
{
    (void)state;
    fx_t f;
    res_t set = {0}, get = {0}, del = {0};
    char key[128];
    fx_init(&f);
    fx_open(&f, redis_url(), NULL);
    assert_int_equal(wy_redis_health(f.r), WY_EUNAVAIL);
    RUN_UNTIL(&f, f.ups == 1);
    assert_int_equal(wy_redis_health(f.r), WY_OK);

    snprintf(key, sizeof key, "%s:k1", prefix);
    assert_int_equal(wy_redis_command(f.r, on_res, &set, "SET %s %b", key, "v\0al", (size_t)4),
                     WY_OK);
    const char *argv[] = {"GET", key};
    assert_int_equal(wy_redis_command_argv(f.r, on_res, &get, 2, argv, NULL), WY_OK);
    assert_int_equal(wy_redis_inflight(f.r), 2);
    RUN_UNTIL(&f, get.calls == 1);
    assert_int_equal(set.calls, 1);
    assert_int_equal(set.status, WY_OK);
    assert_string_equal(set.str, "OK");
    assert_int_equal(get.status, WY_OK);
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_int_equal(get.len, 4);
    assert_memory_equal(get.str, "v\0al", 4);
    assert_int_equal(wy_redis_inflight(f.r), 0);

    assert_int_equal(wy_redis_command(f.r, on_res, &del, "DEL %s", key), WY_OK);
    RUN_UNTIL(&f, del.calls == 1);
    assert_int_equal(del.integer, 1);
    fx_done(&f);
}

typedef struct {
    int done;
    int ok;
    long long max;
} many_t;

static void on_incr(int status, redisReply *reply, void *ud)
{
    many_t *m = ud;
    m->done++;
    if (status == WY_OK && reply->type == REDIS_REPLY_INTEGER) {
        m->ok++;
        if (reply->integer > m->max)
            m->max = reply->integer;
    }
}

static void test_many_in_flight(void **state)
{
    (void)state;
    fx_t f;
    many_t m = {0};
    res_t del = {0};
    char key[128];
    enum { N = 2000 };
    fx_up(&f, NULL);
    snprintf(key, sizeof key, "%s:ctr", prefix);
    for (int i = 0; i < N; i++)
        assert_int_equal(wy_redis_command(f.r, on_incr, &m, "INCR %s", key), WY_OK);
    assert_int_equal(wy_redis_inflight(f.r), N);
    RUN_UNTIL(&f, m.done == N);
    assert_int_equal(m.ok, N);
    assert_int_equal(m.max, N);
    assert_int_equal(wy_redis_command(f.r, on_res, &del, "DEL %s", key), WY_OK);
    RUN_UNTIL(&f, del.calls == 1);
    fx_done(&f);
}

static void test_inflight_bound(void **state)
{
    (void)state;
    fx_t f;
    res_t a = {0}, b = {0}, c = {0};
    wy_redis_opts_t o = {.max_inflight = 2};
    fx_up(&f, &o);
    assert_int_equal(wy_redis_command(f.r, on_res, &a, "PING"), WY_OK);
    assert_int_equal(wy_redis_command(f.r, on_res, &b, "PING"), WY_OK);
    assert_int_equal(wy_redis_command(f.r, on_res, &c, "PING"), WY_EBUSY);
    RUN_UNTIL(&f, a.calls == 1 && b.calls == 1);
    assert_int_equal(wy_redis_command(f.r, on_res, &c, "PING"), WY_OK);
    RUN_UNTIL(&f, c.calls == 1);
    assert_int_equal(c.status, WY_OK);
    fx_done(&f);
}

static void test_error_reply(void **state)
{
    (void)state;
    fx_t f;
    res_t set = {0}, incr = {0}, unk = {0}, after = {0};
    char key[128];
    fx_up(&f, NULL);
    snprintf(key, sizeof key, "%s:str", prefix);
    assert_int_equal(wy_redis_command(f.r, on_res, &set, "SET %s notanumber", key), WY_OK);
    assert_int_equal(wy_redis_command(f.r, on_res, &incr, "INCR %s", key), WY_OK);
    assert_int_equal(wy_redis_command(f.r, on_res, &unk, "NOSUCHCOMMAND"), WY_OK);
    assert_int_equal(wy_redis_command(f.r, on_res, &after, "DEL %s", key), WY_OK);
    RUN_UNTIL(&f, after.calls == 1);
    assert_int_equal(incr.status, WY_EIO);
    assert_int_equal(incr.type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(incr.str, "not an integer"));
    assert_int_equal(unk.status, WY_EIO);
    assert_non_null(strstr(unk.str, "unknown command"));
    /* an error reply does not hurt the connection */
    assert_int_equal(after.status, WY_OK);
    assert_int_equal(after.integer, 1);
    assert_int_equal(wy_redis_health(f.r), WY_OK);
    assert_int_equal(f.downs, 0);
    fx_done(&f);
}

static void on_tick(uv_timer_t *t)
{
    (*(int *)t->data)++;
}

static void test_unreachable_fails_fast(void **state)
{
    (void)state;
    fx_t f;
    res_t x = {0};
    char url[64];
    int ticks = 0;
    uv_timer_t tick;
    wy_redis_opts_t o = {.backoff_min_ms = 10, .backoff_max_ms = 40};
    fx_init(&f);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", wt_closed_port());
    fx_open(&f, url, &o);
    assert_int_equal(wy_redis_command(f.r, on_res, &x, "PING"), WY_EUNAVAIL);
    /* let several reconnect attempts fail; it must stay down and keep refusing at once */
    uv_timer_init(&f.lp.loop, &tick);
    tick.data = &ticks;
    uv_timer_start(&tick, on_tick, 50, 50);
    RUN_UNTIL(&f, ticks == 6);
    uv_close((uv_handle_t *)&tick, NULL);
    assert_int_equal(wy_redis_health(f.r), WY_EUNAVAIL);
    assert_int_equal(wy_redis_command(f.r, on_res, &x, "PING"), WY_EUNAVAIL);
    const char *argv[] = {"PING"};
    assert_int_equal(wy_redis_command_argv(f.r, on_res, &x, 1, argv, NULL), WY_EUNAVAIL);
    assert_int_equal(x.calls, 0);
    assert_int_equal(f.ups, 0);
    fx_done(&f);
}

static void test_cluster_bad_urls(void **state)
{
    (void)state;
    static const struct {
        const char *url, *needle;
    } cases[] = {
        {"redis+cluster://", "missing host"},
        {"redis+cluster://127.0.0.1:7000/0", "database"},
        {"redis+cluster://127.0.0.1:7000,127.0.0.1", "missing port"},
        {"redis+cluster://127.0.0.1:7000,", "missing host"},
        {"redis+cluster://:%zz@127.0.0.1:7000", "escape"},
        {"redis+cluster://h:1,h:2,h:3,h:4,h:5,h:6,h:7,h:8,h:9,h:10,h:11,h:12,h:13,h:14,h:15,"
         "h:16,h:17",
         "16 seed"},
    };
    uv_loop_t loop;
    uv_loop_init(&loop);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wy_redis_t *r = (void *)1;
        const char *err = NULL;
        assert_int_equal(wy_redis_create(&loop, cases[i].url, NULL, &r, &err), WY_EINVAL);
        assert_null(r);
        assert_non_null(err);
        if (strstr(err, cases[i].needle) == NULL)
            fail_msg("url '%s': error '%s' does not mention '%s'", cases[i].url, err,
                     cases[i].needle);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The slots Redis' CLUSTER KEYSLOT answers for these keys (hash tag rules of the cluster
 * specification: the first '{', the next '}', a non-empty tag). */
static void test_key_slot(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        int slot;
    } cases[] = {
        {"123456789", 12739}, {"foo", 12182},       {"{foo}bar", 12182},     {"x{foo}y{z}", 12182},
        {"{}foo", 9500},      {"foo{}{bar}", 8363}, {"foo{{bar}}zap", 4015}, {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = wy_redis_key_slot(cases[i].key, strlen(cases[i].key));
        if (got != cases[i].slot)
            fail_msg("slot of '%s': %d, Redis says %d", cases[i].key, got, cases[i].slot);
    }
    /* Every key of one lobby account is in the account's slot. */
    int a = wy_redis_key_slot("sess:{acct-1}:acct", 18);
    assert_int_equal(wy_redis_key_slot("sess:{acct-1}:epoch", 19), a);
    assert_int_equal(wy_redis_key_slot("sess:{acct-1}:s:0f0e", 20), a);
    assert_int_equal(wy_redis_key_slot("acct-1", 6), a);
}

/* A cluster handle whose seeds do not answer: created at once, refuses commands (never calls
 * back) until a slot map is loaded, reports down, closes cleanly. */
static void test_cluster_unreachable_fails_fast(void **state)
{
    (void)state;
    fx_t f;
    res_t x = {0};
    char url[96];
    int ticks = 0;
    uv_timer_t tick;
    wy_redis_opts_t o = {.backoff_min_ms = 10, .backoff_max_ms = 40};
    fx_init(&f);
    snprintf(url, sizeof url, "redis+cluster://127.0.0.1:%d,127.0.0.1:%d", wt_closed_port(),
             wt_closed_port());
    fx_open(&f, url, &o);
    assert_int_equal(wy_redis_command(f.r, on_res, &x, "SET %s %s", "k", "v"), WY_EUNAVAIL);
    uv_timer_init(&f.lp.loop, &tick);
    tick.data = &ticks;
    uv_timer_start(&tick, on_tick, 50, 50);
    RUN_UNTIL(&f, ticks == 4);
    uv_close((uv_handle_t *)&tick, NULL);
    assert_int_equal(wy_redis_health(f.r), WY_EUNAVAIL);
    const char *argv[] = {"GET", "k"};
    assert_int_equal(wy_redis_command_argv(f.r, on_res, &x, 2, argv, NULL), WY_EUNAVAIL);
    assert_int_equal(x.calls, 0);
    assert_int_equal(f.ups, 0);
    fx_done(&f);
}

/* A cluster URL naming a Redis without cluster mode: CLUSTER SLOTS is refused, so the handle
 * never routes (clear log line, WY_EUNAVAIL), and closes cleanly. */
static void test_cluster_url_on_a_plain_redis(void **state)
{
    (void)state;
    fx_t f;
    res_t x = {0};
    char url[160];
    int ticks = 0;
    uv_timer_t tick;
    const char *plain = redis_url();
    const char *hp = strstr(plain, "://");
    assert_non_null(hp);
    hp += 3;
    size_t n = strcspn(hp, "/");
    snprintf(url, sizeof url, "redis+cluster://%.*s", (int)n, hp);
    fx_init(&f);
    fx_open(&f, url, NULL);
    uv_timer_init(&f.lp.loop, &tick);
    tick.data = &ticks;
    uv_timer_start(&tick, on_tick, 100, 100);
    RUN_UNTIL(&f, ticks == 5);
    uv_close((uv_handle_t *)&tick, NULL);
    assert_int_equal(wy_redis_health(f.r), WY_EUNAVAIL);
    assert_int_equal(wy_redis_command(f.r, on_res, &x, "PING"), WY_EUNAVAIL);
    assert_int_equal(x.calls, 0);
    fx_done(&f);
}

static void test_timeout_then_reconnect(void **state)
{
    (void)state;
    fx_t f;
    res_t blk = {0}, behind = {0}, later = {0};
    char key[128];
    wy_redis_opts_t o = {.backoff_min_ms = 20};
    fx_up(&f, &o);
    snprintf(key, sizeof key, "%s:never", prefix);
    /* BLPOP blocks server side for 5 s: far longer than its own 100 ms timeout */
    const char *argv[] = {"BLPOP", key, "5"};
    assert_int_equal(wy_redis_command_argv_timeout(f.r, 100, on_res, &blk, 3, argv, NULL), WY_OK);
    assert_int_equal(wy_redis_command(f.r, on_res, &behind, "PING"), WY_OK);
    RUN_UNTIL(&f, blk.calls == 1);
    assert_int_equal(blk.status, WY_ETIMEDOUT);
    /* the command pipelined behind it shared the dropped connection */
    assert_int_equal(behind.calls, 1);
    assert_int_equal(behind.status, WY_EUNAVAIL);
    assert_int_equal(f.downs, 1);
    RUN_UNTIL(&f, f.ups == 2);
    assert_int_equal(wy_redis_command(f.r, on_res, &later, "ECHO %s", "back"), WY_OK);
    RUN_UNTIL(&f, later.calls == 1);
    assert_int_equal(later.status, WY_OK);
    assert_string_equal(later.str, "back");
    assert_int_equal(blk.calls, 1); /* exactly once */
    fx_done(&f);
}

static void on_id(int status, redisReply *reply, void *ud)
{
    long long *id = ud;
    assert_int_equal(status, WY_OK);
    *id = reply->integer;
}

static void test_reconnect_after_kill(void **state)
{
    (void)state;
    fx_t f, killer;
    long long id = 0;
    res_t kill = {0}, after = {0};
    wy_redis_opts_t o = {.backoff_min_ms = 20};
    fx_up(&f, &o);
    assert_int_equal(wy_redis_command(f.r, on_id, &id, "CLIENT ID"), WY_OK);
    RUN_UNTIL(&f, id != 0);

    /* a second client on its own loop kills the first one's connection server side */
    fx_init(&killer);
    fx_open(&killer, redis_url(), NULL);
    RUN_UNTIL(&killer, killer.ups == 1);
    assert_int_equal(wy_redis_command(killer.r, on_res, &kill, "CLIENT KILL ID %lld", id), WY_OK);
    RUN_UNTIL(&killer, kill.calls == 1);
    assert_int_equal(kill.status, WY_OK);
    fx_done(&killer);

    RUN_UNTIL(&f, f.downs == 1);
    assert_int_equal(wy_redis_health(f.r), WY_EUNAVAIL);
    RUN_UNTIL(&f, f.ups == 2);
    assert_int_equal(wy_redis_health(f.r), WY_OK);
    assert_int_equal(wy_redis_command(f.r, on_res, &after, "PING"), WY_OK);
    RUN_UNTIL(&f, after.calls == 1);
    assert_int_equal(after.status, WY_OK);
    fx_done(&f);
}

typedef struct {
    fx_t *f;
    int calls;
    int status;
    int reentrant_rc;
} cancel_t;

static void on_cancel(int status, redisReply *reply, void *ud)
{
    cancel_t *c = ud;
    assert_null(reply);
    c->calls++;
    c->status = status;
    c->reentrant_rc = wy_redis_command(c->f->r, on_res, NULL, "PING");
}

static void test_close_cancels_pending(void **state)
{
    (void)state;
    fx_t f;
    cancel_t c[3] = {{&f, 0, 0, 0}, {&f, 0, 0, 0}, {&f, 0, 0, 0}};
    char key[128];
    fx_up(&f, NULL);
    snprintf(key, sizeof key, "%s:never2", prefix);
    for (int i = 0; i < 3; i++)
        assert_int_equal(wy_redis_command(f.r, on_cancel, &c[i], "BLPOP %s 5", key), WY_OK);
    wy_redis_close(f.r, wt_on_closed, &f.lp);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].status, WY_ECANCELED);
        assert_int_equal(c[i].reentrant_rc, WY_ECANCELED);
    }
    RUN_UNTIL(&f, f.lp.closed);
    f.r = NULL;
    fx_done(&f);
}

/* Closing from inside a reply callback must not free anything the callback path still uses. */
static void on_close_in_cb(int status, redisReply *reply, void *ud)
{
    fx_t *f = ud;
    (void)reply;
    assert_int_equal(status, WY_OK);
    wy_redis_close(f->r, wt_on_closed, &f->lp);
}

static void test_close_inside_callback(void **state)
{
    (void)state;
    fx_t f;
    res_t second = {0};
    fx_up(&f, NULL);
    assert_int_equal(wy_redis_command(f.r, on_close_in_cb, &f, "PING"), WY_OK);
    assert_int_equal(wy_redis_command(f.r, on_res, &second, "BLPOP %s:x 5", prefix), WY_OK);
    RUN_UNTIL(&f, f.lp.closed);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.status, WY_ECANCELED);
    f.r = NULL;
    fx_done(&f);
}

/* ---------------------------------------------------------------- Lua scripts */

/* A synchronous command on f's connection (runs the loop until its answer). */
static void sync_cmd(fx_t *f, res_t *x, const char *fmt, const char *arg)
{
    memset(x, 0, sizeof *x);
    assert_int_equal(wy_redis_command(f->r, on_res, x, fmt, arg), WY_OK);
    RUN_UNTIL(f, x->calls == 1);
}

/* calls=N of one command in INFO commandstats, read in the callback (the text is long). */
typedef struct {
    const char *needle;
    int calls;
    long long n;
} stat_t;

static void on_info(int status, redisReply *reply, void *ud)
{
    stat_t *x = ud;
    x->calls++;
    x->n = -1;
    if (status != WY_OK || reply->type != REDIS_REPLY_STRING)
        return;
    const char *p = strstr(reply->str, x->needle);
    x->n = p ? atoll(p + strlen(x->needle)) : 0; /* not seen yet: 0 */
}

static long long cmd_calls(fx_t *f, const char *cmd)
{
    char needle[64];
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", cmd);
    stat_t x = {.needle = needle};
    assert_int_equal(wy_redis_command(f->r, on_info, &x, "INFO commandstats"), WY_OK);
    RUN_UNTIL(f, x.calls == 1);
    assert_true(x.n >= 0);
    return x.n;
}

/* Reply of a script returning {KEYS[1], ARGV[1], #ARGV}: the three parts, copied. */
typedef struct {
    int calls, status;
    char key[64], arg[64], err[256];
    size_t arg_len;
    long long nargs;
} echo_t;

static void on_echo(int status, redisReply *reply, void *ud)
{
    echo_t *x = ud;
    x->calls++;
    x->status = status;
    if (status == WY_EIO && reply && reply->type == REDIS_REPLY_ERROR)
        snprintf(x->err, sizeof x->err, "%s", reply->str);
    if (status != WY_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    snprintf(x->key, sizeof x->key, "%s", reply->element[0]->str);
    x->arg_len = reply->element[1]->len < sizeof x->arg ? reply->element[1]->len : sizeof x->arg;
    memcpy(x->arg, reply->element[1]->str, x->arg_len);
    x->nargs = reply->element[2]->integer;
}

/* Sends the echo script with KEYS {"k1"} and ARGV {"a\0b", "c"}. */
static void start_echo(fx_t *f, wy_redis_script_t *s, echo_t *x)
{
    const char *argv[3] = {"k1", "a\0b", "c"};
    const size_t lens[3] = {2, 3, 1};
    memset(x, 0, sizeof *x);
    assert_int_equal(wy_redis_eval(f->r, s, 0, on_echo, x, 1, 3, argv, lens), WY_OK);
}

/* Waits for the echo and checks that every part came back intact. */
static void check_echo(fx_t *f, echo_t *x)
{
    RUN_UNTIL(f, x->calls == 1);
    assert_int_equal(x->status, WY_OK);
    assert_string_equal(x->key, "k1");
    assert_int_equal(x->arg_len, 3);
    assert_memory_equal(x->arg, "a\0b", 3);
    assert_int_equal(x->nargs, 2);
}

static void run_echo(fx_t *f, wy_redis_script_t *s, echo_t *x)
{
    start_echo(f, s, x);
    check_echo(f, x);
}

/* EVALSHA once Redis has the script (the text is not sent again); after SCRIPT FLUSH the same
 * call still succeeds: NOSCRIPT is answered by EVAL, which reloads the script. */
static void test_script_evalsha_and_flush(void **state)
{
    (void)state;
    fx_t f;
    res_t x;
    echo_t e;
    fx_up(&f, NULL);
    /* Unique text per run, so no other test has loaded this script. */
    char *lua = wy_sprintf("-- %s\nreturn {KEYS[1], ARGV[1], #ARGV}", prefix);
    wy_redis_script_t *s = wy_redis_script_new(lua);
    const char *sha = wy_redis_script_sha(s);
    assert_int_equal(strlen(sha), 40);

    /* The locally computed SHA-1 is Redis' own. */
    sync_cmd(&f, &x, "SCRIPT LOAD %s", lua);
    assert_int_equal(x.status, WY_OK);
    assert_string_equal(x.str, sha);

    long long evals = cmd_calls(&f, "eval");
    run_echo(&f, s, &e);
    run_echo(&f, s, &e);
    assert_int_equal(cmd_calls(&f, "eval"), evals); /* cached: EVALSHA only */

    for (int round = 0; round < 2; round++) {
        sync_cmd(&f, &x, "SCRIPT FLUSH", NULL);
        sync_cmd(&f, &x, "SCRIPT EXISTS %s", sha);
        assert_int_equal(x.type, REDIS_REPLY_ARRAY);
        run_echo(&f, s, &e); /* NOSCRIPT -> EVAL, invisible to the caller */
        assert_int_equal(cmd_calls(&f, "eval"), evals + round + 1);
        run_echo(&f, s, &e); /* loaded again by that EVAL */
        assert_int_equal(cmd_calls(&f, "eval"), evals + round + 1);
    }
    wy_redis_script_free(s);
    wy_free(lua);
    fx_done(&f);
}

/* Script errors reach the caller as WY_EIO with Redis' message; bad arguments are refused; a
 * script freed by its owner while a call is in flight stays valid for that call's retry. */
static void test_script_errors_and_lifetime(void **state)
{
    (void)state;
    fx_t f;
    res_t x;
    echo_t e;
    fx_up(&f, NULL);

    wy_redis_script_t *bad = wy_redis_script_new("return redis.error_reply('WYBAD no luck')");
    memset(&e, 0, sizeof e);
    assert_int_equal(wy_redis_eval(f.r, bad, 0, on_echo, &e, 0, 0, NULL, NULL), WY_OK);
    RUN_UNTIL(&f, e.calls == 1);
    assert_int_equal(e.status, WY_EIO);
    assert_non_null(strstr(e.err, "WYBAD no luck"));
    const char *one[1] = {"k"};
    assert_int_equal(wy_redis_eval(f.r, bad, 0, on_echo, &e, 2, 1, one, NULL), WY_EINVAL);
    assert_int_equal(wy_redis_eval(f.r, bad, 0, on_echo, &e, -1, 1, one, NULL), WY_EINVAL);
    assert_int_equal(wy_redis_eval(f.r, NULL, 0, on_echo, &e, 0, 0, NULL, NULL), WY_EINVAL);
    wy_redis_script_free(bad);

    char *lua = wy_sprintf("-- %s lifetime\nreturn {KEYS[1], ARGV[1], #ARGV}", prefix);
    wy_redis_script_t *s = wy_redis_script_new(lua);
    wy_free(lua);
    sync_cmd(&f, &x, "SCRIPT FLUSH", NULL);
    start_echo(&f, s, &e);
    wy_redis_script_free(s); /* the call holds its own reference */
    check_echo(&f, &e);
    fx_done(&f);
}

int main(void)
{
    char uuid[37];
    wy_uuid4(uuid);
    snprintf(prefix, sizeof prefix, "wytest:%s", uuid);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_set_get_and_health),
        cmocka_unit_test(test_many_in_flight),
        cmocka_unit_test(test_inflight_bound),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_unreachable_fails_fast),
        cmocka_unit_test(test_cluster_bad_urls),
        cmocka_unit_test(test_key_slot),
        cmocka_unit_test(test_cluster_unreachable_fails_fast),
        cmocka_unit_test(test_cluster_url_on_a_plain_redis),
        cmocka_unit_test(test_timeout_then_reconnect),
        cmocka_unit_test(test_reconnect_after_kill),
        cmocka_unit_test(test_close_cancels_pending),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_script_evalsha_and_flush),
        cmocka_unit_test(test_script_errors_and_lifetime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
