/* wy-world's placement and locator: World.Place, World.Locate and World.Transfer.
 * A character's placement is one hash (world:{char:<id>}); a zone's instances, which
 * game hosts each and who is seated in each are keys of the zone's slot
 * (world:{zone:<id>}...). Every decision is one Lua script on one slot, so it runs the
 * same on Redis Cluster and any number of world replicas may serve at once (key map:
 * services/world/README.md). Loop thread. */
#include "world.h"
#include "wy_log.h"

#include <stdlib.h>
#include <string.h>

#define KEYS_ZONE 6

/* Redis key formats (docs/keys.md, key map in README). */
#define RKEY_WORLD_ZONE       "world:{zone:%s}"
#define RKEY_WORLD_ZONE_SEATS "world:{zone:%s}:seats"
#define RKEY_WORLD_ZONE_SEAT  "world:{zone:%s}:seat"
#define RKEY_WORLD_ZONE_COUNT "world:{zone:%s}:count"
#define RKEY_WORLD_ZONE_NEXT  "world:{zone:%s}:next"
#define RKEY_WORLD_ZONE_KEYED "world:{zone:%s}:keyed"
#define RKEY_WORLD_CHAR       "world:{char:%s}"
#define RKEY_WORLD_ACCT       "world:{acct:%s}"
#define PRUNE_STEP            "100" /* lapsed seats dropped per script run */

/* Shared by the zone scripts. KEYS: 1 world:{zone:z} (instance -> game id),
 * 2 :seats (zset character -> lapse ms), 3 :seat (character -> instance),
 * 4 :count (instance -> characters seated), 5 :next (instance counter),
 * 6 :keyed (party/player key -> instance, and "@<instance>" -> its key). */
#define ZONE_LUA_PRELUDE                                                                           \
    "local function leave(c)\n"                                                                    \
    "  local i = redis.call('HGET', KEYS[3], c)\n"                                                 \
    "  redis.call('HDEL', KEYS[3], c)\n"                                                           \
    "  redis.call('ZREM', KEYS[2], c)\n"                                                           \
    "  if not i then return end\n"                                                                 \
    "  if redis.call('HINCRBY', KEYS[4], i, -1) > 0 then return end\n"                             \
    "  local k = redis.call('HGET', KEYS[6], '@' .. i)\n"                                          \
    "  if k then\n" /* a party's or player's instance ends with its last player */                 \
    "    redis.call('HDEL', KEYS[6], '@' .. i, k)\n"                                               \
    "    redis.call('HDEL', KEYS[1], i)\n"                                                         \
    "    redis.call('HDEL', KEYS[4], i)\n"                                                         \
    "  else\n"                                                                                     \
    "    redis.call('HSET', KEYS[4], i, 0)\n"                                                      \
    "  end\n"                                                                                      \
    "end\n"

/* ARGV: character, now, ttl, capacity, key ("" = shared zone), zone id, nkeep, the
 * games that may keep an instance (live, not draining, run the zone), then the
 * candidates for a new one (also not full), least loaded first. Returns {instance,
 * game}; errors "FULL ..." and "NOGAME ...". */
static const char seat_lua[] = ZONE_LUA_PRELUDE
    "local ch, now, cap, ikey, zone = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4]), ARGV[5], "
    "ARGV[6]\n"
    "for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, " PRUNE_STEP
    ")) do leave(c) end\n"
    "local nkeep = tonumber(ARGV[7])\n"
    "local keep = {}\n"
    "for i = 8, 7 + nkeep do keep[ARGV[i]] = true end\n"
    "local cand = ARGV[8 + nkeep]\n"
    "local inst = redis.call('HGET', KEYS[3], ch)\n"
    "if not inst then\n"
    "  if ikey == '' then\n"
    "    local bestn\n"
    "    for _, i in ipairs(redis.call('HKEYS', KEYS[1])) do\n"
    "      local n = tonumber(redis.call('HGET', KEYS[4], i) or '0')\n"
    "      local num = tonumber(string.match(i, '#(%d+)$')) or 0\n"
    "      if n < cap and (bestn == nil or num < bestn) then inst, bestn = i, num end\n"
    "    end\n"
    "  else\n"
    "    inst = redis.call('HGET', KEYS[6], ikey)\n"
    "    if inst and tonumber(redis.call('HGET', KEYS[4], inst) or '0') >= cap then\n"
    "      return redis.error_reply('FULL instance ' .. inst .. ' is full')\n"
    "    end\n"
    "  end\n"
    "  if not inst then\n"
    "    if not cand then return redis.error_reply('NOGAME no live game instance can run zone ' "
    ".. zone) end\n"
    "    inst = zone .. '#' .. redis.call('INCR', KEYS[5])\n"
    "    redis.call('HSET', KEYS[1], inst, cand)\n"
    "    if ikey ~= '' then redis.call('HSET', KEYS[6], ikey, inst, '@' .. inst, ikey) end\n"
    "  end\n"
    "  redis.call('HSET', KEYS[3], ch, inst)\n"
    "  redis.call('HINCRBY', KEYS[4], inst, 1)\n"
    "end\n"
    "local game = redis.call('HGET', KEYS[1], inst)\n"
    "if not game or not keep[game] then\n"
    "  if not cand then return redis.error_reply('NOGAME no live game instance can run zone ' .. "
    "zone) end\n"
    "  game = cand\n"
    "  redis.call('HSET', KEYS[1], inst, game)\n"
    "end\n"
    "redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ch)\n"
    "return {inst, game}\n";

