//! The engine against the real PostgreSQL: fan-out, dependencies, failures, retry, checksums,
//! rollbacks, ledger authority, locks and non-transactional steps.

mod common;

use bfm_core::Status;
use bfm_engine::{StatusFilter, StepOutcomeKind};
use bfm_testkit::PgDb;
use common::*;
use sqlx::PgPool;

fn pg_env(db: &PgDb) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for conn in ["CORE", "ORG"] {
        v.push((format!("{conn}_BACKEND"), "postgresql".to_string()));
        v.push((format!("{conn}_DB_URL"), db.url.clone()));
    }
    v
}

fn cfg(tree: &Tree, db: &PgDb, extra: &[(&str, &str)]) -> bfm_engine::Config {
    let mut env: Vec<(String, String)> = pg_env(db);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    config(tree, &tree.state_url(), &env_ref)
}

fn multi_tenant_tree() -> Tree {
    let t = Tree::new();
    t.write("postgresql/core/20250101000000_bootstrap.up.sql", "-- bfm-schema: core\nCREATE TABLE orgs (id int PRIMARY KEY);");
    t.write("postgresql/core/20250101000000_bootstrap.down.sql", "DROP TABLE orgs;");
    t.write(
        "postgresql/org/20250102000000_alerts.up.sql",
        "-- bfm-dependency: connection=core target=bootstrap requires-table=core.orgs\nCREATE TABLE alerts (id int PRIMARY KEY, tenant text DEFAULT '{{.Schema}}');",
    );
    t.write("postgresql/org/20250102000000_alerts.down.sql", "DROP TABLE alerts;");
    t.write("postgresql/org/20250103000000_seed.up.sql", "INSERT INTO {{.Schema}}.alerts (id) VALUES (1);");
    t.write("postgresql/org/20250103000000_seed.down.sql", "DELETE FROM alerts;");
    t
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn per_tenant_fan_out_with_a_cross_connection_dependency() {
    let db = PgDb::new().await;
    let t = multi_tenant_tree();
    let e = engine(cfg(&t, &db, &[])).await;
    let r = up(&e, "org", &["tenant_a_1", "tenant_b"]).await;
    assert!(r.success, "{:?}", r.errors);
    // The core dependency runs first and once; each tenant gets its chain.
    assert_eq!(r.applied[0], "20250101000000_bootstrap_postgresql_core");
    assert_eq!(r.applied.len(), 5, "{:?}", r.applied);
    assert!(r.applied.contains(&"tenant_a_1_20250103000000_seed_postgresql_org".to_string()));
    let pool = PgPool::connect(&db.url).await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM tenant_a_1.alerts WHERE tenant = 'tenant_a_1'").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM tenant_b.alerts").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM bfm.ledger").await, 5);

    // Rerun: everything skipped, nothing executed.
    let r = up(&e, "org", &["tenant_a_1", "tenant_b"]).await;
    assert!(r.success && r.applied.is_empty(), "{r:?}");
    assert_eq!(r.skipped.len(), 4);

    // Status per schema, tenants with `_` included.
    let rows = e.status(&StatusFilter { connection: Some("org".into()), ..Default::default() }).await.unwrap();
    let applied: Vec<_> = rows.iter().filter(|r| r.status == "applied").map(|r| r.id.clone()).collect();
    assert_eq!(applied.len(), 4, "{rows:?}");
    assert!(applied.contains(&"tenant_a_1_20250102000000_alerts_postgresql_org".to_string()));
    pool.close().await;
    e.close().await;
}

#[tokio::test]
async fn a_failing_tenant_stops_only_its_own_chain_and_can_be_retried() {
    let db = PgDb::new().await;
    let t = multi_tenant_tree();
    // Fails in a schema that is not in public.allowed, at the second statement.
    let pool = PgPool::connect(&db.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE public.allowed (name text); INSERT INTO public.allowed VALUES ('good')").execute(&pool).await.unwrap();
    t.write(
        "postgresql/org/20250102000000_alerts.up.sql",
        "CREATE TABLE alerts (id int PRIMARY KEY);\nSELECT 1 / (SELECT count(*)::int FROM public.allowed WHERE name = current_schema());",
    );
    let e = engine(cfg(&t, &db, &[])).await;
    let r = up(&e, "org", &["good", "bad"]).await;
    assert!(!r.success);
    let bad = r.steps.iter().find(|s| s.id == "bad_20250102000000_alerts_postgresql_org").unwrap();
    assert_eq!(bad.outcome, StepOutcomeKind::Failed);
    assert_eq!(bad.statement_index, Some(1));
    assert!(bad.error.as_deref().unwrap().contains("division by zero"), "{bad:?}");
    let blocked = r.steps.iter().find(|s| s.id == "bad_20250103000000_seed_postgresql_org").unwrap();
    assert_eq!(blocked.outcome, StepOutcomeKind::Skipped);
    assert!(r.applied.contains(&"good_20250103000000_seed_postgresql_org".to_string()));
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);

    // The failure is recorded with its statement; the transaction left nothing behind.
    let st = e
        .state()
        .states(&bfm_state::StateFilter { schema: Some("bad".into()), status: Some(Status::Failed), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].failed_statement_index, Some(1));
    assert!(!st[0].partial);
    assert_eq!(count(&pool, "SELECT count(*) FROM pg_tables WHERE schemaname = 'bad'").await, 0);

    // Fix the cause and retry.
    sqlx::raw_sql("INSERT INTO public.allowed VALUES ('bad')").execute(&pool).await.unwrap();
    let reset = e.retry("bad_20250102000000_alerts_postgresql_org", None, ctx()).await.unwrap();
    assert_eq!(reset, vec!["bad_20250102000000_alerts_postgresql_org"]);
    let r = up(&e, "org", &["good", "bad"]).await;
    assert!(r.success, "{:?}", r.errors);
    assert_eq!(r.applied, vec!["bad_20250102000000_alerts_postgresql_org", "bad_20250103000000_seed_postgresql_org"]);
    pool.close().await;
    e.close().await;
}

