/* wy-lobby sessions: the client WebSocket (hello, heartbeat, presence, logout), the
 * session record in Redis (claimed, written and released by Lua scripts that check the
 * account's fence epoch) and local delivery of kicks and notices. */
#include "lobby_int.h"
#include "auth.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define WS_PATH       "/v1/lobby"
#define PRESENCE_MAX  100
#define EPOCH_KEEP_MS "604800000" /* the fence counter outlives any session by far */

/* ---------------------------------------------------------------- Redis scripts */

/* Claim: atomically find the account's live session, refuse (reject-new, owner alive) or
 * fence it (INCR epoch, delete its record and indexes), then write the new session and its
 * indexes with the TTL. Returns {1, prev_sid, prev_instance, epoch} or {0, sid, instance}.
 * KEYS: sess:acct:<a>, sess:epoch:<a>, sess:<sid>
 * ARGV: sid, account, instance, conn, now_ms, ttl_ms, reject_new(0|1), nick, nick_norm,
 *       fence_ms (the claiming instance is alive: its liveness key is refreshed) */
static const char CLAIM_LUA[] =
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
    "local epoch = redis.call('INCR', KEYS[2])\n"
    "redis.call('PEXPIRE', KEYS[2], " EPOCH_KEEP_MS ")\n"
    "redis.call('HSET', KEYS[3], 'account', ARGV[2], 'instance', ARGV[3], 'conn', ARGV[4],\n"
    "  'created', ARGV[5], 'seen', ARGV[5], 'state', 'online', 'epoch', epoch, 'nick', ARGV[9],\n"
    "  'display', ARGV[8])\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[6])\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[6])\n"
    "if ARGV[9] ~= '' then redis.call('SET', 'sess:nick:'..ARGV[9], ARGV[1], 'PX', ARGV[6]) end\n"
    "return {1, prev or '', pinst, epoch}\n";

/* Write: only while the account's epoch is still ours (else 0: the session was taken over
 * elsewhere and this instance must drop it). Refreshes the record, the TTLs and the indexes.
 * KEYS: sess:<sid>, sess:acct:<a>, sess:epoch:<a>
 * ARGV: sid, epoch, ttl_ms, account, instance, conn, created, seen, state, nick_norm,
 *       old_nick_norm, display */
static const char WRITE_LUA[] =
    "if redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'account', ARGV[4], 'instance', ARGV[5], 'conn', ARGV[6],\n"
    "  'created', ARGV[7], 'seen', ARGV[8], 'state', ARGV[9], 'epoch', ARGV[2],\n"
    "  'nick', ARGV[10], 'display', ARGV[12])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])\n"
    "redis.call('PEXPIRE', KEYS[3], " EPOCH_KEEP_MS ")\n"
    "if ARGV[11] ~= '' and ARGV[11] ~= ARGV[10] and "
    "redis.call('GET', 'sess:nick:'..ARGV[11]) == ARGV[1] then\n"
    "  redis.call('DEL', 'sess:nick:'..ARGV[11])\n"
    "end\n"
    "if ARGV[10] ~= '' then redis.call('SET', 'sess:nick:'..ARGV[10], ARGV[1], 'PX', ARGV[3]) end\n"
    "return 1\n";

/* Release (logout, disconnect): delete the record and the indexes that still name it, if
 * the epoch is still ours. KEYS: sess:<sid>, sess:acct:<a>, sess:epoch:<a>; ARGV: sid, epoch */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end\n"
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

/* Fence (Lobby.Kick): bump the epoch and delete the live session of the account.
 * KEYS: sess:acct:<a>, sess:epoch:<a>. Returns {} or the lookup fields. */
static const char FENCE_LUA[] =
    "local sid = redis.call('GET', KEYS[1])\n"
    "if not sid then return {} end\n"
    "local h = redis.call('HMGET', 'sess:'..sid, 'account', 'instance', 'conn', 'created',\n"
    "  'seen', 'state', 'epoch', 'display', 'nick')\n"
    "redis.call('DEL', KEYS[1])\n"
    "if not h[1] then return {} end\n"
    "redis.call('INCR', KEYS[2])\n"
    "if h[9] and h[9] ~= '' and redis.call('GET', 'sess:nick:'..h[9]) == sid then\n"
    "  redis.call('DEL', 'sess:nick:'..h[9])\n"
    "end\n"
    "redis.call('DEL', 'sess:'..sid)\n"
    "return {sid, h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8] or ''}\n";

/* Redis is closed (NULL) after the drain: connections still closing then get
 * WY_EUNAVAIL and their records expire by TTL. */
static int redis_argv(lobby_t *lb, wy_redis_cb cb, void *ud, int argc, const char **argv)
{
    wy_redis_t *r = wy_daemon_redis(lb->d);
    return r ? wy_redis_command_argv(r, cb, ud, argc, argv, NULL) : WY_EUNAVAIL;
}

