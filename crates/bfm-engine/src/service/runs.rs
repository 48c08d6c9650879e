//! Operations that change the state: up, migrate one schema, down, rollback, retry, accept a
//! changed checksum, reconcile — and ordering ids, which plans without running.

use super::dto::{OrderBatchResponse, RollbackResponse};
use super::error::{Field, FieldRef, Result, ServiceError};
use super::label::{RunHooks, RunLabel};
use super::plan::{PlanView, PlannedRun, RunKind, RunOutcome};
use super::request::*;
use super::{Service, migration_id, non_empty};
use crate::engine::EngineError;
use bfm_core::{Lookup, MissingSchema, PlanRequest, Selector, TagFilter};
use bfm_state::Operation;

/// The result of a rollback: the response, and the decision the surfaces' status codes follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// Rolled back in at least one schema, without errors.
    Done(RollbackResponse),
    /// Nothing was applied where the request asked (BfM answers 400 / FAILED_PRECONDITION).
    Nothing(RollbackResponse),
    /// The migration has no down script.
    NoDownScript(RollbackResponse),
    /// A step failed, or the plan had errors.
    Failed(RollbackResponse),
}

impl RollbackOutcome {
    pub fn response(&self) -> &RollbackResponse {
        match self {
            RollbackOutcome::Done(r) | RollbackOutcome::Nothing(r) | RollbackOutcome::NoDownScript(r) | RollbackOutcome::Failed(r) => r,
        }
    }

    pub fn into_response(self) -> RollbackResponse {
        match self {
            RollbackOutcome::Done(r) | RollbackOutcome::Nothing(r) | RollbackOutcome::NoDownScript(r) | RollbackOutcome::Failed(r) => r,
        }
    }
}

impl Service {
    /// The migrations a filter selects, validated: tags parsed, ids resolved, and — when the
    /// filter's connection is the request's scope (`scope`) — the connection known. A filter
    /// under a named request connection (BfM's `target.connection`) only narrows the selection.
    fn selector(&self, f: &MigrationFilter, scope: bool) -> Result<Selector> {
        let tags = TagFilter::parse(&f.tags).map_err(|e| ServiceError::invalid(Field::TargetTags, e.to_string()))?;
        let mut ids = Vec::with_capacity(f.ids.len());
        for id in &f.ids {
            let (m, schema) = self.engine.resolve(id)?;
            ids.push((m.id.clone(), schema));
        }
        let connection = non_empty(&f.connection).map(str::to_string);
        if let Some(c) = connection.as_ref().filter(|_| scope) {
            self.ensure_connection(c)?;
        }
        Ok(Selector {
            backend: non_empty(&f.backend).map(str::to_string),
            connection,
            schema: non_empty(&f.declared_schema).map(str::to_string),
            tables: f.tables.iter().filter(|s| !s.trim().is_empty()).cloned().collect(),
            version: non_empty(&f.version).map(str::to_string),
            tags,
            ids,
        })
    }

    fn ensure_connection(&self, connection: &str) -> Result<()> {
        self.engine.ensure_connection(connection).map_err(|e| ServiceError::invalid(Field::Connection, e.to_string()))
    }

    fn require_connection(&self, connection: &Option<String>) -> Result<String> {
        let c = non_empty(connection).ok_or_else(|| ServiceError::required(Field::Connection))?;
        self.ensure_connection(c)?;
        Ok(c.to_string())
    }

    /// Schema names of a request field, checked with the general rule and, when the connection
    /// is known, the backend's own (an etcd schema may not reach bfm's reserved keys).
    fn validate_schemas(&self, connection: Option<&str>, field: Field, schemas: &[String]) -> Result<()> {
        for (i, s) in schemas.iter().enumerate() {
            bfm_core::validate_schema_name(s).map_err(|e| ServiceError::invalid(FieldRef::at(field, i), e))?;
        }
        if let Some(kind) = connection.and_then(|c| self.engine.config().connections.get(c)).map(|c| c.kind) {
            for (i, s) in schemas.iter().enumerate() {
                bfm_targets::validate_request_schema(kind, s).map_err(|e| ServiceError::invalid(FieldRef::at(field, i), e))?;
            }
        }
        Ok(())
    }

