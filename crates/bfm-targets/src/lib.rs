//! Targets: the databases that migrations run on, behind one small trait.
//!
//! A [`Target`] is one configured connection with its own pool (never a shared mutable backend
//! object). Work on a target happens in a [`Session`]: one pooled connection that runs one
//! schema's chain of steps — it takes the (connection, schema) lock with a bounded, polling wait,
//! prepares the schema, reads the ledger and applies steps.
//!
//! Exactly-once: on transactional targets each step writes its ledger row (or deletes it, for
//! down) in the same transaction as the migration, and the step — `BEGIN`, the script, the ledger
//! write and `COMMIT` — goes to the server in one round trip. The ledger is what the executor
//! trusts under the lock and what the state store is reconciled from after a crash.

mod config;
pub mod etcd;
pub mod greptimedb;
mod ledger;
mod lock;
pub mod mysql;
pub mod postgres;
pub mod sqlite;

pub use config::{ConnectionConfig, PoolSettings, parse_duration, redact_url, truthy};
pub use lock::lock_key;

use async_trait::async_trait;
use bfm_core::{BackendKind, Checksum, Direction};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What a target can do; the executor adapts to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// DDL is transactional: a failed migration leaves nothing behind and the ledger row commits
    /// atomically with it.
    pub transactional_ddl: bool,
    /// Whether the target has namespaces (schemas, databases, key prefixes).
    pub schemas: bool,
}

/// One row of a target's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub migration_id: String,
    pub schema: String,
    pub version: String,
    pub checksum: Checksum,
    pub run_id: String,
    pub applied_at: DateTime<Utc>,
}

/// A step, ready to run: the script is already rendered for its schema.
#[derive(Debug, Clone)]
pub struct StepScript<'a> {
    pub migration_id: &'a str,
    pub schema: &'a str,
    pub version: &'a str,
    pub direction: Direction,
    /// The rendered script.
    pub sql: &'a str,
    /// The rendered script split into statements (used where statements run one by one).
    pub statements: &'a [String],
    /// Run inside one transaction (with the ledger write) where the target allows it.
    pub transactional: bool,
    /// Checksum of the up script (recorded in the ledger).
    pub checksum: &'a Checksum,
    pub run_id: &'a str,
    /// On non-transactional runs, the number of leading statements already applied by an
    /// earlier, failed attempt of a resumable migration.
    pub resume_from: usize,
}

/// A step that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub statements: usize,
}

/// The result of a batch: the first `completed` steps committed; if `failure` is set, the next
/// one failed (and committed nothing); the rest did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub completed: usize,
    pub failure: Option<StepFailure>,
}

/// A step that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub error: String,
    /// 0-based index of the failing statement of the script, if known.
    pub statement_index: Option<usize>,
    pub statement: Option<String>,
    /// Statements that completed (and stayed applied, if `partial`).
    pub statements_done: usize,
    /// Part of the migration may have stayed applied (non-transactional execution).
    pub partial: bool,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.statement_index {
            Some(i) => write!(f, "statement {} failed: {}", i + 1, self.error),
            None => f.write_str(&self.error),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "::1", "[::1]", "/var/run/postgresql"] {
            assert!(super::is_loopback(h), "{h}");
        }
        assert!(!super::is_loopback("db.example.com") && !super::is_loopback("10.0.0.5"));
    }

    #[test]
    fn postgres_urls_for_tools() {
        let mut c = super::ConnectionConfig::new("core", bfm_core::BackendKind::Postgresql);
        c.host = Some("127.0.0.1".into());
        c.username = Some("app".into());
        c.password = Some("p@ss word".into());
        c.database = Some("main".into());
        assert_eq!(super::postgres::database_url(&c).unwrap(), "postgres://app:p%40ss%20word@127.0.0.1:5432/main?sslmode=disable");
        let mut u = super::ConnectionConfig::new("core", bfm_core::BackendKind::Postgresql);
        u.url = Some("postgres://x:s%2Fecret@db.example.com:6543/app".into());
        assert_eq!(super::postgres::database_url(&u).unwrap(), "postgres://x:s%2Fecret@db.example.com:6543/app?sslmode=prefer");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("connection {connection}: {message}")]
    Config { connection: String, message: String },
    #[error("connection {connection}: {source}")]
    Database {
        connection: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("connection {connection}: lock for schema {schema:?} not acquired within {waited:?} (another run holds it)")]
    LockTimeout { connection: String, schema: String, waited: Duration },
    #[error("connection {connection}: {message}")]
    Other { connection: String, message: String },
    /// A ledger row that cannot be read back (a time that is none, a negative checksum
    /// algorithm…). Never replaced by a default: reconciliation trusts the ledger.
    #[error("connection {connection}: ledger {table}, row {key}: column {column} is corrupt: {detail}")]
    CorruptLedger { connection: String, table: String, key: String, column: &'static str, detail: String },
}

