/* wy-actor transactions across instances (txn_remote.h). The coordinator's handle of a
 * side another instance owns (HoldSide / ReleaseSide calls), and the owner's holds with
 * their settle in PostgreSQL. Loop thread. */
#include "txn_remote.h"
#include "txn.h"
#include "wy_log.h"

#include <stdio.h>
#include <string.h>

#define HOLD_PATH    "/wyvern.actor.Actor/HoldSide"
#define RELEASE_PATH "/wyvern.actor.Actor/ReleaseSide"
#define HOLDS_MAX    65536 /* remote holds one owner keeps at once */
#define SETTLE_RETRY 500   /* ms between settles while PostgreSQL is unreachable */

/* ================= coordinator side ================= */

struct actor_rside {
    actor_svc_t *svc;
    actor_peer_t *peer;
    char attempt[37];
    char actor[ACTOR_ID_LEN + 1];
    actor_rside_cb cb;
    void *ud;
    bool in_flight;   /* the HoldSide call */
    bool released;    /* actor_rside_release was called */
    bool held;        /* HoldSide answered OK */
    int outcome;      /* of the release */
    actor_event_t ev; /* COMMITTED: copy of the event */
    actor_state_t state;
    int64_t epoch;
    int shard;
    char owner[128];
};

static void rside_free(actor_rside_t *rs)
{
    actor_state_clear(&rs->state);
    wy_free(rs->ev.data);
    actor_svc_t *svc = rs->svc;
    wy_free(rs);
    actor_svc_unref(svc);
}

static void on_released(int err, int status, const char *message, const ProtobufCMessage *resp,
                        void *arg)
{
    (void)status;
    (void)resp;
    actor_rside_t *rs = arg;
    if (err != WY_OK) /* the owner settles alone once its hold time is over */
        wy_log_warn("remote side release not delivered", "attempt", rs->attempt, "actor", rs->actor,
                    "error", *message ? message : wy_strerror(err), NULL);
    rside_free(rs);
}

/* Sends the release (the hold call has ended). */
static void send_release(actor_rside_t *rs)
{
    Wyvern__Actor__ReleaseSideRequest req = WYVERN__ACTOR__RELEASE_SIDE_REQUEST__INIT;
    req.attempt_id = rs->attempt;
    req.actor_id = rs->actor;
    req.outcome = (Wyvern__Actor__SideOutcome)rs->outcome;
    if (rs->outcome == ACTOR_RSIDE_COMMITTED) {
        req.event.data = rs->ev.data;
        req.event.len = rs->ev.len;
    }
    wy_grpc_md_t md[1] = {{"wy-actor-forwarded-by", wy_daemon_instance(rs->svc->d)}};
    actor_peer_t *p = rs->peer;
    if (rs->svc->stopping ||
        (!p->ch &&
         wy_grpc_channel_new(wy_daemon_grpc_rt(rs->svc->d), p->addr, NULL, &p->ch) != WY_OK) ||
        wy_grpc_call(p->ch, RELEASE_PATH, &req.base,
                     &wyvern__actor__release_side_response__descriptor,
                     (unsigned)rs->svc->cfg->forward_ms, md, 1, on_released, rs) != WY_OK)
        on_released(WY_EUNAVAIL, 14, "cannot call the owner", NULL, rs);
}

static void on_held(int err, int status, const char *message, const ProtobufCMessage *resp,
                    void *arg)
{
    (void)status;
    actor_rside_t *rs = arg;
    rs->in_flight = false;
    const Wyvern__Actor__HoldSideResponse *r = (const Wyvern__Actor__HoldSideResponse *)resp;
    int rc = err;
    const char *why = *message ? message : "owner instance unreachable; retry";
    if (rc == WY_OK) {
        if (r->state.len &&
            actor_snapshot_decode(&rs->state, r->state.data, r->state.len) != WY_OK) {
            rc = WY_EINTERNAL;
            why = "remote side's state does not decode";
        } else if (strcmp(rs->state.actor_id, rs->actor) || rs->state.seq != r->seq) {
            rc = WY_EINTERNAL;
            why = "remote side's state is not the character asked for";
        } else {
            rs->epoch = r->epoch;
            rs->shard = r->shard;
            snprintf(rs->owner, sizeof rs->owner, "%s", r->owner);
        }
    }
    if (rs->released) { /* the coordinator gave up meanwhile: only the release is left */
        if (err == WY_OK || err == WY_ETIMEDOUT || err == WY_ECANCELED || err == WY_EIO)
            send_release(rs);
        else
            rside_free(rs);
        return;
    }
    if (rc == WY_OK) {
        rs->held = true;
        rs->cb(rs, WY_OK, NULL, rs->ud);
        return;
    }
    /* Not held here; the owner may still hold it (a lost answer): nothing was written
     * under this attempt, so it is told NOT_WRITTEN. */
    rs->cb(rs, rc == WY_ENOTFOUND ? WY_ENOTFOUND : WY_EUNAVAIL, why, rs->ud);
    rs->released = true;
    rs->outcome = ACTOR_RSIDE_NOT_WRITTEN;
    if (err == WY_OK || err == WY_ETIMEDOUT || err == WY_ECANCELED || err == WY_EIO)
        send_release(rs);
    else
        rside_free(rs);
}

