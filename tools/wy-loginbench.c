/* wy-loginbench — closed-loop load generator for auth's login path (issue 11): N keep-alive
 * HTTP/1.1 connections on one libuv loop, each sending the next POST /v1/login as soon as the
 * previous answer arrived. Device logins of existing accounts (created first, not measured) or
 * of new ones (every request a fresh device id: an account registration), plus the CPU time
 * the server and PostgreSQL spent in the measured window (/proc/<pid>/stat). Also the Ed25519
 * ceiling: signatures per second on one core (OpenSSL, the signature an access token costs).
 * Run by tools/bench; prints one JSON line on stdout. */
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <uv.h>

static const char USAGE[] =
    "usage: wy-loginbench MODE [options]\n"
    "  MODE: existing | new | sign\n"
    "    existing  device logins of --accounts accounts created first (not measured)\n"
    "    new       device logins with a fresh device id each: one new account per request\n"
    "    sign      Ed25519 signatures per second on this thread (the signing ceiling)\n"
    "  --target HOST:PORT   auth's HTTP API (IPv4 literal)\n"
    "  --conns N            connections, one request in flight on each (default 32)\n"
    "  --accounts N         existing: accounts logged in at random (default 10000)\n"
    "  --seconds N          measured duration (default 5)\n"
    "  --warmup-ms N        before measuring (default 1000)\n"
    "  --pid PID            the server: its CPU time in the window is reported\n"
    "  --pg-pid PID         PostgreSQL's postmaster: its and its children's CPU time too\n"
    "Prints one JSON line: bench, conns, seconds, ops, ops_per_s, p50_us, p99_us, p999_us,\n"
    "max_us, errors, error_kinds, server_cpu_ms_per_1000, pg_cpu_ms_per_1000 (every PostgreSQL\n"
    "process), pg_server_cpu_ms_per_1000 (the backends of --pid's connections: the rest is\n"
    "PostgreSQL's background work and other clients), client_cpu_ms_per_1000 (this process).\n"
    "Exit 0 when the benchmark ran (errors are counted, not fatal), 1 when it could not.\n";

#define MAX_CONNS 1024
#define RESP_MAX  (64 * 1024)

typedef struct conn conn_t;

typedef struct {
    uv_loop_t *loop;
    struct sockaddr_in addr;
    bool existing;
    int conns, accounts, seconds, warmup_ms;
    int pid, pg_pid;
    char prefix[32];
    conn_t *c;
    /* phases: 0 create accounts, 1 warm-up, 2 measured, 3 drain */
    int phase;
    int next_account, created, alive;
    int connect_failures; /* refused or failed connects: too many and the run stops */
    uint64_t t_measure, t_end, t_deadline;
    uint32_t *lat; /* microseconds of the measured requests */
    size_t nlat, caplat;
    uint64_t errors, kinds[6]; /* 2xx-unexpected,4xx,5xx,io,other,... */
    uint64_t rng;
    double cpu0_srv, cpu0_pg, cpu0_pg_srv, cpu0_self;
    uv_timer_t timer;
    const char *fatal;
} bench_t;

struct conn {
    bench_t *b;
    int id;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    char req[512];
    char resp[RESP_MAX];
    size_t rlen;
    uint64_t t0;
    uint64_t seq;
    bool busy, open;
};

static bench_t B;

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static uint64_t rnd(void)
{
    B.rng ^= B.rng << 13;
    B.rng ^= B.rng >> 7;
    B.rng ^= B.rng << 17;
    return B.rng;
}

/* utime + stime of pid in seconds; 0 when it is gone. */
static double proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command may hold spaces */
    if (!p)
        return 0;
    unsigned long long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int proc_ppid(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    int ppid = -1;
    if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1)
        return -1;
    return ppid;
}

/* The postmaster's CPU time and its children's (backends, WAL writer, checkpointer). */
static double pg_cpu(int postmaster)
{
    if (postmaster <= 0)
        return 0;
    double sum = proc_cpu(postmaster);
    DIR *d = opendir("/proc");
    if (!d)
        return sum;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        int pid = atoi(e->d_name);
        if (proc_ppid(pid) == postmaster)
            sum += proc_cpu(pid);
    }
    closedir(d);
    return sum;
}

