//! Bringing the state store back in line with the targets' ledgers.
//!
//! The ledger in a transactional target is written in the same transaction as the migration, so
//! it is the truth about what ran. After a crash (`kill -9` mid-run), the state store may lag:
//! steps committed in the target but not yet recorded, a down that committed unrecorded, or a
//! non-transactional step left "running". Reconciliation repairs each case and says so in the
//! history.

use crate::engine::{Engine, EngineError};
use bfm_core::Status;
use bfm_state::{Event, HistoryEntry, MigrationRef, Operation, RunRecord, StateRow, StateUpdate};
use chrono::Utc;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// A run whose heartbeat is older than this is considered dead.
const STALE_RUN: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    /// Interrupted runs that were closed.
    pub runs: Vec<String>,
    /// Recorded as applied (the target had them).
    pub applied: Vec<String>,
    /// Recorded as rolled back (the target no longer had them).
    pub rolled_back: Vec<String>,
    /// Non-transactional steps left running by a dead process, now failed.
    pub interrupted: Vec<String>,
}

impl ReconcileReport {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.rolled_back.is_empty() && self.interrupted.is_empty() && self.runs.is_empty()
    }
}

fn is_dead(run: &RunRecord, host: &str) -> bool {
    if run.host == host
        && run.pid as u32 != std::process::id()
        && let Some(alive) = crate::context::process_alive(run.pid)
    {
        return !alive;
    }
    let age = Utc::now().signed_duration_since(run.heartbeat_at);
    age.to_std().map(|d| d > STALE_RUN).unwrap_or(false)
}

impl Engine {
    /// Reconcile the connections of runs whose process is gone, then close those runs.
    pub async fn reconcile_dead_runs(&self) -> Result<ReconcileReport, EngineError> {
        let host = crate::host_name();
        let open = self.state.open_runs().await?;
        let mut dead: Vec<&RunRecord> = Vec::new();
        for r in open.iter().filter(|r| is_dead(r, &host)) {
            // A killed client's last statements may still be running in the server (and may
            // still commit): such a run is not over yet.
            let mut busy = false;
            for c in r.connections.iter().filter(|c| self.config.connections.contains_key(*c)) {
                busy |= self.target(c).await?.busy(&r.run_id).await?;
            }
            if busy {
                tracing::info!(run = %r.run_id, "interrupted run still has statements running in a target; reconciling later");
            } else {
                dead.push(r);
            }
        }
        if dead.is_empty() {
            return Ok(ReconcileReport::default());
        }
        let mut connections: Vec<String> = dead.iter().flat_map(|r| r.connections.iter().cloned()).collect();
        connections.sort();
        connections.dedup();
        let closing: HashSet<&str> = dead.iter().map(|r| r.run_id.as_str()).collect();
        let alive: HashSet<String> = open.iter().filter(|r| !closing.contains(r.run_id.as_str())).map(|r| r.run_id.clone()).collect();
        let mut report = self.reconcile_connections(&connections, &alive).await?;
        for r in dead {
            self.state.finish_run(&r.run_id).await?;
            tracing::warn!(run = %r.run_id, command = %r.command, "closed a run interrupted before it finished; state reconciled from the targets");
            report.runs.push(r.run_id.clone());
        }
        Ok(report)
    }

    /// Compare the state store with the ledgers of `connections` (all configured ones if `None`).
    pub async fn reconcile(&self, connections: Option<&[String]>) -> Result<ReconcileReport, EngineError> {
        let mut report = self.reconcile_dead_runs().await?;
        let host = crate::host_name();
        let alive: HashSet<String> = self.state.open_runs().await?.into_iter().filter(|r| !is_dead(r, &host)).map(|r| r.run_id).collect();
        let all: Vec<String> = match connections {
            Some(c) => c.to_vec(),
            None => self.config.connections.keys().cloned().collect(),
        };
        let more = self.reconcile_connections(&all, &alive).await?;
        report.applied.extend(more.applied);
        report.rolled_back.extend(more.rolled_back);
        report.interrupted.extend(more.interrupted);
        Ok(report)
    }

