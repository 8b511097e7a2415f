/* wy_kafka — librdkafka producer/consumer driven by a libuv loop: the rdkafka
 * queue writes a byte to a pipe when it becomes non-empty, uv_poll wakes us,
 * and we serve the queue on the loop thread. */
#include "wy_kafka.h"
#include "wy_buf.h"
#include "wy_list.h"
#include "wy_log.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

/* Events served per wake-up, so a flood of messages cannot starve the loop;
 * when the bound is hit we re-arm the pipe ourselves. */
#define SERVE_BATCH 512
/* librdkafka leaves the group when the application does not poll for
 * max.poll.interval.ms, even if the queue was simply empty: poll on a timer. */
#define TICK_MS 1000

static _Thread_local char errbuf[512];

/* ---- shared client plumbing ------------------------------------------------ */

typedef struct kclient kclient_t;

struct kclient {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q; /* the queue whose io event wakes the loop */
    int pipe_r, pipe_w;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;
    bool healthy;
    bool in_dispatch;   /* inside serve(): user callbacks may be running */
    bool close_pending; /* close asked for from a callback */
    bool closed;        /* close done (or in progress); no new work */
    int close_timeout_ms;
    void (*serve)(kclient_t *k, int budget); /* serve up to budget events */
    void (*do_close)(kclient_t *k);
    void (*free_self)(kclient_t *k);
};

static const char *set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return errbuf;
}

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, const char **err)
{
    char why[256];
    if (rd_kafka_conf_set(conf, key, val, why, sizeof why) != RD_KAFKA_CONF_OK) {
        *err = set_err("kafka setting %s=%s: %s", key, val, why);
        return WY_EINVAL;
    }
    return WY_OK;
}

static int conf_set_int(rd_kafka_conf_t *conf, const char *key, int val, const char **err)
{
    char s[24];
    snprintf(s, sizeof s, "%d", val);
    return conf_set(conf, key, s, err);
}

static int conf_extra(rd_kafka_conf_t *conf, const char *const *extra, const char **err)
{
    for (size_t i = 0; extra && extra[i]; i += 2) {
        if (!extra[i + 1]) {
            *err = set_err("kafka setting %s has no value", extra[i]);
            return WY_EINVAL;
        }
        if (conf_set(conf, extra[i], extra[i + 1], err) != WY_OK)
            return WY_EINVAL;
    }
    return WY_OK;
}

/* librdkafka accepts any string as bootstrap.servers and just never connects;
 * check the shape here so a typo stops the daemon at start. */
static int check_brokers(const char *brokers, const char **err)
{
    if (!brokers || !*brokers) {
        *err = set_err("kafka brokers: empty (want host:port[,host:port...])");
        return WY_EINVAL;
    }
    const char *p = brokers;
    while (*p) {
        size_t n = strcspn(p, ",");
        char entry[256];
        if (n == 0 || n >= sizeof entry) {
            *err =
                set_err("kafka brokers \"%s\": %s", brokers, n ? "entry too long" : "empty entry");
            return WY_EINVAL;
        }
        memcpy(entry, p, n);
        entry[n] = '\0';
        char *e = entry;
        while (*e == ' ')
            e++;
        char *scheme = strstr(e, "://");
        if (scheme)
            e = scheme + 3;
        char *colon = strrchr(e, ':');
        if (!colon || colon == e || (e[0] == '[' && colon[-1] != ']')) {
            *err = set_err("kafka brokers: \"%s\" is not host:port", e);
            return WY_EINVAL;
        }
        char *end;
        errno = 0;
        long port = strtol(colon + 1, &end, 10);
        while (*end == ' ')
            end++;
        if (errno || end == colon + 1 || *end || port < 1 || port > 65535) {
            *err = set_err("kafka brokers: \"%s\" has a bad port (want 1-65535)", e);
            return WY_EINVAL;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return WY_OK;
}

static void set_healthy(kclient_t *k, bool up)
{
    if (k->healthy == up)
        return;
    k->healthy = up;
    if (up)
        wy_log_info("kafka broker reachable", "client", rd_kafka_name(k->rk), NULL);
    else
        wy_log_warn("kafka brokers unreachable", "client", rd_kafka_name(k->rk), NULL);
}

/* Runs on the loop (served from the queue). */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kclient_t *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        set_healthy(k, false);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
        set_healthy(k, false);
        wy_log_error("kafka fatal error", "client", rd_kafka_name(rk), "error",
                     rd_kafka_err2name(orig), "reason", why, NULL);
        return;
    }
    wy_log_warn("kafka error", "client", rd_kafka_name(rk), "error",
                rd_kafka_err2name((rd_kafka_resp_err_t)err), "reason", reason, NULL);
}

