//! The service as every surface sees it: plans as values, dry runs, rollback decisions, field
//! names in validation errors, the status summary. SQLite target and state.

mod common;

use bfm_engine::service::{Field, MigrationFilter, RenderedSql, RollbackOutcome, RollbackRequest, SchemaChoice, StatusRequest, UpRequest};
use bfm_engine::{ErrorKind, RunHooks, Service};
use common::*;
use std::sync::{Arc, Mutex};

async fn app() -> (Tree, Arc<bfm_engine::Engine>) {
    let t = Tree::new();
    let gm = t.dir.path().join("migrations");
    std::fs::create_dir_all(&gm).unwrap();
    // 001 has no down script; 002 has one.
    std::fs::write(gm.join("001_init.up.sql"), "CREATE TABLE a (id INTEGER PRIMARY KEY);").unwrap();
    std::fs::write(gm.join("002_more.up.sql"), "CREATE TABLE b (id INTEGER PRIMARY KEY);").unwrap();
    std::fs::write(gm.join("002_more.down.sql"), "DROP TABLE b;").unwrap();
    std::fs::create_dir_all(t.sfm()).unwrap();
    let file = t.dir.path().join("app.db");
    let state = t.state_url();
    let e = engine(config(
        &t,
        &state,
        &[("APP_BACKEND", "sqlite"), ("APP_DB_NAME", &path_str(&file)), ("APP_MIGRATIONS_PATH", &path_str(&gm))],
    ))
    .await;
    (t, e)
}

/// A progress event as seen: (id, status, percent).
type Seen = (String, &'static str, u8);

fn up_app() -> UpRequest {
    UpRequest { connection: Some("app".into()), require_connection: true, ..Default::default() }
}

#[tokio::test]
async fn a_dry_run_is_a_plan_value_and_its_stream_comes_from_the_service() {
    let (_t, e) = app().await;
    let s = Service::new(e.clone());
    let planned = s.plan_up(UpRequest { dry_run: true, sql: true, ..up_app() }, label("test dry run")).await.unwrap();
    let plan = planned.plan().clone();
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["001_init_sqlite_app", "002_more_sqlite_app"]);
    assert!(plan.errors.is_empty() && plan.skipped.is_empty(), "{plan:?}");
    assert!(matches!(&plan.steps[0].sql, Some(RenderedSql::Sql(sql)) if sql.contains("CREATE TABLE a")), "{plan:?}");

    // The streamed dry run: a `pending` per step, then a `success` per step up to 100 %.
    let events: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = {
        let events = events.clone();
        Arc::new(move |ev: &bfm_engine::ProgressEvent| events.lock().unwrap().push((ev.id.clone(), ev.status, ev.progress)))
    };
    let outcome = s.run_streamed(planned, RunHooks::progress(sink)).await.unwrap();
    assert!(outcome.report.is_none(), "a dry run runs nothing");
    let got = events.lock().unwrap().clone();
    let statuses: Vec<&str> = got.iter().map(|(_, st, _)| *st).collect();
    assert_eq!(statuses, ["pending", "pending", "success", "success"]);
    assert_eq!(got.last().map(|(id, _, p)| (id.as_str(), *p)), Some(("002_more_sqlite_app", 100)));
    // BfM's response shape of a dry run.
    let r = outcome.response();
    assert_eq!(r.applied, ["001_init_sqlite_app (dry-run)", "002_more_sqlite_app (dry-run)"]);
    assert!(r.success);

    // Nothing was written: both are still pending.
    let table = s.status_table(StatusRequest { connection: Some("app".into()), ..Default::default() }).await.unwrap();
    assert_eq!((table.count("pending"), table.count("applied")), (2, 0));
    e.close().await;
}

#[tokio::test]
async fn rollback_outcomes_are_decisions() {
    let (_t, e) = app().await;
    let s = Service::new(e.clone());
    let outcome = s.up(up_app(), label("test up"), RunHooks::default()).await.unwrap();
    assert!(outcome.success(), "{:?}", outcome.report);
    let table = s.status_table(StatusRequest { connection: Some("app".into()), ..Default::default() }).await.unwrap();
    assert_eq!(table.count("applied"), 2);

    let rollback = |id: &str| RollbackRequest { migration_id: id.into(), schemas: Vec::new() };
    match s.rollback(rollback("001_init_sqlite_app"), label("test rollback"), RunHooks::default()).await.unwrap() {
        RollbackOutcome::NoDownScript(r) => assert_eq!(r.message, "migration does not have rollback SQL"),
        other => panic!("expected NoDownScript, got {other:?}"),
    }
    match s.rollback(rollback("002_more_sqlite_app"), label("test rollback"), RunHooks::default()).await.unwrap() {
        RollbackOutcome::Done(r) => {
            assert_eq!(r.applied, ["002_more_sqlite_app"]);
            assert_eq!(r.message, "rollback completed successfully for 1 schema(s)");
        }
        other => panic!("expected Done, got {other:?}"),
    }
    match s.rollback(rollback("002_more_sqlite_app"), label("test rollback"), RunHooks::default()).await.unwrap() {
        RollbackOutcome::Nothing(r) => assert_eq!(r.message, "no migrations to rollback"),
        other => panic!("expected Nothing, got {other:?}"),
    }
    let err = s.rollback(rollback("  "), label("test rollback"), RunHooks::default()).await.unwrap_err();
    assert_eq!(err.to_string(), "migration_id: is required");

    // The summary follows: one applied, one rolled back.
    let table = s.status_table(StatusRequest { connection: Some("app".into()), ..Default::default() }).await.unwrap();
    assert_eq!((table.count("applied"), table.count("rolled_back")), (1, 1));
    let list = s.list(Default::default()).await.unwrap();
    let more = list.items.iter().find(|i| i.migration_id == "002_more_sqlite_app").unwrap();
    assert_eq!((more.status.as_str(), more.applied, more.applied_at.is_none()), ("rolled_back", false, true));
    let init = list.items.iter().find(|i| i.migration_id == "001_init_sqlite_app").unwrap();
    assert!(init.applied && init.applied_at.is_some(), "{init:?}");
    e.close().await;
}

