/* wy-actor: persistent NPCs come to exist (proto/actor.proto, CreateNpc). Through gRPC (an
 * operator) or from WY_ACTOR_NPCS_FILE at start (every instance, once its shards are
 * settled: the NPC id is the idempotency key, so repeats change nothing). The owner of the
 * NPC id's shard writes its first event (npc_created, seq 1) in one statement with the
 * shard's fence; an id already taken (the NPC exists, or a character has it) writes nothing.
 * Either way the answer is the actor as it is, read through the store. A request for a shard
 * another instance owns is forwarded to it once (forward.c's mark). Loop thread. */
#include "actor.h"
#include "wy_buf.h"
#include "wy_log.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define MD_HOP        "wy-actor-forwarded-by" /* forward.c's mark */
#define NPCS_MAX      4096                    /* NPCs in WY_ACTOR_NPCS_FILE */
#define SEED_RETRY_MS 1000
#define SEED_TRIES    60

/* The fence of the shard and the first event, unless the id has one (ON CONFLICT: an NPC
 * created before, or a character). */
static const wy_pg_stmt_t sql_npc_create = {
    "actor_npc_create",
    "WITH fence AS (SELECT actor.fence($1::int[], $2::bigint[], $3) AS ok), "
    "ins AS (INSERT INTO actor.events (actor_id, seq, epoch, event_id, type, payload) "
    "SELECT $4::uuid, 1, ($2::bigint[])[1], $5::uuid, 'npc_created', $6::bytea FROM fence "
    "ON CONFLICT DO NOTHING RETURNING 1) "
    "SELECT count(*) AS created FROM ins",
    6};

typedef void (*npc_done_cb)(void *ud, int status, const char *msg,
                            const Wyvern__Actor__Character *c);

typedef struct {
    actor_svc_t *svc;
    actor_req_t read; /* the answer: the actor as it is */
    char id[ACTOR_ID_LEN + 1];
    npc_done_cb done;
    void *ud;
} npc_op_t;

static void op_end(npc_op_t *op, int status, const char *msg, const Wyvern__Actor__Character *c)
{
    actor_svc_t *svc = op->svc;
    op->done(op->ud, status, msg, c);
    wy_free(op);
    svc->busy--;
    actor_svc_unref(svc);
}

static void on_read(actor_req_t *r, int status, const char *msg,
                    const Wyvern__Actor__ApplyResponse *res)
{
    npc_op_t *op = r->ud;
    const Wyvern__Actor__Character *c = status == WY_OK ? res->character : NULL;
    if (c && !c->npc) /* the id is a character's */
        op_end(op, WY_EEXIST, "npc_id is a character", NULL);
    else
        op_end(op, status, msg, c);
}

static void read_back(npc_op_t *op)
{
    op->read.read_only = true;
    op->read.forwarded = true; /* ours, or moving: the caller retries */
    op->read.done = on_read;
    op->read.ud = op;
    actor_store_submit(op->svc, op->id, &op->read);
}

static void on_created(int status, const PGresult *res, const char *err, void *ud)
{
    npc_op_t *op = ud;
    if (status != WY_OK) {
        bool fenced = res && !strcmp(wy_pg_sqlstate(res), "WYF01");
        if (fenced) {
            wy_metric_inc(op->svc->m_fenced);
            actor_owners_poke(op->svc);
        }
        op_end(op, WY_EUNAVAIL,
               fenced ? "the NPC's shard moved to another instance; retry"
                      : (err && *err ? err : "PostgreSQL unavailable; retry"),
               NULL);
        return;
    }
    if (wy_pg_int64(res, 0, "created") == 1) {
        if (op->svc->cfg->audit_log)
            wy_log_info("actor event", "actor", op->id, "seq", "1", "type", "npc_created", NULL);
        actor_publish_wake(op->svc);
    }
    read_back(op);
}

/* The owner of its shard answers. */
static void on_forwarded(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    (void)status;
    npc_op_t *op = arg;
    if (err != WY_OK)
        op_end(op, actor_forward_failed(op->svc, err),
               message && *message ? message : "owner instance unreachable; retry", NULL);
    else
        op_end(op, WY_OK, NULL, (const Wyvern__Actor__Character *)resp);
}

