/* wy-lobby sessions store: the session records in Redis. Every change goes through a Lua
 * script that checks the account's fence epoch (README "Design"), never through separate
 * commands. */
#include "store.h"
#include "relay.h"
#include "state.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#define EPOCH_KEEP_MS "604800000" /* the fence counter outlives any session by far */

/* ---------------------------------------------------------------- Redis scripts */

/* Claim: atomically find the account's live session, refuse (reject-new, owner alive) or
 * fence it (delete its record and indexes), then write the new session and its indexes with
 * the TTL under the new epoch (from PostgreSQL, above every epoch issued before). Returns
 * {1, prev_sid, prev_instance, epoch}, {0, sid, instance} (refused) or {2, '', ''} when a
 * newer claim of the account already holds a higher epoch (this one lost the race).
 * First, before anything is written, the access token's revocation in auth's keys (the same
 * Redis; services/auth/README.md "Revocation"): {3, why, ''} when its session is revoked or
 * its account revoked/banned at or after the token's iat; with check '1' also {4, '', ''}
 * when auth's marker auth:revoked:loaded is missing (Redis lost its data and auth is
 * rebuilding it: "not revoked" cannot be trusted, ask auth). check '2': the keys without the
 * marker (no auth to ask); '0': not checked (auth was asked already).
 * KEYS: sess:acct:<a>, sess:epoch:<a>, sess:<sid>, auth:revoked:sid:<token sid>,
 *       auth:revoked:acct:<a>, auth:revoked:loaded
 * ARGV: sid, account, instance, conn, now_ms, ttl_ms, reject_new(0|1), nick, nick_norm,
 *       fence_ms (the claiming instance is alive: its liveness key is refreshed), epoch,
 *       check (0|1|2), the token's iat in ms */
static const char CLAIM_LUA[] =
    "if ARGV[12] ~= '0' then\n"
    "  if redis.call('EXISTS', KEYS[4]) == 1 then return {3, 'session revoked', ''} end\n"
    "  local at = tonumber(redis.call('GET', KEYS[5]))\n"
    "  if at and tonumber(ARGV[13]) <= at then return {3, 'account revoked', ''} end\n"
    "  if ARGV[12] == '1' and redis.call('EXISTS', KEYS[6]) == 0 then return {4, '', ''} end\n"
    "end\n"
    "local cur = tonumber(redis.call('GET', KEYS[2]))\n"
    "local epoch = tonumber(ARGV[11])\n"
    "if cur and cur >= epoch then return {2, '', ''} end\n"
    "local prev = redis.call('GET', KEYS[1])\n"
    "local pinst = ''\n"
    "if prev then\n"
    "  local h = redis.call('HMGET', 'sess:'..prev, 'instance', 'nick')\n"
    "  if not h[1] then prev = false else\n"
    "    pinst = h[1]\n"
    "    if ARGV[7] == '1' and redis.call('EXISTS', 'sess:inst:'..pinst) == 1 then\n"
    "      return {0, prev, pinst}\n"
    "    end\n"
    "    if h[2] and h[2] ~= '' and redis.call('GET', 'sess:nick:'..h[2]) == prev then\n"
    "      redis.call('DEL', 'sess:nick:'..h[2])\n"
    "    end\n"
    "    redis.call('DEL', 'sess:'..prev)\n"
    "  end\n"
    "end\n"
    "redis.call('SET', 'sess:inst:'..ARGV[3], '1', 'PX', ARGV[10])\n"
    "redis.call('SET', KEYS[2], ARGV[11], 'PX', " EPOCH_KEEP_MS ")\n"
    "redis.call('HSET', KEYS[3], 'account', ARGV[2], 'instance', ARGV[3], 'conn', ARGV[4],\n"
    "  'created', ARGV[5], 'seen', ARGV[5], 'state', 'online', 'epoch', ARGV[11], 'nick', "
    "ARGV[9],\n"
    "  'display', ARGV[8])\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[6])\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[6])\n"
    "if ARGV[9] ~= '' then redis.call('SET', 'sess:nick:'..ARGV[9], ARGV[1], 'PX', ARGV[6]) end\n"
    "return {1, prev or '', pinst, epoch}\n";

