/* wy-actor: a CreateCharacter that reaches an instance owning no shard (it just joined and
 * its shards are still being handed over, or it was cut off past its lease and lost them)
 * goes to an instance that owns shards, like every other request goes to the owner
 * (forward.c). The create key makes a retry through any instance answer the same
 * character (the check is in PostgreSQL). A create that was forwarded here already is never
 * forwarded again: it is answered UNAVAILABLE and the caller retries. Loop thread. */
#include "actor.h"
#include "wy_core.h"

#include <string.h>

#define MD_HOP "wy-actor-forwarded-by" /* forward.c's mark */

typedef struct {
    actor_svc_t *svc;
    actor_create_t *c;
} fwd_create_t;

actor_peer_t *actor_owners_any_peer(actor_svc_t *svc)
{
    uint8_t r;
    wy_random(&r, 1);
    for (int i = 0; i < ACTOR_SHARDS; i++) {
        actor_peer_t *p = svc->owner[(r + i) % ACTOR_SHARDS];
        if (p && p->live)
            return p;
    }
    return NULL;
}

static void on_created_there(int err, int status, const char *message, const ProtobufCMessage *resp,
                             void *arg)
{
    (void)status;
    fwd_create_t *f = arg;
    actor_svc_t *svc = f->svc;
    actor_create_t *c = f->c;
    wy_free(f);
    svc->busy--;
    if (err != WY_OK) {
        actor_store_create_end(c, actor_forward_failed(svc, err),
                               message && *message ? message : "owner instance unreachable; retry",
                               NULL);
    } else {
        Wyvern__Actor__ApplyResponse res = WYVERN__ACTOR__APPLY_RESPONSE__INIT;
        res.character = (Wyvern__Actor__Character *)resp;
        res.seq = res.character->seq;
        actor_store_create_end(c, WY_OK, NULL, &res);
    }
    actor_svc_unref(svc);
}

bool actor_forward_create(actor_svc_t *svc, actor_create_t *c)
{
    actor_peer_t *p = c->req.forwarded ? NULL : actor_owners_any_peer(svc);
    if (!p)
        return false;
    if (!p->ch && wy_grpc_channel_new(wy_daemon_grpc_rt(svc->d), p->addr, NULL, &p->ch) != WY_OK) {
        p->ch = NULL;
        return false;
    }
    Wyvern__Actor__CreateCharacterRequest in = WYVERN__ACTOR__CREATE_CHARACTER_REQUEST__INIT;
    in.account_id = c->account_id;
    in.name = c->name;
    in.class_name = c->class_name;
    in.idempotency_key = c->key;
    wy_grpc_md_t md[1] = {{MD_HOP, wy_daemon_instance(svc->d)}};
    fwd_create_t *f = wy_calloc(1, sizeof *f);
    f->svc = svc;
    f->c = c;
    if (wy_grpc_call(p->ch, "/wyvern.actor.Actor/CreateCharacter", &in.base,
                     &wyvern__actor__character__descriptor, (unsigned)svc->cfg->forward_ms, md, 1,
                     on_created_there, f) != WY_OK) {
        wy_free(f);
        return false;
    }
    wy_metric_inc(svc->m_forwarded);
    svc->busy++;
    actor_svc_ref(svc);
    return true;
}
