/* wy-lobby characters and friends (characters.h): each client message becomes one or two
 * wy-actor calls for the session's account; friend lists get each friend's presence
 * (presence.c); a friend push on wy.notify (friend_events.c made it from wy.actor) goes to
 * the local session of its account. */
#include "characters.h"
#include "presence.h"
#include "state.h"
#include "store.h"
#include "wire.h"
#include "actor.pb-c.h"

#include <string.h>

#define ACTOR_DEADLINE_MS 5000
#define KEY_MAX           100 /* bytes of a client's request_key */

typedef enum { OP_LIST, OP_CREATE, OP_DELETE, OP_FRIEND, OP_FRIENDS } op_kind_t;

/* One client request in flight. Holds a reference on its connection. */
typedef struct {
    lobby_conn_t *c;
    uint32_t req;
    uint64_t t0;
    const char *type; /* wy_lobby_ws_message_seconds{type} */
    op_kind_t kind;
    char actor_id[64];
    Wyvern__Actor__FriendList *friends; /* while presence is looked up */
} op_t;

int lobby_chars_start(lobby_t *lb, const char **err)
{
    if (!*lb->cfg->actor_grpc)
        return WY_OK;
    if (wy_grpc_channel_new(wy_daemon_grpc_rt(lb->d), lb->cfg->actor_grpc, NULL,
                            &lb->chars_actor) != WY_OK) {
        *err = "WY_LOBBY_ACTOR_GRPC: cannot open a channel";
        return WY_EINVAL;
    }
    return WY_OK;
}

void lobby_chars_stop(lobby_t *lb)
{
    if (lb->chars_actor) {
        wy_grpc_channel_close(lb->chars_actor);
        lb->chars_actor = NULL;
    }
}

/* ---- requests ---- */

static op_t *op_new(lobby_conn_t *c, uint32_t req, uint64_t t0, const char *type, op_kind_t kind)
{
    op_t *op = wy_calloc(1, sizeof *op);
    op->c = c;
    op->req = req;
    op->t0 = t0;
    op->type = type;
    op->kind = kind;
    lobby_conn_ref(c);
    return op;
}

/* Ends op: answers code/message unless OK (the caller replied), times it, frees it. */
static void op_end(op_t *op, Wyvern__Lobby__Code code, const char *message)
{
    if (code != WYVERN__LOBBY__CODE__OK)
        lobby_reply_status(op->c, op->req, code, message);
    lobby_observe(op->c, op->type, op->t0, code);
    if (op->friends)
        wyvern__actor__friend_list__free_unpacked(op->friends, NULL);
    lobby_conn_unref(op->c);
    wy_free(op);
}

/* The session is still there to answer. */
static bool op_live(const op_t *op)
{
    return op->c->ws && op->c->state == LOBBY_ST_READY;
}

static void on_actor(int err, int status, const char *message, const ProtobufCMessage *resp,
                     void *arg);

/* One wy-actor call for op; on a refusal to start, op ends UNAVAILABLE. */
static void call(op_t *op, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp)
{
    lobby_t *lb = op->c->lb;
    if (!lb->chars_actor) {
        op_end(op, WYVERN__LOBBY__CODE__UNAVAILABLE, "characters are not served by this lobby");
        return;
    }
    if (wy_grpc_call(lb->chars_actor, method, req, resp, ACTOR_DEADLINE_MS, NULL, 0, on_actor,
                     op) != WY_OK)
        op_end(op, WYVERN__LOBBY__CODE__UNAVAILABLE, "character service busy, retry");
}

static void character_info(Wyvern__Lobby__CharacterInfo *o, const Wyvern__Actor__Character *ch)
{
    wyvern__lobby__character_info__init(o);
    o->actor_id = ch->actor_id;
    o->name = ch->name;
    o->class_name = ch->class_name;
    o->level = ch->level;
    o->xp = ch->xp;
    o->gold = ch->gold;
    o->zone = ch->position ? ch->position->zone : "";
    o->deleted = ch->deleted;
}

/* ---- friends: presence, answer, push ---- */

