/* wy-actor's event store on PostgreSQL (schema in migrations/001_events.sql) and the
 * actors resident in memory.
 *
 * A request for an actor goes to its queue; an actor that is not resident is loaded
 * first (latest snapshot + the events after it). At the end of each loop turn (a
 * uv_check) the queues of ready actors are written as group commits: one transaction
 * takes the commands of many actors (at most WY_ACTOR_BATCH_MAX), at most
 * WY_ACTOR_WRITE_BATCHES transactions are in flight, and an actor is in one of them at a
 * time. A batch:
 *   1. decides each command against a working copy of its actor (character.c) and
 *      applies the events to the copy, so later commands of the batch see them;
 *   2. writes, in one statement (one transaction, one round trip): the fence (the shard
 *      is still ours, same epoch), the events, the command keys with their results,
 *      snapshots (every WY_ACTOR_SNAPSHOT_EVERY events, the last WY_ACTOR_SNAPSHOT_KEEP
 *      kept) and the deleted flag of the characters index;
 *   3. after the commit makes the working copies the actors' states ("persisted first,
 *      applied second") and answers in arrival order ("answered third").
 * Keys are assumed new: a key written before makes the write fail on its primary key
 * (nothing is written); the batch then reads the first results of its keys (one query),
 * answers those from them and decides the rest again.
 * A failed transaction changes no state and answers UNAVAILABLE; a commit whose outcome
 * is unknown (connection lost during COMMIT) or a lost fence drops the actors' states,
 * so they are reloaded from what PostgreSQL has. */
#include "actor.h"
#include "rankings.h"
#include "wy_buf.h"
#include "wy_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLAIM_RETRY_MS  1000
#define LIST_MAX        64
#define FENCED_SQLSTATE "WYF01" /* raised by actor.fence() */
#define CREATE_EXISTING 1       /* not a WY_E* code: the create key was used before */
#define UNAVAIL_MSG     "character store unavailable; retry with the same idempotency key"

typedef enum { ACTOR_LOADING, ACTOR_READY, ACTOR_WRITING, ACTOR_HELD } actor_phase_t;

struct actor {
    wy_list_t node;  /* in svc->idle or svc->ready; in none while loading or writing */
    wy_list_t queue; /* actor_req_t, in arrival order */
    size_t n_queued;
    actor_phase_t phase;
    actor_state_t state; /* as committed */
    actor_state_t work;  /* the batch's working copy */
    uint64_t snap_seq;   /* seq of the latest snapshot */
    bool deleted_before; /* state.deleted when the batch began */
    bool snapshot;       /* the batch writes a snapshot of work */
    actor_svc_t *svc;
    char id[ACTOR_ID_LEN + 1];
};

typedef enum { BATCH_OK, BATCH_FAILED, BATCH_UNKNOWN, BATCH_FENCED } batch_outcome_t;

/* The byte strings of a batch's rows (event payloads, results, snapshots) as ONE bytea
 * parameter (hex) with each row's offset and length in int[] arrays, sliced by the
 * statement with substring(): PostgreSQL parses an array of bytea character by character
 * (~10 us for a 150-byte result, more than the rest of the row), one bytea with its hex
 * decoder (~0.3 us for the same bytes; measured with psql on this machine). */
typedef struct {
    wy_buf_t hex;      /* "\x" + the bytes in hex */
    wy_buf_t off, len; /* int[] literals: each row's slice (len -1: NULL) */
    size_t bytes;
} blob_t;

struct actor_batch {
    actor_svc_t *svc;
    actor_t **actors;
    size_t n_actors;
    wy_list_t reqs;
    size_t n_reqs;
    /* Array literals of the statements' parameters (text protocol). */
    wy_buf_t ev_actor, ev_seq, ev_epoch, ev_id, ev_type;
    wy_buf_t cmd_actor, cmd_key, cmd_status, cmd_msg;
    wy_buf_t snap_actor, snap_seq;
    blob_t ev_payload, cmd_result, snap_state;
    wy_buf_t del_actor, del_ms;
    wy_buf_t fence_shard, fence_epoch;
    wy_buf_t con_id;
    size_t n_events, n_cmds, n_snaps, n_dels;
    /* The events written, for the audit lines after the commit. */
    struct batch_event {
        actor_t *actor;
        uint64_t seq;
        const char *type;
        char id[37];
    } * evs;
    size_t cap_evs;
    bool shard_in[ACTOR_SHARDS];
    bool looked_up; /* the keys were read before deciding (after a key conflict) */
};

static void arm_flush(actor_svc_t *svc);
static void actor_load(actor_t *a);
static void batch_lookup(actor_batch_t *b);
static void route_queue_away(actor_t *a);
static void create_begin(actor_create_t *c);

/* ---- statements (prepared once per connection) ---- */

/* kind 0 = the latest snapshot, kind 1 = each event after it, in one round trip. */
static const wy_pg_stmt_t sql_load = {
    "actor_load",
    "WITH s AS (SELECT seq, state FROM actor.snapshots WHERE actor_id = $1 "
    "ORDER BY seq DESC LIMIT 1) "
    "SELECT 0 AS kind, seq, state AS data FROM s UNION ALL "
    "SELECT 1, e.seq, e.payload FROM actor.events e WHERE e.actor_id = $1 "
    "AND e.seq > COALESCE((SELECT seq FROM s), 0) ORDER BY kind, seq",
    1};
/* The first results of keys (kind 0), then the consumed Kafka event ids of the batch that
 * were applied before (kind 1: a wy.gameplay command's only record). */
static const wy_pg_stmt_t sql_keys = {
    "actor_keys",
    "SELECT 0 AS kind, actor_id::text AS actor_id, key, status, message, result FROM "
    "actor.commands WHERE (actor_id, key) IN (SELECT * FROM unnest($1::uuid[], $2::text[])) "
    "UNION ALL SELECT 1, NULL, event_id, 0, '', NULL FROM actor.wy_consumed WHERE consumer = "
    "'actor' AND event_id = ANY($3::text[]) ORDER BY kind",
    3};
static const wy_pg_stmt_t sql_fence = {"actor_fence",
                                       "SELECT actor.fence($1::int[], $2::bigint[], $3)", 3};
/* The whole write of a batch as one statement, so one implicit transaction and one round
 * trip: the fence (an error in it aborts everything; it is referenced so that it runs),
 * the events, the command keys, the snapshots (their byte strings sliced from one bytea
 * each: blob_t), the trim of old snapshots (the statement
 * does not see its own new snapshot, so it keeps $18 - 1 of the older ones), the deleted
 * flag of the index, the consumed Kafka event ids and, with WY_ACTOR_PRUNE_EVENTS, the
 * events at or below the oldest kept snapshot. Empty arrays write nothing. (wy.actor is
 * published from the events rows themselves: publish.c.) A command with a consumed Kafka
 * event id (wy.gameplay) has that id as its only record, no key row: an id applied before
 * fails the statement on wy_consumed's primary key, like a key seen before on commands'. */
