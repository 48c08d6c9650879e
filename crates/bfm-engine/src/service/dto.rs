//! Request and response shapes of the API, with BfM's JSON field names. Fields bfm adds are
//! marked; every BfM field keeps its name and meaning.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(feature = "openapi")]
use utoipa::{IntoParams, ToSchema};

/// Which migrations a request selects (BfM's `MigrationTarget`); every given field must match.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct MigrationTarget {
    /// `postgresql` (≡ `postgres`), `mysql`, `sqlite`, `greptimedb`, `etcd`.
    pub backend: Option<String>,
    /// Equality with the migration's declared schema (excludes per-tenant migrations).
    pub schema: Option<String>,
    pub tables: Vec<String>,
    /// Exact version (empty: all).
    pub version: Option<String>,
    pub connection: Option<String>,
    /// `key=value`, all must match.
    pub tags: Vec<String>,
}

/// `POST /api/v1/migrations/up`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct MigrateUpRequest {
    /// The connection the request is about (required).
    pub connection: Option<String>,
    /// Selection; missing or null means no filter.
    pub target: Option<MigrationTarget>,
    /// Execution schemas for per-tenant migrations.
    pub schemas: Vec<String>,
    /// bfm: also every schema of the connection matching this SQL `LIKE` pattern (`cli_%`).
    pub schema_pattern: Option<String>,
    /// bfm: also the schemas listed by the connection's tenant query.
    pub tenants: bool,
    pub dry_run: bool,
    pub ignore_dependencies: bool,
    /// bfm: run although applied migrations of the connection changed on disk.
    pub allow_modified: bool,
    /// bfm: value of `{{.Environment}}`.
    pub environment: Option<String>,
}

/// `POST /api/v1/migrate` (the request shape of BfM's README).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct MigrateRequest {
    pub target: Option<MigrationTarget>,
    pub connection: Option<String>,
    /// One execution schema.
    pub schema: Option<String>,
    /// Recorded in the execution context and available to scripts as `{{.Environment}}`.
    pub environment: Option<String>,
    pub dry_run: bool,
    pub ignore_dependencies: bool,
}

/// Result of up, down and migrate: 200 when `errors` is empty, else 206.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MigrateResponse {
    pub success: bool,
    /// Ids in execution order (`<id> (dry-run)` for a dry run).
    pub applied: Vec<String>,
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
}

/// `POST /api/v1/migrations/down`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct MigrateDownRequest {
    pub migration_id: Option<String>,
    pub schemas: Vec<String>,
    pub dry_run: bool,
    /// Accepted for compatibility; dependents are always checked.
    pub ignore_dependencies: bool,
}

/// `POST /api/v1/migrations/order-batch`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct OrderBatchRequest {
    pub migration_ids: Option<Vec<String>>,
    pub connection: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OrderBatchResponse {
    pub ordered_migration_ids: Vec<String>,
}