/* Health from the statistics JSON: reachable when any broker connection is up.
 * Runs on the loop; returning 0 lets librdkafka free the JSON. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    kclient_t *k = opaque;
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *brokers = root ? json_object_get(root, "brokers") : NULL;
    bool up = false;
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b)
    {
        const char *state = json_string_value(json_object_get(b, "state"));
        if (state && (strcmp(state, "UP") == 0 || strcmp(state, "UPDATE") == 0))
            up = true;
    }
    if (root)
        set_healthy(k, up);
    json_decref(root);
    return 0;
}

/* Called on librdkafka's own threads: only the (thread-safe) logger is used. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    int lvl = level <= 3   ? WY_LOG_ERROR
              : level == 4 ? WY_LOG_WARN
              : level <= 6 ? WY_LOG_INFO
                           : WY_LOG_DEBUG;
    wy_log(lvl, "librdkafka", "client", rd_kafka_name(rk), "facility", fac, "detail", buf, NULL);
}

static void handle_closed(uv_handle_t *h)
{
    kclient_t *k = h->data;
    if (--k->open_handles > 0)
        return;
    close(k->pipe_r);
    close(k->pipe_w);
    k->free_self(k);
}

static void dispatch(kclient_t *k)
{
    if (k->closed)
        return;
    k->in_dispatch = true;
    k->serve(k, SERVE_BATCH);
    k->in_dispatch = false;
    if (k->close_pending) {
        k->close_pending = false;
        k->do_close(k);
        return;
    }
    /* Budget used up with events left: the fd will not be written again
     * (it is only written on empty -> non-empty), so re-arm it ourselves. */
    if (rd_kafka_queue_length(k->q) > 0) {
        ssize_t w = write(k->pipe_w, "1", 1);
        (void)w;
    }
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    kclient_t *k = h->data;
    char buf[256];
    while (read(k->pipe_r, buf, sizeof buf) > 0) {
    }
    dispatch(k);
}

static void on_tick(uv_timer_t *t)
{
    dispatch(t->data);
}

/* Common tail of creation: pipe + uv handles + io event on k->q. */
static int attach_loop(kclient_t *k, const char **err)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        *err = set_err("kafka: pipe2: %s", strerror(errno));
        return WY_EIO;
    }
    k->pipe_r = fds[0];
    k->pipe_w = fds[1];
    uv_poll_init(k->loop, &k->poll, k->pipe_r);
    k->poll.data = k;
    uv_poll_start(&k->poll, UV_READABLE, on_readable);
    uv_timer_init(k->loop, &k->timer);
    k->timer.data = k;
    uv_timer_start(&k->timer, on_tick, TICK_MS, TICK_MS);
    k->open_handles = 2;
    rd_kafka_queue_io_event_enable(k->q, k->pipe_w, "1", 1);
    /* Events queued before the io event was enabled never write the fd. */
    ssize_t w = write(k->pipe_w, "1", 1);
    (void)w;
    return WY_OK;
}

/* Stops the uv handles; memory goes in handle_closed. */
static void detach_loop(kclient_t *k)
{
    uv_poll_stop(&k->poll);
    uv_timer_stop(&k->timer);
    uv_close((uv_handle_t *)&k->poll, handle_closed);
    uv_close((uv_handle_t *)&k->timer, handle_closed);
}

/* Common head of creation: k on its loop, and a new conf with the callbacks and brokers
 * every client has. *rc is WY_OK or the error of the setting that failed. */
static rd_kafka_conf_t *conf_common(kclient_t *k, uv_loop_t *loop, const char *brokers, int *rc,
                                    const char **err)
{
    k->loop = loop;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    *rc = conf_set(conf, "bootstrap.servers", brokers, err);
    return conf;
}

/* Common settings after a client's own (unless rc already failed); the caller's extra
 * pairs come last so they may override any of ours. */
static int conf_common_tail(rd_kafka_conf_t *conf, int rc, int stats_interval_ms,
                            const char *const *extra, const char **err)
{
    if (!rc)
        rc = conf_set_int(conf, "statistics.interval.ms",
                          stats_interval_ms > 0 ? stats_interval_ms : 1000, err);
    if (!rc)
        rc = conf_set(conf, "log.connection.close", "false", err);
    if (!rc)
        rc = conf_extra(conf, extra, err);
    return rc;
}

/* Creates k->rk from conf (consumed either way) when every setting took (rc == WY_OK);
 * otherwise, or when librdkafka refuses, k is freed and rc or WY_EINVAL returned. */
static int kclient_create(kclient_t *k, rd_kafka_type_t type, rd_kafka_conf_t *conf, int rc,
                          const char **err)
{
    if (!rc) {
        char why[512];
        k->rk = rd_kafka_new(type, conf, why, sizeof why);
        if (k->rk)
            return WY_OK;
        *err = set_err("kafka %s: %s", type == RD_KAFKA_PRODUCER ? "producer" : "consumer", why);
        rc = WY_EINVAL;
    }
    rd_kafka_conf_destroy(conf);
    k->free_self(k);
    return rc;
}

int wy_kafka_err(int e)
{
    switch ((rd_kafka_resp_err_t)e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return WY_OK;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return WY_ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__DESTROY:
        return WY_ECANCELED;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return WY_ETOOBIG;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return WY_EBUSY;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return WY_ENOTFOUND;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return WY_EPERM;
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        return WY_EUNAVAIL;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return WY_EINVAL;
    case RD_KAFKA_RESP_ERR__STATE:
        return WY_ESTATE;
    default:
        return WY_EIO;
    }
}

/* ---- Envelope ---------------------------------------------------------------- */

