/* wy-actor characters, the pure part (character.h): state, events, commands, names,
 * snapshots. Everything a character can become goes through actor_apply, on the write
 * path (the store applies the events it just committed) and on the load path alike. */
#include "character.h"
#include "friends.h"
#include "wy_text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- state ---- */

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

void actor_state_init(actor_state_t *s, const char *actor_id)
{
    memset(s, 0, sizeof *s);
    copy_str(s->actor_id, sizeof s->actor_id, actor_id);
}

void actor_state_clear(actor_state_t *s)
{
    char id[ACTOR_ID_LEN + 1];
    memcpy(id, s->actor_id, sizeof id);
    wy_free(s->items);
    actor_friends_free(&s->friends);
    actor_state_init(s, id);
}

void actor_state_copy(actor_state_t *dst, const actor_state_t *src)
{
    actor_stack_t *keep = dst->items;
    size_t keep_cap = dst->cap_items;
    actor_friends_t keep_friends = dst->friends;
    *dst = *src;
    dst->friends = keep_friends;
    actor_friends_copy(&dst->friends, &src->friends);
    if (keep_cap < src->n_items) {
        wy_free(keep);
        keep_cap = src->n_items;
        keep = keep_cap ? wy_malloc(keep_cap * sizeof *keep) : NULL;
    }
    dst->items = keep;
    dst->cap_items = keep_cap;
    if (src->n_items)
        memcpy(dst->items, src->items, src->n_items * sizeof *src->items);
}

static bool stacks_equal(const actor_state_t *a, const actor_state_t *b)
{
    for (size_t i = 0; i < a->n_items; i++)
        if (a->items[i].count != b->items[i].count || strcmp(a->items[i].item, b->items[i].item))
            return false;
    return true;
}

bool actor_state_equal(const actor_state_t *a, const actor_state_t *b)
{
    return !strcmp(a->actor_id, b->actor_id) && !strcmp(a->account_id, b->account_id) &&
           !strcmp(a->name, b->name) && !strcmp(a->class_name, b->class_name) &&
           a->level == b->level && a->xp == b->xp && a->gold == b->gold &&
           !strcmp(a->zone, b->zone) && a->x == b->x && a->y == b->y && a->z == b->z &&
           a->deleted == b->deleted && a->deleted_at_ms == b->deleted_at_ms &&
           a->created_at_ms == b->created_at_ms && a->seq == b->seq && a->n_items == b->n_items &&
           stacks_equal(a, b) && actor_friends_equal(&a->friends, &b->friends) &&
           actor_npc_equal(&a->npc, &b->npc);
}

/* Index of item, or of where it would go (*found false). */
static size_t find_stack(const actor_state_t *s, const char *item, bool *found)
{
    size_t lo = 0, hi = s->n_items;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->items[mid].item, item);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

uint32_t actor_state_items(const actor_state_t *s, const char *item)
{
    bool found;
    size_t i = find_stack(s, item, &found);
    return found ? s->items[i].count : 0;
}

uint32_t actor_level_for_xp(uint64_t xp)
{
    uint32_t level = 1;
    while (level < ACTOR_MAX_LEVEL && 50ull * (level + 1) * level <= xp)
        level++;
    return level;
}

/* ---- events ---- */

static uint64_t add_capped(uint64_t a, uint64_t b, uint64_t cap)
{
    return b > cap || a > cap - b ? cap : a + b;
}

static void add_items(actor_state_t *s, const char *item, uint32_t count)
{
    bool found;
    size_t i = find_stack(s, item, &found);
    if (found) {
        s->items[i].count = (uint32_t)add_capped(s->items[i].count, count, ACTOR_MAX_STACK);
        return;
    }
    if (count == 0)
        return;
    if (s->n_items == s->cap_items) {
        size_t cap = s->cap_items ? s->cap_items * 2 : 8;
        actor_stack_t *n = wy_malloc(cap * sizeof *n);
        if (s->n_items)
            memcpy(n, s->items, s->n_items * sizeof *n);
        wy_free(s->items);
        s->items = n;
        s->cap_items = cap;
    }
    memmove(s->items + i + 1, s->items + i, (s->n_items - i) * sizeof *s->items);
    copy_str(s->items[i].item, sizeof s->items[i].item, item);
    s->items[i].count = count > ACTOR_MAX_STACK ? ACTOR_MAX_STACK : count;
    s->n_items++;
}

