use crate::config::Config;
use arc_swap::ArcSwap;
use bfm_core::{Catalog, Diagnostic, LoadOptions, Lookup, Migration, Plan, PlanRequest, Severity, StateSnapshot};
use bfm_state::{CatalogRow, ExecutionContext, Recorder, StateError, StateRow, StateStore, SyncReport};
use bfm_targets::{Target, TargetError};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("unknown connection {name:?}{}", if .known.is_empty() { " (no connection is configured: set {CONN}_BACKEND and friends, or [connections] in bfm.toml)".to_string() } else { format!(" (configured: {})", .known.join(", ")) })]
    UnknownConnection { name: String, known: Vec<String> },
    #[error("migration not found: {0}")]
    NotFound(String),
    #[error("ambiguous migration id {id:?}: matches {}", .candidates.join(", "))]
    Ambiguous { id: String, candidates: Vec<String> },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Schema(Box<bfm_schema::SchemaError>),
}

/// How a request picks the schemas (tenants) of per-tenant migrations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaSelection {
    /// Named schemas.
    pub names: Vec<String>,
    /// Every schema of the connection matching this SQL `LIKE` pattern (`cli_%`).
    pub pattern: Option<String>,
    /// The schemas returned by the connection's tenant query (`{CONN}_TENANT_QUERY`).
    pub tenants: bool,
}

/// Check a `LIKE` pattern for schema names: letters, digits, `_` and `%` only.
pub fn validate_schema_pattern(pattern: &str) -> Result<(), String> {
    if !pattern.is_empty() && pattern.len() <= 63 && pattern.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '%') {
        Ok(())
    } else {
        Err(format!("invalid schema pattern {pattern:?}: use letters, digits, `_` and `%` (as in SQL LIKE)"))
    }
}

/// What reloading the catalogue found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub migrations: usize,
    pub errors: usize,
    pub warnings: usize,
    pub sync: SyncReport,
}

/// A plan together with the state it was made from.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub plan: Plan,
    pub(crate) rows: HashMap<(String, String), StateRow>,
}

impl Prepared {
    pub(crate) fn row(&self, id: &str, schema: &str) -> Option<&StateRow> {
        self.rows.get(&(id.to_string(), schema.to_string()))
    }
}

pub struct Engine {
    pub(crate) config: Config,
    catalog: ArcSwap<Catalog>,
    diagnostics: ArcSwap<Vec<Diagnostic>>,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) recorder: Recorder,
    targets: Mutex<HashMap<String, Arc<dyn Target>>>,
    /// Serialises catalogue reloads.
    reloading: Mutex<()>,
    /// Set on shutdown: running chains finish their current step and stop.
    stopping: std::sync::atomic::AtomicBool,
    observer: std::sync::OnceLock<Arc<dyn Observer>>,
}

/// Receives what happens during runs (metrics).
pub trait Observer: Send + Sync {
    /// A step is about to run on its target.
    fn step_started(&self, _connection: &str, _backend: &str) {}
    /// The target returned from a step that started (`ok` or not).
    fn step_ran(&self, _connection: &str, _backend: &str, _ok: bool, _duration: std::time::Duration) {}
    /// A step's outcome is known (applied, rolled back, failed, skipped or blocked).
    fn step_finished(&self, _connection: &str, _backend: &str, _outcome: crate::StepOutcomeKind, _duration: std::time::Duration) {}
    fn lock_acquired(&self, _connection: &str, _waited: std::time::Duration) {}
}

impl Engine {
    /// Open the state store (creating or upgrading its tables) and load the catalogue.
    pub async fn open(config: Config) -> Result<Arc<Engine>, EngineError> {
        let state = bfm_state::open(&config.state).await?;
        let recorder = Recorder::new(state.clone());
        let engine = Arc::new(Engine {
            config,
            catalog: ArcSwap::from_pointee(Catalog::default()),
            diagnostics: ArcSwap::from_pointee(Vec::new()),
            state,
            recorder,
            targets: Mutex::new(HashMap::new()),
            reloading: Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            observer: std::sync::OnceLock::new(),
        });
        engine.load_catalog();
        Ok(engine)
    }

