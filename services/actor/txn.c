/* wy-actor cross-actor transactions: the coordinator of Transact (trade, gift) and of
 * the friend commands (request, accept, decline, remove), and ListFriends.
 *
 * 1. prepare: each side is held through the store (actor_store_hold), in actor-id order
 *    so two transactions over overlapping pairs never wait on each other in a circle; a
 *    hold waits for the side's earlier commands to be written and then keeps every other
 *    command of that side queued. Each side is decided against its held (committed)
 *    state into one Traded event (trade.c).
 * 2. write: ONE statement (one PostgreSQL transaction) runs the fence of both shards,
 *    inserts the actor.txns row of the txn_id and both events. A txn_id seen before
 *    fails on the row's primary key and writes nothing: the first result is read and
 *    answered (replayed). A refusal writes only its txns row (after the release), so a
 *    retry stays refused.
 * 3. commit/apply: the sides are released with their event applied (committed), without
 *    it (nothing written), or dropped and read again from PostgreSQL (outcome unknown,
 *    fenced). Then the caller is answered.
 * WY_ACTOR_TXN_TIMEOUT bounds step 1: past it the transaction is aborted, its held sides
 * released unchanged, and the caller told to retry with the same txn_id. A crash at any
 * point leaves both events or neither in PostgreSQL (one statement), and memory is
 * rebuilt from PostgreSQL after it. A side another instance owns is held through its
 * owner (txn_remote.c: HoldSide / ReleaseSide, settled in PostgreSQL by the owner when the
 * outcome does not reach it); the statement then fences each side with its own owner.
 * Loop thread. */
#include "actor.h"
#include "friends.h"
#include "txn.h"
#include "txn_remote.h"
#include "wy_log.h"
#include "wy_text.h"

#include <stdio.h>
#include <string.h>

#define TXN_UNAVAIL "transaction not done; retry with the same txn_id"

typedef struct txn txn_t;

/* The text parameters of a transaction's write (write_params). */
typedef struct {
    wy_buf_t res, pay[2], snap[2];
    char shard[2][8], epoch[2][24], seq[2][24], evid[2][37], keep[24];
    char owner[2][128]; /* each side's owner instance (fence_each) */
} txn_write_t;

/* What differs between kinds of transactions: the decision of both sides (fills t->ev)
 * and the answer (a message of type `result`, packed from both sides' states after). */
typedef struct {
    int (*decide)(txn_t *t, const actor_state_t *s[2], int64_t now_ms, char *why, size_t cap);
    uint8_t *(*pack)(const txn_t *t, const actor_state_t after[2], size_t *len);
    const ProtobufCMessageDescriptor *result;
    void (*set_replayed)(ProtobufCMessage *res);
} txn_ops_t;

typedef struct {
    actor_req_t req; /* the hold */
    txn_t *t;
    bool held;
    actor_rside_t *remote; /* held through its owner (txn_remote.c), else NULL */
} txn_side_t;

struct txn {
    actor_svc_t *svc;
    wy_grpc_call_id_t call;
    char id[ACTOR_TXN_ID_MAX + 1];
    const txn_ops_t *ops;
    const char *kind; /* "trade", "gift", "friend_request"... (static) */
    actor_friend_op_t friend_op;
    char account[ACTOR_ID_LEN + 1]; /* friends: side 0 must belong to it ("" = any) */
    char who[2][8];                 /* the sides' names in messages */
    char actor[2][ACTOR_ID_LEN + 1];
    actor_offer_t give[2]; /* what side i gives to the other */
    txn_side_t side[2];
    int order[2]; /* hold order: by actor id */
    int next;     /* holds requested so far */
    int pending;  /* holds requested and not answered */
    bool answered, writing, timer_open;
    uv_timer_t timer;
    actor_event_t ev[2];
    bool snapshot[2]; /* the write holds a snapshot of side i */
    txn_write_t w;    /* the write's parameters */
    /* Forwarding the whole call to the instance owning both sides: */
    const char *method;                      /* its full path (static) */
    const ProtobufCMessageDescriptor *rdesc; /* its request's type */
    uint8_t *request;                        /* the request, packed (wy_free) */
    size_t request_len;
    bool forwarded;  /* it came from another instance */
    wy_list_t node;  /* in G.queue while waiting for a group */
    uint8_t *result; /* the packed answer, written with the events */
    size_t result_len;
    int64_t started_ns;
    char attempt[37]; /* this attempt's id (actor.txn_attempts) when a side is remote */
};

/* The held, committed state of side i: here, or as its owner answered. */
static const actor_state_t *side_state(const txn_t *t, int i)
{
    return t->side[i].remote ? actor_rside_state(t->side[i].remote)
                             : actor_store_held(&t->side[i].req);
}

static bool any_remote(const txn_t *t)
{
    return t->side[0].remote || t->side[1].remote;
}

/* Counters and the latency of Transact, registered by actor_txn_start. */
static struct {
    wy_metric_t *ok, *replayed, *refused, *failed, *seconds;
} m;

static void txn_maybe_free(txn_t *t);

/* ---- statements ---- */

/* The statement of a transaction after its fence: the txns row, both events, the
 * snapshots of the sides due one. A side that crossed WY_ACTOR_SNAPSHOT_EVERY gets its
 * snapshot ($19 / $20, NULL = none) and keeps the $21 newest (the statement does not see
 * its own insert). */
