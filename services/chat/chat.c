/* wy-chat: the daemon spec (dependencies, ports, configuration) and the service's life:
 * start() builds the word filter and the rate limiter, registers the gRPC methods and starts
 * the retention timer; stop() ends new work, and the state is freed when the last operation
 * in flight lets it go. */
#include "chat.h"
#include "wy_chatmsg.h"
#include "wy_log.h"
#include "wy_outbox.h"
#include "wy_pg.h"

#include <string.h>

/* The rate limiter's prefix: keys chat:rl:{<account>} (wy_ratelimit appends ":<key>"; the
 * key is the account in braces, its hash tag). */
#define RKEY_CHAT_RATELIMIT "chat:rl"

const char *const chat_kind_names[CHAT_NKINDS] = {"world", "zone",    "party",
                                                  "guild", "whisper", "system"};

#define RETENTION(KIND, DEF)                                                                       \
    {                                                                                              \
        "WY_CHAT_RETENTION_" #KIND, WY_CFG_DURATION_MS, DEF, 0, 315360000000LL, NULL,              \
            "Messages of " #KIND " channels older than this are deleted (0 = kept forever).",      \
            WY_CFG_OFF(chat_cfg_t, retention_ms[CHAT_##KIND]), false                               \
    }

/* Offsets into chat_cfg_t: the daemon keeps the values (spec.config_size). */
static const wy_cfg_entry_t chat_config[] = {
    {"WY_CHAT_MAX_CHARS", WY_CFG_INT, "500", 1, 10000, NULL,
     "Longest message in code points (over: INVALID_ARGUMENT).", WY_CFG_OFF(chat_cfg_t, max_chars),
     false},
    {"WY_CHAT_MAX_BYTES", WY_CFG_SIZE, "2KiB", 16, 65536, NULL,
     "Longest message in UTF-8 bytes (over: INVALID_ARGUMENT).", WY_CFG_OFF(chat_cfg_t, max_bytes),
     false},
    {"WY_CHAT_RATE_LIMIT", WY_CFG_INT, "10", 1, 100000, NULL,
     "Messages one account may send per WY_CHAT_RATE_WINDOW, over all channels and instances "
     "(over: RESOURCE_EXHAUSTED).",
     WY_CFG_OFF(chat_cfg_t, rate_limit), false},
    {"WY_CHAT_RATE_WINDOW", WY_CFG_DURATION_MS, "10s", 1, 3600000, NULL,
     "Sliding window of WY_CHAT_RATE_LIMIT.", WY_CFG_OFF(chat_cfg_t, rate_window_ms), false},
    {"WY_CHAT_FILTER_WORDS", WY_CFG_STRING, "", 0, 0, NULL,
     "Filtered words, comma-separated; matched after Unicode normalisation (case, full-width, "
     "accents, Latin confusables, Hangul jamo, separators).",
     WY_CFG_OFF(chat_cfg_t, filter_words), false},
    {"WY_CHAT_FILTER_MODE", WY_CFG_ENUM, "mask", 0, 0, "mask|refuse",
     "A filtered word is masked with '*' (mask) or the message refused (refuse).",
     WY_CFG_OFF(chat_cfg_t, filter_mode), false},
    RETENTION(WORLD, "24h"),
    RETENTION(ZONE, "24h"),
    RETENTION(PARTY, "168h"),
    RETENTION(GUILD, "720h"),
    RETENTION(WHISPER, "720h"),
    RETENTION(SYSTEM, "720h"),
    {"WY_CHAT_RETENTION_EVERY", WY_CFG_DURATION_MS, "60s", 1000, 86400000, NULL,
     "How often expired messages are deleted (10,000 rows per kind per pass).",
     WY_CFG_OFF(chat_cfg_t, retention_every_ms), false},
    {"WY_CHAT_PRESENCE_KEY", WY_CFG_STRING, "sess:{%s}:acct", 0, 0, NULL,
     "Lobby's Redis key of an account's session (%s = account id): a whisper to an account "
     "without it is kept for its next login.",
     WY_CFG_OFF(chat_cfg_t, presence_key), false},
    {"WY_CHAT_MODERATORS", WY_CFG_STRING, "", 0, 0, NULL,
     "Account ids (comma-separated) with the moderator role, besides callers whose access "
     "token carries it.",
     WY_CFG_OFF(chat_cfg_t, moderators), false},
};

static int chat_configure(void *cfg, const char **err);
static int chat_start(wy_daemon_t *d, const char **err);
static void chat_stop(wy_daemon_t *d);
static size_t chat_busy(wy_daemon_t *d);

/* No Kafka subscriptions: wy-chat produces wy.chat (through its outbox) and consumes nothing. */
const wy_daemon_spec_t chat_daemon_spec = {
    .svc = "chat",
    .grpc_service = "wyvern.chat.Chat",
    .deps = WY_DEP_PG | WY_DEP_REDIS | WY_DEP_KAFKA,
    .ops_port = 9106,
    .grpc_port = 9206,
    .config = chat_config,
    .nconfig = WY_ARRAY_LEN(chat_config),
    .config_size = sizeof(chat_cfg_t),
    .helpers = WY_HELPER_OUTBOX,
    .configure = chat_configure,
    .start = chat_start,
    .stop = chat_stop,
    .busy = chat_busy,
    /* The outbox relay produces a pass's rows together and waits for their reports: lingering
     * would only add to every message's publish-to-deliver time. */
    .producer_linger_ms = -1,
};

bool chat_account_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CHAT_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

int chat_channel_kind(const char *id)
{
    if (!id || strlen(id) > CHAT_CHANNEL_MAX)
        return -1;
    if (strcmp(id, "world") == 0)
        return CHAT_WORLD;
    if (strcmp(id, "system") == 0)
        return CHAT_SYSTEM;
    static const struct {
        const char *prefix;
        int kind;
    } p[] = {{"zone:", CHAT_ZONE},
             {"party:", CHAT_PARTY},
             {"guild:", CHAT_GUILD},
             {"whisper:", CHAT_WHISPER}};
    for (size_t i = 0; i < WY_ARRAY_LEN(p); i++) {
        size_t n = strlen(p[i].prefix);
        if (strncmp(id, p[i].prefix, n) != 0 || !id[n])
            continue;
        for (const char *c = id + n; *c; c++)
            if ((unsigned char)*c <= ' ' || *c == 0x7f)
                return -1;
        return p[i].kind;
    }
    return -1;
}

bool chat_is_moderator(const chat_cfg_t *cfg, const char *account)
{
    const char *p = cfg->moderators;
    size_t n = strlen(account);
    while (p && *p) {
        size_t len = strcspn(p, ",");
        while (len && *p == ' ') {
            p++;
            len--;
        }
        if (len == n && strncmp(p, account, n) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

static int chat_configure(void *cfg, const char **err)
{
    const chat_cfg_t *c = cfg;
    const char *k = c->presence_key;
    const char *s = strstr(k, "%s");
    if (!s || strchr(k, '%') != s || strchr(s + 1, '%') || strlen(k) > 128) {
        *err = "WY_CHAT_PRESENCE_KEY: must hold exactly one %s (the account id), at most 128 bytes";
        return WY_EINVAL;
    }
    chat_filter_t *f = NULL;
    if (chat_filter_new(c->filter_words, &f, err) != WY_OK)
        return WY_EINVAL;
    chat_filter_free(f);
    return WY_OK;
}

void chat_svc_ref(chat_svc_t *svc)
{
    svc->refs++;
}

void chat_svc_unref(chat_svc_t *svc)
{
    if (--svc->refs > 0)
        return;
    chat_filter_free(svc->filter);
    wy_map_free(svc->sendq); /* empty: every queued Send holds a reference */
    wy_daemon_set_state(svc->d, NULL);
    wy_free(svc);
}

/* ---- retention: per kind, the oldest expired rows, a bounded batch per pass ---- */

static const wy_pg_stmt_t sql_retention = {
    "chat_retention",
    "DELETE FROM chat.messages WHERE ctid IN (SELECT m.ctid FROM chat.messages m "
    "JOIN chat.channels c ON c.id = m.channel_id WHERE c.kind = $1 AND m.ts_ms < $2::bigint "
    "LIMIT 10000)",
    2};

typedef struct {
    chat_svc_t *svc;
    int kind;
} retention_op_t;

static void on_retention(int status, const PGresult *res, const char *err, void *ud)
{
    retention_op_t *op = ud;
    chat_svc_t *svc = op->svc;
    if (status == WY_OK) {
        long n = atol(PQcmdTuples((PGresult *)res));
        if (n > 0) {
            wy_metric_add(svc->m_retention_deleted, (double)n);
            char nb[24];
            snprintf(nb, sizeof nb, "%ld", n);
            wy_log_info("expired messages deleted", "kind", chat_kind_names[op->kind], "count", nb,
                        NULL);
        }
    } else if (status != WY_ECANCELED) {
        wy_log_warn("retention pass failed", "kind", chat_kind_names[op->kind], "error",
                    err ? err : wy_strerror(status), NULL);
    }
    svc->busy--;
    wy_free(op);
    chat_svc_unref(svc);
}

static void retention_tick(uv_timer_t *t)
{
    chat_svc_t *svc = t->data;
    wy_pg_t *pg = wy_daemon_pg(svc->d);
    if (svc->stopping || !pg)
        return;
    uint64_t now = wy_wall_ms();
    for (int k = 0; k < CHAT_NKINDS; k++) {
        int64_t keep = svc->cfg->retention_ms[k];
        if (keep <= 0)
            continue;
        char cutoff[24];
        snprintf(cutoff, sizeof cutoff, "%lld", (long long)now - (long long)keep);
        const char *params[] = {chat_kind_names[k], cutoff};
        retention_op_t *op = wy_calloc(1, sizeof *op);
        op->svc = svc;
        op->kind = k;
        if (wy_pg_exec(pg, &sql_retention, params, on_retention, op) != WY_OK) {
            wy_free(op);
            continue;
        }
        svc->busy++;
        chat_svc_ref(svc);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    chat_svc_unref(h->data);
}

static int chat_start(wy_daemon_t *d, const char **err)
{
    chat_svc_t *svc = wy_calloc(1, sizeof *svc);
    svc->d = d;
    svc->loop = wy_daemon_loop(d);
    svc->cfg = wy_daemon_config(d);
    svc->refs = 1; /* released by stop() */
    svc->sendq = wy_map_new(0);
    wy_daemon_set_state(d, svc);
    if (chat_filter_new(svc->cfg->filter_words, &svc->filter, err) != WY_OK)
        return WY_EINVAL;
    svc->filter_refuse = strcmp(svc->cfg->filter_mode, "refuse") == 0;
    if (wy_ratelimit_new(wy_daemon_redis(d), RKEY_CHAT_RATELIMIT, (uint32_t)svc->cfg->rate_limit,
                         (uint32_t)svc->cfg->rate_window_ms, &svc->rl) != WY_OK) {
        *err = "cannot create the rate limiter";
        return WY_EINVAL;
    }
    const char *h = "Messages refused, by reason.";
    svc->m_sent = wy_metrics_counter("wy_chat_messages_total",
                                     "Messages stored and queued for wy.chat.", NULL);
    svc->m_masked = wy_metrics_counter("wy_chat_masked_total",
                                       "Messages stored with filtered words masked.", NULL);
    svc->m_refused_filter = wy_metrics_counter("wy_chat_refused_total", h, "reason=\"filter\"");
    svc->m_refused_rate = wy_metrics_counter("wy_chat_refused_total", h, "reason=\"rate\"");
    svc->m_refused_mute = wy_metrics_counter("wy_chat_refused_total", h, "reason=\"muted\"");
    svc->m_moderation = wy_metrics_counter("wy_chat_moderation_actions_total",
                                           "Mutes, deletes and reports logged.", NULL);
    svc->m_retention_deleted = wy_metrics_counter("wy_chat_retention_deleted_total",
                                                  "Messages deleted by the retention pass.", NULL);
    svc->m_offline = wy_metrics_counter("wy_chat_offline_whispers_total",
                                        "Whispers kept for a recipient's next login.", NULL);
    svc->m_store = wy_chatmsg_histogram(
        "wy_chat_store_seconds",
        "Send: from the message accepted (checks passed, its ts_ms) to its batch committed "
        "(waiting for the channel's statement in flight, then the statement).");
    svc->m_publish = wy_chatmsg_histogram(
        "wy_chat_publish_seconds",
        "From a wy.chat outbox row's time stamp (its statement started) to the broker "
        "acknowledging the event (the outbox relay and Kafka).");
    if (wy_daemon_outbox(d))
        wy_outbox_set_lag_metric(wy_daemon_outbox(d), svc->m_publish);
    uv_timer_init(svc->loop, &svc->retention);
    svc->retention.data = svc;
    svc->timer_open = true;
    chat_svc_ref(svc);
    uv_timer_start(&svc->retention, retention_tick, 1000, (uint64_t)svc->cfg->retention_every_ms);
    int rc = chat_grpc_register(d, err);
    if (rc == WY_OK)
        rc = chat_offline_register(d, err);
    if (rc == WY_OK)
        rc = chat_review_register(d, err);
    return rc;
}

static void chat_stop(wy_daemon_t *d)
{
    chat_svc_t *svc = wy_daemon_state(d);
    if (!svc || svc->stopping)
        return;
    svc->stopping = true;
    if (svc->timer_open) {
        svc->timer_open = false;
        uv_close((uv_handle_t *)&svc->retention, on_timer_closed);
    }
    wy_ratelimit_free(svc->rl);
    svc->rl = NULL;
    chat_svc_unref(svc);
}

static size_t chat_busy(wy_daemon_t *d)
{
    chat_svc_t *svc = wy_daemon_state(d);
    return svc ? svc->busy : 0;
}
