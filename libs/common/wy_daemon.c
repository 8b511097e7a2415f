/* wy_daemon — the shared life of every Wyvern daemon: configuration, loop,
 * ops endpoints, gRPC health, dependencies, the ready line and the graceful
 * stop. Services describe themselves with a wy_daemon_spec_t (services/<svc>/<svc>.c). */
#include "wy_daemon.h"
#include "wy_buf.h"
#include "wy_consumed.h"
#include "wy_outbox.h"
#include "wy_log.h"
#include "wy_metrics.h"
#include "wy_seen.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WY_VERSION "0.1.0"
/* Shared configuration entries come first; the service's own follow. */
#define SHARED_MAX 16
/* Blocking steps of the stop (Kafka commit / flush) get at most this long each,
 * so that the whole stop fits the orchestrator's grace period. */
#define KAFKA_CLOSE_MS 1000
#define DRAIN_POLL_MS  20
#define HEALTH_POLL_MS 500
/* At start, how long the ready line waits for a first contact with an optional
 * dependency (Kafka: librdkafka reports broker state once a second) before the
 * daemon goes ready degraded. Without it a healthy stack would start every
 * daemon "degraded" for its first second. */
#define START_OPTIONAL_WAIT_MS 5000
#define SEEN_CAPACITY          65536
/* Distinct unhandled (topic, type) pairs remembered for the log-once rule and
 * labelled in the metric; past it they count as type="other". */
#define UNHANDLED_MAX 64
/* Longest broker round trip allowed while positioning a broadcast consumer. */
#define POSITION_TIMEOUT_MS 5000

enum { ST_STARTING, ST_RUNNING, ST_DRAINING, ST_CLOSING };

typedef struct {
    wy_metric_t *m;
    uint64_t last;
} mirror_t;

enum { CONS_SHARED, CONS_BROADCAST, CONS_N };

/* One of the daemon's (at most two) consumers: the rows of one mode. */
typedef struct {
    wy_daemon_t *d;
    wy_kafka_consumer_t *c;
    bool positioned; /* an assignment was applied (broadcast: with explicit start offsets) */
} dcons_t;

typedef struct {
    const wy_daemon_sub_t *row;
    char *type;
    wy_metric_t *m;
} unhandled_t;

struct wy_daemon {
    const wy_daemon_spec_t *spec;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    uv_timer_t health_timer, drain_timer;
    int state;
    int exit_code;
    uint64_t drain_deadline;
    void *svc_state;

    /* configuration */
    wy_cfg_entry_t *cfg;
    size_t ncfg;
    char *names[SHARED_MAX]; /* owned names of the shared WY_<SVC>_* entries */
    void *svc_cfg;           /* the service's configuration struct (spec.config_size) */
    char *migrations_default;
    char *instance_auto; /* generated instance id when WY_INSTANCE_ID is empty */
    char *bind_host, *instance_id, *log_level, *redis_url, *pg_url, *kafka_brokers;
    char *pg_replica_url; /* WY_PG_REPLICA_URL, "" = none */
    char *migrations_dir;
    char *grpc_mode; /* WY_<SVC>_GRPC_MODE: "thread" or "drive" */
    int64_t ops_port, grpc_port, drain_ms, pg_pool_size;

    /* parts */
    wy_http_server_t *ops;
    wy_grpc_rt_t *grpc_rt;
    wy_grpc_rt_t *grpc_driver; /* drive mode: the runtime whose wy_grpc_rt_run runs the loop */
    wy_grpc_server_t *grpc;
    wy_redis_t *redis;
    wy_pg_t *pg;
    wy_pg_t *pg_replica; /* WY_PG_REPLICA_URL's pool, or NULL */
    wy_kafka_producer_t *producer;
    wy_outbox_t *outbox;
    wy_consumed_t *consumed;
    int64_t outbox_poll_ms, consumed_retention_ms;
    dcons_t cons[CONS_N];
    wy_seen_t *seen;
    unhandled_t unhandled[UNHANDLED_MAX + 1]; /* the last slot is "other" */
    size_t nunhandled;
    int bound_ops_port, bound_grpc_port;
    bool grpc_stopped;
    bool parts_started;        /* start_parts succeeded: the ready line may follow */
    uint64_t parts_started_ms; /* wy_now_ms() when start_parts succeeded */
    bool kafka_given_up;       /* ready without the broadcast consumer (Kafka down at start) */
    bool waiting_logged;       /* "waiting for ... before ready" was logged */
    int closing;               /* asynchronous closes still running */
    wy_workers_t *workers;     /* the service's worker threads (wy_daemon_add_workers) */
    bool in_start;             /* inside spec->start */
    uint64_t wmb_last[2][2];   /* worker mailboxes mirrored: [loop, inboxes][pushed, refused] */

    /* metrics */
    wy_metric_t *m_ready, *m_degraded, *m_dep_up[3], *m_http_conns, *m_grpc_in_flight,
        *m_duplicates;
    mirror_t mx_http_resp[4], mx_produced, mx_delivery_failed, mx_consumed, mx_bad;
};

static const char *dep_names[] = {"redis", "postgres", "kafka"};

/* ---------------------------------------------------------------- config */

