//! Outcomes turned into state-store writes: state updates and history rows, sent through the
//! recorder.

use super::error::StepError;
use super::outcome::{Ending, LedgerVerdict, Stage};
use super::run::Shared;
use bfm_core::{Direction, SkipReason, Skipped, Status};
use bfm_state::{Event, ExecutionContext, HistoryEntry, MigrationRef, Operation, StateRow, StateUpdate};
use bfm_targets::LedgerEntry;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) fn history(
    op: Operation,
    status: &str,
    checksum: Option<bfm_core::Checksum>,
    error: Option<String>,
    started: DateTime<Utc>,
    duration: Option<i64>,
) -> HistoryEntry {
    HistoryEntry { checksum, error, started_at: Some(started), duration_ms: duration, ..HistoryEntry::new(op, status) }
}

/// The `skip` history row of a step the planner found already applied.
pub(crate) fn planner_skip(run_id: &str, context: &Arc<ExecutionContext>, s: &Skipped) -> Option<Event> {
    (s.reason == SkipReason::AlreadyApplied).then(|| Event {
        key: format!("{run_id}:skip:{}:{}", s.migration.id, s.schema),
        migration: MigrationRef::of(&s.migration),
        schema: s.schema.clone(),
        run_id: Some(run_id.to_string()),
        context: context.clone(),
        state: None,
        history: Some(history(Operation::Skip, "skipped", None, None, Utc::now(), None)),
    })
}

fn event(shared: &Shared, step: usize, op: Operation, state: Option<StateUpdate>, history: Option<HistoryEntry>) -> Event {
    let s = &shared.steps[step];
    Event {
        key: format!("{}:{}:{}:{}", shared.run_id, op.as_str(), s.migration.id, s.schema),
        migration: MigrationRef::of(&s.migration),
        schema: s.schema.clone(),
        run_id: Some(shared.run_id.clone()),
        context: shared.context.clone(),
        state,
        history,
    }
}

/// The "running" mark of a non-transactional step, stored before it starts.
pub(crate) fn running(shared: &Shared, i: usize, row: Option<&StateRow>, resume_from: usize) -> Event {
    let op = shared.operation(i);
    let state = StateUpdate {
        status: Status::Running,
        applied_at: None,
        statements_done: resume_from as i64,
        partial: true,
        ..StateUpdate::applied(row.and_then(|r| r.checksum.clone()), None, None, row.is_some_and(|r| r.ledger))
    };
    event(shared, i, op, Some(state), None)
}

/// The ledger already records an up step: the state is brought in line and the step ends
/// without running.
pub(crate) fn already_applied(shared: &Shared, i: usize, entry: &LedgerEntry, started_at: DateTime<Utc>, clock: Instant) {
    let verdict = LedgerVerdict::AlreadyApplied;
    let state = StateUpdate::applied(Some(entry.checksum.clone()), Some(entry.applied_at), None, true);
    let hist = history(Operation::Reconcile, "applied", Some(entry.checksum.clone()), Some(reconciled(verdict)), started_at, None);
    shared.engine.recorder.record(event(shared, i, Operation::Reconcile, Some(state), Some(hist)));
    shared.finish(i, Ending::Ledger(verdict), clock.elapsed());
}

/// The ledger no longer records the migration of a down step: the state is brought in line
/// and the step ends without running.
pub(crate) fn not_applied(shared: &Shared, i: usize, row: Option<&StateRow>, started_at: DateTime<Utc>, clock: Instant) {
    let verdict = LedgerVerdict::NotApplied;
    let state = StateUpdate::rolled_back(row.and_then(|r| r.checksum.clone()));
    let hist = history(Operation::Reconcile, "rolled_back", None, Some(reconciled(verdict)), started_at, None);
    shared.engine.recorder.record(event(shared, i, Operation::Reconcile, Some(state), Some(hist)));
    shared.finish(i, Ending::Ledger(verdict), clock.elapsed());
}

fn reconciled(verdict: LedgerVerdict) -> String {
    format!("{}; state updated", verdict.reason())
}

/// A step that ran: its state, its history row, its result.
pub(crate) fn success(shared: &Shared, i: usize, started_at: DateTime<Utc>, elapsed: Duration) {
    let step = &shared.steps[i];
    let m = &step.migration;
    let op = shared.operation(i);
    let duration = elapsed.as_millis() as i64;
    let (state, hist) = match step.direction {
        Direction::Up => (
            StateUpdate::applied(Some(m.checksum.clone()), Some(Utc::now()), Some(duration), true),
            history(op, "applied", Some(m.checksum.clone()), None, started_at, Some(duration)),
        ),
        Direction::Down => {
            (StateUpdate::rolled_back(Some(m.checksum.clone())), history(op, "rolled_back", None, None, started_at, Some(duration)))
        }
    };
    shared.engine.recorder.record(event(shared, i, op, Some(state), Some(hist)));
    shared.finish(i, Ending::Ran, elapsed);
}

/// A step that failed: its state (unless a clean down failure leaves it applied), its history
/// row with the failing statement, its result.
pub(crate) fn failure(shared: &Shared, i: usize, started_at: DateTime<Utc>, clock: Instant, error: StepError) {
    let step = &shared.steps[i];
    let op = shared.operation(i);
    let duration = clock.elapsed().as_millis() as i64;
    let row = shared.prepared.row(&step.migration.id, &step.schema);
    let (done, partial) = match &error {
        StepError::Script(f) => (f.statements_done, f.partial),
        _ => (0, false),
    };
    let (index, statement) = error.statement();
    let message = error.to_string();
    // A down that failed cleanly leaves the migration applied: nothing in the state changes.
    let state = if step.direction == Direction::Down && !partial {
        None
    } else {
        let checksum =
            if step.direction == Direction::Up { Some(step.migration.checksum.clone()) } else { row.and_then(|r| r.checksum.clone()) };
        Some(StateUpdate {
            duration_ms: Some(duration),
            failed_statement: statement.clone(),
            failed_statement_index: index.map(|x| x as i64),
            statements_done: done as i64,
            partial,
            ..StateUpdate::failed(checksum, message.clone(), row.is_some_and(|r| r.ledger))
        })
    };
    let mut h = history(op, "failed", Some(step.migration.checksum.clone()), Some(message), started_at, Some(duration));
    h.failed_statement = statement;
    h.failed_statement_index = index.map(|x| x as i64);
    shared.engine.recorder.record(event(shared, i, op, state, Some(h)));
    shared.finish(i, Ending::Failed { stage: Stage::Step, error: Arc::new(error) }, clock.elapsed());
}
