/* wy-actor characters, the pure part: a character's state, how an event changes it, how a
 * command becomes events (or a refusal), names, and the snapshot encoding. No I/O, no
 * loop: the event store (store.c) and the handlers call it; tests/unit/actor tests it.
 * Any thread, but one state is used by one thread at a time. */
#ifndef ACTOR_CHARACTER_H
#define ACTOR_CHARACTER_H

#include "wy_core.h"
#include "actor.pb-c.h"

#define ACTOR_ID_LEN        36 /* UUID text */
#define ACTOR_ITEM_MAX      64 /* bytes of an item id */
#define ACTOR_ZONE_MAX      64
#define ACTOR_TEXT_MAX      64 /* bytes of a source / reason */
#define ACTOR_CLASS_MAX     32
#define ACTOR_NAME_MIN_CP   3
#define ACTOR_NAME_MAX_CP   16
#define ACTOR_NAME_MAX      64  /* bytes of a stored (NFKC) name */
#define ACTOR_KEY_MAX       128 /* bytes of an idempotency key */
#define ACTOR_MAX_STACKS    256
#define ACTOR_MAX_LEVEL     100
#define ACTOR_MAX_XP        1000000000000000ull /* 10^15 */
#define ACTOR_MAX_GOLD      1000000000000000ull
#define ACTOR_MAX_STACK     1000000000u /* items in one stack */
#define ACTOR_MAX_XP_GAIN   1000000u
#define ACTOR_MAX_ITEM_MOVE 1000000u /* items added or removed by one command */
#define ACTOR_MAX_GOLD_MOVE 1000000000u
#define ACTOR_MAX_COORD     1000000.0f
#define ACTOR_CMD_EVENTS    2 /* most events one command produces */
#define ACTOR_SHARDS        256

typedef struct {
    char item[ACTOR_ITEM_MAX + 1];
    uint32_t count; /* > 0 */
} actor_stack_t;

/* A friend or a pending friend request of a character (friends.h). status is a
 * Wyvern__Actor__Friend__Status: FRIEND, INCOMING or OUTGOING. */
#define ACTOR_MAX_FRIENDS 200 /* friends + pending requests of one character */
typedef struct {
    char id[ACTOR_ID_LEN + 1];
    char account[ACTOR_ID_LEN + 1];
    char name[ACTOR_NAME_MAX + 1];
    int status;
} actor_friend_t;

/* Sorted by id; owned by its state. */
typedef struct {
    actor_friend_t *v;
    size_t n, cap;
} actor_friends_t;

/* A persistent NPC's own part of a state (npc.c); kind ACTOR_NPC_NONE on a character. An
 * NPC's name, position, inventory (a merchant's stock) and gold (its till) are the
 * state's own fields. Plain data: copied with the state. */
enum { ACTOR_NPC_NONE = 0, ACTOR_NPC_MERCHANT = 1, ACTOR_NPC_BOSS = 2 };
#define ACTOR_NPC_NAME_MAX    64 /* bytes of an NPC's name (UTF-8, not unique) */
#define ACTOR_NPC_STOCK_MAX   64 /* stacks in CreateNpc's stock */
#define ACTOR_NPC_RESPAWN_MIN 1000LL
#define ACTOR_NPC_RESPAWN_MAX (30LL * 86400000)
typedef struct {
    int kind;
    int64_t respawn_ms;    /* boss: from a kill to its respawn */
    bool alive;            /* boss */
    int64_t respawn_at_ms; /* boss, dead: when it may respawn */
    char killed_by[ACTOR_ID_LEN + 1];
    uint32_t kills;
} actor_npc_t;

/* A character as of event `seq`. items is sorted by item id and owned by the state. */
typedef struct {
    char actor_id[ACTOR_ID_LEN + 1];
    char account_id[ACTOR_ID_LEN + 1];
    char name[ACTOR_NAME_MAX + 1];
    char class_name[ACTOR_CLASS_MAX + 1];
    uint32_t level;
    uint64_t xp;
    uint64_t gold;
    char zone[ACTOR_ZONE_MAX + 1];
    float x, y, z;
    actor_stack_t *items;
    size_t n_items, cap_items;
    bool deleted;
    int64_t deleted_at_ms;
    int64_t created_at_ms;
    uint64_t seq;            /* 0: nothing applied yet (the character does not exist) */
    actor_friends_t friends; /* friends.c */
    actor_npc_t npc;         /* npc.c: an NPC's own part, kind 0 on a character */
} actor_state_t;