static void forward(npc_op_t *op, actor_peer_t *p, const Wyvern__Actor__CreateNpcRequest *in)
{
    actor_svc_t *svc = op->svc;
    wy_grpc_md_t md[1] = {{MD_HOP, wy_daemon_instance(svc->d)}};
    if ((!p->ch &&
         wy_grpc_channel_new(wy_daemon_grpc_rt(svc->d), p->addr, NULL, &p->ch) != WY_OK) ||
        wy_grpc_call(p->ch, "/wyvern.actor.Actor/CreateNpc", &in->base,
                     &wyvern__actor__character__descriptor, (unsigned)svc->cfg->forward_ms, md, 1,
                     on_forwarded, op) != WY_OK) {
        op_end(op, WY_EUNAVAIL, "owner instance unreachable; retry", NULL);
        return;
    }
    wy_metric_inc(svc->m_forwarded);
}

/* Creates the NPC of a checked request; done(ud, ...) answers exactly once, possibly before
 * this returns. */
static void npc_create(actor_svc_t *svc, const Wyvern__Actor__CreateNpcRequest *in, bool forwarded,
                       npc_done_cb done, void *ud)
{
    npc_op_t *op = wy_calloc(1, sizeof *op);
    op->svc = svc;
    op->done = done;
    op->ud = ud;
    snprintf(op->id, sizeof op->id, "%s", in->npc_id);
    svc->busy++;
    actor_svc_ref(svc);
    int shard = actor_shard(op->id);
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    if (svc->stopping || !pg) {
        op_end(op, WY_EUNAVAIL, "wy-actor is stopping", NULL);
        return;
    }
    if (svc->epoch[shard] == 0) {
        actor_peer_t *p = svc->owner[shard];
        if (p && p->live && !forwarded) {
            forward(op, p, in);
            return;
        }
        actor_owners_poke(svc);
        op_end(op, WY_EUNAVAIL, "no live owner for the NPC's shard right now; retry", NULL);
        return;
    }
    actor_event_t ev;
    actor_event_npc_created(in, (int64_t)wy_wall_ms(), &ev);
    char shard_s[16], epoch_s[32], event_id[37];
    snprintf(shard_s, sizeof shard_s, "{%d}", shard);
    snprintf(epoch_s, sizeof epoch_s, "{%lld}", (long long)svc->epoch[shard]);
    wy_uuid4(event_id);
    wy_buf_t payload = WY_BUF_INIT;
    wy_buf_puts(&payload, "\\x");
    for (size_t i = 0; i < ev.len; i++)
        wy_buf_printf(&payload, "%02x", ev.data[i]);
    wy_free(ev.data);
    const char *prm[] = {shard_s, epoch_s,  wy_daemon_instance(svc->d),
                         op->id,  event_id, payload.data};
    int rc = wy_pg_exec(pg, &sql_npc_create, prm, on_created, op);
    wy_buf_free(&payload);
    if (rc != WY_OK)
        op_end(op, WY_EUNAVAIL, "PostgreSQL unavailable; retry", NULL);
}

/* ---- gRPC CreateNpc ---- */

static void on_rpc_done(void *ud, int status, const char *msg, const Wyvern__Actor__Character *c)
{
    wy_grpc_call_id_t *call = ud;
    if (status != WY_OK)
        wy_grpc_reply_error(*call, status, msg);
    else
        wy_grpc_reply(*call, &c->base);
    wy_free(call);
}

void actor_rpc_create_npc(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    const Wyvern__Actor__CreateNpcRequest *in = (const Wyvern__Actor__CreateNpcRequest *)req;
    actor_svc_t *svc = wy_daemon_state(arg);
    if (!svc || svc->stopping) {
        wy_grpc_reply_error(call, WY_EUNAVAIL, "wy-actor is stopping");
        return;
    }
    const char *why = NULL;
    if (actor_npc_check_request(in, &why) != WY_OK) {
        wy_grpc_reply_error(call, WY_EINVAL, why);
        return;
    }
    const char *v;
    size_t len;
    bool forwarded = wy_grpc_call_metadata(call, MD_HOP, &v, &len) == WY_OK;
    wy_grpc_call_id_t *held = wy_malloc(sizeof *held);
    *held = call;
    npc_create(svc, in, forwarded, on_rpc_done, held);
}

/* ---- from data: WY_ACTOR_NPCS_FILE ---- */

