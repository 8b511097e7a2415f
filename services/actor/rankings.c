/* wy-actor rankings (rankings.h): two Redis sorted sets fed after each commit, a rebuild
 * from PostgreSQL when {rank}:ready is gone (Redis flushed or lost), and the two read
 * methods. A rebuild pages through actor.characters and reads each live character
 * through the store (snapshot + tail, as any read), so the boards come from the event
 * log; ZADD GT keeps a newer score when a commit and the rebuild race. Loop thread. */
#include "rankings.h"
#include "wy_log.h"

#include <stdio.h>
#include <string.h>

#define RKEY_RANK_LEVEL   "{rank}:level"
#define RKEY_RANK_XP      "{rank}:xp"
#define RKEY_RANK_READY   "{rank}:ready"
#define RKEY_RANK_REBUILD "{rank}:rebuild"
#define REBUILD_TTL_MS    "120000"
#define PAGE              256
#define TOP_MAX           100

static const wy_pg_stmt_t sql_rank_page = {
    "actor_rank_page",
    "SELECT actor_id::text AS actor_id FROM actor.characters WHERE deleted_at IS NULL AND "
    "actor_id > $1::uuid ORDER BY actor_id LIMIT $2::int",
    2};

typedef struct {
    actor_req_t req;
} rank_read_t;

/* One per process (one daemon). */
static struct {
    actor_svc_t *svc;
    uv_timer_t timer;
    bool running;    /* the timer is open */
    bool rebuilding; /* this instance holds {rank}:rebuild */
    bool dirty;      /* an update did not reach Redis: rebuild at the next check */
    char cursor[ACTOR_ID_LEN + 1];
    rank_read_t *page;
    size_t pending;
    size_t ranked;
    wy_metric_t *m_rebuilds;
} R;

static wy_redis_t *redis(void)
{
    return R.svc ? wy_daemon_redis(R.svc->d) : NULL;
}

/* ---- updates ---- */

static void on_update(int status, redisReply *reply, void *ud)
{
    (void)reply;
    (void)ud;
    if (status != WY_OK)
        R.dirty = true;
}

static void send_update(wy_redis_t *r, const char *key, uint64_t score, const char *id)
{
    char s[24];
    snprintf(s, sizeof s, "%llu", (unsigned long long)score);
    const char *argv[] = {"ZADD", key, "GT", s, id};
    if (wy_redis_command_argv(r, on_update, NULL, 5, argv, NULL) != WY_OK)
        R.dirty = true;
}

static void send_remove(wy_redis_t *r, const char *key, const char *id)
{
    const char *argv[] = {"ZREM", key, id};
    if (wy_redis_command_argv(r, on_update, NULL, 3, argv, NULL) != WY_OK)
        R.dirty = true;
}

/* Sets the boards of state s: its scores, or out of them when deleted or without XP. */
static void rank_set(const actor_state_t *s)
{
    wy_redis_t *r = redis();
    if (!r) {
        R.dirty = true;
        return;
    }
    if (s->deleted || s->xp == 0) {
        send_remove(r, RKEY_RANK_LEVEL, s->actor_id);
        send_remove(r, RKEY_RANK_XP, s->actor_id);
        return;
    }
    send_update(r, RKEY_RANK_LEVEL, s->level, s->actor_id);
    send_update(r, RKEY_RANK_XP, s->xp, s->actor_id);
}

void actor_rank_changed(actor_svc_t *svc, const actor_state_t *before, const actor_state_t *after)
{
    (void)svc;
    if (before->xp != after->xp || before->level != after->level ||
        before->deleted != after->deleted)
        rank_set(after);
}

/* ---- rebuild ---- */

static void rebuild_page(void);

static void rebuild_end(bool ok)
{
    wy_redis_t *r = redis();
    if (ok && r) {
        wy_redis_command(r, on_update, NULL, "SET %s 1", RKEY_RANK_READY);
        char n[24];
        snprintf(n, sizeof n, "%zu", R.ranked);
        wy_log_info("rankings rebuilt from PostgreSQL", "characters", n, NULL);
        wy_metric_inc(R.m_rebuilds);
    } else {
        R.dirty = true; /* try again at the next check */
    }
    if (r)
        wy_redis_command(r, on_update, NULL, "DEL %s", RKEY_RANK_REBUILD);
    R.rebuilding = false;
}

/* One read (or on_page's own share) of the page is over: the next page after the last. */
static void page_step(void)
{
    if (--R.pending)
        return;
    wy_free(R.page);
    R.page = NULL;
    actor_svc_t *svc = R.svc;
    if (svc->stopping)
        rebuild_end(false);
    else
        rebuild_page();
    actor_svc_unref(svc);
}

static void on_rank_read(actor_req_t *req, int status, const char *msg,
                         const Wyvern__Actor__ApplyResponse *res)
{
    (void)req;
    (void)msg;
    wy_redis_t *r = redis();
    if (status == WY_OK && r && res->character->xp > 0 && !res->character->deleted) {
        send_update(r, RKEY_RANK_LEVEL, res->character->level, res->character->actor_id);
        send_update(r, RKEY_RANK_XP, res->character->xp, res->character->actor_id);
        R.ranked++;
    } else if (status != WY_OK && status != WY_ENOTFOUND) {
        R.dirty = true; /* a character could not be read: the rebuild runs again */
    }
    page_step();
}

