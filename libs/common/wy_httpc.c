/* wy_httpc — outbound HTTP(S) client: libcurl's multi "socket" interface, where curl tells us
 * which sockets to watch (uv_poll) and when to wake it (uv_timer), all on the daemon's loop. */
#include "wy_httpc.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "wy_list.h"

#define DEF_MAX_CONCURRENT     64u
#define DEF_MAX_RESPONSE_BYTES (1u << 20)
#define DEF_MAX_REQUEST_BYTES  (1u << 20)
#define DEF_TIMEOUT_MS         10000u
#define DEF_CONNECT_TIMEOUT_MS 5000u
#define DEF_USER_AGENT         "wyvern-httpc/1"
#define MAX_URL_LEN            8192u
#define MAX_HEADERS            64u
#define MAX_HEADER_LEN         8192u

typedef struct req req_t;
typedef struct sock sock_t;

struct wy_httpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    wy_httpc_opts_t o;
    char *ca_file, *user_agent;
    wy_list_t reqs;  /* in flight: req_t.node */
    wy_list_t socks; /* sock_t.node */
    uint32_t inflight;
    int dispatching; /* > 0 while completions are being delivered: close waits for it */
    bool closing, torn_down;
    unsigned open_handles; /* uv handles whose close callback has not run yet */
    void (*done)(void *ud);
    void *done_ud;
};

struct sock {
    uv_poll_t poll;
    wy_httpc_t *c;
    curl_socket_t fd;
    wy_list_t node;
};

struct req {
    wy_httpc_t *c;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body; /* request body copy */
    char *resp;
    size_t resp_len, resp_cap;
    bool toobig;
    wy_httpc_cb cb;
    void *ud;
    wy_list_t node;
    char errbuf[CURL_ERROR_SIZE];
};

static uv_once_t global_once = UV_ONCE_INIT;
static CURLcode global_rc;

/* curl_global_init is process-wide and must run once before any handle: uv_once makes it safe
 * when several loops (tests, tools) create clients. It is never undone, like OpenSSL's init. */
static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- handles ---- */

static void maybe_free(wy_httpc_t *c)
{
    if (!c->torn_down || c->open_handles > 0)
        return;
    void (*done)(void *) = c->done;
    void *ud = c->done_ud;
    wy_free(c->ca_file);
    wy_free(c->user_agent);
    wy_free(c);
    if (done)
        done(ud);
}

static void on_sock_closed(uv_handle_t *h)
{
    sock_t *sk = (sock_t *)h;
    wy_httpc_t *c = sk->c;
    wy_free(sk);
    c->open_handles--;
    maybe_free(c);
}

static void sock_close(sock_t *sk)
{
    wy_httpc_t *c = sk->c;
    wy_list_remove(&sk->node);
    uv_poll_stop(&sk->poll);
    c->open_handles++;
    uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
}

static void on_timer_closed(uv_handle_t *h)
{
    wy_httpc_t *c = WY_CONTAINER_OF(h, wy_httpc_t, timer);
    c->open_handles--;
    maybe_free(c);
}

/* ---- requests ---- */

static void req_unlink(req_t *r)
{
    wy_list_remove(&r->node);
    r->c->inflight--;
}

static void req_free(req_t *r)
{
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    wy_free(r->body);
    wy_free(r->resp);
    wy_free(r);
}

static int map_result(const req_t *r, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return WY_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return WY_ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return WY_EUNAVAIL;
    case CURLE_FILESIZE_EXCEEDED:
        return WY_ETOOBIG;
    case CURLE_WRITE_ERROR:
        return r->toobig ? WY_ETOOBIG : WY_EIO;
    default:
        return WY_EIO;
    }
}

/* Unlink r, tell its owner, free it. Called outside any curl callback. */
static void req_finish(req_t *r, CURLcode rc, bool canceled)
{
    wy_httpc_t *c = r->c;
    req_unlink(r);
    curl_multi_remove_handle(c->multi, r->easy);

    int err = canceled ? WY_ECANCELED : map_result(r, rc);
    long status = 0;
    if (!canceled)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    char msg[CURL_ERROR_SIZE + 96];
    if (canceled)
        snprintf(msg, sizeof msg, "canceled: client closing");
    else if (err == WY_OK)
        snprintf(msg, sizeof msg, "ok");
    else if (err == WY_ETOOBIG)
        snprintf(msg, sizeof msg, "response body over %zu bytes", c->o.max_response_bytes);
    else
        snprintf(msg, sizeof msg, "%s%s%s", curl_easy_strerror(rc), r->errbuf[0] ? ": " : "",
                 r->errbuf);
    if (!r->resp)
        r->resp = wy_strdup("");
    else
        r->resp[r->resp_len] = '\0';
    r->cb(err, (int)status, r->resp, err == WY_OK ? r->resp_len : 0, msg, r->ud);
    req_free(r);
}

