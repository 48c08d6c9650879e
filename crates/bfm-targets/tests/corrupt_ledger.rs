//! A corrupt row written straight into a target's ledger (PostgreSQL, MariaDB, SQLite, and the
//! GreptimeDB stand-in): reading the ledger fails with `TargetError::CorruptLedger` naming the
//! connection, the table, the row and the column — never 1970, algorithm 0 or a panic.

use bfm_core::sql::{self, Dialect};
use bfm_core::{BackendKind, Checksum, Direction};
use bfm_targets::greptimedb::GreptimeTarget;
use bfm_targets::{ConnectionConfig, StepScript, Target, TargetError, connect};
use bfm_testkit::greptime::GreptimeMock;
use bfm_testkit::{MySqlDb, PgDb};
use sqlx::AssertSqlSafe;
use std::fmt::Debug;
use std::sync::Arc;

struct Step {
    sql: String,
    statements: Vec<String>,
    checksum: Checksum,
}

fn step(sql: &str, dialect: Dialect) -> Step {
    Step {
        sql: sql.into(),
        statements: sql::split(sql, dialect).unwrap().into_iter().map(|s| s.text).collect(),
        checksum: Checksum::of_sql(sql, dialect).unwrap(),
    }
}

/// Apply migration `m1` to `schema`, so that the ledger has one good row.
async fn applied(target: &Arc<dyn Target>, schema: &str, dialect: Dialect) {
    let s = step("SELECT 1;", dialect);
    let mut session = target.session("run-1").await.unwrap();
    session.lock(schema, std::time::Duration::from_secs(5)).await.unwrap();
    session.prepare_schema(schema).await.unwrap();
    session
        .apply(&StepScript {
            migration_id: "m1",
            schema,
            version: "20250101000000",
            direction: Direction::Up,
            sql: &s.sql,
            statements: &s.statements,
            transactional: dialect != Dialect::Greptime,
            checksum: &s.checksum,
            run_id: "run-1",
            resume_from: 0,
        })
        .await
        .unwrap();
    session.unlock().await.unwrap();
    assert_eq!(target.ledger_rows(None).await.unwrap().len(), 1);
}

#[track_caller]
fn assert_corrupt<T: Debug>(result: Result<T, TargetError>, connection: &str, table: &str, column: &str) {
    match result {
        Err(e @ TargetError::CorruptLedger { .. }) => {
            let TargetError::CorruptLedger { connection: n, table: t, key, column: c, .. } = &e else { unreachable!() };
            assert_eq!((n.as_str(), *c), (connection, column), "{e}");
            assert!(t.contains(table), "table {t:?} should be {table:?}: {e}");
            assert!(key.contains("m1"), "key {key:?} should name m1: {e}");
            let msg = e.to_string();
            assert!(msg.contains(connection) && msg.contains(column) && msg.contains("m1"), "{msg}");
        }
        other => panic!("expected a corrupt {column} in the ledger of {connection}, got {other:?}"),
    }
}

/// Both ways of reading the ledger fail on the damaged row.
async fn assert_ledger_corrupt(target: &Arc<dyn Target>, schema: &str, table: &str, column: &str) {
    let name = target.name().to_string();
    assert_corrupt(target.ledger_rows(None).await, &name, table, column);
    let mut session = target.session("run-2").await.unwrap();
    assert_corrupt(session.ledger(schema).await, &name, table, column);
}

#[tokio::test]
async fn postgresql_ledger_with_corrupt_rows() {
    let db = PgDb::new().await;
    let mut c = ConnectionConfig::new("core", BackendKind::Postgresql);
    c.url = Some(db.url.clone());
    let target = connect(&c).await.unwrap();
    applied(&target, "tenant_a", Dialect::Postgres).await;
    let pg = sqlx::PgPool::connect(&db.url).await.unwrap();
    let exec = |sql: &'static str| {
        let pg = pg.clone();
        async move { sqlx::raw_sql(sql).execute(&pg).await.unwrap() }
    };

    exec("UPDATE bfm.ledger SET checksum_algorithm = -1").await;
    assert_ledger_corrupt(&target, "tenant_a", "ledger", "checksum_algorithm").await;
    // A TIMESTAMPTZ holds `infinity`: the driver would panic on it.
    exec("UPDATE bfm.ledger SET checksum_algorithm = 1, applied_at = 'infinity'").await;
    assert_ledger_corrupt(&target, "tenant_a", "ledger", "applied_at").await;
    exec("UPDATE bfm.ledger SET applied_at = now()").await;
    assert_eq!(target.ledger_rows(None).await.unwrap()[0].checksum.algorithm, 1);
    pg.close().await;
}

