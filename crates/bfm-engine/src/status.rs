//! What is applied where: the catalogue joined with the state.

use crate::engine::{Engine, EngineError};
use bfm_core::Status;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct StatusFilter {
    pub connection: Option<String>,
    pub schema: Option<String>,
    pub migration_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub id: String,
    pub migration_id: String,
    pub schema: String,
    pub version: String,
    pub name: String,
    pub connection: String,
    pub backend: String,
    /// `pending`, `running`, `applied`, `failed`, `rolled_back`, `modified` (applied, script
    /// changed since) or `missing` (recorded, no longer on disk).
    pub status: String,
    pub dynamic: bool,
    pub applied_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub tags: Vec<String>,
}

impl Engine {
    pub async fn status(&self, filter: &StatusFilter) -> Result<Vec<StatusRow>, EngineError> {
        if let Err(e) = self.reconcile_dead_runs().await {
            tracing::warn!(error = %e, "reconciling interrupted runs failed");
        }
        let catalog = self.catalog();
        let connections: Vec<String> = match &filter.connection {
            Some(c) => vec![c.clone()],
            None => {
                let mut c: Vec<String> = catalog.iter().map(|m| m.connection.clone()).collect();
                c.sort();
                c.dedup();
                c
            }
        };
        let rows = self.state.snapshot(filter.connection.as_ref().map(|_| connections.as_slice())).await?;
        let mut by_id: HashMap<&str, Vec<&bfm_state::StateRow>> = HashMap::new();
        for r in &rows {
            by_id.entry(r.migration_id.as_str()).or_default().push(r);
        }
        let mut out = Vec::new();
        let schema_ok = |s: &str| filter.schema.as_deref().is_none_or(|f| f == s);
        for m in catalog.iter() {
            if filter.connection.as_deref().is_some_and(|c| c != m.connection)
                || filter.migration_id.as_deref().is_some_and(|id| id != m.id)
            {
                continue;
            }
            let mut found: Vec<&bfm_state::StateRow> = by_id.remove(m.id.as_str()).unwrap_or_default();
            found.retain(|r| schema_ok(&r.schema) && (m.is_dynamic() || Some(&r.schema) == m.schema.as_ref() || m.schema.is_none()));
            let row = |schema: &str, r: Option<&bfm_state::StateRow>| {
                let status = match r {
                    None => "pending".to_string(),
                    Some(r)
                        if r.status == Status::Applied
                            && r.checksum.as_ref().is_some_and(|c| c.algorithm == m.checksum.algorithm && c.value != m.checksum.value) =>
                    {
                        "modified".to_string()
                    }
                    Some(r) => r.status.as_str().to_string(),
                };
                StatusRow {
                    id: m.display_id(schema),
                    migration_id: m.id.clone(),
                    schema: schema.to_string(),
                    version: m.version.to_string(),
                    name: m.name.clone(),
                    connection: m.connection.clone(),
                    backend: m.backend.clone(),
                    status,
                    dynamic: m.is_dynamic() && m.kind.has_schemas(),
                    applied_at: r.and_then(|r| r.applied_at),
                    duration_ms: r.and_then(|r| r.duration_ms),
                    error: r.and_then(|r| r.error.clone()),
                    tags: m.tags.clone(),
                }
            };
            if found.is_empty() {
                let schema = m.schema.clone().unwrap_or_default();
                if schema_ok(&schema) || m.is_dynamic() {
                    out.push(row(filter.schema.as_deref().filter(|_| m.is_dynamic()).unwrap_or(&schema), None));
                }
            } else {
                found.sort_by(|a, b| a.schema.cmp(&b.schema));
                for r in found {
                    out.push(row(&r.schema, Some(r)));
                }
            }
        }
        // Recorded migrations that are no longer on disk.
        let mut missing: Vec<&bfm_state::StateRow> = by_id.into_values().flatten().filter(|r| schema_ok(&r.schema)).collect();
        missing.retain(|r| filter.migration_id.as_deref().is_none_or(|id| id == r.migration_id));
        missing.sort_by(|a, b| (&a.version, &a.migration_id, &a.schema).cmp(&(&b.version, &b.migration_id, &b.schema)));
        for r in missing {
            out.push(StatusRow {
                id: if r.schema.is_empty() { r.migration_id.clone() } else { format!("{}_{}", r.schema, r.migration_id) },
                migration_id: r.migration_id.clone(),
                schema: r.schema.clone(),
                version: r.version.clone(),
                name: r.name.clone(),
                connection: r.connection.clone(),
                backend: r.backend.clone(),
                status: "missing".into(),
                dynamic: false,
                applied_at: r.applied_at,
                duration_ms: r.duration_ms,
                error: r.error.clone(),
                tags: Vec::new(),
            });
        }
        Ok(out)
    }
}
