/* wy_redis — hiredis async client on libuv with reconnect, per-command timeouts and a health PING.
 * hiredis 0.14 has no async timeouts: every command carries a deadline in a list sorted by deadline
 * (nearly always send order) watched by a single uv timer. */
#include "wy_redis.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>
#include <openssl/evp.h>

#include "wy_list.h"
#include "wy_log.h"

enum { CMD_USER, CMD_HANDSHAKE, CMD_READY, CMD_PING };
enum { ST_DOWN, ST_CONNECTING, ST_HANDSHAKE, ST_READY };

typedef struct rcmd {
    wy_list_t node; /* in the deadline list; unlinked once answered */
    wy_redis_t *r;
    wy_redis_cb cb;
    void *ud;
    uint64_t deadline;
    int kind;
    bool timed_out; /* deadline passed: the connection is being dropped, answer WY_ETIMEDOUT */
} rcmd_t;

struct wy_redis {
    uv_loop_t *loop;
    char *host;
    int port;
    int db;
    char *user;
    char *password;
    wy_redis_opts_t o;

    redisAsyncContext *ac;
    int state;
    bool ping_ok;
    bool ping_pending;
    int health; /* last value reported to on_state */
    uint32_t attempts;
    uint32_t inflight;

    wy_list_t cmds;         /* rcmd_t.node, sorted by deadline */
    uv_timer_t cmd_timer;   /* deadline of the oldest command */
    uv_timer_t retry_timer; /* backoff before reconnect; connect timeout while connecting */
    uv_timer_t ping_timer;

    bool closing;
    int handles_open;
    void (*close_done)(void *);
    void *close_ud;

    struct cluster *cl; /* cluster mode: this handle routes to node handles (below) */
};

/* Cluster mode (the end of this file). */
static int cluster_create(uv_loop_t *loop, const char *url, const wy_redis_opts_t *opts,
                          wy_redis_t **out, const char **err);
static int cluster_admit(wy_redis_t *r);
static int cluster_command_argv(wy_redis_t *r, uint32_t timeout_ms, wy_redis_cb cb, void *ud,
                                int argc, const char **argv, const size_t *argvlen);
static int cluster_command_fmt(wy_redis_t *r, wy_redis_cb cb, void *ud, const char *fmt,
                               va_list ap);
static void cluster_close(wy_redis_t *r);
static const char CLUSTER_SCHEME[] = "redis+cluster://";

/* ---- URL ---------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static char *pct_decode(const char *s, size_t n, bool *ok)
{
    char *out = wy_malloc(n + 1), *o = out;
    *ok = true;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= n) {
                *ok = false;
                break;
            }
            h = hexval((unsigned char)s[i + 1]);
            l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0) {
                *ok = false;
                break;
            }
            *o++ = (char)(h * 16 + l);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static int parse_uint(const char *s, size_t n, long max, long *out)
{
    long v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
        if (v > max)
            return -1;
    }
    *out = v;
    return 0;
}

static int parse_url(wy_redis_t *r, const char *url, const char **err)
{
    static const char scheme[] = "redis://";
    const char *p, *at, *hostend, *end, *slash;
    long v;
    bool ok;

    if (url == NULL || *url == '\0') {
        *err = "empty URL (expected redis://host:port[/db])";
        return WY_EINVAL;
    }
    if (strlen(url) > 2048) {
        *err = "URL longer than 2048 characters";
        return WY_EINVAL;
    }
    if (strncmp(url, "rediss://", 9) == 0) {
        *err = "rediss:// (TLS) is not supported";
        return WY_EINVAL;
    }
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        *err = "URL must start with redis:// or redis+cluster://";
        return WY_EINVAL;
    }
    p = url + sizeof scheme - 1;
    end = p + strcspn(p, "?#");
    if (*end != '\0') {
        *err = "query and fragment are not supported";
        return WY_EINVAL;
    }
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL)
        slash = end;
    at = NULL;
    for (const char *q = p; q < slash; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) {
            *err = "credentials must be ':password@' or 'user:password@'";
            return WY_EINVAL;
        }
        if (colon > p) {
            r->user = pct_decode(p, (size_t)(colon - p), &ok);
            if (!ok) {
                *err = "bad %-escape in user name";
                return WY_EINVAL;
            }
        }
        r->password = pct_decode(colon + 1, (size_t)(at - colon - 1), &ok);
        if (!ok) {
            *err = "bad %-escape in password";
            return WY_EINVAL;
        }
        if (r->password[0] == '\0') {
            *err = "empty password";
            return WY_EINVAL;
        }
        p = at + 1;
    }
    /* host[:port] up to slash */
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(slash - p));
        if (rb == NULL) {
            *err = "missing ']' after IPv6 host";
            return WY_EINVAL;
        }
        r->host = wy_strndup(p + 1, (size_t)(rb - p - 1));
        hostend = rb + 1;
        if (hostend < slash && *hostend != ':') {
            *err = "unexpected characters after IPv6 host";
            return WY_EINVAL;
        }
    } else {
        hostend = memchr(p, ':', (size_t)(slash - p));
        if (hostend == NULL)
            hostend = slash;
        r->host = wy_strndup(p, (size_t)(hostend - p));
    }
    if (r->host[0] == '\0') {
        *err = "missing host";
        return WY_EINVAL;
    }
    if (hostend >= slash || hostend + 1 == slash) {
        *err = "missing port";
        return WY_EINVAL;
    }
    if (parse_uint(hostend + 1, (size_t)(slash - hostend - 1), 65535, &v) != 0 || v == 0) {
        *err = "port must be a number in 1..65535";
        return WY_EINVAL;
    }
    r->port = (int)v;
    r->db = 0;
    if (slash < end && slash + 1 < end) {
        if (parse_uint(slash + 1, (size_t)(end - slash - 1), 1000000, &v) != 0) {
            *err = "database must be a non-negative number";
            return WY_EINVAL;
        }
        r->db = (int)v;
    }
    return WY_OK;
}

/* ---- command list and timeouts ----------------------------------------- */

static rcmd_t *oldest_cmd(const wy_redis_t *r)
{
    return wy_list_entry(wy_list_first(&r->cmds), rcmd_t, node);
}

static void arm_cmd_timer(wy_redis_t *r);

/* Keep the list sorted by deadline. Most commands use the default timeout, so the walk from the
 * tail stops at once. */
