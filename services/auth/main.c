/* wy-auth entry point: everything runs from the daemon spec in auth.c. */
#include <stdlib.h>

#include "auth.h"

int main(int argc, char **argv)
{
    /* Password hashes run on libuv's worker pool, which is sized once, when the first job
     * is queued, from UV_THREADPOOL_SIZE (libuv's own default is 4). Set it in the
     * environment to give hashing more cores; WY_AUTH_HASH_QUEUE bounds the backlog. */
    setenv("UV_THREADPOOL_SIZE", "4", 0);
    /* Each statement is planned once per pooled connection (generic plans): with custom plans
     * PostgreSQL planned the batched login statements (unnest of the batch's arrays) again for
     * every batch, 10-25% of its CPU per login (docs/BENCHMARKS.md, "Logins write no session").
     * libpq reads PGOPTIONS for every connection; what the environment has is kept.
     * enable_seqscan off: every auth statement is an index lookup, and a generic plan made
     * while the statistics said a table was small (a fresh database in its first storm) must
     * not scan it whole until the next ANALYZE (sql.c, auth_identity_find). */
    const char *pgopts = getenv("PGOPTIONS");
    char *with_generic = wy_sprintf(
        "%s -c plan_cache_mode=force_generic_plan -c enable_seqscan=off", pgopts ? pgopts : "");
    setenv("PGOPTIONS", with_generic, 1);
    wy_free(with_generic);
    auth_config_init();
    return wy_daemon_main(argc, argv, &auth_daemon_spec);
}
