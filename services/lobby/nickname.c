/* wy-lobby nicknames: the rules (length, scripts, reserved words), the collision key that
 * makes look-alikes collide, and their storage in PostgreSQL schema `lobby` (UNIQUE key,
 * cooldown, history). The Unicode work is libs/common/wy_text (NFKC, case fold, classes,
 * scripts); this file adds only what is particular to nicknames: Latin and Hangul only,
 * '-' placement, reserved words, and the look-alike folds wy_text_fold does not do
 * (accents dropped, i/l/1 and o/0). Hangul needs nothing extra: NFKC already composes
 * conjoining jamo into syllables and maps compatibility jamo onto conjoining ones. */
#include "nickname.h"
#include "wy_text.h"

#include <stdlib.h>
#include <string.h>

#define NICK_MIN_CP    2
#define NICK_MAX_CP    16
#define NICK_MAX_INPUT 64 /* bytes accepted before any Unicode work */

static const wy_text_rules_t nick_rules = {
    .min_chars = NICK_MIN_CP,
    .max_chars = NICK_MAX_CP,
    .classes = WY_TEXT_LETTER | WY_TEXT_DIGIT,
    .extra = "_-",
    .single_script = true,
};

/* Beyond nick_rules: letters only from Latin or Hangul, digits only ASCII (NFKC has
 * already turned fullwidth and mathematical digits into ASCII ones). */
static bool script_allowed(const char *s, uint32_t *bad)
{
    size_t pos = 0;
    uint32_t cp;
    while (wy_text_next(s, &pos, &cp)) {
        unsigned cls = wy_text_class(cp);
        const char *sc = wy_text_script(cp);
        bool ok = cls == WY_TEXT_DIGIT    ? cp < 0x80
                  : cls == WY_TEXT_LETTER ? !strcmp(sc, "Latin") || !strcmp(sc, "Hangul")
                                          : true;
        if (!ok) {
            *bad = cp;
            return false;
        }
    }
    return true;
}

/* The collision key: wy_text_fold (NFKC + case fold), then lobby's own look-alike folds:
 * decomposed so accents can be dropped (é ~ e), i/l/1 and o/0 made one letter,
 * recomposed (NFC). New string (wy_free), NULL when s is not valid UTF-8. */
static char *skeleton(const char *s)
{
    char *f = NULL;
    if (wy_text_fold(s, strlen(s), &f) != WY_OK)
        return NULL;
    char *dn = NULL;
    int rc = wy_text_nfd(f, strlen(f), &dn);
    wy_free(f);
    if (rc != WY_OK)
        return NULL;
    char *o = wy_malloc(strlen(dn) + 1);
    size_t ol = 0, pos = 0, at = 0;
    uint32_t cp;
    while (wy_text_next(dn, &pos, &cp)) {
        if (cp == '1' || cp == 'i') {
            o[ol++] = 'l';
        } else if (cp == '0') {
            o[ol++] = 'o';
        } else if (wy_text_class(cp) != WY_TEXT_MARK) {
            memcpy(o + ol, dn + at, pos - at);
            ol += pos - at;
        }
        at = pos;
    }
    wy_free(dn);
    char *out = NULL;
    (void)wy_text_nfc(o, ol, &out);
    wy_free(o);
    return out;
}

static const char *const reserved_sub[] = {"admin",   "moderator", "wyvern", "gamemaster", "system",
                                           "support", "운영자",    "관리자", NULL};
static const char *const reserved_exact[] = {"gm", "mod", "root", "staff", "null", "dev", NULL};

/* True when norm (a skeleton) contains a reserved word (sub) or is one (exact). */
static bool reserved_in(const char *const *words, const char *norm, bool sub)
{
    bool hit = false;
    for (int i = 0; words[i] && !hit; i++) {
        char *r = skeleton(words[i]);
        hit = r && (sub ? strstr(norm, r) != NULL : strcmp(norm, r) == 0);
        wy_free(r);
    }
    return hit;
}

