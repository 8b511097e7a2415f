/* wy_text — UTF-8 validation, NFKC / case folding and character classes over
 * libunistring (see wy_text.h). */
#include "wy_text.h"

#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

bool wy_text_valid_utf8(const char *s, size_t len)
{
    if (!s)
        return false;
    if (memchr(s, 0, len))
        return false;
    return u8_check((const uint8_t *)s, len) == NULL;
}

bool wy_text_next(const char *s, size_t *pos, uint32_t *cp)
{
    if (!s[*pos])
        return false;
    ucs4_t uc;
    int n = u8_mbtouc(&uc, (const uint8_t *)s + *pos, strlen(s + *pos));
    *pos += (size_t)(n > 0 ? n : 1);
    *cp = uc;
    return true;
}

size_t wy_text_length(const char *s)
{
    return u8_mbsnlen((const uint8_t *)s, strlen(s));
}

unsigned wy_text_class(uint32_t cp)
{
    if (uc_is_general_category(cp, UC_CATEGORY_L))
        return WY_TEXT_LETTER;
    if (uc_is_general_category(cp, UC_CATEGORY_M))
        return WY_TEXT_MARK;
    if (uc_is_general_category(cp, UC_CATEGORY_Nd))
        return WY_TEXT_DIGIT;
    if (uc_is_general_category(cp, UC_CATEGORY_N))
        return WY_TEXT_NUMBER;
    if (uc_is_general_category(cp, UC_CATEGORY_P))
        return WY_TEXT_PUNCT;
    if (uc_is_general_category(cp, UC_CATEGORY_S))
        return WY_TEXT_SYMBOL;
    if (uc_is_general_category(cp, UC_CATEGORY_Zs))
        return WY_TEXT_SPACE;
    return WY_TEXT_CONTROL;
}

const char *wy_text_script(uint32_t cp)
{
    const uc_script_t *sc = uc_script(cp);
    return sc ? sc->name : "Unknown";
}

static int normalize(uninorm_t nf, bool fold, const char *s, size_t len, char **out)
{
    *out = NULL;
    if (!wy_text_valid_utf8(s, len))
        return WY_EINVAL;
    size_t n = 0;
    uint8_t *r;
    if (fold)
        r = u8_casefold((const uint8_t *)s, len, NULL, nf, NULL, &n);
    else
        r = u8_normalize(nf, (const uint8_t *)s, len, NULL, &n);
    if (!r && len != 0)
        return WY_EINVAL;
    *out = wy_strndup(r ? (const char *)r : "", r ? n : 0);
    free(r);
    return WY_OK;
}

int wy_text_nfkc(const char *s, size_t len, char **out)
{
    return normalize(UNINORM_NFKC, false, s, len, out);
}

int wy_text_nfc(const char *s, size_t len, char **out)
{
    return normalize(UNINORM_NFC, false, s, len, out);
}

int wy_text_nfd(const char *s, size_t len, char **out)
{
    return normalize(UNINORM_NFD, false, s, len, out);
}

int wy_text_fold(const char *s, size_t len, char **out)
{
    *out = NULL;
    char *k = NULL;
    int rc = wy_text_nfkc(s, len, &k);
    if (rc != WY_OK)
        return rc;
    /* u8_casefold normalises its result with the given form after folding. */
    rc = normalize(UNINORM_NFKC, true, k, strlen(k), out);
    wy_free(k);
    return rc;
}

/* East Asian scripts are written together and next to Latin letters ("김abc",
 * "ゲームHero"); they are not confusable with the alphabets, so they never count as a
 * second script. Mixing two alphabets (Latin + Cyrillic) is what look-alikes are made of. */
static bool script_is_cjk(const char *name)
{
    return !strcmp(name, "Han") || !strcmp(name, "Hiragana") || !strcmp(name, "Katakana") ||
           !strcmp(name, "Hangul") || !strcmp(name, "Bopomofo");
}

int wy_text_check(const char *s, const wy_text_rules_t *r, const char **why)
{
    size_t len = strlen(s);
    if (!wy_text_valid_utf8(s, len)) {
        *why = "is not valid UTF-8";
        return WY_EINVAL;
    }
    if (r->max_bytes && len > r->max_bytes) {
        *why = "is too long";
        return WY_EINVAL;
    }
    size_t chars = wy_text_length(s);
    if (chars < r->min_chars) {
        *why = "is too short";
        return WY_EINVAL;
    }
    if (r->max_chars && chars > r->max_chars) {
        *why = "is too long";
        return WY_EINVAL;
    }
    size_t pos = 0;
    uint32_t cp;
    bool first = true;
    const char *script = NULL;
    while (wy_text_next(s, &pos, &cp)) {
        unsigned cls = wy_text_class(cp);
        bool extra = cp < 0x80 && r->extra && cp != 0 && strchr(r->extra, (int)cp);
        if (first && r->first_alnum && !(cls & (WY_TEXT_LETTER | WY_TEXT_DIGIT))) {
            *why = "must start with a letter or a digit";
            return WY_EINVAL;
        }
        first = false;
        if (extra)
            continue;
        if (cls == WY_TEXT_CONTROL || !(cls & r->classes)) {
            *why = "contains a character that is not allowed";
            return WY_EINVAL;
        }
        if (r->single_script && cls == WY_TEXT_LETTER) {
            const char *sc = wy_text_script(cp);
            if (!strcmp(sc, "Common") || !strcmp(sc, "Inherited") || script_is_cjk(sc))
                continue;
            if (!script) {
                script = sc;
            } else if (strcmp(script, sc) != 0) {
                *why = "mixes letters of different scripts";
                return WY_EINVAL;
            }
        }
    }
    return WY_OK;
}
