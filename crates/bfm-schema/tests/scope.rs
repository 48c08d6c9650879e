//! The scope: with no configured schema list, bfm manages what the desired files use (plus the
//! connection's schema), never the rest of the database.
mod common;
use bfm_schema::*;
use common::*;

fn desired_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, DesiredSource) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let desired = DesiredSource { dir: dir.path().to_path_buf(), bootstrap: None };
    (dir, desired)
}

/// A database holding things the desired files never mention.
const UNRELATED: &str = "
CREATE EXTENSION pgcrypto;
CREATE SCHEMA other;
CREATE TABLE other.keep (id int PRIMARY KEY, note text);
";

fn mentions_unrelated(plan: &SchemaPlan) -> bool {
    plan.steps.iter().any(|s| s.object.contains("pgcrypto") || s.object.starts_with("other") || s.sql.contains("\"other\""))
}

#[tokio::test]
async fn desired_files_decide_the_scope_and_drift_is_repaired_with_approval() {
    let live = TestDb::with("scope", UNRELATED).await;
    let (_dir, desired) =
        desired_dir(&[("10_items.sql", "CREATE SCHEMA app;\nCREATE TABLE app.items (id bigint PRIMARY KEY, name text NOT NULL);")]);
    let target = SchemaTarget { default_schema: Some("app".into()), ..live.target() };

    let plan = bfm_schema::plan(&target, &desired).await.expect("plan");
    assert_eq!(plan.scope, Scope { origin: ScopeOrigin::DesiredFiles, schemas: vec!["app".into()], extensions: vec![] });
    assert_eq!(plan.managed_schemas, vec!["app".to_string()]);
    assert!(!mentions_unrelated(&plan), "{}", render_plan_text(&plan, false));
    assert!(plan.approvals_required.is_empty(), "{:?}", plan.approvals_required);
    assert!(plan.steps.iter().all(|s| s.object == "app" || s.object.starts_with("app.")), "{}", render_plan_text(&plan, false));
    assert!(has_step(&plan, "CREATE TABLE \"app\".\"items\""), "{}", render_plan_text(&plan, false));
    assert!(render_plan_text(&plan, false).contains("scope: schemas app (from the desired files)"));

    let report = apply(&target, &plan, &[], &ApplyOptions::default()).await.expect("apply");
    assert!(report.converged, "{report:?}");
    assert_eq!(report.scope, plan.scope);
    assert_eq!(live.query_one_i64("SELECT count(*) FROM app.items").await, 0);
    let snap = snapshot(&target, &plan.scope).await.expect("snapshot");
    assert_eq!(snap.recorded_scope(), plan.scope);
    let again = bfm_schema::plan(&target, &desired).await.expect("plan");
    assert!(again.steps.is_empty(), "{}", render_plan_text(&again, false));

    // A column added by hand is drift of the managed table; the unrelated schema is not looked at.
    live.exec("ALTER TABLE app.items ADD COLUMN sneaky int; CREATE TABLE other.more (id int);").await;
    let drift = validate(&target, &snap).await.expect("validate");
    assert!(!drift.in_sync);
    assert_eq!(drift.scope, plan.scope);
    assert_eq!(drift.drifts.len(), 1, "{:?}", drift.drifts);
    assert_eq!((drift.drifts[0].kind, drift.drifts[0].object.as_str()), (ObjectKind::Column, "app.items.sneaky"));
    assert_eq!(drift.drifts[0].change, DriftChange::Added);

    // Repairing it deletes data: the plan needs the approval and applies with it.
    let repair = bfm_schema::plan(&target, &desired).await.expect("plan");
    assert_eq!(repair.approvals_required, vec!["DELETES_DATA:app.items.sneaky".to_string()], "{}", render_plan_text(&repair, false));
    assert!(!mentions_unrelated(&repair), "{}", render_plan_text(&repair, false));
    let err = apply(&target, &repair, &[], &ApplyOptions::default()).await.expect_err("needs approval");
    assert!(matches!(err, SchemaError::ApprovalRequired { .. }), "{err}");
    let report = apply(&target, &repair, &approvals_for(&repair), &ApplyOptions::default()).await.expect("apply");
    assert!(report.converged);
    assert_eq!(live.query_one_i64("SELECT count(*) FROM information_schema.columns WHERE table_name = 'items'").await, 2);
    assert_eq!(live.query_one_i64("SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'").await, 1);
    assert_eq!(live.query_one_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'other'").await, 2);
}

#[tokio::test]
async fn declared_extensions_count_wherever_they_live() {
    let live = TestDb::with("scope_ext", UNRELATED).await;
    let (_dir, desired) = desired_dir(&[(
        "10.sql",
        "CREATE EXTENSION citext;\nCREATE SCHEMA app;\nCREATE TABLE app.users (id int PRIMARY KEY, nick citext);",
    )]);
    let target = live.target();
    let plan = bfm_schema::plan(&target, &desired).await.expect("plan");
    // citext lands in public, which stays unmanaged: it holds no object of the files.
    assert_eq!(plan.scope, Scope { origin: ScopeOrigin::DesiredFiles, schemas: vec!["app".into()], extensions: vec!["citext".into()] });
    assert!(has_step(&plan, "CREATE EXTENSION"), "{}", render_plan_text(&plan, false));
    assert!(!mentions_unrelated(&plan), "{}", render_plan_text(&plan, false));
    let report = apply(&target, &plan, &approvals_for(&plan), &ApplyOptions::default()).await.expect("apply");
    assert!(report.converged, "{report:?}");
    let again = bfm_schema::plan(&target, &desired).await.expect("plan");
    assert!(again.steps.is_empty(), "{}", render_plan_text(&again, false));
}

#[tokio::test]
async fn a_configured_list_wins_and_the_connection_schema_is_managed() {
    let live = TestDb::with("scope_cfg", UNRELATED).await;
    let (_dir, desired) = desired_dir(&[("10.sql", "CREATE SCHEMA app;\nCREATE TABLE app.items (id int PRIMARY KEY);")]);

    // The configured list manages public (and its pgcrypto) as well: dropping it needs approval.
    let configured = SchemaTarget { managed_schemas: vec!["public".into(), "app".into()], ..live.target() };
    let plan = bfm_schema::plan(&configured, &desired).await.expect("plan");
    assert_eq!(plan.scope.origin, ScopeOrigin::Configured);
    assert_eq!(plan.scope.schemas, vec!["app".to_string(), "public".to_string()]);
    assert!(plan.approvals_required.contains(&"DELETES_DATA:pgcrypto".to_string()), "{}", render_plan_text(&plan, false));

    // {CONN}_SCHEMA is managed even when the files leave it out.
    let with_schema = SchemaTarget { default_schema: Some("other".into()), ..live.target() };
    let plan = bfm_schema::plan(&with_schema, &desired).await.expect("plan");
    assert_eq!(plan.scope.schemas, vec!["app".to_string(), "other".to_string()]);
    assert!(plan.approvals_required.iter().any(|a| a.contains("other")), "{}", render_plan_text(&plan, false));
    assert!(!plan.approvals_required.contains(&"DELETES_DATA:pgcrypto".to_string()));
}