#[tokio::test]
async fn validation_errors_name_the_request_field() {
    let (_t, e) = app().await;
    let s = Service::new(e.clone());
    let plan = |req: UpRequest| {
        let s = &s;
        async move { s.plan_up(req, label("test")).await.map(|_| ()).unwrap_err() }
    };
    let err = plan(UpRequest { connection: None, ..up_app() }).await;
    assert_eq!((err.kind(), err.to_string()), (ErrorKind::BadRequest, "connection: is required".to_string()));
    let err = plan(UpRequest { connection: Some("nope".into()), ..up_app() }).await;
    assert!(err.to_string().starts_with("connection: unknown connection \"nope\""), "{err}");
    let named = vec![(Field::Schema, vec!["one".into()]), (Field::Schemas, vec!["two".into(), "x\"y".into()])];
    let err = plan(UpRequest { schemas: SchemaChoice { named, ..Default::default() }, ..up_app() }).await;
    assert!(err.to_string().starts_with("schemas[1]: "), "{err}");
    let err = plan(UpRequest { schemas: SchemaChoice::names(Field::Schema, vec!["x\"y".into()]), ..up_app() }).await;
    assert!(err.to_string().starts_with("schema: invalid schema name"), "{err}");
    let err = plan(UpRequest { schemas: SchemaChoice { pattern: Some("x'".into()), ..Default::default() }, ..up_app() }).await;
    assert!(err.to_string().starts_with("schema_pattern: "), "{err}");
    let err = plan(UpRequest { migrations: MigrationFilter { tags: vec!["nokey".into()], ..Default::default() }, ..up_app() }).await;
    assert!(err.to_string().starts_with("target.tags: "), "{err}");
    // A request's environment lands in SQL: a value that could leave its literal is refused.
    for evil in ["prod'; DROP TABLE x; --", "a\nb", "$$", "x\\'"] {
        let err = plan(UpRequest { environment: Some(evil.into()), ..up_app() }).await;
        assert_eq!(err.kind(), ErrorKind::BadRequest, "{evil:?}");
        assert!(err.to_string().starts_with("environment: invalid environment"), "{err}");
    }
    assert!(s.plan_up(UpRequest { environment: Some("staging-2.eu".into()), ..up_app() }, label("test")).await.is_ok());
    // Nothing ran.
    let table = s.status_table(StatusRequest { connection: Some("app".into()), ..Default::default() }).await.unwrap();
    assert_eq!(table.count("pending"), 2);
    e.close().await;
}

/// The pending summary behind the metrics' gauge and auto-migrate's rounds: fixed-schema
/// migrations applied nowhere, and recorded per-tenant runs not applied.
#[tokio::test]
async fn pending_per_connection_counts_fixed_migrations_and_per_tenant_runs() {
    let db = bfm_testkit::PgDb::new().await;
    let t = Tree::new();
    t.write("postgresql/core/20250101000000_bootstrap.up.sql", "-- bfm-schema: core\nCREATE TABLE orgs (id int PRIMARY KEY);");
    t.write("postgresql/core/20250102000000_more.up.sql", "-- bfm-schema: core\nCREATE TABLE more (id int);");
    t.write("postgresql/org/20250103000000_alerts.up.sql", "CREATE TABLE alerts (id int PRIMARY KEY);");
    t.write("postgresql/org/20250103000000_alerts.down.sql", "DROP TABLE alerts;");
    let state = t.state_url();
    let env =
        [("CORE_BACKEND", "postgresql"), ("CORE_DB_URL", db.url.as_str()), ("ORG_BACKEND", "postgresql"), ("ORG_DB_URL", db.url.as_str())];
    let e = engine(config(&t, &state, &env)).await;
    let s = Service::new(e.clone());
    let pending = s.pending().await.unwrap();
    assert_eq!(pending.get("core").copied().map(|p| (p.fixed, p.per_tenant)), Some((2, 0)));
    // A per-tenant migration nobody ran in any tenant is not pending anywhere yet.
    assert_eq!(pending.get("org").map(|p| p.total()), Some(0));

    assert!(up(&e, "core", &[]).await.success);
    assert!(up(&e, "org", &["t_1", "t_2"]).await.success);
    let rollback = RollbackRequest { migration_id: "20250103000000_alerts_postgresql_org".into(), schemas: vec!["t_2".into()] };
    let outcome = s.rollback(rollback, label("test rollback"), RunHooks::default()).await.unwrap();
    assert!(matches!(outcome, RollbackOutcome::Done(_)), "{outcome:?}");
    let pending = s.pending().await.unwrap();
    assert_eq!(pending.get("core").map(|p| p.total()), Some(0));
    // t_2 was rolled back: one per-tenant run is not applied.
    assert_eq!(pending.get("org").copied().map(|p| (p.fixed, p.per_tenant)), Some((0, 1)));
    e.close().await;
}
