/* Unit tests for wy-actor's pure character logic (services/actor/character.c): events
 * applied to a state, commands decided into events or refusals, names, snapshots, and
 * state from snapshot + tail equal to the state from a full replay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/actor/character.c"
#include "../../../services/actor/friends.c"
#include "../../../services/actor/npc.c"

#define ID   "3f2a0c4e-1b2d-4c3e-8f40-5a6b7c8d9e0f"
#define ACCT "11111111-2222-4333-8444-555555555555"
#define NOW  1700000000000LL
#define DAY  86400000LL

/* A created character at seq 1. */
static void created(actor_state_t *s)
{
    actor_state_init(s, ID);
    actor_event_t ev;
    actor_event_created(ACCT, "Aria", "mage", NOW, &ev);
    assert_int_equal(actor_apply_packed(s, 1, ev.data, ev.len), WY_OK);
    wy_free(ev.data);
}

/* Decides c on s and applies what it produced, as the store does after the commit.
 * Returns the decision; *n_events (may be NULL) gets how many events it wrote. */
static int run(actor_state_t *s, const actor_cmd_t *c, int64_t now, size_t *n_events)
{
    actor_events_t out = {0};
    char why[128] = "";
    int rc = actor_decide(s, c, now, DAY, &out, why, sizeof why);
    if (rc != WY_OK) {
        assert_int_equal(out.n, 0);
        assert_true(why[0] != '\0');
    }
    for (size_t i = 0; i < out.n; i++)
        assert_int_equal(actor_apply_packed(s, s->seq + 1, out.ev[i].data, out.ev[i].len), WY_OK);
    if (n_events)
        *n_events = out.n;
    actor_events_clear(&out);
    return rc;
}

static actor_cmd_t cmd(actor_cmd_kind_t kind, uint64_t amount, const char *item)
{
    actor_cmd_t c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.amount = amount;
    snprintf(c.item, sizeof c.item, "%s", item ? item : "");
    return c;
}

static void test_level_curve(void **state)
{
    (void)state;
    assert_int_equal(actor_level_for_xp(0), 1);
    assert_int_equal(actor_level_for_xp(99), 1);
    assert_int_equal(actor_level_for_xp(100), 2);
    assert_int_equal(actor_level_for_xp(299), 2);
    assert_int_equal(actor_level_for_xp(300), 3);
    assert_int_equal(actor_level_for_xp(50ull * 100 * 99), 100);
    assert_int_equal(actor_level_for_xp(ACTOR_MAX_XP), 100);
}

static void test_created_sets_identity(void **state)
{
    (void)state;
    actor_state_t s;
    created(&s);
    assert_string_equal(s.account_id, ACCT);
    assert_string_equal(s.name, "Aria");
    assert_string_equal(s.class_name, "mage");
    assert_int_equal(s.level, 1);
    assert_int_equal(s.seq, 1);
    assert_int_equal(s.created_at_ms, NOW);
    actor_state_clear(&s);
}

static void test_apply_refuses_out_of_order_and_misplaced_events(void **state)
{
    (void)state;
    actor_state_t s;
    actor_state_init(&s, ID);
    Wyvern__Actor__XpGained xp = WYVERN__ACTOR__XP_GAINED__INIT;
    xp.amount = 5;
    Wyvern__Actor__Event ev = WYVERN__ACTOR__EVENT__INIT;
    ev.body_case = WYVERN__ACTOR__EVENT__BODY_XP_GAINED;
    ev.xp_gained = &xp;
    /* The first event of a character must be "created". */
    assert_int_equal(actor_apply(&s, 1, &ev), WY_EINVAL);
    created(&s);
    assert_int_equal(actor_apply(&s, 3, &ev), WY_ESTATE); /* a gap */
    assert_int_equal(actor_apply(&s, 1, &ev), WY_ESTATE); /* a repeat */
    assert_int_equal(s.xp, 0);
    assert_int_equal(actor_apply(&s, 2, &ev), WY_OK);
    assert_int_equal(s.xp, 5);
    /* A second "created" does not fit; an unknown body (a newer version) neither. */
    actor_event_t c;
    actor_event_created(ACCT, "Other", "rogue", NOW, &c);
    assert_int_equal(actor_apply_packed(&s, 3, c.data, c.len), WY_EINVAL);
    wy_free(c.data);
    Wyvern__Actor__Event unknown = WYVERN__ACTOR__EVENT__INIT;
    assert_int_equal(actor_apply(&s, 3, &unknown), WY_EINVAL);
    assert_int_equal(actor_apply_packed(&s, 3, (const uint8_t *)"\xff\xff", 2), WY_EIO);
    assert_string_equal(s.name, "Aria");
    assert_int_equal(s.seq, 2);
    actor_state_clear(&s);
}

