/* wy-actor: characters, NPCs and enemies as event-sourced actors.
 * The daemon's shape (dependencies, ports, topics) lives here; its features
 * are added by the actor issue on top of these seams. */
#include "actor.h"

/* Topics this daemon reacts to (ARCHITECTURE.md, section 1). Their handlers
 * arrive with the feature issue; until then wy_daemon counts each event by type
 * and stores its offset, so the consumer group stays current. */
static const char *const actor_topics[] = {"wy.gameplay", "wy.npc.perception", NULL};

const wy_daemon_spec_t actor_daemon_spec = {
    .svc = "actor",
    .grpc_service = "wyvern.actor.Actor",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9105,
    .grpc_port = 9205,
    .consume = actor_topics,
};
