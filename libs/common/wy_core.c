/* wy_core — error names, status mapping, allocation wrappers, clocks, randomness. */
#include "wy_core.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *name;
    const char *text;
    int grpc;
    int http;
} errtab[] = {
    /* WY_OK */ {"OK", "ok", 0, 200},
    {"EINVAL", "invalid argument", 3, 400},
    {"ENOTFOUND", "not found", 5, 404},
    {"EEXIST", "already exists", 6, 409},
    {"EPERM", "permission denied", 7, 403},
    {"EAUTH", "unauthenticated", 16, 401},
    {"ELIMIT", "rate limit exceeded", 8, 429},
    {"ETOOBIG", "too large", 8, 413},
    {"EBUSY", "busy, try again later", 14, 503},
    {"EUNAVAIL", "dependency unavailable", 14, 503},
    {"ETIMEDOUT", "deadline exceeded", 4, 504},
    {"ECANCELED", "canceled", 1, 499},
    {"ESTATE", "failed precondition", 9, 409},
    {"EIO", "i/o error", 13, 500},
    {"EINTERNAL", "internal error", 13, 500},
    {"EUNIMPL", "not implemented", 12, 501},
};

static size_t err_index(int err)
{
    if (err > 0 || err <= WY__ELAST)
        return (size_t)(-WY_EINTERNAL);
    return (size_t)(-err);
}

const char *wy_strerror(int err)
{
    return errtab[err_index(err)].text;
}

const char *wy_errname(int err)
{
    return errtab[err_index(err)].name;
}

int wy_err_grpc(int err)
{
    return errtab[err_index(err)].grpc;
}

int wy_err_http(int err)
{
    return errtab[err_index(err)].http;
}

int wy_err_from_grpc(int status)
{
    switch (status) {
    case 0:
        return WY_OK;
    case 1:
        return WY_ECANCELED;
    case 3:
        return WY_EINVAL;
    case 4:
        return WY_ETIMEDOUT;
    case 5:
        return WY_ENOTFOUND;
    case 6:
        return WY_EEXIST;
    case 7:
        return WY_EPERM;
    case 8:
        return WY_ELIMIT;
    case 9:
        return WY_ESTATE;
    case 10:
        return WY_ESTATE; /* ABORTED */
    case 12:
        return WY_EUNIMPL;
    case 14:
        return WY_EUNAVAIL;
    case 16:
        return WY_EAUTH;
    default:
        return WY_EINTERNAL;
    }
}

static void oom(size_t n)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory\",\"bytes\":%zu}\n", n);
    abort();
}

void *wy_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *wy_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        oom(count * size);
    return p;
}

void *wy_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *wy_strdup(const char *s)
{
    return wy_strndup(s, strlen(s));
}

char *wy_strndup(const char *s, size_t n)
{
    char *d = wy_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *wy_sprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *s = wy_malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

void wy_free(void *p)
{
    free(p);
}

uint64_t wy_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t wy_now_ms(void)
{
    return wy_now_ns() / 1000000u;
}

uint64_t wy_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void wy_random(void *buf, size_t n)
{
    if (RAND_bytes(buf, (int)n) != 1) {
        fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"no randomness available\"}\n");
        abort();
    }
}

void wy_uuid4(char out[37])
{
    unsigned char b[16];
    wy_random(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    /* 8-4-4-4-12 lowercase hex, by hand: a login makes several, and snprintf with 16
     * arguments cost more than the random bytes. */
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = 0;
}
