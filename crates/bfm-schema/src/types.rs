//! Public plan and report types.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::SchemaError;
use crate::scope::Scope;

/// What kind of object a step or a drift entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Schema,
    Extension,
    Enum,
    Domain,
    CompositeType,
    Sequence,
    Function,
    Procedure,
    Table,
    Column,
    View,
    MaterializedView,
    Constraint,
    Index,
    Trigger,
    Policy,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 16] = [
        ObjectKind::Schema,
        ObjectKind::Extension,
        ObjectKind::Enum,
        ObjectKind::Domain,
        ObjectKind::CompositeType,
        ObjectKind::Sequence,
        ObjectKind::Function,
        ObjectKind::Procedure,
        ObjectKind::Table,
        ObjectKind::Column,
        ObjectKind::View,
        ObjectKind::MaterializedView,
        ObjectKind::Constraint,
        ObjectKind::Index,
        ObjectKind::Trigger,
        ObjectKind::Policy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Schema => "schema",
            ObjectKind::Extension => "extension",
            ObjectKind::Enum => "enum",
            ObjectKind::Domain => "domain",
            ObjectKind::CompositeType => "composite_type",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Function => "function",
            ObjectKind::Procedure => "procedure",
            ObjectKind::Table => "table",
            ObjectKind::Column => "column",
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized_view",
            ObjectKind::Constraint => "constraint",
            ObjectKind::Index => "index",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Policy => "policy",
        }
    }

    /// Plural heading for text output.
    pub fn plural(self) -> &'static str {
        match self {
            ObjectKind::Schema => "Schemas",
            ObjectKind::Extension => "Extensions",
            ObjectKind::Enum => "Enums",
            ObjectKind::Domain => "Domains",
            ObjectKind::CompositeType => "Composite types",
            ObjectKind::Sequence => "Sequences",
            ObjectKind::Function => "Functions",
            ObjectKind::Procedure => "Procedures",
            ObjectKind::Table => "Tables",
            ObjectKind::Column => "Columns",
            ObjectKind::View => "Views",
            ObjectKind::MaterializedView => "Materialized views",
            ObjectKind::Constraint => "Constraints",
            ObjectKind::Index => "Indexes",
            ObjectKind::Trigger => "Triggers",
            ObjectKind::Policy => "Policies",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOp {
    Create,
    Drop,
    Alter,
    /// `CREATE OR REPLACE`, or a rebuild under the same name.
    Replace,
    Comment,
}

/// Hazard codes. Only [`HazardCode::DeletesData`] makes a step destructive (approval needed);
/// the others are warnings about locks, rewrites and behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HazardCode {
    /// Data is deleted or may be lost: drop of a table, column, schema, sequence or extension,
    /// a narrowing or unrecognised type change, removal of enum values.
    DeletesData,
    /// The table (and its indexes) is rewritten.
    TableRewrite,
    /// An ACCESS EXCLUSIVE lock is held for longer than a catalog update (scan or rewrite).
    AccessExclusiveLock,
    /// An index is built (concurrently on an existing table).
    IndexBuild,
    /// An index is dropped; queries using it may slow down.
    IndexDropped,
    /// Who may see or change rows changes (RLS, policies).
    AuthzUpdate,
    /// The step may fail depending on existing rows (NOT NULL, CHECK, UNIQUE, FK validation).
    DataDependent,
    /// An extension is upgraded.
    UpgradingExtensionVersion,
}

impl HazardCode {
    pub const ALL: [HazardCode; 8] = [
        HazardCode::DeletesData,
        HazardCode::TableRewrite,
        HazardCode::AccessExclusiveLock,
        HazardCode::IndexBuild,
        HazardCode::IndexDropped,
        HazardCode::AuthzUpdate,
        HazardCode::DataDependent,
        HazardCode::UpgradingExtensionVersion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HazardCode::DeletesData => "DELETES_DATA",
            HazardCode::TableRewrite => "TABLE_REWRITE",
            HazardCode::AccessExclusiveLock => "ACCESS_EXCLUSIVE_LOCK",
            HazardCode::IndexBuild => "INDEX_BUILD",
            HazardCode::IndexDropped => "INDEX_DROPPED",
            HazardCode::AuthzUpdate => "AUTHZ_UPDATE",
            HazardCode::DataDependent => "DATA_DEPENDENT",
            HazardCode::UpgradingExtensionVersion => "UPGRADING_EXTENSION_VERSION",
        }
    }

    /// Whether a step with this hazard needs an explicit approval.
    pub fn is_destructive(self) -> bool {
        matches!(self, HazardCode::DeletesData)
    }
}