uint8_t *wy_kafka_envelope_pack(const char *event_id, const char *type, const char *producer,
                                uint64_t timestamp_ms, const char *key, const void *payload,
                                size_t payload_len, size_t *out_len)
{
    Wyvern__Envelope env = WYVERN__ENVELOPE__INIT;
    /* protobuf-c only reads the strings; the casts drop const for its API. */
    env.event_id = (char *)(event_id ? event_id : "");
    env.type = (char *)(type ? type : "");
    env.producer = (char *)(producer ? producer : "");
    env.timestamp_ms = timestamp_ms;
    env.key = (char *)(key ? key : "");
    env.payload.data = (uint8_t *)payload;
    env.payload.len = payload ? payload_len : 0;
    size_t n = wyvern__envelope__get_packed_size(&env);
    uint8_t *buf = wy_malloc(n);
    *out_len = wyvern__envelope__pack(&env, buf);
    return buf;
}

Wyvern__Envelope *wy_kafka_envelope_unpack(const void *data, size_t len, const char **err)
{
    if (len > WY_KAFKA_MAX_ENVELOPE) {
        *err = "record larger than the Envelope bound";
        return NULL;
    }
    if (!data || len == 0) {
        *err = "empty record";
        return NULL;
    }
    Wyvern__Envelope *env = wyvern__envelope__unpack(NULL, len, data);
    if (!env) {
        *err = "not a protobuf Envelope";
        return NULL;
    }
    const char *why = NULL;
    if (!env->event_id || !*env->event_id)
        why = "empty event_id";
    else if (strlen(env->event_id) > WY_KAFKA_MAX_ID)
        why = "event_id too long";
    else if (!env->type || !*env->type)
        why = "empty type";
    else if (strlen(env->type) > WY_KAFKA_MAX_ID)
        why = "type too long";
    if (why) {
        wyvern__envelope__free_unpacked(env, NULL);
        *err = why;
        return NULL;
    }
    return env;
}

void wy_kafka_envelope_free(Wyvern__Envelope *env)
{
    if (env)
        wyvern__envelope__free_unpacked(env, NULL);
}

/* ---- Producer ---------------------------------------------------------------- */

typedef struct pmsg {
    wy_list_t node; /* in the producer's pending list */
    wy_kafka_delivery_cb cb;
    void *udata;
    char event_id[WY_KAFKA_MAX_ID + 1];
} pmsg_t;

struct wy_kafka_producer_s {
    kclient_t k;
    char *name;
    wy_list_t pending; /* pmsg_t: messages whose report has not run */
    wy_kafka_producer_stats_t st;
};

static void pmsg_report(wy_kafka_producer_t *p, pmsg_t *m, int status)
{
    wy_list_remove(&m->node);
    p->st.queued--;
    if (status == WY_OK)
        p->st.delivered++;
    else
        p->st.failed++;
    if (m->cb)
        m->cb(m->udata, status, m->event_id);
    wy_free(m);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    (void)rk;
    wy_kafka_producer_t *p = opaque;
    pmsg_t *m = rkm->_private;
    int status = wy_kafka_err(rkm->err);
    if (status == WY_OK) {
        set_healthy(&p->k, true);
    } else if (status != WY_ECANCELED) {
        wy_log_warn("kafka delivery failed", "topic", rd_kafka_topic_name(rkm->rkt), "event_id",
                    m->event_id, "error", rd_kafka_err2name(rkm->err), NULL);
    }
    pmsg_report(p, m, status);
}

static void producer_serve(kclient_t *k, int budget)
{
    while (budget-- > 0 && !k->close_pending && rd_kafka_poll(k->rk, 0) > 0) {
    }
}

static void producer_free(kclient_t *k)
{
    wy_kafka_producer_t *p = (wy_kafka_producer_t *)k;
    wy_free(p->name);
    wy_free(p);
}

static void producer_do_close(kclient_t *k)
{
    wy_kafka_producer_t *p = (wy_kafka_producer_t *)k;
    k->closed = true;
    rd_kafka_resp_err_t e =
        rd_kafka_flush(k->rk, k->close_timeout_ms > 0 ? k->close_timeout_ms : 0);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        char n[24];
        snprintf(n, sizeof n, "%d", rd_kafka_outq_len(k->rk));
        wy_log_warn("kafka producer closing with undelivered messages", "client",
                    rd_kafka_name(k->rk), "outq", n, NULL);
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(k->rk, 500);
    }
    rd_kafka_queue_destroy(k->q);
    rd_kafka_destroy(k->rk);
    k->rk = NULL;
    /* Anything librdkafka never reported is reported here, so every accepted
     * message gets exactly one callback. */
    wy_list_t *n;
    while ((n = wy_list_first(&p->pending)))
        pmsg_report(p, wy_list_entry(n, pmsg_t, node), WY_ECANCELED);
    detach_loop(k);
}

