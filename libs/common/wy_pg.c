/* wy_pg — libpq connection pool driven by the daemon's libuv loop: non-blocking connect and
 * queries (PQsendQueryParams, PQflush, PQconsumeInput/PQgetResult on uv_poll), bounded wait queue,
 * per-statement deadlines, transactions pinned to one connection, health SELECT 1.
 *
 * Every user callback goes through one "done" list that is drained only when the pool's state is
 * consistent (end of a uv callback, or the next loop turn for completions caused by a public call).
 * That keeps state transitions free of re-entrancy: a callback may call any wy_pg function. */
#include "wy_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wy_list.h"
#include "wy_log.h"
#include "wy_map.h"

enum { OP_QUERY, OP_BEGIN, OP_COMMIT, OP_ROLLBACK, OP_HEALTH };
enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

typedef struct pg_op {
    wy_list_t node; /* in the pool queue, a tx queue or the done list */
    int kind;
    char *sql;                /* OP_QUERY with text; NULL for a prepared statement */
    const wy_pg_stmt_t *stmt; /* OP_QUERY of a prepared statement */
    bool preparing;           /* PQsendPrepare of stmt is running; the query follows */
    int nparams;
    char **params;
    wy_pg_cb qcb;
    wy_pg_begin_cb bcb;
    wy_pg_end_cb ecb;
    void *ud;
    wy_pg_tx_t *tx;
    uint64_t deadline;
    PGresult *res; /* accumulated result; cleared after the callback */
    int status;    /* outcome, set when moved to the done list */
    char *err;
} pg_op;

typedef struct {
    wy_list_t head;
    uint32_t n;
} op_list;

typedef struct pg_conn {
    wy_pg_t *pool;
    PGconn *pg;
    int state;
    uv_poll_t *poll; /* for poll_fd; replaced when libpq switches sockets while connecting */
    int poll_fd;
    int poll_events;
    uv_timer_t timer; /* backoff, connect timeout, or deadline of the running op / tx */
    uint32_t attempts;
    pg_op *op; /* running */
    bool flushing;
    wy_pg_tx_t *tx;     /* owner while a transaction is open */
    wy_map_t *prepared; /* statement name -> wy_pg_stmt_t prepared on this session */
} pg_conn;

struct wy_pg_tx {
    wy_list_t node; /* in the pool's list of live handles */
    wy_pg_t *pool;
    pg_conn *conn; /* NULL before BEGIN ran and once the transaction is over or dead */
    op_list queue;
    uint64_t deadline;
    bool open;   /* BEGIN succeeded */
    bool ending; /* commit/rollback requested */
    bool dead;   /* rolled back by PostgreSQL (connection lost or tx timeout) */
    char *why;   /* why dead */
};

struct wy_pg {
    uv_loop_t *loop;
    char *conninfo;
    wy_pg_opts_t o;
    pg_conn *conns;
    uint32_t nconns;
    op_list queue;
    op_list done;
    wy_list_t txs;           /* wy_pg_tx_t.node */
    uv_timer_t defer_timer;  /* drains done for completions caused inside public calls */
    uv_timer_t queue_timer;  /* earliest deadline of the queued ops */
    uint64_t queue_due;      /* when queue_timer fires; 0 = stopped */
    uv_timer_t health_timer; /* SELECT 1 */
    bool health_ok;
    int health_reported; /* last value logged */
    bool draining;
    char *last_error;
    bool closing;
    int handles_open;
    void (*close_done)(void *);
    void *close_ud;
};

static __thread char errbuf[512];

/* ---- small helpers ----------------------------------------------------------------------------
 */

static void list_init(op_list *l)
{
    wy_list_init(&l->head);
    l->n = 0;
}

static void list_push(op_list *l, pg_op *op)
{
    wy_list_push_back(&l->head, &op->node);
    l->n++;
}

static void list_remove(op_list *l, pg_op *op)
{
    wy_list_remove(&op->node);
    l->n--;
}

static pg_op *list_pop(op_list *l)
{
    pg_op *op = wy_list_entry(wy_list_first(&l->head), pg_op, node);
    if (op)
        list_remove(l, op);
    return op;
}

/* libpq messages end with a newline; keep one line. */
static char *dup_msg(const char *s)
{
    size_t n;
    if (s == NULL || *s == '\0')
        return wy_strdup("unknown error");
    n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        n--;
    return wy_strndup(s, n);
}

const char *wy_pg_sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

static int map_sqlstate(const char *s)
{
    if (strcmp(s, "23505") == 0)
        return WY_EEXIST;
    if (strncmp(s, "23", 2) == 0)
        return WY_EINVAL;
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0)
        return WY_ESTATE;
    if (strncmp(s, "08", 2) == 0 || strncmp(s, "57P0", 4) == 0)
        return WY_EUNAVAIL;
    return WY_EIO;
}

static void op_free(pg_op *op)
{
    for (int i = 0; i < op->nparams; i++)
        wy_free(op->params[i]);
    wy_free(op->params);
    wy_free(op->sql);
    wy_free(op->err);
    if (op->res)
        PQclear(op->res);
    wy_free(op);
}

