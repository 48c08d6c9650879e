//! The executor on in-memory targets (`bfm_testkit::fake`): batches that fail mid-way, cancel,
//! shutdown, lock timeouts, the ledger's authority, blocked dependants and the concurrency cap —
//! in milliseconds, without a database server.

mod common;

use bfm_engine::service::Field;
use bfm_engine::service::request::{DownRequest, DownTarget, MigrationFilter, SchemaChoice, UpRequest};
use bfm_engine::{Engine, RunHooks, RunLabel, RunReport, Service, StatusFilter, StepOutcomeKind, StepResult, Surface};
use bfm_state::HistoryFilter;
use bfm_targets::{LedgerEntry, Target};
use bfm_testkit::fake::{Behaviour, Call, FakeTarget, Gate};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// An engine whose connections `core` and `org` are the given fakes (the URLs are never used).
async fn fake_engine(tree: &Tree, extra: &[(&str, &str)], targets: &[&Arc<FakeTarget>]) -> Arc<Engine> {
    let mut env = vec![
        ("CORE_BACKEND", "postgresql"),
        ("CORE_DB_URL", "postgres://fake@127.0.0.1:9/core"),
        ("ORG_BACKEND", "postgresql"),
        ("ORG_DB_URL", "postgres://fake@127.0.0.1:9/org"),
    ];
    env.extend_from_slice(extra);
    let targets = targets.iter().map(|t| (t.name().to_string(), Arc::clone(t) as Arc<dyn Target>));
    let e = Engine::open_with_targets(config(tree, &tree.state_url(), &env), targets).await.unwrap();
    let r = e.reload().await.unwrap();
    assert_eq!(r.errors, 0, "{:?}", e.diagnostics());
    e
}

/// Three per-tenant migrations on `org`; each statement names its schema and migration.
fn tenant_tree() -> Tree {
    let t = Tree::new();
    t.write("postgresql/org/20250101000000_a.up.sql", "CREATE TABLE a (id int);\nSELECT '{{.Schema}}-a';");
    t.write("postgresql/org/20250101000000_a.down.sql", "DROP TABLE a;");
    t.write("postgresql/org/20250102000000_b.up.sql", "SELECT 1;\nSELECT '{{.Schema}}-b';");
    t.write("postgresql/org/20250102000000_b.down.sql", "SELECT 'undo-b';");
    t.write("postgresql/org/20250103000000_c.up.sql", "SELECT '{{.Schema}}-c';");
    t.write("postgresql/org/20250103000000_c.down.sql", "SELECT 'undo-c';");
    t
}

/// A fixed-schema bootstrap on `core` that the tenant migrations of `org` depend on.
fn dependency_tree() -> Tree {
    let t = Tree::new();
    t.write("postgresql/core/20250101000000_bootstrap.up.sql", "-- bfm-schema: core\nSELECT 'bootstrap';");
    t.write(
        "postgresql/org/20250102000000_alerts.up.sql",
        "-- bfm-dependency: connection=core target=bootstrap\nSELECT '{{.Schema}}-alerts';",
    );
    t.write("postgresql/org/20250103000000_seed.up.sql", "SELECT '{{.Schema}}-seed';");
    t
}

fn up_request(connection: &str, schemas: &[&str]) -> UpRequest {
    UpRequest {
        connection: Some(connection.into()),
        schemas: SchemaChoice::names(Field::Schemas, schemas.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

/// Run a request through the service, as every surface does.
async fn up_with(e: &Arc<Engine>, req: UpRequest, hooks: RunHooks) -> RunReport {
    let label = RunLabel::new(Surface::Cli, "test", ctx());
    Service::new(e.clone()).up(req, label, hooks).await.unwrap().report.expect("a run, not a plan")
}

async fn up(e: &Arc<Engine>, connection: &str, schemas: &[&str]) -> RunReport {
    up_with(e, up_request(connection, schemas), RunHooks::default()).await
}

fn step<'a>(r: &'a RunReport, id: &str) -> &'a StepResult {
    r.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id} in {:?}", r.steps))
}

fn outcomes(r: &RunReport, schema: &str) -> Vec<(String, StepOutcomeKind)> {
    r.steps.iter().filter(|s| s.schema == schema).map(|s| (s.migration_id.clone(), s.outcome)).collect()
}

