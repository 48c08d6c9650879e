-- bfm-schema: core
-- bfm-tags: tier=core, team=platform
-- One environment per tenant schema (`cli_<environment id>` in the organization connection).
CREATE TABLE IF NOT EXISTS environments (
    id text PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    schema_name text NOT NULL UNIQUE CHECK (schema_name ~ '^cli_[a-z0-9_]+$')
);
