-- A login writes only what it needs (issue 11): the index of refresh tokens by session was
-- read by nothing (refresh rotation finds a token by its hash, the primary key; revocation is
-- on sessions) and cost every login one more index insert. A future retention job that
-- deletes sessions (ON DELETE CASCADE to refresh_tokens) should create it again first.
DROP INDEX IF EXISTS auth.refresh_tokens_session_idx;
