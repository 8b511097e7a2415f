/* wy-lobby enter_game (see enter.h): GetCharacter at actor -> Place at world -> a signed
 * join ticket for the game instance world chose -> the session record in-game with the zone
 * -> entered_game. */
#include "enter.h"
#include "state.h"
#include "store.h"
#include "wire.h"
#include "actor.pb-c.h"
#include "world.pb-c.h"
#include "wy_log.h"
#include "wy_ticket.h"
#include "wy_token.h"

#include <string.h>

#define CALL_DEADLINE_MS 3000u

typedef struct {
    lobby_conn_t *c;
    uint32_t req;
    uint64_t t0;
    char character[WY_TICKET_ID_MAX + 1];
    char name[WY_TICKET_NAME_MAX + 1]; /* the character's (actor), signed into the ticket */
    /* The answer, kept while the session record is written (on_recorded); owned. */
    char *game_addr, *ticket, *game_id, *zone_id, *instance_id;
    double x, y;
    int64_t ticket_exp_ms;
} enter_req_t;

static void enter_end(enter_req_t *q, Wyvern__Lobby__Code code, const char *why)
{
    lobby_conn_t *c = q->c;
    c->entering = false;
    if (code != WYVERN__LOBBY__CODE__OK)
        lobby_reply_status(c, q->req, code, why);
    lobby_observe(c, "enter_game", q->t0, code);
    if (code != WYVERN__LOBBY__CODE__OK && code != WYVERN__LOBBY__CODE__NOT_FOUND)
        wy_log_info("enter_game refused", "account", c->account, "character", q->character, "why",
                    why, NULL);
    lobby_conn_unref(c);
    wy_free(q->game_addr);
    wy_free(q->ticket);
    wy_free(q->game_id);
    wy_free(q->zone_id);
    wy_free(q->instance_id);
    wy_free(q);
}

/* Answers entered_game from what q keeps. */
static void answer(enter_req_t *q)
{
    lobby_conn_t *c = q->c;
    Wyvern__Lobby__EnteredGame out = WYVERN__LOBBY__ENTERED_GAME__INIT;
    out.game_addr = q->game_addr;
    out.ticket = q->ticket;
    out.game_id = q->game_id;
    out.zone_id = q->zone_id;
    out.instance_id = q->instance_id;
    out.x = q->x;
    out.y = q->y;
    out.ticket_expires_at_ms = q->ticket_exp_ms;
    out.character_id = q->character;
    lobby_reply(c, q->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_ENTERED_GAME, &out.base);
    wy_metric_inc(c->lb->m_entered);
    wy_log_info("entered game", "account", c->account, "character", q->character, "zone",
                q->instance_id, "game", q->game_id, NULL);
    enter_end(q, WYVERN__LOBBY__CODE__OK, NULL);
}

/* The session record says in-game (or could not be written): now the client may know. */
static void on_recorded(lobby_conn_t *c, int status, void *ud)
{
    enter_req_t *q = ud;
    if (status == WY_ESTATE || !c->ws || c->state != LOBBY_ST_READY) {
        enter_end(q, WYVERN__LOBBY__CODE__CONFLICT, "session closing");
        return;
    }
    /* Redis failed the write: the placement and ticket are good, so the player enters anyway;
     * the record says in-game from the next heartbeat write (c->session_state), logged by
     * store.c meanwhile. */
    answer(q);
}

