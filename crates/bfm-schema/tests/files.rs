mod common;
use bfm_schema::*;
use common::*;

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

#[tokio::test]
async fn dump_round_trip_is_empty_plan() {
    let live = TestDb::with("roundtrip", RICH).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dump(&live.target(), &Scope::whole_database(), dir.path()).await.expect("dump");
    assert!(files.len() > 5, "{files:?}");
    let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "dump files are in load order");
    // dump → load into a fresh (scratch) database → plan = empty.
    let plan = plan(&live.target(), &DesiredSource { dir: dir.path().to_path_buf(), bootstrap: None }).await.expect("plan");
    assert!(plan.steps.is_empty(), "{}", render_plan_text(&plan, false));
    assert_eq!(plan.source_fingerprint, plan.desired_fingerprint);
}

#[tokio::test]
async fn files_plan_apply_and_cache() {
    let live = TestDb::new("files").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "bootstrap.sql", "CREATE SCHEMA IF NOT EXISTS app;");
    write(dir.path(), "10_tables.sql", "CREATE TABLE app.t (id int PRIMARY KEY, name text NOT NULL);");
    write(dir.path(), "20_views.sql", "CREATE VIEW app.v AS SELECT name FROM app.t;");
    let desired = DesiredSource { dir: dir.path().to_path_buf(), bootstrap: None };
    let p1 = plan(&live.target(), &desired).await.expect("plan");
    assert!(!p1.timings.desired_cached);
    assert!(p1.desired_source_sha256.is_some());
    assert!(has_step(&p1, "CREATE TABLE \"app\".\"t\""), "{}", render_plan_text(&p1, false));
    // Served from the cache the second time.
    let p2 = plan(&live.target(), &desired).await.expect("plan");
    assert!(p2.timings.desired_cached);
    assert_eq!(p1.steps, p2.steps);
    assert_eq!(p1.desired_fingerprint, p2.desired_fingerprint);

    let st = status(&live.target(), &desired, None).await.expect("status");
    assert!(!st.in_sync);
    assert_eq!(st.pending_steps, p1.steps.len());

    let report = apply(&live.target(), &p1, &[], &ApplyOptions::default()).await.expect("apply");
    assert!(report.converged);
    let st = status(&live.target(), &desired, None).await.expect("status");
    assert!(st.in_sync, "{st:?}");
    assert_eq!(st.pending_steps, 0);

    // Status against a stored snapshot reports drift made by hand, and the pending repair.
    let snap = snapshot(&live.target(), &st.scope).await.expect("snapshot");
    assert_eq!(snap.fingerprint, st.live_fingerprint);
    live.exec("CREATE INDEX t_name_idx ON app.t (name)").await;
    let st = status(&live.target(), &desired, Some(&snap)).await.expect("status");
    assert!(!st.in_sync);
    assert_eq!(st.pending_steps, 1, "{st:?}");
    let drift = st.drift.expect("drift report");
    assert!(!drift.in_sync);
    assert_eq!(drift.drifts.len(), 1);
    assert_eq!((drift.drifts[0].kind, drift.drifts[0].object.as_str()), (ObjectKind::Index, "app.t_name_idx"));
    assert_eq!(drift.drifts[0].change, DriftChange::Added);
    let repair = plan(&live.target(), &desired).await.expect("plan");
    apply(&live.target(), &repair, &[], &ApplyOptions::default()).await.expect("repair");

    // A changed file changes the cache key.
    write(dir.path(), "10_tables.sql", "CREATE TABLE app.t (id int PRIMARY KEY, name text NOT NULL, extra int);");
    let p3 = plan(&live.target(), &desired).await.expect("plan");
    assert!(!p3.timings.desired_cached);
    assert_eq!(p3.steps.len(), 1, "{}", render_plan_text(&p3, false));
    assert!(p3.steps[0].sql.contains("ADD COLUMN \"extra\" integer"));
}

#[tokio::test]
async fn load_errors_name_file_and_line() {
    let live = TestDb::new("loaderr").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.sql", "CREATE TABLE a (id int);\n\nCREATE TABLE b (\n  id int,\n  x nosuchtype\n);\n");
    let err = plan(&live.target(), &DesiredSource { dir: dir.path().to_path_buf(), bootstrap: None }).await.expect_err("must fail");
    match &err {
        SchemaError::Load { file, line, message, .. } => {
            assert!(file.ends_with("a.sql"), "{file}");
            assert_eq!(*line, 5, "{err}");
            assert!(message.contains("nosuchtype"), "{message}");
        }
        other => panic!("unexpected error {other}"),
    }
    // An empty directory is an error too.
    let empty = tempfile::tempdir().expect("tempdir");
    let err = plan(&live.target(), &DesiredSource { dir: empty.path().to_path_buf(), bootstrap: None }).await.expect_err("empty");
    assert!(matches!(err, SchemaError::NoSource(_)), "{err}");
}

#[tokio::test]
async fn snapshot_and_validate_report_drift() {
    let live = TestDb::with("drift", RICH).await;
    let snap = snapshot(&live.target(), &Scope::whole_database()).await.expect("snapshot");
    let json = serde_json::to_string(&snap).expect("json");
    let snap: Snapshot = serde_json::from_str(&json).expect("from json");
    let clean = validate(&live.target(), &snap).await.expect("validate");
    assert!(clean.in_sync && clean.drifts.is_empty(), "{clean:?}");

    live.exec(
        "ALTER TABLE app.users ADD COLUMN hacked boolean;
         ALTER TABLE app.orders ALTER COLUMN note SET DEFAULT 'x';
         DROP INDEX app.orders_user_idx;",
    )
    .await;
    let report = validate(&live.target(), &snap).await.expect("validate");
    assert!(!report.in_sync);
    let find = |o: &str| report.drifts.iter().find(|d| d.object == o).unwrap_or_else(|| panic!("{o} not in {report:#?}"));
    let added = find("app.users.hacked");
    assert_eq!(added.change, DriftChange::Added);
    assert_eq!(added.kind, ObjectKind::Column);
    let changed = find("app.orders.note");
    assert_eq!(changed.change, DriftChange::Changed);
    assert!(changed.after.as_deref().unwrap_or("").contains("DEFAULT 'x'"), "{changed:?}");
    let removed = find("app.orders_user_idx");
    assert_eq!(removed.change, DriftChange::Removed);
    assert_eq!(report.drifts.len(), 3, "{report:#?}");
}

#[tokio::test]
async fn tls_modes_connect() {
    let db = TestDb::with("tls", "CREATE TABLE t (id int);").await;
    for mode in ["disable", "prefer", "require"] {
        let target = SchemaTarget { database_url: format!("{}?sslmode={mode}", db.url), managed_schemas: vec![], default_schema: None };
        let snap = snapshot(&target, &Scope::whole_database()).await.unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert!(snap.fingerprint.starts_with("v1:"));
    }
    let bad =
        SchemaTarget { database_url: "postgres://postgres@127.0.0.1:1/nowhere".into(), managed_schemas: vec![], default_schema: None };
    let err = snapshot(&bad, &Scope::whole_database()).await.expect_err("no server");
    assert!(matches!(err, SchemaError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}
