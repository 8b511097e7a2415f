/* wy-chat report review (chat.h): moderators page through the reports players filed
 * (ListReports, oldest first by id, open ones unless asked) and close them with a note
 * (ResolveReport, one row of chat.moderation_log in the same statement and a
 * "msg":"moderation" log line). The moderator role is Caller.moderator (lobby: the verified
 * token's "roles" claim) or WY_CHAT_MODERATORS. Loop thread. */
#include "chat.h"
#include "wy_log.h"
#include "wy_pg.h"
#include "wy_text.h"

#include <inttypes.h>
#include <string.h>

#define REPORTS_MAX     200
#define REPORTS_DEFAULT 50
#define NOTE_MAX        500

typedef struct {
    chat_svc_t *svc;
    wy_grpc_call_id_t call;
    char account[CHAT_ID_MAX + 1];
    uint32_t limit;
    int64_t report, at;
} rev_op_t;

/* The operation of a moderator's call, or NULL (the call answered). */
static rev_op_t *rev_new(void *arg, wy_grpc_call_id_t call, const Wyvern__Chat__Caller *c)
{
    chat_svc_t *svc = wy_daemon_state(arg);
    if (!svc || svc->stopping || !wy_daemon_pg(svc->d)) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-chat is stopping");
        return NULL;
    }
    if (!c || !chat_account_ok(c->account_id)) {
        wy_grpc_reply_error(call, WY_EINVAL,
                            "caller.account_id must be 1..56 bytes of [A-Za-z0-9_.:-]");
        return NULL;
    }
    if (!c->moderator && !chat_is_moderator(svc->cfg, c->account_id)) {
        wy_grpc_reply_error(call, WY_EPERM, "only moderators review reports");
        return NULL;
    }
    rev_op_t *op = wy_calloc(1, sizeof *op);
    op->svc = svc;
    op->call = call;
    snprintf(op->account, sizeof op->account, "%s", c->account_id);
    chat_svc_ref(svc);
    svc->busy++;
    return op;
}

static void rev_free(rev_op_t *op)
{
    op->svc->busy--;
    chat_svc_unref(op->svc);
    wy_free(op);
}

static void rev_fail(rev_op_t *op, int code, const char *msg)
{
    wy_grpc_reply_error(op->call, code, msg);
    rev_free(op);
}

/* $1 after id, $2 resolved too, $3 limit + 1. The message may be gone (retention): NULL seq. */
static const wy_pg_stmt_t sql_reports = {
    "chat_reports",
    "SELECT r.id AS r_id, r.channel_id AS r_channel, r.seq AS r_seq, r.reporter_id AS r_reporter, "
    "  r.reason AS r_reason, r.at_ms AS r_at, r.resolved_at_ms AS r_resolved_at, "
    "  r.resolved_by AS r_resolved_by, r.resolution AS r_resolution, "
    "  " CHAT_MSG_COLUMNS " FROM chat.reports r "
    "  LEFT JOIN chat.messages m ON m.channel_id = r.channel_id AND m.seq = r.seq "
    "WHERE r.id > $1::bigint AND ($2::boolean OR r.resolved_at_ms = 0) ORDER BY r.id "
    "LIMIT $3::int",
    3};

static void on_reports(int status, const PGresult *res, const char *err, void *ud)
{
    rev_op_t *op = ud;
    if (status != WY_OK) {
        wy_log_warn("list reports failed", "error", err ? err : wy_strerror(status), NULL);
        rev_fail(op, WY_EUNAVAIL, "chat store unavailable; retry");
        return;
    }
    int rows = PQntuples(res);
    size_t n = (size_t)rows > op->limit ? op->limit : (size_t)rows;
    Wyvern__Chat__Report *rs = wy_calloc(n ? n : 1, sizeof *rs);
    Wyvern__Chat__Report **ptrs = wy_calloc(n ? n : 1, sizeof *ptrs);
    Wyvern__Chat__Message *ms = wy_calloc(n ? n : 1, sizeof *ms);
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        Wyvern__Chat__Report *r = &rs[i];
        wyvern__chat__report__init(r);
        r->report_id = wy_pg_int64(res, row, "r_id");
        r->channel_id = (char *)wy_pg_text(res, row, "r_channel");
        r->seq = (uint64_t)wy_pg_int64(res, row, "r_seq");
        r->reporter_id = (char *)wy_pg_text(res, row, "r_reporter");
        r->reason = (char *)wy_pg_text(res, row, "r_reason");
        r->at_ms = wy_pg_int64(res, row, "r_at");
        r->resolved_at_ms = wy_pg_int64(res, row, "r_resolved_at");
        r->resolved_by = (char *)wy_pg_text(res, row, "r_resolved_by");
        r->resolution = (char *)wy_pg_text(res, row, "r_resolution");
        if (!wy_pg_isnull(res, row, "seq")) {
            int kind = chat_channel_kind(r->channel_id);
            chat_message_from_row(&ms[i], res, row, r->channel_id, kind < 0 ? 0 : kind);
            r->message = &ms[i];
        }
        ptrs[i] = r;
    }
    Wyvern__Chat__ListReportsResponse out = WYVERN__CHAT__LIST_REPORTS_RESPONSE__INIT;
    out.reports = ptrs;
    out.n_reports = n;
    out.more = (size_t)rows > n;
    wy_grpc_reply(op->call, &out.base);
    wy_free(rs);
    wy_free(ptrs);
    wy_free(ms);
    rev_free(op);
}

