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

use crate::engine::{Engine, EngineError, Prepared};
use bfm_core::sql;
use bfm_core::template::{self, Vars};
use bfm_core::{Direction, Migration, Status, Step};
use bfm_state::{Event, ExecutionContext, HistoryEntry, MigrationRef, Operation, RunRecord, StateUpdate};
use bfm_targets::{LedgerEntry, Session, StepScript, Target};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

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
    /// Append a `skip` history row for every selected step that was already applied.
    pub record_skips: bool,
    /// Set to stop the run: chains finish their current step, release their locks and report
    /// the rest as not run (a cancelled stream, a shutdown).
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl RunOptions {
    pub fn new(context: ExecutionContext, command: &str) -> RunOptions {
        RunOptions {
            context,
            command: command.to_string(),
            environment: None,
            down_operation: Operation::Down,
            concurrency: None,
            record_skips: true,
            cancel: None,
        }
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Pending,
    Succeeded,
    /// Failed, blocked or not run: dependents must not run.
    NotDone,
}

struct Segment {
    steps: Vec<usize>,
    /// Steps of other chains that must have succeeded first.
    waits_for: Vec<usize>,
}

struct Chain {
    connection: String,
    schema: String,
    segments: Vec<Segment>,
}

struct Shared {
    engine: Arc<Engine>,
    steps: Vec<Step>,
    prepared: Prepared,
    options: RunOptions,
    context: Arc<ExecutionContext>,
    run_id: String,
    fates: Vec<watch::Sender<Fate>>,
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
    fn emit(&self, step: usize, status: &'static str, message: String, duration: Option<Duration>) {
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

    fn event(&self, step: usize, op: Operation, state: Option<StateUpdate>, history: Option<HistoryEntry>) -> Event {
        let s = &self.steps[step];
        Event {
            key: format!("{}:{}:{}:{}", self.run_id, op.as_str(), s.migration.id, s.schema),
            migration: MigrationRef::of(&s.migration),
            schema: s.schema.clone(),
            run_id: Some(self.run_id.clone()),
            context: self.context.clone(),
            state,
            history,
        }
    }

    fn operation(&self, step: usize) -> Operation {
        match self.steps[step].direction {
            Direction::Up => Operation::Up,
            Direction::Down => self.options.down_operation,
        }
    }

    /// Record the end of a step: result, fate, counters, progress event.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        step: usize,
        outcome: StepOutcomeKind,
        reason: String,
        elapsed: Duration,
        error: Option<String>,
        index: Option<usize>,
        statement: Option<String>,
    ) {
        let s = &self.steps[step];
        let (counter, status, fate) = match outcome {
            StepOutcomeKind::Applied | StepOutcomeKind::RolledBack => (&self.done, "success", Fate::Succeeded),
            StepOutcomeKind::Failed => (&self.failed, "failed", Fate::NotDone),
            StepOutcomeKind::Skipped => (&self.skipped, "skipped", Fate::NotDone),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        if let Some(o) = self.engine.observer() {
            o.step_finished(&s.migration.connection, &s.migration.backend, outcome, elapsed);
        }
        // A step the target's ledger already shows as done counts as done for dependents.
        let fate = if outcome == StepOutcomeKind::Skipped && reason.ends_with("in the target (ledger)") { Fate::Succeeded } else { fate };
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
                statement_index: index,
                statement,
            });
        }
        if let Ok(mut o) = self.completed_order.lock() {
            o.push(step);
        }
        self.fates[step].send_replace(fate);
        self.emit(step, status, message, Some(elapsed));
    }

    fn block_rest(&self, steps: &[usize], why: &str) {
        for &i in steps {
            if *self.fates[i].borrow() == Fate::Pending {
                self.finish(i, StepOutcomeKind::Skipped, why.to_string(), Duration::ZERO, None, None, None);
            }
        }
    }
}

