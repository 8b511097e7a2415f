-- Retention of txn_attempts (services/actor/retention.c): the sweep deletes the oldest rows
-- past WY_ACTOR_TXN_ATTEMPTS_RETENTION, a bounded batch at a time, in ts order.
CREATE INDEX txn_attempts_ts ON txn_attempts (ts);
