/* Unit tests of wy_grpc: an in-process server and client over loopback on one loop;
 * a raw gRPC core client on its own thread for bytes our client cannot send. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "wy_test.h"

#include <arpa/inet.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "envelope.pb-c.h"
#include "health.pb-c.h"
#include "wy_grpc.h"
#include "wy_log.h"
#include "wy_metrics.h"

#define ECHO_PATH   "/wyvern.test.Echo/Echo"
#define CHECK_PATH  "/grpc.health.v1.Health/Check"
#define WATCHDOG_MS 15000

enum mode { M_ECHO, M_ERROR, M_HOLD, M_ASYNC };

typedef struct {
    uv_loop_t loop;
    wy_grpc_rt_t *rt;
    wy_grpc_server_t *srv;
    wy_grpc_channel_t *ch;
    int port;
    enum mode mode;
    int handled;
    wy_grpc_call_id_t held[8];
    int n_held;
    char seen_auth[64];
    char seen_method[64];
    int64_t seen_deadline;
    uv_timer_t async_timer;
    uv_timer_t tick; /* wakes the loop while waiting on state no hop announces */
    bool srv_stopped, rt_closed;
} fx_t;

typedef struct {
    bool done;
    int err, status;
    char msg[256];
    char key[64];
    size_t payload_len;
    int health;
} res_t;

/* ------------------------------------------------------------------ helpers */

/* Every test runs twice: with the CQ thread (g_drive false) and in drive mode, where the
 * loop must be run through the runtime (g_driver, until its close callback). */
static bool g_drive;
static wy_grpc_rt_t *g_driver;