static char *svc_upper(const char *svc)
{
    char *u = wy_strdup(svc);
    for (char *p = u; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return u;
}

static void build_config(wy_daemon_t *d)
{
    const wy_daemon_spec_t *s = d->spec;
    char *up = svc_upper(s->svc);
    size_t nn = 0;
#define SVCNAME(suffix) (d->names[nn++] = wy_sprintf("WY_%s_" suffix, up))
    char *def_ops = wy_sprintf("%d", s->ops_port), *def_grpc = wy_sprintf("%d", s->grpc_port);
    d->names[nn++] = def_ops;
    d->names[nn++] = def_grpc;
    d->migrations_default = wy_sprintf("services/%s/migrations", s->svc);

    wy_cfg_entry_t shared[SHARED_MAX];
    size_t n = 0;
    shared[n++] = (wy_cfg_entry_t){"WY_LOG_LEVEL",
                                   WY_CFG_ENUM,
                                   "info",
                                   0,
                                   0,
                                   "debug|info|warn|error",
                                   "Lowest log level written to stderr.",
                                   &d->log_level,
                                   false};
    shared[n++] = (wy_cfg_entry_t){
        "WY_BIND_HOST",
        WY_CFG_STRING,
        "0.0.0.0",
        0,
        0,
        NULL,
        "Address every listener binds to (0.0.0.0 in a container, 127.0.0.1 on a laptop).",
        &d->bind_host,
        false};
    shared[n++] = (wy_cfg_entry_t){
        "WY_INSTANCE_ID",
        WY_CFG_STRING,
        "",
        0,
        0,
        NULL,
        "Name of this instance in logs, Kafka envelopes and sessions; empty = host name + pid.",
        &d->instance_id,
        false};
    shared[n++] = (wy_cfg_entry_t){SVCNAME("OPS_PORT"),
                                   WY_CFG_INT,
                                   def_ops,
                                   0,
                                   65535,
                                   NULL,
                                   "Ops HTTP port: GET /healthz, /readyz, /metrics (0 = any).",
                                   &d->ops_port,
                                   false};
    shared[n++] = (wy_cfg_entry_t){SVCNAME("GRPC_PORT"),
                                   WY_CFG_INT,
                                   def_grpc,
                                   0,
                                   65535,
                                   NULL,
                                   "gRPC port, incl. grpc.health.v1.Health (0 = any).",
                                   &d->grpc_port,
                                   false};
    shared[n++] = (wy_cfg_entry_t){
        SVCNAME("GRPC_MODE"),
        WY_CFG_ENUM,
        s->grpc_drive ? "drive" : "thread",
        0,
        0,
        "thread|drive",
        "gRPC threading: thread = a completion-queue thread hands calls to the loop; drive = "
        "the loop thread polls gRPC itself (no hand-off; a watcher thread wakes it for "
        "libuv's sockets and timers). Handlers run on the loop either way.",
        &d->grpc_mode,
        false};
    shared[n++] = (wy_cfg_entry_t){
        SVCNAME("DRAIN_TIMEOUT"),
        WY_CFG_DURATION_MS,
        "2500ms",
        0,
        60000,
        NULL,
        "On SIGTERM, how long in-flight requests may take before they are cut off.",
        &d->drain_ms,
        false};
    if (s->deps & WY_DEP_REDIS)
        shared[n++] = (wy_cfg_entry_t){"WY_REDIS_URL",
                                       WY_CFG_STRING,
                                       "redis://127.0.0.1:6379/0",
                                       0,
                                       0,
                                       NULL,
                                       "Redis: redis://[:password@]host:port[/db], or "
                                       "redis+cluster://host:port[,host:port...] "
                                       "for Redis Cluster.",
                                       &d->redis_url,
                                       true};
    if (s->deps & WY_DEP_PG) {
        shared[n++] = (wy_cfg_entry_t){"WY_PG_URL",
                                       WY_CFG_STRING,
                                       "postgresql://postgres@127.0.0.1:5432/postgres",
                                       0,
                                       0,
                                       NULL,
                                       "PostgreSQL connection URI or key=value conninfo. For "
                                       "failover, list primary and replicas with "
                                       "target_session_attrs=read-write.",
                                       &d->pg_url,
                                       true};
        shared[n++] = (wy_cfg_entry_t){"WY_PG_REPLICA_URL",
                                       WY_CFG_STRING,
                                       "",
                                       0,
                                       0,
                                       NULL,
                                       "PostgreSQL streaming replica for the reads that tolerate "
                                       "staleness (the service README says which); empty: the "
                                       "primary serves them.",
                                       &d->pg_replica_url,
                                       true};
        shared[n++] = (wy_cfg_entry_t){
            "WY_PG_POOL_SIZE", WY_CFG_INT, "4", 1, 64, NULL, "PostgreSQL connections per instance.",
            &d->pg_pool_size,  false};
        shared[n++] = (wy_cfg_entry_t){SVCNAME("MIGRATIONS_DIR"),
                                       WY_CFG_STRING,
                                       d->migrations_default,
                                       0,
                                       0,
                                       NULL,
                                       "Folder of NNN_<what>.sql migrations applied at start.",
                                       &d->migrations_dir,
                                       false};
    }
    if (s->deps & WY_DEP_KAFKA)
        shared[n++] = (wy_cfg_entry_t){"WY_KAFKA_BROKERS",
                                       WY_CFG_STRING,
                                       "127.0.0.1:9092",
                                       0,
                                       0,
                                       NULL,
                                       "Kafka bootstrap brokers, host:port[,host:port].",
                                       &d->kafka_brokers,
                                       false};
    if ((s->helpers & WY_HELPER_OUTBOX) && (s->deps & WY_DEP_PG) && (s->deps & WY_DEP_KAFKA))
        shared[n++] = (wy_cfg_entry_t){
            SVCNAME("OUTBOX_POLL"),
            WY_CFG_DURATION_MS,
            "1s",
            10,
            3600000,
            NULL,
            "Outbox relay period: rows a crashed instance left and failed publications are "
            "picked up this often (a commit wakes the relay at once).",
            &d->outbox_poll_ms,
            false};
    if ((s->helpers & WY_HELPER_CONSUMED) && (s->deps & WY_DEP_PG))
        shared[n++] = (wy_cfg_entry_t){
            SVCNAME("CONSUMED_RETENTION"),
            WY_CFG_DURATION_MS,
            "168h",
            60000,
            (int64_t)8760 * 3600000,
            NULL,
            "How long applied Kafka event ids are kept for deduplication; keep it above the "
            "retention of the consumed topics.",
            &d->consumed_retention_ms,
            false};
#undef SVCNAME
    wy_free(up);

    d->ncfg = n + s->nconfig;
    d->cfg = wy_calloc(d->ncfg, sizeof *d->cfg);
    memcpy(d->cfg, shared, n * sizeof *shared);
    if (s->config_size) {
        d->svc_cfg = wy_calloc(1, s->config_size);
        wy_config_rebase(d->cfg + n, s->config, s->nconfig, d->svc_cfg);
    } else if (s->nconfig) {
        memcpy(d->cfg + n, s->config, s->nconfig * sizeof *s->config);
    }
}

static void free_config(wy_daemon_t *d)
{
    if (d->svc_cfg && d->spec->unconfigure)
        d->spec->unconfigure(d->svc_cfg);
    wy_config_free(d->cfg, d->ncfg);
    wy_free(d->cfg);
    wy_free(d->svc_cfg);
    for (size_t i = 0; i < SHARED_MAX; i++)
        wy_free(d->names[i]);
    wy_free(d->migrations_default);
    wy_free(d->instance_auto);
}

/* ---------------------------------------------------------------- readiness */

static unsigned dep_bit(int i)
{
    return i == 0 ? WY_DEP_REDIS : i == 1 ? WY_DEP_PG : WY_DEP_KAFKA;
}

static unsigned required_deps(const wy_daemon_t *d)
{
    unsigned r = d->spec->required_deps ? d->spec->required_deps : WY_DEP_REQUIRED_DEFAULT;
    return r & d->spec->deps;
}

/* The WY_DEP_* bits of the dependencies that do not answer. */
static unsigned deps_down(wy_daemon_t *d)
{
    unsigned down = 0;
    if (d->redis && wy_redis_health(d->redis) != WY_OK)
        down |= WY_DEP_REDIS;
    if (d->pg && wy_pg_health(d->pg) != WY_OK)
        down |= WY_DEP_PG;
    if (d->spec->deps & WY_DEP_KAFKA) {
        bool up = d->producer && wy_kafka_producer_healthy(d->producer);
        for (int i = 0; i < CONS_N; i++)
            up = up || (d->cons[i].c && wy_kafka_consumer_healthy(d->cons[i].c));
        if (!up)
            down |= WY_DEP_KAFKA;
    }
    return down;
}

/* What readiness is made of at one moment. */
typedef struct {
    unsigned down;     /* WY_DEP_* not answering */
    unsigned required; /* WY_DEP_* whose outage makes unready */
    const char *svc;   /* the service's own unready reason, or NULL */
} readiness_t;

static readiness_t readiness(wy_daemon_t *d)
{
    readiness_t r = {deps_down(d), required_deps(d), NULL};
    if (d->spec->unready && d->state == ST_RUNNING)
        r.svc = d->spec->unready(d);
    return r;
}

static bool readiness_ok(const readiness_t *r)
{
    return !(r->down & r->required) && !r->svc;
}

static void update_dep_gauges(wy_daemon_t *d)
{
    readiness_t r = readiness(d);
    for (int i = 0; i < 3; i++)
        if (d->m_dep_up[i])
            wy_metric_set(d->m_dep_up[i], (r.down & dep_bit(i)) ? 0 : 1);
    bool ready = readiness_ok(&r) && d->state == ST_RUNNING;
    wy_metric_set(d->m_ready, ready ? 1 : 0);
    wy_metric_set(d->m_degraded, ready && (r.down & ~r.required) ? 1 : 0);
    if (d->grpc && d->state == ST_RUNNING) {
        wy_grpc_server_set_health(d->grpc, "", ready);
        wy_grpc_server_set_health(d->grpc, d->spec->grpc_service, ready);
    }
}

static void maybe_go_ready(wy_daemon_t *d);

static void on_health_timer(uv_timer_t *t)
{
    wy_daemon_t *d = t->data;
    maybe_go_ready(d);
    update_dep_gauges(d);
}

void wy_daemon_ready_check(wy_daemon_t *d)
{
    maybe_go_ready(d);
    update_dep_gauges(d);
}

static void handle_healthz(wy_http_req_t *req, void *ud)
{
    WY_UNUSED(ud);
    wy_http_respond_json(req, 200, json_pack("{s:s}", "status", "alive"));
}

/* A JSON array of the names of the deps in `bits`, then `extra` if not NULL. */
static json_t *dep_list(unsigned bits, const char *extra)
{
    json_t *arr = json_array();
    for (int i = 0; i < 3; i++)
        if (bits & dep_bit(i))
            json_array_append_new(arr, json_string(dep_names[i]));
    if (extra)
        json_array_append_new(arr, json_string(extra));
    return arr;
}

static void handle_readyz(wy_http_req_t *req, void *ud)
{
    wy_daemon_t *d = ud;
    if (d->state == ST_STARTING) {
        const char *wait =
            d->cons[CONS_BROADCAST].c && !d->cons[CONS_BROADCAST].positioned
                ? "kafka_partitions"
                : (d->spec->unready && d->parts_started ? d->spec->unready(d) : NULL);
        wy_http_respond_json(req, 503,
                             wait ? json_pack("{s:s,s:[s]}", "status", "starting", "waiting", wait)
                                  : json_pack("{s:s}", "status", "starting"));
        return;
    }
    if (d->state != ST_RUNNING) {
        wy_http_respond_json(req, 503, json_pack("{s:s}", "status", "draining"));
        return;
    }
    readiness_t r = readiness(d);
    unsigned degraded = r.down & ~r.required;
    if (!readiness_ok(&r)) {
        json_t *body = json_pack("{s:s,s:o}", "status", "unhealthy", "down",
                                 dep_list(r.down & r.required, r.svc));
        if (degraded)
            json_object_set_new(body, "degraded", dep_list(degraded, NULL));
        wy_http_respond_json(req, 503, body);
    } else if (degraded) {
        wy_http_respond_json(
            req, 200,
            json_pack("{s:s,s:o}", "status", "degraded", "degraded", dep_list(degraded, NULL)));
    } else {
        wy_http_respond_json(req, 200, json_pack("{s:s}", "status", "healthy"));
    }
}

/* ---------------------------------------------------------------- metrics */

static void mirror(mirror_t *mx, uint64_t now)
{
    if (mx->m && now > mx->last) {
        wy_metric_add(mx->m, (double)(now - mx->last));
        mx->last = now;
    }
}

static wy_metric_t *svc_metric(wy_daemon_t *d, int kind, const char *what, const char *help,
                               const char *labels)
{
    char *name = wy_sprintf("wy_%s_%s", d->spec->svc, what);
    wy_metric_t *m =
        kind == 'c' ? wy_metrics_counter(name, help, labels) : wy_metrics_gauge(name, help, labels);
    wy_free(name);
    return m;
}

static void register_metrics(wy_daemon_t *d)
{
    wy_metric_set(svc_metric(d, 'g', "build_info", "Build of this daemon (always 1).",
                             "version=\"" WY_VERSION "\""),
                  1);
    wy_metric_set(svc_metric(d, 'g', "start_time_seconds", "Unix time the daemon started.", NULL),
                  (double)(wy_wall_ms() / 1000));
    d->m_ready =
        svc_metric(d, 'g', "ready", "1 when /readyz answers 200 (healthy or degraded).", NULL);
    d->m_degraded =
        svc_metric(d, 'g', "degraded", "1 when ready but an optional dependency is down.", NULL);
    for (int i = 0; i < 3; i++) {
        if (!(d->spec->deps & dep_bit(i)))
            continue;
        char *lbl = wy_sprintf("dependency=\"%s\"", dep_names[i]);
        d->m_dep_up[i] = svc_metric(d, 'g', "dependency_up", "1 when the dependency answers.", lbl);
        wy_metric_set(svc_metric(d, 'g', "dependency_required",
                                 "1 when the dependency's outage makes the daemon unready.", lbl),
                      (required_deps(d) & dep_bit(i)) ? 1 : 0);
        wy_free(lbl);
    }
    static const char *classes[] = {"2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < 4; i++) {
        char *lbl = wy_sprintf("class=\"%s\"", classes[i]);
        d->mx_http_resp[i].m = svc_metric(d, 'c', "ops_http_responses_total",
                                          "HTTP responses sent on the ops port, by class.", lbl);
        wy_free(lbl);
    }
    d->m_http_conns =
        svc_metric(d, 'g', "ops_http_connections", "Open ops HTTP connections.", NULL);
    d->m_grpc_in_flight = svc_metric(d, 'g', "grpc_calls_in_flight", "gRPC calls in flight.", NULL);
    if (d->spec->deps & WY_DEP_KAFKA) {
        d->mx_produced.m =
            svc_metric(d, 'c', "kafka_produced_total", "Kafka events accepted for sending.", NULL);
        d->mx_delivery_failed.m = svc_metric(d, 'c', "kafka_delivery_failed_total",
                                             "Kafka events whose delivery failed.", NULL);
    }
    if (d->spec->nsubs) {
        d->mx_consumed.m = svc_metric(d, 'c', "kafka_consumed_total",
                                      "Kafka Envelopes handed to the daemon.", NULL);
        d->mx_bad.m = svc_metric(d, 'c', "kafka_bad_messages_total",
                                 "Kafka records skipped because they are not an Envelope.", NULL);
        d->m_duplicates =
            svc_metric(d, 'c', "kafka_duplicates_total",
                       "Kafka events skipped because their event_id was applied.", NULL);
    }
}

static void refresh_worker_metrics(wy_daemon_t *d);

static void refresh_metrics(wy_daemon_t *d)
{
    update_dep_gauges(d);
    if (d->workers)
        refresh_worker_metrics(d);
    if (d->ops) {
        const wy_http_counters_t *c = wy_http_counters(d->ops);
        mirror(&d->mx_http_resp[0], c->responses_2xx);
        mirror(&d->mx_http_resp[1], c->responses_3xx);
        mirror(&d->mx_http_resp[2], c->responses_4xx);
        mirror(&d->mx_http_resp[3], c->responses_5xx);
        wy_metric_set(d->m_http_conns, (double)c->conns_open);
    }
    if (d->grpc) {
        wy_grpc_server_stats_t gs;
        wy_grpc_server_stats(d->grpc, &gs);
        wy_metric_set(d->m_grpc_in_flight, (double)gs.in_flight);
    }
    if (d->producer) {
        wy_kafka_producer_stats_t ps;
        wy_kafka_producer_stats(d->producer, &ps);
        mirror(&d->mx_produced, ps.produced);
        mirror(&d->mx_delivery_failed, ps.failed);
    }
    if (d->cons[CONS_SHARED].c || d->cons[CONS_BROADCAST].c) {
        uint64_t consumed = 0, bad = 0;
        for (int i = 0; i < CONS_N; i++) {
            wy_kafka_consumer_stats_t cs = {0};
            if (d->cons[i].c)
                wy_kafka_consumer_stats(d->cons[i].c, &cs);
            consumed += cs.consumed;
            bad += cs.bad;
        }
        mirror(&d->mx_consumed, consumed);
        mirror(&d->mx_bad, bad);
    }
}

static void handle_metrics(wy_http_req_t *req, void *ud)
{
    wy_daemon_t *d = ud;
    refresh_metrics(d);
    wy_buf_t b = WY_BUF_INIT;
    wy_metrics_render(&b);
    wy_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    wy_buf_free(&b);
}

/* ---------------------------------------------------------------- kafka */

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

static const wy_daemon_sub_t *row_of(const wy_daemon_t *d, const char *topic)
{
    for (size_t i = 0; i < d->spec->nsubs; i++)
        if (strcmp(d->spec->subs[i].topic, topic) == 0)
            return &d->spec->subs[i];
    return NULL;
}

/* A label value from untrusted bytes: [A-Za-z0-9._:-] kept, anything else '_'. */
static char *label_safe(const char *s)
{
    char *out = wy_strdup(s);
    for (char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == ':' || *p == '-'))
            *p = '_';
    return out;
}

