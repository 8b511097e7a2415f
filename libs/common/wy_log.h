/* wy_log — JSON lines on stderr: {"ts":...,"level":...,"svc":...,"msg":...,<fields>}.
 * The level check happens in the macro, before any argument is formatted. */
#ifndef WY_LOG_H
#define WY_LOG_H

#include "wy_core.h"

typedef enum {
    WY_LOG_DEBUG = 0,
    WY_LOG_INFO,
    WY_LOG_WARN,
    WY_LOG_ERROR,
    WY_LOG_OFF
} wy_log_level_t;

extern int wy_log_min_level;

/* Set the service name written in every line ("auth"); the string is copied. */
void wy_log_init(const char *svc, wy_log_level_t level);
/* Parse "debug|info|warn|error|off"; returns WY_EINVAL on anything else. */
int wy_log_level_parse(const char *s, wy_log_level_t *out);

/* wy_log(level, "fixed message", "key", "value", ..., NULL)
 * Keys and values are strings; a value NULL is written as null. Keep msg a
 * fixed string (greppable) and put the variable parts in fields. Thread-safe:
 * one line is one write(2). */
#define wy_log(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((int)(lvl) >= wy_log_min_level)                                                        \
            wy__log_emit((lvl), __VA_ARGS__);                                                      \
    } while (0)
#define wy_log_debug(...) wy_log(WY_LOG_DEBUG, __VA_ARGS__)
#define wy_log_info(...)  wy_log(WY_LOG_INFO, __VA_ARGS__)
#define wy_log_warn(...)  wy_log(WY_LOG_WARN, __VA_ARGS__)
#define wy_log_error(...) wy_log(WY_LOG_ERROR, __VA_ARGS__)

void wy__log_emit(int lvl, const char *msg, ...) __attribute__((sentinel));

/* Emit a line with pre-rendered extra JSON members (`"k":v,...` without braces),
 * for lines that carry numbers or nested objects (the ready line). */
void wy_log_raw(int lvl, const char *msg, const char *json_members);

/* Many lines of one level and message, each with its pre-rendered members: lines[0..len)
 * holds one member list per line, each ended by '\n' (JSON members never hold a raw
 * newline). One timestamp for all, and one write(2) per up to WY_LOG_ATOMIC_BYTES of whole
 * lines (so no line interleaves with another thread's on a pipe): for a batch's audit
 * trail, where a write per line was the cost. */
#define WY_LOG_ATOMIC_BYTES 4096
void wy_log_raw_lines(int lvl, const char *msg, const char *lines, size_t len);

#endif
