//! The on-disk desired-model cache (its own test binary: the cache settings are process-wide).
mod common;
use bfm_schema::*;
use common::*;

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

#[tokio::test]
async fn desired_models_survive_in_the_disk_cache() {
    let live = TestDb::new("diskcache").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache dir");
    // A file content no other test uses, so the in-memory cache cannot serve it.
    write(dir.path(), "a.sql", &format!("CREATE TABLE disk_cached_{} (id int);", std::process::id()));
    let desired = DesiredSource { dir: dir.path().to_path_buf(), bootstrap: None };
    set_desired_cache_dir(Some(cache.path().to_path_buf()));
    let p1 = plan(&live.target(), &desired).await.expect("plan");
    assert!(!p1.timings.desired_cached);
    assert_eq!(std::fs::read_dir(cache.path()).expect("read").count(), 1, "one entry written");
    // A new process starts with an empty memory cache; simulate it.
    clear_desired_cache();
    let p2 = plan(&live.target(), &desired).await.expect("plan");
    assert!(p2.timings.desired_cached, "served from disk");
    assert_eq!(p1.steps, p2.steps);
    assert_eq!(p1.desired_fingerprint, p2.desired_fingerprint);
    set_desired_cache_dir(None);
}
