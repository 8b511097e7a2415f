/* wy_metrics — process-global metric registry with lock-free updates and
 * Prometheus text exposition (format 0.0.4). */
#include "wy_metrics.h"
#include "wy_log.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind_t;

static const char *kind_names[] = {"counter", "gauge", "histogram"};

typedef struct family family_t;

/* Doubles live in atomic uint64 bit patterns: C11 has no portable atomic
 * double add, and a CAS loop on the bits is lock-free everywhere we run. */
struct wy_metric {
    family_t *fam;
    char *labels; /* normalized `k="v",k2="v2"` (escaped), "" when none */
    wy_metric_t *next;
    _Atomic uint64_t value; /* counter/gauge value; histogram sum */
    size_t nbounds;         /* histogram only */
    double *bounds;
    _Atomic uint64_t *buckets; /* nbounds + 1 (last is +Inf), not cumulative */
};

struct family {
    char *name;
    char *help;
    kind_t kind;
    wy_metric_t *first, *last;
    family_t *next;
};

/* Registration and render normally run on the loop thread only; the mutex
 * makes a stray registration from another thread safe rather than a race. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static family_t *fam_first, *fam_last;
static size_t nseries;

/* Past WY_METRICS_MAX_SERIES, registrations get a sink that is updated but
 * never rendered: runaway label cardinality must not grow memory without
 * bound or take the daemon down. */
static double sink_bounds[1] = {0};
static _Atomic uint64_t sink_buckets[2];
static family_t sink_fams[3] = {
    {"wy_sink_total", "", KIND_COUNTER, NULL, NULL, NULL},
    {"wy_sink", "", KIND_GAUGE, NULL, NULL, NULL},
    {"wy_sink_hist", "", KIND_HISTOGRAM, NULL, NULL, NULL},
};
static wy_metric_t sinks[3] = {
    {&sink_fams[0], "", NULL, 0, 0, NULL, NULL},
    {&sink_fams[1], "", NULL, 0, 0, NULL, NULL},
    {&sink_fams[2], "", NULL, 0, 0, sink_bounds, sink_buckets},
};
static bool sink_warned;

const double wy_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                             0.025,  0.05,  0.1,    0.25,  0.5,
                                             1,      2.5,   5,      10};
