/* wy_http — HTTP/1.1 (http-parser) and WebSocket (wslay) server on one libuv loop; implements
 * wy_http.h and wy_ws.h. A connection starts as HTTP and may switch to WebSocket on upgrade. */
#include "wy_http.h"
#include "wy_ws.h"
#include "wy_buf.h"
#include "wy_list.h"
#include "wy_log.h"
#include "wy_metrics.h"

#include <http_parser.h>
#include <wslay/wslay.h>
#include <openssl/evp.h>

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define READ_CHUNK   65536
#define PIPELINE_MAX 65536 /* unparsed bytes kept while a request is in a handler */
#define MAX_HEADERS  100
#define LINGER_MS    2000   /* after a final response: wait for the peer's FIN this long */
#define WS_OUT_CHUNK 262144 /* bytes pulled out of wslay per write; frame bytes per write */
#define WS_MAX_IOV   64     /* buffers in one write: the HTTP/control bytes + frames */
#define WS_GUID      "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct route {
    char *method; /* NULL for WebSocket routes (GET) */
    char *path;
    size_t path_len;
    bool prefix;
    bool ws;
    wy_http_handler_cb cb;
    void *ud;
    wy_ws_handlers_t wsh;
    wy_op_t *op; /* route="METHOD path" in wy_<svc>_http_request_seconds */
} route_t;

typedef struct wy_ws_conn conn_t;

/* One encoded server frame shared by every connection that queued it (wy_ws.h). */
struct wy_ws_frame {
    size_t refs; /* loop thread only */
    size_t len;  /* bytes[]: header + payload */
    size_t payload_len;
    uint8_t bytes[];
};

/* Connection life: HTTP -> (WS) -> LINGER (FIN sent, draining input) -> CLOSING (uv_close
 * pending). The struct is freed only in the last close callback, never inside a callback of its
 * own, so every user callback may close it safely. */
enum conn_state { C_HTTP, C_WS, C_LINGER, C_CLOSING };

struct wy_http_req {
    wy_http_server_t *srv;
    conn_t *conn; /* NULL once the connection is gone */
    const char *method;
    wy_buf_t url;
    char *path;
    char *query;
    wy_buf_t hdrs; /* "name\0value\0" pairs */
    size_t nhdr;
    size_t hoff[MAX_HEADERS][2];
    wy_buf_t body;
    wy_buf_t resp_hdrs; /* extra "Name: value\r\n" lines */
    char peer[64];
    int http_minor;
    bool keep_alive;
    bool upgrade;
    bool dispatched;
    wy_op_t *op; /* set at dispatch: the route's latency series */
    uint64_t start_ns;
};

struct wy_ws_conn {
    wy_http_server_t *srv;
    wy_list_t link;  /* srv->conns */
    wy_list_t dlink; /* srv->dirty: has output to flush this loop turn */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int handles; /* open uv handles of this connection */
    enum conn_state state;
    bool reading;
    bool writing;
    bool rejected;          /* over max_connections: 503 then close */
    bool close_after_write; /* HTTP: FIN after out is written */
    bool peer_eof;
    bool processing; /* inside process_input */
    char peer[64];
    wy_buf_t in; /* received, not yet consumed */
    size_t in_off;
    wy_buf_t out;  /* to write next */
    wy_buf_t wbuf; /* in the write in flight */
    /* HTTP */
    http_parser parser;
    wy_http_req_t *req;    /* being parsed */
    wy_http_req_t *ready;  /* parsed, about to dispatch */
    wy_http_req_t *active; /* dispatched, not responded */
    int hdr_state;         /* 0 none, 1 in field, 2 in value */
    size_t hdr_bytes;
    int perr_status; /* set by a parser callback that rejects the request */
    const char *perr_code;
    const char *perr_msg;
    /* WebSocket */
    wslay_event_context_ptr ws; /* NULL while parked (lim.ws_park_idle: between messages) */
    /* Frame boundaries of what was handed to wslay (ws_recv_cb), so that a parked context never
     * held part of a frame or of a fragmented message. */
    uint64_t f_left; /* payload bytes of the current frame still to come */
    uint8_t fh[14];  /* header bytes of the next frame read so far */
    uint8_t fh_len;  /* 0: at a frame boundary (when f_left is 0 too) */
    bool frag_open;  /* a data message's final frame has not come yet */
    const route_t *ws_route;
    void *user;
    uint64_t last_rx_ms;
    bool ws_opened;
    bool close_started;
    bool close_deferred; /* close frame waits until the frame queue is empty */
    /* Data frames to send, a ring of references; the first `qinflight` are in the write in
     * flight. Control frames (ping, pong, close) come from wslay through `out`. */
    wy_ws_frame_t **q;
    size_t qhead, qlen, qcap, qinflight;
    size_t qbytes; /* encoded bytes of the frames in q */
    bool budgeted; /* qbytes is counted in srv->ctr.ws_queued_bytes */
    int close_code;
    char close_reason[124];
    char peer_reason[124];
};

struct wy_http_server {
    uv_loop_t *loop;
    wy_http_limits_t lim;
    uv_tcp_t listener;
    bool listener_init;
    bool listening;
    int port;
    uv_check_t flush_check;
    uv_idle_t flush_idle;
    bool aux_closed;
    route_t *routes;
    size_t nroutes;
    wy_list_t conns;    /* every connection until its last close callback */
    wy_list_t dirty;    /* connections to flush in the check phase */
    unsigned nconns;    /* accepted, not rejected */
    unsigned nrejected; /* rejected, still closing */
    size_t reqs_live;
    size_t handles_open;
    bool stopping;
    bool closing;
    wy_http_closed_cb done;
    void *done_ud;
    wy_http_counters_t ctr;
    wy_op_family_t *m_http;                        /* wy_<svc>_http_request_seconds{route} */
    wy_op_family_t *m_ws;                          /* wy_<svc>_ws_message_seconds{type} */
    wy_op_t *op_unmatched;                         /* 404 and 405 */
    wy_metric_t *m_ws_queued, *m_ws_budget_closes; /* registered with the first WS route */
    char rbuf[READ_CHUNK];
};

static void conn_close(conn_t *c);
static void process_input(conn_t *c);
static void ws_input(conn_t *c);
static void ws_start_close(conn_t *c, int code, const char *reason, bool after_queued);
static void ws_queue_close_frame(conn_t *c);
static void q_drop(conn_t *c, bool all);

/* ------------------------------------------------------------------ server plumbing */

void wy_http_limits_default(wy_http_limits_t *l)
{
    memset(l, 0, sizeof(*l));
    l->max_header_bytes = 16 * 1024;
    l->max_body_bytes = 1024 * 1024;
    l->max_connections = 10000;
    l->header_timeout_ms = 10000;
    l->keepalive_ms = 60000;
    l->ws_max_message_bytes = 1024 * 1024;
    l->ws_max_send_queue_bytes = 4 * 1024 * 1024;
    l->ws_ping_interval_ms = 20000;
    l->ws_idle_timeout_ms = 60000;
    l->ws_close_timeout_ms = 2000;
    l->ws_send_budget_bytes = (size_t)1024 * 1024 * 1024;
}

static void srv_maybe_free(wy_http_server_t *srv)
{
    if (!srv->closing || srv->handles_open > 0 || srv->reqs_live > 0)
        return;
    wy_http_closed_cb done = srv->done;
    void *ud = srv->done_ud;
    for (size_t i = 0; i < srv->nroutes; i++) {
        wy_free(srv->routes[i].method);
        wy_free(srv->routes[i].path);
    }
    wy_free(srv->routes);
    wy_free(srv);
    if (done)
        done(ud);
}

