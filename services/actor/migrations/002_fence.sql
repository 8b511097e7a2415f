-- The fence every event-writing transaction runs first (services/actor/store.c): the
-- writer still owns each shard it writes to, with the epoch it claimed. The rows are
-- locked FOR SHARE until the transaction ends, so a takeover (UPDATE of the row) waits
-- for a commit in flight and every later write of the old owner fails here with
-- SQLSTATE WYF01, before any of its events is inserted.
CREATE FUNCTION fence(p_shards integer[], p_epochs bigint[], p_instance text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    held integer;
BEGIN
    SELECT count(*) INTO held FROM (
        SELECT 1 FROM actor.owners o
        JOIN unnest(p_shards, p_epochs) AS f(shard, epoch)
          ON o.shard = f.shard AND o.epoch = f.epoch
        WHERE o.instance = p_instance
        FOR SHARE OF o) AS still_ours;
    IF held <> cardinality(p_shards) THEN
        RAISE EXCEPTION 'actor shard fenced: another instance owns it now'
            USING ERRCODE = 'WYF01';
    END IF;
END
$$;