static int eval(lobby_t *lb, const char *script, int nkeys, const char **keys, int nargs,
                const char **args, wy_redis_cb cb, void *ud)
{
    const char *argv[48];
    char nk[16];
    if (2 + nkeys + nargs > (int)WY_ARRAY_LEN(argv))
        return WY_EINVAL;
    snprintf(nk, sizeof nk, "%d", nkeys);
    int n = 0;
    argv[n++] = "EVAL";
    argv[n++] = script;
    argv[n++] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[n++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[n++] = args[i];
    return redis_argv(lb, cb, ud, n, argv);
}

/* ---------------------------------------------------------------- sending */

Wyvern__Lobby__Code lobby_code(int err)
{
    switch (err) {
    case WY_OK:
        return WYVERN__LOBBY__CODE__OK;
    case WY_EINVAL:
        return WYVERN__LOBBY__CODE__INVALID;
    case WY_ENOTFOUND:
        return WYVERN__LOBBY__CODE__NOT_FOUND;
    case WY_EEXIST:
        return WYVERN__LOBBY__CODE__ALREADY_EXISTS;
    case WY_EPERM:
        return WYVERN__LOBBY__CODE__FORBIDDEN;
    case WY_EAUTH:
        return WYVERN__LOBBY__CODE__UNAUTHENTICATED;
    case WY_ELIMIT:
        return WYVERN__LOBBY__CODE__RATE_LIMITED;
    case WY_ETOOBIG:
        return WYVERN__LOBBY__CODE__TOO_BIG;
    case WY_EBUSY:
    case WY_EUNAVAIL:
    case WY_ETIMEDOUT:
        return WYVERN__LOBBY__CODE__UNAVAILABLE;
    case WY_ESTATE:
        return WYVERN__LOBBY__CODE__CONFLICT;
    default:
        return WYVERN__LOBBY__CODE__INTERNAL;
    }
}

void lobby_send(lobby_conn_t *c, const Wyvern__Lobby__ServerMessage *msg)
{
    if (!c->ws || c->state == LOBBY_ST_CLOSING)
        return;
    size_t n = wyvern__lobby__server_message__get_packed_size(msg);
    uint8_t stackbuf[512];
    uint8_t *buf = n <= sizeof stackbuf ? stackbuf : wy_malloc(n);
    wyvern__lobby__server_message__pack(msg, buf);
    (void)wy_ws_send_binary(c->ws, buf, n);
    if (buf != stackbuf)
        wy_free(buf);
}

void lobby_send_status(lobby_conn_t *c, uint32_t req, Wyvern__Lobby__Code code, const char *message)
{
    Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
    st.code = code;
    st.message = (char *)(message ? message : "");
    Wyvern__Lobby__ServerMessage m = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
    m.request_id = req;
    m.status = &st;
    lobby_send(c, &m);
}

/* wslay sends a close frame ahead of data messages still queued, so a close right after a
 * send (kicked, error status, logged_out) would lose that message: the close waits until
 * the connection's send queue is empty (checked once per loop turn, at most CLOSE_WAIT_MS). */
#define CLOSE_WAIT_MS 1000

static void on_close_check(uv_check_t *h)
{
    lobby_t *lb = h->data;
    uint64_t now = wy_now_ms();
    for (lobby_conn_t *c = lb->conns; c && lb->npend; c = c->next) {
        if (!c->pend || !c->ws)
            continue;
        if (wy_ws_queued_bytes(c->ws) == 0 || now - c->pend_since >= CLOSE_WAIT_MS) {
            c->pend = false;
            lb->npend--;
            (void)wy_ws_close(c->ws, c->pend_code, c->pend_reason);
        }
    }
    if (lb->npend == 0)
        uv_check_stop(&lb->closer);
}

/* Closes the WebSocket with code/reason once what was sent before is out; the session
 * record is left to the caller. */
static void conn_close(lobby_conn_t *c, int code, const char *reason)
{
    if (!c->ws || c->state == LOBBY_ST_CLOSING)
        return;
    c->state = LOBBY_ST_CLOSING;
    if (wy_ws_queued_bytes(c->ws) == 0 || !c->lb->closer_started) {
        (void)wy_ws_close(c->ws, code, reason);
        return;
    }
    c->pend = true;
    c->pend_code = code;
    c->pend_since = wy_now_ms();
    snprintf(c->pend_reason, sizeof c->pend_reason, "%s", reason ? reason : "");
    if (c->lb->npend++ == 0)
        uv_check_start(&c->lb->closer, on_close_check);
}

static void send_kicked_and_close(lobby_conn_t *c, const char *reason, int code)
{
    Wyvern__Lobby__Kicked k = WYVERN__LOBBY__KICKED__INIT;
    k.reason = (char *)reason;
    Wyvern__Lobby__ServerMessage m = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__SERVER_MESSAGE__BODY_KICKED;
    m.kicked = &k;
    lobby_send(c, &m);
    char r[LOBBY_REASON_MAX + 1];
    snprintf(r, sizeof r, "%s", reason);
    conn_close(c, code, r);
    wy_metric_inc(c->lb->m_kicks);
}

/* ---------------------------------------------------------------- conn lifetime */

void lobby_conn_ref(lobby_conn_t *c)
{
    c->refs++;
}

static void conn_unlink(lobby_conn_t *c)
{
    lobby_t *lb = c->lb;
    if (c->registered) {
        lobby_map_del(&lb->by_sid, c->sid, c);
        lobby_map_del(&lb->by_account, c->account, c);
        c->registered = false;
    }
}

void lobby_conn_unref(lobby_conn_t *c)
{
    if (--c->refs > 0)
        return;
    lobby_t *lb = c->lb;
    conn_unlink(c);
    wy_free(c);
    lb->nalloc--;
    lobby_unref(lb);
}

/* ---------------------------------------------------------------- session writes */

static void fmt_u64(char *out, size_t cap, uint64_t v)
{
    snprintf(out, cap, "%llu", (unsigned long long)v);
}

static void write_done(int status, redisReply *reply, void *ud)
{
    lobby_conn_t *c = ud;
    c->writing = false;
    if (status == WY_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        /* The fence: another login took this account; this session must go, even if the
         * kick over Kafka never reached us. */
        wy_metric_inc(c->lb->m_fenced);
        if (c->ws && c->state == LOBBY_ST_READY) {
            wy_log_info("session fenced", "session", c->sid, "account", c->account, NULL);
            send_kicked_and_close(c, "logged in elsewhere", LOBBY_CLOSE_KICKED);
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
    if (eval(lb, WRITE_LUA, 3, keys, 12, args, write_done, c) == WY_OK) {
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

static void session_release(lobby_conn_t *c)
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
    if (eval(lb, RELEASE_LUA, 3, keys, 2, args, release_done, c) == WY_OK)
        lobby_conn_ref(c);
}

/* ---------------------------------------------------------------- hello */

static void hello_fail(lobby_conn_t *c, Wyvern__Lobby__Code code, int close_code, const char *why)
{
    lobby_send_status(c, c->hello_req, code, why);
    conn_close(c, close_code, why);
}

static void claim_done(int status, redisReply *reply, void *ud)
{
    lobby_conn_t *c = ud;
    lobby_t *lb = c->lb;
    bool ok = status == WY_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3 &&
              reply->element[0]->type == REDIS_REPLY_INTEGER;
    if (!ok) {
        if (status != WY_ECANCELED)
            wy_log_warn("session claim failed", "session", c->sid, "error",
                        status == WY_EIO && reply && reply->str ? reply->str : wy_strerror(status),
                        NULL);
        if (c->ws && c->state == LOBBY_ST_CLAIM)
            hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                       "session store unavailable, retry");
        lobby_conn_unref(c);
        return;
    }
    const char *prev = reply->element[1]->str ? reply->element[1]->str : "";
    const char *pinst = reply->element[2]->str ? reply->element[2]->str : "";
    if (reply->element[0]->integer == 0) {
        wy_metric_inc(lb->m_rejected);
        wy_log_info("login refused: live session elsewhere (reject-new)", "account", c->account,
                    "other_session", prev, "other_instance", pinst, NULL);
        if (c->ws && c->state == LOBBY_ST_CLAIM)
            hello_fail(c, WYVERN__LOBBY__CODE__CONFLICT, LOBBY_CLOSE_REJECTED,
                       "account already logged in");
        lobby_conn_unref(c);
        return;
    }
    c->epoch = reply->elements > 3 && reply->element[3]->type == REDIS_REPLY_INTEGER
                   ? (uint64_t)reply->element[3]->integer
                   : 0;
    c->live = true;
    if (*prev) {
        if (strcmp(pinst, lb->instance) == 0)
            lobby_session_kick_local(lb, prev, "logged in elsewhere", LOBBY_CLOSE_KICKED);
        else
            lobby_publish_kick(lb, pinst, prev, c->account, "logged in elsewhere");
    }
    if (!c->ws || c->state != LOBBY_ST_CLAIM) {
        /* The client left (or was kicked) while the claim ran: give the session back. */
        session_release(c);
        lobby_conn_unref(c);
        return;
    }
    c->state = LOBBY_ST_READY;
    c->last_write_ms = wy_now_ms();
    lobby_map_put(&lb->by_account, c->account, c);
    wy_metric_inc(lb->m_logins);
    wy_metric_inc(lb->m_sessions);
    c->counted = true;

    Wyvern__Lobby__Welcome w = WYVERN__LOBBY__WELCOME__INIT;
    w.session_id = c->sid;
    w.account_id = c->account;
    w.nickname = c->nick;
    w.instance = (char *)lb->instance;
    w.heartbeat_interval_ms = (uint32_t)lb->cfg->heartbeat_ms;
    w.idle_timeout_ms = (uint32_t)lb->cfg->idle_ms;
    w.epoch = c->epoch;
    w.max_message_bytes = (uint32_t)lb->cfg->max_message;
    w.max_messages_per_sec = (uint32_t)lb->cfg->max_msgs_per_sec;
    Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
    Wyvern__Lobby__ServerMessage m = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
    m.request_id = c->hello_req;
    m.status = &st;
    m.body_case = WYVERN__LOBBY__SERVER_MESSAGE__BODY_WELCOME;
    m.welcome = &w;
    lobby_send(c, &m);
    wy_log_debug("session ready", "session", c->sid, "account", c->account, NULL);
    lobby_conn_unref(c);
}

static void claim(lobby_conn_t *c)
{
    lobby_t *lb = c->lb;
    c->state = LOBBY_ST_CLAIM;
    wy_uuid4(c->sid);
    c->created_wall_ms = wy_wall_ms();
    /* Registered before the claim runs, so a kick that overtakes the claim's answer still
     * finds this connection. */
    lobby_map_put(&lb->by_sid, c->sid, c);
    c->registered = true;
    char k1[LOBBY_ID_MAX + 16], k2[LOBBY_ID_MAX + 16], k3[LOBBY_SID_LEN + 8];
    snprintf(k1, sizeof k1, "sess:acct:%s", c->account);
    snprintf(k2, sizeof k2, "sess:epoch:%s", c->account);
    snprintf(k3, sizeof k3, "sess:%s", c->sid);
    char now[24], ttl[24], fence[24];
    fmt_u64(now, sizeof now, c->created_wall_ms);
    fmt_u64(ttl, sizeof ttl, (uint64_t)lb->cfg->session_ttl_ms);
    fmt_u64(fence, sizeof fence, (uint64_t)lb->cfg->fence_ms);
    const char *keys[] = {k1, k2, k3};
    const char *args[] = {
        c->sid,  c->account,   lb->instance, c->peer, now, ttl, lb->reject_new ? "1" : "0",
        c->nick, c->nick_norm, fence};
    int rc = eval(lb, CLAIM_LUA, 3, keys, 10, args, claim_done, c);
    if (rc != WY_OK) {
        hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                   "session store unavailable, retry");
        return;
    }
    lobby_conn_ref(c);
}

static void nick_loaded(int status, const char *display, const char *norm, void *ud)
{
    lobby_conn_t *c = ud;
    if (c->ws && c->state == LOBBY_ST_AUTH) {
        if (status == WY_OK) {
            snprintf(c->nick, sizeof c->nick, "%s", display);
            snprintf(c->nick_norm, sizeof c->nick_norm, "%s", norm);
            claim(c);
        } else if (status == WY_ENOTFOUND) {
            claim(c);
        } else {
            hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                       "nickname store unavailable, retry");
        }
    }
    lobby_conn_unref(c);
}

static void load_nick(lobby_conn_t *c)
{
    if (lobby_nick_load(c->lb, c->account, nick_loaded, c) == WY_OK) {
        lobby_conn_ref(c);
        return;
    }
    hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
               "nickname store unavailable, retry");
}