impl TargetError {
    pub fn db(connection: &str, source: sqlx::Error) -> TargetError {
        TargetError::Database { connection: connection.to_string(), source }
    }
}

/// One configured connection.
#[async_trait]
pub trait Target: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> BackendKind;
    fn capabilities(&self) -> Capabilities;
    /// A cheap connectivity check with a short timeout (readiness).
    async fn ping(&self) -> Result<(), TargetError>;
    /// A session for one schema's chain of steps, on behalf of run `run_id`.
    async fn session(&self, run_id: &str) -> Result<Box<dyn Session>, TargetError>;
    /// Whether the server is still executing something for `run_id` (a killed client's last
    /// statement may still be running server-side). Targets where work dies with the client
    /// answer `false`.
    async fn busy(&self, run_id: &str) -> Result<bool, TargetError> {
        let _ = run_id;
        Ok(false)
    }
    /// Every ledger row of this target (or only those written by `run_id`).
    async fn ledger_rows(&self, run_id: Option<&str>) -> Result<Vec<LedgerEntry>, TargetError>;
    /// Schemas (tenants) of this target whose name matches a SQL `LIKE` pattern (system
    /// schemas and bfm's own excluded), sorted.
    async fn list_schemas(&self, pattern: &str) -> Result<Vec<String>, TargetError> {
        let _ = pattern;
        Err(TargetError::Other {
            connection: self.name().to_string(),
            message: format!("listing schemas is not supported on {}", self.kind()),
        })
    }
    /// Run a script as it is (a bootstrap script, which must be idempotent), outside bfm's
    /// bookkeeping.
    async fn execute_script(&self, sql: &str) -> Result<(), TargetError> {
        let _ = sql;
        Err(TargetError::Other {
            connection: self.name().to_string(),
            message: format!("running scripts is not supported on {}", self.kind()),
        })
    }
    /// Run a configured query that returns tenant schema names in its first column.
    async fn query_schemas(&self, sql: &str) -> Result<Vec<String>, TargetError> {
        let _ = sql;
        Err(TargetError::Other {
            connection: self.name().to_string(),
            message: format!("tenant queries are not supported on {}", self.kind()),
        })
    }
    async fn close(&self);
}

