/* wy-actor friends, the pure part (friends.h): the list of a character's friends and
 * pending requests, the friend events applied to it, and friend commands decided into
 * the events of both characters. */
#include "friends.h"

#include <stdio.h>
#include <string.h>

#define F_FRIEND   WYVERN__ACTOR__FRIEND__STATUS__FRIEND
#define F_INCOMING WYVERN__ACTOR__FRIEND__STATUS__INCOMING
#define F_OUTGOING WYVERN__ACTOR__FRIEND__STATUS__OUTGOING

void actor_friends_free(actor_friends_t *f)
{
    wy_free(f->v);
    memset(f, 0, sizeof *f);
}

void actor_friends_copy(actor_friends_t *dst, const actor_friends_t *src)
{
    if (dst->cap < src->n) {
        wy_free(dst->v);
        dst->cap = src->n;
        dst->v = wy_malloc(dst->cap * sizeof *dst->v);
    }
    if (src->n)
        memcpy(dst->v, src->v, src->n * sizeof *src->v);
    dst->n = src->n;
}

bool actor_friends_equal(const actor_friends_t *a, const actor_friends_t *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].status != b->v[i].status || strcmp(a->v[i].id, b->v[i].id) ||
            strcmp(a->v[i].account, b->v[i].account) || strcmp(a->v[i].name, b->v[i].name))
            return false;
    return true;
}

/* Index of id, or where it would go (*found false). */
static size_t find(const actor_friends_t *f, const char *id, bool *found)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->v[mid].id, id);
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

const actor_friend_t *actor_friend_find(const actor_friends_t *f, const char *id)
{
    bool found;
    size_t i = find(f, id, &found);
    return found ? &f->v[i] : NULL;
}

static void put(actor_friends_t *f, const char *id, const char *account, const char *name,
                int status)
{
    bool found;
    size_t i = find(f, id, &found);
    if (!found) {
        if (f->n == f->cap) {
            size_t cap = f->cap ? f->cap * 2 : 4;
            actor_friend_t *v = wy_malloc(cap * sizeof *v);
            if (f->n)
                memcpy(v, f->v, f->n * sizeof *v);
            wy_free(f->v);
            f->v = v;
            f->cap = cap;
        }
        memmove(f->v + i + 1, f->v + i, (f->n - i) * sizeof *f->v);
        f->n++;
    }
    actor_friend_t *e = &f->v[i];
    snprintf(e->id, sizeof e->id, "%s", id);
    snprintf(e->account, sizeof e->account, "%s", account ? account : "");
    snprintf(e->name, sizeof e->name, "%s", name ? name : "");
    e->status = status;
}

static void drop(actor_friends_t *f, const char *id)
{
    bool found;
    size_t i = find(f, id, &found);
    if (!found)
        return;
    memmove(f->v + i, f->v + i + 1, (f->n - i - 1) * sizeof *f->v);
    f->n--;
}

void actor_friends_apply(actor_friends_t *f, const Wyvern__Actor__Event *ev)
{
    const Wyvern__Actor__FriendEvent *e = NULL;
    int status = 0;
    switch (ev->body_case) {
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_SENT:
        e = ev->friend_request_sent;
        status = F_OUTGOING;
        break;
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_RECEIVED:
        e = ev->friend_request_received;
        status = F_INCOMING;
        break;
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_ADDED:
        e = ev->friend_added;
        status = F_FRIEND;
        break;
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_DECLINED:
        e = ev->friend_request_declined;
        break;
    case WYVERN__ACTOR__EVENT__BODY_FRIEND_REMOVED:
        e = ev->friend_removed;
        break;
    default:
        return;
    }
    if (!e || !actor_uuid_valid(e->other))
        return; /* not a character: nothing to change */
    if (status)
        put(f, e->other, e->other_account, e->other_name, status);
    else
        drop(f, e->other);
}

void actor_friends_view(const actor_friends_t *f, Wyvern__Actor__Character *c,
                        Wyvern__Actor__Friend **items, Wyvern__Actor__Friend ***ptrs)
{
    *items = f->n ? wy_calloc(f->n, sizeof **items) : NULL;
    *ptrs = f->n ? wy_calloc(f->n, sizeof **ptrs) : NULL;
    for (size_t i = 0; i < f->n; i++) {
        Wyvern__Actor__Friend *x = &(*items)[i];
        wyvern__actor__friend__init(x);
        x->actor_id = (char *)f->v[i].id;
        x->account_id = (char *)f->v[i].account;
        x->name = (char *)f->v[i].name;
        x->status = (Wyvern__Actor__Friend__Status)f->v[i].status;
        (*ptrs)[i] = x;
    }
    c->n_friends = f->n;
    c->friends = *ptrs;
}

static bool text_fits(const char *s, size_t max)
{
    return s && strlen(s) <= max;
}

