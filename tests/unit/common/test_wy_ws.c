/* Unit tests of wy_ws: WebSocket endpoints of a real wy_http server on a libuv loop, driven by a
 * client thread speaking raw RFC 6455 over blocking loopback sockets. */
#include "wy_ws.h"

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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- harness */

typedef struct {
    int code;
    char reason[128];
} closed_t;

typedef struct fx fx_t;
struct fx {
    uv_loop_t loop;
    wy_http_server_t *srv;
    int port;
    wt_thread_t cth;
    void (*client)(fx_t *);
    bool finished;
    bool closed;
    /* server side */
    int opens;
    bool user_ok;
    closed_t cl[8];
    int ncl;
    wy_ws_conn_t *flood;
    uv_timer_t pump;
    int flood_rc;
    size_t flood_sent;
    sem_t flood_closed;
    uint64_t msgs_in, overflows, budget_closes, queued_after, parks;
    /* open connections, for broadcasts */
    wy_ws_conn_t *conns[8];
    size_t bcast_queued, bcast_first;
    uint64_t budget_first; /* ws_queued_bytes right after the first broadcast */
    int nbudget;           /* closed 1008 "server send budget exceeded" */
    sem_t budget_sem;
    /* client results */
    int status[8];
    char text[8][256];
    int op[8];
    size_t len[8];
    int n;
};

static void on_closed(void *ud)
{
    ((fx_t *)ud)->closed = true;
}

static void async_cb(uv_async_t *a)
{
    fx_t *fx = a->data;
    uv_close((uv_handle_t *)a, NULL);
    fx->msgs_in = wy_http_counters(fx->srv)->ws_msgs_in;
    fx->overflows = wy_http_counters(fx->srv)->ws_overflows;
    fx->budget_closes = wy_http_counters(fx->srv)->ws_budget_closes;
    fx->queued_after = wy_http_counters(fx->srv)->ws_queued_bytes;
    fx->parks = wy_http_counters(fx->srv)->ws_parks;
    fx->finished = true;
    wy_http_close(fx->srv, on_closed, fx);
}

static void client_main(void *arg)
{
    fx_t *fx = arg;
    fx->client(fx);
}

static void ws_open(wy_ws_conn_t *c, const wy_http_req_t *req, void *ud)
{
    fx_t *fx = ud;
    fx->opens++;
    fx->user_ok = !strcmp(wy_http_req_query(req), "who=me") || fx->user_ok;
    wy_ws_set_user(c, fx);
    for (size_t i = 0; i < WY_ARRAY_LEN(fx->conns); i++) {
        if (!fx->conns[i]) {
            fx->conns[i] = c;
            break;
        }
    }
}

static void pump_cb(uv_timer_t *t)
{
    fx_t *fx = t->data;
    static uint8_t chunk[16384];
    for (int i = 0; i < 16 && fx->flood; i++) {
        int rc = wy_ws_send_binary(fx->flood, chunk, sizeof(chunk));
        if (rc != WY_OK) {
            fx->flood_rc = rc;
            uv_timer_stop(t);
            return;
        }
        fx->flood_sent += sizeof(chunk);
    }
}

/* The payload every broadcast test sends: byte i is (i * 31 + 7) mod 256. */
static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 31 + 7);
}

/* Encodes n pattern bytes once and queues the frame on every open connection. */
static void broadcast_pattern(fx_t *fx, size_t n)
{
    uint8_t *p;
    wy_ws_frame_t *f = wy_ws_frame_alloc(true, n, &p); /* filled in place */
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(i);
    wy_ws_conn_t *to[WY_ARRAY_LEN(fx->conns)];
    size_t k = 0;
    for (size_t i = 0; i < WY_ARRAY_LEN(fx->conns); i++)
        if (fx->conns[i])
            to[k++] = fx->conns[i];
    fx->bcast_queued = wy_ws_broadcast(f, to, k);
    wy_ws_frame_unref(f); /* the connections hold their own references */
}

