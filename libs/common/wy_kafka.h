/* wy_kafka — Kafka producer and consumer on a libuv loop (librdkafka). Every
 * message is a protobuf Envelope; consumer offsets are stored only once the
 * owner says the effect of a message is done (at-least-once, idempotent consumers).
 *
 * Threading: librdkafka runs its own threads; it wakes the loop through a queue
 * io-event fd (a non-blocking pipe watched by uv_poll). Every callback of this
 * module (delivery, handler) runs on the loop thread. All functions must be
 * called on the loop thread. */
#ifndef WY_KAFKA_H
#define WY_KAFKA_H

#include "wy_core.h"
#include "envelope.pb-c.h"

#include <uv.h>

/* Largest encoded Envelope this module produces or accepts (bytes). A record
 * over it is rejected before decoding (counted as a bad message). */
#define WY_KAFKA_MAX_ENVELOPE (1024 * 1024)
/* Longest event_id / type accepted in an Envelope (bytes). */
#define WY_KAFKA_MAX_ID 128

/* ---- Envelope helpers (pure, no broker) ---------------------------------- */

/* Encodes an Envelope. Strings may be NULL (empty); payload may be NULL when
 * payload_len is 0. Returns a new buffer of *out_len bytes; caller frees with
 * wy_free. */
uint8_t *wy_kafka_envelope_pack(const char *event_id, const char *type, const char *producer,
                                uint64_t timestamp_ms, const char *key, const void *payload,
                                size_t payload_len, size_t *out_len);

/* Decodes and validates an Envelope from untrusted bytes: size <=
 * WY_KAFKA_MAX_ENVELOPE, protobuf well-formed, event_id and type non-empty and
 * <= WY_KAFKA_MAX_ID bytes. Returns a new Envelope (free with
 * wy_kafka_envelope_free) or NULL with *err set to a static reason. */
Wyvern__Envelope *wy_kafka_envelope_unpack(const void *data, size_t len, const char **err);

/* Frees an Envelope from wy_kafka_envelope_unpack. NULL is accepted. */
void wy_kafka_envelope_free(Wyvern__Envelope *env);

/* ---- Producer ------------------------------------------------------------ */

typedef struct wy_kafka_producer_s wy_kafka_producer_t;

typedef struct {
    const char *brokers;  /* "host:port[,host:port...]"; required */
    const char *producer; /* name written in every Envelope, e.g. "auth/instance-1"; required */
    /* Bound of the local send queue (messages not yet acknowledged). When it
     * is full wy_kafka_produce returns WY_EBUSY at once. 0 = 100000. */
    int max_queue;
    int max_queue_kbytes;   /* same bound in KiB; 0 = 65536 */
    int message_timeout_ms; /* delivery deadline incl. retries; 0 = 30000 */
    int linger_ms;          /* batching delay; 0 = 5; negative = 0 ms */
    int stats_interval_ms;  /* broker health refresh; 0 = 1000 */
    /* Extra librdkafka properties: NULL-terminated list of key, value pairs
     * ({"compression.type", "lz4", NULL}); may be NULL. Applied last. */
    const char *const *extra;
} wy_kafka_producer_opts_t;

/* Outcome of one produced message, exactly once per accepted wy_kafka_produce,
 * on the loop thread. status: WY_OK (acknowledged by all in-sync replicas),
 * WY_ETIMEDOUT (message.timeout.ms passed), WY_ECANCELED (producer closed
 * before delivery), WY_ETOOBIG, WY_ENOTFOUND (unknown topic), WY_EPERM
 * (not authorized), WY_EUNAVAIL (fatal producer error), WY_EIO (other).
 * event_id is valid during the call only. */
typedef void (*wy_kafka_delivery_cb)(void *udata, int status, const char *event_id);

/* Creates an idempotent producer (enable.idempotence=true, acks=all) attached
 * to `loop`. Returns WY_OK and *out, or WY_EINVAL with *err set to a message
 * naming the bad setting (valid until the next wy_kafka_*_new call on this
 * thread). No connection is made here: an unreachable broker is not an error
 * (see wy_kafka_producer_healthy). Close with wy_kafka_producer_close. */
int wy_kafka_producer_new(uv_loop_t *loop, const wy_kafka_producer_opts_t *opts,
                          wy_kafka_producer_t **out, const char **err);

/* Queues one Envelope {fresh UUIDv4 event_id, type, producer, wall-clock
 * timestamp, key, payload} to `topic`; the Kafka message key is `key` (NULL or
 * "" = no key, any partition). Never blocks. On WY_OK writes the event_id into
 * event_id_out (may be NULL) and later calls cb(udata, status, event_id) once
 * (cb may be NULL). Errors (cb not called): WY_EINVAL (empty topic/type),
 * WY_ETOOBIG (encoded Envelope over WY_KAFKA_MAX_ENVELOPE), WY_EBUSY (local
 * queue full: retry later), WY_ESTATE (closing), WY_EUNAVAIL (fatal producer
 * error), WY_EIO. Copies everything it needs. */
