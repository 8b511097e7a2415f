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

/* Redis key formats (docs/keys.md; a test compares the RKEY_ macros with it). Everything of
 * one account lives in the hash slot of its tag {<account>}, so each script below touches
 * one slot and runs unchanged on Redis Cluster. The nickname and instance keys have their
 * own slots and are never touched by a script: one single-key command each. */
#define RKEY_SESS_ACCT  "sess:{%s}:acct"  /* account -> its live session id */
#define RKEY_SESS_EPOCH "sess:{%s}:epoch" /* account -> highest fence epoch seen */
#define RKEY_SESS_REC   "sess:{%s}:s:%s"  /* account, sid -> the session hash */
#define RKEY_SESS_NICK  "sess:nick:%s"    /* normalized nickname -> account (presence index) */
#define RKEY_SESS_INST  "sess:inst:%s"    /* instance liveness (TTL fence_ms) */

/* ---------------------------------------------------------------- Redis scripts */

/* Claim: atomically find the account's live session, refuse (reject-new, owner alive) or
 * fence it (delete its record), then write the new session and its account index with the
 * TTL under the new epoch (from PostgreSQL, above every epoch issued before). Returns
 * {1, prev_sid, prev_instance, epoch}, {5, sid, instance} (reject-new and a live-looking
 * owner: the caller checks the owner instance's liveness key, one read in another slot, and
 * claims again naming the session found dead in ARGV[10]), or {2, '', ''} when a newer claim
 * of the account already holds a higher epoch (this one lost the race).
 * The access token's revocation is checked before, by claim_revocation: auth's keys live in
 * the {revoked} slot, not the account's (docs/keys.md).
 * KEYS: sess:{a}:acct, sess:{a}:epoch, sess:{a}:s:<sid>
 * ARGV: sid, account, instance, conn, now_ms, ttl_ms, reject_new(0|1), nick, nick_norm,
 *       dead_sid (a session whose instance is dead: taken over even under reject-new), epoch,
 *       record key prefix (sess:{a}:s:) */
static const char CLAIM_LUA[] =
    "local cur = tonumber(redis.call('GET', KEYS[2]))\n"
    "local epoch = tonumber(ARGV[11])\n"
    "if cur and cur >= epoch then return {2, '', ''} end\n"
    "local prev = redis.call('GET', KEYS[1])\n"
    "local pinst = ''\n"
    "if prev then\n"
    "  local h = redis.call('HMGET', ARGV[12]..prev, 'instance')\n"
    "  if not h[1] then prev = false else\n"
    "    pinst = h[1]\n"
    "    if ARGV[7] == '1' and ARGV[10] ~= prev then return {5, prev, pinst} end\n"
    "    redis.call('DEL', ARGV[12]..prev)\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[2], ARGV[11], 'PX', " EPOCH_KEEP_MS ")\n"
    "redis.call('HSET', KEYS[3], 'account', ARGV[2], 'instance', ARGV[3], 'conn', ARGV[4],\n"
    "  'created', ARGV[5], 'seen', ARGV[5], 'state', 'online', 'epoch', ARGV[11], 'nick', "
    "ARGV[9],\n"
    "  'display', ARGV[8])\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[6])\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[6])\n"
    "return {1, prev or '', pinst, epoch}\n";

/* Write: only while no higher epoch holds the account (else 0: the session was taken over
 * elsewhere and this instance must drop it). Refreshes the record, the TTLs and the account
 * index. When the account's epoch is missing (Redis lost its data) or lower than ours (an
 * older session re-asserted itself first), the session re-asserts itself: the epoch is set
 * to its own and the record and index rewritten; returns 2 then, else 1.
 * KEYS: sess:{a}:s:<sid>, sess:{a}:acct, sess:{a}:epoch
 * ARGV: sid, epoch, ttl_ms, account, instance, conn, created, seen, state, nick_norm,
 *       (unused), display */
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
    "return r\n";

/* Release (logout, disconnect): delete the record and the account index if it still names
 * it, unless a higher epoch holds the account (a missing epoch: Redis lost its data, the
 * record may be back from a re-assertion). KEYS: sess:{a}:s:<sid>, sess:{a}:acct,
 * sess:{a}:epoch; ARGV: sid, epoch */
static const char RELEASE_LUA[] =
    "local cur = tonumber(redis.call('GET', KEYS[3]))\n"
    "if cur and cur > tonumber(ARGV[2]) then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end\n"
    "return 1\n";

/* Lookup of an account's live session: {} or {sid, account, instance, conn, created, seen,
 * state, epoch, display}; a stale index entry (its session record expired) is deleted. With
 * ARGV[2] a normalized nickname, a session with another nickname is not it (a presence query
 * by nickname reached the account through the sess:nick:<n> index, which may be stale).
 * KEYS: sess:{a}:acct; ARGV: record key prefix (sess:{a}:s:), nick_norm or '' */