/* The NPCs of the file, each a packed CreateNpcRequest (checked). */
struct actor_npc_defs {
    size_t n;
    uint8_t **packed;
    size_t *len;
};

static int def_error(const char **err, const char *file, size_t i, const char *why)
{
    static char msg[512];
    snprintf(msg, sizeof msg, "WY_ACTOR_NPCS_FILE: %.200s: npcs[%zu]: %.200s", file, i, why);
    *err = msg;
    return WY_EINVAL;
}

/* One entry {id, kind, name, zone, x, y, z, respawn_ms, stock: {item: count}} packed. */
static int def_pack(json_t *o, const char *file, size_t i, struct actor_npc_defs *d,
                    const char **err)
{
    Wyvern__Actor__CreateNpcRequest in = WYVERN__ACTOR__CREATE_NPC_REQUEST__INIT;
    Wyvern__Actor__Position pos = WYVERN__ACTOR__POSITION__INIT;
    Wyvern__Actor__ItemStack st[ACTOR_NPC_STOCK_MAX], *stp[ACTOR_NPC_STOCK_MAX];
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *kind = json_string_value(json_object_get(o, "kind"));
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *zone = json_string_value(json_object_get(o, "zone"));
    json_t *stock = json_object_get(o, "stock");
    if (!json_is_object(o) || !id || !kind || !name || !zone)
        return def_error(err, file, i, "an object with strings id, kind, name and zone");
    if (stock && (!json_is_object(stock) || json_object_size(stock) > ACTOR_NPC_STOCK_MAX))
        return def_error(err, file, i, "stock: an object of at most 64 item: count");
    in.npc_id = (char *)id;
    in.kind = (char *)kind;
    in.name = (char *)name;
    pos.zone = (char *)zone;
    pos.x = (float)json_number_value(json_object_get(o, "x"));
    pos.y = (float)json_number_value(json_object_get(o, "y"));
    pos.z = (float)json_number_value(json_object_get(o, "z"));
    in.position = &pos;
    in.respawn_ms = json_integer_value(json_object_get(o, "respawn_ms"));
    const char *item;
    json_t *count;
    json_object_foreach(stock, item, count)
    {
        json_int_t c = json_integer_value(count);
        wyvern__actor__item_stack__init(&st[in.n_stock]);
        st[in.n_stock].item = (char *)item;
        st[in.n_stock].count = c > 0 && c <= ACTOR_MAX_ITEM_MOVE ? (uint32_t)c : 0;
        stp[in.n_stock] = &st[in.n_stock];
        in.n_stock++;
    }
    in.stock = stp;
    const char *why = NULL;
    if (actor_npc_check_request(&in, &why) != WY_OK)
        return def_error(err, file, i, why);
    d->len[i] = wyvern__actor__create_npc_request__get_packed_size(&in);
    d->packed[i] = wy_malloc(d->len[i] ? d->len[i] : 1);
    wyvern__actor__create_npc_request__pack(&in, d->packed[i]);
    d->n = i + 1;
    return WY_OK;
}

int actor_npcs_configure(void *cfg, const char **err)
{
    actor_cfg_t *c = cfg;
    static char msg[512];
    actor_npcs_unconfigure(c);
    if (!c->npcs_file || !*c->npcs_file)
        return WY_OK;
    json_error_t je;
    json_t *root = json_load_file(c->npcs_file, 0, &je);
    json_t *arr = root ? json_object_get(root, "npcs") : NULL;
    if (!root || !json_is_array(arr) || json_array_size(arr) > NPCS_MAX) {
        snprintf(msg, sizeof msg, "WY_ACTOR_NPCS_FILE: %.200s: %.200s", c->npcs_file,
                 root ? "want {\"npcs\": [...]} with at most 4096 NPCs" : je.text);
        *err = msg;
        json_decref(root);
        return WY_EINVAL;
    }
    struct actor_npc_defs *d = wy_calloc(1, sizeof *d);
    size_t n = json_array_size(arr);
    d->packed = wy_calloc(n ? n : 1, sizeof *d->packed);
    d->len = wy_calloc(n ? n : 1, sizeof *d->len);
    c->npcs = d;
    int rc = WY_OK;
    for (size_t i = 0; rc == WY_OK && i < n; i++)
        rc = def_pack(json_array_get(arr, i), c->npcs_file, i, d, err);
    json_decref(root);
    return rc;
}

