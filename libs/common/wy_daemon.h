/* wy_daemon — the life of every Wyvern daemon: configuration, the libuv loop,
 * the ops HTTP server (/healthz, /readyz, /metrics), the gRPC server with the
 * standard health service, connections to Redis / PostgreSQL / Kafka, the
 * fixed "ready" log line, and the graceful stop on SIGTERM/SIGINT.
 *
 * A service's main() is one call: wy_daemon_main(argc, argv, &spec). */
#ifndef WY_DAEMON_H
#define WY_DAEMON_H

#include "wy_core.h"
#include "wy_config.h"
#include "envelope.pb-c.h"

#include <uv.h>

typedef struct wy_daemon wy_daemon_t;
#include "wy_http.h"
#include "wy_grpc.h"
#include "wy_kafka.h"
#include "wy_redis.h"
#include "wy_pg.h"
#include "wy_consumed.h"
#include "wy_outbox.h"
#include "wy_worker.h"

/* Dependencies a daemon connects to at start; /readyz reports each.
 *
 * Readiness means "can serve its clients". A dependency is either required
 * (its outage makes the daemon unready: /readyz 503
 * {"status":"unhealthy","down":["redis"]}, gRPC health NOT_SERVING,
 * wy_<svc>_ready 0) or optional (its outage only degrades it: /readyz 200
 * {"status":"degraded","degraded":["kafka"]}, gRPC health SERVING,
 * wy_<svc>_degraded 1). wy_<svc>_dependency_up{dependency} and
 * wy_<svc>_dependency_required{dependency} are exported for each. A service
 * adds its own condition with spec.unready (e.g. lobby: auth's verification
 * keys), reported under "down" by the name it returns. */
enum {
    WY_DEP_REDIS = 1u << 0,
    WY_DEP_PG = 1u << 1,
    WY_DEP_KAFKA = 1u << 2,
};
/* The default of spec.required_deps (when 0): Redis and PostgreSQL, not
 * Kafka. Kafka is the events path; a daemon that still answers its clients
 * with the broker away must stay in its Service's endpoints. */
#define WY_DEP_REQUIRED_DEFAULT (WY_DEP_REDIS | WY_DEP_PG)

/* ---- Kafka subscriptions ------------------------------------------------
 *
 * A daemon lists what it consumes in a table, one row per topic. It
 * subscribes to those topics only: a daemon with no rows has no consumer and
 * commits nothing (a group that committed offsets of events nobody handled
 * would make a handler shipped later skip them).
 *
 * Rows with WY_SUB_SHARED share the consumer group "wy-<svc>": each event is
 * handled by one instance (the partition's owner). Rows with WY_SUB_BROADCAST
 * share the group "wy-<svc>-<instance>": every instance sees every event from
 * its start on (kicks, notices). At most one row per topic.
 *
 * For each Envelope of a row's topic, on the loop:
 *   - an event_id this process already applied (wy_daemon_event_done) is
 *     skipped, its offset stored (wy_<svc>_kafka_duplicates_total);
 *   - a type in `types` goes to the handler;
 *   - a type in `ignores` is acknowledged without effect
 *     (wy_<svc>_events_ignored_total{topic,type}): types the daemon knows and
 *     does not need;
 *   - any other type is unhandled: logged once per (topic, type) and counted
 *     (wy_<svc>_events_unhandled_total{topic,type}; types past the 64th
 *     distinct one are counted as type="other"). Its offset is stored so the
 *     partition is not blocked (a newer producer's type must not stop an older
 *     consumer), but it is not remembered as applied (neither wy_seen nor
 *     wy_consumed): the metric and the log line are the alarm. Roll out a
 *     consumer of a new type before its producer.
 *
 * Readiness: a daemon with broadcast rows logs its ready line (and /readyz
 * turns healthy) only once the broadcast consumer's partitions are assigned
 * and positioned (wy_kafka position_on_assign): an event produced after the
 * ready line is delivered to this instance. Until then /readyz answers 503
 * {"status":"starting","waiting":["kafka_partitions"]}. With Kafka
 * unreachable at start, a daemon that requires Kafka stays so until the broker
 * answers; one that does not (the default) stops waiting once the brokers have
 * been down for 5 s after the start, and is ready (degraded) without them. The broadcast consumer
 * waits at most 100 ms on an idle fetch (fetch.wait.max.ms), so its events are not held back by the
 * broker's 500 ms default. */