static void srv_handle_closed(uv_handle_t *h)
{
    wy_http_server_t *srv = h->data;
    srv->handles_open--;
    srv_maybe_free(srv);
}

/* The flush handles stay until the last request is gone: they are what brings the final
 * done callback onto a clean loop turn. */
static void srv_close_aux(wy_http_server_t *srv)
{
    if (srv->aux_closed)
        return;
    srv->aux_closed = true;
    uv_close((uv_handle_t *)&srv->flush_check, srv_handle_closed);
    uv_close((uv_handle_t *)&srv->flush_idle, srv_handle_closed);
}

static void idle_noop_cb(uv_idle_t *h)
{
    WY_UNUSED(h);
}

static void mark_dirty(conn_t *c)
{
    wy_http_server_t *srv = c->srv;
    if (wy_list_linked(&c->dlink) || c->state == C_CLOSING)
        return;
    wy_list_push_back(&srv->dirty, &c->dlink);
    /* An active idle handle makes the loop poll without blocking, so the check phase (the
     * flush) follows even when the write was queued from a timer. */
    if (!uv_is_active((uv_handle_t *)&srv->flush_idle))
        uv_idle_start(&srv->flush_idle, idle_noop_cb);
}

static void unmark_dirty(conn_t *c)
{
    wy_list_remove(&c->dlink);
}

/* ------------------------------------------------------------------ WebSocket frame queue */

/* The frame at position i of the ring. */
static wy_ws_frame_t **q_at(conn_t *c, size_t i)
{
    return &c->q[(c->qhead + i) & (c->qcap - 1)];
}

static void budget_account(wy_http_server_t *srv, size_t add, size_t sub)
{
    srv->ctr.ws_queued_bytes = srv->ctr.ws_queued_bytes + add - sub;
    if (srv->m_ws_queued)
        wy_metric_add(srv->m_ws_queued, (double)add - (double)sub);
}

static void q_account(conn_t *c, size_t add, size_t sub)
{
    c->qbytes = c->qbytes + add - sub;
    if (c->budgeted)
        budget_account(c->srv, add, sub);
}

/* Takes the connection's queue out of the server's send budget: it is closing, what is still
 * queued is dropped and what is in flight is freed when the write completes. */
static void q_unbudget(conn_t *c)
{
    if (!c->budgeted)
        return;
    c->budgeted = false;
    budget_account(c->srv, 0, c->qbytes);
}

/* ------------------------------------------------------------------ requests */

static wy_http_req_t *req_new(conn_t *c)
{
    wy_http_req_t *r = wy_calloc(1, sizeof(*r));
    r->srv = c->srv;
    r->conn = c;
    memcpy(r->peer, c->peer, sizeof(r->peer));
    c->srv->reqs_live++;
    return r;
}

static void req_free(wy_http_req_t *r)
{
    wy_http_server_t *srv = r->srv;
    wy_buf_free(&r->url);
    wy_buf_free(&r->hdrs);
    wy_buf_free(&r->body);
    wy_buf_free(&r->resp_hdrs);
    wy_free(r->path);
    wy_free(r->query);
    wy_free(r);
    srv->reqs_live--;
    if (srv->closing && srv->reqs_live == 0)
        srv_close_aux(srv);
}

const char *wy_http_req_method(const wy_http_req_t *req)
{
    return req->method ? req->method : "";
}

const char *wy_http_req_path(const wy_http_req_t *req)
{
    return req->path ? req->path : "";
}

const char *wy_http_req_query(const wy_http_req_t *req)
{
    return req->query ? req->query : "";
}

const char *wy_http_req_header(const wy_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nhdr; i++) {
        if (strcasecmp(req->hdrs.data + req->hoff[i][0], name) == 0)
            return req->hdrs.data + req->hoff[i][1];
    }
    return NULL;
}

const char *wy_http_req_body(const wy_http_req_t *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

const char *wy_http_req_peer(const wy_http_req_t *req)
{
    return req->peer;
}

wy_http_server_t *wy_http_req_server(const wy_http_req_t *req)
{
    return req->srv;
}

/* ------------------------------------------------------------------ responses */

static const char *status_text(int status)
{
    switch (status) {
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    default: {
        const char *s = http_status_str((enum http_status)status);
        return (s && strcmp(s, "<unknown>") != 0) ? s : "Status";
    }
    }
}

static void count_status(wy_http_server_t *srv, int status)
{
    if (status < 300)
        srv->ctr.responses_2xx++;
    else if (status < 400)
        srv->ctr.responses_3xx++;
    else if (status < 500)
        srv->ctr.responses_4xx++;
    else
        srv->ctr.responses_5xx++;
}

static void put_response(conn_t *c, int status, const char *ctype, const void *body, size_t len,
                         const wy_buf_t *extra, bool keep, int http_minor, bool head)
{
    count_status(c->srv, status);
    wy_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, status_text(status));
    if (ctype)
        wy_buf_printf(&c->out, "Content-Type: %s\r\n", ctype);
    wy_buf_printf(&c->out, "Content-Length: %zu\r\n", len);
    if (extra && extra->len)
        wy_buf_append(&c->out, extra->data, extra->len);
    if (!keep)
        wy_buf_puts(&c->out, "Connection: close\r\n");
    else if (http_minor == 0)
        wy_buf_puts(&c->out, "Connection: keep-alive\r\n");
    wy_buf_puts(&c->out, "\r\n");
    if (len && !head)
        wy_buf_append(&c->out, body, len);
    mark_dirty(c);
}

static void error_body(wy_buf_t *b, const char *code, const char *message)
{
    wy_buf_puts(b, "{\"error\":{\"code\":\"");
    wy_buf_json_escape(b, code, strlen(code));
    wy_buf_puts(b, "\",\"message\":\"");
    wy_buf_json_escape(b, message, strlen(message));
    wy_buf_puts(b, "\"}}");
}

/* Rejects the request being read: error response, then close (the parser state is unknown). */
static void reject(conn_t *c, int status, const char *code, const char *message)
{
    if (c->state != C_HTTP || c->close_after_write)
        return;
    wy_buf_t b = WY_BUF_INIT;
    error_body(&b, code, message);
    put_response(c, status, "application/json", b.data, b.len, NULL, false, 1, false);
    wy_buf_free(&b);
    c->close_after_write = true;
    uv_timer_stop(&c->timer);
    if (c->req) {
        req_free(c->req);
        c->req = NULL;
    }
}

static void keepalive_timer_cb(uv_timer_t *t);

void wy_http_respond(wy_http_req_t *req, int status, const char *content_type, const void *body,
                     size_t len)
{
    wy_http_server_t *srv = req->srv;
    conn_t *c = req->conn;
    if (req->dispatched)
        srv->ctr.requests_in_flight--;
    if (req->op)
        wy_op_done(req->op, req->start_ns, wy_outcome_http(status));
    if (c && c->active == req && c->state == C_HTTP) {
        c->active = NULL;
        bool keep = req->keep_alive && !req->upgrade && !srv->stopping && !c->peer_eof;
        put_response(c, status, content_type, body, len, &req->resp_hdrs, keep, req->http_minor,
                     req->method && !strcmp(req->method, "HEAD"));
        if (!keep)
            c->close_after_write = true;
        req_free(req);
        if (!c->close_after_write && !c->processing)
            process_input(c);
        return;
    }
    if (c && c->active == req)
        c->active = NULL;
    else
        count_status(srv, status); /* connection gone: still a response the handler made */
    req_free(req);
}

