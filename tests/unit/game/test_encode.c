/* Unit tests for the compact replication encoding (libs/common/wy_gamewire.c): decode(encode(x))
 * within the documented precision (1/32 m per axis, never accumulating), the size of move
 * updates, and malformed sections refused with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "wy_gamewire.h"

#define N 200

typedef struct {
    uint32_t id;
    double x, y;
    uint8_t kind, mode;
    wy_gw_entity_t sent;
} truth_t;

static wy_gw_entity_t state(const truth_t *t)
{
    return (wy_gw_entity_t){t->id, t->kind, t->mode, wy_gw_quantise(t->x), wy_gw_quantise(t->y)};
}

static uint8_t sec_e[N * 32], sec_c[N * 32];

/* A server that replicates all N entities to one client per step: the first step enters them,
 * then each step moves them (mostly small steps, sometimes big ones and mode changes). The
 * mirror must hold every entity within 1/32 m on each axis after every step. */
static void test_roundtrip_within_precision(void **state_)
{
    (void)state_;
    truth_t t[N];
    srand(42);
    for (int i = 0; i < N; i++)
        t[i] = (truth_t){.id = (uint32_t)(i * 7 + 1),
                         .x = rand() % 5000 / 3.0,
                         .y = rand() % 5000 / 7.0,
                         .kind = 1,
                         .mode = 0};
    wy_gw_entity_t ents[N];
    wy_gw_mirror_t m;
    wy_gw_mirror_init(&m, ents, N);
    size_t moves = 0, move_bytes = 0;
    for (int step = 0; step < 500; step++) {
        wy_gw_section_t se, sc;
        wy_gw_section_init(&se, sec_e, sizeof sec_e);
        wy_gw_section_init(&sc, sec_c, sizeof sec_c);
        for (int i = 0; i < N; i++) {
            if (step > 0) {
                int r = rand() % 100;
                double sp = r < 90 ? 0.3 : r < 98 ? 5.0 : 400.0; /* metres this step */
                t[i].x = fmax(0, t[i].x + sp * ((rand() % 2001) / 1000.0 - 1));
                t[i].y = fmax(0, t[i].y + sp * ((rand() % 2001) / 1000.0 - 1));
                if (r == 50)
                    t[i].mode = (uint8_t)(rand() % 3);
                if (r == 51)
                    t[i].kind = 2;
            }
            wy_gw_entity_t now = state(&t[i]);
            uint8_t body[WY_GW_BODY_MAX];
            if (step == 0) {
                size_t n = wy_gw_enter_body(&now, body);
                assert_int_equal(wy_gw_put_entered(&se, now.id, body, n), WY_OK);
            } else {
                unsigned form;
                size_t n = wy_gw_change_body(&t[i].sent, &now, body, &form);
                if (n > 0) {
                    size_t before = sc.len;
                    assert_int_equal(wy_gw_put_changed(&sc, now.id, form, body, n), WY_OK);
                    if (now.qx != t[i].sent.qx || now.qy != t[i].sent.qy) {
                        moves++;
                        move_bytes += sc.len - before;
                    }
                }
            }
            t[i].sent = now;
        }
        const char *err = NULL;
        wy_gw_applied_t a;
        assert_int_equal(
            wy_gw_mirror_apply(&m, false, se.buf, se.len, sc.buf, sc.len, NULL, 0, &a, &err),
            WY_OK);
        assert_int_equal(m.n, N);
        for (int i = 0; i < N; i++) {
            const wy_gw_entity_t *e = wy_gw_mirror_find(&m, t[i].id);
            assert_non_null(e);
            assert_true(fabs(wy_gw_metres(e->qx) - t[i].x) <= 1.0 / 32 + 1e-9);
            assert_true(fabs(wy_gw_metres(e->qy) - t[i].y) <= 1.0 / 32 + 1e-9);
            assert_int_equal(e->mode, t[i].mode);
            assert_int_equal(e->kind, t[i].kind);
        }
    }
    /* Ids 7 apart: a one-byte key; mostly small moves: well under 4 bytes per update. */
    printf("# %zu moves, %.2f bytes per move\n", moves, (double)move_bytes / moves);
    assert_true(move_bytes <= 4 * moves);
}

static void test_forms(void **state)
{
    (void)state;
    wy_gw_entity_t a = {5, 1, 1, 100, 100}, b = a;
    uint8_t body[WY_GW_BODY_MAX];
    unsigned form;
    assert_int_equal(wy_gw_change_body(&a, &b, body, &form), 0);
    b.qx += 7;
    b.qy -= 8;
    assert_int_equal(wy_gw_change_body(&a, &b, body, &form), 1);
    assert_int_equal(form, 0);
    b.qx = a.qx + 8;
    assert_int_equal(wy_gw_change_body(&a, &b, body, &form), 2);
    assert_int_equal(form, 1);
    b.qx = a.qx + 128;
    assert_int_equal(wy_gw_change_body(&a, &b, body, &form), 1 + 2 + 1);
    assert_int_equal(form, 2);
    b = a;
    b.mode = 2;
    assert_int_equal(wy_gw_change_body(&a, &b, body, &form), 2);
    assert_int_equal(form, 2);
    assert_int_equal(body[0], 2);

    /* A small move of a neighbour id is 2 bytes on the wire. */
    uint8_t buf[16];
    wy_gw_section_t s;
    wy_gw_section_init(&s, buf, sizeof buf);
    b = a;
    b.qx++;
    size_t n = wy_gw_change_body(&a, &b, body, &form);
    assert_int_equal(wy_gw_put_changed(&s, 5, form, body, n), WY_OK);
    assert_int_equal(wy_gw_put_changed(&s, 6, form, body, n), WY_OK);
    assert_int_equal(s.len, 2 + 2);
    /* Ids must ascend; a full section refuses and remembers it. */
    assert_int_equal(wy_gw_put_changed(&s, 6, form, body, n), WY_EINVAL);
    wy_gw_section_init(&s, buf, 3);
    assert_int_equal(wy_gw_put_left(&s, 1000), WY_OK);
    assert_int_equal(wy_gw_put_left(&s, 100000), WY_ETOOBIG);
    assert_true(s.overflow);
    assert_int_equal(s.len, 2);
}

