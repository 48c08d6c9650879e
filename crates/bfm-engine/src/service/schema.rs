//! Declarative PostgreSQL schema management for the API surfaces. Only the configured desired
//! files are used: a request never names a directory or carries SQL.

use super::dto::{DumpedFile, SchemaApplyRequest, SchemaDumpResponse};
use super::{Result, RunLabel, Service, ServiceError};
use bfm_schema::{ApplyReport, DriftReport, SchemaPlan, SchemaStatus};
use bfm_state::ExecutionContext;

impl Service {
    pub async fn schema_status(&self, connection: &str) -> Result<SchemaStatus> {
        Ok(self.engine().schema_status(connection, None).await?)
    }

    pub async fn schema_plan(&self, connection: &str) -> Result<SchemaPlan> {
        Ok(self.engine().schema_plan(connection, None).await?)
    }

    pub async fn schema_apply(&self, connection: &str, req: SchemaApplyRequest, context: ExecutionContext) -> Result<ApplyReport> {
        let plan = self.engine().schema_plan(connection, None).await?;
        if let Some(expected) = req.source_fingerprint.as_deref().filter(|f| *f != plan.source_fingerprint) {
            return Err(ServiceError::conflict(format!(
                "the live schema changed since the plan was made (plan made from {expected}, live is now {}); make a new plan",
                plan.source_fingerprint
            )));
        }
        if let Some(expected) = req.desired_fingerprint.as_deref().filter(|f| *f != plan.desired_fingerprint) {
            return Err(ServiceError::conflict(format!(
                "the desired schema files changed since the plan was made (plan leads to {expected}, the files now to {}); make a new plan",
                plan.desired_fingerprint
            )));
        }
        Ok(self.engine().schema_apply(connection, None, Some(plan), &req.approve, req.non_destructive_only, context).await?)
    }

    /// Start-up phases 1 and 2 of a connection with a desired schema: bootstrap, then the
    /// declarative apply.
    pub async fn schema_startup(&self, connection: &str, label: RunLabel) -> Result<crate::StartupReport> {
        Ok(self.engine().schema_startup(connection, label.context).await?)
    }

    pub async fn schema_validate(&self, connection: &str) -> Result<DriftReport> {
        Ok(self.engine().schema_validate(connection).await?)
    }

    pub async fn schema_dump(&self, connection: &str) -> Result<SchemaDumpResponse> {
        let dir = tempfile::tempdir().map_err(|e| ServiceError::internal(format!("temporary directory: {e}")))?;
        let (scope, paths) = self.engine().schema_dump(connection, dir.path()).await?;
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let sql = std::fs::read_to_string(&p).map_err(|e| ServiceError::internal(format!("reading {}: {e}", p.display())))?;
            files.push(DumpedFile { name: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), sql });
        }
        Ok(SchemaDumpResponse { connection: connection.to_string(), scope, files })
    }
}
