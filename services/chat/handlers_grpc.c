/* wy-chat's gRPC API (wyvern.chat.Chat, proto/chat.proto). Each handler checks its request,
 * copies what later steps need into an operation (the request lives only as long as the
 * handler), runs the checks that need Redis (rate limit, zone locator, presence), then one
 * PostgreSQL statement that checks membership and mutes, takes the channel's next sequence
 * number, stores the message and writes its wy.chat outbox row (one statement: atomic, no
 * BEGIN/COMMIT round trips). Answers go through the call's id, so a late answer to a call
 * that is gone is a harmless WY_ECANCELED. Loop thread. */
#include "chat.h"
#include "wy_buf.h"
#include "wy_list.h"
#include "wy_log.h"
#include "wy_map.h"
#include "wy_outbox.h"
#include "wy_pg.h"
#include "wy_text.h"

#include <inttypes.h>
#include <string.h>

#define TOPIC           "wy.chat"
#define EV_TYPE         "chat.message"
#define REASON_MAX      500
#define HISTORY_MAX     200
#define HISTORY_DEFAULT 50

enum { MSG_TEXT = 0, MSG_TOMBSTONE = 1, MSG_JOIN = 2, MSG_LEAVE = 3, MSG_INVITE = 4, MSG_KICK = 5 };

typedef enum {
    OP_SEND,
    OP_JOIN,
    OP_LEAVE,
    OP_INVITE,
    OP_KICK,
    OP_DELETE,
    OP_HISTORY,
    OP_REPORT,
} op_kind_t;

typedef struct {
    chat_svc_t *svc;
    wy_grpc_call_id_t call;
    op_kind_t what;
    int kind; /* chat_kind_t of the channel */
    char channel[CHAT_CHANNEL_MAX + 1];
    char account[CHAT_ID_MAX + 1];
    char name[CHAT_NAME_MAX + 1];
    bool moderator;
    char subject[CHAT_ID_MAX + 1]; /* whisper recipient, invite/kick subject */
    char *text;                    /* send: as stored; report: the reason */
    bool masked;
    bool offline;
    uint64_t seq; /* delete/report: the message; history: after/before */
    uint64_t before;
    uint32_t limit;
    bool forward;
    char **recips; /* zone and whisper: the accounts the event goes to */
    size_t nrecips;
    wy_list_t node;      /* send: in its channel's queue */
    wy_outbox_row_t row; /* send: the event (event id, payload) */
    bool has_row;
    uint64_t accepted_ns; /* send: when the checks passed (wy_now_ns) */
} op_t;

static op_t *op_new(chat_svc_t *svc, wy_grpc_call_id_t call, op_kind_t what)
{
    op_t *op = wy_calloc(1, sizeof *op);
    op->svc = svc;
    op->call = call;
    op->what = what;
    chat_svc_ref(svc);
    svc->busy++;
    return op;
}

static void op_free(op_t *op)
{
    for (size_t i = 0; i < op->nrecips; i++)
        wy_free(op->recips[i]);
    wy_free(op->recips);
    wy_free(op->text);
    if (op->has_row)
        wy_outbox_row_free(&op->row);
    op->svc->busy--;
    chat_svc_unref(op->svc);
    wy_free(op);
}

static void op_fail(op_t *op, int err, const char *msg)
{
    wy_grpc_reply_error(op->call, err, msg);
    op_free(op);
}

static void op_recips_add(op_t *op, const char *account)
{
    op->recips = wy_realloc(op->recips, (op->nrecips + 1) * sizeof *op->recips);
    op->recips[op->nrecips++] = wy_strdup(account);
}

/* The service, or NULL (and the call answered UNAVAILABLE) once it is stopping. */
static chat_svc_t *svc_or_refuse(void *arg, wy_grpc_call_id_t call)
{
    chat_svc_t *svc = wy_daemon_state(arg);
    if (!svc || svc->stopping || !wy_daemon_pg(svc->d)) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-chat is stopping");
        return NULL;
    }
    return svc;
}

/* Copies the caller into op; false (and the call answered) when it is malformed. */
static bool caller_ok(op_t *op, const Wyvern__Chat__Caller *c)
{
    if (!c || !chat_account_ok(c->account_id)) {
        op_fail(op, WY_EINVAL, "caller.account_id must be 1..56 bytes of [A-Za-z0-9_.:-]");
        return false;
    }
    const char *name = c->name ? c->name : "";
    if (strlen(name) > CHAT_NAME_MAX || !wy_text_valid_utf8(name, strlen(name))) {
        op_fail(op, WY_EINVAL, "caller.name must be 0..64 bytes of UTF-8");
        return false;
    }
    snprintf(op->account, sizeof op->account, "%s", c->account_id);
    snprintf(op->name, sizeof op->name, "%s", name);
    op->moderator = c->moderator || chat_is_moderator(op->svc->cfg, op->account);
    return true;
}

/* "whisper:<a>|<b>" with a < b. */
static void whisper_id(char out[CHAT_CHANNEL_MAX + 1], const char *x, const char *y)
{
    const char *a = strcmp(x, y) < 0 ? x : y, *b = a == x ? y : x;
    snprintf(out, CHAT_CHANNEL_MAX + 1, "whisper:%s|%s", a, b);
}

/* The two accounts of a whisper channel id; false when malformed. */
static bool whisper_parties(const char *id, char a[CHAT_ID_MAX + 1], char b[CHAT_ID_MAX + 1])
{
    const char *p = id + strlen("whisper:");
    const char *bar = strchr(p, '|');
    if (!bar || (size_t)(bar - p) > CHAT_ID_MAX || strchr(bar + 1, '|'))
        return false;
    snprintf(a, CHAT_ID_MAX + 1, "%.*s", (int)(bar - p), p);
    snprintf(b, CHAT_ID_MAX + 1, "%s", bar + 1);
    if (!chat_account_ok(a) || !chat_account_ok(b) || strcmp(a, b) >= 0)
        return false;
    char canon[CHAT_CHANNEL_MAX + 1];
    whisper_id(canon, a, b);
    return strcmp(canon, id) == 0;
}

/* Checks a channel id; false (and the call answered) when malformed. */
static bool channel_ok(op_t *op, const char *id)
{
    int kind = chat_channel_kind(id);
    if (kind < 0) {
        op_fail(op, WY_EINVAL,
                "channel_id is not a channel (world, system, zone:<instance>, "
                "party:<id>, guild:<id>, whisper:<a>|<b>)");
        return false;
    }
    op->kind = kind;
    snprintf(op->channel, sizeof op->channel, "%s", id);
    if (kind == CHAT_WHISPER) {
        char a[CHAT_ID_MAX + 1], b[CHAT_ID_MAX + 1];
        if (!whisper_parties(id, a, b)) {
            op_fail(op, WY_EINVAL, "malformed whisper channel id");
            return false;
        }
    }
    return true;
}

static bool member_required(int kind)
{
    return kind == CHAT_PARTY || kind == CHAT_GUILD;
}

/* ---- the event payload: ChatEvent without seq (PostgreSQL appends it) ---- */

static void message_fill(Wyvern__Chat__Message *m, const op_t *op, int type, uint64_t target_seq,
                         const char *subject, const char *text, int64_t ts_ms)
{
    wyvern__chat__message__init(m);
    m->type = (Wyvern__Chat__MessageType)type;
    m->sender_id = (char *)op->account;
    m->sender_name = (char *)op->name;
    m->text = (char *)(text ? text : "");
    m->ts_ms = ts_ms;
    m->target_seq = target_seq;
    m->subject_id = (char *)(subject ? subject : "");
    m->kind = (Wyvern__Chat__ChannelKind)(op->kind + 1);
}