#[tokio::test]
async fn modified_scripts_block_their_connection_until_accepted() {
    let db = PgDb::new().await;
    let t = multi_tenant_tree();
    let e = engine(cfg(&t, &db, &[])).await;
    assert!(up(&e, "core", &[]).await.success);
    // Comments and layout do not count as changes...
    t.write(
        "postgresql/core/20250101000000_bootstrap.up.sql",
        "-- bfm-schema: core\n-- a comment\nCREATE TABLE orgs (\n  id int PRIMARY KEY\n);\n",
    );
    t.write("postgresql/core/20250105000000_more.up.sql", "-- bfm-schema: core\nCREATE TABLE more (id int);");
    e.reload().await.unwrap();
    let r = up(&e, "core", &[]).await;
    assert!(r.success && r.applied == vec!["20250105000000_more_postgresql_core"], "{r:?}");
    // ...but a real change does.
    t.write("postgresql/core/20250101000000_bootstrap.up.sql", "-- bfm-schema: core\nCREATE TABLE orgs (id bigint PRIMARY KEY);");
    t.write("postgresql/core/20250106000000_even_more.up.sql", "-- bfm-schema: core\nCREATE TABLE even_more (id int);");
    e.reload().await.unwrap();
    let r = up(&e, "core", &[]).await;
    assert!(!r.success && r.applied.is_empty());
    assert!(r.errors[0].contains("20250101000000_bootstrap_postgresql_core") && r.errors[0].contains("accept-checksum"), "{:?}", r.errors);
    let rows = e.status(&StatusFilter { connection: Some("core".into()), ..Default::default() }).await.unwrap();
    assert_eq!(rows.iter().find(|r| r.name == "bootstrap").unwrap().status, "modified");
    e.accept_checksum("20250101000000_bootstrap_postgresql_core", None, ctx()).await.unwrap();
    let r = up(&e, "core", &[]).await;
    assert!(r.success && r.applied == vec!["20250106000000_even_more_postgresql_core"], "{r:?}");
    e.close().await;
}