fn build_chains(steps: &[Step]) -> Vec<Chain> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut by_key: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        let key = (s.migration.connection.clone(), s.schema.clone());
        if !by_key.contains_key(&key) {
            order.push(key.clone());
        }
        by_key.entry(key).or_default().push(i);
    }
    let chain_of: HashMap<usize, usize> = order.iter().enumerate().flat_map(|(c, k)| by_key[k].iter().map(move |&i| (i, c))).collect();
    order
        .iter()
        .enumerate()
        .map(|(c, key)| {
            let mut segments: Vec<Segment> = Vec::new();
            for &i in &by_key[key] {
                let external: Vec<usize> = steps[i].after.iter().copied().filter(|a| chain_of.get(a) != Some(&c)).collect();
                match segments.last_mut() {
                    Some(seg) if external.is_empty() => seg.steps.push(i),
                    _ => segments.push(Segment { steps: vec![i], waits_for: external }),
                }
            }
            Chain { connection: key.0.clone(), schema: key.1.clone(), segments }
        })
        .collect()
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
        let mut skipped: Vec<String> = Vec::new();
        let mut skip_events = Vec::new();
        for s in &prepared.plan.skipped {
            skipped.push(s.display_id());
            if options.record_skips && s.reason == bfm_core::SkipReason::AlreadyApplied {
                let now = Utc::now();
                skip_events.push(Event {
                    key: format!("{run_id}:skip:{}:{}", s.migration.id, s.schema),
                    migration: MigrationRef::of(&s.migration),
                    schema: s.schema.clone(),
                    run_id: Some(run_id.clone()),
                    context: context.clone(),
                    state: None,
                    history: Some(history(Operation::Skip, "skipped", None, None, now, None)),
                });
            }
        }
        let mut errors: Vec<String> = prepared.plan.errors.iter().map(|e| e.to_string()).collect();
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

        let results: Vec<StepResult> = shared.results.lock().map(|r| r.iter().flatten().cloned().collect()).unwrap_or_default();
        let order = shared.completed_order.lock().map(|o| o.clone()).unwrap_or_default();
        let by_step: HashMap<usize, StepResult> = shared
            .results
            .lock()
            .map(|r| r.iter().enumerate().filter_map(|(i, x)| x.clone().map(|x| (i, x))).collect())
            .unwrap_or_default();
        let mut applied = Vec::new();
        for i in order {
            let Some(r) = by_step.get(&i) else { continue };
            match r.outcome {
                StepOutcomeKind::Applied | StepOutcomeKind::RolledBack => applied.push(r.id.clone()),
                StepOutcomeKind::Skipped => skipped.push(r.id.clone()),
                StepOutcomeKind::Failed => errors.push(format!("{}: {}", r.id, r.error.clone().unwrap_or_default())),
            }
        }
        // Steps blocked by a failure are not errors of their own, but the run did not complete.
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

/// The script a step runs, rendered for its schema, and its statements.
pub fn render_step(step: &Step, environment: &str) -> Result<(String, Vec<String>), String> {
    let m = &step.migration;
    let text = match step.direction {
        Direction::Up => m.up.text.clone(),
        Direction::Down => m.down.as_ref().map(|d| d.text.clone()).ok_or_else(|| "no down script".to_string())?,
    };
    let vars = Vars { schema: &step.schema, connection: &m.connection, backend: &m.backend, version: m.version.as_str(), environment };
    let Some(dialect) = m.kind.dialect() else {
        return render_json_step(&text, &vars);
    };
    let rendered = template::render_sql(&text, dialect, &vars).map_err(|e| format!("template: {e}"))?;
    let statements = sql::split(&rendered, dialect).map_err(|e| format!("script: {e}"))?.into_iter().map(|s| s.text).collect();
    Ok((rendered, statements))
}

/// An etcd script: JSON, with values JSON-escaped where they stand; one statement per operation
/// (so a failure can name the operation).
fn render_json_step(text: &str, vars: &Vars<'_>) -> Result<(String, Vec<String>), String> {
    let rendered = template::render_json(text, vars).map_err(|e| format!("template: {e}"))?;
    bfm_core::etcd_script::parse(&rendered).map_err(|e| format!("script: {e}"))?;
    let statements = match serde_json::from_str::<serde_json::Value>(&rendered) {
        Ok(serde_json::Value::Array(items)) => items.iter().map(|op| op.to_string()).collect(),
        // BfM's single `key=value` form.
        _ => vec![rendered.trim().to_string()],
    };
    Ok((rendered, statements))
}

fn history(
    op: Operation,
    status: &str,
    checksum: Option<bfm_core::Checksum>,
    error: Option<String>,
    started: DateTime<Utc>,
    duration: Option<i64>,
) -> HistoryEntry {
    HistoryEntry { checksum, error, started_at: Some(started), duration_ms: duration, ..HistoryEntry::new(op, status) }
}

