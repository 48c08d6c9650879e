//! Applying a plan: approvals, advisory lock (polled, never blocking), fingerprint check,
//! transaction groups, concurrent index builds, convergence check.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::SchemaTarget;
use crate::db::{self, Conn};
use crate::error::{SchemaError, pg_message, sqlstate};
use crate::introspect;
use crate::model::FORMAT_VERSION;
use crate::types::*;

/// Advisory lock key of schema applies ("bfm_sch" in ASCII); advisory locks are per database.
pub const ADVISORY_LOCK_KEY: i64 = 0x0062_666d_5f73_6368;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The approvals a plan still lacks.
pub(crate) fn missing_approvals(plan: &SchemaPlan, approvals: &[Approval]) -> Vec<String> {
    let given: HashSet<&Approval> = approvals.iter().collect();
    let mut missing = Vec::new();
    for s in &plan.steps {
        for a in s.approvals_needed() {
            if !given.contains(&a) {
                let t = a.to_string();
                if !missing.contains(&t) {
                    missing.push(t);
                }
            }
        }
    }
    missing
}

async fn take_lock(conn: &Conn, wait: Duration) -> Result<(), SchemaError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let row = conn
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&ADVISORY_LOCK_KEY])
            .await
            .map_err(|e| SchemaError::db("taking the schema advisory lock", &e))?;
        let got: bool = row.try_get(0).map_err(|e| SchemaError::db("taking the schema advisory lock", &e))?;
        if got {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= wait {
            return Err(SchemaError::LockTimeout { target: conn.label.clone(), waited_ms: ms(waited) });
        }
        tokio::time::sleep(pause.min(wait - waited)).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

async fn release_lock(conn: &Conn) {
    let _ = conn.client.query_one("SELECT pg_advisory_unlock($1)", &[&ADVISORY_LOCK_KEY]).await;
}

fn timeouts(opts: &ApplyOptions, local: bool) -> String {
    let scope = if local { "LOCAL " } else { "" };
    format!(
        "SET {scope}lock_timeout = {}; SET {scope}statement_timeout = {}",
        ms(opts.lock_timeout),
        opts.statement_timeout.map(ms).unwrap_or(0)
    )
}

pub(crate) async fn apply(
    target: &SchemaTarget,
    plan: &SchemaPlan,
    approvals: &[Approval],
    opts: &ApplyOptions,
) -> Result<ApplyReport, SchemaError> {
    let started = Instant::now();
    if plan.format_version != FORMAT_VERSION {
        return Err(SchemaError::FormatVersion { found: plan.format_version, supported: FORMAT_VERSION });
    }
    if !opts.allow_non_destructive_only {
        let missing = missing_approvals(plan, approvals);
        if !missing.is_empty() {
            return Err(SchemaError::ApprovalRequired { missing });
        }
    }
    let conn = db::connect(&target.database_url).await?;
    if conn.pg_major() != plan.pg_major {
        return Err(SchemaError::VersionMismatch { plan: plan.pg_major, server: conn.pg_major() });
    }
    take_lock(&conn, opts.lock_wait).await?;
    let result = apply_locked(&conn, plan, opts, started).await;
    release_lock(&conn).await;
    result
}

async fn apply_locked(conn: &Conn, plan: &SchemaPlan, opts: &ApplyOptions, started: Instant) -> Result<ApplyReport, SchemaError> {
    let live = introspect::introspect(conn, &plan.scope).await?;
    let live_fp = live.model.fingerprint();
    if live_fp != plan.source_fingerprint {
        return Err(SchemaError::FingerprintMismatch { expected: plan.source_fingerprint.clone(), actual: live_fp });
    }
    conn.client
        .batch_execute("SET check_function_bodies = off; SET client_min_messages = warning")
        .await
        .map_err(|e| SchemaError::db("preparing the apply session", &e))?;

    let mut applied: Vec<AppliedStep> = Vec::new();
    let mut skipped: Vec<SkippedStep> = Vec::new();
    let runnable: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| {
            if opts.allow_non_destructive_only && s.destructive {
                skipped.push(SkippedStep {
                    id: s.id,
                    object: s.object.clone(),
                    reason: "destructive step skipped (non-destructive only)".into(),
                });
                false
            } else {
                true
            }
        })
        .collect();

    let mut i = 0;
    while i < runnable.len() {
        let group = runnable[i].group;
        let mut j = i;
        while j < runnable.len() && runnable[j].group == group {
            j += 1;
        }
        let steps = &runnable[i..j];
        if steps.iter().all(|s| s.transactional) {
            run_transaction(conn, steps, opts, &mut applied).await?;
        } else {
            for s in steps {
                run_alone(conn, s, opts, &mut applied).await?;
            }
        }
        i = j;
    }

    let after = introspect::introspect(conn, &plan.scope).await?;
    let final_fp = after.model.fingerprint();
    Ok(ApplyReport {
        applied,
        skipped,
        source_fingerprint: live_fp,
        converged: final_fp == plan.desired_fingerprint,
        final_fingerprint: final_fp,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        scope: plan.scope.clone(),
    })
}

