/* wy-world entry point: everything runs from the daemon spec in world.c. */
#include "world.h"

int main(int argc, char **argv)
{
    return wy_daemon_main(argc, argv, &world_daemon_spec);
}
