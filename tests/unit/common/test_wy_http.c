/* Unit tests of wy_http: a real server on a libuv loop in the test thread, a client thread with
 * blocking loopback sockets. The client only records what it saw; assertions run after join. */
#include "wy_http.h"
#include "wy_metrics.h"
#include "wy_buf.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "wy_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- harness */

typedef struct fx fx_t;
struct fx {
    uv_loop_t loop;
    wy_http_server_t *srv;
    int port;
    wt_thread_t cth;
    void (*client)(fx_t *);
    bool hold; /* the loop side finishes the test itself (fx_finish) */
    bool client_done;
    bool finished;
    bool closed;
    /* scratch for handlers */
    wy_http_req_t *held;
    uv_timer_t timer;
    int ticks;
    uint64_t in_flight_seen;
    /* client results */
    char r[8][4096];
    int status[8];
    int nresp;
    int connect_err;
    bool eof[8];
    sem_t dispatched; /* posted by handlers that hold a request */
};

static void on_closed(void *ud)
{
    ((fx_t *)ud)->closed = true;
}

static void fx_finish(fx_t *fx)
{
    if (fx->finished)
        return;
    fx->finished = true;
    wy_http_close(fx->srv, on_closed, fx);
}

static void async_cb(uv_async_t *a)
{
    fx_t *fx = a->data;
    fx->client_done = true;
    uv_close((uv_handle_t *)a, NULL);
    if (!fx->hold)
        fx_finish(fx);
}

static void client_main(void *arg)
{
    fx_t *fx = arg;
    fx->client(fx);
}