static void test_xp_levels_up_with_an_event(void **state)
{
    (void)state;
    actor_state_t s;
    created(&s);
    size_t n = 0;
    actor_cmd_t c = cmd(ACTOR_CMD_GAIN_XP, 99, NULL);
    assert_int_equal(run(&s, &c, NOW, &n), WY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(s.level, 1);
    c.amount = 250; /* 349: level 3 */
    assert_int_equal(run(&s, &c, NOW, &n), WY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(s.xp, 349);
    assert_int_equal(s.level, 3);
    assert_int_equal(s.seq, 4);
    actor_state_clear(&s);
}

static void test_inventory_counts(void **state)
{
    (void)state;
    actor_state_t s;
    created(&s);
    actor_cmd_t add = cmd(ACTOR_CMD_ADD_ITEM, 3, "sword");
    actor_cmd_t potion = cmd(ACTOR_CMD_ADD_ITEM, 10, "potion");
    actor_cmd_t rem = cmd(ACTOR_CMD_REMOVE_ITEM, 4, "sword");
    assert_int_equal(run(&s, &add, NOW, NULL), WY_OK);
    assert_int_equal(run(&s, &potion, NOW, NULL), WY_OK);
    assert_int_equal(run(&s, &add, NOW, NULL), WY_OK);
    assert_int_equal(actor_state_items(&s, "sword"), 6);
    assert_int_equal(s.n_items, 2);
    assert_string_equal(s.items[0].item, "potion"); /* sorted */
    assert_int_equal(run(&s, &rem, NOW, NULL), WY_OK);
    assert_int_equal(actor_state_items(&s, "sword"), 2);
    uint64_t seq = s.seq;
    assert_int_equal(run(&s, &rem, NOW, NULL), WY_ESTATE); /* only 2 left */
    assert_int_equal(s.seq, seq);
    rem.amount = 2;
    assert_int_equal(run(&s, &rem, NOW, NULL), WY_OK);
    assert_int_equal(actor_state_items(&s, "sword"), 0);
    assert_int_equal(s.n_items, 1); /* the empty stack is gone */
    actor_cmd_t none = cmd(ACTOR_CMD_REMOVE_ITEM, 1, "shield");
    assert_int_equal(run(&s, &none, NOW, NULL), WY_ESTATE);
    actor_state_clear(&s);
}

static void test_inventory_bounds(void **state)
{
    (void)state;
    actor_state_t s;
    created(&s);
    char item[16];
    for (int i = 0; i < ACTOR_MAX_STACKS; i++) {
        snprintf(item, sizeof item, "i%03d", i);
        actor_cmd_t c = cmd(ACTOR_CMD_ADD_ITEM, 1, item);
        assert_int_equal(run(&s, &c, NOW, NULL), WY_OK);
    }
    actor_cmd_t more = cmd(ACTOR_CMD_ADD_ITEM, 1, "zzz");
    assert_int_equal(run(&s, &more, NOW, NULL), WY_ELIMIT);
    actor_cmd_t same = cmd(ACTOR_CMD_ADD_ITEM, 5, "i000"); /* an existing stack still grows */
    assert_int_equal(run(&s, &same, NOW, NULL), WY_OK);
    assert_int_equal(actor_state_items(&s, "i000"), 6);
    actor_state_clear(&s);
}

static void test_currency_never_negative(void **state)
{
    (void)state;
    actor_state_t s;
    created(&s);
    actor_cmd_t earn = cmd(ACTOR_CMD_EARN, 50, NULL);
    actor_cmd_t spend = cmd(ACTOR_CMD_SPEND, 30, NULL);
    assert_int_equal(run(&s, &earn, NOW, NULL), WY_OK);
    assert_int_equal(run(&s, &spend, NOW, NULL), WY_OK);
    assert_int_equal(s.gold, 20);
    assert_int_equal(run(&s, &spend, NOW, NULL), WY_ESTATE);
    assert_int_equal(s.gold, 20);
    /* A spend event that passes the balance (a log edited by hand) floors at 0. */
    Wyvern__Actor__CurrencySpent sp = WYVERN__ACTOR__CURRENCY_SPENT__INIT;
    sp.amount = 1000;
    Wyvern__Actor__Event ev = WYVERN__ACTOR__EVENT__INIT;
    ev.body_case = WYVERN__ACTOR__EVENT__BODY_CURRENCY_SPENT;
    ev.currency_spent = &sp;
    assert_int_equal(actor_apply(&s, s.seq + 1, &ev), WY_OK);
    assert_int_equal(s.gold, 0);
    actor_state_clear(&s);
}

static void test_move_sets_position(void **state)
{
    (void)state;
    actor_state_t s;
    created(&s);
    actor_cmd_t m = cmd(ACTOR_CMD_MOVE, 0, NULL);
    snprintf(m.zone, sizeof m.zone, "forest");
    m.x = 1.5f;
    m.y = -2;
    m.z = 3;
    assert_int_equal(run(&s, &m, NOW, NULL), WY_OK);
    assert_string_equal(s.zone, "forest");
    assert_true(s.x == 1.5f && s.y == -2 && s.z == 3);
    actor_state_clear(&s);
}

static void test_delete_and_restore(void **state)
{
    (void)state;
    actor_state_t s;
    created(&s);
    actor_cmd_t del = cmd(ACTOR_CMD_DELETE, 0, NULL);
    actor_cmd_t res = cmd(ACTOR_CMD_RESTORE, 0, NULL);
    actor_cmd_t xp = cmd(ACTOR_CMD_GAIN_XP, 1, NULL);
    size_t n = 9;
    assert_int_equal(run(&s, &res, NOW, &n), WY_OK); /* not deleted: nothing to do */
    assert_int_equal(n, 0);
    assert_int_equal(run(&s, &del, NOW, &n), WY_OK);
    assert_int_equal(n, 1);
    assert_true(s.deleted);
    assert_int_equal(s.deleted_at_ms, NOW);
    assert_int_equal(run(&s, &del, NOW + 5, &n), WY_OK); /* twice: no second event */
    assert_int_equal(n, 0);
    assert_int_equal(run(&s, &xp, NOW, NULL), WY_ESTATE);  /* a deleted character refuses */
    assert_int_equal(run(&s, &res, NOW + DAY, &n), WY_OK); /* the window's last ms */
    assert_int_equal(n, 1);
    assert_false(s.deleted);
    assert_int_equal(run(&s, &del, NOW + 2 * DAY, NULL), WY_OK);
    assert_int_equal(run(&s, &res, NOW + 3 * DAY + 1, NULL), WY_ESTATE); /* too late */
    assert_true(s.deleted);
    actor_state_clear(&s);
}

static void test_decide_without_character(void **state)
{
    (void)state;
    actor_state_t s;
    actor_state_init(&s, ID);
    actor_cmd_t c = cmd(ACTOR_CMD_GAIN_XP, 1, NULL);
    assert_int_equal(run(&s, &c, NOW, NULL), WY_ENOTFOUND);
    actor_state_clear(&s);
}

static void test_request_shapes(void **state)
{
    (void)state;
    Wyvern__Actor__ApplyRequest r = WYVERN__ACTOR__APPLY_REQUEST__INIT;
    actor_cmd_t c;
    const char *why = NULL;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_EINVAL); /* no command */
    assert_non_null(strstr(why, "no command"));

    Wyvern__Actor__GainXp xp = WYVERN__ACTOR__GAIN_XP__INIT;
    r.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_GAIN_XP;
    r.gain_xp = &xp;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_EINVAL); /* amount 0 */
    xp.amount = ACTOR_MAX_XP_GAIN + 1;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_EINVAL);
    xp.amount = 10;
    xp.source = "quest:1";
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_OK);
    assert_int_equal(c.kind, ACTOR_CMD_GAIN_XP);
    assert_string_equal(c.text, "quest:1");
    char long_text[80];
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = 0;
    xp.source = long_text;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_EINVAL);

    Wyvern__Actor__AddItem add = WYVERN__ACTOR__ADD_ITEM__INIT;
    r.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_ADD_ITEM;
    r.add_item = &add;
    add.count = 1;
    add.item = "Sword"; /* upper case is not an item id */
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_EINVAL);
    add.item = "sword.iron:2";
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_OK);
    assert_string_equal(c.item, "sword.iron:2");

    Wyvern__Actor__Position p = WYVERN__ACTOR__POSITION__INIT;
    Wyvern__Actor__Move mv = WYVERN__ACTOR__MOVE__INIT;
    r.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_MOVE;
    r.move = &mv;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_EINVAL); /* no position */
    mv.position = &p;
    p.zone = "forest";
    p.x = NAN;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_EINVAL);
    p.x = 2e6f;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_EINVAL);
    p.x = 10;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_OK);

    Wyvern__Actor__SpendCurrency sp = WYVERN__ACTOR__SPEND_CURRENCY__INIT;
    r.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_SPEND_CURRENCY;
    r.spend_currency = &sp;
    sp.amount = ACTOR_MAX_GOLD_MOVE + 1ull;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_EINVAL);
    sp.amount = 7;
    assert_int_equal(actor_cmd_from_request(&r, &c, &why), WY_OK);
    assert_int_equal(c.kind, ACTOR_CMD_SPEND);
}