static void on_placed(int err, int status, const char *message, const ProtobufCMessage *resp,
                      void *arg)
{
    WY_UNUSED(status);
    enter_req_t *q = arg;
    lobby_conn_t *c = q->c;
    lobby_t *lb = c->lb;
    if (err != WY_OK) {
        char why[200];
        snprintf(why, sizeof why, "world: %s", message[0] ? message : wy_strerror(err));
        enter_end(q,
                  err == WY_EPERM || err == WY_ENOTFOUND ? WYVERN__LOBBY__CODE__NOT_FOUND
                  : err == WY_ELIMIT                     ? WYVERN__LOBBY__CODE__RATE_LIMITED
                                                         : WYVERN__LOBBY__CODE__UNAVAILABLE,
                  why);
        return;
    }
    if (!c->ws || c->state != LOBBY_ST_READY) {
        enter_end(q, WYVERN__LOBBY__CODE__CONFLICT, "session closing");
        return;
    }
    const Wyvern__World__Placement *p = (const Wyvern__World__Placement *)resp;
    if (!p->game_client_addr[0] || !p->game_incarnation[0] || !p->position) {
        enter_end(q, WYVERN__LOBBY__CODE__UNAVAILABLE,
                  "the game instance is not known to world yet: retry");
        return;
    }
    wy_ticket_t t;
    memset(&t, 0, sizeof t);
    snprintf(t.account, sizeof t.account, "%s", c->account);
    snprintf(t.character, sizeof t.character, "%s", q->character);
    snprintf(t.name, sizeof t.name, "%s", q->name);
    snprintf(t.zone, sizeof t.zone, "%s", p->zone_id);
    snprintf(t.instance, sizeof t.instance, "%s", p->instance_id);
    snprintf(t.game, sizeof t.game, "%s", p->game_id);
    snprintf(t.incarnation, sizeof t.incarnation, "%s", p->game_incarnation);
    t.x = p->position->x;
    t.y = p->position->y;
    char *tk = NULL;
    wy_ticket_t signed_t;
    const char *e = NULL;
    if (wy_ticket_sign(lb->ticket_keys, lb->cfg->ticket_kid, &t, lb->cfg->ticket_ttl_ms, 0, &tk,
                       &signed_t, &e) != WY_OK) {
        wy_log_error("join ticket not signed", "error", e, "character", q->character, NULL);
        enter_end(q, WYVERN__LOBBY__CODE__INTERNAL, "cannot sign a join ticket");
        return;
    }
    q->game_addr = wy_strdup(p->game_client_addr);
    q->ticket = tk;
    q->game_id = wy_strdup(p->game_id);
    q->zone_id = wy_strdup(p->zone_id);
    q->instance_id = wy_strdup(p->instance_id);
    q->x = t.x;
    q->y = t.y;
    q->ticket_exp_ms = signed_t.exp_ms;
    /* The record says in-game before the client hears entered_game: whoever reads the session
     * once the player is told (a friend's presence, another instance) sees it in game. */
    snprintf(c->session_state, sizeof c->session_state, "in-game:%s", p->zone_id);
    if (lobby_session_write_then(c, on_recorded, q) != WY_OK)
        answer(q); /* Redis not connected: as a failed write (on_recorded) */
}

static void on_character(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    WY_UNUSED(status);
    enter_req_t *q = arg;
    lobby_conn_t *c = q->c;
    lobby_t *lb = c->lb;
    if (err == WY_ENOTFOUND) {
        enter_end(q, WYVERN__LOBBY__CODE__NOT_FOUND, "no such character");
        return;
    }
    if (err != WY_OK) {
        char why[200];
        snprintf(why, sizeof why, "actor: %s", message[0] ? message : wy_strerror(err));
        enter_end(
            q, err == WY_EINVAL ? WYVERN__LOBBY__CODE__INVALID : WYVERN__LOBBY__CODE__UNAVAILABLE,
            why);
        return;
    }
    const Wyvern__Actor__Character *ch = (const Wyvern__Actor__Character *)resp;
    /* Another account's character answers as a missing one: ids are not secrets, but
     * whose they are is. */
    if (strcmp(ch->account_id, c->account) != 0 || ch->deleted) {
        enter_end(q, WYVERN__LOBBY__CODE__NOT_FOUND, "no such character");
        return;
    }
    if (!lb->world || !c->ws) {
        enter_end(q, WYVERN__LOBBY__CODE__UNAVAILABLE, "lobby is stopping");
        return;
    }
    /* Actor's names are at most 64 bytes (ACTOR_NAME_MAX), so this never cuts one. */
    snprintf(q->name, sizeof q->name, "%s", ch->name);
    Wyvern__World__PlaceRequest pr = WYVERN__WORLD__PLACE_REQUEST__INIT;
    Wyvern__World__Point pos = WYVERN__WORLD__POINT__INIT;
    pr.account_id = c->account;
    pr.character_id = q->character;
    if (ch->position && ch->position->zone[0]) {
        pr.saved_zone = ch->position->zone;
        pos.x = ch->position->x;
        pos.y = ch->position->y;
        pr.saved_position = &pos;
    }
    if (wy_grpc_call(lb->world, "/wyvern.world.World/Place", &pr.base,
                     &wyvern__world__placement__descriptor, CALL_DEADLINE_MS, NULL, 0, on_placed,
                     q) != WY_OK)
        enter_end(q, WYVERN__LOBBY__CODE__UNAVAILABLE, "world: too many requests in flight");
}

typedef struct {
    lobby_locate_cb cb;
    void *ud;
} locate_req_t;

static void on_located(int err, int status, const char *message, const ProtobufCMessage *resp,
                       void *arg)
{
    WY_UNUSED(status);
    WY_UNUSED(message);
    locate_req_t *q = arg;
    const Wyvern__World__Placement *p = (const Wyvern__World__Placement *)resp;
    q->cb(err, err == WY_OK ? p->zone_id : NULL, q->ud);
    wy_free(q);
}

