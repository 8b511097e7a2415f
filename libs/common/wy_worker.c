/* wy_worker — worker threads with an inbox each and a shared mailbox to the
 * loop (see wy_worker.h). */
#include "wy_worker.h"
#include "wy_log.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define DEFAULT_INBOX 1024
#define DEFAULT_LOOP  4096

struct wy_worker {
    wy_workers_t *pool;
    unsigned index;
    wy_mailbox_t *inbox;
    pthread_t thread;
    bool started; /* loop thread only */
    bool joined;
    /* wy_worker_wait: set by a push to an empty inbox or the stop, cleared by the wait. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool woken;
};

struct wy_workers {
    wy_workers_opts_t o;
    char *name;
    wy_mailbox_t *to_loop;
    wy_worker_t *w; /* count of them */
    atomic_int stopping;
    atomic_uint running; /* workers whose main has not returned */
    void (*done)(void *);
    void *done_arg;
};

/* The inbox's wake (any producer thread): a push found it empty. */
static void worker_wake(void *ud)
{
    wy_worker_t *w = ud;
    pthread_mutex_lock(&w->mu);
    w->woken = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

static void worker_sync_init(wy_worker_t *w)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
}

static void worker_sync_destroy(wy_worker_t *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
}

static void *worker_main(void *arg)
{
    wy_worker_t *w = arg;
    w->pool->o.main(w);
    atomic_fetch_sub_explicit(&w->pool->running, 1, memory_order_release);
    return NULL;
}

int wy_workers_new(uv_loop_t *loop, const wy_workers_opts_t *o, wy_workers_t **out)
{
    if (!o || !o->main || o->count == 0 || o->count > WY_WORKERS_MAX)
        return WY_EINVAL;
    wy_workers_t *ws = wy_calloc(1, sizeof *ws);
    ws->o = *o;
    ws->name = wy_strdup(o->name ? o->name : "worker");
    ws->o.name = ws->name;
    atomic_init(&ws->stopping, 0);
    atomic_init(&ws->running, 0);
    wy_mailbox_opts_t lo = {.capacity = o->loop_capacity ? o->loop_capacity : DEFAULT_LOOP,
                            .ud = o->ud};
    int rc = wy_mailbox_new(loop, &lo, &ws->to_loop);
    if (rc != WY_OK) {
        wy_free(ws->name);
        wy_free(ws);
        return rc;
    }
    ws->w = wy_calloc(o->count, sizeof *ws->w);
    for (unsigned i = 0; i < o->count; i++) {
        wy_worker_t *w = &ws->w[i];
        w->pool = ws;
        w->index = i;
        wy_mailbox_opts_t io = {.capacity = o->inbox_capacity ? o->inbox_capacity : DEFAULT_INBOX,
                                .ud = w,
                                .wake = worker_wake};
        rc = wy_mailbox_new(NULL, &io, &w->inbox);
        if (rc == WY_OK)
            worker_sync_init(w);
        if (rc != WY_OK) {
            for (unsigned j = 0; j < i; j++) {
                wy_mailbox_close(ws->w[j].inbox, NULL, NULL);
                worker_sync_destroy(&ws->w[j]);
            }
            wy_mailbox_close(ws->to_loop, NULL, NULL); /* frees in its close callback */
            wy_free(ws->w);
            wy_free(ws->name);
            wy_free(ws);
            return rc;
        }
    }
    *out = ws;
    return WY_OK;
}

static void join_all(wy_workers_t *ws)
{
    for (unsigned i = 0; i < ws->o.count; i++) {
        wy_worker_t *w = &ws->w[i];
        if (w->started && !w->joined) {
            pthread_join(w->thread, NULL);
            w->joined = true;
        }
    }
}