static void on_watchdog(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Run the loop until pred(arg) holds; fails the test after WATCHDOG_MS instead of hanging. */
static void run_pred(uv_loop_t *loop, bool (*pred)(void *), void *arg)
{
    if (!g_driver) {
        wt_run_pred(loop, pred, arg, WATCHDOG_MS, "a gRPC test step");
        return;
    }
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_watchdog, WATCHDOG_MS, 0);
    while (!pred(arg) && !expired) {
        if (g_driver)
            wy_grpc_rt_run(g_driver, UV_RUN_ONCE);
        else
            uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    if (g_driver)
        wy_grpc_rt_run(g_driver, UV_RUN_NOWAIT);
    else
        uv_run(loop, UV_RUN_NOWAIT);
    if (expired)
        fail_msg("timed out after %d ms waiting for: a gRPC test step", WATCHDOG_MS);
}

static bool flag_set(void *arg)
{
    return *(const bool *)arg;
}

static void run_until(fx_t *fx, const bool *flag)
{
    run_pred(&fx->loop, flag_set, (void *)flag);
}

typedef struct {
    fx_t *fx;
    int n;
} handled_t;

static bool handled_at_least(void *arg)
{
    handled_t *h = arg;
    return h->fx->handled >= h->n;
}

static void wait_handled(fx_t *fx, int n)
{
    handled_t h = {fx, n};
    run_pred(&fx->loop, handled_at_least, &h);
}

static void handler(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);

static void fx_open(fx_t *fx, const wy_grpc_server_opts_t *sopts,
                    const wy_grpc_channel_opts_t *copts)
{
    memset(fx, 0, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    wy_grpc_rt_opts_t ro = {.drive = g_drive};
    assert_int_equal(wy_grpc_rt_new_opts(&fx->loop, &ro, &fx->rt), WY_OK);
    g_driver = g_drive ? fx->rt : NULL;
    assert_int_equal(wy_grpc_server_new(fx->rt, sopts, &fx->srv), WY_OK);
    assert_int_equal(
        wy_grpc_server_register(fx->srv, ECHO_PATH, &wyvern__envelope__descriptor, handler, fx),
        WY_OK);
    const char *err = NULL;
    assert_int_equal(wy_grpc_server_start(fx->srv, "127.0.0.1:0", &fx->port, &err), WY_OK);
    assert_true(fx->port > 0);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", fx->port);
    assert_int_equal(wy_grpc_channel_new(fx->rt, target, copts, &fx->ch), WY_OK);
    uv_timer_init(&fx->loop, &fx->async_timer);
    fx->async_timer.data = fx;
    uv_timer_init(&fx->loop, &fx->tick);
}

static void srv_stopped_cb(void *arg)
{
    ((fx_t *)arg)->srv_stopped = true;
}

static void rt_closed_cb(void *arg)
{
    ((fx_t *)arg)->rt_closed = true;
    g_driver = NULL; /* freed: the loop runs on as a plain libuv loop */
}

static void fx_stop_server(fx_t *fx, unsigned grace_ms)
{
    assert_int_equal(wy_grpc_server_stop(fx->srv, grace_ms, srv_stopped_cb, fx), WY_OK);
    run_until(fx, &fx->srv_stopped);
    fx->srv = NULL;
}

static void fx_close(fx_t *fx)
{
    if (fx->ch)
        wy_grpc_channel_close(fx->ch);
    if (fx->srv)
        fx_stop_server(fx, 100);
    assert_int_equal(wy_grpc_rt_close(fx->rt, rt_closed_cb, fx), WY_OK);
    run_until(fx, &fx->rt_closed);
    uv_close((uv_handle_t *)&fx->async_timer, NULL);
    uv_close((uv_handle_t *)&fx->tick, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void reply_cb(int err, int status, const char *message, const ProtobufCMessage *resp,
                     void *arg)
{
    res_t *r = arg;
    r->done = true;
    r->err = err;
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "%s", message);
    if (resp && resp->descriptor == &wyvern__envelope__descriptor) {
        const Wyvern__Envelope *e = (const Wyvern__Envelope *)resp;
        snprintf(r->key, sizeof r->key, "%s", e->key);
        r->payload_len = e->payload.len;
    } else if (resp) {
        r->health = ((const Grpc__Health__V1__HealthCheckResponse *)resp)->status;
    }
}

static int call_echo(fx_t *fx, const char *method, const char *key, size_t payload_len,
                     unsigned deadline_ms, res_t *r)
{
    static uint8_t payload[8192];
    Wyvern__Envelope e = WYVERN__ENVELOPE__INIT;
    e.event_id = "e-1";
    e.key = (char *)key;
    e.timestamp_ms = 42;
    e.payload.data = payload;
    e.payload.len = payload_len;
    wy_grpc_md_t md[] = {{"authorization", "Bearer t0ken"}};
    return wy_grpc_call(fx->ch, method, &e.base, &wyvern__envelope__descriptor, deadline_ms, md, 1,
                        reply_cb, r);
}

/* An echo call that must be accepted; waits for its reply. */
static void echo_sync(fx_t *fx, const char *key, size_t payload_len, unsigned deadline_ms, res_t *r)
{
    assert_int_equal(call_echo(fx, ECHO_PATH, key, payload_len, deadline_ms, r), WY_OK);
    run_until(fx, &r->done);
}

/* Puts a fresh fixture in M_HOLD and starts one echo call ("k", no payload) that must be
 * accepted; returns once the handler holds it. */
static void hold_one(fx_t *fx, unsigned deadline_ms, res_t *r)
{
    fx->mode = M_HOLD;
    assert_int_equal(call_echo(fx, ECHO_PATH, "k", 0, deadline_ms, r), WY_OK);
    wait_handled(fx, 1);
}

static void async_timer_cb(uv_timer_t *t)
{
    fx_t *fx = t->data;
    Wyvern__Envelope e = WYVERN__ENVELOPE__INIT;
    e.key = "late";
    for (int i = 0; i < fx->n_held; i++)
        assert_int_equal(wy_grpc_reply(fx->held[i], &e.base), WY_OK);
    fx->n_held = 0;
}

static void handler(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    fx_t *fx = arg;
    fx->handled++;
    const char *v;
    size_t n;
    if (wy_grpc_call_metadata(call, "Authorization", &v, &n) == WY_OK)
        snprintf(fx->seen_auth, sizeof fx->seen_auth, "%.*s", (int)n, v);
    snprintf(fx->seen_method, sizeof fx->seen_method, "%s", wy_grpc_call_method(call));
    fx->seen_deadline = wy_grpc_call_deadline_ms(call);
    switch (fx->mode) {
    case M_ECHO:
        assert_int_equal(wy_grpc_reply(call, req), WY_OK);
        break;
    case M_ERROR:
        assert_int_equal(wy_grpc_reply_error(call, WY_EPERM, "not your account"), WY_OK);
        break;
    case M_ASYNC:
        fx->held[fx->n_held++] = call;
        uv_timer_start(&fx->async_timer, async_timer_cb, 20, 0);
        break;
    case M_HOLD:
        assert_true(fx->n_held < (int)WY_ARRAY_LEN(fx->held));
        fx->held[fx->n_held++] = call;
        break;
    }
}

/* A loopback port with nothing listening (bound, then closed). */
/* Raw gRPC core call on its own thread (the loop keeps running meanwhile). */
typedef struct {
    int port;
    const char *method;
    const void *bytes;
    size_t len;
    int status;
    char details[256];
    bool done;
    uv_async_t async;
    pthread_t thread;
} raw_t;

static void *raw_main(void *p)
{
    raw_t *r = p;
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", r->port);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice m = grpc_slice_from_static_string(r->method);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(5000, GPR_TIMESPAN));
    grpc_call *call =
        grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
    grpc_slice body = grpc_slice_from_copied_buffer(r->bytes, r->len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array imd, tmd;
    grpc_metadata_array_init(&imd);
    grpc_metadata_array_init(&tmd);
    grpc_status_code status = GRPC_STATUS_OK;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 6, (void *)1, NULL) == GRPC_CALL_OK)
        grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    else
        status = -1;
    r->status = status;
    snprintf(r->details, sizeof r->details, "%.*s", (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));
    grpc_slice_unref(details);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&imd);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(ch);
    uv_async_send(&r->async);
    return NULL;
}

static void raw_done(uv_async_t *a)
{
    ((raw_t *)a->data)->done = true;
}

static void raw_call(fx_t *fx, raw_t *r)
{
    uv_async_init(&fx->loop, &r->async, raw_done);
    r->async.data = r;
    r->port = fx->port;
    assert_int_equal(pthread_create(&r->thread, NULL, raw_main, r), 0);
    run_until(fx, &r->done);
    pthread_join(r->thread, NULL);
    uv_close((uv_handle_t *)&r->async, NULL);
}

/* ------------------------------------------------------------------ tests */

static void test_round_trip(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    res_t r = {0};
    assert_int_equal(call_echo(&fx, ECHO_PATH, "acct-7", 300, 2000, &r), WY_OK);
    assert_false(r.done); /* never inside wy_grpc_call */
    run_until(&fx, &r.done);
    assert_int_equal(r.err, WY_OK);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.key, "acct-7");
    assert_int_equal(r.payload_len, 300);
    assert_string_equal(fx.seen_auth, "Bearer t0ken");
    assert_string_equal(fx.seen_method, ECHO_PATH);
    /* gRPC rounds the grpc-timeout header up (2008 ms seen for 2000): allow for it. */
    assert_true(fx.seen_deadline > 0 && fx.seen_deadline <= 2100);

    wy_grpc_server_stats_t st;
    wy_grpc_server_stats(fx.srv, &st);
    assert_int_equal(st.calls_total, 1);
    assert_int_equal(st.by_status[0], 1);
    assert_int_equal(wy_grpc_channel_inflight(fx.ch), 0);
    fx_close(&fx);
}