static Wyvern__Lobby__FriendStatus friend_status(Wyvern__Actor__Friend__Status s)
{
    return s == WYVERN__ACTOR__FRIEND__STATUS__FRIEND
               ? WYVERN__LOBBY__FRIEND_STATUS__FRIEND_ACCEPTED
           : s == WYVERN__ACTOR__FRIEND__STATUS__INCOMING
               ? WYVERN__LOBBY__FRIEND_STATUS__FRIEND_INCOMING
           : s == WYVERN__ACTOR__FRIEND__STATUS__OUTGOING
               ? WYVERN__LOBBY__FRIEND_STATUS__FRIEND_OUTGOING
               : WYVERN__LOBBY__FRIEND_STATUS__FRIEND_NONE;
}

/* Answers op->friends with each friend's presence (s[i] for friend i, NULL: unknown). */
static void reply_friends(op_t *op, const lobby_presence_t *s)
{
    const Wyvern__Actor__FriendList *fl = op->friends;
    size_t n = fl->n_friends;
    Wyvern__Lobby__FriendEntry *e = wy_calloc(n ? n : 1, sizeof *e);
    Wyvern__Lobby__FriendEntry **p = wy_calloc(n ? n : 1, sizeof *p);
    for (size_t i = 0; i < n; i++) {
        const Wyvern__Actor__Friend *f = fl->friends[i];
        wyvern__lobby__friend_entry__init(&e[i]);
        e[i].actor_id = f->actor_id;
        e[i].name = f->name;
        e[i].account_id = f->account_id;
        e[i].status = friend_status(f->status);
        if (s && s[i].account) {
            e[i].presence = s[i].in_game ? WYVERN__LOBBY__PRESENCE_STATE__IN_GAME
                                         : WYVERN__LOBBY__PRESENCE_STATE__ONLINE;
            e[i].zone = (char *)s[i].zone;
        }
        p[i] = &e[i];
    }
    Wyvern__Lobby__FriendList out = WYVERN__LOBBY__FRIEND_LIST__INIT;
    out.actor_id = fl->actor_id;
    out.n_friends = n;
    out.friends = p;
    lobby_reply(op->c, op->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_FRIENDS, &out.base);
    wy_free(e);
    wy_free(p);
}

static void on_resolved(size_t n, const lobby_presence_t *s, void *ud)
{
    op_t *op = ud;
    if (!op_live(op)) {
        op_end(op, WYVERN__LOBBY__CODE__UNAVAILABLE, "gone");
        return;
    }
    reply_friends(op, n == op->friends->n_friends ? s : NULL);
    op_end(op, WYVERN__LOBBY__CODE__OK, NULL);
}

static void on_presence(int status, size_t n, const lobby_sess_info_t *s, void *ud)
{
    op_t *op = ud;
    /* Without the session store the list still answers, presence unknown (OFFLINE). */
    if (status != WY_OK || n != op->friends->n_friends || !op_live(op)) {
        on_resolved(0, NULL, op);
        return;
    }
    lobby_presence_resolve(op->c->lb, n, s, on_resolved, op);
}

/* Takes fl (an unpacked copy owned by op from now on), looks presence up, answers. */
static void friends_then_presence(op_t *op, Wyvern__Actor__FriendList *fl)
{
    op->friends = fl;
    size_t n = fl->n_friends;
    if (n == 0) {
        on_presence(WY_OK, 0, NULL, op);
        return;
    }
    const char **accounts = wy_calloc(n, sizeof *accounts);
    for (size_t i = 0; i < n; i++)
        accounts[i] = fl->friends[i]->account_id;
    int rc = lobby_session_lookup_many(op->c->lb, n, n, accounts, on_presence, op);
    wy_free(accounts);
    if (rc != WY_OK)
        on_presence(rc, 0, NULL, op);
}

/* A copy of a response that outlives the gRPC callback. */
static Wyvern__Actor__FriendList *copy_friends(const Wyvern__Actor__FriendList *fl)
{
    size_t len = wyvern__actor__friend_list__get_packed_size(fl);
    uint8_t *buf = wy_malloc(len ? len : 1);
    wyvern__actor__friend_list__pack(fl, buf);
    Wyvern__Actor__FriendList *out = wyvern__actor__friend_list__unpack(NULL, len, buf);
    wy_free(buf);
    return out;
}

/* ---- wy-actor answers ---- */