async fn run_chain(shared: Arc<Shared>, chain: Chain) {
    let all: Vec<usize> = chain.segments.iter().flat_map(|s| s.steps.iter().copied()).collect();
    for (si, segment) in chain.segments.iter().enumerate() {
        // Wait for other chains, holding nothing.
        for &w in &segment.waits_for {
            let mut rx = shared.fates[w].subscribe();
            let fate = match rx.wait_for(|f| *f != Fate::Pending).await {
                Ok(f) => *f,
                Err(_) => Fate::NotDone,
            };
            if fate != Fate::Succeeded {
                let why = format!("blocked by {}", shared.steps[w].display_id());
                let rest: Vec<usize> = chain.segments[si..].iter().flat_map(|s| s.steps.iter().copied()).collect();
                shared.block_rest(&rest, &why);
                return;
            }
        }
        if let Err(why) = run_segment(&shared, &chain, segment).await {
            let rest: Vec<usize> = all.iter().copied().filter(|i| *shared.fates[*i].borrow() == Fate::Pending).collect();
            shared.block_rest(&rest, &why);
            return;
        }
    }
}

/// Run one segment under the chain's lock. `Err(reason)` stops the chain.
async fn run_segment(shared: &Arc<Shared>, chain: &Chain, segment: &Segment) -> Result<(), String> {
    let engine = &shared.engine;
    let fail_all = |message: String| {
        for &i in &segment.steps {
            shared.finish(i, StepOutcomeKind::Failed, "could not start".into(), Duration::ZERO, Some(message.clone()), None, None);
        }
        Err::<(), String>(format!("blocked: {message}"))
    };
    let semaphore = shared.semaphores.get(&chain.connection).cloned().unwrap_or_else(|| Arc::new(Semaphore::new(1)));
    let _permit = match semaphore.acquire_owned().await {
        Ok(p) => p,
        Err(_) => return fail_all("run cancelled".into()),
    };
    let target: Arc<dyn Target> = match engine.target(&chain.connection).await {
        Ok(t) => t,
        Err(e) => return fail_all(e.to_string()),
    };
    let mut session: Box<dyn Session> = match target.session(&shared.run_id).await {
        Ok(s) => s,
        Err(e) => return fail_all(e.to_string()),
    };
    match session.lock(&chain.schema, engine.config.lock_timeout).await {
        Ok(waited) => {
            if let Some(o) = engine.observer() {
                o.lock_acquired(&chain.connection, waited);
            }
        }
        Err(e) => return fail_all(e.to_string()),
    }
    tracing::debug!(connection = %chain.connection, schema = %chain.schema, steps = segment.steps.len(), "segment locked");
    let result = run_locked(shared, chain, segment, target.as_ref(), session.as_mut()).await;
    tracing::debug!(connection = %chain.connection, schema = %chain.schema, "segment done");
    if let Err(e) = session.unlock().await {
        tracing::warn!(error = %e, connection = %chain.connection, schema = %chain.schema, "releasing the lock failed (the connection was closed instead)");
    }
    result
}

async fn run_locked(
    shared: &Arc<Shared>,
    chain: &Chain,
    segment: &Segment,
    target: &dyn Target,
    session: &mut dyn Session,
) -> Result<(), String> {
    let first_direction = shared.steps[segment.steps[0]].direction;
    if first_direction == Direction::Up
        && let Err(e) = session.prepare_schema(&chain.schema).await
    {
        let msg = e.to_string();
        for &i in &segment.steps {
            shared.finish(i, StepOutcomeKind::Failed, "could not prepare the schema".into(), Duration::ZERO, Some(msg.clone()), None, None);
        }
        return Err(format!("blocked: {msg}"));
    }
    let ledger: HashMap<String, LedgerEntry> = match session.ledger(&chain.schema).await {
        Ok(l) => l,
        Err(e) => {
            let msg = e.to_string();
            for &i in &segment.steps {
                shared.finish(
                    i,
                    StepOutcomeKind::Failed,
                    "could not read the ledger".into(),
                    Duration::ZERO,
                    Some(msg.clone()),
                    None,
                    None,
                );
            }
            return Err(format!("blocked: {msg}"));
        }
    };
    let transactional_target = target.capabilities().transactional_ddl;
    let batch_limit = session.batch_limit().max(1);
    let steps = &segment.steps;
    let mut k = 0;
    while k < steps.len() {
        let i = steps[k];
        let step = &shared.steps[i];
        if shared.engine.is_stopping() {
            return Err("not run: bfm is shutting down".into());
        }
        if shared.options.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
            return Err("not run: the run was cancelled".into());
        }
        // Prerequisites inside this chain ran earlier in this task; make sure they succeeded.
        if let Some(&p) = step.after.iter().find(|&&p| *shared.fates[p].borrow() != Fate::Succeeded) {
            return Err(format!("blocked by {}", shared.steps[p].display_id()));
        }
        if batch_limit > 1 && batchable(step, transactional_target, &ledger) {
            // Extend the batch while the next steps qualify and wait only for steps before them.
            let mut end = k + 1;
            while end < steps.len() && end - k < batch_limit {
                let next = &shared.steps[steps[end]];
                let deps_ok = next.after.iter().all(|p| steps[k..end].contains(p) || *shared.fates[*p].borrow() == Fate::Succeeded);
                if !deps_ok || !batchable(next, transactional_target, &ledger) {
                    break;
                }
                end += 1;
            }
            run_batch(shared, &steps[k..end], session).await?;
            k = end;
        } else {
            run_step(shared, i, step, &ledger, transactional_target, session).await?;
            k += 1;
        }
    }
    Ok(())
}

