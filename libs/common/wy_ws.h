/* wy_ws — WebSocket endpoints on a wy_http server: a GET route upgrades (RFC 6455); wslay reads
 * client frames and does ping/pong and the close handshake; data messages to clients are encoded
 * once into frames (below) and written straight from their buffers. Limits come from
 * wy_http_limits_t (ws_*). */
#ifndef WY_WS_H
#define WY_WS_H

#include "wy_http.h"
#include "wy_metrics.h"

/* Threading: loop thread only, like wy_http.h. */

typedef struct wy_ws_conn wy_ws_conn_t;
typedef struct wy_ws_frame wy_ws_frame_t;

/* Close codes used by the server (RFC 6455 section 7.4.1). */
enum {
    WY_WS_NORMAL = 1000,
    WY_WS_GOING_AWAY = 1001, /* server stopping, idle timeout */
    WY_WS_PROTOCOL_ERROR = 1002,
    WY_WS_ABNORMAL = 1006,     /* reported to on_close when no close frame was exchanged */
    WY_WS_INVALID_DATA = 1007, /* invalid UTF-8 in a text message */
    WY_WS_POLICY = 1008,       /* this connection's send queue is full ("send queue full") */
    /* The server's send budget (ws_send_budget_bytes) is full and this connection had the most
     * bytes queued ("server send budget exceeded"). 1008 like a full queue, so every client
     * already treats it as "too slow, reconnect"; the reason text tells the two apart. */
    WY_WS_SEND_BUDGET = 1008,
    WY_WS_TOO_BIG = 1009 /* message over ws_max_message_bytes */
};

typedef struct {
    /* The connection is open. req is the upgrade request, readable (headers, query, peer) only
     * during this call; do not respond to it. May send or close. */
    void (*on_open)(wy_ws_conn_t *conn, const wy_http_req_t *req, void *ud);
    /* One complete (reassembled) message; data is valid only during the call. Text messages are
     * valid UTF-8 (checked before delivery). */
    void (*on_message)(wy_ws_conn_t *conn, bool is_binary, const uint8_t *data, size_t len,
                       void *ud);
    /* The connection is gone (always called once after on_open, from a clean loop turn). code is
     * the peer's close code if it sent one, else the code the server closed with, else 1006.
     * conn is freed right after this returns: drop every pointer to it here. */
    void (*on_close)(wy_ws_conn_t *conn, int code, const char *reason, void *ud);
    void *ud;
} wy_ws_handlers_t;

/* Serves WebSocket on GET path. A request without a valid upgrade (Upgrade: websocket,
 * Connection: upgrade, Sec-WebSocket-Version: 13, 16-byte base64 Sec-WebSocket-Key) gets 400.
 * h is copied. Returns WY_OK or WY_EEXIST. */
int wy_ws_route(wy_http_server_t *srv, const char *path, const wy_ws_handlers_t *h);

/* Queues one message (data copied once into a new frame); it goes out with the other writes of
 * this loop turn, in the order queued. Returns WY_OK; WY_ESTATE if the connection is closing;
 * WY_ETOOBIG if len is over ws_max_message_bytes; WY_EBUSY if the send queue would exceed
 * ws_max_send_queue_bytes (the connection is closed with 1008 "send queue full", the slow client
 * is dropped) or the server's send budget is full and this connection is the slowest (closed
 * with 1008 "server send budget exceeded"); on_close follows either close. */
int wy_ws_send(wy_ws_conn_t *conn, bool is_binary, const void *data, size_t len);
int wy_ws_send_text(wy_ws_conn_t *conn, const char *text, size_t len);
int wy_ws_send_binary(wy_ws_conn_t *conn, const void *data, size_t len);

