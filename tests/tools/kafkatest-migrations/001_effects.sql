-- wy-kafkatest (tests/tools/wy-kafkatest.c): one row per applied effect; a second row for the
-- same event_id would be a second effect, so the tests can see one.
CREATE TABLE effects (
    id         bigserial PRIMARY KEY,
    event_id   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
