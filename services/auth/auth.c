/* wy-auth: accounts, credentials, signing keys and refresh tokens.
 * The daemon's shape (dependencies, ports, topics) lives here; its features
 * are added by the auth issue on top of these seams. */
#include "auth.h"

const wy_daemon_spec_t auth_daemon_spec = {
    .svc = "auth",
    .grpc_service = "wyvern.auth.Auth",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9101,
    .grpc_port = 9201,
};