/* ARGV: character. Leaves its seat in the zone (if any). */
static const char unseat_lua[] = ZONE_LUA_PRELUDE "leave(ARGV[1])\n"
                                                  "return 1\n";

/* KEYS[1] world:{zone:z}. ARGV: nkeep, the games that may keep an instance, then the
 * candidates (least loaded first; none: nothing moves). Every instance on another game
 * goes to the candidates in turn. Returns {{instance, old game, new game, ...},
 * {instance, game, ...} of every instance after the moves}. */
static const char replace_lua[] =
    "local nkeep = tonumber(ARGV[1])\n"
    "local keep, cands = {}, {}\n"
    "for i = 2, nkeep + 1 do keep[ARGV[i]] = true end\n"
    "for i = nkeep + 2, #ARGV do cands[#cands + 1] = ARGV[i] end\n"
    "local moved = {}\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  if #cands > 0 and not keep[all[i + 1]] then\n"
    "    local g = cands[(#moved / 3) % #cands + 1]\n"
    "    redis.call('HSET', KEYS[1], all[i], g)\n"
    "    moved[#moved + 1] = all[i]; moved[#moved + 1] = all[i + 1]; moved[#moved + 1] = g\n"
    "    all[i + 1] = g\n"
    "  end\n"
    "end\n"
    "return {moved, all}\n";

/* KEYS[1] world:{char:c}. ARGV: force, account, zone, instance, game, x, y, placed, ttl.
 * Without force an existing placement wins and is returned; else (or with force) the
 * given one is written. Returns {account, zone, instance, game, x, y, placed}. */
static const char commit_lua[] =
    "if ARGV[1] == '0' then\n"
    "  local cur = redis.call('HMGET', KEYS[1], 'account', 'zone', 'inst', 'game', 'x', 'y', "
    "'placed')\n"
    "  if cur[1] then return cur end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'account', ARGV[2], 'zone', ARGV[3], 'inst', ARGV[4], 'game', "
    "ARGV[5], 'x', ARGV[6], 'y', ARGV[7], 'placed', ARGV[8])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[9])\n"
    "return {ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]}\n";

/* KEYS[1] world:{char:c}. ARGV: instance. Ends the placement if it is still in that
 * instance; returns {account, zone} of what it ended, or nil. */
static const char release_lua[] =
    "if redis.call('HGET', KEYS[1], 'inst') ~= ARGV[1] then return nil end\n"
    "local r = redis.call('HMGET', KEYS[1], 'account', 'zone')\n"
    "redis.call('DEL', KEYS[1])\n"
    "return r\n";

/* KEYS[1] world:{acct:a}. ARGV: character. Drops the account's index if it names it. */
static const char acct_release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "return 1\n";

int world_place_init(world_svc_t *w)
{
    w->s_release = wy_redis_script_new(release_lua);
    w->s_acct_release = wy_redis_script_new(acct_release_lua);
    w->s_seat = wy_redis_script_new(seat_lua);
    w->s_unseat = wy_redis_script_new(unseat_lua);
    w->s_commit = wy_redis_script_new(commit_lua);
    w->s_replace = wy_redis_script_new(replace_lua);
    return WY_OK;
}

/* ---- one request ---- */

typedef enum { OP_PLACE, OP_LOCATE, OP_TRANSFER, OP_RELEASE } op_kind_t;

/* A placement as stored in world:{char:<id>}. */
typedef struct {
    char account[WORLD_REF_MAX + 1], zone[ZONE_ID_MAX + 1], inst[WORLD_INST_MAX + 1],
        game[WORLD_GAME_ID_MAX + 1];
    double x, y;
    uint64_t placed;
} stored_t;

typedef struct {
    world_svc_t *w;
    wy_grpc_call_id_t call;
    op_kind_t kind;
    char account[WORLD_REF_MAX + 1], character[WORLD_REF_MAX + 1], party[WORLD_REF_MAX + 1];
    char portal[ZONE_ID_MAX + 1];
    bool by_account;
    bool found;           /* cur holds the stored placement */
    stored_t cur;         /* as read */
    const zone_t *zone;   /* where it goes */
    stored_t next;        /* what is written */
    bool reused;          /* Place answered the living placement */
    const zone_t *unseat; /* after the commit: leave this zone's seat (NULL: none) */
} op_t;