/* Write: only while no higher epoch holds the account (else 0: the session was taken over
 * elsewhere and this instance must drop it). Refreshes the record, the TTLs and the indexes.
 * When the account's epoch is missing (Redis lost its data) or lower than ours (an older
 * session re-asserted itself first), the session re-asserts itself: the epoch is set to its
 * own and the record and indexes rewritten; returns 2 then, else 1.
 * KEYS: sess:<sid>, sess:acct:<a>, sess:epoch:<a>
 * ARGV: sid, epoch, ttl_ms, account, instance, conn, created, seen, state, nick_norm,
 *       old_nick_norm, display */
static const char WRITE_LUA[] =
    "local cur = tonumber(redis.call('GET', KEYS[3]))\n"
    "local mine = tonumber(ARGV[2])\n"
    "if cur and cur > mine then return 0 end\n"
    "local r = 1\n"
    "if cur == mine then redis.call('PEXPIRE', KEYS[3], " EPOCH_KEEP_MS ")\n"
    "else r = 2; redis.call('SET', KEYS[3], ARGV[2], 'PX', " EPOCH_KEEP_MS ") end\n"
    "redis.call('HSET', KEYS[1], 'account', ARGV[4], 'instance', ARGV[5], 'conn', ARGV[6],\n"
    "  'created', ARGV[7], 'seen', ARGV[8], 'state', ARGV[9], 'epoch', ARGV[2],\n"
    "  'nick', ARGV[10], 'display', ARGV[12])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])\n"
    "if ARGV[11] ~= '' and ARGV[11] ~= ARGV[10] and "
    "redis.call('GET', 'sess:nick:'..ARGV[11]) == ARGV[1] then\n"
    "  redis.call('DEL', 'sess:nick:'..ARGV[11])\n"
    "end\n"
    "if ARGV[10] ~= '' then redis.call('SET', 'sess:nick:'..ARGV[10], ARGV[1], 'PX', ARGV[3]) end\n"
    "return r\n";

/* Release (logout, disconnect): delete the record and the indexes that still name it,
 * unless a higher epoch holds the account (a missing epoch: Redis lost its data, the
 * record may be back from a re-assertion). KEYS: sess:<sid>, sess:acct:<a>, sess:epoch:<a>;
 * ARGV: sid, epoch */
static const char RELEASE_LUA[] =
    "local cur = tonumber(redis.call('GET', KEYS[3]))\n"
    "if cur and cur > tonumber(ARGV[2]) then return 0 end\n"
    "local nick = redis.call('HGET', KEYS[1], 'nick')\n"
    "if nick and nick ~= '' and redis.call('GET', 'sess:nick:'..nick) == ARGV[1] then\n"
    "  redis.call('DEL', 'sess:nick:'..nick)\n"
    "end\n"
    "redis.call('DEL', KEYS[1])\n"
    "if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end\n"
    "return 1\n";

/* Lookup of index keys (sess:acct:<a> or sess:nick:<n>): for each, {} or {sid, account,
 * instance, conn, created, seen, state, epoch, display}; a stale index entry (its session
 * record expired) is deleted. KEYS: the index keys. */
static const char LOOKUP_LUA[] =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local sid = redis.call('GET', k)\n"
    "  local r = {}\n"
    "  if sid then\n"
    "    local h = redis.call('HMGET', 'sess:'..sid, 'account', 'instance', 'conn', 'created',\n"
    "      'seen', 'state', 'epoch', 'display')\n"
    "    if h[1] then r = {sid, h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8] or ''}\n"
    "    else redis.call('DEL', k) end\n"
    "  end\n"
    "  out[i] = r\n"
    "end\n"
    "return out\n";

/* Fence (Lobby.Kick): raise the epoch to a new one (from PostgreSQL) and delete the live
 * session of the account. KEYS: sess:acct:<a>, sess:epoch:<a>; ARGV: epoch. Returns {} or
 * the lookup fields. */
static const char FENCE_LUA[] =
    "local cur = tonumber(redis.call('GET', KEYS[2]))\n"
    "if not cur or cur < tonumber(ARGV[1]) then\n"
    "  redis.call('SET', KEYS[2], ARGV[1], 'PX', " EPOCH_KEEP_MS ")\n"
    "end\n"
    "local sid = redis.call('GET', KEYS[1])\n"
    "if not sid then return {} end\n"
    "local h = redis.call('HMGET', 'sess:'..sid, 'account', 'instance', 'conn', 'created',\n"
    "  'seen', 'state', 'epoch', 'display', 'nick')\n"
    "redis.call('DEL', KEYS[1])\n"
    "if not h[1] then return {} end\n"
    "if h[9] and h[9] ~= '' and redis.call('GET', 'sess:nick:'..h[9]) == sid then\n"
    "  redis.call('DEL', 'sess:nick:'..h[9])\n"
    "end\n"
    "redis.call('DEL', 'sess:'..sid)\n"
    "return {sid, h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8] or ''}\n";

