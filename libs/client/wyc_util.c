/* wyc pure helpers: configuration defaults, error records, names, reconnect backoff and the
 * credentials file format used by `wy`. No I/O on the loop here. */
#include "wyc_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ errors, names */

const char *wyc_source_name(wyc_source_t s)
{
    switch (s) {
    case WYC_SRC_CLIENT:
        return "client";
    case WYC_SRC_NETWORK:
        return "network";
    case WYC_SRC_PROTOCOL:
        return "protocol";
    case WYC_SRC_SERVER:
        return "server";
    default:
        return "";
    }
}

void wyc__err_set(wyc_error_t *e, int code, wyc_source_t src, const char *fmt, ...)
{
    memset(e, 0, sizeof *e);
    e->code = code;
    e->source = src;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void wyc__err_ok(wyc_error_t *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->message, sizeof e->message, "ok");
}

static const char *const METHODS[] = {NULL, "password", "device", "custom", "steam", "oidc"};

const char *wyc_method_name(wyc_method_t m)
{
    return (int)m > 0 && (size_t)m < WY_ARRAY_LEN(METHODS) ? METHODS[m] : NULL;
}

wyc_method_t wyc_method_parse(const char *name)
{
    for (size_t i = 1; name && i < WY_ARRAY_LEN(METHODS); i++)
        if (!strcmp(name, METHODS[i]))
            return (wyc_method_t)i;
    return (wyc_method_t)0;
}

const char *wyc_presence_name(wyc_presence_state_t s)
{
    switch (s) {
    case WYC_ONLINE:
        return "online";
    case WYC_IN_GAME:
        return "in-game";
    default:
        return "offline";
    }
}

/* ------------------------------------------------------------------ configuration */

void wyc_config_default(wyc_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->auth_url = "http://127.0.0.1:8080";
    cfg->lobby_url = "ws://127.0.0.1:8081/v1/lobby";
    cfg->client_version = "wyc/1";
    cfg->timeout_ms = 10000;
    cfg->max_inflight = 256;
    cfg->reconnect_base_ms = 250;
    cfg->reconnect_max_ms = 30000;
    cfg->auto_refresh = true;
    cfg->auto_reconnect = true;
}

void wyc_config_from_env(wyc_config_t *cfg)
{
    /* Built once per process: WY_SERVER=host expands to both URLs. */
    static char auth[300], lobby[300];
    wyc_config_default(cfg);
    const char *host = getenv("WY_SERVER");
    if (host && *host) {
        snprintf(auth, sizeof auth, "http://%s:8080", host);
        snprintf(lobby, sizeof lobby, "ws://%s:8081/v1/lobby", host);
        cfg->auth_url = auth;
        cfg->lobby_url = lobby;
    }
    const char *v = getenv("WY_AUTH_URL");
    if (v && *v)
        cfg->auth_url = v;
    v = getenv("WY_LOBBY_URL");
    if (v && *v)
        cfg->lobby_url = v;
    v = getenv("WY_SERVER_KEY");
    if (v && *v)
        cfg->server_key = v;
}

/* ------------------------------------------------------------------ backoff */

void wyc_backoff_init(wyc_backoff_t *b, uint32_t base_ms, uint32_t max_ms)
{
    b->base_ms = base_ms ? base_ms : 1;
    b->max_ms = max_ms < b->base_ms ? b->base_ms : max_ms;
    b->attempt = 0;
}

uint32_t wyc_backoff_next(wyc_backoff_t *b, uint32_t rnd)
{
    uint64_t ceil = b->base_ms;
    for (uint32_t i = 0; i < b->attempt && ceil < b->max_ms; i++)
        ceil *= 2;
    if (ceil > b->max_ms)
        ceil = b->max_ms;
    if (b->attempt < UINT32_MAX)
        b->attempt++;
    /* Half fixed, half jitter: spreads a reconnect storm without ever retrying at once. */
    uint64_t half = ceil / 2;
    return (uint32_t)(ceil - half + (half ? rnd % (half + 1) : 0));
}

