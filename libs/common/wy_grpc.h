/* wy_grpc — gRPC (C core) glue: unary handlers and client callbacks run on the daemon's
 * libuv loop; the gRPC plumbing runs on a completion-queue thread (thread mode, the
 * default) or on the loop thread itself (drive mode, wy_grpc_rt_opts_t.drive). */
#ifndef WY_GRPC_H
#define WY_GRPC_H

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "wy_core.h"

/* Threading model, in one place:
 * - A runtime (wy_grpc_rt_t) owns one completion queue and the one thread that polls it.
 *   The server and every client channel of a daemon share it.
 * - The CQ thread receives calls, decodes requests, answers what needs no handler
 *   (unknown method, malformed request, overload) and hands each remaining call to the
 *   loop exactly once, through a wy_mailbox drained whole in one wake-up. Client calls
 *   are handed back once, when complete (their response already decoded).
 * - A server call of a registered method is bound to the loop's own completion queue (a
 *   non-polling callback queue): the completions of its close and reply batches are not
 *   handed over with a wake-up but collected lock-free and handled by the loop after each
 *   loop turn, before a reply or a cancellation check, and every 10 ms while any is
 *   outstanding. So a call costs one CQ-thread wake-up (its arrival) and one loop wake-up
 *   (shared by every call that arrived meanwhile), where each completion used to cost one.
 * - Handlers and client callbacks run on the loop. Every wy_grpc_* function below is
 *   called on the loop thread unless its comment says otherwise.
 * - Drive mode (per runtime; daemons: WY_<SVC>_GRPC_MODE=drive) has no CQ thread: the
 *   loop thread sleeps in grpc_completion_queue_next (deadline: libuv's next timer),
 *   handles what completed inline (a handler runs right after its request is read, on
 *   the thread gRPC woke), then gives libuv one non-blocking turn (wy_grpc_rt_run).
 *   A watcher thread waits on libuv's epoll descriptor while the loop sleeps in gRPC and
 *   wakes it by cancelling a call armed for that purpose (grpc_call_cancel, thread-safe;
 *   the call, on a channel that never connects, has only a receive-status batch pending,
 *   which then completes on the queue). So a gRPC completion costs no hand-off, and libuv
 *   readiness costs one more wake-up (the watcher's) than in thread mode: drive mode
 *   suits daemons whose loop is mostly gRPC. Everything else below holds in both modes.
 * - Servers and channels run without HTTP/2 BDP probing (GRPC_ARG_HTTP2_BDP_PROBE 0): its
 *   pings made gRPC hand each read to its executor thread whenever the loop and the CQ
 *   thread touched one connection at once (two more wake-ups per call); unary messages of
 *   at most a few MiB inside a cluster gain nothing from a larger flow-control window.
 *
 * Server call lifetime: a handler gets a call id (wy_grpc_call_id_t), never a pointer.
 * The id is resolved through a process-wide table of generation-tagged slots (skynet
 * handles): it stays valid until the call is answered, the client cancels it (gone,
 * deadline passed) or a server stop's grace period ends, and after that it never
 * resolves again, not even to a newer call in the same slot. Replying with an id that
 * no longer resolves is a no-op returning WY_ECANCELED, so a handler may keep an id
 * across asynchronous work (PostgreSQL, Redis, another service) for as long as it
 * likes, even past the server's and the runtime's end. */

#define WY_GRPC_DEFAULT_MAX_MSG      (4u * 1024 * 1024)
#define WY_GRPC_DEFAULT_MAX_INFLIGHT 1024u
#define WY_GRPC_DEFAULT_DEADLINE_MS  5000u
#define WY_GRPC_MAX_STATUS_MSG       1024 /* longer status messages are cut */

typedef struct wy_grpc_rt wy_grpc_rt_t;
typedef struct wy_grpc_server wy_grpc_server_t;
typedef struct wy_grpc_channel wy_grpc_channel_t;

/* A server call, by value (8 bytes; copy it freely). The zero value never resolves. */
typedef struct {
    uint64_t v;
} wy_grpc_call_id_t;

/* ---- runtime ---- */

/* Create the runtime: initialises gRPC, creates the completion queue and starts its
 * thread. Process-wide side effect: abseil's debug-only mutex deadlock detection is
 * switched off (as in release builds of abseil; see wy_grpc_unary.h for why). The loop
 * must outlive the runtime. Returns WY_OK and *out, or WY_EINTERNAL
 * if the thread cannot start. */