void wy_http_respond_json(wy_http_req_t *req, int status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (s) {
        wy_http_respond(req, status, "application/json", s, strlen(s));
        free(s);
    } else {
        wy_http_respond(req, status, "application/json", "null", 4);
    }
}

void wy_http_respond_error(wy_http_req_t *req, int status, const char *code, const char *message)
{
    wy_buf_t b = WY_BUF_INIT;
    error_body(&b, code ? code : "ERROR", message ? message : "");
    wy_http_respond(req, status, "application/json", b.data, b.len);
    wy_buf_free(&b);
}

void wy_http_respond_err(wy_http_req_t *req, int err, const char *message)
{
    wy_http_respond_error(req, wy_err_http(err), wy_errname(err),
                          message ? message : wy_strerror(err));
}

int wy_http_add_header(wy_http_req_t *req, const char *name, const char *value)
{
    if (!name || !value || !*name || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return WY_EINVAL;
    wy_buf_printf(&req->resp_hdrs, "%s: %s\r\n", name, value);
    return WY_OK;
}

json_t *wy_http_req_json(wy_http_req_t *req)
{
    if (req->body.len == 0) {
        wy_http_respond_error(req, 400, "BAD_JSON", "request body is empty; expected JSON");
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loadb(req->body.data, req->body.len, 0, &jerr);
    if (!j) {
        char *msg = wy_sprintf("request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                               jerr.line, jerr.column);
        wy_http_respond_error(req, 400, "BAD_JSON", msg);
        wy_free(msg);
    }
    return j;
}

/* ------------------------------------------------------------------ routing */

static const char *route_method(const route_t *r)
{
    return r->ws ? "GET" : r->method;
}

/* The route's latency series: "POST /v1/login", a prefix route as "GET /v1/accounts/" plus a star.
 */
static wy_op_t *route_op(wy_http_server_t *srv, const route_t *r)
{
    char *v = wy_sprintf("%s %s%s", route_method(r), r->path, r->prefix ? "*" : "");
    wy_op_t *op = wy_metrics_op(srv->m_http, v);
    wy_free(v);
    return op;
}

static int add_route(wy_http_server_t *srv, const route_t *r)
{
    for (size_t i = 0; i < srv->nroutes; i++) {
        const route_t *o = &srv->routes[i];
        if (o->prefix == r->prefix && !strcmp(o->path, r->path) &&
            !strcmp(route_method(o), route_method(r)))
            return WY_EEXIST;
    }
    srv->routes = wy_realloc(srv->routes, (srv->nroutes + 1) * sizeof(route_t));
    srv->routes[srv->nroutes] = *r;
    srv->routes[srv->nroutes].op = route_op(srv, r);
    srv->nroutes++;
    return WY_OK;
}

int wy_http_route(wy_http_server_t *srv, const char *method, const char *path,
                  wy_http_handler_cb cb, void *ud)
{
    route_t r = {.path = (char *)path, .method = (char *)method, .cb = cb, .ud = ud};
    r.path_len = strlen(path);
    if (add_route(srv, &r) != WY_OK)
        return WY_EEXIST;
    route_t *n = &srv->routes[srv->nroutes - 1];
    n->method = wy_strdup(method);
    n->path = wy_strdup(path);
    return WY_OK;
}

int wy_http_route_prefix(wy_http_server_t *srv, const char *method, const char *prefix,
                         wy_http_handler_cb cb, void *ud)
{
    route_t r = {.path = (char *)prefix, .method = (char *)method, .cb = cb, .ud = ud};
    r.path_len = strlen(prefix);
    r.prefix = true;
    if (add_route(srv, &r) != WY_OK)
        return WY_EEXIST;
    route_t *n = &srv->routes[srv->nroutes - 1];
    n->method = wy_strdup(method);
    n->path = wy_strdup(prefix);
    return WY_OK;
}

static wy_metric_t *svc_metric(bool counter, const char *what, const char *help)
{
    char *name = wy_metrics_svc_name(what);
    wy_metric_t *m =
        counter ? wy_metrics_counter(name, help, NULL) : wy_metrics_gauge(name, help, NULL);
    wy_free(name);
    return m;
}

int wy_ws_route(wy_http_server_t *srv, const char *path, const wy_ws_handlers_t *h)
{
    if (!srv->m_ws_queued) {
        srv->m_ws_queued =
            svc_metric(false, "ws_send_queue_bytes",
                       "WebSocket frame bytes queued for sending, counted once per connection.");
        srv->m_ws_budget_closes =
            svc_metric(true, "ws_send_budget_closes_total",
                       "WebSocket connections closed because the server's send budget was full.");
    }
    route_t r = {.path = (char *)path, .ws = true, .wsh = *h};
    r.path_len = strlen(path);
    if (add_route(srv, &r) != WY_OK)
        return WY_EEXIST;
    route_t *n = &srv->routes[srv->nroutes - 1];
    n->path = wy_strdup(path);
    return WY_OK;
}

/* Finds the route for method+path; on a path match with no method match sets *allow to the
 * methods of that path ("GET, POST") and returns NULL. */
static const route_t *find_route(wy_http_server_t *srv, const char *method, const char *path,
                                 wy_buf_t *allow)
{
    bool path_known = false;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const route_t *r = &srv->routes[i];
        if (r->prefix || strcmp(r->path, path) != 0)
            continue;
        if (!strcmp(route_method(r), method))
            return r;
        path_known = true;
        wy_buf_printf(allow, "%s%s", allow->len ? ", " : "", route_method(r));
    }
    if (path_known)
        return NULL;
    const route_t *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const route_t *r = &srv->routes[i];
        if (!r->prefix || strncmp(r->path, path, r->path_len) != 0 || r->path_len < best_len)
            continue;
        if (r->path_len > best_len) {
            best = NULL;
            wy_buf_reset(allow);
        }
        best_len = r->path_len;
        if (!strcmp(route_method(r), method))
            best = r;
        else if (!best)
            wy_buf_printf(allow, "%s%s", allow->len ? ", " : "", route_method(r));
    }
    if (best)
        wy_buf_reset(allow);
    return best;
}

/* ------------------------------------------------------------------ WebSocket upgrade */

static bool header_has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *e = v;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
            return true;
        v = e;
    }
    return false;
}

static const char *ws_check_upgrade(const wy_http_req_t *req)
{
    const char *up = wy_http_req_header(req, "Upgrade");
    const char *cn = wy_http_req_header(req, "Connection");
    const char *ver = wy_http_req_header(req, "Sec-WebSocket-Version");
    const char *key = wy_http_req_header(req, "Sec-WebSocket-Key");
    if (!up || !header_has_token(up, "websocket"))
        return "expected a WebSocket upgrade (Upgrade: websocket)";
    if (!cn || !header_has_token(cn, "upgrade"))
        return "expected Connection: Upgrade";
    if (!ver || strcmp(ver, "13") != 0)
        return "unsupported Sec-WebSocket-Version (only 13)";
    unsigned char raw[32];
    if (!key || strlen(key) != 24 || strcmp(key + 22, "==") != 0 ||
        EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18)
        return "Sec-WebSocket-Key must be 16 bytes in base64";
    return NULL;
}

/* Follows the frame headers in n bytes handed to wslay (RFC 6455 5.2): after them, is wslay at
 * a frame boundary, and inside a fragmented message? Malformed frames are wslay's to refuse. */
