/* wy-chat offline whispers (chat.h): a whisper to an account without a lobby session is also
 * a row of chat.offline_whispers (written by Send's statement). Lobby reads them at the next
 * login (Offline, paged by the row id) and pushes them; they are removed only when the client
 * acknowledged them (OfflineAck, through lobby), so a lobby that dies between the read and the
 * push, or before the client got them, loses nothing: they are pushed again at the next login
 * and the client drops what it has by (channel, seq). At least once. Loop thread. */
#include "chat.h"
#include "wy_log.h"
#include "wy_pg.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define OFFLINE_MAX     500
#define OFFLINE_DEFAULT 200

typedef struct {
    chat_svc_t *svc;
    wy_grpc_call_id_t call;
    char account[CHAT_ID_MAX + 1];
    uint32_t limit;
} off_op_t;

static off_op_t *off_new(void *arg, wy_grpc_call_id_t call, const char *account)
{
    chat_svc_t *svc = wy_daemon_state(arg);
    if (!svc || svc->stopping || !wy_daemon_pg(svc->d)) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-chat is stopping");
        return NULL;
    }
    if (!chat_account_ok(account)) {
        wy_grpc_reply_error(call, WY_EINVAL, "account_id must be 1..56 bytes of [A-Za-z0-9_.:-]");
        return NULL;
    }
    off_op_t *op = wy_calloc(1, sizeof *op);
    op->svc = svc;
    op->call = call;
    snprintf(op->account, sizeof op->account, "%s", account);
    chat_svc_ref(svc);
    svc->busy++;
    return op;
}

static void off_free(off_op_t *op)
{
    op->svc->busy--;
    chat_svc_unref(op->svc);
    wy_free(op);
}

static void off_fail(off_op_t *op, int status, const char *err, const char *what)
{
    wy_log_warn(what, "account", op->account, "error", err ? err : wy_strerror(status), NULL);
    wy_grpc_reply_error(op->call, WY_EUNAVAIL, "chat store unavailable; retry");
    off_free(op);
}

/* $1 account, $2 after id, $3 limit + 1. Rows whose message retention removed cannot be
 * delivered: they go. */
static const wy_pg_stmt_t sql_offline = {
    "chat_offline",
    "WITH gone AS (DELETE FROM chat.offline_whispers o WHERE o.account_id = $1 AND NOT EXISTS "
    "  (SELECT 1 FROM chat.messages x WHERE x.channel_id = o.channel_id AND x.seq = o.seq)) "
    "SELECT t.id AS id, t.channel_id AS channel_id, " CHAT_MSG_COLUMNS
    " FROM chat.offline_whispers t JOIN chat.messages m ON m.channel_id = t.channel_id AND "
    "  m.seq = t.seq WHERE t.account_id = $1 AND t.id > $2::bigint ORDER BY t.id LIMIT $3::int",
    3};

static void on_offline_done(int status, const PGresult *res, const char *err, void *ud)
{
    off_op_t *op = ud;
    if (status != WY_OK) {
        off_fail(op, status, err, "offline whispers failed");
        return;
    }
    int rows = PQntuples(res);
    size_t n = (size_t)rows > op->limit ? op->limit : (size_t)rows;
    Wyvern__Chat__Message *ms = wy_calloc(n ? n : 1, sizeof *ms);
    Wyvern__Chat__Message **ptrs = wy_calloc(n ? n : 1, sizeof *ptrs);
    uint64_t *ids = wy_calloc(n ? n : 1, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        chat_message_from_row(&ms[i], res, (int)i, wy_pg_text(res, (int)i, "channel_id"),
                              CHAT_WHISPER);
        ptrs[i] = &ms[i];
        ids[i] = (uint64_t)wy_pg_int64(res, (int)i, "id");
    }
    Wyvern__Chat__OfflineResponse r = WYVERN__CHAT__OFFLINE_RESPONSE__INIT;
    r.messages = ptrs;
    r.n_messages = n;
    r.ids = ids;
    r.n_ids = n;
    r.more = (size_t)rows > n;
    wy_grpc_reply(op->call, &r.base);
    wy_free(ms);
    wy_free(ptrs);
    wy_free(ids);
    off_free(op);
}

static void rpc_offline(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__OfflineRequest *in = (const Wyvern__Chat__OfflineRequest *)req;
    if (in->limit > OFFLINE_MAX || in->after_id > INT64_MAX) {
        wy_grpc_reply_error(call, WY_EINVAL, "limit must be 0..500, after_id below 2^63");
        return;
    }
    off_op_t *op = off_new(arg, call, in->account_id);
    if (!op)
        return;
    op->limit = in->limit ? in->limit : OFFLINE_DEFAULT;
    char after[24], limit[16];
    snprintf(after, sizeof after, "%" PRIu64, in->after_id);
    snprintf(limit, sizeof limit, "%u", op->limit + 1);
    const char *params[] = {op->account, after, limit};
    if (wy_pg_exec(wy_daemon_pg(op->svc->d), &sql_offline, params, on_offline_done, op) != WY_OK) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "chat store busy; retry");
        off_free(op);
    }
}

static const wy_pg_stmt_t sql_offline_ack = {
    "chat_offline_ack",
    "DELETE FROM chat.offline_whispers WHERE account_id = $1 AND id <= $2::bigint", 2};

static void on_ack_done(int status, const PGresult *res, const char *err, void *ud)
{
    off_op_t *op = ud;
    if (status != WY_OK) {
        off_fail(op, status, err, "offline whispers ack failed");
        return;
    }
    Wyvern__Chat__OfflineAckResponse r = WYVERN__CHAT__OFFLINE_ACK_RESPONSE__INIT;
    r.removed = (uint32_t)strtoul(PQcmdTuples((PGresult *)res), NULL, 10);
    wy_metric_add(op->svc->m_offline_acked, (double)r.removed);
    wy_grpc_reply(op->call, &r.base);
    off_free(op);
}

static void rpc_offline_ack(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__OfflineAckRequest *in = (const Wyvern__Chat__OfflineAckRequest *)req;
    if (in->up_to_id > INT64_MAX) {
        wy_grpc_reply_error(call, WY_EINVAL, "up_to_id must be below 2^63");
        return;
    }
    off_op_t *op = off_new(arg, call, in->account_id);
    if (!op)
        return;
    char upto[24];
    snprintf(upto, sizeof upto, "%" PRIu64, in->up_to_id);
    const char *params[] = {op->account, upto};
    if (wy_pg_exec(wy_daemon_pg(op->svc->d), &sql_offline_ack, params, on_ack_done, op) != WY_OK) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "chat store busy; retry");
        off_free(op);
    }
}

int chat_offline_register(wy_daemon_t *d, const char **err)
{
    chat_svc_t *svc = wy_daemon_state(d);
    svc->m_offline_acked = wy_metrics_counter(
        "wy_chat_offline_acked_total",
        "Offline whispers removed after the recipient's client acknowledged them.", NULL);
    wy_grpc_server_t *srv = wy_daemon_grpc(d);
    if (wy_grpc_server_register(srv, "/wyvern.chat.Chat/Offline",
                                &wyvern__chat__offline_request__descriptor, rpc_offline,
                                d) != WY_OK ||
        wy_grpc_server_register(srv, "/wyvern.chat.Chat/OfflineAck",
                                &wyvern__chat__offline_ack_request__descriptor, rpc_offline_ack,
                                d) != WY_OK) {
        *err = "cannot register the wyvern.chat.Chat offline methods";
        return WY_EINTERNAL;
    }
    return WY_OK;
}
