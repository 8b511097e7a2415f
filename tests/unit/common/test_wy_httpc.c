/* Unit tests of wy_httpc against a wy_http server on the same libuv loop (loopback, plain http). */
#include "wy_httpc.h"
#include "wy_http.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "wy_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HELD 8

typedef struct {
    wt_loop_t wl;
    wy_http_server_t *srv;
    int port;
    wy_httpc_t *c;
    bool srv_closed, c_closed;
    wy_http_req_t *held[MAX_HELD]; /* /slow requests, answered at teardown */
    int nheld;
} fx_t;

typedef struct {
    int calls;
    int err;
    int status;
    char body[256];
    size_t len;
    char msg[512];
    fx_t *fx;
    bool close_in_cb; /* close the client from inside this callback */
} res_t;

/* The loop of a fixture, with the shared guard (wy_test.h). */
#define RUN_UNTIL(f, cond) WT_RUN_UNTIL(&(f)->wl, cond)

/* ---- server routes ---- */

static void h_hello(wy_http_req_t *req, void *ud)
{
    (void)ud;
    wy_http_respond(req, 200, "text/plain", "hello", 5);
}

static void h_echo(wy_http_req_t *req, void *ud)
{
    (void)ud;
    const char *x = wy_http_req_header(req, "X-Wy");
    if (!x || strcmp(x, "yes") != 0) {
        wy_http_respond(req, 400, "text/plain", "missing X-Wy", 12);
        return;
    }
    size_t len;
    const char *b = wy_http_req_body(req, &len);
    wy_http_respond(req, 200, "application/octet-stream", b, len);
}

static void h_missing(wy_http_req_t *req, void *ud)
{
    (void)ud;
    wy_http_respond(req, 404, "text/plain", "nope", 4);
}

static void h_big(wy_http_req_t *req, void *ud)
{
    (void)ud;
    static char big[64 * 1024];
    memset(big, 'x', sizeof big);
    wy_http_respond(req, 200, "text/plain", big, sizeof big);
}

static void h_slow(wy_http_req_t *req, void *ud)
{
    fx_t *f = ud;
    assert_true(f->nheld < MAX_HELD);
    f->held[f->nheld++] = req;
}

static void fx_init(fx_t *f, const wy_httpc_opts_t *o)
{
    memset(f, 0, sizeof *f);
    wt_loop_init(&f->wl, 15000);
    assert_int_equal(wy_http_server_new(&f->wl.loop, NULL, &f->srv), WY_OK);
    assert_int_equal(wy_http_route(f->srv, "GET", "/hello", h_hello, f), WY_OK);
    assert_int_equal(wy_http_route(f->srv, "POST", "/echo", h_echo, f), WY_OK);
    assert_int_equal(wy_http_route(f->srv, "GET", "/missing", h_missing, f), WY_OK);
    assert_int_equal(wy_http_route(f->srv, "GET", "/big", h_big, f), WY_OK);
    assert_int_equal(wy_http_route(f->srv, "GET", "/slow", h_slow, f), WY_OK);
    assert_int_equal(wy_http_listen(f->srv, "127.0.0.1", 0, NULL), WY_OK);
    f->port = wy_http_port(f->srv);
    assert_int_equal(wy_httpc_new(&f->wl.loop, o, &f->c), WY_OK);
}

static void on_srv_closed(void *ud)
{
    ((fx_t *)ud)->srv_closed = true;
}

static void on_c_closed(void *ud)
{
    ((fx_t *)ud)->c_closed = true;
}

static void fx_done(fx_t *f)
{
    if (f->c && !f->c_closed) {
        wy_httpc_close(f->c, on_c_closed, f);
        RUN_UNTIL(f, f->c_closed);
    }
    for (int i = 0; i < f->nheld; i++)
        wy_http_respond(f->held[i], 200, "text/plain", "late", 4);
    wy_http_close(f->srv, on_srv_closed, f);
    RUN_UNTIL(f, f->srv_closed);
    wt_loop_done(&f->wl);
}

