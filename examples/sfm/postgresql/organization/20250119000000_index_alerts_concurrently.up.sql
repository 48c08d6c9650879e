-- CREATE INDEX CONCURRENTLY cannot run inside a transaction: opt out of bfm's.
-- bfm-no-transaction
-- bfm-tags: area=alerts
-- bfm-depends-on: create_alerts
CREATE INDEX CONCURRENTLY IF NOT EXISTS alerts_created_at_idx ON alerts (created_at);
