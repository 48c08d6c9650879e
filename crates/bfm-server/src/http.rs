//! HTTP handlers: translate requests into service calls and results into BfM's JSON. No
//! business logic lives here.

use crate::error::{ApiError, ApiJson, OptionalJson};
use crate::metrics::Metrics;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bfm_engine::service::dto::*;
use bfm_engine::service::{
    DownRequest, DownTarget, Field, MigrateSchemaRequest, MigrationFilter, OrderRequest, RollbackOutcome, SchemaApply, SchemaChoice,
    SchemaRequest, UpRequest,
};
use bfm_engine::{ExecutionContext, RunHooks, RunLabel, Service, Surface};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub metrics: Arc<Metrics>,
}

/// BfM's "looks manual" rule: a browser or the dashboard made the request.
fn looks_manual(headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    matches!(get("x-client-type"), "frontend" | "FfM")
        || matches!(get("x-requested-with"), "XMLHttpRequest" | "FfM")
        || headers.contains_key(header::ORIGIN)
        || ["Mozilla", "Chrome", "Safari", "Firefox", "Edge", "Opera"].iter().any(|b| get("user-agent").contains(b))
}

/// `executed_by`, `execution_method` and `execution_context` for a request.
fn context(method: &Method, uri: &Uri, headers: &HeaderMap, environment: Option<&str>) -> ExecutionContext {
    let manual = looks_manual(headers);
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut ctx = serde_json::json!({
        "endpoint": uri.path(),
        "method": method.as_str(),
        "request_id": request_id,
        "connection_type": "http",
    });
    if let Some(env) = environment {
        ctx["environment"] = serde_json::json!(env);
    }
    ExecutionContext {
        executed_by: if manual { "frontend_user" } else { "api_user" }.into(),
        execution_method: if manual { "manual" } else { "api" }.into(),
        execution_context: ctx.to_string(),
    }
}

/// A BfM target as the service's filter.
fn filter(target: Option<MigrationTarget>) -> MigrationFilter {
    let t = target.unwrap_or_default();
    MigrationFilter {
        connection: t.connection,
        backend: t.backend,
        declared_schema: t.schema,
        tables: t.tables,
        version: t.version,
        tags: t.tags,
        ids: Vec::new(),
    }
}

fn up_request(r: MigrateUpRequest) -> UpRequest {
    UpRequest {
        connection: r.connection,
        require_connection: true,
        migrations: filter(r.target),
        schemas: SchemaChoice { named: vec![(Field::Schemas, r.schemas)], pattern: r.schema_pattern, tenants: r.tenants },
        ignore_dependencies: r.ignore_dependencies,
        allow_modified: r.allow_modified,
        environment: r.environment,
        dry_run: r.dry_run,
        ..Default::default()
    }
}

fn label(route: &str, context: ExecutionContext) -> RunLabel {
    RunLabel::new(Surface::Http, route, context)
}

/// 200 when everything worked, 206 when some steps failed (BfM).
fn migrate_response(r: MigrateResponse) -> Response {
    let status = if r.errors.is_empty() { StatusCode::OK } else { StatusCode::PARTIAL_CONTENT };
    (status, Json(r)).into_response()
}

/// Run a mutating call in its own task: a client that disconnects must not cancel a migration
/// half-way (the step would be rolled back, but the rest of the run would be lost).
async fn detached<T, F>(f: F) -> Result<T, ApiError>
where
    F: std::future::Future<Output = Result<T, bfm_engine::ServiceError>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the run ended abnormally: {e}"))),
    }
}

fn limit_param(q: &HashMap<String, String>) -> Option<i64> {
    // BfM: a missing, non-numeric or non-positive limit means the default.
    q.get("limit").and_then(|l| l.trim().parse::<i64>().ok()).filter(|l| *l > 0)
}

/// Liveness: the process answers. No I/O.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "The process is alive", body = HealthResponse)))]
pub async fn liveness() -> Json<HealthResponse> {
    Json(HealthResponse { status: HealthStatus::Healthy, checks: [("process".to_string(), "ok".to_string())].into() })
}

/// Readiness: the state store and every connection, each with a short timeout.
#[utoipa::path(get, path = "/api/v1/health", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "Ready", body = HealthResponse), (status = 503, description = "A check failed", body = HealthResponse), (status = 401, body = ErrorResponse)))]
pub async fn readiness(State(s): State<AppState>) -> Response {
    let h = s.service.health().await;
    let status = if h.status == HealthStatus::Healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(h)).into_response()
}

