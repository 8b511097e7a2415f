/* wy-game join and leave: join(ticket) verifies the ticket locally (wy_ticket: signature,
 * expiry, this instance and incarnation, single use), hands the player to the partition of
 * its zone instance and answers welcome; leave or a disconnect takes it out and saves its
 * position once: a wy.gameplay event (position_saved) with one event id, published again
 * with that same id until Kafka acknowledges it. */
#include "game.h"
#include "gameplay.pb-c.h"
#include "wy_log.h"

#include <math.h>
#include <string.h>

#define GAMEPLAY_TOPIC      "wy.gameplay"
#define GAMEPLAY_TYPE       "gameplay.event"
#define SAVE_RETRY_EVERY_MS 1000u

static Wyvern__Game__Code code_of_fault(wy_ticket_fault_t f)
{
    switch (f) {
    case WY_TICKET_MALFORMED:
        return WYVERN__GAME__CODE__TICKET_MALFORMED;
    case WY_TICKET_FORGED:
        return WYVERN__GAME__CODE__TICKET_FORGED;
    case WY_TICKET_EXPIRED:
        return WYVERN__GAME__CODE__TICKET_EXPIRED;
    case WY_TICKET_WRONG_INSTANCE:
        return WYVERN__GAME__CODE__TICKET_WRONG_INSTANCE;
    case WY_TICKET_REPLAYED:
        return WYVERN__GAME__CODE__TICKET_REPLAYED;
    case WY_TICKET_BUSY:
        return WYVERN__GAME__CODE__BUSY;
    case WY_TICKET_OK:
        break;
    }
    return WYVERN__GAME__CODE__INTERNAL;
}

static void refuse(game_conn_t *c, uint32_t request_id, Wyvern__Game__Code code, const char *why,
                   int close_code)
{
    game_send_error(c, request_id, code, why);
    game_conn_close(c, close_code, why);
}

static void refuse_ticket(game_conn_t *c, uint32_t request_id, wy_ticket_fault_t f, const char *why,
                          const wy_ticket_t *t)
{
    game_t *g = c->g;
    wy_metric_inc(g->m_joins_refused[f]);
    wy_log_info("join refused", "peer", c->peer, "fault", wy_ticket_fault_name(f), "why", why,
                "character", t && t->character[0] ? t->character : NULL, NULL);
    refuse(c, request_id, code_of_fault(f), why,
           f == WY_TICKET_BUSY ? GAME_CLOSE_UNAVAILABLE : GAME_CLOSE_JOIN_REFUSED);
}

/* "<zone>#<n>" of zone z. */
static bool instance_of_zone(const char *inst, const char *zone)
{
    size_t n = strlen(zone);
    return strncmp(inst, zone, n) == 0 && inst[n] == '#' && inst[n + 1] != '\0';
}