static void list_insert(wy_redis_t *r, rcmd_t *c)
{
    wy_list_t *after = r->cmds.prev;
    while (after != &r->cmds && wy_container_of(after, rcmd_t, node)->deadline > c->deadline)
        after = after->prev;
    /* Inserting at the front of the list that starts after `after` puts c right behind it. */
    wy_list_push_front(after, &c->node);
    if (oldest_cmd(r) == c || !uv_is_active((uv_handle_t *)&r->cmd_timer))
        arm_cmd_timer(r);
}

static void set_health(wy_redis_t *r)
{
    int h = (r->state == ST_READY && r->ping_ok) ? WY_OK : WY_EUNAVAIL;
    if (h == r->health)
        return;
    r->health = h;
    wy_log_info(h == WY_OK ? "redis up" : "redis down", "host", r->host, NULL);
    if (r->o.on_state)
        r->o.on_state(r, h, r->o.state_ud);
}

static void schedule_reconnect(wy_redis_t *r);

/* Forget the current connection: hiredis answers its pending commands with NULL (they see
 * WY_EUNAVAIL, or WY_ECANCELED when closing) and frees it, now or after the running callback. */
static void drop_connection(wy_redis_t *r)
{
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->state = ST_DOWN;
    r->ping_pending = false;
    if (ac != NULL)
        redisAsyncFree(ac);
    if (r->closing)
        return;
    set_health(r);
    if (!r->closing)
        schedule_reconnect(r);
}

/* Expired commands are only marked: dropping the connection makes hiredis call each pending
 * callback exactly once with a NULL reply, where the mark turns into WY_ETIMEDOUT. That keeps one
 * path for every outcome and no late reply can reach a finished command. */
static void on_cmd_timer(uv_timer_t *t)
{
    wy_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    bool drop = false;

    wy_list_t *pos;
    wy_list_foreach(pos, &r->cmds)
    {
        rcmd_t *c = wy_container_of(pos, rcmd_t, node);
        if (c->deadline > now)
            break;
        c->timed_out = true;
        drop = true;
        if (c->kind != CMD_USER)
            wy_log_warn("redis handshake or ping timed out", "host", r->host, NULL);
    }
    if (drop)
        drop_connection(r);
    arm_cmd_timer(r);
}

static void arm_cmd_timer(wy_redis_t *r)
{
    uint64_t now = uv_now(r->loop);
    const rcmd_t *c = oldest_cmd(r);
    if (c == NULL || r->closing) {
        uv_timer_stop(&r->cmd_timer);
        return;
    }
    uv_timer_start(&r->cmd_timer, on_cmd_timer, c->deadline > now ? c->deadline - now : 0, 0);
}

/* ---- hiredis callbacks -------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    rcmd_t *c = privdata;
    wy_redis_t *r = c->r;
    redisReply *reply = reply_;
    int status;

    wy_list_remove(&c->node);
    if (c->timed_out)
        status = WY_ETIMEDOUT;
    else if (reply == NULL)
        status = r->closing ? WY_ECANCELED : WY_EUNAVAIL;
    else if (reply->type == REDIS_REPLY_ERROR)
        status = WY_EIO;
    else
        status = WY_OK;

    switch (c->kind) {
    case CMD_USER:
        r->inflight--;
        c->cb(status, reply, c->ud);
        break;
    case CMD_HANDSHAKE:
        if (status == WY_EIO) {
            wy_log_error("redis handshake refused", "host", r->host, "error", reply->str, NULL);
            if (ac == r->ac)
                drop_connection(r);
        }
        break;
    case CMD_READY:
        if (ac != r->ac || r->state != ST_HANDSHAKE)
            break;
        if (status == WY_OK) {
            r->state = ST_READY;
            r->ping_ok = true;
            r->attempts = 0;
            uv_timer_stop(&r->retry_timer);
            set_health(r);
        } else if (status == WY_EIO) {
            wy_log_error("redis not ready", "host", r->host, "error", reply->str, NULL);
            drop_connection(r);
        }
        break;
    case CMD_PING:
        if (ac == r->ac) {
            r->ping_pending = false;
            if (status == WY_OK || status == WY_EIO) {
                r->ping_ok = status == WY_OK;
                set_health(r);
            }
        }
        break;
    }
    wy_free(c);
}

/* Queue c on the current connection; returns WY_OK or a WY_E* without calling anything. */
static int send_prepared(wy_redis_t *r, rcmd_t *c, int rc_hiredis, uint32_t timeout_ms)
{
    if (rc_hiredis != REDIS_OK) {
        wy_free(c);
        return WY_EINVAL;
    }
    c->deadline = uv_now(r->loop) + (timeout_ms ? timeout_ms : r->o.cmd_timeout_ms);
    list_insert(r, c);
    return WY_OK;
}

static rcmd_t *cmd_new(wy_redis_t *r, int kind, wy_redis_cb cb, void *ud)
{
    rcmd_t *c = wy_calloc(1, sizeof *c);
    c->r = r;
    c->kind = kind;
    c->cb = cb;
    c->ud = ud;
    return c;
}

static void send_internal(wy_redis_t *r, int kind, int argc, const char **argv)
{
    rcmd_t *c = cmd_new(r, kind, NULL, NULL);
    (void)send_prepared(r, c, redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, NULL), 0);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    wy_redis_t *r = ac->data;
    if (ac != r->ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback returns. */
        wy_log_warn("redis connect failed", "host", r->host, "error", ac->errstr, NULL);
        r->ac = NULL;
        r->state = ST_DOWN;
        set_health(r);
        schedule_reconnect(r);
        return;
    }
    r->state = ST_HANDSHAKE;
    if (r->password != NULL) {
        const char *argv[3] = {"AUTH", r->user ? r->user : r->password, r->password};
        send_internal(r, CMD_HANDSHAKE, r->user ? 3 : 2, argv);
    }
    if (r->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->db);
        const char *argv[2] = {"SELECT", db};
        send_internal(r, CMD_HANDSHAKE, 2, argv);
    }
    const char *ping[1] = {"PING"};
    send_internal(r, CMD_READY, 1, ping);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    wy_redis_t *r = ac->data;
    (void)status;
    if (ac != r->ac)
        return; /* we dropped it ourselves */
    wy_log_warn("redis connection lost", "host", r->host, "error", ac->errstr, NULL);
    r->ac = NULL;
    r->state = ST_DOWN;
    r->ping_pending = false;
    set_health(r);
    schedule_reconnect(r);
}