    async fn reconcile_connections(&self, connections: &[String], alive_runs: &HashSet<String>) -> Result<ReconcileReport, EngineError> {
        let mut report = ReconcileReport::default();
        let catalog = self.catalog();
        let context = Arc::new(bfm_state::ExecutionContext {
            executed_by: "bfm".into(),
            execution_method: "reconcile".into(),
            execution_context: serde_json::json!({"source": "reconcile", "host": crate::host_name()}).to_string(),
        });
        for conn in connections {
            if !self.config.connections.contains_key(conn) {
                continue;
            }
            let target = self.target(conn).await?;
            let ledger = target.ledger_rows(None).await?;
            let rows = self.state.snapshot(Some(std::slice::from_ref(conn))).await?;
            let state: HashMap<(&str, &str), &StateRow> = rows.iter().map(|r| ((r.migration_id.as_str(), r.schema.as_str()), r)).collect();
            let in_ledger: HashSet<(&str, &str)> = ledger.iter().map(|l| (l.migration_id.as_str(), l.schema.as_str())).collect();
            let mref = |id: &str, fallback: Option<&StateRow>, version: &str| match catalog.get(id) {
                Some(m) => MigrationRef::of(m),
                None => MigrationRef {
                    id: id.to_string(),
                    version: fallback.map(|r| r.version.clone()).unwrap_or_else(|| version.to_string()),
                    name: fallback.map(|r| r.name.clone()).unwrap_or_default(),
                    connection: conn.clone(),
                    backend: fallback.map(|r| r.backend.clone()).unwrap_or_else(|| target.kind().to_string()),
                },
            };
            let display = |id: &str, schema: &str| catalog.get(id).map(|m| m.display_id(schema)).unwrap_or_else(|| id.to_string());
            let mut events = Vec::new();
            for l in &ledger {
                let row = state.get(&(l.migration_id.as_str(), l.schema.as_str())).copied();
                if row.is_some_and(|r| r.status == Status::Applied) {
                    continue;
                }
                if row.is_some_and(|r| r.run_id.as_ref().is_some_and(|id| alive_runs.contains(id)) && r.status == Status::Running) {
                    continue;
                }
                events.push(Event {
                    // The key the interrupted run would have used: whoever writes first wins.
                    key: format!("{}:up:{}:{}", l.run_id, l.migration_id, l.schema),
                    migration: mref(&l.migration_id, row, &l.version),
                    schema: l.schema.clone(),
                    run_id: Some(l.run_id.clone()),
                    context: context.clone(),
                    state: Some(StateUpdate::applied(Some(l.checksum.clone()), Some(l.applied_at), None, true)),
                    history: Some(HistoryEntry {
                        checksum: Some(l.checksum.clone()),
                        error: Some("applied in the target but not recorded (interrupted run); recorded from the ledger".into()),
                        ..HistoryEntry::new(Operation::Reconcile, "applied")
                    }),
                });
                report.applied.push(display(&l.migration_id, &l.schema));
            }
            for r in &rows {
                let key = (r.migration_id.as_str(), r.schema.as_str());
                let run_alive = r.run_id.as_ref().is_some_and(|id| alive_runs.contains(id));
                if r.status == Status::Applied && r.ledger && !in_ledger.contains(&key) && !run_alive {
                    events.push(Event {
                        key: format!("reconcile:{}:{}:{}", uuid::Uuid::new_v4(), r.migration_id, r.schema),
                        migration: mref(&r.migration_id, Some(r), &r.version),
                        schema: r.schema.clone(),
                        run_id: None,
                        context: context.clone(),
                        state: Some(StateUpdate::rolled_back(r.checksum.clone())),
                        history: Some(HistoryEntry {
                            error: Some("recorded as applied but absent from the target's ledger; recorded as rolled back".into()),
                            ..HistoryEntry::new(Operation::Reconcile, "rolled_back")
                        }),
                    });
                    report.rolled_back.push(display(&r.migration_id, &r.schema));
                } else if r.status == Status::Running && !run_alive && !in_ledger.contains(&key) {
                    events.push(Event {
                        key: format!("reconcile:{}:{}:{}", uuid::Uuid::new_v4(), r.migration_id, r.schema),
                        migration: mref(&r.migration_id, Some(r), &r.version),
                        schema: r.schema.clone(),
                        run_id: r.run_id.clone(),
                        context: context.clone(),
                        state: Some(StateUpdate {
                            statements_done: r.statements_done,
                            partial: true,
                            ..StateUpdate::failed(
                                r.checksum.clone(),
                                "interrupted: the process running this non-transactional step stopped; part of it may be applied — check, then `bfm migrate retry`".into(),
                                r.ledger,
                            )
                        }),
                        history: Some(HistoryEntry {
                            error: Some("interrupted while running (no transaction)".into()),
                            ..HistoryEntry::new(Operation::Reconcile, "failed")
                        }),
                    });
                    report.interrupted.push(display(&r.migration_id, &r.schema));
                }
            }
            self.state.write(&events).await?;
        }
        Ok(report)
    }
}