static const wy_pg_stmt_t sql_write = {
    "actor_write",
    "WITH fence AS (SELECT actor.fence($1::int[], $2::bigint[], $3) AS ok), "
    "ev AS (INSERT INTO actor.events (actor_id, seq, epoch, event_id, type, payload) "
    "SELECT a, s, e, i, t, substring($9::bytea FROM o + 1 FOR l) FROM unnest($4::uuid[], "
    "$5::bigint[], $6::bigint[], $7::uuid[], $8::text[], $23::int[], $24::int[]) "
    "AS v(a, s, e, i, t, o, l) RETURNING 1), "
    "cmd AS (INSERT INTO actor.commands (actor_id, key, status, message, result) "
    "SELECT a, k, st, m, CASE WHEN l < 0 THEN NULL ELSE substring($14::bytea FROM o + 1 FOR "
    "l) END FROM unnest($10::uuid[], $11::text[], $12::int[], $13::text[], $25::int[], "
    "$26::int[]) AS v(a, k, st, m, o, l) RETURNING 1), "
    "snap AS (INSERT INTO actor.snapshots (actor_id, seq, state) "
    "SELECT a, s, substring($17::bytea FROM o + 1 FOR l) FROM unnest($15::uuid[], "
    "$16::bigint[], $27::int[], $28::int[]) AS v(a, s, o, l) RETURNING 1), "
    "trim AS (DELETE FROM actor.snapshots s USING unnest($15::uuid[]) AS a(id) "
    "WHERE s.actor_id = a.id AND s.seq < COALESCE((SELECT min(k.seq) FROM (SELECT seq FROM "
    "actor.snapshots WHERE actor_id = a.id ORDER BY seq DESC LIMIT ($18::int - 1)) k), "
    "9223372036854775807) RETURNING 1), "
    "del AS (UPDATE actor.characters c SET deleted_at = CASE WHEN v.ms = 0 THEN NULL "
    "ELSE to_timestamp(v.ms / 1000.0) END FROM unnest($19::uuid[], $20::bigint[]) AS v(id, ms) "
    "WHERE c.actor_id = v.id RETURNING 1), "
    "con AS (INSERT INTO actor.wy_consumed (consumer, event_id) SELECT 'actor', x "
    "FROM unnest($21::text[]) AS x RETURNING 1), "
    "prune AS (DELETE FROM actor.events e USING unnest($15::uuid[], $16::bigint[]) AS n(id, seq) "
    "WHERE $22::bool AND e.actor_id = n.id AND e.seq <= COALESCE((SELECT min(k.seq) FROM "
    "(SELECT seq FROM actor.snapshots WHERE actor_id = n.id ORDER BY seq DESC "
    "LIMIT ($18::int - 1)) k), n.seq) RETURNING 1) "
    "SELECT (SELECT count(*) FROM fence) AS fenced, (SELECT count(*) FROM ev) AS events",
    28};
static const wy_pg_stmt_t sql_create_lock = {"actor_create_lock",
                                             "SELECT pg_advisory_xact_lock(hashtext($1))", 1};
static const wy_pg_stmt_t sql_create_check = {
    "actor_create_check",
    "SELECT (SELECT actor_id::text FROM actor.characters WHERE account_id = $1 AND "
    "create_key = $2) AS existing, (SELECT count(*) FROM actor.characters WHERE account_id = "
    "$1 AND deleted_at IS NULL) AS live",
    2};
static const wy_pg_stmt_t sql_character = {
    "actor_character",
    "INSERT INTO actor.characters (actor_id, account_id, name, name_key, class_name, "
    "create_key) VALUES ($1, $2, $3, $4, $5, $6)",
    6};
static const wy_pg_stmt_t sql_first_event = {
    "actor_first_event",
    "INSERT INTO actor.events (actor_id, seq, epoch, event_id, type, payload) "
    "VALUES ($1, 1, $2, $3, 'created', $4::bytea)",
    4};
static const wy_pg_stmt_t sql_list = {
    "actor_list",
    "SELECT actor_id::text AS actor_id FROM actor.characters WHERE account_id = $1 AND "
    "(deleted_at IS NULL OR ($2::bool AND deleted_at > now() - $3::bigint * "
    "interval '1 millisecond')) ORDER BY created_at, actor_id LIMIT $4::int",
    4};

/* ---- array literals for unnest($n::type[]) ---- */

static void arr_sep(wy_buf_t *b)
{
    wy_buf_putc(b, b->len ? ',' : '{');
}

static void arr_end(wy_buf_t *b)
{
    if (!b->len)
        wy_buf_putc(b, '{');
    wy_buf_putc(b, '}');
}

static void arr_str(wy_buf_t *b, const char *s)
{
    arr_sep(b);
    wy_buf_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            wy_buf_putc(b, '\\');
        wy_buf_putc(b, *s);
    }
    wy_buf_putc(b, '"');
}

static void arr_int(wy_buf_t *b, long long v)
{
    arr_sep(b);
    wy_buf_printf(b, "%lld", v);
}

static void arr_uint(wy_buf_t *b, unsigned long long v)
{
    arr_sep(b);
    wy_buf_printf(b, "%llu", v);
}

static void blob_add(blob_t *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!b->hex.len)
        wy_buf_puts(&b->hex, "\\x");
    arr_uint(&b->off, b->bytes);
    arr_uint(&b->len, n);
    b->bytes += n;
    wy_buf_reserve(&b->hex, 2 * n + 1);
    char *w = b->hex.data + b->hex.len;
    for (size_t i = 0; i < n; i++) {
        *w++ = hex[p[i] >> 4];
        *w++ = hex[p[i] & 15];
    }
    b->hex.len += 2 * n;
    b->hex.data[b->hex.len] = '\0';
}

static void blob_null(blob_t *b)
{
    arr_uint(&b->off, b->bytes);
    arr_int(&b->len, -1);
}

/* The bytea parameter: the bytes added, or an empty one. */
static const char *blob_param(blob_t *b)
{
    if (!b->hex.len)
        wy_buf_puts(&b->hex, "\\x");
    return b->hex.data;
}

uint8_t *actor_column_bytes(const PGresult *res, int row, const char *name, size_t *len)
{
    *len = 0;
    const char *text = wy_pg_text(res, row, name);
    return text ? PQunescapeBytea((const unsigned char *)text, len) : NULL;
}

/* ---- answers ---- */

static void answer_error(actor_req_t *r, int status, const char *msg)
{
    r->done(r, status, msg, NULL);
}

/* Answers the response packed in result (or an empty one when NULL). */
static void answer_packed(actor_req_t *r, const uint8_t *result, size_t len, bool replayed)
{
    Wyvern__Actor__ApplyResponse *res =
        result ? wyvern__actor__apply_response__unpack(NULL, len, result) : NULL;
    if (!res) {
        answer_error(r, WY_EINTERNAL, "stored result does not decode");
        return;
    }
    res->replayed = replayed;
    r->done(r, WY_OK, NULL, res);
    wyvern__actor__apply_response__free_unpacked(res, NULL);
}

/* A command of the wy.gameplay consumer (consumed id set) is answered without its
 * character, which nobody reads: the seq it reached (0 for a redelivery recognised by its
 * consumed id alone) and whether it was applied before. */
static void answer_bare(actor_req_t *r, uint64_t seq, bool replayed)
{
    Wyvern__Actor__ApplyResponse res = WYVERN__ACTOR__APPLY_RESPONSE__INIT;
    res.seq = seq;
    res.replayed = replayed;
    r->done(r, WY_OK, NULL, &res);
}

static uint8_t *pack_response(const actor_state_t *s, size_t *len)
{
    actor_view_t v;
    actor_view_init(&v, s);
    Wyvern__Actor__ApplyResponse res = WYVERN__ACTOR__APPLY_RESPONSE__INIT;
    res.seq = s->seq;
    res.character = &v.c;
    *len = wyvern__actor__apply_response__get_packed_size(&res);
    uint8_t *buf = wy_malloc(*len ? *len : 1);
    wyvern__actor__apply_response__pack(&res, buf);
    actor_view_clear(&v);
    return buf;
}

static void answer_state(actor_req_t *r, const actor_state_t *s)
{
    actor_view_t v;
    actor_view_init(&v, s);
    Wyvern__Actor__ApplyResponse res = WYVERN__ACTOR__APPLY_RESPONSE__INIT;
    res.seq = s->seq;
    res.character = &v.c;
    r->done(r, WY_OK, NULL, &res);
    actor_view_clear(&v);
}

static void answer_queue(actor_t *a, int status, const char *msg)
{
    wy_list_t *n;
    while ((n = wy_list_pop_front(&a->queue))) {
        a->n_queued--;
        answer_error(wy_list_entry(n, actor_req_t, node), status, msg);
    }
}

/* ---- resident actors ---- */

