-- Roles an operator grants an account. wy-auth puts them in every access token it issues for
-- the account as the claim "roles" (services/auth/README.md, "Roles"); verifiers (lobby) read
-- them from the verified token only. Known roles: 'moderator' (chat moderation). A new role
-- needs code in libs/common/wy_token.c and a migration widening the check below.
ALTER TABLE auth.accounts ADD COLUMN roles text[] NOT NULL DEFAULT '{}';
ALTER TABLE auth.accounts ADD CONSTRAINT accounts_roles_known
    CHECK (roles <@ ARRAY['moderator']::text[]);
-- auth reloads the accounts holding a role every few seconds: few rows, this index.
CREATE INDEX accounts_roles_idx ON auth.accounts (id) WHERE cardinality(roles) > 0;

-- The operator's way to grant or take roles:
--   SELECT auth.set_roles('<account uuid>', ARRAY['moderator']);   -- grant
--   SELECT auth.set_roles('<account uuid>', ARRAY[]::text[]);      -- take every role
-- Returns the roles now held; raises 'no such account' (P0002) for an unknown id and a check
-- violation for an unknown role. Logged in auth.role_changes.
CREATE TABLE auth.role_changes (
    id          bigserial PRIMARY KEY,
    account_id  uuid NOT NULL,
    roles       text[] NOT NULL,
    by_whom     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION auth.set_roles(p_account uuid, p_roles text[]) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    r text[];
BEGIN
    UPDATE auth.accounts
       SET roles = (SELECT coalesce(array_agg(DISTINCT x ORDER BY x), '{}')
                      FROM unnest(p_roles) AS x WHERE x IS NOT NULL)
     WHERE id = p_account
    RETURNING roles INTO r;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such account %', p_account USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO auth.role_changes (account_id, roles, by_whom) VALUES (p_account, r, session_user);
    RETURN r;
END;
$$;
