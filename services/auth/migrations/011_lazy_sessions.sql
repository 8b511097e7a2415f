-- Logins write no session (issue 11): a login answers a refresh token that carries its own
-- family (session id, account, login time, method) under a MAC (services/auth/tokens.c), and the
-- family's rows (sessions, refresh_tokens) are created at its first refresh or logout. What a
-- crash costs: services/auth/README.md, "Logins: no session written".

-- The MAC key of those refresh tokens: one row, made here (pg_strong_random via
-- gen_random_uuid: 244 random bits), read by every auth instance at start. Whoever can read it
-- can mint refresh tokens, as whoever can write auth.refresh_tokens could before.
CREATE TABLE auth.token_keys (
    id          integer PRIMARY KEY,
    secret      bytea NOT NULL CHECK (length(secret) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO auth.token_keys (id, secret)
VALUES (1, decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

-- Revoke-all and ban cover families that have no row yet: every family that began at or before
-- this time is revoked (refresh refused, access tokens reported revoked).
ALTER TABLE auth.accounts ADD COLUMN sessions_revoked_at timestamptz;
UPDATE auth.accounts SET sessions_revoked_at = banned_at WHERE banned_at IS NOT NULL;
CREATE INDEX accounts_sessions_revoked_idx ON auth.accounts (sessions_revoked_at)
    WHERE sessions_revoked_at IS NOT NULL;

-- Revoke every session of an account, optionally banning it, as of p_at_ms (auth's clock, the
-- same clock as the login times in refresh tokens and the Redis revocation). Returns the number
-- of session rows revoked (families never refreshed have none and are revoked by the time),
-- -1 when the account does not exist.
DROP FUNCTION auth.revoke_account(uuid, text, boolean);
CREATE FUNCTION auth.revoke_account(p_account uuid, p_reason text, p_ban boolean, p_at_ms bigint)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
    v_at timestamptz := greatest(now(), to_timestamp(p_at_ms / 1000.0));
BEGIN
    UPDATE auth.accounts
       SET sessions_revoked_at = greatest(coalesce(sessions_revoked_at, v_at), v_at),
           banned_at = CASE WHEN p_ban THEN v_at ELSE banned_at END,
           ban_reason = CASE WHEN p_ban THEN p_reason ELSE ban_reason END
     WHERE id = p_account;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    UPDATE auth.sessions SET revoked_at = v_at, revoke_reason = p_reason
     WHERE account_id = p_account AND revoked_at IS NULL;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

-- refresh_rotate as before, and a family that began at or before its account's revocation time
-- is 'revoked'.
CREATE OR REPLACE FUNCTION auth.refresh_rotate(p_old_hash text, p_new_hash text, p_ttl_s bigint)
RETURNS TABLE (status text, session_id uuid, account_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    t auth.refresh_tokens%ROWTYPE;
    s auth.sessions%ROWTYPE;
    v_banned boolean;
    v_revoked_at timestamptz;
BEGIN
    SELECT * INTO t FROM auth.refresh_tokens r WHERE r.token_hash = p_old_hash FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::uuid;
        RETURN;
    END IF;
    SELECT * INTO s FROM auth.sessions x WHERE x.id = t.session_id FOR UPDATE;
    SELECT a.banned_at IS NOT NULL, a.sessions_revoked_at INTO v_banned, v_revoked_at
      FROM auth.accounts a WHERE a.id = s.account_id;
    IF s.revoked_at IS NOT NULL OR s.created_at <= v_revoked_at THEN
        RETURN QUERY SELECT 'revoked'::text, s.id, s.account_id;
        RETURN;
    END IF;
    IF t.rotated_at IS NOT NULL THEN
        UPDATE auth.sessions SET revoked_at = now(), revoke_reason = 'refresh-reuse'
         WHERE id = s.id;
        RETURN QUERY SELECT 'reused'::text, s.id, s.account_id;
        RETURN;
    END IF;
    IF t.expires_at <= now() THEN
        RETURN QUERY SELECT 'expired'::text, s.id, s.account_id;
        RETURN;
    END IF;
    IF v_banned THEN
        RETURN QUERY SELECT 'banned'::text, s.id, s.account_id;
        RETURN;
    END IF;
    UPDATE auth.refresh_tokens SET rotated_at = now() WHERE token_hash = p_old_hash;
    INSERT INTO auth.refresh_tokens (token_hash, session_id, expires_at)
         VALUES (p_new_hash, s.id, now() + make_interval(secs => p_ttl_s));
    RETURN QUERY SELECT 'ok'::text, s.id, s.account_id;
END $$;

-- The first refresh (or a later one) of a family that a login answered without writing it:
-- its session and this token's row are created unless they exist (a logout may have created
-- the session, revoked; an earlier refresh created both), then it rotates as any other. Two
-- racing first refreshes serialise on the primary keys: the second finds the token rotated
-- (reuse). An account that no longer exists leaves nothing: 'unknown'.
CREATE FUNCTION auth.refresh_open(p_hash text, p_sid uuid, p_account uuid, p_method text,
                                  p_at_ms bigint, p_new_hash text, p_ttl_s bigint)
RETURNS TABLE (status text, session_id uuid, account_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    v_at timestamptz := to_timestamp(p_at_ms / 1000.0);
BEGIN
    INSERT INTO auth.sessions (id, account_id, method, created_at)
    SELECT p_sid, a.id, p_method, v_at FROM auth.accounts a WHERE a.id = p_account
    ON CONFLICT (id) DO NOTHING;
    INSERT INTO auth.refresh_tokens (token_hash, session_id, created_at, expires_at)
    SELECT p_hash, x.id, v_at, v_at + make_interval(secs => p_ttl_s)
      FROM auth.sessions x WHERE x.id = p_sid AND x.account_id = p_account
    ON CONFLICT (token_hash) DO NOTHING;
    RETURN QUERY SELECT * FROM auth.refresh_rotate(p_hash, p_new_hash, p_ttl_s);
END $$;