/* ---- Fan-out: one encoded frame, many connections ----
 * A frame is a complete, unmasked WebSocket data frame (header + payload) encoded once. Every
 * connection it is queued on holds a reference and writes those same bytes straight from the
 * shared buffer (no copy, no re-framing per recipient); the buffer is freed when the last
 * reference goes: the caller's unref and each connection's write completing, or the
 * connection dropping its queue (close, overflow). Frames are loop-thread only (the count is
 * not atomic).
 *
 * Send budget: the server counts the queued frame bytes of every open connection against
 * ws_send_budget_bytes, a shared frame once PER CONNECTION that holds it (what one slow reader
 * pins; closing it frees exactly its count). A send that would pass the budget first closes
 * the connections with the most bytes queued (1008 "server send budget exceeded", counted in
 * wy_http_counters.ws_budget_closes and wy_<svc>_ws_send_budget_closes_total) until it fits. A
 * closing connection's unsent frames are dropped at once and leave the budget; a write already
 * in flight (about 256 KiB per connection, or one larger message) is freed when it completes. */

/* A new frame holding a copy of data, with one reference for the caller. Text frames are sent
 * as given (the caller sends valid UTF-8). Never NULL. */
wy_ws_frame_t *wy_ws_frame_new(bool is_binary, const void *data, size_t len);
/* A new frame of len payload bytes for the caller to fill through *payload before queueing it
 * (e.g. a protobuf packed straight into it: no copy at all). One reference for the caller. */
wy_ws_frame_t *wy_ws_frame_alloc(bool is_binary, size_t len, uint8_t **payload);
/* Adds a reference; returns f. */
wy_ws_frame_t *wy_ws_frame_ref(wy_ws_frame_t *f);
/* Drops a reference; the last one frees the frame. NULL is ignored. */
void wy_ws_frame_unref(wy_ws_frame_t *f);

/* Queues frame f on conn (takes its own reference; the caller keeps theirs). Same results and
 * closes as wy_ws_send. */
int wy_ws_send_frame(wy_ws_conn_t *conn, wy_ws_frame_t *f);

/* wy_ws_send_frame of f to each of conns[0..n-1]; returns how many queued it. A connection that
 * is closing, too slow or over the budget is skipped (and closed as wy_ws_send says); its
 * on_close runs later, from a clean loop turn, so conns stays valid through the call. */
size_t wy_ws_broadcast(wy_ws_frame_t *f, wy_ws_conn_t *const *conns, size_t n);

/* Starts the close handshake with code (1000..4999) and reason (UTF-8, at most 123 bytes, may be
 * NULL). Safe from any callback, including on_message; the connection is freed later and
 * on_close follows. Returns WY_OK, WY_EINVAL (bad code/reason) or WY_ESTATE (already closing). */
int wy_ws_close(wy_ws_conn_t *conn, int code, const char *reason);

/* Per-connection pointer for the owner (NULL at start). */
void wy_ws_set_user(wy_ws_conn_t *conn, void *user);
void *wy_ws_user(const wy_ws_conn_t *conn);

/* Peer address "ip:port". */
const char *wy_ws_peer(const wy_ws_conn_t *conn);

/* Records one client message the service handled: its type name as the service calls it
 * ("join", "heartbeat"), the time it started (wy_now_ns(), e.g. first thing in on_message) and
 * how it ended (WY_OUTCOME_CLIENT_ERROR for a rejected request, WY_OUTCOME_SERVER_ERROR when the
 * service failed). Goes to wy_<svc>_ws_message_seconds{type} and wy_<svc>_ws_message_total{type,
 * outcome} (see wy_metrics_op_family). The WebSocket layer cannot know the service's types, hence
 * this call. conn must still be open (call it before on_close returns); a reply finished after
 * asynchronous work calls it then. Type names are the service's own constants: a family counts
 * at most WY_METRICS_OP_MAX_VALUES of them, the rest as "other". No allocation once a type has
 * been seen. */
void wy_ws_observe(wy_ws_conn_t *conn, const char *type, uint64_t start_ns, wy_outcome_t outcome);

/* Sets the socket's kernel send buffer (SO_SNDBUF, which the kernel doubles; it also turns
 * off the kernel's send-buffer autotuning for this socket). A realtime server bounds it so that
 * a reader that stops shows up in wy_ws_queued_bytes within seconds instead of after megabytes
 * of stale frames. WY_OK, WY_EINVAL (bytes <= 0) or WY_EIO. */
int wy_ws_set_send_buffer(wy_ws_conn_t *conn, int bytes);

/* Bytes queued on this connection and not yet written to the socket (frames it holds count in
 * full, shared or not). */
size_t wy_ws_queued_bytes(const wy_ws_conn_t *conn);

#endif
