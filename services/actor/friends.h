/* wy-actor friends, the pure part: a character's friends and pending requests (its
 * actor_friends_t, in the snapshot as Character.friends), how the friend events change
 * them, and how a friend command decides into the events of both characters. No I/O:
 * the coordinator (txn.c) runs each command as a cross-actor transaction. Any thread,
 * one state per thread at a time. */
#ifndef ACTOR_FRIENDS_H
#define ACTOR_FRIENDS_H

#include "character.h"

typedef enum {
    ACTOR_FRIEND_REQUEST,
    ACTOR_FRIEND_ACCEPT,
    ACTOR_FRIEND_DECLINE,
    ACTOR_FRIEND_REMOVE,
} actor_friend_op_t;

/* Frees what f owns; f is empty afterwards. */
void actor_friends_free(actor_friends_t *f);
/* dst (empty or holding a list) becomes a deep copy of src. */
void actor_friends_copy(actor_friends_t *dst, const actor_friends_t *src);
bool actor_friends_equal(const actor_friends_t *a, const actor_friends_t *b);
/* The entry of actor id, or NULL. */
const actor_friend_t *actor_friend_find(const actor_friends_t *f, const char *id);

/* Applies one of the friend events (Event.friend_*) to f; other events change nothing.
 * Never fails (events are facts). */
void actor_friends_apply(actor_friends_t *f, const Wyvern__Actor__Event *ev);

/* Sets c->friends / c->n_friends to a view of f: *items and *ptrs are new arrays (wy_free,
 * NULL when f is empty) whose strings point into f. */
void actor_friends_view(const actor_friends_t *f, Wyvern__Actor__Character *c,
                        Wyvern__Actor__Friend **items, Wyvern__Actor__Friend ***ptrs);

/* A snapshot's friends are within bounds, sorted, of known statuses. */
bool actor_friends_valid(const Wyvern__Actor__Character *c);
/* f (empty) gets the friends of a snapshot that actor_friends_valid accepted. */
void actor_friends_load(actor_friends_t *f, const Wyvern__Actor__Character *c);

/* Decides op by `me` toward `them` (both committed states) into out[0] (me's event) and
 * out[1] (them's), packed (the caller frees both .data). Refusals: WY_ENOTFOUND (a side
 * does not exist), WY_ESTATE (a side deleted, no such request, not friends), WY_EEXIST
 * (already friends or asked), WY_ELIMIT (ACTOR_MAX_FRIENDS); why[0..cap) says why and
 * out is empty. A request toward a character that asked `me` already accepts it. */
int actor_friend_decide(actor_friend_op_t op, const actor_state_t *me, const actor_state_t *them,
                        const char *txn_id, int64_t now_ms, actor_event_t out[2], char *why,
                        size_t cap);

#endif