/* ---- connect / reconnect ----------------------------------------------- */

static void start_connect(wy_redis_t *r);

static void on_retry_timer(uv_timer_t *t)
{
    wy_redis_t *r = t->data;
    if (r->closing)
        return;
    if (r->state == ST_DOWN) {
        start_connect(r);
    } else if (r->state == ST_CONNECTING) {
        wy_log_warn("redis connect timed out", "host", r->host, NULL);
        drop_connection(r);
    }
}

static void schedule_reconnect(wy_redis_t *r)
{
    uint64_t delay = r->o.backoff_min_ms;
    for (uint32_t i = 0; i < r->attempts && delay < r->o.backoff_max_ms; i++)
        delay *= 2;
    if (delay > r->o.backoff_max_ms)
        delay = r->o.backoff_max_ms;
    r->attempts++;
    uv_timer_start(&r->retry_timer, on_retry_timer, delay, 0);
}

static void start_connect(wy_redis_t *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (ac == NULL)
        abort(); /* hiredis returns NULL only when out of memory */
    if (ac->err) {
        wy_log_warn("redis connect failed", "host", r->host, "error", ac->errstr, NULL);
        redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        wy_log_error("redis: cannot attach to loop", "host", r->host, NULL);
        redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->state = ST_CONNECTING;
    uv_timer_start(&r->retry_timer, on_retry_timer, r->o.connect_timeout_ms, 0);
}

static void on_ping_timer(uv_timer_t *t)
{
    wy_redis_t *r = t->data;
    if (r->state != ST_READY || r->ping_pending || r->closing)
        return;
    const char *argv[1] = {"PING"};
    r->ping_pending = true;
    send_internal(r, CMD_PING, 1, argv);
}

/* ---- public ------------------------------------------------------------- */

static void cluster_free(struct cluster *cl);

static void free_redis(wy_redis_t *r)
{
    if (r->cl != NULL)
        cluster_free(r->cl);
    wy_free(r->host);
    wy_free(r->user);
    wy_free(r->password);
    wy_free(r);
}

static void redis_init(wy_redis_t *r, uv_loop_t *loop, const wy_redis_opts_t *opts)
{
    if (opts)
        r->o = *opts;
    if (r->o.cmd_timeout_ms == 0)
        r->o.cmd_timeout_ms = 1000;
    if (r->o.max_inflight == 0)
        r->o.max_inflight = 4096;
    if (r->o.ping_interval_ms == 0)
        r->o.ping_interval_ms = 1000;
    if (r->o.backoff_min_ms == 0)
        r->o.backoff_min_ms = 100;
    if (r->o.backoff_max_ms < r->o.backoff_min_ms)
        r->o.backoff_max_ms = r->o.backoff_min_ms > 5000 ? r->o.backoff_min_ms : 5000;
    if (r->o.connect_timeout_ms == 0)
        r->o.connect_timeout_ms = 2000;
    r->loop = loop;
    r->health = WY_EUNAVAIL;
    r->state = ST_DOWN;
    uv_timer_init(loop, &r->cmd_timer);
    uv_timer_init(loop, &r->retry_timer);
    uv_timer_init(loop, &r->ping_timer);
    r->cmd_timer.data = r->retry_timer.data = r->ping_timer.data = r;
    r->handles_open = 3;
}

int wy_redis_create(uv_loop_t *loop, const char *url, const wy_redis_opts_t *opts, wy_redis_t **out,
                    const char **err)
{
    const char *dummy;
    if (err == NULL)
        err = &dummy;
    *out = NULL;
    if (url != NULL && strncmp(url, CLUSTER_SCHEME, sizeof CLUSTER_SCHEME - 1) == 0)
        return cluster_create(loop, url, opts, out, err);
    wy_redis_t *r = wy_calloc(1, sizeof *r);
    wy_list_init(&r->cmds);
    if (parse_url(r, url, err) != WY_OK) {
        free_redis(r);
        return WY_EINVAL;
    }
    redis_init(r, loop, opts);
    uv_timer_start(&r->ping_timer, on_ping_timer, r->o.ping_interval_ms, r->o.ping_interval_ms);
    start_connect(r);
    *out = r;
    return WY_OK;
}

static int admit(wy_redis_t *r)
{
    if (r->cl != NULL)
        return cluster_admit(r);
    if (r->closing)
        return WY_ECANCELED;
    if (r->state != ST_READY || r->ac == NULL ||
        (r->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
        return WY_EUNAVAIL;
    if (r->inflight >= r->o.max_inflight)
        return WY_EBUSY;
    return WY_OK;
}

int wy_redis_command(wy_redis_t *r, wy_redis_cb cb, void *ud, const char *fmt, ...)
{
    int rc = admit(r);
    va_list ap;
    if (rc != WY_OK)
        return rc;
    if (cb == NULL || fmt == NULL)
        return WY_EINVAL;
    if (r->cl != NULL) {
        va_start(ap, fmt);
        rc = cluster_command_fmt(r, cb, ud, fmt, ap);
        va_end(ap);
        return rc;
    }
    rcmd_t *c = cmd_new(r, CMD_USER, cb, ud);
    va_start(ap, fmt);
    rc = send_prepared(r, c, redisvAsyncCommand(r->ac, on_reply, c, fmt, ap), 0);
    va_end(ap);
    if (rc == WY_OK)
        r->inflight++;
    return rc;
}

int wy_redis_command_argv(wy_redis_t *r, wy_redis_cb cb, void *ud, int argc, const char **argv,
                          const size_t *argvlen)
{
    return wy_redis_command_argv_timeout(r, 0, cb, ud, argc, argv, argvlen);
}

int wy_redis_command_argv_timeout(wy_redis_t *r, uint32_t timeout_ms, wy_redis_cb cb, void *ud,
                                  int argc, const char **argv, const size_t *argvlen)
{
    int rc = admit(r);
    if (rc != WY_OK)
        return rc;
    if (argc <= 0 || argv == NULL || cb == NULL)
        return WY_EINVAL;
    if (r->cl != NULL)
        return cluster_command_argv(r, timeout_ms, cb, ud, argc, argv, argvlen);
    rcmd_t *c = cmd_new(r, CMD_USER, cb, ud);
    rc = send_prepared(r, c, redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen),
                       timeout_ms);
    if (rc == WY_OK)
        r->inflight++;
    return rc;
}

int wy_redis_health(const wy_redis_t *r)
{
    if (r->cl != NULL)
        return r->health;
    return (r->state == ST_READY && r->ping_ok) ? WY_OK : WY_EUNAVAIL;
}

uint32_t wy_redis_inflight(const wy_redis_t *r)
{
    return r->inflight;
}

static void handle_gone(wy_redis_t *r)
{
    if (--r->handles_open > 0)
        return;
    void (*done)(void *) = r->close_done;
    void *ud = r->close_ud;
    free_redis(r);
    if (done)
        done(ud);
}

static void on_handle_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

/* Runs one loop turn after close so the adapter's uv_poll (closed by redisAsyncFree) is gone
 * before done() tells the owner the loop may be closed. */
static void on_close_turn(uv_timer_t *t)
{
    wy_redis_t *r = t->data;
    uv_close((uv_handle_t *)&r->cmd_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->ping_timer, on_handle_closed);
}

void wy_redis_close(wy_redis_t *r, void (*done)(void *ud), void *ud)
{
    if (r == NULL || r->closing)
        return;
    r->closing = true;
    r->close_done = done;
    r->close_ud = ud;
    if (r->cl != NULL) {
        cluster_close(r);
        return;
    }
    uv_timer_stop(&r->cmd_timer);
    uv_timer_stop(&r->ping_timer);
    uv_timer_stop(&r->retry_timer);
    drop_connection(r);
    uv_timer_start(&r->retry_timer, on_close_turn, 0, 0);
}

/* ---- Lua scripts ------------------------------------------------------- */

struct wy_redis_script {
    char *text;
    size_t text_len;
    char sha[41];
    uint32_t refs; /* the owner's plus one per call in flight */
};

/* One wy_redis_eval call: its own copy of the command, kept for the EVAL retry. */
typedef struct {
    wy_redis_t *r;
    wy_redis_script_t *s;
    wy_redis_cb cb;
    void *ud;
    uint32_t timeout_ms;
    bool retried;
    int argc;          /* 3 + keys + args */
    const char **argv; /* [0] EVALSHA|EVAL, [1] sha|text, [2] numkeys, then copies */
    size_t *argvlen;
    char numkeys[12];
} eval_call_t;

wy_redis_script_t *wy_redis_script_new(const char *lua)
{
    wy_redis_script_t *s = wy_calloc(1, sizeof *s);
    s->text_len = strlen(lua);
    s->text = wy_strndup(lua, s->text_len);
    s->refs = 1;
    unsigned char md[20];
    unsigned int mdlen = 0;
    if (!EVP_Digest(s->text, s->text_len, md, &mdlen, EVP_sha1(), NULL) || mdlen != sizeof md)
        abort(); /* SHA-1 is always available in OpenSSL 3's default provider */
    for (size_t i = 0; i < sizeof md; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
    return s;
}

static void script_unref(wy_redis_script_t *s)
{
    if (--s->refs > 0)
        return;
    wy_free(s->text);
    wy_free(s);
}

void wy_redis_script_free(wy_redis_script_t *s)
{
    if (s)
        script_unref(s);
}

const char *wy_redis_script_sha(const wy_redis_script_t *s)
{
    return s->sha;
}

static void eval_call_free(eval_call_t *e)
{
    for (int i = 3; i < e->argc; i++)
        wy_free((char *)e->argv[i]);
    wy_free(e->argv);
    wy_free(e->argvlen);
    script_unref(e->s);
    wy_free(e);
}

static bool is_noscript(int status, const redisReply *reply)
{
    return status == WY_EIO && reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
           strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

static void on_eval_reply(int status, redisReply *reply, void *ud)
{
    eval_call_t *e = ud;
    if (is_noscript(status, reply) && !e->retried) {
        /* Redis lost the script (restart, SCRIPT FLUSH) or never had it: EVAL runs and loads it. */
        e->retried = true;
        e->argv[0] = "EVAL";
        e->argvlen[0] = 4;
        e->argv[1] = e->s->text;
        e->argvlen[1] = e->s->text_len;
        int rc = wy_redis_command_argv_timeout(e->r, e->timeout_ms, on_eval_reply, e, e->argc,
                                               e->argv, e->argvlen);
        if (rc == WY_OK)
            return;
        /* Not sent: report it as the outcome of this call, in the statuses of a callback. */
        status = rc == WY_ECANCELED ? WY_ECANCELED : WY_EUNAVAIL;
        reply = NULL;
    }
    e->cb(status, reply, e->ud);
    eval_call_free(e);
}

int wy_redis_eval(wy_redis_t *r, wy_redis_script_t *s, uint32_t timeout_ms, wy_redis_cb cb,
                  void *ud, int nkeys, int argc, const char *const *argv, const size_t *argvlen)
{
    int rc = admit(r);
    if (rc != WY_OK)
        return rc;
    if (s == NULL || cb == NULL || nkeys < 0 || nkeys > argc || (argc > 0 && argv == NULL) ||
        argc > INT32_MAX - 3)
        return WY_EINVAL;
    eval_call_t *e = wy_calloc(1, sizeof *e);
    e->r = r;
    e->s = s;
    e->cb = cb;
    e->ud = ud;
    e->timeout_ms = timeout_ms;
    e->argc = 3 + argc;
    e->argv = wy_calloc((size_t)e->argc, sizeof *e->argv);
    e->argvlen = wy_calloc((size_t)e->argc, sizeof *e->argvlen);
    snprintf(e->numkeys, sizeof e->numkeys, "%d", nkeys);
    e->argv[0] = "EVALSHA";
    e->argvlen[0] = 7;
    e->argv[1] = s->sha;
    e->argvlen[1] = 40;
    e->argv[2] = e->numkeys;
    e->argvlen[2] = strlen(e->numkeys);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        char *copy = wy_malloc(n + 1);
        memcpy(copy, argv[i], n);
        copy[n] = '\0';
        e->argv[3 + i] = copy;
        e->argvlen[3 + i] = n;
    }
    s->refs++;
    rc = wy_redis_command_argv_timeout(r, timeout_ms, on_eval_reply, e, e->argc, e->argv,
                                       e->argvlen);
    if (rc != WY_OK)
        eval_call_free(e);
    return rc;
}

/* ---- Redis Cluster ------------------------------------------------------
 * The handle the caller holds routes every command to one node handle (a plain wy_redis_t of
 * this file, one connection per node): by the hash slot of the command's first key (EVAL and
 * EVALSHA: the first of KEYS), from a slot map read with CLUSTER SLOTS at connect, every
 * refresh period and soon after any redirect or lost node. MOVED updates the slot and resends;
 * ASK resends once to the named node after ASKING; TRYAGAIN and CLUSTERDOWN (a slot being
 * migrated or failed over) are resent after a short delay; all within the command's timeout
 * and CL_REDIRECTS_MAX redirects. The front handle's timers: ping_timer refreshes the map,
 * cmd_timer resends delayed commands and runs an early refresh, retry_timer closes. */

#define CL_SLOTS         16384
#define CL_NODES_MAX     64
#define CL_SEEDS_MAX     16
#define CL_REDIRECTS_MAX 5
#define CL_DELAY_MS      25  /* TRYAGAIN / CLUSTERDOWN resend delay */
#define CL_REFRESH_MIN   100 /* ms between two map reads */

typedef struct cl_node {
    struct cluster *cl;
    char *host;
    int port;
    wy_redis_t *conn;
    int health;
} cl_node_t;

typedef struct cluster {
    wy_redis_t *front;
    cl_node_t nodes[CL_NODES_MAX];
    int nnodes, nseeds;
    int16_t slot[CL_SLOTS]; /* node index, -1 unknown */
    bool map_ok;            /* every slot has a node */
    bool refreshing, want_refresh;
    uint64_t last_refresh;
    uint32_t next_seed; /* round robin of the node asked for the map */
    wy_list_t delayed;  /* ccmd_t.node waiting for CL_DELAY_MS */
} cluster_t;

typedef struct {
    wy_list_t node;
    wy_redis_t *front;
    wy_redis_cb cb;
    void *ud;
    int argc;
    char **argv;
    size_t *argvlen;
    int slot;      /* -1: no key, any node */
    int sent_node; /* the node the current attempt went to */
    int ask_node;  /* >= 0: the next attempt goes there, after ASKING */
    int redirects; /* MOVED / ASK / TRYAGAIN answers so far */
    uint64_t deadline;
} ccmd_t;

/* CRC16-CCITT (XMODEM), the slot hash of Redis Cluster. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int wy_redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) & (CL_SLOTS - 1);
    }
    return crc16(key, len) & (CL_SLOTS - 1);
}

/* The argument index of the command's first key, or -1 (no key: any node). */
static int first_key(int argc, char **argv, const size_t *argvlen)
{
    static const char *const keyless[] = {"PING",   "ECHO",    "INFO",   "TIME",
                                          "SCRIPT", "CLUSTER", "DBSIZE", "COMMAND",
                                          "CONFIG", "CLIENT",  "AUTH",   "HELLO"};
    const char *cmd = argv[0];
    if (argvlen[0] >= 4 &&
        (strncasecmp(cmd, "EVAL", 4) == 0 || strncasecmp(cmd, "FCALL", 5) == 0)) {
        if (argc < 4)
            return -1;
        long n = strtol(argv[2], NULL, 10);
        return n > 0 ? 3 : -1;
    }
    for (size_t i = 0; i < WY_ARRAY_LEN(keyless); i++)
        if (strlen(keyless[i]) == argvlen[0] && strncasecmp(cmd, keyless[i], argvlen[0]) == 0)
            return -1;
    return argc >= 2 ? 1 : -1;
}

static void cl_set_health(cluster_t *cl)
{
    wy_redis_t *f = cl->front;
    int h = WY_EUNAVAIL;
    if (cl->map_ok && !f->closing) {
        h = WY_OK;
        bool used[CL_NODES_MAX] = {false};
        for (int s = 0; s < CL_SLOTS; s++)
            if (cl->slot[s] >= 0)
                used[cl->slot[s]] = true;
        for (int i = 0; i < cl->nnodes; i++)
            if (used[i] && cl->nodes[i].health != WY_OK)
                h = WY_EUNAVAIL;
    }
    if (h == f->health)
        return;
    f->health = h;
    wy_log_info(h == WY_OK ? "redis cluster up" : "redis cluster down", "seeds", f->host, NULL);
    if (f->o.on_state)
        f->o.on_state(f, h, f->o.state_ud);
}

static void cl_refresh(cluster_t *cl);
static void on_cl_timer(uv_timer_t *t);

/* A map read soon: now, or at the next cmd_timer tick when one ran less than
 * CL_REFRESH_MIN ago or is running. */
static void cl_refresh_soon(cluster_t *cl)
{
    wy_redis_t *f = cl->front;
    if (f->closing)
        return;
    if (!cl->refreshing && uv_now(f->loop) - cl->last_refresh >= CL_REFRESH_MIN) {
        cl_refresh(cl);
        return;
    }
    cl->want_refresh = true;
    if (!uv_is_active((uv_handle_t *)&f->cmd_timer))
        uv_timer_start(&f->cmd_timer, on_cl_timer, CL_DELAY_MS, 0);
}

static void cl_node_state(wy_redis_t *conn, int health, void *ud)
{
    (void)conn;
    cl_node_t *n = ud;
    n->health = health;
    if (health == WY_OK && !n->cl->map_ok)
        cl_refresh_soon(n->cl);
    else if (health != WY_OK)
        cl_refresh_soon(n->cl); /* a failover moves its slots */
    cl_set_health(n->cl);
}

/* The node for host:port, created (connecting in the background) when new; -1 when the table
 * is full. */
static int cl_node(cluster_t *cl, const char *host, size_t hostlen, int port)
{
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].port == port && strlen(cl->nodes[i].host) == hostlen &&
            memcmp(cl->nodes[i].host, host, hostlen) == 0)
            return i;
    if (cl->nnodes == CL_NODES_MAX) {
        wy_log_error("redis cluster: too many nodes", "seeds", cl->front->host, NULL);
        return -1;
    }
    wy_redis_t *f = cl->front;
    cl_node_t *n = &cl->nodes[cl->nnodes];
    wy_redis_t *c = wy_calloc(1, sizeof *c);
    wy_list_init(&c->cmds);
    c->host = wy_strndup(host, hostlen);
    c->port = port;
    c->user = f->user ? wy_strndup(f->user, strlen(f->user)) : NULL;
    c->password = f->password ? wy_strndup(f->password, strlen(f->password)) : NULL;
    wy_redis_opts_t o = f->o;
    o.on_state = cl_node_state;
    o.state_ud = n;
    redis_init(c, f->loop, &o);
    uv_timer_start(&c->ping_timer, on_ping_timer, c->o.ping_interval_ms, c->o.ping_interval_ms);
    start_connect(c);
    n->cl = cl;
    n->host = wy_strndup(host, hostlen);
    n->port = port;
    n->conn = c;
    n->health = WY_EUNAVAIL;
    f->handles_open++; /* the node handle is closed with the front */
    return cl->nnodes++;
}

static void on_slots(int status, redisReply *reply, void *ud)
{
    cl_node_t *asked = ud;
    cluster_t *cl = asked->cl;
    cl->refreshing = false;
    if (cl->front->closing)
        return;
    if (status != WY_OK || reply->type != REDIS_REPLY_ARRAY) {
        wy_log_warn("redis cluster: CLUSTER SLOTS failed", "node", asked->host, "error",
                    status == WY_EIO && reply ? reply->str : wy_strerror(status), NULL);
        cl->want_refresh = true;
        return;
    }
    static int16_t map[CL_SLOTS]; /* loop thread only */
    for (int i = 0; i < CL_SLOTS; i++)
        map[i] = -1;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const redisReply *m = e->element[2];
        const char *host = m->element[0]->str;
        size_t hostlen = m->element[0]->len;
        if (hostlen == 0 || (hostlen == 1 && host[0] == '?')) { /* "the node you asked" */
            host = asked->host;
            hostlen = strlen(host);
        }
        int idx = cl_node(cl, host, hostlen, (int)m->element[1]->integer);
        if (idx < 0 || lo < 0 || hi >= CL_SLOTS || lo > hi)
            continue;
        for (long long s = lo; s <= hi; s++)
            map[s] = (int16_t)idx;
    }
    bool full = true;
    for (int i = 0; i < CL_SLOTS && full; i++)
        full = map[i] >= 0;
    if (!full) {
        /* Keep routing by the old map (redirects fix single slots); read again soon. */
        wy_log_warn("redis cluster: slot map incomplete", "node", asked->host, NULL);
        cl->want_refresh = true;
        if (!cl->map_ok)
            return;
        for (int i = 0; i < CL_SLOTS; i++)
            if (map[i] >= 0)
                cl->slot[i] = map[i];
    } else {
        int changed = 0;
        for (int i = 0; i < CL_SLOTS; i++)
            changed += cl->map_ok && cl->slot[i] != map[i];
        memcpy(cl->slot, map, sizeof map);
        if (changed > 0) {
            char n[16];
            snprintf(n, sizeof n, "%d", changed);
            wy_log_info("redis cluster: slot map changed", "slots", n, NULL);
        }
        if (!cl->map_ok) {
            char nn[16];
            snprintf(nn, sizeof nn, "%d", cl->nnodes);
            wy_log_info("redis cluster: slot map loaded", "nodes", nn, NULL);
        }
        cl->map_ok = true;
    }
    cl_set_health(cl);
}

