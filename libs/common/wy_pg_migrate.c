/* wy_pg_migrate — the synchronous schema migrations runner of wy_pg.h (daemon start, blocking
 * libpq). Serialized across instances by a PostgreSQL advisory lock keyed by the schema name. */
#include "wy_pg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MIGRATION_MAX_BYTES (16u << 20)

static __thread char errbuf[1024];

static const char *fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    /* libpq messages end with a newline */
    size_t n = strlen(errbuf);
    while (n > 0 && (errbuf[n - 1] == '\n' || errbuf[n - 1] == ' '))
        errbuf[--n] = '\0';
    return errbuf;
}

/* "schema already exists, skipping" and the like are expected on every start. */
static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

bool wy_pg_ident_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* NNN_<anything>.sql: returns the length of the digit prefix (the version), 0 if not a migration.
 */
static size_t migration_version_len(const char *name)
{
    size_t d = 0, n = strlen(name);
    while (isdigit((unsigned char)name[d]))
        d++;
    if (d == 0 || name[d] != '_' || n < d + 1 + 4 || strcmp(name + n - 4, ".sql") != 0)
        return 0;
    return d;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wy_free(names[i]);
    wy_free(names);
}

/* Sorted list of migration file names in dir; caller frees with free_names. */
static int list_migrations(const char *dir, char ***out, size_t *count, const char **err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    if (d == NULL) {
        *err = fail("migrations dir %s: %s", dir, strerror(errno));
        return WY_EINVAL;
    }
    while ((e = readdir(d)) != NULL) {
        if (migration_version_len(e->d_name) == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = wy_realloc(names, cap * sizeof *names);
        }
        names[n++] = wy_strdup(e->d_name);
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 1; i < n; i++) {
        size_t a = migration_version_len(names[i - 1]), b = migration_version_len(names[i]);
        if (a == b && strncmp(names[i - 1], names[i], a) == 0) {
            *err = fail("migrations %s and %s have the same version", names[i - 1], names[i]);
            free_names(names, n);
            return WY_EINVAL;
        }
    }
    *out = names;
    *count = n;
    return WY_OK;
}

static char *read_file(const char *path, const char **err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf;
    if (f == NULL) {
        *err = fail("migration %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 ||
        (uint64_t)st.st_size > MIGRATION_MAX_BYTES) {
        *err = fail("migration %s: unreadable or larger than %u bytes", path, MIGRATION_MAX_BYTES);
        fclose(f);
        return NULL;
    }
    buf = wy_malloc((size_t)st.st_size + 1);
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        *err = fail("migration %s: short read", path);
        wy_free(buf);
        fclose(f);
        return NULL;
    }
    buf[st.st_size] = '\0';
    fclose(f);
    return buf;
}

/* Run sql (params optional); true on success, else *err = "<what>: <PostgreSQL message>". */
static bool run(PGconn *c, const char *what, const char *sql, int n, const char *const *params,
                PGresult **keep, const char **err)
{
    PGresult *r = n > 0 ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
    int st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        const char *m = r ? PQresultErrorMessage(r) : NULL;
        *err = fail("%s: %s", what, m && *m ? m : PQerrorMessage(c));
        PQclear(r);
        return false;
    }
    if (keep)
        *keep = r;
    else
        PQclear(r);
    return true;
}

/* Apply one file unless its version is already recorded. Returns 1 applied, 0 skipped, <0 error. */
static int apply_one(PGconn *c, const char *schema, const char *dir, const char *name,
                     const char **err)
{
    char version[64], path[4096], sql[256], what[512];
    size_t vl = migration_version_len(name);
    const char *params[1] = {version};
    PGresult *r = NULL;
    char *body;
    int have;

    if (vl >= sizeof version) {
        *err = fail("migration %s: version too long", name);
        return WY_EINVAL;
    }
    memcpy(version, name, vl);
    version[vl] = '\0';
    snprintf(what, sizeof what, "migration %s", name);
    snprintf(sql, sizeof sql, "SELECT 1 FROM %s.schema_migrations WHERE version = $1", schema);
    if (!run(c, what, sql, 1, params, &r, err))
        return WY_EIO;
    have = PQntuples(r);
    PQclear(r);
    if (have > 0)
        return 0;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        *err = fail("migration %s: path too long", name);
        return WY_EINVAL;
    }
    body = read_file(path, err);
    if (body == NULL)
        return WY_EINVAL;
    snprintf(sql, sizeof sql, "SET LOCAL search_path TO %s", schema);
    bool ok = run(c, what, "BEGIN", 0, NULL, NULL, err) && run(c, what, sql, 0, NULL, NULL, err) &&
              run(c, what, body, 0, NULL, NULL, err);
    wy_free(body);
    if (ok) {
        snprintf(sql, sizeof sql, "INSERT INTO %s.schema_migrations(version) VALUES ($1)", schema);
        ok = run(c, what, sql, 1, params, NULL, err) && run(c, what, "COMMIT", 0, NULL, NULL, err);
    }
    if (!ok) {
        PQclear(PQexec(c, "ROLLBACK"));
        return WY_EIO;
    }
    return 1;
}

int wy_pg_migrate(const char *conninfo, const char *schema, const char *dir, int *applied,
                  const char **err)
{
    const char *dummy;
    char **names = NULL;
    size_t count = 0;
    char sql[512];
    const char *params[1] = {schema};
    int rc = WY_OK, n = 0;
    PGconn *c;

    if (err == NULL)
        err = &dummy;
    if (applied)
        *applied = 0;
    if (!wy_pg_ident_ok(schema)) {
        *err = fail("schema name '%s' must match [A-Za-z_][A-Za-z0-9_]{0,62}",
                    schema ? schema : "(null)");
        return WY_EINVAL;
    }
    if (dir == NULL || conninfo == NULL) {
        *err = "migrate: conninfo and dir are required";
        return WY_EINVAL;
    }
    rc = list_migrations(dir, &names, &count, err);
    if (rc != WY_OK)
        return rc;

    c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        *err = fail("migrate: cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        PQfinish(c);
        free_names(names, count);
        return WY_EUNAVAIL;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    /* Lock first: concurrent CREATE SCHEMA IF NOT EXISTS can still fail with a unique violation. */
    if (!run(c, "migrate: advisory lock", "SELECT pg_advisory_lock(hashtext($1))", 1, params, NULL,
             err)) {
        rc = WY_EIO;
        goto out;
    }
    snprintf(sql, sizeof sql,
             "CREATE SCHEMA IF NOT EXISTS %s;"
             "CREATE TABLE IF NOT EXISTS %s.schema_migrations("
             "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
             schema, schema);
    if (!run(c, "migrate: schema setup", sql, 0, NULL, NULL, err)) {
        rc = WY_EIO;
        goto unlock;
    }
    for (size_t i = 0; i < count; i++) {
        int r = apply_one(c, schema, dir, names[i], err);
        if (r < 0) {
            rc = r;
            break;
        }
        n += r;
    }
unlock:
    PQclear(
        PQexecParams(c, "SELECT pg_advisory_unlock(hashtext($1))", 1, NULL, params, NULL, NULL, 0));
out:
    PQfinish(c);
    free_names(names, count);
    if (applied)
        *applied = n;
    return rc;
}
