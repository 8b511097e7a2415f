/* wy-actor: one owner per shard across instances (services/actor/README.md, "Ownership").
 *
 * Every WY_ACTOR_HEARTBEAT an instance runs a view, one statement: it renews its lease
 * (actor.instances, a table the writers never lock) and reads who owns each of the 256
 * shards and which instances are alive. Each shard's rightful owner is the live instance
 * with the highest rendezvous score for it, so every instance computes the same spread
 * without talking to the others and a join or a death moves only the shards it must. Then:
 *   - a shard of ours whose row says otherwise was taken from us (we were paused or cut
 *     off past our lease): it is dropped at once;
 *   - a shard that should be ours and whose owner is dead, gone or us (a restart) is taken
 *     (actor.transfer: epoch + 1, which fences the previous owner's writes);
 *   - a shard of ours that should be another live instance's is handed to it (same
 *     statement; it then takes it at its next view);
 *   - everything else tells where to forward requests (forward.c).
 * The writers' fence (actor.fence, in every write transaction) is what makes this safe:
 * whatever an instance believes, a write under an old epoch cannot commit.
 * Loop thread only. */
#include "actor.h"
#include "wy_buf.h"
#include "wy_log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define VIEW_MIN_GAP_MS 250 /* pokes run views at most this often */

/* Renews our lease, forgets instances dead for an hour (unless they still hold a shard),
 * and answers kind 0: each shard with its owner, epoch, address and liveness; kind 1:
 * each live instance. */
static const wy_pg_stmt_t sql_view = {
    "actor_view",
    "WITH hb AS (INSERT INTO actor.instances (instance, addr, lease_until) VALUES ($1, $2, "
    "now() + $3::bigint * interval '1 millisecond') ON CONFLICT (instance) DO UPDATE SET "
    "addr = EXCLUDED.addr, lease_until = EXCLUDED.lease_until RETURNING 1), "
    "gc AS (DELETE FROM actor.instances i WHERE i.lease_until < now() - interval '1 hour' AND "
    "NOT EXISTS (SELECT 1 FROM actor.owners o WHERE o.instance = i.instance) RETURNING 1) "
    "SELECT 0 AS kind, o.shard, o.instance, o.epoch, COALESCE(i.addr, '') AS addr, "
    "COALESCE(i.lease_until > now(), false) AS alive FROM actor.owners o "
    "LEFT JOIN actor.instances i ON i.instance = o.instance "
    "UNION ALL SELECT 1, -1, instance, 0, addr, true FROM actor.instances "
    "WHERE lease_until > now() AND instance <> $1",
    3};
static const wy_pg_stmt_t sql_transfer = {
    "actor_transfer",
    "SELECT shard, epoch FROM actor.transfer($1::int[], $2::text[], $3::bigint[], $4)", 4};
static const wy_pg_stmt_t sql_leave = {
    "actor_leave", "UPDATE actor.instances SET lease_until = now() WHERE instance = $1", 1};

typedef enum { XFER_TAKE, XFER_HAND, XFER_RELEASE } xfer_kind_t;

typedef struct {
    actor_svc_t *svc;
    xfer_kind_t kind;
    char to[128];
    int n;
} xfer_t;

/* The shards to transfer in one actor.transfer. */
typedef struct {
    int shard[ACTOR_SHARDS];
    char (*from)[128]; /* ACTOR_SHARDS names */
    int64_t epoch[ACTOR_SHARDS];
    int n;
} xfer_list_t;

static void xfer_list_add(xfer_list_t *l, int shard, const char *from, int64_t epoch)
{
    l->shard[l->n] = shard;
    snprintf(l->from[l->n], sizeof l->from[l->n], "%s", from);
    l->epoch[l->n++] = epoch;
}

static void run_view(actor_svc_t *svc);
static void view_end(actor_svc_t *svc);

static const char *me(const actor_svc_t *svc)
{
    return wy_daemon_instance(svc->d);
}

