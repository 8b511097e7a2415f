/* Unit tests of wy_mailbox: order and counters on a poll mailbox, back-pressure
 * when full, close semantics, and multi-producer stress into a loop consumer
 * and into a plain-thread consumer woken by the wake callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sched.h>
#include <time.h>

#include "wy_mailbox.h"
#include "wy_test.h"

typedef struct {
    wy_mailbox_node_t node;
    unsigned producer;
    unsigned seq;
    int status; /* status of its callback; 1 = not run yet */
    int runs;
} msg_t;

typedef struct {
    unsigned got[16];
    unsigned order[64];
    unsigned n;
    unsigned canceled;
} log_t;

static void on_msg(wy_mailbox_node_t *node, void *ud, int status)
{
    msg_t *m = WY_CONTAINER_OF(node, msg_t, node);
    log_t *l = ud;
    m->status = status;
    m->runs++;
    if (status == WY_OK && l->n < WY_ARRAY_LEN(l->order))
        l->order[l->n++] = m->seq;
    if (status == WY_ECANCELED)
        l->canceled++;
}

static void init_msgs(msg_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        m[i] = (msg_t){.seq = (unsigned)i, .status = 1};
}

static void test_poll_delivers_in_order_and_counts(void **state)
{
    (void)state;
    log_t l = {0};
    wy_mailbox_t *mb;
    assert_int_equal(wy_mailbox_new(NULL, &(wy_mailbox_opts_t){.capacity = 8, .ud = &l}, &mb),
                     WY_OK);
    assert_int_equal(wy_mailbox_poll(mb), 0);
    msg_t m[5];
    init_msgs(m, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(wy_mailbox_push(mb, &m[i].node, on_msg), WY_OK);
    wy_mailbox_stats_t st;
    wy_mailbox_stats(mb, &st);
    assert_int_equal(st.queued, 5);
    assert_int_equal(st.pushed, 5);
    assert_int_equal(st.delivered, 0);
    assert_int_equal(m[0].runs, 0); /* nothing runs before the consumer polls */

    assert_int_equal(wy_mailbox_poll(mb), 5);
    assert_int_equal(l.n, 5);
    for (unsigned i = 0; i < 5; i++) {
        assert_int_equal(l.order[i], i);
        assert_int_equal(m[i].status, WY_OK);
        assert_int_equal(m[i].runs, 1);
    }
    wy_mailbox_stats(mb, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.delivered, 5);
    assert_int_equal(st.high_water, 5);
    assert_int_equal(st.capacity, 8);
    assert_int_equal(wy_mailbox_poll(mb), 0);
    wy_mailbox_close(mb, NULL, NULL);
}

static void test_full_mailbox_refuses_and_producer_keeps_message(void **state)
{
    (void)state;
    log_t l = {0};
    wy_mailbox_t *mb;
    assert_int_equal(wy_mailbox_new(NULL, &(wy_mailbox_opts_t){.capacity = 3, .ud = &l}, &mb),
                     WY_OK);
    msg_t m[6];
    init_msgs(m, 6);
    for (int i = 0; i < 3; i++)
        assert_int_equal(wy_mailbox_push(mb, &m[i].node, on_msg), WY_OK);
    assert_int_equal(wy_mailbox_push(mb, &m[3].node, on_msg), WY_EBUSY);
    assert_int_equal(wy_mailbox_push(mb, &m[3].node, on_msg), WY_EBUSY);
    wy_mailbox_stats_t st;
    wy_mailbox_stats(mb, &st);
    assert_int_equal(st.refused, 2);
    assert_int_equal(st.pushed, 3);
    assert_int_equal(st.high_water, 3);

    /* A control message still gets through, beyond the capacity. */
    assert_int_equal(wy_mailbox_push_always(mb, &m[4].node, on_msg), WY_OK);
    wy_mailbox_stats(mb, &st);
    assert_int_equal(st.queued, 4);
    assert_int_equal(st.high_water, 4);

    /* The refused message was never queued: its callback does not run. */
    assert_int_equal(wy_mailbox_poll(mb), 4);
    assert_int_equal(m[3].runs, 0);
    assert_int_equal(l.order[3], 4);
    /* Room again: the producer retries and it goes through. */
    assert_int_equal(wy_mailbox_push(mb, &m[3].node, on_msg), WY_OK);
    assert_int_equal(wy_mailbox_poll(mb), 1);
    assert_int_equal(m[3].runs, 1);
    wy_mailbox_close(mb, NULL, NULL);
}

static void on_done(void *arg)
{
    (*(int *)arg)++;
}

static void test_close_cancels_queued_messages(void **state)
{
    (void)state;
    log_t l = {0};
    wy_mailbox_t *mb;
    assert_int_equal(wy_mailbox_new(NULL, &(wy_mailbox_opts_t){.capacity = 4, .ud = &l}, &mb),
                     WY_OK);
    msg_t m[3];
    init_msgs(m, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(wy_mailbox_push(mb, &m[i].node, on_msg), WY_OK);
    int done = 0;
    wy_mailbox_close(mb, on_done, &done);
    assert_int_equal(done, 1);
    assert_int_equal(l.canceled, 3);
    assert_int_equal(l.n, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m[i].status, WY_ECANCELED);
        assert_int_equal(m[i].runs, 1);
    }
}

static void test_loop_close_refuses_pushes_and_cancels(void **state)
{
    (void)state;
    wt_loop_t lp;
    wt_loop_init(&lp, 10000);
    log_t l = {0};
    wy_mailbox_t *mb;
    assert_int_equal(wy_mailbox_new(&lp.loop, &(wy_mailbox_opts_t){.capacity = 4, .ud = &l}, &mb),
                     WY_OK);
    msg_t m[3];
    init_msgs(m, 3);
    assert_int_equal(wy_mailbox_push(mb, &m[0].node, on_msg), WY_OK);
    WT_RUN_UNTIL(&lp, l.n == 1); /* delivered by the uv_async */
    assert_int_equal(wy_mailbox_push(mb, &m[1].node, on_msg), WY_OK);
    int done = 0;
    wy_mailbox_close(mb, on_done, &done);
    /* Closing: a late push is refused and stays with the caller. */
    assert_int_equal(wy_mailbox_push(mb, &m[2].node, on_msg), WY_ECANCELED);
    assert_int_equal(done, 0);
    WT_RUN_UNTIL(&lp, done == 1);
    assert_int_equal(m[0].status, WY_OK);
    assert_int_equal(m[1].status, WY_ECANCELED);
    assert_int_equal(m[2].runs, 0);
    wt_loop_done(&lp);
}

/* A loop mailbox closed by one of its own callbacks (wy_grpc's last hop does
 * this): the rest of that batch is still delivered, then it is freed. */
typedef struct {
    wy_mailbox_t *mb;
    log_t log;
    int done;
} closer_t;

static void on_closing_msg(wy_mailbox_node_t *node, void *ud, int status)
{
    closer_t *c = ud;
    on_msg(node, &c->log, status);
    if (WY_CONTAINER_OF(node, msg_t, node)->seq == 0)
        wy_mailbox_close(c->mb, on_done, &c->done);
}

static void test_loop_close_from_own_callback(void **state)
{
    (void)state;
    wt_loop_t lp;
    wt_loop_init(&lp, 10000);
    closer_t c = {0};
    assert_int_equal(wy_mailbox_new(&lp.loop, &(wy_mailbox_opts_t){.capacity = 4, .ud = &c}, &c.mb),
                     WY_OK);
    msg_t m[2];
    init_msgs(m, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(wy_mailbox_push(c.mb, &m[i].node, on_closing_msg), WY_OK);
    WT_RUN_UNTIL(&lp, c.done == 1);
    assert_int_equal(m[0].status, WY_OK);
    assert_int_equal(m[1].status, WY_OK);
    assert_int_equal(c.log.n, 2);
    wt_loop_done(&lp);
}

static void test_new_rejects_bad_capacity(void **state)
{
    (void)state;
    wy_mailbox_t *mb = NULL;
    assert_int_equal(wy_mailbox_new(NULL, &(wy_mailbox_opts_t){.capacity = 0}, &mb), WY_EINVAL);
    assert_int_equal(
        wy_mailbox_new(NULL, &(wy_mailbox_opts_t){.capacity = WY_MAILBOX_MAX_CAPACITY + 1}, &mb),
        WY_EINVAL);
    assert_null(mb);
}

/* ---------------------------------------------------------------- stress */

#define PRODUCERS    4
#define PER_PRODUCER 20000

typedef struct stress stress_t;
typedef struct {
    stress_t *s;
    unsigned id;
    pthread_t th;
    msg_t *msgs;
    uint64_t refused; /* WY_EBUSY answers this producer saw */
    int bad_rc;       /* any other answer (cmocka cannot assert off the test thread) */
} producer_t;

struct stress {
    wy_mailbox_t *mb;
    producer_t p[PRODUCERS];
    unsigned next_seq[PRODUCERS]; /* consumer: next expected seq per producer */
    unsigned delivered;
    unsigned out_of_order;
    unsigned twice;
    /* Plain-thread consumer: woken by the mailbox's wake callback. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool woken;
};

static void on_stress_msg(wy_mailbox_node_t *node, void *ud, int status)
{
    stress_t *s = ud;
    msg_t *m = WY_CONTAINER_OF(node, msg_t, node);
    assert_int_equal(status, WY_OK);
    if (m->runs++)
        s->twice++;
    if (m->seq != s->next_seq[m->producer])
        s->out_of_order++;
    s->next_seq[m->producer] = m->seq + 1;
    s->delivered++;
}

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    for (unsigned i = 0; i < PER_PRODUCER; i++) {
        msg_t *m = &p->msgs[i];
        int rc;
        /* Back-pressure: told the mailbox is full, the producer waits its turn. */
        while ((rc = wy_mailbox_push(p->s->mb, &m->node, on_stress_msg)) == WY_EBUSY) {
            p->refused++;
            sched_yield();
        }
        if (rc != WY_OK)
            p->bad_rc = rc;
    }
    return NULL;
}

static void start_producers(stress_t *s)
{
    for (unsigned i = 0; i < PRODUCERS; i++) {
        producer_t *p = &s->p[i];
        p->s = s;
        p->id = i;
        p->msgs = wy_calloc(PER_PRODUCER, sizeof *p->msgs);
        for (unsigned j = 0; j < PER_PRODUCER; j++)
            p->msgs[j] = (msg_t){.producer = i, .seq = j};
        assert_int_equal(pthread_create(&p->th, NULL, producer_main, p), 0);
    }
}

static void check_stress(stress_t *s)
{
    uint64_t refused = 0;
    for (unsigned i = 0; i < PRODUCERS; i++) {
        assert_int_equal(pthread_join(s->p[i].th, NULL), 0);
        refused += s->p[i].refused;
        assert_int_equal(s->p[i].bad_rc, WY_OK);
    }
    assert_int_equal(s->delivered, PRODUCERS * PER_PRODUCER);
    assert_int_equal(s->twice, 0);
    assert_int_equal(s->out_of_order, 0);
    for (unsigned i = 0; i < PRODUCERS; i++) {
        assert_int_equal(s->next_seq[i], PER_PRODUCER);
        for (unsigned j = 0; j < PER_PRODUCER; j++)
            assert_int_equal(s->p[i].msgs[j].runs, 1);
        wy_free(s->p[i].msgs);
    }
    wy_mailbox_stats_t st;
    wy_mailbox_stats(s->mb, &st);
    assert_int_equal(st.pushed, PRODUCERS * PER_PRODUCER);
    assert_int_equal(st.delivered, PRODUCERS * PER_PRODUCER);
    assert_int_equal(st.refused, refused);
    assert_int_equal(st.queued, 0);
    assert_true(st.high_water <= st.capacity);
}

static bool stress_done(void *arg)
{
    const stress_t *s = arg;
    return s->delivered == PRODUCERS * PER_PRODUCER;
}

static void test_stress_producers_into_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    static stress_t s;
    memset(&s, 0, sizeof s);
    /* A small capacity so the producers meet back-pressure. */
    assert_int_equal(wy_mailbox_new(&loop, &(wy_mailbox_opts_t){.capacity = 64, .ud = &s}, &s.mb),
                     WY_OK);
    start_producers(&s);
    wt_run_pred(&loop, stress_done, &s, 120000, "every message delivered");
    check_stress(&s);
    int done = 0;
    wy_mailbox_close(s.mb, on_done, &done);
    wt_loop_finish(&loop);
    assert_int_equal(done, 1);
}