static void step_read(op_t *op);
static void hosts_set(world_svc_t *w, size_t zi, const char *inst, const char *game);
static void on_locate_game(int status, redisReply *reply, void *ud);
static void step_seat(op_t *op);
static void step_commit(op_t *op, bool force);
static void step_account(op_t *op);

static void op_finish(op_t *op)
{
    world_svc_t *w = op->w;
    wy_free(op);
    world_op_done(w);
}

static void op_fail(op_t *op, int err, const char *msg)
{
    wy_grpc_reply_error(op->call, err, msg);
    op_finish(op);
}

/* A Redis answer that is an error or the wrong shape: the message for the client. */
static int redis_failed(int status, redisReply *reply, op_t *op)
{
    if (status == WY_OK)
        return WY_OK;
    if (status == WY_EIO && reply && reply->type == REDIS_REPLY_ERROR && reply->str) {
        if (strncmp(reply->str, "FULL ", 5) == 0) {
            op_fail(op, WY_ELIMIT, reply->str + 5);
            return WY_ELIMIT;
        }
        if (strncmp(reply->str, "NOGAME ", 7) == 0) {
            op_fail(op, WY_EUNAVAIL, reply->str + 7);
            return WY_EUNAVAIL;
        }
    }
    wy_log_warn("redis command failed", "character", op->character, "error",
                reply && reply->str ? reply->str : wy_strerror(status), NULL);
    op_fail(op, WY_EUNAVAIL, "Redis is unavailable");
    return WY_EUNAVAIL;
}

static void copy_str(char *dst, size_t cap, const redisReply *r)
{
    size_t n = 0;
    if (r && r->type == REDIS_REPLY_STRING) {
        n = r->len < cap - 1 ? r->len : cap - 1;
        memcpy(dst, r->str, n);
    }
    dst[n] = '\0';
}

/* {account, zone, instance, game, x, y, placed} (HMGET or the commit script). False
 * when the placement does not exist (account nil). */
static bool parse_stored(const redisReply *r, stored_t *s)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 7 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return false;
    copy_str(s->account, sizeof s->account, r->element[0]);
    copy_str(s->zone, sizeof s->zone, r->element[1]);
    copy_str(s->inst, sizeof s->inst, r->element[2]);
    copy_str(s->game, sizeof s->game, r->element[3]);
    char num[48];
    copy_str(num, sizeof num, r->element[4]);
    s->x = strtod(num, NULL);
    copy_str(num, sizeof num, r->element[5]);
    s->y = strtod(num, NULL);
    copy_str(num, sizeof num, r->element[6]);
    s->placed = strtoull(num, NULL, 10);
    return true;
}

static void reply_placement(op_t *op, const stored_t *s)
{
    world_svc_t *w = op->w;
    const world_game_t *g = world_game_find(w, s->game);
    Wyvern__World__Placement out = WYVERN__WORLD__PLACEMENT__INIT;
    Wyvern__World__Point pos = WYVERN__WORLD__POINT__INIT;
    pos.x = s->x;
    pos.y = s->y;
    out.character_id = op->character;
    out.account_id = (char *)s->account;
    out.zone_id = (char *)s->zone;
    out.instance_id = (char *)s->inst;
    out.game_id = (char *)s->game;
    out.game_client_addr = g ? g->hb->client_addr : "";
    out.game_grpc_addr = g ? g->hb->grpc_addr : "";
    out.game_incarnation = g ? g->hb->incarnation : "";
    out.position = &pos;
    out.placed_at_ms = s->placed;
    if (op->kind != OP_LOCATE)
        out.expires_at_ms = wy_wall_ms() + w->placement_ttl_ms;
    wy_grpc_reply(op->call, &out.base);
}

static int eval(op_t *op, wy_redis_script_t *s, wy_redis_cb cb, int nkeys, int argc,
                const char *const *argv)
{
    int rc = wy_redis_eval(wy_daemon_redis(op->w->d), s, 0, cb, op, nkeys, argc, argv, NULL);
    if (rc != WY_OK)
        op_fail(op, WY_EUNAVAIL, "Redis is unavailable");
    return rc;
}

/* The six keys of a zone's slot (KEYS of the zone scripts). */
typedef struct {
    char k[KEYS_ZONE][ZONE_ID_MAX + 24];
} zone_keys_t;