fn step_error(s: &Step, e: &tokio_postgres::Error, applied: usize, rolled_back: bool) -> SchemaError {
    SchemaError::Step {
        step: s.id,
        object: s.object.clone(),
        sql: s.sql.clone(),
        message: pg_message(e),
        sqlstate: sqlstate(e),
        applied,
        rolled_back,
    }
}

async fn run_transaction(conn: &Conn, steps: &[&Step], opts: &ApplyOptions, applied: &mut Vec<AppliedStep>) -> Result<(), SchemaError> {
    conn.client
        .batch_execute(&format!("BEGIN; {}", timeouts(opts, true)))
        .await
        .map_err(|e| SchemaError::db("starting an apply transaction", &e))?;
    let mut done = Vec::new();
    for s in steps {
        let t = Instant::now();
        if let Err(e) = conn.client.batch_execute(&s.sql).await {
            let _ = conn.client.batch_execute("ROLLBACK").await;
            cleanup(conn, s).await;
            return Err(step_error(s, &e, applied.len(), true));
        }
        done.push(AppliedStep { id: s.id, object: s.object.clone(), duration_ms: t.elapsed().as_secs_f64() * 1000.0 });
    }
    if let Err(e) = conn.client.batch_execute("COMMIT").await {
        let _ = conn.client.batch_execute("ROLLBACK").await;
        let last = steps.last().copied();
        return Err(match last {
            Some(s) => step_error(s, &e, applied.len(), true),
            None => SchemaError::db("committing an apply transaction", &e),
        });
    }
    applied.extend(done);
    Ok(())
}

async fn run_alone(conn: &Conn, s: &Step, opts: &ApplyOptions, applied: &mut Vec<AppliedStep>) -> Result<(), SchemaError> {
    conn.client.batch_execute(&timeouts(opts, false)).await.map_err(|e| SchemaError::db("setting timeouts", &e))?;
    let t = Instant::now();
    let result = conn.client.batch_execute(&s.sql).await;
    let reset = conn.client.batch_execute("RESET lock_timeout; RESET statement_timeout").await;
    if let Err(e) = result {
        // A failed concurrent build leaves an INVALID index behind: remove it.
        if let Some(idx) = &s.check_index {
            drop_if_invalid(conn, idx).await;
        }
        cleanup(conn, s).await;
        return Err(step_error(s, &e, applied.len(), false));
    }
    if let Some(idx) = &s.check_index {
        let row = conn
            .client
            .query_opt("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)::oid", &[idx])
            .await
            .map_err(|e| SchemaError::db(format!("checking index {idx}"), &e))?;
        let valid: Option<bool> = row.and_then(|r| r.try_get(0).ok());
        if valid != Some(true) {
            drop_if_invalid(conn, idx).await;
            return Err(SchemaError::Step {
                step: s.id,
                object: s.object.clone(),
                sql: s.sql.clone(),
                message: format!("index {idx} is not valid after the concurrent build"),
                sqlstate: None,
                applied: applied.len(),
                rolled_back: false,
            });
        }
    }
    reset.map_err(|e| SchemaError::db("resetting timeouts", &e))?;
    applied.push(AppliedStep { id: s.id, object: s.object.clone(), duration_ms: t.elapsed().as_secs_f64() * 1000.0 });
    Ok(())
}

/// Run a failed step's cleanup statement (best effort: the step's own error is what matters).
async fn cleanup(conn: &Conn, s: &Step) {
    if let Some(sql) = &s.cleanup
        && let Err(e) = conn.client.batch_execute(sql).await
    {
        tracing::warn!(step = s.id, error = %pg_message(&e), "cleanup after a failed step failed");
    }
}

async fn drop_if_invalid(conn: &Conn, idx: &str) {
    let invalid = conn
        .client
        .query_opt("SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)::oid", &[&idx])
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get::<_, bool>(0).ok())
        .unwrap_or(false);
    if invalid {
        // `idx` is the plan's own quoted, qualified name.
        let _ = conn.client.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {idx}")).await;
    }
}