static void on_actor(int err, int status, const char *message, const ProtobufCMessage *resp,
                     void *arg)
{
    (void)status;
    op_t *op = arg;
    if (err != WY_OK || !op_live(op)) {
        op_end(op, lobby_code(err == WY_ECANCELED ? WY_EUNAVAIL : err),
               *message ? message : "character service unavailable, retry");
        return;
    }
    switch (op->kind) {
    case OP_LIST: {
        const Wyvern__Actor__ListCharactersResponse *r =
            (const Wyvern__Actor__ListCharactersResponse *)resp;
        size_t n = r->n_characters;
        Wyvern__Lobby__CharacterInfo *ci = wy_calloc(n ? n : 1, sizeof *ci);
        Wyvern__Lobby__CharacterInfo **p = wy_calloc(n ? n : 1, sizeof *p);
        for (size_t i = 0; i < n; i++) {
            character_info(&ci[i], r->characters[i]);
            p[i] = &ci[i];
        }
        Wyvern__Lobby__CharacterList out = WYVERN__LOBBY__CHARACTER_LIST__INIT;
        out.n_characters = n;
        out.characters = p;
        lobby_reply(op->c, op->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHARACTERS, &out.base);
        wy_free(ci);
        wy_free(p);
        break;
    }
    case OP_CREATE: {
        Wyvern__Lobby__CharacterInfo ci;
        character_info(&ci, (const Wyvern__Actor__Character *)resp);
        lobby_reply(op->c, op->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHARACTER, &ci.base);
        break;
    }
    case OP_DELETE: {
        const Wyvern__Actor__Character *ch = (const Wyvern__Actor__Character *)resp;
        if (strcmp(ch->account_id, op->c->account) != 0) {
            op_end(op, WYVERN__LOBBY__CODE__NOT_FOUND, "no such character on this account");
            return;
        }
        if (!ch->deleted && op->actor_id[0]) { /* the check: now the delete itself */
            op->actor_id[0] = 0;
            Wyvern__Actor__DeleteCharacterRequest d = WYVERN__ACTOR__DELETE_CHARACTER_REQUEST__INIT;
            d.actor_id = ch->actor_id;
            call(op, "/wyvern.actor.Actor/DeleteCharacter", &d.base,
                 &wyvern__actor__character__descriptor);
            return;
        }
        Wyvern__Lobby__CharacterInfo ci;
        character_info(&ci, ch);
        lobby_reply(op->c, op->req, WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHARACTER, &ci.base);
        break;
    }
    case OP_FRIEND: {
        /* The push to the other player follows the committed events (friend_events.c). */
        const Wyvern__Actor__FriendList *fl = (const Wyvern__Actor__FriendList *)resp;
        friends_then_presence(op, copy_friends(fl));
        return;
    }
    case OP_FRIENDS: {
        const Wyvern__Actor__Character *ch = (const Wyvern__Actor__Character *)resp;
        if (strcmp(ch->account_id, op->c->account) != 0) {
            op_end(op, WYVERN__LOBBY__CODE__NOT_FOUND, "no such character on this account");
            return;
        }
        Wyvern__Actor__FriendList fl = WYVERN__ACTOR__FRIEND_LIST__INIT;
        fl.actor_id = ch->actor_id;
        fl.name = ch->name;
        fl.n_friends = ch->n_friends;
        fl.friends = ch->friends;
        friends_then_presence(op, copy_friends(&fl));
        return;
    }
    }
    op_end(op, WYVERN__LOBBY__CODE__OK, NULL);
}

/* ---- the client messages ---- */

static bool id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n < 64;
}

static void friend_action(lobby_conn_t *c, uint32_t req, uint64_t t0, const char *type,
                          const char *method, const Wyvern__Lobby__FriendAction *a)
{
    op_t *op = op_new(c, req, t0, type, OP_FRIEND);
    size_t klen = strlen(a->request_key);
    if (!id_ok(a->actor_id) || (!id_ok(a->other_actor_id) && !*a->other_name) ||
        strlen(a->other_name) > 256 || klen > KEY_MAX) {
        op_end(op, WYVERN__LOBBY__CODE__INVALID,
               "actor_id and other_actor_id or other_name required; request_key <= 100 bytes");
        return;
    }
    /* The key is scoped to the account (and the method), so players cannot collide. */
    char txn[200], uuid[37];
    wy_uuid4(uuid);
    snprintf(txn, sizeof txn, "lobby:%s:%s:%s", c->account, type, klen ? a->request_key : uuid);
    Wyvern__Actor__FriendCommand fc = WYVERN__ACTOR__FRIEND_COMMAND__INIT;
    fc.actor_id = a->actor_id;
    fc.other_actor_id = a->other_actor_id;
    fc.other_name = a->other_name;
    fc.txn_id = txn;
    fc.account_id = c->account;
    call(op, method, &fc.base, &wyvern__actor__friend_list__descriptor);
}

