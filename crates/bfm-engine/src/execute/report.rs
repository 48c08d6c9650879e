//! What a run hands back: the report, one result per step, and progress events.

use bfm_core::Direction;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcomeKind {
    Applied,
    RolledBack,
    Failed,
    Skipped,
}

/// What happened to one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// `{schema}_{base}` for per-tenant steps, the base id otherwise.
    pub id: String,
    pub migration_id: String,
    pub schema: String,
    pub connection: String,
    pub backend: String,
    pub version: String,
    pub direction: Direction,
    pub outcome: StepOutcomeKind,
    pub reason: String,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub statement_index: Option<usize>,
    pub statement: Option<String>,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub success: bool,
    /// Display ids, in the order they completed.
    pub applied: Vec<String>,
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
    pub steps: Vec<StepResult>,
    pub duration_ms: u64,
    /// Set when the state store could not be brought up to date (the targets' ledgers are
    /// authoritative; `bfm migrate reconcile` repairs it).
    pub state_warning: Option<String>,
}

/// A progress event: one per step state change.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressEvent {
    pub run_id: String,
    pub step: usize,
    pub total: usize,
    pub id: String,
    pub migration_id: String,
    pub schema: String,
    pub connection: String,
    pub backend: String,
    /// `pending`, `running`, `success`, `failed` or `skipped`.
    pub status: &'static str,
    pub message: String,
    /// 0–100 over the whole plan.
    pub progress: u8,
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub duration_ms: Option<u64>,
}

pub type ProgressSink = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;
