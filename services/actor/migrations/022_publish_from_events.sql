-- wy.actor is published from actor.events itself (services/actor/publish.c), not through an
-- outbox row per event: each event row records the id of the transaction that wrote it,
-- and a cursor marks how far publication got. Rows written before this migration have no
-- xid and are not published (they went through the outbox of 020, relayed before the
-- upgrade: stop the old version with its outbox empty).
ALTER TABLE events ADD COLUMN xid xid8;
ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_xid ON events (xid) WHERE xid IS NOT NULL;

-- The last event published (in (xid, actor_id, seq) order); moved forward only.
CREATE TABLE publish_cursor (
    id       integer PRIMARY KEY CHECK (id = 1),
    xid      xid8    NOT NULL,
    actor_id uuid    NOT NULL,
    seq      bigint  NOT NULL
);
INSERT INTO publish_cursor VALUES (1, pg_current_xact_id(), '00000000-0000-0000-0000-000000000000', 0);

-- The per-event outbox of 020 is no longer written; kept while it may hold rows.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM wy_outbox) THEN
        DROP TABLE wy_outbox;
    END IF;
END
$$;
