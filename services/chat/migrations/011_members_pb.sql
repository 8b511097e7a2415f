-- Each member's ChatEvent.recipients entry, encoded once when the member is added: the send
-- statement concatenates them (string_agg) instead of encoding up to 5,000 account ids for
-- every batch of a party or guild channel (services/chat/README.md, "Sending").
ALTER TABLE chat.members ADD COLUMN pb bytea GENERATED ALWAYS AS (chat.pb_recipient(account_id)) STORED;