/* An event written by an older version (ItemAdded without `source`) and one from a newer
 * version (with a field this version does not know) both load. Bytes packed by hand. */
static void test_old_and_new_event_versions_load(void **state)
{
    (void)state;
    actor_state_t s;
    created(&s);
    /* Event{at_ms=5 (field 1), item_added (field 13) {item="sword" (1), count=3 (2)}} */
    static const uint8_t old_event[] = {0x08, 0x05, 0x6a, 0x09, 0x0a, 0x05, 's',
                                        'w',  'o',  'r',  'd',  0x10, 0x03};
    assert_int_equal(actor_apply_packed(&s, 2, old_event, sizeof old_event), WY_OK);
    assert_int_equal(actor_state_items(&s, "sword"), 3);
    /* The same with field 15 (varint 1) inside ItemAdded, unknown to this version. */
    static const uint8_t new_event[] = {0x08, 0x05, 0x6a, 0x0b, 0x0a, 0x05, 's', 'w',
                                        'o',  'r',  'd',  0x10, 0x02, 0x78, 0x01};
    assert_int_equal(actor_apply_packed(&s, 3, new_event, sizeof new_event), WY_OK);
    assert_int_equal(actor_state_items(&s, "sword"), 5);
    /* old_event was stored before Event had actor_id (2) and seq (3): they read as absent.
     * The wy.actor form (publish.c) is the stored bytes with them appended: the same event
     * with both set, and it applies the same. */
    Wyvern__Actor__Event *e = wyvern__actor__event__unpack(NULL, sizeof old_event, old_event);
    assert_non_null(e);
    assert_string_equal(e->actor_id, "");
    assert_int_equal(e->seq, 0);
    wyvern__actor__event__free_unpacked(e, NULL);
    uint8_t published[sizeof old_event + 8];
    memcpy(published, old_event, sizeof old_event);
    static const uint8_t tail[] = {0x12, 0x04, 'a', 'b', 'c', 'd', 0x18, 0x04};
    memcpy(published + sizeof old_event, tail, sizeof tail);
    e = wyvern__actor__event__unpack(NULL, sizeof published, published);
    assert_non_null(e);
    assert_string_equal(e->actor_id, "abcd");
    assert_int_equal(e->seq, 4);
    assert_int_equal(e->item_added->count, 3);
    wyvern__actor__event__free_unpacked(e, NULL);
    assert_int_equal(actor_apply_packed(&s, 4, published, sizeof published), WY_OK);
    assert_int_equal(actor_state_items(&s, "sword"), 8);
    /* An old snapshot: only actor_id (1), name (3), level (5) and seq (13). */
    static const uint8_t old_snap[] = {0x0a, 0x04, 'a', 'b',  'c',  'd',  0x1a, 0x03,
                                       'B',  'o',  'b', 0x28, 0x07, 0x68, 0x09};
    actor_state_t t;
    actor_state_init(&t, ID);
    assert_int_equal(actor_snapshot_decode(&t, old_snap, sizeof old_snap), WY_OK);
    assert_string_equal(t.name, "Bob");
    assert_int_equal(t.level, 7);
    assert_int_equal(t.seq, 9);
    assert_int_equal(t.gold, 0);
    assert_int_equal(t.n_items, 0);
    actor_state_clear(&t);
    actor_state_clear(&s);
}

