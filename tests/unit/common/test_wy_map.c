/* Unit tests for wy_map: insert, lookup, delete, growth, the bound, iteration that deletes,
 * byte / string / uint64 keys, and SipHash-1-3 checked against OpenSSL's implementation.
 * Includes the .c to see the slot array (growth and tombstone reuse). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "../../../libs/common/wy_map.c"

/* A distinct value pointer for key number i (never NULL). */
#define VAL(i) ((void *)(uintptr_t)((i) + 1))

static int key_of(char *buf, size_t size, int i)
{
    return snprintf(buf, size, "player-%d", i);
}

static void test_put_get_del(void **state)
{
    (void)state;
    wy_map_t *m = wy_map_new(0);
    assert_int_equal(wy_map_count(m), 0);
    assert_null(wy_map_get_str(m, "alice"));
    assert_int_equal(wy_map_put_str(m, "alice", VAL(1)), WY_OK);
    assert_int_equal(wy_map_put_str(m, "bob", VAL(2)), WY_OK);
    assert_int_equal(wy_map_count(m), 2);
    assert_ptr_equal(wy_map_get_str(m, "alice"), VAL(1));
    assert_ptr_equal(wy_map_get_str(m, "bob"), VAL(2));
    assert_null(wy_map_get_str(m, "alic"));
    assert_null(wy_map_get_str(m, "alicee"));

    /* Replace keeps the count. */
    assert_int_equal(wy_map_put_str(m, "alice", VAL(3)), WY_OK);
    assert_int_equal(wy_map_count(m), 2);
    assert_ptr_equal(wy_map_get_str(m, "alice"), VAL(3));

    void *old = NULL;
    assert_int_equal(wy_map_del_str(m, "alice", &old), WY_OK);
    assert_ptr_equal(old, VAL(3));
    assert_int_equal(wy_map_del_str(m, "alice", &old), WY_ENOTFOUND);
    assert_null(wy_map_get_str(m, "alice"));
    assert_ptr_equal(wy_map_get_str(m, "bob"), VAL(2));
    assert_int_equal(wy_map_count(m), 1);

    /* Conditional delete: only while the key still maps to that value. */
    assert_int_equal(wy_map_del_if(m, "bob", 3, VAL(7)), WY_ENOTFOUND);
    assert_ptr_equal(wy_map_get_str(m, "bob"), VAL(2));
    assert_int_equal(wy_map_del_if(m, "bob", 3, VAL(2)), WY_OK);
    assert_null(wy_map_get_str(m, "bob"));
    assert_int_equal(wy_map_del_if(m, "bob", 3, VAL(2)), WY_ENOTFOUND);
    assert_int_equal(wy_map_put_str(m, "bob", VAL(2)), WY_OK);

    /* A NULL value is stored and told apart from "absent" by wy_map_find. */
    void *v = VAL(9);
    assert_int_equal(wy_map_put_str(m, "nobody", NULL), WY_OK);
    assert_true(wy_map_find(m, "nobody", 6, &v));
    assert_null(v);
    assert_false(wy_map_find(m, "somebody", 8, NULL));
    wy_map_free(m);
}

static void test_binary_long_and_empty_keys(void **state)
{
    (void)state;
    wy_map_t *m = wy_map_new(0);
    const char bin1[] = {'a', '\0', 'b'}, bin2[] = {'a', '\0', 'c'};
    assert_int_equal(wy_map_put(m, bin1, sizeof bin1, VAL(1)), WY_OK);
    assert_int_equal(wy_map_put(m, bin2, sizeof bin2, VAL(2)), WY_OK);
    assert_ptr_equal(wy_map_get(m, bin1, sizeof bin1), VAL(1));
    assert_ptr_equal(wy_map_get(m, bin2, sizeof bin2), VAL(2));
    assert_null(wy_map_get(m, "a", 1)); /* a prefix is another key */

    assert_int_equal(wy_map_put(m, NULL, 0, VAL(3)), WY_OK); /* the empty key */
    assert_ptr_equal(wy_map_get(m, "", 0), VAL(3));

    /* Keys longer than the inline size are copied: the caller's buffer may change. */
    char longkey[200];
    memset(longkey, 'x', sizeof longkey);
    assert_int_equal(wy_map_put(m, longkey, sizeof longkey, VAL(4)), WY_OK);
    assert_int_equal(wy_map_put(m, longkey, 17, VAL(5)), WY_OK);
    assert_int_equal(wy_map_put(m, longkey, 16, VAL(6)), WY_OK);
    memset(longkey, 'y', sizeof longkey);
    assert_null(wy_map_get(m, longkey, sizeof longkey));
    memset(longkey, 'x', sizeof longkey);
    assert_ptr_equal(wy_map_get(m, longkey, sizeof longkey), VAL(4));
    assert_ptr_equal(wy_map_get(m, longkey, 17), VAL(5));
    assert_ptr_equal(wy_map_get(m, longkey, 16), VAL(6));
    assert_int_equal(wy_map_del(m, longkey, 17, NULL), WY_OK);
    assert_null(wy_map_get(m, longkey, 17));
    assert_ptr_equal(wy_map_get(m, longkey, sizeof longkey), VAL(4));

    /* Over the key bound: refused, nothing stored. */
    static char huge[WY_MAP_MAX_KEY + 1];
    assert_int_equal(wy_map_put(m, huge, sizeof huge, VAL(7)), WY_ETOOBIG);
    assert_null(wy_map_get(m, huge, sizeof huge));
    assert_int_equal(wy_map_count(m), 5);
    wy_map_free(m);
}

