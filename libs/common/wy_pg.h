/* wy_pg — asynchronous PostgreSQL pool on the daemon's libuv loop (libpq, uv_poll on PQsocket),
 * transactions bound to one connection, and the synchronous schema migrations runner. */
#ifndef WY_PG_H
#define WY_PG_H

#include <uv.h>
#include <libpq-fe.h>

#include "wy_core.h"

typedef struct wy_pg wy_pg_t;
typedef struct wy_pg_tx wy_pg_tx_t;

/* Outcome of one statement, on the loop thread.
 *   status WY_OK: res is the PGRES_TUPLES_OK / PGRES_COMMAND_OK result, err NULL.
 *   SQL error: res is the error result (wy_pg_sqlstate(res) gives the SQLSTATE, err is
 *     PostgreSQL's primary message) and status is: 23505 unique_violation -> WY_EEXIST, other
 *     23xxx integrity violations -> WY_EINVAL, 40001 / 40P01 (serialization failure, deadlock)
 *     -> WY_ESTATE, anything else -> WY_EIO.
 *   No answer: res NULL, err says why: WY_ETIMEDOUT (query timeout; the connection is dropped so
 *     the server aborts the statement), WY_EUNAVAIL (connection lost or none up; the statement
 *     may or may not have run), WY_ECANCELED (pool closing).
 * res and err are valid only during the callback (the pool clears them). */
typedef void (*wy_pg_cb)(int status, const PGresult *res, const char *err, void *ud);

/* Transaction opened (status WY_OK, tx usable until its commit/rollback callback) or not
 * (tx NULL, err says why, same codes as above). */
typedef void (*wy_pg_begin_cb)(int status, wy_pg_tx_t *tx, const char *err, void *ud);

/* Commit / rollback finished. Commit: WY_OK = durable; WY_ESTATE = the transaction had failed
 * earlier, died (connection lost, tx_timeout_ms) or was never opened, and is rolled back;
 * WY_EUNAVAIL / WY_ETIMEDOUT = connection lost / no answer while COMMIT was in flight (outcome
 * unknown); a SQL error of COMMIT (deferred constraint) maps like a statement's.
 * Rollback: WY_OK whenever the transaction is gone (a dead connection counts). */
typedef void (*wy_pg_end_cb)(int status, const char *err, void *ud);

typedef struct {
    uint32_t size;             /* connections; default 4, max 64 */
    uint32_t max_queue;        /* waiting statements when every connection is busy; default 1024 */
    uint32_t query_timeout_ms; /* from submission to result; default 5000 */
    uint32_t tx_timeout_ms;    /* from BEGIN to COMMIT/ROLLBACK; default 30000 */
    uint32_t connect_timeout_ms; /* default 5000 */
    uint32_t health_interval_ms; /* period of the SELECT 1 on an idle connection; default 1000 */
    uint32_t backoff_min_ms;     /* first reconnect delay of a dead connection; default 100 */
    uint32_t backoff_max_ms;     /* reconnect delay cap; default 5000 */
} wy_pg_opts_t;

/* Create a pool on loop. conninfo is a URI (postgresql://user@host:port/db) or key=value string;
 * it is checked here (WY_EINVAL, *err says what is wrong; *err points to thread-local storage valid
 * until the next wy_pg call on this thread). Connections are opened asynchronously
 * (PQconnectStart/PQconnectPoll on uv_poll), so the daemon never blocks on a slow server; until the
 * first connection is up, statements wait in the queue (and time out normally). A dead connection
 * is reopened with capped exponential backoff. opts may be NULL; zero fields mean the default.
 * libpq resolves host names with a blocking getaddrinfo inside PQconnectStart: use an IP or a name
 * the local resolver answers fast. Loop thread only. */
int wy_pg_create(uv_loop_t *loop, const char *conninfo, const wy_pg_opts_t *opts, wy_pg_t **out,
                 const char **err);

