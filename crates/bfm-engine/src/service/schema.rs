//! Declarative PostgreSQL schema management for every surface: the HTTP API (configured desired
//! files only — a request never names a directory or carries SQL) and the CLI (which may name a
//! directory and apply a saved plan).

use super::dto::{DumpedFile, SchemaApplyRequest, SchemaDumpResponse};
use super::request::{ReviewedPlan, SchemaApply, SchemaRequest};
use super::{Result, RunLabel, Service, ServiceError};
use bfm_schema::{ApplyReport, DriftReport, SchemaPlan, SchemaStatus, Scope, Snapshot};
use std::path::{Path, PathBuf};

impl SchemaApply {
    /// An API apply request: the configured files, the fingerprints of the reviewed plan.
    pub fn from_api(connection: &str, req: SchemaApplyRequest) -> SchemaApply {
        SchemaApply {
            target: SchemaRequest::configured(connection),
            reviewed: ReviewedPlan::Fingerprints { source: req.source_fingerprint, desired: req.desired_fingerprint },
            approvals: req.approve,
            non_destructive_only: req.non_destructive_only,
        }
    }
}

impl Service {
    pub async fn schema_status(&self, req: &SchemaRequest) -> Result<SchemaStatus> {
        Ok(self.engine().schema_status(&req.connection, req.dir.as_deref()).await?)
    }

    pub async fn schema_plan(&self, req: &SchemaRequest) -> Result<SchemaPlan> {
        Ok(self.engine().schema_plan(&req.connection, req.dir.as_deref()).await?)
    }

    pub async fn schema_apply(&self, req: SchemaApply, label: RunLabel) -> Result<ApplyReport> {
        let SchemaApply { target, reviewed, approvals, non_destructive_only } = req;
        let (connection, dir) = (target.connection.as_str(), target.dir.as_deref());
        let plan = match reviewed {
            ReviewedPlan::Fresh => None,
            ReviewedPlan::Plan(plan) => Some(*plan),
            ReviewedPlan::Fingerprints { source, desired } => {
                let plan = self.engine().schema_plan(connection, dir).await?;
                if let Some(expected) = source.as_deref().filter(|f| *f != plan.source_fingerprint) {
                    return Err(ServiceError::conflict(format!(
                        "the live schema changed since the plan was made (plan made from {expected}, live is now {}); make a new plan",
                        plan.source_fingerprint
                    )));
                }
                if let Some(expected) = desired.as_deref().filter(|f| *f != plan.desired_fingerprint) {
                    return Err(ServiceError::conflict(format!(
                        "the desired schema files changed since the plan was made (plan leads to {expected}, the files now to {}); make a new plan",
                        plan.desired_fingerprint
                    )));
                }
                Some(plan)
            }
        };
        Ok(self.engine().schema_apply(connection, dir, plan, &approvals, non_destructive_only, label.context).await?)
    }

    /// Start-up phases 1 and 2 of a connection with a desired schema: bootstrap, then the
    /// declarative apply.
    pub async fn schema_startup(&self, connection: &str, label: RunLabel) -> Result<crate::StartupReport> {
        Ok(self.engine().schema_startup(connection, label.context).await?)
    }

    pub async fn schema_validate(&self, connection: &str) -> Result<DriftReport> {
        Ok(self.engine().schema_validate(connection).await?)
    }

    /// Store the live schema as the reference for `validate`, changing nothing.
    pub async fn schema_snapshot(&self, connection: &str) -> Result<Snapshot> {
        Ok(self.engine().schema_snapshot(connection).await?)
    }

    /// Write the live schema as ordered, re-loadable SQL files into `out` (the CLI).
    pub async fn schema_dump_to(&self, connection: &str, out: &Path) -> Result<(Scope, Vec<PathBuf>)> {
        Ok(self.engine().schema_dump(connection, out).await?)
    }

    /// The live schema as ordered, re-loadable SQL files, returned (the API).
    pub async fn schema_dump(&self, connection: &str) -> Result<SchemaDumpResponse> {
        let dir = tempfile::tempdir().map_err(|e| ServiceError::internal(format!("temporary directory: {e}")))?;
        let (scope, paths) = self.schema_dump_to(connection, dir.path()).await?;
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let sql = std::fs::read_to_string(&p).map_err(|e| ServiceError::internal(format!("reading {}: {e}", p.display())))?;
            files.push(DumpedFile { name: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), sql });
        }
        Ok(SchemaDumpResponse { connection: connection.to_string(), scope, files })
    }

    /// Adopt a database something else managed: its schema becomes the connection's first
    /// migration, recorded as applied.
    pub async fn baseline(&self, connection: &str, label: RunLabel) -> Result<crate::BaselineReport> {
        Ok(self.engine().baseline(connection, label.context).await?)
    }
}
