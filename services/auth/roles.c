/* wy-auth roles (roles.h): a map account -> WY_TOKEN_ROLE_* bits, rebuilt from PostgreSQL. */
#include "roles.h"
#include "auth.h"
#include "wy_log.h"

#include <string.h>

static const wy_pg_stmt_t sql_roles = {
    "auth_roles",
    "SELECT id::text AS account_id, array_to_string(roles, ',') AS roles FROM auth.accounts "
    "WHERE cardinality(roles) > 0 ORDER BY id LIMIT $1::int",
    1};

static void on_roles(int status, const PGresult *res, const char *err, void *ud)
{
    auth_t *a = ud;
    a->roles_loading = false;
    if (status != WY_OK) {
        /* Keep the previous map: a role taken stays until PostgreSQL answers again. */
        wy_log_warn("cannot reload account roles", "error", err ? err : wy_strerror(status), NULL);
        auth_unref(a);
        return;
    }
    int n = PQntuples(res);
    wy_map_t *m = wy_map_new(AUTH_ROLES_MAX);
    for (int i = 0; i < n && i < AUTH_ROLES_MAX; i++) {
        uint32_t bits = wy_token_roles_parse(wy_pg_text(res, i, "roles"), NULL);
        if (bits)
            (void)wy_map_put_str(m, wy_pg_text(res, i, "account_id"), (void *)(uintptr_t)bits);
    }
    if (n > AUTH_ROLES_MAX && !a->roles_overflow_logged) {
        a->roles_overflow_logged = true;
        wy_log_error("more accounts hold a role than auth keeps; the rest get none", "max", "10000",
                     NULL);
    }
    size_t before = a->roles ? wy_map_count(a->roles) : 0;
    if (!a->roles || before != wy_map_count(m)) {
        char nb[16];
        snprintf(nb, sizeof nb, "%zu", wy_map_count(m));
        wy_log_info("account roles loaded", "accounts", nb, NULL);
    }
    wy_map_free(a->roles);
    a->roles = m;
    auth_unref(a);
}

void auth_roles_tick(auth_t *a)
{
    wy_pg_t *pg = auth_pg(a);
    if (!pg || a->roles_loading || a->stopping || wy_now_ms() < a->roles_next_ms)
        return;
    char limit[16];
    snprintf(limit, sizeof limit, "%d", AUTH_ROLES_MAX + 1);
    const char *params[] = {limit};
    a->roles_next_ms = wy_now_ms() + AUTH_ROLES_RELOAD_MS;
    if (wy_pg_exec(pg, &sql_roles, params, on_roles, a) == WY_OK) {
        a->roles_loading = true;
        auth_ref(a);
    }
}

uint32_t auth_roles_of(const auth_t *a, const char *account)
{
    return a->roles ? (uint32_t)(uintptr_t)wy_map_get_str(a->roles, account) : 0;
}

void auth_roles_free(auth_t *a)
{
    wy_map_free(a->roles);
    a->roles = NULL;
}
