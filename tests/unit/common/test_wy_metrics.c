/* Unit tests for wy_metrics: exact exposition text, escaping, number format,
 * concurrent updates, bug aborts, the series cap, and promtool validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "wy_test.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wy_metrics.h"

#define PROMTOOL "/usr/bin/promtool"

static int teardown(void **state)
{
    (void)state;
    wy_metrics_reset();
    return 0;
}

/* Renders the registry into a new string; caller frees. */
static char *render(void)
{
    wy_buf_t b = WY_BUF_INIT;
    wy_metrics_render(&b);
    return wy_buf_steal(&b, NULL);
}

static void assert_render(const char *want)
{
    char *got = render();
    if (strcmp(got, want) != 0)
        fail_msg("render mismatch\n--- want\n%s--- got\n%s", want, got);
    wy_free(got);
}

static void test_empty(void **state)
{
    (void)state;
    assert_render("");
}

static void test_counter_gauge_plain(void **state)
{
    (void)state;
    wy_metric_t *c = wy_metrics_counter("wy_test_requests_total", "Requests served.", NULL);
    wy_metric_t *g = wy_metrics_gauge("wy_test_sessions", "Live sessions.", NULL);
    assert_render("# HELP wy_test_requests_total Requests served.\n"
                  "# TYPE wy_test_requests_total counter\n"
                  "wy_test_requests_total 0\n"
                  "# HELP wy_test_sessions Live sessions.\n"
                  "# TYPE wy_test_sessions gauge\n"
                  "wy_test_sessions 0\n");
    wy_metric_inc(c);
    wy_metric_add(c, 2);
    wy_metric_add(c, -5);  /* dropped: counters only go up */
    wy_metric_add(c, NAN); /* dropped */
    wy_metric_set(g, 10);
    wy_metric_inc(g);
    wy_metric_add(g, -3.5);
    assert_true(wy_metric_value(c) == 3);
    assert_true(wy_metric_value(g) == 7.5);
    assert_render("# HELP wy_test_requests_total Requests served.\n"
                  "# TYPE wy_test_requests_total counter\n"
                  "wy_test_requests_total 3\n"
                  "# HELP wy_test_sessions Live sessions.\n"
                  "# TYPE wy_test_sessions gauge\n"
                  "wy_test_sessions 7.5\n");
}

static void test_labels_grouped_by_family(void **state)
{
    (void)state;
    wy_metric_t *get =
        wy_metrics_counter("wy_test_http_total", "HTTP requests.", "method=\"GET\",code=\"200\"");
    wy_metric_t *g = wy_metrics_gauge("wy_test_conns", "Connections.", "kind=\"ws\"");
    wy_metric_t *post =
        wy_metrics_counter("wy_test_http_total", "ignored", "method=\"POST\", code=\"500\"");
    /* Same name + same labels (another spelling) is the same series. */
    assert_ptr_equal(wy_metrics_counter("wy_test_http_total", "x", "method=\"GET\", code=\"200\""),
                     get);
    assert_ptr_not_equal(get, post);
    wy_metric_inc(get);
    wy_metric_inc(get);
    wy_metric_inc(post);
    wy_metric_set(g, -2);
    assert_render("# HELP wy_test_http_total HTTP requests.\n"
                  "# TYPE wy_test_http_total counter\n"
                  "wy_test_http_total{method=\"GET\",code=\"200\"} 2\n"
                  "wy_test_http_total{method=\"POST\",code=\"500\"} 1\n"
                  "# HELP wy_test_conns Connections.\n"
                  "# TYPE wy_test_conns gauge\n"
                  "wy_test_conns{kind=\"ws\"} -2\n");
}

