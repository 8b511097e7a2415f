/* wy_ratelimit — sliding-window limiter in Redis: a sorted set per key whose scores are event
 * times (Redis clock, ms), trimmed, counted and extended by one atomic Lua script. */
#include "wy_ratelimit.h"

#include <stdio.h>
#include <string.h>

/* KEYS[1] the key; ARGV: window_ms, limit, "1" to count the event / "0" to peek, a unique member.
 * Returns {1, 0} when allowed, {0, retry_after_ms} when not. Refused events are not stored, so
 * a key never holds more than `limit` entries. Events at now - window have left the window. */
static const char SCRIPT[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local window = tonumber(ARGV[1])\n"
    "local limit = tonumber(ARGV[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)\n"
    "local n = redis.call('ZCARD', KEYS[1])\n"
    "if n < limit then\n"
    "  if ARGV[3] == '1' then\n"
    "    redis.call('ZADD', KEYS[1], now, ARGV[4])\n"
    "    redis.call('PEXPIRE', KEYS[1], window)\n"
    "  end\n"
    "  return {1, 0}\n"
    "end\n"
    "local e = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')\n"
    "local retry = tonumber(e[2]) + window - now\n"
    "if retry < 1 then retry = 1 end\n"
    "return {0, retry}\n";

struct wy_ratelimit {
    wy_redis_t *r;
    char *prefix;
    size_t prefix_len;
    uint32_t limit, window_ms;
    wy_redis_script_t *script; /* EVALSHA, reloaded after NOSCRIPT by wy_redis_eval */
    char nonce[17];   /* random per limiter: members of different instances never collide */
    uint64_t counter; /* makes members unique within this limiter */
    uint32_t pending; /* commands whose callback has not run yet */
    bool freed;
};

typedef struct {
    wy_ratelimit_t *rl;
    wy_ratelimit_cb cb;
    void *ud;
} call_t;

/* Longest Redis key: "<prefix>:<key>". */
#define FULL_KEY_MAX (WY_RATELIMIT_PREFIX_MAX + 1 + WY_RATELIMIT_KEY_MAX)

static void maybe_release(wy_ratelimit_t *rl)
{
    if (rl->freed && rl->pending == 0) {
        wy_redis_script_free(rl->script);
        wy_free(rl->prefix);
        wy_free(rl);
    }
}

int wy_ratelimit_new(wy_redis_t *r, const char *prefix, uint32_t limit, uint32_t window_ms,
                     wy_ratelimit_t **out)
{
    size_t plen = prefix ? strnlen(prefix, WY_RATELIMIT_PREFIX_MAX + 1) : 0;
    if (!r || !out || plen == 0 || plen > WY_RATELIMIT_PREFIX_MAX || limit == 0 ||
        limit > WY_RATELIMIT_LIMIT_MAX || window_ms == 0 || window_ms > WY_RATELIMIT_WINDOW_MAX_MS)
        return WY_EINVAL;
    wy_ratelimit_t *rl = wy_calloc(1, sizeof *rl);
    rl->r = r;
    rl->prefix = wy_strndup(prefix, plen);
    rl->prefix_len = plen;
    rl->limit = limit;
    rl->window_ms = window_ms;

    rl->script = wy_redis_script_new(SCRIPT);
    unsigned char rnd[8];
    wy_random(rnd, sizeof rnd);
    for (int i = 0; i < 8; i++)
        snprintf(rl->nonce + 2 * i, 3, "%02x", rnd[i]);
    *out = rl;
    return WY_OK;
}

void wy_ratelimit_free(wy_ratelimit_t *rl)
{
    if (!rl)
        return;
    rl->freed = true;
    maybe_release(rl);
}

static void finish(call_t *c, int err, bool allowed, uint32_t retry)
{
    wy_ratelimit_t *rl = c->rl;
    if (err != WY_OK) { /* fail open */
        allowed = true;
        retry = 0;
    }
    c->cb(err, allowed, retry, c->ud);
    wy_free(c);
    rl->pending--;
    maybe_release(rl);
}

static void on_reply(int status, redisReply *reply, void *ud)
{
    call_t *c = ud;
    if (status != WY_OK) {
        finish(c, status == WY_ETIMEDOUT ? WY_EUNAVAIL : status, true, 0);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        finish(c, WY_EIO, true, 0);
        return;
    }
    bool allowed = reply->element[0]->integer == 1;
    long long retry = reply->element[1]->integer;
    if (!allowed && retry < 1)
        retry = 1;
    if (retry > (long long)UINT32_MAX)
        retry = UINT32_MAX;
    finish(c, WY_OK, allowed, allowed ? 0 : (uint32_t)retry);
}

/* Writes "<prefix>:<key>" into full (FULL_KEY_MAX bytes) and returns its length, or 0 when key
 * is empty or over WY_RATELIMIT_KEY_MAX. */
static size_t full_key(const wy_ratelimit_t *rl, const char *key, char *full)
{
    size_t klen = key ? strnlen(key, WY_RATELIMIT_KEY_MAX + 1) : 0;
    if (klen == 0 || klen > WY_RATELIMIT_KEY_MAX)
        return 0;
    memcpy(full, rl->prefix, rl->prefix_len);
    full[rl->prefix_len] = ':';
    memcpy(full + rl->prefix_len + 1, key, klen);
    return rl->prefix_len + 1 + klen;
}

static int check(wy_ratelimit_t *rl, const char *key, bool hit, wy_ratelimit_cb cb, void *ud)
{
    char full[FULL_KEY_MAX], window[16], limit[16], member[48];
    size_t flen;
    if (!rl || !cb || rl->freed || (flen = full_key(rl, key, full)) == 0)
        return WY_EINVAL;
    snprintf(window, sizeof window, "%u", rl->window_ms);
    snprintf(limit, sizeof limit, "%u", rl->limit);
    snprintf(member, sizeof member, "%s-%llu", rl->nonce, (unsigned long long)++rl->counter);
    const char *argv[5] = {full, window, limit, hit ? "1" : "0", member};
    const size_t lens[5] = {flen, strlen(window), strlen(limit), 1, strlen(member)};
    call_t *c = wy_calloc(1, sizeof *c);
    c->rl = rl;
    c->cb = cb;
    c->ud = ud;
    int rc = wy_redis_eval(rl->r, rl->script, 0, on_reply, c, 1, 5, argv, lens);
    if (rc != WY_OK) {
        wy_free(c);
        return rc == WY_EBUSY || rc == WY_ECANCELED ? WY_EUNAVAIL : rc;
    }
    rl->pending++;
    return WY_OK;
}

int wy_ratelimit_hit(wy_ratelimit_t *rl, const char *key, wy_ratelimit_cb cb, void *ud)
{
    return check(rl, key, true, cb, ud);
}

int wy_ratelimit_peek(wy_ratelimit_t *rl, const char *key, wy_ratelimit_cb cb, void *ud)
{
    return check(rl, key, false, cb, ud);
}

static void on_del(int status, redisReply *reply, void *ud)
{
    wy_ratelimit_t *rl = ud;
    (void)status;
    (void)reply;
    rl->pending--;
    maybe_release(rl);
}

int wy_ratelimit_reset(wy_ratelimit_t *rl, const char *key)
{
    char full[FULL_KEY_MAX];
    size_t flen;
    if (!rl || rl->freed || (flen = full_key(rl, key, full)) == 0)
        return WY_EINVAL;
    const char *argv[2] = {"DEL", full};
    size_t lens[2] = {3, flen};
    int rc = wy_redis_command_argv(rl->r, on_del, rl, 2, argv, lens);
    if (rc != WY_OK)
        return rc == WY_EBUSY || rc == WY_ECANCELED ? WY_EUNAVAIL : rc;
    rl->pending++;
    return WY_OK;
}