void game_join(game_conn_t *c, uint32_t request_id, const Wyvern__Game__Join *j)
{
    game_t *g = c->g;
    if (c->player) {
        game_send_error(c, request_id, WYVERN__GAME__CODE__ALREADY_JOINED,
                        "this connection has joined already");
        return;
    }
    if (g->stopping || !g->ticket_keys) {
        wy_metric_inc(g->m_join_other);
        refuse(c, request_id, WYVERN__GAME__CODE__UNAVAILABLE,
               g->stopping ? "instance stopping"
                           : "this instance has no ticket keys (WY_GAME_TICKET_KEYS_DIR)",
               GAME_CLOSE_UNAVAILABLE);
        return;
    }
    wy_ticket_t t;
    wy_ticket_fault_t fault = WY_TICKET_OK;
    const char *why = NULL;
    wy_ticket_verify_opts_t vo = {.game = wy_daemon_instance(g->d),
                                  .incarnation = g->incarnation,
                                  .leeway_ms = g->cfg->ticket_leeway_ms};
    if (wy_ticket_verify(g->ticket_keys, j->ticket, strlen(j->ticket), &vo, &t, &fault, &why) !=
        WY_OK) {
        refuse_ticket(c, request_id, fault, why, NULL);
        return;
    }
    const Wyvern__World__Zone *z = game_zone(g, t.zone);
    if (!z || !instance_of_zone(t.instance, t.zone)) {
        wy_metric_inc(g->m_join_other);
        refuse(c, request_id, WYVERN__GAME__CODE__UNAVAILABLE,
               z ? "the ticket's instance is not of its zone"
                 : "zone unknown here (catalog not loaded yet?): enter again through lobby",
               GAME_CLOSE_UNAVAILABLE);
        return;
    }
    game_player_t *old = wy_map_get_str(g->players, t.character);
    if (!old && wy_map_count(g->players) >= (size_t)g->cfg->capacity) {
        wy_metric_inc(g->m_join_other);
        refuse(c, request_id, WYVERN__GAME__CODE__FULL, "this game instance is full",
               GAME_CLOSE_UNAVAILABLE);
        return;
    }
    /* Single use: only a ticket that passed every other check is spent. */
    if (wy_ticket_used_claim(g->used, &t, 0, &fault) != WY_OK) {
        refuse_ticket(c, request_id, fault,
                      fault == WY_TICKET_REPLAYED ? "ticket already used"
                                                  : "too many recent joins: retry shortly",
                      &t);
        return;
    }
    const char *perr = NULL;
    game_part_t *part = game_part_ensure(g, t.instance, z, &perr);
    if (!part) {
        wy_metric_inc(g->m_join_other);
        refuse(c, request_id, WYVERN__GAME__CODE__UNAVAILABLE, perr, GAME_CLOSE_UNAVAILABLE);
        return;
    }
    double x = t.x, y = t.y;
    if (old) {
        /* The character is here already (a reconnect): the newer connection takes over;
         * the old one leaves (its position saved) and the new one resumes there when it
         * is the same zone instance. */
        if (strcmp(old->instance, t.instance) == 0) {
            game_part_remove(old->part, old);
            x = old->x;
            y = old->y;
            old->part = NULL;
        }
        game_conn_t *oc = old->conn;
        if (oc) {
            game_player_leave(oc, 0);
            game_conn_close(oc, GAME_CLOSE_REPLACED, "joined again on another connection");
        }
    }
    game_player_t *p = wy_calloc(1, sizeof *p);
    p->entity = ++g->next_entity;
    p->conn = c;
    p->part = part;
    snprintf(p->account, sizeof p->account, "%s", t.account);
    snprintf(p->character, sizeof p->character, "%s", t.character);
    snprintf(p->name, sizeof p->name, "%s", t.name);
    snprintf(p->zone, sizeof p->zone, "%s", t.zone);
    snprintf(p->instance, sizeof p->instance, "%s", t.instance);
    p->x = x;
    p->y = y;
    p->renew_at_ms = wy_now_ms() + (uint64_t)g->cfg->renew_ms;
    if (game_part_add(part, p) != WY_OK) {
        wy_free(p);
        wy_metric_inc(g->m_join_other);
        refuse(c, request_id, WYVERN__GAME__CODE__BUSY, "partition busy: retry shortly",
               GAME_CLOSE_UNAVAILABLE);
        return;
    }
    wy_map_put_str(g->players, p->character, p);
    c->player = p;
    wy_metric_add(g->m_players, 1);
    wy_metric_inc(g->m_joins_ok);

    Wyvern__Game__ServerMessage m = WYVERN__GAME__SERVER_MESSAGE__INIT;
    Wyvern__Game__Welcome w = WYVERN__GAME__WELCOME__INIT;
    Wyvern__Game__Vec2 pos = WYVERN__GAME__VEC2__INIT;
    pos.x = p->x;
    pos.y = p->y;
    w.entity_id = p->entity;
    w.account_id = p->account;
    w.character_id = p->character;
    w.zone_id = p->zone;
    w.instance_id = p->instance;
    w.game_id = (char *)wy_daemon_instance(g->d);
    w.tick_rate = z->tick_rate;
    w.position = &pos;
    w.max_message_bytes = (uint32_t)g->cfg->max_message;
    m.request_id = request_id;
    m.body_case = WYVERN__GAME__SERVER_MESSAGE__BODY_WELCOME;
    m.welcome = &w;
    game_send(c, &m);
    char ent[24];
    snprintf(ent, sizeof ent, "%llu", (unsigned long long)p->entity);
    wy_log_info("player joined", "account", p->account, "character", p->character, "zone",
                p->instance, "entity", ent, "kid", t.kid, NULL);
}