static pg_op *op_new(wy_pg_t *pg, int kind, const char *sql, int nparams, const char *const *params)
{
    pg_op *op = wy_calloc(1, sizeof *op);
    op->kind = kind;
    op->sql = sql ? wy_strdup(sql) : NULL;
    if (nparams > 0) {
        op->params = wy_calloc((size_t)nparams, sizeof *op->params);
        for (int i = 0; i < nparams; i++)
            op->params[i] = params[i] ? wy_strdup(params[i]) : NULL;
        op->nparams = nparams;
    }
    op->deadline = uv_now(pg->loop) + pg->o.query_timeout_ms;
    return op;
}

static void tx_free(wy_pg_tx_t *tx)
{
    wy_list_remove(&tx->node);
    wy_free(tx->why);
    wy_free(tx);
}

/* ---- completion -------------------------------------------------------------------------------
 */

static void drain_done(wy_pg_t *pg);

static void on_defer_timer(uv_timer_t *t)
{
    drain_done(t->data);
}

/* Record the outcome; the callback runs from drain_done. err is copied. */
static void op_finish(wy_pg_t *pg, pg_op *op, int status, const char *err)
{
    op->status = status;
    if (status != WY_OK && op->err == NULL)
        op->err = dup_msg(err);
    list_push(&pg->done, op);
    if (!pg->closing && !uv_is_active((uv_handle_t *)&pg->defer_timer))
        uv_timer_start(&pg->defer_timer, on_defer_timer, 0, 0);
}

static void op_finish_result(wy_pg_t *pg, pg_op *op)
{
    int st = PQresultStatus(op->res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        op_finish(pg, op, WY_OK, NULL);
        return;
    }
    const char *msg = PQresultErrorField(op->res, PG_DIAG_MESSAGE_PRIMARY);
    if (msg == NULL)
        msg = PQresultErrorMessage(op->res);
    op_finish(pg, op, map_sqlstate(wy_pg_sqlstate(op->res)), msg);
}

static void run_callback(pg_op *op)
{
    const PGresult *res = op->res;
    switch (op->kind) {
    case OP_QUERY:
        op->qcb(op->status, res, op->err, op->ud);
        break;
    case OP_BEGIN:
        if (op->status == WY_OK) {
            op->bcb(WY_OK, op->tx, NULL, op->ud);
        } else {
            tx_free(op->tx);
            op->bcb(op->status, NULL, op->err, op->ud);
        }
        break;
    case OP_COMMIT:
    case OP_ROLLBACK:
        tx_free(op->tx);
        if (op->ecb)
            op->ecb(op->status, op->err, op->ud);
        break;
    default:
        break;
    }
}

static void maybe_finish_close(wy_pg_t *pg);

static void drain_done(wy_pg_t *pg)
{
    pg_op *op;
    if (pg->draining)
        return;
    pg->draining = true;
    while ((op = list_pop(&pg->done)) != NULL) {
        run_callback(op);
        op_free(op);
    }
    pg->draining = false;
    if (pg->closing) {
        maybe_finish_close(pg);
        return;
    }
    int h = wy_pg_health(pg);
    if (h != pg->health_reported) {
        pg->health_reported = h;
        if (h == WY_OK)
            wy_log_info("postgres up", NULL);
        else
            wy_log_warn("postgres down", "error", pg->last_error, NULL);
    }
}

/* ---- connections ------------------------------------------------------------------------------
 */

static void pump(wy_pg_t *pg);
static void arm_queue_timer(wy_pg_t *pg);
static void on_poll(uv_poll_t *h, int status, int events);
static void start_connect(pg_conn *c);

static void on_handle_closed(uv_handle_t *h)
{
    wy_pg_t *pg = h->data;
    if (h->type == UV_POLL)
        wy_free(h);
    pg->handles_open--;
    if (pg->closing)
        maybe_finish_close(pg);
}

static void poll_close(pg_conn *c)
{
    if (c->poll == NULL)
        return;
    c->poll->data = c->pool;
    uv_close((uv_handle_t *)c->poll, on_handle_closed);
    c->poll = NULL;
    c->poll_events = 0;
}

/* Watch libpq's current socket for events; the handle follows the socket if libpq changed it. */
static int poll_watch(pg_conn *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return -1;
    if (c->poll && c->poll_fd != fd)
        poll_close(c);
    if (c->poll == NULL) {
        c->poll = wy_malloc(sizeof *c->poll);
        if (uv_poll_init(c->pool->loop, c->poll, fd) != 0) {
            wy_free(c->poll);
            c->poll = NULL;
            return -1;
        }
        c->pool->handles_open++;
        c->poll->data = c;
        c->poll_fd = fd;
    }
    if (events != c->poll_events) {
        uv_poll_start(c->poll, events, on_poll);
        c->poll_events = events;
    }
    return 0;
}

static bool all_down(const wy_pg_t *pg)
{
    for (uint32_t i = 0; i < pg->nconns; i++)
        if (pg->conns[i].state != C_DOWN)
            return false;
    return true;
}

static void set_last_error(wy_pg_t *pg, const char *msg)
{
    wy_free(pg->last_error);
    pg->last_error = dup_msg(msg);
}

/* A new session has no prepared statements. */
static void prepared_forget(pg_conn *c)
{
    wy_map_iter_t it;
    wy_map_iter_init(&it, c->prepared);
    while (wy_map_next(&it))
        wy_map_iter_del(&it);
}

/* The transaction is gone server side: queued statements fail with status, a queued commit
 * reports the rollback, a queued rollback succeeds. */
