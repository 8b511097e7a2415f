/* wy-corebench — closed-loop load generator for the foundation layers (HTTP, WebSocket,
 * gRPC, Kafka, Redis, PostgreSQL) against real servers; run by tools/bench, one benchmark
 * per invocation, which prints one JSON line with throughput, latency percentiles, errors. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <http_parser.h>
#include <signal.h>
#include <uv.h>

#include "actor.pb-c.h"
#include "gameplay.pb-c.h"
#include "health.pb-c.h"
#include "wy_grpc.h"
#include "wy_grpc_unary.h"
#include "wy_kafka.h"
#include "wy_log.h"
#include "wy_mailbox.h"
#include "wy_tick.h"
#include "wy_pg.h"
#include "wy_redis.h"

static const char *usage_text =
    "usage: wy-corebench BENCH [options]\n"
    "  BENCH: http | ws | grpc | grpc-raw | kafka-produce | kafka-e2e | redis-set |\n"
    "         redis-get | pg-select | pg-insert | pg-batch | actor-apply | actor-batch |\n"
    "         actor-load | actor-txn | actor-gameplay | mailbox | tick\n"
    "  or:    wy-corebench grpc-raw-server [--port N]   (the ceiling's server; until SIGTERM)\n"
    "  --target HOST:PORT   http, ws, grpc, grpc-raw server (IPv4 literal)\n"
    "  --port N             grpc-raw-server: port to listen on (default 0 = any)\n"
    "  --path PATH          http request path (default /healthz); ws path (default /echo)\n"
    "  --url URL            redis (redis://...) or pg (postgresql://...) address\n"
    "  --brokers LIST       Kafka bootstrap servers\n"
    "  --conns N            connections (http, ws) or operations in flight (others); default 1;\n"
    "                       mailbox: producer threads; tick: rate in Hz\n"
    "  --depth N            ws: messages in flight per connection (pipelining); default 1\n"
    "  --pool N             pg: pool size; default 4\n"
    "  --rows N             pg-batch: rows per INSERT (the ops counted are rows); default 256\n"
    "  --actors N           actor-*: characters created first; default 1000\n"
    "  --events N           actor-load: events written to each character first; default 450\n"
    "  --batch N            actor-batch: commands per ApplyBatch call (ops are commands); 64\n"
    "  --rate N             actor-gameplay: events produced per second; 0 = as fast as the\n"
    "                       daemon persists them (a backlog of 20,000 kept); default 0;\n"
    "                       warm-up at least 3 s\n"
    "  --ops HOST:PORT      actor-gameplay: wy-actor's ops port (/metrics is read)\n"
    "  --size BYTES         ws message / Kafka payload / Redis value size; default 32\n"
    "  --seconds N          measured duration; default 5\n"
    "  --warmup-ms N        warm-up before measuring; default 1000\n"
    "  --label TEXT         name printed in the result (default BENCH)\n"
    "  --pid PID            the server process: its CPU over the measured phase\n"
    "  --pg-pid PID         PostgreSQL's postmaster: its and its children's CPU, same window\n"
    "  --grpc-mode MODE     grpc: thread (a CQ thread beside the loop, default) or drive (the\n"
    "                       loop thread polls gRPC itself: wy_grpc_rt_opts_t.drive)\n"
    "Prints one JSON line on stdout: bench, conns, seconds, ops, ops_per_s, p50_us, p99_us,\n"
    "p999_us, max_us, errors, note; with --pid / --pg-pid also server_cpu_ms_per_1000 /\n"
    "pg_cpu_ms_per_1000 and client_cpu_ms_per_1000 (this process). Exit 0 when the\n"
    "benchmark ran, 1 when it could not.\n";

#define SETUP_TIMEOUT_MS 30000
#define DRAIN_TIMEOUT_MS 10000
#define MAX_CONNS        4096
#define MAX_SIZE         (64 * 1024)

typedef struct {
    const char *bench, *target, *path, *url, *brokers, *label, *ops, *grpc_mode;
    unsigned conns, depth, pool, size, seconds, warmup_ms, port, rows, actors, events, batch, rate;
    unsigned pid, pg_pid; /* --pid, --pg-pid: CPU watched over the measured phase; 0 = none */
} opts_t;

/* ---- latency histogram --------------------------------------------------------------
 * HdrHistogram-like log-linear buckets over nanoseconds: values below 128 are exact;
 * above, each power of two is split into 64 linear sub-buckets, so a bucket is at most
 * 1/64 (1.6%) of its value wide. Percentiles report the bucket's highest value
 * (HdrHistogram's "highest equivalent value"), so they never understate. */

#define HIST_SUB     64
#define HIST_BUCKETS (128 + 57 * HIST_SUB)

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total, max;
} hist_t;

static unsigned hist_index(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned e = msb - 6; /* v >> e is in [64, 127] */
    return 128 + (e - 1) * HIST_SUB + (unsigned)((v >> e) - HIST_SUB);
}

static uint64_t hist_bucket_high(unsigned i)
{
    if (i < 128)
        return i;
    unsigned e = (i - 128) / HIST_SUB + 1;
    uint64_t m = (i - 128) % HIST_SUB + HIST_SUB;
    return ((m + 1) << e) - 1;
}

