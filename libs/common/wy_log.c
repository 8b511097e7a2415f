/* wy_log — JSON log lines on stderr. */
#include "wy_log.h"
#include "wy_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int wy_log_min_level = WY_LOG_INFO;
static char log_svc[32] = "wyvern";
static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

void wy_log_init(const char *svc, wy_log_level_t level)
{
    snprintf(log_svc, sizeof log_svc, "%s", svc);
    wy_log_min_level = (int)level;
}

int wy_log_level_parse(const char *s, wy_log_level_t *out)
{
    for (int i = 0; i <= WY_LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (wy_log_level_t)i;
            return WY_OK;
        }
    }
    return WY_EINVAL;
}

static void line_begin(wy_buf_t *b, int lvl, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    if (lvl < 0 || lvl > WY_LOG_ERROR)
        lvl = WY_LOG_ERROR;
    wy_buf_printf(b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"svc\":\"", when,
                  ts.tv_nsec / 1000000L, level_names[lvl]);
    wy_buf_json_escape(b, log_svc, strlen(log_svc));
    wy_buf_puts(b, "\",\"msg\":\"");
    wy_buf_json_escape(b, msg, strlen(msg));
    wy_buf_putc(b, '"');
}

static void write_all(const char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(STDERR_FILENO, p + off, len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
}

static void line_end(wy_buf_t *b)
{
    wy_buf_puts(b, "}\n");
    /* One write per line so lines from several threads never interleave. */
    write_all(b->data, b->len);
    wy_buf_free(b);
}

void wy__log_emit(int lvl, const char *msg, ...)
{
    wy_buf_t b = WY_BUF_INIT;
    line_begin(&b, lvl, msg);
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        wy_buf_puts(&b, ",\"");
        wy_buf_json_escape(&b, k, strlen(k));
        if (v) {
            wy_buf_puts(&b, "\":\"");
            wy_buf_json_escape(&b, v, strlen(v));
            wy_buf_putc(&b, '"');
        } else {
            wy_buf_puts(&b, "\":null");
        }
    }
    va_end(ap);
    line_end(&b);
}

void wy_log_raw(int lvl, const char *msg, const char *json_members)
{
    if (lvl < wy_log_min_level)
        return;
    wy_buf_t b = WY_BUF_INIT;
    line_begin(&b, lvl, msg);
    if (json_members && *json_members) {
        wy_buf_putc(&b, ',');
        wy_buf_puts(&b, json_members);
    }
    line_end(&b);
}

void wy_log_raw_lines(int lvl, const char *msg, const char *lines, size_t len)
{
    if (lvl < wy_log_min_level || !len)
        return;
    wy_buf_t head = WY_BUF_INIT, out = WY_BUF_INIT;
    line_begin(&head, lvl, msg);
    size_t flushed = 0; /* out[0..flushed) holds whole lines not written yet */
    for (const char *p = lines, *end = lines + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        wy_buf_append(&out, head.data, head.len);
        if (nl > p) {
            wy_buf_putc(&out, ',');
            wy_buf_append(&out, p, (size_t)(nl - p));
        }
        wy_buf_puts(&out, "}\n");
        if (out.len > WY_LOG_ATOMIC_BYTES && flushed) { /* the lines before this one */
            write_all(out.data, flushed);
            memmove(out.data, out.data + flushed, out.len - flushed);
            out.len -= flushed;
            out.data[out.len] = '\0';
        }
        flushed = out.len;
        p = nl + 1;
    }
    write_all(out.data, out.len);
    wy_buf_free(&out);
    wy_buf_free(&head);
}