static void tx_kill(wy_pg_t *pg, wy_pg_tx_t *tx, int status, const char *why)
{
    pg_op *op;
    tx->conn = NULL;
    tx->dead = true;
    if (tx->why == NULL)
        tx->why = dup_msg(why);
    while ((op = list_pop(&tx->queue)) != NULL) {
        if (op->kind == OP_ROLLBACK)
            op_finish(pg, op, WY_OK, NULL);
        else
            op_finish(pg, op, op->kind == OP_COMMIT ? WY_ESTATE : status, tx->why);
    }
}

static void on_conn_timer(uv_timer_t *t);

static void schedule_reconnect(pg_conn *c, bool at_once)
{
    uint64_t delay = c->pool->o.backoff_min_ms;
    if (at_once) {
        delay = 0;
    } else {
        for (uint32_t i = 0; i < c->attempts && delay < c->pool->o.backoff_max_ms; i++)
            delay *= 2;
        if (delay > c->pool->o.backoff_max_ms)
            delay = c->pool->o.backoff_max_ms;
        c->attempts++;
    }
    uv_timer_start(&c->timer, on_conn_timer, delay, 0);
}

/* The connection is unusable: close it, fail what ran on it with status, reconnect later.
 * at_once: the server is fine (we dropped it on a timeout), reconnect without backoff. */
static void conn_fail(pg_conn *c, int status, const char *msg, bool at_once)
{
    wy_pg_t *pg = c->pool;
    pg_op *op = c->op;
    bool was_up = c->state == C_IDLE || c->state == C_BUSY;
    char *m = dup_msg(msg);

    poll_close(c);
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->op = NULL;
    c->flushing = false;
    c->state = C_DOWN;
    prepared_forget(c);
    if (was_up)
        wy_log_warn("postgres connection lost", "error", m, NULL);
    else
        wy_log_warn("postgres connect failed", "error", m, NULL);
    set_last_error(pg, m);

    if (op) {
        if (op->kind == OP_HEALTH) {
            pg->health_ok = false;
            op_free(op);
        } else if (op->kind == OP_BEGIN) {
            op_finish(pg, op, status, m);
        } else if (op->kind == OP_ROLLBACK) {
            op_finish(pg, op, WY_OK, NULL);
        } else {
            op_finish(pg, op, status, m);
        }
    }
    if (c->tx) {
        wy_pg_tx_t *tx = c->tx;
        c->tx = NULL;
        if (op == NULL || op->tx != tx || (op->kind != OP_COMMIT && op->kind != OP_ROLLBACK))
            tx_kill(pg, tx, status, m);
        else
            tx->conn = NULL;
    }
    wy_free(m);
    if (pg->closing)
        return;
    schedule_reconnect(c, at_once);
    if (all_down(pg)) {
        while ((op = list_pop(&pg->queue)) != NULL)
            op_finish(pg, op, WY_EUNAVAIL, pg->last_error);
    }
}

static void conn_arm_timer(pg_conn *c)
{
    uint64_t now = uv_now(c->pool->loop), deadline = 0;
    if (c->op)
        deadline = c->op->deadline;
    if (c->tx && c->tx->open && (deadline == 0 || c->tx->deadline < deadline))
        deadline = c->tx->deadline;
    if (deadline == 0) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timer, deadline > now ? deadline - now : 0, 0);
}

static const char *op_sql(const pg_op *op)
{
    switch (op->kind) {
    case OP_BEGIN:
        return "BEGIN";
    case OP_COMMIT:
        return "COMMIT";
    case OP_ROLLBACK:
        return "ROLLBACK";
    default:
        return op->sql;
    }
}

static void conn_pump(pg_conn *c);

/* Send op's statement: its text, or its prepared statement (preparing it first when this
 * session has not got it yet: conn_op_complete then sends the query). */
static int send_statement(pg_conn *c, pg_op *op)
{
    const char *const *params = (const char *const *)op->params;
    const wy_pg_stmt_t *st = op->stmt;
    if (st == NULL)
        return PQsendQueryParams(c->pg, op_sql(op), op->nparams, NULL, params, NULL, NULL, 0);
    const wy_pg_stmt_t *have = wy_map_get_str(c->prepared, st->name);
    if (have != NULL && have != st && strcmp(have->sql, st->sql) != 0)
        return -1;
    if (have == NULL) {
        op->preparing = true;
        return PQsendPrepare(c->pg, st->name, st->sql, st->nparams, NULL);
    }
    return PQsendQueryPrepared(c->pg, st->name, op->nparams, params, NULL, NULL, 0);
}

static void conn_send(pg_conn *c, pg_op *op)
{
    int rc;
    c->op = op;
    c->state = C_BUSY;
    rc = send_statement(c, op);
    if (rc < 0) {
        c->op = NULL;
        c->state = C_IDLE;
        wy_log_error("two prepared statements share a name", "name", op->stmt->name, NULL);
        op_finish(c->pool, op, WY_EINTERNAL, "another statement with this name is prepared");
        conn_pump(c);
        return;
    }
    if (!rc) {
        conn_fail(c, WY_EUNAVAIL, PQerrorMessage(c->pg), false);
        return;
    }
    rc = PQflush(c->pg);
    if (rc < 0) {
        conn_fail(c, WY_EUNAVAIL, PQerrorMessage(c->pg), false);
        return;
    }
    c->flushing = rc == 1;
    if (poll_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0)) != 0) {
        conn_fail(c, WY_EUNAVAIL, "cannot watch the connection socket", false);
        return;
    }
    conn_arm_timer(c);
}