static bool none_in_flight(void *arg);

static void test_concurrent_200(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    static res_t r[200];
    char key[200][16];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 200; i++) {
        snprintf(key[i], sizeof key[i], "k%d", i);
        assert_int_equal(call_echo(&fx, ECHO_PATH, key[i], 10, 0, &r[i]), WY_OK);
    }
    assert_int_equal(wy_grpc_channel_inflight(fx.ch), 200);
    for (int i = 0; i < 200; i++) {
        run_until(&fx, &r[i].done);
        assert_int_equal(r[i].err, WY_OK);
        assert_string_equal(r[i].key, key[i]);
    }
    assert_int_equal(fx.handled, 200);
    /* The completions of the replies wait in the loop's own queue: the runtime drains it
     * by itself (its timer), with no more traffic and no test timer ticking. */
    run_pred(&fx.loop, none_in_flight, &fx);
    fx_close(&fx);
}

static void test_async_reply(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    fx.mode = M_ASYNC;
    res_t r = {0};
    echo_sync(&fx, "early", 0, 0, &r);
    assert_int_equal(r.err, WY_OK);
    assert_string_equal(r.key, "late");
    fx_close(&fx);
}

static void test_handler_error(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    fx.mode = M_ERROR;
    res_t r = {0};
    echo_sync(&fx, "k", 0, 0, &r);
    assert_int_equal(r.err, WY_EPERM);
    assert_int_equal(r.status, 7); /* PERMISSION_DENIED */
    assert_string_equal(r.msg, "not your account");
    wy_grpc_server_stats_t st;
    wy_grpc_server_stats(fx.srv, &st);
    assert_int_equal(st.by_status[7], 1);
    fx_close(&fx);
}

static void test_unknown_method(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    res_t r = {0};
    assert_int_equal(call_echo(&fx, "/wyvern.test.Echo/Nope", "k", 0, 0, &r), WY_OK);
    run_until(&fx, &r.done);
    assert_int_equal(r.err, WY_EUNIMPL);
    assert_int_equal(r.status, 12);
    assert_non_null(strstr(r.msg, "/wyvern.test.Echo/Nope"));
    assert_int_equal(fx.handled, 0);
    fx_close(&fx);
}

static void test_malformed_request(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    /* Field 1 length-delimited, claims 100 bytes, carries 3. */
    raw_t r = {.method = ECHO_PATH,
               .bytes = "\x0a\x64"
                        "abc",
               .len = 5};
    raw_call(&fx, &r);
    assert_int_equal(r.status, 3); /* INVALID_ARGUMENT */
    assert_string_equal(r.details, "request is not a valid wyvern.Envelope");
    assert_int_equal(fx.handled, 0);
    /* The server keeps serving. */
    res_t ok = {0};
    echo_sync(&fx, "after", 0, 0, &ok);
    assert_int_equal(ok.err, WY_OK);
    fx_close(&fx);
}

static void tick_cb(uv_timer_t *t)
{
    WY_UNUSED(t);
}

static bool held_gone(void *arg)
{
    return wy_grpc_call_cancelled(((fx_t *)arg)->held[0]);
}

static bool none_in_flight(void *arg)
{
    wy_grpc_server_stats_t st;
    wy_grpc_server_stats(((fx_t *)arg)->srv, &st);
    return st.in_flight == 0;
}

/* Every way a late reply can find its call over: nothing is sent, WY_ECANCELED. */
static void assert_call_over(wy_grpc_call_id_t call)
{
    Wyvern__Envelope e = WYVERN__ENVELOPE__INIT;
    const char *v;
    size_t n;
    assert_true(wy_grpc_call_cancelled(call));
    assert_int_equal(wy_grpc_reply(call, &e.base), WY_ECANCELED);
    assert_int_equal(wy_grpc_reply_error(call, WY_EPERM, "late"), WY_ECANCELED);
    assert_int_equal(wy_grpc_call_metadata(call, "authorization", &v, &n), WY_ECANCELED);
    assert_null(wy_grpc_call_method(call));
    assert_true(wy_grpc_call_deadline_ms(call) <= 0);
}

/* The server frees a call once gRPC completes its last batch, which the loop learns
 * at its next turn or drain tick; wait for the count (ticking the loop). */
static void wait_none_in_flight(fx_t *fx)
{
    uv_timer_start(&fx->tick, tick_cb, 5, 5);
    run_pred(&fx->loop, none_in_flight, fx);
    uv_timer_stop(&fx->tick);
}

static void test_deadline_exceeded(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    res_t r = {0};
    /* 500 ms leaves room for the call to reach the handler on a slow sanitizer build. */
    hold_one(&fx, 500, &r);
    assert_true(fx.seen_deadline <= 500);
    assert_false(wy_grpc_call_cancelled(fx.held[0]));
    run_until(&fx, &r.done);
    assert_int_equal(r.err, WY_ETIMEDOUT);
    assert_int_equal(r.status, 4);
    /* The server learns the client is gone and releases the call without the handler;
     * the handler's late reply is a no-op. */
    run_pred(&fx.loop, held_gone, &fx);
    assert_call_over(fx.held[0]);
    wait_none_in_flight(&fx);
    wy_grpc_server_stats_t st;
    wy_grpc_server_stats(fx.srv, &st);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.calls_total, 0); /* nothing was answered */
    fx_close(&fx);
}