int wy_kafka_producer_new(uv_loop_t *loop, const wy_kafka_producer_opts_t *o,
                          wy_kafka_producer_t **out, const char **err)
{
    *out = NULL;
    if (check_brokers(o->brokers, err) != WY_OK)
        return WY_EINVAL;
    if (!o->producer || !*o->producer) {
        *err = "kafka producer: empty producer name";
        return WY_EINVAL;
    }
    wy_kafka_producer_t *p = wy_calloc(1, sizeof *p);
    p->name = wy_strdup(o->producer);
    wy_list_init(&p->pending);
    kclient_t *k = &p->k;
    k->serve = producer_serve;
    k->do_close = producer_do_close;
    k->free_self = producer_free;

    int rc;
    rd_kafka_conf_t *conf = conf_common(k, loop, o->brokers, &rc, err);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    if (!rc)
        rc = conf_set(conf, "client.id", o->producer, err);
    if (!rc)
        rc = conf_set(conf, "enable.idempotence", "true", err);
    if (!rc)
        rc = conf_set(conf, "acks", "all", err);
    if (!rc)
        rc = conf_set_int(conf, "queue.buffering.max.messages",
                          o->max_queue > 0 ? o->max_queue : 100000, err);
    if (!rc)
        rc = conf_set_int(conf, "queue.buffering.max.kbytes",
                          o->max_queue_kbytes > 0 ? o->max_queue_kbytes : 65536, err);
    if (!rc)
        rc = conf_set_int(conf, "message.timeout.ms",
                          o->message_timeout_ms > 0 ? o->message_timeout_ms : 30000, err);
    if (!rc)
        rc = conf_set_int(conf, "linger.ms",
                          o->linger_ms > 0   ? o->linger_ms
                          : o->linger_ms < 0 ? 0
                                             : 5,
                          err);
    if (!rc)
        rc = conf_set_int(conf, "message.max.bytes", WY_KAFKA_MAX_ENVELOPE + 64 * 1024, err);
    rc = conf_common_tail(conf, rc, o->stats_interval_ms, o->extra, err);
    rc = kclient_create(k, RD_KAFKA_PRODUCER, conf, rc, err);
    if (rc != WY_OK)
        return rc;
    k->q = rd_kafka_queue_get_main(k->rk);
    if ((rc = attach_loop(k, err)) != WY_OK) {
        rd_kafka_queue_destroy(k->q);
        rd_kafka_destroy(k->rk);
        producer_free(k);
        return rc;
    }
    *out = p;
    return WY_OK;
}

/* Shared by wy_kafka_produce and wy_kafka_produce_event: event_id is ours (a fresh UUID) or the
 * caller's (an outbox row), timestamp_ms likewise. */
static int produce(wy_kafka_producer_t *p, const char *topic, const char *key, const char *event_id,
                   const char *type, uint64_t timestamp_ms, const void *payload, size_t payload_len,
                   wy_kafka_delivery_cb cb, void *udata)
{
    kclient_t *k = &p->k;
    if (k->closed || k->close_pending) {
        p->st.rejected++;
        return WY_ESTATE;
    }
    if (!topic || !*topic || !type || !*type || strlen(type) > WY_KAFKA_MAX_ID || !event_id ||
        !*event_id || strlen(event_id) > WY_KAFKA_MAX_ID || (payload_len && !payload)) {
        p->st.rejected++;
        return WY_EINVAL;
    }
    if (payload_len > WY_KAFKA_MAX_ENVELOPE) {
        p->st.rejected++;
        return WY_ETOOBIG;
    }
    size_t len;
    uint8_t *buf = wy_kafka_envelope_pack(event_id, type, p->name, timestamp_ms, key, payload,
                                          payload_len, &len);
    if (len > WY_KAFKA_MAX_ENVELOPE) {
        wy_free(buf);
        p->st.rejected++;
        return WY_ETOOBIG;
    }
    pmsg_t *m = wy_calloc(1, sizeof *m);
    m->cb = cb;
    m->udata = udata;
    snprintf(m->event_id, sizeof m->event_id, "%s", event_id);
    size_t klen = key ? strlen(key) : 0;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_KEY(klen ? key : NULL, klen),
        RD_KAFKA_V_TIMESTAMP((int64_t)timestamp_ms), RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
    wy_free(buf);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        wy_free(m);
        p->st.rejected++;
        return wy_kafka_err(e);
    }
    wy_list_push_back(&p->pending, &m->node);
    p->st.produced++;
    p->st.queued++;
    return WY_OK;
}

int wy_kafka_produce(wy_kafka_producer_t *p, const char *topic, const char *key, const char *type,
                     const void *payload, size_t payload_len, wy_kafka_delivery_cb cb, void *udata,
                     char event_id_out[37])
{
    char id[37];
    wy_uuid4(id);
    int rc = produce(p, topic, key, id, type, wy_wall_ms(), payload, payload_len, cb, udata);
    if (rc == WY_OK && event_id_out)
        memcpy(event_id_out, id, sizeof id);
    return rc;
}

int wy_kafka_produce_event(wy_kafka_producer_t *p, const char *topic, const char *key,
                           const char *event_id, const char *type, uint64_t timestamp_ms,
                           const void *payload, size_t payload_len, wy_kafka_delivery_cb cb,
                           void *udata)
{
    return produce(p, topic, key, event_id, type, timestamp_ms, payload, payload_len, cb, udata);
}

/* Closes now, or right after the callback being dispatched returns (a close
 * from inside a callback must not free what the dispatcher still uses). */