/* Give an idle connection its next op: its transaction's queue, else the pool queue. */
static void conn_pump(pg_conn *c)
{
    wy_pg_t *pg = c->pool;
    pg_op *op;
    if (c->state != C_IDLE || pg->closing)
        return;
    if (c->tx) {
        op = list_pop(&c->tx->queue);
        if (op)
            conn_send(c, op);
        return;
    }
    op = list_pop(&pg->queue);
    if (op == NULL)
        return;
    if (op->kind == OP_BEGIN) {
        c->tx = op->tx;
        op->tx->conn = c;
    }
    conn_send(c, op);
}

static void pump(wy_pg_t *pg)
{
    for (uint32_t i = 0; i < pg->nconns && !pg->closing; i++)
        conn_pump(&pg->conns[i]);
}

/* The running op got its last result. */
static void conn_op_complete(pg_conn *c)
{
    wy_pg_t *pg = c->pool;
    pg_op *op = c->op;
    wy_pg_tx_t *tx = c->tx;
    if (op->preparing && op->res && PQresultStatus(op->res) == PGRES_COMMAND_OK) {
        op->preparing = false;
        PQclear(op->res);
        op->res = NULL;
        /* Cannot hit the bound: prepared maps are unbounded. */
        (void)wy_map_put_str(c->prepared, op->stmt->name, (void *)op->stmt);
        conn_send(c, op); /* now the query itself, on the same deadline */
        return;
    }
    c->op = NULL;
    c->state = C_IDLE;

    if (op->res == NULL) {
        conn_fail(c, WY_EIO, "no result from server", false);
        op_finish(pg, op, WY_EIO, "no result from server");
        return;
    }
    switch (op->kind) {
    case OP_HEALTH: {
        int st = PQresultStatus(op->res);
        pg->health_ok = st == PGRES_TUPLES_OK;
        op_free(op);
        break;
    }
    case OP_BEGIN:
        op_finish_result(pg, op);
        if (op->status == WY_OK) {
            tx->open = true;
            tx->deadline = uv_now(pg->loop) + pg->o.tx_timeout_ms;
        } else {
            c->tx = NULL;
            tx->conn = NULL;
        }
        break;
    case OP_COMMIT:
    case OP_ROLLBACK: {
        const char *tag = PQcmdStatus(op->res);
        c->tx = NULL;
        tx->conn = NULL;
        tx->open = false;
        op_finish_result(pg, op);
        /* COMMIT of a transaction that had failed answers "ROLLBACK" without an error. */
        if (op->kind == OP_COMMIT && op->status == WY_OK && tag && strcmp(tag, "ROLLBACK") == 0) {
            op->status = WY_ESTATE;
            op->err = wy_strdup("transaction had failed and was rolled back");
        }
        break;
    }
    default:
        op_finish_result(pg, op);
        break;
    }
    /* A pool statement must leave the connection outside any transaction (e.g. a raw BEGIN). */
    if (c->tx == NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        wy_log_warn("postgres statement left a transaction open; dropping the connection", NULL);
        conn_fail(c, WY_EUNAVAIL, "statement left a transaction open", true);
        return;
    }
    conn_arm_timer(c);
    conn_pump(c);
}

static void conn_read(pg_conn *c)
{
    PGresult *r;
    if (!PQconsumeInput(c->pg)) {
        conn_fail(c, WY_EUNAVAIL, PQerrorMessage(c->pg), false);
        return;
    }
    if (c->op == NULL) {
        /* idle: notices/notifications, or the server closing the connection */
        PGnotify *n;
        while ((n = PQnotifies(c->pg)) != NULL)
            PQfreemem(n);
        if (PQstatus(c->pg) == CONNECTION_BAD)
            conn_fail(c, WY_EUNAVAIL, PQerrorMessage(c->pg), false);
        return;
    }
    while (!PQisBusy(c->pg)) {
        r = PQgetResult(c->pg);
        if (r == NULL) {
            if (PQstatus(c->pg) == CONNECTION_BAD) {
                conn_fail(c, WY_EUNAVAIL, PQerrorMessage(c->pg), false);
                return;
            }
            conn_op_complete(c);
            return;
        }
        int st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            conn_fail(c, WY_EINVAL, "COPY is not supported by wy_pg", true);
            return;
        }
        if (c->op->res == NULL) {
            c->op->res = r;
        } else if (PQresultStatus(c->op->res) == PGRES_FATAL_ERROR) {
            PQclear(r); /* keep the first error */
        } else {
            PQclear(c->op->res);
            c->op->res = r;
        }
    }
}

