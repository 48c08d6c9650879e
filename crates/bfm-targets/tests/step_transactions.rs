//! A step's transaction against the real servers: transaction control smuggled into a script
//! (past `bfm check`) fails the step and writes no ledger row; MySQL DML-only scripts are atomic;
//! MySQL's `--` comments need a following blank.

use bfm_core::sql::{self, Dialect};
use bfm_core::template::{self, Vars};
use bfm_core::{BackendKind, Checksum, Direction};
use bfm_targets::{ConnectionConfig, Session, StepScript, connect};
use bfm_testkit::{MySqlDb, PgDb};
use sqlx::AssertSqlSafe;
use std::time::Duration;

struct Step {
    id: String,
    sql: String,
    statements: Vec<String>,
    checksum: Checksum,
    transactional: bool,
}

/// A step as the engine prepares it: rendered, then split.
fn step(id: &str, text: &str, dialect: Dialect, transactional: bool) -> Step {
    let vars = Vars { schema: "s", connection: "c", backend: "b", version: "1", environment: "test" };
    let sql = template::render_sql(text, dialect, &vars).unwrap();
    Step {
        id: id.into(),
        statements: sql::split(&sql, dialect).unwrap().into_iter().map(|s| s.text).collect(),
        checksum: Checksum::of_sql(&sql, dialect).unwrap(),
        sql,
        transactional,
    }
}

fn script<'a>(s: &'a Step, schema: &'a str) -> StepScript<'a> {
    StepScript {
        migration_id: &s.id,
        schema,
        version: "20250101000000",
        direction: Direction::Up,
        sql: &s.sql,
        statements: &s.statements,
        transactional: s.transactional,
        checksum: &s.checksum,
        run_id: "run-1",
        resume_from: 0,
    }
}

/// Apply a script that ends the step's transaction; the step must fail and leave no ledger row.
async fn smuggled(s: &mut Box<dyn Session>, schema: &str, id: &str, text: &str, dialect: Dialect, transactional: bool) {
    let st = step(id, text, dialect, transactional);
    let f = s.apply(&script(&st, schema)).await.unwrap_err();
    assert!(f.error.contains("ended the step's transaction"), "{text}: {f:?}");
    assert!(f.partial, "what ran before the COMMIT may have stayed: {f:?}");
    assert!(!s.ledger(schema).await.unwrap().contains_key(id), "{text}: a ledger row claims the step");
}

