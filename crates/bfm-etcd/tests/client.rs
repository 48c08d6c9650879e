//! The thin client against a real etcd (`BFM_TEST_ETCD_ENDPOINTS`, started by `scripts/test.sh`).
//! Every test works under a key prefix of its own.

use bfm_etcd::{Client, Code, Compare, CompareOp, ConnectOptions, Error, Keys, RangeOptions, Txn, TxnOp, TxnOpResponse};
use std::time::{Duration, Instant};

async fn client() -> Client {
    let endpoints: Vec<String> = bfm_testkit::etcd_endpoints().split(',').map(str::to_string).collect();
    Client::connect(&endpoints, &ConnectOptions::new().with_connect_timeout(Duration::from_secs(5))).await.unwrap()
}

async fn value(c: &Client, key: &str) -> Option<String> {
    c.get(key).await.unwrap().map(|kv| String::from_utf8(kv.value).unwrap())
}

#[tokio::test]
async fn a_txn_runs_the_branch_its_compares_choose() {
    let (c, p) = (client().await, bfm_testkit::etcd_prefix("client_txn"));
    let k = format!("{p}k");
    c.put(k.as_str(), "v1").await.unwrap();
    let rev = c.get(k.as_str()).await.unwrap().unwrap().mod_revision;

    // Compares hold: the success branch runs, atomically with the put of a new key.
    let swap = || {
        Txn::new()
            .when([Compare::value(k.as_str(), CompareOp::Equal, "v1"), Compare::create_revision(format!("{p}new"), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k.as_str(), "v2"), TxnOp::put(format!("{p}new"), "n")])
            .or_else([TxnOp::get(Keys::key(k.as_str()), RangeOptions::default())])
    };
    let r = c.txn(swap()).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(r.responses, vec![TxnOpResponse::Put, TxnOpResponse::Put]);
    assert_eq!(value(&c, &k).await.as_deref(), Some("v2"));
    assert_eq!(value(&c, &format!("{p}new")).await.as_deref(), Some("n"));

    // The same compares now fail: the failure branch runs and nothing is written.
    let r = c.txn(swap()).await.unwrap();
    assert!(!r.succeeded);
    match &r.responses[..] {
        [TxnOpResponse::Range(g)] => assert_eq!(g.kvs[0].value, b"v2"),
        other => panic!("{other:?}"),
    }
    assert_eq!(value(&c, &k).await.as_deref(), Some("v2"));

    // Revisions and versions: a stale mod revision fails, the current one holds.
    let stale =
        Txn::new().when([Compare::mod_revision(k.as_str(), CompareOp::Equal, rev)]).and_then([TxnOp::delete(Keys::key(k.as_str()))]);
    assert!(!c.txn(stale).await.unwrap().succeeded);
    let now = c.get(k.as_str()).await.unwrap().unwrap();
    assert_eq!(now.version, 2);
    let current = Txn::new()
        .when([Compare::mod_revision(k.as_str(), CompareOp::Equal, now.mod_revision), Compare::version(k.as_str(), CompareOp::Greater, 1)])
        .and_then([TxnOp::delete(Keys::key(k.as_str()))]);
    let r = c.txn(current).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(r.responses, vec![TxnOpResponse::Delete { deleted: 1 }]);
    assert_eq!(c.get(k.as_str()).await.unwrap(), None);
    c.delete(Keys::prefix(p.as_str())).await.unwrap();
}