static void on_res(int err, int status, const char *body, size_t len, const char *msg, void *ud)
{
    res_t *x = ud;
    x->calls++;
    x->err = err;
    x->status = status;
    assert_non_null(body);
    assert_int_equal(body[len], '\0');
    x->len = len < sizeof x->body - 1 ? len : sizeof x->body - 1;
    memcpy(x->body, body, x->len);
    x->body[x->len] = '\0';
    assert_non_null(msg);
    snprintf(x->msg, sizeof x->msg, "%s", msg);
    if (x->close_in_cb)
        wy_httpc_close(x->fx->c, on_c_closed, x->fx);
}

static char *url(fx_t *f, const char *path)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "http://127.0.0.1:%d%s", f->port, path);
    return buf;
}

/* ---- tests ---- */

static void test_get(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL);
    res_t r = {0};
    assert_int_equal(wy_httpc_request(f.c, "GET", url(&f, "/hello"), NULL, NULL, 0, 0, on_res, &r),
                     WY_OK);
    assert_int_equal(r.calls, 0); /* never from inside the call */
    assert_int_equal(wy_httpc_inflight(f.c), 1);
    RUN_UNTIL(&f, r.calls == 1);
    assert_int_equal(r.err, WY_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    assert_int_equal(wy_httpc_inflight(f.c), 0);

    /* a second request reuses the client (and its cached connection) */
    res_t r2 = {0};
    assert_int_equal(
        wy_httpc_request(f.c, "GET", url(&f, "/missing"), NULL, NULL, 0, 0, on_res, &r2), WY_OK);
    RUN_UNTIL(&f, r2.calls == 1);
    assert_int_equal(r2.err, WY_OK); /* any HTTP status is a response, not a transport error */
    assert_int_equal(r2.status, 404);
    assert_string_equal(r2.body, "nope");
    fx_done(&f);
}

static void test_post_with_headers(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL);
    const char *hdrs[] = {"X-Wy: yes", "Content-Type: application/json", NULL};
    const char body[] = "{\"a\":1}";
    res_t r = {0}, r2 = {0};
    assert_int_equal(
        wy_httpc_request(f.c, "POST", url(&f, "/echo"), hdrs, body, strlen(body), 0, on_res, &r),
        WY_OK);
    assert_int_equal(
        wy_httpc_request(f.c, "POST", url(&f, "/echo"), NULL, body, strlen(body), 0, on_res, &r2),
        WY_OK);
    RUN_UNTIL(&f, r.calls == 1 && r2.calls == 1);
    assert_int_equal(r.err, WY_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, body);
    assert_int_equal(r2.status, 400); /* header missing: the server saw exactly what we sent */
    fx_done(&f);
}

static void test_timeout(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL);
    res_t r = {0};
    assert_int_equal(wy_httpc_request(f.c, "GET", url(&f, "/slow"), NULL, NULL, 0, 200, on_res, &r),
                     WY_OK);
    RUN_UNTIL(&f, r.calls == 1);
    assert_int_equal(r.err, WY_ETIMEDOUT);
    assert_int_equal(r.status, 0);
    assert_int_equal(f.nheld, 1); /* it did reach the server */
    fx_done(&f);
}

static void test_refused(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL);
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/x", wt_closed_port());
    res_t r = {0};
    assert_int_equal(wy_httpc_request(f.c, "GET", u, NULL, NULL, 0, 0, on_res, &r), WY_OK);
    RUN_UNTIL(&f, r.calls == 1);
    assert_int_equal(r.err, WY_EUNAVAIL);
    assert_true(strlen(r.msg) > 0);
    fx_done(&f);
}

static void test_too_big(void **state)
{
    (void)state;
    fx_t f;
    wy_httpc_opts_t o = {.max_response_bytes = 1000, .max_request_bytes = 10};
    fx_init(&f, &o);
    res_t r = {0}, ok = {0};
    assert_int_equal(wy_httpc_request(f.c, "GET", url(&f, "/big"), NULL, NULL, 0, 0, on_res, &r),
                     WY_OK);
    RUN_UNTIL(&f, r.calls == 1);
    assert_int_equal(r.err, WY_ETOOBIG);
    assert_int_equal(r.len, 0);
    /* small bodies still pass */
    assert_int_equal(wy_httpc_request(f.c, "GET", url(&f, "/hello"), NULL, NULL, 0, 0, on_res, &ok),
                     WY_OK);
    RUN_UNTIL(&f, ok.calls == 1);
    assert_int_equal(ok.err, WY_OK);
    /* request body over the bound is refused at once */
    assert_int_equal(
        wy_httpc_request(f.c, "POST", url(&f, "/echo"), NULL, "01234567890", 11, 0, on_res, &r),
        WY_ETOOBIG);
    fx_done(&f);
}

