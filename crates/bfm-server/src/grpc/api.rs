//! `migration.MigrationService`: each RPC translates its message into a call of the engine's
//! [`Service`] (the same calls as HTTP) and the result back. No business logic lives here;
//! errors become statuses in [`super::status`] only.

use super::proto::migration_service_server::MigrationService;
use super::proto::{self as pb};
use super::status;
use super::stream::{Outbox, ProgressStream};
use bfm_engine::service::{
    DownRequest, DownTarget, Field, MigrationFilter, RollbackOutcome, RollbackRequest, SchemaChoice, UpRequest, dto,
};
use bfm_engine::{ExecutionContext, RunHooks, RunLabel, Service, ServiceError, Surface};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct GrpcApi {
    service: Arc<Service>,
    /// Outbox capacity of a progress stream (at least the plan's step count).
    stream_buffer: usize,
}

impl GrpcApi {
    pub fn new(service: Arc<Service>, stream_buffer: usize) -> GrpcApi {
        GrpcApi { service, stream_buffer }
    }
}

/// `executed_by`, `execution_method` and `execution_context` of a gRPC call.
fn context<T>(req: &Request<T>, rpc: &str, environment: Option<&str>) -> ExecutionContext {
    let request_id = req.metadata().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut ctx = serde_json::json!({
        "connection_type": "grpc",
        "method": format!("/migration.MigrationService/{rpc}"),
        "request_id": request_id,
    });
    if let Some(peer) = req.remote_addr() {
        ctx["peer"] = serde_json::json!(peer.to_string());
    }
    if let Some(env) = environment.filter(|e| !e.is_empty()) {
        ctx["environment"] = serde_json::json!(env);
    }
    ExecutionContext { executed_by: "grpc_client".into(), execution_method: "api".into(), execution_context: ctx.to_string() }
}

fn label(rpc: &str, context: ExecutionContext) -> RunLabel {
    RunLabel::new(Surface::Grpc, format!("grpc {rpc}"), context)
}

fn opt(s: String) -> Option<String> {
    if s.trim().is_empty() { None } else { Some(s) }
}

/// Run a mutating call in its own task: a client that goes away must not stop a run half-way.
async fn detached<T, F>(f: F) -> Result<T, Status>
where
    F: std::future::Future<Output = Result<T, ServiceError>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(f).await {
        Ok(r) => r.map_err(status),
        Err(e) => Err(status(ServiceError::internal(format!("the run ended abnormally: {e}")))),
    }
}

/// A `MigrateRequest` as the service's up request: one schema from `schema` (or
/// `schema_name`, BfM's order), plus the `schemas` extension; the service checks each under its
/// field's name.
fn up_request(m: pb::MigrateRequest) -> UpRequest {
    let mut named = Vec::new();
    let single = [(Field::Schema, m.schema.trim()), (Field::SchemaName, m.schema_name.trim())].into_iter().find(|(_, s)| !s.is_empty());
    if let Some((field, s)) = single {
        named.push((field, vec![s.to_string()]));
    }
    named.push((Field::Schemas, m.schemas));
    let target = m.target.unwrap_or_default();
    UpRequest {
        connection: opt(m.connection),
        require_connection: true,
        migrations: MigrationFilter {
            backend: opt(target.backend),
            declared_schema: opt(target.schema),
            tables: target.tables,
            version: opt(target.version),
            connection: opt(target.connection),
            tags: target.tags,
            ids: Vec::new(),
        },
        schemas: SchemaChoice { named, pattern: opt(m.schema_pattern), tenants: m.tenants },
        ignore_dependencies: m.ignore_dependencies,
        allow_modified: m.allow_modified,
        environment: opt(m.environment),
        dry_run: m.dry_run,
        ..Default::default()
    }
}

fn migrate_response(r: dto::MigrateResponse) -> pb::MigrateResponse {
    pb::MigrateResponse { success: r.success, applied: r.applied, skipped: r.skipped, errors: r.errors }
}

#[tonic::async_trait]
impl MigrationService for GrpcApi {
    async fn migrate(&self, request: Request<pb::MigrateRequest>) -> Result<Response<pb::MigrateResponse>, Status> {
        let ctx = context(&request, "Migrate", Some(request.get_ref().environment.as_str()));
        let req = up_request(request.into_inner());
        let svc = self.service.clone();
        // BfM may queue this call; bfm has no queue and runs it synchronously.
        let r = detached(async move { svc.up(req, label("Migrate", ctx), RunHooks::default()).await.map(|o| o.response()) }).await?;
        Ok(Response::new(migrate_response(r)))
    }

