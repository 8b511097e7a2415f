/* wy-auth entry point: everything runs from the daemon spec in auth.c. */
#include <stdlib.h>

#include "auth.h"

int main(int argc, char **argv)
{
    /* Password hashes run on libuv's worker pool, which is sized once, when the first job
     * is queued, from UV_THREADPOOL_SIZE (libuv's own default is 4). Set it in the
     * environment to give hashing more cores; WY_AUTH_HASH_QUEUE bounds the backlog. */
    setenv("UV_THREADPOOL_SIZE", "4", 0);
    auth_config_init();
    return wy_daemon_main(argc, argv, &auth_daemon_spec);
}
