//! etcd target (etcd v3 API, through bfm's own thin client, `bfm-etcd`).
//!
//! Keys. Every key lives under the connection's prefix (extra `prefix`, default `/`, always
//! ending in `/`): `<prefix><schema>/<key>` for a run in a schema, `<prefix><key>` without one.
//! Keys are relative (no leading `/`, no `.`/`..` segments) and schemas are checked
//! ([`bfm_core::etcd_script::check_schema`]), so a script or a request can never reach outside the
//! prefix. BfM read a schema starting with `/` as an absolute prefix; bfm reads a *declared*
//! schema's leading `/` as relative to the prefix (the catalogue strips it) and rejects a schema
//! that still tries to climb out. `<prefix>__bfm/` is bfm's own: the ledger and the locks.
//!
//! One migration, one transaction. The script's operations become one etcd `Txn`, together with
//! the ledger key `<prefix>__bfm/ledger/<schema>/<migration id>` (written on up, deleted on
//! down): all or nothing, exactly once. Guards are evaluated against a snapshot read just before:
//! `if_absent` skips only its own put when the key exists, and a failing `if_value` fails the
//! migration with nothing changed. The transaction's compares assert that every key a guard
//! looked at is still as read (and that the session still holds its lock); if a concurrent
//! writer changed one in between, the snapshot is read again and the transaction rebuilt.
//!
//! The operations are folded into their net effect first, because etcd refuses a transaction
//! that writes a key twice or puts a key inside a range it deletes: a `delete_prefix` followed by
//! puts under that prefix becomes range deletes around the put keys.
//!
//! Locks: etcd's own lock service (v3lock) on a lease kept alive by the session. The wait is
//! bounded (the lease is revoked when it times out, which also withdraws the waiter); release
//! revokes the lease; a crashed holder's lease expires after `lock_ttl` (extra, default 30 s).

use crate::config::{ConnectionConfig, parse_duration, truthy};
use crate::{Capabilities, LedgerEntry, Session, StepFailure, StepOutcome, StepScript, Target, TargetError};
use async_trait::async_trait;
use bfm_core::etcd_script::{self, EtcdOp, RESERVED_SEGMENT};
use bfm_core::{BackendKind, Checksum, Direction};
use bfm_etcd::{Client, Compare, CompareOp, ConnectOptions, Keys, RangeOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, prefix_end};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// BfM's default dial timeout.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);
/// Attempts at a migration's transaction when concurrent writers keep changing guarded keys.
const TXN_ATTEMPTS: usize = 8;
/// Reads are batched into transactions of at most this many operations (etcd's default
/// `--max-txn-ops` is 128).
const READ_BATCH: usize = 100;

/// Connection settings of an etcd target, resolved from a [`ConnectionConfig`].
#[derive(Clone)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    /// The key prefix, always ending in `/`.
    pub prefix: String,
    pub dial_timeout: Duration,
    pub lock_ttl: Duration,
    pub tls: bool,
    options: ConnectOptions,
}

impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("dial_timeout", &self.dial_timeout)
            .field("lock_ttl", &self.lock_ttl)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Resolve a connection's settings as BfM did: endpoints from the `endpoints` extra (a comma
