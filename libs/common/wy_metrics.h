/* wy_metrics — counters, gauges and histograms with Prometheus text exposition
 * (format 0.0.4, valid for `promtool check metrics`).
 *
 * Threads: the loop thread owns the registry (create and render there).
 * Updates (inc/add/set/observe) are lock-free atomics and may come from any
 * thread (gRPC completion queue, worker pool). */
#ifndef WY_METRICS_H
#define WY_METRICS_H

#include "wy_core.h"
#include "wy_buf.h"

typedef struct wy_metric wy_metric_t;

/* Registration. `name` follows wy_<svc>_<what>_<unit> (counters end in _total);
 * `labels` is NULL or a fixed label set in exposition syntax without braces,
 * e.g. "method=\"GET\",code=\"200\"". Registering the same name+labels twice
 * returns the same metric; the same name with another type aborts (a bug).
 * Strings are copied. Metrics live until wy_metrics_reset.
 * Programming bugs abort with a message on stderr, so the registry always
 * passes `promtool check metrics` (lint included):
 *  - metric and label names not snake_case [a-z_][a-z0-9_]*;
 *  - a counter not ending in _total, or a gauge/histogram ending in _total;
 *  - a gauge/counter ending in _bucket, _count or _sum;
 *  - NULL or empty help on the first registration of a name (later ones may
 *    pass NULL; the first help text wins);
 *  - a malformed label set, duplicate label names, the reserved labels le,
 *    quantile and __*;
 *  - histogram bounds not finite and strictly ascending;
 *  - an update of the wrong kind (set on a counter, observe on a gauge,
 *    inc/add on a histogram).
 * Label values may use the exposition escapes \\ \" \n; label sets are
 * normalized, so `a="1", b="2"` and `a="1",b="2"` are the same series.
 * Invalid UTF-8 in help or label values is replaced by U+FFFD (one bad byte
 * would make Prometheus drop the whole scrape). Lookup of an existing series
 * is a hash probe, so calling these per request is fine (loop thread). */
wy_metric_t *wy_metrics_counter(const char *name, const char *help, const char *labels);
wy_metric_t *wy_metrics_gauge(const char *name, const char *help, const char *labels);
/* `bounds` are ascending upper bounds (le) without +Inf; copied. */
wy_metric_t *wy_metrics_histogram(const char *name, const char *help, const char *labels,
                                  const double *bounds, size_t nbounds);

/* Updates: lock-free, any thread. A counter only goes up: add with a negative
 * or NaN v is dropped. */
void wy_metric_inc(wy_metric_t *m);               /* counter or gauge += 1 */
void wy_metric_add(wy_metric_t *m, double v);     /* counter or gauge += v */
void wy_metric_set(wy_metric_t *m, double v);     /* gauge = v */
void wy_metric_observe(wy_metric_t *m, double v); /* histogram */
double wy_metric_value(const wy_metric_t *m);     /* counter/gauge value; histogram count */

/* Most series the registry holds. Past it, registrations return a sink that
 * accepts updates but is never rendered (one error line is logged), so a
 * runaway label cardinality cannot grow memory without bound. */
#define WY_METRICS_MAX_SERIES 10000

/* Default latency buckets in seconds (100 us .. 10 s, 16 bounds). */
extern const double wy_metrics_latency_buckets[];
extern const size_t wy_metrics_latency_nbuckets;

/* ---- Timed operations: one latency API for every layer ----
 *
 * A timed-operation family is one duration histogram `<name>` (name ends in
 * _seconds) with one label (`route`, `type`, `method`) plus one counter
 * `<name without _seconds>_total` with the same label and `outcome`:
 *
 *   wy_auth_http_request_seconds_bucket{route="POST /v1/login",le="0.005"} 12
 *   wy_auth_http_request_total{route="POST /v1/login",outcome="client_error"} 3
 *
 * Outcomes are three classes, not status codes, so every layer (HTTP, WebSocket,
 * gRPC) reads the same on a dashboard and the series count stays fixed:
 * ok, client_error (the caller's fault: HTTP 4xx, gRPC INVALID_ARGUMENT...),
 * server_error (ours: HTTP 5xx, gRPC INTERNAL/UNAVAILABLE...). All three
 * counters exist from the first observation of a label value (they read 0),
 * so rate() and ratios work without absent series.
 *
 * Buckets are wy_metrics_latency_buckets (100 us .. 10 s).
 *
 * Cost: wy_metrics_op() finds a label value by a scan of the family's values
 * (string compares, no formatting, no allocation) after its first use; a
 * caller that knows its values up front (a route table, a gRPC method table)
 * keeps the wy_op_t pointer and observing is then a few atomic adds.
 * A family holds at most WY_METRICS_OP_MAX_VALUES label values; later values
 * are all counted under "other" (one warning logged), so a type name that
 * came from outside cannot grow the registry.
 *
 * Threads: families and values are registered under the registry lock and
 * never move; lookups of known values and observations are lock-free and may
 * come from any thread. Pointers live until wy_metrics_reset. */

typedef enum {
    WY_OUTCOME_OK = 0,
    WY_OUTCOME_CLIENT_ERROR,
    WY_OUTCOME_SERVER_ERROR,
} wy_outcome_t;
#define WY_OUTCOME_COUNT 3

typedef struct wy_op_family wy_op_family_t;
typedef struct wy_op wy_op_t;

#define WY_METRICS_OP_MAX_VALUES 64

/* The process's service ("auth"), used by libs/common to name the metrics it
 * registers on its own (HTTP routes, WebSocket messages, gRPC methods).
 * wy_daemon_main sets it; copied; NULL or "" clears it. */
void wy_metrics_set_service(const char *svc);

/* "wy_<svc>_<what>", or "wy_<what>" when no service is set. Returns a new
 * string; caller frees. */
char *wy_metrics_svc_name(const char *what);

/* Registers (or finds) the family `name` (must end in _seconds) with label
 * name `label` (snake_case; not "outcome"). help is required the first time.
 * Strings are copied. Bugs (bad names, same name with another label) abort. */
wy_op_family_t *wy_metrics_op_family(const char *name, const char *help, const char *label);

/* The series of one label value (any UTF-8; escaped for the exposition),
 * registered on first use. Never NULL. */
wy_op_t *wy_metrics_op(wy_op_family_t *f, const char *value);

/* Records one operation of `seconds` with its outcome. Any thread. */
void wy_op_observe(wy_op_t *op, double seconds, wy_outcome_t outcome);

/* Records one operation that started at start_ns (wy_now_ns()). Any thread. */
void wy_op_done(wy_op_t *op, uint64_t start_ns, wy_outcome_t outcome);

/* The outcome class of an HTTP status: < 400 ok, 4xx client_error, else
 * server_error. */
wy_outcome_t wy_outcome_http(int status);

/* "ok", "client_error", "server_error". */
const char *wy_outcome_name(wy_outcome_t o);

/* Append the whole registry in Prometheus text format, families grouped,
 * each with # HELP and # TYPE. Families appear in registration order, series
 * in registration order within a family. Histograms render cumulative
 * _bucket{...,le="..."} lines ending with le="+Inf", then _sum and _count.
 * Integral values print without exponent; others in the shortest form that
 * reads back exactly; +Inf, -Inf, NaN as Prometheus spells them. */
void wy_metrics_render(wy_buf_t *out);

/* Drop every metric and operation family (tests, shutdown). Pointers become
 * invalid; the service name stays. */
void wy_metrics_reset(void);

#endif