static void hist_add(hist_t *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static void hist_reset(hist_t *h)
{
    memset(h, 0, sizeof *h);
}

/* Value at quantile q (0..1]: the smallest bucket whose cumulative count reaches
 * ceil(q * total), capped at the largest value seen. 0 when empty. */
static uint64_t hist_quantile(const hist_t *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->total + 0.999999);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = hist_bucket_high(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* ---- benchmark driver ---------------------------------------------------------------
 * Phases: SETUP (connect, probe) -> bench_ready -> WARMUP (load runs, nothing recorded)
 * -> MEASURE (--seconds, every completion recorded) -> DRAIN (no new operations; the
 * benchmark's release hook runs once nothing is in flight, or after DRAIN_TIMEOUT_MS)
 * -> DONE. One timer drives the phases; release always runs from that timer, never from
 * inside a library callback. */

typedef enum { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE } phase_t;

typedef struct bench bench_t;
typedef struct tcp_conn tcp_conn_t;

/* One closed-loop operation slot: a completion immediately issues the next operation. */
typedef struct {
    bench_t *b;
    uint64_t start_ns;
    unsigned idx;
    bool dead; /* issuing failed at once: not retried (a retry would spin) */
} slot_t;

/* ---- CPU of the processes serving a benchmark (--pid, --pg-pid) --------------------
 * Seconds of CPU (user + system) from /proc/PID/stat; with reaped, the children it has
 * waited for too (a PostgreSQL backend that ended). */
static double stat_cpu_s(unsigned pid, bool reaped)
{
    char path[64], text[1024] = ""; /* zero-filled: the read leaves it terminated */
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    int fd = open(path, O_RDONLY);
    ssize_t got = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
    if (fd >= 0)
        close(fd);
    /* The command name may hold spaces and parentheses: the fields follow the last ')'. */
    const char *fields = got > 0 ? strrchr(text, ')') : NULL;
    unsigned long long t[4] = {0};
    /* state, fields 4..13, then utime stime cutime cstime. */
    if (!fields ||
        sscanf(fields + 2, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %llu %llu", &t[0],
               &t[1], &t[2], &t[3]) != 4)
        return 0;
    return (double)(t[0] + t[1] + (reaped ? t[2] + t[3] : 0)) / (double)sysconf(_SC_CLK_TCK);
}

/* The postmaster, the children it has now (/proc/PID/task/PID/children) and the ones that
 * ended: PostgreSQL's whole CPU. */
static double pg_tree_cpu_s(unsigned postmaster)
{
    double sum = stat_cpu_s(postmaster, true);
    char path[80];
    snprintf(path, sizeof path, "/proc/%u/task/%u/children", postmaster, postmaster);
    FILE *f = fopen(path, "r");
    unsigned child;
    while (f && fscanf(f, "%u", &child) == 1)
        sum += stat_cpu_s(child, false);
    if (f)
        fclose(f);
    return sum;
}

static double self_cpu_s(void)
{
    uv_rusage_t ru;
    if (uv_getrusage(&ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

typedef struct {
    double self, server, pg;
} cpu_sample_t;

static void cpu_sample(const opts_t *o, cpu_sample_t *c)
{
    c->self = self_cpu_s();
    c->server = o->pid ? stat_cpu_s(o->pid, false) : 0;
    c->pg = o->pg_pid ? pg_tree_cpu_s(o->pg_pid) : 0;
}

struct bench {
    const opts_t *o;
    uv_loop_t *loop;
    uv_timer_t timer;
    phase_t phase;
    uint64_t t0_ns, t1_ns;
    cpu_sample_t cpu0, cpu1; /* at the start and the end of the measured phase */
    hist_t hist;
    uint64_t ops, errors;
    unsigned per_op;                   /* ops one completion counts for (pg-batch: rows); 0 = 1 */
    uint64_t inflight;                 /* issued, not completed; kept by the benchmark */
    unsigned dead_slots;               /* slots stopped by an immediate issue error */
    unsigned drain_ms;                 /* the drain's bound; 0 = DRAIN_TIMEOUT_MS */
    const char *fail;                  /* set when the benchmark could not run */
    char note[256];                    /* extra facts printed with the result */
    void (*start)(bench_t *);          /* at bench_ready: issue the initial load */
    void (*measure)(bench_t *, bool);  /* optional: the measured phase starts (true) / ends */
    void (*release)(bench_t *);        /* close everything; in-flight callbacks may follow */
    int (*issue)(bench_t *, slot_t *); /* slot benchmarks: start one operation */
    slot_t *slots;
    tcp_conn_t *conns; /* TCP benchmarks: one per --conns */
    void *impl;        /* the benchmark's own state; freed by main */
};

static void phase_timer_cb(uv_timer_t *t);

static void bench_init(bench_t *b, uv_loop_t *loop, const opts_t *o)
{
    memset(b, 0, sizeof *b);
    b->o = o;
    b->loop = loop;
    b->phase = PH_SETUP;
    uv_timer_init(loop, &b->timer);
    b->timer.data = b;
    uv_timer_start(&b->timer, phase_timer_cb, SETUP_TIMEOUT_MS, 0);
}

static bool bench_running(const bench_t *b)
{
    return b->phase < PH_DRAIN;
}

static void bench_timer_closed(uv_handle_t *h)
{
    WY_UNUSED(h);
}

static void bench_do_release(bench_t *b)
{
    if (b->phase == PH_DONE)
        return;
    b->phase = PH_DONE;
    uv_close((uv_handle_t *)&b->timer, bench_timer_closed);
    if (b->release)
        b->release(b);
}

/* Called after every completion and at the start of DRAIN: schedules the release once
 * nothing is in flight any more. */
static void bench_settle(bench_t *b)
{
    if (b->phase == PH_DRAIN && b->inflight == 0)
        uv_timer_start(&b->timer, phase_timer_cb, 0, 0);
}

static void bench_enter_drain(bench_t *b)
{
    b->phase = PH_DRAIN;
    uv_timer_start(&b->timer, phase_timer_cb, b->drain_ms ? b->drain_ms : DRAIN_TIMEOUT_MS, 0);
    bench_settle(b);
}

static void phase_timer_cb(uv_timer_t *t)
{
    bench_t *b = t->data;
    switch (b->phase) {
    case PH_SETUP:
        b->fail = "setup did not finish within 30 s (server not answering?)";
        bench_enter_drain(b);
        break;
    case PH_WARMUP:
        hist_reset(&b->hist);
        b->ops = b->errors = 0;
        b->phase = PH_MEASURE;
        b->t0_ns = wy_now_ns();
        cpu_sample(b->o, &b->cpu0);
        if (b->measure)
            b->measure(b, true);
        uv_timer_start(&b->timer, phase_timer_cb, (uint64_t)b->o->seconds * 1000, 0);
        break;
    case PH_MEASURE:
        b->t1_ns = wy_now_ns();
        cpu_sample(b->o, &b->cpu1);
        if (b->measure)
            b->measure(b, false);
        bench_enter_drain(b);
        break;
    case PH_DRAIN:
        bench_do_release(b);
        break;
    case PH_DONE:
        break;
    }
}

/* Setup is done: start the load and the warm-up clock. */
static void bench_ready(bench_t *b)
{
    if (b->phase != PH_SETUP)
        return;
    b->phase = PH_WARMUP;
    uv_timer_start(&b->timer, phase_timer_cb, b->o->warmup_ms, 0);
    b->start(b);
}

/* The benchmark cannot run (why is a static string). */
static void bench_fail(bench_t *b, const char *why)
{
    if (!b->fail)
        b->fail = why;
    if (bench_running(b))
        bench_enter_drain(b);
}

static void bench_record(bench_t *b, uint64_t start_ns)
{
    if (b->phase != PH_MEASURE)
        return;
    uint64_t now = wy_now_ns();
    hist_add(&b->hist, now > start_ns ? now - start_ns : 0);
    b->ops += b->per_op ? b->per_op : 1;
}

static void bench_error(bench_t *b)
{
    if (b->phase == PH_MEASURE)
        b->errors++;
}

static void bench_note(bench_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bench_note(bench_t *b, const char *fmt, ...)
{
    size_t n = strlen(b->note);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->note + n, sizeof b->note - n, fmt, ap);
    va_end(ap);
}

/* Prints the JSON result line; returns the process exit status. */
static int bench_report(const bench_t *b)
{
    const opts_t *o = b->o;
    if (b->fail) {
        fprintf(stderr, "wy-corebench %s: could not run: %s\n", o->label, b->fail);
        return 1;
    }
    if (b->ops == 0) {
        fprintf(stderr,
                "wy-corebench %s: could not run: no operation completed (%" PRIu64 " errors)\n",
                o->label, b->errors);
        return 1;
    }
    double secs = (double)(b->t1_ns - b->t0_ns) / 1e9;
    char dead[64] = "";
    if (b->dead_slots)
        snprintf(dead, sizeof dead, "; %u of %u stopped on an immediate error", b->dead_slots,
                 o->conns);
    /* CPU per 1,000 operations (completed ones and errors) of the measured phase. */
    char cpu[160] = "";
    double per1k = 1e6 / (double)(b->ops + b->errors);
    if (o->pid || o->pg_pid)
        snprintf(cpu, sizeof cpu,
                 ",\"client_cpu_ms_per_1000\":%.1f,\"server_cpu_ms_per_1000\":%.1f,"
                 "\"pg_cpu_ms_per_1000\":%.1f",
                 (b->cpu1.self - b->cpu0.self) * per1k, (b->cpu1.server - b->cpu0.server) * per1k,
                 (b->cpu1.pg - b->cpu0.pg) * per1k);
    printf("{\"bench\":\"%s\",\"conns\":%u,\"seconds\":%.3f,\"ops\":%" PRIu64
           ",\"ops_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"max_us\":%.1f,\"errors\":%" PRIu64 "%s,\"note\":\"%s%s\"}\n",
           o->label, o->conns, secs, b->ops, (double)b->ops / secs,
           (double)hist_quantile(&b->hist, 0.50) / 1e3, (double)hist_quantile(&b->hist, 0.99) / 1e3,
           (double)hist_quantile(&b->hist, 0.999) / 1e3, (double)b->hist.max / 1e3, b->errors, cpu,
           b->note, dead);
    fflush(stdout);
    return 0;
}

/* ---- closed-loop slots (gRPC, Kafka produce, Redis, PostgreSQL) --------------------- */

static void slot_issue(bench_t *b, slot_t *s)
{
    if (!bench_running(b) || s->dead)
        return;
    s->start_ns = wy_now_ns();
    if (b->issue(b, s) == WY_OK) {
        b->inflight++;
        return;
    }
    s->dead = true;
    b->dead_slots++; /* reported in the note: the load is lower for the rest of the run */
    bench_error(b);
}

static void slots_start(bench_t *b)
{
    for (unsigned i = 0; i < b->o->conns; i++)
        slot_issue(b, &b->slots[i]);
}

static void slot_done(bench_t *b, slot_t *s, bool ok)
{
    b->inflight--;
    if (ok)
        bench_record(b, s->start_ns);
    else
        bench_error(b);
    slot_issue(b, s);
    bench_settle(b);
}

/* A slot benchmark: its zeroed state of impl_size bytes (returned, kept in b->impl), its
 * hooks and one slot per --conns. */
static void *slots_bench_new(bench_t *b, size_t impl_size, void (*release)(bench_t *),
                             int (*issue)(bench_t *, slot_t *))
{
    b->impl = wy_calloc(1, impl_size);
    b->release = release;
    b->issue = issue;
    b->slots = wy_calloc(b->o->conns, sizeof(slot_t));
    for (unsigned i = 0; i < b->o->conns; i++) {
        b->slots[i].b = b;
        b->slots[i].idx = i;
    }
    b->start = slots_start;
    return b->impl;
}

/* size bytes of c, NUL-terminated; caller frees. */
static char *filled_text(size_t size, char c)
{
    char *t = wy_malloc(size + 1);
    memset(t, c, size);
    t[size] = '\0';
    return t;
}

/* False (and *err set) when --url is missing. */
static bool have_url(const bench_t *b, const char **err)
{
    if (!b->o->url)
        *err = "--url is required";
    return b->o->url != NULL;
}

/* ---- TCP connections (HTTP, WebSocket) ------------------------------------------------
 * A connection that breaks mid-run is reconnected; one that cannot connect stays down. */

typedef struct {
    void (*on_connected)(tcp_conn_t *);
    void (*on_data)(tcp_conn_t *, ssize_t nread); /* bytes appended at rbuf + rlen */
    void (*on_start)(tcp_conn_t *);               /* at bench_ready: start the load */
} tcp_proto_t;

struct tcp_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    bench_t *b;
    const tcp_proto_t *proto;
    struct sockaddr_in addr;
    bool open, ever_connected;
    size_t rlen;
    uint8_t rbuf[MAX_SIZE + 64];
    void *impl;
};

static void tcp_connect(tcp_conn_t *c);

static void tcp_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    tcp_conn_t *c = h->data;
    WY_UNUSED(hint);
    buf->base = (char *)c->rbuf + c->rlen;
    buf->len = sizeof c->rbuf - c->rlen;
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tcp_conn_t *c = s->data;
    WY_UNUSED(buf);
    if (nread == 0)
        return;
    c->proto->on_data(c, nread);
}

static void tcp_closed_cb(uv_handle_t *h)
{
    tcp_conn_t *c = h->data;
    if (bench_running(c->b) && c->ever_connected)
        tcp_connect(c);
}

/* Closes the connection; it reconnects while the benchmark runs. */
static void tcp_close(tcp_conn_t *c)
{
    if (!c->open)
        return;
    c->open = false;
    uv_close((uv_handle_t *)&c->tcp, tcp_closed_cb);
}

static void tcp_connect_cb(uv_connect_t *req, int status)
{
    tcp_conn_t *c = req->data;
    if (status != 0) {
        c->ever_connected = false; /* stays down */
        bench_error(c->b);
        if (c->b->phase == PH_SETUP)
            bench_fail(c->b, "cannot connect to --target");
        tcp_close(c);
        return;
    }
    c->ever_connected = true;
    c->rlen = 0;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc_cb, tcp_read_cb);
    c->proto->on_connected(c);
}

static void tcp_connect(tcp_conn_t *c)
{
    uv_tcp_init(c->b->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    c->open = true;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&c->addr, tcp_connect_cb);
    if (rc != 0) {
        bench_fail(c->b, "uv_tcp_connect failed");
        tcp_close(c);
    }
}

static bool parse_target(const char *target, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = target ? strrchr(target, ':') : NULL;
    if (!colon || (size_t)(colon - target) >= sizeof host)
        return false;
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return false;
    return uv_ip4_addr(host, (int)port, out) == 0;
}

static void tcp_start(bench_t *b)
{
    for (unsigned i = 0; i < b->o->conns; i++)
        b->conns[i].proto->on_start(&b->conns[i]);
}

static void tcp_release(bench_t *b)
{
    for (unsigned i = 0; b->conns && i < b->o->conns; i++)
        tcp_close(&b->conns[i]);
}

/* A TCP benchmark: its zeroed state of impl_size bytes (returned, kept in b->impl) and one
 * connection per --conns to --target speaking proto, each with a zeroed state of conn_size
 * bytes in impl; tcp_connect_all() then connects them. NULL (*err set) on a bad --target. */
static void *tcp_bench_new(bench_t *b, size_t impl_size, const tcp_proto_t *proto, size_t conn_size,
                           const char **err)
{
    b->impl = wy_calloc(1, impl_size);
    struct sockaddr_in addr;
    if (!parse_target(b->o->target, &addr)) {
        *err = "--target: want IPV4:PORT";
        return NULL;
    }
    b->conns = wy_calloc(b->o->conns, sizeof(tcp_conn_t));
    for (unsigned i = 0; i < b->o->conns; i++) {
        b->conns[i].b = b;
        b->conns[i].proto = proto;
        b->conns[i].addr = addr;
        b->conns[i].impl = wy_calloc(1, conn_size);
    }
    b->start = tcp_start;
    b->release = tcp_release;
    return b->impl;
}

static void tcp_connect_all(bench_t *b)
{
    for (unsigned i = 0; i < b->o->conns; i++)
        tcp_connect(&b->conns[i]);
}

/* After the loop has stopped. */
static void tcp_conns_free(bench_t *b)
{
    for (unsigned i = 0; b->conns && i < b->o->conns; i++)
        wy_free(b->conns[i].impl);
    wy_free(b->conns);
}

/* ---- 1. HTTP keep-alive GET --------------------------------------------------------- */

typedef struct {
    char request[256];
    size_t request_len;
    unsigned connected;
    http_parser_settings settings;
} http_bench_t;

typedef struct {
    http_parser parser;
    uv_write_t wreq;
    uint64_t sent_ns;
    bool busy, complete;
} http_conn_t;

static int http_on_complete(http_parser *p)
{
    http_conn_t *h = p->data;
    h->complete = true;
    return 0;
}

static void http_write_cb(uv_write_t *req, int status)
{
    tcp_conn_t *c = req->data;
    if (status != 0 && status != UV_ECANCELED && c->open) {
        http_conn_t *h = c->impl;
        if (h->busy) {
            h->busy = false;
            c->b->inflight--;
            bench_error(c->b);
            bench_settle(c->b);
        }
        tcp_close(c);
    }
}

static void http_send(tcp_conn_t *c)
{
    bench_t *b = c->b;
    http_bench_t *hb = b->impl;
    http_conn_t *h = c->impl;
    if (!bench_running(b) || !c->open || h->busy)
        return;
    uv_buf_t buf = uv_buf_init(hb->request, (unsigned)hb->request_len);
    h->wreq.data = c;
    h->sent_ns = wy_now_ns();
    if (uv_write(&h->wreq, (uv_stream_t *)&c->tcp, &buf, 1, http_write_cb) != 0) {
        bench_error(b);
        tcp_close(c);
        return;
    }
    h->busy = true;
    b->inflight++;
}

static void http_connected(tcp_conn_t *c)
{
    http_bench_t *hb = c->b->impl;
    http_conn_t *h = c->impl;
    http_parser_init(&h->parser, HTTP_RESPONSE);
    h->parser.data = h;
    h->busy = h->complete = false;
    if (c->b->phase == PH_SETUP) {
        if (++hb->connected == c->b->o->conns)
            bench_ready(c->b);
    } else {
        http_send(c);
    }
}

static void http_data(tcp_conn_t *c, ssize_t nread)
{
    bench_t *b = c->b;
    http_bench_t *hb = b->impl;
    http_conn_t *h = c->impl;
    bool failed = nread < 0;
    if (!failed) {
        size_t n =
            http_parser_execute(&h->parser, &hb->settings, (const char *)c->rbuf, (size_t)nread);
        failed = n != (size_t)nread || HTTP_PARSER_ERRNO(&h->parser) != HPE_OK;
    }
    if (!failed && h->complete) {
        h->complete = false;
        h->busy = false;
        b->inflight--;
        if (h->parser.status_code == 200)
            bench_record(b, h->sent_ns);
        else
            bench_error(b);
        if (http_should_keep_alive(&h->parser))
            http_send(c);
        else
            tcp_close(c); /* the server ended keep-alive: reconnect */
        bench_settle(b);
        return;
    }
    if (failed) {
        if (h->busy) {
            h->busy = false;
            b->inflight--;
        }
        bench_error(b);
        tcp_close(c);
        bench_settle(b);
    }
}

static const tcp_proto_t http_proto = {http_connected, http_data, http_send};

static int bench_http(bench_t *b, const char **err)
{
    http_bench_t *hb = tcp_bench_new(b, sizeof *hb, &http_proto, sizeof(http_conn_t), err);
    if (!hb)
        return WY_EINVAL;
    hb->request_len =
        (size_t)snprintf(hb->request, sizeof hb->request,
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wy-corebench\r\n\r\n",
                         b->o->path ? b->o->path : "/healthz", b->o->target);
    http_parser_settings_init(&hb->settings);
    hb->settings.on_message_complete = http_on_complete;
    tcp_connect_all(b);
    return WY_OK;
}

/* ---- 2. WebSocket echo ---------------------------------------------------------------
 * Binary messages of --size bytes, masked as a client must; --depth messages in flight per
 * connection. The echo preserves order, so each connection keeps its send times in a FIFO.
 * Frames sent in one loop turn go out in one write. The mask key is fixed per run: the
 * server must unmask, the key's secrecy only matters against proxies. */

typedef struct {
    uint8_t frame[MAX_SIZE + 14];
    size_t frame_len;
    uint8_t payload[MAX_SIZE]; /* what the echo must return */
    unsigned upgraded;
} ws_bench_t;

typedef struct {
    bool upgraded;
    uint64_t *sent; /* FIFO of send times, --depth entries */
    unsigned head, count;
} ws_conn_t;

typedef struct {
    uv_write_t req;
    tcp_conn_t *c;
    uint8_t data[];
} ws_write_t;

static void ws_fail(tcp_conn_t *c);

static void ws_write_cb(uv_write_t *req, int status)
{
    ws_write_t *w = WY_CONTAINER_OF(req, ws_write_t, req);
    tcp_conn_t *c = w->c;
    wy_free(w);
    if (status != 0 && status != UV_ECANCELED && c->open)
        ws_fail(c);
}

static void ws_lose_inflight(tcp_conn_t *c)
{
    ws_conn_t *ws = c->impl;
    for (; ws->count > 0; ws->count--) {
        c->b->inflight--;
        bench_error(c->b);
    }
    ws->head = 0;
}

static void ws_fail(tcp_conn_t *c)
{
    ws_lose_inflight(c);
    bench_error(c->b);
    tcp_close(c);
    bench_settle(c->b);
}

/* Tops the connection up to --depth messages in flight, in one write. */
static void ws_fill(tcp_conn_t *c)
{
    bench_t *b = c->b;
    ws_bench_t *wb = b->impl;
    ws_conn_t *ws = c->impl;
    if (!bench_running(b) || !c->open || !ws->upgraded || ws->count >= b->o->depth)
        return;
    unsigned k = b->o->depth - ws->count;
    ws_write_t *w = wy_malloc(sizeof *w + (size_t)k * wb->frame_len);
    w->c = c;
    for (unsigned i = 0; i < k; i++)
        memcpy(w->data + (size_t)i * wb->frame_len, wb->frame, wb->frame_len);
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)((size_t)k * wb->frame_len));
    uint64_t now = wy_now_ns();
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, ws_write_cb) != 0) {
        wy_free(w);
        ws_fail(c);
        return;
    }
    for (unsigned i = 0; i < k; i++) {
        ws->sent[(ws->head + ws->count) % b->o->depth] = now;
        ws->count++;
    }
    b->inflight += k;
}

