/* Unit tests for wy_list: linking, unlinking (twice is harmless), order, splice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "wy_list.h"

typedef struct {
    int v;
    wy_list_t node;
} item_t;

/* The values of h in order, written to out; returns how many. */
static int values(wy_list_t *h, int *out, int max)
{
    int n = 0;
    wy_list_t *pos;
    wy_list_foreach(pos, h)
    {
        if (n < max)
            out[n] = wy_container_of(pos, item_t, node)->v;
        n++;
    }
    return n;
}

static void test_push_remove_order(void **state)
{
    (void)state;
    wy_list_t h;
    wy_list_init(&h);
    assert_true(wy_list_empty(&h));
    assert_null(wy_list_first(&h));
    item_t it[4] = {{1, {0}}, {2, {0}}, {3, {0}}, {4, {0}}};
    assert_false(wy_list_linked(&it[0].node));
    wy_list_push_back(&h, &it[1].node);
    wy_list_push_back(&h, &it[2].node);
    wy_list_push_front(&h, &it[0].node);
    wy_list_push_back(&h, &it[3].node);
    int got[8];
    assert_int_equal(values(&h, got, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(got[i], i + 1);
    wy_list_remove(&it[1].node);
    assert_false(wy_list_linked(&it[1].node));
    wy_list_remove(&it[1].node); /* twice: no effect */
    assert_int_equal(values(&h, got, 8), 3);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 3);
    assert_int_equal(got[2], 4);
    assert_ptr_equal(wy_list_entry(wy_list_last(&h), item_t, node), &it[3]);
    assert_ptr_equal(wy_list_entry(wy_list_pop_front(&h), item_t, node), &it[0]);
    assert_int_equal(values(&h, got, 8), 2);
}

static void test_foreach_safe_frees(void **state)
{
    (void)state;
    wy_list_t h;
    wy_list_init(&h);
    item_t it[5];
    for (int i = 0; i < 5; i++) {
        it[i] = (item_t){.v = i};
        wy_list_push_back(&h, &it[i].node);
    }
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &h)
    {
        if (wy_container_of(pos, item_t, node)->v % 2 == 0)
            wy_list_remove(pos);
    }
    int got[8];
    assert_int_equal(values(&h, got, 8), 2);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 3);
}

static void test_splice(void **state)
{
    (void)state;
    wy_list_t a, b;
    wy_list_init(&a);
    wy_list_init(&b);
    item_t it[4] = {{1, {0}}, {2, {0}}, {3, {0}}, {4, {0}}};
    wy_list_push_back(&a, &it[0].node);
    wy_list_push_back(&b, &it[1].node);
    wy_list_push_back(&b, &it[2].node);
    wy_list_splice_back(&a, &b);
    assert_true(wy_list_empty(&b));
    wy_list_splice_back(&a, &b); /* empty source: no change */
    wy_list_push_back(&a, &it[3].node);
    int got[8];
    assert_int_equal(values(&a, got, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(got[i], i + 1);
    /* b is usable again after the splice */
    wy_list_remove(&it[3].node);
    wy_list_push_back(&b, &it[3].node);
    assert_int_equal(values(&b, got, 8), 1);
    assert_int_equal(values(&a, got, 8), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_remove_order),
        cmocka_unit_test(test_foreach_safe_frees),
        cmocka_unit_test(test_splice),
    };
    return cmocka_run_group_tests_name("wy_list", tests, NULL, NULL);
}
