//! Black-box tests of the `bfm` binary.

mod common;

use bfm_testkit::PgDb;
use common::{NO_ENV, bfm, text, write};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn quick_start_on_the_embedded_default() {
    let d = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let config = root.join("bfm.toml");
    let cfg = config.to_str().unwrap();
    let state = format!("sqlite://{}", d.path().join("state.db").display());
    // The example writes its app database next to the repository's .bfm; use a copy.
    let copy = d.path().join("bfm.toml");
    let body = std::fs::read_to_string(&config)
        .unwrap()
        .replace("sfm_path = \"sfm\"", &format!("sfm_path = \"{}\"", root.join("sfm").display()))
        .replace("../.bfm/app.db", "app.db");
    std::fs::write(&copy, body).unwrap();
    let cfg_copy = copy.to_str().unwrap();
    let _ = cfg;

    let o = bfm(d.path(), &["--config", cfg_copy, "--state", &state, "migrate", "up", "--connection", "app"], NO_ENV);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3 done"), "{}", text(&o));
    let o = bfm(d.path(), &["--config", cfg_copy, "--state", &state, "migrate", "status", "--connection", "app", "--json"], NO_ENV);
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(rows.as_array().unwrap().iter().all(|r| r["status"] == "applied"), "{rows}");
    let o = bfm(d.path(), &["--config", cfg_copy, "--state", &state, "migrate", "up", "--connection", "app", "--json"], NO_ENV);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["applied"].as_array().unwrap().len(), 0);
    assert_eq!(report["skipped"].as_array().unwrap().len(), 3);
}

#[test]
fn check_reports_problems_with_file_and_line_and_fails() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "sfm/postgresql/core/20250101000000_ok.up.sql", "SELECT 1;");
    write(d.path(), "sfm/postgresql/core/20250101000001_bad.up.sql", "SELECT 1;\n-- bfm-tags: nokey");
    write(d.path(), "sfm/postgresql/core/badname.up.sql", "SELECT 1;");
    let o = bfm(d.path(), &["check", "sfm"], NO_ENV);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("20250101000001_bad.up.sql:2: invalid tag `nokey`"), "{out}");
    assert!(out.contains("badname.up.sql:1: bad file name"), "{out}");
    std::fs::remove_file(d.path().join("sfm/postgresql/core/badname.up.sql")).unwrap();
    std::fs::remove_file(d.path().join("sfm/postgresql/core/20250101000001_bad.up.sql")).unwrap();
    let o = bfm(d.path(), &["check", "sfm"], NO_ENV);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn new_creates_timestamped_files_and_configuration_errors_name_the_variable() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("sfm")).unwrap();
    let o = bfm(d.path(), &["--sfm", "sfm", "new", "core", "Create Users", "--backend", "postgresql", "--schema", "core"], NO_ENV);
    assert!(o.status.success(), "{}", text(&o));
    let files: Vec<String> = std::fs::read_dir(d.path().join("sfm/postgresql/core"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| f.len() > 15 && f[14..].starts_with("_create_users.")), "{files:?}");
    let o = bfm(d.path(), &["--sfm", "sfm", "check"], NO_ENV);
    assert!(o.status.success(), "{}", text(&o));

    let o = bfm(d.path(), &["--sfm", "sfm", "migrate", "status"], &[("CORE_BACKEND", "postgresql"), ("CORE_DB_PORT", "five")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("CORE_DB_PORT"), "{}", text(&o));
}

fn pg_env(db: &PgDb) -> Vec<(&str, &str)> {
    vec![("CORE_BACKEND", "postgresql"), ("CORE_DB_URL", db.url.as_str())]
}