int lobby_nick_check(const char *nick, size_t len, char *display, size_t display_cap, char *norm,
                     size_t norm_cap, const char **err)
{
    static char msg[160];
    if (len == 0) {
        *err = "nickname is empty";
        return WY_EINVAL;
    }
    if (len > NICK_MAX_INPUT) {
        *err = "nickname is too long (at most 16 characters)";
        return WY_EINVAL;
    }
    char *d = NULL;
    if (wy_text_nfkc(nick, len, &d) != WY_OK) {
        *err = "nickname is not valid UTF-8";
        return WY_EINVAL;
    }
    const char *why = NULL;
    uint32_t bad = 0;
    size_t dl = strlen(d);
    char *sk = NULL;
    int rc = WY_EINVAL;
    if (wy_text_check(d, &nick_rules, &why) != WY_OK) {
        snprintf(msg, sizeof msg,
                 "nickname %s: use 2 to 16 Latin or Hangul letters, digits, '_' or '-'", why);
        *err = msg;
    } else if (!script_allowed(d, &bad)) {
        snprintf(msg, sizeof msg,
                 "character U+%04X is not allowed: use Latin or Hangul letters, digits, '_' "
                 "or '-'",
                 (unsigned)bad);
        *err = msg;
    } else if (d[0] == '-' || d[dl - 1] == '-') {
        *err = "nickname cannot start or end with '-'";
    } else if (!(sk = skeleton(d))) {
        *err = "nickname cannot be normalised";
    } else if (reserved_in(reserved_sub, sk, true) || reserved_in(reserved_exact, sk, false)) {
        *err = "nickname contains a reserved word";
        rc = WY_EPERM;
    } else if (dl + 1 > display_cap || strlen(sk) + 1 > norm_cap) {
        *err = "nickname is too long";
    } else {
        memcpy(display, d, dl + 1);
        memcpy(norm, sk, strlen(sk) + 1);
        rc = WY_OK;
    }
    wy_free(sk);
    wy_free(d);
    return rc;
}

/* ---------------------------------------------------------------- storage */

/* PostgreSQL is closed (NULL) after the drain; a late request gets WY_EUNAVAIL. Nickname
 * changes go to the primary (the nickname read at hello: store.c, on the replica if any). */
static int pg_exec(lobby_t *lb, const wy_pg_stmt_t *st, const char *const *params, wy_pg_cb cb,
                   void *ud)
{
    wy_pg_t *pg = wy_daemon_pg(lb->d);
    return pg ? wy_pg_exec(pg, st, params, cb, ud) : WY_EUNAVAIL;
}

/* One statement, so one implicit transaction: the cooldown check, the upsert guarded by
 * UNIQUE(norm) and the history row happen together or not at all.
 * -> 1 row: changed_at (unix s; NULL when the cooldown refused the change), prev_changed_at
 *    (unix s of the change before; NULL for a first nickname), history (rows written) */
static const wy_pg_stmt_t SET_SQL = {
    "lobby_nick_set",
    "WITH prev AS (SELECT changed_at FROM lobby.nicknames WHERE account_id = $1),\n"
    "up AS (\n"
    "  INSERT INTO lobby.nicknames AS n (account_id, nickname, norm, changed_at)\n"
    "  VALUES ($1, $2, $3, now())\n"
    "  ON CONFLICT (account_id) DO UPDATE\n"
    "    SET nickname = EXCLUDED.nickname, norm = EXCLUDED.norm, changed_at = now()\n"
    "    WHERE n.changed_at <= now() - ($4::bigint * interval '1 millisecond')\n"
    "  RETURNING extract(epoch FROM changed_at)::bigint AS at),\n"
    "hist AS (\n"
    "  INSERT INTO lobby.nickname_history (account_id, nickname, norm)\n"
    "  SELECT $1, $2, $3 FROM up RETURNING 1)\n"
    "SELECT (SELECT at FROM up) AS changed_at,\n"
    "       (SELECT extract(epoch FROM changed_at)::bigint FROM prev) AS prev_changed_at,\n"
    "       (SELECT count(*) FROM hist) AS history",
    4};

typedef struct {
    lobby_nick_store_cb cb;
    void *ud;
} store_req_t;

static void store_done(int status, const PGresult *res, const char *err, void *ud)
{
    store_req_t *q = ud;
    if (status != WY_OK)
        q->cb(status, 0, err, q->ud);
    else if (wy_pg_isnull(res, 0, "changed_at"))
        q->cb(WY_ELIMIT, wy_pg_int64(res, 0, "prev_changed_at"), NULL, q->ud);
    else
        q->cb(WY_OK, wy_pg_int64(res, 0, "changed_at"), NULL, q->ud);
    wy_free(q);
}

int lobby_nick_store(lobby_t *lb, const char *account, const char *display, const char *norm,
                     lobby_nick_store_cb cb, void *ud)
{
    store_req_t *q = wy_calloc(1, sizeof *q);
    q->cb = cb;
    q->ud = ud;
    char cooldown[24];
    snprintf(cooldown, sizeof cooldown, "%lld", (long long)lb->cfg->nick_cooldown_ms);
    const char *params[] = {account, display, norm, cooldown};
    int rc = pg_exec(lb, &SET_SQL, params, store_done, q);
    if (rc != WY_OK)
        wy_free(q);
    return rc;
}
