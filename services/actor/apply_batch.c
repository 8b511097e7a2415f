/* wy-actor: ApplyBatch (proto/actor.proto), the parts that touch neither the store nor gRPC:
 * the check an Apply request goes through (Apply and each command of a batch), the bound of
 * a call, and a call's answer built from its commands' outcomes. The call itself is in
 * handlers_grpc.c. Loop thread. */
#include "actor.h"
#include "wy_text.h"

#include <stdio.h>
#include <string.h>

int actor_apply_check(const Wyvern__Actor__ApplyRequest *in, actor_req_t *r, const char **why)
{
    if (!actor_uuid_valid(in->actor_id)) {
        *why = "actor_id must be a lower-case UUID";
        return WY_EINVAL;
    }
    size_t klen = in->idempotency_key ? strlen(in->idempotency_key) : 0;
    if (klen == 0 || klen > ACTOR_KEY_MAX || !wy_text_valid_utf8(in->idempotency_key, klen)) {
        *why = "idempotency_key must be 1..128 bytes of UTF-8";
        return WY_EINVAL;
    }
    if (actor_cmd_from_request(in, &r->cmd, why) != WY_OK)
        return WY_EINVAL;
    memcpy(r->key, in->idempotency_key, klen + 1);
    return WY_OK;
}

int actor_apply_batch_check(size_t n, int64_t max, char *why, size_t why_len)
{
    if (n == 0) {
        snprintf(why, why_len, "ApplyBatch: no command (1..%lld per call)", (long long)max);
        return WY_EINVAL;
    }
    if ((int64_t)n > max) {
        snprintf(why, why_len,
                 "ApplyBatch: %zu commands, at most %lld per call (WY_ACTOR_APPLY_BATCH_MAX); "
                 "split the batch",
                 n, (long long)max);
        return WY_EINVAL;
    }
    return WY_OK;
}

void actor_apply_batch_item_done(actor_apply_batch_t *b, size_t i, int status, const char *msg,
                                 const Wyvern__Actor__ApplyResponse *res)
{
    actor_apply_item_t *it = &b->items[i];
    it->status = status;
    if (status != WY_OK) {
        snprintf(it->msg, sizeof it->msg, "%s", msg ? msg : wy_strerror(status));
        return;
    }
    it->seq = res->seq;
    it->replayed = res->replayed;
    if (b->omit_character || !res->character)
        return;
    it->len = wyvern__actor__character__get_packed_size(res->character);
    it->character = wy_malloc(it->len ? it->len : 1);
    wyvern__actor__character__pack(res->character, it->character);
}

void actor_apply_batch_answer(const actor_apply_batch_t *b,
                              void (*send)(const Wyvern__Actor__ApplyBatchResponse *, void *),
                              void *ud)
{
    size_t n = b->n ? b->n : 1;
    Wyvern__Actor__ApplyResult *rs = wy_calloc(n, sizeof *rs);
    Wyvern__Actor__ApplyResult **rp = wy_calloc(n, sizeof *rp);
    Wyvern__Actor__ApplyResponse *resp = wy_calloc(n, sizeof *resp);
    Wyvern__Actor__Character **chars = wy_calloc(n, sizeof *chars);
    for (size_t i = 0; i < b->n; i++) {
        const actor_apply_item_t *it = &b->items[i];
        wyvern__actor__apply_result__init(&rs[i]);
        rp[i] = &rs[i];
        if (it->status != WY_OK) {
            rs[i].code = wy_err_grpc(it->status);
            rs[i].message = (char *)it->msg;
            continue;
        }
        wyvern__actor__apply_response__init(&resp[i]);
        resp[i].seq = it->seq;
        resp[i].replayed = it->replayed;
        if (it->character) {
            chars[i] = wyvern__actor__character__unpack(NULL, it->len, it->character);
            resp[i].character = chars[i];
        }
        rs[i].response = &resp[i];
    }
    Wyvern__Actor__ApplyBatchResponse out = WYVERN__ACTOR__APPLY_BATCH_RESPONSE__INIT;
    out.results = rp;
    out.n_results = b->n;
    send(&out, ud);
    for (size_t i = 0; i < b->n; i++)
        if (chars[i])
            wyvern__actor__character__free_unpacked(chars[i], NULL);
    wy_free(chars);
    wy_free(resp);
    wy_free(rp);
    wy_free(rs);
}

void actor_apply_batch_free(actor_apply_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        wy_free(b->items[i].character);
    wy_free(b->items);
    wy_free(b);
}