static void ws_track_frames(conn_t *c, const uint8_t *p, size_t n)
{
    while (n) {
        if (c->f_left) {
            size_t k = c->f_left < n ? (size_t)c->f_left : n;
            c->f_left -= k;
            p += k;
            n -= k;
            continue;
        }
        c->fh[c->fh_len++] = *p++;
        n--;
        if (c->fh_len < 2)
            continue;
        unsigned len7 = c->fh[1] & 0x7f;
        size_t need = 2u + (len7 == 126 ? 2u : len7 == 127 ? 8u : 0u) + (c->fh[1] & 0x80 ? 4u : 0u);
        if (c->fh_len < need)
            continue;
        uint64_t len = len7;
        if (len7 >= 126) {
            len = 0;
            for (size_t i = 2; i < (len7 == 126 ? 4u : 10u); i++)
                len = (len << 8) | c->fh[i];
        }
        if ((c->fh[0] & 0x08) == 0) /* a data or continuation frame: FIN ends the message */
            c->frag_open = (c->fh[0] & 0x80) == 0;
        c->f_left = len;
        c->fh_len = 0;
    }
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user)
{
    WY_UNUSED(flags);
    conn_t *c = user;
    size_t avail = c->in.len - c->in_off;
    if (avail == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = avail < len ? avail : len;
    memcpy(buf, c->in.data + c->in_off, n);
    c->in_off += n;
    ws_track_frames(c, buf, n);
    return (ssize_t)n;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user)
{
    WY_UNUSED(flags);
    conn_t *c = user;
    if (c->out.len >= WS_OUT_CHUNK) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    wy_buf_append(&c->out, data, len);
    return (ssize_t)len;
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user)
{
    WY_UNUSED(ctx);
    conn_t *c = user;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length > 2) {
        size_t n = arg->msg_length - 2 < sizeof(c->peer_reason) - 1 ? arg->msg_length - 2
                                                                    : sizeof(c->peer_reason) - 1;
        memcpy(c->peer_reason, arg->msg + 2, n);
        c->peer_reason[n] = '\0';
    }
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
        return;
    c->srv->ctr.ws_msgs_in++;
    if (c->state != C_WS || c->close_started || !c->ws_route->wsh.on_message)
        return;
    c->ws_route->wsh.on_message(c, arg->opcode == WSLAY_BINARY_FRAME, arg->msg, arg->msg_length,
                                c->ws_route->wsh.ud);
}

static void ws_timer_cb(uv_timer_t *t);

/* wslay's state of c: made at the upgrade, and again when a parked connection needs it. */
static wslay_event_context_ptr ws_ctx(conn_t *c)
{
    if (c->ws)
        return c->ws;
    struct wslay_event_callbacks cbs = {
        .recv_callback = ws_recv_cb,
        .send_callback = ws_send_cb,
        .on_msg_recv_callback = ws_msg_cb,
    };
    if (wslay_event_context_server_init(&c->ws, &cbs, c) != 0) {
        fprintf(stderr, "wslay: out of memory\n");
        abort();
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, c->srv->lim.ws_max_message_bytes);
    return c->ws;
}

/* lim.ws_park_idle: between messages a connection keeps no framing state. wslay's context
 * (~8.8 KB: two 4 KiB frame buffers) is freed once it holds nothing: no part of a frame or of
 * a fragmented message, no control frame to send, no close begun; the empty I/O buffers go too.
 * The next input, ping or close makes a fresh one (ws_ctx). Not inside a wslay callback. */
static void ws_park(conn_t *c)
{
    if (!c->ws || !c->srv->lim.ws_park_idle || c->state != C_WS || c->close_started ||
        c->close_code || c->close_deferred || c->f_left || c->fh_len || c->frag_open ||
        c->in_off < c->in.len || wslay_event_want_write(c->ws) ||
        wslay_event_get_close_sent(c->ws) || wslay_event_get_close_received(c->ws))
        return;
    wslay_event_context_free(c->ws);
    c->ws = NULL;
    c->srv->ctr.ws_parks++;
    if (c->in.len == 0)
        wy_buf_free(&c->in);
    if (c->out.len == 0)
        wy_buf_free(&c->out);
    if (!c->writing)
        wy_buf_free(&c->wbuf);
    c->in_off = 0;
}

