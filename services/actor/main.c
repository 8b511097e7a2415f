/* wy-actor entry point: everything runs from the daemon spec in actor.c. */
#include "actor.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    /* Every statement of wy-actor is planned once per connection: with custom plans
     * PostgreSQL re-planned the group commit's statement (unnest of the batch's arrays)
     * on every batch, about a third of its cost at 64 commands in flight. libpq reads
     * PGOPTIONS for each connection of the pool; what the environment has is kept. */
    static char opts[1024];
    const char *had = getenv("PGOPTIONS");
    int n = snprintf(opts, sizeof opts, "%s%s-c plan_cache_mode=force_generic_plan", had ? had : "",
                     had && *had ? " " : "");
    if (n > 0 && (size_t)n < sizeof opts) /* else the environment's stays as it is */
        setenv("PGOPTIONS", opts, 1);
    return wy_daemon_main(argc, argv, &actor_daemon_spec);
}
