/* wy_chatmsg: see wy_chatmsg.h. */
#include "wy_chatmsg.h"
#include "wy_log.h"

#include <string.h>

static const char *const msg_types[] = {"text", "tombstone", "join", "leave", "invite", "kick"};

static const char *type_name(int t)
{
    return t >= 0 && (size_t)t < WY_ARRAY_LEN(msg_types) ? msg_types[t] : "text";
}

const double wy_chatmsg_latency_buckets[WY_CHATMSG_NBUCKETS] = {
    0.0005, 0.001, 0.002,  0.003, 0.004,  0.005, 0.0075, 0.01, 0.0125, 0.015,
    0.0175, 0.02,  0.0225, 0.025, 0.0275, 0.03,  0.035,  0.04, 0.05,   0.06,
    0.075,  0.1,   0.15,   0.2,   0.3,    0.5,   1,      2.5,  5,      10};

wy_metric_t *wy_chatmsg_histogram(const char *name, const char *help)
{
    return wy_metrics_histogram(name, help, NULL, wy_chatmsg_latency_buckets, WY_CHATMSG_NBUCKETS);
}

void wy_chatmsg_observe_since_stored(const Wyvern__Chat__ChatEvent *ev, wy_metric_t *h)
{
    uint64_t now = wy_wall_ms();
    for (size_t i = 0; i <= ev->n_more; i++) {
        int64_t ts = i ? ev->more[i - 1]->ts_ms : ev->message->ts_ms;
        if (ts > 0 && now >= (uint64_t)ts)
            wy_metric_observe(h, (double)(now - (uint64_t)ts) / 1000.0);
    }
}

void wy_chatmsg_handle(const Wyvern__Envelope *env, wy_chatmsg_deliver_fn deliver, void *ctx,
                       wy_metric_t *events, wy_metric_t *latency)
{
    Wyvern__Chat__ChatEvent *ev =
        wyvern__chat__chat_event__unpack(NULL, env->payload.len, env->payload.data);
    if (!ev || !ev->message || !ev->channel_id[0] || ev->seq == 0 ||
        ev->seq > (uint64_t)INT64_MAX - ev->n_more) {
        wy_log_warn("bad chat.message payload skipped", "event_id", env->event_id, NULL);
        if (ev)
            wyvern__chat__chat_event__free_unpacked(ev, NULL);
        return;
    }
    wy_metric_inc(events);
    deliver(ctx, ev);
    wy_chatmsg_observe_since_stored(ev, latency);
    wyvern__chat__chat_event__free_unpacked(ev, NULL);
}

size_t wy_chatmsg_push(const Wyvern__Chat__ChatEvent *ev, wy_chatmsg_wrap_fn wrap,
                       wy_ws_conn_t *const *to, size_t n)
{
    if (!n)
        return 0;
    size_t queued = 0;
    for (size_t i = 0; i <= ev->n_more; i++) {
        Wyvern__Lobby__ChatMessage cm;
        wy_chatmsg_to_client(&cm, i ? ev->more[i - 1] : ev->message, ev->channel_id, ev->seq + i);
        wy_ws_frame_t *f = wrap(&cm);
        queued += wy_ws_broadcast(f, to, n);
        wy_ws_frame_unref(f);
    }
    return queued;
}

void wy_chatmsg_to_client(Wyvern__Lobby__ChatMessage *out, const Wyvern__Chat__Message *m,
                          const char *channel, uint64_t seq)
{
    wyvern__lobby__chat_message__init(out);
    out->channel_id = (char *)channel;
    out->seq = seq;
    out->type = (char *)type_name(m->type);
    out->sender_id = m->sender_id;
    out->sender_name = m->sender_name;
    out->text = m->text;
    out->ts_ms = m->ts_ms;
    out->deleted = m->deleted;
    out->target_seq = m->target_seq;
    out->subject_id = m->subject_id;
}

const char *wy_chatmsg_zone(const char *channel)
{
    static const char prefix[] = "zone:";
    return strncmp(channel, prefix, sizeof prefix - 1) == 0 ? channel + sizeof prefix - 1 : NULL;
}

void wy_chatmsg_sent_to_client(Wyvern__Lobby__ChatSent *out, const Wyvern__Chat__SendResponse *s)
{
    wyvern__lobby__chat_sent__init(out);
    out->channel_id = s->channel_id;
    out->seq = s->seq;
    out->text = s->text;
    out->masked = s->masked;
    out->offline = s->offline;
}
