//! The scratch database is always dropped, and old leftovers are cleaned up. (Its own test
//! binary: it counts databases named after this process.)
mod common;
use bfm_schema::*;
use common::*;

async fn scratch_dbs(admin: &tokio_postgres::Client, pattern: &str) -> i64 {
    admin.query_one("SELECT count(*) FROM pg_database WHERE datname LIKE $1", &[&pattern]).await.expect("count").get(0)
}

#[tokio::test]
async fn scratch_databases_never_outlive_a_plan() {
    let admin = client(&server_url("postgres")).await;
    let mine = format!("{SCRATCH_PREFIX}%\\_{}\\_%", std::process::id());
    let live = TestDb::new("scratch").await;
    let dir = tempfile::tempdir().expect("tempdir");

    // A leftover from a crashed process two hours ago is dropped by the next plan.
    let old = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 7200;
    let leftover = format!("{SCRATCH_PREFIX}{old}_1_0_0");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{leftover}\"")).await.expect("drop leftover");
    admin.batch_execute(&format!("CREATE DATABASE \"{leftover}\"")).await.expect("leftover");

    std::fs::write(dir.path().join("a.sql"), "CREATE TABLE t (id int);").expect("write");
    let desired = DesiredSource { dir: dir.path().to_path_buf(), bootstrap: None };
    plan(&live.target(), &desired).await.expect("plan");
    assert_eq!(scratch_dbs(&admin, &mine).await, 0, "scratch database dropped after a plan");
    assert_eq!(scratch_dbs(&admin, &leftover).await, 0, "leftover older than an hour dropped");

    // Also when loading fails.
    std::fs::write(dir.path().join("b.sql"), "CREATE TABLE broken (;").expect("write");
    bfm_schema::clear_desired_cache();
    let err = plan(&live.target(), &desired).await.expect_err("syntax error");
    assert!(matches!(err, SchemaError::Load { line: 1, .. }), "{err}");
    assert_eq!(scratch_dbs(&admin, &mine).await, 0, "scratch database dropped after a failed load");

    // And when the plan future is dropped half-way (the guard drops it in the background).
    std::fs::write(dir.path().join("b.sql"), "SELECT pg_sleep(5);").expect("write");
    let target = live.target();
    let fut = plan(&target, &desired);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(700), fut).await;
    for _ in 0..50 {
        if scratch_dbs(&admin, &mine).await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(scratch_dbs(&admin, &mine).await, 0, "scratch database dropped after cancellation");
}
