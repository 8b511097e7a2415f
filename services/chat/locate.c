/* wy-chat's reads of other services' Redis keys: where world's locator seats an account
 * (world:{acct:<a>} -> character, world:{char:<c>} -> zone + instance) and who is seated in
 * that zone instance (world:{zone:<z>}:seat, services/world/README.md "Redis key map"), and
 * whether an account has a lobby session (WY_CHAT_PRESENCE_KEY). Read only; every key is read
 * by its own command (they live in different hash slots). Loop thread. */
#include "chat.h"

#include <string.h>

#define KEY_MAX 256

/* world's keys (docs/keys.md, services/world/README.md), read here. */
#define RKEY_CHAT_WORLD_ACCT  "world:{acct:%s}"
#define RKEY_CHAT_WORLD_CHAR  "world:{char:%s}"
#define RKEY_CHAT_WORLD_SEATS "world:{zone:%s}:seat"

typedef struct {
    chat_svc_t *svc;
    bool want_members;
    chat_zone_cb cb;
    void *ud;
    char zone[100], inst[100];
    char **accounts;
    size_t n, pending;
    int fail;
} zone_op_t;

static void zone_finish(zone_op_t *op)
{
    if (op->fail)
        op->cb(op->fail, NULL, NULL, 0, op->ud);
    else
        op->cb(WY_OK, op->inst, op->accounts, op->n, op->ud);
    for (size_t i = 0; i < op->n; i++)
        wy_free(op->accounts[i]);
    wy_free(op->accounts);
    chat_svc_unref(op->svc);
    wy_free(op);
}

static int fail_of(int status)
{
    return status == WY_OK ? WY_EIO : WY_EUNAVAIL;
}

static void on_member_account(int status, redisReply *r, void *ud)
{
    zone_op_t *op = ud;
    if (status != WY_OK && !op->fail)
        op->fail = fail_of(status);
    else if (status == WY_OK && r->type == REDIS_REPLY_STRING && chat_account_ok(r->str))
        op->accounts[op->n++] = wy_strdup(r->str);
    if (--op->pending == 0)
        zone_finish(op);
}

static void on_seats(int status, redisReply *r, void *ud)
{
    zone_op_t *op = ud;
    wy_redis_t *redis = wy_daemon_redis(op->svc->d);
    if (status != WY_OK || r->type != REDIS_REPLY_ARRAY || !redis) {
        op->fail = status == WY_OK ? WY_EIO : WY_EUNAVAIL;
        zone_finish(op);
        return;
    }
    op->accounts = wy_calloc(CHAT_ZONE_MAX, sizeof *op->accounts);
    op->pending = 1;
    size_t asked = 0;
    for (size_t i = 0; i + 1 < r->elements && asked < CHAT_ZONE_MAX; i += 2) {
        redisReply *c = r->element[i], *inst = r->element[i + 1];
        if (c->type != REDIS_REPLY_STRING || inst->type != REDIS_REPLY_STRING ||
            strcmp(inst->str, op->inst) != 0 || c->len > 128)
            continue;
        char key[KEY_MAX];
        snprintf(key, sizeof key, RKEY_CHAT_WORLD_CHAR, c->str);
        const char *argv[] = {"HGET", key, "account"};
        if (wy_redis_command_argv(redis, on_member_account, op, 3, argv, NULL) == WY_OK) {
            op->pending++;
            asked++;
        } else if (!op->fail) {
            op->fail = WY_EUNAVAIL;
        }
    }
    if (--op->pending == 0)
        zone_finish(op);
}

