/* Unit tests for wy_chatmsg: the wy.chat handler's common part (bad payloads skipped, a good
 * one delivered once, counted and timed), the client message built from a stored one, and
 * zone channel names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "wy_chatmsg.h"

typedef struct {
    int calls;
    char channel[64];
    uint64_t seq;
    size_t nrecipients;
    size_t nmore;
    char texts[64];
} seen_t;

static void on_deliver(void *ctx, const Wyvern__Chat__ChatEvent *ev)
{
    seen_t *s = ctx;
    s->calls++;
    snprintf(s->channel, sizeof s->channel, "%s", ev->channel_id);
    s->seq = ev->seq;
    s->nrecipients = ev->n_recipients;
    s->nmore = ev->n_more;
    snprintf(s->texts, sizeof s->texts, "%s", ev->message->text);
    for (size_t i = 0; i < ev->n_more; i++)
        snprintf(s->texts + strlen(s->texts), sizeof s->texts - strlen(s->texts), ",%s",
                 ev->more[i]->text);
}

/* An envelope around payload (len bytes); buf keeps it alive. */
static Wyvern__Envelope envelope(const uint8_t *payload, size_t len)
{
    Wyvern__Envelope env = WYVERN__ENVELOPE__INIT;
    env.event_id = "e-1";
    env.payload.data = (uint8_t *)payload;
    env.payload.len = len;
    return env;
}

/* ChatEvent{channel, seq, message (when with_msg), recipients} packed into buf. */
static size_t pack_event(uint8_t *buf, const char *channel, uint64_t seq, bool with_msg,
                         int64_t ts_ms)
{
    Wyvern__Chat__ChatEvent ev = WYVERN__CHAT__CHAT_EVENT__INIT;
    Wyvern__Chat__Message m = WYVERN__CHAT__MESSAGE__INIT;
    char *recips[] = {"a", "b"};
    m.text = "hello";
    m.ts_ms = ts_ms;
    ev.channel_id = (char *)channel;
    ev.seq = seq;
    ev.message = with_msg ? &m : NULL;
    ev.recipients = recips;
    ev.n_recipients = 2;
    return wyvern__chat__chat_event__pack(&ev, buf);
}

static void test_handle_skips_bad_and_delivers_good(void **state)
{
    (void)state;
    wy_metric_t *events = wy_metrics_counter("wy_test_chat_events_total", "t", NULL);
    wy_metric_t *lat =
        wy_metrics_histogram("wy_test_chat_delivery_seconds", "t", NULL, wy_metrics_latency_buckets,
                             wy_metrics_latency_nbuckets);
    seen_t s = {0};
    uint8_t buf[256];
    const uint8_t junk[] = {0xff, 0xff, 0xff};
    Wyvern__Envelope env = envelope(junk, sizeof junk);
    wy_chatmsg_handle(&env, on_deliver, &s, events, lat);       /* not a ChatEvent */
    env = envelope(buf, pack_event(buf, "world", 7, false, 0)); /* no message */
    wy_chatmsg_handle(&env, on_deliver, &s, events, lat);
    env = envelope(buf, pack_event(buf, "world", 0, true, 0)); /* no seq */
    wy_chatmsg_handle(&env, on_deliver, &s, events, lat);
    env = envelope(buf, pack_event(buf, "", 3, true, 0)); /* no channel */
    wy_chatmsg_handle(&env, on_deliver, &s, events, lat);
    assert_int_equal(s.calls, 0);
    assert_true(wy_metric_value(events) == 0);

    env = envelope(buf, pack_event(buf, "zone:meadow#1", 42, true, (int64_t)wy_wall_ms() - 5));
    wy_chatmsg_handle(&env, on_deliver, &s, events, lat);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.channel, "zone:meadow#1");
    assert_int_equal(s.seq, 42);
    assert_int_equal(s.nrecipients, 2);
    assert_true(wy_metric_value(events) == 1);
    assert_true(wy_metric_value(lat) == 1);
    /* A store time in the future (clock skew) is delivered, not timed. */
    env = envelope(buf, pack_event(buf, "world", 43, true, (int64_t)wy_wall_ms() + 60000));
    wy_chatmsg_handle(&env, on_deliver, &s, events, lat);
    assert_int_equal(s.calls, 2);
    assert_true(wy_metric_value(lat) == 1);
}

/* An event of channel guild:g at seq carrying m[0] as message and m[1], m[2] as more (through
 * more_ptrs, the caller's); the messages are initialised empty. */
static Wyvern__Chat__ChatEvent batch_of_three(Wyvern__Chat__Message m[3],
                                              Wyvern__Chat__Message *more_ptrs[2], uint64_t seq)
{
    for (int i = 0; i < 3; i++)
        wyvern__chat__message__init(&m[i]);
    more_ptrs[0] = &m[1];
    more_ptrs[1] = &m[2];
    Wyvern__Chat__ChatEvent ev = WYVERN__CHAT__CHAT_EVENT__INIT;
    ev.channel_id = "guild:g";
    ev.seq = seq;
    ev.message = &m[0];
    ev.more = more_ptrs;
    ev.n_more = 2;
    return ev;
}

/* A batch event (message, more[]) is one delivery call; each message is timed; a batch whose
 * last seq would pass 2^63 - 1 is refused. */
