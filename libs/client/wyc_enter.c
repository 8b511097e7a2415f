/* wyc enter_game: the lobby request that answers a game instance and a join ticket. */
#include "wyc_int.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    wyc_enter_cb cb;
    void *ud;
} enter_op_t;

static void on_entered(wyc_client_t *c, const wyc_error_t *err,
                       const Wyvern__Lobby__ServerMessage *m, void *ud)
{
    enter_op_t *op = ud;
    if (err->code != WY_OK) {
        op->cb(c, err, NULL, op->ud);
    } else if (!m || m->body_case != WYVERN__LOBBY__SERVER_MESSAGE__BODY_ENTERED_GAME ||
               strlen(m->entered_game->ticket) >= sizeof((wyc_entry_t *)0)->ticket) {
        wyc_error_t e;
        wyc__err_set(&e, WY_EIO, WYC_SRC_PROTOCOL, "lobby answered enter_game without an entry");
        op->cb(c, &e, NULL, op->ud);
    } else {
        const Wyvern__Lobby__EnteredGame *g = m->entered_game;
        wyc_entry_t en;
        memset(&en, 0, sizeof en);
        snprintf(en.character_id, sizeof en.character_id, "%s", g->character_id);
        snprintf(en.game_addr, sizeof en.game_addr, "%s", g->game_addr);
        snprintf(en.game_id, sizeof en.game_id, "%s", g->game_id);
        snprintf(en.zone_id, sizeof en.zone_id, "%s", g->zone_id);
        snprintf(en.instance_id, sizeof en.instance_id, "%s", g->instance_id);
        snprintf(en.ticket, sizeof en.ticket, "%s", g->ticket);
        en.x = g->x;
        en.y = g->y;
        en.ticket_expires_at_ms = g->ticket_expires_at_ms;
        op->cb(c, err, &en, op->ud);
    }
    wy_free(op);
}

int wyc_lobby_enter_game(wyc_client_t *c, const char *character_id, wyc_enter_cb cb, void *ud)
{
    if (!character_id || !cb || strlen(character_id) > 64)
        return WY_EINVAL;
    Wyvern__Lobby__EnterGame eg = WYVERN__LOBBY__ENTER_GAME__INIT;
    eg.character_id = (char *)character_id;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_ENTER_GAME;
    m.enter_game = &eg;
    enter_op_t *op = wy_malloc(sizeof *op);
    op->cb = cb;
    op->ud = ud;
    int rc = wyc__lobby_request(c, &m, on_entered, op);
    if (rc != WY_OK)
        wy_free(op);
    return rc;
}
