/* wyc characters and friends: the lobby messages 30..49 (list, create, delete characters;
 * friend request, accept, decline, remove, list with presence), their blocking forms, and
 * friend pushes as WYC_EV_FRIEND. Built on wyc__lobby_request (wyc_lobby.c). */
#include "wyc_int.h"

#include <string.h>

const char *wyc_friend_status_name(wyc_friend_status_t s)
{
    switch (s) {
    case WYC_FRIEND_ACCEPTED:
        return "friend";
    case WYC_FRIEND_INCOMING:
        return "asked you";
    case WYC_FRIEND_OUTGOING:
        return "you asked";
    default:
        return "none";
    }
}

void wyc__friend_push(wyc_client_t *c, const Wyvern__Lobby__FriendPush *p)
{
    wyc_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = WYC_EV_FRIEND;
    snprintf(ev.friend.kind, sizeof ev.friend.kind, "%s", p->kind);
    snprintf(ev.friend.from_actor_id, sizeof ev.friend.from_actor_id, "%s", p->from_actor_id);
    snprintf(ev.friend.from_name, sizeof ev.friend.from_name, "%s", p->from_name);
    snprintf(ev.friend.to_actor_id, sizeof ev.friend.to_actor_id, "%s", p->to_actor_id);
    snprintf(ev.friend.to_name, sizeof ev.friend.to_name, "%s", p->to_name);
    wyc__emit(c, &ev);
}

/* ---- answers ---- */

typedef struct {
    void *cb;
    void *ud;
} call_t;

static void character_from(wyc_character_t *o, const Wyvern__Lobby__CharacterInfo *ci)
{
    memset(o, 0, sizeof *o);
    snprintf(o->actor_id, sizeof o->actor_id, "%s", ci->actor_id);
    snprintf(o->name, sizeof o->name, "%s", ci->name);
    snprintf(o->class_name, sizeof o->class_name, "%s", ci->class_name);
    o->level = ci->level;
    o->xp = ci->xp;
    o->gold = ci->gold;
    snprintf(o->zone, sizeof o->zone, "%s", ci->zone);
    o->deleted = ci->deleted;
}

static void on_characters(wyc_client_t *c, const wyc_error_t *e,
                          const Wyvern__Lobby__ServerMessage *m, void *ud)
{
    call_t *k = ud;
    wyc_character_t *out = NULL;
    size_t n = 0;
    wyc_error_t err = *e;
    if (e->code == WY_OK && m && m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHARACTERS) {
        n = m->characters->n_characters < WYC_CHARACTERS_MAX ? m->characters->n_characters
                                                             : WYC_CHARACTERS_MAX;
        out = wy_calloc(n ? n : 1, sizeof *out);
        for (size_t i = 0; i < n; i++)
            character_from(&out[i], m->characters->characters[i]);
    } else if (e->code == WY_OK && m &&
               m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_CHARACTER) {
        n = 1;
        out = wy_calloc(1, sizeof *out);
        character_from(out, m->character);
    } else if (e->code == WY_OK) {
        wyc__err_set(&err, WY_EIO, WYC_SRC_PROTOCOL, "unexpected answer to a character request");
    }
    ((wyc_characters_cb)k->cb)(c, &err, out, n, k->ud);
    wy_free(out);
    wy_free(k);
}

static void on_friends(wyc_client_t *c, const wyc_error_t *e, const Wyvern__Lobby__ServerMessage *m,
                       void *ud)
{
    call_t *k = ud;
    wyc_friend_t *out = NULL;
    size_t n = 0;
    wyc_error_t err = *e;
    if (e->code == WY_OK && m && m->body_case == WYVERN__LOBBY__SERVER_MESSAGE__BODY_FRIENDS) {
        n = m->friends->n_friends < WYC_FRIENDS_MAX ? m->friends->n_friends : WYC_FRIENDS_MAX;
        out = wy_calloc(n ? n : 1, sizeof *out);
        for (size_t i = 0; i < n; i++) {
            const Wyvern__Lobby__FriendEntry *f = m->friends->friends[i];
            snprintf(out[i].actor_id, sizeof out[i].actor_id, "%s", f->actor_id);
            snprintf(out[i].name, sizeof out[i].name, "%s", f->name);
            snprintf(out[i].account_id, sizeof out[i].account_id, "%s", f->account_id);
            out[i].status = (wyc_friend_status_t)f->status;
            out[i].presence = (wyc_presence_state_t)f->presence;
            snprintf(out[i].zone, sizeof out[i].zone, "%s", f->zone);
        }
    } else if (e->code == WY_OK) {
        wyc__err_set(&err, WY_EIO, WYC_SRC_PROTOCOL, "unexpected answer to a friend request");
    }
    ((wyc_friends_cb)k->cb)(c, &err, out, n, k->ud);
    wy_free(out);
    wy_free(k);
}

