/* wy-actor: characters as event-sourced actors. The daemon's shape and state (actor.c),
 * the event store with its resident actors and group commit (store.c), the gRPC
 * handlers (handlers_grpc.c) and the pure character logic (character.h). Everything
 * here runs on the loop thread. */
#ifndef ACTOR_H
#define ACTOR_H

#include "wy_daemon.h"
#include "wy_grpc.h"
#include "wy_kafka.h"
#include "wy_list.h"
#include "wy_map.h"
#include "wy_metrics.h"
#include "wy_redis.h"
#include "character.h"

extern const wy_daemon_spec_t actor_daemon_spec;

/* Configuration (WY_ACTOR_*), filled by the daemon (actor_daemon_spec.config_size) and
 * owned by it; svc->cfg points at it. See actor.c for the table. */
typedef struct {
    int64_t snapshot_every;    /* events between snapshots of one actor */
    int64_t snapshot_keep;     /* snapshots kept per actor */
    int64_t batch_max;         /* commands per group-commit transaction */
    int64_t write_batches;     /* group-commit transactions in flight */
    int64_t apply_batch_max;   /* commands per ApplyBatch call */
    int64_t max_resident;      /* actors held in memory */
    int64_t max_queue;         /* commands waiting on one actor */
    int64_t max_characters;    /* characters (not deleted) per account */
    int64_t restore_window_ms; /* how long a deleted character can be restored */
    int64_t lease_ms;          /* instance lease: dead after this long without a heartbeat */
    int64_t heartbeat_ms;      /* lease renewal and ownership view period */
    int64_t forward_ms;        /* deadline of a request forwarded to the owner */
    char *advertise_host;      /* host other instances reach our gRPC server on */
    bool prune_events;         /* delete events below the oldest kept snapshot */
    bool audit_log;            /* one JSON log line per committed event */
    int64_t txn_timeout_ms;    /* a cross-actor transaction's wait for its characters */
    int64_t rank_check_ms;     /* how often the rankings' presence in Redis is checked */
    int64_t txn_attempts_retention_ms; /* retention.c: age of a txn_attempts row to delete */
    int64_t txn_attempts_sweep_ms;     /* how often the sweep runs */
    int64_t txn_attempts_batch;        /* rows deleted per statement */
    char *npcs_file;                   /* npc_create.c: NPCs created at start ("" = none) */
    struct actor_npc_defs *npcs;       /* its NPCs, loaded by the spec's configure */
} actor_cfg_t;

typedef struct actor_npc_seed actor_npc_seed_t;

typedef struct actor_retention actor_retention_t;

typedef struct actor actor_t;
typedef struct actor_batch actor_batch_t;

/* Another instance, as seen in actor.instances: where to forward requests for the shards
 * it owns. The gRPC channel is opened on first use. Owned by svc->peers. */
typedef struct {
    char name[128];
    char addr[128];
    wy_grpc_channel_t *ch;
    bool live; /* in the latest ownership view */
} actor_peer_t;

/* The service's state (wy_daemon_state). Freed when the last reference goes: stop()
 * drops the first, every PostgreSQL operation in flight and every open uv handle hold
 * one, so a late callback never touches freed memory. */