static void on_wake(void *ud)
{
    stress_t *s = ud;
    pthread_mutex_lock(&s->mu);
    s->woken = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

static void test_stress_producers_into_thread(void **state)
{
    (void)state;
    static stress_t s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cond, NULL);
    assert_int_equal(wy_mailbox_new(NULL,
                                    &(wy_mailbox_opts_t){.capacity = 64, .ud = &s, .wake = on_wake},
                                    &s.mb),
                     WY_OK);
    start_producers(&s);
    /* This thread is the consumer: it sleeps until woken, then drains. A wake-up
     * lost while messages wait would leave it asleep: the bounded wait below
     * turns that into a failure instead of a hang. */
    while (!stress_done(&s)) {
        pthread_mutex_lock(&s.mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 30;
        int rc = 0;
        while (!s.woken && rc == 0)
            rc = pthread_cond_timedwait(&s.cond, &s.mu, &until);
        if (!s.woken)
            fail_msg("consumer not woken within 30 s with %u of %u delivered", s.delivered,
                     PRODUCERS * PER_PRODUCER);
        s.woken = false;
        pthread_mutex_unlock(&s.mu);
        wy_mailbox_poll(s.mb);
    }
    check_stress(&s);
    wy_mailbox_close(s.mb, NULL, NULL);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.mu);
}

