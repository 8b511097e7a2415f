/* wy-actor transactions across instances: a side whose character another instance owns.
 * The coordinator (txn.c) holds it through its owner (actor_rside_*, a HoldSide call),
 * fences it in its one statement with that owner's name and epoch and inserts the
 * attempt's actor.txn_attempts row, then tells the owner the outcome (ReleaseSide). The
 * owner's part (actor_rpc_hold_side / actor_rpc_release_side): the hold through its
 * store, and the settle in PostgreSQL when no outcome comes (migration 060). Loop thread. */
#ifndef ACTOR_TXN_REMOTE_H
#define ACTOR_TXN_REMOTE_H

#include "actor.h"

/* ---- coordinator side ---- */

typedef struct actor_rside actor_rside_t;

/* The answer to actor_rside_hold, once. WY_OK: the side is held (state, epoch and owner
 * below are valid until actor_rside_release). Otherwise the handle is gone (do not
 * release it): the owner refused or could not be reached; msg says why. */
typedef void (*actor_rside_cb)(actor_rside_t *rs, int status, const char *msg, void *ud);

/* Asks peer p to hold actor_id for attempt (UUID) of txn_id. Returns the handle; cb runs
 * later, never inside this call. NULL: the call could not be sent (cb never runs). */
actor_rside_t *actor_rside_hold(actor_svc_t *svc, actor_peer_t *p, const char *txn_id,
                                const char *attempt, const char *actor_id, actor_rside_cb cb,
                                void *ud);
const actor_state_t *actor_rside_state(const actor_rside_t *rs);
int64_t actor_rside_epoch(const actor_rside_t *rs);
int actor_rside_shard(const actor_rside_t *rs);
const char *actor_rside_owner(const actor_rside_t *rs);

typedef enum {
    ACTOR_RSIDE_UNKNOWN = 0,     /* the owner settles in PostgreSQL */
    ACTOR_RSIDE_COMMITTED = 1,   /* ev was committed: applied */
    ACTOR_RSIDE_NOT_WRITTEN = 2, /* nothing written: released unchanged */
} actor_rside_outcome_t;

/* Ends the handle: tells the owner the outcome (ev: the side's packed event when
 * COMMITTED, copied). Also valid while the hold call is in flight (the coordinator gave
 * up): the cb is then not called and the release follows the hold's answer. Best effort:
 * an owner that never hears it settles alone after its hold time. */
void actor_rside_release(actor_rside_t *rs, actor_rside_outcome_t outcome, const actor_event_t *ev);

/* ---- owner side (registered by handlers_grpc.c; arg is the daemon) ---- */

void actor_rpc_hold_side(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void actor_rpc_release_side(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
/* Stop: every remote hold still held is released to be read again (PostgreSQL decides). */
void actor_txn_remote_stop(actor_svc_t *svc);

#endif