void wyc_backoff_reset(wyc_backoff_t *b)
{
    b->attempt = 0;
}

/* ------------------------------------------------------------------ credentials files */

typedef struct {
    const char *key;
    size_t off;
    size_t cap; /* 0: int64 */
} cred_field_t;

#define CF(k, field)                                                                               \
    {                                                                                              \
        k, offsetof(wyc_creds_t, field), sizeof(((wyc_creds_t *)0)->field)                         \
    }
static const cred_field_t FIELDS[] = {
    CF("auth_url", auth_url),
    CF("lobby_url", lobby_url),
    CF("username", username),
    CF("account_id", session.account_id),
    CF("session_id", session.session_id),
    CF("refresh_token", session.refresh_token),
    CF("access_token", session.access_token),
    {"access_expires_at_ms", offsetof(wyc_creds_t, session.access_expires_at_ms), 0},
};

int wyc_creds_parse(const char *text, size_t len, wyc_creds_t *out, const char **err)
{
    static char msg[128];
    memset(out, 0, sizeof *out);
    if (len > WYC_CREDS_MAX_BYTES) {
        *err = "credentials file over 16 KiB";
        return WY_ETOOBIG;
    }
    size_t pos = 0;
    int line = 0;
    while (pos < len) {
        line++;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n && s[n - 1] == '\r')
            n--;
        size_t i = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == n || s[i] == '#')
            continue;
        const char *eq = memchr(s + i, '=', n - i);
        if (!eq) {
            snprintf(msg, sizeof msg, "line %d: missing '=' (want key=value)", line);
            *err = msg;
            return WY_EINVAL;
        }
        size_t klen = (size_t)(eq - (s + i));
        while (klen && (s[i + klen - 1] == ' ' || s[i + klen - 1] == '\t'))
            klen--;
        const char *val = eq + 1;
        size_t vlen = n - (size_t)(val - s);
        if (memchr(val, 0, vlen) || memchr(s + i, 0, klen)) {
            snprintf(msg, sizeof msg, "line %d: NUL byte", line);
            *err = msg;
            return WY_EINVAL;
        }
        for (size_t f = 0; f < WY_ARRAY_LEN(FIELDS); f++) {
            if (strlen(FIELDS[f].key) != klen || memcmp(FIELDS[f].key, s + i, klen) != 0)
                continue;
            char *dst = (char *)out + FIELDS[f].off;
            if (FIELDS[f].cap == 0) {
                char num[32];
                char *end = NULL;
                if (vlen == 0 || vlen >= sizeof num) {
                    snprintf(msg, sizeof msg, "line %d: %s: want a number", line, FIELDS[f].key);
                    *err = msg;
                    return WY_EINVAL;
                }
                memcpy(num, val, vlen);
                num[vlen] = 0;
                errno = 0;
                long long v = strtoll(num, &end, 10);
                if (errno || *end || v < 0) {
                    snprintf(msg, sizeof msg, "line %d: %s: want a number", line, FIELDS[f].key);
                    *err = msg;
                    return WY_EINVAL;
                }
                memcpy(dst, &(int64_t){(int64_t)v}, sizeof(int64_t));
            } else {
                if (vlen >= FIELDS[f].cap) {
                    snprintf(msg, sizeof msg, "line %d: %s: value too long", line, FIELDS[f].key);
                    *err = msg;
                    return WY_EINVAL;
                }
                memcpy(dst, val, vlen);
                dst[vlen] = 0;
            }
            break;
        }
    }
    return WY_OK;
}