/* A command, validated for shape (bounds, formats) and copied out of its request, so it
 * outlives the request. Whether the character's state allows it is actor_decide's job. */
typedef enum {
    ACTOR_CMD_GAIN_XP,
    ACTOR_CMD_ADD_ITEM,
    ACTOR_CMD_REMOVE_ITEM,
    ACTOR_CMD_MOVE,
    ACTOR_CMD_EARN,
    ACTOR_CMD_SPEND,
    ACTOR_CMD_DELETE,
    ACTOR_CMD_RESTORE,
    ACTOR_CMD_NPC_KILL,    /* npc.c: text = killed_by */
    ACTOR_CMD_NPC_RESPAWN, /* npc.c */
} actor_cmd_kind_t;

typedef struct {
    actor_cmd_kind_t kind;
    uint64_t amount; /* XP, items or gold */
    char item[ACTOR_ITEM_MAX + 1];
    char text[ACTOR_TEXT_MAX + 1]; /* source or reason */
    char zone[ACTOR_ZONE_MAX + 1];
    float x, y, z;
} actor_cmd_t;

/* One event, packed (a wyvern.actor.Event). data is owned (wy_free). type is the name of
 * the oneof body, a static string. */
typedef struct {
    const char *type;
    uint8_t *data;
    size_t len;
} actor_event_t;

typedef struct {
    actor_event_t ev[ACTOR_CMD_EVENTS];
    size_t n;
} actor_events_t;

/* ---- state ---- */

/* An empty state (seq 0) for actor_id (copied, cut at 36 bytes). */
void actor_state_init(actor_state_t *s, const char *actor_id);
/* Frees what the state owns; it is an empty state of the same actor afterwards. */
void actor_state_clear(actor_state_t *s);
/* dst (initialised or zeroed) becomes a deep copy of src. */
void actor_state_copy(actor_state_t *dst, const actor_state_t *src);
/* Field-by-field equality, inventory included. */
bool actor_state_equal(const actor_state_t *a, const actor_state_t *b);
/* Count of item in the inventory (0 when absent). */
uint32_t actor_state_items(const actor_state_t *s, const char *item);

/* Level reached with xp: the largest L <= ACTOR_MAX_LEVEL with 100 * L * (L - 1) / 2 <= xp. */
uint32_t actor_level_for_xp(uint64_t xp);

/* ---- events ---- */

/* Applies event number seq to s. Events are facts: the only failures are an event out
 * of order (seq != s->seq + 1: WY_ESTATE), an event that does not fit a character at
 * all (first event not "created", a second "created", an unknown body from a newer
 * version: WY_EINVAL). On failure s is unchanged. */
int actor_apply(actor_state_t *s, uint64_t seq, const Wyvern__Actor__Event *ev);

/* actor_apply on a packed event (what the store reads back). WY_EIO if it does not
 * decode. */
int actor_apply_packed(actor_state_t *s, uint64_t seq, const uint8_t *data, size_t len);

/* Frees the packed events and empties the list. */
void actor_events_clear(actor_events_t *e);

/* Packs ev into out (out->data new, wy_free); type is a static string (the body's name). */
void actor_event_pack(const Wyvern__Actor__Event *ev, const char *type, actor_event_t *out);

/* The CharacterCreated event of a new character. The strings must already be valid
 * (actor_name_check, actor_class_check, a UUID). */
void actor_event_created(const char *account_id, const char *name, const char *class_name,
                         int64_t now_ms, actor_event_t *out);

/* ---- commands ---- */

/* Copies and shape-checks an Apply request's command into *out. WY_OK, or WY_EINVAL with
 * *why a message for a person ("add_item.count must be 1..1000000"). */
int actor_cmd_from_request(const Wyvern__Actor__ApplyRequest *req, actor_cmd_t *out,
                           const char **why);

/* Decides command c against state s at now_ms: on WY_OK out holds the events (0 when the
 * command changes nothing, e.g. deleting a deleted character) in the order to apply; on a
 * refusal returns WY_ENOTFOUND (no such character), WY_ESTATE (the state does not allow
 * it) or WY_ELIMIT (a bound would be passed), out is empty and why[0..why_cap) says why.
 * restore_window_ms bounds RESTORE. s is not changed. */