#[tokio::test]
async fn up_rollback_up_keeps_status_right() {
    let db = PgDb::new().await;
    let t = multi_tenant_tree();
    let e = engine(cfg(&t, &db, &[])).await;
    assert!(up(&e, "org", &["t_1"]).await.success);
    let req =
        bfm_engine::service::RollbackRequest { migration_id: "20250103000000_seed_postgresql_org".into(), schemas: vec!["t_1".into()] };
    let r = bfm_engine::Service::new(e.clone())
        .rollback(req, label("rollback"), bfm_engine::RunHooks::default())
        .await
        .unwrap()
        .into_response();
    assert_eq!(r.applied, vec!["t_1_20250103000000_seed_postgresql_org"]);
    let status = |e: std::sync::Arc<bfm_engine::Engine>| async move {
        e.status(&StatusFilter { schema: Some("t_1".into()), ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.name == "seed")
            .unwrap()
            .status
    };
    assert_eq!(status(e.clone()).await, "rolled_back");
    assert!(up(&e, "org", &["t_1"]).await.applied == vec!["t_1_20250103000000_seed_postgresql_org"]);
    assert_eq!(status(e.clone()).await, "applied");
    let hist = e
        .state()
        .history(&bfm_state::HistoryFilter { migration_id: Some("20250103000000_seed_postgresql_org".into()), ..Default::default() })
        .await
        .unwrap();
    let ops: Vec<_> = hist.iter().rev().map(|h| format!("{}:{}", h.operation, h.status)).collect();
    assert_eq!(ops, vec!["up:applied", "rollback:rolled_back", "up:applied"]);
    e.close().await;
}

#[tokio::test]
async fn the_ledger_wins_when_the_state_store_is_behind() {
    let db = PgDb::new().await;
    let t = multi_tenant_tree();
    let e = engine(cfg(&t, &db, &[])).await;
    assert!(up(&e, "core", &[]).await.success);
    e.close().await;
    // A fresh, empty state store: the target's ledger still knows.
    let fresh = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", fresh.path().join("other.db").display());
    let env = pg_env(&db);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let e2 = engine(config(&t, &url, &env_ref)).await;
    let r = up(&e2, "core", &[]).await;
    assert!(r.success, "{:?}", r.errors);
    assert!(r.applied.is_empty());
    assert_eq!(r.steps[0].reason, "already applied in the target (ledger)");
    let st = e2.state().states(&Default::default()).await.unwrap();
    assert_eq!(st[0].status, Status::Applied);
    e2.close().await;
}

#[tokio::test]
async fn missing_required_tables_fail_before_running() {
    let db = PgDb::new().await;
    let t = Tree::new();
    t.write(
        "postgresql/core/20250101000000_needs.up.sql",
        "-- bfm-schema: core\n-- bfm-requires-table: core.nope\nCREATE TABLE x (id int);",
    );
    let e = engine(cfg(&t, &db, &[])).await;
    let r = up(&e, "core", &[]).await;
    assert!(!r.success);
    assert!(r.errors[0].contains("required table(s) missing: core.nope"), "{:?}", r.errors);
    e.close().await;
}

#[tokio::test]
async fn concurrent_runs_apply_each_step_exactly_once_and_concurrently_is_not_deadlocked() {
    let db = PgDb::new().await;
    let t = multi_tenant_tree();
    t.write(
        "postgresql/org/20250104000000_index.up.sql",
        "-- bfm-no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS alerts_tenant ON alerts (tenant);",
    );
    // Slow the seed down so that runs overlap.
    t.write("postgresql/org/20250103000000_seed.up.sql", "SELECT pg_sleep(0.05);\nINSERT INTO {{.Schema}}.alerts (id) VALUES (1);");
    let tenants: Vec<String> = (0..8).map(|i| format!("tenant_{i}")).collect();
    let mut handles = Vec::new();
    for _ in 0..3 {
        let e = engine(cfg(&t, &db, &[])).await;
        let tenants = tenants.clone();
        handles.push(tokio::spawn(async move {
            let refs: Vec<&str> = tenants.iter().map(String::as_str).collect();
            let r = up(&e, "org", &refs).await;
            e.close().await;
            r
        }));
    }
    let mut applied = 0;
    for h in handles {
        let r = h.await.unwrap();
        assert!(r.success, "{:?}", r.errors);
        applied += r.applied.len();
    }
    // 1 core + 3 per tenant, each exactly once across the three runs.
    assert_eq!(applied, 1 + 3 * tenants.len());
    let pool = PgPool::connect(&db.url).await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM bfm.ledger").await, (1 + 3 * tenants.len()) as i64);
    for t in &tenants {
        assert_eq!(count(&pool, &format!("SELECT count(*) FROM {t}.alerts")).await, 1);
    }
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'alerts_tenant' AND i.indisvalid"
        )
        .await,
        tenants.len() as i64
    );
    pool.close().await;
}

#[tokio::test]
async fn interrupted_runs_are_reconciled_from_the_ledger() {
    let db = PgDb::new().await;
    let t = multi_tenant_tree();
    let e = engine(cfg(&t, &db, &[])).await;
    let r = up(&e, "org", &["t_1"]).await;
    assert!(r.success);
    // Simulate a crash: the state store lost the last step, the run never finished, and a
    // down of the dependency committed in the target without being recorded.
    let lite = sqlx::SqlitePool::connect(&t.state_url()).await.unwrap();
    sqlx::query("DELETE FROM bfm_state WHERE migration_id = '20250103000000_seed_postgresql_org'").execute(&lite).await.unwrap();
    sqlx::query("UPDATE bfm_runs SET finished_at = NULL, pid = 999999999").execute(&lite).await.unwrap();
    let pool = PgPool::connect(&db.url).await.unwrap();
    sqlx::raw_sql("DELETE FROM bfm.ledger WHERE migration_id = '20250102000000_alerts_postgresql_org'").execute(&pool).await.unwrap();

    let rows = e.status(&StatusFilter { connection: Some("org".into()), ..Default::default() }).await.unwrap();
    let status = |name: &str| rows.iter().find(|r| r.name == name).unwrap().status.clone();
    assert_eq!(status("seed"), "applied");
    assert_eq!(status("alerts"), "rolled_back");
    assert!(e.state().open_runs().await.unwrap().is_empty());
    let hist = e
        .state()
        .history(&bfm_state::HistoryFilter { operation: Some(bfm_engine::Operation::Reconcile), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(hist.len(), 1, "the applied step kept its original history row; the rollback got one: {hist:?}");
    // A full reconcile afterwards finds nothing more to do.
    let again = e.reconcile(None).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    lite.close().await;
    pool.close().await;
    e.close().await;
}