async fn status_of(e: &Engine, schema: &str, name: &str) -> String {
    let rows = e.status(&StatusFilter { schema: Some(schema.into()), ..Default::default() }).await.unwrap();
    rows.into_iter().find(|r| r.name == name).map(|r| r.status).unwrap_or_else(|| "none".into())
}

const A: &str = "20250101000000_a_postgresql_org";
const B: &str = "20250102000000_b_postgresql_org";
const C: &str = "20250103000000_c_postgresql_org";

#[tokio::test]
async fn a_batch_failing_mid_way_keeps_what_ran_and_stops_only_its_chain() {
    let org = FakeTarget::new("org");
    org.set_batch_limit(10);
    org.on_statement("'x-b'", Behaviour::Fail("boom".into()));
    let t = tenant_tree();
    let e = fake_engine(&t, &[], &[&org]).await;
    let r = up(&e, "org", &["x", "y"]).await;

    assert!(!r.success);
    assert_eq!(r.errors, vec![format!("x_{B}: statement 2 failed: boom")]);
    // The whole chain travelled in one batch; the step before the failure committed.
    assert!(org.log().contains(&Call::Batch { schema: "x".into(), steps: 3 }), "{:?}", org.log());
    assert!(org.log().contains(&Call::Rollback { schema: "x".into(), migration_id: B.into() }));
    assert_eq!(
        outcomes(&r, "x"),
        vec![(A.into(), StepOutcomeKind::Applied), (B.into(), StepOutcomeKind::Failed), (C.into(), StepOutcomeKind::Skipped)]
    );
    let failed = step(&r, &format!("x_{B}"));
    assert_eq!((failed.statement_index, failed.statement.as_deref()), (Some(1), Some("SELECT 'x-b'")));
    assert_eq!(step(&r, &format!("x_{C}")).reason, format!("blocked by failure of x_{B}"));
    assert!(!org.statements().iter().any(|(schema, id, _)| schema == "x" && id == C));
    assert_eq!(org.ledger_ids("x"), vec![A.to_string()]);
    // The other chain is not affected.
    assert_eq!(org.ledger_ids("y"), vec![A.to_string(), B.to_string(), C.to_string()]);
    assert!(outcomes(&r, "y").iter().all(|(_, o)| *o == StepOutcomeKind::Applied));

    // State and history follow.
    assert_eq!(status_of(&e, "x", "a").await, "applied");
    assert_eq!(status_of(&e, "x", "b").await, "failed");
    assert_eq!(status_of(&e, "y", "c").await, "applied");
    let hist =
        e.state().history(&HistoryFilter { migration_id: Some(B.into()), schema: Some("x".into()), ..Default::default() }).await.unwrap();
    assert_eq!(hist.len(), 1, "{hist:?}");
    assert_eq!((hist[0].status.as_str(), hist[0].failed_statement_index), ("failed", Some(1)));
    assert_eq!(hist[0].error.as_deref(), Some("statement 2 failed: boom"));
    e.close().await;
}

/// Start an up run of `tenant_tree` in x and y with every `a` held at a gate; once both
/// chains are inside `a`, `stop` runs, then the gate opens.
async fn run_stopped_mid_way(stop: impl FnOnce(&Arc<Engine>, &Arc<AtomicBool>)) -> (RunReport, Arc<FakeTarget>) {
    let org = FakeTarget::new("org");
    let gate = Gate::new();
    org.on_migration(A, Behaviour::Block(gate.clone()));
    let t = tenant_tree();
    let e = fake_engine(&t, &[], &[&org]).await;
    let cancel = Arc::new(AtomicBool::new(false));
    let hooks = RunHooks { cancel: Some(cancel.clone()), ..Default::default() };
    let run = tokio::spawn({
        let e = e.clone();
        async move { up_with(&e, up_request("org", &["x", "y"]), hooks).await }
    });
    tokio::time::timeout(Duration::from_secs(10), gate.arrived(2)).await.unwrap();
    stop(&e, &cancel);
    gate.release();
    let r = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap();
    e.close().await;
    (r, org)
}

