/* wy-actor's gRPC API (wyvern.actor.Actor, proto/actor.proto): each handler checks its
 * request, copies what the store needs (the request lives only as long as the handler)
 * and hands a request to the store (store.c), which answers through the call's id, so a
 * late answer to a call that is gone is a harmless WY_ECANCELED. Loop thread. */
#include "actor.h"
#include "rankings.h"
#include "txn.h"
#include "txn_remote.h"
#include "wy_log.h"
#include "wy_text.h"

#include <string.h>

typedef enum { REPLY_APPLY, REPLY_CHARACTER } reply_kind_t;

typedef struct {
    actor_req_t req;
    wy_grpc_call_id_t call;
    reply_kind_t kind;
} hop_t;

/* The service, or NULL (and the call answered UNAVAILABLE) once it is stopping. */
static actor_svc_t *svc_or_refuse(void *arg, wy_grpc_call_id_t call)
{
    actor_svc_t *svc = wy_daemon_state(arg);
    if (!svc || svc->stopping) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-actor is stopping");
        return NULL;
    }
    return svc;
}

/* The store's answer as the method's reply: the ApplyResponse or its character. A call
 * that is gone makes this a no-op (WY_ECANCELED). */
static void reply(wy_grpc_call_id_t call, reply_kind_t kind, int status, const char *msg,
                  const Wyvern__Actor__ApplyResponse *res)
{
    if (status != WY_OK)
        wy_grpc_reply_error(call, status, msg);
    else if (kind == REPLY_APPLY)
        wy_grpc_reply(call, &res->base);
    else
        wy_grpc_reply(call, &res->character->base);
}

static void on_hop_done(actor_req_t *r, int status, const char *msg,
                        const Wyvern__Actor__ApplyResponse *res)
{
    hop_t *h = r->ud;
    reply(h->call, h->kind, status, msg, res);
    wy_free(h);
}

static hop_t *hop_new(wy_grpc_call_id_t call, reply_kind_t kind)
{
    hop_t *h = wy_calloc(1, sizeof *h);
    h->call = call;
    h->kind = kind;
    h->req.done = on_hop_done;
    h->req.ud = h;
    return h;
}

static bool id_ok(wy_grpc_call_id_t call, const char *id, const char *what)
{
    if (actor_uuid_valid(id))
        return true;
    char msg[64];
    snprintf(msg, sizeof msg, "%s must be a lower-case UUID", what);
    wy_grpc_reply_error(call, WY_EINVAL, msg);
    return false;
}

/* ---- Apply, Get, Delete, Restore: one actor each ---- */

static void rpc_apply(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__ApplyRequest *in = (const Wyvern__Actor__ApplyRequest *)req;
    actor_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    hop_t *h = hop_new(call, REPLY_APPLY);
    const char *why = NULL;
    if (actor_apply_check(in, &h->req, &why) != WY_OK ||
        actor_forward_metadata(call, &h->req, &why) != WY_OK) {
        wy_grpc_reply_error(call, WY_EINVAL, why);
        wy_free(h);
        return;
    }
    actor_store_submit(svc, in->actor_id, &h->req);
}

static void submit_simple(wy_grpc_call_id_t call, void *arg, const char *actor_id, bool read_only,
                          actor_cmd_kind_t kind)
{
    actor_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc || !id_ok(call, actor_id, "actor_id"))
        return;
    hop_t *h = hop_new(call, REPLY_CHARACTER);
    const char *why = NULL;
    if (actor_forward_metadata(call, &h->req, &why) != WY_OK) {
        wy_grpc_reply_error(call, WY_EINVAL, why);
        wy_free(h);
        return;
    }
    h->req.read_only = read_only;
    h->req.cmd.kind = kind;
    actor_store_submit(svc, actor_id, &h->req);
}

static void rpc_get(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__GetCharacterRequest *in = (const Wyvern__Actor__GetCharacterRequest *)req;
    submit_simple(call, arg, in->actor_id, true, ACTOR_CMD_GAIN_XP /* ignored by a read */);
}

