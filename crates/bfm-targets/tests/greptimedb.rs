//! The GreptimeDB target against the documented HTTP SQL API, served by bfm-testkit's stand-in
//! (no GreptimeDB here), and against a real server when `BFM_TEST_GREPTIME_URL` is set.

use bfm_core::sql::{self, Dialect};
use bfm_core::{BackendKind, Checksum, Direction};
use bfm_targets::greptimedb::GreptimeTarget;
use bfm_targets::{ConnectionConfig, StepScript, Target, TargetError, connect};
use bfm_testkit::greptime::{FAIL_MARKER, GreptimeMock, base64};
use std::sync::Arc;
use std::time::Duration;

fn config(url: &str) -> ConnectionConfig {
    let mut c = ConnectionConfig::new("logs", BackendKind::Greptimedb);
    c.url = Some(url.to_string());
    c
}

struct Script {
    id: String,
    sql: String,
    statements: Vec<String>,
    checksum: Checksum,
}

fn script(id: &str, text: &str) -> Script {
    Script {
        id: id.into(),
        sql: text.into(),
        statements: sql::split(text, Dialect::Greptime).unwrap().into_iter().map(|s| s.text).collect(),
        checksum: Checksum::of_sql(text, Dialect::Greptime).unwrap(),
    }
}

fn step<'a>(s: &'a Script, schema: &'a str, direction: Direction, resume_from: usize) -> StepScript<'a> {
    StepScript {
        migration_id: &s.id,
        schema,
        version: "20250101000000",
        direction,
        sql: &s.sql,
        statements: &s.statements,
        transactional: false,
        checksum: &s.checksum,
        run_id: "run-1",
        resume_from,
    }
}

const LOGS: &str =
    "CREATE TABLE IF NOT EXISTS app_logs (host STRING, level STRING, message STRING, ts TIMESTAMP TIME INDEX, PRIMARY KEY (host, level));
INSERT INTO app_logs VALUES ('h1', 'info', 'ready', 0);
INSERT INTO app_logs VALUES ('h2', 'info', 'ready', 0);";

#[tokio::test]
async fn the_schema_is_a_database_created_on_demand_and_checked_exactly() {
    let mock = GreptimeMock::start().await;
    let target = connect(&config(&mock.url)).await.unwrap();
    target.ping().await.unwrap();
    let mut s = target.session("run-1").await.unwrap();
    // Bug B5: `tenant_ab` existing must not make `tenant_a` exist.
    let gt = GreptimeTarget::new(&config(&mock.url)).unwrap();
    gt.sql("public", "CREATE DATABASE IF NOT EXISTS `tenant_ab`").await.unwrap();
    assert!(!s.schema_exists("tenant_a").await.unwrap());
    assert!(s.schema_exists("tenant_ab").await.unwrap());

    s.prepare_schema("tenant_a").await.unwrap();
    s.prepare_schema("tenant_a").await.unwrap();
    assert!(mock.databases().contains(&"tenant_a".to_string()));
    let creates: Vec<(String, String)> = mock.statements().into_iter().filter(|(_, q)| q.starts_with("CREATE DATABASE")).collect();
    assert_eq!(creates.last().unwrap(), &("public".to_string(), "CREATE DATABASE IF NOT EXISTS `tenant_a`".to_string()));
    assert_eq!(creates.iter().filter(|(_, q)| q.contains("`tenant_a`")).count(), 1, "exists is checked first: {creates:?}");
    assert!(s.schema_exists("tenant_a").await.unwrap());

    // Names that are not plain identifiers never reach SQL.
    for bad in ["a`b", "x; DROP DATABASE public", "a-b"] {
        assert!(s.prepare_schema(bad).await.is_err(), "{bad}");
        assert!(s.lock(bad, Duration::from_secs(1)).await.is_err(), "{bad}");
    }
    assert!(!mock.statements().iter().any(|(_, q)| q.contains("DROP")));
}