static void conn_connect_poll(pg_conn *c)
{
    wy_pg_t *pg = c->pool;
    int st = PQconnectPoll(c->pg);
    /* libpq may have closed the socket and opened another one (next address of "localhost", SSL
     * retry), very likely under the same fd number. epoll forgot the closed one while libuv still
     * believes it is registered, so a handle kept across the switch would never fire again (or
     * make libuv abort on EPOLL_CTL_MOD). A fresh handle per connect step is cheap and safe. */
    if (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING)
        poll_close(c);
    switch (st) {
    case PGRES_POLLING_READING:
        if (poll_watch(c, UV_READABLE) != 0)
            conn_fail(c, WY_EUNAVAIL, "cannot watch the connection socket", false);
        break;
    case PGRES_POLLING_WRITING:
        if (poll_watch(c, UV_WRITABLE) != 0)
            conn_fail(c, WY_EUNAVAIL, "cannot watch the connection socket", false);
        break;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(c->pg, 1) != 0) {
            conn_fail(c, WY_EUNAVAIL, PQerrorMessage(c->pg), false);
            break;
        }
        if (poll_watch(c, UV_READABLE) != 0) {
            conn_fail(c, WY_EUNAVAIL, "cannot watch the connection socket", false);
            break;
        }
        c->state = C_IDLE;
        c->attempts = 0;
        pg->health_ok = true;
        uv_timer_stop(&c->timer);
        conn_pump(c);
        break;
    default:
        conn_fail(c, WY_EUNAVAIL, PQerrorMessage(c->pg), false);
        break;
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    pg_conn *c = h->data;
    wy_pg_t *pg = c->pool;
    if (status < 0) {
        /* libuv reports a socket error (POLLERR) as UV_EBADF and stops the handle; let libpq
         * read the real error (connection refused, reset) and decide, e.g. try the next host. */
        c->poll_events = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    if (c->state == C_CONNECTING) {
        conn_connect_poll(c);
    } else {
        if ((events & UV_WRITABLE) && c->flushing) {
            int rc = PQflush(c->pg);
            if (rc < 0) {
                conn_fail(c, WY_EUNAVAIL, PQerrorMessage(c->pg), false);
                goto out;
            }
            if (rc == 0) {
                c->flushing = false;
                poll_watch(c, UV_READABLE);
            }
        }
        if (events & UV_READABLE)
            conn_read(c);
        if (status < 0 && c->state != C_DOWN && c->poll == h)
            conn_fail(c, WY_EUNAVAIL, uv_strerror(status), false);
    }
out:
    pump(pg);
    drain_done(pg);
}

/* Server notices (WARNING, NOTICE) would go to stderr as raw text: keep the logs JSON. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    char *m = dup_msg(message);
    wy_log_debug("postgres notice", "notice", m, NULL);
    wy_free(m);
}

static void start_connect(pg_conn *c)
{
    wy_pg_t *pg = c->pool;
    c->pg = PQconnectStart(pg->conninfo);
    if (c->pg == NULL)
        abort(); /* libpq returns NULL only when out of memory */
    PQsetNoticeProcessor(c->pg, on_notice, NULL);
    c->state = C_CONNECTING;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, WY_EUNAVAIL, PQerrorMessage(c->pg), false);
        return;
    }
    if (poll_watch(c, UV_WRITABLE) != 0) {
        conn_fail(c, WY_EUNAVAIL, "cannot watch the connection socket", false);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timer, pg->o.connect_timeout_ms, 0);
}

static void on_conn_timer(uv_timer_t *t)
{
    pg_conn *c = t->data;
    wy_pg_t *pg = c->pool;
    uint64_t now = uv_now(pg->loop);
    switch (c->state) {
    case C_DOWN:
        start_connect(c);
        break;
    case C_CONNECTING:
        conn_fail(c, WY_EUNAVAIL, "connect timed out", false);
        break;
    default:
        if (c->op && c->op->deadline <= now) {
            conn_fail(c, WY_ETIMEDOUT, "query timed out", true);
        } else if (c->tx && c->tx->open && c->tx->deadline <= now) {
            wy_log_warn("postgres transaction timed out; rolling back", NULL);
            conn_fail(c, WY_ETIMEDOUT, "transaction timed out and was rolled back", true);
        } else {
            conn_arm_timer(c);
        }
        break;
    }
    pump(pg);
    drain_done(pg);
}

/* ---- pool timers ------------------------------------------------------------------------------
 */

/* The queue is FIFO but statements may carry their own timeouts, so expiry scans it; it is
 * bounded by max_queue and the scan runs only when some deadline passes. */
static void on_queue_timer(uv_timer_t *t)
{
    wy_pg_t *pg = t->data;
    uint64_t now = uv_now(pg->loop);
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &pg->queue.head)
    {
        pg_op *op = wy_container_of(pos, pg_op, node);
        if (op->deadline <= now) {
            list_remove(&pg->queue, op);
            op_finish(pg, op, WY_ETIMEDOUT, "timed out waiting for a free connection");
        }
    }
    pg->queue_due = 0;
    arm_queue_timer(pg);
    drain_done(pg);
}

static void arm_queue_timer(wy_pg_t *pg)
{
    uint64_t now = uv_now(pg->loop), due = 0;
    if (pg->closing)
        return;
    wy_list_t *pos;
    wy_list_foreach(pos, &pg->queue.head)
    {
        const pg_op *op = wy_container_of(pos, pg_op, node);
        if (due == 0 || op->deadline < due)
            due = op->deadline;
    }
    if (due == 0) {
        uv_timer_stop(&pg->queue_timer);
        pg->queue_due = 0;
        return;
    }
    pg->queue_due = due;
    uv_timer_start(&pg->queue_timer, on_queue_timer, due > now ? due - now : 0, 0);
}