    /// [`Engine::open`] with targets supplied by the caller, used instead of connecting to the
    /// configured connections of the same name (tests run the executor on in-memory targets).
    pub async fn open_with_targets(
        config: Config,
        targets: impl IntoIterator<Item = (String, Arc<dyn Target>)>,
    ) -> Result<Arc<Engine>, EngineError> {
        let engine = Engine::open(config).await?;
        engine.targets.lock().await.extend(targets);
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stop starting new steps: running chains finish the step they are in, release their locks
    /// and report the rest as not run.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Install the observer (once).
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        let _ = self.observer.set(observer);
    }

    pub(crate) fn observer(&self) -> Option<&Arc<dyn Observer>> {
        self.observer.get()
    }

    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// The current catalogue (readers keep the one they got; reloads swap atomically).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    pub fn diagnostics(&self) -> Arc<Vec<Diagnostic>> {
        self.diagnostics.load_full()
    }

    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            sfm_root: self.config.sfm_path.clone(),
            connection_schemas: self.config.connection_schemas(),
            golang_migrate: self.config.golang_migrate_sources(),
        }
    }

    /// Read the sources from disk and swap the catalogue in. Returns the diagnostics.
    pub fn load_catalog(&self) -> Arc<Vec<Diagnostic>> {
        let (catalog, diagnostics) = bfm_core::catalog::load(&self.load_options());
        for d in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
            tracing::warn!(problem = %d, "migration not loaded");
        }
        self.catalog.store(Arc::new(catalog));
        let d = Arc::new(diagnostics);
        self.diagnostics.store(d.clone());
        d
    }

    /// Reload from disk and record the catalogue in the state store (new, changed and missing
    /// migrations; history is never deleted).
    pub async fn reload(&self) -> Result<ReloadReport, EngineError> {
        let _guard = self.reloading.lock().await;
        let diagnostics = self.load_catalog();
        let sync = self.sync_catalog().await?;
        Ok(ReloadReport {
            migrations: self.catalog().len(),
            errors: diagnostics.iter().filter(|d| d.severity == Severity::Error).count(),
            warnings: diagnostics.iter().filter(|d| d.severity == Severity::Warning).count(),
            sync,
        })
    }

    pub async fn sync_catalog(&self) -> Result<SyncReport, EngineError> {
        let now = chrono::Utc::now();
        let rows: Vec<CatalogRow> = self.catalog().iter().map(|m| CatalogRow::of(m, now)).collect();
        let report = self.state.sync_catalog(&rows).await?;
        drop(rows);
        crate::memory::release_free_memory();
        Ok(report)
    }

    /// The target for a configured connection (connected lazily, one pool per connection).
    pub async fn target(&self, connection: &str) -> Result<Arc<dyn Target>, EngineError> {
        let mut targets = self.targets.lock().await;
        if let Some(t) = targets.get(connection) {
            return Ok(t.clone());
        }
        let config = self.config.connections.get(connection).ok_or_else(|| EngineError::UnknownConnection {
            name: connection.to_string(),
            known: self.config.connections.keys().cloned().collect(),
        })?;
        let t = bfm_targets::connect(config).await?;
        targets.insert(connection.to_string(), t.clone());
        Ok(t)
    }

    pub fn ensure_connection(&self, connection: &str) -> Result<(), EngineError> {
        if self.config.connections.contains_key(connection) {
            Ok(())
        } else {
            Err(EngineError::UnknownConnection { name: connection.to_string(), known: self.config.connections.keys().cloned().collect() })
        }
    }

    /// Resolve an id as users write it (base id, `{schema}_{base}`, BfM's legacy forms).
    pub fn resolve(&self, id: &str) -> Result<(Arc<Migration>, Option<String>), EngineError> {
        match self.catalog().lookup(id) {
            Lookup::Found { migration, schema } => Ok((migration, schema)),
            Lookup::NotFound => Err(EngineError::NotFound(id.to_string())),
            Lookup::Ambiguous(candidates) => Err(EngineError::Ambiguous { id: id.to_string(), candidates }),
        }
    }

    /// The schemas a selection names, resolved against the connection (patterns, tenant
    /// query), validated and without duplicates, in order. Names from the target that are not
    /// valid schema names are left out with a warning.
    pub(crate) async fn select_schemas(&self, connection: &str, sel: &SchemaSelection) -> Result<Vec<String>, EngineError> {
        let mut out: Vec<String> = Vec::new();
        for s in &sel.names {
            bfm_core::validate_schema_name(s).map_err(EngineError::Invalid)?;
            out.push(s.clone());
        }
        let mut found: Vec<String> = Vec::new();
        if let Some(p) = &sel.pattern {
            validate_schema_pattern(p).map_err(EngineError::Invalid)?;
            found.extend(self.target(connection).await?.list_schemas(p).await?);
        }
        if sel.tenants {
            let query = self
                .config
                .connections
                .get(connection)
                .and_then(|c| c.extra("tenant_query"))
                .ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "connection {connection} has no tenant query: set {}_TENANT_QUERY",
                        connection.to_uppercase()
                    ))
                })?
                .to_string();
            found.extend(self.target(connection).await?.query_schemas(&query).await?);
        }
        for s in found {
            match bfm_core::validate_schema_name(&s) {
                Ok(()) => out.push(s),
                Err(e) => tracing::warn!(connection, schema = %s, "left out: {e}"),
            }
        }
        let mut seen = HashSet::new();
        out.retain(|s| seen.insert(s.clone()));
        Ok(out)
    }

    /// Connections a request can touch: the selected migrations' and, transitively, those of
    /// their dependencies.
    fn involved_connections(&self, catalog: &Catalog, req: &PlanRequest) -> Vec<String> {
        let mut seen: HashSet<usize> = HashSet::new();
        let mut stack: Vec<usize> = catalog.iter().enumerate().filter(|(_, m)| req.selector.matches(m)).map(|(i, _)| i).collect();
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            for dep in catalog.at(i).all_dependencies() {
                stack.extend(catalog.targets_of(&dep).filter(|t| !seen.contains(t)));
            }
        }
        // Down also looks at dependents, which can live anywhere.
        if req.direction == bfm_core::Direction::Down {
            return catalog.iter().map(|m| m.connection.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        }
        seen.into_iter().map(|i| catalog.at(i).connection.clone()).collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// Plan a request against the current state (after reconciling interrupted runs). Only
    /// the service plans: surfaces go through it.
    pub(crate) async fn prepare(&self, req: &PlanRequest) -> Result<Prepared, EngineError> {
        if let Err(e) = self.reconcile_dead_runs().await {
            tracing::warn!(error = %e, "reconciling interrupted runs failed");
        }
        let catalog = self.catalog();
        let connections = self.involved_connections(&catalog, req);
        let rows = if connections.is_empty() { Vec::new() } else { self.state.snapshot(Some(&connections)).await? };
        let snapshot: StateSnapshot = bfm_state::to_snapshot(&rows);
        let plan = bfm_core::plan::plan(req, &catalog, &snapshot);
        Ok(Prepared { plan, rows: rows.into_iter().map(|r| ((r.migration_id.clone(), r.schema.clone()), r)).collect() })
    }

    /// Mark failed steps pending again so that the next `up` runs them (Fluxbase's "mark
    /// pending to retry"). With a resumable migration on a non-transactional target, the next
    /// run resumes at the failed statement. Returns the display ids reset.
    pub async fn retry(&self, id: &str, schema: Option<&str>, context: ExecutionContext) -> Result<Vec<String>, EngineError> {
        let (m, prefixed) = self.resolve(id)?;
        let schema = schema.map(str::to_string).or(prefixed);
        let rows = self
            .state
            .states(&bfm_state::StateFilter { migration_id: Some(m.id.clone()), schema: schema.clone(), ..Default::default() })
            .await?;
        let failed: Vec<&StateRow> =
            rows.iter().filter(|r| matches!(r.status, bfm_core::Status::Failed | bfm_core::Status::Running)).collect();
        if failed.is_empty() {
            return Err(EngineError::Invalid(format!(
                "{} has no failed run{} to retry",
                m.id,
                schema.map(|s| format!(" in schema {s}")).unwrap_or_default()
            )));
        }
        let context = Arc::new(context);
        let mut events = Vec::new();
        let mut ids = Vec::new();
        for r in failed {
            let keep = if m.resumable { r.statements_done } else { 0 };
            events.push(bfm_state::Event {
                key: format!("retry:{}:{}:{}", uuid::Uuid::new_v4(), m.id, r.schema),
                migration: bfm_state::MigrationRef::of(&m),
                schema: r.schema.clone(),
                run_id: None,
                context: context.clone(),
                // Pending again; the failure is kept for the record (and for resuming).
                state: Some(bfm_state::StateUpdate {
                    status: bfm_core::Status::Pending,
                    failed_statement: r.failed_statement.clone(),
                    failed_statement_index: r.failed_statement_index,
                    statements_done: keep,
                    ..bfm_state::StateUpdate::failed(r.checksum.clone(), r.error.clone().unwrap_or_default(), r.ledger)
                }),
                history: Some(bfm_state::HistoryEntry {
                    error: r.error.clone(),
                    ..bfm_state::HistoryEntry::new(bfm_state::Operation::Retry, "pending")
                }),
            });
            ids.push(m.display_id(&r.schema));
        }
        self.state.write(&events).await?;
        Ok(ids)
    }

    /// Accept the current script of an applied migration whose checksum changed.
    pub async fn accept_checksum(&self, id: &str, schema: Option<&str>, context: ExecutionContext) -> Result<Vec<String>, EngineError> {
        let (m, prefixed) = self.resolve(id)?;
        let schema = schema.map(str::to_string).or(prefixed);
        let rows = self.state.states(&bfm_state::StateFilter { migration_id: Some(m.id.clone()), schema, ..Default::default() }).await?;
        let context = Arc::new(context);
        let events: Vec<bfm_state::Event> = rows
            .iter()
            .filter(|r| r.status == bfm_core::Status::Applied && r.checksum.as_ref() != Some(&m.checksum))
            .map(|r| bfm_state::Event {
                key: format!("accept:{}:{}:{}", uuid::Uuid::new_v4(), m.id, r.schema),
                migration: bfm_state::MigrationRef::of(&m),
                schema: r.schema.clone(),
                run_id: None,
                context: context.clone(),
                state: Some(bfm_state::StateUpdate::applied(Some(m.checksum.clone()), r.applied_at, r.duration_ms, r.ledger)),
                history: Some(bfm_state::HistoryEntry {
                    checksum: Some(m.checksum.clone()),
                    error: r.checksum.as_ref().map(|old| format!("accepted changed script (was {old}, now {})", m.checksum)),
                    ..bfm_state::HistoryEntry::new(bfm_state::Operation::AcceptChecksum, "applied")
                }),
            })
            .collect();
        if events.is_empty() {
            return Err(EngineError::Invalid(format!("{} has no applied run whose checksum differs from the file", m.id)));
        }
        self.state.write(&events).await?;
        Ok(events.iter().map(|e| m.display_id(&e.schema)).collect())
    }

    pub async fn close(&self) {
        let _ = self.recorder.flush().await;
        for t in self.targets.lock().await.values() {
            t.close().await;
        }
        self.state.close().await;
    }
}