#define TXN_WRITE_BODY                                                                             \
    "t AS (INSERT INTO actor.txns (txn_id, kind, actor_a, actor_b, status, result) "               \
    "VALUES ($6, $7, $8::uuid, $9::uuid, 0, $10::bytea) RETURNING 1), "                            \
    "ev AS (INSERT INTO actor.events (actor_id, seq, epoch, event_id, type, payload) VALUES "      \
    "($8::uuid, $11::bigint, $2::bigint, $12::uuid, $13, $14::bytea), "                            \
    "($9::uuid, $15::bigint, $4::bigint, $16::uuid, $17, $18::bytea) RETURNING 1), "               \
    "s AS (SELECT * FROM (VALUES ($8::uuid, $11::bigint, $19::bytea), "                            \
    "($9::uuid, $15::bigint, $20::bytea)) AS v(id, seq, state) WHERE v.state IS NOT NULL), "       \
    "snap AS (INSERT INTO actor.snapshots (actor_id, seq, state) SELECT * FROM s RETURNING 1), "   \
    "trim AS (DELETE FROM actor.snapshots o USING s WHERE o.actor_id = s.id AND o.seq < "          \
    "COALESCE((SELECT min(k.seq) FROM (SELECT seq FROM actor.snapshots WHERE actor_id = s.id "     \
    "ORDER BY seq DESC LIMIT ($21::int - 1)) k), 9223372036854775807) RETURNING 1) "               \
    "SELECT (SELECT count(*) FROM fence) AS fenced, (SELECT count(*) FROM t) AS txns, "            \
    "(SELECT count(*) FROM ev) AS events, (SELECT count(*) FROM snap) AS snaps, "                  \
    "(SELECT count(*) FROM trim) AS trimmed"

/* Both events, the txns row and the fence of both shards (both ours), as one statement. */
static const wy_pg_stmt_t sql_txn_write = {
    "actor_txn_write",
    "WITH fence AS (SELECT actor.fence(ARRAY[$1::int, $3::int], ARRAY[$2::bigint, $4::bigint], "
    "$5) AS ok), " TXN_WRITE_BODY,
    21};
/* The same with a side held by its owner elsewhere (txn_remote.c): each shard fenced with
 * its own owner ($5 side a, $22 side b), and the attempt's row ($23), which a remote
 * owner's settle also inserts: exactly one of the two gets in (the CTE is always run:
 * a data-modifying WITH executes whether or not it is referenced). */
static const wy_pg_stmt_t sql_txn_write_remote = {
    "actor_txn_write_remote",
    "WITH fence AS (SELECT actor.fence_each(ARRAY[$1::int, $3::int], ARRAY[$2::bigint, "
    "$4::bigint], ARRAY[$5::text, $22::text]) AS ok), "
    "att AS (INSERT INTO actor.txn_attempts (attempt_id, txn_id, outcome) VALUES ($23::uuid, $6, "
    "'committed')), " TXN_WRITE_BODY,
    23};
static const wy_pg_stmt_t sql_txn_refuse = {
    "actor_txn_refuse",
    "INSERT INTO actor.txns (txn_id, kind, actor_a, actor_b, status, message) "
    "VALUES ($1, $2, $3::uuid, $4::uuid, $5::int, $6)",
    6};
static const wy_pg_stmt_t sql_txn_first = {
    "actor_txn_first", "SELECT status, message, result FROM actor.txns WHERE txn_id = $1", 1};

/* ---- answers ---- */

/* bytea input text: \\x and the bytes in hex. */
static void hex(wy_buf_t *b, const actor_event_t *ev)
{
    wy_buf_puts(b, "\\x");
    for (size_t i = 0; i < ev->len; i++)
        wy_buf_printf(b, "%02x", ev->data[i]);
}

static void count(wy_metric_t *c, const txn_t *t)
{
    wy_metric_inc(c);
    wy_metric_observe(m.seconds, (double)(wy_now_ns() - t->started_ns) / 1e9);
}

static void answer_error(txn_t *t, int status, const char *msg)
{
    if (t->answered)
        return;
    t->answered = true;
    count(status == WY_EUNAVAIL || status == WY_EBUSY || status == WY_EINTERNAL ? m.failed
                                                                                : m.refused,
          t);
    wy_grpc_reply_error(t->call, status, msg);
}

static void answer_packed(txn_t *t, const uint8_t *data, size_t len, bool replayed)
{
    ProtobufCMessage *res =
        data ? protobuf_c_message_unpack(t->ops->result, NULL, len, data) : NULL;
    if (!res) {
        answer_error(t, WY_EINTERNAL, "stored transaction result does not decode");
        return;
    }
    t->answered = true;
    count(replayed ? m.replayed : m.ok, t);
    if (replayed)
        t->ops->set_replayed(res);
    wy_grpc_reply(t->call, res);
    protobuf_c_message_free_unpacked(res, NULL);
}

/* The answer, from both sides after their events (a new buffer, wy_free), and the
 * snapshots of the sides that are due one (hex bytea text in snap[i], empty if none). */
static uint8_t *pack_result(txn_t *t, size_t *len, wy_buf_t snap[2])
{
    actor_state_t after[2];
    for (int i = 0; i < 2; i++) {
        const actor_req_t *held = &t->side[i].req;
        actor_state_init(&after[i], t->actor[i]);
        actor_state_copy(&after[i], side_state(t, i));
        actor_apply_packed(&after[i], after[i].seq + 1, t->ev[i].data, t->ev[i].len);
        /* A remote side's snapshot is its owner's business (its next command writes it). */
        if (snap && !t->side[i].remote && actor_store_snapshot_due(held, after[i].seq)) {
            actor_event_t packed = {.type = NULL};
            packed.data = actor_snapshot_encode(&after[i], &packed.len);
            hex(&snap[i], &packed);
            wy_free(packed.data);
            t->snapshot[i] = true;
        }
    }
    uint8_t *buf = t->ops->pack(t, after, len);
    for (int i = 0; i < 2; i++)
        actor_state_clear(&after[i]);
    return buf;
}

/* ---- releases ---- */