static int send_req(wyc_client_t *c, Wyvern__Lobby__ClientMessage *m, wyc__lobby_reply_cb on,
                    void *cb, void *ud)
{
    call_t *k = wy_calloc(1, sizeof *k);
    k->cb = cb;
    k->ud = ud;
    int rc = wyc__lobby_request(c, m, on, k);
    if (rc != WY_OK)
        wy_free(k);
    return rc;
}

/* ---- requests ---- */

static bool text_ok(const char *s, size_t max)
{
    return s && *s && strlen(s) <= max;
}

int wyc_characters_list(wyc_client_t *c, wyc_characters_cb cb, void *ud)
{
    if (!cb)
        return WY_EINVAL;
    Wyvern__Lobby__ListCharacters lc = WYVERN__LOBBY__LIST_CHARACTERS__INIT;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_LIST_CHARACTERS;
    m.list_characters = &lc;
    return send_req(c, &m, on_characters, (void *)cb, ud);
}

int wyc_character_create(wyc_client_t *c, const char *name, const char *class_name, const char *key,
                         wyc_characters_cb cb, void *ud)
{
    if (!cb || !text_ok(name, 256) || !text_ok(class_name, 64) || (key && strlen(key) > 128))
        return WY_EINVAL;
    Wyvern__Lobby__CreateCharacter cc = WYVERN__LOBBY__CREATE_CHARACTER__INIT;
    cc.name = (char *)name;
    cc.class_name = (char *)class_name;
    cc.idempotency_key = (char *)(key ? key : "");
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_CREATE_CHARACTER;
    m.create_character = &cc;
    return send_req(c, &m, on_characters, (void *)cb, ud);
}

int wyc_character_delete(wyc_client_t *c, const char *actor_id, wyc_characters_cb cb, void *ud)
{
    if (!cb || !text_ok(actor_id, 63))
        return WY_EINVAL;
    Wyvern__Lobby__DeleteCharacter dc = WYVERN__LOBBY__DELETE_CHARACTER__INIT;
    dc.actor_id = (char *)actor_id;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_DELETE_CHARACTER;
    m.delete_character = &dc;
    return send_req(c, &m, on_characters, (void *)cb, ud);
}

/* A character id as the server writes them (lower-case UUID); anything else is a name. */
static bool looks_like_id(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char ch = s[i];
        if (dash ? ch != '-' : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return false;
    }
    return true;
}

int wyc_friend(wyc_client_t *c, wyc_friend_op_t op, const char *actor_id, const char *other,
               wyc_friends_cb cb, void *ud)
{
    if (!cb || !text_ok(actor_id, 63) || !text_ok(other, 256) || op < WYC_FRIEND_REQUEST ||
        op > WYC_FRIEND_REMOVE)
        return WY_EINVAL;
    Wyvern__Lobby__FriendAction fa = WYVERN__LOBBY__FRIEND_ACTION__INIT;
    fa.actor_id = (char *)actor_id;
    if (looks_like_id(other))
        fa.other_actor_id = (char *)other;
    else
        fa.other_name = (char *)other;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    static const Wyvern__Lobby__ClientMessage__BodyCase cases[] = {
        WYVERN__LOBBY__CLIENT_MESSAGE__BODY_FRIEND_REQUEST,
        WYVERN__LOBBY__CLIENT_MESSAGE__BODY_FRIEND_ACCEPT,
        WYVERN__LOBBY__CLIENT_MESSAGE__BODY_FRIEND_DECLINE,
        WYVERN__LOBBY__CLIENT_MESSAGE__BODY_FRIEND_REMOVE};
    m.body_case = cases[op];
    m.friend_request = &fa; /* every friend_* member of the oneof is a FriendAction */
    return send_req(c, &m, on_friends, (void *)cb, ud);
}