    /// The execution schemas a request chooses: named ones (each list checked under its
    /// field), plus those a pattern or the tenant query find on the connection.
    async fn choose_schemas(&self, connection: Option<&str>, choice: &SchemaChoice) -> Result<Vec<String>> {
        for (field, names) in &choice.named {
            self.validate_schemas(connection, *field, names)?;
        }
        let mut names: Vec<String> = Vec::new();
        for (_, list) in &choice.named {
            for s in list {
                // Several fields naming the same schema name it once; one list is kept as given.
                if choice.named.len() == 1 || !names.contains(s) {
                    names.push(s.clone());
                }
            }
        }
        let pattern = non_empty(&choice.pattern).map(str::to_string);
        if let Some(p) = &pattern {
            crate::validate_schema_pattern(p).map_err(|e| ServiceError::invalid(Field::SchemaPattern, e))?;
        }
        if !choice.selects() {
            return Ok(names);
        }
        let connection = connection
            .ok_or_else(|| ServiceError::invalid(Field::Connection, "is required to select schemas by pattern or tenant query"))?;
        let sel = crate::engine::SchemaSelection { names, pattern, tenants: choice.tenants };
        self.engine.select_schemas(connection, &sel).await.map_err(|e| match e {
            EngineError::Invalid(m) => ServiceError::bad_request(m),
            other => other.into(),
        })
    }

    /// Validate and plan an up request without running it: every request mistake and every
    /// failure to plan is reported here, before anything runs (a stream starts only then).
    pub async fn plan_up(&self, req: UpRequest, label: RunLabel) -> Result<PlannedRun> {
        let connection = if req.require_connection {
            Some(self.require_connection(&req.connection)?)
        } else {
            let c = non_empty(&req.connection).map(str::to_string);
            if let Some(c) = &c {
                self.ensure_connection(c)?;
            }
            c
        };
        let mut selector = self.selector(&req.migrations, connection.is_none())?;
        // A request about one connection selects in it; dependencies elsewhere are still pulled in.
        if let Some(c) = &connection {
            selector.connection.get_or_insert_with(|| c.clone());
        }
        let schema_connection = connection.clone().or_else(|| selector.connection.clone());
        let schemas = self.choose_schemas(schema_connection.as_deref(), &req.schemas).await?;
        let selected_none = schemas.is_empty() && req.schemas.selects();
        let mut plan = PlanRequest::up(selector);
        // Explicit requests (a connection, ids) report a per-tenant migration without schemas
        // as an error; runs over everything skip it, and so does a pattern that matched no
        // tenant (nothing to do per tenant is not an error).
        let explicit = plan.selector.connection.is_some() || !plan.selector.ids.is_empty();
        plan.missing_schema = if explicit && !selected_none && !req.skip_per_tenant { MissingSchema::Error } else { MissingSchema::Skip };
        plan.schemas = schemas;
        plan.ignore_dependencies = req.ignore_dependencies;
        plan.allow_modified = req.allow_modified;
        let selected = req.schemas.selects().then(|| (schema_connection.unwrap_or_default(), plan.schemas.len()));
        let mut run = self.planned(&plan, RunKind::Up, req.dry_run, req.sql, label, req.environment).await?;
        run.concurrency = req.concurrency;
        run.selected = selected;
        Ok(run)
    }

    async fn planned(
        &self,
        plan: &PlanRequest,
        kind: RunKind,
        dry_run: bool,
        sql: bool,
        label: RunLabel,
        environment: Option<String>,
    ) -> Result<PlannedRun> {
        // The value lands in SQL: only names of a documented shape, checked before planning.
        let environment = environment.filter(|e| !e.is_empty());
        if let Some(env) = &environment {
            bfm_core::validate_environment(env).map_err(|e| ServiceError::invalid(Field::Environment, e))?;
        }
        let prepared = self.engine.prepare(plan).await?;
        let render_env = sql.then(|| environment.clone().unwrap_or_default());
        let view = PlanView::of(&prepared.plan, render_env.as_deref());
        Ok(PlannedRun { prepared, view, dry_run, kind, label, environment, concurrency: None, selected: None })
    }