/// Run up migrations.
#[utoipa::path(post, path = "/api/v1/migrations/up", tag = "migrations", security(("bearer" = [])), request_body = MigrateUpRequest,
    responses((status = 200, description = "Everything ran", body = MigrateResponse), (status = 206, description = "Some steps failed or were blocked", body = MigrateResponse),
        (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse), (status = 413, body = ErrorResponse)))]
pub async fn migrate_up(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiJson(req): ApiJson<MigrateUpRequest>,
) -> Result<Response, ApiError> {
    let ctx = context(&method, &uri, &headers, req.environment.as_deref());
    let svc = s.service.clone();
    let (req, label) = (up_request(req), label("POST /api/v1/migrations/up", ctx));
    Ok(migrate_response(detached(async move { svc.up(req, label, RunHooks::default()).await.map(|o| o.response()) }).await?))
}

/// Run migrations (the request shape of BfM's README: one `schema`, an `environment`).
#[utoipa::path(post, path = "/api/v1/migrate", tag = "migrations", security(("bearer" = [])), request_body = MigrateRequest,
    responses((status = 200, body = MigrateResponse), (status = 206, body = MigrateResponse), (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse)))]
pub async fn migrate(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiJson(req): ApiJson<MigrateRequest>,
) -> Result<Response, ApiError> {
    let ctx = context(&method, &uri, &headers, req.environment.as_deref());
    let svc = s.service.clone();
    let req = MigrateSchemaRequest {
        connection: req.connection,
        migrations: filter(req.target),
        schema: req.schema,
        environment: req.environment,
        dry_run: req.dry_run,
        ignore_dependencies: req.ignore_dependencies,
    };
    let label = label("POST /api/v1/migrate", ctx);
    Ok(migrate_response(detached(async move { svc.migrate_schema(req, label, RunHooks::default()).await.map(|o| o.response()) }).await?))
}

/// Run the down script of one migration, per schema.
#[utoipa::path(post, path = "/api/v1/migrations/down", tag = "migrations", security(("bearer" = [])), request_body = MigrateDownRequest,
    responses((status = 200, body = MigrateResponse), (status = 206, body = MigrateResponse), (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn migrate_down(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiJson(req): ApiJson<MigrateDownRequest>,
) -> Result<Response, ApiError> {
    let ctx = context(&method, &uri, &headers, None);
    let svc = s.service.clone();
    let req = DownRequest {
        target: DownTarget::Migration(req.migration_id.unwrap_or_default()),
        schemas: req.schemas,
        cascade: false,
        dry_run: req.dry_run,
        sql: false,
        environment: None,
    };
    let label = label("POST /api/v1/migrations/down", ctx);
    Ok(migrate_response(detached(async move { svc.down(req, label, RunHooks::default()).await.map(|o| o.response()) }).await?))
}

/// Order migration ids by their dependencies.
#[utoipa::path(post, path = "/api/v1/migrations/order-batch", tag = "migrations", security(("bearer" = [])), request_body = OrderBatchRequest,
    responses((status = 200, body = OrderBatchResponse), (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse)))]
pub async fn order_batch(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<OrderBatchRequest>,
) -> Result<Json<OrderBatchResponse>, ApiError> {
    Ok(Json(s.service.order_batch(OrderRequest { migration_ids: req.migration_ids, connection: req.connection })?))
}

/// List migrations: stable order (version, id), filters, paging.
#[utoipa::path(get, path = "/api/v1/migrations", tag = "migrations", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = ListResponse), (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse)))]
pub async fn list(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Result<Json<ListResponse>, ApiError> {
    let num = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().parse::<i64>().map_err(|_| ApiError::bad_request(format!("{k}: must be a whole number, not {v:?}"))))
            .transpose()
    };
    let query = ListQuery {
        schema: q.get("schema").cloned(),
        table: q.get("table").cloned(),
        connection: q.get("connection").cloned(),
        backend: q.get("backend").cloned(),
        status: q.get("status").cloned(),
        version: q.get("version").cloned(),
        tag: q.get("tag").or(q.get("tags")).cloned(),
        limit: num("limit")?,
        offset: num("offset")?,
    };
    Ok(Json(s.service.list(query).await?))
}

#[utoipa::path(get, path = "/api/v1/migrations/{id}", tag = "migrations", security(("bearer" = [])), params(("id" = String, Path, description = "Base id or {schema}_{id}")),
    responses((status = 200, body = MigrationDetailResponse), (status = 404, body = ErrorResponse), (status = 401, body = ErrorResponse)))]
pub async fn detail(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<MigrationDetailResponse>, ApiError> {
    Ok(Json(s.service.detail(&id).await?))
}

#[utoipa::path(get, path = "/api/v1/migrations/{id}/status", tag = "migrations", security(("bearer" = [])), params(("id" = String, Path, description = "Base id or {schema}_{id}")),
    responses((status = 200, body = MigrationStatusResponse), (status = 404, body = ErrorResponse), (status = 401, body = ErrorResponse)))]
