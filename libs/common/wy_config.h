/* wy_config — one configuration table per daemon, read from WY_* environment
 * variables. The same table prints `--help` (text) and `--help --json` (the
 * deploy charts are checked against it), and validates every value at start. */
#ifndef WY_CONFIG_H
#define WY_CONFIG_H

#include "wy_core.h"
#include <stddef.h>
#include <stdio.h>

typedef enum {
    WY_CFG_STRING, /* dst: char ** (owned by the config; freed by wy_config_free) */
    WY_CFG_INT,    /* dst: int64_t *; bounds min..max inclusive */
    WY_CFG_BOOL,   /* dst: bool *; accepts true/false/1/0/yes/no/on/off */
    WY_CFG_ENUM,   /* dst: char **; value must be one of `choices` ("a|b|c") */
    /* dst: int64_t * milliseconds; accepts "250ms", "5s", "2m", "1h" or a bare
     * ms number; bounds in ms */
    WY_CFG_DURATION_MS,
    /* dst: int64_t * bytes; accepts "512", "64k"/"64KiB", "8m"/"8MiB",
     * "1g"/"1GiB"; bounds in bytes */
    WY_CFG_SIZE,
} wy_cfg_type_t;

typedef struct {
    const char *name; /* full variable name, e.g. "WY_LOBBY_WS_PORT" */
    wy_cfg_type_t type;
    const char *def;     /* default as text; NULL means required (no default) */
    int64_t min, max;    /* bounds for INT / DURATION_MS / SIZE (ignored when min == max == 0) */
    const char *choices; /* ENUM only: "kick-old|reject-new" */
    const char *help;    /* one line, what it does and why one would change it */
    void *dst;           /* where the parsed value goes (see type); in a table of offsets
                            (WY_CFG_OFF) the offset of the field, until wy_config_rebase */
    bool secret;         /* value is never printed or logged (URLs with passwords, keys) */
} wy_cfg_entry_t;

/* A dst given as the offset of a field in a configuration struct instead of a pointer to
 * storage of its own (a service keeps its configuration on its daemon state, not in
 * statics): WY_CFG_OFF(lobby_cfg_t, ws_port). Such a table is never loaded as it is;
 * wy_config_rebase turns it into pointers into one struct first. */
#define WY_CFG_OFF(type, member) ((void *)offsetof(type, member))

/* Copy n entries of src (a table of WY_CFG_OFF offsets) into out, each dst becoming
 * base + its offset. base may itself be an offset (WY_CFG_OFF of an embedded struct) to
 * nest one offset table into a larger one. out and src may be the same array. */
void wy_config_rebase(wy_cfg_entry_t *out, const wy_cfg_entry_t *src, size_t n, void *base);

/* Parse every entry from the environment (getenv), falling back to defaults.
 * A variable set to the empty string counts as not set (compose files often
 * write `WY_X=`). Values of non-STRING types may carry surrounding whitespace
 * (trimmed); STRING values are stored as given. Errors never echo the value
 * of a secret entry, and echo at most 64 bytes of any other.
 * Main thread only, at start (module state is not locked). Strings stored
 * into STRING/ENUM destinations are tracked per destination: loading again
 * frees the previous string.
 * Returns WY_OK, or WY_EINVAL with *err set to a static-or-owned message that
 * names the variable and says why, e.g.
 *   "WY_LOBBY_WS_PORT: must be an integer between 1 and 65535 (got \"abc\")".
 * *err stays valid until wy_config_free or the next failing load/parse call.
 * Stops at the first bad entry. On error the bad entry's destination is left
 * unchanged. */
int wy_config_load(const wy_cfg_entry_t *tab, size_t n, const char **err);

/* Parse a single value for one entry (used by load and by tests). Same error contract. */
int wy_config_parse_value(const wy_cfg_entry_t *e, const char *text, const char **err);

/* Free the strings that load/parse stored into STRING/ENUM destinations and
 * any error message. Safe to call twice. */
void wy_config_free(const wy_cfg_entry_t *tab, size_t n);

/* Print the table: text (name, type, default, bounds, help) or JSON:
 * {"service":svc,"variables":[{"name","type","default","required","min","max",
 *   "choices":[...],"help","secret"}]}  (min/max only where bounded).
 * JSON details: keys in exactly that order; "type" is one of "string", "int",
 * "bool", "enum", "duration_ms", "size"; "default" is the default text or null
 * when required; "min"/"max" are integers (ms for duration_ms, bytes for size)
 * present only for int/duration_ms/size entries with bounds; "choices" (array
 * of strings) is present only for enum entries. Indented, newline-terminated. */
void wy_config_print_help(FILE *out, const char *svc, const wy_cfg_entry_t *tab, size_t n,
                          bool json);

/* Render the effective configuration as JSON members for the ready log line,
 * with secrets shown as "***". Returns a new string; caller frees.
 * Exact shape (one member, no surrounding braces, table order, compact):
 *   "config":{"WY_A":"text","WY_PORT":"7000","WY_ON":"true","WY_T":"5s","WY_B":"64KiB","WY_K":"***"}
 * Every value is a JSON string: STRING/ENUM as stored, INT in decimal, BOOL
 * "true"/"false", DURATION_MS and SIZE in the largest exact unit ("250ms",
 * "5s", "2m", "1h"; "512B", "64KiB", "8MiB", "1GiB"), which parse back to the
 * same value. Entries with dst NULL (or an unset string) are null. */
char *wy_config_effective_json(const wy_cfg_entry_t *tab, size_t n);

#endif
