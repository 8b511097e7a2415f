/* wy_buf — growable byte buffer. */
#include "wy_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void wy_buf_reserve(wy_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = wy_realloc(b->data, cap);
    b->cap = cap;
}

void wy_buf_append(wy_buf_t *b, const void *p, size_t n)
{
    wy_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void wy_buf_puts(wy_buf_t *b, const char *s)
{
    wy_buf_append(b, s, strlen(s));
}

void wy_buf_putc(wy_buf_t *b, char c)
{
    wy_buf_append(b, &c, 1);
}

void wy_buf_printf(wy_buf_t *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        wy_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void wy_buf_json_escape(wy_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    wy_buf_reserve(b, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            wy_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            wy_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            wy_buf_append(b, "\\n", 2);
            break;
        case '\r':
            wy_buf_append(b, "\\r", 2);
            break;
        case '\t':
            wy_buf_append(b, "\\t", 2);
            break;
        default:
            if (c < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                wy_buf_append(b, u, 6);
            } else {
                wy_buf_putc(b, (char)c);
            }
        }
    }
}

void wy_buf_reset(wy_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void wy_buf_free(wy_buf_t *b)
{
    wy_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *wy_buf_steal(wy_buf_t *b, size_t *len)
{
    if (!b->data)
        wy_buf_reserve(b, 0), b->data[0] = '\0';
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