static wy_metric_t *type_metric(wy_daemon_t *d, const char *what, const char *help,
                                const char *topic, const char *type)
{
    char *t = label_safe(type);
    char *lbl = wy_sprintf("topic=\"%s\",type=\"%s\"", topic, t);
    wy_metric_t *m = svc_metric(d, 'c', what, help, lbl);
    wy_free(lbl);
    wy_free(t);
    return m;
}

/* Counts an event of a type no row handles; the first of each (topic, type)
 * is logged. Bounded: past UNHANDLED_MAX pairs they share one "other" series. */
static void count_unhandled(wy_daemon_t *d, const wy_daemon_sub_t *row, const Wyvern__Envelope *env)
{
    static const char help[] = "Kafka events of a type this daemon has no handler for (skipped).";
    for (size_t i = 0; i < d->nunhandled; i++) {
        unhandled_t *u = &d->unhandled[i];
        if (u->row == row && strcmp(u->type, env->type) == 0) {
            wy_metric_inc(u->m);
            return;
        }
    }
    if (d->nunhandled == UNHANDLED_MAX) {
        unhandled_t *other = &d->unhandled[UNHANDLED_MAX];
        if (!other->m) {
            other->m =
                svc_metric(d, 'c', "events_unhandled_total", help, "topic=\"*\",type=\"other\"");
            wy_log_warn("too many unhandled event types; further ones are counted as other",
                        "topic", row->topic, "type", env->type, NULL);
        }
        wy_metric_inc(other->m);
        return;
    }
    unhandled_t *u = &d->unhandled[d->nunhandled++];
    u->row = row;
    u->type = wy_strdup(env->type);
    u->m = type_metric(d, "events_unhandled_total", help, row->topic, env->type);
    wy_metric_inc(u->m);
    wy_log_warn("kafka event type not handled (skipped; logged once per type)", "topic", row->topic,
                "type", env->type, "event_id", env->event_id, NULL);
}

