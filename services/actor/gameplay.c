/* wy-actor: the wy.gameplay consumer (proto/gameplay.proto). Each event becomes a command
 * of its character, with the idempotency key "gameplay:<event_id>" and the event id as a
 * consumed id, both written in the group commit of the command's effect: a redelivered
 * event (Kafka after a crash or rebalance, or the producer retrying) finds its key and adds
 * nothing. The command goes through the store like any other, so it is applied by the
 * character's owner (forwarded when this instance does not own it). The event is done
 * (offset stored) once the effect is committed or refused for good; while the store is
 * unavailable it is retried every RETRY_MS (the partition waits: nothing is skipped).
 * Loop thread. */
#include "actor.h"
#include "gameplay.pb-c.h"
#include "wy_log.h"

#include <stdio.h>
#include <string.h>

#define RETRY_MS     500
#define KEY_PREFIX   "gameplay:"
#define EVENT_ID_MAX 100

typedef struct {
    actor_req_t req;
    wy_list_t node; /* in svc->gameplay */
    actor_svc_t *svc;
    wy_kafka_msg_t *msg;
    const Wyvern__Envelope *env;
    char actor_id[ACTOR_ID_LEN + 1];
    bool waiting; /* for the retry timer (not in the store) */
} gp_event_t;

static bool event_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > EVENT_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

/* The event as an Apply command (checked like one). WY_OK or WY_EINVAL with *why. */
static int event_command(const Wyvern__Gameplay__GameplayEvent *ge, actor_cmd_t *cmd,
                         const char **why)
{
    Wyvern__Actor__ApplyRequest req = WYVERN__ACTOR__APPLY_REQUEST__INIT;
    Wyvern__Actor__GainXp xp = WYVERN__ACTOR__GAIN_XP__INIT;
    Wyvern__Actor__AddItem add = WYVERN__ACTOR__ADD_ITEM__INIT;
    Wyvern__Actor__EarnCurrency earn = WYVERN__ACTOR__EARN_CURRENCY__INIT;
    Wyvern__Actor__Move move = WYVERN__ACTOR__MOVE__INIT;
    Wyvern__Actor__Position pos = WYVERN__ACTOR__POSITION__INIT;
    switch (ge->kind_case) {
    case WYVERN__GAMEPLAY__GAMEPLAY_EVENT__KIND_POSITION_SAVED:
        pos.zone = ge->position_saved->zone;
        pos.x = ge->position_saved->x;
        pos.y = ge->position_saved->y;
        pos.z = ge->position_saved->z;
        move.position = &pos;
        req.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_MOVE;
        req.move = &move;
        break;
    case WYVERN__GAMEPLAY__GAMEPLAY_EVENT__KIND_ZONE_CHANGED:
        pos.zone = ge->zone_changed->to_zone;
        pos.x = ge->zone_changed->x;
        pos.y = ge->zone_changed->y;
        move.position = &pos;
        req.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_MOVE;
        req.move = &move;
        break;
    case WYVERN__GAMEPLAY__GAMEPLAY_EVENT__KIND_XP_GAINED:
        xp.amount = ge->xp_gained->amount;
        xp.source = ge->xp_gained->source;
        req.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_GAIN_XP;
        req.gain_xp = &xp;
        break;
    case WYVERN__GAMEPLAY__GAMEPLAY_EVENT__KIND_ITEM_LOOTED:
        add.item = ge->item_looted->item;
        add.count = ge->item_looted->count;
        add.source = ge->item_looted->source;
        req.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_ADD_ITEM;
        req.add_item = &add;
        break;
    case WYVERN__GAMEPLAY__GAMEPLAY_EVENT__KIND_CURRENCY_GAINED:
        earn.amount = ge->currency_gained->amount;
        earn.source = ge->currency_gained->source;
        req.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_EARN_CURRENCY;
        req.earn_currency = &earn;
        break;
    default:
        *why = "no kind set (or a kind this version does not know)";
        return WY_EINVAL;
    }
    return actor_cmd_from_request(&req, cmd, why);
}

static void gp_free(gp_event_t *g)
{
    wy_list_remove(&g->node);
    actor_svc_unref(g->svc);
    wy_free(g);
}

/* Done for good: the offset may move on. */
static void gp_done(gp_event_t *g)
{
    uint64_t now = wy_wall_ms(), at = g->env->timestamp_ms;
    if (at && now >= at)
        wy_metric_observe(g->svc->m_gp_lag, (double)(now - at) / 1000.0);
    wy_daemon_event_done(g->svc->d, g->msg, g->env);
    gp_free(g);
}

/* Not applied and not to be applied by this instance (stopping): Kafka delivers it again. */
static void gp_give_up(gp_event_t *g)
{
    wy_kafka_msg_release(g->msg);
    gp_free(g);
}

static void on_retry_timer(uv_timer_t *t);

