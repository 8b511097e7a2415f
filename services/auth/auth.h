/* wy-auth: accounts, credentials, signing keys and refresh tokens. */
#ifndef AUTH_H
#define AUTH_H

#include "wy_daemon.h"

extern const wy_daemon_spec_t auth_daemon_spec;

#endif