int wy_workers_start(wy_workers_t *ws)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (unsigned i = 0; i < ws->o.count && rc == 0; i++) {
        wy_worker_t *w = &ws->w[i];
        atomic_fetch_add_explicit(&ws->running, 1, memory_order_relaxed);
        rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            atomic_fetch_sub_explicit(&ws->running, 1, memory_order_relaxed);
            break;
        }
        w->started = true;
        char tn[16];
        snprintf(tn, sizeof tn, "wy-%s-%u", ws->name, i);
        pthread_setname_np(w->thread, tn);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        wy_log_error("worker thread failed to start", "workers", ws->name, "error", strerror(rc),
                     NULL);
        wy_workers_stop(ws);
        join_all(ws);
        return WY_EINTERNAL;
    }
    return WY_OK;
}

void wy_workers_stop(wy_workers_t *ws)
{
    atomic_store_explicit(&ws->stopping, 1, memory_order_release);
    for (unsigned i = 0; i < ws->o.count; i++)
        worker_wake(&ws->w[i]);
}

bool wy_workers_running(const wy_workers_t *ws)
{
    wy_workers_t *m = (wy_workers_t *)ws; /* atomic loads need non-const */
    return atomic_load_explicit(&m->running, memory_order_acquire) != 0;
}

static void on_loop_mailbox_closed(void *arg)
{
    wy_workers_t *ws = arg;
    void (*done)(void *) = ws->done;
    void *done_arg = ws->done_arg;
    for (unsigned i = 0; i < ws->o.count; i++)
        worker_sync_destroy(&ws->w[i]);
    wy_free(ws->w);
    wy_free(ws->name);
    wy_free(ws);
    if (done)
        done(done_arg);
}

void wy_workers_close(wy_workers_t *ws, void (*done)(void *arg), void *arg)
{
    /* Asked to stop earlier (the daemon's drain) and still running: the
     * drain time is over, and the join below blocks the loop until they
     * return. */
    if (atomic_load_explicit(&ws->stopping, memory_order_acquire) && wy_workers_running(ws))
        wy_log_warn("waiting for worker threads to return", "workers", ws->name, NULL);
    wy_workers_stop(ws);
    join_all(ws);
    /* The workers are gone: this thread is now the only one touching the
     * mailboxes. What they posted is delivered (results are not lost to the
     * stop); what the loop sent them and they never read is canceled. */
    (void)wy_mailbox_poll(ws->to_loop);
    for (unsigned i = 0; i < ws->o.count; i++)
        wy_mailbox_close(ws->w[i].inbox, NULL, NULL);
    ws->done = done;
    ws->done_arg = arg;
    wy_mailbox_close(ws->to_loop, on_loop_mailbox_closed, ws);
}

unsigned wy_workers_count(const wy_workers_t *ws)
{
    return ws->o.count;
}

int wy_workers_send(wy_workers_t *ws, unsigned index, wy_mailbox_node_t *node, wy_mailbox_cb cb)
{
    if (index >= ws->o.count)
        return WY_EINVAL;
    return wy_mailbox_push(ws->w[index].inbox, node, cb);
}

size_t wy_worker_poll(wy_worker_t *w)
{
    return wy_mailbox_poll(w->inbox);
}

void wy_worker_wait(wy_worker_t *w, int64_t timeout_ms)
{
    struct timespec until;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)(timeout_ms / 1000);
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&w->mu);
    while (!w->woken && !wy_worker_stopping(w)) {
        if (timeout_ms < 0)
            pthread_cond_wait(&w->cond, &w->mu);
        else if (pthread_cond_timedwait(&w->cond, &w->mu, &until) != 0)
            break; /* timed out (or an error: the caller polls and waits again) */
    }
    w->woken = false;
    pthread_mutex_unlock(&w->mu);
}

int wy_worker_post(wy_worker_t *w, wy_mailbox_node_t *node, wy_mailbox_cb cb)
{
    return wy_mailbox_push(w->pool->to_loop, node, cb);
}

bool wy_worker_stopping(const wy_worker_t *w)
{
    return atomic_load_explicit(&w->pool->stopping, memory_order_acquire) != 0;
}

unsigned wy_worker_index(const wy_worker_t *w)
{
    return w->index;
}

void *wy_worker_ud(const wy_worker_t *w)
{
    return w->pool->o.ud;
}

wy_workers_t *wy_worker_pool(const wy_worker_t *w)
{
    return w->pool;
}