static void test_reply_after_grace(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    res_t r = {0};
    hold_one(&fx, 0, &r);
    /* The handler is still "waiting for its database" when the 50 ms grace ends: the
     * stop answers the call itself and finishes; the handler replies afterwards. */
    fx_stop_server(&fx, 50);
    run_until(&fx, &r.done);
    assert_int_not_equal(r.err, WY_OK);
    assert_true(r.status == 14 || r.status == 1); /* UNAVAILABLE or CANCELLED */
    assert_call_over(fx.held[0]);
    wy_grpc_call_id_t late = fx.held[0];
    fx_close(&fx);
    /* Even with the runtime gone, the id resolves to nothing. */
    assert_int_equal(wy_grpc_reply_error(late, WY_EUNAVAIL, "db answered at last"), WY_ECANCELED);
}

static void test_end_grace(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    wy_grpc_server_end_grace(fx.srv); /* not stopping: nothing happens */
    res_t r = {0};
    hold_one(&fx, 0, &r);
    assert_false(wy_grpc_call_cancelled(fx.held[0]));
    /* A grace far longer than the test, ended by its owner: the held call is answered
     * inside end_grace, before the owner closes what the handler waits on. */
    assert_int_equal(wy_grpc_server_stop(fx.srv, 600000, srv_stopped_cb, &fx), WY_OK);
    wy_grpc_server_end_grace(fx.srv);
    assert_call_over(fx.held[0]);
    assert_int_equal(wy_grpc_reply_error(fx.held[0], WY_EUNAVAIL, "store closed"), WY_ECANCELED);
    wy_grpc_server_end_grace(fx.srv); /* already over: nothing happens */
    run_until(&fx, &r.done);
    assert_int_equal(r.status, 14); /* UNAVAILABLE */
    run_until(&fx, &fx.srv_stopped);
    fx.srv = NULL;
    fx_close(&fx);
}

static void test_stale_id_never_resolves(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    res_t r = {0};
    hold_one(&fx, 0, &r);
    wy_grpc_call_id_t old = fx.held[0];
    assert_int_equal(wy_grpc_reply_error(old, WY_EPERM, "first"), WY_OK);
    run_until(&fx, &r.done);
    assert_int_equal(r.err, WY_EPERM);
    /* Later calls reuse the slot (the id's low 24 bits are its slot index): the old id
     * must never reach them. Free slots are reused oldest first, so this takes at most
     * as many calls as the table has slots. */
    bool reused = false;
    for (int i = 0; i < 2000 && !reused; i++) {
        res_t ri = {0};
        fx.n_held = 0;
        fx.handled = 0;
        hold_one(&fx, 0, &ri);
        reused = (fx.held[0].v & 0xffffff) == (old.v & 0xffffff);
        assert_true(fx.held[0].v != old.v);
        assert_int_equal(wy_grpc_reply_error(old, WY_EPERM, "stale"), WY_ECANCELED);
        assert_false(wy_grpc_call_cancelled(fx.held[0]));
        assert_int_equal(wy_grpc_reply_error(fx.held[0], WY_ENOTFOUND, "fresh"), WY_OK);
        run_until(&fx, &ri.done);
        assert_int_equal(ri.err, WY_ENOTFOUND);
    }
    assert_true(reused);
    fx.n_held = 0;
    fx_close(&fx);
}

/* The value of one exposition line ("name{labels}"), -1 if absent. */
static double metric_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static void test_method_metrics(void **state)
{
    WY_UNUSED(state);
    wy_metrics_reset(); /* no server of an earlier test is alive */
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    res_t ok = {0}, denied = {0}, late = {0}, unknown = {0};
    echo_sync(&fx, "k", 0, 0, &ok);
    fx.mode = M_ERROR;
    echo_sync(&fx, "k", 0, 0, &denied);
    fx.handled = 0;
    hold_one(&fx, 300, &late); /* held past its deadline, never answered */
    run_pred(&fx.loop, held_gone, &fx);
    assert_int_equal(call_echo(&fx, "/wyvern.test.Echo/Nope", "k", 0, 0, &unknown), WY_OK);
    run_until(&fx, &unknown.done);

    wy_buf_t b = WY_BUF_INIT;
    wy_metrics_render(&b);
    char *text = wy_buf_steal(&b, NULL);
#define ECHO_SERIES(what) "wy_grpc_call_" what "{method=\"" ECHO_PATH "\""
    assert_true(metric_value(text, ECHO_SERIES("seconds_count") "}") == 3);
    assert_true(metric_value(text, ECHO_SERIES("total") ",outcome=\"ok\"}") == 1);
    assert_true(metric_value(text, ECHO_SERIES("total") ",outcome=\"client_error\"}") == 1);
    assert_true(metric_value(text, ECHO_SERIES("total") ",outcome=\"server_error\"}") == 1);
    assert_true(metric_value(text, ECHO_SERIES("seconds_bucket") ",le=\"+Inf\"}") == 3);
#undef ECHO_SERIES
    /* An unknown path is counted under one fixed series and does not grow the registry. */
    assert_null(strstr(text, "Nope"));
    assert_true(
        metric_value(text, "wy_grpc_call_total{method=\"unmatched\",outcome=\"client_error\"}") ==
        1);
    wy_free(text);
    fx_close(&fx);
}

static void test_server_down(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    wy_grpc_channel_t *down;
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", wt_closed_port());
    assert_int_equal(wy_grpc_channel_new(fx.rt, target, NULL, &down), WY_OK);
    res_t r = {0};
    Wyvern__Envelope e = WYVERN__ENVELOPE__INIT;
    assert_int_equal(wy_grpc_call(down, ECHO_PATH, &e.base, &wyvern__envelope__descriptor, 10000,
                                  NULL, 0, reply_cb, &r),
                     WY_OK);
    run_until(&fx, &r.done);
    assert_int_equal(r.err, WY_EUNAVAIL);
    assert_int_equal(r.status, 14);
    wy_grpc_channel_close(down);
    fx_close(&fx);
}