static void introspected(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    WY_UNUSED(status);
    lobby_conn_t *c = arg;
    if (c->ws && c->state == LOBBY_ST_AUTH) {
        const Wyvern__Auth__IntrospectResponse *r = (const Wyvern__Auth__IntrospectResponse *)resp;
        if (err != WY_OK) {
            wy_log_warn("auth Introspect failed", "error", *message ? message : wy_strerror(err),
                        NULL);
            hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                       "auth unavailable, retry");
        } else if (!r->active) {
            char why[LOBBY_REASON_MAX];
            snprintf(why, sizeof why, "token not active: %.80s",
                     r->reason[0] ? r->reason : "revoked");
            hello_fail(c, WYVERN__LOBBY__CODE__UNAUTHENTICATED, LOBBY_CLOSE_UNAUTH, why);
        } else {
            load_nick(c);
        }
    }
    lobby_conn_unref(c);
}

static void on_hello(lobby_conn_t *c, uint32_t req, const Wyvern__Lobby__Hello *h)
{
    lobby_t *lb = c->lb;
    c->hello_req = req;
    c->state = LOBBY_ST_AUTH;
    size_t len = strlen(h->access_token);
    wy_token_verify_opts_t vo = {.iss = lb->cfg->issuer, .aud = lb->cfg->audience};
    wy_token_claims_t cl;
    const char *e = "no verification keys yet";
    int rc = WY_EAUTH;
    if (len == 0) {
        e = "empty access token";
    } else {
        if (lb->static_keys)
            rc = wy_token_verify(lb->static_keys, h->access_token, len, &vo, &cl, &e);
        const wy_jwt_keyset_t *ks = lb->key_cache ? wy_token_cache_keyset(lb->key_cache) : NULL;
        if (rc != WY_OK && ks)
            rc = wy_token_verify(ks, h->access_token, len, &vo, &cl, &e);
    }
    if (rc != WY_OK) {
        char why[LOBBY_REASON_MAX];
        snprintf(why, sizeof why, "bad access token: %.80s", e ? e : wy_strerror(rc));
        hello_fail(c, WYVERN__LOBBY__CODE__UNAUTHENTICATED, LOBBY_CLOSE_UNAUTH, why);
        return;
    }
    snprintf(c->account, sizeof c->account, "%s", cl.sub);
    snprintf(c->token_sid, sizeof c->token_sid, "%s", cl.sid);
    c->token_iat = cl.iat;
    if (lobby_revoked(lb, c->account, c->token_sid, c->token_iat)) {
        hello_fail(c, WYVERN__LOBBY__CODE__UNAUTHENTICATED, LOBBY_CLOSE_UNAUTH, "token revoked");
        return;
    }
    if (!lb->auth) {
        load_nick(c);
        return;
    }
    Wyvern__Auth__IntrospectRequest ir = WYVERN__AUTH__INTROSPECT_REQUEST__INIT;
    ir.access_token = h->access_token;
    if (wy_grpc_call(lb->auth, "/wyvern.auth.Auth/Introspect", &ir.base,
                     &wyvern__auth__introspect_response__descriptor, 2000, NULL, 0, introspected,
                     c) != WY_OK) {
        hello_fail(c, WYVERN__LOBBY__CODE__UNAVAILABLE, LOBBY_CLOSE_UNAVAILABLE,
                   "auth unavailable, retry");
        return;
    }
    lobby_conn_ref(c);
}