#[tokio::test]
async fn cancel_stops_each_chain_after_its_current_step() {
    let (r, org) = run_stopped_mid_way(|_, cancel| cancel.store(true, Ordering::SeqCst)).await;
    for schema in ["x", "y"] {
        assert_eq!(step(&r, &format!("{schema}_{A}")).outcome, StepOutcomeKind::Applied);
        for id in [B, C] {
            let s = step(&r, &format!("{schema}_{id}"));
            assert_eq!((s.outcome, s.reason.as_str()), (StepOutcomeKind::Skipped, "not run: the run was cancelled"));
        }
        assert_eq!(org.ledger_ids(schema), vec![A.to_string()]);
    }
    assert!(r.errors.is_empty() && r.applied.len() == 2, "{r:?}");
    // Locks were released.
    assert_eq!(org.log().iter().filter(|c| matches!(c, Call::Unlock { .. })).count(), 2);
}

#[tokio::test]
async fn shutdown_stops_each_chain_after_its_current_step() {
    let (r, org) = run_stopped_mid_way(|e, _| e.begin_shutdown()).await;
    for schema in ["x", "y"] {
        assert_eq!(step(&r, &format!("{schema}_{A}")).outcome, StepOutcomeKind::Applied);
        for id in [B, C] {
            let s = step(&r, &format!("{schema}_{id}"));
            assert_eq!((s.outcome, s.reason.as_str()), (StepOutcomeKind::Skipped, "not run: bfm is shutting down"));
        }
    }
    assert!(!org.statements().iter().any(|(_, id, _)| id == B || id == C));
}

#[tokio::test]
async fn a_lock_held_elsewhere_fails_the_chain_and_runs_nothing() {
    let org = FakeTarget::new("org");
    org.hold_lock("x", None);
    let t = tenant_tree();
    let e = fake_engine(&t, &[("BFM_LOCK_TIMEOUT", "100ms")], &[&org]).await;
    let r = up(&e, "org", &["x", "y"]).await;
    assert!(!r.success);
    for id in [A, B, C] {
        let s = step(&r, &format!("x_{id}"));
        assert_eq!((s.outcome, s.reason.as_str()), (StepOutcomeKind::Failed, "could not start"));
        let error = s.error.as_deref().unwrap_or_default();
        assert!(error.starts_with("connection org: lock for schema \"x\" not acquired within"), "{error}");
    }
    assert_eq!(r.errors.len(), 3, "{:?}", r.errors);
    assert!(org.statements().iter().all(|(schema, _, _)| schema == "y"));
    assert!(org.ledger_ids("x").is_empty());
    assert_eq!(org.ledger_ids("y").len(), 3);
    assert!(org.log().contains(&Call::LockTimeout { schema: "x".into() }));
    e.close().await;
}