int wyc_friends_list(wyc_client_t *c, const char *actor_id, wyc_friends_cb cb, void *ud)
{
    if (!cb || !text_ok(actor_id, 63))
        return WY_EINVAL;
    Wyvern__Lobby__ListFriends lf = WYVERN__LOBBY__LIST_FRIENDS__INIT;
    lf.actor_id = (char *)actor_id;
    Wyvern__Lobby__ClientMessage m = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    m.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_LIST_FRIENDS;
    m.list_friends = &lf;
    return send_req(c, &m, on_friends, (void *)cb, ud);
}

/* ---- blocking forms ---- */

typedef struct {
    bool done;
    wyc_error_t err;
    void *out;
    size_t cap, *n, size;
} sync_call_t;

static void sync_copy(sync_call_t *k, const wyc_error_t *e, const void *items, size_t n)
{
    k->err = *e;
    size_t m = n < k->cap ? n : k->cap;
    if (m)
        memcpy(k->out, items, m * k->size);
    if (k->n)
        *k->n = m;
    k->done = true;
}

static void sync_chars_cb(wyc_client_t *c, const wyc_error_t *e, const wyc_character_t *chars,
                          size_t n, void *ud)
{
    (void)c;
    sync_copy(ud, e, chars, n);
}

static void sync_friends_cb(wyc_client_t *c, const wyc_error_t *e, const wyc_friend_t *friends,
                            size_t n, void *ud)
{
    (void)c;
    sync_copy(ud, e, friends, n);
}

/* Runs s's loop until k is done; rc is the request's start. */
static int sync_wait(wyc_sync_t *s, int rc, sync_call_t *k, wyc_error_t *err)
{
    if (rc != WY_OK)
        wyc__err_set(&k->err, rc, WYC_SRC_CLIENT, "%s",
                     rc == WY_ESTATE   ? "not connected to the lobby"
                     : rc == WY_EINVAL ? "invalid argument"
                                       : wy_strerror(rc));
    else
        while (!k->done)
            uv_run(wyc__sync_loop(s), UV_RUN_ONCE);
    if (err)
        *err = k->err;
    return k->err.code;
}

static sync_call_t sync_call(void *out, size_t cap, size_t *n, size_t size)
{
    sync_call_t k;
    memset(&k, 0, sizeof k);
    k.out = out;
    k.cap = out ? cap : 0;
    k.n = n;
    k.size = size;
    if (n)
        *n = 0;
    return k;
}

int wyc_sync_characters(wyc_sync_t *s, wyc_character_t *out, size_t cap, size_t *n,
                        wyc_error_t *err)
{
    sync_call_t k = sync_call(out, cap, n, sizeof *out);
    return sync_wait(s, wyc_characters_list(wyc_sync_client(s), sync_chars_cb, &k), &k, err);
}

int wyc_sync_character_create(wyc_sync_t *s, const char *name, const char *class_name,
                              wyc_character_t *out, wyc_error_t *err)
{
    sync_call_t k = sync_call(out, 1, NULL, sizeof *out);
    return sync_wait(
        s, wyc_character_create(wyc_sync_client(s), name, class_name, NULL, sync_chars_cb, &k), &k,
        err);
}

int wyc_sync_character_delete(wyc_sync_t *s, const char *actor_id, wyc_character_t *out,
                              wyc_error_t *err)
{
    sync_call_t k = sync_call(out, 1, NULL, sizeof *out);
    return sync_wait(s, wyc_character_delete(wyc_sync_client(s), actor_id, sync_chars_cb, &k), &k,
                     err);
}

int wyc_sync_friend(wyc_sync_t *s, wyc_friend_op_t op, const char *actor_id, const char *other,
                    wyc_friend_t *out, size_t cap, size_t *n, wyc_error_t *err)
{
    sync_call_t k = sync_call(out, cap, n, sizeof *out);
    return sync_wait(s, wyc_friend(wyc_sync_client(s), op, actor_id, other, sync_friends_cb, &k),
                     &k, err);
}

int wyc_sync_friends(wyc_sync_t *s, const char *actor_id, wyc_friend_t *out, size_t cap, size_t *n,
                     wyc_error_t *err)
{
    sync_call_t k = sync_call(out, cap, n, sizeof *out);
    return sync_wait(s, wyc_friends_list(wyc_sync_client(s), actor_id, sync_friends_cb, &k), &k,
                     err);
}