/* Asks one healthy node (round robin, seeds first) for the slot map. */
static void cl_refresh(cluster_t *cl)
{
    wy_redis_t *f = cl->front;
    if (cl->refreshing || f->closing)
        return;
    cl->want_refresh = false;
    cl->last_refresh = uv_now(f->loop);
    for (int k = 0; k < cl->nnodes; k++) {
        cl_node_t *n = &cl->nodes[(cl->next_seed + (uint32_t)k) % (uint32_t)cl->nnodes];
        if (n->health != WY_OK)
            continue;
        const char *argv[] = {"CLUSTER", "SLOTS"};
        if (wy_redis_command_argv(n->conn, on_slots, n, 2, argv, NULL) == WY_OK) {
            cl->next_seed = (cl->next_seed + (uint32_t)k + 1) % (uint32_t)cl->nnodes;
            cl->refreshing = true;
            return;
        }
    }
    cl->want_refresh = true; /* nobody answers yet: retried by the timers */
}

static void ccmd_free(ccmd_t *c)
{
    for (int i = 0; i < c->argc; i++)
        wy_free(c->argv[i]);
    wy_free(c->argv);
    wy_free(c->argvlen);
    wy_free(c);
}

static void ccmd_finish(ccmd_t *c, int status, redisReply *reply)
{
    wy_redis_t *f = c->front;
    f->inflight--;
    c->cb(status, reply, c->ud);
    ccmd_free(c);
}

