//! Every target against its real server: steps, failures, ledger, locks.

use bfm_core::sql::{self, Dialect};
use bfm_core::{BackendKind, Checksum, Direction};
use bfm_targets::{ConnectionConfig, StepScript, Target, connect};
use bfm_testkit::{MySqlDb, PgDb};
use std::sync::Arc;
use std::time::Duration;

struct Step {
    id: String,
    sql: String,
    statements: Vec<String>,
    checksum: Checksum,
    transactional: bool,
}

fn step(id: &str, sql: &str, dialect: Dialect) -> Step {
    Step {
        id: id.into(),
        sql: sql.into(),
        statements: sql::split(sql, dialect).unwrap().into_iter().map(|s| s.text).collect(),
        checksum: Checksum::of_sql(sql, dialect).unwrap(),
        transactional: true,
    }
}

fn script<'a>(s: &'a Step, schema: &'a str, direction: Direction) -> StepScript<'a> {
    StepScript {
        migration_id: &s.id,
        schema,
        version: "20250101000000",
        direction,
        sql: &s.sql,
        statements: &s.statements,
        transactional: s.transactional,
        checksum: &s.checksum,
        run_id: "run-1",
        resume_from: 0,
    }
}

/// The behaviour every target shares.
async fn exercise(target: Arc<dyn Target>, schema: &str, dialect: Dialect) {
    let mut s = target.session("run-1").await.unwrap();
    s.lock(schema, Duration::from_secs(5)).await.unwrap();
    s.prepare_schema(schema).await.unwrap();
    assert!(s.ledger(schema).await.unwrap().is_empty());

    let ok = step("m1", "CREATE TABLE items (id int primary key);\nINSERT INTO items VALUES (1); -- trailing comment", dialect);
    s.apply(&script(&ok, schema, Direction::Up)).await.unwrap();
    let ledger = s.ledger(schema).await.unwrap();
    assert_eq!(ledger["m1"].checksum, ok.checksum);
    assert_eq!(ledger["m1"].run_id, "run-1");
    assert!(s.table_exists(schema, "items").await.unwrap());

    // The third statement fails: the failure names it.
    let bad = step("m2", "INSERT INTO items VALUES (2);\nINSERT INTO items VALUES (3);\nINSERT INTO nope VALUES (1);", dialect);
    let f = s.apply(&script(&bad, schema, Direction::Up)).await.unwrap_err();
    assert_eq!(f.statement_index, Some(2), "{f:?}");
    assert!(f.statement.as_deref().unwrap().contains("nope"));
    assert!(!f.partial, "DML in a transaction rolls back: {f:?}");
    assert!(!s.ledger(schema).await.unwrap().contains_key("m2"));

    // Another session cannot take the same lock while it is held, but can take another schema's.
    let mut other = target.session("run-1").await.unwrap();
    let e = other.lock(schema, Duration::from_millis(120)).await.unwrap_err();
    assert!(e.to_string().contains("not acquired"), "{e}");
    other.lock(&format!("{schema}_other"), Duration::from_secs(1)).await.unwrap();
    other.unlock().await.unwrap();
    s.unlock().await.unwrap();
    other.lock(schema, Duration::from_secs(1)).await.unwrap();
    other.unlock().await.unwrap();

    // Down removes the ledger row in the same transaction.
    let mut down = step("m1", "DROP TABLE items;", dialect);
    down.checksum = ok.checksum.clone();
    s.apply(&script(&down, schema, Direction::Down)).await.unwrap();
    assert!(s.ledger(schema).await.unwrap().is_empty());
    assert!(!s.table_exists(schema, "items").await.unwrap());

    // A dropped, locked session releases its lock.
    let mut held = target.session("run-1").await.unwrap();
    held.lock(schema, Duration::from_secs(1)).await.unwrap();
    drop(held);
    let mut again = target.session("run-1").await.unwrap();
    again.lock(schema, Duration::from_secs(5)).await.unwrap();
    again.unlock().await.unwrap();

    let all = target.ledger_rows(None).await.unwrap();
    assert!(all.is_empty());
}