static void zone_keys(zone_keys_t *zk, const char *zone)
{
    static const char *const fmt[KEYS_ZONE] = {RKEY_WORLD_ZONE,      RKEY_WORLD_ZONE_SEATS,
                                               RKEY_WORLD_ZONE_SEAT, RKEY_WORLD_ZONE_COUNT,
                                               RKEY_WORLD_ZONE_NEXT, RKEY_WORLD_ZONE_KEYED};
    for (int i = 0; i < KEYS_ZONE; i++)
        snprintf(zk->k[i], sizeof zk->k[i], fmt[i], zone);
}

/* ---- who hosts which instance (this replica's view) ---- */

static void hosts_set(world_svc_t *w, size_t zi, const char *inst, const char *game)
{
    if (!w->hosts)
        w->hosts = wy_calloc(w->cat->n, sizeof *w->hosts);
    world_zone_hosts_t *zh = &w->hosts[zi];
    size_t i = 0;
    while (i < zh->n && strcmp(zh->hosts[i].inst, inst) != 0)
        i++;
    if (i == zh->n) {
        zh->hosts = wy_realloc(zh->hosts, (zh->n + 1) * sizeof *zh->hosts);
        zh->n++;
        snprintf(zh->hosts[i].inst, sizeof zh->hosts[i].inst, "%s", inst);
    }
    snprintf(zh->hosts[i].game, sizeof zh->hosts[i].game, "%s", game);
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t world_hosted(const world_svc_t *w, const char *game, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t zi = 0; w->hosts && zi < w->cat->n; zi++)
        for (size_t i = 0; i < w->hosts[zi].n && n < max; i++)
            if (strcmp(w->hosts[zi].hosts[i].game, game) == 0)
                out[n++] = w->hosts[zi].hosts[i].inst;
    qsort(out, n, sizeof *out, by_str);
    return n;
}

size_t world_hosts_total(const world_svc_t *w)
{
    size_t n = 0;
    for (size_t zi = 0; w->hosts && zi < w->cat->n; zi++)
        n += w->hosts[zi].n;
    return n;
}

void world_hosts_free(world_svc_t *w)
{
    for (size_t zi = 0; w->hosts && zi < w->cat->n; zi++)
        wy_free(w->hosts[zi].hosts);
    wy_free(w->hosts);
    w->hosts = NULL;
}

/* ---- read the stored placement ---- */

static void on_read(int status, redisReply *reply, void *ud)
{
    op_t *op = ud;
    if (redis_failed(status, reply, op) != WY_OK)
        return;
    op->found = parse_stored(reply, &op->cur);
    if (op->found && op->by_account && strcmp(op->cur.account, op->account) != 0)
        op->found = false; /* the index outlived the placement: another account's now */
    world_svc_t *w = op->w;
    if (op->kind == OP_LOCATE) {
        if (!op->found) {
            op_fail(op, WY_ENOTFOUND, "not placed");
            return;
        }
        op->next = op->cur;
        op->zone = zone_catalog_find(w->cat, op->cur.zone);
        /* The hosting game may have changed since (a dead game's instances move). */
        char key[ZONE_ID_MAX + 24];
        snprintf(key, sizeof key, RKEY_WORLD_ZONE, op->cur.zone);
        const char *argv[] = {"HGET", key, op->cur.inst};
        if (wy_redis_command_argv(wy_daemon_redis(w->d), on_locate_game, op, 3, argv, NULL) !=
            WY_OK)
            op_fail(op, WY_EUNAVAIL, "Redis is unavailable");
        return;
    }
    if (op->kind == OP_TRANSFER) {
        const zone_t *from = op->found ? zone_catalog_find(w->cat, op->cur.zone) : NULL;
        if (!from) {
            op_fail(op, WY_ENOTFOUND, "not placed");
            return;
        }
        const zone_portal_t *p = zone_portal_find(from, op->portal);
        if (!p) {
            op_fail(op, WY_ENOTFOUND, "no such portal in the character's zone");
            return;
        }
        op->zone = zone_catalog_find(w->cat, p->target);
        op->next = op->cur;
        op->next.x = p->arrival.x;
        op->next.y = p->arrival.y;
        op->next.placed = wy_wall_ms();
        snprintf(op->next.zone, sizeof op->next.zone, "%s", op->zone->id);
        if (op->zone != from)
            op->unseat = from;
        step_seat(op);
        return;
    }
    /* Place */
    if (op->found && strcmp(op->cur.account, op->account) != 0) {
        op_fail(op, WY_EPERM, "the character is placed for another account");
        return;
    }
    if (op->found && zone_catalog_find(w->cat, op->cur.zone)) {
        op->reused = true; /* the living placement: same zone, instance, position */
        op->zone = zone_catalog_find(w->cat, op->cur.zone);
        op->next = op->cur;
    }
    step_seat(op);
}

