//! The state store: the record of what ran where, when, by whom, how long, and why it failed.
//!
//! Keyed by (migration id, schema) — never by parsing ids. Three tables and a view:
//! * `bfm_state` — the current status of every (migration, schema);
//! * `bfm_history` — append-only: every up, down, rollback, skip, failure, retry, checksum
//!   acceptance and reconciliation, with `executed_by`, `execution_method` and
//!   `execution_context`;
//! * `bfm_catalog` — the migrations known from disk (a migration that disappears is marked
//!   missing, its history is kept);
//! * `bfm_runs` — one row per run, with a heartbeat, so that runs interrupted by a crash are
//!   found and reconciled from the targets' ledgers;
//! * the view `bfm_migrations` answers "what ran where":
//!   `SELECT * FROM bfm_migrations ORDER BY applied_at DESC`.
//!
//! The same code serves SQLite (the embedded default), PostgreSQL and MySQL/MariaDB.

mod recorder;
mod schema;
mod store;

pub use recorder::Recorder;
pub use store::SqlStateStore;

use async_trait::async_trait;
use bfm_core::{Checksum, Dependency, Status};
use bfm_targets::ConnectionConfig;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

/// Which database holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    Sqlite,
    Postgresql,
    Mysql,
}

impl StateBackend {
    pub fn parse(s: &str) -> Option<StateBackend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite3" => Some(StateBackend::Sqlite),
            "postgresql" | "postgres" | "pg" => Some(StateBackend::Postgresql),
            "mysql" | "mariadb" => Some(StateBackend::Mysql),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateBackend::Sqlite => "sqlite",
            StateBackend::Postgresql => "postgresql",
            StateBackend::Mysql => "mysql",
        }
    }
}

/// Where the state lives. The connection settings reuse the target connection type.
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub backend: StateBackend,
    pub connection: ConnectionConfig,
    /// PostgreSQL schema for bfm's tables (`BFM_STATE_SCHEMA`, default `public`).
    pub schema: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("state store: {0}")]
    Config(String),
    #[error("state store: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StateError>;

/// What kind of event a history row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Up,
    Down,
    Rollback,
    Skip,
    Retry,
    AcceptChecksum,
    Reconcile,
    /// A declarative schema apply.
    SchemaApply,
    /// A migration adopted as applied without running (`bfm baseline`).
    Baseline,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Up => "up",
            Operation::Down => "down",
            Operation::Rollback => "rollback",
            Operation::Skip => "skip",
            Operation::Retry => "retry",
            Operation::AcceptChecksum => "accept_checksum",
            Operation::Reconcile => "reconcile",
            Operation::SchemaApply => "schema_apply",
            Operation::Baseline => "baseline",
        }
    }
}

/// The migration an event is about (denormalised so history survives catalogue changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationRef {
    pub id: String,
    pub version: String,
    pub name: String,
    pub connection: String,
    pub backend: String,
}

impl MigrationRef {
    pub fn of(m: &bfm_core::Migration) -> MigrationRef {
        MigrationRef {
            id: m.id.clone(),
            version: m.version.to_string(),
            name: m.name.clone(),
            connection: m.connection.clone(),
            backend: m.backend.clone(),
        }
    }
}

/// Who ran something, how, and in what context (BfM's three history columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionContext {
    pub executed_by: String,
    pub execution_method: String,
    /// A JSON object, as text.
    pub execution_context: String,
}

/// The new current state of a (migration, schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUpdate {
    pub status: Status,
    pub checksum: Option<Checksum>,
    pub applied_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub failed_statement: Option<String>,
    pub failed_statement_index: Option<i64>,
    pub statements_done: i64,
    pub partial: bool,
    /// The target's ledger records this state (so it can be reconciled from it).
    pub ledger: bool,
}

