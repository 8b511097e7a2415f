/* Unit tests of wy_worker: messages go loop -> worker inbox -> back to the
 * loop; stop and close join the threads, deliver what they posted last and
 * cancel what they never read; bad options and indexes are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "wy_worker.h"
#include "wy_test.h"

#define WORKERS 3
#define ROUNDS  200

typedef struct {
    wy_mailbox_node_t node;
    unsigned worker;
    unsigned value;
} num_t;

typedef struct {
    unsigned echoed[WORKERS]; /* loop: echoes received per worker */
    unsigned wrong_worker;
    unsigned byes;
    unsigned canceled;
} world_t;

static num_t *num(unsigned worker, unsigned value)
{
    num_t *n = wy_calloc(1, sizeof *n);
    n->worker = worker;
    n->value = value;
    return n;
}

/* Loop side. */
static void on_echo(wy_mailbox_node_t *node, void *ud, int status)
{
    world_t *w = ud;
    num_t *n = WY_CONTAINER_OF(node, num_t, node);
    if (status == WY_OK && n->worker < WORKERS)
        w->echoed[n->worker]++;
    else if (status == WY_OK)
        w->wrong_worker++;
    wy_free(n);
}

static void on_bye(wy_mailbox_node_t *node, void *ud, int status)
{
    world_t *w = ud;
    if (status == WY_OK)
        w->byes++;
    wy_free(WY_CONTAINER_OF(node, num_t, node));
}

/* Worker side: echo to the loop, tagged with the worker that read it. */
static void on_number(wy_mailbox_node_t *node, void *ud, int status)
{
    wy_worker_t *wk = ud;
    num_t *n = WY_CONTAINER_OF(node, num_t, node);
    if (status != WY_OK) {
        ((world_t *)wy_worker_ud(wk))->canceled++; /* at close, on the loop thread */
        wy_free(n);
        return;
    }
    if (n->worker != wy_worker_index(wk))
        n->worker = WORKERS; /* reported below */
    while (wy_worker_post(wk, &n->node, on_echo) == WY_EBUSY)
        sched_yield();
}

static void worker_main(wy_worker_t *wk)
{
    while (!wy_worker_stopping(wk)) {
        if (wy_worker_poll(wk) == 0)
            usleep(200);
    }
    num_t *n = num(wy_worker_index(wk), 0);
    if (wy_worker_post(wk, &n->node, on_bye) != WY_OK)
        wy_free(n);
}

static bool all_echoed(void *arg)
{
    const world_t *w = arg;
    for (unsigned i = 0; i < WORKERS; i++)
        if (w->echoed[i] < ROUNDS)
            return false;
    return true;
}

static void on_closed(void *arg)
{
    *(int *)arg = 1;
}

static void test_round_trip_stop_and_close(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    world_t w = {0};
    wy_workers_t *ws;
    wy_workers_opts_t o = {.name = "test",
                           .count = WORKERS,
                           .main = worker_main,
                           .inbox_capacity = 16,
                           .loop_capacity = 8,
                           .ud = &w};
    assert_int_equal(wy_workers_new(&loop, &o, &ws), WY_OK);
    assert_int_equal(wy_workers_count(ws), WORKERS);
    assert_false(wy_workers_running(ws));
    assert_int_equal(wy_workers_start(ws), WY_OK);
    assert_true(wy_workers_running(ws));

    /* The loop feeds every inbox, respecting back-pressure, and runs between
     * refusals so the echoes can drain. */
    for (unsigned r = 0; r < ROUNDS; r++) {
        for (unsigned i = 0; i < WORKERS; i++) {
            num_t *n = num(i, r);
            while (wy_workers_send(ws, i, &n->node, on_number) == WY_EBUSY)
                uv_run(&loop, UV_RUN_NOWAIT);
        }
    }
    wt_run_pred(&loop, all_echoed, &w, 60000, "every number echoed by its worker");
    assert_int_equal(w.wrong_worker, 0);
    for (unsigned i = 0; i < WORKERS; i++)
        assert_int_equal(w.echoed[i], ROUNDS);

    num_t bad = {0};
    assert_int_equal(wy_workers_send(ws, WORKERS, &bad.node, on_number), WY_EINVAL);
    assert_null(wy_workers_inbox(ws, WORKERS));

    int closed = 0;
    wy_workers_close(ws, on_closed, &closed); /* stops and joins */
    wt_loop_finish(&loop);
    assert_int_equal(closed, 1);
    /* The byes posted while stopping were delivered, not canceled. */
    assert_int_equal(w.byes, WORKERS);
}

/* Messages sent to workers that never ran are canceled at close. */
static void never_main(wy_worker_t *wk)
{
    (void)wk;
}