static void test_u64_keys(void **state)
{
    (void)state;
    wy_map_t *m = wy_map_new(0);
    for (uint64_t k = 0; k < 1000; k++)
        assert_int_equal(wy_map_put_u64(m, (k << 40 | k), VAL(k)), WY_OK);
    assert_int_equal(wy_map_count(m), 1000);
    for (uint64_t k = 0; k < 1000; k++)
        assert_ptr_equal(wy_map_get_u64(m, (k << 40 | k)), VAL(k));
    assert_null(wy_map_get_u64(m, 1));
    assert_int_equal(wy_map_del_u64(m, 0, NULL), WY_OK);
    assert_null(wy_map_get_u64(m, 0));
    assert_int_equal(wy_map_del_u64(m, 0, NULL), WY_ENOTFOUND);

    /* Iteration gives the integer back. */
    size_t seen = 0;
    wy_map_iter_t it;
    wy_map_iter_init(&it, m);
    while (wy_map_next(&it)) {
        uint64_t k = wy_map_iter_u64(&it);
        assert_ptr_equal(it.val, VAL(k & 0xffffffffffull));
        seen++;
    }
    assert_int_equal(seen, 999);
    wy_map_free(m);
}

/* 100,000 keys: every growth keeps every entry; half deleted, the rest still found. */
static void test_many_keys_grow(void **state)
{
    (void)state;
    enum { N = 100000 };
    wy_map_t *m = wy_map_new(0);
    char k[32];
    size_t last_cap = m->cap;
    int growths = 0;
    for (int i = 0; i < N; i++) {
        int n = key_of(k, sizeof k, i);
        assert_int_equal(wy_map_put(m, k, (size_t)n, VAL(i)), WY_OK);
        if (m->cap != last_cap) {
            assert_int_equal(m->cap, last_cap * 2); /* doubling */
            last_cap = m->cap;
            growths++;
        }
    }
    assert_true(growths >= 10);
    assert_int_equal(wy_map_count(m), N);
    assert_true(m->cap >= N && m->cap <= 4 * (size_t)N); /* load kept between 1/4 and 1/2 */
    for (int i = 0; i < N; i++) {
        int n = key_of(k, sizeof k, i);
        assert_ptr_equal(wy_map_get(m, k, (size_t)n), VAL(i));
    }
    for (int i = 0; i < N; i += 2) {
        int n = key_of(k, sizeof k, i);
        assert_int_equal(wy_map_del(m, k, (size_t)n, NULL), WY_OK);
    }
    assert_int_equal(wy_map_count(m), N / 2);
    for (int i = 0; i < N; i++) {
        int n = key_of(k, sizeof k, i);
        if (i % 2)
            assert_ptr_equal(wy_map_get(m, k, (size_t)n), VAL(i));
        else
            assert_null(wy_map_get(m, k, (size_t)n));
    }
    wy_map_free(m);
}

/* Insert/delete churn with few live keys: tombstones are reused or cleared, the table does not
 * grow without bound and lookups still end. */
static void test_churn_does_not_grow(void **state)
{
    (void)state;
    wy_map_t *m = wy_map_new(0);
    char k[32];
    for (int i = 0; i < 200000; i++) {
        int n = key_of(k, sizeof k, i);
        assert_int_equal(wy_map_put(m, k, (size_t)n, VAL(i)), WY_OK);
        if (i >= 5) {
            n = key_of(k, sizeof k, i - 5);
            assert_int_equal(wy_map_del(m, k, (size_t)n, NULL), WY_OK);
        }
    }
    assert_int_equal(wy_map_count(m), 5);
    assert_true(m->cap <= 16);
    assert_null(wy_map_get_str(m, "never-inserted"));
    for (int i = 200000 - 5; i < 200000; i++) {
        int n = key_of(k, sizeof k, i);
        assert_ptr_equal(wy_map_get(m, k, (size_t)n), VAL(i));
    }
    wy_map_free(m);
}

static void test_bound(void **state)
{
    (void)state;
    wy_map_t *m = wy_map_new(3);
    assert_int_equal(wy_map_put_str(m, "a", VAL(1)), WY_OK);
    assert_int_equal(wy_map_put_str(m, "b", VAL(2)), WY_OK);
    assert_int_equal(wy_map_put_str(m, "c", VAL(3)), WY_OK);
    assert_int_equal(wy_map_put_str(m, "d", VAL(4)), WY_ELIMIT);
    assert_null(wy_map_get_str(m, "d"));
    assert_int_equal(wy_map_count(m), 3);
    /* Replacing an existing key is not an insert. */
    assert_int_equal(wy_map_put_str(m, "b", VAL(5)), WY_OK);
    assert_ptr_equal(wy_map_get_str(m, "b"), VAL(5));
    /* A delete makes room for one more. */
    assert_int_equal(wy_map_del_str(m, "a", NULL), WY_OK);
    assert_int_equal(wy_map_put_str(m, "d", VAL(4)), WY_OK);
    assert_int_equal(wy_map_put_str(m, "e", VAL(6)), WY_ELIMIT);
    assert_int_equal(wy_map_count(m), 3);
    assert_true(m->cap <= 8);
    wy_map_free(m);
}