#[tokio::test]
async fn statements_run_one_by_one_and_the_ledger_is_written_after_them() {
    let mock = GreptimeMock::start().await;
    let target = connect(&config(&mock.url)).await.unwrap();
    let mut s = target.session("run-1").await.unwrap();
    s.lock("tenant_a", Duration::from_secs(5)).await.unwrap();
    s.prepare_schema("tenant_a").await.unwrap();
    let m = script("20250101000000_logs_greptimedb_logs", LOGS);
    assert_eq!(s.apply(&step(&m, "tenant_a", Direction::Up, 0)).await.unwrap().statements, 3);
    let user = mock.user_statements();
    let ran: Vec<&(String, String)> = user.iter().filter(|(_, q)| !q.starts_with("CREATE DATABASE")).collect();
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert!(ran.iter().all(|(db, _)| db == "tenant_a"));
    assert!(ran[0].1.starts_with("CREATE TABLE") && ran[2].1.contains("'h2'"));
    // The ledger row comes after the last statement, in the default database.
    let all = mock.statements();
    let last_user = all.iter().rposition(|(_, q)| q.contains("'h2'")).unwrap();
    let ledger_at = all.iter().rposition(|(_, q)| q.starts_with("INSERT INTO bfm_ledger")).unwrap();
    assert!(ledger_at > last_user && all[ledger_at].0 == "public");
    let ledger = s.ledger("tenant_a").await.unwrap();
    assert_eq!(ledger["20250101000000_logs_greptimedb_logs"].checksum, m.checksum);
    assert!(s.ledger("").await.unwrap().is_empty());
    assert!(s.table_exists("tenant_a", "app_logs").await.unwrap());
    assert!(!s.table_exists("tenant_a", "nope").await.unwrap());
    assert_eq!(target.ledger_rows(Some("run-1")).await.unwrap().len(), 1);

    // Down removes the ledger row.
    let mut down = script("20250101000000_logs_greptimedb_logs", "DROP TABLE app_logs;");
    down.checksum = m.checksum.clone();
    s.apply(&step(&down, "tenant_a", Direction::Down, 0)).await.unwrap();
    assert!(s.ledger("tenant_a").await.unwrap().is_empty());
    s.unlock().await.unwrap();
}

#[tokio::test]
async fn a_failure_names_its_statement_and_resume_starts_there() {
    let mock = GreptimeMock::start().await;
    let target = connect(&config(&mock.url)).await.unwrap();
    let mut s = target.session("run-1").await.unwrap();
    s.prepare_schema("t1").await.unwrap();
    let text = format!(
        "CREATE TABLE IF NOT EXISTS a (v STRING, ts TIMESTAMP TIME INDEX);\nINSERT INTO a VALUES ('{FAIL_MARKER}', 1);\nINSERT INTO a VALUES ('ok', 2);"
    );
    let m = script("m_fail", &text);
    let f = s.apply(&step(&m, "t1", Direction::Up, 0)).await.unwrap_err();
    assert_eq!((f.statement_index, f.statements_done, f.partial), (Some(1), 1, true), "{f:?}");
    assert!(f.error.contains("mock failure") && f.error.contains("code 3001"), "{}", f.error);
    assert!(f.statement.as_deref().unwrap().contains(FAIL_MARKER));
    assert!(!mock.statements().iter().any(|(_, q)| q.contains("'ok', 2")), "stopped at the failure");
    assert!(s.ledger("t1").await.unwrap().is_empty());

    // The cause is fixed; resuming at the failed statement runs only what is left.
    mock.set_failing(false);
    let before = mock.statements().len();
    s.apply(&step(&m, "t1", Direction::Up, 1)).await.unwrap();
    let after: Vec<String> = mock.statements()[before..].iter().map(|(_, q)| q.clone()).collect();
    assert!(!after.iter().any(|q| q.starts_with("CREATE TABLE IF NOT EXISTS a")), "{after:?}");
    assert!(after.iter().any(|q| q.contains(", 1)")) && after.iter().any(|q| q.contains(", 2)")));
    assert!(s.ledger("t1").await.unwrap().contains_key("m_fail"));

    // A failure at the first statement left nothing behind.
    mock.set_failing(true);
    let first = script("m_first", &format!("INSERT INTO a VALUES ('{FAIL_MARKER}', 3);"));
    let f = s.apply(&step(&first, "t1", Direction::Up, 0)).await.unwrap_err();
    assert_eq!((f.statement_index, f.statements_done, f.partial), (Some(0), 0, false));
}

#[tokio::test]
async fn basic_auth_is_sent_with_every_request() {
    let mock = GreptimeMock::with_auth("greptime_user", "greptime_pwd").await;
    let mut c = config(&mock.url);
    c.username = Some("greptime_user".into());
    c.password = Some("greptime_pwd".into());
    let target = connect(&c).await.unwrap();
    target.ping().await.unwrap();
    let mut s = target.session("run-1").await.unwrap();
    s.apply(&step(&script("m_auth", "SELECT 1;"), "", Direction::Up, 0)).await.unwrap();
    let expected = format!("Basic {}", base64(b"greptime_user:greptime_pwd"));
    let seen = mock.auth_headers();
    assert!(seen.len() > 3 && seen.iter().all(|h| h.as_deref() == Some(expected.as_str())), "{seen:?}");

    c.password = Some("wrong".into());
    let e = connect(&c).await.unwrap().ping().await.unwrap_err().to_string();
    assert!(e.contains("logs") && e.contains("7003"), "{e}");
}