static void test_histogram(void **state)
{
    (void)state;
    const double b[] = {0.1, 0.5, 1};
    wy_metric_t *h = wy_metrics_histogram("wy_test_rpc_seconds", "RPC latency.", NULL, b, 3);
    wy_metric_t *hl =
        wy_metrics_histogram("wy_test_rpc_seconds", "RPC latency.", "method=\"GET\"", b, 3);
    wy_metric_observe(h, 0.1); /* le is inclusive */
    wy_metric_observe(h, 0.05);
    wy_metric_observe(h, 0.7);
    wy_metric_observe(h, 3);
    wy_metric_observe(hl, 0.25);
    assert_true(wy_metric_value(h) == 4);
    assert_render("# HELP wy_test_rpc_seconds RPC latency.\n"
                  "# TYPE wy_test_rpc_seconds histogram\n"
                  "wy_test_rpc_seconds_bucket{le=\"0.1\"} 2\n"
                  "wy_test_rpc_seconds_bucket{le=\"0.5\"} 2\n"
                  "wy_test_rpc_seconds_bucket{le=\"1\"} 3\n"
                  "wy_test_rpc_seconds_bucket{le=\"+Inf\"} 4\n"
                  "wy_test_rpc_seconds_sum 3.85\n"
                  "wy_test_rpc_seconds_count 4\n"
                  "wy_test_rpc_seconds_bucket{method=\"GET\",le=\"0.1\"} 0\n"
                  "wy_test_rpc_seconds_bucket{method=\"GET\",le=\"0.5\"} 1\n"
                  "wy_test_rpc_seconds_bucket{method=\"GET\",le=\"1\"} 1\n"
                  "wy_test_rpc_seconds_bucket{method=\"GET\",le=\"+Inf\"} 1\n"
                  "wy_test_rpc_seconds_sum{method=\"GET\"} 0.25\n"
                  "wy_test_rpc_seconds_count{method=\"GET\"} 1\n");
}

static void test_latency_buckets(void **state)
{
    (void)state;
    assert_int_equal(wy_metrics_latency_nbuckets, 16);
    assert_true(wy_metrics_latency_buckets[0] == 0.0001);
    assert_true(wy_metrics_latency_buckets[wy_metrics_latency_nbuckets - 1] == 10);
    for (size_t i = 1; i < wy_metrics_latency_nbuckets; i++)
        assert_true(wy_metrics_latency_buckets[i] > wy_metrics_latency_buckets[i - 1]);
    wy_metric_t *h = wy_metrics_histogram("wy_test_tick_seconds", "Tick.", NULL,
                                          wy_metrics_latency_buckets, wy_metrics_latency_nbuckets);
    wy_metric_observe(h, 0.003);
    char *out = render();
    wt_assert_contains(out, (const char *const[]){"wy_test_tick_seconds_bucket{le=\"0.0001\"} 0\n",
                                                  "wy_test_tick_seconds_bucket{le=\"0.00025\"} 0\n",
                                                  "wy_test_tick_seconds_bucket{le=\"0.0005\"} 0\n",
                                                  "wy_test_tick_seconds_bucket{le=\"0.0025\"} 0\n",
                                                  "wy_test_tick_seconds_bucket{le=\"0.005\"} 1\n",
                                                  "wy_test_tick_seconds_bucket{le=\"2.5\"} 1\n",
                                                  "wy_test_tick_seconds_bucket{le=\"10\"} 1\n",
                                                  "wy_test_tick_seconds_sum 0.003\n", NULL});
    wy_free(out);
}

static void test_number_format(void **state)
{
    (void)state;
    struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {-0.0, "0"},
        {42, "42"},
        {-7, "-7"},
        {1e14, "100000000000000"},
        {0.1, "0.1"},
        {1.0 / 3, "0.3333333333333333"},
        {1e-7, "1e-07"},
        {1e300, "1e+300"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1e15, "1e+15"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {NAN, "NaN"},
    };
    wy_metric_t *g = wy_metrics_gauge("wy_test_value", "V.", NULL);
    for (size_t i = 0; i < WY_ARRAY_LEN(cases); i++) {
        wy_metric_set(g, cases[i].v);
        char *out = render();
        char *want = wy_sprintf("wy_test_value %s\n", cases[i].want);
        if (!strstr(out, want))
            fail_msg("value %.17g: want \"%s\" in\n%s", cases[i].v, cases[i].want, out);
        wy_free(want);
        wy_free(out);
    }
    /* Whatever the form, it reads back to the same double. */
    wy_metric_set(g, 1e-7);
    char *out = render();
    const char *p = strstr(out, "\nwy_test_value ") + strlen("\nwy_test_value ");
    assert_true(strtod(p, NULL) == 1e-7);
    wy_free(out);
}

