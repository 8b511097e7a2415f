/* wy-lobbybench — load generator of `make bench` for wy-lobby: sessions established per
 * second (WebSocket hello -> welcome, p50/p99) and RSS growth of the lobby process per
 * 1,000 idle sessions. Plain blocking sockets, one thread per concurrent client. */
#include "lobby.pb-c.h"
#include "wy_core.h"
#include "wy_token.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *usage_text =
    "usage: wy-lobbybench --port WS_PORT --key PRIVATE.pem [--kid KID] [--host H]\n"
    "         [--sessions N] [--threads T] [--idle N] [--pid LOBBY_PID]\n"
    "         [--iss ISS] [--aud AUD]\n"
    "  Signs access tokens with the Ed25519 private key (lobby must verify with its public\n"
    "  half: WY_LOBBY_TOKEN_KEYS_DIR) before the timed phase (signing is auth's work), logs\n"
    "  N sessions in with T concurrent clients, then\n"
    "  holds --idle sessions open and reports the RSS growth of --pid.\n";

static struct {
    const char *host, *key, *kid, *iss, *aud;
    int port, sessions, threads, idle, pid;
} opt = {"127.0.0.1", NULL, NULL, "wyvern-auth", "wyvern", 0, 2000, 8, 1000, 0};

static wy_jwt_keyset_t *ks;
static uint64_t *lat_us;
static char **tokens; /* one per session, signed before the timed phase; login() frees it */
static int next_idx, failures;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, opt.host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static int upgrade(int fd)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /v1/lobby HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.host, opt.port);
    if (write_all(fd, req, (size_t)n) != 0)
        return -1;
    /* The server sends nothing after the response head until the hello, so whole reads
     * never take a frame's bytes (a byte at a time cost the client ~130 reads per session,
     * CPU that the 2 shared cores then lacked for the server). */
    char buf[1024];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end)
            return end + 4 == buf + len && strncmp(buf, "HTTP/1.1 101", 12) == 0 ? 0 : -1;
        if (len == sizeof buf - 1)
            return -1;
    }
}

static int send_frame(int fd, const uint8_t *p, size_t n)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = 0x82;
    if (n < 126) {
        h[hl++] = (uint8_t)(0x80 | n);
    } else {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    }
    uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
    memcpy(h + hl, mask, 4);
    hl += 4;
    uint8_t *m = wy_malloc(hl + n);
    memcpy(m, h, hl);
    for (size_t i = 0; i < n; i++)
        m[hl + i] = p[i] ^ mask[i & 3];
    int rc = write_all(fd, m, hl + n);
    wy_free(m);
    return rc;
}

/* Reads one data frame (skips control frames); returns a new buffer or NULL. */
static uint8_t *recv_frame(int fd, size_t *len)
{
    for (;;) {
        uint8_t h[2];
        if (read_all(fd, h, 2) != 0)
            return NULL;
        uint64_t n = h[1] & 0x7f;
        if (n == 126) {
            uint8_t e[2];
            if (read_all(fd, e, 2) != 0)
                return NULL;
            n = ((uint64_t)e[0] << 8) | e[1];
        } else if (n == 127) {
            return NULL;
        }
        uint8_t *b = wy_malloc(n ? n : 1);
        if (read_all(fd, b, n) != 0) {
            wy_free(b);
            return NULL;
        }
        int op = h[0] & 0x0f;
        if (op == 0x8) {
            wy_free(b);
            return NULL;
        }
        if (op == 0x2) {
            *len = n;
            return b;
        }
        wy_free(b);
    }
}

/* A new access token of account (auth's work, not lobby's: signed before the timed phase);
 * returns a new string, caller frees. */
static char *sign_token(const char *account)
{
    char *tok = NULL;
    const char *err = NULL;
    if (wy_token_issue(ks, opt.kid, opt.iss, opt.aud, account, "bench", 600, 0, &tok, NULL, &err) !=
        WY_OK) {
        fprintf(stderr, "wy-lobbybench: cannot sign a token: %s\n", err);
        exit(2);
    }
    return tok;
}