/// Run one step. `Err(reason)` stops the chain.
async fn run_step(
    shared: &Arc<Shared>,
    i: usize,
    step: &Step,
    ledger: &HashMap<String, LedgerEntry>,
    transactional_target: bool,
    session: &mut dyn Session,
) -> Result<(), String> {
    let m: &Migration = &step.migration;
    let started_at = Utc::now();
    let clock = Instant::now();
    let op = shared.operation(i);
    let row = shared.prepared.row(&m.id, &step.schema);

    if skip_by_ledger(shared, i, step, ledger, row, started_at, clock) {
        return Ok(());
    }

    // Render for this schema and split.
    let environment = shared.options.environment.clone().or(shared.engine.config.environment.clone()).unwrap_or_default();
    let (rendered, statements) = match render_step(step, &environment) {
        Ok(r) => r,
        Err(e) => return fail_step(shared, i, op, started_at, clock, e, None, None, 0, false),
    };

    // Requirements that must hold before the step runs.
    if step.direction == Direction::Up
        && let Err(e) = check_requirements(step, session).await
    {
        return fail_step(shared, i, op, started_at, clock, e, None, None, 0, false);
    }

    let transactional = m.transactional && transactional_target;
    let resume_from = match row {
        Some(r) if m.resumable && !transactional && r.status == Status::Pending => {
            (r.statements_done.max(0) as usize).min(statements.len())
        }
        _ => 0,
    };
    if !transactional {
        // Store "running" before starting: if this process dies mid-way, the state says so.
        let ev = shared.event(
            i,
            op,
            Some(StateUpdate {
                status: Status::Running,
                applied_at: None,
                statements_done: resume_from as i64,
                partial: true,
                ..StateUpdate::applied(row.and_then(|r| r.checksum.clone()), None, None, row.is_some_and(|r| r.ledger))
            }),
            None,
        );
        shared.engine.recorder.record(ev);
        if let Err(e) = shared.engine.recorder.flush().await {
            return fail_step(
                shared,
                i,
                op,
                started_at,
                clock,
                format!("not started: the state store must record a non-transactional step before it runs: {e}"),
                None,
                None,
                0,
                false,
            );
        }
    }
    shared.emit(i, "running", format!("running {}", step.display_id()), None);
    if let Some(o) = shared.engine.observer() {
        o.step_started(&m.connection, &m.backend);
    }
    let script = StepScript {
        migration_id: &m.id,
        schema: &step.schema,
        version: m.version.as_str(),
        direction: step.direction,
        sql: &rendered,
        statements: &statements,
        transactional,
        checksum: &m.checksum,
        run_id: &shared.run_id,
        resume_from,
    };
    let result = session.apply(&script).await;
    if let Some(o) = shared.engine.observer() {
        o.step_ran(&m.connection, &m.backend, result.is_ok(), clock.elapsed());
    }
    match result {
        Ok(_) => {
            record_success(shared, i, started_at, clock.elapsed());
            Ok(())
        }
        Err(f) => {
            fail_step(shared, i, op, started_at, clock, f.to_string(), f.statement_index, f.statement.clone(), f.statements_done, f.partial)
        }
    }
}

