/* wy-chat: chat channels, membership, moderation and the chat log.
 * The daemon's shape (dependencies, ports, topics) lives here; its features
 * are added by the chat issue on top of these seams. */
#include "chat.h"

const wy_daemon_spec_t chat_daemon_spec = {
    .svc = "chat",
    .grpc_service = "wyvern.chat.Chat",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9106,
    .grpc_port = 9206,
};
