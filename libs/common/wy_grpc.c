/* wy_grpc — gRPC C core glue: the completion-queue thread, the unary server with its
 * built-in health service, and unary client calls. Threading model: see wy_grpc.h. */
#include "wy_grpc.h"
#include "wy_grpc_unary.h"
#include "wy_pb.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "health.pb-c.h"
#include "wy_list.h"
#include "wy_log.h"
#include "wy_mailbox.h"
#include "wy_metrics.h"

#define MAX_METHODS          64
#define MAX_HEALTH           64
#define MAX_HEALTH_NAME      200
#define DEFAULT_SLOTS        8
#define DEFAULT_RECONNECT_MS 2000
#define N_STATUS             17
#define LATE_SLACK_MS        50
#define LOOP_DRAIN_MS        10 /* the loop's queue is drained at least this often while busy */
#define LIVE_FACTOR          4  /* answered calls not yet freed < this x max_inflight */
#define DRIVE_BATCH          64 /* drive mode: completions handled before the loop's turn */

/* ThreadSanitizer cannot see the hand-off through gRPC (uninstrumented): the TSan shim
 * (tests/tsan/grpc_tags.c) releases every tag given to gRPC; a tag that comes back through
 * the loop's callback queue instead of grpc_completion_queue_next is acquired here. */
#if defined(__SANITIZE_THREAD__)
#define WY_GRPC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WY_GRPC_TSAN 1
#endif
#endif
#ifdef WY_GRPC_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define TSAN_ACQUIRE(p) __tsan_acquire(p)
#define TSAN_RELEASE(p) __tsan_release(p)
#else
#define TSAN_ACQUIRE(p) ((void)(p))
#define TSAN_RELEASE(p) ((void)(p))
#endif

/* Every tag given to gRPC is a tag_t embedded in its owner; the kind says which. */
enum tag_kind { T_NEW, T_CLOSE, T_REPLY, T_SHUTDOWN, T_CLIENT, T_KICK };
typedef struct {
    uint8_t kind;
} tag_t;

/* Something the CQ thread hands to the loop, embedded in its owner: a message of the
 * runtime's mailbox. Hops are bounded by construction (at most two per live call, one
 * per server, one for the runtime), so they are pushed past the mailbox's capacity. */
enum hop_kind { H_CALL, H_GONE, H_CLIENT, H_STOPPED, H_RT_DONE, H_DRAIN };
typedef struct hop {
    wy_mailbox_node_t node;
    struct hop *lnext; /* drive mode: the loop's own FIFO instead of the mailbox */
    uint8_t kind;
} hop_t;

typedef struct call call_t;

/* A completion of the loop's queue: gRPC runs f inline on whichever thread completes the
 * batch (nothing but a lock-free push), the loop handles it when it drains. */
typedef struct lev {
    grpc_completion_queue_functor f; /* the tag gRPC gets */
    wy_grpc_rt_t *rt;
    tag_t *tag; /* what completed: t_close or t_reply of its call */
    int ok;
    struct lev *next;
} lev_t;

struct wy_grpc_rt {
    uv_loop_t *loop;
    grpc_completion_queue *cq;
    pthread_t thread;
    wy_mailbox_t *mb; /* CQ thread -> loop; drained whole in one wake-up */
    hop_t done_hop;
    /* The loop's own completion queue: a non-polling callback queue (gRPC's I/O is done
     * by the CQ thread). Registered-method server calls are bound to it, so the
     * completions of their close and reply batches go onto ldone (a lock-free stack)
     * instead of waking the CQ thread (and then the loop) once per call. The loop drains
     * ldone after every loop turn (check handle), before a reply or a cancellation check,
     * and every LOOP_DRAIN_MS while batches are outstanding (timer), so nothing waits
     * there for long while the loop sleeps. */
    grpc_completion_queue *lcq;
    grpc_completion_queue_functor *lcq_shut; /* freed by itself after the shutdown */
    _Atomic(lev_t *) ldone;                  /* completed, not yet handled (newest first) */
    atomic_uint lpending;                    /* batches started on lcq calls, not handled yet */
    uv_check_t lcheck;
    uv_timer_t ltimer;
    hop_t drain_hop;         /* the CQ thread started lcq batches the loop must see */
    atomic_int drain_posted; /* drain_hop is in the mailbox */
    unsigned closing_handles;
    unsigned n_servers;  /* servers not yet freed (loop) */
    unsigned n_channels; /* channels not yet closed (loop) */
    bool closing;
    void (*done_cb)(void *);
    void *done_arg;

    /* Drive mode (wy_grpc_rt_opts_t.drive): no CQ thread; the loop thread polls cq in
     * wy_grpc_rt_run, and hops go through lhead (loop only) instead of the mailbox. */
    bool drive;
    hop_t *lhead, **ltail;
    /* The watcher thread waits for libuv readiness (uv_backend_fd) while the loop thread
     * sleeps in grpc_completion_queue_next, and wakes it by cancelling kick_call, a call
     * on an unconnected channel whose receive-status batch stays pending until then. */
    pthread_t watcher;
    bool watcher_started;
    int stop_fd; /* eventfd: the watcher's poll ends when the runtime closes */
    int wep;     /* the watcher's epoll: uv_backend_fd (one-shot) and stop_fd */
    pthread_mutex_t kmu;
    grpc_call *kick_call; /* armed kick (kmu), NULL while the loop re-arms */
    bool kick_stop;       /* kmu */
    bool kicked;          /* loop: the kick completed; re-arm after the next loop turn */
    bool driven_out;      /* loop: the queue is shut down, wy_grpc_rt_run is uv_run */
    grpc_channel *kick_ch;
    void *kick_method;
    tag_t t_kick;
    grpc_metadata_array kick_md;
    grpc_status_code kick_status;
    grpc_slice kick_details;
    uint64_t kicks;    /* loop: kicks handled */
    uint64_t handoffs; /* loop: hops delivered through the mailbox (thread mode) */
};

typedef struct {
    char *path;
    const ProtobufCMessageDescriptor *desc;
    wy_grpc_handler_cb cb;
    void *arg;
    wy_op_t *op; /* its series of wy_<svc>_grpc_call_seconds{method} */
    void *reg;   /* grpc_server_register_method handle (set at start) */
} method_t;

typedef struct {
    char *name;
    bool serving;
} health_t;

enum srv_state { S_NEW, S_RUNNING, S_STOPPING };

struct wy_grpc_server {
    wy_grpc_rt_t *rt;
    grpc_server *gs;
    size_t max_recv;
    unsigned max_inflight, slots;
    /* Written before start only, then read by the CQ thread. */
    method_t methods[MAX_METHODS];
    unsigned n_methods;
    wy_op_t *op_unmatched; /* method="unmatched": calls to a method not registered */

    /* Loop only. */
    health_t health[MAX_HEALTH];
    unsigned n_health;
    enum srv_state state;
    wy_list_t held;   /* calls given to a handler and not answered yet (call_t.held) */
    uv_timer_t timer; /* grace period of a stop */
    bool hard;        /* grace over: answer everything at once */
    void (*done_cb)(void *);
    void *done_arg;
    char errbuf[320];

    /* Shared between the loop and the CQ thread. */
    atomic_int stopping;
    atomic_int shutdown_seen;
    atomic_int stop_posted; /* the stopped hop is pushed once */
    atomic_uint inflight;
    atomic_uint live;          /* call structs alive: request slots + calls */
    atomic_uint answered_live; /* answered calls whose completions the loop has not drained */
    tag_t t_shutdown;
    hop_t stopped_hop;
    atomic_uint_fast64_t calls_total, rejected_busy, cancelled, by_status[N_STATUS];
};

/* A server call. Owned by its references: one per pending batch, one for a hop in the
 * hand-off list, one for the id table slot while a handler may answer. The last unref
 * frees it, on either thread. */
