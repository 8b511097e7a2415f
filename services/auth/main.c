/* wy-auth entry point: everything runs from the daemon spec in auth.c. */
#include "auth.h"

int main(int argc, char **argv)
{
    return wy_daemon_main(argc, argv, &auth_daemon_spec);
}
