/* wy-actor rankings: Redis sorted sets of characters by level and by XP, updated from
 * committed state only (the store calls actor_rank_changed after a commit), rebuilt from
 * PostgreSQL when Redis lost them, read by TopCharacters / CharacterRank. Keys (hash tag
 * {rank}, one slot): {rank}:level, {rank}:xp (members actor ids), {rank}:ready (set once
 * a rebuild finished; its absence means Redis lost the boards), {rank}:rebuild (the
 * instance rebuilding, with a TTL). Loop thread. */
#ifndef ACTOR_RANKINGS_H
#define ACTOR_RANKINGS_H

#include "actor.h"

/* Starts the periodic check of {rank}:ready (every WY_ACTOR_RANK_CHECK). */
void actor_rank_start(actor_svc_t *svc);
/* Stops it; a rebuild in flight ends at its next step. */
void actor_rank_stop(actor_svc_t *svc);

/* A commit took an actor from `before` to `after`: its level / XP / deleted change goes
 * to Redis (ZADD GT, so an older value never overwrites a newer one; ZREM when deleted). */
void actor_rank_changed(actor_svc_t *svc, const actor_state_t *before, const actor_state_t *after);

/* The methods (registered by handlers_grpc.c; arg is the daemon). */
void actor_rpc_rank_top(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
void actor_rpc_rank_of(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);

#endif