static void on_placement(int status, redisReply *r, void *ud)
{
    zone_op_t *op = ud;
    wy_redis_t *redis = wy_daemon_redis(op->svc->d);
    if (status != WY_OK || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !redis) {
        op->fail = status == WY_OK ? WY_EIO : WY_EUNAVAIL;
        zone_finish(op);
        return;
    }
    redisReply *z = r->element[0], *i = r->element[1];
    if (z->type != REDIS_REPLY_STRING || i->type != REDIS_REPLY_STRING || z->len >= 100 ||
        i->len >= 100) {
        op->fail = WY_ENOTFOUND; /* the placement lapsed meanwhile */
        zone_finish(op);
        return;
    }
    snprintf(op->zone, sizeof op->zone, "%s", z->str);
    snprintf(op->inst, sizeof op->inst, "%s", i->str);
    if (!op->want_members) {
        zone_finish(op);
        return;
    }
    char key[KEY_MAX];
    snprintf(key, sizeof key, RKEY_CHAT_WORLD_SEATS, op->zone);
    const char *argv[] = {"HGETALL", key};
    if (wy_redis_command_argv(redis, on_seats, op, 2, argv, NULL) != WY_OK) {
        op->fail = WY_EUNAVAIL;
        zone_finish(op);
    }
}

static void on_character(int status, redisReply *r, void *ud)
{
    zone_op_t *op = ud;
    wy_redis_t *redis = wy_daemon_redis(op->svc->d);
    if (status != WY_OK || !redis) {
        op->fail = fail_of(status);
        zone_finish(op);
        return;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 128) {
        op->fail = WY_ENOTFOUND;
        zone_finish(op);
        return;
    }
    char key[KEY_MAX];
    snprintf(key, sizeof key, RKEY_CHAT_WORLD_CHAR, r->str);
    const char *argv[] = {"HMGET", key, "zone", "inst"};
    if (wy_redis_command_argv(redis, on_placement, op, 4, argv, NULL) != WY_OK) {
        op->fail = WY_EUNAVAIL;
        zone_finish(op);
    }
}

int chat_zone_locate(chat_svc_t *svc, const char *account, bool want_members, chat_zone_cb cb,
                     void *ud)
{
    wy_redis_t *redis = wy_daemon_redis(svc->d);
    if (!redis)
        return WY_EUNAVAIL;
    char key[KEY_MAX];
    snprintf(key, sizeof key, RKEY_CHAT_WORLD_ACCT, account);
    zone_op_t *op = wy_calloc(1, sizeof *op);
    op->svc = svc;
    op->want_members = want_members;
    op->cb = cb;
    op->ud = ud;
    const char *argv[] = {"GET", key};
    int rc = wy_redis_command_argv(redis, on_character, op, 2, argv, NULL);
    if (rc != WY_OK) {
        wy_free(op);
        return rc;
    }
    chat_svc_ref(svc);
    return WY_OK;
}

typedef struct {
    chat_svc_t *svc;
    chat_presence_cb cb;
    void *ud;
} presence_op_t;

static void on_presence(int status, redisReply *r, void *ud)
{
    presence_op_t *op = ud;
    if (status != WY_OK || r->type != REDIS_REPLY_INTEGER)
        op->cb(fail_of(status), false, op->ud);
    else
        op->cb(WY_OK, r->integer > 0, op->ud);
    chat_svc_unref(op->svc);
    wy_free(op);
}

int chat_presence(chat_svc_t *svc, const char *account, chat_presence_cb cb, void *ud)
{
    wy_redis_t *redis = wy_daemon_redis(svc->d);
    if (!redis)
        return WY_EUNAVAIL;
    char key[KEY_MAX];
    /* The format was checked at start: one %s and nothing else to expand. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(key, sizeof key, svc->cfg->presence_key, account);
#pragma GCC diagnostic pop
    presence_op_t *op = wy_calloc(1, sizeof *op);
    op->svc = svc;
    op->cb = cb;
    op->ud = ud;
    const char *argv[] = {"EXISTS", key};
    int rc = wy_redis_command_argv(redis, on_presence, op, 2, argv, NULL);
    if (rc != WY_OK) {
        wy_free(op);
        return rc;
    }
    chat_svc_ref(svc);
    return WY_OK;
}