bool actor_friends_valid(const Wyvern__Actor__Character *c)
{
    if (c->n_friends > 4 * ACTOR_MAX_FRIENDS)
        return false;
    for (size_t i = 0; i < c->n_friends; i++) {
        const Wyvern__Actor__Friend *x = c->friends[i];
        if (!actor_uuid_valid(x->actor_id) || !text_fits(x->account_id, ACTOR_ID_LEN) ||
            !text_fits(x->name, ACTOR_NAME_MAX) || x->status < F_FRIEND || x->status > F_OUTGOING ||
            (i > 0 && strcmp(c->friends[i - 1]->actor_id, x->actor_id) >= 0))
            return false;
    }
    return true;
}

void actor_friends_load(actor_friends_t *f, const Wyvern__Actor__Character *c)
{
    for (size_t i = 0; i < c->n_friends; i++)
        put(f, c->friends[i]->actor_id, c->friends[i]->account_id, c->friends[i]->name,
            (int)c->friends[i]->status);
}

/* The packed event `type` (one of the friend_* bodies) about `other` for one side; acting:
 * the side's own state when it made the change, else NULL. */
static void friend_event(Wyvern__Actor__Event__BodyCase body, const char *type,
                         const actor_state_t *other, const actor_state_t *acting,
                         const char *txn_id, int64_t now_ms, actor_event_t *out)
{
    Wyvern__Actor__FriendEvent fe = WYVERN__ACTOR__FRIEND_EVENT__INIT;
    fe.other = (char *)other->actor_id;
    fe.other_account = (char *)other->account_id;
    fe.other_name = (char *)other->name;
    fe.txn_id = (char *)txn_id;
    fe.acted = acting != NULL;
    fe.actor_name = acting ? (char *)acting->name : "";
    Wyvern__Actor__Event ev = WYVERN__ACTOR__EVENT__INIT;
    ev.at_ms = now_ms;
    ev.body_case = body;
    /* Every friend_* member of the oneof is a FriendEvent at the same place. */
    ev.friend_request_sent = &fe;
    out->type = type;
    out->len = wyvern__actor__event__get_packed_size(&ev);
    out->data = wy_malloc(out->len ? out->len : 1);
    wyvern__actor__event__pack(&ev, out->data);
}

int actor_friend_decide(actor_friend_op_t op, const actor_state_t *me, const actor_state_t *them,
                        const char *txn_id, int64_t now_ms, actor_event_t out[2], char *why,
                        size_t cap)
{
    out[0].data = out[1].data = NULL;
    if (me->seq == 0 || them->seq == 0)
        return (snprintf(why, cap, "no such character"), WY_ENOTFOUND);
    if (me->deleted || them->deleted)
        return (snprintf(why, cap, "character is deleted"), WY_ESTATE);
    if (me->npc.kind || them->npc.kind)
        return (snprintf(why, cap, "an NPC has no friends"), WY_ESTATE);
    const actor_friend_t *e = actor_friend_find(&me->friends, them->actor_id);
    int st = e ? e->status : 0;
    Wyvern__Actor__Event__BodyCase mine, theirs;
    const char *mine_t, *theirs_t;
    switch (op) {
    case ACTOR_FRIEND_REQUEST:
        if (st == F_FRIEND)
            return (snprintf(why, cap, "already friends"), WY_EEXIST);
        if (st == F_OUTGOING)
            return (snprintf(why, cap, "already asked"), WY_EEXIST);
        if (st == F_INCOMING) /* they asked first: this is a yes */
            return actor_friend_decide(ACTOR_FRIEND_ACCEPT, me, them, txn_id, now_ms, out, why,
                                       cap);
        if (me->friends.n >= ACTOR_MAX_FRIENDS || them->friends.n >= ACTOR_MAX_FRIENDS)
            return (snprintf(why, cap, "at most %d friends and requests", ACTOR_MAX_FRIENDS),
                    WY_ELIMIT);
        mine = WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_SENT;
        mine_t = "friend_request_sent";
        theirs = WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_RECEIVED;
        theirs_t = "friend_request_received";
        break;
    case ACTOR_FRIEND_ACCEPT:
        if (st != F_INCOMING)
            return (snprintf(why, cap, "no friend request from %s", them->name), WY_ESTATE);
        mine = theirs = WYVERN__ACTOR__EVENT__BODY_FRIEND_ADDED;
        mine_t = theirs_t = "friend_added";
        break;
    case ACTOR_FRIEND_DECLINE:
        if (st != F_INCOMING && st != F_OUTGOING)
            return (snprintf(why, cap, "no friend request between you and %s", them->name),
                    WY_ESTATE);
        mine = theirs = WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_DECLINED;
        mine_t = theirs_t = "friend_request_declined";
        break;
    case ACTOR_FRIEND_REMOVE:
    default:
        if (st != F_FRIEND)
            return (snprintf(why, cap, "not friends with %s", them->name), WY_ESTATE);
        mine = theirs = WYVERN__ACTOR__EVENT__BODY_FRIEND_REMOVED;
        mine_t = theirs_t = "friend_removed";
        break;
    }
    friend_event(mine, mine_t, them, me, txn_id, now_ms, &out[0]);
    friend_event(theirs, theirs_t, me, NULL, txn_id, now_ms, &out[1]);
    return WY_OK;
}