/// The ledger is authoritative under the lock: a step it already shows as done is not run
/// again; the state is brought in line. Returns whether the step was handled so.
fn skip_by_ledger(
    shared: &Arc<Shared>,
    i: usize,
    step: &Step,
    ledger: &HashMap<String, LedgerEntry>,
    row: Option<&bfm_state::StateRow>,
    started_at: DateTime<Utc>,
    clock: Instant,
) -> bool {
    let m = &step.migration;
    match step.direction {
        Direction::Up => {
            if let Some(entry) = ledger.get(&m.id) {
                let ev = shared.event(
                    i,
                    Operation::Reconcile,
                    Some(StateUpdate::applied(Some(entry.checksum.clone()), Some(entry.applied_at), None, true)),
                    Some(history(
                        Operation::Reconcile,
                        "applied",
                        Some(entry.checksum.clone()),
                        Some("already applied in the target (ledger); state updated".into()),
                        started_at,
                        None,
                    )),
                );
                shared.engine.recorder.record(ev);
                shared.finish(
                    i,
                    StepOutcomeKind::Skipped,
                    "already applied in the target (ledger)".into(),
                    clock.elapsed(),
                    None,
                    None,
                    None,
                );
                return true;
            }
        }
        Direction::Down => {
            if !ledger.contains_key(&m.id) && row.is_some_and(|r| r.ledger) {
                let ev = shared.event(
                    i,
                    Operation::Reconcile,
                    Some(StateUpdate::rolled_back(row.and_then(|r| r.checksum.clone()))),
                    Some(history(
                        Operation::Reconcile,
                        "rolled_back",
                        None,
                        Some("not applied in the target (ledger); state updated".into()),
                        started_at,
                        None,
                    )),
                );
                shared.engine.recorder.record(ev);
                shared.finish(i, StepOutcomeKind::Skipped, "not applied in the target (ledger)".into(), clock.elapsed(), None, None, None);
                return true;
            }
        }
    }

    false
}

/// A step that ran: its state, its history row, its result.
fn record_success(shared: &Arc<Shared>, i: usize, started_at: DateTime<Utc>, elapsed: Duration) {
    let step = &shared.steps[i];
    let m = &step.migration;
    let op = shared.operation(i);
    let duration = elapsed.as_millis() as i64;
    let (state, hist, outcome) = match step.direction {
        Direction::Up => (
            StateUpdate::applied(Some(m.checksum.clone()), Some(Utc::now()), Some(duration), true),
            history(op, "applied", Some(m.checksum.clone()), None, started_at, Some(duration)),
            StepOutcomeKind::Applied,
        ),
        Direction::Down => (
            StateUpdate::rolled_back(Some(m.checksum.clone())),
            history(op, "rolled_back", None, None, started_at, Some(duration)),
            StepOutcomeKind::RolledBack,
        ),
    };
    shared.engine.recorder.record(shared.event(i, op, Some(state), Some(hist)));
    shared.finish(i, outcome, step.reason.to_string(), elapsed, None, None, None);
}

/// Whether a step can travel in a batch: transactional on a transactional target, nothing to
/// check against the target first.
fn batchable(step: &Step, transactional_target: bool, ledger: &HashMap<String, LedgerEntry>) -> bool {
    let m = &step.migration;
    let in_ledger = ledger.contains_key(&m.id);
    transactional_target
        && m.transactional
        && m.requires_tables.is_empty()
        && m.requires_schemas.is_empty()
        && m.structured_dependencies.iter().all(|d| d.requires_table.is_none() && d.requires_schema.is_none())
        && match step.direction {
            Direction::Up => !in_ledger,
            Direction::Down => in_ledger,
        }
}