static void rpc_delete(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__DeleteCharacterRequest *in =
        (const Wyvern__Actor__DeleteCharacterRequest *)req;
    submit_simple(call, arg, in->actor_id, false, ACTOR_CMD_DELETE);
}

static void rpc_restore(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__RestoreCharacterRequest *in =
        (const Wyvern__Actor__RestoreCharacterRequest *)req;
    submit_simple(call, arg, in->actor_id, false, ACTOR_CMD_RESTORE);
}

/* ---- ApplyBatch: each command as its own request of the store, one answer ---- */

static void send_reply(const Wyvern__Actor__ApplyBatchResponse *out, void *ud)
{
    const actor_apply_batch_t *b = ud;
    wy_grpc_reply(b->call, &out->base); /* WY_ECANCELED when the caller left: nothing to do */
}

/* One more command answered (or the submitting loop done): the last one answers the call. */
static void batch_step(actor_apply_batch_t *b)
{
    if (--b->pending)
        return;
    actor_apply_batch_answer(b, send_reply, b);
    actor_apply_batch_free(b);
}

static void on_item_done(actor_req_t *r, int status, const char *msg,
                         const Wyvern__Actor__ApplyResponse *res)
{
    actor_apply_item_t *it = WY_CONTAINER_OF(r, actor_apply_item_t, req);
    actor_apply_batch_t *b = r->ud;
    actor_apply_batch_item_done(b, (size_t)(it - b->items), status, msg, res);
    batch_step(b);
}

static void rpc_apply_batch(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__ApplyBatchRequest *in = (const Wyvern__Actor__ApplyBatchRequest *)req;
    actor_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    char why[160];
    if (actor_apply_batch_check(in->n_commands, svc->cfg->apply_batch_max, why, sizeof why) !=
        WY_OK) {
        wy_grpc_reply_error(call, WY_EINVAL, why);
        return;
    }
    actor_apply_batch_t *b = wy_calloc(1, sizeof *b);
    b->call = call;
    b->omit_character = in->omit_character;
    b->n = in->n_commands;
    b->items = wy_calloc(b->n, sizeof *b->items);
    /* + 1 for this loop: a command answered inside its submit cannot end the call early. */
    b->pending = b->n + 1;
    for (size_t i = 0; i < b->n; i++) {
        actor_apply_item_t *it = &b->items[i];
        const char *bad = NULL;
        if (actor_apply_check(in->commands[i], &it->req, &bad) != WY_OK) {
            actor_apply_batch_item_done(b, i, WY_EINVAL, bad, NULL);
            b->pending--;
            continue;
        }
        it->req.done = on_item_done;
        it->req.ud = b;
        actor_store_submit(svc, in->commands[i]->actor_id, &it->req);
    }
    batch_step(b);
}

/* ---- CreateCharacter ---- */

typedef struct {
    actor_create_t c;
    wy_grpc_call_id_t call;
} create_op_t;

static void on_create_done(actor_req_t *r, int status, const char *msg,
                           const Wyvern__Actor__ApplyResponse *res)
{
    create_op_t *op = r->ud;
    reply(op->call, REPLY_CHARACTER, status, msg, res);
    wy_free(op);
}

static void rpc_create(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__CreateCharacterRequest *in =
        (const Wyvern__Actor__CreateCharacterRequest *)req;
    actor_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc || !id_ok(call, in->account_id, "account_id"))
        return;
    if (!actor_class_check(in->class_name)) {
        wy_grpc_reply_error(call, WY_EINVAL, "class_name must be 1..32 of [a-z_]");
        return;
    }
    size_t klen = in->idempotency_key ? strlen(in->idempotency_key) : 0;
    if (klen > ACTOR_KEY_MAX || !wy_text_valid_utf8(in->idempotency_key, klen)) {
        wy_grpc_reply_error(call, WY_EINVAL, "idempotency_key must be 0..128 bytes of UTF-8");
        return;
    }
    char *display = NULL, *key = NULL;
    const char *why = NULL;
    const char *name = in->name ? in->name : "";
    if (actor_name_check(name, strlen(name), &display, &key, &why) != WY_OK) {
        wy_grpc_reply_error(call, WY_EINVAL, why);
        return;
    }
    create_op_t *op = wy_calloc(1, sizeof *op);
    op->call = call;
    actor_create_t *c = &op->c;
    c->req.done = on_create_done;
    c->req.ud = op;
    if (actor_forward_metadata(call, &c->req, &why) != WY_OK) { /* forwarded: never again */
        wy_free(display);
        wy_free(key);
        wy_free(op);
        wy_grpc_reply_error(call, WY_EINVAL, why);
        return;
    }
    snprintf(c->account_id, sizeof c->account_id, "%s", in->account_id);
    snprintf(c->name, sizeof c->name, "%s", display);
    snprintf(c->class_name, sizeof c->class_name, "%s", in->class_name);
    memcpy(c->key, klen ? in->idempotency_key : "", klen + 1);
    c->name_key = key;
    wy_free(display);
    actor_store_create(svc, c);
}

