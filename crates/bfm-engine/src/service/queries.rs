//! Read-only queries: list, detail, status, history, executions, skipped — and reindex, which
//! reloads the catalogue.

use super::dto::*;
use super::error::{ErrorKind, Field, Result, ServiceError};
use super::summary::{AggregateStatus, MigrationCounts};
use super::{Service, migration_id, non_empty, ts};
use bfm_core::{Catalog, Lookup, Migration, Selector, Status, TagFilter};
use bfm_state::{HistoryFilter, Operation, StateFilter, StateRow};
use std::collections::HashMap;
use std::sync::Arc;

impl Service {
    /// `GET /api/v1/migrations`: stable order (version, id), filters, paging, total.
    pub async fn list(&self, q: ListQuery) -> Result<ListResponse> {
        let catalog = self.engine.catalog();
        let tags: Vec<String> = non_empty(&q.tag).map(|t| t.split(',').map(str::to_string).collect()).unwrap_or_default();
        let tag_filter = TagFilter::parse(&tags).map_err(|e| ServiceError::invalid(Field::Tag, e.to_string()))?;
        if let Some(s) = non_empty(&q.status)
            && Status::parse(s).is_none()
            && s != "missing"
        {
            return Err(ServiceError::invalid(
                Field::Status,
                format!("unknown status {s:?} (pending, applied, failed, rolled_back, running, missing)"),
            ));
        }
        let selector = Selector {
            backend: non_empty(&q.backend).map(str::to_string),
            connection: non_empty(&q.connection).map(str::to_string),
            schema: None,
            tables: non_empty(&q.table).map(|t| vec![t.to_string()]).unwrap_or_default(),
            version: non_empty(&q.version).map(str::to_string),
            tags: tag_filter,
            ids: Vec::new(),
        };
        let mut candidates: Vec<&Arc<Migration>> = catalog.iter().filter(|m| selector.matches(m)).collect();
        let schema = non_empty(&q.schema);
        // Schema and status need the state; query it only for the candidates.
        let need_state_for_all = schema.is_some() || non_empty(&q.status).is_some();
        let (offset, limit) = (q.offset.unwrap_or(0).max(0) as usize, q.limit.filter(|l| *l > 0).map(|l| l as usize));
        let mut missing_rows: Vec<MigrationListItem> = Vec::new();
        let counts = if need_state_for_all {
            let ids: Vec<String> = candidates.iter().map(|m| m.id.clone()).collect();
            let c = self.counts(&ids).await?;
            if let Some(s) = schema {
                let in_schema: std::collections::HashSet<String> = self
                    .engine
                    .state()
                    .states(&StateFilter { schema: Some(s.to_string()), ..Default::default() })
                    .await?
                    .into_iter()
                    .map(|r| r.migration_id)
                    .collect();
                candidates.retain(|m| m.schema.as_deref() == Some(s) || in_schema.contains(&m.id));
            }
            if let Some(st) = non_empty(&q.status) {
                candidates.retain(|m| c.get(&m.id).map(MigrationCounts::aggregate).unwrap_or(AggregateStatus::Pending).as_str() == st);
            }
            c
        } else {
            HashMap::new()
        };
        if non_empty(&q.status).is_none_or(|s| s == "missing") && schema.is_none() {
            missing_rows = self.missing_items(&catalog, &q).await?;
        }
        let total = (candidates.len() + missing_rows.len()) as i64;
        let page: Vec<&Arc<Migration>> = candidates.iter().skip(offset).take(limit.unwrap_or(usize::MAX)).copied().collect();
        let counts = if need_state_for_all {
            counts
        } else {
            let ids: Vec<String> = page.iter().map(|m| m.id.clone()).collect();
            self.counts(&ids).await?
        };
        let mut items: Vec<MigrationListItem> = page.iter().map(|m| list_item(m, counts.get(&m.id))).collect();
        let room = limit.map(|l| l.saturating_sub(items.len())).unwrap_or(usize::MAX);
        let skip_missing = offset.saturating_sub(candidates.len());
        items.extend(missing_rows.into_iter().skip(skip_missing).take(room));
        Ok(ListResponse { items, total })
    }

