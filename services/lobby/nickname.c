/* wy-lobby nicknames: the rules (length, scripts, reserved words), the collision key that
 * makes look-alikes collide (NFKC, case fold, accents stripped, confusable digits/letters
 * folded), and their storage in PostgreSQL schema `lobby` (UNIQUE key, cooldown, history).
 * The Unicode steps use libunistring directly; they move to libs/common/wy_text once that
 * module lands (same steps: NFKC + case fold). */
#include "lobby_int.h"

#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#define NICK_MIN_CP    2
#define NICK_MAX_CP    16
#define NICK_MAX_INPUT 64 /* bytes accepted before any Unicode work */

static bool cp_allowed(ucs4_t u)
{
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '_' ||
        u == '-')
        return true;
    if (u >= 0xC0 && u <= 0x24F && u != 0xD7 && u != 0xF7) /* Latin-1 and Latin Extended */
        return true;
    if (u >= 0xAC00 && u <= 0xD7A3) /* Hangul syllables */
        return true;
    if ((u >= 0x1100 && u <= 0x11FF) || (u >= 0x3131 && u <= 0x318E)) /* Hangul jamo */
        return true;
    return false;
}

/* The collision key of an NFKC nickname: case folded, decomposed, combining marks
 * dropped (é ~ e), i/l/1 and o/0 folded together, recomposed (NFC). New string. */
static char *skeleton(const uint8_t *s, size_t n)
{
    size_t fl = 0;
    uint8_t *f = u8_casefold(s, n, NULL, UNINORM_NFKD, NULL, &fl);
    if (!f)
        return NULL;
    uint8_t *o = wy_malloc(fl + 1);
    size_t ol = 0;
    for (size_t i = 0; i < fl;) {
        ucs4_t u;
        int k = u8_mbtouc(&u, f + i, fl - i);
        if (k <= 0)
            break;
        if (u >= 0x300 && u <= 0x36F) {
            i += (size_t)k;
            continue;
        }
        if (u == '1' || u == 'i')
            u = 'l';
        else if (u == '0')
            u = 'o';
        if (u < 0x80)
            o[ol++] = (uint8_t)u;
        else {
            memcpy(o + ol, f + i, (size_t)k);
            ol += (size_t)k;
        }
        i += (size_t)k;
    }
    free(f);
    size_t cl = 0;
    uint8_t *c = u8_normalize(UNINORM_NFC, o, ol, NULL, &cl);
    wy_free(o);
    if (!c)
        return NULL;
    char *out = wy_strndup((const char *)c, cl);
    free(c);
    return out;
}

static const char *const reserved_sub[] = {"admin", "moderator", "wyvern", "gamemaster",
                                           "system", "support", "운영자", "관리자", NULL};
static const char *const reserved_exact[] = {"gm", "mod", "root", "staff", "null", "dev", NULL};

static bool is_reserved(const char *norm)
{
    for (int i = 0; reserved_sub[i]; i++) {
        char *r = skeleton((const uint8_t *)reserved_sub[i], strlen(reserved_sub[i]));
        bool hit = r && strstr(norm, r) != NULL;
        wy_free(r);
        if (hit)
            return true;
    }
    for (int i = 0; reserved_exact[i]; i++) {
        char *r = skeleton((const uint8_t *)reserved_exact[i], strlen(reserved_exact[i]));
        bool hit = r && strcmp(norm, r) == 0;
        wy_free(r);
        if (hit)
            return true;
    }
    return false;
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
    if (u8_check((const uint8_t *)nick, len) != NULL) {
        *err = "nickname is not valid UTF-8";
        return WY_EINVAL;
    }
    size_t dl = 0;
    uint8_t *d = u8_normalize(UNINORM_NFKC, (const uint8_t *)nick, len, NULL, &dl);
    if (!d) {
        *err = "nickname cannot be normalised";
        return WY_EINVAL;
    }
    size_t ncp = 0;
    int rc = WY_OK;
    for (size_t i = 0; i < dl;) {
        ucs4_t u;
        int k = u8_mbtouc(&u, d + i, dl - i);
        if (k <= 0 || !cp_allowed(u)) {
            snprintf(msg, sizeof msg,
                     "character U+%04X is not allowed: use Latin or Hangul letters, digits, "
                     "'_' or '-'",
                     (unsigned)u);
            *err = msg;
            rc = WY_EINVAL;
            break;
        }
        ncp++;
        i += (size_t)k;
    }
    if (rc == WY_OK && (ncp < NICK_MIN_CP || ncp > NICK_MAX_CP)) {
        *err = "nickname must be 2 to 16 characters long";
        rc = WY_EINVAL;
    }
    if (rc == WY_OK && (d[0] == '-' || d[dl - 1] == '-')) {
        *err = "nickname cannot start or end with '-'";
        rc = WY_EINVAL;
    }
    char *sk = rc == WY_OK ? skeleton(d, dl) : NULL;
    if (rc == WY_OK && !sk) {
        *err = "nickname cannot be normalised";
        rc = WY_EINVAL;
    }
    if (rc == WY_OK && is_reserved(sk)) {
        *err = "nickname contains a reserved word";
        rc = WY_EPERM;
    }
    if (rc == WY_OK && (dl + 1 > display_cap || strlen(sk) + 1 > norm_cap)) {
        *err = "nickname is too long";
        rc = WY_EINVAL;
    }
    if (rc == WY_OK) {
        memcpy(display, d, dl);
        display[dl] = 0;
        memcpy(norm, sk, strlen(sk) + 1);
    }
    wy_free(sk);
    free(d);
    return rc;
}

