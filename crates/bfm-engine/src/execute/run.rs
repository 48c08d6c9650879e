//! The run: chains started concurrently under a per-connection cap, waiting for each other's
//! steps holding nothing, stopped by a cancel or a shutdown; and the bookkeeping every step's
//! end goes through (result, fate, counters, progress).

use super::RunOptions;
use super::chain::{Chain, Segment, build_chains};
use super::error::{Halt, StepError};
use super::outcome::{Ending, Fate, Stage};
use super::record;
use super::report::{ProgressEvent, ProgressSink, RunReport, StepOutcomeKind, StepResult};
use super::step::run_locked;
use crate::engine::{Engine, EngineError, Prepared};
use bfm_core::{Direction, Step};
use bfm_state::{ExecutionContext, Operation, RunRecord};
use bfm_targets::{Session, Target};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// What every chain of one run shares.
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    pub(crate) steps: Vec<Step>,
    pub(crate) prepared: Prepared,
    pub(crate) options: RunOptions,
    pub(crate) context: Arc<ExecutionContext>,
    pub(crate) run_id: String,
    pub(crate) fates: Vec<watch::Sender<Fate>>,
    results: std::sync::Mutex<Vec<Option<StepResult>>>,
    completed_order: std::sync::Mutex<Vec<usize>>,
    sink: Option<ProgressSink>,
    /// Held while an event is built and handed to the sink, so that the sink sees events in
    /// the order of the counters (progress never goes backwards) even with concurrent chains.
    emitting: std::sync::Mutex<()>,
    done: AtomicUsize,
    failed: AtomicUsize,
    skipped: AtomicUsize,
    semaphores: HashMap<String, Arc<Semaphore>>,
}

impl Shared {
    pub(crate) fn emit(&self, step: usize, status: &'static str, message: String, duration: Option<Duration>) {
        let Some(sink) = &self.sink else { return };
        let _order = self.emitting.lock().unwrap_or_else(|e| e.into_inner());
        let s = &self.steps[step];
        let total = self.steps.len();
        let (done, failed, skipped) =
            (self.done.load(Ordering::SeqCst), self.failed.load(Ordering::SeqCst), self.skipped.load(Ordering::SeqCst));
        let progress = ((done + failed + skipped) * 100).checked_div(total).unwrap_or(100).min(100) as u8;
        sink(&ProgressEvent {
            run_id: self.run_id.clone(),
            step,
            total,
            id: s.display_id(),
            migration_id: s.migration.id.clone(),
            schema: s.schema.clone(),
            connection: s.migration.connection.clone(),
            backend: s.migration.backend.clone(),
            status,
            message,
            progress,
            done,
            failed,
            skipped,
            duration_ms: duration.map(|d| d.as_millis() as u64),
        });
    }

    pub(crate) fn operation(&self, step: usize) -> Operation {
        match self.steps[step].direction {
            Direction::Up => Operation::Up,
            Direction::Down => self.options.down_operation,
        }
    }

    pub(crate) fn fate(&self, step: usize) -> Fate {
        *self.fates[step].borrow()
    }

