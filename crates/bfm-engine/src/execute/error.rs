//! Why a step failed and why a chain stopped, as values; their texts are what reports,
//! responses and history show.

use crate::engine::EngineError;
use bfm_core::etcd_script::EtcdScriptError;
use bfm_core::sql::LexError;
use bfm_core::template::TemplateError;
use bfm_targets::{StepFailure, TargetError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A step's script could not be rendered for its schema.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error("no down script")]
    NoDownScript,
    #[error("template: {0}")]
    Template(#[from] TemplateError),
    #[error("script: {0}")]
    Sql(#[from] LexError),
    #[error("script: {0}")]
    Etcd(#[from] EtcdScriptError),
}

/// Why a step (or every step of a segment) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// The connection's target could not be opened.
    #[error(transparent)]
    Connect(Box<EngineError>),
    /// The (connection, schema) lock was not acquired (held by another run past the timeout).
    #[error(transparent)]
    Lock(TargetError),
    /// The target failed outside a step's script (a session, the schema, the ledger).
    #[error(transparent)]
    Target(TargetError),
    /// The script failed in the target, at a statement if the target knows which.
    #[error("{0}")]
    Script(StepFailure),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("checking required schema {schema}: {source}")]
    CheckSchema { schema: String, source: TargetError },
    #[error("checking required table {table}: {source}")]
    CheckTable { table: String, source: TargetError },
    #[error("requirements not met: {}", .0.iter().map(|(k, v)| format!("required {k}(s) missing: {}", v.join(", "))).collect::<Vec<_>>().join("; "))]
    RequirementsNotMet(Missing),
    /// A non-transactional step must not start before the state store knows it is running.
    #[error("not started: the state store must record a non-transactional step before it runs: {0}")]
    NotRecorded(String),
    /// The connection's permits were closed under the waiting segment.
    #[error("run cancelled")]
    PermitsClosed,
}

/// Missing requirements by kind (`schema`, `table`), in the order they were checked.
pub(crate) type Missing = BTreeMap<&'static str, Vec<String>>;

impl StepError {
    /// The failing statement (0-based index and text), where the target named it.
    pub(crate) fn statement(&self) -> (Option<usize>, Option<String>) {
        match self {
            StepError::Script(f) => (f.statement_index, f.statement.clone()),
            _ => (None, None),
        }
    }
}

/// Why a chain stopped; the text is the reason given for each of its steps that did not run.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Halt {
    /// A step of the chain failed (by its display id).
    #[error("blocked by failure of {0}")]
    FailureOf(String),
    /// A step this one depends on did not succeed (by its display id).
    #[error("blocked by {0}")]
    BlockedBy(String),
    /// A segment could not start (connection, lock, schema or ledger).
    #[error("blocked: {0}")]
    NotStarted(Arc<StepError>),
    #[error("not run: the run was cancelled")]
    Cancelled,
    #[error("not run: bfm is shutting down")]
    ShuttingDown,
}