static void kclient_close(kclient_t *k, int timeout_ms, void (*do_close)(kclient_t *))
{
    if (k->closed || k->close_pending)
        return;
    k->close_timeout_ms = timeout_ms;
    if (k->in_dispatch) {
        k->close_pending = true;
        return;
    }
    do_close(k);
}

void wy_kafka_producer_close(wy_kafka_producer_t *p, int timeout_ms)
{
    kclient_close(&p->k, timeout_ms, producer_do_close);
}

bool wy_kafka_producer_healthy(const wy_kafka_producer_t *p)
{
    return p->k.healthy && !p->k.closed;
}

void wy_kafka_producer_stats(const wy_kafka_producer_t *p, wy_kafka_producer_stats_t *out)
{
    *out = p->st;
}

/* ---- Consumer ---------------------------------------------------------------- */

typedef struct kpart kpart_t;

struct wy_kafka_msg_s {
    wy_list_t node;         /* in the partition's offset-ordered list */
    wy_kafka_consumer_t *c; /* NULL once detached (partition revoked, consumer closed) */
    kpart_t *part;
    Wyvern__Envelope *env; /* NULL for a bad record or once done/released */
    int64_t offset;
    int32_t partition;
    bool done;       /* effect done (or bad record): storable */
    bool user_owned; /* handed to the handler, not yet done/released */
    char topic[];
};

/* One assigned partition and the messages delivered from it that still
 * matter for its stored offset, in offset order. */
struct kpart {
    wy_list_t node; /* in the consumer's assigned partitions */
    char *topic;
    int32_t partition;
    wy_list_t msgs;      /* wy_kafka_msg_t, offset order */
    int64_t next_offset; /* just past the last delivered message; -1 before any */
};

struct wy_kafka_consumer_s {
    kclient_t k;
    wy_kafka_handler_cb handler;
    wy_kafka_rebalance_cb on_rebalance;
    void *udata;
    wy_list_t parts; /* kpart_t: assigned partitions; few, so a list */
    int max_in_flight;
    int position_timeout_ms; /* 0 = let librdkafka resolve start offsets lazily */
    wy_kafka_consumer_stats_t st;
};

static kpart_t *part_find(wy_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    wy_list_t *n;
    wy_list_foreach(n, &c->parts)
    {
        kpart_t *pt = wy_list_entry(n, kpart_t, node);
        if (pt->partition == partition && strcmp(pt->topic, topic) == 0)
            return pt;
    }
    return NULL;
}

static void msg_free(wy_kafka_msg_t *m)
{
    wy_kafka_envelope_free(m->env);
    wy_free(m);
}

static void set_paused(wy_kafka_consumer_t *c, bool pause)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    if (rd_kafka_assignment(c->k.rk, &list) == RD_KAFKA_RESP_ERR_NO_ERROR && list->cnt > 0) {
        if (pause)
            rd_kafka_pause_partitions(c->k.rk, list);
        else
            rd_kafka_resume_partitions(c->k.rk, list);
    }
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    c->st.paused = pause;
    char n[24];
    snprintf(n, sizeof n, "%" PRIu64, c->st.in_flight);
    wy_log_info(pause ? "kafka consumer paused (in-flight bound)" : "kafka consumer resumed",
                "client", rd_kafka_name(c->k.rk), "in_flight", n, NULL);
}

static void check_bound(wy_kafka_consumer_t *c)
{
    if (c->k.closed)
        return;
    if (!c->st.paused && c->st.in_flight >= (uint64_t)c->max_in_flight)
        set_paused(c, true);
    else if (c->st.paused && c->st.in_flight <= (uint64_t)c->max_in_flight / 2)
        set_paused(c, false);
}

/* Pops the done prefix of the partition's list and stores the offset just
 * past it: an unfinished message keeps every later one from being stored. */
static void part_advance(wy_kafka_consumer_t *c, kpart_t *pt)
{
    int64_t last = -1;
    wy_list_t *n;
    while ((n = wy_list_first(&pt->msgs)) && wy_list_entry(n, wy_kafka_msg_t, node)->done) {
        wy_kafka_msg_t *m = wy_list_entry(n, wy_kafka_msg_t, node);
        wy_list_remove(n);
        last = m->offset;
        c->st.in_flight--;
        msg_free(m);
    }
    if (last < 0)
        return;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, pt->topic, pt->partition)->offset = last + 1;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->k.rk, list);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        e = list->elems[0].err;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        char off[24], part[16];
        snprintf(off, sizeof off, "%" PRId64, last + 1);
        snprintf(part, sizeof part, "%" PRId32, pt->partition);
        wy_log_warn("kafka offset store failed", "topic", pt->topic, "partition", part, "offset",
                    off, "error", rd_kafka_err2name(e), NULL);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Forgets a partition: done entries are freed, messages the owner still
 * holds are detached (their done/release then only frees). */
static void part_drop(wy_kafka_consumer_t *c, kpart_t *pt)
{
    wy_list_remove(&pt->node);
    wy_list_t *n;
    while ((n = wy_list_pop_front(&pt->msgs))) {
        wy_kafka_msg_t *m = wy_list_entry(n, wy_kafka_msg_t, node);
        c->st.in_flight--;
        if (m->user_owned) {
            m->c = NULL;
            m->part = NULL;
        } else {
            msg_free(m);
        }
    }
    c->st.partitions--;
    wy_free(pt->topic);
    wy_free(pt);
}