actor_rside_t *actor_rside_hold(actor_svc_t *svc, actor_peer_t *p, const char *txn_id,
                                const char *attempt, const char *actor_id, actor_rside_cb cb,
                                void *ud)
{
    actor_rside_t *rs = wy_calloc(1, sizeof *rs);
    actor_svc_ref(svc);
    rs->svc = svc;
    rs->peer = p;
    rs->cb = cb;
    rs->ud = ud;
    snprintf(rs->attempt, sizeof rs->attempt, "%s", attempt);
    snprintf(rs->actor, sizeof rs->actor, "%s", actor_id);
    actor_state_init(&rs->state, actor_id);
    Wyvern__Actor__HoldSideRequest req = WYVERN__ACTOR__HOLD_SIDE_REQUEST__INIT;
    req.txn_id = (char *)txn_id;
    req.attempt_id = rs->attempt;
    req.actor_id = rs->actor;
    /* Held past the coordinator's prepare and write: settling sooner would only abort
     * attempts that could still commit (safe, but wasted). */
    req.hold_ms = (uint32_t)(2 * svc->cfg->txn_timeout_ms + svc->cfg->forward_ms);
    wy_grpc_md_t md[1] = {{"wy-actor-forwarded-by", wy_daemon_instance(svc->d)}};
    rs->in_flight = true;
    if ((!p->ch &&
         wy_grpc_channel_new(wy_daemon_grpc_rt(svc->d), p->addr, NULL, &p->ch) != WY_OK) ||
        wy_grpc_call(p->ch, HOLD_PATH, &req.base, &wyvern__actor__hold_side_response__descriptor,
                     (unsigned)svc->cfg->forward_ms, md, 1, on_held, rs) != WY_OK) {
        rside_free(rs); /* never sent: nothing held */
        return NULL;
    }
    wy_metric_inc(svc->m_forwarded);
    return rs;
}

const actor_state_t *actor_rside_state(const actor_rside_t *rs)
{
    return &rs->state;
}

int64_t actor_rside_epoch(const actor_rside_t *rs)
{
    return rs->epoch;
}

int actor_rside_shard(const actor_rside_t *rs)
{
    return rs->shard;
}

const char *actor_rside_owner(const actor_rside_t *rs)
{
    return rs->owner;
}

void actor_rside_release(actor_rside_t *rs, actor_rside_outcome_t outcome, const actor_event_t *ev)
{
    rs->released = true;
    rs->outcome = outcome;
    if (outcome == ACTOR_RSIDE_COMMITTED && ev) {
        rs->ev.len = ev->len;
        rs->ev.data = wy_malloc(ev->len ? ev->len : 1);
        memcpy(rs->ev.data, ev->data, ev->len);
    }
    if (!rs->in_flight)
        send_release(rs);
}

/* ================= owner side ================= */

typedef struct {
    actor_req_t req; /* the hold in the store */
    actor_svc_t *svc;
    wy_grpc_call_id_t call; /* HoldSide, until answered */
    char attempt[37];
    char txn[ACTOR_TXN_ID_MAX + 1];
    char actor[ACTOR_ID_LEN + 1];
    uint32_t hold_ms;
    bool granted, call_open, settling, done;
    int refs;    /* the timer handle, a settle in flight */
    int pending; /* outcome given before the grant, -1 = none */
    uv_timer_t timer;
} rhold_t;

static const wy_pg_stmt_t sql_settle = {
    "actor_txn_settle",
    "INSERT INTO actor.txn_attempts (attempt_id, txn_id, outcome) VALUES ($1::uuid, $2, "
    "'aborted') ON CONFLICT (attempt_id) DO NOTHING RETURNING 1",
    2};

