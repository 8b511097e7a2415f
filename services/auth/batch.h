/* wy-auth group commit: requests of one kind that arrive in the same loop turn run as one
 * statement over arrays (one round trip, one durable commit for the batch), with up to
 * AUTH_BATCH_INFLIGHT batches of a kind in flight at once on the pool. A login's session
 * rows (logins.c) go through here, so a storm of logins costs one WAL flush per batch, not
 * one per login. Loop thread only. */
#ifndef AUTH_BATCH_H
#define AUTH_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "wy_pg.h"

typedef struct auth auth_t;
typedef struct auth_batch auth_batch_t;

#define AUTH_BATCH_MAX      128  /* items in one statement */
#define AUTH_BATCH_INFLIGHT 4    /* statements of one batcher running at once */
#define AUTH_BATCH_QUEUE    8192 /* items waiting; beyond, auth_batch_add says WY_EBUSY */

/* Outcome of one item, on the loop. status and err as wy_pg_cb's (for the whole statement);
 * res is the statement's result (NULL when there was no answer) and row this item's row in it
 * (the statement returns a column "ord" = the item's 1-based position in the batch), or -1
 * when the statement returned no row for the item. res is valid only during the callback. */
typedef void (*auth_batch_cb)(int status, const PGresult *res, int row, const char *err, void *ud);

/* A batcher for st (kind: its label in wy_auth_login_batches_total and
 * wy_auth_login_batched_total), whose parameters are ncols text arrays ($1..$ncols, element i of
 * each the column values of item i) followed by nfixed plain parameters (fixed, copied). With
 * split_on_error, a statement that fails with a SQL error (not a lost connection) is run
 * again item by item, so one bad item does not fail the others. st must outlive the batcher.
 * Returns a new batcher; auth_batch_free it. */
auth_batch_t *auth_batch_new(auth_t *a, const char *kind, const wy_pg_stmt_t *st, int ncols,
                             int nfixed, const char *const *fixed, bool split_on_error);

/* Queues one item: cols[0..ncols) (text, copied; never NULL). cb is called exactly once,
 * never from inside this call, unless the return is not WY_OK: WY_EBUSY (AUTH_BATCH_QUEUE
 * items waiting), WY_EUNAVAIL (the pool is closed). */
int auth_batch_add(auth_batch_t *b, const char *const *cols, auth_batch_cb cb, void *ud);

/* Items waiting or running (a gauge). */
uint32_t auth_batch_depth(const auth_batch_t *b);

/* Frees b; nothing may be waiting or running (each item holds its request, which holds the
 * daemon state, so this is true when the state is freed). The handle closes asynchronously. */
void auth_batch_free(auth_batch_t *b);

#endif