/// list), else the URL (`etcd://host:port,host2:port`), else `host:port` (port 2379); username
/// and password; TLS when the `tls` or `ssl` extra is true, a `cacert`/`cert` is given, or an
/// endpoint is `https://`; prefix from `prefix`; dial timeout from `timeout` (a Go duration);
/// lease TTL of locks from `lock_ttl`. Extra names are case-insensitive (BfM bug B4 is gone).
pub fn settings(config: &ConnectionConfig) -> Result<EtcdSettings, TargetError> {
    let bad = |message: String| TargetError::Config { connection: config.name.clone(), message };
    let upper = config.name.to_uppercase();
    let mut endpoints: Vec<String> = match (config.extra("endpoints"), &config.url, &config.host) {
        (Some(list), _, _) => list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect(),
        (None, Some(url), _) => {
            let list = url.strip_prefix("etcd://").unwrap_or(url);
            list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect()
        }
        (None, None, Some(host)) => vec![format!("{host}:{}", config.port.unwrap_or(2379))],
        (None, None, None) => Vec::new(),
    };
    if endpoints.is_empty() {
        return Err(bad(format!("no etcd endpoints: set {upper}_ENDPOINTS (host:port, comma separated) or {upper}_DB_HOST")));
    }
    let dial_timeout = match config.extra("timeout") {
        Some(t) => parse_duration(t).ok_or_else(|| bad(format!("{upper}_TIMEOUT: invalid duration {t:?} (e.g. 5s, 500ms)")))?,
        None => DEFAULT_DIAL_TIMEOUT,
    };
    let lock_ttl = match config.extra("lock_ttl") {
        Some(t) => parse_duration(t).ok_or_else(|| bad(format!("{upper}_LOCK_TTL: invalid duration {t:?} (e.g. 30s)")))?,
        None => DEFAULT_LOCK_TTL,
    }
    .max(Duration::from_secs(2));
    let prefix = normalise_prefix(config.extra("prefix").unwrap_or("/"));

    let mut options = ConnectOptions::new().with_connect_timeout(dial_timeout).with_keep_alive(Duration::from_secs(10), dial_timeout);
    if let Some(user) = config.username.as_deref().filter(|u| !u.is_empty()) {
        options = options.with_user(user, config.password.clone().unwrap_or_default());
    }
    let cacert = config.extra("cacert").or(config.extra("ca_cert")).or(config.extra("sslrootcert"));
    let cert = config.extra("cert");
    let key = config.extra("key");
    let tls = truthy(config.extra("tls"))
        || truthy(config.extra("ssl"))
        || cacert.is_some()
        || cert.is_some()
        || endpoints.iter().any(|e| e.starts_with("https://"));
    if tls {
        crate::ensure_crypto_provider();
        let read = |what: &str, path: &str| std::fs::read(path).map_err(|e| bad(format!("cannot read the {what} {path}: {e}")));
        // The system's roots, plus the configured CA.
        let mut t = TlsOptions::new();
        if let Some(ca) = cacert {
            t = t.with_ca_pem(read("CA certificate", ca)?);
        }
        match (cert, key) {
            (Some(c), Some(k)) => t = t.with_identity_pem(read("client certificate", c)?, read("client key", k)?),
            (None, None) => {}
            _ => return Err(bad(format!("{upper}_CERT and {upper}_KEY go together (client certificate and its key)"))),
        }
        options = options.with_tls(t);
        for e in &mut endpoints {
            if e.starts_with("http://") {
                return Err(bad(format!("endpoint {e} is plain http but TLS is on ({upper}_TLS / _SSL / _CACERT)")));
            }
            if !e.starts_with("https://") {
                *e = format!("https://{e}");
            }
        }
    }
    Ok(EtcdSettings { endpoints, prefix, dial_timeout, lock_ttl, tls, options })
}

/// The key prefix as configured, always ending in `/`.
pub fn normalise_prefix(prefix: &str) -> String {
    let p = prefix.trim();
    if p.ends_with('/') { p.to_string() } else { format!("{p}/") }
}

/// Check a schema before it is used for keys (also for schemas that came from a request).
pub fn check_schema(schema: &str) -> Result<(), String> {
    etcd_script::check_schema(schema)
}

/// The key prefix of a schema's data: `<prefix><schema>/`, or the prefix itself.
pub fn schema_prefix(prefix: &str, schema: &str) -> Result<String, String> {
    check_schema(schema)?;
    Ok(if schema.is_empty() { prefix.to_string() } else { format!("{prefix}{schema}/") })
}

/// The full key of a script's key in a schema, refusing anything outside the schema's prefix or
/// inside bfm's reserved area.
pub fn full_key(prefix: &str, schema: &str, key: &str) -> Result<String, String> {
    etcd_script::check_key(key)?;
    let full = format!("{}{key}", schema_prefix(prefix, schema)?);
    if full.starts_with(&reserved(prefix)) {
        return Err(format!("key `{key}` is inside `{RESERVED_SEGMENT}/`, which bfm reserves for its ledger and locks"));
    }
    Ok(full)
}

fn reserved(prefix: &str) -> String {
    format!("{prefix}{RESERVED_SEGMENT}/")
}

/// `<prefix>__bfm/ledger/<schema>/<migration id>`.
pub fn ledger_key(prefix: &str, schema: &str, migration_id: &str) -> String {
    format!("{}ledger/{schema}/{migration_id}", reserved(prefix))
}

