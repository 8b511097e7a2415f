/* wy-lobby: the cluster-wide player session, nicknames and presence. */
#ifndef LOBBY_H
#define LOBBY_H

#include "wy_daemon.h"

extern const wy_daemon_spec_t lobby_daemon_spec;

#endif
