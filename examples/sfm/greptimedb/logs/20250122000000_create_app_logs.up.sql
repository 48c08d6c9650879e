-- Per tenant: no declared schema, so it runs once per requested schema; on GreptimeDB a schema
-- is a database, created on demand. GreptimeDB has no transactions: statements run one by one.
-- bfm-tags: area=observability
CREATE TABLE IF NOT EXISTS app_logs (
    host STRING,
    service STRING,
    level STRING,
    message STRING,
    ts TIMESTAMP TIME INDEX,
    PRIMARY KEY (host, service, level)
) WITH (ttl = '30d');