static void on_page(int status, const PGresult *res, const char *err, void *ud)
{
    actor_svc_t *svc = ud;
    int n = status == WY_OK ? PQntuples(res) : 0;
    if (status != WY_OK || svc->stopping || n == 0) {
        if (status != WY_OK)
            wy_log_warn("rankings rebuild: character page failed", "error", err, NULL);
        rebuild_end(status == WY_OK && !svc->stopping);
        actor_svc_unref(svc);
        return;
    }
    R.page = wy_calloc((size_t)n, sizeof *R.page);
    R.pending = (size_t)n + 1; /* + this function: an answer inside submit cannot end it */
    snprintf(R.cursor, sizeof R.cursor, "%s", wy_pg_text(res, n - 1, "actor_id"));
    char ids[PAGE][ACTOR_ID_LEN + 1];
    for (int i = 0; i < n && i < PAGE; i++)
        snprintf(ids[i], sizeof ids[i], "%s", wy_pg_text(res, i, "actor_id"));
    for (int i = 0; i < n && i < PAGE; i++) {
        rank_read_t *rr = &R.page[i];
        rr->req.read_only = true;
        rr->req.done = on_rank_read;
        rr->req.ud = rr;
        actor_store_submit(svc, ids[i], &rr->req);
    }
    page_step(); /* this function's share */
}

static void rebuild_page(void)
{
    actor_svc_t *svc = R.svc;
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    char limit[16];
    snprintf(limit, sizeof limit, "%d", PAGE);
    const char *p[] = {R.cursor, limit};
    actor_svc_ref(svc);
    if (!pg || wy_pg_exec(pg, &sql_rank_page, p, on_page, svc) != WY_OK)
        on_page(WY_EUNAVAIL, NULL, "PostgreSQL unavailable", svc);
}

static void on_lock(int status, redisReply *reply, void *ud)
{
    (void)ud;
    if (status != WY_OK || reply->type != REDIS_REPLY_STATUS || !R.svc || R.svc->stopping) {
        R.rebuilding = false; /* another instance rebuilds, or Redis is away */
        return;
    }
    wy_log_info("rankings missing in Redis: rebuilding from PostgreSQL", NULL);
    R.dirty = false;
    R.ranked = 0;
    snprintf(R.cursor, sizeof R.cursor, "00000000-0000-0000-0000-000000000000");
    /* The cursor starts below every UUID, so the first page has the first character. */
    rebuild_page();
}

static void on_ready(int status, redisReply *reply, void *ud)
{
    (void)ud;
    if (status != WY_OK || !R.svc || R.svc->stopping) {
        R.rebuilding = false;
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1 && !R.dirty) {
        R.rebuilding = false;
        return;
    }
    const char *argv[] = {"SET", RKEY_RANK_REBUILD, wy_daemon_instance(R.svc->d), "NX",
                          "PX",  REBUILD_TTL_MS};
    if (wy_redis_command_argv(redis(), on_lock, NULL, 6, argv, NULL) != WY_OK)
        R.rebuilding = false;
}

static void on_check(uv_timer_t *t)
{
    (void)t;
    wy_redis_t *r = redis();
    if (R.rebuilding || !r || R.svc->stopping)
        return;
    R.rebuilding = true; /* until the check ends without a rebuild, or the rebuild ends */
    if (wy_redis_command(r, on_ready, NULL, "EXISTS %s", RKEY_RANK_READY) != WY_OK)
        R.rebuilding = false;
}

static void on_timer_closed(uv_handle_t *h)
{
    actor_svc_unref(h->data);
}

void actor_rank_start(actor_svc_t *svc)
{
    R.svc = svc;
    R.m_rebuilds =
        wy_metrics_counter("wy_actor_rank_rebuilds_total",
                           "Rankings rebuilt from PostgreSQL after Redis lost them.", NULL);
    uv_timer_init(svc->loop, &R.timer);
    R.timer.data = svc;
    actor_svc_ref(svc); /* released by the close callback */
    R.running = true;
    uv_timer_start(&R.timer, on_check, 0, (uint64_t)svc->cfg->rank_check_ms);
}

void actor_rank_stop(actor_svc_t *svc)
{
    if (!R.running)
        return;
    R.running = false;
    uv_close((uv_handle_t *)&R.timer, on_timer_closed);
    wy_redis_script_free(svc->rank_script); /* calls in flight keep it until they end */
    svc->rank_script = NULL;
}

/* ---- reads ---- */

typedef struct {
    wy_grpc_call_id_t call;
    Wyvern__Actor__Board board;
    char actor_id[ACTOR_ID_LEN + 1];
} rank_call_t;

static const char *board_key(Wyvern__Actor__Board b)
{
    return b == WYVERN__ACTOR__BOARD__LEVEL ? RKEY_RANK_LEVEL
           : b == WYVERN__ACTOR__BOARD__XP  ? RKEY_RANK_XP
                                            : NULL;
}

