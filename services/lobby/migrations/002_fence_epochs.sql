-- Fence epochs: one counter per account, incremented by every session claim and every
-- operator kick (services/lobby/store.c). Redis holds the current epoch of an account, but
-- Redis may lose everything; this counter does not, so a new session's epoch is always
-- above every epoch issued before (README "Design": fence epochs).
CREATE TABLE fence_epochs (
    account_id text PRIMARY KEY,
    epoch      bigint NOT NULL
);