/* Run one parameterized statement (text protocol: $1..$n, params[i] NULL = SQL NULL) on a free
 * connection. sql and params are copied. Returns WY_OK: cb will be called exactly once, never from
 * inside this call. Otherwise cb is never called and the return is: WY_EBUSY (wait queue full),
 * WY_EUNAVAIL (every connection is down and waiting to reconnect), WY_ECANCELED (closing),
 * WY_EINVAL (bad arguments). Loop thread only. */
int wy_pg_query(wy_pg_t *pg, const char *sql, int nparams, const char *const *params, wy_pg_cb cb,
                void *ud);

/* wy_pg_query with its own timeout (0 = query_timeout_ms), e.g. the caller's remaining gRPC
 * deadline. Counted from this call, waiting in the queue included. */
int wy_pg_query_timeout(wy_pg_t *pg, uint32_t timeout_ms, const char *sql, int nparams,
                        const char *const *params, wy_pg_cb cb, void *ud);

/* ---- prepared statements ----
 * A statement is a name, its SQL and its number of parameters, defined once (normally a static
 * const object next to the other statements of the service):
 *
 *     const wy_pg_stmt_t auth_sql_account = {"auth_account", "SELECT ... WHERE id = $1", 1};
 *
 * The pool prepares it on a connection the first time it runs there (PQsendPrepare, then
 * PQsendQueryPrepared) and again on the new connection after a reconnect; later runs on that
 * connection send only the name and the parameters. Rules: name is 1..63 of [A-Za-z0-9_], unique
 * in the process for one SQL text (two objects with one name and different SQL are a bug: the
 * second fails with WY_EINTERNAL on a connection that prepared the first); the object is not
 * copied and must outlive the pool. An error in the SQL itself (syntax, unknown table) reaches the
 * caller's callback like a statement's error. */
typedef struct {
    const char *name;
    const char *sql;
    int nparams; /* $1..$nparams */
} wy_pg_stmt_t;

/* Run st with params[0..st->nparams) (text, NULL = SQL NULL; copied) on a free connection. Same
 * return and callback contract as wy_pg_query_timeout (timeout_ms 0 = query_timeout_ms; the
 * prepare counts in it); WY_EINVAL for a bad statement object. */
int wy_pg_exec(wy_pg_t *pg, const wy_pg_stmt_t *st, const char *const *params, wy_pg_cb cb,
               void *ud);
int wy_pg_exec_timeout(wy_pg_t *pg, uint32_t timeout_ms, const wy_pg_stmt_t *st,
                       const char *const *params, wy_pg_cb cb, void *ud);

/* Start a transaction: takes a connection (queued like a statement), sends BEGIN, then cb gets a
 * handle bound to that connection. Same return contract as wy_pg_query. */
int wy_pg_begin(wy_pg_t *pg, wy_pg_begin_cb cb, void *ud);

/* A statement inside tx; statements of one tx run in order. Returns WY_OK (cb will be called),
 * WY_ESTATE (commit/rollback already requested, or the transaction died: connection lost or
 * tx_timeout_ms passed, in which case PostgreSQL rolled it back), WY_EBUSY (more than max_queue
 * statements queued on tx), WY_ECANCELED (closing), WY_EINVAL. */
int wy_pg_tx_query(wy_pg_tx_t *tx, const char *sql, int nparams, const char *const *params,
                   wy_pg_cb cb, void *ud);
/* wy_pg_tx_query with its own timeout (0 = query_timeout_ms). A timeout ends the transaction. */
int wy_pg_tx_query_timeout(wy_pg_tx_t *tx, uint32_t timeout_ms, const char *sql, int nparams,
                           const char *const *params, wy_pg_cb cb, void *ud);

/* A prepared statement inside tx; same contract as wy_pg_tx_query_timeout. */
int wy_pg_tx_exec(wy_pg_tx_t *tx, const wy_pg_stmt_t *st, const char *const *params, wy_pg_cb cb,
                  void *ud);
