/* wy-chat word filter (filter.h): each code point of a message becomes zero or more
 * "skeleton" code points (its look-alike class), each remembering the code point it came
 * from; the words are turned into skeletons the same way and searched for in the message's
 * skeleton, and a match masks the original code points it spans. */
#include "filter.h"
#include "wy_text.h"

#include <string.h>

typedef struct {
    uint32_t *cp;
    size_t n;
} word_t;

struct chat_filter {
    word_t *words;
    size_t n;
};

typedef struct {
    uint32_t *cp;   /* skeleton */
    size_t *origin; /* index of the original code point of each */
    size_t n, cap;
} skel_t;

static void skel_push(skel_t *s, uint32_t cp, size_t origin)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->cp = wy_realloc(s->cp, s->cap * sizeof *s->cp);
        s->origin = wy_realloc(s->origin, s->cap * sizeof *s->origin);
    }
    s->cp[s->n] = cp;
    s->origin[s->n++] = origin;
}

/* Look-alike class of one letter or digit that is already NFKC, case folded and without its
 * accents; 0 when the code point is not a letter or digit (dropped: spaces, punctuation,
 * invisible characters separate nothing). */
static uint32_t fold_one(uint32_t c)
{
    static const struct {
        uint32_t from, to;
    } map[] = {
        /* digits and symbols used for letters */
        {'0', 'o'},
        {'1', 'i'},
        {'3', 'e'},
        {'4', 'a'},
        {'5', 's'},
        {'7', 't'},
        {'@', 'a'},
        {'$', 's'},
        {'|', 'i'},
        {'l', 'i'},
        /* Cyrillic */
        {0x0430, 'a'},
        {0x0432, 'b'},
        {0x0435, 'e'},
        {0x043A, 'k'},
        {0x043C, 'm'},
        {0x043D, 'h'},
        {0x043E, 'o'},
        {0x0440, 'p'},
        {0x0441, 'c'},
        {0x0442, 't'},
        {0x0443, 'y'},
        {0x0445, 'x'},
        {0x0455, 's'},
        {0x0456, 'i'},
        {0x0458, 'j'},
        {0x0501, 'd'},
        {0x04CF, 'i'},
        /* Greek */
        {0x03B1, 'a'},
        {0x03B2, 'b'},
        {0x03B5, 'e'},
        {0x03B9, 'i'},
        {0x03BA, 'k'},
        {0x03BD, 'v'},
        {0x03BF, 'o'},
        {0x03C1, 'p'},
        {0x03C4, 't'},
        {0x03C5, 'u'},
        {0x03C7, 'x'},
        /* Latin variants */
        {0x0261, 'g'},
        {0x0131, 'i'},
        {0x0251, 'a'},
        /* Hangul vowels and the circle that read as Latin letters */
        {0x1175, 'i'},
        {0x110B, 'o'},
    };
    /* Hangul final consonants (jongseong) written as initial ones (choseong) look the same:
     * fold the finals that have a single-consonant initial. */
    static const uint16_t final_to_initial[] = {
        /* 11A8 */ 0x1100, 0x1101, 0,      0x1102, 0,      0,      0x1103, 0x1105,
        /* 11B0 */ 0,      0,      0,      0,      0,      0,      0,      0x1106,
        /* 11B8 */ 0x1107, 0,      0x1109, 0x110A, 0x110B, 0x110C, 0x110E, 0x110F,
        /* 11C0 */ 0x1110, 0x1111, 0x1112,
    };
    if (c >= 0x11A8 && c <= 0x11C2 && final_to_initial[c - 0x11A8])
        c = final_to_initial[c - 0x11A8];
    for (size_t i = 0; i < WY_ARRAY_LEN(map); i++)
        if (map[i].from == c)
            return map[i].to;
    if (c < 0x80) {
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            return c;
        if (c >= 'A' && c <= 'Z')
            return c + 32;
        return 0;
    }
    unsigned cls = wy_text_class(c);
    return (cls & (WY_TEXT_LETTER | WY_TEXT_DIGIT | WY_TEXT_NUMBER)) ? c : 0;
}