typedef struct {
    wy_daemon_t *d;
    const actor_cfg_t *cfg; /* wy_daemon_config(d) */
    uv_loop_t *loop;
    int refs;
    bool stopping;
    size_t busy;        /* operations in flight: loads, batches, creates, lists */
    wy_map_t *resident; /* actor id (text) -> actor_t */
    size_t n_resident;
    wy_list_t idle;          /* resident, nothing queued or in flight; LRU order */
    wy_list_t ready;         /* commands queued, no batch in flight */
    wy_list_t claim_waiters; /* creates waiting for the shard claim */
    unsigned batches;        /* group commits in flight */
    uv_check_t flush;        /* end of a loop turn: write what arrived */
    uv_timer_t claim_timer;  /* the ownership view: heartbeat, takeover, hand-off */
    bool claimed;            /* the first ownership view is done */
    bool view_running;       /* a view (or its transfers) is in flight */
    bool view_again;         /* run another view as soon as this one ends */
    int xfers;               /* transfers of the running view in flight (+1 while it runs) */
    int shards_due;          /* shards that should be ours, as of the latest view */
    bool settled;            /* ready: see actor_owners_settled */
    int64_t first_view_ms;   /* wy_now_ms() the first view ended */
    int64_t view_sent_ms, last_view_ms; /* wy_now_ms() the running / latest view was sent */
    int64_t lease_ok_until;             /* wy_now_ms(): our lease is surely valid until then */
    int64_t epoch[ACTOR_SHARDS];        /* per shard, from our claim; 0 = not ours */
    actor_peer_t *owner[ACTOR_SHARDS];  /* the other instance owning it, or NULL */
    wy_map_t *peers;                    /* name -> actor_peer_t */
    char addr[160];                     /* our gRPC address, as advertised */
    wy_metric_t *m_resident, *m_batch_size, *m_load_events;
    wy_metric_t *m_cmd_ok, *m_cmd_replayed, *m_cmd_refused, *m_cmd_failed;
    wy_metric_t *m_snapshots, *m_shards, *m_takeovers, *m_fenced, *m_forwarded;
    wy_metric_t *m_gp_applied, *m_gp_duplicate, *m_gp_refused, *m_gp_invalid, *m_gp_retried;
    wy_metric_t *m_gp_lag; /* producer timestamp -> effect committed */
    wy_list_t gameplay;    /* gameplay events being applied (gameplay.c) */
    uv_timer_t gp_timer;   /* their retries */
    uv_timer_t pub_timer;  /* the wy.actor publisher (publish.c) */
    bool pub_running, pub_woken;
    wy_metric_t *m_published, *m_publish_failed;
    /* txn_remote.c: attempt id -> its hold of a remote side (made on first use) */
    wy_map_t *rholds;
    wy_redis_script_t *rank_script; /* rankings.c: CharacterRank's, made on first use */
    actor_retention_t *retention;   /* retention.c: the txn_attempts sweep, until stopped */
    actor_npc_seed_t *npc_seed;     /* npc_create.c: NPCs of WY_ACTOR_NPCS_FILE, until stopped */
} actor_svc_t;

void actor_svc_ref(actor_svc_t *svc);
void actor_svc_unref(actor_svc_t *svc);

/* ---- requests to the store ---- */

typedef struct actor_req actor_req_t;

/* The answer to a request, on the loop, exactly once (possibly from inside the submit
 * call). status WY_OK: res is the response, res->character the state right after the
 * request; res and everything it points to are valid during the call only. Otherwise
 * msg says why (never NULL). The caller owns r and may free it in the callback. */
typedef void (*actor_done_cb)(actor_req_t *r, int status, const char *msg,
                              const Wyvern__Actor__ApplyResponse *res);

struct actor_req {
    /* Set by the caller: */
    actor_cmd_t cmd;
    bool read_only;              /* a read (Get): answers the state, writes nothing */
    bool hold;                   /* a hold for a cross-actor transaction (actor_store_hold) */
    char key[ACTOR_KEY_MAX + 1]; /* idempotency key; "" = none (Delete, Restore) */
    /* Optional: the account that must own the character (else refused WY_EPERM, recorded
     * under the key like any refusal); "" = any. */
    char account[ACTOR_ID_LEN + 1];
    /* Optional: a consumed Kafka event id, written to actor.wy_consumed in the transaction
     * of the command's effect; "" = none. */
    char consumed[ACTOR_KEY_MAX + 1];
    bool forwarded; /* came from another instance: never forwarded again */
    actor_done_cb done;
    void *ud;
    /* The store's own: */
    wy_list_t node;
    actor_t *actor;
    actor_req_t *dup_of; /* an earlier request of the same batch with the same key */
    int status;
    char msg[160];
    uint8_t *result; /* packed ApplyResponse (NULL for a consumed command: answered bare) */
    uint64_t seq;    /* the actor's seq right after the command */
    size_t result_len;
    bool replayed;
};

/* A new character (CreateCharacter). The caller fills the strings (already checked)
 * and req.done/ud; the answer's res->character is the new (or, for a retried create
 * key, the existing) character. */
typedef struct {
    actor_req_t req;
    char account_id[ACTOR_ID_LEN + 1];
    char name[ACTOR_NAME_MAX + 1];
    char *name_key; /* owned by the create (wy_free'd when answered) */
    char class_name[ACTOR_CLASS_MAX + 1];
    char key[ACTOR_KEY_MAX + 1]; /* create key, "" = none */
    /* The store's own: */
    wy_list_t node;
    actor_svc_t *svc;
    wy_pg_tx_t *tx;
    char actor_id[ACTOR_ID_LEN + 1];
    char event_id[37]; /* of the created event */
    int fail;
    char fail_msg[160];
    actor_event_t ev;
} actor_create_t;

/* List of an account's character ids, oldest first (ids[0..n), valid during the call);
 * status WY_OK or WY_EUNAVAIL. */
typedef void (*actor_ids_cb)(int status, char (*ids)[ACTOR_ID_LEN + 1], size_t n, void *ud);

