//! What is read back: the rows of bfm's tables as records, and the aggregates built from them.

use bfm_core::{Checksum, Dependency, Status};
use chrono::{DateTime, Utc};
use serde::Serialize;

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

/// How many schemas of a migration are in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    pub migration_id: String,
    pub status: Status,
    pub count: i64,
    pub last_applied_at: Option<DateTime<Utc>>,
    pub last_updated_at: Option<DateTime<Utc>>,
}
