/* wy-lobby entry point: everything runs from the daemon spec in lobby.c. */
#include "lobby.h"

int main(int argc, char **argv)
{
    return wy_daemon_main(argc, argv, &lobby_daemon_spec);
}