/* This process's own CPU time (the load generator shares the machine's cores). */
static double self_cpu(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

#define MAX_SRV_PORTS 256

/* The local TCP ports of pid's sockets (its connections to PostgreSQL among them): the socket
 * inodes of /proc/<pid>/fd looked up in /proc/<pid>/net/tcp. Returns how many. */
static int srv_ports(int pid, unsigned ports[MAX_SRV_PORTS])
{
    char path[64];
    unsigned long inodes[1024];
    int ninodes = 0, n = 0;
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) && ninodes < 1024) {
        char link[320], target[64];
        snprintf(link, sizeof link, "/proc/%d/fd/%s", pid, e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = 0;
        if (sscanf(target, "socket:[%lu]", &inodes[ninodes]) == 1)
            ninodes++;
    }
    closedir(d);
    snprintf(path, sizeof path, "/proc/%d/net/tcp", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[512];
    while (fgets(line, sizeof line, f) && n < MAX_SRV_PORTS) {
        unsigned lport;
        unsigned long inode;
        /* sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
         */
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %*x %*x:%*x %*x:%*x %*x %*u %*u %lu", &lport,
                   &inode) != 2)
            continue;
        for (int i = 0; i < ninodes; i++)
            if (inodes[i] == inode) {
                ports[n++] = lport;
                break;
            }
    }
    fclose(f);
    return n;
}

/* The CPU time of the PostgreSQL backends serving pid's connections: a backend's title is
 * "postgres: user db 127.0.0.1(<client port>) ...". */
static double pg_cpu_of(int postmaster, int pid)
{
    if (postmaster <= 0 || pid <= 0)
        return 0;
    unsigned ports[MAX_SRV_PORTS];
    int np = srv_ports(pid, ports);
    double sum = 0;
    DIR *d = opendir("/proc");
    if (!d || np == 0) {
        if (d)
            closedir(d);
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        int p = atoi(e->d_name);
        if (proc_ppid(p) != postmaster)
            continue;
        char path[64], title[256];
        snprintf(path, sizeof path, "/proc/%d/cmdline", p);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(title, 1, sizeof title - 1, f);
        fclose(f);
        title[len] = 0;
        const char *paren = strchr(title, '(');
        unsigned port = paren ? (unsigned)strtoul(paren + 1, NULL, 10) : 0;
        for (int i = 0; port && i < np; i++)
            if (ports[i] == port) {
                sum += proc_cpu(p);
                break;
            }
    }
    closedir(d);
    return sum;
}

/* ---- requests ---- */

static void conn_send(conn_t *c);
static void conn_open(conn_t *c);
static void stop_all(void);

static void build_request(conn_t *c)
{
    bench_t *b = c->b;
    char id[96];
    if (b->phase == 0)
        snprintf(id, sizeof id, "%s-%d", b->prefix, b->next_account++);
    else if (b->existing)
        snprintf(id, sizeof id, "%s-%d", b->prefix, (int)(rnd() % (uint64_t)b->accounts));
    else
        snprintf(id, sizeof id, "%s-n%d-%" PRIu64, b->prefix, c->id, c->seq++);
    char body[160];
    int blen = snprintf(body, sizeof body, "{\"method\":\"device\",\"device_id\":\"%s\"}", id);
    snprintf(c->req, sizeof c->req,
             "POST /v1/login HTTP/1.1\r\nHost: auth\r\nContent-Type: application/json\r\n"
             "Content-Length: %d\r\n\r\n%s",
             blen, body);
}

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    c->open = false;
    B.alive--;
    if (B.phase < 3 && !B.fatal)
        conn_open(c); /* the server closed it (error, restart): a new connection */
    else if (B.alive == 0)
        uv_stop(B.loop);
}