void actor_npcs_unconfigure(void *cfg)
{
    actor_cfg_t *c = cfg;
    struct actor_npc_defs *d = c->npcs;
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        wy_free(d->packed[i]);
    wy_free(d->packed);
    wy_free(d->len);
    wy_free(d);
    c->npcs = NULL;
}

/* The seeding: once this instance's shards are settled, every NPC of the file is created
 * (forwarded to its owner when the shard is another's); an UNAVAILABLE answer (ownership
 * moving) is retried every second, SEED_TRIES times. */
struct actor_npc_seed {
    actor_svc_t *svc;
    uv_timer_t timer;
    bool closing;
    int pending;    /* creates in flight */
    uint8_t *tries; /* per NPC: attempts so far; 255 = done */
    size_t created, failed;
};

static void seed_maybe_free(actor_npc_seed_t *s)
{
    if (!s->closing || s->pending)
        return;
    actor_svc_t *svc = s->svc;
    wy_free(s->tries);
    wy_free(s);
    actor_svc_unref(svc);
}

typedef struct {
    actor_npc_seed_t *seed;
    size_t i;
} seed_op_t;

static void on_seeded(void *ud, int status, const char *msg, const Wyvern__Actor__Character *c)
{
    (void)c;
    seed_op_t *o = ud;
    actor_npc_seed_t *s = o->seed;
    size_t i = o->i;
    wy_free(o);
    s->pending--;
    if (status == WY_OK) {
        s->tries[i] = 255;
        s->created++;
    } else if (status != WY_EUNAVAIL || s->tries[i] >= SEED_TRIES) {
        s->tries[i] = 255;
        s->failed++;
        char n[24];
        snprintf(n, sizeof n, "%zu", i);
        wy_log_warn("NPC from WY_ACTOR_NPCS_FILE not created", "npc", n, "error", msg, NULL);
    }
    if (s->pending == 0 && !s->closing) {
        const actor_cfg_t *cfg = s->svc->cfg;
        bool left = false;
        for (size_t k = 0; k < cfg->npcs->n; k++)
            left = left || s->tries[k] != 255;
        if (!left) {
            uv_timer_stop(&s->timer);
            char made[24];
            snprintf(made, sizeof made, "%zu", s->created);
            wy_log_info("NPCs from WY_ACTOR_NPCS_FILE in place", "npcs", made, NULL);
        }
    }
    seed_maybe_free(s);
}

static void on_seed_tick(uv_timer_t *t)
{
    actor_npc_seed_t *s = t->data;
    actor_svc_t *svc = s->svc;
    const struct actor_npc_defs *d = svc->cfg->npcs;
    if (svc->stopping || s->pending || !actor_owners_settled(svc))
        return;
    for (size_t i = 0; i < d->n; i++) {
        if (s->tries[i] == 255)
            continue;
        Wyvern__Actor__CreateNpcRequest *in =
            wyvern__actor__create_npc_request__unpack(NULL, d->len[i], d->packed[i]);
        s->tries[i]++;
        seed_op_t *o = wy_malloc(sizeof *o);
        o->seed = s;
        o->i = i;
        s->pending++;
        npc_create(svc, in, false, on_seeded, o);
        wyvern__actor__create_npc_request__free_unpacked(in, NULL);
    }
    uv_timer_set_repeat(&s->timer, SEED_RETRY_MS);
}

static void on_seed_closed(uv_handle_t *h)
{
    seed_maybe_free(h->data);
}

void actor_npcs_start(actor_svc_t *svc)
{
    if (!svc->cfg->npcs || !svc->cfg->npcs->n)
        return;
    actor_npc_seed_t *s = wy_calloc(1, sizeof *s);
    s->svc = svc;
    s->tries = wy_calloc(svc->cfg->npcs->n, 1);
    actor_svc_ref(svc);
    uv_timer_init(svc->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_seed_tick, 200, 200); /* until settled, then every second */
    svc->npc_seed = s;
}

void actor_npcs_stop(actor_svc_t *svc)
{
    actor_npc_seed_t *s = svc->npc_seed;
    if (!s || s->closing)
        return;
    s->closing = true;
    svc->npc_seed = NULL;
    uv_close((uv_handle_t *)&s->timer, on_seed_closed);
}
