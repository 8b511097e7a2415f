/* wy-actor: a request for a character another instance owns goes to that instance over
 * gRPC (the same wyvern.actor.Actor methods), marked with metadata so that it is never
 * forwarded a second time: an instance that receives a forwarded request for a shard it
 * does not hold (ownership moving) answers UNAVAILABLE and the caller retries. The
 * metadata also carries what a request has beyond the public fields (the account that must
 * own the character, the consumed Kafka event id of a wy.gameplay event). Loop thread. */
#include "actor.h"
#include "wy_log.h"

#include <stdio.h>
#include <string.h>

#define MD_HOP      "wy-actor-forwarded-by"
#define MD_ACCOUNT  "wy-actor-account"
#define MD_CONSUMED "wy-actor-consumed"

typedef struct {
    actor_svc_t *svc;
    actor_req_t *r;
    bool character; /* the method answers a Character, not an ApplyResponse */
} fwd_t;

int actor_forward_failed(actor_svc_t *svc, int err)
{
    /* The owner could not be reached or did not answer: the outcome is unknown. */
    if (err == WY_ECANCELED || err == WY_ETIMEDOUT || err == WY_EIO)
        err = WY_EUNAVAIL;
    if (err == WY_EUNAVAIL)
        actor_owners_poke(svc); /* the owner may be gone: look again */
    return err;
}

static void on_forwarded(int err, int status, const char *message, const ProtobufCMessage *resp,
                         void *arg)
{
    (void)status;
    fwd_t *f = arg;
    actor_svc_t *svc = f->svc;
    actor_req_t *r = f->r;
    svc->busy--;
    if (err != WY_OK) {
        r->done(r, actor_forward_failed(svc, err),
                message && *message ? message : "owner instance unreachable; retry", NULL);
    } else if (f->character) {
        Wyvern__Actor__ApplyResponse res = WYVERN__ACTOR__APPLY_RESPONSE__INIT;
        res.character = (Wyvern__Actor__Character *)resp;
        res.seq = res.character->seq;
        r->done(r, WY_OK, NULL, &res);
    } else {
        r->done(r, WY_OK, NULL, (const Wyvern__Actor__ApplyResponse *)resp);
    }
    wy_free(f);
    actor_svc_unref(svc);
}

/* The request's command back as an ApplyRequest (the inverse of actor_cmd_from_request),
 * with its parts in *parts (all on the caller's stack). */
typedef struct {
    Wyvern__Actor__GainXp xp;
    Wyvern__Actor__AddItem add;
    Wyvern__Actor__RemoveItem rem;
    Wyvern__Actor__Move move;
    Wyvern__Actor__Position pos;
    Wyvern__Actor__EarnCurrency earn;
    Wyvern__Actor__SpendCurrency spend;
    Wyvern__Actor__KillNpc kill;
    Wyvern__Actor__RespawnNpc respawn;
} cmd_parts_t;

static void apply_request(const actor_req_t *r, const char *actor_id, cmd_parts_t *p,
                          Wyvern__Actor__ApplyRequest *out)
{
    const actor_cmd_t *c = &r->cmd;
    wyvern__actor__apply_request__init(out);
    out->actor_id = (char *)actor_id;
    out->idempotency_key = (char *)r->key;
    char *text = (char *)c->text;
    switch (c->kind) {
    case ACTOR_CMD_GAIN_XP:
        wyvern__actor__gain_xp__init(&p->xp);
        p->xp.amount = c->amount;
        p->xp.source = text;
        out->command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_GAIN_XP;
        out->gain_xp = &p->xp;
        break;
    case ACTOR_CMD_ADD_ITEM:
        wyvern__actor__add_item__init(&p->add);
        p->add.item = (char *)c->item;
        p->add.count = (uint32_t)c->amount;
        p->add.source = text;
        out->command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_ADD_ITEM;
        out->add_item = &p->add;
        break;
    case ACTOR_CMD_REMOVE_ITEM:
        wyvern__actor__remove_item__init(&p->rem);
        p->rem.item = (char *)c->item;
        p->rem.count = (uint32_t)c->amount;
        p->rem.reason = text;
        out->command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_REMOVE_ITEM;
        out->remove_item = &p->rem;
        break;
    case ACTOR_CMD_MOVE:
        wyvern__actor__position__init(&p->pos);
        p->pos.zone = (char *)c->zone;
        p->pos.x = c->x;
        p->pos.y = c->y;
        p->pos.z = c->z;
        wyvern__actor__move__init(&p->move);
        p->move.position = &p->pos;
        out->command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_MOVE;
        out->move = &p->move;
        break;
    case ACTOR_CMD_EARN:
        wyvern__actor__earn_currency__init(&p->earn);
        p->earn.amount = c->amount;
        p->earn.source = text;
        out->command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_EARN_CURRENCY;
        out->earn_currency = &p->earn;
        break;
    case ACTOR_CMD_SPEND:
        wyvern__actor__spend_currency__init(&p->spend);
        p->spend.amount = c->amount;
        p->spend.reason = text;
        out->command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_SPEND_CURRENCY;
        out->spend_currency = &p->spend;
        break;
    case ACTOR_CMD_NPC_KILL:
        wyvern__actor__kill_npc__init(&p->kill);
        p->kill.killed_by = text;
        out->command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_KILL_NPC;
        out->kill_npc = &p->kill;
        break;
    case ACTOR_CMD_NPC_RESPAWN:
        wyvern__actor__respawn_npc__init(&p->respawn);
        out->command_case = WYVERN__ACTOR__APPLY_REQUEST__COMMAND_RESPAWN_NPC;
        out->respawn_npc = &p->respawn;
        break;
    default:
        break;
    }
}