static void rpc_list_reports(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__ListReportsRequest *in = (const Wyvern__Chat__ListReportsRequest *)req;
    if (in->limit > REPORTS_MAX || in->after_id > INT64_MAX) {
        wy_grpc_reply_error(call, WY_EINVAL, "limit must be 0..200, after_id below 2^63");
        return;
    }
    rev_op_t *op = rev_new(arg, call, in->caller);
    if (!op)
        return;
    op->limit = in->limit ? in->limit : REPORTS_DEFAULT;
    char after[24], limit[16];
    snprintf(after, sizeof after, "%" PRIu64, in->after_id);
    snprintf(limit, sizeof limit, "%u", op->limit + 1);
    const char *params[] = {after, in->resolved ? "t" : "f", limit};
    if (wy_pg_exec(wy_daemon_pg(op->svc->d), &sql_reports, params, on_reports, op) != WY_OK)
        rev_fail(op, WY_EUNAVAIL, "chat store busy; retry");
}

/* $1 report, $2 now, $3 moderator, $4 note. */
static const wy_pg_stmt_t sql_resolve = {
    "chat_resolve_report",
    "WITH u AS (UPDATE chat.reports SET resolved_at_ms = $2::bigint, resolved_by = $3, "
    "  resolution = $4 WHERE id = $1::bigint AND resolved_at_ms = 0 "
    "  RETURNING id, channel_id, seq, reporter_id), "
    "lg AS (INSERT INTO chat.moderation_log (actor_id, action, account_id, channel_id, seq, "
    "  detail, at_ms) SELECT $3, 'resolve_report', reporter_id, channel_id, seq, "
    "  'report ' || id || ': ' || $4, $2::bigint FROM u) "
    "SELECT (SELECT id FROM u) AS id, (SELECT channel_id FROM u) AS channel_id, "
    "  EXISTS (SELECT 1 FROM chat.reports WHERE id = $1::bigint) AS known",
    4};

static void on_resolved(int status, const PGresult *res, const char *err, void *ud)
{
    rev_op_t *op = ud;
    if (status != WY_OK) {
        wy_log_warn("resolve report failed", "error", err ? err : wy_strerror(status), NULL);
        rev_fail(op, WY_EUNAVAIL, "chat store unavailable; retry");
        return;
    }
    if (wy_pg_isnull(res, 0, "id")) {
        if (wy_pg_bool(res, 0, "known"))
            rev_fail(op, WY_ESTATE, "this report is resolved already");
        else
            rev_fail(op, WY_ENOTFOUND, "no such report");
        return;
    }
    wy_metric_inc(op->svc->m_moderation);
    char idb[24];
    snprintf(idb, sizeof idb, "%" PRId64, op->report);
    wy_log_info("moderation", "action", "resolve_report", "by", op->account, "report", idb,
                "channel", wy_pg_text(res, 0, "channel_id"), NULL);
    Wyvern__Chat__ResolveReportResponse r = WYVERN__CHAT__RESOLVE_REPORT_RESPONSE__INIT;
    r.resolved_at_ms = op->at;
    wy_grpc_reply(op->call, &r.base);
    rev_free(op);
}

static void rpc_resolve_report(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Chat__ResolveReportRequest *in = (const Wyvern__Chat__ResolveReportRequest *)req;
    const char *note = in->resolution ? in->resolution : "";
    if (in->report_id <= 0 || strlen(note) > NOTE_MAX || !wy_text_valid_utf8(note, strlen(note))) {
        wy_grpc_reply_error(call, WY_EINVAL,
                            "report_id must be a report's id and resolution 0..500 bytes of UTF-8");
        return;
    }
    rev_op_t *op = rev_new(arg, call, in->caller);
    if (!op)
        return;
    op->report = in->report_id;
    op->at = (int64_t)wy_wall_ms();
    char idb[24], atb[24];
    snprintf(idb, sizeof idb, "%" PRId64, op->report);
    snprintf(atb, sizeof atb, "%" PRId64, op->at);
    const char *params[] = {idb, atb, op->account, note};
    if (wy_pg_exec(wy_daemon_pg(op->svc->d), &sql_resolve, params, on_resolved, op) != WY_OK)
        rev_fail(op, WY_EUNAVAIL, "chat store busy; retry");
}

int chat_review_register(wy_daemon_t *d, const char **err)
{
    wy_grpc_server_t *srv = wy_daemon_grpc(d);
    if (wy_grpc_server_register(srv, "/wyvern.chat.Chat/ListReports",
                                &wyvern__chat__list_reports_request__descriptor, rpc_list_reports,
                                d) != WY_OK ||
        wy_grpc_server_register(srv, "/wyvern.chat.Chat/ResolveReport",
                                &wyvern__chat__resolve_report_request__descriptor,
                                rpc_resolve_report, d) != WY_OK) {
        *err = "cannot register the wyvern.chat.Chat report review methods";
        return WY_EINTERNAL;
    }
    return WY_OK;
}