static const char LOOKUP_LUA[] =
    "local sid = redis.call('GET', KEYS[1])\n"
    "if not sid then return {} end\n"
    "local h = redis.call('HMGET', ARGV[1]..sid, 'account', 'instance', 'conn', 'created',\n"
    "  'seen', 'state', 'epoch', 'display', 'nick')\n"
    "if not h[1] then redis.call('DEL', KEYS[1]) return {} end\n"
    "if ARGV[2] ~= '' and h[9] ~= ARGV[2] then return {} end\n"
    "return {sid, h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8] or ''}\n";

/* Fence (Lobby.Kick): raise the epoch to a new one (from PostgreSQL) and delete the live
 * session of the account. KEYS: sess:{a}:acct, sess:{a}:epoch; ARGV: epoch, record key
 * prefix (sess:{a}:s:). Returns {} or the lookup fields. */
static const char FENCE_LUA[] =
    "local cur = tonumber(redis.call('GET', KEYS[2]))\n"
    "if not cur or cur < tonumber(ARGV[1]) then\n"
    "  redis.call('SET', KEYS[2], ARGV[1], 'PX', " EPOCH_KEEP_MS ")\n"
    "end\n"
    "local sid = redis.call('GET', KEYS[1])\n"
    "if not sid then return {} end\n"
    "local h = redis.call('HMGET', ARGV[2]..sid, 'account', 'instance', 'conn', 'created',\n"
    "  'seen', 'state', 'epoch', 'display')\n"
    "redis.call('DEL', KEYS[1])\n"
    "if not h[1] then return {} end\n"
    "redis.call('DEL', ARGV[2]..sid)\n"
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
    wy_list_init(&lb->epoch_wait);
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

/* Longest key of an account: RKEY_SESS_REC with a bounded account and sid. */
#define SESS_KEY_MAX (LOBBY_ID_MAX + LOBBY_SID_LEN + 16)

/* The record key prefix of an account's sessions (RKEY_SESS_REC without the sid). */
static void rec_prefix(char *out, size_t cap, const char *account)
{
    snprintf(out, cap, RKEY_SESS_REC, account, "");
}

static void ignore_reply(int status, redisReply *reply, void *ud)
{
    WY_UNUSED(status);
    WY_UNUSED(reply);
    WY_UNUSED(ud);
}

/* Points the nickname's presence index at the account (one single-key command in the nick's
 * own slot; a stale entry is harmless: lookups check the session's nickname). */
static void nick_index(lobby_t *lb, const char *nick_norm, const char *account)
{
    if (!*nick_norm)
        return;
    char k[LOBBY_NICK_MAX * 4 + 16], ttl[24];
    snprintf(k, sizeof k, RKEY_SESS_NICK, nick_norm);
    fmt_u64(ttl, sizeof ttl, (uint64_t)lb->cfg->session_ttl_ms);
    const char *argv[] = {"SET", k, account, "PX", ttl};
    (void)redis_argv(lb, ignore_reply, NULL, 5, argv);
}

/* ---------------------------------------------------------------- fence epochs */

/* The next epoch of an account: a counter row in PostgreSQL, so epochs only grow even when
 * Redis loses everything (README "Fence epochs"). -> 1 row: epoch */
static const wy_pg_stmt_t EPOCH_SQL = {
    "lobby_fence_next",
    "INSERT INTO lobby.fence_epochs AS f (account_id, epoch) VALUES ($1, 1)\n"
    "ON CONFLICT (account_id) DO UPDATE SET epoch = f.epoch + 1 RETURNING epoch",
    1};

/* The epochs of a batch of hellos and their accounts' nicknames in one statement and one
 * commit (group commit: EPOCH_BATCH_MAX accounts, each once). The rows are locked in account
 * order, so two batches in flight never deadlock. $1: text[] of accounts -> 1 row per account:
 * account_id, epoch, nickname, norm (NULL without a nickname) */
static const wy_pg_stmt_t EPOCH_NICK_SQL = {
    "lobby_fence_next_nick_batch",
    "WITH e AS (\n"
    "  INSERT INTO lobby.fence_epochs AS f (account_id, epoch)\n"
    "  SELECT a, 1 FROM unnest($1::text[]) a ORDER BY a\n"
    "  ON CONFLICT (account_id) DO UPDATE SET epoch = f.epoch + 1\n"
    "  RETURNING f.account_id, f.epoch)\n"
    "SELECT e.account_id, e.epoch, n.nickname, n.norm FROM e\n"
    "LEFT JOIN lobby.nicknames n ON n.account_id = e.account_id",
    1};

/* Hellos' epoch statements: while EPOCH_BATCHES_MAX are in flight, the next hellos wait and go
 * together in the next one; alone (no load) a hello's goes at once. */
#define EPOCH_BATCH_MAX   64
#define EPOCH_BATCHES_MAX 2

