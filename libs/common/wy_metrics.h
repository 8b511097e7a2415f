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

/* Default latency buckets in seconds (0.5 ms .. 10 s). */
extern const double wy_metrics_latency_buckets[];
extern const size_t wy_metrics_latency_nbuckets;

/* Append the whole registry in Prometheus text format, families grouped,
 * each with # HELP and # TYPE. Families appear in registration order, series
 * in registration order within a family. Histograms render cumulative
 * _bucket{...,le="..."} lines ending with le="+Inf", then _sum and _count.
 * Integral values print without exponent; others in the shortest form that
 * reads back exactly; +Inf, -Inf, NaN as Prometheus spells them. */
void wy_metrics_render(wy_buf_t *out);

/* Drop every metric (tests, shutdown). Pointers become invalid. */
void wy_metrics_reset(void);

#endif