static void ws_upgrade(conn_t *c, wy_http_req_t *req, const route_t *r)
{
    wy_http_server_t *srv = c->srv;
    const char *key = wy_http_req_header(req, "Sec-WebSocket-Key");
    char cat[64];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char accept[64];
    int n = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    EVP_Digest(cat, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock(accept, md, (int)mdlen);
    wy_buf_printf(&c->out,
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                  (const char *)accept);
    count_status(srv, 101);
    mark_dirty(c);

    (void)ws_ctx(c);
    c->state = C_WS;
    c->budgeted = true;
    c->ws_route = r;
    c->ws_opened = true;
    c->last_rx_ms = wy_now_ms();
    srv->ctr.ws_open++;
    uv_timer_start(&c->timer, ws_timer_cb, srv->lim.ws_ping_interval_ms,
                   srv->lim.ws_ping_interval_ms);
    if (r->wsh.on_open)
        r->wsh.on_open(c, req, r->wsh.ud);
}

/* ------------------------------------------------------------------ HTTP parsing */

static void header_timer_cb(uv_timer_t *t);

static int on_message_begin(http_parser *p)
{
    conn_t *c = p->data;
    c->req = req_new(c);
    c->hdr_state = 0;
    c->hdr_bytes = 0;
    uv_timer_start(&c->timer, header_timer_cb, c->srv->lim.header_timeout_ms, 0);
    return 0;
}

static int fail(conn_t *c, int status, const char *code, const char *msg)
{
    c->perr_status = status;
    c->perr_code = code;
    c->perr_msg = msg;
    return -1;
}

static int count_header_bytes(conn_t *c, size_t n)
{
    c->hdr_bytes += n;
    if (c->hdr_bytes > c->srv->lim.max_header_bytes)
        return fail(c, 431, "HEADERS_TOO_LARGE", "request line and headers exceed the limit");
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    if (count_header_bytes(c, len))
        return -1;
    wy_buf_append(&c->req->url, at, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    wy_http_req_t *r = c->req;
    if (count_header_bytes(c, len + 4))
        return -1;
    if (c->hdr_state != 1) {
        if (r->nhdr == MAX_HEADERS)
            return fail(c, 431, "HEADERS_TOO_LARGE", "too many request headers");
        if (c->hdr_state == 2)
            wy_buf_putc(&r->hdrs, '\0');
        r->hoff[r->nhdr][0] = r->hdrs.len;
        r->hoff[r->nhdr][1] = 0;
        r->nhdr++;
        c->hdr_state = 1;
    }
    wy_buf_append(&r->hdrs, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    wy_http_req_t *r = c->req;
    if (count_header_bytes(c, len))
        return -1;
    if (c->hdr_state != 2) {
        wy_buf_putc(&r->hdrs, '\0');
        r->hoff[r->nhdr - 1][1] = r->hdrs.len;
        c->hdr_state = 2;
    }
    wy_buf_append(&r->hdrs, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    conn_t *c = p->data;
    wy_http_req_t *r = c->req;
    wy_http_server_t *srv = c->srv;
    if (c->hdr_state == 2)
        wy_buf_putc(&r->hdrs, '\0');
    else if (c->hdr_state == 1)
        return fail(c, 400, "BAD_REQUEST", "malformed header");
    wy_buf_putc(&r->hdrs, '\0'); /* hdrs.data non-NULL even without headers */
    r->method = http_method_str((enum http_method)p->method);
    r->http_minor = p->http_major == 1 ? p->http_minor : 1;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > srv->lim.max_body_bytes)
        return fail(c, 413, "BODY_TOO_LARGE", "request body exceeds the limit");
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (r->url.len == 0 ||
        http_parser_parse_url(r->url.data, r->url.len, p->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH)))
        return fail(c, 400, "BAD_REQUEST", "malformed request target");
    r->path = wy_strndup(r->url.data + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (u.field_set & (1 << UF_QUERY))
        r->query = wy_strndup(r->url.data + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    const char *expect = wy_http_req_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1) {
        wy_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        mark_dirty(c);
    }
    return 0;
}

static int on_chunk_header(http_parser *p)
{
    conn_t *c = p->data;
    if (p->content_length > c->srv->lim.max_body_bytes - c->req->body.len)
        return fail(c, 413, "BODY_TOO_LARGE", "request body exceeds the limit");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    if (len > c->srv->lim.max_body_bytes - c->req->body.len)
        return fail(c, 413, "BODY_TOO_LARGE", "request body exceeds the limit");
    wy_buf_append(&c->req->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    conn_t *c = p->data;
    wy_http_req_t *r = c->req;
    r->keep_alive = http_should_keep_alive(p);
    r->upgrade = p->upgrade;
    c->ready = r;
    c->req = NULL;
    /* One request at a time: stop here, dispatch, continue parsing after the response. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

static void dispatch(conn_t *c, wy_http_req_t *r)
{
    wy_http_server_t *srv = c->srv;
    srv->ctr.requests++;
    srv->ctr.requests_in_flight++;
    r->dispatched = true;
    r->start_ns = wy_now_ns();
    c->active = r;
    uv_timer_stop(&c->timer);
    wy_buf_t allow = WY_BUF_INIT;
    const route_t *rt = find_route(srv, r->method, r->path, &allow);
    r->op = rt ? rt->op : srv->op_unmatched;
    if (!rt && allow.len) {
        wy_http_add_header(r, "Allow", allow.data);
        char *msg = wy_sprintf("method %s not allowed on %s", r->method, r->path);
        wy_http_respond_error(r, 405, "METHOD_NOT_ALLOWED", msg);
        wy_free(msg);
    } else if (!rt) {
        char *msg = wy_sprintf("no such path: %s", r->path);
        wy_http_respond_error(r, 404, "NOT_FOUND", msg);
        wy_free(msg);
    } else if (rt->ws) {
        const char *bad = r->upgrade ? ws_check_upgrade(r) : "expected a WebSocket upgrade";
        if (bad) {
            wy_http_add_header(r, "Sec-WebSocket-Version", "13");
            r->keep_alive = false;
            wy_http_respond_error(r, 400, "BAD_UPGRADE", bad);
        } else {
            c->active = NULL;
            srv->ctr.requests_in_flight--;
            wy_op_done(r->op, r->start_ns, WY_OUTCOME_OK);
            ws_upgrade(c, r, rt);
            req_free(r);
        }
    } else {
        rt->cb(r, rt->ud);
    }
    wy_buf_free(&allow);
}

static void compact_input(conn_t *c)
{
    if (c->in_off == 0)
        return;
    size_t rest = c->in.len - c->in_off;
    if (rest)
        memmove(c->in.data, c->in.data + c->in_off, rest);
    c->in.len = rest;
    if (c->in.data)
        c->in.data[rest] = '\0';
    c->in_off = 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void set_reading(conn_t *c, bool on)
{
    if (on == c->reading || c->state == C_CLOSING)
        return;
    c->reading = on;
    if (on)
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

/* True when the peer has sent bytes the loop has not read yet. An idle keep-alive
 * connection closed with such bytes unread would destroy a request the client already
 * wrote (the close becomes an RST; the client sees EOF or a reset, not an answer). */
static bool unread_input(conn_t *c)
{
    uv_os_fd_t fd;
    char b;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return false;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* Closes an idle HTTP connection (keep-alive timeout, or the server stopping), unless a
 * request has arrived in the meantime: then the connection keeps reading, and the request
 * is answered (with Connection: close when stopping) before it closes. */
static void close_idle(conn_t *c)
{
    if (unread_input(c)) {
        set_reading(c, true);
        return;
    }
    conn_close(c);
}

static void process_input(conn_t *c)
{
    if (c->processing)
        return;
    c->processing = true;
    while (c->state == C_HTTP && !c->active && !c->close_after_write) {
        size_t avail = c->in.len - c->in_off;
        if (avail == 0)
            break;
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->in.data + c->in_off, avail);
        c->in_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            wy_http_req_t *r = c->ready;
            c->ready = NULL;
            dispatch(c, r);
            continue;
        }
        if (e == HPE_HEADER_OVERFLOW) {
            reject(c, 431, "HEADERS_TOO_LARGE", "request line and headers exceed the limit");
        } else if (e != HPE_OK) {
            if (c->perr_status)
                reject(c, c->perr_status, c->perr_code, c->perr_msg);
            else
                reject(c, 400, "BAD_REQUEST", http_errno_description(e));
        } else if (n < avail) {
            reject(c, 400, "BAD_REQUEST", "unexpected data after the request");
        }
    }
    compact_input(c);
    c->processing = false;
    if (c->state == C_WS) {
        ws_input(c);
        return;
    }
    if (c->state != C_HTTP)
        return;
    if (c->close_after_write) {
        set_reading(c, false);
        mark_dirty(c);
        return;
    }
    if (!c->active && !c->req && c->in.len == 0 && !c->peer_eof) {
        if (c->srv->stopping && !c->writing && c->out.len == 0) {
            close_idle(c);
            return;
        }
        uv_timer_start(&c->timer, keepalive_timer_cb, c->srv->lim.keepalive_ms, 0);
    }
    set_reading(c, !c->peer_eof && c->in.len <= PIPELINE_MAX);
}

/* ------------------------------------------------------------------ timers */

static void header_timer_cb(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->state != C_HTTP || c->active)
        return;
    if (c->req || c->in.len > c->in_off) {
        reject(c, 408, "REQUEST_TIMEOUT", "request not received in time");
        set_reading(c, false);
    } else {
        conn_close(c);
    }
}

static void keepalive_timer_cb(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->state == C_HTTP && !c->active && !c->req && !c->writing && c->out.len == 0)
        close_idle(c);
}

static void linger_timer_cb(uv_timer_t *t)
{
    conn_close(t->data);
}

static void ws_close_timer_cb(uv_timer_t *t)
{
    conn_close(t->data);
}

static void ws_timer_cb(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->state != C_WS || c->close_started)
        return;
    if (wy_now_ms() - c->last_rx_ms >= c->srv->lim.ws_idle_timeout_ms) {
        ws_start_close(c, WY_WS_GOING_AWAY, "idle timeout", false);
        return;
    }
    struct wslay_event_msg ping = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
    wslay_event_queue_msg(ws_ctx(c), &ping);
    mark_dirty(c);
}

/* ------------------------------------------------------------------ connection I/O */

static void conn_closed_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    wy_http_server_t *srv = c->srv;
    srv->handles_open--;
    if (--c->handles > 0)
        return;
    unmark_dirty(c);
    if (c->ws_opened) {
        int code = WY_WS_ABNORMAL;
        const char *reason = "";
        if (c->ws && wslay_event_get_close_received(c->ws)) {
            code = wslay_event_get_status_code_received(c->ws);
            reason = c->peer_reason;
        } else if (c->close_code) {
            code = c->close_code;
            reason = c->close_reason;
        } else if (c->ws && wslay_event_get_close_sent(c->ws)) {
            code = wslay_event_get_status_code_sent(c->ws);
        }
        srv->ctr.ws_open--;
        if (c->ws_route->wsh.on_close)
            c->ws_route->wsh.on_close(c, code, reason, c->ws_route->wsh.ud);
    }
    if (c->ws)
        wslay_event_context_free(c->ws);
    q_drop(c, true);
    wy_free(c->q);
    wy_list_remove(&c->link);
    if (c->rejected) {
        srv->nrejected--;
    } else {
        srv->nconns--;
        srv->ctr.conns_open--;
    }
    wy_buf_free(&c->in);
    wy_buf_free(&c->out);
    wy_buf_free(&c->wbuf);
    wy_free(c);
    srv_maybe_free(srv);
}