/* A hello's nickname from the replica (WY_PG_REPLICA_URL), read while the epoch statement
 * runs on the primary: the nickname tolerates a moment of staleness, the epoch does not.
 * -> 0 rows | 1 row: nickname, norm */
static const wy_pg_stmt_t NICK_REPLICA_SQL = {
    "lobby_nick_replica", "SELECT nickname, norm FROM lobby.nicknames WHERE account_id = $1", 1};

/* cb(status, epoch, nick, norm, err, ud): WY_OK + the new epoch (with the nickname asked for:
 * nick and norm, NULL when the account has none; valid during cb), or an error with err what
 * PostgreSQL said (or NULL). */
typedef void (*epoch_cb)(int status, uint64_t epoch, const char *nick, const char *norm,
                         const char *err, void *ud);

typedef struct {
    wy_list_t node; /* in lb->epoch_wait until its batch goes */
    lobby_t *lb;
    epoch_cb cb;
    void *ud;
    char account[LOBBY_ID_MAX + 1];
} epoch_req_t;

static void epoch_done(int status, const PGresult *res, const char *err, void *ud)
{
    epoch_req_t *q = ud;
    int64_t epoch = 0;
    if (status == WY_OK && (PQntuples(res) != 1 || (epoch = wy_pg_int64(res, 0, "epoch")) <= 0)) {
        status = WY_EIO;
        err = "unexpected reply to the fence epoch";
    }
    q->cb(status, (uint64_t)epoch, NULL, NULL, err, q->ud);
    wy_free(q);
}

typedef struct {
    lobby_t *lb;
    size_t n;
    epoch_req_t *reqs[EPOCH_BATCH_MAX];
} epoch_batch_t;

static void epoch_batch_send(lobby_t *lb, bool fail_now);

/* Each hello of the batch gets its account's row; then the next batch goes. */
static void epoch_batch_done(int status, const PGresult *res, const char *err, void *ud)
{
    epoch_batch_t *b = ud;
    lobby_t *lb = b->lb;
    int rows = status == WY_OK ? PQntuples(res) : 0;
    for (size_t i = 0; i < b->n; i++) {
        epoch_req_t *q = b->reqs[i];
        int row = -1;
        for (int r = 0; r < rows && row < 0; r++)
            if (strcmp(wy_pg_text(res, r, "account_id"), q->account) == 0)
                row = r;
        int64_t epoch = row >= 0 ? wy_pg_int64(res, row, "epoch") : 0;
        if (status != WY_OK)
            q->cb(status, 0, NULL, NULL, err, q->ud);
        else if (epoch <= 0)
            q->cb(WY_EIO, 0, NULL, NULL, "unexpected reply to the fence epoch", q->ud);
        else if (wy_pg_isnull(res, row, "nickname"))
            q->cb(WY_OK, (uint64_t)epoch, NULL, NULL, NULL, q->ud);
        else
            q->cb(WY_OK, (uint64_t)epoch, wy_pg_text(res, row, "nickname"),
                  wy_pg_text(res, row, "norm"), NULL, q->ud);
        wy_free(q);
    }
    wy_free(b);
    lb->epoch_batches--;
    epoch_batch_send(lb, true);
    lobby_unref(lb);
}

/* Appends s to a PostgreSQL array literal as one quoted element. */
static void arr_add(wy_buf_t *b, const char *s)
{
    wy_buf_puts(b, b->len > 1 ? ",\"" : "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '\\' || *p == '"')
            wy_buf_putc(b, '\\');
        wy_buf_putc(b, *p);
    }
    wy_buf_putc(b, '"');
}

/* Sends the waiting hellos' epochs as one statement if fewer than EPOCH_BATCHES_MAX are in
 * flight; an account already in the batch waits for the next one (one row per account). When
 * the pool refuses the statement, the batch's hellos get the error now if fail_now (a
 * callback of its own), else they wait for the next try (lobby_store_tick), so next_epoch
 * never runs a callback before it returns. */
static void epoch_batch_send(lobby_t *lb, bool fail_now)
{
    if (lb->epoch_nwait == 0 || lb->epoch_batches >= EPOCH_BATCHES_MAX)
        return;
    wy_pg_t *pg = wy_daemon_pg(lb->d);
    if (!pg && !fail_now)
        return;
    epoch_batch_t *b = wy_calloc(1, sizeof *b);
    b->lb = lb;
    wy_buf_t arr = WY_BUF_INIT;
    wy_buf_putc(&arr, '{');
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &lb->epoch_wait)
    {
        if (b->n == EPOCH_BATCH_MAX)
            break;
        epoch_req_t *q = wy_list_entry(pos, epoch_req_t, node);
        bool dup = false;
        for (size_t i = 0; i < b->n && !dup; i++)
            dup = strcmp(b->reqs[i]->account, q->account) == 0;
        if (dup)
            continue;
        wy_list_remove(&q->node);
        lb->epoch_nwait--;
        b->reqs[b->n++] = q;
        arr_add(&arr, q->account);
    }
    wy_buf_putc(&arr, '}');
    const char *params[] = {arr.data};
    int rc = pg ? wy_pg_exec(pg, &EPOCH_NICK_SQL, params, epoch_batch_done, b) : WY_EUNAVAIL;
    wy_buf_free(&arr);
    lb->epoch_batches++;
    lobby_ref(lb);
    if (rc == WY_OK)
        return;
    if (fail_now) {
        epoch_batch_done(rc, NULL, wy_strerror(rc), b);
        return;
    }
    for (size_t i = b->n; i-- > 0;) { /* back to the front, in their order */
        wy_list_push_front(&lb->epoch_wait, &b->reqs[i]->node);
        lb->epoch_nwait++;
    }
    wy_free(b);
    lb->epoch_batches--;
    lobby_unref(lb);
}

