-- Cross-actor transactions (services/actor/txn.c): the first result of each txn_id.
-- The row of a committed transaction is written in the same statement (one PostgreSQL
-- transaction) as the events of both sides, so it exists exactly when they do; a
-- retried txn_id fails on the primary key, writes nothing and answers this row. A
-- refusal (status = the WY_E* code, message for a person, no events) is kept too, so a
-- retry stays refused. result is the packed wyvern.actor.TransactResponse.
-- (Migrations 040..059 belong to transactions, friends and rankings.)
CREATE TABLE txns (
    txn_id  text        PRIMARY KEY,
    kind    text        NOT NULL,
    actor_a uuid        NOT NULL,
    actor_b uuid        NOT NULL,
    status  integer     NOT NULL,
    message text        NOT NULL DEFAULT '',
    result  bytea,
    ts      timestamptz NOT NULL DEFAULT now()
);