static void on_kafka_event(void *ud, const Wyvern__Envelope *env, wy_kafka_msg_t *msg)
{
    dcons_t *dc = ud;
    wy_daemon_t *d = dc->d;
    const wy_daemon_sub_t *row = row_of(d, wy_kafka_msg_topic(msg));
    wy_log_debug("kafka event", "topic", wy_kafka_msg_topic(msg), "type", env->type, "event_id",
                 env->event_id, NULL);
    /* At-least-once delivery: an event applied before (redelivery after a
     * rebalance or crash of a peer) has no second effect. */
    if (wy_seen_contains(d->seen, env->event_id)) {
        wy_metric_inc(d->m_duplicates);
        wy_kafka_msg_done(msg);
        return;
    }
    if (row && in_list(row->types, env->type)) {
        row->handler(d, msg, env);
        return;
    }
    if (row && in_list(row->ignores, env->type)) {
        wy_log_debug("event ignored", "topic", row->topic, "type", env->type, "event_id",
                     env->event_id, NULL);
        wy_metric_inc(type_metric(d, "events_ignored_total",
                                  "Kafka events of a known type this daemon does not act on.",
                                  row->topic, env->type));
    } else if (row) {
        count_unhandled(d, row, env);
    }
    /* Not remembered as applied: only its offset moves on. */
    wy_kafka_msg_done(msg);
}

void wy_daemon_event_done(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env)
{
    (void)wy_seen_check_add(d->seen, env->event_id);
    wy_kafka_msg_done(msg);
}

static void maybe_go_ready(wy_daemon_t *d);

/* Forwards a rebalance to each row's on_partitions with that row's partitions;
 * a broadcast consumer's first assignment makes the daemon ready. */