static void part_track(wy_kafka_consumer_t *c, kpart_t *pt, wy_kafka_msg_t *m)
{
    m->c = c;
    m->part = pt;
    wy_list_push_back(&pt->msgs, &m->node);
    pt->next_offset = m->offset + 1;
    c->st.in_flight++;
}

static void log_parts(const char *what, const rd_kafka_t *rk,
                      const rd_kafka_topic_partition_list_t *parts)
{
    wy_buf_t b = WY_BUF_INIT;
    for (int i = 0; i < parts->cnt; i++) {
        wy_buf_printf(&b, "%s%s[%" PRId32 "]", i ? "," : "", parts->elems[i].topic,
                      parts->elems[i].partition);
        if (parts->elems[i].offset >= 0)
            wy_buf_printf(&b, "@%" PRId64, parts->elems[i].offset);
    }
    wy_log_info(what, "client", rd_kafka_name(rk), "partitions", b.data ? b.data : "", NULL);
    wy_buf_free(&b);
}

/* Hands a rebalance to the owner's callback (loop thread, inside dispatch). */
static void report_rebalance(wy_kafka_consumer_t *c, wy_kafka_rebalance_t kind,
                             const rd_kafka_topic_partition_list_t *parts)
{
    if (!c->on_rebalance)
        return;
    size_t n = parts ? (size_t)parts->cnt : 0;
    wy_kafka_partition_t *list = wy_calloc(n ? n : 1, sizeof *list);
    for (size_t i = 0; i < n; i++) {
        list[i].topic = parts->elems[i].topic;
        list[i].partition = parts->elems[i].partition;
        list[i].offset = parts->elems[i].offset >= 0 ? parts->elems[i].offset : -1;
    }
    c->on_rebalance(c->udata, kind, list, n);
    wy_free(list);
}

/* Gives each partition of `parts` an explicit start offset before it is
 * assigned: the group's committed offset, else the partition's end (high
 * watermark). An event produced after this returns is therefore delivered;
 * with a lazy "latest" reset it could land before the position is looked up
 * and be skipped. Two broker requests (OffsetFetch, then one ListOffsets
 * "latest" per leader for the partitions without a committed offset), each
 * bounded by position_timeout_ms, blocking the loop; only at assignment. A
 * partition whose offsets cannot be read keeps the lazy reset (logged). */
static void position_parts(wy_kafka_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_t *rk = c->k.rk;
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, parts, c->position_timeout_ms);
    rd_kafka_topic_partition_list_t *ends = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR || p->offset < 0) {
            p->offset = RD_KAFKA_OFFSET_INVALID;
            /* ListOffsets with timestamp -1 answers the end of the partition. */
            rd_kafka_topic_partition_list_add(ends, p->topic, p->partition)->offset =
                RD_KAFKA_OFFSET_END;
        }
    }
    if (ends->cnt > 0) {
        e = rd_kafka_offsets_for_times(rk, ends, c->position_timeout_ms);
        for (int i = 0; i < ends->cnt; i++) {
            rd_kafka_topic_partition_t *q = &ends->elems[i];
            rd_kafka_resp_err_t qe = e ? e : q->err;
            rd_kafka_topic_partition_t *p =
                rd_kafka_topic_partition_list_find(parts, q->topic, q->partition);
            if (qe == RD_KAFKA_RESP_ERR_NO_ERROR && q->offset >= 0) {
                p->offset = q->offset;
                continue;
            }
            char part[16];
            snprintf(part, sizeof part, "%" PRId32, q->partition);
            wy_log_warn("kafka start offset not resolved (events of the next moments may be "
                        "missed)",
                        "topic", q->topic, "partition", part, "error", rd_kafka_err2name(qe), NULL);
        }
    }
    rd_kafka_topic_partition_list_destroy(ends);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    wy_kafka_consumer_t *c = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (c->position_timeout_ms > 0)
            position_parts(c, parts);
        log_parts("kafka partitions assigned", rk, parts);
        for (int i = 0; i < parts->cnt; i++) {
            if (part_find(c, parts->elems[i].topic, parts->elems[i].partition))
                continue;
            kpart_t *pt = wy_calloc(1, sizeof *pt);
            pt->topic = wy_strdup(parts->elems[i].topic);
            pt->partition = parts->elems[i].partition;
            pt->next_offset = -1;
            wy_list_init(&pt->msgs);
            wy_list_push_back(&c->parts, &pt->node);
            c->st.partitions++;
        }
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        if (c->st.paused)
            rd_kafka_pause_partitions(rk, parts);
        c->st.assignments++;
        report_rebalance(c, WY_KAFKA_ASSIGNED, parts);
    } else {
        /* Revoked or lost: an unfinished message of these partitions is not
         * stored, so the next owner gets it again (at-least-once). */
        bool lost = err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS || rd_kafka_assignment_lost(rk);
        if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            log_parts(lost ? "kafka partitions lost" : "kafka partitions revoked", rk, parts);
        else
            wy_log_error("kafka rebalance error", "client", rd_kafka_name(rk), "error",
                         rd_kafka_err2name(err), NULL);
        /* The owner hears first, while it may still finish what it holds. */
        report_rebalance(c, lost ? WY_KAFKA_LOST : WY_KAFKA_REVOKED, parts);
        bool all = err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS || !coop;
        wy_list_t *n, *tmp;
        wy_list_foreach_safe(n, tmp, &c->parts)
        {
            kpart_t *pt = wy_list_entry(n, kpart_t, node);
            if (all || (parts && rd_kafka_topic_partition_list_find(parts, pt->topic,
                                                                    pt->partition) != NULL))
                part_drop(c, pt);
        }
        if (coop && err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
        check_bound(c);
    }
    if (error) {
        wy_log_error("kafka assignment failed", "client", rd_kafka_name(rk), "error",
                     rd_kafka_error_string(error), NULL);
        rd_kafka_error_destroy(error);
    }
}