static uint8_t *event_pack(const op_t *op, int type, uint64_t target_seq, const char *subject,
                           const char *text, int64_t ts_ms, size_t *len)
{
    Wyvern__Chat__Message m;
    message_fill(&m, op, type, target_seq, subject, text, ts_ms);
    Wyvern__Chat__ChatEvent ev = WYVERN__CHAT__CHAT_EVENT__INIT;
    ev.channel_id = (char *)op->channel;
    ev.message = &m;
    ev.recipients = op->recips;
    ev.n_recipients = op->nrecips;
    *len = wyvern__chat__chat_event__get_packed_size(&ev);
    uint8_t *buf = wy_malloc(*len ? *len : 1);
    wyvern__chat__chat_event__pack(&ev, buf);
    return buf;
}

/* A text message as ChatEvent field 3 (tag 0x1a, varint length, the Message): one piece of a
 * batch event (sql_send rewrites the tag to field 5 for all but the first). */
static uint8_t *message_field_pack(const op_t *op, int64_t ts_ms, size_t *len)
{
    Wyvern__Chat__Message m;
    message_fill(&m, op, MSG_TEXT, 0, NULL, op->text, ts_ms);
    size_t body = wyvern__chat__message__get_packed_size(&m);
    uint8_t *buf = wy_malloc(body + 11);
    size_t n = 0;
    buf[n++] = 0x1a;
    for (uint64_t v = body;; v >>= 7) {
        buf[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        if (v <= 0x7f)
            break;
    }
    wyvern__chat__message__pack(&m, buf + n);
    *len = n + body;
    return buf;
}

/* ---- Send: one statement per channel at a time, carrying every message queued meanwhile ----
 *
 * The channel row lock orders the writers of a channel, so its messages are stored one commit
 * after another; batching what arrived during a commit into the next statement (group commit,
 * up to SEND_BATCH_MAX) keeps the order and multiplies what one channel stores per second. */

#define SEND_BATCH_MAX 64
#define SEND_QUEUE_MAX 4096 /* messages waiting for one channel; more answer UNAVAILABLE */
/* Payload bytes (hex) of one batch: with the recipients (5,000 x 38 bytes at most) the batch
 * event stays far below WY_KAFKA_MAX_ENVELOPE; a single message always fits. */
#define SEND_BATCH_HEX (512 * 1024)

typedef struct {
    char channel[CHAT_CHANNEL_MAX + 1];
    wy_list_t wait; /* op_t.node */
    size_t nwait;
    bool busy;
} chanq_t;

typedef struct {
    chat_svc_t *svc;
    chanq_t *q;
    op_t *ops[SEND_BATCH_MAX];
    size_t n;
} batch_t;

/* $1 channel, $2 kind, $3 now, $4 member required, $5 recipients from members, then arrays
 * (one element per message, in queue order): $6 senders, $7 names, $8 texts, $9 offline
 * recipients ('' = none), $10 event ids, $11 payloads; $12 topic, $13 event type, $14 one event
 * for the batch, $15 the batch event's recipients when not the members (whisper: the two). One
 * row per message: its ordinal i, unmuted, member and its seq (NULL when refused).
 *
 * One event per batch ($14, every kind but zone): ONE outbox row carries the accepted messages
 * in order, the first as ChatEvent.message (its payload is the Message as field 3) with the
 * batch's first seq, the others as ChatEvent.more (field 5: the same bytes, tag byte rewritten
 * from 0x1a to 0x2a), then the recipients once: a guild's member list is written, relayed and
 * decoded once per batch instead of once per message. Zone ($14 false): one event per message,
 * payload = ChatEvent without seq (each has the recipients its sender's locator gave). */
static const wy_pg_stmt_t sql_send = {
    "chat_send_batch",
    /* input and rc are read before c locks the channel row: the checks and the members (the
     * recipients of party and guild messages) are done outside the lock, which then covers only
     * the upsert, the inserts and the commit. */
    "WITH input AS MATERIALIZED (SELECT t.i, t.sender, t.name, t.body, t.off, t.ev, t.payload, "
    "  NOT EXISTS (SELECT 1 FROM chat.mutes mu WHERE mu.account_id = t.sender AND "
    "  mu.channel_id IN ('', $1) AND mu.until_ms > $3::bigint) AS unmuted, "
    "  (NOT $4::boolean OR EXISTS (SELECT 1 FROM chat.members mb WHERE mb.channel_id = $1 "
    "  AND mb.account_id = t.sender)) AS member "
    "  FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[]) "
    "  WITH ORDINALITY AS t(sender, name, body, off, ev, payload, i)), "
    "acc AS MATERIALIZED (SELECT input.*, row_number() OVER (ORDER BY i) AS k, "
    "  count(*) OVER () AS n FROM input WHERE unmuted AND member), "
    "rc AS MATERIALIZED (SELECT CASE WHEN $5::boolean THEN coalesce((SELECT "
    "  string_agg(pb, '\\x'::bytea) FROM chat.members "
    "  WHERE channel_id = $1), '\\x'::bytea) ELSE coalesce((SELECT "
    "string_agg(chat.pb_recipient(a), "
    "  '\\x'::bytea) FROM unnest($15::text[]) a), '\\x'::bytea) END AS recips), "
    "c AS (INSERT INTO chat.channels AS ch (id, kind, last_seq, created_ms) "
    "  SELECT $1, $2, a.n, $3::bigint FROM (SELECT max(n) AS n FROM acc) a, rc WHERE a.n > 0 "
    "  ON CONFLICT (id) DO UPDATE SET last_seq = ch.last_seq + EXCLUDED.last_seq "
    "  RETURNING ch.last_seq AS last), "
    "m AS (INSERT INTO chat.messages (channel_id, seq, type, sender_id, sender_name, body, ts_ms) "
    "  SELECT $1, c.last - acc.n + acc.k, 0, acc.sender, acc.name, acc.body, $3::bigint "
    "  FROM acc, c), "
    "off AS (INSERT INTO chat.offline_whispers (account_id, channel_id, seq) "
    "  SELECT acc.off, $1, c.last - acc.n + acc.k FROM acc, c WHERE acc.off <> '' "
    "  ORDER BY acc.k), "
    "o AS (INSERT INTO chat.wy_outbox (event_id, topic, key, type, payload, ts_ms) "
    "  SELECT acc.ev, $12, $1, $13, acc.payload || chat.pb_uint64(2, c.last - acc.n + acc.k) "
    "  || rc.recips, $3::bigint FROM acc, c, rc WHERE NOT $14::boolean ORDER BY acc.k), "
    "ob AS (INSERT INTO chat.wy_outbox (event_id, topic, key, type, payload, ts_ms) "
    "  SELECT f.ev, $12, $1, $13, chat.pb_string(1, $1) || f.payload "
    "  || chat.pb_uint64(2, c.last - f.n + 1) || coalesce((SELECT string_agg(set_byte(r.payload, "
    "  0, 42), '\\x'::bytea ORDER BY r.k) FROM acc r WHERE r.k > 1), '\\x'::bytea) || rc.recips, "
    "  $3::bigint FROM acc f, c, rc WHERE $14::boolean AND f.k = 1) "
    "SELECT input.i AS i, input.unmuted AS unmuted, input.member AS member, "
    "  CASE WHEN acc.k IS NULL THEN NULL ELSE (SELECT last FROM c) - acc.n + acc.k END AS seq "
    "FROM input LEFT JOIN acc ON acc.i = input.i ORDER BY input.i",
    15};

/* Appends s as one element of a PostgreSQL array literal (quoted, \ and " escaped). */
static void arr_add(wy_buf_t *b, const char *s)
{
    wy_buf_puts(b, b->len > 1 ? ",\"" : "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '\\' || *p == '"')
            wy_buf_append(b, "\\", 1);
        wy_buf_append(b, p, 1);
    }
    wy_buf_append(b, "\"", 1);
}

static void send_reply(op_t *op, int status, const PGresult *res, int row)
{
    chat_svc_t *svc = op->svc;
    if (status != WY_OK) {
        op_fail(op, WY_EUNAVAIL, "chat store unavailable; retry");
        return;
    }
    if (!wy_pg_bool(res, row, "unmuted")) {
        wy_metric_inc(svc->m_refused_mute);
        op_fail(op, WY_EPERM, "you are muted in this channel");
        return;
    }
    if (!wy_pg_bool(res, row, "member")) {
        op_fail(op, WY_EPERM, "not a member of this channel");
        return;
    }
    if (wy_pg_isnull(res, row, "seq")) {
        op_fail(op, WY_EINTERNAL, "message not stored");
        return;
    }
    wy_metric_inc(svc->m_sent);
    wy_metric_observe(svc->m_store, (double)(wy_now_ns() - op->accepted_ns) / 1e9);
    if (op->masked)
        wy_metric_inc(svc->m_masked);
    if (op->offline)
        wy_metric_inc(svc->m_offline);
    Wyvern__Chat__SendResponse r = WYVERN__CHAT__SEND_RESPONSE__INIT;
    r.channel_id = op->channel;
    r.seq = (uint64_t)wy_pg_int64(res, row, "seq");
    r.text = op->text;
    r.masked = op->masked;
    r.offline = op->offline;
    wy_grpc_reply(op->call, &r.base);
    op_free(op);
}

static void flush(chat_svc_t *svc, chanq_t *q);

static void on_batch_done(int status, const PGresult *res, const char *err, void *ud)
{
    batch_t *b = ud;
    chat_svc_t *svc = b->svc;
    chanq_t *q = b->q;
    if (status != WY_OK)
        wy_log_warn("send failed", "channel", q->channel, "error", err ? err : wy_strerror(status),
                    NULL);
    int rows = status == WY_OK ? PQntuples(res) : 0;
    if (status == WY_OK && (size_t)rows != b->n)
        status = WY_EINTERNAL;
    else if (status == WY_OK) {
        wy_outbox_t *ob = wy_daemon_outbox(svc->d);
        if (ob)
            wy_outbox_wake(ob);
    }
    for (size_t i = 0; i < b->n; i++)
        send_reply(b->ops[i], status, res, (int)i);
    q->busy = false;
    if (q->nwait && !svc->stopping) {
        flush(svc, q);
    } else {
        /* Nothing waits (or the stop refused it): the queue goes; ops still waiting fail. */
        while (q->nwait) {
            op_t *op = wy_list_entry(wy_list_pop_front(&q->wait), op_t, node);
            q->nwait--;
            op_fail(op, WY_EUNAVAIL, "wy-chat is stopping");
        }
        wy_map_del_str(svc->sendq, q->channel, NULL);
        wy_free(q);
    }
    wy_free(b);
    chat_svc_unref(svc);
}

static void flush(chat_svc_t *svc, chanq_t *q)
{
    batch_t *b = wy_calloc(1, sizeof *b);
    b->svc = svc;
    b->q = q;
    wy_buf_t senders, names, texts, offs, evs, payloads;
    wy_buf_t *bufs[] = {&senders, &names, &texts, &offs, &evs, &payloads};
    for (size_t i = 0; i < WY_ARRAY_LEN(bufs); i++) {
        memset(bufs[i], 0, sizeof *bufs[i]);
        wy_buf_putc(bufs[i], '{');
    }
    size_t hex = 0;
    while (q->nwait && b->n < SEND_BATCH_MAX) {
        op_t *op = wy_list_entry(wy_list_first(&q->wait), op_t, node);
        size_t len = strlen(op->row.payload_hex);
        if (b->n && hex + len > SEND_BATCH_HEX)
            break;
        hex += len;
        wy_list_pop_front(&q->wait);
        q->nwait--;
        b->ops[b->n++] = op;
        arr_add(&senders, op->account);
        arr_add(&names, op->name);
        arr_add(&texts, op->text);
        arr_add(&offs, op->offline ? op->subject : "");
        arr_add(&evs, op->row.event_id);
        arr_add(&payloads, op->row.payload_hex);
    }
    for (size_t i = 0; i < WY_ARRAY_LEN(bufs); i++)
        wy_buf_putc(bufs[i], '}');
    op_t *first = b->ops[0];
    /* Zone messages keep one event each (each carries the seats its sender's locator gave);
     * the others share one event per batch (sql_send). */
    bool one_event = first->kind != CHAT_ZONE;
    wy_buf_t recips = WY_BUF_INIT;
    wy_buf_putc(&recips, '{');
    for (size_t i = 0; one_event && !member_required(first->kind) && i < first->nrecips; i++)
        arr_add(&recips, first->recips[i]);
    wy_buf_putc(&recips, '}');
    char nowb[24];
    snprintf(nowb, sizeof nowb, "%" PRIu64, wy_wall_ms());
    const char *params[15] = {q->channel,
                              chat_kind_names[first->kind],
                              nowb,
                              member_required(first->kind) ? "t" : "f",
                              member_required(first->kind) ? "t" : "f",
                              senders.data,
                              names.data,
                              texts.data,
                              offs.data,
                              evs.data,
                              payloads.data,
                              TOPIC,
                              EV_TYPE,
                              one_event ? "t" : "f",
                              recips.data};
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    q->busy = true;
    chat_svc_ref(svc);
    int rc = pg ? wy_pg_exec(pg, &sql_send, params, on_batch_done, b) : WY_EUNAVAIL;
    for (size_t i = 0; i < WY_ARRAY_LEN(bufs); i++)
        wy_buf_free(bufs[i]);
    wy_buf_free(&recips);
    if (rc != WY_OK)
        on_batch_done(rc, NULL, "chat store busy", b);
}

static void send_exec(op_t *op)
{
    chat_svc_t *svc = op->svc;
    int64_t now = (int64_t)wy_wall_ms();
    op->accepted_ns = wy_now_ns();
    size_t len = 0;
    uint8_t *payload = op->kind == CHAT_ZONE
                           ? event_pack(op, MSG_TEXT, 0, NULL, op->text, now, &len)
                           : message_field_pack(op, now, &len);
    int rc = wy_outbox_row_init(&op->row, TOPIC, op->channel, EV_TYPE, payload, len);
    wy_free(payload);
    if (rc != WY_OK) {
        op_fail(op, rc, "message too big to publish");
        return;
    }
    op->has_row = true;
    if (svc->stopping) {
        op_fail(op, WY_EUNAVAIL, "wy-chat is stopping");
        return;
    }
    chanq_t *q = wy_map_get_str(svc->sendq, op->channel);
    if (!q) {
        q = wy_calloc(1, sizeof *q);
        snprintf(q->channel, sizeof q->channel, "%s", op->channel);
        wy_list_init(&q->wait);
        (void)wy_map_put_str(svc->sendq, q->channel, q); /* unbounded map: cannot fail */
    }
    if (q->nwait >= SEND_QUEUE_MAX) {
        op_fail(op, WY_EBUSY, "channel busy; retry");
        return;
    }
    wy_list_push_back(&q->wait, &op->node);
    q->nwait++;
    if (!q->busy)
        flush(svc, q);
}

static void on_zone_members(int status, const char *inst, char *const *accounts, size_t n, void *ud)
{
    op_t *op = ud;
    if (status == WY_ENOTFOUND) {
        op_fail(op, WY_EPERM, "you are not in a zone");
        return;
    }
    if (status != WY_OK) {
        op_fail(op, WY_EUNAVAIL, "zone locator unavailable; retry");
        return;
    }
    snprintf(op->channel, sizeof op->channel, "zone:%s", inst);
    bool self = false;
    for (size_t i = 0; i < n; i++) {
        op_recips_add(op, accounts[i]);
        self = self || strcmp(accounts[i], op->account) == 0;
    }
    if (!self)
        op_recips_add(op, op->account);
    send_exec(op);
}

static void on_recipient_presence(int status, bool online, void *ud)
{
    op_t *op = ud;
    /* Unknown (Redis trouble) counts as offline: the whisper is also kept for the next login,
     * where a client that already has it drops it by its seq. */
    op->offline = status != WY_OK || !online;
    send_exec(op);
}

static void on_rate(int err, bool allowed, uint32_t retry_after_ms, void *ud)
{
    op_t *op = ud;
    (void)err; /* fails open: Redis trouble must not silence chat */
    if (!allowed) {
        wy_metric_inc(op->svc->m_refused_rate);
        char m[96];
        snprintf(m, sizeof m, "sending too fast; retry in %u ms", retry_after_ms);
        op_fail(op, WY_ELIMIT, m);
        return;
    }
    int rc = WY_OK;
    if (op->kind == CHAT_ZONE)
        rc = chat_zone_locate(op->svc, op->account, true, on_zone_members, op);
    else if (op->kind == CHAT_WHISPER)
        rc = chat_presence(op->svc, op->subject, on_recipient_presence, op);
    else
        send_exec(op);
    if (rc == WY_OK)
        return;
    if (op->kind == CHAT_WHISPER)
        on_recipient_presence(rc, false, op);
    else
        op_fail(op, WY_EUNAVAIL, "zone locator unavailable; retry");
}

static void rpc_send(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__SendRequest *in = (const Wyvern__Chat__SendRequest *)req;
    chat_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    op_t *op = op_new(svc, call, OP_SEND);
    if (!caller_ok(op, in->caller))
        return;
    const char *to = in->to_account_id ? in->to_account_id : "";
    const char *ch = in->channel_id ? in->channel_id : "";
    if (*to) {
        if (*ch) {
            op_fail(op, WY_EINVAL, "give channel_id or to_account_id, not both");
            return;
        }
        if (!chat_account_ok(to) || strcmp(to, op->account) == 0) {
            op_fail(op, WY_EINVAL, "to_account_id must be another account's id");
            return;
        }
        op->kind = CHAT_WHISPER;
        snprintf(op->subject, sizeof op->subject, "%s", to);
        whisper_id(op->channel, op->account, to);
    } else if (strcmp(ch, "zone") == 0) {
        op->kind = CHAT_ZONE;
    } else {
        if (!channel_ok(op, ch))
            return;
        if (op->kind == CHAT_ZONE) {
            op_fail(op, WY_EINVAL, "send to \"zone\": your current zone instance");
            return;
        }
        if (op->kind == CHAT_WHISPER) {
            char a[CHAT_ID_MAX + 1], b[CHAT_ID_MAX + 1];
            whisper_parties(op->channel, a, b);
            bool is_a = strcmp(a, op->account) == 0;
            if (!is_a && strcmp(b, op->account) != 0) {
                op_fail(op, WY_EPERM, "not a member of this channel");
                return;
            }
            snprintf(op->subject, sizeof op->subject, "%s", is_a ? b : a);
        }
        if (op->kind == CHAT_SYSTEM && !op->moderator) {
            op_fail(op, WY_EPERM, "only moderators send to the system channel");
            return;
        }
    }
    if (op->kind == CHAT_WHISPER) {
        op_recips_add(op, op->account);
        op_recips_add(op, op->subject);
    }
    const char *text = in->text ? in->text : "";
    size_t len = strlen(text);
    if (len == 0 || (int64_t)len > svc->cfg->max_bytes || !wy_text_valid_utf8(text, len) ||
        (int64_t)wy_text_length(text) > svc->cfg->max_chars) {
        char m[96];
        snprintf(m, sizeof m, "text must be 1..%lld characters (at most %lld bytes of UTF-8)",
                 (long long)svc->cfg->max_chars, (long long)svc->cfg->max_bytes);
        op_fail(op, WY_EINVAL, m);
        return;
    }
    /* Control characters other than new lines would let a message fake a layout. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f) {
            op_fail(op, WY_EINVAL, "text holds a control character");
            return;
        }
    }
    char *masked = NULL;
    size_t hits = chat_filter_apply(svc->filter, text, svc->filter_refuse ? NULL : &masked);
    if (hits && svc->filter_refuse) {
        wy_metric_inc(svc->m_refused_filter);
        op_fail(op, WY_EPERM, "the message holds a filtered word");
        return;
    }
    op->masked = masked != NULL;
    op->text = masked ? masked : wy_strdup(text);
    /* The limiter key chat:rl:{<account>}: hash-tagged by the account (Redis Cluster,
     * docs/keys.md). */
    char rlkey[CHAT_ID_MAX + 3];
    snprintf(rlkey, sizeof rlkey, "{%s}", op->account);
    int rc = svc->rl ? wy_ratelimit_hit(svc->rl, rlkey, on_rate, op) : WY_EUNAVAIL;
    if (rc != WY_OK)
        on_rate(rc, true, 0, op); /* fails open (wy_ratelimit.h) */
}

/* ---- membership changes and tombstones: one event each ---- */

/* The tail shared by the event statements: $1 channel, $2 type, $3 actor, $4 actor name,
 * $5 subject, $6 target seq, $7 now, $8..$13 outbox row, $14 moderation log action ('' =
 * none), $15 its detail, $16 recipients from members (and the subject), $17 moderator.
 * The statement's own `ok` CTE makes the change; the event follows only when it did. */
#define EV_TAIL                                                                                    \
    ", c AS (UPDATE chat.channels ch SET last_seq = ch.last_seq + 1 "                              \
    "  FROM (SELECT 1 FROM ok LIMIT 1) k WHERE ch.id = $1 RETURNING ch.last_seq AS seq), "         \
    "m AS (INSERT INTO chat.messages (channel_id, seq, type, sender_id, sender_name, subject_id, " \
    "  target_seq, ts_ms) SELECT $1, c.seq, $2::smallint, $3, $4, $5, $6::bigint, $7::bigint "     \
    "  FROM c RETURNING seq), "                                                                    \
    "lg AS (INSERT INTO chat.moderation_log (actor_id, action, account_id, channel_id, seq, "      \
    "  detail, at_ms) SELECT $3, $14, $5, $1, $6::bigint, $15, $7::bigint FROM m WHERE $14 <> "    \
    "''), "                                                                                        \
    "o AS (INSERT INTO chat.wy_outbox (event_id, topic, key, type, payload, ts_ms) "               \
    "  SELECT $8, $9, $10, $11, $12::bytea || chat.pb_uint64(2, m.seq) || CASE WHEN $16::boolean " \
    "  THEN coalesce((SELECT string_agg(chat.pb_recipient(a), '\\x'::bytea) FROM "                 \
    "  (SELECT account_id AS a FROM chat.members WHERE channel_id = $1 UNION "                     \
    "  SELECT $5 WHERE $5 <> '') r), '\\x'::bytea) ELSE '\\x'::bytea END, $13::bigint FROM m) "    \
    "SELECT (SELECT seq FROM m) AS seq, EXISTS (SELECT 1 FROM chat.channels WHERE id = $1) "       \
    "  AS known, $17::boolean AS moderator"

/* A channel's members are its events' recipients: CHAT_MEMBERS_MAX bounds an event's size
 * (5,000 ids of <= 56 bytes stay far under Kafka's envelope limit). */
#define CHAT_MEMBERS_MAX "5000"

static const wy_pg_stmt_t sql_join = {
    "chat_join",
    "WITH ok AS (DELETE FROM chat.invites WHERE channel_id = $1 AND account_id = $3 AND NOT "
    "  EXISTS (SELECT 1 FROM chat.members WHERE channel_id = $1 AND account_id = $3) AND "
    "  (SELECT count(*) FROM chat.members WHERE channel_id = $1) < " CHAT_MEMBERS_MAX
    "  RETURNING 1), "
    "mem AS (INSERT INTO chat.members (channel_id, account_id, role, joined_ms) "
    "  SELECT $1, $3, 1, $7::bigint FROM ok)" EV_TAIL,
    17};

static const wy_pg_stmt_t sql_leave = {"chat_leave",
                                       "WITH ok AS (DELETE FROM chat.members WHERE channel_id = $1 "
                                       "AND account_id = $3 RETURNING 1)" EV_TAIL,
                                       17};

static const wy_pg_stmt_t sql_invite = {
    "chat_invite",
    "WITH ok AS (INSERT INTO chat.invites (channel_id, account_id, by_id, at_ms) "
    "  SELECT $1, $5, $3, $7::bigint WHERE EXISTS (SELECT 1 FROM chat.members WHERE "
    "  channel_id = $1 AND account_id = $3 AND role >= 2) AND NOT EXISTS (SELECT 1 FROM "
    "  chat.members WHERE channel_id = $1 AND account_id = $5) "
    "  ON CONFLICT (channel_id, account_id) DO UPDATE SET by_id = EXCLUDED.by_id, "
    "  at_ms = EXCLUDED.at_ms RETURNING 1)" EV_TAIL,
    17};

static const wy_pg_stmt_t sql_kick = {
    "chat_kick",
    "WITH me AS (SELECT coalesce((SELECT role FROM chat.members WHERE channel_id = $1 AND "
    "  account_id = $3), 0) AS role), "
    "ok AS (DELETE FROM chat.members t USING me WHERE t.channel_id = $1 AND t.account_id = $5 "
    "  AND $5 <> $3 AND me.role >= 2 AND t.role < me.role RETURNING 1)" EV_TAIL,
    17};

static const wy_pg_stmt_t sql_delete = {
    "chat_delete",
    "WITH ok AS (UPDATE chat.messages SET deleted = true, body = '' WHERE channel_id = $1 AND "
    "  seq = $6::bigint AND type = 0 AND NOT deleted AND ($17::boolean OR sender_id = $3) "
    "  RETURNING 1)" EV_TAIL,
    17};

static void on_event_done(int status, const PGresult *res, const char *err, void *ud)
{
    op_t *op = ud;
    if (status != WY_OK) {
        wy_log_warn("channel change failed", "account", op->account, "channel", op->channel,
                    "error", err ? err : wy_strerror(status), NULL);
        op_fail(op, WY_EUNAVAIL, "chat store unavailable; retry");
        return;
    }
    if (!wy_pg_bool(res, 0, "known")) {
        op_fail(op, WY_ENOTFOUND, "no such channel");
        return;
    }
    if (wy_pg_isnull(res, 0, "seq")) {
        static const char *const why[] = {
            [OP_JOIN] = "no pending invite to this channel (or already a member, or the channel "
                        "has 5000 members)",
            [OP_LEAVE] = "not a member of this channel",
            [OP_INVITE] = "only an owner or officer invites, and not a member",
            [OP_KICK] = "only an owner or officer removes a member of a lower role",
            [OP_DELETE] = "no such message, already deleted, or not yours to delete",
        };
        int err_code = op->what == OP_JOIN || op->what == OP_LEAVE ? WY_ESTATE : WY_EPERM;
        if (op->what == OP_DELETE)
            err_code = op->moderator ? WY_ENOTFOUND : WY_EPERM;
        op_fail(op, err_code, why[op->what]);
        return;
    }
    wy_outbox_t *ob = wy_daemon_outbox(op->svc->d);
    if (ob)
        wy_outbox_wake(ob);
    if (op->what == OP_DELETE) {
        wy_metric_inc(op->svc->m_moderation);
        char seqb[24];
        snprintf(seqb, sizeof seqb, "%" PRIu64, op->seq);
        wy_log_info("moderation", "action", "delete", "by", op->account, "channel", op->channel,
                    "seq", seqb, NULL);
    }
    Wyvern__Chat__MemberResponse r = WYVERN__CHAT__MEMBER_RESPONSE__INIT;
    r.channel_id = op->channel;
    r.seq = (uint64_t)wy_pg_int64(res, 0, "seq");
    wy_grpc_reply(op->call, &r.base);
    op_free(op);
}

static void event_exec(op_t *op)
{
    static const wy_pg_stmt_t *const stmts[] = {
        [OP_JOIN] = &sql_join, [OP_LEAVE] = &sql_leave,   [OP_INVITE] = &sql_invite,
        [OP_KICK] = &sql_kick, [OP_DELETE] = &sql_delete,
    };
    static const int types[] = {[OP_JOIN] = MSG_JOIN,
                                [OP_LEAVE] = MSG_LEAVE,
                                [OP_INVITE] = MSG_INVITE,
                                [OP_KICK] = MSG_KICK,
                                [OP_DELETE] = MSG_TOMBSTONE};
    wy_pg_t *pg = wy_daemon_pg(op->svc->d);
    if (!pg) {
        op_fail(op, WY_EUNAVAIL, "wy-chat is stopping");
        return;
    }
    const char *subject = op->what == OP_JOIN || op->what == OP_LEAVE ? op->account : op->subject;
    if (op->what == OP_DELETE)
        subject = "";
    int64_t now = (int64_t)wy_wall_ms();
    size_t len = 0;
    uint64_t target = op->what == OP_DELETE ? op->seq : 0;
    uint8_t *payload = event_pack(op, types[op->what], target, subject, "", now, &len);
    wy_outbox_row_t row;
    int rc = wy_outbox_row_init(&row, TOPIC, op->channel, EV_TYPE, payload, len);
    wy_free(payload);
    if (rc != WY_OK) {
        op_fail(op, rc, "event too big to publish");
        return;
    }
    char nowb[24], typeb[8], seqb[24];
    snprintf(nowb, sizeof nowb, "%" PRId64, now);
    snprintf(typeb, sizeof typeb, "%d", types[op->what]);
    snprintf(seqb, sizeof seqb, "%" PRIu64, target);
    const char *params[17] = {op->channel, typeb, op->account, op->name, subject, seqb, nowb};
    memcpy(&params[7], row.params, sizeof row.params);
    params[13] = op->what == OP_DELETE ? "delete" : "";
    params[14] = op->text ? op->text : "";
    params[15] = member_required(op->kind) ? "t" : "f";
    params[16] = op->moderator ? "t" : "f";
    rc = wy_pg_exec(pg, stmts[op->what], params, on_event_done, op);
    wy_outbox_row_free(&row);
    if (rc != WY_OK)
        op_fail(op, WY_EUNAVAIL, "chat store busy; retry");
}

static void rpc_member(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg,
                       op_kind_t what)
{
    const Wyvern__Chat__MemberRequest *in = (const Wyvern__Chat__MemberRequest *)req;
    chat_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    op_t *op = op_new(svc, call, what);
    if (!caller_ok(op, in->caller) || !channel_ok(op, in->channel_id ? in->channel_id : ""))
        return;
    if (!member_required(op->kind)) {
        op_fail(op, WY_EINVAL,
                "only party and guild channels have members to join, leave, invite or kick "
                "(world, zone, whisper and system need none)");
        return;
    }
    if (what == OP_INVITE || what == OP_KICK) {
        if (!chat_account_ok(in->account_id)) {
            op_fail(op, WY_EINVAL, "account_id must be 1..56 bytes of [A-Za-z0-9_.:-]");
            return;
        }
        snprintf(op->subject, sizeof op->subject, "%s", in->account_id);
    }
    event_exec(op);
}

static void rpc_join(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    rpc_member(call, req, arg, OP_JOIN);
}

static void rpc_leave(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    rpc_member(call, req, arg, OP_LEAVE);
}

static void rpc_invite(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    rpc_member(call, req, arg, OP_INVITE);
}

static void rpc_kick(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    rpc_member(call, req, arg, OP_KICK);
}

static bool reason_ok(op_t *op, const char *reason)
{
    const char *r = reason ? reason : "";
    if (strlen(r) > REASON_MAX || !wy_text_valid_utf8(r, strlen(r))) {
        op_fail(op, WY_EINVAL, "reason must be 0..500 bytes of UTF-8");
        return false;
    }
    op->text = wy_strdup(r);
    return true;
}

static void rpc_delete(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__DeleteRequest *in = (const Wyvern__Chat__DeleteRequest *)req;
    chat_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    op_t *op = op_new(svc, call, OP_DELETE);
    if (!caller_ok(op, in->caller) || !channel_ok(op, in->channel_id ? in->channel_id : "") ||
        !reason_ok(op, in->reason))
        return;
    if (in->seq == 0 || in->seq > INT64_MAX) {
        op_fail(op, WY_EINVAL, "seq must be a message's sequence number");
        return;
    }
    op->seq = in->seq;
    if (op->kind == CHAT_WHISPER) {
        char a[CHAT_ID_MAX + 1], b[CHAT_ID_MAX + 1];
        whisper_parties(op->channel, a, b);
        op_recips_add(op, a);
        op_recips_add(op, b);
    }
    event_exec(op);
}

/* ---- Create ---- */

/* $1 id, $2 kind, $3 owner, $4 owner name, $5 channel name, $6 now, $7..$12 outbox row. */
static const wy_pg_stmt_t sql_create = {
    "chat_create",
    "WITH ch AS (INSERT INTO chat.channels (id, kind, name, owner_id, last_seq, created_ms) "
    "  VALUES ($1, $2, $5, $3, 1, $6::bigint) RETURNING id), "
    "mem AS (INSERT INTO chat.members (channel_id, account_id, role, joined_ms) "
    "  SELECT id, $3, 3, $6::bigint FROM ch), "
    "m AS (INSERT INTO chat.messages (channel_id, seq, type, sender_id, sender_name, subject_id, "
    "  ts_ms) SELECT id, 1, 2, $3, $4, $3, $6::bigint FROM ch), "
    "o AS (INSERT INTO chat.wy_outbox (event_id, topic, key, type, payload, ts_ms) "
    "  SELECT $7, $8, $9, $10, $11::bytea || chat.pb_uint64(2, 1) || chat.pb_recipient($3), "
    "  $12::bigint FROM ch) "
    "SELECT id FROM ch",
    12};

typedef struct {
    op_t *op;
    char chname[CHAT_NAME_MAX + 1];
} create_op_t;

static void on_create_done(int status, const PGresult *res, const char *err, void *ud)
{
    create_op_t *cr = ud;
    op_t *op = cr->op;
    (void)res;
    if (status != WY_OK) {
        wy_log_warn("create failed", "account", op->account, "error",
                    err ? err : wy_strerror(status), NULL);
        op_fail(op, WY_EUNAVAIL, "chat store unavailable; retry");
    } else {
        wy_outbox_t *ob = wy_daemon_outbox(op->svc->d);
        if (ob)
            wy_outbox_wake(ob);
        Wyvern__Chat__Channel r = WYVERN__CHAT__CHANNEL__INIT;
        r.channel_id = op->channel;
        r.kind = (Wyvern__Chat__ChannelKind)(op->kind + 1);
        r.name = cr->chname;
        r.last_seq = 1;
        r.role = WYVERN__CHAT__ROLE__ROLE_OWNER;
        wy_grpc_reply(op->call, &r.base);
        op_free(op);
    }
    wy_free(cr);
}

static void rpc_create(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__CreateRequest *in = (const Wyvern__Chat__CreateRequest *)req;
    chat_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    op_t *op = op_new(svc, call, OP_JOIN);
    if (!caller_ok(op, in->caller))
        return;
    if (in->kind != WYVERN__CHAT__CHANNEL_KIND__KIND_PARTY &&
        in->kind != WYVERN__CHAT__CHANNEL_KIND__KIND_GUILD) {
        op_fail(op, WY_EINVAL, "kind must be KIND_PARTY or KIND_GUILD");
        return;
    }
    const char *name = in->name ? in->name : "";
    if (strlen(name) > CHAT_NAME_MAX || !wy_text_valid_utf8(name, strlen(name))) {
        op_fail(op, WY_EINVAL, "name must be 0..64 bytes of UTF-8");
        return;
    }
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    op->kind = in->kind == WYVERN__CHAT__CHANNEL_KIND__KIND_PARTY ? CHAT_PARTY : CHAT_GUILD;
    char uuid[37];
    wy_uuid4(uuid);
    snprintf(op->channel, sizeof op->channel, "%s:%s", chat_kind_names[op->kind], uuid);
    int64_t now = (int64_t)wy_wall_ms();
    size_t len = 0; /* PostgreSQL appends the owner as the recipient */
    uint8_t *payload = event_pack(op, MSG_JOIN, 0, op->account, "", now, &len);
    wy_outbox_row_t row;
    int rc = wy_outbox_row_init(&row, TOPIC, op->channel, EV_TYPE, payload, len);
    wy_free(payload);
    if (rc != WY_OK) {
        op_fail(op, rc, "event too big to publish");
        return;
    }
    create_op_t *cr = wy_calloc(1, sizeof *cr);
    cr->op = op;
    snprintf(cr->chname, sizeof cr->chname, "%s", name);
    char nowb[24];
    snprintf(nowb, sizeof nowb, "%" PRId64, now);
    const char *params[12] = {op->channel, chat_kind_names[op->kind], op->account, op->name, name,
                              nowb};
    memcpy(&params[6], row.params, sizeof row.params);
    rc = wy_pg_exec(pg, &sql_create, params, on_create_done, cr);
    wy_outbox_row_free(&row);
    if (rc != WY_OK) {
        wy_free(cr);
        op_fail(op, WY_EUNAVAIL, "chat store busy; retry");
    }
}

/* ---- ListChannels ---- */

static const wy_pg_stmt_t sql_list = {
    "chat_list",
    "SELECT c.id AS id, c.kind AS kind, c.name AS name, c.last_seq AS last_seq, mb.role AS role "
    "FROM chat.members mb JOIN chat.channels c ON c.id = mb.channel_id WHERE mb.account_id = $1 "
    "ORDER BY c.id LIMIT 500",
    1};

static int kind_of_name(const char *k)
{
    for (int i = 0; i < CHAT_NKINDS; i++)
        if (strcmp(chat_kind_names[i], k) == 0)
            return i;
    return 0;
}

static void on_list_done(int status, const PGresult *res, const char *err, void *ud)
{
    op_t *op = ud;
    if (status != WY_OK) {
        wy_log_warn("list failed", "account", op->account, "error", err ? err : wy_strerror(status),
                    NULL);
        op_fail(op, WY_EUNAVAIL, "chat store unavailable; retry");
        return;
    }
    int n = PQntuples(res);
    Wyvern__Chat__Channel *chs = wy_calloc(n ? (size_t)n : 1, sizeof *chs);
    Wyvern__Chat__Channel **ptrs = wy_calloc(n ? (size_t)n : 1, sizeof *ptrs);
    for (int i = 0; i < n; i++) {
        wyvern__chat__channel__init(&chs[i]);
        chs[i].channel_id = (char *)wy_pg_text(res, i, "id");
        chs[i].kind = (Wyvern__Chat__ChannelKind)(kind_of_name(wy_pg_text(res, i, "kind")) + 1);
        chs[i].name = (char *)wy_pg_text(res, i, "name");
        chs[i].last_seq = (uint64_t)wy_pg_int64(res, i, "last_seq");
        chs[i].role = (Wyvern__Chat__Role)wy_pg_int64(res, i, "role");
        ptrs[i] = &chs[i];
    }
    Wyvern__Chat__ListChannelsResponse r = WYVERN__CHAT__LIST_CHANNELS_RESPONSE__INIT;
    r.channels = ptrs;
    r.n_channels = (size_t)n;
    wy_grpc_reply(op->call, &r.base);
    wy_free(chs);
    wy_free(ptrs);
    op_free(op);
}

static void rpc_list(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__ListChannelsRequest *in = (const Wyvern__Chat__ListChannelsRequest *)req;
    chat_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    op_t *op = op_new(svc, call, OP_HISTORY);
    if (!caller_ok(op, in->caller))
        return;
    const char *params[] = {op->account};
    if (wy_pg_exec(wy_daemon_pg(svc->d), &sql_list, params, on_list_done, op) != WY_OK)
        op_fail(op, WY_EUNAVAIL, "chat store busy; retry");
}

/* ---- History and Report: who may read a channel ---- */

/* $1 channel, $2 after, $3 before, $4 limit + 1, $5 member required, $6 caller, $7 cutoff,
 * $8 forward. One row at least (the access check and last_seq), NULL seq when no message. */
static const wy_pg_stmt_t sql_history = {
    "chat_history",
    "WITH acc AS (SELECT (NOT $5::boolean OR EXISTS (SELECT 1 FROM chat.members WHERE "
    "  channel_id = $1 AND account_id = $6)) AS ok, "
    "  (SELECT last_seq FROM chat.channels WHERE id = $1) AS last_seq) "
    "SELECT acc.ok AS ok, acc.last_seq AS last_seq, " CHAT_MSG_COLUMNS
    " FROM acc LEFT JOIN LATERAL ("
    "  (SELECT * FROM chat.messages WHERE acc.ok AND $8::boolean AND channel_id = $1 "
    "   AND seq > $2::bigint AND ts_ms >= $7::bigint ORDER BY seq LIMIT $4::int) UNION ALL "
    "  (SELECT * FROM chat.messages WHERE acc.ok AND NOT $8::boolean AND channel_id = $1 "
    "   AND seq < $3::bigint AND ts_ms >= $7::bigint ORDER BY seq DESC LIMIT $4::int)) m ON true "
    "ORDER BY m.seq",
    8};

void chat_message_from_row(Wyvern__Chat__Message *m, const PGresult *res, int i,
                           const char *channel, int kind)
{
    wyvern__chat__message__init(m);
    m->channel_id = (char *)channel;
    m->seq = (uint64_t)wy_pg_int64(res, i, "seq");
    m->type = (Wyvern__Chat__MessageType)wy_pg_int64(res, i, "type");
    m->sender_id = (char *)wy_pg_text(res, i, "sender_id");
    m->sender_name = (char *)wy_pg_text(res, i, "sender_name");
    m->text = (char *)wy_pg_text(res, i, "body");
    m->ts_ms = wy_pg_int64(res, i, "ts_ms");
    m->deleted = wy_pg_bool(res, i, "deleted");
    m->target_seq = (uint64_t)wy_pg_int64(res, i, "target_seq");
    m->subject_id = (char *)wy_pg_text(res, i, "subject_id");
    m->kind = (Wyvern__Chat__ChannelKind)(kind + 1);
}

static void on_history_done(int status, const PGresult *res, const char *err, void *ud)
{
    op_t *op = ud;
    if (status != WY_OK) {
        wy_log_warn("history failed", "channel", op->channel, "error",
                    err ? err : wy_strerror(status), NULL);
        op_fail(op, WY_EUNAVAIL, "chat store unavailable; retry");
        return;
    }
    if (!wy_pg_bool(res, 0, "ok")) {
        op_fail(op, WY_EPERM, "not a member of this channel");
        return;
    }
    int rows = PQntuples(res);
    int first = 0, n = 0; /* no message: one row with a NULL seq */
    for (int i = 0; i < rows; i++)
        if (!wy_pg_isnull(res, i, "seq"))
            n++;
    bool more = (uint32_t)n > op->limit;
    if (more) {
        n = (int)op->limit;
        if (!op->forward)
            first = 1; /* the oldest of limit + 1 only tells there is more */
    }
    Wyvern__Chat__Message *ms = wy_calloc(n ? (size_t)n : 1, sizeof *ms);
    Wyvern__Chat__Message **ptrs = wy_calloc(n ? (size_t)n : 1, sizeof *ptrs);
    for (int i = 0; i < n; i++) {
        chat_message_from_row(&ms[i], res, first + i, op->channel, op->kind);
        ptrs[i] = &ms[i];
    }
    Wyvern__Chat__HistoryResponse r = WYVERN__CHAT__HISTORY_RESPONSE__INIT;
    r.messages = ptrs;
    r.n_messages = (size_t)n;
    r.last_seq = (uint64_t)wy_pg_int64(res, 0, "last_seq");
    r.more = more;
    wy_grpc_reply(op->call, &r.base);
    wy_free(ms);
    wy_free(ptrs);
    op_free(op);
}

static void history_exec(op_t *op)
{
    char after[24], before[24], limit[16], cutoff[24];
    snprintf(after, sizeof after, "%" PRIu64, op->seq);
    snprintf(before, sizeof before, "%" PRIu64, op->before ? op->before : (uint64_t)INT64_MAX);
    snprintf(limit, sizeof limit, "%u", op->limit + 1);
    int64_t keep = op->svc->cfg->retention_ms[op->kind];
    snprintf(cutoff, sizeof cutoff, "%" PRId64, keep > 0 ? (int64_t)wy_wall_ms() - keep : 0);
    const char *params[] = {op->channel,
                            after,
                            before,
                            limit,
                            member_required(op->kind) ? "t" : "f",
                            op->account,
                            cutoff,
                            op->forward ? "t" : "f"};
    wy_pg_t *pg = wy_daemon_pg(op->svc->d);
    if (!pg || wy_pg_exec(pg, &sql_history, params, on_history_done, op) != WY_OK)
        op_fail(op, WY_EUNAVAIL, "chat store busy; retry");
}

/* $1 channel, $2 seq, $3 reporter, $4 reason, $5 now, $6 member required. */
static const wy_pg_stmt_t sql_report = {
    "chat_report",
    "WITH r AS (INSERT INTO chat.reports (channel_id, seq, reporter_id, reason, at_ms) "
    "  SELECT $1, $2::bigint, $3, $4, $5::bigint WHERE EXISTS (SELECT 1 FROM chat.messages "
    "  WHERE channel_id = $1 AND seq = $2::bigint) AND (NOT $6::boolean OR EXISTS (SELECT 1 "
    "  FROM chat.members WHERE channel_id = $1 AND account_id = $3)) "
    "  ON CONFLICT (channel_id, seq, reporter_id) DO UPDATE SET reason = EXCLUDED.reason "
    "  RETURNING id), "
    "lg AS (INSERT INTO chat.moderation_log (actor_id, action, channel_id, seq, detail, at_ms) "
    "  SELECT $3, 'report', $1, $2::bigint, $4, $5::bigint FROM r) "
    "SELECT (SELECT id FROM r) AS id",
    6};

static void on_report_done(int status, const PGresult *res, const char *err, void *ud)
{
    op_t *op = ud;
    if (status != WY_OK) {
        wy_log_warn("report failed", "channel", op->channel, "error",
                    err ? err : wy_strerror(status), NULL);
        op_fail(op, WY_EUNAVAIL, "chat store unavailable; retry");
        return;
    }
    if (wy_pg_isnull(res, 0, "id")) {
        op_fail(op, WY_ENOTFOUND, "no such message in a channel you can read");
        return;
    }
    wy_metric_inc(op->svc->m_moderation);
    char seqb[24];
    snprintf(seqb, sizeof seqb, "%" PRIu64, op->seq);
    wy_log_info("moderation", "action", "report", "by", op->account, "channel", op->channel, "seq",
                seqb, NULL);
    Wyvern__Chat__ReportResponse r = WYVERN__CHAT__REPORT_RESPONSE__INIT;
    r.report_id = wy_pg_int64(res, 0, "id");
    wy_grpc_reply(op->call, &r.base);
    op_free(op);
}

static void report_exec(op_t *op)
{
    char seqb[24], nowb[24];
    snprintf(seqb, sizeof seqb, "%" PRIu64, op->seq);
    snprintf(nowb, sizeof nowb, "%" PRIu64, wy_wall_ms());
    const char *params[] = {op->channel, seqb, op->account,
                            op->text,    nowb, member_required(op->kind) ? "t" : "f"};
    wy_pg_t *pg = wy_daemon_pg(op->svc->d);
    if (!pg || wy_pg_exec(pg, &sql_report, params, on_report_done, op) != WY_OK)
        op_fail(op, WY_EUNAVAIL, "chat store busy; retry");
}

static void read_exec(op_t *op)
{
    if (op->what == OP_HISTORY)
        history_exec(op);
    else
        report_exec(op);
}

static void on_reader_zone(int status, const char *inst, char *const *accounts, size_t n, void *ud)
{
    op_t *op = ud;
    (void)accounts;
    (void)n;
    if (status != WY_OK && status != WY_ENOTFOUND) {
        op_fail(op, WY_EUNAVAIL, "zone locator unavailable; retry");
        return;
    }
    if (status == WY_ENOTFOUND || strcmp(op->channel + strlen("zone:"), inst) != 0) {
        op_fail(op, WY_EPERM, "you are not in this zone instance");
        return;
    }
    read_exec(op);
}

/* Zone channels are read by the players the locator seats there, whispers by their two
 * accounts, party and guild channels by their members (checked in SQL). */
static void read_access(op_t *op)
{
    if (op->kind == CHAT_WHISPER) {
        char a[CHAT_ID_MAX + 1], b[CHAT_ID_MAX + 1];
        whisper_parties(op->channel, a, b);
        if (strcmp(a, op->account) != 0 && strcmp(b, op->account) != 0) {
            op_fail(op, WY_EPERM, "not a member of this channel");
            return;
        }
    } else if (op->kind == CHAT_ZONE && !op->moderator) {
        int rc = chat_zone_locate(op->svc, op->account, false, on_reader_zone, op);
        if (rc != WY_OK)
            op_fail(op, WY_EUNAVAIL, "zone locator unavailable; retry");
        return;
    }
    read_exec(op);
}

static void rpc_history(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__HistoryRequest *in = (const Wyvern__Chat__HistoryRequest *)req;
    chat_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    op_t *op = op_new(svc, call, OP_HISTORY);
    if (!caller_ok(op, in->caller) || !channel_ok(op, in->channel_id ? in->channel_id : ""))
        return;
    if (in->limit > HISTORY_MAX || in->after_seq > INT64_MAX || in->before_seq > INT64_MAX) {
        op_fail(op, WY_EINVAL, "limit must be 0..200 and sequence numbers below 2^63");
        return;
    }
    op->limit = in->limit ? in->limit : HISTORY_DEFAULT;
    op->seq = in->after_seq;
    op->before = in->before_seq;
    op->forward = in->forward;
    read_access(op);
}

static void rpc_report(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__ReportRequest *in = (const Wyvern__Chat__ReportRequest *)req;
    chat_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    op_t *op = op_new(svc, call, OP_REPORT);
    if (!caller_ok(op, in->caller) || !channel_ok(op, in->channel_id ? in->channel_id : "") ||
        !reason_ok(op, in->reason))
        return;
    if (in->seq == 0 || in->seq > INT64_MAX) {
        op_fail(op, WY_EINVAL, "seq must be a message's sequence number");
        return;
    }
    op->seq = in->seq;
    read_access(op);
}

/* ---- Mute ---- */

/* $1 account, $2 channel ('' = all), $3 until, $4 by, $5 reason, $6 action, $7 now. */
static const wy_pg_stmt_t sql_mute = {
    "chat_mute",
    "WITH up AS (INSERT INTO chat.mutes (account_id, channel_id, until_ms, by_id, reason) "
    "  VALUES ($1, $2, $3::bigint, $4, $5) ON CONFLICT (account_id, channel_id) DO UPDATE SET "
    "  until_ms = EXCLUDED.until_ms, by_id = EXCLUDED.by_id, reason = EXCLUDED.reason) "
    "INSERT INTO chat.moderation_log (actor_id, action, account_id, channel_id, detail, at_ms) "
    "  VALUES ($4, $6, $1, $2, $5 || ' until ' || $3, $7::bigint)",
    7};

typedef struct {
    op_t *op;
    int64_t until;
    char target[CHAT_ID_MAX + 1];
} mute_op_t;

static void on_mute_done(int status, const PGresult *res, const char *err, void *ud)
{
    mute_op_t *mu = ud;
    op_t *op = mu->op;
    (void)res;
    if (status != WY_OK) {
        wy_log_warn("mute failed", "account", mu->target, "error", err ? err : wy_strerror(status),
                    NULL);
        op_fail(op, WY_EUNAVAIL, "chat store unavailable; retry");
    } else {
        wy_metric_inc(op->svc->m_moderation);
        char until[24];
        snprintf(until, sizeof until, "%" PRId64, mu->until);
        wy_log_info("moderation", "action", mu->until ? "mute" : "unmute", "by", op->account,
                    "account", mu->target, "channel", op->channel, "until_ms", until, NULL);
        Wyvern__Chat__MuteResponse r = WYVERN__CHAT__MUTE_RESPONSE__INIT;
        r.until_ms = mu->until;
        wy_grpc_reply(op->call, &r.base);
        op_free(op);
    }
    wy_free(mu);
}

static void rpc_mute(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__MuteRequest *in = (const Wyvern__Chat__MuteRequest *)req;
    chat_svc_t *svc = svc_or_refuse(arg, call);
    if (!svc)
        return;
    op_t *op = op_new(svc, call, OP_REPORT);
    if (!caller_ok(op, in->caller) || !reason_ok(op, in->reason))
        return;
    if (!op->moderator) {
        op_fail(op, WY_EPERM, "only moderators mute");
        return;
    }
    if (!chat_account_ok(in->account_id)) {
        op_fail(op, WY_EINVAL, "account_id must be 1..56 bytes of [A-Za-z0-9_.:-]");
        return;
    }
    const char *ch = in->channel_id ? in->channel_id : "";
    if (*ch && !channel_ok(op, ch))
        return;
    if (in->duration_ms < 0 || in->duration_ms > 10LL * 365 * 86400 * 1000) {
        op_fail(op, WY_EINVAL, "duration_ms must be 0 (lift) .. 10 years");
        return;
    }
    mute_op_t *mu = wy_calloc(1, sizeof *mu);
    mu->op = op;
    int64_t now = (int64_t)wy_wall_ms();
    mu->until = in->duration_ms ? now + in->duration_ms : 0;
    snprintf(mu->target, sizeof mu->target, "%s", in->account_id);
    char until[24], nowb[24];
    snprintf(until, sizeof until, "%" PRId64, mu->until);
    snprintf(nowb, sizeof nowb, "%" PRId64, now);
    const char *params[] = {
        mu->target, ch, until, op->account, op->text, mu->until ? "mute" : "unmute", nowb};
    if (wy_pg_exec(wy_daemon_pg(svc->d), &sql_mute, params, on_mute_done, mu) != WY_OK) {
        wy_free(mu);
        op_fail(op, WY_EUNAVAIL, "chat store busy; retry");
    }
}

/* ---- registration ---- */

int chat_grpc_register(wy_daemon_t *d, const char **err)
{
    static const struct {
        const char *path;
        const ProtobufCMessageDescriptor *desc;
        wy_grpc_handler_cb cb;
    } methods[] = {
        {"/wyvern.chat.Chat/Send", &wyvern__chat__send_request__descriptor, rpc_send},
        {"/wyvern.chat.Chat/Create", &wyvern__chat__create_request__descriptor, rpc_create},
        {"/wyvern.chat.Chat/Join", &wyvern__chat__member_request__descriptor, rpc_join},
        {"/wyvern.chat.Chat/Leave", &wyvern__chat__member_request__descriptor, rpc_leave},
        {"/wyvern.chat.Chat/Invite", &wyvern__chat__member_request__descriptor, rpc_invite},
        {"/wyvern.chat.Chat/Kick", &wyvern__chat__member_request__descriptor, rpc_kick},
        {"/wyvern.chat.Chat/ListChannels", &wyvern__chat__list_channels_request__descriptor,
         rpc_list},
        {"/wyvern.chat.Chat/History", &wyvern__chat__history_request__descriptor, rpc_history},
        {"/wyvern.chat.Chat/Mute", &wyvern__chat__mute_request__descriptor, rpc_mute},
        {"/wyvern.chat.Chat/Delete", &wyvern__chat__delete_request__descriptor, rpc_delete},
        {"/wyvern.chat.Chat/Report", &wyvern__chat__report_request__descriptor, rpc_report},
    };
    wy_grpc_server_t *srv = wy_daemon_grpc(d);
    for (size_t i = 0; i < WY_ARRAY_LEN(methods); i++) {
        if (wy_grpc_server_register(srv, methods[i].path, methods[i].desc, methods[i].cb, d) !=
            WY_OK) {
            *err = "cannot register the wyvern.chat.Chat methods";
            return WY_EINTERNAL;
        }
    }
    return WY_OK;
}