enum { SCRIPT_CLAIM, SCRIPT_WRITE, SCRIPT_RELEASE, SCRIPT_LOOKUP, SCRIPT_FENCE };
static const char *const SCRIPTS[] = {CLAIM_LUA, WRITE_LUA, RELEASE_LUA, LOOKUP_LUA, FENCE_LUA};
_Static_assert(WY_ARRAY_LEN(SCRIPTS) == LOBBY_NSCRIPTS, "one script object per Lua script");

/* The scripts run with EVALSHA (wy_redis_eval reloads one Redis lost): a heartbeat sends its
 * keys and arguments, not the script. */
void lobby_store_init(lobby_t *lb)
{
    for (size_t i = 0; i < LOBBY_NSCRIPTS; i++)
        lb->scripts[i] = wy_redis_script_new(SCRIPTS[i]);
}

/* Redis is closed (NULL) after the drain: connections still closing then get
 * WY_EUNAVAIL and their records expire by TTL. */
static int redis_argv(lobby_t *lb, wy_redis_cb cb, void *ud, int argc, const char **argv)
{
    wy_redis_t *r = wy_daemon_redis(lb->d);
    return r ? wy_redis_command_argv(r, cb, ud, argc, argv, NULL) : WY_EUNAVAIL;
}

static int eval(lobby_t *lb, int script, size_t nkeys, const char *const *keys, size_t nargs,
                const char *const *args, wy_redis_cb cb, void *ud)
{
    wy_redis_t *r = wy_daemon_redis(lb->d);
    if (!r)
        return WY_EUNAVAIL;
    const char *stackv[48];
    size_t argc = nkeys + nargs;
    const char **argv = argc <= WY_ARRAY_LEN(stackv) ? stackv : wy_calloc(argc, sizeof *argv);
    size_t n = 0;
    for (size_t i = 0; i < nkeys; i++)
        argv[n++] = keys[i];
    for (size_t i = 0; i < nargs; i++)
        argv[n++] = args[i];
    int rc = wy_redis_eval(r, lb->scripts[script], 0, cb, ud, (int)nkeys, (int)n, argv, NULL);
    if (argv != stackv)
        wy_free(argv);
    return rc;
}

static void fmt_u64(char *out, size_t cap, uint64_t v)
{
    snprintf(out, cap, "%llu", (unsigned long long)v);
}

/* ---------------------------------------------------------------- fence epochs */

/* The next epoch of an account: a counter row in PostgreSQL, so epochs only grow even when
 * Redis loses everything (README "Fence epochs"). -> 1 row: epoch */
static const wy_pg_stmt_t EPOCH_SQL = {
    "lobby_fence_next",
    "INSERT INTO lobby.fence_epochs AS f (account_id, epoch) VALUES ($1, 1)\n"
    "ON CONFLICT (account_id) DO UPDATE SET epoch = f.epoch + 1 RETURNING epoch",
    1};

/* cb(status, epoch, err, ud): WY_OK + the new epoch, or an error with err what PostgreSQL
 * said (or NULL). */
typedef void (*epoch_cb)(int status, uint64_t epoch, const char *err, void *ud);

typedef struct {
    epoch_cb cb;
    void *ud;
} epoch_req_t;

static void epoch_done(int status, const PGresult *res, const char *err, void *ud)
{
    epoch_req_t *q = ud;
    int64_t epoch = 0;
    if (status == WY_OK && (PQntuples(res) != 1 || (epoch = wy_pg_int64(res, 0, "epoch")) <= 0)) {
        status = WY_EIO;
        err = "unexpected reply to the fence epoch";
    }
    q->cb(status, (uint64_t)epoch, err, q->ud);
    wy_free(q);
}