/* ---------------------------------------------------------------- presence, lookups */

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
    lobby_conn_t *c;
    uint32_t req;
    size_t n;
    char **names; /* requested account ids then nicknames (to echo offline entries) */
    size_t n_acct;
} presence_req_t;

static void presence_done(int status, redisReply *reply, void *ud)
{
    presence_req_t *p = ud;
    lobby_conn_t *c = p->c;
    if (status != WY_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements != p->n) {
        lobby_send_status(c, p->req, WYVERN__LOBBY__CODE__UNAVAILABLE,
                          "session store unavailable, retry");
    } else {
        Wyvern__Lobby__Presence *ents = wy_calloc(p->n ? p->n : 1, sizeof *ents);
        Wyvern__Lobby__Presence **ptrs = wy_calloc(p->n ? p->n : 1, sizeof *ptrs);
        for (size_t i = 0; i < p->n; i++) {
            Wyvern__Lobby__Presence *e = &ents[i];
            wyvern__lobby__presence__init(e);
            ptrs[i] = e;
            lobby_sess_info_t s;
            bool asked_acct = i < p->n_acct;
            e->account_id = asked_acct ? p->names[i] : "";
            e->nickname = asked_acct ? "" : p->names[i];
            if (parse_entry(reply->element[i], &s)) {
                e->account_id = (char *)s.account;
                e->nickname = (char *)s.nick;
                e->state = strcmp(s.state, "in-game") == 0 ? WYVERN__LOBBY__PRESENCE_STATE__IN_GAME
                                                           : WYVERN__LOBBY__PRESENCE_STATE__ONLINE;
            }
        }
        Wyvern__Lobby__PresenceList pl = WYVERN__LOBBY__PRESENCE_LIST__INIT;
        pl.n_entries = p->n;
        pl.entries = ptrs;
        Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
        Wyvern__Lobby__ServerMessage m = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
        m.request_id = p->req;
        m.status = &st;
        m.body_case = WYVERN__LOBBY__SERVER_MESSAGE__BODY_PRESENCE;
        m.presence = &pl;
        lobby_send(c, &m);
        wy_free(ents);
        wy_free(ptrs);
    }
    for (size_t i = 0; i < p->n; i++)
        wy_free(p->names[i]);
    wy_free(p->names);
    wy_free(p);
    lobby_conn_unref(c);
}