static void on_node_reply(int status, redisReply *reply, void *ud);
static void on_cl_timer(uv_timer_t *t);

static void ignore_node_reply(int status, redisReply *reply, void *ud)
{
    (void)status, (void)reply, (void)ud; /* ASKING: the command after it tells */
}

/* Sends c's next attempt; WY_OK or why not (nothing called). */
static int ccmd_send(ccmd_t *c)
{
    wy_redis_t *f = c->front;
    cluster_t *cl = f->cl;
    uint64_t now = uv_now(f->loop);
    if (f->closing)
        return WY_ECANCELED;
    if (now >= c->deadline)
        return WY_ETIMEDOUT;
    int idx = c->ask_node;
    if (idx < 0 && c->slot >= 0)
        idx = cl->slot[c->slot];
    if (idx < 0) { /* no key: the first healthy node */
        for (int i = 0; i < cl->nnodes && idx < 0; i++)
            if (cl->nodes[i].health == WY_OK)
                idx = i;
        if (idx < 0)
            return WY_EUNAVAIL;
    }
    wy_redis_t *n = cl->nodes[idx].conn;
    uint32_t left = (uint32_t)(c->deadline - now);
    if (c->ask_node >= 0) {
        const char *asking[] = {"ASKING"};
        int rc = wy_redis_command_argv_timeout(n, left, ignore_node_reply, NULL, 1, asking, NULL);
        if (rc != WY_OK)
            return rc;
        c->ask_node = -1;
    }
    c->sent_node = idx;
    return wy_redis_command_argv_timeout(n, left, on_node_reply, c, c->argc, (const char **)c->argv,
                                         c->argvlen);
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": the node index named (created if new), or -1. */
static int redirect_target(ccmd_t *c, const char *msg)
{
    cluster_t *cl = c->front->cl;
    const char *sp = strchr(msg, ' ');
    if (sp == NULL || (sp = strchr(sp + 1, ' ')) == NULL)
        return -1;
    const char *addr = sp + 1, *colon = strrchr(addr, ':');
    if (colon == NULL)
        return -1;
    long port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535)
        return -1;
    const char *host = addr;
    size_t hostlen = (size_t)(colon - addr);
    if (hostlen == 0) { /* Redis 7: same host as the node that answered */
        host = cl->nodes[c->sent_node].host;
        hostlen = strlen(host);
    }
    return cl_node(cl, host, hostlen, (int)port);
}