/* Starts the epoch increment; WY_OK (cb will run) or why it could not start. */
static int next_epoch(lobby_t *lb, const char *account, epoch_cb cb, void *ud)
{
    wy_pg_t *pg = wy_daemon_pg(lb->d);
    if (!pg)
        return WY_EUNAVAIL;
    epoch_req_t *q = wy_calloc(1, sizeof *q);
    q->cb = cb;
    q->ud = ud;
    const char *params[] = {account};
    int rc = wy_pg_exec(pg, &EPOCH_SQL, params, epoch_done, q);
    if (rc != WY_OK)
        wy_free(q);
    return rc;
}

/* ---------------------------------------------------------------- claim */

typedef struct {
    lobby_conn_t *c;
    lobby_claim_cb cb;
    uint64_t epoch;
} claim_req_t;

/* Ends a claim: runs cb once, drops the claim's reference to c. */
static void claim_end(claim_req_t *q, int status, const lobby_claim_t *r, const char *err)
{
    lobby_conn_t *c = q->c;
    q->cb(c, status, r, err);
    wy_free(q);
    lobby_conn_unref(c);
}

static void claim_done(int status, redisReply *reply, void *ud)
{
    claim_req_t *q = ud;
    lobby_conn_t *c = q->c;
    bool ok = status == WY_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3 &&
              reply->element[0]->type == REDIS_REPLY_INTEGER;
    if (!ok) {
        claim_end(q, status == WY_OK ? WY_EIO : status, NULL,
                  status == WY_EIO && reply && reply->str ? reply->str
                  : status == WY_OK                       ? "unexpected reply to the claim"
                                                          : wy_strerror(status));
        return;
    }
    lobby_claim_t r = {
        .claimed = reply->element[0]->integer == 1,
        .superseded = reply->element[0]->integer == 2,
        .revoked = reply->element[0]->integer == 3,
        .unknown = reply->element[0]->integer == 4,
        .prev_sid = reply->element[1]->str ? reply->element[1]->str : "",
        .prev_instance = reply->element[2]->str ? reply->element[2]->str : "",
    };
    if (r.claimed) {
        c->epoch = q->epoch;
        c->live = true;
    }
    claim_end(q, WY_OK, &r, NULL);
}

static void claim_epoch(int status, uint64_t epoch, const char *err, void *ud)
{
    claim_req_t *q = ud;
    lobby_conn_t *c = q->c;
    lobby_t *lb = c->lb;
    if (status != WY_OK) {
        claim_end(q, status, NULL, err ? err : wy_strerror(status));
        return;
    }
    if (!c->ws) { /* the client left meanwhile: nothing to claim */
        claim_end(q, WY_ECANCELED, NULL, "client gone");
        return;
    }
    q->epoch = epoch;
    char k1[LOBBY_ID_MAX + 16], k2[LOBBY_ID_MAX + 16], k3[LOBBY_SID_LEN + 8];
    char k4[LOBBY_ID_MAX + 24], k5[LOBBY_ID_MAX + 24];
    snprintf(k1, sizeof k1, "sess:acct:%s", c->account);
    snprintf(k2, sizeof k2, "sess:epoch:%s", c->account);
    snprintf(k3, sizeof k3, "sess:%s", c->sid);
    snprintf(k4, sizeof k4, LOBBY_AUTH_REVOKED_SID "%s", c->token_sid);
    snprintf(k5, sizeof k5, LOBBY_AUTH_REVOKED_ACCT "%s", c->account);
    char now[24], ttl[24], fence[24], ep[24], iat[24];
    fmt_u64(now, sizeof now, c->created_wall_ms);
    fmt_u64(ttl, sizeof ttl, (uint64_t)lb->cfg->session_ttl_ms);
    fmt_u64(fence, sizeof fence, (uint64_t)lb->cfg->fence_ms);
    fmt_u64(ep, sizeof ep, epoch);
    fmt_u64(iat, sizeof iat, c->token_iat > 0 ? (uint64_t)c->token_iat * 1000 : 0);
    const char *check = c->revocation_asked ? "0" : lb->auth ? "1" : "2";
    const char *keys[] = {k1, k2, k3, k4, k5, LOBBY_AUTH_REVOKED_LOADED};
    const char *args[] = {
        c->sid,  c->account,   lb->instance, c->peer, now,   ttl, lb->reject_new ? "1" : "0",
        c->nick, c->nick_norm, fence,        ep,      check, iat};
    int rc = eval(lb, SCRIPT_CLAIM, 6, keys, 13, args, claim_done, q);
    if (rc != WY_OK)
        claim_end(q, rc, NULL, wy_strerror(rc));
}