pub async fn status(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<MigrationStatusResponse>, ApiError> {
    Ok(Json(s.service.status(&id).await?))
}

#[utoipa::path(get, path = "/api/v1/migrations/{id}/applied", tag = "migrations", security(("bearer" = [])), params(("id" = String, Path, description = "Base id or {schema}_{id}")),
    responses((status = 200, body = AppliedResponse), (status = 401, body = ErrorResponse)))]
pub async fn applied(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<AppliedResponse>, ApiError> {
    Ok(Json(s.service.applied(&id).await?))
}

#[utoipa::path(get, path = "/api/v1/migrations/{id}/history", tag = "migrations", security(("bearer" = [])), params(("id" = String, Path, description = "Base id or {schema}_{id}")),
    responses((status = 200, body = MigrationHistoryResponse), (status = 404, body = ErrorResponse), (status = 401, body = ErrorResponse)))]
pub async fn history(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<MigrationHistoryResponse>, ApiError> {
    Ok(Json(s.service.history(&id).await?))
}

#[utoipa::path(get, path = "/api/v1/migrations/{id}/executions", tag = "migrations", security(("bearer" = [])), params(("id" = String, Path, description = "Base id or {schema}_{id}")),
    responses((status = 200, body = ExecutionsResponse), (status = 401, body = ErrorResponse)))]
pub async fn executions(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<ExecutionsResponse>, ApiError> {
    Ok(Json(s.service.executions(&id).await?))
}

#[utoipa::path(get, path = "/api/v1/migrations/executions/recent", tag = "migrations", security(("bearer" = [])), params(("limit" = Option<i64>, Query, description = "Default 10")),
    responses((status = 200, body = ExecutionsResponse), (status = 401, body = ErrorResponse)))]
pub async fn recent_executions(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ExecutionsResponse>, ApiError> {
    Ok(Json(s.service.recent_executions(limit_param(&q)).await?))
}

#[utoipa::path(get, path = "/api/v1/migrations/{id}/skipped", tag = "migrations", security(("bearer" = [])),
    params(("id" = String, Path, description = "Base id or {schema}_{id}"), ("limit" = Option<i64>, Query, description = "Default 5")),
    responses((status = 200, body = SkippedResponse), (status = 401, body = ErrorResponse)))]
pub async fn skipped(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<SkippedResponse>, ApiError> {
    Ok(Json(s.service.skipped(&id, limit_param(&q)).await?))
}

#[utoipa::path(get, path = "/api/v1/migrations/skipped/recent", tag = "migrations", security(("bearer" = [])), params(("limit" = Option<i64>, Query, description = "Default 5")),
    responses((status = 200, body = SkippedResponse), (status = 401, body = ErrorResponse)))]
pub async fn recent_skipped(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<SkippedResponse>, ApiError> {
    Ok(Json(s.service.recent_skipped(limit_param(&q)).await?))
}

/// Roll a migration back in the given schemas (body optional).
#[utoipa::path(post, path = "/api/v1/migrations/{id}/rollback", tag = "migrations", security(("bearer" = [])), params(("id" = String, Path, description = "Base id or {schema}_{id}")),
    request_body(content = RollbackRequest, description = "Optional"),
    responses((status = 200, body = RollbackResponse), (status = 400, description = "Nothing to roll back, or a bad request", body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 401, body = ErrorResponse)))]
pub async fn rollback(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptionalJson(req): OptionalJson<RollbackRequest>,
) -> Result<Response, ApiError> {
    let ctx = context(&method, &uri, &headers, None);
    let svc = s.service.clone();
    let req = bfm_engine::service::RollbackRequest { migration_id: id, schemas: req.schemas };
    let label = label("POST /api/v1/migrations/{id}/rollback", ctx);
    match detached(async move { svc.rollback(req, label, RunHooks::default()).await }).await? {
        // BfM answers 400 when there was nothing to roll back.
        RollbackOutcome::Nothing(r) => {
            let body = serde_json::json!({"error": r.message, "success": false, "message": r.message, "applied": r.applied, "skipped": r.skipped, "errors": r.errors});
            Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
        }
        outcome => Ok(Json(outcome.into_response()).into_response()),
    }
}

/// Reload the catalogue from the configured sfm path.
#[utoipa::path(post, path = "/api/v1/migrations/reindex", tag = "migrations", security(("bearer" = [])),
    responses((status = 200, body = ReindexResponse), (status = 401, body = ErrorResponse)))]