static void set_resident_gauge(actor_svc_t *svc)
{
    wy_metric_set(svc->m_resident, (double)svc->n_resident);
}

static void actor_free(actor_t *a)
{
    actor_svc_t *svc = a->svc;
    wy_list_remove(&a->node);
    wy_map_del_str(svc->resident, a->id, NULL);
    svc->n_resident--;
    set_resident_gauge(svc);
    actor_state_clear(&a->state);
    actor_state_clear(&a->work);
    wy_free(a);
}

/* A new resident actor (not loaded), or NULL when WY_ACTOR_MAX_RESIDENT actors are
 * resident and none is idle. The least recently used idle actor makes room. */
static actor_t *actor_new(actor_svc_t *svc, const char *id)
{
    while (svc->n_resident >= (size_t)svc->cfg->max_resident) {
        wy_list_t *lru = wy_list_first(&svc->idle);
        if (!lru)
            return NULL;
        actor_free(wy_list_entry(lru, actor_t, node));
    }
    actor_t *a = wy_calloc(1, sizeof *a);
    a->svc = svc;
    snprintf(a->id, sizeof a->id, "%s", id);
    wy_list_init(&a->node);
    wy_list_init(&a->queue);
    actor_state_init(&a->state, id);
    actor_state_init(&a->work, id);
    a->phase = ACTOR_LOADING;
    wy_map_put_str(svc->resident, a->id, a);
    svc->n_resident++;
    set_resident_gauge(svc);
    return a;
}

/* An actor whose batch or load ended: on to the ready list, the idle list, or gone. */
static void actor_settle(actor_t *a)
{
    actor_svc_t *svc = a->svc;
    wy_list_remove(&a->node);
    if (svc->stopping)
        answer_queue(a, WY_EUNAVAIL, "wy-actor is stopping");
    if (svc->claimed && svc->epoch[actor_shard(a->id)] == 0) {
        /* The shard moved while this actor loaded or wrote: its state may be stale from now
         * on, and its queue belongs to the new owner. */
        route_queue_away(a);
        return;
    }
    if (a->n_queued) {
        wy_list_push_back(&svc->ready, &a->node);
        arm_flush(svc);
    } else {
        wy_list_push_back(&svc->idle, &a->node);
    }
}

static int shard_epoch(actor_svc_t *svc, const char *id)
{
    int shard = actor_shard(id);
    return shard >= 0 && svc->epoch[shard] > 0 ? shard : -1;
}

/* A request for an actor whose shard is not ours: to its owner, or UNAVAILABLE when no
 * live owner is known (a takeover is due) or it was forwarded here already. */
static void route_away(actor_svc_t *svc, const char *actor_id, actor_req_t *r)
{
    int shard = actor_shard(actor_id);
    actor_peer_t *p = shard >= 0 ? svc->owner[shard] : NULL;
    if (r->hold) {
        /* A hold is taken by the owner only: txn.c asks it (txn_remote.c), never forwards. */
        answer_error(r, WY_EUNAVAIL,
                     "the character's shard is not owned here (ownership moving); "
                     "retry");
        return;
    }
    if (p && !r->forwarded) {
        actor_forward(svc, p, actor_id, r);
        return;
    }
    actor_owners_poke(svc);
    answer_error(r, WY_EUNAVAIL,
                 r->forwarded ? "this instance does not own the character (ownership moving); retry"
                              : "no live owner for the character's shard right now; retry");
}

/* An actor of a shard no longer ours: its queued requests go to the new owner, it goes. */
static void route_queue_away(actor_t *a)
{
    actor_svc_t *svc = a->svc;
    wy_list_t q;
    wy_list_init(&q);
    wy_list_t *n;
    while ((n = wy_list_pop_front(&a->queue)))
        wy_list_push_back(&q, n);
    a->n_queued = 0;
    char id[ACTOR_ID_LEN + 1];
    memcpy(id, a->id, sizeof id);
    actor_free(a);
    while ((n = wy_list_pop_front(&q)))
        route_away(svc, id, wy_list_entry(n, actor_req_t, node));
}

void actor_store_shards_lost(actor_svc_t *svc, const bool lost[ACTOR_SHARDS])
{
    /* Collected first: routing answers requests, whose callbacks may submit more. */
    size_t n = 0, cap = 64;
    actor_t **drop = wy_calloc(cap, sizeof *drop);
    wy_map_iter_t it;
    wy_map_iter_init(&it, svc->resident);
    while (wy_map_next(&it)) {
        actor_t *a = it.val;
        if (a->phase != ACTOR_READY || !lost[actor_shard(a->id)])
            continue; /* loading or writing: actor_settle routes it when that ends */
        if (n == cap)
            drop = wy_realloc(drop, (cap *= 2) * sizeof *drop);
        drop[n++] = a;
    }
    for (size_t i = 0; i < n; i++)
        route_queue_away(drop[i]);
    wy_free(drop);
}

void actor_store_shards_gained(actor_svc_t *svc)
{
    wy_list_t *w;
    while ((w = wy_list_pop_front(&svc->claim_waiters)))
        create_begin(wy_list_entry(w, actor_create_t, node));
    arm_flush(svc);
}

void actor_store_submit(actor_svc_t *svc, const char *actor_id, actor_req_t *r)
{
    r->status = WY_OK;
    r->msg[0] = 0;
    r->result = NULL;
    r->replayed = false;
    r->dup_of = NULL;
    wy_list_init(&r->node);
    if (svc->stopping) {
        answer_error(r, WY_EUNAVAIL, "wy-actor is stopping");
        return;
    }
    if (!svc->claimed) {
        answer_error(r, WY_EUNAVAIL, "wy-actor is starting (shard ownership); retry");
        return;
    }
    if (shard_epoch(svc, actor_id) < 0) {
        route_away(svc, actor_id, r);
        return;
    }
    if (r->read_only && (int64_t)wy_now_ms() > svc->lease_ok_until) {
        /* Cut off from PostgreSQL past our lease: another instance may own it by now. */
        answer_error(r, WY_EUNAVAIL, "ownership lease not renewed; retry");
        return;
    }
    actor_t *a = wy_map_get_str(svc->resident, actor_id);
    if (!a) {
        a = actor_new(svc, actor_id);
        if (!a) {
            answer_error(r, WY_EBUSY, "too many characters resident; retry");
            return;
        }
        r->actor = a;
        wy_list_push_back(&a->queue, &r->node);
        a->n_queued++;
        actor_load(a); /* may answer r and free a at once when PostgreSQL is down */
        return;
    }
    if (r->read_only && a->phase == ACTOR_READY && !a->n_queued) {
        wy_list_remove(&a->node); /* most recently used: to the tail */
        wy_list_push_back(&svc->idle, &a->node);
        answer_state(r, &a->state);
        return;
    }
    if (a->n_queued >= (size_t)svc->cfg->max_queue) {
        answer_error(r, WY_EBUSY, "too many commands queued for this character; retry");
        return;
    }
    r->actor = a;
    wy_list_push_back(&a->queue, &r->node);
    a->n_queued++;
    if (a->phase == ACTOR_READY) {
        wy_list_remove(&a->node);
        wy_list_push_back(&svc->ready, &a->node);
        arm_flush(svc);
    }
}

/* ---- loading: latest snapshot + the events after it ---- */