    type StreamMigrateStream = ProgressStream;

    async fn stream_migrate(&self, request: Request<pb::MigrateRequest>) -> Result<Response<ProgressStream>, Status> {
        let ctx = context(&request, "StreamMigrate", Some(request.get_ref().environment.as_str()));
        let req = up_request(request.into_inner());
        let cancel = Arc::new(AtomicBool::new(false));
        // Planned first: a bad request or a failure to plan is the call's status, not a message.
        let planned = self.service.plan_up(req, label("StreamMigrate", ctx)).await.map_err(status)?;
        // The first burst (one `pending` per step) always fits.
        let outbox = Outbox::new(self.stream_buffer.max(planned.plan().steps.len() + 64));
        let hooks = RunHooks { progress: Some(outbox.sink()), cancel: Some(cancel.clone()) };
        let svc = self.service.clone();
        let out = outbox.clone();
        tokio::spawn(async move {
            match svc.run_streamed(planned, hooks).await {
                Ok(_) => out.close(None),
                Err(e) => out.close(Some(status(e))),
            }
        });
        Ok(Response::new(outbox.stream(cancel)))
    }

    async fn migrate_down(&self, request: Request<pb::MigrateDownRequest>) -> Result<Response<pb::MigrateResponse>, Status> {
        let ctx = context(&request, "MigrateDown", None);
        let m = request.into_inner();
        let req = DownRequest {
            target: DownTarget::Migration(m.migration_id),
            schemas: m.schemas,
            cascade: false,
            dry_run: m.dry_run,
            sql: false,
            environment: None,
        };
        let svc = self.service.clone();
        let r = detached(async move { svc.down(req, label("MigrateDown", ctx), RunHooks::default()).await.map(|o| o.response()) }).await?;
        Ok(Response::new(migrate_response(r)))
    }

    async fn list_migrations(&self, request: Request<pb::ListMigrationsRequest>) -> Result<Response<pb::ListMigrationsResponse>, Status> {
        let m = request.into_inner();
        let tags: Vec<String> = m.tags.into_iter().filter(|t| !t.trim().is_empty()).collect();
        let q = dto::ListQuery {
            schema: opt(m.schema),
            table: opt(m.table),
            connection: opt(m.connection),
            backend: opt(m.backend),
            status: opt(m.status),
            version: opt(m.version),
            tag: if tags.is_empty() { None } else { Some(tags.join(",")) },
            limit: Some(m.limit).filter(|l| *l > 0),
            offset: Some(m.offset).filter(|o| *o > 0),
        };
        let r = self.service.list(q).await.map_err(status)?;
        Ok(Response::new(pb::ListMigrationsResponse {
            total: i32::try_from(r.total).unwrap_or(i32::MAX),
            items: r
                .items
                .into_iter()
                .map(|i| pb::MigrationListItem {
                    migration_id: i.migration_id,
                    schema: i.schema,
                    table: i.table,
                    version: i.version,
                    name: i.name,
                    connection: i.connection,
                    backend: i.backend,
                    applied: i.applied,
                    status: i.status,
                    applied_at: i.applied_at.unwrap_or_default(),
                    error_message: i.error_message.unwrap_or_default(),
                    tags: i.tags,
                    schema_status: i.schema_status.into_iter().collect(),
                })
                .collect(),
        }))
    }

    async fn get_migration(&self, request: Request<pb::GetMigrationRequest>) -> Result<Response<pb::MigrationDetailResponse>, Status> {
        let id = request.into_inner().migration_id;
        let d = self.service.detail(&id).await.map_err(status)?;
        Ok(Response::new(pb::MigrationDetailResponse {
            migration_id: d.migration_id,
            schema: d.schema,
            table: d.table,
            version: d.version,
            name: d.name,
            connection: d.connection,
            backend: d.backend,
            applied: d.applied,
            up_sql: d.up_sql.unwrap_or_default(),
            down_sql: d.down_sql.unwrap_or_default(),
            dependencies: d.dependencies,
            structured_dependencies: d
                .structured_dependencies
                .into_iter()
                .map(|x| pb::DependencyResponse {
                    connection: x.connection,
                    schema: x.schema,
                    target: x.target,
                    target_type: x.target_type,
                    requires_table: x.requires_table.unwrap_or_default(),
                    requires_schema: x.requires_schema.unwrap_or_default(),
                })
                .collect(),
            tags: d.tags,
            status: d.status,
            checksum: d.checksum.unwrap_or_default(),
            missing: d.missing,
        }))
    }