/* A callback that pushes to its own mailbox: the new message waits for the
 * next batch, so a self-feeding consumer cannot spin inside one drain. */
typedef struct {
    wy_mailbox_t *mb;
    msg_t again;
    unsigned runs;
} self_t;

static void on_self(wy_mailbox_node_t *node, void *ud, int status)
{
    self_t *s = ud;
    (void)node;
    assert_int_equal(status, WY_OK);
    if (s->runs++ == 0)
        assert_int_equal(wy_mailbox_push(s->mb, &s->again.node, on_self), WY_OK);
}

static void test_push_from_callback_goes_to_next_batch(void **state)
{
    (void)state;
    self_t s = {0};
    msg_t first = {0};
    assert_int_equal(wy_mailbox_new(NULL, &(wy_mailbox_opts_t){.capacity = 2, .ud = &s}, &s.mb),
                     WY_OK);
    assert_int_equal(wy_mailbox_push(s.mb, &first.node, on_self), WY_OK);
    assert_int_equal(wy_mailbox_poll(s.mb), 1);
    assert_int_equal(s.runs, 1);
    assert_int_equal(wy_mailbox_poll(s.mb), 1);
    assert_int_equal(s.runs, 2);
    wy_mailbox_close(s.mb, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poll_delivers_in_order_and_counts),
        cmocka_unit_test(test_full_mailbox_refuses_and_producer_keeps_message),
        cmocka_unit_test(test_close_cancels_queued_messages),
        cmocka_unit_test(test_loop_close_refuses_pushes_and_cancels),
        cmocka_unit_test(test_loop_close_from_own_callback),
        cmocka_unit_test(test_new_rejects_bad_capacity),
        cmocka_unit_test(test_push_from_callback_goes_to_next_batch),
        cmocka_unit_test(test_stress_producers_into_loop),
        cmocka_unit_test(test_stress_producers_into_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
