/* wy-actor cross-actor transactions (Transact: trade, gift; the friend commands). The pure part
 * (trade.c): the shape of an offer, deciding one side into its Traded event. The coordinator
 * (txn.c): holds both actors through the store (actor_store_hold), decides, writes the
 * events of both and the txn_id row in ONE PostgreSQL statement, then releases them
 * with the events applied (or not). Loop thread, except the pure part (any thread). */
#ifndef ACTOR_TXN_H
#define ACTOR_TXN_H

#include "character.h"
#include "wy_grpc.h"

#define ACTOR_TRADE_ITEMS 16 /* different items one side gives */
#define ACTOR_TXN_ID_MAX  128

/* What one side gives: items (distinct, counts 1..ACTOR_MAX_ITEM_MOVE) and gold. */
typedef struct {
    actor_stack_t items[ACTOR_TRADE_ITEMS];
    size_t n_items;
    uint64_t gold;
} actor_offer_t;

/* Copies and shape-checks one side's items and gold into *out. WY_OK, or WY_EINVAL with
 * *why a message for a person. */
int actor_offer_from_pb(Wyvern__Actor__ItemStack *const *items, size_t n_items, uint64_t gold,
                        actor_offer_t *out, const char **why);

/* Decides one side of transaction txn_id for state s: s gives *gave to counterpart and
 * gets *got. WY_OK: *out is the packed Traded event (the caller frees out->data). A
 * refusal: WY_ENOTFOUND (no such character), WY_ESTATE (deleted, lacks an item or gold),
 * WY_ELIMIT (a stack, the inventory or the gold cap would be passed); why[0..cap) says
 * why, naming `who` ("a", "b", "from", "to"). s is not changed. */
int actor_trade_decide(const actor_state_t *s, const char *who, const char *txn_id,
                       const char *kind, const char *counterpart, const actor_offer_t *gave,
                       const actor_offer_t *got, int64_t now_ms, actor_event_t *out, char *why,
                       size_t cap);

/* Registers the transaction metrics (daemon start). */
void actor_txn_start(void);

/* The methods of transactions and friends (registered by handlers_grpc.c; arg is the
 * daemon). Loop thread. */
void actor_rpc_transact(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void actor_rpc_friend_request(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void actor_rpc_friend_accept(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void actor_rpc_friend_decline(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void actor_rpc_friend_remove(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void actor_rpc_friend_list(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);

#endif