void actor_forward(actor_svc_t *svc, actor_peer_t *p, const char *actor_id, actor_req_t *r)
{
    if (!p->ch && wy_grpc_channel_new(wy_daemon_grpc_rt(svc->d), p->addr, NULL, &p->ch) != WY_OK) {
        p->ch = NULL;
        r->done(r, WY_EUNAVAIL, "owner instance unreachable; retry", NULL);
        return;
    }
    wy_grpc_md_t md[3] = {{MD_HOP, wy_daemon_instance(svc->d)}};
    size_t n_md = 1;
    if (r->account[0])
        md[n_md++] = (wy_grpc_md_t){MD_ACCOUNT, r->account};
    if (r->consumed[0])
        md[n_md++] = (wy_grpc_md_t){MD_CONSUMED, r->consumed};
    fwd_t *f = wy_calloc(1, sizeof *f);
    f->svc = svc;
    f->r = r;
    const char *method;
    const ProtobufCMessage *req;
    Wyvern__Actor__GetCharacterRequest get = WYVERN__ACTOR__GET_CHARACTER_REQUEST__INIT;
    Wyvern__Actor__DeleteCharacterRequest del = WYVERN__ACTOR__DELETE_CHARACTER_REQUEST__INIT;
    Wyvern__Actor__RestoreCharacterRequest res = WYVERN__ACTOR__RESTORE_CHARACTER_REQUEST__INIT;
    Wyvern__Actor__ApplyRequest apply;
    cmd_parts_t parts;
    f->character = true;
    if (r->read_only) {
        get.actor_id = (char *)actor_id;
        method = "/wyvern.actor.Actor/GetCharacter";
        req = &get.base;
    } else if (r->cmd.kind == ACTOR_CMD_DELETE) {
        del.actor_id = (char *)actor_id;
        method = "/wyvern.actor.Actor/DeleteCharacter";
        req = &del.base;
    } else if (r->cmd.kind == ACTOR_CMD_RESTORE) {
        res.actor_id = (char *)actor_id;
        method = "/wyvern.actor.Actor/RestoreCharacter";
        req = &res.base;
    } else {
        apply_request(r, actor_id, &parts, &apply);
        method = "/wyvern.actor.Actor/Apply";
        req = &apply.base;
        f->character = false;
    }
    const ProtobufCMessageDescriptor *desc = f->character
                                                 ? &wyvern__actor__character__descriptor
                                                 : &wyvern__actor__apply_response__descriptor;
    int rc = wy_grpc_call(p->ch, method, req, desc, (unsigned)svc->cfg->forward_ms, md, n_md,
                          on_forwarded, f);
    if (rc != WY_OK) {
        wy_free(f);
        r->done(r, rc == WY_EBUSY ? WY_EBUSY : WY_EUNAVAIL, "owner instance unreachable; retry",
                NULL);
        return;
    }
    wy_metric_inc(svc->m_forwarded);
    svc->busy++;
    actor_svc_ref(svc);
}

static int md_copy(wy_grpc_call_id_t call, const char *key, char *out, size_t cap, bool uuid)
{
    const char *v;
    size_t len;
    out[0] = 0;
    if (wy_grpc_call_metadata(call, key, &v, &len) != WY_OK)
        return WY_OK; /* absent */
    if (len == 0 || len >= cap)
        return WY_EINVAL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
            return WY_EINVAL;
    memcpy(out, v, len);
    out[len] = 0;
    return uuid && !actor_uuid_valid(out) ? WY_EINVAL : WY_OK;
}

int actor_forward_metadata(wy_grpc_call_id_t call, actor_req_t *r, const char **why)
{
    const char *v;
    size_t len;
    r->forwarded = wy_grpc_call_metadata(call, MD_HOP, &v, &len) == WY_OK;
    if (md_copy(call, MD_ACCOUNT, r->account, sizeof r->account, true) != WY_OK) {
        *why = MD_ACCOUNT " must be a lower-case UUID";
        return WY_EINVAL;
    }
    if (md_copy(call, MD_CONSUMED, r->consumed, sizeof r->consumed, false) != WY_OK) {
        *why = MD_CONSUMED " must be 1..128 printable ASCII bytes";
        return WY_EINVAL;
    }
    return WY_OK;
}