static void test_escaping(void **state)
{
    (void)state;
    wy_metric_t *g = wy_metrics_gauge("wy_test_esc", "Line one\nback\\slash \"quoted\"",
                                      "path=\"/a\\\"b\\\\c\\nd\"");
    wy_metric_set(g, 1);
    assert_render("# HELP wy_test_esc Line one\\nback\\\\slash \"quoted\"\n"
                  "# TYPE wy_test_esc gauge\n"
                  "wy_test_esc{path=\"/a\\\"b\\\\c\\nd\"} 1\n");
}

static void test_invalid_utf8_replaced(void **state)
{
    (void)state;
    wy_metric_t *g = wy_metrics_gauge("wy_test_utf8", "Caf\xc3\xa9 \xff help",
                                      "name=\"\xc3\xa9\xc0\x80x\xed\xa0\x80\"");
    wy_metric_set(g, 2);
    assert_render("# HELP wy_test_utf8 Caf\xc3\xa9 \xef\xbf\xbd help\n"
                  "# TYPE wy_test_utf8 gauge\n"
                  "wy_test_utf8{name=\"\xc3\xa9\xef\xbf\xbd\xef\xbf\xbdx"
                  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 2\n");
}

/* Runs fn in a child; returns its wait status (SIGABRT marks a caught bug). */
static int run_child(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Keep the expected message out of the test output. */
        if (!freopen("/dev/null", "w", stderr))
            _exit(3);
        fn();
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

static void bug_counter_suffix(void)
{
    wy_metrics_counter("wy_test_requests", "no suffix", NULL);
}
static void bug_type_clash(void)
{
    wy_metrics_gauge("wy_test_x", "X.", NULL);
    wy_metrics_histogram("wy_test_x", "X.", NULL, wy_metrics_latency_buckets, 3);
}
static void bug_type_clash_other_labels(void)
{
    wy_metrics_gauge("wy_test_x", "X.", "a=\"1\"");
    wy_metrics_histogram("wy_test_x", "X.", "a=\"2\"", wy_metrics_latency_buckets, 3);
}
static void bug_bad_name(void)
{
    wy_metrics_gauge("wy-test", "X.", NULL);
}
static void bug_camel_case(void)
{
    wy_metrics_gauge("wy_testValue", "X.", NULL);
}
static void bug_colon(void)
{
    wy_metrics_gauge("wy:test", "X.", NULL);
}
static void bug_gauge_total(void)
{
    wy_metrics_gauge("wy_test_total", "X.", NULL);
}
static void bug_gauge_count(void)
{
    wy_metrics_gauge("wy_test_count", "X.", NULL);
}
static void bug_no_help(void)
{
    wy_metrics_gauge("wy_test_g", NULL, NULL);
}
static void bug_bad_labels(void)
{
    wy_metrics_gauge("wy_test_g", "X.", "method=GET");
}
static void bug_unterminated_label(void)
{
    wy_metrics_gauge("wy_test_g", "X.", "method=\"GET");
}
static void bug_le_label(void)
{
    wy_metrics_histogram("wy_test_h", "X.", "le=\"1\"", wy_metrics_latency_buckets, 3);
}
static void bug_quantile_label(void)
{
    wy_metrics_gauge("wy_test_g", "X.", "quantile=\"1\"");
}
static void bug_dup_label(void)
{
    wy_metrics_gauge("wy_test_g", "X.", "a=\"1\",a=\"2\"");
}
static void bug_unsorted_bounds(void)
{
    const double b[] = {1, 0.5};
    wy_metrics_histogram("wy_test_h", "X.", NULL, b, 2);
}
static void bug_inf_bound(void)
{
    const double b[] = {1, INFINITY};
    wy_metrics_histogram("wy_test_h", "X.", NULL, b, 2);
}
static void bug_set_counter(void)
{
    wy_metric_set(wy_metrics_counter("wy_test_c_total", "X.", NULL), 1);
}
static void bug_observe_gauge(void)
{
    wy_metric_observe(wy_metrics_gauge("wy_test_g", "X.", NULL), 1);
}
static void bug_inc_histogram(void)
{
    wy_metric_inc(wy_metrics_histogram("wy_test_h", "X.", NULL, wy_metrics_latency_buckets, 3));
}
static void fine_registration(void)
{
    /* The control: the same calls done right do not abort. */
    wy_metrics_gauge("wy_test_g", "X.", "a=\"1\"");
    wy_metrics_gauge("wy_test_g", NULL, "a=\"2\"");
    wy_metric_observe(wy_metrics_histogram("wy_test_h", "X.", NULL, wy_metrics_latency_buckets, 3),
                      1);
    wy_metrics_reset();
}

static void test_bugs_abort(void **state)
{
    (void)state;
    void (*bugs[])(void) = {
        bug_counter_suffix, bug_type_clash,         bug_type_clash_other_labels,
        bug_bad_name,       bug_camel_case,         bug_colon,
        bug_gauge_total,    bug_gauge_count,        bug_no_help,
        bug_bad_labels,     bug_unterminated_label, bug_le_label,
        bug_quantile_label, bug_dup_label,          bug_unsorted_bounds,
        bug_inf_bound,      bug_set_counter,        bug_observe_gauge,
        bug_inc_histogram,
    };
    for (size_t i = 0; i < WY_ARRAY_LEN(bugs); i++) {
        int st = run_child(bugs[i]);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
            fail_msg("bug case %zu did not abort (status %d)", i, st);
    }
    int st = run_child(fine_registration);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

#define NTHREADS 4
#define NITER    100000

static wy_metric_t *t_counter, *t_gauge, *t_hist;
static atomic_int t_done;

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < NITER; i++) {
        wy_metric_inc(t_counter);
        wy_metric_add(t_gauge, 0.5);
        wy_metric_observe(t_hist, (i % 2) ? 0.002 : 2.0);
    }
    atomic_fetch_add(&t_done, 1);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    t_counter = wy_metrics_counter("wy_test_ops_total", "Ops.", NULL);
    t_gauge = wy_metrics_gauge("wy_test_level", "Level.", NULL);
    t_hist = wy_metrics_histogram("wy_test_op_seconds", "Op.", NULL, wy_metrics_latency_buckets,
                                  wy_metrics_latency_nbuckets);
    pthread_t th[NTHREADS];
    atomic_store(&t_done, 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
    /* Render while the workers update: every snapshot must be internally
     * consistent (+Inf bucket equals _count, counter never goes back). */
    double last = 0;
    int renders = 0;
    while (atomic_load(&t_done) < NTHREADS || renders == 0) {
        char *out = render();
        unsigned long long inf = 0, count = 0;
        const char *pi = strstr(out, "wy_test_op_seconds_bucket{le=\"+Inf\"} ");
        const char *pc = strstr(out, "wy_test_op_seconds_count ");
        const char *po = strstr(out, "\nwy_test_ops_total ");
        assert_non_null(pi);
        assert_non_null(pc);
        assert_non_null(po);
        inf = strtoull(strchr(pi, '}') + 2, NULL, 10);
        count = strtoull(pc + strlen("wy_test_op_seconds_count "), NULL, 10);
        assert_int_equal(inf, count);
        double now = strtod(po + strlen("\nwy_test_ops_total "), NULL);
        assert_true(now >= last);
        last = now;
        renders++;
        wy_free(out);
    }
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_true(wy_metric_value(t_counter) == NTHREADS * NITER);
    assert_true(wy_metric_value(t_gauge) == NTHREADS * NITER * 0.5);
    assert_true(wy_metric_value(t_hist) == NTHREADS * NITER);
    char *out = render();
    wt_assert_contains(out,
                       (const char *const[]){"wy_test_ops_total 400000\n", "wy_test_level 200000\n",
                                             "wy_test_op_seconds_bucket{le=\"0.0025\"} 200000\n",
                                             "wy_test_op_seconds_bucket{le=\"1\"} 200000\n",
                                             "wy_test_op_seconds_bucket{le=\"2.5\"} 400000\n",
                                             "wy_test_op_seconds_count 400000\n", NULL});
    wy_free(out);
}

static void test_series_cap(void **state)
{
    (void)state;
    char labels[32];
    wy_metric_t *first = NULL;
    for (int i = 0; i < WY_METRICS_MAX_SERIES; i++) {
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        wy_metric_t *m = wy_metrics_counter("wy_test_card_total", "Cardinality.", labels);
        if (!first)
            first = m;
    }
    /* Past the cap the caller still gets a usable metric, but it is not rendered. */
    wy_metric_t *over = wy_metrics_counter("wy_test_card_total", "Cardinality.", "i=\"over\"");
    wy_metric_t *overg = wy_metrics_gauge("wy_test_other", "Other.", NULL);
    wy_metric_inc(over);
    wy_metric_set(overg, 5);
    assert_true(wy_metric_value(overg) == 5);
    /* Existing series are still found. */
    assert_ptr_equal(wy_metrics_counter("wy_test_card_total", "", "i=\"0\""), first);
    char *out = render();
    assert_null(strstr(out, "over"));
    assert_null(strstr(out, "wy_test_other"));
    assert_non_null(strstr(out, "wy_test_card_total{i=\"9999\"} 0\n"));
    wy_free(out);
}

/* The lines of the `le` buckets of a default-bucket histogram series, with
 * the given cumulative counts per bound (16 bounds + Inf). */
static void put_buckets(wy_buf_t *b, const char *name, const char *labels, const int cum[17])
{
    static const char *les[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                "1",      "2.5",     "5",      "10",    "+Inf"};
    for (int i = 0; i < 17; i++)
        wy_buf_printf(b, "%s_bucket{%s,le=\"%s\"} %d\n", name, labels, les[i], cum[i]);
}

static void test_op_family_render(void **state)
{
    (void)state;
    wy_op_family_t *f =
        wy_metrics_op_family("wy_test_http_request_seconds", "Request time by route.", "route");
    assert_ptr_equal(wy_metrics_op_family("wy_test_http_request_seconds", NULL, "route"), f);
    /* Nothing renders before the first label value. */
    assert_render("");
    wy_op_t *login = wy_metrics_op(f, "POST /v1/login");
    assert_ptr_equal(wy_metrics_op(f, "POST /v1/login"), login);
    wy_op_observe(login, 0.003, WY_OUTCOME_OK);
    wy_op_observe(login, 0.2, WY_OUTCOME_CLIENT_ERROR);
    wy_op_observe(login, 20, WY_OUTCOME_SERVER_ERROR);
    wy_op_t *q = wy_metrics_op(f, "GET /a\"b\\c");
    wy_op_observe(q, 0.00005, WY_OUTCOME_OK);

    wy_buf_t want = WY_BUF_INIT;
    wy_buf_puts(&want, "# HELP wy_test_http_request_seconds Request time by route.\n"
                       "# TYPE wy_test_http_request_seconds histogram\n");
    put_buckets(&want, "wy_test_http_request_seconds", "route=\"POST /v1/login\"",
                (const int[17]){0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3});
    wy_buf_puts(&want, "wy_test_http_request_seconds_sum{route=\"POST /v1/login\"} 20.203\n"
                       "wy_test_http_request_seconds_count{route=\"POST /v1/login\"} 3\n");
    put_buckets(&want, "wy_test_http_request_seconds", "route=\"GET /a\\\"b\\\\c\"",
                (const int[17]){1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
    wy_buf_puts(
        &want,
        "wy_test_http_request_seconds_sum{route=\"GET /a\\\"b\\\\c\"} 5e-05\n"
        "wy_test_http_request_seconds_count{route=\"GET /a\\\"b\\\\c\"} 1\n"
        "# HELP wy_test_http_request_total Operations counted in "
        "wy_test_http_request_seconds, by route and outcome.\n"
        "# TYPE wy_test_http_request_total counter\n"
        "wy_test_http_request_total{route=\"POST /v1/login\",outcome=\"ok\"} 1\n"
        "wy_test_http_request_total{route=\"POST /v1/login\",outcome=\"client_error\"} 1\n"
        "wy_test_http_request_total{route=\"POST /v1/login\",outcome=\"server_error\"} 1\n"
        "wy_test_http_request_total{route=\"GET /a\\\"b\\\\c\",outcome=\"ok\"} 1\n"
        "wy_test_http_request_total{route=\"GET /a\\\"b\\\\c\",outcome=\"client_error\"} 0\n"
        "wy_test_http_request_total{route=\"GET /a\\\"b\\\\c\",outcome=\"server_error\"} 0\n");
    assert_render(want.data);
    wy_buf_free(&want);
}

static void test_op_done_and_outcomes(void **state)
{
    (void)state;
    assert_int_equal(wy_outcome_http(101), WY_OUTCOME_OK);
    assert_int_equal(wy_outcome_http(204), WY_OUTCOME_OK);
    assert_int_equal(wy_outcome_http(304), WY_OUTCOME_OK);
    assert_int_equal(wy_outcome_http(404), WY_OUTCOME_CLIENT_ERROR);
    assert_int_equal(wy_outcome_http(429), WY_OUTCOME_CLIENT_ERROR);
    assert_int_equal(wy_outcome_http(500), WY_OUTCOME_SERVER_ERROR);
    assert_int_equal(wy_outcome_http(503), WY_OUTCOME_SERVER_ERROR);
    assert_string_equal(wy_outcome_name(WY_OUTCOME_CLIENT_ERROR), "client_error");

    wy_op_family_t *f = wy_metrics_op_family("wy_test_ws_message_seconds", "Message time.", "type");
    wy_op_t *op = wy_metrics_op(f, "join");
    /* A start in the future (clock read on another thread) counts as 0 s. */
    wy_op_done(op, wy_now_ns() + 1000000000ull, WY_OUTCOME_OK);
    wy_op_done(op, wy_now_ns() - 2000000ull, WY_OUTCOME_OK);
    char *out = render();
    wt_assert_contains(
        out,
        (const char *const[]){"wy_test_ws_message_seconds_bucket{type=\"join\",le=\"0.0001\"} 1\n",
                              "wy_test_ws_message_seconds_bucket{type=\"join\",le=\"0.0005\"} 1\n",
                              "wy_test_ws_message_seconds_bucket{type=\"join\",le=\"+Inf\"} 2\n",
                              "wy_test_ws_message_seconds_count{type=\"join\"} 2\n",
                              "wy_test_ws_message_total{type=\"join\",outcome=\"ok\"} 2\n", NULL});
    wy_free(out);
}

static void test_op_value_cap(void **state)
{
    (void)state;
    wy_op_family_t *f = wy_metrics_op_family("wy_test_rpc_seconds", "RPC.", "method");
    wy_op_t *ops[WY_METRICS_OP_MAX_VALUES];
    for (int i = 0; i < WY_METRICS_OP_MAX_VALUES; i++) {
        char v[16];
        snprintf(v, sizeof v, "m%d", i);
        ops[i] = wy_metrics_op(f, v);
    }
    for (int i = 0; i < WY_METRICS_OP_MAX_VALUES; i++) {
        char v[16];
        snprintf(v, sizeof v, "m%d", i);
        assert_ptr_equal(wy_metrics_op(f, v), ops[i]);
    }
    wy_op_t *o1 = wy_metrics_op(f, "from outside 1");
    wy_op_t *o2 = wy_metrics_op(f, "from outside 2");
    assert_ptr_equal(o1, o2);
    wy_op_observe(o1, 0.01, WY_OUTCOME_CLIENT_ERROR);
    wy_op_observe(o2, 0.01, WY_OUTCOME_CLIENT_ERROR);
    char *out = render();
    wt_assert_contains(out, (const char *const[]){
                                "wy_test_rpc_seconds_count{method=\"other\"} 2\n",
                                "wy_test_rpc_total{method=\"other\",outcome=\"client_error\"} 2\n",
                                "wy_test_rpc_seconds_count{method=\"m63\"} 0\n", NULL});
    assert_null(strstr(out, "from outside"));
    wy_free(out);
}

static wy_op_family_t *t_fam;

static void *op_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        char v[16];
        snprintf(v, sizeof v, "t%d", i % 8);
        wy_op_observe(wy_metrics_op(t_fam, v), 0.001, (wy_outcome_t)(i % 3));
    }
    return NULL;
}

/* Four threads register and observe the same eight values at once: each
 * value is one series and no observation is lost. */
static void test_op_threads(void **state)
{
    (void)state;
    t_fam = wy_metrics_op_family("wy_test_op_seconds", "Op.", "kind");
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, op_thread, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    double total = 0;
    for (int i = 0; i < 8; i++) {
        char l[32];
        snprintf(l, sizeof l, "kind=\"t%d\"", i);
        total += wy_metric_value(wy_metrics_histogram("wy_test_op_seconds", NULL, l,
                                                      wy_metrics_latency_buckets,
                                                      wy_metrics_latency_nbuckets));
    }
    assert_true(total == 4 * 20000);
    char *out = render();
    assert_null(strstr(out, "kind=\"t8\""));
    wy_free(out);
}

/* promtool check metrics reads the exposition on stdin and exits non-zero on
 * format errors; lint problems are printed but must also be absent. */
static void test_promtool(void **state)
{
    (void)state;
    if (access(PROMTOOL, X_OK) != 0)
        fail_msg(PROMTOOL " is missing: run tools/deps to install it (package prometheus)");

    const double b[] = {0.01, 0.1, 1};
    wy_metric_t *c = wy_metrics_counter("wy_test_requests_total", "Requests \"served\".", NULL);
    wy_metric_t *cl = wy_metrics_counter("wy_test_requests_total", "",
                                         "method=\"GET\",path=\"/a\\\"b\\\\c\\nd\"");
    wy_metric_t *g = wy_metrics_gauge("wy_test_sessions", "Live\nsessions \\ now.", NULL);
    wy_metric_t *gi = wy_metrics_gauge("wy_test_temperature_celsius", "Odd values.", "x=\"inf\"");
    wy_metric_t *gn = wy_metrics_gauge("wy_test_temperature_celsius", "", "x=\"nan\"");
    wy_metric_t *gm = wy_metrics_gauge("wy_test_temperature_celsius", "", "x=\"small\"");
    wy_metric_t *gu = wy_metrics_gauge("wy_test_temperature_celsius", "", "x=\"\xff\xc3\xa9\"");
    wy_metric_t *h = wy_metrics_histogram("wy_test_rpc_seconds", "RPC.", NULL, b, 3);
    wy_metric_t *hl = wy_metrics_histogram("wy_test_rpc_seconds", "", "method=\"Put\"", b, 3);
    wy_metric_t *hd = wy_metrics_histogram("wy_test_tick_seconds", "Tick.", NULL,
                                           wy_metrics_latency_buckets, wy_metrics_latency_nbuckets);
    wy_metric_add(c, 3);
    wy_metric_inc(cl);
    wy_metric_set(g, 12);
    wy_metric_set(gi, -INFINITY);
    wy_metric_set(gn, NAN);
    wy_metric_set(gm, 1e-9);
    wy_metric_set(gu, 0.5);
    wy_metric_observe(h, 0.05);
    wy_metric_observe(hl, 5);
    wy_metric_observe(hd, 0.016);
    wy_op_t *op = wy_metrics_op(
        wy_metrics_op_family("wy_test_http_request_seconds", "Request time by route.", "route"),
        "POST /v1/\"x\"");
    wy_op_observe(op, 0.002, WY_OUTCOME_CLIENT_ERROR);

    char *text = render();
    char path[] = "/tmp/wy_metrics_promtool_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);

    char *cmd = wy_sprintf(PROMTOOL " check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(path);
    wy_free(cmd);
    if (st != 0 || n != 0)
        fail_msg("promtool check metrics failed (status %d):\n%s\n--- input\n%s", st, out, text);
    wy_free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_empty, teardown),
        cmocka_unit_test_teardown(test_counter_gauge_plain, teardown),
        cmocka_unit_test_teardown(test_labels_grouped_by_family, teardown),
        cmocka_unit_test_teardown(test_histogram, teardown),
        cmocka_unit_test_teardown(test_latency_buckets, teardown),
        cmocka_unit_test_teardown(test_number_format, teardown),
        cmocka_unit_test_teardown(test_escaping, teardown),
        cmocka_unit_test_teardown(test_invalid_utf8_replaced, teardown),
        cmocka_unit_test_teardown(test_bugs_abort, teardown),
        cmocka_unit_test_teardown(test_threads, teardown),
        cmocka_unit_test_teardown(test_series_cap, teardown),
        cmocka_unit_test_teardown(test_op_family_render, teardown),
        cmocka_unit_test_teardown(test_op_done_and_outcomes, teardown),
        cmocka_unit_test_teardown(test_op_value_cap, teardown),
        cmocka_unit_test_teardown(test_op_threads, teardown),
        cmocka_unit_test_teardown(test_promtool, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
