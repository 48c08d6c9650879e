//! `migration.MigrationService`: each RPC translates its message into a call of the engine's
//! [`Service`] (the same calls as HTTP) and the result back. No business logic lives here;
//! errors become statuses in [`super::status`] only.

use super::proto::migration_service_server::MigrationService;
use super::proto::{self as pb};
use super::status;
use super::stream::{Outbox, ProgressStream};
use bfm_engine::service::dto;
use bfm_engine::{Call, ExecutionContext, Service, ServiceError};
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

fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    let v = value.trim();
    if v.is_empty() { Err(status(ServiceError::bad_request(format!("{field}: is required")))) } else { Ok(v) }
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

impl GrpcApi {
    /// A `MigrateRequest` as the service's up request: one schema from `schema` (or
    /// `schema_name`, BfM's order), plus the `schemas` extension; each field's names are
    /// checked under that field's name.
    fn up_request(&self, m: pb::MigrateRequest) -> Result<dto::MigrateUpRequest, Status> {
        let mut schemas: Vec<String> = Vec::new();
        let single = [("schema", m.schema.trim()), ("schema_name", m.schema_name.trim())].into_iter().find(|(_, s)| !s.is_empty());
        if let Some((field, s)) = single {
            self.service
                .validate_request_schemas(&m.connection, field, &[s.to_string()])
                .map_err(|e| status(ServiceError::bad_request(e.message.replacen(&format!("{field}[0]"), field, 1))))?;
            schemas.push(s.to_string());
        }
        self.service.validate_request_schemas(&m.connection, "schemas", &m.schemas).map_err(status)?;
        for s in m.schemas {
            if !schemas.contains(&s) {
                schemas.push(s);
            }
        }
        Ok(dto::MigrateUpRequest {
            connection: opt(m.connection),
            target: m.target.map(|t| dto::MigrationTarget {
                backend: opt(t.backend),
                schema: opt(t.schema),
                tables: t.tables,
                version: opt(t.version),
                connection: opt(t.connection),
                tags: t.tags,
            }),
            schemas,
            schema_pattern: opt(m.schema_pattern),
            tenants: m.tenants,
            dry_run: m.dry_run,
            ignore_dependencies: m.ignore_dependencies,
            allow_modified: m.allow_modified,
            environment: opt(m.environment),
        })
    }
}

fn migrate_response(r: dto::MigrateResponse) -> pb::MigrateResponse {
    pb::MigrateResponse { success: r.success, applied: r.applied, skipped: r.skipped, errors: r.errors }
}

fn progress(migration_id: &str, status: &str, message: String, progress: i32) -> pb::MigrateProgress {
    pb::MigrateProgress { migration_id: migration_id.to_string(), status: status.into(), message, progress, ..Default::default() }
}

#[tonic::async_trait]
impl MigrationService for GrpcApi {
    async fn migrate(&self, request: Request<pb::MigrateRequest>) -> Result<Response<pb::MigrateResponse>, Status> {
        let ctx = context(&request, "Migrate", Some(request.get_ref().environment.as_str()));
        let req = self.up_request(request.into_inner())?;
        let svc = self.service.clone();
        // BfM may queue this call; bfm has no queue and runs it synchronously.
        let r = detached(async move {
            let run = svc.prepare_up(req, Call::new(ctx, "grpc Migrate")).await?;
            svc.run_up(run).await
        })
        .await?;
        Ok(Response::new(migrate_response(r)))
    }

    type StreamMigrateStream = ProgressStream;

    async fn stream_migrate(&self, request: Request<pb::MigrateRequest>) -> Result<Response<ProgressStream>, Status> {
        let ctx = context(&request, "StreamMigrate", Some(request.get_ref().environment.as_str()));
        let req = self.up_request(request.into_inner())?;
        let cancel = Arc::new(AtomicBool::new(false));
        let mut call = Call::new(ctx, "grpc StreamMigrate");
        call.cancel = Some(cancel.clone());
        // Planned first: a bad request or a failure to plan is the call's status, not a message.
        let mut run = self.service.prepare_up(req, call).await.map_err(status)?;
        let steps = run.steps();
        // The first burst (one `pending` per step) always fits.
        let outbox = Outbox::new(self.stream_buffer.max(steps.len() + 64));
        for (id, reason) in run.skipped() {
            outbox.push(progress(&id, "skipped", reason, 0));
        }
        for e in run.errors() {
            outbox.push(progress("", "failed", e, 0));
        }
        if run.dry_run() {
            for (id, base, schema, connection) in &steps {
                let mut m = progress(id, "pending", "planned (dry run)".into(), 0);
                (m.base_migration_id, m.schema, m.connection) = (base.clone(), schema.clone(), connection.clone());
                outbox.push(m);
            }
            let total = steps.len();
            for (i, (id, base, schema, connection)) in steps.into_iter().enumerate() {
                let pct = i32::try_from((i + 1) * 100 / total).unwrap_or(100);
                let mut m = progress(&id, "success", "dry run: would run".into(), pct);
                (m.base_migration_id, m.schema, m.connection) = (base, schema, connection);
                outbox.push(m);
            }
            outbox.close(None);
        } else {
            run.set_sink(outbox.sink());
            let svc = self.service.clone();
            let out = outbox.clone();
            tokio::spawn(async move {
                match svc.run_up(run).await {
                    Ok(_) => out.close(None),
                    Err(e) => out.close(Some(status(e))),
                }
            });
        }
        Ok(Response::new(outbox.stream(cancel)))
    }

    async fn migrate_down(&self, request: Request<pb::MigrateDownRequest>) -> Result<Response<pb::MigrateResponse>, Status> {
        let ctx = context(&request, "MigrateDown", None);
        let m = request.into_inner();
        required(&m.migration_id, "migration_id")?;
        let req = dto::MigrateDownRequest {
            migration_id: Some(m.migration_id),
            schemas: m.schemas,
            dry_run: m.dry_run,
            ignore_dependencies: m.ignore_dependencies,
        };
        let svc = self.service.clone();
        let r = detached(async move { svc.migrate_down_as(req, Call::new(ctx, "grpc MigrateDown")).await }).await?;
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
        let d = self.service.detail(required(&id, "migration_id")?).await.map_err(status)?;
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
        let s = self.service.status(required(&id, "migration_id")?).await.map_err(status)?;
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
        let a = self.service.applied(required(&id, "migration_id")?).await.map_err(status)?;
        Ok(Response::new(pb::IsMigrationAppliedResponse { applied: a.applied }))
    }

    async fn get_migration_history(
        &self,
        request: Request<pb::GetMigrationHistoryRequest>,
    ) -> Result<Response<pb::MigrationHistoryResponse>, Status> {
        let id = request.into_inner().migration_id;
        let h = self.service.history(required(&id, "migration_id")?).await.map_err(status)?;
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
        let id = required(&m.migration_id, "migration_id")?.to_string();
        let req = dto::RollbackRequest { schemas: m.schemas };
        let svc = self.service.clone();
        let (r, nothing) = detached({
            let id = id.clone();
            async move { svc.rollback_as(&id, req, Call::new(ctx, "grpc RollbackMigration")).await }
        })
        .await?;
        if nothing {
            // BfM answers FAILED_PRECONDITION when the migration is not applied.
            return Err(status(ServiceError::precondition(format!("migration is not applied: {id} ({})", r.message))));
        }
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

    async fn health(&self, _request: Request<pb::HealthRequest>) -> Result<Response<pb::HealthResponse>, Status> {
        let h = self.service.health().await;
        Ok(Response::new(pb::HealthResponse { status: h.status, checks: h.checks.into_iter().collect() }))
    }
}
