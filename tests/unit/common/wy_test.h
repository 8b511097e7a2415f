/* Shared helpers of the cmocka unit tests: environment lookups that fail clearly, a libuv loop
 * fixture with a guard timer, and a blocking loopback TCP client. Header-only, because the
 * Makefile builds each tests/unit/common/test_*.c into its own binary. Include after <cmocka.h>. */
#ifndef WY_TEST_H
#define WY_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

/* ---------------------------------------------------------------- environment */

/* Value of the environment variable name; fails the test if it is unset or empty, naming what the
 * test needs (e.g. "PostgreSQL") and an example value, so a missing stack never passes silently. */
static inline const char *wt_env(const char *name, const char *needs, const char *example)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        fail_msg("%s is not set: these tests need a real %s (export %s=%s)", name, needs, name,
                 example);
    return v;
}

/* ---------------------------------------------------------------- text */

/* Writes text to dir/name (created or truncated); fails the test if it cannot. */
static inline void wt_write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Fails the test, showing text, unless text contains every string of the NULL-terminated list. */
static inline void wt_assert_contains(const char *text, const char *const *needles)
{
    assert_non_null(text);
    for (; *needles; needles++)
        if (strstr(text, *needles) == NULL)
            fail_msg("\"%s\" not found in:\n%s", *needles, text);
}

/* ---------------------------------------------------------------- ports */

/* A loopback port that was free a moment ago and has no listener: connects to it are refused. */
static inline int wt_closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* bound but never listening */
    return ntohs(a.sin_port);
}

/* ---------------------------------------------------------------- loop fixture */

/* A loop with a guard timer that fails the test if a WT_RUN_UNTIL wait never ends. The guard is
 * unreferenced except while waiting, so it never keeps the loop alive by itself. */
typedef struct {
    uv_loop_t loop;
    uv_timer_t guard;
    uint64_t guard_ms;
    const char *waiting_for; /* the condition WT_RUN_UNTIL is waiting on, for the message */
    bool closed;             /* set by wt_on_closed */
} wt_loop_t;

static inline void wt_on_guard(uv_timer_t *t)
{
    const wt_loop_t *l = t->data;
    fail_msg("test did not finish within %llu ms (waiting for: %s)",
             (unsigned long long)l->guard_ms, l->waiting_for ? l->waiting_for : "?");
}

/* Initialises l with a guard of guard_ms for the whole test. */
static inline void wt_loop_init(wt_loop_t *l, uint64_t guard_ms)
{
    memset(l, 0, sizeof *l);
    assert_int_equal(uv_loop_init(&l->loop), 0);
    uv_timer_init(&l->loop, &l->guard);
    l->guard.data = l;
    l->guard_ms = guard_ms;
    uv_timer_start(&l->guard, wt_on_guard, guard_ms, 0);
    uv_unref((uv_handle_t *)&l->guard);
}

/* Runs the loop of l (a wt_loop_t *) until cond holds; the guard fails the test if it never does.
 */
#define WT_RUN_UNTIL(l, cond)                                                                      \
    do {                                                                                           \
        (l)->waiting_for = #cond;                                                                  \
        uv_ref((uv_handle_t *)&(l)->guard);                                                        \
        while (!(cond))                                                                            \
            uv_run(&(l)->loop, UV_RUN_ONCE);                                                       \
        uv_unref((uv_handle_t *)&(l)->guard);                                                      \
    } while (0)

/* A module close callback (void (*)(void *)) with ud = the wt_loop_t: sets l->closed. */
static inline void wt_on_closed(void *ud)
{
    ((wt_loop_t *)ud)->closed = true;
}

/* Closes the guard, runs the loop dry and checks that every handle was closed. */
static inline void wt_loop_done(wt_loop_t *l)
{
    uv_close((uv_handle_t *)&l->guard, NULL);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&l->loop), 0);
}

/* If mod is not NULL: close_fn(mod, wt_on_closed, l) (the close of a wy_ module, whose callback
 * is void (*)(void *)) and wait for its callback; then wt_loop_done(l). */
#define WT_CLOSE_AND_DONE(l, close_fn, mod)                                                        \
    do {                                                                                           \
        if ((mod) != NULL) {                                                                       \
            close_fn((mod), wt_on_closed, (l));                                                    \
            WT_RUN_UNTIL(l, (l)->closed);                                                          \
        }                                                                                          \
        wt_loop_done(l);                                                                           \
    } while (0)