static void on_presence(lobby_conn_t *c, uint32_t req, const Wyvern__Lobby__GetPresence *g)
{
    size_t n = g->n_account_ids + g->n_nicknames;
    if (n == 0 || n > PRESENCE_MAX) {
        lobby_send_status(c, req, WYVERN__LOBBY__CODE__INVALID,
                          "ask for 1 to 100 accounts and nicknames");
        return;
    }
    presence_req_t *p = wy_calloc(1, sizeof *p);
    p->c = c;
    p->req = req;
    p->n = n;
    p->n_acct = g->n_account_ids;
    p->names = wy_calloc(n, sizeof *p->names);
    char **keys = wy_calloc(n, sizeof *keys);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name =
            i < g->n_account_ids ? g->account_ids[i] : g->nicknames[i - g->n_account_ids];
        p->names[i] = wy_strdup(name);
        if (i < g->n_account_ids) {
            if (!*name || strlen(name) > LOBBY_ID_MAX)
                bad = 1;
            keys[i] = wy_sprintf("sess:acct:%s", name);
        } else {
            char display[LOBBY_NICK_MAX + 1], norm[LOBBY_NICK_MAX * 4 + 1];
            const char *e = NULL;
            /* An impossible nickname cannot be online: look up a key nobody holds. */
            if (lobby_nick_check(name, strlen(name), display, sizeof display, norm, sizeof norm,
                                 &e) != WY_OK)
                snprintf(norm, sizeof norm, "-");
            keys[i] = wy_sprintf("sess:nick:%s", norm);
        }
    }
    int rc = WY_EINVAL;
    if (!bad) {
        const char **argv = wy_calloc(n + 3, sizeof *argv);
        char nk[16];
        snprintf(nk, sizeof nk, "%zu", n);
        argv[0] = "EVAL";
        argv[1] = LOOKUP_LUA;
        argv[2] = nk;
        for (size_t i = 0; i < n; i++)
            argv[3 + i] = keys[i];
        rc = redis_argv(c->lb, presence_done, p, (int)(n + 3), argv);
        wy_free(argv);
    }
    for (size_t i = 0; i < n; i++)
        wy_free(keys[i]);
    wy_free(keys);
    if (rc == WY_OK) {
        lobby_conn_ref(c);
        return;
    }
    lobby_send_status(c, req, bad ? WYVERN__LOBBY__CODE__INVALID : lobby_code(rc),
                      bad ? "bad account id" : "session store unavailable, retry");
    for (size_t i = 0; i < n; i++)
        wy_free(p->names[i]);
    wy_free(p->names);
    wy_free(p);
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
    int rc = eval(lb, LOOKUP_LUA, 1, keys, 0, NULL, lookup_done, q);
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
        if (strcmp(s.instance, q->lb->instance) == 0)
            lobby_session_kick_local(q->lb, s.sid, q->reason, LOBBY_CLOSE_KICKED);
        else
            lobby_publish_kick(q->lb, s.instance, s.sid, q->account, q->reason);
        q->cb(WY_OK, &s, q->ud);
    } else {
        q->cb(WY_ENOTFOUND, NULL, q->ud);
    }
    lookup_req_free(q);
}