static void check_health(fx_t *fx, const char *service, res_t *r)
{
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)service;
    memset(r, 0, sizeof *r);
    assert_int_equal(wy_grpc_call(fx->ch, CHECK_PATH, &q.base,
                                  &grpc__health__v1__health_check_response__descriptor, 0, NULL, 0,
                                  reply_cb, r),
                     WY_OK);
    run_until(fx, &r->done);
}

static void test_health(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    assert_int_equal(wy_grpc_server_set_health(fx.srv, "wyvern.test.Echo", false), WY_OK);
    res_t r;
    check_health(&fx, "", &r);
    assert_int_equal(r.err, WY_OK);
    assert_int_equal(r.health, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    check_health(&fx, "wyvern.test.Echo", &r);
    assert_int_equal(r.err, WY_OK);
    assert_int_equal(r.health,
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    assert_int_equal(wy_grpc_server_set_health(fx.srv, "wyvern.test.Echo", true), WY_OK);
    check_health(&fx, "wyvern.test.Echo", &r);
    assert_int_equal(r.health, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    check_health(&fx, "no.such.Service", &r);
    assert_int_equal(r.err, WY_ENOTFOUND);
    assert_int_equal(r.status, 5);
    assert_non_null(strstr(r.msg, "no.such.Service"));
    fx_close(&fx);
}

static void reply_held(uv_timer_t *t)
{
    fx_t *fx = t->data;
    for (int i = 0; i < fx->n_held; i++)
        assert_int_equal(wy_grpc_reply_error(fx->held[i], WY_ESTATE, "drained"), WY_OK);
    fx->n_held = 0;
}

static void test_graceful_stop(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    res_t r = {0};
    hold_one(&fx, 0, &r);
    /* The in-flight handler answers 20 ms into a generous grace period. */
    assert_int_equal(wy_grpc_server_stop(fx.srv, 10000, srv_stopped_cb, &fx), WY_OK);
    assert_int_equal(wy_grpc_server_stop(fx.srv, 10000, srv_stopped_cb, &fx), WY_ESTATE);
    uv_timer_start(&fx.async_timer, reply_held, 20, 0);
    run_until(&fx, &r.done);
    assert_int_equal(r.err, WY_ESTATE);
    assert_string_equal(r.msg, "drained");
    run_until(&fx, &fx.srv_stopped);
    fx.srv = NULL;
    /* Nothing listens any more. */
    res_t after = {0};
    echo_sync(&fx, "k", 0, 0, &after);
    assert_int_equal(after.err, WY_EUNAVAIL);
    fx_close(&fx);
}

static void test_oversize_rejected(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    wy_grpc_server_opts_t so = {.max_recv_bytes = 1024};
    fx_open(&fx, &so, NULL);
    res_t r = {0};
    echo_sync(&fx, "big", 4096, 0, &r);
    assert_int_equal(r.status, 8); /* RESOURCE_EXHAUSTED */
    assert_int_equal(r.err, WY_ELIMIT);
    assert_int_equal(fx.handled, 0);
    res_t ok = {0};
    echo_sync(&fx, "small", 100, 0, &ok);
    assert_int_equal(ok.err, WY_OK);
    fx_close(&fx);
}

static bool any_done(void *arg)
{
    res_t *r = arg;
    return r[0].done || r[1].done || r[2].done;
}

static void test_server_inflight_cap(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    wy_grpc_server_opts_t so = {.max_inflight = 2};
    fx_open(&fx, &so, NULL);
    fx.mode = M_HOLD;
    res_t r[3];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++)
        assert_int_equal(call_echo(&fx, ECHO_PATH, "k", 0, 0, &r[i]), WY_OK);
    /* Exactly one is refused; wait for it, then for both handlers. */
    run_pred(&fx.loop, any_done, r);
    int refused = 0;
    for (int i = 1; i < 3; i++)
        if (r[i].done)
            refused = i;
    assert_true(r[refused].done);
    assert_int_equal(r[refused].status, 8);
    assert_non_null(strstr(r[refused].msg, "overloaded"));
    wait_handled(&fx, 2);
    uv_timer_start(&fx.async_timer, async_timer_cb, 0, 0);
    for (int i = 0; i < 3; i++) {
        run_until(&fx, &r[i].done);
        if (i != refused)
            assert_int_equal(r[i].err, WY_OK);
    }
    wy_grpc_server_stats_t st;
    wy_grpc_server_stats(fx.srv, &st);
    assert_int_equal(st.rejected_busy, 1);
    fx_close(&fx);
}

/* A call leaves max_inflight when it is answered, not when the loop has drained its
 * completions: with 2 allowed and 2 held, one is answered and, in the same loop turn (a
 * busy daemon's loop), a third call arrives. It must be accepted. */
#define BUSY_LOOP_US 100000

static res_t answered_then_call;

static void answer_one_then_call(uv_timer_t *t)
{
    fx_t *fx = t->data;
    Wyvern__Envelope e = WYVERN__ENVELOPE__INIT;
    e.key = "first";
    assert_int_equal(wy_grpc_reply(fx->held[0], &e.base), WY_OK);
    fx->held[0] = fx->held[1];
    fx->n_held = 1;
    assert_int_equal(call_echo(fx, ECHO_PATH, "third", 0, 0, &answered_then_call), WY_OK);
    usleep(BUSY_LOOP_US); /* the third call reaches the server meanwhile; nothing drains */
}

static bool third_seen(void *arg)
{
    fx_t *fx = arg;
    return fx->handled >= 3 || answered_then_call.done;
}

static void test_server_inflight_ends_with_the_answer(void **state)
{
    WY_UNUSED(state);
    memset(&answered_then_call, 0, sizeof answered_then_call);
    res_t r[2] = {{0}, {0}};
    wy_grpc_server_opts_t two = {.max_inflight = 2};
    fx_t fx;
    fx_open(&fx, &two, NULL);
    hold_one(&fx, 0, &r[0]); /* the first, held */
    assert_int_equal(call_echo(&fx, ECHO_PATH, "second", 0, 0, &r[1]), WY_OK);
    wait_handled(&fx, 2);
    uv_timer_stop(&fx.async_timer);
    uv_timer_start(&fx.async_timer, answer_one_then_call, 0, 0);
    run_pred(&fx.loop, third_seen, &fx);
    assert_false(answered_then_call.done); /* not refused: the handler holds it */
    assert_int_equal(fx.handled, 3);
    uv_timer_start(&fx.async_timer, async_timer_cb, 0, 0);
    run_until(&fx, &answered_then_call.done);
    for (int i = 0; i < 2; i++) {
        run_until(&fx, &r[i].done);
        assert_int_equal(r[i].err, WY_OK);
    }
    assert_int_equal(answered_then_call.err, WY_OK);
    wy_grpc_server_stats_t st;
    wy_grpc_server_stats(fx.srv, &st);
    assert_int_equal(st.rejected_busy, 0);
    fx_close(&fx);
}

static void test_client_inflight_cap(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    wy_grpc_channel_opts_t co = {.max_inflight = 1};
    fx_open(&fx, NULL, &co);
    res_t a = {0}, b = {0};
    assert_int_equal(call_echo(&fx, ECHO_PATH, "a", 0, 0, &a), WY_OK);
    assert_int_equal(call_echo(&fx, ECHO_PATH, "b", 0, 0, &b), WY_EBUSY);
    run_until(&fx, &a.done);
    assert_int_equal(a.err, WY_OK);
    assert_false(b.done);
    echo_sync(&fx, "b", 0, 0, &b);
    fx_close(&fx);
}

/* The client cancels a call a handler holds. */
static void test_channel_close_cancels(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    res_t r = {0};
    hold_one(&fx, 0, &r);
    wy_grpc_channel_close(fx.ch);
    fx.ch = NULL;
    run_until(&fx, &r.done);
    assert_int_equal(r.err, WY_ECANCELED);
    assert_int_equal(r.status, 1);
    /* The server sees the client leave and releases the call: the handler's late
     * reply is a no-op. */
    run_pred(&fx.loop, held_gone, &fx);
    assert_call_over(fx.held[0]);
    wait_none_in_flight(&fx);
    fx_close(&fx);
}

static void test_bind_and_register_errors(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    assert_int_equal(
        wy_grpc_server_register(fx.srv, "/x.Y/Z", &wyvern__envelope__descriptor, handler, &fx),
        WY_ESTATE);
    wy_grpc_server_t *s2;
    assert_int_equal(wy_grpc_server_new(fx.rt, NULL, &s2), WY_OK);
    assert_int_equal(
        wy_grpc_server_register(s2, "no-slash", &wyvern__envelope__descriptor, handler, &fx),
        WY_EINVAL);
    assert_int_equal(
        wy_grpc_server_register(s2, "/x.Y/", &wyvern__envelope__descriptor, handler, &fx),
        WY_EINVAL);
    assert_int_equal(
        wy_grpc_server_register(s2, CHECK_PATH, &wyvern__envelope__descriptor, handler, &fx),
        WY_EEXIST);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", fx.port);
    const char *err = NULL;
    assert_int_equal(wy_grpc_server_start(s2, addr, NULL, &err), WY_EIO);
    assert_non_null(err);
    assert_non_null(strstr(err, addr));
    /* The runtime refuses to close while servers or channels are alive. */
    assert_int_equal(wy_grpc_rt_close(fx.rt, NULL, NULL), WY_ESTATE);
    assert_int_equal(wy_grpc_server_stop(s2, 0, srv_stopped_cb, &fx), WY_OK);
    run_until(&fx, &fx.srv_stopped);
    fx.srv_stopped = false;
    fx_close(&fx);
}

/* ---------------------------------------------------------------- drive mode only */

static pthread_t g_loop_thread;
static bool g_handler_on_loop;

static void thread_handler(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    WY_UNUSED(arg);
    g_handler_on_loop = pthread_equal(pthread_self(), g_loop_thread);
    wy_grpc_reply(call, req);
}

/* The call's completions are handled by the loop thread itself: the handler runs on it,
 * nothing is handed over from another thread, and the answer reaches the client. */
static void test_drive_inline(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    memset(&fx, 0, sizeof fx);
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    wy_grpc_rt_opts_t ro = {.drive = true};
    assert_int_equal(wy_grpc_rt_new_opts(&fx.loop, &ro, &fx.rt), WY_OK);
    g_driver = fx.rt;
    assert_int_equal(wy_grpc_server_new(fx.rt, NULL, &fx.srv), WY_OK);
    assert_int_equal(wy_grpc_server_register(fx.srv, ECHO_PATH, &wyvern__envelope__descriptor,
                                             thread_handler, &fx),
                     WY_OK);
    assert_int_equal(wy_grpc_server_start(fx.srv, "127.0.0.1:0", &fx.port, NULL), WY_OK);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", fx.port);
    assert_int_equal(wy_grpc_channel_new(fx.rt, target, NULL, &fx.ch), WY_OK);
    uv_timer_init(&fx.loop, &fx.async_timer);
    uv_timer_init(&fx.loop, &fx.tick);

    g_loop_thread = pthread_self();
    for (int i = 0; i < 20; i++) {
        g_handler_on_loop = false;
        res_t r = {0};
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        echo_sync(&fx, key, 100, 0, &r);
        assert_int_equal(r.err, WY_OK);
        assert_string_equal(r.key, key);
        assert_true(g_handler_on_loop);
    }
    wy_grpc_rt_stats_t st;
    wy_grpc_rt_stats(fx.rt, &st);
    assert_true(st.drive);
    assert_int_equal(st.handoffs, 0);
    fx_close(&fx);
}

typedef struct {
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_poll_t poll;
    uv_async_t async;
    int sv[2];
    bool timer_fired, readable, async_seen;
    pthread_t th;
} libuv_side_t;

static void side_timer_cb(uv_timer_t *t)
{
    ((libuv_side_t *)t->data)->timer_fired = true;
}

static void side_poll_cb(uv_poll_t *p, int status, int events)
{
    libuv_side_t *ls = p->data;
    assert_int_equal(status, 0);
    if (events & UV_READABLE) {
        char b[8];
        assert_true(read(ls->sv[0], b, sizeof b) > 0);
        ls->readable = true;
        uv_poll_stop(p);
    }
}

static void side_async_cb(uv_async_t *a)
{
    ((libuv_side_t *)a->data)->async_seen = true;
}

/* Another thread: a byte on the socket, then (once it was read) a uv_async. */
static void *side_thread(void *arg)
{
    libuv_side_t *ls = arg;
    assert_int_equal(write(ls->sv[1], "x", 1), 1);
    uv_async_send(&ls->async);
    return NULL;
}

static bool side_timer_fired(void *arg)
{
    return ((libuv_side_t *)arg)->timer_fired;
}

static bool side_io_done(void *arg)
{
    libuv_side_t *ls = arg;
    return ls->readable && ls->async_seen;
}

/* While gRPC is idle the loop thread sleeps in gRPC's poller: libuv's timers still fire
 * (the poller's deadline is the next timer), and a socket becoming readable or a uv_async
 * from another thread wakes it (the watcher's kick) long before the watchdog would. */
static void test_drive_serves_libuv_while_idle(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    assert_non_null(g_driver);
    res_t r = {0};
    echo_sync(&fx, "warm", 0, 0, &r); /* connected, then idle */

    libuv_side_t ls;
    memset(&ls, 0, sizeof ls);
    ls.loop = &fx.loop;
    uv_timer_init(&fx.loop, &ls.timer);
    ls.timer.data = &ls;
    uv_timer_start(&ls.timer, side_timer_cb, 20, 0);
    run_pred(&fx.loop, side_timer_fired, &ls);

    wy_grpc_rt_stats_t before, after;
    wy_grpc_rt_stats(fx.rt, &before);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, ls.sv), 0);
    uv_poll_init(&fx.loop, &ls.poll, ls.sv[0]);
    ls.poll.data = &ls;
    uv_poll_start(&ls.poll, UV_READABLE, side_poll_cb);
    uv_async_init(&fx.loop, &ls.async, side_async_cb);
    ls.async.data = &ls;
    wy_grpc_rt_run(g_driver, UV_RUN_NOWAIT); /* the poll is registered with libuv's epoll */
    assert_int_equal(pthread_create(&ls.th, NULL, side_thread, &ls), 0);
    run_pred(&fx.loop, side_io_done, &ls);
    pthread_join(ls.th, NULL);
    wy_grpc_rt_stats(fx.rt, &after);
    assert_true(after.kicks > before.kicks);

    /* gRPC still answers after the kicks. */
    memset(&r, 0, sizeof r);
    echo_sync(&fx, "after", 10, 0, &r);
    assert_int_equal(r.err, WY_OK);
    assert_string_equal(r.key, "after");

    uv_close((uv_handle_t *)&ls.timer, NULL);
    uv_close((uv_handle_t *)&ls.poll, NULL);
    uv_close((uv_handle_t *)&ls.async, NULL);
    fx_close(&fx);
    close(ls.sv[0]);
    close(ls.sv[1]);
}

