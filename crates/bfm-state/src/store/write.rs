//! The writes: events (state upserts and history inserts in one transaction, in chunks), the
//! catalogue sync, runs and schema snapshots.

use super::{DbPool, SqlStateStore};
use crate::{CatalogRow, Event, Result, RunRecord, StateError, SyncReport};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use std::collections::{HashMap, HashSet};

const STATE_COLS: &[&str] = &[
    "migration_id",
    "schema_name",
    "version",
    "name",
    "connection",
    "backend",
    "status",
    "checksum",
    "checksum_algorithm",
    "applied_at",
    "duration_ms",
    "error",
    "failed_statement",
    "failed_statement_index",
    "statements_done",
    "partial",
    "ledger",
    "run_id",
    "updated_at",
];

const HISTORY_COLS: &[&str] = &[
    "event_key",
    "migration_id",
    "schema_name",
    "version",
    "connection",
    "backend",
    "operation",
    "status",
    "checksum",
    "error",
    "failed_statement",
    "failed_statement_index",
    "started_at",
    "finished_at",
    "duration_ms",
    "executed_by",
    "execution_method",
    "execution_context",
    "run_id",
];

const CATALOG_COLS: &[&str] = &[
    "migration_id",
    "version",
    "name",
    "connection",
    "backend",
    "declared_schema",
    "checksum",
    "checksum_algorithm",
    "up_file",
    "down_file",
    "dependencies",
    "structured_dependencies",
    "tags",
    "present",
    "first_seen_at",
    "updated_at",
];

/// Rows per multi-row statement (keeps every backend under its parameter limit).
const CHUNK: usize = 200;