static void test_quantise(void **state)
{
    (void)state;
    assert_int_equal(wy_gw_quantise(0), 0);
    assert_int_equal(wy_gw_quantise(1.0), 16);
    assert_int_equal(wy_gw_quantise(1.0 / 32), 1); /* half a unit rounds away from zero */
    assert_int_equal(wy_gw_quantise(1.0 / 32 - 1e-6), 0);
    assert_int_equal(wy_gw_quantise(100000.0), 1600000);
    assert_true(fabs(wy_gw_metres(1600000) - 100000.0) < 1e-9);
}

static int apply(wy_gw_mirror_t *m, const uint8_t *e, size_t ne, const uint8_t *c, size_t nc,
                 const uint8_t *l, size_t nl, const char **err)
{
    return wy_gw_mirror_apply(m, false, e, ne, c, nc, l, nl, NULL, err);
}

static void test_malformed(void **state)
{
    (void)state;
    wy_gw_entity_t ents[2];
    wy_gw_mirror_t m;
    wy_gw_mirror_init(&m, ents, 2);
    const char *err = NULL;
    const uint8_t trunc[] = {5, 1}; /* id 5, kind, no mode */
    assert_int_equal(apply(&m, trunc, 2, NULL, 0, NULL, 0, &err), WY_EINVAL);
    assert_non_null(strstr(err, "truncated"));
    const uint8_t twice[] = {5, 1, 0, 1, 1, 0, 1, 0, 1, 1}; /* ids 5 then 5 */
    wy_gw_mirror_init(&m, ents, 2);
    assert_int_equal(apply(&m, twice, sizeof twice, NULL, 0, NULL, 0, &err), WY_EINVAL);
    assert_non_null(strstr(err, "ascending"));
    const uint8_t three[] = {1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1};
    wy_gw_mirror_init(&m, ents, 2);
    assert_int_equal(apply(&m, three, sizeof three, NULL, 0, NULL, 0, &err), WY_EINVAL);
    assert_non_null(strstr(err, "more entities"));
    wy_gw_mirror_init(&m, ents, 2);
    const uint8_t one[] = {4, 1, 0, 10, 10};
    assert_int_equal(apply(&m, one, sizeof one, NULL, 0, NULL, 0, &err), WY_OK);
    const uint8_t unknown[] = {(3 << 2) | 0, 0x88}; /* changed id 3: not visible */
    assert_int_equal(apply(&m, NULL, 0, unknown, 2, NULL, 0, &err), WY_EINVAL);
    assert_non_null(strstr(err, "not visible"));
    const uint8_t reserved[] = {(4 << 2) | 3};
    assert_int_equal(apply(&m, NULL, 0, reserved, 1, NULL, 0, &err), WY_EINVAL);
    assert_non_null(strstr(err, "reserved"));
    const uint8_t mask[] = {(4 << 2) | 2, 0x10};
    assert_int_equal(apply(&m, NULL, 0, mask, 2, NULL, 0, &err), WY_EINVAL);
    assert_non_null(strstr(err, "mask"));
    const uint8_t under[] = {(4 << 2) | 1, (uint8_t)-20, 0}; /* qx 10 - 20 < 0 is allowed data */
    assert_int_equal(apply(&m, NULL, 0, under, 3, NULL, 0, &err), WY_OK);
    const uint8_t left_unknown[] = {9};
    assert_int_equal(apply(&m, NULL, 0, NULL, 0, left_unknown, 1, &err), WY_EINVAL);
    const uint8_t left4[] = {4};
    assert_int_equal(apply(&m, NULL, 0, NULL, 0, left4, 1, &err), WY_OK);
    assert_int_equal(m.n, 0);
    const uint8_t longvar[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(apply(&m, longvar, sizeof longvar, NULL, 0, NULL, 0, &err), WY_EINVAL);
}

static void test_reset_replaces(void **state)
{
    (void)state;
    wy_gw_entity_t ents[4];
    wy_gw_mirror_t m;
    wy_gw_mirror_init(&m, ents, 4);
    const uint8_t two[] = {1, 1, 0, 5, 5, 1, 1, 0, 6, 6}; /* ids 1, 2 */
    assert_int_equal(apply(&m, two, sizeof two, NULL, 0, NULL, 0, NULL), WY_OK);
    const uint8_t other[] = {3, 2, 1, 7, 7}; /* id 3 */
    assert_int_equal(
        wy_gw_mirror_apply(&m, true, other, sizeof other, NULL, 0, NULL, 0, NULL, NULL), WY_OK);
    assert_int_equal(m.n, 1);
    assert_non_null(wy_gw_mirror_find(&m, 3));
    assert_null(wy_gw_mirror_find(&m, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_within_precision),
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_quantise),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_reset_replaces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
