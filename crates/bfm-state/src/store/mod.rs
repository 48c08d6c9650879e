//! [`SqlStateStore`]: the one implementation of [`StateStore`], for SQLite, PostgreSQL and
//! MySQL. Each job has its module:
//! * `dialect` — what differs between the three in SQL text (placeholders, types, upserts,
//!   quoting, qualified table names);
//! * `connect` — the pool: URL or fields, options, creating a missing database;
//! * `schema` — what each version of bfm's tables adds; `upgrade` — taking a store there, once,
//!   under a lock;
//! * `decode` — rows to records, corrupt values as errors;
//! * `read` and `write` — the queries.
//!
//! A method's body is expanded once per backend by `on_pool!`, so types are checked per driver.

use crate::{
    CatalogRow, Event, HistoryFilter, HistoryRow, Result, RunRecord, StateBackend, StateFilter, StateRow, StateStore, StatusCount,
    SyncReport,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dialect::Dialect;
use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

enum DbPool {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

/// Expand `$body` once per backend with `$p` bound to that backend's pool.
macro_rules! on_pool {
    ($self:expr, $p:ident => $body:expr) => {
        match &$self.pool {
            DbPool::Pg($p) => $body,
            DbPool::My($p) => $body,
            DbPool::Lite($p) => $body,
        }
    };
}

#[macro_use]
mod decode;
mod connect;
mod dialect;
mod read;
mod schema;
mod upgrade;
mod write;

pub struct SqlStateStore {
    dialect: Dialect,
    pool: DbPool,
}

#[async_trait]
impl StateStore for SqlStateStore {
    fn backend(&self) -> StateBackend {
        self.dialect.backend()
    }

    async fn migrate(&self) -> Result<()> {
        self.upgrade().await
    }

    async fn ping(&self) -> Result<()> {
        self.ping_pool().await
    }

    async fn write(&self, events: &[Event]) -> Result<()> {
        self.write_events(events).await
    }

    async fn snapshot(&self, connections: Option<&[String]>) -> Result<Vec<StateRow>> {
        self.read_snapshot(connections).await
    }

    async fn states(&self, filter: &StateFilter) -> Result<Vec<StateRow>> {
        self.read_states(filter).await
    }

    async fn status_counts(&self, migration_ids: Option<&[String]>) -> Result<Vec<StatusCount>> {
        self.read_status_counts(migration_ids).await
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRow>> {
        self.read_history(filter).await
    }

    async fn sync_catalog(&self, rows: &[CatalogRow]) -> Result<SyncReport> {
        self.write_catalog(rows).await
    }

    async fn catalog(&self) -> Result<Vec<CatalogRow>> {
        self.read_catalog(false).await
    }

    async fn missing_catalog(&self) -> Result<Vec<CatalogRow>> {
        self.read_catalog(true).await
    }

    async fn start_run(&self, run: &RunRecord) -> Result<()> {
        self.insert_run(run).await
    }

    async fn heartbeat(&self, run_id: &str) -> Result<()> {
        self.beat(run_id).await
    }

    async fn finish_run(&self, run_id: &str) -> Result<()> {
        self.end_run(run_id).await
    }

    async fn open_runs(&self) -> Result<Vec<RunRecord>> {
        self.read_open_runs().await
    }

    async fn save_schema_snapshot(&self, connection: &str, fingerprint: &str, taken_at: DateTime<Utc>, snapshot_json: &str) -> Result<()> {
        self.write_schema_snapshot(connection, fingerprint, taken_at, snapshot_json).await
    }

    async fn schema_snapshot(&self, connection: &str) -> Result<Option<String>> {
        self.read_schema_snapshot(connection).await
    }

    async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}
