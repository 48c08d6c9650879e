//! The state store on SQLite, PostgreSQL and MariaDB: same behaviour everywhere.

use bfm_core::{BackendKind, Checksum, Status};
use bfm_state::*;
use bfm_targets::ConnectionConfig;
use bfm_testkit::{MySqlDb, PgDb};
use chrono::Utc;
use std::sync::Arc;

fn mref(id: &str) -> MigrationRef {
    MigrationRef {
        id: id.into(),
        version: "20250101000000".into(),
        name: "init".into(),
        connection: "core".into(),
        backend: "postgresql".into(),
    }
}

fn ctx() -> Arc<ExecutionContext> {
    Arc::new(ExecutionContext { executed_by: "tester".into(), execution_method: "cli".into(), execution_context: "{}".into() })
}

fn event(key: &str, id: &str, schema: &str, status: Status, op: Operation) -> Event {
    let now = Utc::now();
    Event {
        key: key.into(),
        migration: mref(id),
        schema: schema.into(),
        run_id: Some("run-1".into()),
        context: ctx(),
        state: Some(StateUpdate {
            status,
            checksum: Some(Checksum { algorithm: 1, value: "abc".into() }),
            applied_at: (status == Status::Applied).then_some(now),
            duration_ms: Some(5),
            error: (status == Status::Failed).then(|| "boom".to_string()),
            failed_statement: None,
            failed_statement_index: None,
            statements_done: 0,
            partial: false,
            ledger: true,
        }),
        history: Some(HistoryEntry {
            operation: op,
            status: status.as_str().into(),
            checksum: None,
            error: None,
            failed_statement: None,
            failed_statement_index: None,
            started_at: Some(now),
            finished_at: now,
            duration_ms: Some(5),
        }),
    }
}