static void test_concurrency_cap(void **state)
{
    (void)state;
    fx_t f;
    wy_httpc_opts_t o = {.max_concurrent = 2};
    fx_init(&f, &o);
    res_t r[3] = {{0}};
    assert_int_equal(
        wy_httpc_request(f.c, "GET", url(&f, "/slow"), NULL, NULL, 0, 300, on_res, &r[0]), WY_OK);
    assert_int_equal(
        wy_httpc_request(f.c, "GET", url(&f, "/slow"), NULL, NULL, 0, 300, on_res, &r[1]), WY_OK);
    assert_int_equal(
        wy_httpc_request(f.c, "GET", url(&f, "/hello"), NULL, NULL, 0, 0, on_res, &r[2]), WY_EBUSY);
    RUN_UNTIL(&f, r[0].calls == 1 && r[1].calls == 1);
    assert_int_equal(r[2].calls, 0);
    /* slots are free again */
    assert_int_equal(
        wy_httpc_request(f.c, "GET", url(&f, "/hello"), NULL, NULL, 0, 0, on_res, &r[2]), WY_OK);
    RUN_UNTIL(&f, r[2].calls == 1);
    assert_int_equal(r[2].status, 200);
    fx_done(&f);
}

static void test_close_with_pending(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL);
    res_t r[2] = {{0}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(
            wy_httpc_request(f.c, "GET", url(&f, "/slow"), NULL, NULL, 0, 0, on_res, &r[i]), WY_OK);
    RUN_UNTIL(&f, f.nheld == 2); /* both are on the wire */
    wy_httpc_close(f.c, on_c_closed, &f);
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[0].err, WY_ECANCELED);
    assert_int_equal(r[1].err, WY_ECANCELED);
    RUN_UNTIL(&f, f.c_closed);
    fx_done(&f);
}

static void test_close_from_callback(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL);
    res_t first = {.fx = &f, .close_in_cb = true}, pending = {0};
    assert_int_equal(
        wy_httpc_request(f.c, "GET", url(&f, "/slow"), NULL, NULL, 0, 0, on_res, &pending), WY_OK);
    assert_int_equal(
        wy_httpc_request(f.c, "GET", url(&f, "/hello"), NULL, NULL, 0, 0, on_res, &first), WY_OK);
    RUN_UNTIL(&f, f.c_closed);
    assert_int_equal(first.calls, 1);
    assert_int_equal(first.err, WY_OK);
    assert_int_equal(pending.calls, 1);
    assert_int_equal(pending.err, WY_ECANCELED);
    fx_done(&f);
}

static void test_bad_args(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, NULL);
    res_t r = {0};
    const char *crlf[] = {"X-A: b\r\nX-Evil: 1", NULL};
    const char *nocolon[] = {"NoColon", NULL};
    assert_int_equal(
        wy_httpc_request(f.c, "GET", "ftp://127.0.0.1/x", NULL, NULL, 0, 0, on_res, &r), WY_EINVAL);
    assert_int_equal(
        wy_httpc_request(f.c, "GET", "file:///etc/passwd", NULL, NULL, 0, 0, on_res, &r),
        WY_EINVAL);
    assert_int_equal(wy_httpc_request(f.c, "BREW", url(&f, "/hello"), NULL, NULL, 0, 0, on_res, &r),
                     WY_EINVAL);
    assert_int_equal(wy_httpc_request(f.c, "GET", url(&f, "/hello"), crlf, NULL, 0, 0, on_res, &r),
                     WY_EINVAL);
    assert_int_equal(
        wy_httpc_request(f.c, "GET", url(&f, "/hello"), nocolon, NULL, 0, 0, on_res, &r),
        WY_EINVAL);
    assert_int_equal(wy_httpc_request(f.c, "GET", url(&f, "/hello"), NULL, NULL, 0, 0, NULL, &r),
                     WY_EINVAL);
    assert_int_equal(wy_httpc_inflight(f.c), 0);
    assert_int_equal(r.calls, 0);
    fx_done(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_post_with_headers),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_concurrency_cap),
        cmocka_unit_test(test_close_with_pending),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
