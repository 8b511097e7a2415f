/* wy-lobby relay: the events lobby produces to Kafka that have no durable effect (kicks on
 * wy.session, notices on wy.notify), retried for as long as they still matter. Each event
 * keeps its event_id through retries (consumers dedupe on it). The queue is bounded
 * (WY_LOBBY_KAFKA_RELAY_MAX events waiting or in flight); an event refused because it is full, or
 * dropped because its time passed or Kafka refused it for good, is counted in
 * wy_lobby_relay_dropped_total{reason} and logged. Nothing here keeps one session per
 * account: the fence does (README "Design"). Loop thread only. Sits on state (README
 * "Code map"). */
#ifndef LOBBY_RELAY_H
#define LOBBY_RELAY_H

#include "lobby-t.h"

/* Creates the relay's queue and metrics; call once in start. */
void lobby_relay_init(lobby_t *lb);
/* Queues one event to topic (Envelope of type, Kafka key `key`) and produces it now; a
 * delivery that fails with a temporary error (Kafka down: message timeout) is produced
 * again, with the same event_id, until it is delivered or ttl_ms have passed since this
 * call. payload is copied. On WY_OK writes the event_id into event_id_out (may be NULL).
 * WY_EBUSY: the queue is full (counted, logged); WY_ESTATE: stopping. */
int lobby_relay_publish(lobby_t *lb, const char *topic, const char *key, const char *type,
                        const void *payload, size_t len, uint64_t ttl_ms, char event_id_out[37]);
/* Produces again the events whose last attempt failed, drops those past their time; called
 * by the sweep timer. */
void lobby_relay_tick(lobby_t *lb);
/* On stop: one last attempt for the waiting events (the daemon's producer close flushes
 * what is in flight), then no more retries. */
void lobby_relay_stop(lobby_t *lb);

#endif