#[tokio::test]
async fn postgresql_a_script_that_ends_the_transaction_fails_and_records_nothing() {
    let db = PgDb::new().await;
    let mut c = ConnectionConfig::new("core", BackendKind::Postgresql);
    c.url = Some(db.url.clone());
    let target = connect(&c).await.unwrap();
    let mut s = target.session("run-1").await.unwrap();
    s.lock("a", Duration::from_secs(5)).await.unwrap();
    s.prepare_schema("a").await.unwrap();
    s.apply(&script(&step("t", "CREATE TABLE t (v int);", Dialect::Postgres, true), "a")).await.unwrap();

    for (i, text) in [
        "INSERT INTO a.t VALUES (1);\nCOMMIT;\nINSERT INTO a.t VALUES (2);",
        "INSERT INTO a.t VALUES (3);\nROLLBACK;",
        "COMMIT;\nBEGIN;\nINSERT INTO a.t VALUES (4);",
        "END;",
        "ABORT;\nINSERT INTO a.t VALUES (5);",
    ]
    .iter()
    .enumerate()
    {
        smuggled(&mut s, "a", &format!("m{i}"), text, Dialect::Postgres, true).await;
    }
    // Unqualified, the statement after the COMMIT fails on its own (search_path was local to
    // the transaction that ended); the failure still says that part of the step stayed.
    let st = step("m9", "INSERT INTO t VALUES (6);\nCOMMIT;\nINSERT INTO t VALUES (7);", Dialect::Postgres, true);
    let f = s.apply(&script(&st, "a")).await.unwrap_err();
    assert_eq!((f.statement_index, f.partial), (Some(2), true), "{f:?}");
    assert!(!s.ledger("a").await.unwrap().contains_key("m9"));
    let pg = sqlx::PgPool::connect(&db.url).await.unwrap();
    let values: Vec<i32> = sqlx::query_scalar("SELECT v FROM a.t ORDER BY v").fetch_all(&pg).await.unwrap();
    // Only what the scripts committed themselves stayed; the statements after their COMMIT,
    // which would have run outside any transaction, were undone with the failed guard.
    assert_eq!(values, vec![1, 6], "{values:?}");

    // In a batch, the step fails, earlier steps stay and later ones do not run.
    let ok = step("b1", "INSERT INTO a.t VALUES (10);", Dialect::Postgres, true);
    let bad = step("b2", "INSERT INTO a.t VALUES (11);\nCOMMIT;\nINSERT INTO a.t VALUES (12);", Dialect::Postgres, true);
    let after = step("b3", "INSERT INTO a.t VALUES (13);", Dialect::Postgres, true);
    let out = s.apply_batch(&[script(&ok, "a"), script(&bad, "a"), script(&after, "a")]).await;
    assert_eq!(out.completed, 1);
    let f = out.failure.unwrap();
    assert!(f.error.contains("ended the step's transaction") && f.partial, "{f:?}");
    let ledger = s.ledger("a").await.unwrap();
    let mut ids: Vec<&String> = ledger.keys().collect();
    ids.sort();
    assert_eq!(ids, vec!["b1", "t"]);
    let values: Vec<i32> = sqlx::query_scalar("SELECT v FROM a.t WHERE v >= 10 ORDER BY v").fetch_all(&pg).await.unwrap();
    assert_eq!(values, vec![10, 11]);

    // Savepoints stay inside the transaction, and the session is usable after a failure.
    let sp = step("sp", "SAVEPOINT x;\nINSERT INTO t VALUES (20);\nROLLBACK TO SAVEPOINT x;\nRELEASE x;", Dialect::Postgres, true);
    s.apply(&script(&sp, "a")).await.unwrap();
    assert!(s.ledger("a").await.unwrap().contains_key("sp"));
    s.unlock().await.unwrap();
    pg.close().await;
}

#[tokio::test]
async fn sqlite_a_script_that_ends_the_transaction_fails_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ConnectionConfig::new("app", BackendKind::Sqlite);
    c.database = Some(dir.path().join("app.db").to_string_lossy().into());
    let target = connect(&c).await.unwrap();
    let mut s = target.session("run-1").await.unwrap();
    s.lock("", Duration::from_secs(5)).await.unwrap();
    s.apply(&script(&step("t", "CREATE TABLE t (v int);", Dialect::Sqlite, true), "")).await.unwrap();
    smuggled(&mut s, "", "m1", "INSERT INTO t VALUES (1);\nCOMMIT;\nINSERT INTO t VALUES (2);", Dialect::Sqlite, true).await;
    smuggled(&mut s, "", "m2", "INSERT INTO t VALUES (3);\nEND;", Dialect::Sqlite, true).await;
    smuggled(&mut s, "", "m3", "ROLLBACK;\nBEGIN;\nINSERT INTO t VALUES (4);", Dialect::Sqlite, true).await;
    // A failing statement still names itself and leaves nothing behind.
    let bad = step("m4", "INSERT INTO t VALUES (5);\nINSERT INTO nope VALUES (1);", Dialect::Sqlite, true);
    let f = s.apply(&script(&bad, "")).await.unwrap_err();
    assert_eq!((f.statement_index, f.partial), (Some(1), false), "{f:?}");
    let ok = step("m5", "SAVEPOINT x;\nINSERT INTO t VALUES (6);\nRELEASE x;", Dialect::Sqlite, true);
    s.apply(&script(&ok, "")).await.unwrap();
    let ledger = s.ledger("").await.unwrap();
    let mut ids: Vec<&String> = ledger.keys().collect();
    ids.sort();
    assert_eq!(ids, vec!["m5", "t"]);
    s.unlock().await.unwrap();
}

struct Maria {
    _db: MySqlDb,
    _cleanup: bfm_testkit::DropDb,
    schema: String,
    pool: sqlx::MySqlPool,
    session: Box<dyn Session>,
}