int lobby_session_fence(lobby_t *lb, const char *account, const char *reason, lobby_lookup_cb cb,
                        void *ud)
{
    if (!*account || strlen(account) > LOBBY_ID_MAX)
        return WY_EINVAL;
    lookup_req_t *q = lookup_req_new(lb, cb, ud);
    snprintf(q->account, sizeof q->account, "%s", account);
    snprintf(q->reason, sizeof q->reason, "%s", *reason ? reason : "kicked by an operator");
    char k1[LOBBY_ID_MAX + 16], k2[LOBBY_ID_MAX + 16];
    snprintf(k1, sizeof k1, "sess:acct:%s", account);
    snprintf(k2, sizeof k2, "sess:epoch:%s", account);
    const char *keys[] = {k1, k2};
    int rc = eval(lb, FENCE_LUA, 2, keys, 0, NULL, fence_done, q);
    if (rc != WY_OK)
        lookup_req_free(q);
    return rc;
}

/* ---------------------------------------------------------------- kicks, notices */

bool lobby_session_kick_local(lobby_t *lb, const char *sid, const char *reason, int code)
{
    lobby_conn_t *c = lobby_map_get(&lb->by_sid, sid);
    if (!c || !c->ws)
        return false;
    send_kicked_and_close(c, reason, code);
    return true;
}

void lobby_session_close_account(lobby_t *lb, const char *account, const char *token_sid, int code,
                                 const char *reason)
{
    /* Also catches a connection still in hello for that account. */
    for (lobby_conn_t *c = lb->conns; c; c = c->next) {
        if (!c->ws || c->state == LOBBY_ST_HELLO || c->state == LOBBY_ST_CLOSING)
            continue;
        if (strcmp(c->account, account) != 0)
            continue;
        if (*token_sid && strcmp(c->token_sid, token_sid) != 0)
            continue;
        wy_log_info("session closed: revoked", "session", c->sid, "account", account, NULL);
        session_release(c);
        send_kicked_and_close(c, reason, code);
    }
}

void lobby_session_notice(lobby_t *lb, const char *account, const char *id, const char *kind,
                          const char *text, int64_t at_ms)
{
    Wyvern__Lobby__Notice n = WYVERN__LOBBY__NOTICE__INIT;
    n.id = (char *)id;
    n.kind = (char *)kind;
    n.text = (char *)text;
    n.at_ms = at_ms;
    Wyvern__Lobby__ServerMessage m = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__SERVER_MESSAGE__BODY_NOTICE;
    m.notice = &n;
    if (*account) {
        lobby_conn_t *c = lobby_map_get(&lb->by_account, account);
        if (c && c->state == LOBBY_ST_READY)
            lobby_send(c, &m);
        return;
    }
    for (lobby_conn_t *c = lb->conns; c; c = c->next)
        if (c->state == LOBBY_ST_READY)
            lobby_send(c, &m);
}

/* ---------------------------------------------------------------- WebSocket */

static void on_open(wy_ws_conn_t *ws, const wy_http_req_t *req, void *ud)
{
    WY_UNUSED(req);
    lobby_t *lb = ud;
    lobby_conn_t *c = wy_calloc(1, sizeof *c);
    c->lb = lb;
    lobby_ref(lb);
    lb->nalloc++;
    c->ws = ws;
    c->refs = 1; /* the WebSocket's own reference, dropped in on_close */
    c->state = LOBBY_ST_HELLO;
    c->opened_ms = c->last_msg_ms = c->bucket_ms = wy_now_ms();
    c->bucket = (double)lb->cfg->max_msgs_per_sec;
    snprintf(c->peer, sizeof c->peer, "%s", wy_ws_peer(ws));
    snprintf(c->session_state, sizeof c->session_state, "online");
    c->next = lb->conns;
    if (lb->conns)
        lb->conns->prev = c;
    lb->conns = c;
    lb->nconns++;
    wy_ws_set_user(ws, c);
    if (lb->stopping)
        conn_close(c, WY_WS_GOING_AWAY, "server stopping");
}

static void on_close(wy_ws_conn_t *ws, int code, const char *reason, void *ud)
{
    WY_UNUSED(code);
    WY_UNUSED(reason);
    lobby_t *lb = ud;
    lobby_conn_t *c = wy_ws_user(ws);
    if (!c)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        lb->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    lb->nconns--;
    if (c->pend) {
        c->pend = false;
        lb->npend--;
    }
    if (c->counted)
        wy_metric_add(lb->m_sessions, -1);
    c->counted = false;
    c->ws = NULL;
    lobby_map_del(&lb->by_account, c->account, c);
    /* A session that was live goes offline now (a fenced one is left alone by the epoch
     * check of the script). */
    session_release(c);
    c->state = LOBBY_ST_CLOSING;
    lobby_conn_unref(c);
}

static bool rate_ok(lobby_conn_t *c)
{
    uint64_t now = wy_now_ms();
    double rate = (double)c->lb->cfg->max_msgs_per_sec;
    c->bucket += (double)(now - c->bucket_ms) * rate / 1000.0;
    if (c->bucket > rate)
        c->bucket = rate;
    c->bucket_ms = now;
    if (c->bucket < 1.0)
        return false;
    c->bucket -= 1.0;
    return true;
}

