/* wy_chatmsg — the pieces of wy.chat delivery shared by lobby and game (issue 15): the event
 * decoded and checked, and a stored chat message (proto/chat.proto Message) as the client's
 * ChatMessage (proto/lobby.proto, pushed by lobby and by game alike). Pure functions: any
 * thread; the consumers call them on their loop. */
#ifndef WY_CHATMSG_H
#define WY_CHATMSG_H

#include "wy_core.h"
#include "wy_metrics.h"
#include "wy_ws.h"
#include "chat.pb-c.h"
#include "envelope.pb-c.h"
#include "lobby.pb-c.h"

/* The common part of a wy.chat handler (on the consumer's loop): decodes env's ChatEvent; one
 * without a message, a channel or a seq > 0 is logged as a warning and skipped; else counts it
 * in events, calls deliver(ctx, ev) once (ev lives through the call; it may carry a batch:
 * message at seq, more[i] at seq + 1 + i, one recipient list) and observes in latency, per
 * message, the seconds since chat stored it (its ts_ms, wall clock; skipped when unset or in the
 * future).
 * The caller still calls wy_daemon_event_done. */
typedef void (*wy_chatmsg_deliver_fn)(void *ctx, const Wyvern__Chat__ChatEvent *ev);
void wy_chatmsg_handle(const Wyvern__Envelope *env, wy_chatmsg_deliver_fn deliver, void *ctx,
                       wy_metric_t *events, wy_metric_t *latency);

/* Observes in h, per message of ev, the seconds from chat accepting it (its ts_ms, wall clock) to
 * now: the same measure as wy_chatmsg_handle's latency, for a stage of the caller's choosing
 * (lobby: when the event was consumed, before its fan-out). */
void wy_chatmsg_observe_since_stored(const Wyvern__Chat__ChatEvent *ev, wy_metric_t *h);

/* Histogram bounds (seconds) for chat's delivery stages, fine around issue 15's goal (p99 <=
 * 30 ms): 0.5 ms .. 10 s, every 2.5 ms up to 30 ms. WY_CHATMSG_NBUCKETS of them. */
#define WY_CHATMSG_NBUCKETS 30
extern const double wy_chatmsg_latency_buckets[WY_CHATMSG_NBUCKETS];

/* A histogram (no labels) with those bounds: wy_metrics_histogram(name, help, NULL, ...). */
wy_metric_t *wy_chatmsg_histogram(const char *name, const char *help);

/* Pushes ev's messages (message, then more[] in order: seq, seq + 1, ...) to to[0..n-1], each
 * as one frame encoded once: wrap returns a new frame (one reference, the caller's) holding the
 * service's ServerMessage around msg. Returns the pushes queued, summed over the messages
 * (wy_ws_broadcast: a closing or too slow connection is skipped). */
typedef wy_ws_frame_t *(*wy_chatmsg_wrap_fn)(Wyvern__Lobby__ChatMessage *msg);
size_t wy_chatmsg_push(const Wyvern__Chat__ChatEvent *ev, wy_chatmsg_wrap_fn wrap,
                       wy_ws_conn_t *const *to, size_t n);

/* Fills out (initialised here) from stored message m of channel at seq. out borrows m's and
 * channel's strings (and static type names): it lives no longer than they do; nothing to
 * free. */
void wy_chatmsg_to_client(Wyvern__Lobby__ChatMessage *out, const Wyvern__Chat__Message *m,
                          const char *channel, uint64_t seq);

/* Fills out (initialised here) from chat's SendResponse: the client's chat_sent, the answer
 * of a send through lobby or game. Borrows s's strings. */
void wy_chatmsg_sent_to_client(Wyvern__Lobby__ChatSent *out, const Wyvern__Chat__SendResponse *s);

/* The zone instance of a zone channel ("zone:meadow#1" -> "meadow#1"), NULL for another
 * channel. */
const char *wy_chatmsg_zone(const char *channel);

#endif
