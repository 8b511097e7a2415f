/* wy-game chat delivery: every game instance consumes wy.chat (a broadcast row of the daemon's
 * subscriptions, game.c) and pushes each message to its own joined players among the
 * recipients, one frame encoded once for all of them (wy_ws_broadcast). Recipients:
 *   zone channel "zone:<instance>"  the players of that zone instance on this game (what the
 *                                   partition seats here, whatever the event lists)
 *   party, guild, whisper           the players whose account the event lists
 *   world, system (no recipients)   every joined player
 * Loop thread only (the Kafka handler runs on the loop; partitions are never involved). */
#include "game.h"
#include "wy_chatmsg.h"
#include "wy_log.h"

#include <string.h>

void game_chat_start(game_t *g)
{
    g->m_chat_events = wy_metrics_counter("wy_game_chat_events_total",
                                          "wy.chat events handled by this instance.", NULL);
    g->m_chat_delivered = wy_metrics_counter(
        "wy_game_chat_deliveries_total", "Chat messages queued to this instance's players.", NULL);
    g->m_chat_latency = wy_metrics_histogram(
        "wy_game_chat_delivery_seconds",
        "From wy-chat storing a message (its ts_ms, wall clock) to this instance queueing it to "
        "its players (server side of publish-to-deliver).",
        NULL, wy_metrics_latency_buckets, wy_metrics_latency_nbuckets);
}

/* One frame holding a push of msg, for any number of connections. */
static wy_ws_frame_t *push_frame(Wyvern__Lobby__ChatMessage *msg)
{
    Wyvern__Game__ServerMessage sm = WYVERN__GAME__SERVER_MESSAGE__INIT;
    sm.body_case = WYVERN__GAME__SERVER_MESSAGE__BODY_CHAT_MESSAGE;
    sm.chat_message = msg;
    size_t len = wyvern__game__server_message__get_packed_size(&sm);
    uint8_t *payload = NULL;
    wy_ws_frame_t *f = wy_ws_frame_alloc(true, len, &payload);
    wyvern__game__server_message__pack(&sm, payload);
    return f;
}

/* Whether player p (joined, connected) is a recipient of ev. zone: the instance of a zone
 * channel; accounts: the event's recipients (NULL: everyone). */
static bool wanted(const game_player_t *p, const char *zone, const wy_map_t *accounts)
{
    if (!p->conn || !p->conn->ws)
        return false;
    if (zone)
        return strcmp(p->instance, zone) == 0;
    return !accounts || wy_map_get_str(accounts, p->account) != NULL;
}

static void deliver(void *ctx, const Wyvern__Chat__ChatEvent *ev)
{
    game_t *g = ctx;
    size_t cap = wy_map_count(g->players);
    if (!cap)
        return;
    const char *zone = wy_chatmsg_zone(ev->channel_id);
    wy_map_t *accounts = NULL;
    if (!zone && ev->n_recipients) {
        accounts = wy_map_new(0); /* bounded by the event (chat's CHAT_MEMBERS_MAX) */
        for (size_t i = 0; i < ev->n_recipients; i++)
            (void)wy_map_put_str(accounts, ev->recipients[i], ev->recipients[i]);
    }
    wy_ws_conn_t **to = wy_malloc(cap * sizeof *to);
    size_t n = 0;
    wy_map_iter_t it;
    wy_map_iter_init(&it, g->players);
    while (wy_map_next(&it) && n < cap) { /* one entry per character: no duplicate */
        const game_player_t *p = it.val;
        if (wanted(p, zone, accounts))
            to[n++] = p->conn->ws;
    }
    wy_metric_add(g->m_chat_delivered, (double)wy_chatmsg_push(ev, push_frame, to, n));
    wy_free(to);
    wy_map_free(accounts);
}

void game_chat_on_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env)
{
    game_t *g = game_of(d);
    if (g && !g->stopping)
        wy_chatmsg_handle(env, deliver, g, g->m_chat_events, g->m_chat_latency);
    wy_daemon_event_done(d, msg, env);
}