static inline void wt_on_deadline(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs loop until pred(arg) holds; fails the test with "timed out waiting for: what" after
 * timeout_ms. For loops without a wt_loop_t. */
static inline void wt_run_pred(uv_loop_t *loop, bool (*pred)(void *), void *arg,
                               uint64_t timeout_ms, const char *what)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, wt_on_deadline, timeout_ms, 0);
    while (!pred(arg) && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (expired)
        fail_msg("timed out after %llu ms waiting for: %s", (unsigned long long)timeout_ms, what);
}

/* Runs loop until every handle is closed, then checks that it closes. */
static inline void wt_loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* ---------------------------------------------------------------- client thread */

/* A thread that drives blocking clients while the test thread runs the loop: fn(arg) runs on the
 * thread; when it returns, done runs on the loop thread with async.data == arg. done must
 * uv_close the async handle (and usually starts closing the server, so uv_run returns). */
typedef struct {
    uv_async_t async;
    pthread_t th;
    void (*fn)(void *);
    void *arg;
} wt_thread_t;

static inline void *wt_thread_main(void *p)
{
    wt_thread_t *t = p;
    t->fn(t->arg);
    uv_async_send(&t->async);
    return NULL;
}

/* Starts fn(arg) on a new thread; call from the loop thread before running loop. */
static inline void wt_thread_start(wt_thread_t *t, uv_loop_t *loop, uv_async_cb done,
                                   void (*fn)(void *), void *arg)
{
    t->fn = fn;
    t->arg = arg;
    assert_int_equal(uv_async_init(loop, &t->async, done), 0);
    t->async.data = arg;
    assert_int_equal(pthread_create(&t->th, NULL, wt_thread_main, t), 0);
}

static inline void wt_thread_join(wt_thread_t *t)
{
    assert_int_equal(pthread_join(t->th, NULL), 0);
}

/* wt_thread_start, then runs loop until it has nothing left to do, then joins the thread. */
static inline void wt_thread_run(wt_thread_t *t, uv_loop_t *loop, uv_async_cb done,
                                 void (*fn)(void *), void *arg)
{
    wt_thread_start(t, loop, done, fn, arg);
    uv_run(loop, UV_RUN_DEFAULT);
    wt_thread_join(t);
}

/* ---------------------------------------------------------------- blocking loopback client */

/* A blocking TCP client for a server on this host; for client threads, never the loop thread.
 * buf holds what was received and not yet consumed, always NUL-terminated. Large: allocate it. */
typedef struct {
    int fd;
    size_t len;
    char buf[1 << 17];
} wt_cli_t;

/* Connects to 127.0.0.1:port with a 10 s receive timeout (only a guard against a hung test).
 * Returns 0 or the errno of connect (then fd is -1). */
static inline int wt_cli_open(wt_cli_t *c, int port)
{
    c->len = 0;
    c->buf[0] = '\0';
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return errno;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int e = errno;
        close(c->fd);
        c->fd = -1;
        return e;
    }
    return 0;
}

/* A client on the heap (the buffer is too large for a thread's stack), connected as by
 * wt_cli_open; a failed connect shows as fd -1 and in what the test reads. Free with wt_cli_free.
 */
static inline wt_cli_t *wt_cli_new(int port)
{
    wt_cli_t *c = malloc(sizeof(*c));
    assert_non_null(c);
    wt_cli_open(c, port);
    return c;
}

