/* wy_httpc — outbound HTTP(S) client on the daemon's libuv loop (libcurl multi interface driven
 * by uv_poll/uv_timer). Used to call platform APIs (Steam) and fetch key sets (OIDC JWKS). */
#ifndef WY_HTTPC_H
#define WY_HTTPC_H

#include <uv.h>

#include "wy_core.h"

/* Threading: every function must be called on the thread running the client's loop; every
 * callback runs on that thread. */

typedef struct wy_httpc wy_httpc_t;

/* Bounds and defaults of one client. Fields left 0 / NULL take the default. */
typedef struct {
    uint32_t max_concurrent;     /* requests in flight; over -> WY_EBUSY (default 64) */
    size_t max_response_bytes;   /* response body; over -> WY_ETOOBIG (default 1 MiB) */
    size_t max_request_bytes;    /* request body; over -> WY_ETOOBIG at once (default 1 MiB) */
    uint32_t timeout_ms;         /* whole request, when the request passes 0 (default 10 s) */
    uint32_t connect_timeout_ms; /* TCP + TLS handshake, capped by the request timeout (5 s) */
    uint32_t max_redirects;      /* 0: redirects are not followed, the 3xx is the answer */
    const char *ca_file;         /* PEM CA bundle instead of the system store (copied) */
    const char *user_agent;      /* default "wyvern-httpc/1" (copied) */
} wy_httpc_opts_t;

/* Completion of one request, exactly once, on the loop, never from inside wy_httpc_request.
 *   err WY_OK        a complete HTTP response arrived; status is its code (any code, 4xx/5xx
 *                    included: what a status means is the caller's business).
 *   err WY_ETIMEDOUT the request (or its connect) did not finish within its timeout.
 *   err WY_EUNAVAIL  could not connect: DNS failure, connection refused, unreachable host.
 *   err WY_ETOOBIG   the response body exceeded max_response_bytes (the transfer is aborted).
 *   err WY_EIO       anything else: TLS failure (bad certificate), reset, malformed response.
 *   err WY_ECANCELED wy_httpc_close was called before the answer.
 * status is 0 when no response was received. body is the response body, NUL-terminated for
 * convenience (not counted in len), "" when empty; valid only during the callback. msg is a
 * short human-readable description ("ok", "connection refused: Failed to connect ..."); never
 * NULL, valid only during the callback, never contains the request URL's query. */
typedef void (*wy_httpc_cb)(int err, int status, const char *body, size_t len, const char *msg,
                            void *ud);

/* Create a client on loop. opts may be NULL (defaults); it is copied. Returns WY_OK and *out;
 * the client is freed by wy_httpc_close. */
int wy_httpc_new(uv_loop_t *loop, const wy_httpc_opts_t *opts, wy_httpc_t **out);

/* Start a request. method: "GET", "HEAD", "POST", "PUT", "PATCH" or "DELETE". url: absolute
 * http:// or https:// URL (other schemes are refused, also on redirects; TLS peer and host
 * verification are always on). headers: NULL or a NULL-terminated list of "Name: value"
 * strings (copied). body/len: request body (copied; NULL when len is 0). timeout_ms 0 takes the
 * client's default. Returns WY_OK: cb runs exactly once later. Otherwise returns, without ever
 * calling cb: WY_EINVAL (bad method/url/header, NULL cb), WY_ETOOBIG (body over
 * max_request_bytes), WY_EBUSY (max_concurrent requests in flight), WY_ECANCELED (closing). */
int wy_httpc_request(wy_httpc_t *c, const char *method, const char *url, const char *const *headers,
                     const void *body, size_t len, uint32_t timeout_ms, wy_httpc_cb cb, void *ud);

/* Requests in flight (for metrics and tests). */
uint32_t wy_httpc_inflight(const wy_httpc_t *c);

/* Close: every pending request's cb gets WY_ECANCELED (during this call, or right after the
 * current completion callback returns when called from one), connections and all uv handles are
 * closed, then done(ud) runs from the loop and c is freed. Requests started from a cancel
 * callback fail with WY_ECANCELED. c must not be used after this call; done may be NULL. Safe
 * to call from inside a wy_httpc callback. */
void wy_httpc_close(wy_httpc_t *c, void (*done)(void *ud), void *ud);

#endif