/* ---- store.c ---- */

/* Sets up the resident map and lists, the end-of-turn flush and claims the shards. */
void actor_store_start(actor_svc_t *svc);
/* No new work: queued requests are answered UNAVAILABLE; writes in flight finish. */
void actor_store_stop(actor_svc_t *svc);
/* Frees the resident actors (when the service's last reference goes). */
void actor_store_free(actor_svc_t *svc);
/* Queues r for actor_id (a valid UUID); the answer comes through r->done. */
void actor_store_submit(actor_svc_t *svc, const char *actor_id, actor_req_t *r);
/* Holds actor_id for a cross-actor transaction (txn.c): r (hold = true, done set) waits
 * behind the commands queued before it; once they are written r->done gets WY_OK (res
 * NULL) and the actor takes no other command until actor_store_release(r); its committed
 * state is actor_store_held(r). A failure (no such character, PostgreSQL down,
 * stopping, queue full) answers r->done with the status and no hold exists. */
void actor_store_hold(actor_svc_t *svc, const char *actor_id, actor_req_t *r);
/* The committed state of a held actor; valid until the release. */
const actor_state_t *actor_store_held(const actor_req_t *r);
/* True when a held actor whose state reaches seq is due a snapshot (the transaction
 * then writes one with its events). */
bool actor_store_snapshot_due(const actor_req_t *r, uint64_t seq);
/* Ends the hold of r. events[0..n) were committed (packed, seq state.seq + 1 on): applied
 * to the state; snapshot: a snapshot of the state after them was committed too. n 0:
 * nothing was written. unknown: what PostgreSQL has is not known (commit outcome lost,
 * fenced): the state is dropped and read again. */
void actor_store_release(actor_req_t *r, const actor_event_t *events, size_t n, bool snapshot,
                         bool unknown);
/* Creates a character; the answer comes through c->req.done. */
void actor_store_create(actor_svc_t *svc, actor_create_t *c);
/* Ends create c with an answer made elsewhere (a forwarded create): status, msg and res as
 * c->req.done takes them (res NULL unless WY_OK). */
void actor_store_create_end(actor_create_t *c, int status, const char *msg,
                            const Wyvern__Actor__ApplyResponse *res);
/* The ids of account_id's characters: not deleted, or deleted within the restore
 * window too when include_deleted. At most 64. */
void actor_store_list(actor_svc_t *svc, const char *account_id, bool include_deleted,
                      actor_ids_cb cb, void *ud);

/* ---- owners.c: one owner per shard across instances ---- */

/* Starts the ownership view: a first one now, then every WY_ACTOR_HEARTBEAT. */
void actor_owners_start(actor_svc_t *svc);
/* Stops the view and releases the shards this instance holds (so that another instance
 * takes them at once instead of after the lease). */
void actor_owners_stop(actor_svc_t *svc);
/* Frees the peers (last reference). */
void actor_owners_free(actor_svc_t *svc);
/* True once the first view is done and this instance holds the shards due to it (or a
 * lease has passed since): the daemon's readiness. */
bool actor_owners_settled(actor_svc_t *svc);
/* Runs a view soon (a lost fence, a forwarded request for a shard in transit). */
void actor_owners_poke(actor_svc_t *svc);
/* The shards whose ownership changed: resident actors of shards no longer ours are
 * dropped and their queued requests routed again (store.c). */
void actor_store_shards_lost(actor_svc_t *svc, const bool lost[ACTOR_SHARDS]);
/* Some shards became ours: queued creates and writes may go on (store.c). */
void actor_store_shards_gained(actor_svc_t *svc);

/* ---- forward.c: a request for an actor another instance owns ---- */

/* Sends r to peer p as the matching wyvern.actor.Actor call (Apply, GetCharacter,
 * DeleteCharacter, RestoreCharacter), marked forwarded; the answer comes through r->done
 * like a local one. */
void actor_forward(actor_svc_t *svc, actor_peer_t *p, const char *actor_id, actor_req_t *r);
/* Reads the forwarding metadata of a call into r (forwarded, account, consumed). WY_EINVAL
 * with *why on a malformed value. */
int actor_forward_metadata(wy_grpc_call_id_t call, actor_req_t *r, const char **why);
/* The status to answer for a forwarded call that failed with err (an unreachable or silent
 * owner: UNAVAILABLE, and a view soon, since the owner may be gone). */
int actor_forward_failed(actor_svc_t *svc, int err);

/* ---- retention.c: actor.txn_attempts ---- */