int lobby_session_claim(lobby_conn_t *c, lobby_claim_cb cb)
{
    claim_req_t *q = wy_calloc(1, sizeof *q);
    q->c = c;
    q->cb = cb;
    int rc = next_epoch(c->lb, c->account, claim_epoch, q);
    if (rc != WY_OK) {
        wy_free(q);
        return rc;
    }
    lobby_conn_ref(c);
    return WY_OK;
}

/* ---------------------------------------------------------------- writes, release */

static void write_done(int status, redisReply *reply, void *ud)
{
    lobby_conn_t *c = ud;
    c->writing = false;
    if (status == WY_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 2) {
        /* The account's epoch was gone (Redis lost its data) or lower: this live session
         * wrote itself back instead of being taken for a stale one. */
        wy_metric_inc(c->lb->m_reasserted);
        wy_log_info("session re-asserted", "session", c->sid, "account", c->account, NULL);
    } else if (status == WY_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        /* The fence: another login took this account; this session must go, even if the
         * kick over Kafka never reached us. */
        wy_metric_inc(c->lb->m_fenced);
        if (c->ws && c->state == LOBBY_ST_READY) {
            wy_log_info("session fenced", "session", c->sid, "account", c->account, NULL);
            lobby_conn_kick(c, "logged in elsewhere", LOBBY_CLOSE_KICKED);
        }
    } else if (status != WY_OK && status != WY_ECANCELED) {
        wy_log_warn("session write failed", "session", c->sid, "error", wy_strerror(status), NULL);
    }
    lobby_conn_unref(c);
}

void lobby_session_write_nick(lobby_conn_t *c, const char *old_norm)
{
    lobby_t *lb = c->lb;
    char k1[LOBBY_SID_LEN + 8], k2[LOBBY_ID_MAX + 16], k3[LOBBY_ID_MAX + 16];
    snprintf(k1, sizeof k1, "sess:%s", c->sid);
    snprintf(k2, sizeof k2, "sess:acct:%s", c->account);
    snprintf(k3, sizeof k3, "sess:epoch:%s", c->account);
    char epoch[24], ttl[24], created[24], seen[24];
    fmt_u64(epoch, sizeof epoch, c->epoch);
    fmt_u64(ttl, sizeof ttl, (uint64_t)lb->cfg->session_ttl_ms);
    fmt_u64(created, sizeof created, c->created_wall_ms);
    fmt_u64(seen, sizeof seen, wy_wall_ms());
    const char *keys[] = {k1, k2, k3};
    const char *args[] = {c->sid,           epoch,        ttl,      c->account,
                          lb->instance,     c->peer,      created,  seen,
                          c->session_state, c->nick_norm, old_norm, c->nick};
    c->last_write_ms = wy_now_ms();
    if (eval(lb, SCRIPT_WRITE, 3, keys, 12, args, write_done, c) == WY_OK) {
        c->writing = true;
        lobby_conn_ref(c);
    }
}

void lobby_session_write(lobby_conn_t *c)
{
    lobby_session_write_nick(c, "");
}

static void release_done(int status, redisReply *reply, void *ud)
{
    WY_UNUSED(reply);
    lobby_conn_t *c = ud;
    if (status != WY_OK && status != WY_ECANCELED)
        wy_log_warn("session release failed (it expires by TTL)", "session", c->sid, "error",
                    wy_strerror(status), NULL);
    lobby_conn_unref(c);
}

void lobby_session_release(lobby_conn_t *c)
{
    lobby_t *lb = c->lb;
    if (!c->live)
        return;
    c->live = false;
    char k1[LOBBY_SID_LEN + 8], k2[LOBBY_ID_MAX + 16], k3[LOBBY_ID_MAX + 16], epoch[24];
    snprintf(k1, sizeof k1, "sess:%s", c->sid);
    snprintf(k2, sizeof k2, "sess:acct:%s", c->account);
    snprintf(k3, sizeof k3, "sess:epoch:%s", c->account);
    fmt_u64(epoch, sizeof epoch, c->epoch);
    const char *keys[] = {k1, k2, k3};
    const char *args[] = {c->sid, epoch};
    if (eval(lb, SCRIPT_RELEASE, 3, keys, 2, args, release_done, c) == WY_OK)
        lobby_conn_ref(c);
}