int wy_grpc_rt_new(uv_loop_t *loop, wy_grpc_rt_t **out);

/* Options of a runtime (wy_grpc_rt_new_opts); zero = wy_grpc_rt_new's defaults. */
typedef struct {
    /* Drive mode: no CQ thread. The loop thread itself sleeps in gRPC's poller
     * (grpc_completion_queue_next, until libuv's next timer) and handles completions
     * inline, then gives libuv a non-blocking turn; a watcher thread wakes it out of
     * gRPC when libuv has something ready (a socket, a uv_async from a worker). The loop
     * MUST then be run with wy_grpc_rt_run instead of uv_run. Handlers, client
     * callbacks and every guarantee below are unchanged (loop thread, ids, drain). */
    bool drive;
} wy_grpc_rt_opts_t;

/* wy_grpc_rt_new with options (opts may be NULL). */
int wy_grpc_rt_new_opts(uv_loop_t *loop, const wy_grpc_rt_opts_t *opts, wy_grpc_rt_t **out);

/* Run the runtime's loop as uv_run(loop, mode) does, and return what it returns. Without
 * drive mode it is exactly uv_run. In drive mode one turn is: sleep in gRPC's poller until
 * a completion, libuv readiness (the watcher's kick) or libuv's next timer (not at all
 * for UV_RUN_NOWAIT); handle the ready completions (at most 64) inline; then one
 * uv_run(loop, UV_RUN_NOWAIT). UV_RUN_ONCE and UV_RUN_NOWAIT do one turn and return
 * non-zero; UV_RUN_DEFAULT turns until the runtime is closed (wy_grpc_rt_close) and then
 * runs the loop on as uv_run does. Once the runtime's queue is shut down the call is plain
 * uv_run; the runtime is freed inside it (its close callback), after which it must not be
 * called with that runtime again. Loop thread. */
int wy_grpc_rt_run(wy_grpc_rt_t *rt, uv_run_mode mode);

/* How the runtime's completions reached the loop so far. */
typedef struct {
    bool drive;        /* drive mode */
    uint64_t handoffs; /* completions handed from the CQ thread to the loop (thread mode) */
    uint64_t kicks;    /* drive mode: times libuv readiness woke the loop out of gRPC */
} wy_grpc_rt_stats_t;

/* Copy the runtime's counters into *out. Loop thread. */
void wy_grpc_rt_stats(const wy_grpc_rt_t *rt, wy_grpc_rt_stats_t *out);

/* Shut the runtime down: the completion queue is drained, the thread joined, the uv
 * handle closed, then done_cb(arg) runs on the loop (done_cb may be NULL) and the
 * runtime is freed. Every server must have been stopped (its done callback fired) and
 * every channel closed first, else WY_ESTATE and nothing happens. Client calls still
 * completing on closed channels get their callbacks before done_cb. */
int wy_grpc_rt_close(wy_grpc_rt_t *rt, void (*done_cb)(void *arg), void *arg);

/* ---- server ---- */

typedef struct {
    size_t max_recv_bytes; /* largest request accepted; 0 = 4 MiB. Over it: RESOURCE_EXHAUSTED */
    unsigned
        max_inflight; /* calls between arrival and reply; 0 = 1024. Over it: RESOURCE_EXHAUSTED */
    unsigned request_slots; /* calls awaited at once per method (and for unknown paths); 0 = 8 */
} wy_grpc_server_opts_t;

/* Counters, readable at any time from the loop. by_status counts replies sent by the
 * module or a handler, indexed by gRPC status code (0..16). */
typedef struct {
    uint64_t calls_total;   /* calls answered (any status), including rejected ones */
    uint64_t by_status[17]; /* replies by gRPC status code */
    uint64_t rejected_busy; /* rejected because max_inflight was reached */
    uint64_t cancelled;     /* calls the client or gRPC cancelled (deadline, oversize, gone) */
    uint64_t in_flight;     /* calls currently between arrival and their end */
} wy_grpc_server_stats_t;

/* A handler runs on the loop with the call's id and the decoded request (never NULL; a
 * request that does not decode, or has a string field with an embedded NUL (wy_pb.h), is
 * answered INVALID_ARGUMENT without reaching it). It answers with wy_grpc_reply or
 * wy_grpc_reply_error, now or later on the loop. The request is owned by the module and valid only
 * until the handler returns: copy what later steps need. A call the client abandons (or a stop
 * expires) is released without the handler's reply; the late reply then returns WY_ECANCELED. */