static void ws_msg(wy_ws_conn_t *c, bool bin, const uint8_t *d, size_t n, void *ud)
{
    fx_t *fx = ud;
    assert_ptr_equal(wy_ws_user(c), fx);
    if (!bin && n > 6 && n < 32 && !memcmp(d, "bcast:", 6)) {
        char num[32]; /* d is not NUL-terminated */
        memcpy(num, d + 6, n - 6);
        num[n - 6] = '\0';
        broadcast_pattern(fx, strtoul(num, NULL, 10));
        if (!fx->bcast_first) {
            fx->bcast_first = fx->bcast_queued;
            /* Nothing is written before this loop turn's flush: every queue holds it. */
            fx->budget_first = wy_http_counters(fx->srv)->ws_queued_bytes;
        }
        return;
    }
    if (!bin && n == 4 && !memcmp(d, "more", 4)) {
        broadcast_pattern(fx, 16384);
        return;
    }
    if (!bin && n == 8 && !memcmp(d, "close-me", 8)) {
        /* A message queued just before the close must still arrive first. */
        assert_int_equal(wy_ws_send_text(c, "last words", 10), WY_OK);
        assert_int_equal(wy_ws_close(c, 4001, "asked"), WY_OK);
        assert_int_equal(wy_ws_close(c, 4001, "again"), WY_ESTATE);
        assert_int_equal(wy_ws_send_text(c, "x", 1), WY_ESTATE);
        return;
    }
    if (!bin && n == 5 && !memcmp(d, "flood", 5)) {
        fx->flood = c;
        uv_timer_start(&fx->pump, pump_cb, 1, 1);
        return;
    }
    assert_int_equal(wy_ws_send(c, bin, d, n), WY_OK);
    wy_ws_observe(c, bin ? "binary" : "text", wy_now_ns(), WY_OUTCOME_OK);
}

static void ws_close(wy_ws_conn_t *c, int code, const char *reason, void *ud)
{
    fx_t *fx = ud;
    closed_t *cl = &fx->cl[fx->ncl++];
    cl->code = code;
    snprintf(cl->reason, sizeof(cl->reason), "%s", reason);
    for (size_t i = 0; i < WY_ARRAY_LEN(fx->conns); i++)
        if (fx->conns[i] == c)
            fx->conns[i] = NULL;
    if (code == WY_WS_SEND_BUDGET && !strcmp(reason, "server send budget exceeded")) {
        fx->nbudget++;
        sem_post(&fx->budget_sem);
    }
    if (c == fx->flood) {
        fx->flood = NULL;
        uv_timer_stop(&fx->pump);
        sem_post(&fx->flood_closed);
    }
}