void lobby_store_tick(lobby_t *lb)
{
    epoch_batch_send(lb, true);
}

/* Starts the epoch increment (with the nickname: a hello's, batched with others' by
 * epoch_batch_send); WY_OK (cb will run) or why it could not start. */
static int next_epoch(lobby_t *lb, const char *account, bool with_nick, epoch_cb cb, void *ud)
{
    wy_pg_t *pg = wy_daemon_pg(lb->d);
    if (!pg)
        return WY_EUNAVAIL;
    epoch_req_t *q = wy_calloc(1, sizeof *q);
    q->lb = lb;
    q->cb = cb;
    q->ud = ud;
    if (with_nick) {
        if (lb->epoch_nwait >= LOBBY_EPOCH_WAIT_MAX) {
            wy_free(q);
            return WY_EBUSY;
        }
        snprintf(q->account, sizeof q->account, "%s", account);
        wy_list_push_back(&lb->epoch_wait, &q->node);
        lb->epoch_nwait++;
        epoch_batch_send(lb, false);
        return WY_OK;
    }
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
    bool rechecked;                  /* the owner's liveness was read once already */
    char prev_sid[LOBBY_ID_MAX + 1]; /* the live-looking owner of a reject-new claim */
    char prev_inst[256];
    /* The epoch statement and the revocation read run at once; the claim script waits for
     * both (claim_step). */
    int pending;
    int ep_status, rev_status; /* WY_OK or why the step failed (err: its message) */
    char ep_err[160];
    const char *rev_err; /* static */
    const char *revoked; /* static: why the token is revoked, or NULL */
    bool unknown;        /* auth's revocation state incomplete: ask auth */
} claim_req_t;

/* Ends a claim: runs cb once, drops the claim's reference to c. */
static void claim_end(claim_req_t *q, int status, const lobby_claim_t *r, const char *err)
{
    lobby_conn_t *c = q->c;
    q->cb(c, status, r, err);
    wy_free(q);
    lobby_conn_unref(c);
}

static int claim_run(claim_req_t *q, const char *dead_sid);

/* Reject-new found a live-looking owner: its instance's liveness key decides. */
static void claim_owner_checked(int status, redisReply *reply, void *ud)
{
    claim_req_t *q = ud;
    if (status != WY_OK || reply->type != REDIS_REPLY_INTEGER) {
        claim_end(q, status == WY_OK ? WY_EIO : status, NULL,
                  status == WY_OK ? "unexpected reply to the liveness check" : wy_strerror(status));
        return;
    }
    if (reply->integer == 1 || !q->c->ws) { /* the owner lives (or the client left) */
        lobby_claim_t r = {.prev_sid = q->prev_sid, .prev_instance = q->prev_inst};
        claim_end(q, q->c->ws ? WY_OK : WY_ECANCELED, q->c->ws ? &r : NULL, "client gone");
        return;
    }
    int rc = claim_run(q, q->prev_sid);
    if (rc != WY_OK)
        claim_end(q, rc, NULL, wy_strerror(rc));
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
    long long code = reply->element[0]->integer;
    lobby_claim_t r = {
        .claimed = code == 1,
        .superseded = code == 2,
        .prev_sid = reply->element[1]->str ? reply->element[1]->str : "",
        .prev_instance = reply->element[2]->str ? reply->element[2]->str : "",
    };
    if (code == 5 && !q->rechecked && strlen(r.prev_sid) < sizeof q->prev_sid &&
        strlen(r.prev_instance) < sizeof q->prev_inst) {
        q->rechecked = true;
        snprintf(q->prev_sid, sizeof q->prev_sid, "%s", r.prev_sid);
        snprintf(q->prev_inst, sizeof q->prev_inst, "%s", r.prev_instance);
        char k[sizeof q->prev_inst + 16];
        snprintf(k, sizeof k, RKEY_SESS_INST, q->prev_inst);
        const char *argv[] = {"EXISTS", k};
        int rc = redis_argv(c->lb, claim_owner_checked, q, 2, argv);
        if (rc != WY_OK)
            claim_end(q, rc, NULL, wy_strerror(rc));
        return;
    }
    /* code 5 after the recheck: yet another owner appeared meanwhile; refuse. */
    if (r.claimed) {
        c->epoch = q->epoch;
        c->live = true;
        nick_index(c->lb, c->nick_norm, c->account);
    }
    claim_end(q, WY_OK, &r, NULL);
}