async fn mariadb() -> Maria {
    let db = MySqlDb::new().await;
    let schema = format!("{}_s", db.name);
    let cleanup = db.also_drop(&schema);
    let mut c = ConnectionConfig::new("shop", BackendKind::Mysql);
    c.url = Some(db.url.clone());
    let target = connect(&c).await.unwrap();
    let mut session = target.session("run-1").await.unwrap();
    session.lock(&schema, Duration::from_secs(5)).await.unwrap();
    session.prepare_schema(&schema).await.unwrap();
    let pool = sqlx::MySqlPool::connect(&db.url).await.unwrap();
    Maria { _db: db, _cleanup: cleanup, schema, pool, session }
}

impl Maria {
    async fn values(&self) -> Vec<i64> {
        let sql = format!("SELECT CAST(v AS SIGNED) FROM `{}`.t ORDER BY v", self.schema);
        sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(&self.pool).await.unwrap()
    }
}

// The engine asks MySQL for no transaction (its DDL is not transactional): `transactional` is
// false in these steps, as in a real run.

#[tokio::test]
async fn mariadb_dml_only_scripts_are_atomic_with_their_ledger_row() {
    let mut m = mariadb().await;
    let schema = m.schema.clone();
    m.session.apply(&script(&step("t", "CREATE TABLE t (v int);", Dialect::MySql, false), &schema)).await.unwrap();

    let bad = step("m1", "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\nINSERT INTO nope VALUES (3);", Dialect::MySql, false);
    let f = m.session.apply(&script(&bad, &schema)).await.unwrap_err();
    assert_eq!((f.statement_index, f.partial, f.statements_done), (Some(2), false, 0), "{f:?}");
    assert!(m.values().await.is_empty(), "the first statements were undone");
    assert!(!m.session.ledger(&schema).await.unwrap().contains_key("m1"));

    // Opting out runs statement by statement: what ran stays.
    let opted = step("m2", "-- bfm-no-transaction\nINSERT INTO t VALUES (1);\nINSERT INTO nope VALUES (3);", Dialect::MySql, false);
    let f = m.session.apply(&script(&opted, &schema)).await.unwrap_err();
    assert_eq!((f.statement_index, f.partial), (Some(1), true), "{f:?}");
    assert_eq!(m.values().await, vec![1]);

    let ok = step("m3", "INSERT INTO t VALUES (2);\nUPDATE t SET v = v + 10;", Dialect::MySql, false);
    m.session.apply(&script(&ok, &schema)).await.unwrap();
    assert_eq!(m.values().await, vec![11, 12]);
    assert!(m.session.ledger(&schema).await.unwrap().contains_key("m3"));
}

#[tokio::test]
async fn mariadb_a_script_that_ends_the_transaction_fails_and_records_nothing() {
    let mut m = mariadb().await;
    let schema = m.schema.clone();
    m.session.apply(&script(&step("t", "CREATE TABLE t (v int);", Dialect::MySql, false), &schema)).await.unwrap();
    smuggled(&mut m.session, &schema, "m1", "INSERT INTO t VALUES (1);\nCOMMIT;\nINSERT INTO t VALUES (2);", Dialect::MySql, false).await;
    smuggled(&mut m.session, &schema, "m2", "INSERT INTO t VALUES (3);\nROLLBACK;", Dialect::MySql, false).await;
    smuggled(&mut m.session, &schema, "m3", "COMMIT;\nSTART TRANSACTION;\nINSERT INTO t VALUES (4);", Dialect::MySql, false).await;
    // The statement after the COMMIT ran without a transaction and stayed; the ROLLBACK undid 3;
    // 4 ran in the script's own transaction, rolled back with the failed step.
    assert_eq!(m.values().await, vec![1, 2]);
    m.session.unlock().await.unwrap();
}

#[tokio::test]
async fn mariadb_double_dash_without_a_blank_is_an_operator() {
    let mut m = mariadb().await;
    let schema = m.schema.clone();
    let st =
        step("m1", "CREATE TABLE t (v int);\nINSERT INTO t SELECT 5--1;\nINSERT INTO t VALUES (7); -- a comment;", Dialect::MySql, false);
    assert_eq!(st.statements, vec!["CREATE TABLE t (v int)", "INSERT INTO t SELECT 5--1", "INSERT INTO t VALUES (7)"]);
    m.session.apply(&script(&st, &schema)).await.unwrap();
    assert_eq!(m.values().await, vec![6, 7]);
}