#[tokio::test]
async fn lease_row_locks_contend_and_release() {
    let mock = GreptimeMock::start().await;
    let target: Arc<dyn Target> = connect(&config(&mock.url)).await.unwrap();
    let mut a = target.session("run-a").await.unwrap();
    let mut b = target.session("run-b").await.unwrap();
    a.lock("s", Duration::from_secs(5)).await.unwrap();
    let e = b.lock("s", Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(e, TargetError::LockTimeout { .. }), "{e}");
    b.lock("other", Duration::from_secs(2)).await.unwrap();
    b.unlock().await.unwrap();
    a.unlock().await.unwrap();
    b.lock("s", Duration::from_secs(2)).await.unwrap();
    // Dropped while holding: the claim is withdrawn.
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = target.session("run-c").await.unwrap();
    c.lock("s", Duration::from_secs(2)).await.unwrap();
    c.unlock().await.unwrap();
    // A crashed holder's expired claim does not count.
    let gt = GreptimeTarget::new(&config(&mock.url)).unwrap();
    gt.sql("public", "INSERT INTO bfm_locks (name, owner, expires_at, ts) VALUES ('logs\u{1f}s', 'dead', 1, 0)").await.unwrap();
    c.lock("s", Duration::from_secs(2)).await.unwrap();
    assert!(!mock.rows("public", "bfm_locks").iter().any(|r| r["owner"] == "dead"), "stale claims are tidied up");
    c.unlock().await.unwrap();
    // While a live claim exists, nobody else gets in.
    gt.sql("public", "INSERT INTO bfm_locks (name, owner, expires_at, ts) VALUES ('logs\u{1f}s', 'alive', 99999999999999, 0)")
        .await
        .unwrap();
    assert!(c.lock("s", Duration::from_millis(200)).await.is_err());
    assert!(mock.rows("public", "bfm_locks").iter().all(|r| r["owner"] != serde_json::Value::String("run-c".into())));
}

/// Against a real GreptimeDB when one is configured.
#[tokio::test]
async fn real_server_when_configured() {
    let Ok(url) = std::env::var("BFM_TEST_GREPTIME_URL") else {
        eprintln!("skipped: set BFM_TEST_GREPTIME_URL (e.g. http://127.0.0.1:4000) to run against a real GreptimeDB");
        return;
    };
    let mut c = config(&url);
    if let Ok(u) = std::env::var("BFM_TEST_GREPTIME_USER") {
        c.username = Some(u);
        c.password = std::env::var("BFM_TEST_GREPTIME_PASSWORD").ok();
    }
    let target = connect(&c).await.unwrap();
    target.ping().await.unwrap();
    let schema = format!("bfm_test_{}", std::process::id());
    let mut s = target.session("run-1").await.unwrap();
    s.lock(&schema, Duration::from_secs(10)).await.unwrap();
    s.prepare_schema(&schema).await.unwrap();
    assert!(s.schema_exists(&schema).await.unwrap());
    let m = script("real_1", LOGS);
    s.apply(&step(&m, &schema, Direction::Up, 0)).await.unwrap();
    assert!(s.ledger(&schema).await.unwrap().contains_key("real_1"));
    assert!(s.table_exists(&schema, "app_logs").await.unwrap());
    let bad = script("real_2", "INSERT INTO app_logs VALUES ('h3', 'info', 'x', 0);\nINSERT INTO no_such_table VALUES (1);");
    let f = s.apply(&step(&bad, &schema, Direction::Up, 0)).await.unwrap_err();
    assert_eq!((f.statement_index, f.partial), (Some(1), true), "{f:?}");
    let mut down = script("real_1", "DROP TABLE app_logs;");
    down.checksum = m.checksum.clone();
    s.apply(&step(&down, &schema, Direction::Down, 0)).await.unwrap();
    s.unlock().await.unwrap();
    let gt = GreptimeTarget::new(&c).unwrap();
    let _ = gt.sql("public", &format!("DROP DATABASE {}", Dialect::Greptime.quote_ident(&schema))).await;
}
