/* wy-world: the zone catalog, zone placement and where every player is.
 * The daemon's shape (dependencies, ports, topics) lives here; its features
 * are added by the world issue on top of these seams. */
#include "world.h"

/* Topics this daemon reacts to (ARCHITECTURE.md, section 1). Their handlers
 * arrive with the feature issue; until then wy_daemon counts each event by type
 * and stores its offset, so the consumer group stays current. */
static const char *const world_topics[] = {"wy.gameplay", NULL};

const wy_daemon_spec_t world_daemon_spec = {
    .svc = "world",
    .grpc_service = "wyvern.world.World",
    .deps = WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9104,
    .grpc_port = 9204,
    .consume = world_topics,
};