static void rhold_unref(rhold_t *h)
{
    if (--h->refs)
        return;
    actor_svc_t *svc = h->svc;
    wy_free(h);
    actor_svc_unref(svc);
}

static void on_timer_closed(uv_handle_t *t)
{
    rhold_unref(t->data);
}

/* Ends h: out of the map, released (events applied, unchanged, or read again). */
static void finish(rhold_t *h, const actor_event_t *ev, bool unknown, const char *how)
{
    if (h->done)
        return;
    h->done = true;
    wy_map_del_str(h->svc->rholds, h->attempt, NULL);
    if (h->granted)
        actor_store_release(&h->req, ev, ev ? 1 : 0, false, unknown);
    wy_log_info("remote side released", "attempt", h->attempt, "txn", h->txn, "actor", h->actor,
                "outcome", how, NULL);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

static void settle(rhold_t *h);

static void on_hold_timer(uv_timer_t *t)
{
    settle(t->data);
}

static void on_settled(int status, const PGresult *res, const char *err, void *ud)
{
    rhold_t *h = ud;
    h->settling = false;
    if (h->done) { /* a stop released it meanwhile */
        rhold_unref(h);
        return;
    }
    rhold_unref(h);
    if (status != WY_OK) { /* unknown still: keep holding, try again */
        wy_log_warn("remote side settle failed; retrying", "attempt", h->attempt, "error", err,
                    NULL);
        uv_timer_start(&h->timer, on_hold_timer, SETTLE_RETRY, 0);
        return;
    }
    if (PQntuples(res) == 1)
        finish(h, NULL, false, "aborted"); /* our row won: the coordinator cannot commit */
    else
        finish(h, NULL, true, "reloaded"); /* the coordinator's row is there: read again */
}

static void settle(rhold_t *h)
{
    if (h->settling || h->done)
        return;
    h->settling = true;
    h->refs++;
    const char *p[] = {h->attempt, h->txn};
    wy_pg_t *pg = wy_daemon_pg(h->svc->d);
    if (!pg || wy_pg_exec(pg, &sql_settle, p, on_settled, h) != WY_OK)
        on_settled(WY_EUNAVAIL, NULL, "PostgreSQL unavailable", h);
}

/* The outcome the coordinator gave (granted hold). */
static const char *apply_outcome(rhold_t *h, int outcome, const uint8_t *ev, size_t len)
{
    if (outcome == ACTOR_RSIDE_COMMITTED) {
        actor_event_t e = {.data = (uint8_t *)ev, .len = len};
        finish(h, &e, false, "committed");
        return "committed";
    }
    if (outcome == ACTOR_RSIDE_NOT_WRITTEN) {
        finish(h, NULL, false, "released");
        return "released";
    }
    settle(h);
    return "settling";
}

static void on_granted(actor_req_t *r, int status, const char *msg,
                       const Wyvern__Actor__ApplyResponse *res)
{
    (void)res;
    rhold_t *h = r->ud;
    actor_svc_t *svc = h->svc;
    if (status != WY_OK) {
        if (h->call_open)
            wy_grpc_reply_error(h->call, status, msg);
        h->call_open = false;
        h->done = true;
        wy_map_del_str(svc->rholds, h->attempt, NULL);
        uv_close((uv_handle_t *)&h->timer, on_timer_closed);
        return;
    }
    h->granted = true;
    if (h->pending >= 0) { /* the coordinator gave up before the grant */
        if (h->call_open)
            wy_grpc_reply_error(h->call, WY_EUNAVAIL, "transaction given up; retry");
        h->call_open = false;
        apply_outcome(h, h->pending == ACTOR_RSIDE_COMMITTED ? ACTOR_RSIDE_UNKNOWN : h->pending,
                      NULL, 0);
        return;
    }
    const actor_state_t *s = actor_store_held(&h->req);
    int shard = actor_shard(h->actor);
    Wyvern__Actor__HoldSideResponse out = WYVERN__ACTOR__HOLD_SIDE_RESPONSE__INIT;
    uint8_t *state = NULL;
    size_t len = 0;
    if (s->seq)
        state = actor_snapshot_encode(s, &len);
    out.state.data = state;
    out.state.len = len;
    out.seq = s->seq;
    out.shard = shard;
    out.epoch = shard >= 0 ? svc->epoch[shard] : 0;
    out.owner = (char *)wy_daemon_instance(svc->d);
    if (out.epoch <= 0) { /* the shard left us while the hold waited */
        wy_grpc_reply_error(h->call, WY_EUNAVAIL, "shard ownership moving; retry");
        h->call_open = false;
        finish(h, NULL, true, "shard lost");
    } else {
        wy_grpc_reply(h->call, &out.base);
        h->call_open = false;
        uv_timer_start(&h->timer, on_hold_timer, h->hold_ms, 0);
    }
    wy_free(state);
}

void actor_rpc_hold_side(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__HoldSideRequest *in = (const Wyvern__Actor__HoldSideRequest *)req;
    actor_svc_t *svc = wy_daemon_state(arg);
    if (!svc || svc->stopping) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-actor is stopping");
        return;
    }
    if (!actor_uuid_valid(in->attempt_id) || !actor_uuid_valid(in->actor_id) ||
        strlen(in->txn_id) > ACTOR_TXN_ID_MAX || in->hold_ms < 100 || in->hold_ms > 600000) {
        wy_grpc_reply_error(call, WY_EINVAL,
                            "HoldSide needs attempt_id and actor_id (UUIDs), txn_id (at most 128 "
                            "bytes) and hold_ms 100..600000");
        return;
    }
    if (!svc->rholds)
        svc->rholds = wy_map_new(HOLDS_MAX); /* attempt id -> rhold_t, granted or waiting */
    if (wy_map_get_str(svc->rholds, in->attempt_id)) {
        wy_grpc_reply_error(call, WY_EEXIST, "attempt already held");
        return;
    }
    rhold_t *h = wy_calloc(1, sizeof *h);
    h->svc = svc;
    h->call = call;
    h->call_open = true;
    h->pending = -1;
    h->hold_ms = in->hold_ms;
    snprintf(h->attempt, sizeof h->attempt, "%s", in->attempt_id);
    snprintf(h->txn, sizeof h->txn, "%s", in->txn_id);
    snprintf(h->actor, sizeof h->actor, "%s", in->actor_id);
    if (wy_map_put_str(svc->rholds, h->attempt, h) != WY_OK) {
        wy_free(h);
        wy_grpc_reply_error(call, WY_EUNAVAIL, "too many remote holds; retry");
        return;
    }
    actor_svc_ref(svc);
    h->refs = 1; /* the timer */
    uv_timer_init(svc->loop, &h->timer);
    h->timer.data = h;
    h->req.forwarded = true; /* a hold is never forwarded: not ours = UNAVAILABLE */
    h->req.done = on_granted;
    h->req.ud = h;
    actor_store_hold(svc, h->actor, &h->req);
}

