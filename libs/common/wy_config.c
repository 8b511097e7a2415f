/* wy_config — parses a daemon's configuration table from WY_* environment
 * variables, and prints the same table as --help text or JSON. */
#include "wy_config.h"
#include "wy_buf.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Config is read once at start on the main thread, so module state is plain
 * statics: the last error message, and the strings we stored into STRING/ENUM
 * destinations (so reloading or freeing releases exactly what we allocated,
 * never a pointer the caller put there). */
static char *cfg_err;

typedef struct {
    char **dst;
    char *val;
} owned_t;

static owned_t *owned;
static size_t nowned, capowned;

/* Longest part of a bad value echoed back in an error message. */
#define ECHO_MAX 64

static const char *set_err(const char **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *set_err(const char **err, const char *fmt, ...)
{
    va_list ap;
    wy_buf_t b = WY_BUF_INIT;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    wy_buf_reserve(&b, n > 0 ? (size_t)n : 0);
    va_start(ap, fmt);
    vsnprintf(b.data, (size_t)(n > 0 ? n : 0) + 1, fmt, ap);
    va_end(ap);
    b.len = n > 0 ? (size_t)n : 0;
    wy_free(cfg_err);
    cfg_err = wy_buf_steal(&b, NULL);
    if (err)
        *err = cfg_err;
    return cfg_err;
}

/* " (got \"...\")" with the value made printable and cut to ECHO_MAX bytes;
 * empty for secrets, whose values must never reach a log. */
static void got_part(wy_buf_t *b, const wy_cfg_entry_t *e, const char *text)
{
    if (e->secret) {
        wy_buf_puts(b, " (value hidden: secret)");
        return;
    }
    wy_buf_puts(b, " (got \"");
    size_t n = strlen(text);
    for (size_t i = 0; i < n && i < ECHO_MAX; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\')
            wy_buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            wy_buf_printf(b, "\\x%02x", c);
        else
            wy_buf_putc(b, (char)c);
    }
    if (n > ECHO_MAX)
        wy_buf_puts(b, "...");
    wy_buf_puts(b, "\")");
}

/* "<NAME>: <why> (got "<text>")" */
static int fail(const wy_cfg_entry_t *e, const char *text, const char **err, const char *why)
{
    wy_buf_t b = WY_BUF_INIT;
    wy_buf_printf(&b, "%s: %s", e->name, why);
    got_part(&b, e, text);
    set_err(err, "%s", b.data);
    wy_buf_free(&b);
    return WY_EINVAL;
}

static bool is_bounded(const wy_cfg_entry_t *e)
{
    return !(e->min == 0 && e->max == 0);
}

/* Durations and sizes are shown in the largest unit that divides them, in a
 * form the parser accepts back. */
static void fmt_duration(char *out, size_t n, int64_t ms)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(out, n, "%lldh", (long long)(ms / 3600000));
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(out, n, "%lldm", (long long)(ms / 60000));
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(out, n, "%llds", (long long)(ms / 1000));
    else
        snprintf(out, n, "%lldms", (long long)ms);
}

static void fmt_size(char *out, size_t n, int64_t bytes)
{
    static const char *units[] = {"TiB", "GiB", "MiB", "KiB"};
    static const int shifts[] = {40, 30, 20, 10};
    for (size_t i = 0; i < WY_ARRAY_LEN(units); i++) {
        int64_t unit = (int64_t)1 << shifts[i];
        if (bytes != 0 && bytes % unit == 0) {
            snprintf(out, n, "%lld%s", (long long)(bytes / unit), units[i]);
            return;
        }
    }
    snprintf(out, n, "%lldB", (long long)bytes);
}

/* Trims ASCII whitespace at both ends (values from YAML or files often carry
 * a trailing newline); returns the start and sets *len. */
static const char *trim(const char *s, size_t *len)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    *len = n;
    return s;
}

/* Strict decimal: optional sign (when allow_sign), at least one digit, no
 * overflow. Returns the number of bytes consumed, 0 on failure. */