static void cl_delay(ccmd_t *c)
{
    wy_redis_t *f = c->front;
    wy_list_push_back(&f->cl->delayed, &c->node);
    if (!uv_is_active((uv_handle_t *)&f->cmd_timer))
        uv_timer_start(&f->cmd_timer, on_cl_timer, CL_DELAY_MS, 0);
}

static void resend(ccmd_t *c, int status, redisReply *reply)
{
    int rc = ccmd_send(c);
    if (rc == WY_OK)
        return;
    ccmd_finish(c, rc == WY_ETIMEDOUT || rc == WY_ECANCELED ? rc : status,
                rc == WY_ETIMEDOUT || rc == WY_ECANCELED ? NULL : reply);
}

static void on_node_reply(int status, redisReply *reply, void *ud)
{
    ccmd_t *c = ud;
    cluster_t *cl = c->front->cl;
    if (status == WY_EUNAVAIL || status == WY_ETIMEDOUT)
        cl_refresh_soon(cl); /* the node may have failed over */
    if (status != WY_EIO || reply == NULL || reply->type != REDIS_REPLY_ERROR ||
        reply->str == NULL || c->front->closing) {
        ccmd_finish(c, status, reply);
        return;
    }
    bool moved = strncmp(reply->str, "MOVED ", 6) == 0, ask = strncmp(reply->str, "ASK ", 4) == 0;
    bool again =
        strncmp(reply->str, "TRYAGAIN", 8) == 0 || strncmp(reply->str, "CLUSTERDOWN", 11) == 0;
    if (!moved && !ask && !again) {
        ccmd_finish(c, status, reply);
        return;
    }
    if (again) {
        /* A slot half migrated (some of the keys moved) or failing over: resent every
         * CL_DELAY_MS until the command's deadline. */
        if (uv_now(c->front->loop) + CL_DELAY_MS >= c->deadline) {
            ccmd_finish(c, WY_EIO, reply);
            return;
        }
        cl_delay(c);
        return;
    }
    if (++c->redirects > CL_REDIRECTS_MAX) {
        wy_log_warn("redis cluster: too many redirects", "error", reply->str, NULL);
        ccmd_finish(c, WY_EIO, reply);
        return;
    }
    int idx = redirect_target(c, reply->str);
    if (idx < 0) {
        ccmd_finish(c, WY_EIO, reply);
        return;
    }
    if (moved) {
        if (c->slot >= 0)
            cl->slot[c->slot] = (int16_t)idx;
        cl_refresh_soon(cl);
    } else {
        c->ask_node = idx;
    }
    resend(c, WY_EIO, reply);
}