/* Releases every held side: with its event (committed), unchanged, or to be read again. */
static void release_all(txn_t *t, bool committed, bool unknown)
{
    for (int i = 0; i < 2; i++) {
        if (!t->side[i].held)
            continue;
        t->side[i].held = false;
        if (t->side[i].remote) {
            actor_rside_release(t->side[i].remote,
                                committed ? ACTOR_RSIDE_COMMITTED
                                : unknown ? ACTOR_RSIDE_UNKNOWN
                                          : ACTOR_RSIDE_NOT_WRITTEN,
                                &t->ev[i]);
            t->side[i].remote = NULL;
            continue;
        }
        actor_store_release(&t->side[i].req, committed ? &t->ev[i] : NULL, committed ? 1 : 0,
                            committed && t->snapshot[i], unknown);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    txn_t *t = h->data;
    t->timer_open = false;
    txn_maybe_free(t);
}

/* Frees t once it is answered and nothing of it is in flight. */
static void txn_maybe_free(txn_t *t)
{
    if (!t->answered || t->pending || t->writing)
        return;
    if (t->timer_open) {
        if (!uv_is_closing((uv_handle_t *)&t->timer))
            uv_close((uv_handle_t *)&t->timer, on_timer_closed);
        return;
    }
    actor_svc_t *svc = t->svc;
    for (int i = 0; i < 2; i++)
        wy_free(t->ev[i].data);
    wy_free(t->result);
    wy_free(t->request);
    wy_buf_free(&t->w.res);
    for (int i = 0; i < 2; i++) {
        wy_buf_free(&t->w.pay[i]);
        wy_buf_free(&t->w.snap[i]);
    }
    svc->busy--;
    wy_free(t);
    actor_svc_unref(svc);
}

/* ---- the first result of a txn_id seen before ---- */

static void on_first(int status, const PGresult *res, const char *err, void *ud)
{
    txn_t *t = ud;
    t->writing = false;
    if (status != WY_OK || PQntuples(res) != 1) {
        wy_log_warn("transaction lookup failed", "txn", t->id, "error", err ? err : "no row", NULL);
        answer_error(t, WY_EUNAVAIL, TXN_UNAVAIL);
    } else if (wy_pg_int64(res, 0, "status") != 0) {
        answer_error(t, (int)wy_pg_int64(res, 0, "status"), wy_pg_text(res, 0, "message"));
    } else {
        size_t len = 0;
        const char *text = wy_pg_text(res, 0, "result");
        uint8_t *data = text ? PQunescapeBytea((const unsigned char *)text, &len) : NULL;
        answer_packed(t, data, len, true);
        PQfreemem(data);
    }
    txn_maybe_free(t);
}

/* Answers the first result of t->id (t->writing is set by the caller's statement). */
static void lookup_first(txn_t *t)
{
    const char *p[] = {t->id};
    wy_pg_t *pg = wy_daemon_pg(t->svc->d);
    if (!pg || wy_pg_exec(pg, &sql_txn_first, p, on_first, t) != WY_OK)
        on_first(WY_EUNAVAIL, NULL, "PostgreSQL unavailable", t);
}

static bool is_txn_conflict(int status, const PGresult *res)
{
    const char *c = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    return status == WY_EEXIST && c && !strcmp(c, "txns_pkey");
}

/* ---- refusal ---- */

typedef struct {
    txn_t *t;
    int status;
    char msg[160];
} refusal_t;

static void on_refused(int status, const PGresult *res, const char *err, void *ud)
{
    refusal_t *r = ud;
    txn_t *t = r->t;
    if (is_txn_conflict(status, res)) {
        lookup_first(t); /* the first attempt decided it */
    } else {
        t->writing = false;
        if (status != WY_OK)
            wy_log_warn("transaction refusal not recorded", "txn", t->id, "error", err, NULL);
        answer_error(t, r->status, r->msg); /* recorded or not, the refusal stands */
        txn_maybe_free(t);
    }
    wy_free(r);
}

static void refuse(txn_t *t, int status, const char *msg)
{
    release_all(t, false, false);
    refusal_t *r = wy_calloc(1, sizeof *r);
    r->t = t;
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
    char st[16];
    snprintf(st, sizeof st, "%d", status);
    const char *p[] = {t->id, t->kind, t->actor[0], t->actor[1], st, r->msg};
    wy_pg_t *pg = wy_daemon_pg(t->svc->d);
    t->writing = true;
    if (!pg || wy_pg_exec(pg, &sql_txn_refuse, p, on_refused, r) != WY_OK)
        on_refused(WY_EUNAVAIL, NULL, "PostgreSQL unavailable", r);
}

/* ---- write ---- */

static void on_written(int status, const PGresult *res, const char *err, void *ud)
{
    txn_t *t = ud;
    if (status == WY_OK) {
        release_all(t, true, false);
        t->writing = false;
        answer_packed(t, t->result, t->result_len, false);
        wy_log_info("transaction committed", "txn", t->id, "kind", t->kind, "a", t->actor[0], "b",
                    t->actor[1], NULL);
    } else if (is_txn_conflict(status, res)) {
        release_all(t, false, false); /* nothing written */
        lookup_first(t);
        return;
    } else {
        const char *sqlstate = res ? wy_pg_sqlstate(res) : "";
        /* Fenced, a seq another writer took (WY_EEXIST on events), or a commit whose
         * outcome is lost: memory may be stale, so both sides are read again. */
        bool unknown = status == WY_EUNAVAIL || status == WY_ETIMEDOUT || status == WY_EEXIST ||
                       !strcmp(sqlstate, "WYF01");
        wy_log_warn("transaction write failed", "txn", t->id, "error",
                    err ? err : wy_strerror(status), "outcome", unknown ? "unknown" : "rolled back",
                    NULL);
        release_all(t, false, unknown);
        t->writing = false;
        answer_error(t, WY_EUNAVAIL, TXN_UNAVAIL);
    }
    txn_maybe_free(t);
}

/* The write's parameters, made once (a group that fails is written again one by one). */
static void write_params(txn_t *t)
{
    actor_svc_t *svc = t->svc;
    t->result = pack_result(t, &t->result_len, t->w.snap);
    hex(&t->w.res, &(actor_event_t){.data = t->result, .len = t->result_len});
    for (int i = 0; i < 2; i++) {
        int sh = actor_shard(t->actor[i]);
        const actor_rside_t *rs = t->side[i].remote;
        snprintf(t->w.shard[i], sizeof t->w.shard[i], "%d", sh);
        snprintf(t->w.epoch[i], sizeof t->w.epoch[i], "%lld",
                 (long long)(rs ? actor_rside_epoch(rs) : svc->epoch[sh]));
        snprintf(t->w.owner[i], sizeof t->w.owner[i], "%s",
                 rs ? actor_rside_owner(rs) : wy_daemon_instance(svc->d));
        snprintf(t->w.seq[i], sizeof t->w.seq[i], "%llu",
                 (unsigned long long)side_state(t, i)->seq + 1);
        wy_uuid4(t->w.evid[i]);
        hex(&t->w.pay[i], &t->ev[i]);
    }
    snprintf(t->w.keep, sizeof t->w.keep, "%lld", (long long)actor_cfg.snapshot_keep);
}

/* Sends t's statement: inside tx (a group), else on its own. Returns as wy_pg_exec. */
static int send_write(txn_t *t, wy_pg_tx_t *tx, wy_pg_cb cb, void *ud)
{
    const txn_write_t *w = &t->w;
    const char *p[] = {w->shard[0],
                       w->epoch[0],
                       w->shard[1],
                       w->epoch[1],
                       w->owner[0],
                       t->id,
                       t->kind,
                       t->actor[0],
                       t->actor[1],
                       w->res.data,
                       w->seq[0],
                       w->evid[0],
                       t->ev[0].type,
                       w->pay[0].data,
                       w->seq[1],
                       w->evid[1],
                       t->ev[1].type,
                       w->pay[1].data,
                       t->snapshot[0] ? w->snap[0].data : NULL,
                       t->snapshot[1] ? w->snap[1].data : NULL,
                       w->keep,
                       w->owner[1],
                       t->attempt};
    const wy_pg_stmt_t *st = any_remote(t) ? &sql_txn_write_remote : &sql_txn_write;
    if (tx)
        return wy_pg_tx_exec(tx, st, p, cb, ud);
    wy_pg_t *pg = wy_daemon_pg(t->svc->d);
    return pg ? wy_pg_exec(pg, st, p, cb, ud) : WY_EUNAVAIL;
}

/* t written on its own. */
static void write_one(txn_t *t)
{
    t->writing = true;
    if (send_write(t, NULL, on_written, t) != WY_OK) {
        t->writing = false;
        release_all(t, false, false);
        answer_error(t, WY_EUNAVAIL, TXN_UNAVAIL);
        txn_maybe_free(t);
    }
}

/* ---- group commit: the transactions decided in one loop turn, one PostgreSQL commit ----
 * Up to GROUP_MAX statements in one BEGIN ... COMMIT (the commit is what costs); if any of
 * them fails (a txn_id seen before, a fence) the group is rolled back and each is written
 * again on its own, which sorts out whose it was. A commit whose outcome is lost makes
 * every member unknown. */

#define GROUP_MAX  32
#define GROUPS_MAX 4 /* the default PostgreSQL pool */

typedef struct {
    txn_t *t[GROUP_MAX];
    size_t n;
    int fail; /* the first statement error, 0 = none */
} txn_group_t;

static struct {
    actor_svc_t *svc;
    wy_list_t queue; /* txn_t.node, decided and waiting for a group */
    uv_check_t flush;
    bool open;
    unsigned groups;
} G;

static void arm_groups(void);

static void group_end(txn_group_t *g)
{
    G.groups--;
    wy_free(g);
    arm_groups();
}

static void on_group_stmt(int status, const PGresult *res, const char *err, void *ud)
{
    (void)res;
    txn_group_t *g = ud;
    if (status != WY_OK && !g->fail) {
        g->fail = status;
        wy_log_debug("transaction group rolled back; writing one by one", "error", err, NULL);
    }
}

static void on_group_committed(int status, const char *err, void *ud)
{
    txn_group_t *g = ud;
    for (size_t i = 0; i < g->n; i++) {
        txn_t *t = g->t[i];
        if (status == WY_OK && !g->fail)
            on_written(WY_OK, NULL, NULL, t);
        else if (!g->fail && (status == WY_EUNAVAIL || status == WY_ETIMEDOUT))
            on_written(status, NULL, err, t); /* outcome unknown: read again */
        else if (t->svc->stopping)
            on_written(WY_EUNAVAIL, NULL, "stopping", t);
        else
            write_one(t); /* rolled back: each on its own */
    }
    group_end(g);
}

static void on_group_begun(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    txn_group_t *g = ud;
    if (status != WY_OK) {
        wy_log_warn("transaction group not begun", "error", err, NULL);
        for (size_t i = 0; i < g->n; i++)
            on_written(WY_EIO, NULL, err, g->t[i]); /* nothing written */
        group_end(g);
        return;
    }
    for (size_t i = 0; i < g->n; i++)
        if (send_write(g->t[i], tx, on_group_stmt, g) != WY_OK && !g->fail)
            g->fail = WY_EBUSY;
    wy_pg_tx_commit(tx, on_group_committed, g);
}

static void on_flush_groups(uv_check_t *h)
{
    uv_check_stop(h);
    while (G.groups < GROUPS_MAX && !wy_list_empty(&G.queue)) {
        wy_list_t *n = wy_list_pop_front(&G.queue);
        txn_t *first = wy_list_entry(n, txn_t, node);
        if (wy_list_empty(&G.queue)) {
            write_one(first); /* alone: no BEGIN/COMMIT around it */
            continue;
        }
        txn_group_t *g = wy_calloc(1, sizeof *g);
        g->t[g->n++] = first;
        while (g->n < GROUP_MAX && (n = wy_list_pop_front(&G.queue)))
            g->t[g->n++] = wy_list_entry(n, txn_t, node);
        G.groups++;
        wy_pg_t *pg = wy_daemon_pg(G.svc->d);
        if (!pg || wy_pg_begin(pg, on_group_begun, g) != WY_OK)
            on_group_begun(WY_EUNAVAIL, NULL, "PostgreSQL unavailable", g);
    }
}

static void arm_groups(void)
{
    if (G.open && !wy_list_empty(&G.queue) && G.groups < GROUPS_MAX)
        uv_check_start(&G.flush, on_flush_groups);
}

/* Queues t for the group commit of this loop turn. */
static void write_txn(txn_t *t)
{
    write_params(t);
    t->writing = true;
    if (!G.open) {
        write_one(t);
        return;
    }
    wy_list_push_back(&G.queue, &t->node);
    arm_groups();
}

/* Both sides held: decide them, then write (or refuse). */
static void decide(txn_t *t)
{
    char why[160];
    const actor_state_t *st[2] = {side_state(t, 0), side_state(t, 1)};
    int rc = t->ops->decide(t, st, (int64_t)wy_wall_ms(), why, sizeof why);
    if (rc != WY_OK) {
        for (int i = 0; i < 2; i++) {
            wy_free(t->ev[i].data);
            t->ev[i].data = NULL;
        }
        refuse(t, rc, why);
        return;
    }
    write_txn(t);
}

/* ---- prepare: the holds ---- */

static void hold_next(txn_t *t);

static void on_hold(actor_req_t *r, int status, const char *msg,
                    const Wyvern__Actor__ApplyResponse *res)
{
    (void)res;
    txn_side_t *side = r->ud;
    txn_t *t = side->t;
    t->pending--;
    if (status == WY_OK) {
        side->held = true;
        if (t->answered) { /* aborted while this hold waited */
            release_all(t, false, false);
            txn_maybe_free(t);
            return;
        }
    } else if (!t->answered) {
        release_all(t, false, false);
        char why[200];
        snprintf(why, sizeof why, "%s: %s", t->who[side - t->side], msg);
        answer_error(t, status == WY_ENOTFOUND ? WY_ENOTFOUND : WY_EUNAVAIL,
                     status == WY_ENOTFOUND ? why : TXN_UNAVAIL);
    }
    if (t->answered) {
        txn_maybe_free(t);
        return;
    }
    hold_next(t);
}

/* The answer of a side's owner elsewhere (txn_remote.c): as on_hold. */
static void on_remote_hold(actor_rside_t *rs, int status, const char *msg, void *ud)
{
    txn_side_t *side = ud;
    if (status != WY_OK)
        side->remote = NULL; /* the handle is gone */
    (void)rs;
    on_hold(&side->req, status, msg, NULL);
}

static void hold_next(txn_t *t)
{
    if (t->next == 2) {
        decide(t);
        return;
    }
    txn_side_t *side = &t->side[t->order[t->next++]];
    memset(&side->req, 0, sizeof side->req);
    int i = (int)(side - t->side), sh = actor_shard(t->actor[i]);
    if (t->svc->epoch[sh] <= 0) { /* owned elsewhere: held by its owner */
        actor_peer_t *p = t->svc->owner[sh];
        side->req.ud = side;
        side->remote =
            p ? actor_rside_hold(t->svc, p, t->id, t->attempt, t->actor[i], on_remote_hold, side)
              : NULL;
        t->pending++;
        if (!side->remote) {
            actor_owners_poke(t->svc);
            on_hold(&side->req, WY_EUNAVAIL, "owner instance unreachable", NULL);
        }
        return;
    }
    side->req.done = on_hold;
    side->req.ud = side;
    t->pending++;
    actor_store_hold(t->svc, t->actor[side - t->side], &side->req);
}

static void on_timeout(uv_timer_t *h)
{
    txn_t *t = h->data;
    if (t->answered || t->writing)
        return;
    wy_log_warn("transaction timed out waiting for its characters", "txn", t->id, NULL);
    release_all(t, false, false);
    answer_error(t, WY_EUNAVAIL,
                 "transaction timed out waiting for its characters; retry with "
                 "the same txn_id");
    txn_maybe_free(t);
}

/* ---- trades and gifts ---- */

static int trade_decide(txn_t *t, const actor_state_t *s[2], int64_t now_ms, char *why, size_t cap)
{
    for (int i = 0; i < 2; i++) {
        int rc = actor_trade_decide(s[i], t->who[i], t->id, t->kind, t->actor[1 - i], &t->give[i],
                                    &t->give[1 - i], now_ms, &t->ev[i], why, cap);
        if (rc != WY_OK)
            return rc;
    }
    return WY_OK;
}

static uint8_t *trade_pack(const txn_t *t, const actor_state_t after[2], size_t *len)
{
    actor_view_t view[2];
    Wyvern__Actor__Character *cs[2];
    for (int i = 0; i < 2; i++) {
        actor_view_init(&view[i], &after[i]);
        cs[i] = &view[i].c;
    }
    Wyvern__Actor__TransactResponse res = WYVERN__ACTOR__TRANSACT_RESPONSE__INIT;
    res.txn_id = (char *)t->id;
    res.n_characters = 2;
    res.characters = cs;
    *len = wyvern__actor__transact_response__get_packed_size(&res);
    uint8_t *buf = wy_malloc(*len ? *len : 1);
    wyvern__actor__transact_response__pack(&res, buf);
    for (int i = 0; i < 2; i++)
        actor_view_clear(&view[i]);
    return buf;
}

static void trade_replayed(ProtobufCMessage *res)
{
    ((Wyvern__Actor__TransactResponse *)res)->replayed = true;
}

static const txn_ops_t trade_ops = {trade_decide, trade_pack,
                                    &wyvern__actor__transact_response__descriptor, trade_replayed};

/* Frees a transaction that never started (answered already). */
static void txn_drop(txn_t *t)
{
    wy_free(t->request);
    wy_free(t);
}

#define MD_HOP "wy-actor-forwarded-by" /* forward.c's mark: never forwarded twice */

/* A new transaction of call, or NULL (and the call answered INVALID_ARGUMENT / UNAVAILABLE).
 * The request is kept packed, to be forwarded whole to the owner of both sides. */
static txn_t *txn_new(wy_grpc_call_id_t call, void *arg, const char *txn_id, const char *method,
                      const ProtobufCMessage *req)
{
    actor_svc_t *svc = wy_daemon_state(arg);
    if (!svc || svc->stopping) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-actor is stopping");
        return NULL;
    }
    size_t idlen = txn_id ? strlen(txn_id) : 0;
    if (idlen == 0 || idlen > ACTOR_TXN_ID_MAX || !wy_text_valid_utf8(txn_id, idlen)) {
        wy_grpc_reply_error(call, WY_EINVAL, "txn_id must be 1..128 bytes of UTF-8");
        return NULL;
    }
    txn_t *t = wy_calloc(1, sizeof *t);
    memcpy(t->id, txn_id, idlen + 1);
    t->svc = svc;
    t->call = call;
    t->method = method;
    t->rdesc = req->descriptor;
    t->request_len = protobuf_c_message_get_packed_size(req);
    t->request = wy_malloc(t->request_len ? t->request_len : 1);
    protobuf_c_message_pack(req, t->request);
    const char *v;
    size_t vlen;
    t->forwarded = wy_grpc_call_metadata(call, MD_HOP, &v, &vlen) == WY_OK;
    return t;
}