int wy_kafka_produce(wy_kafka_producer_t *p, const char *topic, const char *key, const char *type,
                     const void *payload, size_t payload_len, wy_kafka_delivery_cb cb, void *udata,
                     char event_id_out[37]);

/* wy_kafka_produce with the caller's event_id (non-empty, <= WY_KAFKA_MAX_ID bytes) and
 * timestamp instead of fresh ones: for a relay that publishes a stored event again after a
 * crash (wy_outbox), so consumers see the same event_id and can dedupe. Same contract and
 * errors as wy_kafka_produce (WY_EINVAL also for a bad event_id). */
int wy_kafka_produce_event(wy_kafka_producer_t *p, const char *topic, const char *key,
                           const char *event_id, const char *type, uint64_t timestamp_ms,
                           const void *payload, size_t payload_len, wy_kafka_delivery_cb cb,
                           void *udata);

/* Shutdown: waits up to timeout_ms for queued messages to be delivered
 * (BLOCKS the loop thread for at most about that long: call at shutdown
 * only), then cancels the rest (their callbacks get WY_ECANCELED) and
 * releases librdkafka. Every pending delivery callback has run when this
 * returns. The memory is freed in a uv close callback: run the loop once more
 * (uv_run) before uv_loop_close. May be called from a delivery callback (the
 * close then happens right after that callback returns). */
void wy_kafka_producer_close(wy_kafka_producer_t *p, int timeout_ms);

/* True when at least one broker connection is up (librdkafka statistics,
 * refreshed every stats_interval_ms; false at once on "all brokers down").
 * False until the first connection is made. */
bool wy_kafka_producer_healthy(const wy_kafka_producer_t *p);

typedef struct {
    uint64_t produced;  /* accepted by wy_kafka_produce */
    uint64_t delivered; /* delivery callback with WY_OK */
    uint64_t failed;    /* delivery callback with an error */
    uint64_t rejected;  /* wy_kafka_produce errors (queue full etc.) */
    uint64_t queued;    /* produced but not yet reported */
} wy_kafka_producer_stats_t;

void wy_kafka_producer_stats(const wy_kafka_producer_t *p, wy_kafka_producer_stats_t *out);

/* ---- Consumer ------------------------------------------------------------ */

/* Delivery is at-least-once. Offsets are stored per partition only up to the
 * highest contiguous done message, and committed every auto_commit_interval_ms
 * and at close. When a partition is revoked (rebalance) or the process dies,
 * every message of it not yet done is delivered again to the next owner, so
 * handlers must be idempotent on event_id (wy_seen.h in memory, wy_consumed.h
 * durably in PostgreSQL).
 *
 * Rebalancing is eager (partition.assignment.strategy=range,roundrobin): every
 * rebalance revokes all partitions of a member, then assigns its new set. The
 * incremental protocol (cooperative-sticky) would move fewer partitions, but
 * librdkafka 2.0.2 (Debian 12) crashes when a cooperative consumer closes
 * before its first rebalance (librdkafka #4312, fixed in 2.2.1) and can hang in
 * a rebalance (#4527, fixed in a later release): a daemon stopped right after its start
 * would crash. The code below handles both protocols (it asks librdkafka which
 * one is in use), so moving to cooperative-sticky later is this one setting,
 * overridable through opts.extra. */
typedef struct wy_kafka_consumer_s wy_kafka_consumer_t;
/* One delivered message; owned by this module until passed to
 * wy_kafka_msg_done or wy_kafka_msg_release (exactly one of them, once). */
typedef struct wy_kafka_msg_s wy_kafka_msg_t;

/* Called on the loop for every valid Envelope, in offset order per partition.
 * `env` and `msg` stay valid until wy_kafka_msg_done/_release(msg), which may
 * be called inside the handler or any time later on the loop thread (also
 * after wy_kafka_consumer_close). The handler should dedupe on env->event_id:
 * a message can be delivered again after a crash or rebalance. */
typedef void (*wy_kafka_handler_cb)(void *udata, const Wyvern__Envelope *env, wy_kafka_msg_t *msg);

/* A change of this consumer's partitions. */
typedef enum {
    WY_KAFKA_ASSIGNED = 1, /* now ours; messages of them may follow */
    WY_KAFKA_REVOKED,      /* given up in an orderly rebalance (or at close) */
    WY_KAFKA_LOST,         /* taken away (session timeout, rebalance error): another member
                            * may already be consuming them */
} wy_kafka_rebalance_t;

typedef struct {
    const char *topic;
    int32_t partition;
    /* ASSIGNED with position_on_assign: the offset consumption starts at
     * (committed, else the partition's end). Otherwise -1 (librdkafka decides:
     * committed offset, else auto.offset.reset). */
    int64_t offset;
} wy_kafka_partition_t;

/* Called on the loop: ASSIGNED after the partitions are assigned; REVOKED /
 * LOST before they are dropped (messages of them the owner still holds stay
 * valid, and their done only frees: their offsets are not stored any more).
 * `parts` (n entries) is valid during the call only. Also called with
 * REVOKED from inside wy_kafka_consumer_close. */
