-- wy_consumed's table (libs/common/wy_consumed.h), as every consuming service includes it.
CREATE TABLE wy_consumed (
    consumer   text        NOT NULL,
    event_id   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX wy_consumed_applied_at ON wy_consumed (applied_at);
