//! Test helpers: one database per test against the real server, dropped afterwards.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use bfm_schema::*;

pub fn server_url(db: &str) -> String {
    let base = std::env::var("BFM_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{base}/{db}")
}

pub async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// A database that lives as long as the value.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new(tag: &str) -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("bfm_schema_t_{tag}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let admin = client(&server_url("postgres")).await;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.expect("drop old");
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0")).await.expect("create db");
        TestDb { url: server_url(&name), name }
    }

    pub async fn with(tag: &str, sql: &str) -> TestDb {
        let db = TestDb::new(tag).await;
        db.exec(sql).await;
        db
    }

    pub async fn exec(&self, sql: &str) {
        let c = client(&self.url).await;
        c.batch_execute(sql).await.unwrap_or_else(|e| panic!("exec failed: {e:?}\n{sql}"));
    }

    pub async fn query_one_i64(&self, sql: &str) -> i64 {
        let c = client(&self.url).await;
        c.query_one(sql, &[]).await.expect("query").get(0)
    }

    pub fn target(&self) -> SchemaTarget {
        SchemaTarget { database_url: self.url.clone(), managed_schemas: vec![], default_schema: None }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async {
                let admin = client(&server_url("postgres")).await;
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
            });
        })
        .join();
    }
}

/// Plan live → desired between two databases.
pub async fn plan_dbs(live: &TestDb, desired: &TestDb) -> SchemaPlan {
    plan_between(&live.url, &desired.url, &[]).await.expect("plan_between")
}

pub fn approvals_for(plan: &SchemaPlan) -> Vec<Approval> {
    plan.approvals_required.iter().map(|a| a.parse().expect("approval")).collect()
}

/// Apply with every approval and check that the result converges (a new plan is empty).
pub async fn apply_converges(live: &TestDb, desired: &TestDb, plan: &SchemaPlan) -> ApplyReport {
    let report = apply(&live.target(), plan, &approvals_for(plan), &ApplyOptions::default())
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}\n{}", render_plan_text(plan, false)));
    let again = plan_dbs(live, desired).await;
    assert!(
        again.steps.is_empty(),
        "not converged; remaining plan:\n{}\nfirst plan:\n{}",
        render_plan_text(&again, false),
        render_plan_text(plan, false)
    );
    assert!(report.converged, "fingerprint did not converge: {report:?}");
    report
}

/// Before/after scenario: plan, apply, converge; returns the plan.
pub async fn scenario(tag: &str, before: &str, after: &str) -> SchemaPlan {
    let live = TestDb::with(&format!("{tag}_l"), before).await;
    let desired = TestDb::with(&format!("{tag}_d"), after).await;
    let plan = plan_dbs(&live, &desired).await;
    apply_converges(&live, &desired, &plan).await;
    plan
}

pub fn has_step(plan: &SchemaPlan, needle: &str) -> bool {
    plan.steps.iter().any(|s| s.sql.contains(needle))
}

pub fn step_for<'a>(plan: &'a SchemaPlan, object: &str) -> &'a Step {
    plan.steps.iter().find(|s| s.object == object).unwrap_or_else(|| panic!("no step for {object}:\n{}", render_plan_text(plan, false)))
}

/// A schema with every first-stage object kind.
pub const RICH: &str = r#"
DO $$ BEGIN CREATE ROLE bfm_schema_reader NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'application';
CREATE TYPE app.status AS ENUM ('new', 'active', 'closed');
COMMENT ON TYPE app.status IS 'lifecycle';
CREATE DOMAIN app.email AS text CONSTRAINT email_at CHECK (VALUE ~ '@');
CREATE TYPE app.address AS (street text, city text COLLATE "C", zip varchar(10));
COMMENT ON TYPE app.address IS 'postal';
CREATE SEQUENCE app.invoice_no START 1000 INCREMENT 2 CACHE 5;
CREATE TABLE app.users (
  id bigint GENERATED ALWAYS AS IDENTITY (START WITH 10) PRIMARY KEY,
  email app.email NOT NULL UNIQUE,
  nick citext,
  name varchar(200) NOT NULL,
  status app.status NOT NULL DEFAULT 'new',
  score numeric(10,2) CHECK (score >= 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  lower_name text GENERATED ALWAYS AS (lower(name)) STORED,
  tenant text COLLATE "C",
  tags text[] DEFAULT '{}',
  home app.address
);
COMMENT ON TABLE app.users IS 'users';
COMMENT ON COLUMN app.users.email IS 'login';
CREATE TABLE app.orders (
  id serial PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES app.users(id) ON DELETE CASCADE,
  invoice integer DEFAULT nextval('app.invoice_no'),
  amount numeric NOT NULL CHECK (amount >= 0),
  note text,
  CONSTRAINT orders_invoice_key UNIQUE (invoice) DEFERRABLE INITIALLY DEFERRED
);
CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v jsonb) WITH (fillfactor = 70);
CREATE INDEX orders_user_idx ON app.orders (user_id) WHERE note IS NOT NULL;
COMMENT ON INDEX app.orders_user_idx IS 'by user';
CREATE INDEX users_lower_idx ON app.users (lower(name) DESC NULLS LAST);
CREATE VIEW app.active_users AS SELECT id, name FROM app.users WHERE status = 'active';
CREATE VIEW app.active_names WITH (security_barrier) AS SELECT name FROM app.active_users;
COMMENT ON VIEW app.active_users IS 'active ones';
CREATE MATERIALIZED VIEW app.order_totals AS SELECT user_id, sum(amount) AS total FROM app.orders GROUP BY user_id;
CREATE UNIQUE INDEX order_totals_user ON app.order_totals (user_id);
COMMENT ON MATERIALIZED VIEW app.order_totals IS 'totals';
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := coalesce(NEW.note, ''); RETURN NEW; END $$;
CREATE FUNCTION app.user_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM app.users $$;
COMMENT ON FUNCTION app.user_count() IS 'how many';
CREATE FUNCTION app.user_total() RETURNS bigint LANGUAGE sql STABLE BEGIN ATOMIC SELECT count(*) FROM app.users; END;
CREATE PROCEDURE app.noop(a integer) LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
CREATE FUNCTION app.orders_of(u bigint) RETURNS SETOF app.orders LANGUAGE sql AS $$ SELECT * FROM app.orders WHERE user_id = u $$;
CREATE TRIGGER orders_touch BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE TRIGGER orders_touch2 BEFORE UPDATE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch();
ALTER TABLE app.orders DISABLE TRIGGER orders_touch2;
ALTER TABLE app.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_tenant ON app.orders FOR SELECT TO PUBLIC USING (current_setting('app.tenant', true) IS NOT NULL);
CREATE POLICY orders_ins ON app.orders AS RESTRICTIVE FOR INSERT WITH CHECK (amount < 1000000);
CREATE TABLE public.plain (id int);
GRANT USAGE ON SCHEMA app TO bfm_schema_reader;
GRANT SELECT ON app.users, app.active_users TO bfm_schema_reader;
GRANT SELECT (id) ON app.orders TO bfm_schema_reader;
REVOKE EXECUTE ON FUNCTION app.user_count() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.user_count() TO bfm_schema_reader WITH GRANT OPTION;
"#;

/// Roles the grant tests use (cluster-wide, created once, never dropped).
pub const ROLES: &str = "
DO $$ BEGIN CREATE ROLE bfm_schema_reader NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE bfm_schema_writer NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
";