    /// Run a planned request (or, for a dry run, return its plan).
    pub async fn run(&self, planned: PlannedRun, hooks: RunHooks) -> Result<RunOutcome> {
        let nothing_to_run = matches!(planned.kind, RunKind::DownOne(_)) && planned.view.steps.is_empty();
        if planned.dry_run || nothing_to_run {
            return Ok(RunOutcome { plan: planned.view, report: None, kind: planned.kind, dry_run: planned.dry_run });
        }
        let options = planned.options(&hooks);
        tracing::debug!(surface = planned.label.surface.as_str(), command = %planned.label.command, steps = planned.view.steps.len(), "run starts");
        let PlannedRun { prepared, view, kind, .. } = planned;
        let report = self.engine.run(prepared, options, hooks.progress).await?;
        Ok(RunOutcome { plan: view, report: Some(report), kind, dry_run: false })
    }

    /// Run a planned request for a progress stream: the plan's skips and errors are reported
    /// first; a dry run reports what would run instead of running.
    pub async fn run_streamed(&self, planned: PlannedRun, hooks: RunHooks) -> Result<RunOutcome> {
        if let Some(sink) = &hooks.progress {
            let events = if planned.dry_run { planned.view.dry_run_events() } else { planned.view.plan_events() };
            for e in &events {
                sink(e);
            }
        }
        self.run(planned, hooks).await
    }

    /// Plan and run an up request.
    pub async fn up(&self, req: UpRequest, label: RunLabel, hooks: RunHooks) -> Result<RunOutcome> {
        let planned = self.plan_up(req, label).await?;
        self.run(planned, hooks).await
    }

    /// `POST /api/v1/migrate`: one schema of one connection.
    pub async fn migrate_schema(&self, req: MigrateSchemaRequest, label: RunLabel, hooks: RunHooks) -> Result<RunOutcome> {
        let schemas: Vec<String> = non_empty(&req.schema).map(|s| vec![s.to_string()]).unwrap_or_default();
        let up = UpRequest {
            connection: req.connection,
            require_connection: true,
            migrations: req.migrations,
            schemas: SchemaChoice::names(Field::Schema, schemas),
            ignore_dependencies: req.ignore_dependencies,
            environment: non_empty(&req.environment).map(str::to_string),
            dry_run: req.dry_run,
            ..Default::default()
        };
        self.up(up, label, hooks).await
    }

    /// Validate and plan a down request without running it.
    pub async fn plan_down(&self, req: DownRequest, label: RunLabel) -> Result<PlannedRun> {
        self.plan_down_as(req, Operation::Down, label).await
    }

    async fn plan_down_as(&self, req: DownRequest, op: Operation, label: RunLabel) -> Result<PlannedRun> {
        match &req.target {
            DownTarget::Migration(id) => {
                let (m, prefixed) = self.resolve(migration_id(id)?)?;
                self.validate_schemas(Some(&m.connection), Field::Schemas, &req.schemas)?;
                let mut schemas = req.schemas.clone();
                if schemas.is_empty() {
                    schemas.extend(prefixed);
                }
                if m.is_dynamic() && m.kind.has_schemas() && schemas.is_empty() && !m.kind.runs_dynamic_without_schema() {
                    return Err(ServiceError::invalid(Field::Schemas, format!("{} runs per tenant; name the schemas to roll back", m.id)));
                }
                let mut plan = PlanRequest::down(Selector { ids: vec![(m.id.clone(), None)], ..Default::default() });
                plan.schemas = schemas;
                plan.cascade = req.cascade;
                self.planned(&plan, RunKind::DownOne(op), req.dry_run, req.sql, label, req.environment).await
            }
            DownTarget::Filter(f) => {
                let named = f.ids.is_empty() && non_empty(&f.connection).is_none() && non_empty(&f.version).is_none() && f.tags.is_empty();
                if named {
                    return Err(ServiceError::bad_request("name what to roll back: migration ids, a connection, a version or tags"));
                }
                self.validate_schemas(non_empty(&f.connection), Field::Schemas, &req.schemas)?;
                let mut plan = PlanRequest::down(self.selector(f, true)?);
                plan.schemas = req.schemas.clone();
                plan.cascade = req.cascade;
                self.planned(&plan, RunKind::Down, req.dry_run, req.sql, label, req.environment).await
            }
        }
    }