static void remove_items(actor_state_t *s, const char *item, uint32_t count)
{
    bool found;
    size_t i = find_stack(s, item, &found);
    if (!found)
        return;
    if (s->items[i].count > count) {
        s->items[i].count -= count;
        return;
    }
    memmove(s->items + i, s->items + i + 1, (s->n_items - i - 1) * sizeof *s->items);
    s->n_items--;
}

static void set_position(actor_state_t *s, const Wyvern__Actor__Position *p)
{
    copy_str(s->zone, sizeof s->zone, p ? p->zone : "");
    s->x = p ? p->x : 0;
    s->y = p ? p->y : 0;
    s->z = p ? p->z : 0;
}

int actor_apply(actor_state_t *s, uint64_t seq, const Wyvern__Actor__Event *ev)
{
    if (seq != s->seq + 1)
        return WY_ESTATE;
    bool creating = ev->body_case == WYVERN__ACTOR__EVENT__BODY_CREATED ||
                    ev->body_case == WYVERN__ACTOR__EVENT__BODY_NPC_CREATED;
    if (creating != (s->seq == 0))
        return WY_EINVAL;
    switch (ev->body_case) {
    case WYVERN__ACTOR__EVENT__BODY_CREATED:
        copy_str(s->account_id, sizeof s->account_id, ev->created->account_id);
        copy_str(s->name, sizeof s->name, ev->created->name);
        copy_str(s->class_name, sizeof s->class_name, ev->created->class_name);
        s->level = 1;
        s->created_at_ms = ev->at_ms;
        break;
    case WYVERN__ACTOR__EVENT__BODY_XP_GAINED:
        s->xp = add_capped(s->xp, ev->xp_gained->amount, ACTOR_MAX_XP);
        break;
    case WYVERN__ACTOR__EVENT__BODY_LEVEL_REACHED:
        if (ev->level_reached->level > s->level)
            s->level = ev->level_reached->level > ACTOR_MAX_LEVEL ? ACTOR_MAX_LEVEL
                                                                  : ev->level_reached->level;
        break;
    case WYVERN__ACTOR__EVENT__BODY_ITEM_ADDED:
        add_items(s, ev->item_added->item, ev->item_added->count);
        break;
    case WYVERN__ACTOR__EVENT__BODY_ITEM_REMOVED:
        remove_items(s, ev->item_removed->item, ev->item_removed->count);
        break;
    case WYVERN__ACTOR__EVENT__BODY_MOVED:
        set_position(s, ev->moved->position);
        break;
    case WYVERN__ACTOR__EVENT__BODY_CURRENCY_EARNED:
        s->gold = add_capped(s->gold, ev->currency_earned->amount, ACTOR_MAX_GOLD);
        break;
    case WYVERN__ACTOR__EVENT__BODY_CURRENCY_SPENT:
        /* Validated before it was written; a floor at 0 keeps "never negative" even for a
         * log someone edited by hand. */
        s->gold = ev->currency_spent->amount > s->gold ? 0 : s->gold - ev->currency_spent->amount;
        break;
    case WYVERN__ACTOR__EVENT__BODY_DELETED:
        s->deleted = true;
        s->deleted_at_ms = ev->at_ms;
        break;
    case WYVERN__ACTOR__EVENT__BODY_RESTORED:
        s->deleted = false;
        s->deleted_at_ms = 0;
        break;
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_SENT: /* friends.h */
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_RECEIVED:
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_ADDED:
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_DECLINED:
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_REMOVED:
        actor_friends_apply(&s->friends, ev);
        break;
    case WYVERN__ACTOR__EVENT__BODY_NPC_CREATED: /* NPCs: npc.c */
        actor_npc_apply(s, ev);
        for (size_t i = 0; i < ev->npc_created->n_stock; i++)
            add_items(s, ev->npc_created->stock[i]->item, ev->npc_created->stock[i]->count);
        s->level = 1;
        s->created_at_ms = ev->at_ms;
        break;
    case WYVERN__ACTOR__EVENT__BODY_NPC_KILLED:
    case WYVERN__ACTOR__EVENT__BODY_NPC_RESPAWNED:
        if (actor_npc_apply(s, ev) != WY_OK)
            return WY_EINVAL;
        break;
    case WYVERN__ACTOR__EVENT__BODY_TRADED: /* cross-actor transactions: txn.h */
        for (size_t i = 0; i < ev->traded->n_gave; i++)
            remove_items(s, ev->traded->gave[i]->item, ev->traded->gave[i]->count);
        s->gold = ev->traded->gold_gave > s->gold ? 0 : s->gold - ev->traded->gold_gave;
        for (size_t i = 0; i < ev->traded->n_got; i++)
            add_items(s, ev->traded->got[i]->item, ev->traded->got[i]->count);
        s->gold = add_capped(s->gold, ev->traded->gold_got, ACTOR_MAX_GOLD);
        break;
    default:
        return WY_EINVAL;
    }
    s->seq = seq;
    return WY_OK;
}

