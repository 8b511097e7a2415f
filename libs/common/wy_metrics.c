/* wy_metrics — process-global metric registry with lock-free updates and
 * Prometheus text exposition (format 0.0.4). */
#include "wy_metrics.h"
#include "wy_list.h"
#include "wy_log.h"
#include "wy_map.h"

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
    char *labels;           /* normalized `k="v",k2="v2"` (escaped), "" when none */
    wy_list_t node;         /* in the family's series, registration order */
    _Atomic uint64_t value; /* counter/gauge value; histogram sum */
    size_t nbounds;         /* histogram only */
    double *bounds;
    _Atomic uint64_t *buckets; /* nbounds + 1 (last is +Inf), not cumulative */
};

struct family {
    char *name;
    char *help; /* already escaped for the # HELP line */
    kind_t kind;
    wy_list_t series; /* wy_metric_t, registration order */
    wy_list_t node;   /* in fams, registration order */
};

/* Registration and render normally run on the loop thread only; the mutex
 * makes a stray registration from another thread safe rather than a race. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static wy_list_t fams = {&fams, &fams};
static size_t nseries;
/* "name\0labels" -> series, so a lookup on every request stays O(1). */
static wy_map_t *by_key;

/* Past WY_METRICS_MAX_SERIES, registrations get a sink that is updated but
 * never rendered: runaway label cardinality must not grow memory without
 * bound or take the daemon down. */
static double sink_bounds[1] = {0};
static _Atomic uint64_t sink_buckets[2];
static family_t sink_fams[3] = {
    {.name = "wy_sink_total", .help = "", .kind = KIND_COUNTER},
    {.name = "wy_sink", .help = "", .kind = KIND_GAUGE},
    {.name = "wy_sink_hist", .help = "", .kind = KIND_HISTOGRAM},
};
static wy_metric_t sinks[3] = {
    {.fam = &sink_fams[0], .labels = ""},
    {.fam = &sink_fams[1], .labels = ""},
    {.fam = &sink_fams[2], .labels = "", .bounds = sink_bounds, .buckets = sink_buckets},
};
static bool sink_warned;

/* A timed-operation family: its label values form an append-only singly linked
 * list that readers walk without the lock (a node is published with a release
 * store of the head and never changes or moves until wy_metrics_reset). Not a
 * wy_list: that one is for lists with one owner thread. */
struct wy_op {
    char *value;
    wy_metric_t *hist;
    wy_metric_t *outcome[WY_OUTCOME_COUNT];
    wy_op_t *next;
};

struct wy_op_family {
    char *name;   /* the histogram */
    char *counts; /* <name without _seconds>_total */
    char *label;
    char *help, *chelp;     /* for the histogram and the counter */
    _Atomic(wy_op_t *) ops; /* newest first */
    size_t nops;            /* under reg_mu */
    wy_op_t *other;         /* past WY_METRICS_OP_MAX_VALUES */
    wy_list_t node;         /* in op_fams */
};

static wy_list_t op_fams = {&op_fams, &op_fams};
static char *service;

static const char *outcome_names[WY_OUTCOME_COUNT] = {"ok", "client_error", "server_error"};

const double wy_metrics_latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                             0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                             1,      2.5,     5,      10};
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
    while (!atomic_compare_exchange_weak_explicit(a, &old, d2u(u2d(old) + v), memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

static _Noreturn void bug(const char *what, const char *name)
{
    fprintf(stderr, "wy_metrics: %s: \"%s\" (a bug in the caller)\n", what, name ? name : "");
    abort();
}

/* Metric and label names: snake_case [a-z_][a-z0-9_]*. Prometheus allows
 * more (upper case, ':'), but promtool's linter flags camelCase and colons
 * (reserved for recording rules), so ours never use them. */
static bool valid_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
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

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Appends s escaped for the exposition format: backslash and newline always,
 * the double quote inside label values. Invalid UTF-8 becomes U+FFFD:
 * Prometheus rejects a whole scrape on one bad byte, and label values may
 * carry text that came from outside. */
static void put_escaped(wy_buf_t *out, const char *s, size_t n, bool quote)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] == '\\') {
            wy_buf_puts(out, "\\\\");
            i++;
        } else if (u[i] == '\n') {
            wy_buf_puts(out, "\\n");
            i++;
        } else if (quote && u[i] == '"') {
            wy_buf_puts(out, "\\\"");
            i++;
        } else {
            size_t len = utf8_seq(u + i, n - i);
            if (len) {
                wy_buf_append(out, s + i, len);
                i += len;
            } else {
                wy_buf_puts(out, "\xef\xbf\xbd");
                i++;
            }
        }
    }
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
    wy_buf_t val = WY_BUF_INIT;
    while (*p == ' ')
        p++;
    while (*p) {
        const char *k = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        size_t kn = (size_t)(p - k);
        while (*p == ' ')
            p++;
        if (!valid_name(k, kn) || *p != '=' || p[1] != '"')
            bug("malformed label set", labels);
        if ((kn == 2 && memcmp(k, "le", 2) == 0) || (kn == 8 && memcmp(k, "quantile", 8) == 0) ||
            (kn >= 2 && memcmp(k, "__", 2) == 0))
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
        /* Unescape into val, then escape once on the way out. */
        wy_buf_reset(&val);
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
            wy_buf_putc(&val, c);
        }
        put_escaped(&out, val.data ? val.data : "", val.len, true);
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
    wy_buf_free(&val);
    return wy_buf_steal(&out, NULL);
}

