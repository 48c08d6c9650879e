//! Declarative PostgreSQL schema management for a connection: plan, apply, validate (drift),
//! dump, status, the start-up flow (bootstrap → declarative apply → versioned migrations), and
//! `baseline` (adopt a database that something else managed).
//!
//! Per connection (environment or `bfm.toml`): `{CONN}_SCHEMA_DIR` (the desired-state SQL files),
//! `{CONN}_BOOTSTRAP` (default `<dir>/bootstrap.sql`), `{CONN}_MANAGED_SCHEMAS` (comma list;
//! default: the schemas the desired files use plus `{CONN}_SCHEMA`, see [`bfm_schema::Scope`]),
//! `{CONN}_SCHEMA_APPROVE` (approvals the start-up flow may use, `HAZARD:object`, comma list).

use crate::engine::{Engine, EngineError};
use bfm_core::BackendKind;
use bfm_schema::{
    ApplyOptions, ApplyReport, Approval, DesiredSource, DriftReport, SchemaPlan, SchemaStatus, SchemaTarget, Scope, ScopeBasis, Snapshot,
};
use bfm_state::{Event, ExecutionContext, HistoryEntry, MigrationRef, Operation};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The id under which declarative applies appear in the history.
pub const DECLARATIVE_ID: &str = "declarative";

fn schema_err(e: bfm_schema::SchemaError) -> EngineError {
    EngineError::Schema(Box::new(e))
}

/// What `bfm baseline` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineReport {
    pub migration_id: String,
    pub file: PathBuf,
    pub statements: usize,
}

/// What the start-up flow did for one connection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StartupReport {
    pub connection: String,
    pub bootstrap: Option<PathBuf>,
    pub applied_steps: usize,
    pub skipped_steps: Vec<String>,
}

impl Engine {
    /// The live database and desired files of a PostgreSQL connection (`dir` overrides the
    /// configured directory).
    pub fn schema_target(&self, connection: &str, dir: Option<&Path>) -> Result<(SchemaTarget, Option<DesiredSource>), EngineError> {
        self.ensure_connection(connection)?;
        let c = &self.config.connections[connection];
        if c.kind != BackendKind::Postgresql {
            return Err(EngineError::Invalid(format!(
                "declarative schema management is for PostgreSQL connections; {connection} is {}",
                c.kind
            )));
        }
        let database_url = bfm_targets::postgres::database_url(c)?;
        let managed_schemas = c
            .extra("managed_schemas")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let dir = dir.map(Path::to_path_buf).or_else(|| c.extra("schema_dir").map(PathBuf::from));
        let desired = dir.map(|dir| DesiredSource { bootstrap: c.extra("bootstrap").map(PathBuf::from), dir });
        let default_schema = c.schema.clone().filter(|s| !s.is_empty());
        Ok((SchemaTarget { database_url, managed_schemas, default_schema }, desired))
    }

    /// The scope of commands that read the live schema without planning (`dump`, `snapshot`):
    /// the desired files' scope when the connection has them, else the scope of the stored
    /// snapshot (the last apply's), else the whole database. A configured list always wins.
    async fn live_scope(&self, connection: &str, target: &SchemaTarget, desired: Option<DesiredSource>) -> Result<Scope, EngineError> {
        if let Some(d) = desired.filter(|d| d.dir.is_dir()) {
            return bfm_schema::desired_scope(target, &d).await.map_err(schema_err);
        }
        Ok(match self.stored_snapshot(connection).await? {
            Some(s) => bfm_schema::resolve_scope(target, ScopeBasis::Recorded(&s.recorded_scope())),
            None => bfm_schema::resolve_scope(target, ScopeBasis::Nothing),
        })
    }

    fn desired(&self, connection: &str, desired: Option<DesiredSource>) -> Result<DesiredSource, EngineError> {
        let d = desired.ok_or_else(|| {
            EngineError::Invalid(format!(
                "connection {connection} has no desired schema: set {}_SCHEMA_DIR (or pass a directory)",
                connection.to_uppercase()
            ))
        })?;
        if !d.dir.is_dir() {
            return Err(EngineError::Invalid(format!("desired schema directory {} does not exist", d.dir.display())));
        }
        Ok(d)
    }

