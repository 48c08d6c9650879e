//! Connection reuse (its own test binary: the setting is process-wide).
mod common;
use bfm_schema::*;
use common::*;

#[tokio::test]
async fn reused_connections_give_the_same_plans() {
    let live = TestDb::with("reuse_l", "CREATE TABLE t (id int);").await;
    let desired = TestDb::with("reuse_d", "CREATE TABLE t (id int, x int);").await;
    let cold = plan_dbs(&live, &desired).await;
    set_connection_reuse(true);
    let first = plan_dbs(&live, &desired).await;
    let admin = client(&server_url("postgres")).await;
    let idle: i64 = admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", &[&live.name]).await.expect("count").get(0);
    assert_eq!(idle, 1, "one idle connection kept for the live database");
    let warm = plan_dbs(&live, &desired).await;
    assert_eq!(cold.steps, warm.steps);
    assert_eq!(first.source_fingerprint, warm.source_fingerprint);
    // A connection whose server side went away is replaced transparently.
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN ('{}', '{}') AND pid <> pg_backend_pid()",
            live.name, desired.name
        ))
        .await
        .expect("terminate");
    let again = plan_dbs(&live, &desired).await;
    assert_eq!(again.steps, cold.steps);
    set_connection_reuse(false);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let idle: i64 = admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", &[&live.name]).await.expect("count").get(0);
    assert_eq!(idle, 0, "turning reuse off closes idle connections");
}
