//! What is written: one event is a state transition and/or a history row about one
//! (migration, schema), with who ran it and how.

use bfm_core::{Checksum, Status};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

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
