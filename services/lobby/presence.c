/* wy-lobby presence (presence.h): the session store's record, then world's locator for the
 * accounts whose record says in-game (the game releases the placement when the player
 * leaves, so the record alone would keep them in game). */
#include "presence.h"
#include "enter.h"

#include <string.h>

typedef struct {
    char *account, *nick, *zone; /* owned; account NULL: offline */
    bool in_game;
} ent_t;

typedef struct {
    lobby_presence_cb cb;
    void *ud;
    size_t n;
    ent_t *ents;
    size_t locating; /* World.Locate calls in flight (+1 while they are started) */
} resolve_t;

typedef struct {
    resolve_t *r;
    size_t i;
} locate_t;

static void finish(resolve_t *r)
{
    lobby_presence_t *p = wy_calloc(r->n ? r->n : 1, sizeof *p);
    for (size_t i = 0; i < r->n; i++) {
        const ent_t *e = &r->ents[i];
        p[i].account = e->account;
        p[i].nick = e->nick;
        p[i].in_game = e->account && e->in_game;
        p[i].zone = p[i].in_game && e->zone ? e->zone : "";
    }
    r->cb(r->n, p, r->ud);
    wy_free(p);
    for (size_t i = 0; i < r->n; i++) {
        wy_free(r->ents[i].account);
        wy_free(r->ents[i].nick);
        wy_free(r->ents[i].zone);
    }
    wy_free(r->ents);
    wy_free(r);
}

/* World's locator has the last word on "in game": not placed = back to online; world
 * unreachable = the record's state stands. */
static void on_located(int status, const char *zone, void *ud)
{
    locate_t *l = ud;
    resolve_t *r = l->r;
    ent_t *e = &r->ents[l->i];
    wy_free(l);
    if (status == WY_ENOTFOUND) {
        e->in_game = false;
    } else if (status == WY_OK && zone && zone[0]) {
        wy_free(e->zone);
        e->zone = wy_strdup(zone);
    }
    if (--r->locating == 0)
        finish(r);
}

void lobby_presence_resolve(lobby_t *lb, size_t n, const lobby_sess_info_t *s, lobby_presence_cb cb,
                            void *ud)
{
    resolve_t *r = wy_calloc(1, sizeof *r);
    r->cb = cb;
    r->ud = ud;
    r->n = n;
    r->ents = wy_calloc(n ? n : 1, sizeof *r->ents);
    for (size_t i = 0; i < n; i++) {
        if (!s[i].sid || !s[i].account)
            continue;
        ent_t *e = &r->ents[i];
        const char *st = s[i].state ? s[i].state : "";
        e->account = wy_strdup(s[i].account);
        e->nick = wy_strdup(s[i].nick ? s[i].nick : "");
        e->in_game = strncmp(st, "in-game", 7) == 0 && (st[7] == '\0' || st[7] == ':');
        e->zone = wy_strdup(e->in_game && st[7] == ':' ? st + 8 : "");
    }
    r->locating = 1; /* held until every call is started */
    for (size_t i = 0; i < n; i++) {
        if (!r->ents[i].account || !r->ents[i].in_game)
            continue;
        locate_t *l = wy_calloc(1, sizeof *l);
        l->r = r;
        l->i = i;
        r->locating++;
        if (lobby_enter_locate(lb, r->ents[i].account, on_located, l) != WY_OK) {
            r->locating--;
            wy_free(l);
        }
    }
    if (--r->locating == 0)
        finish(r);
}
