/* Unit tests for wy-actor's persistent NPCs, the pure part (services/actor/npc.c with
 * character.c): CreateNpc's shape, a merchant's stock and till, a boss's kill and respawn
 * time, commands that do not fit refused, and state from snapshot + tail equal to the
 * state from a full replay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/actor/character.c"
#include "../../../services/actor/friends.c"
#include "../../../services/actor/npc.c"

#define NPC  "5b1e0c4e-1b2d-4c3e-8f40-5a6b7c8d9e0f"
#define CHR  "3f2a0c4e-1b2d-4c3e-8f40-5a6b7c8d9e0f"
#define ACCT "11111111-2222-4333-8444-555555555555"
#define NOW  1700000000000LL

typedef struct {
    Wyvern__Actor__CreateNpcRequest in;
    Wyvern__Actor__Position pos;
    Wyvern__Actor__ItemStack st[2];
    Wyvern__Actor__ItemStack *stp[2];
} req_t;

static void request(req_t *r, const char *kind, int64_t respawn_ms)
{
    wyvern__actor__create_npc_request__init(&r->in);
    wyvern__actor__position__init(&r->pos);
    r->pos.zone = "oakvale";
    r->pos.x = 10;
    r->pos.y = 20;
    r->in.npc_id = NPC;
    r->in.kind = (char *)kind;
    r->in.name = "Greta the Trader";
    r->in.position = &r->pos;
    r->in.respawn_ms = respawn_ms;
    if (strcmp(kind, "merchant") == 0) {
        static const char *items[] = {"potion", "rope"};
        for (int i = 0; i < 2; i++) {
            wyvern__actor__item_stack__init(&r->st[i]);
            r->st[i].item = (char *)items[i];
            r->st[i].count = 10 * (uint32_t)(i + 1);
            r->stp[i] = &r->st[i];
        }
        r->in.n_stock = 2;
        r->in.stock = r->stp;
    }
}

/* The NPC of r at seq 1. */
static void created(actor_state_t *s, req_t *r)
{
    const char *why = NULL;
    assert_int_equal(actor_npc_check_request(&r->in, &why), WY_OK);
    actor_state_init(s, NPC);
    actor_event_t ev;
    actor_event_npc_created(&r->in, NOW, &ev);
    assert_string_equal(ev.type, "npc_created");
    assert_int_equal(actor_apply_packed(s, 1, ev.data, ev.len), WY_OK);
    wy_free(ev.data);
}

/* Decides c at now and applies its events; the decision. */
static int run(actor_state_t *s, actor_cmd_kind_t kind, const char *item, uint64_t amount,
               int64_t now, char *why, size_t cap)
{
    actor_cmd_t c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.amount = amount;
    snprintf(c.item, sizeof c.item, "%s", item ? item : "");
    if (kind == ACTOR_CMD_NPC_KILL)
        snprintf(c.text, sizeof c.text, "%s", CHR);
    if (kind == ACTOR_CMD_MOVE)
        snprintf(c.zone, sizeof c.zone, "%s", "meadow");
    actor_events_t out = {0};
    why[0] = 0;
    int rc = actor_decide(s, &c, now, 0, &out, why, cap);
    if (rc != WY_OK)
        assert_true(out.n == 0 && why[0]);
    for (size_t i = 0; i < out.n; i++)
        assert_int_equal(actor_apply_packed(s, s->seq + 1, out.ev[i].data, out.ev[i].len), WY_OK);
    actor_events_clear(&out);
    return rc;
}