static void test_close_without_start_cancels_inbox(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    world_t w = {0};
    wy_workers_t *ws;
    wy_workers_opts_t o = {.count = 2, .main = never_main, .inbox_capacity = 1, .ud = &w};
    assert_int_equal(wy_workers_new(&loop, &o, &ws), WY_OK);
    num_t *a = num(0, 1), *b = num(1, 2);
    num_t c = {0};
    assert_int_equal(wy_workers_send(ws, 0, &a->node, on_number), WY_OK);
    assert_int_equal(wy_workers_send(ws, 1, &b->node, on_number), WY_OK);
    assert_int_equal(wy_workers_send(ws, 1, &c.node, on_number), WY_EBUSY); /* capacity 1 */
    int closed = 0;
    wy_workers_close(ws, on_closed, &closed);
    wt_loop_finish(&loop);
    assert_int_equal(closed, 1);
    assert_int_equal(w.canceled, 2);
}

/* Workers that sleep in wy_worker_wait between messages: a push to an empty inbox wakes them
 * (every number is echoed though no worker ever polls on its own), a timed wait returns by
 * itself, and the stop wakes a worker asleep without a timeout (close joins it). */
static atomic_uint timed_out, waited;

static void waiting_main(wy_worker_t *wk)
{
    if (wy_worker_index(wk) == 0) { /* nothing sent yet: the wait times out */
        uint64_t t0 = wy_now_ms();
        wy_worker_wait(wk, 20);
        if (wy_now_ms() - t0 >= 15)
            atomic_fetch_add(&timed_out, 1);
        atomic_store(&waited, 1);
    }
    while (!wy_worker_stopping(wk))
        if (wy_worker_poll(wk) == 0)
            wy_worker_wait(wk, -1);
    num_t *n = num(wy_worker_index(wk), 0);
    if (wy_worker_post(wk, &n->node, on_bye) != WY_OK)
        wy_free(n);
}

static void test_wait_wakes_on_push_and_stop(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    world_t w = {0};
    wy_workers_t *ws;
    wy_workers_opts_t o = {.name = "wait",
                           .count = WORKERS,
                           .main = waiting_main,
                           .inbox_capacity = 4,
                           .loop_capacity = 8,
                           .ud = &w};
    assert_int_equal(wy_workers_new(&loop, &o, &ws), WY_OK);
    assert_int_equal(wy_workers_start(ws), WY_OK);
    for (uint64_t end = wy_now_ms() + 60000; !atomic_load(&waited) && wy_now_ms() < end;)
        usleep(1000); /* no loop event marks it: the worker only sets a flag */
    assert_true(atomic_load(&waited));
    /* One at a time with a pause, so most pushes find the inbox empty and the worker asleep. */
    for (unsigned r = 0; r < ROUNDS; r++) {
        for (unsigned i = 0; i < WORKERS; i++) {
            num_t *n = num(i, r);
            while (wy_workers_send(ws, i, &n->node, on_number) == WY_EBUSY)
                uv_run(&loop, UV_RUN_NOWAIT);
        }
        if (r % 20 == 0)
            usleep(2000);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    wt_run_pred(&loop, all_echoed, &w, 60000, "every number echoed by a sleeping worker");
    assert_int_equal(w.wrong_worker, 0);
    int closed = 0;
    wy_workers_close(ws, on_closed, &closed); /* the stop wakes them: the join returns */
    wt_loop_finish(&loop);
    assert_int_equal(closed, 1);
    assert_int_equal(w.byes, WORKERS);
    assert_int_equal(atomic_load(&timed_out), 1);
}

static void test_new_rejects_bad_options(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    wy_workers_t *ws = NULL;
    assert_int_equal(wy_workers_new(&loop, &(wy_workers_opts_t){.count = 1}, &ws), WY_EINVAL);
    assert_int_equal(
        wy_workers_new(&loop, &(wy_workers_opts_t){.count = 0, .main = never_main}, &ws),
        WY_EINVAL);
    assert_int_equal(
        wy_workers_new(&loop, &(wy_workers_opts_t){.count = WY_WORKERS_MAX + 1, .main = never_main},
                       &ws),
        WY_EINVAL);
    assert_null(ws);
    wt_loop_finish(&loop);
}

static void test_prio_parse(void **state)
{
    (void)state;
    wy_worker_prio_spec_t sp;
    const char *err = NULL;
    assert_int_equal(wy_worker_prio_parse("rt:10,nice:-10", &sp, &err), WY_OK);
    assert_int_equal(sp.n, 2);
    assert_int_equal(sp.choice[0].kind, WY_WORKER_PRIO_RT);
    assert_int_equal(sp.choice[0].value, 10);
    assert_int_equal(sp.choice[1].kind, WY_WORKER_PRIO_NICE);
    assert_int_equal(sp.choice[1].value, -10);
    assert_int_equal(wy_worker_prio_parse("normal", &sp, &err), WY_OK);
    assert_int_equal(sp.n, 1);
    assert_int_equal(sp.choice[0].kind, WY_WORKER_PRIO_NORMAL);
    assert_int_equal(wy_worker_prio_parse("rt:99,rt:1,nice:19,normal", &sp, &err), WY_OK);
    assert_int_equal(sp.n, 4);
    char buf[24];
    assert_string_equal(wy_worker_prio_name(&sp.choice[0], buf, sizeof buf), "rt:99");
    assert_string_equal(wy_worker_prio_name(&sp.choice[2], buf, sizeof buf), "nice:19");
    assert_string_equal(wy_worker_prio_name(&sp.choice[3], buf, sizeof buf), "normal");
    static const char *const bad[] = {
        "",        "rt:0",
        "rt:100",  "nice:-21",
        "nice:20", "rt:",
        "rt",      "fifo:5",
        "rt:5,",   ",rt:5",
        "rt:5x",   "NORMAL",
        "nice:+",  "rt:10,nice:-10,rt:5,normal,nice:1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        assert_int_equal(wy_worker_prio_parse(bad[i], &sp, &err), WY_EINVAL);
        assert_non_null(err);
    }
}

/* What the kernel says the calling thread runs at, in the terms of wy_worker_prio_t. */
static wy_worker_prio_t prio_now(void)
{
    int pol = sched_getscheduler(0) & ~SCHED_RESET_ON_FORK;
    if (pol == SCHED_FIFO) {
        struct sched_param p;
        sched_getparam(0, &p);
        return (wy_worker_prio_t){WY_WORKER_PRIO_RT, p.sched_priority};
    }
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)gettid());
    return nice ? (wy_worker_prio_t){WY_WORKER_PRIO_NICE, nice}
                : (wy_worker_prio_t){WY_WORKER_PRIO_NORMAL, 0};
}