static fx_t *fx_new(const wy_http_limits_t *lim)
{
    fx_t *fx = wy_calloc(1, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    sem_init(&fx->flood_closed, 0, 0);
    sem_init(&fx->budget_sem, 0, 0);
    uv_timer_init(&fx->loop, &fx->pump);
    fx->pump.data = fx;
    assert_int_equal(wy_http_server_new(&fx->loop, lim, &fx->srv), WY_OK);
    wy_ws_handlers_t h = {.on_open = ws_open, .on_message = ws_msg, .on_close = ws_close, .ud = fx};
    assert_int_equal(wy_ws_route(fx->srv, "/ws", &h), WY_OK);
    assert_int_equal(wy_ws_route(fx->srv, "/ws", &h), WY_EEXIST);
    fx->port = wt_http_listen(fx->srv);
    return fx;
}

static void fx_run(fx_t *fx, void (*client)(fx_t *))
{
    fx->client = client;
    wt_thread_run(&fx->cth, &fx->loop, async_cb, client_main, fx);
    assert_true(fx->closed);
    uv_close((uv_handle_t *)&fx->pump, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    sem_destroy(&fx->flood_closed);
    sem_destroy(&fx->budget_sem);
}

/* fx_new, then fx_run with client. */
static fx_t *fx_serve(const wy_http_limits_t *lim, void (*client)(fx_t *))
{
    fx_t *fx = fx_new(lim);
    fx_run(fx, client);
    return fx;
}

/* ---------------------------------------------------------------- raw WebSocket client */

/* Sends the upgrade request; returns the response status; headers copied into hdr. */
static int cli_upgrade(wt_cli_t *c, const char *target, const char *extra, char *hdr, size_t hsz)
{
    char req[1024];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%s\r\n",
             target, extra);
    wt_cli_puts(c, req);
    return wt_cli_response(c, hdr, hsz);
}

#define STD_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

/* A new client upgraded to WebSocket on target with the standard key; the status of the
 * upgrade goes to fx->status[0], its headers to g_hdr[0]. */
static char g_hdr[8][1024];

static wt_cli_t *cli_ws(fx_t *fx, const char *target)
{
    wt_cli_t *c = wt_cli_new(fx->port);
    fx->status[0] = cli_upgrade(c, target, STD_KEY, g_hdr[0], sizeof(g_hdr[0]));
    return c;
}

static void cli_frame(wt_cli_t *c, bool fin, int op, const void *data, size_t n)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126) {
        h[hl++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(h + hl, mask, 4);
    hl += 4;
    uint8_t *m = malloc(n + hl);
    memcpy(m, h, hl);
    for (size_t i = 0; i < n; i++)
        m[hl + i] = ((const uint8_t *)data)[i] ^ mask[i % 4];
    wt_cli_send(c, m, n + hl);
    free(m);
}

/* Sends a masked frame in two writes, split after `split` bytes with a pause between them, so
 * that the server reads part of it first. */
static void cli_frame_split(wt_cli_t *c, bool fin, int op, const void *data, size_t n, size_t split)
{
    uint8_t m[300];
    size_t hl = n < 126 ? 6 : 8;
    assert_true(n + hl <= sizeof m && split < n + hl);
    m[0] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126) {
        m[1] = (uint8_t)(0x80 | n);
    } else {
        m[1] = 0x80 | 126;
        m[2] = (uint8_t)(n >> 8);
        m[3] = (uint8_t)n;
    }
    const uint8_t mask[4] = {0x21, 0x43, 0x65, 0x87};
    memcpy(m + hl - 4, mask, 4);
    for (size_t i = 0; i < n; i++)
        m[hl + i] = ((const uint8_t *)data)[i] ^ mask[i % 4];
    wt_cli_send(c, m, split);
    usleep(20 * 1000); /* not an assertion: lets the server read the first part alone */
    wt_cli_send(c, m + split, n + hl - split);
}

static void cli_close_frame(wt_cli_t *c, int code, const char *reason)
{
    uint8_t p[128];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    size_t n = strlen(reason);
    memcpy(p + 2, reason, n);
    cli_frame(c, true, 8, p, n + 2);
}

/* Answers the server's close with code (no reason); true if the server then closes the TCP
 * connection. */
static bool cli_close_eof(wt_cli_t *c, int code)
{
    cli_close_frame(c, code, "");
    return wt_cli_eof(c);
}

/* Waits for a whole frame header and parses it: first byte (FIN, opcode), payload length and
 * header length. False if the connection ends first. */
static bool cli_header(wt_cli_t *c, uint8_t *b0, size_t *n, size_t *hl)
{
    if (!wt_cli_need(c, 2))
        return false;
    const uint8_t *b = (const uint8_t *)c->buf;
    *b0 = b[0];
    *n = b[1] & 0x7f;
    *hl = 2;
    if (b[1] & 0x80) /* a server frame is never masked */
        return false;
    if (*n == 126) {
        if (!wt_cli_need(c, 4))
            return false;
        *n = ((size_t)b[2] << 8) | b[3];
        *hl = 4;
    } else if (*n == 127) {
        if (!wt_cli_need(c, 10))
            return false;
        *n = 0;
        for (int k = 0; k < 8; k++)
            *n = (*n << 8) | b[2 + k];
        *hl = 10;
    }
    return true;
}

/* Reads one frame; stores opcode, payload (truncated to 255 chars + NUL) and length into slot
 * fx->n. Returns the opcode, -1 on EOF. */
static int cli_read(fx_t *fx, wt_cli_t *c)
{
    int i = fx->n++;
    fx->op[i] = -1;
    uint8_t b0;
    size_t n, hl;
    if (!cli_header(c, &b0, &n, &hl) || !wt_cli_need(c, hl + n))
        return -1;
    int op = b0 & 0x0f;
    fx->op[i] = op;
    fx->len[i] = n;
    size_t cp = n < 255 ? n : 255;
    memcpy(fx->text[i], c->buf + hl, cp);
    fx->text[i][cp] = 0;
    wt_cli_consume(c, hl + n);
    return op;
}