#[tokio::test]
async fn postgresql() {
    let db = PgDb::new().await;
    let mut c = ConnectionConfig::new("core", BackendKind::Postgresql);
    c.url = Some(db.url.clone());
    let target = connect(&c).await.unwrap();
    target.ping().await.unwrap();
    exercise(target.clone(), "tenant_a_1", Dialect::Postgres).await;

    // search_path does not leak into the pool after a step.
    let mut s = target.session("run-1").await.unwrap();
    let st = step("m3", "CREATE TABLE leak_check (id int);", Dialect::Postgres);
    s.apply(&script(&st, "tenant_a_1", Direction::Up)).await.unwrap();
    drop(s);
    let pg = match &c.url {
        Some(u) => sqlx::PgPool::connect(u).await.unwrap(),
        None => unreachable!(),
    };
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_a_1' AND tablename = 'leak_check'")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(n, 1);

    // Statements that cannot run in a transaction run without one when the migration opts out.
    let mut s = target.session("run-1").await.unwrap();
    s.lock("tenant_a_1", Duration::from_secs(5)).await.unwrap();
    let mut cic =
        step("m4", "INSERT INTO leak_check VALUES (1);\nCREATE INDEX CONCURRENTLY leak_idx ON leak_check (id);", Dialect::Postgres);
    let f = s.apply(&script(&cic, "tenant_a_1", Direction::Up)).await.unwrap_err();
    assert!(f.error.contains("CONCURRENTLY") || f.error.contains("transaction"), "{f:?}");
    cic.transactional = false;
    s.apply(&script(&cic, "tenant_a_1", Direction::Up)).await.unwrap();
    let valid: bool = sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'tenant_a_1.leak_idx'::regclass")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert!(valid);
    // A non-transactional failure after a statement ran reports partial progress.
    let mut partial = step("m5", "INSERT INTO leak_check VALUES (2);\nINSERT INTO missing VALUES (1);", Dialect::Postgres);
    partial.transactional = false;
    let f = s.apply(&script(&partial, "tenant_a_1", Direction::Up)).await.unwrap_err();
    assert_eq!((f.statement_index, f.statements_done, f.partial), (Some(1), 1, true));
    s.unlock().await.unwrap();
    pg.close().await;
}

#[tokio::test]
async fn mariadb() {
    let db = MySqlDb::new().await;
    let schema = format!("{}_t", db.name);
    let _cleanup = db.also_drop(&schema);
    let mut c = ConnectionConfig::new("shop", BackendKind::Mysql);
    c.url = Some(db.url.clone());
    let target = connect(&c).await.unwrap();
    exercise(target.clone(), &schema, Dialect::MySql).await;

    // DDL commits implicitly: a failure after it reports partial changes.
    let mut s = target.session("run-1").await.unwrap();
    let st = step("m9", "CREATE TABLE t1 (id int);\nINSERT INTO missing VALUES (1);", Dialect::MySql);
    let f = s.apply(&script(&st, &schema, Direction::Up)).await.unwrap_err();
    assert_eq!((f.statement_index, f.partial), (Some(1), true));
    assert!(s.table_exists(&schema, "t1").await.unwrap());
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ConnectionConfig::new("app", BackendKind::Sqlite);
    c.database = Some(dir.path().join("app.db").to_string_lossy().into());
    let target = connect(&c).await.unwrap();
    exercise(target, "", Dialect::Sqlite).await;
}

#[tokio::test]
async fn two_connections_on_one_database_keep_separate_ledgers() {
    let db = PgDb::new().await;
    let mut a = ConnectionConfig::new("a", BackendKind::Postgresql);
    a.url = Some(db.url.clone());
    let mut b = a.clone();
    b.name = "b".into();
    let (ta, tb) = (connect(&a).await.unwrap(), connect(&b).await.unwrap());
    let st = step("m1_postgresql_a", "SELECT 1;", Dialect::Postgres);
    let mut s = ta.session("r").await.unwrap();
    s.apply(&script(&st, "x", Direction::Up)).await.unwrap();
    assert_eq!(ta.ledger_rows(None).await.unwrap().len(), 1);
    assert!(tb.ledger_rows(None).await.unwrap().is_empty());
    let mut s = tb.session("r").await.unwrap();
    assert!(s.ledger("x").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_postgresql_batch_stops_at_the_first_failure_and_keeps_what_committed() {
    let db = PgDb::new().await;
    let mut c = ConnectionConfig::new("core", BackendKind::Postgresql);
    c.url = Some(db.url.clone());
    let target = connect(&c).await.unwrap();
    let mut s = target.session("run-1").await.unwrap();
    assert!(s.batch_limit() > 1);
    s.prepare_schema("b").await.unwrap();
    let one = step("b1", "CREATE TABLE one (id int);", Dialect::Postgres);
    let two = step("b2", "CREATE TABLE two (id int);\nINSERT INTO nope VALUES (1);\nCREATE TABLE two_b (id int);", Dialect::Postgres);
    let three = step("b3", "CREATE TABLE three (id int);", Dialect::Postgres);
    let scripts = [script(&one, "b", Direction::Up), script(&two, "b", Direction::Up), script(&three, "b", Direction::Up)];
    let out = s.apply_batch(&scripts).await;
    assert_eq!(out.completed, 1);
    let f = out.failure.unwrap();
    assert_eq!(f.statement_index, Some(1));
    assert!(f.statement.unwrap().contains("nope"));
    assert!(s.table_exists("b", "one").await.unwrap());
    assert!(!s.table_exists("b", "two").await.unwrap(), "the failed step rolled back");
    assert!(!s.table_exists("b", "three").await.unwrap(), "nothing after the failure ran");
    let ledger = s.ledger("b").await.unwrap();
    assert_eq!(ledger.keys().collect::<Vec<_>>(), vec!["b1"]);
    // The connection is usable afterwards, and a clean batch commits everything.
    let out = s.apply_batch(&[script(&three, "b", Direction::Up)]).await;
    assert_eq!((out.completed, out.failure), (1, None));
}