int actor_apply_packed(actor_state_t *s, uint64_t seq, const uint8_t *data, size_t len)
{
    Wyvern__Actor__Event *ev = wyvern__actor__event__unpack(NULL, len, data);
    if (!ev)
        return WY_EIO;
    int rc = actor_apply(s, seq, ev);
    wyvern__actor__event__free_unpacked(ev, NULL);
    return rc;
}

void actor_events_clear(actor_events_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        wy_free(e->ev[i].data);
    e->n = 0;
}

void actor_event_pack(const Wyvern__Actor__Event *ev, const char *type, actor_event_t *out)
{
    out->type = type;
    out->len = wyvern__actor__event__get_packed_size(ev);
    out->data = wy_malloc(out->len ? out->len : 1);
    wyvern__actor__event__pack(ev, out->data);
}

void actor_event_created(const char *account_id, const char *name, const char *class_name,
                         int64_t now_ms, actor_event_t *out)
{
    Wyvern__Actor__CharacterCreated c = WYVERN__ACTOR__CHARACTER_CREATED__INIT;
    c.account_id = (char *)account_id;
    c.name = (char *)name;
    c.class_name = (char *)class_name;
    Wyvern__Actor__Event ev = WYVERN__ACTOR__EVENT__INIT;
    ev.at_ms = now_ms;
    ev.body_case = WYVERN__ACTOR__EVENT__BODY_CREATED;
    ev.created = &c;
    actor_event_pack(&ev, "created", out);
}

/* ---- commands ---- */

static bool text_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return n <= max && wy_text_valid_utf8(s ? s : "", n);
}

bool actor_item_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ACTOR_ITEM_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("_.:-", c)))
            return false;
    }
    return true;
}

static bool coord_ok(float v)
{
    return isfinite(v) && fabsf(v) <= ACTOR_MAX_COORD;
}

