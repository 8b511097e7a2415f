-- wy_outbox's table (libs/common/wy_outbox.h), as every producing service includes it.
CREATE TABLE wy_outbox (
    id       bigserial PRIMARY KEY,
    event_id text   NOT NULL UNIQUE,
    topic    text   NOT NULL,
    key      text   NOT NULL DEFAULT '',
    type     text   NOT NULL,
    payload  bytea  NOT NULL,
    ts_ms    bigint NOT NULL
);