#[tokio::test]
async fn prefix_reads_and_deletes_stay_inside_the_prefix() {
    let (c, p) = (client().await, bfm_testkit::etcd_prefix("client_prefix"));
    for k in ["d/a", "d/b", "d/c/e", "dz", "e"] {
        c.put(format!("{p}{k}"), format!("value of {k}")).await.unwrap();
    }
    let d = format!("{p}d/");
    let all = c.range(Keys::prefix(d.as_str()), RangeOptions::default()).await.unwrap();
    let keys: Vec<String> = all.kvs.iter().map(|kv| String::from_utf8(kv.key[p.len()..].to_vec()).unwrap()).collect();
    assert_eq!(keys, ["d/a", "d/b", "d/c/e"]);
    assert_eq!((all.count, all.more), (3, false));
    assert_eq!(all.kvs[2].value, b"value of d/c/e");

    let count = c.range(Keys::prefix(d.as_str()), RangeOptions::count_only()).await.unwrap();
    assert_eq!((count.count, count.kvs.len()), (3, 0));
    let keys_only = c.range(Keys::prefix(d.as_str()), RangeOptions::keys_only()).await.unwrap();
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()) && keys_only.kvs.len() == 3);
    let limited = c.range(Keys::prefix(d.as_str()), RangeOptions { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!((limited.kvs.len(), limited.count, limited.more), (2, 3, true));
    // A half-open range: `[d/b, dz)` holds d/b and d/c/e.
    let r = c.range(Keys::range(format!("{p}d/b"), format!("{p}dz")), RangeOptions::count_only()).await.unwrap();
    assert_eq!(r.count, 2);

    assert_eq!(c.delete(Keys::prefix(d.as_str())).await.unwrap(), 3);
    let left = c.range(Keys::prefix(p.as_str()), RangeOptions::keys_only()).await.unwrap();
    let left: Vec<String> = left.kvs.iter().map(|kv| String::from_utf8(kv.key[p.len()..].to_vec()).unwrap()).collect();
    assert_eq!(left, ["dz", "e"]);
    assert_eq!(c.delete(Keys::key(format!("{p}e"))).await.unwrap(), 1);
    assert_eq!(c.delete(Keys::key(format!("{p}e"))).await.unwrap(), 0);
    c.delete(Keys::prefix(p.as_str())).await.unwrap();
}

#[tokio::test]
async fn leases_expire_are_kept_alive_and_revoked() {
    let (c, p) = (client().await, bfm_testkit::etcd_prefix("client_lease"));

    // Not kept alive: the lease expires and takes its key with it.
    let short = c.lease_grant(2).await.unwrap();
    c.put_with_lease(format!("{p}short"), "x", short).await.unwrap();
    assert!(c.leases().await.unwrap().contains(&short));
    assert!(c.lease_time_to_live(short).await.unwrap() > 0);
    // Kept alive: it outlives the same TTL.
    let kept = c.lease_grant(2).await.unwrap();
    c.put_with_lease(format!("{p}kept"), "y", kept).await.unwrap();
    let mut keeper = c.lease_keep_alive(kept).await.unwrap();
    assert_eq!(keeper.id(), kept);
    let until = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < until {
        assert!(keeper.keep_alive().await.unwrap() > 0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(value(&c, &format!("{p}short")).await, None, "the lease that was not kept alive expired");
    assert_eq!(c.lease_time_to_live(short).await.unwrap(), -1);
    assert_eq!(value(&c, &format!("{p}kept")).await.as_deref(), Some("y"));

    // Revoked: the key goes at once, keeping alive fails, a second revoke is NotFound.
    c.lease_revoke(kept).await.unwrap();
    assert_eq!(value(&c, &format!("{p}kept")).await, None);
    assert!(matches!(keeper.keep_alive().await, Err(Error::LeaseNotFound(id)) if id == kept));
    assert!(!c.leases().await.unwrap().contains(&kept));
    let again = c.lease_revoke(kept).await.unwrap_err();
    assert_eq!(again.code(), Some(Code::NotFound), "{again}");
    assert!(c.lease_keep_alive(kept).await.is_err());
}

#[tokio::test]
async fn a_lock_is_exclusive_until_unlocked() {
    let (c, p) = (client().await, bfm_testkit::etcd_prefix("client_lock"));
    let name = format!("{p}lock");
    let (a, b) = (c.lease_grant(10).await.unwrap(), c.lease_grant(10).await.unwrap());
    let key = c.lock(name.as_str(), a).await.unwrap();
    assert!(key.starts_with(name.as_bytes()), "{key:?}");
    assert!(c.get(key.clone()).await.unwrap().is_some(), "the lock key exists while held");
    // The second owner waits.
    assert!(tokio::time::timeout(Duration::from_millis(400), c.lock(name.as_str(), b)).await.is_err());
    let waiter = {
        let c = c.clone();
        let name = name.clone();
        tokio::spawn(async move { c.lock(name.as_str(), b).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    c.unlock(key.clone()).await.unwrap();
    let key_b = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
    assert_ne!(key_b, key);
    assert!(c.get(key).await.unwrap().is_none());
    // Revoking the owner's lease releases the lock too.
    c.lease_revoke(b).await.unwrap();
    assert!(c.get(key_b).await.unwrap().is_none());
    c.lease_revoke(a).await.unwrap();
}