/* Sends all n bytes; stops quietly if the peer is gone (the test asserts on what it reads). */
static inline void wt_cli_send(wt_cli_t *c, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static inline void wt_cli_puts(wt_cli_t *c, const char *s)
{
    wt_cli_send(c, s, strlen(s));
}

/* Receives once more into buf; false on EOF, error, timeout or a full buffer. */
static inline bool wt_cli_fill(wt_cli_t *c)
{
    if (c->len >= sizeof(c->buf) - 1)
        return false;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (n <= 0)
        return false;
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return true;
}

/* Receives until at least n bytes are buffered; false if the connection ends first. */
static inline bool wt_cli_need(wt_cli_t *c, size_t n)
{
    while (c->len < n)
        if (!wt_cli_fill(c))
            return false;
    return true;
}

/* Drops the first n buffered bytes. */
static inline void wt_cli_consume(wt_cli_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->buf[c->len] = '\0';
}

/* Reads one HTTP response (headers + Content-Length body) and consumes it; copies it, truncated to
 * outsz - 1 bytes, NUL-terminated, into out. Returns the status code, -1 if the connection ends
 * before the response is complete. */
static inline int wt_cli_response(wt_cli_t *c, char *out, size_t outsz)
{
    char *end;
    while (!(end = strstr(c->buf, "\r\n\r\n")))
        if (!wt_cli_fill(c))
            return -1;
    size_t hlen = (size_t)(end - c->buf) + 4;
    const char *cl = strcasestr(c->buf, "content-length:");
    size_t total = hlen + (cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0);
    if (!wt_cli_need(c, total))
        return -1;
    snprintf(out, outsz, "%.*s", (int)total, c->buf);
    int status = atoi(c->buf + 9);
    wt_cli_consume(c, total);
    return status;
}

/* True if the server closes the connection (EOF or reset) with nothing more to read. */
static inline bool wt_cli_eof(wt_cli_t *c)
{
    return c->len == 0 && !wt_cli_fill(c);
}

static inline void wt_cli_close(wt_cli_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Closes and frees a client from wt_cli_new. */
static inline void wt_cli_free(wt_cli_t *c)
{
    wt_cli_close(c);
    free(c);
}

/* ---------------------------------------------------------------- wy_http servers */

/* Only for tests that include wy_http.h (or wy_ws.h) before this header. */
#ifdef WY_HTTP_H
static inline wy_http_limits_t wt_http_limits(void)
{
    wy_http_limits_t lim;
    wy_http_limits_default(&lim);
    return lim;
}

/* Makes srv listen on 127.0.0.1 on a free port; returns the port. */
static inline int wt_http_listen(wy_http_server_t *srv)
{
    const char *err = NULL;
    assert_int_equal(wy_http_listen(srv, "127.0.0.1", 0, &err), WY_OK);
    int port = wy_http_port(srv);
    assert_true(port > 0);
    return port;
}
#endif

/* ---------------------------------------------------------------- PostgreSQL */

/* Only for tests that include wy_pg.h before this header. */
#ifdef WY_PG_H
/* Runs one SQL string on a blocking connection to WY_PG_URL (setup and checks outside the loop);
 * fails the test on an error. Returns the first value of the first row into out ("" if none). */
static inline const char *wt_pg(const char *sql, char *out, size_t outlen)
{
    PGconn *c = PQconnectdb(
        wt_env("WY_PG_URL", "PostgreSQL", "postgresql://postgres@127.0.0.1:PORT/postgres"));
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to WY_PG_URL: %s", PQerrorMessage(c));
    PQclear(PQexec(c, "SET client_min_messages TO warning"));
    PGresult *r = PQexec(c, sql);
    int st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    if (out) {
        out[0] = '\0';
        if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
            snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    PQfinish(c);
    return out;
}

/* wt_pg returning the first value as an integer. */
static inline long long wt_pg_int(const char *sql)
{
    char v[64];
    return strtoll(wt_pg(sql, v, sizeof v), NULL, 10);
}

/* A fresh schema named <prefix>_<pid>_<n> with the migrations of dir (relative to the repository
 * root, where the tests run) applied; its name goes to out. Drop it with wt_pg_drop_schema. */
static inline void wt_pg_schema(char *out, size_t n, const char *prefix, const char *dir)
{
    static int seq;
    snprintf(out, n, "%s_%d_%d", prefix, (int)getpid(), ++seq);
    const char *err = NULL;
    int rc = wy_pg_migrate(
        wt_env("WY_PG_URL", "PostgreSQL", "postgresql://postgres@127.0.0.1:PORT/postgres"), out,
        dir, NULL, &err);
    if (rc != WY_OK)
        fail_msg("migrations %s into %s: %s (run the tests from the repository root)", dir, out,
                 err ? err : "?");
}

static inline void wt_pg_drop_schema(const char *schema)
{
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", schema);
    wt_pg(sql, NULL, 0);
}
#endif

#endif