static void ws_connected(tcp_conn_t *c)
{
    bench_t *b = c->b;
    ws_conn_t *ws = c->impl;
    ws->upgraded = false;
    ws->head = ws->count = 0;
    char req[512];
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: d3ktY29yZWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 b->o->path ? b->o->path : "/echo", b->o->target);
    ws_write_t *w = wy_malloc(sizeof *w + (size_t)n);
    w->c = c;
    memcpy(w->data, req, (size_t)n);
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, ws_write_cb) != 0) {
        wy_free(w);
        ws_fail(c);
    }
}

/* Consumes the 101 response; returns bytes used, 0 if incomplete, -1 if refused. */
static ssize_t ws_handshake(tcp_conn_t *c)
{
    const char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end)
        return c->rlen >= 4096 ? -1 : 0;
    if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.1 101", 12) != 0)
        return -1;
    return (ssize_t)((const uint8_t *)end + 4 - c->rbuf);
}

/* Parses complete server frames from rbuf[off..rlen); returns bytes used or -1. */
static ssize_t ws_frames(tcp_conn_t *c, size_t off)
{
    bench_t *b = c->b;
    ws_conn_t *ws = c->impl;
    size_t pos = off;
    while (c->rlen - pos >= 2) {
        const uint8_t *p = c->rbuf + pos;
        size_t avail = c->rlen - pos, hdr = 2;
        uint64_t len = p[1] & 0x7f;
        if (p[1] & 0x80)
            return -1; /* servers never mask */
        if (len == 126) {
            if (avail < 4)
                break;
            len = ((uint64_t)p[2] << 8) | p[3];
            hdr = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            hdr = 10;
        }
        if (len > MAX_SIZE)
            return -1;
        if (avail < hdr + len)
            break;
        unsigned opcode = p[0] & 0x0f;
        pos += hdr + (size_t)len;
        if (opcode == 0x9 || opcode == 0xa)
            continue; /* ping/pong: the echo server does not ping a busy client */
        if (opcode != 0x2 || !(p[0] & 0x80) || ws->count == 0)
            return -1;
        uint64_t sent = ws->sent[ws->head];
        ws->head = (ws->head + 1) % b->o->depth;
        ws->count--;
        b->inflight--;
        ws_bench_t *wb = b->impl;
        if (len == b->o->size && memcmp(p + hdr, wb->payload, (size_t)len) == 0)
            bench_record(b, sent);
        else
            bench_error(b);
    }
    return (ssize_t)(pos - off);
}

static void ws_data(tcp_conn_t *c, ssize_t nread)
{
    bench_t *b = c->b;
    ws_bench_t *wb = b->impl;
    ws_conn_t *ws = c->impl;
    if (nread < 0) {
        ws_fail(c);
        return;
    }
    c->rlen += (size_t)nread;
    size_t used = 0;
    if (!ws->upgraded) {
        ssize_t n = ws_handshake(c);
        if (n < 0) {
            if (b->phase == PH_SETUP)
                bench_fail(b, "WebSocket upgrade refused (wrong --path?)");
            ws_fail(c);
            return;
        }
        if (n == 0)
            return;
        used = (size_t)n;
        ws->upgraded = true;
        if (b->phase == PH_SETUP && ++wb->upgraded == b->o->conns)
            bench_ready(b);
    }
    ssize_t n = ws_frames(c, used);
    if (n < 0) {
        ws_fail(c);
        return;
    }
    used += (size_t)n;
    memmove(c->rbuf, c->rbuf + used, c->rlen - used);
    c->rlen -= used;
    ws_fill(c);
    bench_settle(b);
}

static const tcp_proto_t ws_proto = {ws_connected, ws_data, ws_fill};

static int bench_ws(bench_t *b, const char **err)
{
    ws_bench_t *wb = tcp_bench_new(b, sizeof *wb, &ws_proto, sizeof(ws_conn_t), err);
    if (!wb)
        return WY_EINVAL;
    /* FIN + binary, masked payload length, fixed mask key, masked payload */
    const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t n = 0, size = b->o->size;
    wb->frame[n++] = 0x82;
    if (size < 126) {
        wb->frame[n++] = (uint8_t)(0x80 | size);
    } else {
        wb->frame[n++] = 0x80 | 126;
        wb->frame[n++] = (uint8_t)(size >> 8);
        wb->frame[n++] = (uint8_t)size;
    }
    memcpy(wb->frame + n, mask, 4);
    n += 4;
    for (size_t i = 0; i < size; i++) {
        wb->payload[i] = (uint8_t)('a' + i % 26);
        wb->frame[n + i] = wb->payload[i] ^ mask[i % 4];
    }
    wb->frame_len = n + size;
    for (unsigned i = 0; i < b->o->conns; i++) {
        ws_conn_t *ws = b->conns[i].impl;
        ws->sent = wy_calloc(b->o->depth, sizeof(uint64_t));
    }
    tcp_connect_all(b);
    return WY_OK;
}

static void ws_free(bench_t *b)
{
    for (unsigned i = 0; b->conns && i < b->o->conns; i++) {
        ws_conn_t *ws = b->conns[i].impl;
        wy_free(ws->sent);
    }
}

/* ---- 3. gRPC unary grpc.health.v1.Health/Check ---------------------------------------- */

#define HEALTH_CHECK "/grpc.health.v1.Health/Check"

typedef struct {
    wy_grpc_rt_t *rt;
    wy_grpc_channel_t *ch;
    slot_t probe;
    uv_timer_t retry; /* a daemon still starting answers NOT_SERVING: probe again */
    bool retry_open;
    uint64_t err_by_status[18]; /* grpc_count_error */
} grpc_bench_t;

/* The failed calls of the measured window by gRPC status (both gRPC clients), written
 * into the note as "errors by gRPC status: 4 (DEADLINE_EXCEEDED) x N, ...", so an error
 * count says what the errors were. status < 0: the answer was not SERVING. */
static void grpc_count_error(bench_t *b, uint64_t *by_status, int status)
{
    static const char *names[17] = {"OK",
                                    "CANCELLED",
                                    "UNKNOWN",
                                    "INVALID_ARGUMENT",
                                    "DEADLINE_EXCEEDED",
                                    "NOT_FOUND",
                                    "ALREADY_EXISTS",
                                    "PERMISSION_DENIED",
                                    "RESOURCE_EXHAUSTED",
                                    "FAILED_PRECONDITION",
                                    "ABORTED",
                                    "OUT_OF_RANGE",
                                    "UNIMPLEMENTED",
                                    "INTERNAL",
                                    "UNAVAILABLE",
                                    "DATA_LOSS",
                                    "UNAUTHENTICATED"};
    if (b->phase != PH_MEASURE)
        return;
    by_status[status >= 0 && status < 17 ? status : 17]++;
    b->note[0] = '\0';
    const char *sep = "errors by gRPC status: ";
    for (int i = 0; i < 18; i++) {
        if (!by_status[i])
            continue;
        if (i < 17)
            bench_note(b, "%s%d (%s) x %" PRIu64, sep, i, names[i], by_status[i]);
        else
            bench_note(b, "%snot SERVING x %" PRIu64, sep, by_status[i]);
        sep = ", ";
    }
}

static bool grpc_serving(int err, const ProtobufCMessage *resp)
{
    const Grpc__Health__V1__HealthCheckResponse *r =
        (const Grpc__Health__V1__HealthCheckResponse *)resp;
    return err == WY_OK && r &&
           r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

static int grpc_health_check(grpc_bench_t *gb, unsigned deadline_ms, wy_grpc_reply_cb cb, void *arg)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    return wy_grpc_call(gb->ch, HEALTH_CHECK, &req.base,
                        &grpc__health__v1__health_check_response__descriptor, deadline_ms, NULL, 0,
                        cb, arg);
}

static void grpc_reply(int err, int status, const char *message, const ProtobufCMessage *resp,
                       void *arg)
{
    slot_t *s = arg;
    WY_UNUSED(message);
    bool ok = grpc_serving(err, resp);
    if (!ok) {
        grpc_bench_t *gb = s->b->impl;
        grpc_count_error(s->b, gb->err_by_status, err == WY_OK ? -1 : status);
    }
    slot_done(s->b, s, ok);
}

static int grpc_issue(bench_t *b, slot_t *s)
{
    return grpc_health_check(b->impl, 2000, grpc_reply, s);
}

static void grpc_probe_reply(int err, int status, const char *message, const ProtobufCMessage *resp,
                             void *arg);

static void grpc_probe_again(uv_timer_t *t)
{
    bench_t *b = t->data;
    if (bench_running(b) && grpc_health_check(b->impl, 5000, grpc_probe_reply, b) == WY_OK)
        b->inflight++;
    else
        bench_fail(b, "the gRPC health probe was refused");
}

static void grpc_probe_reply(int err, int status, const char *message, const ProtobufCMessage *resp,
                             void *arg)
{
    bench_t *b = arg;
    grpc_bench_t *gb = b->impl;
    WY_UNUSED(message);
    b->inflight--;
    if (grpc_serving(err, resp)) {
        bench_ready(b);
        return;
    }
    if (err == WY_OK && bench_running(b)) { /* NOT_SERVING: until the setup timeout */
        uv_timer_start(&gb->retry, grpc_probe_again, 100, 0);
        return;
    }
    static char why[160];
    snprintf(why, sizeof why, "health check of --target failed (gRPC status %d%s)", status,
             err == WY_OK ? ", not SERVING" : "");
    bench_fail(b, why);
}

static void grpc_release(bench_t *b)
{
    grpc_bench_t *gb = b->impl;
    if (gb->retry_open)
        uv_close((uv_handle_t *)&gb->retry, NULL);
    gb->retry_open = false;
    if (gb->ch)
        wy_grpc_channel_close(gb->ch);
    if (gb->rt)
        wy_grpc_rt_close(gb->rt, NULL, NULL);
    gb->ch = NULL;
    gb->rt = NULL;
}

/* The runtime whose loop main() must drive (--grpc-mode drive), NULL = plain uv_run. */
static wy_grpc_rt_t *g_drive_rt;

static int bench_grpc(bench_t *b, const char **err)
{
    grpc_bench_t *gb = slots_bench_new(b, sizeof *gb, grpc_release, grpc_issue);
    uv_timer_init(b->loop, &gb->retry);
    gb->retry.data = b;
    gb->retry_open = true;
    wy_grpc_rt_opts_t ro = {.drive = b->o->grpc_mode && !strcmp(b->o->grpc_mode, "drive")};
    if (wy_grpc_rt_new_opts(b->loop, &ro, &gb->rt) != WY_OK) {
        *err = "gRPC runtime did not start";
        return WY_EINTERNAL;
    }
    g_drive_rt = ro.drive ? gb->rt : NULL;
    if (!b->o->target || wy_grpc_channel_new(gb->rt, b->o->target, NULL, &gb->ch) != WY_OK) {
        *err = "--target: want HOST:PORT";
        return WY_EINVAL;
    }
    if (grpc_health_check(gb, 5000, grpc_probe_reply, b) != WY_OK) {
        bench_fail(b, "the first gRPC call was refused");
        return WY_OK;
    }
    b->inflight++;
    return WY_OK;
}

/* ---- 3b. The ceiling: raw gRPC C core on both ends ----------------------------------
 * grpc-raw-server: a Health/Check server written straight on the C core (no wy_grpc, no
 * libuv): the main thread polls one completion queue; per call one batch receives the
 * request, one sends metadata, response and status and waits for the close. Runs until
 * SIGTERM/SIGINT. Prints {"msg":"ready","grpc_port":N} when serving.
 * grpc-raw: --conns Health/Check calls in flight from one thread polling one completion
 * queue, each call one batch of six ops on a pre-registered method. Same phases and
 * JSON line as every other benchmark. Together they are the most this machine's C core
 * does; tools/bench prints wy_grpc as a share of it. */

#define RAW_SERVER_SLOTS 128

static volatile sig_atomic_t raw_stop;

static void raw_on_signal(int sig)
{
    WY_UNUSED(sig);
    raw_stop = 1;
}