static void consume_one(wy_kafka_consumer_t *c, rd_kafka_message_t *rkm)
{
    char part[16], off[24];
    const char *topic = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "";
    snprintf(part, sizeof part, "%" PRId32, rkm->partition);
    snprintf(off, sizeof off, "%" PRId64, rkm->offset);
    if (rkm->err) {
        if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            return;
        c->st.errors++;
        wy_log_warn("kafka consumer error", "topic", topic, "partition", part, "error",
                    rd_kafka_err2name(rkm->err), "reason", rd_kafka_message_errstr(rkm), NULL);
        return;
    }
    set_healthy(&c->k, true);
    kpart_t *pt = part_find(c, topic, rkm->partition);
    if (!pt) {
        /* Not in our assignment (a race with a revoke): leave it to the owner. */
        wy_log_debug("kafka message for an unassigned partition", "topic", topic, "partition", part,
                     "offset", off, NULL);
        return;
    }
    if (pt->next_offset >= 0 && rkm->offset < pt->next_offset) {
        wy_log_debug("kafka message delivered twice, skipped", "topic", topic, "partition", part,
                     "offset", off, NULL);
        return;
    }
    size_t tlen = strlen(topic);
    wy_kafka_msg_t *m = wy_calloc(1, sizeof *m + tlen + 1);
    memcpy(m->topic, topic, tlen + 1);
    m->offset = rkm->offset;
    m->partition = rkm->partition;
    const char *why = NULL;
    m->env = wy_kafka_envelope_unpack(rkm->payload, rkm->len, &why);
    part_track(c, pt, m);
    if (!m->env) {
        c->st.bad++;
        wy_log_warn("kafka message is not an Envelope", "topic", topic, "partition", part, "offset",
                    off, "reason", why, NULL);
        m->done = true;
        part_advance(c, pt);
        check_bound(c);
        return;
    }
    c->st.consumed++;
    m->user_owned = true;
    check_bound(c);
    c->handler(c->udata, m->env, m);
}

static void consumer_serve(kclient_t *k, int budget)
{
    wy_kafka_consumer_t *c = (wy_kafka_consumer_t *)k;
    while (budget-- > 0 && !k->close_pending) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(k->rk, 0);
        if (!rkm)
            break;
        consume_one(c, rkm);
        rd_kafka_message_destroy(rkm);
    }
}

static void consumer_free(kclient_t *k)
{
    wy_free(k);
}

static void consumer_do_close(kclient_t *k)
{
    wy_kafka_consumer_t *c = (wy_kafka_consumer_t *)k;
    k->closed = true;
    /* Bounded synchronous commit of what is stored: rd_kafka_commit(.., 0)
     * could wait for the socket timeout when the broker is gone. */
    rd_kafka_queue_t *tmp = rd_kafka_queue_new(k->rk);
    rd_kafka_resp_err_t e = rd_kafka_commit_queue(k->rk, NULL, tmp, NULL, NULL);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_event_t *ev =
            rd_kafka_queue_poll(tmp, k->close_timeout_ms > 0 ? k->close_timeout_ms : 0);
        if (!ev)
            e = RD_KAFKA_RESP_ERR__TIMED_OUT;
        else
            e = rd_kafka_event_error(ev);
        if (ev)
            rd_kafka_event_destroy(ev);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        wy_log_warn("kafka commit at close failed", "client", rd_kafka_name(k->rk), "error",
                    rd_kafka_err2name(e), NULL);
    rd_kafka_queue_destroy(tmp);
    /* Serves the final revoke through rebalance_cb on this thread. */
    e = rd_kafka_consumer_close(k->rk);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        wy_log_warn("kafka consumer close", "client", rd_kafka_name(k->rk), "error",
                    rd_kafka_err2name(e), NULL);
    wy_list_t *n;
    while ((n = wy_list_first(&c->parts)))
        part_drop(c, wy_list_entry(n, kpart_t, node));
    rd_kafka_queue_destroy(k->q);
    rd_kafka_destroy(k->rk);
    k->rk = NULL;
    detach_loop(k);
}

