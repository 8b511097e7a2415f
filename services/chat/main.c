/* wy-chat entry point: everything runs from the daemon spec in chat.c. */
#include "chat.h"

int main(int argc, char **argv)
{
    return wy_daemon_main(argc, argv, &chat_daemon_spec);
}
