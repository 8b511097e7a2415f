/* wy-actor: characters, NPCs and enemies as event-sourced actors.
 * The daemon's shape (dependencies, ports, topics) lives here; its features
 * are added by the actor issue on top of these seams. */
#include "actor.h"

/* No Kafka subscriptions yet. The topics this daemon will consume
 * (ARCHITECTURE.md, section 1: "wy.gameplay", "wy.npc.perception") get rows in the spec's `subs`
 * table together with their handlers; until then it has no consumer, so its
 * group "wy-actor" commits nothing and the first handler starts at the
 * earliest event. */
const wy_daemon_spec_t actor_daemon_spec = {
    .svc = "actor",
    .grpc_service = "wyvern.actor.Actor",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9105,
    .grpc_port = 9205,
};