static void teardown(wy_httpc_t *c);

/* Deliver every finished transfer. Completion callbacks may start requests or close c. */
static void process_done(wy_httpc_t *c)
{
    CURLMsg *m;
    int left;
    c->dispatching++;
    while (!c->closing && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        req_t *r = NULL;
        CURLcode rc = m->data.result; /* m is invalid once the handle is removed */
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        req_finish(r, rc, false);
    }
    c->dispatching--;
    if (c->closing && c->dispatching == 0 && !c->torn_down)
        teardown(c);
}

/* ---- curl callbacks: only (re)arm watchers; never deliver completions from here ---- */

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_t *sk = (sock_t *)h;
    wy_httpc_t *c = sk->c;
    int flags = 0, running = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    /* sk may be closed by the socket callback during this call: do not touch it after. */
    curl_multi_socket_action(c->multi, sk->fd, flags, &running);
    process_done(c);
}

static void on_timer(uv_timer_t *t)
{
    wy_httpc_t *c = WY_CONTAINER_OF(t, wy_httpc_t, timer);
    int running = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    process_done(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    wy_httpc_t *c = userp;
    sock_t *sk = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sk) {
            if (!c->torn_down) /* during curl_multi_cleanup the multi is going away */
                curl_multi_assign(c->multi, s, NULL);
            sock_close(sk);
        }
        return 0;
    }
    if (c->torn_down)
        return 0;
    if (!sk) {
        sk = wy_calloc(1, sizeof *sk);
        if (uv_poll_init_socket(c->loop, &sk->poll, s) != 0) {
            wy_free(sk);
            return -1; /* curl fails the transfer */
        }
        sk->c = c;
        sk->fd = s;
        wy_list_push_front(&c->socks, &sk->node);
        curl_multi_assign(c->multi, s, sk);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&sk->poll, ev, on_poll);
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    wy_httpc_t *c = userp;
    (void)multi;
    if (c->torn_down)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else /* 0 means "as soon as possible": the next loop turn, never a nested socket_action */
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    req_t *r = ud;
    size_t n = size * nmemb;
    size_t max = r->c->o.max_response_bytes;
    if (n > max - r->resp_len) {
        r->toobig = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (r->resp_len + n + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 1024;
        while (cap < r->resp_len + n + 1)
            cap *= 2;
        r->resp = wy_realloc(r->resp, cap);
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, ptr, n);
    r->resp_len += n;
    return n;
}

/* ---- public ---- */

int wy_httpc_new(uv_loop_t *loop, const wy_httpc_opts_t *opts, wy_httpc_t **out)
{
    uv_once(&global_once, global_init);
    if (global_rc != CURLE_OK || !loop || !out)
        return global_rc != CURLE_OK ? WY_EINTERNAL : WY_EINVAL;
    wy_httpc_t *c = wy_calloc(1, sizeof *c);
    wy_list_init(&c->reqs);
    wy_list_init(&c->socks);
    c->loop = loop;
    if (opts)
        c->o = *opts;
    if (!c->o.max_concurrent)
        c->o.max_concurrent = DEF_MAX_CONCURRENT;
    if (!c->o.max_response_bytes)
        c->o.max_response_bytes = DEF_MAX_RESPONSE_BYTES;
    if (!c->o.max_request_bytes)
        c->o.max_request_bytes = DEF_MAX_REQUEST_BYTES;
    if (!c->o.timeout_ms)
        c->o.timeout_ms = DEF_TIMEOUT_MS;
    if (!c->o.connect_timeout_ms)
        c->o.connect_timeout_ms = DEF_CONNECT_TIMEOUT_MS;
    c->ca_file = c->o.ca_file && *c->o.ca_file ? wy_strdup(c->o.ca_file) : NULL;
    c->user_agent =
        wy_strdup(c->o.user_agent && *c->o.user_agent ? c->o.user_agent : DEF_USER_AGENT);
    c->o.ca_file = c->ca_file;
    c->o.user_agent = c->user_agent;

    c->multi = curl_multi_init();
    if (!c->multi) {
        wy_free(c->ca_file);
        wy_free(c->user_agent);
        wy_free(c);
        return WY_EINTERNAL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer);
    *out = c;
    return WY_OK;
}

