//! The etcd target against a real etcd (`BFM_TEST_ETCD_ENDPOINTS`, started by `scripts/test.sh`).
//! Every test works under a key prefix of its own.

use bfm_core::{BackendKind, Checksum, Direction};
use bfm_etcd::{Client, ConnectOptions, Keys, RangeOptions};
use bfm_targets::{ConnectionConfig, StepScript, Target, TargetError, connect, etcd};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Env {
    prefix: String,
    target: Arc<dyn Target>,
    raw: Client,
}

async fn env(tag: &str) -> Env {
    let prefix = bfm_testkit::etcd_prefix(tag);
    let mut c = ConnectionConfig::new("metadata", BackendKind::Etcd);
    c.extras.insert("endpoints".into(), bfm_testkit::etcd_endpoints());
    c.extras.insert("prefix".into(), prefix.clone());
    c.extras.insert("lock_ttl".into(), "5s".into());
    let target = connect(&c).await.unwrap();
    let endpoints: Vec<String> = bfm_testkit::etcd_endpoints().split(',').map(str::to_string).collect();
    let raw = Client::connect(&endpoints, &ConnectOptions::new()).await.unwrap();
    Env { prefix, target, raw }
}

impl Env {
    async fn get(&self, key: &str) -> Option<String> {
        let kv = self.raw.get(format!("{}{key}", self.prefix)).await.unwrap();
        kv.map(|kv| String::from_utf8(kv.value).unwrap())
    }

    async fn put(&self, key: &str, value: &str) {
        self.raw.put(format!("{}{key}", self.prefix), value).await.unwrap();
    }

    /// Every key under the prefix (relative), bfm's own included.
    async fn keys(&self) -> Vec<String> {
        let r = self.raw.range(Keys::prefix(self.prefix.as_str()), RangeOptions::keys_only()).await.unwrap();
        r.kvs.iter().map(|kv| std::str::from_utf8(&kv.key).unwrap()[self.prefix.len()..].to_string()).collect()
    }
}

struct Script {
    id: String,
    json: String,
    statements: Vec<String>,
    checksum: Checksum,
}

fn script(id: &str, json: &str) -> Script {
    let statements = match serde_json::from_str::<serde_json::Value>(json).unwrap() {
        serde_json::Value::Array(a) => a.iter().map(|v| v.to_string()).collect(),
        _ => vec![json.to_string()],
    };
    Script { id: id.into(), json: json.into(), statements, checksum: Checksum::of_json(json).unwrap() }
}

fn step<'a>(s: &'a Script, schema: &'a str, direction: Direction) -> StepScript<'a> {
    StepScript {
        migration_id: &s.id,
        schema,
        version: "20250101000000",
        direction,
        sql: &s.json,
        statements: &s.statements,
        transactional: true,
        checksum: &s.checksum,
        run_id: "run-1",
        resume_from: 0,
    }
}