/* Like cli_read, but skips the server's pings (the slot is reused). */
static int cli_read_data(fx_t *fx, wt_cli_t *c)
{
    for (;;) {
        int op = cli_read(fx, c);
        if (op != 9)
            return op;
        fx->n--;
    }
}

/* ---------------------------------------------------------------- tests */

static void cl_echo(fx_t *fx)
{
    wt_cli_t *c = cli_ws(fx, "/ws?who=me");
    cli_frame(c, true, 1, "hello", 5);
    cli_read(fx, c); /* 0: text echo */
    cli_frame(c, true, 2, "\x00\x01\x02", 3);
    cli_read(fx, c); /* 1: binary echo */
    cli_frame(c, false, 1, "Hel", 3);
    cli_frame(c, true, 9, "mid", 3); /* a ping between fragments */
    cli_frame(c, false, 0, "lo ", 3);
    cli_frame(c, true, 0, "World", 5);
    cli_read(fx, c); /* 2: pong "mid" */
    cli_read(fx, c); /* 3: "Hello World" */
    cli_frame(c, true, 9, "ping!", 5);
    cli_read(fx, c); /* 4: pong "ping!" */
    cli_close_frame(c, 4000, "bye");
    cli_read(fx, c); /* 5: close 4000 */
    fx->status[1] = wt_cli_eof(c);
    wt_cli_free(c);
}

