/* wy_http — the HTTP/1.1 server every daemon uses for its ops endpoints, auth's JSON API and,
 * through wy_ws.h, the client WebSockets. It runs on the daemon's own libuv loop. */
#ifndef WY_HTTP_H
#define WY_HTTP_H

#include "wy_core.h"

#include <jansson.h>
#include <uv.h>

/* Threading: every function here must be called on the thread that runs the server's loop, and
 * every callback runs on that thread. */

typedef struct wy_http_server wy_http_server_t;
typedef struct wy_http_req wy_http_req_t;

/* Bounds of one server. Fill with wy_http_limits_default() and change what you need; a field
 * left 0 takes its default. */
typedef struct {
    size_t max_header_bytes;    /* request line + headers; over -> 431 (default 16 KiB) */
    size_t max_body_bytes;      /* Content-Length or chunked total; over -> 413 (default 1 MiB) */
    unsigned max_connections;   /* open client connections; over -> 503 + close (default 10000) */
    uint64_t header_timeout_ms; /* a started request must be read within this; -> 408 (10 s) */
    uint64_t keepalive_ms;      /* idle keep-alive connection is closed after this (60 s) */
    /* WebSocket (see wy_ws.h) */
    size_t ws_max_message_bytes;    /* reassembled message; over -> close 1009 (default 1 MiB) */
    size_t ws_max_send_queue_bytes; /* queued, unsent bytes per connection; over -> close 1008
                                       and the send fails with WY_EBUSY (default 4 MiB) */
    uint64_t ws_ping_interval_ms;   /* server pings this often (default 20 s) */
    uint64_t ws_idle_timeout_ms;    /* no frame (incl. pong) for this long -> close 1001 (60 s) */
    uint64_t ws_close_timeout_ms;   /* wait this long for the peer's close / drain (2 s) */
    size_t ws_send_budget_bytes;    /* queued frame bytes of all connections together; over ->
                                       the slowest are closed 1008 (default 1 GiB; see wy_ws.h) */
    bool ws_park_idle; /* free a connection's framing state (wslay's ~8.8 KB context) and empty
                          I/O buffers between messages, made again on the next frame, ping or
                          close: for many mostly idle connections (lobby). Default off. */
} wy_http_limits_t;

/* Counters kept by the server; read them any time on the loop thread (wy_http_counters). */
typedef struct {
    uint64_t requests;      /* requests parsed and routed (404/405 included); requests
                               rejected while being read show only in responses_4xx */
    uint64_t responses_2xx; /* responses sent, by class (1xx counted with 2xx) */
    uint64_t responses_3xx;
    uint64_t responses_4xx;
    uint64_t responses_5xx;
    uint64_t conns_accepted;     /* connections accepted in total */
    uint64_t conns_rejected;     /* connections refused for max_connections (503) */
    uint64_t conns_open;         /* gauge: open HTTP + WebSocket connections */
    uint64_t requests_in_flight; /* gauge: dispatched, not yet responded */
    uint64_t ws_open;            /* gauge: open WebSocket connections */
    uint64_t ws_msgs_in;         /* complete WebSocket messages received */
    uint64_t ws_msgs_out;        /* WebSocket messages queued for sending */
    uint64_t ws_overflows;       /* connections dropped because their send queue was full */
    uint64_t ws_budget_closes;   /* connections dropped because the server's send budget was
                                    full and they had the most queued */
    uint64_t ws_queued_bytes;    /* gauge: frame bytes counted against ws_send_budget_bytes */
    uint64_t ws_parks;           /* framing states freed between messages (ws_park_idle) */
} wy_http_counters_t;

/* Request handler. Runs on the loop thread. The handler must respond to req exactly once, either
 * before it returns or later from the loop thread (asynchronous: e.g. after a worker-thread job
 * completes). req stays valid until that response; if the client went away meanwhile, responding
 * just frees req. Never use req after responding. */
typedef void (*wy_http_handler_cb)(wy_http_req_t *req, void *ud);

/* Completion of wy_http_close; srv is already freed when it runs. */
typedef void (*wy_http_closed_cb)(void *ud);

/* Fills l with the defaults listed in wy_http_limits_t. */
void wy_http_limits_default(wy_http_limits_t *l);

/* Creates a server on loop (not started). limits NULL means defaults; it is copied. *out is freed
 * by wy_http_close. Returns WY_OK. */
int wy_http_server_new(uv_loop_t *loop, const wy_http_limits_t *limits, wy_http_server_t **out);

/* Listens on host ("127.0.0.1", "0.0.0.0", "::") and port (0 = ephemeral, see wy_http_port).
 * One listener per server. Returns WY_OK, WY_EINVAL for a bad host, WY_ESTATE if already
 * listening or stopping, WY_EIO if bind/listen fails; *err (may be NULL) gets a message. */
int wy_http_listen(wy_http_server_t *srv, const char *host, int port, const char **err);

/* The bound port, or 0 if not listening. */
int wy_http_port(const wy_http_server_t *srv);

