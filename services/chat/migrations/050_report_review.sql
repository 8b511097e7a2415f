-- Report review (services/chat/README.md "Moderation"): a moderator closes a report with a
-- note (ResolveReport); ListReports pages the open ones by id.
ALTER TABLE reports ADD COLUMN resolved_at_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE reports ADD COLUMN resolved_by text NOT NULL DEFAULT '';
ALTER TABLE reports ADD COLUMN resolution text NOT NULL DEFAULT '';
CREATE INDEX reports_open_idx ON reports (id) WHERE resolved_at_ms = 0;
