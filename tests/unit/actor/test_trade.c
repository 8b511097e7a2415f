/* Unit tests for wy-actor's trades and friends, the pure parts (services/actor/trade.c,
 * friends.c): an offer's shape, one side decided into its Traded event or refused, the
 * event applied on both sides conserving items and gold, a snapshot after a trade equal
 * to the replay; friend commands decided into both sides' events (the acting side named),
 * and their snapshot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/actor/character.c"
#include "../../../services/actor/friends.c"
#include "../../../services/actor/npc.c"
#include "../../../services/actor/trade.c"

#define ID_A "3f2a0c4e-1b2d-4c3e-8f40-5a6b7c8d9e0f"
#define ID_B "9a2a0c4e-1b2d-4c3e-8f40-5a6b7c8d9e0f"
#define ACCT "11111111-2222-4333-8444-555555555555"
#define NOW  1700000000000LL

/* A created character holding gold and count of item (none when count is 0). */
static void character(actor_state_t *s, const char *id, uint64_t gold, const char *item,
                      uint32_t count)
{
    actor_state_init(s, id);
    actor_event_t ev;
    actor_event_created(ACCT, "Aria", "mage", NOW, &ev);
    assert_int_equal(actor_apply_packed(s, 1, ev.data, ev.len), WY_OK);
    wy_free(ev.data);
    actor_cmd_t c;
    memset(&c, 0, sizeof c);
    actor_events_t out = {0};
    char why[128];
    if (gold) {
        c.kind = ACTOR_CMD_EARN;
        c.amount = gold;
        assert_int_equal(actor_decide(s, &c, NOW, 0, &out, why, sizeof why), WY_OK);
        assert_int_equal(actor_apply_packed(s, s->seq + 1, out.ev[0].data, out.ev[0].len), WY_OK);
        actor_events_clear(&out);
    }
    if (count) {
        c.kind = ACTOR_CMD_ADD_ITEM;
        c.amount = count;
        snprintf(c.item, sizeof c.item, "%s", item);
        assert_int_equal(actor_decide(s, &c, NOW, 0, &out, why, sizeof why), WY_OK);
        assert_int_equal(actor_apply_packed(s, s->seq + 1, out.ev[0].data, out.ev[0].len), WY_OK);
        actor_events_clear(&out);
    }
}

static actor_offer_t offer(uint64_t gold, const char *item, uint32_t count)
{
    actor_offer_t o;
    memset(&o, 0, sizeof o);
    o.gold = gold;
    if (count) {
        snprintf(o.items[0].item, sizeof o.items[0].item, "%s", item);
        o.items[0].count = count;
        o.n_items = 1;
    }
    return o;
}

/* Decides side s (gives g, gets r) and, when accepted, applies the event to s. */
static int side(actor_state_t *s, const char *other, const actor_offer_t *g, const actor_offer_t *r)
{
    actor_event_t ev;
    char why[160] = "";
    int rc = actor_trade_decide(s, "a", "txn-1", "trade", other, g, r, NOW, &ev, why, sizeof why);
    if (rc != WY_OK) {
        assert_null(ev.data);
        assert_true(why[0] != '\0');
        return rc;
    }
    assert_string_equal(ev.type, "traded");
    assert_int_equal(actor_apply_packed(s, s->seq + 1, ev.data, ev.len), WY_OK);
    wy_free(ev.data);
    return rc;
}

static void test_offer_shape(void **state)
{
    (void)state;
    Wyvern__Actor__ItemStack st[2] = {WYVERN__ACTOR__ITEM_STACK__INIT,
                                      WYVERN__ACTOR__ITEM_STACK__INIT};
    Wyvern__Actor__ItemStack *p[2] = {&st[0], &st[1]};
    st[0].item = "gem";
    st[0].count = 2;
    st[1].item = "ore";
    st[1].count = 1;
    actor_offer_t o;
    const char *why = NULL;
    assert_int_equal(actor_offer_from_pb(p, 2, 10, &o, &why), WY_OK);
    assert_int_equal(o.n_items, 2);
    assert_int_equal(o.gold, 10);
    st[1].item = "gem"; /* twice on one side */
    assert_int_equal(actor_offer_from_pb(p, 2, 10, &o, &why), WY_EINVAL);
    st[1].item = "Bad Item";
    assert_int_equal(actor_offer_from_pb(p, 2, 10, &o, &why), WY_EINVAL);
    st[1].item = "ore";
    st[1].count = 0;
    assert_int_equal(actor_offer_from_pb(p, 2, 10, &o, &why), WY_EINVAL);
    st[1].count = 1;
    assert_int_equal(actor_offer_from_pb(p, 2, ACTOR_MAX_GOLD_MOVE + 1ull, &o, &why), WY_EINVAL);
    assert_int_equal(actor_offer_from_pb(p, ACTOR_TRADE_ITEMS + 1, 0, &o, &why), WY_EINVAL);
}