/* ---------------------------------------------------------------- lookups */

static int64_t reply_int(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

static const char *reply_str(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? r->str : "";
}

/* Fills s from one lookup entry; false when it is empty (no live session). */
static bool parse_entry(const redisReply *e, lobby_sess_info_t *s)
{
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 9)
        return false;
    s->sid = reply_str(e->element[0]);
    s->account = reply_str(e->element[1]);
    s->instance = reply_str(e->element[2]);
    s->conn = reply_str(e->element[3]);
    s->created = reply_int(e->element[4]);
    s->seen = reply_int(e->element[5]);
    s->state = reply_str(e->element[6]);
    s->epoch = (uint64_t)reply_int(e->element[7]);
    s->nick = reply_str(e->element[8]);
    return true;
}

typedef struct {
    lobby_t *lb;
    lobby_lookup_many_cb cb;
    void *ud;
    size_t n;
} lookup_many_req_t;

static void lookup_many_done(int status, redisReply *reply, void *ud)
{
    lookup_many_req_t *q = ud;
    if (status != WY_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements != q->n) {
        q->cb(status == WY_OK ? WY_EIO : status, 0, NULL, q->ud);
    } else {
        lobby_sess_info_t *s = wy_calloc(q->n ? q->n : 1, sizeof *s);
        for (size_t i = 0; i < q->n; i++)
            if (!parse_entry(reply->element[i], &s[i]))
                memset(&s[i], 0, sizeof s[i]);
        q->cb(WY_OK, q->n, s, q->ud);
        wy_free(s);
    }
    lobby_unref(q->lb);
    wy_free(q);
}

int lobby_session_lookup_many(lobby_t *lb, size_t n, const char *const *keys,
                              lobby_lookup_many_cb cb, void *ud)
{
    lookup_many_req_t *q = wy_calloc(1, sizeof *q);
    q->lb = lb;
    q->cb = cb;
    q->ud = ud;
    q->n = n;
    int rc = eval(lb, SCRIPT_LOOKUP, n, keys, 0, NULL, lookup_many_done, q);
    if (rc != WY_OK) {
        wy_free(q);
        return rc;
    }
    lobby_ref(lb);
    return WY_OK;
}

typedef struct {
    lobby_t *lb;
    lobby_lookup_cb cb;
    void *ud;
    char account[LOBBY_ID_MAX + 1];
    char reason[LOBBY_REASON_MAX + 1];
} lookup_req_t;

static lookup_req_t *lookup_req_new(lobby_t *lb, lobby_lookup_cb cb, void *ud)
{
    lookup_req_t *q = wy_calloc(1, sizeof *q);
    q->lb = lb;
    q->cb = cb;
    q->ud = ud;
    lobby_ref(lb);
    return q;
}

static void lookup_req_free(lookup_req_t *q)
{
    lobby_unref(q->lb);
    wy_free(q);
}

static void lookup_done(int status, redisReply *reply, void *ud)
{
    lookup_req_t *q = ud;
    lobby_sess_info_t s;
    memset(&s, 0, sizeof s);
    if (status != WY_OK) {
        q->cb(status, NULL, q->ud);
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
               parse_entry(reply->element[0], &s)) {
        q->cb(WY_OK, &s, q->ud);
    } else {
        q->cb(WY_ENOTFOUND, NULL, q->ud);
    }
    lookup_req_free(q);
}

int lobby_session_lookup(lobby_t *lb, const char *account, lobby_lookup_cb cb, void *ud)
{
    if (!*account || strlen(account) > LOBBY_ID_MAX)
        return WY_EINVAL;
    lookup_req_t *q = lookup_req_new(lb, cb, ud);
    char k[LOBBY_ID_MAX + 16];
    snprintf(k, sizeof k, "sess:acct:%s", account);
    const char *keys[] = {k};
    int rc = eval(lb, SCRIPT_LOOKUP, 1, keys, 0, NULL, lookup_done, q);
    if (rc != WY_OK)
        lookup_req_free(q);
    return rc;
}