static void test_snapshot_round_trip_and_garbage(void **state)
{
    (void)state;
    actor_state_t s, t;
    created(&s);
    actor_cmd_t a = cmd(ACTOR_CMD_ADD_ITEM, 4, "gem");
    actor_cmd_t e = cmd(ACTOR_CMD_EARN, 99, NULL);
    run(&s, &a, NOW, NULL);
    run(&s, &e, NOW, NULL);
    size_t len = 0;
    uint8_t *snap = actor_snapshot_encode(&s, &len);
    actor_state_init(&t, ID);
    assert_int_equal(actor_snapshot_decode(&t, snap, len), WY_OK);
    assert_true(actor_state_equal(&s, &t));
    /* Garbage and a snapshot that breaks a bound are refused; t stays as it was. */
    assert_int_equal(actor_snapshot_decode(&t, (const uint8_t *)"\x0a\xff", 2), WY_EIO);
    s.gold = ACTOR_MAX_GOLD + 1;
    uint8_t *bad = actor_snapshot_encode(&s, &len);
    assert_int_equal(actor_snapshot_decode(&t, bad, len), WY_EIO);
    assert_int_equal(t.gold, 99);
    wy_free(bad);
    wy_free(snap);
    actor_state_clear(&s);
    actor_state_clear(&t);
}