static void test_trade_conserves_and_replays(void **state)
{
    (void)state;
    actor_state_t a, b;
    character(&a, ID_A, 100, "gem", 5);
    character(&b, ID_B, 50, "ore", 3);
    actor_offer_t ga = offer(30, "gem", 5), gb = offer(5, "ore", 1);
    assert_int_equal(side(&a, ID_B, &ga, &gb), WY_OK);
    assert_int_equal(side(&b, ID_A, &gb, &ga), WY_OK);
    assert_int_equal(a.gold, 75);
    assert_int_equal(b.gold, 75);
    assert_int_equal(actor_state_items(&a, "gem"), 0); /* the stack went */
    assert_int_equal(a.n_items, 1);
    assert_int_equal(actor_state_items(&a, "ore"), 1);
    assert_int_equal(actor_state_items(&b, "gem"), 5);
    assert_int_equal(actor_state_items(&b, "ore"), 2);
    /* A snapshot after the trade loads into the same state. */
    size_t len;
    uint8_t *snap = actor_snapshot_encode(&a, &len);
    actor_state_t back;
    actor_state_init(&back, ID_A);
    assert_int_equal(actor_snapshot_decode(&back, snap, len), WY_OK);
    assert_true(actor_state_equal(&a, &back));
    wy_free(snap);
    actor_state_clear(&back);
    actor_state_clear(&a);
    actor_state_clear(&b);
}

static void test_refusals(void **state)
{
    (void)state;
    actor_state_t a, empty;
    character(&a, ID_A, 10, "gem", 2);
    actor_state_init(&empty, ID_B);
    actor_offer_t none = offer(0, NULL, 0);
    actor_offer_t much_gold = offer(11, NULL, 0), many_gems = offer(0, "gem", 3);
    assert_int_equal(side(&a, ID_B, &much_gold, &none), WY_ESTATE);
    assert_int_equal(side(&a, ID_B, &many_gems, &none), WY_ESTATE);
    assert_int_equal(side(&empty, ID_A, &none, &much_gold), WY_ENOTFOUND);
    /* Room: a full stack, a full inventory, the gold cap. */
    a.items[0].count = ACTOR_MAX_STACK;
    actor_offer_t one_gem = offer(0, "gem", 1);
    assert_int_equal(side(&a, ID_B, &none, &one_gem), WY_ELIMIT);
    actor_offer_t give_gem = offer(0, "gem", 1);
    assert_int_equal(side(&a, ID_B, &give_gem, &one_gem), WY_OK); /* gives one, gets one */
    a.gold = ACTOR_MAX_GOLD;
    actor_offer_t gold = offer(1, NULL, 0);
    assert_int_equal(side(&a, ID_B, &none, &gold), WY_ELIMIT);
    a.gold = 0;
    actor_state_t full;
    character(&full, ID_B, 0, NULL, 0);
    for (int i = 0; i < ACTOR_MAX_STACKS; i++) {
        char item[16];
        snprintf(item, sizeof item, "t%03d", i);
        add_items(&full, item, 1);
    }
    assert_int_equal(side(&full, ID_A, &none, &one_gem), WY_ELIMIT);
    actor_offer_t give_t0 = offer(0, "t000", 1);
    assert_int_equal(side(&full, ID_A, &give_t0, &one_gem), WY_OK); /* a stack goes first */
    /* Deleted characters trade nothing. */
    full.deleted = true;
    assert_int_equal(side(&full, ID_A, &none, &one_gem), WY_ESTATE);
    actor_state_clear(&full);
    actor_state_clear(&a);
}

/* Runs op by me toward them; on WY_OK applies both events. */
static int friend_op(actor_friend_op_t op, actor_state_t *me, actor_state_t *them)
{
    actor_event_t ev[2];
    char why[160] = "";
    int rc = actor_friend_decide(op, me, them, "txn-f", NOW, ev, why, sizeof why);
    if (rc != WY_OK) {
        assert_null(ev[0].data);
        assert_true(why[0] != '\0');
        return rc;
    }
    assert_int_equal(actor_apply_packed(me, me->seq + 1, ev[0].data, ev[0].len), WY_OK);
    assert_int_equal(actor_apply_packed(them, them->seq + 1, ev[1].data, ev[1].len), WY_OK);
    wy_free(ev[0].data);
    wy_free(ev[1].data);
    return rc;
}

static int status_of(const actor_state_t *s, const char *id)
{
    const actor_friend_t *f = actor_friend_find(&s->friends, id);
    return f ? f->status : 0;
}