static void on_loaded(int status, const PGresult *res, const char *err, void *ud)
{
    actor_t *a = ud;
    actor_svc_t *svc = a->svc;
    svc->busy--;
    int rc = status;
    size_t events = 0;
    uint64_t from = 0;
    for (int i = 0; rc == WY_OK && i < PQntuples(res); i++) {
        size_t len;
        uint8_t *data = actor_column_bytes(res, i, "data", &len);
        uint64_t seq = (uint64_t)wy_pg_int64(res, i, "seq");
        if (!data) {
            rc = WY_EIO;
        } else if (wy_pg_int64(res, i, "kind") == 0) {
            rc = actor_snapshot_decode(&a->state, data, len);
            from = seq;
            if (rc == WY_OK && (a->state.seq != seq || strcmp(a->state.actor_id, a->id)))
                rc = WY_EIO;
        } else {
            rc = actor_apply_packed(&a->state, seq, data, len);
            events++;
        }
        PQfreemem(data);
    }
    a->snap_seq = from;
    if (rc != WY_OK) {
        wy_log_error("actor load failed", "actor", a->id, "error", err ? err : wy_strerror(rc),
                     NULL);
        answer_queue(a, WY_EUNAVAIL, UNAVAIL_MSG);
        actor_free(a);
    } else if (a->state.seq == 0) {
        answer_queue(a, WY_ENOTFOUND, "no such character");
        actor_free(a);
    } else {
        char ev[24], snap[24];
        snprintf(ev, sizeof ev, "%zu", events);
        snprintf(snap, sizeof snap, "%llu", (unsigned long long)from);
        wy_log_debug("actor loaded", "actor", a->id, "snapshot_seq", snap, "events_read", ev, NULL);
        wy_metric_observe(svc->m_load_events, (double)events);
        a->phase = ACTOR_READY;
        actor_settle(a);
    }
    actor_svc_unref(svc);
}

static void actor_load(actor_t *a)
{
    actor_svc_t *svc = a->svc;
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    const char *p[] = {a->id};
    int rc = pg ? wy_pg_exec(pg, &sql_load, p, on_loaded, a) : WY_EUNAVAIL;
    svc->busy++;
    actor_svc_ref(svc);
    if (rc != WY_OK)
        on_loaded(rc, NULL, "PostgreSQL unavailable", a); /* answers the queue, frees a */
}

/* Forgets a's state: it is read again from PostgreSQL for the commands queued, or the
 * actor goes (loaded on next use). */
static void actor_reread(actor_t *a)
{
    actor_state_clear(&a->state);
    if (!a->n_queued || a->svc->stopping) {
        answer_queue(a, WY_EUNAVAIL, UNAVAIL_MSG);
        actor_free(a);
        return;
    }
    a->phase = ACTOR_LOADING;
    actor_load(a);
}

/* ---- group commit ---- */

#define BATCH_ARRAYS   25
#define BATCH_LITERALS 22 /* the first ones: array literals, closed by arr_end */

/* The batch's parameter buffers: array literals, and last the blobs' hex (not arrays). */
static void batch_arrays(actor_batch_t *b, wy_buf_t *out[BATCH_ARRAYS])
{
    wy_buf_t *all[BATCH_ARRAYS] = {
        &b->ev_actor,       &b->ev_seq,         &b->ev_epoch,       &b->ev_id,
        &b->ev_type,        &b->ev_payload.off, &b->ev_payload.len, &b->cmd_actor,
        &b->cmd_key,        &b->cmd_status,     &b->cmd_msg,        &b->cmd_result.off,
        &b->cmd_result.len, &b->snap_actor,     &b->snap_seq,       &b->snap_state.off,
        &b->snap_state.len, &b->del_actor,      &b->del_ms,         &b->fence_shard,
        &b->fence_epoch,    &b->con_id,         &b->ev_payload.hex, &b->cmd_result.hex,
        &b->snap_state.hex};
    memcpy(out, all, sizeof all);
}

static void batch_free(actor_batch_t *b)
{
    wy_buf_t *arrays[BATCH_ARRAYS];
    batch_arrays(b, arrays);
    for (size_t i = 0; i < BATCH_ARRAYS; i++)
        wy_buf_free(arrays[i]);
    wy_free(b->evs);
    wy_free(b->actors);
    wy_free(b);
}

/* Undoes batch_decide: empty arrays, no results, working copies back to the states. */
static void batch_forget(actor_batch_t *b)
{
    wy_buf_t *arrays[BATCH_ARRAYS];
    batch_arrays(b, arrays);
    for (size_t i = 0; i < BATCH_ARRAYS; i++)
        wy_buf_reset(arrays[i]);
    b->ev_payload.bytes = b->cmd_result.bytes = b->snap_state.bytes = 0;
    b->n_events = b->n_cmds = b->n_snaps = b->n_dels = 0;
    memset(b->shard_in, 0, sizeof b->shard_in);
    for (wy_list_t *n = b->reqs.next; n != &b->reqs; n = n->next) {
        actor_req_t *r = wy_list_entry(n, actor_req_t, node);
        wy_free(r->result); /* decided here, never read from PostgreSQL yet */
        r->result = NULL;
        r->result_len = 0;
        r->status = WY_OK;
        r->msg[0] = 0;
        r->dup_of = NULL;
    }
    for (size_t i = 0; i < b->n_actors; i++) {
        actor_state_copy(&b->actors[i]->work, &b->actors[i]->state);
        b->actors[i]->snapshot = false;
    }
}

static void count_answer(actor_svc_t *svc, const actor_req_t *r, int status)
{
    if (r->read_only)
        return;
    wy_metric_inc(status != WY_OK
                      ? (status == WY_EUNAVAIL || status == WY_EINTERNAL ? svc->m_cmd_failed
                                                                         : svc->m_cmd_refused)
                  : r->replayed || r->dup_of ? svc->m_cmd_replayed
                                             : svc->m_cmd_ok);
}

/* One JSON line per committed event (WY_ACTOR_AUDIT_LOG), the batch's lines written
 * together (a write per line was a tenth of the command's CPU). The fields are strings, as
 * wy_log_info writes them: actor, seq, type, event_id, epoch. */
static void audit(const actor_batch_t *b)
{
    if (!b->svc->cfg->audit_log || (int)WY_LOG_INFO < wy_log_min_level || !b->n_events)
        return;
    wy_buf_t lines = WY_BUF_INIT;
    for (size_t i = 0; i < b->n_events; i++) {
        const struct batch_event *e = &b->evs[i];
        wy_buf_puts(&lines, "\"actor\":\"");
        wy_buf_json_escape(&lines, e->actor->id, strlen(e->actor->id));
        wy_buf_printf(&lines, "\",\"seq\":\"%llu\",\"type\":\"", (unsigned long long)e->seq);
        wy_buf_json_escape(&lines, e->type, strlen(e->type));
        wy_buf_puts(&lines, "\",\"event_id\":\"");
        wy_buf_json_escape(&lines, e->id, strlen(e->id));
        wy_buf_printf(&lines, "\",\"epoch\":\"%lld\"\n",
                      (long long)b->svc->epoch[actor_shard(e->actor->id)]);
    }
    wy_log_raw_lines(WY_LOG_INFO, "actor event", lines.data, lines.len);
    wy_buf_free(&lines);
}