int actor_cmd_from_request(const Wyvern__Actor__ApplyRequest *req, actor_cmd_t *out,
                           const char **why)
{
    memset(out, 0, sizeof *out);
    const char *text = NULL;
    switch (req->command_case) {
    case WYVERN__ACTOR__APPLY_REQUEST__COMMAND_GAIN_XP:
        out->kind = ACTOR_CMD_GAIN_XP;
        out->amount = req->gain_xp->amount;
        text = req->gain_xp->source;
        if (out->amount < 1 || out->amount > ACTOR_MAX_XP_GAIN) {
            *why = "gain_xp.amount must be 1..1000000";
            return WY_EINVAL;
        }
        break;
    case WYVERN__ACTOR__APPLY_REQUEST__COMMAND_ADD_ITEM:
    case WYVERN__ACTOR__APPLY_REQUEST__COMMAND_REMOVE_ITEM: {
        bool add = req->command_case == WYVERN__ACTOR__APPLY_REQUEST__COMMAND_ADD_ITEM;
        const char *item = add ? req->add_item->item : req->remove_item->item;
        out->kind = add ? ACTOR_CMD_ADD_ITEM : ACTOR_CMD_REMOVE_ITEM;
        out->amount = add ? req->add_item->count : req->remove_item->count;
        text = add ? req->add_item->source : req->remove_item->reason;
        if (!actor_item_valid(item)) {
            *why = "item must be 1..64 of [a-z0-9_.:-]";
            return WY_EINVAL;
        }
        if (out->amount < 1 || out->amount > ACTOR_MAX_ITEM_MOVE) {
            *why = "item count must be 1..1000000";
            return WY_EINVAL;
        }
        copy_str(out->item, sizeof out->item, item);
        break;
    }
    case WYVERN__ACTOR__APPLY_REQUEST__COMMAND_MOVE: {
        const Wyvern__Actor__Position *p = req->move->position;
        out->kind = ACTOR_CMD_MOVE;
        if (!p || !p->zone || !*p->zone || !text_ok(p->zone, ACTOR_ZONE_MAX)) {
            *why = "move.position.zone must be 1..64 bytes of UTF-8";
            return WY_EINVAL;
        }
        if (!coord_ok(p->x) || !coord_ok(p->y) || !coord_ok(p->z)) {
            *why = "move.position coordinates must be finite, at most 1000000 from 0";
            return WY_EINVAL;
        }
        copy_str(out->zone, sizeof out->zone, p->zone);
        out->x = p->x;
        out->y = p->y;
        out->z = p->z;
        break;
    }
    case WYVERN__ACTOR__APPLY_REQUEST__COMMAND_EARN_CURRENCY:
    case WYVERN__ACTOR__APPLY_REQUEST__COMMAND_SPEND_CURRENCY: {
        bool earn = req->command_case == WYVERN__ACTOR__APPLY_REQUEST__COMMAND_EARN_CURRENCY;
        out->kind = earn ? ACTOR_CMD_EARN : ACTOR_CMD_SPEND;
        out->amount = earn ? req->earn_currency->amount : req->spend_currency->amount;
        text = earn ? req->earn_currency->source : req->spend_currency->reason;
        if (out->amount < 1 || out->amount > ACTOR_MAX_GOLD_MOVE) {
            *why = "currency amount must be 1..1000000000";
            return WY_EINVAL;
        }
        break;
    }
    default: /* NPC commands, or none */
        return actor_npc_cmd_from_request(req, out, why);
    }
    if (!text_ok(text, ACTOR_TEXT_MAX)) {
        *why = "source / reason must be at most 64 bytes of UTF-8";
        return WY_EINVAL;
    }
    copy_str(out->text, sizeof out->text, text);
    return WY_OK;
}