static void on_kafka_rebalance(void *ud, wy_kafka_rebalance_t kind,
                               const wy_kafka_partition_t *parts, size_t n)
{
    dcons_t *dc = ud;
    wy_daemon_t *d = dc->d;
    wy_kafka_partition_t *mine = wy_calloc(n ? n : 1, sizeof *mine);
    for (size_t r = 0; r < d->spec->nsubs; r++) {
        const wy_daemon_sub_t *row = &d->spec->subs[r];
        if (!row->on_partitions || &d->cons[row->mode == WY_SUB_BROADCAST] != dc)
            continue;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (strcmp(parts[i].topic, row->topic) == 0)
                mine[k++] = parts[i];
        if (k)
            row->on_partitions(d, kind, mine, k);
    }
    wy_free(mine);
    if (kind == WY_KAFKA_ASSIGNED && !dc->positioned) {
        dc->positioned = true;
        maybe_go_ready(d);
    }
}

/* Checks the subscription table; NULL or a static message naming the bad row. */
static const char *check_subs(const wy_daemon_spec_t *s)
{
    static char msg[256];
    if (s->nsubs && !s->subs)
        return "subscriptions: nsubs without a table";
    if (s->nsubs && !(s->deps & WY_DEP_KAFKA))
        return "subscriptions need WY_DEP_KAFKA";
    for (size_t i = 0; i < s->nsubs; i++) {
        const wy_daemon_sub_t *r = &s->subs[i];
        const char *why = NULL;
        if (!r->topic || !*r->topic)
            why = "empty topic";
        else if (!r->handler)
            why = "no handler";
        else if (!r->types || !r->types[0])
            why = "no event types";
        else if (r->mode != WY_SUB_SHARED && r->mode != WY_SUB_BROADCAST)
            why = "unknown mode";
        for (size_t j = 0; !why && j < i; j++)
            if (strcmp(s->subs[j].topic, r->topic) == 0)
                why = "topic listed twice";
        if (why) {
            snprintf(msg, sizeof msg, "subscription %zu (%s): %s", i, r->topic ? r->topic : "",
                     why);
            return msg;
        }
    }
    return NULL;
}

/* Creates the consumer of one mode if a row uses it. */
static int start_consumer(wy_daemon_t *d, int mode, const char *client_id, const char **err)
{
    const wy_daemon_spec_t *s = d->spec;
    const char **topics = wy_calloc(s->nsubs + 1, sizeof *topics);
    size_t n = 0;
    for (size_t i = 0; i < s->nsubs; i++)
        if ((int)s->subs[i].mode == mode)
            topics[n++] = s->subs[i].topic;
    int rc = WY_OK;
    if (n > 0) {
        bool bc = mode == WY_SUB_BROADCAST;
        char *group =
            bc ? wy_sprintf("wy-%s-%s", s->svc, d->instance_id) : wy_sprintf("wy-%s", s->svc);
        /* A new broadcast group starts at the end: an instance has no past
         * kicks or notices to catch up on. Its events are latency-bound
         * (kicks, notices) and the real broker was seen answering an idle
         * fetch only at fetch.wait.max.ms (500 ms by default) although an
         * event had arrived: wait at most 100 ms (10 empty fetches a second). */
        static const char *const latest[] = {"auto.offset.reset", "latest", "fetch.wait.max.ms",
                                             "100", NULL};
        dcons_t *dc = &d->cons[mode];
        dc->d = d;
        wy_kafka_consumer_opts_t co = {.brokers = d->kafka_brokers,
                                       .extra = bc ? latest : NULL,
                                       .group_id = group,
                                       .topics = topics,
                                       .handler = on_kafka_event,
                                       .on_rebalance = on_kafka_rebalance,
                                       .position_on_assign = bc,
                                       .position_timeout_ms = POSITION_TIMEOUT_MS,
                                       .max_in_flight = s->consumer_max_in_flight,
                                       .udata = dc,
                                       .client_id = client_id};
        rc = wy_kafka_consumer_new(&d->loop, &co, &dc->c, err);
        wy_free(group);
    }
    wy_free(topics);
    return rc;
}

/* ---------------------------------------------------------------- stop */