static int claim_run(claim_req_t *q, const char *dead_sid)
{
    lobby_conn_t *c = q->c;
    lobby_t *lb = c->lb;
    char k1[SESS_KEY_MAX], k2[SESS_KEY_MAX], k3[SESS_KEY_MAX], pfx[SESS_KEY_MAX];
    snprintf(k1, sizeof k1, RKEY_SESS_ACCT, c->account);
    snprintf(k2, sizeof k2, RKEY_SESS_EPOCH, c->account);
    snprintf(k3, sizeof k3, RKEY_SESS_REC, c->account, c->sid);
    rec_prefix(pfx, sizeof pfx, c->account);
    char now[24], ttl[24], ep[24];
    fmt_u64(now, sizeof now, c->created_wall_ms);
    fmt_u64(ttl, sizeof ttl, (uint64_t)lb->cfg->session_ttl_ms);
    fmt_u64(ep, sizeof ep, q->epoch);
    const char *keys[] = {k1, k2, k3};
    const char *args[] = {
        c->sid,  c->account,   lb->instance, c->peer, now, ttl, lb->reject_new ? "1" : "0",
        c->nick, c->nick_norm, dead_sid,     ep,      pfx};
    return eval(lb, SCRIPT_CLAIM, 3, keys, 12, args, claim_done, q);
}

/* The access token's revocation in auth's keys (services/auth/README.md "Revocation"), one
 * MGET in the {revoked} slot before the claim: its session revoked, or its account
 * revoked/banned at or after the token's iat -> revoked (prev_sid: why); with check '1' auth's
 * marker missing (Redis lost its data and auth is rebuilding it: "not revoked" cannot be
 * trusted, ask auth) -> unknown. check '2': the keys without the marker (no auth to ask); '0'
 * (auth was asked already): not read. A revocation landing between this read and the claim
 * reaches the session as account.session_revoked on wy.account, like one after the claim. */
/* Both steps answered: the claim script runs only now, after the revocation read said the
 * token stands and with the epoch taken. (An epoch taken for a claim that does not run is
 * harmless: epochs only have to grow.) */
static void claim_step(claim_req_t *q)
{
    if (--q->pending > 0)
        return;
    lobby_conn_t *c = q->c;
    if (q->ep_status != WY_OK) {
        claim_end(q, q->ep_status, NULL, q->ep_err);
        return;
    }
    if (q->rev_status != WY_OK) {
        claim_end(q, q->rev_status, NULL, q->rev_err);
        return;
    }
    if (q->revoked || q->unknown) {
        lobby_claim_t r = {.revoked = q->revoked != NULL,
                           .unknown = q->unknown,
                           .prev_sid = q->revoked ? q->revoked : "",
                           .prev_instance = ""};
        claim_end(q, WY_OK, &r, NULL);
        return;
    }
    if (!c->ws) { /* the client left meanwhile: nothing to claim */
        claim_end(q, WY_ECANCELED, NULL, "client gone");
        return;
    }
    lobby_instance_alive(c->lb); /* this instance claims: it is alive */
    int rc = claim_run(q, "");
    if (rc != WY_OK)
        claim_end(q, rc, NULL, wy_strerror(rc));
}

/* The access token's revocation in auth's keys (services/auth/README.md "Revocation"), one
 * MGET in the {revoked} slot, read while the epoch statement runs and before the claim: its
 * session revoked, or its account revoked/banned at or after the token's iat -> revoked
 * (prev_sid: why); auth's marker missing (Redis lost its data and auth is rebuilding it: "not
 * revoked" cannot be trusted, ask auth) -> unknown; not read when auth was asked already. A
 * revocation landing between this read and the claim reaches the session as
 * account.session_revoked on wy.account, like one after the claim. */
static void claim_revocation_done(int status, redisReply *reply, void *ud)
{
    claim_req_t *q = ud;
    lobby_conn_t *c = q->c;
    if (status != WY_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        q->rev_status = status == WY_OK ? WY_EIO : status;
        q->rev_err =
            status == WY_OK ? "unexpected reply to the revocation check" : wy_strerror(status);
        claim_step(q);
        return;
    }
    if (reply->element[0]->type == REDIS_REPLY_STRING)
        q->revoked = "session revoked";
    else if (reply->element[1]->type == REDIS_REPLY_STRING &&
             (c->token_iat > 0 ? (uint64_t)c->token_iat * 1000 : 0) <=
                 strtoull(reply->element[1]->str, NULL, 10))
        q->revoked = "account revoked";
    q->unknown = !q->revoked && !c->revocation_asked && c->lb->auth &&
                 reply->element[2]->type != REDIS_REPLY_STRING;
    claim_step(q);
}