impl StateUpdate {
    /// Applied (with the checksum of what ran).
    pub fn applied(checksum: Option<Checksum>, applied_at: Option<DateTime<Utc>>, duration_ms: Option<i64>, ledger: bool) -> StateUpdate {
        StateUpdate {
            status: Status::Applied,
            checksum,
            applied_at,
            duration_ms,
            error: None,
            failed_statement: None,
            failed_statement_index: None,
            statements_done: 0,
            partial: false,
            ledger,
        }
    }

    /// Rolled back (undone in the target, which tracks it in its ledger).
    pub fn rolled_back(checksum: Option<Checksum>) -> StateUpdate {
        StateUpdate { status: Status::RolledBack, applied_at: None, duration_ms: None, ..StateUpdate::applied(checksum, None, None, true) }
    }

    /// Failed with `error`; set the statement fields and `partial` as known.
    pub fn failed(checksum: Option<Checksum>, error: String, ledger: bool) -> StateUpdate {
        StateUpdate { status: Status::Failed, error: Some(error), ..StateUpdate::applied(checksum, None, None, ledger) }
    }
}

/// One history row to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub operation: Operation,
    /// `applied`, `failed`, `rolled_back`, `skipped`, `pending`.
    pub status: String,
    pub checksum: Option<Checksum>,
    pub error: Option<String>,
    pub failed_statement: Option<String>,
    pub failed_statement_index: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: Option<i64>,
}

impl HistoryEntry {
    /// A row that ends now; set the optional fields as known.
    pub fn new(operation: Operation, status: &str) -> HistoryEntry {
        HistoryEntry {
            operation,
            status: status.to_string(),
            checksum: None,
            error: None,
            failed_statement: None,
            failed_statement_index: None,
            started_at: None,
            finished_at: Utc::now(),
            duration_ms: None,
        }
    }
}

/// A state transition and/or a history row, written atomically.
#[derive(Debug, Clone)]
pub struct Event {
    /// Unique per history row; writing the same key twice stores it once (reconciliation and
    /// the writer may race).
    pub key: String,
    pub migration: MigrationRef,
    pub schema: String,
    pub run_id: Option<String>,
    pub context: Arc<ExecutionContext>,
    pub state: Option<StateUpdate>,
    pub history: Option<HistoryEntry>,
}

/// The current state of one (migration, schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateRow {
    pub migration_id: String,
    pub schema: String,
    pub version: String,
    pub name: String,
    pub connection: String,
    pub backend: String,
    pub status: Status,
    pub checksum: Option<Checksum>,
    pub applied_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub failed_statement: Option<String>,
    pub failed_statement_index: Option<i64>,
    pub statements_done: i64,
    pub partial: bool,
    pub ledger: bool,
    pub run_id: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub migration_id: String,
    pub schema: String,
    pub version: String,
    pub connection: String,
    pub backend: String,
    pub operation: String,
    pub status: String,
    pub checksum: Option<String>,
    pub error: Option<String>,
    pub failed_statement: Option<String>,
    pub failed_statement_index: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: Option<i64>,
    pub executed_by: String,
    pub execution_method: String,
    pub execution_context: String,
    pub run_id: Option<String>,
}

/// A run: one `bfm migrate …` invocation or one server request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub command: String,
    pub host: String,
    pub pid: i64,
    pub executed_by: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub connections: Vec<String>,
}

/// A migration as the catalogue on disk describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogRow {
    pub migration_id: String,
    pub version: String,
    pub name: String,
    pub connection: String,
    pub backend: String,
    pub declared_schema: Option<String>,
    pub checksum: Checksum,
    pub up_file: String,
    pub down_file: Option<String>,
    pub dependencies: Vec<String>,
    pub structured_dependencies: Vec<Dependency>,
    pub tags: Vec<String>,
    pub present: bool,
    pub first_seen_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CatalogRow {
    pub fn of(m: &bfm_core::Migration, now: DateTime<Utc>) -> CatalogRow {
        CatalogRow {
            migration_id: m.id.clone(),
            version: m.version.to_string(),
            name: m.name.clone(),
            connection: m.connection.clone(),
            backend: m.backend.clone(),
            declared_schema: m.schema.clone(),
            checksum: m.checksum.clone(),
            up_file: m.up.path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
            down_file: m.down.as_ref().and_then(|d| d.path.file_name()).map(|f| f.to_string_lossy().to_string()),
            dependencies: m.dependencies.clone(),
            structured_dependencies: m.structured_dependencies.clone(),
            tags: m.tags.clone(),
            present: true,
            first_seen_at: now,
            updated_at: now,
        }
    }
}