/* The end of a batch: states, answers, the actors' next place. */
static void batch_end(actor_batch_t *b, batch_outcome_t outcome)
{
    actor_svc_t *svc = b->svc;
    for (size_t i = 0; i < b->n_actors; i++) {
        actor_t *a = b->actors[i];
        if (outcome == BATCH_OK) {
            actor_rank_changed(svc, &a->state, &a->work); /* rankings.c */
            actor_state_copy(&a->state, &a->work);
            if (a->snapshot) {
                a->snap_seq = a->work.seq;
                wy_metric_inc(svc->m_snapshots);
            }
        }
        a->snapshot = false;
    }
    if (outcome == BATCH_OK)
        audit(b);
    if (outcome == BATCH_OK && b->n_events)
        actor_publish_wake(svc);
    bool lost[ACTOR_SHARDS] = {0};
    if (outcome == BATCH_FENCED) {
        wy_metric_inc(svc->m_fenced);
        for (int s = 0; s < ACTOR_SHARDS; s++) {
            if (b->shard_in[s] && svc->epoch[s] > 0) {
                svc->epoch[s] = 0;
                lost[s] = true;
            }
        }
        actor_owners_poke(svc); /* learn who owns them now */
    }
    /* An answer may free its request, so a duplicate takes its original's outcome first
     * (its result pointer is shared, not owned). Results are freed after every answer;
     * those read by the key lookup are libpq's. */
    uint8_t **results = wy_calloc(b->n_reqs ? b->n_reqs : 1, sizeof *results);
    bool *from_pq = wy_calloc(b->n_reqs ? b->n_reqs : 1, sizeof *from_pq);
    size_t n_results = 0;
    for (wy_list_t *it = b->reqs.next; it != &b->reqs; it = it->next) {
        actor_req_t *r = wy_list_entry(it, actor_req_t, node);
        if (r->dup_of) {
            const actor_req_t *src = r->dup_of;
            r->status = src->status;
            memcpy(r->msg, src->msg, sizeof r->msg);
            r->result = src->result;
            r->result_len = src->result_len;
            r->seq = src->seq;
            r->replayed = src->replayed; /* committed before this batch */
            continue;
        }
        results[n_results] = r->result;
        from_pq[n_results++] = r->replayed;
    }
    wy_list_t *n;
    while ((n = wy_list_pop_front(&b->reqs))) {
        actor_req_t *r = wy_list_entry(n, actor_req_t, node);
        /* A result read by the key lookup was committed before; anything else needed
         * this transaction. */
        bool committed = outcome == BATCH_OK || r->replayed;
        int status = !committed ? WY_EUNAVAIL : r->status;
        count_answer(svc, r, status);
        if (!committed)
            answer_error(r, WY_EUNAVAIL,
                         outcome == BATCH_FENCED
                             ? "this instance no longer owns the character's shard"
                             : UNAVAIL_MSG);
        else if (r->status != WY_OK)
            answer_error(r, r->status, r->msg);
        else if (!r->result && r->consumed[0])
            answer_bare(r, r->seq, r->replayed || r->dup_of);
        else
            answer_packed(r, r->result, r->result_len, r->replayed || r->dup_of);
    }
    for (size_t i = 0; i < n_results; i++) {
        if (from_pq[i])
            PQfreemem(results[i]);
        else
            wy_free(results[i]);
    }
    wy_free(results);
    wy_free(from_pq);
    for (size_t i = 0; i < b->n_actors; i++) {
        actor_t *a = b->actors[i];
        if (outcome == BATCH_UNKNOWN || outcome == BATCH_FENCED) {
            if (outcome == BATCH_FENCED && !svc->stopping) {
                /* Fenced: the queue goes to the new owner (actor_settle). */
                actor_state_clear(&a->state);
                a->phase = ACTOR_READY;
                actor_settle(a);
                continue;
            }
            actor_reread(a); /* what PostgreSQL has is not known here */
            continue;
        }
        a->phase = ACTOR_READY;
        actor_settle(a);
    }
    if (outcome == BATCH_FENCED)
        actor_store_shards_lost(svc, lost);
    svc->batches--;
    svc->busy--;
    arm_flush(svc);
    batch_free(b);
    actor_svc_unref(svc);
}

static void on_written(int status, const PGresult *res, const char *err, void *ud)
{
    actor_batch_t *b = ud;
    batch_outcome_t outcome = BATCH_OK;
    const char *constraint = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    if (status == WY_EEXIST && !b->looked_up && constraint &&
        (!strcmp(constraint, "commands_pkey") || !strcmp(constraint, "wy_consumed_pkey"))) {
        batch_lookup(b); /* a retried key or consumed id: nothing was written */
        return;
    }
    if (status != WY_OK) {
        /* A duplicate (actor_id, seq) means another writer got there first: fenced too. */
        bool fenced = status == WY_EEXIST || (res && !strcmp(wy_pg_sqlstate(res), FENCED_SQLSTATE));
        outcome = fenced                                            ? BATCH_FENCED
                  : status == WY_EUNAVAIL || status == WY_ETIMEDOUT ? BATCH_UNKNOWN
                                                                    : BATCH_FAILED;
        wy_log_warn("group commit failed", "error", err ? err : wy_strerror(status), "outcome",
                    outcome == BATCH_FENCED    ? "fenced"
                    : outcome == BATCH_UNKNOWN ? "unknown"
                                               : "rolled back",
                    NULL);
        if (outcome == BATCH_FENCED)
            wy_log_error("shard fenced: another instance owns it now", NULL);
    }
    batch_end(b, outcome);
}

/* Step 2: the write, one statement. */
static void batch_write(actor_batch_t *b)
{
    wy_buf_t *arrays[BATCH_ARRAYS];
    batch_arrays(b, arrays);
    for (size_t i = 0; i < BATCH_LITERALS; i++)
        arr_end(arrays[i]);
    char keep[24];
    snprintf(keep, sizeof keep, "%lld", (long long)b->svc->cfg->snapshot_keep);
    const char *p[] = {b->fence_shard.data,
                       b->fence_epoch.data,
                       wy_daemon_instance(b->svc->d),
                       b->ev_actor.data,
                       b->ev_seq.data,
                       b->ev_epoch.data,
                       b->ev_id.data,
                       b->ev_type.data,
                       blob_param(&b->ev_payload),
                       b->cmd_actor.data,
                       b->cmd_key.data,
                       b->cmd_status.data,
                       b->cmd_msg.data,
                       blob_param(&b->cmd_result),
                       b->snap_actor.data,
                       b->snap_seq.data,
                       blob_param(&b->snap_state),
                       keep,
                       b->del_actor.data,
                       b->del_ms.data,
                       b->con_id.data,
                       b->svc->cfg->prune_events ? "true" : "false",
                       b->ev_payload.off.data,
                       b->ev_payload.len.data,
                       b->cmd_result.off.data,
                       b->cmd_result.len.data,
                       b->snap_state.off.data,
                       b->snap_state.len.data};
    wy_pg_t *pg = wy_daemon_pg(b->svc->d);
    if (!pg || wy_pg_exec(pg, &sql_write, p, on_written, b) != WY_OK)
        batch_end(b, BATCH_FAILED);
}

/* The batch's transaction checks that this instance still owns shard, with its epoch. */
static void fence_shard(actor_batch_t *b, int shard)
{
    if (b->shard_in[shard])
        return;
    b->shard_in[shard] = true;
    arr_int(&b->fence_shard, shard);
    arr_int(&b->fence_epoch, b->svc->epoch[shard]);
}

static void add_event(actor_batch_t *b, actor_t *a, uint64_t seq, const actor_event_t *ev)
{
    int shard = actor_shard(a->id);
    char uuid[37];
    wy_uuid4(uuid);
    arr_str(&b->ev_actor, a->id);
    arr_uint(&b->ev_seq, seq);
    arr_int(&b->ev_epoch, b->svc->epoch[shard]);
    arr_str(&b->ev_id, uuid);
    arr_str(&b->ev_type, ev->type);
    blob_add(&b->ev_payload, ev->data, ev->len);
    if (b->n_events == b->cap_evs) {
        b->cap_evs = b->cap_evs ? 2 * b->cap_evs : 64;
        b->evs = wy_realloc(b->evs, b->cap_evs * sizeof *b->evs);
    }
    struct batch_event *e = &b->evs[b->n_events++];
    e->actor = a;
    e->seq = seq;
    e->type = ev->type;
    memcpy(e->id, uuid, sizeof e->id);
    fence_shard(b, shard);
}

static void add_command_row(actor_batch_t *b, const actor_req_t *r)
{
    if (r->consumed[0]) { /* a wy.gameplay command: its consumed id is its record */
        arr_str(&b->con_id, r->consumed);
        b->n_cmds++;
        fence_shard(b, actor_shard(r->actor->id));
        return;
    }
    arr_str(&b->cmd_actor, r->actor->id);
    arr_str(&b->cmd_key, r->key);
    arr_int(&b->cmd_status, r->status);
    arr_str(&b->cmd_msg, r->msg);
    if (r->result)
        blob_add(&b->cmd_result, r->result, r->result_len);
    else
        blob_null(&b->cmd_result);
    b->n_cmds++;
    fence_shard(b, actor_shard(r->actor->id)); /* key rows are written under the fence too */
}