static void test_ws_echo(void **state)
{
    WY_UNUSED(state);
    wy_metrics_reset(); /* no server exists: this test owns the registry */
    wy_metrics_set_service("test");
    fx_t *fx = fx_serve(NULL, cl_echo);
    assert_int_equal(fx->status[0], 101);
    assert_non_null(strstr(g_hdr[0], "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_int_equal(fx->opens, 1);
    assert_true(fx->user_ok);
    assert_int_equal(fx->op[0], 1);
    assert_string_equal(fx->text[0], "hello");
    assert_int_equal(fx->op[1], 2);
    assert_int_equal(fx->len[1], 3);
    assert_memory_equal(fx->text[1], "\x00\x01\x02", 3);
    assert_int_equal(fx->op[2], 10);
    assert_string_equal(fx->text[2], "mid");
    assert_int_equal(fx->op[3], 1);
    assert_string_equal(fx->text[3], "Hello World");
    assert_int_equal(fx->op[4], 10);
    assert_string_equal(fx->text[4], "ping!");
    assert_int_equal(fx->op[5], 8);
    assert_int_equal(((uint8_t)fx->text[5][0] << 8) | (uint8_t)fx->text[5][1], 4000);
    assert_true(fx->status[1]); /* server closed the TCP connection after the handshake */
    assert_int_equal(fx->ncl, 1);
    assert_int_equal(fx->cl[0].code, 4000);
    assert_string_equal(fx->cl[0].reason, "bye");
    assert_int_equal(fx->msgs_in, 3);
    wy_free(fx);
    /* The upgrade is a timed route; each message the service observed counts by its type. */
    wy_buf_t b = WY_BUF_INIT;
    wy_metrics_render(&b);
    wt_assert_contains(
        b.data,
        (const char *const[]){"wy_test_http_request_total{route=\"GET /ws\",outcome=\"ok\"} 1\n",
                              "wy_test_ws_message_seconds_count{type=\"text\"} 2\n",
                              "wy_test_ws_message_seconds_count{type=\"binary\"} 1\n",
                              "wy_test_ws_message_total{type=\"text\",outcome=\"ok\"} 2\n", NULL});
    wy_buf_free(&b);
    wy_metrics_set_service(NULL);
}

static void cl_server_close(fx_t *fx)
{
    wt_cli_t *c = cli_ws(fx, "/ws");
    cli_frame(c, true, 1, "close-me", 8);
    cli_read(fx, c); /* text "last words" */
    cli_read(fx, c); /* close 4001 "asked" */
    fx->status[1] = cli_close_eof(c, 4001);
    wt_cli_free(c);
}

/* ws_park_idle: frames split anywhere (inside the header, inside the 16-bit length, inside the
 * payload), a fragmented message with a ping between its fragments, and server pings, all with
 * the framing state freed between messages: every message arrives whole and in order. */
static void cl_park(fx_t *fx)
{
    wt_cli_t *c = cli_ws(fx, "/ws");
    cli_frame(c, true, 1, "hello", 5);
    cli_read_data(fx, c); /* 0 */
    cli_frame_split(c, true, 1, "split-header", 12, 1);
    cli_read_data(fx, c); /* 1 */
    char big[200];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    cli_frame_split(c, true, 2, big, sizeof big, 3); /* inside the length */
    cli_read_data(fx, c);                            /* 2 */
    cli_frame_split(c, true, 1, "split-payload", 13, 9);
    cli_read_data(fx, c); /* 3 */
    cli_frame(c, false, 1, "Hel", 3);
    usleep(20 * 1000);
    cli_frame(c, true, 9, "mid", 3);
    usleep(20 * 1000);
    cli_frame_split(c, false, 0, "lo ", 3, 2);
    cli_frame(c, true, 0, "World", 5);
    cli_read_data(fx, c); /* 4: pong "mid" */
    cli_read_data(fx, c); /* 5: "Hello World" */
    int pings = 0;        /* the server's pings come from a parked connection too */
    while (pings < 2) {
        uint8_t b0;
        size_t n, hl;
        if (!cli_header(c, &b0, &n, &hl) || !wt_cli_need(c, hl + n))
            break;
        pings += (b0 & 0x0f) == 9;
        wt_cli_consume(c, hl + n);
    }
    fx->status[1] = pings;
    cli_frame(c, true, 1, "after pings", 11);
    cli_read_data(fx, c); /* 6 */
    cli_close_frame(c, 4000, "bye");
    cli_read_data(fx, c); /* 7: close 4000 */
    wt_cli_free(c);
}

static void test_ws_park_idle(void **state)
{
    WY_UNUSED(state);
    wy_http_limits_t lim = wt_http_limits();
    lim.ws_park_idle = true;
    lim.ws_ping_interval_ms = 30;
    lim.ws_idle_timeout_ms = 10000;
    fx_t *fx = fx_serve(&lim, cl_park);
    assert_int_equal(fx->status[0], 101);
    assert_string_equal(fx->text[0], "hello");
    assert_string_equal(fx->text[1], "split-header");
    assert_int_equal(fx->op[2], 2);
    assert_int_equal(fx->len[2], 200);
    assert_memory_equal(fx->text[2], "abcdefghijklmnopqrstuvwxyzabcd", 30);
    assert_string_equal(fx->text[3], "split-payload");
    assert_int_equal(fx->op[4], 10);
    assert_string_equal(fx->text[4], "mid");
    assert_string_equal(fx->text[5], "Hello World");
    assert_int_equal(fx->status[1], 2);
    assert_string_equal(fx->text[6], "after pings");
    assert_int_equal(fx->op[7], 8);
    assert_int_equal(fx->cl[0].code, 4000);
    assert_int_equal(fx->msgs_in, 6);
    /* Freed after each whole message and after each ping, never inside one. */
    assert_true(fx->parks >= 7);
    wy_free(fx);
}

static void test_ws_server_close(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_serve(NULL, cl_server_close);
    assert_int_equal(fx->status[0], 101);
    assert_int_equal(fx->op[0], 1);
    assert_string_equal(fx->text[0], "last words");
    assert_int_equal(fx->op[1], 8);
    assert_int_equal(fx->len[1], 7);
    assert_string_equal(fx->text[1] + 2, "asked");
    assert_true(fx->status[1]);
    assert_int_equal(fx->ncl, 1);
    assert_int_equal(fx->cl[0].code, 4001);
    wy_free(fx);
}

static void cl_limits(fx_t *fx)
{
    wt_cli_t *c = malloc(sizeof(*c));
    char big[2000];
    memset(big, 'z', sizeof(big));
    wt_cli_open(c, fx->port);
    fx->status[0] = cli_upgrade(c, "/ws", STD_KEY, g_hdr[0], sizeof(g_hdr[0]));
    cli_frame(c, true, 1, big, sizeof(big));
    cli_read(fx, c); /* 0: close 1009 */
    fx->status[1] = cli_close_eof(c, 1009);
    wt_cli_close(c);
    /* fragments adding up over the limit */
    wt_cli_open(c, fx->port);
    cli_upgrade(c, "/ws", STD_KEY, g_hdr[1], sizeof(g_hdr[1]));
    cli_frame(c, false, 2, big, 800);
    cli_frame(c, true, 0, big, 800);
    cli_read(fx, c); /* 1: close 1009 */
    wt_cli_close(c);
    /* invalid UTF-8 in a text message */
    wt_cli_open(c, fx->port);
    cli_upgrade(c, "/ws", STD_KEY, g_hdr[2], sizeof(g_hdr[2]));
    cli_frame(c, true, 1, "ok\xc3\x28", 4);
    cli_read(fx, c); /* 2: close 1007 */
    wt_cli_free(c);
}

static void test_ws_limits(void **state)
{
    WY_UNUSED(state);
    wy_http_limits_t lim = wt_http_limits();
    lim.ws_max_message_bytes = 1024;
    fx_t *fx = fx_serve(&lim, cl_limits);
    assert_int_equal(fx->status[0], 101);
    int codes[3] = {1009, 1009, 1007};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fx->op[i], 8);
        assert_int_equal(((uint8_t)fx->text[i][0] << 8) | (uint8_t)fx->text[i][1], codes[i]);
    }
    assert_true(fx->status[1]);
    assert_int_equal(fx->ncl, 3);
    assert_int_equal(fx->msgs_in, 0); /* nothing bad reached on_message */
    wy_free(fx);
}

