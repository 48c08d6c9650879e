//! How a step ended, as a type: the report's outcome, reason and error, and whether dependants
//! may run, are all derived from it.

use super::error::{Halt, StepError};
use super::report::StepOutcomeKind;
use bfm_core::{Direction, Step};
use std::sync::Arc;

/// What the target's ledger, read under the lock, says about a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerVerdict {
    /// An up step the ledger already records: it is not run again.
    AlreadyApplied,
    /// A down step whose migration the ledger no longer records: nothing to roll back.
    NotApplied,
}

impl LedgerVerdict {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            LedgerVerdict::AlreadyApplied => "already applied in the target (ledger)",
            LedgerVerdict::NotApplied => "not applied in the target (ledger)",
        }
    }
}

/// Where a failure happened, for the reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Taking a permit, a connection or the lock.
    Start,
    PrepareSchema,
    ReadLedger,
    /// The step itself (rendering, requirements, its script).
    Step,
}

/// How a step ended.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    /// The step ran to its end.
    Ran,
    /// The step failed (or its segment could not start).
    Failed { stage: Stage, error: Arc<StepError> },
    /// The ledger already shows the step's effect; the state was brought in line.
    Ledger(LedgerVerdict),
    /// The chain stopped before the step.
    NotRun(Halt),
}

/// Whether dependants of a finished step may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Pending,
    Succeeded,
    /// Failed, blocked or not run: dependants must not run.
    NotDone,
}

impl Ending {
    pub(crate) fn outcome(&self, direction: Direction) -> StepOutcomeKind {
        match (self, direction) {
            (Ending::Ran, Direction::Up) => StepOutcomeKind::Applied,
            (Ending::Ran, Direction::Down) => StepOutcomeKind::RolledBack,
            (Ending::Failed { .. }, _) => StepOutcomeKind::Failed,
            (Ending::Ledger(_) | Ending::NotRun(_), _) => StepOutcomeKind::Skipped,
        }
    }

    /// A step the ledger already shows as done counts as done for dependants.
    pub(crate) fn fate(&self) -> Fate {
        match self {
            Ending::Ran | Ending::Ledger(_) => Fate::Succeeded,
            Ending::Failed { .. } | Ending::NotRun(_) => Fate::NotDone,
        }
    }

    pub(crate) fn reason(&self, step: &Step) -> String {
        match self {
            Ending::Ran | Ending::Failed { stage: Stage::Step, .. } => step.reason.to_string(),
            Ending::Failed { stage: Stage::Start, .. } => "could not start".into(),
            Ending::Failed { stage: Stage::PrepareSchema, .. } => "could not prepare the schema".into(),
            Ending::Failed { stage: Stage::ReadLedger, .. } => "could not read the ledger".into(),
            Ending::Ledger(v) => v.reason().into(),
            Ending::NotRun(halt) => halt.to_string(),
        }
    }

    pub(crate) fn error(&self) -> Option<&StepError> {
        match self {
            Ending::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}