/* Side i of t is actor_id (checked), named `who` in messages. */
static bool side_id(wy_grpc_call_id_t call, txn_t *t, int i, const char *who, const char *actor_id)
{
    snprintf(t->who[i], sizeof t->who[i], "%s", who);
    if (!actor_uuid_valid(actor_id)) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s: actor_id must be a lower-case UUID", who);
        wy_grpc_reply_error(call, WY_EINVAL, msg);
        return false;
    }
    snprintf(t->actor[i], sizeof t->actor[i], "%s", actor_id);
    return true;
}

/* ---- several instances: both sides here, or the whole call to their common owner ---- */

static void on_txn_forwarded(int err, int status, const char *message, const ProtobufCMessage *resp,
                             void *arg)
{
    (void)status;
    txn_t *t = arg;
    t->writing = false;
    if (err != WY_OK) {
        if (err == WY_ECANCELED || err == WY_ETIMEDOUT || err == WY_EIO) /* outcome unknown */
            err = WY_EUNAVAIL;
        if (err == WY_EUNAVAIL)
            actor_owners_poke(t->svc);
        answer_error(t, err, *message ? message : "owner instance unreachable; retry");
    } else {
        t->answered = true;
        count(m.ok, t);
        wy_grpc_reply(t->call, resp);
    }
    txn_maybe_free(t);
}

