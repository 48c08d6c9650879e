-- Template variables are quoted for where they stand: {{.Schema}} below becomes a quoted
-- identifier in SQL and escaped text inside a string literal.
-- bfm-tags: area=settings, kind=seed
CREATE TABLE IF NOT EXISTS {{.Schema}}.settings (
    key text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO {{.Schema}}.settings (key, value)
VALUES ('tenant_schema', '{{.Schema}}'), ('environment', {{.Environment}}), ('seeded_by', {{.Version}})
ON CONFLICT (key) DO NOTHING;