    /// Migrations recorded in the state store but no longer on disk.
    async fn missing_items(&self, catalog: &Catalog, q: &ListQuery) -> Result<Vec<MigrationListItem>> {
        let rows = self.engine.state().missing_catalog().await?;
        let mut out = Vec::new();
        for r in rows.into_iter().filter(|r| catalog.get(&r.migration_id).is_none()) {
            if non_empty(&q.connection).is_some_and(|c| c != r.connection) || non_empty(&q.version).is_some_and(|v| v != r.version) {
                continue;
            }
            if non_empty(&q.backend).is_some_and(|b| bfm_core::BackendKind::parse(b) != bfm_core::BackendKind::parse(&r.backend)) {
                continue;
            }
            out.push(MigrationListItem {
                migration_id: r.migration_id,
                schema: r.declared_schema.unwrap_or_default(),
                version: r.version,
                name: r.name,
                connection: r.connection,
                backend: r.backend,
                status: "missing".into(),
                tags: r.tags,
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// All state rows of a migration, optionally in one schema.
    async fn rows(&self, id: &str, schema: Option<&str>) -> Result<Vec<StateRow>> {
        Ok(self
            .engine
            .state()
            .states(&StateFilter { migration_id: Some(id.to_string()), schema: schema.map(str::to_string), ..Default::default() })
            .await?)
    }

    /// Resolve an id against the catalogue, then against migrations known only to the state
    /// store (missing from disk). Returns (base id, schema, migration if on disk).
    async fn known(&self, id: &str) -> Result<(String, Option<String>, Option<Arc<Migration>>)> {
        match self.engine.catalog().lookup(id) {
            Lookup::Found { migration, schema } => Ok((migration.id.clone(), schema, Some(migration))),
            Lookup::Ambiguous(c) => Err(ServiceError::bad_request(format!("ambiguous migration id {id:?}: matches {}", c.join(", ")))),
            Lookup::NotFound => {
                let rows = self.engine.state().missing_catalog().await?;
                let ids: Vec<&str> = rows.iter().map(|r| r.migration_id.as_str()).collect();
                if ids.contains(&id) {
                    return Ok((id.to_string(), None, None));
                }
                for (pos, _) in id.match_indices('_') {
                    if ids.contains(&&id[pos + 1..]) {
                        return Ok((id[pos + 1..].to_string(), Some(id[..pos].to_string()), None));
                    }
                }
                Err(ServiceError::not_found("migration not found"))
            }
        }
    }

    /// `GET /api/v1/migrations/{id}`.
    pub async fn detail(&self, id: &str) -> Result<MigrationDetailResponse> {
        let id = migration_id(id)?;
        let (base, schema, m) = self.known(id).await?;
        let status = self.status(id).await?;
        match m {
            Some(m) => Ok(MigrationDetailResponse {
                migration_id: m.id.clone(),
                schema: m.schema.clone().or(schema).unwrap_or_default(),
                table: m.table.clone().unwrap_or_default(),
                version: m.version.to_string(),
                name: m.name.clone(),
                connection: m.connection.clone(),
                backend: m.backend.clone(),
                applied: status.applied,
                up_sql: Some(m.up.text.to_string()),
                down_sql: m.down.as_ref().map(|d| d.text.to_string()),
                dependencies: m.dependencies.clone(),
                structured_dependencies: m
                    .structured_dependencies
                    .iter()
                    .map(|d| DependencyResponse {
                        connection: d.connection.clone().unwrap_or_default(),
                        schema: d.schema.clone().unwrap_or_default(),
                        target: d.target.clone(),
                        target_type: d.target_type.as_str().to_string(),
                        requires_table: d.requires_table.clone(),
                        requires_schema: d.requires_schema.clone(),
                    })
                    .collect(),
                tags: m.tags.clone(),
                status: status.status,
                checksum: Some(m.checksum.to_string()),
                missing: false,
            }),
            None => {
                let rows = self.engine.state().missing_catalog().await?;
                let r = rows.into_iter().find(|r| r.migration_id == base).ok_or_else(|| ServiceError::not_found("migration not found"))?;
                Ok(MigrationDetailResponse {
                    migration_id: r.migration_id,
                    schema: r.declared_schema.or(schema).unwrap_or_default(),
                    version: r.version,
                    name: r.name,
                    connection: r.connection,
                    backend: r.backend,
                    applied: status.applied,
                    dependencies: r.dependencies,
                    tags: r.tags,
                    status: status.status,
                    checksum: Some(r.checksum.to_string()),
                    missing: true,
                    ..Default::default()
                })
            }
        }
    }

    /// `GET /api/v1/migrations/{id}/status`: from the current state, per schema when the id
    /// names one; rollbacks are visible.
    pub async fn status(&self, id: &str) -> Result<MigrationStatusResponse> {
        let id = migration_id(id)?;
        let (base, schema, m) = self.known(id).await?;
        // A fixed migration's base id means its declared schema.
        let schema = schema.or_else(|| m.as_ref().and_then(|m| m.schema.clone()));
        let rows = self.rows(&base, schema.as_deref()).await?;
        let mut counts = MigrationCounts::default();
        for r in &rows {
            counts.add(r.status, 1);
        }
        let status = counts.aggregate();
        let applied_at = rows.iter().filter(|r| r.status == Status::Applied).filter_map(|r| r.applied_at).max().map(ts);
        let error_message = rows.iter().filter(|r| r.status == Status::Failed).find_map(|r| r.error.clone());
        Ok(MigrationStatusResponse {
            migration_id: id.to_string(),
            applied: status == AggregateStatus::Applied,
            status: status.as_str().to_string(),
            applied_at,
            error_message,
        })
    }

    /// `GET /api/v1/migrations/{id}/applied`.
    pub async fn applied(&self, id: &str) -> Result<AppliedResponse> {
        let id = migration_id(id)?;
        match self.status(id).await {
            Ok(s) => Ok(AppliedResponse { applied: s.applied }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(AppliedResponse { applied: false }),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/migrations/{id}/history`: newest first.
    pub async fn history(&self, id: &str) -> Result<MigrationHistoryResponse> {
        let id = migration_id(id)?;
        let (base, schema, _) = self.known(id).await?;
        let rows = self.engine.state().history(&HistoryFilter { migration_id: Some(base), schema, ..Default::default() }).await?;
        let history = rows
            .into_iter()
            .filter(|h| h.operation != "skip")
            .map(|h| MigrationHistoryItem {
                migration_id: h.migration_id,
                schema: h.schema,
                table: String::new(),
                version: h.version,
                connection: h.connection,
                backend: h.backend,
                applied_at: ts(h.finished_at),
                status: h.status,
                error_message: h.error.unwrap_or_default(),
                executed_by: h.executed_by,
                execution_method: h.execution_method,
                execution_context: h.execution_context,
                operation: h.operation,
            })
            .collect();
        Ok(MigrationHistoryResponse { migration_id: id.to_string(), history })
    }

    fn execution(r: StateRow) -> MigrationExecution {
        MigrationExecution {
            id: if r.schema.is_empty() { r.migration_id.clone() } else { format!("{}_{}", r.schema, r.migration_id) },
            applied: r.status == Status::Applied,
            status: r.status.as_str().to_string(),
            applied_at: r.applied_at.map(ts),
            created_at: ts(r.updated_at),
            updated_at: ts(r.updated_at),
            error_message: if r.status == Status::Failed { r.error } else { None },
            migration_id: r.migration_id,
            schema: r.schema,
            version: r.version,
            connection: r.connection,
            backend: r.backend,
        }
    }

    /// `GET /api/v1/migrations/{id}/executions`: one row per schema, newest first.
    pub async fn executions(&self, id: &str) -> Result<ExecutionsResponse> {
        let id = migration_id(id)?;
        let executions = match self.known(id).await {
            Ok((base, schema, _)) => {
                let rows = self
                    .engine
                    .state()
                    .states(&StateFilter { migration_id: Some(base), schema, newest_first: true, ..Default::default() })
                    .await?;
                rows.into_iter().map(Self::execution).collect()
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(ExecutionsResponse { migration_id: Some(id.to_string()), executions })
    }

    /// `GET /api/v1/migrations/executions/recent?limit=N` (default 10).
    pub async fn recent_executions(&self, limit: Option<i64>) -> Result<ExecutionsResponse> {
        let limit = limit.filter(|l| *l > 0).unwrap_or(10).min(1000);
        let rows = self.engine.state().states(&StateFilter { newest_first: true, limit: Some(limit), ..Default::default() }).await?;
        Ok(ExecutionsResponse { migration_id: None, executions: rows.into_iter().map(Self::execution).collect() })
    }

    fn skipped_item(h: bfm_state::HistoryRow) -> SkippedMigration {
        SkippedMigration {
            id: h.id,
            migration_id: h.migration_id,
            schema: h.schema,
            version: h.version,
            connection: h.connection,
            backend: h.backend,
            executed_by: h.executed_by,
            execution_method: h.execution_method,
            execution_context: h.execution_context,
            skipped_at: ts(h.finished_at),
            created_at: ts(h.finished_at),
        }
    }

    /// `GET /api/v1/migrations/{id}/skipped?limit=N` (default 5).
    pub async fn skipped(&self, id: &str, limit: Option<i64>) -> Result<SkippedResponse> {
        let id = migration_id(id)?;
        let limit = limit.filter(|l| *l > 0).unwrap_or(5).min(1000);
        let skipped = match self.known(id).await {
            Ok((base, schema, _)) => self
                .engine
                .state()
                .history(&HistoryFilter { migration_id: Some(base), schema, operation: Some(Operation::Skip), limit: Some(limit) })
                .await?
                .into_iter()
                .map(Self::skipped_item)
                .collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(SkippedResponse { migration_id: Some(id.to_string()), skipped })
    }

    /// `GET /api/v1/migrations/skipped/recent?limit=N` (default 5).
    pub async fn recent_skipped(&self, limit: Option<i64>) -> Result<SkippedResponse> {
        let limit = limit.filter(|l| *l > 0).unwrap_or(5).min(1000);
        let rows = self
            .engine
            .state()
            .history(&HistoryFilter { operation: Some(Operation::Skip), limit: Some(limit), ..Default::default() })
            .await?;
        Ok(SkippedResponse { migration_id: None, skipped: rows.into_iter().map(Self::skipped_item).collect() })
    }

    /// `POST /api/v1/migrations/reindex`: reload the configured sfm path (never a path from a
    /// request); migrations that disappeared are kept with their history, as `missing`.
    /// Record the catalogue the engine read in the state store (new, changed and missing
    /// migrations), without reading the files again.
    pub async fn record_catalog(&self) -> Result<bfm_state::SyncReport> {
        Ok(self.engine.sync_catalog().await?)
    }

    /// Read the files again and record the new catalogue (the file watcher, reindex).
    pub async fn reload(&self) -> Result<crate::ReloadReport> {
        Ok(self.engine.reload().await?)
    }

    pub async fn reindex(&self) -> Result<ReindexResponse> {
        self.reindex_from(None).await
    }

    /// Reindex with a path named by the request (BfM's gRPC `sfm_path`): bfm reads only its
    /// configured tree, so another path is ignored and the response's `warning` says so.
    pub async fn reindex_from(&self, requested: Option<&str>) -> Result<ReindexResponse> {
        let requested = requested.map(str::trim).filter(|p| !p.is_empty());
        let warning = requested
            .filter(|p| !self.is_configured_sfm_path(p))
            .map(|p| format!("sfm_path {p:?} ignored: bfm reindexes only its configured sfm path (BFM_SFM_PATH)"));
        if let Some(w) = &warning {
            tracing::warn!(warning = %w, "reindex request named another sfm path");
        }
        let report = self.reload().await?;
        Ok(ReindexResponse {
            added: report.sync.added,
            removed: report.sync.missing,
            updated: report.sync.updated,
            total: report.sync.total,
            warning,
        })
    }

    fn is_configured_sfm_path(&self, path: &str) -> bool {
        let Some(configured) = &self.engine.config().sfm_path else { return false };
        let canon = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        configured.as_path() == std::path::Path::new(path)
            || canon(configured).is_some_and(|c| canon(std::path::Path::new(path)).is_some_and(|p| p == c))
    }
}

fn list_item(m: &Migration, counts: Option<&MigrationCounts>) -> MigrationListItem {
    let empty = MigrationCounts::default();
    let counts = counts.unwrap_or(&empty);
    let status = counts.aggregate();
    let applied = status == AggregateStatus::Applied;
    MigrationListItem {
        migration_id: m.id.clone(),
        schema: m.schema.clone().unwrap_or_default(),
        table: m.table.clone().unwrap_or_default(),
        version: m.version.to_string(),
        name: m.name.clone(),
        connection: m.connection.clone(),
        backend: m.backend.clone(),
        applied,
        applied_at: if applied { counts.last_applied_at.map(ts) } else { None },
        status: status.as_str().to_string(),
        error_message: None,
        tags: m.tags.clone(),
        schema_status: counts.by_status.clone(),
    }
}