int lobby_enter_locate(lobby_t *lb, const char *account, lobby_locate_cb cb, void *ud)
{
    if (!lb->world)
        return WY_ESTATE;
    locate_req_t *q = wy_calloc(1, sizeof *q);
    q->cb = cb;
    q->ud = ud;
    Wyvern__World__LocateRequest lr = WYVERN__WORLD__LOCATE_REQUEST__INIT;
    lr.who_case = WYVERN__WORLD__LOCATE_REQUEST__WHO_ACCOUNT_ID;
    lr.account_id = (char *)account;
    int rc = wy_grpc_call(lb->world, "/wyvern.world.World/Locate", &lr.base,
                          &wyvern__world__placement__descriptor, CALL_DEADLINE_MS, NULL, 0,
                          on_located, q);
    if (rc != WY_OK)
        wy_free(q);
    return rc;
}

void lobby_enter_game(lobby_conn_t *c, uint32_t req, const Wyvern__Lobby__EnterGame *m, uint64_t t0)
{
    lobby_t *lb = c->lb;
    Wyvern__Lobby__Code code = WYVERN__LOBBY__CODE__OK;
    const char *why = NULL;
    size_t n = strlen(m->character_id);
    if (n == 0 || n > WY_TICKET_ID_MAX || strpbrk(m->character_id, "{}")) {
        code = WYVERN__LOBBY__CODE__INVALID;
        why = "character_id must be 1..64 bytes";
    } else if (!lb->ticket_keys || !lb->chars_actor || !lb->world) {
        code = WYVERN__LOBBY__CODE__UNAVAILABLE;
        why = "entering the game is not configured on this lobby";
    } else if (c->entering) {
        code = WYVERN__LOBBY__CODE__CONFLICT;
        why = "an enter_game of this session is in flight";
    }
    if (code != WYVERN__LOBBY__CODE__OK) {
        lobby_reply_status(c, req, code, why);
        lobby_observe(c, "enter_game", t0, code);
        return;
    }
    enter_req_t *q = wy_calloc(1, sizeof *q);
    q->c = c;
    q->req = req;
    q->t0 = t0;
    snprintf(q->character, sizeof q->character, "%s", m->character_id);
    c->entering = true;
    lobby_conn_ref(c);
    Wyvern__Actor__GetCharacterRequest gr = WYVERN__ACTOR__GET_CHARACTER_REQUEST__INIT;
    gr.actor_id = q->character;
    if (wy_grpc_call(lb->chars_actor, "/wyvern.actor.Actor/GetCharacter", &gr.base,
                     &wyvern__actor__character__descriptor, CALL_DEADLINE_MS, NULL, 0, on_character,
                     q) != WY_OK)
        enter_end(q, WYVERN__LOBBY__CODE__UNAVAILABLE, "actor: too many requests in flight");
}

int lobby_enter_start(lobby_t *lb, const char **err)
{
    static char msg[600];
    lb->m_entered = wy_metrics_counter("wy_lobby_entered_game_total",
                                       "enter_game answered with a join ticket.", NULL);
    if (!lb->cfg->ticket_keys_dir[0]) {
        wy_log_warn("no WY_LOBBY_TICKET_KEYS_DIR: enter_game is refused", NULL);
        return WY_OK;
    }
    lb->ticket_keys = wy_jwt_keyset_new();
    const char *e = NULL;
    int rc = wy_token_keyset_load_dir(lb->ticket_keys, lb->cfg->ticket_keys_dir, &e);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "WY_LOBBY_TICKET_KEYS_DIR: %s", e ? e : wy_strerror(rc));
        *err = msg;
        return WY_EINVAL;
    }
    bool can_sign = false;
    if (wy_jwt_keyset_lookup(lb->ticket_keys, lb->cfg->ticket_kid, NULL, &can_sign) != WY_OK ||
        !can_sign) {
        snprintf(msg, sizeof msg,
                 "WY_LOBBY_TICKET_KID: \"%.64s\" is not a private key in WY_LOBBY_TICKET_KEYS_DIR",
                 lb->cfg->ticket_kid);
        *err = msg;
        return WY_EINVAL;
    }
    /* Actor: the characters' channel (characters.c, WY_LOBBY_ACTOR_GRPC). */
    if (lb->cfg->world_grpc[0] && wy_grpc_channel_new(wy_daemon_grpc_rt(lb->d), lb->cfg->world_grpc,
                                                      NULL, &lb->world) != WY_OK) {
        *err = "WY_LOBBY_WORLD_GRPC: cannot open a channel";
        return WY_EINVAL;
    }
    return WY_OK;
}

void lobby_enter_stop(lobby_t *lb)
{
    if (lb->world)
        wy_grpc_channel_close(lb->world);
    lb->world = NULL;
}