int wy_pg_tx_exec_timeout(wy_pg_tx_t *tx, uint32_t timeout_ms, const wy_pg_stmt_t *st,
                          const char *const *params, wy_pg_cb cb, void *ud);

/* End tx. Always accepted once (returns WY_OK and cb is called exactly once, asynchronously), after
 * the statements already queued on tx. tx is freed after cb returns: never use it again. A second
 * commit/rollback on the same handle returns WY_ESTATE; during wy_pg_close they return
 * WY_ECANCELED (the close frees the handle). A transaction whose owner never ends it is rolled back
 * by tx_timeout_ms (the handle stays allocated until commit/rollback or wy_pg_close). */
int wy_pg_tx_commit(wy_pg_tx_t *tx, wy_pg_end_cb cb, void *ud);
int wy_pg_tx_rollback(wy_pg_tx_t *tx, wy_pg_end_cb cb, void *ud);

/* WY_OK when at least one connection is up (and the last health SELECT 1 succeeded), else
 * WY_EUNAVAIL. Cheap; for /readyz. */
int wy_pg_health(const wy_pg_t *pg);

/* SQLSTATE of an error result ("23505"), or "" when there is none. */
const char *wy_pg_sqlstate(const PGresult *res);

/* ---- reading results by column name ----
 * Code reads a result by the names its SQL gives the columns (AS account_id), never by position.
 * A name the result does not have, or a row past the end, is a bug in the pairing of SQL and
 * code, not a runtime condition: it is logged (with the name and the result's columns) and the
 * process aborts, like a failed assert, so the first test that runs the statement finds it.
 * res is a result passed to a wy_pg_cb; any thread may call these. */

/* Index of column name in res (resolve once, then PQgetvalue(res, row, col) in a loop). */
int wy_pg_col(const PGresult *res, const char *name);
/* Text of column name in row; NULL for SQL NULL. Valid as long as res. */
const char *wy_pg_text(const PGresult *res, int row, const char *name);
/* True for SQL NULL. */
bool wy_pg_isnull(const PGresult *res, int row, const char *name);
/* A boolean column: true for 't', false for 'f' and NULL. */
bool wy_pg_bool(const PGresult *res, int row, const char *name);
/* An integer column (smallint, integer, bigint); 0 for NULL. */
int64_t wy_pg_int64(const PGresult *res, int row, const char *name);

/* Close: queued and running statements get WY_ECANCELED (during this call), open transactions
 * are rolled back by closing their connection, every handle (pool and transactions) is freed and
 * done(ud) is called from the loop once all uv handles are closed. Callable from a pool callback.
 * done may be NULL. */
void wy_pg_close(wy_pg_t *pg, void (*done)(void *ud), void *ud);

/* Apply migrations, synchronously (call at daemon start, before the loop runs; any thread).
 * schema: [A-Za-z_][A-Za-z0-9_]{0,62}; dir: folder of NNN_<what>.sql files (NNN digits, the
 * version; other files are ignored). Creates the schema and <schema>.schema_migrations(version text
 * primary key, applied_at timestamptz), holds pg_advisory_lock(hashtext(schema)) so concurrent
 * instances apply each file once, then applies each not yet recorded file in lexical order in its
 * own transaction with search_path set to schema, recording its version in the same transaction.
 * Returns WY_OK and *applied (may be NULL) = number of files applied; or WY_EINVAL (bad schema,
 * unreadable dir or file, duplicate version), WY_EUNAVAIL (cannot connect) or WY_EIO (a statement
 * failed: nothing of that file is recorded, earlier files stay applied) with *err naming the file
 * and PostgreSQL's message; *err is thread-local storage valid until the next call on the thread.
 */
int wy_pg_migrate(const char *conninfo, const char *schema, const char *dir, int *applied,
                  const char **err);

/* True when s is a plain identifier [A-Za-z_][A-Za-z0-9_]{0,62} that may be written into SQL
 * unquoted (a schema name given by code, as wy_pg_migrate, wy_consumed and wy_outbox take). */
bool wy_pg_ident_ok(const char *s);

#endif
