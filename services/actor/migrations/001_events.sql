-- wy-actor's event store (services/actor/README.md, "Storage"). Characters are
-- event-sourced: `events` is the truth, `snapshots` a shortcut for loading, `characters`
-- an index for listing by account and for unique names, `commands` the idempotency
-- record, `owners` the fencing of writers.

-- Every change of an actor, in order. (actor_id, seq) is the primary key: two writers
-- can never both write seq N of one actor. `epoch` is the owner epoch of the shard the
-- writer held when it wrote (see `owners`); `payload` is a packed wyvern.actor.Event and
-- `type` the name of its oneof body ("xp_gained"), for people and SQL.
CREATE TABLE events (
    actor_id uuid        NOT NULL,
    seq      bigint      NOT NULL CHECK (seq > 0),
    epoch    bigint      NOT NULL,
    event_id uuid        NOT NULL UNIQUE,
    type     text        NOT NULL,
    payload  bytea       NOT NULL,
    ts       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_id, seq)
);

-- State of an actor as of its event `seq` (a packed wyvern.actor.Character). The last
-- WY_ACTOR_SNAPSHOT_KEEP are kept per actor.
CREATE TABLE snapshots (
    actor_id uuid        NOT NULL,
    seq      bigint      NOT NULL,
    state    bytea       NOT NULL,
    ts       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_id, seq)
);

-- One row per character, written in the transaction of its CharacterCreated event
-- (seq 1). name_key is the name folded with libs/common/wy_text (NFKC, case fold,
-- NFKC): look-alikes modulo case and compatibility forms collide. create_key is the
-- optional idempotency key of the create. deleted_at mirrors the Deleted/Restored
-- events so listing needs no replay.
CREATE TABLE characters (
    actor_id   uuid        PRIMARY KEY,
    account_id uuid        NOT NULL,
    name       text        NOT NULL,
    name_key   text        NOT NULL UNIQUE,
    class_name text        NOT NULL,
    create_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    UNIQUE (account_id, create_key)
);

CREATE INDEX characters_account ON characters (account_id, created_at);

-- Idempotency: the first result of each command key, refusals included. status is 0
-- or the WY_E* code of the refusal with its message; result is the packed
-- wyvern.actor.ApplyResponse of an accepted command. Written in the transaction of the
-- command's events, so a key exists exactly when its effect does.
CREATE TABLE commands (
    actor_id uuid        NOT NULL,
    key      text        NOT NULL,
    status   integer     NOT NULL,
    message  text        NOT NULL DEFAULT '',
    result   bytea,
    ts       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_id, key)
);

-- Ownership of the 256 shards (shard = first byte of the actor's UUID). An instance
-- that takes a shard bumps its epoch; every transaction that writes events first reads
-- the shard's row FOR SHARE and checks instance and epoch, so a writer whose shard was
-- taken over can no longer commit (and a takeover waits for a commit in flight).
-- lease_until is renewed by the owner; takeover on lease expiry comes with the
-- multi-instance work of the actor issue.
CREATE TABLE owners (
    shard       integer     PRIMARY KEY CHECK (shard >= 0 AND shard < 256),
    instance    text        NOT NULL DEFAULT '',
    epoch       bigint      NOT NULL DEFAULT 0,
    lease_until timestamptz NOT NULL DEFAULT 'epoch'
);

INSERT INTO owners (shard) SELECT generate_series(0, 255);