#[tokio::test]
async fn apply_rerun_and_down_in_one_transaction_with_the_ledger() {
    let e = env("apply").await;
    e.target.ping().await.unwrap();
    let mut s = e.target.session("run-1").await.unwrap();
    s.lock("tenant_a", Duration::from_secs(5)).await.unwrap();
    s.prepare_schema("tenant_a").await.unwrap();
    assert!(!s.schema_exists("tenant_a").await.unwrap());
    assert!(s.ledger("tenant_a").await.unwrap().is_empty());

    let up = script(
        "m1_etcd_metadata",
        r#"[{"key":"flags/zero_downtime","value":{"enabled":true}},{"operation":"put","key":"version","value":"1"}]"#,
    );
    let out = s.apply(&step(&up, "tenant_a", Direction::Up)).await.unwrap();
    assert_eq!(out.statements, 2);
    assert_eq!(e.get("tenant_a/flags/zero_downtime").await.as_deref(), Some(r#"{"enabled":true}"#));
    assert_eq!(e.get("tenant_a/version").await.as_deref(), Some("1"));
    assert!(s.schema_exists("tenant_a").await.unwrap());
    assert!(!s.table_exists("tenant_a", "t").await.unwrap());
    let ledger = s.ledger("tenant_a").await.unwrap();
    assert_eq!(ledger["m1_etcd_metadata"].checksum, up.checksum);
    assert_eq!(ledger["m1_etcd_metadata"].schema, "tenant_a");
    assert!(e.keys().await.contains(&"__bfm/ledger/tenant_a/m1_etcd_metadata".to_string()));

    // Running it again changes nothing: the ledger says it ran.
    e.put("tenant_a/version", "changed-by-someone").await;
    assert_eq!(s.apply(&step(&up, "tenant_a", Direction::Up)).await.unwrap().statements, 0);
    assert_eq!(e.get("tenant_a/version").await.as_deref(), Some("changed-by-someone"));

    // Down: the script and the ledger deletion, together.
    let mut down =
        script("m1_etcd_metadata", r#"[{"operation":"delete","key":"flags/zero_downtime"},{"operation":"delete","key":"version"}]"#);
    down.checksum = up.checksum.clone();
    s.apply(&step(&down, "tenant_a", Direction::Down)).await.unwrap();
    assert_eq!(e.get("tenant_a/version").await, None);
    assert!(s.ledger("tenant_a").await.unwrap().is_empty());
    assert!(e.target.ledger_rows(None).await.unwrap().is_empty());
    s.unlock().await.unwrap();
    assert!(e.keys().await.is_empty(), "{:?}", e.keys().await);
}

#[tokio::test]
async fn a_failing_if_value_guard_changes_nothing() {
    let e = env("guard").await;
    e.put("schema_version", "1").await;
    let mut s = e.target.session("run-1").await.unwrap();
    let m = script(
        "m2",
        r#"[{"key":"a","value":"x"},{"operation":"delete","key":"schema_version"},{"key":"schema_version","value":"3","if_value":"2"}]"#,
    );
    let f = s.apply(&step(&m, "", Direction::Up)).await.unwrap_err();
    assert_eq!((f.statement_index, f.statements_done, f.partial), (Some(2), 0, false), "{f:?}");
    assert!(f.error.contains("if_value") && f.error.contains("schema_version"), "{}", f.error);
    assert!(f.statement.unwrap().contains("if_value"));
    assert_eq!(e.get("a").await, None);
    assert_eq!(e.get("schema_version").await.as_deref(), Some("1"));
    assert!(s.ledger("").await.unwrap().is_empty());

    // With the expected value in place, the guarded write applies.
    let ok = script("m3", r#"[{"key":"schema_version","value":"2","if_value":"1"}]"#);
    s.apply(&step(&ok, "", Direction::Up)).await.unwrap();
    assert_eq!(e.get("schema_version").await.as_deref(), Some("2"));
    assert!(s.ledger("").await.unwrap().contains_key("m3"));
}

#[tokio::test]
async fn if_absent_seeds_once_and_keeps_what_exists() {
    let e = env("seed").await;
    e.put("flags/beta", "on (set by an operator)").await;
    let mut s = e.target.session("run-1").await.unwrap();
    let seed = r#"[{"key":"flags/beta","value":"off","if_absent":true},{"key":"flags/dark_mode","value":"off","if_absent":true}]"#;
    s.apply(&step(&script("seed_1", seed), "", Direction::Up)).await.unwrap();
    assert_eq!(e.get("flags/beta").await.as_deref(), Some("on (set by an operator)"));
    assert_eq!(e.get("flags/dark_mode").await.as_deref(), Some("off"));
    // The same seeding again (another migration) is a no-op.
    e.put("flags/dark_mode", "on").await;
    s.apply(&step(&script("seed_2", seed), "", Direction::Up)).await.unwrap();
    assert_eq!(e.get("flags/dark_mode").await.as_deref(), Some("on"));
    assert_eq!(s.ledger("").await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_concurrent_writer_on_a_guarded_key_makes_bfm_read_again() {
    let e = env("race").await;
    e.put("k", "w0").await;
    // A writer hammers the guarded key for a while, then stops.
    let (raw, key) = (e.raw.clone(), format!("{}k", e.prefix));
    let writer = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_millis(150);
        let mut n = 0;
        while Instant::now() < until {
            n += 1;
            raw.put(key.as_str(), format!("w{n}")).await.unwrap();
        }
        n
    });
    let mut s = e.target.session("run-1").await.unwrap();
    let m = script("m_race", r#"[{"key":"k","value":"seeded","if_absent":true},{"key":"other","value":"1"}]"#);
    s.apply(&step(&m, "", Direction::Up)).await.unwrap();
    let n = writer.await.unwrap();
    assert_eq!(e.get("k").await, Some(format!("w{n}")), "the seed never overwrote the writer");
    assert_eq!(e.get("other").await.as_deref(), Some("1"));
    assert!(s.ledger("").await.unwrap().contains_key("m_race"));
}

#[tokio::test]
async fn delete_prefix_and_puts_under_it_and_the_reserved_area_survives() {
    let e = env("prefix").await;
    for k in ["cache/a", "cache/b/c", "cachet", "other"] {
        e.put(&format!("t1/{k}"), "v").await;
    }
    let mut s = e.target.session("run-1").await.unwrap();
    let m = script("m4", r#"[{"key":"cache/x","value":"1"},{"operation":"delete_prefix","key":"cache/"},{"key":"cache/new","value":"2"}]"#);
    s.apply(&step(&m, "t1", Direction::Up)).await.unwrap();
    let mut keys = e.keys().await;
    keys.sort();
    assert_eq!(keys, vec!["__bfm/ledger/t1/m4", "t1/cache/new", "t1/cachet", "t1/other"]);

    // A delete_prefix at the root that covers `__bfm/` leaves bfm's ledger alone.
    let wipe = script("m5", r#"[{"operation":"delete_prefix","key":"_"},{"operation":"delete_prefix","key":"t"}]"#);
    s.apply(&step(&wipe, "", Direction::Up)).await.unwrap();
    let mut keys = e.keys().await;
    keys.sort();
    assert_eq!(keys, vec!["__bfm/ledger//m5", "__bfm/ledger/t1/m4"]);
}

#[tokio::test]
async fn nothing_escapes_the_prefix() {
    let e = env("escape").await;
    let mut s = e.target.session("run-1").await.unwrap();
    let m = script("m6", r#"[{"key":"a","value":"1"}]"#);
    for bad in ["../other", "/abs", "a/../../b", "__bfm", "a//b"] {
        let f = s.apply(&step(&m, bad, Direction::Up)).await.unwrap_err();
        assert!(f.error.contains("schema"), "{bad}: {f:?}");
        assert!(matches!(s.lock(bad, Duration::from_secs(1)).await, Err(TargetError::Config { .. })), "{bad}");
        assert!(s.ledger(bad).await.is_err(), "{bad}");
        assert!(s.prepare_schema(bad).await.is_err(), "{bad}");
    }
    // Keys are checked when the script is parsed; bfm's area is refused.
    let reserved = script("m7", r#"[{"key":"__bfm/ledger/x","value":"1"}]"#);
    let f = s.apply(&step(&reserved, "", Direction::Up)).await.unwrap_err();
    assert!(f.error.contains("reserve"), "{f:?}");
    let climbing = script("m8", r#"[{"key":"../x","value":"1"}]"#);
    assert!(s.apply(&step(&climbing, "", Direction::Up)).await.is_err());
    assert!(e.keys().await.is_empty());
    // What the request layer calls before anything runs.
    assert!(bfm_targets::validate_request_schema(BackendKind::Etcd, "tenant_a").is_ok());
    for bad in ["../x", "/x", "a/b", "__bfm_x", ""] {
        assert!(bfm_targets::validate_request_schema(BackendKind::Etcd, bad).is_err(), "{bad}");
    }
    // A declared schema may be nested (BfM's `/metadata/operations` is read as relative).
    let nested = script("m9", r#"[{"key":"solution/feature_flags/zero_downtime","value":"on"}]"#);
    s.apply(&step(&nested, "metadata/operations", Direction::Up)).await.unwrap();
    assert_eq!(e.get("metadata/operations/solution/feature_flags/zero_downtime").await.as_deref(), Some("on"));
    assert!(s.ledger("metadata/operations").await.unwrap().contains_key("m9"));
    assert!(s.ledger("metadata").await.unwrap().is_empty(), "a parent schema does not see nested ledgers");
}

#[tokio::test]
async fn locks_contend_release_and_expire() {
    let e = env("locks").await;
    let mut a = e.target.session("run-a").await.unwrap();
    let mut b = e.target.session("run-b").await.unwrap();
    a.lock("s", Duration::from_secs(5)).await.unwrap();
    let started = Instant::now();
    let err = b.lock("s", Duration::from_millis(400)).await.unwrap_err();
    assert!(matches!(err, TargetError::LockTimeout { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(400) && started.elapsed() < Duration::from_secs(3));
    // Another schema's lock is independent, also a nested one.
    b.lock("s/nested", Duration::from_secs(2)).await.unwrap();
    b.unlock().await.unwrap();
    // Released: the waiter gets it at once.
    let waiter = tokio::spawn(async move {
        let waited = b.lock("s", Duration::from_secs(10)).await.unwrap();
        (b, waited)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.unlock().await.unwrap();
    let (mut b, waited) = waiter.await.unwrap();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    // A dropped session releases its lock (the lease is revoked).
    drop(a);
    drop(b.unlock().await);
    let mut held = e.target.session("run-c").await.unwrap();
    held.lock("s", Duration::from_secs(2)).await.unwrap();
    drop(held);
    let mut again = e.target.session("run-d").await.unwrap();
    again.lock("s", Duration::from_secs(5)).await.unwrap();
    again.unlock().await.unwrap();

    // A crashed holder: its lease is not kept alive, so it expires and the lock frees itself.
    let raw = e.raw.clone();
    let lease = raw.lease_grant(2).await.unwrap();
    raw.lock(etcd::lock_name(&e.prefix, "s"), lease).await.unwrap();
    let mut next = e.target.session("run-e").await.unwrap();
    let waited = next.lock("s", Duration::from_secs(15)).await.unwrap();
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    next.unlock().await.unwrap();
}

#[tokio::test]
async fn a_lost_lock_fences_the_transaction() {
    let e = env("fence").await;
    let mut s = e.target.session("run-1").await.unwrap();
    s.lock("", Duration::from_secs(5)).await.unwrap();
    // Someone else's view: the lock's lease is gone (expired, revoked).
    let raw = e.raw.clone();
    let leases = raw.leases().await.unwrap();
    let lock_keys = raw
        .range(Keys::prefix(etcd::lock_name(&e.prefix, "")), RangeOptions::default())
        .await
        .unwrap()
        .kvs
        .iter()
        .map(|kv| kv.lease)
        .collect::<Vec<_>>();
    assert_eq!(lock_keys.len(), 1);
    assert!(leases.contains(&lock_keys[0]));
    raw.lease_revoke(lock_keys[0]).await.unwrap();
    let m = script("m10", r#"[{"key":"a","value":"1"}]"#);
    let f = s.apply(&step(&m, "", Direction::Up)).await.unwrap_err();
    assert!(f.error.contains("lock was lost"), "{f:?}");
    assert_eq!(e.get("a").await, None);
    let _ = s.unlock().await;
}

#[tokio::test]
async fn ledger_rows_are_per_connection_and_run() {
    let e = env("rows").await;
    let mut s = e.target.session("run-1").await.unwrap();
    s.apply(&step(&script("m11", r#"[{"key":"a","value":"1"}]"#), "x", Direction::Up)).await.unwrap();
    let mut other = script("m12", r#"[{"key":"b","value":"1"}]"#);
    other.id = "m12".into();
    let mut st = step(&other, "y", Direction::Up);
    st.run_id = "run-2";
    s.apply(&st).await.unwrap();
    assert_eq!(e.target.ledger_rows(None).await.unwrap().len(), 2);
    let r2 = e.target.ledger_rows(Some("run-2")).await.unwrap();
    assert_eq!((r2.len(), r2[0].migration_id.as_str(), r2[0].schema.as_str()), (1, "m12", "y"));

    // A second connection on the same prefix does not see these rows.
    let mut c = ConnectionConfig::new("other_conn", BackendKind::Etcd);
    c.extras.insert("endpoints".into(), bfm_testkit::etcd_endpoints());
    c.extras.insert("prefix".into(), e.prefix.clone());
    assert!(connect(&c).await.unwrap().ledger_rows(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let mut c = ConnectionConfig::new("metadata", BackendKind::Etcd);
    c.extras.insert("endpoints".into(), "127.0.0.1:1".into());
    c.extras.insert("timeout".into(), "300ms".into());
    let t = connect(&c).await.unwrap();
    let e = t.ping().await.unwrap_err().to_string();
    assert!(e.contains("metadata") && e.contains("etcd"), "{e}");
}

#[tokio::test]
async fn an_unreadable_ledger_entry_is_an_error_not_a_pending_migration() {
    let e = env("corrupt").await;
    let mut s = e.target.session("run-1").await.unwrap();
    s.apply(&step(&script("m13", r#"[{"key":"a","value":"1"}]"#), "t", Direction::Up)).await.unwrap();
    let good = e.get("__bfm/ledger/t/m13").await.unwrap();
    assert_eq!(s.ledger("t").await.unwrap().len(), 1);

    // Corrupt JSON: the schema's ledger and the target's rows both refuse to answer.
    e.put("__bfm/ledger/t/m14", "{not json").await;
    let err = s.ledger("t").await.unwrap_err().to_string();
    assert!(err.contains("__bfm/ledger/t/m14") && err.contains("unreadable"), "{err}");
    assert!(e.target.ledger_rows(None).await.is_err());

    // Valid JSON with a timestamp that does not parse.
    let bad_time =
        good.replace(&serde_json::from_str::<serde_json::Value>(&good).unwrap()["applied_at"].as_str().unwrap().to_string(), "yesterday");
    assert_ne!(bad_time, good);
    e.put("__bfm/ledger/t/m14", &bad_time).await;
    let err = s.ledger("t").await.unwrap_err().to_string();
    assert!(err.contains("__bfm/ledger/t/m14"), "{err}");
    assert!(e.target.ledger_rows(Some("run-1")).await.is_err());

    // Once repaired, the ledger reads again.
    e.put("__bfm/ledger/t/m14", &good.replace("m13", "m14")).await;
    assert_eq!(s.ledger("t").await.unwrap().len(), 2);
}