static size_t parse_dec(const char *s, size_t n, bool allow_sign, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (allow_sign && i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    size_t start = i;
    uint64_t v = 0;
    /* The magnitude limit is INT64_MAX, or INT64_MAX + 1 for negatives. */
    uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (lim - d) / 10)
            return 0;
        v = v * 10 + d;
        i++;
    }
    if (i == start)
        return 0;
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return i;
}

static bool suffix_is(const char *s, size_t n, const char *suf)
{
    return strlen(suf) == n && strncasecmp(s, suf, n) == 0;
}

/* Number followed by a unit suffix from the table; multiplies with overflow
 * check. Returns false on any malformation. */
typedef struct {
    const char *suffix;
    int64_t mult;
} unit_t;

static bool parse_with_unit(const char *s, size_t n, const unit_t *units, size_t nunits,
                            int64_t *out)
{
    int64_t v;
    size_t used = parse_dec(s, n, false, &v);
    if (!used)
        return false;
    const char *suf = s + used;
    size_t sn = n - used;
    for (size_t i = 0; i < nunits; i++) {
        if (suffix_is(suf, sn, units[i].suffix)) {
            if (v > INT64_MAX / units[i].mult)
                return false;
            *out = v * units[i].mult;
            return true;
        }
    }
    return false;
}

static const unit_t duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
};

static const unit_t size_units[] = {
    {"", 1},
    {"b", 1},
    {"k", (int64_t)1 << 10},
    {"kb", (int64_t)1 << 10},
    {"kib", (int64_t)1 << 10},
    {"m", (int64_t)1 << 20},
    {"mb", (int64_t)1 << 20},
    {"mib", (int64_t)1 << 20},
    {"g", (int64_t)1 << 30},
    {"gb", (int64_t)1 << 30},
    {"gib", (int64_t)1 << 30},
    {"t", (int64_t)1 << 40},
    {"tb", (int64_t)1 << 40},
    {"tib", (int64_t)1 << 40},
};

