/* wy_ticket — join tickets signed by lobby and verified by game (see wy_ticket.h): claims
 * on wy_jwt's EdDSA signing, and the used-ticket set of a game process. */
#include "wy_ticket.h"
#include "wy_map.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define POS_MAX 1e6 /* metres: larger than any zone (100 km) */

const char *wy_ticket_fault_name(wy_ticket_fault_t f)
{
    switch (f) {
    case WY_TICKET_OK:
        return "ok";
    case WY_TICKET_MALFORMED:
        return "malformed";
    case WY_TICKET_FORGED:
        return "forged";
    case WY_TICKET_EXPIRED:
        return "expired";
    case WY_TICKET_WRONG_INSTANCE:
        return "wrong_instance";
    case WY_TICKET_REPLAYED:
        return "replayed";
    case WY_TICKET_BUSY:
        return "busy";
    }
    return "?";
}

static bool fits(const char *s, size_t max)
{
    return s[0] && strnlen(s, max + 1) <= max;
}

static int64_t wall_ms(void)
{
    return (int64_t)wy_wall_ms();
}

int wy_ticket_sign(const wy_jwt_keyset_t *ks, const char *kid, const wy_ticket_t *t, int64_t ttl_ms,
                   int64_t now_ms, char **out, wy_ticket_t *out_claims, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    *out = NULL;
    if (!fits(t->account, WY_TICKET_ID_MAX) || !fits(t->character, WY_TICKET_ID_MAX) ||
        !fits(t->zone, WY_TICKET_ZONE_MAX) || !fits(t->instance, WY_TICKET_INST_MAX) ||
        !fits(t->game, WY_TICKET_ID_MAX) || !fits(t->incarnation, WY_TICKET_ID_MAX) ||
        strnlen(t->name, WY_TICKET_NAME_MAX + 1) > WY_TICKET_NAME_MAX || !isfinite(t->x) ||
        !isfinite(t->y) || fabs(t->x) > POS_MAX || fabs(t->y) > POS_MAX || ttl_ms < 1 ||
        ttl_ms > WY_TICKET_TTL_MAX_MS || !kid || !fits(kid, WY_JWT_KID_MAX)) {
        *err = "bad ticket fields (empty or over-long id, position or ttl out of bounds)";
        return WY_EINVAL;
    }
    int rc = wy_jwt_keyset_signer(ks, kid, WY_JWT_ALG_EDDSA, err);
    if (rc != WY_OK)
        return rc;
    if (now_ms == 0)
        now_ms = wall_ms();
    wy_ticket_t c = *t;
    wy_jwt_new_jti(c.jti);
    snprintf(c.kid, sizeof c.kid, "%s", kid);
    c.iat_ms = now_ms;
    c.exp_ms = now_ms + ttl_ms;
    json_t *claims = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:f, s:f, s:s, s:I, s:I}", "iss",
        WY_TICKET_ISS, "aud", WY_TICKET_AUD, "sub", c.account, "chr", c.character, "name", c.name,
        "zone", c.zone, "zin", c.instance, "gid", c.game, "ginc", c.incarnation, "x", c.x, "y", c.y,
        "jti", c.jti, "iat_ms", (json_int_t)c.iat_ms, "exp_ms", (json_int_t)c.exp_ms);
    if (!claims) {
        *err = "ticket fields are not valid UTF-8";
        return WY_EINVAL;
    }
    rc = wy_jwt_sign(ks, kid, claims, out, err);
    json_decref(claims);
    if (rc == WY_OK && out_claims)
        *out_claims = c;
    return rc;
}

/* Copies the string claim name (1..max bytes) into dst; false if missing or bad. */
static bool claim_str(const json_t *claims, const char *name, char *dst, size_t max)
{
    const json_t *v = json_object_get(claims, name);
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v);
    if (n == 0 || n > max || memchr(json_string_value(v), '\0', n))
        return false;
    memcpy(dst, json_string_value(v), n + 1);
    return true;
}