/* A Kafka handler: runs on the loop for each Envelope of a handled type.
 * The handler must call wy_daemon_event_done(d, msg, env) exactly once when
 * the event's effect is durable (possibly later, from another callback);
 * only then is the offset stored. A handler whose effect is in PostgreSQL
 * records the event_id in the same transaction (wy_consumed.h) so that a
 * redelivery after a crash has no second effect. */
typedef void (*wy_daemon_event_cb)(wy_daemon_t *d, wy_kafka_msg_t *msg,
                                   const Wyvern__Envelope *env);

/* Partitions of the row's topic assigned to / taken from this instance
 * (wy_kafka_rebalance_cb, filtered to the row's topic; never with n == 0).
 * Loop thread; parts valid during the call. */
typedef void (*wy_daemon_partitions_cb)(wy_daemon_t *d, wy_kafka_rebalance_t kind,
                                        const wy_kafka_partition_t *parts, size_t n);

typedef enum {
    WY_SUB_SHARED = 0,    /* group "wy-<svc>": one instance per event */
    WY_SUB_BROADCAST = 1, /* group "wy-<svc>-<instance>", from the latest offset */
} wy_daemon_sub_mode_t;

typedef struct {
    const char *topic; /* required, one row per topic */
    wy_daemon_sub_mode_t mode;
    const char *const *types;   /* handled event types, NULL-terminated, at least one */
    wy_daemon_event_cb handler; /* required */
    const char *const *ignores; /* known types acknowledged without effect; may be NULL */
    wy_daemon_partitions_cb on_partitions; /* optional */
} wy_daemon_sub_t;

/* PostgreSQL helpers the daemon runs for the service, in its schema (named after the service;
 * the tables come from the service's own migrations: the SQL is in wy_outbox.h and
 * wy_consumed.h). The daemon creates them before start(), lets a relay pass in flight finish in
 * the drain, and closes them before the producer and the pool.
 *   WY_HELPER_OUTBOX    wy_daemon_outbox(d); needs WY_DEP_PG and WY_DEP_KAFKA;
 *                       WY_<SVC>_OUTBOX_POLL (default 1s).
 *   WY_HELPER_CONSUMED  wy_daemon_consumed(d), consumer name = svc; needs WY_DEP_PG;
 *                       WY_<SVC>_CONSUMED_RETENTION (default 168h). */
enum {
    WY_HELPER_OUTBOX = 1u << 0,
    WY_HELPER_CONSUMED = 1u << 1,
};