/* Finds `s` (n bytes) among "a|b|c"; returns true on an exact match. */
static bool choice_match(const char *choices, const char *s, size_t n)
{
    const char *p = choices;
    while (p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && len > 0 && memcmp(p, s, n) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

/* "a, b, c" for messages. */
static void choices_list(wy_buf_t *b, const char *choices, const char *sep)
{
    for (const char *p = choices; *p; p++) {
        if (*p == '|')
            wy_buf_puts(b, sep);
        else
            wy_buf_putc(b, *p);
    }
}

static void owned_store(char **dst, char *val)
{
    for (size_t i = 0; i < nowned; i++) {
        if (owned[i].dst == dst) {
            wy_free(owned[i].val);
            owned[i].val = val;
            *dst = val;
            return;
        }
    }
    if (nowned == capowned) {
        capowned = capowned ? capowned * 2 : 16;
        owned = wy_realloc(owned, capowned * sizeof *owned);
    }
    owned[nowned].dst = dst;
    owned[nowned].val = val;
    nowned++;
    *dst = val;
}

static void owned_release(char **dst)
{
    for (size_t i = 0; i < nowned; i++) {
        if (owned[i].dst == dst) {
            if (*dst == owned[i].val)
                *dst = NULL;
            wy_free(owned[i].val);
            owned[i] = owned[--nowned];
            break;
        }
    }
    if (nowned == 0) {
        wy_free(owned);
        owned = NULL;
        capowned = 0;
    }
}

static int parse_int(const wy_cfg_entry_t *e, const char *text, const char **err)
{
    size_t n;
    const char *s = trim(text, &n);
    int64_t v;
    size_t used = parse_dec(s, n, true, &v);
    bool ok = used && used == n && (!is_bounded(e) || (v >= e->min && v <= e->max));
    if (!ok) {
        char why[128];
        if (is_bounded(e))
            snprintf(why, sizeof why, "must be an integer between %lld and %lld", (long long)e->min,
                     (long long)e->max);
        else
            snprintf(why, sizeof why, "must be an integer");
        return fail(e, text, err, why);
    }
    if (e->dst)
        *(int64_t *)e->dst = v;
    return WY_OK;
}

static int parse_bool(const wy_cfg_entry_t *e, const char *text, const char **err)
{
    static const char *yes[] = {"true", "1", "yes", "on"};
    static const char *no[] = {"false", "0", "no", "off"};
    size_t n;
    const char *s = trim(text, &n);
    for (size_t i = 0; i < WY_ARRAY_LEN(yes); i++) {
        if (suffix_is(s, n, yes[i]) || suffix_is(s, n, no[i])) {
            if (e->dst)
                *(bool *)e->dst = suffix_is(s, n, yes[i]);
            return WY_OK;
        }
    }
    return fail(e, text, err, "must be a boolean: true/false, yes/no, on/off or 1/0");
}

static int parse_enum(const wy_cfg_entry_t *e, const char *text, const char **err)
{
    if (!e->choices || !*e->choices) {
        set_err(err, "%s: enum entry has no choices (bug in the config table)", e->name);
        return WY_EINVAL;
    }
    size_t n;
    const char *s = trim(text, &n);
    if (!choice_match(e->choices, s, n)) {
        wy_buf_t b = WY_BUF_INIT;
        wy_buf_puts(&b, "must be one of ");
        choices_list(&b, e->choices, ", ");
        int rc = fail(e, text, err, b.data);
        wy_buf_free(&b);
        return rc;
    }
    if (e->dst)
        owned_store((char **)e->dst, wy_strndup(s, n));
    return WY_OK;
}

static int parse_scaled(const wy_cfg_entry_t *e, const char *text, const char **err)
{
    bool dur = e->type == WY_CFG_DURATION_MS;
    size_t n;
    const char *s = trim(text, &n);
    int64_t v;
    bool ok = dur ? parse_with_unit(s, n, duration_units, WY_ARRAY_LEN(duration_units), &v)
                  : parse_with_unit(s, n, size_units, WY_ARRAY_LEN(size_units), &v);
    if (!ok)
        return fail(e, text, err,
                    dur ? "must be a duration like 250ms, 5s, 2m"
                        : "must be a size like 512, 64k, 8m, 1g (powers of 1024)");
    if (is_bounded(e) && (v < e->min || v > e->max)) {
        char lo[32], hi[32], why[128];
        if (dur) {
            fmt_duration(lo, sizeof lo, e->min);
            fmt_duration(hi, sizeof hi, e->max);
        } else {
            fmt_size(lo, sizeof lo, e->min);
            fmt_size(hi, sizeof hi, e->max);
        }
        snprintf(why, sizeof why, "must be a %s between %s and %s", dur ? "duration" : "size", lo,
                 hi);
        return fail(e, text, err, why);
    }
    if (e->dst)
        *(int64_t *)e->dst = v;
    return WY_OK;
}

int wy_config_parse_value(const wy_cfg_entry_t *e, const char *text, const char **err)
{
    if (!text || (!*text && !e->def)) {
        if (!e->def) {
            set_err(err, "%s: required but not set", e->name);
            return WY_EINVAL;
        }
        text = e->def;
    }
    switch (e->type) {
    case WY_CFG_STRING:
        if (e->dst)
            owned_store((char **)e->dst, wy_strdup(text));
        return WY_OK;
    case WY_CFG_INT:
        return parse_int(e, text, err);
    case WY_CFG_BOOL:
        return parse_bool(e, text, err);
    case WY_CFG_ENUM:
        return parse_enum(e, text, err);
    case WY_CFG_DURATION_MS:
    case WY_CFG_SIZE:
        return parse_scaled(e, text, err);
    }
    set_err(err, "%s: unknown entry type %d (bug in the config table)", e->name, (int)e->type);
    return WY_EINVAL;
}

int wy_config_load(const wy_cfg_entry_t *tab, size_t n, const char **err)
{
    for (size_t i = 0; i < n; i++) {
        const wy_cfg_entry_t *e = &tab[i];
        const char *v = getenv(e->name);
        bool from_default = false;
        if (!v || !*v) {
            if (!e->def) {
                set_err(err, "%s: required but not set", e->name);
                return WY_EINVAL;
            }
            v = e->def;
            from_default = true;
        }
        int rc = wy_config_parse_value(e, v, err);
        if (rc != WY_OK) {
            if (from_default) {
                char *msg = wy_sprintf("%s (the built-in default is wrong: a bug)", cfg_err);
                set_err(err, "%s", msg);
                wy_free(msg);
            }
            return rc;
        }
    }
    return WY_OK;
}

void wy_config_rebase(wy_cfg_entry_t *out, const wy_cfg_entry_t *src, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        wy_cfg_entry_t e = src[i];
        /* Integer arithmetic: base may be an offset, not a pointer into an object. */
        e.dst = (void *)((uintptr_t)base + (uintptr_t)src[i].dst);
        out[i] = e;
    }
}

void wy_config_free(const wy_cfg_entry_t *tab, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const wy_cfg_entry_t *e = &tab[i];
        if ((e->type == WY_CFG_STRING || e->type == WY_CFG_ENUM) && e->dst)
            owned_release((char **)e->dst);
    }
    wy_free(cfg_err);
    cfg_err = NULL;
}