static wy_metric_t *sink(kind_t kind, const char *name)
{
    if (!sink_warned) {
        sink_warned = true;
        char lim[24];
        snprintf(lim, sizeof lim, "%d", WY_METRICS_MAX_SERIES);
        wy_log_error("metrics series limit reached; new series are dropped", "name", name, "limit",
                     lim, (const char *)NULL);
    }
    return &sinks[kind];
}

/* The registry key of a series: name, a NUL (no name contains one), labels. Caller frees. */
static char *series_key(const char *name, const char *labels, size_t *len)
{
    size_t n = strlen(name), l = strlen(labels);
    char *k = wy_malloc(n + 1 + l);
    memcpy(k, name, n + 1);
    memcpy(k + n + 1, labels, l);
    *len = n + 1 + l;
    return k;
}

/* Names that promtool's linter rejects are bugs caught at registration, so a
 * daemon never serves a registry that fails `promtool check metrics`. */
static void check_name(kind_t kind, const char *name)
{
    if (!name || !valid_name(name, strlen(name)))
        bug("invalid metric name (want snake_case [a-z_][a-z0-9_]*)", name);
    if (kind == KIND_COUNTER && !ends_with(name, "_total"))
        bug("counter name must end in _total", name);
    if (kind != KIND_COUNTER && ends_with(name, "_total"))
        bug("only counter names end in _total", name);
    if (kind != KIND_HISTOGRAM &&
        (ends_with(name, "_bucket") || ends_with(name, "_count") || ends_with(name, "_sum")))
        bug("_bucket, _count and _sum are reserved for histogram series", name);
}