impl SqlStateStore {
    pub(super) async fn write_events(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // The last update of a key wins (one upsert statement may not touch a row twice).
        let mut latest: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            if e.state.is_some() {
                latest.insert((e.migration.id.as_str(), e.schema.as_str()), i);
            }
        }
        let mut states: Vec<&Event> = latest.values().map(|&i| &events[i]).collect();
        states.sort_by_key(|e| (&e.migration.id, &e.schema));
        let histories: Vec<&Event> = events.iter().filter(|e| e.history.is_some()).collect();
        let now = Utc::now();
        let state_sql = |n: usize| self.dialect.upsert("bfm_state", STATE_COLS, &["migration_id", "schema_name"], n);
        let history_sql = |n: usize| self.dialect.insert_ignore("bfm_history", HISTORY_COLS, n, "event_key");
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in states.chunks(CHUNK) {
                let sql = state_sql(chunk.len());
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for e in chunk {
                    let Some(s) = &e.state else { continue };
                    q = q
                        .bind(e.migration.id.clone())
                        .bind(e.schema.clone())
                        .bind(e.migration.version.clone())
                        .bind(e.migration.name.clone())
                        .bind(e.migration.connection.clone())
                        .bind(e.migration.backend.clone())
                        .bind(s.status.as_str())
                        .bind(s.checksum.as_ref().map(|c| c.value.clone()))
                        .bind(s.checksum.as_ref().map(|c| c.algorithm as i64))
                        .bind(s.applied_at)
                        .bind(s.duration_ms)
                        .bind(s.error.clone())
                        .bind(s.failed_statement.clone())
                        .bind(s.failed_statement_index)
                        .bind(s.statements_done)
                        .bind(s.partial)
                        .bind(s.ledger)
                        .bind(e.run_id.clone())
                        .bind(now);
                }
                q.execute(&mut *tx).await?;
            }
            for chunk in histories.chunks(CHUNK) {
                let sql = history_sql(chunk.len());
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for e in chunk {
                    let Some(h) = &e.history else { continue };
                    q = q
                        .bind(e.key.clone())
                        .bind(e.migration.id.clone())
                        .bind(e.schema.clone())
                        .bind(e.migration.version.clone())
                        .bind(e.migration.connection.clone())
                        .bind(e.migration.backend.clone())
                        .bind(h.operation.as_str())
                        .bind(h.status.clone())
                        .bind(h.checksum.as_ref().map(|c| c.value.clone()))
                        .bind(h.error.clone())
                        .bind(h.failed_statement.clone())
                        .bind(h.failed_statement_index)
                        .bind(h.started_at)
                        .bind(h.finished_at)
                        .bind(h.duration_ms)
                        .bind(e.context.executed_by.clone())
                        .bind(e.context.execution_method.clone())
                        .bind(e.context.execution_context.clone())
                        .bind(e.run_id.clone());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub(super) async fn write_catalog(&self, rows: &[CatalogRow]) -> Result<SyncReport> {
        let existing = self.read_catalog(false).await?;
        let by_id: HashMap<&str, &CatalogRow> = existing.iter().map(|r| (r.migration_id.as_str(), r)).collect();
        let now = Utc::now();
        let mut report = SyncReport::default();
        let mut changed: Vec<CatalogRow> = Vec::new();
        let on_disk: HashSet<&str> = rows.iter().map(|r| r.migration_id.as_str()).collect();
        for r in rows {
            match by_id.get(r.migration_id.as_str()) {
                None => {
                    report.added.push(r.migration_id.clone());
                    changed.push(CatalogRow { present: true, first_seen_at: now, updated_at: now, ..r.clone() });
                }
                Some(old) => {
                    let same = old.version == r.version
                        && old.name == r.name
                        && old.connection == r.connection
                        && old.backend == r.backend
                        && old.declared_schema == r.declared_schema
                        && old.checksum == r.checksum
                        && old.up_file == r.up_file
                        && old.down_file == r.down_file
                        && old.dependencies == r.dependencies
                        && old.structured_dependencies == r.structured_dependencies
                        && old.tags == r.tags
                        && old.present;
                    if !same {
                        report.updated.push(r.migration_id.clone());
                        changed.push(CatalogRow { present: true, first_seen_at: old.first_seen_at, updated_at: now, ..r.clone() });
                    }
                }
            }
        }
        for old in &existing {
            if old.present && !on_disk.contains(old.migration_id.as_str()) {
                report.missing.push(old.migration_id.clone());
                changed.push(CatalogRow { present: false, updated_at: now, ..old.clone() });
            }
        }
        report.total = (existing.len() + report.added.len()) as i64;
        if changed.is_empty() {
            return Ok(report);
        }
        let sql = |n: usize| self.dialect.upsert("bfm_catalog", CATALOG_COLS, &["migration_id"], n);
        let lists: Vec<[String; 3]> = changed
            .iter()
            .map(|r| {
                let key = format!("migration {}", r.migration_id);
                Ok([
                    encode(&r.dependencies, "bfm_catalog", &key, "dependencies")?,
                    encode(&r.structured_dependencies, "bfm_catalog", &key, "structured_dependencies")?,
                    encode(&r.tags, "bfm_catalog", &key, "tags")?,
                ])
            })
            .collect::<Result<_>>()?;
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for (chunk, lists) in changed.chunks(CHUNK).zip(lists.chunks(CHUNK)) {
                let mut q = sqlx::query(AssertSqlSafe(sql(chunk.len())));
                for (r, [deps, structured, tags]) in chunk.iter().zip(lists) {
                    q = q
                        .bind(r.migration_id.clone())
                        .bind(r.version.clone())
                        .bind(r.name.clone())
                        .bind(r.connection.clone())
                        .bind(r.backend.clone())
                        .bind(r.declared_schema.clone())
                        .bind(r.checksum.value.clone())
                        .bind(r.checksum.algorithm as i64)
                        .bind(r.up_file.clone())
                        .bind(r.down_file.clone())
                        .bind(deps.clone())
                        .bind(structured.clone())
                        .bind(tags.clone())
                        .bind(r.present)
                        .bind(r.first_seen_at)
                        .bind(r.updated_at);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(report)
        })
    }

    pub(super) async fn insert_run(&self, run: &RunRecord) -> Result<()> {
        let sql = self.dialect.sql(
            "INSERT INTO {bfm_runs} (run_id, command, host, pid, executed_by, started_at, heartbeat_at, finished_at, connections) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        let connections = encode(&run.connections, "bfm_runs", &format!("run {}", run.run_id), "connections")?;
        on_pool!(self, p => {
            sqlx::query(AssertSqlSafe(sql))
                .bind(run.run_id.clone())
                .bind(run.command.clone())
                .bind(run.host.clone())
                .bind(run.pid)
                .bind(run.executed_by.clone())
                .bind(run.started_at)
                .bind(run.heartbeat_at)
                .bind(run.finished_at)
                .bind(connections)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    pub(super) async fn beat(&self, run_id: &str) -> Result<()> {
        let sql = self.dialect.sql("UPDATE {bfm_runs} SET heartbeat_at = ? WHERE run_id = ?");
        on_pool!(self, p => {
            sqlx::query(AssertSqlSafe(sql)).bind(Utc::now()).bind(run_id.to_string()).execute(p).await?;
            Ok(())
        })
    }

    pub(super) async fn end_run(&self, run_id: &str) -> Result<()> {
        let sql = self.dialect.sql("UPDATE {bfm_runs} SET finished_at = ?, heartbeat_at = ? WHERE run_id = ?");
        let now: DateTime<Utc> = Utc::now();
        on_pool!(self, p => {
            sqlx::query(AssertSqlSafe(sql)).bind(now).bind(now).bind(run_id.to_string()).execute(p).await?;
            Ok(())
        })
    }

    pub(super) async fn write_schema_snapshot(
        &self,
        connection: &str,
        fingerprint: &str,
        taken_at: DateTime<Utc>,
        snapshot_json: &str,
    ) -> Result<()> {
        let cols = ["connection", "fingerprint", "taken_at", "snapshot"];
        let sql = self.dialect.upsert("bfm_schema_snapshots", &cols, &["connection"], 1);
        on_pool!(self, p => {
            sqlx::query(AssertSqlSafe(sql))
                .bind(connection.to_string())
                .bind(fingerprint.to_string())
                .bind(taken_at)
                .bind(snapshot_json.to_string())
                .execute(p)
                .await?;
            Ok(())
        })
    }
}

/// A list as the JSON text its column holds.
fn encode<T: Serialize>(value: &T, table: &'static str, key: &str, column: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StateError::Encode { table, key: key.to_string(), column, source })
}