static const char *type_name(wy_cfg_type_t t)
{
    switch (t) {
    case WY_CFG_STRING:
        return "string";
    case WY_CFG_INT:
        return "int";
    case WY_CFG_BOOL:
        return "bool";
    case WY_CFG_ENUM:
        return "enum";
    case WY_CFG_DURATION_MS:
        return "duration_ms";
    case WY_CFG_SIZE:
        return "size";
    }
    return "unknown";
}

static bool has_bounds(const wy_cfg_entry_t *e)
{
    return (e->type == WY_CFG_INT || e->type == WY_CFG_DURATION_MS || e->type == WY_CFG_SIZE) &&
           is_bounded(e);
}

/* Bounds column of the text help: "1..65535", "100ms..1m", "a|b", or "-". */
static void bounds_text(wy_buf_t *b, const wy_cfg_entry_t *e)
{
    char lo[32], hi[32];
    if (e->type == WY_CFG_ENUM && e->choices) {
        wy_buf_puts(b, e->choices);
    } else if (has_bounds(e)) {
        if (e->type == WY_CFG_DURATION_MS) {
            fmt_duration(lo, sizeof lo, e->min);
            fmt_duration(hi, sizeof hi, e->max);
        } else if (e->type == WY_CFG_SIZE) {
            fmt_size(lo, sizeof lo, e->min);
            fmt_size(hi, sizeof hi, e->max);
        } else {
            snprintf(lo, sizeof lo, "%lld", (long long)e->min);
            snprintf(hi, sizeof hi, "%lld", (long long)e->max);
        }
        wy_buf_printf(b, "%s..%s", lo, hi);
    } else {
        wy_buf_puts(b, "-");
    }
}

