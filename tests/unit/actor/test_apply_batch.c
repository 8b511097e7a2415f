/* Unit tests for wy-actor's ApplyBatch, the parts without the store or gRPC
 * (services/actor/apply_batch.c): the check of one Apply request, the bound of a call, and
 * a call's answer built from its commands' outcomes (each its own code, message and
 * response; the character left out on request). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../services/actor/apply_batch.c"
#include "../../../services/actor/character.c"
#include "../../../services/actor/friends.c"
#include "../../../services/actor/npc.c"

#define ID   "3f2a0c4e-1b2d-4c3e-8f40-5a6b7c8d9e0f"
#define ACCT "11111111-2222-4333-8444-555555555555"

static Wyvern__Actor__ApplyRequest earn_request(const char *id, const char *key, uint64_t amount,
                                                Wyvern__Actor__EarnCurrency *e)
{
    wyvern__actor__earn_currency__init(e);
    e->amount = amount;
    Wyvern__Actor__ApplyRequest r = WYVERN__ACTOR__APPLY_REQUEST__INIT;
    r.actor_id = (char *)id;
    r.idempotency_key = (char *)key;
    r.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_EARN_CURRENCY;
    r.earn_currency = e;
    return r;
}

static void test_apply_check_accepts_a_valid_command(void **state)
{
    (void)state;
    Wyvern__Actor__EarnCurrency e;
    Wyvern__Actor__ApplyRequest in = earn_request(ID, "pay-1", 5, &e);
    actor_req_t r;
    memset(&r, 0, sizeof r);
    const char *why = NULL;
    assert_int_equal(actor_apply_check(&in, &r, &why), WY_OK);
    assert_string_equal(r.key, "pay-1");
    assert_int_equal(r.cmd.kind, ACTOR_CMD_EARN);
    assert_int_equal(r.cmd.amount, 5);
}

static void test_apply_check_refuses_each_bad_field(void **state)
{
    (void)state;
    char long_key[ACTOR_KEY_MAX + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = 0;
    static const struct {
        const char *id, *key;
        uint64_t amount;
        const char *why;
    } cases[] = {
        {"not-a-uuid", "k", 1, "actor_id must be a lower-case UUID"},
        {"3F2A0C4E-1B2D-4C3E-8F40-5A6B7C8D9E0F", "k", 1, "actor_id must be a lower-case UUID"},
        {ID, "", 1, "idempotency_key must be 1..128 bytes of UTF-8"},
        {ID, "\xff\xfe", 1, "idempotency_key must be 1..128 bytes of UTF-8"},
        {ID, NULL, 1, "idempotency_key must be 1..128 bytes of UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Wyvern__Actor__EarnCurrency e;
        Wyvern__Actor__ApplyRequest in =
            earn_request(cases[i].id, cases[i].key, cases[i].amount, &e);
        actor_req_t r;
        memset(&r, 0, sizeof r);
        const char *why = NULL;
        assert_int_equal(actor_apply_check(&in, &r, &why), WY_EINVAL);
        assert_string_equal(why, cases[i].why);
    }
    /* A key one byte over the bound, an amount out of bounds, no command at all. */
    Wyvern__Actor__EarnCurrency e;
    Wyvern__Actor__ApplyRequest in = earn_request(ID, long_key, 1, &e);
    actor_req_t r;
    memset(&r, 0, sizeof r);
    const char *why = NULL;
    assert_int_equal(actor_apply_check(&in, &r, &why), WY_EINVAL);
    in = earn_request(ID, "k", 0, &e);
    why = NULL;
    assert_int_equal(actor_apply_check(&in, &r, &why), WY_EINVAL);
    assert_non_null(why);
    in.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND__NOT_SET;
    why = NULL;
    assert_int_equal(actor_apply_check(&in, &r, &why), WY_EINVAL);
    assert_non_null(why);
}

static void test_batch_bound(void **state)
{
    (void)state;
    char why[160];
    assert_int_equal(actor_apply_batch_check(1, 256, why, sizeof why), WY_OK);
    assert_int_equal(actor_apply_batch_check(256, 256, why, sizeof why), WY_OK);
    assert_int_equal(actor_apply_batch_check(0, 256, why, sizeof why), WY_EINVAL);
    assert_non_null(strstr(why, "no command"));
    assert_int_equal(actor_apply_batch_check(257, 256, why, sizeof why), WY_EINVAL);
    assert_non_null(strstr(why, "257 commands, at most 256 per call"));
    assert_non_null(strstr(why, "WY_ACTOR_APPLY_BATCH_MAX"));
}