/* Logs in with tok (freed here) on a new connection; returns the fd (session open) or -1. */
static int login(char *tok, uint64_t *us)
{
    int fd = dial();
    if (fd < 0 || upgrade(fd) != 0) {
        if (fd >= 0)
            close(fd);
        wy_free(tok);
        return -1;
    }
    Wyvern__Lobby__Hello h = WYVERN__LOBBY__HELLO__INIT;
    h.access_token = tok;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.request_id = 1;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_HELLO;
    m.hello = &h;
    size_t n = wyvern__lobby__client_message__get_packed_size(&m);
    uint8_t *buf = wy_malloc(n);
    wyvern__lobby__client_message__pack(&m, buf);
    uint64_t t0 = wy_now_ns();
    int ok = send_frame(fd, buf, n) == 0;
    wy_free(buf);
    wy_free(tok);
    size_t rl = 0;
    uint8_t *r = ok ? recv_frame(fd, &rl) : NULL;
    Wyvern__Lobby__ServerMessage *s = r ? wyvern__lobby__server_message__unpack(NULL, rl, r) : NULL;
    ok = s && s->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_WELCOME;
    *us = (wy_now_ns() - t0) / 1000;
    if (s)
        wyvern__lobby__server_message__free_unpacked(s, NULL);
    wy_free(r);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *worker(void *arg)
{
    WY_UNUSED(arg);
    for (;;) {
        pthread_mutex_lock(&mu);
        int i = next_idx < opt.sessions ? next_idx++ : -1;
        pthread_mutex_unlock(&mu);
        if (i < 0)
            return NULL;
        uint64_t us = 0;
        int fd = login(tokens[i], &us);
        if (fd < 0) {
            pthread_mutex_lock(&mu);
            failures++;
            pthread_mutex_unlock(&mu);
            lat_us[i] = UINT64_MAX;
            continue;
        }
        lat_us[i] = us;
        close(fd);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static long rss_kib(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    FILE *f = fopen(path, "r");
    long pages = 0, res = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            goto usage;
        if (!strcmp(a, "--port"))
            opt.port = atoi(v);
        else if (!strcmp(a, "--host"))
            opt.host = v;
        else if (!strcmp(a, "--key"))
            opt.key = v;
        else if (!strcmp(a, "--kid"))
            opt.kid = v;
        else if (!strcmp(a, "--sessions"))
            opt.sessions = atoi(v);
        else if (!strcmp(a, "--threads"))
            opt.threads = atoi(v);
        else if (!strcmp(a, "--idle"))
            opt.idle = atoi(v);
        else if (!strcmp(a, "--pid"))
            opt.pid = atoi(v);
        else if (!strcmp(a, "--iss"))
            opt.iss = v;
        else if (!strcmp(a, "--aud"))
            opt.aud = v;
        else
            goto usage;
        i++;
    }
    if (!opt.port || !opt.key || opt.sessions < 1 || opt.threads < 1 || opt.threads > 256 ||
        opt.idle < 0)
        goto usage;
    ks = wy_jwt_keyset_new();
    const char *err = NULL;
    if (wy_token_keyset_load_file(ks, opt.key, opt.kid, &err) != WY_OK) {
        fprintf(stderr, "wy-lobbybench: %s: %s\n", opt.key, err);
        return 2;
    }
    if (!opt.kid)
        opt.kid = wy_jwt_keyset_kid_at(ks, 0);
    struct rlimit rl = {.rlim_cur = 65536, .rlim_max = 65536};
    setrlimit(RLIMIT_NOFILE, &rl);

    lat_us = wy_calloc((size_t)opt.sessions, sizeof *lat_us);
    tokens = wy_calloc((size_t)opt.sessions, sizeof *tokens);
    for (int i = 0; i < opt.sessions; i++) {
        char acct[64];
        snprintf(acct, sizeof acct, "bench-%d-%d", (int)getpid(), i);
        tokens[i] = sign_token(acct);
    }
    pthread_t th[256];
    uint64_t t0 = wy_now_ns();
    for (int i = 0; i < opt.threads; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    for (int i = 0; i < opt.threads; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(wy_now_ns() - t0) / 1e9;
    qsort(lat_us, (size_t)opt.sessions, sizeof *lat_us, cmp_u64);
    int ok = opt.sessions - failures;
    printf("lobby sessions established: %.0f/s (%d ok, %d failed, %d clients)\n", ok / secs, ok,
           failures, opt.threads);
    if (ok > 0)
        printf("lobby hello->welcome: p50 %.2f ms, p99 %.2f ms\n",
               (double)lat_us[(size_t)(ok - 1) / 2] / 1000.0,
               (double)lat_us[(size_t)((ok - 1) * 99) / 100] / 1000.0);

    if (opt.idle > 0 && opt.pid > 0) {
        long before = rss_kib(opt.pid);
        int *fds = wy_calloc((size_t)opt.idle, sizeof *fds);
        int held = 0;
        for (int i = 0; i < opt.idle; i++) {
            char acct[64];
            uint64_t us;
            snprintf(acct, sizeof acct, "idle-%d-%d", (int)getpid(), i);
            fds[i] = login(sign_token(acct), &us);
            held += fds[i] >= 0;
        }
        usleep(200 * 1000);
        long after = rss_kib(opt.pid);
        if (before > 0 && after > 0 && held > 0)
            printf("lobby memory per idle session: %.1f KiB (RSS +%.2f MiB per 1,000 idle "
                   "connections, %d held)\n",
                   (double)(after - before) / held, (double)(after - before) * 1000.0 / held / 1024,
                   held);
        for (int i = 0; i < opt.idle; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        wy_free(fds);
    }
    wy_free(lat_us);
    wy_free(tokens);
    wy_jwt_keyset_free(ks);
    return failures ? 1 : 0;
usage:
    fputs(usage_text, stderr);
    return 2;
}
