/* wy-lobby friend pushes from wy.actor (friend_events.h). */
#include "friend_events.h"
#include "characters.h"
#include "state.h"
#include "actor.pb-c.h"
#include "lobby.pb-c.h"
#include "wy_log.h"

#include <string.h>

const char *const lobby_friend_event_types[] = {"actor.friend_request_sent", "actor.friend_added",
                                                NULL};
/* Every other type wy-actor writes (proto/actor.proto, Event). */
const char *const lobby_friend_event_ignores[] = {"actor.created",
                                                  "actor.xp_gained",
                                                  "actor.level_reached",
                                                  "actor.item_added",
                                                  "actor.item_removed",
                                                  "actor.moved",
                                                  "actor.currency_earned",
                                                  "actor.currency_spent",
                                                  "actor.deleted",
                                                  "actor.restored",
                                                  "actor.traded",
                                                  "actor.friend_request_received",
                                                  "actor.friend_request_declined",
                                                  "actor.friend_removed",
                                                  NULL};

/* The push for the other side of ev, to its account's session if it is here. */
static void push(lobby_t *lb, const Wyvern__Actor__Event *ev, const Wyvern__Actor__FriendEvent *f,
                 const char *kind)
{
    Wyvern__Lobby__FriendPush p = WYVERN__LOBBY__FRIEND_PUSH__INIT;
    p.kind = (char *)kind;
    p.from_actor_id = ev->actor_id;
    p.from_name = f->actor_name;
    p.to_actor_id = f->other;
    p.to_name = f->other_name;
    lobby_chars_push_friend(lb, f->other_account, &p);
}

static void handle(lobby_t *lb, const Wyvern__Envelope *env)
{
    Wyvern__Actor__Event *ev =
        wyvern__actor__event__unpack(NULL, env->payload.len, env->payload.data);
    const Wyvern__Actor__FriendEvent *f =
        !ev                                                               ? NULL
        : ev->body_case == WYVERN__ACTOR__EVENT__BODY_FRIEND_REQUEST_SENT ? ev->friend_request_sent
        : ev->body_case == WYVERN__ACTOR__EVENT__BODY_FRIEND_ADDED        ? ev->friend_added
                                                                          : NULL;
    if (!f || strlen(f->other_account) == 0 || strlen(f->other_account) > LOBBY_ID_MAX) {
        wy_log_warn("bad wy.actor friend event skipped", "event_id", env->event_id, NULL);
    } else if (f->acted && f->actor_name[0]) {
        /* Only the acting side's event: the other side's copy of the same change is not a
         * second push. Events older than the acted flag have none: nothing to push. */
        push(lb, ev, f,
             ev->body_case == WYVERN__ACTOR__EVENT__BODY_FRIEND_ADDED ? "accepted" : "request");
    }
    if (ev)
        wyvern__actor__event__free_unpacked(ev, NULL);
}

void lobby_friend_events_on_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env)
{
    lobby_t *lb = lobby_get(d);
    if (lb && !lb->stopping && wy_wall_ms() < env->timestamp_ms + (uint64_t)lb->cfg->notice_ttl_ms)
        handle(lb, env);
    wy_daemon_event_done(d, msg, env);
}