wy_mailbox_t *wy_workers_loop_mailbox(wy_workers_t *ws)
{
    return ws->to_loop;
}

wy_mailbox_t *wy_workers_inbox(wy_workers_t *ws, unsigned index)
{
    return index < ws->o.count ? ws->w[index].inbox : NULL;
}

/* ---------------------------------------------------------------- thread priority */

static int prio_one(const char *s, size_t len, wy_worker_prio_t *out)
{
    char tmp[24];
    if (len == 0 || len >= sizeof tmp)
        return WY_EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = 0;
    if (strcmp(tmp, "normal") == 0) {
        *out = (wy_worker_prio_t){WY_WORKER_PRIO_NORMAL, 0};
        return WY_OK;
    }
    char *colon = strchr(tmp, ':');
    if (!colon || colon[1] == 0)
        return WY_EINVAL;
    *colon = 0;
    char *end = NULL;
    errno = 0;
    long v = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != 0)
        return WY_EINVAL;
    if (strcmp(tmp, "rt") == 0 && v >= 1 && v <= 99)
        *out = (wy_worker_prio_t){WY_WORKER_PRIO_RT, (int)v};
    else if (strcmp(tmp, "nice") == 0 && v >= -20 && v <= 19)
        *out = (wy_worker_prio_t){WY_WORKER_PRIO_NICE, (int)v};
    else
        return WY_EINVAL;
    return WY_OK;
}

int wy_worker_prio_parse(const char *s, wy_worker_prio_spec_t *out, const char **err)
{
    memset(out, 0, sizeof *out);
    while (s && *s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (out->n == WY_WORKER_PRIO_CHOICES || prio_one(s, len, &out->choice[out->n]) != WY_OK) {
            *err = "expected up to 4 comma-separated choices: rt:N (1..99), nice:N (-20..19) "
                   "or normal";
            return WY_EINVAL;
        }
        out->n++;
        s = comma ? comma + 1 : NULL;
        if (s && *s == 0)
            out->n = 0; /* a trailing comma: refused below */
    }
    if (out->n == 0) {
        *err = "expected up to 4 comma-separated choices: rt:N (1..99), nice:N (-20..19) or "
               "normal";
        return WY_EINVAL;
    }
    return WY_OK;
}

static int prio_apply(const wy_worker_prio_t *p)
{
    switch (p->kind) {
    case WY_WORKER_PRIO_RT: {
        struct sched_param sp = {.sched_priority = p->value};
        return sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0 ? 0 : errno;
    }
    case WY_WORKER_PRIO_NICE:
        /* Linux: PRIO_PROCESS with a thread id sets that thread's nice value only. */
        return setpriority(PRIO_PROCESS, (id_t)gettid(), p->value) == 0 ? 0 : errno;
    case WY_WORKER_PRIO_NORMAL:
        break;
    }
    return 0;
}

int wy_worker_prio_raise(const wy_worker_prio_spec_t *spec, wy_worker_prio_t *got, const char **err)
{
    *got = (wy_worker_prio_t){WY_WORKER_PRIO_NORMAL, 0};
    int first = 0;
    for (unsigned i = 0; i < spec->n; i++) {
        int e = prio_apply(&spec->choice[i]);
        if (e == 0) {
            *got = spec->choice[i];
            if (i == 0)
                return WY_OK;
            break;
        }
        if (i == 0)
            first = e;
    }
    *err = strerror(first);
    return WY_EPERM;
}

void wy_worker_prio_lower(void)
{
    struct sched_param sp = {.sched_priority = 0};
    (void)sched_setscheduler(0, SCHED_OTHER | SCHED_RESET_ON_FORK, &sp);
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), 0);
}

const char *wy_worker_prio_name(const wy_worker_prio_t *p, char *buf, size_t cap)
{
    if (p->kind == WY_WORKER_PRIO_RT)
        snprintf(buf, cap, "rt:%d", p->value);
    else if (p->kind == WY_WORKER_PRIO_NICE)
        snprintf(buf, cap, "nice:%d", p->value);
    else
        snprintf(buf, cap, "normal");
    return buf;
}