static bool method_ok(const char *m)
{
    static const char *const ok[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    for (size_t i = 0; i < WY_ARRAY_LEN(ok); i++)
        if (strcmp(m, ok[i]) == 0)
            return true;
    return false;
}

static bool url_ok(const char *u)
{
    size_t n = strnlen(u, MAX_URL_LEN + 1);
    if (n == 0 || n > MAX_URL_LEN)
        return false;
    if (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f)
            return false;
    return true;
}

static bool header_ok(const char *h)
{
    size_t n = strnlen(h, MAX_HEADER_LEN + 1);
    const char *colon = memchr(h, ':', n);
    if (n == 0 || n > MAX_HEADER_LEN || !colon || colon == h)
        return false;
    for (size_t i = 0; i < n; i++)
        if (h[i] == '\r' || h[i] == '\n')
            return false;
    return true;
}

int wy_httpc_request(wy_httpc_t *c, const char *method, const char *url, const char *const *headers,
                     const void *body, size_t len, uint32_t timeout_ms, wy_httpc_cb cb, void *ud)
{
    if (!c || !cb || !method || !url || (len > 0 && !body))
        return WY_EINVAL;
    if (c->closing)
        return WY_ECANCELED;
    if (!method_ok(method) || !url_ok(url))
        return WY_EINVAL;
    size_t nh = 0;
    for (; headers && headers[nh]; nh++)
        if (nh >= MAX_HEADERS || !header_ok(headers[nh]))
            return WY_EINVAL;
    if (len > c->o.max_request_bytes)
        return WY_ETOOBIG;
    if (c->inflight >= c->o.max_concurrent)
        return WY_EBUSY;

    req_t *r = wy_calloc(1, sizeof *r);
    r->c = c;
    r->cb = cb;
    r->ud = ud;
    r->easy = curl_easy_init();
    if (!r->easy) {
        wy_free(r);
        return WY_EINTERNAL;
    }
    for (size_t i = 0; i < nh; i++)
        r->hdrs = curl_slist_append(r->hdrs, headers[i]);
    bool has_body = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                    strcmp(method, "PATCH") == 0 || len > 0;
    if (has_body) /* no "Expect: 100-continue" round trip: our bodies are small */
        r->hdrs = curl_slist_append(r->hdrs, "Expect:");

    uint32_t tmo = timeout_ms ? timeout_ms : c->o.timeout_ms;
    uint32_t ctmo = c->o.connect_timeout_ms < tmo ? c->o.connect_timeout_ms : tmo;
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, c->o.max_redirects ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)c->o.max_redirects);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)tmo);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ctmo);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->o.max_response_bytes);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (r->hdrs)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (has_body) {
        r->body = wy_malloc(len ? len : 1);
        if (len)
            memcpy(r->body, body, len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    }

    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        req_free(r);
        return WY_EINTERNAL;
    }
    wy_list_push_front(&c->reqs, &r->node);
    c->inflight++;
    return WY_OK;
}

uint32_t wy_httpc_inflight(const wy_httpc_t *c)
{
    return c->inflight;
}

/* Cancel what is pending and close everything; runs once, outside completion delivery. */
static void teardown(wy_httpc_t *c)
{
    c->dispatching++; /* a close from a cancel callback must not re-enter */
    wy_list_t *n;
    while ((n = wy_list_first(&c->reqs)) != NULL)
        req_finish(wy_container_of(n, req_t, node), CURLE_OK, true);
    c->dispatching--;
    c->torn_down = true;
    /* Cleanup closes cached connections and may report their sockets as removed. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while ((n = wy_list_first(&c->socks)) != NULL)
        sock_close(wy_container_of(n, sock_t, node));
    c->open_handles++;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void wy_httpc_close(wy_httpc_t *c, void (*done)(void *ud), void *ud)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    c->done = done;
    c->done_ud = ud;
    if (c->dispatching == 0)
        teardown(c);
}