char *wyc_creds_format(const wyc_creds_t *c)
{
    wy_buf_t b = WY_BUF_INIT;
    wy_buf_puts(&b, "# Wyvern credentials, written by wy. Secret: keep this file mode 0600.\n");
    for (size_t f = 0; f < WY_ARRAY_LEN(FIELDS); f++) {
        const char *src = (const char *)c + FIELDS[f].off;
        if (FIELDS[f].cap == 0) {
            int64_t v;
            memcpy(&v, src, sizeof v);
            wy_buf_printf(&b, "%s=%lld\n", FIELDS[f].key, (long long)v);
        } else {
            /* Newlines cannot be stored; values with them are cut there. */
            size_t n = strcspn(src, "\r\n");
            wy_buf_printf(&b, "%s=%.*s\n", FIELDS[f].key, (int)n, src);
        }
    }
    size_t len;
    return wy_buf_steal(&b, &len);
}

int wyc_creds_load(const char *path, wyc_creds_t *out, const char **err)
{
    static char msg[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(msg, sizeof msg, "%s: %s", path, strerror(errno));
        *err = msg;
        return errno == ENOENT ? WY_ENOTFOUND : WY_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(msg, sizeof msg, "%s: not a regular file", path);
        *err = msg;
        return WY_EIO;
    }
    if (st.st_mode & 077) {
        close(fd);
        snprintf(msg, sizeof msg, "%s is readable by others (mode %04o): run chmod 600 %s", path,
                 (unsigned)(st.st_mode & 0777), path);
        *err = msg;
        return WY_EPERM;
    }
    if (st.st_size > WYC_CREDS_MAX_BYTES) {
        close(fd);
        snprintf(msg, sizeof msg, "%s: over 16 KiB, not a credentials file", path);
        *err = msg;
        return WY_ETOOBIG;
    }
    char buf[WYC_CREDS_MAX_BYTES + 1];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            snprintf(msg, sizeof msg, "%s: %s", path, strerror(errno));
            *err = msg;
            return WY_EIO;
        }
        if (r == 0 || len + (size_t)r >= sizeof buf - 1) {
            len += (size_t)(r > 0 ? r : 0);
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    const char *e = NULL;
    int rc = wyc_creds_parse(buf, len, out, &e);
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "%s: %s", path, e);
        *err = msg;
    }
    return rc;
}

static int mkdirs(char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : -1;
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        int rc = mkdirs(dir);
        *slash = '/';
        if (rc != 0)
            return rc;
    }
    return mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

int wyc_creds_prepare_dir(const char *path, const char **err)
{
    static char msg[600];
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        if (mkdirs(dir) != 0) {
            snprintf(msg, sizeof msg, "%.400s: cannot create the folder: %s", dir, strerror(errno));
            *err = msg;
            return WY_EIO;
        }
    }
    return WY_OK;
}

int wyc_creds_save(const char *path, const wyc_creds_t *c, const char **err)
{
    static char msg[600];
    char tmp[4200];
    int prc = wyc_creds_prepare_dir(path, err);
    if (prc != WY_OK)
        return prc;
    char rnd[9];
    uint32_t r;
    wy_random(&r, sizeof r);
    snprintf(rnd, sizeof rnd, "%08x", r);
    snprintf(tmp, sizeof tmp, "%s.tmp-%s", path, rnd);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(msg, sizeof msg, "%.400s: %s", tmp, strerror(errno));
        *err = msg;
        return WY_EIO;
    }
    char *text = wyc_creds_format(c);
    size_t len = strlen(text), off = 0;
    int rc = WY_OK;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = WY_EIO;
            break;
        }
        off += (size_t)w;
    }
    wy_free(text);
    if (rc == WY_OK && fsync(fd) != 0)
        rc = WY_EIO;
    if (close(fd) != 0)
        rc = WY_EIO;
    if (rc == WY_OK && rename(tmp, path) != 0)
        rc = WY_EIO;
    if (rc != WY_OK) {
        snprintf(msg, sizeof msg, "%.400s: cannot write: %s", path, strerror(errno));
        *err = msg;
        unlink(tmp);
    }
    return rc;
}