    /// The stored snapshot of the connection's schema, if any.
    pub async fn stored_snapshot(&self, connection: &str) -> Result<Option<Snapshot>, EngineError> {
        match self.state.schema_snapshot(connection).await? {
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| EngineError::Invalid(format!("stored schema snapshot of {connection} is unreadable: {e}"))),
            None => Ok(None),
        }
    }

    pub async fn schema_plan(&self, connection: &str, dir: Option<&Path>) -> Result<SchemaPlan, EngineError> {
        let (target, desired) = self.schema_target(connection, dir)?;
        let desired = self.desired(connection, desired)?;
        bfm_schema::plan(&target, &desired).await.map_err(schema_err)
    }

    pub async fn schema_status(&self, connection: &str, dir: Option<&Path>) -> Result<SchemaStatus, EngineError> {
        let (target, desired) = self.schema_target(connection, dir)?;
        let desired = self.desired(connection, desired)?;
        let stored = self.stored_snapshot(connection).await?;
        bfm_schema::status(&target, &desired, stored.as_ref()).await.map_err(schema_err)
    }

    /// Apply `plan` (or a fresh plan of the desired files). Refuses destructive steps that are not
    /// approved and a live schema that changed since the plan was made. Afterwards the snapshot
    /// is stored (for `validate`) and the apply is in the history.
    pub async fn schema_apply(
        &self,
        connection: &str,
        dir: Option<&Path>,
        plan: Option<SchemaPlan>,
        approvals: &[String],
        non_destructive_only: bool,
        context: ExecutionContext,
    ) -> Result<ApplyReport, EngineError> {
        let approvals: Vec<Approval> = approvals
            .iter()
            .map(|a| a.parse::<Approval>().map_err(|e| EngineError::Invalid(format!("approval {a:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        let (target, desired) = self.schema_target(connection, dir)?;
        let plan = match plan {
            Some(p) => p,
            None => bfm_schema::plan(&target, &self.desired(connection, desired)?).await.map_err(schema_err)?,
        };
        let options = ApplyOptions {
            allow_non_destructive_only: non_destructive_only,
            lock_wait: self.config.lock_timeout,
            ..ApplyOptions::default()
        };
        let started = chrono::Utc::now();
        let result = bfm_schema::apply(&target, &plan, &approvals, &options).await;
        let (status, error) = match &result {
            Ok(r) if r.converged || !r.skipped.is_empty() => ("applied", None),
            Ok(_) => ("applied", Some("the live schema did not reach the desired fingerprint".to_string())),
            Err(e) => ("failed", Some(e.to_string())),
        };
        let history = HistoryEntry {
            error: error.clone(),
            started_at: Some(started),
            duration_ms: Some((chrono::Utc::now() - started).num_milliseconds()),
            ..HistoryEntry::new(Operation::SchemaApply, status)
        };
        let mut ctx = serde_json::from_str::<serde_json::Value>(&context.execution_context).unwrap_or_else(|_| serde_json::json!({}));
        if let (Some(obj), Ok(r)) = (ctx.as_object_mut(), &result) {
            obj.insert("steps_applied".into(), r.applied.len().into());
            obj.insert("steps_skipped".into(), r.skipped.len().into());
            obj.insert("fingerprint".into(), r.final_fingerprint.clone().into());
        }
        let context = ExecutionContext { execution_context: ctx.to_string(), ..context };
        self.state
            .write(&[Event {
                key: format!("schema:{}:{}", connection, uuid::Uuid::new_v4()),
                migration: MigrationRef {
                    id: DECLARATIVE_ID.into(),
                    version: plan.desired_fingerprint.chars().take(16).collect(),
                    name: "declarative schema".into(),
                    connection: connection.into(),
                    backend: "postgresql".into(),
                },
                schema: plan.managed_schemas.join(","),
                run_id: None,
                context: Arc::new(context),
                state: None,
                history: Some(history),
            }])
            .await?;
        let report = result.map_err(schema_err)?;
        // The snapshot that `validate` compares with, of what the plan manages.
        let snap = bfm_schema::snapshot(&target, &plan.scope).await.map_err(schema_err)?;
        let json = serde_json::to_string(&snap).map_err(|e| EngineError::Invalid(e.to_string()))?;
        self.state.save_schema_snapshot(connection, &snap.fingerprint, snap.taken_at, &json).await?;
        Ok(report)
    }

    /// Compare the live schema with the snapshot stored by the last apply.
    pub async fn schema_validate(&self, connection: &str) -> Result<DriftReport, EngineError> {
        let (target, _) = self.schema_target(connection, None)?;
        let stored = self.stored_snapshot(connection).await?.ok_or_else(|| {
            EngineError::Invalid(format!(
                "no schema snapshot stored for {connection}: run `bfm schema apply` (or `bfm schema snapshot`) first"
            ))
        })?;
        bfm_schema::validate(&target, &stored).await.map_err(schema_err)
    }

    /// Store the live schema as the reference for `validate` without changing anything.
    pub async fn schema_snapshot(&self, connection: &str) -> Result<Snapshot, EngineError> {
        let (target, desired) = self.schema_target(connection, None)?;
        let scope = self.live_scope(connection, &target, desired).await?;
        let snap = bfm_schema::snapshot(&target, &scope).await.map_err(schema_err)?;
        let json = serde_json::to_string(&snap).map_err(|e| EngineError::Invalid(e.to_string()))?;
        self.state.save_schema_snapshot(connection, &snap.fingerprint, snap.taken_at, &json).await?;
        Ok(snap)
    }

    /// Write the live schema of the connection's scope (see `live_scope`) as ordered,
    /// re-loadable SQL files; returns the scope and the files.
    pub async fn schema_dump(&self, connection: &str, out_dir: &Path) -> Result<(Scope, Vec<PathBuf>), EngineError> {
        let (target, desired) = self.schema_target(connection, None)?;
        let scope = self.live_scope(connection, &target, desired).await?;
        std::fs::create_dir_all(out_dir).map_err(|e| EngineError::Invalid(format!("cannot create {}: {e}", out_dir.display())))?;
        let files = bfm_schema::dump(&target, &scope, out_dir).await.map_err(schema_err)?;
        Ok((scope, files))
    }

    /// Start-up flow for a connection with a desired schema: run its bootstrap script (which must
    /// be idempotent), then apply the declarative plan — non-destructive steps only, unless the
    /// configured approvals cover the destructive ones. Versioned migrations follow (auto-migrate).
    pub async fn schema_startup(&self, connection: &str, context: ExecutionContext) -> Result<StartupReport, EngineError> {
        let (target, desired) = self.schema_target(connection, None)?;
        let desired = self.desired(connection, desired)?;
        let bootstrap = desired.bootstrap.clone().or_else(|| Some(desired.dir.join("bootstrap.sql")).filter(|p| p.is_file()));
        if let Some(path) = &bootstrap {
            let sql = std::fs::read_to_string(path).map_err(|e| EngineError::Invalid(format!("cannot read {}: {e}", path.display())))?;
            tracing::info!(connection, file = %path.display(), "start-up 1/3: bootstrap");
            let t = self.target(connection).await?;
            t.execute_script(&sql).await?;
        } else {
            tracing::info!(connection, "start-up 1/3: bootstrap — none");
        }
        let approvals: Vec<String> = self.config.connections[connection]
            .extra("schema_approve")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let plan = bfm_schema::plan(&target, &desired).await.map_err(schema_err)?;
        let approved: std::collections::HashSet<String> = approvals.iter().map(|a| a.to_ascii_uppercase()).collect();
        let all_approved = plan.approvals_required.iter().all(|a| approved.contains(&a.to_ascii_uppercase()));
        tracing::info!(
            connection,
            steps = plan.steps.len(),
            destructive = plan.approvals_required.len(),
            "start-up 2/3: declarative schema"
        );
        let report = self.schema_apply(connection, None, Some(plan), &approvals, !all_approved, context).await?;
        for s in &report.skipped {
            tracing::warn!(connection, object = %s.object, reason = %s.reason, "start-up: declarative step not applied (approve it with {}_SCHEMA_APPROVE)", connection.to_uppercase());
        }
        tracing::info!(connection, applied = report.applied.len(), skipped = report.skipped.len(), "start-up 2/3: declarative schema done");
        Ok(StartupReport {
            connection: connection.into(),
            bootstrap,
            applied_steps: report.applied.len(),
            skipped_steps: report.skipped.iter().map(|s| format!("{}: {}", s.object, s.reason)).collect(),
        })
    }

    /// Adopt a database managed by something else: dump its schema into a first migration of the
    /// connection and record that migration as applied (in the target's ledger and the state).
    pub async fn baseline(&self, connection: &str, context: ExecutionContext) -> Result<BaselineReport, EngineError> {
        let root = self.config.sfm_path.clone().ok_or_else(|| EngineError::Invalid("no sfm path: set BFM_SFM_PATH".into()))?;
        let (target, _) = self.schema_target(connection, None)?;
        if self.catalog().iter().any(|m| m.connection == connection) {
            return Err(EngineError::Invalid(format!(
                "connection {connection} already has migrations; baseline adopts a database before its first migration"
            )));
        }
        let tmp = std::env::temp_dir().join(format!("bfm-baseline-{}", uuid::Uuid::new_v4().simple()));
        // Adopting a database takes all of it (or the configured schemas): nothing was declared yet.
        let scope = bfm_schema::resolve_scope(&target, ScopeBasis::Nothing);
        let files = bfm_schema::dump(&target, &scope, &tmp).await.map_err(schema_err)?;
        let mut sql = format!("-- Baseline of connection {connection}: the schema as it was when bfm adopted it.\n");
        if let Some(s) = &self.config.connections[connection].schema {
            sql.push_str(&format!("-- bfm-schema: {s}\n"));
        }
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|e| EngineError::Invalid(format!("cannot read {}: {e}", f.display())))?;
            sql.push_str(&format!(
                "\n-- {}\n{}\n",
                f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
                text.trim_end()
            ));
        }
        let _ = std::fs::remove_dir_all(&tmp);
        let version = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
        let dir = root.join("postgresql").join(connection);
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        let file = dir.join(format!("{version}_baseline.up.sql"));
        std::fs::write(&file, &sql).map_err(|e| EngineError::Invalid(format!("cannot write {}: {e}", file.display())))?;
        self.reload().await?;
        let id = bfm_core::Migration::base_id(&version, "baseline", "postgresql", connection);
        let m = self
            .catalog()
            .get(&id)
            .cloned()
            .ok_or_else(|| EngineError::Invalid(format!("{} did not load; see `bfm check`", file.display())))?;
        let schema = m.schema.clone().unwrap_or_default();
        self.mark_applied(&m, &schema, context).await?;
        let statements = bfm_core::sql::split(&sql, bfm_core::sql::Dialect::Postgres).map(|s| s.len()).unwrap_or(0);
        Ok(BaselineReport { migration_id: id, file, statements })
    }

    /// Record `m` as applied in `schema` without running it: the ledger row goes in with a no-op
    /// step, under the lock, and the state and history follow.
    async fn mark_applied(&self, m: &bfm_core::Migration, schema: &str, context: ExecutionContext) -> Result<(), EngineError> {
        let target = self.target(&m.connection).await?;
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let mut session = target.session(&run_id).await?;
        session.lock(schema, self.config.lock_timeout).await?;
        let noop = ["SELECT 1".to_string()];
        let step = bfm_targets::StepScript {
            migration_id: &m.id,
            schema,
            version: m.version.as_str(),
            direction: bfm_core::Direction::Up,
            sql: "SELECT 1",
            statements: &noop,
            transactional: true,
            checksum: &m.checksum,
            run_id: &run_id,
            resume_from: 0,
        };
        let result = session.apply(&step).await;
        let _ = session.unlock().await;
        result.map_err(|f| EngineError::Invalid(format!("recording the baseline failed: {f}")))?;
        self.state
            .write(&[Event {
                key: format!("{run_id}:baseline:{}:{schema}", m.id),
                migration: MigrationRef::of(m),
                schema: schema.to_string(),
                run_id: Some(run_id),
                context: Arc::new(context),
                state: Some(bfm_state::StateUpdate::applied(Some(m.checksum.clone()), Some(chrono::Utc::now()), Some(0), true)),
                history: Some(HistoryEntry { checksum: Some(m.checksum.clone()), ..HistoryEntry::new(Operation::Baseline, "applied") }),
            }])
            .await?;
        Ok(())
    }
}