static void claim_epoch(int status, uint64_t epoch, const char *nick, const char *norm,
                        const char *err, void *ud)
{
    claim_req_t *q = ud;
    lobby_conn_t *c = q->c;
    if (status != WY_OK) {
        q->ep_status = status;
        snprintf(q->ep_err, sizeof q->ep_err, "%s", err ? err : wy_strerror(status));
    } else {
        q->epoch = epoch;
        if (nick) {
            snprintf(c->nick, sizeof c->nick, "%s", nick);
            snprintf(c->nick_norm, sizeof c->nick_norm, "%s", norm);
        }
    }
    claim_step(q);
}

/* The nickname read from the replica (claim with a replica configured). */
static void claim_nick_done(int status, const PGresult *res, const char *err, void *ud)
{
    claim_req_t *q = ud;
    lobby_conn_t *c = q->c;
    if (status != WY_OK) {
        q->ep_status = status;
        snprintf(q->ep_err, sizeof q->ep_err, "nickname: %s", err ? err : wy_strerror(status));
    } else if (PQntuples(res) == 1) {
        snprintf(c->nick, sizeof c->nick, "%s", wy_pg_text(res, 0, "nickname"));
        snprintf(c->nick_norm, sizeof c->nick_norm, "%s", wy_pg_text(res, 0, "norm"));
    }
    claim_step(q);
}

int lobby_session_claim(lobby_conn_t *c, lobby_claim_cb cb)
{
    claim_req_t *q = wy_calloc(1, sizeof *q);
    q->c = c;
    q->cb = cb;
    q->pending = 1;
    /* With a replica the nickname is read there, at the same time; without one it comes with
     * the epoch in one statement (one round trip). */
    wy_pg_t *replica = wy_daemon_pg_replica(c->lb->d);
    bool on_replica = replica && replica != wy_daemon_pg(c->lb->d);
    int rc = next_epoch(c->lb, c->account, !on_replica, claim_epoch, q);
    if (rc != WY_OK) {
        wy_free(q);
        return rc;
    }
    lobby_conn_ref(c);
    if (on_replica) {
        const char *params[] = {c->account};
        rc = wy_pg_exec(replica, &NICK_REPLICA_SQL, params, claim_nick_done, q);
        if (rc == WY_OK) {
            q->pending++;
        } else { /* no claim without the nickname read */
            q->ep_status = rc;
            snprintf(q->ep_err, sizeof q->ep_err, "nickname: %s", wy_strerror(rc));
        }
    }
    if (!c->revocation_asked) { /* auth answered already: the keys are not read again */
        char k4[LOBBY_ID_MAX + 24], k5[LOBBY_ID_MAX + 24];
        snprintf(k4, sizeof k4, LOBBY_AUTH_REVOKED_SID "%s", c->token_sid);
        snprintf(k5, sizeof k5, LOBBY_AUTH_REVOKED_ACCT "%s", c->account);
        const char *argv[] = {"MGET", k4, k5, LOBBY_AUTH_REVOKED_LOADED};
        rc = redis_argv(c->lb, claim_revocation_done, q, 4, argv);
        if (rc == WY_OK) {
            q->pending++;
        } else { /* fail closed: no claim without the read */
            q->rev_status = rc;
            q->rev_err = wy_strerror(rc);
        }
    }
    return WY_OK;
}

/* ---------------------------------------------------------------- writes, release */

/* What a session write's answer means for c; returns WY_OK (written, or re-asserted),
 * WY_ESTATE (fenced: c is being kicked) or the error. */
static int write_result(lobby_conn_t *c, int status, const redisReply *reply)
{
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
        return WY_ESTATE;
    } else if (status != WY_OK && status != WY_ECANCELED) {
        wy_log_warn("session write failed", "session", c->sid, "error", wy_strerror(status), NULL);
    }
    return status;
}

static void write_done(int status, redisReply *reply, void *ud)
{
    lobby_conn_t *c = ud;
    (void)write_result(c, status, reply);
    lobby_conn_unref(c);
}

typedef struct {
    lobby_conn_t *c;
    lobby_written_cb cb;
    void *ud;
} write_then_t;

static void write_then_done(int status, redisReply *reply, void *ud)
{
    write_then_t w = *(write_then_t *)ud;
    wy_free(ud);
    w.cb(w.c, write_result(w.c, status, reply), w.ud);
    lobby_conn_unref(w.c);
}

