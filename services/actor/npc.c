/* wy-actor persistent NPCs, the pure part (character.h, "NPCs"): a merchant (its stock is the
 * state's inventory, its till the gold) and a boss (alive, or dead until its respawn time).
 * Their events and commands beside a character's, the shape of CreateNpc, and the NPC part of
 * snapshots and of the API view. No I/O (npc_create.c creates them). */
#include "character.h"
#include "wy_text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const kind_names[] = {"", "merchant", "boss"};

const char *actor_npc_kind_name(int kind)
{
    return kind > 0 && kind < (int)WY_ARRAY_LEN(kind_names) ? kind_names[kind] : "";
}

int actor_npc_kind_parse(const char *name)
{
    for (int k = 1; name && k < (int)WY_ARRAY_LEN(kind_names); k++)
        if (strcmp(name, kind_names[k]) == 0)
            return k;
    return ACTOR_NPC_NONE;
}

static bool npc_text_ok(const char *s, size_t min, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return n >= min && n <= max && wy_text_valid_utf8(s ? s : "", n);
}

static bool npc_coord_ok(float v)
{
    return isfinite(v) && fabsf(v) <= ACTOR_MAX_COORD;
}

int actor_npc_check_request(const Wyvern__Actor__CreateNpcRequest *in, const char **why)
{
    const Wyvern__Actor__Position *p = in->position;
    int kind = actor_npc_kind_parse(in->kind);
    if (!actor_uuid_valid(in->npc_id))
        *why = "npc_id must be a lower-case UUID";
    else if (kind == ACTOR_NPC_NONE)
        *why = "kind must be merchant or boss";
    else if (!npc_text_ok(in->name, 1, ACTOR_NPC_NAME_MAX))
        *why = "name must be 1..64 bytes of UTF-8";
    else if (!p || !npc_text_ok(p->zone, 1, ACTOR_ZONE_MAX) || !npc_coord_ok(p->x) ||
             !npc_coord_ok(p->y) || !npc_coord_ok(p->z))
        *why = "position needs a zone (1..64 bytes) and finite coordinates within 1000000";
    else if (kind == ACTOR_NPC_BOSS &&
             (in->respawn_ms < ACTOR_NPC_RESPAWN_MIN || in->respawn_ms > ACTOR_NPC_RESPAWN_MAX))
        *why = "a boss needs respawn_ms 1000..2592000000 (30 days)";
    else if (kind != ACTOR_NPC_BOSS && in->respawn_ms != 0)
        *why = "respawn_ms is a boss's";
    else if (in->n_stock > ACTOR_NPC_STOCK_MAX)
        *why = "at most 64 stacks of stock";
    else
        *why = NULL;
    for (size_t i = 0; !*why && i < in->n_stock; i++) {
        const Wyvern__Actor__ItemStack *st = in->stock[i];
        if (!actor_item_valid(st->item) || st->count < 1 || st->count > ACTOR_MAX_ITEM_MOVE)
            *why = "stock: item must be 1..64 of [a-z0-9_.:-], count 1..1000000";
        for (size_t j = 0; !*why && j < i; j++)
            if (strcmp(in->stock[j]->item, st->item) == 0)
                *why = "stock: an item listed twice";
    }
    return *why ? WY_EINVAL : WY_OK;
}

void actor_event_npc_created(const Wyvern__Actor__CreateNpcRequest *in, int64_t now_ms,
                             actor_event_t *out)
{
    Wyvern__Actor__NpcCreated c = WYVERN__ACTOR__NPC_CREATED__INIT;
    c.kind = in->kind;
    c.name = in->name;
    c.position = in->position;
    c.respawn_ms = in->respawn_ms;
    c.n_stock = in->n_stock;
    c.stock = in->stock;
    Wyvern__Actor__Event ev = WYVERN__ACTOR__EVENT__INIT;
    ev.at_ms = now_ms;
    ev.body_case = WYVERN__ACTOR__EVENT__BODY_NPC_CREATED;
    ev.npc_created = &c;
    actor_event_pack(&ev, "npc_created", out);
}

int actor_npc_apply(actor_state_t *s, const Wyvern__Actor__Event *ev)
{
    actor_npc_t *n = &s->npc;
    switch (ev->body_case) {
    case WYVERN__ACTOR__EVENT__BODY_NPC_CREATED: {
        const Wyvern__Actor__NpcCreated *c = ev->npc_created;
        const Wyvern__Actor__Position *p = c->position;
        n->kind = actor_npc_kind_parse(c->kind);
        n->respawn_ms = c->respawn_ms;
        n->alive = true;
        snprintf(s->name, sizeof s->name, "%s", c->name ? c->name : "");
        snprintf(s->zone, sizeof s->zone, "%s", p && p->zone ? p->zone : "");
        s->x = p ? p->x : 0;
        s->y = p ? p->y : 0;
        s->z = p ? p->z : 0;
        return WY_OK;
    }
    case WYVERN__ACTOR__EVENT__BODY_NPC_KILLED:
        if (n->kind != ACTOR_NPC_BOSS)
            return WY_EINVAL;
        n->alive = false;
        n->respawn_at_ms = ev->npc_killed->respawn_at_ms;
        snprintf(n->killed_by, sizeof n->killed_by, "%s",
                 ev->npc_killed->killed_by ? ev->npc_killed->killed_by : "");
        n->kills++;
        return WY_OK;
    case WYVERN__ACTOR__EVENT__BODY_NPC_RESPAWNED:
        if (n->kind != ACTOR_NPC_BOSS)
            return WY_EINVAL;
        n->alive = true;
        n->respawn_at_ms = 0;
        return WY_OK;
    default:
        return WY_EINVAL;
    }
}

