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

/* ---- Scheduling priority of a worker thread.
 *
 * A game partition's tick must win the CPU over its own process's network
 * thread and over unrelated work, or its wall time becomes the run-queue wait
 * of a busy machine. A spec is a list of choices tried in order, the first
 * the system permits wins: "rt:N" (SCHED_FIFO at priority N, 1..99: the
 * thread preempts every normal thread; with SCHED_RESET_ON_FORK), "nice:N"
 * (N in -20..19 for this thread only), "normal" (SCHED_OTHER, nice 0: what
 * the thread already has). Raising needs CAP_SYS_NICE, or RLIMIT_RTPRIO /
 * RLIMIT_NICE high enough (in a container with real-time group scheduling,
 * also a real-time CPU budget for its cgroup); without it a choice fails
 * with EPERM and the next one is tried. A real-time thread that never
 * blocks starves the other threads of its core: the caller must bound its
 * CPU share (wy-game drops a worker that uses more than half a core back to
 * normal: services/game/README.md). */
typedef enum {
    WY_WORKER_PRIO_NORMAL = 0,
    WY_WORKER_PRIO_NICE = 1, /* value: nice -20..19 */
    WY_WORKER_PRIO_RT = 2,   /* value: SCHED_FIFO priority 1..99 */
} wy_worker_prio_kind_t;

typedef struct {
    wy_worker_prio_kind_t kind;
    int value;
} wy_worker_prio_t;

#define WY_WORKER_PRIO_CHOICES 4

typedef struct {
    wy_worker_prio_t choice[WY_WORKER_PRIO_CHOICES];
    unsigned n; /* 1..WY_WORKER_PRIO_CHOICES */
} wy_worker_prio_spec_t;

/* Parses "rt:10,nice:-10" (choices separated by commas, at most 4) or
 * "normal". WY_EINVAL with *err for anything else (a value out of range, an
 * unknown kind, an empty list). */
int wy_worker_prio_parse(const char *s, wy_worker_prio_spec_t *out, const char **err);

/* Calling thread: applies the first choice of spec the system permits and
 * sets *got to it (NORMAL when none was: the thread is unchanged). Returns
 * WY_OK when the first choice was applied, WY_EPERM when a later one (or
 * none) was; *err then says why the first failed (strerror of the failing
 * call). Never blocks. */
int wy_worker_prio_raise(const wy_worker_prio_spec_t *spec, wy_worker_prio_t *got,
                         const char **err);

/* Calling thread: back to SCHED_OTHER at nice 0 (always permitted). */
void wy_worker_prio_lower(void);

/* "rt:10", "nice:-10", "normal" into buf (at least 16 bytes); returns buf. */
const char *wy_worker_prio_name(const wy_worker_prio_t *p, char *buf, size_t cap);

/* The pool's mailboxes, for their counters (wy_mailbox_stats). */
wy_mailbox_t *wy_workers_loop_mailbox(wy_workers_t *ws);
wy_mailbox_t *wy_workers_inbox(wy_workers_t *ws, unsigned index);

#endif
