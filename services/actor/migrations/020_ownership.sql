-- One owner per shard across instances (services/actor/README.md, "Ownership"), the
-- durable idempotency of consumed Kafka events and the outbox of wy.actor events.
-- Numbered 020 so that other work on the actor schema can take 003.. without a clash.

-- Every live instance renews its row every WY_ACTOR_HEARTBEAT; one whose lease_until has
-- passed is dead and its shards are taken over. Kept apart from `owners` on purpose: the
-- renewal must not touch the rows writers fence on, or it would wait for (and stall) the
-- group commits in flight.
CREATE TABLE instances (
    instance    text        PRIMARY KEY,
    addr        text        NOT NULL,  -- host:port of its gRPC server (forwarding)
    lease_until timestamptz NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now()
);

-- The fence, without row locks: a writer takes a SHARED advisory lock per shard it writes
-- (in shard order), then reads the owners rows with a fresh snapshot (a VOLATILE function
-- takes one per statement). A transfer takes the same locks EXCLUSIVE (shard order too, so
-- no deadlock) before it bumps the epoch: it waits for the writes in flight on those shards
-- and every later write reads the new epoch and fails with WYF01 before its commit. The
-- locks live in the lock manager only (no tuple locks, no WAL, no multixacts), so the fence
-- costs a batch nothing on disk. The advisory key space is (2002874739 = 'wyas', shard).
CREATE OR REPLACE FUNCTION fence(p_shards integer[], p_epochs bigint[], p_instance text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s integer;
    held integer;
BEGIN
    FOREACH s IN ARRAY (SELECT array_agg(x ORDER BY x) FROM unnest(p_shards) AS x) LOOP
        PERFORM pg_advisory_xact_lock_shared(2002874739, s);
    END LOOP;
    SELECT count(*) INTO held FROM actor.owners o
      JOIN unnest(p_shards, p_epochs) AS f(shard, epoch)
        ON o.shard = f.shard AND o.epoch = f.epoch
     WHERE o.instance = p_instance;
    IF held <> cardinality(p_shards) THEN
        RAISE EXCEPTION 'actor shard fenced: another instance owns it now'
            USING ERRCODE = 'WYF01';
    END IF;
END
$$;

-- Moves shards: each (shard, from instance, epoch) that still holds goes to p_to with the
-- epoch bumped (a compare-and-set: a shard someone else moved first is left out). Returns
-- the shards moved with their new epochs. Used for a takeover (p_to = the caller), a
-- hand-off to the instance that should own it, and the release at a graceful stop
-- (p_to = '').
CREATE FUNCTION transfer(p_shards integer[], p_from text[], p_epochs bigint[], p_to text)
RETURNS TABLE (shard integer, epoch bigint) LANGUAGE plpgsql AS $$
DECLARE
    s integer;
BEGIN
    FOREACH s IN ARRAY (SELECT array_agg(x ORDER BY x) FROM unnest(p_shards) AS x) LOOP
        PERFORM pg_advisory_xact_lock(2002874739, s);
    END LOOP;
    RETURN QUERY
    UPDATE actor.owners o SET instance = p_to, epoch = o.epoch + 1, lease_until = now()
      FROM unnest(p_shards, p_from, p_epochs) AS f(shard, inst, epoch)
     WHERE o.shard = f.shard AND o.instance = f.inst AND o.epoch = f.epoch
    RETURNING o.shard, o.epoch;
END
$$;

-- libs/common/wy_consumed.h: the wy.gameplay events applied (consumer 'actor'), written in
-- the group commit that writes their effect.
CREATE TABLE wy_consumed (
    consumer   text        NOT NULL,
    event_id   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX wy_consumed_applied_at ON wy_consumed (applied_at);

-- libs/common/wy_outbox.h: wy.actor events, one row per committed event, written in the
-- group commit itself and relayed to Kafka after it.
CREATE TABLE wy_outbox (
    id       bigserial PRIMARY KEY,
    event_id text   NOT NULL UNIQUE,
    topic    text   NOT NULL,
    key      text   NOT NULL DEFAULT '',
    type     text   NOT NULL,
    payload  bytea  NOT NULL,
    ts_ms    bigint NOT NULL
);

-- A protobuf varint, to append fields to a stored payload in SQL (wy.actor publications:
-- the stored Event plus its actor_id and seq, see proto/actor.proto).
CREATE FUNCTION pb_varint(v bigint) RETURNS bytea IMMUTABLE STRICT LANGUAGE plpgsql AS $$
DECLARE
    r bytea := '';
BEGIN
    WHILE v >= 128 LOOP
        r := r || set_byte('\x00'::bytea, 0, ((v & 127) | 128)::integer);
        v := v >> 7;
    END LOOP;
    RETURN r || set_byte('\x00'::bytea, 0, v::integer);
END
$$;