pub async fn reindex(State(s): State<AppState>) -> Result<Json<ReindexResponse>, ApiError> {
    let svc = s.service.clone();
    Ok(Json(detached(async move { svc.reindex().await }).await?))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, body = ErrorResponse)))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.metrics.render(&s.service).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// The OpenAPI document, as YAML.
#[utoipa::path(get, path = "/api/v1/openapi.yaml", tag = "health", responses((status = 200, description = "OpenAPI 3.1", content_type = "application/yaml")))]
pub async fn openapi_yaml() -> Response {
    match crate::openapi::document().to_yaml() {
        Ok(y) => ([(header::CONTENT_TYPE, "application/yaml")], y).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("OpenAPI document: {e}")).into_response(),
    }
}

/// The OpenAPI document, as JSON.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    Json(crate::openapi::document()).into_response()
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("Not found: {}", uri.path()))
}

/// bfm: live vs desired schema of a PostgreSQL connection with `{CONN}_SCHEMA_DIR`, and drift
/// since the last apply.
#[utoipa::path(get, path = "/api/v1/schema/{connection}/status", tag = "schema", security(("bearer" = [])),
    params(("connection" = String, Path, description = "Connection name")),
    responses((status = 200, description = "Fingerprints, pending and destructive steps, drift", body = Object),
        (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse), (status = 503, body = ErrorResponse)))]
pub async fn schema_status(State(s): State<AppState>, Path(connection): Path<String>) -> Result<Json<bfm_schema::SchemaStatus>, ApiError> {
    Ok(Json(s.service.schema_status(&SchemaRequest::configured(connection)).await?))
}

/// bfm: plan the changes from the live schema to the desired files (changes nothing).
#[utoipa::path(post, path = "/api/v1/schema/{connection}/plan", tag = "schema", security(("bearer" = [])),
    params(("connection" = String, Path, description = "Connection name")),
    responses((status = 200, description = "The plan: ordered steps with hazards, `approvals_required`, fingerprints", body = Object),
        (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse), (status = 503, body = ErrorResponse)))]
pub async fn schema_plan(State(s): State<AppState>, Path(connection): Path<String>) -> Result<Json<bfm_schema::SchemaPlan>, ApiError> {
    Ok(Json(s.service.schema_plan(&SchemaRequest::configured(connection)).await?))
}

/// bfm: apply the desired schema. Destructive steps need their approvals; with the reviewed
/// plan's fingerprints the apply is refused if the live schema or the files changed since.
#[utoipa::path(post, path = "/api/v1/schema/{connection}/apply", tag = "schema", security(("bearer" = [])),
    params(("connection" = String, Path, description = "Connection name")), request_body(content = SchemaApplyRequest, description = "Optional"),
    responses((status = 200, description = "Steps applied and skipped, final fingerprint", body = Object),
        (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse),
        (status = 409, description = "An approval is missing, the schema or the files changed since the plan, or another apply holds the lock", body = ErrorResponse),
        (status = 500, description = "A step failed (recorded in the history; its transaction group was rolled back)", body = ErrorResponse)))]
pub async fn schema_apply(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(connection): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<bfm_schema::ApplyReport>, ApiError> {
    let req: SchemaApplyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SchemaApplyRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?
    };
    let label = RunLabel::new(Surface::Http, "POST /api/v1/schema/{connection}/apply", context(&method, &uri, &headers, None));
    let svc = s.service.clone();
    Ok(Json(detached(async move { svc.schema_apply(SchemaApply::from_api(&connection, req), label).await }).await?))
}

/// bfm: compare the live schema with the snapshot stored by the last apply.
#[utoipa::path(get, path = "/api/v1/schema/{connection}/validate", tag = "schema", security(("bearer" = [])),
    params(("connection" = String, Path, description = "Connection name")),
    responses((status = 200, description = "`in_sync` and the drifted objects", body = Object),
        (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse), (status = 503, body = ErrorResponse)))]
pub async fn schema_validate(State(s): State<AppState>, Path(connection): Path<String>) -> Result<Json<bfm_schema::DriftReport>, ApiError> {
    Ok(Json(s.service.schema_validate(&connection).await?))
}

/// bfm: the live schema as ordered, re-loadable SQL files.
#[utoipa::path(post, path = "/api/v1/schema/{connection}/dump", tag = "schema", security(("bearer" = [])),
    params(("connection" = String, Path, description = "Connection name")),
    responses((status = 200, body = SchemaDumpResponse), (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse), (status = 503, body = ErrorResponse)))]
pub async fn schema_dump(State(s): State<AppState>, Path(connection): Path<String>) -> Result<Json<SchemaDumpResponse>, ApiError> {
    Ok(Json(s.service.schema_dump(&connection).await?))
}
