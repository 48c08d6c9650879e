ALTER TABLE app_logs DROP COLUMN span_id;
ALTER TABLE app_logs DROP COLUMN trace_id;