static void cl_bad_upgrade(fx_t *fx)
{
    wt_cli_t *c = malloc(sizeof(*c));
    const char *extras[] = {
        "Sec-WebSocket-Version: 13\r\n", /* no key */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
        "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n", /* short key */
    };
    for (int i = 0; i < 3; i++) {
        wt_cli_open(c, fx->port);
        fx->status[i] = cli_upgrade(c, "/ws", extras[i], g_hdr[i], sizeof(g_hdr[i]));
        wt_cli_close(c);
    }
    /* plain GET without Upgrade */
    wt_cli_open(c, fx->port);
    const char *plain = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
    wt_cli_send(c, plain, strlen(plain));
    wt_cli_need(c, 12);
    fx->status[3] = atoi((char *)c->buf + 9);
    wt_cli_free(c);
}

static void test_ws_bad_upgrade(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_serve(NULL, cl_bad_upgrade);
    for (int i = 0; i < 4; i++)
        assert_int_equal(fx->status[i], 400);
    assert_non_null(strstr(g_hdr[0], "\"code\":\"BAD_UPGRADE\""));
    assert_non_null(strstr(g_hdr[1], "Sec-WebSocket-Version: 13\r\n"));
    assert_int_equal(fx->opens, 0);
    wy_free(fx);
}

/* A client that never reads while the server keeps sending: its queue hits the bound, the send
 * fails with WY_EBUSY, it is dropped with 1008, and another client is served throughout. */