/// Query of `GET /api/v1/migrations`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[serde(default)]
pub struct ListQuery {
    /// Declared schema, or a schema the migration ran in.
    pub schema: Option<String>,
    pub table: Option<String>,
    pub connection: Option<String>,
    pub backend: Option<String>,
    /// `pending`, `applied`, `failed`, `rolled_back`, `running`, `missing`.
    pub status: Option<String>,
    pub version: Option<String>,
    /// bfm: `key=value`; several (comma-separated or repeated) must all match.
    pub tag: Option<String>,
    /// bfm: page size (default: everything).
    pub limit: Option<i64>,
    /// bfm: rows to skip.
    pub offset: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MigrationListItem {
    pub migration_id: String,
    /// Declared schema ("" for per-tenant migrations).
    pub schema: String,
    pub table: String,
    pub version: String,
    pub name: String,
    pub connection: String,
    pub backend: String,
    pub applied: bool,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tags: Vec<String>,
    /// bfm: number of schemas per status.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub schema_status: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ListResponse {
    pub items: Vec<MigrationListItem>,
    /// Matching migrations before paging.
    pub total: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DependencyResponse {
    pub connection: String,
    pub schema: String,
    pub target: String,
    pub target_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires_table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires_schema: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MigrationDetailResponse {
    pub migration_id: String,
    pub schema: String,
    pub table: String,
    pub version: String,
    pub name: String,
    pub connection: String,
    pub backend: String,
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_sql: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_sql: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub dependencies: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub structured_dependencies: Vec<DependencyResponse>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tags: Vec<String>,
    /// bfm: aggregate status.
    pub status: String,
    /// bfm: `v<algorithm>:<sha256>` of the normalised script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// bfm: recorded, but no longer on disk.
    pub missing: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MigrationStatusResponse {
    pub migration_id: String,
    pub status: String,
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AppliedResponse {
    pub applied: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MigrationHistoryItem {
    pub migration_id: String,
    pub schema: String,
    pub table: String,
    pub version: String,
    pub connection: String,
    pub backend: String,
    pub applied_at: String,
    pub status: String,
    pub error_message: String,
    pub executed_by: String,
    pub execution_method: String,
    pub execution_context: String,
    /// bfm: `up`, `down`, `rollback`, `skip`, `retry`, `accept_checksum`, `reconcile`.
    pub operation: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MigrationHistoryResponse {
    pub migration_id: String,
    pub history: Vec<MigrationHistoryItem>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MigrationExecution {
    /// bfm: `{schema}_{migration_id}` (BfM's items had none).
    pub id: String,
    pub migration_id: String,
    pub schema: String,
    pub version: String,
    pub connection: String,
    pub backend: String,
    pub status: String,
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// bfm: the last error, if the status is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ExecutionsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration_id: Option<String>,
    pub executions: Vec<MigrationExecution>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SkippedMigration {
    pub id: i64,
    pub migration_id: String,
    pub schema: String,
    pub version: String,
    pub connection: String,
    pub backend: String,
    pub executed_by: String,
    pub execution_method: String,
    pub execution_context: String,
    pub skipped_at: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SkippedResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration_id: Option<String>,
    pub skipped: Vec<SkippedMigration>,
}

/// `POST /api/v1/migrations/{id}/rollback` (body optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct RollbackRequest {
    pub schemas: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RollbackResponse {
    pub success: bool,
    pub message: String,
    pub applied: Vec<String>,
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReindexResponse {
    pub added: Vec<String>,
    /// Migrations no longer on disk (kept with their history, shown as `missing`).
    pub removed: Vec<String>,
    pub updated: Vec<String>,
    pub total: i64,
    /// bfm: set when the request named an sfm path other than the configured one (ignored).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub warning: Option<String>,
}

/// Readiness as a decision: every check answered `ok`, or not.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HealthResponse {
    /// `healthy` or `unhealthy`.
    pub status: HealthStatus,
    /// Per check (`state`, each connection): `ok` or the error.
    pub checks: BTreeMap<String, String>,
}

/// Every error: `{"error": "..."}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorResponse {
    pub error: String,
}

/// bfm: `POST /api/v1/schema/{connection}/apply`. The server plans from its configured desired
/// files (a plan is never taken from the request: it would be arbitrary SQL). Give the two
/// fingerprints of the plan you reviewed to have the apply refused (409) if either changed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SchemaApplyRequest {
    /// `HAZARD:object` approvals for destructive steps (from the plan's `approvals_required`).
    pub approve: Vec<String>,
    /// Apply what is safe and leave unapproved destructive steps out, instead of refusing.
    pub non_destructive_only: bool,
    /// `source_fingerprint` of the reviewed plan: the live schema it was made from.
    pub source_fingerprint: Option<String>,
    /// `desired_fingerprint` of the reviewed plan: the schema it leads to.
    pub desired_fingerprint: Option<String>,
}

/// bfm: one file of a schema dump.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DumpedFile {
    pub name: String,
    pub sql: String,
}

/// bfm: `POST /api/v1/schema/{connection}/dump` — the live schema as ordered, re-loadable files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SchemaDumpResponse {
    pub connection: String,
    /// What was dumped.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub scope: bfm_schema::Scope,
    pub files: Vec<DumpedFile>,
}
