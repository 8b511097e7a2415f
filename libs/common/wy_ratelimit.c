/* wy_ratelimit — sliding-window limiter in Redis: a sorted set per key whose scores are event
 * times (Redis clock, ms), trimmed, counted and extended by one atomic Lua script. */
#include "wy_ratelimit.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

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
    char sha[41];
    char nonce[17];   /* random per limiter: members of different instances never collide */
    uint64_t counter; /* makes members unique within this limiter */
    uint32_t pending; /* commands whose callback has not run yet */
    bool freed;
};

typedef struct {
    wy_ratelimit_t *rl;
    wy_ratelimit_cb cb;
    void *ud;
    bool hit, tried_eval;
    size_t key_len;
    char member[48];
    char key[]; /* "<prefix>:<key>" */
} call_t;

static void maybe_release(wy_ratelimit_t *rl)
{
    if (rl->freed && rl->pending == 0) {
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

    unsigned char md[20];
    unsigned int mdlen = 0;
    if (!EVP_Digest(SCRIPT, sizeof SCRIPT - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        abort(); /* SHA-1 is always available in OpenSSL 3's default provider */
    for (int i = 0; i < 20; i++)
        snprintf(rl->sha + 2 * i, 3, "%02x", md[i]);
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

static void on_reply(int status, redisReply *reply, void *ud);

static int send_script(call_t *c, bool full)
{
    wy_ratelimit_t *rl = c->rl;
    char window[16], limit[16];
    snprintf(window, sizeof window, "%u", rl->window_ms);
    snprintf(limit, sizeof limit, "%u", rl->limit);
    const char *argv[8] = {full ? "EVAL" : "EVALSHA",
                           full ? SCRIPT : rl->sha,
                           "1",
                           c->key,
                           window,
                           limit,
                           c->hit ? "1" : "0",
                           c->member};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    lens[3] = c->key_len;
    return wy_redis_command_argv(rl->r, on_reply, c, 8, argv, lens);
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
    if (status == WY_EIO && reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && !c->tried_eval) {
        /* First use on this Redis (or after SCRIPT FLUSH / a restart): EVAL loads the script. */
        c->tried_eval = true;
        int rc = send_script(c, true);
        if (rc != WY_OK)
            finish(c, rc == WY_EBUSY ? WY_EUNAVAIL : rc, true, 0);
        return;
    }
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

static bool key_ok(const char *key, size_t *len)
{
    *len = key ? strnlen(key, WY_RATELIMIT_KEY_MAX + 1) : 0;
    return *len > 0 && *len <= WY_RATELIMIT_KEY_MAX;
}

static int check(wy_ratelimit_t *rl, const char *key, bool hit, wy_ratelimit_cb cb, void *ud)
{
    size_t klen;
    if (!rl || !cb || rl->freed || !key_ok(key, &klen))
        return WY_EINVAL;
    call_t *c = wy_calloc(1, sizeof *c + rl->prefix_len + 1 + klen + 1);
    c->rl = rl;
    c->cb = cb;
    c->ud = ud;
    c->hit = hit;
    memcpy(c->key, rl->prefix, rl->prefix_len);
    c->key[rl->prefix_len] = ':';
    memcpy(c->key + rl->prefix_len + 1, key, klen);
    c->key_len = rl->prefix_len + 1 + klen;
    snprintf(c->member, sizeof c->member, "%s-%llu", rl->nonce, (unsigned long long)++rl->counter);
    int rc = send_script(c, false);
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
    size_t klen;
    if (!rl || rl->freed || !key_ok(key, &klen))
        return WY_EINVAL;
    char full[WY_RATELIMIT_PREFIX_MAX + 1 + WY_RATELIMIT_KEY_MAX];
    memcpy(full, rl->prefix, rl->prefix_len);
    full[rl->prefix_len] = ':';
    memcpy(full + rl->prefix_len + 1, key, klen);
    const char *argv[2] = {"DEL", full};
    size_t lens[2] = {3, rl->prefix_len + 1 + klen};
    int rc = wy_redis_command_argv(rl->r, on_del, rl, 2, argv, lens);
    if (rc != WY_OK)
        return rc == WY_EBUSY || rc == WY_ECANCELED ? WY_EUNAVAIL : rc;
    rl->pending++;
    return WY_OK;
}