static void on_message(wy_ws_conn_t *ws, bool is_binary, const uint8_t *data, size_t len, void *ud)
{
    lobby_t *lb = ud;
    lobby_conn_t *c = wy_ws_user(ws);
    if (!c || c->state == LOBBY_ST_CLOSING)
        return;
    c->last_msg_ms = wy_now_ms();
    if (!rate_ok(c)) {
        wy_metric_inc(lb->m_rate_closed);
        lobby_send_status(c, 0, WYVERN__LOBBY__CODE__RATE_LIMITED, "too many messages");
        conn_close(c, LOBBY_CLOSE_RATE, "rate limit exceeded");
        return;
    }
    Wyvern__Lobby__ClientMessage *m =
        is_binary ? wyvern__lobby__client_message__unpack(NULL, len, data) : NULL;
    if (!m) {
        wy_metric_inc(lb->m_bad_frames);
        lobby_send_status(c, 0, WYVERN__LOBBY__CODE__INVALID,
                          is_binary ? "undecodable message" : "text frames are not accepted");
        conn_close(c, LOBBY_CLOSE_PROTOCOL,
                   is_binary ? "undecodable message" : "binary protobuf frames only");
        return;
    }
    uint32_t req = m->request_id;
    if (c->state == LOBBY_ST_HELLO) {
        if (m->body_case != WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HELLO) {
            lobby_send_status(c, req, WYVERN__LOBBY__CODE__INVALID, "first message must be hello");
            conn_close(c, LOBBY_CLOSE_PROTOCOL, "first message must be hello");
        } else {
            on_hello(c, req, m->hello);
        }
        wyvern__lobby__client_message__free_unpacked(m, NULL);
        return;
    }
    if (c->state != LOBBY_ST_READY) {
        lobby_send_status(c, req, WYVERN__LOBBY__CODE__CONFLICT, "hello still in progress");
        wyvern__lobby__client_message__free_unpacked(m, NULL);
        return;
    }
    switch (m->body_case) {
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HELLO:
        lobby_send_status(c, req, WYVERN__LOBBY__CODE__CONFLICT, "already said hello");
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HEARTBEAT: {
        Wyvern__Lobby__HeartbeatAck a = WYVERN__LOBBY__HEARTBEAT_ACK__INIT;
        a.server_time_ms = (int64_t)wy_wall_ms();
        Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
        Wyvern__Lobby__ServerMessage r = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
        r.request_id = req;
        r.status = &st;
        r.body_case = WYVERN__LOBBY__SERVER_MESSAGE__BODY_HEARTBEAT_ACK;
        r.heartbeat_ack = &a;
        lobby_send(c, &r);
        /* One record write per half interval at most, whatever the client sends. */
        if (!c->writing && wy_now_ms() - c->last_write_ms >= (uint64_t)lb->cfg->heartbeat_ms / 2)
            lobby_session_write(c);
        break;
    }
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_SET_NICKNAME:
        lobby_nick_set(c, req, m->set_nickname->nickname);
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_GET_PRESENCE:
        on_presence(c, req, m->get_presence);
        break;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_LOGOUT: {
        Wyvern__Lobby__LoggedOut lo = WYVERN__LOBBY__LOGGED_OUT__INIT;
        Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
        Wyvern__Lobby__ServerMessage r = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
        r.request_id = req;
        r.status = &st;
        r.body_case = WYVERN__LOBBY__SERVER_MESSAGE__BODY_LOGGED_OUT;
        r.logged_out = &lo;
        lobby_send(c, &r);
        conn_close(c, WY_WS_NORMAL, "logged out"); /* on_close releases the session */
        break;
    }
    default:
        /* A message of a newer protocol (unknown oneof field): answer, keep the session. */
        lobby_send_status(c, req, WYVERN__LOBBY__CODE__INVALID, "unknown message");
        break;
    }
    wyvern__lobby__client_message__free_unpacked(m, NULL);
}

/* ---------------------------------------------------------------- sweep timer */

static void instance_alive_done(int status, redisReply *reply, void *ud)
{
    WY_UNUSED(status);
    WY_UNUSED(reply);
    WY_UNUSED(ud);
}

static uint64_t last_alive_ms;

static void on_sweep(uv_timer_t *t)
{
    lobby_t *lb = t->data;
    uint64_t now = wy_now_ms();
    for (lobby_conn_t *c = lb->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == LOBBY_ST_HELLO && now - c->opened_ms >= (uint64_t)lb->cfg->hello_ms)
            conn_close(c, LOBBY_CLOSE_HELLO_TIMEOUT, "no hello in time");
        else if (c->state == LOBBY_ST_READY && now - c->last_msg_ms >= (uint64_t)lb->cfg->idle_ms)
            conn_close(c, LOBBY_CLOSE_IDLE, "idle timeout");
    }
    /* The instance's liveness key: a session whose instance has no such key belongs to a
     * dead instance and may be taken over at once even under reject-new. */
    if (now - last_alive_ms >= (uint64_t)lb->cfg->fence_ms / 3) {
        char k[256], ttl[24];
        snprintf(k, sizeof k, "sess:inst:%s", lb->instance);
        fmt_u64(ttl, sizeof ttl, (uint64_t)lb->cfg->fence_ms);
        const char *argv[] = {"SET", k, "1", "PX", ttl};
        if (redis_argv(lb, instance_alive_done, NULL, 5, argv) == WY_OK)
            last_alive_ms = now;
    }
    lobby_keys_tick(lb);
}

/* ---------------------------------------------------------------- start / stop */