/// Name of the (connection, schema) lock for etcd's lock service. `/` in a schema becomes `:`
/// so that the lock of `a` (whose keys are `<name>/<lease>`) never covers the lock of `a/b`.
pub fn lock_name(prefix: &str, schema: &str) -> String {
    format!("{}locks/{}", reserved(prefix), schema.replace('/', ":"))
}

/// The ledger value stored in etcd (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerValue {
    migration_id: String,
    schema: String,
    connection: String,
    version: String,
    checksum: String,
    algorithm: u32,
    run_id: String,
    applied_at: DateTime<Utc>,
}

impl LedgerValue {
    fn entry(self) -> LedgerEntry {
        LedgerEntry {
            migration_id: self.migration_id,
            schema: self.schema,
            version: self.version,
            checksum: Checksum { algorithm: self.algorithm, value: self.checksum },
            run_id: self.run_id,
            applied_at: self.applied_at,
        }
    }
}

/// An operation with its full key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    Put { key: String, value: String, if_absent: bool, if_value: Option<String> },
    Delete { key: String, if_value: Option<String> },
    DeletePrefix { prefix: String },
}

fn resolve(prefix: &str, schema: &str, ops: &[EtcdOp]) -> Result<Vec<Resolved>, (usize, String)> {
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let full = full_key(prefix, schema, op.key()).map_err(|e| (i, e))?;
            Ok(match op {
                EtcdOp::Put { value, if_absent, if_value, .. } => {
                    Resolved::Put { key: full, value: value.clone(), if_absent: *if_absent, if_value: if_value.clone() }
                }
                EtcdOp::Delete { if_value, .. } => Resolved::Delete { key: full, if_value: if_value.clone() },
                EtcdOp::DeletePrefix { .. } => Resolved::DeletePrefix { prefix: full },
            })
        })
        .collect()
}