/* cmd_timer: resend the delayed commands, run a wanted map read. */
static void on_cl_timer(uv_timer_t *t)
{
    wy_redis_t *f = t->data;
    cluster_t *cl = f->cl;
    if (f->closing)
        return;
    if (cl->want_refresh)
        cl_refresh(cl);
    wy_list_t pending;
    wy_list_init(&pending);
    while (!wy_list_empty(&cl->delayed)) {
        wy_list_t *e = wy_list_first(&cl->delayed);
        wy_list_remove(e);
        wy_list_push_back(&pending, e);
    }
    while (!wy_list_empty(&pending)) {
        ccmd_t *c = wy_container_of(wy_list_first(&pending), ccmd_t, node);
        wy_list_remove(&c->node);
        int rc = ccmd_send(c);
        if (rc == WY_EUNAVAIL || rc == WY_EBUSY)
            cl_delay(c); /* the node is reconnecting: until the deadline */
        else if (rc != WY_OK)
            ccmd_finish(c, rc == WY_ETIMEDOUT || rc == WY_ECANCELED ? rc : WY_EUNAVAIL, NULL);
    }
    if (cl->want_refresh && !uv_is_active((uv_handle_t *)&f->cmd_timer))
        uv_timer_start(&f->cmd_timer, on_cl_timer, CL_DELAY_MS * 4, 0);
}

static void on_cl_refresh_timer(uv_timer_t *t)
{
    wy_redis_t *f = t->data;
    if (!f->closing)
        cl_refresh(f->cl);
}

static int cluster_admit(wy_redis_t *r)
{
    if (r->closing)
        return WY_ECANCELED;
    if (!r->cl->map_ok)
        return WY_EUNAVAIL;
    if (r->inflight >= r->o.max_inflight)
        return WY_EBUSY;
    return WY_OK;
}

static int cluster_submit(wy_redis_t *r, uint32_t timeout_ms, wy_redis_cb cb, void *ud, int argc,
                          char **argv, size_t *argvlen)
{
    ccmd_t *c = wy_calloc(1, sizeof *c);
    wy_list_init(&c->node);
    c->front = r;
    c->cb = cb;
    c->ud = ud;
    c->argc = argc;
    c->argv = argv;
    c->argvlen = argvlen;
    c->ask_node = -1;
    c->sent_node = -1;
    int k = first_key(argc, argv, argvlen);
    c->slot = k < 0 ? -1 : wy_redis_key_slot(argv[k], argvlen[k]);
    c->deadline = uv_now(r->loop) + (timeout_ms ? timeout_ms : r->o.cmd_timeout_ms);
    int rc = ccmd_send(c);
    if (rc != WY_OK) {
        ccmd_free(c);
        return rc == WY_ETIMEDOUT ? WY_EUNAVAIL : rc;
    }
    r->inflight++;
    return WY_OK;
}

static int cluster_command_argv(wy_redis_t *r, uint32_t timeout_ms, wy_redis_cb cb, void *ud,
                                int argc, const char **argv, const size_t *argvlen)
{
    char **v = wy_calloc((size_t)argc, sizeof *v);
    size_t *l = wy_calloc((size_t)argc, sizeof *l);
    for (int i = 0; i < argc; i++) {
        l[i] = argvlen ? argvlen[i] : strlen(argv[i]);
        v[i] = wy_malloc(l[i] + 1);
        memcpy(v[i], argv[i], l[i]);
        v[i][l[i]] = '\0';
    }
    return cluster_submit(r, timeout_ms, cb, ud, argc, v, l);
}

