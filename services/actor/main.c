/* wy-actor entry point: everything runs from the daemon spec in actor.c. */
#include "actor.h"

int main(int argc, char **argv)
{
    return wy_daemon_main(argc, argv, &actor_daemon_spec);
}
