/* Unit tests of C11 <threads.h> as our libraries use it: librdkafka starts its
 * threads with thrd_create and hands work over with mtx/cnd. In the
 * ThreadSanitizer build (tsan tier) these run on tests/tsan/c11_threads.c;
 * without it a thread started by thrd_create crashed at its first malloc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <time.h>

typedef struct {
    mtx_t mu;
    cnd_t cv;
    int value; /* written by the thread under mu */
    int done;
} shared_t;

static int worker(void *p)
{
    shared_t *s = p;
    int *heap = malloc(64 * sizeof *heap); /* the first malloc of a new thread */
    for (int i = 0; i < 64; i++)
        heap[i] = i;
    int sum = 0;
    for (int i = 0; i < 64; i++)
        sum += heap[i];
    free(heap);
    mtx_lock(&s->mu);
    s->value = sum;
    s->done = 1;
    cnd_signal(&s->cv);
    mtx_unlock(&s->mu);
    return 42;
}

static void test_thread_runs_signals_and_joins(void **state)
{
    (void)state;
    shared_t s = {.value = 0};
    assert_int_equal(mtx_init(&s.mu, mtx_plain), thrd_success);
    assert_int_equal(cnd_init(&s.cv), thrd_success);
    thrd_t t;
    assert_int_equal(thrd_create(&t, worker, &s), thrd_success);
    mtx_lock(&s.mu);
    while (!s.done)
        cnd_wait(&s.cv, &s.mu);
    int v = s.value;
    mtx_unlock(&s.mu);
    assert_int_equal(v, 64 * 63 / 2);
    int res = 0;
    assert_int_equal(thrd_join(t, &res), thrd_success);
    assert_int_equal(res, 42);
    cnd_destroy(&s.cv);
    mtx_destroy(&s.mu);
}

static void test_recursive_mutex_and_timedwait(void **state)
{
    (void)state;
    mtx_t mu;
    cnd_t cv;
    assert_int_equal(mtx_init(&mu, mtx_plain | mtx_recursive), thrd_success);
    assert_int_equal(cnd_init(&cv), thrd_success);
    assert_int_equal(mtx_lock(&mu), thrd_success);
    assert_int_equal(mtx_lock(&mu), thrd_success); /* recursive */
    assert_int_equal(mtx_unlock(&mu), thrd_success);
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    ts.tv_nsec += 1000000; /* 1 ms from now: nobody signals */
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    assert_int_equal(cnd_timedwait(&cv, &mu, &ts), thrd_timedout);
    assert_int_equal(mtx_unlock(&mu), thrd_success);
    cnd_destroy(&cv);
    mtx_destroy(&mu);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)err;
    (void)reason;
    *(int *)opaque = 1;
}

/* librdkafka's broker thread resolves the broker (getaddrinfo, which
 * allocates) on its own thread: it must run to its connect error. */
static void test_rdkafka_threads_start(void **state)
{
    (void)state;
    char errstr[256];
    int failed = 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(
        rd_kafka_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", errstr, sizeof errstr),
        RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, &failed);
    rd_kafka_conf_set_log_cb(conf, NULL);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    for (int i = 0; i < 300 && !failed; i++) /* up to 30 s on a loaded machine */
        rd_kafka_poll(rk, 100);
    assert_true(failed); /* connection refused, seen by the broker thread */
    rd_kafka_destroy(rk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_runs_signals_and_joins),
        cmocka_unit_test(test_recursive_mutex_and_timedwait),
        cmocka_unit_test(test_rdkafka_threads_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