typedef struct {
    uv_poll_t first, second;
    int a[2], b[2];
    bool first_read, second_read;
} chain_t;

/* Read the one byte fd holds and stop watching it. */
static void take_byte(uv_poll_t *p, int fd)
{
    char x;
    assert_int_equal(read(fd, &x, 1), 1);
    uv_poll_stop(p);
}

static void chain_second_cb(uv_poll_t *p, int status, int events)
{
    WY_UNUSED(status);
    WY_UNUSED(events);
    chain_t *c = p->data;
    take_byte(p, c->b[0]);
    c->second_read = true;
}

/* An I/O callback starts watching another descriptor: libuv registers that watcher with
 * its epoll only on its next poll, which must come before the loop sleeps in gRPC. */
static void chain_first_cb(uv_poll_t *p, int status, int events)
{
    WY_UNUSED(status);
    WY_UNUSED(events);
    chain_t *c = p->data;
    take_byte(p, c->a[0]);
    uv_poll_start(&c->second, UV_READABLE, chain_second_cb);
    c->first_read = true;
}

typedef struct {
    chain_t *c;
    wy_grpc_rt_t *rt;
    uint64_t kicks_before;
    bool b_written;
} chain_wait_t;

/* Checked between loop turns: once a's callback ran in the turn a kick woke, b gets its
 * byte (no turn in between, so no handle closing or timer can make the loop turn again
 * by chance); then waits for b's callback. */