struct call {
    tag_t t_new, t_close, t_reply;
    hop_t hop;      /* delivery to the handler */
    hop_t gone_hop; /* the client is gone: release the id (loop) */
    wy_grpc_server_t *srv;
    atomic_int refs;
    bool counted; /* included in srv->inflight */
    bool lingers; /* answered, included in srv->answered_live until freed */
    grpc_call *call;
    const method_t *slot;       /* the registered method this request slot waits for, NULL =
                                   the generic slot (which only sees unknown methods) */
    bool lq;                    /* bound to rt->lcq (registered methods): its close and reply
                                   completions are drained by the loop */
    lev_t lev_close, lev_reply; /* their tags when lq */
    grpc_call_details details;  /* generic slot only */
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *req_bb;
    int close_cancelled;
    atomic_int gone;
    atomic_int answered; /* a status was sent (or is being sent) */
    uint64_t start_ns;   /* arrival, for the method's latency histogram */
    const method_t *method;
    ProtobufCMessage *req;
    grpc_byte_buffer *resp_bb;
    grpc_slice status_msg;
    bool has_status_msg;
    uint64_t id;    /* its id while a handler may answer, else 0 (loop) */
    wy_list_t held; /* in srv->held while id != 0 (loop) */
};

typedef struct client_call client_call_t;

struct wy_grpc_channel {
    wy_grpc_rt_t *rt;
    grpc_channel *gc;
    unsigned max_inflight, inflight;
    bool closed;
    bool delivering; /* inside a reply callback: the loop frees the channel afterwards */
    wy_list_t calls; /* client_call_t.node, in flight */
    /* Methods registered with the channel: a registered call skips parsing and
     * interning the path on every call. Paths beyond MAX_METHODS use plain calls. */
    struct {
        char *path;
        void *handle;
    } methods[MAX_METHODS];
    unsigned n_methods;
};

struct client_call {
    tag_t tag;
    hop_t hop;
    wy_grpc_channel_t *ch;
    grpc_call *call;
    const ProtobufCMessageDescriptor *desc;
    wy_grpc_reply_cb cb;
    void *arg;
    grpc_metadata *send_md;
    size_t n_md;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array recv_init_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    ProtobufCMessage *resp;
    wy_list_t node;
};

/* ---------------------------------------------------------------- helpers */

static void on_hop(wy_mailbox_node_t *node, void *ud, int status);

/* Any thread. The mailbox is open until the last hop (H_RT_DONE) is delivered. */
static void push_hop(wy_grpc_rt_t *rt, hop_t *hop)
{
    if (rt->drive) { /* only the loop thread handles completions: no hand-off */
        hop->lnext = NULL;
        *rt->ltail = hop;
        rt->ltail = &hop->lnext;
        return;
    }
    int rc = wy_mailbox_push_always(rt->mb, &hop->node, on_hop);
    assert(rc == WY_OK);
    (void)rc;
}

/* Any thread that completes a batch of a loop-queue call (gRPC runs it inline). */
static void lev_done(grpc_completion_queue_functor *f, int ok)
{
    lev_t *e = (lev_t *)f;
    TSAN_ACQUIRE(f); /* the starter's writes to the call, seen by this thread */
    e->ok = ok;
    lev_t *head = atomic_load_explicit(&e->rt->ldone, memory_order_relaxed);
    do {
        e->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&e->rt->ldone, &head, e, memory_order_release,
                                                    memory_order_relaxed));
}

static void lev_init(lev_t *e, wy_grpc_rt_t *rt, tag_t *tag)
{
    e->f.functor_run = lev_done;
    e->f.inlineable = 1;
    e->rt = rt;
    e->tag = tag;
}

/* Any thread. Make the loop drain its queue soon (the CQ thread started batches there). */
static void post_drain(wy_grpc_rt_t *rt)
{
    if (!atomic_exchange(&rt->drain_posted, 1))
        push_hop(rt, &rt->drain_hop);
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Decode a received buffer; NULL if it is not a valid desc (a string field with an
 * embedded NUL included: wy_pb.h). */
static ProtobufCMessage *unpack_message(grpc_byte_buffer *bb,
                                        const ProtobufCMessageDescriptor *desc)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    if (m && !wy_pb_strings_ok(desc, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s))) {
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    grpc_slice_unref(s);
    return m;
}

static grpc_slice status_slice(const char *msg)
{
    size_t n = strlen(msg);
    if (n > WY_GRPC_MAX_STATUS_MSG)
        n = WY_GRPC_MAX_STATUS_MSG;
    return grpc_slice_from_copied_buffer(msg, n);
}

/* ---------------------------------------------------------------- call ids */

/* The process-wide table that resolves call ids (skynet's handle table). An id is
 * (generation << ID_INDEX_BITS) | (slot index + 1); releasing a slot bumps its
 * generation, so an old id never resolves to the slot's next call. 40 bits of
 * generation per slot do not wrap in the life of a process. The table is touched on loop
 * threads only; the mutex is for processes with runtimes on several loops. Free slots
 * are reused oldest first. The table never shrinks: it is as large as the most calls
 * ever held at once (bounded by the servers' max_inflight). */
#define ID_INDEX_BITS 24
#define ID_MAX_SLOTS  ((1u << ID_INDEX_BITS) - 1)

typedef struct {
    uint64_t gen;
    call_t *call;  /* NULL when free */
    uint32_t next; /* next free slot + 1, 0 = none */
} id_slot_t;

static struct {
    pthread_mutex_t mu;
    id_slot_t *slots;
    uint32_t n, cap;
    uint32_t free_head, free_tail; /* slot + 1, 0 = none */
} ids = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* A new id for c; 0 when the table is full. */
static uint64_t id_put(call_t *c)
{
    pthread_mutex_lock(&ids.mu);
    uint32_t i;
    if (ids.free_head) {
        i = ids.free_head - 1;
        ids.free_head = ids.slots[i].next;
        if (!ids.free_head)
            ids.free_tail = 0;
    } else if (ids.n < ID_MAX_SLOTS) {
        if (ids.n == ids.cap) {
            ids.cap = ids.cap ? ids.cap * 2 : 256;
            if (ids.cap > ID_MAX_SLOTS)
                ids.cap = ID_MAX_SLOTS;
            ids.slots = wy_realloc(ids.slots, ids.cap * sizeof *ids.slots);
        }
        i = ids.n++;
        ids.slots[i].gen = 1;
    } else {
        pthread_mutex_unlock(&ids.mu);
        return 0;
    }
    ids.slots[i].call = c;
    ids.slots[i].next = 0;
    uint64_t id = ids.slots[i].gen << ID_INDEX_BITS | (i + 1);
    pthread_mutex_unlock(&ids.mu);
    return id;
}

/* The slot of id if it still resolves, else NULL. Under ids.mu. */
static id_slot_t *id_slot(uint64_t id)
{
    uint64_t i = (id & ID_MAX_SLOTS);
    if (i == 0 || i > ids.n)
        return NULL;
    id_slot_t *sl = &ids.slots[i - 1];
    return sl->call && sl->gen == id >> ID_INDEX_BITS ? sl : NULL;
}

/* The call of id, or NULL once the id no longer resolves. */
static call_t *id_get(uint64_t id)
{
    pthread_mutex_lock(&ids.mu);
    id_slot_t *sl = id_slot(id);
    call_t *c = sl ? sl->call : NULL;
    pthread_mutex_unlock(&ids.mu);
    return c;
}

/* Release id: returns its call (whose slot reference the caller now owns), or NULL if
 * the id no longer resolves. */
static call_t *id_take(uint64_t id)
{
    pthread_mutex_lock(&ids.mu);
    id_slot_t *sl = id_slot(id);
    call_t *c = NULL;
    if (sl) {
        c = sl->call;
        sl->call = NULL;
        sl->gen++;
        uint32_t i = (uint32_t)(sl - ids.slots);
        if (ids.free_tail)
            ids.slots[ids.free_tail - 1].next = i + 1;
        else
            ids.free_head = i + 1;
        ids.free_tail = i + 1;
    }
    pthread_mutex_unlock(&ids.mu);
    return c;
}

/* ---------------------------------------------------------------- server, CQ thread side */

/* The outcome class of a status, as wy_metrics reads it on every layer: the caller's
 * mistakes are client errors; overload, time-outs and failures are ours. */
static wy_outcome_t grpc_outcome(grpc_status_code status)
{
    switch (status) {
    case GRPC_STATUS_OK:
        return WY_OUTCOME_OK;
    case GRPC_STATUS_CANCELLED:
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_NOT_FOUND:
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_PERMISSION_DENIED:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_ABORTED:
    case GRPC_STATUS_OUT_OF_RANGE:
    case GRPC_STATUS_UNIMPLEMENTED:
    case GRPC_STATUS_UNAUTHENTICATED:
        return WY_OUTCOME_CLIENT_ERROR;
    default:
        return WY_OUTCOME_SERVER_ERROR;
    }
}