    /// Whether the run was asked to stop before its next step.
    pub(crate) fn halted(&self) -> Option<Halt> {
        if self.engine.is_stopping() {
            Some(Halt::ShuttingDown)
        } else if self.options.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
            Some(Halt::Cancelled)
        } else {
            None
        }
    }

    /// Record the end of a step: result, fate, counters, progress event.
    pub(crate) fn finish(&self, step: usize, ending: Ending, elapsed: Duration) {
        let s = &self.steps[step];
        let outcome = ending.outcome(s.direction);
        let (counter, status) = match outcome {
            StepOutcomeKind::Applied | StepOutcomeKind::RolledBack => (&self.done, "success"),
            StepOutcomeKind::Failed => (&self.failed, "failed"),
            StepOutcomeKind::Skipped => (&self.skipped, "skipped"),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        if let Some(o) = self.engine.observer() {
            o.step_finished(&s.migration.connection, &s.migration.backend, outcome, elapsed);
        }
        let reason = ending.reason(s);
        let error = ending.error().map(|e| e.to_string());
        let (statement_index, statement) = ending.error().map(StepError::statement).unwrap_or_default();
        let message = error.clone().unwrap_or_else(|| reason.clone());
        if let Ok(mut r) = self.results.lock() {
            r[step] = Some(StepResult {
                id: s.display_id(),
                migration_id: s.migration.id.clone(),
                schema: s.schema.clone(),
                connection: s.migration.connection.clone(),
                backend: s.migration.backend.clone(),
                version: s.migration.version.to_string(),
                direction: s.direction,
                outcome,
                reason,
                duration_ms: elapsed.as_millis() as u64,
                error,
                statement_index,
                statement,
            });
        }
        if let Ok(mut o) = self.completed_order.lock() {
            o.push(step);
        }
        self.fates[step].send_replace(ending.fate());
        self.emit(step, status, message, Some(elapsed));
    }

    /// Fail every step of a segment that could not start (or get under way) at `stage`.
    pub(crate) fn fail_segment(&self, steps: &[usize], stage: Stage, error: StepError) -> Halt {
        let error = Arc::new(error);
        for &i in steps {
            self.finish(i, Ending::Failed { stage, error: error.clone() }, Duration::ZERO);
        }
        Halt::NotStarted(error)
    }

    fn block_rest(&self, steps: &[usize], halt: &Halt) {
        for &i in steps {
            if self.fate(i) == Fate::Pending {
                self.finish(i, Ending::NotRun(halt.clone()), Duration::ZERO);
            }
        }
    }

    /// The report's lists, in the order steps completed, after the planner's skips and errors.
    fn report_lists(&self, mut skipped: Vec<String>, mut errors: Vec<String>) -> (Vec<StepResult>, Vec<String>, Vec<String>, Vec<String>) {
        let by_step: Vec<Option<StepResult>> = self.results.lock().map(|r| r.clone()).unwrap_or_default();
        let order = self.completed_order.lock().map(|o| o.clone()).unwrap_or_default();
        let mut applied = Vec::new();
        for i in order {
            let Some(Some(r)) = by_step.get(i) else { continue };
            match r.outcome {
                StepOutcomeKind::Applied | StepOutcomeKind::RolledBack => applied.push(r.id.clone()),
                StepOutcomeKind::Skipped => skipped.push(r.id.clone()),
                StepOutcomeKind::Failed => errors.push(format!("{}: {}", r.id, r.error.clone().unwrap_or_default())),
            }
        }
        (by_step.into_iter().flatten().collect(), applied, skipped, errors)
    }
}

impl Engine {
    /// Run a prepared plan.
    pub async fn run(
        self: &Arc<Self>,
        prepared: Prepared,
        options: RunOptions,
        sink: Option<ProgressSink>,
    ) -> Result<RunReport, EngineError> {
        let started = Instant::now();
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let steps = prepared.plan.steps.clone();
        let context = Arc::new(options.context.clone());

        // Skips decided by the planner.
        let skipped: Vec<String> = prepared.plan.skipped.iter().map(|s| s.display_id()).collect();
        let skip_events: Vec<_> = prepared.plan.skipped.iter().filter_map(|s| record::planner_skip(&run_id, &context, s)).collect();
        let errors: Vec<String> = prepared.plan.errors.iter().map(|e| e.to_string()).collect();
        if steps.is_empty() {
            for e in skip_events {
                self.recorder.record(e);
            }
            let state_warning = self.recorder.flush().await.err();
            return Ok(RunReport {
                run_id,
                success: errors.is_empty(),
                applied: Vec::new(),
                skipped,
                errors,
                steps: Vec::new(),
                duration_ms: started.elapsed().as_millis() as u64,
                state_warning,
            });
        }

        let mut connections: Vec<String> = steps.iter().map(|s| s.migration.connection.clone()).collect();
        connections.sort();
        connections.dedup();
        for c in &connections {
            self.ensure_connection(c)?;
        }
        let now = Utc::now();
        self.state
            .start_run(&RunRecord {
                run_id: run_id.clone(),
                command: options.command.clone(),
                host: crate::host_name(),
                pid: std::process::id() as i64,
                executed_by: options.context.executed_by.clone(),
                started_at: now,
                heartbeat_at: now,
                finished_at: None,
                connections: connections.clone(),
            })
            .await?;
        for e in skip_events {
            self.recorder.record(e);
        }
        let heartbeat = {
            let state = self.state.clone();
            let run_id = run_id.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(15));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = state.heartbeat(&run_id).await {
                        tracing::warn!(error = %e, "run heartbeat failed");
                    }
                }
            })
        };

        let cap = options.concurrency.or(self.config.concurrency).unwrap_or(self.config.pool.max_connections as usize).max(1);
        let semaphores = connections.iter().map(|c| (c.clone(), Arc::new(Semaphore::new(cap)))).collect();
        let chains = build_chains(&steps);
        let shared = Arc::new(Shared {
            engine: self.clone(),
            fates: steps.iter().map(|_| watch::channel(Fate::Pending).0).collect(),
            results: std::sync::Mutex::new(vec![None; steps.len()]),
            completed_order: std::sync::Mutex::new(Vec::new()),
            steps,
            prepared,
            context,
            options,
            run_id: run_id.clone(),
            sink,
            emitting: std::sync::Mutex::new(()),
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
            semaphores,
        });
        for i in 0..shared.steps.len() {
            shared.emit(i, "pending", "planned".into(), None);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for chain in chains {
            let shared = shared.clone();
            tasks.spawn(async move { run_chain(shared, chain).await });
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "a chain task ended abnormally");
            }
        }
        heartbeat.abort();
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, steps = shared.steps.len(), "steps finished");

        let state_warning = self.recorder.flush().await.err();
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "state recorded");
        if state_warning.is_none()
            && let Err(e) = self.state.finish_run(&run_id).await
        {
            tracing::warn!(error = %e, "recording the end of the run failed");
        }

        // Steps blocked by a failure are not errors of their own, but the run did not complete.
        let (results, applied, skipped, errors) = shared.report_lists(skipped, errors);
        Ok(RunReport {
            run_id,
            success: errors.is_empty(),
            applied,
            skipped,
            errors,
            steps: results,
            duration_ms: started.elapsed().as_millis() as u64,
            state_warning,
        })
    }
}