/* Reads "$<len>\r\n<bytes>\r\n" at *p (end e) into a new string; false when malformed. */
static bool resp_bulk(const char **p, const char *e, char **out, size_t *len)
{
    const char *q = *p;
    if (q >= e || *q != '$')
        return false;
    char *end = NULL;
    long n = strtol(q + 1, &end, 10);
    if (end == NULL || n < 0 || end + 2 > e || end[0] != '\r' || end[1] != '\n' ||
        (size_t)(e - (end + 2)) < (size_t)n + 2)
        return false;
    *len = (size_t)n;
    *out = wy_malloc((size_t)n + 1);
    memcpy(*out, end + 2, (size_t)n);
    (*out)[n] = '\0';
    *p = end + 2 + n + 2;
    return true;
}

static int cluster_command_fmt(wy_redis_t *r, wy_redis_cb cb, void *ud, const char *fmt, va_list ap)
{
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len <= 0 || cmd == NULL || cmd[0] != '*')
        return WY_EINVAL;
    const char *p = cmd, *e = cmd + len;
    char *end = NULL;
    long argc = strtol(p + 1, &end, 10);
    if (argc <= 0 || argc > 1000000 || end + 2 > e) {
        redisFreeCommand(cmd);
        return WY_EINVAL;
    }
    p = end + 2;
    char **v = wy_calloc((size_t)argc, sizeof *v);
    size_t *l = wy_calloc((size_t)argc, sizeof *l);
    for (long i = 0; i < argc; i++) {
        if (!resp_bulk(&p, e, &v[i], &l[i])) {
            for (long j = 0; j < i; j++)
                wy_free(v[j]);
            wy_free(v);
            wy_free(l);
            redisFreeCommand(cmd);
            return WY_EINVAL;
        }
    }
    redisFreeCommand(cmd);
    return cluster_submit(r, 0, cb, ud, (int)argc, v, l);
}

static void on_node_closed(void *ud)
{
    cl_node_t *n = ud;
    n->conn = NULL;
    handle_gone(n->cl->front);
}

static void cluster_close(wy_redis_t *r)
{
    cluster_t *cl = r->cl;
    uv_timer_stop(&r->cmd_timer);
    uv_timer_stop(&r->ping_timer);
    while (!wy_list_empty(&cl->delayed)) {
        ccmd_t *c = wy_container_of(wy_list_first(&cl->delayed), ccmd_t, node);
        wy_list_remove(&c->node);
        ccmd_finish(c, WY_ECANCELED, NULL);
    }
    /* Pending commands get WY_ECANCELED from their node's close. */
    for (int i = 0; i < cl->nnodes; i++)
        wy_redis_close(cl->nodes[i].conn, on_node_closed, &cl->nodes[i]);
    r->health = WY_EUNAVAIL;
    uv_timer_start(&r->retry_timer, on_close_turn, 0, 0);
}

static void cluster_free(cluster_t *cl)
{
    for (int i = 0; i < cl->nnodes; i++)
        wy_free(cl->nodes[i].host);
    wy_free(cl);
}

/* redis+cluster://[[user]:password@]host:port[,host:port...][/] */
static int cluster_create(uv_loop_t *loop, const char *url, const wy_redis_opts_t *opts,
                          wy_redis_t **out, const char **err)
{
    const char *body = url + sizeof CLUSTER_SCHEME - 1;
    size_t blen = strlen(body);
    if (blen > 2048) {
        *err = "URL longer than 2048 characters";
        return WY_EINVAL;
    }
    if (blen > 0 && body[blen - 1] == '/')
        blen--;
    if (memchr(body, '/', blen) != NULL) {
        *err = "a cluster URL takes no database (Redis Cluster has only database 0)";
        return WY_EINVAL;
    }
    const char *at = NULL;
    for (const char *q = body; q < body + blen; q++)
        if (*q == '@')
            at = q;
    const char *hosts = at ? at + 1 : body;
    size_t credlen = at ? (size_t)(at - body) + 1 : 0; /* with the '@' */
    wy_redis_t *f = wy_calloc(1, sizeof *f);
    wy_list_init(&f->cmds);
    cluster_t *cl = wy_calloc(1, sizeof *cl);
    cl->front = f;
    wy_list_init(&cl->delayed);
    for (int i = 0; i < CL_SLOTS; i++)
        cl->slot[i] = -1;
    f->cl = cl;
    f->host = wy_strndup(hosts, (size_t)(body + blen - hosts)); /* for logs: the seeds */
    struct {
        char *host;
        int port;
    } seeds[CL_SEEDS_MAX];
    int nseeds = 0, rc = WY_OK;
    const char *p = hosts, *end = body + blen;
    while (rc == WY_OK) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if (nseeds == CL_SEEDS_MAX) {
            *err = "more than 16 seed nodes";
            rc = WY_EINVAL;
            break;
        }
        /* Each seed is validated as "redis://<credentials>host:port". */
        char *one = wy_sprintf("redis://%.*s%.*s", (int)credlen, body, (int)(stop - p), p);
        wy_redis_t tmp;
        memset(&tmp, 0, sizeof tmp);
        rc = parse_url(&tmp, one, err);
        wy_free(one);
        if (rc == WY_OK) {
            seeds[nseeds].host = tmp.host;
            seeds[nseeds].port = tmp.port;
            nseeds++;
            if (f->user == NULL && f->password == NULL) {
                f->user = tmp.user;
                f->password = tmp.password;
            } else {
                wy_free(tmp.user);
                wy_free(tmp.password);
            }
        } else {
            wy_free(tmp.host);
            wy_free(tmp.user);
            wy_free(tmp.password);
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (rc != WY_OK) {
        for (int i = 0; i < nseeds; i++)
            wy_free(seeds[i].host);
        free_redis(f);
        return rc;
    }
    redis_init(f, loop, opts);
    f->cmd_timer.data = f->ping_timer.data = f->retry_timer.data = f;
    uint32_t refresh = f->o.ping_interval_ms * 5 < 2000 ? 2000 : f->o.ping_interval_ms * 5;
    uv_timer_start(&f->ping_timer, on_cl_refresh_timer, refresh, refresh);
    for (int i = 0; i < nseeds; i++) {
        cl_node(cl, seeds[i].host, strlen(seeds[i].host), seeds[i].port);
        wy_free(seeds[i].host);
    }
    cl->nseeds = nseeds;
    *out = f;
    return WY_OK;
}