static void forward_txn(txn_t *t, actor_peer_t *p)
{
    actor_svc_t *svc = t->svc;
    ProtobufCMessage *req = protobuf_c_message_unpack(t->rdesc, NULL, t->request_len, t->request);
    if (!req || (!p->ch &&
                 wy_grpc_channel_new(wy_daemon_grpc_rt(svc->d), p->addr, NULL, &p->ch) != WY_OK)) {
        if (req)
            protobuf_c_message_free_unpacked(req, NULL);
        answer_error(t, WY_EUNAVAIL, "owner instance unreachable; retry");
        txn_maybe_free(t);
        return;
    }
    wy_grpc_md_t md[1] = {{MD_HOP, wy_daemon_instance(svc->d)}};
    int rc = wy_grpc_call(p->ch, t->method, req, t->ops->result, (unsigned)actor_cfg.forward_ms, md,
                          1, on_txn_forwarded, t);
    protobuf_c_message_free_unpacked(req, NULL);
    if (rc != WY_OK) {
        answer_error(t, WY_EUNAVAIL, "owner instance unreachable; retry");
        txn_maybe_free(t);
        return;
    }
    wy_metric_inc(svc->m_forwarded);
    t->writing = true; /* keeps t until the answer */
}

/* A side owned here: this instance coordinates; the other side, if owned elsewhere, is
 * held through its owner (txn_remote.c). Neither owned here (and the call was not
 * forwarded to us already): the whole call goes to the owner of side a, which
 * coordinates. Otherwise UNAVAILABLE: ownership is moving. */