    /// Plan and run a down request.
    pub async fn down(&self, req: DownRequest, label: RunLabel, hooks: RunHooks) -> Result<RunOutcome> {
        let planned = self.plan_down(req, label).await?;
        self.run(planned, hooks).await
    }

    /// Roll one migration back: its down script, recorded as a rollback.
    pub async fn rollback(&self, req: RollbackRequest, label: RunLabel, hooks: RunHooks) -> Result<RollbackOutcome> {
        let (m, _) = self.resolve(migration_id(&req.migration_id)?)?;
        if m.down.is_none() {
            self.validate_schemas(Some(&m.connection), Field::Schemas, &req.schemas)?;
            let msg = "migration does not have rollback SQL".to_string();
            return Ok(RollbackOutcome::NoDownScript(RollbackResponse {
                success: false,
                message: msg.clone(),
                applied: Vec::new(),
                skipped: Vec::new(),
                errors: vec![msg],
            }));
        }
        let down = DownRequest {
            target: DownTarget::Migration(req.migration_id.trim().to_string()),
            schemas: req.schemas,
            cascade: false,
            dry_run: false,
            sql: false,
            environment: None,
        };
        let planned = self.plan_down_as(down, Operation::Rollback, label).await?;
        let nothing = planned.view.steps.is_empty() && planned.view.errors.is_empty();
        let r = self.run(planned, hooks).await?.response();
        let success = r.errors.is_empty() && !r.applied.is_empty();
        let (applied, skipped, errors) = (r.applied, r.skipped, r.errors);
        if nothing || (applied.is_empty() && errors.is_empty()) {
            let message = "no migrations to rollback".to_string();
            return Ok(RollbackOutcome::Nothing(RollbackResponse { success, message, applied, skipped, errors }));
        }
        if success {
            let message = format!("rollback completed successfully for {} schema(s)", applied.len());
            Ok(RollbackOutcome::Done(RollbackResponse { success, message, applied, skipped, errors }))
        } else {
            Ok(RollbackOutcome::Failed(RollbackResponse { success, message: "rollback failed".into(), applied, skipped, errors }))
        }
    }

    /// Mark failed runs of a migration pending again; returns the display ids reset.
    pub async fn retry(&self, req: MigrationSchemaRequest, label: RunLabel) -> Result<Vec<String>> {
        if let Some(s) = &req.schema {
            self.validate_schemas(None, Field::Schema, std::slice::from_ref(s))?;
        }
        Ok(self.engine.retry(&req.migration_id, req.schema.as_deref(), label.context).await?)
    }

    /// Accept the current script of an applied migration whose checksum changed.
    pub async fn accept_checksum(&self, req: MigrationSchemaRequest, label: RunLabel) -> Result<Vec<String>> {
        Ok(self.engine.accept_checksum(&req.migration_id, req.schema.as_deref(), label.context).await?)
    }

    /// Compare the state with the targets' ledgers and close interrupted runs.
    pub async fn reconcile(&self, req: ReconcileRequest) -> Result<crate::ReconcileReport> {
        let connections = non_empty(&req.connection).map(|c| vec![c.to_string()]);
        if let Some(c) = non_empty(&req.connection) {
            self.ensure_connection(c)?;
        }
        Ok(self.engine.reconcile(connections.as_deref()).await?)
    }

    /// Base ids in dependency order (the CLI's `migrate order`).
    pub fn order(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut bases = Vec::with_capacity(ids.len());
        for id in ids {
            let (m, _) = self.engine.resolve(id)?;
            bases.push(m.id.clone());
        }
        bfm_core::plan::order(&self.engine.catalog(), &bases).map_err(|e| ServiceError::bad_request(e.to_string()))
    }

    /// `POST /api/v1/migrations/order-batch`: the ids as given, in dependency order.
    pub fn order_batch(&self, req: OrderRequest) -> Result<OrderBatchResponse> {
        let ids = req.migration_ids.ok_or_else(|| ServiceError::required(Field::MigrationIds))?;
        let connection = non_empty(&req.connection).ok_or_else(|| ServiceError::required(Field::Connection))?;
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
}
