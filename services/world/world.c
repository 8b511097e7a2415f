/* wy-world: the zone catalog, zone placement and where every player is.
 * The daemon's shape (dependencies, ports, topics) lives here; its features
 * are added by the world issue on top of these seams. */
#include "world.h"

/* No Kafka subscriptions yet. The topics this daemon will consume
 * (ARCHITECTURE.md, section 1: "wy.gameplay") get rows in the spec's `subs`
 * table together with their handlers; until then it has no consumer, so its
 * group "wy-world" commits nothing and the first handler starts at the
 * earliest event. */
const wy_daemon_spec_t world_daemon_spec = {
    .svc = "world",
    .grpc_service = "wyvern.world.World",
    .deps = WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9104,
    .grpc_port = 9204,
};