/* WY_BIND_HOST, already validated by wy_daemon (an empty value means the default). */
static const char *bind_host(void)
{
    const char *h = getenv("WY_BIND_HOST");
    return h && *h ? h : "0.0.0.0";
}

int lobby_sessions_start(lobby_t *lb, const char **err)
{
    static char msg[256];
    wy_http_limits_t l;
    wy_http_limits_default(&l);
    l.max_connections = (unsigned)lb->cfg->max_conns;
    l.ws_max_message_bytes = (size_t)lb->cfg->max_message;
    l.ws_max_send_queue_bytes = 256 * 1024;
    l.max_header_bytes = 8192;
    l.max_body_bytes = 1024;
    l.ws_ping_interval_ms = (uint64_t)lb->cfg->heartbeat_ms;
    /* The protocol's own idle timeout (4005) acts first; this one catches dead TCP peers. */
    l.ws_idle_timeout_ms = (uint64_t)lb->cfg->idle_ms + (uint64_t)lb->cfg->heartbeat_ms;
    int rc = wy_http_server_new(lb->loop, &l, &lb->ws);
    if (rc != WY_OK) {
        *err = "cannot create the WebSocket server";
        return rc;
    }
    lb->ws_live = true;
    lobby_ref(lb); /* dropped by ws_closed */
    wy_ws_handlers_t h = {
        .on_open = on_open, .on_message = on_message, .on_close = on_close, .ud = lb};
    wy_ws_route(lb->ws, WS_PATH, &h);
    const char *e = NULL;
    rc = wy_http_listen(lb->ws, bind_host(), (int)lb->cfg->ws_port, &e);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "WY_LOBBY_WS_PORT %d: %s", (int)lb->cfg->ws_port,
                 e ? e : wy_strerror(rc));
        *err = msg;
        return rc;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", wy_http_port(lb->ws));
    wy_log_info("websocket listening", "port", port, "path", WS_PATH, NULL);
    uv_timer_init(lb->loop, &lb->sweep);
    lb->sweep.data = lb;
    uint64_t every =
        (uint64_t)(lb->cfg->hello_ms < lb->cfg->idle_ms ? lb->cfg->hello_ms : lb->cfg->idle_ms) / 4;
    if (every < 20)
        every = 20;
    if (every > 500)
        every = 500;
    uv_timer_start(&lb->sweep, on_sweep, 0, every);
    lb->sweep_started = true;
    lobby_ref(lb);
    uv_check_init(lb->loop, &lb->closer);
    lb->closer.data = lb;
    lb->closer_started = true;
    lobby_ref(lb);
    return WY_OK;
}

static void ws_closed(void *ud)
{
    lobby_t *lb = ud;
    lb->ws_live = false;
    lobby_unref(lb);
}

/* The end of the polite part of the stop: what is still open is closed now (best-effort
 * 1001 by wy_http_close; on_close releases each session while Redis is still open). */
static void close_ws_server(lobby_t *lb)
{
    if (lb->stop_timer_started) {
        lobby_close_handle((uv_handle_t *)&lb->stop_timer);
        lb->stop_timer_started = false;
    }
    if (lb->closer_started) {
        for (lobby_conn_t *c = lb->conns; c; c = c->next)
            if (c->pend && c->ws) {
                c->pend = false;
                (void)wy_ws_close(c->ws, c->pend_code, c->pend_reason);
            }
        lb->npend = 0;
        lobby_close_handle((uv_handle_t *)&lb->closer);
        lb->closer_started = false;
    }
    if (lb->ws) {
        wy_http_close(lb->ws, ws_closed, lb);
        lb->ws = NULL;
    }
}

static void on_stop_timer(uv_timer_t *t)
{
    lobby_t *lb = t->data;
    if (lb->nconns == 0 || wy_now_ms() >= lb->stop_deadline_ms)
        close_ws_server(lb);
}

/* Part of the drain time for the clients' close answers; the rest is for releasing
 * the sessions of those that did not answer. */
static uint64_t stop_grace_ms(const lobby_t *lb)
{
    uint64_t drain = (uint64_t)wy_daemon_drain_ms(lb->d);
    return drain - (drain / 4 < 500 ? drain / 4 : 500);
}

void lobby_sessions_stop(lobby_t *lb)
{
    if (lb->sweep_started) {
        uv_timer_stop(&lb->sweep);
        lobby_close_handle((uv_handle_t *)&lb->sweep);
        lb->sweep_started = false;
    }
    if (!lb->ws) {
        close_ws_server(lb);
        return;
    }
    wy_http_stop(lb->ws);
    /* Clients reconnect elsewhere on 1001. Connections already closing (a kicked or error
     * message still being sent) finish through the closer. */
    for (lobby_conn_t *c = lb->conns; c; c = c->next)
        conn_close(c, WY_WS_GOING_AWAY, "server stopping");
    if (lb->nconns == 0) {
        close_ws_server(lb);
        return;
    }
    lb->stop_deadline_ms = wy_now_ms() + stop_grace_ms(lb);
    uv_timer_init(lb->loop, &lb->stop_timer);
    lb->stop_timer.data = lb;
    uv_timer_start(&lb->stop_timer, on_stop_timer, 10, 10);
    lb->stop_timer_started = true;
    lobby_ref(lb);
}

size_t lobby_sessions_busy(const lobby_t *lb)
{
    return (lb->ws_live ? 1 : 0) + lb->nalloc;
}
