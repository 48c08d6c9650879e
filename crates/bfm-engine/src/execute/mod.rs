//! The executor: runs a plan.
//!
//! Steps are grouped into chains, one per (connection, schema). A chain runs its steps in plan
//! order under that pair's lock; different chains run concurrently, at most `concurrency` per
//! connection. A chain is cut into segments wherever a step depends on a step of another chain:
//! a segment waits for those steps holding nothing (no lock, no connection, no permit), then
//! takes a permit, a connection and the lock and runs to its end. So waiting can never
//! deadlock, whatever the dependency graph.
//!
//! Within a chain the first failure stops the chain; steps that depend on a failed or blocked
//! step are reported as blocked. Under the lock the target's ledger is read and trusted: a step
//! it already records is not run again (exactly-once even when the state store lags behind).
//! State-store writes go through the recorder, off the critical path, except before a
//! non-transactional step, whose "running" mark is stored first so that a crash cannot hide it.
//!
//! The rooms: [`report`] holds what a run hands back (report, step results, progress events),
//! [`chain`] cuts the plan into chains and segments, [`run`] drives them (concurrency, cancel,
//! shutdown, the bookkeeping of outcomes), [`step`] runs the steps of a locked segment (one by
//! one or in batches, requirement checks, rendering), [`record`] turns outcomes into state
//! updates and history rows, and [`error`] names why a step failed or a chain stopped.

mod chain;
mod error;
mod outcome;
mod record;
mod report;
mod run;
mod step;

pub use report::{ProgressEvent, ProgressSink, RunReport, StepOutcomeKind, StepResult};
pub use step::render_step;

use bfm_state::{ExecutionContext, Operation};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// How a run is labelled and recorded.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub context: ExecutionContext,
    /// What started the run (`migrate up`, `POST /api/v1/migrations/up`, …).
    pub command: String,
    pub environment: Option<String>,
    /// History label for down steps: `Down` or `Rollback`.
    pub down_operation: Operation,
    /// Concurrent schemas per connection; default from the configuration, else the pool size.
    pub concurrency: Option<usize>,
    /// Set to stop the run: chains finish their current step, release their locks and report
    /// the rest as not run (a cancelled stream, a shutdown).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl RunOptions {
    pub fn new(context: ExecutionContext, command: &str) -> RunOptions {
        RunOptions {
            context,
            command: command.to_string(),
            environment: None,
            down_operation: Operation::Down,
            concurrency: None,
            cancel: None,
        }
    }
}
