/* wy-game entry point: everything runs from the daemon spec in game.c. */
#include "game.h"

int main(int argc, char **argv)
{
    int rc = wy_daemon_main(argc, argv, &game_daemon_spec);
    game_free();
    return rc;
}