static void route(txn_t *t)
{
    actor_svc_t *svc = t->svc;
    int sh[2] = {actor_shard(t->actor[0]), actor_shard(t->actor[1])};
    bool here[2] = {svc->epoch[sh[0]] > 0, svc->epoch[sh[1]] > 0};
    bool known[2] = {here[0] || svc->owner[sh[0]], here[1] || svc->owner[sh[1]]};
    if ((here[0] || here[1]) && known[0] && known[1]) {
        hold_next(t);
        return;
    }
    actor_peer_t *p = here[0] || here[1] ? NULL : svc->owner[sh[0]];
    if (p && !t->forwarded) {
        forward_txn(t, p);
        return;
    }
    actor_owners_poke(svc);
    answer_error(t, WY_EUNAVAIL,
                 !svc->claimed ? "wy-actor is starting (shard ownership); retry"
                               : "no live owner for the characters' shards right now; retry");
    txn_maybe_free(t);
}

/* Runs t (its sides set): holds, decides, writes, answers. */
static void txn_run(txn_t *t)
{
    actor_svc_t *svc = t->svc;
    if (!strcmp(t->actor[0], t->actor[1])) {
        wy_grpc_reply_error(t->call, WY_EINVAL, "a transaction needs two different characters");
        txn_drop(t);
        return;
    }
    t->started_ns = (int64_t)wy_now_ns();
    wy_uuid4(t->attempt);
    for (int i = 0; i < 2; i++)
        t->side[i].t = t;
    /* One global order of holds: no two transactions wait on each other in a circle. */
    bool a_first = strcmp(t->actor[0], t->actor[1]) < 0;
    t->order[0] = a_first ? 0 : 1;
    t->order[1] = a_first ? 1 : 0;
    actor_svc_ref(svc);
    svc->busy++;
    uv_timer_init(svc->loop, &t->timer);
    t->timer.data = t;
    t->timer_open = true;
    uv_timer_start(&t->timer, on_timeout, (uint64_t)actor_cfg.txn_timeout_ms, 0);
    route(t);
}