/* ---- ListCharacters: the ids from the index, then each character as a read ---- */

typedef struct list_op list_op_t;

typedef struct {
    actor_req_t req;
    list_op_t *op;
    size_t index;
} list_item_t;

struct list_op {
    wy_grpc_call_id_t call;
    actor_svc_t *svc;
    size_t n, pending;
    list_item_t *items;
    uint8_t **packed; /* Character of item i, packed */
    size_t *len;
    int fail;
    char fail_msg[160];
};

static void list_finish(list_op_t *op)
{
    if (op->fail) {
        wy_grpc_reply_error(op->call, op->fail, op->fail_msg);
    } else {
        Wyvern__Actor__ListCharactersResponse r = WYVERN__ACTOR__LIST_CHARACTERS_RESPONSE__INIT;
        Wyvern__Actor__Character **cs = wy_calloc(op->n ? op->n : 1, sizeof *cs);
        size_t n = 0;
        for (size_t i = 0; i < op->n; i++)
            if (op->packed[i] &&
                (cs[n] = wyvern__actor__character__unpack(NULL, op->len[i], op->packed[i])))
                n++;
        r.characters = cs;
        r.n_characters = n;
        wy_grpc_reply(op->call, &r.base);
        for (size_t i = 0; i < n; i++)
            wyvern__actor__character__free_unpacked(cs[i], NULL);
        wy_free(cs);
    }
    for (size_t i = 0; i < op->n; i++)
        wy_free(op->packed[i]);
    wy_free(op->packed);
    wy_free(op->len);
    wy_free(op->items);
    actor_svc_unref(op->svc);
    wy_free(op);
}

static void on_list_item(actor_req_t *r, int status, const char *msg,
                         const Wyvern__Actor__ApplyResponse *res)
{
    list_item_t *it = r->ud;
    list_op_t *op = it->op;
    if (status == WY_OK) {
        size_t len = wyvern__actor__character__get_packed_size(res->character);
        op->packed[it->index] = wy_malloc(len ? len : 1);
        op->len[it->index] = len;
        wyvern__actor__character__pack(res->character, op->packed[it->index]);
    } else if (status != WY_ENOTFOUND && !op->fail) {
        /* A character the index has but the log does not (yet) is left out; any
         * other failure fails the list. */
        op->fail = status;
        snprintf(op->fail_msg, sizeof op->fail_msg, "%s", msg);
    }
    if (--op->pending == 0)
        list_finish(op);
}

static void on_list_ids(int status, char (*ids)[ACTOR_ID_LEN + 1], size_t n, void *ud)
{
    list_op_t *op = ud;
    if (status != WY_OK) {
        op->fail = status;
        snprintf(op->fail_msg, sizeof op->fail_msg, "character store unavailable; retry");
        list_finish(op);
        return;
    }
    op->n = n;
    op->items = wy_calloc(n ? n : 1, sizeof *op->items);
    op->packed = wy_calloc(n ? n : 1, sizeof *op->packed);
    op->len = wy_calloc(n ? n : 1, sizeof *op->len);
    op->pending = n + 1; /* + this function, so an answer inside submit cannot finish early */
    for (size_t i = 0; i < n; i++) {
        list_item_t *it = &op->items[i];
        it->op = op;
        it->index = i;
        it->req.read_only = true;
        it->req.done = on_list_item;
        it->req.ud = it;
        actor_store_submit(op->svc, ids[i], &it->req);
    }
    if (--op->pending == 0)
        list_finish(op);
}