    async fn get_migration_status(
        &self,
        request: Request<pb::GetMigrationStatusRequest>,
    ) -> Result<Response<pb::MigrationStatusResponse>, Status> {
        let id = request.into_inner().migration_id;
        let s = self.service.status(&id).await.map_err(status)?;
        Ok(Response::new(pb::MigrationStatusResponse {
            migration_id: s.migration_id,
            status: s.status,
            applied: s.applied,
            applied_at: s.applied_at.unwrap_or_default(),
            error_message: s.error_message.unwrap_or_default(),
        }))
    }

    async fn is_migration_applied(
        &self,
        request: Request<pb::IsMigrationAppliedRequest>,
    ) -> Result<Response<pb::IsMigrationAppliedResponse>, Status> {
        let id = request.into_inner().migration_id;
        let a = self.service.applied(&id).await.map_err(status)?;
        Ok(Response::new(pb::IsMigrationAppliedResponse { applied: a.applied }))
    }

    async fn get_migration_history(
        &self,
        request: Request<pb::GetMigrationHistoryRequest>,
    ) -> Result<Response<pb::MigrationHistoryResponse>, Status> {
        let id = request.into_inner().migration_id;
        let h = self.service.history(&id).await.map_err(status)?;
        Ok(Response::new(pb::MigrationHistoryResponse {
            migration_id: h.migration_id,
            history: h
                .history
                .into_iter()
                .map(|x| pb::MigrationHistoryItem {
                    migration_id: x.migration_id,
                    schema: x.schema,
                    table: x.table,
                    version: x.version,
                    connection: x.connection,
                    backend: x.backend,
                    applied_at: x.applied_at,
                    status: x.status,
                    error_message: x.error_message,
                    executed_by: x.executed_by,
                    execution_method: x.execution_method,
                    execution_context: x.execution_context,
                    operation: x.operation,
                })
                .collect(),
        }))
    }

    async fn rollback_migration(&self, request: Request<pb::RollbackMigrationRequest>) -> Result<Response<pb::RollbackResponse>, Status> {
        let ctx = context(&request, "RollbackMigration", None);
        let m = request.into_inner();
        let id = m.migration_id.trim().to_string();
        let req = RollbackRequest { migration_id: id.clone(), schemas: m.schemas };
        let svc = self.service.clone();
        let r = match detached(async move { svc.rollback(req, label("RollbackMigration", ctx), RunHooks::default()).await }).await? {
            // BfM answers FAILED_PRECONDITION when the migration is not applied.
            RollbackOutcome::Nothing(r) => {
                return Err(status(ServiceError::precondition(format!("migration is not applied: {id} ({})", r.message))));
            }
            outcome => outcome.into_response(),
        };
        Ok(Response::new(pb::RollbackResponse {
            success: r.success,
            message: r.message,
            errors: r.errors,
            applied: r.applied,
            skipped: r.skipped,
        }))
    }

    async fn reindex_migrations(&self, request: Request<pb::ReindexMigrationsRequest>) -> Result<Response<pb::ReindexResponse>, Status> {
        let path = request.into_inner().sfm_path;
        let svc = self.service.clone();
        let r = detached(async move { svc.reindex_from(Some(&path)).await }).await?;
        Ok(Response::new(pb::ReindexResponse {
            added: r.added,
            removed: r.removed,
            updated: r.updated,
            total: i32::try_from(r.total).unwrap_or(i32::MAX),
            warning: r.warning.unwrap_or_default(),
        }))
    }

    /// Open to anyone (probes): the status alone; with a valid token, also the checks, which
    /// name connections and carry database errors.
    async fn health(&self, request: Request<pb::HealthRequest>) -> Result<Response<pb::HealthResponse>, Status> {
        let authenticated = request.extensions().get::<super::layer::Authenticated>().is_some();
        let h = self.service.health().await;
        let checks = if authenticated { h.checks.into_iter().collect() } else { Default::default() };
        Ok(Response::new(pb::HealthResponse { status: h.status.as_str().to_string(), checks }))
    }
}
