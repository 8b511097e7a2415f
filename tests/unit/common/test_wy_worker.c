/* Unit tests of wy_worker: messages go loop -> worker inbox -> back to the
 * loop; stop and close join the threads, deliver what they posted last and
 * cancel what they never read; bad options and indexes are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sched.h>
#include <stdatomic.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_stop_and_close),
        cmocka_unit_test(test_close_without_start_cancels_inbox),
        cmocka_unit_test(test_wait_wakes_on_push_and_stop),
        cmocka_unit_test(test_new_rejects_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