/* Deleting the current entry (and others) while iterating: every entry present throughout is
 * visited once, deleted ones are gone afterwards. */
static void test_iterate_delete(void **state)
{
    (void)state;
    enum { N = 5000 };
    wy_map_t *m = wy_map_new(0);
    static unsigned char visits[N];
    memset(visits, 0, sizeof visits);
    char k[32];
    for (int i = 0; i < N; i++) {
        int n = key_of(k, sizeof k, i);
        assert_int_equal(wy_map_put(m, k, (size_t)n, VAL(i)), WY_OK);
    }
    wy_map_iter_t it;
    wy_map_iter_init(&it, m);
    size_t visited = 0;
    while (wy_map_next(&it)) {
        int i = (int)((uintptr_t)it.val - 1);
        assert_true(i >= 0 && i < N);
        char want[32];
        int n = key_of(want, sizeof want, i);
        assert_int_equal(it.klen, (size_t)n);
        assert_memory_equal(it.key, want, (size_t)n);
        visits[i]++;
        visited++;
        if (i % 3 == 0) {
            wy_map_iter_del(&it); /* the current entry */
        } else if (i % 3 == 1) {
            n = key_of(want, sizeof want, i); /* the current one through wy_map_del */
            assert_int_equal(wy_map_del(m, want, (size_t)n, NULL), WY_OK);
            wy_map_iter_del(&it); /* already gone: no effect */
        } else {
            wy_map_put(m, it.key, it.klen, VAL(i)); /* replacing is allowed */
        }
    }
    assert_int_equal(visited, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(visits[i], 1);
    assert_int_equal(wy_map_count(m), N / 3);
    for (int i = 0; i < N; i++) {
        int n = key_of(k, sizeof k, i);
        if (i % 3 == 2)
            assert_ptr_equal(wy_map_get(m, k, (size_t)n), VAL(i));
        else
            assert_null(wy_map_get(m, k, (size_t)n));
    }
    /* Deleting entries not yet visited: they are not visited. */
    wy_map_iter_init(&it, m);
    size_t left = wy_map_count(m), seen = 0;
    while (wy_map_next(&it)) {
        seen++;
        wy_map_iter_t all;
        wy_map_iter_init(&all, m);
        while (wy_map_next(&all))
            if (all.val != it.val)
                wy_map_iter_del(&all);
    }
    assert_int_equal(seen, 1);
    assert_true(left > 1);
    wy_map_iter_del(&it); /* after the end: nothing to delete */
    assert_int_equal(wy_map_count(m), 1);
    wy_map_free(m);
}

/* Two maps hash the same key differently (per-map seed). */
static void test_seeded(void **state)
{
    (void)state;
    wy_map_t *a = wy_map_new(0), *b = wy_map_new(0);
    assert_memory_not_equal(a->seed, b->seed, sizeof a->seed);
    assert_true(wy_siphash13(a->seed, "nick", 4) != wy_siphash13(b->seed, "nick", 4));
    wy_map_free(a);
    wy_map_free(b);
}

/* SipHash-1-3 against OpenSSL's SIPHASH MAC with 1 compression and 3 finalisation rounds, for
 * every length 0..64 (all tail sizes, several blocks). */
static void test_siphash13_matches_openssl(void **state)
{
    (void)state;
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)(i * 7 + 3);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    assert_non_null(mac);
    for (size_t n = 0; n <= sizeof msg; n++) {
        EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
        unsigned int crounds = 1, drounds = 3;
        size_t outsize = 8;
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &outsize),
            OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_C_ROUNDS, &crounds),
            OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_D_ROUNDS, &drounds),
            OSSL_PARAM_construct_end(),
        };
        assert_int_equal(EVP_MAC_init(ctx, key, sizeof key, params), 1);
        assert_int_equal(EVP_MAC_update(ctx, msg, n), 1);
        uint8_t out[8];
        size_t outlen = 0;
        assert_int_equal(EVP_MAC_final(ctx, out, &outlen, sizeof out), 1);
        assert_int_equal(outlen, 8);
        uint64_t want = load_le64(out);
        assert_int_equal(wy_siphash13(key, msg, n), want);
        EVP_MAC_CTX_free(ctx);
    }
    EVP_MAC_free(mac);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_binary_long_and_empty_keys),
        cmocka_unit_test(test_u64_keys),
        cmocka_unit_test(test_many_keys_grow),
        cmocka_unit_test(test_churn_does_not_grow),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_iterate_delete),
        cmocka_unit_test(test_seeded),
        cmocka_unit_test(test_siphash13_matches_openssl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