static wy_metric_t *reg(kind_t kind, const char *name, const char *help, const char *labels,
                        const double *bounds, size_t nbounds)
{
    check_name(kind, name);
    if (kind == KIND_HISTOGRAM) {
        if (nbounds && !bounds)
            bug("histogram bounds missing", name);
        for (size_t i = 0; i < nbounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                bug("histogram bounds must be finite and strictly ascending", name);
        }
    }
    char *norm = normalize_labels(labels, name);
    size_t klen;
    char *key = series_key(name, norm, &klen);

    pthread_mutex_lock(&reg_mu);
    if (!by_key)
        by_key = wy_map_new(0);
    wy_metric_t *found = wy_map_get(by_key, key, klen);
    if (found) {
        pthread_mutex_unlock(&reg_mu);
        wy_free(norm);
        wy_free(key);
        if (found->fam->kind != kind)
            bug("metric registered again with another type", name);
        return found;
    }
    /* A new series: rare, so a scan for its family is fine. */
    family_t *f = NULL;
    wy_list_t *pos;
    wy_list_foreach(pos, &fams)
    {
        family_t *x = wy_container_of(pos, family_t, node);
        if (strcmp(x->name, name) == 0) {
            f = x;
            break;
        }
    }
    if (f && f->kind != kind) {
        pthread_mutex_unlock(&reg_mu);
        bug("metric registered again with another type", name);
    }
    if (nseries >= WY_METRICS_MAX_SERIES) {
        wy_metric_t *s = sink(kind, name);
        pthread_mutex_unlock(&reg_mu);
        wy_free(norm);
        wy_free(key);
        return s;
    }
    if (!f) {
        if (!help || !*help) {
            pthread_mutex_unlock(&reg_mu);
            bug("a new metric needs a help text", name);
        }
        wy_buf_t hb = WY_BUF_INIT;
        put_escaped(&hb, help, strlen(help), false);
        f = wy_calloc(1, sizeof *f);
        f->name = wy_strdup(name);
        f->help = wy_buf_steal(&hb, NULL);
        f->kind = kind;
        wy_list_init(&f->series);
        wy_list_push_back(&fams, &f->node);
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
    wy_list_push_back(&f->series, &m->node);
    /* The map has no bound: only a key over WY_MAP_MAX_KEY can fail. */
    if (wy_map_put(by_key, key, klen, m) != WY_OK) {
        pthread_mutex_unlock(&reg_mu);
        bug("metric name and labels too long", name);
    }
    wy_free(key);
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

/* ---------------------------------------------------------------- timed operations */

void wy_metrics_set_service(const char *svc)
{
    pthread_mutex_lock(&reg_mu);
    wy_free(service);
    service = svc && *svc ? wy_strdup(svc) : NULL;
    pthread_mutex_unlock(&reg_mu);
}

char *wy_metrics_svc_name(const char *what)
{
    pthread_mutex_lock(&reg_mu);
    char *s = service ? wy_sprintf("wy_%s_%s", service, what) : wy_sprintf("wy_%s", what);
    pthread_mutex_unlock(&reg_mu);
    return s;
}

wy_op_family_t *wy_metrics_op_family(const char *name, const char *help, const char *label)
{
    check_name(KIND_HISTOGRAM, name);
    if (!ends_with(name, "_seconds"))
        bug("an operation family name must end in _seconds", name);
    if (!label || !valid_name(label, strlen(label)) || !strcmp(label, "outcome") ||
        !strcmp(label, "le") || !strcmp(label, "quantile") || !strncmp(label, "__", 2))
        bug("invalid operation label name", label);
    pthread_mutex_lock(&reg_mu);
    wy_list_t *pos;
    wy_list_foreach(pos, &op_fams)
    {
        wy_op_family_t *f = wy_container_of(pos, wy_op_family_t, node);
        if (strcmp(f->name, name) == 0) {
            pthread_mutex_unlock(&reg_mu);
            if (strcmp(f->label, label) != 0)
                bug("operation family registered again with another label", name);
            return f;
        }
    }
    if (!help || !*help) {
        pthread_mutex_unlock(&reg_mu);
        bug("a new metric needs a help text", name);
    }
    wy_op_family_t *f = wy_calloc(1, sizeof *f);
    f->name = wy_strdup(name);
    size_t base = strlen(name) - strlen("_seconds");
    f->counts = wy_sprintf("%.*s_total", (int)base, name);
    f->label = wy_strdup(label);
    f->help = wy_strdup(help);
    f->chelp = wy_sprintf("Operations counted in %s, by %s and outcome.", name, label);
    atomic_init(&f->ops, NULL);
    wy_list_push_back(&op_fams, &f->node);
    pthread_mutex_unlock(&reg_mu);
    return f;
}

static wy_op_t *op_find(wy_op_family_t *f, const char *value)
{
    for (wy_op_t *op = atomic_load_explicit(&f->ops, memory_order_acquire); op; op = op->next) {
        if (strcmp(op->value, value) == 0)
            return op;
    }
    return NULL;
}

/* Registers the series of one label value; the caller holds no lock. */
static wy_op_t *op_new(wy_op_family_t *f, const char *value)
{
    wy_buf_t lb = WY_BUF_INIT;
    wy_buf_printf(&lb, "%s=\"", f->label);
    for (const char *p = value; *p; p++) {
        if (*p == '"' || *p == '\\')
            wy_buf_putc(&lb, '\\');
        if (*p == '\n')
            wy_buf_puts(&lb, "\\n");
        else
            wy_buf_putc(&lb, *p);
    }
    wy_buf_putc(&lb, '"');
    wy_op_t *op = wy_calloc(1, sizeof *op);
    op->value = wy_strdup(value);
    op->hist = wy_metrics_histogram(f->name, f->help, lb.data, wy_metrics_latency_buckets,
                                    wy_metrics_latency_nbuckets);
    for (int i = 0; i < WY_OUTCOME_COUNT; i++) {
        char *l = wy_sprintf("%s,outcome=\"%s\"", lb.data, outcome_names[i]);
        op->outcome[i] = wy_metrics_counter(f->counts, f->chelp, l);
        wy_free(l);
    }
    wy_buf_free(&lb);
    return op;
}

wy_op_t *wy_metrics_op(wy_op_family_t *f, const char *value)
{
    if (!value)
        value = "";
    wy_op_t *op = op_find(f, value);
    if (op)
        return op;
    pthread_mutex_lock(&reg_mu);
    /* Another thread may have added it meanwhile. */
    op = op_find(f, value);
    if (op) {
        pthread_mutex_unlock(&reg_mu);
        return op;
    }
    if (f->nops >= WY_METRICS_OP_MAX_VALUES) {
        wy_op_t *o = f->other;
        pthread_mutex_unlock(&reg_mu);
        if (o)
            return o;
        /* The first value past the cap: register "other" outside the lock (it takes it). */
        o = op_new(f, "other");
        wy_op_t *dup = NULL;
        pthread_mutex_lock(&reg_mu);
        if (f->other) {
            dup = o; /* another thread won: the same series, registered twice */
            o = f->other;
        } else {
            f->other = o;
        }
        pthread_mutex_unlock(&reg_mu);
        if (dup) {
            wy_free(dup->value);
            wy_free(dup);
        } else {
            wy_log_warn("too many label values for an operation family; counting the rest "
                        "as other",
                        "name", f->name, "value", value, (const char *)NULL);
        }
        return o;
    }
    f->nops++; /* reserve the slot; the series are registered outside the lock */
    pthread_mutex_unlock(&reg_mu);
    wy_op_t *n = op_new(f, value);
    pthread_mutex_lock(&reg_mu);
    op = op_find(f, value);
    if (op) {
        f->nops--;
        pthread_mutex_unlock(&reg_mu);
        wy_free(n->value);
        wy_free(n);
        return op;
    }
    n->next = atomic_load_explicit(&f->ops, memory_order_relaxed);
    atomic_store_explicit(&f->ops, n, memory_order_release);
    pthread_mutex_unlock(&reg_mu);
    return n;
}

void wy_op_observe(wy_op_t *op, double seconds, wy_outcome_t outcome)
{
    if ((unsigned)outcome >= WY_OUTCOME_COUNT)
        outcome = WY_OUTCOME_SERVER_ERROR;
    wy_metric_observe(op->hist, seconds);
    wy_metric_inc(op->outcome[outcome]);
}

void wy_op_done(wy_op_t *op, uint64_t start_ns, wy_outcome_t outcome)
{
    uint64_t now = wy_now_ns();
    wy_op_observe(op, now > start_ns ? (double)(now - start_ns) / 1e9 : 0.0, outcome);
}

wy_outcome_t wy_outcome_http(int status)
{
    if (status < 400)
        return WY_OUTCOME_OK;
    return status < 500 ? WY_OUTCOME_CLIENT_ERROR : WY_OUTCOME_SERVER_ERROR;
}

const char *wy_outcome_name(wy_outcome_t o)
{
    return (unsigned)o < WY_OUTCOME_COUNT ? outcome_names[o] : "server_error";
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
    wy_list_t *fp, *mp;
    wy_list_foreach(fp, &fams)
    {
        family_t *f = wy_container_of(fp, family_t, node);
        wy_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                      kind_names[f->kind]);
        wy_list_foreach(mp, &f->series)
        {
            wy_metric_t *m = wy_container_of(mp, wy_metric_t, node);
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
    wy_list_t *fp;
    while ((fp = wy_list_pop_front(&fams)) != NULL) {
        family_t *f = wy_container_of(fp, family_t, node);
        wy_list_t *mp;
        while ((mp = wy_list_pop_front(&f->series)) != NULL) {
            wy_metric_t *m = wy_container_of(mp, wy_metric_t, node);
            wy_free(m->labels);
            wy_free(m->bounds);
            wy_free(m->buckets);
            wy_free(m);
        }
        wy_free(f->name);
        wy_free(f->help);
        wy_free(f);
    }
    wy_list_t *op_node;
    while ((op_node = wy_list_pop_front(&op_fams)) != NULL) {
        wy_op_family_t *of = wy_container_of(op_node, wy_op_family_t, node);
        wy_op_t *op = atomic_load_explicit(&of->ops, memory_order_relaxed);
        if (of->other) {
            of->other->next = op;
            op = of->other;
        }
        while (op) {
            wy_op_t *on = op->next;
            wy_free(op->value);
            wy_free(op);
            op = on;
        }
        wy_free(of->name);
        wy_free(of->counts);
        wy_free(of->label);
        wy_free(of->help);
        wy_free(of->chelp);
        wy_free(of);
    }
    wy_map_free(by_key);
    by_key = NULL;
    nseries = 0;
    sink_warned = false;
    pthread_mutex_unlock(&reg_mu);
}