static void test_handle_batch_event(void **state)
{
    (void)state;
    wy_metric_t *events = wy_metrics_counter("wy_test_chat_batch_events_total", "t", NULL);
    wy_metric_t *lat =
        wy_metrics_histogram("wy_test_chat_batch_seconds", "t", NULL, wy_metrics_latency_buckets,
                             wy_metrics_latency_nbuckets);
    Wyvern__Chat__Message m[3];
    Wyvern__Chat__Message *more[2];
    Wyvern__Chat__ChatEvent ev = batch_of_three(m, more, 5);
    const char *texts[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        m[i].text = (char *)texts[i];
        m[i].ts_ms = (int64_t)wy_wall_ms() - 3;
    }
    uint8_t buf[256];
    Wyvern__Envelope env = envelope(buf, wyvern__chat__chat_event__pack(&ev, buf));
    seen_t s = {0};
    wy_chatmsg_handle(&env, on_deliver, &s, events, lat);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.seq, 5);
    assert_int_equal(s.nmore, 2);
    assert_string_equal(s.texts, "one,two,three");
    assert_true(wy_metric_value(events) == 1);
    assert_true(wy_metric_value(lat) == 3);
    ev.seq = (uint64_t)INT64_MAX - 1; /* its last message would be at 2^63 */
    env = envelope(buf, wyvern__chat__chat_event__pack(&ev, buf));
    wy_chatmsg_handle(&env, on_deliver, &s, events, lat);
    assert_int_equal(s.calls, 1);
    assert_true(wy_metric_value(events) == 1);
}

/* A stage histogram gets one observation per message of the event, in the fine bounds around
 * 30 ms; a message without a time stamp or stamped in the future is not observed. */
static void test_observe_since_stored_per_message(void **state)
{
    (void)state;
    wy_metric_t *h = wy_chatmsg_histogram("wy_test_chat_stage_seconds", "t");
    Wyvern__Chat__Message m[3];
    Wyvern__Chat__Message *more[2];
    Wyvern__Chat__ChatEvent ev = batch_of_three(m, more, 1);
    m[0].ts_ms = (int64_t)wy_wall_ms() - 20;
    m[1].ts_ms = 0;                              /* unset */
    m[2].ts_ms = (int64_t)wy_wall_ms() + 600000; /* ten minutes ahead: a clock off */
    wy_chatmsg_observe_since_stored(&ev, h);
    assert_true(wy_metric_value(h) == 1);
    m[2].ts_ms = (int64_t)wy_wall_ms() - 1;
    wy_chatmsg_observe_since_stored(&ev, h);
    assert_true(wy_metric_value(h) == 3);
    /* Bounds: ascending, every 2.5 ms from 10 ms to 30 ms. */
    for (size_t i = 1; i < WY_CHATMSG_NBUCKETS; i++)
        assert_true(wy_chatmsg_latency_buckets[i] > wy_chatmsg_latency_buckets[i - 1]);
    for (int tenths = 100; tenths <= 300; tenths += 25) {
        double b = tenths / 10000.0;
        bool found = false;
        for (size_t i = 0; i < WY_CHATMSG_NBUCKETS; i++)
            found |= wy_chatmsg_latency_buckets[i] > b - 1e-9 &&
                     wy_chatmsg_latency_buckets[i] < b + 1e-9;
        assert_true(found);
    }
}

static void test_to_client_copies_and_names_types(void **state)
{
    (void)state;
    Wyvern__Chat__Message m = WYVERN__CHAT__MESSAGE__INIT;
    m.type = WYVERN__CHAT__MESSAGE_TYPE__MSG_TOMBSTONE;
    m.sender_id = "s";
    m.sender_name = "Sam";
    m.text = "";
    m.ts_ms = 12345;
    m.target_seq = 9;
    m.subject_id = "x";
    Wyvern__Lobby__ChatMessage out;
    wy_chatmsg_to_client(&out, &m, "party:p", 10);
    assert_string_equal(out.channel_id, "party:p");
    assert_int_equal(out.seq, 10);
    assert_string_equal(out.type, "tombstone");
    assert_string_equal(out.sender_name, "Sam");
    assert_int_equal(out.ts_ms, 12345);
    assert_int_equal(out.target_seq, 9);
    assert_string_equal(out.subject_id, "x");
    assert_false(out.offline);
    m.type = WYVERN__CHAT__MESSAGE_TYPE__MSG_KICK;
    wy_chatmsg_to_client(&out, &m, "party:p", 11);
    assert_string_equal(out.type, "kick");
    m.type = (Wyvern__Chat__MessageType)99; /* a newer chat's type: shown as text */
    wy_chatmsg_to_client(&out, &m, "party:p", 12);
    assert_string_equal(out.type, "text");
}

static void test_zone_of_channel(void **state)
{
    (void)state;
    assert_string_equal(wy_chatmsg_zone("zone:meadow#1"), "meadow#1");
    assert_null(wy_chatmsg_zone("world"));
    assert_null(wy_chatmsg_zone("zon"));
    assert_null(wy_chatmsg_zone("party:zone:x"));
    assert_string_equal(wy_chatmsg_zone("zone:"), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handle_skips_bad_and_delivers_good),
        cmocka_unit_test(test_handle_batch_event),
        cmocka_unit_test(test_observe_since_stored_per_message),
        cmocka_unit_test(test_to_client_copies_and_names_types),
        cmocka_unit_test(test_zone_of_channel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