/* The answer's copy, taken inside send (the response is valid during the call only). */
typedef struct {
    uint8_t *packed;
    size_t len;
} sent_t;

static void keep(const Wyvern__Actor__ApplyBatchResponse *out, void *ud)
{
    sent_t *s = ud;
    s->len = wyvern__actor__apply_batch_response__get_packed_size(out);
    s->packed = wy_malloc(s->len ? s->len : 1);
    wyvern__actor__apply_batch_response__pack(out, s->packed);
}

/* Three commands: one applied, one refused by the character's state, one malformed. */
static Wyvern__Actor__ApplyBatchResponse *answer_of_three(bool omit)
{
    actor_state_t s;
    actor_state_init(&s, ID);
    actor_event_t ev;
    actor_event_created(ACCT, "Aria", "mage", 1700000000000LL, &ev);
    assert_int_equal(actor_apply_packed(&s, 1, ev.data, ev.len), WY_OK);
    wy_free(ev.data);
    actor_view_t v;
    actor_view_init(&v, &s);
    Wyvern__Actor__ApplyResponse res = WYVERN__ACTOR__APPLY_RESPONSE__INIT;
    res.seq = 7;
    res.replayed = true;
    res.character = &v.c;

    actor_apply_batch_t *b = wy_calloc(1, sizeof *b);
    b->omit_character = omit;
    b->n = 3;
    b->items = wy_calloc(b->n, sizeof *b->items);
    actor_apply_batch_item_done(b, 0, WY_OK, NULL, &res);
    actor_apply_batch_item_done(b, 1, WY_ESTATE, "not enough gold", NULL);
    actor_apply_batch_item_done(b, 2, WY_EINVAL, "idempotency_key must be 1..128 bytes of UTF-8",
                                NULL);
    actor_view_clear(&v);
    actor_state_clear(&s);
    sent_t sent = {0};
    actor_apply_batch_answer(b, keep, &sent);
    actor_apply_batch_free(b);
    Wyvern__Actor__ApplyBatchResponse *out =
        wyvern__actor__apply_batch_response__unpack(NULL, sent.len, sent.packed);
    wy_free(sent.packed);
    assert_non_null(out);
    return out;
}

static void test_answer_has_one_result_per_command(void **state)
{
    (void)state;
    Wyvern__Actor__ApplyBatchResponse *out = answer_of_three(false);
    assert_int_equal(out->n_results, 3);
    assert_int_equal(out->results[0]->code, 0);
    assert_non_null(out->results[0]->response);
    assert_int_equal(out->results[0]->response->seq, 7);
    assert_true(out->results[0]->response->replayed);
    assert_non_null(out->results[0]->response->character);
    assert_string_equal(out->results[0]->response->character->actor_id, ID);
    assert_string_equal(out->results[0]->response->character->name, "Aria");
    assert_int_equal(out->results[1]->code, 9); /* FAILED_PRECONDITION */
    assert_string_equal(out->results[1]->message, "not enough gold");
    assert_null(out->results[1]->response);
    assert_int_equal(out->results[2]->code, 3); /* INVALID_ARGUMENT */
    assert_null(out->results[2]->response);
    wyvern__actor__apply_batch_response__free_unpacked(out, NULL);
}

static void test_answer_omits_the_character_on_request(void **state)
{
    (void)state;
    Wyvern__Actor__ApplyBatchResponse *out = answer_of_three(true);
    assert_int_equal(out->n_results, 3);
    assert_non_null(out->results[0]->response);
    assert_int_equal(out->results[0]->response->seq, 7);
    assert_true(out->results[0]->response->replayed);
    assert_null(out->results[0]->response->character);
    assert_int_equal(out->results[1]->code, 9);
    wyvern__actor__apply_batch_response__free_unpacked(out, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_check_accepts_a_valid_command),
        cmocka_unit_test(test_apply_check_refuses_each_bad_field),
        cmocka_unit_test(test_batch_bound),
        cmocka_unit_test(test_answer_has_one_result_per_command),
        cmocka_unit_test(test_answer_omits_the_character_on_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
