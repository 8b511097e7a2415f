/* wy-game: the live simulation of the zones it hosts.
 * The daemon's shape (dependencies, ports, topics) lives here; its features
 * are added by the game issue on top of these seams. */
#include "game.h"

/* No Kafka subscriptions yet. The topics this daemon will consume
 * (ARCHITECTURE.md, section 1: "wy.chat", "wy.npc.intent") get rows in the spec's `subs`
 * table together with their handlers; until then it has no consumer, so its
 * group "wy-game" commits nothing and the first handler starts at the
 * earliest event. */
const wy_daemon_spec_t game_daemon_spec = {
    .svc = "game",
    .grpc_service = "wyvern.game.Game",
    .deps = WY_DEP_KAFKA,
    .ops_port = 9103,
    .grpc_port = 9203,
};
