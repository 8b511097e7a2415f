/* wy_buf — a growable byte buffer (always NUL-terminated) used for encoding
 * responses, metrics text and log lines. */
#ifndef WY_BUF_H
#define WY_BUF_H

#include "wy_core.h"

typedef struct {
    char *data; /* owned; NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
} wy_buf_t;

#define WY_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void wy_buf_reserve(wy_buf_t *b, size_t extra);
void wy_buf_append(wy_buf_t *b, const void *p, size_t n);
void wy_buf_puts(wy_buf_t *b, const char *s);
void wy_buf_putc(wy_buf_t *b, char c);
void wy_buf_printf(wy_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as the inside of a JSON string (escaped, without the quotes). */
void wy_buf_json_escape(wy_buf_t *b, const char *s, size_t n);
void wy_buf_reset(wy_buf_t *b); /* len = 0, keeps the memory */
void wy_buf_free(wy_buf_t *b);  /* frees the memory, back to WY_BUF_INIT */
/* Hands the bytes to the caller (caller frees with wy_free); b is emptied. */
char *wy_buf_steal(wy_buf_t *b, size_t *len);

#endif