bool lobby_chars_dispatch(lobby_conn_t *c, const Wyvern__Lobby__ClientMessage *m, uint64_t t0)
{
    uint32_t req = m->request_id;
    switch (m->body_case) {
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_LIST_CHARACTERS: {
        op_t *op = op_new(c, req, t0, "list_characters", OP_LIST);
        Wyvern__Actor__ListCharactersRequest r = WYVERN__ACTOR__LIST_CHARACTERS_REQUEST__INIT;
        r.account_id = c->account;
        call(op, "/wyvern.actor.Actor/ListCharacters", &r.base,
             &wyvern__actor__list_characters_response__descriptor);
        return true;
    }
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CREATE_CHARACTER: {
        op_t *op = op_new(c, req, t0, "create_character", OP_CREATE);
        const Wyvern__Lobby__CreateCharacter *in = m->create_character;
        Wyvern__Actor__CreateCharacterRequest r = WYVERN__ACTOR__CREATE_CHARACTER_REQUEST__INIT;
        r.account_id = c->account;
        r.name = in->name;
        r.class_name = in->class_name;
        r.idempotency_key = in->idempotency_key;
        call(op, "/wyvern.actor.Actor/CreateCharacter", &r.base,
             &wyvern__actor__character__descriptor);
        return true;
    }
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_DELETE_CHARACTER:
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_LIST_FRIENDS: {
        bool del = m->body_case == WYVERN__LOBBY__CLIENT_MESSAGE__BODY_DELETE_CHARACTER;
        const char *id = del ? m->delete_character->actor_id : m->list_friends->actor_id;
        op_t *op = op_new(c, req, t0, del ? "delete_character" : "list_friends",
                          del ? OP_DELETE : OP_FRIENDS);
        if (!id_ok(id)) {
            op_end(op, WYVERN__LOBBY__CODE__INVALID, "actor_id required");
            return true;
        }
        snprintf(op->actor_id, sizeof op->actor_id, "%s", id);
        /* Read first: the character must be this account's. */
        Wyvern__Actor__GetCharacterRequest r = WYVERN__ACTOR__GET_CHARACTER_REQUEST__INIT;
        r.actor_id = op->actor_id;
        call(op, "/wyvern.actor.Actor/GetCharacter", &r.base,
             &wyvern__actor__character__descriptor);
        return true;
    }
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_FRIEND_REQUEST:
        friend_action(c, req, t0, "friend_request", "/wyvern.actor.Actor/RequestFriend",
                      m->friend_request);
        return true;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_FRIEND_ACCEPT:
        friend_action(c, req, t0, "friend_accept", "/wyvern.actor.Actor/AcceptFriend",
                      m->friend_accept);
        return true;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_FRIEND_DECLINE:
        friend_action(c, req, t0, "friend_decline", "/wyvern.actor.Actor/DeclineFriend",
                      m->friend_decline);
        return true;
    case WYVERN__LOBBY__CLIENT_MESSAGE__BODY_FRIEND_REMOVE:
        friend_action(c, req, t0, "friend_remove", "/wyvern.actor.Actor/RemoveFriend",
                      m->friend_remove);
        return true;
    default:
        return false;
    }
}

/* ---- pushes from wy.notify ---- */

void lobby_chars_on_notify(lobby_t *lb, const uint8_t *payload, size_t len, const char *event_id)
{
    Wyvern__Lobby__FriendNotify *n = wyvern__lobby__friend_notify__unpack(NULL, len, payload);
    if (!n || !n->push || strlen(n->account_id) > LOBBY_ID_MAX) {
        wy_log_warn("bad notify.friend payload skipped", "event_id", event_id, NULL);
        if (n)
            wyvern__lobby__friend_notify__free_unpacked(n, NULL);
        return;
    }
    lobby_chars_push_friend(lb, n->account_id, n->push);
    wyvern__lobby__friend_notify__free_unpacked(n, NULL);
}

void lobby_chars_push_friend(lobby_t *lb, const char *account, const Wyvern__Lobby__FriendPush *p)
{
    lobby_conn_t *c = wy_map_get_str(lb->by_account, account);
    if (c && c->state == LOBBY_ST_READY)
        lobby_push(c, WYVERN__LOBBY__SERVER_MESSAGE__BODY_FRIEND_PUSH, &p->base);
}
