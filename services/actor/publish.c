/* wy-actor: every committed event goes to Kafka `wy.actor`, read from actor.events itself
 * (no outbox row per event: that doubled the rows each command writes, and the relay's
 * DELETE made it triple).
 *
 * Each event row records the id of the transaction that wrote it (`xid`, a column default,
 * migration 022). A transaction whose id is below the oldest one still running
 * (pg_snapshot_xmin of the current snapshot) has ended, so no row with such an xid can
 * appear any more: reading in (xid, actor_id, seq) order up to that horizon and keeping a
 * cursor (actor.publish_cursor) publishes every committed event, whatever order the
 * transactions committed in, with no write per event. A pass: read up to PUBLISH_BATCH rows
 * after the cursor, produce them (event_id = the row's, so a re-publication is recognised),
 * wait for every delivery report, then move the cursor (monotonic). A crash or a failed
 * delivery before the move publishes them again: at-least-once with stable ids.
 *
 * One instance publishes: the owner of shard 0 (a paused former owner that still relays
 * only publishes duplicates; the cursor never moves back). A long transaction anywhere in
 * the database holds the horizon back and delays (never loses) publication.
 * Loop thread. */
#include "actor.h"
#include "wy_log.h"

#include <stdio.h>
#include <string.h>

#define PUBLISH_BATCH    512
#define PUBLISH_IDLE_MS  200 /* poll period while idle (a commit wakes it at once) */
#define PUBLISH_RETRY_MS 1000

/* The cursor is a row subquery (an InitPlan), so its xid bounds the index scan of
 * events_xid from below: a join with publish_cursor was planned as a scan of every event
 * ever written (the cursor's xid only a join filter), a cost that grew with the log. */
static const wy_pg_stmt_t sql_pub_read = {
    "actor_pub_read",
    "SELECT e.xid::text AS xid, e.actor_id::text AS actor_id, e.seq, e.event_id::text AS "
    "event_id, e.type, e.payload FROM actor.events e WHERE (e.xid, e.actor_id, e.seq) > "
    "(SELECT xid, actor_id, seq FROM actor.publish_cursor WHERE id = 1) AND e.xid < "
    "pg_snapshot_xmin(pg_current_snapshot()) ORDER BY e.xid, e.actor_id, e.seq LIMIT $1::int",
    1};
static const wy_pg_stmt_t sql_pub_cursor = {
    "actor_pub_cursor",
    "UPDATE actor.publish_cursor SET xid = $1::xid8, actor_id = $2::uuid, seq = $3::bigint "
    "WHERE id = 1 AND (xid, actor_id, seq) < ($1::xid8, $2::uuid, $3::bigint)",
    3};

typedef struct {
    actor_svc_t *svc;
    int pending; /* deliveries not reported yet */
    int failed;
    int rows;
    char xid[32], actor[ACTOR_ID_LEN + 1], seq[24]; /* the last row: the new cursor */
} pub_pass_t;

static void pass_start(actor_svc_t *svc);

static void on_pub_timer(uv_timer_t *t)
{
    pass_start(t->data);
}

static void pass_later(actor_svc_t *svc, uint64_t ms)
{
    if (!svc->stopping)
        uv_timer_start(&svc->pub_timer, on_pub_timer, ms, 0);
}

/* The pass is over: the next one now (the batch was full, or a commit woke us meanwhile)
 * or after the idle period. */
static void pass_end(pub_pass_t *p, bool ok)
{
    actor_svc_t *svc = p->svc;
    svc->pub_running = false;
    svc->busy--;
    bool again = ok && (p->rows == PUBLISH_BATCH || svc->pub_woken);
    svc->pub_woken = false;
    pass_later(svc, !ok ? PUBLISH_RETRY_MS : again ? 0 : PUBLISH_IDLE_MS);
    wy_free(p);
    actor_svc_unref(svc);
}

static void on_cursor(int status, const PGresult *res, const char *err, void *ud)
{
    (void)res;
    pub_pass_t *p = ud;
    if (status != WY_OK)
        wy_log_warn("wy.actor cursor not moved (events published again)", "error", err, NULL);
    else
        wy_metric_add(p->svc->m_published, p->rows);
    pass_end(p, status == WY_OK);
}

static void delivered(pub_pass_t *p)
{
    if (--p->pending > 0)
        return;
    wy_pg_t *pg = wy_daemon_pg(p->svc->d);
    if (p->failed) {
        wy_metric_add(p->svc->m_publish_failed, p->failed);
        pass_end(p, false);
        return;
    }
    const char *prm[] = {p->xid, p->actor, p->seq};
    if (!pg || wy_pg_exec(pg, &sql_pub_cursor, prm, on_cursor, p) != WY_OK)
        pass_end(p, false);
}