static void on_locate_game(int status, redisReply *reply, void *ud)
{
    op_t *op = ud;
    if (redis_failed(status, reply, op) != WY_OK)
        return;
    if (reply->type == REDIS_REPLY_STRING)
        copy_str(op->next.game, sizeof op->next.game, reply);
    reply_placement(op, &op->next);
    op_finish(op);
}

static void step_read(op_t *op)
{
    char key[WORLD_REF_MAX + 24];
    snprintf(key, sizeof key, RKEY_WORLD_CHAR, op->character);
    const char *argv[] = {"HMGET", key, "account", "zone", "inst", "game", "x", "y", "placed"};
    if (wy_redis_command_argv(wy_daemon_redis(op->w->d), on_read, op, 9, argv, NULL) != WY_OK)
        op_fail(op, WY_EUNAVAIL, "Redis is unavailable");
}

/* ---- seat in the zone ---- */

static void on_seat(int status, redisReply *reply, void *ud)
{
    op_t *op = ud;
    if (redis_failed(status, reply, op) != WY_OK)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        op_fail(op, WY_EINTERNAL, "unexpected answer of the seat script");
        return;
    }
    copy_str(op->next.inst, sizeof op->next.inst, reply->element[0]);
    copy_str(op->next.game, sizeof op->next.game, reply->element[1]);
    hosts_set(op->w, (size_t)(op->zone - op->w->cat->zones), op->next.inst, op->next.game);
    /* A Place that makes a new placement must not overwrite one made meanwhile; one that
     * found the character's placement (living, or in a zone the catalog no longer has)
     * rewrites it. */
    step_commit(op, op->kind == OP_TRANSFER || op->found);
}

static void step_seat(op_t *op)
{
    world_svc_t *w = op->w;
    const zone_t *z = op->zone;
    zone_keys_t zk;
    zone_keys(&zk, z->id);
    char now[24], ttl[24], cap[16], nkeep[16], ikey[WORLD_REF_MAX + 8] = "";
    snprintf(now, sizeof now, "%llu", (unsigned long long)wy_wall_ms());
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)w->placement_ttl_ms);
    snprintf(cap, sizeof cap, "%d", z->capacity);
    if (z->instancing == ZONE_PER_PARTY && op->party[0])
        snprintf(ikey, sizeof ikey, "party:%s", op->party);
    else if (z->instancing != ZONE_SHARED) /* a player's own, or a party of one */
        snprintf(ikey, sizeof ikey, "char:%s", op->character);
    const char **keep = wy_calloc(2 * w->ngames + 1, sizeof *keep);
    size_t nk = world_keepers(w, z->id, keep);
    size_t nc = world_candidates(w, z->id, keep + nk, w->ngames);
    snprintf(nkeep, sizeof nkeep, "%zu", nk);
    size_t argc = KEYS_ZONE + 7 + nk + nc;
    const char **argv = wy_calloc(argc, sizeof *argv);
    size_t a = 0;
    for (int i = 0; i < KEYS_ZONE; i++)
        argv[a++] = zk.k[i];
    argv[a++] = op->character;
    argv[a++] = now;
    argv[a++] = ttl;
    argv[a++] = cap;
    argv[a++] = ikey;
    argv[a++] = z->id;
    argv[a++] = nkeep;
    for (size_t i = 0; i < nk + nc; i++)
        argv[a++] = keep[i];
    eval(op, w->s_seat, on_seat, KEYS_ZONE, (int)argc, argv);
    wy_free(argv);
    wy_free(keep);
}

/* ---- write the placement ---- */

static void on_unseated(int status, redisReply *reply, void *ud)
{
    WY_UNUSED(reply);
    op_t *op = ud;
    if (status != WY_OK && status != WY_ECANCELED) /* the seat lapses with its TTL anyway */
        wy_log_warn("leaving a seat failed", "character", op->character, "zone", op->unseat->id,
                    NULL);
    op->unseat = NULL;
    step_account(op);
}

static void on_commit(int status, redisReply *reply, void *ud)
{
    op_t *op = ud;
    if (redis_failed(status, reply, op) != WY_OK)
        return;
    stored_t got;
    if (!parse_stored(reply, &got)) {
        op_fail(op, WY_EINTERNAL, "unexpected answer of the commit script");
        return;
    }
    if (op->kind == OP_PLACE && strcmp(got.zone, op->next.zone) != 0) {
        /* A concurrent Place won with another zone: leave the seat this one took. */
        op->unseat = op->zone;
    } else if (op->kind == OP_PLACE && strcmp(got.inst, op->next.inst) != 0) {
        wy_log_warn("placement race left two seats", "character", op->character, NULL);
    }
    op->reused |= op->kind == OP_PLACE && got.placed != op->next.placed;
    op->next = got;
    if (op->unseat) {
        zone_keys_t zk;
        zone_keys(&zk, op->unseat->id);
        const char *argv[KEYS_ZONE + 1];
        for (int i = 0; i < KEYS_ZONE; i++)
            argv[i] = zk.k[i];
        argv[KEYS_ZONE] = op->character;
        eval(op, op->w->s_unseat, on_unseated, KEYS_ZONE, KEYS_ZONE + 1, argv);
        return;
    }
    step_account(op);
}