impl fmt::Display for HazardCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HazardCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        HazardCode::ALL.iter().copied().find(|c| c.as_str().eq_ignore_ascii_case(s.trim())).ok_or_else(|| {
            format!("unknown hazard code {s:?}; known codes: {}", HazardCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "))
        })
    }
}

/// One hazard of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hazard {
    pub code: HazardCode,
    pub message: String,
}

/// Table lock level a step takes (the strongest one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockLevel {
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "SHARE UPDATE EXCLUSIVE")]
    ShareUpdateExclusive,
    #[serde(rename = "SHARE")]
    Share,
    #[serde(rename = "SHARE ROW EXCLUSIVE")]
    ShareRowExclusive,
    #[serde(rename = "ACCESS EXCLUSIVE")]
    AccessExclusive,
}

impl LockLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LockLevel::None => "NONE",
            LockLevel::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockLevel::Share => "SHARE",
            LockLevel::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockLevel::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// 1-based position in the plan.
    pub id: usize,
    /// One or more SQL statements, run together.
    pub sql: String,
    pub kind: ObjectKind,
    /// Display name of the object (`public.users`, `public.users.email`, `public.f(integer)`).
    pub object: String,
    pub op: StepOp,
    pub lock: LockLevel,
    pub rewrites_table: bool,
    /// Whether the step may run inside a transaction (false for `CONCURRENTLY`).
    pub transactional: bool,
    /// Transaction group: consecutive transactional steps of one group commit together.
    pub group: usize,
    pub hazards: Vec<Hazard>,
    pub destructive: bool,
    /// For a concurrent index build: the index whose validity apply checks afterwards
    /// (quoted, schema-qualified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_index: Option<String>,
    /// SQL run after this step fails, to remove what earlier steps of the same change left
    /// behind (the temporary check of an online SET NOT NULL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<String>,
}

impl Step {
    /// The approvals (`HAZARD:object`) this step needs.
    pub fn approvals_needed(&self) -> Vec<Approval> {
        if !self.destructive {
            return Vec::new();
        }
        self.hazards.iter().filter(|h| h.code.is_destructive()).map(|h| Approval { code: h.code, object: self.object.clone() }).collect()
    }
}

/// Where time went while planning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanTimings {
    /// Creating and loading the scratch database (0 when served from the cache or DB-vs-DB).
    pub load_ms: f64,
    /// Introspection (the slower side when both run in parallel).
    pub introspect_ms: f64,
    pub diff_ms: f64,
    pub total_ms: f64,
    /// The desired model came from the cache.
    pub desired_cached: bool,
}

/// An ordered, annotated migration from the live schema to the desired one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaPlan {
    pub format_version: u32,
    pub created_at: DateTime<Utc>,
    pub pg_major: u32,
    pub server_version_num: u32,
    /// The scope's schemas (empty = every non-system schema except `bfm`); see `scope`.
    pub managed_schemas: Vec<String>,
    /// What the plan manages; apply reads the live schema through the same scope.
    #[serde(default)]
    pub scope: Scope,
    /// Fingerprint of the live schema the plan was made from; apply refuses if it changed.
    pub source_fingerprint: String,
    /// Fingerprint the live schema should have once the plan is applied.
    pub desired_fingerprint: String,
    /// SHA-256 of the desired source files (None for database-vs-database plans).
    pub desired_source_sha256: Option<String>,
    pub steps: Vec<Step>,
    /// Every `HAZARD:object` approval the destructive steps need.
    pub approvals_required: Vec<String>,
    /// Objects found in the managed schemas whose kind is not managed (left untouched).
    pub warnings: Vec<String>,
    #[serde(default)]
    pub timings: PlanTimings,
}

impl SchemaPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    pub fn destructive_steps(&self) -> usize {
        self.steps.iter().filter(|s| s.destructive).count()
    }
}