int actor_npc_cmd_from_request(const Wyvern__Actor__ApplyRequest *req, actor_cmd_t *out,
                               const char **why)
{
    switch (req->command_case) {
    case WYVERN__ACTOR__APPLY_REQUEST__COMMAND_KILL_NPC: {
        const char *by = req->kill_npc->killed_by ? req->kill_npc->killed_by : "";
        if (*by && !actor_uuid_valid(by)) {
            *why = "kill_npc.killed_by must be an actor id (UUID) or empty";
            return WY_EINVAL;
        }
        out->kind = ACTOR_CMD_NPC_KILL;
        snprintf(out->text, sizeof out->text, "%s", by);
        return WY_OK;
    }
    case WYVERN__ACTOR__APPLY_REQUEST__COMMAND_RESPAWN_NPC:
        out->kind = ACTOR_CMD_NPC_RESPAWN;
        return WY_OK;
    default:
        *why = "no command set (gain_xp, add_item, remove_item, move, earn_currency, "
               "spend_currency, kill_npc or respawn_npc)";
        return WY_EINVAL;
    }
}

static int npc_refuse(int rc, char *why, size_t cap, const char *msg)
{
    snprintf(why, cap, "%s", msg);
    return rc;
}

int actor_npc_decide(const actor_state_t *s, const actor_cmd_t *c, int64_t now_ms,
                     actor_events_t *out, char *why, size_t why_cap, bool *handled)
{
    int kind = s->npc.kind;
    *handled = false;
    if (c->kind != ACTOR_CMD_NPC_KILL && c->kind != ACTOR_CMD_NPC_RESPAWN) {
        if (kind == ACTOR_NPC_NONE)
            return WY_OK; /* a character's command on a character */
        switch (c->kind) {
        case ACTOR_CMD_MOVE:
        case ACTOR_CMD_DELETE:
        case ACTOR_CMD_RESTORE:
            return WY_OK; /* any NPC's, as a character's */
        case ACTOR_CMD_GAIN_XP:
            *handled = true;
            return npc_refuse(WY_ESTATE, why, why_cap, "an NPC gains no XP");
        default: /* items and gold: a merchant's stock and till */
            *handled = kind == ACTOR_NPC_BOSS;
            return *handled ? npc_refuse(WY_ESTATE, why, why_cap, "a boss has no stock or till")
                            : WY_OK;
        }
    }
    *handled = true;
    if (kind != ACTOR_NPC_BOSS)
        return npc_refuse(WY_ESTATE, why, why_cap, kind ? "not a boss" : "not an NPC");
    Wyvern__Actor__Event ev = WYVERN__ACTOR__EVENT__INIT;
    ev.at_ms = now_ms;
    Wyvern__Actor__NpcKilled k = WYVERN__ACTOR__NPC_KILLED__INIT;
    Wyvern__Actor__NpcRespawned r = WYVERN__ACTOR__NPC_RESPAWNED__INIT;
    const char *type;
    if (c->kind == ACTOR_CMD_NPC_KILL) {
        if (!s->npc.alive)
            return npc_refuse(WY_ESTATE, why, why_cap, "the boss is dead already");
        k.killed_by = (char *)c->text;
        k.respawn_at_ms = now_ms + s->npc.respawn_ms;
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_NPC_KILLED;
        ev.npc_killed = &k;
        type = "npc_killed";
    } else {
        if (s->npc.alive)
            return npc_refuse(WY_ESTATE, why, why_cap, "the boss is alive");
        if (now_ms < s->npc.respawn_at_ms) {
            snprintf(why, why_cap, "the boss respawns in %lld ms",
                     (long long)(s->npc.respawn_at_ms - now_ms));
            return WY_ESTATE;
        }
        ev.body_case = WYVERN__ACTOR__EVENT__BODY_NPC_RESPAWNED;
        ev.npc_respawned = &r;
        type = "npc_respawned";
    }
    actor_event_pack(&ev, type, &out->ev[out->n++]);
    return WY_OK;
}

bool actor_npc_equal(const actor_npc_t *a, const actor_npc_t *b)
{
    return a->kind == b->kind && a->respawn_ms == b->respawn_ms && a->alive == b->alive &&
           a->respawn_at_ms == b->respawn_at_ms && !strcmp(a->killed_by, b->killed_by) &&
           a->kills == b->kills;
}

void actor_npc_view(const actor_npc_t *n, Wyvern__Actor__Character *c, Wyvern__Actor__NpcState *out)
{
    wyvern__actor__npc_state__init(out);
    if (n->kind == ACTOR_NPC_NONE)
        return;
    out->kind = (char *)actor_npc_kind_name(n->kind);
    out->respawn_ms = n->respawn_ms;
    out->alive = n->alive;
    out->respawn_at_ms = n->respawn_at_ms;
    out->killed_by = (char *)n->killed_by;
    out->kills = n->kills;
    c->npc = out;
}

int actor_npc_load(actor_npc_t *n, const Wyvern__Actor__NpcState *m)
{
    memset(n, 0, sizeof *n);
    if (!m)
        return WY_OK;
    int kind = actor_npc_kind_parse(m->kind);
    if (kind == ACTOR_NPC_NONE || !m->killed_by || strlen(m->killed_by) > ACTOR_ID_LEN)
        return WY_EIO;
    n->kind = kind;
    n->respawn_ms = m->respawn_ms;
    n->alive = m->alive;
    n->respawn_at_ms = m->respawn_at_ms;
    snprintf(n->killed_by, sizeof n->killed_by, "%s", m->killed_by);
    n->kills = m->kills;
    return WY_OK;
}
