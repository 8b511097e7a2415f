/* wy_core — error codes and allocation wrappers shared by every Wyvern module.
 * Every other header of libs/common includes this one. */
#ifndef WY_CORE_H
#define WY_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Functions return WY_OK (0) or a negative WY_E* code. The set is small on
 * purpose: each code maps to one gRPC status and one HTTP status (wy_err_grpc,
 * wy_err_http) so a failure reads the same everywhere. */
enum {
    WY_OK = 0,
    WY_EINVAL = -1,     /* bad argument or malformed input      -> INVALID_ARGUMENT / 400 */
    WY_ENOTFOUND = -2,  /* no such thing                        -> NOT_FOUND / 404 */
    WY_EEXIST = -3,     /* already exists / conflict            -> ALREADY_EXISTS / 409 */
    WY_EPERM = -4,      /* authenticated but not allowed        -> PERMISSION_DENIED / 403 */
    WY_EAUTH = -5,      /* not authenticated / bad credentials  -> UNAUTHENTICATED / 401 */
    WY_ELIMIT = -6,     /* rate or quota exceeded               -> RESOURCE_EXHAUSTED / 429 */
    WY_ETOOBIG = -7,    /* input over a size bound              -> RESOURCE_EXHAUSTED / 413 */
    WY_EBUSY = -8,      /* queue full / overloaded, retry later -> UNAVAILABLE / 503 */
    WY_EUNAVAIL = -9,   /* a dependency is down                 -> UNAVAILABLE / 503 */
    WY_ETIMEDOUT = -10, /* deadline passed                      -> DEADLINE_EXCEEDED / 504 */
    WY_ECANCELED = -11, /* operation canceled (shutdown, peer)  -> CANCELLED / 499 */
    WY_ESTATE = -12,    /* not valid in the current state       -> FAILED_PRECONDITION / 409 */
    WY_EIO = -13,       /* I/O or protocol failure              -> INTERNAL / 500 */
    WY_EINTERNAL = -14, /* bug or unexpected condition          -> INTERNAL / 500 */
    WY_EUNIMPL = -15,   /* not implemented                      -> UNIMPLEMENTED / 501 */
    WY__ELAST = -16
};

/* Short stable text for a code ("invalid argument"); never NULL. */
const char *wy_strerror(int err);
/* Stable machine name for a code ("EINVAL"), for JSON error bodies. */
const char *wy_errname(int err);
/* gRPC status code (grpc_status_code value) for a WY_E* code. */
int wy_err_grpc(int err);
/* HTTP status for a WY_E* code. */
int wy_err_http(int err);
/* WY_E* code for a gRPC status code (client side). */
int wy_err_from_grpc(int status);

/* Allocation: failure aborts with a message, so callers never check for NULL. */
void *wy_malloc(size_t n);
void *wy_calloc(size_t count, size_t size);
void *wy_realloc(void *p, size_t n);
char *wy_strdup(const char *s);
char *wy_strndup(const char *s, size_t n);
/* printf into a new string; caller frees. */
char *wy_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wy_free(void *p);

/* Monotonic clock in milliseconds / nanoseconds; wall clock in milliseconds. */
uint64_t wy_now_ms(void);
uint64_t wy_now_ns(void);
uint64_t wy_wall_ms(void);

/* Fill buf with n cryptographically random bytes (OpenSSL RAND_bytes). Aborts
 * if the system cannot provide randomness: nothing safe can continue. */
void wy_random(void *buf, size_t n);
/* Write a random UUIDv4 as 36 chars + NUL into out. */
void wy_uuid4(char out[37]);

#define WY_ARRAY_LEN(a)                   (sizeof(a) / sizeof((a)[0]))
#define WY_CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))
#define WY_UNUSED(x)                      ((void)(x))

#endif