static gpr_timespec raw_in_ms(int ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* The packed HealthCheckResponse{SERVING}, as a fresh byte buffer. */
static grpc_byte_buffer *raw_serving_buffer(void)
{
    static uint8_t packed[16];
    static size_t len;
    if (!len) {
        Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        r.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        len = grpc__health__v1__health_check_response__pack(&r, packed);
    }
    grpc_slice s = grpc_slice_from_static_buffer(packed, len);
    return grpc_raw_byte_buffer_create(&s, 1);
}

typedef struct {
    int stage; /* 0 waiting for a call, 1 receiving, 2 replying */
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *req, *resp;
    int cancelled;
} raw_srv_call_t;

static void raw_srv_arm(grpc_server *srv, grpc_completion_queue *cq, raw_srv_call_t *c)
{
    memset(c, 0, sizeof *c);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    if (grpc_server_request_call(srv, &c->call, &c->details, &c->md, cq, cq, c) != GRPC_CALL_OK)
        c->stage = -1;
}

static void raw_srv_release(raw_srv_call_t *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    if (c->req)
        grpc_byte_buffer_destroy(c->req);
    if (c->resp)
        grpc_byte_buffer_destroy(c->resp);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
}

/* One completion of call c; false when the batch could not start (call dropped). */
static void raw_srv_step(grpc_server *srv, grpc_completion_queue *cq, raw_srv_call_t *c, bool ok)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    if (raw_stop)
        ok = false; /* stopping: no new batch (the queue may be shut down already) */
    if (c->stage == 0 && ok) {
        c->stage = 1;
        ops[0].op = GRPC_OP_RECV_MESSAGE;
        ops[0].data.recv_message.recv_message = &c->req;
        if (grpc_call_start_batch(c->call, ops, 1, c, NULL) == GRPC_CALL_OK)
            return;
    } else if (c->stage == 1 && ok) {
        c->stage = 2;
        c->resp = raw_serving_buffer();
        static grpc_slice empty;
        empty = grpc_empty_slice();
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = c->resp;
        ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
        ops[2].data.send_status_from_server.status_details = &empty;
        ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
        if (grpc_call_start_batch(c->call, ops, 4, c, NULL) == GRPC_CALL_OK)
            return;
    }
    bool rearm = c->stage != 0 || ok; /* a failed request slot means shutdown */
    raw_srv_release(c);
    if (rearm && !raw_stop)
        raw_srv_arm(srv, cq, c);
    else
        c->stage = -1;
}

static int raw_server_main(const opts_t *o)
{
    wy_grpc_absl_fast_mutex(); /* as wy_grpc does: the same library code on both sides */
    grpc_init();
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server *srv = grpc_server_create(NULL, NULL);
    grpc_server_register_completion_queue(srv, cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", o->port);
    int port = grpc_server_add_http2_port(srv, addr, creds);
    grpc_server_credentials_release(creds);
    if (port <= 0) {
        fprintf(stderr, "wy-corebench grpc-raw-server: cannot listen on %s\n", addr);
        return 1;
    }
    grpc_server_start(srv);
    static raw_srv_call_t calls[RAW_SERVER_SLOTS];
    for (unsigned i = 0; i < RAW_SERVER_SLOTS; i++)
        raw_srv_arm(srv, cq, &calls[i]);
    signal(SIGTERM, raw_on_signal);
    signal(SIGINT, raw_on_signal);
    printf("{\"msg\":\"ready\",\"grpc_port\":%d}\n", port);
    fflush(stdout);
    int shutdown_tag;
    bool shutting = false;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, raw_in_ms(100), NULL);
        if (raw_stop && !shutting) {
            shutting = true;
            grpc_server_shutdown_and_notify(srv, cq, &shutdown_tag);
            grpc_server_cancel_all_calls(srv);
        }
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &shutdown_tag) {
            grpc_server_destroy(srv);
            grpc_completion_queue_shutdown(cq);
            continue;
        }
        raw_srv_step(srv, cq, ev.tag, ev.success);
    }
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    return 0;
}

typedef struct {
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array imd, tmd;
    grpc_status_code status;
    grpc_slice details;
    uint64_t start_ns;
} raw_cli_call_t;

static bool raw_cli_start(bench_t *b, grpc_channel *ch, void *method, grpc_completion_queue *cq,
                          raw_cli_call_t *c)
{
    memset(c, 0, sizeof *c);
    c->call = grpc_channel_create_registered_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method,
                                                  raw_in_ms(2000), NULL);
    grpc_slice empty = grpc_empty_slice();
    c->send = grpc_raw_byte_buffer_create(&empty, 1);
    grpc_metadata_array_init(&c->imd);
    grpc_metadata_array_init(&c->tmd);
    grpc_op ops[6];
    size_t nops = wy_grpc_unary_ops(ops, NULL, 0, c->send, &c->imd, &c->recv, &c->tmd, &c->status,
                                    &c->details);
    c->start_ns = wy_now_ns();
    if (grpc_call_start_batch(c->call, ops, nops, c, NULL) == GRPC_CALL_OK) {
        b->inflight++;
        return true;
    }
    grpc_call_unref(c->call);
    grpc_byte_buffer_destroy(c->send);
    c->call = NULL;
    return false;
}

/* Ends call c; true if it answered SERVING. *status: its gRPC status, -1 when OK but
 * not SERVING. */
static bool raw_cli_finish(raw_cli_call_t *c, int *status)
{
    bool ok = false;
    *status = c->status == GRPC_STATUS_OK ? -1 : (int)c->status;
    if (c->status == GRPC_STATUS_OK && c->recv) {
        grpc_byte_buffer_reader r;
        if (grpc_byte_buffer_reader_init(&r, c->recv)) {
            grpc_slice s = grpc_byte_buffer_reader_readall(&r);
            grpc_byte_buffer_reader_destroy(&r);
            Grpc__Health__V1__HealthCheckResponse *m =
                grpc__health__v1__health_check_response__unpack(NULL, GRPC_SLICE_LENGTH(s),
                                                                GRPC_SLICE_START_PTR(s));
            ok = m && m->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
            if (m)
                grpc__health__v1__health_check_response__free_unpacked(m, NULL);
            grpc_slice_unref(s);
        }
    }
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    grpc_byte_buffer_destroy(c->send);
    grpc_metadata_array_destroy(&c->imd);
    grpc_metadata_array_destroy(&c->tmd);
    grpc_slice_unref(c->details);
    grpc_call_unref(c->call);
    c->call = NULL;
    return ok;
}