static void on_health_timer(uv_timer_t *t)
{
    wy_pg_t *pg = t->data;
    if (pg->queue.n > 0)
        return; /* busy pool: the traffic itself shows whether the server answers */
    for (uint32_t i = 0; i < pg->nconns; i++) {
        pg_conn *c = &pg->conns[i];
        if (c->state == C_IDLE && c->tx == NULL) {
            /* short deadline: a hung server should turn readiness off quickly */
            pg_op *op = op_new(pg, OP_HEALTH, "SELECT 1", 0, NULL);
            uint32_t limit = 2 * pg->o.health_interval_ms;
            if (limit < pg->o.query_timeout_ms)
                op->deadline = uv_now(pg->loop) + limit;
            conn_send(c, op);
            break;
        }
    }
    drain_done(pg);
}

/* ---- public -----------------------------------------------------------------------------------
 */

int wy_pg_create(uv_loop_t *loop, const char *conninfo, const wy_pg_opts_t *opts, wy_pg_t **out,
                 const char **err)
{
    char *perr = NULL;
    PQconninfoOption *ci;
    const char *dummy;
    if (err == NULL)
        err = &dummy;
    *out = NULL;
    if (conninfo == NULL || *conninfo == '\0') {
        *err = "empty connection string (expected postgresql://user@host:port/db)";
        return WY_EINVAL;
    }
    ci = PQconninfoParse(conninfo, &perr);
    if (ci == NULL) {
        char *m = dup_msg(perr ? perr : "cannot parse connection string");
        snprintf(errbuf, sizeof errbuf, "bad connection string: %s", m);
        wy_free(m);
        if (perr)
            PQfreemem(perr);
        *err = errbuf;
        return WY_EINVAL;
    }
    PQconninfoFree(ci);

    wy_pg_t *pg = wy_calloc(1, sizeof *pg);
    if (opts)
        pg->o = *opts;
    if (pg->o.size == 0)
        pg->o.size = 4;
    if (pg->o.size > 64)
        pg->o.size = 64;
    if (pg->o.max_queue == 0)
        pg->o.max_queue = 1024;
    if (pg->o.query_timeout_ms == 0)
        pg->o.query_timeout_ms = 5000;
    if (pg->o.tx_timeout_ms == 0)
        pg->o.tx_timeout_ms = 30000;
    if (pg->o.connect_timeout_ms == 0)
        pg->o.connect_timeout_ms = 5000;
    if (pg->o.health_interval_ms == 0)
        pg->o.health_interval_ms = 1000;
    if (pg->o.backoff_min_ms == 0)
        pg->o.backoff_min_ms = 100;
    if (pg->o.backoff_max_ms < pg->o.backoff_min_ms)
        pg->o.backoff_max_ms = pg->o.backoff_min_ms > 5000 ? pg->o.backoff_min_ms : 5000;
    pg->loop = loop;
    pg->conninfo = wy_strdup(conninfo);
    list_init(&pg->queue);
    list_init(&pg->done);
    wy_list_init(&pg->txs);
    pg->nconns = pg->o.size;
    pg->conns = wy_calloc(pg->nconns, sizeof *pg->conns);
    uv_timer_init(loop, &pg->defer_timer);
    uv_timer_init(loop, &pg->queue_timer);
    uv_timer_init(loop, &pg->health_timer);
    pg->defer_timer.data = pg->queue_timer.data = pg->health_timer.data = pg;
    pg->handles_open = 3;
    pg->health_reported = WY_EUNAVAIL;
    for (uint32_t i = 0; i < pg->nconns; i++) {
        pg_conn *c = &pg->conns[i];
        c->pool = pg;
        c->prepared = wy_map_new(0);
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        pg->handles_open++;
        start_connect(c);
    }
    uv_timer_start(&pg->health_timer, on_health_timer, pg->o.health_interval_ms,
                   pg->o.health_interval_ms);
    *out = pg;
    return WY_OK;
}

static bool stmt_ok(const wy_pg_stmt_t *st)
{
    if (st == NULL || st->name == NULL || st->sql == NULL || st->nparams < 0 || st->nparams > 65535)
        return false;
    size_t n = strlen(st->name);
    return n >= 1 && n <= 63 &&
           strspn(st->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "0123456789_") == n;
}

/* A statement op (text sql, or prepared st with st->nparams parameters), or NULL and *rc. */
static pg_op *stmt_op(wy_pg_t *pg, uint32_t timeout_ms, const char *sql, const wy_pg_stmt_t *st,
                      int nparams, const char *const *params, wy_pg_cb cb, void *ud, int *rc)
{
    *rc = WY_OK;
    if (pg->closing)
        *rc = WY_ECANCELED;
    else if (st ? !stmt_ok(st) : sql == NULL)
        *rc = WY_EINVAL;
    else if (st)
        nparams = st->nparams;
    if (*rc == WY_OK &&
        (cb == NULL || nparams < 0 || nparams > 65535 || (nparams > 0 && params == NULL)))
        *rc = WY_EINVAL;
    if (*rc != WY_OK)
        return NULL;
    pg_op *op = op_new(pg, OP_QUERY, sql, nparams, params);
    op->stmt = st;
    if (timeout_ms)
        op->deadline = uv_now(pg->loop) + timeout_ms;
    op->qcb = cb;
    op->ud = ud;
    return op;
}