async fn wait_for(pool: &sqlx::PgPool, sql: &str, want: bool, timeout: Duration) {
    let start = Instant::now();
    loop {
        let got: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(pool).await.unwrap();
        if got == want {
            return;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for: {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kill -9 the CLI in the middle of a migration; afterwards state and target agree.
async fn kill_mid_migration(no_transaction: bool) {
    let db = PgDb::new().await;
    let d = tempfile::tempdir().unwrap();
    let header = if no_transaction { "-- bfm-no-transaction\n" } else { "" };
    write(d.path(), "sfm/postgresql/core/20250101000001_one.up.sql", "-- bfm-schema: core\nCREATE TABLE t1 (id int);");
    write(d.path(), "sfm/postgresql/core/20250101000002_two.up.sql", "-- bfm-schema: core\nCREATE TABLE t2 (id int);");
    write(
        d.path(),
        "sfm/postgresql/core/20250101000003_slow.up.sql",
        &format!(
            "-- bfm-schema: core\n{header}CREATE TABLE t3_started (id int);\nSELECT pg_sleep(CASE WHEN EXISTS (SELECT 1 FROM public.slow) THEN 30 ELSE 0 END);\nCREATE TABLE t3 (id int);"
        ),
    );
    write(d.path(), "sfm/postgresql/core/20250101000004_four.up.sql", "-- bfm-schema: core\nCREATE TABLE t4 (id int);");
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE public.slow (x int); INSERT INTO public.slow VALUES (1);").execute(&pool).await.unwrap();
    let state = format!("sqlite://{}", d.path().join("state.db").display());
    let env = pg_env(&db);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bfm"));
    cmd.current_dir(d.path())
        .args(["--sfm", "sfm", "--state", &state, "migrate", "up", "--connection", "core"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // Wait until the third migration is sleeping, then kill the process without warning.
    wait_for(&pool, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep' AND pid <> pg_backend_pid())", true, Duration::from_secs(20)).await;
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
    sqlx::raw_sql("DELETE FROM public.slow").execute(&pool).await.unwrap();
    // The server aborts the orphaned statement once it notices the client is gone.
    wait_for(
        &pool,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'bfm:%')",
        false,
        Duration::from_secs(40),
    )
    .await;

    let mut status_env = env.clone();
    status_env.push(("BFM_LOG_LEVEL", "info"));
    let o = bfm(
        d.path(),
        &["--sfm", "sfm", "--state", &state, "--log-level", "info", "migrate", "status", "--connection", "core", "--json"],
        &status_env,
    );
    assert!(o.status.success(), "{}", text(&o));
    let logs = String::from_utf8_lossy(&o.stderr).to_string();
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ledger: Vec<String> = sqlx::query_scalar("SELECT migration_id FROM bfm.ledger ORDER BY 1").fetch_all(&pool).await.unwrap();
    let status = |name: &str| rows.as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()["status"].as_str().unwrap().to_string();
    let exists = |t: &str| {
        let pool = pool.clone();
        let t = t.to_string();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL").bind(format!("core.{t}")).fetch_one(&pool).await.unwrap()
        }
    };
    if (status("one"), status("two")) != ("applied".to_string(), "applied".to_string()) {
        let lite = sqlx::SqlitePool::connect(&state).await.unwrap();
        let st: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT migration_id, status, run_id FROM bfm_state").fetch_all(&lite).await.unwrap();
        let h: Vec<(String, String)> = sqlx::query_as("SELECT event_key, status FROM bfm_history").fetch_all(&lite).await.unwrap();
        let runs: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT run_id, finished_at FROM bfm_runs").fetch_all(&lite).await.unwrap();
        panic!("state {st:?}\nhistory {h:?}\nruns {runs:?}\nledger {ledger:?}\nlogs {logs}\nrows {rows:#}");
    }
    assert_eq!(ledger, vec!["20250101000001_one_postgresql_core", "20250101000002_two_postgresql_core"]);
    assert!(exists("t1").await && exists("t2").await && !exists("t3").await && !exists("t4").await);
    assert_eq!(status("four"), "pending");
    if no_transaction {
        // Without a transaction the first statement stayed: the state says the step was
        // interrupted and needs a look before it is retried.
        assert!(exists("t3_started").await);
        assert_eq!(status("slow"), "failed");
        let o = bfm(d.path(), &["--sfm", "sfm", "--state", &state, "migrate", "up", "--connection", "core"], &env);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("bfm migrate retry 20250101000003_slow_postgresql_core"), "{}", text(&o));
        assert!(!exists("t3").await && !exists("t4").await, "a partial step and the rest of its schema wait for retry");
        sqlx::raw_sql("DROP TABLE core.t3_started").execute(&pool).await.unwrap();
        let o = bfm(d.path(), &["--sfm", "sfm", "--state", &state, "migrate", "retry", "20250101000003_slow_postgresql_core"], &env);
        assert!(o.status.success(), "{}", text(&o));
    } else {
        assert!(!exists("t3_started").await, "the transaction rolled back");
        assert_eq!(status("slow"), "pending");
    }
    // Resume: the rest runs exactly once.
    let o = bfm(d.path(), &["--sfm", "sfm", "--state", &state, "migrate", "up", "--connection", "core", "--json"], &env);
    assert!(o.status.success(), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["applied"], serde_json::json!(["20250101000003_slow_postgresql_core", "20250101000004_four_postgresql_core"]));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bfm.ledger").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 4);
    pool.close().await;
}

#[tokio::test]
async fn kill_9_in_a_transactional_migration_leaves_state_and_target_in_agreement() {
    kill_mid_migration(false).await;
}

#[tokio::test]
async fn kill_9_in_a_non_transactional_migration_is_reported_as_interrupted() {
    kill_mid_migration(true).await;
}