/// Approval of one destructive hazard on one object, written `HAZARD:object`
/// (`DELETES_DATA:public.users.email`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Approval {
    pub code: HazardCode,
    pub object: String,
}

impl FromStr for Approval {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, SchemaError> {
        let err = |reason: String| SchemaError::InvalidApproval { input: s.to_string(), reason };
        let Some((code, object)) = s.split_once(':') else {
            return Err(err("expected HAZARD:object, e.g. DELETES_DATA:public.users.email".into()));
        };
        let code: HazardCode = code.parse().map_err(err)?;
        let object = object.trim();
        if object.is_empty() {
            return Err(SchemaError::InvalidApproval { input: s.to_string(), reason: "the object after ':' is empty".into() });
        }
        Ok(Approval { code, object: object.to_string() })
    }
}

impl fmt::Display for Approval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.code, self.object)
    }
}

/// How to apply a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Apply only the non-destructive steps and skip the others (used at start-up).
    pub allow_non_destructive_only: bool,
    /// `lock_timeout` for every step.
    pub lock_timeout: Duration,
    /// `statement_timeout` for every step (None = no limit).
    pub statement_timeout: Option<Duration>,
    /// How long to wait for another apply to release the schema advisory lock.
    pub lock_wait: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            allow_non_destructive_only: false,
            lock_timeout: Duration::from_secs(3),
            statement_timeout: None,
            lock_wait: Duration::from_secs(30),
        }
    }
}

/// One applied step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedStep {
    pub id: usize,
    pub object: String,
    pub duration_ms: f64,
}

/// One step that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedStep {
    pub id: usize,
    pub object: String,
    pub reason: String,
}

/// What apply did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub applied: Vec<AppliedStep>,
    pub skipped: Vec<SkippedStep>,
    pub source_fingerprint: String,
    /// Live fingerprint after apply.
    pub final_fingerprint: String,
    /// Whether the live schema now equals the plan's desired state.
    pub converged: bool,
    pub duration_ms: f64,
    /// What the apply managed (the plan's scope).
    #[serde(default)]
    pub scope: Scope,
}

/// A stored picture of the managed schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub fingerprint: String,
    pub pg_major: u32,
    pub format_version: u32,
    pub taken_at: DateTime<Utc>,
    /// The scope's schemas (empty = every non-system schema except `bfm`).
    pub managed_schemas: Vec<String>,
    /// What the snapshot covers (absent from snapshots stored before scopes were recorded:
    /// see [`Snapshot::recorded_scope`]).
    #[serde(default)]
    pub scope: Scope,
    /// The normalised model, JSON compressed with gzip (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub model: Vec<u8>,
}

impl Snapshot {
    /// The scope the snapshot was taken with. Older snapshots carry only `managed_schemas`.
    pub fn recorded_scope(&self) -> Scope {
        if self.scope.is_whole_database() && !self.managed_schemas.is_empty() {
            return Scope::configured(&self.managed_schemas);
        }
        self.scope.clone()
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// How an object drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftChange {
    /// Present live, absent from the stored snapshot.
    Added,
    /// In the stored snapshot, gone live.
    Removed,
    Changed,
}

/// One drifted object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub kind: ObjectKind,
    pub object: String,
    pub change: DriftChange,
    /// Summary of the object in the stored snapshot.
    pub before: Option<String>,
    /// Summary of the live object.
    pub after: Option<String>,
}

/// Result of comparing a stored snapshot with the live schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    pub in_sync: bool,
    pub stored_fingerprint: String,
    pub live_fingerprint: String,
    /// The server's major version differs from the snapshot's: re-baseline rather than trust
    /// text differences.
    pub pg_major_changed: bool,
    pub drifts: Vec<Drift>,
    /// What was compared.
    #[serde(default)]
    pub scope: Scope,
}

/// Live vs desired (and optionally vs a stored snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaStatus {
    pub live_fingerprint: String,
    pub desired_fingerprint: String,
    pub desired_source_sha256: String,
    /// Live equals desired.
    pub in_sync: bool,
    pub pending_steps: usize,
    pub destructive_steps: usize,
    pub approvals_required: Vec<String>,
    pub drift: Option<DriftReport>,
    pub warnings: Vec<String>,
    /// What bfm manages (the plan's scope).
    #[serde(default)]
    pub scope: Scope,
}