static bool side_from_pb(wy_grpc_call_id_t call, txn_t *t, int i, const char *who,
                         const char *actor_id, Wyvern__Actor__ItemStack *const *items, size_t n,
                         uint64_t gold)
{
    const char *why = NULL;
    if (!side_id(call, t, i, who, actor_id))
        return false;
    if (actor_offer_from_pb(items, n, gold, &t->give[i], &why) != WY_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: %s", who, why);
        wy_grpc_reply_error(call, WY_EINVAL, msg);
        return false;
    }
    return true;
}

void actor_rpc_transact(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__TransactRequest *in = (const Wyvern__Actor__TransactRequest *)req;
    txn_t *t = txn_new(call, arg, in->txn_id, "/wyvern.actor.Actor/Transact", req);
    if (!t)
        return;
    t->ops = &trade_ops;
    bool ok;
    static Wyvern__Actor__TradeSide none = WYVERN__ACTOR__TRADE_SIDE__INIT;
    if (in->kind_case == WYVERN__ACTOR__TRANSACT_REQUEST__KIND_TRADE) {
        const Wyvern__Actor__TradeSide *a = in->trade->a ? in->trade->a : &none;
        const Wyvern__Actor__TradeSide *b = in->trade->b ? in->trade->b : &none;
        t->kind = "trade";
        ok = side_from_pb(call, t, 0, "a", a->actor_id, a->items, a->n_items, a->gold) &&
             side_from_pb(call, t, 1, "b", b->actor_id, b->items, b->n_items, b->gold);
    } else if (in->kind_case == WYVERN__ACTOR__TRANSACT_REQUEST__KIND_GIFT) {
        const Wyvern__Actor__Gift *g = in->gift;
        t->kind = "gift";
        ok = side_from_pb(call, t, 0, "from", g->from_actor_id, g->items, g->n_items, g->gold) &&
             side_from_pb(call, t, 1, "to", g->to_actor_id, NULL, 0, 0);
    } else {
        wy_grpc_reply_error(call, WY_EINVAL, "no transaction set (trade or gift)");
        ok = false;
    }
    if (ok && !t->give[0].n_items && !t->give[0].gold && !t->give[1].n_items && !t->give[1].gold) {
        wy_grpc_reply_error(call, WY_EINVAL, "nothing is given");
        ok = false;
    }
    if (!ok) {
        txn_drop(t);
        return;
    }
    txn_run(t);
}

/* ---- friends ---- */

static int friend_decide(txn_t *t, const actor_state_t *s[2], int64_t now_ms, char *why, size_t cap)
{
    if (t->account[0] && s[0]->seq && strcmp(t->account, s[0]->account_id)) {
        snprintf(why, cap, "actor: not a character of this account");
        return WY_EPERM;
    }
    return actor_friend_decide(t->friend_op, s[0], s[1], t->id, now_ms, t->ev, why, cap);
}

/* *fl (initialised by the caller) shows c's friends; it points into c. */
static void friend_list_of(Wyvern__Actor__FriendList *fl, const Wyvern__Actor__Character *c)
{
    fl->actor_id = c->actor_id;
    fl->name = c->name;
    fl->n_friends = c->n_friends;
    fl->friends = c->friends;
}

/* The FriendList of c, packed, with the entry of other (NULL: none) as `other`: a new
 * buffer (wy_free). */
static uint8_t *friend_list(const Wyvern__Actor__Character *c, const char *other, size_t *len)
{
    Wyvern__Actor__FriendList fl = WYVERN__ACTOR__FRIEND_LIST__INIT;
    friend_list_of(&fl, c);
    for (size_t i = 0; other && i < c->n_friends; i++)
        if (!strcmp(c->friends[i]->actor_id, other))
            fl.other = c->friends[i];
    *len = wyvern__actor__friend_list__get_packed_size(&fl);
    uint8_t *buf = wy_malloc(*len ? *len : 1);
    wyvern__actor__friend_list__pack(&fl, buf);
    return buf;
}

static uint8_t *friend_pack(const txn_t *t, const actor_state_t after[2], size_t *len)
{
    actor_view_t v;
    actor_view_init(&v, &after[0]);
    uint8_t *buf = friend_list(&v.c, t->actor[1], len);
    actor_view_clear(&v);
    return buf;
}

static void friend_replayed(ProtobufCMessage *res)
{
    ((Wyvern__Actor__FriendList *)res)->replayed = true;
}

static const txn_ops_t friend_ops = {friend_decide, friend_pack,
                                     &wyvern__actor__friend_list__descriptor, friend_replayed};

/* The other side by name: one query, then the transaction. */
static const wy_pg_stmt_t sql_by_name = {
    "actor_by_name",
    "SELECT actor_id::text AS actor_id FROM actor.characters WHERE name_key = $1 AND "
    "deleted_at IS NULL",
    1};

static void on_by_name(int status, const PGresult *res, const char *err, void *ud)
{
    txn_t *t = ud;
    actor_svc_t *svc = t->svc;
    if (status != WY_OK) {
        wy_log_warn("character lookup by name failed", "error", err, NULL);
        wy_grpc_reply_error(t->call, WY_EUNAVAIL, "character store unavailable; retry");
        txn_drop(t);
    } else if (PQntuples(res) != 1) {
        wy_grpc_reply_error(t->call, WY_ENOTFOUND, "other: no character has that name");
        txn_drop(t);
    } else {
        snprintf(t->actor[1], sizeof t->actor[1], "%s", wy_pg_text(res, 0, "actor_id"));
        txn_run(t);
    }
    svc->busy--;
    actor_svc_unref(svc);
}