static void step_commit(op_t *op, bool force)
{
    world_svc_t *w = op->w;
    char key[WORLD_REF_MAX + 24], x[32], y[32], placed[24], ttl[24];
    snprintf(key, sizeof key, RKEY_WORLD_CHAR, op->character);
    snprintf(x, sizeof x, "%.17g", op->next.x);
    snprintf(y, sizeof y, "%.17g", op->next.y);
    snprintf(placed, sizeof placed, "%llu", (unsigned long long)op->next.placed);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)w->placement_ttl_ms);
    const char *argv[] = {key,
                          force ? "1" : "0",
                          op->next.account,
                          op->next.zone,
                          op->next.inst,
                          op->next.game,
                          x,
                          y,
                          placed,
                          ttl};
    eval(op, w->s_commit, on_commit, 1, (int)WY_ARRAY_LEN(argv), argv);
}

/* ---- the account's index, then the answer ---- */

static void on_account(int status, redisReply *reply, void *ud)
{
    op_t *op = ud;
    if (redis_failed(status, reply, op) != WY_OK)
        return;
    if (op->kind == OP_PLACE)
        wy_metric_inc(op->reused ? op->w->m_placements_reused : op->w->m_placements);
    else
        wy_metric_inc(op->w->m_transfers);
    if (op->kind == OP_TRANSFER || !op->reused)
        wy_log_info(op->kind == OP_PLACE ? "character placed" : "character transferred",
                    "character", op->character, "zone", op->next.zone, "instance", op->next.inst,
                    "game", op->next.game, NULL);
    reply_placement(op, &op->next);
    op_finish(op);
}

static void step_account(op_t *op)
{
    char key[WORLD_REF_MAX + 24], ttl[24];
    snprintf(key, sizeof key, RKEY_WORLD_ACCT, op->next.account);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)op->w->placement_ttl_ms);
    const char *argv[] = {"SET", key, op->character, "PX", ttl};
    if (wy_redis_command_argv(wy_daemon_redis(op->w->d), on_account, op, 5, argv, NULL) != WY_OK)
        op_fail(op, WY_EUNAVAIL, "Redis is unavailable");
}

/* ---- the handlers ---- */

static bool ref_ok(wy_grpc_call_id_t call, const char *s, const char *what, bool required)
{
    size_t n = strlen(s);
    bool ok = (n > 0 || !required) && n <= WORLD_REF_MAX && !strpbrk(s, "{}");
    if (!ok) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be 1..%d bytes without braces", what, WORLD_REF_MAX);
        wy_grpc_reply_error(call, WY_EINVAL, msg);
    }
    return ok;
}

static op_t *op_new(world_svc_t *w, wy_grpc_call_id_t call, op_kind_t kind)
{
    op_t *op = wy_calloc(1, sizeof *op);
    op->w = w;
    op->call = call;
    op->kind = kind;
    world_op_begin(w);
    return op;
}

/* Where a new placement goes: the target, else the saved zone, else the start zone; the
 * saved position when it is in that zone and walkable, else a spawn point (one per
 * character, so a crowd does not stack on one point). */
static void choose_spot(const world_svc_t *w, const Wyvern__World__PlaceRequest *in, op_t *op)
{
    const zone_t *z = in->target_zone[0] ? zone_catalog_find(w->cat, in->target_zone) : NULL;
    const zone_t *saved = in->saved_zone[0] ? zone_catalog_find(w->cat, in->saved_zone) : NULL;
    if (!z)
        z = saved ? saved : w->start_zone;
    op->zone = z;
    snprintf(op->next.zone, sizeof op->next.zone, "%s", z->id);
    if (z == saved && in->saved_position &&
        !zone_blocked_at(z, in->saved_position->x, in->saved_position->y)) {
        op->next.x = in->saved_position->x;
        op->next.y = in->saved_position->y;
    } else {
        uint32_t h = 2166136261u; /* FNV-1a of the character id */
        for (const char *p = op->character; *p; p++)
            h = (h ^ (uint8_t)*p) * 16777619u;
        op->next.x = z->spawns[h % z->nspawns].x;
        op->next.y = z->spawns[h % z->nspawns].y;
    }
    op->next.placed = wy_wall_ms();
    snprintf(op->next.account, sizeof op->next.account, "%s", op->account);
}