/* An earlier request of the batch for the same actor with the same key, or NULL. An
 * actor's requests are next to each other in the batch (batch_start takes its queue
 * whole), so only those before r are looked at, not the whole batch. */
static actor_req_t *same_key_before(actor_batch_t *b, actor_req_t *r)
{
    for (wy_list_t *n = r->node.prev; n != &b->reqs; n = n->prev) {
        actor_req_t *o = wy_list_entry(n, actor_req_t, node);
        if (o->actor != r->actor)
            break;
        if (o->key[0] && !o->dup_of && !strcmp(o->key, r->key))
            return o;
    }
    return NULL;
}

/* Step 1: decide every command against its actor's working copy, then write. */
static void batch_decide(actor_batch_t *b)
{
    int64_t now = (int64_t)wy_wall_ms();
    for (wy_list_t *n = b->reqs.next; n != &b->reqs; n = n->next) {
        actor_req_t *r = wy_list_entry(n, actor_req_t, node);
        actor_t *a = r->actor;
        if (r->replayed)
            continue;
        if (r->key[0] && (r->dup_of = same_key_before(b, r)))
            continue;
        if (!r->read_only && r->account[0] && strcmp(r->account, a->work.account_id)) {
            r->status = WY_EPERM;
            snprintf(r->msg, sizeof r->msg, "the character does not belong to this account");
        } else if (!r->read_only) {
            actor_events_t evs = {0};
            r->status = actor_decide(&a->work, &r->cmd, now, b->svc->cfg->restore_window_ms, &evs,
                                     r->msg, sizeof r->msg);
            for (size_t i = 0; r->status == WY_OK && i < evs.n; i++) {
                uint64_t seq = a->work.seq + 1;
                r->status = actor_apply_packed(&a->work, seq, evs.ev[i].data, evs.ev[i].len);
                if (r->status == WY_OK)
                    add_event(b, a, seq, &evs.ev[i]);
                else
                    snprintf(r->msg, sizeof r->msg, "internal: a new event does not apply");
            }
            actor_events_clear(&evs);
        }
        r->seq = a->work.seq;
        if (r->status == WY_OK && !r->consumed[0])
            r->result = pack_response(&a->work, &r->result_len);
        if (r->key[0])
            add_command_row(b, r);
    }
    for (size_t i = 0; i < b->n_actors; i++) {
        actor_t *a = b->actors[i];
        if (a->work.seq >= a->snap_seq + (uint64_t)b->svc->cfg->snapshot_every &&
            a->work.seq > a->state.seq) {
            size_t len;
            uint8_t *snap = actor_snapshot_encode(&a->work, &len);
            arr_str(&b->snap_actor, a->id);
            arr_uint(&b->snap_seq, a->work.seq);
            blob_add(&b->snap_state, snap, len);
            wy_free(snap);
            a->snapshot = true;
            b->n_snaps++;
        }
        if (a->work.deleted != a->deleted_before) {
            arr_str(&b->del_actor, a->id);
            arr_int(&b->del_ms, a->work.deleted ? a->work.deleted_at_ms : 0);
            b->n_dels++;
        }
    }
    if (!b->n_events && !b->n_cmds) {
        batch_end(b, BATCH_OK); /* reads, refusals without keys, replays: no write */
        return;
    }
    batch_write(b);
}

/* After a key conflict: the first results of the keys seen before, then decide again. */
static void on_keys(int status, const PGresult *res, const char *err, void *ud)
{
    actor_batch_t *b = ud;
    if (status != WY_OK) {
        wy_log_warn("idempotency lookup failed", "error", err, NULL);
        batch_end(b, BATCH_FAILED);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        bool by_consumed = wy_pg_int64(res, i, "kind") == 1;
        const char *id = wy_pg_text(res, i, "actor_id"), *key = wy_pg_text(res, i, "key");
        for (wy_list_t *n = b->reqs.next; n != &b->reqs; n = n->next) {
            actor_req_t *r = wy_list_entry(n, actor_req_t, node);
            if (r->replayed)
                continue;
            if (by_consumed) { /* applied before: no result kept, answered bare */
                if (strcmp(r->consumed, key))
                    continue;
                r->replayed = true;
                r->status = WY_OK;
                r->seq = 0;
                break;
            }
            if (strcmp(r->key, key) || strcmp(r->actor->id, id))
                continue;
            r->replayed = true;
            r->status = (int)wy_pg_int64(res, i, "status");
            snprintf(r->msg, sizeof r->msg, "%s", wy_pg_text(res, i, "message"));
            r->result = actor_column_bytes(res, i, "result", &r->result_len);
            break; /* later requests with the key become duplicates of this one */
        }
    }
    batch_decide(b);
}

static void batch_start(actor_svc_t *svc)
{
    actor_batch_t *b = wy_calloc(1, sizeof *b);
    b->svc = svc;
    b->actors = wy_calloc((size_t)svc->cfg->batch_max, sizeof *b->actors);
    wy_list_init(&b->reqs);
    wy_list_t *n;
    while (b->n_reqs < (size_t)svc->cfg->batch_max && (n = wy_list_pop_front(&svc->ready))) {
        actor_t *a = wy_list_entry(n, actor_t, node);
        a->phase = ACTOR_WRITING;
        actor_state_copy(&a->work, &a->state);
        a->deleted_before = a->state.deleted;
        b->actors[b->n_actors++] = a;
        wy_list_t *q;
        while (b->n_reqs < (size_t)svc->cfg->batch_max && (q = wy_list_first(&a->queue)) &&
               !wy_list_entry(q, actor_req_t, node)->hold) { /* a hold waits for the batch */
            wy_list_remove(q);
            actor_req_t *r = wy_list_entry(q, actor_req_t, node);
            a->n_queued--;
            wy_list_push_back(&b->reqs, &r->node);
            b->n_reqs++;
        }
    }
    svc->batches++;
    svc->busy++;
    actor_svc_ref(svc);
    wy_metric_observe(svc->m_batch_size, (double)b->n_reqs);
    /* Optimistic: most keys are new, so write at once; a key seen before makes the write
     * fail as a whole and the batch is decided again after looking its keys up. */
    batch_decide(b);
}

/* A write failed on a key that exists: forget the decisions, look every key of the batch
 * up, decide again. */
static void batch_lookup(actor_batch_t *b)
{
    batch_forget(b);
    b->looked_up = true;
    wy_buf_t ids = WY_BUF_INIT, keys = WY_BUF_INIT, consumed = WY_BUF_INIT;
    for (wy_list_t *n = b->reqs.next; n != &b->reqs; n = n->next) {
        actor_req_t *r = wy_list_entry(n, actor_req_t, node);
        if (r->key[0]) {
            arr_str(&ids, r->actor->id);
            arr_str(&keys, r->key);
        }
        if (r->consumed[0])
            arr_str(&consumed, r->consumed);
    }
    arr_end(&ids);
    arr_end(&keys);
    arr_end(&consumed);
    const char *p[] = {ids.data, keys.data, consumed.data};
    wy_pg_t *pg = wy_daemon_pg(b->svc->d);
    int rc = pg ? wy_pg_exec(pg, &sql_keys, p, on_keys, b) : WY_EUNAVAIL;
    wy_buf_free(&ids);
    wy_buf_free(&keys);
    wy_buf_free(&consumed);
    if (rc != WY_OK)
        batch_end(b, BATCH_FAILED);
}

static bool grant_holds(actor_svc_t *svc);

static void on_flush(uv_check_t *h)
{
    actor_svc_t *svc = h->data;
    for (;;) {
        /* Holds first, again before every batch: a batch that ends at once (nothing to
         * write) puts its actors back in `ready`, maybe with a hold at the head of the
         * queue, which a batch never takes (it would take nothing, forever). */
        while (!svc->stopping && grant_holds(svc))
            ;
        if (!svc->claimed || svc->stopping || svc->batches >= (unsigned)svc->cfg->write_batches ||
            wy_list_empty(&svc->ready))
            break;
        batch_start(svc);
    }
    uv_check_stop(h);
}

