/* Unit tests for wy_seen: duplicate detection and the FIFO eviction bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "wy_seen.h"

/* One id and the answer wanted for it; lists end with {NULL, false}. */
typedef struct {
    const char *id;
    bool want;
} seen_case_t;

/* wy_seen_check_add on each id in order, which must return want (true: already seen). */
static void expect_adds(wy_seen_t *s, const seen_case_t *c)
{
    for (; c->id; c++)
        if (wy_seen_check_add(s, c->id) != c->want)
            fail_msg("check_add(\"%s\") should return %s", c->id, c->want ? "true" : "false");
}

/* wy_seen_contains on each id, which must return want. */
static void expect_contains(wy_seen_t *s, const seen_case_t *c)
{
    for (; c->id; c++)
        if (wy_seen_contains(s, c->id) != c->want)
            fail_msg("contains(\"%s\") should return %s", c->id, c->want ? "true" : "false");
}

static void test_duplicates_detected(void **state)
{
    (void)state;
    wy_seen_t *s = wy_seen_new(16);
    expect_adds(s, (const seen_case_t[]){{"a", false},
                                         {"b", false},
                                         {"a", true},
                                         {"b", true},
                                         {"ab", false},
                                         {"", false},
                                         {"", true},
                                         {NULL, false}});
    assert_int_equal(wy_seen_count(s), 4);
    assert_true(wy_seen_contains(s, "ab"));
    assert_false(wy_seen_contains(s, "abc"));
    assert_int_equal(wy_seen_count(s), 4);
    wy_seen_free(s);
}

static void test_oldest_evicted_first(void **state)
{
    (void)state;
    wy_seen_t *s = wy_seen_new(3);
    expect_adds(s, (const seen_case_t[]){{"1", false},
                                         {"2", false},
                                         {"3", false},
                                         {"4", false}, /* evicts "1" */
                                         {NULL, false}});
    assert_int_equal(wy_seen_count(s), 3);
    expect_contains(s, (const seen_case_t[]){
                           {"1", false}, {"2", true}, {"3", true}, {"4", true}, {NULL, false}});
    /* A repeat does not refresh age: FIFO, "2" is still the oldest. */
    assert_true(wy_seen_check_add(s, "2"));
    assert_false(wy_seen_check_add(s, "5")); /* evicts "2" */
    assert_false(wy_seen_contains(s, "2"));
    assert_true(wy_seen_contains(s, "3"));
    assert_false(wy_seen_check_add(s, "1")); /* evicted ids are new again */
    assert_false(wy_seen_contains(s, "3"));
    wy_seen_free(s);
}

static void test_bound_holds_under_many_ids(void **state)
{
    (void)state;
    enum { CAP = 1000, TOTAL = 20000 };
    wy_seen_t *s = wy_seen_new(CAP);
    char id[64];
    for (int i = 0; i < TOTAL; i++) {
        snprintf(id, sizeof id, "event-%d", i);
        assert_false(wy_seen_check_add(s, id));
        assert_true(wy_seen_count(s) <= CAP);
    }
    assert_int_equal(wy_seen_count(s), CAP);
    for (int i = 0; i < TOTAL; i++) {
        snprintf(id, sizeof id, "event-%d", i);
        if (i < TOTAL - CAP)
            assert_false(wy_seen_contains(s, id));
        else
            assert_true(wy_seen_contains(s, id));
    }
    wy_seen_free(s);
}

static void test_capacity_one_and_long_ids(void **state)
{
    (void)state;
    wy_seen_t *s = wy_seen_new(0); /* clamped to 1 */
    expect_adds(s, (const seen_case_t[]){{"x", false}, {"x", true}, {"y", false}, {NULL, false}});
    assert_false(wy_seen_contains(s, "x"));
    assert_int_equal(wy_seen_count(s), 1);

    char longid[WY_SEEN_MAX_ID * 2 + 1];
    memset(longid, 'z', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_false(wy_seen_check_add(s, longid));
    assert_true(wy_seen_check_add(s, longid));
    wy_seen_free(s);
    wy_seen_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicates_detected),
        cmocka_unit_test(test_oldest_evicted_first),
        cmocka_unit_test(test_bound_holds_under_many_ids),
        cmocka_unit_test(test_capacity_one_and_long_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