#[tokio::test]
async fn mariadb_ledger_with_corrupt_rows() {
    let db = MySqlDb::new().await;
    let schema = format!("{}_t", db.name);
    let _cleanup = db.also_drop(&schema);
    let mut c = ConnectionConfig::new("shop", BackendKind::Mysql);
    c.url = Some(db.url.clone());
    let target = connect(&c).await.unwrap();
    applied(&target, &schema, Dialect::MySql).await;
    // One connection, so that the relaxed sql_mode applies to the updates.
    let my = sqlx::mysql::MySqlPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap();
    for sql in ["SET SESSION sql_mode = ''", "UPDATE bfm_ledger SET checksum_algorithm = -1"] {
        sqlx::raw_sql(sql).execute(&my).await.unwrap();
    }
    assert_ledger_corrupt(&target, &schema, "bfm_ledger", "checksum_algorithm").await;
    // Without NO_ZERO_DATE, MariaDB stores the zero date.
    sqlx::raw_sql("UPDATE bfm_ledger SET checksum_algorithm = 1, applied_at = '0000-00-00 00:00:00'").execute(&my).await.unwrap();
    assert_ledger_corrupt(&target, &schema, "bfm_ledger", "applied_at").await;
    my.close().await;
}

#[tokio::test]
async fn sqlite_ledger_with_corrupt_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let mut c = ConnectionConfig::new("app", BackendKind::Sqlite);
    c.database = Some(path.to_string_lossy().into());
    let target = connect(&c).await.unwrap();
    applied(&target, "", Dialect::Sqlite).await;
    let lite = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    for (damage, column) in [
        ("UPDATE bfm_ledger SET applied_at = 'yesterday'", "applied_at"),
        ("UPDATE bfm_ledger SET applied_at = ''", "applied_at"),
        ("UPDATE bfm_ledger SET applied_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), checksum_algorithm = -7", "checksum_algorithm"),
    ] {
        sqlx::raw_sql(AssertSqlSafe(damage)).execute(&lite).await.unwrap();
        assert_ledger_corrupt(&target, "", "bfm_ledger", column).await;
    }
    lite.close().await;
}

#[tokio::test]
async fn greptimedb_ledger_with_corrupt_rows() {
    let mock = GreptimeMock::start().await;
    let mut c = ConnectionConfig::new("logs", BackendKind::Greptimedb);
    c.url = Some(mock.url.clone());
    let target = connect(&c).await.unwrap();
    applied(&target, "", Dialect::Greptime).await;
    let direct = GreptimeTarget::new(&c).unwrap();
    let columns = "connection_name, schema_name, migration_id, version, checksum, checksum_algorithm, run_id, applied_at, ts";
    for (values, column) in [
        ("'logs', '', 'm1', '20250101000000', 'abc', 1, 'run-1', 'yesterday', 0", "applied_at"),
        ("'logs', '', 'm1', '20250101000000', 'abc', 'one', 'run-1', '2025-01-01T00:00:00.000Z', 0", "checksum_algorithm"),
        ("'logs', '', 'm1', '20250101000000', 'abc', -1, 'run-1', '2025-01-01T00:00:00.000Z', 0", "checksum_algorithm"),
        ("'logs', '', 'm1', '20250101000000', NULL, 1, 'run-1', '2025-01-01T00:00:00.000Z', 0", "checksum"),
    ] {
        direct.sql("public", "DELETE FROM bfm_ledger WHERE connection_name = 'logs' AND migration_id = 'm1'").await.unwrap();
        direct.sql("public", &format!("INSERT INTO bfm_ledger ({columns}) VALUES ({values})")).await.unwrap();
        assert_ledger_corrupt(&target, "", "bfm_ledger", column).await;
    }
}