static int refuse(int rc, char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(int rc, char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return rc;
}

int actor_decide(const actor_state_t *s, const actor_cmd_t *c, int64_t now_ms,
                 int64_t restore_window_ms, actor_events_t *out, char *why, size_t why_cap)
{
    out->n = 0;
    if (s->seq == 0)
        return refuse(WY_ENOTFOUND, why, why_cap, "no such character");
    if (s->deleted && c->kind != ACTOR_CMD_DELETE && c->kind != ACTOR_CMD_RESTORE)
        return refuse(WY_ESTATE, why, why_cap, "character is deleted");
    bool npc_handled;
    int npc_rc = actor_npc_decide(s, c, now_ms, out, why, why_cap, &npc_handled);
    if (npc_handled)
        return npc_rc;

    Wyvern__Actor__Event ev = WYVERN__ACTOR__EVENT__INIT;
    ev.at_ms = now_ms;
    Wyvern__Actor__Position pos = WYVERN__ACTOR__POSITION__INIT;
    union {
        Wyvern__Actor__XpGained xp;
        Wyvern__Actor__ItemAdded add;
        Wyvern__Actor__ItemRemoved rem;
        Wyvern__Actor__Moved moved;
        Wyvern__Actor__CurrencyEarned earn;
        Wyvern__Actor__CurrencySpent spend;
        Wyvern__Actor__CharacterDeleted del;
        Wyvern__Actor__CharacterRestored res;
    } b;
    const char *type = NULL;
    switch (c->kind) {
    case ACTOR_CMD_GAIN_XP:
        wyvern__actor__xp_gained__init(&b.xp);
        b.xp.amount = c->amount;
        b.xp.source = (char *)c->text;
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_XP_GAINED;
        ev.xp_gained = &b.xp;
        type = "xp_gained";
        break;
    case ACTOR_CMD_ADD_ITEM: {
        bool found;
        size_t i = find_stack(s, c->item, &found);
        if (!found && s->n_items >= ACTOR_MAX_STACKS)
            return refuse(WY_ELIMIT, why, why_cap, "inventory full (%d different items)",
                          ACTOR_MAX_STACKS);
        if (found && (uint64_t)s->items[i].count + c->amount > ACTOR_MAX_STACK)
            return refuse(WY_ELIMIT, why, why_cap, "at most %u of one item", ACTOR_MAX_STACK);
        wyvern__actor__item_added__init(&b.add);
        b.add.item = (char *)c->item;
        b.add.count = (uint32_t)c->amount;
        b.add.source = (char *)c->text;
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_ITEM_ADDED;
        ev.item_added = &b.add;
        type = "item_added";
        break;
    }
    case ACTOR_CMD_REMOVE_ITEM: {
        uint32_t have = actor_state_items(s, c->item);
        if (have < c->amount)
            return refuse(WY_ESTATE, why, why_cap, "not enough %s (have %u, need %llu)", c->item,
                          have, (unsigned long long)c->amount);
        wyvern__actor__item_removed__init(&b.rem);
        b.rem.item = (char *)c->item;
        b.rem.count = (uint32_t)c->amount;
        b.rem.reason = (char *)c->text;
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_ITEM_REMOVED;
        ev.item_removed = &b.rem;
        type = "item_removed";
        break;
    }
    case ACTOR_CMD_MOVE:
        pos.zone = (char *)c->zone;
        pos.x = c->x;
        pos.y = c->y;
        pos.z = c->z;
        wyvern__actor__moved__init(&b.moved);
        b.moved.position = &pos;
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_MOVED;
        ev.moved = &b.moved;
        type = "moved";
        break;
    case ACTOR_CMD_EARN:
        if (s->gold + c->amount > ACTOR_MAX_GOLD)
            return refuse(WY_ELIMIT, why, why_cap, "gold would pass the cap of 10^15");
        wyvern__actor__currency_earned__init(&b.earn);
        b.earn.amount = c->amount;
        b.earn.source = (char *)c->text;
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_CURRENCY_EARNED;
        ev.currency_earned = &b.earn;
        type = "currency_earned";
        break;
    case ACTOR_CMD_SPEND:
        if (s->gold < c->amount)
            return refuse(WY_ESTATE, why, why_cap, "not enough gold (have %llu, need %llu)",
                          (unsigned long long)s->gold, (unsigned long long)c->amount);
        wyvern__actor__currency_spent__init(&b.spend);
        b.spend.amount = c->amount;
        b.spend.reason = (char *)c->text;
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_CURRENCY_SPENT;
        ev.currency_spent = &b.spend;
        type = "currency_spent";
        break;
    case ACTOR_CMD_DELETE:
        if (s->deleted)
            return WY_OK;
        wyvern__actor__character_deleted__init(&b.del);
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_DELETED;
        ev.deleted = &b.del;
        type = "deleted";
        break;
    case ACTOR_CMD_RESTORE:
        if (!s->deleted)
            return WY_OK;
        if (now_ms - s->deleted_at_ms > restore_window_ms)
            return refuse(WY_ESTATE, why, why_cap,
                          "the restore window is over (deleted %lld s ago)",
                          (long long)((now_ms - s->deleted_at_ms) / 1000));
        wyvern__actor__character_restored__init(&b.res);
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_RESTORED;
        ev.restored = &b.res;
        type = "restored";
        break;
    case ACTOR_CMD_NPC_KILL: /* actor_npc_decide's */
    case ACTOR_CMD_NPC_RESPAWN:
        return refuse(WY_EINTERNAL, why, why_cap, "NPC command not decided");
    }
    actor_event_pack(&ev, type, &out->ev[out->n++]);

    if (c->kind == ACTOR_CMD_GAIN_XP) {
        uint32_t level = actor_level_for_xp(add_capped(s->xp, c->amount, ACTOR_MAX_XP));
        if (level > s->level) {
            Wyvern__Actor__LevelReached lr = WYVERN__ACTOR__LEVEL_REACHED__INIT;
            lr.level = level;
            Wyvern__Actor__Event ev2 = WYVERN__ACTOR__EVENT__INIT;
            ev2.at_ms = now_ms;
            ev2.body_case = WYVERN__ACTOR__EVENT__BODY_LEVEL_REACHED;
            ev2.level_reached = &lr;
            actor_event_pack(&ev2, "level_reached", &out->ev[out->n++]);
        }
    }
    return WY_OK;
}

/* ---- identifiers ---- */

static const wy_text_rules_t name_rules = {
    .min_chars = ACTOR_NAME_MIN_CP,
    .max_chars = ACTOR_NAME_MAX_CP,
    .max_bytes = ACTOR_NAME_MAX,
    .classes = WY_TEXT_LETTER | WY_TEXT_MARK | WY_TEXT_DIGIT,
    .extra = "'-",
    .first_alnum = true,
    .single_script = true,
};

int actor_name_check(const char *name, size_t len, char **display, char **key, const char **why)
{
    *display = *key = NULL;
    if (len == 0 || len > 4 * ACTOR_NAME_MAX) {
        *why = "name must be 3 to 16 characters";
        return WY_EINVAL;
    }
    char *d = NULL;
    if (wy_text_nfkc(name, len, &d) != WY_OK) {
        *why = "name is not valid UTF-8";
        return WY_EINVAL;
    }
    size_t dl = strlen(d);
    if (wy_text_check(d, &name_rules, why) != WY_OK) {
        wy_free(d);
        return WY_EINVAL;
    }
    if (d[dl - 1] == '\'' || d[dl - 1] == '-') {
        wy_free(d);
        *why = "name must end with a letter or a digit";
        return WY_EINVAL;
    }
    char *k = NULL;
    if (wy_text_fold(d, dl, &k) != WY_OK) {
        wy_free(d);
        *why = "name is not valid UTF-8";
        return WY_EINVAL;
    }
    *display = d;
    *key = k;
    return WY_OK;
}

bool actor_class_check(const char *class_name)
{
    size_t n = class_name ? strlen(class_name) : 0;
    if (n == 0 || n > ACTOR_CLASS_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((class_name[i] >= 'a' && class_name[i] <= 'z') || class_name[i] == '_'))
            return false;
    return true;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool actor_uuid_valid(const char *s)
{
    if (!s || strlen(s) != ACTOR_ID_LEN)
        return false;
    for (int i = 0; i < ACTOR_ID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : hexval(s[i]) < 0)
            return false;
    }
    return true;
}

int actor_shard(const char *actor_id)
{
    if (!actor_uuid_valid(actor_id))
        return -1;
    return hexval(actor_id[0]) * 16 + hexval(actor_id[1]);
}

/* ---- snapshots and the API view ---- */

void actor_view_init(actor_view_t *v, const actor_state_t *s)
{
    wyvern__actor__character__init(&v->c);
    wyvern__actor__position__init(&v->pos);
    v->c.actor_id = (char *)s->actor_id;
    v->c.account_id = (char *)s->account_id;
    v->c.name = (char *)s->name;
    v->c.class_name = (char *)s->class_name;
    v->c.level = s->level;
    v->c.xp = s->xp;
    v->pos.zone = (char *)s->zone;
    v->pos.x = s->x;
    v->pos.y = s->y;
    v->pos.z = s->z;
    v->c.position = &v->pos;
    v->stacks = s->n_items ? wy_calloc(s->n_items, sizeof *v->stacks) : NULL;
    v->ptrs = s->n_items ? wy_calloc(s->n_items, sizeof *v->ptrs) : NULL;
    for (size_t i = 0; i < s->n_items; i++) {
        wyvern__actor__item_stack__init(&v->stacks[i]);
        v->stacks[i].item = (char *)s->items[i].item;
        v->stacks[i].count = s->items[i].count;
        v->ptrs[i] = &v->stacks[i];
    }
    v->c.n_inventory = s->n_items;
    v->c.inventory = v->ptrs;
    v->c.gold = s->gold;
    v->c.deleted = s->deleted;
    v->c.deleted_at_ms = s->deleted_at_ms;
    v->c.created_at_ms = s->created_at_ms;
    v->c.seq = s->seq;
    actor_friends_view(&s->friends, &v->c, &v->friends, &v->friend_ptrs);
    actor_npc_view(&s->npc, &v->c, &v->npc);
}

void actor_view_clear(actor_view_t *v)
{
    wy_free(v->stacks);
    wy_free(v->ptrs);
    wy_free(v->friends);
    wy_free(v->friend_ptrs);
    v->stacks = NULL;
    v->ptrs = NULL;
    v->friends = NULL;
    v->friend_ptrs = NULL;
}

uint8_t *actor_snapshot_encode(const actor_state_t *s, size_t *len)
{
    actor_view_t v;
    actor_view_init(&v, s);
    *len = wyvern__actor__character__get_packed_size(&v.c);
    uint8_t *buf = wy_malloc(*len ? *len : 1);
    wyvern__actor__character__pack(&v.c, buf);
    actor_view_clear(&v);
    return buf;
}

static bool fits(const char *s, size_t max)
{
    return s && strlen(s) <= max;
}

int actor_snapshot_decode(actor_state_t *s, const uint8_t *data, size_t len)
{
    Wyvern__Actor__Character *c = wyvern__actor__character__unpack(NULL, len, data);
    if (!c)
        return WY_EIO;
    const Wyvern__Actor__Position *p = c->position;
    bool ok = fits(c->actor_id, ACTOR_ID_LEN) && fits(c->account_id, ACTOR_ID_LEN) &&
              fits(c->name, ACTOR_NAME_MAX) && fits(c->class_name, ACTOR_CLASS_MAX) &&
              (!p || fits(p->zone, ACTOR_ZONE_MAX)) && c->n_inventory <= ACTOR_MAX_STACKS &&
              c->seq > 0 && c->gold <= ACTOR_MAX_GOLD && c->xp <= ACTOR_MAX_XP;
    for (size_t i = 0; ok && i < c->n_inventory; i++)
        ok = fits(c->inventory[i]->item, ACTOR_ITEM_MAX) && c->inventory[i]->count > 0 &&
             (i == 0 || strcmp(c->inventory[i - 1]->item, c->inventory[i]->item) < 0);
    ok = ok && actor_friends_valid(c);
    actor_npc_t npc;
    ok = ok && actor_npc_load(&npc, c->npc) == WY_OK;
    if (!ok) {
        wyvern__actor__character__free_unpacked(c, NULL);
        return WY_EIO;
    }
    actor_state_clear(s);
    copy_str(s->actor_id, sizeof s->actor_id, c->actor_id);
    copy_str(s->account_id, sizeof s->account_id, c->account_id);
    copy_str(s->name, sizeof s->name, c->name);
    copy_str(s->class_name, sizeof s->class_name, c->class_name);
    s->level = c->level;
    s->xp = c->xp;
    set_position(s, p);
    for (size_t i = 0; i < c->n_inventory; i++)
        add_items(s, c->inventory[i]->item, c->inventory[i]->count);
    s->gold = c->gold;
    s->deleted = c->deleted;
    s->deleted_at_ms = c->deleted_at_ms;
    s->created_at_ms = c->created_at_ms;
    s->seq = c->seq;
    actor_friends_load(&s->friends, c);
    s->npc = npc;
    wyvern__actor__character__free_unpacked(c, NULL);
    return WY_OK;
}
