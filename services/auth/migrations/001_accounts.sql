-- wy-auth schema: accounts, their login methods, sessions (refresh-token families).
-- Runs with search_path = auth (wy_pg_migrate); names are qualified anyway for clarity.

CREATE TABLE auth.accounts (
    id          uuid PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,              -- login method that created it
    banned_at   timestamptz,                -- non-NULL: logins refused
    ban_reason  text
);

-- Username + password: at most one per account. username_norm is the NFKC +
-- case-folded form, so look-alike duplicates ("Ｐlayer", "player") collide.
CREATE TABLE auth.credentials (
    account_id     uuid PRIMARY KEY REFERENCES auth.accounts(id) ON DELETE CASCADE,
    username_norm  text NOT NULL,
    username       text NOT NULL,           -- as typed (NFC), for display
    password_hash  text NOT NULL,           -- Argon2id encoded string (PHC format)
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT credentials_username_key UNIQUE (username_norm)
);

-- Links to external or device identities: device id, a studio's custom id,
-- Steam id, OIDC "<iss>|<sub>". One account may hold several.
CREATE TABLE auth.identities (
    method      text NOT NULL CHECK (method IN ('device', 'custom', 'steam', 'oidc')),
    subject     text NOT NULL,
    account_id  uuid NOT NULL REFERENCES auth.accounts(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, subject)
);
CREATE INDEX identities_account_idx ON auth.identities (account_id);

-- A login session is one refresh-token family.
CREATE TABLE auth.sessions (
    id             uuid PRIMARY KEY,
    account_id     uuid NOT NULL REFERENCES auth.accounts(id) ON DELETE CASCADE,
    method         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoke_reason  text
);
CREATE INDEX sessions_account_idx ON auth.sessions (account_id) WHERE revoked_at IS NULL;

-- Refresh tokens, stored only as SHA-256 (hex). rotated_at non-NULL: already used.
CREATE TABLE auth.refresh_tokens (
    token_hash  text PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES auth.sessions(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON auth.refresh_tokens (session_id);

-- Find the account of an identity, creating account + identity when p_create
-- and none exists. Safe under concurrency: a racing insert is re-read.
CREATE FUNCTION auth.identity_login(p_method text, p_subject text, p_new_account uuid,
                                    p_create boolean)
RETURNS TABLE (account_id uuid, created boolean, banned boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_account uuid;
BEGIN
    SELECT i.account_id INTO v_account FROM auth.identities i
     WHERE i.method = p_method AND i.subject = p_subject;
    IF v_account IS NULL THEN
        IF NOT p_create THEN
            RETURN;
        END IF;
        INSERT INTO auth.accounts (id, created_by) VALUES (p_new_account, p_method);
        INSERT INTO auth.identities (method, subject, account_id)
             VALUES (p_method, p_subject, p_new_account)
        ON CONFLICT (method, subject) DO NOTHING;
        IF FOUND THEN
            RETURN QUERY SELECT p_new_account, true, false;
            RETURN;
        END IF;
        DELETE FROM auth.accounts WHERE id = p_new_account;
        SELECT i.account_id INTO v_account FROM auth.identities i
         WHERE i.method = p_method AND i.subject = p_subject;
    END IF;
    RETURN QUERY SELECT a.id, false, a.banned_at IS NOT NULL FROM auth.accounts a
                  WHERE a.id = v_account;
END $$;

-- Rotate a refresh token atomically. Status: 'ok' (new token stored), 'unknown',
-- 'expired', 'revoked' (session already revoked), 'banned', or 'reused' (the
-- token was already rotated: the whole family is revoked now: theft detection).
CREATE FUNCTION auth.refresh_rotate(p_old_hash text, p_new_hash text, p_ttl_s bigint)
RETURNS TABLE (status text, session_id uuid, account_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    t auth.refresh_tokens%ROWTYPE;
    s auth.sessions%ROWTYPE;
    v_banned boolean;
BEGIN
    SELECT * INTO t FROM auth.refresh_tokens r WHERE r.token_hash = p_old_hash FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::uuid;
        RETURN;
    END IF;
    SELECT * INTO s FROM auth.sessions x WHERE x.id = t.session_id FOR UPDATE;
    IF s.revoked_at IS NOT NULL THEN
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
    SELECT a.banned_at IS NOT NULL INTO v_banned FROM auth.accounts a WHERE a.id = s.account_id;
    IF v_banned THEN
        RETURN QUERY SELECT 'banned'::text, s.id, s.account_id;
        RETURN;
    END IF;
    UPDATE auth.refresh_tokens SET rotated_at = now() WHERE token_hash = p_old_hash;
    INSERT INTO auth.refresh_tokens (token_hash, session_id, expires_at)
         VALUES (p_new_hash, s.id, now() + make_interval(secs => p_ttl_s));
    RETURN QUERY SELECT 'ok'::text, s.id, s.account_id;
END $$;

-- Unlink one login method (a given subject, or every identity of that method
-- when p_subject is NULL). Returns the number removed, 0 when nothing matched,
-- -1 when it would leave the account without any login method.
CREATE FUNCTION auth.unlink(p_account uuid, p_method text, p_subject text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_total integer;
    v_match integer;
BEGIN
    -- Serialises concurrent unlinks of one account, so two cannot both pass the count.
    PERFORM 1 FROM auth.accounts WHERE id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT (SELECT count(*) FROM auth.credentials c WHERE c.account_id = p_account)
         + (SELECT count(*) FROM auth.identities i WHERE i.account_id = p_account)
      INTO v_total;
    IF p_method = 'password' THEN
        SELECT count(*) INTO v_match FROM auth.credentials c WHERE c.account_id = p_account;
    ELSE
        SELECT count(*) INTO v_match FROM auth.identities i
         WHERE i.account_id = p_account AND i.method = p_method
           AND (p_subject IS NULL OR i.subject = p_subject);
    END IF;
    IF v_match = 0 THEN
        RETURN 0;
    END IF;
    IF v_total - v_match < 1 THEN
        RETURN -1;
    END IF;
    IF p_method = 'password' THEN
        DELETE FROM auth.credentials c WHERE c.account_id = p_account;
    ELSE
        DELETE FROM auth.identities i
         WHERE i.account_id = p_account AND i.method = p_method
           AND (p_subject IS NULL OR i.subject = p_subject);
    END IF;
    RETURN v_match;
END $$;

-- Revoke every live session of an account, optionally banning it. Returns the
-- number of sessions revoked, -1 when the account does not exist.
CREATE FUNCTION auth.revoke_account(p_account uuid, p_reason text, p_ban boolean)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    IF p_ban THEN
        UPDATE auth.accounts SET banned_at = now(), ban_reason = p_reason WHERE id = p_account;
    ELSE
        PERFORM 1 FROM auth.accounts WHERE id = p_account;
    END IF;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    UPDATE auth.sessions SET revoked_at = now(), revoke_reason = p_reason
     WHERE account_id = p_account AND revoked_at IS NULL;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;