static void test_request_shape(void **state)
{
    (void)state;
    req_t r;
    const char *why = NULL;
    request(&r, "merchant", 0);
    assert_int_equal(actor_npc_check_request(&r.in, &why), WY_OK);
    r.in.npc_id = "not-a-uuid";
    assert_int_equal(actor_npc_check_request(&r.in, &why), WY_EINVAL);
    request(&r, "dragon", 0);
    assert_int_equal(actor_npc_check_request(&r.in, &why), WY_EINVAL);
    request(&r, "merchant", 5000); /* respawn is a boss's */
    assert_int_equal(actor_npc_check_request(&r.in, &why), WY_EINVAL);
    request(&r, "boss", 0); /* a boss needs one */
    assert_int_equal(actor_npc_check_request(&r.in, &why), WY_EINVAL);
    assert_non_null(strstr(why, "respawn_ms"));
    request(&r, "merchant", 0);
    r.st[1].item = "potion"; /* twice */
    assert_int_equal(actor_npc_check_request(&r.in, &why), WY_EINVAL);
    request(&r, "merchant", 0);
    r.in.position = NULL;
    assert_int_equal(actor_npc_check_request(&r.in, &why), WY_EINVAL);
    request(&r, "merchant", 0);
    r.in.name = "";
    assert_int_equal(actor_npc_check_request(&r.in, &why), WY_EINVAL);
}

static void test_merchant_stock_and_till(void **state)
{
    (void)state;
    req_t r;
    actor_state_t s;
    char why[160];
    request(&r, "merchant", 0);
    created(&s, &r);
    assert_int_equal(s.npc.kind, ACTOR_NPC_MERCHANT);
    assert_string_equal(s.name, "Greta the Trader");
    assert_string_equal(s.zone, "oakvale");
    assert_string_equal(s.account_id, "");
    assert_int_equal(actor_state_items(&s, "potion"), 10);
    assert_int_equal(actor_state_items(&s, "rope"), 20);
    assert_int_equal(run(&s, ACTOR_CMD_REMOVE_ITEM, "potion", 4, NOW, why, sizeof why), WY_OK);
    assert_int_equal(run(&s, ACTOR_CMD_ADD_ITEM, "lamp", 2, NOW, why, sizeof why), WY_OK);
    assert_int_equal(run(&s, ACTOR_CMD_EARN, NULL, 30, NOW, why, sizeof why), WY_OK);
    assert_int_equal(run(&s, ACTOR_CMD_MOVE, NULL, 0, NOW, why, sizeof why), WY_OK);
    assert_int_equal(actor_state_items(&s, "potion"), 6);
    assert_int_equal(s.gold, 30);
    assert_string_equal(s.zone, "meadow");
    assert_int_equal(run(&s, ACTOR_CMD_REMOVE_ITEM, "potion", 7, NOW, why, sizeof why),
                     WY_ESTATE); /* sold out */
    assert_int_equal(run(&s, ACTOR_CMD_GAIN_XP, NULL, 5, NOW, why, sizeof why), WY_ESTATE);
    assert_string_equal(why, "an NPC gains no XP");
    assert_int_equal(run(&s, ACTOR_CMD_NPC_KILL, NULL, 0, NOW, why, sizeof why), WY_ESTATE);
    assert_string_equal(why, "not a boss");
    /* No friends with an NPC, either way. */
    actor_state_t c;
    actor_state_init(&c, CHR);
    actor_event_t ev, fe[2];
    actor_event_created(ACCT, "Aria", "mage", NOW, &ev);
    assert_int_equal(actor_apply_packed(&c, 1, ev.data, ev.len), WY_OK);
    wy_free(ev.data);
    assert_int_equal(
        actor_friend_decide(ACTOR_FRIEND_REQUEST, &c, &s, "t", NOW, fe, why, sizeof why),
        WY_ESTATE);
    /* A character is not a boss: kill_npc on it is refused, an NPC event does not apply. */
    assert_int_equal(run(&c, ACTOR_CMD_NPC_KILL, NULL, 0, NOW, why, sizeof why), WY_ESTATE);
    assert_string_equal(why, "not an NPC");
    actor_event_npc_created(&r.in, NOW, &ev);
    assert_int_equal(actor_apply_packed(&c, 2, ev.data, ev.len), WY_EINVAL);
    wy_free(ev.data);
    actor_state_clear(&c);
    actor_state_clear(&s);
}