static void count_shards(actor_svc_t *svc)
{
    int n = 0;
    for (int s = 0; s < ACTOR_SHARDS; s++)
        n += svc->epoch[s] > 0;
    wy_metric_set(svc->m_shards, n);
}

/* ---- rendezvous hashing ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static uint64_t score(uint64_t name_h, int shard)
{
    return mix64(name_h ^ ((uint64_t)(shard + 1) * 0x9e3779b97f4a7c15ull));
}

/* ---- peers ---- */

static actor_peer_t *peer_get(actor_svc_t *svc, const char *name, const char *addr)
{
    actor_peer_t *p = wy_map_get_str(svc->peers, name);
    if (!p) {
        p = wy_calloc(1, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", name);
        wy_map_put_str(svc->peers, p->name, p);
    }
    if (strcmp(p->addr, addr)) {
        if (p->ch)
            wy_grpc_channel_close(p->ch);
        p->ch = NULL;
        snprintf(p->addr, sizeof p->addr, "%s", addr);
    }
    p->live = true;
    return p;
}

static void peer_free(actor_peer_t *p)
{
    if (p->ch)
        wy_grpc_channel_close(p->ch);
    wy_free(p);
}

/* Peers missing from the latest view are dead: nothing points at them any more. */
static void peers_prune(actor_svc_t *svc)
{
    wy_map_iter_t it;
    wy_map_iter_init(&it, svc->peers);
    while (wy_map_next(&it)) {
        actor_peer_t *p = it.val;
        if (!p->live) {
            wy_map_iter_del(&it);
            peer_free(p);
        }
    }
}

/* ---- transfers ---- */

static void on_transferred(int status, const PGresult *res, const char *err, void *ud);

/* Sends one actor.transfer of the shards listed (from/epochs per shard) to `to`. */
static void transfer(actor_svc_t *svc, xfer_kind_t kind, const char *to, const int *shards,
                     char (*from)[128], const int64_t *epochs, int n)
{
    wy_buf_t bs = WY_BUF_INIT, bf = WY_BUF_INIT, be = WY_BUF_INIT;
    for (int i = 0; i < n; i++) {
        wy_buf_printf(&bs, "%c%d", i ? ',' : '{', shards[i]);
        wy_buf_printf(&be, "%c%lld", i ? ',' : '{', (long long)epochs[i]);
        wy_buf_putc(&bf, i ? ',' : '{');
        wy_buf_putc(&bf, '"');
        for (const char *c = from[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                wy_buf_putc(&bf, '\\');
            wy_buf_putc(&bf, *c);
        }
        wy_buf_putc(&bf, '"');
    }
    wy_buf_putc(&bs, '}');
    wy_buf_putc(&bf, '}');
    wy_buf_putc(&be, '}');
    xfer_t *x = wy_calloc(1, sizeof *x);
    x->svc = svc;
    x->kind = kind;
    x->n = n;
    snprintf(x->to, sizeof x->to, "%s", to);
    const char *p[] = {bs.data, bf.data, be.data, to};
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    svc->busy++;
    actor_svc_ref(svc);
    if (kind != XFER_RELEASE)
        svc->xfers++;
    int rc = pg ? wy_pg_exec(pg, &sql_transfer, p, on_transferred, x) : WY_EUNAVAIL;
    wy_buf_free(&bs);
    wy_buf_free(&bf);
    wy_buf_free(&be);
    if (rc != WY_OK)
        on_transferred(rc, NULL, "PostgreSQL unavailable", x);
}

/* Gives every shard we hold back (to nobody): at a graceful stop, so that the others take
 * them at their next view instead of after our lease. */
static void release_all(actor_svc_t *svc)
{
    xfer_list_t l = {.from = wy_calloc(ACTOR_SHARDS, sizeof *l.from)};
    for (int s = 0; s < ACTOR_SHARDS; s++) {
        if (svc->epoch[s] > 0) {
            xfer_list_add(&l, s, me(svc), svc->epoch[s]);
            svc->epoch[s] = 0;
        }
    }
    count_shards(svc);
    if (l.n)
        transfer(svc, XFER_RELEASE, "", l.shard, l.from, l.epoch, l.n);
    wy_free(l.from);
}

static void on_transferred(int status, const PGresult *res, const char *err, void *ud)
{
    xfer_t *x = ud;
    actor_svc_t *svc = x->svc;
    svc->busy--;
    int moved = 0;
    if (status != WY_OK) {
        wy_log_warn("shard transfer failed; the next view retries", "to", x->to, "error", err,
                    NULL);
    } else {
        for (int i = 0; i < PQntuples(res); i++) {
            int64_t s = wy_pg_int64(res, i, "shard");
            if (s < 0 || s >= ACTOR_SHARDS)
                continue;
            moved++;
            if (x->kind == XFER_TAKE) {
                svc->epoch[s] = wy_pg_int64(res, i, "epoch");
                svc->owner[s] = NULL;
            }
        }
        char n[16], asked[16];
        snprintf(n, sizeof n, "%d", moved);
        snprintf(asked, sizeof asked, "%d", x->n);
        if (x->kind == XFER_TAKE && moved) {
            wy_metric_add(svc->m_takeovers, moved);
            wy_log_info("shards taken", "count", n, "asked", asked, NULL);
        } else if (x->kind == XFER_HAND && moved) {
            wy_log_info("shards handed off", "count", n, "to", x->to, NULL);
        } else if (x->kind == XFER_RELEASE) {
            wy_log_info("shards released", "count", n, NULL);
        }
    }
    if (x->kind != XFER_RELEASE) {
        count_shards(svc);
        if (x->kind == XFER_TAKE && svc->stopping)
            release_all(svc); /* taken while stopping: give them back at once */
        else if (x->kind == XFER_TAKE && moved)
            actor_store_shards_gained(svc);
        if (--svc->xfers == 0)
            view_end(svc);
    }
    wy_free(x);
    actor_svc_unref(svc);
}

/* ---- the view ---- */

typedef struct {
    const char *name; /* into the result */
    uint64_t h;
    actor_peer_t *peer; /* NULL for us */
} live_t;

static void on_view(int status, const PGresult *res, const char *err, void *ud)
{
    actor_svc_t *svc = ud;
    svc->busy--;
    if (svc->stopping) {
        svc->view_running = false;
        actor_svc_unref(svc);
        return;
    }
    if (status != WY_OK) {
        wy_log_warn("ownership view failed; retrying", "error", err, NULL);
        view_end(svc);
        actor_svc_unref(svc);
        return;
    }
    svc->lease_ok_until = svc->view_sent_ms + svc->cfg->lease_ms;
    int rows = PQntuples(res);
    /* The live instances: us, then every other one. */
    live_t *live = wy_calloc((size_t)rows + 1, sizeof *live);
    size_t n_live = 0;
    live[n_live++] = (live_t){me(svc), name_hash(me(svc)), NULL};
    wy_map_iter_t it;
    wy_map_iter_init(&it, svc->peers);
    while (wy_map_next(&it))
        ((actor_peer_t *)it.val)->live = false;
    for (int i = 0; i < rows; i++) {
        if (wy_pg_int64(res, i, "kind") != 1)
            continue;
        actor_peer_t *p = peer_get(svc, wy_pg_text(res, i, "instance"), wy_pg_text(res, i, "addr"));
        live[n_live++] = (live_t){p->name, name_hash(p->name), p};
    }
    bool lost[ACTOR_SHARDS] = {0}, any_lost = false;
    int n_lost = 0, n_due = 0;
    xfer_list_t *take = wy_calloc(1, sizeof *take), *hand = wy_calloc(1, sizeof *hand);
    take->from = wy_calloc(ACTOR_SHARDS, sizeof *take->from);
    hand->from = wy_calloc(ACTOR_SHARDS, sizeof *hand->from);
    live_t *hand_to[ACTOR_SHARDS];
    for (int i = 0; i < rows; i++) {
        int64_t s64 = wy_pg_int64(res, i, "shard");
        if (wy_pg_int64(res, i, "kind") != 0 || s64 < 0 || s64 >= ACTOR_SHARDS)
            continue;
        int s = (int)s64;
        const char *owner = wy_pg_text(res, i, "instance");
        int64_t epoch = wy_pg_int64(res, i, "epoch");
        bool alive = !strcmp(wy_pg_text(res, i, "alive"), "t");
        bool mine = !strcmp(owner, me(svc));
        bool held = svc->epoch[s] > 0 && mine && epoch == svc->epoch[s];
        if (svc->epoch[s] > 0 && !held) {
            svc->epoch[s] = 0; /* taken from us while we were away */
            lost[s] = any_lost = true;
            n_lost++;
        }
        live_t *want = &live[0];
        uint64_t best = score(live[0].h, s);
        for (size_t k = 1; k < n_live; k++) {
            uint64_t sc = score(live[k].h, s);
            if (sc > best || (sc == best && strcmp(live[k].name, want->name) < 0)) {
                best = sc;
                want = &live[k];
            }
        }
        svc->owner[s] = NULL;
        n_due += !want->peer;
        if (held && want->peer) {
            /* An instance joined that should have it: stop writing it now, hand it over. */
            svc->epoch[s] = 0;
            lost[s] = any_lost = true;
            svc->owner[s] = want->peer;
            hand_to[hand->n] = want;
            xfer_list_add(hand, s, me(svc), epoch);
        } else if (!held && (mine || ((!owner[0] || !alive) && !want->peer))) {
            /* Ours by right and its owner is gone (or it is us: a restart, a hand-off to
             * us): take it, which fences whoever held it. */
            xfer_list_add(take, s, owner, epoch);
        } else if (!held && owner[0] && alive) {
            svc->owner[s] = wy_map_get_str(svc->peers, owner);
        }
    }
    svc->shards_due = n_due;
    if (n_lost) {
        char n[16];
        snprintf(n, sizeof n, "%d", n_lost);
        wy_log_warn("shards lost: another instance took them over", "count", n, NULL);
    }
    peers_prune(svc);
    if (any_lost)
        actor_store_shards_lost(svc, lost);
    count_shards(svc);
    /* The transfers; the view ends when the last one answered. */
    svc->xfers = 1; /* this function */
    if (take->n)
        transfer(svc, XFER_TAKE, me(svc), take->shard, take->from, take->epoch, take->n);
    bool done[ACTOR_SHARDS] = {0};
    for (int i = 0; i < hand->n; i++) {
        if (done[i])
            continue;
        xfer_list_t one = {.from = take->from}; /* take's names are sent already: reuse */
        for (int k = i; k < hand->n; k++) {
            if (!done[k] && hand_to[k] == hand_to[i]) {
                done[k] = true;
                xfer_list_add(&one, hand->shard[k], me(svc), hand->epoch[k]);
            }
        }
        transfer(svc, XFER_HAND, hand_to[i]->name, one.shard, one.from, one.epoch, one.n);
    }
    wy_free(take->from);
    wy_free(hand->from);
    wy_free(take);
    wy_free(hand);
    wy_free(live);
    if (--svc->xfers == 0)
        view_end(svc);
    actor_svc_unref(svc);
}

static void view_end(actor_svc_t *svc)
{
    svc->view_running = false;
    if (svc->stopping)
        return;
    if (!svc->claimed) {
        svc->claimed = true;
        svc->first_view_ms = (int64_t)wy_now_ms();
        wy_log_info("ownership view done", NULL);
        actor_store_shards_gained(svc);
    }
    wy_daemon_ready_check(svc->d);
    if (svc->view_again) {
        svc->view_again = false;
        actor_owners_poke(svc);
    }
}

static void run_view(actor_svc_t *svc)
{
    if (svc->stopping)
        return;
    if (svc->view_running) {
        svc->view_again = true;
        return;
    }
    if (!svc->addr[0]) {
        const char *host = svc->cfg->advertise_host && *svc->cfg->advertise_host
                               ? svc->cfg->advertise_host
                               : wy_daemon_bind_host(svc->d);
        char hn[128];
        if (!strcmp(host, "0.0.0.0") || !*host) {
            if (gethostname(hn, sizeof hn) != 0)
                snprintf(hn, sizeof hn, "127.0.0.1");
            hn[sizeof hn - 1] = 0;
            host = hn;
        }
        snprintf(svc->addr, sizeof svc->addr, "%s:%d", host, wy_daemon_grpc_port(svc->d));
    }
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    char lease[24];
    snprintf(lease, sizeof lease, "%lld", (long long)svc->cfg->lease_ms);
    const char *p[] = {me(svc), svc->addr, lease};
    svc->view_sent_ms = (int64_t)wy_now_ms();
    svc->last_view_ms = svc->view_sent_ms;
    if (!pg || wy_pg_exec(pg, &sql_view, p, on_view, svc) != WY_OK)
        return; /* the next tick retries */
    svc->view_running = true;
    svc->busy++;
    actor_svc_ref(svc);
}

static void on_tick(uv_timer_t *t)
{
    run_view(t->data);
}

bool actor_owners_settled(actor_svc_t *svc)
{
    if (svc->settled || !svc->claimed)
        return svc->settled;
    int held = 0;
    for (int s = 0; s < ACTOR_SHARDS; s++)
        held += svc->epoch[s] > 0;
    /* Every shard due to us is ours (a join waits for the hand-offs, about two views), or
     * a lease has passed since the first view (an owner that never hands off is not
     * waited for). */
    svc->settled =
        held >= svc->shards_due || (int64_t)wy_now_ms() - svc->first_view_ms > svc->cfg->lease_ms;
    return svc->settled; /* once settled, a later takeover does not make it unready */
}

void actor_owners_poke(actor_svc_t *svc)
{
    if (svc->stopping)
        return;
    if (svc->view_running) {
        svc->view_again = true;
        return;
    }
    int64_t wait = svc->last_view_ms + VIEW_MIN_GAP_MS - (int64_t)wy_now_ms();
    uv_timer_start(&svc->claim_timer, on_tick, wait > 0 ? (uint64_t)wait : 0,
                   (uint64_t)svc->cfg->heartbeat_ms);
}

void actor_owners_start(actor_svc_t *svc)
{
    svc->peers = wy_map_new(0);
    /* The gRPC port is known once start() returned: the first view runs from the loop. */
    uv_timer_start(&svc->claim_timer, on_tick, 0, (uint64_t)svc->cfg->heartbeat_ms);
}

static void on_left(int status, const PGresult *res, const char *err, void *ud)
{
    (void)res;
    actor_svc_t *svc = ud;
    svc->busy--;
    if (status != WY_OK)
        wy_log_warn("lease release failed (the others wait for its expiry)", "error", err, NULL);
    actor_svc_unref(svc);
}

void actor_owners_stop(actor_svc_t *svc)
{
    uv_timer_stop(&svc->claim_timer);
    release_all(svc);
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    const char *p[] = {me(svc)};
    if (pg && wy_pg_exec(pg, &sql_leave, p, on_left, svc) == WY_OK) {
        svc->busy++;
        actor_svc_ref(svc);
    }
    /* Forwards in flight are cancelled (answered UNAVAILABLE): the runtime closes after. */
    if (svc->peers) {
        wy_map_iter_t it;
        wy_map_iter_init(&it, svc->peers);
        while (wy_map_next(&it)) {
            actor_peer_t *peer = it.val;
            if (peer->ch)
                wy_grpc_channel_close(peer->ch);
            peer->ch = NULL;
        }
    }
    memset(svc->owner, 0, sizeof svc->owner);
}

void actor_owners_free(actor_svc_t *svc)
{
    if (!svc->peers)
        return;
    wy_map_iter_t it;
    wy_map_iter_init(&it, svc->peers);
    while (wy_map_next(&it)) {
        wy_map_iter_del(&it);
        peer_free(it.val);
    }
    wy_map_free(svc->peers);
    svc->peers = NULL;
}
