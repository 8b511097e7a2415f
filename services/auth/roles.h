/* wy-auth roles: the accounts an operator granted roles (auth.accounts.roles, migration
 * 050_roles.sql), held in memory and reloaded from PostgreSQL every AUTH_ROLES_RELOAD_MS, so
 * signing a token reads a map instead of querying (no login statement changes). A role granted
 * or taken applies to the tokens issued after the next reload; tokens issued before keep their
 * claims until they expire (README "Roles"). Loop thread only. */
#ifndef AUTH_ROLES_H
#define AUTH_ROLES_H

#include <stdint.h>

typedef struct auth auth_t;

#define AUTH_ROLES_RELOAD_MS 5000
#define AUTH_ROLES_MAX       10000 /* accounts holding a role; more: the rest get none */

/* Called by the revocation watch's 1 s tick (tokens.c): starts a reload when one is due. */
void auth_roles_tick(auth_t *a);
/* The WY_TOKEN_ROLE_* bits of account (0 when it holds none or the roles are not loaded). */
uint32_t auth_roles_of(const auth_t *a, const char *account);
/* Frees the map (auth_free). */
void auth_roles_free(auth_t *a);

#endif