static void arm_flush(actor_svc_t *svc)
{
    if (!svc->stopping && svc->claimed && !wy_list_empty(&svc->ready))
        uv_check_start(&svc->flush, on_flush);
}

/* ---- holds for cross-actor transactions (txn.c) ---- */

/* Grants the holds at the head of ready actors' queues (their earlier commands are
 * written). The answers come after the scan: they may queue more. True if any. */
static bool grant_holds(actor_svc_t *svc)
{
    wy_list_t granted;
    wy_list_init(&granted);
    for (wy_list_t *n = svc->ready.next, *next; n != &svc->ready; n = next) {
        next = n->next;
        actor_t *a = wy_list_entry(n, actor_t, node);
        wy_list_t *q = wy_list_first(&a->queue);
        if (!q || !wy_list_entry(q, actor_req_t, node)->hold)
            continue;
        wy_list_remove(q);
        a->n_queued--;
        wy_list_remove(&a->node); /* in no list while held */
        a->phase = ACTOR_HELD;
        wy_list_push_back(&granted, q);
    }
    bool any = !wy_list_empty(&granted);
    wy_list_t *q;
    while ((q = wy_list_pop_front(&granted))) {
        actor_req_t *r = wy_list_entry(q, actor_req_t, node);
        wy_list_init(&r->node);
        r->done(r, WY_OK, NULL, NULL);
    }
    return any;
}

void actor_store_hold(actor_svc_t *svc, const char *actor_id, actor_req_t *r)
{
    r->hold = true;
    r->read_only = false;
    r->key[0] = 0;
    actor_store_submit(svc, actor_id, r);
}

const actor_state_t *actor_store_held(const actor_req_t *r)
{
    return &r->actor->state;
}

bool actor_store_snapshot_due(const actor_req_t *r, uint64_t seq)
{
    return seq >= r->actor->snap_seq + (uint64_t)r->actor->svc->cfg->snapshot_every;
}

void actor_store_release(actor_req_t *r, const actor_event_t *events, size_t n, bool snapshot,
                         bool unknown)
{
    actor_t *a = r->actor;
    r->actor = NULL;
    for (size_t i = 0; !unknown && i < n; i++)
        unknown =
            actor_apply_packed(&a->state, a->state.seq + 1, events[i].data, events[i].len) != WY_OK;
    if (unknown) { /* as after a commit of unknown outcome */
        actor_reread(a);
        return;
    }
    if (snapshot && n) {
        a->snap_seq = a->state.seq;
        wy_metric_inc(a->svc->m_snapshots);
    }
    a->phase = ACTOR_READY;
    actor_settle(a);
}

/* ---- create ---- */

static void create_answer(actor_create_t *c, int status, const char *msg, const actor_state_t *s)
{
    actor_svc_t *svc = c->svc;
    wy_free(c->ev.data);
    c->ev.data = NULL;
    wy_free(c->name_key);
    c->name_key = NULL;
    svc->busy--;
    if (!c->req.done)
        ; /* answered by a read */
    else if (status == WY_OK)
        answer_state(&c->req, s);
    else
        answer_error(&c->req, status, msg);
    actor_svc_unref(svc);
}

static void on_created(int status, const char *err, void *ud)
{
    actor_create_t *c = ud;
    actor_svc_t *svc = c->svc;
    if (c->fail == CREATE_EXISTING) {
        /* A retried create: answer the character the first attempt made, as a read. The
         * create's own bookkeeping ends first: the read may answer (and free c) at once. */
        char id[ACTOR_ID_LEN + 1];
        memcpy(id, c->actor_id, sizeof id);
        actor_req_t *r = &c->req;
        actor_done_cb done = r->done;
        r->done = NULL;
        actor_svc_ref(svc);
        create_answer(c, WY_OK, NULL, NULL);
        r->done = done;
        r->read_only = true;
        actor_store_submit(svc, id, r);
        actor_svc_unref(svc);
        return;
    }
    if (c->fail == WY_EEXIST || c->fail == WY_ELIMIT) {
        create_answer(c, c->fail, c->fail == WY_EEXIST ? "name taken" : c->fail_msg, NULL);
        return;
    }
    if (c->fail || status != WY_OK) {
        wy_log_warn("create failed", "error", err ? err : c->fail_msg, NULL);
        create_answer(c, WY_EUNAVAIL, c->fail_msg[0] ? c->fail_msg : UNAVAIL_MSG, NULL);
        return;
    }
    actor_state_t s;
    actor_state_init(&s, c->actor_id);
    actor_apply_packed(&s, 1, c->ev.data, c->ev.len);
    wy_log_info("character created", "actor", c->actor_id, "account", c->account_id, NULL);
    if (svc->cfg->audit_log)
        wy_log_info("actor event", "actor", c->actor_id, "seq", "1", "type", "created", "event_id",
                    c->event_id, NULL);
    actor_publish_wake(svc);
    if (!svc->stopping && !wy_map_get_str(svc->resident, c->actor_id)) {
        actor_t *a = actor_new(svc, c->actor_id);
        if (a) {
            actor_state_copy(&a->state, &s);
            a->phase = ACTOR_READY;
            actor_settle(a);
        }
    }
    create_answer(c, WY_OK, NULL, &s);
    actor_state_clear(&s);
}

static void on_create_stmt(int status, const PGresult *res, const char *err, void *ud)
{
    (void)res;
    actor_create_t *c = ud;
    if (status != WY_OK && !c->fail) {
        c->fail = status;
        snprintf(c->fail_msg, sizeof c->fail_msg, "%s", err ? err : "");
        if (status == WY_EEXIST) /* the unique name_key */
            c->fail_msg[0] = 0;
    }
}

static void create_end(actor_create_t *c, int fail, const char *msg)
{
    c->fail = fail;
    snprintf(c->fail_msg, sizeof c->fail_msg, "%s", msg);
    wy_pg_tx_rollback(c->tx, on_created, c);
}

/* After the lock: an earlier create with this key answers its character; the per-account
 * bound; then the writes. */
static void on_create_checked(int status, const PGresult *res, const char *err, void *ud)
{
    actor_create_t *c = ud;
    actor_svc_t *svc = c->svc;
    if (status != WY_OK || PQntuples(res) != 1) {
        create_end(c, WY_EUNAVAIL, err ? err : UNAVAIL_MSG);
        return;
    }
    if (!wy_pg_isnull(res, 0, "existing")) {
        /* A retried create: answer the character the first attempt made. */
        snprintf(c->actor_id, sizeof c->actor_id, "%s", wy_pg_text(res, 0, "existing"));
        c->fail = CREATE_EXISTING; /* rolled back, then answered through a read */
        wy_pg_tx_rollback(c->tx, on_created, c);
        return;
    }
    if (wy_pg_int64(res, 0, "live") >= svc->cfg->max_characters) {
        create_end(c, WY_ELIMIT, "too many characters on this account");
        return;
    }
    int shard = actor_shard(c->actor_id);
    char shard_s[16], epoch_s[32];
    snprintf(shard_s, sizeof shard_s, "{%d}", shard);
    snprintf(epoch_s, sizeof epoch_s, "{%lld}", (long long)svc->epoch[shard]);
    const char *fence[] = {shard_s, epoch_s, wy_daemon_instance(svc->d)};
    int rc = wy_pg_tx_exec(c->tx, &sql_fence, fence, on_create_stmt, c);
    actor_event_created(c->account_id, c->name, c->class_name, (int64_t)wy_wall_ms(), &c->ev);
    const char *ins[] = {c->actor_id, c->account_id, c->name,
                         c->name_key, c->class_name, c->key[0] ? c->key : NULL};
    if (rc == WY_OK)
        rc = wy_pg_tx_exec(c->tx, &sql_character, ins, on_create_stmt, c);
    char epoch[32];
    wy_uuid4(c->event_id);
    snprintf(epoch, sizeof epoch, "%lld", (long long)svc->epoch[shard]);
    wy_buf_t payload = WY_BUF_INIT;
    wy_buf_puts(&payload, "\\x");
    for (size_t i = 0; i < c->ev.len; i++)
        wy_buf_printf(&payload, "%02x", c->ev.data[i]);
    const char *ev[] = {c->actor_id, epoch, c->event_id, payload.data};
    if (rc == WY_OK)
        rc = wy_pg_tx_exec(c->tx, &sql_first_event, ev, on_create_stmt, c);
    wy_buf_free(&payload);
    if (rc != WY_OK) {
        create_end(c, rc, UNAVAIL_MSG);
        return;
    }
    wy_pg_tx_commit(c->tx, on_created, c);
}

