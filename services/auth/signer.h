/* wy-auth signer: the answer of a login, refresh or registration (its access token, signed with
 * Ed25519, and the JSON body around it) is built on worker threads (the daemon's pool,
 * WY_AUTH_SIGN_WORKERS), so auth's loop thread keeps to I/O, SQL and Redis and a login storm
 * uses every core. The answer is still given only after the login's statement committed: the
 * caller asks for it from the commit's callback, and the loop sends it.
 *
 * Bounded without refusing a committed change: a request takes a place (auth_sign_reserve)
 * BEFORE it writes its session or rotates its refresh token, and gives it back when answered.
 * At most WY_AUTH_SIGN_QUEUE places are taken; beyond, the request is refused 503 with
 * Retry-After before it wrote anything. (Refusing after the write would orphan the session,
 * or worse for a refresh: the client's retry of the rotated token would count as reuse and
 * revoke its family.) So auth_sign itself never refuses.
 *
 * Order: answers of one worker come back in the order it was given them; the workers are fed
 * in turn. Threads: auth_signer_start in start(); the rest and the callback on the loop
 * thread; a worker reads only its job (copied strings, and the key set and configuration,
 * unchanged while the job holds its reference on auth). */
#ifndef AUTH_SIGNER_H
#define AUTH_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct auth auth_t;

/* The token answer to build: the body of "Tokens returned by register, login and refresh"
 * (README.md). Strings are copied by auth_sign. */
typedef struct {
    const char *account;
    const char *sid;
    const char *refresh; /* the new refresh token (a secret: wiped from the job when done) */
    bool created;        /* adds "created": true */
} auth_sign_req_t;

/* On the loop, exactly once per auth_sign that returned WY_OK. err is WY_OK and body (len
 * bytes, NUL-terminated, owned by the signer: valid during the call only) the JSON answer, or
 * the signing error (already logged). */
typedef void (*auth_sign_cb)(int err, const char *body, size_t len, void *ud);

/* Creates the worker pool (WY_AUTH_SIGN_WORKERS threads; none when it is 0). start() only. */
int auth_signer_start(auth_t *a, const char **err);

/* Takes a place for one answer: WY_OK, or WY_EBUSY when WY_AUTH_SIGN_QUEUE are taken (counted
 * in wy_auth_sign_refused_total: answer 503 with Retry-After). */
int auth_sign_reserve(auth_t *a);

/* Gives back a place taken and not used by auth_sign (the request ended another way). */
void auth_sign_release(auth_t *a);

/* Builds the answer for r on a worker, with a place taken before (auth_sign uses it up); cb
 * later on the loop. ud must stay valid until then (a request waiting for its answer is only
 * freed by answering). When no worker can take it (0 workers, or the daemon is stopping: its
 * workers are told to stop) the answer is built on the loop and cb runs before this returns,
 * so the caller does nothing after auth_sign. */
void auth_sign(auth_t *a, const auth_sign_req_t *r, auth_sign_cb cb, void *ud);

/* Places taken: answers waiting for their commit, or for or in signing (wy_auth_sign_queue). */
uint32_t auth_sign_depth(const auth_t *a);

#endif