/// One connection taken from a target's pool, used for one chain.
#[async_trait]
pub trait Session: Send {
    /// Take the lock for `schema` of this connection, polling until `timeout`. Returns the time
    /// spent waiting. The lock lives in the target, so every bfm process sees it; a crashed
    /// holder's lock goes away with its connection (or its lease, on SQLite).
    async fn lock(&mut self, schema: &str, timeout: Duration) -> Result<Duration, TargetError>;
    /// Release the lock. Dropping a locked session also releases it (by closing the connection).
    async fn unlock(&mut self) -> Result<(), TargetError>;
    /// Create the schema if it does not exist (no-op for targets without schemas).
    async fn prepare_schema(&mut self, schema: &str) -> Result<(), TargetError>;
    /// Ledger rows of one schema, by migration id.
    async fn ledger(&mut self, schema: &str) -> Result<HashMap<String, LedgerEntry>, TargetError>;
    async fn schema_exists(&mut self, schema: &str) -> Result<bool, TargetError>;
    /// `table` may be `schema.table`; otherwise it is looked up in `default_schema`.
    async fn table_exists(&mut self, default_schema: &str, table: &str) -> Result<bool, TargetError>;
    /// Run one step; `Err` carries what failed and whether anything stayed applied.
    async fn apply(&mut self, step: &StepScript<'_>) -> Result<StepOutcome, StepFailure>;

    /// How many transactional steps this session can send at once (1: no batching).
    fn batch_limit(&self) -> usize {
        1
    }

    /// Run consecutive transactional steps, each in its own transaction with its ledger row,
    /// stopping at the first failure. Targets that can send them in one round trip do.
    async fn apply_batch(&mut self, steps: &[StepScript<'_>]) -> BatchOutcome {
        for (k, step) in steps.iter().enumerate() {
            if let Err(f) = self.apply(step).await {
                return BatchOutcome { completed: k, failure: Some(f) };
            }
        }
        BatchOutcome { completed: steps.len(), failure: None }
    }
}

/// Open a target for a connection.
pub async fn connect(config: &ConnectionConfig) -> Result<Arc<dyn Target>, TargetError> {
    match config.kind {
        BackendKind::Postgresql => Ok(Arc::new(postgres::PgTarget::new(config)?)),
        BackendKind::Mysql => Ok(Arc::new(mysql::MySqlTarget::new(config)?)),
        BackendKind::Sqlite => Ok(Arc::new(sqlite::SqliteTarget::new(config)?)),
        BackendKind::Greptimedb => Ok(Arc::new(greptimedb::GreptimeTarget::new(config)?)),
        BackendKind::Etcd => Ok(Arc::new(etcd::EtcdTarget::new(config)?)),
    }
}

/// Validate a schema given in a request (CLI flag, HTTP body, gRPC field) for a backend, before
/// anything runs: the same rule everywhere (`^[A-Za-z_][A-Za-z0-9_]{0,62}$`), and on etcd a
/// schema may not name bfm's reserved prefix. Declared schemas (in migration files) are checked
/// when the catalogue is loaded instead.
pub fn validate_request_schema(kind: BackendKind, schema: &str) -> Result<(), String> {
    bfm_core::validate_schema_name(schema)?;
    match kind {
        BackendKind::Etcd => bfm_core::etcd_script::check_schema(schema),
        _ => Ok(()),
    }
}

/// Make sure a rustls crypto provider is installed for the process: bfm uses `ring` everywhere
/// (sqlx, tonic, reqwest). The `bfm` binary installs it at start; this covers library users
/// and tests. Installing twice is harmless.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Whether a host name designates this machine (TLS is off by default there).
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.starts_with('/') || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Split `schema.table` into its parts, defaulting the schema.
pub(crate) fn split_table<'a>(default_schema: &'a str, table: &'a str) -> (&'a str, &'a str) {
    match table.split_once('.') {
        Some((s, t)) => (s, t),
        None => (default_schema, table),
    }
}

/// SQL statements that commit implicitly on MySQL/MariaDB (DDL and friends).
pub(crate) fn commits_implicitly(statement: &str) -> bool {
    let first = statement.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    matches!(
        first.as_str(),
        "CREATE"
            | "ALTER"
            | "DROP"
            | "RENAME"
            | "TRUNCATE"
            | "GRANT"
            | "REVOKE"
            | "LOCK"
            | "UNLOCK"
            | "ANALYZE"
            | "OPTIMIZE"
            | "REPAIR"
            | "INSTALL"
            | "UNINSTALL"
    )
}
