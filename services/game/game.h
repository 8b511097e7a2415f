/* wy-game: the live simulation of the zones it hosts. */
#ifndef GAME_H
#define GAME_H

#include "wy_daemon.h"

extern const wy_daemon_spec_t game_daemon_spec;

#endif