/* json_string rejects invalid UTF-8; outside text (environment) may hold it,
 * so such bytes become '?' rather than losing the whole member. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = wy_strdup(s);
    for (char *p = copy; *p; p++) {
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    }
    j = json_string(copy);
    wy_free(copy);
    return j ? j : json_string("");
}

static void print_help_json(FILE *out, const char *svc, const wy_cfg_entry_t *tab, size_t n)
{
    json_t *root = json_object();
    json_object_set_new(root, "service", jstr(svc ? svc : ""));
    json_t *vars = json_array();
    for (size_t i = 0; i < n; i++) {
        const wy_cfg_entry_t *e = &tab[i];
        json_t *v = json_object();
        json_object_set_new(v, "name", jstr(e->name));
        json_object_set_new(v, "type", jstr(type_name(e->type)));
        json_object_set_new(v, "default", e->def ? jstr(e->def) : json_null());
        json_object_set_new(v, "required", json_boolean(e->def == NULL));
        if (has_bounds(e)) {
            json_object_set_new(v, "min", json_integer((json_int_t)e->min));
            json_object_set_new(v, "max", json_integer((json_int_t)e->max));
        }
        if (e->type == WY_CFG_ENUM && e->choices) {
            json_t *ch = json_array();
            const char *p = e->choices;
            while (p) {
                const char *bar = strchr(p, '|');
                size_t len = bar ? (size_t)(bar - p) : strlen(p);
                char *c = wy_strndup(p, len);
                json_array_append_new(ch, jstr(c));
                wy_free(c);
                p = bar ? bar + 1 : NULL;
            }
            json_object_set_new(v, "choices", ch);
        }
        json_object_set_new(v, "help", jstr(e->help ? e->help : ""));
        json_object_set_new(v, "secret", json_boolean(e->secret));
        json_array_append_new(vars, v);
    }
    json_object_set_new(root, "variables", vars);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputs(s, out);
    fputc('\n', out);
    free(s);
    json_decref(root);
}

void wy_config_print_help(FILE *out, const char *svc, const wy_cfg_entry_t *tab, size_t n,
                          bool json)
{
    if (json) {
        print_help_json(out, svc, tab, n);
        return;
    }
    enum { NCOL = 4 };
    static const char *heads[NCOL] = {"NAME", "TYPE", "DEFAULT", "BOUNDS"};
    size_t w[NCOL];
    for (int c = 0; c < NCOL; c++)
        w[c] = strlen(heads[c]);
    /* Two passes: widths first, then rows, so every column lines up. */
    wy_buf_t *cells = wy_calloc(n ? n * NCOL : 1, sizeof *cells);
    for (size_t i = 0; i < n; i++) {
        const wy_cfg_entry_t *e = &tab[i];
        wy_buf_t *row = &cells[i * NCOL];
        wy_buf_puts(&row[0], e->name);
        wy_buf_puts(&row[1], type_name(e->type));
        if (!e->def)
            wy_buf_puts(&row[2], "(required)");
        else if (!*e->def)
            wy_buf_puts(&row[2], "\"\"");
        else
            wy_buf_puts(&row[2], e->def);
        bounds_text(&row[3], e);
        for (int c = 0; c < NCOL; c++) {
            if (row[c].len > w[c])
                w[c] = row[c].len;
        }
    }
    fprintf(out, "%s configuration, read from environment variables:\n\n", svc ? svc : "");
    for (int c = 0; c < NCOL; c++)
        fprintf(out, "%-*s  ", (int)w[c], heads[c]);
    fputs("HELP\n", out);
    for (size_t i = 0; i < n; i++) {
        const wy_cfg_entry_t *e = &tab[i];
        wy_buf_t *row = &cells[i * NCOL];
        for (int c = 0; c < NCOL; c++)
            fprintf(out, "%-*s  ", (int)w[c], row[c].data);
        fprintf(out, "%s%s\n", e->help ? e->help : "", e->secret ? " (secret)" : "");
        for (int c = 0; c < NCOL; c++)
            wy_buf_free(&row[c]);
    }
    wy_free(cells);
}

char *wy_config_effective_json(const wy_cfg_entry_t *tab, size_t n)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < n; i++) {
        const wy_cfg_entry_t *e = &tab[i];
        json_t *v;
        char num[32];
        if (!e->dst) {
            v = json_null();
        } else if (e->secret) {
            v = json_string("***");
        } else {
            switch (e->type) {
            case WY_CFG_STRING:
            case WY_CFG_ENUM: {
                const char *s = *(char *const *)e->dst;
                v = s ? jstr(s) : json_null();
                break;
            }
            case WY_CFG_INT:
                snprintf(num, sizeof num, "%lld", (long long)*(const int64_t *)e->dst);
                v = json_string(num);
                break;
            case WY_CFG_BOOL:
                v = json_string(*(const bool *)e->dst ? "true" : "false");
                break;
            case WY_CFG_DURATION_MS:
                fmt_duration(num, sizeof num, *(const int64_t *)e->dst);
                v = json_string(num);
                break;
            case WY_CFG_SIZE:
                fmt_size(num, sizeof num, *(const int64_t *)e->dst);
                v = json_string(num);
                break;
            default:
                v = json_null();
            }
        }
        json_object_set_new(obj, e->name, v);
    }
    char *inner = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    char *res = wy_sprintf("\"config\":%s", inner ? inner : "{}");
    free(inner);
    return res;
}