static void conn_fail(conn_t *c, int kind)
{
    if (B.phase == 2) {
        B.errors++;
        B.kinds[kind]++;
    }
    c->busy = false;
    if (c->open && !uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void done_one(conn_t *c, int status)
{
    uint64_t t = now_ns();
    c->busy = false;
    bool ok = status == 200 || status == 201;
    if (B.phase == 0) {
        if (ok)
            B.created++;
    } else if (B.phase == 2 && c->t0 >= B.t_measure && t <= B.t_end) {
        if (!ok) {
            B.errors++;
            B.kinds[status >= 500 ? 2 : status >= 400 ? 1 : 0]++;
        }
        if (B.nlat == B.caplat) {
            B.caplat = B.caplat ? 2 * B.caplat : 65536;
            B.lat = realloc(B.lat, B.caplat * sizeof *B.lat);
        }
        uint64_t us = (t - c->t0) / 1000;
        B.lat[B.nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    }
    if (B.phase == 0 && B.next_account >= B.accounts) {
        /* creation: wait for the others, then the warm-up starts in the timer */
        return;
    }
    if (B.phase < 3)
        conn_send(c);
}

/* One whole response in c->resp: its status, and the bytes it took; 0 if incomplete. */
static size_t parse_response(conn_t *c, int *status)
{
    c->resp[c->rlen] = 0;
    char *end = strstr(c->resp, "\r\n\r\n");
    if (!end)
        return 0;
    if (strncmp(c->resp, "HTTP/1.", 7) != 0) {
        *status = -1;
        return c->rlen;
    }
    *status = atoi(c->resp + 9);
    long clen = 0;
    for (char *l = strstr(c->resp, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
        if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
            clen = strtol(l + 17, NULL, 10);
    size_t total = (size_t)(end + 4 - c->resp) + (size_t)clen;
    return total <= c->rlen ? total : 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    conn_t *c = h->data;
    buf->base = c->resp + c->rlen;
    buf->len = sizeof c->resp - 1 - c->rlen;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    conn_t *c = s->data;
    if (n < 0) {
        conn_fail(c, 3);
        return;
    }
    c->rlen += (size_t)n;
    int status = 0;
    size_t used = parse_response(c, &status);
    if (status < 0 || (!used && c->rlen >= sizeof c->resp - 1)) {
        conn_fail(c, 4);
        return;
    }
    if (!used)
        return;
    memmove(c->resp, c->resp + used, c->rlen - used);
    c->rlen -= used;
    done_one(c, status);
}

static void on_written(uv_write_t *w, int status)
{
    if (status < 0)
        conn_fail(w->data, 3);
}

static void conn_send(conn_t *c)
{
    build_request(c);
    c->busy = true;
    c->t0 = now_ns();
    uv_buf_t buf = uv_buf_init(c->req, (unsigned)strlen(c->req));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0)
        conn_fail(c, 3);
}

static void on_connected(uv_connect_t *r, int status)
{
    conn_t *c = r->data;
    if (status < 0) {
        /* A server that is not there would make this a tight reconnect loop: give up. */
        if (++B.connect_failures > 10 * B.conns && !B.fatal)
            B.fatal = "cannot connect to --target";
        conn_fail(c, 3);
        if (B.fatal && B.phase < 3)
            stop_all();
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (B.phase == 0 && B.next_account >= B.accounts)
        return;
    conn_send(c);
}

static void conn_open(conn_t *c)
{
    uv_tcp_init(B.loop, &c->tcp);
    c->tcp.data = c;
    c->open = true;
    c->rlen = 0;
    B.alive++;
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&B.addr, on_connected) != 0)
        conn_fail(c, 3);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t quantile(double q)
{
    if (!B.nlat)
        return 0;
    size_t i = (size_t)(q * (double)(B.nlat - 1) + 0.5);
    return B.lat[i];
}

static void stop_all(void)
{
    B.phase = 3;
    uv_timer_stop(&B.timer);
    uv_close((uv_handle_t *)&B.timer, NULL);
    for (int i = 0; i < B.conns; i++)
        if (B.c[i].open && !uv_is_closing((uv_handle_t *)&B.c[i].tcp))
            uv_close((uv_handle_t *)&B.c[i].tcp, on_closed);
    if (B.alive == 0)
        uv_stop(B.loop);
}

static void start_measuring(void);

static void on_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = now_ns();
    if (now > B.t_deadline) {
        B.fatal =
            B.phase == 0 ? "the accounts were not created in time (is auth up?)" : "no end in time";
        stop_all();
        return;
    }
    if (B.phase == 0) {
        bool idle = true;
        for (int i = 0; i < B.conns; i++)
            idle = idle && !B.c[i].busy;
        if (B.next_account >= B.accounts && idle) {
            if (B.created < B.accounts) {
                B.fatal = "could not create the accounts";
                stop_all();
                return;
            }
            start_measuring();
        }
        return;
    }
    if (B.phase == 1 && now >= B.t_measure) {
        B.phase = 2;
        B.cpu0_srv = B.pid > 0 ? proc_cpu(B.pid) : 0;
        B.cpu0_pg = pg_cpu(B.pg_pid);
        B.cpu0_pg_srv = pg_cpu_of(B.pg_pid, B.pid);
        B.cpu0_self = self_cpu();
    } else if (B.phase == 2 && now >= B.t_end) {
        double srv = B.pid > 0 ? proc_cpu(B.pid) - B.cpu0_srv : 0;
        double pg = B.pg_pid > 0 ? pg_cpu(B.pg_pid) - B.cpu0_pg : 0;
        double pg_srv = pg_cpu_of(B.pg_pid, B.pid) - B.cpu0_pg_srv;
        double self = self_cpu() - B.cpu0_self;
        qsort(B.lat, B.nlat, sizeof *B.lat, cmp_u32);
        double secs = (double)B.seconds;
        double per1k = B.nlat ? 1000.0 * 1000.0 / (double)B.nlat : 0;
        printf("{\"bench\":\"%s\",\"conns\":%d,\"seconds\":%d,\"ops\":%zu,\"ops_per_s\":%.1f,"
               "\"p50_us\":%u,\"p99_us\":%u,\"p999_us\":%u,\"max_us\":%u,\"errors\":%" PRIu64
               ",\"error_kinds\":{\"4xx\":%" PRIu64 ",\"5xx\":%" PRIu64 ",\"io\":%" PRIu64
               ",\"other\":%" PRIu64 "},\"server_cpu_ms_per_1000\":%.1f,"
               "\"pg_cpu_ms_per_1000\":%.1f,\"pg_server_cpu_ms_per_1000\":%.1f,"
               "\"client_cpu_ms_per_1000\":%.1f}\n",
               B.existing ? "login-existing" : "login-new", B.conns, B.seconds, B.nlat,
               (double)B.nlat / secs, quantile(0.50), quantile(0.99), quantile(0.999),
               B.nlat ? B.lat[B.nlat - 1] : 0, B.errors, B.kinds[1], B.kinds[2], B.kinds[3],
               B.kinds[0] + B.kinds[4], srv * per1k, pg * per1k, pg_srv * per1k, self * per1k);
        fflush(stdout);
        stop_all();
    }
}

static void start_measuring(void)
{
    B.phase = 1;
    B.t_measure = now_ns() + (uint64_t)B.warmup_ms * 1000000ull;
    B.t_end = B.t_measure + (uint64_t)B.seconds * 1000000000ull;
    for (int i = 0; i < B.conns; i++)
        if (B.c[i].open && !B.c[i].busy)
            conn_send(&B.c[i]);
}

/* ---- the signing ceiling ---- */

static int bench_sign(int seconds)
{
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (!kc || EVP_PKEY_keygen_init(kc) <= 0 || EVP_PKEY_keygen(kc, &key) <= 0) {
        fprintf(stderr, "wy-loginbench: cannot make an Ed25519 key\n");
        return 1;
    }
    EVP_PKEY_CTX_free(kc);
    /* The signing input of an access token: header.claims, base64url, about 250 bytes. */
    unsigned char msg[256];
    memset(msg, 'e', sizeof msg);
    unsigned char sig[64];
    uint64_t n = 0, t0 = now_ns(), end = t0 + (uint64_t)seconds * 1000000000ull, t = t0;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    while (t < end) {
        for (int i = 0; i < 256; i++) {
            size_t slen = sizeof sig;
            msg[i % 64] = (unsigned char)n;
            if (EVP_DigestSignInit(mc, NULL, NULL, NULL, key) <= 0 ||
                EVP_DigestSign(mc, sig, &slen, msg, sizeof msg) <= 0) {
                fprintf(stderr, "wy-loginbench: Ed25519 sign failed\n");
                return 1;
            }
            n++;
        }
        t = now_ns();
    }
    EVP_MD_CTX_free(mc);
    EVP_PKEY_free(key);
    double secs = (double)(t - t0) / 1e9;
    printf("{\"bench\":\"ed25519-sign\",\"conns\":1,\"seconds\":%d,\"ops\":%" PRIu64
           ",\"ops_per_s\":%.1f,\"errors\":0}\n",
           seconds, n, (double)n / secs);
    return 0;
}

static bool parse_target(const char *t, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = strrchr(t, ':');
    if (!colon || (size_t)(colon - t) >= sizeof host)
        return false;
    memcpy(host, t, (size_t)(colon - t));
    host[colon - t] = 0;
    return uv_ip4_addr(host, atoi(colon + 1), out) == 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2;
    }
    const char *mode = argv[1], *target = NULL;
    B.conns = 32;
    B.accounts = 10000;
    B.seconds = 5;
    B.warmup_ms = 1000;
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "wy-loginbench: %s needs a value\n%s", argv[i], USAGE);
            return 1;
        }
        if (!strcmp(argv[i], "--target"))
            target = v;
        else if (!strcmp(argv[i], "--conns"))
            B.conns = atoi(v);
        else if (!strcmp(argv[i], "--accounts"))
            B.accounts = atoi(v);
        else if (!strcmp(argv[i], "--seconds"))
            B.seconds = atoi(v);
        else if (!strcmp(argv[i], "--warmup-ms"))
            B.warmup_ms = atoi(v);
        else if (!strcmp(argv[i], "--pid"))
            B.pid = atoi(v);
        else if (!strcmp(argv[i], "--pg-pid"))
            B.pg_pid = atoi(v);
        else {
            fprintf(stderr, "wy-loginbench: unknown option %s\n%s", argv[i], USAGE);
            return 1;
        }
        i++;
    }
    if (B.seconds < 1 || B.warmup_ms < 0) {
        fprintf(stderr, "wy-loginbench: --seconds must be >= 1, --warmup-ms >= 0\n");
        return 1;
    }
    if (!strcmp(mode, "sign"))
        return bench_sign(B.seconds);
    B.existing = !strcmp(mode, "existing");
    if ((!B.existing && strcmp(mode, "new") != 0) || B.conns < 1 || B.conns > MAX_CONNS ||
        B.accounts < 1 || !target || !parse_target(target, &B.addr)) {
        fprintf(stderr, "wy-loginbench: bad mode, --conns (1..%d), --accounts or --target\n%s",
                MAX_CONNS, USAGE);
        return 1;
    }
    B.rng = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    if (!B.rng)
        B.rng = 88172645463325252ull;
    snprintf(B.prefix, sizeof B.prefix, "lb%08" PRIx64, rnd() & 0xffffffffu);
    B.loop = uv_default_loop();
    B.c = calloc((size_t)B.conns, sizeof *B.c);
    B.phase = B.existing ? 0 : 1;
    B.t_deadline =
        now_ns() + (uint64_t)(300 + B.seconds) * 1000000000ull + (uint64_t)B.warmup_ms * 1000000ull;
    uv_timer_init(B.loop, &B.timer);
    uv_timer_start(&B.timer, on_tick, 10, 10);
    if (!B.existing) {
        B.t_measure = now_ns() + (uint64_t)B.warmup_ms * 1000000ull;
        B.t_end = B.t_measure + (uint64_t)B.seconds * 1000000000ull;
    }
    for (int i = 0; i < B.conns; i++) {
        B.c[i].b = &B;
        B.c[i].id = i;
        conn_open(&B.c[i]);
    }
    uv_run(B.loop, UV_RUN_DEFAULT);
    free(B.c);
    free(B.lat);
    if (B.fatal) {
        fprintf(stderr, "wy-loginbench: %s\n", B.fatal);
        return 1;
    }
    return 0;
}
