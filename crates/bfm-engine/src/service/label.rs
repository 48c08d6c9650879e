//! Who started a run, through which surface, with which command — and the hooks a surface may
//! attach to observe or stop it.

use crate::execute::ProgressSink;
use bfm_state::ExecutionContext;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The surface a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Cli,
    Http,
    Grpc,
    AutoMigrate,
    /// A scheduled or queued job.
    Job,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Cli => "cli",
            Surface::Http => "http",
            Surface::Grpc => "grpc",
            Surface::AutoMigrate => "auto_migrate",
            Surface::Job => "job",
        }
    }
}

/// How a run is labelled in the state store: who asked (the execution context), through which
/// surface, and the command (`migrate up`, `POST /api/v1/migrations/up`, `grpc Migrate`, …).
#[derive(Debug, Clone)]
pub struct RunLabel {
    pub context: ExecutionContext,
    pub surface: Surface,
    pub command: String,
}

impl RunLabel {
    pub fn new(surface: Surface, command: impl Into<String>, context: ExecutionContext) -> RunLabel {
        RunLabel { context, surface, command: command.into() }
    }
}

/// What a surface attaches to a run.
#[derive(Clone, Default)]
pub struct RunHooks {
    /// Progress events of the run.
    pub progress: Option<ProgressSink>,
    /// Set to stop the run after the current step of each chain.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl RunHooks {
    pub fn progress(sink: ProgressSink) -> RunHooks {
        RunHooks { progress: Some(sink), cancel: None }
    }
}