static void test_boss_kill_and_respawn_time(void **state)
{
    (void)state;
    req_t r;
    actor_state_t s;
    char why[160];
    request(&r, "boss", 60000);
    created(&s, &r);
    assert_true(s.npc.kind == ACTOR_NPC_BOSS && s.npc.alive && s.npc.kills == 0);
    assert_int_equal(run(&s, ACTOR_CMD_NPC_RESPAWN, NULL, 0, NOW, why, sizeof why), WY_ESTATE);
    assert_int_equal(run(&s, ACTOR_CMD_NPC_KILL, NULL, 0, NOW + 5, why, sizeof why), WY_OK);
    assert_false(s.npc.alive);
    assert_int_equal(s.npc.respawn_at_ms, NOW + 5 + 60000);
    assert_string_equal(s.npc.killed_by, CHR);
    assert_int_equal(run(&s, ACTOR_CMD_NPC_KILL, NULL, 0, NOW + 6, why, sizeof why), WY_ESTATE);
    assert_int_equal(run(&s, ACTOR_CMD_NPC_RESPAWN, NULL, 0, NOW + 60004, why, sizeof why),
                     WY_ESTATE);
    assert_non_null(strstr(why, "respawns in 1 ms"));
    assert_int_equal(run(&s, ACTOR_CMD_NPC_RESPAWN, NULL, 0, NOW + 60005, why, sizeof why), WY_OK);
    assert_true(s.npc.alive && s.npc.kills == 1 && s.npc.respawn_at_ms == 0);
    assert_int_equal(run(&s, ACTOR_CMD_ADD_ITEM, "gold_hoard", 1, NOW, why, sizeof why), WY_ESTATE);
    assert_int_equal(run(&s, ACTOR_CMD_GAIN_XP, NULL, 1, NOW, why, sizeof why), WY_ESTATE);
    actor_state_clear(&s);
}

/* The API view carries the NPC part; a snapshot round trip keeps it; snapshot + tail
 * equals the full replay at every cut. */
static void test_snapshot_plus_tail_equals_full_replay(void **state)
{
    (void)state;
    req_t r;
    request(&r, "boss", 1000);
    actor_events_t log[16];
    size_t n = 0;
    actor_event_npc_created(&r.in, NOW, &log[0].ev[0]);
    log[0].n = 1;
    n = 1;
    actor_state_t s;
    created(&s, &r);
    char why[160];
    for (int k = 0; k < 5; k++) {
        actor_cmd_t c;
        memset(&c, 0, sizeof c);
        c.kind = k % 2 == 0 ? ACTOR_CMD_NPC_KILL : ACTOR_CMD_NPC_RESPAWN;
        int64_t now = NOW + 2000 * (k + 1);
        log[n].n = 0;
        assert_int_equal(actor_decide(&s, &c, now, 0, &log[n], why, sizeof why), WY_OK);
        assert_int_equal(actor_apply_packed(&s, s.seq + 1, log[n].ev[0].data, log[n].ev[0].len),
                         WY_OK);
        n++;
    }
    actor_view_t v;
    actor_view_init(&v, &s);
    assert_non_null(v.c.npc);
    assert_string_equal(v.c.npc->kind, "boss");
    assert_int_equal(v.c.npc->kills, 3);
    actor_view_clear(&v);
    for (size_t cut = 1; cut <= n; cut++) {
        actor_state_t part, back;
        actor_state_init(&part, NPC);
        actor_state_init(&back, NPC);
        for (size_t i = 0; i < cut; i++)
            assert_int_equal(actor_apply_packed(&part, i + 1, log[i].ev[0].data, log[i].ev[0].len),
                             WY_OK);
        size_t len;
        uint8_t *snap = actor_snapshot_encode(&part, &len);
        assert_int_equal(actor_snapshot_decode(&back, snap, len), WY_OK);
        wy_free(snap);
        assert_true(actor_state_equal(&part, &back));
        for (size_t i = cut; i < n; i++)
            assert_int_equal(actor_apply_packed(&back, i + 1, log[i].ev[0].data, log[i].ev[0].len),
                             WY_OK);
        assert_true(actor_state_equal(&back, &s));
        actor_state_clear(&part);
        actor_state_clear(&back);
    }
    for (size_t i = 0; i < n; i++)
        actor_events_clear(&log[i]);
    actor_state_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_shape),
        cmocka_unit_test(test_merchant_stock_and_till),
        cmocka_unit_test(test_boss_kill_and_respawn_time),
        cmocka_unit_test(test_snapshot_plus_tail_equals_full_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