static void friend_command(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg,
                           actor_friend_op_t op, const char *kind, const char *method)
{
    const Wyvern__Actor__FriendCommand *in = (const Wyvern__Actor__FriendCommand *)req;
    txn_t *t = txn_new(call, arg, in->txn_id, method, req);
    if (!t)
        return;
    t->ops = &friend_ops;
    t->kind = kind;
    t->friend_op = op;
    bool by_name = !*in->other_actor_id && *in->other_name;
    if (*in->account_id && !actor_uuid_valid(in->account_id)) {
        wy_grpc_reply_error(call, WY_EINVAL, "account_id must be a lower-case UUID");
        txn_drop(t);
        return;
    }
    snprintf(t->account, sizeof t->account, "%s", in->account_id);
    if (!side_id(call, t, 0, "actor", in->actor_id) ||
        (!by_name && !side_id(call, t, 1, "other", in->other_actor_id))) {
        txn_drop(t);
        return;
    }
    if (!by_name) {
        txn_run(t);
        return;
    }
    snprintf(t->who[1], sizeof t->who[1], "other");
    char *display = NULL, *key = NULL;
    const char *why = NULL;
    if (actor_name_check(in->other_name, strlen(in->other_name), &display, &key, &why) != WY_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, "other_name: %s", why);
        wy_grpc_reply_error(call, WY_EINVAL, msg);
        txn_drop(t);
        return;
    }
    const char *p[] = {key};
    wy_pg_t *pg = wy_daemon_pg(t->svc->d);
    actor_svc_ref(t->svc);
    t->svc->busy++;
    if (!pg || wy_pg_exec(pg, &sql_by_name, p, on_by_name, t) != WY_OK)
        on_by_name(WY_EUNAVAIL, NULL, "PostgreSQL unavailable", t);
    wy_free(display);
    wy_free(key);
}

void actor_rpc_friend_request(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    friend_command(call, req, arg, ACTOR_FRIEND_REQUEST, "friend_request",
                   "/wyvern.actor.Actor/RequestFriend");
}

void actor_rpc_friend_accept(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    friend_command(call, req, arg, ACTOR_FRIEND_ACCEPT, "friend_accept",
                   "/wyvern.actor.Actor/AcceptFriend");
}

void actor_rpc_friend_decline(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    friend_command(call, req, arg, ACTOR_FRIEND_DECLINE, "friend_decline",
                   "/wyvern.actor.Actor/DeclineFriend");
}

void actor_rpc_friend_remove(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    friend_command(call, req, arg, ACTOR_FRIEND_REMOVE, "friend_remove",
                   "/wyvern.actor.Actor/RemoveFriend");
}

/* ListFriends: a read of the character. */
typedef struct {
    actor_req_t req;
    wy_grpc_call_id_t call;
} friend_read_t;

static void on_friend_read(actor_req_t *r, int status, const char *msg,
                           const Wyvern__Actor__ApplyResponse *res)
{
    friend_read_t *fr = r->ud;
    if (status != WY_OK) {
        wy_grpc_reply_error(fr->call, status, msg);
    } else {
        Wyvern__Actor__FriendList fl = WYVERN__ACTOR__FRIEND_LIST__INIT;
        friend_list_of(&fl, res->character);
        wy_grpc_reply(fr->call, &fl.base);
    }
    wy_free(fr);
}

void actor_rpc_friend_list(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__ListFriendsRequest *in = (const Wyvern__Actor__ListFriendsRequest *)req;
    actor_svc_t *svc = wy_daemon_state(arg);
    if (!svc || svc->stopping) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-actor is stopping");
        return;
    }
    if (!actor_uuid_valid(in->actor_id)) {
        wy_grpc_reply_error(call, WY_EINVAL, "actor_id must be a lower-case UUID");
        return;
    }
    friend_read_t *fr = wy_calloc(1, sizeof *fr);
    fr->call = call;
    fr->req.read_only = true;
    fr->req.done = on_friend_read;
    fr->req.ud = fr;
    actor_store_submit(svc, in->actor_id, &fr->req);
}

static void on_flush_closed(uv_handle_t *h)
{
    actor_svc_unref(h->data);
}

void actor_txn_stop(actor_svc_t *svc)
{
    actor_txn_remote_stop(svc);
    if (!G.open)
        return;
    G.open = false;
    wy_list_t *n;
    while ((n = wy_list_pop_front(&G.queue))) /* not sent yet: nothing written */
        on_written(WY_EIO, NULL, "stopping", wy_list_entry(n, txn_t, node));
    uv_close((uv_handle_t *)&G.flush, on_flush_closed);
}

void actor_txn_start(actor_svc_t *svc)
{
    G.svc = svc;
    wy_list_init(&G.queue);
    uv_check_init(svc->loop, &G.flush);
    G.flush.data = svc;
    actor_svc_ref(svc); /* released when the handle is closed */
    G.open = true;
    const char *h = "Cross-actor transactions (Transact) answered, by result.";
    m.ok = wy_metrics_counter("wy_actor_txns_total", h, "result=\"ok\"");
    m.replayed = wy_metrics_counter("wy_actor_txns_total", h, "result=\"replayed\"");
    m.refused = wy_metrics_counter("wy_actor_txns_total", h, "result=\"refused\"");
    m.failed = wy_metrics_counter("wy_actor_txns_total", h, "result=\"failed\"");
    static const double bounds[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5};
    m.seconds =
        wy_metrics_histogram("wy_actor_txn_seconds", "Time from a Transact request to its answer.",
                             NULL, bounds, WY_ARRAY_LEN(bounds));
}
