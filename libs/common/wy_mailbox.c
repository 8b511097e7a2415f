/* wy_mailbox — bounded MPSC queue between threads (see wy_mailbox.h).
 *
 * The queue is a lock-free stack of intrusive nodes: producers link with a
 * compare-and-swap on head, the consumer takes the whole stack with one
 * exchange and reverses it into arrival order. There is no ABA hazard because
 * nodes only ever leave all together through the exchange. The capacity is a
 * reservation on a counter (pushed - taken) made before linking, so the bound
 * holds without a lock. */
#include "wy_mailbox.h"

#include <stdatomic.h>

struct wy_mailbox {
    _Atomic(wy_mailbox_node_t *) head;
    atomic_int closed;
    size_t capacity;
    void *ud;
    void (*wake)(void *ud);
    bool has_async;
    uv_async_t async;
    void (*done)(void *);
    void *done_arg;
    /* Producer side. pushed counts reservations; taken counts nodes the
     * consumer removed; queued = pushed - taken. */
    atomic_uint_fast64_t pushed, taken, refused;
    atomic_size_t high_water;
    /* Consumer side (written by the consumer only, read by stats). */
    atomic_uint_fast64_t delivered, canceled;
};

/* ---------------------------------------------------------------- consumer */

/* Takes everything queued, oldest first; *n is how many. */
static wy_mailbox_node_t *take_all(wy_mailbox_t *mb, size_t *n)
{
    wy_mailbox_node_t *top = atomic_exchange_explicit(&mb->head, NULL, memory_order_acquire);
    wy_mailbox_node_t *fifo = NULL;
    size_t k = 0;
    while (top) {
        wy_mailbox_node_t *next = top->next;
        top->next = fifo;
        fifo = top;
        top = next;
        k++;
    }
    if (k)
        atomic_fetch_add_explicit(&mb->taken, k, memory_order_release);
    *n = k;
    return fifo;
}

/* Runs the callbacks of a taken batch. The next pointer is read before the
 * callback, which may free the node or push it again. */
static void run_batch(wy_mailbox_t *mb, wy_mailbox_node_t *n, int status)
{
    while (n) {
        wy_mailbox_node_t *next = n->next;
        n->cb(n, mb->ud, status);
        n = next;
    }
}

size_t wy_mailbox_poll(wy_mailbox_t *mb)
{
    size_t n;
    wy_mailbox_node_t *batch = take_all(mb, &n);
    if (n) {
        atomic_fetch_add_explicit(&mb->delivered, n, memory_order_relaxed);
        run_batch(mb, batch, WY_OK);
    }
    return n;
}

static void on_async(uv_async_t *a)
{
    (void)wy_mailbox_poll(a->data);
}

/* ---------------------------------------------------------------- producers */

static int push(wy_mailbox_t *mb, wy_mailbox_node_t *node, wy_mailbox_cb cb, bool bounded)
{
    if (atomic_load_explicit(&mb->closed, memory_order_acquire))
        return WY_ECANCELED;
    uint64_t p = atomic_load_explicit(&mb->pushed, memory_order_relaxed);
    size_t queued;
    for (;;) {
        uint64_t t = atomic_load_explicit(&mb->taken, memory_order_acquire);
        /* p may be older than t (other pushes were taken meanwhile): then the
         * CAS below fails and retries with a fresh p. */
        queued = p > t ? (size_t)(p - t) : 0;
        if (bounded && queued >= mb->capacity) {
            atomic_fetch_add_explicit(&mb->refused, 1, memory_order_relaxed);
            return WY_EBUSY;
        }
        if (atomic_compare_exchange_weak_explicit(&mb->pushed, &p, p + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            break;
    }
    queued++;
    size_t hw = atomic_load_explicit(&mb->high_water, memory_order_relaxed);
    while (queued > hw &&
           !atomic_compare_exchange_weak_explicit(&mb->high_water, &hw, queued,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;

    node->cb = cb;
    wy_mailbox_node_t *old = atomic_load_explicit(&mb->head, memory_order_relaxed);
    do {
        node->next = old;
    } while (!atomic_compare_exchange_weak_explicit(&mb->head, &old, node, memory_order_release,
                                                    memory_order_relaxed));
    /* Wake only on empty -> non-empty: whoever made the mailbox non-empty
     * wakes the consumer, and the consumer always takes everything, so a
     * wake-up is never missed and most pushes in a burst skip the syscall. */
    if (old == NULL) {
        if (mb->has_async)
            uv_async_send(&mb->async);
        else if (mb->wake)
            mb->wake(mb->ud);
    }
    return WY_OK;
}

int wy_mailbox_push(wy_mailbox_t *mb, wy_mailbox_node_t *node, wy_mailbox_cb cb)
{
    return push(mb, node, cb, true);
}

int wy_mailbox_push_always(wy_mailbox_t *mb, wy_mailbox_node_t *node, wy_mailbox_cb cb)
{
    return push(mb, node, cb, false);
}

/* ---------------------------------------------------------------- life */

int wy_mailbox_new(uv_loop_t *loop, const wy_mailbox_opts_t *opts, wy_mailbox_t **out)
{
    if (!opts || opts->capacity == 0 || opts->capacity > WY_MAILBOX_MAX_CAPACITY ||
        (loop && opts->wake))
        return WY_EINVAL;
    wy_mailbox_t *mb = wy_calloc(1, sizeof *mb);
    atomic_init(&mb->head, NULL);
    mb->capacity = opts->capacity;
    mb->ud = opts->ud;
    mb->wake = opts->wake;
    if (loop) {
        int rc = uv_async_init(loop, &mb->async, on_async);
        if (rc != 0) {
            wy_free(mb);
            return WY_EINTERNAL;
        }
        mb->async.data = mb;
        mb->has_async = true;
    }
    *out = mb;
    return WY_OK;
}

void wy_mailbox_stats(const wy_mailbox_t *mb, wy_mailbox_stats_t *out)
{
    wy_mailbox_t *m = (wy_mailbox_t *)mb; /* atomic loads need non-const */
    uint64_t taken = atomic_load_explicit(&m->taken, memory_order_relaxed);
    out->pushed = atomic_load_explicit(&m->pushed, memory_order_relaxed);
    out->refused = atomic_load_explicit(&m->refused, memory_order_relaxed);
    out->delivered = atomic_load_explicit(&m->delivered, memory_order_relaxed);
    out->canceled = atomic_load_explicit(&m->canceled, memory_order_relaxed);
    out->queued = out->pushed > taken ? (size_t)(out->pushed - taken) : 0;
    out->high_water = atomic_load_explicit(&m->high_water, memory_order_relaxed);
    out->capacity = m->capacity;
}

static void finish_close(wy_mailbox_t *mb)
{
    size_t n;
    wy_mailbox_node_t *batch = take_all(mb, &n);
    atomic_fetch_add_explicit(&mb->canceled, n, memory_order_relaxed);
    run_batch(mb, batch, WY_ECANCELED);
    void (*done)(void *) = mb->done;
    void *arg = mb->done_arg;
    wy_free(mb);
    if (done)
        done(arg);
}

static void on_async_closed(uv_handle_t *h)
{
    finish_close(h->data);
}

void wy_mailbox_close(wy_mailbox_t *mb, void (*done)(void *arg), void *arg)
{
    atomic_store_explicit(&mb->closed, 1, memory_order_release);
    mb->done = done;
    mb->done_arg = arg;
    if (mb->has_async)
        uv_close((uv_handle_t *)&mb->async, on_async_closed);
    else
        finish_close(mb);
}