/* An optional string claim (0..max bytes; absent: ""); false if of the wrong type or bad. */
static bool claim_opt_str(const json_t *claims, const char *name, char *dst, size_t max)
{
    const json_t *v = json_object_get(claims, name);
    dst[0] = '\0';
    if (!v)
        return true;
    if (!json_is_string(v) || json_string_length(v) > max ||
        memchr(json_string_value(v), '\0', json_string_length(v)))
        return false;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return true;
}

static bool claim_int(const json_t *claims, const char *name, int64_t *dst)
{
    const json_t *v = json_object_get(claims, name);
    if (!json_is_integer(v))
        return false;
    *dst = (int64_t)json_integer_value(v);
    return true;
}

static bool claim_pos(const json_t *claims, const char *name, double *dst)
{
    const json_t *v = json_object_get(claims, name);
    if (!json_is_number(v))
        return false;
    *dst = json_number_value(v);
    return isfinite(*dst) && fabs(*dst) <= POS_MAX;
}

static int refuse(wy_ticket_t *out, wy_ticket_fault_t *fault, wy_ticket_fault_t f, const char **err,
                  const char *why, int rc)
{
    memset(out, 0, sizeof *out);
    if (fault)
        *fault = f;
    *err = why;
    return rc;
}

int wy_ticket_verify(const wy_jwt_keyset_t *ks, const char *token, size_t len,
                     const wy_ticket_verify_opts_t *opts, wy_ticket_t *out,
                     wy_ticket_fault_t *fault, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (!ks || !opts || !opts->game || !opts->incarnation)
        return refuse(out, fault, WY_TICKET_MALFORMED, err, "no verification keys or instance",
                      WY_EINVAL);
    wy_jwt_verify_opts_t vo = {.allowed_algs = WY_JWT_ALG_EDDSA, .max_len = WY_TICKET_MAX_LEN};
    wy_jwt_t jwt;
    const char *why = NULL;
    int rc = wy_jwt_verify(ks, token, len, &vo, &jwt, &why);
    if (rc == WY_EAUTH)
        return refuse(out, fault, WY_TICKET_FORGED, err, why, WY_EAUTH);
    if (rc != WY_OK)
        return refuse(out, fault, WY_TICKET_MALFORMED, err, why ? why : "malformed ticket",
                      WY_EINVAL);
    wy_ticket_t c;
    memset(&c, 0, sizeof c);
    char iss[16] = "", aud[16] = "";
    const json_t *cl = jwt.claims;
    bool ok = claim_str(cl, "iss", iss, sizeof iss - 1) &&
              claim_str(cl, "aud", aud, sizeof aud - 1) &&
              claim_str(cl, "sub", c.account, WY_TICKET_ID_MAX) &&
              claim_str(cl, "chr", c.character, WY_TICKET_ID_MAX) &&
              claim_opt_str(cl, "name", c.name, WY_TICKET_NAME_MAX) &&
              claim_str(cl, "zone", c.zone, WY_TICKET_ZONE_MAX) &&
              claim_str(cl, "zin", c.instance, WY_TICKET_INST_MAX) &&
              claim_str(cl, "gid", c.game, WY_TICKET_ID_MAX) &&
              claim_str(cl, "ginc", c.incarnation, WY_TICKET_ID_MAX) &&
              claim_str(cl, "jti", c.jti, WY_TICKET_JTI_LEN) && claim_pos(cl, "x", &c.x) &&
              claim_pos(cl, "y", &c.y) && claim_int(cl, "iat_ms", &c.iat_ms) &&
              claim_int(cl, "exp_ms", &c.exp_ms);
    snprintf(c.kid, sizeof c.kid, "%s", jwt.kid);
    wy_jwt_clear(&jwt);
    if (!ok)
        return refuse(out, fault, WY_TICKET_MALFORMED, err,
                      "not a join ticket: a claim is missing, of the wrong type or too long",
                      WY_EINVAL);
    if (strcmp(iss, WY_TICKET_ISS) != 0 || strcmp(aud, WY_TICKET_AUD) != 0)
        return refuse(out, fault, WY_TICKET_MALFORMED, err,
                      "not a join ticket: wrong issuer or audience", WY_EINVAL);
    int64_t now = opts->now_ms ? opts->now_ms : wall_ms();
    int64_t lw = opts->leeway_ms > 0 ? opts->leeway_ms : 0;
    if (now >= c.exp_ms + lw)
        return refuse(out, fault, WY_TICKET_EXPIRED, err, "ticket expired", WY_EAUTH);
    if (c.iat_ms > now + lw || c.exp_ms - c.iat_ms > WY_TICKET_TTL_MAX_MS || c.exp_ms <= c.iat_ms)
        return refuse(out, fault, WY_TICKET_EXPIRED, err,
                      "ticket issued in the future or for too long", WY_EAUTH);
    if (strcmp(c.game, opts->game) != 0)
        return refuse(out, fault, WY_TICKET_WRONG_INSTANCE, err,
                      "ticket is for another game instance", WY_EPERM);
    if (strcmp(c.incarnation, opts->incarnation) != 0)
        return refuse(out, fault, WY_TICKET_WRONG_INSTANCE, err,
                      "ticket is for an earlier run of this game instance", WY_EPERM);
    *out = c;
    if (fault)
        *fault = WY_TICKET_OK;
    *err = NULL;
    return WY_OK;
}

