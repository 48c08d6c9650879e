//! The service's typed requests, one per operation. Surfaces translate their wire format (the
//! JSON DTOs of [`super::dto`], gRPC messages, CLI arguments) into these; the service validates
//! them, once, naming the field at fault.

use super::error::Field;

/// Which migrations a request selects; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct MigrationFilter {
    pub connection: Option<String>,
    /// `postgresql` (≡ `postgres`), `mysql`, `sqlite`, `greptimedb`, `etcd`.
    pub backend: Option<String>,
    /// Equality with the migration's declared schema (excludes per-tenant migrations).
    pub declared_schema: Option<String>,
    pub tables: Vec<String>,
    pub version: Option<String>,
    /// `key=value`, all must match.
    pub tags: Vec<String>,
    /// Migration ids as users write them (base id, `{schema}_{id}`).
    pub ids: Vec<String>,
}

/// The execution schemas of per-tenant migrations: named ones, a `LIKE` pattern, the
/// connection's tenant query — resolved in one place ([`super::Service`]'s selection).
#[derive(Debug, Clone, Default)]
pub struct SchemaChoice {
    /// Named schemas, each list with the request field it came from.
    pub named: Vec<(Field, Vec<String>)>,
    /// Every schema of the connection matching this SQL `LIKE` pattern (`cli_%`).
    pub pattern: Option<String>,
    /// The schemas listed by the connection's tenant query (`{CONN}_TENANT_QUERY`).
    pub tenants: bool,
}

impl SchemaChoice {
    pub fn names(field: Field, names: Vec<String>) -> SchemaChoice {
        SchemaChoice { named: vec![(field, names)], ..Default::default() }
    }

    /// Whether schemas are looked up on the connection.
    pub fn selects(&self) -> bool {
        self.pattern.is_some() || self.tenants
    }
}

/// Apply pending migrations.
#[derive(Debug, Clone, Default)]
pub struct UpRequest {
    /// The connection the request is about; the filter's connection when that names none.
    pub connection: Option<String>,
    /// BfM's API: a request is about one connection, which must be named.
    pub require_connection: bool,
    pub migrations: MigrationFilter,
    pub schemas: SchemaChoice,
    pub ignore_dependencies: bool,
    /// Run although applied migrations of the connection changed on disk.
    pub allow_modified: bool,
    /// Value of `{{.Environment}}`.
    pub environment: Option<String>,
    /// Concurrent schemas per connection (default: configuration, else the pool size).
    pub concurrency: Option<usize>,
    pub dry_run: bool,
    /// Render each step's script into the plan (with `environment`).
    pub sql: bool,
    /// Per-tenant migrations without a named schema are skipped, not errors (auto-migrate:
    /// tenants are left to explicit requests).
    pub skip_per_tenant: bool,
}

/// `POST /api/v1/migrate`: one schema of one connection, an environment.
#[derive(Debug, Clone, Default)]
pub struct MigrateSchemaRequest {
    pub connection: Option<String>,
    pub migrations: MigrationFilter,
    pub schema: Option<String>,
    pub environment: Option<String>,
    pub dry_run: bool,
    pub ignore_dependencies: bool,
}

/// What a down request undoes.
#[derive(Debug, Clone)]
pub enum DownTarget {
    /// One migration, by id as users write it (BfM's API): per-tenant migrations need their
    /// schemas, and nothing to undo is answered without a run.
    Migration(String),
    /// Every applied migration the filter selects (the CLI).
    Filter(MigrationFilter),
}

#[derive(Debug, Clone)]
pub struct DownRequest {
    pub target: DownTarget,
    pub schemas: Vec<String>,
    /// Also undo applied migrations that depend on the selected ones.
    pub cascade: bool,
    pub dry_run: bool,
    /// Render each step's script into the plan (with `environment`).
    pub sql: bool,
    /// Value of `{{.Environment}}`.
    pub environment: Option<String>,
}

/// Roll one migration back in the given schemas (its prefixed schema when none is given).
#[derive(Debug, Clone, Default)]
pub struct RollbackRequest {
    pub migration_id: String,
    pub schemas: Vec<String>,
}

/// Mark failed runs of a migration pending again, or accept its changed script.
#[derive(Debug, Clone, Default)]
pub struct MigrationSchemaRequest {
    pub migration_id: String,
    pub schema: Option<String>,
}

/// Order migration ids by their dependencies (BfM's `order-batch`): the ids as given, every
/// one of the named connection.
#[derive(Debug, Clone, Default)]
pub struct OrderRequest {
    pub migration_ids: Option<Vec<String>>,
    pub connection: Option<String>,
}

/// Bring the state in line with the targets' ledgers.
#[derive(Debug, Clone, Default)]
pub struct ReconcileRequest {
    pub connection: Option<String>,
}

/// Per migration × schema status (the CLI's `migrate status`).
#[derive(Debug, Clone, Default)]
pub struct StatusRequest {
    pub connection: Option<String>,
    pub schema: Option<String>,
    /// Keep only rows with this status (`pending`, `applied`, `modified`, `missing`, …).
    pub status: Option<String>,
}

/// Which desired files a declarative call compares with: the connection's configured ones, or a
/// directory the operator names on the command line. API requests never name one (nor carry
/// SQL): their surfaces leave `dir` empty.
#[derive(Debug, Clone, Default)]
pub struct SchemaRequest {
    pub connection: String,
    pub dir: Option<std::path::PathBuf>,
}

impl SchemaRequest {
    pub fn configured(connection: impl Into<String>) -> SchemaRequest {
        SchemaRequest { connection: connection.into(), dir: None }
    }
}

/// What the operator reviewed before asking for an apply.
#[derive(Debug, Clone, Default)]
pub enum ReviewedPlan {
    /// Nothing: apply a fresh plan of the desired files.
    #[default]
    Fresh,
    /// The fingerprints of a plan seen earlier (the HTTP API): refused when either changed.
    Fingerprints { source: Option<String>, desired: Option<String> },
    /// A saved plan (the CLI's `--plan`): applied as it is, if the live schema still matches it.
    Plan(Box<bfm_schema::SchemaPlan>),
}

/// Apply the desired schema of a connection.
#[derive(Debug, Clone, Default)]
pub struct SchemaApply {
    pub target: SchemaRequest,
    pub reviewed: ReviewedPlan,
    /// `HAZARD:object` approvals for destructive steps.
    pub approvals: Vec<String>,
    /// Apply what is safe and leave unapproved destructive steps out, instead of refusing.
    pub non_destructive_only: bool,
}
