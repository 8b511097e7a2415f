/* wy-actor trades and gifts, the pure part (txn.h): an offer's shape and one side's
 * decision into its Traded event. No I/O; the coordinator (txn.c) calls it on the held
 * states and tests/unit/actor/test_trade.c tests it. */
#include "txn.h"

#include <stdio.h>
#include <string.h>

int actor_offer_from_pb(Wyvern__Actor__ItemStack *const *items, size_t n_items, uint64_t gold,
                        actor_offer_t *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (n_items > ACTOR_TRADE_ITEMS) {
        *why = "at most 16 different items per side";
        return WY_EINVAL;
    }
    if (gold > ACTOR_MAX_GOLD_MOVE) {
        *why = "gold must be 0..1000000000 per side";
        return WY_EINVAL;
    }
    for (size_t i = 0; i < n_items; i++) {
        if (!items[i] || !actor_item_valid(items[i]->item)) {
            *why = "item must be 1..64 of [a-z0-9_.:-]";
            return WY_EINVAL;
        }
        if (items[i]->count < 1 || items[i]->count > ACTOR_MAX_ITEM_MOVE) {
            *why = "item count must be 1..1000000";
            return WY_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(out->items[j].item, items[i]->item)) {
                *why = "an item appears twice on one side";
                return WY_EINVAL;
            }
        snprintf(out->items[i].item, sizeof out->items[i].item, "%s", items[i]->item);
        out->items[i].count = items[i]->count;
    }
    out->n_items = n_items;
    out->gold = gold;
    return WY_OK;
}

static uint32_t offered(const actor_offer_t *o, const char *item)
{
    for (size_t i = 0; i < o->n_items; i++)
        if (!strcmp(o->items[i].item, item))
            return o->items[i].count;
    return 0;
}

/* ItemStack views of an offer, pointing into it. */
static void offer_view(const actor_offer_t *o, Wyvern__Actor__ItemStack *stacks,
                       Wyvern__Actor__ItemStack **ptrs)
{
    for (size_t i = 0; i < o->n_items; i++) {
        wyvern__actor__item_stack__init(&stacks[i]);
        stacks[i].item = (char *)o->items[i].item;
        stacks[i].count = o->items[i].count;
        ptrs[i] = &stacks[i];
    }
}

int actor_trade_decide(const actor_state_t *s, const char *who, const char *txn_id,
                       const char *kind, const char *counterpart, const actor_offer_t *gave,
                       const actor_offer_t *got, int64_t now_ms, actor_event_t *out, char *why,
                       size_t cap)
{
    out->data = NULL;
    out->len = 0;
    if (s->seq == 0)
        return (snprintf(why, cap, "%s: no such character", who), WY_ENOTFOUND);
    if (s->deleted)
        return (snprintf(why, cap, "%s: character is deleted", who), WY_ESTATE);
    if (s->gold < gave->gold)
        return (snprintf(why, cap, "%s: not enough gold (have %llu, gives %llu)", who,
                         (unsigned long long)s->gold, (unsigned long long)gave->gold),
                WY_ESTATE);
    size_t stacks = s->n_items;
    for (size_t i = 0; i < gave->n_items; i++) {
        uint32_t have = actor_state_items(s, gave->items[i].item);
        if (have < gave->items[i].count)
            return (snprintf(why, cap, "%s: not enough %s (have %u, gives %u)", who,
                             gave->items[i].item, have, gave->items[i].count),
                    WY_ESTATE);
        if (have == gave->items[i].count)
            stacks--; /* the stack goes */
    }
    if (s->gold - gave->gold + got->gold > ACTOR_MAX_GOLD)
        return (snprintf(why, cap, "%s: gold would pass the cap of 10^15", who), WY_ELIMIT);
    for (size_t i = 0; i < got->n_items; i++) {
        const char *item = got->items[i].item;
        uint64_t after = (uint64_t)actor_state_items(s, item) - offered(gave, item);
        if (after == 0)
            stacks++;
        if (after + got->items[i].count > ACTOR_MAX_STACK)
            return (snprintf(why, cap, "%s: at most %u of one item", who, ACTOR_MAX_STACK),
                    WY_ELIMIT);
    }
    if (stacks > ACTOR_MAX_STACKS)
        return (
            snprintf(why, cap, "%s: inventory full (%d different items)", who, ACTOR_MAX_STACKS),
            WY_ELIMIT);

    Wyvern__Actor__ItemStack gave_s[ACTOR_TRADE_ITEMS], got_s[ACTOR_TRADE_ITEMS];
    Wyvern__Actor__ItemStack *gave_p[ACTOR_TRADE_ITEMS], *got_p[ACTOR_TRADE_ITEMS];
    offer_view(gave, gave_s, gave_p);
    offer_view(got, got_s, got_p);
    Wyvern__Actor__Traded t = WYVERN__ACTOR__TRADED__INIT;
    t.txn_id = (char *)txn_id;
    t.kind = (char *)kind;
    t.counterpart = (char *)counterpart;
    t.n_gave = gave->n_items;
    t.gave = gave_p;
    t.gold_gave = gave->gold;
    t.n_got = got->n_items;
    t.got = got_p;
    t.gold_got = got->gold;
    Wyvern__Actor__Event ev = WYVERN__ACTOR__EVENT__INIT;
    ev.at_ms = now_ms;
    ev.body_case = WYVERN__ACTOR__EVENT__BODY_TRADED;
    ev.traded = &t;
    out->type = "traded";
    out->len = wyvern__actor__event__get_packed_size(&ev);
    out->data = wy_malloc(out->len ? out->len : 1);
    wyvern__actor__event__pack(&ev, out->data);
    return WY_OK;
}
