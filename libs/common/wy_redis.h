/* wy_redis — one self-healing Redis connection on the daemon's libuv loop (hiredis async).
 * Commands fail fast while Redis is down; a background PING keeps a health state for /readyz. */
#ifndef WY_REDIS_H
#define WY_REDIS_H

#include <uv.h>
#include <hiredis/hiredis.h>

#include "wy_core.h"

typedef struct wy_redis wy_redis_t;

/* Called once per accepted command, on the loop thread.
 *   status WY_OK       reply is the Redis reply (never an error reply).
 *   status WY_EIO      reply is NULL for a protocol failure, or, when Redis answered with an error
 *                      ("-ERR ...", "-WRONGTYPE ..."), reply->type == REDIS_REPLY_ERROR and
 *                      reply->str holds Redis' message.
 *   status WY_ETIMEDOUT no answer within the command timeout (reply NULL). The connection is then
 *                      dropped and re-established, since its state is unknown.
 *   status WY_EUNAVAIL the connection was lost before the answer (reply NULL); the command may or
 *                      may not have been executed.
 *   status WY_ECANCELED wy_redis_close() was called (reply NULL).
 * The reply and everything it points to are valid only during the callback (hiredis frees it). */
typedef void (*wy_redis_cb)(int status, redisReply *reply, void *ud);

/* Called on the loop thread whenever health changes: WY_OK (connected, handshake done, last PING
 * answered) or WY_EUNAVAIL. Optional. */
typedef void (*wy_redis_state_cb)(wy_redis_t *r, int health, void *ud);

typedef struct {
    uint32_t cmd_timeout_ms;     /* per command, also for the handshake and PING; default 1000 */
    uint32_t max_inflight;       /* commands sent and not yet answered; default 4096 */
    uint32_t ping_interval_ms;   /* health PING period; default 1000 */
    uint32_t backoff_min_ms;     /* first reconnect delay; default 100 */
    uint32_t backoff_max_ms;     /* reconnect delay cap; default 5000 */
    uint32_t connect_timeout_ms; /* TCP connect; default 2000 */
    wy_redis_state_cb on_state;
    void *state_ud;
} wy_redis_opts_t;

/* Parse url ("redis://host:port[/db]" or "redis://[user]:password@host:port[/db]", password may be
 * %-encoded; IPv6 hosts in brackets) and start connecting in the background on loop.
 * Redis Cluster: "redis+cluster://[[user]:password@]host:port[,host:port...]" (up to 16 seed
 * nodes, no database): the handle reads the slot map (CLUSTER SLOTS) from a seed, keeps one
 * connection per node and routes each command by the hash slot of its first key (EVAL/EVALSHA:
 * KEYS[1]; commands without a key go to any node); it follows MOVED (and re-reads the map),
 * ASK (ASKING, then the command on that node), at most 5 redirects, and resends after
 * TRYAGAIN/CLUSTERDOWN every 25 ms; all within the command's timeout, then the last error
 * reaches the callback (WY_EIO with Redis' message; WY_ETIMEDOUT when the time ran out). A
 * multi-key command or script whose keys are in different slots gets Redis' CROSSSLOT error: keep
 * them under one hash tag (docs/keys.md). The map is re-read every 5 ping intervals (at least 2 s)
 * and after a node is lost. Commands fail with WY_EUNAVAIL until the map is loaded or while their
 * slot's node is reconnecting; health is WY_OK when the map covers every slot and every node
 * serving slots answers its PING. opts may be NULL (defaults; zero fields also mean default). On
 * success returns WY_OK and *out; the handle is usable at once (commands fail with WY_EUNAVAIL
 * until the first connection is ready). On a bad URL returns WY_EINVAL and sets *err to a static
 * message without the variable name ("missing port"); the caller prefixes it with where the URL
 * came from ("WY_REDIS_URL: missing port"). Host names are resolved by hiredis with a blocking
 * getaddrinfo on each (re)connect: prefer an IP or a name the local resolver answers fast
 * (Kubernetes service names do). Loop thread only. */
int wy_redis_create(uv_loop_t *loop, const char *url, const wy_redis_opts_t *opts, wy_redis_t **out,
                    const char **err);