static void fence_done(int status, redisReply *reply, void *ud)
{
    lookup_req_t *q = ud;
    lobby_sess_info_t s;
    memset(&s, 0, sizeof s);
    if (status != WY_OK) {
        q->cb(status, NULL, q->ud);
    } else if (parse_entry(reply, &s)) {
        lobby_session_kick(q->lb, s.instance, s.sid, q->account, q->reason);
        q->cb(WY_OK, &s, q->ud);
    } else {
        q->cb(WY_ENOTFOUND, NULL, q->ud);
    }
    lookup_req_free(q);
}

static void fence_epoch(int status, uint64_t epoch, const char *err, void *ud)
{
    lookup_req_t *q = ud;
    if (status != WY_OK) {
        wy_log_warn("fence epoch failed", "account", q->account, "error",
                    err ? err : wy_strerror(status), NULL);
        q->cb(status, NULL, q->ud);
        lookup_req_free(q);
        return;
    }
    char k1[LOBBY_ID_MAX + 16], k2[LOBBY_ID_MAX + 16], ep[24];
    snprintf(k1, sizeof k1, "sess:acct:%s", q->account);
    snprintf(k2, sizeof k2, "sess:epoch:%s", q->account);
    fmt_u64(ep, sizeof ep, epoch);
    const char *keys[] = {k1, k2};
    const char *args[] = {ep};
    int rc = eval(q->lb, SCRIPT_FENCE, 2, keys, 1, args, fence_done, q);
    if (rc != WY_OK) {
        q->cb(rc, NULL, q->ud);
        lookup_req_free(q);
    }
}

int lobby_session_fence(lobby_t *lb, const char *account, const char *reason, lobby_lookup_cb cb,
                        void *ud)
{
    if (!*account || strlen(account) > LOBBY_ID_MAX)
        return WY_EINVAL;
    lookup_req_t *q = lookup_req_new(lb, cb, ud);
    snprintf(q->account, sizeof q->account, "%s", account);
    snprintf(q->reason, sizeof q->reason, "%s", *reason ? reason : "kicked by an operator");
    int rc = next_epoch(lb, account, fence_epoch, q);
    if (rc != WY_OK)
        lookup_req_free(q);
    return rc;
}

/* ---------------------------------------------------------------- kicks, liveness */

static void publish_kick(lobby_t *lb, const char *instance, const char *sid, const char *account,
                         const char *reason)
{
    Wyvern__Lobby__SessionKick k = WYVERN__LOBBY__SESSION_KICK__INIT;
    k.target_instance = (char *)instance;
    k.session_id = (char *)sid;
    k.account_id = (char *)account;
    k.reason = (char *)reason;
    size_t n = wyvern__lobby__session_kick__get_packed_size(&k);
    uint8_t *buf = wy_malloc(n ? n : 1);
    wyvern__lobby__session_kick__pack(&k, buf);
    /* The kick matters until the target is surely closed anyway: fenced at its next
     * heartbeat write, or idle. Its loss is counted by the relay. */
    uint64_t ttl = (uint64_t)(lb->cfg->idle_ms + lb->cfg->heartbeat_ms);
    (void)lobby_relay_publish(lb, "wy.session", account, "session.kick", buf, n, ttl, NULL);
    wy_free(buf);
}

void lobby_session_kick(lobby_t *lb, const char *instance, const char *sid, const char *account,
                        const char *reason)
{
    if (strcmp(instance, lb->instance) == 0)
        lobby_session_kick_local(lb, sid, reason, LOBBY_CLOSE_KICKED);
    else
        publish_kick(lb, instance, sid, account, reason);
}

static void instance_alive_done(int status, redisReply *reply, void *ud)
{
    WY_UNUSED(status);
    WY_UNUSED(reply);
    WY_UNUSED(ud);
}

void lobby_instance_alive(lobby_t *lb)
{
    /* A session whose instance has no such key belongs to a dead instance and may be
     * taken over at once even under reject-new. */
    uint64_t now = wy_now_ms();
    if (now - lb->last_alive_ms < (uint64_t)lb->cfg->fence_ms / 3)
        return;
    char k[256], ttl[24];
    snprintf(k, sizeof k, "sess:inst:%s", lb->instance);
    fmt_u64(ttl, sizeof ttl, (uint64_t)lb->cfg->fence_ms);
    const char *argv[] = {"SET", k, "1", "PX", ttl};
    if (redis_argv(lb, instance_alive_done, NULL, 5, argv) == WY_OK)
        lb->last_alive_ms = now;
}