/* WY_OK, or WY_EINVAL and *err when the retention is too short for the longest hold. */
int actor_retention_check(const actor_cfg_t *cfg, const char **err);
/* Starts the sweep timer (it holds a reference on svc until the stop closes it). */
void actor_retention_start(actor_svc_t *svc);
void actor_retention_stop(actor_svc_t *svc);

/* ---- npc_create.c: persistent NPCs (proto/actor.proto, CreateNpc) ---- */

/* gRPC CreateNpc (arg: the daemon). */
void actor_rpc_create_npc(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg);
/* The spec's configure / unconfigure: WY_ACTOR_NPCS_FILE read and checked into cfg->npcs
 * (a bad file: WY_EINVAL and *err naming the file and the entry), and freed. Main thread. */
int actor_npcs_configure(void *cfg, const char **err);
void actor_npcs_unconfigure(void *cfg);
/* Creates the file's NPCs once this instance's shards are settled (idempotent: the NPC id
 * is the key); stop ends the retries. */
void actor_npcs_start(actor_svc_t *svc);
void actor_npcs_stop(actor_svc_t *svc);

/* ---- forward_create.c ---- */

/* A live instance owning at least one shard (from the latest ownership view), picked at
 * random, or NULL. */
actor_peer_t *actor_owners_any_peer(actor_svc_t *svc);
/* For a create on an instance owning no shard (store.c): sends c to an instance that owns
 * shards (CreateCharacter, marked forwarded); true when sent: the answer then ends c through
 * actor_store_create_end. False when c was forwarded here already, no such instance is
 * known or the call cannot start (c untouched: the caller answers). */
bool actor_forward_create(actor_svc_t *svc, actor_create_t *c);

/* ---- publish.c: committed events to Kafka wy.actor ---- */

void actor_publish_start(actor_svc_t *svc);
void actor_publish_stop(actor_svc_t *svc);
/* Events were committed: publish them now rather than at the next poll. */
void actor_publish_wake(actor_svc_t *svc);
/* The bytes of a bytea column (text format): new buffer (PQfreemem) or NULL. store.c. */
uint8_t *actor_column_bytes(const PGresult *res, int row, const char *name, size_t *len);

/* ---- gameplay.c: the wy.gameplay consumer ---- */

/* Sets up the retry timer. */
void actor_gameplay_start(actor_svc_t *svc);
/* The handler of the spec's `subs` row (type gameplay.event). */
void actor_gameplay_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env);
/* Gives up the events still being applied (not done: Kafka delivers them again). */
void actor_gameplay_stop(actor_svc_t *svc);

/* ---- apply_batch.c: ApplyBatch, and the check of an Apply request ---- */

/* Checks an Apply request (actor id, idempotency key, command) into r->cmd and r->key.
 * WY_OK, or WY_EINVAL with *why (a static message). */
int actor_apply_check(const Wyvern__Actor__ApplyRequest *in, actor_req_t *r, const char **why);
/* The bound of one ApplyBatch call: n in 1..max is WY_OK, else WY_EINVAL with the reason in
 * why. */
int actor_apply_batch_check(size_t n, int64_t max, char *why, size_t why_len);

/* One command of an ApplyBatch call and its outcome. */
typedef struct {
    actor_req_t req;
    int status;         /* WY_OK or the WY_E* code Apply would answer */
    char msg[160];      /* why, when status != WY_OK */
    uint64_t seq;       /* WY_OK: ApplyResponse.seq */
    bool replayed;      /* WY_OK: ApplyResponse.replayed */
    uint8_t *character; /* WY_OK, unless omitted: the character, packed (owned) */
    size_t len;
} actor_apply_item_t;

/* An ApplyBatch call in progress; answered and freed when its last command is. */
typedef struct {
    wy_grpc_call_id_t call;
    bool omit_character;
    size_t n, pending;
    actor_apply_item_t *items; /* n, owned */
} actor_apply_batch_t;

/* Records item i's outcome (res as actor_done_cb gives it: valid during the call only). */
void actor_apply_batch_item_done(actor_apply_batch_t *b, size_t i, int status, const char *msg,
                                 const Wyvern__Actor__ApplyResponse *res);
/* Builds the call's response from the items and hands it to send (valid during send). */
void actor_apply_batch_answer(const actor_apply_batch_t *b,
                              void (*send)(const Wyvern__Actor__ApplyBatchResponse *, void *),
                              void *ud);
/* Frees b and its items. */
void actor_apply_batch_free(actor_apply_batch_t *b);

/* ---- handlers_grpc.c ---- */

/* Registers wyvern.actor.Actor's methods on the daemon's gRPC server. */
int actor_grpc_register(wy_daemon_t *d, const char **err);

#endif