static void close_done(void *ud)
{
    wy_daemon_t *d = ud;
    d->closing--;
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Second half of the stop: everything is drained (or the drain time is up):
 * release the parts. The loop ends when the last handle is closed. */
static void finish_stop(wy_daemon_t *d)
{
    if (d->state == ST_CLOSING)
        return;
    d->state = ST_CLOSING;
    uv_timer_stop(&d->drain_timer);
    /* Calls handlers still hold are answered before the stores they wait on close:
     * the gRPC grace has the drain's length but its own timer, and a loop turn that
     * wakes late past both deadlines may run the drain's first. Closing Redis or
     * PostgreSQL below then finishes the handlers, and their replies are dropped. */
    if (d->grpc && !d->grpc_stopped)
        wy_grpc_server_end_grace(d->grpc);
    /* Workers first: what they posted last is delivered while the rest is
     * still open. */
    if (d->workers) {
        d->closing++;
        wy_workers_close(d->workers, close_done, d);
        d->workers = NULL;
    }
    /* Then the helpers: they hold statements on the pool and messages on the producer. */
    if (d->outbox) {
        wy_outbox_close(d->outbox, NULL, NULL);
        d->outbox = NULL;
    }
    if (d->consumed) {
        wy_consumed_close(d->consumed);
        d->consumed = NULL;
    }
    if (d->producer) {
        wy_kafka_producer_close(d->producer, KAFKA_CLOSE_MS);
        d->producer = NULL;
    }
    if (d->ops) {
        d->closing++;
        wy_http_close(d->ops, close_done, d);
        d->ops = NULL;
    }
    if (d->redis) {
        d->closing++;
        wy_redis_close(d->redis, close_done, d);
        d->redis = NULL;
    }
    if (d->pg) {
        d->closing++;
        wy_pg_close(d->pg, close_done, d);
        d->pg = NULL;
    }
    if (d->pg_replica) {
        d->closing++;
        wy_pg_close(d->pg_replica, close_done, d);
        d->pg_replica = NULL;
    }
    if (d->grpc_rt && d->grpc_stopped) {
        d->closing++;
        if (wy_grpc_rt_close(d->grpc_rt, close_done, d) != WY_OK)
            d->closing--;
        d->grpc_rt = NULL;
    }
    close_handle((uv_handle_t *)&d->health_timer);
    close_handle((uv_handle_t *)&d->drain_timer);
    close_handle((uv_handle_t *)&d->sigterm);
    close_handle((uv_handle_t *)&d->sigint);
}

static void on_grpc_stopped(void *ud)
{
    wy_daemon_t *d = ud;
    d->grpc = NULL;
    d->grpc_stopped = true;
    /* The runtime can only go once its server is gone; if the rest of the
     * stop already ran, release it now. */
    if (d->state == ST_CLOSING && d->grpc_rt) {
        d->closing++;
        if (wy_grpc_rt_close(d->grpc_rt, close_done, d) != WY_OK)
            d->closing--;
        d->grpc_rt = NULL;
    }
}

static void on_drain_timer(uv_timer_t *t)
{
    wy_daemon_t *d = t->data;
    /* A relay pass in flight finishes first, so its rows are deleted before the pool closes. */
    bool idle = (!d->ops || wy_http_in_flight(d->ops) == 0) && d->grpc_stopped &&
                (!d->spec->busy || d->spec->busy(d) == 0) &&
                (!d->outbox || wy_outbox_idle(d->outbox)) &&
                (!d->workers || !wy_workers_running(d->workers));
    /* Past the deadline finish_stop ends the gRPC grace first, so calls handlers hold
     * are answered by the stop, not by their stores failing under them, without
     * waiting on the gRPC server's own timer or shutdown. */
    if (idle || wy_now_ms() >= d->drain_deadline)
        finish_stop(d);
}

/* First half of the stop: no new work, let what is running finish. */
static void begin_stop(wy_daemon_t *d, const char *why)
{
    if (d->state >= ST_DRAINING) {
        if (d->state == ST_DRAINING) {
            wy_log_warn("second signal: stopping without waiting", NULL);
            finish_stop(d);
        }
        return;
    }
    d->state = ST_DRAINING;
    wy_log_info("stopping", "reason", why, NULL);
    if (d->ops)
        wy_http_stop(d->ops);
    if (d->grpc) {
        if (wy_grpc_server_stop(d->grpc, (unsigned)d->drain_ms, on_grpc_stopped, d) != WY_OK)
            d->grpc_stopped = true;
    } else {
        d->grpc_stopped = true;
    }
    if (d->spec->stop)
        d->spec->stop(d);
    if (d->workers)
        wy_workers_stop(d->workers);
    /* Stored offsets are committed here; events still in flight are
     * redelivered to the next owner of their partition. */
    for (int i = 0; i < CONS_N; i++) {
        if (d->cons[i].c) {
            wy_kafka_consumer_close(d->cons[i].c, KAFKA_CLOSE_MS);
            d->cons[i].c = NULL;
        }
    }
    d->drain_deadline = wy_now_ms() + (uint64_t)d->drain_ms;
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)d->drain_ms);
    wy_log_info("draining", "timeout_ms", ms, NULL);
    uv_timer_start(&d->drain_timer, on_drain_timer, 0, DRAIN_POLL_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
    begin_stop(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---------------------------------------------------------------- start */

/* The PostgreSQL helpers of spec->helpers, in the service's schema (named after it). */
static int start_helpers(wy_daemon_t *d, const char **err)
{
    const wy_daemon_spec_t *s = d->spec;
    if (s->helpers && (!(s->deps & WY_DEP_PG) ||
                       ((s->helpers & WY_HELPER_OUTBOX) && !(s->deps & WY_DEP_KAFKA)))) {
        *err = "helpers: the outbox needs WY_DEP_PG and WY_DEP_KAFKA, consumed needs WY_DEP_PG";
        return WY_EINVAL;
    }
    if (s->helpers & WY_HELPER_CONSUMED) {
        wy_consumed_opts_t o = {.svc = s->svc,
                                .schema = s->svc,
                                .consumer = s->svc,
                                .retention_s = (uint32_t)(d->consumed_retention_ms / 1000)};
        int rc = wy_consumed_new(&d->loop, d->pg, &o, &d->consumed, err);
        if (rc != WY_OK)
            return rc;
    }
    if (s->helpers & WY_HELPER_OUTBOX) {
        wy_outbox_opts_t o = {
            .svc = s->svc, .schema = s->svc, .poll_interval_ms = (uint32_t)d->outbox_poll_ms};
        int rc = wy_outbox_new(&d->loop, d->pg, d->producer, &o, &d->outbox, err);
        if (rc != WY_OK)
            return rc;
    }
    return WY_OK;
}

static int start_parts(wy_daemon_t *d, const char **err)
{
    const wy_daemon_spec_t *s = d->spec;
    int rc;
    static char msg[512];

    if (s->deps & WY_DEP_REDIS) {
        const char *e = NULL;
        if (wy_redis_create(&d->loop, d->redis_url, NULL, &d->redis, &e) != WY_OK) {
            snprintf(msg, sizeof msg, "WY_REDIS_URL: %s", e ? e : "invalid");
            *err = msg;
            return WY_EINVAL;
        }
    }
    if (s->deps & WY_DEP_PG) {
        const char *e = NULL;
        wy_pg_opts_t o = {.size = (uint32_t)d->pg_pool_size};
        if (wy_pg_create(&d->loop, d->pg_url, &o, &d->pg, &e) != WY_OK) {
            snprintf(msg, sizeof msg, "WY_PG_URL: %s", e ? e : "invalid");
            *err = msg;
            return WY_EINVAL;
        }
        if (d->pg_replica_url && *d->pg_replica_url &&
            wy_pg_create(&d->loop, d->pg_replica_url, &o, &d->pg_replica, &e) != WY_OK) {
            snprintf(msg, sizeof msg, "WY_PG_REPLICA_URL: %s", e ? e : "invalid");
            *err = msg;
            return WY_EINVAL;
        }
    }
    if ((*err = check_subs(s)) != NULL)
        return WY_EINVAL;
    char *producer_name = wy_sprintf("%s/%s", s->svc, d->instance_id);
    if (s->deps & WY_DEP_KAFKA) {
        const char *e = NULL;
        wy_kafka_producer_opts_t po = {.brokers = d->kafka_brokers,
                                       .producer = producer_name,
                                       .linger_ms = s->producer_linger_ms};
        rc = wy_kafka_producer_new(&d->loop, &po, &d->producer, &e);
        if (rc == WY_OK)
            rc = start_consumer(d, WY_SUB_SHARED, producer_name, &e);
        if (rc == WY_OK)
            rc = start_consumer(d, WY_SUB_BROADCAST, producer_name, &e);
        if (rc != WY_OK) {
            snprintf(msg, sizeof msg, "WY_KAFKA_BROKERS: %s", e ? e : "invalid");
            wy_free(producer_name);
            *err = msg;
            return WY_EINVAL;
        }
        d->seen = wy_seen_new(SEEN_CAPACITY);
    }
    wy_free(producer_name);
    if ((rc = start_helpers(d, err)) != WY_OK)
        return rc;

    if ((rc = wy_http_server_new(&d->loop, NULL, &d->ops)) != WY_OK) {
        *err = "cannot create the ops HTTP server";
        return rc;
    }
    wy_http_route(d->ops, "GET", "/healthz", handle_healthz, d);
    wy_http_route(d->ops, "GET", "/readyz", handle_readyz, d);
    wy_http_route(d->ops, "GET", "/metrics", handle_metrics, d);

    wy_grpc_rt_opts_t ro = {.drive = strcmp(d->grpc_mode, "drive") == 0};
    if ((rc = wy_grpc_rt_new_opts(&d->loop, &ro, &d->grpc_rt)) != WY_OK) {
        *err = "cannot start the gRPC runtime";
        return rc;
    }
    if (ro.drive)
        d->grpc_driver = d->grpc_rt;
    if ((rc = wy_grpc_server_new(d->grpc_rt, NULL, &d->grpc)) != WY_OK) {
        *err = "cannot create the gRPC server";
        return rc;
    }
    /* NOT_SERVING until the first readiness check says the dependencies answer. */
    wy_grpc_server_set_health(d->grpc, "", false);
    wy_grpc_server_set_health(d->grpc, s->grpc_service, false);

    d->in_start = true;
    rc = s->start ? s->start(d, err) : WY_OK;
    d->in_start = false;
    if (rc != WY_OK)
        return rc;
    if (d->workers && (rc = wy_workers_start(d->workers)) != WY_OK) {
        *err = "cannot start the worker threads";
        return rc;
    }

    const char *e = NULL;
    if ((rc = wy_http_listen(d->ops, d->bind_host, (int)d->ops_port, &e)) != WY_OK) {
        snprintf(msg, sizeof msg, "ops HTTP port %s:%d: %s", d->bind_host, (int)d->ops_port,
                 e ? e : wy_strerror(rc));
        *err = msg;
        return rc;
    }
    d->bound_ops_port = wy_http_port(d->ops);
    char *addr = wy_sprintf("%s:%d", d->bind_host, (int)d->grpc_port);
    rc = wy_grpc_server_start(d->grpc, addr, &d->bound_grpc_port, &e);
    wy_free(addr);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "gRPC port %s:%d: %s", d->bind_host, (int)d->grpc_port,
                 e ? e : wy_strerror(rc));
        *err = msg;
        return rc;
    }
    return WY_OK;
}