static int raw_client_main(const opts_t *o)
{
    bench_t b;
    memset(&b, 0, sizeof b);
    b.o = o;
    if (!o->target) {
        fprintf(stderr, "wy-corebench %s: --target is required\n", o->label);
        return 2;
    }
    wy_grpc_absl_fast_mutex(); /* as wy_grpc does: the same library code on both sides */
    grpc_init();
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(o->target, creds, NULL);
    grpc_channel_credentials_release(creds);
    void *method = grpc_channel_register_call(ch, HEALTH_CHECK, NULL, NULL);
    raw_cli_call_t *calls = wy_calloc(o->conns, sizeof *calls);
    uint64_t err_by_status[18] = {0};

    /* Setup: one call must answer SERVING. */
    b.phase = PH_SETUP;
    if (!raw_cli_start(&b, ch, method, cq, &calls[0]))
        b.fail = "the first gRPC call was refused";
    while (!b.fail && b.inflight) {
        grpc_event ev = grpc_completion_queue_next(cq, raw_in_ms(SETUP_TIMEOUT_MS), NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            b.fail = "setup did not finish within 30 s (server not answering?)";
            break;
        }
        b.inflight--;
        int status;
        if (!raw_cli_finish(ev.tag, &status))
            b.fail = "health check of --target failed";
    }
    uint64_t phase_end = wy_now_ns() + (uint64_t)o->warmup_ms * 1000000;
    if (!b.fail) {
        b.phase = PH_WARMUP;
        for (unsigned i = 0; i < o->conns; i++)
            if (!raw_cli_start(&b, ch, method, cq, &calls[i])) {
                b.dead_slots++;
                bench_error(&b);
            }
    }
    while (!b.fail && b.inflight) {
        uint64_t now = wy_now_ns();
        if (now >= phase_end && b.phase == PH_WARMUP) {
            hist_reset(&b.hist);
            b.ops = b.errors = 0;
            b.phase = PH_MEASURE;
            b.t0_ns = now;
            phase_end = now + (uint64_t)o->seconds * 1000000000;
        } else if (now >= phase_end && b.phase == PH_MEASURE) {
            b.t1_ns = now;
            b.phase = PH_DRAIN;
        }
        grpc_event ev = grpc_completion_queue_next(cq, raw_in_ms(50), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        raw_cli_call_t *c = ev.tag;
        b.inflight--;
        uint64_t start = c->start_ns;
        int status;
        if (raw_cli_finish(c, &status)) {
            bench_record(&b, start);
        } else {
            grpc_count_error(&b, err_by_status, status);
            bench_error(&b);
        }
        if (bench_running(&b) && !raw_cli_start(&b, ch, method, cq, c)) {
            b.dead_slots++;
            bench_error(&b);
        }
    }
    int rc = bench_report(&b);
    wy_free(calls);
    grpc_channel_destroy(ch);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    return rc;
}

/* ---- 4. Kafka ------------------------------------------------------------------------
 * kafka-produce: --conns messages in flight through wy_kafka_produce; latency is from
 * produce to its delivery report (acks=all, idempotent, the daemons' settings).
 * kafka-e2e: --conns messages in flight from produce to the same process's wy_kafka
 * consumer; the payload carries the monotonic send time. Each run uses a fresh topic
 * (auto-created by the broker on the first produce) and consumer group. */

typedef struct {
    wy_kafka_producer_t *prod;
    wy_kafka_consumer_t *cons;
    char topic[64], group[64];
    uint8_t *payload;
    size_t size;
} kafka_bench_t;

static const char *kafka_producer_new(bench_t *b, kafka_bench_t *kb)
{
    wy_kafka_producer_opts_t po = {.brokers = b->o->brokers, .producer = "bench/corebench"};
    const char *err = NULL;
    if (wy_kafka_producer_new(b->loop, &po, &kb->prod, &err) != WY_OK)
        return err ? err : "cannot create the producer";
    return NULL;
}

static void kafka_release(bench_t *b)
{
    kafka_bench_t *kb = b->impl;
    if (kb->cons)
        wy_kafka_consumer_close(kb->cons, 5000);
    if (kb->prod)
        wy_kafka_producer_close(kb->prod, 5000);
    kb->cons = NULL;
    kb->prod = NULL;
}

static void kafka_delivered(void *udata, int status, const char *event_id)
{
    slot_t *s = udata;
    WY_UNUSED(event_id);
    slot_done(s->b, s, status == WY_OK);
}

static int kafka_issue(bench_t *b, slot_t *s)
{
    kafka_bench_t *kb = b->impl;
    return wy_kafka_produce(kb->prod, kb->topic, NULL, "bench.message", kb->payload, b->o->size,
                            kafka_delivered, s, NULL);
}

static void kafka_probe_delivered(void *udata, int status, const char *event_id)
{
    bench_t *b = udata;
    WY_UNUSED(event_id);
    b->inflight--;
    if (status != WY_OK) {
        static char why[128];
        snprintf(why, sizeof why, "the first message was not delivered: %s", wy_strerror(status));
        bench_fail(b, why);
        return;
    }
    bench_ready(b);
}

/* Common setup of both Kafka benchmarks: a zeroed payload of size bytes, a fresh topic
 * and group named after kind, and the producer. */
static int kafka_setup(bench_t *b, kafka_bench_t *kb, const char *kind, size_t size,
                       const char **err)
{
    kb->payload = wy_calloc(1, size ? size : 1);
    kb->size = size;
    char id[37];
    wy_uuid4(id);
    snprintf(kb->topic, sizeof kb->topic, "wy.bench.%s.%.8s", kind, id);
    snprintf(kb->group, sizeof kb->group, "wy-bench-%.8s", id);
    if ((*err = kafka_producer_new(b, kb)))
        return WY_EINVAL;
    bench_note(b, "topic %s, %zu B payload", kb->topic, size);
    return WY_OK;
}

static int bench_kafka_produce(bench_t *b, const char **err)
{
    kafka_bench_t *kb = slots_bench_new(b, sizeof *kb, kafka_release, kafka_issue);
    if (kafka_setup(b, kb, "produce", b->o->size, err) != WY_OK)
        return WY_EINVAL;
    if (wy_kafka_produce(kb->prod, kb->topic, NULL, "bench.probe", kb->payload, b->o->size,
                         kafka_probe_delivered, b, NULL) != WY_OK) {
        bench_fail(b, "the first produce was refused");
        return WY_OK;
    }
    b->inflight++;
    return WY_OK;
}

static void e2e_send(bench_t *b);

/* Only failures matter here: success is seen by the consumer. */
static void e2e_delivered(void *udata, int status, const char *event_id)
{
    bench_t *b = udata;
    WY_UNUSED(event_id);
    if (status == WY_OK || b->phase == PH_DONE)
        return;
    b->inflight--;
    bench_error(b);
    e2e_send(b);
    bench_settle(b);
}

static void e2e_send(bench_t *b)
{
    kafka_bench_t *kb = b->impl;
    uint64_t now = wy_now_ns();
    memcpy(kb->payload, &now, sizeof now);
    if (!bench_running(b))
        return;
    if (wy_kafka_produce(kb->prod, kb->topic, NULL, "bench.message", kb->payload, kb->size,
                         e2e_delivered, b, NULL) == WY_OK) {
        b->inflight++;
        return;
    }
    b->dead_slots++;
    bench_error(b);
}

static void e2e_start(bench_t *b)
{
    for (unsigned i = 0; i < b->o->conns; i++)
        e2e_send(b);
}

static void e2e_handler(void *udata, const Wyvern__Envelope *env, wy_kafka_msg_t *msg)
{
    bench_t *b = udata;
    uint64_t sent = 0;
    bool probe = env->type && strcmp(env->type, "bench.probe") == 0;
    if (env->payload.len >= sizeof sent)
        memcpy(&sent, env->payload.data, sizeof sent);
    wy_kafka_msg_done(msg);
    if (probe) {
        bench_ready(b); /* the consumer owns its partitions and reads: load can start */
        return;
    }
    if (b->phase == PH_DONE)
        return;
    b->inflight--;
    bench_record(b, sent);
    e2e_send(b);
    bench_settle(b);
}

static void e2e_probe_delivered(void *udata, int status, const char *event_id)
{
    bench_t *b = udata;
    kafka_bench_t *kb = b->impl;
    WY_UNUSED(event_id);
    if (status != WY_OK) {
        bench_fail(b, "the first message was not delivered");
        return;
    }
    /* The topic exists now; subscribing before that would find no partitions. */
    const char *topics[] = {kb->topic, NULL};
    wy_kafka_consumer_opts_t co = {.brokers = b->o->brokers,
                                   .group_id = kb->group,
                                   .topics = topics,
                                   .handler = e2e_handler,
                                   .udata = b,
                                   .client_id = "bench/corebench",
                                   .max_in_flight = (int)(b->o->conns * 2 + 100)};
    const char *err = NULL;
    if (wy_kafka_consumer_new(b->loop, &co, &kb->cons, &err) != WY_OK)
        bench_fail(b, "cannot create the consumer");
}

static int bench_kafka_e2e(bench_t *b, const char **err)
{
    kafka_bench_t *kb = wy_calloc(1, sizeof *kb);
    b->impl = kb;
    b->release = kafka_release;
    b->start = e2e_start;
    size_t size = b->o->size < sizeof(uint64_t) ? sizeof(uint64_t) : b->o->size;
    if (kafka_setup(b, kb, "e2e", size, err) != WY_OK)
        return WY_EINVAL;
    if (wy_kafka_produce(kb->prod, kb->topic, NULL, "bench.probe", kb->payload, size,
                         e2e_probe_delivered, b, NULL) != WY_OK)
        bench_fail(b, "the first produce was refused");
    return WY_OK;
}

static void kafka_free(bench_t *b)
{
    kafka_bench_t *kb = b->impl;
    if (kb)
        wy_free(kb->payload);
}

/* ---- 5a. Redis SET / GET -------------------------------------------------------------- */

typedef struct {
    wy_redis_t *r;
    bool get;
    char *value;
} redis_bench_t;

static void redis_reply(int status, redisReply *reply, void *ud)
{
    slot_t *s = ud;
    redis_bench_t *rb = s->b->impl;
    bool ok = status == WY_OK && reply &&
              (rb->get ? reply->type == REDIS_REPLY_STRING : reply->type == REDIS_REPLY_STATUS);
    slot_done(s->b, s, ok);
}

static int redis_issue(bench_t *b, slot_t *s)
{
    redis_bench_t *rb = b->impl;
    char key[32];
    snprintf(key, sizeof key, "wybench:%u", s->idx);
    if (rb->get)
        return wy_redis_command(rb->r, redis_reply, s, "GET %s", key);
    return wy_redis_command(rb->r, redis_reply, s, "SET %s %b", key, rb->value, (size_t)b->o->size);
}

static void redis_seeded(int status, redisReply *reply, void *ud)
{
    bench_t *b = ud;
    WY_UNUSED(reply);
    b->inflight--;
    if (status == WY_OK)
        bench_ready(b);
    else
        bench_fail(b, "could not write the keys GET reads");
}

static void redis_state(wy_redis_t *r, int health, void *ud)
{
    bench_t *b = ud;
    redis_bench_t *rb = b->impl;
    if (health != WY_OK || b->phase != PH_SETUP || b->inflight > 0)
        return;
    /* One MSET gives every slot's key a value, so GET measures hits. */
    unsigned n = b->o->conns;
    const char **argv = wy_calloc(1 + 2 * (size_t)n, sizeof(char *));
    size_t *lens = wy_calloc(1 + 2 * (size_t)n, sizeof(size_t));
    char(*keys)[32] = wy_calloc(n, 32);
    argv[0] = "MSET";
    lens[0] = 4;
    for (unsigned i = 0; i < n; i++) {
        snprintf(keys[i], 32, "wybench:%u", i);
        argv[1 + 2 * i] = keys[i];
        lens[1 + 2 * i] = strlen(keys[i]);
        argv[2 + 2 * i] = rb->value;
        lens[2 + 2 * i] = b->o->size;
    }
    if (wy_redis_command_argv(r, redis_seeded, b, (int)(1 + 2 * n), argv, lens) == WY_OK)
        b->inflight++;
    else
        bench_fail(b, "MSET refused");
    wy_free(keys);
    wy_free(lens);
    wy_free(argv);
}

static void redis_release(bench_t *b)
{
    redis_bench_t *rb = b->impl;
    if (rb->r)
        wy_redis_close(rb->r, NULL, NULL);
    rb->r = NULL;
}

static int bench_redis(bench_t *b, bool get, const char **err)
{
    redis_bench_t *rb = slots_bench_new(b, sizeof *rb, redis_release, redis_issue);
    rb->get = get;
    rb->value = filled_text(b->o->size, 'v');
    wy_redis_opts_t ro = {.on_state = redis_state, .state_ud = b};
    if (!have_url(b, err) || wy_redis_create(b->loop, b->o->url, &ro, &rb->r, err) != WY_OK)
        return WY_EINVAL;
    bench_note(b, "%u B values", b->o->size);
    return WY_OK;
}

static void redis_free(bench_t *b)
{
    redis_bench_t *rb = b->impl;
    if (rb)
        wy_free(rb->value);
}

/* ---- 5b. PostgreSQL SELECT 1 / 1-row INSERT ------------------------------------------- */

typedef struct {
    wy_pg_t *pg;
    bool insert;
    char *body;
    char *batch; /* pg-batch: the bytea[] literal of --rows event-sized payloads */
} pg_bench_t;

static void pg_reply(int status, const PGresult *res, const char *err, void *ud)
{
    slot_t *s = ud;
    WY_UNUSED(res);
    WY_UNUSED(err);
    slot_done(s->b, s, status == WY_OK);
}

static int pg_issue(bench_t *b, slot_t *s)
{
    pg_bench_t *pb = b->impl;
    if (pb->batch) {
        /* The shape of wy-actor's event insert: uuid, seq, bytea payload per row. */
        const char *params[] = {pb->batch};
        return wy_pg_query(pb->pg,
                           "INSERT INTO wybench_events (actor_id, seq, event_id, payload) SELECT "
                           "gen_random_uuid(), 1, gen_random_uuid(), p FROM unnest($1::bytea[]) p",
                           1, params, pg_reply, s);
    }
    if (!pb->insert)
        return wy_pg_query(pb->pg, "SELECT 1", 0, NULL, pg_reply, s);
    const char *params[] = {pb->body};
    return wy_pg_query(pb->pg, "INSERT INTO wybench_rows (body) VALUES ($1)", 1, params, pg_reply,
                       s);
}

/* Sends a setup statement (counted in flight); the benchmark fails when it is refused. */
static void pg_setup_query(bench_t *b, const char *sql, wy_pg_cb cb)
{
    pg_bench_t *pb = b->impl;
    if (wy_pg_query(pb->pg, sql, 0, NULL, cb, b) == WY_OK)
        b->inflight++;
    else
        bench_fail(b, "setup statement refused");
}

/* A setup statement finished: false (and the benchmark failed) when it did not succeed. */
static bool pg_setup_done(bench_t *b, int status, const char *err)
{
    b->inflight--;
    if (status == WY_OK)
        return true;
    static char why[256];
    snprintf(why, sizeof why, "setup statement failed: %s", err ? err : wy_strerror(status));
    bench_fail(b, why);
    return false;
}

static void pg_setting(int status, const PGresult *res, const char *err, void *ud)
{
    bench_t *b = ud;
    if (!pg_setup_done(b, status, err))
        return;
    if (PQntuples(res) == 1)
        bench_note(b, ", synchronous_commit=%s", PQgetvalue(res, 0, 0));
    bench_ready(b);
}

static void pg_table(int status, const PGresult *res, const char *err, void *ud)
{
    bench_t *b = ud;
    WY_UNUSED(res);
    if (pg_setup_done(b, status, err))
        pg_setup_query(b, "SHOW synchronous_commit", pg_setting);
}

static void pg_release(bench_t *b)
{
    pg_bench_t *pb = b->impl;
    if (pb->pg)
        wy_pg_close(pb->pg, NULL, NULL);
    pb->pg = NULL;
}

static int bench_pg(bench_t *b, bool insert, bool batch, const char **err)
{
    pg_bench_t *pb = slots_bench_new(b, sizeof *pb, pg_release, pg_issue);
    pb->insert = insert;
    pb->body = filled_text(b->o->size, 'r');
    wy_pg_opts_t po = {.size = b->o->pool};
    if (!have_url(b, err) || wy_pg_create(b->loop, b->o->url, &po, &pb->pg, err) != WY_OK)
        return WY_EINVAL;
    bench_note(b, "pool %u", b->o->pool);
    const char *ddl = "CREATE TABLE IF NOT EXISTS wybench_rows (id bigserial PRIMARY KEY, "
                      "body text NOT NULL, at timestamptz NOT NULL DEFAULT now())";
    if (batch) {
        /* The indexes of actor.events: (actor_id, seq) and event_id. Payload: 24 bytes,
         * the size of a packed currency_earned event. */
        b->per_op = b->o->rows;
        size_t one = strlen("\"\\\\x\",") + 48;
        pb->batch = wy_malloc(one * b->o->rows + 3);
        char *w = pb->batch;
        *w++ = '{';
        for (unsigned i = 0; i < b->o->rows; i++)
            w += sprintf(w, "%s\"\\\\x%048x\"", i ? "," : "", i);
        *w++ = '}';
        *w = 0;
        bench_note(b, ", %u rows per INSERT (ops are rows)", b->o->rows);
        ddl = "CREATE TABLE IF NOT EXISTS wybench_events (actor_id uuid NOT NULL, seq bigint NOT "
              "NULL, event_id uuid NOT NULL UNIQUE, payload bytea NOT NULL, ts timestamptz NOT "
              "NULL DEFAULT now(), PRIMARY KEY (actor_id, seq))";
    }
    /* Statements queue until the first connection is up. */
    pg_setup_query(b, ddl, pg_table);
    return WY_OK;
}

static void pg_free(bench_t *b)
{
    pg_bench_t *pb = b->impl;
    if (pb) {
        wy_free(pb->body);
        wy_free(pb->batch);
    }
}

/* ---- 6. wy-actor ------------------------------------------------------------------------
 * actor-apply: --actors characters are created first; then --conns Apply commands in
 * flight (earn_currency, one event each, a fresh idempotency key each), spread over the
 * characters round robin: commands persisted per second and their latency.
 * actor-load: --actors characters with --events events each are written first; then
 * GetCharacter round robin, 1 in flight is meant, against a wy-actor that holds one
 * actor in memory (WY_ACTOR_MAX_RESIDENT=1), so every call loads a character from its
 * latest snapshot and the events after it.
 * actor-txn: --actors characters are created and given gold first; then --conns Transact
 * calls in flight, each a trade of 1 gold each way between two characters of overlapping
 * pairs (a fresh txn id each): two-actor transactions per second and their latency. */

#define ACTOR_METHOD(m)      "/wyvern.actor.Actor/" m
#define ACTOR_SETUP_INFLIGHT 48

typedef struct {
    grpc_bench_t g; /* first: grpc_release works on it (actor_release) */
    bool load;
    bool txn;             /* actor-txn */
    bool batch;           /* actor-batch */
    bool gameplay;        /* actor-gameplay */
    unsigned funded;      /* actor-txn setup: characters given gold (answers) */
    unsigned funding;     /* actor-txn setup: funds issued */
    char run[12];         /* this run's prefix of names and keys */
    char (*ids)[40];      /* created characters */
    char (*accounts)[40]; /* their accounts */
    unsigned created;     /* creates answered */
    unsigned issued;      /* creates issued */
    unsigned sent;        /* actor-load setup: writes issued to the character being filled */
    unsigned writing;     /* actor-load setup: the character being filled */
    unsigned written;     /* its writes answered */
    uint64_t next;        /* round robin / key counter */
    /* Errors of the measured phase by gRPC status (17 codes + "no status"), with the
     * first message of each: the note names them, so a reader sees what failed. */
    uint64_t err_count[18];
    char err_msg[18][96];
    /* actor-gameplay */
    wy_kafka_producer_t *prod;
    uv_timer_t feed; /* produces at --rate (GP_TICK_MS ticks); reads /metrics every 100 ms */
    bool feed_open;
    uint64_t feed_t0_ns; /* the feed's start */
    uint64_t produced;   /* events accepted by the producer */
    uint64_t skipped;    /* --rate: events not produced, GP_BACKLOG ahead already */
    uint64_t lost;       /* produce refusals and failed deliveries */
    uint64_t done_base;  /* the daemon's events done before the run */
    uint64_t done_seen;  /* ... at the latest read of /metrics, minus done_base */
    unsigned ticks;
    struct gp_scrape {
        double applied, refused, duplicate;
        double le[48], cum[48]; /* the lag histogram's bounds (+Inf last) and counts */
        size_t n;
    } m0, m1;
    uint64_t produced0, lost0; /* at the start of the measured phase */
} actor_bench_t;

static void actor_setup_step(bench_t *b);
static bool gp_setup_done(bench_t *b);

static int actor_earn_n(actor_bench_t *ab, const char *actor_id, uint64_t amount,
                        wy_grpc_reply_cb cb, void *arg)
{
    char key[48];
    snprintf(key, sizeof key, "%s-%" PRIu64, ab->run, ab->next++);
    Wyvern__Actor__EarnCurrency e = WYVERN__ACTOR__EARN_CURRENCY__INIT;
    e.amount = amount;
    Wyvern__Actor__ApplyRequest r = WYVERN__ACTOR__APPLY_REQUEST__INIT;
    r.actor_id = (char *)actor_id;
    r.idempotency_key = key;
    r.command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_EARN_CURRENCY;
    r.earn_currency = &e;
    return wy_grpc_call(ab->g.ch, ACTOR_METHOD("Apply"), &r.base,
                        &wyvern__actor__apply_response__descriptor, 10000, NULL, 0, cb, arg);
}

static int actor_earn(actor_bench_t *ab, const char *actor_id, wy_grpc_reply_cb cb, void *arg)
{
    return actor_earn_n(ab, actor_id, 1, cb, arg);
}

/* One trade of 1 gold each way between character k and another one (overlapping pairs). */
static int actor_trade(actor_bench_t *ab, wy_grpc_reply_cb cb, void *arg)
{
    uint64_t k = ab->next++;
    unsigned n = ab->created;
    unsigned a = (unsigned)(k % n), b = (unsigned)((k + 1 + (k / n) % (n - 1)) % n);
    char txn[48];
    snprintf(txn, sizeof txn, "%s-t%" PRIu64, ab->run, k);
    Wyvern__Actor__TradeSide sa = WYVERN__ACTOR__TRADE_SIDE__INIT,
                             sb = WYVERN__ACTOR__TRADE_SIDE__INIT;
    sa.actor_id = ab->ids[a];
    sa.gold = 1;
    sb.actor_id = ab->ids[b];
    sb.gold = 1;
    Wyvern__Actor__Trade t = WYVERN__ACTOR__TRADE__INIT;
    t.a = &sa;
    t.b = &sb;
    Wyvern__Actor__TransactRequest r = WYVERN__ACTOR__TRANSACT_REQUEST__INIT;
    r.txn_id = txn;
    r.kind_case = WYVERN__ACTOR__TRANSACT_REQUEST__KIND_TRADE;
    r.trade = &t;
    return wy_grpc_call(ab->g.ch, ACTOR_METHOD("Transact"), &r.base,
                        &wyvern__actor__transact_response__descriptor, 10000, NULL, 0, cb, arg);
}

static void actor_reply(int err, int status, const char *message, const ProtobufCMessage *resp,
                        void *arg)
{
    slot_t *s = arg;
    WY_UNUSED(resp);
    if (err != WY_OK && s->b->phase == PH_MEASURE) {
        actor_bench_t *ab = s->b->impl;
        unsigned k = status >= 0 && status < 17 ? (unsigned)status : 17;
        if (!ab->err_count[k]++)
            snprintf(ab->err_msg[k], sizeof ab->err_msg[k], "%s",
                     message && *message ? message : wy_strerror(err));
    }
    slot_done(s->b, s, err == WY_OK);
}

/* The errors by status, appended to the note ("; errors: 14 x 512 (msg)"). */
static void actor_note_errors(bench_t *b)
{
    actor_bench_t *ab = b->impl;
    bool first = true;
    for (unsigned k = 0; ab && k < 18; k++) {
        if (!ab->err_count[k])
            continue;
        char msg[96];
        size_t j = 0;
        for (const char *p = ab->err_msg[k]; *p && j + 1 < sizeof msg; p++)
            msg[j++] = *p == '"' || *p == '\\' ? '\'' : *p; /* the note is a JSON string */
        msg[j] = 0;
        bench_note(b, "%s status %u x %" PRIu64 " (%s)", first ? "; errors:" : ",", k,
                   ab->err_count[k], msg);
        first = false;
    }
}

/* The error of one command (status k = gRPC code, 17 = none) for the note. */
static void actor_count_error(actor_bench_t *ab, unsigned k, const char *message)
{
    if (!ab->err_count[k]++)
        snprintf(ab->err_msg[k], sizeof ab->err_msg[k], "%s", message ? message : "");
}

/* An ApplyBatch answer: the call's latency is each command's; ops are the commands that
 * succeeded, errors the others. */
static void actor_batch_reply(int err, int status, const char *message,
                              const ProtobufCMessage *resp, void *arg)
{
    slot_t *s = arg;
    bench_t *b = s->b;
    actor_bench_t *ab = b->impl;
    const Wyvern__Actor__ApplyBatchResponse *out = (const Wyvern__Actor__ApplyBatchResponse *)resp;
    uint64_t ok = 0, n = b->o->batch;
    bool measuring = b->phase == PH_MEASURE;
    if (err == WY_OK && out) {
        for (size_t i = 0; i < out->n_results; i++) {
            const Wyvern__Actor__ApplyResult *r = out->results[i];
            if (r->code == 0)
                ok++;
            else if (measuring)
                actor_count_error(ab, r->code > 0 && r->code < 17 ? (unsigned)r->code : 17,
                                  r->message);
        }
    } else if (measuring) {
        actor_count_error(ab, status >= 0 && status < 17 ? (unsigned)status : 17,
                          message && *message ? message : wy_strerror(err));
    }
    b->inflight--;
    if (measuring) {
        if (ok) {
            hist_add(&b->hist, wy_now_ns() - s->start_ns);
            b->ops += ok;
        }
        b->errors += n - ok;
    }
    slot_issue(b, s);
    bench_settle(b);
}

/* One ApplyBatch call: --batch earn_currency commands over consecutive characters, fresh
 * keys, without the characters in the answer (what a game server saving progress needs). */
static int actor_apply_batch(bench_t *b, slot_t *s)
{
    actor_bench_t *ab = b->impl;
    unsigned n = b->o->batch;
    Wyvern__Actor__ApplyRequest *cmds = wy_calloc(n, sizeof *cmds);
    Wyvern__Actor__ApplyRequest **cp = wy_calloc(n, sizeof *cp);
    Wyvern__Actor__EarnCurrency *earn = wy_calloc(n, sizeof *earn);
    char(*keys)[48] = wy_calloc(n, sizeof *keys);
    for (unsigned i = 0; i < n; i++) {
        uint64_t k = ab->next++;
        snprintf(keys[i], sizeof keys[i], "%s-%" PRIu64, ab->run, k);
        wyvern__actor__earn_currency__init(&earn[i]);
        earn[i].amount = 1;
        wyvern__actor__apply_request__init(&cmds[i]);
        cmds[i].actor_id = ab->ids[k % ab->created];
        cmds[i].idempotency_key = keys[i];
        cmds[i].command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_EARN_CURRENCY;
        cmds[i].earn_currency = &earn[i];
        cp[i] = &cmds[i];
    }
    Wyvern__Actor__ApplyBatchRequest r = WYVERN__ACTOR__APPLY_BATCH_REQUEST__INIT;
    r.commands = cp;
    r.n_commands = n;
    r.omit_character = true;
    int rc = wy_grpc_call(ab->g.ch, ACTOR_METHOD("ApplyBatch"), &r.base,
                          &wyvern__actor__apply_batch_response__descriptor, 10000, NULL, 0,
                          actor_batch_reply, s);
    wy_free(keys);
    wy_free(earn);
    wy_free(cp);
    wy_free(cmds);
    return rc;
}

static int actor_issue(bench_t *b, slot_t *s)
{
    actor_bench_t *ab = b->impl;
    const char *id = ab->ids[ab->next % ab->created];
    if (ab->batch)
        return actor_apply_batch(b, s);
    if (ab->txn)
        return actor_trade(ab, actor_reply, s);
    if (!ab->load)
        return actor_earn(ab, id, actor_reply, s);
    ab->next++;
    Wyvern__Actor__GetCharacterRequest r = WYVERN__ACTOR__GET_CHARACTER_REQUEST__INIT;
    r.actor_id = (char *)id;
    return wy_grpc_call(ab->g.ch, ACTOR_METHOD("GetCharacter"), &r.base,
                        &wyvern__actor__character__descriptor, 10000, NULL, 0, actor_reply, s);
}

static void actor_setup_failed(bench_t *b, int err, int status, const char *message)
{
    static char why[256];
    snprintf(why, sizeof why, "setup call failed: %s (gRPC status %d: %s)", wy_strerror(err),
             status, message);
    bench_fail(b, why);
}

static void actor_created(int err, int status, const char *message, const ProtobufCMessage *resp,
                          void *arg)
{
    bench_t *b = arg;
    actor_bench_t *ab = b->impl;
    b->inflight--;
    if (err != WY_OK) {
        actor_setup_failed(b, err, status, message);
        return;
    }
    const Wyvern__Actor__Character *c = (const Wyvern__Actor__Character *)resp;
    snprintf(ab->accounts[ab->created], sizeof ab->accounts[0], "%s", c->account_id);
    snprintf(ab->ids[ab->created++], sizeof ab->ids[0], "%s", c->actor_id);
    actor_setup_step(b);
}

static void actor_written(int err, int status, const char *message, const ProtobufCMessage *resp,
                          void *arg)
{
    bench_t *b = arg;
    actor_bench_t *ab = b->impl;
    WY_UNUSED(resp);
    b->inflight--;
    if (err != WY_OK) {
        actor_setup_failed(b, err, status, message);
        return;
    }
    ab->written++;
    actor_setup_step(b);
}

/* Setup, step by step from each answer: the creates (ACTOR_SETUP_INFLIGHT at a time),
 * then for actor-load the events of one character after the other. */
static void actor_setup_step(bench_t *b)
{
    actor_bench_t *ab = b->impl;
    const opts_t *o = b->o;
    if (!bench_running(b))
        return;
    while (ab->issued < o->actors && b->inflight < ACTOR_SETUP_INFLIGHT) {
        unsigned i = ab->issued++;
        char name[24], account[48];
        snprintf(name, sizeof name, "b%s%u", ab->run, i);
        /* At most 8 characters per account (WY_ACTOR_MAX_CHARACTERS). */
        snprintf(account, sizeof account, "00000000-0000-4000-8000-%s%05x", ab->run, i / 8);
        Wyvern__Actor__CreateCharacterRequest r = WYVERN__ACTOR__CREATE_CHARACTER_REQUEST__INIT;
        r.account_id = account;
        r.name = name;
        r.class_name = "bench";
        if (wy_grpc_call(ab->g.ch, ACTOR_METHOD("CreateCharacter"), &r.base,
                         &wyvern__actor__character__descriptor, 10000, NULL, 0, actor_created,
                         b) != WY_OK) {
            bench_fail(b, "a CreateCharacter call was refused");
            return;
        }
        b->inflight++;
    }
    if (ab->created < o->actors)
        return;
    if (ab->txn) {
        while (ab->funding < ab->created && b->inflight < ACTOR_SETUP_INFLIGHT) {
            if (actor_earn_n(ab, ab->ids[ab->funding++], 1000000000, actor_written, b) != WY_OK) {
                bench_fail(b, "an Apply call was refused");
                return;
            }
            b->inflight++;
        }
        if (ab->written < ab->created)
            return;
        bench_note(b, "%u characters, trades of 1 gold each way over overlapping pairs", o->actors);
    } else if (ab->load) {
        while (ab->writing < ab->created) {
            if (ab->written >= o->events) {
                if (b->inflight)
                    return; /* one character at a time: it stays the resident one */
                ab->writing++;
                ab->written = 0;
                ab->sent = 0;
                continue;
            }
            while (ab->sent < o->events && b->inflight < ACTOR_SETUP_INFLIGHT) {
                ab->sent++;
                if (actor_earn(ab, ab->ids[ab->writing], actor_written, b) != WY_OK) {
                    bench_fail(b, "an Apply call was refused");
                    return;
                }
                b->inflight++;
            }
            return;
        }
        bench_note(b, "%u characters of %u events, each load from its snapshot + tail", o->actors,
                   o->events + 1);
    } else if (ab->gameplay) {
        if (!gp_setup_done(b))
            return;
    } else if (ab->batch) {
        bench_note(b,
                   "%u characters, %u commands per call (1 event each, omit_character), "
                   "latency per call",
                   o->actors, o->batch);
    } else {
        bench_note(b, "%u characters, 1 event per command", o->actors);
    }
    if (b->inflight == 0)
        bench_ready(b);
}

/* ---- actor-gameplay: events through Kafka wy.gameplay to wy-actor's consumer ----------
 * The characters created first get currency_gained events (1 gold each, key = the character)
 * produced to wy.gameplay at --rate per second, or as fast as the daemon persists them (--rate 0:
 * the produced events are kept 20,000 ahead of those the daemon is done with). What is measured
 * comes from the daemon's /metrics, read (a blocking GET, ~1 ms) at the start and the end of the
 * measured phase (and every 100 ms, to keep the backlog bounded): the events done
 * (wy_actor_gameplay_total: applied, refused, duplicate) and the lag histogram
 * wy_actor_gameplay_lag_seconds (the Envelope's timestamp, whole ms, to the effect committed).
 * Quantiles are bucket upper bounds. After the phase the feed stops and the run waits for the
 * daemon to finish the backlog. */

#define GP_BACKLOG   20000
#define GP_WARMUP_MS 3000
#define GP_DRAIN_MS  60000 /* the backlog (at most GP_BACKLOG) persisted before the end */
#define GP_SCRAPE_MS 100
#define GP_TICK_MS   2 /* the feed's period: events go out in bursts of rate x 2 ms */

/* GET /metrics from host:port into the scrape. False when it cannot be read. */
static bool gp_scrape(const char *target, struct gp_scrape *m)
{
    struct sockaddr_in sa;
    if (!parse_target(target, &sa))
        return false;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    static const char req[] =
        "GET /metrics HTTP/1.1\r\nHost: wy-actor\r\nConnection: close\r\n\r\n";
    size_t cap = 1 << 16, len = 0;
    char *buf = NULL;
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
              write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1);
    if (ok) {
        buf = wy_malloc(cap);
        for (;;) {
            if (len + 1 == cap)
                buf = wy_realloc(buf, cap *= 2);
            ssize_t r = read(fd, buf + len, cap - len - 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                ok = r == 0;
                break;
            }
            len += (size_t)r;
        }
        buf[len] = 0;
    }
    close(fd);
    memset(m, 0, sizeof *m);
    const char *body = ok ? strstr(buf, "\r\n\r\n") : NULL;
    for (const char *line = body; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        static const char g[] = "wy_actor_gameplay_total{result=\"";
        static const char h[] = "wy_actor_gameplay_lag_seconds_bucket{le=\"";
        if (!strncmp(line, g, sizeof g - 1)) {
            const char *res = line + sizeof g - 1, *sp = strchr(res, ' ');
            double v = sp ? strtod(sp + 1, NULL) : 0;
            if (!strncmp(res, "applied\"", 8))
                m->applied = v;
            else if (!strncmp(res, "refused\"", 8))
                m->refused = v;
            else if (!strncmp(res, "duplicate\"", 10))
                m->duplicate = v;
        } else if (!strncmp(line, h, sizeof h - 1) && m->n < WY_ARRAY_LEN(m->le)) {
            const char *le = line + sizeof h - 1, *sp = strchr(le, ' ');
            m->le[m->n] = !strncmp(le, "+Inf", 4) ? 1e9 : strtod(le, NULL);
            m->cum[m->n++] = sp ? strtod(sp + 1, NULL) : 0;
        }
    }
    wy_free(buf);
    return ok && body && m->n > 0;
}