/* ---------------------------------------------------------------- storage */

typedef struct {
    lobby_t *lb;
    lobby_nick_cb cb;
    void *ud;
} load_req_t;

static void load_done(int status, const PGresult *res, const char *err, void *ud)
{
    WY_UNUSED(err);
    load_req_t *q = ud;
    if (status != WY_OK)
        q->cb(status, NULL, NULL, q->ud);
    else if (PQntuples(res) == 0)
        q->cb(WY_ENOTFOUND, NULL, NULL, q->ud);
    else
        q->cb(WY_OK, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), q->ud);
    wy_free(q);
}

int lobby_nick_load(lobby_t *lb, const char *account, lobby_nick_cb cb, void *ud)
{
    load_req_t *q = wy_calloc(1, sizeof *q);
    q->lb = lb;
    q->cb = cb;
    q->ud = ud;
    const char *params[] = {account};
    int rc = wy_pg_query(wy_daemon_pg(lb->d),
                         "SELECT nickname, norm FROM lobby.nicknames WHERE account_id = $1", 1,
                         params, load_done, q);
    if (rc != WY_OK)
        wy_free(q);
    return rc;
}

/* One statement, so one implicit transaction: the cooldown check, the upsert guarded by
 * UNIQUE(norm) and the history row happen together or not at all. */
static const char SET_SQL[] =
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
    "SELECT (SELECT at FROM up), (SELECT extract(epoch FROM changed_at)::bigint FROM prev),\n"
    "       (SELECT count(*) FROM hist)";

typedef struct {
    lobby_conn_t *c;
    uint32_t req;
    char display[LOBBY_NICK_MAX + 1];
    char norm[LOBBY_NICK_MAX * 4 + 1];
} set_req_t;

static void set_done(int status, const PGresult *res, const char *err, void *ud)
{
    set_req_t *q = ud;
    lobby_conn_t *c = q->c;
    int64_t cooldown_s = c->lb->cfg->nick_cooldown_ms / 1000;
    c->nick_busy = false;
    if (status == WY_EEXIST) {
        lobby_send_status(c, q->req, WYVERN__LOBBY__CODE__ALREADY_EXISTS,
                          "nickname is taken (or too similar to a taken one)");
    } else if (status != WY_OK) {
        wy_log_warn("nickname update failed", "account", c->account, "error",
                    err ? err : wy_strerror(status), NULL);
        lobby_send_status(c, q->req, WYVERN__LOBBY__CODE__UNAVAILABLE,
                          "nickname store unavailable, retry");
    } else if (PQgetisnull(res, 0, 0)) {
        int64_t prev = PQgetisnull(res, 0, 1) ? 0 : strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        char m[128];
        snprintf(m, sizeof m, "nickname was changed recently; next change allowed at %lld",
                 (long long)(prev + cooldown_s));
        lobby_send_status(c, q->req, WYVERN__LOBBY__CODE__RATE_LIMITED, m);
    } else {
        int64_t at = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        char old_norm[sizeof c->nick_norm];
        snprintf(old_norm, sizeof old_norm, "%s", c->nick_norm);
        snprintf(c->nick, sizeof c->nick, "%s", q->display);
        snprintf(c->nick_norm, sizeof c->nick_norm, "%s", q->norm);
        wy_log_info("nickname set", "account", c->account, "nickname", c->nick, NULL);
        if (c->ws && c->state == LOBBY_ST_READY) {
            lobby_session_write_nick(c, old_norm);
            Wyvern__Lobby__NicknameSet ns = WYVERN__LOBBY__NICKNAME_SET__INIT;
            ns.nickname = c->nick;
            ns.next_change_at = at + cooldown_s;
            Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
            Wyvern__Lobby__ServerMessage m = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
            m.request_id = q->req;
            m.status = &st;
            m.body_case = WYVERN__LOBBY__SERVER_MESSAGE__BODY_NICKNAME_SET;
            m.nickname_set = &ns;
            lobby_send(c, &m);
        }
    }
    wy_free(q);
    lobby_conn_unref(c);
}

void lobby_nick_set(lobby_conn_t *c, uint32_t req, const char *nick)
{
    set_req_t *q = wy_calloc(1, sizeof *q);
    const char *e = NULL;
    int rc = lobby_nick_check(nick, strlen(nick), q->display, sizeof q->display, q->norm,
                              sizeof q->norm, &e);
    if (rc != WY_OK) {
        lobby_send_status(c, req, lobby_code(rc), e);
        wy_free(q);
        return;
    }
    if (c->nick_busy) {
        lobby_send_status(c, req, WYVERN__LOBBY__CODE__CONFLICT,
                          "a nickname change is already in progress");
        wy_free(q);
        return;
    }
    q->c = c;
    q->req = req;
    char cooldown[24];
    snprintf(cooldown, sizeof cooldown, "%lld", (long long)c->lb->cfg->nick_cooldown_ms);
    const char *params[] = {c->account, q->display, q->norm, cooldown};
    rc = wy_pg_query(wy_daemon_pg(c->lb->d), SET_SQL, 4, params, set_done, q);
    if (rc != WY_OK) {
        lobby_send_status(c, req, lobby_code(rc), "nickname store busy, retry");
        wy_free(q);
        return;
    }
    c->nick_busy = true;
    lobby_conn_ref(c);
}