/* ---- the position save ---- */

typedef struct {
    wy_list_t node; /* on g->saves_retry while waiting for the retry timer */
    game_t *g;
    char event_id[37];
    char key[WY_TICKET_ID_MAX + 1];
    uint64_t ts_ms;
    uint8_t *payload;
    size_t len;
    unsigned attempts;
} save_t;

static void save_free(save_t *s)
{
    s->g->saves_pending--;
    wy_free(s->payload);
    wy_free(s);
}

static void save_publish(save_t *s);

static void on_saved(void *udata, int status, const char *event_id)
{
    WY_UNUSED(event_id);
    save_t *s = udata;
    game_t *g = s->g;
    if (status == WY_OK) {
        wy_metric_inc(g->m_saves);
        save_free(s);
        return;
    }
    if (status == WY_ECANCELED || !wy_daemon_producer(g->d)) {
        /* The producer closed (end of the drain): nothing can carry it any more. */
        wy_log_error("position save lost at stop", "character", s->key, "event_id", s->event_id,
                     NULL);
        save_free(s);
        return;
    }
    wy_list_push_back(&g->saves_retry, &s->node);
}

static void save_publish(save_t *s)
{
    game_t *g = s->g;
    wy_kafka_producer_t *pr = wy_daemon_producer(g->d);
    s->attempts++;
    int rc = pr ? wy_kafka_produce_event(pr, GAMEPLAY_TOPIC, s->key, s->event_id, GAMEPLAY_TYPE,
                                         s->ts_ms, s->payload, s->len, on_saved, s)
                : WY_ESTATE;
    if (rc == WY_OK) {
        if (s->attempts > 1)
            wy_metric_inc(g->m_save_retries);
        return;
    }
    if (!pr) {
        wy_log_error("position save lost at stop", "character", s->key, "event_id", s->event_id,
                     NULL);
        save_free(s);
        return;
    }
    wy_list_push_back(&g->saves_retry, &s->node); /* queue full, broker away: later */
}

static void saves_close(game_t *g);

static void on_save_timer(uv_timer_t *t)
{
    game_t *g = t->data;
    if (g->stopping && !wy_daemon_producer(g->d)) {
        saves_close(g); /* the drain is over */
        return;
    }
    wy_list_t todo;
    wy_list_init(&todo);
    while (!wy_list_empty(&g->saves_retry)) {
        wy_list_t *n = g->saves_retry.next;
        wy_list_remove(n);
        wy_list_push_back(&todo, n);
    }
    while (!wy_list_empty(&todo)) {
        wy_list_t *n = todo.next;
        wy_list_remove(n);
        save_publish(wy_container_of(n, save_t, node));
    }
}