static void rpc_list(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__ListCharactersRequest *in =
        (const Wyvern__Actor__ListCharactersRequest *)req;
    actor_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc || !id_ok(call, in->account_id, "account_id"))
        return;
    list_op_t *op = wy_calloc(1, sizeof *op);
    op->call = call;
    op->svc = svc;
    actor_svc_ref(svc);
    actor_store_list(svc, in->account_id, in->include_deleted, on_list_ids, op);
}

/* ---- registration ---- */

int actor_grpc_register(wy_daemon_t *d, const char **err)
{
    static const struct {
        const char *path;
        const ProtobufCMessageDescriptor *desc;
        wy_grpc_handler_cb cb;
    } methods[] = {
        {"/wyvern.actor.Actor/CreateCharacter",
         &wyvern__actor__create_character_request__descriptor, rpc_create},
        {"/wyvern.actor.Actor/ListCharacters", &wyvern__actor__list_characters_request__descriptor,
         rpc_list},
        {"/wyvern.actor.Actor/GetCharacter", &wyvern__actor__get_character_request__descriptor,
         rpc_get},
        {"/wyvern.actor.Actor/DeleteCharacter",
         &wyvern__actor__delete_character_request__descriptor, rpc_delete},
        {"/wyvern.actor.Actor/RestoreCharacter",
         &wyvern__actor__restore_character_request__descriptor, rpc_restore},
        {"/wyvern.actor.Actor/Apply", &wyvern__actor__apply_request__descriptor, rpc_apply},
        {"/wyvern.actor.Actor/ApplyBatch", &wyvern__actor__apply_batch_request__descriptor,
         rpc_apply_batch},
        {"/wyvern.actor.Actor/Transact", &wyvern__actor__transact_request__descriptor,
         actor_rpc_transact},
        {"/wyvern.actor.Actor/RequestFriend", &wyvern__actor__friend_command__descriptor,
         actor_rpc_friend_request},
        {"/wyvern.actor.Actor/AcceptFriend", &wyvern__actor__friend_command__descriptor,
         actor_rpc_friend_accept},
        {"/wyvern.actor.Actor/DeclineFriend", &wyvern__actor__friend_command__descriptor,
         actor_rpc_friend_decline},
        {"/wyvern.actor.Actor/RemoveFriend", &wyvern__actor__friend_command__descriptor,
         actor_rpc_friend_remove},
        {"/wyvern.actor.Actor/ListFriends", &wyvern__actor__list_friends_request__descriptor,
         actor_rpc_friend_list},
        {"/wyvern.actor.Actor/TopCharacters", &wyvern__actor__top_characters_request__descriptor,
         actor_rpc_rank_top},
        {"/wyvern.actor.Actor/CharacterRank", &wyvern__actor__character_rank_request__descriptor,
         actor_rpc_rank_of},
        {"/wyvern.actor.Actor/CreateNpc", &wyvern__actor__create_npc_request__descriptor,
         actor_rpc_create_npc},
        /* Internal, between instances (txn_remote.c). */
        {"/wyvern.actor.Actor/HoldSide", &wyvern__actor__hold_side_request__descriptor,
         actor_rpc_hold_side},
        {"/wyvern.actor.Actor/ReleaseSide", &wyvern__actor__release_side_request__descriptor,
         actor_rpc_release_side},
    };
    wy_grpc_server_t *srv = wy_daemon_grpc(d);
    for (size_t i = 0; i < WY_ARRAY_LEN(methods); i++) {
        if (wy_grpc_server_register(srv, methods[i].path, methods[i].desc, methods[i].cb, d) !=
            WY_OK) {
            *err = "cannot register the wyvern.actor.Actor methods";
            return WY_EINTERNAL;
        }
    }
    return WY_OK;
}