static int run_migrations(wy_daemon_t *d)
{
    int applied = 0;
    const char *err = NULL;
    int rc = wy_pg_migrate(d->pg_url, d->spec->svc, d->migrations_dir, &applied, &err);
    if (rc != WY_OK) {
        wy_log_error("migrations failed", "schema", d->spec->svc, "dir", d->migrations_dir, "error",
                     err ? err : wy_strerror(rc), NULL);
        return rc;
    }
    char n[16];
    snprintf(n, sizeof n, "%d", applied);
    wy_log_info("migrations applied", "schema", d->spec->svc, "count", n, NULL);
    return WY_OK;
}

static void log_ready(wy_daemon_t *d)
{
    wy_buf_t b = WY_BUF_INIT;
    wy_buf_printf(&b, "\"version\":\"%s\",\"instance\":\"", WY_VERSION);
    wy_buf_json_escape(&b, d->instance_id, strlen(d->instance_id));
    wy_buf_printf(&b, "\",\"ops_port\":%d,\"grpc_port\":%d", d->bound_ops_port, d->bound_grpc_port);
    char *cfg = wy_config_effective_json(d->cfg, d->ncfg);
    if (cfg && *cfg) {
        wy_buf_putc(&b, ',');
        wy_buf_puts(&b, cfg);
    }
    wy_free(cfg);
    wy_log_raw(WY_LOG_INFO, "ready", b.data);
    wy_buf_free(&b);
}

static void go_ready(wy_daemon_t *d)
{
    d->state = ST_RUNNING;
    update_dep_gauges(d);
    log_ready(d);
}

/* A daemon that does not require Kafka starts without it: with the brokers still down
 * START_OPTIONAL_WAIT_MS after the start, it stops waiting for the broadcast consumer's
 * partitions (it positions them when Kafka returns; events produced in between may be
 * missed, which is what Kafka being optional means). */
static bool kafka_given_up(wy_daemon_t *d)
{
    if ((required_deps(d) & WY_DEP_KAFKA) || !(deps_down(d) & WY_DEP_KAFKA) ||
        wy_now_ms() - d->parts_started_ms < START_OPTIONAL_WAIT_MS)
        return false;
    if (!d->kafka_given_up) {
        d->kafka_given_up = true;
        wy_log_warn("kafka down at start: ready without the broadcast consumer's partitions", NULL);
    }
    return true;
}

/* The ready line follows once the parts are started, every required dependency
 * answers, every optional one answers or had START_OPTIONAL_WAIT_MS to (then
 * the daemon starts degraded), a broadcast consumer is positioned (unless Kafka,
 * optional, is still down then: kafka_given_up) and the service's own condition
 * (spec.unready) holds. The health timer calls this again until it does. */
static void maybe_go_ready(wy_daemon_t *d)
{
    if (d->state != ST_STARTING || !d->parts_started)
        return;
    const char *wait = NULL;
    unsigned down = deps_down(d), required = required_deps(d);
    if (down & required)
        wait = "a required dependency (see /readyz)";
    else if ((down & d->spec->deps) && wy_now_ms() - d->parts_started_ms < START_OPTIONAL_WAIT_MS)
        wait = "a first contact with every optional dependency";
    else if (d->cons[CONS_BROADCAST].c && !d->cons[CONS_BROADCAST].positioned && !kafka_given_up(d))
        wait = "the broadcast consumer's partitions";
    else if (d->spec->unready)
        wait = d->spec->unready(d);
    if (!wait) {
        go_ready(d);
    } else if (!d->waiting_logged) {
        d->waiting_logged = true;
        wy_log_info("waiting before ready", "for", wait, NULL);
    }
}

static int usage(const char *prog, FILE *out)
{
    fprintf(out,
            "usage: %s [--help [--json]] [--version]\n"
            "Configured only by WY_* environment variables; --help lists them.\n",
            prog);
    return out == stderr ? 2 : 0;
}

