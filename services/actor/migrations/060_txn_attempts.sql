-- Transactions across instances (services/actor/txn_remote.c). A side owned by another
-- instance is held there; the coordinator's one statement fences each side with its own
-- owner and epoch (fence_each) and inserts the attempt's row here as 'committed'. A
-- remote owner that cannot learn the outcome (its hold timed out, the coordinator died or
-- said "unknown") inserts the same attempt_id as 'aborted' (ON CONFLICT DO NOTHING):
-- the primary key lets exactly one of the two in. If its row went in, the coordinator's
-- statement can no longer commit and the side is released unchanged; if not, the
-- coordinator's committed first and the side is read again from PostgreSQL.
-- (Migrations 060.. belong to transactions across instances.)
CREATE TABLE txn_attempts (
    attempt_id uuid        PRIMARY KEY,
    txn_id     text        NOT NULL,
    outcome    text        NOT NULL CHECK (outcome IN ('committed', 'aborted')),
    ts         timestamptz NOT NULL DEFAULT now()
);

-- actor.fence with one owner per shard: p_instances[i] must own p_shards[i] under
-- p_epochs[i]. Same advisory locks (shared, shard order) as fence, so a transfer waits for
-- the statement and every later one fails with WYF01.
CREATE FUNCTION fence_each(p_shards integer[], p_epochs bigint[], p_instances text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    held integer;
BEGIN
    PERFORM count(pg_advisory_xact_lock_shared(2002874739, s))
       FROM (SELECT DISTINCT s FROM unnest(p_shards) AS s ORDER BY s) AS sorted;
    SELECT count(*) INTO held FROM actor.owners o
      JOIN unnest(p_shards, p_epochs, p_instances) AS f(shard, epoch, inst)
        ON o.shard = f.shard AND o.epoch = f.epoch AND o.instance = f.inst;
    IF held <> cardinality(p_shards) THEN
        RAISE EXCEPTION 'actor shard fenced: another instance owns it now'
            USING ERRCODE = 'WYF01';
    END IF;
END
$$;