/* A character driven by 2,000 pseudo-random commands: the state from a snapshot taken
 * on the way plus the events after it equals the state from replaying every event. */
static void test_snapshot_plus_tail_equals_full_replay(void **state)
{
    (void)state;
    enum { N = 2000, SNAP_AT = 1234 };
    actor_state_t live, snap_state, full, from_snap;
    created(&live);
    /* Every event as written, in order (seq i + 1 at index i). */
    actor_event_t *log = wy_calloc(2 * N + 2, sizeof *log);
    size_t n_log = 0;
    actor_event_created(ACCT, "Aria", "mage", NOW, &log[n_log++]);
    actor_state_init(&snap_state, ID);
    uint32_t rnd = 12345;
    static const char *const items[] = {"sword", "potion", "gem", "arrow"};
    for (int i = 0; i < N; i++) {
        rnd = rnd * 1103515245u + 12345u;
        actor_cmd_t c =
            cmd((actor_cmd_kind_t)((rnd >> 16) % 6), 1 + (rnd >> 8) % 500, items[(rnd >> 4) % 4]);
        if (c.kind == ACTOR_CMD_MOVE) {
            snprintf(c.zone, sizeof c.zone, "z%u", rnd % 7);
            c.x = (float)(rnd % 1000);
        }
        actor_events_t out = {0};
        char why[128];
        if (actor_decide(&live, &c, NOW + i, DAY, &out, why, sizeof why) == WY_OK) {
            for (size_t k = 0; k < out.n; k++) {
                assert_int_equal(
                    actor_apply_packed(&live, live.seq + 1, out.ev[k].data, out.ev[k].len), WY_OK);
                log[n_log++] = out.ev[k]; /* the log owns the payload now */
            }
            out.n = 0;
        }
        if (snap_state.seq == 0 && live.seq >= SNAP_AT)
            actor_state_copy(&snap_state, &live);
    }
    assert_int_equal(n_log, live.seq);
    assert_true(live.seq > SNAP_AT && snap_state.seq >= SNAP_AT);
    assert_true(live.n_items > 0 && live.gold > 0 && live.level > 1);

    actor_state_init(&full, ID);
    for (size_t i = 0; i < n_log; i++)
        assert_int_equal(actor_apply_packed(&full, i + 1, log[i].data, log[i].len), WY_OK);
    assert_true(actor_state_equal(&full, &live));

    size_t len = 0;
    uint8_t *snap = actor_snapshot_encode(&snap_state, &len);
    actor_state_init(&from_snap, ID);
    assert_int_equal(actor_snapshot_decode(&from_snap, snap, len), WY_OK);
    for (size_t i = snap_state.seq; i < n_log; i++)
        assert_int_equal(actor_apply_packed(&from_snap, i + 1, log[i].data, log[i].len), WY_OK);
    assert_true(actor_state_equal(&from_snap, &full));

    for (size_t i = 0; i < n_log; i++)
        wy_free(log[i].data);
    wy_free(log);
    wy_free(snap);
    actor_state_clear(&live);
    actor_state_clear(&snap_state);
    actor_state_clear(&full);
    actor_state_clear(&from_snap);
}