/// Keys whose current value a guard needs.
fn guarded_keys(ops: &[Resolved]) -> BTreeSet<String> {
    ops.iter()
        .filter_map(|op| match op {
            Resolved::Put { key, if_absent: true, .. } | Resolved::Put { key, if_value: Some(_), .. } => Some(key.clone()),
            Resolved::Delete { key, if_value: Some(_) } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// The net effect of a script on a snapshot, ready to become one transaction.
#[derive(Debug, Default, PartialEq, Eq)]
struct TxnPlan {
    /// Keys a decision depended on: `Some(mod_revision)` if it existed, `None` if it did not.
    compares: BTreeMap<String, Option<i64>>,
    puts: Vec<(String, String)>,
    deletes: Vec<String>,
    /// `[start, end)` ranges to delete.
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Puts skipped by `if_absent`.
    skipped: usize,
}

/// Fold the operations over the snapshot (`key → (value, mod_revision)` for the guarded keys
/// that exist). `Err((index, message))` when an `if_value` guard fails.
fn plan(ops: &[Resolved], snapshot: &HashMap<String, (String, i64)>, reserved_prefix: &str) -> Result<TxnPlan, (usize, String)> {
    let mut overlay: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut deleted: Vec<String> = Vec::new();
    let mut plan = TxnPlan::default();
    for (i, op) in ops.iter().enumerate() {
        // The value a guard sees: the script's own earlier effect, else the snapshot.
        let current = |key: &str, plan: &mut TxnPlan| -> Option<String> {
            if let Some(v) = overlay.get(key) {
                return v.clone();
            }
            if deleted.iter().any(|p| key.starts_with(p.as_str())) {
                return None;
            }
            let s = snapshot.get(key);
            plan.compares.insert(key.to_string(), s.map(|(_, rev)| *rev));
            s.map(|(v, _)| v.clone())
        };
        match op {
            Resolved::Put { key, value, if_absent, if_value } => {
                if *if_absent && current(key, &mut plan).is_some() {
                    plan.skipped += 1;
                    continue;
                }
                if let Some(expected) = if_value {
                    let found = current(key, &mut plan);
                    if found.as_deref() != Some(expected.as_str()) {
                        return Err((i, guard_message(key, expected, found.as_deref())));
                    }
                }
                overlay.insert(key.clone(), Some(value.clone()));
            }
            Resolved::Delete { key, if_value } => {
                if let Some(expected) = if_value {
                    let found = current(key, &mut plan);
                    if found.as_deref() != Some(expected.as_str()) {
                        return Err((i, guard_message(key, expected, found.as_deref())));
                    }
                }
                overlay.insert(key.clone(), None);
            }
            Resolved::DeletePrefix { prefix } => {
                overlay.retain(|k, _| !k.starts_with(prefix.as_str()));
                deleted.push(prefix.clone());
            }
        }
    }
    // Prefixes contained in another deleted prefix add nothing.
    deleted.sort();
    deleted.dedup();
    let outer: Vec<String> = deleted.iter().filter(|p| !deleted.iter().any(|q| q != *p && p.starts_with(q.as_str()))).cloned().collect();
    let reserved_range = (reserved_prefix.as_bytes().to_vec(), prefix_end(reserved_prefix.as_bytes()));
    for p in &outer {
        // Points that survive inside the range: keys put after the delete.
        let mut cuts: Vec<(Vec<u8>, Vec<u8>)> = overlay
            .iter()
            .filter(|(k, v)| v.is_some() && k.starts_with(p.as_str()))
            .map(|(k, _)| {
                let mut next = k.as_bytes().to_vec();
                next.push(0);
                (k.as_bytes().to_vec(), next)
            })
            .collect();
        // bfm's reserved area is never deleted, even by `delete_prefix` of a prefix of it.
        if reserved_prefix.starts_with(p.as_str()) {
            cuts.push(reserved_range.clone());
        }
        cuts.sort();
        let end = prefix_end(p.as_bytes());
        let mut cur = p.as_bytes().to_vec();
        for (a, b) in cuts {
            if cur < a {
                plan.ranges.push((cur.clone(), a.clone()));
            }
            if b > cur {
                cur = b;
            }
        }
        if cur < end || end == [0] {
            plan.ranges.push((cur, end));
        }
    }
    for (k, v) in overlay {
        match v {
            Some(v) => plan.puts.push((k, v)),
            None if !outer.iter().any(|p| k.starts_with(p.as_str())) => plan.deletes.push(k),
            None => {}
        }
    }
    Ok(plan)
}

fn guard_message(key: &str, expected: &str, found: Option<&str>) -> String {
    match found {
        Some(v) => format!("if_value guard failed: key {key} holds {v:?}, expected {expected:?}; nothing was changed"),
        None => format!("if_value guard failed: key {key} does not exist, expected {expected:?}; nothing was changed"),
    }
}

struct Shared {
    name: String,
    settings: EtcdSettings,
    client: OnceCell<Client>,
}

pub struct EtcdTarget {
    shared: Arc<Shared>,
}

impl EtcdTarget {
    pub fn new(config: &ConnectionConfig) -> Result<EtcdTarget, TargetError> {
        let settings = settings(config)?;
        Ok(EtcdTarget { shared: Arc::new(Shared { name: config.name.clone(), settings, client: OnceCell::new() }) })
    }

    pub fn settings(&self) -> &EtcdSettings {
        &self.shared.settings
    }
}

impl Shared {
    fn err(&self, e: impl std::fmt::Display) -> TargetError {
        TargetError::Other { connection: self.name.clone(), message: format!("etcd: {e}") }
    }

    fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    fn bad_schema(&self, message: String) -> TargetError {
        TargetError::Config { connection: self.name.clone(), message }
    }

    /// The client, connected on first use (one per target; clones share the channel).
    async fn client(&self) -> Result<Client, TargetError> {
        let c = self
            .client
            .get_or_try_init(|| async {
                let s = &self.settings;
                match tokio::time::timeout(s.dial_timeout + Duration::from_secs(1), Client::connect(&s.endpoints, &s.options)).await {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(self.err(format!("connecting to {}: {e}", s.endpoints.join(",")))),
                    Err(_) => Err(self.err(format!("connecting to {}: no answer within {:?}", s.endpoints.join(","), s.dial_timeout))),
                }
            })
            .await?;
        Ok(c.clone())
    }

    /// Read keys in as few round trips as etcd allows: `key → (value, mod_revision)` of those
    /// that exist.
    async fn read(&self, client: &Client, keys: &[String]) -> Result<HashMap<String, (String, i64)>, TargetError> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(READ_BATCH) {
            let ops: Vec<TxnOp> = chunk.iter().map(|k| TxnOp::get(Keys::key(k.as_str()), RangeOptions::default())).collect();
            let resp = client.txn(Txn::new().and_then(ops)).await.map_err(|e| self.err(e))?;
            for r in resp.responses {
                if let TxnOpResponse::Range(g) = r {
                    for kv in g.kvs {
                        out.insert(
                            String::from_utf8_lossy(&kv.key).into_owned(),
                            (String::from_utf8_lossy(&kv.value).into_owned(), kv.mod_revision),
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    async fn ledger_under(&self, dir: &str, run_id: Option<&str>, only_schema: Option<&str>) -> Result<Vec<LedgerEntry>, TargetError> {
        let client = self.client().await?;
        let resp = client.range(Keys::prefix(dir), RangeOptions::default()).await.map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for kv in &resp.kvs {
            let key = String::from_utf8_lossy(&kv.key);
            let Some(rest) = key.strip_prefix(dir) else { continue };
            // A schema's directory also lists nested schemas' entries (`a/` holds `a/b/…`).
            if only_schema.is_some() && rest.contains('/') {
                continue;
            }
            // A ledger entry that cannot be read is an error: skipping it would make an applied
            // migration look pending (and run it again).
            let value: LedgerValue = serde_json::from_slice(&kv.value)
                .map_err(|e| self.err(format!("the ledger entry {key} is unreadable (corrupt JSON or timestamp): {e}")))?;
            if value.connection != self.name || run_id.is_some_and(|r| r != value.run_id) {
                continue;
            }
            out.push(value.entry());
        }
        Ok(out)
    }
}

#[async_trait]
impl Target for EtcdTarget {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Etcd
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { transactional_ddl: true, schemas: true }
    }

    async fn ping(&self) -> Result<(), TargetError> {
        let probe = async {
            let client = self.shared.client().await?;
            let key = format!("{}ping", reserved(self.shared.prefix()));
            client.range(Keys::key(key), RangeOptions::count_only()).await.map_err(|e| self.shared.err(e))?;
            Ok(())
        };
        match tokio::time::timeout(self.shared.settings.dial_timeout.max(Duration::from_secs(3)), probe).await {
            Ok(r) => r,
            Err(_) => Err(TargetError::Other { connection: self.shared.name.clone(), message: "etcd: no answer in time".into() }),
        }
    }

    async fn session(&self, _run_id: &str) -> Result<Box<dyn Session>, TargetError> {
        let client = self.shared.client().await?;
        Ok(Box::new(EtcdSession { shared: self.shared.clone(), client, held: None }))
    }

    async fn ledger_rows(&self, run_id: Option<&str>) -> Result<Vec<LedgerEntry>, TargetError> {
        let dir = format!("{}ledger/", reserved(self.shared.prefix()));
        self.shared.ledger_under(&dir, run_id, None).await
    }

    async fn close(&self) {}
}

/// A lock held through etcd's lock service.
struct Held {
    schema: String,
    lease: i64,
    /// The key the lock service created for us; it exists exactly as long as we hold the lock.
    key: Vec<u8>,
    keeper: tokio::task::JoinHandle<()>,
}

pub struct EtcdSession {
    shared: Arc<Shared>,
    client: Client,
    held: Option<Held>,
}

impl Drop for EtcdSession {
    fn drop(&mut self) {
        // Revoking the lease deletes the lock key; if this cannot run, the lease expires.
        if let Some(h) = self.held.take() {
            h.keeper.abort();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let client = self.client.clone();
                handle.spawn(async move {
                    let _ = client.lease_revoke(h.lease).await;
                });
            }
        }
    }
}

/// Keep a lease alive until aborted (or until etcd says it is gone).
fn keep_alive(client: Client, lease: i64, ttl: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut keeper) = client.lease_keep_alive(lease).await else { return };
        let every = (ttl / 3).max(Duration::from_millis(500));
        loop {
            tokio::time::sleep(every).await;
            // An error includes etcd's TTL 0: the lease is gone, there is nothing to keep.
            if keeper.keep_alive().await.is_err() {
                return;
            }
        }
    })
}

impl EtcdSession {
    fn check(&self, schema: &str) -> Result<(), TargetError> {
        check_schema(schema).map_err(|e| self.shared.bad_schema(e))
    }

    fn fail(error: String, index: Option<usize>, step: &StepScript<'_>) -> StepFailure {
        StepFailure {
            error,
            statement: index.and_then(|i| step.statements.get(i).cloned()),
            statement_index: index,
            statements_done: 0,
            partial: false,
        }
    }
}

#[async_trait]
impl Session for EtcdSession {
    async fn lock(&mut self, schema: &str, timeout: Duration) -> Result<Duration, TargetError> {
        self.check(schema)?;
        if self.held.is_some() {
            self.unlock().await?;
        }
        let started = Instant::now();
        let ttl = self.shared.settings.lock_ttl;
        let lease = self.client.lease_grant(ttl.as_secs().max(2) as i64).await.map_err(|e| self.shared.err(format!("lease grant: {e}")))?;
        let keeper = keep_alive(self.client.clone(), lease, ttl);
        let name = lock_name(self.shared.prefix(), schema);
        let attempt = self.client.lock(name, lease);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(key)) => {
                self.held = Some(Held { schema: schema.to_string(), lease, key, keeper });
                Ok(started.elapsed())
            }
            other => {
                // Withdraw: revoking the lease removes our waiting key too.
                keeper.abort();
                let _ = self.client.lease_revoke(lease).await;
                match other {
                    Ok(Err(e)) => Err(self.shared.err(format!("lock: {e}"))),
                    _ => Err(TargetError::LockTimeout {
                        connection: self.shared.name.clone(),
                        schema: schema.to_string(),
                        waited: started.elapsed(),
                    }),
                }
            }
        }
    }

    async fn unlock(&mut self) -> Result<(), TargetError> {
        if let Some(h) = self.held.take() {
            h.keeper.abort();
            let unlocked = self.client.unlock(h.key.clone()).await;
            let revoked = self.client.lease_revoke(h.lease).await;
            if let (Err(e), Err(_)) = (unlocked, revoked) {
                return Err(self.shared.err(format!("releasing the lock of schema {:?}: {e} (its lease expires)", h.schema)));
            }
        }
        Ok(())
    }

    async fn prepare_schema(&mut self, schema: &str) -> Result<(), TargetError> {
        // A key prefix needs no creation.
        self.check(schema)
    }

    async fn ledger(&mut self, schema: &str) -> Result<HashMap<String, LedgerEntry>, TargetError> {
        self.check(schema)?;
        let key = ledger_key(self.shared.prefix(), schema, "");
        let rows = self.shared.ledger_under(&key, None, Some(schema)).await?;
        Ok(rows.into_iter().map(|e| (e.migration_id.clone(), e)).collect())
    }

    async fn schema_exists(&mut self, schema: &str) -> Result<bool, TargetError> {
        if schema.is_empty() {
            return Ok(true);
        }
        let p = schema_prefix(self.shared.prefix(), schema).map_err(|e| self.shared.bad_schema(e))?;
        let resp = self.client.range(Keys::prefix(p), RangeOptions::count_only()).await.map_err(|e| self.shared.err(e))?;
        Ok(resp.count > 0)
    }

    /// etcd has no tables.
    async fn table_exists(&mut self, _default_schema: &str, _table: &str) -> Result<bool, TargetError> {
        Ok(false)
    }

    async fn apply(&mut self, step: &StepScript<'_>) -> Result<StepOutcome, StepFailure> {
        let prefix = self.shared.prefix().to_string();
        let ops = etcd_script::parse(step.sql).map_err(|e| Self::fail(format!("invalid etcd script: {e}"), e.index, step))?;
        let resolved = resolve(&prefix, step.schema, &ops).map_err(|(i, e)| Self::fail(e, Some(i), step))?;
        let n = ops.len();
        let ledger = ledger_key(&prefix, step.schema, step.migration_id);
        let ledger_value = match step.direction {
            Direction::Up => {
                let v = LedgerValue {
                    migration_id: step.migration_id.to_string(),
                    schema: step.schema.to_string(),
                    connection: self.shared.name.clone(),
                    version: step.version.to_string(),
                    checksum: step.checksum.value.clone(),
                    algorithm: step.checksum.algorithm,
                    run_id: step.run_id.to_string(),
                    applied_at: Utc::now(),
                };
                Some(serde_json::to_string(&v).map_err(|e| Self::fail(format!("encoding the ledger entry: {e}"), None, step))?)
            }
            Direction::Down => None,
        };
        let lock_key = self.held.as_ref().map(|h| h.key.clone());
        let mut to_read: Vec<String> = guarded_keys(&resolved).into_iter().collect();
        to_read.push(ledger.clone());
        let lock_key_str = lock_key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned());
        if let Some(k) = &lock_key_str {
            to_read.push(k.clone());
        }

        for attempt in 0..TXN_ATTEMPTS {
            let snapshot = self.shared.read(&self.client, &to_read).await.map_err(|e| Self::fail(e.to_string(), None, step))?;
            if let Some(k) = &lock_key_str
                && !snapshot.contains_key(k)
            {
                return Err(Self::fail("the lock was lost (its lease expired); nothing was changed".into(), None, step));
            }
            if step.direction == Direction::Up && snapshot.contains_key(&ledger) {
                // Already recorded: exactly once.
                return Ok(StepOutcome { statements: 0 });
            }
            let p = plan(&resolved, &snapshot, &reserved(&prefix)).map_err(|(i, e)| Self::fail(e, Some(i), step))?;
            let mut compares: Vec<Compare> = p
                .compares
                .iter()
                .map(|(k, rev)| match rev {
                    Some(r) => Compare::mod_revision(k.as_str(), CompareOp::Equal, *r),
                    None => Compare::create_revision(k.as_str(), CompareOp::Equal, 0),
                })
                .collect();
            if let Some(k) = &lock_key {
                compares.push(Compare::version(k.clone(), CompareOp::Greater, 0));
            }
            let mut txn_ops: Vec<TxnOp> = Vec::with_capacity(p.ranges.len() + p.deletes.len() + p.puts.len() + 1);
            for (start, end) in &p.ranges {
                txn_ops.push(TxnOp::delete(Keys::range(start.clone(), end.clone())));
            }
            for k in &p.deletes {
                txn_ops.push(TxnOp::delete(Keys::key(k.as_str())));
            }
            for (k, v) in &p.puts {
                txn_ops.push(TxnOp::put(k.as_str(), v.as_str()));
            }
            match &ledger_value {
                Some(v) => {
                    compares.push(Compare::create_revision(ledger.as_str(), CompareOp::Equal, 0));
                    txn_ops.push(TxnOp::put(ledger.as_str(), v.as_str()));
                }
                None => txn_ops.push(TxnOp::delete(Keys::key(ledger.as_str()))),
            }
            let resp = self
                .client
                .txn(Txn::new().when(compares).and_then(txn_ops))
                .await
                .map_err(|e| Self::fail(format!("etcd transaction failed, nothing was changed: {e}"), None, step))?;
            if resp.succeeded {
                tracing::debug!(connection = %self.shared.name, migration = step.migration_id, skipped = p.skipped, "etcd transaction committed");
                return Ok(StepOutcome { statements: n });
            }
            // A concurrent writer changed a key we looked at: read again.
            tracing::debug!(connection = %self.shared.name, migration = step.migration_id, attempt, "etcd compare failed, retrying");
            tokio::time::sleep(Duration::from_millis(20 * (attempt as u64 + 1))).await;
        }
        Err(Self::fail(
            format!("guarded keys kept changing under concurrent writers ({TXN_ATTEMPTS} attempts); nothing was changed"),
            None,
            step,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(json: &str) -> Vec<Resolved> {
        resolve("/p/", "s", &etcd_script::parse(json).unwrap()).unwrap()
    }

    #[test]
    fn keys_stay_inside_the_prefix() {
        assert_eq!(full_key("/p/", "s", "a/b").unwrap(), "/p/s/a/b");
        assert_eq!(full_key("/p/", "", "a").unwrap(), "/p/a");
        assert_eq!(full_key("/p/", "meta/ops", "x").unwrap(), "/p/meta/ops/x");
        assert!(full_key("/p/", "", "__bfm/ledger/x").is_err());
        assert!(full_key("/p/", "../q", "a").is_err());
        assert!(full_key("/p/", "/abs", "a").is_err());
        assert!(full_key("/p/", "s", "../a").is_err());
        assert_eq!(normalise_prefix("/meta"), "/meta/");
        assert_eq!(prefix_end(b"/p/a"), b"/p/b".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_ne!(lock_name("/p/", "a"), lock_name("/p/", "a/b"));
        assert!(!lock_name("/p/", "a:b").is_empty());
    }

    #[test]
    fn if_absent_skips_only_its_own_put() {
        let o = ops(r#"[{"key":"a","value":"1","if_absent":true},{"key":"b","value":"2","if_absent":true},{"key":"c","value":"3"}]"#);
        let snap = HashMap::from([("/p/s/a".to_string(), ("old".to_string(), 7))]);
        let p = plan(&o, &snap, "/p/__bfm/").unwrap();
        assert_eq!(p.puts, vec![("/p/s/b".into(), "2".into()), ("/p/s/c".into(), "3".into())]);
        assert_eq!(p.skipped, 1);
        assert_eq!(p.compares, BTreeMap::from([("/p/s/a".to_string(), Some(7)), ("/p/s/b".to_string(), None)]));
    }

    #[test]
    fn if_value_sees_the_script_and_fails_with_its_index() {
        let o = ops(r#"[{"key":"v","value":"2"},{"key":"v","value":"3","if_value":"2"},{"key":"w","value":"x","if_value":"1"}]"#);
        let e = plan(&o, &HashMap::new(), "/p/__bfm/").unwrap_err();
        assert_eq!(e.0, 2);
        assert!(e.1.contains("does not exist"), "{}", e.1);
    }

    #[test]
    fn delete_prefix_then_puts_becomes_ranges_around_the_puts() {
        let o = ops(
            r#"[{"key":"c/x","value":"1"},{"operation":"delete_prefix","key":"c/"},{"key":"c/k","value":"2"},{"operation":"delete","key":"d"}]"#,
        );
        let p = plan(&o, &HashMap::new(), "/p/__bfm/").unwrap();
        assert_eq!(p.puts, vec![("/p/s/c/k".into(), "2".into())]);
        assert_eq!(p.deletes, vec!["/p/s/d".to_string()]);
        assert_eq!(p.ranges, vec![(b"/p/s/c/".to_vec(), b"/p/s/c/k".to_vec()), (b"/p/s/c/k\0".to_vec(), b"/p/s/c0".to_vec())]);
    }

    #[test]
    fn delete_prefix_never_reaches_the_reserved_area() {
        let o = resolve("/p/", "", &etcd_script::parse(r#"[{"operation":"delete_prefix","key":"_"}]"#).unwrap()).unwrap();
        let p = plan(&o, &HashMap::new(), "/p/__bfm/").unwrap();
        assert_eq!(p.ranges, vec![(b"/p/_".to_vec(), b"/p/__bfm/".to_vec()), (b"/p/__bfm0".to_vec(), b"/p/`".to_vec())]);
    }

    #[test]
    fn extras_are_case_insensitive_and_tls_follows_them() {
        let mut c = ConnectionConfig::new("metadata", BackendKind::Etcd);
        // The config loader lower-cases extra names; `extra` looks them up case-insensitively.
        c.extras.insert("endpoints".into(), "a:2379, b:2379".into());
        c.extras.insert("prefix".into(), "/meta".into());
        c.extras.insert("timeout".into(), "750ms".into());
        let s = settings(&c).unwrap();
        assert_eq!(s.endpoints, vec!["a:2379", "b:2379"]);
        assert_eq!((s.prefix.as_str(), s.dial_timeout, s.tls), ("/meta/", Duration::from_millis(750), false));
        assert_eq!(c.extra("ENDPOINTS"), Some("a:2379, b:2379"));

        c.extras.insert("tls".into(), "TRUE".into());
        let s = settings(&c).unwrap();
        assert!(s.tls && s.endpoints[0] == "https://a:2379");

        let mut h = ConnectionConfig::new("m", BackendKind::Etcd);
        h.host = Some("etcd.local".into());
        assert_eq!(settings(&h).unwrap().endpoints, vec!["etcd.local:2379"]);
        assert!(settings(&ConnectionConfig::new("m", BackendKind::Etcd)).is_err());
        h.extras.insert("timeout".into(), "soon".into());
        assert!(settings(&h).unwrap_err().to_string().contains("M_TIMEOUT"));
    }
}
