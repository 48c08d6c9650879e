//! The OpenAPI 3.1 document, generated from the handlers and the request/response types.

use crate::http;
use bfm_engine::service::dto::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("BFM_API_TOKEN")).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "bfm", description = "Migration control plane. Every route needs `Authorization: Bearer <BFM_API_TOKEN>` except `/health` and the OpenAPI documents. Errors are `{\"error\": \"...\"}`."),
    paths(
        http::liveness,
        http::readiness,
        http::metrics,
        http::openapi_yaml,
        http::openapi_json,
        http::migrate,
        http::migrate_up,
        http::migrate_down,
        http::order_batch,
        http::list,
        http::detail,
        http::status,
        http::applied,
        http::history,
        http::executions,
        http::recent_executions,
        http::skipped,
        http::recent_skipped,
        http::rollback,
        http::reindex,
        http::schema_status,
        http::schema_plan,
        http::schema_apply,
        http::schema_validate,
        http::schema_dump,
    ),
    components(schemas(
        MigrationTarget,
        MigrateUpRequest,
        MigrateRequest,
        MigrateResponse,
        MigrateDownRequest,
        OrderBatchRequest,
        OrderBatchResponse,
        MigrationListItem,
        ListResponse,
        DependencyResponse,
        MigrationDetailResponse,
        MigrationStatusResponse,
        AppliedResponse,
        MigrationHistoryItem,
        MigrationHistoryResponse,
        MigrationExecution,
        ExecutionsResponse,
        SkippedMigration,
        SkippedResponse,
        RollbackRequest,
        RollbackResponse,
        ReindexResponse,
        HealthResponse,
        ErrorResponse,
        SchemaApplyRequest,
        DumpedFile,
        SchemaDumpResponse,
    )),
    modifiers(&BearerAuth),
    tags((name = "migrations", description = "Run and inspect migrations"), (name = "health", description = "Liveness, readiness, metrics, this document"), (name = "schema", description = "Declarative PostgreSQL schema: status, plan, apply, drift, dump"))
)]
pub struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