static void conn_close(conn_t *c)
{
    if (c->state == C_CLOSING)
        return;
    c->state = C_CLOSING;
    unmark_dirty(c);
    q_unbudget(c);
    if (c->req) {
        req_free(c->req);
        c->req = NULL;
    }
    if (c->ready) {
        req_free(c->ready);
        c->ready = NULL;
    }
    if (c->active) {
        c->active->conn = NULL; /* the handler still owns it; responding frees it */
        c->active = NULL;
    }
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    if (status < 0 && c->state != C_CLOSING)
        conn_close(c);
}

/* Final HTTP response written: send FIN and drain the peer's input for a while, so unread
 * request bytes do not turn our close into an RST that destroys the response. */
static void begin_linger(conn_t *c)
{
    c->state = C_LINGER;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, linger_timer_cb, LINGER_MS, 0);
    c->in.len = 0;
    c->in_off = 0;
    set_reading(c, !c->peer_eof);
    if (c->peer_eof)
        conn_close(c);
}

/* The bytes of the last write are on the socket: release them (wbuf, the frames in flight). */
static void write_done(conn_t *c)
{
    wy_buf_reset(&c->wbuf);
    for (; c->qinflight > 0; c->qinflight--) {
        wy_ws_frame_t *f = *q_at(c, 0);
        c->qhead = (c->qhead + 1) & (c->qcap - 1);
        c->qlen--;
        q_account(c, 0, f->len);
        wy_ws_frame_unref(f);
    }
}

static void write_cb(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    c->writing = false;
    write_done(c);
    if (c->state == C_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    mark_dirty(c);
}

static void flush_conn(conn_t *c)
{
    if (c->writing || c->state == C_CLOSING || c->state == C_LINGER)
        return;
again:
    if (c->state == C_WS) {
        if (c->close_deferred && c->qlen == 0)
            ws_queue_close_frame(c);
        if (c->ws && wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
            conn_close(c);
            return;
        }
        /* Nothing may follow a close frame, and ours is now in `out`, ahead of the queue. */
        if (c->ws && wslay_event_get_close_sent(c->ws))
            q_drop(c, false);
        ws_park(c); /* its control frames are in `out` now */
    }
    /* One write: the HTTP or control bytes first, then whole frames from the queue, each
     * written straight from its shared buffer. */
    uv_buf_t b[WS_MAX_IOV];
    unsigned nb = 0;
    if (c->out.len) {
        wy_buf_t t = c->wbuf;
        c->wbuf = c->out;
        c->out = t;
        wy_buf_reset(&c->out);
        b[nb++] = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
    }
    size_t fbytes = 0;
    while (c->qinflight < c->qlen && nb < WS_MAX_IOV && fbytes < WS_OUT_CHUNK) {
        wy_ws_frame_t *f = *q_at(c, c->qinflight++);
        b[nb++] = uv_buf_init((char *)f->bytes, (unsigned)f->len);
        fbytes += f->len;
    }
    if (nb) {
        /* Most writes fit the socket at once: written here (one writev), with no write
         * request, completion callback or re-arming of the socket's poll (an epoll_ctl per
         * write). Only what the socket did not take goes through uv_write. */
        int n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
        if (n < 0 && n != UV_EAGAIN) {
            c->qinflight = 0;
            conn_close(c);
            return;
        }
        size_t done = n > 0 ? (size_t)n : 0;
        unsigned i = 0;
        while (i < nb && done >= b[i].len)
            done -= b[i++].len;
        if (i == nb) {
            write_done(c);
            goto again; /* more queued than one write takes, or a deferred close frame */
        }
        b[i].base += done;
        b[i].len -= (unsigned)done;
        c->wreq.data = c;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, b + i, nb - i, write_cb) != 0) {
            c->qinflight = 0;
            conn_close(c);
            return;
        }
        c->writing = true;
        return;
    }
    /* Everything is written. */
    if (c->state == C_HTTP) {
        if (c->close_after_write)
            begin_linger(c);
        else if (c->srv->stopping && !c->active && !c->req && c->in.len == 0)
            close_idle(c);
    } else if (c->state == C_WS && c->ws && wslay_event_get_close_sent(c->ws)) {
        if (wslay_event_get_close_received(c->ws) || c->peer_eof)
            conn_close(c);
    }
}

static void flush_check_cb(uv_check_t *h)
{
    wy_http_server_t *srv = h->data;
    wy_list_t *n;
    while ((n = wy_list_pop_front(&srv->dirty)) != NULL)
        flush_conn(wy_container_of(n, conn_t, dlink));
    if (wy_list_empty(&srv->dirty))
        uv_idle_stop(&srv->flush_idle);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    WY_UNUSED(suggested);
    conn_t *c = h->data;
    buf->base = c->srv->rbuf;
    buf->len = sizeof(c->srv->rbuf);
}

static void ws_input(conn_t *c)
{
    if (c->state != C_WS || (!c->ws && c->in.len == c->in_off))
        return;
    if (!wslay_event_want_read(ws_ctx(c))) {
        c->in.len = c->in_off = 0;
        return;
    }
    int rv = wslay_event_recv(c->ws);
    compact_input(c);
    if (rv != 0) {
        conn_close(c);
        return;
    }
    if (c->state != C_WS)
        return;
    if (!wslay_event_want_read(c->ws) && !c->close_started) {
        /* wslay queued a close: the peer's close, or 1007/1009/1002 on bad input. */
        c->close_started = true;
        uv_timer_start(&c->timer, ws_close_timer_cb, c->srv->lim.ws_close_timeout_ms, 0);
    }
    mark_dirty(c);
    ws_park(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && c->state == C_HTTP && c->active) {
            /* Half-close: the client may still read the response it is waiting for. */
            c->peer_eof = true;
            set_reading(c, false);
        } else if (nread == UV_EOF && c->state == C_WS && c->close_started) {
            c->peer_eof = true;
            set_reading(c, false);
            mark_dirty(c);
        } else {
            conn_close(c);
        }
        return;
    }
    switch (c->state) {
    case C_HTTP:
        if (c->rejected)
            return;
        wy_buf_append(&c->in, buf->base, (size_t)nread);
        process_input(c);
        break;
    case C_WS:
        c->last_rx_ms = wy_now_ms();
        wy_buf_append(&c->in, buf->base, (size_t)nread);
        ws_input(c);
        break;
    default:
        break;
    }
}

