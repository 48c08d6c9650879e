//! The reads: current states, their counts, history, the catalogue, open runs and schema
//! snapshots. Filters become `WHERE` clauses with bound values; rows are decoded by
//! [`super::decode`], so a corrupt value fails the read.

use super::{DbPool, SqlStateStore};
use crate::{CatalogRow, HistoryFilter, HistoryRow, Result, RunRecord, StateFilter, StateRow, StatusCount};
use sqlx::{AssertSqlSafe, Row};

/// `WHERE a = ? AND b IN (?, ?)` for the given conditions (empty: no clause).
fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) }
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl SqlStateStore {
    pub(super) async fn read_snapshot(&self, connections: Option<&[String]>) -> Result<Vec<StateRow>> {
        let sql = match connections {
            Some(c) if !c.is_empty() => {
                self.dialect.sql(&format!("SELECT * FROM {{bfm_state}} WHERE connection IN ({})", placeholders(c.len())))
            }
            _ => self.dialect.sql("SELECT * FROM {bfm_state}"),
        };
        self.fetch_states(sql, connections.unwrap_or(&[])).await
    }

    /// State rows of a `SELECT * FROM {bfm_state} …` with its bound values, decoded strictly.
    async fn fetch_states(&self, sql: String, binds: &[String]) -> Result<Vec<StateRow>> {
        on_pool!(self, p => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in binds {
                q = q.bind(b.clone());
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_state!(r));
            }
            Ok(out)
        })
    }

    pub(super) async fn read_states(&self, f: &StateFilter) -> Result<Vec<StateRow>> {
        let mut conds = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        for (col, v) in [
            ("migration_id", &f.migration_id),
            ("schema_name", &f.schema),
            ("connection", &f.connection),
            ("status", &f.status.map(|s| s.as_str().to_string())),
        ] {
            if let Some(v) = v {
                conds.push(format!("{col} = ?"));
                binds.push(v.clone());
            }
        }
        if !f.migration_ids.is_empty() {
            conds.push(format!("migration_id IN ({})", placeholders(f.migration_ids.len())));
            binds.extend(f.migration_ids.iter().cloned());
        }
        let filter = where_clause(&conds);
        let limit = f.limit.map(|l| format!(" LIMIT {}", l.max(0))).unwrap_or_default();
        let order = if f.newest_first { "updated_at DESC, migration_id, schema_name" } else { "migration_id, schema_name" };
        let sql = self.dialect.sql(&format!("SELECT * FROM {{bfm_state}}{filter} ORDER BY {order}{limit}"));
        self.fetch_states(sql, &binds).await
    }

    pub(super) async fn read_status_counts(&self, migration_ids: Option<&[String]>) -> Result<Vec<StatusCount>> {
        let ids = migration_ids.unwrap_or(&[]);
        if migration_ids.is_some() && ids.is_empty() {
            return Ok(Vec::new());
        }
        let filter = if ids.is_empty() { String::new() } else { format!(" WHERE migration_id IN ({})", placeholders(ids.len())) };
        let sql = self.dialect.sql(&format!(
            "SELECT migration_id, status, COUNT(*) AS n, MAX(applied_at) AS last_applied_at, MAX(updated_at) AS last_updated_at \
             FROM {{bfm_state}}{filter} GROUP BY migration_id, status"
        ));
        on_pool!(self, p => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in ids {
                q = q.bind(id.clone());
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_status_count!(r));
            }
            Ok(out)
        })
    }

    pub(super) async fn read_history(&self, f: &HistoryFilter) -> Result<Vec<HistoryRow>> {
        let mut conds = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        for (col, v) in
            [("migration_id", &f.migration_id), ("schema_name", &f.schema), ("operation", &f.operation.map(|o| o.as_str().to_string()))]
        {
            if let Some(v) = v {
                conds.push(format!("{col} = ?"));
                binds.push(v.clone());
            }
        }
        let filter = where_clause(&conds);
        let limit = f.limit.map(|l| format!(" LIMIT {}", l.max(0))).unwrap_or_default();
        let sql = self.dialect.sql(&format!("SELECT * FROM {{bfm_history}}{filter} ORDER BY id DESC{limit}"));
        on_pool!(self, p => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in &binds {
                q = q.bind(b.clone());
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_history!(r));
            }
            Ok(out)
        })
    }

    /// Recorded catalogue rows: all, or only those no longer on disk.
    pub(super) async fn read_catalog(&self, missing_only: bool) -> Result<Vec<CatalogRow>> {
        let sql = self.dialect.sql(if missing_only {
            "SELECT * FROM {bfm_catalog} WHERE present = ? ORDER BY version, migration_id"
        } else {
            "SELECT * FROM {bfm_catalog} ORDER BY version, migration_id"
        });
        on_pool!(self, p => {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            if missing_only {
                query = query.bind(false);
            }
            let rows = query.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_catalog!(r));
            }
            Ok(out)
        })
    }

    pub(super) async fn read_open_runs(&self) -> Result<Vec<RunRecord>> {
        let sql = self.dialect.sql("SELECT * FROM {bfm_runs} WHERE finished_at IS NULL ORDER BY started_at");
        on_pool!(self, p => {
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_run!(r));
            }
            Ok(out)
        })
    }

    /// The snapshot's JSON as stored; the engine parses it (and fails on what it cannot read).
    pub(super) async fn read_schema_snapshot(&self, connection: &str) -> Result<Option<String>> {
        let sql = self.dialect.sql("SELECT snapshot FROM {bfm_schema_snapshots} WHERE connection = ?");
        on_pool!(self, p => {
            Ok(sqlx::query_scalar(AssertSqlSafe(sql)).bind(connection.to_string()).fetch_optional(p).await?)
        })
    }
}
