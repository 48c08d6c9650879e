//! An in-memory [`Target`] for executor tests: a ledger, schemas and tables in memory, scripted
//! behaviour per migration or per statement (fail, sleep, block until released), a lock that
//! someone else can hold, and a log of every call, statement and transaction.
//!
//! Nothing here parses SQL beyond `CREATE TABLE [IF NOT EXISTS] name`, which adds the table so
//! that `requires-table` checks can see it.

use async_trait::async_trait;
use bfm_core::{BackendKind, Direction};
use bfm_targets::{BatchOutcome, Capabilities, LedgerEntry, Session, StepFailure, StepOutcome, StepScript, Target, TargetError};
use chrono::Utc;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What a scripted step or statement does instead of succeeding.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Fail with this error (at the statement, for a statement rule).
    Fail(String),
    /// Take this long, then go on.
    Sleep(Duration),
    /// Wait until the gate is released, then go on.
    Block(Gate),
}

/// A barrier a scripted step waits at until the test releases it.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    released: AtomicBool,
    arrived: AtomicUsize,
    notify: Notify,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Let every waiter (present and future) through.
    pub fn release(&self) {
        self.inner.released.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Wait until `n` steps have arrived at the gate.
    pub async fn arrived(&self, n: usize) {
        loop {
            let notified = self.inner.notify.notified();
            if self.inner.arrived.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }

    async fn pass(&self) {
        self.inner.arrived.fetch_add(1, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
        loop {
            let notified = self.inner.notify.notified();
            if self.inner.released.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// One thing that happened in the fake target, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Session {
        run_id: String,
    },
    Lock {
        schema: String,
    },
    LockTimeout {
        schema: String,
    },
    Unlock {
        schema: String,
    },
    PrepareSchema {
        schema: String,
    },
    ReadLedger {
        schema: String,
    },
    /// `steps` scripts sent together.
    Batch {
        schema: String,
        steps: usize,
    },
    Begin {
        schema: String,
        migration_id: String,
    },
    Statement {
        schema: String,
        migration_id: String,
        index: usize,
        text: String,
    },
    Commit {
        schema: String,
        migration_id: String,
    },
    Rollback {
        schema: String,
        migration_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Session(usize),
    /// Someone outside the run, until a moment (or until released).
    Other(Option<Instant>),
}

#[derive(Debug, Clone)]
enum Matcher {
    Migration { id: String, schema: Option<String> },
    Statement(String),
}

#[derive(Debug)]
struct World {
    transactional: bool,
    batch_limit: usize,
    ledger: HashMap<(String, String), LedgerEntry>,
    schemas: BTreeSet<String>,
    tables: BTreeSet<(String, String)>,
    locks: HashMap<String, Holder>,
    rules: Vec<(Matcher, Behaviour)>,
    /// 1-based statement of the next batch that fails, counted across its steps.
    batch_failure: Option<(usize, String)>,
    log: Vec<Call>,
    sessions: usize,
    running: usize,
    max_running: usize,
}

/// An in-memory target (a PostgreSQL-like transactional one unless told otherwise).
pub struct FakeTarget {
    name: String,
    kind: BackendKind,
    world: Arc<Mutex<World>>,
}

fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeTarget {
    pub fn new(name: &str) -> Arc<FakeTarget> {
        Arc::new(FakeTarget {
            name: name.to_string(),
            kind: BackendKind::Postgresql,
            world: Arc::new(Mutex::new(World {
                transactional: true,
                batch_limit: 1,
                ledger: HashMap::new(),
                schemas: BTreeSet::new(),
                tables: BTreeSet::new(),
                locks: HashMap::new(),
                rules: Vec::new(),
                batch_failure: None,
                log: Vec::new(),
                sessions: 0,
                running: 0,
                max_running: 0,
            })),
        })
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// Whether DDL is transactional (default `true`).
    pub fn set_transactional(&self, transactional: bool) {
        self.world().transactional = transactional;
    }

    /// How many transactional steps a session sends at once (default 1: no batching).
    pub fn set_batch_limit(&self, limit: usize) {
        self.world().batch_limit = limit;
    }

    /// Script every step whose migration id contains `id`, before its first statement.
    pub fn on_migration(&self, id: &str, behaviour: Behaviour) {
        self.world().rules.push((Matcher::Migration { id: id.to_string(), schema: None }, behaviour));
    }

    /// Script the steps whose migration id contains `id` in one schema.
    pub fn on_migration_in(&self, id: &str, schema: &str, behaviour: Behaviour) {
        self.world().rules.push((Matcher::Migration { id: id.to_string(), schema: Some(schema.to_string()) }, behaviour));
    }

    /// Script every statement whose text contains `text`.
    pub fn on_statement(&self, text: &str, behaviour: Behaviour) {
        self.world().rules.push((Matcher::Statement(text.to_string()), behaviour));
    }

    /// Fail the `n`th statement (1-based, counted across its steps) of the next batch.
    pub fn fail_batch_statement(&self, n: usize, error: &str) {
        self.world().batch_failure = Some((n, error.to_string()));
    }

    /// Someone else holds the lock of `schema`, for `duration` (or until [`Self::release_lock`]).
    pub fn hold_lock(&self, schema: &str, duration: Option<Duration>) {
        self.world().locks.insert(schema.to_string(), Holder::Other(duration.map(|d| Instant::now() + d)));
    }

    pub fn release_lock(&self, schema: &str) {
        self.world().locks.remove(schema);
    }

    pub fn insert_ledger(&self, entry: LedgerEntry) {
        self.world().ledger.insert((entry.schema.clone(), entry.migration_id.clone()), entry);
    }

    /// Remove a ledger row (as if someone undid the migration behind bfm's back).
    pub fn remove_ledger(&self, schema: &str, migration_id: &str) {
        self.world().ledger.remove(&(schema.to_string(), migration_id.to_string()));
    }

    /// Migration ids in the ledger of `schema`, sorted.
    pub fn ledger_ids(&self, schema: &str) -> Vec<String> {
        let mut ids: Vec<String> = self.world().ledger.keys().filter(|(s, _)| s == schema).map(|(_, id)| id.clone()).collect();
        ids.sort();
        ids
    }

    pub fn add_schema(&self, schema: &str) {
        self.world().schemas.insert(schema.to_string());
    }

    pub fn add_table(&self, schema: &str, table: &str) {
        self.world().tables.insert((schema.to_string(), table.to_string()));
    }

    /// Everything that happened, in order.
    pub fn log(&self) -> Vec<Call> {
        self.world().log.clone()
    }

    /// The statements run (schema, migration id, text), in order.
    pub fn statements(&self) -> Vec<(String, String, String)> {
        self.log()
            .into_iter()
            .filter_map(|c| match c {
                Call::Statement { schema, migration_id, text, .. } => Some((schema, migration_id, text)),
                _ => None,
            })
            .collect()
    }

    /// The most steps that were running in the target at the same time.
    pub fn max_concurrent_steps(&self) -> usize {
        self.world().max_running
    }
}

#[async_trait]
impl Target for FakeTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { transactional_ddl: self.world().transactional, schemas: true }
    }

    async fn ping(&self) -> Result<(), TargetError> {
        Ok(())
    }

    async fn session(&self, run_id: &str) -> Result<Box<dyn Session>, TargetError> {
        let mut w = self.world();
        w.sessions += 1;
        w.log.push(Call::Session { run_id: run_id.to_string() });
        Ok(Box::new(FakeSession { connection: self.name.clone(), id: w.sessions, world: self.world.clone(), locked: None }))
    }

    async fn ledger_rows(&self, run_id: Option<&str>) -> Result<Vec<LedgerEntry>, TargetError> {
        Ok(self.world().ledger.values().filter(|e| run_id.is_none_or(|r| e.run_id == r)).cloned().collect())
    }

    async fn close(&self) {}
}

/// A session of a [`FakeTarget`]; dropping it releases its lock, as closing a connection does.
pub struct FakeSession {
    connection: String,
    id: usize,
    world: Arc<Mutex<World>>,
    locked: Option<String>,
}

/// Counts a step as running while it lives.
struct Running<'a>(&'a Mutex<World>);

impl<'a> Running<'a> {
    fn start(world: &'a Mutex<World>) -> Running<'a> {
        let mut w = lock(world);
        w.running += 1;
        w.max_running = w.max_running.max(w.running);
        Running(world)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(self.0).running -= 1;
    }
}

async fn behave(behaviours: Vec<Behaviour>) -> Result<(), String> {
    for b in behaviours {
        match b {
            Behaviour::Fail(e) => return Err(e),
            Behaviour::Sleep(d) => tokio::time::sleep(d).await,
            Behaviour::Block(g) => g.pass().await,
        }
    }
    Ok(())
}

/// The table a `CREATE TABLE` statement creates, if it is one.
fn created_table(statement: &str) -> Option<String> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let upper: Vec<String> = words.iter().take(5).map(|w| w.to_ascii_uppercase()).collect();
    let at = match upper.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["CREATE", "TABLE", "IF", "NOT", "EXISTS", ..] => 5,
        ["CREATE", "TABLE", ..] => 2,
        _ => return None,
    };
    words.get(at).map(|t| t.split('(').next().unwrap_or(t).trim_matches('"').to_string())
}

impl FakeSession {
    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    fn log(&self, call: Call) {
        self.world().log.push(call);
    }

    /// Run one step; `batch_left` counts down the statements of a batch to its scripted failure.
    async fn run(&self, step: &StepScript<'_>, batch_left: &mut Option<(usize, String)>) -> Result<StepOutcome, StepFailure> {
        let _running = Running::start(&self.world);
        let (schema, id) = (step.schema.to_string(), step.migration_id.to_string());
        let transactional = step.transactional && self.world().transactional;
        let failure = |error: String, index: Option<usize>, done: usize| StepFailure {
            error,
            statement_index: index,
            statement: index.and_then(|i| step.statements.get(i).cloned()),
            statements_done: done,
            partial: !transactional && done > 0,
        };
        if transactional {
            self.log(Call::Begin { schema: schema.clone(), migration_id: id.clone() });
        }
        let on_step: Vec<Behaviour> = self
            .world()
            .rules
            .iter()
            .filter(|(m, _)| matches!(m, Matcher::Migration { id: want, schema: s } if id.contains(want.as_str()) && s.as_ref().is_none_or(|s| *s == schema)))
            .map(|(_, b)| b.clone())
            .collect();
        let mut created: Vec<(String, String)> = Vec::new();
        let mut result = behave(on_step).await.map_err(|e| failure(e, None, 0));
        if result.is_ok() {
            for (index, text) in step.statements.iter().enumerate().skip(step.resume_from) {
                self.log(Call::Statement { schema: schema.clone(), migration_id: id.clone(), index, text: text.clone() });
                let on_statement: Vec<Behaviour> = self
                    .world()
                    .rules
                    .iter()
                    .filter(|(m, _)| matches!(m, Matcher::Statement(want) if text.contains(want.as_str())))
                    .map(|(_, b)| b.clone())
                    .collect();
                let mut outcome = behave(on_statement).await;
                if outcome.is_ok()
                    && let Some((left, error)) = batch_left.as_mut()
                {
                    *left -= 1;
                    if *left == 0 {
                        outcome = Err(error.clone());
                    }
                }
                if let Err(e) = outcome {
                    result = Err(failure(e, Some(index), index));
                    break;
                }
                if let Some(t) = created_table(text) {
                    created.push(match t.split_once('.') {
                        Some((s, t)) => (s.to_string(), t.to_string()),
                        None => (schema.clone(), t),
                    });
                }
            }
        }
        let mut w = self.world();
        match result {
            Err(f) => {
                if transactional {
                    w.log.push(Call::Rollback { schema, migration_id: id });
                } else {
                    w.tables.extend(created);
                }
                Err(f)
            }
            Ok(()) => {
                w.tables.extend(created);
                match step.direction {
                    Direction::Up => {
                        let entry = LedgerEntry {
                            migration_id: id.clone(),
                            schema: schema.clone(),
                            version: step.version.to_string(),
                            checksum: step.checksum.clone(),
                            run_id: step.run_id.to_string(),
                            applied_at: Utc::now(),
                        };
                        w.ledger.insert((schema.clone(), id.clone()), entry);
                    }
                    Direction::Down => {
                        w.ledger.remove(&(schema.clone(), id.clone()));
                    }
                }
                if transactional {
                    w.log.push(Call::Commit { schema, migration_id: id });
                }
                Ok(StepOutcome { statements: step.statements.len() })
            }
        }
    }
}

impl Drop for FakeSession {
    fn drop(&mut self) {
        if let Some(schema) = self.locked.take() {
            let mut w = lock(&self.world);
            if w.locks.get(&schema) == Some(&Holder::Session(self.id)) {
                w.locks.remove(&schema);
            }
        }
    }
}

#[async_trait]
impl Session for FakeSession {
    async fn lock(&mut self, schema: &str, timeout: Duration) -> Result<Duration, TargetError> {
        let start = Instant::now();
        loop {
            {
                let mut w = lock(&self.world);
                let free = match w.locks.get(schema) {
                    None => true,
                    Some(Holder::Other(Some(until))) => *until <= Instant::now(),
                    Some(_) => false,
                };
                if free {
                    w.locks.insert(schema.to_string(), Holder::Session(self.id));
                    w.log.push(Call::Lock { schema: schema.to_string() });
                    self.locked = Some(schema.to_string());
                    return Ok(start.elapsed());
                }
            }
            let waited = start.elapsed();
            if waited >= timeout {
                self.log(Call::LockTimeout { schema: schema.to_string() });
                return Err(TargetError::LockTimeout { connection: self.connection.clone(), schema: schema.to_string(), waited });
            }
            tokio::time::sleep(Duration::from_millis(5).min(timeout - waited)).await;
        }
    }

    async fn unlock(&mut self) -> Result<(), TargetError> {
        if let Some(schema) = self.locked.take() {
            let mut w = self.world();
            if w.locks.get(&schema) == Some(&Holder::Session(self.id)) {
                w.locks.remove(&schema);
            }
            w.log.push(Call::Unlock { schema });
        }
        Ok(())
    }

    async fn prepare_schema(&mut self, schema: &str) -> Result<(), TargetError> {
        let mut w = self.world();
        w.schemas.insert(schema.to_string());
        w.log.push(Call::PrepareSchema { schema: schema.to_string() });
        Ok(())
    }

    async fn ledger(&mut self, schema: &str) -> Result<HashMap<String, LedgerEntry>, TargetError> {
        let mut w = self.world();
        w.log.push(Call::ReadLedger { schema: schema.to_string() });
        Ok(w.ledger.iter().filter(|((s, _), _)| s == schema).map(|((_, id), e)| (id.clone(), e.clone())).collect())
    }

    async fn schema_exists(&mut self, schema: &str) -> Result<bool, TargetError> {
        Ok(self.world().schemas.contains(schema))
    }

    async fn table_exists(&mut self, default_schema: &str, table: &str) -> Result<bool, TargetError> {
        let (schema, table) = table.split_once('.').unwrap_or((default_schema, table));
        Ok(self.world().tables.contains(&(schema.to_string(), table.to_string())))
    }

    async fn apply(&mut self, step: &StepScript<'_>) -> Result<StepOutcome, StepFailure> {
        self.run(step, &mut None).await
    }

    fn batch_limit(&self) -> usize {
        self.world().batch_limit
    }

    async fn apply_batch(&mut self, steps: &[StepScript<'_>]) -> BatchOutcome {
        let mut left = {
            let mut w = self.world();
            w.log.push(Call::Batch { schema: steps.first().map(|s| s.schema.to_string()).unwrap_or_default(), steps: steps.len() });
            w.batch_failure.take()
        };
        for (k, step) in steps.iter().enumerate() {
            if let Err(f) = self.run(step, &mut left).await {
                return BatchOutcome { completed: k, failure: Some(f) };
            }
        }
        BatchOutcome { completed: steps.len(), failure: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script<'a>(id: &'a str, statements: &'a [String], checksum: &'a bfm_core::Checksum) -> StepScript<'a> {
        StepScript {
            migration_id: id,
            schema: "a",
            version: "1",
            direction: Direction::Up,
            sql: "",
            statements,
            transactional: true,
            checksum,
            run_id: "r",
            resume_from: 0,
        }
    }

    #[tokio::test]
    async fn a_failing_statement_rolls_back_and_leaves_no_ledger_row() {
        let t = FakeTarget::new("core");
        t.on_statement("boom", Behaviour::Fail("no".into()));
        let mut s = t.session("r").await.unwrap();
        let checksum = bfm_core::Checksum::of_statements(&["x"]);
        let ok = vec!["CREATE TABLE t (id int)".to_string()];
        let bad = vec!["SELECT 1".to_string(), "SELECT boom".to_string()];
        assert!(s.apply(&script("m1", &ok, &checksum)).await.is_ok());
        let f = s.apply(&script("m2", &bad, &checksum)).await.unwrap_err();
        assert_eq!((f.statement_index, f.statements_done, f.partial), (Some(1), 1, false));
        assert_eq!(f.to_string(), "statement 2 failed: no");
        assert_eq!(t.ledger_ids("a"), vec!["m1".to_string()]);
        assert!(s.table_exists("a", "t").await.unwrap());
        assert_eq!(t.log().last(), Some(&Call::Rollback { schema: "a".into(), migration_id: "m2".into() }));
    }

    #[tokio::test]
    async fn a_lock_held_elsewhere_times_out_and_a_released_one_is_taken() {
        let t = FakeTarget::new("core");
        t.hold_lock("a", None);
        let mut s = t.session("r").await.unwrap();
        let e = s.lock("a", Duration::from_millis(30)).await.unwrap_err();
        assert!(matches!(e, TargetError::LockTimeout { .. }), "{e}");
        t.hold_lock("a", Some(Duration::from_millis(20)));
        let waited = s.lock("a", Duration::from_secs(2)).await.unwrap();
        assert!(waited >= Duration::from_millis(15), "{waited:?}");
        // A second session waits for the first; dropping the first releases the lock.
        let mut s2 = t.session("r").await.unwrap();
        assert!(s2.lock("a", Duration::from_millis(20)).await.is_err());
        drop(s);
        assert!(s2.lock("a", Duration::from_millis(20)).await.is_ok());
    }

    #[tokio::test]
    async fn a_batch_fails_at_its_nth_statement() {
        let t = FakeTarget::new("core");
        t.fail_batch_statement(3, "boom");
        let mut s = t.session("r").await.unwrap();
        let checksum = bfm_core::Checksum::of_statements(&["x"]);
        let two = vec!["SELECT 1".to_string(), "SELECT 2".to_string()];
        let out = s.apply_batch(&[script("m1", &two, &checksum), script("m2", &two, &checksum), script("m3", &two, &checksum)]).await;
        assert_eq!(out.completed, 1);
        assert_eq!(out.failure.map(|f| f.statement_index), Some(Some(0)));
        assert_eq!(t.ledger_ids("a"), vec!["m1".to_string()]);
    }

    #[tokio::test]
    async fn a_gate_holds_a_step_until_released() {
        let t = FakeTarget::new("core");
        let gate = Gate::new();
        t.on_migration("m1", Behaviour::Block(gate.clone()));
        let t2 = t.clone();
        let run = tokio::spawn(async move {
            let checksum = bfm_core::Checksum::of_statements(&["x"]);
            let one = vec!["SELECT 1".to_string()];
            let mut s = t2.session("r").await.unwrap();
            s.apply(&script("m1", &one, &checksum)).await.is_ok()
        });
        gate.arrived(1).await;
        assert!(t.statements().is_empty());
        gate.release();
        assert!(run.await.unwrap());
        assert_eq!(t.statements().len(), 1);
    }
}
