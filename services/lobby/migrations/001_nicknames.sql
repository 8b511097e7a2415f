-- Nicknames: one per account, unique by their collision key `norm` (NFKC, case folded,
-- accents stripped, i/l/1 and o/0 folded: see services/lobby/nickname.c), so look-alikes
-- collide. Every change is kept in nickname_history.
CREATE TABLE nicknames (
    account_id text PRIMARY KEY,
    nickname   text NOT NULL,
    norm       text NOT NULL UNIQUE,
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nickname_history (
    id         bigserial PRIMARY KEY,
    account_id text NOT NULL,
    nickname   text NOT NULL,
    norm       text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX nickname_history_account ON nickname_history (account_id, set_at);