static void on_delivery(void *ud, int status, const char *event_id)
{
    (void)event_id;
    pub_pass_t *p = ud;
    if (status != WY_OK)
        p->failed++;
    delivered(p);
}

/* The stored Event with actor_id (field 2) and seq (field 3) appended: a protobuf message
 * followed by more fields is that message with them set. New buffer (wy_free). */
static uint8_t *published_payload(const uint8_t *stored, size_t n, const char *actor_id,
                                  uint64_t seq, size_t *len)
{
    uint8_t *b = wy_malloc(n + 2 + ACTOR_ID_LEN + 1 + 10);
    memcpy(b, stored, n);
    size_t k = n;
    b[k++] = 0x12;
    b[k++] = ACTOR_ID_LEN;
    memcpy(b + k, actor_id, ACTOR_ID_LEN);
    k += ACTOR_ID_LEN;
    b[k++] = 0x18;
    do {
        b[k++] = (uint8_t)((seq & 127) | (seq > 127 ? 128 : 0));
        seq >>= 7;
    } while (seq);
    *len = k;
    return b;
}

static void on_rows(int status, const PGresult *res, const char *err, void *ud)
{
    pub_pass_t *p = ud;
    actor_svc_t *svc = p->svc;
    wy_kafka_producer_t *prod = wy_daemon_producer(svc->d);
    if (status != WY_OK || !prod || svc->stopping) {
        if (status != WY_OK)
            wy_log_warn("wy.actor read failed; retrying", "error", err, NULL);
        pass_end(p, false);
        return;
    }
    p->rows = PQntuples(res);
    p->pending = 1; /* this function */
    uint64_t now = wy_wall_ms();
    for (int i = 0; i < p->rows; i++) {
        const char *actor = wy_pg_text(res, i, "actor_id");
        const char *id = wy_pg_text(res, i, "event_id");
        uint64_t seq = (uint64_t)wy_pg_int64(res, i, "seq");
        size_t n = 0, len = 0;
        uint8_t *stored = actor_column_bytes(res, i, "payload", &n);
        char type[96];
        snprintf(type, sizeof type, "actor.%s", wy_pg_text(res, i, "type"));
        uint8_t *payload = stored && strlen(actor) == ACTOR_ID_LEN
                               ? published_payload(stored, n, actor, seq, &len)
                               : NULL;
        PQfreemem(stored);
        int rc = payload ? wy_kafka_produce_event(prod, "wy.actor", actor, id, type, now, payload,
                                                  len, on_delivery, p)
                         : WY_EIO;
        wy_free(payload);
        if (rc != WY_OK) { /* this pass ends without moving the cursor: all again later */
            p->failed++;
            break;
        }
        p->pending++;
        if (i == p->rows - 1) {
            snprintf(p->xid, sizeof p->xid, "%s", wy_pg_text(res, i, "xid"));
            snprintf(p->actor, sizeof p->actor, "%s", actor);
            snprintf(p->seq, sizeof p->seq, "%llu", (unsigned long long)seq);
        }
    }
    if (p->rows == 0 && !p->failed) {
        pass_end(p, true);
        return;
    }
    delivered(p);
}

static void pass_start(actor_svc_t *svc)
{
    if (svc->stopping || svc->pub_running)
        return;
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    if (svc->epoch[0] == 0 || !pg || !wy_daemon_producer(svc->d)) {
        pass_later(svc, PUBLISH_IDLE_MS * 5); /* not the publisher (or no store): look again */
        return;
    }
    pub_pass_t *p = wy_calloc(1, sizeof *p);
    p->svc = svc;
    char limit[16];
    snprintf(limit, sizeof limit, "%d", PUBLISH_BATCH);
    const char *prm[] = {limit};
    svc->pub_running = true;
    svc->pub_woken = false;
    svc->busy++;
    actor_svc_ref(svc);
    if (wy_pg_exec(pg, &sql_pub_read, prm, on_rows, p) != WY_OK)
        pass_end(p, false);
}

void actor_publish_wake(actor_svc_t *svc)
{
    if (svc->pub_running)
        svc->pub_woken = true;
    else if (!svc->stopping && svc->epoch[0] > 0)
        uv_timer_start(&svc->pub_timer, on_pub_timer, 0, 0);
}

static void on_pub_timer_closed(uv_handle_t *h)
{
    actor_svc_unref(h->data);
}

void actor_publish_start(actor_svc_t *svc)
{
    uv_timer_init(svc->loop, &svc->pub_timer);
    svc->pub_timer.data = svc;
    actor_svc_ref(svc); /* released by the timer's close */
    pass_later(svc, 0);
}

void actor_publish_stop(actor_svc_t *svc)
{
    uv_timer_stop(&svc->pub_timer);
    uv_close((uv_handle_t *)&svc->pub_timer, on_pub_timer_closed);
}