static bool chain_step(void *arg)
{
    chain_wait_t *w = arg;
    if (!w->b_written) {
        wy_grpc_rt_stats_t st;
        wy_grpc_rt_stats(w->rt, &st);
        if (!w->c->first_read || st.kicks == w->kicks_before)
            return false;
        assert_false(w->c->second_read);
        assert_int_equal(write(w->c->b[1], "y", 1), 1);
        w->b_written = true;
    }
    return w->c->second_read;
}

/* A watcher started from an I/O callback is served although nothing else wakes the loop:
 * libuv registers it with its epoll only on its next poll, which must come before the
 * loop sleeps in gRPC (the watcher thread watches that epoll, so it could not see it). */
static void test_drive_watcher_started_in_a_callback(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    chain_t c;
    memset(&c, 0, sizeof c);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c.a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c.b), 0);
    uv_poll_init(&fx.loop, &c.first, c.a[0]);
    uv_poll_init(&fx.loop, &c.second, c.b[0]);
    c.first.data = c.second.data = &c;
    uv_poll_start(&c.first, UV_READABLE, chain_first_cb);
    wy_grpc_rt_run(g_driver, UV_RUN_NOWAIT); /* a is watched by libuv's epoll */
    /* The loop sleeps in gRPC, a's byte kicks it awake, a's callback starts watching b.
     * The kick is spent: nothing is armed that could wake the loop by chance later. */
    chain_wait_t w = {&c, fx.rt, 0, false};
    wy_grpc_rt_stats_t st;
    wy_grpc_rt_stats(fx.rt, &st);
    w.kicks_before = st.kicks;
    assert_int_equal(write(c.a[1], "x", 1), 1);
    /* b's byte is there before the loop's next sleep: only libuv's own poll can see it. */
    run_pred(&fx.loop, chain_step, &w);
    uv_close((uv_handle_t *)&c.first, NULL);
    uv_close((uv_handle_t *)&c.second, NULL);
    fx_close(&fx);
    close(c.a[0]);
    close(c.a[1]);
    close(c.b[0]);
    close(c.b[1]);
}