/* Appends the skeleton of code point c (the origin-th of its text). */
static void skel_cp(skel_t *s, uint32_t c, size_t origin)
{
    if (c < 0x80) {
        uint32_t f = fold_one(c);
        if (f)
            skel_push(s, f, origin);
        return;
    }
    char one[5];
    size_t len = 0;
    if (c < 0x800) {
        one[len++] = (char)(0xC0 | (c >> 6));
    } else if (c < 0x10000) {
        one[len++] = (char)(0xE0 | (c >> 12));
        one[len++] = (char)(0x80 | ((c >> 6) & 0x3F));
    } else {
        one[len++] = (char)(0xF0 | (c >> 18));
        one[len++] = (char)(0x80 | ((c >> 12) & 0x3F));
        one[len++] = (char)(0x80 | ((c >> 6) & 0x3F));
    }
    one[len++] = (char)(0x80 | (c & 0x3F));
    one[len] = '\0';
    char *folded = NULL, *nfd = NULL;
    if (wy_text_fold(one, len, &folded) != WY_OK)
        return;
    if (wy_text_nfd(folded, strlen(folded), &nfd) == WY_OK) {
        size_t pos = 0;
        uint32_t d;
        while (wy_text_next(nfd, &pos, &d)) {
            if (wy_text_class(d) & WY_TEXT_MARK)
                continue; /* accents */
            uint32_t f = fold_one(d);
            if (f)
                skel_push(s, f, origin);
        }
    }
    wy_free(nfd);
    wy_free(folded);
}

static void skel_text(skel_t *s, const char *text)
{
    size_t pos = 0, i = 0;
    uint32_t c;
    while (wy_text_next(text, &pos, &c))
        skel_cp(s, c, i++);
}

static void skel_free(skel_t *s)
{
    wy_free(s->cp);
    wy_free(s->origin);
}

int chat_filter_new(const char *words, chat_filter_t **out, const char **err)
{
    chat_filter_t *f = wy_calloc(1, sizeof *f);
    const char *p = words ? words : "";
    while (*p) {
        size_t len = strcspn(p, ",\n");
        const char *w = p;
        p += len;
        if (*p)
            p++;
        while (len && (*w == ' ' || *w == '\t' || *w == '\r')) {
            w++;
            len--;
        }
        while (len && (w[len - 1] == ' ' || w[len - 1] == '\t' || w[len - 1] == '\r'))
            len--;
        if (!len)
            continue;
        char buf[CHAT_FILTER_WORD_MAX + 1];
        if (len > CHAT_FILTER_WORD_MAX || !wy_text_valid_utf8(w, len)) {
            *err = "a filter word is over 64 bytes or not UTF-8";
            chat_filter_free(f);
            return WY_EINVAL;
        }
        if (f->n == CHAT_FILTER_WORDS_MAX) {
            *err = "more than 4096 filter words";
            chat_filter_free(f);
            return WY_EINVAL;
        }
        memcpy(buf, w, len);
        buf[len] = '\0';
        skel_t s = {0};
        skel_text(&s, buf);
        if (!s.n) {
            *err = "a filter word has no letter or digit";
            skel_free(&s);
            chat_filter_free(f);
            return WY_EINVAL;
        }
        f->words = wy_realloc(f->words, (f->n + 1) * sizeof *f->words);
        f->words[f->n].cp = s.cp;
        f->words[f->n].n = s.n;
        f->n++;
        wy_free(s.origin);
    }
    *out = f;
    return WY_OK;
}

void chat_filter_free(chat_filter_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        wy_free(f->words[i].cp);
    wy_free(f->words);
    wy_free(f);
}

size_t chat_filter_count(const chat_filter_t *f)
{
    return f->n;
}

size_t chat_filter_apply(const chat_filter_t *f, const char *text, char **masked)
{
    if (masked)
        *masked = NULL;
    if (!f->n)
        return 0;
    skel_t s = {0};
    skel_text(&s, text);
    size_t ncp = wy_text_length(text);
    bool *hide = NULL;
    size_t hits = 0;
    for (size_t w = 0; w < f->n; w++) {
        const word_t *wd = &f->words[w];
        for (size_t i = 0; wd->n <= s.n && i + wd->n <= s.n; i++) {
            if (memcmp(&s.cp[i], wd->cp, wd->n * sizeof *wd->cp) != 0)
                continue;
            hits++;
            if (!masked)
                continue;
            if (!hide)
                hide = wy_calloc(ncp ? ncp : 1, sizeof *hide);
            for (size_t k = s.origin[i]; k <= s.origin[i + wd->n - 1]; k++)
                hide[k] = true;
        }
    }
    if (hide) {
        size_t len = strlen(text);
        char *o = wy_malloc(len + 1); /* '*' is never longer than the code point it hides */
        size_t pos = 0, prev = 0, i = 0, n = 0;
        uint32_t c;
        while (wy_text_next(text, &pos, &c)) {
            if (hide[i]) {
                o[n++] = '*';
            } else {
                memcpy(o + n, text + prev, pos - prev);
                n += pos - prev;
            }
            prev = pos;
            i++;
        }
        o[n] = '\0';
        *masked = o;
        wy_free(hide);
    }
    skel_free(&s);
    return hits;
}
