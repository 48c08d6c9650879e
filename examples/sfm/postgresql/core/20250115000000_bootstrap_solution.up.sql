-- Core schema: regions and organizations.
CREATE TABLE IF NOT EXISTS regions (
    id text PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE IF NOT EXISTS organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    region_id text NOT NULL REFERENCES regions (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO regions (id, name) VALUES ('eu', 'Europe'), ('us', 'United States') ON CONFLICT DO NOTHING;