typedef struct {
    fx_t *fx;
    uv_poll_t poll;
    int sv[2];
} closer_t;

static void closer_poll_cb(uv_poll_t *p, int status, int events)
{
    closer_t *c = p->data;
    WY_UNUSED(status);
    WY_UNUSED(events);
    uv_poll_stop(p);
    assert_int_equal(wy_grpc_rt_close(c->fx->rt, rt_closed_cb, c->fx), WY_OK);
}

static void *closer_thread(void *arg)
{
    closer_t *c = arg;
    assert_int_equal(write(c->sv[1], "x", 1), 1);
    return NULL;
}

/* The runtime closed from a libuv callback the watcher's kick woke (the loop's next turn
 * must not arm another kick on the channel the close let go of). */
static void test_drive_close_from_a_woken_callback(void **state)
{
    WY_UNUSED(state);
    fx_t fx;
    fx_open(&fx, NULL, NULL);
    wy_grpc_channel_close(fx.ch);
    fx.ch = NULL;
    fx_stop_server(&fx, 0);
    closer_t c = {.fx = &fx};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c.sv), 0);
    uv_poll_init(&fx.loop, &c.poll, c.sv[0]);
    c.poll.data = &c;
    uv_poll_start(&c.poll, UV_READABLE, closer_poll_cb);
    wy_grpc_rt_run(g_driver, UV_RUN_NOWAIT);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, closer_thread, &c), 0);
    run_until(&fx, &fx.rt_closed);
    pthread_join(th, NULL);
    uv_close((uv_handle_t *)&c.poll, NULL);
    uv_close((uv_handle_t *)&fx.async_timer, NULL);
    uv_close((uv_handle_t *)&fx.tick, NULL);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
    close(c.sv[0]);
    close(c.sv[1]);
}

static int mode_thread(void **state)
{
    WY_UNUSED(state);
    g_drive = false;
    return 0;
}

static int mode_drive(void **state)
{
    WY_UNUSED(state);
    g_drive = true;
    return 0;
}

int main(void)
{
    wy_log_init("test", WY_LOG_ERROR);
    const struct CMUnitTest drive_only[] = {
        cmocka_unit_test(test_drive_inline),
        cmocka_unit_test(test_drive_serves_libuv_while_idle),
        cmocka_unit_test(test_drive_close_from_a_woken_callback),
        cmocka_unit_test(test_drive_watcher_started_in_a_callback),
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_concurrent_200),
        cmocka_unit_test(test_async_reply),
        cmocka_unit_test(test_handler_error),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_malformed_request),
        cmocka_unit_test(test_deadline_exceeded),
        cmocka_unit_test(test_reply_after_grace),
        cmocka_unit_test(test_end_grace),
        cmocka_unit_test(test_stale_id_never_resolves),
        cmocka_unit_test(test_method_metrics),
        cmocka_unit_test(test_server_down),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_graceful_stop),
        cmocka_unit_test(test_oversize_rejected),
        cmocka_unit_test(test_server_inflight_cap),
        cmocka_unit_test(test_server_inflight_ends_with_the_answer),
        cmocka_unit_test(test_client_inflight_cap),
        cmocka_unit_test(test_channel_close_cancels),
        cmocka_unit_test(test_bind_and_register_errors),
    };
    int failed = cmocka_run_group_tests_name("thread mode", tests, mode_thread, NULL);
    failed += cmocka_run_group_tests_name("drive mode", tests, mode_drive, NULL);
    failed += cmocka_run_group_tests_name("drive mode only", drive_only, mode_drive, NULL);
    return failed;
}