typedef struct {
    const char *svc;          /* "auth": names, log lines, WY_AUTH_* variables */
    const char *grpc_service; /* "wyvern.auth.Auth": a name for gRPC health */
    unsigned deps;            /* WY_DEP_* */
    /* Of deps, those whose outage makes the daemon unready (see above); the
     * others only degrade it. 0 = WY_DEP_REQUIRED_DEFAULT. */
    unsigned required_deps;
    int ops_port;  /* default of WY_<SVC>_OPS_PORT */
    int grpc_port; /* default of WY_<SVC>_GRPC_PORT */
    /* Default of WY_<SVC>_GRPC_MODE: false = "thread" (a completion-queue thread hands
     * completions to the loop), true = "drive" (the loop thread polls gRPC itself:
     * wy_grpc_rt_opts_t.drive). Handlers run on the loop thread either way. */
    bool grpc_drive;
    /* The service's own configuration entries (appended to the shared ones). */
    const wy_cfg_entry_t *config;
    size_t nconfig;
    /* With config_size > 0 the service keeps no configuration in statics: every dst of
     * config is an offset (WY_CFG_OFF) into its configuration struct of that size, which
     * the daemon allocates zeroed, fills from the environment and keeps for its whole
     * life: wy_daemon_config(d) (strings in it are owned by the daemon). With 0, every
     * dst is a pointer to storage of the service's own. */
    size_t config_size;
    /* Kafka subscriptions (see above); needs WY_DEP_KAFKA. A bad table (empty
     * topic, duplicate topic, no handler or no types) stops the daemon at
     * start with exit 1. */
    const wy_daemon_sub_t *subs;
    size_t nsubs;
    unsigned helpers; /* WY_HELPER_* */
    /* Optional: checks and loads the service's own configuration data (files
     * named by its variables: wy-world's zone catalog), once the variables are
     * read and before any dependency is connected. A non-OK return is a bad
     * configuration like a bad variable: "wy-<svc>: bad configuration: <*err>"
     * on stderr and exit status 2. Main thread, before the loop runs. cfg is the
     * service's configuration struct, already filled (what wy_daemon_config returns
     * later; NULL when config_size is 0): configure may check it and fill fields of
     * its own there (the same struct start() reaches). */
    int (*configure)(void *cfg, const char **err);
    /* Optional: releases what configure put into cfg (a loaded catalog, keys). Called once,
     * main thread, just before the daemon frees the struct: when wy_daemon_main returns,
     * and also when configure failed or never ran (--help, a bad variable), so it must
     * accept fields configure left zeroed. Only with config_size > 0. */
    void (*unconfigure)(void *cfg);
    /* Called on the loop once everything is connected and listening, before
     * the ready line: register routes and gRPC methods, start timers. A
     * non-OK return stops the daemon with exit 1 and *err logged. */
    int (*start)(wy_daemon_t *d, const char **err);
    /* Called on the loop when the stop begins (listeners already closed):
     * stop timers, finish or cancel own work. Everything the service holds
     * must be released here or in its own close callbacks. */
    void (*stop)(wy_daemon_t *d);
    /* Optional: how many requests the service itself still has in flight (on
     * its own listeners, e.g. auth's HTTP API). The drain waits, up to
     * WY_<SVC>_DRAIN_TIMEOUT, until it returns 0 before Redis, PostgreSQL and
     * Kafka are closed. */
    size_t (*busy)(wy_daemon_t *d);
    /* Optional, loop thread: the service's own readiness condition. Returns
     * NULL when the service can serve, else a short static name of what it
     * lacks ("auth_keys"), listed under "down" in /readyz. Polled every
     * 500 ms and on wy_daemon_ready_check; the ready line waits for it too
     * (until then /readyz is 503 {"status":"starting","waiting":[name]}). */
    const char *(*unready)(wy_daemon_t *d);
    /* Optional: linger.ms of the daemon's producer (0 = wy_kafka's default, 5 ms; negative =
     * 0 ms): a service whose events are latency-bound and produced in batches already (the
     * outbox relay's passes) sends them at once. */
    int producer_linger_ms;
    /* Optional: the consumers' bound of messages in flight (wy_kafka_consumer_opts_t
     * max_in_flight; 0 = wy_kafka's default, 1000). At the bound the partitions are paused
     * and librdkafka resumes fetching about a second after the resume (measured: the flow
     * stalls ~1 s per pause), so a service whose events are applied in large batches
     * (wy-actor's group commit) sets it well above what it writes per second. */
    int consumer_max_in_flight;
} wy_daemon_spec_t;

/* Runs the daemon to completion. Handles --help / --help --json (exit 0),
 * bad configuration (exit 2, naming the variable, or spec.configure's message),
 * start failure (exit 1),
 * graceful stop (exit 0). Returns the process exit status.
 * The stop: listeners close, spec.stop runs, Kafka consumers commit and close,
 * then the drain (up to WY_<SVC>_DRAIN_TIMEOUT). When it ends, gRPC calls a
 * handler still holds are answered UNAVAILABLE first (their late replies
 * return WY_ECANCELED), and only then do Redis and PostgreSQL close, so a
 * handler waiting on a store never answers a call the stop should have. */
int wy_daemon_main(int argc, char **argv, const wy_daemon_spec_t *spec);

/* Accessors, loop thread only, valid from start() on. A dependency not in
 * spec->deps is NULL; Redis, PostgreSQL, the producer and the ops server turn
 * NULL once the stop closes them (after the drain), so code that may run
 * during the drain checks for NULL. */