void world_rpc_place(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__World__PlaceRequest *in = (const Wyvern__World__PlaceRequest *)req;
    world_svc_t *w = world_svc_or_refuse(arg, call);
    if (!w || !ref_ok(call, in->account_id, "account_id", true) ||
        !ref_ok(call, in->character_id, "character_id", true) ||
        !ref_ok(call, in->party_id, "party_id", false))
        return;
    if (in->target_zone[0] && !zone_catalog_find(w->cat, in->target_zone)) {
        wy_grpc_reply_error(call, WY_ENOTFOUND, "no such target_zone in the catalog");
        return;
    }
    op_t *op = op_new(w, call, OP_PLACE);
    snprintf(op->account, sizeof op->account, "%s", in->account_id);
    snprintf(op->character, sizeof op->character, "%s", in->character_id);
    snprintf(op->party, sizeof op->party, "%s", in->party_id);
    choose_spot(w, in, op);
    step_read(op);
}

void world_rpc_transfer(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__World__TransferRequest *in = (const Wyvern__World__TransferRequest *)req;
    world_svc_t *w = world_svc_or_refuse(arg, call);
    if (!w || !ref_ok(call, in->character_id, "character_id", true) ||
        !ref_ok(call, in->party_id, "party_id", false))
        return;
    if (in->portal_id[0] == '\0' || strlen(in->portal_id) > ZONE_ID_MAX) {
        wy_grpc_reply_error(call, WY_EINVAL, "portal_id must be 1..32 bytes");
        return;
    }
    op_t *op = op_new(w, call, OP_TRANSFER);
    snprintf(op->character, sizeof op->character, "%s", in->character_id);
    snprintf(op->party, sizeof op->party, "%s", in->party_id);
    snprintf(op->portal, sizeof op->portal, "%s", in->portal_id);
    step_read(op);
}

static void on_account_char(int status, redisReply *reply, void *ud)
{
    op_t *op = ud;
    if (redis_failed(status, reply, op) != WY_OK)
        return;
    if (reply->type != REDIS_REPLY_STRING || reply->len == 0 || reply->len > WORLD_REF_MAX) {
        op_fail(op, WY_ENOTFOUND, "not placed");
        return;
    }
    copy_str(op->character, sizeof op->character, reply);
    step_read(op);
}

void world_rpc_locate(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__World__LocateRequest *in = (const Wyvern__World__LocateRequest *)req;
    world_svc_t *w = world_svc_or_refuse(arg, call);
    if (!w)
        return;
    if (in->who_case == WYVERN__WORLD__LOCATE_REQUEST__WHO_CHARACTER_ID) {
        if (!ref_ok(call, in->character_id, "character_id", true))
            return;
        op_t *op = op_new(w, call, OP_LOCATE);
        snprintf(op->character, sizeof op->character, "%s", in->character_id);
        step_read(op);
        return;
    }
    if (in->who_case != WYVERN__WORLD__LOCATE_REQUEST__WHO_ACCOUNT_ID) {
        wy_grpc_reply_error(call, WY_EINVAL, "set character_id or account_id");
        return;
    }
    if (!ref_ok(call, in->account_id, "account_id", true))
        return;
    op_t *op = op_new(w, call, OP_LOCATE);
    op->by_account = true;
    snprintf(op->account, sizeof op->account, "%s", in->account_id);
    char key[WORLD_REF_MAX + 24];
    snprintf(key, sizeof key, RKEY_WORLD_ACCT, op->account);
    const char *argv[] = {"GET", key};
    if (wy_redis_command_argv(wy_daemon_redis(w->d), on_account_char, op, 2, argv, NULL) != WY_OK)
        op_fail(op, WY_EUNAVAIL, "Redis is unavailable");
}

/* ---- instances of dead games placed again ---- */

typedef struct {
    world_svc_t *w;
    size_t zi; /* the zone's index in the catalog */
} replace_op_t;

static void on_replaced(int status, redisReply *reply, void *ud)
{
    replace_op_t *op = ud;
    world_svc_t *w = op->w;
    if (status == WY_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY &&
        reply->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *moved = reply->element[0], *all = reply->element[1];
        for (size_t i = 0; i + 2 < moved->elements; i += 3) {
            wy_metric_inc(w->m_replaced);
            wy_log_info("zone instance placed again", "instance", moved->element[i]->str, "from",
                        moved->element[i + 1]->str, "to", moved->element[i + 2]->str, NULL);
        }
        if (!w->hosts)
            w->hosts = wy_calloc(w->cat->n, sizeof *w->hosts);
        world_zone_hosts_t *zh = &w->hosts[op->zi];
        zh->n = 0; /* the zone's whole assignment, as Redis has it now */
        for (size_t i = 0; i + 1 < all->elements; i += 2)
            if (all->element[i]->type == REDIS_REPLY_STRING &&
                all->element[i + 1]->type == REDIS_REPLY_STRING)
                hosts_set(w, op->zi, all->element[i]->str, all->element[i + 1]->str);
    } else if (status != WY_ECANCELED) {
        wy_log_warn("replacing zone instances failed", "error",
                    reply && reply->str ? reply->str : wy_strerror(status), NULL);
    }
    wy_free(op);
    world_op_done(w);
}

