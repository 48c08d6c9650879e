//! bfm's state store: the record of what ran where, when, by whom, how long, and why it failed.
//!
//! The targets' ledgers say what is applied in each schema; this crate keeps everything else
//! that bfm knows about its runs, keyed by (migration id, schema) — never by parsing ids — in
//! one SQL database: SQLite (the embedded default, `.bfm/state.db`), PostgreSQL or
//! MySQL/MariaDB. The tables, their keys and their upgrade versions are described in
//! `docs/state.md`:
//! * `bfm_state` — the current status of every (migration, schema);
//! * `bfm_history` — append-only: every up, down, rollback, skip, failure, retry, checksum
//!   acceptance, reconciliation, schema apply and baseline, with `executed_by`,
//!   `execution_method` and `execution_context`;
//! * `bfm_catalog` — the migrations known from disk (a migration that disappears is marked
//!   missing, its history is kept);
//! * `bfm_runs` — one row per run, with a heartbeat, so that runs interrupted by a crash are
//!   found and reconciled from the targets' ledgers;
//! * `bfm_schema_snapshots` — the declarative schema model of each connection's last apply;
//! * `bfm_meta` — the version of these tables;
//! * the view `bfm_migrations` answers "what ran where":
//!   `SELECT * FROM bfm_migrations ORDER BY applied_at DESC`.
//!
//! # Choosing a store
//! [`StateConfig::backend`] ([`StateBackend`], from `BFM_STATE_BACKEND`) picks the database and
//! [`StateConfig::connection`] says how to reach it (a URL, or host/database fields; for SQLite
//! a file path). [`open`] connects — creating the SQLite file or the PostgreSQL/MySQL database if
//! it does not exist — upgrades the tables to the latest version and returns the store behind
//! the [`StateStore`] trait. There is one implementation, [`SqlStateStore`], for all three.
//!
//! # Corrupt data
//! A stored value that cannot be read back (unparsable JSON, an impossible timestamp, an
//! unknown status, a checksum without its algorithm) is a [`StateError::Corrupt`] naming the
//! table, the row's key and the column — never an empty list, a zero or 1970.
//!
//! # Modules
//! * `config` — [`StateBackend`] and [`StateConfig`];
//! * `error` — [`StateError`];
//! * `event` — what is written: [`Event`], [`StateUpdate`], [`HistoryEntry`] and their parts;
//! * `rows` — what is read: [`StateRow`], [`HistoryRow`], [`CatalogRow`], [`RunRecord`], …;
//! * `filter` — which rows a read returns;
//! * `store` — [`SqlStateStore`]: SQL dialects, connecting, the versioned schema and its
//!   upgrade, row decoding, reads and writes, one submodule each;
//! * `recorder` — [`Recorder`], which writes events in the background, in batches.

mod config;
mod error;
mod event;
mod filter;
mod recorder;
mod rows;
mod store;

pub use config::{StateBackend, StateConfig};
pub use error::{Result, StateError};
pub use event::{Event, ExecutionContext, HistoryEntry, MigrationRef, Operation, StateUpdate};
pub use filter::{HistoryFilter, StateFilter};
pub use recorder::Recorder;
pub use rows::{CatalogRow, HistoryRow, RunRecord, StateRow, StatusCount, SyncReport};
pub use store::SqlStateStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

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