const size_t wy_metrics_latency_nbuckets = WY_ARRAY_LEN(wy_metrics_latency_buckets);

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, d2u(u2d(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

static _Noreturn void bug(const char *what, const char *name)
{
    fprintf(stderr, "wy_metrics: %s: \"%s\" (a bug in the caller)\n", what, name ? name : "");
    abort();
}

/* Metric and label names: [a-zA-Z_:][a-zA-Z0-9_:]* (labels without ':'). */
static bool valid_name(const char *s, size_t n, bool colon)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && memcmp(s + n - m, suf, m) == 0;
}

/* Parses `k="v",k2="v2"` (exposition syntax, optional spaces after commas,
 * a trailing comma allowed) and re-emits it normalized and escaped, so two
 * spellings of one label set are one series. Malformed text aborts: label sets
 * are written by our own code. */
static char *normalize_labels(const char *labels, const char *metric)
{
    wy_buf_t out = WY_BUF_INIT;
    wy_buf_puts(&out, "");
    if (!labels)
        return wy_buf_steal(&out, NULL);
    const char *p = labels;
    /* Label names seen so far, to reject duplicates. */
    char *seen[64];
    size_t nseen = 0;
    while (*p == ' ')
        p++;
    while (*p) {
        const char *k = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        size_t kn = (size_t)(p - k);
        while (*p == ' ')
            p++;
        if (!valid_name(k, kn, false) || *p != '=' || p[1] != '"')
            bug("malformed label set", labels);
        if ((kn == 2 && memcmp(k, "le", 2) == 0) || (kn >= 2 && memcmp(k, "__", 2) == 0))
            bug("reserved label name", labels);
        for (size_t i = 0; i < nseen; i++) {
            if (strlen(seen[i]) == kn && memcmp(seen[i], k, kn) == 0)
                bug("duplicate label name", labels);
        }
        if (nseen == WY_ARRAY_LEN(seen))
            bug("too many labels", metric);
        seen[nseen++] = wy_strndup(k, kn);
        p += 2;
        if (out.len)
            wy_buf_putc(&out, ',');
        wy_buf_append(&out, k, kn);
        wy_buf_puts(&out, "=\"");
        for (;;) {
            char c = *p;
            if (c == '\0')
                bug("unterminated label value", labels);
            p++;
            if (c == '"')
                break;
            if (c == '\\') {
                char e = *p;
                if (e == '\\' || e == '"')
                    c = e, p++;
                else if (e == 'n')
                    c = '\n', p++;
            }
            if (c == '\\')
                wy_buf_puts(&out, "\\\\");
            else if (c == '"')
                wy_buf_puts(&out, "\\\"");
            else if (c == '\n')
                wy_buf_puts(&out, "\\n");
            else
                wy_buf_putc(&out, c);
        }
        wy_buf_putc(&out, '"');
        while (*p == ' ')
            p++;
        if (*p == ',') {
            p++;
            while (*p == ' ')
                p++;
        } else if (*p) {
            bug("malformed label set", labels);
        }
    }
    for (size_t i = 0; i < nseen; i++)
        wy_free(seen[i]);
    return wy_buf_steal(&out, NULL);
}

static wy_metric_t *sink(kind_t kind, const char *name)
{
    if (!sink_warned) {
        sink_warned = true;
        char lim[24];
        snprintf(lim, sizeof lim, "%d", WY_METRICS_MAX_SERIES);
        wy_log_error("metrics series limit reached; new series are dropped", "name", name,
                     "limit", lim, NULL);
    }
    return &sinks[kind];
}

static wy_metric_t *reg(kind_t kind, const char *name, const char *help, const char *labels,
                        const double *bounds, size_t nbounds)
{
    if (!name || !valid_name(name, strlen(name), true))
        bug("invalid metric name", name);
    if (kind == KIND_COUNTER && !ends_with(name, "_total"))
        bug("counter name must end in _total", name);
    if (kind == KIND_HISTOGRAM) {
        for (size_t i = 0; i < nbounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                bug("histogram bounds must be finite and strictly ascending", name);
        }
    }
    char *norm = normalize_labels(labels, name);

    pthread_mutex_lock(&reg_mu);
    family_t *f = fam_first;
    while (f && strcmp(f->name, name) != 0)
        f = f->next;
    if (f && f->kind != kind) {
        pthread_mutex_unlock(&reg_mu);
        bug("metric registered again with another type", name);
    }
    if (f) {
        for (wy_metric_t *m = f->first; m; m = m->next) {
            if (strcmp(m->labels, norm) == 0) {
                pthread_mutex_unlock(&reg_mu);
                wy_free(norm);
                return m;
            }
        }
    }
    if (nseries >= WY_METRICS_MAX_SERIES) {
        wy_metric_t *s = sink(kind, name);
        pthread_mutex_unlock(&reg_mu);
        wy_free(norm);
        return s;
    }
    if (!f) {
        f = wy_calloc(1, sizeof *f);
        f->name = wy_strdup(name);
        f->help = wy_strdup(help ? help : "");
        f->kind = kind;
        if (fam_last)
            fam_last->next = f;
        else
            fam_first = f;
        fam_last = f;
    }
    wy_metric_t *m = wy_calloc(1, sizeof *m);
    m->fam = f;
    m->labels = norm;
    atomic_init(&m->value, d2u(0.0));
    if (kind == KIND_HISTOGRAM) {
        m->nbounds = nbounds;
        m->bounds = wy_malloc((nbounds ? nbounds : 1) * sizeof *m->bounds);
        if (nbounds)
            memcpy(m->bounds, bounds, nbounds * sizeof *bounds);
        m->buckets = wy_calloc(nbounds + 1, sizeof *m->buckets);
        for (size_t i = 0; i <= nbounds; i++)
            atomic_init(&m->buckets[i], 0);
    }
    if (f->last)
        f->last->next = m;
    else
        f->first = m;
    f->last = m;
    nseries++;
    pthread_mutex_unlock(&reg_mu);
    return m;
}

wy_metric_t *wy_metrics_counter(const char *name, const char *help, const char *labels)
{
    return reg(KIND_COUNTER, name, help, labels, NULL, 0);
}

wy_metric_t *wy_metrics_gauge(const char *name, const char *help, const char *labels)
{
    return reg(KIND_GAUGE, name, help, labels, NULL, 0);
}

wy_metric_t *wy_metrics_histogram(const char *name, const char *help, const char *labels,
                                  const double *bounds, size_t nbounds)
{
    return reg(KIND_HISTOGRAM, name, help, labels, bounds, nbounds);
}

void wy_metric_inc(wy_metric_t *m)
{
    wy_metric_add(m, 1.0);
}

void wy_metric_add(wy_metric_t *m, double v)
{
    if (m->fam->kind == KIND_HISTOGRAM)
        bug("add on a histogram", m->fam->name);
    /* A counter only goes up; a negative or NaN delta is dropped rather than
     * breaking rate() for every dashboard. */
    if (m->fam->kind == KIND_COUNTER && !(v >= 0))
        return;
    atomic_add_double(&m->value, v);
}

void wy_metric_set(wy_metric_t *m, double v)
{
    if (m->fam->kind != KIND_GAUGE)
        bug("set on a metric that is not a gauge", m->fam->name);
    atomic_store_explicit(&m->value, d2u(v), memory_order_relaxed);
}

void wy_metric_observe(wy_metric_t *m, double v)
{
    if (m->fam->kind != KIND_HISTOGRAM)
        bug("observe on a metric that is not a histogram", m->fam->name);
    /* le is inclusive; NaN compares false everywhere and lands in +Inf. */
    size_t lo = 0, hi = m->nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= m->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&m->buckets[lo], 1, memory_order_relaxed);
    atomic_add_double(&m->value, v);
}