typedef void (*wy_grpc_handler_cb)(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);

/* Create a server on the runtime (not listening yet). opts may be NULL for defaults.
 * The built-in health service grpc.health.v1.Health/Check is registered, with ""
 * (the whole server) SERVING. Returns WY_OK and *out, or WY_ESTATE if the runtime is
 * closing. */
int wy_grpc_server_new(wy_grpc_rt_t *rt, const wy_grpc_server_opts_t *opts, wy_grpc_server_t **out);

/* Register a unary method by full path ("/wyvern.auth.Auth/Introspect") with its request
 * descriptor. Only before wy_grpc_server_start. The path is copied; desc and arg must
 * outlive the server. The method gets its series in the wy_metrics timed-operation
 * family wy_<svc>_grpc_call_seconds{method} (time from arrival to the answer, or to the
 * client leaving) with wy_<svc>_grpc_call_total{method,outcome}; calls to a path nobody
 * registered count under method="unmatched". Returns WY_OK, WY_EINVAL (path not
 * "/pkg.Service/Method"), WY_EEXIST (already registered), WY_ELIMIT (more than 64 methods) or
 * WY_ESTATE. */
int wy_grpc_server_register(wy_grpc_server_t *srv, const char *method,
                            const ProtobufCMessageDescriptor *req_desc, wy_grpc_handler_cb cb,
                            void *arg);

/* Listen on addr ("127.0.0.1:9201", "0.0.0.0:0"; port 0 = ephemeral) without TLS and
 * start serving. On WY_OK *port (if not NULL) is the bound port. On failure returns
 * WY_EIO / WY_ESTATE and *err (if not NULL) says why; the message lives as long as the
 * server. A server that failed to start must still be released with wy_grpc_server_stop. */
int wy_grpc_server_start(wy_grpc_server_t *srv, const char *addr, int *port, const char **err);

/* Set the health status of a service name ("" = whole server, "wyvern.auth.Auth").
 * Names never set answer NOT_FOUND. The name is copied. Returns WY_OK, WY_EINVAL (name
 * longer than 200 bytes) or WY_ELIMIT (more than 64 names). */
int wy_grpc_server_set_health(wy_grpc_server_t *srv, const char *service, bool serving);

/* Graceful stop: stop accepting calls and mark every health name NOT_SERVING at once;
 * handlers already running may reply for up to grace_ms; then every call still open is
 * answered UNAVAILABLE or cancelled (clients see UNAVAILABLE or CANCELLED) and the ids
 * handlers still hold stop resolving (their replies return WY_ECANCELED).
 * When everything is released, done_cb(arg) runs on the loop and the server is freed.
 * Never calls done_cb from inside this function. Returns WY_ESTATE if already stopping. */
int wy_grpc_server_stop(wy_grpc_server_t *srv, unsigned grace_ms, void (*done_cb)(void *arg),
                        void *arg);

/* End a stop's grace now instead of when grace_ms runs out: every call a handler still
 * holds is answered UNAVAILABLE at once and the rest are cancelled, exactly as when the
 * grace timer fires. For an owner that must close what handlers wait on (a store) only
 * after their calls are answered, whatever order its own timers run in. Does nothing
 * when the server is not stopping or its grace is already over. Loop thread only. */
void wy_grpc_server_end_grace(wy_grpc_server_t *srv);

/* Copy the server's counters into *out. */
void wy_grpc_server_stats(const wy_grpc_server_t *srv, wy_grpc_server_stats_t *out);

/* ---- server call, by id (loop thread of the runtime that delivered the call) ---- */

/* Answer with a response message (packed at once; the caller keeps ownership of resp).
 * Returns WY_OK, or WY_ECANCELED (nothing sent, resp untouched) when the id no longer
 * resolves: already answered, cancelled by the client, past its deadline or expired by
 * a server stop. Either way the handler is done with the call. */
int wy_grpc_reply(wy_grpc_call_id_t call, const ProtobufCMessage *resp);

/* Answer with an error: err is a WY_E* code mapped by wy_err_grpc (WY_OK or a
 * non-error is sent as INTERNAL); msg is a human message (NULL = wy_strerror(err)),
 * copied, cut at WY_GRPC_MAX_STATUS_MSG bytes. Returns WY_OK or WY_ECANCELED as
 * wy_grpc_reply. */