int actor_decide(const actor_state_t *s, const actor_cmd_t *c, int64_t now_ms,
                 int64_t restore_window_ms, actor_events_t *out, char *why, size_t why_cap);

/* ---- identifiers ---- */

/* A character name: checked (3..16 code points after NFKC; letters, marks and digits of
 * one script, ' and - inside) and returned as display (NFKC) and key (wy_text_fold: the
 * unique index). New strings (wy_free) on WY_OK; WY_EINVAL and *why otherwise. */
int actor_name_check(const char *name, size_t len, char **display, char **key, const char **why);

/* An item id: [a-z0-9_.:-]{1,64}. */
bool actor_item_valid(const char *s);

/* [a-z_]{1,32}. */
bool actor_class_check(const char *class_name);

/* Canonical lower-case UUID text (8-4-4-4-12 hex). */
bool actor_uuid_valid(const char *s);

/* Shard of an actor (first byte of its UUID), 0..ACTOR_SHARDS-1; -1 when not a UUID. */
int actor_shard(const char *actor_id);

/* ---- snapshots and the API view ---- */

/* The state as a Character message whose strings and arrays point into s and into v's
 * own arrays: valid while s is unchanged and until actor_view_clear. */
typedef struct {
    Wyvern__Actor__Character c;
    Wyvern__Actor__Position pos;
    Wyvern__Actor__ItemStack *stacks;
    Wyvern__Actor__ItemStack **ptrs;
    Wyvern__Actor__Friend *friends; /* friends.c */
    Wyvern__Actor__Friend **friend_ptrs;
    Wyvern__Actor__NpcState npc; /* npc.c, when the state is an NPC's */
} actor_view_t;

void actor_view_init(actor_view_t *v, const actor_state_t *s);
void actor_view_clear(actor_view_t *v);

/* The snapshot of s: a packed Character. Returns a new buffer (wy_free) and its length. */
uint8_t *actor_snapshot_encode(const actor_state_t *s, size_t *len);

/* s (initialised) becomes the state a snapshot holds. WY_EIO when it does not decode or
 * breaks a bound; s is then unchanged. */
int actor_snapshot_decode(actor_state_t *s, const uint8_t *data, size_t len);

/* ---- NPCs (npc.c) ---- */

/* "merchant" / "boss" and back (ACTOR_NPC_NONE for anything else). */
const char *actor_npc_kind_name(int kind);
int actor_npc_kind_parse(const char *name);
/* Shape check of a CreateNpc request: WY_OK, or WY_EINVAL and *why for a person. */
int actor_npc_check_request(const Wyvern__Actor__CreateNpcRequest *in, const char **why);
/* The NpcCreated event of a checked request. */
void actor_event_npc_created(const Wyvern__Actor__CreateNpcRequest *in, int64_t now_ms,
                             actor_event_t *out);
/* Applies an npc_* event's NPC part to s (character.c calls it from actor_apply, and adds
 * the created stock itself): WY_EINVAL, s unchanged, for a kill or respawn of a state that
 * is not a boss. */
int actor_npc_apply(actor_state_t *s, const Wyvern__Actor__Event *ev);
/* kill_npc / respawn_npc of an Apply request into *out; any other command: WY_EINVAL with
 * the "no command set" message. */
int actor_npc_cmd_from_request(const Wyvern__Actor__ApplyRequest *req, actor_cmd_t *out,
                               const char **why);
/* The NPC part of actor_decide: sets *handled when c is an NPC command or s an NPC and c
 * does not fit it; then the return value and out are actor_decide's. */
int actor_npc_decide(const actor_state_t *s, const actor_cmd_t *c, int64_t now_ms,
                     actor_events_t *out, char *why, size_t why_cap, bool *handled);
bool actor_npc_equal(const actor_npc_t *a, const actor_npc_t *b);
/* Points c->npc at out (filled from n) when n is an NPC's; valid while n is unchanged. */
void actor_npc_view(const actor_npc_t *n, Wyvern__Actor__Character *c,
                    Wyvern__Actor__NpcState *out);
/* n from a snapshot's NpcState (NULL: a character). WY_EIO when it breaks a bound. */
int actor_npc_load(actor_npc_t *n, const Wyvern__Actor__NpcState *m);

#endif
