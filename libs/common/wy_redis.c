/* wy_redis — hiredis async client on libuv with reconnect, per-command timeouts and a health PING.
 * hiredis 0.14 has no async timeouts: every command carries a deadline in a list sorted by deadline
 * (nearly always send order) watched by a single uv timer. */
#include "wy_redis.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
};

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
        *err = "URL must start with redis://";
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

static void free_redis(wy_redis_t *r)
{
    wy_free(r->host);
    wy_free(r->user);
    wy_free(r->password);
    wy_free(r);
}

int wy_redis_create(uv_loop_t *loop, const char *url, const wy_redis_opts_t *opts, wy_redis_t **out,
                    const char **err)
{
    wy_redis_t *r = wy_calloc(1, sizeof *r);
    wy_list_init(&r->cmds);
    const char *dummy;
    if (err == NULL)
        err = &dummy;
    *out = NULL;
    if (parse_url(r, url, err) != WY_OK) {
        free_redis(r);
        return WY_EINVAL;
    }
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
    uv_timer_start(&r->ping_timer, on_ping_timer, r->o.ping_interval_ms, r->o.ping_interval_ms);
    start_connect(r);
    *out = r;
    return WY_OK;
}

static int admit(wy_redis_t *r)
{
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
    rcmd_t *c = cmd_new(r, CMD_USER, cb, ud);
    rc = send_prepared(r, c, redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen),
                       timeout_ms);
    if (rc == WY_OK)
        r->inflight++;
    return rc;
}

int wy_redis_health(const wy_redis_t *r)
{
    return (r->state == ST_READY && r->ping_ok) ? WY_OK : WY_EUNAVAIL;
}

uint32_t wy_redis_inflight(const wy_redis_t *r)
{
    return r->inflight;
}

static void on_handle_closed(uv_handle_t *h)
{
    wy_redis_t *r = h->data;
    if (--r->handles_open > 0)
        return;
    void (*done)(void *) = r->close_done;
    void *ud = r->close_ud;
    free_redis(r);
    if (done)
        done(ud);
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