static void test_names(void **state)
{
    (void)state;
    char *d = NULL, *k1 = NULL, *k2 = NULL;
    const char *why = NULL;
    assert_int_equal(actor_name_check("Ｐlayer", strlen("Ｐlayer"), &d, &k1, &why), WY_OK);
    assert_string_equal(d, "Player");
    wy_free(d);
    assert_int_equal(actor_name_check("PLAYER", 6, &d, &k2, &why), WY_OK);
    assert_string_equal(k1, k2); /* the same unique key */
    wy_free(d);
    wy_free(k1);
    wy_free(k2);
    assert_int_equal(actor_name_check("Ærwyn", strlen("Ærwyn"), &d, &k1, &why), WY_OK);
    wy_free(d);
    wy_free(k1);
    assert_int_equal(actor_name_check("O'Neil", 6, &d, &k1, &why), WY_OK);
    wy_free(d);
    wy_free(k1);
    static const char *const bad[] = {"ab",    "abcdefghijklmnopq", "two words", "-dash",
                                      "dash-", "p\xd0\xb0ypal",     "\xff\xfe"};
    for (size_t i = 0; i < WY_ARRAY_LEN(bad); i++) {
        why = NULL;
        assert_int_equal(actor_name_check(bad[i], strlen(bad[i]), &d, &k1, &why), WY_EINVAL);
        assert_null(d);
        assert_null(k1);
        assert_non_null(why);
    }
}

static void test_ids(void **state)
{
    (void)state;
    assert_true(actor_uuid_valid(ID));
    assert_false(actor_uuid_valid("3F2A0C4E-1B2D-4C3E-8F40-5A6B7C8D9E0F")); /* not canonical */
    assert_false(actor_uuid_valid("3f2a0c4e1b2d4c3e8f405a6b7c8d9e0f"));
    assert_false(actor_uuid_valid(NULL));
    assert_int_equal(actor_shard(ID), 0x3f);
    assert_int_equal(actor_shard("ff2a0c4e-1b2d-4c3e-8f40-5a6b7c8d9e0f"), 255);
    assert_int_equal(actor_shard("nope"), -1);
    assert_true(actor_class_check("dark_knight"));
    assert_false(actor_class_check(""));
    assert_false(actor_class_check("Mage"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_curve),
        cmocka_unit_test(test_created_sets_identity),
        cmocka_unit_test(test_apply_refuses_out_of_order_and_misplaced_events),
        cmocka_unit_test(test_xp_levels_up_with_an_event),
        cmocka_unit_test(test_inventory_counts),
        cmocka_unit_test(test_inventory_bounds),
        cmocka_unit_test(test_currency_never_negative),
        cmocka_unit_test(test_move_sets_position),
        cmocka_unit_test(test_delete_and_restore),
        cmocka_unit_test(test_decide_without_character),
        cmocka_unit_test(test_request_shapes),
        cmocka_unit_test(test_old_and_new_event_versions_load),
        cmocka_unit_test(test_snapshot_round_trip_and_garbage),
        cmocka_unit_test(test_snapshot_plus_tail_equals_full_replay),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