async fn run_chain(shared: Arc<Shared>, chain: Chain) {
    for (si, segment) in chain.segments.iter().enumerate() {
        // Wait for other chains, holding nothing.
        for &w in &segment.waits_for {
            let mut rx = shared.fates[w].subscribe();
            let fate = match rx.wait_for(|f| *f != Fate::Pending).await {
                Ok(f) => *f,
                Err(_) => Fate::NotDone,
            };
            if fate != Fate::Succeeded {
                shared.block_rest(&chain.steps_from(si), &Halt::BlockedBy(shared.steps[w].display_id()));
                return;
            }
        }
        if let Err(halt) = run_segment(&shared, &chain, segment).await {
            shared.block_rest(&chain.steps_from(0), &halt);
            return;
        }
    }
}

/// Run one segment under the chain's lock. `Err` stops the chain.
async fn run_segment(shared: &Arc<Shared>, chain: &Chain, segment: &Segment) -> Result<(), Halt> {
    let engine = &shared.engine;
    let fail_all = |error: StepError| Err(shared.fail_segment(&segment.steps, Stage::Start, error));
    let semaphore = shared.semaphores.get(&chain.connection).cloned().unwrap_or_else(|| Arc::new(Semaphore::new(1)));
    let Ok(_permit) = semaphore.acquire_owned().await else {
        return fail_all(StepError::PermitsClosed);
    };
    let target: Arc<dyn Target> = match engine.target(&chain.connection).await {
        Ok(t) => t,
        Err(e) => return fail_all(StepError::Connect(Box::new(e))),
    };
    let mut session: Box<dyn Session> = match target.session(&shared.run_id).await {
        Ok(s) => s,
        Err(e) => return fail_all(StepError::Target(e)),
    };
    match session.lock(&chain.schema, engine.config.lock_timeout).await {
        Ok(waited) => {
            if let Some(o) = engine.observer() {
                o.lock_acquired(&chain.connection, waited);
            }
        }
        Err(e) => return fail_all(StepError::Lock(e)),
    }
    tracing::debug!(connection = %chain.connection, schema = %chain.schema, steps = segment.steps.len(), "segment locked");
    let result = run_locked(shared, chain, segment, target.as_ref(), session.as_mut()).await;
    tracing::debug!(connection = %chain.connection, schema = %chain.schema, "segment done");
    if let Err(e) = session.unlock().await {
        tracing::warn!(error = %e, connection = %chain.connection, schema = %chain.schema, "releasing the lock failed (the connection was closed instead)");
    }
    result
}
