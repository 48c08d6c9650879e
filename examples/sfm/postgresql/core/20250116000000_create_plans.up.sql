-- bfm-schema: core
-- bfm-tags: tier=core, team=billing
CREATE TABLE IF NOT EXISTS plans (
    id text PRIMARY KEY,
    name text NOT NULL,
    monthly_price_cents integer NOT NULL CHECK (monthly_price_cents >= 0)
);
CREATE TABLE IF NOT EXISTS organization_plans (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    plan_id text NOT NULL REFERENCES plans (id),
    started_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, plan_id)
);
