/* wy_mailbox — a bounded multi-producer, single-consumer queue between threads.
 * Producers on any thread push messages; one consumer takes everything queued
 * in one lock-free swap and runs the messages' callbacks without any lock.
 * The consumer is either a libuv loop (woken by a uv_async when the mailbox
 * turns non-empty) or a plain thread that drains with wy_mailbox_poll (a game
 * partition at the start of its tick).
 *
 * Messages are intrusive: the producer embeds a wy_mailbox_node_t in its own
 * message struct, so a push never allocates. Cost of a push: a few atomic
 * loads, two compare-and-swaps (one reserves a place under the capacity, one
 * links the node) and a wake-up only when the mailbox was empty (uv_async_send
 * coalesces the rest). The consumer's cost per batch: one atomic exchange and
 * one pass to restore arrival order.
 *
 * Back-pressure: the capacity bounds how many messages are queued. A push to
 * a full mailbox returns WY_EBUSY and the message stays with the producer,
 * which decides (retry later, fail the request, count and free); nothing is
 * dropped by the mailbox. Every message pushed with WY_OK has its callback run
 * exactly once: with WY_OK when delivered, or with WY_ECANCELED when the
 * mailbox is closed with the message still queued.
 *
 * Order: messages of one producer thread are delivered in the order it pushed
 * them; messages of different producers interleave in the order their pushes
 * took effect. */
#ifndef WY_MAILBOX_H
#define WY_MAILBOX_H

#include "wy_core.h"

#include <uv.h>

typedef struct wy_mailbox wy_mailbox_t;
typedef struct wy_mailbox_node wy_mailbox_node_t;

/* A message's callback, run once on the consumer's thread. status is WY_OK
 * (delivered) or WY_ECANCELED (the mailbox closed first: release the message
 * and do nothing else). ud is the mailbox's opts.ud. The callback owns the
 * message from then on (it usually frees it); it may push to any mailbox,
 * this one included (the message goes into the next batch). */
typedef void (*wy_mailbox_cb)(wy_mailbox_node_t *node, void *ud, int status);

/* Embed in a message; the mailbox uses it only between push and callback.
 * No initialisation needed. */
struct wy_mailbox_node {
    wy_mailbox_node_t *next;
    wy_mailbox_cb cb;
};

/* Most messages a mailbox may hold (a bound on the bound). */
#define WY_MAILBOX_MAX_CAPACITY (1u << 24)

typedef struct {
    /* Most messages queued at once, 1..WY_MAILBOX_MAX_CAPACITY. */
    size_t capacity;
    /* Passed to every callback. */
    void *ud;
    /* Poll mailboxes only (loop == NULL): called on the producer's thread,
     * outside any lock, when a push finds the mailbox empty, so a consumer
     * that sleeps can be woken (condition variable, eventfd). NULL: the
     * consumer polls at its own pace. Must be thread-safe and not block. */
    void (*wake)(void *ud);
} wy_mailbox_opts_t;

/* Creates a mailbox. With a loop, the consumer is that loop: batches are
 * delivered from a uv_async on it (call on the loop thread). With loop NULL,
 * the consumer is the thread that calls wy_mailbox_poll. Returns WY_EINVAL
 * for a capacity out of bounds. */
int wy_mailbox_new(uv_loop_t *loop, const wy_mailbox_opts_t *opts, wy_mailbox_t **out);

/* Any thread. Queues node; cb runs later on the consumer (see wy_mailbox_cb).
 * Returns WY_OK (the mailbox owns node until cb runs), WY_EBUSY when the
 * mailbox is full or WY_ECANCELED when it is closing; on an error node was
 * not queued and stays with the caller, and cb will not run. */
int wy_mailbox_push(wy_mailbox_t *mb, wy_mailbox_node_t *node, wy_mailbox_cb cb);

/* As wy_mailbox_push, but never refused for capacity: only for control
 * messages whose number is bounded by construction (one "stopped" notice per
 * object), so they cannot be lost to a burst of ordinary traffic. Counted
 * like any push; the queue may exceed its capacity by these. */
int wy_mailbox_push_always(wy_mailbox_t *mb, wy_mailbox_node_t *node, wy_mailbox_cb cb);

/* Consumer thread only (for a loop mailbox: the loop thread, e.g. to deliver
 * what is left before closing). Takes every queued message and runs their
 * callbacks with WY_OK in arrival order; returns how many. Messages pushed by
 * these callbacks wait for the next poll or wake-up. */
size_t wy_mailbox_poll(wy_mailbox_t *mb);

typedef struct {
    uint64_t pushed;    /* pushes accepted */
    uint64_t refused;   /* pushes refused with WY_EBUSY (full) */
    uint64_t delivered; /* callbacks run with WY_OK */
    uint64_t canceled;  /* callbacks run with WY_ECANCELED at close */
    size_t queued;      /* waiting now (includes pushes being linked) */
    size_t high_water;  /* most ever waiting at once */
    size_t capacity;
} wy_mailbox_stats_t;

/* Any thread; each figure is read atomically, the set is not a snapshot. */
void wy_mailbox_stats(const wy_mailbox_t *mb, wy_mailbox_stats_t *out);

/* Consumer thread. Closes the mailbox: pushes from now on return
 * WY_ECANCELED; messages still queued get their callback with WY_ECANCELED;
 * then the mailbox is freed and done(arg) runs (done may be NULL). A poll
 * mailbox does all of it before returning; a loop mailbox finishes in the
 * uv_close callback of its async handle (the loop must run).
 * The caller makes sure every producer has finished pushing (join worker
 * threads first): a push that starts after the memory is freed is a
 * use-after-free, as with any object. A loop mailbox may be closed from one
 * of its own callbacks (the rest of that batch is still delivered with WY_OK;
 * anything later is canceled); a poll mailbox must not be (it would be freed
 * under the batch). */
void wy_mailbox_close(wy_mailbox_t *mb, void (*done)(void *arg), void *arg);

#endif
