/* Unit tests for wy-auth's group commit queue (services/auth/batch.c) without a database:
 * array parameters quote any text, the queue is bounded, and every queued item is answered
 * exactly once, in order, when its statement cannot run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/auth/batch.c"

/* auth.c's, for the test: a pool that is there (a dummy never used) or closed (NULL). */
static bool pool_open;
wy_pg_t *auth_pg(auth_t *a)
{
    (void)a;
    return pool_open ? (wy_pg_t *)&pool_open : NULL;
}

static const wy_pg_stmt_t st = {"test_batch", "SELECT 1", 2};

typedef struct {
    int calls[8];
    int status[8];
    int row[8];
    int order[8], n;
} seen_t;

static seen_t seen;

static void on_item(int status, const PGresult *res, int row, const char *err, void *ud)
{
    (void)res;
    (void)err;
    int i = (int)(intptr_t)ud;
    seen.calls[i]++;
    seen.status[i] = status;
    seen.row[i] = row;
    if (seen.n < 8)
        seen.order[seen.n] = i;
    seen.n++;
}

static void test_array_literal_quotes_any_text(void **state)
{
    (void)state;
    run_t r = {0};
    wy_list_init(&r.items);
    const char *vals[] = {"a\"b", "c\\d", "e,f", "{}", ""};
    item_t *its[5];
    for (int i = 0; i < 5; i++) {
        its[i] = wy_calloc(1, sizeof(item_t) + sizeof(char *));
        its[i]->cols[0] = (char *)vals[i];
        wy_list_push_back(&r.items, &its[i]->link);
    }
    char *lit = array_literal(&r, 0);
    assert_string_equal(lit, "{\"a\\\"b\",\"c\\\\d\",\"e,f\",\"{}\",\"\"}");
    wy_free(lit);
    for (int i = 0; i < 5; i++)
        wy_free(its[i]);
}

/* A batcher on a loop of its own, its pool open, nothing seen yet. */
static auth_batch_t *batcher(uv_loop_t *loop, auth_t *a)
{
    uv_loop_init(loop);
    memset(a, 0, sizeof *a);
    a->loop = loop;
    memset(&seen, 0, sizeof seen);
    pool_open = true;
    return auth_batch_new(a, "test", &st, 2, 0, NULL, true);
}

/* Frees b and checks that its handles close with the loop. */
static void batcher_free(uv_loop_t *loop, auth_batch_t *b)
{
    auth_batch_free(b);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_items_answered_once_in_order_when_the_pool_closed(void **state)
{
    (void)state;
    uv_loop_t loop;
    auth_t a;
    auth_batch_t *b = batcher(&loop, &a);
    for (int i = 0; i < 3; i++) {
        const char *cols[] = {"x", "y"};
        assert_int_equal(auth_batch_add(b, cols, on_item, (void *)(intptr_t)i), WY_OK);
    }
    assert_int_equal(seen.n, 0); /* never from inside auth_batch_add */
    assert_int_equal(auth_batch_depth(b), 3);
    pool_open = false; /* the statement cannot run: every item gets WY_EUNAVAIL */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(seen.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(seen.calls[i], 1);
        assert_int_equal(seen.status[i], WY_EUNAVAIL);
        assert_int_equal(seen.row[i], -1);
        assert_int_equal(seen.order[i], i);
    }
    assert_int_equal(auth_batch_depth(b), 0);
    const char *cols[] = {"x", "y"};
    assert_int_equal(auth_batch_add(b, cols, on_item, NULL), WY_EUNAVAIL); /* closed pool */
    batcher_free(&loop, b);
}

static void test_queue_is_bounded(void **state)
{
    (void)state;
    uv_loop_t loop;
    auth_t a;
    auth_batch_t *b = batcher(&loop, &a);
    const char *cols[] = {"x", "y"};
    for (int i = 0; i < AUTH_BATCH_QUEUE; i++)
        assert_int_equal(auth_batch_add(b, cols, on_item, (void *)(intptr_t)0), WY_OK);
    assert_int_equal(auth_batch_add(b, cols, on_item, NULL), WY_EBUSY);
    memset(&seen, 0, sizeof seen);
    pool_open = false;
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(seen.calls[0], AUTH_BATCH_QUEUE);
    batcher_free(&loop, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_literal_quotes_any_text),
        cmocka_unit_test(test_items_answered_once_in_order_when_the_pool_closed),
        cmocka_unit_test(test_queue_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
