/* wy-auth password hashing: Argon2id (libargon2) on the libuv worker pool, never on the
 * loop, with a bound on jobs in flight so a flood of logins cannot take the pool. */
#ifndef AUTH_PASSWORD_H
#define AUTH_PASSWORD_H

#include <uv.h>

#include "wy_core.h"

typedef struct auth_hasher auth_hasher_t;

/* Completion on the loop, exactly once per accepted job.
 * hash: err WY_OK and encoded = the PHC string ("$argon2id$v=19$m=...") (valid during the
 *       callback only), or WY_EINTERNAL / WY_ECANCELED.
 * verify: err WY_OK and match true/false, or WY_ECANCELED. */
typedef void (*auth_hash_cb)(int err, const char *encoded, void *ud);
typedef void (*auth_verify_cb)(int err, bool match, void *ud);

/* Creates a hasher on loop: memory_kib (>= 19456 recommended), iterations, parallelism 1,
 * max_inflight jobs (queued + running). Computes the dummy hash used for unknown users
 * synchronously (one hash: call at start). Returns WY_OK or WY_EINVAL (*err says why). */
int auth_hasher_new(uv_loop_t *loop, uint32_t memory_kib, uint32_t iterations,
                    uint32_t max_inflight, auth_hasher_t **out, const char **err);

/* Hash password (NUL-terminated, copied) with a fresh 16-byte salt. Returns WY_OK (cb
 * later, never inside this call), WY_EBUSY (max_inflight jobs already; cb not called) or
 * WY_ECANCELED (closing). Loop thread only. */
int auth_hash(auth_hasher_t *h, const char *password, auth_hash_cb cb, void *ud);

/* Verify password against encoded (copied). encoded NULL verifies against the dummy hash
 * and always reports no match, taking the same time as a real check (so "no such user"
 * and "wrong password" look alike). Same returns as auth_hash. */
int auth_verify(auth_hasher_t *h, const char *encoded, const char *password, auth_verify_cb cb,
                void *ud);

/* Jobs queued or running. */
uint32_t auth_hasher_inflight(const auth_hasher_t *h);

/* Refuses new jobs, cancels queued ones (their callbacks get WY_ECANCELED), lets the
 * running ones finish (callbacks get WY_ECANCELED), and frees the hasher after the last
 * completion. Loop thread only. */
void auth_hasher_close(auth_hasher_t *h);

#endif