static uint64_t gp_done_of(const struct gp_scrape *m)
{
    return (uint64_t)(m->applied + m->refused + m->duplicate);
}

static void gp_delivered(void *udata, int status, const char *event_id)
{
    actor_bench_t *ab = udata;
    WY_UNUSED(event_id);
    if (status != WY_OK)
        ab->lost++;
}

/* One event for character k % created. */
static int gp_produce(actor_bench_t *ab, uint64_t k)
{
    unsigned i = (unsigned)(k % ab->created);
    Wyvern__Gameplay__CurrencyGained cg = WYVERN__GAMEPLAY__CURRENCY_GAINED__INIT;
    cg.amount = 1;
    cg.source = "bench";
    Wyvern__Gameplay__GameplayEvent ev = WYVERN__GAMEPLAY__GAMEPLAY_EVENT__INIT;
    ev.account_id = ab->accounts[i];
    ev.character_id = ab->ids[i];
    ev.kind_case = WYVERN__GAMEPLAY__GAMEPLAY_EVENT__KIND_CURRENCY_GAINED;
    ev.currency_gained = &cg;
    uint8_t buf[256];
    size_t len = wyvern__gameplay__gameplay_event__get_packed_size(&ev);
    if (len > sizeof buf)
        return WY_ETOOBIG;
    wyvern__gameplay__gameplay_event__pack(&ev, buf);
    return wy_kafka_produce(ab->prod, "wy.gameplay", ab->ids[i], "gameplay.event", buf, len,
                            gp_delivered, ab, NULL);
}