static void on_connection(uv_stream_t *ls, int status)
{
    wy_http_server_t *srv = ls->data;
    if (status < 0)
        return;
    conn_t *c = wy_calloc(1, sizeof(*c));
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    srv->handles_open += 2;
    wy_list_push_back(&srv->conns, &c->link);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = C_HTTP;
    if (srv->nconns >= srv->lim.max_connections) {
        c->rejected = true;
        srv->nrejected++;
        srv->ctr.conns_rejected++;
    } else {
        srv->nconns++;
        srv->ctr.conns_open++;
        srv->ctr.conns_accepted++;
    }
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->rejected) {
        /* Past a hard cap even the 503 is not worth the memory: just drop. */
        if (srv->nrejected > 64 + srv->lim.max_connections / 8) {
            conn_close(c);
            return;
        }
        reject(c, 503, "OVERLOADED", "too many connections; retry later");
        return;
    }
    uv_timer_start(&c->timer, header_timer_cb, srv->lim.header_timeout_ms, 0);
    set_reading(c, true);
}

/* ------------------------------------------------------------------ server API */

static wy_op_family_t *op_family(const char *what, const char *help, const char *label)
{
    char *name = wy_metrics_svc_name(what);
    wy_op_family_t *f = wy_metrics_op_family(name, help, label);
    wy_free(name);
    return f;
}

static wy_op_family_t *http_family(void)
{
    return op_family("http_request_seconds",
                     "HTTP request time from dispatch to response, by route (METHOD path).",
                     "route");
}

static wy_op_family_t *ws_family(void)
{
    return op_family("ws_message_seconds",
                     "WebSocket client message handling time, by the service's message type.",
                     "type");
}

int wy_http_server_new(uv_loop_t *loop, const wy_http_limits_t *limits, wy_http_server_t **out)
{
    wy_http_server_t *srv = wy_calloc(1, sizeof(*srv));
    wy_http_limits_t d;
    wy_http_limits_default(&d);
    srv->loop = loop;
    srv->lim = limits ? *limits : d;
    wy_list_init(&srv->conns);
    wy_list_init(&srv->dirty);
#define DEF(f)                                                                                     \
    if (!srv->lim.f)                                                                               \
        srv->lim.f = d.f;
    DEF(max_header_bytes)
    DEF(max_body_bytes)
    DEF(max_connections)
    DEF(header_timeout_ms)
    DEF(keepalive_ms)
    DEF(ws_max_message_bytes)
    DEF(ws_max_send_queue_bytes)
    DEF(ws_ping_interval_ms)
    DEF(ws_idle_timeout_ms)
    DEF(ws_close_timeout_ms)
    DEF(ws_send_budget_bytes)
#undef DEF
    srv->m_http = http_family();
    srv->m_ws = ws_family();
    srv->op_unmatched = wy_metrics_op(srv->m_http, "unmatched");
    uv_check_init(loop, &srv->flush_check);
    uv_idle_init(loop, &srv->flush_idle);
    srv->flush_check.data = srv;
    srv->flush_idle.data = srv;
    srv->handles_open = 2;
    uv_check_start(&srv->flush_check, flush_check_cb);
    uv_unref((uv_handle_t *)&srv->flush_check);
    *out = srv;
    return WY_OK;
}

int wy_http_listen(wy_http_server_t *srv, const char *host, int port, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (srv->listener_init || srv->stopping) {
        *err = "http: server already listening or stopping";
        return WY_ESTATE;
    }
    if (port < 0 || port > 65535) {
        *err = "http: port must be 0..65535";
        return WY_EINVAL;
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        *err = "http: host is not an IPv4 or IPv6 address";
        return WY_EINVAL;
    }
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    srv->listener_init = true;
    srv->handles_open++;
    int rv = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
    if (rv != 0) {
        *err = rv == UV_EADDRINUSE ? "http: address already in use" : "http: cannot bind/listen";
        wy_log_error("http listen failed", "host", host, "error", uv_strerror(rv), (char *)NULL);
        uv_close((uv_handle_t *)&srv->listener, srv_handle_closed);
        return WY_EIO;
    }
    int sl = sizeof(ss);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &sl);
    srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    srv->listening = true;
    return WY_OK;
}

int wy_http_port(const wy_http_server_t *srv)
{
    return srv->listening ? srv->port : 0;
}

static void close_listener(wy_http_server_t *srv)
{
    if (srv->listening) {
        srv->listening = false;
        uv_close((uv_handle_t *)&srv->listener, srv_handle_closed);
    }
}

void wy_http_stop(wy_http_server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    close_listener(srv);
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &srv->conns)
    {
        conn_t *c = wy_container_of(pos, conn_t, link);
        if (c->state == C_HTTP && !c->active && !c->req && c->in.len == c->in_off && !c->writing &&
            c->out.len == 0 && !c->close_after_write)
            close_idle(c);
    }
}

size_t wy_http_in_flight(const wy_http_server_t *srv)
{
    return (size_t)srv->ctr.requests_in_flight;
}

void wy_http_close(wy_http_server_t *srv, wy_http_closed_cb done, void *ud)
{
    if (srv->closing)
        return;
    srv->stopping = true;
    srv->closing = true;
    srv->done = done;
    srv->done_ud = ud;
    close_listener(srv);
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &srv->conns)
    {
        conn_t *c = wy_container_of(pos, conn_t, link);
        if (c->state == C_WS && !c->close_code &&
            !(c->ws && wslay_event_get_close_received(c->ws))) {
            c->close_code = WY_WS_GOING_AWAY;
            snprintf(c->close_reason, sizeof(c->close_reason), "server closing");
            /* Best effort, no waiting: tell the client why if the socket takes it right now. */
            if (!c->writing && c->out.len == 0 && !(c->ws && wslay_event_get_close_sent(c->ws))) {
                char f[2 + 2 + 14] = {(char)0x88, 16, 0x03, (char)0xe9};
                memcpy(f + 4, "server closing", 14);
                uv_buf_t b = uv_buf_init(f, sizeof(f));
                uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            }
        }
        conn_close(c);
    }
    if (srv->reqs_live == 0)
        srv_close_aux(srv);
}

const wy_http_counters_t *wy_http_counters(const wy_http_server_t *srv)
{
    return &srv->ctr;
}

/* ------------------------------------------------------------------ WebSocket API */

static void ws_queue_close_frame(conn_t *c)
{
    c->close_deferred = false;
    wslay_event_queue_close(ws_ctx(c), (uint16_t)c->close_code, (const uint8_t *)c->close_reason,
                            strlen(c->close_reason));
}

/* Unreferences the queued frames that are not in the write in flight (all: every frame; only
 * when no write is in flight). */
static void q_drop(conn_t *c, bool all)
{
    size_t keep = all ? 0 : c->qinflight;
    while (c->qlen > keep) {
        wy_ws_frame_t *f = *q_at(c, c->qlen - 1);
        c->qlen--;
        q_account(c, 0, f->len);
        wy_ws_frame_unref(f);
    }
}