void actor_rpc_release_side(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__ReleaseSideRequest *in = (const Wyvern__Actor__ReleaseSideRequest *)req;
    actor_svc_t *svc = wy_daemon_state(arg);
    Wyvern__Actor__ReleaseSideResponse out = WYVERN__ACTOR__RELEASE_SIDE_RESPONSE__INIT;
    rhold_t *h =
        svc && svc->rholds && in->attempt_id ? wy_map_get_str(svc->rholds, in->attempt_id) : NULL;
    if (!h || strcmp(h->actor, in->actor_id)) {
        out.outcome = "gone";
        wy_grpc_reply(call, &out.base);
        return;
    }
    int outcome = in->outcome == WYVERN__ACTOR__SIDE_OUTCOME__SIDE_OUTCOME_COMMITTED     ? 1
                  : in->outcome == WYVERN__ACTOR__SIDE_OUTCOME__SIDE_OUTCOME_NOT_WRITTEN ? 2
                                                                                         : 0;
    if (!h->granted) {
        h->pending = outcome;
        out.outcome = "pending";
    } else {
        out.outcome = (char *)apply_outcome(h, outcome, in->event.data, in->event.len);
    }
    wy_grpc_reply(call, &out.base);
}

void actor_txn_remote_stop(actor_svc_t *svc)
{
    if (!svc->rholds)
        return;
    /* Granted holds are dropped to be read again (PostgreSQL decides); waiting ones are
     * answered by the store's stop. */
    wy_map_iter_t it;
    wy_map_iter_init(&it, svc->rholds);
    while (wy_map_next(&it)) {
        rhold_t *h = it.val;
        if (h->granted)
            finish(h, NULL, true, "stopping");
    }
}