/* The session write; cb NULL: write_done with c, else write_then_done with w. */
static int write_record(lobby_conn_t *c, const char *old_norm, write_then_t *w)
{
    lobby_t *lb = c->lb;
    char k1[SESS_KEY_MAX], k2[SESS_KEY_MAX], k3[SESS_KEY_MAX];
    snprintf(k1, sizeof k1, RKEY_SESS_REC, c->account, c->sid);
    snprintf(k2, sizeof k2, RKEY_SESS_ACCT, c->account);
    snprintf(k3, sizeof k3, RKEY_SESS_EPOCH, c->account);
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
    int rc = w ? eval(lb, SCRIPT_WRITE, 3, keys, 12, args, write_then_done, w)
               : eval(lb, SCRIPT_WRITE, 3, keys, 12, args, write_done, c);
    if (rc == WY_OK) {
        c->writing = true;
        lobby_conn_ref(c);
        nick_index(lb, c->nick_norm, c->account);
    }
    return rc;
}

void lobby_session_write_nick(lobby_conn_t *c, const char *old_norm)
{
    (void)write_record(c, old_norm, NULL);
}

void lobby_session_write(lobby_conn_t *c)
{
    (void)write_record(c, "", NULL);
}

int lobby_session_write_then(lobby_conn_t *c, lobby_written_cb cb, void *ud)
{
    write_then_t *w = wy_calloc(1, sizeof *w);
    w->c = c;
    w->cb = cb;
    w->ud = ud;
    int rc = write_record(c, "", w);
    if (rc != WY_OK)
        wy_free(w);
    return rc;
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
    char k1[SESS_KEY_MAX], k2[SESS_KEY_MAX], k3[SESS_KEY_MAX], epoch[24];
    snprintf(k1, sizeof k1, RKEY_SESS_REC, c->account, c->sid);
    snprintf(k2, sizeof k2, RKEY_SESS_ACCT, c->account);
    snprintf(k3, sizeof k3, RKEY_SESS_EPOCH, c->account);
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

/* Starts LOOKUP_LUA for one account (nick_norm "" = any session); WY_OK or why not. */
static int lookup_account(lobby_t *lb, const char *account, const char *nick_norm, wy_redis_cb cb,
                          void *ud)
{
    char k[SESS_KEY_MAX], pfx[SESS_KEY_MAX];
    snprintf(k, sizeof k, RKEY_SESS_ACCT, account);
    rec_prefix(pfx, sizeof pfx, account);
    const char *keys[] = {k};
    const char *args[] = {pfx, nick_norm};
    return eval(lb, SCRIPT_LOOKUP, 1, keys, 2, args, cb, ud);
}

/* A presence query: one single-slot lookup per name (a nickname first reads its index, in
 * the nickname's slot, then the account's slot), answered when the last one is back. */
typedef struct lookup_many_req lookup_many_req_t;

typedef struct {
    lookup_many_req_t *q;
    char *nick; /* normalized nickname, or NULL for an account lookup */
    char *sid, *account, *instance, *conn, *state, *display;
    int64_t created, seen;
    uint64_t epoch;
    bool found;
} lookup_item_t;

struct lookup_many_req {
    lobby_t *lb;
    lobby_lookup_many_cb cb;
    void *ud;
    size_t n, left;
    int status; /* first failure, else WY_OK */
    lookup_item_t *items;
};

static void lookup_many_item_done(lookup_item_t *it, int status)
{
    lookup_many_req_t *q = it->q;
    if (status != WY_OK && q->status == WY_OK)
        q->status = status;
    if (--q->left > 0)
        return;
    if (q->status != WY_OK) {
        q->cb(q->status, 0, NULL, q->ud);
    } else {
        lobby_sess_info_t *s = wy_calloc(q->n ? q->n : 1, sizeof *s);
        for (size_t i = 0; i < q->n; i++) {
            lookup_item_t *e = &q->items[i];
            if (!e->found)
                continue;
            s[i] = (lobby_sess_info_t){.sid = e->sid,
                                       .account = e->account,
                                       .instance = e->instance,
                                       .conn = e->conn,
                                       .state = e->state,
                                       .nick = e->display,
                                       .created = e->created,
                                       .seen = e->seen,
                                       .epoch = e->epoch};
        }
        q->cb(WY_OK, q->n, s, q->ud);
        wy_free(s);
    }
    for (size_t i = 0; i < q->n; i++) {
        lookup_item_t *e = &q->items[i];
        wy_free(e->nick);
        wy_free(e->sid);
        wy_free(e->account);
        wy_free(e->instance);
        wy_free(e->conn);
        wy_free(e->state);
        wy_free(e->display);
    }
    wy_free(q->items);
    lobby_unref(q->lb);
    wy_free(q);
}

static void lookup_item_session(int status, redisReply *reply, void *ud)
{
    lookup_item_t *it = ud;
    lobby_sess_info_t s;
    if (status == WY_OK && reply->type != REDIS_REPLY_ARRAY)
        status = WY_EIO;
    if (status == WY_OK && parse_entry(reply, &s)) {
        it->found = true;
        it->sid = wy_strdup(s.sid);
        it->account = wy_strdup(s.account);
        it->instance = wy_strdup(s.instance);
        it->conn = wy_strdup(s.conn);
        it->state = wy_strdup(s.state);
        it->display = wy_strdup(s.nick);
        it->created = s.created;
        it->seen = s.seen;
        it->epoch = s.epoch;
    }
    lookup_many_item_done(it, status);
}

static void lookup_item_nick(int status, redisReply *reply, void *ud)
{
    lookup_item_t *it = ud;
    if (status == WY_OK && reply->type == REDIS_REPLY_STRING && reply->len > 0 &&
        reply->len <= LOBBY_ID_MAX) {
        status = lookup_account(it->q->lb, reply->str, it->nick, lookup_item_session, it);
        if (status == WY_OK)
            return;
    } else if (status == WY_OK && reply->type != REDIS_REPLY_NIL &&
               reply->type != REDIS_REPLY_STRING) {
        status = WY_EIO;
    }
    lookup_many_item_done(it, status);
}

int lobby_session_lookup_many(lobby_t *lb, size_t n, size_t n_acct, const char *const *names,
                              lobby_lookup_many_cb cb, void *ud)
{
    if (n == 0 || n_acct > n)
        return WY_EINVAL;
    for (size_t i = 0; i < n_acct; i++)
        if (!*names[i] || strlen(names[i]) > LOBBY_ID_MAX)
            return WY_EINVAL;
    lookup_many_req_t *q = wy_calloc(1, sizeof *q);
    q->lb = lb;
    q->cb = cb;
    q->ud = ud;
    q->n = n;
    q->left = n + 1; /* +1 until every lookup is started */
    q->items = wy_calloc(n, sizeof *q->items);
    lobby_ref(lb);
    int first = WY_OK;
    for (size_t i = 0; i < n; i++) {
        lookup_item_t *it = &q->items[i];
        it->q = q;
        int rc;
        if (i < n_acct) {
            rc = lookup_account(lb, names[i], "", lookup_item_session, it);
        } else {
            char k[LOBBY_NICK_MAX * 4 + 16];
            it->nick = wy_strdup(names[i]);
            snprintf(k, sizeof k, RKEY_SESS_NICK, names[i]);
            const char *argv[] = {"GET", k};
            rc = redis_argv(lb, lookup_item_nick, it, 2, argv);
        }
        if (rc != WY_OK) {
            if (i == 0) { /* nothing started: the caller gets the error, cb never runs */
                first = rc;
                break;
            }
            lookup_many_item_done(it, rc);
        }
    }
    if (first != WY_OK) {
        wy_free(q->items[0].nick);
        wy_free(q->items);
        lobby_unref(lb);
        wy_free(q);
        return first;
    }
    lookup_many_item_done(&q->items[0], WY_OK); /* the +1: may answer now */
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
    } else if (parse_entry(reply, &s)) {
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
    int rc = lookup_account(lb, account, "", lookup_done, q);
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

static void fence_epoch(int status, uint64_t epoch, const char *nick, const char *norm,
                        const char *err, void *ud)
{
    WY_UNUSED(nick);
    WY_UNUSED(norm);
    lookup_req_t *q = ud;
    if (status != WY_OK) {
        wy_log_warn("fence epoch failed", "account", q->account, "error",
                    err ? err : wy_strerror(status), NULL);
        q->cb(status, NULL, q->ud);
        lookup_req_free(q);
        return;
    }
    char k1[SESS_KEY_MAX], k2[SESS_KEY_MAX], pfx[SESS_KEY_MAX], ep[24];
    snprintf(k1, sizeof k1, RKEY_SESS_ACCT, q->account);
    snprintf(k2, sizeof k2, RKEY_SESS_EPOCH, q->account);
    rec_prefix(pfx, sizeof pfx, q->account);
    fmt_u64(ep, sizeof ep, epoch);
    const char *keys[] = {k1, k2};
    const char *args[] = {ep, pfx};
    int rc = eval(q->lb, SCRIPT_FENCE, 2, keys, 2, args, fence_done, q);
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
    int rc = next_epoch(lb, account, false, fence_epoch, q);
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

void lobby_instance_alive(lobby_t *lb)
{
    /* A session whose instance has no such key belongs to a dead instance and may be
     * taken over at once even under reject-new. */
    uint64_t now = wy_now_ms();
    if (now - lb->last_alive_ms < (uint64_t)lb->cfg->fence_ms / 3)
        return;
    char k[256], ttl[24];
    snprintf(k, sizeof k, RKEY_SESS_INST, lb->instance);
    fmt_u64(ttl, sizeof ttl, (uint64_t)lb->cfg->fence_ms);
    const char *argv[] = {"SET", k, "1", "PX", ttl};
    if (redis_argv(lb, ignore_reply, NULL, 5, argv) == WY_OK)
        lb->last_alive_ms = now;
}