static int enqueue(wy_pg_t *pg, pg_op *op)
{
    if (all_down(pg)) {
        op_free(op);
        return WY_EUNAVAIL;
    }
    if (pg->queue.n >= pg->o.max_queue) {
        bool idle = false;
        for (uint32_t i = 0; i < pg->nconns; i++)
            idle |= pg->conns[i].state == C_IDLE && pg->conns[i].tx == NULL;
        if (!idle) {
            op_free(op);
            return WY_EBUSY;
        }
    }
    list_push(&pg->queue, op);
    if (pg->queue_due == 0 || op->deadline < pg->queue_due) {
        pg->queue_due = op->deadline;
        uv_timer_start(&pg->queue_timer, on_queue_timer, op->deadline - uv_now(pg->loop), 0);
    }
    pump(pg);
    return WY_OK;
}

int wy_pg_query(wy_pg_t *pg, const char *sql, int nparams, const char *const *params, wy_pg_cb cb,
                void *ud)
{
    return wy_pg_query_timeout(pg, 0, sql, nparams, params, cb, ud);
}

int wy_pg_query_timeout(wy_pg_t *pg, uint32_t timeout_ms, const char *sql, int nparams,
                        const char *const *params, wy_pg_cb cb, void *ud)
{
    int rc;
    pg_op *op = stmt_op(pg, timeout_ms, sql, NULL, nparams, params, cb, ud, &rc);
    return op ? enqueue(pg, op) : rc;
}

int wy_pg_exec(wy_pg_t *pg, const wy_pg_stmt_t *st, const char *const *params, wy_pg_cb cb,
               void *ud)
{
    return wy_pg_exec_timeout(pg, 0, st, params, cb, ud);
}

int wy_pg_exec_timeout(wy_pg_t *pg, uint32_t timeout_ms, const wy_pg_stmt_t *st,
                       const char *const *params, wy_pg_cb cb, void *ud)
{
    int rc;
    pg_op *op = stmt_op(pg, timeout_ms, NULL, st, 0, params, cb, ud, &rc);
    return op ? enqueue(pg, op) : rc;
}

int wy_pg_begin(wy_pg_t *pg, wy_pg_begin_cb cb, void *ud)
{
    if (pg->closing)
        return WY_ECANCELED;
    if (cb == NULL)
        return WY_EINVAL;
    pg_op *op = op_new(pg, OP_BEGIN, "BEGIN", 0, NULL);
    wy_pg_tx_t *tx = wy_calloc(1, sizeof *tx);
    tx->pool = pg;
    list_init(&tx->queue);
    op->bcb = cb;
    op->ud = ud;
    op->tx = tx;
    wy_list_push_front(&pg->txs, &tx->node);
    int rc = enqueue(pg, op);
    if (rc != WY_OK)
        tx_free(tx);
    return rc;
}

static void tx_enqueue(wy_pg_tx_t *tx, pg_op *op)
{
    list_push(&tx->queue, op);
    if (tx->conn)
        conn_pump(tx->conn);
}

int wy_pg_tx_query(wy_pg_tx_t *tx, const char *sql, int nparams, const char *const *params,
                   wy_pg_cb cb, void *ud)
{
    return wy_pg_tx_query_timeout(tx, 0, sql, nparams, params, cb, ud);
}

/* Queue a statement op on tx (checks the transaction's state first). */
static int tx_submit(wy_pg_tx_t *tx, uint32_t timeout_ms, const char *sql, const wy_pg_stmt_t *st,
                     int nparams, const char *const *params, wy_pg_cb cb, void *ud)
{
    wy_pg_t *pg = tx->pool;
    int rc;
    pg_op *op = stmt_op(pg, timeout_ms, sql, st, nparams, params, cb, ud, &rc);
    if (op == NULL)
        return rc;
    if (tx->ending || tx->dead || !tx->open)
        rc = WY_ESTATE;
    else if (tx->queue.n >= pg->o.max_queue)
        rc = WY_EBUSY;
    if (rc != WY_OK) {
        op_free(op);
        return rc;
    }
    op->tx = tx;
    tx_enqueue(tx, op);
    return WY_OK;
}

int wy_pg_tx_query_timeout(wy_pg_tx_t *tx, uint32_t timeout_ms, const char *sql, int nparams,
                           const char *const *params, wy_pg_cb cb, void *ud)
{
    return tx_submit(tx, timeout_ms, sql, NULL, nparams, params, cb, ud);
}

int wy_pg_tx_exec(wy_pg_tx_t *tx, const wy_pg_stmt_t *st, const char *const *params, wy_pg_cb cb,
                  void *ud)
{
    return wy_pg_tx_exec_timeout(tx, 0, st, params, cb, ud);
}

int wy_pg_tx_exec_timeout(wy_pg_tx_t *tx, uint32_t timeout_ms, const wy_pg_stmt_t *st,
                          const char *const *params, wy_pg_cb cb, void *ud)
{
    return tx_submit(tx, timeout_ms, NULL, st, 0, params, cb, ud);
}

