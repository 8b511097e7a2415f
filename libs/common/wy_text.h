/* wy_text — Unicode text for identifiers people type (usernames, nicknames): UTF-8
 * validation, NFKC normalisation and case folding (so look-alikes compare equal), and
 * character classes and scripts for allowed-character rules. Built on libunistring. */
#ifndef WY_TEXT_H
#define WY_TEXT_H

#include "wy_core.h"

/* Character classes (bit set), from the Unicode general category. */
enum {
    WY_TEXT_LETTER = 1u << 0,  /* L*  */
    WY_TEXT_MARK = 1u << 1,    /* M*  (combining marks: needed by many scripts) */
    WY_TEXT_DIGIT = 1u << 2,   /* Nd  */
    WY_TEXT_NUMBER = 1u << 3,  /* Nl, No */
    WY_TEXT_PUNCT = 1u << 4,   /* P*  */
    WY_TEXT_SYMBOL = 1u << 5,  /* S*  */
    WY_TEXT_SPACE = 1u << 6,   /* Zs  */
    WY_TEXT_CONTROL = 1u << 7, /* Cc, Cf, Zl, Zp, Cs, Co, Cn: never allowed by a rule */
};

/* True when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF)
 * and holds no NUL byte. Any thread. */
bool wy_text_valid_utf8(const char *s, size_t len);

/* Number of code points of valid UTF-8 s (NUL-terminated). */
size_t wy_text_length(const char *s);

/* Decodes the code point at s[*pos] (s NUL-terminated, valid UTF-8), advances *pos.
 * Returns false at the end of the string. */
bool wy_text_next(const char *s, size_t *pos, uint32_t *cp);

/* Class (one WY_TEXT_* bit) of a code point. */
unsigned wy_text_class(uint32_t cp);

/* Unicode script name of a code point ("Latin", "Cyrillic", "Hangul", "Common",
 * "Inherited", ...), "Unknown" when unassigned. Static string. */
const char *wy_text_script(uint32_t cp);

/* NFKC normalisation of s[0..len): compatibility forms folded ("Ｐ" -> "P",
 * "ﬁ" -> "fi"), composed. *out gets a new NUL-terminated string (caller wy_free's it).
 * Returns WY_OK or WY_EINVAL (invalid UTF-8 or NUL byte). Any thread. */
int wy_text_nfkc(const char *s, size_t len, char **out);

/* NFC normalisation (canonical only: keeps what the person typed, composed). Same
 * contract as wy_text_nfkc. For display copies. */
int wy_text_nfc(const char *s, size_t len, char **out);
/* Canonical decomposition (NFD): base letters and their combining marks apart,
 * e.g. to drop accents. Same contract as wy_text_nfkc. */
int wy_text_nfd(const char *s, size_t len, char **out);

/* Identity key: NFKC, then full case folding, then NFKC again (Unicode's
 * NFKC_Casefold idea). Two strings that read the same to a person modulo case and
 * compatibility forms get the same key ("Ｐlayer" and "PLAYER" -> "player"). Same
 * contract as wy_text_nfkc. */
int wy_text_fold(const char *s, size_t len, char **out);

/* Rules for an identifier. */
typedef struct {
    size_t min_chars, max_chars; /* code points, inclusive; max 0 = unlimited */
    size_t max_bytes;            /* UTF-8 bytes; 0 = unlimited */
    unsigned classes;            /* WY_TEXT_* classes allowed anywhere */
    const char *extra;           /* ASCII characters also allowed ("_-."), may be NULL */
    bool first_alnum;            /* first code point must be a letter or a digit */
    /* Letters of alphabetic scripts must all come from one script, so "pаypal" with a
     * Cyrillic "а" is refused. Common/Inherited characters and the East Asian scripts
     * (Han, Hiragana, Katakana, Hangul, Bopomofo) are not counted: they mix freely with
     * each other and with one alphabet ("김abc", "ゲームHero"). */
    bool single_script;
} wy_text_rules_t;

/* Checks s (NUL-terminated) against rules. Returns WY_OK, or WY_EINVAL with *why set to
 * a static message a person can act on ("must be 3 to 24 characters"). The length rules
 * apply to s as given: pass the normalised form to count what will be stored. */
int wy_text_check(const char *s, const wy_text_rules_t *rules, const char **why);

#endif
