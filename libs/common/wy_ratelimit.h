/* wy_ratelimit — sliding-window rate limiter shared by every instance of a service, kept in
 * Redis (one sorted set of event times per key, updated atomically by a Lua script). */
#ifndef WY_RATELIMIT_H
#define WY_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "wy_core.h"
#include "wy_redis.h"

/* Bounds: a prefix is 1..WY_RATELIMIT_PREFIX_MAX bytes, a key 1..WY_RATELIMIT_KEY_MAX bytes
 * (binary safe). limit is 1..WY_RATELIMIT_LIMIT_MAX events (a key holds at most `limit` entries
 * in Redis: refused events are not stored), window_ms 1..WY_RATELIMIT_WINDOW_MAX_MS. */
#define WY_RATELIMIT_PREFIX_MAX    64
#define WY_RATELIMIT_KEY_MAX       256
#define WY_RATELIMIT_LIMIT_MAX     100000u
#define WY_RATELIMIT_WINDOW_MAX_MS (7u * 24 * 3600 * 1000)

typedef struct wy_ratelimit wy_ratelimit_t; /* Redis sliding-window limiter on a wy_redis_t */

/* A limiter allowing at most `limit` events per key in any window of `window_ms`, stored under
 * Redis keys "<prefix>:<key>" that expire window_ms after their last counted event. Time is
 * Redis' own clock (TIME), so every instance of a service agrees. r must outlive the limiter's
 * pending calls (closing r cancels them, see below). Returns WY_OK and *out (free with
 * wy_ratelimit_free) or WY_EINVAL for out-of-bounds arguments. Loop thread only. */
int wy_ratelimit_new(wy_redis_t *r, const char *prefix, uint32_t limit, uint32_t window_ms,
                     wy_ratelimit_t **out);

/* Free the limiter. Calls still pending in Redis keep their callbacks: each runs once as usual
 * (with the Redis answer, or WY_ECANCELED if r is closed meanwhile); the memory is released when
 * the last of them has run (freed at once when none is pending). rl must not be used after this
 * call, not even from those callbacks. NULL is fine. */
void wy_ratelimit_free(wy_ratelimit_t *rl);

/* Result of hit/peek, exactly once, on the loop thread, never from inside hit/peek.
 *   err WY_OK: allowed tells the verdict; when !allowed, retry_after_ms (>= 1) is when the
 *              oldest counted event leaves the window, i.e. the earliest time a retry can pass.
 *   err != WY_OK (Redis failed: WY_EUNAVAIL lost/timed out, WY_EIO unexpected reply,
 *              WY_ECANCELED r closed): FAILS OPEN, allowed is true and retry_after_ms 0. */
typedef void (*wy_ratelimit_cb)(int err, bool allowed, uint32_t retry_after_ms, void *ud);

/* Count one event for key and check it: allowed when fewer than `limit` events were counted in
 * the last window_ms (then this one is counted; a refused event is not). Returns WY_OK and cb
 * runs later. Otherwise returns without calling cb: WY_EINVAL (key empty or over
 * WY_RATELIMIT_KEY_MAX, NULL cb), or WY_EUNAVAIL when Redis is not connected or its queue is
 * full: the limiter FAILS OPEN, the caller must treat this return as "allowed" (the limiter has
 * no loop of its own to defer a callback, so it reports through the return, like
 * wy_redis_command). Loop thread only. */
int wy_ratelimit_hit(wy_ratelimit_t *rl, const char *key, wy_ratelimit_cb cb, void *ud);

/* Same check without counting an event. Same return and callback contract. */
int wy_ratelimit_peek(wy_ratelimit_t *rl, const char *key, wy_ratelimit_cb cb, void *ud);

/* Forget every event of key (e.g. after a successful login). Fire and forget: returns WY_OK when
 * the DEL is sent, WY_EINVAL for a bad key, WY_EUNAVAIL when Redis is not connected. */
int wy_ratelimit_reset(wy_ratelimit_t *rl, const char *key);

#endif
