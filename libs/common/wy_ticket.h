/* wy_ticket — join tickets: what lobby hands a player to enter a game instance. A ticket is
 * a compact JWS (EdDSA/Ed25519, on wy_jwt) signed by lobby with a private key named by its
 * kid, verified locally by the game instance with the public half (key files as auth's:
 * a folder of <kid>.pem, wy_token_keyset_load_dir). It is short-lived, bound to one
 * account, character, zone instance and game instance incarnation, and used once: the
 * verifying game keeps the ids of the tickets it accepted until they expire
 * (wy_ticket_used_t). Contract and key rotation: services/game/README.md. */
#ifndef WY_TICKET_H
#define WY_TICKET_H

#include "wy_jwt.h"

#define WY_TICKET_ID_MAX     64    /* account, character, game id, incarnation (bytes) */
#define WY_TICKET_ZONE_MAX   32    /* zone id */
#define WY_TICKET_INST_MAX   64    /* zone instance "<zone>#<n>" */
#define WY_TICKET_NAME_MAX   64    /* the character's display name (bytes of UTF-8) */
#define WY_TICKET_JTI_LEN    22    /* 128 random bits, base64url */
#define WY_TICKET_MAX_LEN    2048u /* longest ticket a verifier reads (bytes) */
#define WY_TICKET_TTL_MAX_MS (10 * 60 * 1000)
#define WY_TICKET_ISS        "wy-lobby"
#define WY_TICKET_AUD        "wy-game"

/* The claims of a ticket. Strings are NUL-terminated; an over-long claim makes a ticket
 * malformed, never truncated. Times are wall-clock milliseconds. */
typedef struct {
    char account[WY_TICKET_ID_MAX + 1];
    char character[WY_TICKET_ID_MAX + 1];
    char name[WY_TICKET_NAME_MAX + 1]; /* the character's display name (claim "name"); may be
                                          empty: a ticket without the claim verifies with "" */
    char zone[WY_TICKET_ZONE_MAX + 1];
    char instance[WY_TICKET_INST_MAX + 1];  /* zone instance */
    char game[WY_TICKET_ID_MAX + 1];        /* game instance id (its WY_INSTANCE_ID) */
    char incarnation[WY_TICKET_ID_MAX + 1]; /* the game process's random id at its start */
    double x, y;                            /* where the player appears (metres) */
    char jti[WY_TICKET_JTI_LEN + 1];        /* the ticket's id: single use */
    char kid[WY_JWT_KID_MAX + 1];           /* the key that signed it */
    int64_t iat_ms, exp_ms;
} wy_ticket_t;

/* Why a ticket was refused (verify and the used set); the client sees this kind. */
typedef enum {
    WY_TICKET_OK = 0,
    WY_TICKET_MALFORMED,      /* not a ticket: syntax, missing or over-long claim */
    WY_TICKET_FORGED,         /* unknown kid, algorithm or bad signature (forged, tampered) */
    WY_TICKET_EXPIRED,        /* past exp (or issued in the future beyond the leeway) */
    WY_TICKET_WRONG_INSTANCE, /* for another game instance, or an earlier incarnation of it */
    WY_TICKET_REPLAYED,       /* already used on this instance */
    WY_TICKET_BUSY,           /* the used set is full of live tickets: retry shortly */
} wy_ticket_fault_t;

/* "malformed", "forged", ...; never NULL. */
const char *wy_ticket_fault_name(wy_ticket_fault_t f);

/* Signs a ticket for t's account, character, name, zone, instance, game, incarnation and x/y
 * (the other fields of t are ignored and set: jti random, kid, iat_ms = now_ms,
 * exp_ms = now_ms + ttl_ms) with the EdDSA private key kid of ks. now_ms 0 = wall clock;
 * ttl_ms 1..WY_TICKET_TTL_MAX_MS. *out gets a new string (caller frees with wy_free);
 * out_claims (may be NULL) the claims signed. Returns WY_OK, WY_EINVAL (empty or over-long
 * field, bad ttl, key not EdDSA), WY_ENOTFOUND (unknown kid), WY_EPERM (public key only).
 * Any thread if ks is not being modified. */
int wy_ticket_sign(const wy_jwt_keyset_t *ks, const char *kid, const wy_ticket_t *t, int64_t ttl_ms,
                   int64_t now_ms, char **out, wy_ticket_t *out_claims, const char **err);

typedef struct {
    const char *game;        /* required: this game instance's id */
    const char *incarnation; /* required: this process's incarnation id */
    int64_t now_ms;          /* 0 = wall clock */
    int64_t leeway_ms;       /* clock skew tolerated on exp and iat (0 = none) */
} wy_ticket_verify_opts_t;

/* Verifies a ticket of len bytes (need not be NUL-terminated): length cap, signature by a
 * key of ks (EdDSA only), iss/aud, every claim present and in bounds, time, then that it
 * names this game instance and incarnation. Does NOT check single use: pass the ticket to
 * wy_ticket_used_claim. On WY_OK *out holds the claims; on failure *out is zeroed, *fault
 * says why (may be NULL) and *err gets a static reason. Returns WY_OK, WY_EINVAL
 * (malformed), WY_EAUTH (forged, tampered, expired), WY_EPERM (wrong instance).
 * Any thread if ks is not being modified. */
int wy_ticket_verify(const wy_jwt_keyset_t *ks, const char *token, size_t len,
                     const wy_ticket_verify_opts_t *opts, wy_ticket_t *out,
                     wy_ticket_fault_t *fault, const char **err);

/* ---- single use ----
 * The ids of accepted tickets, each kept until its exp (plus the leeway) has passed, so
 * a ticket is accepted at most once by a game process; a restarted process has a new
 * incarnation, so tickets of the old one fail verify instead. Bounded: when full of
 * tickets that have not expired, a new one is refused (WY_TICKET_BUSY) rather than an old
 * id forgotten (forgetting would let it be replayed). One owner thread (the loop). */
typedef struct wy_ticket_used wy_ticket_used_t;

/* capacity >= 1: tickets remembered at most. Caller frees with wy_ticket_used_free. */
wy_ticket_used_t *wy_ticket_used_new(size_t capacity, int64_t leeway_ms);
void wy_ticket_used_free(wy_ticket_used_t *u); /* NULL is fine */
/* Marks t (verified) used: drops the ids expired at now_ms (0 = wall clock) first.
 * Returns WY_OK (first use), WY_EEXIST (replayed; *fault = WY_TICKET_REPLAYED) or WY_ELIMIT
 * (full; *fault = WY_TICKET_BUSY). fault may be NULL. */
int wy_ticket_used_claim(wy_ticket_used_t *u, const wy_ticket_t *t, int64_t now_ms,
                         wy_ticket_fault_t *fault);
size_t wy_ticket_used_count(const wy_ticket_used_t *u);

#endif