static void test_friends(void **state)
{
    (void)state;
    actor_state_t a, b;
    character(&a, ID_A, 0, NULL, 0);
    character(&b, ID_B, 0, NULL, 0);
    assert_int_equal(friend_op(ACTOR_FRIEND_ACCEPT, &a, &b), WY_ESTATE);
    assert_int_equal(friend_op(ACTOR_FRIEND_REQUEST, &a, &b), WY_OK);
    assert_int_equal(status_of(&a, ID_B), WYVERN__ACTOR__FRIEND__STATUS__OUTGOING);
    assert_int_equal(status_of(&b, ID_A), WYVERN__ACTOR__FRIEND__STATUS__INCOMING);
    assert_string_equal(actor_friend_find(&b.friends, ID_A)->account, ACCT);
    assert_int_equal(friend_op(ACTOR_FRIEND_REQUEST, &a, &b), WY_EEXIST);
    assert_int_equal(friend_op(ACTOR_FRIEND_ACCEPT, &a, &b), WY_ESTATE); /* only b can */
    /* A snapshot with a pending request loads back equal; a copy is equal too. */
    size_t len;
    uint8_t *snap = actor_snapshot_encode(&b, &len);
    actor_state_t back, copy;
    actor_state_init(&back, ID_B);
    actor_state_init(&copy, ID_B);
    assert_int_equal(actor_snapshot_decode(&back, snap, len), WY_OK);
    assert_true(actor_state_equal(&b, &back));
    actor_state_copy(&copy, &b);
    assert_true(actor_state_equal(&b, &copy));
    wy_free(snap);
    /* b asking a back is a yes. */
    assert_int_equal(friend_op(ACTOR_FRIEND_REQUEST, &b, &a), WY_OK);
    assert_int_equal(status_of(&a, ID_B), WYVERN__ACTOR__FRIEND__STATUS__FRIEND);
    assert_int_equal(status_of(&b, ID_A), WYVERN__ACTOR__FRIEND__STATUS__FRIEND);
    assert_false(actor_state_equal(&b, &copy));
    assert_int_equal(friend_op(ACTOR_FRIEND_DECLINE, &b, &a), WY_ESTATE);
    assert_int_equal(friend_op(ACTOR_FRIEND_REMOVE, &b, &a), WY_OK);
    assert_int_equal(a.friends.n, 0);
    assert_int_equal(b.friends.n, 0);
    assert_int_equal(friend_op(ACTOR_FRIEND_REMOVE, &b, &a), WY_ESTATE);
    /* Withdrawing one's own request is a decline too. */
    assert_int_equal(friend_op(ACTOR_FRIEND_REQUEST, &a, &b), WY_OK);
    assert_int_equal(friend_op(ACTOR_FRIEND_DECLINE, &a, &b), WY_OK);
    assert_int_equal(a.friends.n + b.friends.n, 0);
    b.deleted = true;
    assert_int_equal(friend_op(ACTOR_FRIEND_REQUEST, &a, &b), WY_ESTATE);
    actor_state_clear(&back);
    actor_state_clear(&copy);
    actor_state_clear(&a);
    actor_state_clear(&b);
}

/* The acting side's event says so and carries its name (lobby pushes from it); the other
 * side's does not. */
static void test_friend_events_name_the_acting_side(void **state)
{
    (void)state;
    actor_state_t a, b;
    character(&a, ID_A, 0, NULL, 0);
    character(&b, ID_B, 0, NULL, 0);
    snprintf(b.name, sizeof b.name, "%s", "Bryn");
    static const struct {
        actor_friend_op_t op;
        bool by_a;
        Wyvern__Actor__Event__BodyCase body;
    } steps[] = {
        {ACTOR_FRIEND_REQUEST, true, WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_SENT},
        {ACTOR_FRIEND_ACCEPT, false, WYVERN__ACTOR__EVENT__BODY_FRIEND_ADDED},
    };
    for (size_t i = 0; i < 2; i++) {
        actor_state_t *me = steps[i].by_a ? &a : &b, *them = steps[i].by_a ? &b : &a;
        actor_event_t ev[2];
        char why[160] = "";
        assert_int_equal(
            actor_friend_decide(steps[i].op, me, them, "txn-f", NOW, ev, why, sizeof why), WY_OK);
        for (int side = 0; side < 2; side++) {
            Wyvern__Actor__Event *e =
                wyvern__actor__event__unpack(NULL, ev[side].len, ev[side].data);
            assert_non_null(e);
            /* Every friend_* member is a FriendEvent at the same place. */
            const Wyvern__Actor__FriendEvent *f = e->friend_request_sent;
            if (side == 0)
                assert_int_equal(e->body_case, steps[i].body);
            assert_int_equal(f->acted, side == 0);
            assert_string_equal(f->actor_name, side == 0 ? me->name : "");
            assert_string_equal(f->other, side == 0 ? them->actor_id : me->actor_id);
            wyvern__actor__event__free_unpacked(e, NULL);
        }
        assert_int_equal(actor_apply_packed(me, me->seq + 1, ev[0].data, ev[0].len), WY_OK);
        assert_int_equal(actor_apply_packed(them, them->seq + 1, ev[1].data, ev[1].len), WY_OK);
        wy_free(ev[0].data);
        wy_free(ev[1].data);
    }
    assert_int_equal(status_of(&a, ID_B), WYVERN__ACTOR__FRIEND__STATUS__FRIEND);
    actor_state_clear(&a);
    actor_state_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offer_shape),
        cmocka_unit_test(test_trade_conserves_and_replays),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_friends),
        cmocka_unit_test(test_friend_events_name_the_acting_side),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
