-- wy.chat events of party and guild channels carry the member list (up to 5,000 account ids):
-- keep outbox payloads uncompressed (TOAST out of line without pglz), so the send statement
-- does not compress what the relay reads back once and deletes (services/chat/README.md,
-- "Sending").
ALTER TABLE chat.wy_outbox ALTER COLUMN payload SET STORAGE EXTERNAL;