static rank_call_t *rank_call(wy_grpc_call_id_t call, void *arg, Wyvern__Actor__Board board)
{
    actor_svc_t *svc = wy_daemon_state(arg);
    if (!svc || svc->stopping || !wy_daemon_redis(svc->d)) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-actor is stopping");
        return NULL;
    }
    if (!board_key(board)) {
        wy_grpc_reply_error(call, WY_EINVAL, "board must be LEVEL or XP");
        return NULL;
    }
    rank_call_t *rc = wy_calloc(1, sizeof *rc);
    rc->call = call;
    rc->board = board;
    return rc;
}

static uint64_t reply_u64(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer < 0 ? 0 : (uint64_t)r->integer;
    if ((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str)
        return (uint64_t)strtod(r->str, NULL);
    return 0;
}

static void on_top(int status, redisReply *reply, void *ud)
{
    rank_call_t *rc = ud;
    if (status != WY_OK || reply->type != REDIS_REPLY_ARRAY) {
        wy_grpc_reply_error(rc->call, WY_EUNAVAIL, "rankings unavailable (Redis); retry");
        wy_free(rc);
        return;
    }
    size_t n = reply->elements / 2;
    Wyvern__Actor__RankEntry *e = wy_calloc(n ? n : 1, sizeof *e);
    Wyvern__Actor__RankEntry **p = wy_calloc(n ? n : 1, sizeof *p);
    for (size_t i = 0; i < n; i++) {
        wyvern__actor__rank_entry__init(&e[i]);
        e[i].actor_id = reply->element[2 * i]->str;
        e[i].rank = i + 1;
        e[i].score = reply_u64(reply->element[2 * i + 1]);
        p[i] = &e[i];
    }
    Wyvern__Actor__Ranking out = WYVERN__ACTOR__RANKING__INIT;
    out.board = rc->board;
    out.n_entries = n;
    out.entries = p;
    wy_grpc_reply(rc->call, &out.base);
    wy_free(e);
    wy_free(p);
    wy_free(rc);
}

void actor_rpc_rank_top(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__TopCharactersRequest *in =
        (const Wyvern__Actor__TopCharactersRequest *)req;
    if (in->limit < 1 || in->limit > TOP_MAX) {
        wy_grpc_reply_error(call, WY_EINVAL, "limit must be 1..100");
        return;
    }
    rank_call_t *rc = rank_call(call, arg, in->board);
    if (!rc)
        return;
    char stop[16];
    snprintf(stop, sizeof stop, "%u", in->limit - 1);
    const char *argv[] = {"ZREVRANGE", board_key(in->board), "0", stop, "WITHSCORES"};
    actor_svc_t *svc = wy_daemon_state(arg);
    if (wy_redis_command_argv(wy_daemon_redis(svc->d), on_top, rc, 5, argv, NULL) != WY_OK)
        on_top(WY_EUNAVAIL, NULL, rc);
}

/* ZREVRANK and ZSCORE in one round trip. */
static const char rank_lua[] = "return {redis.call('ZREVRANK', KEYS[1], ARGV[1]), "
                               "redis.call('ZSCORE', KEYS[1], ARGV[1])}";
static void on_rank(int status, redisReply *reply, void *ud)
{
    rank_call_t *rc = ud;
    if (status != WY_OK || reply->type != REDIS_REPLY_ARRAY) {
        wy_grpc_reply_error(rc->call, WY_EUNAVAIL, "rankings unavailable (Redis); retry");
        wy_free(rc);
        return;
    }
    Wyvern__Actor__RankEntry e = WYVERN__ACTOR__RANK_ENTRY__INIT;
    e.actor_id = rc->actor_id;
    /* Not ranked: both are nil. */
    if (reply->elements == 2 && reply->element[0]->type == REDIS_REPLY_INTEGER) {
        e.rank = reply_u64(reply->element[0]) + 1;
        e.score = reply_u64(reply->element[1]);
    }
    wy_grpc_reply(rc->call, &e.base);
    wy_free(rc);
}

void actor_rpc_rank_of(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__CharacterRankRequest *in =
        (const Wyvern__Actor__CharacterRankRequest *)req;
    if (!actor_uuid_valid(in->actor_id)) {
        wy_grpc_reply_error(call, WY_EINVAL, "actor_id must be a lower-case UUID");
        return;
    }
    rank_call_t *rc = rank_call(call, arg, in->board);
    if (!rc)
        return;
    snprintf(rc->actor_id, sizeof rc->actor_id, "%s", in->actor_id);
    actor_svc_t *svc = wy_daemon_state(arg);
    if (!svc->rank_script)
        svc->rank_script = wy_redis_script_new(rank_lua);
    const char *argv[] = {board_key(in->board), rc->actor_id};
    if (wy_redis_eval(wy_daemon_redis(svc->d), svc->rank_script, 0, on_rank, rc, 1, 2, argv,
                      NULL) != WY_OK)
        on_rank(WY_EUNAVAIL, NULL, rc);
}