static void gp_feed_tick(uv_timer_t *t)
{
    bench_t *b = t->data;
    actor_bench_t *ab = b->impl;
    bool feeding = bench_running(b);
    if (++ab->ticks % (GP_SCRAPE_MS / GP_TICK_MS) == 0) {
        struct gp_scrape m;
        if (gp_scrape(b->o->ops, &m)) {
            uint64_t d = gp_done_of(&m);
            ab->done_seen = d > ab->done_base ? d - ab->done_base : 0;
        }
    }
    if (!feeding) { /* draining: done once the daemon has every event */
        uint64_t want = ab->produced - ab->lost;
        b->inflight = ab->done_seen >= want ? 0 : want - ab->done_seen;
        bench_settle(b);
        return;
    }
    uint64_t target;
    if (b->o->rate) {
        /* Open loop, but never more than GP_BACKLOG ahead of the daemon: the events a
         * daemon that fell behind could not take are skipped (the produced rate in the
         * note shows it), so the run and its drain stay bounded. */
        double el = (double)(wy_now_ns() - ab->feed_t0_ns) / 1e9;
        target = (uint64_t)(el * b->o->rate) - ab->skipped;
        uint64_t cap = ab->done_seen + GP_BACKLOG;
        if (target > cap) {
            ab->skipped += target - cap;
            target = cap;
        }
    } else {
        target = ab->done_seen + GP_BACKLOG;
    }
    for (unsigned n = 0; ab->produced < target && n < 20000; n++) {
        int rc = gp_produce(ab, ab->produced);
        if (rc == WY_EBUSY)
            break; /* the producer's queue is full: next tick */
        if (rc != WY_OK) {
            ab->lost++;
            bench_error(b);
        }
        ab->produced++;
    }
}

static void gp_start(bench_t *b)
{
    actor_bench_t *ab = b->impl;
    ab->feed_t0_ns = wy_now_ns();
    uv_timer_start(&ab->feed, gp_feed_tick, GP_TICK_MS, GP_TICK_MS);
}

/* The measured phase: the daemon's counters and lag histogram at its start and end. */
static void gp_measure(bench_t *b, bool start)
{
    actor_bench_t *ab = b->impl;
    struct gp_scrape *m = start ? &ab->m0 : &ab->m1;
    if (!gp_scrape(b->o->ops, m)) {
        bench_fail(b, "cannot read wy-actor's /metrics (--ops)");
        return;
    }
    if (start) {
        ab->produced0 = ab->produced;
        ab->lost0 = ab->lost;
        return;
    }
    if (ab->m0.n != m->n) {
        bench_fail(b, "the lag histogram changed shape during the run");
        return;
    }
    /* Ops: events the daemon finished in the phase; latency: the histogram's increase,
     * each event at its bucket's upper bound. */
    hist_reset(&b->hist);
    double prev = 0, within10 = 0, total = m->cum[m->n - 1] - ab->m0.cum[m->n - 1];
    for (size_t i = 0; i < m->n; i++) {
        double c = m->cum[i] - ab->m0.cum[i];
        uint64_t k = (uint64_t)(c - prev);
        uint64_t ns = (uint64_t)((m->le[i] < 1e8 ? m->le[i] : 120.0) * 1e9);
        for (uint64_t j = 0; j < k; j++)
            hist_add(&b->hist, ns);
        if (m->le[i] <= 0.01 + 1e-9)
            within10 = c;
        prev = c;
    }
    b->ops = (uint64_t)(m->applied - ab->m0.applied);
    b->errors = (uint64_t)(m->refused - ab->m0.refused) + (ab->lost - ab->lost0);
    double secs = (double)(b->t1_ns - b->t0_ns) / 1e9;
    bench_note(b,
               "; produced %.0f/s%s; %.2f%% of events within 10 ms; backlog at the end %" PRIu64
               "; lag = Envelope.timestamp_ms (whole ms) to commit, from "
               "wy_actor_gameplay_lag_seconds (quantiles: bucket upper bounds)",
               (double)(ab->produced - ab->produced0) / secs,
               b->o->rate ? "" : " (kept 20,000 ahead of the daemon)",
               total > 0 ? 100.0 * within10 / total : 0.0,
               (ab->produced - ab->lost) - (gp_done_of(m) - ab->done_base));
}

static void gp_feed_closed(uv_handle_t *h)
{
    WY_UNUSED(h);
}

static bool gp_setup_done(bench_t *b)
{
    actor_bench_t *ab = b->impl;
    const opts_t *o = b->o;
    struct gp_scrape m;
    if (!gp_scrape(o->ops, &m)) {
        bench_fail(b, "cannot read wy-actor's /metrics (--ops HOST:PORT)");
        return false;
    }
    ab->done_base = gp_done_of(&m);
    bench_note(b, "%u characters, 1 event each (currency_gained), %s", o->actors,
               o->rate ? "open loop" : "saturated");
    return true;
}

/* The end of the run: the errors into the note, then the channel (and for actor-gameplay
 * the feed and the producer) go. */
static void actor_release(bench_t *b)
{
    actor_bench_t *ab = b->impl;
    actor_note_errors(b);
    if (ab->feed_open) {
        uv_timer_stop(&ab->feed);
        uv_close((uv_handle_t *)&ab->feed, gp_feed_closed);
        ab->feed_open = false;
    }
    if (ab->prod)
        wy_kafka_producer_close(ab->prod, 5000);
    ab->prod = NULL;
    grpc_release(b);
}

static int bench_actor(bench_t *b, bool load, bool txn, const char **err)
{
    bool batch = !strcmp(b->o->bench, "actor-batch");
    bool gameplay = !strcmp(b->o->bench, "actor-gameplay");
    if (gameplay && (!b->o->brokers || !b->o->ops)) {
        *err = "actor-gameplay needs --brokers and --ops";
        return WY_EINVAL;
    }
    if (txn && b->o->actors < 2) {
        *err = "--actors: actor-txn needs at least 2";
        return WY_EINVAL;
    }
    actor_bench_t *ab = slots_bench_new(b, sizeof *ab, actor_release, actor_issue);
    ab->load = load;
    ab->txn = txn;
    ab->batch = batch;
    ab->gameplay = gameplay;
    if (gameplay) {
        /* The consumer's first fetches and the resident characters settle first: at least
         * 3 s of warm-up, so the measured phase is the steady state. */
        if (b->o->warmup_ms < GP_WARMUP_MS)
            ((opts_t *)b->o)->warmup_ms = GP_WARMUP_MS;
        b->start = gp_start;
        b->drain_ms = GP_DRAIN_MS;
        b->measure = gp_measure;
        uv_timer_init(b->loop, &ab->feed);
        ab->feed.data = b;
        ab->feed_open = true;
        wy_kafka_producer_opts_t po = {.brokers = b->o->brokers, .producer = "bench/corebench"};
        if (wy_kafka_producer_new(b->loop, &po, &ab->prod, err) != WY_OK)
            return WY_EINVAL;
    }
    ab->ids = wy_calloc(b->o->actors, sizeof *ab->ids);
    ab->accounts = wy_calloc(b->o->actors, sizeof *ab->accounts);
    uint32_t r;
    wy_random(&r, sizeof r);
    snprintf(ab->run, sizeof ab->run, "%07x", r & 0xfffffff);
    if (wy_grpc_rt_new(b->loop, &ab->g.rt) != WY_OK) {
        *err = "gRPC runtime did not start";
        return WY_EINTERNAL;
    }
    if (!b->o->target || wy_grpc_channel_new(ab->g.rt, b->o->target, NULL, &ab->g.ch) != WY_OK) {
        *err = "--target: want HOST:PORT of wy-actor's gRPC";
        return WY_EINVAL;
    }
    actor_setup_step(b);
    return WY_OK;
}

static int run_actor_apply(bench_t *b, const char **err)
{
    return bench_actor(b, false, false, err);
}

static int run_actor_load(bench_t *b, const char **err)
{
    return bench_actor(b, true, false, err);
}

static int run_actor_txn(bench_t *b, const char **err)
{
    return bench_actor(b, false, true, err);
}

static int run_actor_batch(bench_t *b, const char **err)
{
    return bench_actor(b, false, false, err);
}

static int run_actor_gameplay(bench_t *b, const char **err)
{
    return bench_actor(b, false, false, err);
}

static void actor_free(bench_t *b)
{
    actor_bench_t *ab = b->impl;
    if (ab) {
        wy_free(ab->ids);
        wy_free(ab->accounts);
    }
}

/* ---- 6. Threads: wy_mailbox hand-off, wy_tick jitter ----------------------------------
 * mailbox: --conns producer threads push as fast as they can into one loop mailbox (the
 * shape of the gRPC and worker hand-offs); each message carries its push time, so the
 * latency is push -> callback on the loop. A producer reuses a message once the loop has
 * delivered it (MB_RING per producer) and retries a refused push (counted in the note).
 * tick: a wy_tick at --conns Hz on its own thread with an empty body; each tick's lateness
 * (wake-up jitter) goes to the loop through a mailbox and is the "latency" reported. */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define MB_RING     1024
#define MB_CAPACITY 4096
#define MB_MAX_PROD 64

typedef struct mb_bench mb_bench_t;

typedef struct {
    wy_mailbox_node_t node;
    atomic_int busy; /* pushed and not delivered yet */
    uint64_t start_ns;
} mb_msg_t;