static uint64_t hist_count(const wy_metric_t *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= m->nbounds; i++)
        n += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
    return n;
}

double wy_metric_value(const wy_metric_t *m)
{
    if (m->fam->kind == KIND_HISTOGRAM)
        return (double)hist_count(m);
    return u2d(atomic_load_explicit(&m->value, memory_order_relaxed));
}

/* Integral values print without exponent or fraction; others in the shortest
 * form that reads back to the same double, so le="0.1" stays "0.1". */
static void fmt_num(char *out, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(out, n, "NaN");
    } else if (isinf(v)) {
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, n, "%.0f", v == 0 ? 0.0 : v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, n, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                return;
        }
    }
}

static void put_help(wy_buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            wy_buf_puts(out, "\\\\");
        else if (*s == '\n')
            wy_buf_puts(out, "\\n");
        else
            wy_buf_putc(out, *s);
    }
}

/* name{labels[,extra]} value\n */
static void put_sample(wy_buf_t *out, const char *name, const char *suffix, const char *labels,
                       const char *extra, const char *value)
{
    wy_buf_puts(out, name);
    wy_buf_puts(out, suffix);
    if (*labels || extra) {
        wy_buf_putc(out, '{');
        wy_buf_puts(out, labels);
        if (*labels && extra)
            wy_buf_putc(out, ',');
        if (extra)
            wy_buf_puts(out, extra);
        wy_buf_putc(out, '}');
    }
    wy_buf_putc(out, ' ');
    wy_buf_puts(out, value);
    wy_buf_putc(out, '\n');
}

void wy_metrics_render(wy_buf_t *out)
{
    char num[64], le[80];
    pthread_mutex_lock(&reg_mu);
    for (family_t *f = fam_first; f; f = f->next) {
        wy_buf_printf(out, "# HELP %s ", f->name);
        put_help(out, f->help);
        wy_buf_printf(out, "\n# TYPE %s %s\n", f->name, kind_names[f->kind]);
        for (wy_metric_t *m = f->first; m; m = m->next) {
            if (f->kind != KIND_HISTOGRAM) {
                fmt_num(num, sizeof num, wy_metric_value(m));
                put_sample(out, f->name, "", m->labels, NULL, num);
                continue;
            }
            /* Read each bucket once and derive _count from the same reads, so
             * +Inf and _count agree even while other threads observe. */
            uint64_t cum = 0;
            for (size_t i = 0; i <= m->nbounds; i++) {
                cum += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
                if (i < m->nbounds) {
                    fmt_num(num, sizeof num, m->bounds[i]);
                    snprintf(le, sizeof le, "le=\"%s\"", num);
                } else {
                    snprintf(le, sizeof le, "le=\"+Inf\"");
                }
                snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
                put_sample(out, f->name, "_bucket", m->labels, le, num);
            }
            fmt_num(num, sizeof num, u2d(atomic_load_explicit(&m->value, memory_order_relaxed)));
            put_sample(out, f->name, "_sum", m->labels, NULL, num);
            snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
            put_sample(out, f->name, "_count", m->labels, NULL, num);
        }
    }
    pthread_mutex_unlock(&reg_mu);
}

void wy_metrics_reset(void)
{
    pthread_mutex_lock(&reg_mu);
    family_t *f = fam_first;
    while (f) {
        family_t *fn = f->next;
        wy_metric_t *m = f->first;
        while (m) {
            wy_metric_t *mn = m->next;
            wy_free(m->labels);
            wy_free(m->bounds);
            wy_free(m->buckets);
            wy_free(m);
            m = mn;
        }
        wy_free(f->name);
        wy_free(f->help);
        wy_free(f);
        f = fn;
    }
    fam_first = fam_last = NULL;
    nseries = 0;
    sink_warned = false;
    pthread_mutex_unlock(&reg_mu);
}
