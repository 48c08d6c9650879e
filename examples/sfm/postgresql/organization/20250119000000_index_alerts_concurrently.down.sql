-- bfm-no-transaction
DROP INDEX CONCURRENTLY IF EXISTS alerts_created_at_idx;