static void q_push(conn_t *c, wy_ws_frame_t *f)
{
    if (c->qlen == c->qcap) {
        size_t ncap = c->qcap ? c->qcap * 2 : 8;
        wy_ws_frame_t **nq = wy_malloc(ncap * sizeof(*nq));
        for (size_t i = 0; i < c->qlen; i++)
            nq[i] = *q_at(c, i);
        wy_free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    c->qlen++;
    *q_at(c, c->qlen - 1) = f;
    f->refs++;
    q_account(c, f->len, 0);
}

/* Starts the close handshake. Control frames go out ahead of queued data frames and nothing
 * may follow a close frame, so when the owner closes right after sending (a "kicked" message,
 * then close), after_queued holds the close frame back until the frame queue has drained; the
 * close timer bounds the wait. Otherwise (overflow, budget, idle) the queue is dropped now. */
static void ws_start_close(conn_t *c, int code, const char *reason, bool after_queued)
{
    if (c->close_started || c->state != C_WS)
        return;
    c->close_started = true;
    c->close_code = code;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason ? reason : "");
    if (after_queued && c->qlen > 0) {
        c->close_deferred = true;
    } else {
        q_drop(c, false);
        q_unbudget(c);
        ws_queue_close_frame(c);
    }
    uv_timer_start(&c->timer, ws_close_timer_cb, c->srv->lim.ws_close_timeout_ms, 0);
    mark_dirty(c);
}

void wy_ws_observe(wy_ws_conn_t *c, const char *type, uint64_t start_ns, wy_outcome_t outcome)
{
    wy_op_done(wy_metrics_op(c->srv->m_ws, type), start_ns, outcome);
}

int wy_ws_set_send_buffer(wy_ws_conn_t *c, int bytes)
{
    if (bytes <= 0)
        return WY_EINVAL;
    int v = bytes;
    return uv_send_buffer_size((uv_handle_t *)&c->tcp, &v) == 0 ? WY_OK : WY_EIO;
}

size_t wy_ws_queued_bytes(const wy_ws_conn_t *c)
{
    size_t q = c->out.len + c->wbuf.len + c->qbytes;
    if (c->ws)
        q += wslay_event_get_queued_msg_length(c->ws);
    return q;
}

wy_ws_frame_t *wy_ws_frame_alloc(bool is_binary, size_t len, uint8_t **payload)
{
    uint8_t h[10];
    size_t hl = 0;
    h[hl++] = (uint8_t)(0x80 | (is_binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME)); /* FIN */
    if (len < 126) {
        h[hl++] = (uint8_t)len;
    } else if (len <= 0xffff) {
        h[hl++] = 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    wy_ws_frame_t *f = wy_malloc(sizeof(*f) + hl + len);
    f->refs = 1;
    f->payload_len = len;
    f->len = hl + len;
    memcpy(f->bytes, h, hl);
    *payload = f->bytes + hl;
    return f;
}

wy_ws_frame_t *wy_ws_frame_new(bool is_binary, const void *data, size_t len)
{
    uint8_t *p;
    wy_ws_frame_t *f = wy_ws_frame_alloc(is_binary, len, &p);
    if (len)
        memcpy(p, data, len);
    return f;
}

wy_ws_frame_t *wy_ws_frame_ref(wy_ws_frame_t *f)
{
    f->refs++;
    return f;
}

void wy_ws_frame_unref(wy_ws_frame_t *f)
{
    if (f && --f->refs == 0)
        wy_free(f);
}

/* Over the server's send budget: closes the connections with the most queued bytes (the
 * slowest readers) until `need` more bytes fit. */
static void budget_shed(wy_http_server_t *srv, size_t need)
{
    size_t budget = srv->lim.ws_send_budget_bytes;
    while (srv->ctr.ws_queued_bytes + need > budget) {
        conn_t *victim = NULL;
        wy_list_t *pos;
        wy_list_foreach(pos, &srv->conns)
        {
            conn_t *c = wy_container_of(pos, conn_t, link);
            if (c->budgeted && c->qbytes > 0 && (!victim || c->qbytes > victim->qbytes))
                victim = c;
        }
        if (!victim)
            return;
        char q[24], t[24];
        snprintf(q, sizeof(q), "%zu", victim->qbytes);
        snprintf(t, sizeof(t), "%llu", (unsigned long long)srv->ctr.ws_queued_bytes);
        wy_log_warn("websocket send budget exceeded, dropping the slowest client", "peer",
                    victim->peer, "queued_bytes", q, "server_queued_bytes", t, (char *)NULL);
        srv->ctr.ws_budget_closes++;
        if (srv->m_ws_budget_closes)
            wy_metric_inc(srv->m_ws_budget_closes);
        ws_start_close(victim, WY_WS_SEND_BUDGET, "server send budget exceeded", false);
    }
}

int wy_ws_send_frame(wy_ws_conn_t *c, wy_ws_frame_t *f)
{
    wy_http_server_t *srv = c->srv;
    if (c->state != C_WS || c->close_started)
        return WY_ESTATE;
    if (f->payload_len > srv->lim.ws_max_message_bytes)
        return WY_ETOOBIG;
    if (wy_ws_queued_bytes(c) + f->len > srv->lim.ws_max_send_queue_bytes) {
        srv->ctr.ws_overflows++;
        wy_log_warn("websocket send queue full, dropping client", "peer", c->peer, (char *)NULL);
        ws_start_close(c, WY_WS_POLICY, "send queue full", false);
        return WY_EBUSY;
    }
    size_t budget = srv->lim.ws_send_budget_bytes;
    if (srv->ctr.ws_queued_bytes + f->len > budget) {
        budget_shed(srv, f->len);
        if (c->close_started)
            return WY_EBUSY; /* this connection was the slowest */
        if (srv->ctr.ws_queued_bytes + f->len > budget) {
            /* Nothing else left to shed: the frame alone does not fit. */
            srv->ctr.ws_budget_closes++;
            if (srv->m_ws_budget_closes)
                wy_metric_inc(srv->m_ws_budget_closes);
            ws_start_close(c, WY_WS_SEND_BUDGET, "server send budget exceeded", false);
            return WY_EBUSY;
        }
    }
    q_push(c, f);
    srv->ctr.ws_msgs_out++;
    mark_dirty(c);
    return WY_OK;
}

size_t wy_ws_broadcast(wy_ws_frame_t *f, wy_ws_conn_t *const *conns, size_t n)
{
    size_t queued = 0;
    for (size_t i = 0; i < n; i++) {
        if (wy_ws_send_frame(conns[i], f) == WY_OK)
            queued++;
    }
    return queued;
}

int wy_ws_send(wy_ws_conn_t *c, bool is_binary, const void *data, size_t len)
{
    if (c->state != C_WS || c->close_started)
        return WY_ESTATE;
    if (len > c->srv->lim.ws_max_message_bytes)
        return WY_ETOOBIG; /* before copying it */
    wy_ws_frame_t *f = wy_ws_frame_new(is_binary, data, len);
    int rc = wy_ws_send_frame(c, f);
    wy_ws_frame_unref(f);
    return rc;
}

int wy_ws_send_text(wy_ws_conn_t *c, const char *text, size_t len)
{
    return wy_ws_send(c, false, text, len);
}

int wy_ws_send_binary(wy_ws_conn_t *c, const void *data, size_t len)
{
    return wy_ws_send(c, true, data, len);
}

int wy_ws_close(wy_ws_conn_t *c, int code, const char *reason)
{
    if (code < 1000 || code > 4999 || code == 1004 || code == 1005 || code == 1006 ||
        (reason && strlen(reason) > 123))
        return WY_EINVAL;
    if (c->state != C_WS || c->close_started)
        return WY_ESTATE;
    ws_start_close(c, code, reason, true);
    return WY_OK;
}

void wy_ws_set_user(wy_ws_conn_t *c, void *user)
{
    c->user = user;
}

void *wy_ws_user(const wy_ws_conn_t *c)
{
    return c->user;
}

const char *wy_ws_peer(const wy_ws_conn_t *c)
{
    return c->peer;
}