static int tx_end(wy_pg_tx_t *tx, int kind, wy_pg_end_cb cb, void *ud)
{
    wy_pg_t *pg = tx->pool;
    if (pg->closing)
        return WY_ECANCELED;
    if (tx->ending)
        return WY_ESTATE;
    tx->ending = true;
    pg_op *op = op_new(pg, kind, kind == OP_COMMIT ? "COMMIT" : "ROLLBACK", 0, NULL);
    op->ecb = cb;
    op->ud = ud;
    op->tx = tx;
    if (tx->dead || tx->conn == NULL) {
        if (kind == OP_ROLLBACK)
            op_finish(pg, op, WY_OK, NULL);
        else
            op_finish(pg, op, WY_ESTATE, tx->why ? tx->why : "transaction is not open");
        return WY_OK;
    }
    tx_enqueue(tx, op);
    return WY_OK;
}

int wy_pg_tx_commit(wy_pg_tx_t *tx, wy_pg_end_cb cb, void *ud)
{
    return tx_end(tx, OP_COMMIT, cb, ud);
}

int wy_pg_tx_rollback(wy_pg_tx_t *tx, wy_pg_end_cb cb, void *ud)
{
    return tx_end(tx, OP_ROLLBACK, cb, ud);
}

int wy_pg_health(const wy_pg_t *pg)
{
    if (!pg->health_ok || pg->closing)
        return WY_EUNAVAIL;
    for (uint32_t i = 0; i < pg->nconns; i++)
        if (pg->conns[i].state == C_IDLE || pg->conns[i].state == C_BUSY)
            return WY_OK;
    return WY_EUNAVAIL;
}

static void maybe_finish_close(wy_pg_t *pg)
{
    if (pg->handles_open > 0 || pg->draining)
        return;
    wy_list_t *n;
    while ((n = wy_list_first(&pg->txs)) != NULL)
        tx_free(wy_container_of(n, wy_pg_tx_t, node));
    void (*done)(void *) = pg->close_done;
    void *ud = pg->close_ud;
    for (uint32_t i = 0; i < pg->nconns; i++)
        wy_map_free(pg->conns[i].prepared);
    wy_free(pg->conns);
    wy_free(pg->conninfo);
    wy_free(pg->last_error);
    wy_free(pg);
    if (done)
        done(ud);
}

void wy_pg_close(wy_pg_t *pg, void (*done)(void *ud), void *ud)
{
    pg_op *op;
    if (pg == NULL || pg->closing)
        return;
    pg->closing = true;
    pg->close_done = done;
    pg->close_ud = ud;
    uv_timer_stop(&pg->defer_timer);
    while ((op = list_pop(&pg->queue)) != NULL)
        op_finish(pg, op, WY_ECANCELED, "pool closing");
    for (uint32_t i = 0; i < pg->nconns; i++) {
        pg_conn *c = &pg->conns[i];
        op = c->op;
        c->op = NULL;
        poll_close(c);
        if (c->pg)
            PQfinish(c->pg);
        c->pg = NULL;
        c->state = C_DOWN;
        c->tx = NULL;
        if (op && op->kind == OP_HEALTH)
            op_free(op);
        else if (op)
            op_finish(pg, op, WY_ECANCELED, "pool closing");
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        c->timer.data = pg;
    }
    wy_list_t *pos;
    wy_list_foreach(pos, &pg->txs)
    {
        wy_pg_tx_t *tx = wy_container_of(pos, wy_pg_tx_t, node);
        tx->conn = NULL;
        tx->dead = true;
        while ((op = list_pop(&tx->queue)) != NULL)
            op_finish(pg, op, WY_ECANCELED, "pool closing");
    }
    uv_close((uv_handle_t *)&pg->defer_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pg->queue_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pg->health_timer, on_handle_closed);
    drain_done(pg);
}

/* ---- columns by name -------------------------------------------------------------------------
 */

/* A result read with a name it does not have: the SQL and the code disagree. */
static void bad_column(const PGresult *res, const char *name, int row)
{
    char cols[512] = "";
    size_t used = 0;
    int n = res ? PQnfields(res) : 0;
    for (int i = 0; i < n && used < sizeof cols; i++)
        used += (size_t)snprintf(cols + used, sizeof cols - used, "%s%s", i ? "," : "",
                                 PQfname(res, i));
    char rows[24];
    snprintf(rows, sizeof rows, "%d/%d", row, res ? PQntuples(res) : 0);
    wy_log_error("postgres result read by a column or row it does not have", "column", name,
                 "columns", cols, "row", rows, NULL);
    abort();
}

int wy_pg_col(const PGresult *res, const char *name)
{
    int col = res ? PQfnumber(res, name) : -1;
    if (col < 0)
        bad_column(res, name, -1);
    return col;
}

/* Column index of name, checking row. */
static int cell(const PGresult *res, int row, const char *name)
{
    int col = wy_pg_col(res, name);
    if (row < 0 || row >= PQntuples(res))
        bad_column(res, name, row);
    return col;
}

const char *wy_pg_text(const PGresult *res, int row, const char *name)
{
    int col = cell(res, row, name);
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

bool wy_pg_isnull(const PGresult *res, int row, const char *name)
{
    return PQgetisnull(res, row, cell(res, row, name)) != 0;
}

bool wy_pg_bool(const PGresult *res, int row, const char *name)
{
    const char *v = wy_pg_text(res, row, name);
    return v != NULL && v[0] == 't';
}

int64_t wy_pg_int64(const PGresult *res, int row, const char *name)
{
    const char *v = wy_pg_text(res, row, name);
    return v ? strtoll(v, NULL, 10) : 0;
}
