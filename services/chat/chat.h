/* wy-chat: chat channels, membership, moderation and the chat log. The service's state and
 * the seams between its files (README "Code map"): chat.c (spec, configuration, start/stop,
 * retention), filter.c (word filter), locate.c (zone instance and presence from Redis),
 * handlers_grpc.c (wyvern.chat.Chat: checks, then the statements of store.c). Loop thread. */
#ifndef CHAT_H
#define CHAT_H

#include "wy_daemon.h"
#include "wy_map.h"
#include "wy_metrics.h"
#include "wy_ratelimit.h"
#include "chat.pb-c.h"
#include "filter.h"

#define CHAT_ID_MAX      56   /* account ids (auth's are 36-byte UUIDs) */
#define CHAT_NAME_MAX    64   /* display names, channel names (bytes) */
#define CHAT_CHANNEL_MAX 128  /* the Kafka key (WY_KAFKA_MAX_ID): "whisper:<a>|<b>" fits */
#define CHAT_ZONE_MAX    5000 /* players of one zone instance a zone message is sent to */

/* Kinds, as stored in chat.channels.kind (and ChannelKind - 1). */
typedef enum {
    CHAT_WORLD = 0,
    CHAT_ZONE,
    CHAT_PARTY,
    CHAT_GUILD,
    CHAT_WHISPER,
    CHAT_SYSTEM,
    CHAT_NKINDS
} chat_kind_t;

extern const char *const chat_kind_names[CHAT_NKINDS];

typedef struct {
    int64_t max_chars, max_bytes;
    int64_t rate_limit, rate_window_ms;
    char *filter_words, *filter_mode;
    int64_t retention_ms[CHAT_NKINDS];
    int64_t retention_every_ms;
    char *presence_key; /* lobby's session index of an account (WY_CHAT_PRESENCE_KEY) */
    char *moderators;   /* account ids with the moderator role besides the token's claim */
} chat_cfg_t;

typedef struct chat_svc {
    wy_daemon_t *d;
    uv_loop_t *loop;
    chat_cfg_t *cfg; /* wy_daemon_config(d): owned by the daemon */
    chat_filter_t *filter;
    bool filter_refuse;
    wy_ratelimit_t *rl;
    wy_map_t *sendq; /* channel id -> its Send queue (handlers_grpc.c), while one is busy */
    uv_timer_t retention;
    bool timer_open;
    int refs; /* start's own, one per operation in flight, the timer until closed */
    bool stopping;
    size_t busy; /* operations in flight (spec.busy) */
    wy_metric_t *m_sent, *m_masked, *m_refused_filter, *m_refused_rate, *m_refused_mute,
        *m_moderation, *m_retention_deleted, *m_offline;
    wy_metric_t *m_offline_acked;     /* offline.c */
    wy_metric_t *m_store, *m_publish; /* Send: accepted -> committed; outbox row -> acknowledged */
} chat_svc_t;

extern const wy_daemon_spec_t chat_daemon_spec;

void chat_svc_ref(chat_svc_t *svc);
void chat_svc_unref(chat_svc_t *svc);

/* The kind of a channel id ("world", "zone:..", "party:..", ...), or -1 for a malformed one. */
int chat_channel_kind(const char *id);
/* True for 1..CHAT_ID_MAX bytes of [A-Za-z0-9_.:-] (auth's account ids are UUIDs). */
bool chat_account_ok(const char *s);
/* True when account is a configured moderator (cfg->moderators, WY_CHAT_MODERATORS). */
bool chat_is_moderator(const chat_cfg_t *cfg, const char *account);

/* handlers_grpc.c */
int chat_grpc_register(wy_daemon_t *d, const char **err);

/* The columns of a chat.messages row m that chat_message_from_row reads. */
#define CHAT_MSG_COLUMNS                                                                           \
    "m.seq AS seq, m.type AS type, m.sender_id AS sender_id, m.sender_name AS sender_name, "       \
    "m.body AS body, m.ts_ms AS ts_ms, m.deleted AS deleted, m.target_seq AS target_seq, "         \
    "m.subject_id AS subject_id"
/* Fills m from row i of res (CHAT_MSG_COLUMNS); strings point into res, channel and kind
 * (chat_kind_t) as given. */
void chat_message_from_row(Wyvern__Chat__Message *m, const PGresult *res, int i,
                           const char *channel, int kind);

/* offline.c: Offline, OfflineAck. review.c: ListReports, ResolveReport. Registered with
 * chat_grpc_register's methods at start. */
int chat_offline_register(wy_daemon_t *d, const char **err);
int chat_review_register(wy_daemon_t *d, const char **err);

/* locate.c: where the world locator seats an account, and who sits in that zone instance.
 * cb gets WY_OK with the instance ("meadow#1") and the accounts seated there (including the
 * asker; at most CHAT_ZONE_MAX), WY_ENOTFOUND when the account is not placed, or WY_EUNAVAIL.
 * Arrays valid during cb. want_members false: only the instance. */
typedef void (*chat_zone_cb)(int status, const char *inst, char *const *accounts, size_t n,
                             void *ud);
int chat_zone_locate(chat_svc_t *svc, const char *account, bool want_members, chat_zone_cb cb,
                     void *ud);
/* Whether account has a lobby session (lobby's index key in Redis): cb(WY_OK, online) or an
 * error (treated as online by callers: a whisper is then not kept for the next login). */
typedef void (*chat_presence_cb)(int status, bool online, void *ud);
int chat_presence(chat_svc_t *svc, const char *account, chat_presence_cb cb, void *ud);

#endif