/* ---- the used set: a map of ids and a min-heap by expiry ---- */

typedef struct {
    int64_t until_ms; /* exp + leeway: after it the ticket fails verify anyway */
    char jti[WY_TICKET_JTI_LEN + 1];
} used_t;

struct wy_ticket_used {
    wy_map_t *ids; /* jti -> NULL */
    used_t *heap;  /* min-heap by until_ms */
    size_t n, cap;
    int64_t leeway_ms;
};

wy_ticket_used_t *wy_ticket_used_new(size_t capacity, int64_t leeway_ms)
{
    wy_ticket_used_t *u = wy_calloc(1, sizeof *u);
    u->cap = capacity ? capacity : 1;
    u->ids = wy_map_new(u->cap);
    u->heap = wy_calloc(u->cap, sizeof *u->heap);
    u->leeway_ms = leeway_ms > 0 ? leeway_ms : 0;
    return u;
}

void wy_ticket_used_free(wy_ticket_used_t *u)
{
    if (!u)
        return;
    wy_map_free(u->ids);
    wy_free(u->heap);
    wy_free(u);
}

size_t wy_ticket_used_count(const wy_ticket_used_t *u)
{
    return u->n;
}

static void heap_swap(used_t *a, used_t *b)
{
    used_t t = *a;
    *a = *b;
    *b = t;
}

static void heap_pop(wy_ticket_used_t *u)
{
    u->heap[0] = u->heap[--u->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < u->n && u->heap[l].until_ms < u->heap[m].until_ms)
            m = l;
        if (r < u->n && u->heap[r].until_ms < u->heap[m].until_ms)
            m = r;
        if (m == i)
            break;
        heap_swap(&u->heap[i], &u->heap[m]);
        i = m;
    }
}

static void heap_push(wy_ticket_used_t *u, const used_t *e)
{
    size_t i = u->n++;
    u->heap[i] = *e;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (u->heap[p].until_ms <= u->heap[i].until_ms)
            break;
        heap_swap(&u->heap[p], &u->heap[i]);
        i = p;
    }
}

int wy_ticket_used_claim(wy_ticket_used_t *u, const wy_ticket_t *t, int64_t now_ms,
                         wy_ticket_fault_t *fault)
{
    if (now_ms == 0)
        now_ms = wall_ms();
    while (u->n > 0 && u->heap[0].until_ms <= now_ms) {
        wy_map_del_str(u->ids, u->heap[0].jti, NULL);
        heap_pop(u);
    }
    if (wy_map_find(u->ids, t->jti, strlen(t->jti), NULL)) {
        if (fault)
            *fault = WY_TICKET_REPLAYED;
        return WY_EEXIST;
    }
    if (u->n >= u->cap) {
        if (fault)
            *fault = WY_TICKET_BUSY;
        return WY_ELIMIT;
    }
    used_t e = {.until_ms = t->exp_ms + u->leeway_ms};
    snprintf(e.jti, sizeof e.jti, "%s", t->jti);
    wy_map_put_str(u->ids, e.jti, NULL);
    heap_push(u, &e);
    if (fault)
        *fault = WY_TICKET_OK;
    return WY_OK;
}
