/* wy-world: the zone catalog, zone placement and where every player is. */
#ifndef WORLD_H
#define WORLD_H

#include "wy_daemon.h"

extern const wy_daemon_spec_t world_daemon_spec;

#endif
