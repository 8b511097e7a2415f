-- wy_outbox's table (libs/common/wy_outbox.h): auth's wy.account events, written in the same
-- transaction as the change they report and relayed to Kafka once committed.
CREATE TABLE wy_outbox (
    id       bigserial PRIMARY KEY,
    event_id text   NOT NULL UNIQUE,
    topic    text   NOT NULL,
    key      text   NOT NULL DEFAULT '',
    type     text   NOT NULL,
    payload  bytea  NOT NULL,
    ts_ms    bigint NOT NULL
);
-- The revocation rebuild after a Redis data loss reads the recent bans (auth_recent_revocations in sql.c).
CREATE INDEX accounts_banned_at_idx ON accounts (banned_at) WHERE banned_at IS NOT NULL;