/* A call is answered with status (either thread): counters, and the method's histogram
 * for calls of a registered method. */
static void count_answer(call_t *c, grpc_status_code status)
{
    wy_grpc_server_t *srv = c->srv;
    atomic_store(&c->answered, 1);
    /* In flight ends with the answer (wy_grpc_server_opts_t.max_inflight): an answered
     * call's struct lives on until the loop drains its completions, which under a busy
     * loop held a closed-loop client's every slot twice and refused calls far below the
     * bound (those structs are bounded by LIVE_FACTOR, at arrival). */
    if (c->counted) {
        c->counted = false;
        c->lingers = true;
        atomic_fetch_add(&srv->answered_live, 1);
        atomic_fetch_sub(&srv->inflight, 1);
    }
    atomic_fetch_add_explicit(&srv->calls_total, 1, memory_order_relaxed);
    if ((unsigned)status < N_STATUS)
        atomic_fetch_add_explicit(&srv->by_status[status], 1, memory_order_relaxed);
    wy_op_done(c->method ? c->method->op : srv->op_unmatched, c->start_ns, grpc_outcome(status));
}

static void call_free(call_t *c)
{
    wy_grpc_server_t *srv = c->srv;
    if (c->call)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    if (c->req_bb)
        grpc_byte_buffer_destroy(c->req_bb);
    if (c->resp_bb)
        grpc_byte_buffer_destroy(c->resp_bb);
    if (c->has_status_msg)
        grpc_slice_unref(c->status_msg);
    if (c->req)
        protobuf_c_message_free_unpacked(c->req, NULL);
    if (c->counted)
        atomic_fetch_sub(&srv->inflight, 1);
    if (c->lingers)
        atomic_fetch_sub(&srv->answered_live, 1);
    wy_free(c);
    /* The last struct released after the shutdown notification ends the stop. Nothing
     * touches srv after the hop: the loop may free it at once. */
    if (atomic_fetch_sub(&srv->live, 1) == 1 && atomic_load(&srv->shutdown_seen) &&
        !atomic_exchange(&srv->stop_posted, 1))
        push_hop(srv->rt, &srv->stopped_hop);
}

static void call_unref(call_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        call_free(c);
}

/* Wait for one call: of method m, with its request already read (one completion per
 * arrival instead of two), or of any unregistered path when m is NULL. */
static void arm_slot(wy_grpc_server_t *srv, const method_t *m)
{
    call_t *c = wy_calloc(1, sizeof *c);
    c->t_new.kind = T_NEW;
    c->t_close.kind = T_CLOSE;
    c->t_reply.kind = T_REPLY;
    c->hop.kind = H_CALL;
    c->gone_hop.kind = H_GONE;
    c->srv = srv;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    c->slot = m;
    c->lq = m != NULL;
    lev_init(&c->lev_close, srv->rt, &c->t_close);
    lev_init(&c->lev_reply, srv->rt, &c->t_reply);
    atomic_fetch_add(&srv->live, 1);
    /* Notified on the CQ thread's queue; the call itself is bound to the loop's. */
    grpc_call_error e =
        m ? grpc_server_request_registered_call(srv->gs, m->reg, &c->call, &c->deadline, &c->md,
                                                &c->req_bb, srv->rt->lcq, srv->rt->cq, &c->t_new)
          : grpc_server_request_call(srv->gs, &c->call, &c->details, &c->md, srv->rt->cq,
                                     srv->rt->cq, &c->t_new);
    if (e != GRPC_CALL_OK) {
        char code[16];
        snprintf(code, sizeof code, "%d", (int)e);
        wy_log_error("grpc request_call failed", "error", code, NULL);
        call_free(c);
    }
}

/* Start a batch on c's call (either thread); a batch completing on the loop's queue is
 * counted until the loop drains its completion. */
static grpc_call_error call_batch(call_t *c, const grpc_op *ops, size_t n, tag_t *tag)
{
    wy_grpc_rt_t *rt = c->srv->rt;
    void *gtag = tag;
    if (c->lq) {
        atomic_fetch_add(&rt->lpending, 1);
        gtag = tag == &c->t_close ? &c->lev_close : &c->lev_reply;
    }
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, gtag, NULL);
    if (e != GRPC_CALL_OK && c->lq)
        atomic_fetch_sub(&rt->lpending, 1);
    return e;
}

/* Answer from the CQ thread, without a handler. Initial metadata always goes with the
 * status: one write for the whole answer. */
static void reply_now(call_t *c, grpc_status_code status, const char *msg)
{
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    c->status_msg = status_slice(msg);
    c->has_status_msg = true;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n].data.send_status_from_server.status_details = &c->status_msg;
    n++;
    count_answer(c, status);
    atomic_fetch_add(&c->refs, 1);
    grpc_call_error e = call_batch(c, ops, n, &c->t_reply);
    if (e != GRPC_CALL_OK) {
        wy_log_error("grpc start_batch failed", "op", "reply", NULL);
        call_unref(c);
    }
}

