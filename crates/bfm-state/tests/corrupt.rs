//! Corrupt values written straight into a real state database (SQLite file, PostgreSQL,
//! MariaDB): every read that meets one fails with `StateError::Corrupt` naming the table, the
//! row's key and the column — never an empty list, a zero or 1970.

use bfm_core::{BackendKind, Checksum, Status};
use bfm_state::*;
use bfm_targets::ConnectionConfig;
use bfm_testkit::{MySqlDb, PgDb};
use chrono::Utc;
use sqlx::AssertSqlSafe;
use std::fmt::Debug;
use std::sync::Arc;

/// A plain connection to the state database, beside the store, to damage it.
enum Raw {
    Lite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
}

impl Raw {
    async fn exec(&self, sql: &str) {
        let text = AssertSqlSafe(sql.to_string());
        match self {
            Raw::Lite(p) => sqlx::raw_sql(text).execute(p).await.map(|_| ()),
            Raw::Pg(p) => sqlx::raw_sql(text).execute(p).await.map(|_| ()),
            Raw::My(p) => sqlx::raw_sql(text).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn close(&self) {
        match self {
            Raw::Lite(p) => p.close().await,
            Raw::Pg(p) => p.close().await,
            Raw::My(p) => p.close().await,
        }
    }
}

fn event(id: &str, schema: &str) -> Event {
    let now = Utc::now();
    Event {
        key: format!("{id}/{schema}"),
        migration: MigrationRef {
            id: id.into(),
            version: "20250101000000".into(),
            name: "init".into(),
            connection: "core".into(),
            backend: "postgresql".into(),
        },
        schema: schema.into(),
        run_id: Some("run-1".into()),
        context: Arc::new(ExecutionContext {
            executed_by: "tester".into(),
            execution_method: "cli".into(),
            execution_context: "{}".into(),
        }),
        state: Some(StateUpdate::applied(Some(Checksum { algorithm: 1, value: "abc".into() }), Some(now), Some(5), true)),
        history: Some(HistoryEntry { started_at: Some(now), ..HistoryEntry::new(Operation::Up, "applied") }),
    }
}

fn catalog_row(id: &str) -> CatalogRow {
    CatalogRow {
        migration_id: id.into(),
        version: "20250101000000".into(),
        name: "init".into(),
        connection: "core".into(),
        backend: "postgresql".into(),
        declared_schema: None,
        checksum: Checksum { algorithm: 1, value: "abc".into() },
        up_file: "x.up.sql".into(),
        down_file: None,
        dependencies: vec!["a".into()],
        structured_dependencies: vec![bfm_core::Dependency::by_name("b")],
        tags: vec!["env=prod".into()],
        present: true,
        first_seen_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn run(id: &str) -> RunRecord {
    let now = Utc::now();
    RunRecord {
        run_id: id.into(),
        command: "migrate up".into(),
        host: "h".into(),
        pid: 1,
        executed_by: "me".into(),
        started_at: now,
        heartbeat_at: now,
        finished_at: None,
        connections: vec!["core".into()],
    }
}

/// `result` is the corrupt-data error for `table`, `column` and a key that mentions `key`, and
/// its message says all three.
#[track_caller]
fn assert_corrupt<T: Debug>(result: Result<T>, table: &str, key: &str, column: &str) {
    match result {
        Err(e @ StateError::Corrupt { .. }) => {
            let StateError::Corrupt { table: t, key: k, column: c, .. } = &e else { unreachable!() };
            assert_eq!((*t, *c), (table, column), "{e}");
            assert!(k.contains(key), "key {k:?} should name {key:?}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(table) && msg.contains(column) && msg.contains(key), "{msg}");
        }
        other => panic!("expected corrupt {table}.{column} for {key}, got {other:?}"),
    }
}

/// A store with one state/history row (m1, s1), one catalogue row (m1) and one open run (run-1).
async fn seeded(config: &StateConfig) -> Arc<dyn StateStore> {
    let store = open(config).await.unwrap();
    store.write(&[event("m1", "s1")]).await.unwrap();
    store.sync_catalog(&[catalog_row("m1")]).await.unwrap();
    store.start_run(&run("run-1")).await.unwrap();
    // Everything reads back before it is damaged.
    assert_eq!(store.snapshot(None).await.unwrap().len(), 1);
    assert_eq!(store.catalog().await.unwrap()[0].tags, ["env=prod"]);
    assert_eq!(store.open_runs().await.unwrap()[0].connections, ["core"]);
    store
}

/// The damage every backend can hold (text columns), and what each read then says.
async fn corrupt_json_and_text(config: &StateConfig, raw: &Raw) {
    let store = seeded(config).await;

    raw.exec("UPDATE bfm_catalog SET tags = '[\"env=prod\"' WHERE migration_id = 'm1'").await;
    assert_corrupt(store.catalog().await, "bfm_catalog", "m1", "tags");
    // The sync reads the catalogue first: it must not overwrite the damaged row with defaults.
    assert_corrupt(store.sync_catalog(&[catalog_row("m1")]).await, "bfm_catalog", "m1", "tags");
    raw.exec("UPDATE bfm_catalog SET tags = '[]', structured_dependencies = '{\"not\": \"a list\"}' WHERE migration_id = 'm1'").await;
    assert_corrupt(store.catalog().await, "bfm_catalog", "m1", "structured_dependencies");
    raw.exec("UPDATE bfm_catalog SET structured_dependencies = '[]', dependencies = '' WHERE migration_id = 'm1'").await;
    assert_corrupt(store.catalog().await, "bfm_catalog", "m1", "dependencies");
    raw.exec("UPDATE bfm_catalog SET dependencies = '[]', present = false WHERE migration_id = 'm1'").await;
    assert!(store.catalog().await.unwrap()[0].dependencies.is_empty());
    raw.exec("UPDATE bfm_catalog SET checksum_algorithm = -1 WHERE migration_id = 'm1'").await;
    assert_corrupt(store.missing_catalog().await, "bfm_catalog", "m1", "checksum_algorithm");

    raw.exec("UPDATE bfm_runs SET connections = 'core' WHERE run_id = 'run-1'").await;
    assert_corrupt(store.open_runs().await, "bfm_runs", "run-1", "connections");

    raw.exec("UPDATE bfm_state SET status = 'done' WHERE migration_id = 'm1'").await;
    assert_corrupt(store.snapshot(None).await, "bfm_state", "schema s1", "status");
    assert_corrupt(store.status_counts(None).await, "bfm_state", "m1", "status");
    raw.exec("UPDATE bfm_state SET status = 'applied', checksum_algorithm = NULL WHERE migration_id = 'm1'").await;
    assert_corrupt(store.states(&StateFilter::default()).await, "bfm_state", "migration m1, schema s1", "checksum_algorithm");
    raw.exec("UPDATE bfm_state SET checksum_algorithm = 1 WHERE migration_id = 'm1'").await;
    assert_eq!(store.snapshot(None).await.unwrap()[0].status, Status::Applied);

    // A version that is no number would make the next start run every version again.
    raw.exec("UPDATE bfm_meta SET meta_value = 'three' WHERE meta_key = 'schema_version'").await;
    assert_corrupt(open(config).await.map(|_| ()), "bfm_meta", "schema_version", "meta_value");
    store.close().await;
}

#[tokio::test]
async fn sqlite_state_with_corrupt_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut c = ConnectionConfig::new("state", BackendKind::Sqlite);
    c.database = Some(path.to_string_lossy().into());
    let config = StateConfig { backend: StateBackend::Sqlite, connection: c, schema: None };
    let raw = Raw::Lite(sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap());
    corrupt_json_and_text(&config, &raw).await;

    // SQLite keeps whatever it is given in a timestamp column.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut c = ConnectionConfig::new("state", BackendKind::Sqlite);
    c.database = Some(path.to_string_lossy().into());
    let config = StateConfig { backend: StateBackend::Sqlite, connection: c, schema: None };
    let raw = Raw::Lite(sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap());
    let store = seeded(&config).await;
    raw.exec("UPDATE bfm_state SET applied_at = 'yesterday' WHERE migration_id = 'm1'").await;
    assert_corrupt(store.snapshot(None).await, "bfm_state", "migration m1, schema s1", "applied_at");
    assert_corrupt(store.status_counts(None).await, "bfm_state", "m1", "last_applied_at");
    // An integer would be read by the driver as seconds since 1970.
    raw.exec("UPDATE bfm_state SET applied_at = NULL, updated_at = 0 WHERE migration_id = 'm1'").await;
    assert_corrupt(store.snapshot(None).await, "bfm_state", "migration m1, schema s1", "updated_at");
    raw.exec("UPDATE bfm_history SET finished_at = '2025-13-45T99:00:00Z'").await;
    assert_corrupt(store.history(&HistoryFilter::default()).await, "bfm_history", "id 1", "finished_at");
    raw.exec("UPDATE bfm_runs SET heartbeat_at = 1.5 WHERE run_id = 'run-1'").await;
    assert_corrupt(store.open_runs().await, "bfm_runs", "run-1", "heartbeat_at");
    raw.exec("UPDATE bfm_catalog SET first_seen_at = '' WHERE migration_id = 'm1'").await;
    assert_corrupt(store.catalog().await, "bfm_catalog", "m1", "first_seen_at");
    store.close().await;
    raw.close().await;
}

#[tokio::test]
async fn postgresql_state_with_corrupt_values() {
    let db = PgDb::new().await;
    let mut c = ConnectionConfig::new("state", BackendKind::Postgresql);
    c.url = Some(db.url.clone());
    let config = StateConfig { backend: StateBackend::Postgresql, connection: c, schema: None };
    let raw = Raw::Pg(sqlx::PgPool::connect(&db.url).await.unwrap());
    corrupt_json_and_text(&config, &raw).await;
    raw.exec("UPDATE bfm_meta SET meta_value = '3' WHERE meta_key = 'schema_version'").await;

    // A TIMESTAMPTZ holds `infinity`, which no DateTime can: an error, not a panic.
    let store = open(&config).await.unwrap();
    raw.exec("UPDATE bfm_state SET applied_at = 'infinity' WHERE migration_id = 'm1'").await;
    assert_corrupt(store.snapshot(None).await, "bfm_state", "migration m1, schema s1", "applied_at");
    assert_corrupt(store.status_counts(None).await, "bfm_state", "m1", "last_applied_at");
    raw.exec("UPDATE bfm_history SET finished_at = '-infinity'").await;
    assert_corrupt(store.history(&HistoryFilter::default()).await, "bfm_history", "id 1", "finished_at");
    store.close().await;
    raw.close().await;
}

#[tokio::test]
async fn mariadb_state_with_corrupt_values() {
    let db = MySqlDb::new().await;
    let mut c = ConnectionConfig::new("state", BackendKind::Mysql);
    c.url = Some(db.url.clone());
    let config = StateConfig { backend: StateBackend::Mysql, connection: c, schema: None };
    // One connection, so that the relaxed sql_mode below applies to every statement.
    let pool = sqlx::mysql::MySqlPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap();
    let raw = Raw::My(pool);
    corrupt_json_and_text(&config, &raw).await;
    raw.exec("UPDATE bfm_meta SET meta_value = '3' WHERE meta_key = 'schema_version'").await;

    // Without NO_ZERO_DATE, MariaDB stores the zero date in a DATETIME column.
    let store = open(&config).await.unwrap();
    raw.exec("SET SESSION sql_mode = ''").await;
    raw.exec("UPDATE bfm_state SET applied_at = '0000-00-00 00:00:00' WHERE migration_id = 'm1'").await;
    assert_corrupt(store.snapshot(None).await, "bfm_state", "migration m1, schema s1", "applied_at");
    raw.exec("UPDATE bfm_runs SET started_at = '0000-00-00 00:00:00' WHERE run_id = 'run-1'").await;
    assert_corrupt(store.open_runs().await, "bfm_runs", "run-1", "started_at");
    store.close().await;
    raw.close().await;
}