typedef void (*wy_kafka_rebalance_cb)(void *udata, wy_kafka_rebalance_t kind,
                                      const wy_kafka_partition_t *parts, size_t n);

typedef struct {
    const char *brokers;                /* required */
    const char *group_id;               /* consumer group; required */
    const char *const *topics;          /* NULL-terminated, at least one; required */
    wy_kafka_handler_cb handler;        /* required */
    void *udata;                        /* passed to handler and on_rebalance */
    wy_kafka_rebalance_cb on_rebalance; /* optional */
    /* Resolve each newly assigned partition's start offset before assigning
     * it (committed offset, else the end of the partition), so that every
     * event produced after the ASSIGNED callback is delivered. Without it, a
     * "latest" start is looked up lazily by librdkafka after the assignment
     * (~1 s later with the real broker), and an event produced in between is
     * skipped. Costs broker round trips inside the rebalance, blocking the
     * loop for at most position_timeout_ms per request (0 = 5000). */
    bool position_on_assign;
    int position_timeout_ms;
    const char *client_id; /* optional, e.g. "lobby/instance-1" */
    /* Messages handed to the handler and not yet done or released, plus done
     * ones waiting behind an unfinished earlier one. At the bound the assigned
     * partitions are paused; they resume once it falls to half. Messages
     * librdkafka had already fetched may still arrive while paused. 0 = 1000. */
    int max_in_flight;
    int session_timeout_ms;      /* group session timeout; 0 = 10000 */
    int auto_commit_interval_ms; /* commit of stored offsets; 0 = 1000 */
    int stats_interval_ms;       /* broker health refresh; 0 = 1000 */
    const char *const *extra;    /* extra librdkafka key, value pairs; NULL-terminated */
} wy_kafka_consumer_opts_t;

/* Creates a consumer in group opts->group_id subscribed to opts->topics
 * (enable.auto.offset.store=false, auto.offset.reset=earliest, auto commit of
 * stored offsets only). Returns WY_OK and *out, or WY_EINVAL with *err set as
 * for wy_kafka_producer_new. Close with wy_kafka_consumer_close. */
int wy_kafka_consumer_new(uv_loop_t *loop, const wy_kafka_consumer_opts_t *opts,
                          wy_kafka_consumer_t **out, const char **err);

/* The effect of msg is done: its offset becomes storable. The partition's
 * stored offset advances to just past the highest message such that it and
 * every earlier message delivered on that partition are done; auto commit
 * writes it to the broker. Frees msg and its Envelope (do not use them after).
 * If the partition was revoked meanwhile, this only frees: the next owner
 * gets the message again (at-least-once). */
void wy_kafka_msg_done(wy_kafka_msg_t *msg);

/* Gives msg up without marking it done (e.g. at shutdown while its effect is
 * still pending): frees it; the offset of this partition never advances past
 * it in this consumer, so the message is redelivered after a restart or
 * rebalance. Frees msg and its Envelope. */
void wy_kafka_msg_release(wy_kafka_msg_t *msg);

/* Where msg came from (valid until done/release). */
const char *wy_kafka_msg_topic(const wy_kafka_msg_t *msg);
int32_t wy_kafka_msg_partition(const wy_kafka_msg_t *msg);
int64_t wy_kafka_msg_offset(const wy_kafka_msg_t *msg);

/* Shutdown: commits the stored offsets synchronously (waiting at most
 * timeout_ms), then leaves the group (rd_kafka_consumer_close) and releases
 * librdkafka. BLOCKS the loop thread (well under a second normally; about
 * 6 s measured when the broker is down): call at shutdown only. Messages not yet done stay
 * valid; the owner must still done/release each one (that only frees now).
 * The handler is not called any more. The memory is freed in a uv close
 * callback: run the loop once more before uv_loop_close. May be called from
 * the handler (the close then happens right after the handler returns). */
void wy_kafka_consumer_close(wy_kafka_consumer_t *c, int timeout_ms);

/* Same meaning as wy_kafka_producer_healthy. */
bool wy_kafka_consumer_healthy(const wy_kafka_consumer_t *c);

typedef struct {
    uint64_t consumed;    /* valid Envelopes handed to the handler */
    uint64_t done;        /* wy_kafka_msg_done calls while attached */
    uint64_t bad;         /* records that are not an Envelope (skipped) */
    uint64_t errors;      /* consumer errors reported by librdkafka */
    uint64_t in_flight;   /* tracked messages (see max_in_flight) */
    uint64_t partitions;  /* currently assigned partitions */
    uint64_t assignments; /* ASSIGNED rebalances so far */
    bool paused;          /* partitions paused by the in-flight bound */
} wy_kafka_consumer_stats_t;

void wy_kafka_consumer_stats(const wy_kafka_consumer_t *c, wy_kafka_consumer_stats_t *out);

/* Maps a librdkafka error code to a WY_E* code (WY_OK for no error). */
int wy_kafka_err(int rd_kafka_resp_err);

#endif
