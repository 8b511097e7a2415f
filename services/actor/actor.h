/* wy-actor: characters, NPCs and enemies as event-sourced actors. */
#ifndef ACTOR_H
#define ACTOR_H

#include "wy_daemon.h"

extern const wy_daemon_spec_t actor_daemon_spec;

#endif