typedef struct {
    wy_worker_prio_spec_t spec;
    int rc;
    wy_worker_prio_t got, seen, lowered;
} prio_run_t;

/* On a thread of its own (the test's thread keeps its priority); no assertion here: cmocka's
 * jump out of a failed one must happen on the test's thread. */
static void *prio_thread(void *arg)
{
    prio_run_t *r = arg;
    const char *err = NULL;
    r->rc = wy_worker_prio_raise(&r->spec, &r->got, &err);
    r->seen = prio_now();
    wy_worker_prio_lower();
    r->lowered = prio_now();
    return NULL;
}

static prio_run_t prio_run(const char *spec)
{
    prio_run_t r = {0};
    const char *err = NULL;
    assert_int_equal(wy_worker_prio_parse(spec, &r.spec, &err), WY_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, prio_thread, &r), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    return r;
}

static void test_prio_raise_and_lower(void **state)
{
    (void)state;
    wy_worker_prio_t main0 = prio_now();
    /* A higher nice value (a lower priority) is always permitted, for that thread only. */
    prio_run_t r = prio_run("nice:7");
    assert_int_equal(r.rc, WY_OK);
    assert_int_equal(r.got.kind, WY_WORKER_PRIO_NICE);
    assert_int_equal(r.got.value, 7);
    assert_int_equal(r.seen.kind, WY_WORKER_PRIO_NICE);
    assert_int_equal(r.seen.value, 7);
    assert_int_equal(r.lowered.kind, WY_WORKER_PRIO_NORMAL);
    /* Real time first: given with CAP_SYS_NICE (the test tiers run as root), else the fall-back
     * (nice:9, always permitted) and WY_EPERM. Either way the thread runs at what `got` says. */
    r = prio_run("rt:3,nice:9");
    if (r.rc == WY_OK) {
        assert_int_equal(r.got.kind, WY_WORKER_PRIO_RT);
        assert_int_equal(r.got.value, 3);
    } else {
        assert_int_equal(r.rc, WY_EPERM);
        assert_int_equal(r.got.kind, WY_WORKER_PRIO_NICE);
        assert_int_equal(r.got.value, 9);
    }
    assert_int_equal(r.seen.kind, r.got.kind);
    assert_int_equal(r.seen.value, r.got.value);
    assert_int_equal(r.lowered.kind, WY_WORKER_PRIO_NORMAL);
    wy_worker_prio_t main1 = prio_now();
    assert_int_equal(main1.kind, main0.kind);
    assert_int_equal(main1.value, main0.value);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_stop_and_close),
        cmocka_unit_test(test_close_without_start_cancels_inbox),
        cmocka_unit_test(test_wait_wakes_on_push_and_stop),
        cmocka_unit_test(test_new_rejects_bad_options),
        cmocka_unit_test(test_prio_parse),
        cmocka_unit_test(test_prio_raise_and_lower),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
