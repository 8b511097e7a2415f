/* wy-chat word filter: a configurable list of words matched against a message after Unicode
 * normalisation, so look-alike spellings are caught: case and full-width forms (NFKC + case
 * fold), accents (dropped), Latin confusables from Cyrillic and Greek and digit swaps (0/o,
 * 1/l/i, 3/e, 4/a, 5/s, 7/t, @, $), Hangul written as syllables, compatibility or conjoining
 * jamo (final consonants folded onto initial ones), and letters split by spaces, punctuation or
 * invisible characters ("b a d", "b.a.d", "b\u200bad"). Pure code, any thread. */
#ifndef CHAT_FILTER_H
#define CHAT_FILTER_H

#include "wy_core.h"

#define CHAT_FILTER_WORDS_MAX 4096 /* words in the list */
#define CHAT_FILTER_WORD_MAX  64   /* bytes of one word */

typedef struct chat_filter chat_filter_t;

/* Builds a filter from words separated by commas or new lines (blank entries ignored; each
 * 1..CHAT_FILTER_WORD_MAX bytes of UTF-8 holding at least one letter or digit). Returns WY_OK
 * and *out (free with chat_filter_free; an empty list gives a filter that matches nothing), or
 * WY_EINVAL with *err saying which entry is wrong (static or thread-local text). */
int chat_filter_new(const char *words, chat_filter_t **out, const char **err);
void chat_filter_free(chat_filter_t *f);
size_t chat_filter_count(const chat_filter_t *f);

/* Finds the listed words in text (valid UTF-8, NUL-terminated). Returns the number of matches;
 * when masked is not NULL and there is a match, *masked gets a new string (caller wy_free's it)
 * in which each code point from the first to the last letter of each match is replaced by
 * '*'; *masked is NULL when nothing matched. */
size_t chat_filter_apply(const chat_filter_t *f, const char *text, char **masked);

#endif