void world_replace_all(world_svc_t *w)
{
    const char **ids = wy_calloc(2 * w->ngames + 1, sizeof *ids);
    for (size_t zi = 0; zi < w->cat->n; zi++) {
        const zone_t *z = &w->cat->zones[zi];
        size_t nk = world_keepers(w, z->id, ids);
        size_t nc = world_candidates(w, z->id, ids + nk, w->ngames);
        char key[ZONE_ID_MAX + 24], nkeep[16];
        snprintf(key, sizeof key, RKEY_WORLD_ZONE, z->id);
        snprintf(nkeep, sizeof nkeep, "%zu", nk);
        size_t argc = 2 + nk + nc;
        const char **argv = wy_calloc(argc, sizeof *argv);
        argv[0] = key;
        argv[1] = nkeep;
        for (size_t i = 0; i < nk + nc; i++)
            argv[2 + i] = ids[i];
        replace_op_t *op = wy_malloc(sizeof *op);
        op->w = w;
        op->zi = zi;
        world_op_begin(w);
        if (wy_redis_eval(wy_daemon_redis(w->d), w->s_replace, 0, on_replaced, op, 1, (int)argc,
                          argv, NULL) != WY_OK) {
            wy_free(op); /* Redis down: the next pass tries again */
            w->inflight--;
        }
        wy_free(argv);
    }
    wy_free(ids);
}

/* ---- release: the player left its game instance ---- */

static void release_reply(op_t *op, bool released)
{
    Wyvern__World__ReleaseResponse out = WYVERN__WORLD__RELEASE_RESPONSE__INIT;
    out.released = released;
    wy_grpc_reply(op->call, &out.base);
    if (released)
        wy_log_info("placement released", "character", op->character, "instance", op->cur.inst,
                    NULL);
    op_finish(op);
}

static void on_release_acct(int status, redisReply *reply, void *ud)
{
    op_t *op = ud;
    if (redis_failed(status, reply, op) != WY_OK)
        return;
    release_reply(op, true);
}

static void release_acct(op_t *op)
{
    char key[WORLD_REF_MAX + 24];
    snprintf(key, sizeof key, RKEY_WORLD_ACCT, op->cur.account);
    const char *argv[] = {key, op->character};
    eval(op, op->w->s_acct_release, on_release_acct, 1, 2, argv);
}

static void on_release_unseat(int status, redisReply *reply, void *ud)
{
    op_t *op = ud;
    if (redis_failed(status, reply, op) != WY_OK)
        return;
    release_acct(op);
}

static void on_release(int status, redisReply *reply, void *ud)
{
    op_t *op = ud;
    if (redis_failed(status, reply, op) != WY_OK)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        release_reply(op, false);
        return;
    }
    copy_str(op->cur.account, sizeof op->cur.account, reply->element[0]);
    copy_str(op->cur.zone, sizeof op->cur.zone, reply->element[1]);
    const zone_t *z = zone_catalog_find(op->w->cat, op->cur.zone);
    if (!z) {
        release_acct(op);
        return;
    }
    zone_keys_t zk;
    zone_keys(&zk, z->id);
    const char *argv[KEYS_ZONE + 1];
    for (int i = 0; i < KEYS_ZONE; i++)
        argv[i] = zk.k[i];
    argv[KEYS_ZONE] = op->character;
    eval(op, op->w->s_unseat, on_release_unseat, KEYS_ZONE, KEYS_ZONE + 1, argv);
}

void world_rpc_release(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__World__ReleaseRequest *in = (const Wyvern__World__ReleaseRequest *)req;
    world_svc_t *w = world_svc_or_refuse(arg, call);
    if (!w || !ref_ok(call, in->character_id, "character_id", true))
        return;
    if (in->instance_id[0] == '\0' || strlen(in->instance_id) >= WORLD_INST_MAX) {
        wy_grpc_reply_error(call, WY_EINVAL, "instance_id must be a zone instance (<zone>#<n>)");
        return;
    }
    op_t *op = op_new(w, call, OP_RELEASE);
    snprintf(op->character, sizeof op->character, "%s", in->character_id);
    snprintf(op->cur.inst, sizeof op->cur.inst, "%s", in->instance_id);
    char key[WORLD_REF_MAX + 24];
    snprintf(key, sizeof key, RKEY_WORLD_CHAR, op->character);
    const char *argv[] = {key, in->instance_id};
    eval(op, w->s_release, on_release, 1, 2, argv);
}