static void on_new(call_t *c, int success)
{
    wy_grpc_server_t *srv = c->srv;
    if (!success) { /* the server is shutting down: the slot was never used */
        call_free(c);
        return;
    }
    if (!atomic_load(&srv->stopping))
        arm_slot(srv, c->slot);

    atomic_store(&c->refs, 1); /* the arrival's, until it is handed on or answered */
    c->counted = true;
    c->start_ns = wy_now_ns();
    c->method = c->slot;
    if (!c->slot)
        c->deadline = c->details.deadline;
    /* Watching for the end of the call from the start lets a handler see that the
     * client gave up (deadline) and lets the counters see every cancellation. */
    grpc_op ops[1];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[0].data.recv_close_on_server.cancelled = &c->close_cancelled;
    atomic_fetch_add(&c->refs, 1);
    if (call_batch(c, ops, 1, &c->t_close) != GRPC_CALL_OK) {
        wy_log_error("grpc start_batch failed", "op", "close", NULL);
        atomic_fetch_sub(&c->refs, 1);
        grpc_call_cancel(c->call, NULL);
        call_unref(c);
        return;
    }

    unsigned before = atomic_fetch_add(&srv->inflight, 1);
    if (before >= srv->max_inflight ||
        atomic_load(&srv->answered_live) >= LIVE_FACTOR * srv->max_inflight) {
        char msg[128];
        snprintf(msg, sizeof msg, "server overloaded: %u calls in flight, retry later",
                 srv->max_inflight);
        atomic_fetch_add_explicit(&srv->rejected_busy, 1, memory_order_relaxed);
        reply_now(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
    } else if (!c->method) {
        char msg[WY_GRPC_MAX_STATUS_MSG];
        size_t n = GRPC_SLICE_LENGTH(c->details.method);
        snprintf(msg, sizeof msg, "unknown method %.*s", (int)(n > 900 ? 900 : n),
                 (const char *)GRPC_SLICE_START_PTR(c->details.method));
        reply_now(c, GRPC_STATUS_UNIMPLEMENTED, msg);
    } else if (!c->req_bb) {
        reply_now(c, GRPC_STATUS_INVALID_ARGUMENT, "request message missing");
    } else {
        c->req = unpack_message(c->req_bb, c->method->desc);
        grpc_byte_buffer_destroy(c->req_bb);
        c->req_bb = NULL;
        if (c->req) {
            /* The arrival's reference becomes the delivery hop's. */
            push_hop(srv->rt, &c->hop);
            return;
        }
        char msg[256];
        snprintf(msg, sizeof msg, "request is not a valid %s", c->method->desc->name);
        reply_now(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
    }
    /* Answered here: its completions wait in the loop's queue, no hop announces them. */
    if (c->lq)
        post_drain(srv->rt);
    call_unref(c); /* the arrival's */
}

static void on_close(call_t *c, int success)
{
    if (!success || c->close_cancelled) {
        /* Never answered: at its deadline it is our slowness, else the client left. The
         * grpc-timeout header is rounded up, so a client that gives up at its deadline
         * reaches us a little before ours: LATE_SLACK_MS counts as the deadline. */
        if (c->method && !atomic_load(&c->answered)) {
            gpr_timespec d = c->deadline;
            gpr_timespec now = gpr_time_add(gpr_now(d.clock_type),
                                            gpr_time_from_millis(LATE_SLACK_MS, GPR_TIMESPAN));
            bool late = gpr_time_cmp(now, d) >= 0;
            wy_op_done(c->method->op, c->start_ns,
                       late ? WY_OUTCOME_SERVER_ERROR : WY_OUTCOME_CLIENT_ERROR);
        }
        atomic_fetch_add_explicit(&c->srv->cancelled, 1, memory_order_relaxed);
        atomic_store(&c->gone, 1);
        /* The loop releases the call's id (if a handler holds it): the batch ref
         * becomes the hop's. Only the loop frees what a handler may be reading, and
         * only from the mailbox, never inside a handler (a loop-queue call gets here on
         * the loop, possibly from a drain inside a handler's reply). */
        push_hop(c->srv->rt, &c->gone_hop);
        return;
    }
    call_unref(c);
}

static void on_server_shutdown(wy_grpc_server_t *srv)
{
    atomic_store(&srv->shutdown_seen, 1);
    if (atomic_load(&srv->live) == 0 && !atomic_exchange(&srv->stop_posted, 1))
        push_hop(srv->rt, &srv->stopped_hop);
}

/* ---------------------------------------------------------------- client, CQ thread side */

static void on_client_done(client_call_t *cc)
{
    /* Decoding here keeps the loop free; the loop only runs the callback. */
    if (cc->status == GRPC_STATUS_OK && cc->recv_bb)
        cc->resp = unpack_message(cc->recv_bb, cc->desc);
    push_hop(cc->ch->rt, &cc->hop);
}

/* ---------------------------------------------------------------- CQ thread */

/* One completion, on the CQ thread (its queue) or on the loop (the loop's queue: only
 * T_CLOSE and T_REPLY of registered-method calls). */
static void on_event(tag_t *t, int success)
{
    switch (t->kind) {
    case T_NEW:
        on_new(WY_CONTAINER_OF(t, call_t, t_new), success);
        break;
    case T_CLOSE:
        on_close(WY_CONTAINER_OF(t, call_t, t_close), success);
        break;
    case T_REPLY:
        call_unref(WY_CONTAINER_OF(t, call_t, t_reply));
        break;
    case T_SHUTDOWN:
        on_server_shutdown(WY_CONTAINER_OF(t, wy_grpc_server_t, t_shutdown));
        break;
    case T_CLIENT:
        on_client_done(WY_CONTAINER_OF(t, client_call_t, tag));
        break;
    case T_KICK:
        break; /* drive mode: handled by the driver */
    }
}

static void *cq_main(void *arg)
{
    wy_grpc_rt_t *rt = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(rt->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            on_event(ev.tag, ev.success);
    }
    push_hop(rt, &rt->done_hop);
    return NULL;
}

/* ---------------------------------------------------------------- the loop's queue */

static void ltimer_cb(uv_timer_t *t);

/* Loop: handle every completion of the loop's queue so far, oldest first (one atomic
 * exchange; no gRPC call), then keep the drain timer running while batches are
 * outstanding. Runs no handler or client callback, so it is safe inside one. */
static void drain_lcq(wy_grpc_rt_t *rt)
{
    lev_t *e = atomic_exchange_explicit(&rt->ldone, NULL, memory_order_acquire);
    lev_t *fifo = NULL;
    while (e) {
        lev_t *next = e->next;
        e->next = fifo;
        fifo = e;
        e = next;
    }
    while (fifo) {
        lev_t *next = fifo->next; /* on_event may free the call holding fifo */
        atomic_fetch_sub(&rt->lpending, 1);
        on_event(fifo->tag, fifo->ok);
        fifo = next;
    }
    bool armed = uv_is_active((uv_handle_t *)&rt->ltimer);
    if (atomic_load(&rt->lpending) > 0) {
        if (!armed)
            uv_timer_start(&rt->ltimer, ltimer_cb, LOOP_DRAIN_MS, LOOP_DRAIN_MS);
    } else if (armed) {
        uv_timer_stop(&rt->ltimer);
    }
}

static void ltimer_cb(uv_timer_t *t)
{
    drain_lcq(t->data);
}

/* After every loop turn: what the turn's replies completed is freed at once. */
static void lcheck_cb(uv_check_t *h)
{
    wy_grpc_rt_t *rt = h->data;
    if (atomic_load(&rt->lpending) > 0)
        drain_lcq(rt);
}

/* ---------------------------------------------------------------- loop side */

/* Start the reply batch; takes over the caller's reference (the slot's or the hop's)
 * for the batch. The last touch of c: the CQ thread frees it once done. */
static void answer(call_t *c, grpc_status_code status, const char *msg, grpc_byte_buffer *bb)
{
    wy_list_remove(&c->held);
    c->id = 0;
    protobuf_c_message_free_unpacked(c->req, NULL);
    c->req = NULL;
    count_answer(c, status);

    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    if (bb) {
        c->resp_bb = bb;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = bb;
        n++;
    }
    if (msg) {
        c->status_msg = status_slice(msg);
        c->has_status_msg = true;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n].data.send_status_from_server.status_details = msg ? &c->status_msg : NULL;
    n++;
    if (call_batch(c, ops, n, &c->t_reply) != GRPC_CALL_OK) {
        wy_log_error("grpc start_batch failed", "op", "answer", NULL);
        grpc_call_cancel(c->call, NULL);
        call_unref(c);
    }
}

/* The delivery hop's reference becomes the id slot's, or goes with the answer. */
static void deliver_call(call_t *c)
{
    wy_grpc_server_t *srv = c->srv;
    if (atomic_load(&c->gone)) { /* the client left before the handler saw it */
        call_unref(c);
        return;
    }
    if (!srv->hard)
        c->id = id_put(c);
    if (!c->id) {
        answer(c, GRPC_STATUS_UNAVAILABLE,
               srv->hard ? "server shutting down" : "server overloaded: no call id left", NULL);
        return;
    }
    wy_list_push_back(&srv->held, &c->held);
    wy_grpc_call_id_t id = {c->id};
    /* The handler may answer inside: c must not be touched after this line. */
    c->method->cb(id, c->req, c->method->arg);
}

/* Drop a call whose id was just taken without answering it (the client is gone). */
static void drop_taken(call_t *c)
{
    wy_list_remove(&c->held);
    c->id = 0;
    protobuf_c_message_free_unpacked(c->req, NULL);
    c->req = NULL;
    call_unref(c); /* the slot's */
}

/* The client is gone: release the id a handler holds; its late reply finds nothing. */
static void deliver_gone(call_t *c)
{
    if (c->id && id_take(c->id) == c)
        drop_taken(c);
    call_unref(c); /* the hop's */
}

/* The call of a handler's id, taken out of the table, or NULL (and the call released
 * if the client is gone) when a reply would be pointless. */
static call_t *take_for_reply(wy_grpc_call_id_t call)
{
    /* A cancellation waiting in the loop's queue is seen first. */
    call_t *c = id_get(call.v);
    if (c && atomic_load(&c->srv->rt->lpending) > 0)
        drain_lcq(c->srv->rt);
    c = id_take(call.v);
    if (c && atomic_load(&c->gone)) {
        drop_taken(c);
        c = NULL;
    }
    if (!c)
        wy_log_debug("grpc reply dropped: the call is over (answered, cancelled or expired)", NULL);
    return c;
}

static void server_timer_closed(uv_handle_t *h)
{
    wy_grpc_server_t *srv = h->data;
    void (*cb)(void *) = srv->done_cb;
    void *arg = srv->done_arg;
    srv->rt->n_servers--;
    for (unsigned i = 0; i < srv->n_methods; i++)
        wy_free(srv->methods[i].path);
    for (unsigned i = 0; i < srv->n_health; i++)
        wy_free(srv->health[i].name);
    wy_free(srv);
    if (cb)
        cb(arg);
}

static void server_finish(wy_grpc_server_t *srv)
{
    uv_timer_stop(&srv->timer);
    if (srv->gs)
        grpc_server_destroy(srv->gs);
    srv->gs = NULL;
    uv_close((uv_handle_t *)&srv->timer, server_timer_closed);
}

static void on_grace(uv_timer_t *t)
{
    wy_grpc_server_t *srv = t->data;
    if (!srv->gs) { /* never started: nothing to wait for */
        server_finish(srv);
        return;
    }
    srv->hard = true;
    wy_list_t *n;
    while ((n = wy_list_first(&srv->held))) {
        call_t *c = wy_list_entry(n, call_t, held);
        call_t *taken = id_take(c->id);
        assert(taken == c); /* a held call always owns its slot */
        (void)taken;
        answer(c, GRPC_STATUS_UNAVAILABLE, "server shutting down", NULL);
    }
    grpc_server_cancel_all_calls(srv->gs);
}

static void channel_free(wy_grpc_channel_t *ch)
{
    for (unsigned i = 0; i < ch->n_methods; i++)
        wy_free(ch->methods[i].path);
    wy_free(ch);
}

static void deliver_client(client_call_t *cc)
{
    wy_grpc_channel_t *ch = cc->ch;
    int status = cc->status;
    int err;
    char *message = NULL;
    if (status == GRPC_STATUS_OK && !cc->resp) {
        status = GRPC_STATUS_INTERNAL;
        err = WY_EIO;
        message = cc->recv_bb ? wy_sprintf("response is not a valid %s", cc->desc->name)
                              : wy_strdup("response message missing");
    } else {
        err = status == GRPC_STATUS_OK ? WY_OK : wy_err_from_grpc(status);
        if (GRPC_SLICE_LENGTH(cc->details)) /* most answers carry none: no copy */
            message = wy_strndup((const char *)GRPC_SLICE_START_PTR(cc->details),
                                 GRPC_SLICE_LENGTH(cc->details));
    }
    wy_list_remove(&cc->node);
    ch->inflight--;

    ch->delivering = true;
    cc->cb(err, status, message ? message : "", err == WY_OK ? cc->resp : NULL, cc->arg);
    ch->delivering = false;

    wy_free(message);
    if (cc->resp)
        protobuf_c_message_free_unpacked(cc->resp, NULL);
    grpc_call_unref(cc->call);
    grpc_byte_buffer_destroy(cc->send_bb);
    if (cc->recv_bb)
        grpc_byte_buffer_destroy(cc->recv_bb);
    grpc_metadata_array_destroy(&cc->recv_init_md);
    grpc_metadata_array_destroy(&cc->trailing_md);
    grpc_slice_unref(cc->details);
    for (size_t i = 0; i < cc->n_md; i++) {
        grpc_slice_unref(cc->send_md[i].key);
        grpc_slice_unref(cc->send_md[i].value);
    }
    wy_free(cc->send_md);
    wy_free(cc);
    if (ch->closed && ch->inflight == 0)
        channel_free(ch);
}

static void rt_closed(void *ud)
{
    wy_grpc_rt_t *rt = ud;
    if (--rt->closing_handles > 0)
        return;
    void (*cb)(void *) = rt->done_cb;
    void *arg = rt->done_arg;
    wy_free(rt);
    grpc_shutdown();
    if (cb)
        cb(arg);
}

static void rt_handle_closed(uv_handle_t *h)
{
    rt_closed(h->data);
}

/* Every server is freed, so every call is: the loop's queue is empty. Shut it down,
 * close the handles and the mailbox; rt_closed frees rt after the last of them. */
static void rt_close_loop_side(wy_grpc_rt_t *rt)
{
    assert(atomic_load(&rt->lpending) == 0);
    /* Its shutdown functor runs later on a gRPC thread and frees only itself. */
    TSAN_RELEASE(rt->lcq_shut);
    grpc_completion_queue_shutdown(rt->lcq);
    grpc_completion_queue_destroy(rt->lcq);
    if (rt->drive) {
        grpc_metadata_array_destroy(&rt->kick_md);
        grpc_slice_unref(rt->kick_details);
        pthread_mutex_destroy(&rt->kmu);
    }
    rt->closing_handles = 3;
    uv_close((uv_handle_t *)&rt->lcheck, rt_handle_closed);
    uv_close((uv_handle_t *)&rt->ltimer, rt_handle_closed);
    wy_mailbox_close(rt->mb, rt_closed, rt);
}

static void on_hop(wy_mailbox_node_t *node, void *ud, int status)
{
    wy_grpc_rt_t *rt = ud;
    hop_t *h = WY_CONTAINER_OF(node, hop_t, node);
    /* WY_ECANCELED cannot happen: the mailbox closes after the last hop. */
    assert(status == WY_OK);
    (void)status;
    rt->handoffs += !rt->drive;
    switch (h->kind) {
    case H_CALL:
        deliver_call(WY_CONTAINER_OF(h, call_t, hop));
        break;
    case H_GONE:
        deliver_gone(WY_CONTAINER_OF(h, call_t, gone_hop));
        break;
    case H_CLIENT:
        deliver_client(WY_CONTAINER_OF(h, client_call_t, hop));
        break;
    case H_STOPPED:
        server_finish(WY_CONTAINER_OF(h, wy_grpc_server_t, stopped_hop));
        break;
    case H_RT_DONE:
        pthread_join(rt->thread, NULL);
        grpc_completion_queue_destroy(rt->cq);
        rt_close_loop_side(rt);
        break;
    case H_DRAIN:
        atomic_store(&rt->drain_posted, 0);
        drain_lcq(rt);
        break;
    }
}

/* ---------------------------------------------------------------- drive mode */

/* Loop: every hop pushed so far, oldest first (never inside a handler: the driver calls
 * this between completions and after the loop's turn). */
static void run_local(wy_grpc_rt_t *rt)
{
    while (rt->lhead) {
        hop_t *h = rt->lhead;
        rt->lhead = h->lnext;
        if (!rt->lhead)
            rt->ltail = &rt->lhead;
        on_hop(&h->node, rt, WY_OK);
    }
}

/* Loop: arm the next kick (a receive-status batch that completes only when the watcher
 * cancels the call) and let the watcher poll again. */
static void kick_arm(wy_grpc_rt_t *rt)
{
    grpc_call *c = grpc_channel_create_registered_call(rt->kick_ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                       rt->cq, rt->kick_method,
                                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &rt->kick_md;
    op.data.recv_status_on_client.status = &rt->kick_status;
    op.data.recv_status_on_client.status_details = &rt->kick_details;
    grpc_call_error e = grpc_call_start_batch(c, &op, 1, &rt->t_kick, NULL);
    assert(e == GRPC_CALL_OK);
    (void)e;
    pthread_mutex_lock(&rt->kmu);
    rt->kick_call = c;
    pthread_mutex_unlock(&rt->kmu);
    /* One shot: the watcher wakes once for libuv's readiness, then sleeps until the loop
     * arms it again (the loop does so only before it would sleep in gRPC). */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u32 = 0};
    int rc = epoll_ctl(rt->wep, EPOLL_CTL_MOD, uv_backend_fd(rt->loop), &ev);
    assert(rc == 0);
    (void)rc;
}

/* Loop: the kick completed (the watcher cancelled it, or the runtime is closing). */
static void kick_done(wy_grpc_rt_t *rt)
{
    pthread_mutex_lock(&rt->kmu);
    grpc_call *c = rt->kick_call;
    rt->kick_call = NULL;
    pthread_mutex_unlock(&rt->kmu);
    grpc_call_unref(c);
    grpc_metadata_array_destroy(&rt->kick_md);
    grpc_metadata_array_init(&rt->kick_md);
    grpc_slice_unref(rt->kick_details);
    rt->kick_details = grpc_empty_slice();
    rt->kicks++;
    rt->kicked = !rt->closing;
}

/* The watcher thread: when libuv has something ready (its backend epoll descriptor turns
 * readable) while the loop sleeps in gRPC, wake the loop by cancelling the armed kick. The
 * descriptor is watched one-shot: the next wake-up needs the loop's next kick_arm. */
static void *watch_main(void *arg)
{
    wy_grpc_rt_t *rt = arg;
    for (;;) {
        struct epoll_event evs[2];
        int n = epoll_wait(rt->wep, evs, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        bool stop = false;
        for (int i = 0; i < n; i++)
            stop = stop || evs[i].data.u32 == 1;
        if (stop)
            break;
        pthread_mutex_lock(&rt->kmu); /* the loop unrefs the call only under kmu */
        if (rt->kick_call && !rt->kick_stop)
            grpc_call_cancel(rt->kick_call, NULL);
        pthread_mutex_unlock(&rt->kmu);
    }
    return NULL;
}

static void watcher_stop(wy_grpc_rt_t *rt)
{
    if (!rt->watcher_started)
        return;
    pthread_mutex_lock(&rt->kmu);
    rt->kick_stop = true;
    pthread_mutex_unlock(&rt->kmu);
    uint64_t one = 1;
    ssize_t w = write(rt->stop_fd, &one, sizeof one);
    (void)w;
    pthread_join(rt->watcher, NULL);
    rt->watcher_started = false;
}

int wy_grpc_rt_run(wy_grpc_rt_t *rt, uv_run_mode mode)
{
    uv_loop_t *loop = rt->loop;
    if (!rt->drive || rt->driven_out)
        return uv_run(loop, mode);
    const gpr_timespec past = gpr_inf_past(GPR_CLOCK_MONOTONIC);
    for (;;) {
        /* Sleep in gRPC until a completion, a kick (libuv readiness) or libuv's next
         * timer; a loop with nothing alive but gRPC sleeps until a completion.
         * uv_backend_timeout is 0 while libuv has watchers its epoll does not know yet
         * (started by a callback after its poll): the watcher thread could not see them,
         * so the loop turns again instead of sleeping (test_drive_watcher_started_in_a_
         * callback). */
        uv_update_time(loop);
        int ms = mode == UV_RUN_NOWAIT || rt->lhead ? 0
                 : uv_loop_alive(loop)              ? uv_backend_timeout(loop)
                                                    : -1;
        if (ms != 0 && rt->kicked && !rt->closing) { /* about to sleep: let the watcher wake it */
            rt->kicked = false;
            kick_arm(rt);
        }
        gpr_timespec dl = ms < 0    ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                          : ms == 0 ? past
                                    : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                   gpr_time_from_millis(ms, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(rt->cq, dl, NULL);
        for (unsigned n = 0; ev.type == GRPC_OP_COMPLETE;) {
            tag_t *t = ev.tag;
            if (t->kind == T_KICK)
                kick_done(rt);
            else
                on_event(t, ev.success);
            run_local(rt);
            if (++n == DRIVE_BATCH)
                break;
            ev = grpc_completion_queue_next(rt->cq, past, NULL);
        }
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            /* The watcher was joined by wy_grpc_rt_close; the rest closes on the loop and
             * frees rt: from here on the loop runs as a plain libuv loop. */
            rt->driven_out = true;
            grpc_completion_queue_destroy(rt->cq);
            rt_close_loop_side(rt);
            return uv_run(loop, mode);
        }
        uv_run(loop, UV_RUN_NOWAIT);
        run_local(rt);
        if (mode != UV_RUN_DEFAULT)
            return 1; /* the runtime is alive */
    }
}

/* ---------------------------------------------------------------- runtime API */

/* The loop queue's shutdown is over (a gRPC thread, after the runtime may be gone). */
static void lcq_shut(grpc_completion_queue_functor *f, int ok)
{
    (void)ok;
    TSAN_ACQUIRE(f);
    wy_free(f);
}

int wy_grpc_rt_new(uv_loop_t *loop, wy_grpc_rt_t **out)
{
    return wy_grpc_rt_new_opts(loop, NULL, out);
}

static void drive_stop(wy_grpc_rt_t *rt);

/* Drive mode: the kick channel and call, the watcher thread. */
static int drive_start(wy_grpc_rt_t *rt)
{
    pthread_mutex_init(&rt->kmu, NULL);
    rt->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rt->wep = epoll_create1(EPOLL_CLOEXEC);
    if (rt->stop_fd < 0 || rt->wep < 0)
        return WY_EINTERNAL;
    struct epoll_event se = {.events = EPOLLIN, .data.u32 = 1};
    struct epoll_event be = {.events = EPOLLONESHOT, .data.u32 = 0}; /* armed by kick_arm */
    if (epoll_ctl(rt->wep, EPOLL_CTL_ADD, rt->stop_fd, &se) != 0 ||
        epoll_ctl(rt->wep, EPOLL_CTL_ADD, uv_backend_fd(rt->loop), &be) != 0)
        return WY_EINTERNAL;
    rt->t_kick.kind = T_KICK;
    grpc_metadata_array_init(&rt->kick_md);
    rt->kick_details = grpc_empty_slice();
    /* Never connected: a call that sends nothing never picks a transport. */
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    rt->kick_ch = grpc_channel_create("127.0.0.1:9", creds, NULL);
    grpc_channel_credentials_release(creds);
    rt->kick_method =
        grpc_channel_register_call(rt->kick_ch, "/wyvern.internal.Kick/Kick", NULL, NULL);
    kick_arm(rt);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&rt->watcher, NULL, watch_main, rt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        wy_log_error("grpc watcher thread failed to start", "error", strerror(rc), NULL);
        return WY_EINTERNAL;
    }
    rt->watcher_started = true;
    return WY_OK;
}

int wy_grpc_rt_new_opts(uv_loop_t *loop, const wy_grpc_rt_opts_t *opts, wy_grpc_rt_t **out)
{
    wy_grpc_rt_t *rt = wy_calloc(1, sizeof *rt);
    rt->loop = loop;
    rt->drive = opts && opts->drive;
    rt->ltail = &rt->lhead;
    rt->stop_fd = rt->wep = -1;
    rt->done_hop.kind = H_RT_DONE;
    rt->drain_hop.kind = H_DRAIN;
    wy_mailbox_opts_t mo = {.capacity = WY_MAILBOX_MAX_CAPACITY, .ud = rt};
    if (wy_mailbox_new(loop, &mo, &rt->mb) != WY_OK) {
        wy_free(rt);
        return WY_EINTERNAL;
    }
    wy_grpc_absl_fast_mutex();
    grpc_init();
    rt->cq = grpc_completion_queue_create_for_next(NULL);

    /* The CQ thread must never take the daemon's signals (SIGTERM goes to the loop). */
    int rc = 0;
    if (rt->drive) {
        rc = drive_start(rt) == WY_OK ? 0 : EAGAIN;
    } else {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&rt->thread, NULL, cq_main, rt);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (rc != 0) {
        wy_log_error("grpc cq thread failed to start", "error", strerror(rc), NULL);
        if (rt->drive)
            drive_stop(rt);
        grpc_completion_queue_shutdown(rt->cq);
        for (;;) { /* the cancelled kick, if armed, completes before the shutdown */
            grpc_event ev =
                grpc_completion_queue_next(rt->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            if (ev.type == GRPC_QUEUE_SHUTDOWN)
                break;
            if (ev.type == GRPC_OP_COMPLETE && ((tag_t *)ev.tag)->kind == T_KICK)
                kick_done(rt);
        }
        grpc_completion_queue_destroy(rt->cq);
        rt->closing_handles = 1;
        wy_mailbox_close(rt->mb, rt_closed, rt);
        return WY_EINTERNAL;
    }
    grpc_completion_queue_functor *sf = wy_calloc(1, sizeof *sf);
    sf->functor_run = lcq_shut;
    rt->lcq_shut = sf;
    grpc_completion_queue_attributes la = {GRPC_CQ_CURRENT_VERSION, GRPC_CQ_CALLBACK,
                                           GRPC_CQ_NON_POLLING, sf};
    rt->lcq = grpc_completion_queue_create(grpc_completion_queue_factory_lookup(&la), &la, NULL);
    uv_check_init(loop, &rt->lcheck);
    rt->lcheck.data = rt;
    uv_check_start(&rt->lcheck, lcheck_cb);
    uv_unref((uv_handle_t *)&rt->lcheck); /* never keeps the loop alive by itself */
    uv_timer_init(loop, &rt->ltimer);
    rt->ltimer.data = rt;
    *out = rt;
    return WY_OK;
}

/* Drive mode, closing: stop the watcher, fire the armed kick (its completion is the last
 * one before the queue's shutdown), let go of the kick channel. */
static void drive_stop(wy_grpc_rt_t *rt)
{
    rt->kicked = false; /* no kick is armed again: the channel goes below */
    watcher_stop(rt);
    pthread_mutex_lock(&rt->kmu);
    grpc_call *c = rt->kick_call;
    pthread_mutex_unlock(&rt->kmu);
    if (c)
        grpc_call_cancel(c, NULL);
    if (rt->kick_ch)
        grpc_channel_destroy(rt->kick_ch);
    rt->kick_ch = NULL;
    if (rt->stop_fd >= 0)
        close(rt->stop_fd);
    if (rt->wep >= 0)
        close(rt->wep);
    rt->stop_fd = rt->wep = -1;
}

void wy_grpc_rt_stats(const wy_grpc_rt_t *rt, wy_grpc_rt_stats_t *out)
{
    out->drive = rt->drive;
    out->handoffs = rt->handoffs;
    out->kicks = rt->kicks;
}

int wy_grpc_rt_close(wy_grpc_rt_t *rt, void (*done_cb)(void *arg), void *arg)
{
    if (rt->closing || rt->n_servers || rt->n_channels)
        return WY_ESTATE;
    rt->closing = true;
    rt->done_cb = done_cb;
    rt->done_arg = arg;
    if (rt->drive)
        drive_stop(rt);
    grpc_completion_queue_shutdown(rt->cq);
    return WY_OK;
}

/* ---------------------------------------------------------------- server API */

static void health_check(wy_grpc_call_id_t call, const ProtobufCMessage *m, void *arg)
{
    wy_grpc_server_t *srv = arg;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)m;
    for (unsigned i = 0; i < srv->n_health; i++) {
        if (strcmp(srv->health[i].name, req->service) == 0) {
            Grpc__Health__V1__HealthCheckResponse resp =
                GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
            resp.status =
                srv->health[i].serving
                    ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
            wy_grpc_reply(call, &resp.base);
            return;
        }
    }
    char msg[300];
    snprintf(msg, sizeof msg, "unknown service \"%.200s\"", req->service);
    wy_grpc_reply_error(call, WY_ENOTFOUND, msg);
}

/* wy_<svc>_grpc_call_seconds{method}, with its outcome counts. */
static wy_op_family_t *call_family(void)
{
    char *name = wy_metrics_svc_name("grpc_call_seconds");
    wy_op_family_t *f = wy_metrics_op_family(name,
                                             "gRPC calls served, by method: time from arrival to "
                                             "the answer (or to the client leaving), and outcome "
                                             "counts.",
                                             "method");
    wy_free(name);
    return f;
}

int wy_grpc_server_new(wy_grpc_rt_t *rt, const wy_grpc_server_opts_t *opts, wy_grpc_server_t **out)
{
    wy_grpc_server_t *srv = wy_calloc(1, sizeof *srv);
    srv->rt = rt;
    srv->max_recv = opts && opts->max_recv_bytes ? opts->max_recv_bytes : WY_GRPC_DEFAULT_MAX_MSG;
    srv->max_inflight =
        opts && opts->max_inflight ? opts->max_inflight : WY_GRPC_DEFAULT_MAX_INFLIGHT;
    srv->slots = opts && opts->request_slots ? opts->request_slots : DEFAULT_SLOTS;
    srv->t_shutdown.kind = T_SHUTDOWN;
    srv->stopped_hop.kind = H_STOPPED;
    uv_timer_init(rt->loop, &srv->timer);
    srv->timer.data = srv;
    wy_list_init(&srv->held);
    srv->op_unmatched = wy_metrics_op(call_family(), "unmatched");
    rt->n_servers++;
    wy_grpc_server_register(srv, "/grpc.health.v1.Health/Check",
                            &grpc__health__v1__health_check_request__descriptor, health_check, srv);
    wy_grpc_server_set_health(srv, "", true);
    *out = srv;
    return WY_OK;
}

int wy_grpc_server_register(wy_grpc_server_t *srv, const char *method,
                            const ProtobufCMessageDescriptor *req_desc, wy_grpc_handler_cb cb,
                            void *arg)
{
    if (srv->state != S_NEW)
        return WY_ESTATE;
    if (!method || !req_desc || !cb || method[0] != '/' || !strchr(method + 1, '/') ||
        method[1] == '/' || method[strlen(method) - 1] == '/')
        return WY_EINVAL;
    for (unsigned i = 0; i < srv->n_methods; i++)
        if (strcmp(srv->methods[i].path, method) == 0)
            return WY_EEXIST;
    if (srv->n_methods == MAX_METHODS)
        return WY_ELIMIT;
    method_t *m = &srv->methods[srv->n_methods++];
    m->path = wy_strdup(method);
    m->desc = req_desc;
    m->cb = cb;
    m->arg = arg;
    m->op = wy_metrics_op(call_family(), method);
    return WY_OK;
}

int wy_grpc_server_start(wy_grpc_server_t *srv, const char *addr, int *port, const char **err)
{
    if (srv->state != S_NEW || srv->gs) {
        if (err)
            *err = "gRPC server: already started or stopping";
        return WY_ESTATE;
    }
    grpc_arg args[3];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = srv->max_recv > INT_MAX ? INT_MAX : (int)srv->max_recv;
    /* gRPC enables SO_REUSEPORT by default: a second daemon on the same port would
     * silently share it instead of failing at start. */
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[1].value.integer = 0;
    /* No BDP pings: they sent reads to gRPC's executor thread (see wy_grpc.h). */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_HTTP2_BDP_PROBE;
    args[2].value.integer = 0;
    grpc_channel_args ca = {3, args};

    srv->gs = grpc_server_create(&ca, NULL);
    grpc_server_register_completion_queue(srv->gs, srv->rt->cq, NULL);
    for (unsigned i = 0; i < srv->n_methods; i++)
        srv->methods[i].reg = grpc_server_register_method(
            srv->gs, srv->methods[i].path, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int bound = grpc_server_add_http2_port(srv->gs, addr, creds);
    grpc_server_credentials_release(creds);
    if (bound <= 0) {
        grpc_server_destroy(srv->gs);
        srv->gs = NULL;
        snprintf(srv->errbuf, sizeof srv->errbuf,
                 "gRPC server: cannot listen on \"%.200s\" (want host:port; port in use?)", addr);
        if (err)
            *err = srv->errbuf;
        return WY_EIO;
    }
    grpc_server_start(srv->gs);
    srv->state = S_RUNNING;
    /* Each method keeps its own slots, the generic slots take unknown paths. */
    for (unsigned i = 0; i < srv->slots; i++) {
        for (unsigned j = 0; j < srv->n_methods; j++)
            arm_slot(srv, &srv->methods[j]);
        arm_slot(srv, NULL);
    }
    if (port)
        *port = bound;
    return WY_OK;
}

int wy_grpc_server_set_health(wy_grpc_server_t *srv, const char *service, bool serving)
{
    if (!service || strlen(service) > MAX_HEALTH_NAME)
        return WY_EINVAL;
    for (unsigned i = 0; i < srv->n_health; i++) {
        if (strcmp(srv->health[i].name, service) == 0) {
            srv->health[i].serving = serving;
            return WY_OK;
        }
    }
    if (srv->n_health == MAX_HEALTH)
        return WY_ELIMIT;
    srv->health[srv->n_health].name = wy_strdup(service);
    srv->health[srv->n_health].serving = serving;
    srv->n_health++;
    return WY_OK;
}

int wy_grpc_server_stop(wy_grpc_server_t *srv, unsigned grace_ms, void (*done_cb)(void *arg),
                        void *arg)
{
    if (srv->state == S_STOPPING)
        return WY_ESTATE;
    srv->state = S_STOPPING;
    srv->done_cb = done_cb;
    srv->done_arg = arg;
    for (unsigned i = 0; i < srv->n_health; i++)
        srv->health[i].serving = false;
    atomic_store(&srv->stopping, 1);
    if (srv->gs) {
        grpc_server_shutdown_and_notify(srv->gs, srv->rt->cq, &srv->t_shutdown);
        uv_timer_start(&srv->timer, on_grace, grace_ms, 0);
    } else {
        uv_timer_start(&srv->timer, on_grace, 0, 0);
    }
    return WY_OK;
}

void wy_grpc_server_end_grace(wy_grpc_server_t *srv)
{
    /* gs is NULL once the server finished (everything answered) or never started. */
    if (srv->state != S_STOPPING || srv->hard || !srv->gs)
        return;
    uv_timer_stop(&srv->timer);
    on_grace(&srv->timer);
}

void wy_grpc_server_stats(const wy_grpc_server_t *srv, wy_grpc_server_stats_t *out)
{
    wy_grpc_server_t *s = (wy_grpc_server_t *)srv; /* atomics loads need non-const */
    memset(out, 0, sizeof *out);
    out->calls_total = atomic_load_explicit(&s->calls_total, memory_order_relaxed);
    out->rejected_busy = atomic_load_explicit(&s->rejected_busy, memory_order_relaxed);
    out->cancelled = atomic_load_explicit(&s->cancelled, memory_order_relaxed);
    out->in_flight = atomic_load_explicit(&s->inflight, memory_order_relaxed);
    for (unsigned i = 0; i < N_STATUS; i++)
        out->by_status[i] = atomic_load_explicit(&s->by_status[i], memory_order_relaxed);
}

/* ---------------------------------------------------------------- server call API */

int wy_grpc_reply(wy_grpc_call_id_t call, const ProtobufCMessage *resp)
{
    call_t *c = take_for_reply(call);
    if (!c)
        return WY_ECANCELED;
    answer(c, GRPC_STATUS_OK, NULL, pack_message(resp));
    return WY_OK;
}

int wy_grpc_reply_error(wy_grpc_call_id_t call, int err, const char *msg)
{
    call_t *c = take_for_reply(call);
    if (!c)
        return WY_ECANCELED;
    if (err >= 0)
        err = WY_EINTERNAL; /* an error reply must not read as success */
    answer(c, (grpc_status_code)wy_err_grpc(err), msg ? msg : wy_strerror(err), NULL);
    return WY_OK;
}

const char *wy_grpc_call_method(wy_grpc_call_id_t call)
{
    call_t *c = id_get(call.v);
    return c ? c->method->path : NULL;
}

int64_t wy_grpc_call_deadline_ms(wy_grpc_call_id_t call)
{
    call_t *c = id_get(call.v);
    if (!c)
        return 0;
    gpr_timespec d = c->deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(d, gpr_now(d.clock_type));
    return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

bool wy_grpc_call_cancelled(wy_grpc_call_id_t call)
{
    call_t *c = id_get(call.v);
    if (c && atomic_load(&c->srv->rt->lpending) > 0) {
        drain_lcq(c->srv->rt); /* sets gone, never frees c: its release goes by the mailbox */
        c = id_get(call.v);
    }
    return !c || atomic_load(&c->gone) != 0;
}

int wy_grpc_call_metadata(wy_grpc_call_id_t call, const char *key, const char **val, size_t *len)
{
    call_t *c = id_get(call.v);
    if (!c)
        return WY_ECANCELED;
    size_t klen = strlen(key);
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) == klen &&
            strncasecmp((const char *)GRPC_SLICE_START_PTR(m->key), key, klen) == 0) {
            *val = (const char *)GRPC_SLICE_START_PTR(m->value);
            *len = GRPC_SLICE_LENGTH(m->value);
            return WY_OK;
        }
    }
    return WY_ENOTFOUND;
}

/* ---------------------------------------------------------------- client API */

int wy_grpc_channel_new(wy_grpc_rt_t *rt, const char *target, const wy_grpc_channel_opts_t *opts,
                        wy_grpc_channel_t **out)
{
    if (rt->closing)
        return WY_ESTATE;
    if (!target || !*target)
        return WY_EINVAL;
    size_t max_recv = opts && opts->max_recv_bytes ? opts->max_recv_bytes : WY_GRPC_DEFAULT_MAX_MSG;
    int backoff =
        opts && opts->max_reconnect_ms ? (int)opts->max_reconnect_ms : DEFAULT_RECONNECT_MS;
    grpc_arg args[4];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = max_recv > INT_MAX ? INT_MAX : (int)max_recv;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[1].value.integer = backoff;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[2].value.integer = backoff < 1000 ? backoff : 1000;
    /* No BDP pings: they sent reads to gRPC's executor thread (see wy_grpc.h). */
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_HTTP2_BDP_PROBE;
    args[3].value.integer = 0;
    grpc_channel_args ca = {4, args};

    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *gc = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    if (!gc)
        return WY_EINVAL;
    wy_grpc_channel_t *ch = wy_calloc(1, sizeof *ch);
    ch->rt = rt;
    ch->gc = gc;
    wy_list_init(&ch->calls);
    ch->max_inflight =
        opts && opts->max_inflight ? opts->max_inflight : WY_GRPC_DEFAULT_MAX_INFLIGHT;
    rt->n_channels++;
    *out = ch;
    return WY_OK;
}

void wy_grpc_channel_close(wy_grpc_channel_t *ch)
{
    if (ch->closed)
        return;
    ch->closed = true;
    ch->rt->n_channels--;
    wy_list_t *n;
    wy_list_foreach(n, &ch->calls)
    {
        grpc_call_cancel(wy_list_entry(n, client_call_t, node)->call, NULL);
    }
    /* Calls keep their own reference on the channel stack. */
    grpc_channel_destroy(ch->gc);
    ch->gc = NULL;
    if (ch->inflight == 0 && !ch->delivering)
        channel_free(ch);
}

unsigned wy_grpc_channel_inflight(const wy_grpc_channel_t *ch)
{
    return ch->inflight;
}

/* A new call of method on ch, through the channel's registered method when it has one. */
static grpc_call *start_call(wy_grpc_channel_t *ch, const char *method, gpr_timespec deadline)
{
    void *handle = NULL;
    for (unsigned i = 0; i < ch->n_methods && !handle; i++)
        if (strcmp(ch->methods[i].path, method) == 0)
            handle = ch->methods[i].handle;
    if (!handle && ch->n_methods < MAX_METHODS) {
        handle = grpc_channel_register_call(ch->gc, method, NULL, NULL);
        ch->methods[ch->n_methods].path = wy_strdup(method);
        ch->methods[ch->n_methods].handle = handle;
        ch->n_methods++;
    }
    if (handle)
        return grpc_channel_create_registered_call(ch->gc, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                   ch->rt->cq, handle, deadline, NULL);
    grpc_slice mslice = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(ch->gc, NULL, GRPC_PROPAGATE_DEFAULTS, ch->rt->cq,
                                               mslice, NULL, deadline, NULL);
    grpc_slice_unref(mslice);
    return call;
}

int wy_grpc_call(wy_grpc_channel_t *ch, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, unsigned deadline_ms,
                 const wy_grpc_md_t *md, size_t n_md, wy_grpc_reply_cb cb, void *arg)
{
    if (ch->closed)
        return WY_ESTATE;
    if (!method || method[0] != '/' || !req || !resp_desc || !cb || (n_md && !md))
        return WY_EINVAL;
    if (ch->inflight >= ch->max_inflight)
        return WY_EBUSY;
    for (size_t i = 0; i < n_md; i++)
        if (!md[i].key || !md[i].value ||
            !grpc_header_key_is_legal(grpc_slice_from_static_string(md[i].key)))
            return WY_EINVAL;

    if (deadline_ms == 0)
        deadline_ms = WY_GRPC_DEFAULT_DEADLINE_MS;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));
    grpc_call *call = start_call(ch, method, deadline);

    client_call_t *cc = wy_calloc(1, sizeof *cc);
    cc->tag.kind = T_CLIENT;
    cc->hop.kind = H_CLIENT;
    cc->ch = ch;
    cc->call = call;
    cc->desc = resp_desc;
    cc->cb = cb;
    cc->arg = arg;
    cc->details = grpc_empty_slice();
    grpc_metadata_array_init(&cc->recv_init_md);
    grpc_metadata_array_init(&cc->trailing_md);
    if (n_md) {
        cc->send_md = wy_calloc(n_md, sizeof *cc->send_md);
        cc->n_md = n_md;
        for (size_t i = 0; i < n_md; i++) {
            cc->send_md[i].key = grpc_slice_from_copied_string(md[i].key);
            cc->send_md[i].value = grpc_slice_from_copied_string(md[i].value);
        }
    }
    cc->send_bb = pack_message(req);

    grpc_op ops[6];
    size_t nops = wy_grpc_unary_ops(ops, cc->send_md, cc->n_md, cc->send_bb, &cc->recv_init_md,
                                    &cc->recv_bb, &cc->trailing_md, &cc->status, &cc->details);
    grpc_call_error e = grpc_call_start_batch(call, ops, nops, &cc->tag, NULL);
    if (e != GRPC_CALL_OK) {
        grpc_call_unref(call);
        grpc_byte_buffer_destroy(cc->send_bb);
        grpc_metadata_array_destroy(&cc->recv_init_md);
        grpc_metadata_array_destroy(&cc->trailing_md);
        for (size_t i = 0; i < cc->n_md; i++) {
            grpc_slice_unref(cc->send_md[i].key);
            grpc_slice_unref(cc->send_md[i].value);
        }
        wy_free(cc->send_md);
        wy_free(cc);
        return e == GRPC_CALL_ERROR_INVALID_METADATA ? WY_EINVAL : WY_EINTERNAL;
    }
    wy_list_push_back(&ch->calls, &cc->node);
    ch->inflight++;
    return WY_OK;
}
