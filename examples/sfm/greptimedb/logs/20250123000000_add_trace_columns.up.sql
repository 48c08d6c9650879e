-- Two statements without a transaction: if the second fails, the first stays applied and the
-- failure is recorded as partial. `bfm migrate retry` then resumes at the failed statement.
-- bfm-resumable
-- bfm-tags: area=observability
ALTER TABLE app_logs ADD COLUMN trace_id STRING;
ALTER TABLE app_logs ADD COLUMN span_id STRING;
