//! The service API: every operation the HTTP and gRPC surfaces offer, with BfM's semantics where
//! they are right and the fixes where they are not. Surfaces translate their wire format into
//! these calls and map [`ServiceError`] to status codes; nothing else.

pub mod dto;
mod schema;

use crate::engine::Prepared;
use crate::engine::{Engine, EngineError};
use crate::execute::{ProgressSink, RunOptions};
use bfm_core::{Catalog, Lookup, Migration, MissingSchema, PlanRequest, Selector, Status, TagFilter};
use bfm_state::{ExecutionContext, HistoryFilter, Operation, StateFilter, StateRow};
use chrono::{DateTime, SecondsFormat, Utc};
use dto::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// What kind of failure, for the surfaces' status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (400 / InvalidArgument).
    BadRequest,
    /// The migration is unknown (404 / NotFound).
    NotFound,
    /// The request is valid but the state does not allow it (400 / FailedPrecondition).
    Precondition,
    /// The request conflicts with the current state of the target: another apply holds the
    /// lock, the schema changed since the plan, an approval is missing (409 / Aborted).
    Conflict,
    /// A target database could not be reached (503 / Unavailable).
    Unavailable,
    /// A dependency (state store, target) failed (500 / Internal).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ServiceError {
    pub fn bad_request(message: impl Into<String>) -> ServiceError {
        ServiceError { kind: ErrorKind::BadRequest, message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> ServiceError {
        ServiceError { kind: ErrorKind::NotFound, message: message.into() }
    }
    pub fn precondition(message: impl Into<String>) -> ServiceError {
        ServiceError { kind: ErrorKind::Precondition, message: message.into() }
    }
    pub fn conflict(message: impl Into<String>) -> ServiceError {
        ServiceError { kind: ErrorKind::Conflict, message: message.into() }
    }
    pub fn internal(message: impl Into<String>) -> ServiceError {
        ServiceError { kind: ErrorKind::Internal, message: message.into() }
    }
}

/// Who asks, and how a run started by the request is labelled, observed and stopped.
#[derive(Clone)]
pub struct Call {
    pub context: ExecutionContext,
    /// Recorded with the run (`POST /api/v1/migrations/up`, `grpc Migrate`, …).
    pub command: String,
    /// Progress events of the run.
    pub sink: Option<ProgressSink>,
    /// Set to stop the run after the current step of each chain.
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Call {
    pub fn new(context: ExecutionContext, command: &str) -> Call {
        Call { context, command: command.to_string(), sink: None, cancel: None }
    }

    fn options(&self) -> RunOptions {
        let mut o = RunOptions::new(self.context.clone(), &self.command);
        o.cancel = self.cancel.clone();
        o
    }
}

/// An up request, validated and planned, not yet run ([`Service::prepare_up`]).
pub struct UpRun {
    prepared: Prepared,
    dry_run: bool,
    options: RunOptions,
    sink: Option<ProgressSink>,
}

impl UpRun {
    /// Whether the request was a dry run (nothing will be executed).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The steps that will run, in plan order: (display id, base id, schema, connection).
    pub fn steps(&self) -> Vec<(String, String, String, String)> {
        self.prepared
            .plan
            .steps
            .iter()
            .map(|s| (s.display_id(), s.migration.id.clone(), s.schema.clone(), s.migration.connection.clone()))
            .collect()
    }

    /// Selected steps that will not run, with why (already applied, …).
    pub fn skipped(&self) -> Vec<(String, String)> {
        self.prepared.plan.skipped.iter().map(|s| (s.display_id(), s.reason.to_string())).collect()
    }

    /// Where the run's progress events go (replacing the call's sink).
    pub fn set_sink(&mut self, sink: ProgressSink) {
        self.sink = Some(sink);
    }

    /// Problems of the plan as a whole (a missing dependency, a cycle, …).
    pub fn errors(&self) -> Vec<String> {
        self.prepared.plan.errors.iter().map(|e| e.to_string()).collect()
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> ServiceError {
        let kind = match &e {
            EngineError::UnknownConnection { .. } | EngineError::Ambiguous { .. } | EngineError::Invalid(_) => ErrorKind::BadRequest,
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Config(_) | EngineError::State(_) | EngineError::Target(_) => ErrorKind::Internal,
            EngineError::Schema(s) => schema_error_kind(s),
        };
        ServiceError { kind, message: e.to_string() }
    }
}

fn schema_error_kind(e: &bfm_schema::SchemaError) -> ErrorKind {
    use bfm_schema::SchemaError as S;
    match e {
        S::InvalidUrl(_)
        | S::Io { .. }
        | S::Load { .. }
        | S::Lex { .. }
        | S::NoSource(_)
        | S::InvalidApproval { .. }
        | S::FormatVersion { .. } => ErrorKind::BadRequest,
        S::FingerprintMismatch { .. } | S::VersionMismatch { .. } | S::ApprovalRequired { .. } | S::LockTimeout { .. } => {
            ErrorKind::Conflict
        }
        S::Connect { .. } => ErrorKind::Unavailable,
        S::Database { .. } | S::Step { .. } | S::Snapshot(_) => ErrorKind::Internal,
    }
}

impl From<bfm_state::StateError> for ServiceError {
    fn from(e: bfm_state::StateError) -> ServiceError {
        ServiceError::internal(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The aggregate status of a migration over its schemas: failed > running > applied >
/// rolled back > pending.
fn aggregate(counts: &BTreeMap<String, i64>) -> &'static str {
    let has = |s: &str| counts.get(s).is_some_and(|n| *n > 0);
    if has("failed") {
        "failed"
    } else if has("running") {
        "running"
    } else if has("applied") {
        "applied"
    } else if has("rolled_back") {
        "rolled_back"
    } else {
        "pending"
    }
}

pub struct Service {
    engine: Arc<Engine>,
}

impl Service {
    pub fn new(engine: Arc<Engine>) -> Service {
        Service { engine }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn selector(target: Option<&MigrationTarget>) -> Result<Selector> {
        let Some(t) = target else { return Ok(Selector::default()) };
        let tags = TagFilter::parse(&t.tags).map_err(|e| ServiceError::bad_request(format!("target.tags: {e}")))?;
        Ok(Selector {
            backend: non_empty(&t.backend).map(str::to_string),
            connection: non_empty(&t.connection).map(str::to_string),
            schema: non_empty(&t.schema).map(str::to_string),
            tables: t.tables.iter().filter(|s| !s.trim().is_empty()).cloned().collect(),
            version: non_empty(&t.version).map(str::to_string),
            tags,
            ids: Vec::new(),
        })
    }

    fn validate_schemas(field: &str, schemas: &[String]) -> Result<()> {
        for (i, s) in schemas.iter().enumerate() {
            bfm_core::validate_schema_name(s).map_err(|e| ServiceError::bad_request(format!("{field}[{i}]: {e}")))?;
        }
        Ok(())
    }

    /// Schema names from a request, checked with the general rule and the backend's own (an
    /// etcd schema may not reach bfm's reserved keys).
    fn validate_schemas_for(&self, connection: &str, field: &str, schemas: &[String]) -> Result<()> {
        Self::validate_schemas(field, schemas)?;
        if let Some(kind) = self.engine.config().connections.get(connection).map(|c| c.kind) {
            for (i, s) in schemas.iter().enumerate() {
                bfm_targets::validate_request_schema(kind, s).map_err(|e| ServiceError::bad_request(format!("{field}[{i}]: {e}")))?;
            }
        }
        Ok(())
    }

    fn require_connection(&self, connection: &Option<String>) -> Result<String> {
        let c = non_empty(connection).ok_or_else(|| ServiceError::bad_request("connection: is required"))?;
        self.engine.ensure_connection(c).map_err(|e| ServiceError::bad_request(format!("connection: {e}")))?;
        Ok(c.to_string())
    }

    /// Run (or plan) an up request and report it in BfM's shape.
    async fn up(&self, req: PlanRequest, dry_run: bool, options: RunOptions, sink: Option<ProgressSink>) -> Result<MigrateResponse> {
        let prepared = self.engine.prepare(&req).await?;
        self.run_up(UpRun { prepared, dry_run, options, sink }).await
    }

    /// Run a prepared up request (or report its plan, for a dry run).
    pub async fn run_up(&self, run: UpRun) -> Result<MigrateResponse> {
        let UpRun { prepared, dry_run, options, sink } = run;
        if dry_run {
            let errors: Vec<String> = prepared.plan.errors.iter().map(|e| e.to_string()).collect();
            return Ok(MigrateResponse {
                success: errors.is_empty(),
                applied: prepared.plan.steps.iter().map(|s| format!("{} (dry-run)", s.display_id())).collect(),
                skipped: prepared.plan.skipped.iter().map(|s| s.display_id()).collect(),
                errors,
            });
        }
        let report = self.engine.run(prepared, options, sink).await?;
        Ok(MigrateResponse { success: report.success, applied: report.applied, skipped: report.skipped, errors: report.errors })
    }

    /// The selection of a request: its target, and the request's connection when the target
    /// names none (a request is about one connection; dependencies elsewhere are still pulled in).
    fn request_selector(target: Option<&MigrationTarget>, connection: &str) -> Result<Selector> {
        let mut s = Self::selector(target)?;
        s.connection.get_or_insert_with(|| connection.to_string());
        Ok(s)
    }

    /// `POST /api/v1/migrations/up`.
    pub async fn migrate_up(
        &self,
        req: MigrateUpRequest,
        context: ExecutionContext,
        sink: Option<ProgressSink>,
    ) -> Result<MigrateResponse> {
        let mut call = Call::new(context, "POST /api/v1/migrations/up");
        call.sink = sink;
        let run = self.prepare_up(req, call).await?;
        self.run_up(run).await
    }

    /// Validate and plan an up request without running it: every request mistake and every
    /// failure to plan is reported here, before anything runs (a stream starts only then).
    pub async fn prepare_up(&self, req: MigrateUpRequest, call: Call) -> Result<UpRun> {
        let connection = self.require_connection(&req.connection)?;
        let selector = Self::request_selector(req.target.as_ref(), &connection)?;
        self.validate_schemas_for(&connection, "schemas", &req.schemas)?;
        let pattern = non_empty(&req.schema_pattern).map(str::to_string);
        if let Some(p) = &pattern {
            crate::validate_schema_pattern(p).map_err(|e| ServiceError::bad_request(format!("schema_pattern: {e}")))?;
        }
        let schemas = if pattern.is_some() || req.tenants {
            let sel = crate::SchemaSelection { names: req.schemas.clone(), pattern, tenants: req.tenants };
            self.engine.select_schemas(&connection, &sel).await.map_err(|e| match e {
                EngineError::Invalid(m) => ServiceError::bad_request(m),
                other => other.into(),
            })?
        } else {
            req.schemas.clone()
        };
        let selected_none = schemas.is_empty() && (req.schema_pattern.is_some() || req.tenants);
        let mut plan = PlanRequest::up(selector);
        plan.schemas = schemas;
        plan.ignore_dependencies = req.ignore_dependencies;
        plan.allow_modified = req.allow_modified;
        // A pattern that matches no tenant leaves nothing to do per tenant; not an error.
        plan.missing_schema = if selected_none { MissingSchema::Skip } else { MissingSchema::Error };
        let mut options = call.options();
        options.environment = req.environment.clone();
        let prepared = self.engine.prepare(&plan).await?;
        Ok(UpRun { prepared, dry_run: req.dry_run, options, sink: call.sink })
    }

    /// Check schema names from a request field (`schema`, `schemas`) for a connection: the
    /// general rule and the backend's own. For surfaces that merge several fields into one list.
    pub fn validate_request_schemas(&self, connection: &str, field: &str, schemas: &[String]) -> Result<()> {
        self.validate_schemas_for(connection, field, schemas)
    }

    /// `POST /api/v1/migrate`: one schema, an environment.
    pub async fn migrate(&self, req: MigrateRequest, context: ExecutionContext, sink: Option<ProgressSink>) -> Result<MigrateResponse> {
        let connection = self.require_connection(&req.connection)?;
        let selector = Self::request_selector(req.target.as_ref(), &connection)?;
        let schemas: Vec<String> = non_empty(&req.schema).map(|s| vec![s.to_string()]).unwrap_or_default();
        self.validate_schemas_for(&connection, "schema", &schemas)
            .map_err(|e| ServiceError::bad_request(e.message.replace("schema[0]", "schema")))?;
        let mut plan = PlanRequest::up(selector);
        plan.schemas = schemas;
        plan.ignore_dependencies = req.ignore_dependencies;
        plan.missing_schema = MissingSchema::Error;
        let mut options = RunOptions::new(context, "POST /api/v1/migrate");
        options.environment = non_empty(&req.environment).map(str::to_string);
        self.up(plan, req.dry_run, options, sink).await
    }

    fn resolve(&self, id: &str) -> Result<(Arc<Migration>, Option<String>)> {
        match self.engine.catalog().lookup(id) {
            Lookup::Found { migration, schema } => Ok((migration, schema)),
            Lookup::NotFound => Err(ServiceError::not_found("migration not found")),
            Lookup::Ambiguous(c) => Err(ServiceError::bad_request(format!("ambiguous migration id {id:?}: matches {}", c.join(", ")))),
        }
    }

    /// `POST /api/v1/migrations/down`.
    pub async fn migrate_down(&self, req: MigrateDownRequest, context: ExecutionContext) -> Result<MigrateResponse> {
        self.migrate_down_as(req, Call::new(context, "POST /api/v1/migrations/down")).await
    }

    /// Down, started by `call` (its context and command are recorded).
    pub async fn migrate_down_as(&self, req: MigrateDownRequest, call: Call) -> Result<MigrateResponse> {
        let id = non_empty(&req.migration_id).ok_or_else(|| ServiceError::bad_request("migration_id: is required"))?;
        let (m, prefixed) = self.resolve(id)?;
        self.validate_schemas_for(&m.connection, "schemas", &req.schemas)?;
        let mut schemas = req.schemas.clone();
        if schemas.is_empty() {
            schemas.extend(prefixed);
        }
        let (resp, _) = self.down(&m, schemas, req.dry_run, Operation::Down, call).await?;
        Ok(resp)
    }

    /// Shared by down and rollback. Returns the response and whether nothing was applied.
    async fn down(&self, m: &Migration, schemas: Vec<String>, dry_run: bool, op: Operation, call: Call) -> Result<(MigrateResponse, bool)> {
        if m.is_dynamic() && m.kind.has_schemas() && schemas.is_empty() && !m.kind.runs_dynamic_without_schema() {
            return Err(ServiceError::bad_request(format!("schemas: {} runs per tenant; name the schemas to roll back", m.id)));
        }
        let selector = Selector { ids: vec![(m.id.clone(), None)], ..Default::default() };
        let mut plan = PlanRequest::down(selector);
        plan.schemas = schemas;
        let prepared = self.engine.prepare(&plan).await?;
        let not_applied: Vec<String> = prepared
            .plan
            .skipped
            .iter()
            .filter(|s| s.reason == bfm_core::SkipReason::NotApplied)
            .map(|s| format!("{} (not applied)", s.display_id()))
            .collect();
        let nothing = prepared.plan.steps.is_empty() && prepared.plan.errors.is_empty();
        if dry_run || prepared.plan.steps.is_empty() {
            let errors: Vec<String> = prepared.plan.errors.iter().map(|e| e.to_string()).collect();
            return Ok((
                MigrateResponse {
                    success: errors.is_empty(),
                    applied: if dry_run {
                        prepared.plan.steps.iter().map(|s| format!("{} (dry-run)", s.display_id())).collect()
                    } else {
                        Vec::new()
                    },
                    skipped: not_applied,
                    errors,
                },
                nothing,
            ));
        }
        let mut options = call.options();
        options.down_operation = op;
        let report = self.engine.run(prepared, options, call.sink.clone()).await?;
        let mut skipped = not_applied;
        skipped.extend(report.steps.iter().filter(|s| s.outcome == crate::StepOutcomeKind::Skipped).map(|s| s.id.clone()));
        Ok((MigrateResponse { success: report.success, applied: report.applied, skipped, errors: report.errors }, false))
    }

    /// `POST /api/v1/migrations/{id}/rollback`. The flag is true when there was nothing to roll
    /// back (BfM answers 400 then).
    pub async fn rollback(&self, id: &str, req: RollbackRequest, context: ExecutionContext) -> Result<(RollbackResponse, bool)> {
        self.rollback_as(id, req, Call::new(context, "POST /api/v1/migrations/{id}/rollback")).await
    }

    /// Rollback, started by `call` (its context and command are recorded).
    pub async fn rollback_as(&self, id: &str, req: RollbackRequest, call: Call) -> Result<(RollbackResponse, bool)> {
        let (m, prefixed) = self.resolve(id)?;
        self.validate_schemas_for(&m.connection, "schemas", &req.schemas)?;
        if m.down.is_none() {
            let msg = "migration does not have rollback SQL".to_string();
            return Ok((
                RollbackResponse { success: false, message: msg.clone(), applied: Vec::new(), skipped: Vec::new(), errors: vec![msg] },
                false,
            ));
        }
        let mut schemas = req.schemas.clone();
        if schemas.is_empty() {
            schemas.extend(prefixed);
        }
        let (r, nothing) = self.down(&m, schemas, false, Operation::Rollback, call).await?;
        let success = r.errors.is_empty() && !r.applied.is_empty();
        let message = if nothing || (r.applied.is_empty() && r.errors.is_empty()) {
            "no migrations to rollback".to_string()
        } else if success {
            format!("rollback completed successfully for {} schema(s)", r.applied.len())
        } else {
            "rollback failed".to_string()
        };
        let nothing = message == "no migrations to rollback";
        Ok((RollbackResponse { success, message, applied: r.applied, skipped: r.skipped, errors: r.errors }, nothing))
    }

    /// `POST /api/v1/migrations/order-batch`.
    pub fn order_batch(&self, req: OrderBatchRequest) -> Result<OrderBatchResponse> {
        let ids = req.migration_ids.ok_or_else(|| ServiceError::bad_request("migration_ids: is required"))?;
        let connection = non_empty(&req.connection).ok_or_else(|| ServiceError::bad_request("connection: is required"))?;
        let catalog = self.engine.catalog();
        let mut unknown = Vec::new();
        let mut base_of: Vec<(String, String)> = Vec::new();
        for id in &ids {
            match catalog.lookup(id) {
                Lookup::Found { migration, .. } => {
                    if migration.connection != connection {
                        return Err(ServiceError::bad_request(format!(
                            "migration {id} belongs to connection \"{}\", expected \"{connection}\"",
                            migration.connection
                        )));
                    }
                    base_of.push((id.clone(), migration.id.clone()));
                }
                _ => unknown.push(id.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(ServiceError::bad_request(format!("unknown migration_id(s): {}", unknown.join(", "))));
        }
        let bases: Vec<String> = base_of.iter().map(|(_, b)| b.clone()).collect();
        let ordered = bfm_core::plan::order(&catalog, &bases).map_err(|e| ServiceError::bad_request(e.to_string()))?;
        let mut out = Vec::with_capacity(ids.len());
        for b in ordered {
            out.extend(base_of.iter().filter(|(_, base)| *base == b).map(|(input, _)| input.clone()));
        }
        Ok(OrderBatchResponse { ordered_migration_ids: out })
    }

    /// `GET /api/v1/migrations`: stable order (version, id), filters, paging, total.
    pub async fn list(&self, q: ListQuery) -> Result<ListResponse> {
        let catalog = self.engine.catalog();
        let tags: Vec<String> = non_empty(&q.tag).map(|t| t.split(',').map(str::to_string).collect()).unwrap_or_default();
        let tag_filter = TagFilter::parse(&tags).map_err(|e| ServiceError::bad_request(format!("tag: {e}")))?;
        if let Some(s) = non_empty(&q.status)
            && Status::parse(s).is_none()
            && s != "missing"
        {
            return Err(ServiceError::bad_request(format!(
                "status: unknown status {s:?} (pending, applied, failed, rolled_back, running, missing)"
            )));
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
                candidates.retain(|m| aggregate(c.get(&m.id).unwrap_or(&BTreeMap::new())) == st);
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

    /// Per migration: status → (count), plus the latest applied_at under the key `_applied_at`.
    async fn counts(&self, ids: &[String]) -> Result<HashMap<String, BTreeMap<String, i64>>> {
        let mut out: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
        // Keep IN lists bounded.
        for chunk in ids.chunks(500) {
            for c in self.engine.state().status_counts(Some(chunk)).await? {
                let e = out.entry(c.migration_id.clone()).or_default();
                *e.entry(c.status.as_str().to_string()).or_default() += c.count;
                if let Some(t) = c.last_applied_at {
                    let v = t.timestamp();
                    let cur = e.entry("_applied_at".into()).or_default();
                    *cur = (*cur).max(v);
                }
            }
        }
        Ok(out)
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
        let (base, schema, m) = self.known(id).await?;
        // A fixed migration's base id means its declared schema.
        let schema = schema.or_else(|| m.as_ref().and_then(|m| m.schema.clone()));
        let rows = self.rows(&base, schema.as_deref()).await?;
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for r in &rows {
            *counts.entry(r.status.as_str().to_string()).or_default() += 1;
        }
        let status = aggregate(&counts).to_string();
        let applied_at = rows.iter().filter(|r| r.status == Status::Applied).filter_map(|r| r.applied_at).max().map(ts);
        let error_message = rows.iter().filter(|r| r.status == Status::Failed).find_map(|r| r.error.clone());
        Ok(MigrationStatusResponse { migration_id: id.to_string(), applied: status == "applied", status, applied_at, error_message })
    }

    /// `GET /api/v1/migrations/{id}/applied`.
    pub async fn applied(&self, id: &str) -> Result<AppliedResponse> {
        match self.status(id).await {
            Ok(s) => Ok(AppliedResponse { applied: s.applied }),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(AppliedResponse { applied: false }),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/migrations/{id}/history`: newest first.
    pub async fn history(&self, id: &str) -> Result<MigrationHistoryResponse> {
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
        let executions = match self.known(id).await {
            Ok((base, schema, _)) => {
                let rows = self
                    .engine
                    .state()
                    .states(&StateFilter { migration_id: Some(base), schema, newest_first: true, ..Default::default() })
                    .await?;
                rows.into_iter().map(Self::execution).collect()
            }
            Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
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
            Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
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
        let report = self.engine.reload().await?;
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

    /// Readiness: the state store and every connection, each with a short timeout.
    pub async fn health(&self) -> HealthResponse {
        let mut checks = BTreeMap::new();
        let state = tokio::time::timeout(Duration::from_secs(3), self.engine.state().ping()).await;
        checks.insert(
            "state".to_string(),
            match state {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 3 s".to_string(),
            },
        );
        let names: Vec<String> = self.engine.config().connections.keys().cloned().collect();
        let pings = names.iter().map(|name| async move {
            let r = tokio::time::timeout(Duration::from_secs(3), async {
                let t = self.engine.target(name).await.map_err(|e| e.to_string())?;
                t.ping().await.map_err(|e| e.to_string())
            })
            .await;
            let v = match r {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => e,
                Err(_) => "no answer within 3 s".to_string(),
            };
            (name.clone(), v)
        });
        for (name, v) in futures::future::join_all(pings).await {
            checks.insert(format!("connection:{name}"), v);
        }
        let healthy = checks.values().all(|v| v == "ok");
        HealthResponse { status: if healthy { "healthy" } else { "unhealthy" }.to_string(), checks }
    }
}

fn list_item(m: &Migration, counts: Option<&BTreeMap<String, i64>>) -> MigrationListItem {
    let empty = BTreeMap::new();
    let counts = counts.unwrap_or(&empty);
    let status = aggregate(counts).to_string();
    let applied_at = counts.get("_applied_at").and_then(|t| DateTime::from_timestamp(*t, 0)).map(ts);
    MigrationListItem {
        migration_id: m.id.clone(),
        schema: m.schema.clone().unwrap_or_default(),
        table: m.table.clone().unwrap_or_default(),
        version: m.version.to_string(),
        name: m.name.clone(),
        connection: m.connection.clone(),
        backend: m.backend.clone(),
        applied: status == "applied",
        applied_at: if status == "applied" { applied_at } else { None },
        status,
        error_message: None,
        tags: m.tags.clone(),
        schema_status: counts.iter().filter(|(k, _)| !k.starts_with('_')).map(|(k, v)| (k.clone(), *v)).collect(),
    }
}