/* Latency: every request dispatched to a route is timed from dispatch to its response and
 * counted in wy_<svc>_http_request_seconds{route="METHOD path"} and
 * wy_<svc>_http_request_total{route,outcome} (wy_metrics_op_family; a prefix route is
 * "METHOD prefix*", a WebSocket route counts its upgrade, 404 and 405 count as "unmatched").
 * Requests rejected while being read (400, 408, 413, 431, 503) are not routed and count only in
 * wy_http_counters. The series live in the wy_metrics registry: do not wy_metrics_reset while a
 * server exists. */

/* Routes method ("GET", "POST", ...) + exact path ("/v1/login") to cb. Adding a route that
 * already exists returns WY_EEXIST. Strings are copied. Unknown path -> 404, known path with
 * another method -> 405 with Allow. */
int wy_http_route(wy_http_server_t *srv, const char *method, const char *path,
                  wy_http_handler_cb cb, void *ud);

/* Routes method + every path starting with prefix ("/v1/accounts/") to cb; exact routes win,
 * then the longest prefix. */
int wy_http_route_prefix(wy_http_server_t *srv, const char *method, const char *prefix,
                         wy_http_handler_cb cb, void *ud);

/* Graceful stop, step 1: closes the listener (no new connections), closes idle keep-alive
 * connections, and makes every later response carry Connection: close. A keep-alive
 * connection whose client has already written a request the loop has not read yet is not
 * idle: the request is read and answered (Connection: close) before the connection closes,
 * so a request racing the stop gets its answer, not EOF (the same holds for the keep-alive
 * timeout). Requests in flight finish
 * normally; WebSockets stay open until the owner closes them or calls wy_http_close. */
void wy_http_stop(wy_http_server_t *srv);

/* Number of requests dispatched to handlers and not yet responded. */
size_t wy_http_in_flight(const wy_http_server_t *srv);

/* Closes everything now (listener, HTTP and WebSocket connections; each open WebSocket gets a
 * best-effort close frame 1001 and on_close runs for it) and frees srv once all handles are closed
 * AND every outstanding request has been responded to (responses after this point only free the
 * request). Then done(ud) runs from the loop; after it, srv is gone and the server holds no handle,
 * so uv_loop_close can succeed. */
void wy_http_close(wy_http_server_t *srv, wy_http_closed_cb done, void *ud);

/* The live counters; the pointer stays valid until the server is freed. */
const wy_http_counters_t *wy_http_counters(const wy_http_server_t *srv);

/* ---- Request accessors. Returned strings live as long as req (until responded). ---- */

const char *wy_http_req_method(const wy_http_req_t *req); /* "GET" */
/* Path and query are raw (not percent-decoded). */
const char *wy_http_req_path(const wy_http_req_t *req);  /* "/v1/login", without the query */
const char *wy_http_req_query(const wy_http_req_t *req); /* "a=1&b=2" or "" (never NULL) */
/* Value of the first header named name (case-insensitive), or NULL. */
const char *wy_http_req_header(const wy_http_req_t *req, const char *name);
/* Body bytes (NUL-terminated for convenience, not counted in *len); "" when there is none. */
const char *wy_http_req_body(const wy_http_req_t *req, size_t *len);
/* Peer address "ip:port" ("[ip6]:port" for IPv6). */
const char *wy_http_req_peer(const wy_http_req_t *req);
/* The server that received req. */
wy_http_server_t *wy_http_req_server(const wy_http_req_t *req);

/* Parses the body as JSON. Returns a new reference (caller json_decref's it). On failure it has
 * ALREADY RESPONDED 400 {"error":{"code":"BAD_JSON",...}} (req is then gone) and returns NULL, so
 * a handler does: `json_t *j = wy_http_req_json(req); if (!j) return;`. */
json_t *wy_http_req_json(wy_http_req_t *req);

/* ---- Responses: exactly one of the wy_http_respond* per request. ---- */

/* Adds a response header (e.g. "Retry-After", "30") before responding. name and value must not
 * contain CR/LF (WY_EINVAL). Content-Length, Content-Type and Connection are set by the server. */
int wy_http_add_header(wy_http_req_t *req, const char *name, const char *value);

/* Sends status with body (copied; may be NULL when len is 0) and content_type (NULL: none);
 * for HEAD only the headers go out. Frees req. */
void wy_http_respond(wy_http_req_t *req, int status, const char *content_type, const void *body,
                     size_t len);

/* Sends status with JSON body; takes ownership of body (a NULL body sends "null"). Frees req. */
void wy_http_respond_json(wy_http_req_t *req, int status, json_t *body);

/* Sends status with {"error":{"code":code,"message":message}}; code is a stable machine code
 * ("NOT_FOUND"), message is for a person. Frees req. */
void wy_http_respond_error(wy_http_req_t *req, int status, const char *code, const char *message);

/* wy_http_respond_error for a WY_E* code: status wy_err_http(err), code wy_errname(err). */
void wy_http_respond_err(wy_http_req_t *req, int err, const char *message);

#endif