static void on_create_begun(int status, wy_pg_tx_t *tx, const char *err, void *ud)
{
    actor_create_t *c = ud;
    if (status != WY_OK) {
        create_answer(c, WY_EUNAVAIL, err ? err : UNAVAIL_MSG, NULL);
        return;
    }
    c->tx = tx;
    const char *lock[] = {c->account_id};
    const char *check[] = {c->account_id, c->key};
    /* The lock serialises creates of one account, so the bound and the create key hold
     * under concurrency; the check runs after it (its own snapshot). */
    int rc = wy_pg_tx_exec(tx, &sql_create_lock, lock, on_create_stmt, c);
    if (rc == WY_OK)
        rc = wy_pg_tx_exec(tx, &sql_create_check, check, on_create_checked, c);
    if (rc != WY_OK)
        create_end(c, rc, UNAVAIL_MSG);
}

static void create_begin(actor_create_t *c)
{
    /* A new character lives in a shard this instance owns, so its creator is its owner. */
    int mine[ACTOR_SHARDS], n = 0;
    for (int s = 0; s < ACTOR_SHARDS; s++)
        if (c->svc->epoch[s] > 0)
            mine[n++] = s;
    if (!n) {
        if (!actor_forward_create(c->svc, c)) /* else answered by the one it went to */
            create_answer(c, WY_EUNAVAIL, "no live instance owns a shard yet; retry", NULL);
        return;
    }
    /* A UUIDv4's first byte is random: make it one of ours, at random. */
    wy_uuid4(c->actor_id);
    uint8_t r[2];
    wy_random(r, sizeof r);
    char hex[3];
    snprintf(hex, sizeof hex, "%02x", mine[((unsigned)r[0] << 8 | r[1]) % (unsigned)n]);
    memcpy(c->actor_id, hex, 2);
    wy_pg_t *pg = wy_daemon_pg(c->svc->d);
    if (!pg || wy_pg_begin(pg, on_create_begun, c) != WY_OK)
        create_answer(c, WY_EUNAVAIL, UNAVAIL_MSG, NULL);
}

void actor_store_create(actor_svc_t *svc, actor_create_t *c)
{
    c->svc = svc;
    c->fail = 0;
    c->fail_msg[0] = 0;
    c->ev.data = NULL;
    wy_uuid4(c->actor_id);
    svc->busy++;
    actor_svc_ref(svc);
    if (svc->stopping) {
        create_answer(c, WY_EUNAVAIL, "wy-actor is stopping", NULL);
        return;
    }
    if (!svc->claimed) {
        wy_list_push_back(&svc->claim_waiters, &c->node);
        return;
    }
    create_begin(c);
}

void actor_store_create_end(actor_create_t *c, int status, const char *msg,
                            const Wyvern__Actor__ApplyResponse *res)
{
    actor_svc_t *svc = c->svc;
    actor_req_t *r = &c->req;
    actor_done_cb done = r->done;
    r->done = NULL; /* create_answer's bookkeeping only: the answer is res */
    actor_svc_ref(svc);
    create_answer(c, status, msg, NULL);
    done(r, status, msg, res); /* may free c */
    actor_svc_unref(svc);
}

/* ---- list ---- */

typedef struct {
    actor_ids_cb cb;
    void *ud;
    actor_svc_t *svc;
} list_op_t;

static void on_listed(int status, const PGresult *res, const char *err, void *ud)
{
    list_op_t *op = ud;
    actor_svc_t *svc = op->svc;
    svc->busy--;
    size_t n = status == WY_OK ? (size_t)PQntuples(res) : 0;
    char(*ids)[ACTOR_ID_LEN + 1] = wy_calloc(n ? n : 1, sizeof *ids);
    for (size_t i = 0; i < n; i++)
        snprintf(ids[i], sizeof ids[i], "%s", wy_pg_text(res, (int)i, "actor_id"));
    if (status != WY_OK)
        wy_log_warn("character list failed", "error", err, NULL);
    op->cb(status == WY_OK ? WY_OK : WY_EUNAVAIL, ids, n, op->ud);
    wy_free(ids);
    wy_free(op);
    actor_svc_unref(svc);
}

void actor_store_list(actor_svc_t *svc, const char *account_id, bool include_deleted,
                      actor_ids_cb cb, void *ud)
{
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    char window[24], limit[16];
    snprintf(window, sizeof window, "%lld", (long long)svc->cfg->restore_window_ms);
    snprintf(limit, sizeof limit, "%d", LIST_MAX);
    const char *p[] = {account_id, include_deleted ? "true" : "false", window, limit};
    list_op_t *op = wy_calloc(1, sizeof *op);
    op->cb = cb;
    op->ud = ud;
    op->svc = svc;
    int rc = pg && !svc->stopping ? wy_pg_exec(pg, &sql_list, p, on_listed, op) : WY_EUNAVAIL;
    svc->busy++;
    actor_svc_ref(svc);
    if (rc != WY_OK)
        on_listed(rc, NULL, "PostgreSQL unavailable", op);
}

/* ---- start / stop ---- */

static void on_handle_closed(uv_handle_t *h)
{
    actor_svc_unref(h->data);
}

void actor_store_start(actor_svc_t *svc)
{
    svc->resident = wy_map_new(0);
    wy_list_init(&svc->idle);
    wy_list_init(&svc->ready);
    wy_list_init(&svc->claim_waiters);
    uv_check_init(svc->loop, &svc->flush);
    uv_timer_init(svc->loop, &svc->claim_timer);
    svc->flush.data = svc->claim_timer.data = svc;
    actor_svc_ref(svc); /* each handle, released by its close callback */
    actor_svc_ref(svc);
    actor_owners_start(svc);
}

void actor_store_stop(actor_svc_t *svc)
{
    svc->stopping = true;
    actor_owners_stop(svc);
    wy_map_iter_t it;
    wy_map_iter_init(&it, svc->resident);
    while (wy_map_next(&it))
        answer_queue(it.val, WY_EUNAVAIL, "wy-actor is stopping");
    wy_list_t *w;
    while ((w = wy_list_pop_front(&svc->claim_waiters)))
        create_answer(wy_list_entry(w, actor_create_t, node), WY_EUNAVAIL, "wy-actor is stopping",
                      NULL);
    uv_close((uv_handle_t *)&svc->flush, on_handle_closed);
    uv_close((uv_handle_t *)&svc->claim_timer, on_handle_closed);
}

/* Called by actor_svc_unref when the last reference goes. */
void actor_store_free(actor_svc_t *svc)
{
    actor_owners_free(svc);
    if (!svc->resident)
        return;
    wy_map_iter_t it;
    wy_map_iter_init(&it, svc->resident);
    while (wy_map_next(&it)) {
        actor_t *a = it.val;
        wy_map_iter_del(&it);
        wy_list_remove(&a->node);
        actor_state_clear(&a->state);
        actor_state_clear(&a->work);
        wy_free(a);
    }
    wy_map_free(svc->resident);
    svc->resident = NULL;
}