static void save_position(game_t *g, const game_player_t *p)
{
    if (g->saves_pending >= (size_t)g->cfg->save_queue) {
        wy_metric_inc(g->m_save_dropped);
        wy_log_error("position save dropped: WY_GAME_SAVE_QUEUE full", "character", p->character,
                     NULL);
        return;
    }
    save_t *s = wy_calloc(1, sizeof *s);
    s->g = g;
    wy_uuid4(s->event_id);
    snprintf(s->key, sizeof s->key, "%s", p->character);
    s->ts_ms = wy_wall_ms();
    Wyvern__Gameplay__GameplayEvent ev = WYVERN__GAMEPLAY__GAMEPLAY_EVENT__INIT;
    Wyvern__Gameplay__PositionSaved ps = WYVERN__GAMEPLAY__POSITION_SAVED__INIT;
    ev.event_id = s->event_id;
    ev.account_id = (char *)p->account;
    ev.character_id = (char *)p->character;
    ev.ts_ms = (int64_t)s->ts_ms;
    ps.zone = (char *)p->zone;
    ps.zone_instance = (char *)p->instance;
    ps.x = (float)p->x;
    ps.y = (float)p->y;
    ev.kind_case = WYVERN__GAMEPLAY__GAMEPLAY_EVENT__KIND_POSITION_SAVED;
    ev.position_saved = &ps;
    s->len = wyvern__gameplay__gameplay_event__get_packed_size(&ev);
    s->payload = wy_malloc(s->len ? s->len : 1);
    wyvern__gameplay__gameplay_event__pack(&ev, s->payload);
    g->saves_pending++;
    save_publish(s);
}

void game_player_leave(game_conn_t *c, uint32_t request_id)
{
    game_player_t *p = c->player;
    if (!p)
        return;
    game_t *g = c->g;
    c->player = NULL;
    p->conn = NULL;
    if (p->part)
        game_part_remove(p->part, p);
    wy_map_del_if(g->players, p->character, strlen(p->character), p);
    wy_metric_add(g->m_players, -1);
    save_position(g, p);
    game_world_release(g, p);
    if (request_id) {
        Wyvern__Game__ServerMessage m = WYVERN__GAME__SERVER_MESSAGE__INIT;
        Wyvern__Game__Left l = WYVERN__GAME__LEFT__INIT;
        Wyvern__Game__Vec2 pos = WYVERN__GAME__VEC2__INIT;
        pos.x = p->x;
        pos.y = p->y;
        l.position = &pos;
        m.request_id = request_id;
        m.body_case = WYVERN__GAME__SERVER_MESSAGE__BODY_LEFT;
        m.left = &l;
        game_send(c, &m);
    }
    char px[32], py[32];
    snprintf(px, sizeof px, "%.2f", p->x);
    snprintf(py, sizeof py, "%.2f", p->y);
    wy_log_info("player left", "account", p->account, "character", p->character, "zone",
                p->instance, "x", px, "y", py, NULL);
    wy_free(p);
}

int game_saves_start(game_t *g)
{
    wy_list_init(&g->saves_retry);
    uv_timer_init(g->loop, &g->save_timer);
    g->save_timer.data = g;
    uv_timer_start(&g->save_timer, on_save_timer, SAVE_RETRY_EVERY_MS, SAVE_RETRY_EVERY_MS);
    g->save_timer_started = true;
    return WY_OK;
}

/* Retries go on through the drain (game_busy counts the saves pending), faster. */
void game_saves_stop(game_t *g)
{
    if (g->save_timer_started)
        uv_timer_start(&g->save_timer, on_save_timer, 50, 50);
}

/* Once the producer is closed (the end of the drain): saves still waiting are lost
 * (logged), and the timer closes so the loop can end. */
static void saves_close(game_t *g)
{
    if (!g->save_timer_started)
        return;
    g->save_timer_started = false;
    uv_timer_stop(&g->save_timer);
    uv_close((uv_handle_t *)&g->save_timer, NULL);
    while (!wy_list_empty(&g->saves_retry)) {
        wy_list_t *n = g->saves_retry.next;
        wy_list_remove(n);
        save_t *s = wy_container_of(n, save_t, node);
        wy_log_error("position save lost at stop", "character", s->key, "event_id", s->event_id,
                     NULL);
        save_free(s);
    }
}