typedef struct {
    mb_bench_t *mb;
    pthread_t th;
    bool started;
    uint64_t refused;
    mb_msg_t ring[MB_RING];
} mb_producer_t;

struct mb_bench {
    bench_t *b;
    wy_mailbox_t *box;
    atomic_int stop;
    unsigned n;
    mb_producer_t *prod;
    /* tick */
    wy_tick_t tick;
    pthread_t tick_th;
    bool tick_started;
    unsigned next_msg;
    mb_msg_t tick_msgs[MB_RING];
};

static void mb_delivered(wy_mailbox_node_t *node, void *ud, int status)
{
    mb_bench_t *mb = ud;
    mb_msg_t *m = WY_CONTAINER_OF(node, mb_msg_t, node);
    if (status == WY_OK)
        bench_record(mb->b, m->start_ns);
    atomic_store_explicit(&m->busy, 0, memory_order_release);
}

static void *mb_producer_main(void *arg)
{
    mb_producer_t *p = arg;
    mb_bench_t *mb = p->mb;
    unsigned i = 0;
    while (!atomic_load_explicit(&mb->stop, memory_order_relaxed)) {
        mb_msg_t *m = &p->ring[i % MB_RING];
        if (atomic_load_explicit(&m->busy, memory_order_acquire)) {
            sched_yield(); /* every message of this producer is in flight */
            continue;
        }
        atomic_store_explicit(&m->busy, 1, memory_order_relaxed);
        m->start_ns = wy_now_ns();
        if (wy_mailbox_push(mb->box, &m->node, mb_delivered) != WY_OK) {
            atomic_store_explicit(&m->busy, 0, memory_order_relaxed);
            p->refused++;
            sched_yield();
            continue;
        }
        i++;
    }
    return NULL;
}

static void mb_stop_threads(mb_bench_t *mb)
{
    atomic_store(&mb->stop, 1);
    for (unsigned i = 0; i < mb->n; i++)
        if (mb->prod[i].started)
            pthread_join(mb->prod[i].th, NULL);
    if (mb->tick_started) {
        wy_tick_stop(&mb->tick);
        pthread_join(mb->tick_th, NULL);
    }
}

static void mb_release(bench_t *b)
{
    mb_bench_t *mb = b->impl;
    mb_stop_threads(mb);
    uint64_t refused = 0;
    for (unsigned i = 0; i < mb->n; i++)
        refused += mb->prod[i].refused;
    wy_mailbox_stats_t st;
    wy_mailbox_stats(mb->box, &st);
    if (mb->n)
        bench_note(b, "%u producers, capacity %u, refused pushes %" PRIu64 ", high water %zu",
                   mb->n, MB_CAPACITY, refused, st.high_water);
    if (mb->tick_started) {
        wy_tick_stats_t ts;
        wy_tick_stats(&mb->tick, &ts);
        bench_note(b, "lateness of %u Hz ticks; overruns %" PRIu64 ", skipped %" PRIu64,
                   b->o->conns, ts.overruns, ts.skipped);
    }
    wy_mailbox_close(mb->box, NULL, NULL); /* queued ones are canceled; the loop ends */
}

static void mb_free(bench_t *b)
{
    mb_bench_t *mb = b->impl;
    if (mb)
        wy_free(mb->prod);
}

static void mb_start(bench_t *b)
{
    mb_bench_t *mb = b->impl;
    for (unsigned i = 0; i < mb->n; i++) {
        mb->prod[i].mb = mb;
        if (pthread_create(&mb->prod[i].th, NULL, mb_producer_main, &mb->prod[i]) != 0) {
            bench_fail(b, "cannot start a producer thread");
            return;
        }
        mb->prod[i].started = true;
    }
}

static mb_bench_t *mb_new(bench_t *b, const char **err)
{
    mb_bench_t *mb = wy_calloc(1, sizeof *mb);
    b->impl = mb;
    mb->b = b;
    b->release = mb_release;
    wy_mailbox_opts_t o = {.capacity = MB_CAPACITY, .ud = mb};
    if (wy_mailbox_new(b->loop, &o, &mb->box) != WY_OK) {
        *err = "cannot create the mailbox";
        return NULL;
    }
    return mb;
}

static int bench_mailbox(bench_t *b, const char **err)
{
    if (b->o->conns > MB_MAX_PROD) {
        *err = "mailbox: at most 64 producers";
        return WY_EINVAL;
    }
    mb_bench_t *mb = mb_new(b, err);
    if (!mb)
        return WY_EINVAL;
    mb->n = b->o->conns;
    mb->prod = wy_calloc(mb->n, sizeof *mb->prod);
    b->start = mb_start;
    bench_ready(b);
    return WY_OK;
}

/* Tick thread: the body only hands its lateness to the loop (start_ns is chosen so that
 * bench_record's "now - start" is not used: see tick_delivered). */
static void tick_delivered(wy_mailbox_node_t *node, void *ud, int status)
{
    mb_bench_t *mb = ud;
    mb_msg_t *m = WY_CONTAINER_OF(node, mb_msg_t, node);
    bench_t *b = mb->b;
    if (status == WY_OK && b->phase == PH_MEASURE) {
        hist_add(&b->hist, m->start_ns); /* start_ns holds the lateness here */
        b->ops++;
    }
    atomic_store_explicit(&m->busy, 0, memory_order_release);
}

static void tick_body(wy_tick_t *t, const wy_tick_info_t *info, void *ud)
{
    WY_UNUSED(t);
    mb_bench_t *mb = ud;
    mb_msg_t *m = &mb->tick_msgs[mb->next_msg % MB_RING];
    if (atomic_load_explicit(&m->busy, memory_order_acquire))
        return; /* the loop is 1024 ticks behind: this sample is lost, not the tick */
    atomic_store_explicit(&m->busy, 1, memory_order_relaxed);
    m->start_ns = info->lateness;
    if (wy_mailbox_push(mb->box, &m->node, tick_delivered) != WY_OK)
        atomic_store_explicit(&m->busy, 0, memory_order_relaxed);
    else
        mb->next_msg++;
}

static void *tick_main(void *arg)
{
    mb_bench_t *mb = arg;
    wy_tick_run(&mb->tick, tick_body, mb);
    return NULL;
}

static void tick_start(bench_t *b)
{
    mb_bench_t *mb = b->impl;
    if (pthread_create(&mb->tick_th, NULL, tick_main, mb) != 0) {
        bench_fail(b, "cannot start the tick thread");
        return;
    }
    mb->tick_started = true;
}

static int bench_tick(bench_t *b, const char **err)
{
    if (b->o->conns > 10000) {
        *err = "tick: at most 10000 Hz";
        return WY_EINVAL;
    }
    mb_bench_t *mb = mb_new(b, err);
    if (!mb)
        return WY_EINVAL;
    wy_tick_opts_t to = {.period_ns = 1000000000ull / b->o->conns};
    if (wy_tick_init(&mb->tick, &to) != WY_OK) {
        *err = "tick: bad rate";
        return WY_EINVAL;
    }
    b->start = tick_start;
    bench_ready(b);
    return WY_OK;
}

/* ---- main ----------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int (*run)(bench_t *, const char **err); /* set up and start; WY_OK or *err */
    void (*free)(bench_t *); /* after the loop has stopped: what impl owns; NULL if nothing */
} bench_def_t;

static int run_redis_set(bench_t *b, const char **err)
{
    return bench_redis(b, false, err);
}
static int run_redis_get(bench_t *b, const char **err)
{
    return bench_redis(b, true, err);
}
static int run_pg_select(bench_t *b, const char **err)
{
    return bench_pg(b, false, false, err);
}
static int run_pg_insert(bench_t *b, const char **err)
{
    return bench_pg(b, true, false, err);
}
static int run_pg_batch(bench_t *b, const char **err)
{
    return bench_pg(b, true, true, err);
}
static const bench_def_t benches[] = {
    {"http", bench_http, NULL},
    {"ws", bench_ws, ws_free},
    {"grpc", bench_grpc, NULL},
    {"kafka-produce", bench_kafka_produce, kafka_free},
    {"kafka-e2e", bench_kafka_e2e, kafka_free},
    {"redis-set", run_redis_set, redis_free},
    {"redis-get", run_redis_get, redis_free},
    {"pg-select", run_pg_select, pg_free},
    {"pg-insert", run_pg_insert, pg_free},
    {"pg-batch", run_pg_batch, pg_free},
    {"actor-apply", run_actor_apply, actor_free},
    {"actor-load", run_actor_load, actor_free},
    {"actor-txn", run_actor_txn, actor_free},
    {"actor-batch", run_actor_batch, actor_free},
    {"actor-gameplay", run_actor_gameplay, actor_free},
    {"mailbox", bench_mailbox, mb_free},
    {"tick", bench_tick, mb_free},
};

static int usage(const char *why)
{
    if (why)
        fprintf(stderr, "wy-corebench: %s\n", why);
    fputs(usage_text, stderr);
    return 2;
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

static int parse_args(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.conns = 1,
                  .depth = 1,
                  .pool = 4,
                  .size = 32,
                  .seconds = 5,
                  .warmup_ms = 1000,
                  .rows = 256,
                  .actors = 1000,
                  .events = 450,
                  .batch = 64};
    if (argc < 2)
        return usage(NULL);
    o->bench = argv[1];
    for (int i = 2; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage("option without a value");
        bool ok = true;
        if (!strcmp(k, "--target"))
            o->target = v;
        else if (!strcmp(k, "--path"))
            o->path = v;
        else if (!strcmp(k, "--url"))
            o->url = v;
        else if (!strcmp(k, "--brokers"))
            o->brokers = v;
        else if (!strcmp(k, "--label"))
            o->label = v;
        else if (!strcmp(k, "--grpc-mode"))
            ok = !strcmp((o->grpc_mode = v), "thread") || !strcmp(v, "drive");
        else if (!strcmp(k, "--conns"))
            ok = parse_uint(v, 1, MAX_CONNS, &o->conns);
        else if (!strcmp(k, "--depth"))
            ok = parse_uint(v, 1, 4096, &o->depth);
        else if (!strcmp(k, "--pool"))
            ok = parse_uint(v, 1, 64, &o->pool);
        else if (!strcmp(k, "--rows"))
            ok = parse_uint(v, 1, 4096, &o->rows);
        else if (!strcmp(k, "--actors"))
            ok = parse_uint(v, 1, 100000, &o->actors);
        else if (!strcmp(k, "--events"))
            ok = parse_uint(v, 0, 100000, &o->events);
        else if (!strcmp(k, "--batch"))
            ok = parse_uint(v, 1, 4096, &o->batch);
        else if (!strcmp(k, "--rate"))
            ok = parse_uint(v, 0, 10000000, &o->rate);
        else if (!strcmp(k, "--ops"))
            o->ops = v;
        else if (!strcmp(k, "--pid"))
            ok = parse_uint(v, 1, 0x7fffffff, &o->pid);
        else if (!strcmp(k, "--pg-pid"))
            ok = parse_uint(v, 1, 0x7fffffff, &o->pg_pid);
        else if (!strcmp(k, "--size"))
            ok = parse_uint(v, 0, MAX_SIZE, &o->size);
        else if (!strcmp(k, "--port"))
            ok = parse_uint(v, 0, 65535, &o->port);
        else if (!strcmp(k, "--seconds"))
            ok = parse_uint(v, 1, 3600, &o->seconds);
        else if (!strcmp(k, "--warmup-ms"))
            ok = parse_uint(v, 0, 600000, &o->warmup_ms);
        else
            return usage("unknown option");
        if (!ok)
            return usage("option value out of range");
    }
    if (!o->label)
        o->label = o->bench;
    if (strchr(o->label, '"') || strchr(o->label, '\\'))
        return usage("--label: no quotes or backslashes");
    return 0;
}

int main(int argc, char **argv)
{
    opts_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    /* The ceiling pair runs without libuv: its own completion-queue loop. */
    if (!strcmp(o.bench, "grpc-raw-server"))
        return raw_server_main(&o);
    if (!strcmp(o.bench, "grpc-raw"))
        return raw_client_main(&o);
    const bench_def_t *def = NULL;
    for (size_t i = 0; i < WY_ARRAY_LEN(benches); i++)
        if (!strcmp(benches[i].name, o.bench))
            def = &benches[i];
    if (!def)
        return usage("unknown BENCH");
    if (!strcmp(o.bench, "ws") && o.size > MAX_SIZE - 16)
        return usage("--size too large for ws");
    if (!strncmp(o.bench, "kafka", 5) && !o.brokers)
        return usage("--brokers is required");
    wy_log_init("corebench", WY_LOG_WARN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    bench_t b;
    bench_init(&b, &loop, &o);
    const char *err = NULL;
    if (def->run(&b, &err) != WY_OK) {
        fprintf(stderr, "wy-corebench %s: %s\n", o.label, err ? err : "setup failed");
        b.fail = "setup failed";
        bench_do_release(&b);
    }
    if (g_drive_rt)
        wy_grpc_rt_run(g_drive_rt, UV_RUN_DEFAULT);
    else
        uv_run(&loop, UV_RUN_DEFAULT);
    rc = bench_report(&b);
    if (def->free)
        def->free(&b);
    tcp_conns_free(&b);
    wy_free(b.impl);
    wy_free(b.slots);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "wy-corebench %s: loop not empty at exit\n", o.label);
        return 1;
    }
    return rc;
}