uv_loop_t *wy_daemon_loop(wy_daemon_t *d);
const char *wy_daemon_svc(const wy_daemon_t *d);
const char *wy_daemon_instance(const wy_daemon_t *d); /* WY_INSTANCE_ID */
/* WY_BIND_HOST: the address a service's own listeners bind to, as the daemon's do. */
const char *wy_daemon_bind_host(const wy_daemon_t *d);
wy_http_server_t *wy_daemon_ops(wy_daemon_t *d);
wy_grpc_rt_t *wy_daemon_grpc_rt(wy_daemon_t *d);  /* for the service's client channels */
wy_grpc_server_t *wy_daemon_grpc(wy_daemon_t *d); /* register methods in start() */
wy_redis_t *wy_daemon_redis(wy_daemon_t *d);
wy_pg_t *wy_daemon_pg(wy_daemon_t *d);
/* The pool for reads that tolerate staleness (a nickname for presence, a history page, a
 * rankings rebuild): WY_PG_REPLICA_URL's while it is healthy, else the primary's (also when
 * no replica is configured). Decisions (logins, fences, actor events, transactions) use
 * wy_daemon_pg. Loop thread. */
wy_pg_t *wy_daemon_pg_replica(wy_daemon_t *d);
wy_kafka_producer_t *wy_daemon_producer(wy_daemon_t *d);
wy_outbox_t *wy_daemon_outbox(wy_daemon_t *d);     /* WY_HELPER_OUTBOX, else NULL */
wy_consumed_t *wy_daemon_consumed(wy_daemon_t *d); /* WY_HELPER_CONSUMED, else NULL */
/* The service's configuration struct (spec.config_size > 0), filled before start() and
 * valid until wy_daemon_main returns; NULL when config_size is 0. */
void *wy_daemon_config(const wy_daemon_t *d);
/* The service's own state pointer (NULL until set). */
void wy_daemon_set_state(wy_daemon_t *d, void *state);
void *wy_daemon_state(const wy_daemon_t *d);
bool wy_daemon_stopping(const wy_daemon_t *d);
/* Re-evaluates readiness now (loop thread): a service calls it when the
 * condition behind spec.unready may have turned true, so the ready line and
 * /readyz do not wait for the next poll. */
void wy_daemon_ready_check(wy_daemon_t *d);
/* WY_<SVC>_DRAIN_TIMEOUT in milliseconds. */
int64_t wy_daemon_drain_ms(const wy_daemon_t *d);
/* The bound gRPC port (WY_<SVC>_GRPC_PORT, or the one picked for 0), from start() on. */
int wy_daemon_grpc_port(const wy_daemon_t *d);

/* ---------------------------------------------------------------- workers
 *
 * Worker threads (a game server's partitions) for what does not fit on the
 * loop: fixed-rate simulation (wy_tick) and CPU-heavy work.
 *
 * The rule: Redis, PostgreSQL, Kafka, gRPC, HTTP/WebSocket and every
 * wy_daemon accessor stay on the loop thread. A worker touches only its own
 * state; it talks to the loop by posting messages (wy_worker_post) and the
 * loop talks to it through its inbox (wy_workers_send). Messages refer to
 * sessions, entities, calls and connections by id, never by pointer: the
 * thing may be gone by the time the message is read (the receiver looks the
 * id up and drops the message if it is unknown). A message is owned by its
 * sender until a push returns WY_OK, then by its callback.
 *
 * Life: wy_daemon_add_workers is called in start(); the threads start once
 * start() has returned WY_OK. On stop, after the service's stop(), the
 * workers are told to stop (wy_worker_stopping turns true) and the drain
 * waits, up to WY_<SVC>_DRAIN_TIMEOUT, for every main to return, before
 * Redis, PostgreSQL and Kafka close; the threads are then joined, what they
 * posted is delivered on the loop, and what is left in their inboxes is
 * canceled (callbacks with WY_ECANCELED).
 *
 * /metrics: wy_<svc>_worker_messages_total, wy_<svc>_worker_messages_refused_total
 * (a full mailbox) and wy_<svc>_worker_queue_high_water, labelled
 * queue="loop" (workers to the loop) or queue="inbox" (all inboxes). */

/* In start() only, at most once: creates the service's worker pool (see
 * wy_worker.h). WY_ESTATE outside start() or the second time, WY_EINVAL for
 * bad options. */
int wy_daemon_add_workers(wy_daemon_t *d, const wy_workers_opts_t *opts);
/* The service's worker pool (NULL without one or once closed); loop thread. */
wy_workers_t *wy_daemon_workers(wy_daemon_t *d);

/* Marks a consumed event's effect done: remembers its event_id (later
 * duplicates are skipped) and stores its offset. env is the Envelope the
 * handler received with msg; both are freed by this call. */
void wy_daemon_event_done(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env);

#endif