int wy_grpc_reply_error(wy_grpc_call_id_t call, int err, const char *msg);

/* The full method path ("/wyvern.test.Echo/Echo"), NULL once the id no longer resolves.
 * The string lives as long as the server. */
const char *wy_grpc_call_method(wy_grpc_call_id_t call);

/* Milliseconds left before the client's deadline (<= 0 once passed or once the id no
 * longer resolves), INT64_MAX if the client set none. */
int64_t wy_grpc_call_deadline_ms(wy_grpc_call_id_t call);

/* True once a reply would be pointless: the id no longer resolves, or the client is gone
 * (cancelled, deadline passed, connection lost) and the release is on its way. */
bool wy_grpc_call_cancelled(wy_grpc_call_id_t call);

/* Find request metadata by key (case-insensitive; "authorization"). On WY_OK *val and *len
 * point into the call (not NUL-terminated), valid until the handler returns. WY_ENOTFOUND
 * if absent, WY_ECANCELED if the id no longer resolves. */
int wy_grpc_call_metadata(wy_grpc_call_id_t call, const char *key, const char **val, size_t *len);

/* Carry an id through the void *ud of an asynchronous API and back (64-bit targets). */
static inline void *wy_grpc_call_to_ud(wy_grpc_call_id_t call)
{
    _Static_assert(sizeof(void *) >= sizeof(uint64_t), "call ids need 64-bit pointers");
    return (void *)(uintptr_t)call.v;
}
static inline wy_grpc_call_id_t wy_grpc_call_from_ud(void *ud)
{
    wy_grpc_call_id_t c = {(uint64_t)(uintptr_t)ud};
    return c;
}

/* ---- client ---- */

typedef struct {
    size_t max_recv_bytes;     /* largest response accepted; 0 = 4 MiB */
    unsigned max_inflight;     /* calls in flight on this channel; 0 = 1024; over: WY_EBUSY */
    unsigned max_reconnect_ms; /* cap of the reconnect backoff; 0 = 2000 ms, so a restarted
                                  peer is reachable again quickly */
} wy_grpc_channel_opts_t;

/* Metadata sent with a call; keys lower-case ("authorization"). */
typedef struct {
    const char *key;
    const char *value;
} wy_grpc_md_t;

/* Completion of a client call, on the loop, exactly once per accepted call.
 * err: WY_OK or the WY_E* of the status (wy_err_from_grpc); status: the gRPC status
 * code; message: the status message ("" if none, never NULL); resp: the decoded
 * response when err == WY_OK, else NULL. message and resp are freed by the module
 * when the callback returns. A response that does not decode gives WY_EIO with status
 * INTERNAL. */
typedef void (*wy_grpc_reply_cb)(int err, int status, const char *message,
                                 const ProtobufCMessage *resp, void *arg);

/* Open a channel to target ("127.0.0.1:9201", "dns:///auth:9201"), without TLS. opts
 * may be NULL. Connecting is lazy: a peer that is down makes calls fail fast with
 * UNAVAILABLE. Returns WY_OK and *out, WY_EINVAL (empty target) or WY_ESTATE (runtime
 * closing). */
int wy_grpc_channel_new(wy_grpc_rt_t *rt, const char *target, const wy_grpc_channel_opts_t *opts,
                        wy_grpc_channel_t **out);

/* Close a channel: calls in flight are cancelled and their callbacks still run later
 * (WY_ECANCELED); the channel is freed after the last one. The handle is invalid after
 * this call. May be called from a reply callback of that channel. */
void wy_grpc_channel_close(wy_grpc_channel_t *ch);

/* Start a unary call. method is the full path; req is packed at once (caller keeps it);
 * resp_desc decodes the response; deadline_ms 0 = WY_GRPC_DEFAULT_DEADLINE_MS; md/n_md
 * optional metadata (copied). All ops go in one batch, so the call is one hop.
 * Returns WY_OK (cb will run later, never inside this call), WY_EBUSY (max_inflight
 * reached), WY_ESTATE (channel closed) or WY_EINVAL (bad arguments); cb is not called
 * on error. */
int wy_grpc_call(wy_grpc_channel_t *ch, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, unsigned deadline_ms,
                 const wy_grpc_md_t *md, size_t n_md, wy_grpc_reply_cb cb, void *arg);

/* Calls in flight on the channel. */
unsigned wy_grpc_channel_inflight(const wy_grpc_channel_t *ch);

#endif
