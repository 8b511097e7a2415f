-- wy-chat's schema `chat` (services/chat/README.md): channels with a per-channel sequence,
-- members with roles, the chat log (every change of a channel is one row with the next
-- sequence number), mutes, reports, the moderation log and whispers for offline players.

-- kind: world | zone | party | guild | whisper | system. last_seq is the sequence number of
-- the channel's latest message; every statement that adds a message takes the next one by
-- updating this row (the row lock orders the writers of one channel).
CREATE TABLE channels (
    id         text   PRIMARY KEY,
    kind       text   NOT NULL CHECK (kind IN ('world', 'zone', 'party', 'guild', 'whisper', 'system')),
    name       text   NOT NULL DEFAULT '',
    owner_id   text   NOT NULL DEFAULT '',
    last_seq   bigint NOT NULL DEFAULT 0,
    created_ms bigint NOT NULL
);
INSERT INTO channels (id, kind, name, created_ms) VALUES
    ('world', 'world', 'World', 0), ('system', 'system', 'System', 0);

-- Party and guild members (world, zone, whisper and system have implicit membership).
CREATE TABLE members (
    channel_id text     NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    account_id text     NOT NULL,
    role       smallint NOT NULL CHECK (role BETWEEN 1 AND 3), -- 1 member, 2 officer, 3 owner
    joined_ms  bigint   NOT NULL,
    PRIMARY KEY (channel_id, account_id)
);
CREATE INDEX members_account_idx ON members (account_id);

CREATE TABLE invites (
    channel_id text   NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    account_id text   NOT NULL,
    by_id      text   NOT NULL,
    at_ms      bigint NOT NULL,
    PRIMARY KEY (channel_id, account_id)
);

-- The chat log. type: 0 text, 1 tombstone (of target_seq), 2 join, 3 leave, 4 invite, 5 kick.
CREATE TABLE messages (
    channel_id  text     NOT NULL,
    seq         bigint   NOT NULL,
    type        smallint NOT NULL,
    sender_id   text     NOT NULL DEFAULT '',
    sender_name text     NOT NULL DEFAULT '',
    body        text     NOT NULL DEFAULT '',
    ts_ms       bigint   NOT NULL,
    deleted     boolean  NOT NULL DEFAULT false,
    target_seq  bigint   NOT NULL DEFAULT 0,
    subject_id  text     NOT NULL DEFAULT '',
    PRIMARY KEY (channel_id, seq)
);
CREATE INDEX messages_ts_idx ON messages (ts_ms);

-- channel_id '' = every channel.
CREATE TABLE mutes (
    account_id text   NOT NULL,
    channel_id text   NOT NULL,
    until_ms   bigint NOT NULL,
    by_id      text   NOT NULL,
    reason     text   NOT NULL DEFAULT '',
    PRIMARY KEY (account_id, channel_id)
);

CREATE TABLE reports (
    id          bigserial PRIMARY KEY,
    channel_id  text   NOT NULL,
    seq         bigint NOT NULL,
    reporter_id text   NOT NULL,
    reason      text   NOT NULL DEFAULT '',
    at_ms       bigint NOT NULL,
    UNIQUE (channel_id, seq, reporter_id)
);

-- Every moderation action: mute, unmute, delete, report.
CREATE TABLE moderation_log (
    id         bigserial PRIMARY KEY,
    actor_id   text   NOT NULL,
    action     text   NOT NULL,
    account_id text   NOT NULL DEFAULT '',
    channel_id text   NOT NULL DEFAULT '',
    seq        bigint NOT NULL DEFAULT 0,
    detail     text   NOT NULL DEFAULT '',
    at_ms      bigint NOT NULL
);

-- Whispers sent while the recipient had no lobby session; taken at their next login.
CREATE TABLE offline_whispers (
    id         bigserial PRIMARY KEY,
    account_id text   NOT NULL,
    channel_id text   NOT NULL,
    seq        bigint NOT NULL
);
CREATE INDEX offline_whispers_account_idx ON offline_whispers (account_id, id);

-- wy_outbox's table (libs/common/wy_outbox.h): the wy.chat events, written by the statement
-- that stores the message they carry.
CREATE TABLE wy_outbox (
    id       bigserial PRIMARY KEY,
    event_id text   NOT NULL UNIQUE,
    topic    text   NOT NULL,
    key      text   NOT NULL DEFAULT '',
    type     text   NOT NULL,
    payload  bytea  NOT NULL,
    ts_ms    bigint NOT NULL
);

-- Protobuf wire encoding of the fields PostgreSQL adds to an event's payload (the sequence
-- number and, for party and guild, the recipients): the statement that takes the number
-- writes the outbox row, so the payload C packed beforehand is completed here.
CREATE FUNCTION pb_varint(v bigint) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    out bytea := '\x'::bytea;
BEGIN
    IF v < 0 THEN
        RAISE EXCEPTION 'pb_varint: negative value';
    END IF;
    LOOP
        IF v < 128 THEN
            RETURN out || set_byte('\x00'::bytea, 0, v::int);
        END IF;
        out := out || set_byte('\x00'::bytea, 0, ((v & 127) | 128)::int);
        v := v >> 7;
    END LOOP;
END $$;

-- Field `field` (varint wire type) holding v.
CREATE FUNCTION pb_uint64(field int, v bigint) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT chat.pb_varint((field::bigint << 3)) || chat.pb_varint(v)
$$;

-- Field `field` (length-delimited) holding s as UTF-8.
CREATE FUNCTION pb_string(field int, s text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT chat.pb_varint((field::bigint << 3) | 2) || chat.pb_varint(octet_length(convert_to(s, 'UTF8')))
           || convert_to(s, 'UTF8')
$$;

-- One element of ChatEvent.recipients (field 4); account ids are at most 64 bytes, so the
-- length is one byte.
CREATE FUNCTION pb_recipient(s text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT set_byte('\x2200'::bytea, 1, octet_length(convert_to(s, 'UTF8'))) || convert_to(s, 'UTF8')
$$;