int wy_daemon_main(int argc, char **argv, const wy_daemon_spec_t *spec)
{
    wy_daemon_t dd, *d = &dd;
    memset(d, 0, sizeof *d);
    d->spec = spec;
    build_config(d);

    bool help = false, json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("wy-%s %s\n", spec->svc, WY_VERSION);
            free_config(d);
            return 0;
        } else {
            fprintf(stderr, "wy-%s: unknown argument \"%s\"\n", spec->svc, argv[i]);
            free_config(d);
            return usage(argv[0], stderr);
        }
    }
    if (help || json) {
        if (!json)
            usage(argv[0], stdout);
        wy_config_print_help(stdout, spec->svc, d->cfg, d->ncfg, json);
        free_config(d);
        return 0;
    }

    const char *err = NULL;
    if (wy_config_load(d->cfg, d->ncfg, &err) != WY_OK) {
        fprintf(stderr, "wy-%s: bad configuration: %s\n", spec->svc, err);
        free_config(d);
        return 2;
    }
    wy_log_level_t level = WY_LOG_INFO;
    wy_log_level_parse(d->log_level, &level);
    wy_log_init(spec->svc, level);
    wy_metrics_set_service(spec->svc); /* names the HTTP, WebSocket and gRPC latency metrics */
    if (spec->configure && spec->configure(d->svc_cfg, &err) != WY_OK) {
        fprintf(stderr, "wy-%s: bad configuration: %s\n", spec->svc, err ? err : "invalid");
        free_config(d);
        return 2;
    }
    if (!*d->instance_id) {
        char host[64] = "host";
        gethostname(host, sizeof host - 1);
        /* The configured string stays owned by the config table. */
        d->instance_auto = wy_sprintf("%s-%d", host, (int)getpid());
        d->instance_id = d->instance_auto;
    }
    /* A client vanishing mid-write must not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);

    if ((spec->deps & WY_DEP_PG) && run_migrations(d) != WY_OK) {
        free_config(d);
        return 1;
    }

    uv_loop_init(&d->loop);
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_timer_init(&d->loop, &d->health_timer);
    uv_timer_init(&d->loop, &d->drain_timer);
    d->sigterm.data = d->sigint.data = d->health_timer.data = d->drain_timer.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    register_metrics(d);

    if (start_parts(d, &err) != WY_OK) {
        wy_log_error("start failed", "error", err, NULL);
        d->exit_code = 1;
        d->state = ST_RUNNING;
        begin_stop(d, "start failed");
        finish_stop(d);
    } else {
        d->parts_started = true;
        d->parts_started_ms = wy_now_ms();
        maybe_go_ready(d);
        uv_timer_start(&d->health_timer, on_health_timer, 0, HEALTH_POLL_MS);
    }

    /* In drive mode the gRPC runtime runs the loop (the loop thread polls gRPC). */
    if (d->grpc_driver)
        wy_grpc_rt_run(d->grpc_driver, UV_RUN_DEFAULT);
    else
        uv_run(&d->loop, UV_RUN_DEFAULT);
    if (d->closing != 0)
        wy_log_warn("stop finished with parts still closing", NULL);
    if (uv_loop_close(&d->loop) != 0)
        wy_log_warn("loop closed with handles still open", NULL);
    wy_seen_free(d->seen);
    for (size_t i = 0; i < d->nunhandled; i++)
        wy_free(d->unhandled[i].type);
    wy_metrics_reset();
    if (d->exit_code == 0)
        wy_log_info("stopped", NULL);
    free_config(d);
    return d->exit_code;
}

/* ---------------------------------------------------------------- accessors */

uv_loop_t *wy_daemon_loop(wy_daemon_t *d)
{
    return &d->loop;
}

const char *wy_daemon_svc(const wy_daemon_t *d)
{
    return d->spec->svc;
}

const char *wy_daemon_instance(const wy_daemon_t *d)
{
    return d->instance_id;
}

wy_http_server_t *wy_daemon_ops(wy_daemon_t *d)
{
    return d->ops;
}

wy_grpc_rt_t *wy_daemon_grpc_rt(wy_daemon_t *d)
{
    return d->grpc_rt;
}

wy_grpc_server_t *wy_daemon_grpc(wy_daemon_t *d)
{
    return d->grpc;
}

wy_redis_t *wy_daemon_redis(wy_daemon_t *d)
{
    return d->redis;
}

wy_pg_t *wy_daemon_pg(wy_daemon_t *d)
{
    return d->pg;
}

wy_pg_t *wy_daemon_pg_replica(wy_daemon_t *d)
{
    if (d->pg_replica && wy_pg_health(d->pg_replica) == WY_OK)
        return d->pg_replica;
    return d->pg;
}

wy_kafka_producer_t *wy_daemon_producer(wy_daemon_t *d)
{
    return d->producer;
}

wy_outbox_t *wy_daemon_outbox(wy_daemon_t *d)
{
    return d->outbox;
}

wy_consumed_t *wy_daemon_consumed(wy_daemon_t *d)
{
    return d->consumed;
}

const char *wy_daemon_bind_host(const wy_daemon_t *d)
{
    return d->bind_host;
}

int wy_daemon_grpc_port(const wy_daemon_t *d)
{
    return d->bound_grpc_port;
}

int64_t wy_daemon_drain_ms(const wy_daemon_t *d)
{
    return d->drain_ms;
}

bool wy_daemon_stopping(const wy_daemon_t *d)
{
    return d->state >= ST_DRAINING;
}

void *wy_daemon_config(const wy_daemon_t *d)
{
    return d->svc_cfg;
}

void wy_daemon_set_state(wy_daemon_t *d, void *state)
{
    d->svc_state = state;
}

void *wy_daemon_state(const wy_daemon_t *d)
{
    return d->svc_state;
}

/* ---------------------------------------------------------------- workers */

int wy_daemon_add_workers(wy_daemon_t *d, const wy_workers_opts_t *opts)
{
    if (!d->in_start || d->workers)
        return WY_ESTATE;
    return wy_workers_new(&d->loop, opts, &d->workers);
}

wy_workers_t *wy_daemon_workers(wy_daemon_t *d)
{
    return d->workers;
}

/* wy_<svc>_worker_messages_total, _worker_messages_refused_total (full
 * mailbox) and wy_<svc>_worker_queue_high_water, by queue: "loop" (workers to
 * the loop) and "inbox" (the loop to the workers, all inboxes summed). */
static void refresh_worker_metrics(wy_daemon_t *d)
{
    static const char *const queues[2] = {"queue=\"loop\"", "queue=\"inbox\""};
    for (int q = 0; q < 2; q++) {
        wy_mailbox_stats_t st = {0}, one;
        if (q == 0) {
            wy_mailbox_stats(wy_workers_loop_mailbox(d->workers), &st);
        } else {
            for (unsigned i = 0; i < wy_workers_count(d->workers); i++) {
                wy_mailbox_stats(wy_workers_inbox(d->workers, i), &one);
                st.pushed += one.pushed;
                st.refused += one.refused;
                if (one.high_water > st.high_water)
                    st.high_water = one.high_water;
            }
        }
        mirror_t mx = {svc_metric(d, 'c', "worker_messages_total",
                                  "Messages queued between the loop and the worker threads.",
                                  queues[q]),
                       d->wmb_last[q][0]};
        mirror(&mx, st.pushed);
        d->wmb_last[q][0] = mx.last;
        mx = (mirror_t){svc_metric(d, 'c', "worker_messages_refused_total",
                                   "Messages refused because the mailbox was full.", queues[q]),
                        d->wmb_last[q][1]};
        mirror(&mx, st.refused);
        d->wmb_last[q][1] = mx.last;
        wy_metric_set(svc_metric(d, 'g', "worker_queue_high_water",
                                 "Most messages ever waiting in one mailbox.", queues[q]),
                      (double)st.high_water);
    }
}
