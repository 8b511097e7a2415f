-- Logins are plain batched statements now (sql.c: auth_identity_find, auth_logins_store,
-- auth_identities_create); the per-login PL/pgSQL function is no longer called.
DROP FUNCTION IF EXISTS auth.identity_login(text, text, uuid, boolean);