/// What a catalogue sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    /// Known before, no longer on disk (kept, marked missing).
    pub missing: Vec<String>,
    pub total: i64,
}

#[derive(Debug, Clone, Default)]
pub struct StateFilter {
    pub migration_id: Option<String>,
    /// Any of these migrations (empty: no restriction).
    pub migration_ids: Vec<String>,
    pub schema: Option<String>,
    pub connection: Option<String>,
    pub status: Option<Status>,
    /// Most recently updated first (default: by migration id, then schema).
    pub newest_first: bool,
    pub limit: Option<i64>,
}

/// How many schemas of a migration are in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    pub migration_id: String,
    pub status: Status,
    pub count: i64,
    pub last_applied_at: Option<DateTime<Utc>>,
    pub last_updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub migration_id: Option<String>,
    pub schema: Option<String>,
    pub operation: Option<Operation>,
    /// Newest first; `None` for no limit.
    pub limit: Option<i64>,
}

/// The verbs the rest of bfm needs from a state store.
#[async_trait]
pub trait StateStore: Send + Sync {
    fn backend(&self) -> StateBackend;
    /// Create or upgrade bfm's own tables (versioned; safe to call from many processes).
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
    /// Apply state transitions and append history rows, in one transaction.
    async fn write(&self, events: &[Event]) -> Result<()>;
    /// Current state rows, optionally for some connections only.
    async fn snapshot(&self, connections: Option<&[String]>) -> Result<Vec<StateRow>>;
    async fn states(&self, filter: &StateFilter) -> Result<Vec<StateRow>>;
    /// Per migration and status, how many schemas (for lists and aggregate statuses).
    async fn status_counts(&self, migration_ids: Option<&[String]>) -> Result<Vec<StatusCount>>;
    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRow>>;
    /// Record the catalogue on disk: add new migrations, update changed ones, mark vanished
    /// ones missing. Never deletes.
    async fn sync_catalog(&self, rows: &[CatalogRow]) -> Result<SyncReport>;
    async fn catalog(&self) -> Result<Vec<CatalogRow>>;
    /// The recorded migrations that are no longer on disk (`present = false`): cheap next to
    /// [`StateStore::catalog`], which the request paths must not read whole.
    async fn missing_catalog(&self) -> Result<Vec<CatalogRow>>;
    async fn start_run(&self, run: &RunRecord) -> Result<()>;
    async fn heartbeat(&self, run_id: &str) -> Result<()>;
    async fn finish_run(&self, run_id: &str) -> Result<()>;
    /// Runs that started and never finished.
    async fn open_runs(&self) -> Result<Vec<RunRecord>>;
    /// Store the declarative schema snapshot of a connection (JSON), replacing the previous one.
    async fn save_schema_snapshot(&self, connection: &str, fingerprint: &str, taken_at: DateTime<Utc>, snapshot_json: &str) -> Result<()>;
    /// The stored declarative schema snapshot of a connection (JSON).
    async fn schema_snapshot(&self, connection: &str) -> Result<Option<String>>;
    async fn close(&self);
}

/// Open (and migrate) the configured state store.
pub async fn open(config: &StateConfig) -> Result<Arc<dyn StateStore>> {
    let store = SqlStateStore::connect(config).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

/// Build the snapshot the planner needs from state rows.
pub fn to_snapshot(rows: &[StateRow]) -> bfm_core::StateSnapshot {
    let mut s = bfm_core::StateSnapshot::default();
    for r in rows {
        s.insert(&r.migration_id, &r.schema, bfm_core::StateEntry { status: r.status, checksum: r.checksum.clone(), partial: r.partial });
    }
    s
}