async fn exercise(config: StateConfig) {
    let store = open(&config).await.unwrap();
    store.migrate().await.unwrap(); // idempotent
    store.ping().await.unwrap();

    // A running row, then applied, in one batch: the last update wins.
    let mut running = event("k0", "m1", "tenant_a_1", Status::Running, Operation::Up);
    running.history = None;
    store
        .write(&[
            running,
            event("k1", "m1", "tenant_a_1", Status::Applied, Operation::Up),
            event("k2", "m1", "b", Status::Failed, Operation::Up),
        ])
        .await
        .unwrap();
    // The same history key twice is stored once.
    store.write(&[event("k1", "m1", "tenant_a_1", Status::Applied, Operation::Up)]).await.unwrap();
    let snap = store.snapshot(Some(&["core".into()])).await.unwrap();
    assert_eq!(snap.len(), 2);
    let a = snap.iter().find(|r| r.schema == "tenant_a_1").unwrap();
    assert_eq!(a.status, Status::Applied);
    assert_eq!(a.checksum.as_ref().unwrap().value, "abc");
    assert!(a.applied_at.is_some());
    assert!(store.snapshot(Some(&["other".into()])).await.unwrap().is_empty());
    let hist = store.history(&HistoryFilter { migration_id: Some("m1".into()), ..Default::default() }).await.unwrap();
    assert_eq!(hist.len(), 2, "{hist:?}");
    assert_eq!(hist[0].executed_by, "tester");
    let counts = store.status_counts(Some(&["m1".to_string()])).await.unwrap();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.iter().any(|c| c.status == Status::Applied && c.count == 1 && c.last_applied_at.is_some()));
    assert_eq!(store.status_counts(None).await.unwrap().len(), 2);
    let newest = store
        .states(&StateFilter { newest_first: true, migration_ids: vec!["m1".into()], limit: Some(1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(newest.len(), 1);
    let failed = store.states(&StateFilter { status: Some(Status::Failed), ..Default::default() }).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_deref(), Some("boom"));

    // Catalogue sync: add, update, missing — never delete.
    let row = |id: &str, checksum: &str| CatalogRow {
        migration_id: id.into(),
        version: "20250101000000".into(),
        name: "init".into(),
        connection: "core".into(),
        backend: "postgresql".into(),
        declared_schema: Some("core".into()),
        checksum: Checksum { algorithm: 1, value: checksum.into() },
        up_file: "x.up.sql".into(),
        down_file: None,
        dependencies: vec!["a".into()],
        structured_dependencies: vec![bfm_core::Dependency::by_name("b")],
        tags: vec!["env=prod".into()],
        present: true,
        first_seen_at: Utc::now(),
        updated_at: Utc::now(),
    };
    let r = store.sync_catalog(&[row("m1", "a"), row("m2", "a")]).await.unwrap();
    assert_eq!((r.added.len(), r.updated.len(), r.missing.len(), r.total), (2, 0, 0, 2));
    let r = store.sync_catalog(&[row("m1", "a"), row("m2", "a")]).await.unwrap();
    assert_eq!((r.added.len(), r.updated.len(), r.missing.len()), (0, 0, 0));
    let r = store.sync_catalog(&[row("m1", "changed")]).await.unwrap();
    assert_eq!((r.added, r.updated, r.missing, r.total), (vec![], vec!["m1".to_string()], vec!["m2".to_string()], 2));
    let cat = store.catalog().await.unwrap();
    assert_eq!(cat.len(), 2);
    assert!(!cat.iter().find(|c| c.migration_id == "m2").unwrap().present);
    assert_eq!(cat[0].structured_dependencies[0].target, "b");
    let missing: Vec<String> = store.missing_catalog().await.unwrap().into_iter().map(|c| c.migration_id).collect();
    assert_eq!(missing, ["m2"]);

    // Runs.
    let now = Utc::now();
    let run = RunRecord {
        run_id: "run-1".into(),
        command: "migrate up".into(),
        host: "h".into(),
        pid: 42,
        executed_by: "me".into(),
        started_at: now,
        heartbeat_at: now,
        finished_at: None,
        connections: vec!["core".into()],
    };
    store.start_run(&run).await.unwrap();
    store.heartbeat("run-1").await.unwrap();
    assert_eq!(store.open_runs().await.unwrap()[0].connections, vec!["core".to_string()]);
    store.finish_run("run-1").await.unwrap();
    assert!(store.open_runs().await.unwrap().is_empty());

    // Declarative schema snapshots: one per connection, replaced.
    assert_eq!(store.schema_snapshot("core").await.unwrap(), None);
    store.save_schema_snapshot("core", "f1", Utc::now(), "{\"a\":1}").await.unwrap();
    store.save_schema_snapshot("core", "f2", Utc::now(), &"x".repeat(100_000)).await.unwrap();
    assert_eq!(store.schema_snapshot("core").await.unwrap().map(|s| s.len()), Some(100_000));

    // The recorder writes in the background and flushes on demand.
    let rec = Recorder::new(store.clone());
    for i in 0..50 {
        rec.record(event(&format!("r{i}"), &format!("bulk{i}"), "s", Status::Applied, Operation::Up));
    }
    rec.flush().await.unwrap();
    assert_eq!(store.states(&StateFilter::default()).await.unwrap().len(), 52);
    store.close().await;
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ConnectionConfig::new("state", BackendKind::Sqlite);
    c.database = Some(dir.path().join("nested/state.db").to_string_lossy().into());
    exercise(StateConfig { backend: StateBackend::Sqlite, connection: c.clone(), schema: None }).await;
    // The view answers "what ran where".
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", c.database.unwrap())).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bfm_migrations WHERE \"schema\" = 'tenant_a_1' AND status = 'applied'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn postgresql_store_in_its_own_schema_with_a_legacy_table() {
    let db = PgDb::new().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::raw_sql("CREATE SCHEMA state; CREATE TABLE state.bfm_migrations (migration_id text)").execute(&pool).await.unwrap();
    let mut c = ConnectionConfig::new("state", BackendKind::Postgresql);
    c.url = Some(db.url.clone());
    exercise(StateConfig { backend: StateBackend::Postgresql, connection: c, schema: Some("state".into()) }).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM state.bfm_migrations WHERE schema = 'b' AND status = 'failed'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let legacy: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'state' AND tablename = 'bfm_migrations_legacy'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(legacy, 1);
    pool.close().await;
}

#[tokio::test]
async fn postgresql_store_creates_its_database() {
    let db = PgDb::new().await;
    let name = format!("{}_state", db.name);
    let mut c = ConnectionConfig::new("state", BackendKind::Postgresql);
    c.url = Some(bfm_testkit::with_database(&bfm_testkit::pg_server_url(), &name));
    let store = open(&StateConfig { backend: StateBackend::Postgresql, connection: c, schema: None }).await.unwrap();
    store.ping().await.unwrap();
    store.close().await;
    let admin = sqlx::PgPool::connect(&bfm_testkit::pg_server_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))).execute(&admin).await.unwrap();
    admin.close().await;
}

#[tokio::test]
async fn mariadb_store() {
    let db = MySqlDb::new().await;
    let mut c = ConnectionConfig::new("state", BackendKind::Mysql);
    c.url = Some(db.url.clone());
    exercise(StateConfig { backend: StateBackend::Mysql, connection: c, schema: None }).await;
    let pool = sqlx::MySqlPool::connect(&db.url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bfm_migrations WHERE `schema` = 'tenant_a_1'").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 1);
    pool.close().await;
}
