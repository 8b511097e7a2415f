-- actor.fence and actor.transfer (020) took their advisory locks one PERFORM per shard, a
-- plpgsql statement each (a batch of 256 commands touches about 160 shards): most of the
-- fence's cost. Now one query takes them all, in shard order (the sorted subquery feeds the
-- volatile lock calls row by row), so a batch pays one statement for its locks.
CREATE OR REPLACE FUNCTION fence(p_shards integer[], p_epochs bigint[], p_instance text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    held integer;
BEGIN
    PERFORM count(pg_advisory_xact_lock_shared(2002874739, s))
       FROM (SELECT DISTINCT s FROM unnest(p_shards) AS s ORDER BY s) AS sorted;
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

CREATE OR REPLACE FUNCTION transfer(p_shards integer[], p_from text[], p_epochs bigint[], p_to text)
RETURNS TABLE (shard integer, epoch bigint) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(pg_advisory_xact_lock(2002874739, s))
       FROM (SELECT DISTINCT s FROM unnest(p_shards) AS s ORDER BY s) AS sorted;
    RETURN QUERY
    UPDATE actor.owners o SET instance = p_to, epoch = o.epoch + 1, lease_until = now()
      FROM unnest(p_shards, p_from, p_epochs) AS f(shard, inst, epoch)
     WHERE o.shard = f.shard AND o.instance = f.inst AND o.epoch = f.epoch
    RETURNING o.shard, o.epoch;
END
$$;

-- pb_varint (020) was plpgsql, one call per published event (a few ms per batch): now an
-- inlinable SQL expression for seqs below 2^21, the loop only beyond.
ALTER FUNCTION pb_varint(bigint) RENAME TO pb_varint_loop;
CREATE FUNCTION pb_varint(v bigint) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
SELECT CASE
    WHEN v < 128 THEN set_byte('\x00'::bytea, 0, v::integer)
    WHEN v < 16384 THEN set_byte(set_byte('\x0000'::bytea, 0, ((v & 127) | 128)::integer),
                                 1, (v >> 7)::integer)
    WHEN v < 2097152 THEN set_byte(set_byte(set_byte('\x000000'::bytea,
                                   0, ((v & 127) | 128)::integer),
                                   1, (((v >> 7) & 127) | 128)::integer), 2, (v >> 14)::integer)
    ELSE actor.pb_varint_loop(v)
END
$$;
