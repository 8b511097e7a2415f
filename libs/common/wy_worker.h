/* wy_worker — a pool of worker threads beside a libuv loop (the game
 * server's partitions). Each worker runs the service's body on its own
 * thread, has an inbox (a poll wy_mailbox it drains at its own pace, e.g. at
 * the start of each tick) and posts to the loop through one mailbox shared by
 * the pool, delivered on the loop thread. wy_daemon owns a pool for a service
 * (wy_daemon_add_workers); the rules for what a worker may touch are written
 * in wy_daemon.h.
 *
 * Threads: wy_workers_new/start/stop/close, wy_workers_running on the loop
 * thread; wy_workers_send from any thread; wy_worker_* from the worker's own
 * thread (wy_worker_stopping, _index, _ud, _pool: any thread). */
#ifndef WY_WORKER_H
#define WY_WORKER_H

#include "wy_core.h"
#include "wy_mailbox.h"

#include <uv.h>

typedef struct wy_workers wy_workers_t;
typedef struct wy_worker wy_worker_t;

/* Most workers in a pool. */
#define WY_WORKERS_MAX 256

typedef struct {
    /* Names the threads ("wy-<name>-<index>", cut to 15 bytes) and logs. */
    const char *name;
    unsigned count; /* 1..WY_WORKERS_MAX */
    /* The body of each worker, on its thread. It returns once
     * wy_worker_stopping(w) is true (check it at least once per tick or per
     * wait); until it returns the daemon's stop waits for it. */
    void (*main)(wy_worker_t *w);
    /* Capacity of each worker's inbox; 0 = 1024. */
    size_t inbox_capacity;
    /* Capacity of the mailbox from the workers to the loop; 0 = 4096. */
    size_t loop_capacity;
    /* The service's pointer: wy_worker_ud(), and the ud of the callbacks of
     * messages posted to the loop. */
    void *ud;
} wy_workers_opts_t;

/* Creates the pool and its mailboxes; no thread runs yet. Loop thread.
 * WY_EINVAL for a count out of bounds or no main. */
int wy_workers_new(uv_loop_t *loop, const wy_workers_opts_t *opts, wy_workers_t **out);

/* Starts the threads (with every signal blocked: signals belong to the
 * loop). On failure the threads already started are stopped and joined and
 * WY_EINTERNAL is returned; the pool must still be closed. */
int wy_workers_start(wy_workers_t *ws);

/* Asks every worker to stop (wy_worker_stopping turns true); returns at
 * once. */
void wy_workers_stop(wy_workers_t *ws);

/* True while a worker's main has not returned. */
bool wy_workers_running(const wy_workers_t *ws);

/* Stops the workers if needed and joins them (this blocks if a worker has
 * not returned yet), then delivers on the loop what they posted and did not
 * reach it yet, cancels what is left in their inboxes (callbacks with
 * WY_ECANCELED, on the loop thread), frees the pool and calls done(arg) once
 * the loop mailbox's handle is closed (the loop must run). */
void wy_workers_close(wy_workers_t *ws, void (*done)(void *arg), void *arg);

unsigned wy_workers_count(const wy_workers_t *ws);

/* Any thread: queues a message into worker `index`'s inbox (wy_mailbox_push:
 * WY_OK, WY_EBUSY when full, WY_ECANCELED when closing). The callback runs on
 * that worker with ud = the wy_worker_t *. WY_EINVAL for a bad index. */
int wy_workers_send(wy_workers_t *ws, unsigned index, wy_mailbox_node_t *node, wy_mailbox_cb cb);

/* Worker thread: runs the callbacks of everything in its inbox; returns how
 * many. */
size_t wy_worker_poll(wy_worker_t *w);

/* Worker thread: sleeps until a message may be waiting in its inbox (a push
 * found it empty since the last wait), the pool is told to stop, or
 * timeout_ms passed (< 0: no timeout); returns at once if one of these
 * happened since the last wait. For a worker that serves requests rather than
 * ticks: `while (!wy_worker_stopping(w)) if (!wy_worker_poll(w))
 * wy_worker_wait(w, -1);`. A wake-up costs a push to an empty inbox one
 * mutex and condition-variable signal; pushes to a non-empty inbox none. */
void wy_worker_wait(wy_worker_t *w, int64_t timeout_ms);

/* Worker thread (or any thread): queues a message for the loop; its callback
 * runs on the loop thread with ud = opts.ud. WY_EBUSY when the loop's mailbox
 * is full: the worker keeps the message and decides (retry next tick, drop
 * and count). */
int wy_worker_post(wy_worker_t *w, wy_mailbox_node_t *node, wy_mailbox_cb cb);

bool wy_worker_stopping(const wy_worker_t *w);
unsigned wy_worker_index(const wy_worker_t *w); /* 0..count-1 */
void *wy_worker_ud(const wy_worker_t *w);       /* opts.ud */
wy_workers_t *wy_worker_pool(const wy_worker_t *w);

/* The pool's mailboxes, for their counters (wy_mailbox_stats). */
wy_mailbox_t *wy_workers_loop_mailbox(wy_workers_t *ws);
wy_mailbox_t *wy_workers_inbox(wy_workers_t *ws, unsigned index);

#endif
