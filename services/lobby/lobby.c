/* wy-lobby: the cluster-wide player session, nicknames and presence.
 * The daemon's shape (dependencies, ports, topics) lives here; its features
 * are added by the lobby issue on top of these seams. */
#include "lobby.h"

/* Topics this daemon reacts to (ARCHITECTURE.md, section 1). Their handlers
 * arrive with the feature issue; until then wy_daemon counts each event by type
 * and stores its offset, so the consumer group stays current. */
static const char *const lobby_topics[] = {"wy.session", "wy.notify", NULL};

const wy_daemon_spec_t lobby_daemon_spec = {
    .svc = "lobby",
    .grpc_service = "wyvern.lobby.Lobby",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9102,
    .grpc_port = 9202,
    .consume = lobby_topics,
};