int wy_kafka_consumer_new(uv_loop_t *loop, const wy_kafka_consumer_opts_t *o,
                          wy_kafka_consumer_t **out, const char **err)
{
    *out = NULL;
    if (check_brokers(o->brokers, err) != WY_OK)
        return WY_EINVAL;
    if (!o->group_id || !*o->group_id) {
        *err = "kafka consumer: empty group id";
        return WY_EINVAL;
    }
    if (!o->topics || !o->topics[0]) {
        *err = "kafka consumer: no topics";
        return WY_EINVAL;
    }
    for (size_t i = 0; o->topics[i]; i++) {
        if (!*o->topics[i]) {
            *err = "kafka consumer: empty topic name";
            return WY_EINVAL;
        }
    }
    if (!o->handler) {
        *err = "kafka consumer: no handler";
        return WY_EINVAL;
    }
    wy_kafka_consumer_t *c = wy_calloc(1, sizeof *c);
    c->handler = o->handler;
    c->on_rebalance = o->on_rebalance;
    c->udata = o->udata;
    c->max_in_flight = o->max_in_flight > 0 ? o->max_in_flight : 1000;
    c->position_timeout_ms =
        o->position_on_assign ? (o->position_timeout_ms > 0 ? o->position_timeout_ms : 5000) : 0;
    wy_list_init(&c->parts);
    kclient_t *k = &c->k;
    k->serve = consumer_serve;
    k->do_close = consumer_do_close;
    k->free_self = consumer_free;

    int rc;
    rd_kafka_conf_t *conf = conf_common(k, loop, o->brokers, &rc, err);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    if (!rc)
        rc = conf_set(conf, "group.id", o->group_id, err);
    if (!rc && o->client_id && *o->client_id)
        rc = conf_set(conf, "client.id", o->client_id, err);
    if (!rc)
        rc = conf_set(conf, "enable.auto.offset.store", "false", err);
    if (!rc)
        rc = conf_set(conf, "enable.auto.commit", "true", err);
    if (!rc)
        rc = conf_set_int(conf, "auto.commit.interval.ms",
                          o->auto_commit_interval_ms > 0 ? o->auto_commit_interval_ms : 1000, err);
    if (!rc)
        rc = conf_set(conf, "auto.offset.reset", "earliest", err);
    if (!rc)
        rc = conf_set_int(conf, "session.timeout.ms",
                          o->session_timeout_ms > 0 ? o->session_timeout_ms : 10000, err);
    if (!rc)
        rc = conf_set(conf, "enable.partition.eof", "false", err);
    /* Eager rebalancing (see wy_kafka.h: why not cooperative-sticky on librdkafka 2.0). */
    if (!rc)
        rc = conf_set(conf, "partition.assignment.strategy", "range,roundrobin", err);
    rc = conf_common_tail(conf, rc, o->stats_interval_ms, o->extra, err);
    rc = kclient_create(k, RD_KAFKA_CONSUMER, conf, rc, err);
    if (rc != WY_OK)
        return rc;
    /* Errors, stats and rebalances then arrive on the consumer queue too, so
     * one io-event fd covers everything. */
    rd_kafka_poll_set_consumer(k->rk);
    k->q = rd_kafka_queue_get_consumer(k->rk);

    size_t n = 0;
    while (o->topics[n])
        n++;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(topics, o->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        *err = set_err("kafka consumer: subscribe: %s", rd_kafka_err2str(e));
        rc = WY_EINVAL;
    } else {
        rc = attach_loop(k, err);
    }
    if (rc != WY_OK) {
        rd_kafka_queue_destroy(k->q);
        rd_kafka_consumer_close(k->rk);
        rd_kafka_destroy(k->rk);
        consumer_free(k);
        return rc;
    }
    *out = c;
    return WY_OK;
}

void wy_kafka_msg_done(wy_kafka_msg_t *m)
{
    wy_kafka_consumer_t *c = m->c;
    if (!c || !m->user_owned) {
        if (!c)
            msg_free(m);
        return;
    }
    m->user_owned = false;
    m->done = true;
    wy_kafka_envelope_free(m->env);
    m->env = NULL;
    c->st.done++;
    if (!c->k.closed) {
        part_advance(c, m->part);
        check_bound(c);
    }
}

void wy_kafka_msg_release(wy_kafka_msg_t *m)
{
    if (!m->c) {
        msg_free(m);
        return;
    }
    /* Stays in the partition list, not done: later offsets are never stored
     * past it; freed when the partition is dropped. */
    m->user_owned = false;
    wy_kafka_envelope_free(m->env);
    m->env = NULL;
}

const char *wy_kafka_msg_topic(const wy_kafka_msg_t *m)
{
    return m->topic;
}

int32_t wy_kafka_msg_partition(const wy_kafka_msg_t *m)
{
    return m->partition;
}

int64_t wy_kafka_msg_offset(const wy_kafka_msg_t *m)
{
    return m->offset;
}

void wy_kafka_consumer_close(wy_kafka_consumer_t *c, int timeout_ms)
{
    kclient_close(&c->k, timeout_ms, consumer_do_close);
}

bool wy_kafka_consumer_healthy(const wy_kafka_consumer_t *c)
{
    return c->k.healthy && !c->k.closed;
}

void wy_kafka_consumer_stats(const wy_kafka_consumer_t *c, wy_kafka_consumer_stats_t *out)
{
    *out = c->st;
}