/* Send a printf-style command (hiredis format, so no compiler format check: %s C string, %b binary
 * + size_t length, %d ...). Returns WY_OK when the command is sent: cb will then be called exactly
 * once, never from inside this call. Otherwise returns, without ever calling cb: WY_EUNAVAIL (not
 * connected), WY_EBUSY (max_inflight reached), WY_ECANCELED (closing), WY_EINVAL (bad format). Loop
 * thread only. */
int wy_redis_command(wy_redis_t *r, wy_redis_cb cb, void *ud, const char *fmt, ...);

/* Same with an argument vector (binary safe). argvlen may be NULL for C strings. The arguments are
 * copied before return. Same return and callback contract as wy_redis_command. */
int wy_redis_command_argv(wy_redis_t *r, wy_redis_cb cb, void *ud, int argc, const char **argv,
                          const size_t *argvlen);

/* wy_redis_command_argv with its own timeout (timeout_ms 0 = the default cmd_timeout_ms), e.g. the
 * caller's remaining gRPC deadline, or a blocking command (BLPOP) that needs longer. */
int wy_redis_command_argv_timeout(wy_redis_t *r, uint32_t timeout_ms, wy_redis_cb cb, void *ud,
                                  int argc, const char **argv, const size_t *argvlen);

/* ---- Lua scripts ----
 * A script object holds a Lua script's text and its SHA-1 (computed here). wy_redis_eval sends
 * EVALSHA, so the text crosses the network only when Redis does not have it yet: on a NOSCRIPT
 * error (first use, Redis restarted, SCRIPT FLUSH, a failover) the same call is re-sent once
 * with EVAL, which also loads the script, and the caller sees only the second answer. One script
 * object may be used on any number of connections. Loop thread only (not reference-counted
 * across threads). */
typedef struct wy_redis_script wy_redis_script_t;

/* New script from Lua source (copied). Caller frees with wy_redis_script_free. */
wy_redis_script_t *wy_redis_script_new(const char *lua);

/* Releases the caller's reference; calls still in flight keep the script alive until their
 * callback has run. NULL is fine. */
void wy_redis_script_free(wy_redis_script_t *s);

/* The script's SHA-1 as 40 lowercase hex digits (what SCRIPT LOAD returns). */
const char *wy_redis_script_sha(const wy_redis_script_t *s);

/* Run script s: argv[0..nkeys) are its KEYS, argv[nkeys..argc) its ARGV (argvlen may be NULL for
 * C strings; binary safe otherwise; everything is copied before return). Same return and
 * callback contract as wy_redis_command_argv_timeout (timeout_ms 0 = cmd_timeout_ms, counted per
 * attempt); an error raised by the script (redis.error_reply, a runtime error) is WY_EIO with
 * Redis' message. WY_EINVAL for nkeys < 0, nkeys > argc or argc > 0 with argv NULL. */
int wy_redis_eval(wy_redis_t *r, wy_redis_script_t *s, uint32_t timeout_ms, wy_redis_cb cb,
                  void *ud, int nkeys, int argc, const char *const *argv, const size_t *argvlen);

/* WY_OK when connected, handshake (AUTH/SELECT) done and the last PING answered; else
 * WY_EUNAVAIL. Cheap; for /readyz. Loop thread only. */
int wy_redis_health(const wy_redis_t *r);

/* The Redis Cluster hash slot (0..16383) of a key: CRC16 of its hash tag (the part between the
 * first '{' and the next '}', when not empty) or of the whole key. */
int wy_redis_key_slot(const char *key, size_t len);

/* Commands sent and not yet answered (for metrics and tests). */
uint32_t wy_redis_inflight(const wy_redis_t *r);

/* Close: every pending command's callback gets WY_ECANCELED (during this call, or right after the
 * current hiredis callback returns when called from one), the connection
 * and all uv handles are closed, then done(ud) is called from the loop and r is freed. r must not
 * be used after this call. Safe to call from inside any wy_redis callback. done may be NULL. */
void wy_redis_close(wy_redis_t *r, void (*done)(void *ud), void *ud);

#endif