static void cl_slow(fx_t *fx)
{
    wt_cli_t *slow = malloc(sizeof(*slow)), *ok = malloc(sizeof(*ok));
    wt_cli_open(slow, fx->port);
    int sz = 4096; /* small receive buffer so the queue fills quickly */
    setsockopt(slow->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    fx->status[0] = cli_upgrade(slow, "/ws", STD_KEY, g_hdr[0], sizeof(g_hdr[0]));
    cli_frame(slow, true, 1, "flood", 5);
    wt_cli_open(ok, fx->port);
    fx->status[1] = cli_upgrade(ok, "/ws", STD_KEY, g_hdr[1], sizeof(g_hdr[1]));
    cli_frame(ok, true, 1, "still here", 10);
    cli_read(fx, ok); /* 0 */
    sem_wait(&fx->flood_closed);
    cli_frame(ok, true, 1, "after", 5);
    cli_read(fx, ok); /* 1 */
    wt_cli_close(slow);
    wt_cli_close(ok);
    free(slow);
    free(ok);
}

static void test_ws_slow_reader(void **state)
{
    WY_UNUSED(state);
    wy_http_limits_t lim = wt_http_limits();
    lim.ws_max_send_queue_bytes = 256 * 1024;
    lim.ws_close_timeout_ms = 100;
    fx_t *fx = fx_serve(&lim, cl_slow);
    assert_int_equal(fx->status[0], 101);
    assert_int_equal(fx->status[1], 101);
    assert_int_equal(fx->flood_rc, WY_EBUSY);
    assert_true(fx->flood_sent > 0);
    assert_string_equal(fx->text[0], "still here");
    assert_string_equal(fx->text[1], "after");
    assert_int_equal(fx->cl[0].code, 1008);
    assert_string_equal(fx->cl[0].reason, "send queue full");
    assert_int_equal(fx->overflows, 1);
    wy_free(fx);
}

/* Server pings; a client that never answers is closed with 1001 after the idle timeout. */
static void cl_idle(fx_t *fx)
{
    wt_cli_t *c = cli_ws(fx, "/ws");
    for (int i = 0; i < 7; i++)
        if (cli_read(fx, c) != 9)
            break;
    wt_cli_free(c);
}

static void test_ws_ping_idle_timeout(void **state)
{
    WY_UNUSED(state);
    wy_http_limits_t lim = wt_http_limits();
    lim.ws_ping_interval_ms = 20;
    lim.ws_idle_timeout_ms = 50;
    lim.ws_close_timeout_ms = 50;
    fx_t *fx = fx_serve(&lim, cl_idle);
    assert_int_equal(fx->status[0], 101);
    assert_int_equal(fx->op[0], 9); /* at least one ping came first */
    int last = fx->n - 1;
    assert_int_equal(fx->op[last], 8);
    assert_int_equal(((uint8_t)fx->text[last][0] << 8) | (uint8_t)fx->text[last][1], 1001);
    assert_int_equal(fx->cl[0].code, 1001);
    wy_free(fx);
}

/* ---------------------------------------------------------------- fan-out */

/* Reads one data frame of any size, streaming it through the client buffer, and checks it
 * byte for byte against the unmasked binary frame of want pattern bytes: FIN + binary opcode,
 * the shortest length encoding, no mask, the pattern. Pings are skipped. */
static bool cli_read_pattern(wt_cli_t *c, size_t want)
{
    uint8_t b0;
    size_t n, hl;
    for (;;) {
        if (!cli_header(c, &b0, &n, &hl))
            return false;
        if ((b0 & 0x0f) != 9)
            break;
        if (!wt_cli_need(c, hl + n)) /* a server ping */
            return false;
        wt_cli_consume(c, hl + n);
    }
    size_t shortest = want < 126 ? 2 : want <= 0xffff ? 4 : 10;
    if (b0 != 0x82 || n != want || hl != shortest)
        return false;
    wt_cli_consume(c, hl);
    size_t off = 0;
    while (off < want) {
        if (c->len == 0 && !wt_cli_fill(c))
            return false;
        size_t k = c->len < want - off ? c->len : want - off;
        for (size_t i = 0; i < k; i++)
            if ((uint8_t)c->buf[i] != pattern(off + i))
                return false;
        off += k;
        wt_cli_consume(c, k);
    }
    return true;
}

#define BIG 200000 /* over 64 KiB (8-byte length) and over the client buffer */

/* Five clients; one asks for a broadcast of one big frame, one closes (unread data: a reset)
 * after the first bytes while the server is still writing to it; the others get the whole
 * identical frame, which therefore outlives the connection that dropped its reference. */
static void cl_broadcast(fx_t *fx)
{
    wt_cli_t *c[5];
    for (int i = 0; i < 5; i++) {
        c[i] = malloc(sizeof(*c[i]));
        wt_cli_open(c[i], fx->port);
        if (i == 4) {
            int sz = 4096; /* the write to it stays in flight */
            setsockopt(c[i]->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        }
        fx->status[i] = cli_upgrade(c[i], "/ws", STD_KEY, g_hdr[i], sizeof(g_hdr[i]));
    }
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "bcast:%d", BIG);
    cli_frame(c[0], true, 1, cmd, strlen(cmd));
    wt_cli_need(c[4], 2);
    wt_cli_free(c[4]);
    for (int i = 0; i < 4; i++)
        fx->op[i] = cli_read_pattern(c[i], BIG);
    /* and a small one, after the big one, to the four left */
    cli_frame(c[1], true, 1, "bcast:5", 7);
    for (int i = 0; i < 4; i++)
        fx->op[4 + i] = cli_read_pattern(c[i], 5);
    for (int i = 0; i < 4; i++)
        wt_cli_free(c[i]);
}

static void test_ws_broadcast(void **state)
{
    WY_UNUSED(state);
    fx_t *fx = fx_serve(NULL, cl_broadcast);
    for (int i = 0; i < 5; i++)
        assert_int_equal(fx->status[i], 101);
    for (int i = 0; i < 8; i++)
        assert_true(fx->op[i]); /* identical bytes everywhere */
    assert_int_equal(fx->bcast_first, 5);
    /* One shared buffer, counted against the budget once per connection holding it. */
    assert_int_equal(fx->budget_first, 5 * (10 + BIG));
    wy_free(fx);
}

/* Three clients stop reading, one keeps up: every "more" from the fast client broadcasts one
 * 16 KiB frame to all four, so the fast client never has more than a frame queued while the
 * slow ones pile up until the server's budget closes them, largest queue first. The fast one
 * keeps receiving every frame throughout and after. */
static void cl_budget(fx_t *fx)
{
    wt_cli_t *slow[3], *fast = malloc(sizeof(*fast));
    for (int i = 0; i < 3; i++) {
        slow[i] = malloc(sizeof(*slow[i]));
        wt_cli_open(slow[i], fx->port);
        int sz = 4096;
        setsockopt(slow[i]->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        fx->status[i] = cli_upgrade(slow[i], "/ws", STD_KEY, g_hdr[i], sizeof(g_hdr[i]));
    }
    wt_cli_open(fast, fx->port);
    fx->status[3] = cli_upgrade(fast, "/ws", STD_KEY, g_hdr[3], sizeof(g_hdr[3]));
    int closed = 0, rounds = 0, after = 0;
    bool ok = true;
    /* Bounded: 3 x (4 MiB of kernel buffers + the budget) in 16 KiB frames is far less. */
    while (ok && rounds < 20000 && after < 20) {
        cli_frame(fast, true, 1, "more", 4);
        ok = cli_read_pattern(fast, 16384);
        rounds++;
        while (closed < 3 && sem_trywait(&fx->budget_sem) == 0)
            closed++;
        if (closed == 3)
            after++;
    }
    fx->status[4] = ok;
    fx->status[5] = closed;
    fx->status[6] = after;
    for (int i = 0; i < 3; i++)
        wt_cli_free(slow[i]);
    wt_cli_free(fast);
}

static void test_ws_send_budget(void **state)
{
    WY_UNUSED(state);
    wy_http_limits_t lim = wt_http_limits();
    lim.ws_send_budget_bytes = 512 * 1024;
    lim.ws_close_timeout_ms = 100; /* the slow ones never answer the close */
    char *name = wy_metrics_svc_name("ws_send_budget_closes_total");
    double before = wy_metric_value(wy_metrics_counter(name, "x", NULL));
    fx_t *fx = fx_serve(&lim, cl_budget);
    for (int i = 0; i < 4; i++)
        assert_int_equal(fx->status[i], 101);
    assert_true(fx->status[4]);          /* the fast client got every frame intact */
    assert_int_equal(fx->status[5], 3);  /* all three slow ones closed */
    assert_int_equal(fx->status[6], 20); /* and the fast one kept receiving after */
    assert_int_equal(fx->nbudget, 3);
    assert_int_equal(fx->budget_closes, 3);
    assert_int_equal(fx->overflows, 0); /* the budget acted, not the per-connection cap */
    assert_int_equal(fx->queued_after, 0);
    assert_true(wy_metric_value(wy_metrics_counter(name, NULL, NULL)) == before + 3);
    wy_free(name);
    wy_free(fx);
}

int main(void)
{
    /* As in every daemon (wy_daemon_main): a client resetting mid-write must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_echo),        cmocka_unit_test(test_ws_server_close),
        cmocka_unit_test(test_ws_limits),      cmocka_unit_test(test_ws_bad_upgrade),
        cmocka_unit_test(test_ws_slow_reader), cmocka_unit_test(test_ws_ping_idle_timeout),
        cmocka_unit_test(test_ws_broadcast),   cmocka_unit_test(test_ws_send_budget),
        cmocka_unit_test(test_ws_park_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