#[tokio::test]
async fn a_step_the_ledger_records_is_skipped_its_state_corrected_and_its_dependants_run() {
    let core = FakeTarget::new("core");
    let org = FakeTarget::new("org");
    let t = dependency_tree();
    let e = fake_engine(&t, &[], &[&core, &org]).await;
    let (bootstrap, _) = e.resolve("20250101000000_bootstrap_postgresql_core").unwrap();
    core.insert_ledger(LedgerEntry {
        migration_id: bootstrap.id.clone(),
        schema: "core".into(),
        version: bootstrap.version.to_string(),
        checksum: bootstrap.checksum.clone(),
        run_id: "earlier".into(),
        applied_at: chrono::Utc::now(),
    });
    let r = up(&e, "org", &["x"]).await;
    assert!(r.success, "{:?}", r.errors);
    let s = step(&r, &bootstrap.id);
    assert_eq!((s.outcome, s.reason.as_str()), (StepOutcomeKind::Skipped, "already applied in the target (ledger)"));
    assert!(core.statements().is_empty(), "{:?}", core.statements());
    // Counted as done for the dependants in the other connection.
    assert_eq!(r.applied, vec!["x_20250102000000_alerts_postgresql_org", "x_20250103000000_seed_postgresql_org"]);
    assert_eq!(status_of(&e, "core", "bootstrap").await, "applied");
    let hist = e.state().history(&HistoryFilter { migration_id: Some(bootstrap.id.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(hist.len(), 1, "{hist:?}");
    assert_eq!((hist[0].operation.as_str(), hist[0].status.as_str()), ("reconcile", "applied"));
    assert_eq!(hist[0].error.as_deref(), Some("already applied in the target (ledger); state updated"));
    e.close().await;
}

#[tokio::test]
async fn a_down_step_the_ledger_no_longer_records_is_skipped_and_marked_rolled_back() {
    let org = FakeTarget::new("org");
    let t = tenant_tree();
    let e = fake_engine(&t, &[], &[&org]).await;
    let r = up(&e, "org", &["x"]).await;
    assert!(r.success, "{:?}", r.errors);
    // Someone rolled c back behind bfm's back.
    org.remove_ledger("x", C);
    let down = DownRequest {
        target: DownTarget::Filter(MigrationFilter { ids: vec![format!("x_{C}")], ..Default::default() }),
        schemas: Vec::new(),
        cascade: false,
        dry_run: false,
        sql: false,
        environment: None,
    };
    let label = RunLabel::new(Surface::Cli, "test down", ctx());
    let r = Service::new(e.clone()).down(down, label, RunHooks::default()).await.unwrap().report.expect("a run");
    assert!(r.success, "{:?}", r.errors);
    let s = step(&r, &format!("x_{C}"));
    assert_eq!((s.outcome, s.reason.as_str()), (StepOutcomeKind::Skipped, "not applied in the target (ledger)"));
    assert!(!org.statements().iter().any(|(_, _, text)| text.contains("undo-c")));
    assert_eq!(status_of(&e, "x", "c").await, "rolled_back");
    e.close().await;
}

#[tokio::test]
async fn a_failed_dependency_blocks_its_dependants() {
    let core = FakeTarget::new("core");
    let org = FakeTarget::new("org");
    core.on_statement("bootstrap", Behaviour::Fail("no such thing".into()));
    let t = dependency_tree();
    let e = fake_engine(&t, &[], &[&core, &org]).await;
    let r = up(&e, "org", &["x", "y"]).await;
    assert!(!r.success);
    assert_eq!(r.errors, vec!["20250101000000_bootstrap_postgresql_core: statement 1 failed: no such thing"]);
    for schema in ["x", "y"] {
        for name in ["20250102000000_alerts", "20250103000000_seed"] {
            let s = step(&r, &format!("{schema}_{name}_postgresql_org"));
            assert_eq!((s.outcome, s.reason.as_str()), (StepOutcomeKind::Skipped, "blocked by 20250101000000_bootstrap_postgresql_core"));
        }
    }
    // The dependants' chains never took a session.
    assert!(org.log().is_empty(), "{:?}", org.log());
    e.close().await;
}

#[tokio::test]
async fn chains_of_a_connection_respect_the_concurrency_cap() {
    let org = FakeTarget::new("org");
    org.on_migration(A, Behaviour::Sleep(Duration::from_millis(40)));
    let t = Tree::new();
    t.write("postgresql/org/20250101000000_a.up.sql", "SELECT '{{.Schema}}';");
    let e = fake_engine(&t, &[], &[&org]).await;
    let schemas = ["s1", "s2", "s3", "s4", "s5"];
    let req = UpRequest { concurrency: Some(2), ..up_request("org", &schemas) };
    let r = up_with(&e, req, RunHooks::default()).await;
    assert!(r.success && r.applied.len() == 5, "{r:?}");
    assert_eq!(org.max_concurrent_steps(), 2);
    e.close().await;
}

#[tokio::test]
async fn unmet_requirements_fail_the_step_before_it_runs() {
    let org = FakeTarget::new("org");
    let t = Tree::new();
    t.write("postgresql/org/20250101000000_a.up.sql", "-- bfm-requires-table: orgs\nSELECT 'needs orgs';");
    let e = fake_engine(&t, &[], &[&org]).await;
    let r = up(&e, "org", &["x"]).await;
    assert_eq!(r.errors, vec![format!("x_{A}: requirements not met: required table(s) missing: x.orgs")]);
    assert!(org.statements().is_empty());

    org.add_table("x", "orgs");
    let r = up(&e, "org", &["x"]).await;
    assert!(r.success, "{:?}", r.errors);
    e.close().await;
}