static fx_t *fx_new(const wy_http_limits_t *lim)
{
    fx_t *fx = wy_calloc(1, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    sem_init(&fx->dispatched, 0, 0);
    assert_int_equal(wy_http_server_new(&fx->loop, lim, &fx->srv), WY_OK);
    return fx;
}

static void fx_listen(fx_t *fx)
{
    fx->port = wt_http_listen(fx->srv);
}

/* Runs client on its own thread while the loop serves; returns when the server is closed. */
static void fx_run(fx_t *fx, void (*client)(fx_t *))
{
    fx->client = client;
    wt_thread_run(&fx->cth, &fx->loop, async_cb, client_main, fx);
    assert_true(fx->closed);
}

static void fx_free(fx_t *fx)
{
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    sem_destroy(&fx->dispatched);
    wy_free(fx);
}

/* ---------------------------------------------------------------- blocking client */

static void save(fx_t *fx, wt_cli_t *c)
{
    int i = fx->nresp++;
    fx->status[i] = wt_cli_response(c, fx->r[i], sizeof(fx->r[i]));
}

/* ---------------------------------------------------------------- handlers */

static void h_hello(wy_http_req_t *req, void *ud)
{
    WY_UNUSED(ud);
    const char *msg = "hello";
    wy_http_add_header(req, "X-Test", "yes");
    wy_http_respond(req, 200, "text/plain", msg, strlen(msg));
}

static void h_echo_json(wy_http_req_t *req, void *ud)
{
    WY_UNUSED(ud);
    json_t *j = wy_http_req_json(req);
    if (!j)
        return;
    const char *hdr = wy_http_req_header(req, "x-MiXeD");
    json_t *out =
        json_pack("{s:o,s:s,s:s,s:s,s:s?}", "got", j, "path", wy_http_req_path(req), "query",
                  wy_http_req_query(req), "method", wy_http_req_method(req), "hdr", hdr);
    wy_http_respond_json(req, 201, out);
}

static void h_item(wy_http_req_t *req, void *ud)
{
    WY_UNUSED(ud);
    wy_http_respond(req, 200, "text/plain", wy_http_req_path(req), strlen(wy_http_req_path(req)));
}

static void h_path(wy_http_req_t *req, void *ud)
{
    WY_UNUSED(ud);
    const char *p = wy_http_req_path(req);
    wy_http_respond(req, 200, "text/plain", p, strlen(p));
}

static void h_limited(wy_http_req_t *req, void *ud)
{
    WY_UNUSED(ud);
    wy_http_add_header(req, "Retry-After", "30");
    wy_http_respond_err(req, WY_ELIMIT, "slow down");
}

static void routes(fx_t *fx)
{
    assert_int_equal(wy_http_route(fx->srv, "GET", "/hello", h_hello, fx), WY_OK);
    assert_int_equal(wy_http_route(fx->srv, "GET", "/hello", h_hello, fx), WY_EEXIST);
    assert_int_equal(wy_http_route(fx->srv, "POST", "/echo", h_echo_json, fx), WY_OK);
    assert_int_equal(wy_http_route(fx->srv, "PUT", "/echo", h_echo_json, fx), WY_OK);
    assert_int_equal(wy_http_route_prefix(fx->srv, "GET", "/items/", h_item, fx), WY_OK);
    assert_int_equal(wy_http_route(fx->srv, "GET", "/a", h_path, fx), WY_OK);
    assert_int_equal(wy_http_route(fx->srv, "GET", "/b", h_path, fx), WY_OK);
    assert_int_equal(wy_http_route(fx->srv, "GET", "/c", h_path, fx), WY_OK);
    assert_int_equal(wy_http_route(fx->srv, "POST", "/limited", h_limited, fx), WY_OK);
}

/* A server with the routes above (and GET path -> h if path is not NULL), listening. */
static fx_t *fx_std(const wy_http_limits_t *lim, const char *path, wy_http_handler_cb h)
{
    fx_t *fx = fx_new(lim);
    routes(fx);
    if (path)
        assert_int_equal(wy_http_route(fx->srv, "GET", path, h, fx), WY_OK);
    fx_listen(fx);
    return fx;
}

/* fx_std without an extra route, then fx_run with client. */
static fx_t *fx_serve(const wy_http_limits_t *lim, void (*client)(fx_t *))
{
    fx_t *fx = fx_std(lim, NULL, NULL);
    fx_run(fx, client);
    return fx;
}

/* ---------------------------------------------------------------- routing */

static void cl_routing(fx_t *fx)
{
    wt_cli_t *c = malloc(sizeof(*c));
    const char *reqs[] = {
        "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /echo?x=1&y=2 HTTP/1.1\r\nHost: x\r\nX-Mixed: Case\r\nContent-Length: 7\r\n\r\n"
        "{\"a\":1}",
        "GET /items/42 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n",
        "DELETE /echo HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{bad}",
        "POST /limited HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    };
    for (size_t i = 0; i < WY_ARRAY_LEN(reqs); i++) {
        wt_cli_open(c, fx->port);
        wt_cli_puts(c, reqs[i]);
        save(fx, c);
        wt_cli_close(c);
    }
    free(c);
}

static void test_routing(void **state)
{
    WY_UNUSED(state);
    wy_metrics_reset(); /* no server exists: this test owns the registry */
    wy_metrics_set_service("test");
    fx_t *fx = fx_serve(NULL, cl_routing);
    assert_int_equal(fx->status[0], 200);
    assert_non_null(strstr(fx->r[0], "X-Test: yes\r\n"));
    assert_non_null(strstr(fx->r[0], "\r\n\r\nhello"));
    assert_int_equal(fx->status[1], 201);
    assert_non_null(strstr(fx->r[1], "{\"got\":{\"a\":1},\"path\":\"/echo\",\"query\":\"x=1&y=2\","
                                     "\"method\":\"POST\",\"hdr\":\"Case\"}"));
    assert_int_equal(fx->status[2], 200);
    assert_non_null(strstr(fx->r[2], "\r\n\r\n/items/42"));
    assert_int_equal(fx->status[3], 404);
    assert_non_null(strstr(fx->r[3], "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":"));
    assert_int_equal(fx->status[4], 405);
    assert_non_null(strstr(fx->r[4], "Allow: POST, PUT\r\n"));
    assert_non_null(strstr(fx->r[4], "\"code\":\"METHOD_NOT_ALLOWED\""));
    assert_int_equal(fx->status[5], 400);
    assert_non_null(strstr(fx->r[5], "\"code\":\"BAD_JSON\""));
    assert_int_equal(fx->status[6], 429);
    assert_non_null(strstr(fx->r[6], "Retry-After: 30\r\n"));
    assert_non_null(strstr(fx->r[6], "\"code\":\"ELIMIT\",\"message\":\"slow down\""));
    fx_free(fx);

    /* Every routed request is timed and counted by route and outcome. */
    wy_buf_t b = WY_BUF_INIT;
    wy_metrics_render(&b);
    wt_assert_contains(
        b.data,
        (const char *const[]){
            "wy_test_http_request_seconds_count{route=\"GET /hello\"} 1\n",
            "wy_test_http_request_seconds_count{route=\"POST /echo\"} 2\n",
            "wy_test_http_request_seconds_count{route=\"GET /items/*\"} 1\n",
            "wy_test_http_request_seconds_count{route=\"unmatched\"} 2\n",
            "wy_test_http_request_seconds_count{route=\"PUT /echo\"} 0\n",
            "wy_test_http_request_total{route=\"GET /hello\",outcome=\"ok\"} 1\n",
            "wy_test_http_request_total{route=\"POST /echo\",outcome=\"ok\"} 1\n",
            "wy_test_http_request_total{route=\"POST /echo\",outcome=\"client_error\"} 1\n",
            "wy_test_http_request_total{route=\"POST /limited\",outcome=\"client_error\"} 1\n",
            "wy_test_http_request_total{route=\"unmatched\",outcome=\"client_error\"} 2\n",
            "wy_test_http_request_total{route=\"unmatched\",outcome=\"ok\"} 0\n", NULL});
    wy_buf_free(&b);
    wy_metrics_set_service(NULL);
}

/* ---------------------------------------------------------------- keep-alive, pipelining */

static void cl_keepalive(fx_t *fx)
{
    wt_cli_t *c = wt_cli_new(fx->port);
    wt_cli_puts(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    save(fx, c);
    wt_cli_puts(c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    save(fx, c);
    wt_cli_puts(c, "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    save(fx, c);
    fx->eof[0] = wt_cli_eof(c);
    wt_cli_close(c);
    /* HTTP/1.0: close by default, keep-alive on request */
    wt_cli_open(c, fx->port);
    wt_cli_puts(c, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    save(fx, c);
    wt_cli_puts(c, "GET /b HTTP/1.0\r\n\r\n");
    save(fx, c);
    fx->eof[1] = wt_cli_eof(c);
    wt_cli_free(c);
}

static void test_keepalive(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_serve(NULL, cl_keepalive);
    assert_int_equal(fx->nresp, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(fx->status[i], 200);
    assert_null(strstr(fx->r[0], "Connection:"));
    assert_non_null(strstr(fx->r[1], "\r\n\r\n/b"));
    assert_non_null(strstr(fx->r[2], "Connection: close\r\n"));
    assert_true(fx->eof[0]);
    assert_non_null(strstr(fx->r[3], "Connection: keep-alive\r\n"));
    assert_non_null(strstr(fx->r[4], "Connection: close\r\n"));
    assert_true(fx->eof[1]);
    fx_free(fx);
}

static void cl_pipeline(fx_t *fx)
{
    wt_cli_t *c = wt_cli_new(fx->port);
    wt_cli_puts(c, "GET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                   "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]"
                   "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    for (int i = 0; i < 4; i++)
        save(fx, c);
    fx->eof[0] = wt_cli_eof(c);
    wt_cli_free(c);
}

static void test_pipelined(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_serve(NULL, cl_pipeline);
    assert_int_equal(fx->nresp, 4);
    assert_non_null(strstr(fx->r[0], "\r\n\r\n/c"));
    assert_non_null(strstr(fx->r[1], "\r\n\r\n/a"));
    assert_int_equal(fx->status[2], 201);
    assert_non_null(strstr(fx->r[2], "\"got\":[]"));
    assert_non_null(strstr(fx->r[3], "\r\n\r\n/b"));
    assert_true(fx->eof[0]);
    fx_free(fx);
}

/* ---------------------------------------------------------------- bad input */

static void cl_bad_input(fx_t *fx)
{
    wt_cli_t *c = malloc(sizeof(*c));
    /* 0: garbage */
    wt_cli_open(c, fx->port);
    wt_cli_puts(c, "HELLO THERE\r\n\r\n");
    save(fx, c);
    fx->eof[0] = wt_cli_eof(c);
    wt_cli_close(c);
    /* 1: headers over 2 KiB */
    wt_cli_open(c, fx->port);
    wt_cli_puts(c, "GET /a HTTP/1.1\r\nX-Big: ");
    char big[3000];
    memset(big, 'a', sizeof(big));
    wt_cli_send(c, big, sizeof(big));
    wt_cli_puts(c, "\r\n\r\n");
    save(fx, c);
    fx->eof[1] = wt_cli_eof(c);
    wt_cli_close(c);
    /* 2: Content-Length over the body limit, refused before the body is sent */
    wt_cli_open(c, fx->port);
    wt_cli_puts(c, "POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
    save(fx, c);
    fx->eof[2] = wt_cli_eof(c);
    wt_cli_close(c);
    /* 3: chunked body over the limit */
    wt_cli_open(c, fx->port);
    wt_cli_puts(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[600];
    memset(chunk, 'b', sizeof(chunk));
    for (int i = 0; i < 3; i++) {
        wt_cli_puts(c, "258\r\n");
        wt_cli_send(c, chunk, sizeof(chunk));
        wt_cli_puts(c, "\r\n");
    }
    wt_cli_puts(c, "0\r\n\r\n");
    save(fx, c);
    fx->eof[3] = wt_cli_eof(c);
    wt_cli_close(c);
    /* 4: a chunked body within the limit still works */
    wt_cli_open(c, fx->port);
    wt_cli_puts(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\n{\"k\r\n4\r\n\":2}\r\n0\r\n\r\n");
    save(fx, c);
    wt_cli_close(c);
    /* 5: request started but never finished -> 408 */
    wt_cli_open(c, fx->port);
    wt_cli_puts(c, "GET /a HTTP/1.1\r\nHost:");
    save(fx, c);
    fx->eof[5] = wt_cli_eof(c);
    wt_cli_free(c);
}

static void test_bad_input(void **state)
{
    WY_UNUSED(state);
    wy_http_limits_t lim = wt_http_limits();
    lim.max_header_bytes = 2048;
    lim.max_body_bytes = 1024;
    lim.header_timeout_ms = 100;
    fx_t *fx = fx_serve(&lim, cl_bad_input);
    assert_int_equal(fx->nresp, 6);
    assert_int_equal(fx->status[0], 400);
    assert_non_null(strstr(fx->r[0], "\"code\":\"BAD_REQUEST\""));
    assert_int_equal(fx->status[1], 431);
    assert_non_null(strstr(fx->r[1], "\"code\":\"HEADERS_TOO_LARGE\""));
    assert_int_equal(fx->status[2], 413);
    assert_int_equal(fx->status[3], 413);
    assert_non_null(strstr(fx->r[3], "\"code\":\"BODY_TOO_LARGE\""));
    assert_int_equal(fx->status[4], 201);
    assert_non_null(strstr(fx->r[4], "\"got\":{\"k\":2}"));
    assert_int_equal(fx->status[5], 408);
    for (int i = 0; i < 6; i++) {
        if (i != 4) {
            assert_true(fx->eof[i]);
            assert_non_null(strstr(fx->r[i], "Connection: close\r\n"));
            assert_non_null(strstr(fx->r[i], "application/json"));
        }
    }
    fx_free(fx);
}

/* ---------------------------------------------------------------- max connections */

static uint64_t g_rejected;

static void cl_maxconn(fx_t *fx)
{
    wt_cli_t *c = malloc(3 * sizeof(*c));
    for (int i = 0; i < 2; i++) {
        wt_cli_open(&c[i], fx->port);
        wt_cli_puts(&c[i], "GET /a HTTP/1.1\r\n\r\n");
        save(fx, &c[i]); /* the server has accepted and counted it */
    }
    wt_cli_open(&c[2], fx->port);
    save(fx, &c[2]);
    fx->eof[2] = wt_cli_eof(&c[2]);
    wt_cli_close(&c[2]);
    /* the first two still work */
    wt_cli_puts(&c[0], "GET /b HTTP/1.1\r\n\r\n");
    save(fx, &c[0]);
    wt_cli_close(&c[0]);
    wt_cli_close(&c[1]);
    free(c);
}

static void test_max_connections(void **state)
{
    WY_UNUSED(state);
    wy_http_limits_t lim = wt_http_limits();
    lim.max_connections = 2;
    fx_t *fx = fx_std(&lim, NULL, NULL);
    /* run the loop by hand so the counters can be read before the server is closed */
    fx->client = cl_maxconn;
    fx->hold = true;
    wt_thread_start(&fx->cth, &fx->loop, async_cb, client_main, fx);
    while (!fx->client_done)
        uv_run(&fx->loop, UV_RUN_ONCE);
    g_rejected = wy_http_counters(fx->srv)->conns_rejected;
    assert_int_equal(wy_http_counters(fx->srv)->conns_accepted, 2);
    fx_finish(fx);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    wt_thread_join(&fx->cth);
    assert_int_equal(g_rejected, 1);
    assert_int_equal(fx->status[0], 200);
    assert_int_equal(fx->status[1], 200);
    assert_int_equal(fx->status[2], 503);
    assert_non_null(strstr(fx->r[2], "\"code\":\"OVERLOADED\""));
    assert_true(fx->eof[2]);
    assert_int_equal(fx->status[3], 200);
    fx_free(fx);
}

/* ---------------------------------------------------------------- asynchronous responses */

static void async_reply_cb(uv_timer_t *t)
{
    fx_t *fx = t->data;
    fx->in_flight_seen = wy_http_in_flight(fx->srv);
    wy_http_respond_json(fx->held, 202, json_pack("{s:s}", "done", "later"));
    fx->held = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

static void h_async(wy_http_req_t *req, void *ud)
{
    fx_t *fx = ud;
    fx->held = req;
    uv_timer_init(&fx->loop, &fx->timer);
    fx->timer.data = fx;
    uv_timer_start(&fx->timer, async_reply_cb, 20, 0);
}

static void cl_async(fx_t *fx)
{
    wt_cli_t *c = wt_cli_new(fx->port);
    wt_cli_puts(c, "GET /slow HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\n");
    save(fx, c);
    save(fx, c);
    wt_cli_free(c);
}

static void test_async_response(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_std(NULL, "/slow", h_async);
    fx_run(fx, cl_async);
    assert_int_equal(fx->in_flight_seen, 1);
    assert_int_equal(fx->status[0], 202);
    assert_non_null(strstr(fx->r[0], "{\"done\":\"later\"}"));
    assert_int_equal(fx->status[1], 200); /* the pipelined one waited its turn */
    assert_non_null(strstr(fx->r[1], "\r\n\r\n/a"));
    fx_free(fx);
}

/* The client resets the connection while its request is in a handler; the handler responds
 * once the server has noticed (no connection left), which must only free the request. */
static void gone_poll_cb(uv_timer_t *t)
{
    fx_t *fx = t->data;
    if (!fx->held || wy_http_counters(fx->srv)->conns_open != 0)
        return;
    wy_http_respond(fx->held, 200, "text/plain", "late", 4);
    fx->held = NULL;
    fx->in_flight_seen = wy_http_in_flight(fx->srv);
    uv_close((uv_handle_t *)t, NULL);
    fx_finish(fx);
}

static void h_gone(wy_http_req_t *req, void *ud)
{
    fx_t *fx = ud;
    fx->held = req;
    uv_timer_init(&fx->loop, &fx->timer);
    fx->timer.data = fx;
    uv_timer_start(&fx->timer, gone_poll_cb, 5, 5);
    sem_post(&fx->dispatched);
}

static void cl_gone(fx_t *fx)
{
    wt_cli_t *c = wt_cli_new(fx->port);
    wt_cli_puts(c, "GET /gone HTTP/1.1\r\n\r\n");
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close = RST */
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    sem_wait(&fx->dispatched); /* reset only once the handler holds the request */
    wt_cli_free(c);
}

static void test_client_gone_before_async_response(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_new(NULL);
    wy_http_route(fx->srv, "GET", "/gone", h_gone, fx);
    fx_listen(fx);
    fx->hold = true;
    fx_run(fx, cl_gone);
    assert_int_equal(fx->in_flight_seen, 0);
    fx_free(fx);
}

/* ---------------------------------------------------------------- graceful stop */

static void stop_reply_cb(uv_timer_t *t)
{
    fx_t *fx = t->data;
    fx->in_flight_seen = wy_http_in_flight(fx->srv);
    wy_http_respond(fx->held, 200, "text/plain", "finished", 8);
    fx->held = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

static void h_stop(wy_http_req_t *req, void *ud)
{
    fx_t *fx = ud;
    fx->held = req;
    wy_http_stop(fx->srv); /* the listener is closed before the response goes out */
    uv_timer_init(&fx->loop, &fx->timer);
    fx->timer.data = fx;
    uv_timer_start(&fx->timer, stop_reply_cb, 20, 0);
}

static void cl_stop(fx_t *fx)
{
    wt_cli_t *c = malloc(2 * sizeof(*c));
    wt_cli_open(&c[1], fx->port);
    wt_cli_puts(&c[1], "GET /a HTTP/1.1\r\n\r\n"); /* an idle keep-alive connection */
    save(fx, &c[1]);
    wt_cli_open(&c[0], fx->port);
    wt_cli_puts(&c[0], "GET /stop HTTP/1.1\r\n\r\n");
    save(fx, &c[0]);
    fx->eof[0] = wt_cli_eof(&c[0]);
    fx->eof[1] = wt_cli_eof(&c[1]); /* closed by stop */
    wt_cli_close(&c[0]);
    wt_cli_close(&c[1]);
    wt_cli_t *d = &c[0];
    fx->connect_err = wt_cli_open(d, fx->port);
    wt_cli_close(d);
    free(c);
}

static void test_graceful_stop(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_std(NULL, "/stop", h_stop);
    fx_run(fx, cl_stop);
    assert_int_equal(fx->in_flight_seen, 1);
    assert_int_equal(fx->status[0], 200);
    assert_int_equal(fx->status[1], 200);
    assert_non_null(strstr(fx->r[1], "Connection: close\r\n\r\nfinished"));
    assert_true(fx->eof[0]);
    assert_true(fx->eof[1]);
    assert_int_equal(fx->connect_err, ECONNREFUSED);
    fx_free(fx);
}

/* A request already written onto an idle keep-alive connection when the stop begins (its
 * bytes in the server's socket buffer, not yet read by the loop) is answered, with
 * Connection: close, instead of the connection being closed under it (EOF/RST at the
 * client). A connection that stays idle is closed after that final read. */
static bool responses_at_least(void *arg)
{
    fx_t *fx = arg;
    const wy_http_counters_t *k = wy_http_counters(fx->srv);
    return k->responses_2xx >= (uint64_t)fx->ticks;
}

static bool no_conns(void *arg)
{
    return wy_http_counters(((fx_t *)arg)->srv)->conns_open == 0;
}

static void test_stop_answers_request_on_idle_keepalive(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_new(NULL);
    wy_http_route(fx->srv, "GET", "/a", h_hello, fx);
    fx_listen(fx);
    wt_cli_t *c = wt_cli_new(fx->port);
    wt_cli_t *idle = wt_cli_new(fx->port);
    wt_cli_puts(c, "GET /a HTTP/1.1\r\n\r\n");
    fx->ticks = 1;
    wt_run_pred(&fx->loop, responses_at_least, fx, 5000, "first response");
    assert_int_equal(wt_cli_response(c, fx->r[0], sizeof fx->r[0]), 200);
    assert_null(strstr(fx->r[0], "Connection: close"));
    /* The second request is in the kernel's buffer, unread, when the stop begins. */
    wt_cli_puts(c, "GET /a HTTP/1.1\r\n\r\n");
    wy_http_stop(fx->srv);
    wt_run_pred(&fx->loop, no_conns, fx, 5000, "both connections closed");
    assert_int_equal(wt_cli_response(c, fx->r[1], sizeof fx->r[1]), 200);
    assert_non_null(strstr(fx->r[1], "Connection: close\r\n"));
    assert_true(wt_cli_eof(c));
    assert_true(wt_cli_eof(idle));
    wt_cli_free(c);
    wt_cli_free(idle);
    fx_finish(fx);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_true(fx->closed);
    fx_free(fx);
}

/* wy_http_close with a request still held by its handler: the server is freed only after the
 * late response. */
static void late_cb(uv_timer_t *t)
{
    fx_t *fx = t->data;
    fx->ticks++;
    assert_false(fx->closed);
    wy_http_respond(fx->held, 200, NULL, NULL, 0);
    fx->held = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

static void test_close_waits_for_held_request(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_new(NULL);
    wy_http_route(fx->srv, "GET", "/gone", h_gone, fx);
    fx_listen(fx);
    wt_cli_t *c = malloc(sizeof(*c));
    assert_int_equal(wt_cli_open(c, fx->port), 0);
    wt_cli_puts(c, "GET /gone HTTP/1.1\r\n\r\n");
    while (!fx->held)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_timer_stop(&fx->timer);
    uv_timer_start(&fx->timer, late_cb, 10, 0);
    fx_finish(fx);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->ticks, 1);
    assert_true(fx->closed);
    wt_cli_free(c);
    fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_async_response),
        cmocka_unit_test(test_client_gone_before_async_response),
        cmocka_unit_test(test_graceful_stop),
        cmocka_unit_test(test_close_waits_for_held_request),
        cmocka_unit_test(test_stop_answers_request_on_idle_keepalive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