/// Consecutive transactional steps of a chain, sent together: each keeps its own transaction and
/// its own ledger row, and the target stops at the first failure, so the outcome is the same as
/// one by one — without a round trip per step.
async fn run_batch(shared: &Arc<Shared>, batch: &[usize], session: &mut dyn Session) -> Result<(), String> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let environment = shared.options.environment.clone().or(shared.engine.config.environment.clone()).unwrap_or_default();
    let mut rendered = Vec::with_capacity(batch.len());
    for &i in batch {
        match render_step(&shared.steps[i], &environment) {
            Ok(r) => rendered.push(r),
            Err(e) => {
                // Run what rendered; this step then fails on its own.
                if !rendered.is_empty() {
                    Box::pin(run_batch(shared, &batch[..rendered.len()], session)).await?;
                }
                let op = shared.operation(i);
                return fail_step(shared, i, op, started_at, clock, e, None, None, 0, false);
            }
        }
    }
    let scripts: Vec<StepScript<'_>> = batch
        .iter()
        .zip(&rendered)
        .map(|(&i, (sql, statements))| {
            let step = &shared.steps[i];
            let m = &step.migration;
            StepScript {
                migration_id: &m.id,
                schema: &step.schema,
                version: m.version.as_str(),
                direction: step.direction,
                sql,
                statements,
                transactional: true,
                checksum: &m.checksum,
                run_id: &shared.run_id,
                resume_from: 0,
            }
        })
        .collect();
    for &i in batch {
        let s = &shared.steps[i];
        shared.emit(i, "running", format!("running {}", s.display_id()), None);
        if let Some(o) = shared.engine.observer() {
            o.step_started(&s.migration.connection, &s.migration.backend);
        }
    }
    let outcome = session.apply_batch(&scripts).await;
    // Durations inside one round trip are not separable: each step gets its share.
    let share = clock.elapsed() / batch.len().max(1) as u32;
    for (k, &i) in batch.iter().enumerate() {
        let s = &shared.steps[i];
        if let Some(o) = shared.engine.observer() {
            o.step_ran(&s.migration.connection, &s.migration.backend, k < outcome.completed, share);
        }
        if k < outcome.completed {
            record_success(shared, i, started_at, share);
        }
    }
    match outcome.failure {
        None => Ok(()),
        Some(f) => {
            let i = batch[outcome.completed.min(batch.len() - 1)];
            let op = shared.operation(i);
            fail_step(shared, i, op, started_at, clock, f.to_string(), f.statement_index, f.statement.clone(), f.statements_done, f.partial)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fail_step(
    shared: &Arc<Shared>,
    i: usize,
    op: Operation,
    started_at: DateTime<Utc>,
    clock: Instant,
    error: String,
    index: Option<usize>,
    statement: Option<String>,
    done: usize,
    partial: bool,
) -> Result<(), String> {
    let step = &shared.steps[i];
    let duration = clock.elapsed().as_millis() as i64;
    let row = shared.prepared.row(&step.migration.id, &step.schema);
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
            ..StateUpdate::failed(checksum, error.clone(), row.is_some_and(|r| r.ledger))
        })
    };
    let mut h = history(op, "failed", Some(step.migration.checksum.clone()), Some(error.clone()), started_at, Some(duration));
    h.failed_statement = statement.clone();
    h.failed_statement_index = index.map(|x| x as i64);
    shared.engine.recorder.record(shared.event(i, op, state, Some(h)));
    shared.finish(i, StepOutcomeKind::Failed, step.reason.to_string(), clock.elapsed(), Some(error.clone()), index, statement);
    Err(format!("blocked by failure of {}", step.display_id()))
}

/// `requires_table` / `requires_schema` of the migration and of its structured dependencies,
/// checked for real against the target.
async fn check_requirements(step: &Step, session: &mut dyn Session) -> Result<(), String> {
    let m = &step.migration;
    let mut schemas: Vec<String> = m.requires_schemas.clone();
    let mut tables: Vec<(String, String)> = m.requires_tables.iter().map(|t| (step.schema.clone(), t.clone())).collect();
    for dep in &m.structured_dependencies {
        if let Some(s) = &dep.requires_schema {
            schemas.push(s.clone());
        }
        if let Some(t) = &dep.requires_table {
            let default = dep.requires_schema.clone().or(dep.schema.clone()).unwrap_or_else(|| step.schema.clone());
            tables.push((default, t.clone()));
        }
    }
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in &schemas {
        match session.schema_exists(s).await {
            Ok(true) => {}
            Ok(false) => missing.entry("schema").or_default().push(s.clone()),
            Err(e) => return Err(format!("checking required schema {s}: {e}")),
        }
    }
    for (schema, t) in &tables {
        match session.table_exists(schema, t).await {
            Ok(true) => {}
            Ok(false) => missing.entry("table").or_default().push(if t.contains('.') || schema.is_empty() {
                t.clone()
            } else {
                format!("{schema}.{t}")
            }),
            Err(e) => return Err(format!("checking required table {t}: {e}")),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "requirements not met: {}",
            missing.iter().map(|(k, v)| format!("required {k}(s) missing: {}", v.join(", "))).collect::<Vec<_>>().join("; ")
        ))
    }
}
