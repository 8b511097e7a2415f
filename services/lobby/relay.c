/* wy-lobby relay: kicks and notices to Kafka, retried while they matter (relay.h). */
#include "relay.h"
#include "state.h"

#include <string.h>

typedef struct {
    wy_list_t node; /* in lb->relay_wait while not in flight */
    lobby_t *lb;
    char topic[16];
    char type[24];
    char key[LOBBY_ID_MAX + 1];
    char event_id[37];
    uint64_t ts_ms;       /* wall time of the first attempt (the Envelope's timestamp) */
    uint64_t deadline_ms; /* monotonic: dropped after this */
    size_t len;
    uint8_t *payload;
} relay_ev_t;

static void ev_free(relay_ev_t *ev)
{
    lobby_t *lb = ev->lb;
    wy_list_remove(&ev->node);
    lb->relay_n--;
    wy_metric_set(lb->m_relay_queue, (double)lb->relay_n);
    wy_free(ev->payload);
    wy_free(ev);
    lobby_unref(lb);
}

/* Logs a dropped event; at most one line per second per reason (a long outage drops many),
 * with how many were dropped since the last line. */
static void dropped(lobby_t *lb, int reason, const relay_ev_t *ev, const char *why)
{
    static const char *const names[] = {"full", "expired", "refused"};
    wy_metric_inc(lb->m_relay_dropped[reason]);
    lb->relay_unlogged[reason]++;
    uint64_t now = wy_now_ms();
    if (lb->relay_logged_ms[reason] && now - lb->relay_logged_ms[reason] < 1000)
        return;
    char n[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)lb->relay_unlogged[reason]);
    wy_log_warn("kafka event dropped", "reason", names[reason], "type", ev->type, "key", ev->key,
                "error", why, "dropped_since_last_line", n, NULL);
    lb->relay_logged_ms[reason] = now;
    lb->relay_unlogged[reason] = 0;
}

static void delivered(void *ud, int status, const char *event_id);

/* One attempt; on a local refusal (queue full, no producer) the event waits for the next
 * tick. */
static void attempt(relay_ev_t *ev)
{
    lobby_t *lb = ev->lb;
    wy_kafka_producer_t *p = wy_daemon_producer(lb->d);
    int rc = p ? wy_kafka_produce_event(p, ev->topic, ev->key, ev->event_id, ev->type, ev->ts_ms,
                                        ev->payload, ev->len, delivered, ev)
               : WY_EUNAVAIL;
    if (rc == WY_OK) {
        wy_list_remove(&ev->node);
        return;
    }
    if (!wy_list_linked(&ev->node))
        wy_list_push_back(&lb->relay_wait, &ev->node);
}

static bool temporary(int status)
{
    return status == WY_ETIMEDOUT || status == WY_EIO || status == WY_ENOTFOUND ||
           status == WY_EBUSY;
}

static void delivered(void *ud, int status, const char *event_id)
{
    WY_UNUSED(event_id);
    relay_ev_t *ev = ud;
    lobby_t *lb = ev->lb;
    if (status == WY_OK || status == WY_ECANCELED) { /* canceled: the producer closed */
        if (status == WY_ECANCELED)
            dropped(lb, 2, ev, wy_strerror(status));
        ev_free(ev);
        return;
    }
    if (!temporary(status) || lb->relay_stopped) {
        dropped(lb, 2, ev, wy_strerror(status));
        ev_free(ev);
        return;
    }
    if (wy_now_ms() >= ev->deadline_ms) {
        dropped(lb, 1, ev, wy_strerror(status));
        ev_free(ev);
        return;
    }
    wy_metric_inc(lb->m_relay_retries);
    wy_list_push_back(&lb->relay_wait, &ev->node); /* produced again by the next tick */
}

void lobby_relay_init(lobby_t *lb)
{
    wy_list_init(&lb->relay_wait);
    static const char *const labels[] = {"reason=\"full\"", "reason=\"expired\"",
                                         "reason=\"refused\""};
    for (int i = 0; i < 3; i++)
        lb->m_relay_dropped[i] = wy_metrics_counter(
            "wy_lobby_relay_dropped_total",
            "Kicks and notices not delivered to Kafka: queue full, past their time, or refused.",
            labels[i]);
    lb->m_relay_retries =
        wy_metrics_counter("wy_lobby_relay_retries_total",
                           "Kicks and notices produced again after a failed delivery.", NULL);
    lb->m_relay_queue = wy_metrics_gauge(
        "wy_lobby_relay_queue", "Kicks and notices waiting for or in delivery to Kafka.", NULL);
}

int lobby_relay_publish(lobby_t *lb, const char *topic, const char *key, const char *type,
                        const void *payload, size_t len, uint64_t ttl_ms, char event_id_out[37])
{
    if (lb->relay_stopped)
        return WY_ESTATE;
    relay_ev_t probe = {.lb = lb};
    snprintf(probe.type, sizeof probe.type, "%s", type);
    snprintf(probe.key, sizeof probe.key, "%s", key);
    if (lb->relay_n >= (size_t)lb->cfg->relay_max) {
        dropped(lb, 0, &probe, "relay queue full");
        return WY_EBUSY;
    }
    relay_ev_t *ev = wy_calloc(1, sizeof *ev);
    *ev = probe;
    wy_list_init(&ev->node);
    snprintf(ev->topic, sizeof ev->topic, "%s", topic);
    wy_uuid4(ev->event_id);
    ev->ts_ms = wy_wall_ms();
    ev->deadline_ms = wy_now_ms() + ttl_ms;
    ev->len = len;
    ev->payload = wy_malloc(len ? len : 1);
    if (len)
        memcpy(ev->payload, payload, len);
    lb->relay_n++;
    wy_metric_set(lb->m_relay_queue, (double)lb->relay_n);
    lobby_ref(lb);
    if (event_id_out)
        memcpy(event_id_out, ev->event_id, 37);
    attempt(ev);
    return WY_OK;
}

void lobby_relay_tick(lobby_t *lb)
{
    uint64_t now = wy_now_ms();
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &lb->relay_wait)
    {
        relay_ev_t *ev = wy_container_of(pos, relay_ev_t, node);
        if (now >= ev->deadline_ms) {
            dropped(lb, 1, ev, "no delivery in time");
            ev_free(ev);
        } else {
            attempt(ev);
        }
    }
}

void lobby_relay_stop(lobby_t *lb)
{
    lobby_relay_tick(lb);
    lb->relay_stopped = true;
    wy_list_t *pos, *tmp;
    wy_list_foreach_safe(pos, tmp, &lb->relay_wait)
    {
        relay_ev_t *ev = wy_container_of(pos, relay_ev_t, node);
        dropped(lb, 2, ev, "stopping");
        ev_free(ev);
    }
}