static void on_applied(actor_req_t *r, int status, const char *msg,
                       const Wyvern__Actor__ApplyResponse *res)
{
    gp_event_t *g = r->ud;
    actor_svc_t *svc = g->svc;
    if (status == WY_OK) {
        wy_metric_inc(res->replayed ? svc->m_gp_duplicate : svc->m_gp_applied);
        if (res->replayed)
            wy_log_debug("gameplay event applied before (redelivery)", "event_id", r->consumed,
                         "actor", g->actor_id, NULL);
        gp_done(g);
        return;
    }
    bool transient = status == WY_EUNAVAIL || status == WY_EBUSY || status == WY_ETIMEDOUT ||
                     status == WY_ECANCELED || status == WY_EIO || status == WY_EINTERNAL;
    if (!transient) {
        /* Refused by the character's state (full inventory, no such character, another
         * account's character): recorded under its key when the character exists, so a
         * redelivery is refused the same way. */
        wy_metric_inc(svc->m_gp_refused);
        wy_log_warn("gameplay event refused", "event_id", r->consumed, "actor", g->actor_id,
                    "reason", msg, NULL);
        gp_done(g);
        return;
    }
    if (svc->stopping) {
        gp_give_up(g);
        return;
    }
    wy_metric_inc(svc->m_gp_retried);
    g->waiting = true;
    if (!uv_is_active((uv_handle_t *)&svc->gp_timer))
        uv_timer_start(&svc->gp_timer, on_retry_timer, RETRY_MS, 0);
}

static void submit(gp_event_t *g)
{
    g->waiting = false;
    actor_store_submit(g->svc, g->actor_id, &g->req);
}

static void on_retry_timer(uv_timer_t *t)
{
    actor_svc_t *svc = t->data;
    /* Collected first: a submit may answer (and re-arm, or free) at once. */
    size_t n = 0;
    for (wy_list_t *it = svc->gameplay.next; it != &svc->gameplay; it = it->next)
        n += wy_list_entry(it, gp_event_t, node)->waiting;
    gp_event_t **todo = wy_calloc(n ? n : 1, sizeof *todo);
    size_t k = 0;
    for (wy_list_t *it = svc->gameplay.next; it != &svc->gameplay; it = it->next) {
        gp_event_t *g = wy_list_entry(it, gp_event_t, node);
        if (g->waiting)
            todo[k++] = g;
    }
    for (size_t i = 0; i < k; i++)
        submit(todo[i]);
    wy_free(todo);
}

void actor_gameplay_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env)
{
    actor_svc_t *svc = wy_daemon_state(d);
    if (!svc || svc->stopping) {
        wy_kafka_msg_release(msg);
        return;
    }
    const char *why = NULL;
    Wyvern__Gameplay__GameplayEvent *ge =
        wyvern__gameplay__gameplay_event__unpack(NULL, env->payload.len, env->payload.data);
    gp_event_t *g = wy_calloc(1, sizeof *g);
    const char *event_id = ge && ge->event_id && *ge->event_id ? ge->event_id : env->event_id;
    if (!ge)
        why = "payload is not a wyvern.gameplay.GameplayEvent";
    else if (!event_id_ok(event_id))
        why = "event_id must be 1..100 of [A-Za-z0-9._:-]";
    else if (!actor_uuid_valid(ge->character_id))
        why = "character_id must be a lower-case UUID";
    else if (!actor_uuid_valid(ge->account_id))
        why = "account_id must be a lower-case UUID";
    else
        (void)event_command(ge, &g->req.cmd, &why);
    if (why) {
        wy_metric_inc(svc->m_gp_invalid);
        wy_log_warn("gameplay event invalid (skipped)", "event_id", env->event_id, "reason", why,
                    NULL);
        if (ge)
            wyvern__gameplay__gameplay_event__free_unpacked(ge, NULL);
        wy_free(g);
        wy_daemon_event_done(d, msg, env);
        return;
    }
    g->svc = svc;
    actor_svc_ref(svc);
    g->msg = msg;
    g->env = env;
    snprintf(g->actor_id, sizeof g->actor_id, "%s", ge->character_id);
    snprintf(g->req.key, sizeof g->req.key, KEY_PREFIX "%s", event_id);
    snprintf(g->req.account, sizeof g->req.account, "%s", ge->account_id);
    snprintf(g->req.consumed, sizeof g->req.consumed, "%s", event_id);
    g->req.done = on_applied;
    g->req.ud = g;
    wyvern__gameplay__gameplay_event__free_unpacked(ge, NULL);
    wy_list_push_back(&svc->gameplay, &g->node);
    submit(g);
}

static void on_timer_closed(uv_handle_t *h)
{
    actor_svc_unref(h->data);
}

void actor_gameplay_start(actor_svc_t *svc)
{
    wy_list_init(&svc->gameplay);
    uv_timer_init(svc->loop, &svc->gp_timer);
    svc->gp_timer.data = svc;
    actor_svc_ref(svc); /* released by the timer's close */
}

void actor_gameplay_stop(actor_svc_t *svc)
{
    /* Those waiting for a retry go back to Kafka; those in the store are answered
     * UNAVAILABLE by its stop and go back then (on_applied). */
    wy_list_t *it = svc->gameplay.next;
    while (it != &svc->gameplay) {
        gp_event_t *g = wy_list_entry(it, gp_event_t, node);
        it = it->next;
        if (g->waiting)
            gp_give_up(g);
    }
    uv_close((uv_handle_t *)&svc->gp_timer, on_timer_closed);
}
