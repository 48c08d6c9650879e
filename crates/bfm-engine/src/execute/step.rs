//! The steps of a locked segment: the schema prepared, the ledger read and trusted, then each
//! step rendered, its requirements checked and its script run — one by one, or consecutive
//! transactional steps in one batch.

use super::chain::{Chain, Segment};
use super::error::{Halt, Missing, RenderError, StepError};
use super::outcome::{Fate, Stage};
use super::record;
use super::run::Shared;
use bfm_core::sql;
use bfm_core::template::{self, Vars};
use bfm_core::{Direction, Migration, Status, Step};
use bfm_targets::{LedgerEntry, Session, StepScript, Target};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Run the steps of a segment whose lock is held. `Err` stops the chain.
pub(crate) async fn run_locked(
    shared: &Arc<Shared>,
    chain: &Chain,
    segment: &Segment,
    target: &dyn Target,
    session: &mut dyn Session,
) -> Result<(), Halt> {
    let first_direction = shared.steps[segment.steps[0]].direction;
    if first_direction == Direction::Up
        && let Err(e) = session.prepare_schema(&chain.schema).await
    {
        return Err(shared.fail_segment(&segment.steps, Stage::PrepareSchema, StepError::Target(e)));
    }
    let ledger: HashMap<String, LedgerEntry> = match session.ledger(&chain.schema).await {
        Ok(l) => l,
        Err(e) => return Err(shared.fail_segment(&segment.steps, Stage::ReadLedger, StepError::Target(e))),
    };
    let transactional_target = target.capabilities().transactional_ddl;
    let batch_limit = session.batch_limit().max(1);
    let steps = &segment.steps;
    let mut k = 0;
    while k < steps.len() {
        let i = steps[k];
        let step = &shared.steps[i];
        if let Some(halt) = shared.halted() {
            return Err(halt);
        }
        // Prerequisites inside this chain ran earlier in this task; make sure they succeeded.
        if let Some(&p) = step.after.iter().find(|&&p| shared.fate(p) != Fate::Succeeded) {
            return Err(Halt::BlockedBy(shared.steps[p].display_id()));
        }
        if batch_limit > 1 && batchable(step, transactional_target, &ledger) {
            // Extend the batch while the next steps qualify and wait only for steps before them.
            let mut end = k + 1;
            while end < steps.len() && end - k < batch_limit {
                let next = &shared.steps[steps[end]];
                let deps_ok = next.after.iter().all(|p| steps[k..end].contains(p) || shared.fate(*p) == Fate::Succeeded);
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

fn environment(shared: &Shared) -> String {
    shared.options.environment.clone().or(shared.engine.config.environment.clone()).unwrap_or_default()
}

/// Fail step `i` and stop its chain.
fn fail(shared: &Shared, i: usize, started_at: chrono::DateTime<Utc>, clock: Instant, error: StepError) -> Result<(), Halt> {
    record::failure(shared, i, started_at, clock, error);
    Err(Halt::FailureOf(shared.steps[i].display_id()))
}

/// Run one step. `Err` stops the chain.
async fn run_step(
    shared: &Arc<Shared>,
    i: usize,
    step: &Step,
    ledger: &HashMap<String, LedgerEntry>,
    transactional_target: bool,
    session: &mut dyn Session,
) -> Result<(), Halt> {
    let m: &Migration = &step.migration;
    let started_at = Utc::now();
    let clock = Instant::now();
    let row = shared.prepared.row(&m.id, &step.schema);

    // The ledger is authoritative under the lock: a step it already shows as done is not run
    // again; the state is brought in line.
    match step.direction {
        Direction::Up => {
            if let Some(entry) = ledger.get(&m.id) {
                record::already_applied(shared, i, entry, started_at, clock);
                return Ok(());
            }
        }
        Direction::Down => {
            if !ledger.contains_key(&m.id) && row.is_some_and(|r| r.ledger) {
                record::not_applied(shared, i, row, started_at, clock);
                return Ok(());
            }
        }
    }

    // Render for this schema and split.
    let (rendered, statements) = match render_step(step, &environment(shared)) {
        Ok(r) => r,
        Err(e) => return fail(shared, i, started_at, clock, e.into()),
    };

    // Requirements that must hold before the step runs.
    if step.direction == Direction::Up
        && let Err(e) = check_requirements(step, session).await
    {
        return fail(shared, i, started_at, clock, e);
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
        shared.engine.recorder.record(record::running(shared, i, row, resume_from));
        if let Err(e) = shared.engine.recorder.flush().await {
            return fail(shared, i, started_at, clock, StepError::NotRecorded(e));
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
            record::success(shared, i, started_at, clock.elapsed());
            Ok(())
        }
        Err(f) => fail(shared, i, started_at, clock, StepError::Script(f)),
    }
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
async fn run_batch(shared: &Arc<Shared>, batch: &[usize], session: &mut dyn Session) -> Result<(), Halt> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let environment = environment(shared);
    let mut rendered = Vec::with_capacity(batch.len());
    for &i in batch {
        match render_step(&shared.steps[i], &environment) {
            Ok(r) => rendered.push(r),
            Err(e) => {
                // Run what rendered; this step then fails on its own.
                if !rendered.is_empty() {
                    Box::pin(run_batch(shared, &batch[..rendered.len()], session)).await?;
                }
                return fail(shared, i, started_at, clock, e.into());
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
            record::success(shared, i, started_at, share);
        }
    }
    match outcome.failure {
        None => Ok(()),
        Some(f) => fail(shared, batch[outcome.completed.min(batch.len() - 1)], started_at, clock, StepError::Script(f)),
    }
}

/// `requires_table` / `requires_schema` of the migration and of its structured dependencies,
/// checked for real against the target.
async fn check_requirements(step: &Step, session: &mut dyn Session) -> Result<(), StepError> {
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
    let mut missing = Missing::new();
    for s in &schemas {
        match session.schema_exists(s).await {
            Ok(true) => {}
            Ok(false) => missing.entry("schema").or_default().push(s.clone()),
            Err(source) => return Err(StepError::CheckSchema { schema: s.clone(), source }),
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
            Err(source) => return Err(StepError::CheckTable { table: t.clone(), source }),
        }
    }
    if missing.is_empty() { Ok(()) } else { Err(StepError::RequirementsNotMet(missing)) }
}

/// The script a step runs, rendered for its schema, and its statements.
pub fn render_step(step: &Step, environment: &str) -> Result<(String, Vec<String>), RenderError> {
    let m = &step.migration;
    let text = match step.direction {
        Direction::Up => m.up.text.clone(),
        Direction::Down => m.down.as_ref().map(|d| d.text.clone()).ok_or(RenderError::NoDownScript)?,
    };
    let vars = Vars { schema: &step.schema, connection: &m.connection, backend: &m.backend, version: m.version.as_str(), environment };
    let Some(dialect) = m.kind.dialect() else {
        return render_json_step(&text, &vars);
    };
    let rendered = template::render_sql(&text, dialect, &vars)?;
    let statements = sql::split(&rendered, dialect)?.into_iter().map(|s| s.text).collect();
    Ok((rendered, statements))
}

/// An etcd script: JSON, with values JSON-escaped where they stand; one statement per operation
/// (so a failure can name the operation).
fn render_json_step(text: &str, vars: &Vars<'_>) -> Result<(String, Vec<String>), RenderError> {
    let rendered = template::render_json(text, vars)?;
    bfm_core::etcd_script::parse(&rendered)?;
    let statements = match serde_json::from_str::<serde_json::Value>(&rendered) {
        Ok(serde_json::Value::Array(items)) => items.iter().map(|op| op.to_string()).collect(),
        // BfM's single `key=value` form.
        _ => vec![rendered.trim().to_string()],
    };
    Ok((rendered, statements))
}
