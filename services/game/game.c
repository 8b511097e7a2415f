/* wy-game: the live simulation of the zones it hosts.
 * The daemon's shape (dependencies, ports, topics) lives here; its features
 * are added by the game issue on top of these seams. */
#include "game.h"

/* Topics this daemon reacts to (ARCHITECTURE.md, section 1). Their handlers
 * arrive with the feature issue; until then wy_daemon counts each event by type
 * and stores its offset, so the consumer group stays current. */
static const char *const game_topics[] = {"wy.chat", "wy.npc.intent", NULL};

const wy_daemon_spec_t game_daemon_spec = {
    .svc = "game",
    .grpc_service = "wyvern.game.Game",
    .deps = WY_DEP_KAFKA,
    .ops_port = 9103,
    .grpc_port = 9203,
    .consume = game_topics,
};
